/*
 * int8 GEMM of the quantization family (quant.h), CPU: C = epilogue(sum_k (A - za)(B - zb)),
 * A uint8 [m, k], B int8 [k, n] packed once, int32 accumulation, zero-point compensation and a
 * fused epilogue (per-column scale, bias, an activation: ReLU, GELU, SiLU; int32, float32,
 * bfloat16, int8 or uint8 output).
 *
 * Algorithm:
 *   1. A is copied into a padded panel Ap, 4096 rows at a time, while its row sums are taken:
 *      m * k bytes read, m * Kp written. Ap holds strips of 8 rows interleaved by 4-byte k groups,
 *      [m / 8][Kp / 4][8 rows][4 bytes] (zeros after k and after the last row), so a register
 *      tile reads its 8 rows' broadcasts as one contiguous stream: with rows Kp bytes apart, a
 *      64-row tile's k block fell into Kp / 64 of L1's 64 sets and missed L1 from Kp = 1024 on
 *      (measured: 1024^3 ran at 8% of the VNNI peak, 512^3 at 44%). The rows come from a
 *      callback (qgemm_rows, quant_internal.h), a strip of 8 at a time: a copy of A here, the
 *      im2col rows of the int8 convolution there; a strip is interleaved by 8 x 4 transposes of
 *      32-bit words in registers (interleave_strip).
 *      The packing and the tiles of all chunks run in one parallel region, phases separated by
 *      barriers.
 *   2. The output is cut into tiles of 64 rows x 64 columns spread over the threads; each
 *      register tile of a tile runs the whole k (vnni_tile_with_epilogue) and its int32 sums go
 *      through the epilogue at once, from a 16 KiB per-thread buffer still in L1.
 *   3. Register tiles: AVX-512 VNNI 8 rows x 32 columns (16 zmm accumulators; per 4 k, 2 B loads
 *      of 16 columns x 4 k, 8 broadcasts of 4 A bytes, 16 vpdpbusd = 2048 multiply-adds; the
 *      vpdpbusd written as asm, see dpbusd); AVX2 2 rows x 16 columns with exact 16-bit products
 *      (B widened with vpmovsxbw, 4 A bytes widened and repeated, vpmaddwd gives pairs of k per
 *      int32 lane, folded by vphaddd at the end). vpmaddubsw is not used: its int16 pair sums
 *      saturate (255*127*2). Over the largest k (32768) no int32 lane overflows: |sum| <= 2^30.
 *   3a. AMX-INT8 (where the CPU has it; the section "AMX-INT8" below): A is packed row-major
 *      instead (rows of k rounded up to 64, 32-row strips) and each 64 x 64 tile runs as four
 *      32 x 32 blocks of 16 x 16 tdpbusd tiles, B's tiles loaded straight from the packed layout
 *      (16 groups of 16 columns x 4 k are one 1 KiB tile); the same epilogue follows.
 *   4. The epilogue applies the compensation -za*colsum[j] - zb[j]*rowsum[i] + k*za*zb[j] (the
 *      column part computed once per tile), then scale/bias/activation and the output
 *      conversion, 16 elements at a time with AVX-512 (a scalar epilogue cost about a third of the
 *      kernel's time at k = 1024); full 16-lane groups use plain stores, the masked forms only the
 *      last one. GELU costs ~60 FLOPs an output; on the AMX path it runs between the next tile's
 *      tile products (PendingEpilogue), on the AVX-512 ports the tiles leave idle.
 * Cost: 2 m n k integer ops; bytes: A once, B once per 64-row tile (n * Kp * ceil(m / 64)),
 * C once. The exact reference (one product at a time, in int64) is the Java test's
 * (QuantizedGemmTest), which checks every kernel this CPU runs (AMX, VNNI, AVX2) on odd shapes.
 */
#include <algorithm>
#include <atomic>

#include "cortado/quant.h"
#include "internal.h"
#include "quant_check.h"
#include "quant_internal.h"
#include "quant_math.h"
#include "scalar_ops.h"
#include "vmath.h"

