/*
 * bfloat16 GEMM: C_b = alpha op(A_b) op(B_b) + beta C_b with bfloat16 A, B, C, float32 products
 * and accumulation, one final rounding of C to nearest even. ct_cpu_gemm (gemm.cpp) calls it for
 * BF16 with the kernel chosen here (ct_cpu_bf16_gemm_kernel, cpu.h); the third kernel, WIDEN
 * (bfloat16 widened to float32 + OpenBLAS sgemm), stays in gemm.cpp and is the fallback and the
 * reference the two below are tested against.
 *
 * The instructions (both treat bfloat16 subnormal inputs as zero and flush subnormal results):
 *  - AVX512_BF16 vdpbf16ps acc, x, y: in each of 16 float32 lanes i, acc += x[2i] y[2i] +
 *    x[2i+1] y[2i+1]: two steps of k at once, 32 products per instruction.
 *  - AMX-BF16 tdpbf16ps C, A, B: a 16 x 16 float32 tile C += A (16 x 32 bfloat16, rows of A)
 *    times B (32 x 16, stored as 16 rows of 16 (k, k+1) pairs): 8192 products per instruction.
 * Both need B with the k pairs of one column adjacent ("VNNI" layout); vdpbf16ps also wants A's
 * pairs as 32-bit words to broadcast. probe.cpp measures the peak of each.
 *
 * Algorithm (GotoBLAS blocking in the layouts those instructions read):
 *  1. Pack op(B) into column panels of NR = 32: panel[q][c] = the 32-bit pair (B(2q, c),
 *     B(2q+1, c)); op(A) into row panels: DPBF16 12 rows, panel[q][r] = (A(r, 2q), A(r, 2q+1));
 *     AMX 32 rows in k-blocks of 32, panel[kb][r][0 .. 32) = A(r, 32 kb ..) (two 16-row A tiles
 *     of 1 KiB each). Rows/columns past m/n and k past its end are zero, so the kernels only see
 *     whole tiles. Each operand is packed once per batch entry, in parallel over panels (a
 *     broadcast operand, batch stride 0, once per call): 2 (m + n) k bytes read and written.
 *  2. Register tile. DPBF16: 12 x 32 float32 accumulators (24 zmm); per pair step it loads two B
 *     vectors and broadcasts 12 A pairs: 24 vdpbf16ps per 14 loads. AMX: a 32 x 32 block in the
 *     four C tiles; per k-block of 32 it loads two A and two B tiles (4 KiB) for 4 tdpbf16ps,
 *     each load placed just before the first product that reads it (tiles are not renamed: a
 *     load waits for the products still reading the previous contents; +5-10% over loading
 *     all four first).
 *  3. Cache blocks: a task owns a C block (DPBF16 96 x 256, AMX 128 x 256) whose float32
 *     accumulators live in a per-thread workspace (96 / 128 KiB, L2). It walks k in blocks
 *     (DPBF16 384, AMX 512): the B micro-panel of a block (24 / 32 KiB) stays in L1 while the row
 *     panels of the block pass over it; the A block stays in L2.
 *  4. Epilogue: C = alpha acc + beta C (beta == 0: C is not read), rounded to bfloat16.
 *  Threads: OpenMP over the C blocks of an entry (dynamic), or over batch entries when entries
 *  are too small to give every thread several blocks (each thread then packs its own operands).
 * Cost: 2 m n k FLOPs per entry (padded up to whole tiles and k to 2 or 32); memory traffic
 * 2 (m k + k n) bytes packed plus 2 m n (4 m n with beta != 0) for C.
 */
#include <algorithm>
#include <atomic>
#include <chrono>

