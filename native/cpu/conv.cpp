/*
 * Convolution (cortado/conv.h): forward, backward-data, backward-weight over one 3-d geometry
 * (1-d and 2-d convolutions have D = H = 1), NCHW and NHWC, groups, dilation, asymmetric padding.
 *
 * Notation: F = 2 * N * K * (C/groups) * KS * P FLOPs per pass, KS = kD*kH*kW, P = oD*oH*oW,
 * S = D*H*W, e = sizeof(element).
 *
 * REFERENCE (this file): the definition, seven nested loops, float64 accumulation.
 *   forward:  y[n,k,o] = act(b[k] + sum_{c', r} x[n, g*Cg+c', o*s - pb + r*d] * w[k, c', r])
 *   backward-data gathers for every input position the (k, r, o) with o*s - pb + r*d = i,
 *   backward-weight sums x * dy over (n, o) for every weight entry. F FLOPs each, no workspace;
 *   memory traffic is whatever the caches give (the oracle, not a fast path).
 * IM2COL_GEMM (this file): per image and group, lower the receptive fields to a matrix
 *   (NCHW: col [Cg*KS, P]; NHWC: col [P, KS*Cg]) and call OpenBLAS gemm:
 *     forward  y_g = w_g * col             (NHWC: y_g = col * wp_g^T, wp = w reordered [K, KS, Cg])
 *     bwd-data dcol = w_g^T * dy_g, col2im (scatter-add) into dx (NCHW with stride 2 along w:
 *              taps kw, kw+1 added as one interleaved contiguous run, see col2im_pair_w2)
 *     bwd-w    dw_g += dy_g * col^T        (per-thread accumulators, summed at the end)
 *   F FLOPs in GEMM, plus KS*Cg*P*e bytes written and read per image and group for col (a 1x1,
 *   stride-1, unpadded convolution skips the lowering and hands x to GEMM as it lies).
 *   Images are spread over threads with OpenBLAS single-threaded inside (ct::BlasSingleThreaded);
 *   a single image runs serially with OpenBLAS's own threads.
 * DEPTHWISE, DIRECT_NHWC, WINOGRAD: conv_fast.cpp (cost notes there).
 * Backward-data through DIRECT_NHWC / WINOGRAD: with stride 1 and padding <= dil*(k-1) it is the
 *   forward convolution of dy with the flipped, channel-transposed weight and padding
 *   dil*(k-1) - pad, which this file sets up and hands to the forward fast path.
 *
 * WINOGRAD backward-weight: conv_winograd.cpp (the adjoint of the forward's factorisation).
 *
 * AUTO (float32): depthwise -> DEPTHWISE; 2-d 3x3 stride-1 dilation-1 with >= 16 input and >= 32
 *   output channels per group -> WINOGRAD for every pass (backward-data only where it is the
 *   flipped forward, i.e. padding <= 2); otherwise the forward takes DIRECT_NHWC for NHWC kernels
 *   other than a plain 1x1 with >= 8 outputs per group, and for NCHW kernels larger than 1x1 over
 *   at most 4 input channels without groups (stems), and everything else (and float64) takes
 *   IM2COL_GEMM. Measured numbers behind these rules: docs/performance.md (convolution section).
 * Every entry point validates g[] completely (ct_cpu_conv_* returns CT_ERR_INVALID_ARG naming
 * the entry) and catches every exception (bad_alloc -> CT_ERR_OUT_OF_MEMORY).
 */
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "conv_internal.h"

namespace ct {
namespace conv {

void act_rows(float* y, int64_t n, int act) {
  switch (act) {
#define CT_ACTIVATION(ident, name, functor)                          \
  case CT_ACTIVATION_##ident: {                                      \
    const sop::functor<float> f{};                                   \
    for (int64_t i = 0; i < n; ++i) y[i] = f(y[i]);                  \
    break;                                                           \
  }
#include "cortado/ops/activation.def"
#undef CT_ACTIVATION
    default: break;
  }
}

// ------------------------------------------------------------------ geometry
/* dtype, then the shared geometry checks (native/shared/conv_geometry.h), then the CPU's size limits. */
static int parse(const char* fn, int dtype, int layout, const int64_t* gv, Geo* out) {
  if (dtype != CT_F32 && dtype != CT_F64)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s is not supported (float32 and float64 only)", fn, dtype_name(dtype));
  int st = parse_geometry(fn, layout, gv, (int64_t)1 << 31, out);
  if (st != CT_OK) return st;
  const Geo& g = *out;
  // total sizes must fit comfortably in int64 (and in a blasint for the GEMM dimensions)
  __int128 xs = (__int128)g.N * g.C * g.S, ys = (__int128)g.N * g.K * g.P, ws = (__int128)g.K * g.Cg * g.KS;
  __int128 cs = (__int128)g.Cg * g.KS * g.P;
  const __int128 lim = (__int128)1 << 40;
  if (xs > lim || ys > lim || ws > lim || cs > lim)
    return fail(CT_ERR_INVALID_ARG, "%s: operands too large (x %lld, y %lld, w %lld elements)", fn, (long long)xs,
                (long long)ys, (long long)ws);
  return CT_OK;
}

static bool is_depthwise(const Geo& g) { return g.G == g.C && g.K == g.C; }
static bool is_winograd_shape(const Geo& g) {
  return g.in[0] == 1 && g.k[0] == 1 && g.pb[0] == 0 && g.pa[0] == 0 && g.k[1] == 3 && g.k[2] == 3 &&
         g.s[1] == 1 && g.s[2] == 1 && g.d[1] == 1 && g.d[2] == 1;
}
static bool is_pointwise_plain(const Geo& g) {  // 1x1, stride 1, no padding: col == x
  for (int i = 0; i < 3; ++i)
    if (g.k[i] != 1 || g.s[i] != 1 || g.pb[i] != 0 || g.pa[i] != 0) return false;
  return true;
}

template <class T> void epilogue(const Geo& g, T* y, const T* bias, int act) {
  if (!bias && act == CT_ACTIVATION_NONE) return;
  const int64_t N = g.N, K = g.K, P = g.P;
  auto f = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // r = n*K + k (NCHW) or n*P + p (NHWC)
      if (g.layout == CT_LAYOUT_NCHW) {
        T* row = y + r * P;
        T b = bias ? bias[r % K] : T(0);
        for (int64_t p = 0; p < P; ++p) row[p] = (T)act_d((double)(row[p] + b), act);
      } else {
        T* row = y + r * K;
        if (std::is_same_v<T, float>) {
          for (int64_t k = 0; k < K; ++k) row[k] = (T)act_f((float)(row[k] + (bias ? bias[k] : T(0))), act);
        } else {
          for (int64_t k = 0; k < K; ++k) row[k] = (T)act_d((double)(row[k] + (bias ? bias[k] : T(0))), act);
        }
      }
    }
  };
  int64_t rows = g.layout == CT_LAYOUT_NCHW ? N * K : N * P;
  parallel_range(rows, g.layout == CT_LAYOUT_NCHW ? P * 8 : K * 8, f);
}
template void epilogue<float>(const Geo&, float*, const float*, int);
template void epilogue<double>(const Geo&, double*, const double*, int);

