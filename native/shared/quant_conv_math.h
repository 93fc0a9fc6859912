/*
 * Shared pieces of the int8 convolution (quant_conv.h) for the CPU and CUDA libraries: the
 * argument check (same rejections, same messages), the packed weight index and the epilogue of
 * one output element (the int8 GEMM's scalar one, quant.h).
 */
#ifndef CORTADO_QUANT_CONV_MATH_H
#define CORTADO_QUANT_CONV_MATH_H

#include <stdio.h>

#include "cortado/quant_conv.h"
#include "quant_check.h"
#include "quant_math.h"
#include "scalar_ops.h"  // sop::activation

namespace ct {
namespace qm {

/* Byte offset of B[k, j] in one group's packed block (quant.h's layout). */
CT_QM_HD int64_t qconv_packed_index(int64_t kp, int64_t k, int64_t j) {
  return ((j / 16) * (kp / 4) + k / 4) * 64 + (j % 16) * 4 + k % 4;
}

/* Bytes of one group's packed block: Np * Kp. */
CT_QM_HD int64_t qconv_group_bytes(const ct_qconv_args& a) {
  const int64_t kk = a.kh * a.kw * (a.c / a.groups);
  return ((a.oc / a.groups + 31) / 32 * 32) * ((kk + 3) / 4 * 4);
}

/* The epilogue of one output element from its compensated int32 sum v, written at y[idx]. */
CT_QM_HD void qconv_store(const ct_qconv_args& a, int64_t idx, int64_t o, int32_t v) {
  if (a.out_dtype == CT_I32) {
    ((int32_t*)a.y)[idx] = v;
    return;
  }
#ifdef __CUDA_ARCH__
  float f = __fmaf_rn((float)v, ((const float*)a.scale)[o], a.bias ? ((const float*)a.bias)[o] : 0.0f);
#else
  float f = std::fma((float)v, ((const float*)a.scale)[o], a.bias ? ((const float*)a.bias)[o] : 0.0f);
#endif
  f = sop::activation(a.activation, f);
  if (a.out_dtype == CT_F32) ((float*)a.y)[idx] = f;
  else if (a.out_dtype == CT_BF16) ((uint16_t*)a.y)[idx] = bf16_rne(f);
  else if (a.out_dtype == CT_I8) ((int8_t*)a.y)[idx] = (int8_t)quantize_int(f, 1.0f, a.out_zero_point, -128, 127);
  else ((uint8_t*)a.y)[idx] = (uint8_t)quantize_int(f, 1.0f, a.out_zero_point, 0, 255);
}

/* ct_*_qconv2d's arguments: sizes consistent, the output size the convolution's, pointers set. */
inline int check_qconv(const char* fn, const ct_qconv_args* args, Msg* m) {
  if (!args) {
    snprintf(m->text, sizeof m->text, "%s: args is NULL", fn);
    return CT_ERR_INVALID_ARG;
  }
  const ct_qconv_args& a = *args;
  if (a.n < 0 || a.h < 0 || a.w < 0 || a.c < 1 || a.oc < 1 || a.kh < 1 || a.kw < 1 || a.stride_h < 1 ||
      a.stride_w < 1 || a.pad_h < 0 || a.pad_w < 0 || a.dil_h < 1 || a.dil_w < 1 || a.groups < 1 ||
      a.c % a.groups != 0 || a.oc % a.groups != 0) {
    snprintf(m->text, sizeof m->text,
             "%s: x [%lld, %lld, %lld, %lld], %lld output channels, kernel %lldx%lld, stride %lld/%lld, "
             "padding %lld/%lld, dilation %lld/%lld, groups %lld: sizes must be >= 0, channels, kernel, stride, "
             "dilation and groups >= 1, groups dividing both channel counts",
             fn, (long long)a.n, (long long)a.h, (long long)a.w, (long long)a.c, (long long)a.oc, (long long)a.kh,
             (long long)a.kw, (long long)a.stride_h, (long long)a.stride_w, (long long)a.pad_h, (long long)a.pad_w,
             (long long)a.dil_h, (long long)a.dil_w, (long long)a.groups);
    return CT_ERR_INVALID_ARG;
  }
  if (a.oh < 0 || a.ow < 0) {
    snprintf(m->text, sizeof m->text, "%s: output %lldx%lld is negative", fn, (long long)a.oh, (long long)a.ow);
    return CT_ERR_INVALID_ARG;
  }
  if (a.kh * a.kw * (a.c / a.groups) > 32768) {
    snprintf(m->text, sizeof m->text, "%s: reduction length %lld exceeds 32768", fn,
             (long long)(a.kh * a.kw * (a.c / a.groups)));
    return CT_ERR_INVALID_ARG;
  }
  if (int st = check_epilogue(fn, a.out_dtype, a.activation, m)) return st;
  if (a.x_zero_point < 0 || a.x_zero_point > 255) {
    snprintf(m->text, sizeof m->text, "%s: x_zero_point %d is not a uint8 value", fn, a.x_zero_point);
    return CT_ERR_INVALID_ARG;
  }
  const int32_t lo = a.out_dtype == CT_I8 ? -128 : 0, hi = a.out_dtype == CT_I8 ? 127 : a.out_dtype == CT_U8 ? 255 : 0;
  if (a.out_zero_point < lo || a.out_zero_point > hi) {
    snprintf(m->text, sizeof m->text, "%s: out_zero_point %d is outside [%d, %d] for %s", fn, a.out_zero_point, lo,
             hi, dtype_name(a.out_dtype));
    return CT_ERR_INVALID_ARG;
  }
  if (a.n * a.oh * a.ow == 0) return CT_OK;
  if (!a.x || !a.y || !a.w_packed || !a.w_colsum || (a.out_dtype != CT_I32 && !a.scale)) {
    snprintf(m->text, sizeof m->text,
             "%s: a pointer is NULL (x, w_packed, w_colsum, y, or scale for a non-int32 output)", fn);
    return CT_ERR_INVALID_ARG;
  }
  return CT_OK;
}

}  // namespace qm
}  // namespace ct
#endif
