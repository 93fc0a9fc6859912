/*
 * Loss family (loss.h): fused softmax cross-entropy, forward and backward.
 *
 * Forward, per row of C logits (rows spread over OpenMP threads):
 *   pass 1: m = max(x)                                   (16/32 float lanes)
 *   pass 2: s = sum exp(x - m), sx = sum x (if eps > 0)  (vectorized exp_f32, vmath.h)
 *   lse = m + log(s); loss = lse - (1 - eps) x[t] - eps/C * sx   (in float64)
 * Only lse (one acc per row) is stored for the backward: the probabilities are never
 * materialized. MEAN/SUM collect the row losses in a float64 array and add them serially
 * (deterministic whatever the thread count).
 * Backward, per row, one pass: dx = (exp(x - lse) - eps/C) * g, then dx[t] -= (1 - eps) g.
 * Targets are validated (and the first bad row reported) before anything is written.
 * f16/bf16 rows are widened into a per-thread float buffer and use the float32 row kernels;
 * float64 rows use the reference loops (std::exp) that also document the math.
 *
 * Cost (R rows, C classes, e = dtype bytes): forward ~17 FLOPs per logit (one exp), reads
 * e*R*C bytes from DRAM (the second pass hits cache); backward ~18 FLOPs per logit, reads
 * and writes e*R*C bytes. Memory bound at ~25 GB/s here.
 */
#include <vector>

#include "cortado/loss.h"
#include "internal.h"
#include "vmath.h"

namespace ct {
namespace {

// ------------------------------------------------------------------ float32 row kernels
/* lse and sum(x) of one row: max in L lanes, then exp-sum (and x-sum) in L lanes. */
#define CT_CE_STATS_BODY(L)                                                           \
  float lane[L], lx[L];                                                               \
  for (int j = 0; j < L; ++j) lane[j] = -INFINITY;                                    \
  int64_t i = 0;                                                                      \
  for (; i + L <= n; i += L)                                                          \
    for (int j = 0; j < L; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];    \
  float m = -INFINITY;                                                                \
  for (int j = 0; j < L; ++j) m = lane[j] > m ? lane[j] : m;                          \
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;                                         \
  for (int j = 0; j < L; ++j) { lane[j] = 0.0f; lx[j] = 0.0f; }                       \
  i = 0;                                                                              \
  if (want_sx) {                                                                      \
    for (; i + L <= n; i += L)                                                        \
      for (int j = 0; j < L; ++j) { lane[j] += exp_f32(x[i + j] - m); lx[j] += x[i + j]; } \
  } else {                                                                            \
    for (; i + L <= n; i += L)                                                        \
      for (int j = 0; j < L; ++j) lane[j] += exp_f32(x[i + j] - m);                   \
  }                                                                                   \
  float s = 0.0f, sx = 0.0f;                                                          \
  for (; i < n; ++i) { s += exp_f32(x[i] - m); sx += x[i]; }                          \
  for (int w = L / 2; w > 0; w /= 2)                                                  \
    for (int j = 0; j < w; ++j) { lane[j] += lane[j + w]; lx[j] += lx[j + w]; }       \
  *lse = m + std::log(s + lane[0]);                                                   \
  *sumx = want_sx ? sx + lx[0] : 0.0f;

void ce_stats_f32(const float* x, int64_t n, bool want_sx, float* lse, float* sumx) { CT_CE_STATS_BODY(16) }
CT_AVX512 void ce_stats_f32_avx512(const float* x, int64_t n, bool want_sx, float* lse, float* sumx) {
  CT_CE_STATS_BODY(32)
}

/* dx = (exp(x - lse) - off) * g over one row (vectorizes: exp_f32 is branch free). */
#define CT_CE_GRAD_BODY                                                               \
  for (int64_t i = 0; i < n; ++i) dx[i] = (exp_f32(x[i] - lse) - off) * g;

void ce_grad_f32(const float* x, float* dx, int64_t n, float lse, float off, float g) { CT_CE_GRAD_BODY }
CT_AVX512 void ce_grad_f32_avx512(const float* x, float* dx, int64_t n, float lse, float off, float g) {
  CT_CE_GRAD_BODY
}

// ------------------------------------------------------------------ float64 reference rows
void ce_stats_ref(const double* x, int64_t n, double* lse, double* sumx) {
  double m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  double s = 0, sx = 0;
  for (int64_t i = 0; i < n; ++i) {
    s += std::exp(x[i] - m);
    sx += x[i];
  }
  *lse = m + std::log(s);
  *sumx = sx;
}

void ce_grad_ref(const double* x, double* dx, int64_t n, double lse, double off, double g) {
  for (int64_t i = 0; i < n; ++i) dx[i] = (std::exp(x[i] - lse) - off) * g;
}

CT_INLINE int64_t target_at(int target_dtype, const void* target, int64_t i) {
  return target_dtype == CT_I32 ? (int64_t)((const int32_t*)target)[i] : ((const int64_t*)target)[i];
}

int check_common(const char* fn, int dtype, int target_dtype, int64_t rows, int64_t classes, double smoothing,
                 int reduction) {
  if (dtype != CT_F32 && dtype != CT_F64 && dtype != CT_F16 && dtype != CT_BF16)
    return fail(dtype_size(dtype) ? CT_ERR_UNSUPPORTED : CT_ERR_INVALID_ARG,
                "%s: logits dtype %s (%d) is not supported (F32, F64, F16, BF16 only)", fn, dtype_name(dtype), dtype);
  if (target_dtype != CT_I32 && target_dtype != CT_I64)
    return fail(CT_ERR_UNSUPPORTED, "%s: target dtype %s (%d) must be I32 or I64", fn, dtype_name(target_dtype),
                target_dtype);
  if (rows < 0 || classes < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: negative size (rows=%lld classes=%lld)", fn, (long long)rows,
                (long long)classes);
  int64_t t;
  if (__builtin_mul_overflow(rows, classes, &t)) return fail(CT_ERR_INVALID_ARG, "%s: rows*classes overflows", fn);
  if (!(smoothing >= 0.0 && smoothing <= 1.0))
    return fail(CT_ERR_INVALID_ARG, "%s: label smoothing %g is outside [0, 1]", fn, smoothing);
  if (reduction != CT_LOSS_REDUCTION_NONE && reduction != CT_LOSS_REDUCTION_MEAN && reduction != CT_LOSS_REDUCTION_SUM)
    return fail(CT_ERR_INVALID_ARG, "%s: reduction %d is not NONE (0), MEAN (1) or SUM (2)", fn, reduction);
  return CT_OK;
}

/* First row whose target is neither ignore_index nor in [0, classes): reported. */
int check_targets(const char* fn, int target_dtype, const void* target, int64_t rows, int64_t classes,
                  int64_t ignore_index, int64_t* count) {
  int64_t c = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = target_at(target_dtype, target, i);
    if (t == ignore_index) continue;
    if (t < 0 || t >= classes)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE,
                  "%s: target %lld at position %lld is out of range for %lld classes (ignore_index %lld)", fn,
                  (long long)t, (long long)i, (long long)classes, (long long)ignore_index);
    ++c;
  }
  *count = c;
  return CT_OK;
}

