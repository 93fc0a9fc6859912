/*
 * Normalization family: softmax / log-softmax along one axis, layer norm, RMS norm.
 *
 * softmax, inner == 1 (last axis, the hot case): per row of `dim` floats
 *   pass 1: m = max(x)                      (16/32 float lanes, vectorized)
 *   pass 2: y = exp(x - m), s = sum(y)      (vectorized polynomial exp, ~1 ulp; see vmath.h)
 *   pass 3: y *= 1/s                        (log-softmax: y = x - m - log(s), pass 2 stores nothing)
 * The row stays in L1/L2 between passes, so DRAM sees one read and one write per element.
 * float32 with AVX-512: explicit intrinsics, the next row prefetched during pass 2, and for outputs
 * of 32 MiB and more (kStreamOutputBytes) pass 2 writes a per-thread scratch row and pass 3 streams
 * y out with non-temporal stores.
 * A row of all -inf gives NaN (like PyTorch): x - m is NaN. Rows are spread over threads; the
 * row kernel has an AVX-512 build. f16/bf16 rows are widened into a per-thread float buffer.
 * softmax, inner > 1 (non-last axis): the same three passes over columns, carrying
 * vectors of `inner` running maxima and sums (contiguous reads along inner).
 * layernorm / rmsnorm: per row two passes accumulated in float64 lanes (mean, then
 * centered squares: no cancellation), then y = (x - mean) * rstd * gamma + beta in float32, the
 * mean subtracted as hi + lo floats. float32 with AVX-512: one float64 pass of moments shifted by
 * the row's first value (row_moments_f32_avx512 bounds the cancellation), then the output pass,
 * streamed like softmax's for large outputs.
 *
 * Backward (see norm.h): softmax dx = y (dy - sum(dy y)), log-softmax dx = dy - exp(y) sum(dy),
 * row sums in float64 lanes; layer/RMS norm recompute mean and rstd from x (the forward
 * saves nothing), then per row sum(g) and sum(g xhat) in float64 lanes (g = dy gamma) and
 * dx = rstd (g - mean(g) - xhat mean(g xhat)); dgamma/dbeta partials in float64 per fixed
 * block of rows (at most 64 blocks, whatever the thread count), added in block order.
 *
 * Cost: softmax ~3 reads + 1 write per element from cache, 1 exp (~15 FLOPs) per element;
 * DRAM traffic 2 * numel * sizeof(dtype). layernorm: 2 reads + 1 write, ~6 FLOPs per element.
 * softmax backward: 2 reads (y, dy) + 1 write, ~4 FLOPs (log: + 1 exp); norm backward: x
 * read 3-4 times and dy twice (cache-resident rows), dx written once, ~14 FLOPs per element,
 * DRAM ~3 * numel * sizeof(dtype) (+ 16 * 64 * cols bytes of partials).
 */
#include <vector>

#include "cortado/norm.h"
#include "internal.h"
#include "vmath.h"

