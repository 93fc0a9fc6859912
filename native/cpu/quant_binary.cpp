/*
 * Binary (1-bit) GEMM and convolution, CPU (quant_binary.h): signs packed 64 per word, dot
 * products as k - 2 popcount(a XOR b), XNOR-Net scaling in the epilogue.
 *
 * GEMM algorithm: threads split the n columns; each takes blocks of 64 rows of b (64 * kw words,
 * 32 KiB at k = 4096: L1 resident) and walks all rows of a in steps of 4 against them in 4 x 4
 * register tiles. AVX-512 VPOPCNTDQ tile: per 8 words of k, 4 loads of a, 4 of b, 16 XOR +
 * VPOPCNTQ + VPADDQ (8192 sign multiply-adds), 64-bit lane accumulators summed at the end; the
 * last 1 to 8 words are a masked tail that also clears the bits past k (all 24 operands stay in
 * registers: see add_popcount for what GCC made of the plain form); the epilogue sums two rows'
 * 8 accumulators in one reduction tree (unpack + shuffle_i64x2) and stores 4 + 4 floats. The
 * scalar path (the reference, and the fallback on CPUs without VPOPCNTDQ) does the same tile one
 * word at a time with popcnt.
 * Convolution: threads split the output rows (batch * oh); per output pixel the taps inside the
 * image are gathered (pointer and weight offset), then 4 output channels at a time accumulate
 * popcount(x XOR w) over the taps' words, one x load per 4 weight words.
 * Cost: see the header; 3 vector ops per 512 sign products, all in the ALU pipes: on a Zen 4 core
 * the 4096^3 GEMM ran at 0.9 T products/s, 16.8x our float32 matmul (benchmarks.md, run X).
 */
#include <algorithm>
#include <atomic>
#include <vector>

#include "cortado/quant_binary.h"
#include "internal.h"
#include "biper_math.h"
#include "quant_weight_check.h"

