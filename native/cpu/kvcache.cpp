/*
 * KV-cache family on the CPU: paged append and split-K decode attention. Contract:
 * cortado/kvcache.h.
 *
 * Append: one work item per (sequence, new token); the token's Hkv x D block of k_new / v_new
 * is converted into its slot of page block_table[s][pos / PS] (a contiguous run in the cache).
 *
 * Decode, per work item (sequence s, split r), OpenMP dynamic over items:
 *   rows r = h Tq + t for every query head h and new token t, scaled by `scale` and widened to
 *   float32 once: Qs [Hq Tq, D]; m = -inf, l = 0, acc = 0 per row
 *   for each page of the split, for each kv head hk (the page's [PS, Hkv, D] block is read
 *   front to back, once), for each row of the group of hk (G Tq rows share the K/V rows, which
 *   stay in L1: 16-bit pages are widened to float32 once per page):
 *     S = Qs_r K_page^T for the visible keys (causal: key j <= L - Tq + t), 8 keys at a time
 *       with 8 independent FMA chains reduced by horizontal adds (dot8); with softcap c,
 *       S = c tanh(S / c)
 *     m' = max(m, max S), a = exp(m - m'), P = exp(S - m') (vectorized exp_f32),
 *     l = a l + sum P, acc = a acc + P V_page (acc held in registers over the page: page_pv)
 *   one split: o = acc / l, lse = m + log l; several: (m, l, acc) go to a scratch buffer and a
 *   second loop over (s, row) merges them with the log-sum-exp weights of kvcache.h.
 * Every K/V row is read from memory once per sequence whatever G and Tq are: bytes
 * 2 L Hkv D esize per sequence, FLOPs 4 L Hq Tq D. Float32, D = 64, Hkv = 2: 1 KiB per cached
 * token, ~4 FLOPs per byte at G = 4: bandwidth bound on this machine (~25 GB/s, ~117 GFLOP/s
 * per core).
 * Split choice (num_splits = 0): none when there are >= 4 sequences per thread; otherwise enough
 * splits for ~4 items per thread, never a split under 256 tokens.
 *
 * decode_reference(): the naive algorithm in double precision per (s, h, t) row: the row's
 * scores over the sequence's pages, softmax, P V. Used when CORTADO_KVCACHE_REFERENCE=1.
 */
#include <cstdlib>
#include <vector>

#include "cortado/kvcache.h"
#include "internal.h"
#include "vmath.h"

namespace ct {
namespace {

struct Geo {
  int64_t S, Tq, Hq, Hkv, D, P, PS, MP, G;
  const int64_t *qs, *os;
  const int32_t *bt, *lens;
  bool causal;
  float scale;
  float softcap;  // 0: none
  int64_t max_len;
};

bool use_reference() {
  static const bool r = [] {
    const char* e = std::getenv("CORTADO_KVCACHE_REFERENCE");
    return e && e[0] == '1';
  }();
  return r;
}

/* Address of the K/V row of (page, slot, kv head). */
template <class T> CT_INLINE const T* row_at(const T* cache, const Geo& g, int64_t page, int64_t slot, int64_t hk) {
  return cache + ((page * g.PS + slot) * g.Hkv + hk) * g.D;
}

// ------------------------------------------------------------------ row helpers (float32)
template <class T> CT_INLINE void widen_row(const T* src, float* dst, int64_t n) {
  int64_t c = 0;
  if constexpr (std::is_same_v<T, bf16>) {
    for (; c + 8 <= n; c += 8) {
      __m128i h = _mm_loadu_si128((const __m128i*)(src + c));
      _mm256_storeu_ps(dst + c, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
  } else if constexpr (std::is_same_v<T, f16>) {
    for (; c + 8 <= n; c += 8) _mm256_storeu_ps(dst + c, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + c))));
  }
  for (; c < n; ++c) dst[c] = (float)load(src + c);
}

CT_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

CT_INLINE float dot(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 8), _mm256_loadu_ps(b + c + 8), s1);
  }
  for (; c + 8 <= n; c += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
  float r = hsum(_mm256_add_ps(s0, s1));
  for (; c < n; ++c) r += a[c] * b[c];
  return r;
}

