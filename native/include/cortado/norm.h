/*
 * Normalization family: softmax, log-softmax, layer norm, RMS norm (forward and backward).
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
                   const void* x, void* y, int64_t stream);
int ct_cpu_layernorm(int dtype, int64_t rows, int64_t cols, const void* x,
                     const void* gamma, const void* beta, double eps,
                     void* y, float* mean_out, float* rstd_out, int64_t stream);
int ct_cpu_rmsnorm(int dtype, int64_t rows, int64_t cols, const void* x,
                   const void* gamma, double eps, void* y, float* rstd_out, int64_t stream);

int ct_cuda_softmax(int dtype, int log, int64_t outer, int64_t dim, int64_t inner,
                    const void* x, void* y, int64_t stream);
int ct_cuda_layernorm(int dtype, int64_t rows, int64_t cols, const void* x,
                      const void* gamma, const void* beta, double eps,
                      void* y, float* mean_out, float* rstd_out, int64_t stream);
int ct_cuda_rmsnorm(int dtype, int64_t rows, int64_t cols, const void* x,
                    const void* gamma, double eps, void* y, float* rstd_out, int64_t stream);

/*
 * Backward of softmax / log-softmax from the forward's output y and dy (same layout
 * [outer, dim, inner], contiguous, dtype of y):
 *   softmax:     dx = y * (dy - sum_dim(dy * y))
 *   log-softmax: dx = dy - exp(y) * sum_dim(dy)
 * cost: 2 reads of y and dy + 1 write per element, ~4 FLOPs (log: + one exp); memory bound.
 *
 * Backward of layer norm / RMS norm, x [rows, cols] contiguous, gamma NULL (= 1) or `cols`
 * elements. mean and rstd are RECOMPUTED from x (two passes, as the forward), so the forward
 * saves nothing but its inputs. With xhat = (x - mean) * rstd (RMS: x * rstd), g = dy * gamma:
 *   layer norm: dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 *   RMS norm:   dx = rstd * (g - xhat * mean(g * xhat))
 *   dgamma = sum_rows(dy * xhat), dbeta = sum_rows(dy)   (dgamma/dbeta may be NULL)
 * dgamma/dbeta are reduced over fixed blocks of rows then over blocks in a fixed order, so
 * results do not depend on the thread count (CPU) or on scheduling (CUDA: no atomics).
 * cost: x and dy read twice (the second time from cache for rows that fit), dx written once,
 * ~12 FLOPs per element; DRAM ~ e*(2 reads + 1 write) per element, memory bound.
 */
int ct_cpu_softmax_backward(int dtype, int log, int64_t outer, int64_t dim, int64_t inner,
                            const void* y, const void* dy, void* dx, int64_t stream);
int ct_cpu_layernorm_backward(int dtype, int64_t rows, int64_t cols, const void* x,
                              const void* gamma, double eps, const void* dy, void* dx,
                              void* dgamma, void* dbeta, int64_t stream);
int ct_cpu_rmsnorm_backward(int dtype, int64_t rows, int64_t cols, const void* x,
                            const void* gamma, double eps, const void* dy, void* dx, void* dgamma, int64_t stream);

int ct_cuda_softmax_backward(int dtype, int log, int64_t outer, int64_t dim, int64_t inner,
                             const void* y, const void* dy, void* dx, int64_t stream);
int ct_cuda_layernorm_backward(int dtype, int64_t rows, int64_t cols, const void* x,
                               const void* gamma, double eps, const void* dy, void* dx,
                               void* dgamma, void* dbeta, int64_t stream);
int ct_cuda_rmsnorm_backward(int dtype, int64_t rows, int64_t cols, const void* x,
                             const void* gamma, double eps, const void* dy, void* dx, void* dgamma,
                             int64_t stream);

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
                                      float* save_rstd, int64_t stream);
int ct_cpu_batchnorm_forward_inference(int dtype, int layout, int64_t n, int64_t c, int64_t s,
                                       const void* x, const float* gamma, const float* beta,
                                       const float* running_mean, const float* running_var,
                                       double eps, void* y, int64_t stream);
int ct_cpu_batchnorm_backward(int dtype, int layout, int64_t n, int64_t c, int64_t s,
                              const void* x, const void* dy, const float* gamma,
                              const float* save_mean, const float* save_rstd,
                              void* dx, float* dgamma, float* dbeta, int64_t stream);

/*
 * CUDA twins (native/cuda/batchnorm.cu): the same arguments (every pointer on the device,
 * gamma/beta/statistics included) plus the stream; dtypes F32 and F64. Statistics: per-thread
 * Welford (float32; float64 for F64), Chan merges inside a block in a fixed order, per-block
 * partials in a workspace, then one thread per channel merges them in a fixed order in float64:
 * deterministic, no atomics. Backward reduces sum(dy) and sum(dy * (x - mean)) the same way.
 */
int ct_cuda_batchnorm_forward_training(int dtype, int layout, int64_t n, int64_t c, int64_t s,
                                       const void* x, const float* gamma, const float* beta,
                                       double eps, double momentum, float* running_mean,
                                       float* running_var, void* y, float* save_mean,
                                       float* save_rstd, int64_t stream);
int ct_cuda_batchnorm_forward_inference(int dtype, int layout, int64_t n, int64_t c, int64_t s,
                                        const void* x, const float* gamma, const float* beta,
                                        const float* running_mean, const float* running_var,
                                        double eps, void* y, int64_t stream);
int ct_cuda_batchnorm_backward(int dtype, int layout, int64_t n, int64_t c, int64_t s,
                               const void* x, const void* dy, const float* gamma,
                               const float* save_mean, const float* save_rstd,
                               void* dx, float* dgamma, float* dbeta, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
