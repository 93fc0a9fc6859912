/*
 * Sparse family (contract in cortado/sparse.h).
 *
 * Every sparse x dense product here reduces to one row kernel: an output row of n columns is
 *   c[0:n] = sum over the row's entries e of value[e] * b[index[e], 0:n]
 * (CSR SpMM: the row's stored entries; A^T B: the rows of the transposed pattern, built by a
 * counting sort; N:M GEMM: the row's kept entries, index = group * m + meta). The reference loop
 * accumulates 64-column blocks in compute_t<T> (double for f64). The float32 and bfloat16 fast
 * paths (bfloat16 widened to float32 on load, float32 accumulation, rounded once on store) keep a
 * block of c in registers (AVX2: 4 x 8 floats; AVX-512: 4 x 16 floats, masked tail)
 * and streams the entries through broadcast-FMA: per entry one broadcast and 4 FMAs against one
 * row segment of b, no write of c until the block is done. So c is written once per pass, b rows
 * are read once per (entry, block) and A once per column block. float32 CSR products over a b
 * larger than one panel (256 columns by half of L2: 1,024 rows on a 2 MiB L2) run panel by panel
 * when each row's indices are sorted (a cursor per row): the panel stays in L2 while the thread's
 * rows pass over it, c is accumulated across the row panels (read and written once per panel).
 * The N:M GEMM has its own packed path below.
 *
 * SDDMM is one dot product per stored entry (float32: 2 AVX2 / AVX-512 accumulators; reference:
 * compute_t). Row softmax and top-k are per-row scalar loops (top-k: std::partial_sort of the
 * line's positions, O(len log k)). The N:M gradient to b runs over groups of m rows of db, each
 * thread owning its groups (no atomics, deterministic).
 *
 * Parallelism: OpenMP over output rows (dynamic chunks: CSR rows have unequal lengths), over
 * entries' rows for SDDMM, over lines for top-k and over groups for the N:M backward.
 */
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cortado/sparse.h"
#include "internal.h"

namespace ct {
namespace {

template <class F> bool dispatch_sparse(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(float{}); return true;
    case CT_F64: f(double{}); return true;
    case CT_BF16: f(bf16{}); return true;
    default: return false;
  }
}

int check_dtype(const char* fn, int dtype) {
  if (dtype == CT_F32 || dtype == CT_F64 || dtype == CT_BF16) return CT_OK;
  return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64, BF16 only)", fn, dtype_name(dtype),
              dtype);
}

int check_sizes(const char* fn, std::initializer_list<std::pair<const char*, int64_t>> sizes) {
  for (auto& s : sizes)
    if (s.second < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s=%lld is negative", fn, s.first, (long long)s.second);
  return CT_OK;
}

int check_product(const char* fn, const char* what, int64_t a, int64_t b) {
  int64_t t;
  if (__builtin_mul_overflow(a, b, &t)) return fail(CT_ERR_INVALID_ARG, "%s: %s overflows int64", fn, what);
  return CT_OK;
}

/* The row pointers: crow[0] = 0, non-decreasing, crow[rows] = nnz. */
int check_crow(const char* fn, int64_t rows, int64_t nnz, const int64_t* crow) {
  int st;
  if ((st = check_ptr(fn, "crow_indices", crow))) return st;
  if (crow[0] != 0)
    return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: crow_indices[0] = %lld, must be 0", fn, (long long)crow[0]);
  for (int64_t r = 0; r < rows; ++r)
    if (crow[r + 1] < crow[r] || crow[r + 1] > nnz)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE,
                  "%s: crow_indices[%lld] = %lld after crow_indices[%lld] = %lld (must be non-decreasing, at most nnz = %lld)",
                  fn, (long long)(r + 1), (long long)crow[r + 1], (long long)r, (long long)crow[r], (long long)nnz);
  if (crow[rows] != nnz)
    return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: crow_indices[%lld] = %lld, must equal nnz = %lld", fn, (long long)rows,
                (long long)crow[rows], (long long)nnz);
  return CT_OK;
}

/* The CSR structure: the row pointers as above and every col in [0, cols). */
int check_csr(const char* fn, int64_t rows, int64_t cols, int64_t nnz, const int64_t* crow, const int64_t* col) {
  int st;
  if ((st = check_crow(fn, rows, nnz, crow))) return st;
  if (nnz > 0 && (st = check_ptr(fn, "col_indices", col))) return st;
  for (int64_t e = 0; e < nnz; ++e)
    if (col[e] < 0 || col[e] >= cols)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: col_indices[%lld] = %lld is out of range [0, %lld)", fn, (long long)e,
                  (long long)col[e], (long long)cols);
  return CT_OK;
}

/* BSR geometry: a positive block size dividing both dimensions. */
int check_bsr(const char* fn, int64_t rows, int64_t cols, int64_t block) {
  if (block < 1 || rows % block != 0 || cols % block != 0)
    return fail(CT_ERR_INVALID_ARG, "%s: block size %lld must be positive and divide rows %lld and cols %lld", fn,
                (long long)block, (long long)rows, (long long)cols);
  return CT_OK;
}

/* N:M geometry and metadata: 1 <= n < m <= 16, k % m == 0, positions < m, increasing per group. */
int check_nm(const char* fn, int64_t rows, int64_t k, int n, int m) {
  if (n < 1 || m > 16 || n >= m)
    return fail(CT_ERR_INVALID_ARG, "%s: N:M = %d:%d, need 1 <= N < M <= 16", fn, n, m);
  if (k % m != 0)
    return fail(CT_ERR_INVALID_ARG, "%s: k = %lld is not a multiple of M = %d", fn, (long long)k, m);
  return check_product(fn, "rows*k", rows, k);
}

int check_meta(const char* fn, int64_t rows, int64_t k, int n, int m, const uint8_t* meta) {
  const int64_t groups = k / m, per_row = groups * n;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t* q = meta + r * per_row + g * n;
      for (int t = 0; t < n; ++t)
        if (q[t] >= m || (t > 0 && q[t] <= q[t - 1]))
          return fail(CT_ERR_INVALID_ARG,
                      "%s: meta of row %lld, group %lld, slot %d is %d: the %d:%d pattern needs positions in [0, %d), "
                      "strictly increasing within a group",
                      fn, (long long)r, (long long)g, t, q[t], n, m, m);
    }
  return CT_OK;
}

