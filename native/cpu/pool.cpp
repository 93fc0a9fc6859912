/*
 * Pooling family (pool.h): max pooling with indices, average pooling (padding counted or
 * not), adaptive average pooling; forward and backward; 1-d/2-d/3-d through the conv
 * geometry g[25] of conv.h; layouts NCHW and NHWC; float32 and float64 (and uint8 codes for max
 * pooling without indices: max_codes).
 *
 * Algorithm. Each spatial dimension gets a window table once per call: for output o the
 * first input coordinate base(o) = o*stride - pad_before and the range [r0, r1) of kernel
 * taps r whose coordinate base + r*dil lies inside the input (adaptive pooling: base =
 * floor(o*L/out), taps [0, ceil((o+1)*L/out) - base), dil 1). Padding is never read: it
 * cannot win a max (a window of only padding gives -inf and index -1) and only enters the
 * divisor of average pooling when count_include_pad (divisor kD*kH*kW; else the number of
 * taps inside). Max: NaN propagates (v > m || v != v takes v; the last NaN's index wins, as
 * PyTorch); the initial index is the window's first element, so a window of -inf gives it.
 *  - NCHW: OpenMP over the N*C planes; per output a direct loop over its clipped window
 *    (max pooling with D == 1 has a dedicated loop without per-tap calls; the plain 2x2 / stride 2
 *    window of float32 runs 16 outputs per AVX-512 step: max_plane_2x2_f32_avx512).
 *  - NHWC: OpenMP over (n, od, oh) output rows; per output position the window's taps are
 *    rows of C contiguous channels: accumulators for a block of channels stay in registers
 *    while the taps stream by (the channel loop vectorizes; AVX2 intrinsics for float32 max
 *    pooling with indices; the plain 2x2 / stride 2 window of float32 in AVX-512 with masked
 *    channel tails: max_2x2_nhwc_f32_avx512).
 *  - Backward = scatter-add of dy into the zeroed dx: per plane (NCHW) or per (n, channel
 *    block) (NHWC), so no two threads write the same dx element.
 * The *_ref functions beside each fast path are the plain definition (one generic loop
 * nest over either layout) used by the tests through CORTADO_POOL_REFERENCE=1 when debugging.
 *
 * Cost (K = kD*kH*kW taps, O = N*C*oD*oH*oW outputs, I = N*C*D*H*W inputs, e = dtype bytes):
 *   max/avg forward: O*K compares or adds (+1 divide per output); DRAM bytes ~ e*(I + O)
 *   (+ 8*O for the indices); the window overlap is served from cache.
 *   max backward: e*(2*I + O) + 8*O bytes, O adds. avg backward: O*K adds, e*(2*I + O) bytes.
 *   adaptive: every input read once or twice (overlapping windows), the same byte counts.
 */
#include <cstdlib>
#include <vector>

#include "cortado/conv.h"
#include "cortado/pool.h"
#include "internal.h"
#include "pool_geometry.h"  // struct Geo and its checks, shared with the CUDA library

