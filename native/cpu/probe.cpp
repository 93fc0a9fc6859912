/*
 * Compute-ceiling probes: the peak rate of one core for the instructions the GEMM micro-kernels
 * are built from, measured rather than assumed (the hosts change between sessions).
 *
 * Algorithm: kChains independent accumulators (zmm registers), each advanced once per step by the
 * probed instruction. An instruction of latency L on P pipes needs L x P chains in flight to keep
 * every pipe busy; 24 chains cover latencies up to 12 cycles on two pipes and still leave 8 of the
 * 32 vector registers for the operands (checked in the assembly: the loop is 24 vdpbf16ps /
 * vfmadd231ps on registers, one counter add and a branch).
 *  - bf16_dot: acc = vdpbf16ps(acc, a, b): each fp32 lane adds a[2i] b[2i] + a[2i+1] b[2i+1];
 *    32 bfloat16 products per instruction, 2 FLOPs each (the convention of GEMM's 2 m n k).
 *    a = (2^-13, 2^-13), b = (1, 1): every step adds exactly 2^-12 to every lane.
 *  - fma_f32: acc = acc * m + c with m = 1, c = 2^-12, 16 lanes x 2 FLOPs.
 * The operands come through volatile loads so the compiler cannot fold the steps into one add.
 * Both return the exact sum of all lanes: 16 sum_{j<24} (j + steps 2^-12) while every
 * accumulator stays below 2^12 (ulp <= 2^-12), i.e. for steps < 2^23.
 *  - vnni_u8s8: acc = vpdpbusd(acc, a, b): each int32 lane adds four uint8 x int8 products;
 *    64 products per instruction, 2 operations each; a = b = bytes of 1, so every step adds 4.
 *  - amx_bf16: four independent tdpbf16ps per step, each a 16 x 16 float32 tile += a 16 x 32
 *    bfloat16 tile times a 32 x 16 one: 16384 FLOPs per instruction, all products 1 x 1.
 *  - amx_int8: the same with tdpbusd, a 16 x 16 int32 tile += 16 x 64 uint8 times 64 x 16 int8:
 *    32768 operations per instruction, all products 1 x 1.
 * Cost: 64 x 24 FLOPs (bf16_dot), 32 x 24 (fma_f32), 128 x 24 integer operations (vnni_u8s8),
 * 65536 FLOPs (amx_bf16) or 131072 integer operations (amx_int8) per step, no memory traffic.
 */
#include <type_traits>

#include "internal.h"

namespace ct {
namespace {

constexpr int kChains = 24;
constexpr int64_t kMaxSteps = int64_t(1) << 23;

volatile float g_inc = 0x1p-12f;
volatile float g_one = 1.0f;
volatile uint32_t g_pair_a = 0x39003900u;  // two bfloat16 2^-13 (0x3900)
volatile uint32_t g_pair_b = 0x3f803f80u;  // two bfloat16 1.0 (0x3f80)

double lane_sum(const __m512* acc) {
  double s = 0;
  for (int j = 0; j < kChains; ++j) {
    alignas(64) float v[16];
    std::memcpy(v, &acc[j], sizeof v);
    for (float x : v) s += x;
  }
  return s;
}

__attribute__((target("avx512f,avx512bf16"))) double bf16_dot(int64_t steps) {
  const __m512bh a = (__m512bh)_mm512_set1_epi32((int)g_pair_a);
  const __m512bh b = (__m512bh)_mm512_set1_epi32((int)g_pair_b);
  __m512 acc[kChains];
#pragma GCC unroll 24
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps((float)j);
  for (int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 24
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  return lane_sum(acc);
}

__attribute__((target("avx512f"))) double fma_f32(int64_t steps) {
  const __m512 m = _mm512_set1_ps(g_one), c = _mm512_set1_ps(g_inc);
  __m512 acc[kChains];
#pragma GCC unroll 24
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps((float)j);
  for (int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 24
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], m, c);
  }
  return lane_sum(acc);
}

volatile uint32_t g_ones_u8 = 0x01010101u;  // four uint8 1s (and four int8 1s)

__attribute__((target("avx512f,avx512vnni"))) double vnni_u8s8(int64_t steps) {
  const __m512i a = _mm512_set1_epi32((int)g_ones_u8), b = _mm512_set1_epi32((int)g_ones_u8);
  __m512i acc[kChains];
#pragma GCC unroll 24
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_epi32(j);
  for (int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 24
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
  }
  // a reduction intrinsic, not a copy to memory: taking acc's address made GCC keep the
  // accumulators on the stack, a store and a load per step that halved the measured rate
  double sum = 0;
#pragma GCC unroll 24
  for (int j = 0; j < kChains; ++j) sum += _mm512_reduce_add_epi32(acc[j]);
  return sum;
}

/* Four independent tile products per step (C tiles 0..3 from A tiles 4, 5 and B tiles 6, 7): a
 * tile product has a latency of several times its issue interval, and four in flight cover it.
 * Int8: tdpbusd (uint8 A x int8 B, int32 C, all bytes 1); else tdpbf16ps (bfloat16 1.0, float C).
 * Returns the sum of C's elements. */
template <bool Int8> CT_AMX double amx_chains(int64_t steps) {
  alignas(64) uint16_t ones[16 * 32];
  for (auto& x : ones) x = Int8 ? 0x0101 : 0x3f80;  // bytes 1, or bfloat16 1.0
  amx_begin();
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t s = 0; s < steps; ++s) {
    if constexpr (Int8) {
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    } else {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  using Acc = std::conditional_t<Int8, int32_t, float>;
  alignas(64) Acc c[4][256];
  _tile_stored(0, c[0], 64);
  _tile_stored(1, c[1], 64);
  _tile_stored(2, c[2], 64);
  _tile_stored(3, c[3], 64);
  amx_end();
  double sum = 0;
  for (auto& t : c)
    for (Acc x : t) sum += x;
  return sum;
}

int check_steps(const char* fn, int64_t steps, int64_t max_steps, const double* out) {
  if (steps < 0 || steps >= max_steps)
    return fail(CT_ERR_INVALID_ARG, "%s: steps=%lld outside [0, %lld) (the sums must stay exact)", fn,
                (long long)steps, (long long)max_steps);
  return check_ptr(fn, "out_sum", out);
}

}  // namespace
}  // namespace ct

