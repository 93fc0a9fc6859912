/*
 * Attention family on the CPU: fused scaled-dot-product attention (forward and backward, the
 * FlashAttention-2 algorithm) and rotary position embeddings. Contract: cortado/attention.h.
 *
 * Forward, per work item (b, h, query block of BQ = 64 rows), OpenMP dynamic over items:
 *   Qs = scale * Q_blk (widened to the compute type C: float, or double for F64)
 *   m = -inf, l = 0, O = 0
 *   for each key block of BK = 64 keys (blocks wholly above the causal diagonal are skipped),
 *   and within it for each strip of MS query rows (the micro-kernel's tile height: 12 rows with
 *   AVX-512, 6 with AVX2), so that the key panel and the value block stay in L1 across strips:
 *     S = Qs K_blk^T                         register-blocked micro-kernel (6x16 AVX2 FMA,
 *                                            12x32 AVX-512 when present), K transposed once into
 *                                            contiguous [D][BK] panels
 *     S = c tanh(S / c)                      only with softcap c > 0
 *     S += additive mask / S = -inf where the boolean mask or causality forbids
 *     m' = max(m, rowmax S); a = exp(m - m'); P = exp(S - m'); l = a l + rowsum P; O *= a
 *                                            (explicit AVX-512 for float: online_softmax_*)
 *     P *= dropout keep / (1 - p)            (Philox, element numbering of attention.h)
 *     O += P V_blk                           same micro-kernel
 *   o = O / l, lse = m + log l (rows with l = 0: o = 0, lse = -inf)
 * Backward (P recomputed from lse, never stored; Delta = rowsum(dO * o) computed first):
 *   pass 1, items (b, kv head, key block): for every query head of the group and every query
 *     block: S, P = exp(S - lse), dP = dO V^T, dS = P (dP z - Delta) (z: dropout scale; times
 *     1 - tanh^2 of the capped score with softcap),
 *     dV += (P z)^T dO, dK += dS^T Qs. dK/dV of a key block are owned by one thread.
 *   pass 2, items (b, h, query block): the same S, P, dP, dS per key block, dQ += scale dS K.
 *   (7 block matmuls instead of 5, in exchange for no reduction buffers and no atomics.)
 * Extra memory: O(BQ * BK + (BQ + BK) * (D + Dv)) per thread, plus K (and in the backward V)
 * transposed once into the compute type (B Hkv Lk D values; every query block reads its key
 * blocks from there instead of transposing them again) and Delta (B Hq Lq values); O(L) per
 * head, never O(Lq * Lk).
 * Cost: forward 4 B Hq Lq Lk D FLOPs + B Hq Lq Lk exps (about half with causal masking);
 * bytes: Q, O once, K and V once per query block (Lq / 64 times, from L2 for moderate Lk).
 * Backward: 7/2 of the forward's FLOPs (+ 2 exps per score).
 *
 * attention_reference(): the naive algorithm, one query row at a time in double precision
 * (scores row of Lk values, softmax, P V); its backward accumulates dK/dV per (b, kv head) over
 * all rows. O(Lk + Lk (D + Dv)) memory per thread. Used when CORTADO_ATTENTION_REFERENCE=1 is
 * set in the environment (debugging, cross-checking the blocked kernels).
 *
 * RoPE: per position p, the cos/sin of p theta_i (float64) are computed once and applied to
 * every (b, h) row at that position, in place; 6 FLOPs per pair.
 */
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "cortado/attention.h"
#include "internal.h"
#include "attention_args.h"  // argument checks shared with the CUDA library
#include "microkernel.h"
#include "vmath.h"

