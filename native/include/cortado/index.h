/*
 * Indexing family: gather (ONNX Gather, embedding lookup).
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
                  const void* src, int64_t n_index, const void* index, void* out);

/* On CUDA an out-of-range index is detected on the device and reported after the kernel
 * (the launcher synchronizes the stream to read the flag). */
int ct_cuda_gather(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner,
                   const void* src, int64_t n_index, const void* index, void* out,
                   int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
