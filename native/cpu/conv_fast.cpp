/*
 * Convolution fast paths (float32), dispatched from conv.cpp after its checks.
 *
 * DEPTHWISE (groups == C == K): per channel sliding window; F = 2*N*C*KS*P FLOPs against
 *   N*C*(S+P)*4 bytes, so it is bandwidth bound (arithmetic intensity ~KS/4 FLOP/byte).
 *   NCHW: one output row at a time, for each valid tap a contiguous (stride 1) axpy over the row;
 *   NHWC: one output pixel at a time, the taps' channel vectors multiply-added (vectorized over C).
 *   Backward-data scatters the same taps (planes / channel blocks own their outputs: no races);
 *   backward-weight reduces x * dy per channel over (n, o).
 * DIRECT_NHWC: the image is copied into a zero-padded NHWC buffer ((D+pads)(H+pads)(W+pads)C*4
 *   bytes per image) so the inner kernel has no bounds checks (an NCHW image is transposed by the
 *   same copy, and the epilogue writes each output channel's run of pixels into its NCHW plane:
 *   the layout change costs two passes over the data, not an im2col buffer); the weight is packed
 *   [group][K block][tap][c][K block]. The register tile is 12 output pixels x 32 output channels
 *   (24 zmm accumulators) with AVX-512, 6 x 16 (12 ymm) on the AVX2 baseline; per input channel
 *   and tap it loads 2 weight vectors, broadcasts 12 (6) inputs and issues 24 (12) FMAs. With unit
 *   W dilation and one group, the KW taps of a kernel row form one segment of KW*C steps (few
 *   input channels, e.g. the RGB stem, no longer pay a segment switch every C steps).
 *   F FLOPs; reads the padded image KS*Kblocks times from L1/L2.
 * WINOGRAD: conv_winograd.cpp.
 */
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "conv_internal.h"
#include "microkernel.h"

