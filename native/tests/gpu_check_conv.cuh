/* GPU check for the conv family: included by gpu_check.cu before main().
 * check_conv(): ct_cuda_conv_{forward,backward_data,backward_weight} (AUTO, and IMPLICIT_GEMM /
 * REFERENCE where they differ) against ct_cpu_conv_* REFERENCE in float64 on the same operands
 * (rounded to the tested dtype first), both layouts, F32 / BF16 / F16 / F64.
 * Tolerance: |ref - got| <= r |ref| + r/4 max|ref|, r = 4e-3 F32 (TF32 inputs), 1.6e-2 BF16,
 * 4e-3 F16, 1e-10 F64; weight gradients 2r. Plus a bit-identity check of two backward-weight runs.
 * bench_conv(): ResNet-50 shapes at batch 32 + depthwise, bf16 NHWC, AUTO. */
#pragma once
#include "cortado/conv.h"

namespace conv_check {

struct Shape {
  const char* name;
  int64_t N, C, K, G;
  int64_t in[3], k[3], s[3], d[3], pb[3], pa[3];
};

static void geometry(const Shape& sh, int64_t* g) {
  g[0] = sh.N; g[1] = sh.C; g[2] = sh.K; g[3] = sh.G;
  for (int i = 0; i < 3; ++i) {
    g[4 + i] = sh.in[i]; g[7 + i] = sh.k[i]; g[10 + i] = sh.s[i]; g[13 + i] = sh.d[i];
    g[16 + i] = sh.pb[i]; g[19 + i] = sh.pa[i];
    g[22 + i] = (sh.in[i] + sh.pb[i] + sh.pa[i] - sh.d[i] * (sh.k[i] - 1) - 1) / sh.s[i] + 1;
  }
}

static const Shape kShapes[] = {
    {"3x3 C16 K24 9x11", 2, 16, 24, 1, {1, 9, 11}, {1, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 1, 1}, {0, 1, 1}},
    {"7x7 s2 C3 K16 23x19", 2, 3, 16, 1, {1, 23, 19}, {1, 7, 7}, {1, 2, 2}, {1, 1, 1}, {0, 3, 3}, {0, 3, 3}},
    {"3x3 s2 d2 asym C12 K20", 2, 12, 20, 1, {1, 13, 14}, {1, 3, 3}, {1, 2, 2}, {1, 2, 2}, {0, 2, 3}, {0, 1, 0}},
    {"1x1 C8 K136 7x5", 3, 8, 136, 1, {1, 7, 5}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {0, 0, 0}},
    {"groups 2 C16 K32", 2, 16, 32, 2, {1, 8, 9}, {1, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 1, 1}, {0, 1, 1}},
    {"depthwise 24 s2", 2, 24, 24, 24, {1, 15, 16}, {1, 3, 3}, {1, 2, 2}, {1, 1, 1}, {0, 1, 1}, {0, 1, 1}},
    {"conv1d k5 s2 d2", 2, 16, 8, 1, {1, 1, 37}, {1, 1, 5}, {1, 1, 2}, {1, 1, 2}, {0, 0, 3}, {0, 0, 1}},
    {"conv3d 3x3x3", 2, 8, 16, 1, {5, 6, 7}, {3, 3, 3}, {1, 2, 1}, {1, 1, 1}, {1, 1, 1}, {1, 0, 1}},
    {"odd C7 K9 5x3 batch1", 1, 7, 9, 1, {1, 10, 9}, {1, 5, 3}, {1, 1, 1}, {1, 1, 1}, {0, 4, 1}, {0, 1, 0}},
};

static double rel_of(int dt) {
  switch (dt) {
    case CT_F64: return 1e-10;
    case CT_BF16: return 1.6e-2;
    case CT_F16: return 4e-3;
    default: return 4e-3;
  }
}

/* Host float64 copy of a buffer's (rounded) values. */
static std::vector<double> as_f64(const Buf& b) {
  std::vector<double> r((size_t)b.n);
  for (int64_t i = 0; i < b.n; ++i) r[(size_t)i] = getv(b.h.data(), b.dt, i);
  return r;
}

/* Compares a device result (dtype dt) with a float64 reference, rounding the reference to dt. */
static void cmp(const char* kernel, int dt, const std::string& kase, const std::vector<double>& ref, const Buf& got,
                double r) {
  std::vector<uint8_t> refd((size_t)std::max<int64_t>(got.n * dsize(dt), 1));
  double scale = 0;
  for (int64_t i = 0; i < got.n; ++i) {
    setv(refd.data(), dt, i, ref[(size_t)i]);
    scale = std::max(scale, std::fabs(ref[(size_t)i]));
  }
  std::vector<uint8_t> g = got.down();
  compare(kernel, dt, kase, refd.data(), g.data(), got.n, r, r * 0.25 * scale);
}

static void run_case(const Shape& sh, int layout, int dt, int algo, int act) {
  int64_t g[CT_CONV_GEOMETRY_LEN];
  geometry(sh, g);
  const int64_t S = g[4] * g[5] * g[6], P = g[22] * g[23] * g[24], KS = g[7] * g[8] * g[9];
  const int64_t nx = sh.N * sh.C * S, ny = sh.N * sh.K * P, nw = sh.K * (sh.C / sh.G) * KS;
  Buf x(dt, nx), w(dt, nw), b(dt, sh.K), dy(dt, ny), y(dt, ny), dx(dt, nx), dw(dt, nw), db(dt, sh.K);
  x.fill_random(); w.fill_random(); b.fill_random(); dy.fill_random();
  y.fill_sentinel(); dx.fill_sentinel(); dw.fill_sentinel(); db.fill_sentinel();
  std::vector<double> xr = as_f64(x), wr = as_f64(w), br = as_f64(b), dyr = as_f64(dy);
  std::vector<double> yr((size_t)ny), dxr((size_t)nx), dwr((size_t)nw), dbr((size_t)sh.K);
  char kase[256];
  snprintf(kase, sizeof kase, "%s %s algo %d act %d", sh.name, layout == CT_LAYOUT_NHWC ? "NHWC" : "NCHW", algo, act);
  const double r = (dt == CT_F32 && algo == CT_CONV_ALGO_REFERENCE) ? 1e-5 : rel_of(dt);

  int cs = ct_cpu_conv_forward(CT_F64, layout, CT_CONV_ALGO_REFERENCE, g, xr.data(), wr.data(), br.data(), act,
                               yr.data(), 0);
  int gs = ct_cuda_conv_forward(dt, layout, algo, g, x.d, w.d, b.d, act, y.d, 0);
  if (status_ok("conv_forward", dt, kase, cs, gs)) cmp("conv_forward", dt, kase, yr, y, r);

  cs = ct_cpu_conv_backward_data(CT_F64, layout, CT_CONV_ALGO_REFERENCE, g, dyr.data(), wr.data(), dxr.data(), 0);
  gs = ct_cuda_conv_backward_data(dt, layout, algo, g, dy.d, w.d, dx.d, 0);
  if (status_ok("conv_backward_data", dt, kase, cs, gs)) cmp("conv_backward_data", dt, kase, dxr, dx, r);

  cs = ct_cpu_conv_backward_weight(CT_F64, layout, CT_CONV_ALGO_REFERENCE, g, xr.data(), dyr.data(), dwr.data(),
                                   dbr.data(), 0);
  gs = ct_cuda_conv_backward_weight(dt, layout, algo, g, x.d, dy.d, dw.d, db.d, 0);
  if (status_ok("conv_backward_weight", dt, kase, cs, gs)) {
    cmp("conv_backward_weight", dt, kase, dwr, dw, 2 * r);
    cmp("conv_backward_bias", dt, kase, dbr, db, 2 * r);
    // determinism: a second run must be bit-identical
    std::vector<uint8_t> first = dw.down();
    Buf dw2(dt, nw);
    gs = ct_cuda_conv_backward_weight(dt, layout, algo, g, x.d, dy.d, dw2.d, nullptr, 0);
    if (status_ok("conv_backward_weight repeat", dt, kase, CT_OK, gs))
      compare("conv_backward_weight repeat", dt, kase, first.data(), dw2.down().data(), nw, 0, 0);
  }
}

static void check_errors() {
  int64_t g[CT_CONV_GEOMETRY_LEN];
  geometry(kShapes[0], g);
  Buf x(CT_F32, 16);
  int st = ct_cuda_conv_forward(CT_F32, CT_LAYOUT_NHWC, CT_CONV_ALGO_AUTO, g, nullptr, x.d, nullptr, 0, x.d, 0);
  record("conv_forward null x", "f32", "CT_ERR_INVALID_ARG", 0, 0,
         st == CT_ERR_INVALID_ARG && strstr(ct_cuda_last_error(), " x ") != nullptr, ct_cuda_last_error());
  g[22] += 1;
  st = ct_cuda_conv_forward(CT_F32, CT_LAYOUT_NHWC, CT_CONV_ALGO_AUTO, g, x.d, x.d, nullptr, 0, x.d, 0);
  record("conv_forward bad oD", "f32", "CT_ERR_INVALID_ARG", 0, 0,
         st == CT_ERR_INVALID_ARG && strstr(ct_cuda_last_error(), "oD") != nullptr, ct_cuda_last_error());
  geometry(kShapes[0], g);
  st = ct_cuda_conv_forward(CT_I32, CT_LAYOUT_NHWC, CT_CONV_ALGO_AUTO, g, x.d, x.d, nullptr, 0, x.d, 0);
  record("conv_forward int32", "i32", "CT_ERR_UNSUPPORTED", 0, 0, st == CT_ERR_UNSUPPORTED, ct_cuda_last_error());
  st = ct_cuda_conv_forward(CT_F64, CT_LAYOUT_NHWC, CT_CONV_ALGO_IMPLICIT_GEMM, g, x.d, x.d, nullptr, 0, x.d, 0);
  record("conv_forward f64 implicit gemm", "f64", "CT_ERR_UNSUPPORTED", 0, 0, st == CT_ERR_UNSUPPORTED,
         ct_cuda_last_error());
}

}  // namespace conv_check