/* The dot products of q with 8 rows k[0..7] (8 independent FMA chains: no latency stall), as
 * one vector of 8 scores (horizontal adds transpose-reduce the 8 accumulators). */
CT_INLINE __m256 dot8(const float* q, const float* const* k, int64_t n) {
  __m256 a[8];
  for (int i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    const __m256 qv = _mm256_loadu_ps(q + c);
    for (int i = 0; i < 8; ++i) a[i] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[i] + c), a[i]);
  }
  const __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
  // lanes: [0 1 2 3 | 0 1 2 3] (low/high 128-bit halves) and the same for 4..7
  __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20), _mm256_permute2f128_ps(h0123, h4567, 0x31));
  if (c < n) {
    alignas(32) float t[8];
    _mm256_store_ps(t, r);
    for (int i = 0; i < 8; ++i)
      for (int64_t x = c; x < n; ++x) t[i] += q[x] * k[i][x];
    r = _mm256_load_ps(t);
  }
  return r;
}

/* acc[0..n) = alpha acc + sum_j p[j] v[j][0..n): the accumulator stays in registers over the
 * page's tokens (4 vectors at a time). */
CT_INLINE void page_pv(float* acc, float alpha, const float* p, const float* const* v, int64_t nv, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    __m256 a0 = _mm256_mul_ps(va, _mm256_loadu_ps(acc + c)), a1 = _mm256_mul_ps(va, _mm256_loadu_ps(acc + c + 8));
    __m256 a2 = _mm256_mul_ps(va, _mm256_loadu_ps(acc + c + 16)), a3 = _mm256_mul_ps(va, _mm256_loadu_ps(acc + c + 24));
    for (int64_t j = 0; j < nv; ++j) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      const float* vj = v[j] + c;
      a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj), a0);
      a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8), a1);
      a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 16), a2);
      a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 24), a3);
    }
    _mm256_storeu_ps(acc + c, a0);
    _mm256_storeu_ps(acc + c + 8, a1);
    _mm256_storeu_ps(acc + c + 16, a2);
    _mm256_storeu_ps(acc + c + 24, a3);
  }
  for (; c + 8 <= n; c += 8) {
    __m256 a0 = _mm256_mul_ps(va, _mm256_loadu_ps(acc + c));
    for (int64_t j = 0; j < nv; ++j) a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v[j] + c), a0);
    _mm256_storeu_ps(acc + c, a0);
  }
  for (; c < n; ++c) {
    float a = alpha * acc[c];
    for (int64_t j = 0; j < nv; ++j) a += p[j] * v[j][c];
    acc[c] = a;
  }
}

/* y = a y + x p (a == 1 skips the scaling). */
CT_INLINE void scale_axpy(float* y, float a, float p, const float* x, int64_t n) {
  const __m256 va = _mm256_set1_ps(a), vp = _mm256_set1_ps(p);
  int64_t c = 0;
  if (a == 1.0f) {
    for (; c + 8 <= n; c += 8) _mm256_storeu_ps(y + c, _mm256_fmadd_ps(vp, _mm256_loadu_ps(x + c), _mm256_loadu_ps(y + c)));
  } else {
    for (; c + 8 <= n; c += 8)
      _mm256_storeu_ps(y + c, _mm256_fmadd_ps(vp, _mm256_loadu_ps(x + c), _mm256_mul_ps(va, _mm256_loadu_ps(y + c))));
  }
  for (; c < n; ++c) y[c] = a * y[c] + p * x[c];
}

// ------------------------------------------------------------------ append
template <class T>
void append(const int64_t* dims, const T* kn, const int64_t* ks, const T* vn, const int64_t* vs, T* kc, T* vc,
            const int32_t* bt, const int32_t* lens, const int32_t* nl) {
  const int64_t S = dims[0], T_ = dims[1], Hkv = dims[2], D = dims[3], PS = dims[5], MP = dims[6];
  parallel_range(S * T_, 2 * Hkv * D, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t s = i / T_, t = i % T_;
      if (t >= (nl ? nl[s] : T_)) continue;
      const int64_t pos = lens[s] + t, page = bt[s * MP + pos / PS];
      const int64_t base = ((page * PS + pos % PS) * Hkv) * D;
      for (int64_t h = 0; h < Hkv; ++h) {
        const T* kr = kn + s * ks[0] + t * ks[1] + h * ks[2];
        const T* vr = vn + s * vs[0] + t * vs[1] + h * vs[2];
        std::memcpy(kc + base + h * D, kr, (size_t)D * sizeof(T));
        std::memcpy(vc + base + h * D, vr, (size_t)D * sizeof(T));
      }
    }
  });
}