namespace ct {
namespace {

constexpr int64_t kTileM = 64, kTileN = 64;
constexpr int64_t kStrip = 8;                                 // rows per interleaved strip of Ap

/* Byte offset of A[i, k] in the interleaved panel Ap (step 1). */
inline int64_t panel_index(int64_t kp, int64_t i, int64_t k) {
  return ((i / kStrip) * (kp / 4) + k / 4) * (kStrip * 4) + (i % kStrip) * 4 + k % 4;
}

inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

/* Byte offset of B[k, j] in the packed layout (quant.h). */
inline int64_t packed_index(int64_t kp, int64_t k, int64_t j) {
  return ((j / 16) * (kp / 4) + k / 4) * 64 + (j % 16) * 4 + k % 4;
}

/* A strip of 8 padded rows (row r at s + r * kp) into the panel's interleaved order
 * out[q][r][0..4) = s[r * kp + 4q ..]: four 4-byte groups of all 8 rows per step, as an 8 x 4
 * transpose of 32-bit words in AVX2 registers (rows r and r + 4 share a register, one per
 * 128-bit lane), so each output group of 32 bytes is one store. The row sums come from the same
 * registers: an output group holds one 4-byte word per row, so vpmaddubsw and vpmaddwd against
 * ones leave row r's partial sum in int32 lane r (a scalar byte loop over the rows just written by
 * the fill stalled on store forwarding: a third of the packing's time in the int8 CNN). */
void interleave_strip(const uint8_t* s, int64_t kp, uint8_t* out, int32_t* sums) {
  const int64_t groups = kp / 4;
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  __m256i total = _mm256_setzero_si256();
  int64_t q = 0;
  for (; q + 4 <= groups; q += 4) {
    __m256i a[4];
    for (int r = 0; r < 4; ++r)
      a[r] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)(s + r * kp + 4 * q))),
                                     _mm_loadu_si128((const __m128i*)(s + (r + 4) * kp + 4 * q)), 1);
    const __m256i t0 = _mm256_unpacklo_epi32(a[0], a[1]), t1 = _mm256_unpackhi_epi32(a[0], a[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(a[2], a[3]), t3 = _mm256_unpackhi_epi32(a[2], a[3]);
    const __m256i o0 = _mm256_unpacklo_epi64(t0, t2), o1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i o2 = _mm256_unpacklo_epi64(t1, t3), o3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i* o = (__m256i*)(out + q * kStrip * 4);
    _mm256_storeu_si256(o + 0, o0);
    _mm256_storeu_si256(o + 1, o1);
    _mm256_storeu_si256(o + 2, o2);
    _mm256_storeu_si256(o + 3, o3);
    // lanes (in register order) are rows 0, 1, 2, 3 | 4, 5, 6, 7 of group q..q+3; byte pairs
    // (at most 510) in int16, then the 4 bytes of a row's word in its int32 lane
    const __m256i pairs = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(o0, ones8), _mm256_maddubs_epi16(o1, ones8)),
                                           _mm256_add_epi16(_mm256_maddubs_epi16(o2, ones8), _mm256_maddubs_epi16(o3, ones8)));
    total = _mm256_add_epi32(total, _mm256_madd_epi16(pairs, ones16));
  }
  alignas(32) int32_t lane[kStrip];
  _mm256_store_si256((__m256i*)lane, total);
  for (int64_t r = 0; r < kStrip; ++r) sums[r] = lane[r];
  for (; q < groups; ++q)
    for (int64_t r = 0; r < kStrip; ++r) {
      std::memcpy(out + (q * kStrip + r) * 4, s + r * kp + 4 * q, 4);
      for (int b = 0; b < 4; ++b) sums[r] += s[r * kp + 4 * q + b];
    }
}

bool has_vnni() {
  static const bool has = __builtin_cpu_supports("avx512vnni");
  return has;
}

// ------------------------------------------------------------------ AVX-512 VNNI
/* c += a (uint8) . b (int8), four products per int32 lane, in place. GCC 12 compiles the
 * intrinsic _mm512_dpbusd_epi32 in an unrolled tile as a new register plus a move per
 * accumulator (and spilled two of the 16 to the stack): 16 moves per 16 vpdpbusd held the kernel
 * at ~75% of the VNNI peak. The asm ties the accumulator to its register. */
__attribute__((target("avx512f,avx512vnni"))) CT_INLINE void dpbusd(__m512i& c, __m512i a, __m512i b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(c) : "v"(a), "v"(b));
}

/* Rows 0..MR-1 of an Ap strip (ap at the first group) times columns j..j+31 (b0, b1). */
template <int MR>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void vnni_tile(const uint8_t* ap, const int8_t* b0,
                                                                       const int8_t* b1, int64_t groups, int32_t* acc,
                                                                       int64_t ldacc) {
  __m512i c[MR][2];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {  // each zero in its own register (the empty asm), none shared
    c[r][0] = _mm512_setzero_si512();
    c[r][1] = _mm512_setzero_si512();
    asm("" : "+v"(c[r][0]), "+v"(c[r][1]));
  }
  for (int64_t g = 0; g < groups; ++g) {
    const __m512i v0 = _mm512_loadu_si512((const void*)(b0 + g * 64));
    const __m512i v1 = _mm512_loadu_si512((const void*)(b1 + g * 64));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      int32_t a4;
      std::memcpy(&a4, ap + g * (kStrip * 4) + r * 4, 4);
      const __m512i a = _mm512_set1_epi32(a4);
      dpbusd(c[r][0], a, v0);
      dpbusd(c[r][1], a, v1);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_si512((void*)(acc + r * ldacc), c[r][0]);
    _mm512_storeu_si512((void*)(acc + r * ldacc + 16), c[r][1]);
  }
}

using VnniTile = void (*)(const uint8_t*, const int8_t*, const int8_t*, int64_t, int32_t*, int64_t);
const VnniTile kVnni[9] = {nullptr, vnni_tile<1>, vnni_tile<2>, vnni_tile<3>, vnni_tile<4>,
                           vnni_tile<5>, vnni_tile<6>, vnni_tile<7>, vnni_tile<8>};

