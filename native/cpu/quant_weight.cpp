/*
 * Weight-only int4 / fp8 GEMM and GEMV, CPU (quant_weight.h): y = x W^T + bias, W [n, k] packed
 * in 4 or 8 bits with group-wise float32 scales along k, x float32 or bfloat16.
 *
 * Algorithm (one dot product per output, dequantizing W in registers):
 *   1. bfloat16 x is widened into a float32 workspace (m * k * 4 bytes, once).
 *   2. Threads split the n outputs; each walks its columns in blocks of NR and the rows of x in
 *      blocks of MR (MR <= 4). For a block of 32 k (one 16-byte int4 or 32-byte fp8 load per
 *      column) it decodes the codes of NR columns into float32 lanes, applies the group's scale
 *      (and zero point: w = fma(u, s, -z' s)), and multiplies them into MR x NR lane accumulators
 *      with the MR rows of x. The NR columns' weights are decoded once per MR rows.
 *   3. At the end of k each accumulator is summed across its lanes, the bias added, y stored.
 * Decoding: int4 vpmovzxbd of 16 bytes, then & 15 (k0..k0+15) and >> 4 (k0+16..k0+31), vcvtdq2ps;
 * E5M2 is the high byte of a float16 (vpmovzxbw, << 8, vcvtph2ps); E4M3 with its sign moved to
 * bit 15 and its 7 other bits at 13..7 is a float16 with 2^8 times smaller value (normal and
 * subnormal alike), so the group scale absorbs 2^8; its NaN codes (0x7f, 0xff) are forced to NaN.
 * Cost: 2 m n k FLOPs plus ~2 n k per row block for the decoding; W is read once per row block
 * (once for the GEMV, which is bound by its bytes: n k / 2 for int4). The scalar reference (same
 * float32 formulas, one element at a time) runs when ct_wq_args.reference is set.
 * int4 on a CPU with AVX512_BF16 takes the vdpbf16ps path below instead (all m: W read once, each
 * column's codes reused from L1 for every row of x; the same instructions for a row whatever m is).
 */
#include <algorithm>
#include <atomic>

#include "cortado/quant_weight.h"
#include "internal.h"
#include "quant_math.h"
#include "quant_weight_check.h"

