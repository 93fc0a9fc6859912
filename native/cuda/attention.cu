/*
 * Attention family on CUDA (attention.h): fused scaled-dot-product attention (forward and
 * backward, FlashAttention-2) and rotary position embeddings. Semantics are those of the CPU
 * twin (native/cpu/attention.cpp): masks, bottom-right causal alignment, grouped-query heads
 * read in place, Philox dropout keyed per element exactly as attention.h states (so the CUDA
 * forward, the CUDA backward and the CPU draw the same mask), empty rows -> o = 0, lse = -inf.
 *
 * Tensor-core path (bf16, f16; max(D, Dv) <= 256; sm_80+): the head dim is padded to DP in
 * {32, 64, 80, 96, 128, 256} (zero features contribute nothing). mma.sync.aligned.m16n8k16
 * (bf16/f16 inputs, float32 accumulation) with the fragment layouts of the PTX ISA ("Matrix
 * Fragments for mma.m16n8k16"): A row-major pairs read from shared memory, B "col" pairs read
 * from row-major K/Q/dO tiles, transposed B operands (V, dO, Q, K) via ldmatrix.x4.trans.
 *  Forward: one CTA per (query block of BQ = 16 * NW rows, head, batch) (128 rows with 8
 *   warps for DP <= 64, 64 rows with 4 warps otherwise); warp w owns rows [16w, 16w + 16).
 *   Q is staged once; K/V tiles of BK keys (64; 32 for DP = 256) stream through shared memory
 *   with cp.async double buffering (tile t+1 loads while tile t computes). S = Q K^T on tensor
 *   cores, soft-capped when softcap > 0 (softcap tanh(s / softcap)), scaled to the log2
 *   domain, masked (bounds, causal, bool/additive), online softmax in registers (row
 *   max/sum across the 4 lanes of a fragment row by shuffles), dropout, P
 *   repacked from the accumulator fragments into bf16/f16 A fragments, O += P V. Causal: key
 *   tiles wholly above the block's diagonal are never loaded; a warp skips tiles above its own
 *   16 rows; only tiles crossing the diagonal pay for the element test. Writes O and lse.
 *  Backward (FA2 split): (1) Delta = rowsum(dO * O) (one warp per row, float); dQ workspace
 *   (float32 [B, Hq, Lq, D]) zeroed. (2) one CTA per (key block of BKB = 16 * NW keys, kv head,
 *   batch); K, V staged once; for each query head of the group and each query block (starting
 *   at the first block that sees the keys when causal): Q, dO, lse, Delta staged, then per
 *   warp (16 keys): S^T = K Q^T, P^T = exp(S^T - lse) (recomputed, never stored), dP^T = V dO^T,
 *   dS^T = P^T (dP^T z - Delta) (times 1 - tanh^2 with softcap), dV += (P z)^T dO,
 *   dK += dS^T Q (registers; shared-memory float accumulators for DP = 256), dS written to
 *   shared memory, then dQ += dS K split over the warps by query rows and added with float
 *   atomicAdd into the workspace. (3) dq = scale * workspace, converted and written through
 *   dq's strides. dK is scaled when written.
 *  Shared memory per CTA (bytes, T = 2 bytes, rows padded by 8 elements against bank
 *  conflicts) is computed and static_asserted below; > 48 KiB is opted into with
 *  cudaFuncSetAttribute. If the device cannot grant it, the SIMT path runs instead.
 *  16-byte cp.async needs 16-byte aligned rows (pointers, strides, D, Dv multiples of 8
 *  elements); otherwise the tiles are loaded with scalar loads (same kernels, no overlap).
 * SIMT path (float32, float64; also the fallback): float32 does NOT use TF32 tensor cores; it
 *  is a plain SIMT path, one warp per query row (forward, dQ) or key row (dK/dV): each lane
 *  scores one key (query) of a chunk of 32, the warp does the online softmax with shuffles,
 *  and every lane accumulates its features (lane + 32 v) of the output row in registers
 *  (max(D, Dv) <= 256). Accumulation in float (f32, f16, bf16) or double (f64); for f64 the
 *  backward recomputes the row lse in double (as the CPU does). Correct, not fast: meant for
 *  float32/float64 checks and odd devices.
 * Cost: forward 4 B Hq Lq Lk D FLOPs (about half with causal masking) + B Hq Lq Lk exps;
 *  backward ~2.5x (5 matmuls instead of 2); bytes: Q, O once, K and V once per query block
 *  (forward) and Q, dO once per key block (backward), mostly from L2. Extra memory: none in
 *  the forward; B Hq Lq (D + 1) floats in the backward (O(L), never O(Lq Lk)).
 *
 * RoPE: one thread per (position l, pair i) computes cos/sin of p theta_i in float64 (as the
 *  CPU does) and rotates that pair in every (b, h) row of its y-slice of the grid, in place,
 *  rotation in float64 too; inverse rotates by -angle. 6 FLOPs per pair, memory bound.
 */
#include "common.cuh"
#include "attention_args.h"  // argument checks shared with the CPU library
#include "ptx.cuh"
#include "cortado/attention.h"

#include <cmath>

namespace ct {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ------------------------------------------------------------------ parameters
struct AttnArgs {
  const void* q;
  const void* k;
  const void* v;
  const void* mask;
  const void* o_in;  // backward: the forward's output
  const void* d_o;
  void* o;           // forward output
  const float* lse;  // backward input
  float* lse_out;    // forward output
  void* dq;
  void* dk;
  void* dv;
  float* dq_acc;     // backward workspace [B, Hq, Lq, D]
  const void* delta; // backward workspace [B, Hq, Lq] (float, or double for f64)
  const void* lse64; // f64 backward: lse recomputed in double
  int64_t qs[4], ks[4], vs[4], ms[4], os[4], dos[4], dqs[4], dks[4], dvs[4];
  int64_t B, Hq, Hkv, G, Lq, Lk, D, Dv, coff;
  int mask_kind, causal, vec;
  double scale;
  float scale_log2;  // scale * log2(e)
  double softcap;    // 0: none
  float cap_log2;    // softcap * log2(e)
  float scale_cap;   // scale / softcap
  float p;           // dropout probability (0: none), compared as float like the CPU
  double zs;         // 1 / (1 - p)
  uint64_t seed, offset;
};

template <class T> __device__ __forceinline__ T zero_of() { return store<T>((compute_t<T>)0); }

/* Dropout keep test of element (b, h, i, j) (attention.h numbering). */
__device__ __forceinline__ bool drop_keep(const AttnArgs& a, int64_t b, int64_t h, int64_t i, int64_t j) {
  const uint64_t e = (((uint64_t)b * (uint64_t)a.Hq + (uint64_t)h) * (uint64_t)a.Lq + (uint64_t)i) * (uint64_t)a.Lk +
                     (uint64_t)j;
  const philox_out r = philox4x32_10(e >> 2, a.seed, a.offset);
  return philox_unit(r.r[e & 3]) >= a.p;
}

/* Additive term of the (unscaled-domain) mask for (b, h, i, j): 0, -inf or the additive value.
 * Causality and bounds are the caller's business. */
template <class T, class C>
__device__ __forceinline__ C mask_value(const AttnArgs& a, int64_t b, int64_t h, int64_t i, int64_t j) {
  if (a.mask_kind == CT_ATTENTION_MASK_NONE) return (C)0;
  const int64_t off = b * a.ms[0] + h * a.ms[1] + i * a.ms[2] + j * a.ms[3];
  if (a.mask_kind == CT_ATTENTION_MASK_BOOL) return ((const uint8_t*)a.mask)[off] ? (C)0 : -(C)INFINITY;
  return (C)load<T>(((const T*)a.mask)[off]);
}

__device__ __forceinline__ int64_t key_end_dev(const AttnArgs& a, int64_t i0, int64_t nq) {
  if (!a.causal) return a.Lk;
  int64_t e = i0 + nq - 1 + a.coff + 1;
  return e < 0 ? 0 : (e > a.Lk ? a.Lk : e);
}
__device__ __forceinline__ int64_t query_begin_dev(const AttnArgs& a, int64_t j0) {
  if (!a.causal) return 0;
  int64_t i = j0 - a.coff;
  return i < 0 ? 0 : (i > a.Lq ? a.Lq : i);
}

// ------------------------------------------------------------------ PTX helpers (ptx.cuh)
using ptx::cp_async16;
using ptx::cp_async_commit;
using ptx::cp_async_wait_all;
using ptx::ldsm_x4_t;
using ptx::mma16816;

/* Two floats as one 32-bit register of two 16-bit values (lo in the low half). */
template <class T> __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

__device__ __forceinline__ uint32_t lds32(const void* p) { return *reinterpret_cast<const uint32_t*>(p); }

/* A fragment (16x16, row-major) at rows r0.., columns k0.. of a shared tile with row stride ld. */
template <class T>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const T* s, int ld, int r0, int k0, int g, int t) {
  a[0] = lds32(s + (r0 + g) * ld + k0 + 2 * t);
  a[1] = lds32(s + (r0 + g + 8) * ld + k0 + 2 * t);
  a[2] = lds32(s + (r0 + g) * ld + k0 + 2 * t + 8);
  a[3] = lds32(s + (r0 + g + 8) * ld + k0 + 2 * t + 8);
}

