/*
 * Binary (1-bit) kernels on CUDA (quant_binary.h), the twins of native/cpu/quant_binary.cpp:
 * signs packed 64 per word (bit set = +1), dot products k - 2 popcount(a XOR b) exact in
 * integers, XNOR-Net scales in the epilogue with the CPU's float order ((k - 2 pop) alpha beta).
 *
 * Binarize: one warp per 64-element word; lanes read x[e] and x[e + 32] (coalesced) and two
 * __ballot_sync give the word's halves. Reads 4 bytes, writes 1/8 byte per element.
 * GEMM: 64 x 64 outputs per block of 256 threads, each thread a 4 x 4 register tile (rows
 * ty + 16 r, columns tx + 16 c); per step 8 words of k of the block's 64 rows of a and 64 rows
 * of b are staged in shared memory (the last word masked to the row's k bits, words past the end
 * zero, so they add nothing), then every thread does 16 XOR + __popcll per word. Cost: m n kw
 * word operations (64 sign multiply-adds each) on the integer pipes; a read n / 64 times, b m / 64
 * times (from L2), y written once. (bmma.b1 m8n8k128 would need 128-bit-aligned k blocks and
 * AND/XOR-popc semantics with a layout of its own; the popcount tile is the exact twin.)
 * Convolution: one thread per (output pixel, output channel), channels fastest so a warp shares
 * the pixel's x words; it walks the taps inside the image and their cw words. Cost: batch oh ow
 * cout kh kw cw word operations.
 * sign_ste and its backward: grid-stride elementwise, computed in compute_t (float for 16-bit
 * types) as on the CPU. BiPer and its backward: grid-stride elementwise, sin / cos in double
 * (biper_math.h, shared with the CPU), one rounding to the dtype. alpha / beta are checked finite on the device first (device_check.cuh).
 */
#include "common.cuh"
#include "cortado/quant_binary.h"
#include "device_check.cuh"
#include "biper_math.h"
#include "quant_weight_check.h"

namespace ct {
namespace {

inline int64_t words(int64_t k) { return (k + 63) / 64; }
__host__ __device__ inline uint64_t tail_mask(int64_t k) { return k % 64 == 0 ? ~0ull : (1ull << (k % 64)) - 1; }

int check_words(const char* fn, const char* name, const void* p) {
  if (!p || aligned_to(p, 8)) return CT_OK;
  return fail(CT_ERR_INVALID_ARG, "%s: %s %p is not 8-byte aligned (read as 64-bit words)", fn, name, p);
}

// ------------------------------------------------------------------ binarize
__global__ void binarize_kernel(const float* __restrict__ x, int64_t rows, int64_t k, int64_t ldx, int64_t kw,
                                uint64_t* __restrict__ bits) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t wd = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; wd < rows * kw; wd += warps) {
    const int64_t r = wd / kw, e0 = (wd % kw) * 64;
    const float* xr = x + r * ldx;
    const int64_t e = e0 + lane;
    const unsigned lo = __ballot_sync(0xffffffffu, e < k && xr[e] >= 0.0f);
    const unsigned hi = __ballot_sync(0xffffffffu, e + 32 < k && xr[e + 32] >= 0.0f);
    if (lane == 0) bits[wd] = (uint64_t)lo | ((uint64_t)hi << 32);
  }
}

// ------------------------------------------------------------------ GEMM
constexpr int kTile = 64, kStepWords = 8;

__global__ void __launch_bounds__(256) bgemm_kernel(ct_bgemm_args g, int64_t kw) {
  __shared__ uint64_t as[kTile][kStepWords + 1], bs[kTile][kStepWords + 1];
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int64_t i0 = (int64_t)blockIdx.y * kTile, j0 = (int64_t)blockIdx.x * kTile;
  const uint64_t* a = (const uint64_t*)g.a;
  const uint64_t* b = (const uint64_t*)g.b;
  const uint64_t last = tail_mask(g.k);
  int pop[4][4] = {};
  for (int64_t w0 = 0; w0 < kw; w0 += kStepWords) {
    for (int e = threadIdx.x; e < kTile * kStepWords; e += blockDim.x) {
      const int row = e / kStepWords, q = e % kStepWords;
      const int64_t w = w0 + q;
      const uint64_t mask = w == kw - 1 ? last : ~0ull;
      as[row][q] = (w < kw && i0 + row < g.m) ? (a[(i0 + row) * kw + w] & mask) : 0ull;
      bs[row][q] = (w < kw && j0 + row < g.n) ? (b[(j0 + row) * kw + w] & mask) : 0ull;
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < kStepWords; ++q) {
      uint64_t av[4], bv[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) av[r] = as[ty + 16 * r][q];
#pragma unroll
      for (int c = 0; c < 4; ++c) bv[c] = bs[tx + 16 * c][q];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) pop[r][c] += __popcll(av[r] ^ bv[c]);
    }
    __syncthreads();
  }
  // padding words are zero on both sides (XOR 0): pop counts only the k real bits
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int64_t i = i0 + ty + 16 * r, j = j0 + tx + 16 * c;
      if (i >= g.m || j >= g.n) continue;
      float v = (float)(g.k - 2 * (int64_t)pop[r][c]);
      if (g.alpha) v *= ((const float*)g.alpha)[j];
      if (g.beta) v *= ((const float*)g.beta)[i];
      ((float*)g.y)[i * g.n + j] = v;
    }
}

