/*
 * Reductions (ct_cuda_reduce): sum, mean, max, min, argmax, argmin, var, prod over the
 * INNER block of every OUTER index (reduce.h).
 *
 * Algorithm: every op is a "reducer" with a small POD state (sum: one accumulator; argmax:
 * value + index; var: shifted sums s1 = sum(x-K), s2 = sum((x-K)^2) in double with K the
 * first element of the block, which has the accuracy of the two-pass formula while being
 * a single pass that combines across threads by addition). Three kernel shapes:
 *  - block per output  (inner block large and contiguous): 256 threads stride over the
 *    block, warp-shuffle + shared-memory combine. When there are fewer outputs than
 *    ~4 blocks per SM the block is split along the inner range over gridDim.y blocks that
 *    write partial states; a finalize kernel combines them (two-stage reduction).
 *  - warp per output   (contiguous inner block of 32..2048 elements): 8 outputs per block.
 *  - thread per output (small inner block, or inner elements strided, e.g. a reduction
 *    over a leading axis): consecutive threads take consecutive outputs, so reads are
 *    coalesced when the outer stride is 1; long inner ranges with few outputs are split
 *    over gridDim.y the same way.
 * Accumulation: float for f32/f16/bf16, double for f64 and VAR, int64 for integer SUM/PROD
 * (and integer MAX/MIN comparisons). Float sums are blocked: each thread adds a strided
 * subsequence, then a tree combines the per-thread partials (error ~ (n/threads + log n) ulp).
 * MAX/MIN propagate NaN; ARGMAX/ARGMIN keep the first occurrence and count NaN as the
 * extreme.
 * Cost: reads every input element once, numel * sizeof(dtype) bytes (+ the outputs);
 * memory bound.
 */
#include <algorithm>
#include <cfloat>
#include <climits>

#include "common.cuh"
#include "cortado/reduce.h"

