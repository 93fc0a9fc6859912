/*
 * Weight-only int4 / fp8 GEMM and GEMV on CUDA (quant_weight.h), the twins of
 * native/cpu/quant_weight.cpp: y = x W^T + bias, W [n, k] packed in 4 or 8 bits with group-wise
 * float32 scales (and int4 zero points) along k, x float32 or bfloat16. Same packed layout as the
 * CPU (one 32-k block per 16 bytes of int4 or 32 bytes of fp8), never dequantized to memory.
 *
 * Checks first (as the CPU, with its messages): the codes of ct_cuda_wq_pack and the scales and
 * zero points of ct_cuda_wq_gemm are checked on the device by one small kernel that reports the
 * first bad position (device_check.cuh: one stream synchronization per call); n k / group
 * parameters, a fraction 4 / group of W's bytes.
 *
 * GEMV (m <= 4, the decode path; bound by W's bytes). One warp per output channel j, 4 warps a
 * block; lane l reads the 32-bit word l % 4 of block l / 4 (fp8: and the word 16 bytes on), so
 * each load instruction of a warp covers 128 contiguous bytes of the row, and 4 such blocks per
 * lane are in flight before any is used. The 8 codes of a word are decoded in registers to
 * w = fma(u, s, -z' s) (int4, z' = z + 8 when signed) or fp8(q) s, multiplied with the x rows
 * (float32, or bfloat16 widened; x is L1/L2 resident), and the lane sums are reduced by shuffles.
 * Cost: 2 m n k FLOPs, n k / 2 (int4) or n k bytes of W read once, n k / group * 8 bytes of
 * parameters, m k x elements per warp from cache.
 *
 * GEMM (m > 4) on the tensor cores, Marlin's idea without its shared-memory pipeline: the
 * weights are the A operand of mma.sync.m16n8k16 (bf16 in, float32 accumulators) and x^T the B
 * operand, so y^T = W x^T and a tile of 16 channels by 8 NM rows of x needs no padding of m
 * beyond 8. Per 32-k block a lane loads ONE 32-bit word per channel row (bytes 4t..4t+3 of the
 * 16-byte int4 block; for fp8 bytes 4t.. and 16 + 4t..) and turns it in registers into the A
 * fragments of both k16 steps: int4 nibble pairs are OR-ed into the bfloat16 pattern 0x4300 | u
 * (= 128 + u exactly) and 128 + z' is subtracted (exact integers in [-15, 15]); fp8 codes convert
 * exactly to bfloat16 (E4M3 and E5M2 are subsets). The mma's k order is a permutation of the
 * block's (logical k 2t, 2t+1, 2t+8, 2t+9 of lane t of step s are physical 16 s + 4t + 0..3),
 * matched by the B fragment, which is then x[i, k0 + 16 s + 4t .. + 3] of row i = lane / 4: four
 * consecutive elements. The weights in the mma are exact integers or fp8 values; the group scale
 * is applied per block to the block's float32 partial sums (acc += part * s[j, group]). float32 x
 * is split into hi = bf16(x) and lo = bf16(x - hi), two mma per step, so the product carries
 * ~16 bits of x (relative error ~2^-17, like float32 accumulation over k); bfloat16 x is exact.
 * The 4 (int4) or 8 warps of a block split the k blocks and add their fragments through shared
 * memory at the end. Cost: 2 m n k FLOPs on tensor cores (x2 for float32 x), W read
 * ceil(m / 8 NM) times (from L2 after the first), x read ceil(n / 16) times from L2.
 */
#include "common.cuh"
#include "cortado/quant_weight.h"
#include "device_check.cuh"
#include "ptx.cuh"
#include "quant_math.h"
#include "quant_weight_check.h"

