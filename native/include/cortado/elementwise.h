/*
 * Elementwise family: unary and binary maps, where, strided copy with dtype conversion, fill.
 *
 * Strided operands: `shape` (ndim entries) is the shape of the OUTPUT; every operand has its
 * own stride array of ndim entries (0 = broadcast along that dimension). Java has already
 * broadcast, coalesced dimensions and promoted dtypes: both inputs of a binary op have the
 * same dtype `dtype`. Output dtype is `dtype`, except comparisons (EQ..GE) which write
 * CT_BOOL and logical ops (AND, OR, XOR, NOT) which take and write CT_BOOL.
 * float16/bfloat16 are computed in float32 and rounded to nearest even on store.
 * The output must not partially overlap an input (exact aliasing out == input with equal
 * strides is allowed: in-place ops).
 *
 * Cost: each output element reads one element per operand and writes one:
 * (n_inputs + 1) * n * sizeof(dtype) bytes; memory bound for every op here.
 */
#ifndef CORTADO_ELEMENTWISE_H
#define CORTADO_ELEMENTWISE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Op codes: CT_UNARY_<IDENT> and CT_BINARY_<IDENT>, numbered by their line in the lists
 * ops/unary.def and ops/binary.def (which also give each op's formula and dtypes). Among the
 * binary ops, comparisons write CT_BOOL, logical ops take and write CT_BOOL, and the activation
 * gradients (*_GRAD, floating dtypes) take a = the output gradient g, b = the input x and
 * return g * f'(x); RELU_GRAD is g where b > 0, else 0 (b is relu's input or output). */
enum {
#define CT_UNARY_OP(ident, name, domain, functor, grad) CT_UNARY_##ident,
#include "ops/unary.def"
#undef CT_UNARY_OP
  CT_UNARY_COUNT
};
enum {
#define CT_BINARY_OP(ident, name, kind, functor) CT_BINARY_##ident,
#include "ops/binary.def"
#undef CT_BINARY_OP
  CT_BINARY_COUNT
};

/* Unary ops are defined for the dtypes of their DOMAIN in ops/unary.def: FLOAT = F32 F64 F16
 * BF16; NUMERIC = those and I8 U8 I32 I64; BOOL = CT_BOOL. Others: CT_ERR_UNSUPPORTED. */
int ct_cpu_unary(int op, int dtype, int ndim, const int64_t* shape,
                 void* out, const int64_t* out_strides,
                 const void* x, const int64_t* x_strides,
                 double p0, double p1, int64_t stream);

/* By KIND in ops/binary.def: ARITHMETIC and COMPARISON for all numeric dtypes (F32 F64 F16
 * BF16 I8 U8 I32 I64), COMPARISON also for BOOL; LOGICAL only for BOOL; ACTIVATION_GRAD for
 * floating dtypes. */
int ct_cpu_binary(int op, int dtype, int ndim, const int64_t* shape,
                  void* out, const int64_t* out_strides,
                  const void* a, const int64_t* a_strides,
                  const void* b, const int64_t* b_strides, int64_t stream);

/* out = cond ? a : b ; cond is CT_BOOL, a/b/out have dtype `dtype` (any dtype but CT_I4). */
int ct_cpu_where(int dtype, int ndim, const int64_t* shape,
                 void* out, const int64_t* out_strides,
                 const uint8_t* cond, const int64_t* cond_strides,
                 const void* a, const int64_t* a_strides,
                 const void* b, const int64_t* b_strides, int64_t stream);

/* Strided copy with dtype conversion: dst = (dst_dtype) src. Any pair of dtypes among
 * F32 F64 F16 BF16 I8 U8 I32 I64 BOOL. Float to 16-bit floats rounds to nearest even
 * (NaN stays NaN, overflow goes to inf); float to integer truncates toward zero (values out
 * of range are unspecified but never trap); anything to BOOL is (x != 0).
 * This is the kernel behind contiguous(), to(dtype) and concat. */
int ct_cpu_copy(int dst_dtype, int src_dtype, int ndim, const int64_t* shape,
                void* dst, const int64_t* dst_strides,
                const void* src, const int64_t* src_strides, int64_t stream);

/* Fill n contiguous elements with `value` converted to dtype. */
int ct_cpu_fill(int dtype, int64_t n, void* out, double value, int64_t stream);

/* Packed int4 <-> int8: unpack n values (n may be odd) from `packed` (low nibble first,
 * sign-extended) to int8, and pack n int8 values (must lie in [-8, 7]) into nibbles. */
int ct_cpu_int4_unpack(int64_t n, const uint8_t* packed, int8_t* out, int64_t stream);
int ct_cpu_int4_pack(int64_t n, const int8_t* in, uint8_t* packed, int64_t stream);

/* CUDA twins: same contracts, device pointers, enqueued on `stream` (0 = default stream).
 * Shape/stride arrays are HOST pointers; the launcher passes them to the kernel by value. */
int ct_cuda_unary(int op, int dtype, int ndim, const int64_t* shape,
                  void* out, const int64_t* out_strides,
                  const void* x, const int64_t* x_strides,
                  double p0, double p1, int64_t stream);
int ct_cuda_binary(int op, int dtype, int ndim, const int64_t* shape,
                   void* out, const int64_t* out_strides,
                   const void* a, const int64_t* a_strides,
                   const void* b, const int64_t* b_strides, int64_t stream);
int ct_cuda_where(int dtype, int ndim, const int64_t* shape,
                  void* out, const int64_t* out_strides,
                  const uint8_t* cond, const int64_t* cond_strides,
                  const void* a, const int64_t* a_strides,
                  const void* b, const int64_t* b_strides, int64_t stream);
int ct_cuda_copy(int dst_dtype, int src_dtype, int ndim, const int64_t* shape,
                 void* dst, const int64_t* dst_strides,
                 const void* src, const int64_t* src_strides, int64_t stream);
int ct_cuda_fill(int dtype, int64_t n, void* out, double value, int64_t stream);
int ct_cuda_int4_unpack(int64_t n, const uint8_t* packed, int8_t* out, int64_t stream);
int ct_cuda_int4_pack(int64_t n, const int8_t* in, uint8_t* packed, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
