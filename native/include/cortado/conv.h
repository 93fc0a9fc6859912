/*
 * Convolution family: N-d convolution (1-d, 2-d, 3-d through one 3-d description), forward,
 * backward with respect to the input (also the forward of a transposed convolution) and
 * backward with respect to weight and bias.
 *
 * Geometry: an int64 array `g` of CT_CONV_GEOMETRY_LEN entries (Java fills and checks it;
 * native re-checks it and returns CT_ERR_INVALID_ARG naming the first bad entry):
 *   g[0]  N   batch               g[1]  C  input channels      g[2]  K  output channels
 *   g[3]  groups (C and K divisible by it; depthwise: groups == C)
 *   g[4..6]   input size    D, H, W   (a 2-d conv has D = 1, a 1-d conv D = H = 1)
 *   g[7..9]   kernel size   kD, kH, kW
 *   g[10..12] stride        sD, sH, sW   (>= 1)
 *   g[13..15] dilation      dD, dH, dW   (>= 1)
 *   g[16..18] padding before pD, pH, pW  (>= 0, may exceed the kernel's half)
 *   g[19..21] padding after                (>= 0; asymmetric and "same" padding)
 *   g[22..24] output size   oD, oH, oW = (in + before + after - dil*(k-1) - 1) / stride + 1 (>= 1)
 * Layouts: CT_LAYOUT_NCHW: x [N, C, D, H, W], y [N, K, oD, oH, oW] (channels first);
 *          CT_LAYOUT_NHWC: x [N, D, H, W, C], y [N, oD, oH, oW, K] (channels last).
 * Weight is always [K, C/groups, kD, kH, kW] (PyTorch's layout); bias [K] or NULL. All
 * operands contiguous in the stated layout.
 *
 * Forward:  y[n,k,o] = act( bias[k] + sum_{c in group(k), r} x[n, c, o*stride - pad + r*dil] * w[k, c', r] )
 * Cost: 2 * N * K * (C/groups) * kD*kH*kW * oD*oH*oW FLOPs for each of forward, backward-data
 * and backward-weight.
 *
 * Algorithms (chosen by CT_CONV_ALGO_AUTO with a shape heuristic, or forced):
 *   REFERENCE    the direct 7-loop definition, float64 accumulation: the oracle for the others
 *   IM2COL_GEMM  lower patches to a matrix, OpenBLAS sgemm per group: the general fallback
 *   DIRECT_NHWC  register-blocked direct convolution over NHWC (vectorized over channels)
 *   WINOGRAD     F(2x2, 3x3) for 2-d 3x3 stride-1 dilation-1 convolutions: forward, backward-data
 *                (padding <= 2) and backward-weight; channels-last inside, NCHW staged per tile chunk
 *   DEPTHWISE    groups == C == K (multiplier 1): per-channel sliding window
 * dtypes: F32 for every algorithm; F64 for REFERENCE and IM2COL_GEMM (gradient checks).
 * An algorithm that does not apply to the arguments returns CT_ERR_UNSUPPORTED.
 * Workspace is allocated inside the call (and freed before it returns).
 */
#ifndef CORTADO_CONV_H
#define CORTADO_CONV_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

#define CT_CONV_GEOMETRY_LEN 25

/* Algorithms CT_CONV_ALGO_<IDENT> (ops/conv_algo.def) and fused activations
 * CT_ACTIVATION_<IDENT> (ops/activation.def), numbered by their line in the list. */
enum {
#define CT_CONV_ALGO(ident, name) CT_CONV_ALGO_##ident,
#include "ops/conv_algo.def"
#undef CT_CONV_ALGO
  CT_CONV_ALGO_COUNT
};
enum {
#define CT_ACTIVATION(ident, name, functor) CT_ACTIVATION_##ident,
#include "ops/activation.def"
#undef CT_ACTIVATION
  CT_ACTIVATION_COUNT
};

/* The algorithm AUTO would run for this pass (0 forward, 1 backward-data, 2 backward-weight). */
int ct_cpu_conv_choose(int dtype, int layout, const int64_t* g, int pass, int64_t stream);