namespace ct {
namespace {

constexpr int kBlockK = 32;   // k per packed block
constexpr int kGemvWarps = 4; // output channels per GEMV block
constexpr int kMmaWarps = 8;  // k splits per GEMM block
constexpr int kGemvMaxM = 4;  // the GEMV serves m <= 4

__host__ __device__ inline bool is_int4(int format) { return format == CT_WQ_S4 || format == CT_WQ_U4; }
__host__ __device__ inline int64_t row_bytes(int format, int64_t k) { return is_int4(format) ? k / 2 : k; }

// ------------------------------------------------------------------ parameter checks
/* First (channel * groups + group) whose scale is not finite and > 0 or whose zero point is
 * outside the format's range. */
__global__ void wq_param_check(int64_t count, int format, const float* __restrict__ scale,
                               const int32_t* __restrict__ zp, unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < count; p += step) {
    const float s = scale[p];
    bool ok = s > 0.0f && s <= 3.4028235e38f;
    if (zp) {
      const int32_t z = zp[p];
      ok = ok && (format == CT_WQ_S4 ? (z >= -8 && z <= 7) : (z >= 0 && z <= 15));
    }
    if (!ok) atomicMin(bad, (unsigned long long)p);
  }
}

/* x[i, kk] as float32. */
template <class TX> __device__ __forceinline__ float xat(const TX* x, int64_t ldx, int64_t i, int64_t kk) {
  return load(x[i * ldx + kk]);
}

/* y[i, j] = v in y's dtype (float32, or bfloat16 rounded to nearest even); a uniform branch. */
__device__ __forceinline__ void store_y(const ct_wq_args& a, int64_t i, int64_t j, float v) {
  if (a.y_dtype == CT_F32) ((float*)a.y)[i * a.ldy + j] = v;
  else ((__nv_bfloat16*)a.y)[i * a.ldy + j] = __float2bfloat16_rn(v);
}

// ------------------------------------------------------------------ GEMV (m <= 4)
/* The 8 codes a lane holds of one block (lane quarter t = lane % 4): c[q] at k0 + 4t + q and
 * c[4 + q] at k0 + 16 + 4t + q, q = 0..3, decoded to w = fma(code, s, b) (int4) or fp8(code) s. */
template <int FORMAT>
__device__ __forceinline__ void decode8(uint32_t lo, uint32_t hi, float s, float b, float (&w)[8]) {
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    if constexpr (FORMAT == CT_WQ_S4 || FORMAT == CT_WQ_U4) {
      const uint32_t byte = (lo >> (8 * q)) & 0xffu;  // int4: both nibbles of one byte
      w[q] = __fmaf_rn((float)(byte & 15u), s, b);
      w[4 + q] = __fmaf_rn((float)(byte >> 4), s, b);
    } else {
      const uint8_t c0 = (uint8_t)(lo >> (8 * q)), c1 = (uint8_t)(hi >> (8 * q));
      if constexpr (FORMAT == CT_WQ_E4M3) {
        w[q] = qm::fp8_to_f32<qm::e4m3>(c0) * s;
        w[4 + q] = qm::fp8_to_f32<qm::e4m3>(c1) * s;
      } else {
        w[q] = qm::fp8_to_f32<qm::e5m2>(c0) * s;
        w[4 + q] = qm::fp8_to_f32<qm::e5m2>(c1) * s;
      }
    }
  }
}

/* One warp per channel j: lane l reads the 4-byte word t = l % 4 of block l / 4 + 8 u (fp8: and
 * the word 16 bytes further), so each load instruction of the warp covers 128 contiguous bytes of
 * the row; kUnroll blocks per lane are loaded before any is used (bytes in flight). */