namespace ct {
namespace {

constexpr int64_t BQ = 64;  // query rows per block
constexpr int64_t BK = 64;  // keys per block (a multiple of 32: the micro-kernel width)

// ------------------------------------------------------------------ problem description
struct Problem {
  int64_t B, Hq, Hkv, Lq, Lk, D, Dv, G;  // G = Hq / Hkv
  const int64_t *qs, *ks, *vs, *ms, *os;
  int mask_kind;
  const void* mask;
  bool causal;
  double scale, softcap, p;  // softcap 0: none
  uint64_t seed, offset;
  int64_t coff;  // causal offset Lk - Lq: query i sees key j iff j <= i + coff
};

/* Dropout keep test of element (b, h, i, j) per the numbering of attention.h. */
struct Dropout {
  const Problem& pb;
  float p;
  uint64_t base;          // element index of (b, h, i, 0)
  uint64_t group = ~0ull; // cached Philox group
  philox_out r{};
  CT_INLINE bool keep(int64_t j) {
    uint64_t e = base + (uint64_t)j;
    uint64_t g = e >> 2;
    if (g != group) { r = philox4x32_10(g, pb.seed, pb.offset); group = g; }
    return philox_unit(r.r[e & 3]) >= p;
  }
};

CT_INLINE uint64_t elem_base(const Problem& pb, int64_t b, int64_t h, int64_t i) {
  return (((uint64_t)b * pb.Hq + h) * pb.Lq + i) * pb.Lk;
}

/* Score adjustments for row i: returns the value to add to the scaled score (0, the additive
 * mask, or -inf when forbidden). */
template <class T, class C> CT_INLINE C mask_at(const Problem& pb, int64_t b, int64_t h, int64_t i, int64_t j) {
  if (pb.causal && j > i + pb.coff) return -INFINITY;
  if (pb.mask_kind == CT_ATTENTION_MASK_NONE) return 0;
  const int64_t off = b * pb.ms[0] + h * pb.ms[1] + i * pb.ms[2] + j * pb.ms[3];
  if (pb.mask_kind == CT_ATTENTION_MASK_BOOL) return ((const uint8_t*)pb.mask)[off] ? (C)0 : (C)-INFINITY;
  return (C)load((const T*)pb.mask + off);
}

/* The score after soft-capping: c tanh(s / c), or s without a cap. */
CT_INLINE double capped(const Problem& pb, double s) {
  return pb.softcap > 0 ? pb.softcap * std::tanh(s / pb.softcap) : s;
}

// ================================================================== naive reference
template <class T> void reference_forward(const Problem& pb, const T* q, const T* k, const T* v, T* o, float* lse) {
  const int64_t rows = pb.B * pb.Hq * pb.Lq;
  std::vector<double> buf((size_t)threads() * (size_t)(pb.Lk + pb.Dv));
  parallel_range(rows, (pb.Lk + 1) * (pb.D + pb.Dv), [&](int64_t r0, int64_t r1) {
    double* s = buf.data() + (size_t)omp_get_thread_num() * (size_t)(pb.Lk + pb.Dv);
    double* acc = s + pb.Lk;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r % pb.Lq, h = (r / pb.Lq) % pb.Hq, b = r / (pb.Lq * pb.Hq), hk = h / pb.G;
      const T* qr = q + b * pb.qs[0] + h * pb.qs[1] + i * pb.qs[2];
      double m = -INFINITY;
      for (int64_t j = 0; j < pb.Lk; ++j) {
        const T* kr = k + b * pb.ks[0] + hk * pb.ks[1] + j * pb.ks[2];
        double d = 0;
        for (int64_t c = 0; c < pb.D; ++c) d += (double)load(qr + c) * (double)load(kr + c);
        s[j] = capped(pb, d * pb.scale) + (double)mask_at<T, double>(pb, b, h, i, j);
        m = s[j] > m ? s[j] : m;
      }
      double l = 0;
      for (int64_t j = 0; j < pb.Lk; ++j) { s[j] = m == -INFINITY ? 0 : std::exp(s[j] - m); l += s[j]; }
      for (int64_t c = 0; c < pb.Dv; ++c) acc[c] = 0;
      if (l > 0) {
        Dropout dr{pb, (float)pb.p, elem_base(pb, b, h, i)};
        const double inv = 1.0 / (l * (1.0 - pb.p));
        for (int64_t j = 0; j < pb.Lk; ++j) {
          if (s[j] == 0 || (pb.p > 0 && !dr.keep(j))) continue;
          const T* vr = v + b * pb.vs[0] + hk * pb.vs[1] + j * pb.vs[2];
          for (int64_t c = 0; c < pb.Dv; ++c) acc[c] += s[j] * inv * (double)load(vr + c);
        }
      }
      T* orow = o + b * pb.os[0] + h * pb.os[1] + i * pb.os[2];
      for (int64_t c = 0; c < pb.Dv; ++c) store<T>(orow + c, (compute_t<T>)acc[c]);
      lse[r] = l > 0 ? (float)(m + std::log(l)) : -INFINITY;
    }
  });
}

template <class T>
void reference_backward(const Problem& pb, const T* q, const T* k, const T* v, const T* o, const int64_t* dos,
                        const T* d_o, const float* lse, T* dq, const int64_t* dqs, T* dk, const int64_t* dks, T* dv,
                        const int64_t* dvs) {
  const int64_t items = pb.B * pb.Hkv;
  const size_t per = (size_t)(2 * pb.Lk + pb.Lk * (pb.D + pb.Dv) + pb.D);
  std::vector<double> buf((size_t)threads() * per);
  parallel_range(items, pb.G * pb.Lq * pb.Lk * (pb.D + pb.Dv) + 1, [&](int64_t w0, int64_t w1) {
    double* P = buf.data() + (size_t)omp_get_thread_num() * per;
    double* dS = P + pb.Lk;
    double* dK = dS + pb.Lk;
    double* dV = dK + pb.Lk * pb.D;
    double* dQ = dV + pb.Lk * pb.Dv;
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t b = w / pb.Hkv, hk = w % pb.Hkv;
      for (int64_t x = 0; x < pb.Lk * (pb.D + pb.Dv); ++x) dK[x] = 0;
      auto K = [&](int64_t j) { return k + b * pb.ks[0] + hk * pb.ks[1] + j * pb.ks[2]; };
      auto V = [&](int64_t j) { return v + b * pb.vs[0] + hk * pb.vs[1] + j * pb.vs[2]; };
      for (int64_t h = hk * pb.G; h < (hk + 1) * pb.G; ++h)
        for (int64_t i = 0; i < pb.Lq; ++i) {
          const T* qr = q + b * pb.qs[0] + h * pb.qs[1] + i * pb.qs[2];
          const T* orow = o + b * pb.os[0] + h * pb.os[1] + i * pb.os[2];
          const T* gr = d_o + b * dos[0] + h * dos[1] + i * dos[2];
          T* dqr = dq + b * dqs[0] + h * dqs[1] + i * dqs[2];
          // The row's log-sum-exp is recomputed in double (the float32 lse would limit F64 accuracy).
          double L = -INFINITY, l = 0;
          for (int64_t j = 0; j < pb.Lk; ++j) {
            double d = 0;
            for (int64_t c = 0; c < pb.D; ++c) d += (double)load(qr + c) * (double)load(K(j) + c);
            const double sc = capped(pb, d * pb.scale);
            dS[j] = pb.softcap > 0 ? 1 - (sc / pb.softcap) * (sc / pb.softcap) : 1;  // d capped / d s
            P[j] = sc + (double)mask_at<T, double>(pb, b, h, i, j);
            L = P[j] > L ? P[j] : L;
          }
          for (int64_t j = 0; j < pb.Lk && L != -INFINITY; ++j) l += std::exp(P[j] - L);
          L = l > 0 ? L + std::log(l) : -INFINITY;
          for (int64_t c = 0; c < pb.D; ++c) dQ[c] = 0;
          if (L != -INFINITY) {
            double delta = 0;
            for (int64_t c = 0; c < pb.Dv; ++c) delta += (double)load(gr + c) * (double)load(orow + c);
            Dropout dr{pb, (float)pb.p, elem_base(pb, b, h, i)};
            for (int64_t j = 0; j < pb.Lk; ++j) {
              const double s = P[j];
              const double pj = s == -INFINITY ? 0 : std::exp(s - L);
              const double z = pb.p > 0 ? (dr.keep(j) ? 1.0 / (1.0 - pb.p) : 0.0) : 1.0;
              double dp = 0;
              for (int64_t c = 0; c < pb.Dv; ++c) dp += (double)load(gr + c) * (double)load(V(j) + c);
              P[j] = pj * z;
              dS[j] *= pj * (dp * z - delta);
            }
            for (int64_t j = 0; j < pb.Lk; ++j) {
              for (int64_t c = 0; c < pb.Dv; ++c) dV[j * pb.Dv + c] += P[j] * (double)load(gr + c);
              for (int64_t c = 0; c < pb.D; ++c) {
                dK[j * pb.D + c] += pb.scale * dS[j] * (double)load(qr + c);
                dQ[c] += pb.scale * dS[j] * (double)load(K(j) + c);
              }
            }
          }
          for (int64_t c = 0; c < pb.D; ++c) store<T>(dqr + c, (compute_t<T>)dQ[c]);
        }
      for (int64_t j = 0; j < pb.Lk; ++j) {
        T* dkr = dk + b * dks[0] + hk * dks[1] + j * dks[2];
        T* dvr = dv + b * dvs[0] + hk * dvs[1] + j * dvs[2];
        for (int64_t c = 0; c < pb.D; ++c) store<T>(dkr + c, (compute_t<T>)dK[j * pb.D + c]);
        for (int64_t c = 0; c < pb.Dv; ++c) store<T>(dvr + c, (compute_t<T>)dV[j * pb.Dv + c]);
      }
    }
  });
}

// ================================================================== blocked kernels
/* C[M x N] (+)= A[M x K] B[K x N]; B and C row-major with leading dimensions; element (i, k) of
 * A at A[i ars + k acs] (ars = lda, acs = 1 for a row-major A; ars = 1, acs = lda to read a
 * stored A^T without transposing it); N a multiple of the kernel width NW (16 for float AVX2, 32
 * for float AVX-512, 8 for double); the caller pads B and C. The register tiles are microkernel.h's. */
template <int MR>
CT_INLINE void mk_f32_avx2(int64_t K, const float* A, int64_t ars, int64_t acs, const float* Bm, int64_t ldb, float* Cm,
                           int64_t ldc, bool accumulate) {
  mk::f32_avx2<MR, 2>(1, K, mk::Strided<float>{A, ars, acs}, Bm, ldb, Cm, ldc, accumulate);
}