namespace ct {
namespace {

inline int64_t words(int64_t k) { return (k + 63) / 64; }
/* The valid bits of the last word of a row of k bits (all 64 when k % 64 == 0). */
inline uint64_t tail_mask(int64_t k) { return k % 64 == 0 ? ~0ull : (1ull << (k % 64)) - 1; }
/* Word w of a byte string (unaligned load). */
inline uint64_t word(const uint64_t* p, int64_t w) {
  uint64_t v;
  std::memcpy(&v, p + w, 8);
  return v;
}

bool has_vpopcntdq() {
  static const bool has = __builtin_cpu_supports("avx512vpopcntdq");
  return has;
}

inline void store_out(const ct_bgemm_args& g, int64_t i, int64_t j, int64_t pop) {
  float v = (float)(g.k - 2 * pop);
  if (g.alpha) v *= ((const float*)g.alpha)[j];
  if (g.beta) v *= ((const float*)g.beta)[i];
  ((float*)g.y)[i * g.n + j] = v;
}

// ------------------------------------------------------------------ scalar (reference / fallback)
template <int MR, int NR>
void tile_scalar(const ct_bgemm_args& g, int64_t i0, int64_t j0) {
  const int64_t kw = words(g.k);
  const uint64_t* a = (const uint64_t*)g.a + i0 * kw;
  const uint64_t* b = (const uint64_t*)g.b + j0 * kw;
  const uint64_t last = tail_mask(g.k);
  int64_t pop[MR][NR] = {};
  for (int64_t w = 0; w < kw; ++w) {
    const uint64_t keep = w == kw - 1 ? last : ~0ull;
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < NR; ++c) pop[r][c] += __builtin_popcountll((word(a, r * kw + w) ^ word(b, c * kw + w)) & keep);
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) store_out(g, i0 + r, j0 + c, pop[r][c]);
}

// ------------------------------------------------------------------ AVX-512 VPOPCNTDQ
#define CT_AVX512_POPCNT \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vpopcntdq,prefer-vector-width=512")))

/* Lane i of the result = the sum of the 8 lanes of c_i: pairwise lane sums (unpack), then
 * 128-bit block sums (shuffle_i64x2) twice. */
CT_AVX512_POPCNT CT_INLINE __m512i pairs(__m512i x, __m512i y) {
  return _mm512_add_epi64(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
}
CT_AVX512_POPCNT CT_INLINE __m512i blocks(__m512i x, __m512i y) {
  return _mm512_add_epi64(_mm512_shuffle_i64x2(x, y, 0x88), _mm512_shuffle_i64x2(x, y, 0xDD));
}
CT_AVX512_POPCNT CT_INLINE __m512i sum8(__m512i c0, __m512i c1, __m512i c2, __m512i c3, __m512i c4, __m512i c5,
                                        __m512i c6, __m512i c7) {
  return blocks(blocks(pairs(c0, c1), pairs(c2, c3)), blocks(pairs(c4, c5), pairs(c6, c7)));
}

/* acc += popcount(x): vpopcntq into a temporary, vpaddq in place (asm: GCC 12 kept the 16
 * accumulators of the 4 x 4 tile on the stack, a store per accumulator per step, and copied a
 * register before each vpternlogq). */
CT_AVX512_POPCNT CT_INLINE void add_popcount(__m512i& acc, __m512i x) {
  __m512i t;
  asm("vpopcntq %1, %0" : "=v"(t) : "v"(x));
  asm("vpaddq %1, %0, %0" : "+v"(acc) : "v"(t));
}

template <int MR, int NR>
CT_AVX512_POPCNT void tile_popcnt(const ct_bgemm_args& g, int64_t i0, int64_t j0) {
  const int64_t kw = words(g.k);
  const uint64_t* a = (const uint64_t*)g.a + i0 * kw;
  const uint64_t* b = (const uint64_t*)g.b + j0 * kw;
  __m512i acc[MR][NR];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_si512();
  // whole chunks of 8 words: vpxorq, vpopcntq, vpaddq per pair (3 ops per 512 sign products)
  const int64_t whole = (kw - 1) / 8 * 8;  // the last chunk (1 to 8 words) is the masked tail
  for (int64_t w = 0; w < whole; w += 8) {
    __m512i av[MR], bv[NR];
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      av[r] = _mm512_loadu_si512((const void*)(a + r * kw + w));
      asm("" : "+v"(av[r]));  // held in a register: GCC otherwise reloaded it for every pair
    }
#pragma GCC unroll 4
    for (int c = 0; c < NR; ++c) {
      bv[c] = _mm512_loadu_si512((const void*)(b + c * kw + w));
      asm("" : "+v"(bv[c]));
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NR; ++c) add_popcount(acc[r][c], _mm512_xor_si512(av[r], bv[c]));
  }
  {
    // the tail keeps only the row's valid words and, in its last word, the valid bits
    const int64_t w = whole;
    const __mmask8 mask = (__mmask8)((1u << (kw - w)) - 1);
    const __m512i keep = _mm512_mask_set1_epi64(_mm512_set1_epi64(-1), (__mmask8)(1u << ((kw - 1) % 8)), (long long)tail_mask(g.k));
    __m512i av[MR], bv[NR];
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) av[r] = _mm512_maskz_loadu_epi64(mask, a + r * kw + w);
#pragma GCC unroll 4
    for (int c = 0; c < NR; ++c) bv[c] = _mm512_maskz_loadu_epi64(mask, b + c * kw + w);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NR; ++c) add_popcount(acc[r][c], _mm512_ternarylogic_epi64(av[r], bv[c], keep, 0x28));
  }
  if constexpr (MR == 4 && NR == 4) {
    // two rows at a time: their 8 accumulators summed into one vector (21 instructions instead of
    // 8 horizontal reductions), then k - 2 pop, scaled and stored as 4 + 4 floats
    const float* alpha = (const float*)g.alpha;
    const float* beta = (const float*)g.beta;
    const __m256 av = alpha ? _mm256_broadcast_ps((const __m128*)(alpha + j0)) : _mm256_set1_ps(1.0f);
#pragma GCC unroll 2
    for (int r = 0; r < 4; r += 2) {
      const __m512i pop = sum8(acc[r][0], acc[r][1], acc[r][2], acc[r][3], acc[r + 1][0], acc[r + 1][1], acc[r + 1][2],
                               acc[r + 1][3]);
      __m256 v = _mm512_cvtepi64_ps(_mm512_sub_epi64(_mm512_set1_epi64(g.k), _mm512_slli_epi64(pop, 1)));
      if (alpha) v = _mm256_mul_ps(v, av);
      if (beta) v = _mm256_mul_ps(v, _mm256_set_m128(_mm_set1_ps(beta[i0 + r + 1]), _mm_set1_ps(beta[i0 + r])));
      float* y = (float*)g.y + (i0 + r) * g.n + j0;
      _mm_storeu_ps(y, _mm256_castps256_ps128(v));
      _mm_storeu_ps(y + g.n, _mm256_extractf128_ps(v, 1));
    }
  } else {
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NR; ++c) store_out(g, i0 + r, j0 + c, _mm512_reduce_add_epi64(acc[r][c]));
  }
}

