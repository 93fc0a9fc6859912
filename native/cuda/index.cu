/*
 * Gather (index.h): out[o, j, i] = src[o, idx(j), i], idx(j) = index[j] (+ axis_len if < 0);
 * index_add (its backward) is at the end of this file.
 *
 * Algorithm: two kernels on the stream, then one synchronization.
 *  1. check: one thread per index value; a value outside [-axis_len, axis_len) does an
 *     atomicMin of its position into a device word (initialized to UINT64_MAX), so the
 *     FIRST offending position is reported whatever the thread order.
 *  2. gather: one thread per output unit, grid-stride. Rows of `inner` elements are moved
 *     in the widest unit that divides the row and is aligned (16-byte uint4 down to the
 *     element size), so an embedding lookup with 4096-float rows moves 1024 x 16 bytes per
 *     row. Offending indices are skipped (their output rows are left untouched).
 *  The launcher copies the word back (which waits for both kernels), frees it, and on
 *  error reads the offending value and returns CT_ERR_INDEX_OUT_OF_RANGE naming the value
 *  and its position. 32-bit index math when the output has fewer than 2^31 units.
 * Cost: one read + one write per output element, 2 * n_out * sizeof(dtype) bytes, plus
 * n_index index reads (twice) and a host round trip for the check.
 */
#include "common.cuh"
#include "cortado/index.h"

