/*
 * GEMM family (CPU). Row-major, batched:
 *   C_b[m, n] = alpha * op(A_b)[m, k] * op(B_b)[k, n] + beta * C_b[m, n],   b = 0..batch-1
 * op(X) = X or X^T (trans_*). A_b = a + b * batch_stride_a (elements; 0 broadcasts one
 * matrix over the batch), lda/ldb/ldc are row strides in elements.
 * dtypes: F32 -> OpenBLAS cblas_sgemm; F64 -> cblas_dgemm; BF16 -> the kernel of
 * ct_cpu_bf16_gemm_kernel (cpu.h): Cortado's AMX-BF16 or AVX512_BF16 micro-kernel (gemm_bf16.cpp:
 * bfloat16 products, float32 accumulation; subnormal bfloat16 inputs count as zero) or, as F16,
 * inputs widened to float32 in packed panels, float32 accumulation (sgemm). 16-bit results are
 * rounded to nearest even once.
 * C has the inputs' dtype. k == 0 gives C = beta * C.
 * Cost: 2 m n k FLOPs per batch entry. Small batched problems are spread over OpenMP threads
 * (one single-threaded sgemm per batch entry); large ones use OpenBLAS's own threads.
 * On CUDA, matmul goes through cuBLAS from Java (JavaCPP presets), so there is no ct_cuda_gemm.
 */
#ifndef CORTADO_GEMM_H
#define CORTADO_GEMM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

int ct_cpu_gemm(int dtype, int trans_a, int trans_b, int64_t batch,
                int64_t m, int64_t n, int64_t k, double alpha,
                const void* a, int64_t lda, int64_t batch_stride_a,
                const void* b, int64_t ldb, int64_t batch_stride_b,
                double beta, void* c, int64_t ldc, int64_t batch_stride_c, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
