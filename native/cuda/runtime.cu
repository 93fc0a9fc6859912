/*
 * CUDA backend runtime (cuda.h): devices, memory, streams, events, errors.
 *
 * Thin wrappers over the CUDA runtime (linked statically, so only libcuda.so.1 is needed at
 * run time). No kernels here; every call costs one or two runtime API calls. Handles travel
 * as int64: device pointers, cudaStream_t and cudaEvent_t values. Errors become
 * CT_ERR_CUDA with "function: CUDA error N (name): text" in the thread-local buffer;
 * an allocation failure becomes CT_ERR_OUT_OF_MEMORY. Without a driver the static runtime
 * answers cudaErrorInsufficientDriver (35) to every call, which we report the same way.
 */
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <atomic>

#include "common.cuh"
#include "cortado/cuda.h"

namespace ct {

namespace {
thread_local char g_error[1024] = "";
thread_local int g_error_code = 0;  // cudaError_t of the last failed CUDA call on this thread
constexpr int kMaxDevices = 64;
std::atomic<int> g_sm_count[kMaxDevices];  // 0 = not cached yet
}  // namespace

int fail(int status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
  return status;
}

int cuda_fail(const char* fn, cudaError_t err) {
  g_error_code = (int)err;
  (void)cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  int status = (err == cudaErrorMemoryAllocation) ? CT_ERR_OUT_OF_MEMORY : CT_ERR_CUDA;
  return fail(status, "%s: CUDA error %d (%s): %s", fn, (int)err, cudaGetErrorName(err),
              cudaGetErrorString(err));
}

int check_launch(const char* fn) {
  cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? CT_OK : cuda_fail(fn, err);
}

int sm_count(const char* fn, int* out) {
  int dev = 0;
  CT_CUDA_TRY(fn, cudaGetDevice(&dev));
  if (dev >= 0 && dev < kMaxDevices) {
    int cached = g_sm_count[dev].load(std::memory_order_relaxed);
    if (cached > 0) {
      *out = cached;
      return CT_OK;
    }
  }
  int n = 0;
  CT_CUDA_TRY(fn, cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  if (n <= 0) n = 1;
  if (dev >= 0 && dev < kMaxDevices) g_sm_count[dev].store(n, std::memory_order_relaxed);
  *out = n;
  return CT_OK;
}

const char* dtype_name(int dtype) {
  switch (dtype) {
    case CT_F32: return "float32";
    case CT_F64: return "float64";
    case CT_F16: return "float16";
    case CT_BF16: return "bfloat16";
    case CT_I8: return "int8";
    case CT_U8: return "uint8";
    case CT_I32: return "int32";
    case CT_I64: return "int64";
    case CT_BOOL: return "bool";
    case CT_I4: return "int4";
    case CT_F8E4M3: return "float8_e4m3";
    case CT_F8E5M2: return "float8_e5m2";
    default: return "unknown-dtype";
  }
}

int check_shape(const char* fn, int ndim, const int64_t* shape, int64_t* numel) {
  if (ndim < 0 || ndim > CT_MAX_DIMS)
    return fail(CT_ERR_INVALID_ARG, "%s: ndim %d outside [0, %d]", fn, ndim, CT_MAX_DIMS);
  if (ndim > 0 && !shape) return fail(CT_ERR_INVALID_ARG, "%s: shape is NULL", fn);
  int64_t n = 1;
  bool empty = false;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] < 0)
      return fail(CT_ERR_INVALID_ARG, "%s: shape[%d] = %lld is negative", fn, d, (long long)shape[d]);
    if (shape[d] == 0) empty = true;
  }
  if (empty) {
    *numel = 0;
    return CT_OK;
  }
  for (int d = 0; d < ndim; ++d) {
    if (n > INT64_MAX / shape[d])
      return fail(CT_ERR_INVALID_ARG, "%s: element count overflows int64", fn);
    n *= shape[d];
  }
  *numel = n;
  return CT_OK;
}

int check_strides(const char* fn, const char* name, int ndim, const int64_t* strides) {
  if (ndim > 0 && !strides) return fail(CT_ERR_INVALID_ARG, "%s: %s is NULL", fn, name);
  for (int d = 0; d < ndim; ++d)
    if (strides[d] < 0)
      return fail(CT_ERR_INVALID_ARG, "%s: %s[%d] = %lld is negative", fn, name, d, (long long)strides[d]);
  return CT_OK;
}

}  // namespace ct