/* Block-cooperative tile load: rows [0, ROWS) of a [rows_valid, F] slice (row stride rs) into
 * s[ROWS][LD]; columns < F only (the padding columns were zeroed once), rows >= rows_valid
 * zero-filled. vec: 16-byte cp.async (caller checked alignment and F % 8 == 0). */
template <class T, int ROWS, int LD, int NTHREADS>
__device__ __forceinline__ void load_tile(T* s, const T* g, int64_t rs, int64_t rows_valid, int F, bool vec) {
  if (vec) {
    const int chunks = F >> 3;
    for (int x = threadIdx.x; x < ROWS * chunks; x += NTHREADS) {
      const int r = x / chunks, c = (x - r * chunks) * 8;
      const bool ok = r < rows_valid;
      cp_async16(s + r * LD + c, ok ? (const void*)(g + r * rs + c) : (const void*)g, ok);
    }
  } else {
    for (int x = threadIdx.x; x < ROWS * F; x += NTHREADS) {
      const int r = x / F, c = x - r * F;
      s[r * LD + c] = r < rows_valid ? g[r * rs + c] : zero_of<T>();
    }
  }
}

template <int NTHREADS> __device__ __forceinline__ void zero_smem(void* p, int bytes) {
  uint4* q = reinterpret_cast<uint4*>(p);
  const uint4 z = make_uint4(0, 0, 0, 0);
  for (int x = threadIdx.x; x < bytes / 16; x += NTHREADS) q[x] = z;
}

// ------------------------------------------------------------------ tile configurations
template <int DP> struct FwdCfg {
  static constexpr int NW = DP <= 64 ? 8 : 4;
  static constexpr int BQ = 16 * NW;
  static constexpr int BK = DP == 256 ? 32 : 64;
  static constexpr int LD = DP + 8;
  static constexpr int SMEM = (BQ + 4 * BK) * LD * 2;
  static_assert(SMEM <= 160 * 1024, "forward tile exceeds the sm_80 shared-memory budget");
  static_assert(LD % 8 == 0, "rows must stay 16-byte aligned");
};
template <int DP> struct BwdCfg {
  static constexpr bool ACC_REG = DP <= 128;  // dK/dV accumulators in registers (else shared float)
  static constexpr int NW = DP == 256 ? 2 : 4;
  static constexpr int BKB = 16 * NW;
  static constexpr int BQB = DP <= 64 ? 64 : 32;
  static constexpr int LD = DP + 8;
  static constexpr int LDS_DS = BKB + 8;
  static constexpr int SMEM_T = (2 * BKB + 2 * BQB) * LD * 2 + BQB * LDS_DS * 2;
  static constexpr int SMEM = SMEM_T + 2 * BQB * 4 + (ACC_REG ? 0 : 2 * BKB * DP * 4);
  static_assert(SMEM <= 160 * 1024, "backward tile exceeds the sm_80 shared-memory budget");
  static_assert(SMEM_T % 16 == 0 && LD % 8 == 0 && LDS_DS % 2 == 0, "alignment");
  static_assert(NW % (BQB / 16) == 0 || (BQB / 16) % NW == 0, "warp split of the dQ product");
};

