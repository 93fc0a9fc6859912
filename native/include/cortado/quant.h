/*
 * Quantization family: affine integer quantization (int8, uint8, int32; int4 goes through int8
 * in [-8, 7] and is packed by the caller) and fp8 (E4M3, E5M2) with parameters per tensor, per
 * channel or per group of consecutive elements along one axis.
 *
 * Parameters. A ct_quant_map says where the scale (float32, > 0) and zero point (int32, or NULL
 * for all zeros) of each element of a data tensor live: for the element at coordinates c the
 * parameter index is
 *     p(c) = sum_d  c'_d * strides[d],   c'_d = c_d / group if d == axis, else c_d
 * so per tensor is all strides 0 (axis -1), per channel along a is strides[a] = 1 (group 1), and
 * per group of g along a is the contiguous strides of the parameter shape (the data shape with
 * dim a divided by g), group g. Java builds the map from a QuantScheme and checks that every
 * index stays inside the parameter tensors; the kernels check the map's own consistency.
 *
 * Math (shared by CPU and CUDA in native/shared/quant_math.h, bit for bit):
 *   quantize:   q = clamp(rne(x / s) + z, qmin, qmax)      integer storage (float32 math)
 *               q = fp8(x / s)                            fp8 storage (RNE, saturating; z must be 0)
 *   dequantize: y = (q - z) * s                           (float32; fp8: fp8_to_f32(q) * s)
 *   requantize: y = quantize_out(dequantize_in(x))        the composition, without the float tensor
 *   dynamic (ONNX DynamicQuantizeLinear, uint8): lo = min(0, min x), hi = max(0, max x),
 *               s = (hi - lo) / 255 (1 when hi == lo), z = clamp(rne(-lo / s), 0, 255),
 *               q = clamp(rne(x / s) + z, 0, 255).
 * rne = round half to even. NaN quantizes to z (integer storage) or NaN (fp8).
 *
 * Cost (n elements): quantize ~3 FLOPs (a division, a rounding, a clamp) per element, reads 4-8
 * and writes 1 byte per element plus the parameters (cache resident); dequantize 2 FLOPs, reads 1
 * and writes 4 bytes; dynamic quantization reads x twice (min/max pass, then quantize). All of
 * them are memory bound.
 */
#ifndef CORTADO_QUANT_H
#define CORTADO_QUANT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Where the quantization parameters of each element live (see above). scale: float32 pointer;
 * zero_point: int32 pointer or NULL; strides: one per dim of the data tensor (elements, >= 0);
 * group >= 1; axis in [-1, ndim). 96 bytes. */
typedef struct ct_quant_map {
  const void* scale;
  const void* zero_point;
  int64_t strides[CT_MAX_DIMS];
  int64_t group;
  int32_t axis;
  int32_t reserved;
} ct_quant_map;

/* y (CT_I8, CT_U8, CT_I32 with [qmin, qmax] inside its range, or CT_F8E4M3 / CT_F8E5M2) from x
 * (CT_F32, CT_F64, CT_F16 or CT_BF16, computed in float32), same shape, any strides. */
int ct_cpu_quantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map, int32_t qmin, int32_t qmax,
                    int64_t stream);

/* y (CT_F32, CT_F64, CT_F16 or CT_BF16) from q (CT_I8, CT_U8, CT_I32, CT_F8E4M3, CT_F8E5M2), same
 * shape, any strides. */
int ct_cpu_dequantize(const ct_tensor* y, const ct_tensor* q, const ct_quant_map* map, int64_t stream);

/* y (as quantize's y, with [qmin, qmax]) from x (CT_I8, CT_U8, CT_I32, fp8) with x's parameters
 * in_map and y's out_map, same shape, any strides. */
int ct_cpu_requantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* in_map,
                      const ct_quant_map* out_map, int32_t qmin, int32_t qmax, int64_t stream);

/* ONNX DynamicQuantizeLinear: y CT_U8 from x CT_F32 (same shape, any strides); writes the one
 * float32 scale and the one uint8 zero point (device memory on CUDA). */
int ct_cpu_dynamic_quantize(const ct_tensor* y, const ct_tensor* x, float* scale, uint8_t* zero_point,
                            int64_t stream);

int ct_cuda_quantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map, int32_t qmin, int32_t qmax,
                     int64_t stream);
int ct_cuda_dequantize(const ct_tensor* y, const ct_tensor* q, const ct_quant_map* map, int64_t stream);
int ct_cuda_requantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* in_map,
                       const ct_quant_map* out_map, int32_t qmin, int32_t qmax, int64_t stream);
int ct_cuda_dynamic_quantize(const ct_tensor* y, const ct_tensor* x, float* scale, uint8_t* zero_point,
                             int64_t stream);

/*
 * Fake quantization for quantization-aware training, on an integer grid [qmin, qmax] with x's
 * map (per tensor, channel or group):
 *   forward   y = (clamp(rne(x / s) + z, qmin, qmax) - z) s              (float32 math)
 *   backward  straight-through inside the grid, LSQ (Esser et al., 2020) for the scale:
 *             v = x / s, r = rne(v); inside (qmin <= r + z <= qmax): dx = g, ds = g (r - v);
 *             below: dx = 0, ds = g (qmin - z); above: dx = 0, ds = g (qmax - z)
 * ds is written per element (CT_F32, x's shape); the caller sums it over each scale's elements.
 * x, y, g, dx: one of CT_F32, CT_F64, CT_F16, CT_BF16 (computed in float32), one shape, any strides. Cost: ~5 FLOPs per
 * element forward, ~8 backward; memory bound (reads 2-4, writes 2-8 bytes per element).
 */
