/*
 * Normalizations (norm.h): softmax / log-softmax, layer norm, RMS norm; forward first, the
 * backward kernels at the end of the file with their own note.
 *
 * Algorithm (C = float for f32/f16/bf16, double for f64):
 *  softmax, inner == 1 (rows of `dim` contiguous elements):
 *    - dim <= 1024: one warp per row (8 rows per 256-thread block);
 *    - dim  > 1024: one block per row (256 threads, 1024 for very long rows).
 *    Pass 1 is an online max/sum: each thread keeps (m, s) with s = sum exp(x - m),
 *    rescaling s when m grows; states merge across lanes/warps with
 *    s = s_a exp(m_a - m) + s_b exp(m_b - m). Pass 2 writes exp(x - m) / s (log:
 *    x - m - log s). An all -inf row gives NaN (exp(-inf - -inf)), NaN inputs give NaN.
 *  softmax, inner > 1: one thread per (outer, inner) column looping over `dim` (adjacent
 *    threads read adjacent addresses, so each step is coalesced), same two passes.
 *  layernorm: warp per row (cols <= 1024) or block per row; pass 1 mean, pass 2 biased
 *    variance of (x - mean) (two-pass, no cancellation), pass 3 writes
 *    (x - mean) * rstd * gamma + beta; mean/rstd optionally stored as float32.
 *  rmsnorm: same shapes; pass 1 mean(x^2), pass 2 writes x * rstd * gamma.
 *  The second/third passes re-read the row, which is then in L1/L2 for rows up to a few
 *  hundred KB.
 * Cost: softmax ~ 2 reads + 1 write per element from DRAM (3 reads + 1 write counting the
 * cache hit), one exp per element; layernorm 2-3 reads + 1 write; rmsnorm 2 reads + 1
 * write; all memory bound.
 */
#include "common.cuh"
#include "cortado/norm.h"

namespace ct {
namespace {

template <class T> using nacc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_rsqrt(float x) { return 1.0f / sqrtf(x); }
__device__ __forceinline__ double m_rsqrt(double x) { return 1.0 / sqrt(x); }

// ------------------------------------------------------------------ online softmax state
template <class C> struct ms_t { C m, s; };

template <class C> __device__ __forceinline__ void ms_add(ms_t<C>& a, C x) {
  if (x > a.m) {
    a.s = a.s * m_exp(a.m - x) + C(1);
    a.m = x;
  } else if (!(x == -(C)INFINITY)) {
    a.s += m_exp(x - a.m);  // NaN x makes s NaN
  }
}
template <class C> __device__ __forceinline__ ms_t<C> ms_merge(ms_t<C> a, ms_t<C> b) {
  const C m = a.m > b.m ? a.m : b.m;
  const C sa = a.s == C(0) ? C(0) : a.s * m_exp(a.m - m);
  const C sb = b.s == C(0) ? C(0) : b.s * m_exp(b.m - m);
  return ms_t<C>{m, sa + sb};
}
template <class C> __device__ __forceinline__ ms_t<C> ms_warp(ms_t<C> a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    ms_t<C> b{__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o)};
    a = ms_merge(a, b);
  }
  return a;
}

template <class T, bool LOG, class C>
__device__ __forceinline__ T softmax_value(T xs, C m, C s, C logs) {
  const C x = (C)load<T>(xs);
  if constexpr (LOG) return store<T>((compute_t<T>)(x - m - logs));
  else return store<T>((compute_t<T>)(m_exp(x - m) / s));
}

template <class T, bool LOG>
__global__ void __launch_bounds__(kThreads)
softmax_warp(int64_t rows, int64_t dim, const T* __restrict__ x, T* __restrict__ y) {
  using C = nacc_t<T>;
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const T* xr = x + row * dim;
  T* yr = y + row * dim;
  ms_t<C> a{-(C)INFINITY, C(0)};
  for (int64_t i = lane; i < dim; i += 32) ms_add(a, (C)load<T>(xr[i]));
  a = ms_warp(a);
  const C logs = m_log(a.s);
  for (int64_t i = lane; i < dim; i += 32) yr[i] = softmax_value<T, LOG>(xr[i], a.m, a.s, logs);
}

