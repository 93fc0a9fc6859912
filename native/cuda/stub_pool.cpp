/*
 * Stubs (CT_ERR_NOT_BUILT) for the CUDA pooling family (pool.h) and the CUDA batch norm
 * (the ct_cuda_batchnorm_* part of norm.h). See stub.cpp.
 */
#include "cortado/norm.h"
#include "cortado/pool.h"

extern "C" {

int ct_cuda_maxpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y, int64_t* indices, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_maxpool_backward(int dtype, int layout, const int64_t* g, const void* dy, const int64_t* indices, void* dx, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_avgpool_forward(int dtype, int layout, const int64_t* g, int count_include_pad, const void* x, void* y, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_avgpool_backward(int dtype, int layout, const int64_t* g, int count_include_pad, const void* dy, void* dx, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_adaptive_avgpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_adaptive_avgpool_backward(int dtype, int layout, const int64_t* g, const void* dy, void* dx, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_batchnorm_forward_training(int dtype, int layout, int64_t n, int64_t c, int64_t s, const void* x, const float* gamma, const float* beta, double eps, double momentum, float* running_mean, float* running_var, void* y, float* save_mean, float* save_rstd, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_batchnorm_forward_inference(int dtype, int layout, int64_t n, int64_t c, int64_t s, const void* x, const float* gamma, const float* beta, const float* running_mean, const float* running_var, double eps, void* y, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_batchnorm_backward(int dtype, int layout, int64_t n, int64_t c, int64_t s, const void* x, const void* dy, const float* gamma, const float* save_mean, const float* save_rstd, void* dx, float* dgamma, float* dbeta, int64_t stream) { return CT_ERR_NOT_BUILT; }

}  // extern "C"
