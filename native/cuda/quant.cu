/*
 * Quantization family (quant.h), CUDA twins of native/cpu/quant.cpp: quantize, dequantize,
 * requantize and dynamic (ONNX DynamicQuantizeLinear) quantization.
 *
 * One thread per element in a grid-stride loop: the flat index is decomposed into coordinates
 * (innermost first), which give the data offsets of every operand and the parameter index of each
 * ct_quant_map (the descriptors travel by value as kernel parameters). The scalar math is
 * native/shared/quant_math.h, the code the CPU runs, so results agree bit for bit.
 * Dynamic quantization: one block reduces min/max over x (grid-stride, shared-memory tree),
 * derives scale and zero point on the device, then the quantize kernel reads them from device
 * memory: no host round trip.
 *
 * Cost: as the CPU (memory bound): quantize reads e_x and writes 1 byte per element, dequantize
 * reads 1 and writes e_y bytes; the index decomposition is ~ndim integer div/mod per element.
 */
#include "common.cuh"
#include "cortado/quant.h"
#include "quant_check.h"
#include "quant_math.h"

namespace ct {
namespace {

using qm::Msg;

int report(int status, const Msg& m) { return status == CT_OK ? CT_OK : fail(status, "%s", m.text); }

/* Offsets of element i in up to two data operands and the parameter indices of up to two maps. */
struct Where {
  int64_t a, b, p0, p1;
};

__device__ __forceinline__ Where locate(int64_t i, const ct_tensor& ta, const ct_tensor& tb, const ct_quant_map& m0,
                                        const ct_quant_map& m1) {
  Where w{0, 0, 0, 0};
  for (int d = ta.ndim - 1; d >= 0; --d) {
    const int64_t c = i % ta.shape[d];
    i /= ta.shape[d];
    w.a += c * ta.strides[d];
    w.b += c * tb.strides[d];
    w.p0 += (d == m0.axis ? c / m0.group : c) * m0.strides[d];
    w.p1 += (d == m1.axis ? c / m1.group : c) * m1.strides[d];
  }
  return w;
}

__device__ __forceinline__ float scale_at(const ct_quant_map& q, int64_t i) { return ((const float*)q.scale)[i]; }
__device__ __forceinline__ int32_t zp_at(const ct_quant_map& q, int64_t i) {
  return q.zero_point ? ((const int32_t*)q.zero_point)[i] : 0;
}

template <class TX, class TY>
__global__ void quantize_kernel(ct_tensor y, ct_tensor x, ct_quant_map q, int32_t qmin, int32_t qmax, int64_t n) {
  const bool fp8 = qm::is_fp8(y.dtype);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    Where w = locate(i, y, x, q, q);
    const float v = (float)load(((const TX*)x.data)[w.b]);
    const float s = scale_at(q, w.p0);
    ((TY*)y.data)[w.a] = fp8 ? (TY)qm::quantize_fp8(y.dtype, v / s) : (TY)qm::quantize_int(v, s, zp_at(q, w.p0), qmin, qmax);
  }
}

template <class TQ> __device__ __forceinline__ float dequant_one(int qdt, TQ v, float s, int32_t z) {
  if (qm::is_fp8(qdt)) return qm::dequantize_fp8(qdt, (uint8_t)v) * s;
  return (float)((int64_t)v - z) * s;
}

template <class TQ, class TY> __global__ void dequantize_kernel(ct_tensor y, ct_tensor xq, ct_quant_map q, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    Where w = locate(i, y, xq, q, q);
    const float v = dequant_one(xq.dtype, ((const TQ*)xq.data)[w.b], scale_at(q, w.p0), zp_at(q, w.p0));
    ((TY*)y.data)[w.a] = store<TY>((compute_t<TY>)v);
  }
}

template <class TQ, class TY>
__global__ void requantize_kernel(ct_tensor y, ct_tensor x, ct_quant_map in, ct_quant_map out, int32_t qmin,
                                  int32_t qmax, int64_t n) {
  const bool fp8 = qm::is_fp8(y.dtype);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    Where w = locate(i, y, x, in, out);
    const float v = dequant_one(x.dtype, ((const TQ*)x.data)[w.b], scale_at(in, w.p0), zp_at(in, w.p0));
    const float s = scale_at(out, w.p1);
    ((TY*)y.data)[w.a] = fp8 ? (TY)qm::quantize_fp8(y.dtype, v / s) : (TY)qm::quantize_int(v, s, zp_at(out, w.p1), qmin, qmax);
  }
}