namespace ct {
namespace {

using pool::Kind;
using pool::Geo;
using pool::MAXP;
using pool::AVGP;
using pool::ADAPT;
using pool::check_common;
using pool::read_geo;

/* One dimension's window table. */
struct Win {
  std::vector<int64_t> base, r0, r1;
  int64_t dil = 1;
};


void make_wins(const Geo& g, Kind kind, Win w[3]) {
  for (int d = 0; d < 3; ++d) {
    const int64_t L = g.in[d], O = g.out[d];
    w[d].base.resize(O);
    w[d].r0.resize(O);
    w[d].r1.resize(O);
    w[d].dil = kind == ADAPT ? 1 : g.dil[d];
    for (int64_t o = 0; o < O; ++o) {
      if (kind == ADAPT) {
        int64_t lo = (o * L) / O, hi = ((o + 1) * L + O - 1) / O;
        w[d].base[o] = lo;
        w[d].r0[o] = 0;
        w[d].r1[o] = hi - lo;
      } else {
        const int64_t b = o * g.s[d] - g.pb[d], dl = g.dil[d];
        int64_t r0 = b >= 0 ? 0 : (-b + dl - 1) / dl;
        int64_t r1 = L - b <= 0 ? 0 : (L - b + dl - 1) / dl;  // first r with b + r*dl >= L
        if (r1 > g.k[d]) r1 = g.k[d];
        if (r0 > r1) r0 = r1;
        w[d].base[o] = b;
        w[d].r0[o] = r0;
        w[d].r1[o] = r1;
      }
    }
  }
}

/* Calls f(spatial flat index) for each tap of output (od, oh, ow) inside the input. */
template <class F>
CT_INLINE void for_taps(const Geo& g, const Win* w, int64_t od, int64_t oh, int64_t ow, F&& f) {
  const int64_t H = g.in[1], W = g.in[2];
  for (int64_t a = w[0].r0[od]; a < w[0].r1[od]; ++a) {
    const int64_t id = w[0].base[od] + a * w[0].dil;
    for (int64_t b = w[1].r0[oh]; b < w[1].r1[oh]; ++b) {
      const int64_t rowb = (id * H + w[1].base[oh] + b * w[1].dil) * W + w[2].base[ow];
      for (int64_t c = w[2].r0[ow]; c < w[2].r1[ow]; ++c) f(rowb + c * w[2].dil);
    }
  }
}

CT_INLINE int64_t ntaps(const Win* w, int64_t od, int64_t oh, int64_t ow) {
  return (w[0].r1[od] - w[0].r0[od]) * (w[1].r1[oh] - w[1].r0[oh]) * (w[2].r1[ow] - w[2].r0[ow]);
}

/* Divisor of an average window. */
CT_INLINE double divisor(const Geo& g, const Win* w, Kind kind, bool include_pad, int64_t od, int64_t oh, int64_t ow) {
  if (kind == AVGP && include_pad) return (double)g.taps;
  return (double)ntaps(w, od, oh, ow);
}

// ------------------------------------------------------------------ reference (both layouts)
/* Plain definition over an element accessor: the oracle for the fast paths. */
template <class T>
void forward_ref(const Geo& g, int layout, Kind kind, bool include_pad, const T* x, T* y, int64_t* idx) {
  Win w[3];
  make_wins(g, kind, w);
  const int64_t P = g.P, OP = g.OP, C = g.C;
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t od = 0; od < g.out[0]; ++od)
        for (int64_t oh = 0; oh < g.out[1]; ++oh)
          for (int64_t ow = 0; ow < g.out[2]; ++ow) {
            const int64_t o = (od * g.out[1] + oh) * g.out[2] + ow;
            auto xat = [&](int64_t s) { return layout == CT_LAYOUT_NCHW ? x[(n * C + c) * P + s] : x[(n * P + s) * C + c]; };
            const int64_t yo = layout == CT_LAYOUT_NCHW ? (n * C + c) * OP + o : (n * OP + o) * C + c;
            if (kind == MAXP) {
              T m = -INFINITY;
              int64_t mi = -1;
              bool first = true;  // PyTorch: m = -inf, index = the window's first element
              for_taps(g, w, od, oh, ow, [&](int64_t s) {
                const T v = xat(s);
                if (first) { mi = s; first = false; }
                if (v > m || v != v) { m = v; mi = s; }
              });
              y[yo] = m;
              if (idx) idx[yo] = mi;
            } else {
              double sacc = 0;
              for_taps(g, w, od, oh, ow, [&](int64_t s) { sacc += (double)xat(s); });
              const double dv = divisor(g, w, kind, include_pad, od, oh, ow);
              y[yo] = (T)(dv > 0 ? sacc / dv : 0.0);
            }
          }
}

template <class T>
void backward_ref(const Geo& g, int layout, Kind kind, bool include_pad, const T* dy, const int64_t* idx, T* dx) {
  Win w[3];
  make_wins(g, kind, w);
  const int64_t P = g.P, OP = g.OP, C = g.C;
  std::memset(dx, 0, sizeof(T) * g.N * C * P);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t od = 0; od < g.out[0]; ++od)
        for (int64_t oh = 0; oh < g.out[1]; ++oh)
          for (int64_t ow = 0; ow < g.out[2]; ++ow) {
            const int64_t o = (od * g.out[1] + oh) * g.out[2] + ow;
            auto xo = [&](int64_t s) { return layout == CT_LAYOUT_NCHW ? (n * C + c) * P + s : (n * P + s) * C + c; };
            const int64_t yo = layout == CT_LAYOUT_NCHW ? (n * C + c) * OP + o : (n * OP + o) * C + c;
            if (kind == MAXP) {
              if (idx[yo] >= 0) dx[xo(idx[yo])] += dy[yo];
            } else {
              const double dv = divisor(g, w, kind, include_pad, od, oh, ow);
              const T v = dv > 0 ? (T)(dy[yo] / dv) : (T)0;
              for_taps(g, w, od, oh, ow, [&](int64_t s) { dx[xo(s)] += v; });
            }
          }
}