using ct::fail;

extern "C" {

const char* ct_cuda_last_error(void) { return ct::g_error; }
int ct_cuda_built(void) { return 1; }

int ct_cuda_runtime_version(int* version) {
  if (!version) return fail(CT_ERR_INVALID_ARG, "ct_cuda_runtime_version: version is NULL");
  CT_CUDA_TRY("ct_cuda_runtime_version", cudaRuntimeGetVersion(version));
  return CT_OK;
}

int ct_cuda_driver_version(int* version) {
  if (!version) return fail(CT_ERR_INVALID_ARG, "ct_cuda_driver_version: version is NULL");
  CT_CUDA_TRY("ct_cuda_driver_version", cudaDriverGetVersion(version));
  if (*version == 0)  // no driver installed: the runtime answers success with version 0
    return ct::cuda_fail("ct_cuda_driver_version", cudaErrorInsufficientDriver);
  return CT_OK;
}

int ct_cuda_device_count(int* count) {
  if (!count) return fail(CT_ERR_INVALID_ARG, "ct_cuda_device_count: count is NULL");
  *count = 0;
  CT_CUDA_TRY("ct_cuda_device_count", cudaGetDeviceCount(count));
  return CT_OK;
}

int ct_cuda_device_info(int device, char* name, int name_capacity, int64_t* info) {
  const char* fn = "ct_cuda_device_info";
  if (!info) return fail(CT_ERR_INVALID_ARG, "%s: info is NULL", fn);
  if (name_capacity < 0) return fail(CT_ERR_INVALID_ARG, "%s: name_capacity < 0", fn);
  cudaDeviceProp p;
  CT_CUDA_TRY(fn, cudaGetDeviceProperties(&p, device));
  if (name && name_capacity > 0) {
    strncpy(name, p.name, (size_t)name_capacity - 1);
    name[name_capacity - 1] = '\0';
  }
  info[0] = (int64_t)p.totalGlobalMem;
  info[1] = p.major;
  info[2] = p.minor;
  info[3] = p.multiProcessorCount;
  info[4] = p.maxThreadsPerBlock;
  info[5] = (int64_t)p.sharedMemPerBlock;
  info[6] = p.l2CacheSize;
  info[7] = p.memoryBusWidth;
  return CT_OK;
}

int ct_cuda_set_device(int device) {
  CT_CUDA_TRY("ct_cuda_set_device", cudaSetDevice(device));
  return CT_OK;
}

int ct_cuda_get_device(int* device) {
  if (!device) return fail(CT_ERR_INVALID_ARG, "ct_cuda_get_device: device is NULL");
  CT_CUDA_TRY("ct_cuda_get_device", cudaGetDevice(device));
  return CT_OK;
}

int ct_cuda_device_synchronize(void) {
  CT_CUDA_TRY("ct_cuda_device_synchronize", cudaDeviceSynchronize());
  return CT_OK;
}

int ct_cuda_mem_info(int64_t* free_bytes, int64_t* total_bytes) {
  if (!free_bytes || !total_bytes) return fail(CT_ERR_INVALID_ARG, "ct_cuda_mem_info: NULL output");
  size_t f = 0, t = 0;
  CT_CUDA_TRY("ct_cuda_mem_info", cudaMemGetInfo(&f, &t));
  *free_bytes = (int64_t)f;
  *total_bytes = (int64_t)t;
  return CT_OK;
}

int ct_cuda_malloc(int64_t bytes, int64_t* out_address) {
  const char* fn = "ct_cuda_malloc";
  if (!out_address) return fail(CT_ERR_INVALID_ARG, "%s: out_address is NULL", fn);
  *out_address = 0;
  if (bytes < 0) return fail(CT_ERR_INVALID_ARG, "%s: bytes = %lld is negative", fn, (long long)bytes);
  void* p = nullptr;
  // 0 bytes still returns a valid unique pointer (like ct_cpu_alloc).
  cudaError_t err = cudaMalloc(&p, bytes == 0 ? 1 : (size_t)bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) != cudaSuccess) (void)cudaGetLastError();
    return fail(CT_ERR_OUT_OF_MEMORY,
                "%s: out of device memory allocating %lld bytes (%lld of %lld bytes free)", fn,
                (long long)bytes, (long long)f, (long long)t);
  }
  if (err != cudaSuccess) return ct::cuda_fail(fn, err);
  *out_address = (int64_t)(intptr_t)p;
  return CT_OK;
}

