/*
 * Attention family: fused scaled-dot-product attention, forward and backward, in the
 * FlashAttention-2 manner: the Lq x Lk score matrix is never stored. Queries are processed in
 * blocks; for each block the keys are streamed in blocks with an online softmax (running max m,
 * running sum l, rescaled accumulator), so extra memory is O(block) per thread. The forward
 * writes the output and the per-row log-sum-exp lse = m + log(l) of the scaled, masked scores;
 * the backward recomputes P = exp(S - lse) block by block:
 *   dV += P^T dO,   dP = dO V^T,   dS = P * (dP - rowsum(dO * O)),   dQ += scale dS K,   dK += scale dS^T Q
 *
 * dims {B, Hq, Hkv, Lq, Lk, D, Dv} come from the operands' descriptors; Hq % Hkv == 0 (grouped-query / multi-query
 * attention: query head h reads key/value head h / (Hq / Hkv), without copies).
 * Every tensor is described by 4 element strides (batch, head, sequence, feature) with the
 * feature stride 1, so both [B, H, L, D] and [B, L, H, D] layouts (and other views) are taken
 * as they lie: q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv], o [B, Hq, Lq, Dv].
 * lse: float32 [B, Hq, Lq], contiguous.
 * mask_kind: 0 none, 1 boolean (uint8, 1 = attend), 2 additive (same dtype as q, added to the
 * scaled scores); mask [B, H, Lq, Lk] described by 4 strides, 0 for broadcast dimensions
 * (a key-padding mask is [B, 1, 1, Lk]). causal: query i attends key j iff j <= i + (Lk - Lq)
 * (aligned to the bottom-right when the lengths differ). A row with no key to attend gets
 * output 0 and lse = -inf (and zero gradients).
 * scale multiplies q.k (usually 1/sqrt(D)). softcap > 0 caps the scaled score s = scale q.k to
 * softcap * tanh(s / softcap) before the mask is added (logit soft-capping as in Gemma 2; ONNX
 * Attention's softcap attribute); the backward multiplies dS by 1 - tanh^2. softcap = 0 disables
 * it; negative or non-finite values are CT_ERR_INVALID_ARG.
 * Dropout (p in [0, 1)): element (b, h, i, j) of P is kept iff philox_unit(r) >= p, where r is
 * lane e % 4 of Philox4x32-10 (native/shared/shared.h) for group e / 4, counter offset `offset`
 * and key `seed`, with e = ((b * Hq + h) * Lq + i) * Lk + j; kept values are scaled by 1/(1-p).
 * The forward and the backward draw the same mask. lse is of the scores before dropout.
 * dtypes: F32, F64 (reference checks), BF16, F16 (inputs widened, float32 accumulation).
 * Cost: forward 4 B Hq Lq Lk D FLOPs (2 matmuls; half with causal masking), backward ~2.5x.
 */
#ifndef CORTADO_ATTENTION_H
#define CORTADO_ATTENTION_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Mask kinds CT_ATTENTION_MASK_<IDENT>, numbered by their line in ops/attention_mask.def. */
enum {
#define CT_ATTENTION_MASK(ident, name) CT_ATTENTION_MASK_##ident,
#include "ops/attention_mask.def"
#undef CT_ATTENTION_MASK
  CT_ATTENTION_MASK_COUNT
};

/* The options of one call: scale multiplies q.k, softcap (0: none) caps the scaled score, dropout
 * keeps P's element iff philox_unit >= dropout_p (seed and offset as above), causal != 0 masks
 * j > i + (Lk - Lq). */
typedef struct ct_attention_params {
  double scale;
  double softcap;
  double dropout_p;
  uint64_t seed;
  uint64_t offset;
  int32_t causal;
  int32_t reserved;  /* 0 */
} ct_attention_params;

/* q, k, v, o: 4-d descriptors [B, H, L, D] (strides in that order, feature stride 1, any layout);
 * mask: NULL, or a 4-d descriptor [B, Hq, Lq, Lk] with broadcast strides 0, CT_BOOL (1 = attend)
 * or of q's dtype (additive); lse: float32 [B, Hq, Lq] contiguous. The kernel derives dims
 * {B, Hq, Hkv, Lq, Lk, D, Dv} from the shapes and checks that they agree. */
int ct_cpu_attention_forward(const ct_tensor* q, const ct_tensor* k, const ct_tensor* v, const ct_tensor* mask,
                             const ct_attention_params* params, const ct_tensor* o, float* lse, int64_t stream);

/* dq, dk, dv (shapes of q, k, v) are overwritten (dk/dv sum over the query heads of each group). */
int ct_cpu_attention_backward(const ct_tensor* q, const ct_tensor* k, const ct_tensor* v, const ct_tensor* mask,
                              const ct_attention_params* params, const ct_tensor* o, const ct_tensor* d_o,
                              const float* lse, const ct_tensor* dq, const ct_tensor* dk, const ct_tensor* dv,
                              int64_t stream);

/*
 * Rotary position embedding applied in place to x [B, H, L, D] (4 strides, feature stride 1):
 * for position p = positions[l] (int64, length L; NULL means p = l) and pair index i < D_rot/2
 * with theta_i = base^(-2i / D_rot): (x_a, x_b) <- (x_a cos(p theta_i) - x_b sin(p theta_i),
 * x_a sin(p theta_i) + x_b cos(p theta_i)), where the pair is (2i, 2i+1) when interleaved and
 * (i, i + D_rot/2) in the half-split form. Features >= D_rot are untouched. inverse != 0 rotates
 * by -angle (the backward: the gradient of a rotation is the inverse rotation).
 * Cost: 6 FLOPs and 2 transcendental evaluations per pair (angles computed in float64).
 */
int ct_cpu_rope(int dtype, const int64_t* dims4, void* x, const int64_t* x_strides,
                const int64_t* positions, int64_t rotary_dim, double base, int interleaved, int inverse, int64_t stream);

/*
 * CUDA twins (libcortado_cuda, native/cuda/attention.cu): the same arguments (device data
 * pointers; the descriptors, dims and strides stay host memory; RoPE's positions are a device
 * array). Same semantics: the dropout mask is the CPU's bit for bit. bf16/f16 run on tensor
 * cores (mma.sync m16n8k16, float32 accumulation) for max(D, Dv) <= 256 on sm_80+; float32 and
 * float64 run a SIMT path (float32 does not use TF32). max(D, Dv) > 256 is CT_ERR_UNSUPPORTED.
 * The backward allocates B Hq Lq (D + 1) floats of stream-ordered workspace (cudaMallocAsync).
 */
int ct_cuda_attention_forward(const ct_tensor* q, const ct_tensor* k, const ct_tensor* v, const ct_tensor* mask,
                              const ct_attention_params* params, const ct_tensor* o, float* lse, int64_t stream);

int ct_cuda_attention_backward(const ct_tensor* q, const ct_tensor* k, const ct_tensor* v, const ct_tensor* mask,
                               const ct_attention_params* params, const ct_tensor* o, const ct_tensor* d_o,
                               const float* lse, const ct_tensor* dq, const ct_tensor* dk, const ct_tensor* dv,
                               int64_t stream);

/* positions: device int64 [L] or NULL. */
int ct_cuda_rope(int dtype, const int64_t* dims4, void* x, const int64_t* x_strides,
                 const int64_t* positions, int64_t rotary_dim, double base, int interleaved, int inverse,
                 int64_t stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
