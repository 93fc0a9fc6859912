/* Shared between the CUDA files of the sparse family (sparse.cu, sparse24.cu, cusparse.cu). */
#ifndef CORTADO_CUDA_SPARSE_INTERNAL_CUH
#define CORTADO_CUDA_SPARSE_INTERNAL_CUH

#include "common.cuh"

namespace ct {
/* Whether sp24_matmul_positions takes this call: F16 / BF16, values 4-byte aligned, the grid fits. */
bool sp24_applies(int dtype, int64_t rows, int64_t ncols, const void* values);
/* C [rows, ncols] = W B on mma.sp with W's metadata built in registers from the N:M positions
 * meta [rows, k / 2] (2:4, already checked); arguments already validated, rows, ncols, k > 0. */
int sp24_matmul_positions(const char* fn, int dtype, int64_t rows, int64_t k, int64_t ncols, const void* values,
                          const uint8_t* meta, const void* b, void* c, cudaStream_t st);
/* The CSR structure checks of ct_cuda_csr_spmm (sparse.cu): crow and every col in [0, cols),
 * on the device, one synchronization; CT_ERR_INDEX_OUT_OF_RANGE naming the first bad position. */
int check_csr_indices(const char* fn, int64_t rows, int64_t cols, int64_t nnz, const int64_t* crow, const int64_t* col,
                      cudaStream_t st);
}  // namespace ct

#endif
