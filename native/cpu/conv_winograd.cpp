/*
 * WINOGRAD F(2x2, 3x3) convolution, float32: forward (and backward-data, which conv.cpp runs as
 * the forward of dy with the flipped, channel-transposed weight) and backward-weight, for 2-d
 * 3x3 kernels with stride 1 and dilation 1, any padding, groups, NHWC and NCHW.
 *
 * Algorithm (Lavin & Gray 2016). Every 2x2 block of outputs ("tile") needs a 4x4 input patch d:
 *   V = B^T d B,  U = G w G^T,  Y = A^T (sum_c U_c (.) V_c) A
 * with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 * A^T = [1 1 1 0; 0 1 -1 -1]. The sum over input channels is 16 independent GEMMs, one per
 * position xi of the 4x4 transformed tile:  M[xi] (tiles x Kg) = V[xi] (tiles x Cg) * U[xi] (Cg x Kg).
 * Backward-weight is the adjoint of the same factorisation:
 *   dM = A dY A^T (4x4 per tile from the 2x2 output gradient),
 *   dU[xi] (Cg x Kg) = sum over tiles V[xi]^T dM[xi],   dw = G^T dU G.
 *
 * Data flow. The core works on NHWC (channels contiguous, so both transforms are vector loops
 * over channels); NCHW operands are transposed to NHWC into a workspace first (and the output
 * back), which costs ~2 x 4 bytes per element moved against 2*9*K FLOPs per input element.
 * Tiles of the whole batch are numbered n*T + t (T = ceil(oH/2) * ceil(oW/2) per image) and cut
 * into chunks of TB tiles sized so that V and M (16 * TB * (Cg + Kg) floats) stay in L2. Forward:
 * one (group, chunk) per work item; its input transform writes V[xi][t][c], the GEMMs M, the
 * output transform adds bias and the activation and writes y. Backward-weight: one (group,
 * block of output channels) per work item, so each item owns its dU and walks every chunk in
 * the same order: the result does not depend on the thread count (deterministic).
 *
 * GEMM micro-kernels: 12 x 32 (AVX-512, 24 zmm accumulators) or 3 x 32 (AVX2, 12 ymm), over a
 * weight panel packed [group][xi][32-wide column block][c][32].
 *
 * Cost (F = 2*N*K*Cg*9*oH*oW, the direct-convolution FLOPs): GEMM 2*16*Kg*Cg per tile-group =
 * F * 16/36 (2.25x fewer multiply-adds), transforms ~(32 Cg + 24 Kg) additions per tile and
 * group; bytes: x and y once (plus the NCHW transposes), U (16*Cg*Kg*4 bytes) streamed from L3
 * once per chunk. Numerics: float32 error a small factor above direct convolution (the
 * transform coefficients are 0, +-0.5, +-1).
 */
#include <algorithm>
#include <cmath>
#include <vector>

#include "conv_internal.h"
#include "microkernel.h"