// ================================================================== tensor-core forward
template <class T, int DP>
__global__ void __launch_bounds__(FwdCfg<DP>::NW * 32) fa_fwd_kernel(const AttnArgs a) {
  using Cfg = FwdCfg<DP>;
  constexpr int NW = Cfg::NW, BQ = Cfg::BQ, BK = Cfg::BK, LD = Cfg::LD, NT = NW * 32;
  constexpr int NTS = BK / 8;   // score n-tiles per warp row slice
  constexpr int NTO = DP / 8;   // output n-tiles
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + BQ * LD;       // 2 buffers of BK * LD
  T* sV = sK + 2 * BK * LD;   // 2 buffers of BK * LD

  const int64_t nqb = (a.Lq + BQ - 1) / BQ;
  const int64_t item = blockIdx.x;
  const int64_t qb = nqb - 1 - item % nqb;  // heavy (late, causal) blocks first
  const int64_t bh = item / nqb;
  const int64_t h = bh % a.Hq, b = bh / a.Hq, hk = h / a.G;
  const int64_t i0 = qb * BQ;
  const int64_t nq = a.Lq - i0 < BQ ? a.Lq - i0 : BQ;
  const int64_t jend = key_end_dev(a, i0, nq);
  const int ntile = (int)((jend + BK - 1) / BK);

  const T* qg = (const T*)a.q + b * a.qs[0] + h * a.qs[1] + i0 * a.qs[2];
  const T* kg = (const T*)a.k + b * a.ks[0] + hk * a.ks[1];
  const T* vg = (const T*)a.v + b * a.vs[0] + hk * a.vs[1];
  const bool vec = a.vec != 0;

  zero_smem<NT>(smem_raw, Cfg::SMEM);
  __syncthreads();
  load_tile<T, BQ, LD, NT>(sQ, qg, a.qs[2], nq, (int)a.D, vec);
  if (ntile > 0) {
    const int64_t nk = jend < BK ? jend : BK;
    load_tile<T, BK, LD, NT>(sK, kg, a.ks[2], nk, (int)a.D, vec);
    load_tile<T, BK, LD, NT>(sV, vg, a.vs[2], nk, (int)a.Dv, vec);
  }
  cp_async_commit();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t ra = i0 + warp * 16 + g, rb = ra + 8;  // this thread's two rows
  float oacc[NTO][4];
#pragma unroll
  for (int n = 0; n < NTO; ++n) oacc[n][0] = oacc[n][1] = oacc[n][2] = oacc[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const bool warp_live = warp * 16 < nq;
  const int64_t warp_last = i0 + warp * 16 + 15;

  for (int jt = 0; jt < ntile; ++jt) {
    cp_async_wait_all();
    __syncthreads();  // tile jt visible to all; everyone is done with tile jt-1's buffer
    if (jt + 1 < ntile) {
      const int64_t j1 = (int64_t)(jt + 1) * BK;
      const int64_t nk = jend - j1 < BK ? jend - j1 : BK;
      const int buf = (jt + 1) & 1;
      load_tile<T, BK, LD, NT>(sK + buf * BK * LD, kg + j1 * a.ks[2], a.ks[2], nk, (int)a.D, vec);
      load_tile<T, BK, LD, NT>(sV + buf * BK * LD, vg + j1 * a.vs[2], a.vs[2], nk, (int)a.Dv, vec);
    }
    cp_async_commit();
    const int64_t j0 = (int64_t)jt * BK;
    if (!warp_live) continue;
    if (a.causal && j0 > warp_last + a.coff) continue;  // the whole tile is above this warp's diagonal
    const T* cK = sK + (jt & 1) * BK * LD;
    const T* cV = sV + (jt & 1) * BK * LD;

    // S = Q K^T (16 x BK per warp)
    float s[NTS][4];
#pragma unroll
    for (int n = 0; n < NTS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kc = 0; kc < DP / 16; ++kc) {
      uint32_t af[4];
      load_a<T>(af, sQ, LD, warp * 16, kc * 16, g, t);
#pragma unroll
      for (int n = 0; n < NTS; ++n) {
        const T* kr = cK + (n * 8 + g) * LD + kc * 16 + 2 * t;
        mma16816<T>(s[n], af, lds32(kr), lds32(kr + 8));
      }
    }
    // scale (log2 domain) and mask
    const bool diag = a.causal && j0 + BK - 1 > i0 + warp * 16 + a.coff;
    const bool edge = j0 + BK > jend;
#pragma unroll
    for (int n = 0; n < NTS; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t row = e < 2 ? ra : rb;
        const int64_t j = j0 + n * 8 + 2 * t + (e & 1);
        float x = a.softcap > 0 ? a.cap_log2 * tanhf(s[n][e] * a.scale_cap) : s[n][e] * a.scale_log2;
        if (edge && j >= jend) x = -INFINITY;
        else if (diag && j > row + a.coff) x = -INFINITY;
        else if (a.mask_kind != CT_ATTENTION_MASK_NONE) {
          if (row < a.Lq) x += mask_value<T, float>(a, b, h, row, j) * kLog2e;
          else x = -INFINITY;
        }
        s[n][e] = x;
      }
    // online softmax over the two rows
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < NTS; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mnew = fmaxf(m[r], mx);
      if (mnew == -INFINITY) {  // nothing visible in this row yet
#pragma unroll
        for (int n = 0; n < NTS; ++n) s[n][2 * r] = s[n][2 * r + 1] = 0.f;
        continue;
      }
      const float alpha = exp2f(m[r] - mnew);
      float sum = 0.f;
#pragma unroll
      for (int n = 0; n < NTS; ++n) {
        const float p0 = exp2f(s[n][2 * r] - mnew), p1 = exp2f(s[n][2 * r + 1] - mnew);
        s[n][2 * r] = p0;
        s[n][2 * r + 1] = p1;
        sum += p0 + p1;
      }
      l[r] = l[r] * alpha + sum;
      m[r] = mnew;
#pragma unroll
      for (int n = 0; n < NTO; ++n) {
        oacc[n][2 * r] *= alpha;
        oacc[n][2 * r + 1] *= alpha;
      }
    }
    if (a.p > 0.f) {
      const float zs = (float)a.zs;
#pragma unroll
      for (int n = 0; n < NTS; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t row = e < 2 ? ra : rb;
          const int64_t j = j0 + n * 8 + 2 * t + (e & 1);
          if (s[n][e] != 0.f) s[n][e] = (row < a.Lq && j < a.Lk && drop_keep(a, b, h, row, j)) ? s[n][e] * zs : 0.f;
        }
    }
    // O += P V
#pragma unroll
    for (int kc = 0; kc < BK / 16; ++kc) {
      uint32_t pf[4];
      pf[0] = pack2<T>(s[2 * kc][0], s[2 * kc][1]);
      pf[1] = pack2<T>(s[2 * kc][2], s[2 * kc][3]);
      pf[2] = pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      pf[3] = pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
      const int mi = lane >> 3, rr = lane & 7;
#pragma unroll
      for (int np = 0; np < DP / 16; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(b0, b1, b2, b3, cV + (kc * 16 + rr + (mi & 1) * 8) * LD + np * 16 + (mi >> 1) * 8);
        mma16816<T>(oacc[2 * np], pf, b0, b1);
        mma16816<T>(oacc[2 * np + 1], pf, b2, b3);
      }
    }
  }
  cp_async_wait_all();

  // epilogue: full row sums, O / l, lse
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  if (!warp_live) return;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r == 0 ? ra : rb;
    if (row >= a.Lq) continue;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    T* orow = (T*)a.o + b * a.os[0] + h * a.os[1] + row * a.os[2];
#pragma unroll
    for (int n = 0; n < NTO; ++n) {
      const int c = n * 8 + 2 * t;
      if (c < a.Dv) orow[c] = store<T>(oacc[n][2 * r] * inv);
      if (c + 1 < a.Dv) orow[c + 1] = store<T>(oacc[n][2 * r + 1] * inv);
    }
    if (t == 0) a.lse_out[(b * a.Hq + h) * a.Lq + row] = l[r] > 0.f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
  }
}

