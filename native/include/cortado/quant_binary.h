/*
 * Binary (1-bit) GEMM and convolution of the quantization family (XNOR-Net, BiPer): values are
 * signs, +1 or -1, packed 64 per uint64 word (bit b of word w holds element 64 w + b; 1 means
 * +1, 0 means -1); the padding bits after the last element of a row are written 0 and ignored
 * when read.
 *
 * Dot product of two rows of k signs: matching bits contribute +1, differing bits -1, so
 *     dot = k - 2 popcount((a XOR b) AND valid)      (valid: the row's k bits, not the padding)
 * computed exactly in 64-bit integers; the float32 result is dot * alpha[j] (* beta[i]), with
 * alpha the XNOR-Net weight scale (mean |w| of each output channel) and beta an optional
 * per-row activation scale.
 *
 * Convolution (NHWC, stride, zero padding, no dilation): x bits [batch, h, w, cw] and weight bits
 * [cout, kh, kw, cw] with cw = ceil(c / 64) words per pixel; each output pixel is an implicit
 * GEMM row over the taps inside the image:
 *     y[b, oy, ox, co] = alpha[co] * sum_{taps inside} (c - 2 popcount(x_tap XOR w_tap))
 * Taps in the zero padding contribute 0 (a zero input, not a sign).
 *
 * Cost: GEMM m n kw word operations (XOR + popcount + add; 64 multiply-adds each): AVX-512
 * VPOPCNTDQ on 8 words per instruction in a 4 x 4 register tile with column blocks of 64 rows
 * of b (L1 resident), else 64-bit popcnt; bytes: a once per column block, b once, y once.
 * Convolution batch oh ow cout kh kw cw word operations (popcnt, 4 output channels per x load).
 * Binarization reads 4 bytes and writes 1/8 byte per element.
 */
#ifndef CORTADO_QUANT_BINARY_H
#define CORTADO_QUANT_BINARY_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Every bit operand is a byte string (a uint8 tensor [..., 8 kw]): element e of a row is bit
 * e % 8 of byte e / 8, so byte 8 w + i of a row is byte i of its little-endian word w. The
 * kernels mask the padding bits of the last word themselves (any value there is ignored). */

/* bits [rows, ceil(k / 64)] words from float32 x [rows, k] (row stride ldx, element stride 1): bit set
 * where x >= 0 (sign(0) = +1; NaN gives -1); the padding bits are 0. */
int ct_cpu_binarize(const float* x, int64_t rows, int64_t k, int64_t ldx, uint64_t* bits, int64_t stream);

/* y [m, n] float32 (row stride n) = (k - 2 popcount(a[i] XOR b[j])) * alpha[j] * beta[i]; a bits
 * [m, kw] words, b bits [n, kw] words with kw = ceil(k / 64); alpha float32 [n] or NULL (1), beta float32
 * [m] or NULL (1). reference != 0 runs the scalar popcnt loop instead of AVX-512 VPOPCNTDQ. */
typedef struct ct_bgemm_args {
  const void* a;
  const void* b;
  const void* alpha;
  const void* beta;
  void* y;
  int64_t m;
  int64_t n;
  int64_t k;
  int32_t reference;
  int32_t reserved;
} ct_bgemm_args;
int ct_cpu_binary_gemm(const ct_bgemm_args* args, int64_t stream);

/* The binary convolution above: y float32 [batch, oh, ow, cout] contiguous, with
 * oh = (h + 2 pad_h - kh) / stride_h + 1, ow likewise. alpha float32 [cout] or NULL. */
typedef struct ct_bconv_args {
  const void* x;
  const void* w;
  const void* alpha;
  void* y;
  int64_t batch;
  int64_t h;
  int64_t w_in;
  int64_t c;
  int64_t cout;
  int64_t kh;
  int64_t kw;
  int64_t stride_h;
  int64_t stride_w;
  int64_t pad_h;
  int64_t pad_w;
  int64_t oh;
  int64_t ow;
} ct_bconv_args;
int ct_cpu_binary_conv2d(const ct_bconv_args* args, int64_t stream);

/*
 * Training with binary weights or activations (straight-through estimator, Courbariaux et al.
 * 2016; XNOR-Net): forward y = sign(x) (+1 for x >= 0, -1 below; NaN stays NaN), backward the
 * clipped identity dx = g where |x| <= 1, else 0. x, y, g, dx: n contiguous elements of one
 * dtype (CT_F32, CT_F64, CT_F16, CT_BF16). Memory bound: 1 compare per element.
 */
int ct_cpu_sign_ste(const void* x, void* y, int32_t dtype, int64_t n, int64_t stream);
int ct_cpu_sign_ste_backward(const void* g, const void* x, void* dx, int32_t dtype, int64_t n, int64_t stream);

/*
 * BiPer binarization (Vargas et al., CVPR 2024, "Binary neural networks using a periodic
 * function"): forward y = sign(sin(omega x)), a square wave of period 2 pi / omega (+1 where
 * sin(omega x) >= 0, -1 below; NaN stays NaN); backward the derivative of the sine it replaces,
 * dx = g omega cos(omega x). The sine and cosine are taken in double precision (omega x rounded
 * once) and the result rounded to the dtype once. omega must be finite and > 0. x, y, g, dx: n
 * contiguous elements of one dtype (CT_F32, CT_F64, CT_F16, CT_BF16). Cost: one sin (or cos)
 * per element, 2 (or 3) element reads/writes.
 */
int ct_cpu_biper(const void* x, void* y, int32_t dtype, int64_t n, double omega, int64_t stream);
int ct_cpu_biper_backward(const void* g, const void* x, void* dx, int32_t dtype, int64_t n, double omega,
                          int64_t stream);

/* The CUDA twins (native/cuda/quant_binary.cu), same contracts and results (integer popcounts,
 * the same float epilogue); bit operands (bits, a, b, x, w) must be 8-byte aligned, and alpha /
 * beta are checked finite on the device (one stream synchronization). k < 2^31. */
int ct_cuda_binarize(const float* x, int64_t rows, int64_t k, int64_t ldx, uint64_t* bits, int64_t stream);
int ct_cuda_binary_gemm(const ct_bgemm_args* args, int64_t stream);
int ct_cuda_binary_conv2d(const ct_bconv_args* args, int64_t stream);
int ct_cuda_sign_ste(const void* x, void* y, int32_t dtype, int64_t n, int64_t stream);
int ct_cuda_sign_ste_backward(const void* g, const void* x, void* dx, int32_t dtype, int64_t n, int64_t stream);
int ct_cuda_biper(const void* x, void* y, int32_t dtype, int64_t n, double omega, int64_t stream);
int ct_cuda_biper_backward(const void* g, const void* x, void* dx, int32_t dtype, int64_t n, double omega,
                           int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
