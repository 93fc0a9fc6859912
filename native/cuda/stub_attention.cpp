/* Stubs (CT_ERR_NOT_BUILT) for the CUDA attention family (attention.h). See stub.cpp. */
#include "cortado/attention.h"

extern "C" {

int ct_cuda_attention_forward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides, const void* k, const int64_t* k_strides, const void* v, const int64_t* v_strides, int mask_kind, const void* mask, const int64_t* mask_strides, int causal, double scale, double softcap, double dropout_p, uint64_t seed, uint64_t offset, void* o, const int64_t* o_strides, float* lse, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_attention_backward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides, const void* k, const int64_t* k_strides, const void* v, const int64_t* v_strides, int mask_kind, const void* mask, const int64_t* mask_strides, int causal, double scale, double softcap, double dropout_p, uint64_t seed, uint64_t offset, const void* o, const int64_t* o_strides, const void* d_o, const int64_t* do_strides, const float* lse, void* dq, const int64_t* dq_strides, void* dk, const int64_t* dk_strides, void* dv, const int64_t* dv_strides, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_rope(int dtype, const int64_t* dims4, void* x, const int64_t* x_strides, const int64_t* positions, int64_t rotary_dim, double base, int interleaved, int inverse, int64_t stream) { return CT_ERR_NOT_BUILT; }

}  // extern "C"
