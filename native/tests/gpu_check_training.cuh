/* GPU check for the training and serving kernels: included by gpu_check.cu before main().
 *
 * check_training(): every remaining ct_cuda_* entry point against its CPU twin on fresh random
 * inputs (never zeros), odd sizes, size-1 and empty cases:
 *   ct_cuda_softmax_backward (softmax and log-softmax), ct_cuda_layernorm_backward,
 *   ct_cuda_rmsnorm_backward, ct_cuda_index_add (duplicate indices, negative indices, an
 *   out-of-range index), ct_cuda_cross_entropy_forward / _backward (three reductions, label
 *   smoothing, ignore_index, a bad label), ct_cuda_optim_sgd / _adam / _adagrad (three steps,
 *   19 tensors so two launches of 16, mixed-precision gradients), ct_cuda_optim_sum_squares /
 *   _scale / _unscale_check (with and without an inf), ct_cuda_kv_cache_append and
 *   ct_cuda_paged_decode_attention (ragged appends, GQA, causal Tq > 1, soft-capping, split-K),
 *   cuBLAS GEMM as the Java engine calls it (row-major via swapped operands, batched, transposed)
 *   against ct_cpu_gemm, and the runtime calls not covered by check_runtime() (device
 *   get/set/synchronize, mem_info, pinned host memory, events, stream_wait_event).
 * Tolerances: |gpu - cpu| <= rtol |cpu| + rtol max|cpu| per dtype (compare_rel below), so every
 * tolerance is a fraction of the values compared; compare_rel also requires that an all-zero
 * output FAILS the same comparison whenever the reference is not all zero (a self-check of the
 * tolerance, recorded as its own FAIL row when it does not hold).
 *
 * Every ct_cpu_* call goes through a cpu_* wrapper below (they pass stream 0, which the CPU ignores).
 */
#pragma once
#include "cortado/gemm.h"
#include "cortado/kvcache.h"
#include "cortado/optim.h"
#include "cortado/loss.h"

namespace train_check {

// ------------------------------------------------------------------ CPU twins, one place each
static int cpu_softmax_backward(int dt, int log, int64_t o, int64_t d, int64_t i, const void* y, const void* dy, void* dx) {
  return ct_cpu_softmax_backward(dt, log, o, d, i, y, dy, dx, 0);
}
static int cpu_softmax(int dt, int log, int64_t o, int64_t d, int64_t i, const void* x, void* y) {
  return ct_cpu_softmax(dt, log, o, d, i, x, y, 0);
}
static int cpu_layernorm_backward(int dt, int64_t r, int64_t c, const void* x, const void* g, double eps, const void* dy,
                                  void* dx, void* dg, void* db) {
  return ct_cpu_layernorm_backward(dt, r, c, x, g, eps, dy, dx, dg, db, 0);
}
static int cpu_rmsnorm_backward(int dt, int64_t r, int64_t c, const void* x, const void* g, double eps, const void* dy,
                                void* dx, void* dg) {
  return ct_cpu_rmsnorm_backward(dt, r, c, x, g, eps, dy, dx, dg, 0);
}
static int cpu_index_add(int dt, int it, int64_t o, int64_t a, int64_t i, int64_t n, const void* idx, const void* src,
                         void* out) {
  return ct_cpu_index_add(dt, it, o, a, i, n, idx, src, out, 0);
}
static int cpu_ce_forward(int dt, int tdt, int64_t rows, int64_t classes, const void* logits, const void* target,
                          int64_t ignore, double smoothing, int reduction, void* loss, void* lse) {
  return ct_cpu_cross_entropy_forward(dt, tdt, rows, classes, logits, target, ignore, smoothing, reduction, loss, lse, 0);
}
static int cpu_ce_backward(int dt, int tdt, int64_t rows, int64_t classes, const void* logits, const void* target,
                           const void* lse, const void* grad, int64_t ignore, double smoothing, int reduction,
                           void* dlogits) {
  return ct_cpu_cross_entropy_backward(dt, tdt, rows, classes, logits, target, lse, grad, ignore, smoothing, reduction,
                                       dlogits, 0);
}
static int cpu_sgd(int pdt, int gdt, int64_t n, const int64_t* sz, const int64_t* p, const int64_t* g, const int64_t* b,
                   double lr, double l2, double alpha, double beta, int nesterov, double gs) {
  return ct_cpu_optim_sgd(pdt, gdt, n, sz, p, g, b, lr, l2, alpha, beta, nesterov, gs, 0);
}
static int cpu_adam(int pdt, int gdt, int64_t n, const int64_t* sz, const int64_t* p, const int64_t* g, const int64_t* m,
                    const int64_t* v, const int64_t* vm, double b1, double b2, double eps, double l2, double dec,
                    double step, double denom, double post, double gs) {
  return ct_cpu_optim_adam(pdt, gdt, n, sz, p, g, m, v, vm, b1, b2, eps, l2, dec, step, denom, post, gs, 0);
}
static int cpu_adagrad(int pdt, int gdt, int64_t n, const int64_t* sz, const int64_t* p, const int64_t* g,
                       const int64_t* h, double lr, double l2, double eps, double gs) {
  return ct_cpu_optim_adagrad(pdt, gdt, n, sz, p, g, h, lr, l2, eps, gs, 0);
}
static int cpu_sum_squares(int dt, int64_t n, const int64_t* sz, const int64_t* t, double* out) {
  return ct_cpu_optim_sum_squares(dt, n, sz, t, out, 0);
}
static int cpu_scale(int dt, int64_t n, const int64_t* sz, const int64_t* t, double f) {
  return ct_cpu_optim_scale(dt, n, sz, t, f, 0);
}
static int cpu_unscale_check(int dt, int64_t n, const int64_t* sz, const int64_t* t, double inv, int32_t* found) {
  return ct_cpu_optim_unscale_check(dt, n, sz, t, inv, found, 0);
}
static int cpu_kv_append(int dt, const int64_t* dims, const void* k, const int64_t* ks, const void* v,
                         const int64_t* vs, void* kc, void* vc, const int32_t* bt, const int32_t* sl,
                         const int32_t* nl) {
  return ct_cpu_kv_cache_append(dt, dims, k, ks, v, vs, kc, vc, bt, sl, nl, 0);
}
static int cpu_decode(int dt, const int64_t* dims, const void* q, const int64_t* qs, const void* kc, const void* vc,
                      const int32_t* bt, const int32_t* sl, int causal, double scale, double softcap, int64_t splits,
                      void* o, const int64_t* os, float* lse) {
  return ct_cpu_paged_decode_attention(dt, dims, q, qs, kc, vc, bt, sl, 0, causal, scale, softcap, splits, o, os, lse,
                                       nullptr, 0, 0);
}
static int cpu_gemm(int dt, int ta, int tb, int64_t batch, int64_t m, int64_t n, int64_t k, double alpha, const void* a,
                    int64_t lda, int64_t sa, const void* b, int64_t ldb, int64_t sb, double beta, void* c, int64_t ldc,
                    int64_t sc) {
  return ct_cpu_gemm(dt, ta, tb, batch, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, 0);
}

// ------------------------------------------------------------------ comparison
static double max_abs(const void* p, int dt, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = std::fabs(getv(p, dt, i));
    if (v == v && !std::isinf(v)) m = std::max(m, v);
  }
  return m;
}