// ------------------------------------------------------------------ convolution
__global__ void bconv_kernel(ct_bconv_args p, int64_t cw, int64_t total) {
  const uint64_t* x = (const uint64_t*)p.x;
  const uint64_t* w = (const uint64_t*)p.w;
  const uint64_t last = tail_mask(p.c);
  const int64_t wstride = p.kh * p.kw * cw;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t co = e % p.cout, pix = e / p.cout, ox = pix % p.ow, r = pix / p.ow, oy = r % p.oh, b = r / p.oh;
    int64_t pop = 0, taps = 0;
    for (int64_t dy = 0; dy < p.kh; ++dy) {
      const int64_t iy = oy * p.stride_h - p.pad_h + dy;
      if (iy < 0 || iy >= p.h) continue;
      for (int64_t dx = 0; dx < p.kw; ++dx) {
        const int64_t ix = ox * p.stride_w - p.pad_w + dx;
        if (ix < 0 || ix >= p.w_in) continue;
        const uint64_t* xt = x + ((b * p.h + iy) * p.w_in + ix) * cw;
        const uint64_t* wt = w + co * wstride + (dy * p.kw + dx) * cw;
        for (int64_t q = 0; q < cw; ++q) pop += __popcll((xt[q] ^ wt[q]) & (q == cw - 1 ? last : ~0ull));
        ++taps;
      }
    }
    const float v = (float)(taps * p.c - 2 * pop);
    ((float*)p.y)[e] = p.alpha ? v * ((const float*)p.alpha)[co] : v;
  }
}

// ------------------------------------------------------------------ sign with the straight-through estimator
template <class T> __global__ void sign_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const compute_t<T> v = load(x[i]);
    y[i] = store<T>((compute_t<T>)(v != v ? v : v >= 0 ? 1 : -1));
  }
}

template <class T>
__global__ void sign_grad_kernel(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ dx, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const compute_t<T> v = load(x[i]);
    dx[i] = store<T>((compute_t<T>)(v >= -1 && v <= 1 ? load(g[i]) : 0));
  }
}

template <class T> __global__ void biper_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, double omega) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = store<T>((compute_t<T>)biper::wave((double)load(x[i]), omega));
}

template <class T>
__global__ void biper_grad_kernel(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ dx, int64_t n,
                                  double omega) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dx[i] = store<T>((compute_t<T>)biper::grad((double)load(g[i]), (double)load(x[i]), omega));
}

int check_omega(const char* fn, double omega) {
  if (biper::valid_omega(omega)) return CT_OK;
  return fail(CT_ERR_INVALID_ARG, "%s: the frequency omega = %g must be finite and > 0", fn, omega);
}

