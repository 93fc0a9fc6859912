/*
 * int8 convolution of the quantization family (quant.h), NHWC:
 *   y[b, oy, ox, o] = epilogue( sum_{ky, kx, ci} (x[b, iy, ix, gc + ci] - zx) (w_o[ky, kx, ci] - zw[o]) )
 * with iy = oy * stride_h - pad_h + ky * dil_h, ix likewise, g = o / (oc / groups) the group of
 * output channel o, gc = g * (c / groups) its first input channel; taps outside the image add 0
 * (they read as zx). pad_h / pad_w are the padding before; the padding after is implied by the
 * output size oh x ow the caller chose (asymmetric padding as ONNX allows). x uint8 [n, h, w, c] contiguous; y [n, oh, ow, oc] contiguous; the epilogue is
 * the int8 GEMM's (quant.h): int32 stores the sum, else v = fma((float)acc, scale[o], bias[o]),
 * the activation (CT_ACTIVATION_*), then float32, bfloat16, or int8/uint8 as
 * clamp(rne(v) + out_zero_point).
 *
 * Weights. For each group g the weights form the GEMM operand B_g [K, oc / groups] with
 * K = kh * kw * (c / groups) in the patch order of NHWC (k = (ky * kw + kx) * cg + ci); each B_g is
 * packed by ct_*_qgemm_pack_b and the groups are concatenated (group g starts at byte
 * g * Np * Kp, Np = (oc / groups) rounded up to 32, Kp = K rounded up to 4); w_colsum holds the
 * int32 [oc] column sums the packing wrote, group after group. K <= 32768.
 *
 * Algorithm. Implicit GEMM: the im2col rows (one per output pixel, K bytes, padding taps = zx)
 * are gathered straight into the padded A panel of the int8 GEMM's driver, chunk by chunk, and
 * multiplied by B_g with the same VNNI / AVX2 register tiles, compensation and epilogue
 * (native/cpu/quant_gemm.cpp). Depthwise (groups == c == oc) runs a direct kernel instead
 * (K = kh * kw is too short for a GEMM): int32 sums of (x - zx)(w - zw) over the in-image taps,
 * vectorized along the channels, which are contiguous in NHWC.
 * Cost: 2 n oh ow oc K integer ops; x is read kh * kw / (stride_h * stride_w) times over (the
 * gathered panel, one chunk of rows at a time, stays in cache), the packed weights once per chunk,
 * y written once.
 */
#ifndef CORTADO_QUANT_CONV_H
#define CORTADO_QUANT_CONV_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

typedef struct ct_qconv_args {
  const void* x;
  const void* w_packed;
  const void* w_colsum;
  const void* w_zero_point;
  const void* scale;
  const void* bias;
  void* y;
  int64_t n;
  int64_t h;
  int64_t w;
  int64_t c;
  int64_t oc;
  int64_t kh;
  int64_t kw;
  int64_t oh;
  int64_t ow;
  int64_t stride_h;
  int64_t stride_w;
  int64_t pad_h;
  int64_t pad_w;
  int64_t dil_h;
  int64_t dil_w;
  int64_t groups;
  int32_t x_zero_point;
  int32_t out_dtype;
  int32_t activation;
  int32_t out_zero_point;
} ct_qconv_args;

/* The convolution above (CT_OK, or CT_ERR_* with a message for inconsistent sizes or pointers). */
int ct_cpu_qconv2d(const ct_qconv_args* args, int64_t stream);
int ct_cuda_qconv2d(const ct_qconv_args* args, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
