/*
 * Batch normalization (the ct_cpu_batchnorm_* part of norm.h): per channel c over the
 * M = N*S elements of x [N, C, S] (NCHW) or [N, S, C] (NHWC).
 *
 * Training forward (2 passes over x):
 *   pass 1: per channel, shifted sums in float64: k = x[0, c, 0], s1 = sum(x - k),
 *           s2 = sum((x - k)^2); mean = k + s1/M, var = s2/M - (s1/M)^2 (biased, >= 0).
 *           The shift removes the cancellation of the textbook E[x^2] - E[x]^2 for data far
 *           from zero; float64 accumulation keeps the rounding at ~M * 1e-16.
 *   pass 2: y = x * scale + shift with scale = gamma * rstd, shift = beta - mean * scale,
 *           rstd = 1/sqrt(var + eps); save_mean / save_rstd (float32) are written;
 *           running_mean = (1-momentum)*running_mean + momentum*mean,
 *           running_var  = (1-momentum)*running_var  + momentum*var*M/(M-1) (unbiased).
 * Inference: one pass, scale/shift from the running statistics.
 * Backward (2 passes): per channel sdy = sum(dy), sdyx = sum(dy * (x - mean)) in float64;
 *   dbeta = sdy, dgamma = sdyx * rstd,
 *   dx = gamma * rstd * (dy - sdy/M - (x - mean) * rstd^2 * sdyx/M).
 * Parallelism: NCHW: OpenMP over channels (each channel is N contiguous runs of S);
 *   NHWC: OpenMP over the N*S rows of C channels with per-thread float64 partial sums
 *   (vectorized over channels), reduced at the end; the elementwise passes split rows.
 * Cost (e = dtype bytes, X = N*C*S): training ~5 FLOPs/elem in pass 1 + 2 in pass 2, bytes
 *   e*(2X read + X write); inference 2 FLOPs/elem, e*2X bytes; backward ~4 + 5 FLOPs/elem,
 *   bytes e*(2X + 2X read + X write). All memory bound.
 * batchnorm_ref_* (scalar float64 loops over either layout) sit beside the fast paths; they
 * run instead of them when the environment variable CORTADO_BATCHNORM_REFERENCE=1.
 */
#include <cstdlib>
#include <vector>

#include "cortado/norm.h"
#include "internal.h"
#include "batchnorm_args.h"  // argument checks shared with the CUDA library

namespace ct {
namespace {

bool use_reference() {
  static const bool ref = [] {
    const char* e = std::getenv("CORTADO_BATCHNORM_REFERENCE");
    return e && e[0] == '1';
  }();
  return ref;
}

using batchnorm::check_args;

/* Per-channel shifted sums of x (pass 1 of training). */
template <class T>
void stats(int layout, int64_t n, int64_t c, int64_t s, const T* x, std::vector<double>& mean, std::vector<double>& var) {
  const int64_t M = n * s;
  mean.assign(c, 0.0);
  var.assign(c, 0.0);
  if (layout == CT_LAYOUT_NCHW) {
    parallel_range(c, M, [&](int64_t c0, int64_t c1) {
      for (int64_t ch = c0; ch < c1; ++ch) {
        const double k = (double)x[ch * s];
        double s1 = 0, s2 = 0;
        for (int64_t i = 0; i < n; ++i) {
          const T* xr = x + (i * c + ch) * s;
          double a1 = 0, a2 = 0;
#pragma omp simd reduction(+ : a1, a2)
          for (int64_t j = 0; j < s; ++j) {
            const double d = (double)xr[j] - k;
            a1 += d;
            a2 += d * d;
          }
          s1 += a1;
          s2 += a2;
        }
        const double m1 = s1 / M;
        mean[ch] = k + m1;
        const double v = s2 / M - m1 * m1;
        var[ch] = v > 0 ? v : 0;
      }
    });
    return;
  }
  // NHWC: rows of c channels; per-thread partial sums.
  const int64_t rows = M;
  const T* k = x;  // shift: the first row
  int nt = threads_for(rows * c);
  if (nt > rows) nt = (int)rows;
  if (nt < 1) nt = 1;
  std::vector<double> part((size_t)nt * 2 * c, 0.0);
  auto work = [&](int t, int64_t r0, int64_t r1) {
    double* s1 = part.data() + (size_t)t * 2 * c;
    double* s2 = s1 + c;
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * c;
#pragma omp simd
      for (int64_t ch = 0; ch < c; ++ch) {
        const double d = (double)xr[ch] - (double)k[ch];
        s1[ch] += d;
        s2[ch] += d * d;
      }
    }
  };
  if (nt <= 1) {
    work(0, 0, rows);
  } else {
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num(), T_ = omp_get_num_threads();
      int64_t per = rows / T_, rem = rows % T_;
      int64_t i0 = t * per + (t < rem ? t : rem);
      work(t, i0, i0 + per + (t < rem ? 1 : 0));
    }
  }
  for (int64_t ch = 0; ch < c; ++ch) {
    double s1 = 0, s2 = 0;
    for (int t = 0; t < nt; ++t) {
      s1 += part[(size_t)t * 2 * c + ch];
      s2 += part[(size_t)t * 2 * c + c + ch];
    }
    const double m1 = s1 / M;
    mean[ch] = (double)k[ch] + m1;
    const double v = s2 / M - m1 * m1;
    var[ch] = v > 0 ? v : 0;
  }
}