// ------------------------------------------------------------------ NCHW fast paths
/* Max over one (n, c) plane with D == 1 (1-d and 2-d pooling): direct loops, no per-tap calls. */
template <class T, bool IDX>
void max_plane_2d(const Geo& g, const Win* w, const T* xp, T* yp, int64_t* ip) {
  const int64_t W = g.in[2], oH = g.out[1], oW = g.out[2];
  const Win& wh = w[1];
  const Win& ww = w[2];
  const int64_t dh = wh.dil, dw = ww.dil;
  for (int64_t oh = 0; oh < oH; ++oh) {
    const int64_t h0 = wh.base[oh] + wh.r0[oh] * dh, nh = wh.r1[oh] - wh.r0[oh];
    T* yr = yp + oh * oW;
    int64_t* ir = IDX ? ip + oh * oW : nullptr;
    for (int64_t ow = 0; ow < oW; ++ow) {
      const int64_t w0 = ww.base[ow] + ww.r0[ow] * dw, nw = ww.r1[ow] - ww.r0[ow];
      if (nh <= 0 || nw <= 0) {
        yr[ow] = -INFINITY;
        if (IDX) ir[ow] = -1;
        continue;
      }
      int64_t mi = h0 * W + w0;
      T m = xp[mi];
      for (int64_t a = 0; a < nh; ++a) {
        const int64_t rb = (h0 + a * dh) * W + w0;
        const T* xr = xp + rb;
        for (int64_t b = 0; b < nw; ++b) {
          const T v = xr[b * dw];
          const bool take = (v > m) | (v != v);  // branch-free select: random data mispredicts
          m = take ? v : m;
          if (IDX) mi = take ? rb + b * dw : mi;
        }
      }
      yr[ow] = m;
      if (IDX) ir[ow] = mi;
    }
  }
}

/* 2x2 windows, stride 2, no padding or dilation (most CNNs' max pool): the same four taps in the
 * same order as max_plane_2d, with no window tables in the loop. 3 compares per output. */
template <class T, bool IDX>
void max_plane_2x2(const Geo& g, const T* xp, T* yp, int64_t* ip) {
  const int64_t W = g.in[2], oH = g.out[1], oW = g.out[2];
  for (int64_t oh = 0; oh < oH; ++oh) {
    const T* r0 = xp + 2 * oh * W;
    const T* r1 = r0 + W;
    T* yr = yp + oh * oW;
    int64_t* ir = IDX ? ip + oh * oW : nullptr;
    for (int64_t ow = 0; ow < oW; ++ow) {
      const int64_t c0 = 2 * ow;
      T m = r0[c0];
      int64_t mi = 2 * oh * W + c0;
      const T v[3] = {r0[c0 + 1], r1[c0], r1[c0 + 1]};
      const int64_t vi[3] = {mi + 1, mi + W, mi + W + 1};
      for (int t = 0; t < 3; ++t) {
        const bool take = (v[t] > m) | (v[t] != v[t]);
        m = take ? v[t] : m;
        if (IDX) mi = take ? vi[t] : mi;
      }
      yr[ow] = m;
      if (IDX) ir[ow] = mi;
    }
  }
}

CT_INLINE bool is_plain_2x2(const Geo& g) {
  return g.in[0] == 1 && g.k[0] == 1 && g.k[1] == 2 && g.k[2] == 2 && g.s[1] == 2 && g.s[2] == 2 && g.dil[1] == 1 &&
         g.dil[2] == 1 && g.pb[1] == 0 && g.pb[2] == 0 && 2 * g.out[1] <= g.in[1] && 2 * g.out[2] <= g.in[2];
}

/* The AVX-512 2x2 paths of either layout apply: plain 2x2 windows, AVX-512, int32 plane indices. */
CT_INLINE bool avx512_2x2(const Geo& g) { return is_plain_2x2(g) && use_avx512() && g.P < ((int64_t)1 << 31); }

/* max_plane_2x2 for float32 in AVX-512: 16 outputs per step. The row pair's 32 + 32 inputs are
 * split into even and odd columns with vpermt2ps; the same three compares in the same order as the
 * scalar loop (so NaN and tie handling are identical), indices kept as int32 (the plane has fewer
 * than 2^31 elements) and widened when stored. Masked loads and stores for the row's tail. */
CT_AVX512 void max_plane_2x2_f32_avx512(const Geo& g, const float* xp, float* yp, int64_t* ip) {
  const int64_t W = g.in[2], oH = g.out[1], oW = g.out[2];
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i lane2 = _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1);
  for (int64_t oh = 0; oh < oH; ++oh) {
    const float* r0 = xp + 2 * oh * W;
    const float* r1 = r0 + W;
    float* yr = yp + oh * oW;
    int64_t* ir = ip ? ip + oh * oW : nullptr;
    for (int64_t ow = 0; ow < oW; ow += 16) {
      const int64_t n = std::min<int64_t>(16, oW - ow);
      const __mmask16 mo = (__mmask16)((1u << n) - 1);
      const __mmask16 mlo = (__mmask16)(n >= 8 ? 0xFFFF : (1u << (2 * n)) - 1);
      const __mmask16 mhi = (__mmask16)(n <= 8 ? 0 : (1u << (2 * (n - 8))) - 1);
      const int64_t c0 = 2 * ow;
      const __m512 a0 = _mm512_maskz_loadu_ps(mlo, r0 + c0), a1 = _mm512_maskz_loadu_ps(mhi, r0 + c0 + 16);
      const __m512 b0 = _mm512_maskz_loadu_ps(mlo, r1 + c0), b1 = _mm512_maskz_loadu_ps(mhi, r1 + c0 + 16);
      const __m512 v[4] = {_mm512_permutex2var_ps(a0, even, a1), _mm512_permutex2var_ps(a0, odd, a1),
                           _mm512_permutex2var_ps(b0, even, b1), _mm512_permutex2var_ps(b0, odd, b1)};
      __m512 m = v[0];
      const __m512i base = _mm512_add_epi32(_mm512_set1_epi32((int)(2 * oh * W + c0)), lane2);
      __m512i mi = base;
      const int off[3] = {1, (int)W, (int)W + 1};
      for (int t = 1; t < 4; ++t) {
        const __mmask16 take =
            _mm512_cmp_ps_mask(v[t], m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v[t], v[t], _CMP_UNORD_Q);
        m = _mm512_mask_blend_ps(take, m, v[t]);
        mi = _mm512_mask_blend_epi32(take, mi, _mm512_add_epi32(base, _mm512_set1_epi32(off[t - 1])));
      }
      _mm512_mask_storeu_ps(yr + ow, mo, m);
      if (ir) {
        _mm512_mask_storeu_epi64(ir + ow, (__mmask8)(mo & 0xFF), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(mi)));
        _mm512_mask_storeu_epi64(ir + ow + 8, (__mmask8)(mo >> 8), _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(mi, 1)));
      }
    }
  }
}