namespace ct {
namespace conv {

static inline void valid_range(int64_t out, int64_t s, int64_t off, int64_t in, int64_t* lo, int64_t* hi) {
  int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t h = in - off <= 0 ? 0 : (in - off + s - 1) / s;
  if (h > out) h = out;
  if (l > h) l = h;
  *lo = l; *hi = h;
}

// ------------------------------------------------------------------ DEPTHWISE
void depthwise_forward(const Geo& g, const float* x, const float* w, const float* bias, int act, float* y) {
  const int64_t C = g.C, KS = g.KS;
  const int64_t oD = g.out[0], oH = g.out[1], oW = g.out[2];
  if (g.layout == CT_LAYOUT_NCHW) {
    parallel_range(g.N * C, g.P * KS, [&](int64_t i0, int64_t i1) {
      std::vector<float> acc(oW);
      for (int64_t nc = i0; nc < i1; ++nc) {
        const int64_t c = nc % C;
        const float* xp = x + nc * g.S;
        const float* wc = w + c * KS;
        float* yp = y + nc * g.P;
        const float b = bias ? bias[c] : 0.0f;
        for (int64_t od = 0; od < oD; ++od)
          for (int64_t oh = 0; oh < oH; ++oh) {
            std::fill(acc.begin(), acc.end(), b);
            for_valid_tap_rows(g, od, oh, [&](int64_t kd, int64_t kh, int64_t id, int64_t ih) {
              const float* xr = xp + (id * g.in[1] + ih) * g.in[2];
              for (int64_t kw = 0; kw < g.k[2]; ++kw) {
                const float wv = wc[(kd * g.k[1] + kh) * g.k[2] + kw];
                const int64_t off = kw * g.d[2] - g.pb[2];
                int64_t lo, hi;
                valid_range(oW, g.s[2], off, g.in[2], &lo, &hi);
                float* a = acc.data();
                if (g.s[2] == 1) {
                  const float* xs = xr + off;
                  for (int64_t ow = lo; ow < hi; ++ow) a[ow] += wv * xs[ow];
                } else {
                  const int64_t sw = g.s[2];
                  for (int64_t ow = lo; ow < hi; ++ow) a[ow] += wv * xr[ow * sw + off];
                }
              }
            });
            float* yr = yp + (od * oH + oh) * oW;
            for (int64_t ow = 0; ow < oW; ++ow) yr[ow] = act_f(acc[ow], act);
          }
      }
    });
  } else {
    std::vector<float> wt(KS * C);  // [tap][C]
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < KS; ++r) wt[r * C + c] = w[c * KS + r];
    parallel_range(g.N * oD * oH, oW * C * KS, [&](int64_t i0, int64_t i1) {
      std::vector<float> acc(C);
      for (int64_t row = i0; row < i1; ++row) {
        const int64_t oh = row % oH, od = (row / oH) % oD, n = row / (oH * oD);
        const float* xn = x + n * g.S * C;
        for (int64_t ow = 0; ow < oW; ++ow) {
          float* a = acc.data();
          if (bias) std::memcpy(a, bias, C * 4); else std::fill(a, a + C, 0.0f);
          for_valid_taps(g, od, oh, ow, [&](int64_t r, int64_t id, int64_t ih, int64_t iw) {
            const float* xp = xn + ((id * g.in[1] + ih) * g.in[2] + iw) * C;
            const float* wp = wt.data() + r * C;
            for (int64_t c = 0; c < C; ++c) a[c] += xp[c] * wp[c];
          });
          float* yp = y + (row * oW + ow) * C;
          if (act == CT_ACTIVATION_NONE) std::memcpy(yp, a, C * 4);
          else for (int64_t c = 0; c < C; ++c) yp[c] = act_f(a[c], act);
        }
      }
    });
  }
}

void depthwise_backward_data(const Geo& g, const float* dy, const float* w, float* dx) {
  const int64_t C = g.C, KS = g.KS;
  const int64_t oD = g.out[0], oH = g.out[1], oW = g.out[2];
  if (g.layout == CT_LAYOUT_NCHW) {
    parallel_range(g.N * C, g.P * KS, [&](int64_t i0, int64_t i1) {
      for (int64_t nc = i0; nc < i1; ++nc) {
        const int64_t c = nc % C;
        float* xp = dx + nc * g.S;
        std::fill(xp, xp + g.S, 0.0f);
        const float* wc = w + c * KS;
        const float* yp = dy + nc * g.P;
        for (int64_t od = 0; od < oD; ++od)
          for (int64_t oh = 0; oh < oH; ++oh) {
            const float* yr = yp + (od * oH + oh) * oW;
            for_valid_tap_rows(g, od, oh, [&](int64_t kd, int64_t kh, int64_t id, int64_t ih) {
              float* xr = xp + (id * g.in[1] + ih) * g.in[2];
              for (int64_t kw = 0; kw < g.k[2]; ++kw) {
                const float wv = wc[(kd * g.k[1] + kh) * g.k[2] + kw];
                const int64_t off = kw * g.d[2] - g.pb[2];
                int64_t lo, hi;
                valid_range(oW, g.s[2], off, g.in[2], &lo, &hi);
                const int64_t sw = g.s[2];
                if (sw == 1) {
                  float* xs = xr + off;
                  for (int64_t ow = lo; ow < hi; ++ow) xs[ow] += wv * yr[ow];
                } else {
                  for (int64_t ow = lo; ow < hi; ++ow) xr[ow * sw + off] += wv * yr[ow];
                }
              }
            });
          }
      }
    });
  } else {
    std::vector<float> wt(KS * C);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < KS; ++r) wt[r * C + c] = w[c * KS + r];
    // work items: (image, channel block); each owns its dx entries
    const int64_t CB = 64, nb = (C + CB - 1) / CB;
    parallel_range(g.N * nb, g.P * std::min(C, CB) * KS, [&](int64_t i0, int64_t i1) {
      for (int64_t it = i0; it < i1; ++it) {
        const int64_t n = it / nb, c0 = (it % nb) * CB, c1 = std::min(C, c0 + CB), cn = c1 - c0;
        float* xn = dx + n * g.S * C;
        for (int64_t s = 0; s < g.S; ++s) std::fill(xn + s * C + c0, xn + s * C + c1, 0.0f);
        for (int64_t od = 0; od < oD; ++od)
          for (int64_t oh = 0; oh < oH; ++oh)
            for (int64_t ow = 0; ow < oW; ++ow) {
              const float* yp = dy + (((n * oD + od) * oH + oh) * oW + ow) * C + c0;
              for_valid_taps(g, od, oh, ow, [&](int64_t r, int64_t id, int64_t ih, int64_t iw) {
                float* xp = xn + ((id * g.in[1] + ih) * g.in[2] + iw) * C + c0;
                const float* wp = wt.data() + r * C + c0;
                for (int64_t c = 0; c < cn; ++c) xp[c] += yp[c] * wp[c];
              });
            }
      }
    });
  }
}

