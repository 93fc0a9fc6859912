/* GPU check for the BSR (block CSR) kernels of the sparse family (sparse.h): included by
 * gpu_check.cu before main(). ct_cuda_bsr_spmm (A B and A^T B) and ct_cuda_bsr_sddmm against
 * their CPU twins on a random block pattern (an empty block row included), float32, float64 and
 * bfloat16. The sums run in another order (A^T B by atomics), so the tolerance is the dtype's
 * relative tolerance of the largest |result| (each must reject an all-zero output); a bad column
 * index must give the CPU's status on both sides. */
#pragma once

#include "cortado/sparse.h"

static void check_bsr_kernels() {
  const int64_t block = 3, brows = 4, bcols = 5, rows = brows * block, cols = bcols * block, n = 37, d = 19;
  std::vector<int64_t> crow{0}, col;
  for (int64_t i = 0; i < brows; ++i) {
    for (int64_t j = 0; j < bcols; ++j)
      if (i != 2 && irand(0, 2) > 0) col.push_back(j);  // block row 2 stays empty
    crow.push_back((int64_t)col.size());
  }
  const int64_t nnzb = (int64_t)col.size();
  Buf dcrow(CT_I64, brows + 1), dcol(CT_I64, nnzb);
  memcpy(dcrow.hp(), crow.data(), crow.size() * 8);
  memcpy(dcol.hp(), col.data(), col.size() * 8);
  dcrow.up();
  dcol.up();
  for (int dt : {CT_F32, CT_F64, CT_BF16}) {
    const double rt = dt == CT_BF16 ? 8e-3 : rtol_of(dt);
    Buf v(dt, nnzb * block * block), b(dt, cols * n), bt(dt, rows * n), x(dt, rows * d), y(dt, cols * d);
    for (Buf* p : {&v, &b, &bt, &x, &y}) p->fill_random(0);
    for (int trans = 0; trans < 2; ++trans) {
      const int64_t out_rows = trans ? cols : rows;
      Buf cc(dt, out_rows * n), cg(dt, out_rows * n);
      Buf& in = trans ? bt : b;
      const std::string kase = std::string(trans ? "A^T B" : "A B") + " blocks 3x3 [12, 15] n=37";
      const int s1 = ct_cpu_bsr_spmm(dt, trans, rows, cols, block, n, nnzb, (const int64_t*)dcrow.hp(),
                                     (const int64_t*)dcol.hp(), v.hp(), in.hp(), cc.hp(), 0);
      const int s2 = ct_cuda_bsr_spmm(dt, trans, rows, cols, block, n, nnzb, (const int64_t*)dcrow.d,
                                      (const int64_t*)dcol.d, v.d, in.d, cg.d, 0);
      if (!status_ok("bsr_spmm", dt, kase, s1, s2)) continue;
      double m = 0;
      for (int64_t i = 0; i < out_rows * n; ++i) m = std::max(m, std::fabs(getv(cc.hp(), dt, i)));
      compare("bsr_spmm", dt, kase, cc.hp(), cg.down().data(), out_rows * n, rt, rt * m);
      require_zero_output_fails("bsr_spmm", dt, kase, cc.hp(), out_rows * n, rt, rt * m);
    }
    Buf oc(dt, nnzb * block * block), og(dt, nnzb * block * block);
    const int s1 = ct_cpu_bsr_sddmm(dt, rows, cols, block, d, nnzb, (const int64_t*)dcrow.hp(), (const int64_t*)dcol.hp(),
                                    x.hp(), y.hp(), oc.hp(), 0);
    const int s2 = ct_cuda_bsr_sddmm(dt, rows, cols, block, d, nnzb, (const int64_t*)dcrow.d, (const int64_t*)dcol.d, x.d,
                                     y.d, og.d, 0);
    if (status_ok("bsr_sddmm", dt, "blocks 3x3 d=19", s1, s2)) {
      double m = 0;
      for (int64_t i = 0; i < nnzb * block * block; ++i) m = std::max(m, std::fabs(getv(oc.hp(), dt, i)));
      compare("bsr_sddmm", dt, "blocks 3x3 d=19", oc.hp(), og.down().data(), nnzb * block * block, rt, rt * m);
      require_zero_output_fails("bsr_sddmm", dt, "blocks 3x3 d=19", oc.hp(), nnzb * block * block, rt, rt * m);
    }
  }
  // a column index past the block grid: both reject it before reading anything
  if (nnzb > 0) {
    std::vector<int64_t> bad = col;
    bad[0] = bcols;
    Buf dbad(CT_I64, nnzb), v(CT_F32, nnzb * block * block), b(CT_F32, cols * n), c(CT_F32, rows * n);
    memcpy(dbad.hp(), bad.data(), bad.size() * 8);
    dbad.up();
    const int s1 = ct_cpu_bsr_spmm(CT_F32, 0, rows, cols, block, n, nnzb, crow.data(), bad.data(), v.hp(), b.hp(), c.hp(), 0);
    const int s2 = ct_cuda_bsr_spmm(CT_F32, 0, rows, cols, block, n, nnzb, (const int64_t*)dcrow.d, (const int64_t*)dbad.d,
                                    v.d, b.d, c.d, 0);
    record("bsr_spmm", "f32", "col index out of range rejected", 0, 0, s1 == s2 && s1 == CT_ERR_INDEX_OUT_OF_RANGE,
           std::string("gpu '") + (s2 ? ct_cuda_last_error() : "") + "'");
  }
}