// ------------------------------------------------------------------ AVX2 (exact 16-bit products)
/* Columns j..j+15 of one 16-column block: acc[r][0..15] = sum_g A4 . B4. */
template <int MR>
void avx2_tile(const uint8_t* ap, const int8_t* b, int64_t groups, int32_t* acc, int64_t ldacc) {
  // c[r][q]: columns 4q..4q+3, lanes (col, k0+k1), (col, k2+k3)
  __m256i c[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < 4; ++q) c[r][q] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    const __m256i lo = _mm256_loadu_si256((const __m256i*)(b + g * 64));
    const __m256i hi = _mm256_loadu_si256((const __m256i*)(b + g * 64 + 32));
    const __m256i w[4] = {_mm256_cvtepi8_epi16(_mm256_castsi256_si128(lo)), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(lo, 1)),
                          _mm256_cvtepi8_epi16(_mm256_castsi256_si128(hi)), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(hi, 1))};
    for (int r = 0; r < MR; ++r) {
      int32_t a4;
      std::memcpy(&a4, ap + g * (kStrip * 4) + r * 4, 4);
      // the 4 bytes as 4 int16 (zero-extended), repeated over the register
      const __m256i a = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(a4)));
      for (int q = 0; q < 4; ++q) c[r][q] = _mm256_add_epi32(c[r][q], _mm256_madd_epi16(a, w[q]));
    }
  }
  for (int r = 0; r < MR; ++r) {
    int32_t* o = acc + r * ldacc;
    for (int h = 0; h < 2; ++h) {
      // hadd pairs: [c0, c1, c4, c5 | c2, c3, c6, c7] of the 8 columns 8h..8h+7, then order them
      __m256i s = _mm256_hadd_epi32(c[r][2 * h], c[r][2 * h + 1]);
      s = _mm256_permute4x64_epi64(s, 0xD8);
      __m256i* p = (__m256i*)(o + 8 * h);
      _mm256_storeu_si256(p, s);
    }
  }
}

// ------------------------------------------------------------------ driver
struct Plan {
  const ct_qgemm_args* g;
  const uint8_t* ap;     // padded A: VNNI/AVX2 strips [m / 8][kp / 4][8][4]; AMX rows of ldp bytes
  const int32_t* rowsum; // [m] (AMX: only when B has zero points)
  int64_t kp, np;
  int64_t ldp;           // AMX: row stride of the panel (kq + 64)
};

/* int32 tile sums over all k for rows [i0, i0 + rows) and columns [j0, j0 + cols) (cols a
 * multiple of 32, inside the padded np), AVX2. */
void tile_sums_avx2(const Plan& p, int64_t i0, int64_t rows, int64_t j0, int64_t cols, int32_t* acc) {
  const int8_t* bp = (const int8_t*)p.g->b_packed;
  const int64_t groups = p.kp / 4;
  for (int64_t j = 0; j < cols; j += 32) {
    const int8_t* b0 = bp + packed_index(p.kp, 0, j0 + j);
    const int8_t* b1 = bp + packed_index(p.kp, 0, j0 + j + 16);
    for (int64_t i = 0; i < rows;) {
      const uint8_t* a = p.ap + panel_index(p.kp, i0 + i, 0);  // i0 and 8-row steps stay strip-aligned
      const int mr = rows - i >= 2 ? 2 : 1;
      for (int h = 0; h < 2; ++h) {
        if (mr == 2)
          avx2_tile<2>(a, h ? b1 : b0, groups, acc + i * cols + j + 16 * h, cols);
        else
          avx2_tile<1>(a, h ? b1 : b0, groups, acc + i * cols + j + 16 * h, cols);
      }
      i += mr;
    }
  }
}

/* The row-independent part of the compensation, k za zb[j] - za colsum[j], for the columns
 * [j0, j0 + cols) (cols <= kTileN) of a tile. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) void column_terms_avx512(const ct_qgemm_args& g, int64_t j0,
                                                                             int64_t cols, int32_t* colterm) {
  const int32_t* colsum = (const int32_t*)g.b_colsum;
  const int32_t* zb = (const int32_t*)g.b_zero_point;
  const __m512i za = _mm512_set1_epi32(g.a_zero_point), kza = _mm512_set1_epi32((int32_t)((uint32_t)g.k * (uint32_t)g.a_zero_point));
  const int64_t jn = std::min(cols, g.n - j0);
  for (int64_t j = 0; j < jn; j += 16) {
    const __mmask16 m = (__mmask16)(jn - j >= 16 ? 0xFFFF : (1u << (jn - j)) - 1);
    const __m512i zbj = zb ? _mm512_maskz_loadu_epi32(m, zb + j0 + j) : _mm512_setzero_si512();
    _mm512_store_si512((void*)(colterm + j), _mm512_sub_epi32(_mm512_mullo_epi32(kza, zbj),
                                                              _mm512_mullo_epi32(za, _mm512_maskz_loadu_epi32(m, colsum + j0 + j))));
  }
}

/* GELU (erf) or SiLU over n floats in place (n a multiple of 16), in the vectorized float32 forms
 * of vmath.h: gelu_erf_f32 (~60 FLOPs an element) and x sigmoid_f32(x) (~20). */
