/*
 * Host-side argument checks of the weight-only (quant_weight.h) and binary (quant_binary.h)
 * kernels, shared by the CPU and CUDA libraries so both reject the same arguments with the same
 * message. Each returns CT_OK or an error status with the message in `m`; *empty is set when the
 * arguments are valid and there is nothing to compute (the caller returns CT_OK). The checks that
 * need the data (codes, scales, zero points, alpha / beta) run where the data is: in the CPU
 * kernels, and in the CUDA check kernels of native/cuda/device_check.cuh.
 */
#ifndef CORTADO_QUANT_WEIGHT_CHECK_H
#define CORTADO_QUANT_WEIGHT_CHECK_H

#include <stdio.h>

#include "cortado/quant_binary.h"
#include "cortado/quant_weight.h"
#include "quant_check.h"

namespace ct {
namespace qm {

inline bool wq_is_int4(int format) { return format == CT_WQ_S4 || format == CT_WQ_U4; }

/* The codes' dtype of a format: int8 (s4), uint8 (u4), the fp8 dtype. */
inline int wq_code_dtype(int format) {
  return format == CT_WQ_S4 ? CT_I8 : format == CT_WQ_U4 ? CT_U8 : format == CT_WQ_E4M3 ? CT_F8E4M3 : CT_F8E5M2;
}

inline int check_wq_pack(const char* fn, const void* q, int32_t q_dtype, int64_t n, int64_t k, int64_t ld_n,
                         int64_t ld_k, int32_t format, const uint8_t* packed, bool* empty, Msg* m) {
  *empty = false;
  if (format < CT_WQ_S4 || format > CT_WQ_E5M2) {
    snprintf(m->text, sizeof m->text, "%s: unknown format %d", fn, format);
    return CT_ERR_INVALID_ARG;
  }
  if (q_dtype != wq_code_dtype(format)) {
    snprintf(m->text, sizeof m->text, "%s: codes of dtype %s for format %d (expected %s)", fn, dtype_name(q_dtype), format,
             dtype_name(wq_code_dtype(format)));
    return CT_ERR_INVALID_ARG;
  }
  if (n < 0 || k < 0 || k % 32 != 0 || ld_n < 0 || ld_k < 0) {
    snprintf(m->text, sizeof m->text, "%s: n=%lld, k=%lld (a multiple of 32), strides %lld/%lld", fn, (long long)n,
             (long long)k, (long long)ld_n, (long long)ld_k);
    return CT_ERR_INVALID_ARG;
  }
  if (n * k == 0) {
    *empty = true;
    return CT_OK;
  }
  if (!q || !packed) {
    snprintf(m->text, sizeof m->text, "%s: a pointer is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

inline int check_wq_gemm(const char* fn, const ct_wq_args* args, bool* empty, Msg* m) {
  *empty = false;
  if (!args) {
    snprintf(m->text, sizeof m->text, "%s: args is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  const ct_wq_args& a = *args;
  if (a.format < CT_WQ_S4 || a.format > CT_WQ_E5M2) {
    snprintf(m->text, sizeof m->text, "%s: unknown format %d", fn, a.format);
    return CT_ERR_INVALID_ARG;
  }
  if ((a.x_dtype != CT_F32 && a.x_dtype != CT_BF16) || (a.y_dtype != CT_F32 && a.y_dtype != CT_BF16)) {
    snprintf(m->text, sizeof m->text, "%s: x %s, y %s (float32 or bfloat16)", fn, dtype_name(a.x_dtype),
             dtype_name(a.y_dtype));
    return CT_ERR_INVALID_ARG;
  }
  if (a.m < 0 || a.n < 0 || a.k < 0 || a.group < 32 || a.group % 32 != 0 || a.k % a.group != 0 || a.ldx < a.k ||
      a.ldy < a.n) {
    snprintf(m->text, sizeof m->text,
             "%s: m=%lld n=%lld k=%lld group=%lld (a multiple of 32 dividing k) ldx=%lld ldy=%lld", fn, (long long)a.m,
             (long long)a.n, (long long)a.k, (long long)a.group, (long long)a.ldx, (long long)a.ldy);
    return CT_ERR_INVALID_ARG;
  }
  if (!wq_is_int4(a.format) && a.zero_point) {
    snprintf(m->text, sizeof m->text, "%s: fp8 weights take no zero point", fn);
    return CT_ERR_INVALID_ARG;
  }
  if (a.m == 0 || a.n == 0) {
    *empty = true;
    return CT_OK;
  }
  if (!a.y || (a.k > 0 && (!a.x || !a.w_packed || !a.scale))) {
    snprintf(m->text, sizeof m->text, "%s: a pointer is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

/* The message of a bad group parameter p (its scale s and zero point z), as both libraries word it. */
inline int wq_param_error(const char* fn, int format, int64_t p, float s, int32_t z, Msg* m) {
  if (!(s > 0.0f && s <= 3.4028235e38f))
    snprintf(m->text, sizeof m->text, "%s: scale[%lld] = %g is not finite and > 0", fn, (long long)p, (double)s);
  else
    snprintf(m->text, sizeof m->text, "%s: zero_point[%lld] = %d is outside the range of %s", fn, (long long)p, z,
             format == CT_WQ_S4 ? "int4 [-8, 7]" : "uint4 [0, 15]");
  return CT_ERR_INVALID_ARG;
}

inline int check_binarize(const char* fn, const float* x, int64_t rows, int64_t k, int64_t ldx, const uint64_t* bits,
                          bool* empty, Msg* m) {
  *empty = false;
  if (rows < 0 || k < 0 || ldx < k) {
    snprintf(m->text, sizeof m->text, "%s: rows=%lld k=%lld ldx=%lld", fn, (long long)rows, (long long)k, (long long)ldx);
    return CT_ERR_INVALID_ARG;
  }
  if (rows * ((k + 63) / 64) == 0) {
    *empty = true;
    return CT_OK;
  }
  if (!x || !bits) {
    snprintf(m->text, sizeof m->text, "%s: a pointer is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

inline int check_bgemm(const char* fn, const ct_bgemm_args* args, bool* empty, Msg* m) {
  *empty = false;
  if (!args) {
    snprintf(m->text, sizeof m->text, "%s: args is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  const ct_bgemm_args& g = *args;
  if (g.m < 0 || g.n < 0 || g.k < 0) {
    snprintf(m->text, sizeof m->text, "%s: m=%lld n=%lld k=%lld", fn, (long long)g.m, (long long)g.n, (long long)g.k);
    return CT_ERR_INVALID_ARG;
  }
  if (g.m == 0 || g.n == 0) {
    *empty = true;
    return CT_OK;
  }
  if (!g.y || (g.k > 0 && (!g.a || !g.b))) {
    snprintf(m->text, sizeof m->text, "%s: a pointer is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

inline int check_bconv(const char* fn, const ct_bconv_args* args, bool* empty, Msg* m) {
  *empty = false;
  if (!args) {
    snprintf(m->text, sizeof m->text, "%s: args is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  const ct_bconv_args& p = *args;
  if (p.batch < 0 || p.h < 0 || p.w_in < 0 || p.c < 0 || p.cout < 0 || p.kh < 1 || p.kw < 1 || p.stride_h < 1 ||
      p.stride_w < 1 || p.pad_h < 0 || p.pad_w < 0 || p.oh != (p.h + 2 * p.pad_h - p.kh) / p.stride_h + 1 ||
      p.ow != (p.w_in + 2 * p.pad_w - p.kw) / p.stride_w + 1 || p.oh < 0 || p.ow < 0) {
    snprintf(m->text, sizeof m->text,
             "%s: x [%lld, %lld, %lld, %lld], weight [%lld, %lld, %lld], stride %lld/%lld, pad %lld/%lld, "
             "output %lld x %lld",
             fn, (long long)p.batch, (long long)p.h, (long long)p.w_in, (long long)p.c, (long long)p.cout, (long long)p.kh,
             (long long)p.kw, (long long)p.stride_h, (long long)p.stride_w, (long long)p.pad_h, (long long)p.pad_w,
             (long long)p.oh, (long long)p.ow);
    return CT_ERR_INVALID_ARG;
  }
  if (p.batch * p.oh * p.ow * p.cout == 0) {
    *empty = true;
    return CT_OK;
  }
  if (!p.y || ((p.c + 63) / 64 > 0 && (!p.x || !p.w))) {
    snprintf(m->text, sizeof m->text, "%s: a pointer is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

/* sign_ste and its backward: a float dtype, n >= 0, the pointers when n > 0. */
inline int check_sign(const char* fn, int32_t dtype, int64_t n, bool pointers_ok, bool* empty, Msg* m) {
  *empty = false;
  if (!is_float_io(dtype) || n < 0) {
    snprintf(m->text, sizeof m->text, "%s: dtype %s, n=%lld", fn, dtype_name(dtype), (long long)n);
    return CT_ERR_INVALID_ARG;
  }
  if (n == 0) {
    *empty = true;
    return CT_OK;
  }
  if (!pointers_ok) {
    snprintf(m->text, sizeof m->text, "%s: a pointer is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

}  // namespace qm
}  // namespace ct

#endif