/* y = x * scale[c] + shift[c] (compute type T: float for float32, double for float64). */
template <class T>
void apply_affine(int layout, int64_t n, int64_t c, int64_t s, const T* x, const std::vector<T>& scale,
                  const std::vector<T>& shift, T* y) {
  const T* sc = scale.data();
  const T* sh = shift.data();
  if (layout == CT_LAYOUT_NCHW) {
    parallel_range(n * c, s, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t ch = r % c;
        const T a = sc[ch], b = sh[ch];
        const T* xr = x + r * s;
        T* yr = y + r * s;
#pragma omp simd
        for (int64_t j = 0; j < s; ++j) yr[j] = xr[j] * a + b;
      }
    });
    return;
  }
  parallel_range(n * s, c, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * c;
      T* yr = y + r * c;
#pragma omp simd
      for (int64_t ch = 0; ch < c; ++ch) yr[ch] = xr[ch] * sc[ch] + sh[ch];
    }
  });
}

template <class T>
void training(int layout, int64_t n, int64_t c, int64_t s, const T* x, const float* gamma, const float* beta,
              double eps, double momentum, float* rm, float* rv, T* y, float* save_mean, float* save_rstd) {
  const int64_t M = n * s;
  std::vector<double> mean, var;
  stats<T>(layout, n, c, s, x, mean, var);
  std::vector<T> scale(c), shift(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double rstd = 1.0 / std::sqrt(var[ch] + eps);
    const double gm = gamma ? (double)gamma[ch] : 1.0, bt = beta ? (double)beta[ch] : 0.0;
    scale[ch] = (T)(gm * rstd);
    shift[ch] = (T)(bt - mean[ch] * gm * rstd);
    if (save_mean) save_mean[ch] = (float)mean[ch];
    if (save_rstd) save_rstd[ch] = (float)rstd;
    if (rm) rm[ch] = (float)((1.0 - momentum) * (double)rm[ch] + momentum * mean[ch]);
    if (rv) rv[ch] = (float)((1.0 - momentum) * (double)rv[ch] + momentum * var[ch] * (double)M / (double)(M - 1));
  }
  apply_affine<T>(layout, n, c, s, x, scale, shift, y);
}

template <class T>
void inference(int layout, int64_t n, int64_t c, int64_t s, const T* x, const float* gamma, const float* beta,
               const float* rm, const float* rv, double eps, T* y) {
  std::vector<T> scale(c), shift(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double rstd = 1.0 / std::sqrt((double)rv[ch] + eps);
    const double gm = gamma ? (double)gamma[ch] : 1.0, bt = beta ? (double)beta[ch] : 0.0;
    scale[ch] = (T)(gm * rstd);
    shift[ch] = (T)(bt - (double)rm[ch] * gm * rstd);
  }
  apply_affine<T>(layout, n, c, s, x, scale, shift, y);
}

