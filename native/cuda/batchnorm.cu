/*
 * Batch normalization on CUDA (the ct_cuda_batchnorm_* part of norm.h): per channel c over the
 * M = N*S elements of x [N, C, S] (NCHW) or [N, S, C] (NHWC); float32 and float64
 * (acc = float / double); gamma, beta and the statistics are float32 device arrays.
 *
 * Training forward (3 kernels, deterministic, no atomics):
 *  1. partials: the M elements of a channel are cut into `chunks` fixed ranges (chosen from the
 *     shape only). NCHW: one 256-thread block per (channel, chunk), threads stride along the
 *     contiguous runs of S; NHWC: a 32x8 block per (32-channel tile, chunk), a warp reads 32
 *     consecutive channels of a row (coalesced), the 8 warps take every 8th row. Each thread
 *     keeps a Welford state (count, mean, M2) in acc; states merge in a fixed order (NCHW: a
 *     shuffle-down tree, then the 8 warps in order; NHWC: the 8 rows of the block in order)
 *     with Chan's formula; one (count, mean, M2) per (chunk, channel) goes to a workspace.
 *  2. finalize: one thread per channel merges its chunks in chunk order in float64, then
 *     exactly as the CPU: var = M2/M (biased), rstd = 1/sqrt(var + eps) (float64),
 *     scale = gamma*rstd, shift = beta - mean*scale (in the dtype), save_mean/save_rstd,
 *     running_mean = (1-m)*running_mean + m*mean, running_var = (1-m)*running_var +
 *     m*var*M/(M-1) (unbiased).
 *  3. apply: y = x*scale[c] + shift[c], one thread per element (coalesced).
 * Inference: a per-channel kernel computes scale/shift from the running statistics (float64),
 *  then the apply kernel.
 * Backward: partials of sum(dy) and sum(dy*(x - mean)) as in 1 (plain sums in acc, same fixed
 *  orders), a per-channel kernel reduces the chunks in float64 and forms, as the CPU,
 *  dbeta = sum(dy), dgamma = sum(dy*(x-mean))*rstd and dx = k1*dy + k2*x + k3 with
 *  k1 = gamma*rstd, k2 = -k1*rstd^2*sdyx/M, k3 = -k1*sdy/M - k2*mean; then one elementwise pass.
 * NCHW with S == 1 is the same memory as NHWC ([N, C]) and runs the NHWC kernels.
 * Cost (X = N*C*S, e = dtype bytes): training ~8 FLOPs/elem (Welford, one divide) + 2, DRAM
 *  e*(2X read + X write); inference 2 FLOPs/elem, e*2X; backward ~4 + 3 FLOPs/elem,
 *  e*(4X read + X write). Memory bound; the workspace is at most ~16 KiB per 1024 chunks x
 *  channel tile (freed at the end of the call, stream ordered).
 */
#include "common.cuh"
#include "batchnorm_args.h"  // argument checks shared with the CPU library
#include "cortado/norm.h"

