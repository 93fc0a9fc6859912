/* GPU check for the sparse family: included by gpu_check.cu before main().
 *
 * check_sparse(): every ct_cuda_* function of cortado/sparse.h against its CPU twin on fresh random
 * inputs (never zeros), f32 / f64 / bf16:
 *   ct_cuda_csr_spmm (A B and A^T B; random patterns with an empty row, n = 1, 45 (a partial 32-column
 *   tile) and 256; no stored entries at all), ct_cuda_csr_sddmm (d = 1, 77), ct_cuda_csr_softmax and
 *   _backward, ct_cuda_topk (last and middle axis, largest and smallest, k = 1 .. len, lines of 9 and
 *   2000; indices compared exactly) and _backward, ct_cuda_nm_compress / _decompress (exact) /
 *   _matmul / _matmul_backward (2:4, 1:4, 3:8; ncols 1, 45, 130);
 * and the bad-input statuses: a column index out of range, a crow that decreases, an N:M position
 * repeated, a top-k index out of range must give the CPU's status on the GPU too.
 * Tolerances: compare() with 8 x the dtype's rtol/atol for sums of up to ~100 products (A^T B on the
 * GPU adds with atomics in no fixed order).
 */
#pragma once
#include "cortado/sparse.h"

namespace sparse_check {

/* A random CSR pattern [rows, cols] at `density`, row `empty` left empty. */
struct Csr {
  int64_t rows, cols, nnz;
  Buf crow, col;
};

static Csr make_csr(int64_t rows, int64_t cols, double density, int64_t empty) {
  std::vector<int64_t> cr(1, 0), cl;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j)
      if (i != empty && unif(0, 1) < density) cl.push_back(j);
    cr.push_back((int64_t)cl.size());
  }
  Csr c{rows, cols, (int64_t)cl.size(), Buf(CT_I64, rows + 1), Buf(CT_I64, std::max<int64_t>((int64_t)cl.size(), 1))};
  std::memcpy(c.crow.hp(), cr.data(), cr.size() * 8);
  if (!cl.empty()) std::memcpy(c.col.hp(), cl.data(), cl.size() * 8);
  c.crow.up();
  c.col.up();
  return c;
}

/* Random N:M positions [rows, k / m * n]. */
static Buf make_meta(int64_t rows, int64_t k, int n, int m) {
  const int64_t groups = rows * (k / m);
  Buf meta(CT_U8, groups * n);
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<int> p(m);
    for (int i = 0; i < m; ++i) p[i] = i;
    std::shuffle(p.begin(), p.end(), rng);
    std::sort(p.begin(), p.begin() + n);
    for (int t = 0; t < n; ++t) ((uint8_t*)meta.hp())[g * n + t] = (uint8_t)p[t];
  }
  meta.up();
  return meta;
}