template <class T>
void backward(int layout, int64_t n, int64_t c, int64_t s, const T* x, const T* dy, const float* gamma,
              const float* smean, const float* srstd, T* dx, float* dgamma, float* dbeta) {
  const int64_t M = n * s;
  std::vector<double> sdy(c, 0.0), sdyx(c, 0.0);
  if (layout == CT_LAYOUT_NCHW) {
    parallel_range(c, 2 * M, [&](int64_t c0, int64_t c1) {
      for (int64_t ch = c0; ch < c1; ++ch) {
        const double m = smean[ch];
        double a = 0, b = 0;
        for (int64_t i = 0; i < n; ++i) {
          const T* xr = x + (i * c + ch) * s;
          const T* dr = dy + (i * c + ch) * s;
          double a1 = 0, b1 = 0;
#pragma omp simd reduction(+ : a1, b1)
          for (int64_t j = 0; j < s; ++j) {
            const double d = (double)dr[j];
            a1 += d;
            b1 += d * ((double)xr[j] - m);
          }
          a += a1;
          b += b1;
        }
        sdy[ch] = a;
        sdyx[ch] = b;
      }
    });
  } else {
    const int64_t rows = M;
    int nt = threads_for(rows * c * 2);
    if (nt > rows) nt = (int)rows;
    if (nt < 1) nt = 1;
    std::vector<double> part((size_t)nt * 2 * c, 0.0);
    std::vector<double> meand(c);
    for (int64_t ch = 0; ch < c; ++ch) meand[ch] = smean[ch];
    auto work = [&](int t, int64_t r0, int64_t r1) {
      double* a = part.data() + (size_t)t * 2 * c;
      double* b = a + c;
      const double* md = meand.data();
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * c;
        const T* dr = dy + r * c;
#pragma omp simd
        for (int64_t ch = 0; ch < c; ++ch) {
          const double d = (double)dr[ch];
          a[ch] += d;
          b[ch] += d * ((double)xr[ch] - md[ch]);
        }
      }
    };
    if (nt <= 1) {
      work(0, 0, rows);
    } else {
#pragma omp parallel num_threads(nt)
      {
        int t = omp_get_thread_num(), T_ = omp_get_num_threads();
        int64_t per = rows / T_, rem = rows % T_;
        int64_t i0 = t * per + (t < rem ? t : rem);
        work(t, i0, i0 + per + (t < rem ? 1 : 0));
      }
    }
    for (int t = 0; t < nt; ++t)
      for (int64_t ch = 0; ch < c; ++ch) {
        sdy[ch] += part[(size_t)t * 2 * c + ch];
        sdyx[ch] += part[(size_t)t * 2 * c + c + ch];
      }
  }
  // dx = k1 * dy + k2 * x + k3 per channel.
  std::vector<T> k1(c), k2(c), k3(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double r = srstd[ch], m = smean[ch], gm = gamma ? (double)gamma[ch] : 1.0;
    if (dbeta) dbeta[ch] = (float)sdy[ch];
    if (dgamma) dgamma[ch] = (float)(sdyx[ch] * r);
    const double a = gm * r;
    const double b = -a * r * r * sdyx[ch] / (double)M;  // coefficient of (x - mean)
    k1[ch] = (T)a;
    k2[ch] = (T)b;
    k3[ch] = (T)(-a * sdy[ch] / (double)M - b * m);
  }
  const T* p1 = k1.data();
  const T* p2 = k2.data();
  const T* p3 = k3.data();
  if (layout == CT_LAYOUT_NCHW) {
    parallel_range(n * c, 2 * s, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t ch = r % c;
        const T a = p1[ch], b = p2[ch], e = p3[ch];
        const T* xr = x + r * s;
        const T* dr = dy + r * s;
        T* o = dx + r * s;
#pragma omp simd
        for (int64_t j = 0; j < s; ++j) o[j] = a * dr[j] + b * xr[j] + e;
      }
    });
  } else {
    parallel_range(n * s, 2 * c, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * c;
        const T* dr = dy + r * c;
        T* o = dx + r * c;
#pragma omp simd
        for (int64_t ch = 0; ch < c; ++ch) o[ch] = p1[ch] * dr[ch] + p2[ch] * xr[ch] + p3[ch];
      }
    });
  }
}

