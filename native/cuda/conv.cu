/*
 * Convolution family on CUDA (conv.h): forward, backward-data, backward-weight (+ dbias) of
 * 1-d/2-d/3-d convolutions described by the same int64[25] geometry as the CPU library, NCHW
 * and NHWC, groups (depthwise included), stride, dilation, asymmetric padding, fused bias and
 * activation on the forward. Notation: F = 2 N K (C/g) KS P FLOPs per pass, KS = kD kH kW,
 * P = oD oH oW, S = D H W, e = sizeof(element).
 *
 * IMPLICIT_GEMM (tensor cores; F32 as TF32 mma.m16n8k8 after cvt.rna.tf32, F16/BF16 as
 * mma.m16n8k16, float32 accumulation). CTA tile 128 x 128, 8 warps of 64 x 32, K slices of
 * 64 bytes per row (32 halves / 16 floats), shared rows padded to 80 bytes (fragment loads
 * are bank-conflict free), double buffered.
 *  forward:   GEMM M = N*P (output positions), N = K/g, red = KS*C/g ordered (tap, channel).
 *             A[m][(r,c)] = x[n, g*Cg + c, o*s - pad + r*dil] (zero outside), B = w reordered
 *             into a workspace wt[k][(r,c)]; bias and activation in the epilogue.
 *  bwd-data:  GEMM M = N*S (input positions), N = C/g, red = KS*K/g: A[m][(r,k)] =
 *             dy[n, g*Kg + k, (i + pad - r*dil)/s] where the division is exact and in range
 *             (checked per element), else 0; B = w reordered into wb[c][(r,k)].
 *  Tiles are filled with cp.async (16 bytes, zero-fill for padding) when the layout is NHWC,
 *  the per-group channel count on the reduction side is a multiple of 16/e and the pointers
 *  are 16-byte aligned; otherwise a scalar gather (any layout, any channel count) fills the
 *  same tiles. NCHW uses the scalar gather (correct, slower: NHWC is the fast path).
 *  bwd-weight: GEMM M = K/g, N = KS*C/g, reduction over N*P split into S fixed chunks (S a
 *             function of the shape only); each CTA writes its float32 partial tile to a
 *             workspace; a second kernel sums the S partials in order 0..S-1 and writes dw in
 *             [K, C/g, KS] order. Tiles are register staged (global loads of 16 bytes along the
 *             channel dimension in NHWC, transposed into the shared tile) with double buffering.
 *  Cost: F FLOPs on tensor cores; bytes ~ e*(x + w + y) per pass in the ideal case (each tile
 *  re-reads its halo from L2); bwd-weight adds 4*S*K*Cg*KS bytes written and read.
 * DEPTHWISE (groups == C == K): one thread per output (forward) or input (bwd-data) element,
 *  taps in a loop, 2*KS FLOPs and ~e*(KS+1) cached bytes each; bwd-weight: per (channel block,
 *  split, tap) CTAs of 32 channels x 8 lanes, fixed-order partial sums, then an ordered sum over
 *  the splits. Bandwidth bound.
 * REFERENCE: direct loops with float (F64: double) accumulation, one thread per output / input
 *  element, one warp per weight element (fixed lane order + xor tree): the oracle, and the F64
 *  path. dbias: the same channel-block reduction as the depthwise weight gradient.
 * Every pass is deterministic. Workspace: cudaMallocAsync / cudaFreeAsync on the stream.
 */
#include <cstdio>

#include "common.cuh"
#include "conv_geometry.h"
#include "ptx.cuh"
#include "scalar_ops.h"
#include "cortado/conv.h"

