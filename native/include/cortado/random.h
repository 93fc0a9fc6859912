/*
 * Random family: counter-based Philox4x32-10, identical on CPU and CUDA.
 *
 * Philox4x32-10 (Salmon et al., SC'11): key k = (lo32(seed), hi32(seed)); the counter of
 * group g is c = (lo32(g), hi32(g), lo32(offset), hi32(offset)); 10 rounds with multipliers
 * 0xD2511F53, 0xCD9E8D57 and key increments 0x9E3779B9, 0xBB67AE85 yield r[0..3] (uint32).
 *
 * Element i of the output:
 *   UNIFORM   g = i / 4, u = (r[i % 4] >> 8) * 2^-24  in [0, 1);  y = a + (b - a) * u
 *   BERNOULLI same u;                                            y = (u < a) ? 1 : 0
 *   NORMAL    g = i / 2, j = i % 2, u1 = ((r[2j] >> 8) + 1) * 2^-24 in (0, 1],
 *             u2 = (r[2j+1] >> 8) * 2^-24,  z = sqrt(-2 ln u1) cos(2 pi u2)  (float32 math);
 *             y = a + b * z
 * Uniform and Bernoulli values are bit-identical on CPU and CUDA; normal values agree to a
 * few ulp (logf/cosf differ between libm and CUDA's). The result is converted to dtype
 * (F32 F64 F16 BF16; BERNOULLI also to BOOL, U8, I8, I32, I64).
 * Any element can be computed independently, so the kernel is embarrassingly parallel.
 */
#ifndef CORTADO_RANDOM_H
#define CORTADO_RANDOM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Distributions CT_RANDOM_<IDENT>, numbered by their line in ops/random.def. */
enum {
#define CT_RANDOM_DIST(ident, name) CT_RANDOM_##ident,
#include "ops/random.def"
#undef CT_RANDOM_DIST
  CT_RANDOM_COUNT
};

int ct_cpu_random(int distribution, int dtype, int64_t n, void* out,
                  uint64_t seed, uint64_t offset, double a, double b, int64_t stream);
int ct_cuda_random(int distribution, int dtype, int64_t n, void* out,
                   uint64_t seed, uint64_t offset, double a, double b, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
