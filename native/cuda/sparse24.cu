/*
 * 2:4 GEMM on the sparse tensor cores (contract in cortado/sparse24.h; the metadata layout in
 * native/shared/sp24_layout.h; the CPU twins in native/cpu/sparse24.cpp).
 *
 * C [rows, ncols] = W B with W 2:4 ([rows, k], values [rows, k / 2]) and B [k, ncols] dense.
 * mma.sp.sync.aligned.m16n8k32 multiplies a 16 x 32 tile of W, given as its 16 x 16 kept values
 * and 2 bits of position per value, by a 32 x 8 tile of B: the hardware selects B's rows by the
 * positions, so each instruction does the work of a dense m16n8k32 at the cost of an m16n8k16.
 *
 * Tiling: a block of 4 warps computes a 64 x 64 tile of C; warp (wm, wn) of the 2 x 2 grid owns
 * 32 x 32 = 2 (m16) x 4 (n8) mma tiles with 32 float accumulators per lane. Per step of 32 dense
 * columns of W (k tile):
 *   - the block stages B [32, 64] in shared memory transposed (Bt[n][k], rows padded to 40
 *     halves so the fragment loads, lane 4 g + t reading word 20 g + t, hit 32 distinct banks),
 *     zero past k and ncols;
 *   - each lane loads its A fragment straight from `values` (a group's two kept values are one
 *     32-bit word, sp24_layout.h) and lanes t = 0, 1 of each quad their metadata word: from the
 *     packed array (ct_cuda_sp24_matmul) or built in registers from the N:M byte positions with
 *     sp24::meta_word, the same function as the CPU packer (nm_matmul's 2:4 F16/BF16 path);
 *   - 8 mma.sp per warp. Rows past `rows` and groups past k / 4 load zero values with positions
 *     (0, 1), so ragged edges need no special path.
 * Epilogue: float32 accumulators rounded once to T. Cost: 2 rows (k / 2) ncols FLOPs; W is read
 * ceil(ncols / 64) times, B ceil(rows / 64) times. What this kernel is not yet: cp.async
 * double buffering of the B tile and A staged through shared memory (coalesced 128-byte reads);
 * those are the next steps once a GPU run has timed it against cuBLAS's dense GEMM.
 */
#include "common.cuh"
#include "cortado/sparse24.h"
#include "device_check.cuh"
#include "sp24_layout.h"
#include "sparse_internal.cuh"

namespace ct {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 32;  // block tile of C and dense k step
constexpr int kPadK = kBK + 8;                // halves per transposed B row in shared memory
constexpr int kGemmThreads = 128;

int check_shape24(const char* fn, int64_t rows, int64_t k, int64_t ncols) {
  if (rows < 0 || k < 0 || ncols < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: rows=%lld, k=%lld, ncols=%lld (must be >= 0)", fn, (long long)rows, (long long)k,
                (long long)ncols);
  if (k % 4 != 0) return fail(CT_ERR_INVALID_ARG, "%s: k = %lld is not a multiple of 4 (2:4 groups)", fn, (long long)k);
  return CT_OK;
}

// ------------------------------------------------------------------ metadata
__global__ void positions_check(int64_t slots, const uint8_t* __restrict__ meta, unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t s = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; s < slots; s += step)
    if (meta[s] >= 4 || ((s & 1) && meta[s] <= meta[s - 1])) atomicMin(bad, (unsigned long long)s);
}

__global__ void pack_words(int64_t rows, int64_t k, const uint8_t* __restrict__ meta, uint32_t* __restrict__ packed) {
  const int64_t kt = sp24::k_tiles(k), words = sp24::packed_words(rows, k);
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < words; i += step) {
    const int64_t tile = i / sp24::kWordsPerTile;
    packed[i] = sp24::meta_word(rows, k, meta, tile / kt, tile % kt, (int)(i % sp24::kWordsPerTile));
  }
}

/* The nibble of (row, group) in the packed words: two increasing positions, or its index is bad. */
__global__ void packed_check(int64_t rows, int64_t k, const uint32_t* __restrict__ packed, unsigned long long* bad) {
  const int64_t groups = k / 4, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < rows * groups; i += step) {
    int64_t w;
    int shift;
    sp24::locate(k, i / groups, i % groups, &w, &shift);
    const uint32_t nib = (packed[w] >> shift) & 0xFu;
    if ((nib & 3u) >= (nib >> 2)) atomicMin(bad, (unsigned long long)i);
  }
}

int check_positions(const char* fn, int64_t rows, int64_t k, const uint8_t* meta, cudaStream_t st, int sms) {
  const int64_t slots = rows * (k / 2);
  unsigned long long bad;
  CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* b) {
    positions_check<<<grid_for(slots, sms), kThreads, 0, st>>>(slots, meta, b);
  }, &bad));
  if (bad == ~0ull) return CT_OK;
  uint8_t v = 0;
  CT_TRY_STATUS(read_one(fn, meta + bad, &v));
  return fail(CT_ERR_INVALID_ARG,
              "%s: meta of row %lld, group %lld, slot %d is %d: the 2:4 pattern needs positions in [0, 4), strictly "
              "increasing within a group",
              fn, (long long)(bad / (k / 2)), (long long)((bad % (k / 2)) / 2), (int)(bad & 1), v);
}

