/*
 * Random numbers (random.h): counter-based Philox4x32-10, bit-compatible with ct_cpu_random.
 *
 * Algorithm: one thread per Philox group (grid-stride): group g = i / 4 yields 4 uniform or
 * Bernoulli elements, group g = i / 2 yields 2 normal elements (Box-Muller in float32).
 * The counter is (lo g, hi g, lo offset, hi offset), the key (lo seed, hi seed), so every
 * element depends only on (seed, offset, i): the CPU and GPU produce the same stream, and a
 * prefix does not depend on n.
 *   uniform   y = fma(b - a, u, a) in float64 (explicit fma, as the CPU twin), u = (r >> 8) 2^-24
 *   bernoulli y = (double)u < a
 *   normal    z = sqrtf(-2 logf(u1)) cosf(2 pi u2) in float32, y = fma(b, z, a) in float64
 * then converted to dtype (f16/bf16 rounded once from double, to nearest even).
 * Cost: 10 Philox rounds (20 32-bit multiplies) per group; writes n * sizeof(dtype) bytes;
 * uniform is write-bandwidth bound, normal compute bound on logf/cosf.
 */
#include "common.cuh"
#include "cortado/random.h"

namespace ct {
namespace {

template <int DIST, class T>
__global__ void __launch_bounds__(kThreads)
random_kernel(int64_t n, T* __restrict__ out, uint64_t seed, uint64_t offset, double a, double b) {
  constexpr int per = DIST == CT_RANDOM_NORMAL ? 2 : 4;
  const int64_t groups = (n + per - 1) / per;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step) {
    const philox_out r = philox4x32_10((uint64_t)g, seed, offset);
    const int64_t i0 = g * per;
#pragma unroll
    for (int j = 0; j < per; ++j) {
      if (i0 + j >= n) break;
      double y;
      if constexpr (DIST == CT_RANDOM_UNIFORM) {
        y = fma(b - a, (double)philox_unit(r.r[j]), a);
      } else if constexpr (DIST == CT_RANDOM_BERNOULLI) {
        y = (double)philox_unit(r.r[j]) < a ? 1.0 : 0.0;
      } else {
        const float u1 = philox_unit_open0(r.r[2 * j]);
        const float u2 = philox_unit(r.r[2 * j + 1]);
        const float z = sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795865f * u2);
        y = fma(b, (double)z, a);
      }
      out[i0 + j] = convert<T, double>(y);
    }
  }
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_random(int distribution, int dtype, int64_t n, void* out, uint64_t seed, uint64_t offset,
                              double a, double b, int64_t stream) {
  const char* fn = "ct_cuda_random";
  if (distribution < CT_RANDOM_UNIFORM || distribution > CT_RANDOM_BERNOULLI)
    return fail(CT_ERR_INVALID_ARG, "%s: unknown distribution code %d", fn, distribution);
  const bool fp = dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16;
  const bool ints = dtype == CT_BOOL || dtype == CT_U8 || dtype == CT_I8 || dtype == CT_I32 || dtype == CT_I64;
  if (!(fp || (distribution == CT_RANDOM_BERNOULLI && ints)))
    return fail(CT_ERR_UNSUPPORTED, "%s: distribution %d cannot produce dtype %s (%d)", fn, distribution,
                dtype_name(dtype), dtype);
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n = %lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "out", out));
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  cudaStream_t s = as_stream(stream);
  const int64_t groups = (n + 3) / 4 * 2;  // upper bound over distributions, for the grid size
  const unsigned grid = grid_for(groups, sms);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (is_float_v<T>) {
      if (distribution == CT_RANDOM_UNIFORM)
        random_kernel<CT_RANDOM_UNIFORM, T><<<grid, kThreads, 0, s>>>(n, (T*)out, seed, offset, a, b);
      else if (distribution == CT_RANDOM_NORMAL)
        random_kernel<CT_RANDOM_NORMAL, T><<<grid, kThreads, 0, s>>>(n, (T*)out, seed, offset, a, b);
      else
        random_kernel<CT_RANDOM_BERNOULLI, T><<<grid, kThreads, 0, s>>>(n, (T*)out, seed, offset, a, b);
    } else {
      random_kernel<CT_RANDOM_BERNOULLI, T><<<grid, kThreads, 0, s>>>(n, (T*)out, seed, offset, a, b);
    }
  });
  return check_launch(fn);
}
