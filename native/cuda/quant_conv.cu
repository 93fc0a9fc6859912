/*
 * int8 convolution, NHWC (quant_conv.h), CUDA twin of native/cpu/quant_conv.cpp: same packed
 * weights, same compensation-free exact sums, same epilogue (native/shared/quant_conv_math.h).
 * One thread per output element (pixel, channel): it walks the kh x kw taps inside the image and
 * the group's cg input channels, summing (x - zx)(w - zw) in int32 (w read from the packed block
 * of its group). Padding taps add 0, as on the CPU. Cost: 2 K integer ops per output; x reads are
 * coalesced along the channels of neighbouring threads. Tensor-core (mma.sync s8) implicit-GEMM
 * tiles are the next step; this kernel is the exact twin the GPU check compares against.
 */
#include "common.cuh"
#include "cortado/quant_conv.h"
#include "quant_conv_math.h"

namespace ct {
namespace {

__global__ void qconv2d_kernel(ct_qconv_args a, int64_t total) {
  const int64_t cg = a.c / a.groups, og = a.oc / a.groups, k = a.kh * a.kw * cg, kp = (k + 3) / 4 * 4;
  const int64_t gb = qm::qconv_group_bytes(a);
  const uint8_t* x = (const uint8_t*)a.x;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = e % a.oc, p = e / a.oc;
    const int64_t b = p / (a.oh * a.ow), oy = (p / a.ow) % a.oh, ox = p % a.ow;
    const int64_t grp = o / og, j = o % og;
    const int8_t* wp = (const int8_t*)a.w_packed + grp * gb;
    const int32_t zw = a.w_zero_point ? ((const int32_t*)a.w_zero_point)[o] : 0;
    int32_t acc = 0;
    for (int64_t ky = 0; ky < a.kh; ++ky) {
      const int64_t iy = oy * a.stride_h - a.pad_h + ky * a.dil_h;
      if (iy < 0 || iy >= a.h) continue;
      for (int64_t kx = 0; kx < a.kw; ++kx) {
        const int64_t ix = ox * a.stride_w - a.pad_w + kx * a.dil_w;
        if (ix < 0 || ix >= a.w) continue;
        const uint8_t* xs = x + ((b * a.h + iy) * a.w + ix) * a.c + grp * cg;
        const int64_t k0 = (ky * a.kw + kx) * cg;
        for (int64_t ci = 0; ci < cg; ++ci)
          acc += ((int32_t)xs[ci] - a.x_zero_point) * ((int32_t)wp[qm::qconv_packed_index(kp, k0 + ci, j)] - zw);
      }
    }
    qm::qconv_store(a, e, o, acc);
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_qconv2d(const ct_qconv_args* args, int64_t stream) {
  static const char* fn = "ct_cuda_qconv2d";
  qm::Msg m;
  if (int st = qm::check_qconv(fn, args, &m)) return fail(st, "%s", m.text);
  const ct_qconv_args& a = *args;
  const int64_t total = a.n * a.oh * a.ow * a.oc;
  if (total == 0) return CT_OK;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  qconv2d_kernel<<<grid_for(total, sms), kThreads, 0, as_stream(stream)>>>(a, total);
  return check_launch(fn);
}