namespace ct {
namespace {

constexpr int64_t kBlock = 32;  // k per packed block

inline bool is_int4(int format) { return format == CT_WQ_S4 || format == CT_WQ_U4; }
inline int64_t row_bytes(int format, int64_t k) { return is_int4(format) ? k / 2 : k; }

/* Per column j and group g: the scale s and the offset b with w = fma(code, s, b). int4: code is
 * the unsigned nibble u, b = -(z + 8 if signed) s. E4M3: code is the float16-shifted value, s is
 * multiplied by 2^8, b = 0. E5M2: code is the value, b = 0. */
struct GroupParams {
  float s, b;
};
/* A scale that is not finite and > 0, or a zero point outside the format's range, sets `bad`
 * (checked here, where each parameter is read anyway, not in a pass of its own). */
inline GroupParams group_params(const ct_wq_args& a, int64_t j, int64_t g, bool& bad) {
  const int64_t G = a.k / a.group;
  const float s = ((const float*)a.scale)[j * G + g];
  bad |= !(s > 0.0f && s <= 3.4028235e38f);
  if (is_int4(a.format)) {
    const int32_t z = a.zero_point ? ((const int32_t*)a.zero_point)[j * G + g] : 0;
    bad |= a.format == CT_WQ_S4 ? (z < -8 || z > 7) : (z < 0 || z > 15);
    const float zu = (float)(z + (a.format == CT_WQ_S4 ? 8 : 0));
    return {s, -zu * s};
  }
  return {a.format == CT_WQ_E4M3 ? s * 256.0f : s, 0.0f};
}

// ------------------------------------------------------------------ scalar reference
/* The decoded code of W[j, kk] (before fma with s, b). */
inline float code_at(const ct_wq_args& a, const uint8_t* row, int64_t kk) {
  const int64_t blk = kk / kBlock, i = kk % kBlock;
  if (is_int4(a.format)) {
    const uint8_t byte = row[blk * 16 + (i % 16)];
    return (float)(i < 16 ? (byte & 15) : (byte >> 4));
  }
  const uint8_t v = row[kk];
  if (a.format == CT_WQ_E5M2) return qm::fp8_to_f32<qm::e5m2>(v);
  return qm::fp8_to_f32<qm::e4m3>(v) * (1.0f / 256.0f);  // the scale carries 2^8
}

void reference_rows(const ct_wq_args& a, const float* x, int64_t ldx, int64_t j0, int64_t j1, bool& bad) {
  const uint8_t* w = (const uint8_t*)a.w_packed;
  const int64_t rb = row_bytes(a.format, a.k);
  for (int64_t j = j0; j < j1; ++j) {
    for (int64_t i = 0; i < a.m; ++i) {
      float acc = 0.0f;
      for (int64_t kk = 0; kk < a.k; ++kk) {
        const GroupParams p = group_params(a, j, kk / a.group, bad);
        acc = std::fma(x[i * ldx + kk], std::fma(code_at(a, w + j * rb, kk), p.s, p.b), acc);
      }
      const float v = acc + (a.bias ? ((const float*)a.bias)[j] : 0.0f);
      if (a.y_dtype == CT_F32) ((float*)a.y)[i * a.ldy + j] = v;
      else ((bf16*)a.y)[i * a.ldy + j].bits = f32_to_bf16(v);
    }
  }
}

// ------------------------------------------------------------------ AVX-512
/* The 32 weights of one block of one column as two vectors (k0..15, k0+16..31), dequantized. */
template <int FORMAT>
CT_AVX512 CT_INLINE void decode512(const uint8_t* p, __m512 s, __m512 b, __m512& w0, __m512& w1) {
  if constexpr (FORMAT == CT_WQ_S4 || FORMAT == CT_WQ_U4) {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)p));
    w0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15))), s, b);
    w1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), s, b);
  } else {
    const __m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)p));  // 32 x uint16
    __m512i f;
    if constexpr (FORMAT == CT_WQ_E5M2) {
      f = _mm512_slli_epi16(v, 8);
    } else {
      // sign to bit 15, the other 7 bits to 13..7; NaN codes (x & 0x7f == 0x7f) to a float16 NaN
      const __m512i mag = _mm512_and_si512(v, _mm512_set1_epi16(0x7f));
      f = _mm512_or_si512(_mm512_slli_epi16(_mm512_and_si512(v, _mm512_set1_epi16(0x80)), 8), _mm512_slli_epi16(mag, 7));
      const __mmask32 nan = _mm512_cmpeq_epi16_mask(mag, _mm512_set1_epi16(0x7f));
      f = _mm512_mask_mov_epi16(f, nan, _mm512_set1_epi16(0x7e00));
    }
    w0 = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(f)), s);
    w1 = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(f, 1)), s);
    (void)b;
  }
}

