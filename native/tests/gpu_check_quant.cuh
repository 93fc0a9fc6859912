/* GPU check for the quantization family (quant.h): included by gpu_check.cu before main(). Every
 * ct_cuda_* kernel against its ct_cpu_* twin on fresh random inputs: quantize (int8, uint8,
 * int32, fp8 E4M3/E5M2) per tensor, per channel and per group, dequantize, requantize and dynamic
 * quantization, and the int8 GEMM (packing, int32 / float32 / int8 / uint8 epilogues) on odd shapes.
 * The scalar math is shared (native/shared/quant_math.h) and the GEMM sums are exact integers, so
 * every output must be bit-identical. */
#pragma once

#include "cortado/quant.h"

/* A ct_tensor over `data` with a contiguous shape. */
static ct_tensor quant_desc(void* data, int dt, std::initializer_list<int64_t> dims) {
  ct_tensor t{};
  t.data = data;
  t.dtype = dt;
  t.ndim = (int)dims.size();
  int d = 0;
  for (int64_t v : dims) t.shape[d++] = v;
  int64_t s = 1;
  for (int k = t.ndim - 1; k >= 0; --k) {
    t.strides[k] = s;
    s *= t.shape[k];
  }
  return t;
}

struct QuantCase {
  int axis;        // -1 per tensor
  int64_t group;   // 1 per channel
  const char* name;
};