void depthwise_backward_weight(const Geo& g, const float* x, const float* dy, float* dw) {
  const int64_t C = g.C, KS = g.KS;
  const int64_t oD = g.out[0], oH = g.out[1], oW = g.out[2];
  if (g.layout == CT_LAYOUT_NCHW) {
    parallel_range(C, g.N * g.P * KS, [&](int64_t c0, int64_t c1) {
      std::vector<double> acc(KS);
      for (int64_t c = c0; c < c1; ++c) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t n = 0; n < g.N; ++n) {
          const float* xp = x + (n * C + c) * g.S;
          const float* yp = dy + (n * C + c) * g.P;
          for (int64_t od = 0; od < oD; ++od)
            for (int64_t oh = 0; oh < oH; ++oh) {
              const float* yr = yp + (od * oH + oh) * oW;
              for_valid_tap_rows(g, od, oh, [&](int64_t kd, int64_t kh, int64_t id, int64_t ih) {
                const float* xr = xp + (id * g.in[1] + ih) * g.in[2];
                for (int64_t kw = 0; kw < g.k[2]; ++kw) {
                  const int64_t off = kw * g.d[2] - g.pb[2];
                  int64_t lo, hi;
                  valid_range(oW, g.s[2], off, g.in[2], &lo, &hi);
                  float s = 0;
                  const int64_t sw = g.s[2];
                  if (sw == 1) {
                    const float* xs = xr + off;
                    for (int64_t ow = lo; ow < hi; ++ow) s += xs[ow] * yr[ow];
                  } else {
                    for (int64_t ow = lo; ow < hi; ++ow) s += xr[ow * sw + off] * yr[ow];
                  }
                  acc[(kd * g.k[1] + kh) * g.k[2] + kw] += s;
                }
              });
            }
        }
        for (int64_t r = 0; r < KS; ++r) dw[c * KS + r] = (float)acc[r];
      }
    });
  } else {
    // channel blocks over threads; each accumulates [tap][block] in float per row, double overall
    const int64_t CB = 64, nb = (C + CB - 1) / CB;
    parallel_range(nb, g.N * g.P * std::min(C, CB) * KS, [&](int64_t b0, int64_t b1) {
      std::vector<double> acc(KS * CB);
      std::vector<float> racc(KS * CB);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t c0 = b * CB, c1 = std::min(C, c0 + CB), cn = c1 - c0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t n = 0; n < g.N; ++n)
          for (int64_t od = 0; od < oD; ++od)
            for (int64_t oh = 0; oh < oH; ++oh) {
              std::fill(racc.begin(), racc.end(), 0.0f);
              for (int64_t ow = 0; ow < oW; ++ow) {
                const float* yp = dy + (((n * oD + od) * oH + oh) * oW + ow) * C + c0;
                for_valid_taps(g, od, oh, ow, [&](int64_t r, int64_t id, int64_t ih, int64_t iw) {
                  const float* xp = x + (((n * g.in[0] + id) * g.in[1] + ih) * g.in[2] + iw) * C + c0;
                  float* a = racc.data() + r * CB;
                  for (int64_t c = 0; c < cn; ++c) a[c] += xp[c] * yp[c];
                });
              }
              for (int64_t i = 0; i < KS * CB; ++i) acc[i] += racc[i];
            }
        for (int64_t c = 0; c < cn; ++c)
          for (int64_t r = 0; r < KS; ++r) dw[(c0 + c) * KS + r] = (float)acc[r * CB + c];
      }
    });
  }
}