namespace ct {
namespace {

const char* const kFn = "ct_cuda_gather";

template <class J>
__global__ void __launch_bounds__(kThreads)
gather_check(int64_t n_index, const J* __restrict__ index, int64_t axis_len, unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n_index; j += step) {
    const int64_t v = (int64_t)index[j];
    if (v < -axis_len || v >= axis_len) atomicMin(bad, (unsigned long long)j);
  }
}

/* U is the unit moved (element size or wider), I the index type. inner counts units. */
template <class U, class J, class I>
__global__ void __launch_bounds__(kThreads)
gather_kernel(I total, I inner, I n_index, I axis_len, const U* __restrict__ src, const J* __restrict__ index,
              U* __restrict__ out) {
  const I step = (I)gridDim.x * blockDim.x;
  for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
    const I i = t % inner;
    const I r = t / inner;
    const I j = r % n_index;
    const I o = r / n_index;
    int64_t v = (int64_t)__ldg(index + j);
    if (v < 0) v += (int64_t)axis_len;
    if (v < 0 || v >= (int64_t)axis_len) continue;
    out[t] = src[((I)o * axis_len + (I)v) * inner + i];
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_gather(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner,
                              const void* src, int64_t n_index, const void* index, void* out, int64_t stream) {
  if (outer < 0 || axis_len < 0 || inner < 0 || n_index < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: negative size", kFn);
  if (dtype_size(dtype) == 0) return fail(CT_ERR_INVALID_ARG, "%s: bad dtype code %d", kFn, dtype);
  if (dtype == CT_I4) return fail(CT_ERR_UNSUPPORTED, "%s: int4 is storage only", kFn);
  if (index_dtype != CT_I32 && index_dtype != CT_I64)
    return fail(CT_ERR_INVALID_ARG, "%s: index dtype must be int32 or int64, got %s", kFn, dtype_name(index_dtype));
  if (outer == 0 || inner == 0 || n_index == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(kFn, "index", index));
  CT_TRY_STATUS(check_ptr(kFn, "out", out));
  if (axis_len > 0) CT_TRY_STATUS(check_ptr(kFn, "src", src));
  int sms = 0;
  CT_TRY_STATUS(sm_count(kFn, &sms));
  cudaStream_t s = as_stream(stream);

  // Widest unit: 16, 8, 4, 2 bytes dividing the row and aligning both base pointers.
  const int64_t es = dtype_size(dtype);
  const int64_t row_bytes = inner * es;
  int64_t unit = es;
  for (int64_t u = 16; u > es; u /= 2) {
    if (row_bytes % u == 0 && aligned_to(src, u) && aligned_to(out, u)) {
      unit = u;
      break;
    }
  }
  const int64_t inner_u = row_bytes / unit;
  const int64_t total = outer * n_index * inner_u;

  unsigned long long* bad = nullptr;
  CT_CUDA_TRY(kFn, cudaMallocAsync((void**)&bad, sizeof(unsigned long long), s));
  int status = CT_OK;
  cudaError_t err = cudaMemsetAsync(bad, 0xFF, sizeof(unsigned long long), s);
  if (err != cudaSuccess) status = cuda_fail(kFn, err);
  auto launch = [&](auto jtag) {
    using J = typename decltype(jtag)::type;
    const J* idx = (const J*)index;
    gather_check<J><<<grid_for(n_index, sms), kThreads, 0, s>>>(n_index, idx, axis_len, bad);
    dispatch_size(unit, [&](auto utag) {
      using U = typename decltype(utag)::type;
      const unsigned grid = grid_for(total, sms);
      if (total <= INT32_MAX && outer * axis_len * inner_u <= INT32_MAX)
        gather_kernel<U, J, uint32_t><<<grid, kThreads, 0, s>>>((uint32_t)total, (uint32_t)inner_u,
                                                                 (uint32_t)n_index, (uint32_t)axis_len,
                                                                 (const U*)src, idx, (U*)out);
      else
        gather_kernel<U, J, int64_t><<<grid, kThreads, 0, s>>>(total, inner_u, n_index, axis_len, (const U*)src,
                                                                idx, (U*)out);
    });
  };
  if (status == CT_OK) {
    if (index_dtype == CT_I32) launch(type_tag<int32_t>{});
    else launch(type_tag<int64_t>{});
    status = check_launch(kFn);
  }
  unsigned long long bad_pos = ~0ull;
  if (status == CT_OK) {
    err = cudaMemcpyAsync(&bad_pos, bad, sizeof bad_pos, cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);
    if (err != cudaSuccess) status = cuda_fail(kFn, err);
  }
  err = cudaFreeAsync(bad, s);
  if (status == CT_OK && err != cudaSuccess) status = cuda_fail(kFn, err);
  if (status != CT_OK || bad_pos == ~0ull) return status;

  // Read the offending value for the message.
  int64_t value = 0;
  const int64_t isz = index_dtype == CT_I32 ? 4 : 8;
  int32_t v32 = 0;
  void* dst = index_dtype == CT_I32 ? (void*)&v32 : (void*)&value;
  err = cudaMemcpy(dst, (const char*)index + (int64_t)bad_pos * isz, (size_t)isz, cudaMemcpyDeviceToHost);
  if (err != cudaSuccess) return cuda_fail(kFn, err);
  if (index_dtype == CT_I32) value = v32;
  return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: index %lld at position %lld is out of range for an axis of length %lld",
              kFn, (long long)value, (long long)bad_pos, (long long)axis_len);
}

/*
 * index_add (index.h): out[o, idx(j), i] += src[o, j, i].
 * Algorithm: the same check kernel as gather (first bad position via atomicMin), then one
 * thread per source element (grid-stride) doing a float atomicAdd into out (f32, f64), or,
 * for f16/bf16, into a zeroed float32 scratch copy of the output geometry that a last kernel
 * adds to out with one rounding per element. Offending indices are skipped; the launcher
 * synchronizes once to read the flag and reports the value and position.
 * The order of the atomic additions is not fixed: float results may differ in the last bits
 * from run to run (the CPU kernel is deterministic).
 * Cost: reads src once (e * outer * n_index * inner bytes), one atomic per source element
 * (contended when many indices repeat, e.g. a padding token); 16-bit: + 4 bytes written and
 * read per output element for the scratch.
 */
namespace ct {
namespace {

template <class T, class A, class J>
__global__ void __launch_bounds__(kThreads)
index_add_kernel(int64_t total, int64_t inner, int64_t n_index, int64_t axis_len, const T* __restrict__ src,
                 const J* __restrict__ index, A* out) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
    const int64_t i = t % inner;
    const int64_t r = t / inner;
    const int64_t j = r % n_index;
    const int64_t o = r / n_index;
    int64_t v = (int64_t)__ldg(index + j);
    if (v < 0) v += axis_len;
    if (v < 0 || v >= axis_len) continue;
    atomicAdd(out + (o * axis_len + v) * inner + i, (A)load<T>(src[t]));
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
add_scratch(int64_t n, const float* __restrict__ acc, T* out) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += step)
    out[k] = store<T>(load<T>(out[k]) + acc[k]);
}

}  // namespace
}  // namespace ct

