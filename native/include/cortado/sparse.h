/*
 * Sparse family: CSR sparse x dense products, SDDMM and row softmax on a CSR pattern, top-k along
 * an axis, and N:M structured sparsity (compression by magnitude, expansion, N:M weight x dense
 * GEMM with both backward products).
 *
 * CSR operand A [rows, cols] with nnz stored entries: crow (int64[rows + 1], crow[0] = 0,
 * non-decreasing, crow[rows] = nnz), col (int64[nnz], each in [0, cols)), values (nnz elements of
 * dtype). Every kernel scans crow and col first (O(rows + nnz)) and answers
 * CT_ERR_INDEX_OUT_OF_RANGE naming the first bad position before any data is read; sortedness and
 * duplicates are the Java representation's contract (dev.cortado.sparse.SparseTensor) and do not
 * change these kernels' results (duplicates add up).
 *
 * N:M operand W [rows, k] (k a multiple of m, 1 <= n < m <= 16): per group of m consecutive
 * columns exactly n kept entries, values [rows, k / m * n] (dtype) and meta [rows, k / m * n]
 * (uint8: the position 0..m-1 of each kept entry within its group, strictly increasing within a
 * group). Kernels reading meta check it (CT_ERR_INVALID_ARG naming row, group and slot).
 *
 * Dense operands are contiguous row-major. dtypes: F32, F64, BF16 (bf16 loads and stores, float32
 * accumulation). Sizes are int64 >= 0; an empty operand is a successful no-op (outputs of
 * positive size are still written: zeros where nothing adds up).
 */
#ifndef CORTADO_SPARSE_H
#define CORTADO_SPARSE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/*
 * SpMM. trans = 0: C[rows, n] = A B with B [cols, n]. trans = 1: C[cols, n] = A^T B with B [rows, n]
 * (the gradient of A B with respect to B). C is overwritten. Cost: 2 nnz n FLOPs; reads nnz
 * (sizeof(T) + 8) bytes of A, nnz n sizeof(T) of B rows (cache-resident when B fits), writes C once.
 */
int ct_cpu_csr_spmm(int dtype, int trans, int64_t rows, int64_t cols, int64_t n, int64_t nnz, const int64_t* crow,
                    const int64_t* col, const void* values, const void* b, void* c, int64_t stream);
/*
 * SDDMM: out[e] = sum_j x[r(e), j] y[col[e], j] for each stored entry e of row r(e); x [rows, d],
 * y [cols, d], out [nnz]. (The gradient of A B with respect to A's values is sddmm(dC, B).)
 * Cost: 2 nnz d FLOPs; reads x once and nnz rows of y.
 */
int ct_cpu_csr_sddmm(int dtype, int64_t rows, int64_t cols, int64_t d, int64_t nnz, const int64_t* crow,
                     const int64_t* col, const void* x, const void* y, void* out, int64_t stream);
/* Softmax of each row's stored values (the absent entries are -inf): y [nnz]. A row without
 * entries has nothing to write. Cost: ~3 reads + 1 write and one exp per entry. */
int ct_cpu_csr_softmax(int dtype, int64_t rows, int64_t nnz, const int64_t* crow, const void* x, void* y,
                       int64_t stream);
/* Its gradient: dx = y (dy - sum_row(y dy)). */
int ct_cpu_csr_softmax_backward(int dtype, int64_t rows, int64_t nnz, const int64_t* crow, const void* y,
                                const void* dy, void* dx, int64_t stream);

/*
 * Top-k along the middle axis of x viewed as [outer, len, inner] (contiguous): values and int64
 * indices [outer, k, inner], sorted (largest: descending; else ascending), ties to the lower index;
 * NaN counts as larger than +inf. 0 <= k <= len. Cost: O(len log k) compares per line.
 */
int ct_cpu_topk(int dtype, int64_t outer, int64_t len, int64_t inner, int64_t k, int largest, const void* x,
                void* values, int64_t* indices, int64_t stream);
/* Its gradient: dx [outer, len, inner] = 0, then dx[.., indices, ..] += dvalues. Indices outside
 * [0, len) answer CT_ERR_INDEX_OUT_OF_RANGE. */
int ct_cpu_topk_backward(int dtype, int64_t outer, int64_t len, int64_t inner, int64_t k, const void* dvalues,
                         const int64_t* indices, void* dx, int64_t stream);

/* N:M compression by magnitude: in each group of m the n entries of largest |x| (ties to the
 * lower position; NaN largest), kept in position order. x [rows, k]. */
int ct_cpu_nm_compress(int dtype, int64_t rows, int64_t k, int n, int m, const void* x, void* values,
                       uint8_t* meta, int64_t stream);
/* The dense matrix of an N:M operand: x [rows, k] (zeros at the pruned positions). */
int ct_cpu_nm_decompress(int dtype, int64_t rows, int64_t k, int n, int m, const void* values,
                         const uint8_t* meta, void* x, int64_t stream);
/*
 * N:M GEMM: C[rows, ncols] = W B, W the N:M operand [rows, k], B [k, ncols]. A row of C is
 * sum over the row's k n / m kept entries of value * (a row of B): broadcast-FMA over 64-float
 * (AVX-512) or 32-float (AVX2) column blocks held in registers. Cost: 2 rows (k n / m) ncols
 * FLOPs (n / m of dense), reads W once (values + one byte of meta per entry), B rows from cache.
 */
