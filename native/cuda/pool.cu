/*
 * Pooling family on CUDA (pool.h): max pooling with indices, average pooling (padding counted
 * or not), adaptive / global average pooling; forward and backward; 1-d/2-d/3-d through the
 * conv geometry g[25] of conv.h (read on the host, passed to the kernels by value); layouts
 * NCHW and NHWC; float32 and float64 (acc = float / double).
 *
 * Windows: along a dimension of size L, output o reads the taps r in [r0, r1) of
 * base(o) + r*dil with base(o) = o*stride - pad_before, clipped to the input (adaptive:
 * base = floor(o*L/out), taps [0, ceil((o+1)*L/out) - base), dil 1): exactly the CPU's table.
 * Padding is never read. Max: taps in ascending spatial order, the first tap starts the
 * maximum, a later tap wins when v > m or v is NaN (first max wins, the last NaN wins); a
 * window of only padding gives -inf and index -1. Indices are the flat (d*H + h)*W + w within
 * the (n, c) plane in both layouts. Average: sum / (count_include_pad ? kD*kH*kW : taps inside).
 *
 * Forward: one thread per output; the output's flat index in its layout is the thread index,
 *   so NCHW threads run along the output width and NHWC threads along the channels (coalesced
 *   reads of each tap row). NCHW windows of >= 64 taps (global pooling, large kernels): one
 *   warp per output, lanes stride over the window's taps (coalesced along the width), merged by
 *   a fixed shuffle tree (max: a total order on (NaN, value, -index), so ties resolve as the CPU's
 *   sequential scan).
 * Backward (gather, no atomics): one thread per dx element visits the outputs whose window
 *   covers it, in ascending output order (per dimension [ceil((i + pb - (k-1)*dil)/s), (i + pb)/s]
 *   with (i + pb - o*s) % dil == 0; adaptive: the bins containing i), and adds
 *   max: dy[o] where indices[o] is this element (in the dtype, in the CPU's order: bit-identical),
 *   avg: dy[o] / divisor(o) (acc). Max backward first validates the indices (a kernel over the
 *   outputs flags the first index that is neither -1 nor a tap of its window; one stream sync).
 * Index math is 32-bit when every size and offset fits, 64-bit otherwise.
 *
 * Cost (K taps per window, O outputs, I inputs, e = dtype bytes):
 *   forward: O*K compares or adds; DRAM ~ e*(I + O) (+ 8*O indices), overlap served from cache.
 *   max backward: ~ (K / stride^d) index compares per input; DRAM ~ e*(I + O) + 8*O (+ 8*O check).
 *   avg backward: ~ (K / stride^d) adds + one divide per visited window; DRAM ~ e*(I + O).
 */
#include "common.cuh"
#include "cortado/conv.h"
#include "cortado/pool.h"
#include "pool_geometry.h"