static void check_quant() {
  const int64_t R = 6, C = 40;  // data [6, 40]
  const QuantCase cases[] = {{-1, 1, "per tensor"}, {0, 1, "per channel axis 0"}, {1, 1, "per channel axis 1"},
                             {1, 8, "per group 8 along axis 1"}, {0, 3, "per group 3 along axis 0"}};
  for (const QuantCase& qc : cases) {
    // parameter count and strides
    int64_t np = 1, strides[2] = {0, 0};
    if (qc.axis == 0 && qc.group == 1) { np = R; strides[0] = 1; }
    if (qc.axis == 1 && qc.group == 1) { np = C; strides[1] = 1; }
    if (qc.axis == 1 && qc.group > 1) { np = R * (C / qc.group); strides[0] = C / qc.group; strides[1] = 1; }
    if (qc.axis == 0 && qc.group > 1) { np = (R / qc.group) * C; strides[0] = C; strides[1] = 1; }
    Buf scale(CT_F32, np), zp(CT_I32, np), x(CT_F32, R * C);
    for (int64_t i = 0; i < np; ++i) {
      ((float*)scale.hp())[i] = (float)unif(0.01, 0.2);
      ((int32_t*)zp.hp())[i] = (int32_t)irand(-20, 20);
    }
    scale.up();
    zp.up();
    x.fill_random(0);
    for (int dt : {CT_I8, CT_U8, CT_I32, CT_F8E4M3, CT_F8E5M2}) {
      const bool fp8 = dt == CT_F8E4M3 || dt == CT_F8E5M2;
      const int32_t qmin = dt == CT_I8 ? -128 : dt == CT_U8 ? 0 : dt == CT_I32 ? -100000 : 0;
      const int32_t qmax = dt == CT_I8 ? 127 : dt == CT_U8 ? 255 : dt == CT_I32 ? 100000 : 0;
      const int edt = fp8 ? CT_U8 : dt;  // compared as raw codes
      ct_quant_map mh{}, md{};
      mh.scale = scale.hp();
      mh.zero_point = fp8 ? nullptr : zp.hp();
      mh.strides[0] = strides[0];
      mh.strides[1] = strides[1];
      mh.group = qc.group;
      mh.axis = qc.axis;
      md = mh;
      md.scale = scale.d;
      md.zero_point = fp8 ? nullptr : zp.d;
      const std::string kase = std::string(qc.name) + " [6,40] " + (dt == CT_F8E4M3 ? "e4m3" : dt == CT_F8E5M2 ? "e5m2" : dname(dt));
      Buf qc_(edt, R * C), qg(edt, R * C);
      ct_tensor xh = quant_desc(x.hp(), CT_F32, {R, C}), xd = quant_desc(x.d, CT_F32, {R, C});
      ct_tensor yh = quant_desc(qc_.hp(), dt, {R, C}), yd = quant_desc(qg.d, dt, {R, C});
      int a = ct_cpu_quantize(&yh, &xh, &mh, qmin, qmax, 0);
      int b = ct_cuda_quantize(&yd, &xd, &md, qmin, qmax, 0);
      if (!status_ok("quantize", edt, kase, a, b)) continue;
      compare("quantize", edt, kase, qc_.hp(), qg.down().data(), R * C, 0, 0);
      // dequantize the CPU's codes on both sides
      qg.h = qc_.h;
      qg.up();
      Buf fc(CT_F32, R * C), fg(CT_F32, R * C);
      ct_tensor qh = quant_desc(qc_.hp(), dt, {R, C}), qd = quant_desc(qg.d, dt, {R, C});
      ct_tensor fh = quant_desc(fc.hp(), CT_F32, {R, C}), fd = quant_desc(fg.d, CT_F32, {R, C});
      a = ct_cpu_dequantize(&fh, &qh, &mh, 0);
      b = ct_cuda_dequantize(&fd, &qd, &md, 0);
      if (status_ok("dequantize", CT_F32, kase, a, b)) compare("dequantize", CT_F32, kase, fc.hp(), fg.down().data(), R * C, 0, 0);
      // requantize to int8 per tensor with scale 0.05, zero point 3
      Buf s2(CT_F32, 1), z2(CT_I32, 1);
      ((float*)s2.hp())[0] = 0.05f;
      ((int32_t*)z2.hp())[0] = 3;
      s2.up();
      z2.up();
      ct_quant_map oh{}, od{};
      oh.scale = s2.hp();
      oh.zero_point = z2.hp();
      oh.group = 1;
      oh.axis = -1;
      od = oh;
      od.scale = s2.d;
      od.zero_point = z2.d;
      Buf rc(CT_I8, R * C), rg(CT_I8, R * C);
      ct_tensor rh = quant_desc(rc.hp(), CT_I8, {R, C}), rd = quant_desc(rg.d, CT_I8, {R, C});
      a = ct_cpu_requantize(&rh, &qh, &mh, &oh, -128, 127, 0);
      b = ct_cuda_requantize(&rd, &qd, &md, &od, -128, 127, 0);
      if (status_ok("requantize", CT_I8, kase, a, b)) compare("requantize", CT_I8, kase, rc.hp(), rg.down().data(), R * C, 0, 0);
    }
    // fake quantization on the grid [qmin, qmax] = [-8, 7] (4-bit: many values clip), forward and backward
    {
      ct_quant_map mh{}, md{};
      mh.scale = scale.hp();
      mh.zero_point = zp.hp();
      mh.strides[0] = strides[0];
      mh.strides[1] = strides[1];
      mh.group = qc.group;
      mh.axis = qc.axis;
      md = mh;
      md.scale = scale.d;
      md.zero_point = zp.d;
      const std::string kase = std::string(qc.name) + " [6,40] grid [-8,7]";
      Buf g(CT_F32, R * C), yc(CT_F32, R * C), yg(CT_F32, R * C), dxc(CT_F32, R * C), dxg(CT_F32, R * C),
          dsc(CT_F32, R * C), dsg(CT_F32, R * C);
      g.fill_random(0);
      ct_tensor xh = quant_desc(x.hp(), CT_F32, {R, C}), xd = quant_desc(x.d, CT_F32, {R, C});
      ct_tensor yh = quant_desc(yc.hp(), CT_F32, {R, C}), yd = quant_desc(yg.d, CT_F32, {R, C});
      int a = ct_cpu_fake_quantize(&yh, &xh, &mh, -8, 7, 0);
      int b = ct_cuda_fake_quantize(&yd, &xd, &md, -8, 7, 0);
      if (status_ok("fake_quantize", CT_F32, kase, a, b)) compare("fake_quantize", CT_F32, kase, yc.hp(), yg.down().data(), R * C, 1e-6, 1e-7);
      ct_tensor gh = quant_desc(g.hp(), CT_F32, {R, C}), gd = quant_desc(g.d, CT_F32, {R, C});
      ct_tensor dxh = quant_desc(dxc.hp(), CT_F32, {R, C}), dxd = quant_desc(dxg.d, CT_F32, {R, C});
      ct_tensor dsh = quant_desc(dsc.hp(), CT_F32, {R, C}), dsd = quant_desc(dsg.d, CT_F32, {R, C});
      a = ct_cpu_fake_quantize_backward(&dxh, &dsh, &gh, &xh, &mh, -8, 7, 0);
      b = ct_cuda_fake_quantize_backward(&dxd, &dsd, &gd, &xd, &md, -8, 7, 0);
      if (status_ok("fake_quantize_backward", CT_F32, kase, a, b)) {
        compare("fake_quantize_backward dx", CT_F32, kase, dxc.hp(), dxg.down().data(), R * C, 0, 0);
        compare("fake_quantize_backward ds", CT_F32, kase, dsc.hp(), dsg.down().data(), R * C, 1e-5, 1e-6);
      }
    }
  }
  // dynamic quantization: odd size, values of both signs
  for (int64_t n : {int64_t(1), int64_t(1001), int64_t(70001)}) {
    Buf x(CT_F32, n), yc(CT_U8, n), yg(CT_U8, n), sg(CT_F32, 1), zg(CT_U8, 1);
    x.fill_random(0);
    float sc = 0;
    uint8_t zc = 0;
    ct_tensor xh = quant_desc(x.hp(), CT_F32, {n}), xd = quant_desc(x.d, CT_F32, {n});
    ct_tensor yh = quant_desc(yc.hp(), CT_U8, {n}), yd = quant_desc(yg.d, CT_U8, {n});
    int a = ct_cpu_dynamic_quantize(&yh, &xh, &sc, &zc, 0);
    int b = ct_cuda_dynamic_quantize(&yd, &xd, (float*)sg.d, (uint8_t*)zg.d, 0);
    const std::string kase = "n=" + std::to_string(n);
    if (!status_ok("dynamic_quantize", CT_U8, kase, a, b)) continue;
    compare("dynamic_quantize y", CT_U8, kase, yc.hp(), yg.down().data(), n, 0, 0);
    compare("dynamic_quantize scale", CT_F32, kase, &sc, sg.down().data(), 1, 0, 0);
    compare("dynamic_quantize zero point", CT_U8, kase, &zc, zg.down().data(), 1, 0, 0);
  }
}

