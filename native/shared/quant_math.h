/*
 * Scalar quantization math compiled into both libcortado_cpu (g++) and libcortado_cuda (nvcc,
 * host and device), so the CPU and CUDA kernels of quant.h agree bit for bit.
 *
 * fp8 (OCP 8-bit floating point specification, v1.0):
 *   E4M3: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; S.1111.111 is NaN, so
 *         the largest finite value is S.1111.110 = 448; subnormals 2^-6 * m/8.
 *   E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits; S.11111.00 is infinity, S.11111.xx
 *         (xx != 0) NaN; the largest finite value is 57344; subnormals 2^-14 * m/4.
 * float32 -> fp8 rounds to nearest, ties to even, and SATURATES (the OCP "saturation mode",
 * ONNX's saturate=1): a finite value beyond the largest finite one, and +-infinity, become
 * +-max; NaN becomes the NaN 0x7F with the sign kept. -0 stays -0.
 *
 * Integer quantization of one value (ONNX QuantizeLinear): q = clamp(rne(x / scale) + zp, qmin,
 * qmax), the division and the rounding in float32 (rne = round half to even); NaN maps to zp.
 * Dequantization: x = (float)(q - zp) * scale in float32.
 */
#ifndef CORTADO_QUANT_MATH_H
#define CORTADO_QUANT_MATH_H

#include <stdint.h>

#include "cortado/common.h"

#include <cmath>
#include <cstring>

#ifdef __CUDACC__
#define CT_QM_HD __host__ __device__ __forceinline__
#else
#define CT_QM_HD inline __attribute__((always_inline))
#endif