namespace ct {
namespace {

using pool::Kind;
using pool::MAXP;
using pool::AVGP;
using pool::ADAPT;
using pool::check_common;
using pool::read_geo;
using PoolGeo = pool::Geo;

template <class T> using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
template <class I> using sgn_t = std::conditional_t<std::is_same_v<I, uint32_t>, int32_t, int64_t>;


// host validation: native/shared/pool_geometry.h (shared with pool.cpp)

/* 32-bit index math is exact: every tensor size, coordinate and intermediate below 2^30. */
bool fits32(const PoolGeo& g) {
  const int64_t lim = (int64_t)1 << 30;
  if (g.N * g.C * g.P >= lim || g.N * g.C * g.OP >= lim) return false;
  for (int d = 0; d < 3; ++d) {
    if (g.in[d] * g.out[d] >= lim) return false;  // adaptive bins: o * L
    if (g.in[d] + g.pb[d] + g.pa[d] + g.dil[d] * g.k[d] + g.out[d] * g.s[d] >= lim) return false;
  }
  return true;
}

// ------------------------------------------------------------------ device helpers
/* Window of output o along dimension d: taps r in [r0, r1) at base + r*dl. */
template <int KIND, class S>
__device__ __forceinline__ void window(const PoolGeo& g, int d, S o, S& base, S& r0, S& r1, S& dl) {
  const S L = (S)g.in[d];
  if (KIND == ADAPT) {
    const S O = (S)g.out[d];
    const S lo = (o * L) / O, hi = ((o + 1) * L + O - 1) / O;
    base = lo;
    r0 = 0;
    r1 = hi - lo;
    dl = 1;
  } else {
    const S b = o * (S)g.s[d] - (S)g.pb[d];
    dl = (S)g.dil[d];
    S a0 = b >= 0 ? 0 : (-b + dl - 1) / dl;
    S a1 = L - b <= 0 ? 0 : (L - b + dl - 1) / dl;  // first r with b + r*dl >= L
    if (a1 > (S)g.k[d]) a1 = (S)g.k[d];
    if (a0 > a1) a0 = a1;
    base = b;
    r0 = a0;
    r1 = a1;
  }
}

/* Outputs [lo, hi] along dimension d whose window may contain input coordinate i (for
 * pooling the caller also checks (i + pb - o*s) % dil == 0). Empty when lo > hi. */
template <int KIND, class S>
__device__ __forceinline__ void covering(const PoolGeo& g, int d, S i, S& lo, S& hi) {
  const S O = (S)g.out[d];
  if (KIND == ADAPT) {
    const S L = (S)g.in[d];
    S a = (i * O) / L;  // a bin containing i is near floor(i*O/L); adjust exactly
    while (a > 0 && ((a - 1 + 1) * L + O - 1) / O > i) --a;  // bin a-1 still ends after i
    while (a < O && ((a + 1) * L + O - 1) / O <= i) ++a;     // bin a ends at or before i
    S b = a;
    while (b + 1 < O && ((b + 1) * L) / O <= i) ++b;          // bin b+1 starts at or before i
    lo = a;
    hi = b;
  } else {
    const S num = i + (S)g.pb[d];
    const S first = num - ((S)g.k[d] - 1) * (S)g.dil[d];
    const S st = (S)g.s[d];
    lo = first <= 0 ? 0 : (first + st - 1) / st;
    hi = num / st;
    if (hi > O - 1) hi = O - 1;
  }
}

/* Decomposes a flat element index of a [N, C, D, H, W] (NCHW) or [N, D, H, W, C] (NHWC) tensor. */
template <int LAYOUT, class I>
__device__ __forceinline__ void decompose(I t, I C, I D, I H, I W, I& n, I& c, I& d, I& h, I& w) {
  if (LAYOUT == CT_LAYOUT_NHWC) {
    c = t % C; t /= C;
    w = t % W; t /= W;
    h = t % H; t /= H;
    d = t % D;
    n = t / D;
  } else {
    w = t % W; t /= W;
    h = t % H; t /= H;
    d = t % D; t /= D;
    c = t % C;
    n = t / C;
  }
}

template <class T> __device__ __forceinline__ T neg_inf() { return (T)(-INFINITY); }

// ------------------------------------------------------------------ forward: one thread per output
template <class T, class I, int KIND, int LAYOUT>
__global__ void pool_fwd(PoolGeo g, int include_pad, const T* __restrict__ x, T* __restrict__ y,
                         int64_t* __restrict__ idx, I total) {
  using S = sgn_t<I>;
  using A = acc_t<T>;
  const I C = (I)g.C, oD = (I)g.out[0], oH = (I)g.out[1], oW = (I)g.out[2];
  const I H = (I)g.in[1], W = (I)g.in[2], P = (I)g.P;
  for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
    I n, c, od, oh, ow;
    decompose<LAYOUT>(t, C, oD, oH, oW, n, c, od, oh, ow);
    const I xb = LAYOUT == CT_LAYOUT_NCHW ? (n * C + c) * P : n * P * C + c;
    const I es = LAYOUT == CT_LAYOUT_NCHW ? (I)1 : C;
    S b0, a0, a1, d0, b1, e0, e1, d1, b2, f0, f1, d2;
    window<KIND, S>(g, 0, (S)od, b0, a0, a1, d0);
    window<KIND, S>(g, 1, (S)oh, b1, e0, e1, d1);
    window<KIND, S>(g, 2, (S)ow, b2, f0, f1, d2);
    if (KIND == MAXP) {
      T m = neg_inf<T>();
      int64_t mi = -1;
      bool first = true;
      for (S a = a0; a < a1; ++a) {
        const S id = b0 + a * d0;
        for (S bb = e0; bb < e1; ++bb) {
          const S rowb = (id * (S)H + b1 + bb * d1) * (S)W + b2;
          for (S cc = f0; cc < f1; ++cc) {
            const S sp = rowb + cc * d2;
            const T v = x[xb + (I)sp * es];
            if (first || v > m || v != v) {
              m = v;
              mi = (int64_t)sp;
              first = false;
            }
          }
        }
      }
      y[t] = m;
      if (idx) idx[t] = mi;
    } else {
      A acc = A(0);
      for (S a = a0; a < a1; ++a) {
        const S id = b0 + a * d0;
        for (S bb = e0; bb < e1; ++bb) {
          const S rowb = (id * (S)H + b1 + bb * d1) * (S)W + b2;
          for (S cc = f0; cc < f1; ++cc) acc += (A)x[xb + (I)(rowb + cc * d2) * es];
        }
      }
      const S inside = (a1 - a0) * (e1 - e0) * (f1 - f0);
      const A dv = (KIND == AVGP && include_pad) ? (A)g.taps : (A)inside;
      y[t] = dv > A(0) ? (T)(acc / dv) : T(0);
    }
  }
}

// ------------------------------------------------------------------ forward: one warp per output (NCHW, large windows)
template <class T> struct maxst { T v; int64_t i; };  // i < 0: no tap seen

/* True when candidate a beats b under the CPU's sequential rule (last NaN, else the largest
 * value, else the smallest index). A total order on distinct indices: the merge is exact. */
template <class T> __device__ __forceinline__ bool beats(const maxst<T>& a, const maxst<T>& b) {
  if (a.i < 0) return false;
  if (b.i < 0) return true;
  const bool an = a.v != a.v, bn = b.v != b.v;
  if (an || bn) return an && bn ? a.i > b.i : an;
  if (a.v != b.v) return a.v > b.v;
  return a.i < b.i;
}

template <class T, class I, int KIND>
__global__ void pool_fwd_warp(PoolGeo g, int include_pad, const T* __restrict__ x, T* __restrict__ y,
                              int64_t* __restrict__ idx, I total) {
  using S = sgn_t<I>;
  using A = acc_t<T>;
  const I C = (I)g.C, oD = (I)g.out[0], oH = (I)g.out[1], oW = (I)g.out[2];
  const I H = (I)g.in[1], W = (I)g.in[2], P = (I)g.P;
  const int lane = threadIdx.x & 31;
  const I warps = (I)gridDim.x * (blockDim.x >> 5);
  for (I t = (I)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); t < total; t += warps) {
    I n, c, od, oh, ow;
    decompose<CT_LAYOUT_NCHW>(t, C, oD, oH, oW, n, c, od, oh, ow);
    const T* xp = x + (n * C + c) * P;
    S b0, a0, a1, d0, b1, e0, e1, d1, b2, f0, f1, d2;
    window<KIND, S>(g, 0, (S)od, b0, a0, a1, d0);
    window<KIND, S>(g, 1, (S)oh, b1, e0, e1, d1);
    window<KIND, S>(g, 2, (S)ow, b2, f0, f1, d2);
    const S na = a1 - a0, nb = e1 - e0, nc = f1 - f0;
    const S nt = na * nb * nc;
    if (KIND == MAXP) {
      maxst<T> best{neg_inf<T>(), -1};
      for (S q = lane; q < nt; q += 32) {  // ascending spatial order per lane
        const S cc = q % nc, r = q / nc, bb = r % nb, a = r / nb;
        const S sp = ((b0 + (a0 + a) * d0) * (S)H + b1 + (e0 + bb) * d1) * (S)W + b2 + (f0 + cc) * d2;
        const maxst<T> cand{xp[sp], (int64_t)sp};
        if (beats(cand, best)) best = cand;
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        maxst<T> other{__shfl_xor_sync(0xffffffffu, best.v, o), __shfl_xor_sync(0xffffffffu, best.i, o)};
        if (beats(other, best)) best = other;
      }
      if (lane == 0) {
        y[t] = best.i < 0 ? neg_inf<T>() : best.v;
        if (idx) idx[t] = best.i;
      }
    } else {
      A acc = A(0);
      for (S q = lane; q < nt; q += 32) {
        const S cc = q % nc, r = q / nc, bb = r % nb, a = r / nb;
        acc += (A)xp[((b0 + (a0 + a) * d0) * (S)H + b1 + (e0 + bb) * d1) * (S)W + b2 + (f0 + cc) * d2];
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
      if (lane == 0) {
        const A dv = (KIND == AVGP && include_pad) ? (A)g.taps : (A)nt;
        y[t] = dv > A(0) ? (T)(acc / dv) : T(0);
      }
    }
  }
}

// ------------------------------------------------------------------ backward: gather, one thread per dx element
template <class T, class I, int KIND, int LAYOUT>
__global__ void pool_bwd(PoolGeo g, int include_pad, const T* __restrict__ dy, const int64_t* __restrict__ idx,
                         T* __restrict__ dx, I total) {
  using S = sgn_t<I>;
  using A = acc_t<T>;
  const I C = (I)g.C, D = (I)g.in[0], H = (I)g.in[1], W = (I)g.in[2];
  const I oH = (I)g.out[1], oW = (I)g.out[2], OP = (I)g.OP;
  for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
    I n, c, id, ih, iw;
    decompose<LAYOUT>(t, C, D, H, W, n, c, id, ih, iw);
    const I yb = LAYOUT == CT_LAYOUT_NCHW ? (n * C + c) * OP : n * OP * C + c;
    const I es = LAYOUT == CT_LAYOUT_NCHW ? (I)1 : C;
    const int64_t sp = (int64_t)((id * H + ih) * W + iw);
    S lo0, hi0, lo1, hi1, lo2, hi2;
    covering<KIND, S>(g, 0, (S)id, lo0, hi0);
    covering<KIND, S>(g, 1, (S)ih, lo1, hi1);
    covering<KIND, S>(g, 2, (S)iw, lo2, hi2);
    const S n0 = (S)id + (S)g.pb[0], n1 = (S)ih + (S)g.pb[1], n2 = (S)iw + (S)g.pb[2];
    const S s0 = (S)g.s[0], s1 = (S)g.s[1], s2 = (S)g.s[2];
    const S dl0 = (S)g.dil[0], dl1 = (S)g.dil[1], dl2 = (S)g.dil[2];
    if (KIND == MAXP) {
      T acc = T(0);  // the CPU adds dy into a zeroed dx in ascending output order, in the dtype
      for (S od = lo0; od <= hi0; ++od) {
        if ((n0 - od * s0) % dl0) continue;
        for (S oh = lo1; oh <= hi1; ++oh) {
          if ((n1 - oh * s1) % dl1) continue;
          for (S ow = lo2; ow <= hi2; ++ow) {
            if ((n2 - ow * s2) % dl2) continue;
            const I yo = yb + (((I)od * oH + (I)oh) * oW + (I)ow) * es;
            if (idx[yo] == sp) acc += dy[yo];
          }
        }
      }
      dx[t] = acc;
    } else {
      A acc = A(0);
      for (S od = lo0; od <= hi0; ++od) {
        if (KIND == AVGP && (n0 - od * s0) % dl0) continue;
        S bs, r0, r1, dl;
        window<KIND, S>(g, 0, od, bs, r0, r1, dl);
        const S t0 = r1 - r0;
        for (S oh = lo1; oh <= hi1; ++oh) {
          if (KIND == AVGP && (n1 - oh * s1) % dl1) continue;
          window<KIND, S>(g, 1, oh, bs, r0, r1, dl);
          const S t1 = t0 * (r1 - r0);
          for (S ow = lo2; ow <= hi2; ++ow) {
            if (KIND == AVGP && (n2 - ow * s2) % dl2) continue;
            window<KIND, S>(g, 2, ow, bs, r0, r1, dl);
            const A dv = (KIND == AVGP && include_pad) ? (A)g.taps : (A)(t1 * (r1 - r0));
            const I yo = yb + (((I)od * oH + (I)oh) * oW + (I)ow) * es;
            if (dv > A(0)) acc += (A)dy[yo] / dv;
          }
        }
      }
      dx[t] = (T)acc;
    }
  }
}