namespace ct {
namespace conv {
namespace {

constexpr int64_t NR = 32;  // output channels per packed column block

// ------------------------------------------------------------------ GEMM micro-kernels
/* c[r][0..32) (+)= sum_{p<P} a[r*rs + p*ps] * b[p*ldb + 0..32) for r < MR: microkernel.h's tiles. */
template <int MR>
CT_AVX512 CT_INLINE void mk_avx512(int64_t P, const float* a, int64_t rs, int64_t ps, const float* b, int64_t ldb,
                                   float* c, int64_t ldc, bool acc) {
  mk::f32_avx512<MR, 2>(1, P, mk::Strided<float>{a, rs, ps}, b, ldb, c, ldc, acc);
}
template <int MR>
CT_INLINE void mk_avx2(int64_t P, const float* a, int64_t rs, int64_t ps, const float* b, int64_t ldb, float* c,
                       int64_t ldc, bool acc) {
  mk::f32_avx2<MR, 4>(1, P, mk::Strided<float>{a, rs, ps}, b, ldb, c, ldc, acc);
}

/* Rows [0, rows) of the 32-column block: full micro-tiles, then the remainder. */
CT_AVX512 void panel_avx512(int64_t rows, int64_t P, const float* a, int64_t rs, int64_t ps, const float* b,
                            int64_t ldb, float* c, int64_t ldc, bool acc) {
  int64_t r = 0;
  for (; r + 12 <= rows; r += 12) mk_avx512<12>(P, a + r * rs, rs, ps, b, ldb, c + r * ldc, ldc, acc);
  for (; r + 4 <= rows; r += 4) mk_avx512<4>(P, a + r * rs, rs, ps, b, ldb, c + r * ldc, ldc, acc);
  for (; r < rows; ++r) mk_avx512<1>(P, a + r * rs, rs, ps, b, ldb, c + r * ldc, ldc, acc);
}
void panel_avx2(int64_t rows, int64_t P, const float* a, int64_t rs, int64_t ps, const float* b, int64_t ldb,
                float* c, int64_t ldc, bool acc) {
  int64_t r = 0;
  for (; r + 3 <= rows; r += 3) mk_avx2<3>(P, a + r * rs, rs, ps, b, ldb, c + r * ldc, ldc, acc);
  for (; r < rows; ++r) mk_avx2<1>(P, a + r * rs, rs, ps, b, ldb, c + r * ldc, ldc, acc);
}

// ------------------------------------------------------------------ transforms (vector loops over channels)
/* V[xi * vstride + c] = (B^T d B)[xi] for channels [0, n); d[i*4+j] points at the pixel's channels. */
CT_INLINE void input_tf(const float* const* d, int64_t n, float* V, int64_t vstride) {
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) {
    float t[4][4];
    for (int j = 0; j < 4; ++j) {
      const float d0 = d[j][c], d1 = d[4 + j][c], d2 = d[8 + j][c], d3 = d[12 + j][c];
      t[0][j] = d0 - d2; t[1][j] = d1 + d2; t[2][j] = d2 - d1; t[3][j] = d1 - d3;
    }
    for (int i = 0; i < 4; ++i) {
      V[(i * 4 + 0) * vstride + c] = t[i][0] - t[i][2];
      V[(i * 4 + 1) * vstride + c] = t[i][1] + t[i][2];
      V[(i * 4 + 2) * vstride + c] = t[i][2] - t[i][1];
      V[(i * 4 + 3) * vstride + c] = t[i][1] - t[i][3];
    }
  }
}

/* out[a*2+b][k] = (A^T M A)[a][b] + bias[k], ReLU if asked, for k in [0, n). */
CT_INLINE void output_tf(const float* M, int64_t mstride, int64_t n, const float* bias, bool relu,
                         float* const* out) {
  const float* m[16];
  for (int xi = 0; xi < 16; ++xi) m[xi] = M + xi * mstride;
  float* o00 = out[0];
  float* o01 = out[1];
  float* o10 = out[2];
  float* o11 = out[3];
  const float lo = relu ? 0.0f : -INFINITY;
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    float t0[4], t1[4];
    for (int j = 0; j < 4; ++j) {
      const float m0 = m[j][k], m1 = m[4 + j][k], m2 = m[8 + j][k], m3 = m[12 + j][k];
      t0[j] = m0 + m1 + m2;
      t1[j] = m1 - m2 - m3;
    }
    const float b = bias ? bias[k] : 0.0f;
    o00[k] = std::max(t0[0] + t0[1] + t0[2] + b, lo);
    o01[k] = std::max(t0[1] - t0[2] - t0[3] + b, lo);
    o10[k] = std::max(t1[0] + t1[1] + t1[2] + b, lo);
    o11[k] = std::max(t1[1] - t1[2] - t1[3] + b, lo);
  }
}

/* dM[xi * mstride + k] = (A dY A^T)[xi], dy[a*2+b] points at the output pixel's channels. */
CT_INLINE void grad_tf(const float* const* dy, int64_t n, float* dM, int64_t mstride) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    const float y00 = dy[0][k], y01 = dy[1][k], y10 = dy[2][k], y11 = dy[3][k];
    const float r[4][2] = {{y00, y01}, {y00 + y10, y01 + y11}, {y00 - y10, y01 - y11}, {-y10, -y11}};
    for (int i = 0; i < 4; ++i) {
      dM[(i * 4 + 0) * mstride + k] = r[i][0];
      dM[(i * 4 + 1) * mstride + k] = r[i][0] + r[i][1];
      dM[(i * 4 + 2) * mstride + k] = r[i][0] - r[i][1];
      dM[(i * 4 + 3) * mstride + k] = -r[i][1];
    }
  }
}

