/*
 * Elementwise family: unary maps, binary maps (arithmetic, comparisons, logic), where,
 * strided copy with dtype conversion, fill, int4 pack/unpack.
 *
 * Algorithm: ct::for_each_row walks the output's outer dimensions (odometer) and calls a row
 * kernel on the innermost dimension. Row kernels special-case the stride patterns that
 * matter: all operands contiguous (stride 1), and one input broadcast along the row
 * (stride 0, a scalar held in a register); anything else is a plain strided loop. Contiguous
 * float32 rows of the hot ops run in an AVX-512 build of the same loop when the CPU has it.
 * f16/bf16 are computed in float32 and rounded to nearest even on store; integer arithmetic
 * wraps (two's complement), integer division truncates and x / 0 == 0.
 *
 * Cost: one op (a few FLOPs; ~15-40 for exp/tanh/erf-based ones) per element; bytes moved
 * (n_inputs + 1) * n * sizeof(dtype): memory bound except for the transcendental ops.
 */
#include <cstdlib>
#include <limits>

#include "cortado/elementwise.h"
#include "internal.h"
#include "vmath.h"

namespace ct {
namespace {

template <class C> using uint_of = std::make_unsigned_t<C>;

// ------------------------------------------------------------------ binary op functors
// f(a, b) in the compute type C (float for f16/bf16); comparisons return bool.
struct Add { template <class C> CT_INLINE C operator()(C a, C b) const {
  if constexpr (std::is_integral_v<C>) return (C)((uint_of<C>)a + (uint_of<C>)b); else return a + b; } };
struct Sub { template <class C> CT_INLINE C operator()(C a, C b) const {
  if constexpr (std::is_integral_v<C>) return (C)((uint_of<C>)a - (uint_of<C>)b); else return a - b; } };
struct Mul { template <class C> CT_INLINE C operator()(C a, C b) const {
  if constexpr (std::is_integral_v<C>) return (C)((uint_of<C>)a * (uint_of<C>)b); else return a * b; } };
struct Div { template <class C> CT_INLINE C operator()(C a, C b) const {
  if constexpr (std::is_integral_v<C>) {
    if (b == 0) return 0;
    if constexpr (std::is_signed_v<C>) if (b == -1) return (C)(0 - (uint_of<C>)a);  // INT_MIN / -1 wraps
    return (C)(a / b);
  } else {
    return a / b;
  } } };
struct Pow { template <class C> CT_INLINE C operator()(C a, C b) const {
  if constexpr (std::is_integral_v<C>) {
    if (b < 0) {  // truncated 1 / a^|b|
      if (a == 1) return 1;
      if constexpr (std::is_signed_v<C>) if (a == -1) return (b & 1) ? (C)-1 : (C)1;
      return 0;  // includes a == 0 (no trap)
    }
    uint_of<C> r = 1, base = (uint_of<C>)a;
    for (C e = b; e; e >>= 1) { if (e & 1) r = (uint_of<C>)(r * base); base = (uint_of<C>)(base * base); }
    return (C)r;
  } else {
    return std::pow(a, b);
  } } };
struct Max { template <class C> CT_INLINE C operator()(C a, C b) const {
  if constexpr (std::is_integral_v<C>) return a > b ? a : b;
  else return a != a ? a : (b != b ? b : (a > b ? a : b)); } };
struct Min { template <class C> CT_INLINE C operator()(C a, C b) const {
  if constexpr (std::is_integral_v<C>) return a < b ? a : b;
  else return a != a ? a : (b != b ? b : (a < b ? a : b)); } };
struct Eq { template <class C> CT_INLINE bool operator()(C a, C b) const { return a == b; } };
struct Ne { template <class C> CT_INLINE bool operator()(C a, C b) const { return a != b; } };
struct Lt { template <class C> CT_INLINE bool operator()(C a, C b) const { return a < b; } };
struct Le { template <class C> CT_INLINE bool operator()(C a, C b) const { return a <= b; } };
struct Gt { template <class C> CT_INLINE bool operator()(C a, C b) const { return a > b; } };
struct Ge { template <class C> CT_INLINE bool operator()(C a, C b) const { return a >= b; } };
struct And { template <class C> CT_INLINE bool operator()(C a, C b) const { return (a != 0) & (b != 0); } };
struct Or { template <class C> CT_INLINE bool operator()(C a, C b) const { return (a != 0) | (b != 0); } };
struct Xor { template <class C> CT_INLINE bool operator()(C a, C b) const { return (a != 0) ^ (b != 0); } };
// Activation gradients g * f'(x) (a = g, b = x); floating dtypes only (integers never reach them).
struct GeluGrad { template <class C> CT_INLINE C operator()(C g, C x) const {
  if constexpr (std::is_integral_v<C>) return 0;
  else {
    const C cdf = C(0.5) * std::erfc(-x * C(0.70710678118654752440));
    const C pdf = std::exp(C(-0.5) * x * x) * C(0.39894228040143267794);
    return g * (cdf + x * pdf);
  } } };
struct GeluTanhGrad { template <class C> CT_INLINE C operator()(C g, C x) const {
  if constexpr (std::is_integral_v<C>) return 0;
  else {
    const C k0 = C(0.79788456080286535588), k1 = C(0.044715);
    const C t = std::tanh(k0 * (x + k1 * x * x * x));
    return g * (C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * k0 * (C(1) + C(3) * k1 * x * x));
  } } };
struct SiluGrad { template <class C> CT_INLINE C operator()(C g, C x) const {
  if constexpr (std::is_integral_v<C>) return 0;
  else {
    const C s = C(1) / (C(1) + std::exp(-x));
    return g * s * (C(1) + x * (C(1) - s));
  } } };
// One pass instead of three (compare to a bool mask, widen it, multiply): 12 bytes per element.
struct ReluGrad { template <class C> CT_INLINE C operator()(C g, C x) const { return x > C(0) ? g : C(0); } };

// ------------------------------------------------------------------ generic row loops
/* Reference loop: any strides. */
template <class TO, class T, class Op>
CT_INLINE void binary_strided(int64_t n, TO* o, const T* a, const T* b, int64_t so, int64_t sa,
                              int64_t sb, Op op) {
  for (int64_t i = 0; i < n; ++i) store<TO>(o + i * so, (compute_t<TO>)op(load(a + i * sa), load(b + i * sb)));
}

/* The fast loop bodies, instantiated once for the baseline and once for AVX-512. Stride
 * patterns: (1,1,1) contiguous; (1,1,0) b broadcast; (1,0,1) a broadcast. */
#define CT_BINARY_FAST_BODY                                                              \
  if (sa == 1 && sb == 1) {                                                              \
    for (int64_t i = 0; i < n; ++i) store<TO>(o + i, (compute_t<TO>)op(load(a + i), load(b + i))); \
  } else if (sa == 1) {                                                                  \
    const auto y = load(b);                                                              \
    for (int64_t i = 0; i < n; ++i) store<TO>(o + i, (compute_t<TO>)op(load(a + i), y)); \
  } else {                                                                               \
    const auto x = load(a);                                                              \
    for (int64_t i = 0; i < n; ++i) store<TO>(o + i, (compute_t<TO>)op(x, load(b + i))); \
  }

template <class TO, class T, class Op>
void binary_fast(int64_t n, TO* o, const T* a, const T* b, int64_t sa, int64_t sb, Op op) {
  CT_BINARY_FAST_BODY
}
template <class TO, class T, class Op>
CT_AVX512 void binary_fast_avx512(int64_t n, TO* o, const T* a, const T* b, int64_t sa, int64_t sb, Op op) {
  CT_BINARY_FAST_BODY
}

template <class TO, class T, class Op>
void binary_row(int64_t n, char* const* p, const int64_t* s) {
  TO* o = (TO*)p[0];
  const T* a = (const T*)p[1];
  const T* b = (const T*)p[2];
  const bool fast = s[0] == 1 && ((s[1] == 1 && (s[2] == 1 || s[2] == 0)) || (s[1] == 0 && s[2] == 1));
  if (!fast) return binary_strided<TO, T>(n, o, a, b, s[0], s[1], s[2], Op{});
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (n >= 64 && use_avx512()) return binary_fast_avx512<TO, T>(n, o, a, b, s[1], s[2], Op{});
  }
  binary_fast<TO, T>(n, o, a, b, s[1], s[2], Op{});
}

template <class T, class Op, bool Cmp>
void run_binary(int ndim, const int64_t* shape, int64_t numel, void* out, const int64_t* os,
                const void* a, const int64_t* as, const void* b, const int64_t* bs) {
  using TO = std::conditional_t<Cmp, uint8_t, T>;
  const int64_t* st[3] = {os, as, bs};
  char* base[3] = {(char*)out, (char*)a, (char*)b};
  const int64_t es[3] = {(int64_t)sizeof(TO), (int64_t)sizeof(T), (int64_t)sizeof(T)};
  for_each_row<3>(ndim, shape, st, base, es, numel, binary_row<TO, T, Op>);
}

// ------------------------------------------------------------------ unary op functors
// State p0/p1 converted once; operator() in the compute type C.
template <class C> struct UNeg { CT_INLINE C operator()(C x) const {
  if constexpr (std::is_integral_v<C>) return (C)(0 - (uint_of<C>)x); else return -x; } };
template <class C> struct UAbs { CT_INLINE C operator()(C x) const {
  if constexpr (std::is_unsigned_v<C>) return x;
  else if constexpr (std::is_integral_v<C>) return x < 0 ? (C)(0 - (uint_of<C>)x) : x;
  else return std::fabs(x); } };
template <class C> struct URelu { CT_INLINE C operator()(C x) const { return x < 0 ? (C)0 : x; } };  // NaN stays
template <class C> struct UExp { CT_INLINE C operator()(C x) const {
  if constexpr (std::is_same_v<C, float>) return exp_f32(x); else return std::exp(x); } };
template <class C> struct ULog { CT_INLINE C operator()(C x) const { return std::log(x); } };
template <class C> struct USqrt { CT_INLINE C operator()(C x) const { return std::sqrt(x); } };
template <class C> struct URsqrt { CT_INLINE C operator()(C x) const { return (C)1 / std::sqrt(x); } };
template <class C> struct UTanh { CT_INLINE C operator()(C x) const {
  if constexpr (std::is_same_v<C, float>) return tanh_f32(x); else return std::tanh(x); } };
template <class C> struct USigmoid { CT_INLINE C operator()(C x) const {
  if constexpr (std::is_same_v<C, float>) return sigmoid_f32(x); else return 1.0 / (1.0 + std::exp(-x)); } };
/* 0.5 x (1 + erf(x/sqrt2)) == 0.5 x erfc(-x/sqrt2): erfc keeps full relative accuracy for
 * negative x, where 1 + erf cancels. */
template <class C> struct UGeluErf { CT_INLINE C operator()(C x) const {
  return (C)0.5 * x * std::erfc(-x * (C)0.70710678118654752440); } };
/* 0.5 x (1 + tanh(u)) == x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): no cancellation. */
template <class C> struct UGeluTanh { CT_INLINE C operator()(C x) const {
  C u = (C)0.79788456080286535588 * (x + (C)0.044715 * x * x * x);
  if constexpr (std::is_same_v<C, float>) return x * sigmoid_f32(2.0f * u);
  else return x / (1.0 + std::exp(-2.0 * u)); } };
template <class C> struct USilu { CT_INLINE C operator()(C x) const {
  if constexpr (std::is_same_v<C, float>) return x * sigmoid_f32(x); else return x / (1.0 + std::exp(-x)); } };
template <class C> struct UClamp {
  C lo, hi;
  CT_INLINE C operator()(C x) const { C r = x < lo ? lo : x; return r > hi ? hi : r; } };  // NaN stays NaN
template <class C> struct UNot { CT_INLINE C operator()(C x) const { return x == 0 ? 1 : 0; } };
template <class C> struct UPow {
  C p;
  CT_INLINE C operator()(C x) const { return p == (C)2 ? x * x : std::pow(x, p); } };
template <class C> struct UAffine {
  C scale, shift;
  CT_INLINE C operator()(C x) const {
    if constexpr (std::is_integral_v<C>) return (C)((uint_of<C>)x * (uint_of<C>)scale + (uint_of<C>)shift);
    else return x * scale + shift; } };
/* Integer affine with non-integral parameters: computed in double, truncated toward zero. */
template <class C> struct UAffineReal {
  double scale, shift;
  CT_INLINE C operator()(C x) const { return (C)(int64_t)((double)x * scale + shift); } };
template <class C> struct URecip { CT_INLINE C operator()(C x) const { return (C)1 / x; } };
template <class C> struct USin { CT_INLINE C operator()(C x) const { return std::sin(x); } };
template <class C> struct UCos { CT_INLINE C operator()(C x) const { return std::cos(x); } };

#define CT_UNARY_FAST_BODY                                                               \
  if (sx == 1) { for (int64_t i = 0; i < n; ++i) store<T>(o + i, op(load(x + i))); }     \
  else { const T y = *x; const auto v = op(load(&y)); for (int64_t i = 0; i < n; ++i) store<T>(o + i, v); }

template <class T, class Op> void unary_fast(int64_t n, T* o, const T* x, int64_t sx, Op op) { CT_UNARY_FAST_BODY }
template <class T, class Op> CT_AVX512 void unary_fast_avx512(int64_t n, T* o, const T* x, int64_t sx, Op op) { CT_UNARY_FAST_BODY }

template <class T, class Op> void run_unary(int ndim, const int64_t* shape, int64_t numel, void* out,
                                           const int64_t* os, const void* x, const int64_t* xs, Op op) {
  const int64_t* st[2] = {os, xs};
  char* base[2] = {(char*)out, (char*)x};
  const int64_t es[2] = {(int64_t)sizeof(T), (int64_t)sizeof(T)};
  for_each_row<2>(ndim, shape, st, base, es, numel, [op](int64_t n, char* const* p, const int64_t* s) {
    T* o = (T*)p[0];
    const T* x = (const T*)p[1];
    if (s[0] == 1 && (s[1] == 1 || s[1] == 0)) {
      if constexpr (std::is_same_v<T, float>)
        if (n >= 64 && use_avx512()) return unary_fast_avx512<T>(n, o, x, s[1], op);
      return unary_fast<T>(n, o, x, s[1], op);
    }
    for (int64_t i = 0; i < n; ++i) store<T>(o + i * s[0], op(load(x + i * s[1])));  // reference loop
  });
}

/* Integer clamp bounds: [ceil(p0), floor(p1)] clipped to T's range; NaN means unbounded. */
template <class C> C int_bound(double p, bool lower) {
  const double mn = (double)std::numeric_limits<C>::min(), mx = (double)std::numeric_limits<C>::max();
  if (p != p) return lower ? std::numeric_limits<C>::min() : std::numeric_limits<C>::max();
  p = lower ? std::ceil(p) : std::floor(p);
  if (p <= mn) return std::numeric_limits<C>::min();
  if (p >= mx) return std::numeric_limits<C>::max();
  return (C)p;
}

template <class T>
int unary_typed(int op, int ndim, const int64_t* shape, int64_t numel, void* out, const int64_t* os,
                const void* x, const int64_t* xs, double p0, double p1) {
  using C = compute_t<T>;
  auto go = [&](auto f) { run_unary<T>(ndim, shape, numel, out, os, x, xs, f); return CT_OK; };
  if constexpr (is_float_v<T>) {
    switch (op) {
      case CT_UNARY_NEG: return go(UNeg<C>{});
      case CT_UNARY_ABS: return go(UAbs<C>{});
      case CT_UNARY_EXP: return go(UExp<C>{});
      case CT_UNARY_LOG: return go(ULog<C>{});
      case CT_UNARY_SQRT: return go(USqrt<C>{});
      case CT_UNARY_RSQRT: return go(URsqrt<C>{});
      case CT_UNARY_TANH: return go(UTanh<C>{});
      case CT_UNARY_SIGMOID: return go(USigmoid<C>{});
      case CT_UNARY_RELU: return go(URelu<C>{});
      case CT_UNARY_GELU_ERF: return go(UGeluErf<C>{});
      case CT_UNARY_GELU_TANH: return go(UGeluTanh<C>{});
      case CT_UNARY_SILU: return go(USilu<C>{});
      case CT_UNARY_CLAMP: return go(UClamp<C>{(C)p0, (C)p1});
      case CT_UNARY_POW_SCALAR: return go(UPow<C>{(C)p0});
      case CT_UNARY_AFFINE: return go(UAffine<C>{(C)p0, (C)p1});
      case CT_UNARY_RECIPROCAL: return go(URecip<C>{});
      case CT_UNARY_SIN: return go(USin<C>{});
      case CT_UNARY_COS: return go(UCos<C>{});
      default: return CT_ERR_UNSUPPORTED;
    }
  } else {
    switch (op) {
      case CT_UNARY_NEG: return go(UNeg<C>{});
      case CT_UNARY_ABS: return go(UAbs<C>{});
      case CT_UNARY_RELU: return go(URelu<C>{});
      case CT_UNARY_CLAMP: return go(UClamp<C>{int_bound<C>(p0, true), int_bound<C>(p1, false)});
      case CT_UNARY_AFFINE:
        if (p0 == std::trunc(p0) && p1 == std::trunc(p1) && std::fabs(p0) < 9.2e18 && std::fabs(p1) < 9.2e18)
          return go(UAffine<C>{(C)(int64_t)p0, (C)(int64_t)p1});
        return go(UAffineReal<C>{p0, p1});
      default: return CT_ERR_UNSUPPORTED;
    }
  }
}

// ------------------------------------------------------------------ conversions (copy/fill)
struct boolean { uint8_t v; };  // CT_BOOL as a distinct type for conversions

template <class D, class S> CT_INLINE D convert(S s) {
  if constexpr (std::is_same_v<S, boolean>) {
    return convert<D>((uint8_t)(s.v != 0));
  } else if constexpr (std::is_same_v<S, f16> || std::is_same_v<S, bf16>) {
    return convert<D>(load(&s));
  } else if constexpr (std::is_same_v<D, boolean>) {
    return boolean{(uint8_t)(s != 0)};
  } else if constexpr (std::is_same_v<D, f16> || std::is_same_v<D, bf16>) {
    float f;
    if constexpr (std::is_same_v<S, float> || std::is_same_v<S, int8_t> || std::is_same_v<S, uint8_t>) f = (float)s;
    else f = f64_to_f32_odd((double)s);  // exact or round-to-odd: no double rounding
    D d;
    store<D>(&d, f);
    return d;
  } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<S>) {
    return (D)(int64_t)s;  // truncation toward zero; out of range: unspecified, no trap
  } else {
    return (D)s;
  }
}