namespace ct {
namespace {

// ------------------------------------------------------------------ geometry
using conv::Geo;

/* dtype and algorithm, then the shared geometry checks (native/shared/conv_geometry.h), then the
 * CUDA kernels' size limits (int32 indexing). */
int parse(const char* fn, int dtype, int layout, int algorithm, const int64_t* gv, Geo* out) {
  if (dtype != CT_F32 && dtype != CT_F64 && dtype != CT_F16 && dtype != CT_BF16)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s is not supported (float32, float64, float16, bfloat16)", fn,
                dtype_name(dtype));
  if (algorithm < CT_CONV_ALGO_AUTO || algorithm > CT_CONV_ALGO_IMPLICIT_GEMM)
    return fail(CT_ERR_INVALID_ARG, "%s: unknown algorithm %d", fn, algorithm);
  const int st = conv::parse_geometry(fn, layout, gv, (int64_t)1 << 30, out);
  if (st != CT_OK) return st;
  const Geo& g = *out;
  const __int128 lim = (__int128)1 << 31;
  __int128 np = (__int128)g.N * g.P, ns = (__int128)g.N * g.S, red = (__int128)g.KS * (g.Cg > g.Kg ? g.Cg : g.Kg);
  __int128 ws = (__int128)g.K * g.Cg * g.KS;
  if (np >= lim || ns >= lim || red >= lim || ws >= lim || (__int128)g.N * g.C * g.S >= ((__int128)1 << 40) ||
      (__int128)g.N * g.K * g.P >= ((__int128)1 << 40))
    return fail(CT_ERR_UNSUPPORTED,
                "%s: operands too large for the CUDA kernels (N*P %lld, N*S %lld, KS*C/g %lld, weight %lld; limit 2^31)",
                fn, (long long)np, (long long)ns, (long long)red, (long long)ws);
  if (g.G > 65535)
    return fail(CT_ERR_UNSUPPORTED, "%s: g[3] (groups) = %lld exceeds 65535 for the CUDA kernels", fn, (long long)g.G);
  return CT_OK;
}

bool is_depthwise(const Geo& g) { return g.G == g.C && g.K == g.C; }

/* Algorithm actually run on CUDA for this request (pass 0/1/2), or a negative status. */
int resolve(const char* fn, int dtype, const Geo& g, int algorithm) {
  switch (algorithm) {
    case CT_CONV_ALGO_AUTO:
      if (is_depthwise(g)) return CT_CONV_ALGO_DEPTHWISE;
      return dtype == CT_F64 ? CT_CONV_ALGO_REFERENCE : CT_CONV_ALGO_IMPLICIT_GEMM;
    case CT_CONV_ALGO_REFERENCE: return CT_CONV_ALGO_REFERENCE;
    case CT_CONV_ALGO_DEPTHWISE:
      if (!is_depthwise(g))
        return -fail(CT_ERR_UNSUPPORTED, "%s: DEPTHWISE needs groups == C == K (got groups %lld, C %lld, K %lld)", fn,
                     (long long)g.G, (long long)g.C, (long long)g.K);
      return CT_CONV_ALGO_DEPTHWISE;
    case CT_CONV_ALGO_IMPLICIT_GEMM:
      if (dtype == CT_F64)
        return -fail(CT_ERR_UNSUPPORTED,
                     "%s: IMPLICIT_GEMM (tensor cores) supports float32, float16 and bfloat16, not float64 (use AUTO or "
                     "REFERENCE)", fn);
      return CT_CONV_ALGO_IMPLICIT_GEMM;
    default:  // the CPU-only IM2COL_GEMM, DIRECT_NHWC, WINOGRAD: the CUDA path for the dtype
      return dtype == CT_F64 ? CT_CONV_ALGO_REFERENCE : CT_CONV_ALGO_IMPLICIT_GEMM;
  }
}

/* Element strides (batch, flattened spatial, channel) of a contiguous activation. */
struct Str3 { int64_t n, p, c; };
Str3 act_strides(int layout, int64_t ch, int64_t sp) {
  if (layout == CT_LAYOUT_NHWC) return Str3{sp * ch, ch, 1};
  return Str3{ch * sp, 1, sp};
}

// ------------------------------------------------------------------ device helpers
template <class T> using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

/* Bias + activation: the unary op's formula (scalar_ops.h, shared with the CPU library). */
__device__ __forceinline__ float act_apply(float v, int a) { return sop::activation<float>(a, v); }
__device__ __forceinline__ double act_apply(double v, int a) { return sop::activation<double>(a, v); }

/* Spatial sizes and conv parameters packed for kernels (int: parse() bounds them by 2^30). */
struct Sp {
  int in[3], out[3], k[3], s[3], d[3], p[3];
};
Sp make_sp(const Geo& g) {
  Sp r;
  for (int i = 0; i < 3; ++i) {
    r.in[i] = (int)g.in[i]; r.out[i] = (int)g.out[i]; r.k[i] = (int)g.k[i];
    r.s[i] = (int)g.s[i]; r.d[i] = (int)g.d[i]; r.p[i] = (int)g.pb[i];
  }
  return r;
}

/* Forward tap: input coordinate of output o, tap r in one dimension; false if in padding. */
__device__ __forceinline__ bool fwd_tap(int o, int r, int s, int d, int p, int in, int& i) {
  i = o * s - p + r * d;
  return i >= 0 && i < in;
}
/* Backward-data tap: output coordinate reached from input i through tap r; false if none. */
__device__ __forceinline__ bool bwd_tap(int i, int r, int s, int d, int p, int out, int& o) {
  int t = i + p - r * d;
  if (t < 0) return false;
  o = t / s;
  return o * s == t && o < out;
}

// ------------------------------------------------------------------ tensor-core primitives (ptx.cuh)
using ptx::cp_async16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::mma16816;
using ptx::mma1688_tf32;
using ptx::to_tf32;

// Tile configuration (shared by the forward/bwd-data and bwd-weight kernels).
constexpr int BM = 128, BN = 128, NT = 256;
template <class T> struct Cfg {
  static constexpr int E = (int)sizeof(T);          // 2 or 4
  static constexpr int BK = 64 / E;                  // 32 halves or 16 floats per slice
  static constexpr int LDS = BK + 16 / E;            // padded row: 80 bytes
  static constexpr int VW = 16 / E;                  // elements per 16-byte chunk
  static constexpr int KSTEP = E == 2 ? 16 : 8;      // mma K
  using S = std::conditional_t<E == 2, uint16_t, float>;  // shared storage type
  static constexpr int TILE = BM * LDS;              // elements of one operand tile (BM == BN)
};

template <class T> __device__ __forceinline__ typename Cfg<T>::S to_bits(T v) {
  if constexpr (sizeof(T) == 2) return *reinterpret_cast<const uint16_t*>(&v);
  else return v;
}

/* LW consecutive elements of src at off into dst as shared-storage bits (one 16-byte load when
 * LW > 1, so off must be 16-byte aligned then), or zeros when !valid. */
template <int LW, class T>
__device__ __forceinline__ void load_run(const T* src, int64_t off, bool valid, typename Cfg<T>::S (&dst)[LW]) {
  using S = typename Cfg<T>::S;
  if constexpr (LW > 1) {
    if (valid) {
      const uint4 v = *reinterpret_cast<const uint4*>(src + off);
      const S* vs = reinterpret_cast<const S*>(&v);
#pragma unroll
      for (int e = 0; e < LW; ++e) dst[e] = vs[e];
    } else {
#pragma unroll
      for (int e = 0; e < LW; ++e) dst[e] = S(0);
    }
  } else {
    dst[0] = valid ? to_bits<T>(src[off]) : S(0);
  }
}

/* One BK slice of the warp's 64 x 32 sub-tile: As/Bs point at the stage's [128][LDS] tiles. */
template <class T>
__device__ __forceinline__ void mma_slice(const typename Cfg<T>::S* As, const typename Cfg<T>::S* Bs,
                                          float (&acc)[4][4][4], int warp_m, int warp_n, int lane) {
  using C = Cfg<T>;
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int ks = 0; ks < C::BK / C::KSTEP; ++ks) {
    uint32_t a[4][4], b[4][2];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) {
      const int r0 = warp_m * 64 + mt * 16 + g;
      if constexpr (C::E == 2) {
        const int k0 = ks * 16 + 2 * t;
        a[mt][0] = *reinterpret_cast<const uint32_t*>(As + r0 * C::LDS + k0);
        a[mt][1] = *reinterpret_cast<const uint32_t*>(As + (r0 + 8) * C::LDS + k0);
        a[mt][2] = *reinterpret_cast<const uint32_t*>(As + r0 * C::LDS + k0 + 8);
        a[mt][3] = *reinterpret_cast<const uint32_t*>(As + (r0 + 8) * C::LDS + k0 + 8);
      } else {
        const int k0 = ks * 8 + t;
        a[mt][0] = to_tf32(As[r0 * C::LDS + k0]);
        a[mt][1] = to_tf32(As[(r0 + 8) * C::LDS + k0]);
        a[mt][2] = to_tf32(As[r0 * C::LDS + k0 + 4]);
        a[mt][3] = to_tf32(As[(r0 + 8) * C::LDS + k0 + 4]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int c0 = warp_n * 32 + nt * 8 + g;
      if constexpr (C::E == 2) {
        const int k0 = ks * 16 + 2 * t;
        b[nt][0] = *reinterpret_cast<const uint32_t*>(Bs + c0 * C::LDS + k0);
        b[nt][1] = *reinterpret_cast<const uint32_t*>(Bs + c0 * C::LDS + k0 + 8);
      } else {
        const int k0 = ks * 8 + t;
        b[nt][0] = to_tf32(Bs[c0 * C::LDS + k0]);
        b[nt][1] = to_tf32(Bs[c0 * C::LDS + k0 + 4]);
      }
    }
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        if constexpr (C::E == 2) mma16816<T>(acc[mt][nt], a[mt], b[nt][0], b[nt][1]);
        else mma1688_tf32(acc[mt][nt], a[mt], b[nt][0], b[nt][1]);
      }
  }
}