// ------------------------------------------------------------------ REFERENCE
template <class T>
static void ref_forward(const Geo& g, const T* x, const T* w, const T* bias, int act, T* y) {
  const Str xs = strides_of(g.layout, g.C, g.in), ys = strides_of(g.layout, g.K, g.out);
  parallel_range(g.N * g.K, g.P * g.Cg * g.KS, [&](int64_t i0, int64_t i1) {
    for (int64_t nk = i0; nk < i1; ++nk) {
      const int64_t n = nk / g.K, k = nk % g.K, grp = k / g.Kg;
      for (int64_t od = 0; od < g.out[0]; ++od)
        for (int64_t oh = 0; oh < g.out[1]; ++oh)
          for (int64_t ow = 0; ow < g.out[2]; ++ow) {
            double acc = bias ? (double)bias[k] : 0.0;
            for (int64_t c = 0; c < g.Cg; ++c)
              for_valid_taps(g, od, oh, ow, [&](int64_t r, int64_t id, int64_t ih, int64_t iw) {
                double xv = x[n * xs.n + (grp * g.Cg + c) * xs.c + id * xs.sp[0] + ih * xs.sp[1] + iw * xs.sp[2]];
                acc += xv * (double)w[(k * g.Cg + c) * g.KS + r];
              });
            y[n * ys.n + k * ys.c + od * ys.sp[0] + oh * ys.sp[1] + ow * ys.sp[2]] = (T)act_d(acc, act);
          }
    }
  });
}

template <class T>
static void ref_backward_data(const Geo& g, const T* dy, const T* w, T* dx) {
  const Str xs = strides_of(g.layout, g.C, g.in), ys = strides_of(g.layout, g.K, g.out);
  parallel_range(g.N * g.C, g.S * g.Kg * g.KS, [&](int64_t i0, int64_t i1) {
    for (int64_t nc = i0; nc < i1; ++nc) {
      const int64_t n = nc / g.C, c = nc % g.C, grp = c / g.Cg, cc = c % g.Cg;
      for (int64_t id = 0; id < g.in[0]; ++id)
        for (int64_t ih = 0; ih < g.in[1]; ++ih)
          for (int64_t iw = 0; iw < g.in[2]; ++iw) {
            double acc = 0;
            for (int64_t kk = 0; kk < g.Kg; ++kk) {
              const int64_t k = grp * g.Kg + kk;
              for (int64_t kd = 0; kd < g.k[0]; ++kd) {
                int64_t td = id + g.pb[0] - kd * g.d[0];
                if (td < 0 || td % g.s[0]) continue;
                int64_t od = td / g.s[0];
                if (od >= g.out[0]) continue;
                for (int64_t kh = 0; kh < g.k[1]; ++kh) {
                  int64_t th = ih + g.pb[1] - kh * g.d[1];
                  if (th < 0 || th % g.s[1]) continue;
                  int64_t oh = th / g.s[1];
                  if (oh >= g.out[1]) continue;
                  for (int64_t kw = 0; kw < g.k[2]; ++kw) {
                    int64_t tw = iw + g.pb[2] - kw * g.d[2];
                    if (tw < 0 || tw % g.s[2]) continue;
                    int64_t ow = tw / g.s[2];
                    if (ow >= g.out[2]) continue;
                    double dv = dy[n * ys.n + k * ys.c + od * ys.sp[0] + oh * ys.sp[1] + ow * ys.sp[2]];
                    double wv = w[((k * g.Cg + cc) * g.k[0] + kd) * g.k[1] * g.k[2] + kh * g.k[2] + kw];
                    acc += dv * wv;
                  }
                }
              }
            }
            dx[n * xs.n + c * xs.c + id * xs.sp[0] + ih * xs.sp[1] + iw * xs.sp[2]] = (T)acc;
          }
    }
  });
}

template <class T>
static void ref_backward_weight(const Geo& g, const T* x, const T* dy, T* dw, T* dbias) {
  const Str xs = strides_of(g.layout, g.C, g.in), ys = strides_of(g.layout, g.K, g.out);
  parallel_range(g.K * g.Cg * g.KS, g.N * g.P, [&](int64_t i0, int64_t i1) {
    for (int64_t e = i0; e < i1; ++e) {
      int64_t kw = e % g.k[2], t = e / g.k[2];
      int64_t kh = t % g.k[1]; t /= g.k[1];
      int64_t kd = t % g.k[0]; t /= g.k[0];
      int64_t cc = t % g.Cg, k = t / g.Cg, grp = k / g.Kg;
      double acc = 0;
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t od = 0; od < g.out[0]; ++od) {
          int64_t id = od * g.s[0] - g.pb[0] + kd * g.d[0];
          if (id < 0 || id >= g.in[0]) continue;
          for (int64_t oh = 0; oh < g.out[1]; ++oh) {
            int64_t ih = oh * g.s[1] - g.pb[1] + kh * g.d[1];
            if (ih < 0 || ih >= g.in[1]) continue;
            for (int64_t ow = 0; ow < g.out[2]; ++ow) {
              int64_t iw = ow * g.s[2] - g.pb[2] + kw * g.d[2];
              if (iw < 0 || iw >= g.in[2]) continue;
              acc += (double)x[n * xs.n + (grp * g.Cg + cc) * xs.c + id * xs.sp[0] + ih * xs.sp[1] + iw * xs.sp[2]] *
                     (double)dy[n * ys.n + k * ys.c + od * ys.sp[0] + oh * ys.sp[1] + ow * ys.sp[2]];
            }
          }
        }
      dw[e] = (T)acc;
    }
  });
  if (dbias) {
    for (int64_t k = 0; k < g.K; ++k) {
      double acc = 0;
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t p = 0; p < g.P; ++p)
          acc += (double)dy[n * ys.n + k * ys.c + (g.layout == CT_LAYOUT_NCHW ? p : p * g.K)];
      dbias[k] = (T)acc;
    }
  }
}

