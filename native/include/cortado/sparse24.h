/*
 * 2:4 structured sparsity in the layout of the sparse tensor cores (mma.sp.m16n8k32): a 2:4
 * operand W [rows, k] (k a multiple of 4) is the N:M pair of cortado/sparse.h with n = 2, m = 4
 * (values [rows, k / 2] of dtype, two kept values per group of 4 in position order), with its
 * positions packed as the instruction reads them: `packed` holds ceil(rows / 16) x ceil(k / 32)
 * tiles of 16 uint32 words, 2 bits per kept value (the layout, word by word, is documented in
 * native/shared/sp24_layout.h; ct_cpu_sp24_pack_meta is its definition on the host).
 *
 * ct_*_sp24_pack_meta: the N:M positions meta [rows, k / 2] (uint8, 0..3, strictly increasing in
 * a group; checked: CT_ERR_INVALID_ARG naming row, group and slot) to `packed`. Cost: one read of
 * meta, k rows / 8 bytes written.
 * ct_*_sp24_unpack: x [rows, k] = the dense W of values and packed metadata (zeros at the pruned
 * positions); a word whose nibble is not two increasing positions answers CT_ERR_INVALID_ARG.
 * ct_*_sp24_matmul: C [rows, ncols] = W B, B [k, ncols] row-major, C overwritten. CPU: F32, F64,
 * F16, BF16 (compute_t accumulation), the scalar reference of the tensor-core kernel (decodes the
 * packed words). CUDA: F16 and BF16 on mma.sp.sync.aligned.m16n8k32 (float32 accumulation, one
 * rounding at the store); other dtypes answer CT_ERR_UNSUPPORTED (nm_matmul runs them).
 * Cost: 2 rows (k / 2) ncols FLOPs (half of dense); reads W once per 64-column tile of C
 * (rows k / 2 values + rows k / 32 bytes of metadata) and B once per 64-row tile of C.
 * packed has ceil(rows / 16) * ceil(k / 32) * 16 words. Sizes are int64 >= 0; packed is required when rows > 0 and k > 0. Pointers to values must be
 * 4-byte aligned on CUDA (each lane loads a group's two kept values as one 32-bit word).
 */
#ifndef CORTADO_SPARSE24_H
#define CORTADO_SPARSE24_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

int ct_cpu_sp24_pack_meta(int64_t rows, int64_t k, const uint8_t* meta, uint32_t* packed, int64_t stream);
int ct_cpu_sp24_unpack(int dtype, int64_t rows, int64_t k, const void* values, const uint32_t* packed, void* x,
                       int64_t stream);
int ct_cpu_sp24_matmul(int dtype, int64_t rows, int64_t k, int64_t ncols, const void* values, const uint32_t* packed,
                       const void* b, void* c, int64_t stream);

int ct_cuda_sp24_pack_meta(int64_t rows, int64_t k, const uint8_t* meta, uint32_t* packed, int64_t stream);
int ct_cuda_sp24_unpack(int dtype, int64_t rows, int64_t k, const void* values, const uint32_t* packed, void* x,
                        int64_t stream);
int ct_cuda_sp24_matmul(int dtype, int64_t rows, int64_t k, int64_t ncols, const void* values, const uint32_t* packed,
                        const void* b, void* c, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
