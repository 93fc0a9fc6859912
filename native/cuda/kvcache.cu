/*
 * KV-cache family on CUDA (kvcache.h): paged append and split-K decode attention.
 *
 * Append: one block per (sequence, new token); its threads copy the token's Hkv x D block of
 * k_new / v_new into page block_table[s][pos / PS], slot pos % PS. Rows past new_lens[s], pages
 * outside the pool and lengths past the block table are skipped (never written).
 *
 * Decode: grid (split r, kv head hk x row group, sequence s); a block of W warps handles the
 * R = G Tq query rows of (s, hk) (the G query heads of the group times the Tq query tokens; very
 * large R x D is cut into row groups that fit 48 KiB of shared memory) over the tokens of its
 * split, pages [r C, (r + 1) C) with C = ceil(ceil(max_len / PS) / num_splits):
 *   Qs = scale q (float32, shared memory)
 *   warp w takes tokens j0 + w, j0 + w + W, ...; for each token:
 *     lane l holds features l, l + 32, ... of the K row (coalesced loads), s_r = warp-sum of
 *     Qs_r . k (butterfly shuffles: every lane gets s_r; soft-capped, s_r = c tanh(s_r / c), when
 *     softcap c > 0); online softmax per row in the warp:
 *     m' = max(m, s), a = e^(m - m'), p = e^(s - m'), l = a l + p, acc_r = a acc_r + p v
 *     (acc in the warp's shared memory slice, each lane its own features).
 *   the W warp states merge (log-sum-exp weights); one split: o = acc / l, lse = m + log l;
 *   several: (m, l, acc) go to workspace [S, Hq, Tq, num_splits, D + 2] and a second kernel,
 *   one block per (s, h, t), merges: M = max m_r, o = sum e^(m_r - M) acc_r / sum e^(m_r - M) l_r.
 * float32 accumulation for every dtype. Each K/V row is read once per (s, hk) from DRAM whatever
 * G and Tq: 2 L Hkv D esize bytes per sequence, 4 L Hq Tq D FLOPs.
 * Out-of-range metadata (a length above max_len or the block table, a page outside the pool)
 * cannot be reported from the device: the affected rows come out NaN, nothing outside the
 * pool is read. The Java layer validates the tables before the call.
 */
#include <cmath>

#include "common.cuh"
#include "cortado/kvcache.h"

