/*
 * Host-side argument checks of the quant.h kernels, shared by the CPU and CUDA libraries so both
 * reject the same arguments with the same message. Each returns CT_OK, or an error status with
 * the message in `msg`; the caller reports it through its library's error buffer.
 */
#ifndef CORTADO_QUANT_CHECK_H
#define CORTADO_QUANT_CHECK_H

#include <stdio.h>

#include "cortado/quant.h"
#include "quant_math.h"

namespace ct {
namespace qm {

struct Msg {
  char text[384];
};

inline bool is_float_io(int dtype) { return dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16; }

/* A descriptor: non-null, ndim in range, sizes >= 0, strides >= 0, data non-null unless empty. */
inline int check_desc(const char* fn, const char* name, const ct_tensor* t, int64_t* numel, Msg* m) {
  if (!t) {
    snprintf(m->text, sizeof m->text, "%s: %s is NULL", fn, name);
    return CT_ERR_INVALID_ARG;
  }
  if (t->ndim < 0 || t->ndim > CT_MAX_DIMS) {
    snprintf(m->text, sizeof m->text, "%s: %s has ndim %d outside [0, %d]", fn, name, t->ndim, CT_MAX_DIMS);
    return CT_ERR_INVALID_ARG;
  }
  int64_t n = 1;
  for (int d = 0; d < t->ndim; ++d) {
    if (t->shape[d] < 0 || t->strides[d] < 0) {
      snprintf(m->text, sizeof m->text, "%s: %s has size %lld / stride %lld in dim %d", fn, name,
               (long long)t->shape[d], (long long)t->strides[d], d);
      return CT_ERR_INVALID_ARG;
    }
    n *= t->shape[d];
  }
  if (n > 0 && !t->data) {
    snprintf(m->text, sizeof m->text, "%s: %s data is NULL", fn, name);
    return CT_ERR_INVALID_ARG;
  }
  *numel = n;
  return CT_OK;
}

inline int check_same_shape(const char* fn, const ct_tensor* a, const char* an, const ct_tensor* b, const char* bn,
                            Msg* m) {
  bool same = a->ndim == b->ndim;
  for (int d = 0; same && d < a->ndim; ++d) same = a->shape[d] == b->shape[d];
  if (!same) {
    snprintf(m->text, sizeof m->text, "%s: %s (ndim %d) and %s (ndim %d) have different shapes", fn, an, a->ndim, bn,
             b->ndim);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

/* The map against the data's ndim: axis in [-1, ndim), group >= 1, strides >= 0, scale set. */
inline int check_map(const char* fn, const char* name, const ct_quant_map* q, int ndim, int64_t numel, Msg* m) {
  if (!q) {
    snprintf(m->text, sizeof m->text, "%s: %s is NULL", fn, name);
    return CT_ERR_INVALID_ARG;
  }
  if (q->axis < -1 || q->axis >= ndim || q->group < 1) {
    snprintf(m->text, sizeof m->text, "%s: %s has axis %d (data ndim %d) and group %lld (must be >= 1)", fn, name,
             q->axis, ndim, (long long)q->group);
    return CT_ERR_INVALID_ARG;
  }
  for (int d = 0; d < ndim; ++d) {
    if (q->strides[d] < 0) {
      snprintf(m->text, sizeof m->text, "%s: %s has a negative stride in dim %d", fn, name, d);
      return CT_ERR_INVALID_ARG;
    }
  }
  if (numel > 0 && !q->scale) {
    snprintf(m->text, sizeof m->text, "%s: %s scale is NULL", fn, name);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

/* Storage dtype and range: integer storages need qmin <= qmax inside the dtype's range. */
inline int check_storage(const char* fn, const char* name, int dtype, int32_t qmin, int32_t qmax, Msg* m) {
  int64_t lo, hi;
  switch (dtype) {
    case CT_I8: lo = -128; hi = 127; break;
    case CT_U8: lo = 0; hi = 255; break;
    case CT_I32: lo = INT32_MIN; hi = INT32_MAX; break;
    case CT_F8E4M3: case CT_F8E5M2: return CT_OK;
    default:
      snprintf(m->text, sizeof m->text, "%s: %s has dtype code %d; expected int8, uint8, int32 or fp8", fn, name, dtype);
      return CT_ERR_UNSUPPORTED;
  }
  if (qmin > qmax || qmin < lo || qmax > hi) {
    snprintf(m->text, sizeof m->text, "%s: range [%d, %d] is not inside %s's [%lld, %lld]", fn, qmin, qmax, name,
             (long long)lo, (long long)hi);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

}  // namespace qm
}  // namespace ct

#endif