static void check_csr(int dt) {
  const double rt = 8 * rtol_of(dt), at = 8 * atol_of(dt);
  struct G { int64_t rows, cols; double density; int64_t empty; const char* name; };
  const G gs[] = {{37, 53, 0.2, 5, "37x53 at 20%, row 5 empty"}, {300, 200, 0.05, -1, "300x200 at 5%"},
                  {4, 6, 0.0, -1, "4x6, no entries"}};
  for (const G& g : gs) {
    Csr a = make_csr(g.rows, g.cols, g.density, g.empty);
    Buf v(dt, std::max<int64_t>(a.nnz, 1));
    v.fill_random();
    for (int64_t n : {1, 45, 256}) {
      const std::string kase = std::string(g.name) + ", n=" + std::to_string(n);
      for (int trans = 0; trans < 2; ++trans) {
        const int64_t in_rows = trans ? g.rows : g.cols, out_rows = trans ? g.cols : g.rows;
        Buf b(dt, in_rows * n), cc(dt, out_rows * n), cg(dt, out_rows * n);
        b.fill_random();
        cg.fill_sentinel();
        int x = ct_cpu_csr_spmm(dt, trans, g.rows, g.cols, n, a.nnz, (const int64_t*)a.crow.hp(),
                                (const int64_t*)a.col.hp(), v.hp(), b.hp(), cc.hp(), 0);
        int y = ct_cuda_csr_spmm(dt, trans, g.rows, g.cols, n, a.nnz, (const int64_t*)a.crow.d, (const int64_t*)a.col.d,
                                 v.d, b.d, cg.d, 0);
        const char* k = trans ? "csr_spmm (A^T B)" : "csr_spmm";
        if (status_ok(k, dt, kase, x, y)) compare(k, dt, kase, cc.hp(), cg.down().data(), out_rows * n, rt, at);
      }
    }
    for (int64_t d : {1, 77}) {
      const std::string kase = std::string(g.name) + ", d=" + std::to_string(d);
      Buf x(dt, g.rows * d), yv(dt, g.cols * d), oc(dt, std::max<int64_t>(a.nnz, 1)), og(dt, std::max<int64_t>(a.nnz, 1));
      x.fill_random();
      yv.fill_random();
      int s1 = ct_cpu_csr_sddmm(dt, g.rows, g.cols, d, a.nnz, (const int64_t*)a.crow.hp(), (const int64_t*)a.col.hp(),
                                x.hp(), yv.hp(), oc.hp(), 0);
      int s2 = ct_cuda_csr_sddmm(dt, g.rows, g.cols, d, a.nnz, (const int64_t*)a.crow.d, (const int64_t*)a.col.d, x.d,
                                 yv.d, og.d, 0);
      if (status_ok("csr_sddmm", dt, kase, s1, s2)) compare("csr_sddmm", dt, kase, oc.hp(), og.down().data(), a.nnz, rt, at);
    }
    {
      const std::string kase = g.name;
      const int64_t m = std::max<int64_t>(a.nnz, 1);
      Buf yc(dt, m), yg(dt, m), dy(dt, m), dxc(dt, m), dxg(dt, m);
      dy.fill_random();
      int s1 = ct_cpu_csr_softmax(dt, g.rows, a.nnz, (const int64_t*)a.crow.hp(), v.hp(), yc.hp(), 0);
      int s2 = ct_cuda_csr_softmax(dt, g.rows, a.nnz, (const int64_t*)a.crow.d, v.d, yg.d, 0);
      if (status_ok("csr_softmax", dt, kase, s1, s2))
        compare("csr_softmax", dt, kase, yc.hp(), yg.down().data(), a.nnz, rt, at);
      yc.up();  // both backward passes from the CPU's y
      s1 = ct_cpu_csr_softmax_backward(dt, g.rows, a.nnz, (const int64_t*)a.crow.hp(), yc.hp(), dy.hp(), dxc.hp(), 0);
      s2 = ct_cuda_csr_softmax_backward(dt, g.rows, a.nnz, (const int64_t*)a.crow.d, yc.d, dy.d, dxg.d, 0);
      if (status_ok("csr_softmax_backward", dt, kase, s1, s2))
        compare("csr_softmax_backward", dt, kase, dxc.hp(), dxg.down().data(), a.nnz, rt, at);
    }
  }
  // bad structure: a column out of range, a decreasing crow
  Csr a = make_csr(6, 7, 0.5, -1);
  if (a.nnz > 0) {
    Buf v(dt, a.nnz), b(dt, 7 * 3), c(dt, 6 * 3);
    v.fill_random();
    b.fill_random();
    ((int64_t*)a.col.hp())[a.nnz - 1] = 7;
    a.col.up();
    int s1 = ct_cpu_csr_spmm(dt, 0, 6, 7, 3, a.nnz, (const int64_t*)a.crow.hp(), (const int64_t*)a.col.hp(), v.hp(),
                             b.hp(), c.hp(), 0);
    int s2 = ct_cuda_csr_spmm(dt, 0, 6, 7, 3, a.nnz, (const int64_t*)a.crow.d, (const int64_t*)a.col.d, v.d, b.d, c.d, 0);
    record("csr_spmm bad col", dname(dt), "col = cols", 0, 0, s1 == CT_ERR_INDEX_OUT_OF_RANGE && s2 == s1,
           std::string("gpu: ") + (s2 ? ct_cuda_last_error() : "accepted"));
    ((int64_t*)a.crow.hp())[3] = ((int64_t*)a.crow.hp())[2] - 1;
    a.crow.up();
    s1 = ct_cpu_csr_softmax(dt, 6, a.nnz, (const int64_t*)a.crow.hp(), v.hp(), c.hp(), 0);
    s2 = ct_cuda_csr_softmax(dt, 6, a.nnz, (const int64_t*)a.crow.d, v.d, c.d, 0);
    record("csr_softmax bad crow", dname(dt), "crow decreases", 0, 0, s1 == CT_ERR_INDEX_OUT_OF_RANGE && s2 == s1,
           std::string("gpu: ") + (s2 ? ct_cuda_last_error() : "accepted"));
  }
}

