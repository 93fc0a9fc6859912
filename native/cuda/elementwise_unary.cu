/*
 * Unary elementwise maps (ct_cuda_unary): y = f(x) for the ops of elementwise.h.
 *
 * Algorithm: elementwise.cuh's map1 kernels (vectorized 16-byte grid-stride loop for dense
 * operands, packed-shape index math otherwise). f16/bf16 are computed in float32 and rounded
 * to nearest even on store; f64 in double; integer ops (NEG ABS RELU CLAMP AFFINE) in the
 * integer type, with the CPU twin's rules for CLAMP bounds and AFFINE parameters.
 * Cost: 1 read + 1 write per element, (2 * sizeof(dtype)) * n bytes; at most a few dozen
 * FLOPs per element (GELU, SILU), so every op is memory bound on A100/H100.
 * One kernel is instantiated per (op, dtype) pair the support matrix allows.
 */
#include <cmath>
#include <limits>

#include "common.cuh"
#include "cortado/elementwise.h"
#include "elementwise.cuh"

namespace ct {
namespace {

// Overloads so one op body serves float and double.
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_erfc(float x) { return erfcf(x); }
__device__ __forceinline__ double m_erfc(double x) { return erfc(x); }
__device__ __forceinline__ float m_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double m_pow(double x, double y) { return pow(x, y); }
__device__ __forceinline__ float m_sin(float x) { return sinf(x); }
__device__ __forceinline__ double m_sin(double x) { return sin(x); }
__device__ __forceinline__ float m_cos(float x) { return cosf(x); }
__device__ __forceinline__ double m_cos(double x) { return cos(x); }
__device__ __forceinline__ float m_fabs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_fabs(double x) { return fabs(x); }

/* Floating ops: T in {float, double, __half, __nv_bfloat16}, C = float or double. */
template <int OP, class T> struct unary_float {
  using C = compute_t<T>;
  C p0, p1;
  __device__ __forceinline__ T operator()(T xs) const {
    const C x = load<T>(xs);
    C y;
    if constexpr (OP == CT_UNARY_NEG) y = -x;
    else if constexpr (OP == CT_UNARY_ABS) y = m_fabs(x);
    else if constexpr (OP == CT_UNARY_EXP) y = m_exp(x);
    else if constexpr (OP == CT_UNARY_LOG) y = m_log(x);
    else if constexpr (OP == CT_UNARY_SQRT) y = m_sqrt(x);
    else if constexpr (OP == CT_UNARY_RSQRT) y = C(1) / m_sqrt(x);
    else if constexpr (OP == CT_UNARY_TANH) y = m_tanh(x);
    else if constexpr (OP == CT_UNARY_SIGMOID) y = C(1) / (C(1) + m_exp(-x));
    else if constexpr (OP == CT_UNARY_RELU) y = x < C(0) ? C(0) : x;  // NaN stays NaN
    else if constexpr (OP == CT_UNARY_GELU_ERF)  // 0.5 x erfc(-x / sqrt 2): no cancellation for x < 0
      y = C(0.5) * x * m_erfc(-x * C(0.70710678118654752440));
    else if constexpr (OP == CT_UNARY_GELU_TANH) {  // 0.5 x (1 + tanh u) == x sigmoid(2u)
      const C u = C(0.79788456080286535588) * (x + C(0.044715) * x * x * x);
      y = x / (C(1) + m_exp(C(-2) * u));
    }
    else if constexpr (OP == CT_UNARY_SILU) y = x / (C(1) + m_exp(-x));
    else if constexpr (OP == CT_UNARY_CLAMP) {  // NaN stays NaN
      const C r = x < p0 ? p0 : x;
      y = r > p1 ? p1 : r;
    }
    else if constexpr (OP == CT_UNARY_POW_SCALAR) y = p0 == C(2) ? x * x : m_pow(x, p0);
    else if constexpr (OP == CT_UNARY_AFFINE) y = x * p0 + p1;
    else if constexpr (OP == CT_UNARY_RECIPROCAL) y = C(1) / x;
    else if constexpr (OP == CT_UNARY_SIN) y = m_sin(x);
    else if constexpr (OP == CT_UNARY_COS) y = m_cos(x);
    else static_assert(OP < 0, "not a float unary op");
    return store<T>(y);
  }
};

/* Integer ops (NEG ABS RELU CLAMP AFFINE) on I8 U8 I32 I64, as the CPU twin: wrap-around
 * arithmetic; CLAMP bounds are [ceil p0, floor p1] clipped to the type (NaN = unbounded);
 * AFFINE with integral parameters wraps, otherwise it is evaluated in double and truncated. */
template <int OP, class T> struct unary_int {
  T lo, hi;          // CLAMP bounds; AFFINE integral scale/shift
  double p0, p1;     // AFFINE real scale/shift
  bool real;         // AFFINE: non-integral parameters
  __device__ __forceinline__ T operator()(T x) const {
    using U = std::make_unsigned_t<T>;
    if constexpr (OP == CT_UNARY_NEG) return (T)(U)(U(0) - (U)x);
    else if constexpr (OP == CT_UNARY_ABS) {
      if constexpr (std::is_signed_v<T>) return x < T(0) ? (T)(U)(U(0) - (U)x) : x;
      else return x;
    } else if constexpr (OP == CT_UNARY_RELU) {
      if constexpr (std::is_signed_v<T>) return x < T(0) ? T(0) : x;
      else return x;
    } else if constexpr (OP == CT_UNARY_CLAMP) {
      const T r = x < lo ? lo : x;
      return r > hi ? hi : r;
    } else if constexpr (OP == CT_UNARY_AFFINE) {
      if (real) return (T)(int64_t)((double)x * p0 + p1);
      return (T)(U)((U)x * (U)lo + (U)hi);
    } else static_assert(OP < 0, "not an integer unary op");
  }
};

template <class T> T int_bound(double p, bool lower) {
  const T mn = std::numeric_limits<T>::min(), mx = std::numeric_limits<T>::max();
  if (p != p) return lower ? mn : mx;
  p = lower ? std::ceil(p) : std::floor(p);
  if (p <= (double)mn) return mn;
  if (p >= (double)mx) return mx;
  return (T)p;
}

struct unary_not {
  __device__ __forceinline__ boolean operator()(boolean x) const { return boolean{(uint8_t)(x.v == 0)}; }
};

constexpr bool int_op(int op) {
  return op == CT_UNARY_NEG || op == CT_UNARY_ABS || op == CT_UNARY_RELU || op == CT_UNARY_CLAMP ||
         op == CT_UNARY_AFFINE;
}

struct unary_args {
  int ndim;
  const int64_t* shape;
  int64_t numel;
  void* out;
  const int64_t* os;
  const void* x;
  const int64_t* xs;
  double p0, p1;
  cudaStream_t s;
};

const char* const kFn = "ct_cuda_unary";

template <int OP, class T> int run_float(const unary_args& a) {
  using C = compute_t<T>;
  unary_float<OP, T> f{(C)a.p0, (C)a.p1};
  return launch_map1(kFn, a.ndim, a.shape, a.numel, (T*)a.out, a.os, (const T*)a.x, a.xs, f, a.s);
}
template <int OP, class T> int run_int(const unary_args& a) {
  unary_int<OP, T> f{};
  f.p0 = a.p0;
  f.p1 = a.p1;
  if (OP == CT_UNARY_CLAMP) {
    f.lo = int_bound<T>(a.p0, true);
    f.hi = int_bound<T>(a.p1, false);
  } else if (OP == CT_UNARY_AFFINE) {
    f.real = !(a.p0 == std::trunc(a.p0) && a.p1 == std::trunc(a.p1) && std::fabs(a.p0) < 9.2e18 &&
               std::fabs(a.p1) < 9.2e18);
    if (!f.real) {
      f.lo = (T)(int64_t)a.p0;
      f.hi = (T)(int64_t)a.p1;
    }
  }
  return launch_map1(kFn, a.ndim, a.shape, a.numel, (T*)a.out, a.os, (const T*)a.x, a.xs, f, a.s);
}

template <int OP> int run_op(int dtype, const unary_args& a) {
  int status = -1;
  if constexpr (OP == CT_UNARY_NOT) {
    if (dtype == CT_BOOL)
      status = launch_map1(kFn, a.ndim, a.shape, a.numel, (boolean*)a.out, a.os,
                           (const boolean*)a.x, a.xs, unary_not{}, a.s);
  } else {
    dispatch_dtype(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (is_float_v<T>) status = run_float<OP, T>(a);
      else if constexpr (is_int_v<T> && int_op(OP)) status = run_int<OP, T>(a);
    });
  }
  if (status < 0)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %d is not defined for dtype %s", kFn, OP, dtype_name(dtype));
  return status;
}

template <int... OPS>
int run_unary(int op, int dtype, const unary_args& a, std::integer_sequence<int, OPS...>) {
  int status = CT_ERR_INVALID_ARG;
  bool found = ((op == OPS ? (status = run_op<OPS>(dtype, a), true) : false) || ...);
  if (!found) return fail(CT_ERR_INVALID_ARG, "%s: unknown unary op %d", kFn, op);
  return status;
}

}  // namespace
}  // namespace ct

extern "C" int ct_cuda_unary(int op, int dtype, int ndim, const int64_t* shape, void* out,
                             const int64_t* out_strides, const void* x, const int64_t* x_strides,
                             double p0, double p1, int64_t stream) {
  using namespace ct;
  int64_t numel = 0;
  CT_TRY_STATUS(check_shape(kFn, ndim, shape, &numel));
  CT_TRY_STATUS(check_strides(kFn, "out_strides", ndim, out_strides));
  CT_TRY_STATUS(check_strides(kFn, "x_strides", ndim, x_strides));
  if (op < 0 || op >= CT_UNARY_COUNT) return fail(CT_ERR_INVALID_ARG, "%s: unknown unary op %d", kFn, op);
  if (dtype_size(dtype) == 0 || dtype == CT_I4)
    return fail(CT_ERR_INVALID_ARG, "%s: bad dtype code %d", kFn, dtype);
  if (numel == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(kFn, "out", out));
  CT_TRY_STATUS(check_ptr(kFn, "x", x));
  unary_args a{ndim, shape, numel, out, out_strides, x, x_strides, p0, p1, as_stream(stream)};
  return run_unary(op, dtype, a, std::make_integer_sequence<int, CT_UNARY_COUNT>{});
}
