/*
 * Stubs (CT_ERR_NOT_BUILT) for the training kernels added after stub.cpp: the loss family
 * (loss.h) and the backward entry points of norm.h and index.h. See stub.cpp.
 */
#include "cortado/index.h"
#include "cortado/loss.h"
#include "cortado/norm.h"

extern "C" {

int ct_cuda_cross_entropy_forward(int dtype, int target_dtype, int64_t rows, int64_t classes, const void* logits, const void* target, int64_t ignore_index, double smoothing, int reduction, void* loss, void* lse_out, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_cross_entropy_backward(int dtype, int target_dtype, int64_t rows, int64_t classes, const void* logits, const void* target, const void* lse, const void* grad, int64_t ignore_index, double smoothing, int reduction, void* dlogits, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_softmax_backward(int dtype, int log, int64_t outer, int64_t dim, int64_t inner, const void* y, const void* dy, void* dx, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_layernorm_backward(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, double eps, const void* dy, void* dx, void* dgamma, void* dbeta, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_rmsnorm_backward(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, double eps, const void* dy, void* dx, void* dgamma, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_index_add(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner, int64_t n_index, const void* index, const void* src, void* out, int64_t stream) { return CT_ERR_NOT_BUILT; }

}  // extern "C"