/* Tolerance of a result computed in float32 (float64 for F64) and rounded to dt, relative to
 * the values: f64 1e-11, f32 2e-5, f16 4e-3 (4 ulp), bf16 1.6e-2 (4 ulp). */
static double rel_tol(int dt) {
  switch (dt) {
    case CT_F64: return 1e-11;
    case CT_F32: return 2e-5;
    case CT_F16: return 4e-3;
    default: return 1.6e-2;
  }
}

/* compare() with |gpu - cpu| <= rtol |cpu| + rtol max|cpu|, then the self-check: a zero output
 * must fail the same comparison unless the reference itself is all zero. */
static void compare_rel(const std::string& kernel, int dt, const std::string& kase, const void* ref, const void* got,
                        int64_t n, double rtol) {
  const double atol = rtol * max_abs(ref, dt, n);
  compare(kernel, dt, kase, ref, got, n, rtol, atol);
  require_zero_output_fails(kernel, dt, kase, ref, n, rtol, atol);
}

static void fill_uniform(Buf& b, double lo, double hi) {
  for (int64_t i = 0; i < b.n; ++i) setv(b.h.data(), b.dt, i, unif(lo, hi));
  b.up();
}

static const int kFloatTypes[] = {CT_F32, CT_F64, CT_F16, CT_BF16};

