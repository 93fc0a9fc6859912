/*
 * Scalar formulas of the elementwise ops, written once and compiled three ways: by g++ into
 * libcortado_cpu (scalar and auto-vectorized AVX2 / AVX-512 row loops), by nvcc into the CUDA
 * kernels (device), and into the fused epilogues (convolution bias + activation) of both.
 * The op lists in include/cortado/ops/{unary,binary,activation}.def name these functors; the
 * CPU and CUDA dispatch tables are expansions of those lists, so an op added to a list and
 * given a functor here has its CPU kernel, its CUDA kernel and its gradient kernel.
 *
 * A functor is a template on the compute type C (float for f32/f16/bf16, double for f64, the
 * integer type itself for integer dtypes, uint8_t for bool):
 *   C operator()(C x) const         the op (binary ops: operator()(C a, C b))
 *   C grad(C g, C x) const          activations: g * f'(x), the ACTIVATION_GRAD binary ops
 *   static F make(double p0, double p1)   host side: the op's parameters (clamp bounds...)
 *
 * Math primitives: sop::exp / tanh / sigmoid on float are the branch-free vmath.h versions in
 * the CPU library (GCC vectorizes loops that call them), the CUDA intrinsics' libm twins
 * (expf, tanhf, erfcf...) under nvcc, and libm in double everywhere.
 *
 * GELU has one formula, 0.5 x erfc(-x / sqrt 2), for the unary op, the conv epilogue and the
 * gradient: it equals 0.5 x (1 + erf(x / sqrt 2)) but keeps full relative accuracy for x < 0,
 * where 1 + erf(x / sqrt 2) cancels. float32 against a long double reference, x in [-10, 10]: the
 * erfc form's worst relative error is 5e-6 (at x ~ -10, from rounding x / sqrt 2), the 1 + erf
 * form's is 4e-2 at x = -5 and 100% (it returns 0) below x ~ -5.9 (ActivationOpsTest checks the
 * fused convolution epilogue against it).
 */
#ifndef CORTADO_SHARED_SCALAR_OPS_H
#define CORTADO_SHARED_SCALAR_OPS_H

#include <math.h>
#include <stdint.h>

#include <cmath>
#include <limits>
#include <type_traits>

#include "cortado/conv.h"  // CT_ACTIVATION_* (ops/activation.def)
#include "shared.h"        // CT_HOST_DEVICE

#ifndef __CUDACC__
#include "vmath.h"  // exp_f32, tanh_f32, sigmoid_f32 (CPU library only)
#endif