namespace ct {
namespace {

/* Outputs at least this large (bytes) are streamed past the caches (non-temporal stores) by the
 * float32 AVX-512 softmax, layer norm and RMS norm rows: as large as the L3 of the machines measured,
 * so the next op would read them from memory anyway, and streaming saves reading each output line
 * for ownership before it is overwritten. Softmax [16384, 1024] float32 (BandwidthBenchmark), one /
 * two Zen 5 cores: 10.0 / 5.1 ms with the auto-vectorized row, 6.6 / 4.5 ms in explicit AVX-512
 * with the next row prefetched, 6.0 / 3.5 ms streamed. */
constexpr int64_t kStreamOutputBytes = (int64_t)32 << 20;

/* Whether a float32 row op may stream its [rows, n] output y past the caches (see
 * kStreamOutputBytes): large, rows of whole 64-byte lines, y aligned, not overlapping x. */
inline bool stream_rows(int64_t rows, int64_t n, const float* x, const float* y) {
  return rows * n * 4 >= kStreamOutputBytes && n % 16 == 0 && ((uintptr_t)y & 63) == 0 &&
         (x + rows * n <= y || y + rows * n <= x);
}

// ------------------------------------------------------------------ float32 row softmax
#define CT_SOFTMAX_ROW_BODY(L)                                                        \
  float lane[L];                                                                      \
  for (int j = 0; j < L; ++j) lane[j] = -INFINITY;                                    \
  int64_t i = 0;                                                                      \
  for (; i + L <= n; i += L)                                                          \
    for (int j = 0; j < L; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];    \
  float m = -INFINITY;                                                                \
  for (int j = 0; j < L; ++j) m = lane[j] > m ? lane[j] : m;                          \
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;                                         \
  for (int j = 0; j < L; ++j) lane[j] = 0.0f;                                         \
  i = 0;                                                                              \
  if (log) {                                                                          \
    for (; i + L <= n; i += L)                                                        \
      for (int j = 0; j < L; ++j) lane[j] += exp_f32(x[i + j] - m);                   \
  } else {                                                                            \
    for (; i + L <= n; i += L)                                                        \
      for (int j = 0; j < L; ++j) { float e = exp_f32(x[i + j] - m); y[i + j] = e; lane[j] += e; } \
  }                                                                                   \
  float s = 0.0f;                                                                     \
  for (; i < n; ++i) { float e = exp_f32(x[i] - m); if (!log) y[i] = e; s += e; }     \
  for (int w = L / 2; w > 0; w /= 2)                                                  \
    for (int j = 0; j < w; ++j) lane[j] += lane[j + w];                               \
  s += lane[0];                                                                       \
  if (log) {                                                                          \
    const float c = m + std::log(s);                                                  \
    for (i = 0; i < n; ++i) y[i] = x[i] - c;                                          \
  } else {                                                                            \
    const float r = 1.0f / s;                                                         \
    for (i = 0; i < n; ++i) y[i] *= r;                                                \
  }

/* One row; x and y may alias (in-place). */
void softmax_row_f32(const float* x, float* y, int64_t n, bool log) { CT_SOFTMAX_ROW_BODY(16) }

/* The same three passes in explicit AVX-512: GCC's vectorization of the generic body ran the
 * [16384, 1024] softmax at 13.8 GB/s on one Zen 5 core, 55% of its copy bandwidth. Four 16-lane
 * accumulators per pass, masked tails. vmaxps(x, m) returns m when x is NaN, as the generic
 * `x > m ? x : m`; exp_f32x16 gives exp_f32's bits (vmath.h). */
CT_AVX512 void softmax_row_f32_avx512(const float* x, float* y, int64_t n, bool log, float* scratch = nullptr) {
  // scratch (n floats, 64-byte aligned y, n % 16 == 0): pass 2 keeps the exponentials there, in L1,
  // and pass 3 streams y out with non-temporal stores: y's lines are never read for ownership
  float* e_out = scratch ? scratch : y;
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 a0 = ninf, a1 = ninf, a2 = ninf, a3 = ninf;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_max_ps(_mm512_loadu_ps(x + i), a0);
    a1 = _mm512_max_ps(_mm512_loadu_ps(x + i + 16), a1);
    a2 = _mm512_max_ps(_mm512_loadu_ps(x + i + 32), a2);
    a3 = _mm512_max_ps(_mm512_loadu_ps(x + i + 48), a3);
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_max_ps(_mm512_loadu_ps(x + i), a0);
  const __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
  if (i < n) a0 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tail, x + i), a0);
  const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3)));
  const __m512 vm = _mm512_set1_ps(m);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  i = 0;
  for (; i + 64 <= n; i += 64) {
    // the next row (x + n) into L1 while this one computes: passes 2 and 3 run from L1 and would
    // otherwise leave the memory idle (no misses, so no hardware prefetch) until the next pass 1
    _mm_prefetch((const char*)(x + n + i), _MM_HINT_T0);
    _mm_prefetch((const char*)(x + n + i + 16), _MM_HINT_T0);
    _mm_prefetch((const char*)(x + n + i + 32), _MM_HINT_T0);
    _mm_prefetch((const char*)(x + n + i + 48), _MM_HINT_T0);
    const __m512 e0 = exp_f32x16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    const __m512 e1 = exp_f32x16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm));
    const __m512 e2 = exp_f32x16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 32), vm));
    const __m512 e3 = exp_f32x16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 48), vm));
    if (!log) {
      _mm512_storeu_ps(e_out + i, e0);
      _mm512_storeu_ps(e_out + i + 16, e1);
      _mm512_storeu_ps(e_out + i + 32, e2);
      _mm512_storeu_ps(e_out + i + 48, e3);
    }
    s0 = _mm512_add_ps(s0, e0);
    s1 = _mm512_add_ps(s1, e1);
    s2 = _mm512_add_ps(s2, e2);
    s3 = _mm512_add_ps(s3, e3);
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp_f32x16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    if (!log) _mm512_storeu_ps(e_out + i, e);
    s0 = _mm512_add_ps(s0, e);
  }
  if (i < n) {
    const __m512 e = _mm512_maskz_mov_ps(tail, exp_f32x16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), vm)));
    if (!log) _mm512_mask_storeu_ps(y + i, tail, e);
    s0 = _mm512_add_ps(s0, e);
  }
  const float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  if (scratch) {  // n % 16 == 0, y aligned
    const __m512 c = _mm512_set1_ps(log ? m + std::log(s) : 1.0f / s);
    if (log)
      for (i = 0; i < n; i += 16) _mm512_stream_ps(y + i, _mm512_sub_ps(_mm512_loadu_ps(x + i), c));
    else
      for (i = 0; i < n; i += 16) _mm512_stream_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(scratch + i), c));
  } else if (log) {
    const __m512 c = _mm512_set1_ps(m + std::log(s));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_loadu_ps(x + i), c));
    if (i < n) _mm512_mask_storeu_ps(y + i, tail, _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), c));
  } else {
    const __m512 r = _mm512_set1_ps(1.0f / s);
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), r));
    if (i < n) _mm512_mask_storeu_ps(y + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, y + i), r));
  }
}

