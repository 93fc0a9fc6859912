/*
 * Internal helpers shared by the CUDA kernel files (never exported; the library is built
 * with -fvisibility=hidden and only the ct_cuda_* declarations of the public headers are
 * pushed to default visibility):
 *  - error reporting into the thread-local buffer behind ct_cuda_last_error(), CUDA error
 *    translation (CT_ERR_CUDA / CT_ERR_OUT_OF_MEMORY) and launch checks;
 *  - host-side validation of ndim / shapes / strides / pointers;
 *  - element types (f16/bf16 computed in float32, stored with round-to-nearest-even),
 *    dtype dispatch and conversions with the CPU library's semantics;
 *  - strided N-d geometry packed into a by-value kernel parameter (32-bit index math when
 *    every offset fits, 64-bit otherwise);
 *  - warp/block reductions and launch-size helpers;
 *  - Philox4x32-10 (random.h).
 */
#ifndef CORTADO_CUDA_COMMON_CUH
#define CORTADO_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cortado/common.h"
#include "shared.h"

namespace ct {

// ------------------------------------------------------------------ errors (runtime.cu)
/* Formats the message into the thread-local error buffer and returns `status`. */
int fail(int status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
/* Maps a CUDA error to CT_ERR_CUDA (or CT_ERR_OUT_OF_MEMORY), clears the non-sticky error
 * state and records "fn: CUDA error N (name): text". */
int cuda_fail(const char* fn, cudaError_t err);
/* cudaGetLastError() after a kernel launch. */
int check_launch(const char* fn);
/* Multiprocessor count of the current device (cached per device). */
int sm_count(const char* fn, int* out);
const char* dtype_name(int dtype);

#define CT_CUDA_TRY(fn, call)                              \
  do {                                                     \
    cudaError_t ct_err_ = (call);                          \
    if (ct_err_ != cudaSuccess) return ::ct::cuda_fail(fn, ct_err_); \
  } while (0)

#define CT_TRY_STATUS(expr)            \
  do {                                 \
    int ct_st_ = (expr);               \
    if (ct_st_ != CT_OK) return ct_st_; \
  } while (0)

inline cudaStream_t as_stream(int64_t s) { return reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(s)); }

// ------------------------------------------------------------------ validation (runtime.cu)
/* ndim in [0, CT_MAX_DIMS], shape non-NULL when ndim > 0, sizes >= 0; sets *numel. */
int check_shape(const char* fn, int ndim, const int64_t* shape, int64_t* numel);
/* strides non-NULL when ndim > 0 and >= 0. */
int check_strides(const char* fn, const char* name, int ndim, const int64_t* strides);
inline int check_ptr(const char* fn, const char* name, const void* p) {
  return p ? CT_OK : fail(CT_ERR_INVALID_ARG, "%s: %s is NULL", fn, name);
}


// ------------------------------------------------------------------ element types
/* BOOL is a byte holding 0 or 1; a distinct type so conversions to it mean (x != 0). */
struct boolean { uint8_t v; };

template <class T> struct type_tag { using type = T; };

/* Calls f(type_tag<T>{}) with the storage type of a dtype (F32..BOOL). Returns false for
 * unknown codes and I4 (storage only). */
template <class F> inline bool dispatch_dtype(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(type_tag<float>{}); return true;
    case CT_F64: f(type_tag<double>{}); return true;
    case CT_F16: f(type_tag<__half>{}); return true;
    case CT_BF16: f(type_tag<__nv_bfloat16>{}); return true;
    case CT_I8: f(type_tag<int8_t>{}); return true;
    case CT_U8: f(type_tag<uint8_t>{}); return true;
    case CT_I32: f(type_tag<int32_t>{}); return true;
    case CT_I64: f(type_tag<int64_t>{}); return true;
    case CT_BOOL: f(type_tag<boolean>{}); return true;
    default: return false;
  }
}
/* Floating dtypes only (F32 F64 F16 BF16). */
template <class F> inline bool dispatch_float(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(type_tag<float>{}); return true;
    case CT_F64: f(type_tag<double>{}); return true;
    case CT_F16: f(type_tag<__half>{}); return true;
    case CT_BF16: f(type_tag<__nv_bfloat16>{}); return true;
    default: return false;
  }
}
/* Calls f(type_tag<U>{}) with an unsigned/opaque type of the element size (bit copies). */
template <class F> inline bool dispatch_size(int64_t esize, F&& f) {
  switch (esize) {
    case 1: f(type_tag<uint8_t>{}); return true;
    case 2: f(type_tag<uint16_t>{}); return true;
    case 4: f(type_tag<uint32_t>{}); return true;
    case 8: f(type_tag<uint64_t>{}); return true;
    case 16: f(type_tag<uint4>{}); return true;
    default: return false;
  }
}

template <class T> constexpr bool is_half_v =
    std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;
template <class T> constexpr bool is_float_v = std::is_floating_point_v<T> || is_half_v<T>;
template <class T> constexpr bool is_int_v = std::is_integral_v<T>;  // I8 U8 I32 I64

/* The arithmetic type an element is computed in: float for f32/f16/bf16, double for f64,
 * the integer type itself for integers. */
template <class T> struct compute { using type = T; };
template <> struct compute<__half> { using type = float; };
template <> struct compute<__nv_bfloat16> { using type = float; };
template <> struct compute<boolean> { using type = uint8_t; };
template <class T> using compute_t = typename compute<T>::type;

template <class T> __device__ __forceinline__ compute_t<T> load(T v) { return v; }
template <> __device__ __forceinline__ float load<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float load<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ uint8_t load<boolean>(boolean v) { return v.v; }