constexpr int kUnroll = 4;
template <int FORMAT, int MR, class TX>
__global__ void __launch_bounds__(kGemvWarps * 32) wq_gemv_kernel(ct_wq_args a) {
  const int lane = threadIdx.x & 31, t = lane & 3;
  const int64_t j = (int64_t)blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
  if (j >= a.n) return;
  const int64_t blocks = a.k / kBlockK, groups = a.k / a.group;
  const int64_t bb = is_int4(FORMAT) ? 16 : 32;
  const uint8_t* wrow = (const uint8_t*)a.w_packed + j * row_bytes(FORMAT, a.k);
  const TX* x = (const TX*)a.x;
  float acc[MR];
#pragma unroll
  for (int r = 0; r < MR; ++r) acc[r] = 0.0f;
  for (int64_t blk0 = lane >> 2; blk0 < blocks; blk0 += 8 * kUnroll) {
    uint32_t lo[kUnroll], hi[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t blk = blk0 + 8 * u;
      const bool in = blk < blocks;
      lo[u] = in ? *(const uint32_t*)(wrow + blk * bb + 4 * t) : 0u;
      hi[u] = (in && !is_int4(FORMAT)) ? *(const uint32_t*)(wrow + blk * bb + 16 + 4 * t) : 0u;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t blk = blk0 + 8 * u;
      if (blk >= blocks) break;
      const int64_t g = blk * kBlockK / a.group;
      const float s = ((const float*)a.scale)[j * groups + g];
      float b = 0.0f;
      if constexpr (FORMAT == CT_WQ_S4 || FORMAT == CT_WQ_U4) {
        const int32_t z = a.zero_point ? ((const int32_t*)a.zero_point)[j * groups + g] : 0;
        b = -(float)(z + (a.format == CT_WQ_S4 ? 8 : 0)) * s;
      }
      float w[8];
      decode8<FORMAT>(lo[u], hi[u], s, b, w);
      const int64_t k = blk * kBlockK + 4 * t;
#pragma unroll
      for (int r = 0; r < MR; ++r)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          acc[r] = __fmaf_rn(xat(x, a.ldx, r, k + q), w[q], acc[r]);
          acc[r] = __fmaf_rn(xat(x, a.ldx, r, k + 16 + q), w[4 + q], acc[r]);
        }
    }
  }
#pragma unroll
  for (int r = 0; r < MR; ++r) {
    const float v = warp_allreduce(acc[r], [](float p, float q) { return p + q; });
    if (lane == 0) store_y(a, r, j, v + (a.bias ? ((const float*)a.bias)[j] : 0.0f));
  }
}

// ------------------------------------------------------------------ GEMM on mma.sync (m > 4)
/* bfloat16 pairs (low half first) of 128 + u for two int4 codes; or-ed into 0x4300. */
__device__ __forceinline__ uint32_t nibble_pair(uint32_t w, int which) {
  uint32_t p;
  switch (which) {
    case 0: p = (w & 0xfu) | ((w << 8) & 0xf0000u); break;          // low nibbles of bytes 0, 1
    case 1: p = ((w >> 16) & 0xfu) | ((w >> 8) & 0xf0000u); break;  // low nibbles of bytes 2, 3
    case 2: p = ((w >> 4) & 0xfu) | ((w << 4) & 0xf0000u); break;   // high nibbles of bytes 0, 1
    default: p = ((w >> 20) & 0xfu) | ((w >> 12) & 0xf0000u); break;  // high nibbles of bytes 2, 3
  }
  return p | 0x43004300u;
}

__device__ __forceinline__ uint32_t bf2_bits(__nv_bfloat162 v) { return *reinterpret_cast<uint32_t*>(&v); }

/* Two fp8 codes (bytes 2h, 2h + 1 of w) as an exact bfloat16 pair. */
template <int FORMAT> __device__ __forceinline__ uint32_t fp8_pair(uint32_t w, int h) {
  const uint8_t c0 = (uint8_t)(w >> (16 * h)), c1 = (uint8_t)(w >> (16 * h + 8));
  float f0, f1;
  if constexpr (FORMAT == CT_WQ_E4M3) {
    f0 = qm::fp8_to_f32<qm::e4m3>(c0);
    f1 = qm::fp8_to_f32<qm::e4m3>(c1);
  } else {
    f0 = qm::fp8_to_f32<qm::e5m2>(c0);
    f1 = qm::fp8_to_f32<qm::e5m2>(c1);
  }
  return bf2_bits(__floats2bfloat162_rn(f0, f1));
}

