/*
 * The pooling geometry of cortado/pool.h, read and checked once for both libraries
 * (libcortado_cpu and libcortado_cuda reject the same arrays with the same messages). Host code
 * only; include it at file scope after the library's declarations of ct::fail,
 * ct::dtype_name and ct::check_ptr (cpu/internal.h, cuda/common.cuh).
 */
#ifndef CORTADO_POOL_GEOMETRY_H
#define CORTADO_POOL_GEOMETRY_H

#include <stdint.h>

#include "cortado/pool.h"
#include "float_layout_args.h"

namespace ct {
namespace pool {

enum Kind { MAXP = 0, AVGP = 1, ADAPT = 2 };

/* D, H, W order in each array; P, OP, taps: input plane, output plane and window sizes. */
struct Geo {
  int64_t N, C;
  int64_t in[3], k[3], s[3], dil[3], pb[3], pa[3], out[3];
  int64_t P, OP, taps;
};

/* dtype (float32, float64), layout and the geometry pointer. */
inline int check_common(const char* fn, int dtype, int layout, const int64_t* g) {
  const int st = check_float_layout(fn, dtype, layout);
  return st ? st : check_ptr(fn, "g (geometry)", g);
}

/* Reads and checks the geometry; kind ADAPT ignores kernel/stride/dilation/padding and groups. */
inline int read_geo(const char* fn, const int64_t* g, Kind kind, Geo* o) {
  static const char* dn[3] = {"D", "H", "W"};
  o->N = g[0];
  o->C = g[1];
  if (g[0] < 0) return fail(CT_ERR_INVALID_ARG, "%s: g[0] (N) = %lld is negative", fn, (long long)g[0]);
  if (g[1] < 0) return fail(CT_ERR_INVALID_ARG, "%s: g[1] (C) = %lld is negative", fn, (long long)g[1]);
  if (kind != ADAPT) {
    if (g[2] != g[1])
      return fail(CT_ERR_INVALID_ARG, "%s: g[2] (K) = %lld must equal g[1] (C) = %lld for pooling", fn,
                  (long long)g[2], (long long)g[1]);
    if (g[3] != g[1] && !(g[1] == 0 && g[3] == 1))
      return fail(CT_ERR_INVALID_ARG, "%s: g[3] (groups) = %lld must equal g[1] (C) = %lld for pooling", fn,
                  (long long)g[3], (long long)g[1]);
  }
  int64_t total = o->N, t2;
  if (__builtin_mul_overflow(total, o->C, &total)) return fail(CT_ERR_INVALID_ARG, "%s: N*C overflows int64", fn);
  t2 = total;
  for (int d = 0; d < 3; ++d) {
    o->in[d] = g[4 + d];
    o->out[d] = g[22 + d];
    if (g[4 + d] < 1)
      return fail(CT_ERR_INVALID_ARG, "%s: g[%d] (input %s) = %lld must be >= 1", fn, 4 + d, dn[d], (long long)g[4 + d]);
    if (g[22 + d] < 1)
      return fail(CT_ERR_INVALID_ARG, "%s: g[%d] (output o%s) = %lld must be >= 1", fn, 22 + d, dn[d],
                  (long long)g[22 + d]);
    if (__builtin_mul_overflow(total, g[4 + d], &total) || __builtin_mul_overflow(t2, g[22 + d], &t2))
      return fail(CT_ERR_INVALID_ARG, "%s: tensor sizes overflow int64", fn);
    if (kind == ADAPT) {
      o->k[d] = o->s[d] = o->dil[d] = 1;
      o->pb[d] = o->pa[d] = 0;
      if (o->in[d] > ((int64_t)1 << 31) || o->out[d] > ((int64_t)1 << 31))
        return fail(CT_ERR_INVALID_ARG, "%s: dimension %s: input %lld / output %lld are too large", fn, dn[d],
                    (long long)o->in[d], (long long)o->out[d]);
      continue;
    }
    o->k[d] = g[7 + d];
    o->s[d] = g[10 + d];
    o->dil[d] = g[13 + d];
    o->pb[d] = g[16 + d];
    o->pa[d] = g[19 + d];
    if (o->k[d] < 1)
      return fail(CT_ERR_INVALID_ARG, "%s: g[%d] (kernel k%s) = %lld must be >= 1", fn, 7 + d, dn[d], (long long)o->k[d]);
    if (o->s[d] < 1)
      return fail(CT_ERR_INVALID_ARG, "%s: g[%d] (stride s%s) = %lld must be >= 1", fn, 10 + d, dn[d], (long long)o->s[d]);
    if (o->dil[d] < 1)
      return fail(CT_ERR_INVALID_ARG, "%s: g[%d] (dilation d%s) = %lld must be >= 1", fn, 13 + d, dn[d],
                  (long long)o->dil[d]);
    if (o->pb[d] < 0 || o->pb[d] > (int64_t)1 << 40)
      return fail(CT_ERR_INVALID_ARG, "%s: g[%d] (padding before p%s) = %lld is out of range", fn, 16 + d, dn[d],
                  (long long)o->pb[d]);
    if (o->pa[d] < 0 || o->pa[d] > (int64_t)1 << 40)
      return fail(CT_ERR_INVALID_ARG, "%s: g[%d] (padding after) = %lld is out of range", fn, 19 + d,
                  (long long)o->pa[d]);
    if (o->k[d] > (int64_t)1 << 31 || o->dil[d] > (int64_t)1 << 31 || o->s[d] > (int64_t)1 << 40)
      return fail(CT_ERR_INVALID_ARG, "%s: kernel/stride/dilation of dimension %s are too large", fn, dn[d]);
    const int64_t span = o->in[d] + o->pb[d] + o->pa[d] - o->dil[d] * (o->k[d] - 1) - 1;
    if (span < 0)
      return fail(CT_ERR_INVALID_ARG,
                  "%s: dimension %s: the dilated kernel %lld (k %lld, dilation %lld) exceeds the padded input %lld", fn,
                  dn[d], (long long)(o->dil[d] * (o->k[d] - 1) + 1), (long long)o->k[d], (long long)o->dil[d],
                  (long long)(o->in[d] + o->pb[d] + o->pa[d]));
    const int64_t want = span / o->s[d] + 1;
    if (want != o->out[d])
      return fail(CT_ERR_INVALID_ARG,
                  "%s: g[%d] (output o%s) = %lld but input %lld, kernel %lld, stride %lld, dilation %lld, padding "
                  "%lld+%lld give %lld",
                  fn, 22 + d, dn[d], (long long)o->out[d], (long long)o->in[d], (long long)o->k[d], (long long)o->s[d],
                  (long long)o->dil[d], (long long)o->pb[d], (long long)o->pa[d], (long long)want);
  }
  o->P = o->in[0] * o->in[1] * o->in[2];
  o->OP = o->out[0] * o->out[1] * o->out[2];
  o->taps = o->k[0] * o->k[1] * o->k[2];
  return CT_OK;
}

}  // namespace pool
}  // namespace ct

#endif