/* Reference row (float64 and anything else): the same math with std::exp. */
template <class C> void softmax_row_ref(const C* x, C* y, int64_t n, bool log) {
  C m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  C s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
  if (log) { const C c = m + std::log(s); for (int64_t i = 0; i < n; ++i) y[i] = x[i] - c; }
  else { const C r = (C)1 / s; for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] - m) * r; }
}


template <class T> void softmax_last(int64_t rows, int64_t n, const T* x, T* y, bool log) {
  const bool avx512 = use_avx512();
  if constexpr (std::is_same_v<T, float>) {
    if (avx512 && n <= 16384 && stream_rows(rows, n, x, y)) {
      HostBuffer<float> scratch((int64_t)threads() * n + 16);
      parallel_range(rows, n * 4, [&](int64_t r0, int64_t r1) {
        float* buf = scratch.data() + (size_t)omp_get_thread_num() * (size_t)n;
        for (int64_t r = r0; r < r1; ++r) softmax_row_f32_avx512(x + r * n, y + r * n, n, log, buf);
        _mm_sfence();
      });
      return;
    }
  }
  // Allocated here, outside the parallel region: bad_alloc must not escape an OpenMP region.
  std::vector<float> scratch(std::is_same_v<T, float> || std::is_same_v<T, double> ? 0 : (size_t)threads() * (size_t)n);
  parallel_range(rows, n * 4, [&](int64_t r0, int64_t r1) {
    if constexpr (std::is_same_v<T, float>) {
      for (int64_t r = r0; r < r1; ++r)
        avx512 ? softmax_row_f32_avx512(x + r * n, y + r * n, n, log) : softmax_row_f32(x + r * n, y + r * n, n, log);
    } else if constexpr (std::is_same_v<T, double>) {
      for (int64_t r = r0; r < r1; ++r) softmax_row_ref<double>(x + r * n, y + r * n, n, log);
    } else {  // f16/bf16: widen the row into this thread's buffer, float32 kernel, round back
      float* buf = scratch.data() + (size_t)omp_get_thread_num() * (size_t)n;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t i = 0; i < n; ++i) buf[i] = load(x + r * n + i);
        avx512 ? softmax_row_f32_avx512(buf, buf, n, log) : softmax_row_f32(buf, buf, n, log);
        for (int64_t i = 0; i < n; ++i) store<T>(y + r * n + i, buf[i]);
      }
    }
  });
}

/* Softmax along a non-last axis: x is [outer, dim, inner]; column blocks of <= 256 inner
 * positions carry their running max and sum vectors. */
