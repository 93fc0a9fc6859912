/*
 * Normalization family: softmax / log-softmax along one axis, layer norm, RMS norm.
 *
 * softmax, inner == 1 (last axis, the hot case): per row of `dim` floats
 *   pass 1: m = max(x)                      (16/32 float lanes, vectorized)
 *   pass 2: y = exp(x - m), s = sum(y)      (vectorized polynomial exp, ~1 ulp; see vmath.h)
 *   pass 3: y *= 1/s                        (log-softmax: y = x - m - log(s), pass 2 stores nothing)
 * The row stays in L1/L2 between passes, so DRAM sees one read and one write per element.
 * A row of all -inf gives NaN (like PyTorch): x - m is NaN. Rows are spread over threads; the
 * row kernel has an AVX-512 build. f16/bf16 rows are widened into a per-thread float buffer.
 * softmax, inner > 1 (non-last axis): the same three passes over columns, carrying
 * vectors of `inner` running maxima and sums (contiguous reads along inner).
 * layernorm / rmsnorm: per row two passes accumulated in float64 lanes (mean, then
 * centered squares: no cancellation), then y = (x - mean) * rstd * gamma + beta in float32.
 *
 * Cost: softmax ~3 reads + 1 write per element from cache, 1 exp (~15 FLOPs) per element;
 * DRAM traffic 2 * numel * sizeof(dtype). layernorm: 2 reads + 1 write, ~6 FLOPs per element.
 */
#include <vector>

#include "cortado/norm.h"
#include "internal.h"
#include "vmath.h"

namespace ct {
namespace {

// ------------------------------------------------------------------ float32 row softmax
#define CT_SOFTMAX_ROW_BODY(L)                                                        \
  float lane[L];                                                                      \
  for (int j = 0; j < L; ++j) lane[j] = -INFINITY;                                    \
  int64_t i = 0;                                                                      \
  for (; i + L <= n; i += L)                                                          \
    for (int j = 0; j < L; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];    \
  float m = -INFINITY;                                                                \
  for (int j = 0; j < L; ++j) m = lane[j] > m ? lane[j] : m;                          \
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;                                         \
  for (int j = 0; j < L; ++j) lane[j] = 0.0f;                                         \
  i = 0;                                                                              \
  if (log) {                                                                          \
    for (; i + L <= n; i += L)                                                        \
      for (int j = 0; j < L; ++j) lane[j] += exp_f32(x[i + j] - m);                   \
  } else {                                                                            \
    for (; i + L <= n; i += L)                                                        \
      for (int j = 0; j < L; ++j) { float e = exp_f32(x[i + j] - m); y[i + j] = e; lane[j] += e; } \
  }                                                                                   \
  float s = 0.0f;                                                                     \
  for (; i < n; ++i) { float e = exp_f32(x[i] - m); if (!log) y[i] = e; s += e; }     \
  for (int w = L / 2; w > 0; w /= 2)                                                  \
    for (int j = 0; j < w; ++j) lane[j] += lane[j + w];                               \
  s += lane[0];                                                                       \
  if (log) {                                                                          \
    const float c = m + std::log(s);                                                  \
    for (i = 0; i < n; ++i) y[i] = x[i] - c;                                          \
  } else {                                                                            \
    const float r = 1.0f / s;                                                         \
    for (i = 0; i < n; ++i) y[i] *= r;                                                \
  }

/* One row; x and y may alias (in-place). */
void softmax_row_f32(const float* x, float* y, int64_t n, bool log) { CT_SOFTMAX_ROW_BODY(16) }
CT_AVX512 void softmax_row_f32_avx512(const float* x, float* y, int64_t n, bool log) { CT_SOFTMAX_ROW_BODY(32) }

/* Reference row (float64 and anything else): the same math with std::exp. */
template <class C> void softmax_row_ref(const C* x, C* y, int64_t n, bool log) {
  C m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  C s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
  if (log) { const C c = m + std::log(s); for (int64_t i = 0; i < n; ++i) y[i] = x[i] - c; }
  else { const C r = (C)1 / s; for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] - m) * r; }
}