// ------------------------------------------------------------------ IM2COL_GEMM
static inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, const float* a,
                        int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, 1.0f, a, (blasint)lda, b, (blasint)ldb, beta,
              c, (blasint)ldc);
}
static inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, const double* a,
                        int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, 1.0, a, (blasint)lda, b, (blasint)ldb, beta,
              c, (blasint)ldc);
}

/* Output index range [lo, hi) for which o*s - p + r*d lies in [0, in). */
static inline void valid_range(int64_t out, int64_t s, int64_t off, int64_t in, int64_t* lo, int64_t* hi) {
  // i = o*s + off, need 0 <= i < in
  int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t h = in - off <= 0 ? 0 : (in - off + s - 1) / s;
  if (h > out) h = out;
  if (l > h) l = h;
  *lo = l; *hi = h;
}

/* col2im of the col rows of taps kw and kw+1 (NCHW, stride 2 and dilation 1 along w) into one
 * row of x: the two taps land on neighbouring columns, x[2*ow + kw - p] and x[2*ow + kw + 1 - p],
 * so where both are valid the rows are interleaved into one contiguous run (the compiler turns
 * the grouped load-add-store into permutes and full vectors; the strided single-tap loop does not
 * vectorize). x0 points at column kw - p of the row; c0, c1 are the two col rows. */
template <class T>
static void col2im_pair_w2(T* x0, const T* c0, const T* c1, int64_t lo0, int64_t hi0, int64_t lo1, int64_t hi1) {
  const int64_t lo = std::max(lo0, lo1), hi = std::min(hi0, hi1);
  for (int64_t ow = lo0; ow < std::min(hi0, lo); ++ow) x0[2 * ow] += c0[ow];
  for (int64_t ow = lo1; ow < std::min(hi1, lo); ++ow) x0[2 * ow + 1] += c1[ow];
  for (int64_t ow = lo; ow < hi; ++ow) {
    x0[2 * ow] += c0[ow];
    x0[2 * ow + 1] += c1[ow];
  }
  for (int64_t ow = std::max(lo0, hi); ow < hi0; ++ow) x0[2 * ow] += c0[ow];
  for (int64_t ow = std::max(lo1, hi); ow < hi1; ++ow) x0[2 * ow + 1] += c1[ow];
}

/* im2col for image n, group grp. NCHW: col[(c, kd, kh, kw), p]; NHWC: col[p, (kd, kh, kw, c)].
 * If accumulate_back, does col2im instead: x[...] += col[...] (x must be pre-zeroed). */
template <class T, bool Back>
static void lower(const Geo& g, T* x, int64_t n, int64_t grp, T* col) {
  const Str xs = strides_of(g.layout, g.C, g.in);
  T* xb = x + n * xs.n + grp * g.Cg * xs.c;
  const int64_t oD = g.out[0], oH = g.out[1], oW = g.out[2];
  if (g.layout == CT_LAYOUT_NCHW) {
    for (int64_t c = 0; c < g.Cg; ++c)
      for (int64_t kd = 0; kd < g.k[0]; ++kd)
        for (int64_t kh = 0; kh < g.k[1]; ++kh) {
          // col2im with stride 2 along w (transposed convolutions that upsample by 2): taps in pairs
          const bool pairs = Back && g.s[2] == 2 && g.d[2] == 1;
          for (int64_t kw = 0; pairs && kw + 1 < g.k[2]; kw += 2) {
            const T* c0 = col + (((c * g.k[0] + kd) * g.k[1] + kh) * g.k[2] + kw) * g.P;
            const T* c1 = c0 + g.P;
            int64_t lo0, hi0, lo1, hi1;
            valid_range(oW, 2, kw - g.pb[2], g.in[2], &lo0, &hi0);
            valid_range(oW, 2, kw + 1 - g.pb[2], g.in[2], &lo1, &hi1);
            for (int64_t od = 0; od < oD; ++od) {
              const int64_t id = od * g.s[0] - g.pb[0] + kd * g.d[0];
              if (id < 0 || id >= g.in[0]) continue;
              for (int64_t oh = 0; oh < oH; ++oh) {
                const int64_t ih = oh * g.s[1] - g.pb[1] + kh * g.d[1];
                if (ih < 0 || ih >= g.in[1]) continue;
                const int64_t p0 = (od * oH + oh) * oW;
                col2im_pair_w2(xb + c * xs.c + id * xs.sp[0] + ih * xs.sp[1] - g.pb[2] + kw, c0 + p0, c1 + p0, lo0, hi0,
                               lo1, hi1);
              }
            }
          }
          for (int64_t kw = pairs ? g.k[2] & ~(int64_t)1 : 0; kw < g.k[2]; ++kw) {
            T* crow = col + (((c * g.k[0] + kd) * g.k[1] + kh) * g.k[2] + kw) * g.P;
            int64_t wlo, whi;
            valid_range(oW, g.s[2], kw * g.d[2] - g.pb[2], g.in[2], &wlo, &whi);
            for (int64_t od = 0; od < oD; ++od) {
              int64_t id = od * g.s[0] - g.pb[0] + kd * g.d[0];
              for (int64_t oh = 0; oh < oH; ++oh) {
                int64_t ih = oh * g.s[1] - g.pb[1] + kh * g.d[1];
                T* cr = crow + (od * oH + oh) * oW;
                if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1]) {
                  if (!Back) std::fill(cr, cr + oW, T(0));
                  continue;
                }
                T* xr = xb + c * xs.c + id * xs.sp[0] + ih * xs.sp[1] - g.pb[2] + kw * g.d[2];
                const int64_t sw = g.s[2];
                if (!Back) {
                  for (int64_t ow = 0; ow < wlo; ++ow) cr[ow] = 0;
                  if (sw == 1)
                    std::memcpy(cr + wlo, xr + wlo, (whi - wlo) * sizeof(T));
                  else
                    for (int64_t ow = wlo; ow < whi; ++ow) cr[ow] = xr[ow * sw];
                  for (int64_t ow = whi; ow < oW; ++ow) cr[ow] = 0;
                } else {
                  for (int64_t ow = wlo; ow < whi; ++ow) xr[ow * sw] += cr[ow];
                }
              }
            }
          }
        }
  } else {
    const int64_t rowlen = g.KS * g.Cg;
    for (int64_t od = 0; od < oD; ++od)
      for (int64_t oh = 0; oh < oH; ++oh)
        for (int64_t ow = 0; ow < oW; ++ow) {
          T* cp = col + ((od * oH + oh) * oW + ow) * rowlen;
          for (int64_t kd = 0; kd < g.k[0]; ++kd) {
            int64_t id = od * g.s[0] - g.pb[0] + kd * g.d[0];
            bool vd = id >= 0 && id < g.in[0];
            for (int64_t kh = 0; kh < g.k[1]; ++kh) {
              int64_t ih = oh * g.s[1] - g.pb[1] + kh * g.d[1];
              bool vh = vd && ih >= 0 && ih < g.in[1];
              for (int64_t kw = 0; kw < g.k[2]; ++kw, cp += g.Cg) {
                int64_t iw = ow * g.s[2] - g.pb[2] + kw * g.d[2];
                if (!(vh && iw >= 0 && iw < g.in[2])) {
                  if (!Back) std::fill(cp, cp + g.Cg, T(0));
                  continue;
                }
                T* xp = xb + id * xs.sp[0] + ih * xs.sp[1] + iw * xs.sp[2];
                if (!Back)
                  std::memcpy(cp, xp, g.Cg * sizeof(T));
                else
                  for (int64_t c = 0; c < g.Cg; ++c) xp[c] += cp[c];
              }
            }
          }
        }
  }
}

