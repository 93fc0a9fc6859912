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
 *
 * check_moe_routing() and check_grouped_gemm() (cortado/moe.h, mixture of experts): ct_cuda_moe_route
 * (exact: slots, counts, load) on 37 tokens x top-2 of 5 experts at capacities 6 (drops) and 74
 * (none), and 1 token; moe_dispatch (with and without gates), moe_combine (with and without
 * gates) and moe_gate_grad on those routings with d = 1, 33 and 130, f32 / f64 / bf16, the buffer
 * padded by 3 rows (dispatch must zero them); ct_cuda_grouped_gemm (trans_b 0 and 1) and
 * ct_cuda_grouped_gemm_wgrad on group sizes {70, 0, 1, 129} + 5 padding rows, k = 37, n = 65
 * (tile edges), and one expert of 64 rows; against their CPU twins (GEMMs with 16 x the dtype's
 * tolerance: k-long sums in another order). Bad input: an expert id out of range, a slot out of
 * range, a slot naming a row twice, counts past the buffer and k > experts give the CPU's status.
 */
#pragma once
#include <algorithm>
#include <numeric>

#include "cortado/embedding.h"
#include "cortado/moe.h"

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

static void route_both(int64_t tokens, int64_t k, int64_t experts, int64_t cap, Buf& ids, Buf& slots, Buf& counts,
                       Buf& load, const std::string& kase) {
  Buf sg(CT_I64, tokens * k), cg(CT_I64, experts), lg(CT_I64, experts);
  int x = ct_cpu_moe_route(tokens, k, experts, cap, (const int64_t*)ids.hp(), (int64_t*)slots.hp(),
                           (int64_t*)counts.hp(), (int64_t*)load.hp(), 0);
  int y = ct_cuda_moe_route(tokens, k, experts, cap, (const int64_t*)ids.d, (int64_t*)sg.d, (int64_t*)cg.d,
                            (int64_t*)lg.d, 0);
  if (status_ok("moe_route", CT_I64, kase, x, y)) {
    compare("moe_route (slots)", CT_I64, kase, slots.hp(), sg.down().data(), tokens * k, 0, 0);
    compare("moe_route (counts)", CT_I64, kase, counts.hp(), cg.down().data(), experts, 0, 0);
    compare("moe_route (load)", CT_I64, kase, load.hp(), lg.down().data(), experts, 0, 0);
  }
  slots.up();
  counts.up();
}

