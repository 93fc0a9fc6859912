/* GPU check for SLAB's linear attention (cortado/slab.h): included by gpu_check.cu before main().
 *
 * check_slab(): ct_cuda_slab_attention_forward and _backward against their CPU twins, f32 / f64,
 * on fresh random q, k, v, dO (normal(0, 2), never zeros) for (B, H, N, D) = (2, 3, 37, 16),
 * (1, 2, 129, 64), (2, 1, 50, 33) (odd D: partial warps), (1, 1, 1, 1) and an empty batch, each in
 * the [B, H, N, D] layout and as the strided [B, N, H, D] layout (batch, head, sequence strides
 * N H D, D, H D) that the Java op passes without copies. Tolerance: |gpu - cpu| <= rt |cpu| +
 * rt max|cpu| with rt 1e-4 (f32: sums of N D products in another order, then a division) and
 * 1e-10 (f64). Bad input: eps = 0 gives CT_ERR_INVALID_ARG on both.
 */
#pragma once
#include "cortado/slab.h"

namespace slab_check {

static double max_abs_of(const void* p, int dt, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(getv(p, dt, i)));
  return m;
}

static void compare_scaled(const std::string& k, int dt, const std::string& kase, const void* ref, const void* got,
                           int64_t n) {
  const double rt = dt == CT_F64 ? 1e-10 : 1e-4;
  compare(k, dt, kase, ref, got, n, rt, rt * max_abs_of(ref, dt, n));
}

static void check_case(int dt, int64_t B, int64_t H, int64_t N, int64_t D, bool bshd) {
  const int64_t dims[4] = {B, H, N, D};
  const int64_t total = B * H * N * D;
  const int64_t s[3] = {bshd ? N * H * D : H * N * D, bshd ? D : N * D, bshd ? H * D : D};
  Buf q(dt, total), k(dt, total), v(dt, total), dout(dt, total);
  q.fill_random();
  k.fill_random();
  v.fill_random();
  dout.fill_random();
  const std::string kase = "B" + std::to_string(B) + " H" + std::to_string(H) + " N" + std::to_string(N) + " D" +
                           std::to_string(D) + (bshd ? " BSHD strides" : "");
  Buf o(dt, total), dq(dt, total), dk(dt, total), dv(dt, total);
  o.fill_sentinel();
  std::vector<uint8_t> oc(o.h.size()), dqc(o.h.size()), dkc(o.h.size()), dvc(o.h.size());
  int x = ct_cpu_slab_attention_forward(dt, dims, q.hp(), s, k.hp(), s, v.hp(), s, 1e-6, oc.data(), 0);
  int y = ct_cuda_slab_attention_forward(dt, dims, q.d, s, k.d, s, v.d, s, 1e-6, o.d, 0);
  if (status_ok("slab_attention_forward", dt, kase, x, y))
    compare_scaled("slab_attention_forward", dt, kase, oc.data(), o.down().data(), total);
  dq.fill_sentinel();
  dk.fill_sentinel();
  dv.fill_sentinel();
  x = ct_cpu_slab_attention_backward(dt, dims, q.hp(), s, k.hp(), s, v.hp(), s, dout.hp(), 1e-6, dqc.data(),
                                     dkc.data(), dvc.data(), 0);
  y = ct_cuda_slab_attention_backward(dt, dims, q.d, s, k.d, s, v.d, s, dout.d, 1e-6, dq.d, dk.d, dv.d, 0);
  if (status_ok("slab_attention_backward", dt, kase, x, y)) {
    compare_scaled("slab_attention_backward (dq)", dt, kase, dqc.data(), dq.down().data(), total);
    compare_scaled("slab_attention_backward (dk)", dt, kase, dkc.data(), dk.down().data(), total);
    compare_scaled("slab_attention_backward (dv)", dt, kase, dvc.data(), dv.down().data(), total);
  }
}

}  // namespace slab_check

static void check_slab() {
  using namespace slab_check;
  for (int dt : {CT_F32, CT_F64}) {
    for (bool bshd : {false, true}) {
      check_case(dt, 2, 3, 37, 16, bshd);
      check_case(dt, 1, 2, 129, 64, bshd);
      check_case(dt, 2, 1, 50, 33, bshd);
      check_case(dt, 1, 1, 1, 1, bshd);
      check_case(dt, 0, 2, 5, 8, bshd);
    }
    const int64_t dims[4] = {1, 1, 4, 4};
    const int64_t s[3] = {16, 16, 4};
    Buf q(dt, 16), o(dt, 16);
    q.fill_random();
    std::vector<uint8_t> oc(q.h.size());
    int x = ct_cpu_slab_attention_forward(dt, dims, q.hp(), s, q.hp(), s, q.hp(), s, 0.0, oc.data(), 0);
    int y = ct_cuda_slab_attention_forward(dt, dims, q.d, s, q.d, s, q.d, s, 0.0, o.d, 0);
    record("slab_attention_forward", dname(dt), "eps = 0 is refused", 0, 0, x == CT_ERR_INVALID_ARG && y == x);
  }
}
