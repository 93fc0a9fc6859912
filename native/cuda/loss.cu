/*
 * Loss family on CUDA (loss.h): fused softmax cross-entropy.
 *
 * Forward (acc = float for f32/f16/bf16, double for f64):
 *  1. row kernel: one warp per row (classes <= 1024, 8 rows per 256-thread block) or one
 *     block per row (256..1024 threads). Each thread keeps an online (max, sum exp(x - max))
 *     state and sum(x) over a strided slice of the row; the states merge across lanes
 *     (shuffles) and warps (shared memory, in warp order). Lane 0 writes lse = m + log(s) and
 *     the row loss lse - (1 - eps) x[t] - eps/C sum(x) (0 for ignore_index). A target out of
 *     range does an atomicMin of its row into a device word (the first bad row wins).
 *  2. MEAN/SUM: one 1024-thread block adds the row losses (each thread a fixed strided set,
 *     then a fixed shuffle tree: deterministic) and counts the rows not ignored.
 *  The launcher copies the flag back (one stream synchronization) and, on error, reads the
 *  offending label for the message.
 * Backward: for MEAN/SUM a one-block kernel computes the scale g/count (no host round trip),
 *  then one thread per logit (grid-stride, coalesced): dx = (exp(x - lse) - eps/C) g, minus
 *  (1 - eps) g at the target. No synchronization.
 * Cost: forward reads each logit once (~17 FLOPs with the online rescaling), writes 2
 *  acc per row; backward reads each logit once and writes once (~18 FLOPs). Memory bound:
 *  ~e*R*C bytes forward, ~2e*R*C backward.
 */
#include "common.cuh"
#include "cortado/loss.h"

namespace ct {
namespace {

template <class T> using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

__device__ __forceinline__ float l_exp(float x) { return expf(x); }
__device__ __forceinline__ double l_exp(double x) { return exp(x); }
__device__ __forceinline__ float l_log(float x) { return logf(x); }
__device__ __forceinline__ double l_log(double x) { return log(x); }

template <class C> struct st_t { C m, s, sx; };

template <class C> __device__ __forceinline__ void st_add(st_t<C>& a, C x) {
  if (x > a.m) {
    a.s = a.s * l_exp(a.m - x) + C(1);
    a.m = x;
  } else if (!(x == -(C)INFINITY)) {
    a.s += l_exp(x - a.m);
  }
  a.sx += x;
}
template <class C> __device__ __forceinline__ st_t<C> st_merge(st_t<C> a, st_t<C> b) {
  const C m = a.m > b.m ? a.m : b.m;
  const C sa = a.s == C(0) ? C(0) : a.s * l_exp(a.m - m);
  const C sb = b.s == C(0) ? C(0) : b.s * l_exp(b.m - m);
  return st_t<C>{m, sa + sb, a.sx + b.sx};
}
template <class C> __device__ __forceinline__ st_t<C> st_warp(st_t<C> a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    st_t<C> b{__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o),
              __shfl_xor_sync(0xffffffffu, a.sx, o)};
    a = st_merge(a, b);
  }
  return a;
}

template <class J> __device__ __forceinline__ int64_t target_at(const J* t, int64_t i) { return (int64_t)t[i]; }

/* Lane 0 of a row's group: lse, row loss, target check. */
template <class T, class J>
__device__ __forceinline__ void ce_finish(int64_t row, int64_t C, const T* xr, const J* target, int64_t ignore,
                                          acc_t<T> eps, st_t<acc_t<T>> a, acc_t<T>* lse, T* loss_none,
                                          acc_t<T>* row_loss, unsigned long long* bad) {
  using A = acc_t<T>;
  const A l = a.m + l_log(a.s);
  lse[row] = l;
  const int64_t t = target_at(target, row);
  A v = A(0);
  if (t != ignore) {
    if (t < 0 || t >= C) atomicMin(bad, (unsigned long long)row);
    else v = l - (A(1) - eps) * (A)load<T>(xr[t]) - (eps / (A)C) * a.sx;
  }
  if (loss_none) loss_none[row] = store<T>((compute_t<T>)v);
  else row_loss[row] = v;
}