// ------------------------------------------------------------------ implicit GEMM: forward / bwd-data
struct IgArgs {
  const void* a;      // forward: x; bwd-data: dy
  const void* w;      // reordered weight [G*Ng][Kred]
  const void* bias;   // [G*Ng] or null
  void* out;          // forward: y; bwd-data: dx
  int64_t a_n, a_p, a_c;  // strides of A (batch, flattened spatial, channel)
  int64_t o_n, o_p, o_c;  // strides of out
  Sp sp;                  // in = x's spatial, out = y's spatial
  int M, Pm;              // M = N * Pm, Pm = number of output positions per image
  int Cr, Ng, Kred;       // reduction channels per group, output channels per group, KS*Cr
  int act;
};

/* TRANS = false: forward (positions are output positions, A spatial = in); true: bwd-data
 * (positions are input positions, A = dy with spatial = out). */
template <class T, bool VEC, bool TRANS>
__global__ void __launch_bounds__(NT) igemm_kernel(const IgArgs p) {
  using C = Cfg<T>;
  using S = typename C::S;
  __shared__ alignas(16) S smem[2 * 2 * C::TILE];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN, grp = blockIdx.z;
  const T* A = (const T*)p.a;
  const T* W = (const T*)p.w;

  int a_sp[3], m_sp[3];  // spatial dims of A and of the positions (registers)
#pragma unroll
  for (int d = 0; d < 3; ++d) {
    a_sp[d] = TRANS ? p.sp.out[d] : p.sp.in[d];
    m_sp[d] = TRANS ? p.sp.in[d] : p.sp.out[d];
  }
  // this thread's two A rows and two B rows (row = tid/4 + 64 i, 16-byte chunk tid % 4)
  const int chunk = tid & 3;
  int64_t rowoff[2];
  int ro[2][3];
  bool rvalid[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int m = m0 + (tid >> 2) + 64 * i;
    rvalid[i] = m < p.M;
    const int mm = rvalid[i] ? m : 0;
    const int n = mm / p.Pm, q = mm - n * p.Pm;
    const int o2 = q % m_sp[2], q1 = q / m_sp[2];
    ro[i][2] = o2; ro[i][1] = q1 % m_sp[1]; ro[i][0] = q1 / m_sp[1];
    rowoff[i] = (int64_t)n * p.a_n + (int64_t)grp * p.Cr * p.a_c;
  }
  const int k12 = p.sp.k[1] * p.sp.k[2];

  // offset of A element (row i, reduction index kk) or -1 when it is zero (padding / out of range)
  auto a_offset = [&](int i, int kk) -> int64_t {
    if (!rvalid[i] || kk >= p.Kred) return -1;
    const int r = kk / p.Cr, c = kk - r * p.Cr;
    const int r0 = r / k12, rr = r - r0 * k12, r1 = rr / p.sp.k[2], r2 = rr - r1 * p.sp.k[2];
    int i0, i1, i2;
    if (TRANS) {
      if (!bwd_tap(ro[i][0], r0, p.sp.s[0], p.sp.d[0], p.sp.p[0], a_sp[0], i0) ||
          !bwd_tap(ro[i][1], r1, p.sp.s[1], p.sp.d[1], p.sp.p[1], a_sp[1], i1) ||
          !bwd_tap(ro[i][2], r2, p.sp.s[2], p.sp.d[2], p.sp.p[2], a_sp[2], i2))
        return -1;
    } else {
      if (!fwd_tap(ro[i][0], r0, p.sp.s[0], p.sp.d[0], p.sp.p[0], a_sp[0], i0) ||
          !fwd_tap(ro[i][1], r1, p.sp.s[1], p.sp.d[1], p.sp.p[1], a_sp[1], i1) ||
          !fwd_tap(ro[i][2], r2, p.sp.s[2], p.sp.d[2], p.sp.p[2], a_sp[2], i2))
        return -1;
    }
    const int64_t sp = ((int64_t)i0 * a_sp[1] + i1) * a_sp[2] + i2;
    return rowoff[i] + sp * p.a_p + (int64_t)c * p.a_c;
  };

  auto load_tile = [&](int stage, int kt) {
    S* As = smem + stage * 2 * C::TILE;
    S* Bs = As + C::TILE;
    const int kk0 = kt * C::BK + chunk * C::VW;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = (tid >> 2) + 64 * i;
      const int j = n0 + row;  // B row: output channel within the group
      if constexpr (VEC) {
        const int64_t ao = a_offset(i, kk0);
        cp_async16(As + row * C::LDS + chunk * C::VW, ao >= 0 ? (const void*)(A + ao) : p.a, ao >= 0);
        const bool bv = j < p.Ng && kk0 < p.Kred;
        cp_async16(Bs + row * C::LDS + chunk * C::VW,
                   bv ? (const void*)(W + ((int64_t)grp * p.Ng + j) * p.Kred + kk0) : p.w, bv);
      } else {
#pragma unroll
        for (int e = 0; e < C::VW; ++e) {
          const int64_t ao = a_offset(i, kk0 + e);
          As[row * C::LDS + chunk * C::VW + e] = ao >= 0 ? to_bits<T>(A[ao]) : S(0);
          const bool bv = j < p.Ng && kk0 + e < p.Kred;
          Bs[row * C::LDS + chunk * C::VW + e] =
              bv ? to_bits<T>(W[((int64_t)grp * p.Ng + j) * p.Kred + kk0 + e]) : S(0);
        }
      }
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.f;

  const int nk = (p.Kred + C::BK - 1) / C::BK;
  load_tile(0, 0);
  cp_async_commit();
  for (int kt = 0; kt < nk; ++kt) {
    if (kt + 1 < nk) load_tile((kt + 1) & 1, kt + 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const S* As = smem + (kt & 1) * 2 * C::TILE;
    mma_slice<T>(As, As + C::TILE, acc, warp_m, warp_n, lane);
    __syncthreads();
  }

  // epilogue: bias, activation, store
  const T* bias = (const T*)p.bias;
  T* out = (T*)p.out;
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + warp_m * 64 + mt * 16 + g + 8 * h;
      if (m >= p.M) continue;
      const int n = m / p.Pm, q = m - n * p.Pm;
      const int64_t base = (int64_t)n * p.o_n + (int64_t)q * p.o_p;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = n0 + warp_n * 32 + nt * 8 + 2 * t + e;
          if (j >= p.Ng) continue;
          const int64_t ch = (int64_t)grp * p.Ng + j;
          float v = acc[mt][nt][2 * h + e];
          if (bias) v += load<T>(bias[ch]);
          out[base + ch * p.o_c] = store<T>(act_apply(v, p.act));
        }
    }
}

