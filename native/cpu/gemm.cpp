/*
 * GEMM family: batched row-major C_b = alpha op(A_b) op(B_b) + beta C_b on OpenBLAS.
 *
 * Algorithm:
 *  - F32 / F64, batch 1: one direct cblas_sgemm / cblas_dgemm call on the caller's
 *    buffers (no copies; OpenBLAS threads the call itself).
 *  - batched: if one entry is small (m n k < 2^21, under ~1 ms of one core) and the batch
 *    has at least two entries, entries are spread over OpenMP threads, each running a
 *    single-threaded BLAS call (OpenBLAS threading is switched off for the region);
 *    otherwise entries run one after the other, each threaded by OpenBLAS.
 *  - BF16: the kernel chosen by gemm_bf16.cpp (AMX tiles, vdpbf16ps register tiles, or the widening
 *    below), float32 accumulation in every case.
 *  - F16, and BF16 elsewhere: each batch entry's op(A) and op(B) are widened (in parallel) into packed
 *    float32 panels (C too when beta != 0), multiplied with sgemm in float32, and rounded
 *    back to nearest even. batch_stride 0 (broadcast) widens that operand once.
 *  - k == 0: C = beta C (BLAS does this itself; for 16-bit C it is done on the widened C).
 *
 * Cost: 2 m n k FLOPs per batch entry (compute bound, ~110 GFLOP/s per Zen 4 core for
 * float32); 16-bit inputs add 2 (m k + k n + 2 m n) bytes of conversion traffic per entry.
 */
#include <cblas.h>

#include <climits>
#include <vector>

#include "cortado/gemm.h"
#include "internal.h"

namespace ct {
namespace {

/* Widens a rows x cols matrix with row stride ld into a packed float32 buffer. */
template <class T> void widen(const T* src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  parallel_range(rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = load(src + r * ld + c);
  });
}

template <class T> void narrow(const float* src, int64_t rows, int64_t cols, T* dst, int64_t ld) {
  parallel_range(rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) store<T>(dst + r * ld + c, src[r * cols + c]);
  });
}

struct Gemm {
  int ta, tb;
  int64_t batch, m, n, k;
  double alpha, beta;
  int64_t lda, sa, ldb, sb, ldc, sc;
};

template <class T> void blas(const Gemm& g, const T* a, const T* b, T* c, int64_t lda, int64_t ldb) {
  const CBLAS_TRANSPOSE ta = g.ta ? CblasTrans : CblasNoTrans, tb = g.tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, (blasint)g.m, (blasint)g.n, (blasint)g.k, (float)g.alpha, a, (blasint)lda, b,
                (blasint)ldb, (float)g.beta, c, (blasint)g.ldc);
  else
    cblas_dgemm(CblasRowMajor, ta, tb, (blasint)g.m, (blasint)g.n, (blasint)g.k, g.alpha, a, (blasint)lda, b,
                (blasint)ldb, g.beta, c, (blasint)g.ldc);
}

template <class T> void gemm_blas(const Gemm& g, const T* a, const T* b, T* c) {
  if (g.batch == 1) return blas<T>(g, a, b, c, g.lda, g.ldb);  // the hot path: one direct call
  const bool small = (double)g.m * (double)g.n * (double)g.k < (double)(1 << 21);
  const int nt = threads();
  if (small && nt > 1 && g.sc != 0) {  // (a broadcast C, batch_stride_c == 0, stays serial)
    BlasSingleThreaded single;
#pragma omp parallel for num_threads(nt < g.batch ? nt : (int)g.batch) schedule(dynamic, 1)
    for (int64_t i = 0; i < g.batch; ++i) blas<T>(g, a + i * g.sa, b + i * g.sb, c + i * g.sc, g.lda, g.ldb);
    return;
  }
  for (int64_t i = 0; i < g.batch; ++i) blas<T>(g, a + i * g.sa, b + i * g.sb, c + i * g.sc, g.lda, g.ldb);
}