// ------------------------------------------------------------------ normalization backward
static void check_norm_backward() {
  struct SC { int64_t outer, dim, inner; const char* name; };
  const SC sc[] = {{64, 100, 1, "[64,100]"}, {8, 33, 17, "[8,33,17] inner>1"}, {2, 40000, 1, "[2,40000] block/row"},
                   {4, 7, 1, "[4,7]"},       {1, 1, 1, "[1,1]"}};
  for (int dt : kFloatTypes) {
    for (int log = 0; log < 2; ++log) {
      for (const SC& c : sc) {
        const int64_t n = c.outer * c.dim * c.inner;
        Buf x(dt, n), y(dt, n), dy(dt, n), dxc(dt, n), dxg(dt, n);
        x.fill_random();
        dy.fill_random();
        if (cpu_softmax(dt, log, c.outer, c.dim, c.inner, x.hp(), y.hp()) != CT_OK) continue;
        y.up();  // the forward's output, as the engine feeds it
        const std::string k = log ? "log_softmax_backward" : "softmax_backward";
        int a = cpu_softmax_backward(dt, log, c.outer, c.dim, c.inner, y.hp(), dy.hp(), dxc.hp());
        int b = ct_cuda_softmax_backward(dt, log, c.outer, c.dim, c.inner, y.d, dy.d, dxg.d, 0);
        if (!status_ok(k, dt, c.name, a, b)) continue;
        compare_rel(k, dt, c.name, dxc.hp(), dxg.down().data(), n, rel_tol(dt));
      }
    }
    struct NC { int64_t rows, cols; const char* name; };
    const NC nc[] = {{64, 768, "[64,768]"}, {16, 4096, "[16,4096]"}, {5, 20000, "[5,20000]"}, {3, 7, "[3,7]"},
                     {1, 1, "[1,1]"}};
    for (const NC& c : nc) {
      for (int affine = 0; affine < 2; ++affine) {
        const int64_t n = c.rows * c.cols;
        Buf x(dt, n), g(dt, c.cols), dy(dt, n);
        x.fill_random();
        for (int64_t i = 0; i < n; ++i) setv(x.hp(), dt, i, getv(x.hp(), dt, i) + 1.5);  // non-zero mean
        x.up();
        fill_uniform(g, 0.5, 1.5);
        dy.fill_random();
        const std::string kase = std::string(c.name) + (affine ? " gamma" : " no gamma");
        for (int rms = 0; rms < 2; ++rms) {
          Buf dxc(dt, n), dxg(dt, n), dgc(dt, c.cols), dgg(dt, c.cols), dbc(dt, c.cols), dbg(dt, c.cols);
          const std::string k = rms ? "rmsnorm_backward" : "layernorm_backward";
          const void* gh = affine ? g.hp() : nullptr;
          const void* gd = affine ? g.d : nullptr;
          int a, b;
          if (rms) {
            a = cpu_rmsnorm_backward(dt, c.rows, c.cols, x.hp(), gh, 1e-6, dy.hp(), dxc.hp(), dgc.hp());
            b = ct_cuda_rmsnorm_backward(dt, c.rows, c.cols, x.d, gd, 1e-6, dy.d, dxg.d, dgg.d, 0);
          } else {
            a = cpu_layernorm_backward(dt, c.rows, c.cols, x.hp(), gh, 1e-5, dy.hp(), dxc.hp(), dgc.hp(), dbc.hp());
            b = ct_cuda_layernorm_backward(dt, c.rows, c.cols, x.d, gd, 1e-5, dy.d, dxg.d, dgg.d, dbg.d, 0);
          }
          if (!status_ok(k, dt, kase, a, b)) continue;
          // a row of one element normalizes to 0: dx is exactly 0 on both sides (checked exactly)
          if (c.cols == 1) compare(k + " dx", dt, kase, dxc.hp(), dxg.down().data(), n, 0, 1e-30);
          else compare_rel(k + " dx", dt, kase, dxc.hp(), dxg.down().data(), n, 2 * rel_tol(dt));
          compare_rel(k + " dgamma", dt, kase, dgc.hp(), dgg.down().data(), c.cols, 2 * rel_tol(dt));
          if (!rms) compare_rel(k + " dbeta", dt, kase, dbc.hp(), dbg.down().data(), c.cols, 2 * rel_tol(dt));
        }
      }
    }
  }
}

// ------------------------------------------------------------------ index_add
static void check_index_add() {
  struct IC { int64_t outer, axis, inner, nidx; const char* name; };
  const IC ic[] = {{1, 1000, 64, 3000, "embedding grad [1000,64] x3000 (duplicates)"},
                   {3, 50, 1, 70, "[3,50,1] x70"},
                   {4, 20, 3, 9, "[4,20,3] x9"},
                   {2, 17, 64, 5, "[2,17,64] x5"},
                   {2, 5, 3, 0, "[2,5,3] x0 (empty index)"}};
  for (int dt : kFloatTypes) {
    for (int it : {CT_I32, CT_I64}) {
      for (const IC& c : ic) {
        const int64_t on = c.outer * c.axis * c.inner, sn = c.outer * c.nidx * c.inner;
        Buf src(dt, sn), idx(it, c.nidx), oc(dt, on), og(dt, on);
        src.fill_random();
        for (int64_t j = 0; j < c.nidx; ++j) setv(idx.hp(), it, j, (double)irand(-c.axis, c.axis - 1));
        idx.up();
        oc.fill_random();  // base values: index_add accumulates into them
        memcpy(og.hp(), oc.hp(), oc.h.size());
        og.up();
        const std::string kase = std::string(c.name) + " idx " + dname(it);
        int a = cpu_index_add(dt, it, c.outer, c.axis, c.inner, c.nidx, idx.hp(), src.hp(), oc.hp());
        int b = ct_cuda_index_add(dt, it, c.outer, c.axis, c.inner, c.nidx, idx.d, src.d, og.d, 0);
        if (!status_ok("index_add", dt, kase, a, b)) continue;
        compare_rel("index_add", dt, kase, oc.hp(), og.down().data(), on, 2 * rel_tol(dt));
      }
    }
  }
  for (int it : {CT_I32, CT_I64}) {  // index 10 of an axis of 10
    Buf src(CT_F32, 4 * 4), idx(it, 4), oc(CT_F32, 10 * 4), og(CT_F32, 10 * 4);
    src.fill_random();
    const double vals[] = {1, -2, 10, 3};
    for (int j = 0; j < 4; ++j) setv(idx.hp(), it, j, vals[j]);
    idx.up();
    int a = cpu_index_add(CT_F32, it, 1, 10, 4, 4, idx.hp(), src.hp(), oc.hp());
    int b = ct_cuda_index_add(CT_F32, it, 1, 10, 4, 4, idx.d, src.d, og.d, 0);
    record("index_add", "f32", std::string("index 10 of axis 10 -> CT_ERR_INDEX_OUT_OF_RANGE, idx ") + dname(it), 0, 0,
           a == CT_ERR_INDEX_OUT_OF_RANGE && b == CT_ERR_INDEX_OUT_OF_RANGE, b ? ct_cuda_last_error() : "gpu: CT_OK");
  }
}