template <class D, class S> void copy_row(int64_t n, char* const* p, const int64_t* s) {
  D* d = (D*)p[0];
  const S* x = (const S*)p[1];
  if constexpr (std::is_same_v<D, S>) {
    if (s[0] == 1 && s[1] == 1) { std::memcpy(d, x, (size_t)n * sizeof(D)); return; }
  }
  if (s[0] == 1 && s[1] == 1) { for (int64_t i = 0; i < n; ++i) d[i] = convert<D>(x[i]); return; }
  if (s[0] == 1 && s[1] == 0) { const D v = convert<D>(*x); for (int64_t i = 0; i < n; ++i) d[i] = v; return; }
  for (int64_t i = 0; i < n; ++i) d[i * s[0]] = convert<D>(x[i * s[1]]);  // reference loop
}

template <class F> bool dispatch_conv(int dtype, F&& f) {
  if (dtype == CT_BOOL) { f(boolean{}); return true; }
  return dispatch_dtype(dtype, f);
}

const char* unary_name(int op) {
  static const char* n[] = {"NEG", "ABS", "EXP", "LOG", "SQRT", "RSQRT", "TANH", "SIGMOID", "RELU", "GELU_ERF",
                            "GELU_TANH", "SILU", "CLAMP", "NOT", "POW_SCALAR", "AFFINE", "RECIPROCAL", "SIN", "COS"};
  return op >= 0 && op < CT_UNARY_COUNT ? n[op] : "unknown";
}
const char* binary_name(int op) {
  static const char* n[] = {"ADD", "SUB", "MUL", "DIV", "POW", "MAX", "MIN", "EQ",
                            "NE", "LT", "LE", "GT", "GE", "AND", "OR", "XOR",
                            "GELU_GRAD", "GELU_TANH_GRAD", "SILU_GRAD", "RELU_GRAD"};
  return op >= 0 && op < CT_BINARY_COUNT ? n[op] : "unknown";
}

