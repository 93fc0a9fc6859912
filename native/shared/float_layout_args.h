/*
 * The dtype and layout check shared by the float32/float64 layout-aware families (batch norm,
 * pooling) of both libraries. Host code only; include it at file scope after the library's
 * declarations of ct::fail and ct::dtype_name (cpu/internal.h, cuda/common.cuh).
 */
#ifndef CORTADO_FLOAT_LAYOUT_ARGS_H
#define CORTADO_FLOAT_LAYOUT_ARGS_H

#include "cortado/common.h"

namespace ct {

/* dtype float32 or float64 (another known dtype: CT_ERR_UNSUPPORTED; an unknown code:
 * CT_ERR_INVALID_ARG) and layout CT_LAYOUT_NCHW or CT_LAYOUT_NHWC. CT_OK or the failure. */
inline int check_float_layout(const char* fn, int dtype, int layout) {
  if (dtype != CT_F32 && dtype != CT_F64) {
    if (dtype >= CT_F32 && dtype <= CT_I4)
      return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s is not supported (float32, float64)", fn, dtype_name(dtype));
    return fail(CT_ERR_INVALID_ARG, "%s: unknown dtype code %d", fn, dtype);
  }
  if (layout != CT_LAYOUT_NCHW && layout != CT_LAYOUT_NHWC)
    return fail(CT_ERR_INVALID_ARG, "%s: layout %d is neither CT_LAYOUT_NCHW (0) nor CT_LAYOUT_NHWC (1)", fn, layout);
  return CT_OK;
}

}  // namespace ct

#endif