// ------------------------------------------------------------------ cross entropy
static void check_cross_entropy() {
  struct CC { int64_t rows, classes; const char* name; };
  const CC cc[] = {{64, 10, "[64,10]"}, {37, 1000, "[37,1000]"}, {6, 50257, "[6,50257] vocab"}, {1, 3, "[1,3]"}};
  const char* rname[] = {"none", "mean", "sum"};
  for (int dt : kFloatTypes) {
    const int acc = dt == CT_F64 ? CT_F64 : CT_F32;
    for (int tdt : {CT_I32, CT_I64}) {
      for (const CC& c : cc) {
        Buf logits(dt, c.rows * c.classes), target(tdt, c.rows);
        logits.fill_random();
        for (int64_t r = 0; r < c.rows; ++r)  // every 5th row ignored (-100), never all of them
          setv(target.hp(), tdt, r, r % 5 == 3 ? -100.0 : (double)irand(0, c.classes - 1));
        target.up();
        for (int red = CT_LOSS_REDUCTION_NONE; red <= CT_LOSS_REDUCTION_SUM; ++red) {
          for (double eps : {0.0, 0.1}) {
            char kase[160];
            snprintf(kase, sizeof kase, "%s idx %s reduction %s smoothing %g", c.name, dname(tdt), rname[red], eps);
            const int64_t ln = red == CT_LOSS_REDUCTION_NONE ? c.rows : 1;
            Buf lc(dt, ln), lg(dt, ln), sc(acc, c.rows), sg(acc, c.rows);
            int a = cpu_ce_forward(dt, tdt, c.rows, c.classes, logits.hp(), target.hp(), -100, eps, red, lc.hp(), sc.hp());
            int b = ct_cuda_cross_entropy_forward(dt, tdt, c.rows, c.classes, logits.d, target.d, -100, eps, red, lg.d,
                                                  sg.d, 0);
            if (!status_ok("cross_entropy_forward", dt, kase, a, b)) continue;
            compare_rel("cross_entropy_forward loss", dt, kase, lc.hp(), lg.down().data(), ln, 2 * rel_tol(dt));
            compare_rel("cross_entropy_forward lse", acc, kase, sc.hp(), sg.down().data(), c.rows, rel_tol(acc));
            // backward from the CPU's lse on both sides, so it is checked on its own
            sc.up();
            Buf grad(dt, ln), dc(dt, c.rows * c.classes), dg(dt, c.rows * c.classes);
            fill_uniform(grad, 0.5, 2.0);
            a = cpu_ce_backward(dt, tdt, c.rows, c.classes, logits.hp(), target.hp(), sc.hp(), grad.hp(), -100, eps, red,
                                dc.hp());
            b = ct_cuda_cross_entropy_backward(dt, tdt, c.rows, c.classes, logits.d, target.d, sc.d, grad.d, -100, eps,
                                               red, dg.d, 0);
            if (!status_ok("cross_entropy_backward", dt, kase, a, b)) continue;
            compare_rel("cross_entropy_backward", dt, kase, dc.hp(), dg.down().data(), c.rows * c.classes,
                        2 * rel_tol(dt));
          }
        }
      }
    }
  }
  {  // a label outside [0, classes): both sides refuse
    Buf logits(CT_F32, 4 * 10), target(CT_I64, 4), loss(CT_F32, 1), lse(CT_F32, 4);
    logits.fill_random();
    const double t[] = {1, 9, 10, 0};
    for (int r = 0; r < 4; ++r) setv(target.hp(), CT_I64, r, t[r]);
    target.up();
    int a = cpu_ce_forward(CT_F32, CT_I64, 4, 10, logits.hp(), target.hp(), -100, 0, CT_LOSS_REDUCTION_MEAN, loss.hp(), lse.hp());
    int b = ct_cuda_cross_entropy_forward(CT_F32, CT_I64, 4, 10, logits.d, target.d, -100, 0, CT_LOSS_REDUCTION_MEAN, loss.d,
                                          lse.d, 0);
    record("cross_entropy_forward", "f32", "label 10 of 10 classes -> CT_ERR_INDEX_OUT_OF_RANGE", 0, 0,
           a == CT_ERR_INDEX_OUT_OF_RANGE && b == CT_ERR_INDEX_OUT_OF_RANGE, b ? ct_cuda_last_error() : "gpu: CT_OK");
  }
}

// ------------------------------------------------------------------ optimizers
/* n tensors of one dtype with a host twin and a device twin, and their address tables. */
struct TensorList {
  std::vector<Buf> t;
  std::vector<int64_t> sizes, host, dev;
  TensorList(int dt, const std::vector<int64_t>& sz, int kind) : sizes(sz) {
    for (int64_t s : sz) {
      t.emplace_back(dt, s);
      t.back().fill_random(kind);
    }
    for (auto& b : t) {
      host.push_back((int64_t)(intptr_t)b.hp());
      dev.push_back((int64_t)(intptr_t)b.d);
    }
  }
  void compare_all(const std::string& k, const std::string& kase, double rtol) {
    for (size_t i = 0; i < t.size(); ++i) {
      if (t[i].n == 0) continue;
      auto got = t[i].down();
      compare_rel(k, t[i].dt, kase + " tensor " + std::to_string(i), t[i].hp(), got.data(), t[i].n, rtol);
    }
  }
};