static void check_topk(int dt) {
  struct G { int64_t outer, len, inner, k; int largest; const char* name; };
  const G gs[] = {{5, 9, 1, 3, 1, "[5,9] k=3 largest"}, {3, 9, 4, 9, 0, "[3,9,4] dim 1 k=9 smallest"},
                  {2, 2000, 1, 100, 1, "[2,2000] k=100"}, {7, 1, 3, 1, 1, "[7,1,3] k=1"}};
  for (const G& g : gs) {
    const int64_t nx = g.outer * g.len * g.inner, ny = g.outer * g.k * g.inner;
    Buf x(dt, nx), vc(dt, ny), vg(dt, ny), ic(CT_I64, ny), ig(CT_I64, ny);
    x.fill_random(3);  // a grid of multiples of 0.5: ties, broken by the lower index on both
    int s1 = ct_cpu_topk(dt, g.outer, g.len, g.inner, g.k, g.largest, x.hp(), vc.hp(), (int64_t*)ic.hp(), 0);
    int s2 = ct_cuda_topk(dt, g.outer, g.len, g.inner, g.k, g.largest, x.d, vg.d, (int64_t*)ig.d, 0);
    if (status_ok("topk", dt, g.name, s1, s2)) {
      compare("topk values", dt, g.name, vc.hp(), vg.down().data(), ny, 0, 0);
      compare("topk indices", CT_I64, g.name, ic.hp(), ig.down().data(), ny, 0, 0);
    }
    Buf dv(dt, ny), dxc(dt, nx), dxg(dt, nx);
    dv.fill_random();
    s1 = ct_cpu_topk_backward(dt, g.outer, g.len, g.inner, g.k, dv.hp(), (const int64_t*)ic.hp(), dxc.hp(), 0);
    ic.up();
    s2 = ct_cuda_topk_backward(dt, g.outer, g.len, g.inner, g.k, dv.d, (const int64_t*)ic.d, dxg.d, 0);
    if (status_ok("topk_backward", dt, g.name, s1, s2))
      compare("topk_backward", dt, g.name, dxc.hp(), dxg.down().data(), nx, 0, 0);
  }
  Buf dv(dt, 2), dx(dt, 6), idx(CT_I64, 2);
  dv.fill_random();
  ((int64_t*)idx.hp())[0] = 1;
  ((int64_t*)idx.hp())[1] = 3;  // len 3
  idx.up();
  int s1 = ct_cpu_topk_backward(dt, 2, 3, 1, 1, dv.hp(), (const int64_t*)idx.hp(), dx.hp(), 0);
  int s2 = ct_cuda_topk_backward(dt, 2, 3, 1, 1, dv.d, (const int64_t*)idx.d, dx.d, 0);
  record("topk_backward bad index", dname(dt), "index = len", 0, 0, s1 == CT_ERR_INDEX_OUT_OF_RANGE && s2 == s1,
         std::string("gpu: ") + (s2 ? ct_cuda_last_error() : "accepted"));
}

