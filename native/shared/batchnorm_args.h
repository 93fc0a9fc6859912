/*
 * The argument checks of cortado/norm.h's batch norm (dtype, layout, the [n, c, s] extents), once
 * for both libraries. Host code only; include it at file scope after the library's declarations
 * of ct::fail and ct::dtype_name (cpu/internal.h, cuda/common.cuh).
 */
#ifndef CORTADO_BATCHNORM_ARGS_H
#define CORTADO_BATCHNORM_ARGS_H

#include <stdint.h>

#include "cortado/common.h"
#include "float_layout_args.h"

namespace ct {
namespace batchnorm {

inline int check_args(const char* fn, int dtype, int layout, int64_t n, int64_t c, int64_t s) {
  const int st = check_float_layout(fn, dtype, layout);
  if (st) return st;
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n = %lld is negative", fn, (long long)n);
  if (c < 0) return fail(CT_ERR_INVALID_ARG, "%s: c = %lld is negative", fn, (long long)c);
  if (s < 0) return fail(CT_ERR_INVALID_ARG, "%s: s = %lld is negative", fn, (long long)s);
  int64_t t;
  if (__builtin_mul_overflow(n, c, &t) || __builtin_mul_overflow(t, s, &t))
    return fail(CT_ERR_INVALID_ARG, "%s: n*c*s overflows int64", fn);
  return CT_OK;
}

}  // namespace batchnorm
}  // namespace ct

#endif