#include "internal.h"

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized (their undefined-vector idiom)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace ct {
namespace {

struct Bf16Gemm {
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
  int64_t lda, ldb, ldc;
  int64_t kq;  // pair rows of a packed B panel (k / 2 rounded up to the kernel's k granule)
};

CT_INLINE uint32_t pair(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }
CT_INLINE uint32_t load_pair(const uint16_t* p) { uint32_t u; std::memcpy(&u, p, 4); return u; }

/* Column panel j of op(B) (columns 32 j ..): out[q 32 + c] = (B(2q, c), B(2q+1, c)), q < g.kq. */
CT_AVX512BF16 void pack_b(const Bf16Gemm& g, const uint16_t* b, int64_t j, uint32_t* out) {
  constexpr int NR = 32;
  const int64_t c0 = j * NR, cols = std::min<int64_t>(NR, g.n - c0), k = g.k, kp = (k + 1) / 2;
  for (int64_t q = kp; q < g.kq; ++q)
    for (int c = 0; c < NR; ++c) out[q * NR + c] = 0;
  if (!g.tb) {  // B(kk, c) = b[kk ldb + c]: interleave rows 2q and 2q+1
    // vpermt2w indices: words 0..31 from row 2q, 32..63 from row 2q+1
    alignas(64) uint16_t lo_idx[32], hi_idx[32];
    for (int i = 0; i < 16; ++i) {
      lo_idx[2 * i] = (uint16_t)i, lo_idx[2 * i + 1] = (uint16_t)(32 + i);
      hi_idx[2 * i] = (uint16_t)(16 + i), hi_idx[2 * i + 1] = (uint16_t)(48 + i);
    }
    const __m512i il = _mm512_load_si512(lo_idx), ih = _mm512_load_si512(hi_idx);
    for (int64_t q = 0; q < kp; ++q) {
      const uint16_t* s0 = b + 2 * q * g.ldb + c0;
      const uint16_t* s1 = 2 * q + 1 < k ? s0 + g.ldb : nullptr;
      uint32_t* o = out + q * NR;
      if (cols == NR && s1) {
        const __m512i x0 = _mm512_loadu_si512(s0), x1 = _mm512_loadu_si512(s1);
        _mm512_storeu_si512(o, _mm512_permutex2var_epi16(x0, il, x1));
        _mm512_storeu_si512(o + 16, _mm512_permutex2var_epi16(x0, ih, x1));
      } else {
        for (int c = 0; c < NR; ++c) o[c] = c < cols ? pair(s0[c], s1 ? s1[c] : 0) : 0;
      }
    }
  } else {  // B(kk, c) = b[c ldb + kk]: the pairs are contiguous along a stored row
    for (int c = 0; c < NR; ++c) {
      if (c >= cols) {
        for (int64_t q = 0; q < kp; ++q) out[q * NR + c] = 0;
        continue;
      }
      const uint16_t* s = b + (c0 + c) * g.ldb;
      for (int64_t q = 0; q < k / 2; ++q) out[q * NR + c] = load_pair(s + 2 * q);
      if (k & 1) out[(kp - 1) * NR + c] = pair(s[k - 1], 0);
    }
  }
}

/* 16 float32 -> bfloat16, rounding to nearest even, NaN kept quiet: f32_to_bf16 (internal.h) on
 * a vector (vcvtneps2bf16 would flush subnormals). */
CT_AVX512BF16 CT_INLINE __m256i to_bf16x16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i rounded = _mm512_srli_epi32(
      _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                           _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)))), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet));
}

/* C = alpha acc + beta C for the rows x cols corner of a C block, rounded to bfloat16 (float32
 * arithmetic, as sgemm's epilogue). */