template <class T, class J>
__global__ void __launch_bounds__(kThreads)
ce_fwd_warp(int64_t rows, int64_t C, const T* __restrict__ x, const J* __restrict__ target, int64_t ignore,
            acc_t<T> eps, acc_t<T>* lse, T* loss_none, acc_t<T>* row_loss, unsigned long long* bad) {
  using A = acc_t<T>;
  const int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const T* xr = x + row * C;
  st_t<A> a{-(A)INFINITY, A(0), A(0)};
  for (int64_t i = lane; i < C; i += 32) st_add(a, (A)load<T>(xr[i]));
  a = st_warp(a);
  if (lane == 0) ce_finish<T, J>(row, C, xr, target, ignore, eps, a, lse, loss_none, row_loss, bad);
}

template <class T, class J>
__global__ void __launch_bounds__(1024)
ce_fwd_block(int64_t C, const T* __restrict__ x, const J* __restrict__ target, int64_t ignore, acc_t<T> eps,
             acc_t<T>* lse, T* loss_none, acc_t<T>* row_loss, unsigned long long* bad) {
  using A = acc_t<T>;
  __shared__ A sm[32], ss[32], sx[32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * C;
  st_t<A> a{-(A)INFINITY, A(0), A(0)};
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) st_add(a, (A)load<T>(xr[i]));
  a = st_warp(a);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) {
    sm[warp] = a.m;
    ss[warp] = a.s;
    sx[warp] = a.sx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    st_t<A> r{sm[0], ss[0], sx[0]};
    for (int w = 1; w < nwarps; ++w) r = st_merge(r, st_t<A>{sm[w], ss[w], sx[w]});
    ce_finish<T, J>(row, C, xr, target, ignore, eps, r, lse, loss_none, row_loss, bad);
  }
}

struct add_op {
  template <class V> __device__ __forceinline__ V operator()(V a, V b) const { return a + b; }
};

/* One 1024-thread block: loss[0] = sum(row_loss) (/ count for MEAN; count 0 gives 0). */
template <class T, class J>
__global__ void __launch_bounds__(1024)
ce_reduce(int64_t rows, const acc_t<T>* __restrict__ row_loss, const J* __restrict__ target, int64_t ignore,
          int mean, T* loss) {
  using A = acc_t<T>;
  __shared__ A scratch[32];
  __shared__ long long cscratch[32];
  A s = A(0);
  long long c = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    s += row_loss[i];
    c += target_at(target, i) != ignore;
  }
  s = block_allreduce(s, add_op{}, scratch);
  c = block_allreduce(c, add_op{}, cscratch);
  if (threadIdx.x == 0) {
    A v = s;
    if (mean) v = c == 0 ? A(0) : s / (A)c;
    loss[0] = store<T>((compute_t<T>)v);
  }
}

/* One 1024-thread block: scale[0] = grad / count (MEAN) or grad (SUM). */
template <class T, class J>
__global__ void __launch_bounds__(1024)
ce_scale(int64_t rows, const J* __restrict__ target, int64_t ignore, int mean, const T* __restrict__ grad,
         acc_t<T>* scale) {
  using A = acc_t<T>;
  __shared__ long long cscratch[32];
  long long c = 0;
  if (mean)
    for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) c += target_at(target, i) != ignore;
  c = block_allreduce(c, add_op{}, cscratch);
  if (threadIdx.x == 0) {
    const A g = (A)load<T>(grad[0]);
    scale[0] = mean ? (c == 0 ? A(0) : g / (A)c) : g;
  }
}

template <class T, class J>
__global__ void __launch_bounds__(kThreads)
ce_backward(int64_t rows, int64_t C, const T* __restrict__ x, const J* __restrict__ target,
            const acc_t<T>* __restrict__ lse, const T* __restrict__ grad, const acc_t<T>* __restrict__ scale,
            int64_t ignore, acc_t<T> eps, T* __restrict__ dx) {
  using A = acc_t<T>;
  const int64_t total = rows * C;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  const A off = eps / (A)C, hit = A(1) - eps;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += step) {
    const int64_t row = k / C, c = k - row * C;
    const int64_t t = target_at(target, row);
    A v = A(0);
    if (t != ignore) {
      const A g = scale ? scale[0] : (A)load<T>(grad[row]);
      v = (l_exp((A)load<T>(x[k]) - lse[row]) - off) * g;
      if (c == t) v -= hit * g;
    }
    dx[k] = store<T>((compute_t<T>)v);
  }
}