template <class T> void softmax_last(int64_t rows, int64_t n, const T* x, T* y, bool log) {
  const bool avx512 = use_avx512();
  // Allocated here, outside the parallel region: bad_alloc must not escape an OpenMP region.
  std::vector<float> scratch(std::is_same_v<T, float> || std::is_same_v<T, double> ? 0 : (size_t)threads() * (size_t)n);
  parallel_range(rows, n * 4, [&](int64_t r0, int64_t r1) {
    if constexpr (std::is_same_v<T, float>) {
      for (int64_t r = r0; r < r1; ++r)
        avx512 ? softmax_row_f32_avx512(x + r * n, y + r * n, n, log) : softmax_row_f32(x + r * n, y + r * n, n, log);
    } else if constexpr (std::is_same_v<T, double>) {
      for (int64_t r = r0; r < r1; ++r) softmax_row_ref<double>(x + r * n, y + r * n, n, log);
    } else {  // f16/bf16: widen the row into this thread's buffer, float32 kernel, round back
      float* buf = scratch.data() + (size_t)omp_get_thread_num() * (size_t)n;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t i = 0; i < n; ++i) buf[i] = load(x + r * n + i);
        avx512 ? softmax_row_f32_avx512(buf, buf, n, log) : softmax_row_f32(buf, buf, n, log);
        for (int64_t i = 0; i < n; ++i) store<T>(y + r * n + i, buf[i]);
      }
    }
  });
}

/* Softmax along a non-last axis: x is [outer, dim, inner]; column blocks of <= 256 inner
 * positions carry their running max and sum vectors. */
template <class T> void softmax_inner(int64_t outer, int64_t dim, int64_t inner, const T* x, T* y, bool log) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  constexpr int64_t B = 256;
  const int64_t chunks = (inner + B - 1) / B;
  parallel_range(outer * chunks, dim * B * 4, [&](int64_t i0, int64_t i1) {
    C m[B], s[B];
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t o = it / chunks, j0 = (it % chunks) * B, b = inner - j0 < B ? inner - j0 : B;
      const T* xs = x + o * dim * inner + j0;
      T* ys = y + o * dim * inner + j0;
      for (int64_t j = 0; j < b; ++j) { m[j] = -INFINITY; s[j] = 0; }
      for (int64_t d = 0; d < dim; ++d)
        for (int64_t j = 0; j < b; ++j) { C v = (C)load(xs + d * inner + j); m[j] = v > m[j] ? v : m[j]; }
      for (int64_t d = 0; d < dim; ++d)
        for (int64_t j = 0; j < b; ++j) s[j] += std::exp((C)load(xs + d * inner + j) - m[j]);
      for (int64_t j = 0; j < b; ++j) {
        if (log) s[j] = m[j] + std::log(s[j]);
        else s[j] = (C)1 / s[j];
      }
      for (int64_t d = 0; d < dim; ++d)
        for (int64_t j = 0; j < b; ++j) {
          C v = (C)load(xs + d * inner + j);
          store<T>(ys + d * inner + j, log ? v - s[j] : std::exp(v - m[j]) * s[j]);
        }
    }
  });
}

// ------------------------------------------------------------------ layer norm / RMS norm
/* sum of f(x_i) over a row in 8 float64 lanes (vectorizes without reassociation). */
template <class T, class F> CT_INLINE double row_sum(const T* x, int64_t n, F f) {
  double lane[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += f((double)load(x + i + j));
  double s = 0;
  for (; i < n; ++i) s += f((double)load(x + i));
  return s + ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

template <class T> void layernorm_typed(int64_t rows, int64_t cols, const T* x, const T* gamma, const T* beta,
                                        double eps, T* y, float* mean_out, float* rstd_out) {
  parallel_range(rows, cols * 3, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      const double mean = row_sum(xr, cols, [](double v) { return v; }) / (double)cols;
      const double var = row_sum(xr, cols, [mean](double v) { return (v - mean) * (v - mean); }) / (double)cols;
      const double rstd = 1.0 / std::sqrt(var + eps);
      if (mean_out) mean_out[r] = (float)mean;
      if (rstd_out) rstd_out[r] = (float)rstd;
      using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
      const C mu = (C)mean, rs = (C)rstd;
      for (int64_t i = 0; i < cols; ++i) {
        C v = ((C)load(xr + i) - mu) * rs;
        if (gamma) v *= (C)load(gamma + i);
        if (beta) v += (C)load(beta + i);
        store<T>(yr + i, v);
      }
    }
  });
}