/* Flags (atomicMin of the output position) the first index that is neither -1 nor a tap of
 * its own window. */
template <class I, int LAYOUT>
__global__ void check_indices(PoolGeo g, const int64_t* __restrict__ idx, I total, unsigned long long* bad) {
  using S = sgn_t<I>;
  const I C = (I)g.C, oD = (I)g.out[0], oH = (I)g.out[1], oW = (I)g.out[2];
  const int64_t H = g.in[1], W = g.in[2], P = g.P;
  for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
    const int64_t v = idx[t];
    if (v == -1) continue;
    bool ok = v >= 0 && v < P;
    if (ok) {
      I n, c, od, oh, ow;
      decompose<LAYOUT>(t, C, oD, oH, oW, n, c, od, oh, ow);
      const int64_t coord[3] = {v / (H * W), (v / W) % H, v % W};
      const S o3[3] = {(S)od, (S)oh, (S)ow};
#pragma unroll
      for (int d = 0; d < 3; ++d) {
        S bs, r0, r1, dl;
        window<MAXP, S>(g, d, o3[d], bs, r0, r1, dl);
        const int64_t off = coord[d] - (int64_t)bs;
        if (off < 0 || off % dl != 0 || off / dl < r0 || off / dl >= r1) ok = false;
      }
    }
    if (!ok) atomicMin(bad, (unsigned long long)t);
  }
}

