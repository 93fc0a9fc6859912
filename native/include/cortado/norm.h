/*
 * Normalization family: softmax, log-softmax, layer norm, RMS norm (forward).
 *
 * Inputs are CONTIGUOUS (Java makes them so). dtypes F32 F64 F16 BF16; 16-bit inputs are
 * computed in float32. Output y has the input's dtype and shape.
 *
 * softmax: x viewed as [outer, dim, inner]; normalizes along `dim`:
 *   y = exp(x - max) / sum(exp(x - max))      (log: y = x - max - log(sum(exp(x - max))))
 *   cost: ~3 reads + 1 write per element (two passes over each row, the row stays in cache),
 *   one exp per element; memory bound.
 * layernorm: x viewed as [rows, cols]; per row: mean, rstd = 1/sqrt(var + eps) (biased var),
 *   y = (x - mean) * rstd * gamma + beta. gamma/beta have `cols` elements of dtype, or are
 *   NULL (then 1 / 0). mean_out/rstd_out (float32, `rows` entries) may be NULL; backward
 *   uses them. cost: 2 reads + 1 write per element.
 * rmsnorm: y = x * rsqrt(mean(x^2) + eps) * gamma; gamma may be NULL; rstd_out may be NULL.
 */
#ifndef CORTADO_NORM_H
#define CORTADO_NORM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

int ct_cpu_softmax(int dtype, int log, int64_t outer, int64_t dim, int64_t inner,
                   const void* x, void* y);
int ct_cpu_layernorm(int dtype, int64_t rows, int64_t cols, const void* x,
                     const void* gamma, const void* beta, double eps,
                     void* y, float* mean_out, float* rstd_out);
int ct_cpu_rmsnorm(int dtype, int64_t rows, int64_t cols, const void* x,
                   const void* gamma, double eps, void* y, float* rstd_out);

int ct_cuda_softmax(int dtype, int log, int64_t outer, int64_t dim, int64_t inner,
                    const void* x, void* y, int64_t stream);
int ct_cuda_layernorm(int dtype, int64_t rows, int64_t cols, const void* x,
                      const void* gamma, const void* beta, double eps,
                      void* y, float* mean_out, float* rstd_out, int64_t stream);
int ct_cuda_rmsnorm(int dtype, int64_t rows, int64_t cols, const void* x,
                    const void* gamma, double eps, void* y, float* rstd_out, int64_t stream);

/*
 * Batch normalization over (N, spatial) per channel; x is [N, C, S] (NCHW, S = D*H*W) or
 * [N, S, C] (NHWC).
 * Training: batch mean and biased variance; y = (x - mean) * rstd * gamma + beta; saves mean
 * and rstd = 1/sqrt(var + eps) (float32, C entries) for backward; if running_mean/var are not
 * NULL they become (1 - momentum) * running + momentum * batch (running_var gets the UNBIASED
 * batch variance, as PyTorch). Inference: uses running statistics.
 * Backward: dx, and dgamma/dbeta (may be NULL) from dy, x, gamma and the saved statistics.
 * gamma/beta/running stats are F32 for any x dtype (F32, F64 here). Cost: 2-3 passes over x.
 */
int ct_cpu_batchnorm_forward_training(int dtype, int layout, int64_t n, int64_t c, int64_t s,
                                      const void* x, const float* gamma, const float* beta,
                                      double eps, double momentum, float* running_mean,
                                      float* running_var, void* y, float* save_mean,
                                      float* save_rstd);
int ct_cpu_batchnorm_forward_inference(int dtype, int layout, int64_t n, int64_t c, int64_t s,
                                       const void* x, const float* gamma, const float* beta,
                                       const float* running_mean, const float* running_var,
                                       double eps, void* y);
int ct_cpu_batchnorm_backward(int dtype, int layout, int64_t n, int64_t c, int64_t s,
                              const void* x, const void* dy, const float* gamma,
                              const float* save_mean, const float* save_rstd,
                              void* dx, float* dgamma, float* dbeta);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