template <int FORMAT, int MR, int NR>
CT_AVX512 void tile512(const ct_wq_args& a, const float* x, int64_t ldx, int64_t i0, int64_t j0, bool& bad) {
  const uint8_t* w = (const uint8_t*)a.w_packed;
  const int64_t rb = row_bytes(FORMAT, a.k), bb = is_int4(FORMAT) ? 16 : 32;
  __m512 acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t g0 = 0; g0 < a.k; g0 += a.group) {
    __m512 s[NR], b[NR];
    for (int c = 0; c < NR; ++c) {
      const GroupParams p = group_params(a, j0 + c, g0 / a.group, bad);
      s[c] = _mm512_set1_ps(p.s);
      b[c] = _mm512_set1_ps(p.b);
    }
    for (int64_t k0 = g0; k0 < g0 + a.group; k0 += kBlock) {
      __m512 x0[MR], x1[MR];
      for (int r = 0; r < MR; ++r) {
        x0[r] = _mm512_loadu_ps(x + (i0 + r) * ldx + k0);
        x1[r] = _mm512_loadu_ps(x + (i0 + r) * ldx + k0 + 16);
      }
      for (int c = 0; c < NR; ++c) {
        __m512 w0, w1;
        decode512<FORMAT>(w + (j0 + c) * rb + (k0 / kBlock) * bb, s[c], b[c], w0, w1);
        for (int r = 0; r < MR; ++r) {
          acc[r][c] = _mm512_fmadd_ps(x0[r], w0, acc[r][c]);
          acc[r][c] = _mm512_fmadd_ps(x1[r], w1, acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) {
      const float v = _mm512_reduce_add_ps(acc[r][c]) + (a.bias ? ((const float*)a.bias)[j0 + c] : 0.0f);
      if (a.y_dtype == CT_F32) ((float*)a.y)[(i0 + r) * a.ldy + j0 + c] = v;
      else ((bf16*)a.y)[(i0 + r) * a.ldy + j0 + c].bits = f32_to_bf16(v);
    }
}

// ------------------------------------------------------------------ AVX2
/* Half h of one block of one column: lanes k0+8h..+7 (w0) and k0+16+8h..+7 (w1). */
template <int FORMAT>
CT_INLINE void decode256(const uint8_t* p, int h, __m256 s, __m256 b, __m256& w0, __m256& w1) {
  if constexpr (FORMAT == CT_WQ_S4 || FORMAT == CT_WQ_U4) {
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(p + 8 * h)));
    w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(15))), s, b);
    w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), s, b);
  } else {
    // fp8 blocks are in k order: lanes k0+8h..+7 and k0+16+8h..+7
    __m128i v0 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i*)(p + 8 * h)));
    __m128i v1 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i*)(p + 16 + 8 * h)));
    if constexpr (FORMAT == CT_WQ_E5M2) {
      v0 = _mm_slli_epi16(v0, 8);
      v1 = _mm_slli_epi16(v1, 8);
    } else {
      const __m128i m7 = _mm_set1_epi16(0x7f), s8 = _mm_set1_epi16(0x80), qnan = _mm_set1_epi16(0x7e00);
      const __m128i a0 = _mm_and_si128(v0, m7), a1 = _mm_and_si128(v1, m7);
      __m128i f0 = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(v0, s8), 8), _mm_slli_epi16(a0, 7));
      __m128i f1 = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(v1, s8), 8), _mm_slli_epi16(a1, 7));
      v0 = _mm_blendv_epi8(f0, qnan, _mm_cmpeq_epi16(a0, m7));
      v1 = _mm_blendv_epi8(f1, qnan, _mm_cmpeq_epi16(a1, m7));
    }
    w0 = _mm256_mul_ps(_mm256_cvtph_ps(v0), s);
    w1 = _mm256_mul_ps(_mm256_cvtph_ps(v1), s);
    (void)b;
  }
}

template <int FORMAT, int MR, int NR>
void tile256(const ct_wq_args& a, const float* x, int64_t ldx, int64_t i0, int64_t j0, bool& bad) {
  const uint8_t* w = (const uint8_t*)a.w_packed;
  const int64_t rb = row_bytes(FORMAT, a.k), bb = is_int4(FORMAT) ? 16 : 32;
  __m256 acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t g0 = 0; g0 < a.k; g0 += a.group) {
    __m256 s[NR], b[NR];
    for (int c = 0; c < NR; ++c) {
      const GroupParams p = group_params(a, j0 + c, g0 / a.group, bad);
      s[c] = _mm256_set1_ps(p.s);
      b[c] = _mm256_set1_ps(p.b);
    }
    for (int64_t k0 = g0; k0 < g0 + a.group; k0 += kBlock) {
      for (int h = 0; h < 2; ++h) {
        for (int c = 0; c < NR; ++c) {
          __m256 w0, w1;
          decode256<FORMAT>(w + (j0 + c) * rb + (k0 / kBlock) * bb, h, s[c], b[c], w0, w1);
          for (int r = 0; r < MR; ++r) {
            const float* xr = x + (i0 + r) * ldx + k0 + 8 * h;
            acc[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(xr), w0, acc[r][c]);
            acc[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 16), w1, acc[r][c]);
          }
        }
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) {
      __m128 q = _mm_add_ps(_mm256_castps256_ps128(acc[r][c]), _mm256_extractf128_ps(acc[r][c], 1));
      q = _mm_add_ps(q, _mm_movehl_ps(q, q));
      q = _mm_add_ss(q, _mm_movehdup_ps(q));
      const float v = _mm_cvtss_f32(q) + (a.bias ? ((const float*)a.bias)[j0 + c] : 0.0f);
      if (a.y_dtype == CT_F32) ((float*)a.y)[(i0 + r) * a.ldy + j0 + c] = v;
      else ((bf16*)a.y)[(i0 + r) * a.ldy + j0 + c].bits = f32_to_bf16(v);
    }
}