// ------------------------------------------------------------------ naive reference (double)
template <class T>
void decode_reference(const Geo& g, const T* q, const T* kc, const T* vc, T* o, float* lse) {
  const int64_t rows = g.S * g.Hq * g.Tq;
  std::vector<double> buf((size_t)threads() * (size_t)(g.max_len + g.D + 1));
  parallel_range(rows, (g.max_len + 1) * g.D * 2, [&](int64_t r0, int64_t r1) {
    double* sc = buf.data() + (size_t)omp_get_thread_num() * (size_t)(g.max_len + g.D + 1);
    double* acc = sc + g.max_len + 1;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r % g.Tq, h = (r / g.Tq) % g.Hq, s = r / (g.Tq * g.Hq), hk = h / g.G;
      const int64_t L = g.lens[s], last = g.causal ? L - g.Tq + t : L - 1;
      const T* qr = q + s * g.qs[0] + t * g.qs[1] + h * g.qs[2];
      double m = -INFINITY, l = 0;
      for (int64_t j = 0; j <= last; ++j) {
        const T* kr = row_at(kc, g, g.bt[s * g.MP + j / g.PS], j % g.PS, hk);
        double d = 0;
        for (int64_t c = 0; c < g.D; ++c) d += (double)load(qr + c) * (double)load(kr + c);
        sc[j] = g.softcap > 0 ? g.softcap * std::tanh(d * g.scale / g.softcap) : d * g.scale;
        m = sc[j] > m ? sc[j] : m;
      }
      for (int64_t c = 0; c < g.D; ++c) acc[c] = 0;
      for (int64_t j = 0; j <= last; ++j) {
        const double p = std::exp(sc[j] - m);
        l += p;
        const T* vr = row_at(vc, g, g.bt[s * g.MP + j / g.PS], j % g.PS, hk);
        for (int64_t c = 0; c < g.D; ++c) acc[c] += p * (double)load(vr + c);
      }
      T* orow = o + s * g.os[0] + t * g.os[1] + h * g.os[2];
      for (int64_t c = 0; c < g.D; ++c) store<T>(orow + c, (float)(l > 0 ? acc[c] / l : 0.0));
      if (lse) lse[(s * g.Hq + h) * g.Tq + t] = l > 0 ? (float)(m + std::log(l)) : -INFINITY;
    }
  });
}

// ------------------------------------------------------------------ split-K decode
int64_t pages_of(int64_t len, int64_t PS) { return (len + PS - 1) / PS; }

struct Item {
  int32_t s, r, nsplit;
};

/* Split count of a sequence of `len` tokens with C pages per split. */
CT_INLINE int64_t splits_of(int64_t len, int64_t PS, int64_t C) {
  const int64_t np = pages_of(len, PS);
  return np <= C ? 1 : (np + C - 1) / C;
}

