/*
 * Indexing family: gather (ONNX Gather, embedding lookup) and index_add (its backward).
 *
 * src is contiguous, viewed as [outer, axis_len, inner]; index holds n_index values of
 * index_dtype (CT_I32 or CT_I64), contiguous; out is contiguous [outer, n_index, inner]:
 *   out[o, j, i] = src[o, idx(j), i]   with idx(j) = index[j] < 0 ? index[j] + axis_len : index[j]
 * An index outside [-axis_len, axis_len) returns CT_ERR_INDEX_OUT_OF_RANGE; the message names
 * the value and its position. dtype: any but CT_I4. Cost: one read + one write per output
 * element, rows of `inner` elements are copied with memcpy.
 */
#ifndef CORTADO_INDEX_H
#define CORTADO_INDEX_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

int ct_cpu_gather(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner,
                  const void* src, int64_t n_index, const void* index, void* out, int64_t stream);

/* On CUDA an out-of-range index is detected on the device and reported after the kernel
 * (the launcher synchronizes the stream to read the flag). */
int ct_cuda_gather(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner,
                   const void* src, int64_t n_index, const void* index, void* out,
                   int64_t stream);

/*
 * index_add (scatter-add; the backward of gather and embedding): with the geometry above,
 *   out[o, idx(j), i] += src[o, j, i]     for every o, j, i
 * `out` [outer, axis_len, inner] already holds the base values (zeros for a gradient) and is
 * accumulated in place; src is contiguous [outer, n_index, inner]. Same index rules and
 * errors as gather (checked before anything is written). Floating dtypes F32 F64 F16 BF16
 * (16-bit: float32 accumulation, one rounding per output element).
 * CPU: deterministic whatever the thread count: indices are bucketed by destination
 * (counting sort, stable), and threads own destination rows, each adding its sources in
 * ascending j. CUDA: one thread per source element, float atomics (16-bit dtypes accumulate
 * in a float32 scratch buffer, then add to out); the order of additions is not fixed.
 * Cost: one read of src and one read-modify-write of each touched out element:
 * ~e*(n_index*inner*outer) read + e*2*(touched rows) bytes, one FLOP per source element.
 */
int ct_cpu_index_add(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner,
                     int64_t n_index, const void* index, const void* src, void* out, int64_t stream);
int ct_cuda_index_add(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner,
                      int64_t n_index, const void* index, const void* src, void* out,
                      int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