namespace ct {
namespace {

template <class T> using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// ------------------------------------------------------------------ validation
/* The shared checks (native/shared/batchnorm_args.h), then the CUDA grid's channel limit. */
int check_args(const char* fn, int dtype, int layout, int64_t n, int64_t c, int64_t s) {
  const int st = batchnorm::check_args(fn, dtype, layout, n, c, s);
  if (st != CT_OK) return st;
  if (c > INT32_MAX) return fail(CT_ERR_UNSUPPORTED, "%s: c = %lld channels exceed the CUDA grid (2^31 - 1)", fn, (long long)c);
  return CT_OK;
}

// ------------------------------------------------------------------ work split (shape only)
struct Plan {
  bool nhwc;       // NHWC kernels (also NCHW with s == 1)
  int64_t M, C, S; // per-channel count, channels, spatial (NCHW kernels)
  int64_t chunks;  // ranges per channel
  int64_t len;     // elements (NCHW) or rows (NHWC) per chunk
  int64_t tiles;   // NHWC: 32-channel tiles
};

Plan make_plan(int layout, int64_t n, int64_t c, int64_t s) {
  Plan p{};
  p.nhwc = layout == CT_LAYOUT_NHWC || s == 1;
  p.M = n * s;
  p.C = c;
  p.S = s;
  int64_t ch;
  if (p.nhwc) {
    p.tiles = (c + 31) / 32;
    ch = (p.M + 255) / 256;
    int64_t cap = 2048 / p.tiles;
    if (cap < 1) cap = 1;
    if (ch > cap) ch = cap;
  } else {
    ch = (p.M + 4095) / 4096;
    int64_t cap = 4096 / c;
    if (cap < 1) cap = 1;
    if (ch > cap) ch = cap;
  }
  if (ch > 1024) ch = 1024;
  if (ch < 1) ch = 1;
  p.len = (p.M + ch - 1) / ch;
  if (p.len < 1) p.len = 1;  // M == 0 (never launched)
  p.chunks = (p.M + p.len - 1) / p.len;  // no empty chunk
  if (p.chunks < 1) p.chunks = 1;
  return p;
}

/* Partial (chunk k, channel c) in the workspace: NCHW [C][chunks], NHWC [chunks][C]. */
__host__ __device__ __forceinline__ int64_t part_at(bool nhwc, int64_t C, int64_t chunks, int64_t c, int64_t k) {
  return nhwc ? k * C + c : c * chunks + k;
}

// ------------------------------------------------------------------ Welford
template <class A> struct wf_t {
  A mean, m2;
  int64_t n;
};

template <class A> __device__ __forceinline__ void wf_add(wf_t<A>& w, A v) {
  ++w.n;
  const A d = v - w.mean;
  w.mean += d / (A)w.n;
  w.m2 += d * (v - w.mean);
}

/* Chan's merge of two states (b after a). */
template <class A> __device__ __forceinline__ wf_t<A> wf_merge(const wf_t<A>& a, const wf_t<A>& b) {
  if (b.n == 0) return a;
  if (a.n == 0) return b;
  const int64_t n = a.n + b.n;
  const A d = b.mean - a.mean;
  const A fb = (A)b.n / (A)n;
  return wf_t<A>{a.mean + d * fb, a.m2 + b.m2 + d * d * (A)a.n * fb, n};
}

template <class A> __device__ __forceinline__ wf_t<A> wf_shfl_down(const wf_t<A>& w, int o) {
  return wf_t<A>{__shfl_down_sync(0xffffffffu, w.mean, o), __shfl_down_sync(0xffffffffu, w.m2, o),
                 (int64_t)__shfl_down_sync(0xffffffffu, (long long)w.n, o)};
}

/* Per-channel reducers: Welford of x (training) or sums of dy and dy*(x - mean) (backward). */
template <class A> struct StatRed {
  using state = wf_t<A>;
  __device__ static state zero() { return state{A(0), A(0), 0}; }
  __device__ static void add(state& s, A x, A) { wf_add(s, x); }
  __device__ static state merge(const state& a, const state& b) { return wf_merge(a, b); }
  __device__ static state down(const state& s, int o) { return wf_shfl_down(s, o); }
};
template <class A> struct SumPair {
  A a, b;
};
template <class A> struct GradRed {
  using state = SumPair<A>;
  __device__ static state zero() { return state{A(0), A(0)}; }
  __device__ static void add(state& s, A dy, A xm) {
    s.a += dy;
    s.b += dy * xm;
  }
  __device__ static state merge(const state& a, const state& b) { return state{a.a + b.a, a.b + b.b}; }
  __device__ static state down(const state& s, int o) {
    return state{__shfl_down_sync(0xffffffffu, s.a, o), __shfl_down_sync(0xffffffffu, s.b, o)};
  }
};

/* Partial outputs of stage 1: Welford (mean, m2, n) or sums (a, b). */
template <class A> struct Parts {
  A* p0;
  A* p1;
  int64_t* cnt;  // Welford only
};

template <class A> __device__ __forceinline__ void put(const Parts<A>& P, int64_t i, const wf_t<A>& w) {
  P.p0[i] = w.mean;
  P.p1[i] = w.m2;
  P.cnt[i] = w.n;
}
template <class A> __device__ __forceinline__ void put(const Parts<A>& P, int64_t i, const SumPair<A>& s) {
  P.p0[i] = s.a;
  P.p1[i] = s.b;
}

/* The per-element inputs of a reducer: (x, -) for training, (dy, x - mean) for backward. */
template <class T, class R, class I>
__device__ __forceinline__ void feed(typename R::state& st, const T* __restrict__ x, const T* __restrict__ dy,
                                     acc_t<T> mean, I at) {
  using A = acc_t<T>;
  if (dy) R::add(st, (A)dy[at], (A)x[at] - mean);
  else R::add(st, (A)x[at], A(0));
}

// ------------------------------------------------------------------ stage 1, NCHW: block per (channel, chunk)
constexpr int kBlock = 256;

template <class T, class R, class I>
__global__ void __launch_bounds__(kBlock) partial_nchw(Plan p, const T* __restrict__ x, const T* __restrict__ dy,
                                                       const float* __restrict__ mean_in, Parts<acc_t<T>> out) {
  using A = acc_t<T>;
  using St = typename R::state;
  __shared__ St warp_st[kBlock / 32];
  const int64_t c = (int64_t)blockIdx.x / p.chunks, k = (int64_t)blockIdx.x % p.chunks;
  const int64_t m0 = k * p.len;
  const int64_t m1 = m0 + p.len < p.M ? m0 + p.len : p.M;
  const A mean = mean_in ? (A)mean_in[c] : A(0);
  const I S = (I)p.S, C = (I)p.C;
  St st = R::zero();
  int64_t m = m0 + threadIdx.x;
  if (m < m1) {
    I n = (I)(m / p.S), j = (I)(m % p.S);
    for (; m < m1; m += kBlock) {
      feed<T, R, I>(st, x, dy, mean, (n * C + (I)c) * S + j);
      j += kBlock;
      if (j >= S) {
        n += j / S;
        j %= S;
      }
    }
  }
  // fixed-order merge: shuffle-down tree inside each warp, then the warps in order
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) st = R::merge(st, R::down(st, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_st[warp] = st;
  __syncthreads();
  if (threadIdx.x == 0) {
    St r = warp_st[0];
    for (int w = 1; w < kBlock / 32; ++w) r = R::merge(r, warp_st[w]);
    put(out, part_at(false, p.C, p.chunks, c, k), r);
  }
}

// ------------------------------------------------------------------ stage 1, NHWC: 32x8 block per (channel tile, chunk)
template <class T, class R, class I>
__global__ void __launch_bounds__(kBlock) partial_nhwc(Plan p, const T* __restrict__ x, const T* __restrict__ dy,
                                                       const float* __restrict__ mean_in, Parts<acc_t<T>> out) {
  using A = acc_t<T>;
  using St = typename R::state;
  __shared__ St sh[8][32];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = (int64_t)blockIdx.x * 32 + tx, k = blockIdx.y;
  const int64_t r0 = k * p.len;
  const int64_t r1 = r0 + p.len < p.M ? r0 + p.len : p.M;
  St st = R::zero();
  if (c < p.C) {
    const A mean = mean_in ? (A)mean_in[c] : A(0);
    for (int64_t r = r0 + ty; r < r1; r += 8) feed<T, R, I>(st, x, dy, mean, (I)r * (I)p.C + (I)c);
  }
  sh[ty][tx] = st;
  __syncthreads();
  if (ty == 0 && c < p.C) {
    St r = sh[0][tx];
    for (int w = 1; w < 8; ++w) r = R::merge(r, sh[w][tx]);
    put(out, part_at(true, p.C, p.chunks, c, k), r);
  }
}

// ------------------------------------------------------------------ stage 2
/* Training: merge the chunks (float64, chunk order), statistics and affine coefficients. */
template <class T, class A>
__global__ void finalize_training(Plan p, Parts<A> parts, const float* __restrict__ gamma,
                                  const float* __restrict__ beta, double eps, double momentum,
                                  float* __restrict__ rm, float* __restrict__ rv, float* __restrict__ save_mean,
                                  float* __restrict__ save_rstd, T* __restrict__ scale, T* __restrict__ shift) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= p.C) return;
  double mean = 0, m2 = 0;
  int64_t n = 0;
  for (int64_t k = 0; k < p.chunks; ++k) {
    const int64_t i = part_at(p.nhwc, p.C, p.chunks, c, k);
    const int64_t nb = parts.cnt[i];
    if (nb == 0) continue;
    const double mb = (double)parts.p0[i], m2b = (double)parts.p1[i];
    const int64_t nn = n + nb;
    const double d = mb - mean, fb = (double)nb / (double)nn;
    mean += d * fb;
    m2 += m2b + d * d * (double)n * fb;
    n = nn;
  }
  const double M = (double)p.M;
  double var = m2 / M;
  if (!(var > 0)) var = 0;
  const double rstd = 1.0 / sqrt(var + eps);
  const double gm = gamma ? (double)gamma[c] : 1.0, bt = beta ? (double)beta[c] : 0.0;
  scale[c] = (T)(gm * rstd);
  shift[c] = (T)(bt - mean * gm * rstd);
  if (save_mean) save_mean[c] = (float)mean;
  if (save_rstd) save_rstd[c] = (float)rstd;
  if (rm) rm[c] = (float)((1.0 - momentum) * (double)rm[c] + momentum * mean);
  if (rv) rv[c] = (float)((1.0 - momentum) * (double)rv[c] + momentum * var * M / (M - 1.0));
}

template <class T>
__global__ void inference_coeffs(int64_t C, const float* __restrict__ gamma, const float* __restrict__ beta,
                                 const float* __restrict__ rm, const float* __restrict__ rv, double eps,
                                 T* __restrict__ scale, T* __restrict__ shift) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double rstd = 1.0 / sqrt((double)rv[c] + eps);
  const double gm = gamma ? (double)gamma[c] : 1.0, bt = beta ? (double)beta[c] : 0.0;
  scale[c] = (T)(gm * rstd);
  shift[c] = (T)(bt - (double)rm[c] * gm * rstd);
}

