/*
 * Definitions compiled into both libcortado_cpu (g++) and libcortado_cuda (nvcc, host and
 * device): whatever must agree bit for bit between the two backends lives here once.
 *
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11): the counter (c0..c3) goes through 10 rounds of two 32x32->64-bit multiplications
 * (multipliers 0xD2511F53, 0xCD9E8D57) mixed with the key (k0, k1), which is bumped by the
 * Weyl constants 0x9E3779B9, 0xBB67AE85 after each round. random.h defines how Cortado maps
 * (seed, offset, element index) to counter and key. Cost: 20 integer multiplies per 4 outputs.
 */
#ifndef CORTADO_SHARED_H
#define CORTADO_SHARED_H

#include <stdint.h>

#include "cortado/common.h"

#ifdef __CUDACC__
#define CT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CT_HOST_DEVICE inline __attribute__((always_inline))
#endif

namespace ct {

struct philox_out { uint32_t r[4]; };

CT_HOST_DEVICE philox_out philox4x32_10(uint64_t group, uint64_t seed, uint64_t offset) {
  uint32_t c0 = (uint32_t)group, c1 = (uint32_t)(group >> 32);
  uint32_t c2 = (uint32_t)offset, c3 = (uint32_t)(offset >> 32);
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#ifdef __CUDACC__
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c0;
    const uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
    c0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    c1 = (uint32_t)p1;
    c2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c3 = (uint32_t)p0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  philox_out o;
  o.r[0] = c0; o.r[1] = c1; o.r[2] = c2; o.r[3] = c3;
  return o;
}

/* A Philox output as a float in [0, 1) with 24 random bits (exactly representable). */
CT_HOST_DEVICE float philox_unit(uint32_t r) { return (float)(r >> 8) * 0x1p-24f; }

/* The same in (0, 1], for logarithms (Box-Muller's u1). */
CT_HOST_DEVICE float philox_unit_open0(uint32_t r) { return (float)((r >> 8) + 1) * 0x1p-24f; }

/* Bytes per element of a dtype code; 0 for codes that are unknown (CT_I4 counts one byte). */
CT_HOST_DEVICE int64_t dtype_size(int dtype) {
  switch (dtype) {
    case CT_F32: case CT_I32: return 4;
    case CT_F64: case CT_I64: return 8;
    case CT_F16: case CT_BF16: return 2;
    case CT_I8: case CT_U8: case CT_BOOL: case CT_I4: return 1;
    default: return 0;
  }
}

}  // namespace ct

#endif