/* 19 tensors (two launches of 16), sizes 0 and 1 among them and one of 1000003. */
static std::vector<int64_t> optim_sizes() {
  std::vector<int64_t> s = {1000003, 0, 1, 17, 4096, 33};
  while (s.size() < 19) s.push_back(irand(1, 3000));
  return s;
}

static void check_optim() {
  const int combos[][2] = {{CT_F32, CT_F32}, {CT_F32, CT_F16}, {CT_F32, CT_BF16}, {CT_F64, CT_F64}};
  const auto sz = optim_sizes();
  for (auto& cb : combos) {
    const int pdt = cb[0], gdt = cb[1];
    const std::string kase0 = std::string("params ") + dname(pdt) + " grads " + dname(gdt);
    const double tol = pdt == CT_F64 ? 1e-11 : 2e-5;
    for (int variant = 0; variant < 3; ++variant) {  // sgd: no momentum, momentum, nesterov
      TensorList p(pdt, sz, 0), g(gdt, sz, 0), buf(pdt, sz, 0);
      const std::string kase = kase0 + (variant == 0 ? " no momentum" : variant == 1 ? " momentum" : " nesterov");
      bool ok = true;
      for (int step = 0; step < 3 && ok; ++step) {
        const int64_t* bh = variant ? buf.host.data() : nullptr;
        const int64_t* bd = variant ? buf.dev.data() : nullptr;
        int a = cpu_sgd(pdt, gdt, (int64_t)sz.size(), sz.data(), p.host.data(), g.host.data(), bh, 0.05, 1e-3, 0.9,
                        step == 0 ? 1.0 : 0.8, variant == 2, 0.5);
        int b = ct_cuda_optim_sgd(pdt, gdt, (int64_t)sz.size(), sz.data(), p.dev.data(), g.dev.data(), bd, 0.05, 1e-3,
                                  0.9, step == 0 ? 1.0 : 0.8, variant == 2, 0.5, 0);
        ok = status_ok("optim_sgd", pdt, kase, a, b);
      }
      if (!ok) continue;
      p.compare_all("optim_sgd params", kase, tol);
      if (variant) buf.compare_all("optim_sgd momentum", kase, tol);
    }
    for (int variant = 0; variant < 3; ++variant) {  // adam, adamw, adam + amsgrad
      TensorList p(pdt, sz, 0), g(gdt, sz, 0), m(pdt, sz, 0), v(pdt, sz, 1), vm(pdt, sz, 1);
      const std::string kase = kase0 + (variant == 0 ? " adam" : variant == 1 ? " adamw" : " amsgrad");
      bool ok = true;
      for (int t = 1; t <= 3 && ok; ++t) {
        const double b1 = 0.9, b2 = 0.999, lr = 1e-2;
        const double step = lr / (1 - std::pow(b1, t)), denom = 1 / std::sqrt(1 - std::pow(b2, t));
        const double l2 = variant == 0 ? 1e-2 : 0, dec = variant == 1 ? lr * 0.1 : 0;
        const int64_t* vmh = variant == 2 ? vm.host.data() : nullptr;
        const int64_t* vmd = variant == 2 ? vm.dev.data() : nullptr;
        int a = cpu_adam(pdt, gdt, (int64_t)sz.size(), sz.data(), p.host.data(), g.host.data(), m.host.data(),
                         v.host.data(), vmh, b1, b2, 1e-8, l2, dec, step, denom, 1.0, 0.25);
        int b = ct_cuda_optim_adam(pdt, gdt, (int64_t)sz.size(), sz.data(), p.dev.data(), g.dev.data(), m.dev.data(),
                                   v.dev.data(), vmd, b1, b2, 1e-8, l2, dec, step, denom, 1.0, 0.25, 0);
        ok = status_ok("optim_adam", pdt, kase, a, b);
      }
      if (!ok) continue;
      p.compare_all("optim_adam params", kase, tol);
      m.compare_all("optim_adam exp_avg", kase, tol);
      v.compare_all("optim_adam exp_avg_sq", kase, tol);
      if (variant == 2) vm.compare_all("optim_adam max_exp_avg_sq", kase, tol);
    }
    {
      TensorList p(pdt, sz, 0), g(gdt, sz, 0), h(pdt, sz, 1);
      bool ok = true;
      for (int t = 1; t <= 3 && ok; ++t) {
        int a = cpu_adagrad(pdt, gdt, (int64_t)sz.size(), sz.data(), p.host.data(), g.host.data(), h.host.data(),
                            0.1 / (1 + (t - 1) * 0.01), 1e-3, 1e-10, 2.0);
        int b = ct_cuda_optim_adagrad(pdt, gdt, (int64_t)sz.size(), sz.data(), p.dev.data(), g.dev.data(), h.dev.data(),
                                      0.1 / (1 + (t - 1) * 0.01), 1e-3, 1e-10, 2.0, 0);
        ok = status_ok("optim_adagrad", pdt, kase0, a, b);
      }
      if (ok) {
        p.compare_all("optim_adagrad params", kase0, tol);
        h.compare_all("optim_adagrad sums", kase0, tol);
      }
    }
  }
  // gradient utilities over every dtype
  for (int dt : kFloatTypes) {
    TensorList x(dt, sz, 0);
    double sc = -1;
    double* d_out = nullptr;
    CUDA_OK(cudaMalloc(&d_out, sizeof(double)));
    CUDA_OK(cudaMemset(d_out, 0, sizeof(double)));
    int a = cpu_sum_squares(dt, (int64_t)sz.size(), sz.data(), x.host.data(), &sc);
    int b = ct_cuda_optim_sum_squares(dt, (int64_t)sz.size(), sz.data(), x.dev.data(), d_out, 0);
    if (status_ok("optim_sum_squares", dt, "19 tensors", a, b)) {
      double sg = 0;
      CUDA_OK(cudaMemcpy(&sg, d_out, sizeof(double), cudaMemcpyDeviceToHost));
      compare_rel("optim_sum_squares", CT_F64, std::string("19 tensors (") + dname(dt) + ")", &sc, &sg, 1, 1e-12);
    }
    cudaFree(d_out);
    a = cpu_scale(dt, (int64_t)sz.size(), sz.data(), x.host.data(), -0.37);
    b = ct_cuda_optim_scale(dt, (int64_t)sz.size(), sz.data(), x.dev.data(), -0.37, 0);
    if (status_ok("optim_scale", dt, "19 tensors", a, b)) x.compare_all("optim_scale", "factor -0.37", rel_tol(dt));
    for (int with_inf = 0; with_inf < 2; ++with_inf) {
      TensorList y(dt, sz, 0);
      if (with_inf) {  // one inf in a middle tensor, on both sides
        setv(y.t[4].hp(), dt, 1234, INFINITY);
        y.t[4].up();
      }
      int32_t fc = 0, fg = 0;
      int32_t* d_found = nullptr;
      CUDA_OK(cudaMalloc(&d_found, sizeof(int32_t)));
      CUDA_OK(cudaMemset(d_found, 0, sizeof(int32_t)));
      a = cpu_unscale_check(dt, (int64_t)sz.size(), sz.data(), y.host.data(), 1.0 / 1024, &fc);
      b = ct_cuda_optim_unscale_check(dt, (int64_t)sz.size(), sz.data(), y.dev.data(), 1.0 / 1024, d_found, 0);
      const std::string kase = with_inf ? "one inf" : "all finite";
      if (status_ok("optim_unscale_check", dt, kase, a, b)) {
        CUDA_OK(cudaMemcpy(&fg, d_found, sizeof(int32_t), cudaMemcpyDeviceToHost));
        record("optim_unscale_check found_inf", dname(dt), kase, 0, 0, fc == with_inf && fg == with_inf,
               "cpu " + std::to_string(fc) + " gpu " + std::to_string(fg));
        y.compare_all("optim_unscale_check", kase, rel_tol(dt));
      }
      cudaFree(d_found);
    }
  }
}