using Tile = void (*)(const ct_bgemm_args&, int64_t, int64_t);
const Tile kScalar[4][4] = {{tile_scalar<1, 1>, tile_scalar<1, 2>, tile_scalar<1, 3>, tile_scalar<1, 4>},
                            {tile_scalar<2, 1>, tile_scalar<2, 2>, tile_scalar<2, 3>, tile_scalar<2, 4>},
                            {tile_scalar<3, 1>, tile_scalar<3, 2>, tile_scalar<3, 3>, tile_scalar<3, 4>},
                            {tile_scalar<4, 1>, tile_scalar<4, 2>, tile_scalar<4, 3>, tile_scalar<4, 4>}};
const Tile kPopcnt[4][4] = {{tile_popcnt<1, 1>, tile_popcnt<1, 2>, tile_popcnt<1, 3>, tile_popcnt<1, 4>},
                            {tile_popcnt<2, 1>, tile_popcnt<2, 2>, tile_popcnt<2, 3>, tile_popcnt<2, 4>},
                            {tile_popcnt<3, 1>, tile_popcnt<3, 2>, tile_popcnt<3, 3>, tile_popcnt<3, 4>},
                            {tile_popcnt<4, 1>, tile_popcnt<4, 2>, tile_popcnt<4, 3>, tile_popcnt<4, 4>}};

constexpr int64_t kColumnBlock = 64;