/* wt[k][r*Cg + c] = w[k][c][r] (forward: row = output channel k over all groups). */
template <class T>
__global__ void reorder_fwd(int64_t K, int64_t Cg, int64_t KS, const T* __restrict__ w, T* __restrict__ wt) {
  const int64_t total = K * Cg * KS;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i % KS, kc = i / KS, c = kc % Cg, k = kc / Cg;
    wt[k * (KS * Cg) + r * Cg + c] = w[i];
  }
}
/* wb[grp*Cg + c][r*Kg + kk] = w[grp*Kg + kk][c][r] (bwd-data: row = input channel). */
template <class T>
__global__ void reorder_bwd(int64_t G, int64_t Kg, int64_t Cg, int64_t KS, const T* __restrict__ w,
                            T* __restrict__ wb) {
  const int64_t total = G * Kg * Cg * KS;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i % KS, t1 = i / KS, c = t1 % Cg, k = t1 / Cg, grp = k / Kg, kk = k % Kg;
    wb[(grp * Cg + c) * (KS * Kg) + r * Kg + kk] = w[i];
  }
}

// ------------------------------------------------------------------ implicit GEMM: bwd-weight
struct WgArgs {
  const void* x;
  const void* dy;
  float* part;              // [S][G][Kg][Kred]
  int64_t x_n, x_p, x_c;    // strides of x
  int64_t y_n, y_p, y_c;    // strides of dy
  Sp sp;
  int P, Q;                 // P = output positions per image, Q = N * P
  int Cg, Kg, Kred, G;
  int qchunk;               // reduction elements per split (multiple of BK)
};

template <class T, int LW>
__global__ void __launch_bounds__(NT) wgrad_kernel(const WgArgs p) {
  using C = Cfg<T>;
  using S = typename C::S;
  constexpr int CH = BM / LW;                // chunks along m per q
  constexpr int CPT = BM * C::BK / (LW * NT);  // chunks per thread per operand
  __shared__ alignas(16) S smem[2 * 2 * C::TILE];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int tilesN = (p.Kred + BN - 1) / BN;
  const int m0 = (blockIdx.x / tilesN) * BM, n0 = (blockIdx.x % tilesN) * BN;
  const int split = blockIdx.y, grp = blockIdx.z;
  const int q_begin = split * p.qchunk;
  const int q_end = min(p.Q, q_begin + p.qchunk);
  const T* X = (const T*)p.x;
  const T* DY = (const T*)p.dy;
  const int k12 = p.sp.k[1] * p.sp.k[2];

  S ra[CPT][LW], rb[CPT][LW];
  auto load_regs = [&](int kt) {
#pragma unroll
    for (int i = 0; i < CPT; ++i) {
      const int ci = tid + NT * i;
      const int ql = ci / CH, mc = ci - ql * CH;
      const int q = q_begin + kt * C::BK + ql;
      const bool qv = q < q_end;
      const int qq = qv ? q : 0;
      const int n = qq / p.P, pp = qq - n * p.P;
      // A: dy[n, grp*Kg + m, pp], m = m0 + mc*LW + e
      {
        const int m = m0 + mc * LW;
        const int64_t off = (int64_t)n * p.y_n + (int64_t)pp * p.y_p + ((int64_t)grp * p.Kg + m) * p.y_c;
        load_run<LW>(DY, off, qv && m < p.Kg, ra[i]);
      }
      // B: x[n, grp*Cg + c, in(pp, r)], j = n0 + mc*LW + e = r*Cg + c
      {
        const int o2 = pp % p.sp.out[2], t1 = pp / p.sp.out[2], o1 = t1 % p.sp.out[1], o0 = t1 / p.sp.out[1];
        {  // one chunk: LW consecutive channels of one tap (LW > 1 needs Cg % LW == 0)
          const int j = n0 + mc * LW;
          bool v = qv && j < p.Kred;
          int64_t off = 0;
          if (v) {
            const int r = j / p.Cg, c = j - r * p.Cg;
            const int r0 = r / k12, rr = r - r0 * k12, r1 = rr / p.sp.k[2], r2 = rr - r1 * p.sp.k[2];
            int i0, i1, i2;
            v = fwd_tap(o0, r0, p.sp.s[0], p.sp.d[0], p.sp.p[0], p.sp.in[0], i0) &&
                fwd_tap(o1, r1, p.sp.s[1], p.sp.d[1], p.sp.p[1], p.sp.in[1], i1) &&
                fwd_tap(o2, r2, p.sp.s[2], p.sp.d[2], p.sp.p[2], p.sp.in[2], i2);
            if (v)
              off = (int64_t)n * p.x_n + (((int64_t)i0 * p.sp.in[1] + i1) * p.sp.in[2] + i2) * p.x_p +
                    ((int64_t)grp * p.Cg + c) * p.x_c;
          }
          load_run<LW>(X, off, v, rb[i]);
        }
      }
    }
  };
  auto store_smem = [&](int stage) {
    S* As = smem + stage * 2 * C::TILE;
    S* Bs = As + C::TILE;
#pragma unroll
    for (int i = 0; i < CPT; ++i) {
      const int ci = tid + NT * i;
      const int ql = ci / CH, mc = ci - ql * CH;
#pragma unroll
      for (int e = 0; e < LW; ++e) {
        As[(mc * LW + e) * C::LDS + ql] = ra[i][e];
        Bs[(mc * LW + e) * C::LDS + ql] = rb[i][e];
      }
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.f;

  const int nk = q_end > q_begin ? (q_end - q_begin + C::BK - 1) / C::BK : 0;
  if (nk > 0) {
    load_regs(0);
    store_smem(0);
    __syncthreads();
    for (int kt = 0; kt < nk; ++kt) {
      if (kt + 1 < nk) load_regs(kt + 1);
      const S* As = smem + (kt & 1) * 2 * C::TILE;
      mma_slice<T>(As, As + C::TILE, acc, warp_m, warp_n, lane);
      if (kt + 1 < nk) store_smem((kt + 1) & 1);
      __syncthreads();
    }
  }

  // partial tile (zeros for an empty split) -> part[split][grp][m][j]
  const int g = lane >> 2, t = lane & 3;
  float* out = p.part + ((int64_t)split * p.G + grp) * (int64_t)p.Kg * p.Kred;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + warp_m * 64 + mt * 16 + g + 8 * h;
      if (m >= p.Kg) continue;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = n0 + warp_n * 32 + nt * 8 + 2 * t + e;
          if (j < p.Kred) out[(int64_t)m * p.Kred + j] = acc[mt][nt][2 * h + e];
        }
    }
}