template <class T> __device__ __forceinline__ T store(compute_t<T> v) { return v; }
template <> __device__ __forceinline__ __half store<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ boolean store<boolean>(uint8_t v) { return boolean{(uint8_t)(v != 0)}; }

/* Widest exact representation of a source element: float (f32/f16/bf16), double, int64. */
template <class S> __device__ __forceinline__ auto widen(S s) {
  if constexpr (is_half_v<S>) return load<S>(s);
  else if constexpr (std::is_same_v<S, boolean>) return (int64_t)(s.v != 0);
  else if constexpr (std::is_integral_v<S>) return (int64_t)s;
  else return s;  // float, double
}

/* dst = (D) src with ct_cpu_copy semantics: 16-bit floats are rounded once, to nearest
 * even, from the exact source value (double and 32/64-bit integers go through double,
 * never through float, so there is no double rounding); float -> integer truncates toward
 * zero through int64 (out of range: unspecified, never traps); anything -> BOOL is x != 0. */
template <class D, class S> __device__ __forceinline__ D convert(S s) {
  auto w = widen(s);
  using W = decltype(w);
  if constexpr (std::is_same_v<D, boolean>) {
    return boolean{(uint8_t)(w != W(0))};
  } else if constexpr (std::is_same_v<D, __half>) {
    if constexpr (std::is_same_v<W, float>) return __float2half_rn(w);
    else return __double2half((double)w);
  } else if constexpr (std::is_same_v<D, __nv_bfloat16>) {
    if constexpr (std::is_same_v<W, float>) return __float2bfloat16_rn(w);
    else return __double2bfloat16((double)w);
  } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<W>) {
    return (D)(int64_t)w;
  } else {
    return (D)w;
  }
}

// ------------------------------------------------------------------ vectors
/* N elements loaded/stored as one aligned access (16 bytes for the widest operand). */
template <class T, int N> struct alignas(sizeof(T) * N) vec_t { T v[N]; };

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
inline bool aligned_to(const void* p, size_t bytes) { return (reinterpret_cast<uintptr_t>(p) % bytes) == 0; }

// ------------------------------------------------------------------ strided geometry
/* Shape of the output and the strides (elements) of K operands (operand 0 = output),
 * passed to kernels BY VALUE. Dimensions are stored innermost first so the index
 * decomposition walks d = 0..ndim-1. I is uint32_t when numel and every operand's largest
 * offset are below 2^31 (cheap 32-bit div/mod), int64_t otherwise. */
template <int K, class I> struct geom_t {
  int ndim;
  I shape[CT_MAX_DIMS];
  I stride[K][CT_MAX_DIMS];
};

template <int K, class I>
__device__ __forceinline__ void offsets(const geom_t<K, I>& g, I linear, I (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) off[k] = 0;
#pragma unroll
  for (int d = 0; d < CT_MAX_DIMS; ++d) {
    if (d >= g.ndim) break;
    I s = g.shape[d];
    I q = linear / s;
    I r = linear - q * s;
    linear = q;
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] += r * g.stride[k][d];
  }
}

/* True when 32-bit index math is exact for this geometry. */
template <int K>
inline bool fits32(int ndim, const int64_t* shape, const int64_t* const* strides, int64_t numel) {
  const int64_t lim = INT32_MAX;
  if (numel > lim) return false;
  for (int k = 0; k < K; ++k) {
    int64_t maxoff = 0;
    for (int d = 0; d < ndim; ++d) {
      if (shape[d] == 0) return true;
      if (strides[k][d] > lim) return false;
      maxoff += (shape[d] - 1) * strides[k][d];
      if (maxoff > lim) return false;
    }
  }
  return true;
}

template <int K, class I>
inline geom_t<K, I> make_geom(int ndim, const int64_t* shape, const int64_t* const* strides) {
  geom_t<K, I> g{};
  g.ndim = ndim;
  for (int d = 0; d < ndim; ++d) {  // reversed: innermost first
    g.shape[d] = (I)shape[ndim - 1 - d];
    for (int k = 0; k < K; ++k) g.stride[k][d] = (I)strides[k][ndim - 1 - d];
  }
  for (int d = ndim; d < CT_MAX_DIMS; ++d) {
    g.shape[d] = 1;
    for (int k = 0; k < K; ++k) g.stride[k][d] = 0;
  }
  return g;
}

/* True when the operand is one dense run: ndim <= 1 and stride 1 (or a single element). */
inline bool dense1d(int ndim, const int64_t* shape, const int64_t* strides) {
  if (ndim == 0) return true;
  if (ndim == 1) return strides[0] == 1 || shape[0] <= 1;
  return false;
}

// ------------------------------------------------------------------ launch sizes
constexpr int kThreads = 256;

/* Blocks for a grid-stride loop over `work` items: enough to fill the GPU a few times,
 * never more than needed. */
inline unsigned grid_for(int64_t work, int sms, int threads = kThreads) {
  int64_t need = (work + threads - 1) / threads;
  int64_t cap = (int64_t)sms * (2048 / threads) * 4;
  if (need > cap) need = cap;
  return (unsigned)(need < 1 ? 1 : need);
}

// ------------------------------------------------------------------ warp/block reductions
/* Reduces a trivially copyable value over the warp with op(a, b); every lane gets the
 * result when `all` (xor butterfly). */
template <class T, class Op> __device__ __forceinline__ T warp_allreduce(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* Block-wide all-reduce of a scalar; `scratch` holds 32 T in shared memory. Every thread
 * of the block must call it. */
template <class T, class Op>
__device__ __forceinline__ T block_allreduce(T v, Op op, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_allreduce(v, op);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < nwarps; ++w) r = op(r, scratch[w]);
  return r;
}

}  // namespace ct

#endif