// ------------------------------------------------------------------ layout
/* The first n lanes set (n <= 8): the mask of AVX's vmaskmovps. */
CT_INLINE __m256i lanes8(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One 8 x 8 register transpose of an nr x nc corner (nr, nc <= 8): dst[j * ldd + i] = src[i * lds + j].
 * Full tiles take plain loads and stores; edge tiles masked ones, so nothing outside the corner
 * is read or written. */
CT_INLINE void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t nr, int64_t nc) {
  const bool full = nr == 8 && nc == 8;
  const __m256i mc = lanes8(nc), mr = lanes8(nr);
  __m256 r[8], t[8];
  for (int q = 0; q < 8; ++q)
    r[q] = q >= nr ? _mm256_setzero_ps() : full ? _mm256_loadu_ps(src + q * lds) : _mm256_maskload_ps(src + q * lds, mc);
  for (int q = 0; q < 8; q += 2) {
    t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
    t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
  }
  for (int q = 0; q < 8; q += 4) {
    r[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
    r[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xEE);
    r[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
    r[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
  }
  // each 128-bit lane now holds 4 of a column's rows: combine the lanes
  for (int q = 0; q < 4; ++q) {
    t[q] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x20);
    t[q + 4] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x31);
  }
  for (int q = 0; q < nc; ++q) {
    if (full) _mm256_storeu_ps(dst + q * ldd, t[q]);
    else _mm256_maskstore_ps(dst + q * ldd, mr, t[q]);
  }
}

/* dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: 8x8 register transposes (AVX2),
 * masked at the edges (the 14 x 14 maps of small CNNs leave 6-wide edges, which a scalar loop
 * used to copy). */
void transpose_block(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; i += 8)
    for (int64_t j = 0; j < cols; j += 8)
      transpose8x8(src + i * lds + j, lds, dst + j * ldd + i, ldd, std::min<int64_t>(8, rows - i),
                   std::min<int64_t>(8, cols - j));
}

/* [N][C][S] <-> [N][S][C] (to_nhwc), 64x64 blocks over the threads. */
void transpose_layout(const float* src, float* dst, int64_t N, int64_t C, int64_t S, bool to_nhwc) {
  const int64_t B = 64, cb = (C + B - 1) / B, sb = (S + B - 1) / B;
  parallel_range(N * cb * sb, B * B, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t s0 = (it % sb) * B, c0 = ((it / sb) % cb) * B, n = it / (sb * cb);
      const int64_t sn = std::min(S - s0, B), cn = std::min(C - c0, B);
      const float* sp = src + n * C * S;
      float* dp = dst + n * C * S;
      if (to_nhwc) transpose_block(sp + c0 * S + s0, S, dp + s0 * C + c0, C, cn, sn);
      else transpose_block(sp + s0 * C + c0, C, dp + c0 * S + s0, S, sn, cn);
    }
  });
}

/* Tiles per chunk: V and M of one chunk (16 * TB * (Cg + Kg) floats) within ~1 MiB. */
int64_t chunk_tiles(int64_t ldv, int64_t ldm, int64_t total) {
  int64_t tb = (int64_t(1) << 20) / (64 * (ldv + ldm));
  tb = std::max<int64_t>(12, tb / 12 * 12);
  return std::min(tb, std::max<int64_t>(total, 1));
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* Geometry of the NHWC core. */
struct Wino {
  int64_t N, H, W, oH, oW, ph, pw, C, K, G, Cg, Kg, tH, tW, T;
  Wino(const Geo& g)
      : N(g.N), H(g.in[1]), W(g.in[2]), oH(g.out[1]), oW(g.out[2]), ph(g.pb[1]), pw(g.pb[2]), C(g.C), K(g.K), G(g.G),
        Cg(g.Cg), Kg(g.Kg), tH((g.out[1] + 1) / 2), tW((g.out[2] + 1) / 2), T(tH * tW) {}
};

/* Pointers to the 16 input pixels of tile `gt` (channel offset c0), zero row where outside. */
CT_INLINE void tile_inputs(const Wino& w, const float* x, int64_t gt, int64_t c0, const float* zero,
                           const float** d) {
  const int64_t n = gt / w.T, t = gt % w.T, h0 = 2 * (t / w.tW) - w.ph, w0 = 2 * (t % w.tW) - w.pw;
  const float* xn = x + n * w.H * w.W * w.C + c0;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int64_t h = h0 + i, ww = w0 + j;
      d[i * 4 + j] = (h >= 0 && h < w.H && ww >= 0 && ww < w.W) ? xn + (h * w.W + ww) * w.C : zero;
    }
}

