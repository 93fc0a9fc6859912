/*
 * Fused elementwise family: one pass over memory for a chain of elementwise ops, described by a
 * small program that the graph layer's ElementwiseFusion pass writes (dev.cortado.graph).
 *
 * Program: n_instructions instructions of CT_FUSED_FIELDS int64 fields each,
 *   { kind, code, dst, a, b }
 * over at most CT_FUSED_MAX_REGS vector registers (each holds one tile of elements):
 *   CT_FUSED_LOAD    r[dst] = input a                      (code, b unused)
 *   CT_FUSED_CONST   r[dst] = params[2 * i]                (a scalar, i = the instruction's index)
 *   CT_FUSED_UNARY   r[dst] = unary op `code`(r[a])        (ops/unary.def; p0 = params[2 i], p1 = params[2 i + 1])
 *   CT_FUSED_BINARY  r[dst] = binary op `code`(r[a], r[b]) (ops/binary.def, ARITHMETIC or ACTIVATION_GRAD)
 *   CT_FUSED_STORE   output dst = r[a]
 * Unary ops of the BOOL domain and comparison/logical binary ops are refused (CT_ERR_UNSUPPORTED):
 * every register holds the compute type of `dtype`. The formulas are the eager kernels'
 * (ct::sop functors of native/shared/scalar_ops.h), except the float32 erf GELU, which runs the
 * vectorizable gelu_erf_f32 of native/cpu/vmath.h (within a few ulp of the libm form).
 *
 * Operands: every input and output is a ct_tensor of dtype `dtype` (float32, float64, float16 or
 * bfloat16; the 16-bit ones computed in float32 and rounded once, on store) whose shape is the
 * iteration `shape` (ndim entries); an input broadcast along a dimension has stride 0 there.
 * Outputs must not overlap inputs unless they alias them exactly (same data and strides: the
 * element is read before it is written).
 *
 * Cost: per element, one load per input, one store per output and the ops' FLOPs (a few each;
 * 15-40 for the exp/tanh/erf ones); bytes (n_inputs + n_outputs) * n * sizeof(dtype), against
 * (2 or 3) * n * sizeof(dtype) per op for the unfused chain: memory bound, so the saving is the
 * ratio of the two.
 */
#ifndef CORTADO_FUSED_H
#define CORTADO_FUSED_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

#define CT_FUSED_LOAD 0
#define CT_FUSED_CONST 1
#define CT_FUSED_UNARY 2
#define CT_FUSED_BINARY 3
#define CT_FUSED_STORE 4

#define CT_FUSED_FIELDS 5
#define CT_FUSED_MAX_REGS 16
#define CT_FUSED_MAX_INPUTS 8
#define CT_FUSED_MAX_OUTPUTS 4
#define CT_FUSED_MAX_INSTRUCTIONS 128

int ct_cpu_fused_elementwise(int dtype, int ndim, const int64_t* shape, int n_inputs, const ct_tensor* inputs,
                             int n_outputs, const ct_tensor* outputs, int n_instructions, const int64_t* program,
                             const double* params, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