void gemm_f32_avx2(int64_t M, int64_t N, int64_t K, const float* A, int64_t ars, int64_t acs, const float* Bm, int64_t ldb,
                   float* Cm, int64_t ldc, bool accumulate) {
  for (int64_t n = 0; n < N; n += 16) {
    int64_t m = 0;
    for (; m + 6 <= M; m += 6) mk_f32_avx2<6>(K, A + m * ars, ars, acs, Bm + n, ldb, Cm + m * ldc + n, ldc, accumulate);
    const float* a = A + m * ars;
    float* c = Cm + m * ldc + n;
    switch (M - m) {
      case 5: mk_f32_avx2<5>(K, a, ars, acs, Bm + n, ldb, c, ldc, accumulate); break;
      case 4: mk_f32_avx2<4>(K, a, ars, acs, Bm + n, ldb, c, ldc, accumulate); break;
      case 3: mk_f32_avx2<3>(K, a, ars, acs, Bm + n, ldb, c, ldc, accumulate); break;
      case 2: mk_f32_avx2<2>(K, a, ars, acs, Bm + n, ldb, c, ldc, accumulate); break;
      case 1: mk_f32_avx2<1>(K, a, ars, acs, Bm + n, ldb, c, ldc, accumulate); break;
      default: break;
    }
  }
}

template <int MR>
CT_AVX512 CT_INLINE void mk_f32_avx512(int64_t K, const float* A, int64_t ars, int64_t acs, const float* Bm, int64_t ldb,
                                       float* Cm, int64_t ldc, bool accumulate) {
  mk::f32_avx512<MR, 2>(1, K, mk::Strided<float>{A, ars, acs}, Bm, ldb, Cm, ldc, accumulate);
}

/* N a multiple of 16; a 16-wide remainder goes through the AVX2 kernel. */
CT_AVX512 void gemm_f32_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t ars, int64_t acs, const float* Bm,
                               int64_t ldb, float* Cm, int64_t ldc, bool accumulate) {
  int64_t n = 0;
  for (; n + 32 <= N; n += 32) {
    int64_t m = 0;
    for (; m + 12 <= M; m += 12) mk_f32_avx512<12>(K, A + m * ars, ars, acs, Bm + n, ldb, Cm + m * ldc + n, ldc, accumulate);
    for (; m + 4 <= M; m += 4) mk_f32_avx512<4>(K, A + m * ars, ars, acs, Bm + n, ldb, Cm + m * ldc + n, ldc, accumulate);
    for (; m < M; ++m) mk_f32_avx512<1>(K, A + m * ars, ars, acs, Bm + n, ldb, Cm + m * ldc + n, ldc, accumulate);
  }
  if (n < N) gemm_f32_avx2(M, N - n, K, A, ars, acs, Bm + n, ldb, Cm + n, ldc, accumulate);
}

template <int MR>
CT_INLINE void mk_f64(int64_t K, const double* A, int64_t ars, int64_t acs, const double* Bm, int64_t ldb, double* Cm, int64_t ldc,
                      bool accumulate) {
  mk::f64_avx2<MR, 2>(1, K, mk::Strided<double>{A, ars, acs}, Bm, ldb, Cm, ldc, accumulate);
}

void gemm_f64(int64_t M, int64_t N, int64_t K, const double* A, int64_t ars, int64_t acs, const double* Bm, int64_t ldb,
              double* Cm, int64_t ldc, bool accumulate) {
  for (int64_t n = 0; n < N; n += 8) {
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) mk_f64<4>(K, A + m * ars, ars, acs, Bm + n, ldb, Cm + m * ldc + n, ldc, accumulate);
    for (; m < M; ++m) mk_f64<1>(K, A + m * ars, ars, acs, Bm + n, ldb, Cm + m * ldc + n, ldc, accumulate);
  }
}

/* The compute-type operations the blocked algorithm needs. */
template <class C> struct Ops;
template <> struct Ops<float> {
  bool avx512;
  static constexpr int64_t W = 16;  // padding unit of N
  int64_t strip_rows() const { return avx512 ? 12 : 6; }  // the micro-kernel's register tile height
  void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* Bm, int64_t ldb, float* Cm,
            int64_t ldc, bool acc) const {
    if (M <= 0 || N <= 0) return;
    if (avx512) gemm_f32_avx512(M, N, K, A, lda, 1, Bm, ldb, Cm, ldc, acc);
    else gemm_f32_avx2(M, N, K, A, lda, 1, Bm, ldb, Cm, ldc, acc);
  }
  /* The same with A stored transposed: A(i, k) = At[k lda + i]. */
  void gemm_at(int64_t M, int64_t N, int64_t K, const float* At, int64_t lda, const float* Bm, int64_t ldb, float* Cm,
               int64_t ldc, bool acc) const {
    if (M <= 0 || N <= 0) return;
    if (avx512) gemm_f32_avx512(M, N, K, At, 1, lda, Bm, ldb, Cm, ldc, acc);
    else gemm_f32_avx2(M, N, K, At, 1, lda, Bm, ldb, Cm, ldc, acc);
  }
  /* y[j] = exp(x[j] - m) for j < n (x[j] = -inf gives 0); returns the sum. */
  static float exp_row(float* x, int64_t n, float m) {
    float lane[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
      for (int t = 0; t < 16; ++t) {
        float e = exp_f32(x[j + t] - m);
        e = x[j + t] == -INFINITY ? 0.0f : e;
        x[j + t] = e;
        lane[t] += e;
      }
    float s = 0;
    for (; j < n; ++j) { float e = x[j] == -INFINITY ? 0.0f : exp_f32(x[j] - m); x[j] = e; s += e; }
    for (int t = 0; t < 16; ++t) s += lane[t];
    return s;
  }
  static float exp1(float x) { return x == -INFINITY ? 0.0f : exp_f32(x); }
  /* max(init, x[0..n)) in 16 independent lanes (a single running max is a chain of dependent
   * max instructions); NaN entries are skipped like the scalar comparison does. */
  static float row_max(const float* x, int64_t n, float init) {
    float lane[16];
    for (int t = 0; t < 16; ++t) lane[t] = init;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
      for (int t = 0; t < 16; ++t) lane[t] = x[j + t] > lane[t] ? x[j + t] : lane[t];
    float m = init;
    for (int t = 0; t < 16; ++t) m = lane[t] > m ? lane[t] : m;
    for (; j < n; ++j) m = x[j] > m ? x[j] : m;
    return m;
  }
  static float tanh1(float x) { return tanh_f32(x); }
};
template <> struct Ops<double> {
  bool avx512;
  static constexpr int64_t W = 8;
  int64_t strip_rows() const { return 4; }
  void gemm(int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* Bm, int64_t ldb, double* Cm,
            int64_t ldc, bool acc) const {
    if (M <= 0 || N <= 0) return;
    gemm_f64(M, N, K, A, lda, 1, Bm, ldb, Cm, ldc, acc);
  }
  void gemm_at(int64_t M, int64_t N, int64_t K, const double* At, int64_t lda, const double* Bm, int64_t ldb,
               double* Cm, int64_t ldc, bool acc) const {
    if (M <= 0 || N <= 0) return;
    gemm_f64(M, N, K, At, 1, lda, Bm, ldb, Cm, ldc, acc);
  }
  static double exp_row(double* x, int64_t n, double m) {
    double s = 0;
    for (int64_t j = 0; j < n; ++j) { double e = x[j] == -INFINITY ? 0.0 : std::exp(x[j] - m); x[j] = e; s += e; }
    return s;
  }
  static double exp1(double x) { return x == -INFINITY ? 0.0 : std::exp(x); }
  static double row_max(const double* x, int64_t n, double init) {
    double m = init;
    for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
    return m;
  }
  static double tanh1(double x) { return std::tanh(x); }
};

CT_INLINE int64_t pad_to(int64_t n, int64_t w) { return (n + w - 1) / w * w; }

