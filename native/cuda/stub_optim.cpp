/*
 * Stub of the optimizer family's CUDA entry points (optim.h) for libcortado_cuda.so built
 * without nvcc: every call answers CT_ERR_NOT_BUILT (message: ct_cuda_last_error() of stub.cpp).
 */
#include "cortado/optim.h"

extern "C" {

int ct_cuda_optim_sgd(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes, const int64_t* params,
                      const int64_t* grads, const int64_t* momentum_bufs, double lr, double l2, double alpha,
                      double beta, int nesterov, double grad_scale, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_optim_adam(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes, const int64_t* params,
                       const int64_t* grads, const int64_t* exp_avgs, const int64_t* exp_avg_sqs,
                       const int64_t* max_exp_avg_sqs, double beta1, double beta2, double eps, double l2,
                       double decoupled, double step_size, double denom_scale, double post_scale, double grad_scale,
                       int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_optim_adagrad(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes, const int64_t* params,
                          const int64_t* grads, const int64_t* sums, double lr, double l2, double eps,
                          double grad_scale, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_optim_sum_squares(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double* out_device,
                              int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_optim_scale(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double factor,
                        int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_optim_unscale_check(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double inv_scale,
                                int32_t* found_inf_device, int64_t stream) { return CT_ERR_NOT_BUILT; }

}  // extern "C"