namespace ct {
namespace sop {

// ------------------------------------------------------------------ math primitives
#ifdef __CUDACC__
CT_HOST_DEVICE float exp(float x) { return ::expf(x); }
CT_HOST_DEVICE float tanh(float x) { return ::tanhf(x); }
CT_HOST_DEVICE float sigmoid(float x) { return 1.0f / (1.0f + ::expf(-x)); }
#else
CT_HOST_DEVICE float exp(float x) { return exp_f32(x); }
CT_HOST_DEVICE float tanh(float x) { return tanh_f32(x); }
CT_HOST_DEVICE float sigmoid(float x) { return sigmoid_f32(x); }
#endif
CT_HOST_DEVICE double exp(double x) { return ::exp(x); }
CT_HOST_DEVICE double tanh(double x) { return ::tanh(x); }
CT_HOST_DEVICE double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }
CT_HOST_DEVICE float erfc(float x) { return ::erfcf(x); }
CT_HOST_DEVICE double erfc(double x) { return ::erfc(x); }
CT_HOST_DEVICE float log(float x) { return ::logf(x); }
CT_HOST_DEVICE double log(double x) { return ::log(x); }
CT_HOST_DEVICE float log1p(float x) { return ::log1pf(x); }
CT_HOST_DEVICE double log1p(double x) { return ::log1p(x); }
CT_HOST_DEVICE float sqrt(float x) { return ::sqrtf(x); }
CT_HOST_DEVICE double sqrt(double x) { return ::sqrt(x); }
CT_HOST_DEVICE float pow(float x, float y) { return ::powf(x, y); }
CT_HOST_DEVICE double pow(double x, double y) { return ::pow(x, y); }
CT_HOST_DEVICE float sin(float x) { return ::sinf(x); }
CT_HOST_DEVICE double sin(double x) { return ::sin(x); }
CT_HOST_DEVICE float cos(float x) { return ::cosf(x); }
CT_HOST_DEVICE double cos(double x) { return ::cos(x); }
CT_HOST_DEVICE float fabs(float x) { return ::fabsf(x); }
CT_HOST_DEVICE double fabs(double x) { return ::fabs(x); }

template <class C> using uint_of = std::make_unsigned_t<C>;

/* Functors without parameters get make() from here. */
template <class F> struct Plain {
  static F make(double, double) { return F{}; }
};

// ------------------------------------------------------------------ unary ops
template <class C> struct Identity : Plain<Identity<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return x; }
};
template <class C> struct Neg : Plain<Neg<C>> {
  CT_HOST_DEVICE C operator()(C x) const {
    if constexpr (std::is_integral_v<C>) return (C)(uint_of<C>)(uint_of<C>(0) - (uint_of<C>)x);  // wraps
    else return -x;
  }
};
template <class C> struct Abs : Plain<Abs<C>> {
  CT_HOST_DEVICE C operator()(C x) const {
    if constexpr (std::is_unsigned_v<C>) return x;
    else if constexpr (std::is_integral_v<C>) return x < C(0) ? (C)(uint_of<C>)(uint_of<C>(0) - (uint_of<C>)x) : x;
    else return fabs(x);
  }
};
template <class C> struct Exp : Plain<Exp<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return exp(x); }
};
template <class C> struct Log : Plain<Log<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return log(x); }
};
template <class C> struct Sqrt : Plain<Sqrt<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return sqrt(x); }
};
template <class C> struct Rsqrt : Plain<Rsqrt<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return C(1) / sqrt(x); }
};
template <class C> struct Tanh : Plain<Tanh<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return tanh(x); }
};
template <class C> struct Sigmoid : Plain<Sigmoid<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return sigmoid(x); }  // 1 / (1 + e^-x): no cancellation
};
template <class C> struct Reciprocal : Plain<Reciprocal<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return C(1) / x; }
};
template <class C> struct Sin : Plain<Sin<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return sin(x); }
};
template <class C> struct Cos : Plain<Cos<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return cos(x); }
};
template <class C> struct Not : Plain<Not<C>> {  // bool bytes: any non-zero byte is true
  CT_HOST_DEVICE C operator()(C x) const { return x == C(0) ? C(1) : C(0); }
};

/* max(x, 0); NaN stays NaN. Gradient: g where x > 0, else 0 (x may be relu's output: same
 * sign test; a NaN x gives 0, and g is passed through, not multiplied, so g = inf stays inf). */
template <class C> struct Relu : Plain<Relu<C>> {
  CT_HOST_DEVICE C operator()(C x) const {
    if constexpr (std::is_unsigned_v<C>) return x;
    else return x < C(0) ? C(0) : x;
  }
  CT_HOST_DEVICE C grad(C g, C x) const { return x > C(0) ? g : C(0); }
};

/* GELU, exact: x Phi(x) = 0.5 x erfc(-x / sqrt 2) (erfc: no cancellation for x < 0).
 * f'(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi). ~40 FLOPs (erfc). */
template <class C> struct GeluErf : Plain<GeluErf<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return C(0.5) * x * erfc(-x * C(0.70710678118654752440)); }
  CT_HOST_DEVICE C grad(C g, C x) const {
    const C cdf = C(0.5) * erfc(-x * C(0.70710678118654752440));
    const C pdf = exp(C(-0.5) * x * x) * C(0.39894228040143267794);
    return g * (cdf + x * pdf);
  }
};

/* GELU, tanh approximation: 0.5 x (1 + tanh u) == x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
 * (the sigmoid form has no cancellation). */
template <class C> struct GeluTanh : Plain<GeluTanh<C>> {
  CT_HOST_DEVICE C operator()(C x) const {
    const C u = C(0.79788456080286535588) * (x + C(0.044715) * x * x * x);
    return x * sigmoid(C(2) * u);
  }
  CT_HOST_DEVICE C grad(C g, C x) const {
    const C k0 = C(0.79788456080286535588), k1 = C(0.044715);
    const C t = tanh(k0 * (x + k1 * x * x * x));
    return g * (C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * k0 * (C(1) + C(3) * k1 * x * x));
  }
};

