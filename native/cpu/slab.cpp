/*
 * SLAB family (contract in cortado/slab.h): the simplified linear attention of SLAB,
 * o_n = relu(q_n)^T KV / (relu(q_n) . kbar + eps) with KV = (1/N) sum_m relu(k_m) v_m^T and
 * kbar = (1/N) sum_m relu(k_m), forward and backward.
 *
 * One task per (batch, head), split over the OpenMP threads; each task keeps KV (and in the
 * backward dKV) [D, D] in a per-thread workspace, so it stays in L1/L2 for D <= 128:
 *   forward : one pass over k, v accumulating KV and kbar (rank-1 updates, row by row: D axpys of
 *             length D per token, skipped where relu(k) is 0), then one pass over q writing o
 *             (D axpys per token). 4 N D^2 FLOPs, 4 N D elements moved.
 *   backward: KV, kbar again; one pass over q, dO giving dq and accumulating dKV = sum phi(q) g^T
 *             and dkbar; one pass over k, v giving dk (D dots of length D) and dv (D axpys).
 *             ~12 N D^2 FLOPs, 7 N D elements moved.
 * The vector primitives (axpy, dot, scale) come in three flavours used by the same per-head code:
 * Scalar (the plain loops: float64, and the reference the other two are checked against through
 * the Java float64 reference), Avx2 (float32, 8 lanes, the x86-64-v3 baseline) and Avx512
 * (float32, 16 lanes with masked tails; chosen at run time by use_avx512()). Results do not
 * depend on the thread count (each head is summed in token order by one thread).
 */
#include <algorithm>
#include <cmath>

#include "cortado/slab.h"
#include "internal.h"

namespace ct {
namespace {

// ------------------------------------------------------------------ vector primitives
template <class T> struct Scalar {
  static void axpy(int64_t n, T a, const T* x, T* y) {
    for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
  }
  static T dot(int64_t n, const T* x, const T* y) {
    T s = 0;
    for (int64_t j = 0; j < n; ++j) s += x[j] * y[j];
    return s;
  }
  static void scale(int64_t n, T a, const T* x, T* y) {
    for (int64_t j = 0; j < n; ++j) y[j] = a * x[j];
  }
};

struct Avx2 {
  static CT_INLINE void axpy(int64_t n, float a, const float* x, float* y) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
    for (; j < n; ++j) y[j] += a * x[j];
  }
  static CT_INLINE float dot(int64_t n, const float* x, const float* y) {
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j), acc);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float r = _mm_cvtss_f32(s);
    for (; j < n; ++j) r += x[j] * y[j];
    return r;
  }
  static CT_INLINE void scale(int64_t n, float a, const float* x, float* y) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_mul_ps(va, _mm256_loadu_ps(x + j)));
    for (; j < n; ++j) y[j] = a * x[j];
  }
};

/* Only instantiated inside CT_AVX512 functions (run_avx512 below). */
struct Avx512 {
  CT_AVX512 static inline __mmask16 tail(int64_t r) { return (__mmask16)((1u << r) - 1u); }
  CT_AVX512 static inline void axpy(int64_t n, float a, const float* x, float* y) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(y + j, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + j), _mm512_loadu_ps(y + j)));
    if (j < n) {
      const __mmask16 m = tail(n - j);
      _mm512_mask_storeu_ps(y + j, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + j), _mm512_maskz_loadu_ps(m, y + j)));
    }
  }
  CT_AVX512 static inline float dot(int64_t n, const float* x, const float* y) {
    __m512 acc = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(y + j), acc);
    if (j < n) {
      const __mmask16 m = tail(n - j);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + j), _mm512_maskz_loadu_ps(m, y + j), acc);
    }
    return _mm512_reduce_add_ps(acc);
  }
  CT_AVX512 static inline void scale(int64_t n, float a, const float* x, float* y) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(y + j, _mm512_mul_ps(va, _mm512_loadu_ps(x + j)));
    if (j < n) {
      const __mmask16 m = tail(n - j);
      _mm512_mask_storeu_ps(y + j, m, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, x + j)));
    }
  }
};

// ------------------------------------------------------------------ one (batch, head)
/* One head's operands: rows of q, k, v at element strides qn, kn, vn; o, dO, dq, dk, dv contiguous. */
template <class T> struct Head {
  int64_t N, D;
  const T *q, *k, *v;
  int64_t qn, kn, vn;
  T eps;
};

/* KV = (1/N) sum relu(k_m) v_m^T, kbar = (1/N) sum relu(k_m). 2 N D^2 FLOPs. */
template <class T, class V> CT_INLINE void build_kv(const Head<T>& h, T* kv, T* kbar) {
  const int64_t D = h.D;
  std::fill(kv, kv + D * D, T(0));
  std::fill(kbar, kbar + D, T(0));
  for (int64_t m = 0; m < h.N; ++m) {
    const T* km = h.k + m * h.kn;
    const T* vm = h.v + m * h.vn;
    for (int64_t i = 0; i < D; ++i) {
      const T a = km[i] > T(0) ? km[i] : T(0);
      if (a != T(0)) {
        V::axpy(D, a, vm, kv + i * D);
        kbar[i] += a;
      }
    }
  }
  const T inv = T(1) / T(h.N);
  V::scale(D * D, inv, kv, kv);
  V::scale(D, inv, kbar, kbar);
}

