/*
 * Pooling family: max pooling (with indices for backward), average pooling (padding counted
 * or not), adaptive average pooling; forward and backward; 1-d, 2-d, 3-d through the conv
 * geometry of conv.h (g[1] = g[2] = C channels, g[3] = groups = C; no weight).
 *
 * Max pooling: y = max over the window (padding never wins; NaN propagates); indices (int64,
 * may be NULL) hold, per output, the flat index of the chosen input element within its
 * (n, c) plane: (d * H + h) * W + w. Backward scatters dy to those positions (dx zeroed first).
 * Average pooling: y = sum(window) / (count_include_pad ? kD*kH*kW : number of non-padding
 * elements). Backward spreads dy evenly.
 * Adaptive average pooling to (oD, oH, oW): window of output i along a dim of size L is
 * [floor(i*L/o), ceil((i+1)*L/o)). Global average pooling is adaptive to 1x1x1.
 * Layouts as conv.h. dtypes F32, F64; the CPU's max pooling also takes U8 (quantization codes)
 * with indices NULL: the max of the codes, 0 for a window of only padding.
 * Cost: reads each input once per window covering it.
 */
#ifndef CORTADO_POOL_H
#define CORTADO_POOL_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

int ct_cpu_maxpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y,
                           int64_t* indices, int64_t stream);
int ct_cpu_maxpool_backward(int dtype, int layout, const int64_t* g, const void* dy,
                            const int64_t* indices, void* dx, int64_t stream);
int ct_cpu_avgpool_forward(int dtype, int layout, const int64_t* g, int count_include_pad,
                           const void* x, void* y, int64_t stream);
int ct_cpu_avgpool_backward(int dtype, int layout, const int64_t* g, int count_include_pad,
                            const void* dy, void* dx, int64_t stream);
/* g as above with kernel/stride/padding entries ignored: only N, C, input and output sizes. */
int ct_cpu_adaptive_avgpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y, int64_t stream);
int ct_cpu_adaptive_avgpool_backward(int dtype, int layout, const int64_t* g, const void* dy, void* dx, int64_t stream);

/*
 * CUDA twins (native/cuda/pool.cu): the same arguments (device pointers; g stays a HOST array)
 * plus the stream, the same semantics, dtypes F32 and F64. Forward: one thread per output
 * (NCHW: consecutive threads along the output width; NHWC: along the channels), or one warp per
 * output for NCHW windows of 64 taps and more. Backward is a gather (one thread per dx element
 * adding, in ascending output order, the dy of the windows that cover it): no atomics,
 * deterministic, and max pooling's dx is bit-identical to the CPU's. Max-pool backward first
 * checks every index (-1 or a tap of its own window, else CT_ERR_INDEX_OUT_OF_RANGE naming the
 * first bad position): one extra read of the indices and one stream synchronization.
 */
int ct_cuda_maxpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y,
                            int64_t* indices, int64_t stream);
int ct_cuda_maxpool_backward(int dtype, int layout, const int64_t* g, const void* dy,
                             const int64_t* indices, void* dx, int64_t stream);
int ct_cuda_avgpool_forward(int dtype, int layout, const int64_t* g, int count_include_pad,
                            const void* x, void* y, int64_t stream);
int ct_cuda_avgpool_backward(int dtype, int layout, const int64_t* g, int count_include_pad,
                             const void* dy, void* dx, int64_t stream);
int ct_cuda_adaptive_avgpool_forward(int dtype, int layout, const int64_t* g, const void* x, void* y,
                                     int64_t stream);
int ct_cuda_adaptive_avgpool_backward(int dtype, int layout, const int64_t* g, const void* dy, void* dx,
                                      int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