// ------------------------------------------------------------------ launchers
template <class T, class I, int KIND>
int launch_forward(const char* fn, const PoolGeo& g, int layout, int include_pad, const void* x, void* y,
                   int64_t* idx, cudaStream_t st) {
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const I total = (I)(g.N * g.C * g.OP);
  // Window size estimate: adaptive bins span ceil(L/O) + 1 at most.
  int64_t wt = 1;
  for (int d = 0; d < 3; ++d) wt *= KIND == ADAPT ? (g.in[d] + g.out[d] - 1) / g.out[d] + 1 : g.k[d];
  if (layout == CT_LAYOUT_NCHW && wt >= 64) {
    const int64_t warps_per_block = kThreads / 32;
    int64_t blocks = ((int64_t)total + warps_per_block - 1) / warps_per_block;
    const int64_t cap = (int64_t)sms * (2048 / kThreads) * 8;
    if (blocks > cap) blocks = cap;
    pool_fwd_warp<T, I, KIND><<<(unsigned)blocks, kThreads, 0, st>>>(g, include_pad, (const T*)x, (T*)y, idx, total);
  } else if (layout == CT_LAYOUT_NCHW) {
    pool_fwd<T, I, KIND, CT_LAYOUT_NCHW><<<grid_for(total, sms), kThreads, 0, st>>>(g, include_pad, (const T*)x,
                                                                                     (T*)y, idx, total);
  } else {
    pool_fwd<T, I, KIND, CT_LAYOUT_NHWC><<<grid_for(total, sms), kThreads, 0, st>>>(g, include_pad, (const T*)x,
                                                                                     (T*)y, idx, total);
  }
  return check_launch(fn);
}

