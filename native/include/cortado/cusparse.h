/*
 * cuSPARSE as an alternative backend of the CSR SpMM, for benchmarks against Cortado's own kernel
 * (dev.cortado.ops.Sparse.SpmmBackend.CUSPARSE). The library is optional: the CUDA build does not
 * need its headers or libraries; the first call dlopen()s libcusparse.so.13 (or .12, or .so) and
 * resolves the generic API (cusparseCreateCsr, cusparseCreateDnMat, cusparseSpMM_bufferSize,
 * cusparseSpMM) at run time. Without it the call answers CT_ERR_UNSUPPORTED with the loader's
 * message.
 *
 * ct_*_cusparse_csr_spmm: C [rows, n] = A B for the CSR A of cortado/sparse.h (int64 crow, col;
 * 0-based) and B [cols, n] row-major, C overwritten. dtypes F32, F64 and BF16 (float32 compute),
 * cusparseSpMM with CUSPARSE_SPMM_CSR_ALG2 (deterministic) on the call's stream; workspace
 * by cudaMallocAsync on that stream. The indices are checked as ct_cuda_csr_spmm checks them.
 * The CPU function answers CT_ERR_UNSUPPORTED (cuSPARSE runs on CUDA devices only).
 */
#ifndef CORTADO_CUSPARSE_H
#define CORTADO_CUSPARSE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

int ct_cpu_cusparse_csr_spmm(int dtype, int64_t rows, int64_t cols, int64_t n, int64_t nnz, const int64_t* crow,
                             const int64_t* col, const void* values, const void* b, void* c, int64_t stream);
int ct_cuda_cusparse_csr_spmm(int dtype, int64_t rows, int64_t cols, int64_t n, int64_t nnz, const int64_t* crow,
                              const int64_t* col, const void* values, const void* b, void* c, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