CT_AVX512 void activate_avx512(float* v, int64_t n, int act) {
  if (act == CT_ACTIVATION_GELU) {
    for (int64_t i = 0; i < n; ++i) v[i] = gelu_erf_f32(v[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) v[i] = v[i] * sigmoid_f32(v[i]);
  }
}

/* One 16-lane group of epilogue values f into C at (row, col): float32, bfloat16 (round to
 * nearest even, NaN made quiet: the integer form, as qm::bf16_rne; vcvtneps2bf16 would flush
 * subnormals) or int8 / uint8 (quantize_int's rounding, clamping and NaN rule). Full groups use
 * plain stores, the last one the masked forms (which cost more on AMD). */
CT_AVX512 CT_INLINE void store_group(const ct_qgemm_args& g, int64_t row, int64_t col, __m512 f, __mmask16 m) {
  const bool full = m == 0xFFFF;
  if (g.out_dtype == CT_F32) {
    float* o = (float*)g.c + row * g.ldc + col;
    if (full)
      _mm512_storeu_ps(o, f);
    else
      _mm512_mask_storeu_ps(o, m, f);
    return;
  }
  if (g.out_dtype == CT_BF16) {
    const __m512i u = _mm512_castps_si512(f);
    const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
    const __m256i half = _mm512_cvtepi32_epi16(r);
    uint16_t* o = (uint16_t*)g.c + row * g.ldc + col;
    if (full)
      _mm256_storeu_si256((__m256i*)o, half);
    else
      _mm256_mask_storeu_epi16(o, m, half);
    return;
  }
  const bool is_u8 = g.out_dtype == CT_U8;
  const int32_t qmin = is_u8 ? 0 : -128, qmax = is_u8 ? 255 : 127, ozp = g.out_zero_point;
  const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
  __m512 r = _mm512_roundscale_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps((float)((int64_t)qmin - ozp))), _mm512_set1_ps((float)((int64_t)qmax - ozp)));
  __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(r), _mm512_set1_epi32(ozp));
  q = _mm512_mask_mov_epi32(q, nan, _mm512_set1_epi32(ozp));
  q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(qmin)), _mm512_set1_epi32(qmax));
  const __m128i bytes = _mm512_cvtepi32_epi8(q);  // vpmovdb to a register, then one store
  uint8_t* o = (uint8_t*)g.c + row * g.ldc + col;
  if (full)
    _mm_storeu_si128((__m128i*)o, bytes);
  else
    _mm_mask_storeu_epi8(o, m, bytes);
}

/* The epilogue of rows [i0, i0 + rows) x columns [j0, j0 + cols), 16 columns per step, from the
 * int32 sums acc (row stride ldacc) and the column terms: the scalar one's arithmetic, lane by
 * lane (the compensation in wrapping int32, one fma, ReLU as x < 0 ? 0 : x, which like the scalar
 * form keeps NaN and -0, and the output conversion of store_group). GELU and SiLU take a row's
 * values (at most kTileN) through a buffer in L1 and activate_avx512. */
CT_AVX512 void epilogue_avx512(const Plan& p, const int32_t* colterm, int64_t i0, int64_t rows, int64_t j0, int64_t cols,
                               const int32_t* acc, int64_t ldacc) {
  const ct_qgemm_args& g = *p.g;
  const int32_t* zb = (const int32_t*)g.b_zero_point;
  const float* scale = (const float*)g.scale;
  const float* bias = (const float*)g.bias;
  const int64_t jn = std::min(cols, g.n - j0);
  const bool relu = g.activation == CT_ACTIVATION_RELU;
  const bool buffered = g.activation != CT_ACTIVATION_NONE && !relu;
  alignas(64) float buf[kTileN];
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t row = i0 + i;
    const __m512i rs = _mm512_set1_epi32(zb ? p.rowsum[row] : 0);
    for (int64_t j = 0; j < jn; j += 16) {
      const __mmask16 m = (__mmask16)(jn - j >= 16 ? 0xFFFF : (1u << (jn - j)) - 1);
      const int64_t col = j0 + j;
      __m512i v = _mm512_add_epi32(_mm512_loadu_si512((const void*)(acc + i * ldacc + j)),
                                   _mm512_loadu_si512((const void*)(colterm + j)));
      if (zb) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(m, zb + col), rs));
      if (g.out_dtype == CT_I32) {
        int32_t* o = (int32_t*)g.c + row * g.ldc + col;
        if (m == 0xFFFF)
          _mm512_storeu_si512((void*)o, v);
        else
          _mm512_mask_storeu_epi32(o, m, v);
        continue;
      }
      const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + col) : _mm512_setzero_ps();
      __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_maskz_loadu_ps(m, scale + col), b);
      if (relu) f = _mm512_max_ps(_mm512_setzero_ps(), f);  // vmaxps returns its second operand for NaN and +-0
      if (buffered)
        _mm512_store_ps(buf + j, f);
      else
        store_group(g, row, col, f, m);
    }
    if (!buffered || g.out_dtype == CT_I32) continue;
    const int64_t groups = (jn + 15) / 16;
    activate_avx512(buf, groups * 16, g.activation);
    for (int64_t q = 0; q < groups; ++q) {
      const int64_t j = q * 16;
      store_group(g, row, j0 + j, _mm512_load_ps(buf + j), (__mmask16)(jn - j >= 16 ? 0xFFFF : (1u << (jn - j)) - 1));
    }
  }
}

// ------------------------------------------------------------------ AMX-INT8
/* The AMX path (tdpbusd: a 16 x 16 int32 tile C += A (16 rows x 64 uint8) . B (64 k x 16 columns
 * int8, stored as 16 rows of 16 columns x 4 k: exactly one 16-column block of the packed B over
 * 16 groups, so B tiles load straight from the packed matrix with a 64-byte stride).
 * A's panel is row-major, rows of kq = k rounded up to 64 (zeros after k), kAmxStrip rows per
 * strip (zero rows past m), row stride ldp = kq + 64: with a power-of-two stride the 16 rows of an
 * A tile would fall into a few L1 sets. A 32 x 32 block of C lives in tiles 0 1 / 2 3, from A
 * tiles 4 (rows 0-15), 5 (16-31) and B tiles 6 (columns 0-15), 7 (16-31): per k-block of 64,
 * 4 KiB of loads for 4 tdpbusd = 65536 multiply-adds. A 64 x 64 output tile walks k in cache
 * blocks of kAmxKcb k-blocks (B's 32-column micro-panel, 16 KiB, stays in L1 across the row
 * blocks), its int32 block sums in the per-thread accumulator (stored and reloaded per cache
 * block); its epilogue then runs during the thread's next tile (PendingEpilogue). The tiles are
 * visited in column groups whose B stays in L2 (qgemm_rows). When kp is not a multiple of 64, B's last k-block has fewer
 * than 16 groups: they are copied into a zeroed 1 KiB tile per 16 columns (btail), so that no
 * load reads past the packed matrix (A's matching bytes are zero). */