template <class T, class I, int KIND>
int launch_backward(const char* fn, const PoolGeo& g, int layout, int include_pad, const void* dy,
                    const int64_t* idx, void* dx, cudaStream_t st) {
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const I total = (I)(g.N * g.C * g.P);
  if (layout == CT_LAYOUT_NCHW)
    pool_bwd<T, I, KIND, CT_LAYOUT_NCHW><<<grid_for(total, sms), kThreads, 0, st>>>(g, include_pad, (const T*)dy, idx,
                                                                                     (T*)dx, total);
  else
    pool_bwd<T, I, KIND, CT_LAYOUT_NHWC><<<grid_for(total, sms), kThreads, 0, st>>>(g, include_pad, (const T*)dy, idx,
                                                                                     (T*)dx, total);
  return check_launch(fn);
}

template <class I>
int launch_check(const char* fn, const PoolGeo& g, int layout, const int64_t* idx, unsigned long long* bad,
                 cudaStream_t st) {
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const I total = (I)(g.N * g.C * g.OP);
  if (layout == CT_LAYOUT_NCHW)
    check_indices<I, CT_LAYOUT_NCHW><<<grid_for(total, sms), kThreads, 0, st>>>(g, idx, total, bad);
  else
    check_indices<I, CT_LAYOUT_NHWC><<<grid_for(total, sms), kThreads, 0, st>>>(g, idx, total, bad);
  return check_launch(fn);
}

template <int KIND>
int pool_forward(const char* fn, int dtype, int layout, const int64_t* g, int include_pad, const void* x, void* y,
                 int64_t* idx, int64_t stream) {
  CT_TRY_STATUS(check_common(fn, dtype, layout, g));
  PoolGeo geo;
  CT_TRY_STATUS(read_geo(fn, g, (Kind)KIND, &geo));
  if (geo.N == 0 || geo.C == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "y", y));
  const cudaStream_t st = as_stream(stream);
  const int ip = include_pad != 0;
  const bool f32 = fits32(geo);
  if (dtype == CT_F32)
    return f32 ? launch_forward<float, uint32_t, KIND>(fn, geo, layout, ip, x, y, idx, st)
               : launch_forward<float, int64_t, KIND>(fn, geo, layout, ip, x, y, idx, st);
  return f32 ? launch_forward<double, uint32_t, KIND>(fn, geo, layout, ip, x, y, idx, st)
             : launch_forward<double, int64_t, KIND>(fn, geo, layout, ip, x, y, idx, st);
}

