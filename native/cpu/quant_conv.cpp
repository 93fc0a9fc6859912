/*
 * int8 convolution, NHWC (quant_conv.h), CPU.
 *
 * General case: implicit GEMM on the int8 GEMM's driver (quant_internal.h). For each group the
 * GEMM has m = n * oh * ow rows (output pixels), k = kh * kw * cg (the patch, NHWC order) and
 * oc / groups columns; the driver asks for each row and this file gathers it from x (in-image
 * taps: cg contiguous bytes per tap; outside: zx), so the im2col matrix exists one 4096-row chunk
 * at a time inside the GEMM's own padded panel. The padding taps equal zx, so they add
 * (zx - zx)(w - zw) = 0 after the GEMM's zero-point compensation, exactly like the convolution.
 * The GEMM writes straight into y with ldc = oc at the group's first column.
 *
 * Depthwise (groups == c == oc): a direct kernel. Per output pixel, for each tap inside the image
 * acc[ch] += (x[.., ch] - zx) (w[ch, tap] - zw[ch]) in int32 over all channels at once (the
 * weights unpacked once into [tap][ch] int16); the epilogue follows per channel.
 * Cost: 2 n oh ow c kh kw integer ops; x read kh kw / (stride_h stride_w) times, y written once.
 *
 * The exact reference (int64 products) is the Java test's (QuantizationSamples' qconv2d).
 */
#include <algorithm>
#include <cstring>
#include <vector>

#include "cortado/quant_conv.h"
#include "internal.h"
#include "quant_conv_math.h"
#include "quant_internal.h"

namespace ct {
namespace {

void depthwise(const ct_qconv_args& a) {
  const int64_t c = a.c, taps = a.kh * a.kw, kp = (taps + 3) / 4 * 4;
  const int32_t zx = a.x_zero_point;
  // (w - zw) per tap and channel, from each channel's packed block (one column, k = tap)
  std::vector<int32_t> wt((size_t)(taps * c));
  const int64_t gb = qm::qconv_group_bytes(a);
  for (int64_t ch = 0; ch < c; ++ch) {
    const int8_t* blk = (const int8_t*)a.w_packed + ch * gb;
    const int32_t zw = a.w_zero_point ? ((const int32_t*)a.w_zero_point)[ch] : 0;
    for (int64_t t = 0; t < taps; ++t) wt[t * c + ch] = (int32_t)blk[qm::qconv_packed_index(kp, t, 0)] - zw;
  }
  const uint8_t* x = (const uint8_t*)a.x;
  const int64_t pixels = a.n * a.oh * a.ow;
  parallel_range(pixels, c * taps, [&](int64_t p0, int64_t p1) {
    std::vector<int32_t> acc((size_t)c);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / (a.oh * a.ow), oy = (p / a.ow) % a.oh, ox = p % a.ow;
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t ky = 0; ky < a.kh; ++ky) {
        const int64_t iy = oy * a.stride_h - a.pad_h + ky * a.dil_h;
        if (iy < 0 || iy >= a.h) continue;
        for (int64_t kx = 0; kx < a.kw; ++kx) {
          const int64_t ix = ox * a.stride_w - a.pad_w + kx * a.dil_w;
          if (ix < 0 || ix >= a.w) continue;
          const uint8_t* xs = x + ((b * a.h + iy) * a.w + ix) * c;
          const int32_t* ws = wt.data() + (ky * a.kw + kx) * c;
          int32_t* ac = acc.data();
          for (int64_t ch = 0; ch < c; ++ch) ac[ch] += ((int32_t)xs[ch] - zx) * ws[ch];  // vectorized
        }
      }
      for (int64_t ch = 0; ch < c; ++ch) qm::qconv_store(a, p * c + ch, ch, acc[ch]);
    }
  });
}

