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
#include "scalar_ops.h"

namespace ct {
namespace {

/* y = F(a, b) in the compute type of the inputs, stored as To (the input dtype, or BOOL for
 * comparisons and logical ops). */
template <class To, class T, class F> struct binary_map {
  __device__ __forceinline__ To operator()(T a, T b) const {
    return store<To>((compute_t<To>)F{}(load<T>(a), load<T>(b)));
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

/* One op (functor F, kind K) on `dtype`; CT_ERR_UNSUPPORTED where the kind excludes it. */
template <template <class> class F, sop::BinaryKind K> int run_op(int op, int dtype, const binary_args& x) {
  int status = -1;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    [[maybe_unused]] constexpr bool is_bool = std::is_same_v<T, boolean>;
    if constexpr (K == sop::ARITHMETIC) {
      if constexpr (!is_bool) status = run<T, T>(x, binary_map<T, T, F<C>>{});
    } else if constexpr (K == sop::COMPARISON) {
      status = run<boolean, T>(x, binary_map<boolean, T, F<C>>{});
    } else if constexpr (K == sop::LOGICAL) {
      if constexpr (is_bool) status = run<boolean, T>(x, binary_map<boolean, T, F<C>>{});
    } else {
      if constexpr (is_float_v<T>) status = run<T, T>(x, binary_map<T, T, sop::GradOf<F, C>>{});
    }
  });
  if (status < 0)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %s is not defined for dtype %s", kFn, sop::kBinaryName[op],
                dtype_name(dtype));
  return status;
}

/* The dispatch table: one case per line of ops/binary.def; KIND picks dtypes and output type. */
int run_binary(int op, int dtype, const binary_args& x) {
  switch (op) {
#define CT_BINARY_OP(ident, name, kind, functor) \
  case CT_BINARY_##ident: return run_op<sop::functor, sop::kind>(op, dtype, x);
#include "cortado/ops/binary.def"
#undef CT_BINARY_OP
    default: return fail(CT_ERR_INVALID_ARG, "%s: unknown binary op %d", kFn, op);
  }
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
  return run_binary(op, dtype, x);
}