// ------------------------------------------------------------------ reference loops
template <class T>
CT_INLINE int64_t at(int layout, int64_t c, int64_t s, int64_t i, int64_t ch, int64_t j) {
  return layout == CT_LAYOUT_NCHW ? (i * c + ch) * s + j : (i * s + j) * c + ch;
}

template <class T>
void training_ref(int layout, int64_t n, int64_t c, int64_t s, const T* x, const float* gamma, const float* beta,
                  double eps, double momentum, float* rm, float* rv, T* y, float* save_mean, float* save_rstd) {
  const double M = (double)(n * s);
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) sum += (double)x[at<T>(layout, c, s, i, ch, j)];
    const double mean = sum / M;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) {
        const double d = (double)x[at<T>(layout, c, s, i, ch, j)] - mean;
        sq += d * d;
      }
    const double var = sq / M, rstd = 1.0 / std::sqrt(var + eps);
    const double gm = gamma ? (double)gamma[ch] : 1.0, bt = beta ? (double)beta[ch] : 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) {
        const int64_t p = at<T>(layout, c, s, i, ch, j);
        y[p] = (T)(((double)x[p] - mean) * rstd * gm + bt);
      }
    if (save_mean) save_mean[ch] = (float)mean;
    if (save_rstd) save_rstd[ch] = (float)rstd;
    if (rm) rm[ch] = (float)((1.0 - momentum) * (double)rm[ch] + momentum * mean);
    if (rv) rv[ch] = (float)((1.0 - momentum) * (double)rv[ch] + momentum * sq / (M - 1));
  }
}

template <class T>
void inference_ref(int layout, int64_t n, int64_t c, int64_t s, const T* x, const float* gamma, const float* beta,
                   const float* rm, const float* rv, double eps, T* y) {
  for (int64_t ch = 0; ch < c; ++ch) {
    const double rstd = 1.0 / std::sqrt((double)rv[ch] + eps);
    const double gm = gamma ? (double)gamma[ch] : 1.0, bt = beta ? (double)beta[ch] : 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) {
        const int64_t p = at<T>(layout, c, s, i, ch, j);
        y[p] = (T)(((double)x[p] - (double)rm[ch]) * rstd * gm + bt);
      }
  }
}

