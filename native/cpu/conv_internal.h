/*
 * Internal to the convolution files (conv.cpp, conv_fast.cpp): the parsed geometry, operand
 * index strides for the two layouts, and the fast-path entry points that conv.cpp dispatches to.
 */
#ifndef CORTADO_CPU_CONV_INTERNAL_H
#define CORTADO_CPU_CONV_INTERNAL_H

#include <cstdint>

#include "cortado/conv.h"
#include "internal.h"
#include "conv_geometry.h"  // struct Geo and its checks, shared with the CUDA library
#include "scalar_ops.h"     // activation formulas, shared with the CUDA library

namespace ct {
namespace conv {

/* Element strides of a [N, Ch, D, H, W] (NCHW) or [N, D, H, W, Ch] (NHWC) operand. */
struct Str {
  int64_t n, c, sp[3];
};
inline Str strides_of(int layout, int64_t Ch, const int64_t* sz) {
  Str t;
  int64_t S = sz[0] * sz[1] * sz[2];
  if (layout == CT_LAYOUT_NCHW) {
    t.n = Ch * S; t.c = S; t.sp[0] = sz[1] * sz[2]; t.sp[1] = sz[2]; t.sp[2] = 1;
  } else {
    t.n = S * Ch; t.c = 1; t.sp[0] = sz[1] * sz[2] * Ch; t.sp[1] = sz[2] * Ch; t.sp[2] = Ch;
  }
  return t;
}

/* The taps of output row (od, oh) whose input row lies inside the input (padding rows skipped):
 * f(kd, kh, id, ih) with id = od*s0 - pb0 + kd*d0, ih = oh*s1 - pb1 + kh*d1. */
template <class F> CT_INLINE void for_valid_tap_rows(const Geo& g, int64_t od, int64_t oh, F&& f) {
  for (int64_t kd = 0; kd < g.k[0]; ++kd) {
    const int64_t id = od * g.s[0] - g.pb[0] + kd * g.d[0];
    if (id < 0 || id >= g.in[0]) continue;
    for (int64_t kh = 0; kh < g.k[1]; ++kh) {
      const int64_t ih = oh * g.s[1] - g.pb[1] + kh * g.d[1];
      if (ih < 0 || ih >= g.in[1]) continue;
      f(kd, kh, id, ih);
    }
  }
}

/* The taps of output position (od, oh, ow) that read inside the input (padding skipped):
 * f(r, id, ih, iw) with r = (kd*kH + kh)*kW + kw the tap's index in the kernel. */
template <class F> CT_INLINE void for_valid_taps(const Geo& g, int64_t od, int64_t oh, int64_t ow, F&& f) {
  for_valid_tap_rows(g, od, oh, [&](int64_t kd, int64_t kh, int64_t id, int64_t ih) {
    for (int64_t kw = 0; kw < g.k[2]; ++kw) {
      const int64_t iw = ow * g.s[2] - g.pb[2] + kw * g.d[2];
      if (iw < 0 || iw >= g.in[2]) continue;
      f((kd * g.k[1] + kh) * g.k[2] + kw, id, ih, iw);
    }
  });
}

/* Bias + activation applied to one value: the unary op's formula (scalar_ops.h). */
CT_INLINE double act_d(double v, int a) { return sop::activation<double>(a, v); }
CT_INLINE float act_f(float v, int a) { return sop::activation<float>(a, v); }

/* y[i] = act(y[i]) for i < n, one vectorizable loop per activation (conv.cpp). Out of line on
 * purpose: inlined into Winograd's tile loop, the activations' constants stay live in vector
 * registers across the GEMM micro-kernel and make it spill. */
void act_rows(float* y, int64_t n, int act);

/* bias + activation over a whole [N, K, P] / [N, P, K] output (float or double). */
template <class T> void epilogue(const Geo& g, T* y, const T* bias, int act);

// fast paths (conv_fast.cpp, conv_winograd.cpp); F32 only; preconditions checked by the caller
void depthwise_forward(const Geo& g, const float* x, const float* w, const float* bias, int act, float* y);
void depthwise_backward_data(const Geo& g, const float* dy, const float* w, float* dx);
void depthwise_backward_weight(const Geo& g, const float* x, const float* dy, float* dw);
/* packed: the weight as direct_nhwc_pack / winograd_pack left it (then w is not read), or null. */
void direct_nhwc_forward(const Geo& g, const float* x, const float* w, const float* bias, int act, float* y,
                         const float* packed = nullptr);
void winograd_forward(const Geo& g, const float* x, const float* w, const float* bias, int act, float* y,
                      const float* packed = nullptr);
/* Pre-packing: floats of the packed weight for this geometry (and this CPU's vector width), and the packing. */
int64_t direct_nhwc_block();
int64_t direct_nhwc_packed_len(const Geo& g);
void direct_nhwc_pack(const Geo& g, const float* w, float* packed);
int64_t winograd_packed_len(const Geo& g);
void winograd_pack(const Geo& g, const float* w, float* packed);
void winograd_backward_weight(const Geo& g, const float* x, const float* dy, float* dw);

}  // namespace conv
}  // namespace ct

#endif
