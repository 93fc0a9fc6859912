/*
 * BiPer's square wave and its sine surrogate (quant_binary.h), one scalar definition for the CPU
 * and CUDA kernels: both evaluate omega x in double, take sin / cos in double and round the result
 * to the dtype once, so the forward signs agree except where sin(omega x) is within a few ulps of
 * double precision of 0, and the gradients to the rounding of the dtype.
 */
#ifndef CORTADO_BIPER_MATH_H
#define CORTADO_BIPER_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define CT_BP_HD __host__ __device__ __forceinline__
#else
#define CT_BP_HD inline __attribute__((always_inline))
#endif

namespace ct {
namespace biper {

/* sign(sin(omega x)): +1 where sin(omega x) >= 0 (x = 0 gives +1, as sign_ste), -1 below; NaN for
 * a NaN or infinite x (the wave has no value there). */
CT_BP_HD double wave(double x, double omega) {
  const double s = sin(omega * x);
  if (s != s) return s;
  return s >= 0 ? 1.0 : -1.0;
}

/* The surrogate's derivative d/dx sin(omega x) = omega cos(omega x), times the output gradient g. */
CT_BP_HD double grad(double g, double x, double omega) { return g * omega * cos(omega * x); }

/* omega must be finite and positive. */
CT_BP_HD bool valid_omega(double omega) { return omega > 0 && omega <= 1.7976931348623157e308; }

}  // namespace biper
}  // namespace ct

#endif