CT_AVX512BF16 void epilogue(const Bf16Gemm& g, const float* ws, int64_t ldw, int64_t r0, int64_t rows, int64_t c0,
                            int64_t cols, bf16* c) {
  const __m512 alpha = _mm512_set1_ps(g.alpha), beta = _mm512_set1_ps(g.beta);
  for (int64_t r = 0; r < rows; ++r) {
    const float* w = ws + r * ldw;
    uint16_t* o = (uint16_t*)(c + (r0 + r) * g.ldc + c0);
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 mask = cols - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - j)) - 1);
      __m512 v = _mm512_mul_ps(alpha, _mm512_maskz_loadu_ps(mask, w + j));
      if (g.beta != 0.0f) {
        const __m512i old = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, o + j));
        v = _mm512_fmadd_ps(beta, _mm512_castsi512_ps(_mm512_slli_epi32(old, 16)), v);
      }
      _mm256_mask_storeu_epi16(o + j, mask, to_bf16x16(v));
    }
  }
}

// ------------------------------------------------------------------ DPBF16: vdpbf16ps register tiles
struct Dp {
  static constexpr int MR = 12, NR = 32;
  static constexpr int64_t MC = 8 * MR, NC = 8 * NR, KCQ = 192;  // C block; k pairs per cache block
  static int64_t kq(int64_t k) { return (k + 1) / 2; }
  static int64_t a_words(int64_t kq) { return kq * MR; }
  static void begin() {}
  static void end() {}

  /* Row panel i of op(A) (rows 12 i ..): out[q 12 + r] = (A(r, 2q), A(r, 2q+1)). */
  CT_AVX512BF16 static void pack_a(const Bf16Gemm& g, const uint16_t* a, int64_t i, uint32_t* out) {
    const int64_t r0 = i * MR, rows = std::min<int64_t>(MR, g.m - r0), kp = g.kq, k = g.k;
    if (!g.ta) {  // A(r, kk) = a[r lda + kk]: the pairs are contiguous along a row
      for (int r = 0; r < MR; ++r) {
        if (r >= rows) {
          for (int64_t q = 0; q < kp; ++q) out[q * MR + r] = 0;
          continue;
        }
        const uint16_t* s = a + (r0 + r) * g.lda;
        for (int64_t q = 0; q < k / 2; ++q) out[q * MR + r] = load_pair(s + 2 * q);
        if (k & 1) out[(kp - 1) * MR + r] = pair(s[k - 1], 0);
      }
    } else {  // A(r, kk) = a[kk lda + r]: interleave two rows of the stored matrix
      for (int64_t q = 0; q < kp; ++q) {
        const uint16_t* s0 = a + 2 * q * g.lda + r0;
        const uint16_t* s1 = 2 * q + 1 < k ? s0 + g.lda : nullptr;
        for (int r = 0; r < MR; ++r) out[q * MR + r] = r < rows ? pair(s0[r], s1 ? s1[r] : 0) : 0;
      }
    }
  }

  /* c[r ldc + 0 .. 32) (+)= sum_q A-pair(r, q) . B-pair(q, 0 .. 32), r < 12. */
  CT_AVX512BF16 static void tile(int64_t kq, const uint32_t* a, const uint32_t* b, float* c, bool accumulate) {
    constexpr int64_t ldc = NC;
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = accumulate ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
      acc[r][1] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();
    }
    for (int64_t q = 0; q < kq; ++q) {
      const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + q * NR);
      const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + q * NR + 16);
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) {
        const __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[q * MR + r]);
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
        acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
      }
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      _mm512_storeu_ps(c + r * ldc, acc[r][0]);
      _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);
    }
  }

  /* Panels [i0, i1) x [j0, j1) into ws (MC x NC floats). */
  static void block(const Bf16Gemm& g, const uint32_t* pa, const uint32_t* pb, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1, float* ws) {
    for (int64_t q0 = 0; q0 < g.kq; q0 += KCQ) {
      const int64_t kq = std::min(KCQ, g.kq - q0);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i)
          tile(kq, pa + (i * g.kq + q0) * MR, pb + (j * g.kq + q0) * NR, ws + (i - i0) * MR * NC + (j - j0) * NR,
               q0 > 0);
    }
  }
};

