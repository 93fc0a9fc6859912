/*
 * SLAB family on CUDA (contract in cortado/slab.h): simplified linear attention,
 * o_n = relu(q_n)^T KV / (relu(q_n) . kbar + eps), KV = (1/N) sum relu(k_m) v_m^T.
 *
 * One block of 256 threads per (batch, head). KV [D, D] and kbar [D] live in shared memory:
 *   build : thread e owns KV[i][j] (e = i D + j) and sums relu(k[m][i]) v[m][j] over the tokens
 *           (a warp reads consecutive j of one v row: coalesced; k[m][i] is a broadcast);
 *   rows  : warp w takes tokens w, w + 8, ...; the relu(q) row is staged in shared memory, lanes
 *           own output columns j and sum over i. Forward 4 N D^2 FLOPs per head.
 * Backward: build again; a row pass computes g_n = dO_n / z_n and c_n = -(dO_n . o_n) / z_n and dq,
 * parking g_n in dv's row n and c_n in dk[n][0] (global scratch, read back after __syncthreads);
 * a thread per dKV[i][j] (and dkbar[i]) sums over the tokens; a last row pass writes dk and dv
 * over the scratch. ~12 N D^2 FLOPs per head. Shared memory (2 D^2 + 2 D + 16 D) sizeof(T):
 * D <= 128 (F32) and D <= 64 (F64), with the opt-in above 48 KiB.
 * This is the straightforward twin of native/cpu/slab.cpp (one block per head, no split of the
 * token sum over blocks): enough for ViT-sized sequences, checked against the CPU in gpu_check.
 */
#include "common.cuh"
#include "cortado/slab.h"