bool numeric(int dtype) { return dtype >= CT_F32 && dtype <= CT_I64; }

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cpu_unary(int op, int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides,
                 const void* x, const int64_t* x_strides, double p0, double p1, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_unary";
  CT_TRY
  if (op < 0 || op >= CT_UNARY_COUNT) return fail(CT_ERR_INVALID_ARG, "%s: unknown op code %d", fn, op);
  const bool is_fp = dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16;
  const bool is_int = dtype == CT_I8 || dtype == CT_U8 || dtype == CT_I32 || dtype == CT_I64;
  const bool int_ok = op == CT_UNARY_NEG || op == CT_UNARY_ABS || op == CT_UNARY_RELU || op == CT_UNARY_CLAMP ||
                      op == CT_UNARY_AFFINE;
  const bool ok = op == CT_UNARY_NOT ? dtype == CT_BOOL : (is_fp || (is_int && int_ok));
  if (!ok)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %s is not defined for dtype %s (%d)", fn, unary_name(op),
                dtype_name(dtype), dtype);
  int64_t numel;
  int st;
  if ((st = check_shape(fn, ndim, shape, &numel)) || (st = check_strides(fn, "out_strides", ndim, out_strides)) ||
      (st = check_strides(fn, "x_strides", ndim, x_strides)))
    return st;
  if (numel == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out)) || (st = check_ptr(fn, "x", x))) return st;
  if (op == CT_UNARY_NOT) {
    run_unary<uint8_t>(ndim, shape, numel, out, out_strides, x, x_strides, UNot<uint8_t>{});
    return CT_OK;
  }
  int r = CT_OK;
  dispatch_dtype(dtype, [&](auto t) {
    r = unary_typed<decltype(t)>(op, ndim, shape, numel, out, out_strides, x, x_strides, p0, p1);
  });
  return r;
  CT_CATCH(fn)
}