/* Loads rows [r0, r0 + n) of a [L, F] slice (row stride rs) into dst[n][ld] scaled by mul, zero
 * padding columns F..ld and rows n..nrows. */
template <class T, class C>
CT_INLINE void load_rows(const T* src, int64_t rs, int64_t n, int64_t F, C* dst, int64_t ld, int64_t nrows, C mul) {
  for (int64_t r = 0; r < nrows; ++r) {
    C* d = dst + r * ld;
    if (r < n) {
      const T* s = src + r * rs;
      for (int64_t c = 0; c < F; ++c) d[c] = (C)load(s + c) * mul;
      for (int64_t c = F; c < ld; ++c) d[c] = 0;
    } else {
      for (int64_t c = 0; c < ld; ++c) d[c] = 0;
    }
  }
}

/* Every (b, kv head) slice of a [B, Hkv, L, F] operand (row stride st[2]) transposed and widened
 * once, one contiguous [F][BK] panel per key block: dst[(b Hkv + hk) F LP + j0 F + c BK + r] =
 * src[b, hk, j0 + r, c], zero for j0 + r in [L, LP), LP a multiple of BK. The blocked kernels read
 * key (value) block j0 at offset j0 F with leading dimension BK, so a block is transposed once, not
 * once per query block that reads it, and its F rows lie in 4F * BK contiguous bytes (with the
 * leading dimension LP, a multiple of 4 KiB at L >= 1024, every row of the panel fell into the same
 * L1 set and the micro-kernel's B loads missed L1). Memory: the size of the operand in the
 * compute type (O(L) per head). */
template <class T, class C>
void transpose_all(const Problem& pb, const T* src, const int64_t* st, int64_t L, int64_t F, int64_t LP, HostBuffer<C>& dst) {
  const int64_t nb = LP / BK;
  parallel_range(pb.B * pb.Hkv * nb, BK * F * 2, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t jb = w % nb, hk = (w / nb) % pb.Hkv, b = w / (nb * pb.Hkv);
      const int64_t j0 = jb * BK, n = L - j0 < BK ? (L - j0 > 0 ? L - j0 : 0) : BK;
      const T* sp = src + b * st[0] + hk * st[1] + j0 * st[2];
      C* dp = dst.data() + (b * pb.Hkv + hk) * F * LP + j0 * F;
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < F; ++c) dp[c * BK + r] = (C)load(sp + r * st[2] + c);
      for (int64_t c = 0; c < F; ++c)
        for (int64_t r = n; r < BK; ++r) dp[c * BK + r] = 0;
    }
  });
}

/* Soft-caps the score block S[nq][ld] (keys 0..nk) in place: S = c tanh(S / c); with dcap, also
 * stores d(capped)/dS = 1 - tanh^2 there (the backward's factor). No-op without a cap. */
template <class C>
CT_INLINE void softcap_block(const Problem& pb, int64_t nq, int64_t nk, C* S, int64_t ld, C* dcap) {
  if (!(pb.softcap > 0)) return;
  const C cap = (C)pb.softcap, inv = (C)(1.0 / pb.softcap);
  for (int64_t r = 0; r < nq; ++r) {
    C* s = S + r * ld;
    C* g = dcap ? dcap + r * ld : nullptr;
    for (int64_t c = 0; c < nk; ++c) {
      const C t = Ops<C>::tanh1(s[c] * inv);
      s[c] = cap * t;
      if (g) g[c] = (C)1 - t * t;
    }
  }
}

/* Applies mask and causality to the score block S[nq][ld] of rows i0.., keys j0..; returns
 * nothing: forbidden entries become -inf, additive masks are added. */
template <class T, class C>
CT_INLINE void mask_block(const Problem& pb, int64_t b, int64_t h, int64_t i0, int64_t nq, int64_t j0, int64_t nk, C* S,
                          int64_t ld) {
  const bool need_causal = pb.causal && j0 + nk - 1 > i0 + pb.coff;
  if (pb.mask_kind == CT_ATTENTION_MASK_NONE && !need_causal) return;
  for (int64_t r = 0; r < nq; ++r) {
    C* s = S + r * ld;
    const int64_t i = i0 + r;
    if (pb.mask_kind == CT_ATTENTION_MASK_BOOL) {
      const uint8_t* mr = (const uint8_t*)pb.mask + b * pb.ms[0] + h * pb.ms[1] + i * pb.ms[2] + j0 * pb.ms[3];
      for (int64_t c = 0; c < nk; ++c) s[c] = mr[c * pb.ms[3]] ? s[c] : (C)-INFINITY;
    } else if (pb.mask_kind == CT_ATTENTION_MASK_ADDITIVE) {
      const T* mr = (const T*)pb.mask + b * pb.ms[0] + h * pb.ms[1] + i * pb.ms[2] + j0 * pb.ms[3];
      for (int64_t c = 0; c < nk; ++c) s[c] += (C)load(mr + c * pb.ms[3]);
    }
    if (need_causal) {
      int64_t first = i + pb.coff + 1 - j0;  // first forbidden column
      if (first < 0) first = 0;
      for (int64_t c = first; c < nk; ++c) s[c] = -INFINITY;
    }
  }
}

/* Exclusive end of the keys query rows [i0, i0 + nq) may see. */
CT_INLINE int64_t key_end(const Problem& pb, int64_t i0, int64_t nq) {
  if (!pb.causal) return pb.Lk;
  int64_t e = i0 + nq - 1 + pb.coff + 1;
  return e < 0 ? 0 : (e > pb.Lk ? pb.Lk : e);
}
/* First query row that sees key j0 (causal), clamped to [0, Lq]. */
CT_INLINE int64_t query_begin(const Problem& pb, int64_t j0) {
  if (!pb.causal) return 0;
  int64_t i = j0 - pb.coff;
  return i < 0 ? 0 : (i > pb.Lq ? pb.Lq : i);
}

/* The online-softmax step of the forward for one score block S[nq][ld] (keys 0..nk), per row r:
 *   mx = max(m[r], max_c S[r][c]); a row with mx = -inf (nothing visible yet) is zeroed;
 *   otherwise alpha = exp(m[r] - mx), S[r][c] = exp(S[r][c] - mx) (exactly 0 where S = -inf),
 *   l[r] = alpha l[r] + sum_c S[r][c], m[r] = mx, and O[r][0..no) *= alpha (O may be NULL).
 * NaN scores are skipped by the maximum and propagate through exp. Cost per score: a max, an
 * exp (~15 FLOPs) and an add, i.e. about 1/8 of the score's 2 x 2D matmul FLOPs at D = 64, so it
 * must run at vector speed: the float version is explicit AVX-512 (GCC does not vectorize this
 * loop shape; it had been as slow as both block matmuls together). */
template <class C>
void online_softmax_generic(int64_t nq, int64_t nk, C* S, int64_t ld, C* m, C* l, C* O, int64_t no) {
  for (int64_t r = 0; r < nq; ++r) {
    C* s = S + r * ld;
    const C mx = Ops<C>::row_max(s, nk, m[r]);
    if (mx == -INFINITY) {
      for (int64_t c = 0; c < nk; ++c) s[c] = 0;
      continue;
    }
    const C alpha = Ops<C>::exp1(m[r] - mx);
    l[r] = l[r] * alpha + Ops<C>::exp_row(s, nk, mx);
    m[r] = mx;
    if (O && alpha != (C)1)
      for (int64_t c = 0; c < no; ++c) O[r * no + c] *= alpha;
  }
}

