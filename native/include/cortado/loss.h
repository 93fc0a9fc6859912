/*
 * Loss family: fused softmax cross-entropy (forward and backward).
 *
 * logits are CONTIGUOUS [rows, classes] (class dim last: [N, C] and [N, T, C] flattened to
 * [N*T, C]); target holds `rows` class indices of target_dtype (CT_I32 or CT_I64). dtypes
 * F32 F64 F16 BF16; f16/bf16 are computed in float32. "acc" below is float for
 * F32/F16/BF16 and double for F64.
 *
 * Per row i with target t = target[i] and smoothing eps:
 *   lse_i  = log(sum_c exp(x_ic))                       (max-shifted, computed once)
 *   loss_i = lse_i - (1 - eps) * x_it - (eps / C) * sum_c x_ic
 *          = (1 - eps) * (-log p_it) + eps * mean_c(-log p_ic)
 * Rows whose target equals ignore_index have loss 0, lse still computed, and are not
 * counted. A target outside [0, classes) that is not ignore_index fails with
 * CT_ERR_INDEX_OUT_OF_RANGE naming the label, its row and `classes` (the first such row).
 *
 * reduction: CT_REDUCE_NONE  loss has `rows` elements of dtype (0 for ignored rows);
 *            CT_REDUCE_MEAN  loss is one element: sum_i loss_i / count (count = rows not
 *                            ignored; count == 0 gives 0, not PyTorch's NaN);
 *            CT_REDUCE_SUM   loss is one element: sum_i loss_i.
 * The row sum of MEAN/SUM is deterministic (fixed order, in float64 on the CPU, in acc on
 * CUDA with a fixed tree).
 * lse_out: `rows` elements of acc type; the backward reads it.
 *
 * Backward: grad is one element (MEAN/SUM) or `rows` elements (NONE) of dtype, and
 *   dlogits_ic = g_i * (exp(x_ic - lse_i) - (1 - eps) [c == t_i] - eps / C)
 * with g_i = grad / count (MEAN), grad (SUM) or grad[i] (NONE); 0 for ignored rows. The
 * probabilities are never stored: the forward saves only lse.
 *
 * Cost (e = dtype bytes, R*C logits): forward 2 reads of each logit (max, then exp-sum; the
 * row is in cache for the second), ~17 FLOPs/logit (one exp), R*(e + acc + 8) bytes
 * written; backward 1 read + 1 write of each logit, ~18 FLOPs/logit. Memory bound:
 * forward ~e*R*C bytes from DRAM, backward ~2*e*R*C.
 */
#ifndef CORTADO_LOSS_H
#define CORTADO_LOSS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Reductions CT_LOSS_REDUCTION_NONE / MEAN / SUM, numbered by their line in ops/loss_reduction.def. */
enum {
#define CT_LOSS_REDUCTION(ident, name) CT_LOSS_REDUCTION_##ident,
#include "ops/loss_reduction.def"
#undef CT_LOSS_REDUCTION
  CT_LOSS_REDUCTION_COUNT
};

int ct_cpu_cross_entropy_forward(int dtype, int target_dtype, int64_t rows, int64_t classes,
                                 const void* logits, const void* target, int64_t ignore_index,
                                 double smoothing, int reduction, void* loss, void* lse_out, int64_t stream);
int ct_cpu_cross_entropy_backward(int dtype, int target_dtype, int64_t rows, int64_t classes,
                                  const void* logits, const void* target, const void* lse,
                                  const void* grad, int64_t ignore_index, double smoothing,
                                  int reduction, void* dlogits, int64_t stream);

/* CUDA: a bad target is flagged on the device; the forward synchronizes the stream once to
 * read the flag (like ct_cuda_gather). The backward does not synchronize. */
int ct_cuda_cross_entropy_forward(int dtype, int target_dtype, int64_t rows, int64_t classes,
                                  const void* logits, const void* target, int64_t ignore_index,
                                  double smoothing, int reduction, void* loss, void* lse_out,
                                  int64_t stream);
int ct_cuda_cross_entropy_backward(int dtype, int target_dtype, int64_t rows, int64_t classes,
                                   const void* logits, const void* target, const void* lse,
                                   const void* grad, int64_t ignore_index, double smoothing,
                                   int reduction, void* dlogits, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