/* dw[k][c][r] = sum over splits (in order) of part[split][k][r*Cg + c]. */
template <class T>
__global__ void wgrad_reduce(int splits, int64_t K, int64_t Cg, int64_t KS, const float* __restrict__ part,
                             T* __restrict__ dw) {
  const int64_t total = K * Cg * KS;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i % KS, kc = i / KS, c = kc % Cg, k = kc / Cg;
    const int64_t src = k * (KS * Cg) + r * Cg + c;
    float s = 0.f;
    for (int sp = 0; sp < splits; ++sp) s += part[sp * total + src];
    dw[i] = store<T>(s);
  }
}

// ------------------------------------------------------------------ channel/tap reductions
/* Per (channel c, tap r): sum over q in the split of dy[n,c,p] * (BIAS ? 1 : x[n,c,in(p,r)]).
 * Used for the depthwise weight gradient (Cg == 1, the same channel in x and dy) and dbias.
 * Block (32, 8): 32 channels x 8 lanes over q; lanes combine in fixed order. Writes
 * part[(split*KS + r)*C + c]. */
template <class T, bool BIAS>
__global__ void chan_tap_partial(const T* __restrict__ x, const T* __restrict__ dy, int64_t C, Str3 xs, Str3 ys,
                                 Sp sp, int P, int Q, int qchunk, acc_t<T>* __restrict__ part) {
  using A = acc_t<T>;
  __shared__ A red[8][33];
  const int cx = threadIdx.x, ly = threadIdx.y;
  const int64_t c = (int64_t)blockIdx.x * 32 + cx;
  const int split = blockIdx.y, r = blockIdx.z;
  const int KS = (int)gridDim.z;
  const int k12 = sp.k[1] * sp.k[2];
  const int r0 = r / k12, rr = r - r0 * k12, r1 = rr / sp.k[2], r2 = rr - r1 * sp.k[2];
  const int q0 = split * qchunk, q1 = min(Q, q0 + qchunk);
  A acc = A(0);
  if (c < C) {
    for (int q = q0 + ly; q < q1; q += 8) {
      const int n = q / P, pp = q - n * P;
      const A dv = (A)load<T>(dy[(int64_t)n * ys.n + (int64_t)pp * ys.p + c * ys.c]);
      if (BIAS) {
        acc += dv;
      } else {
        const int o2 = pp % sp.out[2], t1 = pp / sp.out[2], o1 = t1 % sp.out[1], o0 = t1 / sp.out[1];
        int i0, i1, i2;
        if (fwd_tap(o0, r0, sp.s[0], sp.d[0], sp.p[0], sp.in[0], i0) &&
            fwd_tap(o1, r1, sp.s[1], sp.d[1], sp.p[1], sp.in[1], i1) &&
            fwd_tap(o2, r2, sp.s[2], sp.d[2], sp.p[2], sp.in[2], i2)) {
          const int64_t xo = (int64_t)n * xs.n + (((int64_t)i0 * sp.in[1] + i1) * sp.in[2] + i2) * xs.p + c * xs.c;
          acc += dv * (A)load<T>(x[xo]);
        }
      }
    }
  }
  red[ly][cx] = acc;
  __syncthreads();
  if (ly == 0 && c < C) {
    A s = red[0][cx];
#pragma unroll
    for (int l = 1; l < 8; ++l) s += red[l][cx];
    part[((int64_t)split * KS + r) * C + c] = s;
  }
}

/* out[c*KS + r] = sum over splits (in order) of part[(split*KS + r)*C + c]. */
template <class T>
__global__ void chan_tap_final(int splits, int64_t C, int64_t KS, const acc_t<T>* __restrict__ part,
                               T* __restrict__ out) {
  const int64_t total = C * KS;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = i / KS, r = i % KS;
    acc_t<T> s = 0;
    for (int sp = 0; sp < splits; ++sp) s += part[((int64_t)sp * KS + r) * C + c];
    out[i] = store<T>((compute_t<T>)s);
  }
}

// ------------------------------------------------------------------ direct kernels (REFERENCE, DEPTHWISE)
struct DArgs {
  int64_t N, C, K, Cg, Kg, KS, S, P;
  Str3 xs, ys;  // strides of x (channels C, spatial S) and y (channels K, spatial P)
  Sp sp;
  int act;
};

/* Decomposes a linear index over a contiguous activation [N, ch, sp] in the layout. */
__device__ __forceinline__ void split_index(int64_t idx, bool nhwc, int64_t ch, int64_t spn, int64_t& n, int64_t& c,
                                            int64_t& q) {
  if (nhwc) {
    c = idx % ch;
    const int64_t t = idx / ch;
    q = t % spn;
    n = t / spn;
  } else {
    q = idx % spn;
    const int64_t t = idx / spn;
    c = t % ch;
    n = t / ch;
  }
}
__device__ __forceinline__ void split3(int64_t q, const int* dims, int& a, int& b, int& c) {
  c = (int)(q % dims[2]);
  const int64_t t = q / dims[2];
  b = (int)(t % dims[1]);
  a = (int)(t / dims[1]);
}

/* One thread per output element: y = act(bias + sum over the group's channels and taps). */
template <class T>
__global__ void direct_forward(const DArgs a, bool nhwc, const T* __restrict__ x, const T* __restrict__ w,
                               const T* __restrict__ bias, T* __restrict__ y) {
  using A = acc_t<T>;
  const int64_t total = a.N * a.K * a.P;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    int64_t n, k, q;
    split_index(idx, nhwc, a.K, a.P, n, k, q);
    int o0, o1, o2;
    split3(q, a.sp.out, o0, o1, o2);
    const int64_t grp = k / a.Kg;
    A acc = bias ? (A)load<T>(bias[k]) : A(0);
    for (int kd = 0; kd < a.sp.k[0]; ++kd) {
      int i0;
      if (!fwd_tap(o0, kd, a.sp.s[0], a.sp.d[0], a.sp.p[0], a.sp.in[0], i0)) continue;
      for (int kh = 0; kh < a.sp.k[1]; ++kh) {
        int i1;
        if (!fwd_tap(o1, kh, a.sp.s[1], a.sp.d[1], a.sp.p[1], a.sp.in[1], i1)) continue;
        for (int kw = 0; kw < a.sp.k[2]; ++kw) {
          int i2;
          if (!fwd_tap(o2, kw, a.sp.s[2], a.sp.d[2], a.sp.p[2], a.sp.in[2], i2)) continue;
          const int64_t r = ((int64_t)kd * a.sp.k[1] + kh) * a.sp.k[2] + kw;
          const int64_t xb = n * a.xs.n + (((int64_t)i0 * a.sp.in[1] + i1) * a.sp.in[2] + i2) * a.xs.p;
          for (int64_t c = 0; c < a.Cg; ++c)
            acc += (A)load<T>(x[xb + (grp * a.Cg + c) * a.xs.c]) * (A)load<T>(w[(k * a.Cg + c) * a.KS + r]);
        }
      }
    }
    y[idx] = store<T>((compute_t<T>)act_apply(acc, a.act));
  }
}

