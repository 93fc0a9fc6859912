/*
 * Data movement (elementwise.h): strided copy with dtype conversion, where, fill and
 * int4 pack/unpack.
 *
 * copy   same dtype: a bit copy by element size (one cudaMemcpyAsync when both sides are
 *        dense); otherwise one map1 kernel per (dst, src) dtype pair with ct_cpu_copy's
 *        conversion rules (common.cuh convert()). Cost: (sizeof(src) + sizeof(dst)) * n bytes.
 * where  out = cond ? a : b, a bit select by element size; dense operands use 16-byte
 *        vectors of the widest operand, others packed-shape index math.
 *        Cost: (1 + 3 * sizeof(dtype)) * n bytes.
 * fill   n contiguous elements; the value is converted once per thread; 16-byte vector
 *        stores when aligned. Cost: sizeof(dtype) * n bytes written.
 * int4   unpack: thread per packed byte -> two sign-extended int8; pack: thread per packed
 *        byte <- two int8 masked to nibbles (odd n: high nibble of the last byte is 0).
 *        Cost: 1.5 n bytes each.
 */
#include "common.cuh"
#include "cortado/elementwise.h"
#include "elementwise.cuh"

namespace ct {
namespace {

template <class D, class S> struct convert_op {
  __device__ __forceinline__ D operator()(S s) const { return convert<D, S>(s); }
};
template <class T> struct identity_op {
  __device__ __forceinline__ T operator()(T s) const { return s; }
};

// ------------------------------------------------------------------ where
template <class T>
__global__ void __launch_bounds__(kThreads)
where_contig(int64_t n, T* __restrict__ out, const boolean* __restrict__ c, const T* __restrict__ a,
             const T* __restrict__ b, int vec) {
  constexpr int N = 16 / sizeof(T);
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  int64_t start = 0;
  if (vec) {
    const int64_t nv = n / N;
    for (int64_t i = tid; i < nv; i += step) {
      const vec_t<boolean, N> cv = reinterpret_cast<const vec_t<boolean, N>*>(c)[i];
      const vec_t<T, N> av = reinterpret_cast<const vec_t<T, N>*>(a)[i];
      const vec_t<T, N> bv = reinterpret_cast<const vec_t<T, N>*>(b)[i];
      vec_t<T, N> o;
#pragma unroll
      for (int j = 0; j < N; ++j) o.v[j] = cv.v[j].v ? av.v[j] : bv.v[j];
      reinterpret_cast<vec_t<T, N>*>(out)[i] = o;
    }
    start = nv * N;
  }
  for (int64_t i = start + tid; i < n; i += step) out[i] = c[i].v ? a[i] : b[i];
}

template <class I, class T>
__global__ void __launch_bounds__(kThreads)
where_strided(geom_t<4, I> g, I n, T* __restrict__ out, const boolean* __restrict__ c,
              const T* __restrict__ a, const T* __restrict__ b) {
  const I step = (I)gridDim.x * blockDim.x;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    I off[4];
    offsets(g, i, off);
    out[off[0]] = c[off[1]].v ? a[off[2]] : b[off[3]];
  }
}

// ------------------------------------------------------------------ fill
template <class T>
__global__ void __launch_bounds__(kThreads) fill_kernel(int64_t n, T* __restrict__ out, double value, int vec) {
  constexpr int N = 16 / sizeof(T);
  const T v = convert<T, double>(value);
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  int64_t start = 0;
  if (vec) {
    const int64_t nv = n / N;
    vec_t<T, N> o;
#pragma unroll
    for (int j = 0; j < N; ++j) o.v[j] = v;
    for (int64_t i = tid; i < nv; i += step) reinterpret_cast<vec_t<T, N>*>(out)[i] = o;
    start = nv * N;
  }
  for (int64_t i = start + tid; i < n; i += step) out[i] = v;
}

// ------------------------------------------------------------------ int4
__global__ void __launch_bounds__(kThreads)
int4_unpack_kernel(int64_t n, const uint8_t* __restrict__ packed, int8_t* __restrict__ out) {
  const int64_t nbytes = (n + 1) / 2;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nbytes; i += step) {
    const uint8_t byte = packed[i];
    const int8_t lo = (int8_t)((int8_t)(byte << 4) >> 4);  // sign-extend the low nibble
    const int8_t hi = (int8_t)((int8_t)byte >> 4);
    if (2 * i + 1 < n && (((uintptr_t)(out + 2 * i)) & 1) == 0) {
      char2 pair;
      pair.x = lo;
      pair.y = hi;
      *reinterpret_cast<char2*>(out + 2 * i) = pair;
    } else {
      out[2 * i] = lo;
      if (2 * i + 1 < n) out[2 * i + 1] = hi;
    }
  }
}