int check_packed(const char* fn, int64_t rows, int64_t k, const uint32_t* packed, cudaStream_t st, int sms) {
  const int64_t groups = k / 4;
  unsigned long long bad;
  CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* b) {
    packed_check<<<grid_for(rows * groups, sms), kThreads, 0, st>>>(rows, k, packed, b);
  }, &bad));
  if (bad == ~0ull) return CT_OK;
  int64_t w;
  int shift;
  sp24::locate(k, (int64_t)bad / groups, (int64_t)bad % groups, &w, &shift);
  uint32_t word = 0;
  CT_TRY_STATUS(read_one(fn, packed + w, &word));
  return fail(CT_ERR_INVALID_ARG,
              "%s: packed metadata word %lld, bits %d..%d (row %lld, group %lld) = 0x%x: not two increasing positions "
              "of a 2:4 group",
              fn, (long long)w, shift, shift + 3, (long long)(bad / groups), (long long)(bad % groups),
              (word >> shift) & 0xFu);
}

template <class T>
__global__ void unpack_groups(int64_t rows, int64_t k, const T* __restrict__ v, const uint32_t* __restrict__ packed,
                              T* __restrict__ x) {
  const int64_t groups = k / 4, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < rows * groups; i += step) {
    const int64_t r = i / groups, g = i % groups;
    int64_t w;
    int shift;
    sp24::locate(k, r, g, &w, &shift);
    const uint32_t nib = (packed[w] >> shift) & 0xFu;
    T* out = x + r * k + g * 4;
    for (int p = 0; p < 4; ++p) out[p] = store<T>((compute_t<T>)0);
    out[nib & 3u] = v[r * (k / 2) + g * 2];
    out[nib >> 2] = v[r * (k / 2) + g * 2 + 1];
  }
}

// ------------------------------------------------------------------ the tensor-core GEMM
/* Metadata word w of tile (tr, kt): read from the packed array, or built from the N:M positions. */
struct PackedMeta {
  const uint32_t* packed;
  int64_t ktiles;
  __device__ uint32_t word(int64_t tr, int64_t kt, int w) const {
    return packed[(tr * ktiles + kt) * sp24::kWordsPerTile + w];
  }
};
struct PositionMeta {
  int64_t rows, k;
  const uint8_t* meta;
  __device__ uint32_t word(int64_t tr, int64_t kt, int w) const { return sp24::meta_word(rows, k, meta, tr, kt, w); }
};

template <class T>
__device__ __forceinline__ void mma_sp16832(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t e) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  } else {
    asm volatile(
        "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  }
}

template <class T, class Meta>
__global__ void __launch_bounds__(kGemmThreads)
sp24_gemm(int64_t rows, int64_t k, int64_t ncols, const T* __restrict__ values, Meta meta, const T* __restrict__ b,
          T* __restrict__ c) {
  __shared__ __align__(16) uint16_t bt[kBN][kPadK];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int wm = warp >> 1, wn = warp & 1;
  const int64_t m0 = (int64_t)blockIdx.y * kBM, n0 = (int64_t)blockIdx.x * kBN;
  const int64_t groups = k / 4, per_row = k / 2, ktiles = sp24::k_tiles(k);
  const uint16_t* braw = reinterpret_cast<const uint16_t*>(b);
  const uint32_t* vwords = reinterpret_cast<const uint32_t*>(values);  // a group's 2 values = 1 word

  float acc[2][4][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.f;

  for (int64_t kt = 0; kt < ktiles; ++kt) {
    // B [32, 64] -> bt[n][k] (coalesced over n)
    for (int i = threadIdx.x; i < kBK * kBN; i += kGemmThreads) {
      const int kk = i / kBN, nn = i % kBN;
      const int64_t gr = kt * kBK + kk, gc = n0 + nn;
      bt[nn][kk] = (gr < k && gc < ncols) ? braw[gr * ncols + gc] : (uint16_t)0;
    }
    __syncthreads();
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
      const int64_t r0 = m0 + wm * 32 + mi * 16;  // a multiple of 16: one metadata tile row
      if (r0 >= rows) continue;  // warp-uniform: no rows (and no metadata tile) here
      uint32_t a[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int64_t r = r0 + g + 8 * (q & 1), grp = kt * 8 + t + 4 * (q >> 1);
        a[q] = (r < rows && grp < groups) ? vwords[(r * per_row + grp * 2) >> 1] : 0u;
      }
      const uint32_t e = t < 2 ? meta.word(r0 / sp24::kTileRows, kt, 2 * g + t) : 0u;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        if (n0 + wn * 32 + ni * 8 >= ncols) break;  // warp-uniform: the rest of the n tiles are past ncols
        const int nn = wn * 32 + ni * 8 + g;
        uint32_t bf[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) bf[j] = *reinterpret_cast<const uint32_t*>(&bt[nn][8 * j + 2 * t]);
        mma_sp16832<T>(acc[mi][ni], a, bf, e);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int64_t r = m0 + wm * 32 + mi * 16 + g + 8 * (q >> 1);
        const int64_t col = n0 + wn * 32 + ni * 8 + 2 * t + (q & 1);
        if (r < rows && col < ncols) c[r * ncols + col] = store<T>(acc[mi][ni][q]);
      }
}

template <class Meta>
int launch_gemm(const char* fn, int dtype, int64_t rows, int64_t k, int64_t ncols, const void* values, Meta meta,
                const void* b, void* c, cudaStream_t st) {
  const dim3 grid((unsigned)((ncols + kBN - 1) / kBN), (unsigned)((rows + kBM - 1) / kBM));
  if (dtype == CT_BF16)
    sp24_gemm<__nv_bfloat16, Meta><<<grid, kGemmThreads, 0, st>>>(rows, k, ncols, (const __nv_bfloat16*)values, meta,
                                                                  (const __nv_bfloat16*)b, (__nv_bfloat16*)c);
  else
    sp24_gemm<__half, Meta><<<grid, kGemmThreads, 0, st>>>(rows, k, ncols, (const __half*)values, meta,
                                                           (const __half*)b, (__half*)c);
  return check_launch(fn);
}

}  // namespace

bool sp24_applies(int dtype, int64_t rows, int64_t ncols, const void* values) {
  return (dtype == CT_BF16 || dtype == CT_F16) && aligned_to(values, 4) && (rows + kBM - 1) / kBM <= 65535 &&
         (ncols + kBN - 1) / kBN <= 2147483647;
}

int sp24_matmul_positions(const char* fn, int dtype, int64_t rows, int64_t k, int64_t ncols, const void* values,
                          const uint8_t* meta, const void* b, void* c, cudaStream_t st) {
  return launch_gemm(fn, dtype, rows, k, ncols, values, PositionMeta{rows, k, meta}, b, c, st);
}

}  // namespace ct

