/*
 * Optimizer family: fused, in-place parameter updates over many tensors per call, plus the
 * gradient utilities around them (sum of squares for clipping by global norm, in-place scale,
 * and the mixed-precision "unscale and look for inf/NaN").
 *
 * Multi-tensor calling convention. One call updates n tensors of one parameter dtype and one
 * gradient dtype. `sizes[i]` is the element count of tensor i (>= 0; 0 is skipped) and
 * params[i], grads[i], state arrays[i] are the ADDRESSES (int64) of the first element of
 * tensor i, every operand contiguous. The tables themselves live in host memory (also for the
 * CUDA entry points, which pack them into by-value kernel parameters, 16 tensors per launch).
 * A state table that a configuration does not use may be NULL; one it uses must hold non-NULL
 * addresses wherever sizes[i] > 0.
 *
 * dtypes: param_dtype CT_F32 or CT_F64 (states share the param dtype); grad_dtype equal to
 * param_dtype, or CT_F16 / CT_BF16 with F32 params (mixed precision: the gradient is
 * widened to float32 on load). Arithmetic is in the param dtype.
 *
 * Every update reads the gradient once, multiplied first by `grad_scale` (1 normally; a loss
 * scaler's 1/scale or a clipping coefficient can be folded in here), then
 *   g' = grad_scale * g + l2 * p                          (L2 term added to the gradient)
 *
 * SGD with momentum (PyTorch SGD and ONNX Momentum through the same coefficients):
 *   b  = alpha * b + beta * g'                              (b: momentum buffer; NULL table: no momentum)
 *   d  = nesterov ? g' + alpha * b : b                      (without a buffer: d = g')
 *   p  = p - lr * d
 *   PyTorch: alpha = momentum, beta = 1 - dampening (first step: beta = 1 on a zero buffer,
 *   which is PyTorch's "buf = g"); ONNX Momentum: alpha, beta as given (beta is 1 at T == 0),
 *   l2 = norm_coefficient.
 * Cost: 2 reads + 2 writes per element with momentum (p, b), + grad read; 3 FLOPs + 2-4.
 *
 * Adam / AdamW (PyTorch Adam, AdamW, ONNX Adam):
 *   p  = p * (1 - decoupled)                                 (AdamW: decoupled = lr * weight_decay)
 *   m  = beta1 * m + (1 - beta1) * g'
 *   v  = beta2 * v + (1 - beta2) * g'^2
 *   vm = max(vm, v) if the amsgrad table is given, else v
 *   p  = (p - step_size * m / (sqrt(vm) * denom_scale + eps)) * post_scale
 *   PyTorch: step_size = lr / (1 - beta1^t), denom_scale = 1 / sqrt(1 - beta2^t), post_scale = 1.
 *   ONNX:    step_size = R * sqrt(1 - beta^T) / (1 - alpha^T) (T > 0, else R), denom_scale = 1,
 *            l2 = norm_coefficient, post_scale = 1 - norm_coefficient_post.
 * Cost: reads p, g, m, v and writes p, m, v: 28 bytes per float32 element (+8 with amsgrad),
 * ~15 FLOPs and one sqrt and one division per element.
 *
 * Adagrad (PyTorch Adagrad, ONNX Adagrad):
 *   h  = h + g'^2;  p = p - lr * g' / (sqrt(h) + eps)
 *   lr is the already decayed rate: PyTorch lr / (1 + (t - 1) * lr_decay), ONNX R / (1 + T * decay_factor).
 * Cost: reads p, g, h, writes p, h: 20 bytes per float32 element.
 *
 * Utilities over a tensor list of one dtype (F32, F64, F16, BF16):
 *   sum_squares:   *out = sum over all elements of x^2, accumulated in float64 (NaN/inf propagate).
 *                  CPU: out is a host double that is overwritten. CUDA: out is a DEVICE double
 *                  that is ADDED to (zero it first), so several calls can accumulate.
 *   scale:         x = x * factor (in place).
 *   unscale_check: x = x * inv_scale, and *found_inf = 1 when any scaled element is inf or NaN
 *                  (otherwise *found_inf is left as it was). CPU: host int32; CUDA: device int32.
 * Each reads (and for scale/unscale writes) every element once.
 *
 * Errors: CT_ERR_INVALID_ARG (negative count or size, NULL table or address, unknown dtype),
 * CT_ERR_UNSUPPORTED (a dtype combination without a kernel); the message names the call,
 * the argument and the tensor index.
 */
#ifndef CORTADO_OPTIM_H
#define CORTADO_OPTIM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* ---------------------------------------------------------------- CPU (libcortado_cpu) */
int ct_cpu_optim_sgd(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes,
                     const int64_t* params, const int64_t* grads, const int64_t* momentum_bufs,
                     double lr, double l2, double alpha, double beta, int nesterov, double grad_scale, int64_t stream);

int ct_cpu_optim_adam(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes,
                      const int64_t* params, const int64_t* grads, const int64_t* exp_avgs,
                      const int64_t* exp_avg_sqs, const int64_t* max_exp_avg_sqs,
                      double beta1, double beta2, double eps, double l2, double decoupled,
                      double step_size, double denom_scale, double post_scale, double grad_scale, int64_t stream);

int ct_cpu_optim_adagrad(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes,
                         const int64_t* params, const int64_t* grads, const int64_t* sums,
                         double lr, double l2, double eps, double grad_scale, int64_t stream);

int ct_cpu_optim_sum_squares(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double* out, int64_t stream);
int ct_cpu_optim_scale(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double factor, int64_t stream);
int ct_cpu_optim_unscale_check(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors,
                               double inv_scale, int32_t* found_inf, int64_t stream);

/* ---------------------------------------------------------------- CUDA (libcortado_cuda) */
int ct_cuda_optim_sgd(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes,
                      const int64_t* params, const int64_t* grads, const int64_t* momentum_bufs,
                      double lr, double l2, double alpha, double beta, int nesterov, double grad_scale,
                      int64_t stream);

int ct_cuda_optim_adam(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes,
                       const int64_t* params, const int64_t* grads, const int64_t* exp_avgs,
                       const int64_t* exp_avg_sqs, const int64_t* max_exp_avg_sqs,
                       double beta1, double beta2, double eps, double l2, double decoupled,
                       double step_size, double denom_scale, double post_scale, double grad_scale,
                       int64_t stream);

int ct_cuda_optim_adagrad(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes,
                          const int64_t* params, const int64_t* grads, const int64_t* sums,
                          double lr, double l2, double eps, double grad_scale, int64_t stream);

int ct_cuda_optim_sum_squares(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors,
                              double* out_device, int64_t stream);
int ct_cuda_optim_scale(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double factor,
                        int64_t stream);
int ct_cuda_optim_unscale_check(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors,
                                double inv_scale, int32_t* found_inf_device, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