/* Runs launch(type_tag<T>, grid, stream) for a float dtype over a grid-stride loop of n items. */
template <class L> int launch_float(const char* fn, int dtype, int64_t n, int64_t stream, L&& launch) {
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  dispatch_float(dtype, [&](auto t) { launch(t, grid_for(n, sms), as_stream(stream)); });
  return check_launch(fn);
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_binarize(const float* x, int64_t rows, int64_t k, int64_t ldx, uint64_t* bits, int64_t stream) {
  static const char* fn = "ct_cuda_binarize";
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_binarize(fn, x, rows, k, ldx, bits, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  const int64_t kw = words(k);
  CT_TRY_STATUS(check_words(fn, "bits", bits));
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  binarize_kernel<<<grid_for(rows * kw * 32, sms), kThreads, 0, as_stream(stream)>>>(x, rows, k, ldx, kw, bits);
  return check_launch(fn);
}

extern "C" int ct_cuda_binary_gemm(const ct_bgemm_args* args, int64_t stream) {
  static const char* fn = "ct_cuda_binary_gemm";
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_bgemm(fn, args, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  const ct_bgemm_args& g = *args;
  if ((g.m + kTile - 1) / kTile > 65535 || g.k > 2147483647LL)
    return fail(CT_ERR_INVALID_ARG, "%s: m=%lld (at most %d), k=%lld", fn, (long long)g.m, 65535 * kTile, (long long)g.k);
  CT_TRY_STATUS(check_words(fn, "a", g.a));
  CT_TRY_STATUS(check_words(fn, "b", g.b));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_finite(fn, "alpha", (const float*)g.alpha, g.n, st, sms));
  CT_TRY_STATUS(check_finite(fn, "beta", (const float*)g.beta, g.m, st, sms));
  const dim3 grid((unsigned)((g.n + kTile - 1) / kTile), (unsigned)((g.m + kTile - 1) / kTile));
  bgemm_kernel<<<grid, 256, 0, st>>>(g, words(g.k));
  return check_launch(fn);
}

extern "C" int ct_cuda_binary_conv2d(const ct_bconv_args* args, int64_t stream) {
  static const char* fn = "ct_cuda_binary_conv2d";
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_bconv(fn, args, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  const ct_bconv_args& p = *args;
  const int64_t total = p.batch * p.oh * p.ow * p.cout, cw = words(p.c);
  CT_TRY_STATUS(check_words(fn, "x", p.x));
  CT_TRY_STATUS(check_words(fn, "w", p.w));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_finite(fn, "alpha", (const float*)p.alpha, p.cout, st, sms));
  bconv_kernel<<<grid_for(total, sms), kThreads, 0, st>>>(p, cw, total);
  return check_launch(fn);
}

extern "C" int ct_cuda_sign_ste(const void* x, void* y, int32_t dtype, int64_t n, int64_t stream) {
  static const char* fn = "ct_cuda_sign_ste";
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_sign(fn, dtype, n, x && y, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  return launch_float(fn, dtype, n, stream, [&](auto t, unsigned grid, cudaStream_t st) {
    using T = typename decltype(t)::type;
    sign_kernel<T><<<grid, kThreads, 0, st>>>((const T*)x, (T*)y, n);
  });
}

extern "C" int ct_cuda_sign_ste_backward(const void* g, const void* x, void* dx, int32_t dtype, int64_t n,
                                         int64_t stream) {
  static const char* fn = "ct_cuda_sign_ste_backward";
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_sign(fn, dtype, n, g && x && dx, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  return launch_float(fn, dtype, n, stream, [&](auto t, unsigned grid, cudaStream_t st) {
    using T = typename decltype(t)::type;
    sign_grad_kernel<T><<<grid, kThreads, 0, st>>>((const T*)g, (const T*)x, (T*)dx, n);
  });
}

extern "C" int ct_cuda_biper(const void* x, void* y, int32_t dtype, int64_t n, double omega, int64_t stream) {
  static const char* fn = "ct_cuda_biper";
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_sign(fn, dtype, n, x && y, &empty, &msg)) return fail(st, "%s", msg.text);
  if (int st = check_omega(fn, omega)) return st;
  if (empty) return CT_OK;
  return launch_float(fn, dtype, n, stream, [&](auto t, unsigned grid, cudaStream_t st) {
    using T = typename decltype(t)::type;
    biper_kernel<T><<<grid, kThreads, 0, st>>>((const T*)x, (T*)y, n, omega);
  });
}

extern "C" int ct_cuda_biper_backward(const void* g, const void* x, void* dx, int32_t dtype, int64_t n, double omega,
                                      int64_t stream) {
  static const char* fn = "ct_cuda_biper_backward";
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_sign(fn, dtype, n, g && x && dx, &empty, &msg)) return fail(st, "%s", msg.text);
  if (int st = check_omega(fn, omega)) return st;
  if (empty) return CT_OK;
  return launch_float(fn, dtype, n, stream, [&](auto t, unsigned grid, cudaStream_t st) {
    using T = typename decltype(t)::type;
    biper_grad_kernel<T><<<grid, kThreads, 0, st>>>((const T*)g, (const T*)x, (T*)dx, n, omega);
  });
}