// ================================================================== tensor-core backward
template <class T, int DP>
__global__ void __launch_bounds__(BwdCfg<DP>::NW * 32) fa_bwd_kernel(const AttnArgs a) {
  using Cfg = BwdCfg<DP>;
  constexpr int NW = Cfg::NW, BKB = Cfg::BKB, BQB = Cfg::BQB, LD = Cfg::LD, LDS = Cfg::LDS_DS, NT = NW * 32;
  constexpr bool ACC_REG = Cfg::ACC_REG;
  constexpr int NTQ = BQB / 8;  // query n-tiles of S^T per warp
  constexpr int NTO = DP / 8;   // feature n-tiles
  constexpr int RS = BQB / 16;  // query row slices of the dQ product
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sK = reinterpret_cast<T*>(smem_raw);
  T* sV = sK + BKB * LD;
  T* sQ = sV + BKB * LD;
  T* sdO = sQ + BQB * LD;
  T* sdS = sdO + BQB * LD;  // [BQB][LDS]: dS (query-major)
  float* sL = reinterpret_cast<float*>(smem_raw + Cfg::SMEM_T);
  float* sDl = sL + BQB;
  float* sAcc = sDl + BQB;  // !ACC_REG: dK [BKB][DP], dV [BKB][DP]

  const int64_t nkb = (a.Lk + BKB - 1) / BKB;
  const int64_t item = blockIdx.x;
  const int64_t kb = item % nkb, bh = item / nkb;
  const int64_t hk = bh % a.Hkv, b = bh / a.Hkv;
  const int64_t j0 = kb * BKB;
  const int64_t nk = a.Lk - j0 < BKB ? a.Lk - j0 : BKB;
  const bool vec = a.vec != 0;

  zero_smem<NT>(smem_raw, Cfg::SMEM);
  __syncthreads();
  load_tile<T, BKB, LD, NT>(sK, (const T*)a.k + b * a.ks[0] + hk * a.ks[1] + j0 * a.ks[2], a.ks[2], nk, (int)a.D, vec);
  load_tile<T, BKB, LD, NT>(sV, (const T*)a.v + b * a.vs[0] + hk * a.vs[1] + j0 * a.vs[2], a.vs[2], nk, (int)a.Dv,
                            vec);
  cp_async_commit();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int mi = lane >> 3, rr = lane & 7;
  float dk_acc[ACC_REG ? NTO : 1][4], dv_acc[ACC_REG ? NTO : 1][4];
#pragma unroll
  for (int n = 0; n < (ACC_REG ? NTO : 1); ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk_acc[n][e] = dv_acc[n][e] = 0.f;
  const int64_t key_a = j0 + warp * 16 + g, key_b = key_a + 8;  // this thread's two keys
  const int64_t ibeg = query_begin_dev(a, j0) / BQB * BQB;
  const float* delta = (const float*)a.delta;
  const float zs = (float)a.zs;

  for (int64_t h = hk * a.G; h < (hk + 1) * a.G; ++h) {
    const T* qh = (const T*)a.q + b * a.qs[0] + h * a.qs[1];
    const T* doh = (const T*)a.d_o + b * a.dos[0] + h * a.dos[1];
    const int64_t rowbase = (b * a.Hq + h) * a.Lq;
    for (int64_t i0 = ibeg; i0 < a.Lq; i0 += BQB) {
      const int64_t nq = a.Lq - i0 < BQB ? a.Lq - i0 : BQB;
      __syncthreads();  // the previous block's sQ, sdO, sdS, sL are no longer read
      load_tile<T, BQB, LD, NT>(sQ, qh + i0 * a.qs[2], a.qs[2], nq, (int)a.D, vec);
      load_tile<T, BQB, LD, NT>(sdO, doh + i0 * a.dos[2], a.dos[2], nq, (int)a.Dv, vec);
      cp_async_commit();
      for (int x = threadIdx.x; x < BQB; x += NT) {
        sL[x] = x < nq ? a.lse[rowbase + i0 + x] * kLog2e : -INFINITY;
        sDl[x] = x < nq ? delta[rowbase + i0 + x] : 0.f;
      }
      cp_async_wait_all();
      __syncthreads();

      // S^T = K Q^T (16 keys x BQB queries per warp)
      float st[NTQ][4], dpt[NTQ][4];
#pragma unroll
      for (int n = 0; n < NTQ; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[n][e] = dpt[n][e] = 0.f;
#pragma unroll
      for (int kc = 0; kc < DP / 16; ++kc) {
        uint32_t af[4], vf[4];
        load_a<T>(af, sK, LD, warp * 16, kc * 16, g, t);
        load_a<T>(vf, sV, LD, warp * 16, kc * 16, g, t);
#pragma unroll
        for (int n = 0; n < NTQ; ++n) {
          const T* qr = sQ + (n * 8 + g) * LD + kc * 16 + 2 * t;
          mma16816<T>(st[n], af, lds32(qr), lds32(qr + 8));
          const T* dr = sdO + (n * 8 + g) * LD + kc * 16 + 2 * t;
          mma16816<T>(dpt[n], vf, lds32(dr), lds32(dr + 8));  // dP^T = V dO^T
        }
      }
      // P^T, dS^T; P^T z kept in st, dS^T in dpt
#pragma unroll
      for (int n = 0; n < NTQ; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qi = n * 8 + 2 * t + (e & 1);
          const int64_t i = i0 + qi;
          const int64_t key = e < 2 ? key_a : key_b;
          const float L = sL[qi];
          float x = st[n][e] * a.scale_log2, gcap = 1.f;  // gcap: d(capped)/d(score)
          if (a.softcap > 0) {
            const float tc = tanhf(st[n][e] * a.scale_cap);
            x = a.cap_log2 * tc;
            gcap = 1.f - tc * tc;
          }
          bool vis = i < a.Lq && key < a.Lk && L != -INFINITY && !(a.causal && key > i + a.coff);
          if (vis && a.mask_kind != CT_ATTENTION_MASK_NONE) x += mask_value<T, float>(a, b, h, i, key) * kLog2e;
          const float p = vis && x != -INFINITY ? exp2f(x - L) : 0.f;
          float z = 1.f;
          if (a.p > 0.f && p != 0.f) z = drop_keep(a, b, h, i, key) ? zs : 0.f;
          dpt[n][e] = p * (dpt[n][e] * z - sDl[qi]) * gcap;
          st[n][e] = p * z;
        }
      // dV += (P z)^T dO ; dK += dS^T Q   (k = queries)
#pragma unroll
      for (int np = 0; np < DP / 16; ++np) {
        float cv0[4] = {0.f, 0.f, 0.f, 0.f}, cv1[4] = {0.f, 0.f, 0.f, 0.f};
        float ck0[4] = {0.f, 0.f, 0.f, 0.f}, ck1[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int kc = 0; kc < BQB / 16; ++kc) {
          uint32_t pf[4], sf[4];
          pf[0] = pack2<T>(st[2 * kc][0], st[2 * kc][1]);
          pf[1] = pack2<T>(st[2 * kc][2], st[2 * kc][3]);
          pf[2] = pack2<T>(st[2 * kc + 1][0], st[2 * kc + 1][1]);
          pf[3] = pack2<T>(st[2 * kc + 1][2], st[2 * kc + 1][3]);
          sf[0] = pack2<T>(dpt[2 * kc][0], dpt[2 * kc][1]);
          sf[1] = pack2<T>(dpt[2 * kc][2], dpt[2 * kc][3]);
          sf[2] = pack2<T>(dpt[2 * kc + 1][0], dpt[2 * kc + 1][1]);
          sf[3] = pack2<T>(dpt[2 * kc + 1][2], dpt[2 * kc + 1][3]);
          const int qrow = kc * 16 + rr + (mi & 1) * 8, fcol = np * 16 + (mi >> 1) * 8;
          uint32_t b0, b1, b2, b3;
          ldsm_x4_t(b0, b1, b2, b3, sdO + qrow * LD + fcol);
          mma16816<T>(cv0, pf, b0, b1);
          mma16816<T>(cv1, pf, b2, b3);
          ldsm_x4_t(b0, b1, b2, b3, sQ + qrow * LD + fcol);
          mma16816<T>(ck0, sf, b0, b1);
          mma16816<T>(ck1, sf, b2, b3);
        }
        if constexpr (ACC_REG) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            dv_acc[2 * np][e] += cv0[e];
            dv_acc[2 * np + 1][e] += cv1[e];
            dk_acc[2 * np][e] += ck0[e];
            dk_acc[2 * np + 1][e] += ck1[e];
          }
        } else {
          float* sdK = sAcc;
          float* sdV = sAcc + BKB * DP;
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int r = warp * 16 + g + (e >> 1) * 8, c = np * 16 + 2 * t + (e & 1);
            sdV[r * DP + c] += cv0[e];
            sdV[r * DP + c + 8] += cv1[e];
            sdK[r * DP + c] += ck0[e];
            sdK[r * DP + c + 8] += ck1[e];
          }
        }
      }
      // dS to shared memory, query-major: sdS[q][key]
#pragma unroll
      for (int n = 0; n < NTQ; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          sdS[(n * 8 + 2 * t + (e & 1)) * LDS + warp * 16 + g + (e >> 1) * 8] = store<T>(dpt[n][e]);
      __syncthreads();
      // dQ (BQB x DP) += dS (BQB x BKB) K (BKB x DP): warp -> query slice, feature pairs split
      {
        constexpr int WPS = NW >= RS ? NW / RS : 1;  // warps per query slice
        for (int slice = warp % RS; slice < RS; slice += (NW >= RS ? RS : NW)) {
          for (int np = NW >= RS ? warp / RS : 0; np < DP / 16; np += WPS) {
            float c0[4] = {0.f, 0.f, 0.f, 0.f}, c1[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int kc = 0; kc < BKB / 16; ++kc) {
              uint32_t af[4];
              load_a<T>(af, sdS, LDS, slice * 16, kc * 16, g, t);
              uint32_t b0, b1, b2, b3;
              ldsm_x4_t(b0, b1, b2, b3, sK + (kc * 16 + rr + (mi & 1) * 8) * LD + np * 16 + (mi >> 1) * 8);
              mma16816<T>(c0, af, b0, b1);
              mma16816<T>(c1, af, b2, b3);
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int64_t i = i0 + slice * 16 + g + (e >> 1) * 8;
              const int c = np * 16 + 2 * t + (e & 1);
              if (i < a.Lq) {
                float* dst = a.dq_acc + (rowbase + i) * a.D;
                if (c < a.D) atomicAdd(dst + c, c0[e]);
                if (c + 8 < a.D) atomicAdd(dst + c + 8, c1[e]);
              }
            }
          }
        }
      }
    }
  }
  cp_async_wait_all();
  __syncthreads();
  // write dK (scaled) and dV for this warp's keys
  const float sc = (float)a.scale;
#pragma unroll
  for (int n = 0; n < NTO; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int rloc = warp * 16 + g + (e >> 1) * 8;
      const int64_t key = j0 + rloc;
      const int c = n * 8 + 2 * t + (e & 1);
      if (key >= a.Lk) continue;
      float kv, vv;
      if constexpr (ACC_REG) {
        kv = dk_acc[n][e];
        vv = dv_acc[n][e];
      } else {
        kv = sAcc[rloc * DP + c];
        vv = sAcc[BKB * DP + rloc * DP + c];
      }
      if (c < a.D) ((T*)a.dk)[b * a.dks[0] + hk * a.dks[1] + key * a.dks[2] + c] = store<T>(kv * sc);
      if (c < a.Dv) ((T*)a.dv)[b * a.dvs[0] + hk * a.dvs[1] + key * a.dvs[2] + c] = store<T>(vv);
    }
}

