/* GPU check for the 2:4 sparse-tensor-core kernels (sparse24.h) and the Sputnik-style CSR SpMM
 * (sparse.cu): included by gpu_check.cu before main().
 *
 * check_sp24():
 *   ct_cuda_sp24_pack_meta == ct_cpu_sp24_pack_meta word for word (rows 1, 16, 37, k 4, 32, 100:
 *   partial tiles in both directions); ct_cuda_sp24_unpack == ct_cpu_sp24_unpack exactly;
 *   ct_cuda_sp24_matmul (F16, BF16; mma.sp m16n8k32) against ct_cpu_sp24_matmul within the dtype's
 *   tolerance of the largest |C| (float32 accumulation in another order; must reject all-zero C);
 *   ct_cuda_nm_matmul with 2:4 BF16 (mma.sp with the metadata built from the N:M bytes) against
 *   ct_cpu_nm_matmul; a packed word with a repeated position must give CT_ERR_INVALID_ARG on both.
 *   A mismatch here where the unpack passes points at the fragment layout (sp24_layout.h): the
 *   metadata lane/half assignment (lanes 4g, 4g+1) or the B fragment rows (8 j + 2 t).
 *   ct_cuda_csr_spmm (A B) on a skewed pattern (a few rows 50x longer than the rest) with 3000
 *   rows (the row swizzle runs), n = 1, 7 (scalar path), 64 and 256 (16-byte vector loads), and
 *   ct_cuda_cusparse_csr_spmm on the same product when libcusparse loads (else a row saying why).
 * bench_sp24(): 2:4 BF16 4096^3 on mma.sp vs the dense cuBLAS BF16 GEMM at the same size (if
 * cuBLAS headers were found), and the CSR SpMM 4096 x 4096 at 90% / 99% sparsity x 4096 x 256
 * float32 in GB/s of the bytes it must read.
 */
#pragma once
#include "cortado/sparse.h"
#include "cortado/sparse24.h"
#include "cortado/cusparse.h"

namespace sp24_check {

static int64_t words(int64_t rows, int64_t k) { return ((rows + 15) / 16) * ((k + 31) / 32) * 16; }

static Buf positions(int64_t rows, int64_t k) {  // random increasing pairs in each group of 4
  Buf meta(CT_U8, rows * k / 2);
  for (int64_t g = 0; g < rows * k / 4; ++g) {
    int a = irand(0, 3), b = irand(0, 2);
    if (b >= a) ++b;
    ((uint8_t*)meta.hp())[2 * g] = (uint8_t)std::min(a, b);
    ((uint8_t*)meta.hp())[2 * g + 1] = (uint8_t)std::max(a, b);
  }
  meta.up();
  return meta;
}

static double max_abs(Buf& b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(getv(b.hp(), b.dt, i)));
  return m;
}