// ------------------------------------------------------------------ KV cache
static void check_kvcache() {
  const int dts[] = {CT_F32, CT_F16, CT_BF16};
  for (int dt : dts) {
    for (int64_t D : {64ll, 128ll}) {
      const int64_t S = 3, T = 4, Hkv = 2, P = 20, PS = 16, MP = 6;
      const int32_t before[S] = {5, 70, 0}, adds[S] = {4, 1, 3};  // ragged appends, one empty cache
      // block table: a random permutation of the pool's pages, -1 past each sequence's need
      std::vector<int32_t> perm(P);
      for (int i = 0; i < P; ++i) perm[i] = i;
      std::shuffle(perm.begin(), perm.end(), rng);
      Buf bt(CT_I32, S * MP), sl(CT_I32, S), nl(CT_I32, S), sl2(CT_I32, S);
      for (int64_t s = 0; s < S; ++s) {
        const int64_t pages = (before[s] + adds[s] + PS - 1) / PS;
        for (int64_t i = 0; i < MP; ++i) ((int32_t*)bt.hp())[s * MP + i] = i < pages ? perm[s * MP + i] : -1;
        ((int32_t*)sl.hp())[s] = before[s];
        ((int32_t*)nl.hp())[s] = adds[s];
        ((int32_t*)sl2.hp())[s] = before[s] + adds[s];
      }
      bt.up();
      sl.up();
      nl.up();
      sl2.up();
      const int64_t cn = P * PS * Hkv * D, nn = S * T * Hkv * D;
      Buf kc(dt, cn), vc(dt, cn), kn(dt, nn), vn(dt, nn);
      kc.fill_random();
      vc.fill_random();
      kn.fill_random();
      vn.fill_random();
      Buf kg(dt, cn), vg(dt, cn);  // the device caches start as copies of the host ones
      memcpy(kg.hp(), kc.hp(), kc.h.size());
      memcpy(vg.hp(), vc.hp(), vc.h.size());
      kg.up();
      vg.up();
      const int64_t dims7[7] = {S, T, Hkv, D, P, PS, MP};
      const int64_t ns[4] = {T * Hkv * D, Hkv * D, D, 1};
      const std::string kase = "S=3 T=4 Hkv=2 D=" + std::to_string(D) + " PS=16 ragged";
      int a = cpu_kv_append(dt, dims7, kn.hp(), ns, vn.hp(), ns, kc.hp(), vc.hp(), (const int32_t*)bt.hp(),
                            (const int32_t*)sl.hp(), (const int32_t*)nl.hp());
      int b = ct_cuda_kv_cache_append(dt, dims7, kn.d, ns, vn.d, ns, kg.d, vg.d, (const int32_t*)bt.d,
                                      (const int32_t*)sl.d, (const int32_t*)nl.d, 0);
      if (!status_ok("kv_cache_append", dt, kase, a, b)) continue;
      compare("kv_cache_append k", dt, kase, kc.hp(), kg.down().data(), cn, 0, 0);  // a copy: exact
      compare("kv_cache_append v", dt, kase, vc.hp(), vg.down().data(), cn, 0, 0);
      // decode over the appended caches (the CPU's, uploaded, so decode is checked on its own)
      kc.up();
      vc.up();
      const int64_t Hq = 8, max_len = 71;
      for (int64_t Tq : {1ll, 3ll}) {
        for (double softcap : {0.0, 30.0}) {
          for (int64_t splits : {1ll, 3ll}) {
            const int causal = Tq > 1;
            const int64_t dims8[8] = {S, Tq, Hq, Hkv, D, P, PS, MP};
            const int64_t qs[4] = {Tq * Hq * D, Hq * D, D, 1};
            const int64_t qn = S * Tq * Hq * D;
            // Tq query tokens need Tq cached tokens: sequence 2 has 3 after the append
            Buf q(dt, qn), oc(dt, qn), og(dt, qn), lc(CT_F32, S * Hq * Tq), lg(CT_F32, S * Hq * Tq);
            q.fill_random();
            const int64_t wf = splits > 1 ? S * Hq * Tq * splits * (D + 2) : 0;
            float* ws = nullptr;
            if (wf) CUDA_OK(cudaMalloc(&ws, wf * sizeof(float)));
            const double scale = 1.0 / std::sqrt((double)D);
            a = cpu_decode(dt, dims8, q.hp(), qs, kc.hp(), vc.hp(), (const int32_t*)bt.hp(), (const int32_t*)sl2.hp(),
                           causal, scale, softcap, 1, oc.hp(), qs, (float*)lc.hp());
            b = ct_cuda_paged_decode_attention(dt, dims8, q.d, qs, kc.d, vc.d, (const int32_t*)bt.d,
                                               (const int32_t*)sl2.d, max_len, causal, scale, softcap, splits, og.d, qs,
                                               (float*)lg.d, ws, wf, 0);
            char k2[160];
            snprintf(k2, sizeof k2, "S=3 Tq=%lld Hq=8 Hkv=2 D=%lld%s softcap %g splits %lld", (long long)Tq,
                     (long long)D, causal ? " causal" : "", softcap, (long long)splits);
            if (status_ok("paged_decode_attention", dt, k2, a, b)) {
              compare_rel("paged_decode_attention o", dt, k2, oc.hp(), og.down().data(), qn, attn_check::attn_rtol(dt));
              compare_rel("paged_decode_attention lse", CT_F32, std::string(k2) + " (" + dname(dt) + ")", lc.hp(),
                          lg.down().data(), S * Hq * Tq, 1e-4);
            }
            if (ws) cudaFree(ws);
          }
        }
      }
    }
  }
}