template <class T, bool LOG>
__global__ void __launch_bounds__(1024)
softmax_block(int64_t dim, const T* __restrict__ x, T* __restrict__ y) {
  using C = nacc_t<T>;
  __shared__ C sm[32], ss[32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * dim;
  T* yr = y + row * dim;
  ms_t<C> a{-(C)INFINITY, C(0)};
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ms_add(a, (C)load<T>(xr[i]));
  a = ms_warp(a);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) {
    sm[warp] = a.m;
    ss[warp] = a.s;
  }
  __syncthreads();
  a = ms_t<C>{sm[0], ss[0]};
  for (int w = 1; w < nwarps; ++w) a = ms_merge(a, ms_t<C>{sm[w], ss[w]});  // same order in every thread
  const C logs = m_log(a.s);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = softmax_value<T, LOG>(xr[i], a.m, a.s, logs);
}

template <class T, bool LOG>
__global__ void __launch_bounds__(kThreads)
softmax_inner(int64_t outer, int64_t dim, int64_t inner, const T* __restrict__ x, T* __restrict__ y) {
  using C = nacc_t<T>;
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= outer * inner) return;
  const int64_t o = t / inner, i = t - o * inner;
  const T* xc = x + o * dim * inner + i;
  T* yc = y + o * dim * inner + i;
  ms_t<C> a{-(C)INFINITY, C(0)};
  for (int64_t k = 0; k < dim; ++k) ms_add(a, (C)load<T>(xc[k * inner]));
  const C logs = m_log(a.s);
  for (int64_t k = 0; k < dim; ++k) yc[k * inner] = softmax_value<T, LOG>(xc[k * inner], a.m, a.s, logs);
}

// ------------------------------------------------------------------ layernorm / rmsnorm
struct add_op {
  template <class C> __device__ __forceinline__ C operator()(C a, C b) const { return a + b; }
};

/* Row statistics and output for one row, computed by a group of `n` threads whose rank is
 * `r`; `reduce` all-reduces a scalar over the group. */
template <class T, bool RMS, class Reduce>
__device__ __forceinline__ void norm_row(const T* __restrict__ xr, T* __restrict__ yr, int64_t cols,
                                         const T* __restrict__ gamma, const T* __restrict__ beta,
                                         nacc_t<T> eps, float* mean_out, float* rstd_out, int64_t row,
                                         int r, int n, Reduce reduce) {
  using C = nacc_t<T>;
  C mean = C(0);
  C acc = C(0);
  if constexpr (!RMS) {
    for (int64_t i = r; i < cols; i += n) acc += (C)load<T>(xr[i]);
    mean = reduce(acc) / (C)cols;
    acc = C(0);
    for (int64_t i = r; i < cols; i += n) {
      const C d = (C)load<T>(xr[i]) - mean;
      acc += d * d;
    }
  } else {
    for (int64_t i = r; i < cols; i += n) {
      const C v = (C)load<T>(xr[i]);
      acc += v * v;
    }
  }
  const C rstd = m_rsqrt(reduce(acc) / (C)cols + eps);
  if (r == 0) {
    if (mean_out) mean_out[row] = (float)mean;
    if (rstd_out) rstd_out[row] = (float)rstd;
  }
  for (int64_t i = r; i < cols; i += n) {
    C v = ((C)load<T>(xr[i]) - mean) * rstd;
    if (gamma) v *= (C)load<T>(gamma[i]);
    if constexpr (!RMS)
      if (beta) v += (C)load<T>(beta[i]);
    yr[i] = store<T>((compute_t<T>)v);
  }
}