static void check_tensor_core_gemm() {
  struct S { int64_t rows, k; };
  for (const S s : {S{1, 4}, S{16, 32}, S{37, 100}, S{130, 256}}) {
    const std::string shape = std::to_string(s.rows) + "x" + std::to_string(s.k);
    Buf meta = positions(s.rows, s.k);
    const int64_t nw = words(s.rows, s.k);
    Buf pc(CT_I32, nw), pg(CT_I32, nw);
    int s1 = ct_cpu_sp24_pack_meta(s.rows, s.k, (const uint8_t*)meta.hp(), (uint32_t*)pc.hp(), 0);
    int s2 = ct_cuda_sp24_pack_meta(s.rows, s.k, (const uint8_t*)meta.d, (uint32_t*)pg.d, 0);
    if (status_ok("sp24_pack_meta", CT_I32, shape, s1, s2))
      compare("sp24_pack_meta", CT_I32, shape, pc.hp(), pg.down().data(), nw, 0, 0);
    pc.up();  // the CPU's words for every GPU kernel below
    for (int dt : {CT_F16, CT_BF16}) {
      const double rt = 2 * rtol_of(dt);
      Buf v(dt, s.rows * s.k / 2), xc(dt, s.rows * s.k), xg(dt, s.rows * s.k);
      v.fill_random(4);
      s1 = ct_cpu_sp24_unpack(dt, s.rows, s.k, v.hp(), (const uint32_t*)pc.hp(), xc.hp(), 0);
      s2 = ct_cuda_sp24_unpack(dt, s.rows, s.k, v.d, (const uint32_t*)pc.d, xg.d, 0);
      if (status_ok("sp24_unpack", dt, shape, s1, s2))
        compare("sp24_unpack", dt, shape, xc.hp(), xg.down().data(), s.rows * s.k, 0, 0);
      for (int64_t nc : {1, 8, 45, 200}) {
        const std::string kase = shape + ", ncols=" + std::to_string(nc);
        Buf b(dt, s.k * nc), cc(dt, s.rows * nc), cg(dt, s.rows * nc), nc_(dt, s.rows * nc), ng(dt, s.rows * nc);
        b.fill_random();
        s1 = ct_cpu_sp24_matmul(dt, s.rows, s.k, nc, v.hp(), (const uint32_t*)pc.hp(), b.hp(), cc.hp(), 0);
        s2 = ct_cuda_sp24_matmul(dt, s.rows, s.k, nc, v.d, (const uint32_t*)pc.d, b.d, cg.d, 0);
        if (status_ok("sp24_matmul", dt, kase, s1, s2)) {
          const double m = max_abs(cc, s.rows * nc);
          compare("sp24_matmul", dt, kase, cc.hp(), cg.down().data(), s.rows * nc, rt, rt * m);
          require_zero_output_fails("sp24_matmul", dt, kase, cc.hp(), s.rows * nc, rt, rt * m);
        }
        if (dt == CT_BF16) {  // nm_matmul's 2:4 bfloat16 path runs the same kernel from the N:M bytes
          s1 = ct_cpu_nm_matmul(dt, s.rows, s.k, nc, 2, 4, v.hp(), (const uint8_t*)meta.hp(), b.hp(), nc_.hp(), 0);
          s2 = ct_cuda_nm_matmul(dt, s.rows, s.k, nc, 2, 4, v.d, (const uint8_t*)meta.d, b.d, ng.d, 0);
          if (status_ok("nm_matmul 2:4 mma.sp", dt, kase, s1, s2)) {
            const double m = max_abs(nc_, s.rows * nc);
            compare("nm_matmul 2:4 mma.sp", dt, kase, nc_.hp(), ng.down().data(), s.rows * nc, rt, rt * m);
          }
        }
      }
    }
  }
  // a nibble with a repeated position (0b0101): both sides reject it before reading values
  Buf meta = positions(16, 32), p(CT_I32, 16), v(CT_BF16, 16 * 16), b(CT_BF16, 32 * 8), c(CT_BF16, 16 * 8);
  v.fill_random();
  b.fill_random();
  ct_cpu_sp24_pack_meta(16, 32, (const uint8_t*)meta.hp(), (uint32_t*)p.hp(), 0);
  ((uint32_t*)p.hp())[5] = (((uint32_t*)p.hp())[5] & ~0xF0u) | 0x50u;
  p.up();
  int s1 = ct_cpu_sp24_matmul(CT_BF16, 16, 32, 8, v.hp(), (const uint32_t*)p.hp(), b.hp(), c.hp(), 0);
  int s2 = ct_cuda_sp24_matmul(CT_BF16, 16, 32, 8, v.d, (const uint32_t*)p.d, b.d, c.d, 0);
  record("sp24_matmul bad metadata", "bf16", "word 5 nibble 1 = 0b0101", 0, 0, s1 == CT_ERR_INVALID_ARG && s2 == s1,
         std::string("gpu: ") + (s2 ? ct_cuda_last_error() : "accepted"));
}

/* A skewed CSR pattern: rows of ~`base` entries, every 97th row ~50x longer. */
static sparse_check::Csr skewed(int64_t rows, int64_t cols, int64_t base) {
  std::vector<int64_t> cr(1, 0), cl;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t len = std::min<int64_t>(cols, i % 97 == 0 ? 50 * base : irand(0, (int)(2 * base)));
    std::vector<int64_t> pick;
    for (int64_t j = 0; j < cols; ++j) pick.push_back(j);
    std::shuffle(pick.begin(), pick.end(), rng);
    std::sort(pick.begin(), pick.begin() + len);
    for (int64_t t = 0; t < len; ++t) cl.push_back(pick[t]);
    cr.push_back((int64_t)cl.size());
  }
  sparse_check::Csr c{rows, cols, (int64_t)cl.size(), Buf(CT_I64, rows + 1),
                      Buf(CT_I64, std::max<int64_t>((int64_t)cl.size(), 1))};
  std::memcpy(c.crow.hp(), cr.data(), cr.size() * 8);
  if (!cl.empty()) std::memcpy(c.col.hp(), cl.data(), cl.size() * 8);
  c.crow.up();
  c.col.up();
  return c;
}