/* SiLU: x sigmoid(x); f'(x) = s (1 + x (1 - s)), s = sigmoid(x). */
template <class C> struct Silu : Plain<Silu<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return x * sigmoid(x); }
  CT_HOST_DEVICE C grad(C g, C x) const {
    const C s = sigmoid(x);
    return g * s * (C(1) + x * (C(1) - s));
  }
};

/* Hardswish (MobileNetV3, as torch.nn.Hardswish): x relu6(x + 3) / 6.
 * f'(x) = 0 for x < -3, x / 3 + 1/2 for -3 <= x <= 3, 1 for x > 3 (PyTorch's choice at the kinks).
 * NaN propagates through the comparisons' false branches. */
template <class C> struct Hardswish : Plain<Hardswish<C>> {
  CT_HOST_DEVICE C operator()(C x) const {
    C r = x + C(3);
    r = r < C(0) ? C(0) : r;
    r = r > C(6) ? C(6) : r;
    return x * r * C(1.0 / 6.0);
  }
  CT_HOST_DEVICE C grad(C g, C x) const {
    return x < C(-3) ? C(0) : (x <= C(3) ? g * (x * C(1.0 / 3.0) + C(0.5)) : g);
  }
};

/* Hardsigmoid: relu6(x + 3) / 6; f'(x) = 1/6 for -3 < x < 3, else 0 (PyTorch's choice at the kinks). */
template <class C> struct Hardsigmoid : Plain<Hardsigmoid<C>> {
  CT_HOST_DEVICE C operator()(C x) const {
    C r = x + C(3);
    r = r < C(0) ? C(0) : r;
    r = r > C(6) ? C(6) : r;
    return r * C(1.0 / 6.0);
  }
  CT_HOST_DEVICE C grad(C g, C x) const { return (x > C(-3) && x < C(3)) ? g * C(1.0 / 6.0) : C(0); }
};

/* Softplus: log(1 + e^x), with PyTorch's defaults (beta 1, threshold 20: above 20 it returns x,
 * which log(1 + e^x) equals to 2e-9); f'(x) = sigmoid(x), and 1 above 20. log1p keeps the result
 * exact as x -> -inf (e^x, not 0). ~20 FLOPs. */
template <class C> struct Softplus : Plain<Softplus<C>> {
  CT_HOST_DEVICE C operator()(C x) const { return x > C(20) ? x : log1p(exp(x)); }
  CT_HOST_DEVICE C grad(C g, C x) const { return x > C(20) ? g : g * sigmoid(x); }
};

/* Mish: x tanh(softplus(x)). With n = e^x, tanh(log(1 + n)) = n (n + 2) / (n (n + 2) + 2): one exp,
 * no cancellation for x -> -inf (t ~ n), and 1 - t = 2 / (n (n + 2) + 2) exactly, so
 * f'(x) = t + x (1 - t^2) sigmoid(x) = t + x (1 - t)(1 + t) n / (1 + n) loses nothing either.
 * For x > 20, t == 1 in float and double, and n (n + 2) would overflow float from x ~ 44.
 * ~25 FLOPs. */
template <class C> struct Mish : Plain<Mish<C>> {
  CT_HOST_DEVICE C operator()(C x) const {
    const C n = exp(x < C(20) ? x : C(20));
    const C q = n * (n + C(2));
    return x * (q / (q + C(2)));
  }
  CT_HOST_DEVICE C grad(C g, C x) const {
    const C n = exp(x < C(20) ? x : C(20));
    const C q = n * (n + C(2));
    const C t = q / (q + C(2)), one_minus_t = C(2) / (q + C(2));
    return x < C(20) ? g * (t + x * one_minus_t * (C(1) + t) * (n / (C(1) + n))) : g;
  }
};

/* min(max(x, lo), hi); NaN stays NaN. Integer dtypes: bounds [ceil p0, floor p1] clipped to
 * the type's range, NaN = unbounded. */
