/*
 * The register-tile GEMM micro-kernel, written once for the CPU kernels that block their own
 * GEMMs (attention.cpp's flash blocks, conv_winograd.cpp's per-tile GEMMs, conv_fast.cpp's direct
 * NHWC convolution):
 *
 *   C[r][0 .. NW) (+)= sum_{s < nseg} sum_{k < K} A_s(r, k) * B[(s K + k) ldb + 0 .. NW),  r < MR
 *
 * MR rows of accumulators times NV vector registers (NW = NV x the vector width) stay in
 * registers for the whole reduction; each step loads NV vectors of a B row and broadcasts one A
 * element per row: MR x NV FMAs per (MR + NV) loads. Tiles used: AVX-512 12 x 32 (24 zmm
 * accumulators), AVX2 6 x 16 (12 ymm) or 3 x 32 (12 ymm), double AVX2 4 x 8.
 *
 * A is an accessor giving a pointer to A_s(r, k):
 *   Strided  a(r, k) = a + k ks + r rs: a row-major panel (rs = lda, ks = 1) or a transposed one
 *            (rs = 1, ks = lda); one segment (nseg is ignored).
 *   Taps     a.seg(s)(r, k) = xs[r] + off[s] + k: segment s = tap s of a direct convolution, row r
 *            an output pixel, k an input channel; B is the packed weight [tap][c][NW].
 * kSegmented picks the loop nest at compile time: with a loop over segments around the Strided
 * kernels, GCC spilled an accumulator or a B vector in Winograd's 12 x 32 tile (checked in the
 * assembly); without it the tiles keep all 24 accumulators in registers, as the hand-written
 * copies did.
 * Cost: 2 MR NW K nseg FLOPs; B is streamed once per call, A read MR-wide per step.
 * (conv_fast.cpp, conv_winograd.cpp, attention.cpp; timings in the commit that introduced it.)
 */
#ifndef CORTADO_CPU_MICROKERNEL_H
#define CORTADO_CPU_MICROKERNEL_H

#include "internal.h"