namespace ct {
namespace qm {

CT_QM_HD uint32_t bits_of(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}

CT_QM_HD float float_of(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}

/* float32 -> bfloat16 bits, round to nearest even; a NaN stays a NaN (made quiet). */
CT_QM_HD uint16_t bf16_rne(float x) {
  uint32_t u = bits_of(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* Round half to even in float32 (the default rounding mode on both sides). */
CT_QM_HD float rne(float x) {
#ifdef __CUDA_ARCH__
  return rintf(x);
#else
  return std::nearbyint(x);
#endif
}

/* The parameters of an fp8 format: mantissa bits, exponent bias, largest finite code. */
template <int M, int BIAS, uint32_t MAXCODE> struct fp8_format {
  static constexpr int mant = M;
  static constexpr int bias = BIAS;
  static constexpr uint32_t max_code = MAXCODE;
};
using e4m3 = fp8_format<3, 7, 0x7Eu>;
using e5m2 = fp8_format<2, 15, 0x7Bu>;

/*
 * float32 -> fp8, round to nearest even, saturating. Positive fp8 codes are ordered like their
 * values, and a normal float32 maps to the code (e - 127 + bias) << M | top M mantissa bits, so
 * rounding the float32 bits to M mantissa bits (RNE on the dropped 23 - M bits; a carry moves into
 * the exponent) and rebiasing gives the code. Below the smallest normal (2^(1 - bias)) the code is
 * the integer rne(|x| / 2^(1 - bias - M)) (exact scaling by a power of two), which runs into the
 * smallest normal's code when it rounds up. Cost: a few integer ops per value.
 */
template <class F> CT_QM_HD uint8_t f32_to_fp8(float x) {
  const uint32_t u = bits_of(x);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return (uint8_t)(sign | 0x7Fu);  // NaN
  uint32_t code;
  const uint32_t min_normal_bits = (uint32_t)(127 + 1 - F::bias) << 23;
  if (a >= min_normal_bits) {
    const int shift = 23 - F::mant;
    uint32_t r = a + ((1u << (shift - 1)) - 1u) + ((a >> shift) & 1u);  // RNE on the dropped bits
    r >>= shift;
    const uint32_t rebias = (uint32_t)(127 - F::bias) << F::mant;
    code = r - rebias;  // infinity lands far above max_code
    if (code > F::max_code) code = F::max_code;
  } else {
    // subnormal range: multiples of 2^(1 - bias - M); the scaling is exact
    const float q = float_of(a) * float_of((uint32_t)(127 - (1 - F::bias - F::mant)) << 23);
    code = (uint32_t)rne(q);
  }
  return (uint8_t)(sign | code);
}

/* fp8 -> float32 (exact). */
template <class F> CT_QM_HD float fp8_to_f32(uint8_t v) {
  const uint32_t sign = (uint32_t)(v & 0x80u) << 24;
  const uint32_t e = (v >> F::mant) & ((1u << (7 - F::mant)) - 1u);
  const uint32_t m = v & ((1u << F::mant) - 1u);
  const uint32_t emax = (1u << (7 - F::mant)) - 1u;
  if (F::mant == 3 && e == emax && m == 7u) return float_of(sign | 0x7FC00000u);  // E4M3 NaN
  if (F::mant == 2 && e == emax) return float_of(sign | (m ? 0x7FC00000u : 0x7F800000u));  // E5M2 inf/NaN
  if (e == 0) {
    // m * 2^(1 - bias - M), exact
    const float q = (float)m * float_of((uint32_t)(127 + 1 - F::bias - F::mant) << 23);
    return float_of(sign | bits_of(q));
  }
  return float_of(sign | ((e - F::bias + 127) << 23) | (m << (23 - F::mant)));
}

CT_QM_HD uint8_t quantize_fp8(int dtype, float x) {
  return dtype == CT_F8E4M3 ? f32_to_fp8<e4m3>(x) : f32_to_fp8<e5m2>(x);
}

CT_QM_HD float dequantize_fp8(int dtype, uint8_t v) {
  return dtype == CT_F8E4M3 ? fp8_to_f32<e4m3>(v) : fp8_to_f32<e5m2>(v);
}

/* q = clamp(rne(x / scale) + zp, qmin, qmax); NaN gives zp clamped. */
CT_QM_HD int32_t quantize_int(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  float r = rne(x / scale);
  float lo = (float)((int64_t)qmin - zp), hi = (float)((int64_t)qmax - zp);
  r = r < lo ? lo : r;  // comparisons are false for NaN: NaN goes on to the next line
  r = r > hi ? hi : r;
  int64_t q = r == r ? (int64_t)r + zp : zp;
  return (int32_t)(q < qmin ? qmin : (q > qmax ? qmax : q));
}

/* Fake quantization on the integer grid [qmin, qmax] (quant.h): y = (q - z) s with q the
 * quantized value, NaN kept. */
CT_QM_HD float fake_quantize(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  if (x != x) return x;
  return (float)((int64_t)quantize_int(x, scale, zp, qmin, qmax) - zp) * scale;
}

/* Its straight-through / LSQ gradients for the output gradient g (quant.h): *dx and the element's
 * share *ds of the scale's gradient. v = x / s; inside the grid (qmin <= rne(v) + z <= qmax)
 * dx = g, ds = g (rne(v) - v); below dx = 0, ds = g (qmin - z); above dx = 0, ds = g (qmax - z).
 * NaN x: dx = g, ds = 0. */
CT_QM_HD void fake_quantize_grad(float g, float x, float scale, int32_t zp, int32_t qmin, int32_t qmax, float* dx,
                                 float* ds) {
  if (x != x) {
    *dx = g;
    *ds = 0.0f;
    return;
  }
  const float v = x / scale, r = rne(v);
  const float lo = (float)((int64_t)qmin - zp), hi = (float)((int64_t)qmax - zp);
  if (r < lo) {
    *dx = 0.0f;
    *ds = g * lo;
  } else if (r > hi) {
    *dx = 0.0f;
    *ds = g * hi;
  } else {
    *dx = g;
    *ds = g * (r - v);
  }
}

/* Element-size in bytes of the storage dtypes quant.h takes; 0 for others. */
CT_QM_HD int quant_dtype_size(int dtype) {
  switch (dtype) {
    case CT_I8: case CT_U8: case CT_F8E4M3: case CT_F8E5M2: return 1;
    case CT_I32: return 4;
    default: return 0;
  }
}

CT_QM_HD bool is_fp8(int dtype) { return dtype == CT_F8E4M3 || dtype == CT_F8E5M2; }

}  // namespace qm
}  // namespace ct

#endif
