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

/* Bias + activation applied to one float. */
CT_INLINE double act_d(double v, int a) {
  switch (a) {
    case CT_ACTIVATION_RELU: return v > 0 ? v : 0;
    case CT_ACTIVATION_GELU: return 0.5 * v * (1.0 + std::erf(v * 0.70710678118654752440));
    case CT_ACTIVATION_SILU: return v / (1.0 + std::exp(-v));
    default: return v;
  }
}
CT_INLINE float act_f(float v, int a) {
  switch (a) {
    case CT_ACTIVATION_RELU: return v > 0 ? v : 0;
    case CT_ACTIVATION_GELU: return 0.5f * v * (1.0f + std::erf(v * 0.70710678f));
    case CT_ACTIVATION_SILU: return v / (1.0f + std::exp(-v));
    default: return v;
  }
}

/* bias + activation over a whole [N, K, P] / [N, P, K] output (float or double). */
template <class T> void epilogue(const Geo& g, T* y, const T* bias, int act);

// fast paths (conv_fast.cpp, conv_winograd.cpp); F32 only; preconditions checked by the caller
void depthwise_forward(const Geo& g, const float* x, const float* w, const float* bias, int act, float* y);
void depthwise_backward_data(const Geo& g, const float* dy, const float* w, float* dx);
void depthwise_backward_weight(const Geo& g, const float* x, const float* dy, float* dw);
void direct_nhwc_forward(const Geo& g, const float* x, const float* w, const float* bias, int act, float* y);
void winograd_forward(const Geo& g, const float* x, const float* w, const float* bias, int act, float* y);
void winograd_backward_weight(const Geo& g, const float* x, const float* dy, float* dw);

}  // namespace conv
}  // namespace ct

#endif
