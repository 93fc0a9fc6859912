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
#include "ptx.cuh"
#include "quant_math.h"
#include "scalar_ops.h"

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
/* CUDA twin of native/cpu/quant_gemm.cpp: same packed B layout, same compensation and epilogue,
 * on the integer tensor cores: mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 (A uint8 row-major
 * 16 x 32, B int8 column-major 32 x 8, exact int32 accumulators).
 *
 * The packed B layout already is the mma's B fragment: lane (g = lane / 4, t = lane % 4) needs
 * B[k0 + 4t .. + 3, j] and B[k0 + 16 + 4t .. + 3, j] of column j = tile + g, and the packing
 * stores the 4 k of a column as one aligned 32-bit word (byte ((j / 16) Kp / 4 + k / 4) 64 +
 * (j % 16) 4). A fragments are A[r, k0 + 4t .. + 3] and A[r, k0 + 16 + 4t .. + 3] of rows r = g and
 * g + 8: one 32-bit load each when a and lda are 4-byte aligned (else 4 byte loads), zero past k
 * (and past Kp for B, never read). Each lane also sums the A bytes it loads (dp4a with 0x01010101),
 * and the 4 lanes of a row add theirs by shuffles: the row sums of the compensation
 *     sum_k (a - za)(b - zb) = sum_k a b - za colsum[j] - zb[j] rowsum[i] + k za zb[j]
 * in wrapping uint32 arithmetic, exact in int32 for k <= 32768 as on the CPU; then the epilogue
 * (rescale, bias, ReLU, int8 / uint8 requantization) per element, shared with the CPU's math.
 * Tiles: 64 x 64 outputs per block of 4 warps, each warp 32 x 32 (2 A x 4 B fragments, 8 mma per
 * 32 k). Cost: 2 m n Kp integer ops on the tensor cores; A read n / 64 times and B m / 64 times
 * (L2), C written once. */
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