constexpr int64_t kAmxStrip = 32;  // rows per packed strip = rows of a C block (two A tiles)
constexpr int64_t kAmxKcb = 8;     // k-blocks of 64 per cache block

/* The sum of n bytes (n a multiple of 64): vpsadbw against zero, 8 partial sums per register. */
__attribute__((target("avx512f,avx512bw"))) int32_t byte_sum(const uint8_t* s, int64_t n) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i acc = zero;
  for (int64_t q = 0; q < n; q += 64) acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_loadu_si512((const void*)(s + q)), zero));
  return (int32_t)_mm512_reduce_add_epi64(acc);
}

/* Step 1 of the AMX path for strip `strip` (kAmxStrip rows): the rows straight into the panel,
 * zeros after k and for the rows past the end, and the row sums when B has zero points. */
void pack_strip_amx(const ct_qgemm_args& g, int64_t r0, int64_t kq, int64_t ldp, int64_t strip, const QgemmRowFill& fill,
                    uint8_t* ap, int32_t* rowsum) {
  const int64_t i0 = strip * kAmxStrip, n = std::min(g.m - i0, kAmxStrip);
  uint8_t* dst = ap + i0 * ldp;
  if (g.k > 0) fill(r0 + i0, n, dst, ldp);
  for (int64_t r = 0; r < kAmxStrip; ++r) {
    if (r >= n)
      std::memset(dst + r * ldp, 0, (size_t)kq);
    else
      std::memset(dst + r * ldp + g.k, 0, (size_t)(kq - g.k));
  }
  if (g.b_zero_point)
    for (int64_t r = 0; r < n; ++r) rowsum[i0 + r] = byte_sum(dst + r * ldp, kq);
}

/* The epilogue of a thread's previous AMX tile, run a few rows at a time between the k-steps of
 * its next tile, so that the epilogue's C stores (which miss L2 when C is larger) overlap the tile
 * products instead of following them: run after each tile, it took 28% of a 1024^3 GEMM with int32
 * output on one thread. flush() runs what is left. */
struct PendingEpilogue {
  const Plan* p = nullptr;
  const int32_t* acc = nullptr;
  int64_t i0 = 0, rows = 0, j0 = 0, cols = 0, next = 0;
  alignas(64) int32_t colterm[kTileN];

  void run(int64_t n) {
    const int64_t e = std::min(rows, next + n);
    if (next < e) epilogue_avx512(*p, colterm, i0 + next, e - next, j0, cols, acc + next * kTileN, kTileN);
    next = e;
  }
  void flush() { run(rows); }
  void set(const Plan& plan, int64_t ti0, int64_t trows, int64_t tj0, int64_t tcols, const int32_t* tacc) {
    p = &plan, acc = tacc, i0 = ti0, rows = trows, j0 = tj0, cols = tcols, next = 0;
    column_terms_avx512(*plan.g, tj0, tcols, colterm);
  }
};

/* The int32 sums of tile (i0, j0) into acc (kTileM x kTileN), running `pend` (the previous tile's
 * epilogue) along the way; leaves this tile's epilogue in `pend`. */
CT_AMX void amx_tile(const Plan& p, int64_t i0, int64_t rows, int64_t j0, int64_t cols, int32_t* acc, int8_t* btail,
                     PendingEpilogue& pend) {
  const int8_t* bp = (const int8_t*)p.g->b_packed;
  const int64_t groups = p.kp / 4, full = groups / 16, kb = (groups + 15) / 16, tail = groups - full * 16;
  if (tail)
    for (int64_t jb = 0; jb < cols / 16; ++jb) {
      std::memcpy(btail + jb * 1024, bp + (((j0 / 16) + jb) * groups + full * 16) * 64, (size_t)(tail * 64));
      std::memset(btail + jb * 1024 + tail * 64, 0, (size_t)((16 - tail) * 64));
    }
  constexpr int64_t ldc = kTileN * sizeof(int32_t);
  const int64_t ldp = p.ldp;
  const int64_t steps = kb * (cols / 32) * ((rows + 31) / 32);
  const int64_t per_step = (pend.rows - pend.next + steps - 1) / steps;  // rows of the previous epilogue per k-step
  for (int64_t b0 = 0; b0 < kb; b0 += kAmxKcb) {
    const int64_t b1 = std::min(kb, b0 + kAmxKcb);
    for (int64_t j = 0; j < cols; j += 32) {
      const int8_t* bl = bp + ((j0 + j) / 16) * groups * 64;  // columns j..j+15; j+16.. one block further
      const int8_t* bh = bl + groups * 64;
      for (int64_t i = 0; i < rows; i += 32) {
        const uint8_t* a = p.ap + (i0 + i) * ldp;
        int32_t* c = acc + i * kTileN + j;
        if (b0 == 0) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
        } else {
          _tile_loadd(0, c, ldc);
          _tile_loadd(1, c + 16, ldc);
          _tile_loadd(2, c + 16 * kTileN, ldc);
          _tile_loadd(3, c + 16 * kTileN + 16, ldc);
        }
        for (int64_t b = b0; b < b1; ++b) {
          const int8_t* t0 = b < full ? bl + b * 1024 : btail + (j / 16) * 1024;
          const int8_t* t1 = b < full ? bh + b * 1024 : btail + (j / 16 + 1) * 1024;
          _tile_loadd(4, a + 64 * b, ldp);
          _tile_loadd(6, t0, 64);
          _tile_dpbusd(0, 4, 6);
          _tile_loadd(7, t1, 64);
          _tile_dpbusd(1, 4, 7);
          _tile_loadd(5, a + 16 * ldp + 64 * b, ldp);
          _tile_dpbusd(2, 5, 6);
          _tile_dpbusd(3, 5, 7);
          pend.run(per_step);
        }
        _tile_stored(0, c, ldc);
        _tile_stored(1, c + 16, ldc);
        _tile_stored(2, c + 16 * kTileN, ldc);
        _tile_stored(3, c + 16 * kTileN + 16, ldc);
      }
    }
  }
  pend.flush();
  pend.set(p, i0, rows, j0, cols, acc);
}