int ct_cpu_binary(int op, int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides,
                  const void* a, const int64_t* a_strides, const void* b, const int64_t* b_strides, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_binary";
  CT_TRY
  if (op < 0 || op >= CT_BINARY_COUNT) return fail(CT_ERR_INVALID_ARG, "%s: unknown op code %d", fn, op);
  const bool cmp = op >= CT_BINARY_EQ && op <= CT_BINARY_GE;
  const bool logic = op >= CT_BINARY_AND && op <= CT_BINARY_XOR;
  const bool grad = op >= CT_BINARY_GELU_GRAD;
  const bool fp = dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16;
  const bool ok = logic ? dtype == CT_BOOL : grad ? fp : (numeric(dtype) || (cmp && dtype == CT_BOOL));
  if (!ok)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %s is not defined for dtype %s (%d)", fn, binary_name(op),
                dtype_name(dtype), dtype);
  int64_t numel;
  int st;
  if ((st = check_shape(fn, ndim, shape, &numel)) || (st = check_strides(fn, "out_strides", ndim, out_strides)) ||
      (st = check_strides(fn, "a_strides", ndim, a_strides)) || (st = check_strides(fn, "b_strides", ndim, b_strides)))
    return st;
  if (numel == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out)) || (st = check_ptr(fn, "a", a)) || (st = check_ptr(fn, "b", b))) return st;
  dispatch_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    auto go = [&](auto o, auto c) {
      run_binary<T, decltype(o), decltype(c)::value>(ndim, shape, numel, out, out_strides, a, a_strides, b,
                                                      b_strides);
    };
    using Y = std::true_type;
    using N = std::false_type;
    switch (op) {
      case CT_BINARY_ADD: go(Add{}, N{}); break;
      case CT_BINARY_SUB: go(Sub{}, N{}); break;
      case CT_BINARY_MUL: go(Mul{}, N{}); break;
      case CT_BINARY_DIV: go(Div{}, N{}); break;
      case CT_BINARY_POW: go(Pow{}, N{}); break;
      case CT_BINARY_MAX: go(Max{}, N{}); break;
      case CT_BINARY_MIN: go(Min{}, N{}); break;
      case CT_BINARY_EQ: go(Eq{}, Y{}); break;
      case CT_BINARY_NE: go(Ne{}, Y{}); break;
      case CT_BINARY_LT: go(Lt{}, Y{}); break;
      case CT_BINARY_LE: go(Le{}, Y{}); break;
      case CT_BINARY_GT: go(Gt{}, Y{}); break;
      case CT_BINARY_GE: go(Ge{}, Y{}); break;
      case CT_BINARY_GELU_GRAD: go(GeluGrad{}, N{}); break;
      case CT_BINARY_GELU_TANH_GRAD: go(GeluTanhGrad{}, N{}); break;
      case CT_BINARY_SILU_GRAD: go(SiluGrad{}, N{}); break;
      case CT_BINARY_RELU_GRAD: go(ReluGrad{}, N{}); break;
      default:
        if constexpr (std::is_same_v<T, uint8_t>) {
          if (op == CT_BINARY_AND) go(And{}, Y{});
          else if (op == CT_BINARY_OR) go(Or{}, Y{});
          else go(Xor{}, Y{});
        }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_where(int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides,
                 const uint8_t* cond, const int64_t* cond_strides, const void* a, const int64_t* a_strides,
                 const void* b, const int64_t* b_strides, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_where";
  CT_TRY
  const int64_t es = dtype_size(dtype);
  if (es == 0 || dtype == CT_I4) return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported", fn, dtype_name(dtype), dtype);
  int64_t numel;
  int st;
  if ((st = check_shape(fn, ndim, shape, &numel)) || (st = check_strides(fn, "out_strides", ndim, out_strides)) ||
      (st = check_strides(fn, "cond_strides", ndim, cond_strides)) ||
      (st = check_strides(fn, "a_strides", ndim, a_strides)) || (st = check_strides(fn, "b_strides", ndim, b_strides)))
    return st;
  if (numel == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out)) || (st = check_ptr(fn, "cond", cond)) || (st = check_ptr(fn, "a", a)) ||
      (st = check_ptr(fn, "b", b)))
    return st;
  auto go = [&](auto t) {
    using T = decltype(t);  // same-size unsigned integer: where only moves bits
    const int64_t* sts[4] = {out_strides, cond_strides, a_strides, b_strides};
    char* base[4] = {(char*)out, (char*)cond, (char*)a, (char*)b};
    const int64_t esz[4] = {es, 1, es, es};
    for_each_row<4>(ndim, shape, sts, base, esz, numel, [](int64_t n, char* const* p, const int64_t* s) {
      T* o = (T*)p[0];
      const uint8_t* c = (const uint8_t*)p[1];
      const T* x = (const T*)p[2];
      const T* y = (const T*)p[3];
      if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {
        for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? x[i] : y[i];
      } else {
        for (int64_t i = 0; i < n; ++i) o[i * s[0]] = c[i * s[1]] ? x[i * s[2]] : y[i * s[3]];
      }
    });
  };
  switch (es) {
    case 1: go(uint8_t{}); break;
    case 2: go(uint16_t{}); break;
    case 4: go(uint32_t{}); break;
    default: go(uint64_t{}); break;
  }
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_copy(int dst_dtype, int src_dtype, int ndim, const int64_t* shape, void* dst, const int64_t* dst_strides,
                const void* src, const int64_t* src_strides, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_copy";
  CT_TRY
  if (dst_dtype < CT_F32 || dst_dtype > CT_BOOL)
    return fail(CT_ERR_UNSUPPORTED, "%s: dst_dtype %s (%d) is not supported", fn, dtype_name(dst_dtype), dst_dtype);
  if (src_dtype < CT_F32 || src_dtype > CT_BOOL)
    return fail(CT_ERR_UNSUPPORTED, "%s: src_dtype %s (%d) is not supported", fn, dtype_name(src_dtype), src_dtype);
  int64_t numel;
  int st;
  if ((st = check_shape(fn, ndim, shape, &numel)) || (st = check_strides(fn, "dst_strides", ndim, dst_strides)) ||
      (st = check_strides(fn, "src_strides", ndim, src_strides)))
    return st;
  if (numel == 0) return CT_OK;
  if ((st = check_ptr(fn, "dst", dst)) || (st = check_ptr(fn, "src", src))) return st;
  const int64_t* sts[2] = {dst_strides, src_strides};
  char* base[2] = {(char*)dst, (char*)src};
  const int64_t es[2] = {dtype_size(dst_dtype), dtype_size(src_dtype)};
  if (dst_dtype == src_dtype || (dtype_size(dst_dtype) == 1 && dst_dtype != CT_BOOL && src_dtype != CT_BOOL &&
                                 dtype_size(src_dtype) == 1)) {
    // Same representation (or I8 <-> U8, a bit cast): move bits by element size.
    switch (es[0]) {
      case 1: for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<uint8_t, uint8_t>); break;
      case 2: for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<uint16_t, uint16_t>); break;
      case 4: for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<uint32_t, uint32_t>); break;
      default: for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<uint64_t, uint64_t>); break;
    }
    return CT_OK;
  }
  dispatch_conv(dst_dtype, [&](auto d) {
    dispatch_conv(src_dtype, [&](auto s) {
      for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<decltype(d), decltype(s)>);
    });
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_fill(int dtype, int64_t n, void* out, double value, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_fill";
  CT_TRY
  if (dtype_size(dtype) == 0) return fail(CT_ERR_UNSUPPORTED, "%s: unknown dtype code %d", fn, dtype);
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n=%lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "out", out))) return st;
  if (dtype == CT_I4) {  // n nibbles; an odd tail keeps the high nibble of the last byte
    uint8_t nib = (uint8_t)((int64_t)value & 0xF);
    uint8_t* p = (uint8_t*)out;
    std::memset(p, nib | (nib << 4), (size_t)(n / 2));
    if (n & 1) p[n / 2] = (uint8_t)((p[n / 2] & 0xF0) | nib);
    return CT_OK;
  }
  dispatch_conv(dtype, [&](auto t) {
    using T = decltype(t);
    const T v = convert<T>(value);
    T* o = (T*)out;
    parallel_range(n, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) o[i] = v;
    });
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_int4_unpack(int64_t n, const uint8_t* packed, int8_t* out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_int4_unpack";
  CT_TRY
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n=%lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "packed", packed)) || (st = check_ptr(fn, "out", out))) return st;
  // Sign extension of a nibble: shift it to the top of an int8 and arithmetic-shift back.
  parallel_range(n / 2, 2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      uint8_t b = packed[i];
      out[2 * i] = (int8_t)((int8_t)(b << 4) >> 4);
      out[2 * i + 1] = (int8_t)((int8_t)b >> 4);
    }
  });
  if (n & 1) out[n - 1] = (int8_t)((int8_t)(packed[n / 2] << 4) >> 4);
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_int4_pack(int64_t n, const int8_t* in, uint8_t* packed, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_int4_pack";
  CT_TRY
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n=%lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "in", in)) || (st = check_ptr(fn, "packed", packed))) return st;
  for (int64_t i = 0; i < n; ++i)
    if (in[i] < -8 || in[i] > 7)
      return fail(CT_ERR_INVALID_ARG, "%s: in[%lld]=%d is outside the int4 range [-8, 7]", fn, (long long)i, in[i]);
  parallel_range(n / 2, 2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) packed[i] = (uint8_t)((in[2 * i] & 0xF) | ((in[2 * i + 1] & 0xF) << 4));
  });
  if (n & 1) packed[n / 2] = (uint8_t)(in[n - 1] & 0xF);
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"