// ------------------------------------------------------------------ the row kernel
/* Reference (f64): c[0:n] = sum_e v[e] * b[idx[e] * ldb + 0:n], 64-column blocks. */
template <class T>
void row_ref(int64_t cnt, const T* v, const int64_t* idx, const T* b, int64_t ldb, int64_t n, T* c, bool accumulate) {
  using A = compute_t<T>;
  for (int64_t j0 = 0; j0 < n; j0 += 64) {
    const int64_t w = std::min<int64_t>(64, n - j0);
    A acc[64];
    for (int64_t j = 0; j < w; ++j) acc[j] = accumulate ? (A)load(c + j0 + j) : (A)0;
    for (int64_t e = 0; e < cnt; ++e) {
      const A a = load(v + e);
      const T* br = b + idx[e] * ldb + j0;
      for (int64_t j = 0; j < w; ++j) acc[j] += a * (A)load(br + j);
    }
    for (int64_t j = 0; j < w; ++j) store(c + j0 + j, acc[j]);
  }
}

/* Vector loads and stores of float32 and bfloat16 rows (bfloat16: widened to float32 by a 16-bit
 * shift; stored with round to nearest even through a float32 staging array). */
CT_INLINE __m256 ld8(const float* p) { return _mm256_loadu_ps(p); }
CT_INLINE __m256 ld8(const bf16* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}
CT_INLINE void st8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
CT_INLINE void st8(bf16* p, __m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  for (int i = 0; i < 8; ++i) p[i].bits = f32_to_bf16(t[i]);
}
CT_AVX512 CT_INLINE __m512 ld16(__mmask16 mk, const float* p) { return _mm512_maskz_loadu_ps(mk, p); }
CT_AVX512 CT_INLINE __m512 ld16(__mmask16 mk, const bf16* p) {
  // the maskz forms: GCC 12 warns about the undefined source operand of the unmasked ones
  return _mm512_castsi512_ps(
      _mm512_maskz_slli_epi32(0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, _mm256_maskz_loadu_epi16(mk, p)), 16));
}
CT_AVX512 CT_INLINE void st16(float* p, __mmask16 mk, __m512 v) { _mm512_mask_storeu_ps(p, mk, v); }
CT_AVX512 CT_INLINE void st16(bf16* p, __mmask16 mk, __m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  for (int i = 0; i < 16; ++i)
    if (mk >> i & 1) p[i].bits = f32_to_bf16(t[i]);
}

/* float32 / bfloat16, AVX2: 32-column blocks in 4 ymm float accumulators, then 8-column blocks,
 * then a scalar tail. */
template <class T>
void row_avx2(int64_t cnt, const T* v, const int64_t* idx, const T* b, int64_t ldb, int64_t n, T* c, bool accumulate) {
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    if (accumulate) {
      a0 = ld8(c + j);
      a1 = ld8(c + j + 8);
      a2 = ld8(c + j + 16);
      a3 = ld8(c + j + 24);
    }
    for (int64_t e = 0; e < cnt; ++e) {
      const __m256 s = _mm256_set1_ps(load(v + e));
      const T* br = b + idx[e] * ldb + j;
      a0 = _mm256_fmadd_ps(s, ld8(br), a0);
      a1 = _mm256_fmadd_ps(s, ld8(br + 8), a1);
      a2 = _mm256_fmadd_ps(s, ld8(br + 16), a2);
      a3 = _mm256_fmadd_ps(s, ld8(br + 24), a3);
    }
    st8(c + j, a0);
    st8(c + j + 8, a1);
    st8(c + j + 16, a2);
    st8(c + j + 24, a3);
  }
  for (; j + 8 <= n; j += 8) {
    __m256 a0 = accumulate ? ld8(c + j) : _mm256_setzero_ps();
    for (int64_t e = 0; e < cnt; ++e) a0 = _mm256_fmadd_ps(_mm256_set1_ps(load(v + e)), ld8(b + idx[e] * ldb + j), a0);
    st8(c + j, a0);
  }
  if (j < n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (accumulate)
      for (int64_t t = j; t < n; ++t) acc[t - j] = load(c + t);
    for (int64_t e = 0; e < cnt; ++e) {
      const float a = load(v + e);
      const T* br = b + idx[e] * ldb;
      for (int64_t t = j; t < n; ++t) acc[t - j] = std::fma(a, (float)load(br + t), acc[t - j]);
    }
    for (int64_t t = j; t < n; ++t) store(c + t, acc[t - j]);
  }
}

/* float32 / bfloat16, AVX-512: 64-column blocks in 4 zmm float accumulators, then masked
 * 16-column blocks. */
template <class T>
CT_AVX512 void row_avx512(int64_t cnt, const T* v, const int64_t* idx, const T* b, int64_t ldb, int64_t n, T* c,
                          bool accumulate) {
  const __mmask16 all = 0xffff;
  int64_t j = 0;
  for (; j + 64 <= n; j += 64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    if (accumulate) {
      a0 = ld16(all, c + j);
      a1 = ld16(all, c + j + 16);
      a2 = ld16(all, c + j + 32);
      a3 = ld16(all, c + j + 48);
    }
    for (int64_t e = 0; e < cnt; ++e) {
      const __m512 s = _mm512_set1_ps(load(v + e));
      const T* br = b + idx[e] * ldb + j;
      a0 = _mm512_fmadd_ps(s, ld16(all, br), a0);
      a1 = _mm512_fmadd_ps(s, ld16(all, br + 16), a1);
      a2 = _mm512_fmadd_ps(s, ld16(all, br + 32), a2);
      a3 = _mm512_fmadd_ps(s, ld16(all, br + 48), a3);
    }
    st16(c + j, all, a0);
    st16(c + j + 16, all, a1);
    st16(c + j + 32, all, a2);
    st16(c + j + 48, all, a3);
  }
  for (; j < n; j += 16) {
    const __mmask16 mk = n - j >= 16 ? all : (__mmask16)((1u << (n - j)) - 1);
    __m512 a0 = accumulate ? ld16(mk, c + j) : _mm512_setzero_ps();
    for (int64_t e = 0; e < cnt; ++e)
      a0 = _mm512_fmadd_ps(_mm512_set1_ps(load(v + e)), ld16(mk, b + idx[e] * ldb + j), a0);
    st16(c + j, mk, a0);
  }
}

template <class T>
CT_INLINE void row(bool avx512, int64_t cnt, const T* v, const int64_t* idx, const T* b, int64_t n, T* c,
                   int64_t ldb = -1, bool accumulate = false) {
  if (ldb < 0) ldb = n;
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, bf16>) {
    if (avx512) row_avx512<T>(cnt, v, idx, b, ldb, n, c, accumulate);
    else row_avx2<T>(cnt, v, idx, b, ldb, n, c, accumulate);
  } else {
    row_ref<T>(cnt, v, idx, b, ldb, n, c, accumulate);
  }
}

