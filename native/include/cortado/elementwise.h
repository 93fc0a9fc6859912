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

/* unary ops: y = f(x); p0/p1 are op parameters where noted */
#define CT_UNARY_NEG        0
#define CT_UNARY_ABS        1
#define CT_UNARY_EXP        2
#define CT_UNARY_LOG        3
#define CT_UNARY_SQRT       4
#define CT_UNARY_RSQRT      5
#define CT_UNARY_TANH       6
#define CT_UNARY_SIGMOID    7
#define CT_UNARY_RELU       8
#define CT_UNARY_GELU_ERF   9   /* 0.5 x (1 + erf(x / sqrt 2)) */
#define CT_UNARY_GELU_TANH 10   /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
#define CT_UNARY_SILU      11   /* x * sigmoid(x) */
#define CT_UNARY_CLAMP     12   /* min(max(x, p0), p1); NaN stays NaN */
#define CT_UNARY_NOT       13   /* bool only */
#define CT_UNARY_POW_SCALAR 14  /* x ^ p0 */
#define CT_UNARY_AFFINE    15   /* x * p0 + p1 (scalar add/mul fused) */
#define CT_UNARY_RECIPROCAL 16
#define CT_UNARY_SIN       17
#define CT_UNARY_COS       18
#define CT_UNARY_COUNT     19

/* binary ops: y = f(a, b) */
#define CT_BINARY_ADD   0
#define CT_BINARY_SUB   1
#define CT_BINARY_MUL   2
#define CT_BINARY_DIV   3   /* integer dtypes: truncating; division by zero gives 0 (no trap) */
#define CT_BINARY_POW   4
#define CT_BINARY_MAX   5   /* NaN-propagating like torch.maximum */
#define CT_BINARY_MIN   6
#define CT_BINARY_EQ    7   /* comparisons write CT_BOOL */
#define CT_BINARY_NE    8
#define CT_BINARY_LT    9
#define CT_BINARY_LE   10
#define CT_BINARY_GT   11
#define CT_BINARY_GE   12
#define CT_BINARY_AND  13   /* bool only */
#define CT_BINARY_OR   14   /* bool only */
#define CT_BINARY_XOR  15   /* bool only */
/* Activation gradients, floating dtypes only: a is the output gradient, b the input x;
 * the result is a * f'(x). */
#define CT_BINARY_GELU_GRAD      16
#define CT_BINARY_GELU_TANH_GRAD 17
#define CT_BINARY_SILU_GRAD      18
/* ReLU's gradient: a where b > 0, else 0 (b is relu's input or output; a NaN b gives 0). */
#define CT_BINARY_RELU_GRAD      19
#define CT_BINARY_COUNT 20

/* Unary ops are defined for floating dtypes (F32, F64, F16, BF16); NEG, ABS, RELU, CLAMP,
 * AFFINE also for integer dtypes (I8, U8, I32, I64); NOT only for BOOL. Others: CT_ERR_UNSUPPORTED. */
int ct_cpu_unary(int op, int dtype, int ndim, const int64_t* shape,
                 void* out, const int64_t* out_strides,
                 const void* x, const int64_t* x_strides,
                 double p0, double p1, int64_t stream);

/* Arithmetic ops and comparisons for all numeric dtypes (F32 F64 F16 BF16 I8 U8 I32 I64);
 * comparisons also for BOOL; logical ops only for BOOL. */
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