/* Backward: sums over the chunks (float64, chunk order), dgamma/dbeta, dx coefficients. */
template <class T, class A>
__global__ void finalize_backward(Plan p, Parts<A> parts, const float* __restrict__ gamma,
                                  const float* __restrict__ smean, const float* __restrict__ srstd,
                                  float* __restrict__ dgamma, float* __restrict__ dbeta, T* __restrict__ k1,
                                  T* __restrict__ k2, T* __restrict__ k3) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= p.C) return;
  double sdy = 0, sdyx = 0;
  for (int64_t k = 0; k < p.chunks; ++k) {
    const int64_t i = part_at(p.nhwc, p.C, p.chunks, c, k);
    sdy += (double)parts.p0[i];
    sdyx += (double)parts.p1[i];
  }
  const double r = srstd[c], m = smean[c], gm = gamma ? (double)gamma[c] : 1.0;
  if (dbeta) dbeta[c] = (float)sdy;
  if (dgamma) dgamma[c] = (float)(sdyx * r);
  const double M = (double)p.M;
  const double a = gm * r;
  const double b = -a * r * r * sdyx / M;  // coefficient of (x - mean)
  k1[c] = (T)a;
  k2[c] = (T)b;
  k3[c] = (T)(-a * sdy / M - b * m);
}