/* memcpy for the short runs of an im2col row: a byte loop below 16 bytes (libc's call costs more). */
CT_INLINE void copy_bytes(uint8_t* dst, const uint8_t* src, int64_t n) {
  if (n >= 16) {
    std::memcpy(dst, src, (size_t)n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

void implicit_gemm(const ct_qconv_args& a) {
  const int64_t cg = a.c / a.groups, og = a.oc / a.groups, k = a.kh * a.kw * cg;
  const int64_t out_bytes = qgemm_out_bytes(a.out_dtype);
  const uint8_t* x = (const uint8_t*)a.x;
  const uint8_t zx = (uint8_t)a.x_zero_point;
  for (int64_t grp = 0; grp < a.groups; ++grp) {
    ct_qgemm_args g{};
    g.a = x;  // unused: the rows come from the gather below
    g.b_packed = (const int8_t*)a.w_packed + grp * qm::qconv_group_bytes(a);
    g.b_colsum = (const int32_t*)a.w_colsum + grp * og;
    g.b_zero_point = a.w_zero_point ? (const int32_t*)a.w_zero_point + grp * og : nullptr;
    g.scale = a.scale ? (const float*)a.scale + grp * og : nullptr;
    g.bias = a.bias ? (const float*)a.bias + grp * og : nullptr;
    g.c = (char*)a.y + grp * og * out_bytes;
    g.m = a.n * a.oh * a.ow;
    g.n = og;
    g.k = k;
    g.lda = k;
    g.ldc = a.oc;
    g.a_zero_point = a.x_zero_point;
    g.out_dtype = a.out_dtype;
    g.activation = a.activation;
    g.out_zero_point = a.out_zero_point;
    const int64_t c0 = grp * cg;
    // Without groups and with unit W dilation, a kernel row's kw taps inside the image are one
    // run of kw * c bytes of x: one copy instead of kw (with c = 1, as in a first layer, the
    // per-tap copies were single-byte libc calls).
    const bool runs = a.groups == 1 && a.dil_w == 1;
    qgemm_rows(g, [&](int64_t row0, int64_t rows, uint8_t* strip, int64_t ld) {
      int64_t b = row0 / (a.oh * a.ow), oy = (row0 / a.ow) % a.oh, ox = row0 % a.ow;  // then stepped
      for (int64_t r = 0; r < rows; ++r) {
        uint8_t* dst = strip + r * ld;
        const int64_t ix0 = ox * a.stride_w - a.pad_w;
        const bool inside_w = ix0 >= 0 && ix0 + (a.kw - 1) * a.dil_w < a.w;
        for (int64_t ky = 0; ky < a.kh; ++ky) {
          const int64_t iy = oy * a.stride_h - a.pad_h + ky * a.dil_h;
          if (iy < 0 || iy >= a.h) {
            std::memset(dst, zx, (size_t)(a.kw * cg));
            dst += a.kw * cg;
            continue;
          }
          const uint8_t* xr = x + (b * a.h + iy) * a.w * a.c + c0;
          if (runs && inside_w) {
            copy_bytes(dst, xr + ix0 * a.c, a.kw * cg);
            dst += a.kw * cg;
            continue;
          }
          for (int64_t kx = 0; kx < a.kw; ++kx, dst += cg) {
            const int64_t ix = ix0 + kx * a.dil_w;
            if (ix < 0 || ix >= a.w) std::memset(dst, zx, (size_t)cg);
            else copy_bytes(dst, xr + ix * a.c, cg);
          }
        }
        if (++ox == a.ow) {
          ox = 0;
          if (++oy == a.oh) {
            oy = 0;
            ++b;
          }
        }
      }
    });
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_qconv2d(const ct_qconv_args* args, int64_t stream) {
  static const char* fn = "ct_cpu_qconv2d";
  CT_TRY
  qm::Msg m;
  if (int st = qm::check_qconv(fn, args, &m)) return fail(st, "%s", m.text);
  const ct_qconv_args& a = *args;
  if (a.n * a.oh * a.ow == 0) return CT_OK;
  if (a.groups == a.c && a.oc == a.c) depthwise(a);
  else implicit_gemm(a);
  return CT_OK;
  CT_CATCH(fn)
}