template <class T>
void ce_forward(int target_dtype, int64_t rows, int64_t C, const T* x, const void* target, int64_t ignore_index,
                double eps, int reduction, T* loss, void* lse_out) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  A* lse = (A*)lse_out;
  const bool avx512 = use_avx512();
  const bool want_sx = eps != 0.0;
  std::vector<double> row_loss(reduction == CT_LOSS_REDUCTION_NONE ? 0 : (size_t)rows);
  std::vector<float> scratch(std::is_same_v<T, float> || std::is_same_v<T, double> ? 0 : (size_t)threads() * (size_t)C);
  parallel_range(rows, C * 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      double l, s_x, xt = 0;
      const int64_t t = target_at(target_dtype, target, r);
      const bool ignored = t == ignore_index;
      if constexpr (std::is_same_v<T, double>) {
        double sx;
        ce_stats_ref(xr, C, &l, &sx);
        s_x = sx;
        lse[r] = l;
        if (!ignored) xt = xr[t];
      } else {
        const float* row;
        if constexpr (std::is_same_v<T, float>) {
          row = xr;
        } else {
          float* buf = scratch.data() + (size_t)omp_get_thread_num() * (size_t)C;
          for (int64_t i = 0; i < C; ++i) buf[i] = load(xr + i);
          row = buf;
        }
        float fl, fsx;
        avx512 ? ce_stats_f32_avx512(row, C, want_sx, &fl, &fsx) : ce_stats_f32(row, C, want_sx, &fl, &fsx);
        lse[r] = fl;
        l = fl;
        s_x = fsx;
        if (!ignored) xt = row[t];
      }
      const double v = ignored ? 0.0 : l - (1.0 - eps) * xt - (want_sx ? eps / (double)C * s_x : 0.0);
      if (reduction == CT_LOSS_REDUCTION_NONE) store<T>(loss + r, (compute_t<T>)v);
      else row_loss[(size_t)r] = v;
    }
  });
  if (reduction != CT_LOSS_REDUCTION_NONE) {
    double sum = 0;
    int64_t count = 0;
    for (int64_t r = 0; r < rows; ++r) {
      sum += row_loss[(size_t)r];
      count += target_at(target_dtype, target, r) != ignore_index;
    }
    if (reduction == CT_LOSS_REDUCTION_MEAN) sum = count == 0 ? 0.0 : sum / (double)count;
    store<T>(loss, (compute_t<T>)sum);
  }
}

