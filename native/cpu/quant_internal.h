/*
 * The int8 GEMM driver of native/cpu/quant_gemm.cpp as an entry for other kernels of the
 * quantization family: the caller supplies the rows of A (the int8 convolution gathers its im2col
 * rows, native/cpu/quant_conv.cpp), the driver packs them into its padded panel chunk by chunk
 * and runs the AMX tiles or the VNNI / AVX2 register tiles, the zero-point compensation and the
 * fused epilogue.
 */
#ifndef CORTADO_CPU_QUANT_INTERNAL_H
#define CORTADO_CPU_QUANT_INTERNAL_H

#include <cstdint>
#include <functional>

#include "cortado/quant.h"

namespace ct {

/* Writes rows [row0, row0 + rows) of A (g.k uint8 values each; rows <= 32, one strip of the panel)
 * to dst, row r at dst + r * ld; called concurrently for different strips. A strip at a time lets
 * a caller walk its row coordinates incrementally and pays one indirect call per strip (8 rows,
 * 32 on the AMX path). */
using QgemmRowFill = std::function<void(int64_t row0, int64_t rows, uint8_t* dst, int64_t ld)>;

/* The GEMM of quant.h with A given by `fill` instead of g.a (g.a and g.lda are ignored); the
 * arguments must have passed qm::check_qgemm (with any non-null g.a). */
void qgemm_rows(const ct_qgemm_args& g, const QgemmRowFill& fill);

/* Bytes of one output element of the epilogue's out_dtype (CT_I32, CT_F32, CT_BF16, CT_I8, CT_U8). */
inline int64_t qgemm_out_bytes(int32_t out_dtype) {
  return out_dtype == CT_I32 || out_dtype == CT_F32 ? 4 : out_dtype == CT_BF16 ? 2 : 1;
}

}  // namespace ct
#endif