template <class T>
void decode_fast(const Geo& g, const T* q, const T* kc, const T* vc, T* o, float* lse, int64_t nsplits) {
  // rows r = h * Tq + t over all query heads: one item covers every kv head of its pages, so a
  // page's [PS, Hkv, D] block is streamed contiguously
  const int64_t R = g.Hq * g.Tq, D = g.D, PS = g.PS, PS8 = (PS + 7) / 8 * 8;
  const int64_t max_pages = pages_of(g.max_len, PS);
  const int64_t C = max_pages == 0 ? 1 : (max_pages + nsplits - 1) / nsplits;  // pages per split
  std::vector<Item> items;
  std::vector<int64_t> first((size_t)g.S);  // index of sequence s's first partial
  int64_t partials = 0;
  for (int64_t s = 0; s < g.S; ++s) {
    const int64_t ns = splits_of(g.lens[s], PS, C);
    first[(size_t)s] = partials;
    if (ns > 1) partials += ns;
    for (int64_t r = 0; r < ns; ++r) items.push_back({(int32_t)s, (int32_t)r, (int32_t)ns});
  }
  // partial (m, l, acc) of every row of every split item: R (D + 2) floats each
  const int64_t per_part = R * (D + 2);
  std::vector<float> part((size_t)(partials * per_part));
  const int64_t nitems = (int64_t)items.size();
  int64_t total_rows = 0;
  for (int64_t s = 0; s < g.S; ++s) total_rows += g.lens[s];
  int nt = threads_for(total_rows * g.Hkv * D * 2);
  if (nt > nitems) nt = (int)(nitems > 0 ? nitems : 1);
  // Qs [R, D], widened K and V pages [PS, D] (16-bit dtypes), a zero row, S [PS8], acc [R, D], m, l
  const size_t scratch = (size_t)(R * D + 2 * PS * D + D + PS8 + R * D + 2 * R);
  std::vector<float> buf((size_t)nt * scratch);

#pragma omp parallel num_threads(nt)
  {
    float* Qs = buf.data() + (size_t)omp_get_thread_num() * scratch;
    float* kf = Qs + R * D;
    float* vf = kf + PS * D;
    float* zero = vf + PS * D;
    float* S = zero + D;  // [PS8] scores of the current row and page
    float* acc = S + PS8;  // [R, D]
    float* m = acc + R * D;
    float* l = m + R;
    std::memset(zero, 0, sizeof(float) * (size_t)D);
    std::vector<const float*> kp((size_t)PS8), vp((size_t)PS);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < nitems; ++it) {
      const Item w = items[(size_t)it];
      const int64_t s = w.s, L = g.lens[s];
      const int64_t p0 = w.r * C, np = pages_of(L, PS), p1 = p0 + C < np ? p0 + C : np;
      for (int64_t h = 0; h < g.Hq; ++h)
        for (int64_t t = 0; t < g.Tq; ++t) {
          const T* qr = q + s * g.qs[0] + t * g.qs[1] + h * g.qs[2];
          float* dst = Qs + (h * g.Tq + t) * D;
          widen_row(qr, dst, D);
          for (int64_t c = 0; c < D; ++c) dst[c] *= g.scale;
        }
      for (int64_t r = 0; r < R; ++r) { m[r] = -INFINITY; l[r] = 0; }
      std::memset(acc, 0, sizeof(float) * (size_t)(R * D));
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t page = g.bt[s * g.MP + p];
        const int64_t j0 = p * PS, n = L - j0 < PS ? L - j0 : PS;
        for (int64_t hk = 0; hk < g.Hkv; ++hk) {
          // row pointers of the page's K and V for this kv head (widened for 16-bit dtypes)
          for (int64_t j = 0; j < n; ++j) {
            const T* kr = row_at(kc, g, page, j, hk);
            const T* vr = row_at(vc, g, page, j, hk);
            if constexpr (std::is_same_v<T, float>) {
              kp[(size_t)j] = kr;
              vp[(size_t)j] = vr;
            } else {
              widen_row(kr, kf + j * D, D);
              widen_row(vr, vf + j * D, D);
              kp[(size_t)j] = kf + j * D;
              vp[(size_t)j] = vf + j * D;
            }
          }
          for (int64_t j = n; j < PS8; ++j) kp[(size_t)j] = zero;
          for (int64_t r = hk * g.G * g.Tq; r < (hk + 1) * g.G * g.Tq; ++r) {
            const int64_t t = r % g.Tq;
            int64_t nv = n;  // keys of this page visible to row r
            if (g.causal) {
              const int64_t last = L - g.Tq + t - j0;
              nv = last + 1 < n ? last + 1 : n;
            }
            if (nv <= 0) continue;
            for (int64_t j = 0; j < nv; j += 8) _mm256_storeu_ps(S + j, dot8(Qs + r * D, kp.data() + j, D));
            if (g.softcap > 0) {
              const float cap = g.softcap, inv = 1.0f / g.softcap;
              for (int64_t j = 0; j < nv; ++j) S[j] = cap * tanh_f32(S[j] * inv);
            }
            float mx = m[r];
            for (int64_t j = 0; j < nv; ++j) mx = S[j] > mx ? S[j] : mx;
            const float a = m[r] == -INFINITY ? 0.0f : (mx == m[r] ? 1.0f : exp_f32(m[r] - mx));
            for (int64_t j = 0; j < nv; ++j) S[j] = exp_f32(S[j] - mx);  // vectorized by GCC
            float sum = 0;
            for (int64_t j = 0; j < nv; ++j) sum += S[j];
            l[r] = a * l[r] + sum;
            m[r] = mx;
            page_pv(acc + r * D, a, S, vp.data(), nv, D);
          }
        }
      }
      if (w.nsplit == 1) {
        for (int64_t r = 0; r < R; ++r) {
          const int64_t h = r / g.Tq, t = r % g.Tq;
          T* orow = o + s * g.os[0] + t * g.os[1] + h * g.os[2];
          const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
          for (int64_t c = 0; c < D; ++c) store<T>(orow + c, acc[r * D + c] * inv);
          if (lse) lse[(s * g.Hq + h) * g.Tq + t] = l[r] > 0 ? m[r] + std::log(l[r]) : -INFINITY;
        }
      } else {
        float* dst = part.data() + (size_t)((first[(size_t)s] + w.r) * per_part);
        for (int64_t r = 0; r < R; ++r) {
          dst[r * (D + 2)] = m[r];
          dst[r * (D + 2) + 1] = l[r];
          std::memcpy(dst + r * (D + 2) + 2, acc + r * D, sizeof(float) * (size_t)D);
        }
      }
    }
    // ---------------- merge of the split sequences, per (s, row)