int ct_cpu_fake_quantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map, int32_t qmin,
                         int32_t qmax, int64_t stream);
int ct_cpu_fake_quantize_backward(const ct_tensor* dx, const ct_tensor* ds, const ct_tensor* g, const ct_tensor* x,
                                  const ct_quant_map* map, int32_t qmin, int32_t qmax, int64_t stream);
int ct_cuda_fake_quantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map, int32_t qmin,
                          int32_t qmax, int64_t stream);
int ct_cuda_fake_quantize_backward(const ct_tensor* dx, const ct_tensor* ds, const ct_tensor* g, const ct_tensor* x,
                                   const ct_quant_map* map, int32_t qmin, int32_t qmax, int64_t stream);

/*
 * int8 GEMM: C[m, n] = epilogue( sum_k (A[m, k] - za) * (B[k, n] - zb[n]) ), A uint8, B int8.
 *
 * B is packed once (ct_*_qgemm_pack_b) into blocks of 16 columns x 4 k (64 bytes, the operand of
 * one vpdpbusd): byte ((j / 16) * (Kp / 4) + k / 4) * 64 + (j % 16) * 4 + k % 4 holds B[k, j], with
 * Kp = k rounded up to 4 and the columns padded to Np = n rounded up to 32 (padding is 0); the
 * packing also writes colsum[j] = sum_k B[k, j] (int32) for the zero-point compensation
 *     sum_k (a - za)(b - zb) = sum_k a b - za colsum[j] - zb[j] rowsum[m] + k za zb[j].
 * k <= 32768, so every sum (|a - za| <= 255, |b - zb| <= 255) is exact in int32.
 *
 * Epilogue (out_dtype): CT_I32 stores the compensated sum; otherwise v = fma((float)acc,
 * scale[j], bias[j]) (bias NULL: 0), then the activation (CT_ACTIVATION_*, cortado/conv.h and
 * ops/activation.def: none, ReLU max(v, 0), the erf GELU, SiLU; in float32), then CT_F32 stores v,
 * CT_BF16 stores v rounded to nearest even (NaN stays a quiet NaN), CT_I8/CT_U8 store
 * clamp(rne(v) + out_zero_point) in the dtype's range. For an int8 output the caller folds the
 * output scale into scale (sa * sb[j] / so) and bias (bias / so); as that does not commute with GELU
 * or SiLU, an int8 / uint8 output takes no activation but ReLU (CT_ERR_INVALID_ARG). GELU and SiLU are evaluated with
 * the vectorized float32 forms on the CPU's AVX-512 paths (gelu_erf_f32 and exp_f32 of
 * native/cpu/vmath.h: within ~6 ulp of the float64 functions), libm's elsewhere.
 *
 * CPU: AMX-INT8 (tdpbusd, a 32 x 32 block of four 16 x 16 tiles) where the CPU has it and Linux
 * grants the tile state, else AVX-512 VNNI (vpdpbusd, 8 x 32 register tile) when the CPU has it and
 * AVX-512 is enabled, else AVX2 with exact 16-bit products (vpmovsxbw/vpmovzxbw + vpmaddwd: vpmaddubsw would saturate
 * its int16 pair sums, 255 * 127 * 2 > 32767). Cost: 2 m n k integer ops; A is read once into a
 * padded copy (m * Kp bytes) with its row sums; B (Np * Kp bytes) streams through L2 once per 64
 * rows of C, 32 columns at a time over the whole k; C is written once.
 */
typedef struct ct_qgemm_args {
  const void* a;
  const void* b_packed;
  const void* b_colsum;
  const void* b_zero_point;
  const void* scale;
  const void* bias;
  void* c;
  int64_t m;
  int64_t n;
  int64_t k;
  int64_t lda;
  int64_t ldc;
  int32_t a_zero_point;
  int32_t out_dtype;
  int32_t activation;
  int32_t out_zero_point;
} ct_qgemm_args;

/* Packs B (int8 [k, n], element strides ldb_k along k and ldb_n along n) into `packed`
 * (Np * Kp bytes, see above) and writes colsum (int32 [n]). */
int ct_cpu_qgemm_pack_b(const int8_t* b, int64_t k, int64_t n, int64_t ldb_k, int64_t ldb_n, int8_t* packed,
                        int32_t* colsum, int64_t stream);
/* The GEMM above; a: uint8 rows of lda elements (stride 1 along k); c: rows of ldc elements. */
int ct_cpu_qgemm(const ct_qgemm_args* args, int64_t stream);
int ct_cuda_qgemm_pack_b(const int8_t* b, int64_t k, int64_t n, int64_t ldb_k, int64_t ldb_n, int8_t* packed,
                         int32_t* colsum, int64_t stream);
int ct_cuda_qgemm(const ct_qgemm_args* args, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