// ------------------------------------------------------------------ AVX512_BF16 int4 path (GEMV and small m)
/* The decode GEMV of int4 weights, on vdpbf16ps: each nibble u becomes the bfloat16 value u - 8
 * (exact) by one vpermw table lookup, and 32-lane pairs of codes multiply float32 x split into two
 * bfloat16 parts (x = h + l, |x - h - l| <= 2^-16 |x|; l is skipped when x was bfloat16) with
 * float32 accumulation (the CUDA GEMV splits x the same way). Products of a 4-bit code and an 8-bit
 * part are exact, so the result differs from the float32 path by summation order only.
 *   One step is 32 bytes of a column = 2 blocks = 64 codes: vpmovzxbw, vpand / vpsrlw for the two
 *   nibbles, two vpermw, four vdpbf16ps (two without l). Output lane q < 8 belongs to the first
 *   block, q >= 8 to the second; the group scale multiplies the step sum (g = 32: two scales, one
 *   per half, by a vpermps) or the group's sum of steps (g >= 64).
 *   Zero points: w = (u - zu) s = ((u - 8) - (zu - 8)) s, so y_j = sum_g s_g dot_g - sum_g (zu_g - 8)
 *   s_g sx_g with sx_g the group sums of x, computed once; zero for signed int4 without zero points.
 * x is rearranged once per call (k codes' worth of bfloat16, 2 x 2k bytes) into the order the
 * nibbles come out of a step: lanes 0..15 = x[64t + i], 16..31 = x[64t + 32 + i] for the low
 * nibbles; + 16 for the high nibbles. Cost per column: k / 2 bytes of codes and 4 k / g of scales
 * read once; ~(9 + 2 (float32 x)) vector instructions per 64 codes, about 3x fewer than decoding to
 * float32 and two FMAs per code. */
/* The codes are one stream (row j + 1 follows row j); a prefetch this many bytes ahead keeps
 * enough cache-line misses in flight for one core (prefetching past the end is harmless). */
constexpr int64_t kGemvPrefetch = 1024;

struct GemvX {
  int64_t steps = 0;           // ceil(k / 64)
  bool split = false;          // x was float32: the l parts are there too
  const uint16_t* parts = nullptr;  // per row of x, per step: nib0 h, nib0 l, nib1 h, nib1 l (32 bf16 each)
  const float* gsum = nullptr;      // per row of x, the sum of x over each group (k / g values)
};

/* Fills parts (steps * 128 uint16) and gsum (k / g floats) from one float32 row x. */
void gemv_prepare(const ct_wq_args& a, const float* x, bool split, uint16_t* parts, float* gsum) {
  const int64_t steps = (a.k + 63) / 64;
  for (int64_t t = 0; t < steps; ++t) {
    uint16_t* d = parts + t * 128;
    for (int nib = 0; nib < 2; ++nib)
      for (int i = 0; i < 32; ++i) {
        const int64_t kk = 64 * t + (i < 16 ? i : 32 + i - 16) + 16 * nib;
        const float v = kk < a.k ? x[kk] : 0.0f;
        const uint16_t h = f32_to_bf16(v);
        d[nib * 64 + i] = h;
        d[nib * 64 + 32 + i] = split ? f32_to_bf16(v - bf16_to_f32(h)) : 0;
      }
  }
  for (int64_t g = 0; g < a.k / a.group; ++g) {
    double sum = 0;
    for (int64_t kk = g * a.group; kk < (g + 1) * a.group; ++kk) sum += x[kk];
    gsum[g] = (float)sum;
  }
}

/* acc[0..3] += the 64 codes of one step (32 bytes at p; only the first 16 when half) times x: four
 * independent chains (low / high nibbles times the h / l parts), as a single chain of vdpbf16ps
 * would wait ~5 cycles per instruction. */