/* Output rows r in [0, rows): entries [ptr[r], ptr[r+1]) of (v, idx) over b [brows, n].
 * float32 with indices non-decreasing within each row: panels of b (256 columns by half of L2 in
 * rows, kept in L2 while the thread's rows run over them), each row's entries of the panel
 * found by a cursor, c accumulated in place across the panels (static schedule: a row always on
 * the same thread). Otherwise (unsorted indices, bfloat16, float64): whole rows, spread dynamically. */
template <class T>
void gather_rows(int64_t rows, const int64_t* ptr, const T* v, const int64_t* idx, const T* b, int64_t brows, int64_t n,
                 T* c, int64_t work) {
  const bool z = use_avx512();
  const int nt = threads_for(work);
  // the panel: nc = 256 columns by as many rows of b as fill half of L2 (at least 256): c is read
  // and written once per panel, so fewer panels, fewer passes over c
  constexpr int64_t nc = 256;
  const int64_t kc = std::max<int64_t>(256, l2_bytes() / 2 / (nc * (int64_t)sizeof(T)));
  bool blocked = std::is_same_v<T, float> && (brows > kc || n > nc);
  for (int64_t r = 0; r < rows && blocked; ++r)
    for (int64_t e = ptr[r] + 1; e < ptr[r + 1]; ++e)
      if (idx[e] < idx[e - 1]) {
        blocked = false;
        break;
      }
  if (!blocked) {
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt) if (nt > 1)
    for (int64_t r = 0; r < rows; ++r)
      row<T>(z, ptr[r + 1] - ptr[r], v + ptr[r], idx + ptr[r], b, n, c + r * n);
    return;
  }
  HostBuffer<int64_t> cursor(rows > 0 ? rows : 1);
#pragma omp parallel num_threads(nt) if (nt > 1)
  for (int64_t j0 = 0; j0 < n; j0 += nc) {
    const int64_t w = std::min(nc, n - j0);
    for (int64_t k0 = 0; k0 < brows; k0 += kc) {
      const int64_t k1 = std::min(k0 + kc, brows);
#pragma omp for schedule(static) nowait
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t e0 = k0 == 0 ? ptr[r] : cursor[r];
        int64_t e1 = e0;
        while (e1 < ptr[r + 1] && idx[e1] < k1) ++e1;
        row<T>(z, e1 - e0, v + e0, idx + e0, b + j0, w, c + r * n + j0, n, k0 > 0);
        cursor[r] = e1;
      }
    }
  }
}

// ------------------------------------------------------------------ dot products (SDDMM)
template <class T> compute_t<T> dot_ref(const T* x, const T* y, int64_t d) {
  compute_t<T> s = 0;
  for (int64_t j = 0; j < d; ++j) s += (compute_t<T>)load(x + j) * (compute_t<T>)load(y + j);
  return s;
}

float dot_f32_avx2(const float* x, const float* y, int64_t d) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  int64_t j = 0;
  for (; j + 16 <= d; j += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8), _mm256_loadu_ps(y + j + 8), a1);
  }
  for (; j + 8 <= d; j += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j), a0);
  a0 = _mm256_add_ps(a0, a1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float s = _mm_cvtss_f32(h);
  for (; j < d; ++j) s = std::fma(x[j], y[j], s);
  return s;
}

CT_AVX512 float dot_f32_avx512(const float* x, const float* y, int64_t d) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  int64_t j = 0;
  for (; j + 32 <= d; j += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(y + j), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j + 16), _mm512_loadu_ps(y + j + 16), a1);
  }
  for (; j < d; j += 16) {
    const __mmask16 mk = d - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - j)) - 1);
    a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, x + j), _mm512_maskz_loadu_ps(mk, y + j), a0);
  }
  alignas(64) float lane[16];
  _mm512_store_ps(lane, _mm512_add_ps(a0, a1));
  for (int w = 8; w > 0; w /= 2)
    for (int i = 0; i < w; ++i) lane[i] += lane[i + w];
  return lane[0];
}

template <class T> CT_INLINE compute_t<T> dot(bool avx512, const T* x, const T* y, int64_t d) {
  if constexpr (std::is_same_v<T, float>) return avx512 ? dot_f32_avx512(x, y, d) : dot_f32_avx2(x, y, d);
  else return dot_ref<T>(x, y, d);
}

/* out[e] = dot(x[r], y[idx[e]]) for the entries e of each row r. */
template <class T>
void sddmm_rows(int64_t rows, const int64_t* ptr, const int64_t* idx, const T* x, const T* y, int64_t d, T* out,
                int64_t work) {
  const bool z = use_avx512();
  const int nt = threads_for(work);
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = ptr[r]; e < ptr[r + 1]; ++e) store(out + e, dot<T>(z, x + r * d, y + idx[e] * d, d));
}

// ------------------------------------------------------------------ N:M helpers
/* Kept column index of slot s of a row: group s / n, position meta[s]. */
inline void nm_columns(int64_t per_row, int n, int m, const uint8_t* meta, int64_t* idx) {
  for (int64_t s = 0; s < per_row; ++s) idx[s] = (s / n) * m + meta[s];
}

/* ---- the float32 N:M GEMM: C [rows, ncols] = W · B, W N:M [rows, k] (values, meta), B [k, ncols].
 *
 * Cost: 2·rows·(k/m·n)·ncols FLOPs (n/m of the dense product); bytes: W's values and metadata
 * once per column panel, B once per thread (packed), C once per k panel from L2.
 *
 * Why this shape: each output row picks its own n of every m rows of B, so rows cannot share
 * loads of B the way a dense micro-kernel does; every FMA needs its own vector of B. The kernel is
 * therefore built so that this vector comes from L1 as a memory operand of the FMA (the load ports
 * do 2 vector loads per cycle, as many as the FMA units do FMAs):
 *   - B is packed per thread into L1-sized panels of KC rows x NC columns (KC·NC·4 = 32 KiB,
 *     contiguous rows of NC floats: no cache-set conflicts from B's leading dimension, zero padded
 *     to a whole number of vectors);
 *   - the metadata is decoded once per call into the byte offset of each kept entry's row inside
 *     its panel (uint16), so the inner loop is: broadcast the value, load the offset, then one
 *     FMA per accumulator with the panel row as memory operand, no index arithmetic;
 *   - a panel-wide block of the output row (NC floats: 16 zmm / 8 ymm accumulators) stays in
 *     registers while the row's kept entries of the panel stream by; it is added into C once per
 *     k panel (C's column panel, rows·NC·4 bytes, stays in L2).
 * Threads split the rows statically (the same rows in every panel, so the in-place accumulation
 * into C needs no synchronisation); each packs the panels it uses. */