namespace ct {
namespace {

constexpr int kMaxWarps = 4;
constexpr size_t kSmemLimit = 48 * 1024;

struct DecodeGeo {
  int64_t S, Tq, Hq, Hkv, D, P, PS, MP, G, max_len;
  int64_t qs[4], os[4];
  int64_t C;        // pages per split
  int64_t nsplit;
  int64_t RB;       // rows per block (row group)
  int64_t nrg;      // row groups
  int causal;
  float scale;
  float softcap;  // 0: none
};

// ------------------------------------------------------------------ append
template <class T>
__global__ void append_kernel(int64_t S, int64_t Tn, int64_t Hkv, int64_t D, int64_t P, int64_t PS, int64_t MP,
                              const T* __restrict__ kn, int64_t ks0, int64_t ks1, int64_t ks2,
                              const T* __restrict__ vn, int64_t vs0, int64_t vs1, int64_t vs2, T* kc, T* vc,
                              const int32_t* __restrict__ bt, const int32_t* __restrict__ lens,
                              const int32_t* __restrict__ nl) {
  const int64_t item = blockIdx.x;
  const int64_t s = item / Tn, t = item % Tn;
  if (s >= S) return;
  const int64_t n = nl ? nl[s] : Tn;
  const int64_t L = lens[s];
  if (t >= n || n > Tn || L < 0) return;
  const int64_t pos = L + t;
  if (pos >= MP * PS) return;
  const int64_t page = bt[s * MP + pos / PS];
  if (page < 0 || page >= P) return;
  const int64_t base = (page * PS + pos % PS) * Hkv * D;
  for (int64_t x = threadIdx.x; x < Hkv * D; x += blockDim.x) {
    const int64_t h = x / D, c = x % D;
    kc[base + x] = kn[s * ks0 + t * ks1 + h * ks2 + c];
    vc[base + x] = vn[s * vs0 + t * vs1 + h * vs2 + c];
  }
}

// ------------------------------------------------------------------ decode
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <class T>
__global__ void decode_split_kernel(DecodeGeo g, const T* __restrict__ q, const T* __restrict__ kc,
                                    const T* __restrict__ vc, const int32_t* __restrict__ bt,
                                    const int32_t* __restrict__ lens, T* __restrict__ o, float* __restrict__ lse,
                                    float* __restrict__ ws) {
  extern __shared__ float smem[];
  const int64_t r_split = blockIdx.x;
  const int64_t hk = blockIdx.y / g.nrg, rg = blockIdx.y % g.nrg;
  const int64_t s = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, W = blockDim.x >> 5;
  const int64_t D = g.D;
  const int64_t row0 = rg * g.RB, R = min(g.RB, g.G * g.Tq - row0);
  float* Qs = smem;                       // [RB, D]
  float* accw = Qs + g.RB * D;            // [W, RB, D]
  float* mw = accw + (int64_t)W * g.RB * D;  // [W, RB]
  float* lw = mw + (int64_t)W * g.RB;        // [W, RB]
  __shared__ int bad;

  const int64_t L = lens[s];
  if (threadIdx.x == 0) bad = (L < 0 || L > g.max_len || L > g.MP * g.PS) ? 1 : 0;
  for (int64_t x = threadIdx.x; x < R * D; x += blockDim.x) {
    const int64_t r = row0 + x / D, c = x % D, gi = r / g.Tq, t = r % g.Tq;
    Qs[x] = load(q[s * g.qs[0] + t * g.qs[1] + (hk * g.G + gi) * g.qs[2] + c]) * g.scale;
  }
  float* acc = accw + (int64_t)warp * g.RB * D;
  float* m = mw + (int64_t)warp * g.RB;
  float* l = lw + (int64_t)warp * g.RB;
  for (int64_t x = lane; x < R * D; x += 32) acc[x] = 0.0f;
  for (int64_t x = lane; x < R; x += 32) { m[x] = -INFINITY; l[x] = 0.0f; }
  __syncthreads();

  const int64_t Lc = bad ? 0 : L;
  const int64_t j0 = r_split * g.C * g.PS;
  const int64_t j1 = min(Lc, j0 + g.C * g.PS);
  for (int64_t j = j0 + warp; j < j1; j += W) {
    const int64_t page = bt[s * g.MP + j / g.PS];
    if (page < 0 || page >= g.P) {
      if (lane == 0) bad = 1;
      continue;
    }
    const int64_t roff = ((page * g.PS + j % g.PS) * g.Hkv + hk) * D;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t t = (row0 + r) % g.Tq;
      if (g.causal && j > Lc - g.Tq + t) continue;  // uniform over the warp
      float part = 0.0f;
      for (int64_t c = lane; c < D; c += 32) part += Qs[r * D + c] * load(kc[roff + c]);
      const float dot = warp_sum(part);
      const float sc = g.softcap > 0 ? g.softcap * tanhf(dot / g.softcap) : dot;
      const float mo = m[r];
      const float mn = fmaxf(mo, sc);
      const float a = mo == -INFINITY ? 0.0f : __expf(mo - mn);
      const float p = __expf(sc - mn);
      for (int64_t c = lane; c < D; c += 32) acc[r * D + c] = a * acc[r * D + c] + p * load(vc[roff + c]);
      __syncwarp();
      if (lane == 0) { m[r] = mn; l[r] = a * l[r] + p; }
      __syncwarp();
    }
  }
  __syncthreads();
  // merge the warps; write the output (one split) or the partial (several)
  const bool isbad = bad != 0;
  for (int64_t x = threadIdx.x; x < R * (D + 1); x += blockDim.x) {
    const int64_t r = x / (D + 1), c = x % (D + 1) - 1;  // c = -1: the row's (m, l) / lse slot
    float M = -INFINITY;
    for (int w = 0; w < W; ++w) M = fmaxf(M, mw[(int64_t)w * g.RB + r]);
    float Ls = 0.0f, A = 0.0f;
    if (M != -INFINITY)
      for (int w = 0; w < W; ++w) {
        const float mwv = mw[(int64_t)w * g.RB + r];
        if (mwv == -INFINITY) continue;
        const float e = __expf(mwv - M);
        Ls += e * lw[(int64_t)w * g.RB + r];
        if (c >= 0) A += e * accw[((int64_t)w * g.RB + r) * D + c];
      }
    const int64_t rr = row0 + r, gi = rr / g.Tq, t = rr % g.Tq, h = hk * g.G + gi;
    if (g.nsplit == 1) {
      if (c >= 0) {
        const float v = isbad ? NAN : (Ls > 0 ? A / Ls : 0.0f);
        o[s * g.os[0] + t * g.os[1] + h * g.os[2] + c] = store<T>(v);
      } else if (lse) {
        lse[(s * g.Hq + h) * g.Tq + t] = isbad ? NAN : (Ls > 0 ? M + logf(Ls) : -INFINITY);
      }
    } else {
      float* dst = ws + ((((s * g.Hq + h) * g.Tq + t) * g.nsplit) + r_split) * (D + 2);
      if (c >= 0) {
        dst[2 + c] = isbad ? NAN : A;
      } else {
        dst[0] = isbad ? NAN : M;
        dst[1] = Ls;
      }
    }
  }
}

/* One block per (s, h, t): merges the num_splits partials. */
template <class T>
__global__ void decode_merge_kernel(DecodeGeo g, const float* __restrict__ ws, T* __restrict__ o,
                                    float* __restrict__ lse) {
  const int64_t row = blockIdx.x;  // (s * Hq + h) * Tq + t
  const int64_t t = row % g.Tq, h = (row / g.Tq) % g.Hq, s = row / (g.Tq * g.Hq);
  const float* base = ws + row * g.nsplit * (g.D + 2);
  float M = -INFINITY;
  bool nan = false;
  for (int64_t k = 0; k < g.nsplit; ++k) {
    const float mk = base[k * (g.D + 2)];
    nan |= mk != mk;
    M = fmaxf(M, mk);
  }
  float Ls = 0.0f;
  if (M != -INFINITY)
    for (int64_t k = 0; k < g.nsplit; ++k) {
      const float mk = base[k * (g.D + 2)];
      if (mk != -INFINITY) Ls += __expf(mk - M) * base[k * (g.D + 2) + 1];
    }
  for (int64_t c = threadIdx.x; c < g.D; c += blockDim.x) {
    float A = 0.0f;
    if (M != -INFINITY)
      for (int64_t k = 0; k < g.nsplit; ++k) {
        const float mk = base[k * (g.D + 2)];
        if (mk != -INFINITY) A += __expf(mk - M) * base[k * (g.D + 2) + 2 + c];
      }
    const float v = nan ? NAN : (Ls > 0 ? A / Ls : 0.0f);
    o[s * g.os[0] + t * g.os[1] + h * g.os[2] + c] = store<T>(v);
  }
  if (threadIdx.x == 0 && lse) lse[row] = nan ? NAN : (Ls > 0 ? M + logf(Ls) : -INFINITY);
}

// ------------------------------------------------------------------ validation
int check_strides4(const char* fn, const char* name, const int64_t* s) {
  if (!s) return fail(CT_ERR_INVALID_ARG, "%s: %s is NULL", fn, name);
  for (int d = 0; d < 4; ++d)
    if (s[d] < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s[%d]=%lld is negative", fn, name, d, (long long)s[d]);
  if (s[3] != 1)
    return fail(CT_ERR_INVALID_ARG, "%s: %s[3]=%lld must be 1 (the feature dimension is contiguous)", fn, name,
                (long long)s[3]);
  return CT_OK;
}

int check_dims(const char* fn, const int64_t* dims, int n, const char* const* names, const bool* may_be_zero) {
  if (!dims) return fail(CT_ERR_INVALID_ARG, "%s: dims is NULL", fn);
  for (int i = 0; i < n; ++i)
    if (dims[i] < 0 || (dims[i] == 0 && !may_be_zero[i]))
      return fail(CT_ERR_INVALID_ARG, "%s: dims[%d] (%s) = %lld must be %s", fn, i, names[i], (long long)dims[i],
                  may_be_zero[i] ? "non-negative" : "positive");
  return CT_OK;
}

template <class F> bool dispatch_kv(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(type_tag<float>{}); return true;
    case CT_F16: f(type_tag<__half>{}); return true;
    case CT_BF16: f(type_tag<__nv_bfloat16>{}); return true;
    default: return false;
  }
}

int unsupported(const char* fn, int dtype) {
  return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F16, BF16)", fn, dtype_name(dtype), dtype);
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_kv_cache_append(int dtype, const int64_t* dims, const void* k_new,
                                       const int64_t* k_new_strides, const void* v_new, const int64_t* v_new_strides,
                                       void* k_cache, void* v_cache, const int32_t* block_table,
                                       const int32_t* seq_lens, const int32_t* new_lens, int64_t stream) {
  static const char* fn = "ct_cuda_kv_cache_append";
  if (dtype != CT_F32 && dtype != CT_F16 && dtype != CT_BF16) return unsupported(fn, dtype);
  static const char* names[7] = {"S", "T", "Hkv", "D", "P", "PS", "MP"};
  static const bool zero_ok[7] = {true, true, false, false, true, false, true};
  CT_TRY_STATUS(check_dims(fn, dims, 7, names, zero_ok));
  CT_TRY_STATUS(check_strides4(fn, "k_new_strides", k_new_strides));
  CT_TRY_STATUS(check_strides4(fn, "v_new_strides", v_new_strides));
  const int64_t S = dims[0], T = dims[1], Hkv = dims[2], D = dims[3], P = dims[4], PS = dims[5], MP = dims[6];
  if (S == 0 || T == 0) return CT_OK;
  if (P == 0 || MP == 0)
    return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: an empty pool (P=%lld) or block table (MP=%lld) takes no tokens", fn,
                (long long)P, (long long)MP);
  CT_TRY_STATUS(check_ptr(fn, "k_new", k_new));
  CT_TRY_STATUS(check_ptr(fn, "v_new", v_new));
  CT_TRY_STATUS(check_ptr(fn, "k_cache", k_cache));
  CT_TRY_STATUS(check_ptr(fn, "v_cache", v_cache));
  CT_TRY_STATUS(check_ptr(fn, "block_table", block_table));
  CT_TRY_STATUS(check_ptr(fn, "seq_lens", seq_lens));
  const int64_t items = S * T;
  if (items > INT32_MAX) return fail(CT_ERR_INVALID_ARG, "%s: S*T=%lld is too large", fn, (long long)items);
  const int threads = Hkv * D >= 256 ? 256 : (int)((Hkv * D + 31) / 32 * 32);
  dispatch_kv(dtype, [&](auto tag) {
    using E = typename decltype(tag)::type;
    append_kernel<E><<<(unsigned)items, threads, 0, as_stream(stream)>>>(
        S, T, Hkv, D, P, PS, MP, (const E*)k_new, k_new_strides[0], k_new_strides[1], k_new_strides[2],
        (const E*)v_new, v_new_strides[0], v_new_strides[1], v_new_strides[2], (E*)k_cache, (E*)v_cache, block_table,
        seq_lens, new_lens);
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_paged_decode_attention(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                              const void* k_cache, const void* v_cache, const int32_t* block_table,
                                              const int32_t* seq_lens, int64_t max_len, int causal, double scale,
                                              double softcap, int64_t num_splits, void* o, const int64_t* o_strides, float* lse,
                                              float* workspace, int64_t workspace_floats, int64_t stream) {
  static const char* fn = "ct_cuda_paged_decode_attention";
  if (dtype != CT_F32 && dtype != CT_F16 && dtype != CT_BF16) return unsupported(fn, dtype);
  static const char* names[8] = {"S", "Tq", "Hq", "Hkv", "D", "P", "PS", "MP"};
  static const bool zero_ok[8] = {true, true, false, false, false, true, false, true};
  CT_TRY_STATUS(check_dims(fn, dims, 8, names, zero_ok));
  if (dims[2] % dims[3] != 0)
    return fail(CT_ERR_INVALID_ARG, "%s: Hq=%lld is not a multiple of Hkv=%lld", fn, (long long)dims[2],
                (long long)dims[3]);
  CT_TRY_STATUS(check_strides4(fn, "q_strides", q_strides));
  CT_TRY_STATUS(check_strides4(fn, "o_strides", o_strides));
  if (!std::isfinite(scale)) return fail(CT_ERR_INVALID_ARG, "%s: scale=%g must be finite", fn, scale);
  if (!(softcap >= 0) || !std::isfinite(softcap))
    return fail(CT_ERR_INVALID_ARG, "%s: softcap=%g must be finite and >= 0 (0: no capping)", fn, softcap);
  if (num_splits < 1) return fail(CT_ERR_INVALID_ARG, "%s: num_splits=%lld must be >= 1", fn, (long long)num_splits);
  if (max_len < 0) return fail(CT_ERR_INVALID_ARG, "%s: max_len=%lld is negative", fn, (long long)max_len);
  DecodeGeo g{};
  g.S = dims[0]; g.Tq = dims[1]; g.Hq = dims[2]; g.Hkv = dims[3]; g.D = dims[4]; g.P = dims[5]; g.PS = dims[6];
  g.MP = dims[7]; g.G = g.Hq / g.Hkv; g.max_len = max_len;
  for (int i = 0; i < 4; ++i) { g.qs[i] = q_strides[i]; g.os[i] = o_strides[i]; }
  g.causal = causal != 0; g.scale = (float)scale; g.softcap = (float)softcap;
  if (g.S == 0 || g.Tq == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "q", q));
  CT_TRY_STATUS(check_ptr(fn, "o", o));
  CT_TRY_STATUS(check_ptr(fn, "block_table", block_table));
  CT_TRY_STATUS(check_ptr(fn, "seq_lens", seq_lens));
  if (max_len > 0) {
    CT_TRY_STATUS(check_ptr(fn, "k_cache", k_cache));
    CT_TRY_STATUS(check_ptr(fn, "v_cache", v_cache));
  }
  const int64_t max_pages = (max_len + g.PS - 1) / g.PS;
  g.nsplit = num_splits;
  g.C = max_pages == 0 ? 1 : (max_pages + num_splits - 1) / num_splits;
  if (g.nsplit > 1) {
    CT_TRY_STATUS(check_ptr(fn, "workspace", workspace));
    const int64_t need = g.S * g.Hq * g.Tq * g.nsplit * (g.D + 2);
    if (workspace_floats < need)
      return fail(CT_ERR_INVALID_ARG, "%s: workspace holds %lld floats, needs S*Hq*Tq*num_splits*(D+2) = %lld", fn,
                  (long long)workspace_floats, (long long)need);
  }
  // rows per block and warps: as many as 48 KiB of shared memory allow
  const int64_t R = g.G * g.Tq;
  int W = kMaxWarps;
  auto smem_for = [&](int64_t rb, int w) { return (size_t)(4 * (rb * g.D + (int64_t)w * (rb * g.D + 2 * rb))); };
  int64_t RB = R;
  while (W > 1 && smem_for(RB, W) > kSmemLimit) W >>= 1;
  while (RB > 1 && smem_for(RB, W) > kSmemLimit) RB = (RB + 1) / 2;
  if (smem_for(RB, W) > kSmemLimit)
    return fail(CT_ERR_UNSUPPORTED, "%s: head_dim D=%lld is too large for the shared-memory row buffers", fn,
                (long long)g.D);
  g.RB = RB;
  g.nrg = (R + RB - 1) / RB;
  if (g.nsplit > 65535 || g.Hkv * g.nrg > 65535 || g.S > 65535)
    return fail(CT_ERR_INVALID_ARG, "%s: grid too large (splits %lld, Hkv x row groups %lld, S %lld; max 65535)", fn,
                (long long)g.nsplit, (long long)(g.Hkv * g.nrg), (long long)g.S);
  const size_t smem = smem_for(RB, W);
  const dim3 grid((unsigned)g.nsplit, (unsigned)(g.Hkv * g.nrg), (unsigned)g.S);
  int st = CT_OK;
  dispatch_kv(dtype, [&](auto tag) {
    using E = typename decltype(tag)::type;
    decode_split_kernel<E><<<grid, W * 32, smem, as_stream(stream)>>>(g, (const E*)q, (const E*)k_cache,
                                                                       (const E*)v_cache, block_table, seq_lens,
                                                                       (E*)o, lse, workspace);
    st = check_launch(fn);
    if (st == CT_OK && g.nsplit > 1) {
      const int64_t rows = g.S * g.Hq * g.Tq;
      if (rows > INT32_MAX) { st = fail(CT_ERR_INVALID_ARG, "%s: too many rows", fn); return; }
      const int threads = g.D >= 128 ? 128 : (int)((g.D + 31) / 32 * 32);
      decode_merge_kernel<E><<<(unsigned)rows, threads, 0, as_stream(stream)>>>(g, workspace, (E*)o, lse);
      st = check_launch(fn);
    }
  });
  return st;
}