template <class T> void rmsnorm_typed(int64_t rows, int64_t cols, const T* x, const T* gamma, double eps, T* y,
                                      float* rstd_out) {
  parallel_range(rows, cols * 2, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      const double ms = row_sum(xr, cols, [](double v) { return v * v; }) / (double)cols;
      const double rstd = 1.0 / std::sqrt(ms + eps);
      if (rstd_out) rstd_out[r] = (float)rstd;
      using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
      const C rs = (C)rstd;
      for (int64_t i = 0; i < cols; ++i) {
        C v = (C)load(xr + i) * rs;
        if (gamma) v *= (C)load(gamma + i);
        store<T>(yr + i, v);
      }
    }
  });
}

template <class F> bool dispatch_float(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(float{}); return true;
    case CT_F64: f(double{}); return true;
    case CT_F16: f(f16{}); return true;
    case CT_BF16: f(bf16{}); return true;
    default: return false;
  }
}

int check_float(const char* fn, int dtype) {
  if (dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16) return CT_OK;
  return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64, F16, BF16 only)", fn,
              dtype_name(dtype), dtype);
}

int check_size(const char* fn, const char* name, int64_t v) {
  return v >= 0 ? CT_OK : fail(CT_ERR_INVALID_ARG, "%s: %s=%lld is negative", fn, name, (long long)v);
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cpu_softmax(int dtype, int log, int64_t outer, int64_t dim, int64_t inner, const void* x, void* y) {
  static const char* fn = "ct_cpu_softmax";
  CT_TRY
  int st;
  if ((st = check_float(fn, dtype)) || (st = check_size(fn, "outer", outer)) || (st = check_size(fn, "dim", dim)) ||
      (st = check_size(fn, "inner", inner)))
    return st;
  int64_t t;
  if (__builtin_mul_overflow(outer, dim, &t) || __builtin_mul_overflow(t, inner, &t))
    return fail(CT_ERR_INVALID_ARG, "%s: outer*dim*inner overflows int64", fn);
  if (t == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    if (inner == 1) softmax_last<T>(outer, dim, (const T*)x, (T*)y, log != 0);
    else softmax_inner<T>(outer, dim, inner, (const T*)x, (T*)y, log != 0);
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_layernorm(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, const void* beta,
                     double eps, void* y, float* mean_out, float* rstd_out) {
  static const char* fn = "ct_cpu_layernorm";
  CT_TRY
  int st;
  if ((st = check_float(fn, dtype)) || (st = check_size(fn, "rows", rows)) || (st = check_size(fn, "cols", cols)))
    return st;
  if (rows == 0) return CT_OK;
  if (cols == 0) {  // empty rows: mean 0 / rstd of eps only is meaningless; report NaN like 0/0
    if (mean_out) for (int64_t r = 0; r < rows; ++r) mean_out[r] = NAN;
    if (rstd_out) for (int64_t r = 0; r < rows; ++r) rstd_out[r] = NAN;
    return CT_OK;
  }
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    layernorm_typed<T>(rows, cols, (const T*)x, (const T*)gamma, (const T*)beta, eps, (T*)y, mean_out, rstd_out);
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_rmsnorm(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, double eps, void* y,
                   float* rstd_out) {
  static const char* fn = "ct_cpu_rmsnorm";
  CT_TRY
  int st;
  if ((st = check_float(fn, dtype)) || (st = check_size(fn, "rows", rows)) || (st = check_size(fn, "cols", cols)))
    return st;
  if (rows == 0) return CT_OK;
  if (cols == 0) {
    if (rstd_out) for (int64_t r = 0; r < rows; ++r) rstd_out[r] = NAN;
    return CT_OK;
  }
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    rmsnorm_typed<T>(rows, cols, (const T*)x, (const T*)gamma, eps, (T*)y, rstd_out);
  });
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"