int ct_cuda_free(int64_t address) {
  if (address == 0) return CT_OK;
  CT_CUDA_TRY("ct_cuda_free", cudaFree((void*)(intptr_t)address));
  return CT_OK;
}

int ct_cuda_malloc_host(int64_t bytes, int64_t* out_address) {
  const char* fn = "ct_cuda_malloc_host";
  if (!out_address) return fail(CT_ERR_INVALID_ARG, "%s: out_address is NULL", fn);
  *out_address = 0;
  if (bytes < 0) return fail(CT_ERR_INVALID_ARG, "%s: bytes = %lld is negative", fn, (long long)bytes);
  void* p = nullptr;
  cudaError_t err = cudaMallocHost(&p, bytes == 0 ? 1 : (size_t)bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    return fail(CT_ERR_OUT_OF_MEMORY, "%s: out of page-locked host memory allocating %lld bytes",
                fn, (long long)bytes);
  }
  if (err != cudaSuccess) return ct::cuda_fail(fn, err);
  *out_address = (int64_t)(intptr_t)p;
  return CT_OK;
}

int ct_cuda_free_host(int64_t address) {
  if (address == 0) return CT_OK;
  CT_CUDA_TRY("ct_cuda_free_host", cudaFreeHost((void*)(intptr_t)address));
  return CT_OK;
}

int ct_cuda_memcpy(int64_t dst, int64_t src, int64_t bytes, int kind, int64_t stream) {
  const char* fn = "ct_cuda_memcpy";
  if (bytes < 0) return fail(CT_ERR_INVALID_ARG, "%s: bytes = %lld is negative", fn, (long long)bytes);
  if (bytes == 0) return CT_OK;
  if (!dst || !src) return fail(CT_ERR_INVALID_ARG, "%s: NULL %s", fn, dst ? "src" : "dst");
  cudaMemcpyKind k;
  switch (kind) {
    case CT_MEMCPY_HOST_TO_DEVICE: k = cudaMemcpyHostToDevice; break;
    case CT_MEMCPY_DEVICE_TO_HOST: k = cudaMemcpyDeviceToHost; break;
    case CT_MEMCPY_DEVICE_TO_DEVICE: k = cudaMemcpyDeviceToDevice; break;
    default: return fail(CT_ERR_INVALID_ARG, "%s: unknown copy kind %d", fn, kind);
  }
  cudaStream_t s = ct::as_stream(stream);
  CT_CUDA_TRY(fn, cudaMemcpyAsync((void*)(intptr_t)dst, (const void*)(intptr_t)src, (size_t)bytes, k, s));
  // Data copied to the host is ready when we return (pinned destinations would otherwise
  // complete asynchronously).
  if (kind == CT_MEMCPY_DEVICE_TO_HOST) CT_CUDA_TRY(fn, cudaStreamSynchronize(s));
  return CT_OK;
}

int ct_cuda_memset(int64_t dst, int value, int64_t bytes, int64_t stream) {
  const char* fn = "ct_cuda_memset";
  if (bytes < 0) return fail(CT_ERR_INVALID_ARG, "%s: bytes = %lld is negative", fn, (long long)bytes);
  if (bytes == 0) return CT_OK;
  if (!dst) return fail(CT_ERR_INVALID_ARG, "%s: dst is NULL", fn);
  CT_CUDA_TRY(fn, cudaMemsetAsync((void*)(intptr_t)dst, value, (size_t)bytes, ct::as_stream(stream)));
  return CT_OK;
}

int ct_cuda_stream_create(int64_t* out_stream) {
  if (!out_stream) return fail(CT_ERR_INVALID_ARG, "ct_cuda_stream_create: out_stream is NULL");
  *out_stream = 0;
  cudaStream_t s = nullptr;
  // A blocking stream: it still synchronizes with the legacy default stream 0, so work
  // that Java enqueues on stream 0 keeps its ordering with work on created streams.
  CT_CUDA_TRY("ct_cuda_stream_create", cudaStreamCreate(&s));
  *out_stream = (int64_t)(intptr_t)s;
  return CT_OK;
}

int ct_cuda_stream_destroy(int64_t stream) {
  if (stream == 0) return CT_OK;  // the default stream is never destroyed
  CT_CUDA_TRY("ct_cuda_stream_destroy", cudaStreamDestroy(ct::as_stream(stream)));
  return CT_OK;
}