template <class T, bool RMS>
__global__ void __launch_bounds__(kThreads)
norm_warp(int64_t rows, int64_t cols, const T* __restrict__ x, const T* __restrict__ gamma,
          const T* __restrict__ beta, nacc_t<T> eps, T* __restrict__ y, float* mean_out, float* rstd_out) {
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  auto reduce = [](nacc_t<T> v) { return warp_allreduce(v, add_op{}); };
  norm_row<T, RMS>(x + row * cols, y + row * cols, cols, gamma, beta, eps, mean_out, rstd_out, row,
                   threadIdx.x & 31, 32, reduce);
}

template <class T, bool RMS>
__global__ void __launch_bounds__(1024)
norm_block(int64_t cols, const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
           nacc_t<T> eps, T* __restrict__ y, float* mean_out, float* rstd_out) {
  __shared__ nacc_t<T> scratch[32];
  const int64_t row = blockIdx.x;
  auto reduce = [&](nacc_t<T> v) { return block_allreduce(v, add_op{}, scratch); };
  norm_row<T, RMS>(x + row * cols, y + row * cols, cols, gamma, beta, eps, mean_out, rstd_out, row,
                   threadIdx.x, blockDim.x, reduce);
}

int block_threads(int64_t cols) { return cols <= 8192 ? 256 : (cols <= 32768 ? 512 : 1024); }

int check_rows(const char* fn, int dtype, int64_t a, int64_t b, int64_t c) {
  if (a < 0 || b < 0 || c < 0) return fail(CT_ERR_INVALID_ARG, "%s: negative size", fn);
  if (dtype != CT_F32 && dtype != CT_F64 && dtype != CT_F16 && dtype != CT_BF16)
    return fail(dtype_size(dtype) ? CT_ERR_UNSUPPORTED : CT_ERR_INVALID_ARG, "%s: dtype %s is not floating",
                fn, dtype_name(dtype));
  return CT_OK;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_softmax(int dtype, int log, int64_t outer, int64_t dim, int64_t inner, const void* x,
                               void* y, int64_t stream) {
  const char* fn = "ct_cuda_softmax";
  CT_TRY_STATUS(check_rows(fn, dtype, outer, dim, inner));
  if (outer == 0 || dim == 0 || inner == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "y", y));
  if (outer > INT32_MAX || outer * inner > (int64_t)INT32_MAX * kThreads)
    return fail(CT_ERR_INVALID_ARG, "%s: too many rows", fn);
  cudaStream_t s = as_stream(stream);
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = (const T*)x;
    T* yp = (T*)y;
    auto go = [&](auto log_tag) {
      constexpr bool LOG = decltype(log_tag)::value;
      if (inner > 1) {
        const int64_t n = outer * inner;
        softmax_inner<T, LOG><<<(unsigned)((n + kThreads - 1) / kThreads), kThreads, 0, s>>>(outer, dim, inner, xp, yp);
      } else if (dim <= 1024) {
        const int64_t per = kThreads / 32;
        softmax_warp<T, LOG><<<(unsigned)((outer + per - 1) / per), kThreads, 0, s>>>(outer, dim, xp, yp);
      } else {
        softmax_block<T, LOG><<<(unsigned)outer, block_threads(dim), 0, s>>>(dim, xp, yp);
      }
    };
    if (log) go(std::true_type{});
    else go(std::false_type{});
  });
  return check_launch(fn);
}

