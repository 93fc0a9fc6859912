/*
 * Optimizer family (optim.h) on CUDA: fused SGD/momentum, Adam/AdamW, Adagrad updates and the
 * gradient utilities (sum of squares, scale, unscale-and-check). Formulas: optim.h; they are
 * the CPU twin's (native/cpu/optim.cpp) element for element, in the param dtype.
 *
 * Launch scheme (multi-tensor apply): the host-side tables are packed, 16 non-empty tensors at
 * a time, into a by-value kernel parameter (sizes + up to 5 pointers per tensor, < 1 KB);
 * blockIdx.y selects the tensor, a grid-stride loop over blockIdx.x covers its elements. One
 * launch per 16 tensors instead of one per tensor, and no device-side table copy. Blocks
 * whose tensor is shorter than the grid just run fewer iterations. Each element is read and
 * written once: Adam moves 28 B per float32 element (p, g, m, v in; p, m, v out), so the
 * kernel runs at DRAM bandwidth (an H200 at ~4.8 TB/s: ~60 us for 10M params).
 *
 * sum_squares: per-thread float64 partial sums, block reduction, one atomicAdd(double) per
 * block into the caller's device accumulator (order of the atomics varies: the last bits of
 * the sum may differ run to run). unscale_check stores 1 into the device flag from any thread
 * that sees a non-finite scaled value (benign race: every writer writes 1).
 */
#include "common.cuh"
#include "cortado/optim.h"

namespace ct {
namespace {

constexpr int kMaxTensors = 16;

struct table_t {
  int n;
  int64_t size[kMaxTensors];
  void* ptr[5][kMaxTensors];  // 0 param (or the tensor of a utility), 1 grad, 2..4 states
};

template <class T> __device__ __forceinline__ T m_sqrt(T x);
template <> __device__ __forceinline__ float m_sqrt<float>(float x) { return sqrtf(x); }
template <> __device__ __forceinline__ double m_sqrt<double>(double x) { return sqrt(x); }

// ------------------------------------------------------------------ kernels
template <class P, class G, int MODE>
__global__ void sgd_kernel(table_t t, P lr, P l2, P alpha, P beta, P gs) {
  const int k = blockIdx.y;
  const int64_t n = t.size[k];
  P* __restrict p = (P*)t.ptr[0][k];
  const G* __restrict g = (const G*)t.ptr[1][k];
  P* __restrict b = (P*)t.ptr[2][k];
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    P x = p[i];
    P gr = gs * (P)load<G>(g[i]) + l2 * x;
    P d = gr;
    if constexpr (MODE >= 1) {
      P bn = alpha * b[i] + beta * gr;
      b[i] = bn;
      d = MODE == 2 ? gr + alpha * bn : bn;
    }
    p[i] = x - lr * d;
  }
}

template <class P> struct adam_coef { P beta1, beta2, eps, l2, keep, step, dscale, post, gs; };

template <class P, class G, bool AMS>
__global__ void adam_kernel(table_t t, adam_coef<P> c) {
  const int k = blockIdx.y;
  const int64_t n = t.size[k];
  P* __restrict p = (P*)t.ptr[0][k];
  const G* __restrict g = (const G*)t.ptr[1][k];
  P* __restrict m = (P*)t.ptr[2][k];
  P* __restrict v = (P*)t.ptr[3][k];
  P* __restrict vmax = (P*)t.ptr[4][k];
  const P omb1 = P(1) - c.beta1, omb2 = P(1) - c.beta2;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    P x = p[i];
    P gr = c.gs * (P)load<G>(g[i]) + c.l2 * x;
    x *= c.keep;
    P mn = c.beta1 * m[i] + omb1 * gr;
    P vn = c.beta2 * v[i] + omb2 * gr * gr;
    m[i] = mn;
    v[i] = vn;
    P vu = vn;
    if constexpr (AMS) {
      P old = vmax[i];
      vu = old > vn ? old : vn;
      vmax[i] = vu;
    }
    p[i] = (x - c.step * mn / (m_sqrt(vu) * c.dscale + c.eps)) * c.post;
  }
}