// ------------------------------------------------------------------ stage 3: elementwise
/* out = k1[c]*a + (k2 ? k2[c]*b : 0) + k3[c]; inference/training: a = x, no b; backward: a = dy, b = x. */
template <class T, class I, bool NHWC, bool THREE>
__global__ void apply(I total, I C, I S, const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ k1,
                      const T* __restrict__ k2, const T* __restrict__ k3, T* __restrict__ out) {
  for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
    const I c = NHWC ? t % C : (t / S) % C;
    if (THREE) out[t] = k1[c] * a[t] + k2[c] * b[t] + k3[c];
    else out[t] = a[t] * k1[c] + k3[c];
  }
}

// ------------------------------------------------------------------ host side
size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* One stream-ordered workspace: parts (2 acc arrays + counts) then 3 coefficient arrays of T. */
template <class T> struct Workspace {
  void* base = nullptr;
  Parts<acc_t<T>> parts{};
  T* k[3] = {nullptr, nullptr, nullptr};
};

template <class T>
int ws_alloc(const char* fn, const Plan& p, bool with_parts, Workspace<T>* w, cudaStream_t st) {
  using A = acc_t<T>;
  const size_t np = with_parts ? (size_t)(p.chunks * p.C) : 0;
  const size_t b_parts = align256(np * sizeof(A));
  const size_t b_cnt = align256(np * sizeof(int64_t));
  const size_t b_k = align256((size_t)p.C * sizeof(T));
  const size_t bytes = 2 * b_parts + b_cnt + 3 * b_k;
  CT_CUDA_TRY(fn, cudaMallocAsync(&w->base, bytes, st));
  char* q = (char*)w->base;
  w->parts.p0 = (A*)q;
  w->parts.p1 = (A*)(q + b_parts);
  w->parts.cnt = (int64_t*)(q + 2 * b_parts);
  q += 2 * b_parts + b_cnt;
  for (int i = 0; i < 3; ++i) w->k[i] = (T*)(q + i * b_k);
  return CT_OK;
}

