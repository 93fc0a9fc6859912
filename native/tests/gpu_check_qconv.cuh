/* GPU check of the int8 convolution (quant_conv.h): included by gpu_check.cu before main().
 * ct_cuda_qconv2d against ct_cpu_qconv2d on random NHWC inputs and filters packed by the CPU
 * packing (per group), for every output dtype: a 3x3 padded convolution, stride / dilation /
 * asymmetric padding on a 3x2 kernel, groups, depthwise (the CPU's direct kernel) and a depthwise
 * with channel multiplier 2. The sums are exact integers and the epilogue shared
 * (native/shared/quant_conv_math.h), so every output must be bit-identical. */
#pragma once

#include "cortado/quant.h"
#include "cortado/quant_conv.h"

static void check_qconv() {
  struct Case {
    int64_t n, h, w, c, oc, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, groups;
    const char* name;
  };
  const Case cases[] = {{2, 9, 8, 5, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, "3x3 pad 1"},
                        {1, 11, 10, 4, 6, 3, 2, 2, 1, 1, 0, 2, 1, 2, 1, 1, "3x2 stride 2/1 dilation 2/1 pad 1/0/2/1"},
                        {2, 6, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, "groups 2"},
                        {2, 9, 9, 40, 40, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 40, "depthwise 40"},
                        {1, 7, 6, 3, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3, "depthwise multiplier 2"}};
  for (const Case& cs : cases) {
    const int64_t cg = cs.c / cs.groups, og = cs.oc / cs.groups, k = cs.kh * cs.kw * cg;
    const int64_t kp = (k + 3) / 4 * 4, np = (og + 31) / 32 * 32, gb = kp * np;
    const int64_t oh = (cs.h + cs.pt + cs.pb - cs.dh * (cs.kh - 1) - 1) / cs.sh + 1;
    const int64_t ow = (cs.w + cs.pl + cs.pr - cs.dw * (cs.kw - 1) - 1) / cs.sw + 1;
    Buf x(CT_U8, cs.n * cs.h * cs.w * cs.c), wp(CT_I8, cs.groups * gb), colsum(CT_I32, cs.oc), zw(CT_I32, cs.oc),
        sc(CT_F32, cs.oc), bias(CT_F32, cs.oc);
    for (int64_t i = 0; i < x.n; ++i) ((uint8_t*)x.hp())[i] = (uint8_t)irand(0, 255);
    x.up();
    // B_g [k, og] from random filters, packed on the CPU group by group
    std::vector<int8_t> bg((size_t)std::max<int64_t>(1, k * og));
    for (int64_t grp = 0; grp < cs.groups; ++grp) {
      for (auto& v : bg) v = (int8_t)irand(-128, 127);
      ct_cpu_qgemm_pack_b(bg.data(), k, og, og, 1, (int8_t*)wp.hp() + grp * gb, (int32_t*)colsum.hp() + grp * og, 0);
    }
    wp.up();
    colsum.up();
    for (int64_t j = 0; j < cs.oc; ++j) {
      ((int32_t*)zw.hp())[j] = (int32_t)irand(-10, 10);
      ((float*)sc.hp())[j] = (float)unif(1e-5, 1e-4);
      ((float*)bias.hp())[j] = (float)unif(-3, 3);
    }
    zw.up();
    sc.up();
    bias.up();
    for (int out : {CT_I32, CT_F32, CT_BF16, CT_I8, CT_U8}) {
      Buf yc(out, cs.n * oh * ow * cs.oc), yg(out, cs.n * oh * ow * cs.oc);
      ct_qconv_args h{};
      h.x = x.hp();
      h.w_packed = wp.hp();
      h.w_colsum = colsum.hp();
      h.w_zero_point = zw.hp();
      h.scale = sc.hp();
      h.bias = bias.hp();
      h.y = yc.hp();
      h.n = cs.n; h.h = cs.h; h.w = cs.w; h.c = cs.c; h.oc = cs.oc; h.kh = cs.kh; h.kw = cs.kw; h.oh = oh; h.ow = ow;
      h.stride_h = cs.sh; h.stride_w = cs.sw; h.pad_h = cs.pt; h.pad_w = cs.pl; h.dil_h = cs.dh; h.dil_w = cs.dw;
      h.groups = cs.groups;
      h.x_zero_point = 77;
      h.out_dtype = out;
      h.activation = out == CT_U8 || out == CT_F32 || out == CT_BF16 ? CT_ACTIVATION_RELU : CT_ACTIVATION_NONE;
      h.out_zero_point = out == CT_I8 ? -4 : out == CT_U8 ? 100 : 0;
      ct_qconv_args d = h;
      d.x = x.d;
      d.w_packed = wp.d;
      d.w_colsum = colsum.d;
      d.w_zero_point = zw.d;
      d.scale = sc.d;
      d.bias = bias.d;
      d.y = yg.d;
      int s1 = ct_cpu_qconv2d(&h, 0);
      int s2 = ct_cuda_qconv2d(&d, 0);
      if (status_ok("qconv2d", out, cs.name, s1, s2))
        compare("qconv2d", out, cs.name, yc.hp(), yg.down().data(), cs.n * oh * ow * cs.oc, 0, 0);
    }
  }
}