template <bool RMS>
static int run_norm(const char* fn, int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                    const void* beta, double eps, void* y, float* mean_out, float* rstd_out, int64_t stream) {
  CT_TRY_STATUS(check_rows(fn, dtype, rows, cols, 0));
  if (rows == 0 || cols == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "y", y));
  if (rows > INT32_MAX) return fail(CT_ERR_INVALID_ARG, "%s: too many rows", fn);
  cudaStream_t s = as_stream(stream);
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = nacc_t<T>;
    if (cols <= 1024) {
      const int64_t per = kThreads / 32;
      norm_warp<T, RMS><<<(unsigned)((rows + per - 1) / per), kThreads, 0, s>>>(
          rows, cols, (const T*)x, (const T*)gamma, (const T*)beta, (C)eps, (T*)y, mean_out, rstd_out);
    } else {
      norm_block<T, RMS><<<(unsigned)rows, block_threads(cols), 0, s>>>(
          cols, (const T*)x, (const T*)gamma, (const T*)beta, (C)eps, (T*)y, mean_out, rstd_out);
    }
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_layernorm(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                                 const void* beta, double eps, void* y, float* mean_out, float* rstd_out,
                                 int64_t stream) {
  return run_norm<false>("ct_cuda_layernorm", dtype, rows, cols, x, gamma, beta, eps, y, mean_out, rstd_out,
                         stream);
}

extern "C" int ct_cuda_rmsnorm(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                               double eps, void* y, float* rstd_out, int64_t stream) {
  return run_norm<true>("ct_cuda_rmsnorm", dtype, rows, cols, x, gamma, nullptr, eps, y, nullptr, rstd_out,
                        stream);
}

// ====================================================================== backward
/*
 * softmax backward: same launch shapes as the forward (warp per row for dim <= 1024, block
 *   per row above, a thread per column for a non-last axis); one reduction per row
 *   (sum(dy * y), or sum(dy) for log-softmax), then dx = y (dy - dot) or dy - exp(y) sum.
 * layer/RMS norm backward, three kernels, no atomics (deterministic):
 *   1. row kernel (warp or block per row): recomputes mean and rstd (two passes, as the
 *      forward), reduces sum(g) and sum(g xhat) with g = dy gamma, writes dx and the row's
 *      mean/rstd to a scratch buffer;
 *   2. column-partials kernel: a thread per column, blockIdx.y = one of R <= 128 fixed row
 *      chunks; sums dy xhat and dy over its chunk (coalesced across the warp);
 *   3. a thread per column adds the R partials in chunk order and stores dgamma/dbeta.
 * Cost: softmax backward 2 reads + 1 write per element; norm backward x and dy read 2-3
 *   times (the row kernel's re-reads hit L1/L2) plus once more by the column kernel, dx
 *   written once, ~14 FLOPs per element.
 */
namespace ct {
namespace {

template <class T, bool LOG>
__device__ __forceinline__ T softmax_bwd_value(T yv, T dyv, nacc_t<T> red) {
  using C = nacc_t<T>;
  const C y = (C)load<T>(yv), g = (C)load<T>(dyv);
  if constexpr (LOG) return store<T>((compute_t<T>)(g - m_exp(y) * red));
  else return store<T>((compute_t<T>)(y * (g - red)));
}

template <class T, bool LOG>
__device__ __forceinline__ nacc_t<T> softmax_bwd_term(T yv, T dyv) {
  using C = nacc_t<T>;
  if constexpr (LOG) return (C)load<T>(dyv);
  else return (C)load<T>(dyv) * (C)load<T>(yv);
}

template <class T, bool LOG>
__global__ void __launch_bounds__(kThreads)
softmax_bwd_warp(int64_t rows, int64_t dim, const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx) {
  using C = nacc_t<T>;
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const T* yr = y + row * dim;
  const T* gr = dy + row * dim;
  T* xr = dx + row * dim;
  C acc = C(0);
  for (int64_t i = lane; i < dim; i += 32) acc += softmax_bwd_term<T, LOG>(yr[i], gr[i]);
  acc = warp_allreduce(acc, add_op{});
  for (int64_t i = lane; i < dim; i += 32) xr[i] = softmax_bwd_value<T, LOG>(yr[i], gr[i], acc);
}

template <class T, bool LOG>
__global__ void __launch_bounds__(1024)
softmax_bwd_block(int64_t dim, const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx) {
  using C = nacc_t<T>;
  __shared__ C scratch[32];
  const int64_t row = blockIdx.x;
  const T* yr = y + row * dim;
  const T* gr = dy + row * dim;
  T* xr = dx + row * dim;
  C acc = C(0);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) acc += softmax_bwd_term<T, LOG>(yr[i], gr[i]);
  acc = block_allreduce(acc, add_op{}, scratch);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) xr[i] = softmax_bwd_value<T, LOG>(yr[i], gr[i], acc);
}