template <class T, class R, class I>
void launch_partials(const Plan& p, const T* x, const T* dy, const float* mean, Parts<acc_t<T>> parts,
                     cudaStream_t st) {
  if (p.nhwc) {
    dim3 grid((unsigned)p.tiles, (unsigned)p.chunks), block(32, 8);
    partial_nhwc<T, R, I><<<grid, block, 0, st>>>(p, x, dy, mean, parts);
  } else {
    partial_nchw<T, R, I><<<(unsigned)(p.C * p.chunks), kBlock, 0, st>>>(p, x, dy, mean, parts);
  }
}

template <class T, class I>
void launch_apply(const Plan& p, int64_t total, int sms, const T* a, const T* b, const T* k1, const T* k2,
                  const T* k3, T* out, cudaStream_t st) {
  const unsigned grid = grid_for(total, sms);
  const I C = (I)p.C, S = (I)p.S;
  if (b) {
    if (p.nhwc) apply<T, I, true, true><<<grid, kThreads, 0, st>>>((I)total, C, S, a, b, k1, k2, k3, out);
    else apply<T, I, false, true><<<grid, kThreads, 0, st>>>((I)total, C, S, a, b, k1, k2, k3, out);
  } else {
    if (p.nhwc) apply<T, I, true, false><<<grid, kThreads, 0, st>>>((I)total, C, S, a, b, k1, k2, k3, out);
    else apply<T, I, false, false><<<grid, kThreads, 0, st>>>((I)total, C, S, a, b, k1, k2, k3, out);
  }
}

/* Frees the workspace (stream ordered) and returns the first error. */
int finish(const char* fn, int status, void* ws, cudaStream_t st) {
  if (status == CT_OK) status = check_launch(fn);
  if (ws) {
    cudaError_t err = cudaFreeAsync(ws, st);
    if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
  }
  return status;
}