/* w [K, Cg, KS] -> wp [K, KS, Cg] (NHWC GEMM operand), or back. */
template <class T> static void reorder_w(const Geo& g, const T* src, T* dst, bool to_packed) {
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < g.Cg; ++c)
      for (int64_t r = 0; r < g.KS; ++r) {
        int64_t a = (k * g.Cg + c) * g.KS + r, b = (k * g.KS + r) * g.Cg + c;
        if (to_packed) dst[b] = src[a]; else dst[a] = src[b];
      }
}

/* Runs body(n, tid) over the images: in parallel with single-threaded BLAS when there are several
 * images, else serially with OpenBLAS's threads. */
template <class F> static void over_images(const Geo& g, int64_t work_per_image, F&& body) {
  int nt = threads();
  if (nt > g.N) nt = (int)g.N;
  if (work_per_image * g.N < 200000) nt = 1;
  if (nt <= 1) {
    for (int64_t n = 0; n < g.N; ++n) body(n, 0);
    return;
  }
  BlasSingleThreaded single;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t n = 0; n < g.N; ++n) body(n, omp_get_thread_num());
}
/* Like over_images, for reductions over images: image n always goes to slot
 * floor(n * slots / N) (contiguous blocks, one block per loop iteration), so each slot's
 * accumulator sums the same images in the same order whatever thread runs it: results are
 * bit-identical run to run for a given thread count. */
template <class F> static void over_image_blocks(const Geo& g, int slots, int64_t work_per_image, F&& body) {
  auto block = [&](int b) {
    const int64_t lo = g.N * b / slots, hi = g.N * (b + 1) / slots;
    for (int64_t n = lo; n < hi; ++n) body(n, b);
  };
  int nt = threads();
  if (nt > slots) nt = slots;
  if (work_per_image * g.N < 200000) nt = 1;
  if (nt <= 1) {
    for (int b = 0; b < slots; ++b) block(b);
    return;
  }
  BlasSingleThreaded single;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
  for (int b = 0; b < slots; ++b) block(b);
}
static int images_threads(const Geo& g) {
  int nt = threads();
  return nt > g.N ? (int)std::max<int64_t>(g.N, 1) : nt;
}

template <class T>
static void gemm_forward(const Geo& g, const T* x, const T* w, const T* bias, int act, T* y) {
  const bool nchw = g.layout == CT_LAYOUT_NCHW, plain = is_pointwise_plain(g);
  const int64_t R = g.Cg * g.KS;
  std::vector<T> wp;
  if (!nchw && g.KS > 1) { wp.resize(g.K * R); reorder_w(g, w, wp.data(), true); }
  const T* wm = (!nchw && g.KS > 1) ? wp.data() : w;
  const int nt = images_threads(g);
  std::vector<std::unique_ptr<HostBuffer<T>>> cols(nt);
  for (auto& c : cols) c = std::make_unique<HostBuffer<T>>(plain ? 0 : R * g.P);
  over_images(g, g.K * R * g.P, [&](int64_t n, int tid) {
    HostBuffer<T>& col = *cols[tid];
    for (int64_t grp = 0; grp < g.G; ++grp) {
      const T* B;
      int64_t ldb;
      if (plain) {
        B = nchw ? x + n * g.C * g.S + grp * g.Cg * g.S : x + n * g.S * g.C + grp * g.Cg;
        ldb = nchw ? g.S : g.C;
      } else {
        lower<T, false>(g, const_cast<T*>(x), n, grp, col.data());
        B = col.data();
        ldb = nchw ? g.P : R;
      }
      if (nchw)
        gemm(CblasNoTrans, CblasNoTrans, g.Kg, g.P, R, wm + grp * g.Kg * R, R, B, ldb, T(0),
             y + n * g.K * g.P + grp * g.Kg * g.P, g.P);
      else
        gemm(CblasNoTrans, CblasTrans, g.P, g.Kg, R, B, ldb, wm + grp * g.Kg * R, R, T(0), y + n * g.P * g.K + grp * g.Kg,
             g.K);
    }
  });
  epilogue(g, y, bias, act);
}

