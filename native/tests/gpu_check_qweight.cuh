/* GPU check for the weight-only int4 / fp8 GEMM (quant_weight.h) and the binary kernels
 * (quant_binary.h): included by gpu_check.cu before main(). Every ct_cuda_* kernel against its
 * ct_cpu_* twin on fresh random inputs.
 *  - wq_pack: bit-identical packed bytes for int4 (signed, unsigned; a strided source) and fp8.
 *  - wq_gemm: every format x (f32, bf16) activations x (f32, bf16) outputs, on the GEMV (m <= 4)
 *    and both tensor-core tiles (m = 7, 16: NM = 2; m = 37: NM = 4), odd n (channels past the
 *    16-row tile), group 32 / 64 / k, with and without zero points and bias. The sums differ in
 *    order (and, for float32 x on the tensor cores, by the two-bfloat16 split of x, ~2^-17
 *    relative), so the tolerance is relative to the largest |y| of the case: 3e-5 for float32 y
 *    and one bfloat16 ulp (8e-3) for bfloat16 y; each tolerance must reject an all-zero output.
 *    Bad scales / zero points must give the CPU's status on both sides.
 *  - binarize, binary_gemm, binary_conv2d, sign_ste and its backward: integer popcounts and the
 *    same float epilogue, so every output must be bit-identical. */
#pragma once

#include "cortado/quant_binary.h"
#include "cortado/quant_weight.h"

static const char* wq_name(int f) {
  return f == CT_WQ_S4 ? "s4" : f == CT_WQ_U4 ? "u4" : f == CT_WQ_E4M3 ? "e4m3" : "e5m2";
}

/* A random finite fp8 code of the format. */
static uint8_t wq_fp8_code(int format) {
  for (;;) {
    const uint8_t c = (uint8_t)irand(0, 255);
    if (format == CT_WQ_E4M3 && (c & 0x7f) == 0x7f) continue;           // NaN
    if (format == CT_WQ_E5M2 && (c & 0x7c) == 0x7c) continue;           // inf / NaN
    return c;
  }
}

