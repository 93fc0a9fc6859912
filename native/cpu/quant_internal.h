/*
 * The int8 GEMM driver of native/cpu/quant_gemm.cpp as an entry for other kernels of the
 * quantization family: the caller supplies the rows of A (the int8 convolution gathers its im2col
 * rows, native/cpu/quant_conv.cpp), the driver packs them into its padded panel chunk by chunk
 * and runs the VNNI / AVX2 register tiles, the zero-point compensation and the fused epilogue.
 */
#ifndef CORTADO_CPU_QUANT_INTERNAL_H
#define CORTADO_CPU_QUANT_INTERNAL_H

#include <cstdint>
#include <functional>

#include "cortado/quant.h"

namespace ct {

/* Writes row `row` of A (g.k uint8 values) to dst; called concurrently for different rows. */
using QgemmRowFill = std::function<void(int64_t row, uint8_t* dst)>;

/* The GEMM of quant.h with A given by `fill` instead of g.a (g.a and g.lda are ignored); the
 * arguments must have passed qm::check_qgemm (with any non-null g.a). */
void qgemm_rows(const ct_qgemm_args& g, const QgemmRowFill& fill);

}  // namespace ct
#endif