template <class T>
static void gemm_backward_data(const Geo& g, const T* dy, const T* w, T* dx) {
  const bool nchw = g.layout == CT_LAYOUT_NCHW, plain = is_pointwise_plain(g);
  const int64_t R = g.Cg * g.KS;
  std::vector<T> wp;
  if (!nchw && g.KS > 1) { wp.resize(g.K * R); reorder_w(g, w, wp.data(), true); }
  const T* wm = (!nchw && g.KS > 1) ? wp.data() : w;
  const int nt = images_threads(g);
  std::vector<std::unique_ptr<HostBuffer<T>>> cols(nt);
  for (auto& c : cols) c = std::make_unique<HostBuffer<T>>(plain ? 0 : R * g.P);
  over_images(g, g.K * R * g.P, [&](int64_t n, int tid) {
    HostBuffer<T>& col = *cols[tid];
    if (!plain) {
      std::fill(dx + n * g.C * g.S, dx + (n + 1) * g.C * g.S, T(0));
    }
    for (int64_t grp = 0; grp < g.G; ++grp) {
      T* out = plain ? (nchw ? dx + n * g.C * g.S + grp * g.Cg * g.S : dx + n * g.S * g.C + grp * g.Cg) : col.data();
      int64_t ldo = plain ? (nchw ? g.S : g.C) : (nchw ? g.P : R);
      if (nchw)
        gemm(CblasTrans, CblasNoTrans, R, g.P, g.Kg, wm + grp * g.Kg * R, R, dy + n * g.K * g.P + grp * g.Kg * g.P, g.P,
             T(0), out, ldo);
      else
        gemm(CblasNoTrans, CblasNoTrans, g.P, R, g.Kg, dy + n * g.P * g.K + grp * g.Kg, g.K, wm + grp * g.Kg * R, R, T(0),
             out, ldo);
      if (!plain) lower<T, true>(g, dx, n, grp, col.data());
    }
  });
}

/* dbias[k] = sum over (n, p) of dy: float64 sums, vectorized (omp simd) along the contiguous dim.
 * NCHW: threads split the channels (each channel is N runs of P); NHWC: threads split the N*P
 * rows of K channels and keep float64 partial sums, added at the end. Reads N*K*P elements once. */
template <class T> static void bias_gradient(const Geo& g, const T* dy, T* dbias) {
  const int64_t N = g.N, K = g.K, P = g.P;
  if (g.layout == CT_LAYOUT_NCHW) {
    parallel_range(K, N * P, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        double s = 0;
        for (int64_t n = 0; n < N; ++n) {
          const T* r = dy + (n * K + k) * P;
          double a = 0;
#pragma omp simd reduction(+ : a)
          for (int64_t p = 0; p < P; ++p) a += (double)r[p];
          s += a;
        }
        dbias[k] = (T)s;
      }
    });
    return;
  }
  const int64_t rows = N * P;
  const int nt = std::max(1, std::min<int>(threads_for(rows * K), (int)std::min<int64_t>(rows, 1 << 20)));
  std::vector<double> part((size_t)nt * K, 0.0);
  parallel_range(nt, rows * K / nt, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      double* b = part.data() + t * K;
      const int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = dy + r * K;
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) b[k] += (double)row[k];
      }
    }
  });
  for (int64_t k = 0; k < K; ++k) {
    double s = 0;
    for (int t = 0; t < nt; ++t) s += part[(size_t)t * K + k];
    dbias[k] = (T)s;
  }
}

template <class T>
static void gemm_backward_weight(const Geo& g, const T* x, const T* dy, T* dw, T* dbias) {
  const bool nchw = g.layout == CT_LAYOUT_NCHW, plain = is_pointwise_plain(g);
  const int64_t R = g.Cg * g.KS;
  const int nt = images_threads(g);
  std::vector<std::unique_ptr<HostBuffer<T>>> cols(nt);
  for (auto& c : cols) c = std::make_unique<HostBuffer<T>>(plain ? 0 : R * g.P);
  std::vector<std::vector<T>> acc(nt, std::vector<T>(g.K * R, T(0)));
  over_image_blocks(g, nt, g.K * R * g.P, [&](int64_t n, int tid) {
    HostBuffer<T>& col = *cols[tid];
    T* a = acc[tid].data();
    for (int64_t grp = 0; grp < g.G; ++grp) {
      const T* B;
      int64_t ldb;
      if (plain) {
        B = nchw ? x + n * g.C * g.S + grp * g.Cg * g.S : x + n * g.S * g.C + grp * g.Cg;
        ldb = nchw ? g.S : g.C;
      } else {
        lower<T, false>(g, const_cast<T*>(x), n, grp, col.data());
        B = col.data();
        ldb = nchw ? g.P : R;
      }
      if (nchw)
        gemm(CblasNoTrans, CblasTrans, g.Kg, R, g.P, dy + n * g.K * g.P + grp * g.Kg * g.P, g.P, B, ldb, T(1),
             a + grp * g.Kg * R, R);
      else
        gemm(CblasTrans, CblasNoTrans, g.Kg, R, g.P, dy + n * g.P * g.K + grp * g.Kg, g.K, B, ldb, T(1),
             a + grp * g.Kg * R, R);
    }
  });
  std::vector<T> sum(g.K * R, T(0));
  for (auto& a : acc)
      for (int64_t i = 0; i < g.K * R; ++i) sum[i] += a[i];
  if (!nchw && g.KS > 1)
    reorder_w(g, sum.data(), dw, false);
  else
    std::memcpy(dw, sum.data(), g.K * R * sizeof(T));
  if (dbias) bias_gradient(g, dy, dbias);
}

// ------------------------------------------------------------------ selection
/* Backward-data is a forward convolution of dy with the flipped weight (stride 1, pad <= dil*(k-1)). */
static bool flip_applies(const Geo& g) {
  for (int i = 0; i < 3; ++i) {
    const int64_t span = g.d[i] * (g.k[i] - 1);
    if (g.s[i] != 1 || g.pb[i] > span || g.pa[i] > span) return false;
  }
  return true;
}