// ------------------------------------------------------------------ AMX: tdpbf16ps tiles
struct Amx {
  static constexpr int MR = 32, NR = 32;
  static constexpr int64_t MC = 4 * MR, NC = 8 * NR, KCB = 16;  // C block; k-blocks of 32 per cache block
  static int64_t kq(int64_t k) { return (k + 31) / 32 * 16; }  // pair rows: k rounded up to 32
  static int64_t a_words(int64_t kq) { return kq * MR; }       // 32 rows x 2 kq bfloat16
  CT_AMX static void begin() { amx_begin(); }
  CT_AMX static void end() { amx_end(); }

  /* Row panel i of op(A) (rows 32 i ..), as bfloat16: out[kb][r][0 .. 32) = A(r, 32 kb + 0 .. 32). */
  CT_AMX static void pack_a(const Bf16Gemm& g, const uint16_t* a, int64_t i, uint32_t* out32) {
    uint16_t* out = (uint16_t*)out32;
    const int64_t r0 = i * MR, rows = std::min<int64_t>(MR, g.m - r0), kb = g.kq / 16, k = g.k;
    if (!g.ta) {  // rows of A are rows of the stored matrix: 64-byte masked copies
      for (int64_t b = 0; b < kb; ++b) {
        const int64_t n = std::min<int64_t>(32, k - 32 * b);
        const __mmask32 mask = n >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << n) - 1);
        for (int r = 0; r < MR; ++r) {
          const __m512i x = r < rows ? _mm512_maskz_loadu_epi16(mask, a + (r0 + r) * g.lda + 32 * b) : _mm512_setzero_si512();
          _mm512_storeu_si512(out + (b * MR + r) * 32, x);
        }
      }
    } else {  // A(r, kk) = a[kk lda + r]
      std::memset(out, 0, (size_t)(kb * MR * 32) * sizeof(uint16_t));
      for (int64_t kk = 0; kk < k; ++kk) {
        const uint16_t* s = a + kk * g.lda + r0;
        uint16_t* o = out + (kk / 32) * MR * 32 + (kk % 32);
        for (int r = 0; r < rows; ++r) o[r * 32] = s[r];
      }
    }
  }

  /* Panels [i0, i1) x [j0, j1) into ws (MC x NC floats, row stride NC): 32 x 32 blocks of four
   * C tiles, 0 1 / 2 3, from A tiles 4 (rows 0-15), 5 (16-31) and B tiles 6 (columns 0-15), 7. */
  CT_AMX static void block(const Bf16Gemm& g, const uint32_t* pa, const uint32_t* pb, int64_t i0, int64_t i1,
                           int64_t j0, int64_t j1, float* ws) {
    constexpr int64_t ldw = NC * sizeof(float);
    const int64_t kb = g.kq / 16;
    for (int64_t b0 = 0; b0 < kb; b0 += KCB) {
      const int64_t b1 = std::min(kb, b0 + KCB);
      for (int64_t j = j0; j < j1; ++j) {
        const uint32_t* bp = pb + j * g.kq * NR;
        for (int64_t i = i0; i < i1; ++i) {
          const uint16_t* ap = (const uint16_t*)(pa + i * g.kq * MR);
          float* c = ws + (i - i0) * MR * NC + (j - j0) * NR;
          if (b0 == 0) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
          } else {
            _tile_loadd(0, c, ldw);
            _tile_loadd(1, c + 16, ldw);
            _tile_loadd(2, c + 16 * NC, ldw);
            _tile_loadd(3, c + 16 * NC + 16, ldw);
          }
          for (int64_t b = b0; b < b1; ++b) {
            _tile_loadd(4, ap + b * MR * 32, 64);
            _tile_loadd(6, bp + b * 16 * NR, NR * 4);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(7, bp + b * 16 * NR + 16, NR * 4);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(5, ap + b * MR * 32 + 16 * 32, 64);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
          _tile_stored(0, c, ldw);
          _tile_stored(1, c + 16, ldw);
          _tile_stored(2, c + 16 * NC, ldw);
          _tile_stored(3, c + 16 * NC + 16, ldw);
        }
      }
    }
  }
};

