/*
 * SLAB family: the simplified linear attention of SLAB (Guo et al., ICML 2024), forward and backward.
 *
 * With phi = ReLU applied elementwise to each query and key row, for one (batch, head) of
 * q, k, v [N, D]:
 *   KV   = (1/N) sum_m phi(k_m) v_m^T          [D, D]
 *   kbar = (1/N) sum_m phi(k_m)                [D]
 *   o_n  = phi(q_n)^T KV / (phi(q_n) . kbar + eps)
 * i.e. Q (K^T V) normalized by Q (K^T 1), with the 1/N of the reference implementation (it keeps
 * the sums O(1) at any length; eps then acts on the mean, not on the sum). The N x N score matrix
 * never exists: cost O(N D^2).
 * Backward (dout [N, D]): with z_n = phi(q_n) . kbar + eps, g_n = dout_n / z_n and
 * c_n = -(dout_n . o_n) / z_n:
 *   dq_n = [KV g_n + c_n kbar] * (q_n > 0)
 *   dKV  = sum_n phi(q_n) g_n^T,  dkbar = sum_n c_n phi(q_n)
 *   dk_m = (1/N) [dKV v_m + dkbar] * (k_m > 0),  dv_m = (1/N) dKV^T phi(k_m)
 * (ReLU's derivative at 0 is 0.)
 *
 * dims {B, H, N, D} (int64, >= 0; host memory). q, k, v are [B, H, N, D] described by 3 element
 * strides each (batch, head, sequence; the feature stride is 1), so [B, H, N, D] and
 * [B, N, H, D] layouts are read as they lie. o, d_o, dq, dk, dv are contiguous [B, H, N, D].
 * eps > 0 and finite. dtypes: F32 (float32 accumulation), F64. An empty tensor is a no-op.
 * Cost per (batch, head): forward 4 N D^2 FLOPs (KV and the products), reads q, k, v once and
 * writes o once (4 N D sizeof(T) bytes); backward ~12 N D^2 FLOPs, 7 N D sizeof(T) bytes.
 * The CUDA kernels keep KV (and dKV) of one head in shared memory: D <= 128 for F32 and D <= 64
 * for F64 (CT_ERR_UNSUPPORTED past that); the backward uses dk and dv as scratch for its per-row
 * values before writing them.
 */
#ifndef CORTADO_SLAB_H
#define CORTADO_SLAB_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* o = slab_attention(q, k, v) as above. */
int ct_cpu_slab_attention_forward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                  const void* k, const int64_t* k_strides, const void* v, const int64_t* v_strides,
                                  double eps, void* o, int64_t stream);
/* dq, dk, dv (contiguous, overwritten) from d_o (contiguous) and q, k, v. */
int ct_cpu_slab_attention_backward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                   const void* k, const int64_t* k_strides, const void* v, const int64_t* v_strides,
                                   const void* d_o, double eps, void* dq, void* dk, void* dv, int64_t stream);

int ct_cuda_slab_attention_forward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                   const void* k, const int64_t* k_strides, const void* v, const int64_t* v_strides,
                                   double eps, void* o, int64_t stream);
int ct_cuda_slab_attention_backward(int dtype, const int64_t* dims, const void* q, const int64_t* q_strides,
                                    const void* k, const int64_t* k_strides, const void* v, const int64_t* v_strides,
                                    const void* d_o, double eps, void* dq, void* dk, void* dv, int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif

#endif
