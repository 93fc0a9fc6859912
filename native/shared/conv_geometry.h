/*
 * The convolution geometry of cortado/conv.h, parsed and checked once for both libraries
 * (libcortado_cpu and libcortado_cuda reject the same arrays with the same messages). Host code
 * only; include it after the library's declaration of ct::fail (cpu/internal.h, cuda/common.cuh).
 */
#ifndef CORTADO_CONV_GEOMETRY_H
#define CORTADO_CONV_GEOMETRY_H

#include <stdint.h>

#include "cortado/conv.h"

namespace ct {
namespace conv {

struct Geo {
  int64_t N, C, K, G;
  int64_t in[3];    // D, H, W
  int64_t k[3];     // kD, kH, kW
  int64_t s[3];     // stride
  int64_t d[3];     // dilation
  int64_t pb[3];    // padding before
  int64_t pa[3];    // padding after
  int64_t out[3];   // oD, oH, oW
  int64_t Cg, Kg;   // channels per group
  int64_t KS;       // kD*kH*kW
  int64_t S;        // D*H*W
  int64_t P;        // oD*oH*oW
  int layout;       // CT_LAYOUT_*
};

inline const char* geometry_name(int i) {
  static const char* names[CT_CONV_GEOMETRY_LEN] = {
      "N", "C", "K", "groups", "D", "H", "W", "kD", "kH", "kW", "sD", "sH", "sW",
      "dD", "dH", "dW", "padD_before", "padH_before", "padW_before", "padD_after",
      "padH_after", "padW_after", "oD", "oH", "oW"};
  return names[i];
}

/* Checks g[] (every entry in [lo, max_entry], groups dividing C and K, the dilated kernel within
 * the padded input, the output sizes) and the layout; fills *out. CT_OK, CT_ERR_INVALID_ARG, or
 * CT_ERR_UNSUPPORTED for a padded extent above max_entry. */
inline int parse_geometry(const char* fn, int layout, const int64_t* gv, int64_t max_entry, Geo* out) {
  if (layout != CT_LAYOUT_NCHW && layout != CT_LAYOUT_NHWC)
    return fail(CT_ERR_INVALID_ARG, "%s: unknown layout %d (0 NCHW, 1 NHWC)", fn, layout);
  if (!gv) return fail(CT_ERR_INVALID_ARG, "%s: geometry pointer g is NULL", fn);
  for (int i = 0; i < CT_CONV_GEOMETRY_LEN; ++i) {
    const int64_t lo = (i == 0) ? 0 : (i >= 16 && i <= 21) ? 0 : 1;
    if (gv[i] < lo || gv[i] > max_entry)
      return fail(CT_ERR_INVALID_ARG, "%s: g[%d] (%s) = %lld is out of range [%lld, %lld]", fn, i, geometry_name(i),
                  (long long)gv[i], (long long)lo, (long long)max_entry);
  }
  Geo& g = *out;
  g.layout = layout;
  g.N = gv[0]; g.C = gv[1]; g.K = gv[2]; g.G = gv[3];
  for (int i = 0; i < 3; ++i) {
    g.in[i] = gv[4 + i]; g.k[i] = gv[7 + i]; g.s[i] = gv[10 + i]; g.d[i] = gv[13 + i];
    g.pb[i] = gv[16 + i]; g.pa[i] = gv[19 + i]; g.out[i] = gv[22 + i];
  }
  if (g.C % g.G)
    return fail(CT_ERR_INVALID_ARG, "%s: g[1] (C) = %lld is not divisible by g[3] (groups) = %lld", fn, (long long)g.C,
                (long long)g.G);
  if (g.K % g.G)
    return fail(CT_ERR_INVALID_ARG, "%s: g[2] (K) = %lld is not divisible by g[3] (groups) = %lld", fn, (long long)g.K,
                (long long)g.G);
  for (int i = 0; i < 3; ++i) {
    const int64_t span = g.d[i] * (g.k[i] - 1) + 1, padded = g.in[i] + g.pb[i] + g.pa[i];
    if (span > padded)
      return fail(CT_ERR_INVALID_ARG,
                  "%s: g[%d] (%s) = %lld: the dilated kernel (%lld) is larger than the padded input (%lld)", fn, 7 + i,
                  geometry_name(7 + i), (long long)g.k[i], (long long)span, (long long)padded);
    if (padded > max_entry)
      return fail(CT_ERR_UNSUPPORTED, "%s: spatial dimension %d is too large (padded %lld, limit %lld)", fn, i,
                  (long long)padded, (long long)max_entry);
    const int64_t o = (padded - span) / g.s[i] + 1;
    if (o != g.out[i])
      return fail(CT_ERR_INVALID_ARG,
                  "%s: g[%d] (%s) = %lld but (in + pad_before + pad_after - dil*(k-1) - 1) / stride + 1 = %lld", fn,
                  22 + i, geometry_name(22 + i), (long long)g.out[i], (long long)o);
  }
  g.Cg = g.C / g.G; g.Kg = g.K / g.G;
  g.KS = g.k[0] * g.k[1] * g.k[2];
  g.S = g.in[0] * g.in[1] * g.in[2];
  g.P = g.out[0] * g.out[1] * g.out[2];
  return CT_OK;
}

}  // namespace conv
}  // namespace ct

#endif