/* One block: lo = min(0, min x), hi = max(0, max x); then scale and zero point as quant.h says. */
__global__ void dynamic_range_kernel(ct_tensor x, int64_t n, float* scale, uint8_t* zero_point, int32_t* zp32) {
  __shared__ float slo[kThreads], shi[kThreads];
  float lo = 0.0f, hi = 0.0f;
  ct_quant_map none{};
  none.axis = -1;
  none.group = 1;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    Where w = locate(i, x, x, none, none);
    const float v = ((const float*)x.data)[w.a];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  slo[threadIdx.x] = lo;
  shi[threadIdx.x] = hi;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if ((int)threadIdx.x < w) {
      slo[threadIdx.x] = fminf(slo[threadIdx.x], slo[threadIdx.x + w]);
      shi[threadIdx.x] = fmaxf(shi[threadIdx.x], shi[threadIdx.x + w]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    lo = slo[0];
    hi = shi[0];
    const float s = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    float zf = qm::rne(0.0f - lo / s);
    zf = zf < 0.0f ? 0.0f : (zf > 255.0f ? 255.0f : zf);
    *scale = s;
    *zero_point = (uint8_t)zf;
    *zp32 = (int32_t)zf;
  }
}

template <class T>
__global__ void fake_quantize_kernel(ct_tensor y, ct_tensor x, ct_quant_map q, int32_t qmin, int32_t qmax, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    Where w = locate(i, y, x, q, q);
    const float v = (float)load(((const T*)x.data)[w.b]);
    const float r = qm::fake_quantize(v, scale_at(q, w.p0), zp_at(q, w.p0), qmin, qmax);
    ((T*)y.data)[w.a] = store<T>((compute_t<T>)r);
  }
}

template <class T>
__global__ void fake_quantize_backward_kernel(ct_tensor dx, ct_tensor ds, ct_tensor g, ct_tensor x, ct_quant_map q,
                                              int32_t qmin, int32_t qmax, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    Where out = locate(i, dx, ds, q, q), in = locate(i, g, x, q, q);
    float d, e;
    qm::fake_quantize_grad((float)load(((const T*)g.data)[in.a]), (float)load(((const T*)x.data)[in.b]),
                           scale_at(q, in.p0), zp_at(q, in.p0), qmin, qmax, &d, &e);
    ((T*)dx.data)[out.a] = store<T>((compute_t<T>)d);
    ((float*)ds.data)[out.b] = e;
  }
}