/* One thread per input element: dx = sum over the group's output channels and the taps that reach it. */
template <class T>
__global__ void direct_backward_data(const DArgs a, bool nhwc, const T* __restrict__ dy, const T* __restrict__ w,
                                     T* __restrict__ dx) {
  using A = acc_t<T>;
  const int64_t total = a.N * a.C * a.S;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    int64_t n, c, q;
    split_index(idx, nhwc, a.C, a.S, n, c, q);
    int i0, i1, i2;
    split3(q, a.sp.in, i0, i1, i2);
    const int64_t grp = c / a.Cg, cc = c % a.Cg;
    A acc = A(0);
    for (int kd = 0; kd < a.sp.k[0]; ++kd) {
      int o0;
      if (!bwd_tap(i0, kd, a.sp.s[0], a.sp.d[0], a.sp.p[0], a.sp.out[0], o0)) continue;
      for (int kh = 0; kh < a.sp.k[1]; ++kh) {
        int o1;
        if (!bwd_tap(i1, kh, a.sp.s[1], a.sp.d[1], a.sp.p[1], a.sp.out[1], o1)) continue;
        for (int kw = 0; kw < a.sp.k[2]; ++kw) {
          int o2;
          if (!bwd_tap(i2, kw, a.sp.s[2], a.sp.d[2], a.sp.p[2], a.sp.out[2], o2)) continue;
          const int64_t r = ((int64_t)kd * a.sp.k[1] + kh) * a.sp.k[2] + kw;
          const int64_t yb = n * a.ys.n + (((int64_t)o0 * a.sp.out[1] + o1) * a.sp.out[2] + o2) * a.ys.p;
          for (int64_t kk = 0; kk < a.Kg; ++kk) {
            const int64_t k = grp * a.Kg + kk;
            acc += (A)load<T>(dy[yb + k * a.ys.c]) * (A)load<T>(w[(k * a.Cg + cc) * a.KS + r]);
          }
        }
      }
    }
    dx[idx] = store<T>((compute_t<T>)acc);
  }
}

/* One warp per weight element (k, c, r): lanes take q = lane, lane+32, ...; xor tree. */
template <class T>
__global__ void direct_backward_weight(const DArgs a, const T* __restrict__ x, const T* __restrict__ dy,
                                       T* __restrict__ dw) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t total = a.K * a.Cg * a.KS;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  const int64_t Q = a.N * a.P;
  for (int64_t wi = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); wi < total; wi += warps) {
    const int64_t r = wi % a.KS, kc = wi / a.KS, cc = kc % a.Cg, k = kc / a.Cg, grp = k / a.Kg;
    const int k12 = a.sp.k[1] * a.sp.k[2];
    const int r0 = (int)(r / k12), rr = (int)(r % k12), r1 = rr / a.sp.k[2], r2 = rr % a.sp.k[2];
    A acc = A(0);
    for (int64_t q = lane; q < Q; q += 32) {
      const int64_t n = q / a.P, pp = q % a.P;
      int o0, o1, o2, i0, i1, i2;
      split3(pp, a.sp.out, o0, o1, o2);
      if (!fwd_tap(o0, r0, a.sp.s[0], a.sp.d[0], a.sp.p[0], a.sp.in[0], i0) ||
          !fwd_tap(o1, r1, a.sp.s[1], a.sp.d[1], a.sp.p[1], a.sp.in[1], i1) ||
          !fwd_tap(o2, r2, a.sp.s[2], a.sp.d[2], a.sp.p[2], a.sp.in[2], i2))
        continue;
      const int64_t xo = n * a.xs.n + (((int64_t)i0 * a.sp.in[1] + i1) * a.sp.in[2] + i2) * a.xs.p +
                         (grp * a.Cg + cc) * a.xs.c;
      acc += (A)load<T>(dy[n * a.ys.n + pp * a.ys.p + k * a.ys.c]) * (A)load<T>(x[xo]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) dw[wi] = store<T>((compute_t<T>)acc);
  }
}

// ------------------------------------------------------------------ launchers
DArgs make_dargs(const Geo& g, int act) {
  DArgs a;
  a.N = g.N; a.C = g.C; a.K = g.K; a.Cg = g.Cg; a.Kg = g.Kg; a.KS = g.KS; a.S = g.S; a.P = g.P;
  a.xs = act_strides(g.layout, g.C, g.S);
  a.ys = act_strides(g.layout, g.K, g.P);
  a.sp = make_sp(g);
  a.act = act;
  return a;
}

/* RAII-free workspace on the stream: alloc, then free (the free is queued after the kernels). */
struct Ws {
  void* p = nullptr;
  cudaStream_t s;
  explicit Ws(cudaStream_t st) : s(st) {}
  int alloc(const char* fn, size_t bytes) {
    cudaError_t e = cudaMallocAsync(&p, bytes < 256 ? 256 : bytes, s);
    if (e != cudaSuccess) {
      p = nullptr;
      return cuda_fail(fn, e);
    }
    return CT_OK;
  }
  int release(const char* fn, int status) {
    if (!p) return status;
    cudaError_t e = cudaFreeAsync(p, s);
    p = nullptr;
    if (status == CT_OK && e != cudaSuccess) return cuda_fail(fn, e);
    return status;
  }
};