/* The same for float in AVX-512, with the same results bit for bit (exp_f32x16 is exp_f32, and the
 * row sum keeps exp_row's order); no is a multiple of 16 (O's rows are padded to Ops<float>::W). */
CT_AVX512 void online_softmax_f32_avx512(int64_t nq, int64_t nk, float* S, int64_t ld, float* m, float* l, float* O,
                                         int64_t no) {
  const int64_t full = nk & ~(int64_t)15;
  const __mmask16 tail = (__mmask16)((1u << (nk & 15)) - 1u);
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (int64_t r = 0; r < nq; ++r) {
    float* s = S + r * ld;
    __m512 vm = _mm512_set1_ps(m[r]);
    for (int64_t c = 0; c < full; c += 16) vm = _mm512_max_ps(_mm512_loadu_ps(s + c), vm);  // NaN: keeps vm
    if (tail) vm = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tail, s + full), vm);
    const float mx = _mm512_reduce_max_ps(vm);
    if (mx == -INFINITY) {
      for (int64_t c = 0; c < nk; ++c) s[c] = 0;
      continue;
    }
    const float alpha = m[r] == -INFINITY ? 0.0f : exp_f32(m[r] - mx);
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t c = 0; c < full; c += 16) {
      const __m512 x = _mm512_loadu_ps(s + c);
      const __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, ninf, _CMP_NEQ_UQ), exp_f32x16(_mm512_sub_ps(x, vmx)));
      _mm512_storeu_ps(s + c, e);
      sum = _mm512_add_ps(sum, e);
    }
    // the sum in the generic order (Ops<float>::exp_row): the tail one by one, then the 16 lanes
    float total = 0.0f;
    if (tail) {
      const __m512 x = _mm512_mask_loadu_ps(ninf, tail, s + full);
      const __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, ninf, _CMP_NEQ_UQ), exp_f32x16(_mm512_sub_ps(x, vmx)));
      _mm512_mask_storeu_ps(s + full, tail, e);
      for (int64_t c = full; c < nk; ++c) total += s[c];
    }
    alignas(64) float lane[16];
    _mm512_store_ps(lane, sum);
    for (int t = 0; t < 16; ++t) total += lane[t];
    l[r] = l[r] * alpha + total;
    m[r] = mx;
    if (O && alpha != 1.0f) {
      const __m512 va = _mm512_set1_ps(alpha);
      float* orow = O + r * no;
      for (int64_t c = 0; c < no; c += 16) _mm512_storeu_ps(orow + c, _mm512_mul_ps(_mm512_loadu_ps(orow + c), va));
    }
  }
}

template <class C>
CT_INLINE void online_softmax_block(const Ops<C>& ops, int64_t nq, int64_t nk, C* S, int64_t ld, C* m, C* l, C* O,
                                    int64_t no) {
  if constexpr (std::is_same<C, float>::value) {
    if (ops.avx512) return online_softmax_f32_avx512(nq, nk, S, ld, m, l, O, no);
  }
  online_softmax_generic(nq, nk, S, ld, m, l, O, no);
}

/* With o == NULL only lse is computed (the F64 backward recomputes an exact double lse). */
template <class T, class C, class LseT>
void blocked_forward(const Problem& pb, const T* q, const T* k, const T* v, T* o, LseT* lse) {
  const Ops<C> ops{use_avx512()};
  const int64_t W = Ops<C>::W;
  const int64_t Dvp = pad_to(pb.Dv, W), BKP = pad_to(BK, W);
  const int64_t MS = ops.strip_rows();
  const size_t per = (size_t)(BQ * pb.D + BK * Dvp + BQ * BKP + BQ * Dvp + 2 * BQ + 16);
  const int64_t nqb = (pb.Lq + BQ - 1) / BQ;
  const int64_t items = pb.B * pb.Hq * nqb;
  const int64_t LkP = pad_to(pb.Lk, BK);
  HostBuffer<C> kt_all(pb.B * pb.Hkv * pb.D * LkP);
  transpose_all<T, C>(pb, k, pb.ks, pb.Lk, pb.D, LkP, kt_all);
  int nt = threads();
  if (nt > items) nt = (int)items;
  if ((double)items * BQ * pb.Lk * (pb.D + pb.Dv) < 1e5) nt = 1;
  HostBuffer<C> scratch((int64_t)nt * (int64_t)per);
#pragma omp parallel num_threads(nt)
  {
    C* Qs = scratch.data() + (size_t)omp_get_thread_num() * per;
    C* Vb = Qs + BQ * pb.D;
    C* S = Vb + BK * Dvp;
    C* O = S + BQ * BKP;
    C* m = O + BQ * Dvp;
    C* l = m + BQ;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t qb = it % nqb, h = (it / nqb) % pb.Hq, b = it / (nqb * pb.Hq), hk = h / pb.G;
      const int64_t i0 = qb * BQ, nq = pb.Lq - i0 < BQ ? pb.Lq - i0 : BQ;
      load_rows(q + b * pb.qs[0] + h * pb.qs[1] + i0 * pb.qs[2], pb.qs[2], nq, pb.D, Qs, pb.D, nq, (C)pb.scale);
      for (int64_t r = 0; r < nq; ++r) { m[r] = -INFINITY; l[r] = 0; }
      for (int64_t x = 0; x < nq * Dvp; ++x) O[x] = 0;
      const C* kt = kt_all.data() + (b * pb.Hkv + hk) * pb.D * LkP;
      const T* vbase = v + b * pb.vs[0] + hk * pb.vs[1];
      const int64_t jend = key_end(pb, i0, nq);
      for (int64_t j0 = 0; j0 < jend; j0 += BK) {
        const int64_t nk = jend - j0 < BK ? jend - j0 : BK;
        const int64_t nkp = pad_to(nk, W);
        if (o) load_rows(vbase + j0 * pb.vs[2], pb.vs[2], nk, pb.Dv, Vb, Dvp, nk, (C)1);
        // Strips of MS query rows go through all three steps while the key panel and the value
        // block (2 x 16 KiB at D = 64) stay in L1; the strip's Q, S and O rows add 3 x 3 KiB.
        for (int64_t r0 = 0; r0 < nq; r0 += MS) {
          const int64_t ms = nq - r0 < MS ? nq - r0 : MS;
          C* Sr = S + r0 * BKP;
          ops.gemm(ms, nkp, pb.D, Qs + r0 * pb.D, pb.D, kt + j0 * pb.D, BK, Sr, BKP, false);
          softcap_block<C>(pb, ms, nk, Sr, BKP, nullptr);
          mask_block<T, C>(pb, b, h, i0 + r0, ms, j0, nk, Sr, BKP);
          online_softmax_block(ops, ms, nk, Sr, BKP, m + r0, l + r0, o ? O + r0 * Dvp : nullptr, Dvp);
          if (!o) continue;
          if (pb.p > 0)
            for (int64_t r = 0; r < ms; ++r) {
              C* s = Sr + r * BKP;
              Dropout dr{pb, (float)pb.p, elem_base(pb, b, h, i0 + r0 + r) + (uint64_t)j0};
              const C zs = (C)(1.0 / (1.0 - pb.p));
              for (int64_t c = 0; c < nk; ++c) s[c] = dr.keep(c) ? s[c] * zs : (C)0;
            }
          ops.gemm(ms, Dvp, nk, Sr, BKP, Vb, Dvp, O + r0 * Dvp, Dvp, true);
        }
      }
      for (int64_t r = 0; r < nq; ++r) {
        lse[(b * pb.Hq + h) * pb.Lq + i0 + r] = l[r] > 0 ? (LseT)(m[r] + std::log(l[r])) : (LseT)-INFINITY;
        if (!o) continue;
        T* orow = o + b * pb.os[0] + h * pb.os[1] + (i0 + r) * pb.os[2];
        const C inv = l[r] > 0 ? (C)1 / l[r] : (C)0;
        for (int64_t c = 0; c < pb.Dv; ++c) store<T>(orow + c, (compute_t<T>)(O[r * Dvp + c] * inv));
      }
    }
  }
}