template <int V> struct NmVec;  // V = floats per vector

template <> struct NmVec<16> {
  static constexpr int kAcc = 8;  // accumulators: NC = 128 columns, KC = 64
  using reg = __m512;
  CT_AVX512 static CT_INLINE reg zero() { return _mm512_setzero_ps(); }
  CT_AVX512 static CT_INLINE reg bcast(const float* p) { return _mm512_set1_ps(*p); }
  CT_AVX512 static CT_INLINE reg fma(reg a, const float* b, reg c) { return _mm512_fmadd_ps(a, _mm512_load_ps(b), c); }
  CT_AVX512 static CT_INLINE reg add_load(reg acc, const float* c, int valid) {
    const __mmask16 mk = valid >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << valid) - 1);
    return _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mk, c));
  }
  CT_AVX512 static CT_INLINE void store(float* c, reg v, int valid) {
    const __mmask16 mk = valid >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << valid) - 1);
    _mm512_mask_storeu_ps(c, mk, v);
  }
};

template <> struct NmVec<8> {
  static constexpr int kAcc = 8;  // NC = 64 columns (AVX2 has 16 ymm registers)
  using reg = __m256;
  static CT_INLINE reg zero() { return _mm256_setzero_ps(); }
  static CT_INLINE reg bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static CT_INLINE reg fma(reg a, const float* b, reg c) { return _mm256_fmadd_ps(a, _mm256_load_ps(b), c); }
  static CT_INLINE __m256i tail(int valid) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static CT_INLINE reg add_load(reg acc, const float* c, int valid) {
    return _mm256_add_ps(acc, valid >= 8 ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, tail(valid)));
  }
  static CT_INLINE void store(float* c, reg v, int valid) {
    if (valid >= 8) _mm256_storeu_ps(c, v);
    else _mm256_maskstore_ps(c, tail(valid), v);
  }
};

/* The kernels of one vector width, defined once per ISA (ATTR: the target attribute, empty for
 * AVX2, the x86-64-v3 baseline): nm_block_<S> is one output row's block over one panel,
 * c[0:w] (+)= sum_e v[e] · panel[off[e]] in NA vector accumulators; nm_gemm_<S> the whole product. */