__device__ __forceinline__ uint32_t dp4a_uu(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("dp4a.u32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

/* A[row, kk .. kk + 3] as a little-endian word, zero past k (and for rows past m). */
template <bool A4> __device__ __forceinline__ uint32_t load_a4(const ct_qgemm_args& g, int64_t row, int64_t kk) {
  if (row >= g.m) return 0u;
  const uint8_t* p = (const uint8_t*)g.a + row * g.lda + kk;
  if (A4 && kk + 4 <= g.k) return *(const uint32_t*)p;
  uint32_t v = 0;
#pragma unroll
  for (int q = 0; q < 4; ++q)
    if (kk + q < g.k) v |= (uint32_t)p[q] << (8 * q);
  return v;
}

/* The compensated sum and the epilogue of output (row, col), as on the CPU. */
__device__ __forceinline__ void qgemm_store(const ct_qgemm_args& g, int64_t row, int64_t col, uint32_t acc,
                                            uint32_t rowsum) {
  const uint32_t za = (uint32_t)g.a_zero_point, kk = (uint32_t)g.k;
  const uint32_t zbj = g.b_zero_point ? (uint32_t)((const int32_t*)g.b_zero_point)[col] : 0u;
  const int32_t v = (int32_t)(acc - za * (uint32_t)((const int32_t*)g.b_colsum)[col] - zbj * rowsum + kk * za * zbj);
  if (g.out_dtype == CT_I32) {
    ((int32_t*)g.c)[row * g.ldc + col] = v;
    return;
  }
  const float f = sop::activation(
      g.activation, __fmaf_rn((float)v, ((const float*)g.scale)[col], g.bias ? ((const float*)g.bias)[col] : 0.0f));
  if (g.out_dtype == CT_F32) ((float*)g.c)[row * g.ldc + col] = f;
  else if (g.out_dtype == CT_BF16) ((uint16_t*)g.c)[row * g.ldc + col] = qm::bf16_rne(f);
  else if (g.out_dtype == CT_I8) ((int8_t*)g.c)[row * g.ldc + col] = (int8_t)qm::quantize_int(f, 1.0f, g.out_zero_point, -128, 127);
  else ((uint8_t*)g.c)[row * g.ldc + col] = (uint8_t)qm::quantize_int(f, 1.0f, g.out_zero_point, 0, 255);
}

constexpr int kQTile = 64;

template <bool A4> __global__ void __launch_bounds__(128) qgemm_mma_kernel(ct_qgemm_args g, int64_t kp, int64_t np) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gr = lane >> 2, t = lane & 3;
  const int64_t i0 = (int64_t)blockIdx.x * kQTile + (warp >> 1) * 32, j0 = (int64_t)blockIdx.y * kQTile + (warp & 1) * 32;
  const int8_t* bp = (const int8_t*)g.b_packed;
  int32_t acc[2][4][4] = {};
  uint32_t rs[2][2] = {};
  for (int64_t k0 = 0; k0 < kp; k0 += 32) {
    uint32_t a[2][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      const int64_t r0 = i0 + mt * 16 + gr;
      a[mt][0] = load_a4<A4>(g, r0, k0 + 4 * t);
      a[mt][1] = load_a4<A4>(g, r0 + 8, k0 + 4 * t);
      a[mt][2] = load_a4<A4>(g, r0, k0 + 16 + 4 * t);
      a[mt][3] = load_a4<A4>(g, r0 + 8, k0 + 16 + 4 * t);
      rs[mt][0] = dp4a_uu(a[mt][2], 0x01010101u, dp4a_uu(a[mt][0], 0x01010101u, rs[mt][0]));
      rs[mt][1] = dp4a_uu(a[mt][3], 0x01010101u, dp4a_uu(a[mt][1], 0x01010101u, rs[mt][1]));
    }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int64_t j = j0 + nt * 8 + gr;
      const int64_t ka = k0 + 4 * t, kb = ka + 16;
      const uint32_t b0 = (j < np && ka < kp) ? *(const uint32_t*)(bp + packed_index(kp, ka, j)) : 0u;
      const uint32_t b1 = (j < np && kb < kp) ? *(const uint32_t*)(bp + packed_index(kp, kb, j)) : 0u;
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) ptx::mma16832_u8s8(acc[mt][nt], a[mt], b0, b1);
    }
  }
  // the row sums: the 4 lanes of a row (t = 0..3) hold disjoint k
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      rs[mt][h] += __shfl_xor_sync(0xffffffffu, rs[mt][h], 1);
      rs[mt][h] += __shfl_xor_sync(0xffffffffu, rs[mt][h], 2);
    }
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        // D fragment: c0, c1 at (row g, columns 2t, 2t + 1), c2, c3 at row g + 8
        const int64_t row = i0 + mt * 16 + gr + (c >= 2 ? 8 : 0), col = j0 + nt * 8 + 2 * t + (c & 1);
        if (row < g.m && col < g.n) qgemm_store(g, row, col, (uint32_t)acc[mt][nt][c], rs[mt][c >= 2 ? 1 : 0]);
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
  if ((g.n + kQTile - 1) / kQTile > 65535)
    return fail(CT_ERR_INVALID_ARG, "%s: n=%lld exceeds the grid (at most %d)", fn, (long long)g.n, 65535 * kQTile);
  // the packed B is read as aligned 32-bit words (the packing's layout); A too when it allows
  if (!aligned_to(g.b_packed, 4))
    return fail(CT_ERR_INVALID_ARG, "%s: b_packed %p is not 4-byte aligned", fn, g.b_packed);
  const int64_t kp = (g.k + 3) / 4 * 4, np = (g.n + 31) / 32 * 32;
  const dim3 grid((unsigned)((g.m + kQTile - 1) / kQTile), (unsigned)((g.n + kQTile - 1) / kQTile));
  if (aligned_to(g.a, 4) && g.lda % 4 == 0) qgemm_mma_kernel<true><<<grid, 128, 0, as_stream(stream)>>>(g, kp, np);
  else qgemm_mma_kernel<false><<<grid, 128, 0, as_stream(stream)>>>(g, kp, np);
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