static void check_conv() {
  using namespace conv_check;
  const int dts[] = {CT_F32, CT_BF16, CT_F16, CT_F64};
  int i = 0;
  for (const Shape& sh : kShapes)
    for (int layout : {CT_LAYOUT_NCHW, CT_LAYOUT_NHWC})
      for (int dt : dts) {
        const int act = (i++) % 4;
        run_case(sh, layout, dt, CT_CONV_ALGO_AUTO, act);
        if (dt == CT_F32) run_case(sh, layout, dt, CT_CONV_ALGO_REFERENCE, act);
        if (dt == CT_BF16 && sh.G == sh.C && sh.K == sh.C) run_case(sh, layout, dt, CT_CONV_ALGO_IMPLICIT_GEMM, act);
      }
  check_errors();
}

static void bench_conv() {
  using namespace conv_check;
  const Shape shapes[] = {
      {"64->64 3x3 @56", 32, 64, 64, 1, {1, 56, 56}, {1, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 1, 1}, {0, 1, 1}},
      {"128->128 3x3 @28", 32, 128, 128, 1, {1, 28, 28}, {1, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 1, 1}, {0, 1, 1}},
      {"256->256 3x3 @14", 32, 256, 256, 1, {1, 14, 14}, {1, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 1, 1}, {0, 1, 1}},
      {"64->256 1x1 @56", 32, 64, 256, 1, {1, 56, 56}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {0, 0, 0}},
      {"3->64 7x7 s2 @224", 32, 3, 64, 1, {1, 224, 224}, {1, 7, 7}, {1, 2, 2}, {1, 1, 1}, {0, 3, 3}, {0, 3, 3}},
      {"dw 128 3x3 @56", 32, 128, 128, 128, {1, 56, 56}, {1, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 1, 1}, {0, 1, 1}},
  };
  printf("\n### Convolution (bf16, NHWC, batch 32, AUTO; FLOPs 2*N*K*C/g*kh*kw*oh*ow per pass)\n\n");
  printf("| shape | pass | cortado ms | cortado TFLOP/s | cuDNN ms | cuDNN TFLOP/s |\n|---|---|---|---|---|---|\n");
  const int dt = CT_BF16;
  for (const Shape& sh : shapes) {
    int64_t g[CT_CONV_GEOMETRY_LEN];
    geometry(sh, g);
    const int64_t S = g[4] * g[5] * g[6], P = g[22] * g[23] * g[24], KS = g[7] * g[8] * g[9];
    const int64_t nx = sh.N * sh.C * S, ny = sh.N * sh.K * P, nw = sh.K * (sh.C / sh.G) * KS;
    Buf x(dt, nx), w(dt, nw), dy(dt, ny), y(dt, ny), dx(dt, nx), dw(dt, nw);
    x.fill_random(); w.fill_random(); dy.fill_random();
    const double flops = 2.0 * sh.N * sh.K * (sh.C / sh.G) * KS * P;
    const char* passes[] = {"forward", "backward-data", "backward-weight"};
    for (int pass = 0; pass < 3; ++pass) {
      auto fn = [&]() {
        int st = pass == 0 ? ct_cuda_conv_forward(dt, CT_LAYOUT_NHWC, CT_CONV_ALGO_AUTO, g, x.d, w.d, nullptr, 0, y.d, 0)
                 : pass == 1 ? ct_cuda_conv_backward_data(dt, CT_LAYOUT_NHWC, CT_CONV_ALGO_AUTO, g, dy.d, w.d, dx.d, 0)
                             : ct_cuda_conv_backward_weight(dt, CT_LAYOUT_NHWC, CT_CONV_ALGO_AUTO, g, x.d, dy.d, dw.d,
                                                            nullptr, 0);
        must(st, passes[pass]);
      };
      const double ms = time_ms(fn);
      printf("| %s | %s | %.3f | %.1f | | |\n", sh.name, passes[pass], ms, flops / (ms * 1e-3) / 1e12);
    }
  }
  printf("\n(cuDNN columns: paste from scripts/gpu-conv-peer.py on the same machine.)\n");
}
