/*
 * Inline-PTX helpers of the tensor-core kernels (attention.cu, conv.cu, quant.cu, quant_weight.cu),
 * written once.
 *
 *  cp_async16        16-byte global -> shared copy that bypasses registers (sm_80+, cp.async.cg);
 *                    pred = false zero-fills the 16 bytes (src-size 0) without reading gmem.
 *  cp_async_commit   closes the current group of cp.async copies.
 *  cp_async_wait<N>  waits until at most N committed groups are still in flight
 *                    (cp_async_wait_all: N = 0); a __syncthreads() must follow before other
 *                    threads read the copied data.
 *  ldsm_x4_t         ldmatrix .x4 .trans: four 8x8 b16 matrices from shared memory, transposed.
 *  mma16816<T>       d += a b, m16n8k16, A row-major 16x16, B col-major 16x8, T = __half or
 *                    __nv_bfloat16 inputs, float32 accumulators.
 *  mma16832_u8s8     d += a b, m16n8k32, A uint8 row-major, B int8 col-major, int32 accumulators.
 *  mma1688_tf32      d += a b, m16n8k8 on TF32 inputs (to_tf32 rounds a float to nearest, ties away).
 *
 * Clobbers: every helper that reads or writes shared memory behind the compiler's back
 * (cp.async and its commit/wait, ldmatrix) is asm volatile with a "memory" clobber, so the
 * compiler neither caches shared values across it nor moves ordinary loads/stores over it; the
 * mma and cvt helpers touch registers only (no clobber: they may be scheduled freely).
 */
#ifndef CORTADO_CUDA_PTX_CUH
#define CORTADO_CUDA_PTX_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace ct {
namespace ptx {

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  const int n = pred ? 16 : 0;  // src-size 0: the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { cp_async_wait<0>(); }

/* Lane L supplies the address of row (L & 7) of matrix L >> 3; register m receives
 * {M_m[2t][g], M_m[2t+1][g]} (g = lane / 4, t = lane % 4). */
__device__ __forceinline__ void ldsm_x4_t(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3, const void* row) {
  const unsigned a = (unsigned)__cvta_generic_to_shared(row);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(a)
               : "memory");
}

template <class T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

/* d += a b, m16n8k32 on 8-bit integers: A uint8 row-major 16x32 (a[i] = 4 consecutive k of one
 * row), B int8 col-major 32x8, exact int32 accumulators (quant.cu's int8 GEMM). */
__device__ __forceinline__ void mma16832_u8s8(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma1688_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t to_tf32(float f) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(f));
  return r;
}

}  // namespace ptx
}  // namespace ct

#endif