template <class T, bool LOG>
__global__ void __launch_bounds__(kThreads)
softmax_bwd_inner(int64_t outer, int64_t dim, int64_t inner, const T* __restrict__ y, const T* __restrict__ dy,
                  T* __restrict__ dx) {
  using C = nacc_t<T>;
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= outer * inner) return;
  const int64_t o = t / inner, i = t - o * inner;
  const int64_t base = o * dim * inner + i;
  C acc = C(0);
  for (int64_t k = 0; k < dim; ++k) acc += softmax_bwd_term<T, LOG>(y[base + k * inner], dy[base + k * inner]);
  for (int64_t k = 0; k < dim; ++k)
    dx[base + k * inner] = softmax_bwd_value<T, LOG>(y[base + k * inner], dy[base + k * inner], acc);
}

/* One row of the norm backward by a group of n threads of rank r (reduce: group all-reduce). */
template <class T, bool RMS, class Reduce>
__device__ __forceinline__ void norm_bwd_row(const T* __restrict__ xr, const T* __restrict__ gr, T* __restrict__ dxr,
                                             int64_t cols, const T* __restrict__ gamma, nacc_t<T> eps,
                                             nacc_t<T>* stats, int64_t row, int r, int n, Reduce reduce) {
  using C = nacc_t<T>;
  C mean = C(0), acc = C(0);
  if constexpr (!RMS) {
    for (int64_t i = r; i < cols; i += n) acc += (C)load<T>(xr[i]);
    mean = reduce(acc) / (C)cols;
    acc = C(0);
    for (int64_t i = r; i < cols; i += n) {
      const C d = (C)load<T>(xr[i]) - mean;
      acc += d * d;
    }
  } else {
    for (int64_t i = r; i < cols; i += n) {
      const C v = (C)load<T>(xr[i]);
      acc += v * v;
    }
  }
  const C rstd = m_rsqrt(reduce(acc) / (C)cols + eps);
  C sa = C(0), sc = C(0);
  for (int64_t i = r; i < cols; i += n) {
    const C xh = ((C)load<T>(xr[i]) - mean) * rstd;
    C g = (C)load<T>(gr[i]);
    if (gamma) g *= (C)load<T>(gamma[i]);
    sa += g;
    sc += g * xh;
  }
  const C ma = RMS ? C(0) : reduce(sa) / (C)cols;
  const C mc = reduce(sc) / (C)cols;
  if (r == 0 && stats) {
    stats[2 * row] = mean;
    stats[2 * row + 1] = rstd;
  }
  for (int64_t i = r; i < cols; i += n) {
    const C xh = ((C)load<T>(xr[i]) - mean) * rstd;
    C g = (C)load<T>(gr[i]);
    if (gamma) g *= (C)load<T>(gamma[i]);
    dxr[i] = store<T>((compute_t<T>)(rstd * (g - ma - xh * mc)));
  }
}

template <class T, bool RMS>
__global__ void __launch_bounds__(kThreads)
norm_bwd_warp(int64_t rows, int64_t cols, const T* __restrict__ x, const T* __restrict__ gamma, nacc_t<T> eps,
              const T* __restrict__ dy, T* __restrict__ dx, nacc_t<T>* stats) {
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  auto reduce = [](nacc_t<T> v) { return warp_allreduce(v, add_op{}); };
  norm_bwd_row<T, RMS>(x + row * cols, dy + row * cols, dx + row * cols, cols, gamma, eps, stats, row,
                       threadIdx.x & 31, 32, reduce);
}