#pragma omp for schedule(dynamic, 16)
    for (int64_t x = 0; x < g.S * R; ++x) {
      const int64_t s = x / R, r = x % R;
      const int64_t ns = splits_of(g.lens[s], PS, C);
      if (ns == 1) continue;
      const float* base = part.data() + (size_t)(first[(size_t)s] * per_part) + r * (D + 2);
      const int64_t h = r / g.Tq, t = r % g.Tq;
      float M = -INFINITY;
      for (int64_t k = 0; k < ns; ++k) M = base[k * per_part] > M ? base[k * per_part] : M;
      float* a = acc;
      std::memset(a, 0, sizeof(float) * (size_t)D);
      float Lsum = 0;
      if (M != -INFINITY)
        for (int64_t k = 0; k < ns; ++k) {
          const float* pr = base + k * per_part;
          if (pr[0] == -INFINITY) continue;
          const float wgt = exp_f32(pr[0] - M);
          Lsum += wgt * pr[1];
          scale_axpy(a, 1.0f, wgt, pr + 2, D);
        }
      T* orow = o + s * g.os[0] + t * g.os[1] + h * g.os[2];
      const float inv = Lsum > 0 ? 1.0f / Lsum : 0.0f;
      for (int64_t c = 0; c < D; ++c) store<T>(orow + c, a[c] * inv);
      if (lse) lse[(s * g.Hq + h) * g.Tq + t] = Lsum > 0 ? M + std::log(Lsum) : -INFINITY;
    }
  }
}

int64_t auto_splits(int64_t S, int64_t max_len, int64_t PS, int nt) {
  // one item per sequence (all its kv heads): split when there are fewer than 4 items per thread
  if (S <= 0 || max_len <= 0 || S >= 4 * (int64_t)nt) return 1;
  int64_t want = (4 * (int64_t)nt + S - 1) / S;
  int64_t cap = max_len / 256;  // at least 256 tokens per split
  const int64_t pages = pages_of(max_len, PS);
  if (cap > pages) cap = pages;
  if (want > cap) want = cap;
  return want < 1 ? 1 : want;
}

// ------------------------------------------------------------------ validation
int check_strides4(const char* fn, const char* name, const int64_t* s) {
  if (!s) return fail(CT_ERR_INVALID_ARG, "%s: %s is NULL", fn, name);
  for (int d = 0; d < 4; ++d)
    if (s[d] < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s[%d]=%lld is negative", fn, name, d, (long long)s[d]);
  if (s[3] != 1)
    return fail(CT_ERR_INVALID_ARG, "%s: %s[3]=%lld must be 1 (the feature dimension is contiguous)", fn, name,
                (long long)s[3]);
  return CT_OK;
}

int check_dtype(const char* fn, int dtype) {
  if (dtype == CT_F32 || dtype == CT_F16 || dtype == CT_BF16) return CT_OK;
  return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F16, BF16)", fn, dtype_name(dtype), dtype);
}