int ct_cuda_stream_synchronize(int64_t stream) {
  CT_CUDA_TRY("ct_cuda_stream_synchronize", cudaStreamSynchronize(ct::as_stream(stream)));
  return CT_OK;
}

int ct_cuda_stream_wait_event(int64_t stream, int64_t event) {
  if (!event) return fail(CT_ERR_INVALID_ARG, "ct_cuda_stream_wait_event: event is 0");
  CT_CUDA_TRY("ct_cuda_stream_wait_event",
              cudaStreamWaitEvent(ct::as_stream(stream), (cudaEvent_t)(intptr_t)event, 0));
  return CT_OK;
}

int ct_cuda_event_create(int64_t* out_event) {
  if (!out_event) return fail(CT_ERR_INVALID_ARG, "ct_cuda_event_create: out_event is NULL");
  *out_event = 0;
  cudaEvent_t e = nullptr;
  CT_CUDA_TRY("ct_cuda_event_create", cudaEventCreate(&e));  // with timing (elapsed_ms)
  *out_event = (int64_t)(intptr_t)e;
  return CT_OK;
}

int ct_cuda_event_destroy(int64_t event) {
  if (!event) return CT_OK;
  CT_CUDA_TRY("ct_cuda_event_destroy", cudaEventDestroy((cudaEvent_t)(intptr_t)event));
  return CT_OK;
}

int ct_cuda_event_record(int64_t event, int64_t stream) {
  if (!event) return fail(CT_ERR_INVALID_ARG, "ct_cuda_event_record: event is 0");
  CT_CUDA_TRY("ct_cuda_event_record", cudaEventRecord((cudaEvent_t)(intptr_t)event, ct::as_stream(stream)));
  return CT_OK;
}

int ct_cuda_event_synchronize(int64_t event) {
  if (!event) return fail(CT_ERR_INVALID_ARG, "ct_cuda_event_synchronize: event is 0");
  CT_CUDA_TRY("ct_cuda_event_synchronize", cudaEventSynchronize((cudaEvent_t)(intptr_t)event));
  return CT_OK;
}

int ct_cuda_event_elapsed_ms(int64_t start, int64_t end, float* ms) {
  if (!start || !end || !ms) return fail(CT_ERR_INVALID_ARG, "ct_cuda_event_elapsed_ms: NULL argument");
  CT_CUDA_TRY("ct_cuda_event_elapsed_ms",
              cudaEventElapsedTime(ms, (cudaEvent_t)(intptr_t)start, (cudaEvent_t)(intptr_t)end));
  return CT_OK;
}

}  // extern "C"

// ------------------------------------------------------------------ fault injection (test only)
namespace {
/* kind NONE: writes 1 to scratch[0]. kind ILLEGAL_ADDRESS: writes through a pointer into the
 * top of the 64-bit address space, where no allocation lives: the SM raises an illegal-address
 * exception (cudaErrorIllegalAddress, sticky). One thread; cost nil. */
__global__ void debug_fault_kernel(int kind, int* scratch) {
  if (kind == CT_DEBUG_FAULT_ILLEGAL_ADDRESS) {
    volatile int* bad = reinterpret_cast<volatile int*>(static_cast<uintptr_t>(0xFFFFFFFFFFF00000ull));
    *bad = 42;
  } else {
    scratch[0] = 1;
  }
}
}  // namespace

extern "C" int ct_cuda_last_error_code(void) { return ct::g_error_code; }

extern "C" int ct_cuda_debug_fault_kernel(int kind, int64_t scratch, int64_t stream) {
  const char* fn = "ct_cuda_debug_fault_kernel";
  if (kind != CT_DEBUG_FAULT_NONE && kind != CT_DEBUG_FAULT_ILLEGAL_ADDRESS)
    return ct::fail(CT_ERR_INVALID_ARG, "%s: unknown fault kind %d", fn, kind);
  if (kind == CT_DEBUG_FAULT_NONE && scratch == 0)
    return ct::fail(CT_ERR_INVALID_ARG, "%s: scratch is NULL", fn);
  debug_fault_kernel<<<1, 1, 0, ct::as_stream(stream)>>>(kind, reinterpret_cast<int*>(static_cast<intptr_t>(scratch)));
  CT_TRY_STATUS(ct::check_launch(fn));
  CT_CUDA_TRY(fn, cudaStreamSynchronize(ct::as_stream(stream)));
  return CT_OK;
}