template <class T> void softmax_inner(int64_t outer, int64_t dim, int64_t inner, const T* x, T* y, bool log) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  constexpr int64_t B = 256;
  const int64_t chunks = (inner + B - 1) / B;
  parallel_range(outer * chunks, dim * B * 4, [&](int64_t i0, int64_t i1) {
    C m[B], s[B];
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t o = it / chunks, j0 = (it % chunks) * B, b = inner - j0 < B ? inner - j0 : B;
      const T* xs = x + o * dim * inner + j0;
      T* ys = y + o * dim * inner + j0;
      for (int64_t j = 0; j < b; ++j) { m[j] = -INFINITY; s[j] = 0; }
      for (int64_t d = 0; d < dim; ++d)
        for (int64_t j = 0; j < b; ++j) { C v = (C)load(xs + d * inner + j); m[j] = v > m[j] ? v : m[j]; }
      for (int64_t d = 0; d < dim; ++d)
        for (int64_t j = 0; j < b; ++j) s[j] += std::exp((C)load(xs + d * inner + j) - m[j]);
      for (int64_t j = 0; j < b; ++j) {
        if (log) s[j] = m[j] + std::log(s[j]);
        else s[j] = (C)1 / s[j];
      }
      for (int64_t d = 0; d < dim; ++d)
        for (int64_t j = 0; j < b; ++j) {
          C v = (C)load(xs + d * inner + j);
          store<T>(ys + d * inner + j, log ? v - s[j] : std::exp(v - m[j]) * s[j]);
        }
    }
  });
}

// ------------------------------------------------------------------ layer norm / RMS norm
/* sum of f(x_i) over a row in 8 float64 lanes (vectorizes without reassociation). */
template <class T, class F> CT_INLINE double row_sum(const T* x, int64_t n, F f) {
  double lane[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += f((double)load(x + i + j));
  double s = 0;
  for (; i < n; ++i) s += f((double)load(x + i));
  return s + ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

/* The moments of a float32 row for the AVX-512 rows below, in one pass: with the shift K = x[0]
 * and d = x - K (in float64), sd = sum d and sq = sum d^2, so mean = K + sd / n and var =
 * sq / n - (sd / n)^2. The shift bounds the cancellation: x[0] is one of the row's values, so
 * (mean - K)^2 <= n var and the subtraction loses at most a factor n of float64's 1e-16 (1e-10
 * relative for rows of a million). center false (RMS norm): K = 0, sq = sum x^2. Four chains of
 * each sum: one chain would bound the pass at the float64 add latency. */
CT_AVX512 CT_INLINE void moments_term(__m512 v, bool half, __m512d k, __m512d& s, __m512d& q) {
  const __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(half ? _mm512_extractf32x8_ps(v, 1) : _mm512_castps512_ps256(v)), k);
  s = _mm512_add_pd(s, d);
  q = _mm512_fmadd_pd(d, d, q);
}

CT_AVX512 CT_INLINE void row_moments_f32_avx512(const float* x, int64_t n, bool center, double* mean, double* var) {
  const double K = center ? (double)x[0] : 0.0;
  const __m512d k = _mm512_set1_pd(K);
  __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0, q0 = s0, q1 = s0, q2 = s0, q3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 v = _mm512_loadu_ps(x + i), w = _mm512_loadu_ps(x + i + 16);
    moments_term(v, false, k, s0, q0);
    moments_term(v, true, k, s1, q1);
    moments_term(w, false, k, s2, q2);
    moments_term(w, true, k, s3, q3);
  }
  double sd = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
  double sq = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(q0, q1), _mm512_add_pd(q2, q3)));
  for (; i < n; ++i) {
    const double d = (double)x[i] - K;
    sd += d;
    sq += d * d;
  }
  const double md = sd / (double)n;
  *mean = center ? K + md : 0.0;
  const double v = center ? sq / (double)n - md * md : sq / (double)n;
  *var = v < 0 ? 0.0 : v;  // rounding may leave a tiny negative; NaN (a NaN in the row) stays NaN
}

/* y = (x - mean) rstd gamma + beta over one float32 row (gamma, beta optional), in AVX-512; the
 * statistics in float64 from row_moments_f32_avx512 (for RMS norm mean = 0). GCC left the float64
 * sums of the generic row (two passes) scalar: layer norm ran at 56% of the copy bandwidth on one
 * Zen 5 core. The next row is prefetched while this one is written (the output pass runs from L1
 * and would leave the memory idle), and stream: y goes out with non-temporal stores. */
