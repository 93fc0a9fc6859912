/* GPU check for the pool family (pooling of pool.h and the batch norm of norm.h): included by
 * gpu_check.cu before main(). Every ct_cuda_* kernel against its ct_cpu_* twin on fresh random
 * inputs, float32 and float64, NCHW and NHWC. Max pooling (values, indices, dx) must be
 * bit-identical; average pooling 4x the dtype tolerance; batch norm 20x (float32 Welford vs
 * shifted float64 sums), dgamma/dbeta 100x (sums over N*S values). */
#pragma once

#include "cortado/conv.h"
#include "cortado/pool.h"

struct PoolCase {
  int64_t n, c, in[3], k[3], s[3], dil[3], p[3];
  const char* name;
};

/* conv.h geometry with symmetric padding; returns false when the kernel does not fit. */
static bool pool_geometry(const PoolCase& pc, int64_t* g) {
  for (int i = 0; i < CT_CONV_GEOMETRY_LEN; ++i) g[i] = 0;
  g[0] = pc.n;
  g[1] = g[2] = g[3] = pc.c;
  for (int d = 0; d < 3; ++d) {
    g[4 + d] = pc.in[d];
    g[7 + d] = pc.k[d];
    g[10 + d] = pc.s[d];
    g[13 + d] = pc.dil[d];
    g[16 + d] = g[19 + d] = pc.p[d];
    const int64_t span = pc.in[d] + 2 * pc.p[d] - pc.dil[d] * (pc.k[d] - 1) - 1;
    if (span < 0) return false;
    g[22 + d] = span / pc.s[d] + 1;
  }
  return true;
}

