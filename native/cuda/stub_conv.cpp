/*
 * Stubs (CT_ERR_NOT_BUILT) for the CUDA convolution family (conv.h). See stub.cpp.
 */
#include "cortado/conv.h"

extern "C" {

int ct_cuda_conv_forward(int dtype, int layout, int algorithm, const int64_t* g, const void* x, const void* w, const void* bias, int activation, void* y, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_conv_backward_data(int dtype, int layout, int algorithm, const int64_t* g, const void* dy, const void* w, void* dx, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_conv_backward_weight(int dtype, int layout, int algorithm, const int64_t* g, const void* x, const void* dy, void* dw, void* dbias, int64_t stream) { return CT_ERR_NOT_BUILT; }

}  // extern "C"
