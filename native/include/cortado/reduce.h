/*
 * Reduction family: sum, mean, max, min, argmax, argmin, var, prod along any set of axes.
 *
 * Java splits the input's dimensions into OUTER (kept) and INNER (reduced) groups, already
 * coalesced. For each outer index o (outer_ndim dims, shape outer_shape) the kernel reduces
 * the inner block (inner_ndim dims, shape inner_shape) of the input and writes one value:
 *   in  element (o, i) at  in + sum(o_d * in_outer_strides[d]) + sum(i_d * in_inner_strides[d])
 *   out element  o     at out + sum(o_d * out_strides[d])
 * keepdim is purely a Java-side shape matter.
 *
 * dtypes: input F32 F64 F16 BF16 I8 U8 I32 I64 (BOOL for SUM). Output dtype:
 *   SUM, PROD on integer/bool input -> CT_I64; otherwise the input dtype;
 *   ARGMAX, ARGMIN -> CT_I64 (first occurrence; NaN counts as the maximum/minimum);
 *   MEAN, VAR only on floating input -> input dtype.
 * Accumulation: float32 and 16-bit inputs accumulate in float32 with blocked pairwise partial
 * sums (error O(log n) ulp, not O(n)); VAR uses a two-pass (mean, then squared deviations)
 * in float64; F64 accumulates in float64. MAX/MIN propagate NaN.
 * An empty inner block (inner numel 0): SUM gives 0, PROD 1, MEAN and VAR NaN; MAX, MIN,
 * ARGMAX, ARGMIN return CT_ERR_INVALID_ARG (Java rejects them first with a better message).
 * VAR divides by (count - correction), correction given in `param`.
 *
 * Cost: reads every input element once (memory bound): numel * sizeof(dtype) bytes.
 */
#ifndef CORTADO_REDUCE_H
#define CORTADO_REDUCE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Op codes CT_REDUCE_<IDENT>, numbered by their line in ops/reduce.def. */
enum {
#define CT_REDUCE_OP(ident, name) CT_REDUCE_##ident,
#include "ops/reduce.def"
#undef CT_REDUCE_OP
  CT_REDUCE_COUNT
};

int ct_cpu_reduce(int op, int dtype, int out_dtype,
                  int outer_ndim, const int64_t* outer_shape,
                  const int64_t* in_outer_strides, const int64_t* out_strides,
                  int inner_ndim, const int64_t* inner_shape, const int64_t* in_inner_strides,
                  const void* in, void* out, double param, int64_t stream);

int ct_cuda_reduce(int op, int dtype, int out_dtype,
                   int outer_ndim, const int64_t* outer_shape,
                   const int64_t* in_outer_strides, const int64_t* out_strides,
                   int inner_ndim, const int64_t* inner_shape, const int64_t* in_inner_strides,
                   const void* in, void* out, double param, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