// ------------------------------------------------------------------ DIRECT_NHWC
namespace {
/* out[j][0..16) = sum_{tap, c} x_j[tap][c] * wp[tap][c][0..16); xs[j] points at pixel j's first tap.
 * AVX2 6 x 16 tile (microkernel.h, one segment per tap). */
template <int NP>
CT_INLINE void direct_tile(const float* const* xs, const int64_t* tap_off, int64_t ntaps, int64_t Cg, const float* wp,
                           float* out /* [NP][16] */) {
  mk::f32_avx2<NP, 2>(ntaps, Cg, mk::Taps<NP>{xs, tap_off}, wp, 16, out, 16, false);
}

/* The same with 32 output channels per block in 2 zmm and up to 12 pixels (24 accumulators). */
template <int NP>
CT_AVX512 CT_INLINE void direct_tile512(const float* const* xs, const int64_t* tap_off, int64_t ntaps, int64_t Cg,
                                        const float* wp, float* out /* [NP][32] */) {
  mk::f32_avx512<NP, 2>(ntaps, Cg, mk::Taps<NP>{xs, tap_off}, wp, 32, out, 32, false);
}

CT_AVX512 void tile512(int np, const float* const* xs, const int64_t* taps, int64_t ntaps, int64_t Cg, const float* wp,
                       float* out) {
  switch (np) {
    case 12: return direct_tile512<12>(xs, taps, ntaps, Cg, wp, out);
    case 11: return direct_tile512<11>(xs, taps, ntaps, Cg, wp, out);
    case 10: return direct_tile512<10>(xs, taps, ntaps, Cg, wp, out);
    case 9: return direct_tile512<9>(xs, taps, ntaps, Cg, wp, out);
    case 8: return direct_tile512<8>(xs, taps, ntaps, Cg, wp, out);
    case 7: return direct_tile512<7>(xs, taps, ntaps, Cg, wp, out);
    case 6: return direct_tile512<6>(xs, taps, ntaps, Cg, wp, out);
    case 5: return direct_tile512<5>(xs, taps, ntaps, Cg, wp, out);
    case 4: return direct_tile512<4>(xs, taps, ntaps, Cg, wp, out);
    case 3: return direct_tile512<3>(xs, taps, ntaps, Cg, wp, out);
    case 2: return direct_tile512<2>(xs, taps, ntaps, Cg, wp, out);
    default: return direct_tile512<1>(xs, taps, ntaps, Cg, wp, out);
  }
}
/* The kernel's np x kn tile ([pixel][KB = 32 channels], rows np..15 zero) into NCHW planes: channel
 * v's np pixels are the contiguous run y + v P; + bias, ReLU inline, other activations by act_rows.
 * Two 16 x 16 register transposes instead of 384 strided scalar moves (the scalar epilogue took
 * 15% of the stem's time). */
CT_AVX512 void store_tile_nchw512(const float* tile, int64_t np, int64_t kn, const float* bias, int act, float* y,
                                  int64_t P) {
  alignas(64) float t[32 * 16];  // [channel][pixel]
  mk::transpose16x16<false>(t, 16, tile, 32);
  mk::transpose16x16<false>(t + 16 * 16, 16, tile + 16, 32);
  const __mmask16 m = (__mmask16)((1u << np) - 1);
  for (int64_t v = 0; v < kn; ++v) {
    __m512 r = _mm512_load_ps(t + v * 16);
    if (bias) r = _mm512_add_ps(r, _mm512_set1_ps(bias[v]));
    if (act == CT_ACTIVATION_RELU) r = _mm512_max_ps(r, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(y + v * P, m, r);
    if (act != CT_ACTIVATION_NONE && act != CT_ACTIVATION_RELU) act_rows(y + v * P, np, act);
  }
}

void tile256(int np, const float* const* xs, const int64_t* taps, int64_t ntaps, int64_t Cg, const float* wp,
             float* out) {
  switch (np) {
    case 6: return direct_tile<6>(xs, taps, ntaps, Cg, wp, out);
    case 5: return direct_tile<5>(xs, taps, ntaps, Cg, wp, out);
    case 4: return direct_tile<4>(xs, taps, ntaps, Cg, wp, out);
    case 3: return direct_tile<3>(xs, taps, ntaps, Cg, wp, out);
    case 2: return direct_tile<2>(xs, taps, ntaps, Cg, wp, out);
    default: return direct_tile<1>(xs, taps, ntaps, Cg, wp, out);
  }
}
}  // namespace

int64_t direct_nhwc_block() { return use_avx512() ? 32 : 16; }

int64_t direct_nhwc_packed_len(const Geo& g) {
  const int64_t KB = direct_nhwc_block(), nkb = (g.Kg + KB - 1) / KB;
  return g.G * nkb * g.KS * g.Cg * KB;
}

/* The weight [K][Cg][tap] packed [grp][K block][tap][c][KB], zero columns beyond Kg: one pass over
 * it, in parallel over (group, output channel); G*K*Cg*KS*4 bytes read, the packed length written. */
void direct_nhwc_pack(const Geo& g, const float* w, float* wpk) {
  const int64_t KB = direct_nhwc_block(), Cg = g.Cg, Kg = g.Kg, KS = g.KS, nkb = (Kg + KB - 1) / KB;
  if (Kg % KB) std::fill(wpk, wpk + direct_nhwc_packed_len(g), 0.0f);
  parallel_range(g.G * Kg, Cg * KS, [&](int64_t i0, int64_t i1) {
    for (int64_t gk = i0; gk < i1; ++gk) {
      const int64_t grp = gk / Kg, kk = gk % Kg;
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t r = 0; r < KS; ++r)
          wpk[(((grp * nkb + kk / KB) * KS + r) * Cg + c) * KB + kk % KB] = w[(gk * Cg + c) * KS + r];
    }
  });
}