using namespace ct;

extern "C" {

int ct_cuda_sp24_pack_meta(int64_t rows, int64_t k, const uint8_t* meta, uint32_t* packed, int64_t stream) {
  static const char* fn = "ct_cuda_sp24_pack_meta";
  CT_TRY_STATUS(check_shape24(fn, rows, k, 0));
  if (rows == 0 || k == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "meta", meta));
  CT_TRY_STATUS(check_ptr(fn, "packed", packed));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_positions(fn, rows, k, meta, st, sms));
  pack_words<<<grid_for(sp24::packed_words(rows, k), sms), kThreads, 0, st>>>(rows, k, meta, packed);
  return check_launch(fn);
}

int ct_cuda_sp24_unpack(int dtype, int64_t rows, int64_t k, const void* values, const uint32_t* packed, void* x,
                        int64_t stream) {
  static const char* fn = "ct_cuda_sp24_unpack";
  if (dtype != CT_F32 && dtype != CT_F64 && dtype != CT_F16 && dtype != CT_BF16)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64, F16, BF16)", fn, dtype_name(dtype),
                dtype);
  CT_TRY_STATUS(check_shape24(fn, rows, k, 0));
  if (rows == 0 || k == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "values", values));
  CT_TRY_STATUS(check_ptr(fn, "packed", packed));
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_packed(fn, rows, k, packed, st, sms));
  const unsigned grid = grid_for(rows * (k / 4), sms);
  dispatch_float(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unpack_groups<T><<<grid, kThreads, 0, st>>>(rows, k, (const T*)values, packed, (T*)x);
  });
  return check_launch(fn);
}

int ct_cuda_sp24_matmul(int dtype, int64_t rows, int64_t k, int64_t ncols, const void* values, const uint32_t* packed,
                        const void* b, void* c, int64_t stream) {
  static const char* fn = "ct_cuda_sp24_matmul";
  if (dtype != CT_F16 && dtype != CT_BF16)
    return fail(CT_ERR_UNSUPPORTED,
                "%s: dtype %s (%d): the sparse tensor cores take F16 and BF16 (nm_matmul runs F32 and F64)", fn,
                dtype_name(dtype), dtype);
  CT_TRY_STATUS(check_shape24(fn, rows, k, ncols));
  if (rows == 0 || ncols == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "c", c));
  const cudaStream_t st = as_stream(stream);
  if (k == 0) {
    CT_CUDA_TRY(fn, cudaMemsetAsync(c, 0, (size_t)(rows * ncols) * 2, st));
    return CT_OK;
  }
  CT_TRY_STATUS(check_ptr(fn, "values", values));
  CT_TRY_STATUS(check_ptr(fn, "packed", packed));
  CT_TRY_STATUS(check_ptr(fn, "b", b));
  if (!sp24_applies(dtype, rows, ncols, values))
    return fail(CT_ERR_INVALID_ARG, "%s: values must be 4-byte aligned and rows = %lld at most %lld", fn,
                (long long)rows, (long long)kBM * 65535);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_packed(fn, rows, k, packed, st, sms));
  return launch_gemm(fn, dtype, rows, k, ncols, values, PackedMeta{packed, sp24::k_tiles(k)}, b, c, st);
}

}  // extern "C"
