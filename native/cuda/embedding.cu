/*
 * Row-sparse optimizer updates on CUDA (contract in cortado/embedding.h).
 *
 * Validation: the n row indices are copied to the host (n * 8 bytes, one synchronization of
 * the stream) and checked there exactly as the CPU twin checks them (range, then duplicates),
 * so a bad index is reported before any row is written. The update is one thread per element
 * of the n x dim gradient (grid-stride loop): thread e updates param[rows[e / dim], e % dim]
 * and its state; distinct rows mean no two threads touch the same element (no atomics).
 * Cost: as on the CPU, memory-bound (20-28 bytes per float32 element).
 */
#include <vector>

#include "common.cuh"
#include "cortado/embedding.h"

namespace ct {
namespace {

constexpr int kRowThreads = 256;

unsigned row_grid(int64_t total) {
  const int64_t blocks = (total + kRowThreads - 1) / kRowThreads;
  return (unsigned)(blocks < 65535 * 8 ? (blocks < 1 ? 1 : blocks) : 65535 * 8);
}

int check_rows(const char* fn, int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows,
               cudaStream_t s) {
  if (dtype != CT_F32 && dtype != CT_F64)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64 only)", fn, dtype_name(dtype), dtype);
  if (num_rows < 0 || dim < 0 || n < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: negative size (num_rows %lld, dim %lld, n %lld)", fn, (long long)num_rows,
                (long long)dim, (long long)n);
  if (n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "rows", rows))) return st;
  std::vector<int64_t> host((size_t)n);
  CT_CUDA_TRY(fn, cudaMemcpyAsync(host.data(), rows, (size_t)n * sizeof(int64_t), cudaMemcpyDeviceToHost, s));
  CT_CUDA_TRY(fn, cudaStreamSynchronize(s));
  std::vector<unsigned char> seen((size_t)num_rows, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = host[(size_t)i];
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
__global__ void sgd_rows(int64_t total, int64_t dim, const int64_t* __restrict__ rows, const T* __restrict__ grad,
                         T* __restrict__ param, T* __restrict__ buf, T lr, T momentum, T wd, bool nesterov) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / dim, j = e - i * dim;
    const int64_t at = rows[i] * dim + j;
    const T p = param[at];
    const T g = grad[e] + wd * p;
    T d = g;
    if (buf) {
      const T b = momentum * buf[at] + g;
      buf[at] = b;
      d = nesterov ? g + momentum * b : b;
    }
    param[at] = p - lr * d;
  }
}

template <class T>
__global__ void adam_rows(int64_t total, int64_t dim, const int64_t* __restrict__ rows, const T* __restrict__ grad,
                          T* __restrict__ param, T* __restrict__ m, T* __restrict__ v, T step_size, T beta1, T beta2,
                          T eps, T denom_scale, T wd) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / dim, j = e - i * dim;
    const int64_t at = rows[i] * dim + j;
    const T p = param[at];
    const T g = grad[e] + wd * p;
    const T mn = beta1 * m[at] + (T(1) - beta1) * g;
    const T vn = beta2 * v[at] + (T(1) - beta2) * g * g;
    m[at] = mn;
    v[at] = vn;
    param[at] = p - step_size * mn / (sqrt(vn) * denom_scale + eps);
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_row_sparse_sgd(int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows,
                                      const void* grad, void* param, void* momentum_buf, double lr, double momentum,
                                      double weight_decay, int nesterov, int64_t stream) {
  static const char* fn = "ct_cuda_row_sparse_sgd";
  cudaStream_t s = as_stream(stream);
  int st;
  if ((st = check_rows(fn, dtype, num_rows, dim, n, rows, s))) return st;
  if (n == 0 || dim == 0) return CT_OK;
  if ((st = check_ptr(fn, "grad", grad)) || (st = check_ptr(fn, "param", param))) return st;
  const int64_t total = n * dim;
  if (dtype == CT_F32)
    sgd_rows<float><<<row_grid(total), kRowThreads, 0, s>>>(total, dim, rows, (const float*)grad, (float*)param,
                                                         (float*)momentum_buf, (float)lr, (float)momentum,
                                                         (float)weight_decay, nesterov != 0);
  else
    sgd_rows<double><<<row_grid(total), kRowThreads, 0, s>>>(total, dim, rows, (const double*)grad, (double*)param,
                                                          (double*)momentum_buf, lr, momentum, weight_decay,
                                                          nesterov != 0);
  return check_launch(fn);
}

extern "C" int ct_cuda_row_sparse_adam(int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows,
                                       const void* grad, void* param, void* exp_avg, void* exp_avg_sq,
                                       double step_size, double beta1, double beta2, double eps, double denom_scale,
                                       double weight_decay, int64_t stream) {
  static const char* fn = "ct_cuda_row_sparse_adam";
  cudaStream_t s = as_stream(stream);
  int st;
  if ((st = check_rows(fn, dtype, num_rows, dim, n, rows, s))) return st;
  if (n == 0 || dim == 0) return CT_OK;
  if ((st = check_ptr(fn, "grad", grad)) || (st = check_ptr(fn, "param", param)) ||
      (st = check_ptr(fn, "exp_avg", exp_avg)) || (st = check_ptr(fn, "exp_avg_sq", exp_avg_sq)))
    return st;
  const int64_t total = n * dim;
  if (dtype == CT_F32)
    adam_rows<float><<<row_grid(total), kRowThreads, 0, s>>>(total, dim, rows, (const float*)grad, (float*)param,
                                                          (float*)exp_avg, (float*)exp_avg_sq, (float)step_size,
                                                          (float)beta1, (float)beta2, (float)eps, (float)denom_scale,
                                                          (float)weight_decay);
  else
    adam_rows<double><<<row_grid(total), kRowThreads, 0, s>>>(total, dim, rows, (const double*)grad, (double*)param,
                                                           (double*)exp_avg, (double*)exp_avg_sq, step_size, beta1,
                                                           beta2, eps, denom_scale, weight_decay);
  return check_launch(fn);
}
