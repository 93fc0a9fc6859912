/*
 * Branch-free float32 math written so that GCC auto-vectorizes loops calling it, for both the
 * AVX2 baseline and the CT_AVX512 functions (the helpers are always_inline, so every caller
 * gets its own copy compiled for its own ISA).
 *
 * exp_f32: Cephes-style. n = round(x log2 e); r = x - n ln2 (ln2 split in two parts, exact
 * product for the high part); e^r on [-ln2/2, ln2/2] by a degree-6 polynomial (~1 ulp);
 * scaled by 2^n as two power-of-two factors so that results down to the subnormal range
 * (x >= -103.9) and overflow to +inf (x > 88.72) come out right. NaN propagates; -inf -> 0.
 * Cost: ~15 FLOPs per element.
 *
 * tanh_f32: odd Taylor polynomial to x^9 for |x| < 0.25 (truncation < 1e-8 relative), else
 * sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) (no cancellation there: 1 - e >= 0.39); both are
 * computed and one selected, so loops stay vectorizable. ~3 ulp; +-1 for |x| -> inf; NaN -> NaN.
 * Cost: ~30 FLOPs per element.
 *
 * exp_f32x16: exp_f32 in explicit AVX-512 form, for hot loops whose shape GCC does not vectorize
 * (the online softmax of attention: a running maximum, a sum and a select per element). The same
 * operations as exp_f32 compiled with FMA contraction (GCC's default), so the results are the same
 * bits; the 2^n scaling is vscalefps (one rounding, as the two exact power-of-two products).
 * Callers that need exp(-inf) = 0 exactly mask it. ~14 instructions per 16 elements.
 *
 * gelu_erf_f32: the exact (erf) GELU x Phi(x) = 0.5 x erfc(-x / sqrt 2), branch-free. For
 * a = |z| (z = -x / sqrt 2), erfc(a) = t exp(-a^2 + g(t)) with t = 1 / (1 + a / 2) and g a degree-10
 * polynomial in (t - 1/2), least-squares fitted (numpy, 4000 Chebyshev nodes of t in [1/6, 1],
 * i.e. a in [0, 10]) to log(erfc(a) / t) + a^2 (fit error 7e-9); erfc(z) = 2 - erfc(a) for z < 0,
 * which never cancels (the result is in [1, 2]). The roundings that would cost up to ~100 ulp for
 * large |x| are avoided: z = -x / sqrt 2 carries its error dz (an fma, plus the low part of
 * 1 / sqrt 2), and a^2 is split as ah^2 (exact: ah is a cut to 12 significant bits) plus a small
 * rest, so exp(-a^2 + g) = exp(-ah^2) exp(g - rest - 2 a dz) has no large rounded argument.
 * Against libm's double erfc over x in [-12.8, 14]: mean 0.5 ulp, max ~6 ulp. No step reaches
 * the subnormal range (each operation there is a microcode assist on Intel cores, ~100 cycles):
 * for |x| > 12.87 (a > 9.1) the result is selected, x for x > 0 (erfc(z) rounds to 2) and -0 for
 * x < 0 (|GELU(x)| < 4.2e-37 there), so +inf gives +inf. NaN propagates; -inf gives NaN (0 * inf,
 * as the scalar form). Cost: ~60 FLOPs per element (two exp_f32, the polynomial 20, one division).
 */
#ifndef CORTADO_CPU_VMATH_H
#define CORTADO_CPU_VMATH_H

#include "internal.h"

namespace ct {

CT_INLINE float exp_f32(float x) {
  x = x < -104.0f ? -104.0f : x;  // comparisons are false for NaN: NaN passes through
  x = x > 89.0f ? 89.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float t = x * 1.44269504088896341f + magic;
  int32_t n = (int32_t)(f32_bits(t) - f32_bits(magic));
  float fn = t - magic;
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t n1 = n >> 1, n2 = n - n1;  // each in [-75, 65]: both 2^n1 and 2^n2 are normal
  float s1 = bits_f32((uint32_t)(n1 + 127) << 23);
  float s2 = bits_f32((uint32_t)(n2 + 127) << 23);
  return p * s1 * s2;
}

/* 1 / (1 + e^-x): 0 for x -> -inf, 1 for x -> +inf, no cancellation. */
CT_INLINE float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

CT_INLINE float tanh_f32(float x) {
  const float ax = x < 0 ? -x : x;
  const float x2 = x * x;
  float p = 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  const float small = x * (1.0f + x2 * p);  // keeps the sign of -0
  const float e = exp_f32(-2.0f * ax);
  float big = (1.0f - e) / (1.0f + e);
  big = x < 0 ? -big : big;
  return ax < 0.25f ? small : big;  // NaN: ax < 0.25 is false, big is NaN
}

/* exp_f32 of 16 lanes (see the header comment). Only for CT_AVX512 functions. */
CT_AVX512 CT_INLINE __m512 exp_f32x16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);  // vmaxps/vminps return the second operand
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);     // when one is NaN: NaN passes through
  const __m512 magic = _mm512_set1_ps(12582912.0f);
  const __m512 fn = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic), magic);
  __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, fn);
}

CT_INLINE float gelu_erf_f32(float x) {
  const float inv_sqrt2_hi = 0.70710677f;        // 1 / sqrt 2 rounded to float
  const float inv_sqrt2_lo = 1.21016175e-08f;    // 1 / sqrt 2 - inv_sqrt2_hi
  const float z = -x * inv_sqrt2_hi;
  const float dz = __builtin_fmaf(-x, inv_sqrt2_hi, -z) - x * inv_sqrt2_lo;  // z + dz = -x / sqrt 2
  float a = z < 0 ? -z : z;
  const float da = z < 0 ? -dz : dz;
  // past a = 9.1 (|x| > 12.87) erfc(a) < 6.6e-38 nears the subnormal range, where every operation
  // costs a microcode assist on Intel cores (a GEMM epilogue of large activations ran 5x slower);
  // there erfc(z) rounds to 2 for x > 0 and |GELU(x)| < 4.2e-37 for x < 0: both selected below
  const bool tail = a > 9.1f;
  a = tail ? 9.1f : a;
  const float t = 1.0f / (1.0f + 0.5f * a);
  const float u = t - 0.5f;
  float g = -1.449133009e-01f;
  g = g * u + 2.656913102e-01f;
  g = g * u - 1.103022415e-02f;
  g = g * u - 2.940705419e-01f;
  g = g * u + 1.095009521e-01f;
  g = g * u + 2.822370231e-01f;
  g = g * u - 1.578248292e-01f;
  g = g * u - 3.751649857e-01f;
  g = g * u + 1.893710494e-01f;
  g = g * u + 1.345286489e+00f;
  g = g * u - 6.717940569e-01f;
  // exp(-(a + da)^2 + g) = exp(-ah^2) exp(g - (2 ah al + al^2) - 2 a da): ah (a with 12
  // significant bits) squares exactly, so neither exp argument carries a large rounding error
  // (the one of s = g - a^2 in float would be up to 4e-6 relative for a near 10), whatever the
  // compiler contracts into fmas
  const float ah = bits_f32(f32_bits(a) & 0xfffff000u);
  const float al = a - ah;
  const float c = 2.0f * ah * al + al * al + 2.0f * a * da;
  const float r = t * exp_f32(-ah * ah) * exp_f32(g - c);
  float erfc = z < 0 ? 2.0f - r : r;
  erfc = tail ? (z < 0 ? 2.0f : 0.0f) : erfc;
  return 0.5f * x * erfc;
}

}  // namespace ct

#endif