void direct_nhwc_forward(const Geo& g, const float* x, const float* w, const float* bias, int act, float* y,
                         const float* packed) {
  // register tile: PB output pixels x KB output channels (AVX-512: 12 x 32, AVX2: 6 x 16)
  const bool z = use_avx512();
  const int64_t KB = direct_nhwc_block(), PB = z ? 12 : 6;
  const int64_t C = g.C, K = g.K, Cg = g.Cg, Kg = g.Kg, KS = g.KS;
  const int64_t Dp = g.in[0] + g.pb[0] + g.pa[0], Hp = g.in[1] + g.pb[1] + g.pa[1], Wp = g.in[2] + g.pb[2] + g.pa[2];
  const int64_t nkb = (Kg + KB - 1) / KB;
  // packed weight [grp][kb][tap][c][KB]: packed here unless the caller packed it once (a pre-packed weight)
  Workspace own(packed ? 0 : direct_nhwc_packed_len(g));
  if (!packed) direct_nhwc_pack(g, w, own.data());
  const float* wpk = packed ? packed : own.data();
  // Segments of the reduction: one per tap, Cg steps each, at these offsets in the padded image
  // (elements). With unit dilation along W and one group, a pixel's KW taps of one kernel row are
  // KW*C contiguous floats, and the packed [tap][c] order is already [kd kh][kw*C + c]: KD*KH
  // segments of KW*C steps instead (the ResNet stem, C = 3: 7 of 21 steps instead of 49 of 3).
  const bool merge_w = g.d[2] == 1 && g.G == 1;
  const int64_t kws = merge_w ? 1 : g.k[2], nseg = KS / g.k[2] * kws, seg_len = merge_w ? g.k[2] * Cg : Cg;
  std::vector<int64_t> taps(nseg);
  for (int64_t kd = 0; kd < g.k[0]; ++kd)
    for (int64_t kh = 0; kh < g.k[1]; ++kh)
      for (int64_t kw = 0; kw < kws; ++kw)
        taps[(kd * g.k[1] + kh) * kws + kw] = ((kd * g.d[0] * Hp + kh * g.d[1]) * Wp + kw * g.d[2]) * C;
  const int64_t oD = g.out[0], oH = g.out[1], oW = g.out[2];
  const int64_t padsz = Dp * Hp * Wp * C;
  const bool nopad = g.pb[0] == 0 && g.pb[1] == 0 && g.pb[2] == 0 && g.pa[0] == 0 && g.pa[1] == 0 && g.pa[2] == 0;
  // NCHW: the copy below also turns the image into NHWC, and the epilogue writes NCHW rows
  const bool nchw = g.layout == CT_LAYOUT_NCHW;
  const int64_t S = g.in[0] * g.in[1] * g.in[2];  // input plane size (NCHW)
  const bool copy_image = !nopad || nchw;
  Workspace padded(copy_image ? g.N * padsz : 0);  // every element is written below
  // zero-padded NHWC copy of the whole batch (cheap next to the convolution)
  if (copy_image) {
    parallel_range(g.N * Dp * Hp, Wp * C, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t hp = r % Hp, dp = (r / Hp) % Dp, n = r / (Hp * Dp);
        float* dst = padded.data() + r * Wp * C;
        const int64_t id = dp - g.pb[0], ih = hp - g.pb[1];
        if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1]) { std::fill(dst, dst + Wp * C, 0.0f); continue; }
        std::fill(dst, dst + g.pb[2] * C, 0.0f);
        if (nchw) {
          const float* src = x + n * C * S + (id * g.in[1] + ih) * g.in[2];
          float* d = dst + g.pb[2] * C;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t iw = 0; iw < g.in[2]; ++iw) d[iw * C + c] = src[c * S + iw];
        } else {
          std::memcpy(dst + g.pb[2] * C, x + (((n * g.in[0] + id) * g.in[1] + ih) * g.in[2]) * C, g.in[2] * C * 4);
        }
        std::fill(dst + (g.pb[2] + g.in[2]) * C, dst + Wp * C, 0.0f);
      }
    });
  }
  const float* xsrc = copy_image ? padded.data() : x;
  const int64_t P = oD * oH * oW;  // output plane size (NCHW)
  const int64_t nwb = (oW + PB - 1) / PB;
  // Work items: one pixel block (unit) x one output-channel block, in chunks of cu units whose
  // input (PB pixels x the taps' channels each, an upper bound) fills about half of L2; within a
  // chunk channel-block-major, so that one weight panel (KS Cg KB floats) serves the chunk's units
  // from L1/L2 while their input stays in L2. The weights then stream once per chunk. Pixel-block-
  // major items (a unit over all channel blocks) streamed all of them from L3 once per unit: a
  // 384 x 1536 float32 weight (2.4 MB) outgrows a 2 MiB L2, and MiniLM at batch 1 ran 10% slower.
  // With one chunk (few units: a 128-row matmul run as this convolution has 11) the items also
  // split the channel blocks over the threads: 11 pixel blocks on two threads had left one idle
  // a sixth of the time (17% of a 2-thread MiniLM batch-1 run in libgomp's spin).
  const int64_t units = g.N * oD * oH * nwb;
  const int64_t unit_bytes = PB * KS * C * (int64_t)sizeof(float);
  const int64_t cu = std::clamp<int64_t>(l2_bytes() / 2 / unit_bytes, 1, units);
  const int64_t per_chunk = cu * nkb;
  parallel_range(units * nkb, KS * Cg * KB * PB * 2, [&](int64_t i0, int64_t i1) {
    alignas(64) float tile[16 * 32];  // rows 12..15 stay zero: store_tile_nchw512 transposes 16 rows
    std::fill(tile + 12 * 32, tile + 16 * 32, 0.0f);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t chunk = item / per_chunk, u0 = chunk * cu, w = std::min(cu, units - u0);
      const int64_t r = item - chunk * per_chunk, kb0 = r / w, kb1 = kb0 + 1;
      const int64_t it = u0 + r % w;
      const int64_t wb = it % nwb, row = it / nwb;
      const int64_t oh = row % oH, od = (row / oH) % oD, n = row / (oH * oD);
      const int64_t ow0 = wb * PB, np = std::min<int64_t>(PB, oW - ow0);
      const float* base = xsrc + n * padsz + ((od * g.s[0] * Hp + oh * g.s[1]) * Wp) * C;
      float* yrow = y + (((n * oD + od) * oH + oh) * oW + ow0) * K;
      for (int64_t grp = 0; grp < g.G; ++grp) {
        const float* xs[12];
        for (int j = 0; j < PB; ++j) xs[j] = base + (ow0 + std::min<int64_t>(j, np - 1)) * g.s[2] * C + grp * Cg;
        for (int64_t kb = kb0; kb < kb1; ++kb) {
          const float* wp = wpk + (grp * nkb + kb) * KS * Cg * KB;
          if (z) tile512((int)np, xs, taps.data(), nseg, seg_len, wp, tile);
          else tile256((int)np, xs, taps.data(), nseg, seg_len, wp, tile);
          const int64_t k0 = grp * Kg + kb * KB, kn = std::min<int64_t>(KB, Kg - kb * KB);
          if (nchw) {  // channel k0 + v of pixels ow0 .. ow0 + np: a contiguous run of each output plane
            float* yp = y + (n * K + k0) * P + (od * oH + oh) * oW + ow0;
            if (z) {
              store_tile_nchw512(tile, np, kn, bias ? bias + k0 : nullptr, act, yp, P);
              continue;
            }
            for (int64_t v = 0; v < kn; ++v) {
              const float b = bias ? bias[k0 + v] : 0.0f;
              for (int64_t j = 0; j < np; ++j) yp[v * P + j] = act_f(tile[j * KB + v] + b, act);
            }
            continue;
          }
          // bias in one vectorizable loop per pixel, the activation by act_rows (act_f's switch per
          // element kept these loops scalar)
          for (int64_t j = 0; j < np; ++j) {
            float* yp = yrow + j * K + k0;
            const float* tp = tile + j * KB;
            if (bias) for (int64_t v = 0; v < kn; ++v) yp[v] = tp[v] + bias[k0 + v];
            else std::memcpy(yp, tp, (size_t)kn * 4);
            if (act != CT_ACTIVATION_NONE) act_rows(yp, kn, act);
          }
        }
      }
    }
  });
}

}  // namespace conv
}  // namespace ct