namespace ct {
namespace {

constexpr int kSlabThreads = 256;
constexpr int kSlabWarps = kSlabThreads / 32;

template <class T> __device__ __forceinline__ T relu(T x) { return x > T(0) ? x : T(0); }

template <class T> __device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

struct Strides {
  int64_t qb, qh, qn, kb, kh, kn, vb, vh, vn;
};

/* kv = (1/N) sum relu(k_m) v_m^T, kbar = (1/N) sum relu(k_m), by the whole block. */
template <class T>
__device__ void build_kv(int64_t N, int64_t D, const T* k, int64_t kn, const T* v, int64_t vn, T* kv, T* kbar) {
  const T inv = T(1) / T(N);
  for (int64_t e = threadIdx.x; e < D * D + D; e += blockDim.x) {
    T s = 0;
    if (e < D * D) {
      const int64_t i = e / D, j = e % D;
      for (int64_t m = 0; m < N; ++m) s += relu(k[m * kn + i]) * v[m * vn + j];
      kv[e] = s * inv;
    } else {
      const int64_t i = e - D * D;
      for (int64_t m = 0; m < N; ++m) s += relu(k[m * kn + i]);
      kbar[i] = s * inv;
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kSlabThreads) forward_kernel(int64_t H, int64_t N, int64_t D, const T* q, const T* k,
                                                           const T* v, Strides s, T eps, T* o) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* kv = reinterpret_cast<T*>(smem);
  T* kbar = kv + D * D;
  T* rows = kbar + D;
  const int64_t b = blockIdx.x / H, h = blockIdx.x % H;
  q += b * s.qb + h * s.qh;
  k += b * s.kb + h * s.kh;
  v += b * s.vb + h * s.vh;
  o += (int64_t)blockIdx.x * N * D;
  build_kv(N, D, k, s.kn, v, s.vn, kv, kbar);
  __syncthreads();
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  T* qp = rows + w * D;
  for (int64_t n = w; n < N; n += kSlabWarps) {
    T part = 0;
    for (int64_t i = lane; i < D; i += 32) {
      qp[i] = relu(q[n * s.qn + i]);
      part += qp[i] * kbar[i];
    }
    const T den = warp_sum(part) + eps;
    __syncwarp();
    for (int64_t j = lane; j < D; j += 32) {
      T acc = 0;
      for (int64_t i = 0; i < D; ++i) acc += qp[i] * kv[i * D + j];
      o[n * D + j] = acc / den;
    }
    __syncwarp();
  }
}

template <class T>
__global__ void __launch_bounds__(kSlabThreads) backward_kernel(int64_t H, int64_t N, int64_t D, const T* q, const T* k,
                                                            const T* v, Strides s, const T* dout, T eps, T* dq, T* dk,
                                                            T* dv) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* kv = reinterpret_cast<T*>(smem);
  T* dkv = kv + D * D;
  T* kbar = dkv + D * D;
  T* dkbar = kbar + D;
  T* rows = dkbar + D;
  const int64_t b = blockIdx.x / H, h = blockIdx.x % H;
  const int64_t off = (int64_t)blockIdx.x * N * D;
  q += b * s.qb + h * s.qh;
  k += b * s.kb + h * s.kh;
  v += b * s.vb + h * s.vh;
  dout += off;
  dq += off;
  dk += off;
  dv += off;
  build_kv(N, D, k, s.kn, v, s.vn, kv, kbar);
  __syncthreads();
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  T* qp = rows + 2 * w * D;
  T* g = qp + D;
  // rows: g_n (into dv's row n), c_n (into dk[n][0]), dq_n
  for (int64_t n = w; n < N; n += kSlabWarps) {
    T part = 0;
    for (int64_t i = lane; i < D; i += 32) {
      qp[i] = relu(q[n * s.qn + i]);
      part += qp[i] * kbar[i];
    }
    const T den = warp_sum(part) + eps;
    __syncwarp();
    T dot = 0;
    for (int64_t j = lane; j < D; j += 32) {
      T acc = 0;
      for (int64_t i = 0; i < D; ++i) acc += qp[i] * kv[i * D + j];
      const T gj = dout[n * D + j] / den;
      g[j] = gj;
      dot += gj * acc;
    }
    const T c = -warp_sum(dot) / den;  // -(dO . num) / z^2 = -(dO . o) / z
    __syncwarp();
    for (int64_t i = lane; i < D; i += 32) {
      T acc = 0;
      for (int64_t j = 0; j < D; ++j) acc += kv[i * D + j] * g[j];
      dq[n * D + i] = q[n * s.qn + i] > T(0) ? acc + c * kbar[i] : T(0);
    }
    for (int64_t j = lane; j < D; j += 32) dv[n * D + j] = g[j];
    if (lane == 0) dk[n * D] = c;
    __syncwarp();
  }
  __syncthreads();
  // dKV[i][j] = sum_n relu(q_n)[i] g_n[j], dkbar[i] = sum_n c_n relu(q_n)[i]
  for (int64_t e = threadIdx.x; e < D * D + D; e += blockDim.x) {
    T acc = 0;
    if (e < D * D) {
      const int64_t i = e / D, j = e % D;
      for (int64_t n = 0; n < N; ++n) acc += relu(q[n * s.qn + i]) * dv[n * D + j];
      dkv[e] = acc;
    } else {
      const int64_t i = e - D * D;
      for (int64_t n = 0; n < N; ++n) acc += dk[n * D] * relu(q[n * s.qn + i]);
      dkbar[i] = acc;
    }
  }
  __syncthreads();
  const T invn = T(1) / T(N);
  T* kp = qp;
  T* vr = g;
  for (int64_t m = w; m < N; m += kSlabWarps) {
    for (int64_t i = lane; i < D; i += 32) {
      kp[i] = relu(k[m * s.kn + i]);
      vr[i] = v[m * s.vn + i];
    }
    __syncwarp();
    for (int64_t i = lane; i < D; i += 32) {
      T acc = 0;
      for (int64_t j = 0; j < D; ++j) acc += dkv[i * D + j] * vr[j];
      dk[m * D + i] = kp[i] > T(0) ? (acc + dkbar[i]) * invn : T(0);
    }
    for (int64_t j = lane; j < D; j += 32) {
      T acc = 0;
      for (int64_t i = 0; i < D; ++i) acc += kp[i] * dkv[i * D + j];
      dv[m * D + j] = acc * invn;
    }
    __syncwarp();
  }
}

int check_call(const char* fn, int dtype, const int64_t* dims, double eps, int64_t* total) {
  if (dtype != CT_F32 && dtype != CT_F64)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64 only)", fn, dtype_name(dtype), dtype);
  if (!dims) return fail(CT_ERR_INVALID_ARG, "%s: dims is NULL", fn);
  const char* names[4] = {"B", "H", "N", "D"};
  *total = 1;
  for (int i = 0; i < 4; ++i) {
    if (dims[i] < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s = %lld is negative", fn, names[i], (long long)dims[i]);
    if (__builtin_mul_overflow(*total, dims[i], total)) return fail(CT_ERR_INVALID_ARG, "%s: B H N D overflows int64", fn);
  }
  if (!(eps > 0) || eps == HUGE_VAL) return fail(CT_ERR_INVALID_ARG, "%s: eps = %g must be > 0 and finite", fn, eps);
  if (*total > 0 && dims[3] > (dtype == CT_F32 ? 128 : 64))
    return fail(CT_ERR_UNSUPPORTED, "%s: D = %lld is past the CUDA kernel's shared-memory limit (%d for %s)", fn,
                (long long)dims[3], dtype == CT_F32 ? 128 : 64, dtype_name(dtype));
  if (*total > 0 && dims[0] * dims[1] > 0x7fffffffLL)
    return fail(CT_ERR_INVALID_ARG, "%s: B H = %lld exceeds the grid", fn, (long long)(dims[0] * dims[1]));
  return CT_OK;
}

template <class K> int launch_config(const char* fn, K kernel, size_t bytes) {
  if (bytes > 48 * 1024) CT_CUDA_TRY(fn, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  return CT_OK;
}

Strides strides_of(const int64_t* qs, const int64_t* ks, const int64_t* vs) {
  return Strides{qs[0], qs[1], qs[2], ks[0], ks[1], ks[2], vs[0], vs[1], vs[2]};
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_slab_attention_forward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                              const void* k, const int64_t* k_strides, const void* v,
                                              const int64_t* v_strides, double eps, void* o, int64_t stream) {
  static const char* fn = "ct_cuda_slab_attention_forward";
  int64_t total;
  CT_TRY_STATUS(check_call(fn, dtype, dims, eps, &total));
  if (total == 0) return CT_OK;
  for (auto p : {std::make_pair("q", q), std::make_pair("k", k), std::make_pair("v", v),
                 std::make_pair("o", (const void*)o), std::make_pair("q_strides", (const void*)q_strides),
                 std::make_pair("k_strides", (const void*)k_strides), std::make_pair("v_strides", (const void*)v_strides)})
    CT_TRY_STATUS(check_ptr(fn, p.first, p.second));
  const int64_t B = dims[0], H = dims[1], N = dims[2], D = dims[3];
  const Strides s = strides_of(q_strides, k_strides, v_strides);
  const cudaStream_t st = as_stream(stream);
  int status = CT_OK;
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      const size_t bytes = (size_t)(D * D + D + kSlabWarps * D) * sizeof(T);
      status = launch_config(fn, forward_kernel<T>, bytes);
      if (status == CT_OK)
        forward_kernel<T><<<(unsigned)(B * H), kSlabThreads, bytes, st>>>(H, N, D, (const T*)q, (const T*)k, (const T*)v, s,
                                                                     (T)eps, (T*)o);
    }
  });
  CT_TRY_STATUS(status);
  return check_launch(fn);
}