static int choose(int dtype, const Geo& g, int pass) {
  if (dtype != CT_F32) return CT_CONV_ALGO_IM2COL_GEMM;
  if (is_depthwise(g)) return CT_CONV_ALGO_DEPTHWISE;
  const bool nhwc = g.layout == CT_LAYOUT_NHWC;
  // Winograd's GEMMs are 32 output channels wide: below that, direct convolution wastes less
  if (is_winograd_shape(g) && g.Cg >= 16 && g.Kg >= 32 && (pass != 1 || flip_applies(g))) return CT_CONV_ALGO_WINOGRAD;
  if (pass != 0) return CT_CONV_ALGO_IM2COL_GEMM;
  if (nhwc && !is_pointwise_plain(g) && g.Kg >= 8) return CT_CONV_ALGO_DIRECT_NHWC;
  // NCHW images with few channels (RGB or grayscale stems): im2col's buffer is KS times the image
  // and its GEMM's reduction only Cg*KS long; DIRECT_NHWC transposes the image in its padded copy
  // (the 7x7/2 stem 3 -> 64 at 224^2, batch 32, one Zen 5 core: 118.5 ms -> 90.5 ms, 71% of peak)
  if (!nhwc && g.G == 1 && g.Cg <= 4 && g.KS > 1 && g.Kg >= 8) return CT_CONV_ALGO_DIRECT_NHWC;
  return CT_CONV_ALGO_IM2COL_GEMM;
}

static const char* algo_name(int a) {
  switch (a) {
    case CT_CONV_ALGO_AUTO: return "AUTO";
    case CT_CONV_ALGO_REFERENCE: return "REFERENCE";
    case CT_CONV_ALGO_IM2COL_GEMM: return "IM2COL_GEMM";
    case CT_CONV_ALGO_DIRECT_NHWC: return "DIRECT_NHWC";
    case CT_CONV_ALGO_WINOGRAD: return "WINOGRAD";
    case CT_CONV_ALGO_DEPTHWISE: return "DEPTHWISE";
    default: return "?";
  }
}

/* Checks that a fast (F32-only) algorithm applies; returns CT_OK or CT_ERR_UNSUPPORTED. */
static int check_fast(const char* fn, int algo, int dtype, const Geo& g) {
  if (dtype != CT_F32)
    return fail(CT_ERR_UNSUPPORTED, "%s: algorithm %s supports float32 only (got %s)", fn, algo_name(algo), dtype_name(dtype));
  if (algo == CT_CONV_ALGO_DEPTHWISE && !is_depthwise(g))
    return fail(CT_ERR_UNSUPPORTED, "%s: DEPTHWISE needs groups == C == K (got groups %lld, C %lld, K %lld)", fn,
                (long long)g.G, (long long)g.C, (long long)g.K);
  if (algo == CT_CONV_ALGO_WINOGRAD && !is_winograd_shape(g))
    return fail(CT_ERR_UNSUPPORTED,
                "%s: WINOGRAD needs a 2-d 3x3 kernel with stride 1 and dilation 1 (got kernel %lldx%lldx%lld, stride "
                "%lldx%lldx%lld, dilation %lldx%lldx%lld)",
                fn, (long long)g.k[0], (long long)g.k[1], (long long)g.k[2], (long long)g.s[0], (long long)g.s[1],
                (long long)g.s[2], (long long)g.d[0], (long long)g.d[1], (long long)g.d[2]);
  return CT_OK;
}

static int check_algo(const char* fn, int algo) {
  if (algo < CT_CONV_ALGO_AUTO || algo > CT_CONV_ALGO_DEPTHWISE)
    return fail(CT_ERR_INVALID_ARG, "%s: unknown algorithm %d", fn, algo);
  return CT_OK;
}

/* Backward-data as a forward convolution (stride 1, pad <= dil*(k-1)) with flipped weights. */
static int flipped_backward_data(const char* fn, int algo, const Geo& g, const float* dy, const float* w, float* dx) {
  if (!flip_applies(g))
    return fail(CT_ERR_UNSUPPORTED,
                "%s: %s backward-data needs stride 1 and padding <= dilation*(kernel-1) in every dimension", fn,
                algo_name(algo));
  Geo t = g;
  t.C = g.K; t.K = g.C; t.Cg = g.Kg; t.Kg = g.Cg;
  for (int i = 0; i < 3; ++i) {
    int64_t span = g.d[i] * (g.k[i] - 1);
    t.in[i] = g.out[i]; t.out[i] = g.in[i]; t.pb[i] = span - g.pb[i]; t.pa[i] = span - g.pa[i];
  }
  t.S = g.P; t.P = g.S;
  std::vector<float> wt(g.K * g.Cg * g.KS);
  for (int64_t grp = 0; grp < g.G; ++grp)
    for (int64_t kk = 0; kk < g.Kg; ++kk)
      for (int64_t cc = 0; cc < g.Cg; ++cc)
        for (int64_t r = 0; r < g.KS; ++r)
          wt[((grp * g.Cg + cc) * g.Kg + kk) * g.KS + (g.KS - 1 - r)] = w[((grp * g.Kg + kk) * g.Cg + cc) * g.KS + r];
  if (algo == CT_CONV_ALGO_WINOGRAD)
    winograd_forward(t, dy, wt.data(), nullptr, CT_ACTIVATION_NONE, dx);
  else
    direct_nhwc_forward(t, dy, wt.data(), nullptr, CT_ACTIVATION_NONE, dx);
  return CT_OK;
}

}  // namespace conv
}  // namespace ct

using namespace ct;
using namespace ct::conv;

