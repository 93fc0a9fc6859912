/*
 * Mixture-of-experts family: routing with a capacity, dispatch of tokens into an expert-major
 * buffer and the gate-weighted combine back (permutation kernels), and the grouped GEMM that runs
 * every expert's matmul in one call on groups of variable size.
 *
 * The expert-major buffer has `rows` rows (rows >= tokens * k is enough for any routing): expert
 * e's rows are [offset_e, offset_e + counts[e]) with offset_e = counts[0] + ... + counts[e-1]; rows
 * past sum(counts) are padding (dispatch writes zeros there, the grouped GEMM writes zeros there).
 * A routing is `slots` [tokens, k] (int64): the buffer row of choice j of token t, or -1 when that
 * choice was dropped (its expert was full). Every row is named by at most one slot.
 *
 * Dense operands are contiguous row-major. dtypes: dispatch / combine / gate gradient F32, F64,
 * BF16 (bf16 loads and stores, float32 accumulation); the grouped GEMM F32 and F64. Sizes are
 * int64 >= 0; an empty operand is a successful no-op (outputs of positive size are still written).
 * Every kernel validates what it reads through an index (expert ids in [0, experts), slots in
 * [-1, rows) and distinct, counts >= 0 with sum(counts) <= rows) before reading data, answering
 * CT_ERR_INDEX_OUT_OF_RANGE / CT_ERR_INVALID_ARG with the first offending position.
 */
#ifndef CORTADO_MOE_H
#define CORTADO_MOE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/*
 * Routing with a capacity. expert_ids [tokens, k] (the top-k choices). Choices are served in
 * priority order: all first choices by token position, then all second choices, and so on
 * (GShard's order: a token's first choice is dropped only when `capacity` earlier first choices
 * went to the same expert). The first `capacity` choices of each expert are kept.
 * Writes slots [tokens, k] (the row in the expert-major buffer, -1 when dropped), counts [experts]
 * (kept choices per expert) and load [experts] (choices per expert before dropping, for the
 * load-balancing loss). capacity >= 1. Cost: O(tokens k + experts) integer work.
 */
int ct_cpu_moe_route(int64_t tokens, int64_t k, int64_t experts, int64_t capacity, const int64_t* expert_ids,
                     int64_t* slots, int64_t* counts, int64_t* load, int64_t stream);
/*
 * Dispatch: buf [rows, d] = 0, then buf[slots[t, j]] = w x[t] for every kept choice, where
 * w = gates[t, j] when gates is given ([tokens, k]) and 1 when it is NULL. (With gates it is the
 * gradient of combine with respect to the expert outputs.) Reads x once, writes buf once:
 * (tokens + rows) d sizeof(T) bytes.
 */
int ct_cpu_moe_dispatch(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows, const int64_t* slots,
                        const void* gates, const void* x, void* buf, int64_t stream);
/*
 * Combine: out [tokens, d] = sum over the kept choices j of w y[slots[t, j]] (w as in dispatch);
 * a token whose choices were all dropped gets zeros (the residual carries it). Without gates it
 * is the gradient of dispatch. Cost: 2 tokens k d FLOPs, reads the kept rows of y once.
 */
int ct_cpu_moe_combine(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows, const int64_t* slots,
                       const void* gates, const void* y, void* out, int64_t stream);
/*
 * The gradient of combine with respect to the gates: dgates[t, j] = <dout[t], y[slots[t, j]]>,
 * 0 for a dropped choice. dout [tokens, d], y [rows, d]. Cost: 2 tokens k d FLOPs.
 */
int ct_cpu_moe_gate_grad(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows, const int64_t* slots,
                         const void* dout, const void* y, void* dgates, int64_t stream);
/*
 * Grouped GEMM: for every expert e, C[rows of e] = A[rows of e] op(B_e); A [rows, k],
 * B [experts, k, n] (trans_b = 0) or [experts, n, k] (trans_b = 1, the gradient to A), C [rows, n];
 * C's padding rows are zeroed. counts [experts] (int64, host memory on the CPU, device memory on
 * CUDA). Cost: 2 sum(counts) k n FLOPs; reads each B_e once per row tile of its group.
 */
int ct_cpu_grouped_gemm(int dtype, int64_t experts, int64_t rows, int64_t k, int64_t n, int trans_b,
                        const int64_t* counts, const void* a, const void* b, void* c, int64_t stream);
/*
 * The gradient to the weights: dB_e = A[rows of e]^T dC[rows of e] for every expert, dB
 * [experts, k, n] (an expert with no rows gets zeros). A [rows, k], dC [rows, n].
 * Cost: 2 sum(counts) k n FLOPs.
 */
int ct_cpu_grouped_gemm_wgrad(int dtype, int64_t experts, int64_t rows, int64_t k, int64_t n, const int64_t* counts,
                              const void* a, const void* dc, void* db, int64_t stream);

int ct_cuda_moe_route(int64_t tokens, int64_t k, int64_t experts, int64_t capacity, const int64_t* expert_ids,
                      int64_t* slots, int64_t* counts, int64_t* load, int64_t stream);
int ct_cuda_moe_dispatch(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows, const int64_t* slots,
                         const void* gates, const void* x, void* buf, int64_t stream);
int ct_cuda_moe_combine(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows, const int64_t* slots,
                        const void* gates, const void* y, void* out, int64_t stream);
int ct_cuda_moe_gate_grad(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows, const int64_t* slots,
                          const void* dout, const void* y, void* dgates, int64_t stream);
int ct_cuda_grouped_gemm(int dtype, int64_t experts, int64_t rows, int64_t k, int64_t n, int trans_b,
                         const int64_t* counts, const void* a, const void* b, void* c, int64_t stream);
int ct_cuda_grouped_gemm_wgrad(int dtype, int64_t experts, int64_t rows, int64_t k, int64_t n, const int64_t* counts,
                               const void* a, const void* dc, void* db, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif

#endif