extern "C" {

int ct_cpu_probe_bf16_dot(int64_t steps, double* out_sum) {
  static const char* fn = "ct_cpu_probe_bf16_dot";
  if (int st = ct::check_steps(fn, steps, ct::kMaxSteps, out_sum)) return st;
  if (!ct::cpu_has_avx512_bf16())
    return ct::fail(CT_ERR_UNSUPPORTED, "%s: this CPU has no AVX512_BF16 (vdpbf16ps)", fn);
  *out_sum = ct::bf16_dot(steps);
  return CT_OK;
}

int ct_cpu_probe_fma_f32(int64_t steps, double* out_sum) {
  static const char* fn = "ct_cpu_probe_fma_f32";
  if (int st = ct::check_steps(fn, steps, ct::kMaxSteps, out_sum)) return st;
  if (!__builtin_cpu_supports("avx512f"))
    return ct::fail(CT_ERR_UNSUPPORTED, "%s: this CPU has no AVX-512", fn);
  *out_sum = ct::fma_f32(steps);
  return CT_OK;
}

int ct_cpu_probe_amx_bf16(int64_t steps, double* out_sum) {
  static const char* fn = "ct_cpu_probe_amx_bf16";
  if (int st = ct::check_steps(fn, steps, int64_t(1) << 19, out_sum)) return st;
  if (!ct::cpu_has_amx_bf16())
    return ct::fail(CT_ERR_UNSUPPORTED, "%s: this CPU has no AMX-BF16 (or Linux refused the tile state)", fn);
  *out_sum = ct::amx_chains<false>(steps);
  return CT_OK;
}

int ct_cpu_probe_amx_int8(int64_t steps, double* out_sum) {
  static const char* fn = "ct_cpu_probe_amx_int8";
  if (int st = ct::check_steps(fn, steps, int64_t(1) << 24, out_sum)) return st;
  if (!ct::cpu_has_amx_int8())
    return ct::fail(CT_ERR_UNSUPPORTED, "%s: this CPU has no AMX-INT8 (or Linux refused the tile state)", fn);
  *out_sum = ct::amx_chains<true>(steps);
  return CT_OK;
}

int ct_cpu_probe_vnni_u8s8(int64_t steps, double* out_sum) {
  static const char* fn = "ct_cpu_probe_vnni_u8s8";
  if (int st = ct::check_steps(fn, steps, ct::kMaxSteps, out_sum)) return st;
  if (!__builtin_cpu_supports("avx512vnni"))
    return ct::fail(CT_ERR_UNSUPPORTED, "%s: this CPU has no AVX512_VNNI (vpdpbusd)", fn);
  *out_sum = ct::vnni_u8s8(steps);
  return CT_OK;
}

}  // extern "C"