extern "C" {

int ct_cpu_conv_choose(int dtype, int layout, const int64_t* gv, int pass, int64_t /*stream*/) {
  CT_TRY
  Geo g;
  int st = parse("conv_choose", dtype, layout, gv, &g);
  if (st != CT_OK) return -st;
  if (pass < 0 || pass > 2) return -fail(CT_ERR_INVALID_ARG, "conv_choose: pass %d is not 0, 1 or 2", pass);
  return choose(dtype, g, pass);
  CT_CATCH("conv_choose")
}

int ct_cpu_conv_forward(int dtype, int layout, int algorithm, const int64_t* gv, const void* x, const void* w,
                        const void* bias, int activation, void* y, int64_t /*stream*/) {
  static const char* fn = "conv_forward";
  CT_TRY
  Geo g;
  int st = parse(fn, dtype, layout, gv, &g);
  if (st == CT_OK) st = check_algo(fn, algorithm);
  if (st != CT_OK) return st;
  if (activation < CT_ACTIVATION_NONE || activation >= CT_ACTIVATION_COUNT)
    return fail(CT_ERR_INVALID_ARG, "%s: unknown activation %d", fn, activation);
  if (g.N == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "w", w)) || (st = check_ptr(fn, "y", y))) return st;
  int algo = algorithm == CT_CONV_ALGO_AUTO ? choose(dtype, g, 0) : algorithm;
  if (algo == CT_CONV_ALGO_REFERENCE || algo == CT_CONV_ALGO_IM2COL_GEMM) {
    bool ref = algo == CT_CONV_ALGO_REFERENCE;
    if (dtype == CT_F32) {
      auto xx = (const float*)x; auto ww = (const float*)w; auto bb = (const float*)bias; auto yy = (float*)y;
      if (ref) ref_forward(g, xx, ww, bb, activation, yy); else gemm_forward(g, xx, ww, bb, activation, yy);
    } else {
      auto xx = (const double*)x; auto ww = (const double*)w; auto bb = (const double*)bias; auto yy = (double*)y;
      if (ref) ref_forward(g, xx, ww, bb, activation, yy); else gemm_forward(g, xx, ww, bb, activation, yy);
    }
    return CT_OK;
  }
  if ((st = check_fast(fn, algo, dtype, g))) return st;
  auto xx = (const float*)x; auto ww = (const float*)w; auto bb = (const float*)bias; auto yy = (float*)y;
  if (algo == CT_CONV_ALGO_DEPTHWISE) depthwise_forward(g, xx, ww, bb, activation, yy);
  else if (algo == CT_CONV_ALGO_DIRECT_NHWC) direct_nhwc_forward(g, xx, ww, bb, activation, yy);
  else winograd_forward(g, xx, ww, bb, activation, yy);
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"

namespace {
constexpr int64_t PACK_HEADER = 16;           // floats before the packed weight
constexpr int32_t PACK_MAGIC = 0x57505443;    // "CTPW"

/* The algorithm a packed weight is for: `algorithm`, AUTO resolved; -1 when it has no packed layout. */
int packed_algo(int dtype, int algorithm, const Geo& g) {
  const int algo = algorithm == CT_CONV_ALGO_AUTO ? choose(dtype, g, 0) : algorithm;
  if (dtype != CT_F32 || (algo != CT_CONV_ALGO_DIRECT_NHWC && algo != CT_CONV_ALGO_WINOGRAD)) return -1;
  return algo;
}

int64_t packed_body(int algo, const Geo& g) {
  return algo == CT_CONV_ALGO_WINOGRAD ? winograd_packed_len(g) : direct_nhwc_packed_len(g);
}

/* Parses the geometry of a pack call; *algo: the algorithm packed for (AUTO resolved), -1 if it has no packed layout. */
int pack_geometry(const char* fn, int dtype, int layout, int algorithm, const int64_t* gv, Geo* g, int* algo) {
  int st = parse(fn, dtype, layout, gv, g);
  if (st == CT_OK) st = check_algo(fn, algorithm);
  if (st != CT_OK) return st;
  *algo = packed_algo(dtype, algorithm, *g);
  return *algo < 0 ? CT_OK : check_fast(fn, *algo, dtype, *g);
}

/* The header words: magic, algorithm, groups, K and C per group, taps, block width. */
void header_of(int algo, const Geo& g, int32_t* h) {
  const int64_t v[7] = {PACK_MAGIC, algo, g.G, g.Kg, g.Cg, g.KS,
                        algo == CT_CONV_ALGO_WINOGRAD ? 32 : direct_nhwc_block()};
  for (int i = 0; i < 16; ++i) h[i] = i < 7 ? (int32_t)v[i] : 0;
}
}  // namespace