// ================================================================== shared helper kernels
/* Delta[row] = sum_c dO[c] * O[c] (one warp per row). */
template <class T, class C>
__global__ void __launch_bounds__(256) delta_kernel(const AttnArgs a, C* delta, int64_t rows) {
  const int lane = threadIdx.x & 31;
  for (int64_t r = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5); r < rows; r += (int64_t)gridDim.x * 8) {
    const int64_t i = r % a.Lq, h = (r / a.Lq) % a.Hq, b = r / (a.Lq * a.Hq);
    const T* o = (const T*)a.o_in + b * a.os[0] + h * a.os[1] + i * a.os[2];
    const T* g = (const T*)a.d_o + b * a.dos[0] + h * a.dos[1] + i * a.dos[2];
    C s = 0;
    for (int64_t c = lane; c < a.Dv; c += 32) s += (C)load<T>(o[c]) * (C)load<T>(g[c]);
    s = warp_allreduce(s, [](C x, C y) { return x + y; });
    if (lane == 0) delta[r] = s;
  }
}

/* dq = scale * acc through dq's strides. */
template <class T>
__global__ void __launch_bounds__(256) dq_convert_kernel(const AttnArgs a, int64_t n) {
  for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < n; x += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = x % a.D, r = x / a.D;
    const int64_t i = r % a.Lq, h = (r / a.Lq) % a.Hq, b = r / (a.Lq * a.Hq);
    ((T*)a.dq)[b * a.dqs[0] + h * a.dqs[1] + i * a.dqs[2] + c] = store<T>(a.dq_acc[x] * (float)a.scale);
  }
}

// ================================================================== SIMT path
template <class C> __device__ __forceinline__ C c_exp(C x);
template <> __device__ __forceinline__ float c_exp<float>(float x) { return expf(x); }
template <> __device__ __forceinline__ double c_exp<double>(double x) { return exp(x); }
template <class C> __device__ __forceinline__ C c_log(C x);
template <> __device__ __forceinline__ float c_log<float>(float x) { return logf(x); }
template <> __device__ __forceinline__ double c_log<double>(double x) { return log(x); }
template <class C> __device__ __forceinline__ C c_tanh(C x);
template <> __device__ __forceinline__ float c_tanh<float>(float x) { return tanhf(x); }
template <> __device__ __forceinline__ double c_tanh<double>(double x) { return tanh(x); }

/* The scaled score s soft-capped (c tanh(s / c)); g = d(capped)/ds. Without a cap: s and 1. */
template <class C> __device__ __forceinline__ C cap_score(const AttnArgs& a, C s, C& g) {
  g = 1;
  if (!(a.softcap > 0)) return s;
  const C t = c_tanh<C>(s / (C)a.softcap);
  g = (C)1 - t * t;
  return (C)a.softcap * t;
}

constexpr int kSimtNV = 8;  // features per lane: max(D, Dv) <= 256

template <class T, class C>
__device__ __forceinline__ C dot_row(const T* x, const T* y, int64_t n) {
  C s = 0;
  for (int64_t c = 0; c < n; ++c) s += (C)load<T>(x[c]) * (C)load<T>(y[c]);
  return s;
}

/* Forward, one warp per query row. lse_t: float (the output) or double (f64 backward);
 * write_o false computes lse only. */
template <class T, class C, class LseT>
__global__ void __launch_bounds__(256) simt_fwd_kernel(const AttnArgs a, LseT* lse_out, bool write_o) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = a.B * a.Hq * a.Lq;
  const C zs = (C)a.zs;
  for (int64_t r = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5); r < rows; r += (int64_t)gridDim.x * 8) {
    const int64_t i = r % a.Lq, h = (r / a.Lq) % a.Hq, b = r / (a.Lq * a.Hq), hk = h / a.G;
    const T* qr = (const T*)a.q + b * a.qs[0] + h * a.qs[1] + i * a.qs[2];
    const T* kb = (const T*)a.k + b * a.ks[0] + hk * a.ks[1];
    const T* vb = (const T*)a.v + b * a.vs[0] + hk * a.vs[1];
    const int64_t jend = key_end_dev(a, i, 1);
    C m = -(C)INFINITY, l = 0, acc[kSimtNV];
#pragma unroll
    for (int v = 0; v < kSimtNV; ++v) acc[v] = 0;
    for (int64_t j0 = 0; j0 < jend; j0 += 32) {
      const int64_t j = j0 + lane;
      C s = -(C)INFINITY;
      if (j < jend) {
        C g;
        s = cap_score<C>(a, dot_row<T, C>(qr, kb + j * a.ks[2], a.D) * (C)a.scale, g) +
            mask_value<T, C>(a, b, h, i, j);
      }
      const C mx = warp_allreduce(s, [](C x, C y) { return x > y ? x : y; });
      const C mnew = m > mx ? m : mx;
      if (mnew == -(C)INFINITY) continue;
      const C alpha = c_exp<C>(m - mnew);
      C p = s == -(C)INFINITY ? (C)0 : c_exp<C>(s - mnew);
      l = l * alpha + warp_allreduce(p, [](C x, C y) { return x + y; });
      m = mnew;
      if (!write_o) continue;
#pragma unroll
      for (int v = 0; v < kSimtNV; ++v) acc[v] *= alpha;
      if (a.p > 0.f && p != (C)0) p = drop_keep(a, b, h, i, j) ? p * zs : (C)0;
      const int64_t nsrc = jend - j0 < 32 ? jend - j0 : 32;
      for (int src = 0; src < nsrc; ++src) {
        const C ps = __shfl_sync(0xffffffffu, p, src);
        if (ps == (C)0) continue;
        const T* vr = vb + (j0 + src) * a.vs[2];
#pragma unroll
        for (int v = 0; v < kSimtNV; ++v) {
          const int64_t c = lane + 32 * v;
          if (c < a.Dv) acc[v] += ps * (C)load<T>(vr[c]);
        }
      }
    }
    if (lane == 0) lse_out[r] = l > 0 ? (LseT)(m + c_log<C>(l)) : (LseT)-INFINITY;
    if (!write_o) continue;
    const C inv = l > 0 ? (C)1 / l : (C)0;
    T* orow = (T*)a.o + b * a.os[0] + h * a.os[1] + i * a.os[2];
#pragma unroll
    for (int v = 0; v < kSimtNV; ++v) {
      const int64_t c = lane + 32 * v;
      if (c < a.Dv) orow[c] = store<T>((compute_t<T>)(acc[v] * inv));
    }
  }
}

/* P and dS of element (b, h, i, j) (SIMT backward); returns false when P = 0. */
template <class T, class C, class LseT>
__device__ __forceinline__ void simt_grad_elem(const AttnArgs a, int64_t b, int64_t h, int64_t i, int64_t j,
                                               const LseT* lse, const C* delta, C& pz, C& ds) {
  pz = 0;
  ds = 0;
  const int64_t hk = h / a.G;
  const C L = (C)lse[(b * a.Hq + h) * a.Lq + i];
  if (L == -(C)INFINITY) return;
  const T* qr = (const T*)a.q + b * a.qs[0] + h * a.qs[1] + i * a.qs[2];
  const T* kr = (const T*)a.k + b * a.ks[0] + hk * a.ks[1] + j * a.ks[2];
  C g;
  const C s = cap_score<C>(a, dot_row<T, C>(qr, kr, a.D) * (C)a.scale, g) + mask_value<T, C>(a, b, h, i, j);
  if (s == -(C)INFINITY) return;
  const C p = c_exp<C>(s - L);
  const T* gr = (const T*)a.d_o + b * a.dos[0] + h * a.dos[1] + i * a.dos[2];
  const T* vr = (const T*)a.v + b * a.vs[0] + hk * a.vs[1] + j * a.vs[2];
  const C dp = dot_row<T, C>(gr, vr, a.Dv);
  C z = 1;
  if (a.p > 0.f) z = drop_keep(a, b, h, i, j) ? (C)a.zs : (C)0;
  ds = p * (dp * z - delta[(b * a.Hq + h) * a.Lq + i]) * g;
  pz = p * z;
}

