/*
 * Binary elementwise maps (ct_cuda_binary): y = f(a, b), broadcasting by stride 0.
 *
 * Algorithm: elementwise.cuh's map2 kernels (vectorized 16-byte grid-stride loop when all
 * three operands are dense, packed-shape index math otherwise, 32-bit when it fits).
 * Floats: f16/bf16 in float32 rounded to nearest even on store, f64 in double; MAX/MIN
 * propagate NaN (torch.maximum). Integers: wrap-around ADD/SUB/MUL, truncating DIV with
 * x / 0 = 0 (and INT_MIN / -1 = INT_MIN, no trap), POW by repeated squaring (negative
 * exponents: 1 for base 1, +-1 for base -1, else 0). Comparisons write BOOL; AND/OR/XOR
 * take BOOL.
 * Cost: 2 reads + 1 write per element, 3 * sizeof(dtype) * n bytes (comparisons write one
 * byte); memory bound.
 */
#include "common.cuh"
#include "cortado/elementwise.h"
#include "elementwise.cuh"

namespace ct {
namespace {

__device__ __forceinline__ float m_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double m_pow(double x, double y) { return pow(x, y); }

template <class T> __device__ __forceinline__ T ipow(T base, T e) {
  using U = std::make_unsigned_t<T>;
  if constexpr (std::is_signed_v<T>) {
    if (e < T(0)) {
      if (base == T(1)) return T(1);
      if (base == T(-1)) return (e & T(1)) ? T(-1) : T(1);
      return T(0);
    }
  }
  U r = 1, b = (U)base;
  U ue = (U)e;
  while (ue) {
    if (ue & 1u) r = (U)(r * b);
    b = (U)(b * b);
    ue >>= 1;
  }
  return (T)r;
}

/* Arithmetic ops (ADD..MIN) on numeric dtypes. */
template <int OP, class T> struct binary_arith {
  __device__ __forceinline__ T operator()(T as, T bs) const {
    if constexpr (is_float_v<T>) {
      using C = compute_t<T>;
      const C a = load<T>(as), b = load<T>(bs);
      C y;
      if constexpr (OP == CT_BINARY_ADD) y = a + b;
      else if constexpr (OP == CT_BINARY_SUB) y = a - b;
      else if constexpr (OP == CT_BINARY_MUL) y = a * b;
      else if constexpr (OP == CT_BINARY_DIV) y = a / b;
      else if constexpr (OP == CT_BINARY_POW) y = m_pow(a, b);
      else if constexpr (OP == CT_BINARY_MAX) y = a != a ? a : (b != b ? b : (a > b ? a : b));
      else if constexpr (OP == CT_BINARY_MIN) y = a != a ? a : (b != b ? b : (a < b ? a : b));
      else static_assert(OP < 0, "not an arithmetic op");
      return store<T>(y);
    } else {
      using U = std::make_unsigned_t<T>;
      const T a = as, b = bs;
      if constexpr (OP == CT_BINARY_ADD) return (T)(U)((U)a + (U)b);
      else if constexpr (OP == CT_BINARY_SUB) return (T)(U)((U)a - (U)b);
      else if constexpr (OP == CT_BINARY_MUL) return (T)(U)((U)a * (U)b);
      else if constexpr (OP == CT_BINARY_DIV) {
        if (b == T(0)) return T(0);
        if constexpr (std::is_signed_v<T>)
          if (b == T(-1)) return (T)(U)(U(0) - (U)a);  // INT_MIN / -1 wraps instead of trapping
        return (T)(a / b);
      } else if constexpr (OP == CT_BINARY_POW) return ipow(a, b);
      else if constexpr (OP == CT_BINARY_MAX) return a > b ? a : b;
      else if constexpr (OP == CT_BINARY_MIN) return a < b ? a : b;
      else static_assert(OP < 0, "not an arithmetic op");
    }
  }
};

/* Comparisons (EQ..GE) on numeric dtypes and BOOL; write BOOL. */
template <int OP, class T> struct binary_cmp {
  __device__ __forceinline__ boolean operator()(T as, T bs) const {
    const auto a = load<T>(as), b = load<T>(bs);
    bool r;
    if constexpr (OP == CT_BINARY_EQ) r = a == b;
    else if constexpr (OP == CT_BINARY_NE) r = a != b;
    else if constexpr (OP == CT_BINARY_LT) r = a < b;
    else if constexpr (OP == CT_BINARY_LE) r = a <= b;
    else if constexpr (OP == CT_BINARY_GT) r = a > b;
    else if constexpr (OP == CT_BINARY_GE) r = a >= b;
    else static_assert(OP < 0, "not a comparison");
    return boolean{(uint8_t)r};
  }
};

/* Logical ops on BOOL (any non-zero byte counts as true). */
template <int OP> struct binary_logic {
  __device__ __forceinline__ boolean operator()(boolean as, boolean bs) const {
    const bool a = as.v != 0, b = bs.v != 0;
    bool r;
    if constexpr (OP == CT_BINARY_AND) r = a && b;
    else if constexpr (OP == CT_BINARY_OR) r = a || b;
    else if constexpr (OP == CT_BINARY_XOR) r = a != b;
    else static_assert(OP < 0, "not a logical op");
    return boolean{(uint8_t)r};
  }
};

/* Activation gradients g * f'(x) (a = g, b = x) on floating dtypes. */
template <int OP, class T> struct binary_grad {
  __device__ __forceinline__ T operator()(T as, T bs) const {
    using C = compute_t<T>;
    const C g = load<T>(as), x = load<T>(bs);
    C y;
    if constexpr (OP == CT_BINARY_GELU_GRAD) {
      const C cdf = C(0.5) * erfc(-x * C(0.70710678118654752440));
      const C pdf = exp(C(-0.5) * x * x) * C(0.39894228040143267794);
      y = g * (cdf + x * pdf);
    } else if constexpr (OP == CT_BINARY_GELU_TANH_GRAD) {
      const C k0 = C(0.79788456080286535588), k1 = C(0.044715);
      const C t = tanh(k0 * (x + k1 * x * x * x));
      y = g * (C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * k0 * (C(1) + C(3) * k1 * x * x));
    } else if constexpr (OP == CT_BINARY_SILU_GRAD) {
      const C s = C(1) / (C(1) + exp(-x));
      y = g * s * (C(1) + x * (C(1) - s));
    } else if constexpr (OP == CT_BINARY_RELU_GRAD) {
      y = x > C(0) ? g : C(0);
    } else {
      static_assert(OP < 0, "not a gradient op");
    }
    return store<T>(y);
  }
};

struct binary_args {
  int ndim;
  const int64_t* shape;
  int64_t numel;
  void* out;
  const int64_t* os;
  const void* a;
  const int64_t* as;
  const void* b;
  const int64_t* bs;
  cudaStream_t s;
};

const char* const kFn = "ct_cuda_binary";

template <class To, class T, class F> int run(const binary_args& x, F f) {
  return launch_map2(kFn, x.ndim, x.shape, x.numel, (To*)x.out, x.os, (const T*)x.a, x.as,
                     (const T*)x.b, x.bs, f, x.s);
}

template <int OP> int run_op(int dtype, const binary_args& x) {
  int status = -1;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (OP <= CT_BINARY_MIN) {
      if constexpr (!std::is_same_v<T, boolean>) status = run<T, T>(x, binary_arith<OP, T>{});
    } else if constexpr (OP <= CT_BINARY_GE) {
      status = run<boolean, T>(x, binary_cmp<OP, T>{});
    } else if constexpr (OP <= CT_BINARY_XOR) {
      if constexpr (std::is_same_v<T, boolean>) status = run<boolean, T>(x, binary_logic<OP>{});
    } else {
      if constexpr (is_float_v<T>) status = run<T, T>(x, binary_grad<OP, T>{});
    }
  });
  if (status < 0)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %d is not defined for dtype %s", kFn, OP, dtype_name(dtype));
  return status;
}