/* The A fragments (a[step][0..3]) of one 32-k block for the lane's channel rows j0 + g (r = 0)
 * and j0 + g + 8 (r = 1); see the file comment for the k permutation. */
template <int FORMAT>
__device__ __forceinline__ void load_a(const ct_wq_args& a, int64_t j0, int64_t blk, int g, int t, int64_t groups,
                                       uint32_t (&frag)[2][4]) {
  const int64_t rb = row_bytes(FORMAT, a.k);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t j = j0 + g + 8 * r;
    const bool in = j < a.n;
    const uint8_t* p = (const uint8_t*)a.w_packed + (in ? j : 0) * rb;
    if constexpr (FORMAT == CT_WQ_S4 || FORMAT == CT_WQ_U4) {
      const uint32_t w = in ? *(const uint32_t*)(p + blk * 16 + 4 * t) : 0u;
      int32_t z = 0;
      if (in && a.zero_point) z = ((const int32_t*)a.zero_point)[j * groups + blk * kBlockK / a.group];
      const float off = 128.0f + (float)(z + (a.format == CT_WQ_S4 ? 8 : 0));
      const __nv_bfloat162 zz = __floats2bfloat162_rn(off, off);
#pragma unroll
      for (int s = 0; s < 2; ++s)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint32_t raw = nibble_pair(w, 2 * s + h);
          const __nv_bfloat162 v = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&raw), zz);
          frag[s][r + 2 * h] = in ? bf2_bits(v) : 0u;
        }
    } else {
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        const uint32_t w = in ? *(const uint32_t*)(p + blk * 32 + 16 * s + 4 * t) : 0u;
#pragma unroll
        for (int h = 0; h < 2; ++h) frag[s][r + 2 * h] = fp8_pair<FORMAT>(w, h);
      }
    }
  }
}

/* B fragments of step s for x row i: {x[k], x[k+1]}, {x[k+2], x[k+3]} at k = k0 + 16 s + 4t, as
 * bfloat16 hi parts and (SPLIT) lo parts. */
template <bool SPLIT, class TX>
__device__ __forceinline__ void load_b(const TX* x, int64_t ldx, int64_t i, bool in, int64_t k, uint32_t (&hi)[2],
                                       uint32_t (&lo)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float v0 = in ? xat(x, ldx, i, k + 2 * h) : 0.0f, v1 = in ? xat(x, ldx, i, k + 2 * h + 1) : 0.0f;
    const __nv_bfloat162 b = __floats2bfloat162_rn(v0, v1);
    hi[h] = bf2_bits(b);
    if constexpr (SPLIT) {
      lo[h] = bf2_bits(__floats2bfloat162_rn(v0 - __low2float(b), v1 - __high2float(b)));
    }
  }
}