CT_AVX512 void norm_row_f32_avx512(const float* x, const float* gamma, const float* beta, int64_t n, double eps,
                                   bool center, float* y, float* mean_out, float* rstd_out, bool stream) {
  double mean, var;
  row_moments_f32_avx512(x, n, center, &mean, &var);
  const double rstd = 1.0 / std::sqrt(var + eps);
  if (mean_out) *mean_out = (float)mean;
  if (rstd_out) *rstd_out = (float)rstd;
  // mean as hi + lo floats: x - hi is exact for x near the mean, so rows far from zero (mean 1e4,
  // deviation 1) keep their float32 precision, which subtracting (float)mean alone would lose
  const float hi = (float)mean;
  const __m512 mu = _mm512_set1_ps(hi), mu_lo = _mm512_set1_ps((float)(mean - (double)hi));
  const __m512 rs = _mm512_set1_ps((float)rstd);
  for (int64_t i = 0; i < n; i += 16) {
    _mm_prefetch((const char*)(x + n + i), _MM_HINT_T0);
    const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mu), mu_lo), rs);
    if (gamma) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, gamma + i));
    if (beta) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, beta + i));
    if (stream) _mm512_stream_ps(y + i, v);  // n % 16 == 0 and y aligned: k is all ones
    else _mm512_mask_storeu_ps(y + i, k, v);
  }
}

/* Layer norm (center) or RMS norm over [rows, cols] float32 rows with the AVX-512 row, the output
 * streamed when stream_rows allows it. */
void norm_rows_f32_avx512(int64_t rows, int64_t cols, const float* x, const float* gamma, const float* beta,
                          double eps, bool center, float* y, float* mean_out, float* rstd_out) {
  const bool stream = stream_rows(rows, cols, x, y);
  parallel_range(rows, cols * (center ? 3 : 2), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      norm_row_f32_avx512(x + r * cols, gamma, beta, cols, eps, center, y + r * cols,
                          mean_out ? mean_out + r : nullptr, rstd_out ? rstd_out + r : nullptr, stream);
    if (stream) _mm_sfence();
  });
}

template <class T> void layernorm_typed(int64_t rows, int64_t cols, const T* x, const T* gamma, const T* beta,
                                        double eps, T* y, float* mean_out, float* rstd_out) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_avx512()) return norm_rows_f32_avx512(rows, cols, x, gamma, beta, eps, true, y, mean_out, rstd_out);
  }
  parallel_range(rows, cols * 3, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      const double mean = row_sum(xr, cols, [](double v) { return v; }) / (double)cols;
      const double var = row_sum(xr, cols, [mean](double v) { return (v - mean) * (v - mean); }) / (double)cols;
      const double rstd = 1.0 / std::sqrt(var + eps);
      if (mean_out) mean_out[r] = (float)mean;
      if (rstd_out) rstd_out[r] = (float)rstd;
      using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
      const C mu = (C)mean, mu_lo = (C)(mean - (double)mu), rs = (C)rstd;  // hi + lo: see norm_row_f32_avx512
      for (int64_t i = 0; i < cols; ++i) {
        C v = (((C)load(xr + i) - mu) - mu_lo) * rs;
        if (gamma) v *= (C)load(gamma + i);
        if (beta) v += (C)load(beta + i);
        store<T>(yr + i, v);
      }
    }
  });
}

template <class T> void rmsnorm_typed(int64_t rows, int64_t cols, const T* x, const T* gamma, double eps, T* y,
                                      float* rstd_out) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_avx512()) return norm_rows_f32_avx512(rows, cols, x, gamma, nullptr, eps, false, y, nullptr, rstd_out);
  }
  parallel_range(rows, cols * 2, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      const double ms = row_sum(xr, cols, [](double v) { return v * v; }) / (double)cols;
      const double rstd = 1.0 / std::sqrt(ms + eps);
      if (rstd_out) rstd_out[r] = (float)rstd;
      using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
      const C rs = (C)rstd;
      for (int64_t i = 0; i < cols; ++i) {
        C v = (C)load(xr + i) * rs;
        if (gamma) v *= (C)load(gamma + i);
        store<T>(yr + i, v);
      }
    }
  });
}