template <class T>
void forward_nchw(const Geo& g, const Win* w, Kind kind, bool include_pad, const T* x, T* y, int64_t* idx) {
  const int64_t P = g.P, OP = g.OP;
  const int64_t planes = g.N * g.C;
  const bool plain_2x2 = is_plain_2x2(g);
  const bool fast_2x2_f32 = avx512_2x2(g);
  parallel_range(planes, P + OP * (kind == MAXP ? g.taps : g.taps + 4), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* xp = x + p * P;
      T* yp = y + p * OP;
      int64_t* ip = idx ? idx + p * OP : nullptr;
      if (kind == MAXP && plain_2x2) {
        if constexpr (std::is_same_v<T, float>) {
          if (fast_2x2_f32) {
            max_plane_2x2_f32_avx512(g, xp, yp, ip);
            continue;
          }
        }
        if (ip) max_plane_2x2<T, true>(g, xp, yp, ip);
        else max_plane_2x2<T, false>(g, xp, yp, nullptr);
        continue;
      }
      if (kind == MAXP && g.in[0] == 1) {  // fast path; the generic loop below is its reference
        if (ip) max_plane_2d<T, true>(g, w, xp, yp, ip);
        else max_plane_2d<T, false>(g, w, xp, yp, nullptr);
        continue;
      }
      int64_t o = 0;
      for (int64_t od = 0; od < g.out[0]; ++od)
        for (int64_t oh = 0; oh < g.out[1]; ++oh)
          for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o) {
            if (kind == MAXP) {
              T m = -INFINITY;
              int64_t mi = -1;
              bool first = true;
              for_taps(g, w, od, oh, ow, [&](int64_t s) {
                const T v = xp[s];
                if (first) { m = v; mi = s; first = false; }
                else if (v > m || v != v) { m = v; mi = s; }
              });
              yp[o] = m;
              if (ip) ip[o] = mi;
            } else {
              double acc = 0;
              for_taps(g, w, od, oh, ow, [&](int64_t s) { acc += (double)xp[s]; });
              const double dv = divisor(g, w, kind, include_pad, od, oh, ow);
              yp[o] = (T)(dv > 0 ? acc / dv : 0.0);
            }
          }
    }
  });
}

template <class T>
void backward_nchw(const Geo& g, const Win* w, Kind kind, bool include_pad, const T* dy, const int64_t* idx, T* dx) {
  const int64_t P = g.P, OP = g.OP;
  const int64_t planes = g.N * g.C;
  parallel_range(planes, P + OP * (kind == MAXP ? 2 : g.taps), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      T* dxp = dx + p * P;
      const T* dyp = dy + p * OP;
      std::memset(dxp, 0, sizeof(T) * P);
      if (kind == MAXP) {
        const int64_t* ip = idx + p * OP;
        for (int64_t o = 0; o < OP; ++o)
          if (ip[o] >= 0) dxp[ip[o]] += dyp[o];
        continue;
      }
      int64_t o = 0;
      for (int64_t od = 0; od < g.out[0]; ++od)
        for (int64_t oh = 0; oh < g.out[1]; ++oh)
          for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o) {
            const double dv = divisor(g, w, kind, include_pad, od, oh, ow);
            const T v = dv > 0 ? (T)(dyp[o] / dv) : (T)0;
            for_taps(g, w, od, oh, ow, [&](int64_t s) { dxp[s] += v; });
          }
    }
  });
}

// ------------------------------------------------------------------ NHWC fast paths
constexpr int64_t kCB = 64;  // channels per register block (NHWC)