template <class F> void dispatch_q(int dtype, F&& f) {
  switch (dtype) {
    case CT_I8: f(type_tag<int8_t>{}); break;
    case CT_I32: f(type_tag<int32_t>{}); break;
    default: f(type_tag<uint8_t>{}); break;  // U8 and the fp8 codes
  }
}


}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_quantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map, int32_t qmin,
                                int32_t qmax, int64_t stream) {
  static const char* fn = "ct_cuda_quantize";
  Msg m;
  int64_t n = 0;
  int st = qm::check_quantize(fn, y, x, map, qmin, qmax, &n, &m);
  if (st) return report(st, m);
  if (n == 0) return CT_OK;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const unsigned grid = grid_for(n, sms);
  cudaStream_t s = as_stream(stream);
  dispatch_float(x->dtype, [&](auto tx) {
    using TX = typename decltype(tx)::type;
    dispatch_q(y->dtype, [&](auto ty) {
      using TY = typename decltype(ty)::type;
      quantize_kernel<TX, TY><<<grid, kThreads, 0, s>>>(*y, *x, *map, qmin, qmax, n);
    });
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_dequantize(const ct_tensor* y, const ct_tensor* q, const ct_quant_map* map, int64_t stream) {
  static const char* fn = "ct_cuda_dequantize";
  Msg m;
  int64_t n = 0;
  int st = qm::check_dequantize(fn, y, q, map, &n, &m);
  if (st) return report(st, m);
  if (n == 0) return CT_OK;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const unsigned grid = grid_for(n, sms);
  cudaStream_t s = as_stream(stream);
  dispatch_q(q->dtype, [&](auto tq) {
    using TQ = typename decltype(tq)::type;
    dispatch_float(y->dtype, [&](auto ty) {
      using TY = typename decltype(ty)::type;
      dequantize_kernel<TQ, TY><<<grid, kThreads, 0, s>>>(*y, *q, *map, n);
    });
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_requantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* in_map,
                                  const ct_quant_map* out_map, int32_t qmin, int32_t qmax, int64_t stream) {
  static const char* fn = "ct_cuda_requantize";
  Msg m;
  int64_t n = 0;
  int st = qm::check_requantize(fn, y, x, in_map, out_map, qmin, qmax, &n, &m);
  if (st) return report(st, m);
  if (n == 0) return CT_OK;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const unsigned grid = grid_for(n, sms);
  cudaStream_t s = as_stream(stream);
  dispatch_q(x->dtype, [&](auto tq) {
    using TQ = typename decltype(tq)::type;
    dispatch_q(y->dtype, [&](auto ty) {
      using TY = typename decltype(ty)::type;
      requantize_kernel<TQ, TY><<<grid, kThreads, 0, s>>>(*y, *x, *in_map, *out_map, qmin, qmax, n);
    });
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_dynamic_quantize(const ct_tensor* y, const ct_tensor* x, float* scale, uint8_t* zero_point,
                                        int64_t stream) {
  static const char* fn = "ct_cuda_dynamic_quantize";
  Msg m;
  int64_t n = 0;
  int st = qm::check_dynamic_quantize(fn, y, x, scale, zero_point, &n, &m);
  if (st) return report(st, m);
  cudaStream_t s = as_stream(stream);
  int32_t* zp32 = nullptr;
  CT_CUDA_TRY(fn, cudaMallocAsync((void**)&zp32, sizeof(int32_t), s));
  dynamic_range_kernel<<<1, kThreads, 0, s>>>(*x, n, scale, zero_point, zp32);
  int rc = check_launch(fn);
  if (rc == CT_OK && n > 0) {
    int sms = 0;
    rc = sm_count(fn, &sms);
    if (rc == CT_OK) {
      ct_quant_map map{};
      map.scale = scale;
      map.zero_point = zp32;
      map.group = 1;
      map.axis = -1;
      quantize_kernel<float, uint8_t><<<grid_for(n, sms), kThreads, 0, s>>>(*y, *x, map, 0, 255, n);
      rc = check_launch(fn);
    }
  }
  cudaError_t e = cudaFreeAsync(zp32, s);
  if (rc == CT_OK && e != cudaSuccess) return cuda_fail(fn, e);
  return rc;
}

// ================================================================== int8 GEMM (quant.h)
/* CUDA twin of native/cpu/quant_gemm.cpp: same packed B layout, same compensation and epilogue.
 * One thread per output element: dp4a.u32.s32 over the 4-byte groups (A bytes loaded one by one,
 * so any lda works; the packed B group is one aligned 32-bit load). Tensor-core (mma.sync s8)
 * tiles are the next step; this kernel is the exact reference the GPU check compares against. */
namespace ct {
namespace {

__device__ __forceinline__ int64_t packed_index(int64_t kp, int64_t k, int64_t j) {
  return ((j / 16) * (kp / 4) + k / 4) * 64 + (j % 16) * 4 + k % 4;
}

__global__ void qgemm_pack_kernel(const int8_t* b, int64_t k, int64_t n, int64_t ldb_k, int64_t ldb_n, int8_t* packed,
                                  int32_t* colsum, int64_t kp, int64_t np) {
  for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < np; j += (int64_t)gridDim.x * blockDim.x) {
    int32_t s = 0;
    for (int64_t kk = 0; kk < kp; ++kk) {
      const int8_t v = (j < n && kk < k) ? b[kk * ldb_k + j * ldb_n] : (int8_t)0;
      packed[packed_index(kp, kk, j)] = v;
      s += v;
    }
    if (j < n) colsum[j] = s;
  }
}

__device__ __forceinline__ uint32_t dp4a_us(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

__global__ void qgemm_kernel(ct_qgemm_args g, int64_t kp) {
  const int64_t total = g.m * g.n;
  const uint8_t* a = (const uint8_t*)g.a;
  const int8_t* bp = (const int8_t*)g.b_packed;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = e / g.n, col = e % g.n;
    uint32_t acc = 0, rowsum = 0;
    for (int64_t k0 = 0; k0 < kp; k0 += 4) {
      uint32_t a4 = 0;
      for (int q = 0; q < 4; ++q) {
        const uint32_t v = k0 + q < g.k ? a[row * g.lda + k0 + q] : 0u;
        a4 |= v << (8 * q);
        rowsum += v;
      }
      const uint32_t b4 = *(const uint32_t*)(bp + packed_index(kp, k0, col));
      acc = dp4a_us(a4, b4, acc);
    }
    const uint32_t za = (uint32_t)g.a_zero_point, kk = (uint32_t)g.k;
    const uint32_t zbj = g.b_zero_point ? (uint32_t)((const int32_t*)g.b_zero_point)[col] : 0u;
    const int32_t v = (int32_t)(acc - za * (uint32_t)((const int32_t*)g.b_colsum)[col] - zbj * rowsum + kk * za * zbj);
    if (g.out_dtype == CT_I32) {
      ((int32_t*)g.c)[row * g.ldc + col] = v;
      continue;
    }
    float f = __fmaf_rn((float)v, ((const float*)g.scale)[col], g.bias ? ((const float*)g.bias)[col] : 0.0f);
    if (g.relu) f = f > 0.0f ? f : 0.0f;
    if (g.out_dtype == CT_F32) ((float*)g.c)[row * g.ldc + col] = f;
    else if (g.out_dtype == CT_I8) ((int8_t*)g.c)[row * g.ldc + col] = (int8_t)qm::quantize_int(f, 1.0f, g.out_zero_point, -128, 127);
    else ((uint8_t*)g.c)[row * g.ldc + col] = (uint8_t)qm::quantize_int(f, 1.0f, g.out_zero_point, 0, 255);
  }
}

}  // namespace
}  // namespace ct

extern "C" int ct_cuda_qgemm_pack_b(const int8_t* b, int64_t k, int64_t n, int64_t ldb_k, int64_t ldb_n,
                                    int8_t* packed, int32_t* colsum, int64_t stream) {
  static const char* fn = "ct_cuda_qgemm_pack_b";
  if (k < 0 || n < 0 || k > 32768 || ldb_k < 0 || ldb_n < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: k=%lld (at most 32768), n=%lld, strides %lld/%lld", fn, (long long)k,
                (long long)n, (long long)ldb_k, (long long)ldb_n);
  const int64_t kp = (k + 3) / 4 * 4, np = (n + 31) / 32 * 32;
  if (n == 0) return CT_OK;  // k == 0 still writes the zero column sums
  if (!colsum || (kp > 0 && !packed) || (k * n > 0 && !b)) return fail(CT_ERR_INVALID_ARG, "%s: a pointer is NULL", fn);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  qgemm_pack_kernel<<<grid_for(np, sms), kThreads, 0, as_stream(stream)>>>(b, k, n, ldb_k, ldb_n, packed, colsum, kp, np);
  return check_launch(fn);
}

extern "C" int ct_cuda_qgemm(const ct_qgemm_args* args, int64_t stream) {
  static const char* fn = "ct_cuda_qgemm";
  qm::Msg m;
  if (int st = qm::check_qgemm(fn, args, &m)) return fail(st, "%s", m.text);
  const ct_qgemm_args& g = *args;
  if (g.m == 0 || g.n == 0) return CT_OK;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  qgemm_kernel<<<grid_for(g.m * g.n, sms), kThreads, 0, as_stream(stream)>>>(g, (g.k + 3) / 4 * 4);
  return check_launch(fn);
}

extern "C" int ct_cuda_fake_quantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map, int32_t qmin,
                                     int32_t qmax, int64_t stream) {
  static const char* fn = "ct_cuda_fake_quantize";
  Msg m;
  int64_t n = 0;
  int st = qm::check_fake_quantize(fn, y, x, map, qmin, qmax, &n, &m);
  if (st) return report(st, m);
  if (n == 0) return CT_OK;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const unsigned grid = grid_for(n, sms);
  cudaStream_t s = as_stream(stream);
  dispatch_float(x->dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    fake_quantize_kernel<T><<<grid, kThreads, 0, s>>>(*y, *x, *map, qmin, qmax, n);
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_fake_quantize_backward(const ct_tensor* dx, const ct_tensor* ds, const ct_tensor* g,
                                              const ct_tensor* x, const ct_quant_map* map, int32_t qmin, int32_t qmax,
                                              int64_t stream) {
  static const char* fn = "ct_cuda_fake_quantize_backward";
  Msg m;
  int64_t n = 0;
  int st = qm::check_fake_quantize_backward(fn, dx, ds, g, x, map, qmin, qmax, &n, &m);
  if (st) return report(st, m);
  if (n == 0) return CT_OK;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const unsigned grid = grid_for(n, sms);
  cudaStream_t s = as_stream(stream);
  dispatch_float(x->dtype, [&](auto t) {
    using T = typename decltype(t)::type;
    fake_quantize_backward_kernel<T><<<grid, kThreads, 0, s>>>(*dx, *ds, *g, *x, *map, qmin, qmax, n);
  });
  return check_launch(fn);
}