// ------------------------------------------------------------------ backward
/* sum of f(a_i, b_i) over a row in 8 float64 lanes. */
template <class T, class F> CT_INLINE double row_sum2(const T* a, const T* b, int64_t n, F f) {
  double lane[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += f((double)load(a + i + j), (double)load(b + i + j));
  double s = 0;
  for (; i < n; ++i) s += f((double)load(a + i), (double)load(b + i));
  return s + ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

template <class C> CT_INLINE C exp_c(C v) {
  if constexpr (std::is_same_v<C, float>) return exp_f32(v);
  else return std::exp(v);
}

/* One row of the softmax backward: softmax dx = y (dy - sum(dy y)); log: dx = dy - exp(y) sum(dy). */
template <class T> CT_INLINE void softmax_bwd_row(const T* y, const T* dy, T* dx, int64_t n, bool log) {
  using C = compute_t<T>;
  if (log) {
    const C s = (C)row_sum2(y, dy, n, [](double, double b) { return b; });
    for (int64_t i = 0; i < n; ++i) store<T>(dx + i, (C)load(dy + i) - exp_c<C>((C)load(y + i)) * s);
  } else {
    const C d = (C)row_sum2(y, dy, n, [](double a, double b) { return a * b; });
    for (int64_t i = 0; i < n; ++i) store<T>(dx + i, (C)load(y + i) * ((C)load(dy + i) - d));
  }
}
void softmax_bwd_row_f32(const float* y, const float* dy, float* dx, int64_t n, bool log) {
  softmax_bwd_row<float>(y, dy, dx, n, log);
}
CT_AVX512 void softmax_bwd_row_f32_avx512(const float* y, const float* dy, float* dx, int64_t n, bool log) {
  softmax_bwd_row<float>(y, dy, dx, n, log);
}

template <class T> void softmax_backward_typed(int64_t outer, int64_t dim, int64_t inner, const T* y, const T* dy, T* dx,
                                               bool log) {
  using C = compute_t<T>;
  if (inner == 1) {
    const bool avx512 = use_avx512();
    parallel_range(outer, dim * 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if constexpr (std::is_same_v<T, float>) {
          avx512 ? softmax_bwd_row_f32_avx512(y + r * dim, dy + r * dim, dx + r * dim, dim, log)
                 : softmax_bwd_row_f32(y + r * dim, dy + r * dim, dx + r * dim, dim, log);
        } else {
          softmax_bwd_row<T>(y + r * dim, dy + r * dim, dx + r * dim, dim, log);
        }
      }
    });
    return;
  }
  // non-last axis: column blocks of <= 256 inner positions carry their sums (float64).
  constexpr int64_t B = 256;
  const int64_t chunks = (inner + B - 1) / B;
  parallel_range(outer * chunks, dim * B * 4, [&](int64_t i0, int64_t i1) {
    double s[B];
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t o = it / chunks, j0 = (it % chunks) * B, b = inner - j0 < B ? inner - j0 : B;
      const int64_t base = o * dim * inner + j0;
      for (int64_t j = 0; j < b; ++j) s[j] = 0;
      for (int64_t d = 0; d < dim; ++d)
        for (int64_t j = 0; j < b; ++j) {
          const int64_t p = base + d * inner + j;
          s[j] += log ? (double)load(dy + p) : (double)load(dy + p) * (double)load(y + p);
        }
      for (int64_t d = 0; d < dim; ++d)
        for (int64_t j = 0; j < b; ++j) {
          const int64_t p = base + d * inner + j;
          const C yv = (C)load(y + p), g = (C)load(dy + p);
          store<T>(dx + p, log ? g - exp_c<C>(yv) * (C)s[j] : yv * (g - (C)s[j]));
        }
    }
  });
}

/* Layer norm (RMS = false) or RMS norm backward; see norm.h. Rows are split into at most 64
 * fixed blocks (independent of the thread count); each block accumulates its dgamma/dbeta
 * partial sums in float64, and the partials are added in block order at the end. */