// ------------------------------------------------------------------ forward
/*
 * NHWC: work item = (group, chunk of TB consecutive tiles of the whole batch).
 * NCHW: work item = (group, image, chunk of TB tiles of that image); the input rows the chunk
 * reads are first copied channels-last into a per-thread buffer (L2-sized: at most
 * (2 * TB / tW + 6) rows x W x Cg), the outputs go through a [tile][2x2][Kg] buffer and are
 * then written plane by plane. No whole-tensor transposes, so NCHW costs one extra pass over
 * data already in cache.
 */
/* The filter transform U = G g G^T of every (k, c) 3x3 filter, packed [grp][xi][kb][c][NR] (zero
 * columns beyond Kg): ~40 additions and 16 stores per filter; G*Kg*Cg*36 bytes read,
 * G*16*Kp*Cg*4 written (16/9 of the weight, more with the padding to NR). */
void pack_filters(const Wino& w, const float* wt, float* U) {
  const int64_t Kp = round_up(std::max<int64_t>(w.Kg, 1), NR), nkb = Kp / NR;
  if (Kp != w.Kg) std::fill(U, U + w.G * 16 * Kp * w.Cg, 0.0f);
  parallel_range(w.G * w.Kg, w.Cg * 40, [&](int64_t i0, int64_t i1) {
    for (int64_t gk = i0; gk < i1; ++gk) {
      const int64_t grp = gk / w.Kg, k = gk % w.Kg;
      for (int64_t c = 0; c < w.Cg; ++c) {
        const float* f = wt + (gk * w.Cg + c) * 9;
        float t[4][3];
        for (int j = 0; j < 3; ++j) {
          t[0][j] = f[j];
          t[1][j] = 0.5f * (f[j] + f[3 + j] + f[6 + j]);
          t[2][j] = 0.5f * (f[j] - f[3 + j] + f[6 + j]);
          t[3][j] = f[6 + j];
        }
        for (int i = 0; i < 4; ++i) {
          const float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                              t[i][2]};
          for (int j = 0; j < 4; ++j)
            U[((((grp * 16 + i * 4 + j) * nkb + k / NR) * w.Cg + c) * NR) + k % NR] = u[j];
        }
      }
    }
  });
}