/* Compensation and epilogue of one tile into C (the AVX2 path; acc's row stride is cols). */
void epilogue_scalar(const Plan& p, int64_t i0, int64_t rows, int64_t j0, int64_t cols, const int32_t* acc) {
  const ct_qgemm_args& g = *p.g;
  const int32_t* colsum = (const int32_t*)g.b_colsum;
  const int32_t* zb = (const int32_t*)g.b_zero_point;
  const float* scale = (const float*)g.scale;
  const float* bias = (const float*)g.bias;
  const uint32_t za = (uint32_t)g.a_zero_point, kk = (uint32_t)g.k;
  const int64_t jn = std::min(cols, g.n - j0);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t row = i0 + i;
    for (int64_t j = 0; j < jn; ++j) {
      const int64_t col = j0 + j;
      const uint32_t zbj = zb ? (uint32_t)zb[col] : 0u;
      // modular int32 arithmetic: the true value fits in int32 (k <= 32768), so wrapping is exact
      const uint32_t s = (uint32_t)acc[i * cols + j] - za * (uint32_t)colsum[col] - zbj * (uint32_t)p.rowsum[row] +
                         kk * za * zbj;
      const int32_t v = (int32_t)s;
      if (g.out_dtype == CT_I32) {
        ((int32_t*)g.c)[row * g.ldc + col] = v;
        continue;
      }
      const float f = sop::activation(g.activation, std::fma((float)v, scale[col], bias ? bias[col] : 0.0f));
      if (g.out_dtype == CT_F32) {
        ((float*)g.c)[row * g.ldc + col] = f;
      } else if (g.out_dtype == CT_BF16) {
        ((uint16_t*)g.c)[row * g.ldc + col] = qm::bf16_rne(f);
      } else if (g.out_dtype == CT_I8) {
        ((int8_t*)g.c)[row * g.ldc + col] = (int8_t)qm::quantize_int(f, 1.0f, g.out_zero_point, -128, 127);
      } else {
        ((uint8_t*)g.c)[row * g.ldc + col] = (uint8_t)qm::quantize_int(f, 1.0f, g.out_zero_point, 0, 255);
      }
    }
  }
}

/* The kernel of ct_cpu_qgemm (quant.h): a forced one while it can run (AVX-512 may have been
 * switched off since), else AMX where it runs, else VNNI, else AVX2. */
std::atomic<int> g_qgemm_forced{CT_QGEMM_AUTO};

bool qgemm_kernel_runs(int kernel) {
  switch (kernel) {
    case CT_QGEMM_AUTO:
    case CT_QGEMM_AVX2: return true;
    case CT_QGEMM_VNNI: return use_avx512() && has_vnni();
    case CT_QGEMM_AMX: return use_amx_int8();
    default: return false;
  }
}

/* The kernel for a GEMM of m rows. AUTO: below 8 rows AMX's 32-row blocks are mostly padding,
 * and VNNI measured faster (m = 1 and 4 at n = 1536, k = 384: 14 vs 10 and 14 vs 13 us; m = 8:
 * AMX 16, VNNI 19 us). */
int qgemm_kernel(int64_t m) {
  const int forced = g_qgemm_forced.load(std::memory_order_relaxed);
  if (forced != CT_QGEMM_AUTO && qgemm_kernel_runs(forced)) return forced;
  const bool vnni = use_avx512() && has_vnni();
  if (use_amx_int8() && (m >= 8 || !vnni)) return CT_QGEMM_AMX;
  return vnni ? CT_QGEMM_VNNI : CT_QGEMM_AVX2;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_qgemm_pack_b(const int8_t* b, int64_t k, int64_t n, int64_t ldb_k, int64_t ldb_n,
                                   int8_t* packed, int32_t* colsum, int64_t stream) {
  static const char* fn = "ct_cpu_qgemm_pack_b";
  CT_TRY
  if (k < 0 || n < 0 || k > 32768 || ldb_k < 0 || ldb_n < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: k=%lld (at most 32768), n=%lld, strides %lld/%lld", fn, (long long)k,
                (long long)n, (long long)ldb_k, (long long)ldb_n);
  const int64_t kp = round_up(k, 4), np = round_up(n, 32);
  if (n == 0) return CT_OK;  // k == 0 still writes the zero column sums
  if (!colsum || (kp > 0 && !packed) || (k * n > 0 && !b)) return fail(CT_ERR_INVALID_ARG, "%s: a pointer is NULL", fn);
  parallel_range(np / 16, kp * 16, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk)
      for (int64_t jj = 0; jj < 16; ++jj) {
        const int64_t j = blk * 16 + jj;
        int32_t s = 0;
        for (int64_t kk = 0; kk < kp; ++kk) {
          const int8_t v = (j < n && kk < k) ? b[kk * ldb_k + j * ldb_n] : 0;
          packed[packed_index(kp, kk, j)] = v;
          s += v;
        }
        if (j < n) colsum[j] = s;
      }
  });
  return CT_OK;
  CT_CATCH(fn)
}