int block_threads(int64_t cols) { return cols <= 8192 ? 256 : (cols <= 32768 ? 512 : 1024); }

int check_common(const char* fn, int dtype, int target_dtype, int64_t rows, int64_t classes, double smoothing,
                 int reduction) {
  if (dtype != CT_F32 && dtype != CT_F64 && dtype != CT_F16 && dtype != CT_BF16)
    return fail(dtype_size(dtype) ? CT_ERR_UNSUPPORTED : CT_ERR_INVALID_ARG,
                "%s: logits dtype %s (%d) is not supported (F32, F64, F16, BF16 only)", fn, dtype_name(dtype), dtype);
  if (target_dtype != CT_I32 && target_dtype != CT_I64)
    return fail(CT_ERR_UNSUPPORTED, "%s: target dtype %s must be I32 or I64", fn, dtype_name(target_dtype));
  if (rows < 0 || classes < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: negative size (rows=%lld classes=%lld)", fn, (long long)rows,
                (long long)classes);
  if (rows > INT32_MAX) return fail(CT_ERR_INVALID_ARG, "%s: too many rows (%lld)", fn, (long long)rows);
  int64_t t;
  if (__builtin_mul_overflow(rows, classes, &t)) return fail(CT_ERR_INVALID_ARG, "%s: rows*classes overflows", fn);
  if (!(smoothing >= 0.0 && smoothing <= 1.0))
    return fail(CT_ERR_INVALID_ARG, "%s: label smoothing %g is outside [0, 1]", fn, smoothing);
  if (reduction != CT_LOSS_REDUCTION_NONE && reduction != CT_LOSS_REDUCTION_MEAN && reduction != CT_LOSS_REDUCTION_SUM)
    return fail(CT_ERR_INVALID_ARG, "%s: reduction %d is not NONE (0), MEAN (1) or SUM (2)", fn, reduction);
  return CT_OK;
}