/* dw (and dbias) by channel/tap reduction: depthwise weight gradient or bias (BIAS). */
template <class T, bool BIAS>
int chan_tap_reduce(const char* fn, const Geo& g, const T* x, const T* dy, T* out, cudaStream_t s) {
  using A = acc_t<T>;
  const int64_t C = BIAS ? g.K : g.C;
  const int64_t KS = BIAS ? 1 : g.KS;
  const int Q = (int)(g.N * g.P);
  if (KS > 65535) return fail(CT_ERR_UNSUPPORTED, "%s: %lld kernel taps exceed 65535 for the depthwise kernels", fn, (long long)KS);
  const int64_t cblocks = (C + 31) / 32;
  // splits: about 1024 CTAs in all, each at least 512 reduction elements; shape-only (deterministic)
  int64_t splits = 1024 / (cblocks * KS);
  if (splits < 1) splits = 1;
  if (splits > 256) splits = 256;
  const int64_t maxs = ((int64_t)Q + 511) / 512;
  if (splits > maxs) splits = maxs < 1 ? 1 : maxs;
  const int qchunk = (int)((Q + splits - 1) / splits);
  Ws ws(s);
  CT_TRY_STATUS(ws.alloc(fn, (size_t)(splits * KS * C) * sizeof(A)));
  const Str3 xs = act_strides(g.layout, g.C, g.S), ys = act_strides(g.layout, g.K, g.P);
  dim3 grid((unsigned)cblocks, (unsigned)splits, (unsigned)KS);
  chan_tap_partial<T, BIAS><<<grid, dim3(32, 8), 0, s>>>(x, dy, C, xs, ys, make_sp(g), (int)g.P, Q, qchunk, (A*)ws.p);
  int sms = 0;
  int st = sm_count(fn, &sms);
  if (st == CT_OK) {
    chan_tap_final<T><<<grid_for(C * KS, sms), kThreads, 0, s>>>((int)splits, C, KS, (const A*)ws.p, out);
    st = check_launch(fn);
  }
  return ws.release(fn, st);
}

template <class T>
int igemm_forward_or_data(const char* fn, const Geo& g, bool trans, const T* a, const T* w, const T* bias, int act,
                          T* out, cudaStream_t s) {
  using C = Cfg<T>;
  const int64_t Cr = trans ? g.Kg : g.Cg, Ng = trans ? g.Cg : g.Kg, Kred = g.KS * Cr;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  Ws ws(s);
  CT_TRY_STATUS(ws.alloc(fn, (size_t)(g.K * g.Cg * g.KS) * sizeof(T)));
  if (trans)
    reorder_bwd<T><<<grid_for(g.K * g.Cg * g.KS, sms), kThreads, 0, s>>>(g.G, g.Kg, g.Cg, g.KS, w, (T*)ws.p);
  else
    reorder_fwd<T><<<grid_for(g.K * g.Cg * g.KS, sms), kThreads, 0, s>>>(g.K, g.Cg, g.KS, w, (T*)ws.p);
  IgArgs p;
  p.a = a; p.w = ws.p; p.bias = bias; p.out = out;
  const int64_t a_ch = trans ? g.K : g.C, a_sp = trans ? g.P : g.S;
  const int64_t o_ch = trans ? g.C : g.K, o_sp = trans ? g.S : g.P;
  const Str3 as = act_strides(g.layout, a_ch, a_sp), os = act_strides(g.layout, o_ch, o_sp);
  p.a_n = as.n; p.a_p = as.p; p.a_c = as.c;
  p.o_n = os.n; p.o_p = os.p; p.o_c = os.c;
  p.sp = make_sp(g);
  p.Pm = (int)o_sp;
  p.M = (int)(g.N * o_sp);
  p.Cr = (int)Cr; p.Ng = (int)Ng; p.Kred = (int)Kred;
  p.act = act;
  const bool vec = g.layout == CT_LAYOUT_NHWC && Cr % C::VW == 0 && aligned16(a);
  dim3 grid((unsigned)((p.M + BM - 1) / BM), (unsigned)((Ng + BN - 1) / BN), (unsigned)g.G);
  if (trans) {
    if (vec) igemm_kernel<T, true, true><<<grid, NT, 0, s>>>(p);
    else igemm_kernel<T, false, true><<<grid, NT, 0, s>>>(p);
  } else {
    if (vec) igemm_kernel<T, true, false><<<grid, NT, 0, s>>>(p);
    else igemm_kernel<T, false, false><<<grid, NT, 0, s>>>(p);
  }
  return ws.release(fn, check_launch(fn));
}

template <class T>
int igemm_backward_weight(const char* fn, const Geo& g, const T* x, const T* dy, T* dw, cudaStream_t s) {
  using C = Cfg<T>;
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  WgArgs p;
  p.x = x; p.dy = dy;
  const Str3 xs = act_strides(g.layout, g.C, g.S), ys = act_strides(g.layout, g.K, g.P);
  p.x_n = xs.n; p.x_p = xs.p; p.x_c = xs.c;
  p.y_n = ys.n; p.y_p = ys.p; p.y_c = ys.c;
  p.sp = make_sp(g);
  p.P = (int)g.P; p.Q = (int)(g.N * g.P);
  p.Cg = (int)g.Cg; p.Kg = (int)g.Kg; p.Kred = (int)(g.KS * g.Cg); p.G = (int)g.G;
  const int64_t tilesM = (g.Kg + BM - 1) / BM, tilesN = (p.Kred + BN - 1) / BN;
  const int64_t tiles = tilesM * tilesN * g.G;
  // splits of the reduction: ~512 CTAs in all, at least 4 K slices each; a function of the shape only
  int64_t splits = (512 + tiles - 1) / tiles;
  if (splits > 256) splits = 256;
  const int64_t maxs = ((int64_t)p.Q + 4 * C::BK - 1) / (4 * C::BK);
  if (splits > maxs) splits = maxs;
  if (splits < 1) splits = 1;
  int64_t qchunk = ((int64_t)p.Q + splits - 1) / splits;
  qchunk = (qchunk + C::BK - 1) / C::BK * C::BK;
  splits = ((int64_t)p.Q + qchunk - 1) / qchunk;
  if (splits < 1) splits = 1;
  p.qchunk = (int)qchunk;
  Ws ws(s);
  const int64_t wn = g.K * g.Cg * g.KS;
  CT_TRY_STATUS(ws.alloc(fn, (size_t)(splits * wn) * sizeof(float)));
  p.part = (float*)ws.p;
  const bool vec = g.layout == CT_LAYOUT_NHWC && g.Cg % C::VW == 0 && g.Kg % C::VW == 0 && aligned16(x) &&
                   aligned16(dy);
  dim3 grid((unsigned)(tilesM * tilesN), (unsigned)splits, (unsigned)g.G);
  if (vec) wgrad_kernel<T, C::VW><<<grid, NT, 0, s>>>(p);
  else wgrad_kernel<T, 1><<<grid, NT, 0, s>>>(p);
  int st = check_launch(fn);
  if (st == CT_OK) {
    wgrad_reduce<T><<<grid_for(wn, sms), kThreads, 0, s>>>((int)splits, g.K, g.Cg, g.KS, (const float*)ws.p, dw);
    st = check_launch(fn);
  }
  return ws.release(fn, st);
}

