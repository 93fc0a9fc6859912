/*
 * The KV-cache family of the stub libcortado_cuda.so (built without nvcc): same exports as
 * native/cuda/kvcache.cu, every call answering CT_ERR_NOT_BUILT.
 */
#include "cortado/kvcache.h"

extern "C" {

int ct_cuda_kv_cache_append(int dtype, const int64_t* dims, const void* k_new, const int64_t* k_new_strides,
                            const void* v_new, const int64_t* v_new_strides, void* k_cache, void* v_cache,
                            const int32_t* block_table, const int32_t* seq_lens, const int32_t* new_lens,
                            int64_t stream) {
  return CT_ERR_NOT_BUILT;
}

int ct_cuda_paged_decode_attention(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                   const void* k_cache, const void* v_cache, const int32_t* block_table,
                                   const int32_t* seq_lens, int64_t max_len, int causal, double scale,
                                   double softcap, int64_t num_splits, void* o, const int64_t* o_strides, float* lse,
                                   float* workspace, int64_t workspace_floats, int64_t stream) {
  return CT_ERR_NOT_BUILT;
}

}  // extern "C"