template <class F> void dispatch_target(int target_dtype, F&& f) {
  if (target_dtype == CT_I32) f(type_tag<int32_t>{});
  else f(type_tag<int64_t>{});
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_cross_entropy_forward(int dtype, int target_dtype, int64_t rows, int64_t classes,
                                             const void* logits, const void* target, int64_t ignore_index,
                                             double smoothing, int reduction, void* loss, void* lse_out,
                                             int64_t stream) {
  const char* fn = "ct_cuda_cross_entropy_forward";
  CT_TRY_STATUS(check_common(fn, dtype, target_dtype, rows, classes, smoothing, reduction));
  cudaStream_t s = as_stream(stream);
  if (rows == 0 && reduction == CT_LOSS_REDUCTION_NONE) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "loss", loss));
  if (rows == 0) {
    CT_CUDA_TRY(fn, cudaMemsetAsync(loss, 0, (size_t)dtype_size(dtype), s));  // +0.0 in every float dtype
    return CT_OK;
  }
  if (classes == 0) return fail(CT_ERR_INVALID_ARG, "%s: 0 classes", fn);
  CT_TRY_STATUS(check_ptr(fn, "logits", logits));
  CT_TRY_STATUS(check_ptr(fn, "target", target));
  CT_TRY_STATUS(check_ptr(fn, "lse_out", lse_out));
  const size_t acc = dtype == CT_F64 ? 8 : 4;
  void* scratch = nullptr;  // [bad flag (8 bytes, padded to 16)] [row losses]
  const size_t bytes = 16 + (reduction == CT_LOSS_REDUCTION_NONE ? 0 : acc * (size_t)rows);
  CT_CUDA_TRY(fn, cudaMallocAsync(&scratch, bytes, s));
  unsigned long long* bad = (unsigned long long*)scratch;
  void* row_loss = (char*)scratch + 16;
  int status = CT_OK;
  cudaError_t err = cudaMemsetAsync(bad, 0xFF, sizeof(unsigned long long), s);
  if (err != cudaSuccess) status = cuda_fail(fn, err);
  if (status == CT_OK) {
    dispatch_float(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      using A = acc_t<T>;
      dispatch_target(target_dtype, [&](auto jtag) {
        using J = typename decltype(jtag)::type;
        T* none = reduction == CT_LOSS_REDUCTION_NONE ? (T*)loss : nullptr;
        A* rl = reduction == CT_LOSS_REDUCTION_NONE ? nullptr : (A*)row_loss;
        if (classes <= 1024) {
          const int64_t per = kThreads / 32;
          ce_fwd_warp<T, J><<<(unsigned)((rows + per - 1) / per), kThreads, 0, s>>>(
              rows, classes, (const T*)logits, (const J*)target, ignore_index, (A)smoothing, (A*)lse_out, none, rl, bad);
        } else {
          ce_fwd_block<T, J><<<(unsigned)rows, block_threads(classes), 0, s>>>(
              classes, (const T*)logits, (const J*)target, ignore_index, (A)smoothing, (A*)lse_out, none, rl, bad);
        }
        if (reduction != CT_LOSS_REDUCTION_NONE)
          ce_reduce<T, J><<<1, 1024, 0, s>>>(rows, rl, (const J*)target, ignore_index,
                                             reduction == CT_LOSS_REDUCTION_MEAN ? 1 : 0, (T*)loss);
      });
    });
    status = check_launch(fn);
  }
  unsigned long long bad_row = ~0ull;
  if (status == CT_OK) {
    err = cudaMemcpyAsync(&bad_row, bad, sizeof bad_row, cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);
    if (err != cudaSuccess) status = cuda_fail(fn, err);
  }
  err = cudaFreeAsync(scratch, s);
  if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
  if (status != CT_OK || bad_row == ~0ull) return status;
  int64_t value = 0;
  int32_t v32 = 0;
  const int64_t isz = target_dtype == CT_I32 ? 4 : 8;
  err = cudaMemcpy(target_dtype == CT_I32 ? (void*)&v32 : (void*)&value, (const char*)target + (int64_t)bad_row * isz,
                   (size_t)isz, cudaMemcpyDeviceToHost);
  if (err != cudaSuccess) return cuda_fail(fn, err);
  if (target_dtype == CT_I32) value = v32;
  return fail(CT_ERR_INDEX_OUT_OF_RANGE,
              "%s: target %lld at position %lld is out of range for %lld classes (ignore_index %lld)", fn,
              (long long)value, (long long)bad_row, (long long)classes, (long long)ignore_index);
}

extern "C" int ct_cuda_cross_entropy_backward(int dtype, int target_dtype, int64_t rows, int64_t classes,
                                              const void* logits, const void* target, const void* lse,
                                              const void* grad, int64_t ignore_index, double smoothing, int reduction,
                                              void* dlogits, int64_t stream) {
  const char* fn = "ct_cuda_cross_entropy_backward";
  CT_TRY_STATUS(check_common(fn, dtype, target_dtype, rows, classes, smoothing, reduction));
  if (rows == 0 || classes == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "logits", logits));
  CT_TRY_STATUS(check_ptr(fn, "target", target));
  CT_TRY_STATUS(check_ptr(fn, "lse", lse));
  CT_TRY_STATUS(check_ptr(fn, "grad", grad));
  CT_TRY_STATUS(check_ptr(fn, "dlogits", dlogits));
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  cudaStream_t s = as_stream(stream);
  void* scale = nullptr;
  if (reduction != CT_LOSS_REDUCTION_NONE) CT_CUDA_TRY(fn, cudaMallocAsync(&scale, 16, s));
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    dispatch_target(target_dtype, [&](auto jtag) {
      using J = typename decltype(jtag)::type;
      if (scale)
        ce_scale<T, J><<<1, 1024, 0, s>>>(rows, (const J*)target, ignore_index, reduction == CT_LOSS_REDUCTION_MEAN ? 1 : 0,
                                          (const T*)grad, (A*)scale);
      ce_backward<T, J><<<grid_for(rows * classes, sms), kThreads, 0, s>>>(
          rows, classes, (const T*)logits, (const J*)target, (const A*)lse, (const T*)grad, (const A*)scale,
          ignore_index, (A)smoothing, (T*)dlogits);
    });
  });
  int status = check_launch(fn);
  if (scale) {
    cudaError_t err = cudaFreeAsync(scale, s);
    if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
  }
  return status;
}