/* dK, dV: one warp per (b, kv head, key j); lanes score 32 queries at a time. */
template <class T, class C, class LseT>
__global__ void __launch_bounds__(256) simt_dkdv_kernel(const AttnArgs a, const LseT* lse, const C* delta) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = a.B * a.Hkv * a.Lk;
  for (int64_t r = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5); r < rows; r += (int64_t)gridDim.x * 8) {
    const int64_t j = r % a.Lk, hk = (r / a.Lk) % a.Hkv, b = r / (a.Lk * a.Hkv);
    C dK[kSimtNV], dV[kSimtNV];
#pragma unroll
    for (int v = 0; v < kSimtNV; ++v) dK[v] = dV[v] = 0;
    const int64_t ibeg = query_begin_dev(a, j);
    for (int64_t h = hk * a.G; h < (hk + 1) * a.G; ++h) {
      for (int64_t i0 = ibeg; i0 < a.Lq; i0 += 32) {
        C pz = 0, ds = 0;
        if (i0 + lane < a.Lq) simt_grad_elem<T, C, LseT>(a, b, h, i0 + lane, j, lse, delta, pz, ds);
        const int64_t nsrc = a.Lq - i0 < 32 ? a.Lq - i0 : 32;
        for (int src = 0; src < nsrc; ++src) {
          const C ps = __shfl_sync(0xffffffffu, pz, src), dss = __shfl_sync(0xffffffffu, ds, src);
          if (ps == (C)0 && dss == (C)0) continue;
          const int64_t i = i0 + src;
          const T* qr = (const T*)a.q + b * a.qs[0] + h * a.qs[1] + i * a.qs[2];
          const T* gr = (const T*)a.d_o + b * a.dos[0] + h * a.dos[1] + i * a.dos[2];
#pragma unroll
          for (int v = 0; v < kSimtNV; ++v) {
            const int64_t c = lane + 32 * v;
            if (c < a.Dv) dV[v] += ps * (C)load<T>(gr[c]);
            if (c < a.D) dK[v] += dss * (C)load<T>(qr[c]);
          }
        }
      }
    }
    T* dkr = (T*)a.dk + b * a.dks[0] + hk * a.dks[1] + j * a.dks[2];
    T* dvr = (T*)a.dv + b * a.dvs[0] + hk * a.dvs[1] + j * a.dvs[2];
#pragma unroll
    for (int v = 0; v < kSimtNV; ++v) {
      const int64_t c = lane + 32 * v;
      if (c < a.D) dkr[c] = store<T>((compute_t<T>)(dK[v] * (C)a.scale));
      if (c < a.Dv) dvr[c] = store<T>((compute_t<T>)dV[v]);
    }
  }
}

/* dQ: one warp per (b, h, query i); lanes score 32 keys at a time. */
template <class T, class C, class LseT>
__global__ void __launch_bounds__(256) simt_dq_kernel(const AttnArgs a, const LseT* lse, const C* delta) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = a.B * a.Hq * a.Lq;
  for (int64_t r = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5); r < rows; r += (int64_t)gridDim.x * 8) {
    const int64_t i = r % a.Lq, h = (r / a.Lq) % a.Hq, b = r / (a.Lq * a.Hq), hk = h / a.G;
    C dQ[kSimtNV];
#pragma unroll
    for (int v = 0; v < kSimtNV; ++v) dQ[v] = 0;
    const int64_t jend = key_end_dev(a, i, 1);
    for (int64_t j0 = 0; j0 < jend; j0 += 32) {
      C pz = 0, ds = 0;
      if (j0 + lane < jend) simt_grad_elem<T, C, LseT>(a, b, h, i, j0 + lane, lse, delta, pz, ds);
      const int64_t nsrc = jend - j0 < 32 ? jend - j0 : 32;
      for (int src = 0; src < nsrc; ++src) {
        const C dss = __shfl_sync(0xffffffffu, ds, src);
        if (dss == (C)0) continue;
        const T* kr = (const T*)a.k + b * a.ks[0] + hk * a.ks[1] + (j0 + src) * a.ks[2];
#pragma unroll
        for (int v = 0; v < kSimtNV; ++v) {
          const int64_t c = lane + 32 * v;
          if (c < a.D) dQ[v] += dss * (C)load<T>(kr[c]);
        }
      }
    }
    T* dqr = (T*)a.dq + b * a.dqs[0] + h * a.dqs[1] + i * a.dqs[2];
#pragma unroll
    for (int v = 0; v < kSimtNV; ++v) {
      const int64_t c = lane + 32 * v;
      if (c < a.D) dqr[c] = store<T>((compute_t<T>)(dQ[v] * (C)a.scale));
    }
  }
}

/* dK = dV = 0 (no queries). */
template <class T> __global__ void __launch_bounds__(256) zero_kv_kernel(const AttnArgs a, int64_t n) {
  const int64_t F = a.D > a.Dv ? a.D : a.Dv;
  for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < n; x += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = x % F, r = x / F;
    const int64_t j = r % a.Lk, hk = (r / a.Lk) % a.Hkv, b = r / (a.Lk * a.Hkv);
    if (c < a.D) ((T*)a.dk)[b * a.dks[0] + hk * a.dks[1] + j * a.dks[2] + c] = zero_of<T>();
    if (c < a.Dv) ((T*)a.dv)[b * a.dvs[0] + hk * a.dvs[1] + j * a.dvs[2] + c] = zero_of<T>();
  }
}

// ================================================================== RoPE
template <class T>
__global__ void __launch_bounds__(256) rope_kernel(T* x, int64_t B, int64_t H, int64_t L, int64_t s0, int64_t s1,
                                                   int64_t s2, const int64_t* positions, int64_t rot, double base,
                                                   int interleaved, int inverse) {
  const int64_t half = rot / 2;
  const int64_t BH = B * H;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < L * half;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t l = idx / half, i = idx - l * half;
    const double p = positions ? (double)positions[l] : (double)l;
    const double ang = p * pow(base, -2.0 * (double)i / (double)rot);
    double sn, cs;
    sincos(ang, &sn, &cs);
    if (inverse) sn = -sn;
    const int64_t ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
    for (int64_t bh = blockIdx.y; bh < BH; bh += gridDim.y) {
      const int64_t b = bh / H, h = bh - b * H;
      T* r = x + b * s0 + h * s1 + l * s2;
      const double va = (double)load<T>(r[ia]), vb = (double)load<T>(r[ib]);
      r[ia] = store<T>((compute_t<T>)(va * cs - vb * sn));
      r[ib] = store<T>((compute_t<T>)(va * sn + vb * cs));
    }
  }
}

// ================================================================== host side
using attention::check_strides4;

void copy4(int64_t (&dst)[4], const int64_t* s) {
  for (int d = 0; d < 4; ++d) dst[d] = s ? s[d] : 0;
}