template <class T>
int run_training(const char* fn, int layout, int64_t n, int64_t c, int64_t s, const void* x, const float* gamma,
                 const float* beta, double eps, double momentum, float* rm, float* rv, void* y, float* smean,
                 float* srstd, cudaStream_t st) {
  using A = acc_t<T>;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const Plan p = make_plan(layout, n, c, s);
  Workspace<T> w;
  CT_TRY_STATUS(ws_alloc<T>(fn, p, true, &w, st));
  const int64_t total = n * c * s;
  const bool small = total < ((int64_t)1 << 31);
  if (small) launch_partials<T, StatRed<A>, uint32_t>(p, (const T*)x, nullptr, nullptr, w.parts, st);
  else launch_partials<T, StatRed<A>, int64_t>(p, (const T*)x, nullptr, nullptr, w.parts, st);
  finalize_training<T, A><<<(unsigned)((c + 127) / 128), 128, 0, st>>>(p, w.parts, gamma, beta, eps, momentum, rm, rv,
                                                                       smean, srstd, w.k[0], w.k[2]);
  if (small) launch_apply<T, uint32_t>(p, total, sms, (const T*)x, nullptr, w.k[0], nullptr, w.k[2], (T*)y, st);
  else launch_apply<T, int64_t>(p, total, sms, (const T*)x, nullptr, w.k[0], nullptr, w.k[2], (T*)y, st);
  return finish(fn, CT_OK, w.base, st);
}

template <class T>
int run_inference(const char* fn, int layout, int64_t n, int64_t c, int64_t s, const void* x, const float* gamma,
                  const float* beta, const float* rm, const float* rv, double eps, void* y, cudaStream_t st) {
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const Plan p = make_plan(layout, n, c, s);
  Workspace<T> w;
  CT_TRY_STATUS(ws_alloc<T>(fn, p, false, &w, st));
  inference_coeffs<T><<<(unsigned)((c + 127) / 128), 128, 0, st>>>(c, gamma, beta, rm, rv, eps, w.k[0], w.k[2]);
  const int64_t total = n * c * s;
  if (total < ((int64_t)1 << 31))
    launch_apply<T, uint32_t>(p, total, sms, (const T*)x, nullptr, w.k[0], nullptr, w.k[2], (T*)y, st);
  else launch_apply<T, int64_t>(p, total, sms, (const T*)x, nullptr, w.k[0], nullptr, w.k[2], (T*)y, st);
  return finish(fn, CT_OK, w.base, st);
}

template <class T>
int run_backward(const char* fn, int layout, int64_t n, int64_t c, int64_t s, const void* x, const void* dy,
                 const float* gamma, const float* smean, const float* srstd, void* dx, float* dgamma, float* dbeta,
                 cudaStream_t st) {
  using A = acc_t<T>;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const Plan p = make_plan(layout, n, c, s);
  Workspace<T> w;
  CT_TRY_STATUS(ws_alloc<T>(fn, p, true, &w, st));
  const int64_t total = n * c * s;
  const bool small = total < ((int64_t)1 << 31);
  if (small) launch_partials<T, GradRed<A>, uint32_t>(p, (const T*)x, (const T*)dy, smean, w.parts, st);
  else launch_partials<T, GradRed<A>, int64_t>(p, (const T*)x, (const T*)dy, smean, w.parts, st);
  finalize_backward<T, A><<<(unsigned)((c + 127) / 128), 128, 0, st>>>(p, w.parts, gamma, smean, srstd, dgamma, dbeta,
                                                                       w.k[0], w.k[1], w.k[2]);
  if (small)
    launch_apply<T, uint32_t>(p, total, sms, (const T*)dy, (const T*)x, w.k[0], w.k[1], w.k[2], (T*)dx, st);
  else launch_apply<T, int64_t>(p, total, sms, (const T*)dy, (const T*)x, w.k[0], w.k[1], w.k[2], (T*)dx, st);
  return finish(fn, CT_OK, w.base, st);
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cuda_batchnorm_forward_training(int dtype, int layout, int64_t n, int64_t c, int64_t s, const void* x,
                                       const float* gamma, const float* beta, double eps, double momentum,
                                       float* running_mean, float* running_var, void* y, float* save_mean,
                                       float* save_rstd, int64_t stream) {
  const char* fn = "ct_cuda_batchnorm_forward_training";
  CT_TRY_STATUS(check_args(fn, dtype, layout, n, c, s));
  if (!(eps >= 0) || !std::isfinite(eps)) return fail(CT_ERR_INVALID_ARG, "%s: eps = %g must be finite and >= 0", fn, eps);
  if (!(momentum >= 0 && momentum <= 1))
    return fail(CT_ERR_INVALID_ARG, "%s: momentum = %g must be in [0, 1]", fn, momentum);
  if (c == 0) return CT_OK;
  if (n * s < 2 && (running_var || n * s == 0))
    return fail(CT_ERR_INVALID_ARG, "%s: training needs more than 1 value per channel (n = %lld, s = %lld)", fn,
                (long long)n, (long long)s);
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "y", y));
  const cudaStream_t st = as_stream(stream);
  if (dtype == CT_F32)
    return run_training<float>(fn, layout, n, c, s, x, gamma, beta, eps, momentum, running_mean, running_var, y,
                               save_mean, save_rstd, st);
  return run_training<double>(fn, layout, n, c, s, x, gamma, beta, eps, momentum, running_mean, running_var, y,
                              save_mean, save_rstd, st);
}