/* Max over the window taps for channels [c0, c0+cn) of one output position. */
template <class T, bool IDX>
CT_INLINE void max_block_generic(const Geo& g, const Win* w, int64_t od, int64_t oh, int64_t ow, const T* xn,
                                 int64_t C, int64_t c0, int64_t cn, T* yr, int64_t* ir) {
  T m[kCB];
  int64_t mi[kCB];
  bool first = true;
  for_taps(g, w, od, oh, ow, [&](int64_t s) {
    const T* xr = xn + s * C + c0;
    if (first) {
      for (int64_t c = 0; c < cn; ++c) { m[c] = xr[c]; if (IDX) mi[c] = s; }
      first = false;
    } else if (IDX) {
      for (int64_t c = 0; c < cn; ++c) {
        const T v = xr[c];
        const bool t = v > m[c] || v != v;
        m[c] = t ? v : m[c];
        mi[c] = t ? s : mi[c];
      }
    } else {
      for (int64_t c = 0; c < cn; ++c) {
        const T v = xr[c];
        m[c] = (v > m[c] || v != v) ? v : m[c];
      }
    }
  });
  if (first) {
    for (int64_t c = 0; c < cn; ++c) { yr[c] = -INFINITY; if (IDX) ir[c] = -1; }
    return;
  }
  for (int64_t c = 0; c < cn; ++c) { yr[c] = m[c]; if (IDX) ir[c] = mi[c]; }
}

/* float32 with indices, 8 channels per AVX2 vector, 4 vectors (32 channels) per block. */
CT_INLINE void max_block_f32_idx_avx2(const Geo& g, const Win* w, int64_t od, int64_t oh, int64_t ow,
                                      const float* xn, int64_t C, int64_t c0, float* yr, int64_t* ir) {
  __m256 m[4];
  __m256i lo[4], hi[4];
  for (int j = 0; j < 4; ++j) { m[j] = _mm256_set1_ps(-INFINITY); lo[j] = hi[j] = _mm256_set1_epi64x(-1); }
  bool first = true;
  for_taps(g, w, od, oh, ow, [&](int64_t s) {
    const float* xr = xn + s * C + c0;
    const __m256i sv = _mm256_set1_epi64x(s);
    if (first) {
      for (int j = 0; j < 4; ++j) { m[j] = _mm256_loadu_ps(xr + 8 * j); lo[j] = sv; hi[j] = sv; }
      first = false;
      return;
    }
    for (int j = 0; j < 4; ++j) {
      const __m256 v = _mm256_loadu_ps(xr + 8 * j);
      const __m256 t = _mm256_or_ps(_mm256_cmp_ps(v, m[j], _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      m[j] = _mm256_blendv_ps(m[j], v, t);
      const __m256i ti = _mm256_castps_si256(t);
      const __m256i tlo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(ti));
      const __m256i thi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(ti, 1));
      lo[j] = _mm256_blendv_epi8(lo[j], sv, tlo);
      hi[j] = _mm256_blendv_epi8(hi[j], sv, thi);
    }
  });
  if (first) {
    for (int c = 0; c < 32; ++c) { yr[c] = -INFINITY; ir[c] = -1; }
    return;
  }
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_ps(yr + 8 * j, m[j]);
    _mm256_storeu_si256((__m256i*)(ir + 8 * j), lo[j]);
    _mm256_storeu_si256((__m256i*)(ir + 8 * j + 4), hi[j]);
  }
}

/* Max pooling 2x2 / stride 2 of NHWC float32 (the max pool of most CNNs, in channels-last models
 * and behind the int8 NHWC convolutions) in AVX-512: per output pixel the four taps are rows of C
 * channels, 16 channels a step with a masked tail, compared in max_plane_2x2's order (so NaN and
 * ties resolve the same); the chosen tap's plane index is blended in int32 and widened to int64
 * when stored. Reads the input once, writes y and the indices once. */
CT_AVX512 void max_2x2_nhwc_f32_avx512(const Geo& g, const float* x, float* y, int64_t* idx, int64_t r0, int64_t r1) {
  const int64_t W = g.in[2], C = g.C, oH = g.out[1], oW = g.out[2];
  {
    for (int64_t r = r0; r < r1; ++r) {  // output rows (n, oh)
      const int64_t n = r / oH, oh = r % oH;
      const float* xn = x + n * g.P * C;
      for (int64_t ow = 0; ow < oW; ++ow) {
        const int64_t s0 = 2 * oh * W + 2 * ow;
        const int64_t s[4] = {s0, s0 + 1, s0 + W, s0 + W + 1};
        const float* t[4] = {xn + s[0] * C, xn + s[1] * C, xn + s[2] * C, xn + s[3] * C};
        const int64_t o = (n * oH + oh) * oW + ow;
        float* yr = y + o * C;
        int64_t* ir = idx ? idx + o * C : nullptr;
        for (int64_t c = 0; c < C; c += 16) {
          const __mmask16 mk = (__mmask16)(C - c >= 16 ? 0xFFFF : (1u << (C - c)) - 1);
          __m512 m = _mm512_maskz_loadu_ps(mk, t[0] + c);
          __m512i mi = _mm512_set1_epi32((int)s[0]);
          for (int k = 1; k < 4; ++k) {
            const __m512 v = _mm512_maskz_loadu_ps(mk, t[k] + c);
            const __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            m = _mm512_mask_blend_ps(take, m, v);
            mi = _mm512_mask_blend_epi32(take, mi, _mm512_set1_epi32((int)s[k]));
          }
          _mm512_mask_storeu_ps(yr + c, mk, m);
          if (ir) {
            _mm512_mask_storeu_epi64(ir + c, (__mmask8)(mk & 0xFF), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(mi)));
            _mm512_mask_storeu_epi64(ir + c + 8, (__mmask8)(mk >> 8), _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(mi, 1)));
          }
        }
      }
    }
  }
}