/* Validates the arguments shared by forward and backward (as the CPU twin does) and fills a. */
int setup(const char* fn, AttnArgs& a, int dtype, const int64_t* dims, const void* q, const int64_t* qs, const void* k,
          const int64_t* ks, const void* v, const int64_t* vs, int mask_kind, const void* mask, const int64_t* ms,
          int causal, double scale, double softcap, double dropout_p, uint64_t seed, uint64_t offset,
          const int64_t* os) {
  int st =
      attention::check_args(fn, dtype, dims, q, qs, k, ks, v, vs, mask_kind, mask, ms, scale, softcap, dropout_p, os);
  if (st) return st;
  if ((st = check_strides4(fn, "o_strides", os, true))) return st;  // required here (NULL allowed on the CPU)
  if (dims[5] > 256 || dims[6] > 256)
    return fail(CT_ERR_UNSUPPORTED, "%s: head dims D=%lld, Dv=%lld: the CUDA kernels support at most 256", fn,
                (long long)dims[5], (long long)dims[6]);
  a = AttnArgs{};
  a.B = dims[0]; a.Hq = dims[1]; a.Hkv = dims[2]; a.Lq = dims[3]; a.Lk = dims[4]; a.D = dims[5]; a.Dv = dims[6];
  a.G = a.Hq / a.Hkv;
  a.coff = a.Lk - a.Lq;
  a.q = q; a.k = k; a.v = v; a.mask = mask;
  copy4(a.qs, qs); copy4(a.ks, ks); copy4(a.vs, vs); copy4(a.os, os);
  if (mask_kind != 0) copy4(a.ms, ms);
  a.mask_kind = mask_kind;
  a.causal = causal != 0;
  a.scale = scale;
  a.scale_log2 = (float)(scale * 1.4426950408889634);
  a.softcap = softcap;
  a.cap_log2 = (float)(softcap * 1.4426950408889634);
  a.scale_cap = softcap > 0 ? (float)(scale / softcap) : 0.f;
  a.p = (float)dropout_p;
  a.zs = 1.0 / (1.0 - dropout_p);
  a.seed = seed;
  a.offset = offset;
  return CT_OK;
}

/* Padded head dim of the tensor-core kernels for max(D, Dv). */
int padded_dim(int64_t d) {
  if (d <= 32) return 32;
  if (d <= 64) return 64;
  if (d <= 80) return 80;
  if (d <= 96) return 96;
  if (d <= 128) return 128;
  return 256;
}

/* 16-byte cp.async is usable for a [.., F] operand with these strides at this pointer. */
bool vec_ok(const void* p, const int64_t* s, int64_t F, int64_t esize) {
  if (!p) return true;
  if (!aligned16(p) || (F * esize) % 16 != 0) return false;
  for (int d = 0; d < 3; ++d)
    if ((s[d] * esize) % 16 != 0) return false;
  return true;
}

struct Device {
  int major = 0, smem_optin = 0, sms = 0;
};
int device_props(const char* fn, Device& d) {
  int dev = 0;
  CT_CUDA_TRY(fn, cudaGetDevice(&dev));
  CT_CUDA_TRY(fn, cudaDeviceGetAttribute(&d.major, cudaDevAttrComputeCapabilityMajor, dev));
  CT_CUDA_TRY(fn, cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  CT_TRY_STATUS(sm_count(fn, &d.sms));
  return CT_OK;
}

template <class K> int launch_smem(const char* fn, K kernel, unsigned grid, int threads, int smem, cudaStream_t s,
                                   const AttnArgs& a) {
  if (smem > 48 * 1024) CT_CUDA_TRY(fn, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  kernel<<<grid, threads, smem, s>>>(a);
  return check_launch(fn);
}

/* Calls f(std::integral_constant<int, DP>) for the padded dim. */
template <class F> void dispatch_dp(int dp, F&& f) {
  switch (dp) {
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 64: f(std::integral_constant<int, 64>{}); break;
    case 80: f(std::integral_constant<int, 80>{}); break;
    case 96: f(std::integral_constant<int, 96>{}); break;
    case 128: f(std::integral_constant<int, 128>{}); break;
    default: f(std::integral_constant<int, 256>{}); break;
  }
}

unsigned simt_grid(int64_t rows, int sms) {
  int64_t blocks = (rows + 7) / 8;
  const int64_t cap = (int64_t)sms * 8 * 16;
  if (blocks > cap) blocks = cap;
  return (unsigned)(blocks < 1 ? 1 : blocks);
}

template <class T> int forward_impl(const char* fn, AttnArgs& a, cudaStream_t s) {
  Device dev;
  CT_TRY_STATUS(device_props(fn, dev));
  const int64_t es = (int64_t)sizeof(T);
  if constexpr (is_half_v<T>) {
    const int dp = padded_dim(a.D > a.Dv ? a.D : a.Dv);
    int smem = 0, bq = 0;
    dispatch_dp(dp, [&](auto c) {
      smem = FwdCfg<decltype(c)::value>::SMEM;
      bq = FwdCfg<decltype(c)::value>::BQ;
    });
    const int64_t items = (a.Lq + bq - 1) / bq * a.Hq * a.B;
    if (dev.major >= 8 && smem <= dev.smem_optin && items <= INT32_MAX) {
      a.vec = vec_ok(a.q, a.qs, a.D, es) && vec_ok(a.k, a.ks, a.D, es) && vec_ok(a.v, a.vs, a.Dv, es);
      int st = CT_OK;
      dispatch_dp(dp, [&](auto c) {
        constexpr int DP = decltype(c)::value;
        st = launch_smem(fn, fa_fwd_kernel<T, DP>, (unsigned)items, FwdCfg<DP>::NW * 32, FwdCfg<DP>::SMEM, s, a);
      });
      return st;
    }
  }
  using C = compute_t<T>;
  simt_fwd_kernel<T, C, float><<<simt_grid(a.B * a.Hq * a.Lq, dev.sms), 256, 0, s>>>(a, a.lse_out, true);
  return check_launch(fn);
}

template <class T> int backward_impl(const char* fn, AttnArgs& a, cudaStream_t s) {
  Device dev;
  CT_TRY_STATUS(device_props(fn, dev));
  const int64_t es = (int64_t)sizeof(T);
  using C = compute_t<T>;
  const int64_t rows = a.B * a.Hq * a.Lq;
  if (a.Lq == 0) {  // no queries: dK = dV = 0
    const int64_t n = a.B * a.Hkv * a.Lk * (a.D > a.Dv ? a.D : a.Dv);
    zero_kv_kernel<T><<<grid_for(n, dev.sms), 256, 0, s>>>(a, n);
    return check_launch(fn);
  }
  bool tc = false;
  int dp = 0;
  int64_t items = 0;
  if constexpr (is_half_v<T>) {
    dp = padded_dim(a.D > a.Dv ? a.D : a.Dv);
    int smem = 0, bkb = 0;
    dispatch_dp(dp, [&](auto c) {
      smem = BwdCfg<decltype(c)::value>::SMEM;
      bkb = BwdCfg<decltype(c)::value>::BKB;
    });
    items = (a.Lk + bkb - 1) / bkb * a.Hkv * a.B;
    tc = dev.major >= 8 && smem <= dev.smem_optin && items <= INT32_MAX;
  }
  // workspace: Delta (C) [rows], then (tensor cores) dQ float [rows * D] or (f64 SIMT) lse double [rows]
  const size_t delta_bytes = ((sizeof(C) * (size_t)rows + 255) / 256) * 256;
  const size_t extra = tc ? sizeof(float) * (size_t)rows * (size_t)a.D
                          : (std::is_same_v<C, double> ? sizeof(double) * (size_t)rows : 0);
  void* ws = nullptr;
  CT_CUDA_TRY(fn, cudaMallocAsync(&ws, delta_bytes + extra + 16, s));
  C* delta = (C*)ws;
  a.delta = delta;
  int st = CT_OK;
  delta_kernel<T, C><<<simt_grid(rows, dev.sms), 256, 0, s>>>(a, delta, rows);
  st = check_launch(fn);
  if (st == CT_OK && tc) {
    if constexpr (is_half_v<T>) {
      a.dq_acc = (float*)((char*)ws + delta_bytes);
      cudaError_t e = cudaMemsetAsync(a.dq_acc, 0, sizeof(float) * (size_t)rows * (size_t)a.D, s);
      if (e != cudaSuccess) st = cuda_fail(fn, e);
      a.vec = vec_ok(a.q, a.qs, a.D, es) && vec_ok(a.k, a.ks, a.D, es) && vec_ok(a.v, a.vs, a.Dv, es) &&
              vec_ok(a.d_o, a.dos, a.Dv, es);
      if (st == CT_OK && items > 0) {
        dispatch_dp(dp, [&](auto c) {
          constexpr int DP = decltype(c)::value;
          st = launch_smem(fn, fa_bwd_kernel<T, DP>, (unsigned)items, BwdCfg<DP>::NW * 32, BwdCfg<DP>::SMEM, s, a);
        });
      }
      if (st == CT_OK) {
        const int64_t n = rows * a.D;
        dq_convert_kernel<T><<<grid_for(n, dev.sms), 256, 0, s>>>(a, n);
        st = check_launch(fn);
      }
    }
  } else if (st == CT_OK) {
    if constexpr (std::is_same_v<C, double>) {
      double* lse64 = (double*)((char*)ws + delta_bytes);
      simt_fwd_kernel<T, C, double><<<simt_grid(rows, dev.sms), 256, 0, s>>>(a, lse64, false);
      st = check_launch(fn);
      if (st == CT_OK && a.Lk > 0) {
        simt_dkdv_kernel<T, C, double><<<simt_grid(a.B * a.Hkv * a.Lk, dev.sms), 256, 0, s>>>(a, lse64, delta);
        st = check_launch(fn);
      }
      if (st == CT_OK) {
        simt_dq_kernel<T, C, double><<<simt_grid(rows, dev.sms), 256, 0, s>>>(a, lse64, delta);
        st = check_launch(fn);
      }
    } else {
      if (a.Lk > 0) {
        simt_dkdv_kernel<T, C, float><<<simt_grid(a.B * a.Hkv * a.Lk, dev.sms), 256, 0, s>>>(a, a.lse, delta);
        st = check_launch(fn);
      }
      if (st == CT_OK) {
        simt_dq_kernel<T, C, float><<<simt_grid(rows, dev.sms), 256, 0, s>>>(a, a.lse, delta);
        st = check_launch(fn);
      }
    }
  }
  const cudaError_t fe = cudaFreeAsync(ws, s);
  if (st == CT_OK && fe != cudaSuccess) st = cuda_fail(fn, fe);
  return st;
}

}  // namespace
}  // namespace ct