int check_dims(const char* fn, const int64_t* dims, int n, const char* const* names, const bool* may_be_zero) {
  if (!dims) return fail(CT_ERR_INVALID_ARG, "%s: dims is NULL", fn);
  for (int i = 0; i < n; ++i)
    if (dims[i] < 0 || (dims[i] == 0 && !may_be_zero[i]))
      return fail(CT_ERR_INVALID_ARG, "%s: dims[%d] (%s) = %lld must be %s", fn, i, names[i], (long long)dims[i],
                  may_be_zero[i] ? "non-negative" : "positive");
  return CT_OK;
}

/* Every page that sequence s uses for tokens [0, end) must be a valid pool index. */
int check_pages(const char* fn, int64_t s, int64_t begin, int64_t end, const int32_t* bt, int64_t P, int64_t PS,
                int64_t MP) {
  if (end > MP * PS)
    return fail(CT_ERR_INDEX_OUT_OF_RANGE,
                "%s: sequence %lld needs %lld tokens but its block table row holds %lld pages of %lld tokens (%lld)", fn,
                (long long)s, (long long)end, (long long)MP, (long long)PS, (long long)(MP * PS));
  for (int64_t i = begin / PS; i < pages_of(end, PS); ++i) {
    const int32_t p = bt[s * MP + i];
    if (p < 0 || p >= P)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE,
                  "%s: block_table[%lld][%lld] = %d (sequence %lld, tokens %lld..%lld) is outside the pool of %lld pages",
                  fn, (long long)s, (long long)i, p, (long long)s, (long long)(i * PS), (long long)((i + 1) * PS - 1),
                  (long long)P);
  }
  return CT_OK;
}