namespace ct {
namespace mk {

template <class T> struct Strided {
  const T* a;
  int64_t rs, ks;
  static constexpr bool kSegmented = false;
  CT_INLINE const T* operator()(int r, int64_t k) const { return (a + k * ks) + r * rs; }
};

template <int MR> struct TapRows {
  const float* p[MR];
  CT_INLINE const float* operator()(int r, int64_t k) const { return p[r] + k; }
};
template <int MR> struct Taps {
  const float* const* xs;
  const int64_t* off;
  static constexpr bool kSegmented = true;
  CT_INLINE TapRows<MR> seg(int64_t s) const {
    TapRows<MR> t;
    for (int r = 0; r < MR; ++r) t.p[r] = xs[r] + off[s];
    return t;
  }
};

/* float, AVX2 (the build's baseline ISA): NW = 8 NV. */
template <int MR, int NV, class A>
CT_INLINE void f32_avx2(int64_t nseg, int64_t K, const A a, const float* b, int64_t ldb, float* c, int64_t ldc,
                        bool accumulate) {
  __m256 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  if constexpr (A::kSegmented) {
    for (int64_t s = 0; s < nseg; ++s) {
      const auto as = a.seg(s);
      for (int64_t k = 0; k < K; ++k) {
        const auto* bk = b + (s * K + k) * ldb;
        __m256 bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(bk + 8 * v);
        for (int r = 0; r < MR; ++r) {
          const __m256 x = _mm256_broadcast_ss(as(r, k));
          for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(x, bv[v], acc[r][v]);
        }
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      const auto* bk = b + k * ldb;
      __m256 bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(bk + 8 * v);
      for (int r = 0; r < MR; ++r) {
        const __m256 x = _mm256_broadcast_ss(a(r, k));
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(x, bv[v], acc[r][v]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* cr = c + r * ldc;
    if (accumulate)
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_add_ps(acc[r][v], _mm256_loadu_ps(cr + 8 * v));
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(cr + 8 * v, acc[r][v]);
  }
}

/* float, AVX-512 (only called where use_avx512() said yes): NW = 32. */
template <int MR, int NV, class A>
CT_AVX512 CT_INLINE void f32_avx512(int64_t nseg, int64_t K, const A a, const float* b, int64_t ldb, float* c,
                                    int64_t ldc, bool accumulate) {
  static_assert(NV == 2, "f32_avx512: 32 columns");
  __m512 c0[MR], c1[MR];
  for (int r = 0; r < MR; ++r) { c0[r] = _mm512_setzero_ps(); c1[r] = _mm512_setzero_ps(); }
  if constexpr (A::kSegmented) {
    for (int64_t s = 0; s < nseg; ++s) {
      const auto as = a.seg(s);
      for (int64_t k = 0; k < K; ++k) {
        const float* bk = b + (s * K + k) * ldb;
        const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16);
        for (int r = 0; r < MR; ++r) {
          const __m512 x = _mm512_set1_ps(*as(r, k));
          c0[r] = _mm512_fmadd_ps(x, b0, c0[r]);
          c1[r] = _mm512_fmadd_ps(x, b1, c1[r]);
        }
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      const float* bk = b + k * ldb;
      const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16);
      for (int r = 0; r < MR; ++r) {
        const __m512 x = _mm512_set1_ps(*a(r, k));
        c0[r] = _mm512_fmadd_ps(x, b0, c0[r]);
        c1[r] = _mm512_fmadd_ps(x, b1, c1[r]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* cr = c + r * ldc;
    if (accumulate) {
      c0[r] = _mm512_add_ps(c0[r], _mm512_loadu_ps(cr));
      c1[r] = _mm512_add_ps(c1[r], _mm512_loadu_ps(cr + 16));
    }
    _mm512_storeu_ps(cr, c0[r]);
    _mm512_storeu_ps(cr + 16, c1[r]);
  }
}

/* double, AVX2: NW = 4 NV. */
template <int MR, int NV, class A>
CT_INLINE void f64_avx2(int64_t nseg, int64_t K, const A a, const double* b, int64_t ldb, double* c, int64_t ldc,
                        bool accumulate) {
  __m256d acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_pd();
  if constexpr (A::kSegmented) {
    for (int64_t s = 0; s < nseg; ++s) {
      const auto as = a.seg(s);
      for (int64_t k = 0; k < K; ++k) {
        const auto* bk = b + (s * K + k) * ldb;
        __m256d bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_pd(bk + 4 * v);
        for (int r = 0; r < MR; ++r) {
          const __m256d x = _mm256_broadcast_sd(as(r, k));
          for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_pd(x, bv[v], acc[r][v]);
        }
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      const auto* bk = b + k * ldb;
      __m256d bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_pd(bk + 4 * v);
      for (int r = 0; r < MR; ++r) {
        const __m256d x = _mm256_broadcast_sd(a(r, k));
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_pd(x, bv[v], acc[r][v]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    double* cr = c + r * ldc;
    if (accumulate)
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_add_pd(acc[r][v], _mm256_loadu_pd(cr + 4 * v));
    for (int v = 0; v < NV; ++v) _mm256_storeu_pd(cr + 4 * v, acc[r][v]);
  }
}

/* A 16-float row of the transposed tile; NT: a non-temporal store (d 64-byte aligned). */
template <bool NT> CT_AVX512 CT_INLINE void store16(float* d, __m512 v) {
  if constexpr (NT) _mm512_stream_ps(d, v);
  else _mm512_storeu_ps(d, v);
}

/* A 16 x 16 tile of 4-byte elements transposed in registers (the blocked strided copy of
 * elementwise.cpp, the NCHW epilogue of conv_fast.cpp's direct kernel): rows r[i] = s + i ssa,
 * out row j = d + j dsb. Unpacks pair rows (4-byte, then 8-byte granules), after which u[4k + c] holds in its 128-bit lane L the rows 4k..4k+3 of
 * column 4L + c; a 4 x 4 transpose of 128-bit lanes (shuffle_f32x4) finishes each column. */
template <bool NT> CT_AVX512 CT_INLINE void transpose16x16(float* d, int64_t dsb, const float* s, int64_t ssa) {
  __m512 r[16], t[16], u[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(s + i * ssa);
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  for (int k = 0; k < 4; ++k) {
    const __m512d t0 = _mm512_castps_pd(t[4 * k]), t1 = _mm512_castps_pd(t[4 * k + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * k + 2]), t3 = _mm512_castps_pd(t[4 * k + 3]);
    u[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 p0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), p1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 p2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), p3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    store16<NT>(d + (0 + c) * dsb, _mm512_shuffle_f32x4(p0, p2, 0x88));
    store16<NT>(d + (4 + c) * dsb, _mm512_shuffle_f32x4(p0, p2, 0xDD));
    store16<NT>(d + (8 + c) * dsb, _mm512_shuffle_f32x4(p1, p3, 0x88));
    store16<NT>(d + (12 + c) * dsb, _mm512_shuffle_f32x4(p1, p3, 0xDD));
  }
}

}  // namespace mk
}  // namespace ct

#endif