template <class T, bool RMS>
__global__ void __launch_bounds__(1024)
norm_bwd_block(int64_t cols, const T* __restrict__ x, const T* __restrict__ gamma, nacc_t<T> eps,
               const T* __restrict__ dy, T* __restrict__ dx, nacc_t<T>* stats) {
  __shared__ nacc_t<T> scratch[32];
  const int64_t row = blockIdx.x;
  auto reduce = [&](nacc_t<T> v) { return block_allreduce(v, add_op{}, scratch); };
  norm_bwd_row<T, RMS>(x + row * cols, dy + row * cols, dx + row * cols, cols, gamma, eps, stats, row, threadIdx.x,
                       blockDim.x, reduce);
}

/* partial[chunk][0/1][col] = sum over the chunk's rows of dy * xhat and dy. */
template <class T, bool RMS>
__global__ void __launch_bounds__(kThreads)
norm_bwd_partials(int64_t rows, int64_t cols, int64_t chunks, const T* __restrict__ x, const T* __restrict__ dy,
                  const nacc_t<T>* __restrict__ stats, nacc_t<T>* __restrict__ partial) {
  using C = nacc_t<T>;
  const int64_t col = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = rows * chunk / chunks, r1 = rows * (chunk + 1) / chunks;
  C pg = C(0), pb = C(0);
  for (int64_t r = r0; r < r1; ++r) {
    const C d = (C)load<T>(dy[r * cols + col]);
    const C xh = ((C)load<T>(x[r * cols + col]) - stats[2 * r]) * stats[2 * r + 1];
    pg += d * xh;
    pb += d;
  }
  partial[(chunk * 2) * cols + col] = pg;
  partial[(chunk * 2 + 1) * cols + col] = pb;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
norm_bwd_final(int64_t cols, int64_t chunks, const nacc_t<T>* __restrict__ partial, T* dgamma, T* dbeta) {
  using C = nacc_t<T>;
  const int64_t col = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  C g = C(0), b = C(0);
  for (int64_t k = 0; k < chunks; ++k) {
    g += partial[(k * 2) * cols + col];
    b += partial[(k * 2 + 1) * cols + col];
  }
  if (dgamma) dgamma[col] = store<T>((compute_t<T>)g);
  if (dbeta) dbeta[col] = store<T>((compute_t<T>)b);
}

template <class T> __global__ void fill_zero(int64_t n, T* p) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = store<T>((compute_t<T>)0);
}

}  // namespace
}  // namespace ct

extern "C" int ct_cuda_softmax_backward(int dtype, int log, int64_t outer, int64_t dim, int64_t inner, const void* y,
                                        const void* dy, void* dx, int64_t stream) {
  const char* fn = "ct_cuda_softmax_backward";
  CT_TRY_STATUS(check_rows(fn, dtype, outer, dim, inner));
  if (outer == 0 || dim == 0 || inner == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "y", y));
  CT_TRY_STATUS(check_ptr(fn, "dy", dy));
  CT_TRY_STATUS(check_ptr(fn, "dx", dx));
  if (outer > INT32_MAX || outer * inner > (int64_t)INT32_MAX * kThreads)
    return fail(CT_ERR_INVALID_ARG, "%s: too many rows", fn);
  cudaStream_t s = as_stream(stream);
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* yp = (const T*)y;
    const T* gp = (const T*)dy;
    T* xp = (T*)dx;
    auto go = [&](auto log_tag) {
      constexpr bool LOG = decltype(log_tag)::value;
      if (inner > 1) {
        const int64_t n = outer * inner;
        softmax_bwd_inner<T, LOG><<<(unsigned)((n + kThreads - 1) / kThreads), kThreads, 0, s>>>(outer, dim, inner, yp,
                                                                                                  gp, xp);
      } else if (dim <= 1024) {
        const int64_t per = kThreads / 32;
        softmax_bwd_warp<T, LOG><<<(unsigned)((outer + per - 1) / per), kThreads, 0, s>>>(outer, dim, yp, gp, xp);
      } else {
        softmax_bwd_block<T, LOG><<<(unsigned)outer, block_threads(dim), 0, s>>>(dim, yp, gp, xp);
      }
    };
    if (log) go(std::true_type{});
    else go(std::false_type{});
  });
  return check_launch(fn);
}