static void check_wq() {
  struct Shape { int64_t m, n, k, group; };
  const Shape shapes[] = {{1, 37, 256, 32}, {3, 20, 128, 64}, {4, 9, 96, 96}, {7, 37, 128, 32}, {16, 16, 64, 64},
                          {37, 45, 192, 64}};
  for (int format : {CT_WQ_S4, CT_WQ_U4, CT_WQ_E4M3, CT_WQ_E5M2}) {
    const bool int4 = format == CT_WQ_S4 || format == CT_WQ_U4;
    for (const Shape& sh : shapes) {
      const int64_t m = sh.m, n = sh.n, k = sh.k, G = k / sh.group, pb = int4 ? n * k / 2 : n * k;
      // codes q [n, k] stored transposed (ld_n = 1, ld_k = n) for int4, contiguous for fp8
      const int qdt = format == CT_WQ_S4 ? CT_I8 : CT_U8;
      const int pack_dt = format == CT_WQ_E4M3 ? CT_F8E4M3 : format == CT_WQ_E5M2 ? CT_F8E5M2 : qdt;
      Buf q(CT_U8, n * k), pc(CT_U8, pb), pg(CT_U8, pb);
      const int64_t ld_n = int4 ? 1 : k, ld_k = int4 ? n : 1;
      for (int64_t j = 0; j < n; ++j)
        for (int64_t kk = 0; kk < k; ++kk) {
          const int64_t at = j * ld_n + kk * ld_k;
          if (format == CT_WQ_S4) ((int8_t*)q.hp())[at] = (int8_t)irand(-8, 7);
          else if (format == CT_WQ_U4) ((uint8_t*)q.hp())[at] = (uint8_t)irand(0, 15);
          else ((uint8_t*)q.hp())[at] = wq_fp8_code(format);
        }
      q.up();
      char kase[160];
      snprintf(kase, sizeof kase, "%s m=%lld n=%lld k=%lld g=%lld", wq_name(format), (long long)m, (long long)n,
               (long long)k, (long long)sh.group);
      int a = ct_cpu_wq_pack(q.hp(), pack_dt, n, k, ld_n, ld_k, format, (uint8_t*)pc.hp(), 0);
      int b = ct_cuda_wq_pack(q.d, pack_dt, n, k, ld_n, ld_k, format, (uint8_t*)pg.d, 0);
      if (!status_ok("wq_pack", CT_U8, kase, a, b)) continue;
      compare("wq_pack", CT_U8, kase, pc.hp(), pg.down().data(), pb, 0, 0);
      pg.h = pc.h;
      pg.up();
      Buf scale(CT_F32, n * G), zp(CT_I32, n * G), bias(CT_F32, n);
      for (int64_t p = 0; p < n * G; ++p) {
        ((float*)scale.hp())[p] = (float)unif(0.01, 0.1);
        ((int32_t*)zp.hp())[p] = (int32_t)(format == CT_WQ_S4 ? irand(-8, 7) : irand(0, 15));
      }
      scale.up();
      zp.up();
      bias.fill_random(0);
      const bool with_zp = int4 && (m % 2 == 1), with_bias = n % 2 == 1;
      for (int xdt : {CT_F32, CT_BF16})
        for (int ydt : {CT_F32, CT_BF16}) {
          Buf x(xdt, m * k), yc(ydt, m * n), yg(ydt, m * n);
          x.fill_random(0);
          ct_wq_args h{};
          h.x = x.hp();
          h.w_packed = pc.hp();
          h.scale = scale.hp();
          h.zero_point = with_zp ? zp.hp() : nullptr;
          h.bias = with_bias ? bias.hp() : nullptr;
          h.y = yc.hp();
          h.m = m;
          h.n = n;
          h.k = k;
          h.ldx = k;
          h.ldy = n;
          h.group = sh.group;
          h.format = format;
          h.x_dtype = xdt;
          h.y_dtype = ydt;
          ct_wq_args d = h;
          d.x = x.d;
          d.w_packed = pg.d;
          d.scale = scale.d;
          d.zero_point = with_zp ? zp.d : nullptr;
          d.bias = with_bias ? bias.d : nullptr;
          d.y = yg.d;
          std::string kk = std::string(kase) + " x " + dname(xdt) + (with_zp ? " zp" : "") + (with_bias ? " bias" : "");
          a = ct_cpu_wq_gemm(&h, 0);
          b = ct_cuda_wq_gemm(&d, 0);
          if (!status_ok("wq_gemm", ydt, kk, a, b)) continue;
          double ymax = 0;
          for (int64_t i = 0; i < m * n; ++i) ymax = std::max(ymax, std::fabs(getv(yc.hp(), ydt, i)));
          const double rtol = ydt == CT_F32 ? 3e-5 : 8e-3, atol = rtol * ymax;
          compare("wq_gemm", ydt, kk, yc.hp(), yg.down().data(), m * n, rtol, atol);
          require_zero_output_fails("wq_gemm", ydt, kk, yc.hp(), m * n, rtol, atol);
        }
    }
  }
  // bad parameters: a zero scale, and (int4) a zero point out of range, rejected by both
  {
    const int64_t n = 5, k = 64;
    Buf pk(CT_U8, n * k / 2), x(CT_F32, k), y(CT_F32, n), scale(CT_F32, n * 2), zp(CT_I32, n * 2);
    for (int64_t p = 0; p < n * 2; ++p) {
      ((float*)scale.hp())[p] = 0.05f;
      ((int32_t*)zp.hp())[p] = 3;
    }
    for (int bad = 0; bad < 2; ++bad) {
      if (bad == 0) ((float*)scale.hp())[7] = 0.0f;
      else {
        ((float*)scale.hp())[7] = 0.05f;
        ((int32_t*)zp.hp())[3] = 9;
      }
      scale.up();
      zp.up();
      pk.fill_random(0);
      x.fill_random(0);
      ct_wq_args h{};
      h.x = x.hp(); h.w_packed = pk.hp(); h.scale = scale.hp(); h.zero_point = zp.hp(); h.y = y.hp();
      h.m = 1; h.n = n; h.k = k; h.ldx = k; h.ldy = n; h.group = 32; h.format = CT_WQ_S4;
      h.x_dtype = CT_F32; h.y_dtype = CT_F32;
      ct_wq_args d = h;
      d.x = x.d; d.w_packed = pk.d; d.scale = scale.d; d.zero_point = zp.d; d.y = y.d;
      const int sa = ct_cpu_wq_gemm(&h, 0), sb = ct_cuda_wq_gemm(&d, 0);
      record("wq_gemm", "f32", bad == 0 ? "zero scale rejected" : "zero point 9 (int4) rejected", 0, 0,
             sa == CT_ERR_INVALID_ARG && sb == CT_ERR_INVALID_ARG,
             std::string("cpu '") + (sa ? ct_cpu_last_error() : "") + "' gpu '" + (sb ? ct_cuda_last_error() : "") + "'");
    }
  }
}