// ------------------------------------------------------------------ GEMM (cuBLAS, as the engine calls it)
static void check_gemm() {
#if HAVE_CUBLAS
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    record("gemm (cuBLAS)", "-", "cublasCreate", 0, 0, false, "cublasCreate failed");
    return;
  }
  struct GC { int64_t batch, m, n, k; int ta, tb; const char* name; };
  const GC gc[] = {{1, 37, 129, 70, 0, 0, "[37,70]x[70,129]"},  {3, 33, 65, 257, 0, 1, "batch 3 [33,257]x[65,257]^T"},
                   {2, 1, 1000, 300, 1, 0, "batch 2 [300,1]^T x[300,1000]"}, {1, 128, 128, 1, 0, 0, "k=1"}};
  struct DT { int dt; cudaDataType_t t; cublasComputeType_t c; };
  const DT dts[] = {{CT_F32, CUDA_R_32F, CUBLAS_COMPUTE_32F},
                    {CT_F64, CUDA_R_64F, CUBLAS_COMPUTE_64F},
                    {CT_BF16, CUDA_R_16BF, CUBLAS_COMPUTE_32F},
                    {CT_F16, CUDA_R_16F, CUBLAS_COMPUTE_32F}};
  for (const DT& d : dts) {
    for (const GC& c : gc) {
      const int64_t ar = c.ta ? c.k : c.m, ac = c.ta ? c.m : c.k, br = c.tb ? c.n : c.k, bc = c.tb ? c.k : c.n;
      Buf A(d.dt, c.batch * ar * ac), B(d.dt, c.batch * br * bc), C(d.dt, c.batch * c.m * c.n);
      A.fill_random();
      B.fill_random();
      C.fill_random();  // beta = 0.5 reads it
      const double alpha = 1.25, beta = 0.5;
      std::vector<uint8_t> ref = C.h;
      int a = cpu_gemm(d.dt, c.ta, c.tb, c.batch, c.m, c.n, c.k, alpha, A.hp(), ac, ar * ac, B.hp(), bc, br * bc, beta,
                       ref.data(), c.n, c.m * c.n);
      // row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands
      cublasStatus_t cs;
      if (d.dt == CT_F64) {
        const double al = alpha, be = beta;
        cs = cublasGemmStridedBatchedEx(h, c.tb ? CUBLAS_OP_T : CUBLAS_OP_N, c.ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)c.n,
                                        (int)c.m, (int)c.k, &al, B.d, d.t, (int)bc, br * bc, A.d, d.t, (int)ac, ar * ac,
                                        &be, C.d, d.t, (int)c.n, c.m * c.n, (int)c.batch, d.c, CUBLAS_GEMM_DEFAULT);
      } else {
        const float al = (float)alpha, be = (float)beta;
        cs = cublasGemmStridedBatchedEx(h, c.tb ? CUBLAS_OP_T : CUBLAS_OP_N, c.ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)c.n,
                                        (int)c.m, (int)c.k, &al, B.d, d.t, (int)bc, br * bc, A.d, d.t, (int)ac, ar * ac,
                                        &be, C.d, d.t, (int)c.n, c.m * c.n, (int)c.batch, d.c, CUBLAS_GEMM_DEFAULT);
      }
      if (a != CT_OK || cs != CUBLAS_STATUS_SUCCESS) {
        record("gemm (cuBLAS)", dname(d.dt), c.name, 0, 0, false,
               "cpu status " + std::to_string(a) + " cuBLAS status " + std::to_string((int)cs));
        continue;
      }
      // k products summed in different orders: sqrt(k) ulp of the terms' scale
      const double tol = (d.dt == CT_F64 ? 1e-13 : 1e-6) * std::sqrt((double)c.k) + rel_tol(d.dt);
      compare_rel("gemm (cuBLAS)", d.dt, c.name, ref.data(), C.down().data(), c.batch * c.m * c.n, tol);
    }
  }
  cublasDestroy(h);