/* y = act(conv(x, w) + bias); the activation is for inference (no backward through it). */
int ct_cpu_conv_forward(int dtype, int layout, int algorithm, const int64_t* g,
                        const void* x, const void* w, const void* bias, int activation, void* y, int64_t stream);

/*
 * Pre-packed weights (CPU, float32, inference). DIRECT_NHWC packs the weight into register-tile
 * blocks and WINOGRAD transforms every 3x3 filter (16/9 of the weight written) at every call;
 * with a weight that does not change, do it once: ct_cpu_conv_pack_weight, then
 * ct_cpu_conv_forward_packed with the packed buffer in place of the weight. The buffer starts with
 * a 16-float header (algorithm, groups, channels per group, taps, block width) that the forward
 * checks against its geometry; the layout also depends on this CPU's vector width, so a packed
 * weight is for this process only.
 * ct_cpu_conv_packed_len: floats of the packed weight for `algorithm` (AUTO: the one the forward
 * would choose), header included; 0 when that algorithm has no packed layout (reference, im2col,
 * depthwise, float64); a negative status on bad arguments.
 */
int64_t ct_cpu_conv_packed_len(int dtype, int layout, int algorithm, const int64_t* g, int64_t stream);
/* Packs w [K, C/groups, kernel...] into packed (packed_len floats, as ct_cpu_conv_packed_len gave). */
int ct_cpu_conv_pack_weight(int dtype, int layout, int algorithm, const int64_t* g, const void* w, void* packed,
                            int64_t packed_len, int64_t stream);
/* y = act(conv(x, w) + bias), w given packed (the algorithm is the one it was packed for). */
int ct_cpu_conv_forward_packed(int dtype, int layout, const int64_t* g, const void* x, const void* packed,
                               int64_t packed_len, const void* bias, int activation, void* y, int64_t stream);

/* dx = conv^T(dy, w): overwrites dx (shape of x). */
int ct_cpu_conv_backward_data(int dtype, int layout, int algorithm, const int64_t* g,
                              const void* dy, const void* w, void* dx, int64_t stream);

/* dw = sum over the batch of x (*) dy: overwrites dw; dbias = sum of dy per channel if not NULL. */
int ct_cpu_conv_backward_weight(int dtype, int layout, int algorithm, const int64_t* g,
                                const void* x, const void* dy, void* dw, void* dbias, int64_t stream);

/*
 * CUDA (native/cuda/conv.cu): the same arguments as the ct_cpu_ functions plus the stream.
 * dtypes F32 (TF32 tensor cores in IMPLICIT_GEMM, exact float32 in REFERENCE), BF16, F16
 * (float32 accumulation) and F64 (REFERENCE and DEPTHWISE only). Algorithms: AUTO
 * (DEPTHWISE for groups == C == K, REFERENCE for F64, else IMPLICIT_GEMM), REFERENCE (direct
 * loops), IMPLICIT_GEMM, DEPTHWISE; the CPU-only IM2COL_GEMM, DIRECT_NHWC and WINOGRAD run
 * IMPLICIT_GEMM (REFERENCE for F64).
 * Workspace (reordered weights, split-reduction partials) comes from cudaMallocAsync on the
 * stream and is freed with cudaFreeAsync before the call returns; no synchronization.
 * Every pass is deterministic (fixed reduction order, no atomics). Limits: N*oD*oH*oW and
 * N*D*H*W below 2^31, groups <= 65535 (CT_ERR_UNSUPPORTED otherwise).
 */
int ct_cuda_conv_forward(int dtype, int layout, int algorithm, const int64_t* g, const void* x, const void* w,
                         const void* bias, int activation, void* y, int64_t stream);
int ct_cuda_conv_backward_data(int dtype, int layout, int algorithm, const int64_t* g, const void* dy,
                               const void* w, void* dx, int64_t stream);
int ct_cuda_conv_backward_weight(int dtype, int layout, int algorithm, const int64_t* g, const void* x,
                                 const void* dy, void* dw, void* dbias, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
