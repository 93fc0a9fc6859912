/*
 * The argument checks of cortado/attention.h's fused attention, once for both libraries
 * (libcortado_cpu and libcortado_cuda reject the same calls with the same messages). Host code
 * only; include it at file scope after the library's declarations of ct::fail, ct::dtype_name
 * and ct::check_ptr (cpu/internal.h, cuda/common.cuh).
 */
#ifndef CORTADO_ATTENTION_ARGS_H
#define CORTADO_ATTENTION_ARGS_H

#include <math.h>
#include <stdint.h>

#include "cortado/attention.h"

namespace ct {
namespace attention {

/* 4 element strides (batch, head, sequence, feature), non-negative; the feature stride 1 if asked. */
inline int check_strides4(const char* fn, const char* name, const int64_t* s, bool unit_feature) {
  if (!s) return fail(CT_ERR_INVALID_ARG, "%s: %s is NULL", fn, name);
  for (int d = 0; d < 4; ++d)
    if (s[d] < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s[%d]=%lld is negative", fn, name, d, (long long)s[d]);
  if (unit_feature && s[3] != 1)
    return fail(CT_ERR_INVALID_ARG, "%s: %s[3]=%lld must be 1 (the feature dimension is contiguous)", fn, name,
                (long long)s[3]);
  return CT_OK;
}

inline int check_float_dtype(const char* fn, int dtype) {
  if (dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16) return CT_OK;
  return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64, F16, BF16 only)", fn,
              dtype_name(dtype), dtype);
}

/* dtype, dims {B, Hq, Hkv, Lq, Lk, D, Dv} (Hq a multiple of Hkv), the strides (os may be NULL), the
 * mask kind and strides, dropout_p in [0, 1), a finite scale, a finite softcap >= 0, and the data
 * pointers a non-empty call reads. CT_OK or the first failure. */
inline int check_args(const char* fn, int dtype, const int64_t* dims, const void* q, const int64_t* qs, const void* k,
                      const int64_t* ks, const void* v, const int64_t* vs, int mask_kind, const void* mask,
                      const int64_t* ms, double scale, double softcap, double dropout_p,
                      const int64_t* os) {
  int st = check_float_dtype(fn, dtype);
  if (st) return st;
  if (!dims) return fail(CT_ERR_INVALID_ARG, "%s: dims is NULL", fn);
  static const char* names[7] = {"B", "Hq", "Hkv", "Lq", "Lk", "D", "Dv"};
  for (int i = 0; i < 7; ++i) {
    const bool may_be_zero = i == 0 || i == 3 || i == 4;
    if (dims[i] < 0 || (dims[i] == 0 && !may_be_zero))
      return fail(CT_ERR_INVALID_ARG, "%s: dims[%d] (%s) = %lld must be %s", fn, i, names[i], (long long)dims[i],
                  may_be_zero ? "non-negative" : "positive");
  }
  if (dims[1] % dims[2] != 0)
    return fail(CT_ERR_INVALID_ARG, "%s: Hq=%lld is not a multiple of Hkv=%lld", fn, (long long)dims[1],
                (long long)dims[2]);
  if ((st = check_strides4(fn, "q_strides", qs, true)) || (st = check_strides4(fn, "k_strides", ks, true)) ||
      (st = check_strides4(fn, "v_strides", vs, true)))
    return st;
  if (os && (st = check_strides4(fn, "o_strides", os, true))) return st;
  if (mask_kind < 0 || mask_kind > 2)
    return fail(CT_ERR_INVALID_ARG, "%s: mask_kind=%d must be 0 (none), 1 (boolean) or 2 (additive)", fn, mask_kind);
  if (mask_kind != 0 && (st = check_strides4(fn, "mask_strides", ms, false))) return st;
  if (!(dropout_p >= 0.0 && dropout_p < 1.0))
    return fail(CT_ERR_INVALID_ARG, "%s: dropout_p=%g must be in [0, 1)", fn, dropout_p);
  if (!isfinite(scale)) return fail(CT_ERR_INVALID_ARG, "%s: scale=%g must be finite", fn, scale);
  if (!(softcap >= 0.0) || !isfinite(softcap))
    return fail(CT_ERR_INVALID_ARG, "%s: softcap=%g must be finite and >= 0 (0: no capping)", fn, softcap);
  if (dims[0] > 0 && dims[3] > 0) {
    if ((st = check_ptr(fn, "q", q))) return st;
    if (dims[4] > 0 && ((st = check_ptr(fn, "k", k)) || (st = check_ptr(fn, "v", v)))) return st;
    if (mask_kind != 0 && dims[4] > 0 && (st = check_ptr(fn, "mask", mask))) return st;
  }
  return CT_OK;
}

/* The backward's own arguments (after check_args): the strides of dO, dQ, dK, dV, and the pointers
 * a non-empty call reads or writes. */
inline int check_backward_args(const char* fn, const int64_t* dims, const void* o, const void* d_o,
                               const int64_t* do_strides, const float* lse, const void* dq, const int64_t* dq_strides,
                               const void* dk, const int64_t* dk_strides, const void* dv,
                               const int64_t* dv_strides) {
  int st;
  if ((st = check_strides4(fn, "do_strides", do_strides, true)) ||
      (st = check_strides4(fn, "dq_strides", dq_strides, true)) ||
      (st = check_strides4(fn, "dk_strides", dk_strides, true)) ||
      (st = check_strides4(fn, "dv_strides", dv_strides, true)))
    return st;
  const int64_t B = dims[0], Lq = dims[3], Lk = dims[4];
  if (B == 0 || (Lq == 0 && Lk == 0)) return CT_OK;
  if (Lq > 0 && ((st = check_ptr(fn, "o", o)) || (st = check_ptr(fn, "d_o", d_o)) || (st = check_ptr(fn, "lse", lse)) ||
                 (st = check_ptr(fn, "dq", dq))))
    return st;
  if (Lk > 0 && ((st = check_ptr(fn, "dk", dk)) || (st = check_ptr(fn, "dv", dv)))) return st;
  return CT_OK;
}

/* The kernels' flat arguments, unpacked from the descriptors of cortado/attention.h. The pointers
 * point into the caller's descriptors (valid for the call). */
struct Flat {
  int dtype = 0;
  int64_t dims[7] = {0, 0, 0, 0, 0, 0, 0};  // B, Hq, Hkv, Lq, Lk, D, Dv
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* mask = nullptr;
  const int64_t* qs = nullptr;
  const int64_t* ks = nullptr;
  const int64_t* vs = nullptr;
  const int64_t* ms = nullptr;
  const int64_t* os = nullptr;
  int mask_kind = CT_ATTENTION_MASK_NONE;
  void* o = nullptr;
  int causal = 0;
  double scale = 0, softcap = 0, dropout_p = 0;
  uint64_t seed = 0, offset = 0;
};

/* A 4-d descriptor of dtype `dtype` whose shape is `want` (entries < 0 are not checked). */
inline int check_desc4(const char* fn, const char* name, const ct_tensor* t, int dtype, const int64_t* want) {
  if (!t) return fail(CT_ERR_INVALID_ARG, "%s: descriptor %s is NULL", fn, name);
  if (t->ndim != 4)
    return fail(CT_ERR_INVALID_ARG, "%s: %s has %d dimensions; expected 4 [B, H, L, D]", fn, name, (int)t->ndim);
  if (t->dtype != dtype)
    return fail(CT_ERR_INVALID_ARG, "%s: %s has dtype %s; expected %s (q's)", fn, name, dtype_name(t->dtype),
                dtype_name(dtype));
  for (int d = 0; d < 4; ++d)
    if (want && want[d] >= 0 && t->shape[d] != want[d])
      return fail(CT_ERR_INVALID_ARG, "%s: %s is [%lld, %lld, %lld, %lld]; expected %lld in dimension %d", fn, name,
                  (long long)t->shape[0], (long long)t->shape[1], (long long)t->shape[2], (long long)t->shape[3],
                  (long long)want[d], d);
  return CT_OK;
}

/* q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv], o [B, Hq, Lq, Dv] (o may be NULL: the
 * backward checks it itself), mask NULL or [B, Hq, Lq, Lk] (bool, or q's dtype: additive). */
inline int unpack(const char* fn, const ct_tensor* q, const ct_tensor* k, const ct_tensor* v, const ct_tensor* mask,
                  const ct_attention_params* p, const ct_tensor* o, Flat& f) {
  if (!q) return fail(CT_ERR_INVALID_ARG, "%s: descriptor q is NULL", fn);
  if (!p) return fail(CT_ERR_INVALID_ARG, "%s: params is NULL", fn);
  f.dtype = q->dtype;
  int st;
  if ((st = check_desc4(fn, "q", q, f.dtype, nullptr))) return st;
  const int64_t B = q->shape[0], Hq = q->shape[1], Lq = q->shape[2], D = q->shape[3];
  const int64_t want_k[4] = {B, -1, -1, D};
  if ((st = check_desc4(fn, "k", k, f.dtype, want_k))) return st;
  const int64_t Hkv = k->shape[1], Lk = k->shape[2];
  const int64_t want_v[4] = {B, Hkv, Lk, -1};
  if ((st = check_desc4(fn, "v", v, f.dtype, want_v))) return st;
  const int64_t Dv = v->shape[3];
  const int64_t want_o[4] = {B, Hq, Lq, Dv};
  if (o && (st = check_desc4(fn, "o", o, f.dtype, want_o))) return st;
  const int64_t dims[7] = {B, Hq, Hkv, Lq, Lk, D, Dv};
  for (int i = 0; i < 7; ++i) f.dims[i] = dims[i];
  f.q = q->data, f.qs = q->strides;
  f.k = k->data, f.ks = k->strides;
  f.v = v->data, f.vs = v->strides;
  if (o) f.o = o->data, f.os = o->strides;
  if (mask) {
    const int kind = mask->dtype == CT_BOOL ? CT_ATTENTION_MASK_BOOL : CT_ATTENTION_MASK_ADDITIVE;
    const int64_t want_m[4] = {B, Hq, Lq, Lk};
    if ((st = check_desc4(fn, "mask", mask, kind == CT_ATTENTION_MASK_BOOL ? CT_BOOL : f.dtype, want_m))) return st;
    f.mask_kind = kind, f.mask = mask->data, f.ms = mask->strides;
  }
  f.causal = p->causal, f.scale = p->scale, f.softcap = p->softcap, f.dropout_p = p->dropout_p;
  f.seed = p->seed, f.offset = p->offset;
  return CT_OK;
}

/* The backward's descriptors: d_o like o, dq like q, dk like k, dv like v. */
inline int unpack_backward(const char* fn, const Flat& f, const ct_tensor* o, const ct_tensor* d_o,
                           const ct_tensor* dq, const ct_tensor* dk, const ct_tensor* dv) {
  const int64_t* d = f.dims;
  const int64_t want_o[4] = {d[0], d[1], d[3], d[6]}, want_q[4] = {d[0], d[1], d[3], d[5]},
                want_k[4] = {d[0], d[2], d[4], d[5]}, want_v[4] = {d[0], d[2], d[4], d[6]};
  int st;
  if ((st = check_desc4(fn, "o", o, f.dtype, want_o)) || (st = check_desc4(fn, "d_o", d_o, f.dtype, want_o)) ||
      (st = check_desc4(fn, "dq", dq, f.dtype, want_q)) || (st = check_desc4(fn, "dk", dk, f.dtype, want_k)) ||
      (st = check_desc4(fn, "dv", dv, f.dtype, want_v)))
    return st;
  return CT_OK;
}

/* RoPE: dtype, dims4 {B, H, L, D} non-negative, x strides (feature stride 1), an even rotary_dim in
 * (0, D], a finite positive base, and x when there is anything to rotate. */
inline int check_rope_args(const char* fn, int dtype, const int64_t* dims4, const void* x, const int64_t* x_strides,
                           int64_t rotary_dim, double base) {
  int st = check_float_dtype(fn, dtype);
  if (st) return st;
  if (!dims4) return fail(CT_ERR_INVALID_ARG, "%s: dims4 is NULL", fn);
  for (int i = 0; i < 4; ++i)
    if (dims4[i] < 0) return fail(CT_ERR_INVALID_ARG, "%s: dims4[%d]=%lld is negative", fn, i, (long long)dims4[i]);
  if ((st = check_strides4(fn, "x_strides", x_strides, true))) return st;
  if (rotary_dim <= 0 || rotary_dim % 2 != 0 || rotary_dim > dims4[3])
    return fail(CT_ERR_INVALID_ARG, "%s: rotary_dim=%lld must be positive, even and at most D=%lld", fn,
                (long long)rotary_dim, (long long)dims4[3]);
  if (!(base > 0) || !isfinite(base)) return fail(CT_ERR_INVALID_ARG, "%s: base=%g must be positive", fn, base);
  if (dims4[0] == 0 || dims4[1] == 0 || dims4[2] == 0) return CT_OK;
  return check_ptr(fn, "x", x);
}

}  // namespace attention
}  // namespace ct

#endif