template <class T>
int run_forward(const char* fn, int algo, const Geo& g, const void* x, const void* w, const void* bias, int act,
                void* y, cudaStream_t s) {
  const T* xx = (const T*)x; const T* ww = (const T*)w; const T* bb = (const T*)bias; T* yy = (T*)y;
  if (algo == CT_CONV_ALGO_IMPLICIT_GEMM) {
    if constexpr (std::is_same_v<T, double>) return fail(CT_ERR_UNSUPPORTED, "%s: IMPLICIT_GEMM has no float64", fn);
    else return igemm_forward_or_data<T>(fn, g, false, xx, ww, bb, act, yy, s);
  }
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  direct_forward<T><<<grid_for(g.N * g.K * g.P, sms), kThreads, 0, s>>>(make_dargs(g, act),
                                                                        g.layout == CT_LAYOUT_NHWC, xx, ww, bb, yy);
  return check_launch(fn);  // REFERENCE and DEPTHWISE (Cg == 1: the same loop is the depthwise kernel)
}

template <class T>
int run_backward_data(const char* fn, int algo, const Geo& g, const void* dy, const void* w, void* dx,
                      cudaStream_t s) {
  const T* a = (const T*)dy; const T* ww = (const T*)w; T* o = (T*)dx;
  if (algo == CT_CONV_ALGO_IMPLICIT_GEMM) {
    if constexpr (std::is_same_v<T, double>) return fail(CT_ERR_UNSUPPORTED, "%s: IMPLICIT_GEMM has no float64", fn);
    else return igemm_forward_or_data<T>(fn, g, true, a, ww, nullptr, CT_ACTIVATION_NONE, o, s);
  }
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  direct_backward_data<T><<<grid_for(g.N * g.C * g.S, sms), kThreads, 0, s>>>(make_dargs(g, 0),
                                                                              g.layout == CT_LAYOUT_NHWC, a, ww, o);
  return check_launch(fn);
}

template <class T>
int run_backward_weight(const char* fn, int algo, const Geo& g, const void* x, const void* dy, void* dw, void* dbias,
                        cudaStream_t s) {
  const T* xx = (const T*)x; const T* d = (const T*)dy;
  int st;
  if (algo == CT_CONV_ALGO_IMPLICIT_GEMM) {
    if constexpr (std::is_same_v<T, double>) return fail(CT_ERR_UNSUPPORTED, "%s: IMPLICIT_GEMM has no float64", fn);
    else st = igemm_backward_weight<T>(fn, g, xx, d, (T*)dw, s);
  } else if (algo == CT_CONV_ALGO_DEPTHWISE) {
    st = chan_tap_reduce<T, false>(fn, g, xx, d, (T*)dw, s);
  } else {
    int sms = 0;
    CT_TRY_STATUS(sm_count(fn, &sms));
    const int64_t warps = g.K * g.Cg * g.KS;
    direct_backward_weight<T><<<grid_for(warps * 32, sms), kThreads, 0, s>>>(make_dargs(g, 0), xx, d, (T*)dw);
    st = check_launch(fn);
  }
  if (st == CT_OK && dbias) st = chan_tap_reduce<T, true>(fn, g, xx, d, (T*)dbias, s);
  return st;
}

template <class F> int dispatch(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: return f(type_tag<float>{});
    case CT_F64: return f(type_tag<double>{});
    case CT_F16: return f(type_tag<__half>{});
    default: return f(type_tag<__nv_bfloat16>{});
  }
}

int64_t esize(int dtype) { return dtype == CT_F64 ? 8 : dtype == CT_F32 ? 4 : 2; }

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_conv_forward(int dtype, int layout, int algorithm, const int64_t* gv, const void* x,
                                    const void* w, const void* bias, int activation, void* y, int64_t stream) {
  const char* fn = "ct_cuda_conv_forward";
  Geo g;
  CT_TRY_STATUS(parse(fn, dtype, layout, algorithm, gv, &g));
  if (activation < CT_ACTIVATION_NONE || activation >= CT_ACTIVATION_COUNT)
    return fail(CT_ERR_INVALID_ARG, "%s: unknown activation %d", fn, activation);
  const int algo = resolve(fn, dtype, g, algorithm);
  if (algo < 0) return -algo;
  if (g.N == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "w", w));
  CT_TRY_STATUS(check_ptr(fn, "y", y));
  cudaStream_t s = as_stream(stream);
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return run_forward<T>(fn, algo, g, x, w, bias, activation, y, s);
  });
}

extern "C" int ct_cuda_conv_backward_data(int dtype, int layout, int algorithm, const int64_t* gv, const void* dy,
                                          const void* w, void* dx, int64_t stream) {
  const char* fn = "ct_cuda_conv_backward_data";
  Geo g;
  CT_TRY_STATUS(parse(fn, dtype, layout, algorithm, gv, &g));
  const int algo = resolve(fn, dtype, g, algorithm);
  if (algo < 0) return -algo;
  if (g.N == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "dy", dy));
  CT_TRY_STATUS(check_ptr(fn, "w", w));
  CT_TRY_STATUS(check_ptr(fn, "dx", dx));
  cudaStream_t s = as_stream(stream);
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return run_backward_data<T>(fn, algo, g, dy, w, dx, s);
  });
}

extern "C" int ct_cuda_conv_backward_weight(int dtype, int layout, int algorithm, const int64_t* gv, const void* x,
                                            const void* dy, void* dw, void* dbias, int64_t stream) {
  const char* fn = "ct_cuda_conv_backward_weight";
  Geo g;
  CT_TRY_STATUS(parse(fn, dtype, layout, algorithm, gv, &g));
  const int algo = resolve(fn, dtype, g, algorithm);
  if (algo < 0) return -algo;
  CT_TRY_STATUS(check_ptr(fn, "dw", dw));
  cudaStream_t s = as_stream(stream);
  if (g.N == 0) {
    CT_CUDA_TRY(fn, cudaMemsetAsync(dw, 0, (size_t)(g.K * g.Cg * g.KS * esize(dtype)), s));
    if (dbias) CT_CUDA_TRY(fn, cudaMemsetAsync(dbias, 0, (size_t)(g.K * esize(dtype)), s));
    return CT_OK;
  }
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "dy", dy));
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return run_backward_weight<T>(fn, algo, g, x, dy, dw, dbias, s);
  });
}
