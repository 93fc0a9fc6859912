/*
 * Weight-only quantized GEMM and GEMV (the quantization family's decode path): y = x W^T + bias
 * with float32 or bfloat16 activations x [m, k] and a weight matrix W [n, k] (a Linear's
 * [out, in]) stored in 4 or 8 bits with group-wise scales along k. The weights are dequantized
 * in registers right before their multiply-adds; no float copy of W is ever made.
 *
 * Formats (ct_wq_args.format):
 *   CT_WQ_S4     signed int4 q in [-8, 7], w = (q - z) s
 *   CT_WQ_U4     unsigned int4 q in [0, 15], w = (q - z) s
 *   CT_WQ_E4M3   fp8 E4M3 (OCP), w = fp8(q) s      (no zero point)
 *   CT_WQ_E5M2   fp8 E5M2 (OCP), w = fp8(q) s      (no zero point)
 * s = scale[j, kk / group] (float32, finite, > 0), z = zero_point[j, kk / group] (int32 in the
 * format's range; NULL for all zeros). group is a multiple of 32 that divides k (k % 32 == 0;
 * per channel is group == k).
 *
 * Packed layout (ct_*_wq_pack, made once): row j of W is k / 32 blocks of 32 consecutive k.
 *   int4: 16 bytes per block; byte i holds k0 + i in its low nibble and k0 + 16 + i in its high
 *         nibble, both as the unsigned code u = q + 8 (signed) or u = q (unsigned). One 16-byte
 *         load then widens (vpmovzxbd) into the 16 low and, shifted by 4, the 16 high lanes.
 *   fp8:  32 bytes per block, k in order (the fp8 codes unchanged).
 * Row j starts at byte j * k / 2 (int4) or j * k (fp8).
 *
 * Math: y[i, j] = bias[j] + sum_g sum_{kk in g} x[i, kk] * w[j, kk], w computed in float32 as
 * fma(u, s, -(z + 8 or 0) s) for int4 and fp8_to_f32(q) * s for fp8, float32 accumulation in
 * lanes of 16 (AVX-512) or 8 (AVX2), summed at the end of the row. bfloat16 x is widened to
 * float32 once (m * k elements, a workspace); a bfloat16 y is rounded to nearest even at the end.
 *
 * Cost: 2 m n k FLOPs (+ 2 n k per row block for the dequantization); bytes: W once per block of
 * up to 4 rows of x (n k / 2 or n k), the scales n k / group * 4 (+ zero points), x once per
 * block of 4 columns (L1/L2 resident for the GEMV), y once. The GEMV (m = 1) streams W once and
 * is bound by memory bandwidth. Threads split n.
 */
#ifndef CORTADO_QUANT_WEIGHT_H
#define CORTADO_QUANT_WEIGHT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

#define CT_WQ_S4 0
#define CT_WQ_U4 1
#define CT_WQ_E4M3 2
#define CT_WQ_E5M2 3

/* The arguments of the weight-only GEMM (see above); x rows of ldx elements (stride 1 along k),
 * y rows of ldy elements. x_dtype, y_dtype: CT_F32 or CT_BF16. reference != 0 runs the scalar
 * reference loop (one element at a time, the same float32 formulas) instead of the AVX-512 / AVX2
 * kernels, for tests. 104 bytes. */
typedef struct ct_wq_args {
  const void* x;
  const void* w_packed;
  const void* scale;
  const void* zero_point;
  const void* bias;
  void* y;
  int64_t m;
  int64_t n;
  int64_t k;
  int64_t ldx;
  int64_t ldy;
  int64_t group;
  int32_t format;
  int32_t x_dtype;
  int32_t y_dtype;
  int32_t reference;
} ct_wq_args;

/* Packs q [n, k] (element strides ld_n, ld_k) into `packed` (n * k / 2 bytes for int4, n * k for
 * fp8). q's dtype: CT_I8 with values in [-8, 7] for CT_WQ_S4, CT_U8 in [0, 15] for CT_WQ_U4,
 * CT_F8E4M3 / CT_F8E5M2 for the fp8 formats. k % 32 == 0. Out-of-range codes are an error. */
int ct_cpu_wq_pack(const void* q, int32_t q_dtype, int64_t n, int64_t k, int64_t ld_n, int64_t ld_k, int32_t format,
                   uint8_t* packed, int64_t stream);
/* y = x W^T + bias with W packed as above. */
int ct_cpu_wq_gemm(const ct_wq_args* args, int64_t stream);

/* The CUDA twins (native/cuda/quant_weight.cu): the same layout and contract; `reference` is
 * ignored. m <= 4 runs a warp-per-channel GEMV, larger m a tensor-core GEMM (bfloat16 mma.sync
 * m16n8k16 on the exact codes, the group scale applied to float32 partial sums; float32 x split
 * into two bfloat16 halves). w_packed must be 4-byte aligned. Scales and zero points are checked
 * on the device before the GEMM (one stream synchronization). */
int ct_cuda_wq_pack(const void* q, int32_t q_dtype, int64_t n, int64_t k, int64_t ld_n, int64_t ld_k, int32_t format,
                    uint8_t* packed, int64_t stream);
int ct_cuda_wq_gemm(const ct_wq_args* args, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