template <bool AVX512>
void forward(const Wino& w, bool nchw, const float* x, const float* wt, const float* bias, int act, float* y,
             const float* packed) {
  const int64_t Kp = round_up(std::max<int64_t>(w.Kg, 1), NR), nkb = Kp / NR, ldv = round_up(w.Cg, 16);
  // U packed [grp][xi][kb][c][NR]: transformed here unless the caller did it once (a pre-packed weight)
  Workspace own(packed ? 0 : w.G * 16 * Kp * w.Cg);
  if (!packed) pack_filters(w, wt, own.data());
  const float* U = packed ? packed : own.data();
  const int64_t total = w.N * w.T, TB = chunk_tiles(ldv, Kp, nchw ? w.T : total);
  const int64_t per_img = (w.T + TB - 1) / TB, nch = nchw ? w.N * per_img : (total + TB - 1) / TB;
  const bool relu = act == CT_ACTIVATION_RELU, other_act = act != CT_ACTIVATION_NONE && !relu;
  const int64_t stage_rows = nchw ? std::min(w.H, 2 * (TB / std::max<int64_t>(w.tW, 1)) + 6) : 0;
  // Few (group, chunk) items for the threads (a small batch: ResNet's 7 x 7 stage at batch 1 is
  // one chunk, its 14 x 14 stage three): each chunk's output channels are split into slices of
  // whole NR blocks too, up to 4 items per thread so that uneven chunk counts balance. A slice
  // transforms its chunk's input again (16*TB*Cg adds against the slice's 16*TB*Cg*kn*2 FLOPs);
  // every output is computed exactly as without slices.
  const int64_t chunks = w.G * nch, nt = threads();
  const int64_t nslice = nt <= 1 || chunks >= 4 * nt ? 1 : std::min<int64_t>(nkb, (4 * nt + chunks - 1) / chunks);
  const int64_t kbs = (nkb + nslice - 1) / nslice;  // column blocks per slice
  // the work items' body, compiled into the AVX-512 or the AVX2 caller below (so its vector
  // loops, the transforms, are vectorized for that ISA)
  auto items = [&](int64_t i0, int64_t i1) __attribute__((always_inline)) {
    Workspace V(16 * TB * ldv), M(16 * TB * Kp), xs(nchw ? stage_rows * w.W * w.Cg : 0), ys(nchw ? 4 * TB * w.Kg : 0);
    std::vector<float> zero(std::max(w.Cg, w.Kg) + 16, 0.0f), sink(Kp);
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t grp = it / (nch * nslice), ch = (it / nslice) % nch, kb0 = (it % nslice) * kbs;
      const int64_t kb1 = std::min(nkb, kb0 + kbs), k0 = kb0 * NR, k1 = std::min(w.Kg, kb1 * NR), kn = k1 - k0;
      if (kn <= 0) continue;
      const int64_t t0 = nchw ? (ch / per_img) * w.T + (ch % per_img) * TB : ch * TB;
      const int64_t tn = std::min(TB, nchw ? w.T - (ch % per_img) * TB : total - t0);
      // input transform into V[xi][t][c]
      if (!nchw) {
        for (int64_t ti = 0; ti < tn; ++ti) {
          const float* d[16];
          tile_inputs(w, x, t0 + ti, grp * w.Cg, zero.data(), d);
          input_tf(d, w.Cg, V.data() + ti * ldv, TB * ldv);
        }
      } else {
        const int64_t n = t0 / w.T, tr0 = (t0 % w.T) / w.tW, tr1 = ((t0 + tn - 1) % w.T) / w.tW;
        const int64_t hlo = std::max<int64_t>(0, 2 * tr0 - w.ph), hhi = std::min(w.H, 2 * tr1 - w.ph + 4);
        const float* xg = x + (n * w.C + grp * w.Cg) * w.H * w.W;
        for (int64_t h = hlo; h < hhi; ++h)  // [Cg][W] plane rows -> [W][Cg]
          transpose_block(xg + h * w.W, w.H * w.W, xs.data() + (h - hlo) * w.W * w.Cg, w.Cg, w.Cg, w.W);
        for (int64_t ti = 0; ti < tn; ++ti) {
          const int64_t t = (t0 + ti) % w.T, h0 = 2 * (t / w.tW) - w.ph, w0 = 2 * (t % w.tW) - w.pw;
          const float* d[16];
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) {
              const int64_t h = h0 + i, q = w0 + j;
              d[i * 4 + j] = (h >= 0 && h < w.H && q >= 0 && q < w.W) ? xs.data() + ((h - hlo) * w.W + q) * w.Cg
                                                                      : zero.data();
            }
          input_tf(d, w.Cg, V.data() + ti * ldv, TB * ldv);
        }
      }
      // 16 GEMMs: M[xi] (tn x Kp) = V[xi] (tn x Cg) * U[grp][xi] (Cg x Kp)
      for (int xi = 0; xi < 16; ++xi)
        for (int64_t kb = kb0; kb < kb1; ++kb) {
          const float* a = V.data() + xi * TB * ldv;
          const float* b = U + ((grp * 16 + xi) * nkb + kb) * w.Cg * NR;
          float* c = M.data() + xi * TB * Kp + kb * NR;
          if (AVX512) panel_avx512(tn, w.Cg, a, ldv, 1, b, NR, c, Kp, false);
          else panel_avx2(tn, w.Cg, a, ldv, 1, b, NR, c, Kp, false);
        }
      // output transform (+ bias, activation)
      const float* bg = bias ? bias + grp * w.Kg : nullptr;
      for (int64_t ti = 0; ti < tn; ++ti) {
        const int64_t gt = t0 + ti, n = gt / w.T, t = gt % w.T, oh0 = 2 * (t / w.tW), ow0 = 2 * (t % w.tW);
        float* out[4];
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b) {
            const int64_t oh = oh0 + a, ow = ow0 + b;
            const bool in = oh < w.oH && ow < w.oW;
            out[a * 2 + b] = nchw ? ys.data() + (ti * 4 + a * 2 + b) * w.Kg + k0
                                  : in ? y + ((n * w.oH + oh) * w.oW + ow) * w.K + grp * w.Kg + k0 : sink.data();
          }
        output_tf(M.data() + ti * Kp + k0, TB * Kp, kn, bg ? bg + k0 : nullptr, relu, out);
        if (other_act)
          for (int q = 0; q < 4; ++q)
            if (out[q] != sink.data())
              act_rows(out[q], kn, act);
      }
      if (nchw) {  // [tile][2x2][Kg] -> planes
        const int64_t n = t0 / w.T, P = w.oH * w.oW;
        for (int64_t k = k0; k < k1; ++k) {
          float* yk = y + (n * w.K + grp * w.Kg + k) * P;
          for (int64_t ti = 0; ti < tn; ++ti) {
            const int64_t t = (t0 + ti) % w.T, oh0 = 2 * (t / w.tW), ow0 = 2 * (t % w.tW);
            const float* src = ys.data() + ti * 4 * w.Kg + k;
            for (int a = 0; a < 2; ++a) {
              if (oh0 + a >= w.oH) break;
              float* yr = yk + (oh0 + a) * w.oW + ow0;
              yr[0] = src[(a * 2) * w.Kg];
              if (ow0 + 1 < w.oW) yr[1] = src[(a * 2 + 1) * w.Kg];
            }
          }
        }
      }
    }
  };
  const int64_t work = TB * 16 * kbs * NR * w.Cg * 2;
  if constexpr (AVX512) parallel_range(chunks * nslice, work, [&](int64_t i0, int64_t i1) CT_AVX512 { items(i0, i1); });
  else parallel_range(chunks * nslice, work, items);
}