/* num = relu(q_n)^T KV into num, relu(q_n) into qp; returns relu(q_n) . kbar + eps. 2 D^2 FLOPs. */
template <class T, class V> CT_INLINE T row_num(const Head<T>& h, int64_t n, const T* kv, const T* kbar, T* qp, T* num) {
  const int64_t D = h.D;
  const T* qr = h.q + n * h.qn;
  std::fill(num, num + D, T(0));
  T den = h.eps;
  for (int64_t i = 0; i < D; ++i) {
    const T a = qr[i] > T(0) ? qr[i] : T(0);
    qp[i] = a;
    if (a != T(0)) {
      V::axpy(D, a, kv + i * D, num);
      den += a * kbar[i];
    }
  }
  return den;
}

/* ws: D^2 + 3 D elements. */
template <class T, class V> CT_INLINE void head_forward(const Head<T>& h, T* o, T* ws) {
  const int64_t D = h.D;
  T *kv = ws, *kbar = kv + D * D, *qp = kbar + D, *num = qp + D;
  build_kv<T, V>(h, kv, kbar);
  for (int64_t n = 0; n < h.N; ++n) {
    const T den = row_num<T, V>(h, n, kv, kbar, qp, num);
    V::scale(D, T(1) / den, num, o + n * D);
  }
}

/* ws: 2 D^2 + 5 D elements. */
template <class T, class V>
CT_INLINE void head_backward(const Head<T>& h, const T* dout, T* dq, T* dk, T* dv, T* ws) {
  const int64_t D = h.D;
  T *kv = ws, *dkv = kv + D * D, *kbar = dkv + D * D, *dkbar = kbar + D, *qp = dkbar + D, *num = qp + D, *g = num + D;
  build_kv<T, V>(h, kv, kbar);
  std::fill(dkv, dkv + D * D, T(0));
  std::fill(dkbar, dkbar + D, T(0));
  for (int64_t n = 0; n < h.N; ++n) {
    const T inv = T(1) / row_num<T, V>(h, n, kv, kbar, qp, num);
    const T* gr = dout + n * D;
    // c = -(dO . o) / z with o = num / z
    const T c = -V::dot(D, gr, num) * inv * inv;
    V::scale(D, inv, gr, g);
    const T* qr = h.q + n * h.qn;
    T* dqr = dq + n * D;
    for (int64_t i = 0; i < D; ++i) {
      dqr[i] = qr[i] > T(0) ? V::dot(D, kv + i * D, g) + c * kbar[i] : T(0);
      if (qp[i] != T(0)) {
        V::axpy(D, qp[i], g, dkv + i * D);
        dkbar[i] += c * qp[i];
      }
    }
  }
  const T invn = T(1) / T(h.N);
  for (int64_t m = 0; m < h.N; ++m) {
    const T* km = h.k + m * h.kn;
    const T* vm = h.v + m * h.vn;
    T* dkr = dk + m * D;
    T* dvr = dv + m * D;
    std::fill(dvr, dvr + D, T(0));
    for (int64_t i = 0; i < D; ++i) {
      if (km[i] > T(0)) {
        dkr[i] = (V::dot(D, dkv + i * D, vm) + dkbar[i]) * invn;
        V::axpy(D, km[i], dkv + i * D, dvr);
      } else {
        dkr[i] = T(0);
      }
    }
    V::scale(D, invn, dvr, dvr);
  }
}

// ------------------------------------------------------------------ the call: checks, heads over threads
struct Call {
  int64_t B, H, N, D;
  const void *q, *k, *v;
  const int64_t *qs, *ks, *vs;
  double eps;
  const void* dout;  // backward only
  void *o, *dq, *dk, *dv;
};

template <class T> Head<T> head_of(const Call& c, int64_t bh) {
  const int64_t b = bh / c.H, hd = bh % c.H;
  return Head<T>{c.N, c.D,
                 (const T*)c.q + b * c.qs[0] + hd * c.qs[1],
                 (const T*)c.k + b * c.ks[0] + hd * c.ks[1],
                 (const T*)c.v + b * c.vs[0] + hd * c.vs[1],
                 c.qs[2], c.ks[2], c.vs[2], (T)c.eps};
}

template <class T> int64_t ws_per_thread(const Call& c, bool backward) {
  return backward ? 2 * c.D * c.D + 5 * c.D : c.D * c.D + 3 * c.D;
}

/* Runs every head with the primitives V; ws holds threads() slices of ws_per_thread. */
template <class T, class V> CT_INLINE void run_heads(const Call& c, bool backward, T* ws, int64_t per) {
  const int64_t nd = c.N * c.D;
  parallel_range(c.B * c.H, (backward ? 12 : 4) * c.N * c.D * c.D, [&](int64_t i0, int64_t i1) {
    T* w = ws + (int64_t)omp_get_thread_num() * per;
    for (int64_t bh = i0; bh < i1; ++bh) {
      const Head<T> h = head_of<T>(c, bh);
      if (backward)
        head_backward<T, V>(h, (const T*)c.dout + bh * nd, (T*)c.dq + bh * nd, (T*)c.dk + bh * nd, (T*)c.dv + bh * nd, w);
      else
        head_forward<T, V>(h, (T*)c.o + bh * nd, w);
    }
  });
}