extern "C" {

int64_t ct_cpu_conv_packed_len(int dtype, int layout, int algorithm, const int64_t* gv, int64_t /*stream*/) {
  static const char* fn = "conv_packed_len";
  int64_t len = 0;
  const int status = [&]() -> int {
    CT_TRY
    Geo g;
    int algo;
    const int st = pack_geometry(fn, dtype, layout, algorithm, gv, &g, &algo);
    if (st == CT_OK && algo >= 0) len = PACK_HEADER + packed_body(algo, g);  // no packed layout: length 0
    return st;
    CT_CATCH(fn)
  }();
  return status == CT_OK ? len : -(int64_t)status;
}

int ct_cpu_conv_pack_weight(int dtype, int layout, int algorithm, const int64_t* gv, const void* w, void* packed,
                            int64_t packed_len, int64_t /*stream*/) {
  static const char* fn = "conv_pack_weight";
  CT_TRY
  Geo g;
  int algo;
  int st = pack_geometry(fn, dtype, layout, algorithm, gv, &g, &algo);
  if (st != CT_OK) return st;
  if (algo < 0)
    return fail(CT_ERR_UNSUPPORTED, "%s: algorithm %s (%s) has no packed weight layout", fn,
                algo_name(algorithm == CT_CONV_ALGO_AUTO ? choose(dtype, g, 0) : algorithm), dtype_name(dtype));
  if ((st = check_ptr(fn, "w", w)) || (st = check_ptr(fn, "packed", packed))) return st;
  const int64_t want = PACK_HEADER + packed_body(algo, g);
  if (packed_len != want)
    return fail(CT_ERR_INVALID_ARG, "%s: packed has %lld floats, the %s layout of this geometry needs %lld", fn,
                (long long)packed_len, algo_name(algo), (long long)want);
  float* out = (float*)packed;
  int32_t h[16];
  header_of(algo, g, h);
  std::memcpy(out, h, sizeof h);
  if (algo == CT_CONV_ALGO_WINOGRAD) winograd_pack(g, (const float*)w, out + PACK_HEADER);
  else direct_nhwc_pack(g, (const float*)w, out + PACK_HEADER);
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_conv_forward_packed(int dtype, int layout, const int64_t* gv, const void* x, const void* packed,
                               int64_t packed_len, const void* bias, int activation, void* y, int64_t /*stream*/) {
  static const char* fn = "conv_forward_packed";
  CT_TRY
  Geo g;
  int st = parse(fn, dtype, layout, gv, &g);
  if (st != CT_OK) return st;
  if (activation < CT_ACTIVATION_NONE || activation >= CT_ACTIVATION_COUNT)
    return fail(CT_ERR_INVALID_ARG, "%s: unknown activation %d", fn, activation);
  if ((st = check_ptr(fn, "packed", packed))) return st;
  if (packed_len < PACK_HEADER)
    return fail(CT_ERR_INVALID_ARG, "%s: packed has %lld floats, fewer than its %lld-float header", fn,
                (long long)packed_len, (long long)PACK_HEADER);
  int32_t have[16];
  std::memcpy(have, packed, sizeof have);
  if (have[0] != PACK_MAGIC) return fail(CT_ERR_INVALID_ARG, "%s: packed is not a packed convolution weight", fn);
  const int algo = have[1];
  if (algo != CT_CONV_ALGO_DIRECT_NHWC && algo != CT_CONV_ALGO_WINOGRAD)
    return fail(CT_ERR_INVALID_ARG, "%s: packed names algorithm %d, which has no packed layout", fn, algo);
  if ((st = check_fast(fn, algo, dtype, g))) return st;
  int32_t want[16];
  header_of(algo, g, want);
  const int64_t want_len = PACK_HEADER + packed_body(algo, g);
  if (std::memcmp(have, want, sizeof have) != 0 || packed_len != want_len)
    return fail(CT_ERR_INVALID_ARG,
                "%s: packed is for %s with groups %d, K/group %d, C/group %d, %d taps, block %d (%lld floats); "
                "this geometry needs groups %lld, K/group %lld, C/group %lld, %lld taps, block %d (%lld floats)",
                fn, algo_name(algo), have[2], have[3], have[4], have[5], have[6], (long long)packed_len,
                (long long)g.G, (long long)g.Kg, (long long)g.Cg, (long long)g.KS, want[6], (long long)want_len);
  if (g.N == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  auto xx = (const float*)x; auto bb = (const float*)bias; auto yy = (float*)y;
  const float* body = (const float*)packed + PACK_HEADER;
  if (algo == CT_CONV_ALGO_DIRECT_NHWC) direct_nhwc_forward(g, xx, nullptr, bb, activation, yy, body);
  else winograd_forward(g, xx, nullptr, bb, activation, yy, body);
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_conv_backward_data(int dtype, int layout, int algorithm, const int64_t* gv, const void* dy, const void* w,
                              void* dx, int64_t /*stream*/) {
  static const char* fn = "conv_backward_data";
  CT_TRY
  Geo g;
  int st = parse(fn, dtype, layout, gv, &g);
  if (st == CT_OK) st = check_algo(fn, algorithm);
  if (st != CT_OK) return st;
  if (g.N == 0) return CT_OK;
  if ((st = check_ptr(fn, "dy", dy)) || (st = check_ptr(fn, "w", w)) || (st = check_ptr(fn, "dx", dx))) return st;
  int algo = algorithm == CT_CONV_ALGO_AUTO ? choose(dtype, g, 1) : algorithm;
  if (algo == CT_CONV_ALGO_REFERENCE || algo == CT_CONV_ALGO_IM2COL_GEMM) {
    bool ref = algo == CT_CONV_ALGO_REFERENCE;
    if (dtype == CT_F32) {
      auto a = (const float*)dy; auto b = (const float*)w; auto c = (float*)dx;
      if (ref) ref_backward_data(g, a, b, c); else gemm_backward_data(g, a, b, c);
    } else {
      auto a = (const double*)dy; auto b = (const double*)w; auto c = (double*)dx;
      if (ref) ref_backward_data(g, a, b, c); else gemm_backward_data(g, a, b, c);
    }
    return CT_OK;
  }
  if ((st = check_fast(fn, algo, dtype, g))) return st;
  if (algo == CT_CONV_ALGO_DEPTHWISE) {
    depthwise_backward_data(g, (const float*)dy, (const float*)w, (float*)dx);
    return CT_OK;
  }
  return flipped_backward_data(fn, algo, g, (const float*)dy, (const float*)w, (float*)dx);
  CT_CATCH(fn)
}

int ct_cpu_conv_backward_weight(int dtype, int layout, int algorithm, const int64_t* gv, const void* x, const void* dy,
                                void* dw, void* dbias, int64_t /*stream*/) {
  static const char* fn = "conv_backward_weight";
  CT_TRY
  Geo g;
  int st = parse(fn, dtype, layout, gv, &g);
  if (st == CT_OK) st = check_algo(fn, algorithm);
  if (st != CT_OK) return st;
  if ((st = check_ptr(fn, "dw", dw))) return st;
  if (g.N == 0) {
    size_t e = dtype == CT_F32 ? 4 : 8;
    std::memset(dw, 0, g.K * g.Cg * g.KS * e);
    if (dbias) std::memset(dbias, 0, g.K * e);
    return CT_OK;
  }
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "dy", dy))) return st;
  int algo = algorithm == CT_CONV_ALGO_AUTO ? choose(dtype, g, 2) : algorithm;
  if (algo == CT_CONV_ALGO_REFERENCE || algo == CT_CONV_ALGO_IM2COL_GEMM) {
    bool ref = algo == CT_CONV_ALGO_REFERENCE;
    if (dtype == CT_F32) {
      auto a = (const float*)x; auto b = (const float*)dy; auto c = (float*)dw; auto d = (float*)dbias;
      if (ref) ref_backward_weight(g, a, b, c, d); else gemm_backward_weight(g, a, b, c, d);
    } else {
      auto a = (const double*)x; auto b = (const double*)dy; auto c = (double*)dw; auto d = (double*)dbias;
      if (ref) ref_backward_weight(g, a, b, c, d); else gemm_backward_weight(g, a, b, c, d);
    }
    return CT_OK;
  }
  if ((st = check_fast(fn, algo, dtype, g))) return st;
  if (algo == CT_CONV_ALGO_DIRECT_NHWC)
    return fail(CT_ERR_UNSUPPORTED, "%s: %s has no backward-weight pass (use IM2COL_GEMM, WINOGRAD or AUTO)", fn,
                algo_name(algo));
  if (algo == CT_CONV_ALGO_DEPTHWISE) depthwise_backward_weight(g, (const float*)x, (const float*)dy, (float*)dw);
  else winograd_backward_weight(g, (const float*)x, (const float*)dy, (float*)dw);
  if (dbias) bias_gradient(g, (const float*)dy, (float*)dbias);
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"