template <bool RMS>
static int run_norm_backward(const char* fn, int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                             double eps, const void* dy, void* dx, void* dgamma, void* dbeta, int64_t stream) {
  CT_TRY_STATUS(check_rows(fn, dtype, rows, cols, 0));
  if (!(eps >= 0)) return fail(CT_ERR_INVALID_ARG, "%s: eps %g must be non-negative", fn, eps);
  if (cols == 0) return CT_OK;
  if (rows > INT32_MAX) return fail(CT_ERR_INVALID_ARG, "%s: too many rows", fn);
  cudaStream_t s = as_stream(stream);
  const bool params = dgamma != nullptr || dbeta != nullptr;
  int status = CT_OK;
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = nacc_t<T>;
    const unsigned colBlocks = (unsigned)((cols + kThreads - 1) / kThreads);
    if (rows == 0) {  // no rows: the parameter gradients are zero
      if (dgamma) fill_zero<T><<<colBlocks, kThreads, 0, s>>>(cols, (T*)dgamma);
      if (dbeta) fill_zero<T><<<colBlocks, kThreads, 0, s>>>(cols, (T*)dbeta);
      status = check_launch(fn);
      return;
    }
    if ((status = check_ptr(fn, "x", x)) || (status = check_ptr(fn, "dy", dy)) || (status = check_ptr(fn, "dx", dx)))
      return;
    const int64_t chunks = rows < 128 ? rows : 128;
    C* scratch = nullptr;
    if (params) {
      cudaError_t err = cudaMallocAsync((void**)&scratch, sizeof(C) * (size_t)(2 * rows + 2 * chunks * cols), s);
      if (err != cudaSuccess) {
        status = cuda_fail(fn, err);
        return;
      }
    }
    C* stats = scratch;
    C* partial = scratch ? scratch + 2 * rows : nullptr;
    if (cols <= 1024) {
      const int64_t per = kThreads / 32;
      norm_bwd_warp<T, RMS><<<(unsigned)((rows + per - 1) / per), kThreads, 0, s>>>(
          rows, cols, (const T*)x, (const T*)gamma, (C)eps, (const T*)dy, (T*)dx, stats);
    } else {
      norm_bwd_block<T, RMS><<<(unsigned)rows, block_threads(cols), 0, s>>>(cols, (const T*)x, (const T*)gamma, (C)eps,
                                                                            (const T*)dy, (T*)dx, stats);
    }
    if (params) {
      norm_bwd_partials<T, RMS><<<dim3(colBlocks, (unsigned)chunks), kThreads, 0, s>>>(
          rows, cols, chunks, (const T*)x, (const T*)dy, stats, partial);
      norm_bwd_final<T><<<colBlocks, kThreads, 0, s>>>(cols, chunks, partial, (T*)dgamma, (T*)dbeta);
    }
    status = check_launch(fn);
    if (scratch) {
      cudaError_t err = cudaFreeAsync(scratch, s);
      if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
    }
  });
  return status;
}

extern "C" int ct_cuda_layernorm_backward(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                                          double eps, const void* dy, void* dx, void* dgamma, void* dbeta,
                                          int64_t stream) {
  return run_norm_backward<false>("ct_cuda_layernorm_backward", dtype, rows, cols, x, gamma, eps, dy, dx, dgamma,
                                  dbeta, stream);
}

extern "C" int ct_cuda_rmsnorm_backward(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                                        double eps, const void* dy, void* dx, void* dgamma, int64_t stream) {
  return run_norm_backward<true>("ct_cuda_rmsnorm_backward", dtype, rows, cols, x, gamma, eps, dy, dx, dgamma, nullptr,
                                 stream);
}