__global__ void __launch_bounds__(kThreads)
int4_pack_kernel(int64_t n, const int8_t* __restrict__ in, uint8_t* __restrict__ packed) {
  const int64_t nbytes = (n + 1) / 2;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nbytes; i += step) {
    const uint8_t lo = (uint8_t)in[2 * i] & 0xF;
    const uint8_t hi = (2 * i + 1 < n) ? ((uint8_t)in[2 * i + 1] & 0xF) : 0;
    packed[i] = (uint8_t)(lo | (hi << 4));
  }
}

bool dense_all(int ndim, const int64_t* shape, std::initializer_list<const int64_t*> strides) {
  for (const int64_t* s : strides)
    if (!dense1d(ndim, shape, s)) return false;
  return true;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_copy(int dst_dtype, int src_dtype, int ndim, const int64_t* shape, void* dst,
                            const int64_t* dst_strides, const void* src, const int64_t* src_strides,
                            int64_t stream) {
  const char* fn = "ct_cuda_copy";
  int64_t numel = 0;
  CT_TRY_STATUS(check_shape(fn, ndim, shape, &numel));
  CT_TRY_STATUS(check_strides(fn, "dst_strides", ndim, dst_strides));
  CT_TRY_STATUS(check_strides(fn, "src_strides", ndim, src_strides));
  if (dtype_size(dst_dtype) == 0 || dtype_size(src_dtype) == 0)
    return fail(CT_ERR_INVALID_ARG, "%s: bad dtype code %d / %d", fn, dst_dtype, src_dtype);
  if (dst_dtype == CT_I4 || src_dtype == CT_I4)
    return fail(CT_ERR_UNSUPPORTED, "%s: int4 is storage only (use int4_pack/unpack)", fn);
  if (numel == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "dst", dst));
  CT_TRY_STATUS(check_ptr(fn, "src", src));
  cudaStream_t s = as_stream(stream);
  int status = CT_OK;
  if (dst_dtype == src_dtype) {
    const int64_t es = dtype_size(dst_dtype);
    if (dense_all(ndim, shape, {dst_strides, src_strides})) {
      if (dst != src) CT_CUDA_TRY(fn, cudaMemcpyAsync(dst, src, (size_t)(numel * es), cudaMemcpyDeviceToDevice, s));
      return CT_OK;
    }
    dispatch_size(es, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (sizeof(T) <= 8)
        status = launch_map1(fn, ndim, shape, numel, (T*)dst, dst_strides, (const T*)src, src_strides,
                           identity_op<T>{}, s);
    });
    return status;
  }
  dispatch_dtype(dst_dtype, [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    dispatch_dtype(src_dtype, [&](auto stag) {
      using S = typename decltype(stag)::type;
      if constexpr (!std::is_same_v<D, S>)
        status = launch_map1(fn, ndim, shape, numel, (D*)dst, dst_strides, (const S*)src, src_strides,
                             convert_op<D, S>{}, s);
    });
  });
  return status;
}