/* A tile on the VNNI path: each 8 x 32 register tile over the whole k, then its epilogue at
 * once, so that its C stores (missing cache for outputs larger than L2) drain while the next
 * register tile computes. Each register tile runs the whole k: its 32 columns of B (kp * 32
 * bytes) stay in L2 across the tile's 8 strips and stream in as 2 lines per 16 vpdpbusd, well
 * within L2's bandwidth. The earlier forms, k blocked by 256 with the accumulators loaded and
 * stored per block, and the epilogue run once per 64 x 64 tile, measured 5-10% slower at
 * k = 1024 (a profile had 7% of the time in the epilogue's stores). */
void vnni_tile_with_epilogue(const Plan& p, int64_t i0, int64_t rows, int64_t j0, int64_t cols, int32_t* acc) {
  const int8_t* bp = (const int8_t*)p.g->b_packed;
  const int64_t groups = p.kp / 4;
  alignas(64) int32_t colterm[kTileN];
  column_terms_avx512(*p.g, j0, cols, colterm);
  for (int64_t j = 0; j < cols; j += 32) {
    const int8_t* b0 = bp + packed_index(p.kp, 0, j0 + j);
    const int8_t* b1 = bp + packed_index(p.kp, 0, j0 + j + 16);
    for (int64_t i = 0; i < rows; i += kStrip) {
      const int mr = (int)std::min<int64_t>(kStrip, rows - i);
      kVnni[mr](p.ap + panel_index(p.kp, i0 + i, 0), b0, b1, groups, acc + i * cols + j, cols);
      epilogue_avx512(p, colterm + j, i0 + i, mr, j0 + j, 32, acc + i * cols + j, cols);
    }
  }
}

/* Step 1 of a strip: its rows from `fill`, their sums, zeros after k, interleaved into the panel
 * (rows is one thread's kStrip x kp scratch). */
void pack_strip(const ct_qgemm_args& g, int64_t r0, int64_t kp, int64_t strip, const QgemmRowFill& fill, uint8_t* rows,
                uint8_t* ap, int32_t* rowsum) {
  const int64_t i0 = strip * kStrip, n = std::min(g.m - i0, kStrip);
  fill(r0 + i0, n, rows, kp);
  for (int64_t r = 0; r < kStrip; ++r) {  // zeros after k, and for the rows past the end
    if (r >= n)
      std::memset(rows + r * kp, 0, (size_t)kp);
    else
      std::memset(rows + r * kp + g.k, 0, (size_t)(kp - g.k));
  }
  int32_t sums[kStrip];
  interleave_strip(rows, kp, ap + panel_index(kp, i0, 0), sums);
  for (int64_t r = 0; r < n; ++r) rowsum[i0 + r] = sums[r];
}

/* Step 1 for a chunk of rows whose panel is about 1 MiB (at least 4096 rows), then steps 2-4
 * over the chunk's tiles; `fill` supplies the rows. All chunks run in one parallel region, the
 * phases separated by barriers: a region per phase (as before) woke the other thread twice per
 * chunk, and the second conv of the MNIST CNN (k = 288, 49 chunks) spent ~15% of its samples in
 * those wake-ups on two threads. */