template <int FORMAT, int NM, class TX>
__global__ void __launch_bounds__(kMmaWarps * 32) wq_mma_kernel(ct_wq_args a) {
  constexpr bool SPLIT = std::is_same_v<TX, float>;
  __shared__ float red[kMmaWarps - 1][NM * 4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t j0 = (int64_t)blockIdx.x * 16, i0 = (int64_t)blockIdx.y * 8 * NM;
  const int64_t blocks = a.k / kBlockK, groups = a.k / a.group;
  const TX* x = (const TX*)a.x;
  float acc[NM][4];
#pragma unroll
  for (int f = 0; f < NM; ++f)
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[f][c] = 0.0f;
  const int64_t jr0 = j0 + g, jr1 = j0 + g + 8;
  for (int64_t blk = warp; blk < blocks; blk += kMmaWarps) {
    uint32_t frag[2][4];
    load_a<FORMAT>(a, j0, blk, g, t, groups, frag);
    const int64_t grp = blk * kBlockK / a.group;
    const float s0 = jr0 < a.n ? ((const float*)a.scale)[jr0 * groups + grp] : 0.0f;
    const float s1 = jr1 < a.n ? ((const float*)a.scale)[jr1 * groups + grp] : 0.0f;
#pragma unroll
    for (int f = 0; f < NM; ++f) {
      const int64_t i = i0 + 8 * f + g;
      const bool in = i < a.m;
      float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        uint32_t hi[2], lo[2];
        load_b<SPLIT>(x, a.ldx, i, in, blk * kBlockK + 16 * s + 4 * t, hi, lo);
        ptx::mma16816<__nv_bfloat16>(part, frag[s], hi[0], hi[1]);
        if constexpr (SPLIT) ptx::mma16816<__nv_bfloat16>(part, frag[s], lo[0], lo[1]);
      }
      acc[f][0] = __fmaf_rn(part[0], s0, acc[f][0]);
      acc[f][1] = __fmaf_rn(part[1], s0, acc[f][1]);
      acc[f][2] = __fmaf_rn(part[2], s1, acc[f][2]);
      acc[f][3] = __fmaf_rn(part[3], s1, acc[f][3]);
    }
  }
  // the k splits of the block's warps add up in warp 0
  if (warp > 0)
#pragma unroll
    for (int f = 0; f < NM; ++f)
#pragma unroll
      for (int c = 0; c < 4; ++c) red[warp - 1][f * 4 + c][lane] = acc[f][c];
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int f = 0; f < NM; ++f)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      float v = acc[f][c];
      for (int w = 0; w < kMmaWarps - 1; ++w) v += red[w][f * 4 + c][lane];
      // D fragment: c0, c1 at (channel g, rows 2t, 2t + 1), c2, c3 at (channel g + 8, ...)
      const int64_t j = c < 2 ? jr0 : jr1, i = i0 + 8 * f + 2 * t + (c & 1);
      if (j < a.n && i < a.m) store_y(a, i, j, v + (a.bias ? ((const float*)a.bias)[j] : 0.0f));
    }
}

// ------------------------------------------------------------------ dispatch
template <int FORMAT, class TX> void launch_format(const ct_wq_args& a, cudaStream_t st) {
  if (a.m <= kGemvMaxM) {
    const dim3 grid((unsigned)((a.n + kGemvWarps - 1) / kGemvWarps));
    switch (a.m) {
      case 1: wq_gemv_kernel<FORMAT, 1, TX><<<grid, kGemvWarps * 32, 0, st>>>(a); break;
      case 2: wq_gemv_kernel<FORMAT, 2, TX><<<grid, kGemvWarps * 32, 0, st>>>(a); break;
      case 3: wq_gemv_kernel<FORMAT, 3, TX><<<grid, kGemvWarps * 32, 0, st>>>(a); break;
      default: wq_gemv_kernel<FORMAT, 4, TX><<<grid, kGemvWarps * 32, 0, st>>>(a); break;
    }
    return;
  }
  // 8 NM rows of x per block: NM = 4 (32 rows) for larger m, 2 for m <= 16
  const unsigned gx = (unsigned)((a.n + 15) / 16);
  if (a.m <= 16) {
    wq_mma_kernel<FORMAT, 2, TX><<<dim3(gx, (unsigned)((a.m + 15) / 16)), kMmaWarps * 32, 0, st>>>(a);
  } else {
    wq_mma_kernel<FORMAT, 4, TX><<<dim3(gx, (unsigned)((a.m + 31) / 32)), kMmaWarps * 32, 0, st>>>(a);
  }
}

template <class TX> void launch_types(const ct_wq_args& a, cudaStream_t st) {
  switch (a.format) {
    case CT_WQ_S4:
    case CT_WQ_U4: launch_format<CT_WQ_S4, TX>(a, st); break;  // the format only changes the offset
    case CT_WQ_E4M3: launch_format<CT_WQ_E4M3, TX>(a, st); break;
    default: launch_format<CT_WQ_E5M2, TX>(a, st); break;
  }
}

// ------------------------------------------------------------------ packing
/* One thread per packed byte: int4 byte (j, blk, i) from q[j, 32 blk + i] (low nibble) and
 * q[j, 32 blk + 16 + i] (high), fp8 a strided copy; the first row holding an out-of-range code
 * goes to *bad. */
