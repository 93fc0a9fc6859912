/*
 * Random family: counter-based Philox4x32-10 (Salmon et al., SC'11), bit-compatible with the
 * CUDA kernels. One Philox call (10 rounds of 2 32x32->64 multiplies) yields 4 uint32:
 * 4 uniform/Bernoulli elements or 2 normal elements (Box-Muller, float32 math as random.h
 * specifies). Element i depends only on (seed, offset, i), so a prefix does not depend on n
 * and the range splits over threads freely.
 *
 * Uniform: y = fma(b - a, u, a) evaluated in float64 then converted to dtype (an explicit fma
 * so that the rounding is the same on every compiler/device).
 *
 * Cost: ~25 integer ops per 4 (uniform) or 2 (normal) elements, plus log/sqrt/cos for normal;
 * writes n * sizeof(dtype) bytes. Compute bound for normal, write bound for uniform.
 */
#include "cortado/random.h"
#include "internal.h"
#include "shared.h"

namespace ct {
namespace {

template <class T> CT_INLINE void put(T* out, int64_t i, double v) {
  if constexpr (std::is_same_v<T, f16> || std::is_same_v<T, bf16>) store<T>(out + i, f64_to_f32_odd(v));
  else out[i] = (T)v;
}

template <class T> void gen(int dist, int64_t n, T* out, uint64_t seed, uint64_t offset, double a, double b) {
  const int per = dist == CT_RANDOM_NORMAL ? 2 : 4;
  const int64_t groups = (n + per - 1) / per;
  parallel_range(groups, per * 8, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const philox_out r = philox4x32_10((uint64_t)g, seed, offset);
      const int64_t i0 = g * per;
      const int cnt = n - i0 < per ? (int)(n - i0) : per;
      for (int j = 0; j < cnt; ++j) {
        if (dist == CT_RANDOM_UNIFORM) {
          put(out, i0 + j, std::fma(b - a, (double)philox_unit(r.r[j]), a));
        } else if (dist == CT_RANDOM_BERNOULLI) {
          if constexpr (std::is_integral_v<T>) out[i0 + j] = (T)((double)philox_unit(r.r[j]) < a ? 1 : 0);
          else put(out, i0 + j, (double)philox_unit(r.r[j]) < a ? 1.0 : 0.0);
        } else {
          const float u1 = philox_unit_open0(r.r[2 * j]);
          const float u2 = philox_unit(r.r[2 * j + 1]);
          const float z = std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853071795865f * u2);
          put(out, i0 + j, a + b * (double)z);
        }
      }
    }
  });
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_random(int distribution, int dtype, int64_t n, void* out, uint64_t seed, uint64_t offset,
                             double a, double b, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_random";
  CT_TRY
  if (distribution < CT_RANDOM_UNIFORM || distribution > CT_RANDOM_BERNOULLI)
    return fail(CT_ERR_INVALID_ARG, "%s: unknown distribution code %d", fn, distribution);
  const bool fp = dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16;
  const bool ints = dtype == CT_BOOL || dtype == CT_U8 || dtype == CT_I8 || dtype == CT_I32 || dtype == CT_I64;
  if (!(fp || (distribution == CT_RANDOM_BERNOULLI && ints)))
    return fail(CT_ERR_UNSUPPORTED, "%s: distribution %d cannot produce dtype %s (%d)", fn, distribution,
                dtype_name(dtype), dtype);
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n=%lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "out", out))) return st;
  dispatch_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    gen<T>(distribution, n, (T*)out, seed, offset, a, b);
  });
  return CT_OK;
  CT_CATCH(fn)
}