static void check_moe_routing(int dt) {
  const double rt = 4 * rtol_of(dt), at = 4 * atol_of(dt);
  const int64_t experts = 5, k = 2;
  for (int64_t tokens : {37, 1}) {
    for (int64_t cap : {6, 74}) {
      Buf ids(CT_I64, tokens * k), slots(CT_I64, tokens * k), counts(CT_I64, experts), load(CT_I64, experts);
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t a = irand(0, (int)experts - 1), b = (a + irand(1, (int)experts - 1)) % experts;
        ((int64_t*)ids.hp())[t * k] = a;
        ((int64_t*)ids.hp())[t * k + 1] = b;
      }
      ids.up();
      const std::string kase = std::to_string(tokens) + " tokens, capacity " + std::to_string(cap);
      route_both(tokens, k, experts, cap, ids, slots, counts, load, kase);
      const int64_t rows = tokens * k + 3;
      for (int64_t d : {1, 33, 130}) {
        const std::string kd = kase + ", d " + std::to_string(d);
        Buf x(dt, tokens * d), gates(dt, tokens * k), y(dt, rows * d);
        x.fill_random();
        gates.fill_random();
        y.fill_random();
        for (int weighted = 0; weighted < 2; ++weighted) {
          const std::string kw = kd + (weighted ? ", gates" : ", no gates");
          Buf bc(dt, rows * d), bg(dt, rows * d), oc(dt, tokens * d), og(dt, tokens * d);
          bg.fill_random();  // the kernel must overwrite everything, padding included
          int s1 = ct_cpu_moe_dispatch(dt, tokens, k, d, rows, (const int64_t*)slots.hp(), weighted ? gates.hp() : nullptr,
                                       x.hp(), bc.hp(), 0);
          int s2 = ct_cuda_moe_dispatch(dt, tokens, k, d, rows, (const int64_t*)slots.d, weighted ? gates.d : nullptr,
                                        x.d, bg.d, 0);
          if (status_ok("moe_dispatch", dt, kw, s1, s2)) compare("moe_dispatch", dt, kw, bc.hp(), bg.down().data(), rows * d, rt, at);
          s1 = ct_cpu_moe_combine(dt, tokens, k, d, rows, (const int64_t*)slots.hp(), weighted ? gates.hp() : nullptr,
                                  y.hp(), oc.hp(), 0);
          s2 = ct_cuda_moe_combine(dt, tokens, k, d, rows, (const int64_t*)slots.d, weighted ? gates.d : nullptr, y.d,
                                   og.d, 0);
          if (status_ok("moe_combine", dt, kw, s1, s2)) compare("moe_combine", dt, kw, oc.hp(), og.down().data(), tokens * d, rt, at);
        }
        Buf gc(dt, tokens * k), gg(dt, tokens * k);
        int s1 = ct_cpu_moe_gate_grad(dt, tokens, k, d, rows, (const int64_t*)slots.hp(), x.hp(), y.hp(), gc.hp(), 0);
        int s2 = ct_cuda_moe_gate_grad(dt, tokens, k, d, rows, (const int64_t*)slots.d, x.d, y.d, gg.d, 0);
        if (status_ok("moe_gate_grad", dt, kd, s1, s2))
          compare("moe_gate_grad", dt, kd, gc.hp(), gg.down().data(), tokens * k, 16 * rtol_of(dt), 16 * atol_of(dt));
      }
    }
  }
  // bad input: expert id out of range, k > experts, a slot out of range, a slot naming a row twice
  {
    const int64_t tokens = 3, d = 4, rows = 6;
    Buf ids(CT_I64, tokens * k), s(CT_I64, tokens * k), c(CT_I64, experts), l(CT_I64, experts);
    for (int64_t i = 0; i < tokens * k; ++i) ((int64_t*)ids.hp())[i] = i % experts;
    ((int64_t*)ids.hp())[3] = experts;
    ids.up();
    Buf sg(CT_I64, tokens * k), cg(CT_I64, experts), lg(CT_I64, experts);
    status_ok("moe_route", CT_I64, "expert id out of range",
              ct_cpu_moe_route(tokens, k, experts, 2, (const int64_t*)ids.hp(), (int64_t*)s.hp(), (int64_t*)c.hp(),
                               (int64_t*)l.hp(), 0),
              ct_cuda_moe_route(tokens, k, experts, 2, (const int64_t*)ids.d, (int64_t*)sg.d, (int64_t*)cg.d,
                                (int64_t*)lg.d, 0));
    status_ok("moe_route", CT_I64, "k > experts",
              ct_cpu_moe_route(tokens, 7, experts, 2, (const int64_t*)ids.hp(), (int64_t*)s.hp(), (int64_t*)c.hp(),
                               (int64_t*)l.hp(), 0),
              ct_cuda_moe_route(tokens, 7, experts, 2, (const int64_t*)ids.d, (int64_t*)sg.d, (int64_t*)cg.d,
                                (int64_t*)lg.d, 0));
    Buf x(dt, tokens * d), bc(dt, rows * d), bg(dt, rows * d);
    x.fill_random();
    for (int twice = 0; twice < 2; ++twice) {
      for (int64_t i = 0; i < tokens * k; ++i) ((int64_t*)s.hp())[i] = i;
      ((int64_t*)s.hp())[4] = twice ? 1 : rows;
      s.up();
      const std::string kase = twice ? "a slot naming a row twice" : "a slot out of range";
      status_ok("moe_dispatch", dt, kase,
                ct_cpu_moe_dispatch(dt, tokens, k, d, rows, (const int64_t*)s.hp(), nullptr, x.hp(), bc.hp(), 0),
                ct_cuda_moe_dispatch(dt, tokens, k, d, rows, (const int64_t*)s.d, nullptr, x.d, bg.d, 0));
    }
  }
}