/* One row of softmax_grad_block without dropout or soft cap, for float in AVX-512 (the generic loop
 * runs at scalar speed): s = exp(s - lse) (0 where s = -inf), dp = s (dp - delta). */
CT_AVX512 void softmax_grad_row_f32_avx512(int64_t nk, float* s, float* dp, float lse, float delta) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY), vl = _mm512_set1_ps(lse), vd = _mm512_set1_ps(delta);
  for (int64_t c = 0; c < nk; c += 16) {
    const __mmask16 k = nk - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nk - c)) - 1u);
    const __m512 x = _mm512_mask_loadu_ps(ninf, k, s + c);
    const __m512 e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, ninf, _CMP_NEQ_UQ), exp_f32x16(_mm512_sub_ps(x, vl)));
    _mm512_mask_storeu_ps(s + c, k, e);
    const __m512 g = _mm512_maskz_loadu_ps(k, dp + c);
    _mm512_mask_storeu_ps(dp + c, k, _mm512_mul_ps(e, _mm512_sub_ps(g, vd)));
  }
}

/* Recomputes the block P = exp(S - lse) into S and dS = P (dP z - Delta) into dP (times dcap, the
 * soft-cap derivative, when there is a cap); P is left multiplied by the dropout scale z (the P
 * that multiplied V). */
template <class T, class C, class LseT>
CT_INLINE void softmax_grad_block(const Problem& pb, int64_t b, int64_t h, int64_t i0, int64_t nq, int64_t j0,
                                  int64_t nk, C* S, C* dP, int64_t ld, const LseT* lse, const C* delta,
                                  const C* dcap) {
  for (int64_t r = 0; r < nq; ++r) {
    C* s = S + r * ld;
    C* dp = dP + r * ld;
    const C L = (C)lse[r];
    if (L == -INFINITY) {
      for (int64_t c = 0; c < nk; ++c) { s[c] = 0; dp[c] = 0; }
      continue;
    }
    const C dl = delta[r];
    if constexpr (std::is_same<C, float>::value) {
      if (pb.p == 0 && !(pb.softcap > 0) && use_avx512()) {
        softmax_grad_row_f32_avx512(nk, s, dp, L, dl);
        continue;
      }
    }
    Ops<C>::exp_row(s, nk, L);
    if (pb.p > 0) {
      Dropout dr{pb, (float)pb.p, elem_base(pb, b, h, i0 + r) + (uint64_t)j0};
      const C zs = (C)(1.0 / (1.0 - pb.p));
      for (int64_t c = 0; c < nk; ++c) {
        const C z = dr.keep(c) ? zs : (C)0;
        dp[c] = s[c] * (dp[c] * z - dl);
        s[c] *= z;
      }
    } else {
      for (int64_t c = 0; c < nk; ++c) dp[c] = s[c] * (dp[c] - dl);
    }
    if (pb.softcap > 0) {
      const C* g = dcap + r * ld;
      for (int64_t c = 0; c < nk; ++c) dp[c] *= g[c];
    }
  }
}

template <class T, class C>
void blocked_backward(const Problem& pb, const T* q, const T* k, const T* v, const T* o, const int64_t* dos,
                      const T* d_o, const float* lse, T* dq, const int64_t* dqs, T* dk, const int64_t* dks, T* dv,
                      const int64_t* dvs) {
  // F64: the float32 lse of the forward would cost ~1e-7 relative error in P; recompute it in double.
  std::vector<double> lse64;
  using LseT = std::conditional_t<std::is_same_v<C, double>, double, float>;
  const LseT* lse_all;
  if constexpr (std::is_same_v<C, double>) {
    lse64.resize((size_t)(pb.B * pb.Hq * pb.Lq));
    if (pb.Lq > 0) blocked_forward<T, C, double>(pb, q, k, v, nullptr, lse64.data());
    lse_all = lse64.data();
  } else {
    lse_all = lse;
  }
  const Ops<C> ops{use_avx512()};
  const int64_t W = Ops<C>::W;
  const int64_t Dp = pad_to(pb.D, W), Dvp = pad_to(pb.Dv, W), BKP = pad_to(BK, W);
  // Delta = rowsum(dO * O) for every query row.
  const int64_t rows = pb.B * pb.Hq * pb.Lq;
  HostBuffer<C> delta(rows);
  parallel_range(rows, pb.Dv * 2, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r % pb.Lq, h = (r / pb.Lq) % pb.Hq, b = r / (pb.Lq * pb.Hq);
      const T* a = o + b * pb.os[0] + h * pb.os[1] + i * pb.os[2];
      const T* g = d_o + b * dos[0] + h * dos[1] + i * dos[2];
      C s = 0;
      for (int64_t c = 0; c < pb.Dv; ++c) s += (C)load(a + c) * (C)load(g + c);
      delta[r] = s;
    }
  });
  // K and V transposed once (both passes read their blocks from there).
  const int64_t LkP = pad_to(pb.Lk, BK);
  HostBuffer<C> kt_all(pb.B * pb.Hkv * pb.D * LkP), vt_all(pb.B * pb.Hkv * pb.Dv * LkP);
  transpose_all<T, C>(pb, k, pb.ks, pb.Lk, pb.D, LkP, kt_all);
  transpose_all<T, C>(pb, v, pb.vs, pb.Lk, pb.Dv, LkP, vt_all);
  // Scratch: Qs[BQ][Dp], dO[BQ][Dvp], Kb[BK][Dp], S/dP[BQ][BKP], dK[BK][Dp], dV[BK][Dvp] (pass 2
  // uses dK's space as dQ[BQ][Dp]), the soft-cap derivative Gc[BQ][BKP]. P^T and dS^T are read
  // in place (gemm_at), never transposed.
  const size_t per = (size_t)(BQ * Dp + BQ * Dvp + BK * Dp + 3 * BQ * BKP + (BK > BQ ? BK : BQ) * Dp + BK * Dvp + 16);
  int nt = threads();
  HostBuffer<C> scratch((int64_t)nt * (int64_t)per);
  const bool small = (double)pb.B * pb.Hq * pb.Lq * pb.Lk * (pb.D + pb.Dv) < 2e5;
  if (small) nt = 1;
  const int64_t nkb = (pb.Lk + BK - 1) / BK, nqb = (pb.Lq + BQ - 1) / BQ;
  const int64_t items1 = pb.B * pb.Hkv * nkb, items2 = pb.B * pb.Hq * nqb;