template <class F> bool dispatch_kv(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(float{}); return true;
    case CT_F16: f(f16{}); return true;
    case CT_BF16: f(bf16{}); return true;
    default: return false;
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int64_t ct_cpu_paged_decode_auto_splits(int64_t S, int64_t Hkv, int64_t max_len, int64_t page_size) {
  if (page_size <= 0) return 1;
  (void)Hkv;  // one CPU item covers all kv heads of a sequence
  return auto_splits(S, max_len, page_size, threads());
}

extern "C" int ct_cpu_kv_cache_append(int dtype, const int64_t* dims, const void* k_new, const int64_t* k_new_strides,
                                      const void* v_new, const int64_t* v_new_strides, void* k_cache, void* v_cache,
                                      const int32_t* block_table, const int32_t* seq_lens, const int32_t* new_lens, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_kv_cache_append";
  CT_TRY
  int st = check_dtype(fn, dtype);
  if (st) return st;
  static const char* names[7] = {"S", "T", "Hkv", "D", "P", "PS", "MP"};
  static const bool zero_ok[7] = {true, true, false, false, true, false, true};
  if ((st = check_dims(fn, dims, 7, names, zero_ok))) return st;
  if ((st = check_strides4(fn, "k_new_strides", k_new_strides)) ||
      (st = check_strides4(fn, "v_new_strides", v_new_strides)))
    return st;
  const int64_t S = dims[0], T = dims[1], P = dims[4], PS = dims[5], MP = dims[6];
  if (S == 0) return CT_OK;
  if ((st = check_ptr(fn, "seq_lens", seq_lens)) || (st = check_ptr(fn, "block_table", block_table))) return st;
  bool any = false;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t n = new_lens ? new_lens[s] : T;
    if (n < 0 || n > T)
      return fail(CT_ERR_INVALID_ARG, "%s: new_lens[%lld] = %lld must be in [0, T = %lld]", fn, (long long)s,
                  (long long)n, (long long)T);
    if (seq_lens[s] < 0)
      return fail(CT_ERR_INVALID_ARG, "%s: seq_lens[%lld] = %d is negative", fn, (long long)s, seq_lens[s]);
    if (n == 0) continue;
    if ((st = check_pages(fn, s, seq_lens[s], seq_lens[s] + n, block_table, P, PS, MP))) return st;
    any = true;
  }
  if (!any) return CT_OK;
  if ((st = check_ptr(fn, "k_new", k_new)) || (st = check_ptr(fn, "v_new", v_new)) ||
      (st = check_ptr(fn, "k_cache", k_cache)) || (st = check_ptr(fn, "v_cache", v_cache)))
    return st;
  dispatch_kv(dtype, [&](auto tag) {
    using E = decltype(tag);
    append<E>(dims, (const E*)k_new, k_new_strides, (const E*)v_new, v_new_strides, (E*)k_cache, (E*)v_cache,
              block_table, seq_lens, new_lens);
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_paged_decode_attention(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                             const void* k_cache, const void* v_cache, const int32_t* block_table,
                                             const int32_t* seq_lens, int64_t /*max_len*/, int causal,
                                             double scale, double softcap, int64_t num_splits, void* o,
                                             const int64_t* o_strides, float* lse, float* /*workspace*/,
                                             int64_t /*workspace_floats*/, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_paged_decode_attention";
  CT_TRY
  int st = check_dtype(fn, dtype);
  if (st) return st;
  static const char* names[8] = {"S", "Tq", "Hq", "Hkv", "D", "P", "PS", "MP"};
  static const bool zero_ok[8] = {true, true, false, false, false, true, false, true};
  if ((st = check_dims(fn, dims, 8, names, zero_ok))) return st;
  if (dims[2] % dims[3] != 0)
    return fail(CT_ERR_INVALID_ARG, "%s: Hq=%lld is not a multiple of Hkv=%lld", fn, (long long)dims[2],
                (long long)dims[3]);
  if ((st = check_strides4(fn, "q_strides", q_strides)) || (st = check_strides4(fn, "o_strides", o_strides))) return st;
  if (!std::isfinite(scale)) return fail(CT_ERR_INVALID_ARG, "%s: scale=%g must be finite", fn, scale);
  if (!(softcap >= 0) || !std::isfinite(softcap))
    return fail(CT_ERR_INVALID_ARG, "%s: softcap=%g must be finite and >= 0 (0: no capping)", fn, softcap);
  if (num_splits < 0) return fail(CT_ERR_INVALID_ARG, "%s: num_splits=%lld is negative", fn, (long long)num_splits);
  Geo g{};
  g.S = dims[0]; g.Tq = dims[1]; g.Hq = dims[2]; g.Hkv = dims[3]; g.D = dims[4]; g.P = dims[5]; g.PS = dims[6];
  g.MP = dims[7]; g.G = g.Hq / g.Hkv;
  g.qs = q_strides; g.os = o_strides; g.bt = block_table; g.lens = seq_lens;
  g.causal = causal != 0; g.scale = (float)scale; g.softcap = (float)softcap;
  if (g.S == 0 || g.Tq == 0) return CT_OK;
  if ((st = check_ptr(fn, "seq_lens", seq_lens)) || (st = check_ptr(fn, "block_table", block_table)) ||
      (st = check_ptr(fn, "q", q)) || (st = check_ptr(fn, "o", o)))
    return st;
  g.max_len = 0;
  for (int64_t s = 0; s < g.S; ++s) {
    if (seq_lens[s] < 0)
      return fail(CT_ERR_INVALID_ARG, "%s: seq_lens[%lld] = %d is negative", fn, (long long)s, seq_lens[s]);
    if ((st = check_pages(fn, s, 0, seq_lens[s], block_table, g.P, g.PS, g.MP))) return st;
    g.max_len = seq_lens[s] > g.max_len ? seq_lens[s] : g.max_len;
  }
  if (g.max_len > 0 && ((st = check_ptr(fn, "k_cache", k_cache)) || (st = check_ptr(fn, "v_cache", v_cache))))
    return st;
  const int64_t ns = num_splits == 0 ? auto_splits(g.S, g.max_len, g.PS, threads()) : num_splits;
  dispatch_kv(dtype, [&](auto tag) {
    using E = decltype(tag);
    if (use_reference())
      decode_reference<E>(g, (const E*)q, (const E*)k_cache, (const E*)v_cache, (E*)o, lse);
    else
      decode_fast<E>(g, (const E*)q, (const E*)k_cache, (const E*)v_cache, (E*)o, lse, ns);
  });
  return CT_OK;
  CT_CATCH(fn)
}