// ------------------------------------------------------------------ backward-weight (NHWC)
template <bool AVX512>
void backward_weight_nhwc(const Wino& w, const float* x, const float* dy, float* dw) {
  const int64_t ldv = round_up(w.Cg, 16), nkb = (w.Kg + NR - 1) / NR;
  // output-channel blocks per work item: enough items for the threads, at most 4 column blocks
  const int64_t per = std::max<int64_t>(1, std::min<int64_t>(4, nkb * w.G / std::max(1, threads())));
  const int64_t nblk = (nkb + per - 1) / per, KB = per * NR;
  // the chunking (and so every sum's order) does not depend on KB, i.e. on the thread count
  const int64_t total = w.N * w.T, TB = chunk_tiles(ldv, 4 * NR, total), nch = (total + TB - 1) / TB;
  auto items = [&](int64_t i0, int64_t i1) __attribute__((always_inline)) {
    Workspace V(16 * TB * ldv), dM(16 * TB * KB), dU(16 * ldv * KB);
    std::vector<float> zero(std::max(w.Cg, w.Kg) + 16, 0.0f);
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t grp = it / nblk, k0 = (it % nblk) * KB, kn = std::min(KB, w.Kg - k0);
      std::fill(dU.data(), dU.data() + 16 * ldv * KB, 0.0f);
      std::fill(dM.data(), dM.data() + 16 * TB * KB, 0.0f);  // columns >= kn stay zero
      for (int64_t ch = 0; ch < nch; ++ch) {
        const int64_t t0 = ch * TB, tn = std::min(TB, total - t0);
        for (int64_t ti = 0; ti < tn; ++ti) {
          const int64_t gt = t0 + ti, n = gt / w.T, t = gt % w.T, oh0 = 2 * (t / w.tW), ow0 = 2 * (t % w.tW);
          const float* d[16];
          tile_inputs(w, x, gt, grp * w.Cg, zero.data(), d);
          input_tf(d, w.Cg, V.data() + ti * ldv, TB * ldv);
          const float* g4[4];
          for (int a = 0; a < 2; ++a)
            for (int b = 0; b < 2; ++b) {
              const int64_t oh = oh0 + a, ow = ow0 + b;
              g4[a * 2 + b] = (oh < w.oH && ow < w.oW) ? dy + ((n * w.oH + oh) * w.oW + ow) * w.K + grp * w.Kg + k0
                                                       : zero.data();
            }
          grad_tf(g4, kn, dM.data() + ti * KB, TB * KB);
        }
        // dU[xi] (Cg x KB) += V[xi]^T (Cg x tn) * dM[xi] (tn x KB)
        for (int xi = 0; xi < 16; ++xi)
          for (int64_t kb = 0; kb < KB / NR; ++kb) {
            const float* a = V.data() + xi * TB * ldv;
            const float* b = dM.data() + xi * TB * KB + kb * NR;
            float* c = dU.data() + xi * ldv * KB + kb * NR;
            if (AVX512) panel_avx512(w.Cg, tn, a, 1, ldv, b, KB, c, KB, true);
            else panel_avx2(w.Cg, tn, a, 1, ldv, b, KB, c, KB, true);
          }
      }
      // dw[k][c] = G^T dU[.][c][k] G
      static const float Gm[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
      for (int64_t k = 0; k < kn; ++k)
        for (int64_t c = 0; c < w.Cg; ++c) {
          float u[4][4], s[3][4];
          for (int xi = 0; xi < 16; ++xi) u[xi / 4][xi % 4] = dU[(xi * ldv + c) * KB + k];
          for (int a = 0; a < 3; ++a)
            for (int j = 0; j < 4; ++j) s[a][j] = Gm[0][a] * u[0][j] + Gm[1][a] * u[1][j] + Gm[2][a] * u[2][j] + Gm[3][a] * u[3][j];
          float* o = dw + ((grp * w.Kg + k0 + k) * w.Cg + c) * 9;
          for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b)
              o[a * 3 + b] = s[a][0] * Gm[0][b] + s[a][1] * Gm[1][b] + s[a][2] * Gm[2][b] + s[a][3] * Gm[3][b];
        }
    }
  };
  const int64_t work = total * 16 * KB * w.Cg * 2;
  if constexpr (AVX512) parallel_range(w.G * nblk, work, [&](int64_t i0, int64_t i1) CT_AVX512 { items(i0, i1); });
  else parallel_range(w.G * nblk, work, items);
}

}  // namespace

