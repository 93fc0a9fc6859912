/*
 * Cortado native interface: shared definitions.
 *
 * The boundary between Java and native code is plain C (ggml-style): pointers, sizes,
 * strides, dtype codes and a stream. No C++ object crosses it. Every entry point returns
 * an int status (CT_OK on success); on failure the library keeps a thread-local message
 * that the Java binding layer reads (ct_cpu_last_error / ct_cuda_last_error) and turns into
 * an exception naming the op and its arguments.
 *
 * Conventions for every kernel entry point:
 *  - the CPU and CUDA twins of a kernel (ct_cpu_X, ct_cuda_X) take the same arguments, the last
 *    one the stream (int64; the CPU ignores it), so Java binds both through one interface per
 *    family (generated from these headers by native/tools/GenerateBindings.java);
 *  - long argument lists pass operands as ct_tensor descriptors (below) and options as a
 *    plain struct of the family;
 *  - data pointers point at the first element of the (view of the) operand, i.e. the
 *    storage base plus the view's offset already applied;
 *  - shapes and strides are int64 arrays of length ndim; strides count ELEMENTS, not bytes,
 *    and may be 0 (broadcast) but never negative;
 *  - ndim is 0..CT_MAX_DIMS; a 0-dim tensor has one element; a dimension of size 0 means an
 *    empty tensor and the call is a successful no-op;
 *  - native code re-validates what it is given (non-null pointers where data is touched,
 *    non-negative sizes, ndim in range, dtype codes known) and returns CT_ERR_INVALID_ARG
 *    with a message instead of touching memory.
 */
#ifndef CORTADO_COMMON_H
#define CORTADO_COMMON_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

#define CT_MAX_DIMS 8

/* dtype codes; Java's dev.cortado.tensor.DType mirrors these numbers. */
#define CT_F32  0
#define CT_F64  1
#define CT_F16  2
#define CT_BF16 3
#define CT_I8   4
#define CT_U8   5
#define CT_I32  6
#define CT_I64  7
#define CT_BOOL 8   /* one byte per element, 0 or 1 */
#define CT_I4   9   /* packed signed 4-bit, two per byte, low nibble first; storage only */
#define CT_F8E4M3 10  /* OCP fp8 E4M3 (no infinities, NaN S.1111.111, max 448); storage only (quant.h) */
#define CT_F8E5M2 11  /* OCP fp8 E5M2 (IEEE-like: inf, NaNs, max 57344); storage only (quant.h) */

/*
 * A strided operand (as ggml passes its tensors): the first element of the view, its dtype, and
 * ndim sizes with their element strides (0 = broadcast along that dimension). 144 bytes, no
 * padding; Java writes it field by field at the offsets generated from this definition
 * (dev.cortado.backend.kernels.NativeStructs.CtTensor).
 */
typedef struct ct_tensor {
  void* data;
  int32_t dtype;
  int32_t ndim;
  int64_t shape[CT_MAX_DIMS];
  int64_t strides[CT_MAX_DIMS];
} ct_tensor;

/* activation layouts of the convolution, pooling and batch-norm families */
#define CT_LAYOUT_NCHW 0    /* channels first: [N, C, (D,) (H,) W] */
#define CT_LAYOUT_NHWC 1    /* channels last:  [N, (D,) (H,) W, C] */

/* status codes */
#define CT_OK                   0
#define CT_ERR_INVALID_ARG      1
#define CT_ERR_UNSUPPORTED      2   /* dtype/op combination without a kernel */
#define CT_ERR_OUT_OF_MEMORY    3
#define CT_ERR_INDEX_OUT_OF_RANGE 4
#define CT_ERR_CUDA             5   /* a CUDA runtime error; the message names it */
#define CT_ERR_NOT_BUILT        6   /* the library was built without CUDA */

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