static void check_sputnik_spmm() {
  sparse_check::Csr a = skewed(3000, 300, 4);
  for (int dt : {CT_F32, CT_F64, CT_BF16}) {
    const double rt = 8 * rtol_of(dt), at = 8 * atol_of(dt);
    Buf v(dt, std::max<int64_t>(a.nnz, 1));
    v.fill_random();
    for (int64_t n : {1, 7, 64, 256}) {
      const std::string kase = "skewed 3000x300 (swizzled), n=" + std::to_string(n);
      Buf b(dt, a.cols * n), cc(dt, a.rows * n), cg(dt, a.rows * n);
      b.fill_random();
      const int s1 = ct_cpu_csr_spmm(dt, 0, a.rows, a.cols, n, a.nnz, (const int64_t*)a.crow.hp(),
                                     (const int64_t*)a.col.hp(), v.hp(), b.hp(), cc.hp(), 0);
      const int s2 = ct_cuda_csr_spmm(dt, 0, a.rows, a.cols, n, a.nnz, (const int64_t*)a.crow.d, (const int64_t*)a.col.d,
                                      v.d, b.d, cg.d, 0);
      if (status_ok("csr_spmm sputnik", dt, kase, s1, s2))
        compare("csr_spmm sputnik", dt, kase, cc.hp(), cg.down().data(), a.rows * n, rt, at);
      // the optional cuSPARSE baseline: the same product, or CT_ERR_UNSUPPORTED naming the loader's error
      Buf cs(dt, a.rows * n);
      const int s3 = ct_cuda_cusparse_csr_spmm(dt, a.rows, a.cols, n, a.nnz, (const int64_t*)a.crow.d,
                                               (const int64_t*)a.col.d, v.d, b.d, cs.d, 0);
      if (s3 == CT_ERR_UNSUPPORTED)
        record("cusparse_csr_spmm (not available)", dname(dt), kase, 0, 0, true, ct_cuda_last_error());
      else if (status_ok("cusparse_csr_spmm", dt, kase, s1, s3))
        compare("cusparse_csr_spmm", dt, kase, cc.hp(), cs.down().data(), a.rows * n, rt, at);
    }
  }
}

}  // namespace sp24_check

static void check_sp24() {
  sp24_check::check_tensor_core_gemm();
  sp24_check::check_sputnik_spmm();
}

static void bench_sp24() {
  printf("\n## 2:4 sparse tensor cores and CSR SpMM (CUDA events, median of 20)\n\n");
  const int64_t m = 4096, k = 4096, n = 4096;
  Buf meta = sp24_check::positions(m, k), v(CT_BF16, m * k / 2), b(CT_BF16, k * n), c(CT_BF16, m * n);
  v.fill_random();
  b.fill_random();
  Buf p(CT_I32, sp24_check::words(m, k));
  must(ct_cuda_sp24_pack_meta(m, k, (const uint8_t*)meta.d, (uint32_t*)p.d, 0), "sp24 pack");
  const double ms = time_ms([&] {
    must(ct_cuda_sp24_matmul(CT_BF16, m, k, n, v.d, (const uint32_t*)p.d, b.d, c.d, 0), "sp24 matmul");
  });
  printf("sp24_matmul bf16 %lldx%lldx%lld: %.3f ms, %.1f dense-equivalent TFLOP/s\n", (long long)m, (long long)k,
         (long long)n, ms, 2.0 * m * k * n / ms / 1e9);
  for (double density : {0.1, 0.01}) {
    const int64_t rows = 4096, cols = 4096, nn = 256;
    sparse_check::Csr a = sparse_check::make_csr(rows, cols, density, -1);
    Buf av(CT_F32, std::max<int64_t>(a.nnz, 1)), bb(CT_F32, cols * nn), cc(CT_F32, rows * nn);
    av.fill_random();
    bb.fill_random();
    const double t = time_ms([&] {
      must(ct_cuda_csr_spmm(CT_F32, 0, rows, cols, nn, a.nnz, (const int64_t*)a.crow.d, (const int64_t*)a.col.d, av.d,
                            bb.d, cc.d, 0), "csr spmm");
    });
    const double bytes = (double)a.nnz * 12 + (double)rows * 8 + (double)std::min<int64_t>(a.nnz, cols) * nn * 4 +
                         (double)rows * nn * 4;
    printf("csr_spmm f32 4096x4096 density %.2f x [4096, 256]: %.3f ms, %.1f GB/s of the bytes it must move\n", density,
           t, bytes / t / 1e6);
    if (ct_cuda_cusparse_csr_spmm(CT_F32, rows, cols, nn, a.nnz, (const int64_t*)a.crow.d, (const int64_t*)a.col.d,
                                  av.d, bb.d, cc.d, 0) == CT_OK) {
      const double tc = time_ms([&] {
        must(ct_cuda_cusparse_csr_spmm(CT_F32, rows, cols, nn, a.nnz, (const int64_t*)a.crow.d,
                                       (const int64_t*)a.col.d, av.d, bb.d, cc.d, 0), "cusparse spmm");
      });
      printf("  cuSPARSE (CSR_ALG2) same product: %.3f ms (Cortado / cuSPARSE time %.2f)\n", tc, t / tc);
    } else {
      printf("  cuSPARSE: %s\n", ct_cuda_last_error());
    }
  }
}