template <class T>
void ce_backward(int target_dtype, int64_t rows, int64_t C, const T* x, const void* target, const void* lse_in,
                 const T* grad, int64_t ignore_index, double eps, int reduction, int64_t count, T* dx) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const A* lse = (const A*)lse_in;
  const bool avx512 = use_avx512();
  double gscalar = 0;
  if (reduction != CT_LOSS_REDUCTION_NONE) {
    gscalar = (double)load(grad);
    if (reduction == CT_LOSS_REDUCTION_MEAN) gscalar = count == 0 ? 0.0 : gscalar / (double)count;
  }
  const A off = (A)(eps / (double)C);
  const A hit = (A)(1.0 - eps);
  std::vector<float> scratch(std::is_same_v<T, float> || std::is_same_v<T, double> ? 0 : (size_t)threads() * (size_t)C * 2);
  parallel_range(rows, C * 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      T* dr = dx + r * C;
      const int64_t t = target_at(target_dtype, target, r);
      if (t == ignore_index) {
        std::memset((void*)dr, 0, (size_t)C * sizeof(T));
        continue;
      }
      const A g = reduction == CT_LOSS_REDUCTION_NONE ? (A)load(grad + r) : (A)gscalar;
      const bool hit_ok = t >= 0 && t < C;
      if constexpr (std::is_same_v<T, double>) {
        ce_grad_ref(xr, dr, C, lse[r], off, g);
        if (hit_ok) dr[t] -= hit * g;
      } else if constexpr (std::is_same_v<T, float>) {
        avx512 ? ce_grad_f32_avx512(xr, dr, C, lse[r], off, g) : ce_grad_f32(xr, dr, C, lse[r], off, g);
        if (hit_ok) dr[t] -= hit * g;
      } else {
        float* in = scratch.data() + (size_t)omp_get_thread_num() * (size_t)C * 2;
        float* out = in + C;
        for (int64_t i = 0; i < C; ++i) in[i] = load(xr + i);
        avx512 ? ce_grad_f32_avx512(in, out, C, lse[r], off, g) : ce_grad_f32(in, out, C, lse[r], off, g);
        if (hit_ok) out[t] -= hit * g;
        for (int64_t i = 0; i < C; ++i) store<T>(dr + i, out[i]);
      }
    }
  });
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cpu_cross_entropy_forward(int dtype, int target_dtype, int64_t rows, int64_t classes, const void* logits,
                                 const void* target, int64_t ignore_index, double smoothing, int reduction,
                                 void* loss, void* lse_out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_cross_entropy_forward";
  CT_TRY
  int st;
  if ((st = check_common(fn, dtype, target_dtype, rows, classes, smoothing, reduction))) return st;
  if (reduction != CT_LOSS_REDUCTION_NONE && (st = check_ptr(fn, "loss", loss))) return st;
  if (rows == 0) {
    if (reduction != CT_LOSS_REDUCTION_NONE)
      dispatch_float(dtype, [&](auto z) { using T = decltype(z); store<T>((T*)loss, (compute_t<T>)0); });
    return CT_OK;
  }
  if ((st = check_ptr(fn, "target", target)) || (st = check_ptr(fn, "loss", loss)) ||
      (st = check_ptr(fn, "lse_out", lse_out)))
    return st;
  int64_t count = 0;
  if ((st = check_targets(fn, target_dtype, target, rows, classes, ignore_index, &count))) return st;
  if (classes == 0)  // every row is ignored (a non-ignored target would be out of range)
    return fail(CT_ERR_INVALID_ARG, "%s: 0 classes", fn);
  if ((st = check_ptr(fn, "logits", logits))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    ce_forward<T>(target_dtype, rows, classes, (const T*)logits, target, ignore_index, smoothing, reduction, (T*)loss,
                  lse_out);
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_cross_entropy_backward(int dtype, int target_dtype, int64_t rows, int64_t classes, const void* logits,
                                  const void* target, const void* lse, const void* grad, int64_t ignore_index,
                                  double smoothing, int reduction, void* dlogits, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_cross_entropy_backward";
  CT_TRY
  int st;
  if ((st = check_common(fn, dtype, target_dtype, rows, classes, smoothing, reduction))) return st;
  if (rows == 0 || classes == 0) return CT_OK;
  if ((st = check_ptr(fn, "logits", logits)) || (st = check_ptr(fn, "target", target)) ||
      (st = check_ptr(fn, "lse", lse)) || (st = check_ptr(fn, "grad", grad)) || (st = check_ptr(fn, "dlogits", dlogits)))
    return st;
  int64_t count = 0;
  if ((st = check_targets(fn, target_dtype, target, rows, classes, ignore_index, &count))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    ce_backward<T>(target_dtype, rows, classes, (const T*)logits, target, lse, (const T*)grad, ignore_index, smoothing,
                   reduction, count, (T*)dlogits);
  });
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"