template <int KIND>
int pool_backward(const char* fn, int dtype, int layout, const int64_t* g, int include_pad, const void* dy,
                  const int64_t* idx, void* dx, int64_t stream) {
  CT_TRY_STATUS(check_common(fn, dtype, layout, g));
  PoolGeo geo;
  CT_TRY_STATUS(read_geo(fn, g, (Kind)KIND, &geo));
  if (geo.N == 0 || geo.C == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "dy", dy));
  CT_TRY_STATUS(check_ptr(fn, "dx", dx));
  const cudaStream_t st = as_stream(stream);
  const bool f32 = fits32(geo);
  if (KIND == MAXP) {
    CT_TRY_STATUS(check_ptr(fn, "indices", idx));
    unsigned long long* bad = nullptr;
    CT_CUDA_TRY(fn, cudaMallocAsync((void**)&bad, sizeof(unsigned long long), st));
    int status = CT_OK;
    cudaError_t err = cudaMemsetAsync(bad, 0xFF, sizeof(unsigned long long), st);
    if (err != cudaSuccess) status = cuda_fail(fn, err);
    if (status == CT_OK)
      status = f32 ? launch_check<uint32_t>(fn, geo, layout, idx, bad, st)
                   : launch_check<int64_t>(fn, geo, layout, idx, bad, st);
    unsigned long long first_bad = ~0ull;
    if (status == CT_OK) {
      err = cudaMemcpyAsync(&first_bad, bad, sizeof first_bad, cudaMemcpyDeviceToHost, st);
      if (err == cudaSuccess) err = cudaStreamSynchronize(st);
      if (err != cudaSuccess) status = cuda_fail(fn, err);
    }
    err = cudaFreeAsync(bad, st);
    if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
    if (status != CT_OK) return status;
    if (first_bad != ~0ull) {
      int64_t value = 0;
      err = cudaMemcpy(&value, idx + first_bad, sizeof value, cudaMemcpyDeviceToHost);
      if (err != cudaSuccess) return cuda_fail(fn, err);
      return fail(CT_ERR_INDEX_OUT_OF_RANGE,
                  "%s: indices[%lld] = %lld is not -1 nor a position of its pooling window (input plane of %lld "
                  "elements); indices must come from max pooling forward with the same geometry",
                  fn, (long long)first_bad, (long long)value, (long long)geo.P);
    }
  }
  if (dtype == CT_F32)
    return f32 ? launch_backward<float, uint32_t, KIND>(fn, geo, layout, include_pad != 0, dy, idx, dx, st)
               : launch_backward<float, int64_t, KIND>(fn, geo, layout, include_pad != 0, dy, idx, dx, st);
  return f32 ? launch_backward<double, uint32_t, KIND>(fn, geo, layout, include_pad != 0, dy, idx, dx, st)
             : launch_backward<double, int64_t, KIND>(fn, geo, layout, include_pad != 0, dy, idx, dx, st);
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cuda_maxpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y, int64_t* indices,
                            int64_t stream) {
  return pool_forward<MAXP>("ct_cuda_maxpool_forward", dtype, layout, g, 0, x, y, indices, stream);
}

int ct_cuda_maxpool_backward(int dtype, int layout, const int64_t* g, const void* dy, const int64_t* indices, void* dx,
                             int64_t stream) {
  return pool_backward<MAXP>("ct_cuda_maxpool_backward", dtype, layout, g, 0, dy, indices, dx, stream);
}

int ct_cuda_avgpool_forward(int dtype, int layout, const int64_t* g, int count_include_pad, const void* x, void* y,
                            int64_t stream) {
  return pool_forward<AVGP>("ct_cuda_avgpool_forward", dtype, layout, g, count_include_pad, x, y, nullptr, stream);
}

int ct_cuda_avgpool_backward(int dtype, int layout, const int64_t* g, int count_include_pad, const void* dy, void* dx,
                             int64_t stream) {
  return pool_backward<AVGP>("ct_cuda_avgpool_backward", dtype, layout, g, count_include_pad, dy, nullptr, dx, stream);
}

int ct_cuda_adaptive_avgpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y, int64_t stream) {
  return pool_forward<ADAPT>("ct_cuda_adaptive_avgpool_forward", dtype, layout, g, 0, x, y, nullptr, stream);
}

int ct_cuda_adaptive_avgpool_backward(int dtype, int layout, const int64_t* g, const void* dy, void* dx,
                                      int64_t stream) {
  return pool_backward<ADAPT>("ct_cuda_adaptive_avgpool_backward", dtype, layout, g, 0, dy, nullptr, dx, stream);
}

}  // extern "C"