extern "C" int ct_cuda_index_add(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner,
                                 int64_t n_index, const void* index, const void* src, void* out, int64_t stream) {
  const char* fn = "ct_cuda_index_add";
  if (outer < 0 || axis_len < 0 || inner < 0 || n_index < 0) return fail(CT_ERR_INVALID_ARG, "%s: negative size", fn);
  if (dtype != CT_F32 && dtype != CT_F64 && dtype != CT_F16 && dtype != CT_BF16)
    return fail(dtype_size(dtype) ? CT_ERR_UNSUPPORTED : CT_ERR_INVALID_ARG,
                "%s: dtype %s is not supported (F32, F64, F16, BF16 only)", fn, dtype_name(dtype));
  if (index_dtype != CT_I32 && index_dtype != CT_I64)
    return fail(CT_ERR_INVALID_ARG, "%s: index dtype must be int32 or int64, got %s", fn, dtype_name(index_dtype));
  int64_t t;
  if (__builtin_mul_overflow(outer, axis_len, &t) || __builtin_mul_overflow(t, inner, &t) ||
      __builtin_mul_overflow(outer, n_index, &t) || __builtin_mul_overflow(t, inner, &t))
    return fail(CT_ERR_INVALID_ARG, "%s: sizes overflow int64", fn);
  if (n_index == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "index", index));
  const int64_t total = outer * n_index * inner;
  const int64_t n_out = outer * axis_len * inner;
  if (total > 0) {
    CT_TRY_STATUS(check_ptr(fn, "src", src));
    CT_TRY_STATUS(check_ptr(fn, "out", out));
  }
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  cudaStream_t s = as_stream(stream);
  const bool half = dtype == CT_F16 || dtype == CT_BF16;
  void* scratch = nullptr;  // [bad flag, 16 bytes] [float32 accumulators for 16-bit dtypes]
  CT_CUDA_TRY(fn, cudaMallocAsync(&scratch, 16 + (half && total > 0 ? sizeof(float) * (size_t)n_out : 0), s));
  unsigned long long* bad = (unsigned long long*)scratch;
  float* acc = (float*)((char*)scratch + 16);
  int status = CT_OK;
  cudaError_t err = cudaMemsetAsync(bad, 0xFF, sizeof(unsigned long long), s);
  if (err == cudaSuccess && half && total > 0) err = cudaMemsetAsync(acc, 0, sizeof(float) * (size_t)n_out, s);
  if (err != cudaSuccess) status = cuda_fail(fn, err);
  if (status == CT_OK) {
    auto launch = [&](auto jtag) {
      using J = typename decltype(jtag)::type;
      const J* idx = (const J*)index;
      gather_check<J><<<grid_for(n_index, sms), kThreads, 0, s>>>(n_index, idx, axis_len, bad);
      if (total == 0) return;
      const unsigned grid = grid_for(total, sms);
      dispatch_float(dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (is_half_v<T>) {
          index_add_kernel<T, float, J><<<grid, kThreads, 0, s>>>(total, inner, n_index, axis_len, (const T*)src, idx,
                                                                  acc);
          add_scratch<T><<<grid_for(n_out, sms), kThreads, 0, s>>>(n_out, acc, (T*)out);
        } else {
          index_add_kernel<T, T, J><<<grid, kThreads, 0, s>>>(total, inner, n_index, axis_len, (const T*)src, idx,
                                                              (T*)out);
        }
      });
    };
    if (index_dtype == CT_I32) launch(type_tag<int32_t>{});
    else launch(type_tag<int64_t>{});
    status = check_launch(fn);
  }
  unsigned long long bad_pos = ~0ull;
  if (status == CT_OK) {
    err = cudaMemcpyAsync(&bad_pos, bad, sizeof bad_pos, cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);
    if (err != cudaSuccess) status = cuda_fail(fn, err);
  }
  err = cudaFreeAsync(scratch, s);
  if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
  if (status != CT_OK || bad_pos == ~0ull) return status;
  int64_t value = 0;
  int32_t v32 = 0;
  const int64_t isz = index_dtype == CT_I32 ? 4 : 8;
  err = cudaMemcpy(index_dtype == CT_I32 ? (void*)&v32 : (void*)&value, (const char*)index + (int64_t)bad_pos * isz,
                   (size_t)isz, cudaMemcpyDeviceToHost);
  if (err != cudaSuccess) return cuda_fail(fn, err);
  if (index_dtype == CT_I32) value = v32;
  return fail(CT_ERR_INDEX_OUT_OF_RANGE,
              "%s: index %lld at position %lld is out of range for an axis of length %lld", fn, (long long)value,
              (long long)bad_pos, (long long)axis_len);
}