static void check_nm(int dt) {
  const double rt = 8 * rtol_of(dt), at = 8 * atol_of(dt);
  struct G { int n, m; int64_t rows, k; const char* name; };
  const G gs[] = {{2, 4, 33, 64, "2:4 33x64"}, {1, 4, 5, 12, "1:4 5x12"}, {3, 8, 9, 32, "3:8 9x32"}};
  for (const G& g : gs) {
    const int64_t per = g.k / g.m * g.n, slots = g.rows * per;
    Buf x(dt, g.rows * g.k), vc(dt, slots), vg(dt, slots), mc(CT_U8, slots), mg(CT_U8, slots);
    x.fill_random();
    int s1 = ct_cpu_nm_compress(dt, g.rows, g.k, g.n, g.m, x.hp(), vc.hp(), (uint8_t*)mc.hp(), 0);
    int s2 = ct_cuda_nm_compress(dt, g.rows, g.k, g.n, g.m, x.d, vg.d, (uint8_t*)mg.d, 0);
    if (status_ok("nm_compress", dt, g.name, s1, s2)) {
      compare("nm_compress values", dt, g.name, vc.hp(), vg.down().data(), slots, 0, 0);
      compare("nm_compress meta", CT_U8, g.name, mc.hp(), mg.down().data(), slots, 0, 0);
    }
    Buf meta = make_meta(g.rows, g.k, g.n, g.m);
    Buf v(dt, slots), dc_(dt, g.rows * g.k), dg(dt, g.rows * g.k);
    v.fill_random();
    s1 = ct_cpu_nm_decompress(dt, g.rows, g.k, g.n, g.m, v.hp(), (const uint8_t*)meta.hp(), dc_.hp(), 0);
    s2 = ct_cuda_nm_decompress(dt, g.rows, g.k, g.n, g.m, v.d, (const uint8_t*)meta.d, dg.d, 0);
    if (status_ok("nm_decompress", dt, g.name, s1, s2))
      compare("nm_decompress", dt, g.name, dc_.hp(), dg.down().data(), g.rows * g.k, 0, 0);
    for (int64_t nc : {1, 45, 130}) {
      const std::string kase = std::string(g.name) + ", ncols=" + std::to_string(nc);
      Buf b(dt, g.k * nc), cc(dt, g.rows * nc), cg(dt, g.rows * nc);
      b.fill_random();
      s1 = ct_cpu_nm_matmul(dt, g.rows, g.k, nc, g.n, g.m, v.hp(), (const uint8_t*)meta.hp(), b.hp(), cc.hp(), 0);
      s2 = ct_cuda_nm_matmul(dt, g.rows, g.k, nc, g.n, g.m, v.d, (const uint8_t*)meta.d, b.d, cg.d, 0);
      if (status_ok("nm_matmul", dt, kase, s1, s2)) compare("nm_matmul", dt, kase, cc.hp(), cg.down().data(), g.rows * nc, rt, at);
      Buf dcc(dt, g.rows * nc), dvc(dt, slots), dvg(dt, slots), dbc(dt, g.k * nc), dbg(dt, g.k * nc);
      dcc.fill_random();
      s1 = ct_cpu_nm_matmul_backward(dt, g.rows, g.k, nc, g.n, g.m, v.hp(), (const uint8_t*)meta.hp(), b.hp(), dcc.hp(),
                                     dvc.hp(), dbc.hp(), 0);
      s2 = ct_cuda_nm_matmul_backward(dt, g.rows, g.k, nc, g.n, g.m, v.d, (const uint8_t*)meta.d, b.d, dcc.d, dvg.d,
                                      dbg.d, 0);
      if (status_ok("nm_matmul_backward", dt, kase, s1, s2)) {
        compare("nm_matmul_backward dvalues", dt, kase, dvc.hp(), dvg.down().data(), slots, rt, at);
        compare("nm_matmul_backward db", dt, kase, dbc.hp(), dbg.down().data(), g.k * nc, rt, at);
      }
    }
    // a repeated position violates the pattern
    ((uint8_t*)meta.hp())[1] = ((uint8_t*)meta.hp())[0];
    meta.up();
    s1 = ct_cpu_nm_decompress(dt, g.rows, g.k, g.n, g.m, v.hp(), (const uint8_t*)meta.hp(), dc_.hp(), 0);
    s2 = ct_cuda_nm_decompress(dt, g.rows, g.k, g.n, g.m, v.d, (const uint8_t*)meta.d, dg.d, 0);
    if (g.n > 1)
      record("nm_decompress bad meta", dname(dt), g.name, 0, 0, s1 == CT_ERR_INVALID_ARG && s2 == s1,
             std::string("gpu: ") + (s2 ? ct_cuda_last_error() : "accepted"));
  }
}

}  // namespace sparse_check

static void check_sparse() {
  for (int dt : {CT_F32, CT_F64, CT_BF16}) {
    sparse_check::check_csr(dt);
    sparse_check::check_topk(dt);
    sparse_check::check_nm(dt);
  }
}