template <class T>
void forward_nhwc(const Geo& g, const Win* w, Kind kind, bool include_pad, const T* x, T* y, int64_t* idx) {
  const int64_t P = g.P, OP = g.OP, C = g.C;
  if constexpr (std::is_same_v<T, float>) {
    if (kind == MAXP && avx512_2x2(g)) {
      parallel_range(g.N * g.out[1], g.out[2] * C * 6,
                     [&](int64_t r0, int64_t r1) { max_2x2_nhwc_f32_avx512(g, x, y, idx, r0, r1); });
      return;
    }
  }
  const int64_t rows = g.N * g.out[0] * g.out[1];
  const int64_t per_row = g.out[2] * C * (kind == MAXP ? g.taps : g.taps + 4);
  parallel_range(rows, per_row, [&](int64_t r0, int64_t r1) {
    std::vector<double> acc(kind == MAXP ? 0 : C);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t oh = r % g.out[1], od = (r / g.out[1]) % g.out[0], n = r / (g.out[1] * g.out[0]);
      const T* xn = x + n * P * C;
      for (int64_t ow = 0; ow < g.out[2]; ++ow) {
        const int64_t o = (od * g.out[1] + oh) * g.out[2] + ow;
        T* yr = y + (n * OP + o) * C;
        int64_t* ir = idx ? idx + (n * OP + o) * C : nullptr;
        if (kind == MAXP) {
          int64_t c0 = 0;
          if constexpr (std::is_same_v<T, float>) {
            if (ir)
              for (; c0 + 32 <= C; c0 += 32) max_block_f32_idx_avx2(g, w, od, oh, ow, xn, C, c0, yr + c0, ir + c0);
          }
          for (; c0 < C; c0 += kCB) {
            const int64_t cn = C - c0 < kCB ? C - c0 : kCB;
            if (ir) max_block_generic<T, true>(g, w, od, oh, ow, xn, C, c0, cn, yr + c0, ir + c0);
            else max_block_generic<T, false>(g, w, od, oh, ow, xn, C, c0, cn, yr + c0, nullptr);
          }
        } else {
          double* a = acc.data();
          for (int64_t c = 0; c < C; ++c) a[c] = 0;
          for_taps(g, w, od, oh, ow, [&](int64_t s) {
            const T* xr = xn + s * C;
            for (int64_t c = 0; c < C; ++c) a[c] += (double)xr[c];
          });
          const double dv = divisor(g, w, kind, include_pad, od, oh, ow);
          const double inv = dv > 0 ? 1.0 / dv : 0.0;
          for (int64_t c = 0; c < C; ++c) yr[c] = (T)(a[c] * inv);
        }
      }
    }
  });
}

template <class T>
void backward_nhwc(const Geo& g, const Win* w, Kind kind, bool include_pad, const T* dy, const int64_t* idx, T* dx) {
  const int64_t P = g.P, OP = g.OP, C = g.C;
  // Work items: (n, channel chunk); chunks of >= 16 channels, enough items to feed the threads.
  const int nt = threads();
  int64_t chunks = (4 * nt + g.N - 1) / g.N;
  if (chunks > (C + 15) / 16) chunks = (C + 15) / 16;
  if (chunks < 1) chunks = 1;
  const int64_t cw = (C + chunks - 1) / chunks;
  const int64_t items = g.N * chunks;
  parallel_range(items, (P + OP * (kind == MAXP ? 2 : g.taps)) * cw, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t n = it / chunks, c0 = (it % chunks) * cw;
      const int64_t c1 = c0 + cw < C ? c0 + cw : C;
      if (c0 >= c1) continue;
      const int64_t cn = c1 - c0;
      T* dxn = dx + n * P * C + c0;
      for (int64_t s = 0; s < P; ++s) std::memset(dxn + s * C, 0, sizeof(T) * cn);
      const T* dyn = dy + n * OP * C + c0;
      if (kind == MAXP) {
        const int64_t* in_ = idx + n * OP * C + c0;
        for (int64_t o = 0; o < OP; ++o) {
          const T* dr = dyn + o * C;
          const int64_t* ir = in_ + o * C;
          for (int64_t c = 0; c < cn; ++c)
            if (ir[c] >= 0) dxn[ir[c] * C + c] += dr[c];
        }
        continue;
      }
      int64_t o = 0;
      for (int64_t od = 0; od < g.out[0]; ++od)
        for (int64_t oh = 0; oh < g.out[1]; ++oh)
          for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o) {
            const double dv = divisor(g, w, kind, include_pad, od, oh, ow);
            const double inv = dv > 0 ? 1.0 / dv : 0.0;
            const T* dr = dyn + o * C;
            for_taps(g, w, od, oh, ow, [&](int64_t s) {
              T* xr = dxn + s * C;
              for (int64_t c = 0; c < cn; ++c) xr[c] += (T)(dr[c] * inv);
            });
          }
    }
  });
}