int64_t winograd_packed_len(const Geo& g) {
  return g.G * 16 * round_up(std::max<int64_t>(g.Kg, 1), NR) * g.Cg;
}

void winograd_pack(const Geo& g, const float* w, float* packed) { pack_filters(Wino(g), w, packed); }

void winograd_forward(const Geo& g, const float* x, const float* w, const float* bias, int act, float* y,
                      const float* packed) {
  const Wino wg(g);
  const bool nchw = g.layout == CT_LAYOUT_NCHW;
  if (use_avx512()) forward<true>(wg, nchw, x, w, bias, act, y, packed);
  else forward<false>(wg, nchw, x, w, bias, act, y, packed);
}

void winograd_backward_weight(const Geo& g, const float* x, const float* dy, float* dw) {
  const Wino wg(g);
  const bool avx512 = use_avx512();
  auto run = [&](const float* xx, const float* dd) {
    if (avx512) backward_weight_nhwc<true>(wg, xx, dd, dw);
    else backward_weight_nhwc<false>(wg, xx, dd, dw);
  };
  if (g.layout == CT_LAYOUT_NHWC) return run(x, dy);
  Workspace xt(g.N * g.C * g.S), dt(g.N * g.K * g.P);
  transpose_layout(x, xt.data(), g.N, g.C, g.S, true);
  transpose_layout(dy, dt.data(), g.N, g.K, g.P, true);
  run(xt.data(), dt.data());
}

}  // namespace conv
}  // namespace ct