#else
  record("gemm (cuBLAS)", "-", "-", 0, 0, false, "built without cuBLAS headers: matmul unchecked");
#endif
}

// ------------------------------------------------------------------ runtime calls not in check_runtime()
static void check_runtime_more() {
  record("built", "-", "ct_cuda_built() == 1 (not the stub)", 0, 0, ct_cuda_built() == 1, "");
  int dev = -1;
  bool ok = ct_cuda_set_device(0) == CT_OK && ct_cuda_get_device(&dev) == CT_OK && dev == 0;
  record("set_device/get_device", "-", "device 0", 0, 0, ok, ok ? "" : ct_cuda_last_error());
  int64_t free_b = 0, total_b = 0;
  ok = ct_cuda_mem_info(&free_b, &total_b) == CT_OK && free_b > 0 && total_b >= free_b;
  record("mem_info", "-", "0 < free <= total", 0, 0, ok, ok ? "" : ct_cuda_last_error());
  // pinned host memory, an async copy on a stream, an event between two streams
  int64_t hp = 0, dp = 0, s1 = 0, s2 = 0, e0 = 0, e1 = 0;
  const int64_t bytes = 4 << 20;
  ok = ct_cuda_malloc_host(bytes, &hp) == CT_OK && hp != 0 && ct_cuda_malloc(bytes, &dp) == CT_OK;
  ok = ok && ct_cuda_stream_create(&s1) == CT_OK && ct_cuda_stream_create(&s2) == CT_OK;
  ok = ok && ct_cuda_event_create(&e0) == CT_OK && ct_cuda_event_create(&e1) == CT_OK;
  bool data_ok = false;
  float ms = -1;
  if (ok) {
    uint8_t* h = (uint8_t*)(intptr_t)hp;
    for (int64_t i = 0; i < bytes; ++i) h[i] = (uint8_t)(i * 13 + 1);
    ok = ct_cuda_event_record(e0, s1) == CT_OK &&
         ct_cuda_memcpy(dp, hp, bytes, CT_MEMCPY_HOST_TO_DEVICE, s1) == CT_OK &&
         ct_cuda_event_record(e1, s1) == CT_OK && ct_cuda_stream_wait_event(s2, e1) == CT_OK &&
         ct_cuda_memset(dp, 0x7F, 16, s2) == CT_OK &&  // ordered after the copy by the event
         ct_cuda_stream_synchronize(s2) == CT_OK && ct_cuda_event_synchronize(e1) == CT_OK &&
         ct_cuda_event_elapsed_ms(e0, e1, &ms) == CT_OK && ct_cuda_device_synchronize() == CT_OK;
    std::vector<uint8_t> back(bytes);
    if (ok) CUDA_OK(cudaMemcpy(back.data(), (void*)(intptr_t)dp, bytes, cudaMemcpyDeviceToHost));
    data_ok = ok;
    for (int64_t i = 0; i < bytes && data_ok; ++i) data_ok = back[i] == (i < 16 ? 0x7F : h[i]);
  }
  record("malloc_host/events/stream_wait_event", "-", "4 MiB pinned copy, then memset ordered by an event", 0, 0,
         ok && data_ok && ms >= 0, ok ? (data_ok ? "" : "data mismatch") : ct_cuda_last_error());
  if (e0) ct_cuda_event_destroy(e0);
  if (e1) ct_cuda_event_destroy(e1);
  if (s1) ct_cuda_stream_destroy(s1);
  if (s2) ct_cuda_stream_destroy(s2);
  if (dp) ct_cuda_free(dp);
  record("free_host", "-", "pinned 4 MiB", 0, 0, hp != 0 && ct_cuda_free_host(hp) == CT_OK, "");
}

}  // namespace train_check

static void check_training() {
  train_check::check_runtime_more();
  train_check::check_norm_backward();
  train_check::check_index_add();
  train_check::check_cross_entropy();
  train_check::check_optim();
  train_check::check_kvcache();
  train_check::check_gemm();
}