extern "C" int ct_cuda_where(int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides,
                             const uint8_t* cond, const int64_t* cond_strides, const void* a,
                             const int64_t* a_strides, const void* b, const int64_t* b_strides,
                             int64_t stream) {
  const char* fn = "ct_cuda_where";
  int64_t numel = 0;
  CT_TRY_STATUS(check_shape(fn, ndim, shape, &numel));
  CT_TRY_STATUS(check_strides(fn, "out_strides", ndim, out_strides));
  CT_TRY_STATUS(check_strides(fn, "cond_strides", ndim, cond_strides));
  CT_TRY_STATUS(check_strides(fn, "a_strides", ndim, a_strides));
  CT_TRY_STATUS(check_strides(fn, "b_strides", ndim, b_strides));
  if (dtype_size(dtype) == 0) return fail(CT_ERR_INVALID_ARG, "%s: bad dtype code %d", fn, dtype);
  if (dtype == CT_I4) return fail(CT_ERR_UNSUPPORTED, "%s: int4 is storage only", fn);
  if (numel == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "out", out));
  CT_TRY_STATUS(check_ptr(fn, "cond", cond));
  CT_TRY_STATUS(check_ptr(fn, "a", a));
  CT_TRY_STATUS(check_ptr(fn, "b", b));
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  cudaStream_t s = as_stream(stream);
  const boolean* c = reinterpret_cast<const boolean*>(cond);
  dispatch_size(dtype_size(dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (sizeof(T) > 8) return;
    else if (dense_all(ndim, shape, {out_strides, cond_strides, a_strides, b_strides})) {
      constexpr int N = 16 / sizeof(T);
      int vec = aligned16(out) && aligned16(a) && aligned16(b) && aligned_to(cond, N);
      where_contig<T><<<grid_for(vec ? numel / N + 1 : numel, sms), kThreads, 0, s>>>(
          numel, (T*)out, c, (const T*)a, (const T*)b, vec);
    } else {
      const int64_t* st[4] = {out_strides, cond_strides, a_strides, b_strides};
      if (fits32<4>(ndim, shape, st, numel))
        where_strided<<<grid_for(numel, sms), kThreads, 0, s>>>(make_geom<4, uint32_t>(ndim, shape, st),
                                                                (uint32_t)numel, (T*)out, c, (const T*)a, (const T*)b);
      else
        where_strided<<<grid_for(numel, sms), kThreads, 0, s>>>(make_geom<4, int64_t>(ndim, shape, st),
                                                                numel, (T*)out, c, (const T*)a, (const T*)b);
    }
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_fill(int dtype, int64_t n, void* out, double value, int64_t stream) {
  const char* fn = "ct_cuda_fill";
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n = %lld is negative", fn, (long long)n);
  if (dtype_size(dtype) == 0) return fail(CT_ERR_INVALID_ARG, "%s: bad dtype code %d", fn, dtype);
  if (dtype == CT_I4) return fail(CT_ERR_UNSUPPORTED, "%s: int4 is storage only", fn);
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "out", out));
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  cudaStream_t s = as_stream(stream);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int N = 16 / sizeof(T);
    int vec = aligned16(out);
    fill_kernel<T><<<grid_for(vec ? n / N + 1 : n, sms), kThreads, 0, s>>>(n, (T*)out, value, vec);
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_int4_unpack(int64_t n, const uint8_t* packed, int8_t* out, int64_t stream) {
  const char* fn = "ct_cuda_int4_unpack";
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n = %lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "packed", packed));
  CT_TRY_STATUS(check_ptr(fn, "out", out));
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  int4_unpack_kernel<<<grid_for((n + 1) / 2, sms), kThreads, 0, as_stream(stream)>>>(n, packed, out);
  return check_launch(fn);
}

extern "C" int ct_cuda_int4_pack(int64_t n, const int8_t* in, uint8_t* packed, int64_t stream) {
  const char* fn = "ct_cuda_int4_pack";
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n = %lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "in", in));
  CT_TRY_STATUS(check_ptr(fn, "packed", packed));
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  int4_pack_kernel<<<grid_for((n + 1) / 2, sms), kThreads, 0, as_stream(stream)>>>(n, in, packed);
  return check_launch(fn);
}
