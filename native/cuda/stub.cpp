/*
 * libcortado_cuda.so for builds without nvcc: the same C interface as the real library
 * (CMake compares the exported symbols of both when nvcc exists), every call answering
 * CT_ERR_NOT_BUILT so that Java reports "Cortado was built without CUDA" instead of failing
 * to load a library.
 */
#include "cortado/cuda.h"
#include "cortado/elementwise.h"
#include "cortado/reduce.h"
#include "cortado/norm.h"
#include "cortado/index.h"
#include "cortado/random.h"

static const char kNotBuilt[] =
    "Cortado was built without CUDA (nvcc was not found when libcortado_cuda.so was built)";

extern "C" {

const char* ct_cuda_last_error(void) { return kNotBuilt; }
int ct_cuda_built(void) { return 0; }

int ct_cuda_runtime_version(int* version) { return CT_ERR_NOT_BUILT; }
int ct_cuda_driver_version(int* version) { return CT_ERR_NOT_BUILT; }
int ct_cuda_device_count(int* count) { return CT_ERR_NOT_BUILT; }
int ct_cuda_device_info(int device, char* name, int name_capacity, int64_t* info) { return CT_ERR_NOT_BUILT; }
int ct_cuda_set_device(int device) { return CT_ERR_NOT_BUILT; }
int ct_cuda_get_device(int* device) { return CT_ERR_NOT_BUILT; }
int ct_cuda_device_synchronize(void) { return CT_ERR_NOT_BUILT; }
int ct_cuda_mem_info(int64_t* free_bytes, int64_t* total_bytes) { return CT_ERR_NOT_BUILT; }
int ct_cuda_malloc(int64_t bytes, int64_t* out_address) { return CT_ERR_NOT_BUILT; }
int ct_cuda_free(int64_t address) { return CT_ERR_NOT_BUILT; }
int ct_cuda_malloc_host(int64_t bytes, int64_t* out_address) { return CT_ERR_NOT_BUILT; }
int ct_cuda_free_host(int64_t address) { return CT_ERR_NOT_BUILT; }
int ct_cuda_memcpy(int64_t dst, int64_t src, int64_t bytes, int kind, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_memset(int64_t dst, int value, int64_t bytes, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_stream_create(int64_t* out_stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_stream_destroy(int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_stream_synchronize(int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_stream_wait_event(int64_t stream, int64_t event) { return CT_ERR_NOT_BUILT; }
int ct_cuda_event_create(int64_t* out_event) { return CT_ERR_NOT_BUILT; }
int ct_cuda_event_destroy(int64_t event) { return CT_ERR_NOT_BUILT; }
int ct_cuda_event_record(int64_t event, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_event_synchronize(int64_t event) { return CT_ERR_NOT_BUILT; }
int ct_cuda_event_elapsed_ms(int64_t start, int64_t end, float* ms) { return CT_ERR_NOT_BUILT; }
int ct_cuda_unary(int op, int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides, const void* x, const int64_t* x_strides, double p0, double p1, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_binary(int op, int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides, const void* a, const int64_t* a_strides, const void* b, const int64_t* b_strides, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_where(int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides, const uint8_t* cond, const int64_t* cond_strides, const void* a, const int64_t* a_strides, const void* b, const int64_t* b_strides, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_copy(int dst_dtype, int src_dtype, int ndim, const int64_t* shape, void* dst, const int64_t* dst_strides, const void* src, const int64_t* src_strides, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_fill(int dtype, int64_t n, void* out, double value, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_int4_unpack(int64_t n, const uint8_t* packed, int8_t* out, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_int4_pack(int64_t n, const int8_t* in, uint8_t* packed, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_reduce(int op, int dtype, int out_dtype, int outer_ndim, const int64_t* outer_shape, const int64_t* in_outer_strides, const int64_t* out_strides, int inner_ndim, const int64_t* inner_shape, const int64_t* in_inner_strides, const void* in, void* out, double param, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_softmax(int dtype, int log, int64_t outer, int64_t dim, int64_t inner, const void* x, void* y, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_layernorm(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, const void* beta, double eps, void* y, float* mean_out, float* rstd_out, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_rmsnorm(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, double eps, void* y, float* rstd_out, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_gather(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner, const void* src, int64_t n_index, const void* index, void* out, int64_t stream) { return CT_ERR_NOT_BUILT; }
int ct_cuda_random(int distribution, int dtype, int64_t n, void* out, uint64_t seed, uint64_t offset, double a, double b, int64_t stream) { return CT_ERR_NOT_BUILT; }

}  // extern "C"
