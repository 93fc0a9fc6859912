/*
 * Embedding family: row-sparse optimizer updates, the lazy ("sparse") SGD-with-momentum and Adam steps of an
 * embedding table whose gradient touches only some rows (dev.cortado.sparse.RowSparseGradient,
 * produced by nn.EmbeddingBag in sparse mode).
 *
 * Operands: param [num_rows, dim] contiguous, its state tensors of the same shape and dtype, and
 * a coalesced row-sparse gradient: rows (int64[n], each in [0, num_rows), distinct) and
 * grad [n, dim] contiguous. Only the n listed rows of param and of the state change; every other
 * row keeps its value and its state (the "lazy" semantics of PyTorch's SparseAdam: the moments
 * of an untouched row do not decay). dtypes: CT_F32 or CT_F64 (states and gradient share the
 * param dtype); arithmetic in that dtype.
 *
 * SGD (momentum_buf NULL: plain SGD), for each listed row r and column j, with g = grad[i, j]:
 *   g  = g + weight_decay * p[r, j]
 *   b  = momentum * b[r, j] + g            (a row's first touch finds b = 0, so b = g)
 *   p[r, j] -= lr * (nesterov ? g + momentum * b : b)
 * Adam (PyTorch SparseAdam on the listed rows; step_size = lr / (1 - beta1^t),
 * denom_scale = 1 / sqrt(1 - beta2^t) with t the optimizer's step count):
 *   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
 *   p -= step_size * m / (sqrt(v) * denom_scale + eps)
 * Cost: n * dim elements; SGD reads p, g, b and writes p, b (20 bytes per float32 element,
 * 3-4 FLOPs); Adam reads p, g, m, v and writes p, m, v (28 bytes, ~12 FLOPs, a sqrt and a
 * division). Nothing is read or written outside the n rows.
 *
 * Errors: CT_ERR_INVALID_ARG (negative size, NULL pointer where data is needed, unknown dtype),
 * CT_ERR_INDEX_OUT_OF_RANGE (a row outside [0, num_rows) or listed twice, naming its position);
 * the indices are checked before anything is written. The CUDA entry points check the rows on
 * the device and report the first bad one the same way before the update runs.
 */
#ifndef CORTADO_EMBEDDING_H
#define CORTADO_EMBEDDING_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

int ct_cpu_row_sparse_sgd(int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows, const void* grad,
                          void* param, void* momentum_buf, double lr, double momentum, double weight_decay,
                          int nesterov, int64_t stream);
int ct_cpu_row_sparse_adam(int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows, const void* grad,
                           void* param, void* exp_avg, void* exp_avg_sq, double step_size, double beta1, double beta2,
                           double eps, double denom_scale, double weight_decay, int64_t stream);

int ct_cuda_row_sparse_sgd(int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows, const void* grad,
                           void* param, void* momentum_buf, double lr, double momentum, double weight_decay,
                           int nesterov, int64_t stream);
int ct_cuda_row_sparse_adam(int dtype, int64_t num_rows, int64_t dim, int64_t n, const int64_t* rows, const void* grad,
                            void* param, void* exp_avg, void* exp_avg_sq, double step_size, double beta1, double beta2,
                            double eps, double denom_scale, double weight_decay, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif

#endif