#pragma omp parallel num_threads(nt)
  {
    C* Qs = scratch.data() + (size_t)omp_get_thread_num() * per;
    C* dO = Qs + BQ * Dp;
    C* Kb = dO + BQ * Dvp;
    C* S = Kb + BK * Dp;
    C* dP = S + BQ * BKP;
    C* dK = dP + BQ * BKP;
    C* dV = dK + (BK > BQ ? BK : BQ) * Dp;
    C* Gc = dV + BK * Dvp;
    // ---------------- pass 1: dK, dV per (b, kv head, key block)
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items1; ++it) {
      const int64_t kb = it % nkb, hk = (it / nkb) % pb.Hkv, b = it / (nkb * pb.Hkv);
      const int64_t j0 = kb * BK, nk = pb.Lk - j0 < BK ? pb.Lk - j0 : BK, nkp = pad_to(nk, W);
      const C* Kt = kt_all.data() + (b * pb.Hkv + hk) * pb.D * LkP + j0 * pb.D;
      const C* Vt = vt_all.data() + (b * pb.Hkv + hk) * pb.Dv * LkP + j0 * pb.Dv;
      for (int64_t x = 0; x < BK * Dp; ++x) dK[x] = 0;
      for (int64_t x = 0; x < BK * Dvp; ++x) dV[x] = 0;
      const int64_t ibeg = query_begin(pb, j0) / BQ * BQ;
      for (int64_t h = hk * pb.G; h < (hk + 1) * pb.G; ++h) {
        const LseT* lse_h = lse_all + (b * pb.Hq + h) * pb.Lq;
        const C* delta_h = delta.data() + (b * pb.Hq + h) * pb.Lq;
        for (int64_t i0 = ibeg; i0 < pb.Lq; i0 += BQ) {
          const int64_t nq = pb.Lq - i0 < BQ ? pb.Lq - i0 : BQ;
          load_rows(q + b * pb.qs[0] + h * pb.qs[1] + i0 * pb.qs[2], pb.qs[2], nq, pb.D, Qs, Dp, nq, (C)pb.scale);
          load_rows(d_o + b * dos[0] + h * dos[1] + i0 * dos[2], dos[2], nq, pb.Dv, dO, Dvp, nq, (C)1);
          ops.gemm(nq, nkp, pb.D, Qs, Dp, Kt, BK, S, BKP, false);
          softcap_block<C>(pb, nq, nk, S, BKP, Gc);
          mask_block<T, C>(pb, b, h, i0, nq, j0, nk, S, BKP);
          ops.gemm(nq, nkp, pb.Dv, dO, Dvp, Vt, BK, dP, BKP, false);
          softmax_grad_block<T, C, LseT>(pb, b, h, i0, nq, j0, nk, S, dP, BKP, lse_h + i0, delta_h + i0, Gc);
          ops.gemm_at(nk, Dvp, nq, S, BKP, dO, Dvp, dV, Dvp, true);   // dV += (P z)^T dO
          ops.gemm_at(nk, Dp, nq, dP, BKP, Qs, Dp, dK, Dp, true);    // dK += dS^T Qs
        }
      }
      for (int64_t r = 0; r < nk; ++r) {
        T* dkr = dk + b * dks[0] + hk * dks[1] + (j0 + r) * dks[2];
        T* dvr = dv + b * dvs[0] + hk * dvs[1] + (j0 + r) * dvs[2];
        for (int64_t c = 0; c < pb.D; ++c) store<T>(dkr + c, (compute_t<T>)dK[r * Dp + c]);
        for (int64_t c = 0; c < pb.Dv; ++c) store<T>(dvr + c, (compute_t<T>)dV[r * Dvp + c]);
      }
    }
    // ---------------- pass 2: dQ per (b, h, query block)
    C* dQ = dK;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items2; ++it) {
      const int64_t qb = it % nqb, h = (it / nqb) % pb.Hq, b = it / (nqb * pb.Hq), hk = h / pb.G;
      const int64_t i0 = qb * BQ, nq = pb.Lq - i0 < BQ ? pb.Lq - i0 : BQ;
      load_rows(q + b * pb.qs[0] + h * pb.qs[1] + i0 * pb.qs[2], pb.qs[2], nq, pb.D, Qs, Dp, nq, (C)pb.scale);
      load_rows(d_o + b * dos[0] + h * dos[1] + i0 * dos[2], dos[2], nq, pb.Dv, dO, Dvp, nq, (C)1);
      for (int64_t x = 0; x < BQ * Dp; ++x) dQ[x] = 0;
      const LseT* lse_h = lse_all + (b * pb.Hq + h) * pb.Lq + i0;
      const C* delta_h = delta.data() + (b * pb.Hq + h) * pb.Lq + i0;
      const int64_t jend = key_end(pb, i0, nq);
      for (int64_t j0 = 0; j0 < jend; j0 += BK) {
        const int64_t nk = jend - j0 < BK ? jend - j0 : BK, nkp = pad_to(nk, W);
        const T* kr = k + b * pb.ks[0] + hk * pb.ks[1] + j0 * pb.ks[2];
        const C* Kt = kt_all.data() + (b * pb.Hkv + hk) * pb.D * LkP + j0 * pb.D;
        const C* Vt = vt_all.data() + (b * pb.Hkv + hk) * pb.Dv * LkP + j0 * pb.Dv;
        load_rows(kr, pb.ks[2], nk, pb.D, Kb, Dp, nk, (C)pb.scale);
        ops.gemm(nq, nkp, pb.D, Qs, Dp, Kt, BK, S, BKP, false);
        softcap_block<C>(pb, nq, nk, S, BKP, Gc);
        mask_block<T, C>(pb, b, h, i0, nq, j0, nk, S, BKP);
        ops.gemm(nq, nkp, pb.Dv, dO, Dvp, Vt, BK, dP, BKP, false);
        softmax_grad_block<T, C, LseT>(pb, b, h, i0, nq, j0, nk, S, dP, BKP, lse_h, delta_h, Gc);
        ops.gemm(nq, Dp, nk, dP, BKP, Kb, Dp, dQ, Dp, true);
      }
      for (int64_t r = 0; r < nq; ++r) {
        T* dqr = dq + b * dqs[0] + h * dqs[1] + (i0 + r) * dqs[2];
        for (int64_t c = 0; c < pb.D; ++c) store<T>(dqr + c, (compute_t<T>)dQ[r * Dp + c]);
      }
    }
  }
}

// ================================================================== validation and dispatch
bool use_reference() {
  static const bool r = [] {
    const char* e = std::getenv("CORTADO_ATTENTION_REFERENCE");
    return e && e[0] == '1';
  }();
  return r;
}

/* Validates the arguments shared by forward and backward; fills pb. Returns CT_OK or an error. */
int setup(const char* fn, Problem& pb, int dtype, const int64_t* dims, const void* q, const int64_t* qs, const void* k,
          const int64_t* ks, const void* v, const int64_t* vs, int mask_kind, const void* mask, const int64_t* ms,
          int causal, double scale, double softcap, double dropout_p, uint64_t seed, uint64_t offset,
          const int64_t* os) {
  const int st =
      attention::check_args(fn, dtype, dims, q, qs, k, ks, v, vs, mask_kind, mask, ms, scale, softcap, dropout_p, os);
  if (st) return st;
  pb.B = dims[0]; pb.Hq = dims[1]; pb.Hkv = dims[2]; pb.Lq = dims[3]; pb.Lk = dims[4]; pb.D = dims[5]; pb.Dv = dims[6];
  pb.G = pb.Hq / pb.Hkv;
  pb.qs = qs; pb.ks = ks; pb.vs = vs; pb.ms = ms; pb.os = os;
  pb.mask_kind = mask_kind; pb.mask = mask; pb.causal = causal != 0;
  pb.scale = scale; pb.softcap = softcap; pb.p = dropout_p; pb.seed = seed; pb.offset = offset; pb.coff = pb.Lk - pb.Lq;
  return CT_OK;
}

}  // namespace
}  // namespace ct