CT_AVX512 void run_avx512(const Call& c, bool backward, float* ws, int64_t per) {
  const int64_t nd = c.N * c.D;
  parallel_range(c.B * c.H, (backward ? 12 : 4) * c.N * c.D * c.D, [&](int64_t i0, int64_t i1) CT_AVX512 {
    float* w = ws + (int64_t)omp_get_thread_num() * per;
    for (int64_t bh = i0; bh < i1; ++bh) {
      const Head<float> h = head_of<float>(c, bh);
      if (backward)
        head_backward<float, Avx512>(h, (const float*)c.dout + bh * nd, (float*)c.dq + bh * nd, (float*)c.dk + bh * nd,
                                     (float*)c.dv + bh * nd, w);
      else
        head_forward<float, Avx512>(h, (float*)c.o + bh * nd, w);
    }
  });
}

int check_call(const char* fn, int dtype, const int64_t* dims, const Call& c, bool backward) {
  if (dtype != CT_F32 && dtype != CT_F64)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64 only)", fn, dtype_name(dtype), dtype);
  if (!dims) return fail(CT_ERR_INVALID_ARG, "%s: dims is NULL", fn);
  const char* names[4] = {"B", "H", "N", "D"};
  int64_t total = 1;
  for (int i = 0; i < 4; ++i) {
    if (dims[i] < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s = %lld is negative", fn, names[i], (long long)dims[i]);
    if (__builtin_mul_overflow(total, dims[i], &total)) return fail(CT_ERR_INVALID_ARG, "%s: B H N D overflows int64", fn);
  }
  int64_t dd;
  if (__builtin_mul_overflow(dims[3], dims[3], &dd)) return fail(CT_ERR_INVALID_ARG, "%s: D^2 overflows int64", fn);
  if (!(c.eps > 0) || std::isinf(c.eps)) return fail(CT_ERR_INVALID_ARG, "%s: eps = %g must be > 0 and finite", fn, c.eps);
  if (total == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "q", c.q)) || (st = check_ptr(fn, "k", c.k)) || (st = check_ptr(fn, "v", c.v)) ||
      (st = check_ptr(fn, "q_strides", c.qs)) || (st = check_ptr(fn, "k_strides", c.ks)) ||
      (st = check_ptr(fn, "v_strides", c.vs)))
    return st;
  if (backward) {
    if ((st = check_ptr(fn, "d_o", c.dout)) || (st = check_ptr(fn, "dq", c.dq)) || (st = check_ptr(fn, "dk", c.dk)) ||
        (st = check_ptr(fn, "dv", c.dv)))
      return st;
  } else if ((st = check_ptr(fn, "o", c.o))) {
    return st;
  }
  return CT_OK;
}

int run(const char* fn, int dtype, const int64_t* dims, Call& c, bool backward) {
  int st = check_call(fn, dtype, dims, c, backward);
  if (st) return st;
  c.B = dims[0], c.H = dims[1], c.N = dims[2], c.D = dims[3];
  if (c.B * c.H * c.N * c.D == 0) return CT_OK;
  const int64_t slices = std::max(1, threads());
  if (dtype == CT_F64) {
    const int64_t per = ws_per_thread<double>(c, backward);
    HostBuffer<double> ws(per * slices);
    run_heads<double, Scalar<double>>(c, backward, ws.data(), per);
  } else {
    const int64_t per = ws_per_thread<float>(c, backward);
    HostBuffer<float> ws(per * slices);
    if (use_avx512())
      run_avx512(c, backward, ws.data(), per);
    else
      run_heads<float, Avx2>(c, backward, ws.data(), per);
  }
  return CT_OK;
}

}  // namespace
}  // namespace ct

extern "C" {

int ct_cpu_slab_attention_forward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                  const void* k, const int64_t* k_strides, const void* v, const int64_t* v_strides,
                                  double eps, void* o, int64_t) {
  CT_TRY
  ct::Call c{0, 0, 0, 0, q, k, v, q_strides, k_strides, v_strides, eps, nullptr, o, nullptr, nullptr, nullptr};
  return ct::run("ct_cpu_slab_attention_forward", dtype, dims, c, false);
  CT_CATCH("ct_cpu_slab_attention_forward")
}

int ct_cpu_slab_attention_backward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                   const void* k, const int64_t* k_strides, const void* v, const int64_t* v_strides,
                                   const void* d_o, double eps, void* dq, void* dk, void* dv, int64_t) {
  CT_TRY
  ct::Call c{0, 0, 0, 0, q, k, v, q_strides, k_strides, v_strides, eps, d_o, nullptr, dq, dk, dv};
  return ct::run("ct_cpu_slab_attention_backward", dtype, dims, c, true);
  CT_CATCH("ct_cpu_slab_attention_backward")
}

}  // extern "C"
