/*
 * CUDA backend runtime: devices, memory, streams, events, errors.
 *
 * libcortado_cuda.so links the CUDA runtime statically, so it needs only the driver
 * (libcuda.so.1) at run time. Built without nvcc, the library is a stub with this same
 * interface: ct_cuda_built() returns 0 and every other call returns CT_ERR_NOT_BUILT.
 * On a machine without a driver or GPU every call returns CT_ERR_CUDA with the CUDA error
 * text ("CUDA driver version is insufficient", "no CUDA-capable device is detected"...).
 * Handles (device pointers, streams, events) travel as int64; stream 0 is the legacy
 * default stream.
 */
#ifndef CORTADO_CUDA_H
#define CORTADO_CUDA_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

const char* ct_cuda_last_error(void);
int ct_cuda_built(void);             /* 1 when compiled with nvcc, 0 for the stub */
int ct_cuda_runtime_version(int* version);   /* e.g. 13000 */
int ct_cuda_driver_version(int* version);

int ct_cuda_device_count(int* count);
/* info[0] total global memory bytes, [1] compute capability major, [2] minor,
 * [3] multiprocessor count, [4] max threads per block, [5] shared memory per block (bytes),
 * [6] L2 cache bytes, [7] memory bus width (bits). name receives a NUL-terminated string. */
int ct_cuda_device_info(int device, char* name, int name_capacity, int64_t* info);
int ct_cuda_set_device(int device);
int ct_cuda_get_device(int* device);
int ct_cuda_device_synchronize(void);
int ct_cuda_mem_info(int64_t* free_bytes, int64_t* total_bytes);

/* Raw device memory on the current device (the caching allocator lives in Java). */
int ct_cuda_malloc(int64_t bytes, int64_t* out_address);
int ct_cuda_free(int64_t address);
/* Page-locked host memory for fast, asynchronous transfers. */
int ct_cuda_malloc_host(int64_t bytes, int64_t* out_address);
int ct_cuda_free_host(int64_t address);

#define CT_MEMCPY_HOST_TO_DEVICE   0
#define CT_MEMCPY_DEVICE_TO_HOST   1
#define CT_MEMCPY_DEVICE_TO_DEVICE 2
/* Asynchronous on `stream`; a copy into pageable host memory completes before return. */
int ct_cuda_memcpy(int64_t dst, int64_t src, int64_t bytes, int kind, int64_t stream);
int ct_cuda_memset(int64_t dst, int value, int64_t bytes, int64_t stream);

int ct_cuda_stream_create(int64_t* out_stream);
int ct_cuda_stream_destroy(int64_t stream);
int ct_cuda_stream_synchronize(int64_t stream);
int ct_cuda_stream_wait_event(int64_t stream, int64_t event);
int ct_cuda_event_create(int64_t* out_event);
int ct_cuda_event_destroy(int64_t event);
int ct_cuda_event_record(int64_t event, int64_t stream);
int ct_cuda_event_synchronize(int64_t event);
int ct_cuda_event_elapsed_ms(int64_t start, int64_t end, float* ms);

/* The cudaError_t code of this thread's last failed CUDA call (0 if none yet): lets the caller
 * tell a sticky error (a kernel fault such as cudaErrorIllegalAddress = 700, after which the
 * device's context is unusable until the process exits) from an ordinary failed call. */
int ct_cuda_last_error_code(void);

/* TEST-ONLY fault injection (docs/reliability.md#cuda-fault-injection): launches a debug kernel
 * on `stream` and waits for it, so that its failure is reported by this call.
 * CT_DEBUG_FAULT_NONE: one thread writes to `scratch` (a device pointer to >= 4 bytes), a
 * correct launch, returns CT_OK. CT_DEBUG_FAULT_ILLEGAL_ADDRESS: one thread writes through an
 * address no allocation holds, so the kernel faults with cudaErrorIllegalAddress (700) and the
 * device's context is lost for the rest of the process. Never called by the engine itself. */
#define CT_DEBUG_FAULT_NONE 0
#define CT_DEBUG_FAULT_ILLEGAL_ADDRESS 1
int ct_cuda_debug_fault_kernel(int kind, int64_t scratch, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