#define CT_NM_GEMM(ATTR, V, S)                                                                                        \
  template <int NA>                                                                                                    \
  ATTR CT_INLINE void nm_block_##S(int64_t cnt, const float* v, const uint16_t* off, const float* panel, float* c,    \
                                   int w, bool accumulate) {                                                           \
    using O = NmVec<V>;                                                                                                \
    typename O::reg acc[NA];                                                                                           \
    _Pragma("GCC unroll 16") for (int t = 0; t < NA; ++t) acc[t] = O::zero();                                         \
    for (int64_t e = 0; e < cnt; ++e) {                                                                                \
      const typename O::reg a = O::bcast(v + e);                                                                       \
      const float* row = (const float*)((const char*)panel + off[e]);                                                  \
      _Pragma("GCC unroll 16") for (int t = 0; t < NA; ++t) acc[t] = O::fma(a, row + t * V, acc[t]);                  \
    }                                                                                                                  \
    _Pragma("GCC unroll 16") for (int t = 0; t < NA; ++t) {                                                            \
      const int valid = w - t * V;                                                                                     \
      if (accumulate) acc[t] = O::add_load(acc[t], c + t * V, valid);                                                  \
      O::store(c + t * V, acc[t], valid);                                                                              \
    }                                                                                                                  \
  }                                                                                                                    \
  /* rows [r0, r1) of one panel: their cnt slots each, stored row after row (the packed layout) */                  \
  template <int NA>                                                                                                    \
  ATTR void nm_rows_##S(int64_t r0, int64_t r1, int64_t cnt, const float* values, const uint16_t* off,               \
                        const float* panel, float* c, int64_t ldc, int w, bool accumulate) {                           \
    for (int64_t r = r0; r < r1; ++r) {                                                                                \
      if (accumulate && r + 1 < r1) /* the next row's block of C, from L2 while this row computes */                  \
        _Pragma("GCC unroll 16") for (int t = 0; t < NA; ++t)                                                          \
          _mm_prefetch((const char*)(c + (r + 1 - r0) * ldc + t * V), _MM_HINT_T0);                                    \
      nm_block_##S<NA>(cnt, values + r * cnt, off + r * cnt, panel, c + (r - r0) * ldc, w, accumulate);               \
    }                                                                                                                  \
  }                                                                                                                    \
  template <int... NA>                                                                                                 \
  ATTR void nm_rows_dispatch_##S(int na, std::integer_sequence<int, NA...>, int64_t r0, int64_t r1, int64_t cnt,     \
                                 const float* values, const uint16_t* off, const float* panel, float* c, int64_t ldc, \
                                 int w, bool accumulate) {                                                             \
    ((na == NA + 1 ? nm_rows_##S<NA + 1>(r0, r1, cnt, values, off, panel, c, ldc, w, accumulate) : void()), ...);     \
  }                                                                                                                    \
  ATTR void nm_gemm_##S(int64_t rows, int64_t k, int64_t ncols, int n, int m, const float* values,                   \
                        const uint8_t* meta, const float* b, float* c, int nt) {                                       \
    constexpr int NC = V * NmVec<V>::kAcc;                                                                             \
    const int64_t KC = std::max<int64_t>(m, (8192 / NC) / m * m); /* KC·NC floats = 32 KiB */                         \
    const int64_t per_row = k / m * n, spp = KC / m * n;          /* kept slots per row, per panel */                 \
    const int64_t RB = 2048; /* rows per block: its C tile, NC·RB·4 <= 1 MiB, stays in L2 */                          \
    /* W packed once, panel-major: panel p holds every row's slots of k-panel p (cnt_p each, row after row), so     \
     * the rows of a panel stream sequentially; the metadata decoded into the byte offset of each kept entry's B     \
     * row inside its packed B panel. */                                                                               \
    HostBuffer<float> vals(rows * per_row);                                                                            \
    HostBuffer<uint16_t> off(rows * per_row);                                                                          \
    _Pragma("omp parallel for schedule(static) num_threads(nt) if (nt > 1)") for (int64_t r = 0; r < rows; ++r) {     \
      int64_t s = r * per_row;                                                                                         \
      for (int64_t s0 = 0; s0 < per_row; s0 += spp) { /* panels */                                                     \
        const int64_t cnt = std::min(spp, per_row - s0);                                                               \
        int64_t d = s0 * rows + r * cnt;                                                                               \
        for (int64_t g = 0; g < cnt / n; ++g) /* groups of the panel */                                                \
          for (int t = 0; t < n; ++t, ++s, ++d) {                                                                      \
            vals[d] = values[s];                                                                                       \
            off[d] = (uint16_t)((g * m + meta[s]) * NC * (int64_t)sizeof(float));                                      \
          }                                                                                                            \
      }                                                                                                                \
    }                                                                                                                  \
    /* B packed once into panels of KC rows x NC columns (zero padded), panel (kp, jp) at (jp·kpanels + kp)·KC·NC */  \
    const int64_t kpanels = (k + KC - 1) / KC, jpanels = (ncols + NC - 1) / NC;                                       \
    HostBuffer<float> bp(kpanels * jpanels * KC * NC);                                                                 \
    _Pragma("omp parallel for schedule(static) num_threads(nt) if (nt > 1)") for (int64_t q = 0; q < kpanels * jpanels; \
                                                                               ++q) {                                  \
      const int64_t k0 = q % kpanels * KC, j0 = q / kpanels * NC;                                                      \
      const int64_t kr = std::min(KC, k - k0), w = std::min<int64_t>(NC, ncols - j0);                                  \
      float* dst = bp.data() + q * KC * NC;                                                                            \
      for (int64_t i = 0; i < kr; ++i) {                                                                               \
        std::memcpy(dst + i * NC, b + (k0 + i) * ncols + j0, (size_t)w * sizeof(float));                              \
        std::fill(dst + i * NC + w, dst + i * NC + (w + V - 1) / V * V, 0.0f); /* the read part of the pad */         \
      }                                                                                                                \
    }                                                                                                                  \
    _Pragma("omp parallel num_threads(nt) if (nt > 1)") {                                                             \
      HostBuffer<float> tile(std::min(RB, rows) * NC); /* the row block's C, contiguous: no TLB miss per row */       \
      /* the same static split of the rows in every panel: each row's block of C has one owner */                     \
      const int64_t t0 = rows * omp_get_thread_num() / omp_get_num_threads();                                          \
      const int64_t t1 = rows * (omp_get_thread_num() + 1) / omp_get_num_threads();                                    \
      for (int64_t r0 = t0; r0 < t1; r0 += RB) { /* row blocks: their C tile (RB x NC) stays in L2 */                 \
        const int64_t r1 = std::min(t1, r0 + RB);                                                                      \
        for (int64_t jp = 0; jp < jpanels; ++jp) {                                                                     \
          const int64_t j0 = jp * NC;                                                                                  \
          const int w = (int)std::min<int64_t>(NC, ncols - j0);                                                        \
          const int na = (w + V - 1) / V;                                                                              \
          for (int64_t kp = 0; kp < kpanels; ++kp) {                                                                   \
            const int64_t k0 = kp * KC, s0 = k0 / m * n, cnt = std::min(KC, k - k0) / m * n;                           \
            nm_rows_dispatch_##S(na, std::make_integer_sequence<int, NmVec<V>::kAcc>{}, r0, r1, cnt,                  \
                                 vals.data() + s0 * rows, off.data() + s0 * rows,                                      \
                                 bp.data() + (jp * kpanels + kp) * KC * NC, tile.data(), NC, w, kp > 0);               \
          }                                                                                                            \
          for (int64_t r = r0; r < r1; ++r)                                                                            \
            std::memcpy(c + r * ncols + j0, tile.data() + (r - r0) * NC, (size_t)w * sizeof(float));                  \
        }                                                                                                              \
      }                                                                                                                \
    }                                                                                                                  \
  }

CT_NM_GEMM(CT_AVX512, 16, avx512)
CT_NM_GEMM(, 8, avx2)
#undef CT_NM_GEMM

