/*
 * Host-side argument checks of the quant.h kernels, shared by the CPU and CUDA libraries so both
 * reject the same arguments with the same message. Each returns CT_OK, or an error status with
 * the message in `msg`; the caller reports it through its library's error buffer.
 */
#ifndef CORTADO_QUANT_CHECK_H
#define CORTADO_QUANT_CHECK_H

#include <stdio.h>

#include "cortado/conv.h"  // CT_ACTIVATION_*
#include "cortado/quant.h"
#include "quant_math.h"

namespace ct {

const char* dtype_name(int dtype);  // each library's own (cpu/internal.h, cuda/common.cuh)

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

/* ct_*_quantize: x floating, y a storage dtype holding [qmin, qmax], the same shape; the map over x. */
inline int check_quantize(const char* fn, const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map,
                          int32_t qmin, int32_t qmax, int64_t* n, Msg* m) {
  int64_t ny = 0;
  int st = check_desc(fn, "x", x, n, m);
  if (!st) st = check_desc(fn, "y", y, &ny, m);
  if (!st) st = check_same_shape(fn, x, "x", y, "y", m);
  if (!st) st = check_map(fn, "map", map, x->ndim, *n, m);
  if (!st) st = check_storage(fn, "y", y->dtype, qmin, qmax, m);
  if (!st && !is_float_io(x->dtype)) {
    snprintf(m->text, sizeof m->text, "%s: x has dtype %s; expected a floating dtype", fn, dtype_name(x->dtype));
    st = CT_ERR_UNSUPPORTED;
  }
  return st;
}

/* ct_*_dequantize: q a storage dtype, y floating, the same shape; the map over q. */
inline int check_dequantize(const char* fn, const ct_tensor* y, const ct_tensor* q, const ct_quant_map* map,
                            int64_t* n, Msg* m) {
  int64_t ny = 0;
  int st = check_desc(fn, "q", q, n, m);
  if (!st) st = check_desc(fn, "y", y, &ny, m);
  if (!st) st = check_same_shape(fn, q, "q", y, "y", m);
  if (!st) st = check_map(fn, "map", map, q->ndim, *n, m);
  if (!st) st = check_storage(fn, "q", q->dtype, 0, 0, m);
  if (!st && !is_float_io(y->dtype)) {
    snprintf(m->text, sizeof m->text, "%s: y has dtype %s; expected a floating dtype", fn, dtype_name(y->dtype));
    st = CT_ERR_UNSUPPORTED;
  }
  return st;
}

/* ct_*_requantize: x and y storage dtypes (y holding [qmin, qmax]), the same shape; both maps over x. */
inline int check_requantize(const char* fn, const ct_tensor* y, const ct_tensor* x, const ct_quant_map* in_map,
                            const ct_quant_map* out_map, int32_t qmin, int32_t qmax, int64_t* n, Msg* m) {
  int64_t ny = 0;
  int st = check_desc(fn, "x", x, n, m);
  if (!st) st = check_desc(fn, "y", y, &ny, m);
  if (!st) st = check_same_shape(fn, x, "x", y, "y", m);
  if (!st) st = check_map(fn, "in_map", in_map, x->ndim, *n, m);
  if (!st) st = check_map(fn, "out_map", out_map, x->ndim, *n, m);
  if (!st) st = check_storage(fn, "x", x->dtype, 0, 0, m);
  if (!st) st = check_storage(fn, "y", y->dtype, qmin, qmax, m);
  return st;
}

/* ct_*_dynamic_quantize: float32 x to uint8 y of the same shape; scale and zero_point non-null. */
inline int check_dynamic_quantize(const char* fn, const ct_tensor* y, const ct_tensor* x, const float* scale,
                                  const uint8_t* zero_point, int64_t* n, Msg* m) {
  int64_t ny = 0;
  int st = check_desc(fn, "x", x, n, m);
  if (!st) st = check_desc(fn, "y", y, &ny, m);
  if (!st) st = check_same_shape(fn, x, "x", y, "y", m);
  if (!st && (x->dtype != CT_F32 || y->dtype != CT_U8)) {
    snprintf(m->text, sizeof m->text, "%s: x %s, y %s; expected float32 -> uint8", fn, dtype_name(x->dtype),
             dtype_name(y->dtype));
    st = CT_ERR_UNSUPPORTED;
  }
  if (!st && (!scale || !zero_point)) {
    snprintf(m->text, sizeof m->text, "%s: scale or zero_point is NULL", fn);
    st = CT_ERR_INVALID_ARG;
  }
  return st;
}

/* The epilogue of the int8 GEMM and convolution: an output dtype it writes and a CT_ACTIVATION_*. */
inline int check_epilogue(const char* fn, int32_t out_dtype, int32_t activation, Msg* m) {
  if (out_dtype != CT_I32 && out_dtype != CT_F32 && out_dtype != CT_BF16 && out_dtype != CT_I8 && out_dtype != CT_U8) {
    snprintf(m->text, sizeof m->text, "%s: output dtype %s; expected int32, float32, bfloat16, int8 or uint8", fn,
             dtype_name(out_dtype));
    return CT_ERR_UNSUPPORTED;
  }
  if (activation < 0 || activation >= CT_ACTIVATION_COUNT) {
    snprintf(m->text, sizeof m->text, "%s: activation %d is not one of CT_ACTIVATION_*", fn, activation);
    return CT_ERR_INVALID_ARG;
  }
  if (out_dtype == CT_I32 && activation != CT_ACTIVATION_NONE) {
    snprintf(m->text, sizeof m->text, "%s: an int32 output (the raw sums) takes no activation (got %d)", fn, activation);
    return CT_ERR_INVALID_ARG;
  }
  // an int8 output's scale is folded into scale and bias: only activations with f(x / s) = f(x) / s
  if ((out_dtype == CT_I8 || out_dtype == CT_U8) && activation != CT_ACTIVATION_NONE && activation != CT_ACTIVATION_RELU) {
    snprintf(m->text, sizeof m->text,
             "%s: an %s output takes no activation %d (its scale, folded into scale and bias, does not commute with "
             "GELU or SiLU): write float32 or bfloat16",
             fn, dtype_name(out_dtype), activation);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

/* ct_*_qgemm: sizes (k at most 32768, so int32 sums are exact), leading dimensions, the output dtype, a's zero
 * point, and the pointers a non-empty product reads. */
inline int check_qgemm(const char* fn, const ct_qgemm_args* args, Msg* m) {
  if (!args) {
    snprintf(m->text, sizeof m->text, "%s: args is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  const ct_qgemm_args& g = *args;
  if (g.m < 0 || g.n < 0 || g.k < 0 || g.k > 32768 || g.lda < g.k || g.ldc < g.n) {
    snprintf(m->text, sizeof m->text, "%s: m=%lld n=%lld k=%lld (at most 32768) lda=%lld ldc=%lld", fn,
             (long long)g.m, (long long)g.n, (long long)g.k, (long long)g.lda, (long long)g.ldc);
    return CT_ERR_INVALID_ARG;
  }
  if (int st = check_epilogue(fn, g.out_dtype, g.activation, m)) return st;
  if (g.a_zero_point < 0 || g.a_zero_point > 255) {
    snprintf(m->text, sizeof m->text, "%s: a_zero_point %d is not a uint8 value", fn, g.a_zero_point);
    return CT_ERR_INVALID_ARG;
  }
  if (g.m == 0 || g.n == 0) return CT_OK;
  if (!g.c || !g.b_packed || !g.b_colsum || (g.k > 0 && !g.a) || (g.out_dtype != CT_I32 && !g.scale)) {
    snprintf(m->text, sizeof m->text,
             "%s: a pointer is NULL (a, b_packed, b_colsum, c, or scale for a non-int32 output)", fn);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

/* The grid of fake quantization: qmin < qmax inside int32 (no storage dtype to hold it). */
inline int check_grid(const char* fn, int32_t qmin, int32_t qmax, Msg* m) {
  if (qmin >= qmax) {
    snprintf(m->text, sizeof m->text, "%s: qmin %d is not below qmax %d", fn, qmin, qmax);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

/* ct_*_fake_quantize: x and y of one floating dtype and shape; the map over x. */
inline int check_fake_quantize(const char* fn, const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map,
                               int32_t qmin, int32_t qmax, int64_t* n, Msg* m) {
  int64_t ny = 0;
  int st = check_desc(fn, "x", x, n, m);
  if (!st) st = check_desc(fn, "y", y, &ny, m);
  if (!st) st = check_same_shape(fn, x, "x", y, "y", m);
  if (!st) st = check_map(fn, "map", map, x->ndim, *n, m);
  if (!st) st = check_grid(fn, qmin, qmax, m);
  if (!st && (!is_float_io(x->dtype) || y->dtype != x->dtype)) {
    snprintf(m->text, sizeof m->text, "%s: x %s, y %s; expected one floating dtype", fn, dtype_name(x->dtype),
             dtype_name(y->dtype));
    st = CT_ERR_UNSUPPORTED;
  }
  return st;
}

/* ct_*_fake_quantize_backward: g, x, dx of one floating dtype, ds float32, all of one shape; the map over x. */
inline int check_fake_quantize_backward(const char* fn, const ct_tensor* dx, const ct_tensor* ds, const ct_tensor* g,
                                        const ct_tensor* x, const ct_quant_map* map, int32_t qmin, int32_t qmax,
                                        int64_t* n, Msg* m) {
  int64_t other = 0;
  int st = check_desc(fn, "x", x, n, m);
  if (!st) st = check_desc(fn, "g", g, &other, m);
  if (!st) st = check_desc(fn, "dx", dx, &other, m);
  if (!st) st = check_desc(fn, "ds", ds, &other, m);
  if (!st) st = check_same_shape(fn, x, "x", g, "g", m);
  if (!st) st = check_same_shape(fn, x, "x", dx, "dx", m);
  if (!st) st = check_same_shape(fn, x, "x", ds, "ds", m);
  if (!st) st = check_map(fn, "map", map, x->ndim, *n, m);
  if (!st) st = check_grid(fn, qmin, qmax, m);
  if (!st && (!is_float_io(x->dtype) || g->dtype != x->dtype || dx->dtype != x->dtype || ds->dtype != CT_F32)) {
    snprintf(m->text, sizeof m->text, "%s: x %s, g %s, dx %s, ds %s; expected x, g, dx of one floating dtype, ds float32",
             fn,
             dtype_name(x->dtype), dtype_name(g->dtype), dtype_name(dx->dtype), dtype_name(ds->dtype));
    st = CT_ERR_UNSUPPORTED;
  }
  return st;
}

}  // namespace qm
}  // namespace ct

#endif