void ct::qgemm_rows(const ct_qgemm_args& full, const QgemmRowFill& fill) {
  const int64_t kChunkRows = std::max<int64_t>(4096, ((int64_t)1 << 20) / round_up(std::max<int64_t>(full.k, 1), 4) / kTileM * kTileM);
  if (full.m == 0 || full.n == 0) return;
  const int64_t kp = round_up(full.k, 4), np = round_up(full.n, 32);
  const int64_t out_bytes = qgemm_out_bytes(full.out_dtype);
  const int64_t chunk = std::min(full.m, kChunkRows);
  const int64_t max_tiles = ((chunk + kTileM - 1) / kTileM) * ((np + kTileN - 1) / kTileN);
  // work: the multiply-adds (k / 64 per output, in the register tiles' units), the epilogue (about
  // one unit per output) and the packing: a first layer's k of 9 to 27 is all epilogue, and
  // counting only k kept its GEMM on one thread
  int nt = threads_for(chunk * np * (std::max<int64_t>(kp, 1) / 64 + 1));
  if (nt > max_tiles) nt = (int)max_tiles;
  if (nt < 1) nt = 1;
  const int kernel = qgemm_kernel(full.m);
  const bool amx = kernel == CT_QGEMM_AMX, vnni = kernel == CT_QGEMM_VNNI;
  // AMX: row-major panel (kq = k rounded up to 64, stride kq + 64, strips of 32 rows) filled in place
  const int64_t kq = round_up(kp, 64), ldp = amx ? kq + 64 : kp, strip_rows = amx ? kAmxStrip : kStrip;
  HostBuffer<uint8_t> ap(std::max<int64_t>(1, round_up(chunk, strip_rows) * ldp));
  HostBuffer<uint8_t> row_scratch(amx ? 0 : std::max<int64_t>(1, (int64_t)nt * kStrip * kp));  // one strip per thread
  HostBuffer<int8_t> btail(amx ? (int64_t)nt * (kTileN / 16) * 1024 : 0);
  HostBuffer<int32_t> rowsum(chunk);
  // one tile accumulator per thread (AMX: two, the previous tile's epilogue runs during the next tile)
  const int64_t acc_per_thread = (amx ? 2 : 1) * kTileM * kTileN;
  HostBuffer<int32_t> acc(nt * acc_per_thread);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    uint8_t* rows = amx ? nullptr : row_scratch.data() + (int64_t)t * kStrip * kp;
    int32_t* mine = acc.data() + (int64_t)t * acc_per_thread;
    PendingEpilogue pend;
    int64_t parity = 0;
    if (amx) amx_begin();
    for (int64_t r0 = 0; r0 < full.m; r0 += chunk) {
      ct_qgemm_args g = full;
      g.m = std::min(chunk, full.m - r0);
      g.c = (char*)full.c + r0 * full.ldc * out_bytes;
      const int64_t strips = (g.m + strip_rows - 1) / strip_rows;
      const int64_t per = strips / T, rem = strips % T, s0 = t * per + std::min<int64_t>(t, rem);
      for (int64_t strip = s0; strip < s0 + per + (t < rem ? 1 : 0); ++strip) {
        if (amx)
          pack_strip_amx(g, r0, kq, ldp, strip, fill, ap.data(), rowsum.data());
        else
          pack_strip(g, r0, kp, strip, fill, rows, ap.data(), rowsum.data());
      }
#pragma omp barrier
      Plan p{&g, ap.data(), rowsum.data(), kp, np, ldp};
      const int64_t tm = (g.m + kTileM - 1) / kTileM, tn = (np + kTileN - 1) / kTileN;
      // AMX: the tiles in column groups whose B (about 512 KiB) stays in L2 while every row tile
      // passes over it, a group at a time (row-major order streamed all of B from L3 once per 64
      // rows at 2048^3); VNNI/AVX2: row-major (gt = tn)
      const int64_t gt = amx ? std::max<int64_t>(1, std::min(tn, ((int64_t)512 << 10) / (kTileN * kp))) : tn;
      const int64_t full_groups = tn / gt;
      for (int64_t tile = t; tile < tm * tn; tile += T) {
        const int64_t grp = std::min(tile / (tm * gt), full_groups), r = tile - grp * tm * gt;
        const int64_t width = grp < full_groups ? gt : tn - full_groups * gt;
        const int64_t i0 = (r / width) * kTileM, j0 = (grp * gt + r % width) * kTileN;
        const int64_t tile_rows = std::min(kTileM, g.m - i0), cols = std::min(kTileN, np - j0);
        if (amx) {
          amx_tile(p, i0, tile_rows, j0, cols, mine + (parity ^= 1) * kTileM * kTileN,
                   btail.data() + (int64_t)t * (kTileN / 16) * 1024, pend);
        } else if (vnni) {
          vnni_tile_with_epilogue(p, i0, tile_rows, j0, cols, mine);
        } else {
          tile_sums_avx2(p, i0, tile_rows, j0, cols, mine);
          epilogue_scalar(p, i0, tile_rows, j0, cols, mine);
        }
      }
      if (amx) pend.flush();  // before the chunk's plan and row sums go
#pragma omp barrier  // the next chunk's packing overwrites the panel
    }
    if (amx) amx_end();
  }
}

extern "C" int ct_cpu_qgemm(const ct_qgemm_args* args, int64_t stream) {
  static const char* fn = "ct_cpu_qgemm";
  CT_TRY
  qm::Msg m;
  if (int st = qm::check_qgemm(fn, args, &m)) return fail(st, "%s", m.text);
  const ct_qgemm_args& g = *args;
  const uint8_t* a = (const uint8_t*)g.a;
  qgemm_rows(g, [&](int64_t i0, int64_t rows, uint8_t* dst, int64_t ld) {
    if (g.k > 0)
      for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * ld, a + (i0 + r) * g.lda, (size_t)g.k);
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_qgemm_kernel(void) { return ct::qgemm_kernel(INT64_MAX); }

extern "C" int ct_cpu_set_qgemm_kernel(int kernel) {
  if (kernel < CT_QGEMM_AUTO || kernel > CT_QGEMM_AMX)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_set_qgemm_kernel: kernel=%d is not one of CT_QGEMM_*", kernel);
  if (!ct::qgemm_kernel_runs(kernel))
    return ct::fail(CT_ERR_UNSUPPORTED, "ct_cpu_set_qgemm_kernel: kernel %s cannot run on this CPU%s",
                    kernel == CT_QGEMM_AMX ? "AMX" : "VNNI", ct::use_avx512() ? "" : " (AVX-512 is switched off)");
  ct::g_qgemm_forced.store(kernel, std::memory_order_relaxed);
  return CT_OK;
}