static void check_grouped_gemm(int dt) {
  const double rt = 16 * rtol_of(dt), at = 16 * atol_of(dt);
  struct Geo { std::vector<int64_t> counts; int64_t padding, k, n; };
  for (const Geo& g : {Geo{{70, 0, 1, 129}, 5, 37, 65}, Geo{{64}, 0, 16, 64}}) {
    const int64_t experts = (int64_t)g.counts.size();
    int64_t rows = g.padding;
    for (int64_t c : g.counts) rows += c;
    const std::string kase = std::to_string(experts) + " experts, " + std::to_string(rows) + " rows, k " +
                             std::to_string(g.k) + ", n " + std::to_string(g.n);
    Buf counts(CT_I64, experts);
    std::memcpy(counts.hp(), g.counts.data(), (size_t)experts * 8);
    counts.up();
    Buf a(dt, rows * g.k), w(dt, experts * g.k * g.n), dc(dt, rows * g.n);
    a.fill_random();
    w.fill_random();
    dc.fill_random();
    Buf cc(dt, rows * g.n), cg(dt, rows * g.n);
    cg.fill_random();  // padding rows must be overwritten with zeros
    int x = ct_cpu_grouped_gemm(dt, experts, rows, g.k, g.n, 0, (const int64_t*)counts.hp(), a.hp(), w.hp(), cc.hp(), 0);
    int y = ct_cuda_grouped_gemm(dt, experts, rows, g.k, g.n, 0, (const int64_t*)counts.d, a.d, w.d, cg.d, 0);
    if (status_ok("grouped_gemm", dt, kase, x, y)) compare("grouped_gemm", dt, kase, cc.hp(), cg.down().data(), rows * g.n, rt, at);
    Buf xc(dt, rows * g.k), xg(dt, rows * g.k);  // dA = dC W_e^T
    x = ct_cpu_grouped_gemm(dt, experts, rows, g.n, g.k, 1, (const int64_t*)counts.hp(), dc.hp(), w.hp(), xc.hp(), 0);
    y = ct_cuda_grouped_gemm(dt, experts, rows, g.n, g.k, 1, (const int64_t*)counts.d, dc.d, w.d, xg.d, 0);
    if (status_ok("grouped_gemm trans_b", dt, kase, x, y))
      compare("grouped_gemm trans_b", dt, kase, xc.hp(), xg.down().data(), rows * g.k, rt, at);
    Buf wc(dt, experts * g.k * g.n), wg(dt, experts * g.k * g.n);
    wg.fill_random();  // an expert without rows must get zeros
    x = ct_cpu_grouped_gemm_wgrad(dt, experts, rows, g.k, g.n, (const int64_t*)counts.hp(), a.hp(), dc.hp(), wc.hp(), 0);
    y = ct_cuda_grouped_gemm_wgrad(dt, experts, rows, g.k, g.n, (const int64_t*)counts.d, a.d, dc.d, wg.d, 0);
    if (status_ok("grouped_gemm_wgrad", dt, kase, x, y))
      compare("grouped_gemm_wgrad", dt, kase, wc.hp(), wg.down().data(), experts * g.k * g.n, rt, at);
  }
  // bad counts: past the buffer
  Buf counts(CT_I64, 2), a(dt, 4 * 3), w(dt, 2 * 3 * 2), c(dt, 4 * 2), cg(dt, 4 * 2);
  ((int64_t*)counts.hp())[0] = 3;
  ((int64_t*)counts.hp())[1] = 2;
  counts.up();
  status_ok("grouped_gemm", dt, "counts past the buffer",
            ct_cpu_grouped_gemm(dt, 2, 4, 3, 2, 0, (const int64_t*)counts.hp(), a.hp(), w.hp(), c.hp(), 0),
            ct_cuda_grouped_gemm(dt, 2, 4, 3, 2, 0, (const int64_t*)counts.d, a.d, w.d, cg.d, 0));
}

}  // namespace moe_check

static void check_moe() {
  for (int dt : {CT_F32, CT_F64}) moe_check::check_row_sparse(dt);
  for (int dt : {CT_F32, CT_F64, CT_BF16}) moe_check::check_moe_routing(dt);
  for (int dt : {CT_F32, CT_F64}) moe_check::check_grouped_gemm(dt);
}