CT_AVX512BF16 CT_INLINE void gemv_step(__m512* acc, const uint8_t* p, bool half, const uint16_t* xp, bool split,
                                           __m512i table) {
  _mm_prefetch((const char*)p + kGemvPrefetch, _MM_HINT_T0);
  const __m256i bytes = half ? _mm256_maskz_loadu_epi8(0xFFFFu, p) : _mm256_loadu_si256((const __m256i*)p);
  const __m512i v = _mm512_cvtepu8_epi16(bytes);
  const __m512i w0 = _mm512_permutexvar_epi16(_mm512_and_si512(v, _mm512_set1_epi16(15)), table);
  const __m512i w1 = _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), table);
  acc[0] = _mm512_dpbf16_ps(acc[0], (__m512bh)w0, (__m512bh)_mm512_load_si512(xp));
  acc[1] = _mm512_dpbf16_ps(acc[1], (__m512bh)w1, (__m512bh)_mm512_load_si512(xp + 64));
  if (split) {
    acc[2] = _mm512_dpbf16_ps(acc[2], (__m512bh)w0, (__m512bh)_mm512_load_si512(xp + 32));
    acc[3] = _mm512_dpbf16_ps(acc[3], (__m512bh)w1, (__m512bh)_mm512_load_si512(xp + 96));
  }
}

CT_AVX512BF16 CT_INLINE __m512 gemv_sum(const __m512* acc) {
  return _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
}

/* Scales (finite, > 0) and zero points (in the format's range) of column j are valid. */
CT_AVX512BF16 bool gemv_params_ok(const ct_wq_args& a, int64_t j) {
  const int64_t G = a.k / a.group;
  const float* s = (const float*)a.scale + j * G;
  const int32_t* z = a.zero_point ? (const int32_t*)a.zero_point + j * G : nullptr;
  const int32_t zlo = a.format == CT_WQ_S4 ? -8 : 0, zhi = a.format == CT_WQ_S4 ? 7 : 15;
  for (int64_t g = 0; g < G; g += 16) {
    const __mmask16 m = G - g >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (G - g)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, s + g);
    const __mmask16 ok = _mm512_mask_cmp_ps_mask(m, v, _mm512_setzero_ps(), _CMP_GT_OQ) &
                         _mm512_mask_cmp_ps_mask(m, v, _mm512_set1_ps(3.4028235e38f), _CMP_LE_OQ);
    if (ok != m) return false;
    if (z) {
      const __m512i zv = _mm512_maskz_loadu_epi32(m, z + g);
      const __mmask16 zok = _mm512_mask_cmpge_epi32_mask(m, zv, _mm512_set1_epi32(zlo)) &
                            _mm512_mask_cmple_epi32_mask(m, zv, _mm512_set1_epi32(zhi));
      if (zok != m) return false;
    }
  }
  return true;
}

/* Group 32: a step's 64 codes are two groups (lanes 0-7 the first, 8-15 the second, as the x
 * parts are laid out), so each step's dot products are scaled and added to the total at once.
 * Within a step the 2 (4 with the l parts) vdpbf16ps form one chain from zero: the steps are
 * independent, and out-of-order execution overlaps their chains. (Four accumulators per step,
 * zeroed and summed each time, cost 3 adds and 4 register copies per 64 codes; GCC copies a zero
 * into each destructive vdpbf16ps destination.) Two totals alternate so the fma chain does not
 * bind either. full whole steps, then a half step (16 bytes, one group) when odd. */
