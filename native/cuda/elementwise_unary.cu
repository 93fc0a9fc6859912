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
#include "common.cuh"
#include "cortado/elementwise.h"
#include "elementwise.cuh"
#include "scalar_ops.h"

namespace ct {
namespace {

/* y = F(x) in the compute type: f16/bf16 in float, rounded to nearest even on store. */
template <class T, class F> struct unary_map {
  F f;
  __device__ __forceinline__ T operator()(T x) const { return store<T>(f(load<T>(x))); }
};

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

/* One op (functor F, dtype domain D) on `dtype`; CT_ERR_UNSUPPORTED outside the domain. */
template <template <class> class F, sop::UnaryDomain D> int run_op(int op, int dtype, const unary_args& a) {
  int status = -1;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    constexpr bool ok = D == sop::BOOL    ? std::is_same_v<T, boolean>
                        : D == sop::FLOAT ? is_float_v<T>
                                          : (is_float_v<T> || is_int_v<T>);
    if constexpr (ok) {
      unary_map<T, F<C>> f{F<C>::make(a.p0, a.p1)};
      status = launch_map1(kFn, a.ndim, a.shape, a.numel, (T*)a.out, a.os, (const T*)a.x, a.xs, f, a.s);
    }
  });
  if (status < 0)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %s is not defined for dtype %s", kFn, sop::kUnaryName[op],
                dtype_name(dtype));
  return status;
}

/* The dispatch table: one case per line of ops/unary.def. */
int run_unary(int op, int dtype, const unary_args& a) {
  switch (op) {
#define CT_UNARY_OP(ident, name, domain, functor, grad) \
  case CT_UNARY_##ident: return run_op<sop::functor, sop::domain>(op, dtype, a);
#include "cortado/ops/unary.def"
#undef CT_UNARY_OP
    default: return fail(CT_ERR_INVALID_ARG, "%s: unknown unary op %d", kFn, op);
  }
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
  return run_unary(op, dtype, a);
}