namespace ct {
namespace {

const char* const kFn = "ct_cuda_reduce";

/* Shapes are stored innermost first. */
struct red_geom {
  int outer_ndim, inner_ndim;
  int64_t outer_shape[CT_MAX_DIMS], in_outer[CT_MAX_DIMS], out_stride[CT_MAX_DIMS];
  int64_t inner_shape[CT_MAX_DIMS], in_inner[CT_MAX_DIMS];
  int64_t outer_n, inner_n;
  int64_t chunk;  // inner elements per split
  int splits;
  double param;
};

__device__ __forceinline__ void outer_offsets(const red_geom& g, int64_t o, int64_t& in_off, int64_t& out_off) {
  in_off = 0;
  out_off = 0;
  for (int d = 0; d < g.outer_ndim; ++d) {
    const int64_t s = g.outer_shape[d];
    const int64_t q = o / s, r = o - q * s;
    o = q;
    in_off += r * g.in_outer[d];
    out_off += r * g.out_stride[d];
  }
}

__device__ __forceinline__ int64_t inner_offset(const red_geom& g, int64_t j) {
  if (g.inner_ndim <= 1) return g.inner_ndim == 1 ? j * g.in_inner[0] : 0;
  int64_t off = 0;
  for (int d = 0; d < g.inner_ndim; ++d) {
    const int64_t s = g.inner_shape[d];
    const int64_t q = j / s, r = j - q * s;
    j = q;
    off += r * g.in_inner[d];
  }
  return off;
}

template <class S> __device__ __forceinline__ S shfl_xor_any(S v, int lane_mask) {
  constexpr int W = (sizeof(S) + 3) / 4;
  uint32_t w[W] = {};
  memcpy(w, &v, sizeof(S));
#pragma unroll
  for (int i = 0; i < W; ++i) w[i] = __shfl_xor_sync(0xffffffffu, w[i], lane_mask);
  memcpy(&v, w, sizeof(S));
  return v;
}

// ------------------------------------------------------------------ reducers
/* acc type: float for f32/f16/bf16, double for f64, int64 for integers and bool. */
template <class T> using acc_t =
    std::conditional_t<std::is_same_v<T, double>, double,
                       std::conditional_t<is_float_v<T>, float, int64_t>>;

template <class T> __device__ __forceinline__ acc_t<T> to_acc(T v) {
  if constexpr (std::is_same_v<T, boolean>) return (int64_t)(v.v != 0);
  else return (acc_t<T>)load<T>(v);
}

template <class A> __device__ __forceinline__ bool is_nan(A x) {
  if constexpr (std::is_floating_point_v<A>) return x != x;
  else return false;
}
template <class A> __host__ __device__ constexpr A lowest() {
  if constexpr (std::is_floating_point_v<A>) return -(A)INFINITY;
  else return (A)INT64_MIN;
}
template <class A> __host__ __device__ constexpr A highest() {
  if constexpr (std::is_floating_point_v<A>) return (A)INFINITY;
  else return (A)INT64_MAX;
}

template <int OP, class T> struct reducer {
  using A = std::conditional_t<OP == CT_REDUCE_VAR, double, acc_t<T>>;
  static constexpr bool kArg = OP == CT_REDUCE_ARGMAX || OP == CT_REDUCE_ARGMIN;
  static constexpr bool kVar = OP == CT_REDUCE_VAR;
  struct arg_state { A v; int64_t i; };
  struct var_state { double s1, s2; };
  using S = std::conditional_t<kArg, arg_state, std::conditional_t<OP == CT_REDUCE_VAR, var_state, A>>;
  /* Output element type. */
  using O = std::conditional_t<kArg || ((OP == CT_REDUCE_SUM || OP == CT_REDUCE_PROD) && !is_float_v<T>),
                               int64_t, T>;

  static __device__ __forceinline__ S init() {
    if constexpr (OP == CT_REDUCE_SUM || OP == CT_REDUCE_MEAN) return A(0);
    else if constexpr (OP == CT_REDUCE_PROD) return A(1);
    else if constexpr (OP == CT_REDUCE_MAX) return lowest<A>();
    else if constexpr (OP == CT_REDUCE_MIN) return highest<A>();
    else if constexpr (OP == CT_REDUCE_ARGMAX) return S{lowest<A>(), INT64_MAX};
    else if constexpr (OP == CT_REDUCE_ARGMIN) return S{highest<A>(), INT64_MAX};
    else return S{0.0, 0.0};
  }
  /* a wins over b (argmax/argmin): NaN is the extreme, ties go to the smaller index. */
  static __device__ __forceinline__ bool better(const S& a, const S& b) {
    const bool an = is_nan(a.v), bn = is_nan(b.v);
    if (an || bn) return an && bn ? a.i < b.i : an;
    if (a.v != b.v) return OP == CT_REDUCE_ARGMAX ? a.v > b.v : a.v < b.v;
    return a.i < b.i;
  }
  static __device__ __forceinline__ S combine(S a, S b) {
    if constexpr (OP == CT_REDUCE_SUM || OP == CT_REDUCE_MEAN) {
      if constexpr (std::is_integral_v<A>) return (A)((uint64_t)a + (uint64_t)b);
      else return a + b;
    } else if constexpr (OP == CT_REDUCE_PROD) {
      if constexpr (std::is_integral_v<A>) return (A)((uint64_t)a * (uint64_t)b);
      else return a * b;
    } else if constexpr (OP == CT_REDUCE_MAX) {
      return (is_nan(a) || a > b) ? a : (is_nan(b) ? b : (a > b ? a : b));
    } else if constexpr (OP == CT_REDUCE_MIN) {
      return (is_nan(a) || a < b) ? a : (is_nan(b) ? b : (a < b ? a : b));
    } else if constexpr (kArg) {
      return better(a, b) ? a : b;
    } else {
      return S{a.s1 + b.s1, a.s2 + b.s2};
    }
  }
  /* Adds element j (inner flat index) with value x; `shift` is K for VAR. */
  static __device__ __forceinline__ void add(S& s, T xs, int64_t j, double shift) {
    if constexpr (OP == CT_REDUCE_VAR) {
      const double d = (double)load<T>(xs) - shift;
      s.s1 += d;
      s.s2 += d * d;
    } else if constexpr (kArg) {
      const S c{to_acc(xs), j};
      if (better(c, s)) s = c;
    } else {
      s = combine(s, to_acc(xs));
    }
  }
  static __device__ __forceinline__ O finish(S s, int64_t count, double param) {
    if constexpr (kArg) return s.i;
    else if constexpr (OP == CT_REDUCE_MEAN) return store<T>((compute_t<T>)(s / (A)count));
    else if constexpr (OP == CT_REDUCE_VAR) {
      if (count == 0) return store<T>((compute_t<T>)NAN);
      const double n = (double)count;
      double m2 = s.s2 - s.s1 * s.s1 / n;
      if (m2 < 0) m2 = 0;
      return store<T>((compute_t<T>)(m2 / (n - param)));
    } else if constexpr (std::is_same_v<O, int64_t>) return (int64_t)s;
    else if constexpr (std::is_integral_v<T>) return (T)s;
    else return store<T>((compute_t<T>)s);
  }
};

template <class R, class T>
__device__ __forceinline__ double shift_of(const red_geom& g, const T* in, int64_t in_off) {
  if constexpr (R::kVar)
    return g.inner_n > 0 ? (double)load<T>(in[in_off]) : 0.0;
  else return 0.0;
}

template <class R, class T>
__device__ __forceinline__ typename R::S accumulate(const red_geom& g, const T* __restrict__ in, int64_t in_off,
                                                    int64_t begin, int64_t end, int64_t step, double shift) {
  typename R::S s = R::init();
  if (g.inner_ndim == 1 && g.in_inner[0] == 1) {
    const T* p = in + in_off;
    for (int64_t j = begin; j < end; j += step) R::add(s, p[j], j, shift);
  } else {
    for (int64_t j = begin; j < end; j += step) R::add(s, in[in_off + inner_offset(g, j)], j, shift);
  }
  return s;
}

template <class R> __device__ __forceinline__ typename R::S warp_reduce(typename R::S s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s = R::combine(s, shfl_xor_any(s, o));
  return s;
}

// ------------------------------------------------------------------ kernels
/* One block per (output, split). */
template <class R, class T>
__global__ void __launch_bounds__(kThreads)
reduce_block(red_geom g, const T* __restrict__ in, typename R::O* __restrict__ out, typename R::S* __restrict__ ws) {
  using S = typename R::S;
  __shared__ S scratch[kThreads / 32];
  const int64_t o = blockIdx.x;
  const int split = blockIdx.y;
  int64_t in_off, out_off;
  outer_offsets(g, o, in_off, out_off);
  const double shift = shift_of<R>(g, in, in_off);
  const int64_t begin = (int64_t)split * g.chunk;
  const int64_t end = begin + g.chunk < g.inner_n ? begin + g.chunk : g.inner_n;
  S s = accumulate<R>(g, in, in_off, begin + threadIdx.x, end, blockDim.x, shift);
  s = warp_reduce<R>(s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = s;
  __syncthreads();
  if (warp == 0) {
    s = lane < (int)(blockDim.x >> 5) ? scratch[lane] : R::init();
    s = warp_reduce<R>(s);
    if (lane == 0) {
      if (g.splits == 1) out[out_off] = R::finish(s, g.inner_n, g.param);
      else ws[(int64_t)split * g.outer_n + o] = s;
    }
  }
}

/* One warp per output, kThreads / 32 outputs per block. */
template <class R, class T>
__global__ void __launch_bounds__(kThreads)
reduce_warp(red_geom g, const T* __restrict__ in, typename R::O* __restrict__ out) {
  const int64_t o = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  if (o >= g.outer_n) return;  // whole warp leaves together
  const int lane = threadIdx.x & 31;
  int64_t in_off, out_off;
  outer_offsets(g, o, in_off, out_off);
  const double shift = shift_of<R>(g, in, in_off);
  typename R::S s = accumulate<R>(g, in, in_off, lane, g.inner_n, 32, shift);
  s = warp_reduce<R>(s);
  if (lane == 0) out[out_off] = R::finish(s, g.inner_n, g.param);
}

/* One thread per (output, split); consecutive threads take consecutive outputs. */
template <class R, class T>
__global__ void __launch_bounds__(kThreads)
reduce_thread(red_geom g, const T* __restrict__ in, typename R::O* __restrict__ out, typename R::S* __restrict__ ws) {
  const int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= g.outer_n) return;
  const int split = blockIdx.y;
  int64_t in_off, out_off;
  outer_offsets(g, o, in_off, out_off);
  const double shift = shift_of<R>(g, in, in_off);
  const int64_t begin = (int64_t)split * g.chunk;
  const int64_t end = begin + g.chunk < g.inner_n ? begin + g.chunk : g.inner_n;
  typename R::S s = accumulate<R>(g, in, in_off, begin, end, 1, shift);
  if (g.splits == 1) out[out_off] = R::finish(s, g.inner_n, g.param);
  else ws[(int64_t)split * g.outer_n + o] = s;
}

/* Combines the partial states of the splits, in split order, and writes the outputs. */
template <class R>
__global__ void __launch_bounds__(kThreads)
reduce_finalize(red_geom g, const typename R::S* __restrict__ ws, typename R::O* __restrict__ out) {
  const int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= g.outer_n) return;
  typename R::S s = ws[o];
  for (int k = 1; k < g.splits; ++k) s = R::combine(s, ws[(int64_t)k * g.outer_n + o]);
  int64_t out_off = 0;
  int64_t r = o;
  for (int d = 0; d < g.outer_ndim; ++d) {
    const int64_t q = r / g.outer_shape[d];
    out_off += (r - q * g.outer_shape[d]) * g.out_stride[d];
    r = q;
  }
  out[out_off] = R::finish(s, g.inner_n, g.param);
}

// ------------------------------------------------------------------ host side
enum class shape_kind { block, warp, thread };

template <class R, class T>
int launch(red_geom g, shape_kind kind, const void* in_v, void* out_v, int sms, cudaStream_t s) {
  using S = typename R::S;
  using O = typename R::O;
  const T* in = (const T*)in_v;
  O* out = (O*)out_v;
  S* ws = nullptr;
  if (g.splits > 1) {
    CT_CUDA_TRY(kFn, cudaMallocAsync((void**)&ws, sizeof(S) * (size_t)g.splits * (size_t)g.outer_n, s));
  }
  if (kind == shape_kind::block) {
    reduce_block<R, T><<<dim3((unsigned)g.outer_n, (unsigned)g.splits), kThreads, 0, s>>>(g, in, out, ws);
  } else if (kind == shape_kind::warp) {
    const int64_t per = kThreads / 32;
    reduce_warp<R, T><<<(unsigned)((g.outer_n + per - 1) / per), kThreads, 0, s>>>(g, in, out);
  } else {
    reduce_thread<R, T><<<dim3((unsigned)((g.outer_n + kThreads - 1) / kThreads), (unsigned)g.splits), kThreads, 0, s>>>(
        g, in, out, ws);
  }
  int st = check_launch(kFn);
  if (st == CT_OK && g.splits > 1) {
    reduce_finalize<R><<<(unsigned)((g.outer_n + kThreads - 1) / kThreads), kThreads, 0, s>>>(g, ws, out);
    st = check_launch(kFn);
  }
  if (ws) {
    cudaError_t e = cudaFreeAsync(ws, s);
    if (st == CT_OK && e != cudaSuccess) return cuda_fail(kFn, e);
  }
  return st;
}

template <int OP>
int run_op(int dtype, int out_dtype, red_geom g, shape_kind kind, const void* in, void* out, int sms,
           cudaStream_t s) {
  int status = -1;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr bool f = is_float_v<T>, b = std::is_same_v<T, boolean>;
    constexpr bool ok = OP == CT_REDUCE_SUM ? true
                        : (OP == CT_REDUCE_MEAN || OP == CT_REDUCE_VAR) ? f
                                                                        : !b;
    if constexpr (ok) {
      using R = reducer<OP, T>;
      const int want = std::is_same_v<typename R::O, int64_t> ? CT_I64 : dtype;
      if (out_dtype != want) {
        status = fail(CT_ERR_INVALID_ARG, "%s: op %d on %s writes %s, not %s", kFn, OP, dtype_name(dtype),
                      dtype_name(want), dtype_name(out_dtype));
        return;
      }
      status = launch<R, T>(g, kind, in, out, sms, s);
    }
  });
  if (status < 0)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %d is not defined for dtype %s", kFn, OP, dtype_name(dtype));
  return status;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_reduce(int op, int dtype, int out_dtype, int outer_ndim, const int64_t* outer_shape,
                              const int64_t* in_outer_strides, const int64_t* out_strides, int inner_ndim,
                              const int64_t* inner_shape, const int64_t* in_inner_strides, const void* in,
                              void* out, double param, int64_t stream) {
  int64_t O = 0, I = 0;
  CT_TRY_STATUS(check_shape(kFn, outer_ndim, outer_shape, &O));
  CT_TRY_STATUS(check_shape(kFn, inner_ndim, inner_shape, &I));
  CT_TRY_STATUS(check_strides(kFn, "in_outer_strides", outer_ndim, in_outer_strides));
  CT_TRY_STATUS(check_strides(kFn, "out_strides", outer_ndim, out_strides));
  CT_TRY_STATUS(check_strides(kFn, "in_inner_strides", inner_ndim, in_inner_strides));
  if (op < 0 || op >= CT_REDUCE_COUNT) return fail(CT_ERR_INVALID_ARG, "%s: unknown reduce op %d", kFn, op);
  if (dtype_size(dtype) == 0 || dtype == CT_I4) return fail(CT_ERR_INVALID_ARG, "%s: bad dtype code %d", kFn, dtype);
  if (O == 0) return CT_OK;
  if (I == 0 && (op == CT_REDUCE_MAX || op == CT_REDUCE_MIN || op == CT_REDUCE_ARGMAX || op == CT_REDUCE_ARGMIN))
    return fail(CT_ERR_INVALID_ARG, "%s: op %d over an empty block has no identity", kFn, op);
  if (I > 0) CT_TRY_STATUS(check_ptr(kFn, "in", in));
  CT_TRY_STATUS(check_ptr(kFn, "out", out));
  if (O > INT32_MAX) return fail(CT_ERR_INVALID_ARG, "%s: more than 2^31-1 outputs", kFn);

  red_geom g{};
  g.outer_ndim = outer_ndim;
  g.inner_ndim = inner_ndim;
  for (int d = 0; d < outer_ndim; ++d) {
    const int r = outer_ndim - 1 - d;
    g.outer_shape[d] = outer_shape[r];
    g.in_outer[d] = in_outer_strides[r];
    g.out_stride[d] = out_strides[r];
  }
  for (int d = 0; d < inner_ndim; ++d) {
    const int r = inner_ndim - 1 - d;
    g.inner_shape[d] = inner_shape[r];
    g.in_inner[d] = in_inner_strides[r];
  }
  g.outer_n = O;
  g.inner_n = I;
  g.param = param;
  g.splits = 1;
  g.chunk = I;

  int sms = 0;
  CT_TRY_STATUS(sm_count(kFn, &sms));
  const bool inner_contig = inner_ndim == 0 || g.in_inner[0] == 1 || g.inner_shape[0] == 1;
  shape_kind kind;
  if (I < 32 || !inner_contig) {
    kind = shape_kind::thread;
    const int64_t target = (int64_t)sms * 2048;  // threads that fill the GPU once
    if (O < target && I >= 2048) {
      int64_t splits = (target + O - 1) / O;
      splits = std::min<int64_t>(splits, I / 512);
      splits = std::min<int64_t>(splits, 65535);
      if (splits > 1) {
        g.splits = (int)splits;
        g.chunk = (I + splits - 1) / splits;
        g.splits = (int)((I + g.chunk - 1) / g.chunk);
      }
    }
  } else if (I <= 2048) {
    kind = shape_kind::warp;
  } else {
    kind = shape_kind::block;
    const int64_t target = (int64_t)sms * 8;  // blocks of 256 threads: ~full occupancy
    if (O < target) {
      int64_t splits = (target + O - 1) / O;
      splits = std::min<int64_t>(splits, I / 4096);
      splits = std::min<int64_t>(splits, 65535);
      if (splits > 1) {
        g.chunk = (I + splits - 1) / splits;
        g.splits = (int)((I + g.chunk - 1) / g.chunk);
      }
    }
  }
  cudaStream_t s = as_stream(stream);
  switch (op) {
    case CT_REDUCE_SUM: return run_op<CT_REDUCE_SUM>(dtype, out_dtype, g, kind, in, out, sms, s);
    case CT_REDUCE_MEAN: return run_op<CT_REDUCE_MEAN>(dtype, out_dtype, g, kind, in, out, sms, s);
    case CT_REDUCE_MAX: return run_op<CT_REDUCE_MAX>(dtype, out_dtype, g, kind, in, out, sms, s);
    case CT_REDUCE_MIN: return run_op<CT_REDUCE_MIN>(dtype, out_dtype, g, kind, in, out, sms, s);
    case CT_REDUCE_ARGMAX: return run_op<CT_REDUCE_ARGMAX>(dtype, out_dtype, g, kind, in, out, sms, s);
    case CT_REDUCE_ARGMIN: return run_op<CT_REDUCE_ARGMIN>(dtype, out_dtype, g, kind, in, out, sms, s);
    case CT_REDUCE_VAR: return run_op<CT_REDUCE_VAR>(dtype, out_dtype, g, kind, in, out, sms, s);
    default: return run_op<CT_REDUCE_PROD>(dtype, out_dtype, g, kind, in, out, sms, s);
  }
}