template <bool Split>
CT_AVX512BF16 CT_INLINE __m512 gemv_g32(const uint8_t* row, const float* sc, const uint16_t* xparts, int64_t full,
                                           bool odd, __m512i table) {
  const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i low4 = _mm512_set1_epi16(15);
  __m512 total0 = _mm512_setzero_ps(), total1 = _mm512_setzero_ps();
  auto step = [&](int64_t t, bool half, __m512& total) CT_AVX512BF16 {
    const uint8_t* p = row + 32 * t;
    const uint16_t* xp = xparts + 128 * t;
    _mm_prefetch((const char*)p + kGemvPrefetch, _MM_HINT_T0);
    const __m256i bytes = half ? _mm256_maskz_loadu_epi8(0xFFFFu, p) : _mm256_loadu_si256((const __m256i*)p);
    const __m512i v = _mm512_cvtepu8_epi16(bytes);
    const __m512bh w0 = (__m512bh)_mm512_permutexvar_epi16(_mm512_and_si512(v, low4), table);
    const __m512bh w1 = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), table);
    __m512 d = _mm512_dpbf16_ps(_mm512_setzero_ps(), w0, (__m512bh)_mm512_load_si512(xp));
    d = _mm512_dpbf16_ps(d, w1, (__m512bh)_mm512_load_si512(xp + 64));
    if (Split) {
      d = _mm512_dpbf16_ps(d, w0, (__m512bh)_mm512_load_si512(xp + 32));
      d = _mm512_dpbf16_ps(d, w1, (__m512bh)_mm512_load_si512(xp + 96));
    }
    // two group scales in the low 64 bits: _mm_loadl_epi64 takes an unaligned, may-alias pointer
    // (a float* read as double*, as _mm_load_sd needs, is misaligned at odd t: UBSan reports it)
    const __m128 s2 = half ? _mm_load_ss(sc + 2 * t) : _mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)(sc + 2 * t)));
    total = _mm512_fmadd_ps(d, _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(s2)), total);
  };
  int64_t t = 0;
  for (; t + 2 <= full; t += 2) {
    step(t, false, total0);
    step(t + 1, false, total1);
  }
  if (t < full) step(t, false, total0);
  if (odd) step(full, true, total1);
  return _mm512_add_ps(total0, total1);
}

/* y[i, j] without bias for one column (codes `row`, scales sc, zero points z or NULL) and one
 * prepared row of x. */
CT_AVX512BF16 CT_INLINE float gemv_dot(const ct_wq_args& a, const GemvX& gx, const uint8_t* row, const float* sc,
                                          const int32_t* z, const uint16_t* xparts, const float* gsum, __m512i table) {
  const int64_t G = a.k / a.group, full = a.k / 64;
  const bool odd = gx.steps > full;  // a last step of one block
  __m512 total = _mm512_setzero_ps();
  if (a.group == 32) {
    total = gx.split ? gemv_g32<true>(row, sc, xparts, full, odd, table) : gemv_g32<false>(row, sc, xparts, full, odd, table);
  } else {
    const int64_t per = a.group / 64;  // steps per group (g = 64 or 128: whole steps)
    for (int64_t g = 0; g < G; ++g) {
      __m512 d[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int64_t t = g * per; t < (g + 1) * per; ++t) gemv_step(d, row + 32 * t, false, xparts + 128 * t, gx.split, table);
      total = _mm512_fmadd_ps(gemv_sum(d), _mm512_set1_ps(sc[g]), total);
    }
  }
  // - sum_g (zu_g - 8) s_g sx_g, 16 groups at a time (a scalar loop cost ~G cycles per column)
  if (!z && a.format == CT_WQ_S4) return _mm512_reduce_add_ps(total);
  const __m512i zoff = _mm512_set1_epi32(a.format == CT_WQ_S4 ? 0 : -8);
  __m512 corr = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; g += 16) {
    const __mmask16 m = G - g >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (G - g)) - 1u);
    const __m512i zu = _mm512_add_epi32(z ? _mm512_maskz_loadu_epi32(m, z + g) : _mm512_setzero_si512(), zoff);
    corr = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(zu), _mm512_maskz_loadu_ps(m, sc + g)),
                           _mm512_maskz_loadu_ps(m, gsum + g), corr);
  }
  return _mm512_reduce_add_ps(total) - _mm512_reduce_add_ps(corr);
}