__global__ void wq_pack_kernel(const void* q, int format, int64_t n, int64_t k, int64_t ld_n, int64_t ld_k,
                               uint8_t* packed, unsigned long long* bad) {
  const int64_t rb = row_bytes(format, k), total = n * rb, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t j = e / rb, b = e % rb;
    if (!is_int4(format)) {
      packed[e] = ((const uint8_t*)q)[j * ld_n + b * ld_k];
      continue;
    }
    const int64_t kk = (b / 16) * kBlockK + b % 16;
    int u[2];
    bool ok = true;
    for (int h = 0; h < 2; ++h) {
      const int64_t off = j * ld_n + (kk + 16 * h) * ld_k;
      const int v = format == CT_WQ_S4 ? (int)((const int8_t*)q)[off] : (int)((const uint8_t*)q)[off];
      ok = ok && (format == CT_WQ_S4 ? (v >= -8 && v <= 7) : v <= 15);
      u[h] = (format == CT_WQ_S4 ? v + 8 : v) & 15;
    }
    if (!ok) atomicMin(bad, (unsigned long long)j);
    packed[e] = (uint8_t)(u[0] | (u[1] << 4));
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_wq_pack(const void* q, int32_t q_dtype, int64_t n, int64_t k, int64_t ld_n, int64_t ld_k,
                               int32_t format, uint8_t* packed, int64_t stream) {
  static const char* fn = "ct_cuda_wq_pack";
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_wq_pack(fn, q, q_dtype, n, k, ld_n, ld_k, format, packed, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const cudaStream_t st = as_stream(stream);
  const int64_t total = n * row_bytes(format, k);
  unsigned long long bad;
  CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* b) {
    wq_pack_kernel<<<grid_for(total, sms), kThreads, 0, st>>>(q, format, n, k, ld_n, ld_k, packed, b);
  }, &bad));
  if (bad != ~0ull)
    return fail(CT_ERR_INVALID_ARG, "%s: row %lld holds a code outside %s", fn, (long long)bad,
                format == CT_WQ_S4 ? "[-8, 7]" : "[0, 15]");
  return CT_OK;
}

extern "C" int ct_cuda_wq_gemm(const ct_wq_args* args, int64_t stream) {
  static const char* fn = "ct_cuda_wq_gemm";
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_wq_gemm(fn, args, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  const ct_wq_args& a = *args;
  // the kernels read W in aligned 32-bit words (rows are multiples of 16 bytes)
  if (!aligned_to(a.w_packed, 4))
    return fail(CT_ERR_INVALID_ARG, "%s: w_packed %p is not 4-byte aligned (the packed rows are read as 32-bit words)",
                fn, a.w_packed);
  // grid: n / 16 (GEMM) or n / 4 (GEMV) blocks along x, m / 32 along y (at most 65535)
  if ((a.m + 31) / 32 > 65535 || a.n > 2147483647LL * 4)
    return fail(CT_ERR_INVALID_ARG, "%s: m=%lld (at most %d), n=%lld exceed the grid", fn, (long long)a.m, 65535 * 32,
                (long long)a.n);
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const int64_t params = a.k / a.group * a.n;
  if (params > 0) {
    unsigned long long bad;
    CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* b) {
      wq_param_check<<<grid_for(params, sms), kThreads, 0, st>>>(params, a.format, (const float*)a.scale,
                                                                  (const int32_t*)a.zero_point, b);
    }, &bad));
    if (bad != ~0ull) {
      float s = 0.0f;
      int32_t z = 0;
      CT_TRY_STATUS(read_one(fn, (const float*)a.scale + bad, &s));
      if (a.zero_point) CT_TRY_STATUS(read_one(fn, (const int32_t*)a.zero_point + bad, &z));
      return fail(qm::wq_param_error(fn, a.format, (int64_t)bad, s, z, &msg), "%s", msg.text);
    }
  }
  if (a.x_dtype == CT_F32) launch_types<float>(a, st);
  else launch_types<__nv_bfloat16>(a, st);
  return check_launch(fn);
}