template <class T>
void backward_ref(int layout, int64_t n, int64_t c, int64_t s, const T* x, const T* dy, const float* gamma,
                  const float* smean, const float* srstd, T* dx, float* dgamma, float* dbeta) {
  const double M = (double)(n * s);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double m = smean[ch], r = srstd[ch], gm = gamma ? (double)gamma[ch] : 1.0;
    double sdy = 0, sdyxh = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) {
        const int64_t p = at<T>(layout, c, s, i, ch, j);
        sdy += (double)dy[p];
        sdyxh += (double)dy[p] * ((double)x[p] - m) * r;
      }
    if (dbeta) dbeta[ch] = (float)sdy;
    if (dgamma) dgamma[ch] = (float)sdyxh;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) {
        const int64_t p = at<T>(layout, c, s, i, ch, j);
        const double xh = ((double)x[p] - m) * r;
        dx[p] = (T)(gm * r * ((double)dy[p] - sdy / M - xh * sdyxh / M));
      }
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cpu_batchnorm_forward_training(int dtype, int layout, int64_t n, int64_t c, int64_t s, const void* x,
                                      const float* gamma, const float* beta, double eps, double momentum,
                                      float* running_mean, float* running_var, void* y, float* save_mean,
                                      float* save_rstd, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_batchnorm_forward_training";
  CT_TRY
  int st;
  if ((st = check_args(fn, dtype, layout, n, c, s))) return st;
  if (!(eps >= 0) || !std::isfinite(eps)) return fail(CT_ERR_INVALID_ARG, "%s: eps = %g must be finite and >= 0", fn, eps);
  if (!(momentum >= 0 && momentum <= 1))
    return fail(CT_ERR_INVALID_ARG, "%s: momentum = %g must be in [0, 1]", fn, momentum);
  if (c == 0) return CT_OK;
  if (n * s < 2 && (running_var || n * s == 0))
    return fail(CT_ERR_INVALID_ARG, "%s: training needs more than 1 value per channel (n = %lld, s = %lld)", fn,
                (long long)n, (long long)s);
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  if (dtype == CT_F32) {
    (use_reference() ? training_ref<float> : training<float>)(layout, n, c, s, (const float*)x, gamma, beta, eps,
                                                              momentum, running_mean, running_var, (float*)y,
                                                              save_mean, save_rstd);
  } else {
    (use_reference() ? training_ref<double> : training<double>)(layout, n, c, s, (const double*)x, gamma, beta, eps,
                                                                momentum, running_mean, running_var, (double*)y,
                                                                save_mean, save_rstd);
  }
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_batchnorm_forward_inference(int dtype, int layout, int64_t n, int64_t c, int64_t s, const void* x,
                                       const float* gamma, const float* beta, const float* running_mean,
                                       const float* running_var, double eps, void* y, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_batchnorm_forward_inference";
  CT_TRY
  int st;
  if ((st = check_args(fn, dtype, layout, n, c, s))) return st;
  if (!(eps >= 0) || !std::isfinite(eps)) return fail(CT_ERR_INVALID_ARG, "%s: eps = %g must be finite and >= 0", fn, eps);
  if (n * c * s == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y)) || (st = check_ptr(fn, "running_mean", running_mean)) ||
      (st = check_ptr(fn, "running_var", running_var)))
    return st;
  if (dtype == CT_F32) {
    (use_reference() ? inference_ref<float> : inference<float>)(layout, n, c, s, (const float*)x, gamma, beta,
                                                                running_mean, running_var, eps, (float*)y);
  } else {
    (use_reference() ? inference_ref<double> : inference<double>)(layout, n, c, s, (const double*)x, gamma, beta,
                                                                  running_mean, running_var, eps, (double*)y);
  }
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_batchnorm_backward(int dtype, int layout, int64_t n, int64_t c, int64_t s, const void* x, const void* dy,
                              const float* gamma, const float* save_mean, const float* save_rstd, void* dx,
                              float* dgamma, float* dbeta, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_batchnorm_backward";
  CT_TRY
  int st;
  if ((st = check_args(fn, dtype, layout, n, c, s))) return st;
  if (c == 0) return CT_OK;
  if (n * s == 0) {
    if (dgamma) for (int64_t ch = 0; ch < c; ++ch) dgamma[ch] = 0;
    if (dbeta) for (int64_t ch = 0; ch < c; ++ch) dbeta[ch] = 0;
    return CT_OK;
  }
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "dy", dy)) || (st = check_ptr(fn, "save_mean", save_mean)) ||
      (st = check_ptr(fn, "save_rstd", save_rstd)) || (st = check_ptr(fn, "dx", dx)))
    return st;
  if (dtype == CT_F32) {
    (use_reference() ? backward_ref<float> : backward<float>)(layout, n, c, s, (const float*)x, (const float*)dy, gamma,
                                                              save_mean, save_rstd, (float*)dx, dgamma, dbeta);
  } else {
    (use_reference() ? backward_ref<double> : backward<double>)(layout, n, c, s, (const double*)x, (const double*)dy,
                                                                gamma, save_mean, save_rstd, (double*)dx, dgamma,
                                                                dbeta);
  }
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"