extern "C" int ct_cuda_slab_attention_backward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                               const void* k, const int64_t* k_strides, const void* v,
                                               const int64_t* v_strides, const void* d_o, double eps, void* dq, void* dk,
                                               void* dv, int64_t stream) {
  static const char* fn = "ct_cuda_slab_attention_backward";
  int64_t total;
  CT_TRY_STATUS(check_call(fn, dtype, dims, eps, &total));
  if (total == 0) return CT_OK;
  for (auto p : {std::make_pair("q", q), std::make_pair("k", k), std::make_pair("v", v), std::make_pair("d_o", d_o),
                 std::make_pair("dq", (const void*)dq), std::make_pair("dk", (const void*)dk),
                 std::make_pair("dv", (const void*)dv), std::make_pair("q_strides", (const void*)q_strides),
                 std::make_pair("k_strides", (const void*)k_strides), std::make_pair("v_strides", (const void*)v_strides)})
    CT_TRY_STATUS(check_ptr(fn, p.first, p.second));
  const int64_t B = dims[0], H = dims[1], N = dims[2], D = dims[3];
  const Strides s = strides_of(q_strides, k_strides, v_strides);
  const cudaStream_t st = as_stream(stream);
  int status = CT_OK;
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      const size_t bytes = (size_t)(2 * D * D + 2 * D + 2 * kSlabWarps * D) * sizeof(T);
      status = launch_config(fn, backward_kernel<T>, bytes);
      if (status == CT_OK)
        backward_kernel<T><<<(unsigned)(B * H), kSlabThreads, bytes, st>>>(H, N, D, (const T*)q, (const T*)k, (const T*)v, s,
                                                                      (const T*)d_o, (T)eps, (T*)dq, (T*)dk, (T*)dv);
    }
  });
  CT_TRY_STATUS(status);
  return check_launch(fn);
}