bool use_reference() {
  static const bool ref = [] {
    const char* e = std::getenv("CORTADO_POOL_REFERENCE");
    return e && e[0] == '1';
  }();
  return ref;
}

/* max_codes for the plain 2x2 / stride 2 window in NHWC: the four taps' rows of C bytes, 64 channels
 * per vpmaxub step (masked tail). Output rows [r0, r1) of (n, oh). */
CT_AVX512 void max_codes_2x2_nhwc_avx512(const Geo& g, const uint8_t* x, uint8_t* y, int64_t r0, int64_t r1) {
  const int64_t W = g.in[2], C = g.C, oH = g.out[1], oW = g.out[2];
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / oH, oh = r % oH;
    const uint8_t* a = x + (n * g.P + 2 * oh * W) * C;
    const uint8_t* b = a + W * C;
    uint8_t* yr = y + r * oW * C;
    for (int64_t ow = 0; ow < oW; ++ow, a += 2 * C, b += 2 * C, yr += C)
      for (int64_t c = 0; c < C; c += 64) {
        const __mmask64 m = C - c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (C - c)) - 1);
        const __m512i v = _mm512_max_epu8(_mm512_max_epu8(_mm512_maskz_loadu_epi8(m, a + c), _mm512_maskz_loadu_epi8(m, a + C + c)),
                                          _mm512_max_epu8(_mm512_maskz_loadu_epi8(m, b + c), _mm512_maskz_loadu_epi8(m, b + C + c)));
        _mm512_mask_storeu_epi8(yr + c, m, v);
      }
  }
}

/* Max pooling of uint8 codes, values only (the activations between int8 layers: quantization on one
 * scale is monotone, so the max of the codes is the code of the max). Either layout; 0, the smallest
 * code, is the identity, so a window of only padding gives 0. NHWC keeps a row of C maxima while the
 * taps stream by (vpmaxub over the channels; the plain 2x2 / stride 2 window 64 channels per AVX-512
 * step); NCHW walks each output's window. */
void max_codes(const Geo& g, const Win* w, int layout, const uint8_t* x, uint8_t* y) {
  const int64_t P = g.P, OP = g.OP, C = g.C;
  if (layout == CT_LAYOUT_NCHW) {
    parallel_range(g.N * C, P + OP * g.taps, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const uint8_t* xp = x + p * P;
        uint8_t* yp = y + p * OP;
        int64_t o = 0;
        for (int64_t od = 0; od < g.out[0]; ++od)
          for (int64_t oh = 0; oh < g.out[1]; ++oh)
            for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o) {
              uint8_t m = 0;
              for_taps(g, w, od, oh, ow, [&](int64_t s) { m = xp[s] > m ? xp[s] : m; });
              yp[o] = m;
            }
      }
    });
    return;
  }
  if (avx512_2x2(g)) {
    parallel_range(g.N * g.out[1], g.out[2] * C * 5,
                   [&](int64_t r0, int64_t r1) { max_codes_2x2_nhwc_avx512(g, x, y, r0, r1); });
    return;
  }
  parallel_range(g.N * g.out[0] * g.out[1], g.out[2] * C * g.taps, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t oh = r % g.out[1], od = (r / g.out[1]) % g.out[0], n = r / (g.out[1] * g.out[0]);
      const uint8_t* xn = x + n * P * C;
      for (int64_t ow = 0; ow < g.out[2]; ++ow) {
        uint8_t* yr = y + (n * OP + (od * g.out[1] + oh) * g.out[2] + ow) * C;
        std::memset(yr, 0, (size_t)C);
        for_taps(g, w, od, oh, ow, [&](int64_t s) {
          const uint8_t* xr = xn + s * C;
          for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] > yr[c] ? xr[c] : yr[c];
        });
      }
    }
  });
}

template <class T>
void run_forward(const Geo& g, int layout, Kind kind, bool include_pad, const void* x, void* y, int64_t* idx) {
  if (use_reference()) {
    forward_ref<T>(g, layout, kind, include_pad, (const T*)x, (T*)y, idx);
    return;
  }
  Win w[3];
  make_wins(g, kind, w);
  if (layout == CT_LAYOUT_NCHW) forward_nchw<T>(g, w, kind, include_pad, (const T*)x, (T*)y, idx);
  else forward_nhwc<T>(g, w, kind, include_pad, (const T*)x, (T*)y, idx);
}