/* |a| beats |b| in magnitude order: NaN largest, ties to the lower position (pa < pb). */
template <class A> CT_INLINE bool beats(A a, int pa, A b, int pb) {
  const bool na = a != a, nb = b != b;
  if (na || nb) return na && (!nb || pa < pb);
  const A fa = std::fabs(a), fb = std::fabs(b);
  return fa > fb || (fa == fb && pa < pb);
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cpu_csr_spmm(int dtype, int trans, int64_t rows, int64_t cols, int64_t n, int64_t nnz, const int64_t* crow,
                    const int64_t* col, const void* values, const void* b, void* c, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_csr_spmm";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) || (st = check_sizes(fn, {{"rows", rows}, {"cols", cols}, {"n", n}, {"nnz", nnz}})) ||
      (st = check_product(fn, "rows*n", rows, n)) || (st = check_product(fn, "cols*n", cols, n)) ||
      (st = check_csr(fn, rows, cols, nnz, crow, col)))
    return st;
  const int64_t out_rows = trans ? cols : rows;
  if (out_rows == 0 || n == 0) return CT_OK;
  if ((st = check_ptr(fn, "c", c))) return st;
  if (nnz > 0 && ((st = check_ptr(fn, "values", values)) || (st = check_ptr(fn, "b", b)))) return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    const T* v = (const T*)values;
    if (!trans) {
      gather_rows<T>(rows, crow, v, col, (const T*)b, cols, n, (T*)c, nnz * n);
      return;
    }
    // A^T: the transposed pattern by a counting sort over columns (stable: rows ascending).
    HostBuffer<int64_t> tptr(cols + 1), trow(nnz > 0 ? nnz : 1);
    HostBuffer<T> tval(nnz > 0 ? nnz : 1);
    for (int64_t j = 0; j <= cols; ++j) tptr[j] = 0;
    for (int64_t e = 0; e < nnz; ++e) ++tptr[col[e] + 1];
    for (int64_t j = 0; j < cols; ++j) tptr[j + 1] += tptr[j];
    {
      std::vector<int64_t> next(tptr.data(), tptr.data() + cols);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t e = crow[r]; e < crow[r + 1]; ++e) {
          const int64_t p = next[(size_t)col[e]]++;
          trow[p] = r;
          tval[p] = v[e];
        }
    }
    gather_rows<T>(cols, tptr.data(), tval.data(), trow.data(), (const T*)b, rows, n, (T*)c, nnz * n);
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_csr_sddmm(int dtype, int64_t rows, int64_t cols, int64_t d, int64_t nnz, const int64_t* crow,
                     const int64_t* col, const void* x, const void* y, void* out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_csr_sddmm";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) || (st = check_sizes(fn, {{"rows", rows}, {"cols", cols}, {"d", d}, {"nnz", nnz}})) ||
      (st = check_product(fn, "rows*d", rows, d)) || (st = check_product(fn, "cols*d", cols, d)) ||
      (st = check_csr(fn, rows, cols, nnz, crow, col)))
    return st;
  if (nnz == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out))) return st;
  if (d > 0 && ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y)))) return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    sddmm_rows<T>(rows, crow, col, (const T*)x, (const T*)y, d, (T*)out, nnz * d);
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_csr_softmax(int dtype, int64_t rows, int64_t nnz, const int64_t* crow, const void* x, void* y,
                       int64_t /*stream*/) {
  static const char* fn = "ct_cpu_csr_softmax";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) || (st = check_sizes(fn, {{"rows", rows}, {"nnz", nnz}})) ||
      (st = check_crow(fn, rows, nnz, crow)))
    return st;
  if (nnz == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* xp = (const T*)x;
    T* yp = (T*)y;
    const int nt = threads_for(nnz * 8);
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt) if (nt > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t e0 = crow[r], e1 = crow[r + 1];
      if (e0 == e1) continue;
      A m = -INFINITY;
      for (int64_t e = e0; e < e1; ++e) m = std::max<A>(m, load(xp + e));
      A s = 0;
      for (int64_t e = e0; e < e1; ++e) s += std::exp((A)load(xp + e) - m);
      const A inv = (A)1 / s;
      for (int64_t e = e0; e < e1; ++e) store(yp + e, std::exp((A)load(xp + e) - m) * inv);
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_csr_softmax_backward(int dtype, int64_t rows, int64_t nnz, const int64_t* crow, const void* y,
                                const void* dy, void* dx, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_csr_softmax_backward";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) || (st = check_sizes(fn, {{"rows", rows}, {"nnz", nnz}})) ||
      (st = check_crow(fn, rows, nnz, crow)))
    return st;
  if (nnz == 0) return CT_OK;
  if ((st = check_ptr(fn, "y", y)) || (st = check_ptr(fn, "dy", dy)) || (st = check_ptr(fn, "dx", dx))) return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* yp = (const T*)y;
    const T* gp = (const T*)dy;
    T* dp = (T*)dx;
    const int nt = threads_for(nnz * 4);
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt) if (nt > 1)
    for (int64_t r = 0; r < rows; ++r) {
      A s = 0;
      for (int64_t e = crow[r]; e < crow[r + 1]; ++e) s += (A)load(yp + e) * (A)load(gp + e);
      for (int64_t e = crow[r]; e < crow[r + 1]; ++e) store(dp + e, (A)load(yp + e) * ((A)load(gp + e) - s));
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_topk(int dtype, int64_t outer, int64_t len, int64_t inner, int64_t k, int largest, const void* x,
                void* values, int64_t* indices, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_topk";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) ||
      (st = check_sizes(fn, {{"outer", outer}, {"len", len}, {"inner", inner}, {"k", k}})) ||
      (st = check_product(fn, "outer*len", outer, len)) || (st = check_product(fn, "outer*len*inner", outer * len, inner)))
    return st;
  if (k > len) return fail(CT_ERR_INVALID_ARG, "%s: k = %lld exceeds the axis length %lld", fn, (long long)k, (long long)len);
  const int64_t lines = outer * inner;
  if (lines == 0 || k == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "values", values)) || (st = check_ptr(fn, "indices", indices)))
    return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* xp = (const T*)x;
    T* vp = (T*)values;
    const int nt = threads_for(lines * len * 4);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      std::vector<A> val((size_t)len);
      std::vector<int64_t> pos((size_t)len);