CT_AVX512BF16 void gemv_bf16_rows(const ct_wq_args& a, const GemvX& gx, int64_t j0, int64_t j1, bool& bad) {
  const int64_t rb = a.k / 2, G = a.k / a.group;
  alignas(64) uint16_t tab[32];
  for (int u = 0; u < 32; ++u) tab[u] = f32_to_bf16((float)((u & 15) - 8));
  const __m512i table = _mm512_load_si512(tab);
  for (int64_t j = j0; j < j1; ++j) {
    if (!gemv_params_ok(a, j)) { bad = true; continue; }
    const uint8_t* row = (const uint8_t*)a.w_packed + j * rb;  // from memory for i = 0, then from L1
    const float* sc = (const float*)a.scale + j * G;
    const int32_t* z = a.zero_point ? (const int32_t*)a.zero_point + j * G : nullptr;
    for (int64_t i = 0; i < a.m; ++i) {
      const float v = gemv_dot(a, gx, row, sc, z, gx.parts + i * gx.steps * 128, gx.gsum + i * G, table) +
                      (a.bias ? ((const float*)a.bias)[j] : 0.0f);
      if (a.y_dtype == CT_F32) ((float*)a.y)[i * a.ldy + j] = v;
      else ((bf16*)a.y)[i * a.ldy + j].bits = f32_to_bf16(v);
    }
  }
}

// ------------------------------------------------------------------ driver
using Tile = void (*)(const ct_wq_args&, const float*, int64_t, int64_t, int64_t, bool&);

/* The tile kernels of one format: [avx512][MR - 1][NR - 1]; AVX2 stops at NR = 2 (16 ymm). */
template <int F> struct Tiles {
  static Tile get(bool avx512, int mr, int nr) {
    static const Tile t512[4][4] = {
        {tile512<F, 1, 1>, tile512<F, 1, 2>, tile512<F, 1, 3>, tile512<F, 1, 4>},
        {tile512<F, 2, 1>, tile512<F, 2, 2>, tile512<F, 2, 3>, tile512<F, 2, 4>},
        {tile512<F, 3, 1>, tile512<F, 3, 2>, tile512<F, 3, 3>, tile512<F, 3, 4>},
        {tile512<F, 4, 1>, tile512<F, 4, 2>, tile512<F, 4, 3>, tile512<F, 4, 4>}};
    static const Tile t256[4][2] = {{tile256<F, 1, 1>, tile256<F, 1, 2>},
                                    {tile256<F, 2, 1>, tile256<F, 2, 2>},
                                    {tile256<F, 3, 1>, tile256<F, 3, 2>},
                                    {tile256<F, 4, 1>, tile256<F, 4, 2>}};
    return avx512 ? t512[mr - 1][nr - 1] : t256[mr - 1][nr - 1];
  }
};

Tile tile_for(int format, bool avx512, int mr, int nr) {
  switch (format) {
    case CT_WQ_S4:
    case CT_WQ_U4: return Tiles<CT_WQ_S4>::get(avx512, mr, nr);  // the format only changes the offset
    case CT_WQ_E4M3: return Tiles<CT_WQ_E4M3>::get(avx512, mr, nr);
    default: return Tiles<CT_WQ_E5M2>::get(avx512, mr, nr);
  }
}

void fast_rows(const ct_wq_args& a, const float* x, int64_t ldx, int64_t j0, int64_t j1, const GemvX* gx, bool& bad) {
  if (gx) return gemv_bf16_rows(a, *gx, j0, j1, bad);
  const bool avx512 = use_avx512();
  const int nrmax = avx512 ? 4 : 2;
  for (int64_t j = j0; j < j1;) {
    const int nr = (int)std::min<int64_t>(nrmax, j1 - j);
    for (int64_t i = 0; i < a.m;) {
      const int mr = (int)std::min<int64_t>(4, a.m - i);
      tile_for(a.format, avx512, mr, nr)(a, x, ldx, i, j, bad);
      i += mr;
    }
    j += nr;
  }
}