int ct_cuda_batchnorm_forward_inference(int dtype, int layout, int64_t n, int64_t c, int64_t s, const void* x,
                                        const float* gamma, const float* beta, const float* running_mean,
                                        const float* running_var, double eps, void* y, int64_t stream) {
  const char* fn = "ct_cuda_batchnorm_forward_inference";
  CT_TRY_STATUS(check_args(fn, dtype, layout, n, c, s));
  if (!(eps >= 0) || !std::isfinite(eps)) return fail(CT_ERR_INVALID_ARG, "%s: eps = %g must be finite and >= 0", fn, eps);
  if (n * c * s == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "y", y));
  CT_TRY_STATUS(check_ptr(fn, "running_mean", running_mean));
  CT_TRY_STATUS(check_ptr(fn, "running_var", running_var));
  const cudaStream_t st = as_stream(stream);
  if (dtype == CT_F32)
    return run_inference<float>(fn, layout, n, c, s, x, gamma, beta, running_mean, running_var, eps, y, st);
  return run_inference<double>(fn, layout, n, c, s, x, gamma, beta, running_mean, running_var, eps, y, st);
}

int ct_cuda_batchnorm_backward(int dtype, int layout, int64_t n, int64_t c, int64_t s, const void* x, const void* dy,
                               const float* gamma, const float* save_mean, const float* save_rstd, void* dx,
                               float* dgamma, float* dbeta, int64_t stream) {
  const char* fn = "ct_cuda_batchnorm_backward";
  CT_TRY_STATUS(check_args(fn, dtype, layout, n, c, s));
  if (c == 0) return CT_OK;
  const cudaStream_t st = as_stream(stream);
  if (n * s == 0) {
    if (dgamma) CT_CUDA_TRY(fn, cudaMemsetAsync(dgamma, 0, sizeof(float) * (size_t)c, st));
    if (dbeta) CT_CUDA_TRY(fn, cudaMemsetAsync(dbeta, 0, sizeof(float) * (size_t)c, st));
    return CT_OK;
  }
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "dy", dy));
  CT_TRY_STATUS(check_ptr(fn, "save_mean", save_mean));
  CT_TRY_STATUS(check_ptr(fn, "save_rstd", save_rstd));
  CT_TRY_STATUS(check_ptr(fn, "dx", dx));
  if (dtype == CT_F32)
    return run_backward<float>(fn, layout, n, c, s, x, dy, gamma, save_mean, save_rstd, dx, dgamma, dbeta, st);
  return run_backward<double>(fn, layout, n, c, s, x, dy, gamma, save_mean, save_rstd, dx, dgamma, dbeta, st);
}

}  // extern "C"