template <class P, class G>
__global__ void adagrad_kernel(table_t t, P lr, P l2, P eps, P gs) {
  const int k = blockIdx.y;
  const int64_t n = t.size[k];
  P* __restrict p = (P*)t.ptr[0][k];
  const G* __restrict g = (const G*)t.ptr[1][k];
  P* __restrict h = (P*)t.ptr[2][k];
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    P x = p[i];
    P gr = gs * (P)load<G>(g[i]) + l2 * x;
    P hn = h[i] + gr * gr;
    h[i] = hn;
    p[i] = x - lr * gr / (m_sqrt(hn) + eps);
  }
}

template <class T>
__global__ void sumsq_kernel(table_t t, double* out) {
  __shared__ double scratch[32];
  const int k = blockIdx.y;
  const int64_t n = t.size[k];
  const T* __restrict x = (const T*)t.ptr[0][k];
  double acc = 0.0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    double v = (double)load<T>(x[i]);
    acc += v * v;
  }
  acc = block_allreduce(acc, [](double a, double b) { return a + b; }, scratch);
  if (threadIdx.x == 0 && acc != 0.0) atomicAdd(out, acc);
  // inf and NaN pass the != 0 test (NaN compares unequal), so they reach the sum
}

template <class T>
__global__ void scale_kernel(table_t t, compute_t<T> f) {
  const int k = blockIdx.y;
  const int64_t n = t.size[k];
  T* __restrict x = (T*)t.ptr[0][k];
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = store<T>(load<T>(x[i]) * f);
}

template <class T>
__global__ void unscale_kernel(table_t t, compute_t<T> f, int32_t* found) {
  const int k = blockIdx.y;
  const int64_t n = t.size[k];
  T* __restrict x = (T*)t.ptr[0][k];
  bool bad = false;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    compute_t<T> v = load<T>(x[i]) * f;
    x[i] = store<T>(v);
    bad |= !isfinite(v);
  }
  if (bad) *found = 1;
}

// ------------------------------------------------------------------ host side
int check_sizes(const char* fn, int64_t n, const int64_t* sizes) {
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: tensor count %lld is negative", fn, (long long)n);
  if (n > 0 && !sizes) return fail(CT_ERR_INVALID_ARG, "%s: the sizes table is NULL", fn);
  for (int64_t i = 0; i < n; ++i)
    if (sizes[i] < 0)
      return fail(CT_ERR_INVALID_ARG, "%s: sizes[%lld] = %lld is negative", fn, (long long)i, (long long)sizes[i]);
  return CT_OK;
}

int check_table(const char* fn, const char* name, int64_t n, const int64_t* sizes, const int64_t* table) {
  if (!table) return fail(CT_ERR_INVALID_ARG, "%s: the %s table is NULL", fn, name);
  for (int64_t i = 0; i < n; ++i)
    if (sizes[i] > 0 && table[i] == 0) return fail(CT_ERR_INVALID_ARG, "%s: %s[%lld] is NULL", fn, name, (long long)i);
  return CT_OK;
}

template <class F> int dispatch_pg(const char* fn, int pd, int gd, F&& f) {
  if (pd == CT_F32 && gd == CT_F32) { f(type_tag<float>{}, type_tag<float>{}); return CT_OK; }
  if (pd == CT_F64 && gd == CT_F64) { f(type_tag<double>{}, type_tag<double>{}); return CT_OK; }
  if (pd == CT_F32 && gd == CT_F16) { f(type_tag<float>{}, type_tag<__half>{}); return CT_OK; }
  if (pd == CT_F32 && gd == CT_BF16) { f(type_tag<float>{}, type_tag<__nv_bfloat16>{}); return CT_OK; }
  return fail(CT_ERR_UNSUPPORTED, "%s: parameters of dtype %s with gradients of dtype %s are not supported "
              "(params F32 or F64; gradients of the param dtype, or F16/BF16 with F32 params)",
              fn, dtype_name(pd), dtype_name(gd));
}