bool finite_positive(float s) { return std::isfinite(s) && s > 0.0f; }

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_wq_pack(const void* q, int32_t q_dtype, int64_t n, int64_t k, int64_t ld_n, int64_t ld_k,
                              int32_t format, uint8_t* packed, int64_t stream) {
  static const char* fn = "ct_cpu_wq_pack";
  CT_TRY
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_wq_pack(fn, q, q_dtype, n, k, ld_n, ld_k, format, packed, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  const int64_t rb = row_bytes(format, k);
  std::atomic<int64_t> bad{-1};
  parallel_range(n, k, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      uint8_t* dst = packed + j * rb;
      if (!is_int4(format)) {
        for (int64_t kk = 0; kk < k; ++kk) dst[kk] = ((const uint8_t*)q)[j * ld_n + kk * ld_k];
        continue;
      }
      for (int64_t blk = 0; blk < k / kBlock; ++blk)
        for (int64_t i = 0; i < 16; ++i) {
          int u[2];
          for (int h = 0; h < 2; ++h) {
            const int64_t off = j * ld_n + (blk * kBlock + i + 16 * h) * ld_k;
            const int v = format == CT_WQ_S4 ? ((const int8_t*)q)[off] : ((const uint8_t*)q)[off];
            if (format == CT_WQ_S4 ? (v < -8 || v > 7) : (v > 15)) bad.store(j);
            u[h] = (format == CT_WQ_S4 ? v + 8 : v) & 15;
          }
          dst[blk * 16 + i] = (uint8_t)(u[0] | (u[1] << 4));
        }
    }
  });
  if (bad.load() >= 0)
    return fail(CT_ERR_INVALID_ARG, "%s: row %lld holds a code outside %s", fn, (long long)bad.load(),
                format == CT_WQ_S4 ? "[-8, 7]" : "[0, 15]");
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_wq_gemm(const ct_wq_args* args, int64_t stream) {
  static const char* fn = "ct_cpu_wq_gemm";
  CT_TRY
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_wq_gemm(fn, args, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  const ct_wq_args& a = *args;
  // float32 rows of x: x itself, or a widened copy of bfloat16 x
  const float* x = (const float*)a.x;
  int64_t ldx = a.ldx;
  HostBuffer<float> wide(a.x_dtype == CT_BF16 ? std::max<int64_t>(1, a.m * a.k) : 1);
  if (a.x_dtype == CT_BF16) {
    parallel_range(a.m, a.k, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t kk = 0; kk < a.k; ++kk) wide[i * a.k + kk] = bf16_to_f32(((const bf16*)a.x)[i * a.ldx + kk].bits);
    });
    x = wide.data();
    ldx = a.k;
  }
  // int4 weights run on vdpbf16ps where the CPU has it, with the rows of x rearranged once; every
  // row takes the same instructions whatever m is, so a row's result does not depend on the batch.
  // Its steps of 64 codes lie in one group or hold two groups of 32 (g = 96, 160, ... take the tiles)
  const bool bf16_gemv = is_int4(a.format) && !a.reference && use_avx512_bf16() && (a.group == 32 || a.group % 64 == 0);
  const int64_t steps = (a.k + 63) / 64, G = a.k / a.group;
  HostBuffer<uint16_t> parts(bf16_gemv ? a.m * steps * 128 : 1);
  HostBuffer<float> gsum(bf16_gemv ? std::max<int64_t>(1, a.m * G) : 1);
  GemvX gx;
  if (bf16_gemv) {
    parallel_range(a.m, 2 * a.k, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        gemv_prepare(a, x + i * ldx, a.x_dtype != CT_BF16, parts.data() + i * steps * 128, gsum.data() + i * G);
    });
    gx = GemvX{steps, a.x_dtype != CT_BF16, parts.data(), gsum.data()};
  }
  // threads split n in blocks of 4 columns
  std::atomic<bool> any_bad{false};
  const int64_t blocks = (a.n + 3) / 4;
  parallel_range(blocks, 4 * std::max<int64_t>(1, a.m * a.k), [&](int64_t b0, int64_t b1) {
    const int64_t j0 = b0 * 4, j1 = std::min(a.n, b1 * 4);
    bool bad = false;
    if (a.reference) reference_rows(a, x, ldx, j0, j1, bad);
    else fast_rows(a, x, ldx, j0, j1, bf16_gemv ? &gx : nullptr, bad);
    if (bad) any_bad.store(true);
  });
  if (any_bad.load()) {  // find the first bad parameter for the message (the error path only)
    const int64_t params = a.k / a.group * a.n;
    for (int64_t p = 0; p < params; ++p) {
      const float s = ((const float*)a.scale)[p];
      const int32_t z = a.zero_point ? ((const int32_t*)a.zero_point)[p] : 0;
      if (!finite_positive(s) || (a.format == CT_WQ_S4 ? (z < -8 || z > 7) : (z < 0 || z > 15)))
        return fail(qm::wq_param_error(fn, a.format, p, s, z, &msg), "%s", msg.text);
    }
  }
  return CT_OK;
  CT_CATCH(fn)
}