#pragma omp for schedule(static)
      for (int64_t line = 0; line < lines; ++line) {
        const int64_t o = line / inner, i = line % inner;
        const T* src = xp + o * len * inner + i;
        for (int64_t p = 0; p < len; ++p) {
          val[(size_t)p] = load(src + p * inner);
          pos[(size_t)p] = p;
        }
        // NaN counts as the largest value; ties go to the lower position
        auto before = [&](int64_t a, int64_t b) {
          const A va = val[(size_t)a], vb = val[(size_t)b];
          const bool na = va != va, nb = vb != vb;
          if (na || nb) {
            if (na && nb) return a < b;
            return largest ? na : nb;
          }
          if (va != vb) return largest ? va > vb : va < vb;
          return a < b;
        };
        std::partial_sort(pos.begin(), pos.begin() + k, pos.end(), before);
        for (int64_t j = 0; j < k; ++j) {
          const int64_t at = o * k * inner + j * inner + i;
          store(vp + at, val[(size_t)pos[(size_t)j]]);
          indices[at] = pos[(size_t)j];
        }
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_topk_backward(int dtype, int64_t outer, int64_t len, int64_t inner, int64_t k, const void* dvalues,
                         const int64_t* indices, void* dx, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_topk_backward";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) ||
      (st = check_sizes(fn, {{"outer", outer}, {"len", len}, {"inner", inner}, {"k", k}})) ||
      (st = check_product(fn, "outer*len", outer, len)) || (st = check_product(fn, "outer*len*inner", outer * len, inner)) ||
      (st = check_product(fn, "outer*k*inner", outer * k, inner)))
    return st;
  const int64_t total = outer * len * inner, picked = outer * k * inner;
  if (total == 0) return CT_OK;
  if ((st = check_ptr(fn, "dx", dx))) return st;
  if (picked > 0 && ((st = check_ptr(fn, "dvalues", dvalues)) || (st = check_ptr(fn, "indices", indices)))) return st;
  for (int64_t e = 0; e < picked; ++e)
    if (indices[e] < 0 || indices[e] >= len)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: indices[%lld] = %lld is out of range [0, %lld)", fn, (long long)e,
                  (long long)indices[e], (long long)len);
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* gp = (const T*)dvalues;
    T* dp = (T*)dx;
    const int nt = threads_for(total);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t o = 0; o < outer; ++o) {
      T* plane = dp + o * len * inner;
      for (int64_t p = 0; p < len * inner; ++p) store(plane + p, (A)0);
      for (int64_t j = 0; j < k; ++j)
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t at = o * k * inner + j * inner + i;
          T* d = plane + indices[at] * inner + i;
          store(d, (A)load(d) + (A)load(gp + at));
        }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_nm_compress(int dtype, int64_t rows, int64_t k, int n, int m, const void* x, void* values, uint8_t* meta,
                       int64_t /*stream*/) {
  static const char* fn = "ct_cpu_nm_compress";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) || (st = check_sizes(fn, {{"rows", rows}, {"k", k}})) || (st = check_nm(fn, rows, k, n, m)))
    return st;
  if (rows == 0 || k == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "values", values)) || (st = check_ptr(fn, "meta", meta)))
    return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* xp = (const T*)x;
    T* vp = (T*)values;
    const int64_t groups = rows * (k / m);
    const int nt = threads_for(rows * k);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t g = 0; g < groups; ++g) {
      const T* src = xp + g * m;
      A a[16];
      for (int p = 0; p < m; ++p) a[p] = load(src + p);
      int out = 0;
      for (int p = 0; p < m; ++p) {  // keep p when fewer than n positions beat it: O(m^2), m <= 16
        int rank = 0;
        for (int q = 0; q < m; ++q) rank += q != p && beats(a[q], q, a[p], p);
        if (rank < n) {
          store(vp + g * n + out, a[p]);
          meta[g * n + out] = (uint8_t)p;
          ++out;
        }
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_nm_decompress(int dtype, int64_t rows, int64_t k, int n, int m, const void* values, const uint8_t* meta,
                         void* x, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_nm_decompress";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) || (st = check_sizes(fn, {{"rows", rows}, {"k", k}})) || (st = check_nm(fn, rows, k, n, m)))
    return st;
  if (rows == 0 || k == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "values", values)) || (st = check_ptr(fn, "meta", meta)) ||
      (st = check_meta(fn, rows, k, n, m, meta)))
    return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* vp = (const T*)values;
    T* xp = (T*)x;
    const int64_t groups = rows * (k / m);
    const int nt = threads_for(rows * k);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t g = 0; g < groups; ++g) {
      for (int p = 0; p < m; ++p) store(xp + g * m + p, (A)0);
      for (int t = 0; t < n; ++t) store(xp + g * m + meta[g * n + t], (A)load(vp + g * n + t));
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_nm_matmul(int dtype, int64_t rows, int64_t k, int64_t ncols, int n, int m, const void* values,
                     const uint8_t* meta, const void* b, void* c, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_nm_matmul";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) || (st = check_sizes(fn, {{"rows", rows}, {"k", k}, {"ncols", ncols}})) ||
      (st = check_nm(fn, rows, k, n, m)) || (st = check_product(fn, "k*ncols", k, ncols)) ||
      (st = check_product(fn, "rows*ncols", rows, ncols)))
    return st;
  if (rows == 0 || ncols == 0) return CT_OK;
  if ((st = check_ptr(fn, "c", c))) return st;
  if (k == 0) {
    dispatch_sparse(dtype, [&](auto z) {
      using T = decltype(z);
      for (int64_t i = 0; i < rows * ncols; ++i) store((T*)c + i, (compute_t<T>)0);
    });
    return CT_OK;
  }
  if ((st = check_ptr(fn, "values", values)) || (st = check_ptr(fn, "meta", meta)) || (st = check_ptr(fn, "b", b)) ||
      (st = check_meta(fn, rows, k, n, m, meta)))
    return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    const T* vp = (const T*)values;
    const int64_t per_row = k / m * n;
    const bool avx = use_avx512();
    const int nt = threads_for(rows * per_row * ncols);
    // float32 products worth packing (at least 2^21 multiply-adds and a panel's worth of columns):
    // the packed-panel kernel above; its packing costs more than it saves below that
    if constexpr (std::is_same_v<T, float>) {
      if (rows * per_row * ncols >= (int64_t(1) << 21) && ncols >= 48) {
        if (avx) nm_gemm_avx512(rows, k, ncols, n, m, vp, meta, (const float*)b, (float*)c, nt);
        else nm_gemm_avx2(rows, k, ncols, n, m, vp, meta, (const float*)b, (float*)c, nt);
        return;
      }
    }
    // bfloat16, float64 and small float32 products: the row kernel over each row's kept entries
    // (C rounded once)
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      std::vector<int64_t> idx((size_t)per_row);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        nm_columns(per_row, n, m, meta + r * per_row, idx.data());
        row<T>(avx, per_row, vp + r * per_row, idx.data(), (const T*)b, ncols, (T*)c + r * ncols);
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_nm_matmul_backward(int dtype, int64_t rows, int64_t k, int64_t ncols, int n, int m, const void* values,
                              const uint8_t* meta, const void* b, const void* dc, void* dvalues, void* db,
                              int64_t /*stream*/) {
  static const char* fn = "ct_cpu_nm_matmul_backward";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) || (st = check_sizes(fn, {{"rows", rows}, {"k", k}, {"ncols", ncols}})) ||
      (st = check_nm(fn, rows, k, n, m)) || (st = check_product(fn, "k*ncols", k, ncols)) ||
      (st = check_product(fn, "rows*ncols", rows, ncols)))
    return st;
  const int64_t per_row = k / m * n, groups = k / m;
  if (rows == 0 || k == 0) {  // nothing kept: db (if any) is zero
    if (db && k > 0)
      dispatch_sparse(dtype, [&](auto z) {
        using T = decltype(z);
        for (int64_t i = 0; i < k * ncols; ++i) store((T*)db + i, (compute_t<T>)0);
      });
    return CT_OK;
  }
  if ((st = check_ptr(fn, "meta", meta)) || (st = check_meta(fn, rows, k, n, m, meta))) return st;
  if (ncols > 0 && ((st = check_ptr(fn, "b", b)) || (st = check_ptr(fn, "dc", dc)))) return st;
  if (db && (st = check_ptr(fn, "values", values))) return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* vp = (const T*)values;
    const T* dcp = (const T*)dc;
    const T* bp = (const T*)b;
    if (dvalues) {  // dvalues[r, s] = dot(dc[r], b[column of slot s])
      T* dv = (T*)dvalues;
      const bool avx = use_avx512();
      const int nt = threads_for(rows * per_row * ncols);
#pragma omp parallel num_threads(nt) if (nt > 1)
      {
        std::vector<int64_t> idx((size_t)per_row);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
          nm_columns(per_row, n, m, meta + r * per_row, idx.data());
          for (int64_t s = 0; s < per_row; ++s)
            store(dv + r * per_row + s, ncols ? dot<T>(avx, dcp + r * ncols, bp + idx[(size_t)s] * ncols, ncols) : (A)0);
        }
      }
    }
    if (db && ncols > 0) {  // db[g m + p] = sum over rows of value * dc[r]; each thread owns whole groups
      T* dbp = (T*)db;
      const int nt = threads_for(rows * per_row * ncols);
#pragma omp parallel num_threads(nt) if (nt > 1)
      {
        std::vector<A> acc((size_t)(m * ncols));
#pragma omp for schedule(static)
        for (int64_t g = 0; g < groups; ++g) {
          std::fill(acc.begin(), acc.end(), (A)0);
          for (int64_t r = 0; r < rows; ++r)
            for (int t = 0; t < n; ++t) {
              const int64_t s = r * per_row + g * n + t;
              const A a = load(vp + s);
              A* dst = acc.data() + (int64_t)meta[s] * ncols;
              const T* src = dcp + r * ncols;
              for (int64_t j = 0; j < ncols; ++j) dst[j] += a * (A)load(src + j);
            }
          for (int64_t i = 0; i < m * ncols; ++i) store(dbp + g * m * ncols + i, acc[(size_t)i]);
        }
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_bsr_spmm(int dtype, int trans, int64_t rows, int64_t cols, int64_t block, int64_t n, int64_t nnzb,
                    const int64_t* crow, const int64_t* col, const void* values, const void* b, void* c,
                    int64_t /*stream*/) {
  static const char* fn = "ct_cpu_bsr_spmm";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) ||
      (st = check_sizes(fn, {{"rows", rows}, {"cols", cols}, {"n", n}, {"nnzb", nnzb}})) ||
      (st = check_bsr(fn, rows, cols, block)) || (st = check_product(fn, "rows*n", rows, n)) ||
      (st = check_product(fn, "cols*n", cols, n)) || (st = check_product(fn, "nnzb*block*block", nnzb, block * block)) ||
      (st = check_csr(fn, rows / block, cols / block, nnzb, crow, col)))
    return st;
  const int64_t out_rows = trans ? cols : rows;
  if (out_rows == 0 || n == 0) return CT_OK;
  if ((st = check_ptr(fn, "c", c))) return st;
  if (nnzb > 0 && ((st = check_ptr(fn, "values", values)) || (st = check_ptr(fn, "b", b)))) return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    const T* v = (const T*)values;
    const int64_t bs = block, brows = rows / bs, bcols = cols / bs;
    // the blocks of each output block row: A's block rows, or (A^T) A's block columns by a stable counting sort
    HostBuffer<int64_t> tptr(bcols + 1), tblk(nnzb > 0 ? nnzb : 1), trow(nnzb > 0 ? nnzb : 1);
    if (trans) {
      for (int64_t j = 0; j <= bcols; ++j) tptr[j] = 0;
      for (int64_t e = 0; e < nnzb; ++e) ++tptr[col[e] + 1];
      for (int64_t j = 0; j < bcols; ++j) tptr[j + 1] += tptr[j];
      std::vector<int64_t> next(tptr.data(), tptr.data() + bcols);
      for (int64_t i = 0; i < brows; ++i)
        for (int64_t e = crow[i]; e < crow[i + 1]; ++e) {
          const int64_t p = next[(size_t)col[e]]++;
          tblk[p] = e;
          trow[p] = i;
        }
    }
    const int64_t out_brows = trans ? bcols : brows;
    const int64_t* ptr = trans ? tptr.data() : crow;
    const bool z512 = use_avx512();
    const int nt = threads_for(nnzb * bs * bs * n);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      std::vector<T> rv;
      std::vector<int64_t> ri;
#pragma omp for schedule(dynamic, 4)
      for (int64_t i = 0; i < out_brows; ++i) {
        const int64_t cnt = (ptr[i + 1] - ptr[i]) * bs;
        rv.resize((size_t)std::max<int64_t>(cnt, 1));
        ri.resize((size_t)std::max<int64_t>(cnt, 1));
        for (int64_t a = 0; a < bs; ++a) {  // output row i * bs + a: one entry per (block, q)
          int64_t t = 0;
          for (int64_t p = ptr[i]; p < ptr[i + 1]; ++p) {
            const int64_t e = trans ? tblk[p] : p;
            const int64_t base = trans ? trow[p] * bs : col[e] * bs;
            for (int64_t q = 0; q < bs; ++q, ++t) {
              // A B: A[i bs + a, col bs + q] = block e [a, q]; A^T B: A^T[i bs + a, r bs + q] = block e [q, a]
              rv[(size_t)t] = trans ? v[(e * bs + q) * bs + a] : v[(e * bs + a) * bs + q];
              ri[(size_t)t] = base + q;
            }
          }
          row<T>(z512, cnt, rv.data(), ri.data(), (const T*)b, n, (T*)c + (i * bs + a) * n);
        }
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_bsr_sddmm(int dtype, int64_t rows, int64_t cols, int64_t block, int64_t d, int64_t nnzb, const int64_t* crow,
                     const int64_t* col, const void* x, const void* y, void* out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_bsr_sddmm";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype)) ||
      (st = check_sizes(fn, {{"rows", rows}, {"cols", cols}, {"d", d}, {"nnzb", nnzb}})) ||
      (st = check_bsr(fn, rows, cols, block)) || (st = check_product(fn, "rows*d", rows, d)) ||
      (st = check_product(fn, "cols*d", cols, d)) || (st = check_product(fn, "nnzb*block*block", nnzb, block * block)) ||
      (st = check_csr(fn, rows / block, cols / block, nnzb, crow, col)))
    return st;
  if (nnzb == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out))) return st;
  if (d > 0 && ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y)))) return st;
  dispatch_sparse(dtype, [&](auto z) {
    using T = decltype(z);
    const int64_t bs = block;
    const T* xp = (const T*)x;
    const T* yp = (const T*)y;
    T* op = (T*)out;
    const bool z512 = use_avx512();
    const int nt = threads_for(nnzb * bs * bs * d);
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt) if (nt > 1)
    for (int64_t i = 0; i < rows / bs; ++i)
      for (int64_t e = crow[i]; e < crow[i + 1]; ++e)
        for (int64_t a = 0; a < bs; ++a)
          for (int64_t q = 0; q < bs; ++q)
            store(op + (e * bs + a) * bs + q, dot<T>(z512, xp + (i * bs + a) * d, yp + (col[e] * bs + q) * d, d));
  });
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"
