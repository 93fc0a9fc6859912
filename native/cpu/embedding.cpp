/*
 * Row-sparse optimizer updates (contract in cortado/embedding.h).
 *
 * The rows are validated first (range, then duplicates with a mark per table row: O(n) time,
 * num_rows bytes of scratch), so a bad index changes nothing. Then each listed row is one
 * independent elementwise pass over dim columns (no two listed rows alias: distinct), split
 * over OpenMP threads by row. The per-row loop is plain C++ that GCC vectorizes (AVX2 at the
 * x86-64-v3 baseline); the arithmetic is memory-bound (20-28 bytes per element for 3-12 FLOPs),
 * so a hand-written AVX-512 path would not move it.
 */
#include <cmath>
#include <vector>

#include "cortado/embedding.h"
#include "internal.h"

namespace ct {
namespace {

int check_rows(const char* fn, int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows) {
  if (dtype != CT_F32 && dtype != CT_F64)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64 only)", fn, dtype_name(dtype), dtype);
  if (num_rows < 0 || dim < 0 || n < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: negative size (num_rows %lld, dim %lld, n %lld)", fn, (long long)num_rows,
                (long long)dim, (long long)n);
  if (n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "rows", rows))) return st;
  std::vector<unsigned char> seen((size_t)num_rows, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = rows[i];
    if (r < 0 || r >= num_rows)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: rows[%lld] = %lld is outside [0, %lld)", fn, (long long)i,
                  (long long)r, (long long)num_rows);
    if (seen[(size_t)r]++)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: rows[%lld] = %lld is listed twice (the gradient must be coalesced)",
                  fn, (long long)i, (long long)r);
  }
  return CT_OK;
}

template <class T>
void sgd_rows(int64_t dim, int64_t n, const int64_t* rows, const T* grad, T* param, T* buf, T lr, T momentum, T wd,
              bool nesterov) {
  const int nt = threads_for(n * dim * 4);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < n; ++i) {
    const T* g = grad + i * dim;
    T* p = param + rows[i] * dim;
    T* b = buf ? buf + rows[i] * dim : nullptr;
    for (int64_t j = 0; j < dim; ++j) {
      const T gj = g[j] + wd * p[j];
      T d = gj;
      if (b) {
        b[j] = momentum * b[j] + gj;
        d = nesterov ? gj + momentum * b[j] : b[j];
      }
      p[j] -= lr * d;
    }
  }
}

template <class T>
void adam_rows(int64_t dim, int64_t n, const int64_t* rows, const T* grad, T* param, T* m, T* v, T step_size, T beta1,
               T beta2, T eps, T denom_scale, T wd) {
  const int nt = threads_for(n * dim * 12);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < n; ++i) {
    const T* g = grad + i * dim;
    const int64_t off = rows[i] * dim;
    T* p = param + off;
    T* mr = m + off;
    T* vr = v + off;
    for (int64_t j = 0; j < dim; ++j) {
      const T gj = g[j] + wd * p[j];
      mr[j] = beta1 * mr[j] + (T(1) - beta1) * gj;
      vr[j] = beta2 * vr[j] + (T(1) - beta2) * gj * gj;
      p[j] -= step_size * mr[j] / (std::sqrt(vr[j]) * denom_scale + eps);
    }
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_row_sparse_sgd(int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows,
                                     const void* grad, void* param, void* momentum_buf, double lr, double momentum,
                                     double weight_decay, int nesterov, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_row_sparse_sgd";
  CT_TRY
  int st;
  if ((st = check_rows(fn, dtype, num_rows, dim, n, rows))) return st;
  if (n == 0 || dim == 0) return CT_OK;
  if ((st = check_ptr(fn, "grad", grad)) || (st = check_ptr(fn, "param", param))) return st;
  if (dtype == CT_F32)
    sgd_rows<float>(dim, n, rows, (const float*)grad, (float*)param, (float*)momentum_buf, (float)lr, (float)momentum,
                    (float)weight_decay, nesterov != 0);
  else
    sgd_rows<double>(dim, n, rows, (const double*)grad, (double*)param, (double*)momentum_buf, lr, momentum,
                     weight_decay, nesterov != 0);
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_row_sparse_adam(int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows,
                                      const void* grad, void* param, void* exp_avg, void* exp_avg_sq, double step_size,
                                      double beta1, double beta2, double eps, double denom_scale, double weight_decay,
                                      int64_t /*stream*/) {
  static const char* fn = "ct_cpu_row_sparse_adam";
  CT_TRY
  int st;
  if ((st = check_rows(fn, dtype, num_rows, dim, n, rows))) return st;
  if (n == 0 || dim == 0) return CT_OK;
  if ((st = check_ptr(fn, "grad", grad)) || (st = check_ptr(fn, "param", param)) ||
      (st = check_ptr(fn, "exp_avg", exp_avg)) || (st = check_ptr(fn, "exp_avg_sq", exp_avg_sq)))
    return st;
  if (dtype == CT_F32)
    adam_rows<float>(dim, n, rows, (const float*)grad, (float*)param, (float*)exp_avg, (float*)exp_avg_sq,
                     (float)step_size, (float)beta1, (float)beta2, (float)eps, (float)denom_scale, (float)weight_decay);
  else
    adam_rows<double>(dim, n, rows, (const double*)grad, (double*)param, (double*)exp_avg, (double*)exp_avg_sq,
                      step_size, beta1, beta2, eps, denom_scale, weight_decay);
  return CT_OK;
  CT_CATCH(fn)
}