using namespace ct;

static int forward_flat(const char* fn, int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                        const void* k, const int64_t* k_strides, const void* v, const int64_t* v_strides,
                        int mask_kind, const void* mask, const int64_t* mask_strides, int causal, double scale,
                        double softcap, double dropout_p, uint64_t seed, uint64_t offset, void* o,
                        const int64_t* o_strides, float* lse) {
  CT_TRY
  if (!o_strides) return fail(CT_ERR_INVALID_ARG, "%s: o_strides is NULL", fn);
  Problem pb{};
  int st = setup(fn, pb, dtype, dims, q, q_strides, k, k_strides, v, v_strides, mask_kind, mask, mask_strides, causal,
                 scale, softcap, dropout_p, seed, offset, o_strides);
  if (st) return st;
  if (pb.B == 0 || pb.Lq == 0) return CT_OK;
  if ((st = check_ptr(fn, "o", o)) || (st = check_ptr(fn, "lse", lse))) return st;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
    if (use_reference())
      reference_forward<T>(pb, (const T*)q, (const T*)k, (const T*)v, (T*)o, lse);
    else
      blocked_forward<T, C, float>(pb, (const T*)q, (const T*)k, (const T*)v, (T*)o, lse);
  });
  return CT_OK;
  CT_CATCH(fn)
}

static int backward_flat(const char* fn, int dtype, const int64_t* dims, const void* q,
                         const int64_t* q_strides, const void* k, const int64_t* k_strides, const void* v,
                         const int64_t* v_strides, int mask_kind, const void* mask, const int64_t* mask_strides,
                         int causal, double scale, double softcap, double dropout_p, uint64_t seed,
                         uint64_t offset, const void* o, const int64_t* o_strides, const void* d_o,
                         const int64_t* do_strides, const float* lse, void* dq, const int64_t* dq_strides,
                         void* dk, const int64_t* dk_strides, void* dv, const int64_t* dv_strides) {
  CT_TRY
  if (!o_strides) return fail(CT_ERR_INVALID_ARG, "%s: o_strides is NULL", fn);
  Problem pb{};
  int st = setup(fn, pb, dtype, dims, q, q_strides, k, k_strides, v, v_strides, mask_kind, mask, mask_strides, causal,
                 scale, softcap, dropout_p, seed, offset, o_strides);
  if (st) return st;
  if ((st = attention::check_backward_args(fn, dims, o, d_o, do_strides, lse, dq, dq_strides, dk, dk_strides, dv,
                                           dv_strides)))
    return st;
  if (pb.B == 0 || (pb.Lq == 0 && pb.Lk == 0)) return CT_OK;
  if (pb.Lk > 0 && pb.Lq == 0) {  // no queries: dK = dV = 0
    if ((st = check_ptr(fn, "k", k))) return st;
  }
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
    if (use_reference())
      reference_backward<T>(pb, (const T*)q, (const T*)k, (const T*)v, (const T*)o, do_strides, (const T*)d_o, lse,
                            (T*)dq, dq_strides, (T*)dk, dk_strides, (T*)dv, dv_strides);
    else
      blocked_backward<T, C>(pb, (const T*)q, (const T*)k, (const T*)v, (const T*)o, do_strides, (const T*)d_o, lse,
                             (T*)dq, dq_strides, (T*)dk, dk_strides, (T*)dv, dv_strides);
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_rope(int dtype, const int64_t* dims4, void* x, const int64_t* x_strides,
                           const int64_t* positions, int64_t rotary_dim, double base, int interleaved, int inverse, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_rope";
  CT_TRY
  int st = attention::check_rope_args(fn, dtype, dims4, x, x_strides, rotary_dim, base);
  if (st) return st;
  const int64_t B = dims4[0], H = dims4[1], L = dims4[2];
  if (B == 0 || H == 0 || L == 0) return CT_OK;
  const int64_t half = rotary_dim / 2;
  std::vector<double> tab((size_t)threads() * (size_t)(2 * half));
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
    T* xp = (T*)x;
    parallel_range(L, B * H * rotary_dim * 3 + half * 40, [&](int64_t l0, int64_t l1) {
      double* cs = tab.data() + (size_t)omp_get_thread_num() * (size_t)(2 * half);
      double* sn = cs + half;
      for (int64_t l = l0; l < l1; ++l) {
        const double p = positions ? (double)positions[l] : (double)l;
        for (int64_t i = 0; i < half; ++i) {
          const double ang = p * std::pow(base, -2.0 * (double)i / (double)rotary_dim);
          cs[i] = std::cos(ang);
          sn[i] = inverse ? -std::sin(ang) : std::sin(ang);
        }
        for (int64_t b = 0; b < B; ++b)
          for (int64_t h = 0; h < H; ++h) {
            T* r = xp + b * x_strides[0] + h * x_strides[1] + l * x_strides[2];
            for (int64_t i = 0; i < half; ++i) {
              T* pa = interleaved ? r + 2 * i : r + i;
              T* pbp = interleaved ? r + 2 * i + 1 : r + i + half;
              const double a = (double)load(pa), bb = (double)load(pbp);
              store<T>(pa, (C)(a * cs[i] - bb * sn[i]));
              store<T>(pbp, (C)(a * sn[i] + bb * cs[i]));
            }
          }
      }
    });
  });
  return CT_OK;
  CT_CATCH(fn)
}

// ---------------------------------------------------------------- the C interface (descriptors)
extern "C" int ct_cpu_attention_forward(const ct_tensor* q, const ct_tensor* k, const ct_tensor* v,
                                        const ct_tensor* mask, const ct_attention_params* params,
                                        const ct_tensor* o, float* lse, int64_t stream) {
  static const char* fn = "ct_cpu_attention_forward";
  attention::Flat f;
  if (!o) return fail(CT_ERR_INVALID_ARG, "%s: descriptor o is NULL", fn);
  int st = attention::unpack(fn, q, k, v, mask, params, o, f);
  if (st) return st;
  return forward_flat(fn, f.dtype, f.dims, f.q, f.qs, f.k, f.ks, f.v, f.vs, f.mask_kind, f.mask, f.ms, f.causal,
                      f.scale, f.softcap, f.dropout_p, f.seed, f.offset, f.o, f.os, lse);
}

extern "C" int ct_cpu_attention_backward(const ct_tensor* q, const ct_tensor* k, const ct_tensor* v,
                                         const ct_tensor* mask, const ct_attention_params* params,
                                         const ct_tensor* o, const ct_tensor* d_o, const float* lse,
                                         const ct_tensor* dq, const ct_tensor* dk, const ct_tensor* dv,
                                         int64_t stream) {
  static const char* fn = "ct_cpu_attention_backward";
  attention::Flat f;
  int st = attention::unpack(fn, q, k, v, mask, params, o, f);
  if (st || (st = attention::unpack_backward(fn, f, o, d_o, dq, dk, dv))) return st;
  return backward_flat(fn, f.dtype, f.dims, f.q, f.qs, f.k, f.ks, f.v, f.vs, f.mask_kind, f.mask, f.ms, f.causal,
                       f.scale, f.softcap, f.dropout_p, f.seed, f.offset, o->data, o->strides, d_o->data,
                       d_o->strides, lse, dq->data, dq->strides, dk->data, dk->strides, dv->data, dv->strides);
}