template <class T>
void run_backward(const Geo& g, int layout, Kind kind, bool include_pad, const void* dy, const int64_t* idx, void* dx) {
  if (use_reference()) {
    backward_ref<T>(g, layout, kind, include_pad, (const T*)dy, idx, (T*)dx);
    return;
  }
  Win w[3];
  make_wins(g, kind, w);
  if (layout == CT_LAYOUT_NCHW) backward_nchw<T>(g, w, kind, include_pad, (const T*)dy, idx, (T*)dx);
  else backward_nhwc<T>(g, w, kind, include_pad, (const T*)dy, idx, (T*)dx);
}

/* Every index must lie in [0, plane) (or be -1: a window of only padding). */
int check_indices(const char* fn, const Geo& g, const int64_t* idx) {
  const int64_t n = g.N * g.C * g.OP, P = g.P;
  int64_t bad = -1;
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < -1 || idx[i] >= P) { bad = i; break; }
  if (bad >= 0)
    return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: indices[%lld] = %lld is outside the input plane of %lld elements", fn,
                (long long)bad, (long long)idx[bad], (long long)P);
  return CT_OK;
}

int pool_forward(const char* fn, Kind kind, int dtype, int layout, const int64_t* g, int include_pad, const void* x,
                 void* y, int64_t* idx) {
  int st;
  const bool codes = kind == MAXP && dtype == CT_U8;  // uint8 codes: max pooling without indices
  if (codes && idx)
    return fail(CT_ERR_UNSUPPORTED, "%s: uint8 max pooling computes no indices (pass NULL; float32 or float64 for the "
                "backward's indices)", fn);
  if ((st = check_common(fn, codes ? CT_F32 : dtype, layout, g))) return st;
  Geo geo;
  if ((st = read_geo(fn, g, kind, &geo))) return st;
  if (geo.N == 0 || geo.C == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  if (codes) {
    Win w[3];
    make_wins(geo, kind, w);
    max_codes(geo, w, layout, (const uint8_t*)x, (uint8_t*)y);
    return CT_OK;
  }
  if (dtype == CT_F32) run_forward<float>(geo, layout, kind, include_pad != 0, x, y, idx);
  else run_forward<double>(geo, layout, kind, include_pad != 0, x, y, idx);
  return CT_OK;
}

int pool_backward(const char* fn, Kind kind, int dtype, int layout, const int64_t* g, int include_pad, const void* dy,
                  const int64_t* idx, void* dx) {
  int st;
  if ((st = check_common(fn, dtype, layout, g))) return st;
  Geo geo;
  if ((st = read_geo(fn, g, kind, &geo))) return st;
  if (geo.N == 0 || geo.C == 0) return CT_OK;
  if ((st = check_ptr(fn, "dy", dy)) || (st = check_ptr(fn, "dx", dx))) return st;
  if (kind == MAXP) {
    if ((st = check_ptr(fn, "indices", idx))) return st;
    if ((st = check_indices(fn, geo, idx))) return st;
  }
  if (dtype == CT_F32) run_backward<float>(geo, layout, kind, include_pad != 0, dy, idx, dx);
  else run_backward<double>(geo, layout, kind, include_pad != 0, dy, idx, dx);
  return CT_OK;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cpu_maxpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y, int64_t* indices, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_maxpool_forward";
  CT_TRY
  return pool_forward(fn, MAXP, dtype, layout, g, 0, x, y, indices);
  CT_CATCH(fn)
}

int ct_cpu_maxpool_backward(int dtype, int layout, const int64_t* g, const void* dy, const int64_t* indices, void* dx, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_maxpool_backward";
  CT_TRY
  return pool_backward(fn, MAXP, dtype, layout, g, 0, dy, indices, dx);
  CT_CATCH(fn)
}

int ct_cpu_avgpool_forward(int dtype, int layout, const int64_t* g, int count_include_pad, const void* x, void* y, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_avgpool_forward";
  CT_TRY
  return pool_forward(fn, AVGP, dtype, layout, g, count_include_pad, x, y, nullptr);
  CT_CATCH(fn)
}

int ct_cpu_avgpool_backward(int dtype, int layout, const int64_t* g, int count_include_pad, const void* dy, void* dx, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_avgpool_backward";
  CT_TRY
  return pool_backward(fn, AVGP, dtype, layout, g, count_include_pad, dy, nullptr, dx);
  CT_CATCH(fn)
}

int ct_cpu_adaptive_avgpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_adaptive_avgpool_forward";
  CT_TRY
  return pool_forward(fn, ADAPT, dtype, layout, g, 0, x, y, nullptr);
  CT_CATCH(fn)
}

int ct_cpu_adaptive_avgpool_backward(int dtype, int layout, const int64_t* g, const void* dy, void* dx, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_adaptive_avgpool_backward";
  CT_TRY
  return pool_backward(fn, ADAPT, dtype, layout, g, 0, dy, nullptr, dx);
  CT_CATCH(fn)
}

}  // extern "C"