/* 16-bit: widen op-operands (stored shape: A is m x k or k x m, B is k x n or n x k). */
template <class T> void gemm_half(Gemm g, const T* a, const T* b, T* c) {
  const int64_t ar = g.ta ? g.k : g.m, ac = g.ta ? g.m : g.k;
  const int64_t br = g.tb ? g.n : g.k, bc = g.tb ? g.k : g.n;
  std::vector<float> fa((size_t)(ar * ac)), fb((size_t)(br * bc)), fc((size_t)(g.m * g.n));
  Gemm f = g;
  f.batch = 1;
  f.ldc = g.n;
  const T* wa = nullptr;
  const T* wb = nullptr;
  for (int64_t i = 0; i < g.batch; ++i) {
    const T* ai = a + i * g.sa;
    const T* bi = b + i * g.sb;
    T* ci = c + i * g.sc;
    if (ai != wa) { widen(ai, ar, ac, g.lda, fa.data()); wa = ai; }  // stride 0: widened once
    if (bi != wb) { widen(bi, br, bc, g.ldb, fb.data()); wb = bi; }
    if (g.beta != 0.0) widen(ci, g.m, g.n, g.ldc, fc.data());
    blas<float>(f, fa.data(), fb.data(), fc.data(), ac, bc);
    narrow(fc.data(), g.m, g.n, ci, g.ldc);
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_gemm(int dtype, int trans_a, int trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                           double alpha, const void* a, int64_t lda, int64_t batch_stride_a, const void* b,
                           int64_t ldb, int64_t batch_stride_b, double beta, void* c, int64_t ldc,
                           int64_t batch_stride_c, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_gemm";
  CT_TRY
  if (int st = check_float_dtype(fn, dtype)) return st;
  if (batch < 0 || m < 0 || n < 0 || k < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: negative size (batch=%lld m=%lld n=%lld k=%lld)", fn, (long long)batch,
                (long long)m, (long long)n, (long long)k);
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return fail(CT_ERR_INVALID_ARG, "%s: m=%lld n=%lld k=%lld exceed the BLAS int range", fn, (long long)m,
                (long long)n, (long long)k);
  if (batch_stride_a < 0 || batch_stride_b < 0 || batch_stride_c < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: negative batch stride (a=%lld b=%lld c=%lld)", fn,
                (long long)batch_stride_a, (long long)batch_stride_b, (long long)batch_stride_c);
  // Row-major leading dimensions: at least the stored row length (and >= 1, as BLAS requires).
  const int64_t acols = trans_a ? m : k, bcols = trans_b ? k : n;
  auto ld_ok = [](int64_t ld, int64_t cols) { return ld >= (cols > 1 ? cols : 1) && ld <= INT_MAX; };
  if (!ld_ok(lda, acols) || !ld_ok(ldb, bcols) || !ld_ok(ldc, n))
    return fail(CT_ERR_INVALID_ARG, "%s: leading dimension too small (lda=%lld needs >= %lld, ldb=%lld needs >= %lld, "
                "ldc=%lld needs >= %lld)", fn, (long long)lda, (long long)acols, (long long)ldb, (long long)bcols,
                (long long)ldc, (long long)n);
  if (batch == 0 || m == 0 || n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "c", c))) return st;
  if (k > 0 && ((st = check_ptr(fn, "a", a)) || (st = check_ptr(fn, "b", b)))) return st;
  Gemm g{trans_a != 0, trans_b != 0, batch, m, n, k, alpha, beta, lda, batch_stride_a, ldb, batch_stride_b, ldc,
         batch_stride_c};
  if (k == 0) {  // C = beta C without touching A/B (they may be NULL)
    dispatch_dtype(dtype, [&](auto t) {
      using T = decltype(t);
      using C = compute_t<T>;
      if constexpr (is_float_v<T>)
        for (int64_t i = 0; i < batch; ++i)
          for (int64_t r = 0; r < m; ++r)
            for (int64_t j = 0; j < n; ++j) {
              T* p = (T*)c + i * batch_stride_c + r * ldc + j;
              store<T>(p, beta == 0.0 ? (C)0 : (C)(beta * (double)load(p)));
            }
    });
    return CT_OK;
  }
  switch (dtype) {
    case CT_F32: gemm_blas<float>(g, (const float*)a, (const float*)b, (float*)c); break;
    case CT_F64: gemm_blas<double>(g, (const double*)a, (const double*)b, (double*)c); break;
    case CT_F16: gemm_half<f16>(g, (const f16*)a, (const f16*)b, (f16*)c); break;
    default:
      if (const int kernel = bf16_gemm_kernel(); kernel != CT_BF16_GEMM_WIDEN)  // gemm_bf16.cpp
        gemm_bf16(kernel, g.ta, g.tb, batch, m, n, k, (float)alpha, (const bf16*)a, lda, batch_stride_a,
                  (const bf16*)b, ldb, batch_stride_b, (float)beta, (bf16*)c, ldc, batch_stride_c);
      else
        gemm_half<bf16>(g, (const bf16*)a, (const bf16*)b, (bf16*)c);
      break;
  }
  return CT_OK;
  CT_CATCH(fn)
}