template <class T, bool RMS>
void norm_backward_typed(int64_t rows, int64_t cols, const T* x, const T* gamma, double eps, const T* dy, T* dx,
                         T* dgamma, T* dbeta) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t nb = rows < 64 ? rows : 64;
  const bool want_g = dgamma != nullptr, want_b = !RMS && dbeta != nullptr;
  std::vector<double> part((size_t)(want_g || want_b ? nb * cols * 2 : 0));
  const double inv_n = 1.0 / (double)cols;
  parallel_range(nb, (rows / nb + 1) * cols * 6, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double* pg = part.empty() ? nullptr : part.data() + (size_t)(b * cols * 2);
      double* pb = pg ? pg + cols : nullptr;
      if (pg) std::memset(pg, 0, sizeof(double) * (size_t)cols * 2);
      const int64_t r_lo = rows * b / nb, r_hi = rows * (b + 1) / nb;
      for (int64_t r = r_lo; r < r_hi; ++r) {
        const T* xr = x + r * cols;
        const T* dyr = dy + r * cols;
        T* dxr = dx + r * cols;
        double mean = 0, rstd;
        if constexpr (!RMS) {
          mean = row_sum(xr, cols, [](double v) { return v; }) * inv_n;
          const double var = row_sum(xr, cols, [mean](double v) { return (v - mean) * (v - mean); }) * inv_n;
          rstd = 1.0 / std::sqrt(var + eps);
        } else {
          rstd = 1.0 / std::sqrt(row_sum(xr, cols, [](double v) { return v * v; }) * inv_n + eps);
        }
        // a = sum(g), c = sum(g * xhat), g = dy * gamma
        double la[8] = {0}, lc[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= cols; i += 8)
          for (int j = 0; j < 8; ++j) {
            const double xh = ((double)load(xr + i + j) - mean) * rstd;
            const double g = (double)load(dyr + i + j) * (gamma ? (double)load(gamma + i + j) : 1.0);
            la[j] += g;
            lc[j] += g * xh;
          }
        double sa = 0, sc = 0;
        for (; i < cols; ++i) {
          const double xh = ((double)load(xr + i) - mean) * rstd;
          const double g = (double)load(dyr + i) * (gamma ? (double)load(gamma + i) : 1.0);
          sa += g;
          sc += g * xh;
        }
        for (int j = 0; j < 8; ++j) { sa += la[j]; sc += lc[j]; }
        const C mu = (C)mean, rs = (C)rstd, ma = RMS ? (C)0 : (C)(sa * inv_n), mc = (C)(sc * inv_n);
        for (int64_t k = 0; k < cols; ++k) {
          const C xh = ((C)load(xr + k) - mu) * rs;
          const C d = (C)load(dyr + k);
          const C g = gamma ? d * (C)load(gamma + k) : d;
          store<T>(dxr + k, (compute_t<T>)(rs * (g - ma - xh * mc)));
        }
        if (pg) {
          for (int64_t k = 0; k < cols; ++k) {
            const double d = (double)load(dyr + k);
            pg[k] += d * (((double)load(xr + k) - mean) * rstd);
            pb[k] += d;
          }
        }
      }
    }
  });
  if (part.empty()) return;
  parallel_range(cols, nb * 2, [&](int64_t c0, int64_t c1) {
    for (int64_t k = c0; k < c1; ++k) {
      double g = 0, s = 0;
      for (int64_t b = 0; b < nb; ++b) {
        g += part[(size_t)(b * cols * 2 + k)];
        s += part[(size_t)(b * cols * 2 + cols + k)];
      }
      if (want_g) store<T>(dgamma + k, (compute_t<T>)g);
      if (want_b) store<T>(dbeta + k, (compute_t<T>)s);
    }
  });
}

int check_size(const char* fn, const char* name, int64_t v) {
  return v >= 0 ? CT_OK : fail(CT_ERR_INVALID_ARG, "%s: %s=%lld is negative", fn, name, (long long)v);
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cpu_softmax(int dtype, int log, int64_t outer, int64_t dim, int64_t inner, const void* x, void* y, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_softmax";
  CT_TRY
  int st;
  if ((st = check_float_dtype(fn, dtype)) || (st = check_size(fn, "outer", outer)) || (st = check_size(fn, "dim", dim)) ||
      (st = check_size(fn, "inner", inner)))
    return st;
  int64_t t;
  if (__builtin_mul_overflow(outer, dim, &t) || __builtin_mul_overflow(t, inner, &t))
    return fail(CT_ERR_INVALID_ARG, "%s: outer*dim*inner overflows int64", fn);
  if (t == 0) return CT_OK;
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    if (inner == 1) softmax_last<T>(outer, dim, (const T*)x, (T*)y, log != 0);
    else softmax_inner<T>(outer, dim, inner, (const T*)x, (T*)y, log != 0);
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_layernorm(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, const void* beta,
                     double eps, void* y, float* mean_out, float* rstd_out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_layernorm";
  CT_TRY
  int st;
  if ((st = check_float_dtype(fn, dtype)) || (st = check_size(fn, "rows", rows)) || (st = check_size(fn, "cols", cols)))
    return st;
  if (rows == 0) return CT_OK;
  if (cols == 0) {  // empty rows: mean 0 / rstd of eps only is meaningless; report NaN like 0/0
    if (mean_out) for (int64_t r = 0; r < rows; ++r) mean_out[r] = NAN;
    if (rstd_out) for (int64_t r = 0; r < rows; ++r) rstd_out[r] = NAN;
    return CT_OK;
  }
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    layernorm_typed<T>(rows, cols, (const T*)x, (const T*)gamma, (const T*)beta, eps, (T*)y, mean_out, rstd_out);
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_rmsnorm(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, double eps, void* y,
                   float* rstd_out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_rmsnorm";
  CT_TRY
  int st;
  if ((st = check_float_dtype(fn, dtype)) || (st = check_size(fn, "rows", rows)) || (st = check_size(fn, "cols", cols)))
    return st;
  if (rows == 0) return CT_OK;
  if (cols == 0) {
    if (rstd_out) for (int64_t r = 0; r < rows; ++r) rstd_out[r] = NAN;
    return CT_OK;
  }
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "y", y))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    rmsnorm_typed<T>(rows, cols, (const T*)x, (const T*)gamma, eps, (T*)y, rstd_out);
  });
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"