static void check_qgemm() {
  struct Shape { int64_t m, k, n; };
  // k % 4 != 0: the byte path of the tensor-core kernel; k % 4 == 0: its 32-bit A loads, one and several 64 x 64 tiles
  const Shape shapes[] = {{5, 7, 3}, {70, 301, 100}, {1, 1, 1}, {9, 0, 4}, {64, 96, 64}, {130, 256, 65}};
  for (const Shape& sh : shapes) {
    const int64_t kp = (sh.k + 3) / 4 * 4, np = (sh.n + 31) / 32 * 32;
    Buf b(CT_I8, sh.k * sh.n), a(CT_U8, sh.m * sh.k), zb(CT_I32, sh.n), sc(CT_F32, sh.n), bias(CT_F32, sh.n);
    for (int64_t i = 0; i < sh.k * sh.n; ++i) ((int8_t*)b.hp())[i] = (int8_t)irand(-128, 127);
    b.up();
    for (int64_t i = 0; i < sh.m * sh.k; ++i) ((uint8_t*)a.hp())[i] = (uint8_t)irand(0, 255);
    a.up();
    for (int64_t j = 0; j < sh.n; ++j) {
      ((int32_t*)zb.hp())[j] = (int32_t)irand(-10, 10);
      ((float*)sc.hp())[j] = (float)unif(1e-5, 1e-4);
      ((float*)bias.hp())[j] = (float)unif(-3, 3);
    }
    zb.up();
    sc.up();
    bias.up();
    const std::string kase = "[" + std::to_string(sh.m) + ", " + std::to_string(sh.k) + "] x [" + std::to_string(sh.k) +
                             ", " + std::to_string(sh.n) + "]";
    Buf pc(CT_I8, std::max<int64_t>(1, kp * np)), pg(CT_I8, std::max<int64_t>(1, kp * np)), cc(CT_I32, sh.n), cg(CT_I32, sh.n);
    int s1 = ct_cpu_qgemm_pack_b((const int8_t*)b.hp(), sh.k, sh.n, sh.n, 1, (int8_t*)pc.hp(), (int32_t*)cc.hp(), 0);
    int s2 = ct_cuda_qgemm_pack_b((const int8_t*)b.d, sh.k, sh.n, sh.n, 1, (int8_t*)pg.d, (int32_t*)cg.d, 0);
    if (!status_ok("qgemm_pack_b", CT_I8, kase, s1, s2)) continue;
    compare("qgemm_pack_b packed", CT_I8, kase, pc.hp(), pg.down().data(), kp * np, 0, 0);
    compare("qgemm_pack_b colsum", CT_I32, kase, cc.hp(), cg.down().data(), sh.n, 0, 0);
    // (output, activation): the exact epilogues bit for bit; GELU (the CPU's vectorized float32
    // form against CUDA's erfcf) within 1e-6 relative
    const int cases[][2] = {{CT_I32, CT_ACTIVATION_NONE}, {CT_F32, CT_ACTIVATION_NONE}, {CT_I8, CT_ACTIVATION_NONE},
                            {CT_U8, CT_ACTIVATION_RELU}, {CT_BF16, CT_ACTIVATION_RELU}, {CT_F32, CT_ACTIVATION_GELU}};
    for (const auto& oa : cases) {
      const int out = oa[0];
      Buf oc(out, sh.m * sh.n), og(out, sh.m * sh.n);
      ct_qgemm_args h{};
      h.a = a.hp();
      h.b_packed = pc.hp();
      h.b_colsum = cc.hp();
      h.b_zero_point = zb.hp();
      h.scale = sc.hp();
      h.bias = bias.hp();
      h.c = oc.hp();
      h.m = sh.m;
      h.n = sh.n;
      h.k = sh.k;
      h.lda = sh.k;
      h.ldc = sh.n;
      h.a_zero_point = 131;
      h.out_dtype = out;
      h.activation = oa[1];
      h.out_zero_point = out == CT_I8 ? -4 : out == CT_U8 ? 100 : 0;
      ct_qgemm_args d = h;
      d.a = a.d;
      d.b_packed = pg.d;
      d.b_colsum = cg.d;
      d.b_zero_point = zb.d;
      d.scale = sc.d;
      d.bias = bias.d;
      d.c = og.d;
      int x1 = ct_cpu_qgemm(&h, 0);
      int x2 = ct_cuda_qgemm(&d, 0);
      const bool gelu = oa[1] == CT_ACTIVATION_GELU;
      const std::string k2 = gelu ? kase + " gelu" : kase;
      if (status_ok("qgemm", out, k2, x1, x2))
        compare("qgemm", out, k2, oc.hp(), og.down().data(), sh.m * sh.n, gelu ? 1e-6 : 0, gelu ? 1e-6 : 0);
    }
  }
}