// ------------------------------------------------------------------ the driver, one per kernel
template <class K>
void run(Bf16Gemm g, int64_t batch, const uint16_t* a, int64_t sa, const uint16_t* b, int64_t sb, bf16* c,
         int64_t sc) {
  g.kq = K::kq(g.k);
  const int64_t mp = (g.m + K::MR - 1) / K::MR, np = (g.n + K::NR - 1) / K::NR;
  const int64_t tm = (g.m + K::MC - 1) / K::MC, tn = (g.n + K::NC - 1) / K::NC, blocks = tm * tn;
  const int64_t a_words = mp * K::a_words(g.kq), b_words = np * g.kq * K::NR;
  int nt = threads_for((int64_t)std::min(9e18, (double)batch * g.m * g.n * g.k / 32.0));
  // threads over entries (not when every entry writes the same C: batch stride 0)
  const bool per_entry = nt > 1 && batch >= nt && blocks < 4 * nt && sc != 0;
  if (!per_entry && nt > blocks) nt = (int)std::max<int64_t>(1, blocks);
  const int copies = per_entry ? nt : 1;  // each thread packs its own entries in per-entry mode
  HostBuffer<uint32_t> pa(a_words * copies), pb(b_words * copies);
  Workspace ws(K::MC * K::NC * nt);

  auto pack_a = [&](const uint16_t* ae, int64_t i, uint32_t* out) { K::pack_a(g, ae, i, out + i * K::a_words(g.kq)); };
  auto pack_b_panel = [&](const uint16_t* be, int64_t j, uint32_t* out) { pack_b(g, be, j, out + j * g.kq * K::NR); };
  auto block = [&](const uint32_t* pae, const uint32_t* pbe, int64_t t, float* w, bf16* ce) {
    const int64_t bi = t / tn, bj = t % tn;
    const int64_t i0 = bi * (K::MC / K::MR), i1 = std::min(mp, i0 + K::MC / K::MR);
    const int64_t j0 = bj * (K::NC / K::NR), j1 = std::min(np, j0 + K::NC / K::NR);
    K::block(g, pae, pbe, i0, i1, j0, j1, w);
    const int64_t r0 = i0 * K::MR, c0 = j0 * K::NR;
    epilogue(g, w, K::NC, r0, std::min(g.m, i1 * K::MR) - r0, c0, std::min(g.n, j1 * K::NR) - c0, ce);
  };

  if (per_entry) {
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num();
      uint32_t* my_a = pa.data() + t * a_words;
      uint32_t* my_b = pb.data() + t * b_words;
      const uint16_t* packed_a = nullptr;
      const uint16_t* packed_b = nullptr;
      K::begin();
#pragma omp for schedule(dynamic, 1)
      for (int64_t e = 0; e < batch; ++e) {
        const uint16_t* ae = a + e * sa;
        const uint16_t* be = b + e * sb;
        if (ae != packed_a) {
          for (int64_t i = 0; i < mp; ++i) pack_a(ae, i, my_a);
          packed_a = ae;
        }
        if (be != packed_b) {
          for (int64_t j = 0; j < np; ++j) pack_b_panel(be, j, my_b);
          packed_b = be;
        }
        for (int64_t t2 = 0; t2 < blocks; ++t2) block(my_a, my_b, t2, ws.data() + t * K::MC * K::NC, c + e * sc);
      }
      K::end();
    }
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    float* my_ws = ws.data() + omp_get_thread_num() * K::MC * K::NC;
    K::begin();
    for (int64_t e = 0; e < batch; ++e) {  // every thread walks the entries; the omp for's split the work
      if (e == 0 || sa != 0) {
#pragma omp for schedule(static)
        for (int64_t i = 0; i < mp; ++i) pack_a(a + e * sa, i, pa.data());
      }
      if (e == 0 || sb != 0) {
#pragma omp for schedule(static)
        for (int64_t j = 0; j < np; ++j) pack_b_panel(b + e * sb, j, pb.data());
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < blocks; ++t) block(pa.data(), pb.data(), t, my_ws, c + e * sc);
    }
    K::end();
  }
}