template <bool RMS>
static int norm_backward_entry(const char* fn, int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                               double eps, const void* dy, void* dx, void* dgamma, void* dbeta) {
  CT_TRY
  int st;
  if ((st = check_float_dtype(fn, dtype)) || (st = check_size(fn, "rows", rows)) || (st = check_size(fn, "cols", cols)))
    return st;
  int64_t t;
  if (__builtin_mul_overflow(rows, cols, &t)) return fail(CT_ERR_INVALID_ARG, "%s: rows*cols overflows int64", fn);
  if (!(eps >= 0)) return fail(CT_ERR_INVALID_ARG, "%s: eps %g must be non-negative", fn, eps);
  if (cols == 0) return CT_OK;
  if (rows == 0) {  // nothing to reduce: the parameter gradients are zero
    dispatch_float(dtype, [&](auto z) {
      using T = decltype(z);
      for (int64_t k = 0; k < cols; ++k) {
        if (dgamma) store<T>((T*)dgamma + k, (compute_t<T>)0);
        if (dbeta) store<T>((T*)dbeta + k, (compute_t<T>)0);
      }
    });
    return CT_OK;
  }
  if ((st = check_ptr(fn, "x", x)) || (st = check_ptr(fn, "dy", dy)) || (st = check_ptr(fn, "dx", dx))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    norm_backward_typed<T, RMS>(rows, cols, (const T*)x, (const T*)gamma, eps, (const T*)dy, (T*)dx, (T*)dgamma,
                                (T*)dbeta);
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" {

int ct_cpu_softmax_backward(int dtype, int log, int64_t outer, int64_t dim, int64_t inner, const void* y,
                            const void* dy, void* dx, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_softmax_backward";
  CT_TRY
  int st;
  if ((st = check_float_dtype(fn, dtype)) || (st = check_size(fn, "outer", outer)) || (st = check_size(fn, "dim", dim)) ||
      (st = check_size(fn, "inner", inner)))
    return st;
  int64_t t;
  if (__builtin_mul_overflow(outer, dim, &t) || __builtin_mul_overflow(t, inner, &t))
    return fail(CT_ERR_INVALID_ARG, "%s: outer*dim*inner overflows int64", fn);
  if (t == 0) return CT_OK;
  if ((st = check_ptr(fn, "y", y)) || (st = check_ptr(fn, "dy", dy)) || (st = check_ptr(fn, "dx", dx))) return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    softmax_backward_typed<T>(outer, dim, inner, (const T*)y, (const T*)dy, (T*)dx, log != 0);
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_layernorm_backward(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, double eps,
                              const void* dy, void* dx, void* dgamma, void* dbeta, int64_t /*stream*/) {
  return norm_backward_entry<false>("ct_cpu_layernorm_backward", dtype, rows, cols, x, gamma, eps, dy, dx, dgamma,
                                    dbeta);
}

int ct_cpu_rmsnorm_backward(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, double eps,
                            const void* dy, void* dx, void* dgamma, int64_t /*stream*/) {
  return norm_backward_entry<true>("ct_cpu_rmsnorm_backward", dtype, rows, cols, x, gamma, eps, dy, dx, dgamma,
                                   nullptr);
}

}  // extern "C"
