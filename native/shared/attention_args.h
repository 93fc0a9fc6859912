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

#include "cortado/common.h"

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