static void check_pool() {
  const PoolCase cases[] = {
      {2, 5, {1, 9, 11}, {1, 3, 3}, {1, 2, 2}, {1, 1, 1}, {0, 1, 1}, "2d [2,5,9,11] k3 s2 p1"},
      {3, 64, {1, 14, 14}, {1, 2, 2}, {1, 2, 2}, {1, 1, 1}, {0, 0, 0}, "2d [3,64,14,14] k2 s2"},
      {2, 3, {5, 6, 7}, {2, 3, 3}, {1, 2, 2}, {1, 1, 2}, {0, 1, 1}, "3d [2,3,5,6,7] k2x3x3 dil 1,1,2"},
      {2, 4, {1, 1, 17}, {1, 1, 7}, {1, 1, 3}, {1, 1, 1}, {0, 0, 3}, "1d [2,4,17] k7 s3 p3"},
      {2, 3, {1, 30, 29}, {1, 15, 15}, {1, 8, 8}, {1, 1, 1}, {0, 7, 7}, "2d [2,3,30,29] k15 (warp path)"},
      {1, 1, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, "size-1 [1,1,1,1] k1"},
  };
  const int dts[] = {CT_F32, CT_F64};
  for (int dt : dts) {
    for (int layout : {CT_LAYOUT_NCHW, CT_LAYOUT_NHWC}) {
      const std::string ln = layout == CT_LAYOUT_NCHW ? " NCHW" : " NHWC";
      for (const PoolCase& pc : cases) {
        int64_t g[CT_CONV_GEOMETRY_LEN];
        if (!pool_geometry(pc, g)) continue;
        const int64_t ni = pc.n * pc.c * pc.in[0] * pc.in[1] * pc.in[2];
        const int64_t no = pc.n * pc.c * g[22] * g[23] * g[24];
        const std::string kase = std::string(pc.name) + ln;
        // max pooling: a coarse grid of values (ties), bit-identical values, indices and dx
        Buf x(dt, ni), yc(dt, no), yg(dt, no), ic(CT_I64, no), ig(CT_I64, no);
        x.fill_random(3);
        yc.fill_sentinel();
        yg.fill_sentinel();
        int a = ct_cpu_maxpool_forward(dt, layout, g, x.hp(), yc.hp(), (int64_t*)ic.hp(), 0);
        int b = ct_cuda_maxpool_forward(dt, layout, g, x.d, yg.d, (int64_t*)ig.d, 0);
        if (status_ok("maxpool_forward", dt, kase, a, b)) {
          compare("maxpool_forward", dt, kase, yc.hp(), yg.down().data(), no, 0, 0);
          compare("maxpool_forward indices", CT_I64, kase + " (" + dname(dt) + ")", ic.hp(), ig.down().data(), no, 0, 0);
          Buf dy(dt, no), dxc(dt, ni), dxg(dt, ni);
          dy.fill_random();
          dxc.fill_sentinel();
          dxg.fill_sentinel();
          a = ct_cpu_maxpool_backward(dt, layout, g, dy.hp(), (const int64_t*)ic.hp(), dxc.hp(), 0);
          b = ct_cuda_maxpool_backward(dt, layout, g, dy.d, (const int64_t*)ig.d, dxg.d, 0);
          if (status_ok("maxpool_backward", dt, kase, a, b))
            compare("maxpool_backward", dt, kase, dxc.hp(), dxg.down().data(), ni, 0, 0);
        }
        // average pooling, padding counted and not
        x.fill_random();
        for (int inc = 0; inc < 2; ++inc) {
          const std::string k2 = kase + (inc ? " count_include_pad" : " exclude_pad");
          Buf ac(dt, no), ag(dt, no);
          a = ct_cpu_avgpool_forward(dt, layout, g, inc, x.hp(), ac.hp(), 0);
          b = ct_cuda_avgpool_forward(dt, layout, g, inc, x.d, ag.d, 0);
          if (status_ok("avgpool_forward", dt, k2, a, b))
            compare("avgpool_forward", dt, k2, ac.hp(), ag.down().data(), no, 4 * rtol_of(dt), 4 * atol_of(dt));
          Buf dy(dt, no), dxc(dt, ni), dxg(dt, ni);
          dy.fill_random();
          a = ct_cpu_avgpool_backward(dt, layout, g, inc, dy.hp(), dxc.hp(), 0);
          b = ct_cuda_avgpool_backward(dt, layout, g, inc, dy.d, dxg.d, 0);
          if (status_ok("avgpool_backward", dt, k2, a, b))
            compare("avgpool_backward", dt, k2, dxc.hp(), dxg.down().data(), ni, 4 * rtol_of(dt), 4 * atol_of(dt));
        }
      }
      // adaptive average pooling: output sizes that do not divide the input, larger than it, global
      struct AC { int64_t n, c, in[3], out[3]; const char* name; };
      const AC acs[] = {{2, 3, {1, 10, 13}, {1, 3, 5}, "[2,3,10,13] -> 3x5"},
                        {2, 3, {1, 10, 13}, {1, 20, 7}, "[2,3,10,13] -> 20x7"},
                        {4, 64, {1, 7, 7}, {1, 1, 1}, "global [4,64,7,7]"},
                        {2, 5, {1, 64, 64}, {1, 1, 1}, "global [2,5,64,64] (warp path)"},
                        {2, 3, {5, 4, 9}, {2, 3, 4}, "3d [2,3,5,4,9] -> 2x3x4"}};
      for (const AC& ac : acs) {
        int64_t g[CT_CONV_GEOMETRY_LEN] = {0};
        g[0] = ac.n;
        g[1] = g[2] = g[3] = ac.c;
        for (int d = 0; d < 3; ++d) {
          g[4 + d] = ac.in[d];
          g[7 + d] = g[10 + d] = g[13 + d] = 1;
          g[22 + d] = ac.out[d];
        }
        const int64_t ni = ac.n * ac.c * ac.in[0] * ac.in[1] * ac.in[2];
        const int64_t no = ac.n * ac.c * ac.out[0] * ac.out[1] * ac.out[2];
        const std::string kase = std::string(ac.name) + ln;
        Buf x(dt, ni), yc(dt, no), yg(dt, no);
        x.fill_random();
        int a = ct_cpu_adaptive_avgpool_forward(dt, layout, g, x.hp(), yc.hp(), 0);
        int b = ct_cuda_adaptive_avgpool_forward(dt, layout, g, x.d, yg.d, 0);
        if (status_ok("adaptive_avgpool_forward", dt, kase, a, b))
          compare("adaptive_avgpool_forward", dt, kase, yc.hp(), yg.down().data(), no, 4 * rtol_of(dt), 4 * atol_of(dt));
        Buf dy(dt, no), dxc(dt, ni), dxg(dt, ni);
        dy.fill_random();
        a = ct_cpu_adaptive_avgpool_backward(dt, layout, g, dy.hp(), dxc.hp(), 0);
        b = ct_cuda_adaptive_avgpool_backward(dt, layout, g, dy.d, dxg.d, 0);
        if (status_ok("adaptive_avgpool_backward", dt, kase, a, b))
          compare("adaptive_avgpool_backward", dt, kase, dxc.hp(), dxg.down().data(), ni, 4 * rtol_of(dt),
                  4 * atol_of(dt));
      }
      // batch norm: training (y, saved and running statistics), inference, backward
      struct BC { int64_t n, c, s; const char* name; };
      const BC bcs[] = {{4, 3, 35, "[4,3,35]"}, {8, 64, 33 * 33, "[8,64,1089]"}, {5, 257, 1, "[5,257] (s 1)"},
                        {2, 257, 49, "[2,257,49]"}, {6, 1, 7, "[6,1,7]"}};
      for (const BC& bc : bcs) {
        const int64_t ne = bc.n * bc.c * bc.s;
        const std::string kase = std::string(bc.name) + ln;
        const std::string fk = kase + " (" + dname(dt) + ")";
        Buf x(dt, ne), gm(CT_F32, bc.c), bt(CT_F32, bc.c), rm(CT_F32, bc.c), rv(CT_F32, bc.c);
        x.fill_random();
        for (int64_t i = 0; i < ne; ++i) setv(x.hp(), dt, i, getv(x.hp(), dt, i) + 3.0);  // mean far from 0
        x.up();
        gm.fill_random(2);
        bt.fill_random();
        rm.fill_random();
        rv.fill_random(1);  // the CPU updates the host copies in place, the GPU the device copies
        Buf yc(dt, ne), yg(dt, ne), smc(CT_F32, bc.c), smg(CT_F32, bc.c), src_(CT_F32, bc.c), srg(CT_F32, bc.c);
        const double rt = 20 * rtol_of(dt), at = 20 * atol_of(dt);
        int a = ct_cpu_batchnorm_forward_training(dt, layout, bc.n, bc.c, bc.s, x.hp(), (const float*)gm.hp(),
                                                  (const float*)bt.hp(), 1e-5, 0.1, (float*)rm.hp(), (float*)rv.hp(),
                                                  yc.hp(), (float*)smc.hp(), (float*)src_.hp(), 0);
        int b = ct_cuda_batchnorm_forward_training(dt, layout, bc.n, bc.c, bc.s, x.d, (const float*)gm.d,
                                                   (const float*)bt.d, 1e-5, 0.1, (float*)rm.d, (float*)rv.d, yg.d,
                                                   (float*)smg.d, (float*)srg.d, 0);
        if (status_ok("batchnorm_training", dt, kase, a, b)) {
          compare("batchnorm_training y", dt, kase, yc.hp(), yg.down().data(), ne, rt, at);
          compare("batchnorm_training save_mean", CT_F32, fk, smc.hp(), smg.down().data(), bc.c, 1e-5, 1e-6);
          compare("batchnorm_training save_rstd", CT_F32, fk, src_.hp(), srg.down().data(), bc.c, 1e-4, 1e-6);
          compare("batchnorm_training running_mean", CT_F32, fk, rm.hp(), rm.down().data(), bc.c, 1e-5, 1e-6);
          compare("batchnorm_training running_var", CT_F32, fk, rv.hp(), rv.down().data(), bc.c, 1e-4, 1e-6);
        }
        // inference from the (updated) running statistics: same values on both sides
        rm.up();
        rv.up();
        a = ct_cpu_batchnorm_forward_inference(dt, layout, bc.n, bc.c, bc.s, x.hp(), (const float*)gm.hp(),
                                               (const float*)bt.hp(), (const float*)rm.hp(), (const float*)rv.hp(),
                                               1e-5, yc.hp(), 0);
        b = ct_cuda_batchnorm_forward_inference(dt, layout, bc.n, bc.c, bc.s, x.d, (const float*)gm.d,
                                                (const float*)bt.d, (const float*)rm.d, (const float*)rv.d, 1e-5, yg.d,
                                                0);
        if (status_ok("batchnorm_inference", dt, kase, a, b))
          compare("batchnorm_inference", dt, kase, yc.hp(), yg.down().data(), ne, 4 * rtol_of(dt), 4 * atol_of(dt));
        // backward from the CPU's saved statistics on both sides
        smc.up();
        src_.up();
        Buf dy(dt, ne), dxc(dt, ne), dxg(dt, ne), dgc(CT_F32, bc.c), dgg(CT_F32, bc.c), dbc(CT_F32, bc.c),
            dbg(CT_F32, bc.c);
        dy.fill_random();
        a = ct_cpu_batchnorm_backward(dt, layout, bc.n, bc.c, bc.s, x.hp(), dy.hp(), (const float*)gm.hp(),
                                      (const float*)smc.hp(), (const float*)src_.hp(), dxc.hp(), (float*)dgc.hp(),
                                      (float*)dbc.hp(), 0);
        b = ct_cuda_batchnorm_backward(dt, layout, bc.n, bc.c, bc.s, x.d, dy.d, (const float*)gm.d,
                                       (const float*)smc.d, (const float*)src_.d, dxg.d, (float*)dgg.d, (float*)dbg.d,
                                       0);
        if (status_ok("batchnorm_backward", dt, kase, a, b)) {
          compare("batchnorm_backward dx", dt, kase, dxc.hp(), dxg.down().data(), ne, rt, at);
          compare("batchnorm_backward dgamma", CT_F32, fk, dgc.hp(), dgg.down().data(), bc.c, 1e-3, 1e-4);
          compare("batchnorm_backward dbeta", CT_F32, fk, dbc.hp(), dbg.down().data(), bc.c, 1e-3, 1e-4);
        }
      }
    }
  }
  // argument validation: a clear status and message, no launch
  {
    int64_t g[CT_CONV_GEOMETRY_LEN] = {0};
    g[0] = 1;
    g[1] = g[2] = g[3] = 2;
    for (int d = 0; d < 3; ++d) g[4 + d] = g[7 + d] = g[10 + d] = g[13 + d] = g[22 + d] = 1;
    g[24] = 5;  // wrong output size
    int st = ct_cuda_maxpool_forward(CT_F32, CT_LAYOUT_NCHW, g, (void*)16, (void*)16, nullptr, 0);
    record("maxpool_forward bad geometry", "f32", "oW 5 for W 1", 0, 0,
           st == CT_ERR_INVALID_ARG && strstr(ct_cuda_last_error(), "g[24]") != nullptr, ct_cuda_last_error());
    st = ct_cuda_avgpool_forward(CT_F16, CT_LAYOUT_NCHW, g, 1, (void*)16, (void*)16, 0);
    record("avgpool_forward f16", "f16", "unsupported dtype", 0, 0, st == CT_ERR_UNSUPPORTED, ct_cuda_last_error());
    st = ct_cuda_batchnorm_forward_inference(CT_F32, CT_LAYOUT_NCHW, 2, 3, 4, (void*)16, nullptr, nullptr, nullptr,
                                             nullptr, 1e-5, (void*)16, 0);
    record("batchnorm_inference null running_mean", "f32", "NULL pointer", 0, 0,
           st == CT_ERR_INVALID_ARG && strstr(ct_cuda_last_error(), "running_mean") != nullptr, ct_cuda_last_error());
  }
}