template <class C> struct Clamp {
  C lo, hi;
  CT_HOST_DEVICE C operator()(C x) const {
    const C r = x < lo ? lo : x;
    return r > hi ? hi : r;
  }
  static C int_bound(double p, bool lower) {
    const C mn = std::numeric_limits<C>::min(), mx = std::numeric_limits<C>::max();
    if (p != p) return lower ? mn : mx;
    p = lower ? std::ceil(p) : std::floor(p);
    if (p <= (double)mn) return mn;
    if (p >= (double)mx) return mx;
    return (C)p;
  }
  static Clamp make(double p0, double p1) {
    if constexpr (std::is_integral_v<C>) return Clamp{int_bound(p0, true), int_bound(p1, false)};
    else return Clamp{(C)p0, (C)p1};
  }
};

/* x ^ p (p == 2: x * x, exact and fast). */
template <class C> struct PowScalar {
  C p;
  CT_HOST_DEVICE C operator()(C x) const { return p == C(2) ? x * x : pow(x, p); }
  static PowScalar make(double p0, double) { return PowScalar{(C)p0}; }
};

/* x * scale + shift. Integers: wrap-around with integral parameters; otherwise computed in
 * double and truncated toward zero. */
template <class C> struct Affine {
  C scale, shift;
  double rscale, rshift;
  bool real;
  CT_HOST_DEVICE C operator()(C x) const {
    if constexpr (std::is_integral_v<C>) {
      if (real) return (C)(int64_t)((double)x * rscale + rshift);
      return (C)(uint_of<C>)((uint_of<C>)x * (uint_of<C>)scale + (uint_of<C>)shift);
    } else {
      return x * scale + shift;
    }
  }
  static Affine make(double p0, double p1) {
    if constexpr (std::is_integral_v<C>) {
      const bool real = !(p0 == std::trunc(p0) && p1 == std::trunc(p1) && std::fabs(p0) < 9.2e18 &&
                          std::fabs(p1) < 9.2e18);
      return real ? Affine{C(0), C(0), p0, p1, true} : Affine{(C)(int64_t)p0, (C)(int64_t)p1, p0, p1, false};
    } else {
      return Affine{(C)p0, (C)p1, p0, p1, false};
    }
  }
};

// ------------------------------------------------------------------ binary ops
/* Arithmetic: integers wrap (two's complement); DIV truncates, x / 0 == 0 and INT_MIN / -1
 * wraps (no trap); POW by repeated squaring (negative exponents: 1 for base 1, +-1 for base -1,
 * else 0); MAX/MIN propagate NaN (torch.maximum). */