using namespace ct;

static int forward_flat(const char* fn, int64_t stream, int dtype, const int64_t* dims, const void* q,
                        const int64_t* q_strides, const void* k, const int64_t* k_strides, const void* v,
                        const int64_t* v_strides, int mask_kind, const void* mask, const int64_t* mask_strides,
                        int causal, double scale, double softcap, double dropout_p, uint64_t seed,
                        uint64_t offset, void* o, const int64_t* o_strides, float* lse) {
  AttnArgs a;
  int st = setup(fn, a, dtype, dims, q, q_strides, k, k_strides, v, v_strides, mask_kind, mask, mask_strides, causal,
                 scale, softcap, dropout_p, seed, offset, o_strides);
  if (st) return st;
  if (a.B == 0 || a.Lq == 0) return CT_OK;
  if ((st = check_ptr(fn, "o", o)) || (st = check_ptr(fn, "lse", lse))) return st;
  a.o = o;
  a.lse_out = lse;
  const cudaStream_t s = as_stream(stream);
  switch (dtype) {
    case CT_F32: return forward_impl<float>(fn, a, s);
    case CT_F64: return forward_impl<double>(fn, a, s);
    case CT_F16: return forward_impl<__half>(fn, a, s);
    default: return forward_impl<__nv_bfloat16>(fn, a, s);
  }
}

static int backward_flat(const char* fn, int64_t stream, int dtype, const int64_t* dims, const void* q,
                         const int64_t* q_strides, const void* k, const int64_t* k_strides, const void* v,
                         const int64_t* v_strides, int mask_kind, const void* mask, const int64_t* mask_strides,
                         int causal, double scale, double softcap, double dropout_p, uint64_t seed,
                         uint64_t offset, const void* o, const int64_t* o_strides, const void* d_o,
                         const int64_t* do_strides, const float* lse, void* dq, const int64_t* dq_strides,
                         void* dk, const int64_t* dk_strides, void* dv, const int64_t* dv_strides) {
  AttnArgs a;
  int st = setup(fn, a, dtype, dims, q, q_strides, k, k_strides, v, v_strides, mask_kind, mask, mask_strides, causal,
                 scale, softcap, dropout_p, seed, offset, o_strides);
  if (st) return st;
  if ((st = attention::check_backward_args(fn, dims, o, d_o, do_strides, lse, dq, dq_strides, dk, dk_strides, dv,
                                           dv_strides)))
    return st;
  if (a.B == 0 || (a.Lq == 0 && a.Lk == 0)) return CT_OK;
  a.o_in = o;
  a.d_o = d_o;
  a.lse = lse;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  copy4(a.dos, do_strides);
  copy4(a.dqs, dq_strides);
  copy4(a.dks, dk_strides);
  copy4(a.dvs, dv_strides);
  const cudaStream_t s = as_stream(stream);
  switch (dtype) {
    case CT_F32: return backward_impl<float>(fn, a, s);
    case CT_F64: return backward_impl<double>(fn, a, s);
    case CT_F16: return backward_impl<__half>(fn, a, s);
    default: return backward_impl<__nv_bfloat16>(fn, a, s);
  }
}

extern "C" int ct_cuda_rope(int dtype, const int64_t* dims4, void* x, const int64_t* x_strides,
                            const int64_t* positions, int64_t rotary_dim, double base, int interleaved, int inverse,
                            int64_t stream) {
  static const char* fn = "ct_cuda_rope";
  int st = attention::check_rope_args(fn, dtype, dims4, x, x_strides, rotary_dim, base);
  if (st) return st;
  const int64_t B = dims4[0], H = dims4[1], L = dims4[2];
  if (B == 0 || H == 0 || L == 0) return CT_OK;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const int64_t pairs = L * (rotary_dim / 2);
  const unsigned gx = grid_for(pairs, sms);
  int64_t gy = (int64_t)sms * 8 / (int64_t)gx;
  if (gy > B * H) gy = B * H;
  if (gy > 65535) gy = 65535;
  if (gy < 1) gy = 1;
  const dim3 grid(gx, (unsigned)gy);
  const cudaStream_t s = as_stream(stream);
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    rope_kernel<T><<<grid, 256, 0, s>>>((T*)x, B, H, L, x_strides[0], x_strides[1], x_strides[2], positions,
                                        rotary_dim, base, interleaved, inverse);
  });
  return check_launch(fn);
}

// ---------------------------------------------------------------- the C interface (descriptors)
extern "C" int ct_cuda_attention_forward(const ct_tensor* q, const ct_tensor* k, const ct_tensor* v,
                                        const ct_tensor* mask, const ct_attention_params* params,
                                        const ct_tensor* o, float* lse, int64_t stream) {
  static const char* fn = "ct_cuda_attention_forward";
  attention::Flat f;
  if (!o) return fail(CT_ERR_INVALID_ARG, "%s: descriptor o is NULL", fn);
  int st = attention::unpack(fn, q, k, v, mask, params, o, f);
  if (st) return st;
  return forward_flat(fn, stream, f.dtype, f.dims, f.q, f.qs, f.k, f.ks, f.v, f.vs, f.mask_kind, f.mask, f.ms, f.causal,
                      f.scale, f.softcap, f.dropout_p, f.seed, f.offset, f.o, f.os, lse);
}

extern "C" int ct_cuda_attention_backward(const ct_tensor* q, const ct_tensor* k, const ct_tensor* v,
                                         const ct_tensor* mask, const ct_attention_params* params,
                                         const ct_tensor* o, const ct_tensor* d_o, const float* lse,
                                         const ct_tensor* dq, const ct_tensor* dk, const ct_tensor* dv,
                                         int64_t stream) {
  static const char* fn = "ct_cuda_attention_backward";
  attention::Flat f;
  int st = attention::unpack(fn, q, k, v, mask, params, o, f);
  if (st || (st = attention::unpack_backward(fn, f, o, d_o, dq, dk, dv))) return st;
  return backward_flat(fn, stream, f.dtype, f.dims, f.q, f.qs, f.k, f.ks, f.v, f.vs, f.mask_kind, f.mask, f.ms, f.causal,
                       f.scale, f.softcap, f.dropout_p, f.seed, f.offset, o->data, o->strides, d_o->data,
                       d_o->strides, lse, dq->data, dq->strides, dk->data, dk->strides, dv->data, dv->strides);
}