// ------------------------------------------------------------------ kernel choice
std::atomic<int> g_forced{CT_BF16_GEMM_AUTO};

/* Best of 5 short runs of a probe (~20 us each), in FLOP/s. */
template <class P> double probe_rate(P probe, int64_t steps, double flop_per_step) {
  double best = 0, sum;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (probe(steps, &sum) != CT_OK) return 0;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) best = std::max(best, flop_per_step * (double)steps / s);
  }
  return best;
}

int automatic_kernel() {
  if (use_amx_bf16()) return CT_BF16_GEMM_AMX;
  if (!use_avx512_bf16()) return CT_BF16_GEMM_WIDEN;
  static const bool dot_wins = [] {
    const double dot = probe_rate(ct_cpu_probe_bf16_dot, 2048, 64.0 * 24);
    const double fma = probe_rate(ct_cpu_probe_fma_f32, 4096, 32.0 * 24);
    return dot >= 1.5 * fma;
  }();
  return dot_wins ? CT_BF16_GEMM_DPBF16 : CT_BF16_GEMM_WIDEN;
}

bool kernel_runs(int kernel) {
  switch (kernel) {
    case CT_BF16_GEMM_AUTO:
    case CT_BF16_GEMM_WIDEN: return true;
    case CT_BF16_GEMM_DPBF16: return use_avx512_bf16();
    case CT_BF16_GEMM_AMX: return use_amx_bf16();
    default: return false;
  }
}

}  // namespace

int bf16_gemm_kernel() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  // a forced kernel that AVX-512 switched off since cannot run: fall back to the automatic choice
  return forced != CT_BF16_GEMM_AUTO && kernel_runs(forced) ? forced : automatic_kernel();
}

void gemm_bf16(int kernel, bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k, float alpha,
               const bf16* a, int64_t lda, int64_t batch_stride_a, const bf16* b, int64_t ldb, int64_t batch_stride_b,
               float beta, bf16* c, int64_t ldc, int64_t batch_stride_c) {
  const Bf16Gemm g{trans_a, trans_b, m, n, k, alpha, beta, lda, ldb, ldc, 0};
  const uint16_t* au = (const uint16_t*)a;
  const uint16_t* bu = (const uint16_t*)b;
  if (kernel == CT_BF16_GEMM_AMX)
    run<Amx>(g, batch, au, batch_stride_a, bu, batch_stride_b, c, batch_stride_c);
  else
    run<Dp>(g, batch, au, batch_stride_a, bu, batch_stride_b, c, batch_stride_c);
}

}  // namespace ct

extern "C" {

int ct_cpu_bf16_gemm_kernel(void) { return ct::bf16_gemm_kernel(); }

int ct_cpu_set_bf16_gemm_kernel(int kernel) {
  if (kernel < CT_BF16_GEMM_AUTO || kernel > CT_BF16_GEMM_AMX)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_set_bf16_gemm_kernel: kernel=%d is not one of CT_BF16_GEMM_*", kernel);
  if (!ct::kernel_runs(kernel))
    return ct::fail(CT_ERR_UNSUPPORTED, "ct_cpu_set_bf16_gemm_kernel: kernel %s cannot run on this CPU%s",
                    kernel == CT_BF16_GEMM_AMX ? "AMX" : "DPBF16",
                    ct::use_avx512() ? "" : " (AVX-512 is switched off)");
  ct::g_forced.store(kernel, std::memory_order_relaxed);
  return CT_OK;
}

}  // extern "C"