template <class C> struct Add {
  CT_HOST_DEVICE C operator()(C a, C b) const {
    if constexpr (std::is_integral_v<C>) return (C)(uint_of<C>)((uint_of<C>)a + (uint_of<C>)b);
    else return a + b;
  }
};
template <class C> struct Sub {
  CT_HOST_DEVICE C operator()(C a, C b) const {
    if constexpr (std::is_integral_v<C>) return (C)(uint_of<C>)((uint_of<C>)a - (uint_of<C>)b);
    else return a - b;
  }
};
template <class C> struct Mul {
  CT_HOST_DEVICE C operator()(C a, C b) const {
    if constexpr (std::is_integral_v<C>) return (C)(uint_of<C>)((uint_of<C>)a * (uint_of<C>)b);
    else return a * b;
  }
};
template <class C> struct Div {
  CT_HOST_DEVICE C operator()(C a, C b) const {
    if constexpr (std::is_integral_v<C>) {
      if (b == C(0)) return C(0);
      if constexpr (std::is_signed_v<C>)
        if (b == C(-1)) return (C)(uint_of<C>)(uint_of<C>(0) - (uint_of<C>)a);  // INT_MIN / -1 wraps
      return (C)(a / b);
    } else {
      return a / b;
    }
  }
};
template <class C> struct Pow {
  CT_HOST_DEVICE C operator()(C a, C b) const {
    if constexpr (std::is_integral_v<C>) {
      if constexpr (std::is_signed_v<C>) {
        if (b < C(0)) {  // truncated 1 / a^|b|
          if (a == C(1)) return C(1);
          if (a == C(-1)) return (b & C(1)) ? C(-1) : C(1);
          return C(0);  // includes a == 0 (no trap)
        }
      }
      uint_of<C> r = 1, base = (uint_of<C>)a, e = (uint_of<C>)b;
      for (; e; e >>= 1) {
        if (e & 1u) r = (uint_of<C>)(r * base);
        base = (uint_of<C>)(base * base);
      }
      return (C)r;
    } else {
      return pow(a, b);
    }
  }
};
template <class C> struct Max {
  CT_HOST_DEVICE C operator()(C a, C b) const {
    if constexpr (std::is_integral_v<C>) return a > b ? a : b;
    else return a != a ? a : (b != b ? b : (a > b ? a : b));
  }
};
template <class C> struct Min {
  CT_HOST_DEVICE C operator()(C a, C b) const {
    if constexpr (std::is_integral_v<C>) return a < b ? a : b;
    else return a != a ? a : (b != b ? b : (a < b ? a : b));
  }
};
/* Comparisons return bool (stored as a CT_BOOL byte); logical ops treat non-zero as true. */
template <class C> struct Eq { CT_HOST_DEVICE bool operator()(C a, C b) const { return a == b; } };
template <class C> struct Ne { CT_HOST_DEVICE bool operator()(C a, C b) const { return a != b; } };
template <class C> struct Lt { CT_HOST_DEVICE bool operator()(C a, C b) const { return a < b; } };
template <class C> struct Le { CT_HOST_DEVICE bool operator()(C a, C b) const { return a <= b; } };
template <class C> struct Gt { CT_HOST_DEVICE bool operator()(C a, C b) const { return a > b; } };
template <class C> struct Ge { CT_HOST_DEVICE bool operator()(C a, C b) const { return a >= b; } };
template <class C> struct And { CT_HOST_DEVICE bool operator()(C a, C b) const { return (a != C(0)) & (b != C(0)); } };
template <class C> struct Or { CT_HOST_DEVICE bool operator()(C a, C b) const { return (a != C(0)) | (b != C(0)); } };
template <class C> struct Xor { CT_HOST_DEVICE bool operator()(C a, C b) const { return (a != C(0)) ^ (b != C(0)); } };

/* An activation's gradient as a binary functor: (g, x) -> g * f'(x). */
template <template <class> class F, class C> struct GradOf {
  CT_HOST_DEVICE C operator()(C g, C x) const { return F<C>{}.grad(g, x); }
};

// ------------------------------------------------------------------ lists as tables
/* Dtype domains of unary ops and kinds of binary ops (the DOMAIN / KIND columns). */
enum UnaryDomain { FLOAT, NUMERIC, BOOL };
enum BinaryKind { ARITHMETIC, COMPARISON, LOGICAL, ACTIVATION_GRAD };

constexpr UnaryDomain kUnaryDomain[] = {
#define CT_UNARY_OP(ident, name, domain, functor, grad) domain,
#include "cortado/ops/unary.def"
#undef CT_UNARY_OP
};
constexpr BinaryKind kBinaryKind[] = {
#define CT_BINARY_OP(ident, name, kind, functor) kind,
#include "cortado/ops/binary.def"
#undef CT_BINARY_OP
};
/* Upper-case names for error messages, as in the C constants. */
constexpr const char* kUnaryName[] = {
#define CT_UNARY_OP(ident, name, domain, functor, grad) #ident,
#include "cortado/ops/unary.def"
#undef CT_UNARY_OP
};
constexpr const char* kBinaryName[] = {
#define CT_BINARY_OP(ident, name, kind, functor) #ident,
#include "cortado/ops/binary.def"
#undef CT_BINARY_OP
};

/* Fused epilogue activation (CT_ACTIVATION_*, ops/activation.def): the unary op's formula. */
template <class C> CT_HOST_DEVICE C activation(int act, C v) {
  switch (act) {
#define CT_ACTIVATION(ident, name, functor) \
  case CT_ACTIVATION_##ident: return functor<C>{}(v);
#include "cortado/ops/activation.def"
#undef CT_ACTIVATION
    default: return v;
  }
}

}  // namespace sop
}  // namespace ct

#endif