bool finite_scales(const float* s, int64_t n, int64_t* where) {
  if (!s) return true;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(s[i])) {
      *where = i;
      return false;
    }
  return true;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_binarize(const float* x, int64_t rows, int64_t k, int64_t ldx, uint64_t* bits, int64_t stream) {
  static const char* fn = "ct_cpu_binarize";
  CT_TRY
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_binarize(fn, x, rows, k, ldx, bits, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  const int64_t kw = words(k);
  parallel_range(rows, k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * ldx;
      for (int64_t w = 0; w < kw; ++w) {
        const int64_t e0 = w * 64, e1 = std::min(k, e0 + 64);
        uint64_t v = 0;
        int64_t e = e0;
        for (; e + 8 <= e1; e += 8) {  // 8 signs at a time: vcmpps + vmovmskps
          const __m256 c = _mm256_cmp_ps(_mm256_loadu_ps(xr + e), _mm256_setzero_ps(), _CMP_GE_OQ);
          v |= (uint64_t)(uint32_t)_mm256_movemask_ps(c) << (e - e0);
        }
        for (; e < e1; ++e) v |= (uint64_t)(xr[e] >= 0.0f) << (e - e0);
        std::memcpy(bits + r * kw + w, &v, 8);
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_binary_gemm(const ct_bgemm_args* args, int64_t stream) {
  static const char* fn = "ct_cpu_binary_gemm";
  CT_TRY
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_bgemm(fn, args, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  const ct_bgemm_args& g = *args;
  int64_t where = 0;
  if (!finite_scales((const float*)g.alpha, g.n, &where))
    return fail(CT_ERR_INVALID_ARG, "%s: alpha[%lld] is not finite", fn, (long long)where);
  if (!finite_scales((const float*)g.beta, g.m, &where))
    return fail(CT_ERR_INVALID_ARG, "%s: beta[%lld] is not finite", fn, (long long)where);
  const bool fast = !g.reference && use_avx512() && has_vpopcntdq();
  const Tile(*table)[4] = fast ? kPopcnt : kScalar;
  const int64_t blocks = (g.n + kColumnBlock - 1) / kColumnBlock;
  parallel_range(blocks, kColumnBlock * std::max<int64_t>(1, g.m * words(g.k)), [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j1 = std::min(g.n, (blk + 1) * kColumnBlock);
      for (int64_t i = 0; i < g.m; i += 4) {
        const int mr = (int)std::min<int64_t>(4, g.m - i);
        for (int64_t j = blk * kColumnBlock; j < j1; j += 4) table[mr - 1][std::min<int64_t>(4, j1 - j) - 1](g, i, j);
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_binary_conv2d(const ct_bconv_args* args, int64_t stream) {
  static const char* fn = "ct_cpu_binary_conv2d";
  CT_TRY
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_bconv(fn, args, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  const ct_bconv_args& p = *args;
  const int64_t rows = p.batch * p.oh, cw = words(p.c);
  int64_t where = 0;
  if (!finite_scales((const float*)p.alpha, p.cout, &where))
    return fail(CT_ERR_INVALID_ARG, "%s: alpha[%lld] is not finite", fn, (long long)where);
  const uint64_t* x = (const uint64_t*)p.x;
  const uint64_t* w = (const uint64_t*)p.w;
  const float* alpha = (const float*)p.alpha;
  float* y = (float*)p.y;
  const int64_t wstride = p.kh * p.kw * cw;  // words per output channel
  const uint64_t last = tail_mask(p.c);
  parallel_range(rows, p.ow * p.cout * p.kh * p.kw * std::max<int64_t>(1, cw), [&](int64_t r0, int64_t r1) {
    std::vector<const uint64_t*> tx((size_t)(p.kh * p.kw));
    std::vector<int64_t> tw((size_t)(p.kh * p.kw));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / p.oh, oy = r % p.oh;
      for (int64_t ox = 0; ox < p.ow; ++ox) {
        int64_t taps = 0;
        for (int64_t dy = 0; dy < p.kh; ++dy) {
          const int64_t iy = oy * p.stride_h - p.pad_h + dy;
          if (iy < 0 || iy >= p.h) continue;
          for (int64_t dx = 0; dx < p.kw; ++dx) {
            const int64_t ix = ox * p.stride_w - p.pad_w + dx;
            if (ix < 0 || ix >= p.w_in) continue;
            tx[taps] = x + ((b * p.h + iy) * p.w_in + ix) * cw;
            tw[taps] = (dy * p.kw + dx) * cw;
            ++taps;
          }
        }
        const int64_t valid = taps * p.c;
        float* yo = y + (r * p.ow + ox) * p.cout;
        for (int64_t co = 0; co < p.cout; co += 4) {
          const int nc = (int)std::min<int64_t>(4, p.cout - co);
          int64_t pop[4] = {0, 0, 0, 0};
          for (int64_t t = 0; t < taps; ++t)
            for (int64_t q = 0; q < cw; ++q) {
              const uint64_t xv = word(tx[t], q) & (q == cw - 1 ? last : ~0ull);
              for (int c = 0; c < nc; ++c)
                pop[c] += __builtin_popcountll((xv ^ word(w, (co + c) * wstride + tw[t] + q)) & (q == cw - 1 ? last : ~0ull));
            }
          for (int c = 0; c < nc; ++c) {
            const float v = (float)(valid - 2 * pop[c]);
            yo[co + c] = alpha ? v * alpha[co + c] : v;
          }
        }
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

namespace {
template <class T> void sign_rows(const T* x, T* y, int64_t n) {
  parallel_range(n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const compute_t<T> v = load(x + i);
      store(y + i, (compute_t<T>)(v != v ? v : v >= 0 ? 1 : -1));
    }
  });
}
template <class T> void sign_grad_rows(const T* g, const T* x, T* dx, int64_t n) {
  parallel_range(n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const compute_t<T> v = load(x + i);
      store(dx + i, (compute_t<T>)(v >= -1 && v <= 1 ? load(g + i) : 0));
    }
  });
}
bool is_float_dtype(int dtype) { return dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16; }
}  // namespace

extern "C" int ct_cpu_sign_ste(const void* x, void* y, int32_t dtype, int64_t n, int64_t stream) {
  static const char* fn = "ct_cpu_sign_ste";
  CT_TRY
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_sign(fn, dtype, n, x && y, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  dispatch_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (is_float_v<T>) sign_rows((const T*)x, (T*)y, n);
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_sign_ste_backward(const void* g, const void* x, void* dx, int32_t dtype, int64_t n,
                                        int64_t stream) {
  static const char* fn = "ct_cpu_sign_ste_backward";
  CT_TRY
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_sign(fn, dtype, n, g && x && dx, &empty, &msg)) return fail(st, "%s", msg.text);
  if (empty) return CT_OK;
  dispatch_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (is_float_v<T>) sign_grad_rows((const T*)g, (const T*)x, (T*)dx, n);
  });
  return CT_OK;
  CT_CATCH(fn)
}

/* ------------------------------------------------------------------ BiPer (biper_math.h)
 * Elementwise over n contiguous elements, threads splitting the range; the scalar math is shared
 * with the CUDA twin. Cost: one double sin (forward) or cos (backward) per element. */
namespace ct {
namespace {
template <class T> void biper_rows(const T* x, T* y, int64_t n, double omega) {
  parallel_range(n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) store(y + i, (compute_t<T>)biper::wave((double)load(x + i), omega));
  });
}
template <class T> void biper_grad_rows(const T* g, const T* x, T* dx, int64_t n, double omega) {
  parallel_range(n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      store(dx + i, (compute_t<T>)biper::grad((double)load(g + i), (double)load(x + i), omega));
  });
}
int check_omega(const char* fn, double omega) {
  if (biper::valid_omega(omega)) return CT_OK;
  return fail(CT_ERR_INVALID_ARG, "%s: the frequency omega = %g must be finite and > 0", fn, omega);
}
}  // namespace
}  // namespace ct

extern "C" int ct_cpu_biper(const void* x, void* y, int32_t dtype, int64_t n, double omega, int64_t stream) {
  static const char* fn = "ct_cpu_biper";
  CT_TRY
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_sign(fn, dtype, n, x && y, &empty, &msg)) return fail(st, "%s", msg.text);
  if (int st = check_omega(fn, omega)) return st;
  if (empty) return CT_OK;
  dispatch_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (is_float_v<T>) biper_rows((const T*)x, (T*)y, n, omega);
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_biper_backward(const void* g, const void* x, void* dx, int32_t dtype, int64_t n, double omega,
                                     int64_t stream) {
  static const char* fn = "ct_cpu_biper_backward";
  CT_TRY
  qm::Msg msg;
  bool empty = false;
  if (int st = qm::check_sign(fn, dtype, n, g && x && dx, &empty, &msg)) return fail(st, "%s", msg.text);
  if (int st = check_omega(fn, omega)) return st;
  if (empty) return CT_OK;
  dispatch_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (is_float_v<T>) biper_grad_rows((const T*)g, (const T*)x, (T*)dx, n, omega);
  });
  return CT_OK;
  CT_CATCH(fn)
}
