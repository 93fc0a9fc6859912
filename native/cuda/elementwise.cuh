/*
 * Generic elementwise map kernels shared by elementwise_unary.cu, elementwise_binary.cu and
 * elementwise_copy.cu. An op is a functor taking the inputs' storage types and returning
 * the output's storage type (it loads to the compute type, computes, rounds on store).
 *
 *  map*_contig   every operand dense (ndim <= 1, stride 1): grid-stride loop; when every
 *                pointer is aligned to its vector width, each thread moves 16 bytes of the
 *                widest operand per access (float4, 8 x bf16, 16 x int8...) and the last
 *                n % N elements go through a scalar tail.
 *  map*_strided  any strides (0 = broadcast): grid-stride over the linear output index,
 *                decomposed with the packed output shape into one offset per operand;
 *                32-bit index math when every offset fits (I = uint32_t), else 64-bit.
 */
#ifndef CORTADO_CUDA_ELEMENTWISE_CUH
#define CORTADO_CUDA_ELEMENTWISE_CUH

#include "common.cuh"

namespace ct {

template <class A, class B> __host__ __device__ constexpr int vec_width2() {
  return 16 / (int)(sizeof(A) > sizeof(B) ? sizeof(A) : sizeof(B));
}
template <class A, class B, class C> __host__ __device__ constexpr int vec_width3() {
  return vec_width2<A, B>() < vec_width2<A, C>() ? vec_width2<A, B>() : vec_width2<A, C>();
}

// ------------------------------------------------------------------ unary
template <class F, class To, class Ti>
__global__ void __launch_bounds__(kThreads)
map1_contig(int64_t n, To* __restrict__ out, const Ti* __restrict__ x, F f, int vec) {
  constexpr int N = vec_width2<To, Ti>();
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  int64_t start = 0;
  if (vec) {
    const int64_t nv = n / N;
    const vec_t<Ti, N>* xv = reinterpret_cast<const vec_t<Ti, N>*>(x);
    vec_t<To, N>* ov = reinterpret_cast<vec_t<To, N>*>(out);
    for (int64_t i = tid; i < nv; i += step) {
      const vec_t<Ti, N> a = xv[i];
      vec_t<To, N> o;
#pragma unroll
      for (int j = 0; j < N; ++j) o.v[j] = f(a.v[j]);
      ov[i] = o;
    }
    start = nv * N;
  }
  for (int64_t i = start + tid; i < n; i += step) out[i] = f(x[i]);
}

template <class F, class I, class To, class Ti>
__global__ void __launch_bounds__(kThreads)
map1_strided(geom_t<2, I> g, I n, To* __restrict__ out, const Ti* __restrict__ x, F f) {
  const I step = (I)gridDim.x * blockDim.x;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    I off[2];
    offsets(g, i, off);
    out[off[0]] = f(x[off[1]]);
  }
}

/* numel > 0 and arguments validated by the caller. */
template <class F, class To, class Ti>
int launch_map1(const char* fn, int ndim, const int64_t* shape, int64_t numel, To* out,
                const int64_t* os, const Ti* x, const int64_t* xs, F f, cudaStream_t s) {
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  if (dense1d(ndim, shape, os) && dense1d(ndim, shape, xs)) {
    constexpr int N = vec_width2<To, Ti>();
    int vec = aligned_to(out, sizeof(To) * N) && aligned_to(x, sizeof(Ti) * N);
    map1_contig<<<grid_for(vec ? numel / N + 1 : numel, sms), kThreads, 0, s>>>(numel, out, x, f, vec);
  } else {
    const int64_t* st[2] = {os, xs};
    if (fits32<2>(ndim, shape, st, numel))
      map1_strided<<<grid_for(numel, sms), kThreads, 0, s>>>(make_geom<2, uint32_t>(ndim, shape, st),
                                                             (uint32_t)numel, out, x, f);
    else
      map1_strided<<<grid_for(numel, sms), kThreads, 0, s>>>(make_geom<2, int64_t>(ndim, shape, st),
                                                             numel, out, x, f);
  }
  return check_launch(fn);
}

// ------------------------------------------------------------------ binary
template <class F, class To, class Ta, class Tb>
__global__ void __launch_bounds__(kThreads)
map2_contig(int64_t n, To* __restrict__ out, const Ta* __restrict__ a, const Tb* __restrict__ b,
            F f, int vec) {
  constexpr int N = vec_width3<To, Ta, Tb>();
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  int64_t start = 0;
  if (vec) {
    const int64_t nv = n / N;
    const vec_t<Ta, N>* av = reinterpret_cast<const vec_t<Ta, N>*>(a);
    const vec_t<Tb, N>* bv = reinterpret_cast<const vec_t<Tb, N>*>(b);
    vec_t<To, N>* ov = reinterpret_cast<vec_t<To, N>*>(out);
    for (int64_t i = tid; i < nv; i += step) {
      const vec_t<Ta, N> x = av[i];
      const vec_t<Tb, N> y = bv[i];
      vec_t<To, N> o;
#pragma unroll
      for (int j = 0; j < N; ++j) o.v[j] = f(x.v[j], y.v[j]);
      ov[i] = o;
    }
    start = nv * N;
  }
  for (int64_t i = start + tid; i < n; i += step) out[i] = f(a[i], b[i]);
}

template <class F, class I, class To, class Ta, class Tb>
__global__ void __launch_bounds__(kThreads)
map2_strided(geom_t<3, I> g, I n, To* __restrict__ out, const Ta* __restrict__ a,
             const Tb* __restrict__ b, F f) {
  const I step = (I)gridDim.x * blockDim.x;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    I off[3];
    offsets(g, i, off);
    out[off[0]] = f(a[off[1]], b[off[2]]);
  }
}

template <class F, class To, class Ta, class Tb>
int launch_map2(const char* fn, int ndim, const int64_t* shape, int64_t numel, To* out,
                const int64_t* os, const Ta* a, const int64_t* as, const Tb* b,
                const int64_t* bs, F f, cudaStream_t s) {
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  if (dense1d(ndim, shape, os) && dense1d(ndim, shape, as) && dense1d(ndim, shape, bs)) {
    constexpr int N = vec_width3<To, Ta, Tb>();
    int vec = aligned_to(out, sizeof(To) * N) && aligned_to(a, sizeof(Ta) * N) &&
              aligned_to(b, sizeof(Tb) * N);
    map2_contig<<<grid_for(vec ? numel / N + 1 : numel, sms), kThreads, 0, s>>>(numel, out, a, b, f, vec);
  } else {
    const int64_t* st[3] = {os, as, bs};
    if (fits32<3>(ndim, shape, st, numel))
      map2_strided<<<grid_for(numel, sms), kThreads, 0, s>>>(make_geom<3, uint32_t>(ndim, shape, st),
                                                             (uint32_t)numel, out, a, b, f);
    else
      map2_strided<<<grid_for(numel, sms), kThreads, 0, s>>>(make_geom<3, int64_t>(ndim, shape, st),
                                                             numel, out, a, b, f);
  }
  return check_launch(fn);
}

}  // namespace ct

#endif