/* Packs the non-empty tensors 16 at a time and calls launch(table, grid) for each pack. */
template <class L>
int for_packs(const char* fn, int64_t n, const int64_t* sizes, const int64_t* const* tables, int ntables, L&& launch) {
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  table_t t{};
  int64_t maxn = 0;
  auto flush = [&]() -> int {
    if (t.n == 0) return CT_OK;
    dim3 grid(grid_for(maxn, sms), (unsigned)t.n);
    launch(t, grid);
    int st = check_launch(fn);
    t = table_t{};
    maxn = 0;
    return st;
  };
  for (int64_t i = 0; i < n; ++i) {
    if (sizes[i] == 0) continue;
    const int k = t.n++;
    t.size[k] = sizes[i];
    for (int j = 0; j < ntables; ++j)
      t.ptr[j][k] = tables[j] ? reinterpret_cast<void*>((intptr_t)tables[j][i]) : nullptr;
    if (sizes[i] > maxn) maxn = sizes[i];
    if (t.n == kMaxTensors) CT_TRY_STATUS(flush());
  }
  return flush();
}

template <class F> int dispatch_float_fn(const char* fn, int dtype, F&& f) {
  if (!dispatch_float(dtype, f))
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s is not a floating dtype", fn, dtype_name(dtype));
  return CT_OK;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_optim_sgd(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes,
                                 const int64_t* params, const int64_t* grads, const int64_t* momentum_bufs,
                                 double lr, double l2, double alpha, double beta, int nesterov, double grad_scale,
                                 int64_t stream) {
  const char* fn = "ct_cuda_optim_sgd";
  CT_TRY_STATUS(check_sizes(fn, n, sizes));
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_table(fn, "params", n, sizes, params));
  CT_TRY_STATUS(check_table(fn, "grads", n, sizes, grads));
  if (momentum_bufs) CT_TRY_STATUS(check_table(fn, "momentum_bufs", n, sizes, momentum_bufs));
  if (nesterov && !momentum_bufs) return fail(CT_ERR_INVALID_ARG, "%s: Nesterov momentum needs momentum buffers", fn);
  const int mode = momentum_bufs ? (nesterov ? 2 : 1) : 0;
  cudaStream_t s = as_stream(stream);
  const int64_t* tables[3] = {params, grads, momentum_bufs};
  int status = CT_OK;
  CT_TRY_STATUS(dispatch_pg(fn, param_dtype, grad_dtype, [&](auto pt, auto gt) {
    using P = typename decltype(pt)::type;
    using G = typename decltype(gt)::type;
    status = for_packs(fn, n, sizes, tables, 3, [&](const table_t& t, dim3 grid) {
      if (mode == 0) sgd_kernel<P, G, 0><<<grid, kThreads, 0, s>>>(t, (P)lr, (P)l2, (P)alpha, (P)beta, (P)grad_scale);
      else if (mode == 1) sgd_kernel<P, G, 1><<<grid, kThreads, 0, s>>>(t, (P)lr, (P)l2, (P)alpha, (P)beta, (P)grad_scale);
      else sgd_kernel<P, G, 2><<<grid, kThreads, 0, s>>>(t, (P)lr, (P)l2, (P)alpha, (P)beta, (P)grad_scale);
    });
  }));
  return status;
}

extern "C" int ct_cuda_optim_adam(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes,
                                  const int64_t* params, const int64_t* grads, const int64_t* exp_avgs,
                                  const int64_t* exp_avg_sqs, const int64_t* max_exp_avg_sqs, double beta1,
                                  double beta2, double eps, double l2, double decoupled, double step_size,
                                  double denom_scale, double post_scale, double grad_scale, int64_t stream) {
  const char* fn = "ct_cuda_optim_adam";
  CT_TRY_STATUS(check_sizes(fn, n, sizes));
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_table(fn, "params", n, sizes, params));
  CT_TRY_STATUS(check_table(fn, "grads", n, sizes, grads));
  CT_TRY_STATUS(check_table(fn, "exp_avgs", n, sizes, exp_avgs));
  CT_TRY_STATUS(check_table(fn, "exp_avg_sqs", n, sizes, exp_avg_sqs));
  if (max_exp_avg_sqs) CT_TRY_STATUS(check_table(fn, "max_exp_avg_sqs", n, sizes, max_exp_avg_sqs));
  cudaStream_t s = as_stream(stream);
  const int64_t* tables[5] = {params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs};
  int status = CT_OK;
  CT_TRY_STATUS(dispatch_pg(fn, param_dtype, grad_dtype, [&](auto pt, auto gt) {
    using P = typename decltype(pt)::type;
    using G = typename decltype(gt)::type;
    adam_coef<P> c{(P)beta1, (P)beta2, (P)eps, (P)l2, (P)(1.0 - decoupled), (P)step_size, (P)denom_scale,
                   (P)post_scale, (P)grad_scale};
    status = for_packs(fn, n, sizes, tables, 5, [&](const table_t& t, dim3 grid) {
      if (max_exp_avg_sqs) adam_kernel<P, G, true><<<grid, kThreads, 0, s>>>(t, c);
      else adam_kernel<P, G, false><<<grid, kThreads, 0, s>>>(t, c);
    });
  }));
  return status;
}