static void check_binary_kernels() {
  // binarize: rows of k floats (a row stride ldx > k), exact bits
  for (int64_t k : {1, 63, 64, 130}) {
    const int64_t rows = 5, ldx = k + 3, kw = (k + 63) / 64;
    Buf x(CT_F32, rows * ldx), bc(CT_U8, rows * kw * 8), bg(CT_U8, rows * kw * 8);
    x.fill_random(0);
    ((float*)x.hp())[0] = 0.0f;  // sign(0) = +1
    x.up();
    const std::string kase = "rows=5 k=" + std::to_string(k);
    const int a = ct_cpu_binarize((const float*)x.hp(), rows, k, ldx, (uint64_t*)bc.hp(), 0);
    const int b = ct_cuda_binarize((const float*)x.d, rows, k, ldx, (uint64_t*)bg.d, 0);
    if (status_ok("binarize", CT_U8, kase, a, b)) compare("binarize", CT_U8, kase, bc.hp(), bg.down().data(), rows * kw * 8, 0, 0);
  }
  // GEMM: odd shapes around the 64 x 64 tile and the 8-word k step, alpha / beta on and off
  struct G { int64_t m, n, k; bool alpha, beta; };
  for (const G& s : {G{1, 1, 1, false, false}, G{5, 70, 100, true, false}, G{67, 65, 640, true, true},
                     G{130, 3, 577, false, true}}) {
    const int64_t kw = (s.k + 63) / 64;
    Buf a(CT_U8, s.m * kw * 8), b(CT_U8, s.n * kw * 8), alpha(CT_F32, s.n), beta(CT_F32, s.m);
    Buf yc(CT_F32, s.m * s.n), yg(CT_F32, s.m * s.n);
    for (auto* buf : {&a, &b}) {
      for (auto& v : buf->h) v = (uint8_t)irand(0, 255);  // padding bits random too: they must be ignored
      buf->up();
    }
    alpha.fill_random(1);
    beta.fill_random(1);
    ct_bgemm_args h{};
    h.a = a.hp(); h.b = b.hp(); h.alpha = s.alpha ? alpha.hp() : nullptr; h.beta = s.beta ? beta.hp() : nullptr;
    h.y = yc.hp(); h.m = s.m; h.n = s.n; h.k = s.k;
    ct_bgemm_args d = h;
    d.a = a.d; d.b = b.d; d.alpha = s.alpha ? alpha.d : nullptr; d.beta = s.beta ? beta.d : nullptr; d.y = yg.d;
    char kase[96];
    snprintf(kase, sizeof kase, "m=%lld n=%lld k=%lld%s%s", (long long)s.m, (long long)s.n, (long long)s.k,
             s.alpha ? " alpha" : "", s.beta ? " beta" : "");
    const int sa = ct_cpu_binary_gemm(&h, 0), sb = ct_cuda_binary_gemm(&d, 0);
    if (status_ok("binary_gemm", CT_F32, kase, sa, sb)) compare("binary_gemm", CT_F32, kase, yc.hp(), yg.down().data(), s.m * s.n, 0, 0);
  }
  // convolution: NHWC bits, stride and padding, c across a word boundary
  struct C { int64_t batch, h, w, c, cout, kh, kw, sh, sw, ph, pw; };
  for (const C& s : {C{2, 7, 6, 70, 5, 3, 3, 1, 1, 1, 1}, C{1, 9, 8, 64, 3, 3, 2, 2, 2, 0, 1}, C{3, 4, 4, 5, 33, 1, 1, 1, 1, 0, 0}}) {
    const int64_t cw = (s.c + 63) / 64, oh = (s.h + 2 * s.ph - s.kh) / s.sh + 1, ow = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
    Buf x(CT_U8, s.batch * s.h * s.w * cw * 8), w(CT_U8, s.cout * s.kh * s.kw * cw * 8), alpha(CT_F32, s.cout);
    const int64_t ny = s.batch * oh * ow * s.cout;
    Buf yc(CT_F32, ny), yg(CT_F32, ny);
    for (auto* buf : {&x, &w}) {
      for (auto& v : buf->h) v = (uint8_t)irand(0, 255);
      buf->up();
    }
    alpha.fill_random(1);
    ct_bconv_args h{};
    h.x = x.hp(); h.w = w.hp(); h.alpha = alpha.hp(); h.y = yc.hp();
    h.batch = s.batch; h.h = s.h; h.w_in = s.w; h.c = s.c; h.cout = s.cout; h.kh = s.kh; h.kw = s.kw;
    h.stride_h = s.sh; h.stride_w = s.sw; h.pad_h = s.ph; h.pad_w = s.pw; h.oh = oh; h.ow = ow;
    ct_bconv_args d = h;
    d.x = x.d; d.w = w.d; d.alpha = alpha.d; d.y = yg.d;
    char kase[128];
    snprintf(kase, sizeof kase, "x [%lld,%lld,%lld,%lld] w [%lld,%lld,%lld] s%lld p%lld", (long long)s.batch, (long long)s.h,
             (long long)s.w, (long long)s.c, (long long)s.cout, (long long)s.kh, (long long)s.kw, (long long)s.sh, (long long)s.ph);
    const int sa = ct_cpu_binary_conv2d(&h, 0), sb = ct_cuda_binary_conv2d(&d, 0);
    if (status_ok("binary_conv2d", CT_F32, kase, sa, sb)) compare("binary_conv2d", CT_F32, kase, yc.hp(), yg.down().data(), ny, 0, 0);
  }
  // a non-finite alpha is rejected by both
  {
    Buf a(CT_U8, 8), b(CT_U8, 16), alpha(CT_F32, 2), y(CT_F32, 2);
    ((float*)alpha.hp())[0] = 1.0f;
    ((float*)alpha.hp())[1] = INFINITY;
    alpha.up();
    ct_bgemm_args h{};
    h.a = a.hp(); h.b = b.hp(); h.alpha = alpha.hp(); h.y = y.hp(); h.m = 1; h.n = 2; h.k = 10;
    ct_bgemm_args d = h;
    d.a = a.d; d.b = b.d; d.alpha = alpha.d; d.y = y.d;
    const int sa = ct_cpu_binary_gemm(&h, 0), sb = ct_cuda_binary_gemm(&d, 0);
    record("binary_gemm", "f32", "alpha[1] = inf rejected", 0, 0, sa == CT_ERR_INVALID_ARG && sb == CT_ERR_INVALID_ARG,
           std::string("gpu '") + (sb ? ct_cuda_last_error() : "") + "'");
  }
  // sign with the straight-through estimator, every float dtype, exact
  for (int dt : {CT_F32, CT_F64, CT_F16, CT_BF16}) {
    const int64_t n = 1001;
    Buf x(dt, n), g(dt, n), yc(dt, n), yg(dt, n), dc(dt, n), dg(dt, n);
    x.fill_random(0);
    setv(x.hp(), dt, 0, 0.0);
    setv(x.hp(), dt, 1, 1.0);  // |x| <= 1 includes the edge
    setv(x.hp(), dt, 2, -1.0);
    x.up();
    g.fill_random(0);
    int a = ct_cpu_sign_ste(x.hp(), yc.hp(), dt, n, 0), b = ct_cuda_sign_ste(x.d, yg.d, dt, n, 0);
    if (status_ok("sign_ste", dt, "n=1001", a, b)) compare("sign_ste", dt, "n=1001", yc.hp(), yg.down().data(), n, 0, 0);
    a = ct_cpu_sign_ste_backward(g.hp(), x.hp(), dc.hp(), dt, n, 0);
    b = ct_cuda_sign_ste_backward(g.d, x.d, dg.d, dt, n, 0);
    if (status_ok("sign_ste_backward", dt, "n=1001", a, b))
      compare("sign_ste_backward", dt, "n=1001", dc.hp(), dg.down().data(), n, 0, 0);
  }
}
