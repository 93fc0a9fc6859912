/* GPU check for the row-sparse optimizer updates (cortado/embedding.h; the embedding-bag,
 * gradient-compression and mixture-of-experts work of issue 15): included by gpu_check.cu before
 * main().
 *
 * check_moe(): ct_cuda_row_sparse_sgd (plain, momentum, Nesterov, weight decay) and
 * ct_cuda_row_sparse_adam against their CPU twins, f32 / f64, on a random table of 53 x dim rows
 * (dim 1, 7, 130) with a random subset of 17 distinct rows (and none), fresh random state; the
 * whole table is compared (untouched rows must be unchanged bit for bit: they are compared too,
 * and a kernel writing outside the listed rows differs from the CPU there); and the bad-input
 * statuses: a row out of range and a row listed twice give the CPU's status on the GPU.
 * Tolerance: compare() with 4 x the dtype's rtol/atol (a few FLOPs per element).
 */
#pragma once
#include <algorithm>
#include <numeric>

#include "cortado/embedding.h"

namespace moe_check {

static void check_row_sparse(int dt) {
  const double rt = 4 * rtol_of(dt), at = 4 * atol_of(dt);
  const int64_t num_rows = 53;
  for (int64_t dim : {1, 7, 130}) {
    for (int64_t n : {0, 17}) {
      std::vector<int64_t> perm(num_rows);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      Buf rows(CT_I64, std::max<int64_t>(n, 1));
      std::memcpy(rows.hp(), perm.data(), (size_t)n * 8);
      rows.up();
      Buf grad(dt, std::max<int64_t>(n * dim, 1));
      grad.fill_random();
      grad.up();
      const std::string kase = "53x" + std::to_string(dim) + ", " + std::to_string(n) + " rows";
      for (int variant = 0; variant < 3; ++variant) {  // plain, momentum + wd, Nesterov
        Buf pc(dt, num_rows * dim), bc(dt, num_rows * dim);
        pc.fill_random();
        bc.fill_random();
        pc.up();
        bc.up();
        std::vector<uint8_t> p0 = pc.h, b0 = bc.h;
        const double mom = variant ? 0.9 : 0, wd = variant == 1 ? 0.01 : 0;
        void* bh = variant ? bc.hp() : nullptr;
        void* bd = variant ? bc.d : nullptr;
        int x = ct_cpu_row_sparse_sgd(dt, num_rows, dim, n, (const int64_t*)rows.hp(), grad.hp(), pc.hp(), bh, 0.1,
                                      mom, wd, variant == 2, 0);
        int y = ct_cuda_row_sparse_sgd(dt, num_rows, dim, n, (const int64_t*)rows.d, grad.d, pc.d, bd, 0.1, mom, wd,
                                       variant == 2, 0);
        const std::string k = "row_sparse_sgd";
        const std::string kv = kase + (variant == 0 ? ", plain" : variant == 1 ? ", momentum, wd" : ", nesterov");
        if (status_ok(k, dt, kv, x, y)) {
          compare(k, dt, kv, pc.hp(), pc.down().data(), num_rows * dim, rt, at);
          if (variant) compare(k + " (buffer)", dt, kv, bc.hp(), bc.down().data(), num_rows * dim, rt, at);
        }
      }
      Buf pa(dt, num_rows * dim), m(dt, num_rows * dim), v(dt, num_rows * dim);
      pa.fill_random();
      m.fill_random();
      v.fill_random(1);
      pa.up();
      m.up();
      v.up();
      int x = ct_cpu_row_sparse_adam(dt, num_rows, dim, n, (const int64_t*)rows.hp(), grad.hp(), pa.hp(), m.hp(),
                                     v.hp(), 1e-2 / (1 - 0.9 * 0.9), 0.9, 0.999, 1e-8, 1 / std::sqrt(1 - 0.999 * 0.999),
                                     0.01, 0);
      int y = ct_cuda_row_sparse_adam(dt, num_rows, dim, n, (const int64_t*)rows.d, grad.d, pa.d, m.d, v.d,
                                      1e-2 / (1 - 0.9 * 0.9), 0.9, 0.999, 1e-8, 1 / std::sqrt(1 - 0.999 * 0.999), 0.01,
                                      0);
      if (status_ok("row_sparse_adam", dt, kase, x, y)) {
        compare("row_sparse_adam", dt, kase, pa.hp(), pa.down().data(), num_rows * dim, rt, at);
        compare("row_sparse_adam (exp_avg)", dt, kase, m.hp(), m.down().data(), num_rows * dim, rt, at);
        compare("row_sparse_adam (exp_avg_sq)", dt, kase, v.hp(), v.down().data(), num_rows * dim, rt, at);
      }
    }
  }
  // bad rows: out of range, then listed twice
  for (int bad = 0; bad < 2; ++bad) {
    const int64_t dim = 3, n = 2;
    Buf rows(CT_I64, n), grad(dt, n * dim), p(dt, num_rows * dim);
    ((int64_t*)rows.hp())[0] = 4;
    ((int64_t*)rows.hp())[1] = bad ? 4 : num_rows;
    rows.up();
    grad.fill_random();
    p.fill_random();
    grad.up();
    p.up();
    const std::string kase = bad ? "row listed twice" : "row out of range";
    int x = ct_cpu_row_sparse_sgd(dt, num_rows, dim, n, (const int64_t*)rows.hp(), grad.hp(), p.hp(), nullptr, 0.1, 0,
                                  0, 0, 0);
    int y = ct_cuda_row_sparse_sgd(dt, num_rows, dim, n, (const int64_t*)rows.d, grad.d, p.d, nullptr, 0.1, 0, 0, 0, 0);
    status_ok("row_sparse_sgd", dt, kase, x, y);
  }
}

}  // namespace moe_check

static void check_moe() {
  for (int dt : {CT_F32, CT_F64}) moe_check::check_row_sparse(dt);
}