extern "C" int ct_cuda_optim_adagrad(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes,
                                     const int64_t* params, const int64_t* grads, const int64_t* sums, double lr,
                                     double l2, double eps, double grad_scale, int64_t stream) {
  const char* fn = "ct_cuda_optim_adagrad";
  CT_TRY_STATUS(check_sizes(fn, n, sizes));
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_table(fn, "params", n, sizes, params));
  CT_TRY_STATUS(check_table(fn, "grads", n, sizes, grads));
  CT_TRY_STATUS(check_table(fn, "sums", n, sizes, sums));
  cudaStream_t s = as_stream(stream);
  const int64_t* tables[3] = {params, grads, sums};
  int status = CT_OK;
  CT_TRY_STATUS(dispatch_pg(fn, param_dtype, grad_dtype, [&](auto pt, auto gt) {
    using P = typename decltype(pt)::type;
    using G = typename decltype(gt)::type;
    status = for_packs(fn, n, sizes, tables, 3, [&](const table_t& t, dim3 grid) {
      adagrad_kernel<P, G><<<grid, kThreads, 0, s>>>(t, (P)lr, (P)l2, (P)eps, (P)grad_scale);
    });
  }));
  return status;
}

extern "C" int ct_cuda_optim_sum_squares(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors,
                                         double* out_device, int64_t stream) {
  const char* fn = "ct_cuda_optim_sum_squares";
  CT_TRY_STATUS(check_sizes(fn, n, sizes));
  CT_TRY_STATUS(check_ptr(fn, "out_device", out_device));
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_table(fn, "tensors", n, sizes, tensors));
  cudaStream_t s = as_stream(stream);
  const int64_t* tables[1] = {tensors};
  int status = CT_OK;
  CT_TRY_STATUS(dispatch_float_fn(fn, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    status = for_packs(fn, n, sizes, tables, 1, [&](const table_t& t, dim3 grid) {
      sumsq_kernel<T><<<grid, kThreads, 0, s>>>(t, out_device);
    });
  }));
  return status;
}

extern "C" int ct_cuda_optim_scale(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double factor,
                                   int64_t stream) {
  const char* fn = "ct_cuda_optim_scale";
  CT_TRY_STATUS(check_sizes(fn, n, sizes));
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_table(fn, "tensors", n, sizes, tensors));
  cudaStream_t s = as_stream(stream);
  const int64_t* tables[1] = {tensors};
  int status = CT_OK;
  CT_TRY_STATUS(dispatch_float_fn(fn, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    status = for_packs(fn, n, sizes, tables, 1, [&](const table_t& t, dim3 grid) {
      scale_kernel<T><<<grid, kThreads, 0, s>>>(t, (compute_t<T>)factor);
    });
  }));
  return status;
}

extern "C" int ct_cuda_optim_unscale_check(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors,
                                           double inv_scale, int32_t* found_inf_device, int64_t stream) {
  const char* fn = "ct_cuda_optim_unscale_check";
  CT_TRY_STATUS(check_sizes(fn, n, sizes));
  CT_TRY_STATUS(check_ptr(fn, "found_inf_device", found_inf_device));
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_table(fn, "tensors", n, sizes, tensors));
  cudaStream_t s = as_stream(stream);
  const int64_t* tables[1] = {tensors};
  int status = CT_OK;
  CT_TRY_STATUS(dispatch_float_fn(fn, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    status = for_packs(fn, n, sizes, tables, 1, [&](const table_t& t, dim3 grid) {
      unscale_kernel<T><<<grid, kThreads, 0, s>>>(t, (compute_t<T>)inv_scale, found_inf_device);
    });
  }));
  return status;
}
