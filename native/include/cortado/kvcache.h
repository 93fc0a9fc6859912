/*
 * KV-cache family: a paged key/value cache and decode attention over it (the PagedAttention
 * layout of vLLM, with FlashDecoding's split-K over long contexts).
 *
 * Cache (one per layer, K and V alike): [P, PS, Hkv, D], contiguous: P pages of PS tokens.
 * Token slot t of page p, kv head h, feature c lies at ((p * PS + t) * Hkv + h) * D + c, so one
 * token of one page is a contiguous Hkv x D block and a page is PS such blocks.
 * block_table: int32 [S, MP], row-major: logical page i of sequence s (its tokens
 * [i PS, (i + 1) PS)) is physical page block_table[s * MP + i]. Entries past a sequence's last
 * page are never read (they may be -1). seq_lens: int32 [S].
 * Sequences of any lengths share one pool; the page allocator (a free list) lives in Java.
 *
 * ct_*_kv_cache_append: dims int64[7] = {S, T, Hkv, D, P, PS, MP}. k_new, v_new [S, T, Hkv, D]
 * given by 4 element strides each (feature stride 1). Token t < n_s of sequence s, with
 * n_s = new_lens ? new_lens[s] : T (ragged appends pad to T), is written at position
 * seq_lens[s] + t. seq_lens are the lengths BEFORE the append; only the cache is written.
 * Checked: 0 <= n_s <= T, seq_lens[s] >= 0, seq_lens[s] + n_s <= MP * PS, every page written in
 * [0, P) (CT_ERR_INDEX_OUT_OF_RANGE otherwise, naming the sequence, the entry and the shapes).
 * Cost: 2 sum(n_s) Hkv D elements read and written, no FLOPs.
 *
 * ct_*_paged_decode_attention: dims int64[8] = {S, Tq, Hq, Hkv, D, P, PS, MP}; Hq % Hkv == 0
 * (query head h reads kv head h / (Hq / Hkv): grouped-query attention without copies).
 * q, o [S, Tq, Hq, D] by 4 strides (feature stride 1); lse float32 [S, Hq, Tq] contiguous, or
 * NULL. Here seq_lens count the cached tokens INCLUDING the Tq new ones (append, then attend):
 * query t of sequence s sits at position L_s - Tq + t and, when causal, attends keys
 * j <= L_s - Tq + t (all L_s keys otherwise). A query with no key gets o = 0, lse = -inf.
 *   o = softmax(cap(scale q K^T)) V,  lse = log sum_j exp(cap(scale q.k_j)),
 * with cap(s) = softcap tanh(s / softcap) when softcap > 0 (as in ct_*_attention_forward), cap(s) = s
 * when softcap = 0; a negative or non-finite softcap is CT_ERR_INVALID_ARG.
 * Split-K: with N = num_splits and C = ceil(ceil(L_max / PS) / N) pages per split, split r of
 * sequence s covers its pages [r C, (r + 1) C); it produces per query row a partial
 * (m_r = max score, l_r = sum exp(s - m_r), a_r = sum exp(s - m_r) v); the merge gives
 * M = max m_r, o = sum_r e^(m_r - M) a_r / sum_r e^(m_r - M) l_r, lse = M + log(sum ...).
 * num_splits = 1: no split; 0 (CPU only): chosen from L_max, S and the thread count (a CPU work
 * item is one sequence with all its kv heads; a CUDA block is one (sequence, kv head, split)).
 * dtypes F32, F16, BF16; float32 accumulation (scores, softmax, output) for all.
 * Cost: 4 S Hq Tq L D FLOPs (L the mean length); bytes: every cached K and V row read once per
 * (sequence, kv head): 2 L Hkv D esize per sequence — the Hq / Hkv query heads and Tq query
 * tokens of a group share each row as it is read. Decode is bandwidth bound.
 *
 * The CUDA entry points take block_table, seq_lens and new_lens in device memory and cannot
 * read them on the host: the kernels never touch memory outside the pool (an out-of-range page
 * or length yields NaN rows, a skipped append), and the Java layer validates the tables
 * before the call. max_len (host) bounds every seq_lens[s]; workspace (device, float32) holds
 * S Hq Tq num_splits (D + 2) values when num_splits > 1 (NULL otherwise).
 */
#ifndef CORTADO_KVCACHE_H
#define CORTADO_KVCACHE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

int ct_cpu_kv_cache_append(int dtype, const int64_t* dims,
                           const void* k_new, const int64_t* k_new_strides,
                           const void* v_new, const int64_t* v_new_strides,
                           void* k_cache, void* v_cache,
                           const int32_t* block_table, const int32_t* seq_lens, const int32_t* new_lens, int64_t stream);

int ct_cpu_paged_decode_attention(int dtype, const int64_t* dims,
                                  const void* q, const int64_t* q_strides,
                                  const void* k_cache, const void* v_cache,
                                  const int32_t* block_table, const int32_t* seq_lens, int64_t max_len,
                                  int causal, double scale, double softcap, int64_t num_splits,
                                  void* o, const int64_t* o_strides, float* lse,
                                  float* workspace, int64_t workspace_floats, int64_t stream);

/* The CPU kernel ignores max_len (it reads seq_lens) and the workspace (it allocates per thread);
 * both are in the signature so that the two backends share one. */

/* The split count the CPU kernel picks for num_splits = 0 (for tests and benchmarks); Hkv is
 * not used by the CPU rule. */
int64_t ct_cpu_paged_decode_auto_splits(int64_t S, int64_t Hkv, int64_t max_len, int64_t page_size);

int ct_cuda_kv_cache_append(int dtype, const int64_t* dims,
                            const void* k_new, const int64_t* k_new_strides,
                            const void* v_new, const int64_t* v_new_strides,
                            void* k_cache, void* v_cache,
                            const int32_t* block_table, const int32_t* seq_lens, const int32_t* new_lens,
                            int64_t stream);

int ct_cuda_paged_decode_attention(int dtype, const int64_t* dims,
                                   const void* q, const int64_t* q_strides,
                                   const void* k_cache, const void* v_cache,
                                   const int32_t* block_table, const int32_t* seq_lens, int64_t max_len,
                                   int causal, double scale, double softcap, int64_t num_splits,
                                   void* o, const int64_t* o_strides, float* lse,
                                   float* workspace, int64_t workspace_floats, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