template <int... OPS>
int run_binary(int op, int dtype, const binary_args& a, std::integer_sequence<int, OPS...>) {
  int status = CT_ERR_INVALID_ARG;
  bool found = ((op == OPS ? (status = run_op<OPS>(dtype, a), true) : false) || ...);
  if (!found) return fail(CT_ERR_INVALID_ARG, "%s: unknown binary op %d", kFn, op);
  return status;
}

}  // namespace
}  // namespace ct

extern "C" int ct_cuda_binary(int op, int dtype, int ndim, const int64_t* shape, void* out,
                              const int64_t* out_strides, const void* a, const int64_t* a_strides,
                              const void* b, const int64_t* b_strides, int64_t stream) {
  using namespace ct;
  int64_t numel = 0;
  CT_TRY_STATUS(check_shape(kFn, ndim, shape, &numel));
  CT_TRY_STATUS(check_strides(kFn, "out_strides", ndim, out_strides));
  CT_TRY_STATUS(check_strides(kFn, "a_strides", ndim, a_strides));
  CT_TRY_STATUS(check_strides(kFn, "b_strides", ndim, b_strides));
  if (op < 0 || op >= CT_BINARY_COUNT) return fail(CT_ERR_INVALID_ARG, "%s: unknown binary op %d", kFn, op);
  if (dtype_size(dtype) == 0 || dtype == CT_I4)
    return fail(CT_ERR_INVALID_ARG, "%s: bad dtype code %d", kFn, dtype);
  if (numel == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(kFn, "out", out));
  CT_TRY_STATUS(check_ptr(kFn, "a", a));
  CT_TRY_STATUS(check_ptr(kFn, "b", b));
  binary_args x{ndim, shape, numel, out, out_strides, a, a_strides, b, b_strides, as_stream(stream)};
  return run_binary(op, dtype, x, std::make_integer_sequence<int, CT_BINARY_COUNT>{});
}