int ct_cpu_nm_matmul(int dtype, int64_t rows, int64_t k, int64_t ncols, int n, int m, const void* values,
                     const uint8_t* meta, const void* b, void* c, int64_t stream);
/*
 * Both backward products of C = W B given dC [rows, ncols]: dvalues [rows, k n / m] = the
 * entries of dC B^T on W's pattern, and db [k, ncols] = W^T dC. Either output may be NULL.
 * Cost: 2 rows (k n / m) ncols FLOPs for each.
 */
int ct_cpu_nm_matmul_backward(int dtype, int64_t rows, int64_t k, int64_t ncols, int n, int m, const void* values,
                              const uint8_t* meta, const void* b, const void* dc, void* dvalues, void* db,
                              int64_t stream);

/*
 * BSR: A [rows, cols] of square block x block blocks, crow [rows / block + 1] and
 * col [nnzb] over the block grid, values [nnzb, block, block] (row-major blocks). ct_cpu_bsr_spmm:
 * trans = 0: C[rows, n] = A B, B [cols, n]; trans = 1: C[cols, n] = A^T B, B [rows, n] (the
 * transposed block pattern by a counting sort). Each output row runs the CSR row kernel over its
 * (block, column-in-block) entries. Cost: 2 nnzb block^2 n FLOPs.
 * ct_cpu_bsr_sddmm: out [nnzb, block, block], out[e, a, q] = x[i block + a] . y[col[e] block + q]
 * for block e of block row i; x [rows, d], y [cols, d]. Cost: 2 nnzb block^2 d FLOPs.
 */
int ct_cpu_bsr_spmm(int dtype, int trans, int64_t rows, int64_t cols, int64_t block, int64_t n, int64_t nnzb,
                    const int64_t* crow, const int64_t* col, const void* values, const void* b, void* c,
                    int64_t stream);
int ct_cpu_bsr_sddmm(int dtype, int64_t rows, int64_t cols, int64_t block, int64_t d, int64_t nnzb, const int64_t* crow,
                     const int64_t* col, const void* x, const void* y, void* out, int64_t stream);

/*
 * CUDA twins (native/cuda/sparse.cu): the same arguments (device pointers) and semantics, dtypes
 * F32, F64, BF16. Index and N:M metadata checks run on the device and cost one stream
 * synchronization per call that takes indices. csr_spmm with trans = 1 adds with atomics (the order
 * of the additions is not fixed; bfloat16 through a float32 scratch buffer); top-k sorts lines of
 * up to 2048 elements (longer lines: CT_ERR_UNSUPPORTED).
 */
int ct_cuda_csr_spmm(int dtype, int trans, int64_t rows, int64_t cols, int64_t n, int64_t nnz, const int64_t* crow,
                     const int64_t* col, const void* values, const void* b, void* c, int64_t stream);
int ct_cuda_csr_sddmm(int dtype, int64_t rows, int64_t cols, int64_t d, int64_t nnz, const int64_t* crow,
                      const int64_t* col, const void* x, const void* y, void* out, int64_t stream);
int ct_cuda_csr_softmax(int dtype, int64_t rows, int64_t nnz, const int64_t* crow, const void* x, void* y,
                        int64_t stream);
int ct_cuda_csr_softmax_backward(int dtype, int64_t rows, int64_t nnz, const int64_t* crow, const void* y,
                                 const void* dy, void* dx, int64_t stream);
int ct_cuda_topk(int dtype, int64_t outer, int64_t len, int64_t inner, int64_t k, int largest, const void* x,
                 void* values, int64_t* indices, int64_t stream);
int ct_cuda_topk_backward(int dtype, int64_t outer, int64_t len, int64_t inner, int64_t k, const void* dvalues,
                          const int64_t* indices, void* dx, int64_t stream);
int ct_cuda_nm_compress(int dtype, int64_t rows, int64_t k, int n, int m, const void* x, void* values,
                        uint8_t* meta, int64_t stream);
int ct_cuda_nm_decompress(int dtype, int64_t rows, int64_t k, int n, int m, const void* values,
                          const uint8_t* meta, void* x, int64_t stream);
int ct_cuda_nm_matmul(int dtype, int64_t rows, int64_t k, int64_t ncols, int n, int m, const void* values,
                      const uint8_t* meta, const void* b, void* c, int64_t stream);
int ct_cuda_nm_matmul_backward(int dtype, int64_t rows, int64_t k, int64_t ncols, int n, int m, const void* values,
                               const uint8_t* meta, const void* b, const void* dc, void* dvalues, void* db,
                               int64_t stream);
/* BSR twins: the CSR kernels over (block, column-in-block) entries; trans = 1 adds with atomics as
 * csr_spmm does (no counting sort on the device). */
int ct_cuda_bsr_spmm(int dtype, int trans, int64_t rows, int64_t cols, int64_t block, int64_t n, int64_t nnzb,
                     const int64_t* crow, const int64_t* col, const void* values, const void* b, void* c,
                     int64_t stream);
int ct_cuda_bsr_sddmm(int dtype, int64_t rows, int64_t cols, int64_t block, int64_t d, int64_t nnzb, const int64_t* crow,
                      const int64_t* col, const void* x, const void* y, void* out, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
