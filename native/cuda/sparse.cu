/*
 * Sparse family on CUDA (contract in cortado/sparse.h; the CPU twins in native/cpu/sparse.cpp).
 *
 * Checks first: one kernel per structure (crow, col, N:M meta, top-k indices) writes the FIRST
 * offending position into a device word by atomicMin; the launcher copies it back (one stream
 * synchronization per call that takes indices) and answers with the CPU's status and a message
 * naming the position and value. Nothing reads data through an index before that check passed.
 *
 * CSR SpMM (A B): Sputnik's design (csr_spmm_sputnik below): a subwarp of 8, 16 or 32 lanes per
 * (row, column tile) of C, 16-byte vector loads of B's rows, the row's entries broadcast by
 * __shfl_sync, and the row swizzle (rows in decreasing length) for load balance. N:M and BSR
 * products (A B) run the warp-per-(row, 32-column tile) kernel spmm_rows: the warp stages 32
 * entries in registers, broadcasts each by __shfl_sync, lane j accumulates C[row, tile + j].
 * Cost: 2 nnz n FLOPs; A is read once per column tile, each touched B row once per entry.
 * A^T B: one warp per (row of A, 32-column tile), atomicAdd of v * B[row, :] into C[col, :]
 * (float32 accumulation through a scratch buffer for bfloat16): the order of the additions is
 * not fixed, like index_add on CUDA.
 * SDDMM: one warp per stored entry, lanes striding over d, a warp reduction (compute_t).
 * BSR (block CSR): the same kernels through BsrCols, which enumerates row r's entries as (block,
 * column in block) pairs of its block row (A^T B by the atomic scatter); the BSR SDDMM is one warp
 * per element of every stored block. Cost as CSR with nnz = nnzb block^2.
 * Row softmax and its backward: one warp per row (max, sum of exp, write; sum(y dy), write).
 * Top-k: one block per line; the line's (value key, position) pairs are bitonic-sorted in shared
 * memory (lines of up to 2048 elements), keys ordered as the CPU's (NaN largest, ties to the
 * lower position). Top-k backward: one thread per line, adding dvalues in order (deterministic).
 * N:M: compress / decompress one thread per group (the CPU's rank rule, m <= 16); the N:M GEMM
 * is the SpMM warp kernel with column = group * m + meta (bfloat16 2:4: the mma.sp kernel of
 * sparse24.cu, its metadata built in registers from meta); its dvalues one warp per kept entry,
 * its db one thread per (group, column) with m accumulators in registers (deterministic).
 */
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"
#include "cortado/sparse.h"
#include "device_check.cuh"
#include "sparse_internal.cuh"

namespace ct {
namespace {

constexpr int kWarps = 8;          // warps per block of the warp-per-item kernels
constexpr int kTopkMax = 2048;     // longest top-k line sorted in shared memory

int check_dtype(const char* fn, int dtype) {
  if (dtype == CT_F32 || dtype == CT_F64 || dtype == CT_BF16) return CT_OK;
  return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64, BF16 only)", fn, dtype_name(dtype),
              dtype);
}

template <class F> bool dispatch_sparse(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(type_tag<float>{}); return true;
    case CT_F64: f(type_tag<double>{}); return true;
    case CT_BF16: f(type_tag<__nv_bfloat16>{}); return true;
    default: return false;
  }
}

int check_sizes(const char* fn, std::initializer_list<std::pair<const char*, int64_t>> sizes) {
  for (auto& s : sizes)
    if (s.second < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s=%lld is negative", fn, s.first, (long long)s.second);
  return CT_OK;
}

unsigned blocks_for_warps(int64_t warps) {
  int64_t b = (warps + kWarps - 1) / kWarps;
  return (unsigned)(b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b));
}

// ------------------------------------------------------------------ structure checks
__global__ void crow_check(int64_t rows, int64_t nnz, const int64_t* __restrict__ crow, unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r <= rows; r += step) {
    const int64_t v = crow[r];
    const bool ok = r == 0 ? (v == 0 && (rows > 0 || v == nnz)) : (v >= crow[r - 1] && v <= nnz && (r < rows || v == nnz));
    if (!ok) atomicMin(bad, (unsigned long long)r);
  }
}

__global__ void col_check(int64_t nnz, int64_t cols, const int64_t* __restrict__ col, unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < nnz; e += step)
    if (col[e] < 0 || col[e] >= cols) atomicMin(bad, (unsigned long long)e);
}

__global__ void meta_check(int64_t slots, int n, int m, const uint8_t* __restrict__ meta, unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t s = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; s < slots; s += step) {
    const int t = (int)(s % n);
    if (meta[s] >= m || (t > 0 && meta[s] <= meta[s - 1])) atomicMin(bad, (unsigned long long)s);
  }
}

__global__ void range_check(int64_t count, int64_t bound, const int64_t* __restrict__ idx, unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < count; e += step)
    if (idx[e] < 0 || idx[e] >= bound) atomicMin(bad, (unsigned long long)e);
}

int check_csr(const char* fn, int64_t rows, int64_t cols, int64_t nnz, const int64_t* crow, const int64_t* col,
              cudaStream_t st, int sms) {
  CT_TRY_STATUS(check_ptr(fn, "crow_indices", crow));
  unsigned long long bad;
  CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* b) {
    crow_check<<<grid_for(rows + 1, sms), kThreads, 0, st>>>(rows, nnz, crow, b);
  }, &bad));
  if (bad != ~0ull) {
    int64_t v = 0;
    CT_TRY_STATUS(read_one(fn, crow + bad, &v));
    return fail(CT_ERR_INDEX_OUT_OF_RANGE,
                "%s: crow_indices[%lld] = %lld (crow_indices must start at 0, be non-decreasing, at most nnz = %lld, "
                "and end at nnz)", fn, (long long)bad, (long long)v, (long long)nnz);
  }
  if (col == nullptr && cols < 0) return CT_OK;  // row pointers only (softmax)
  if (nnz == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "col_indices", col));
  CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* b) {
    col_check<<<grid_for(nnz, sms), kThreads, 0, st>>>(nnz, cols, col, b);
  }, &bad));
  if (bad != ~0ull) {
    int64_t v = 0;
    CT_TRY_STATUS(read_one(fn, col + bad, &v));
    return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: col_indices[%lld] = %lld is out of range [0, %lld)", fn, (long long)bad,
                (long long)v, (long long)cols);
  }
  return CT_OK;
}

int check_nm(const char* fn, int64_t rows, int64_t k, int n, int m) {
  if (n < 1 || m > 16 || n >= m) return fail(CT_ERR_INVALID_ARG, "%s: N:M = %d:%d, need 1 <= N < M <= 16", fn, n, m);
  if (k % m != 0) return fail(CT_ERR_INVALID_ARG, "%s: k = %lld is not a multiple of M = %d", fn, (long long)k, m);
  return CT_OK;
}

int check_meta(const char* fn, int64_t rows, int64_t k, int n, int m, const uint8_t* meta, cudaStream_t st, int sms) {
  const int64_t per_row = k / m * n, slots = rows * per_row;
  if (slots == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "meta", meta));
  unsigned long long bad;
  CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* b) {
    meta_check<<<grid_for(slots, sms), kThreads, 0, st>>>(slots, n, m, meta, b);
  }, &bad));
  if (bad != ~0ull) {
    uint8_t v = 0;
    CT_TRY_STATUS(read_one(fn, meta + bad, &v));
    return fail(CT_ERR_INVALID_ARG,
                "%s: meta of row %lld, group %lld, slot %d is %d: the %d:%d pattern needs positions in [0, %d), "
                "strictly increasing within a group",
                fn, (long long)(bad / per_row), (long long)((bad % per_row) / n), (int)(bad % n), v, n, m, m);
  }
  return CT_OK;
}

// ------------------------------------------------------------------ SpMM (warp per row tile)
/* Column source of entry e of row r: CSR col[e], or N:M (e / n) * m + meta[r * per_row + e]. */
struct CsrCols {
  const int64_t* crow;
  const int64_t* col;
  __device__ int64_t begin(int64_t r) const { return crow[r]; }
  __device__ int64_t end(int64_t r) const { return crow[r + 1]; }
  __device__ int64_t column(int64_t, int64_t e) const { return col[e]; }
  __device__ int64_t vindex(int64_t, int64_t e) const { return e; }
};
struct NmCols {
  int64_t per_row;
  int n, m;
  const uint8_t* meta;
  __device__ int64_t begin(int64_t r) const { return r * per_row; }
  __device__ int64_t end(int64_t r) const { return (r + 1) * per_row; }
  __device__ int64_t column(int64_t r, int64_t e) const {
    const int64_t s = e - r * per_row;
    return (s / n) * m + meta[e];
  }
  __device__ int64_t vindex(int64_t, int64_t e) const { return e; }
};
/* BSR: row r of A is row a = r % block of its block row; its entries t run over (block
 * e = t / block, q = t % block) of the block row, column col[e] block + q, value block e [a, q]. */
struct BsrCols {
  const int64_t* crow;
  const int64_t* col;
  int64_t block;
  __device__ int64_t begin(int64_t r) const { return crow[r / block] * block; }
  __device__ int64_t end(int64_t r) const { return crow[r / block + 1] * block; }
  __device__ int64_t column(int64_t, int64_t t) const { return col[t / block] * block + t % block; }
  __device__ int64_t vindex(int64_t r, int64_t t) const { return ((t / block) * block + r % block) * block + t % block; }
};

template <class T, class Cols>
__global__ void __launch_bounds__(kWarps * 32)
spmm_rows(int64_t rows, int64_t n, Cols cols, const T* __restrict__ v, const T* __restrict__ b, T* __restrict__ c) {
  using A = compute_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t tiles = (n + 31) / 32;
  const int64_t item = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (item >= rows * tiles) return;
  const int64_t r = item / tiles, j = (item % tiles) * 32 + lane;
  A acc = 0;
  const int64_t e0 = cols.begin(r), e1 = cols.end(r);
  for (int64_t base = e0; base < e1; base += 32) {
    const int64_t e = base + lane;
    A my_v = 0;
    int64_t my_c = 0;
    if (e < e1) {
      my_v = load(v[cols.vindex(r, e)]);
      my_c = cols.column(r, e);
    }
    const int cnt = e1 - base < 32 ? (int)(e1 - base) : 32;
    for (int t = 0; t < cnt; ++t) {
      const A vv = __shfl_sync(0xffffffffu, my_v, t);
      const int64_t cc = __shfl_sync(0xffffffffu, my_c, t);
      if (j < n) acc += vv * (A)load(b[cc * n + j]);
    }
  }
  if (j < n) c[r * n + j] = store<T>(acc);
}

/* A^T B: C[column(r, e), :] += value(r, e) * B[r, :] with atomics into an accumulator of type Acc. */
template <class T, class Acc, class Cols>
__global__ void __launch_bounds__(kWarps * 32)
spmm_t_rows(int64_t rows, int64_t n, Cols cols, const T* __restrict__ v, const T* __restrict__ b, Acc* __restrict__ c) {
  const int lane = threadIdx.x & 31;
  const int64_t tiles = (n + 31) / 32;
  const int64_t item = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (item >= rows * tiles) return;
  const int64_t r = item / tiles, j = (item % tiles) * 32 + lane;
  if (j >= n) return;
  const Acc x = (Acc)load(b[r * n + j]);
  for (int64_t e = cols.begin(r); e < cols.end(r); ++e)
    atomicAdd(c + cols.column(r, e) * n + j, (Acc)load(v[cols.vindex(r, e)]) * x);
}

template <class T> __global__ void from_float(int64_t count, const float* __restrict__ src, T* __restrict__ dst) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += step) dst[i] = store<T>(src[i]);
}

// ------------------------------------------------------------------ SDDMM, row softmax
template <class T>
__global__ void __launch_bounds__(kWarps * 32)
sddmm_entries(int64_t rows, int64_t nnz, int64_t d, const int64_t* __restrict__ crow, const int64_t* __restrict__ col,
              const T* __restrict__ x, const T* __restrict__ y, T* __restrict__ out) {
  using A = compute_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t e = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (e >= nnz) return;
  int64_t lo = 0, hi = rows - 1;  // the row of entry e: the last r with crow[r] <= e (binary search)
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (crow[mid] <= e) lo = mid;
    else hi = mid - 1;
  }
  const T* xr = x + lo * d;
  const T* yr = y + col[e] * d;
  A s = 0;
  for (int64_t j = lane; j < d; j += 32) s += (A)load(xr[j]) * (A)load(yr[j]);
  s = warp_allreduce(s, [](A a, A b) { return a + b; });
  if (lane == 0) out[e] = store<T>(s);
}

/* BSR SDDMM: one warp per output element (block e, a, q) = x[i block + a] . y[col[e] block + q],
 * i the block row of e (binary search over crow). */
template <class T>
__global__ void __launch_bounds__(kWarps * 32)
bsr_sddmm_entries(int64_t brows, int64_t nnzb, int64_t block, int64_t d, const int64_t* __restrict__ crow,
                  const int64_t* __restrict__ col, const T* __restrict__ x, const T* __restrict__ y, T* __restrict__ out) {
  using A = compute_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t o = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5), bb = block * block;
  if (o >= nnzb * bb) return;
  const int64_t e = o / bb, a = (o % bb) / block, q = o % block;
  int64_t lo = 0, hi = brows - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (crow[mid] <= e) lo = mid;
    else hi = mid - 1;
  }
  const T* xr = x + (lo * block + a) * d;
  const T* yr = y + (col[e] * block + q) * d;
  A s = 0;
  for (int64_t j = lane; j < d; j += 32) s += (A)load(xr[j]) * (A)load(yr[j]);
  s = warp_allreduce(s, [](A p, A r) { return p + r; });
  if (lane == 0) out[o] = store<T>(s);
}

template <class T>
__global__ void __launch_bounds__(kWarps * 32)
csr_softmax_rows(int64_t rows, const int64_t* __restrict__ crow, const T* __restrict__ x, T* __restrict__ y) {
  using A = compute_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t r = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int64_t e0 = crow[r], e1 = crow[r + 1];
  A m = -INFINITY;
  for (int64_t e = e0 + lane; e < e1; e += 32) m = max(m, (A)load(x[e]));
  m = warp_allreduce(m, [](A a, A b) { return max(a, b); });
  A s = 0;
  for (int64_t e = e0 + lane; e < e1; e += 32) s += exp((A)load(x[e]) - m);
  s = warp_allreduce(s, [](A a, A b) { return a + b; });
  const A inv = (A)1 / s;
  for (int64_t e = e0 + lane; e < e1; e += 32) y[e] = store<T>(exp((A)load(x[e]) - m) * inv);
}

template <class T>
__global__ void __launch_bounds__(kWarps * 32)
csr_softmax_backward_rows(int64_t rows, const int64_t* __restrict__ crow, const T* __restrict__ y,
                          const T* __restrict__ dy, T* __restrict__ dx) {
  using A = compute_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t r = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int64_t e0 = crow[r], e1 = crow[r + 1];
  A s = 0;
  for (int64_t e = e0 + lane; e < e1; e += 32) s += (A)load(y[e]) * (A)load(dy[e]);
  s = warp_allreduce(s, [](A a, A b) { return a + b; });
  for (int64_t e = e0 + lane; e < e1; e += 32) dx[e] = store<T>((A)load(y[e]) * ((A)load(dy[e]) - s));
}

// ------------------------------------------------------------------ top-k
/* An order-preserving unsigned key of a value (as double; -0 == +0; NaN above everything). */
__device__ __forceinline__ unsigned long long order_key(double d) {
  if (d != d) return ~0ull;
  if (d == 0) d = 0;
  const unsigned long long u = (unsigned long long)__double_as_longlong(d);
  return (u >> 63) ? ~u : (u | 0x8000000000000000ull);
}

struct KeyPos {
  unsigned long long key;  // ascending sort key (largest: the complement of order_key)
  int pos;
};
__device__ __forceinline__ bool before(const KeyPos& a, const KeyPos& b) {
  return a.key < b.key || (a.key == b.key && a.pos < b.pos);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
topk_lines(int64_t len, int64_t inner, int64_t k, int largest, int p2, const T* __restrict__ x, T* __restrict__ values,
           int64_t* __restrict__ indices) {
  extern __shared__ KeyPos s[];
  const int64_t line = blockIdx.x;
  const int64_t o = line / inner, i = line % inner;
  const T* src = x + o * len * inner + i;
  for (int p = threadIdx.x; p < p2; p += blockDim.x) {
    if (p < len) {
      const unsigned long long key = order_key((double)load(src[(int64_t)p * inner]));
      s[p] = KeyPos{largest ? (key == ~0ull ? 0ull : ~key) : key, p};
    } else {
      s[p] = KeyPos{~0ull, 0x7fffffff};  // padding sorts last
    }
  }
  __syncthreads();
  for (int size = 2; size <= p2; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int p = threadIdx.x; p < p2; p += blockDim.x) {
        const int q = p ^ stride;
        if (q > p) {
          const bool up = (p & size) == 0;
          if (up ? before(s[q], s[p]) : before(s[p], s[q])) {
            const KeyPos t = s[p];
            s[p] = s[q];
            s[q] = t;
          }
        }
      }
      __syncthreads();
    }
  }
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
    const int64_t at = o * k * inner + j * inner + i;
    const int p = s[j].pos;
    values[at] = src[(int64_t)p * inner];
    indices[at] = p;
  }
}

template <class T>
__global__ void topk_backward_lines(int64_t lines, int64_t len, int64_t inner, int64_t k, const T* __restrict__ g,
                                    const int64_t* __restrict__ idx, T* __restrict__ dx) {
  using A = compute_t<T>;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t line = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; line < lines; line += step) {
    const int64_t o = line / inner, i = line % inner;
    T* plane = dx + o * len * inner + i;
    for (int64_t p = 0; p < len; ++p) plane[p * inner] = store<T>((A)0);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t at = o * k * inner + j * inner + i;
      T* d = plane + idx[at] * inner;
      *d = store<T>((A)load(*d) + (A)load(g[at]));
    }
  }
}

// ------------------------------------------------------------------ N:M
template <class A> __device__ __forceinline__ bool beats(A a, int pa, A b, int pb) {
  const bool na = a != a, nb = b != b;
  if (na || nb) return na && (!nb || pa < pb);
  const A fa = fabs(a), fb = fabs(b);
  return fa > fb || (fa == fb && pa < pb);
}

template <class T>
__global__ void nm_compress_groups(int64_t groups, int n, int m, const T* __restrict__ x, T* __restrict__ v,
                                   uint8_t* __restrict__ meta) {
  using A = compute_t<T>;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step) {
    A a[16];
    for (int p = 0; p < m; ++p) a[p] = load(x[g * m + p]);
    int out = 0;
    for (int p = 0; p < m; ++p) {
      int rank = 0;
      for (int q = 0; q < m; ++q) rank += q != p && beats(a[q], q, a[p], p);
      if (rank < n) {
        v[g * n + out] = store<T>(a[p]);
        meta[g * n + out] = (uint8_t)p;
        ++out;
      }
    }
  }
}

template <class T>
__global__ void nm_decompress_groups(int64_t groups, int n, int m, const T* __restrict__ v,
                                     const uint8_t* __restrict__ meta, T* __restrict__ x) {
  using A = compute_t<T>;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step) {
    for (int p = 0; p < m; ++p) x[g * m + p] = store<T>((A)0);
    for (int t = 0; t < n; ++t) x[g * m + meta[g * n + t]] = v[g * n + t];
  }
}

/* dvalues[r, s] = dot(dc[r, :], b[column(r, s), :]): one warp per kept entry. */
template <class T>
__global__ void __launch_bounds__(kWarps * 32)
nm_dvalues(int64_t slots, int64_t per_row, int64_t ncols, int n, int m, const uint8_t* __restrict__ meta,
           const T* __restrict__ b, const T* __restrict__ dc, T* __restrict__ dv) {
  using A = compute_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t e = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (e >= slots) return;
  const int64_t r = e / per_row, s = e % per_row;
  const T* br = b + ((s / n) * m + meta[e]) * ncols;
  const T* dr = dc + r * ncols;
  A acc = 0;
  for (int64_t j = lane; j < ncols; j += 32) acc += (A)load(dr[j]) * (A)load(br[j]);
  acc = warp_allreduce(acc, [](A a, A b) { return a + b; });
  if (lane == 0) dv[e] = store<T>(acc);
}

/* db[g m + p, j] = sum over rows and slots of group g at position p of value * dc[r, j]. */
template <class T>
__global__ void nm_db(int64_t rows, int64_t groups, int64_t ncols, int n, int m, const T* __restrict__ v,
                      const uint8_t* __restrict__ meta, const T* __restrict__ dc, T* __restrict__ db) {
  using A = compute_t<T>;
  const int64_t per_row = groups * n;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t item = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; item < groups * ncols; item += step) {
    const int64_t g = item / ncols, j = item % ncols;
    A acc[16];
    for (int p = 0; p < 16; ++p) acc[p] = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const A d = load(dc[r * ncols + j]);
      for (int t = 0; t < n; ++t) {
        const int64_t s = r * per_row + g * n + t;
        const int p = meta[s];
#pragma unroll
        for (int q = 0; q < 16; ++q)
          if (q == p) acc[q] += (A)load(v[s]) * d;  // register-indexed without local memory
      }
    }
    for (int p = 0; p < m; ++p) db[(g * m + p) * ncols + j] = store<T>(acc[p]);
  }
}

// ------------------------------------------------------------------ CSR SpMM, Sputnik style
/*
 * C = A B for CSR A: one subwarp of S lanes (8, 16 or 32: the fewest that cover the columns)
 * per (row, S V columns of C), lane l owning V adjacent columns (V = 16 bytes of T when n and
 * the pointers allow: float4, 8 bfloat16, double2; else 1). The subwarp loads S of the row's
 * entries at once (one coalesced load of values and column indices), broadcasts each with
 * __shfl_sync over the subwarp, and every lane adds v * B[col, its V columns] with one vector
 * load (a row segment of B read once per entry, S V contiguous elements per subwarp).
 * Row swizzle (load balance): with at least kSwizzleMinRows rows the rows are taken in order of
 * decreasing length (a CUB radix sort of (length, row) on the stream, O(rows), before the
 * product), so the block scheduler hands out the long rows first and the short ones fill the
 * tail, instead of one late long row running alone. Cost: 2 nnz n FLOPs; A read ceil(n / (S V))
 * times, B nnz n elements; the sort 2 passes over rows int32 pairs.
 */
constexpr int kSpmmThreads = 128;
constexpr int64_t kSwizzleMinRows = 1024;

template <class T, int V, int S>
__global__ void __launch_bounds__(kSpmmThreads)
csr_spmm_subwarp(int64_t rows, int64_t n, const int64_t* __restrict__ crow, const int64_t* __restrict__ col,
                 const T* __restrict__ v, const T* __restrict__ b, T* __restrict__ c, const int32_t* __restrict__ order) {
  using A = compute_t<T>;
  constexpr int kPerBlock = kSpmmThreads / S;
  const int lane = threadIdx.x & 31, sl = lane & (S - 1);
  const unsigned mask = S == 32 ? 0xffffffffu : (((1u << S) - 1u) << (lane & ~(S - 1)));
  constexpr int64_t span = (int64_t)S * V;
  const int64_t tiles = (n + span - 1) / span;
  const int64_t item = (int64_t)blockIdx.x * kPerBlock + threadIdx.x / S;
  if (item >= rows * tiles) return;  // the whole subwarp leaves together (its mask covers only it)
  const int64_t slot = item / tiles;
  const int64_t r = order ? (int64_t)order[slot] : slot;
  const int64_t j0 = (item % tiles) * span + (int64_t)sl * V;
  A acc[V];
#pragma unroll
  for (int q = 0; q < V; ++q) acc[q] = 0;
  const int64_t e0 = crow[r], e1 = crow[r + 1];
  for (int64_t base = e0; base < e1; base += S) {
    const int64_t e = base + sl;
    A my_v = 0;
    int64_t my_c = 0;
    if (e < e1) {
      my_v = load(v[e]);
      my_c = col[e];
    }
    const int cnt = e1 - base < S ? (int)(e1 - base) : S;
    for (int t = 0; t < cnt; ++t) {
      const A vv = __shfl_sync(mask, my_v, t, S);
      const int64_t cc = __shfl_sync(mask, my_c, t, S);
      const T* brow = b + cc * n + j0;
      if constexpr (V > 1) {
        if (j0 < n) {  // n % V == 0: the whole vector is inside the row
          const vec_t<T, V> bv = *reinterpret_cast<const vec_t<T, V>*>(brow);
#pragma unroll
          for (int q = 0; q < V; ++q) acc[q] += vv * (A)load(bv.v[q]);
        }
      } else {
        if (j0 < n) acc[0] += vv * (A)load(brow[0]);
      }
    }
  }
  if (j0 >= n) return;
  if constexpr (V > 1) {
    vec_t<T, V> out;
#pragma unroll
    for (int q = 0; q < V; ++q) out.v[q] = store<T>(acc[q]);
    *reinterpret_cast<vec_t<T, V>*>(c + r * n + j0) = out;
  } else {
    c[r * n + j0] = store<T>(acc[0]);
  }
}

__global__ void row_lengths(int64_t rows, const int64_t* __restrict__ crow, uint32_t* __restrict__ len,
                            int32_t* __restrict__ idx) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += step) {
    const int64_t l = crow[r + 1] - crow[r];
    len[r] = l > 0xffffffffll ? 0xffffffffu : (uint32_t)l;
    idx[r] = (int32_t)r;
  }
}

template <class T, int V>
void launch_subwarp(int64_t rows, int64_t n, const int64_t* crow, const int64_t* col, const T* v, const T* b, T* c,
                    const int32_t* order, cudaStream_t st) {
  const int64_t vecs = (n + V - 1) / V;
  auto go = [&](auto s_tag) {
    constexpr int S = decltype(s_tag)::value;
    const int64_t items = rows * ((n + (int64_t)S * V - 1) / ((int64_t)S * V));
    const int64_t blocks = (items + kSpmmThreads / S - 1) / (kSpmmThreads / S);
    csr_spmm_subwarp<T, V, S><<<(unsigned)(blocks < 2147483647 ? blocks : 2147483647), kSpmmThreads, 0, st>>>(
        rows, n, crow, col, v, b, c, order);
  };
  if (vecs <= 8) go(std::integral_constant<int, 8>{});
  else if (vecs <= 16) go(std::integral_constant<int, 16>{});
  else go(std::integral_constant<int, 32>{});
}

/* A B for CSR A (arguments validated, rows, n, nnz > 0): the row swizzle, then the subwarp kernel. */
int csr_spmm_sputnik(const char* fn, int dtype, int64_t rows, int64_t cols, int64_t n, const int64_t* crow,
                     const int64_t* col, const void* values, const void* b, void* c, cudaStream_t st, int sms) {
  int32_t* order = nullptr;
  void* scratch = nullptr;
  if (rows >= kSwizzleMinRows && rows <= 2147483647) {
    // (length, row) pairs sorted by decreasing length: keys up to cols need end_bit bits.
    int end_bit = 1;
    while (end_bit < 32 && (((uint64_t)1 << end_bit) <= (uint64_t)cols)) ++end_bit;
    size_t temp = 0;
    CT_CUDA_TRY(fn, cub::DeviceRadixSort::SortPairsDescending(nullptr, temp, (const uint32_t*)nullptr,
                                                              (uint32_t*)nullptr, (const int32_t*)nullptr,
                                                              (int32_t*)nullptr, (int)rows, 0, end_bit, st));
    const size_t pairs = (size_t)rows * 4, align = 256;
    const size_t bytes = 4 * ((pairs + align - 1) / align * align) + temp;
    CT_CUDA_TRY(fn, cudaMallocAsync(&scratch, bytes, st));
    char* p = (char*)scratch;
    const size_t stride = (pairs + align - 1) / align * align;
    uint32_t* len_in = (uint32_t*)p;
    uint32_t* len_out = (uint32_t*)(p + stride);
    int32_t* idx_in = (int32_t*)(p + 2 * stride);
    order = (int32_t*)(p + 3 * stride);
    row_lengths<<<grid_for(rows, sms), kThreads, 0, st>>>(rows, crow, len_in, idx_in);
    cudaError_t err = cub::DeviceRadixSort::SortPairsDescending(p + 4 * stride, temp, len_in, len_out, idx_in, order,
                                                                (int)rows, 0, end_bit, st);
    if (err != cudaSuccess) {
      cudaFreeAsync(scratch, st);
      return cuda_fail(fn, err);
    }
  }
  const size_t esize = dtype == CT_F64 ? 8 : dtype == CT_F32 ? 4 : 2;
  const int vmax = (int)(16 / esize);
  const bool vec = n % vmax == 0 && aligned16(b) && aligned16(c);
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int VM = 16 / (int)sizeof(T);
    if (vec) launch_subwarp<T, VM>(rows, n, crow, col, (const T*)values, (const T*)b, (T*)c, order, st);
    else launch_subwarp<T, 1>(rows, n, crow, col, (const T*)values, (const T*)b, (T*)c, order, st);
  });
  int status = check_launch(fn);
  if (scratch) {
    cudaError_t err = cudaFreeAsync(scratch, st);
    if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
  }
  return status;
}

/* C = A B (trans = 0, C [rows, n]) or A^T B (trans = 1, C [cols, n]) for the entries that `cols`
 * enumerates (stored > 0 means A has entries): the warp-per-row-tile kernel, or the atomic scatter
 * (float32 accumulator for bfloat16, converted at the end). */
template <class Cols>
int spmm_launch(const char* fn, int dtype, int trans, int64_t rows, int64_t cols, int64_t n, int64_t stored, Cols ec,
                const void* values, const void* b, void* c, cudaStream_t st, int sms) {
  const int64_t out_rows = trans ? cols : rows;
  if (out_rows == 0 || n == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "c", c));
  const size_t esize = dtype == CT_F64 ? 8 : dtype == CT_F32 ? 4 : 2;
  if (stored == 0) {
    CT_CUDA_TRY(fn, cudaMemsetAsync(c, 0, (size_t)(out_rows * n) * esize, st));
    return CT_OK;
  }
  CT_TRY_STATUS(check_ptr(fn, "values", values));
  CT_TRY_STATUS(check_ptr(fn, "b", b));
  if constexpr (std::is_same_v<Cols, CsrCols>)
    if (!trans) return csr_spmm_sputnik(fn, dtype, rows, cols, n, ec.crow, ec.col, values, b, c, st, sms);
  const int64_t tiles = (n + 31) / 32;
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!trans) {
      spmm_rows<T, Cols><<<blocks_for_warps(rows * tiles), kWarps * 32, 0, st>>>(rows, n, ec, (const T*)values,
                                                                                 (const T*)b, (T*)c);
      status = check_launch(fn);
    } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      float* acc = nullptr;
      cudaError_t err = cudaMallocAsync((void**)&acc, (size_t)(cols * n) * sizeof(float), st);
      if (err != cudaSuccess) { status = cuda_fail(fn, err); return; }
      err = cudaMemsetAsync(acc, 0, (size_t)(cols * n) * sizeof(float), st);
      if (err == cudaSuccess) {
        spmm_t_rows<T, float, Cols><<<blocks_for_warps(rows * tiles), kWarps * 32, 0, st>>>(rows, n, ec, (const T*)values,
                                                                                           (const T*)b, acc);
        from_float<T><<<grid_for(cols * n, sms), kThreads, 0, st>>>(cols * n, acc, (T*)c);
        status = check_launch(fn);
      } else {
        status = cuda_fail(fn, err);
      }
      err = cudaFreeAsync(acc, st);
      if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
    } else {
      cudaError_t err = cudaMemsetAsync(c, 0, (size_t)(cols * n) * sizeof(T), st);
      if (err != cudaSuccess) { status = cuda_fail(fn, err); return; }
      spmm_t_rows<T, T, Cols><<<blocks_for_warps(rows * tiles), kWarps * 32, 0, st>>>(rows, n, ec, (const T*)values,
                                                                                       (const T*)b, (T*)c);
      status = check_launch(fn);
    }
  });
  return status;
}

/* The SDDMM operands: out always, x and y when d > 0. */
int check_sddmm_ptrs(const char* fn, int64_t d, const void* x, const void* y, const void* out) {
  CT_TRY_STATUS(check_ptr(fn, "out", out));
  if (d > 0) {
    CT_TRY_STATUS(check_ptr(fn, "x", x));
    CT_TRY_STATUS(check_ptr(fn, "y", y));
  }
  return CT_OK;
}

/* BSR geometry: a positive block size dividing both dimensions (the CPU's message). */
int check_bsr(const char* fn, int64_t rows, int64_t cols, int64_t block) {
  if (block < 1 || rows % block != 0 || cols % block != 0)
    return fail(CT_ERR_INVALID_ARG, "%s: block size %lld must be positive and divide rows %lld and cols %lld", fn,
                (long long)block, (long long)rows, (long long)cols);
  return CT_OK;
}

}  // namespace
}  // namespace ct

using namespace ct;

namespace ct {
int check_csr_indices(const char* fn, int64_t rows, int64_t cols, int64_t nnz, const int64_t* crow, const int64_t* col,
                      cudaStream_t st) {
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  return check_csr(fn, rows, cols, nnz, crow, col, st, sms);
}
}  // namespace ct

extern "C" {

int ct_cuda_csr_spmm(int dtype, int trans, int64_t rows, int64_t cols, int64_t n, int64_t nnz, const int64_t* crow,
                     const int64_t* col, const void* values, const void* b, void* c, int64_t stream) {
  static const char* fn = "ct_cuda_csr_spmm";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"cols", cols}, {"n", n}, {"nnz", nnz}}));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_csr(fn, rows, cols, nnz, crow, col, st, sms));
  return spmm_launch(fn, dtype, trans, rows, cols, n, nnz, CsrCols{crow, col}, values, b, c, st, sms);
}

int ct_cuda_bsr_spmm(int dtype, int trans, int64_t rows, int64_t cols, int64_t block, int64_t n, int64_t nnzb,
                     const int64_t* crow, const int64_t* col, const void* values, const void* b, void* c,
                     int64_t stream) {
  static const char* fn = "ct_cuda_bsr_spmm";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"cols", cols}, {"n", n}, {"nnzb", nnzb}}));
  CT_TRY_STATUS(check_bsr(fn, rows, cols, block));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_csr(fn, rows / block, cols / block, nnzb, crow, col, st, sms));
  return spmm_launch(fn, dtype, trans, rows, cols, n, nnzb, BsrCols{crow, col, block}, values, b, c, st, sms);
}

int ct_cuda_csr_sddmm(int dtype, int64_t rows, int64_t cols, int64_t d, int64_t nnz, const int64_t* crow,
                      const int64_t* col, const void* x, const void* y, void* out, int64_t stream) {
  static const char* fn = "ct_cuda_csr_sddmm";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"cols", cols}, {"d", d}, {"nnz", nnz}}));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_csr(fn, rows, cols, nnz, crow, col, st, sms));
  if (nnz == 0) return CT_OK;
  CT_TRY_STATUS(check_sddmm_ptrs(fn, d, x, y, out));
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    sddmm_entries<T><<<blocks_for_warps(nnz), kWarps * 32, 0, st>>>(rows, nnz, d, crow, col, (const T*)x, (const T*)y,
                                                                      (T*)out);
    status = check_launch(fn);
  });
  return status;
}

int ct_cuda_bsr_sddmm(int dtype, int64_t rows, int64_t cols, int64_t block, int64_t d, int64_t nnzb, const int64_t* crow,
                      const int64_t* col, const void* x, const void* y, void* out, int64_t stream) {
  static const char* fn = "ct_cuda_bsr_sddmm";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"cols", cols}, {"d", d}, {"nnzb", nnzb}}));
  CT_TRY_STATUS(check_bsr(fn, rows, cols, block));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_csr(fn, rows / block, cols / block, nnzb, crow, col, st, sms));
  if (nnzb == 0) return CT_OK;
  CT_TRY_STATUS(check_sddmm_ptrs(fn, d, x, y, out));
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    bsr_sddmm_entries<T><<<blocks_for_warps(nnzb * block * block), kWarps * 32, 0, st>>>(
        rows / block, nnzb, block, d, crow, col, (const T*)x, (const T*)y, (T*)out);
    status = check_launch(fn);
  });
  return status;
}

int ct_cuda_csr_softmax(int dtype, int64_t rows, int64_t nnz, const int64_t* crow, const void* x, void* y,
                        int64_t stream) {
  static const char* fn = "ct_cuda_csr_softmax";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"nnz", nnz}}));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_csr(fn, rows, -1, nnz, crow, nullptr, st, sms));
  if (nnz == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "y", y));
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    csr_softmax_rows<T><<<blocks_for_warps(rows), kWarps * 32, 0, st>>>(rows, crow, (const T*)x, (T*)y);
    status = check_launch(fn);
  });
  return status;
}

int ct_cuda_csr_softmax_backward(int dtype, int64_t rows, int64_t nnz, const int64_t* crow, const void* y,
                                 const void* dy, void* dx, int64_t stream) {
  static const char* fn = "ct_cuda_csr_softmax_backward";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"nnz", nnz}}));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_csr(fn, rows, -1, nnz, crow, nullptr, st, sms));
  if (nnz == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "y", y));
  CT_TRY_STATUS(check_ptr(fn, "dy", dy));
  CT_TRY_STATUS(check_ptr(fn, "dx", dx));
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    csr_softmax_backward_rows<T><<<blocks_for_warps(rows), kWarps * 32, 0, st>>>(rows, crow, (const T*)y, (const T*)dy,
                                                                                 (T*)dx);
    status = check_launch(fn);
  });
  return status;
}

int ct_cuda_topk(int dtype, int64_t outer, int64_t len, int64_t inner, int64_t k, int largest, const void* x,
                 void* values, int64_t* indices, int64_t stream) {
  static const char* fn = "ct_cuda_topk";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"outer", outer}, {"len", len}, {"inner", inner}, {"k", k}}));
  if (k > len) return fail(CT_ERR_INVALID_ARG, "%s: k = %lld exceeds the axis length %lld", fn, (long long)k, (long long)len);
  const int64_t lines = outer * inner;
  if (lines == 0 || k == 0) return CT_OK;
  if (len > kTopkMax)
    return fail(CT_ERR_UNSUPPORTED, "%s: lines of %lld elements; the CUDA top-k sorts lines of up to %d in shared memory",
                fn, (long long)len, kTopkMax);
  if (lines > 2147483647) return fail(CT_ERR_INVALID_ARG, "%s: %lld lines exceed the grid", fn, (long long)lines);
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "values", values));
  CT_TRY_STATUS(check_ptr(fn, "indices", indices));
  int p2 = 1;
  while (p2 < len) p2 <<= 1;
  const cudaStream_t st = as_stream(stream);
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    topk_lines<T><<<(unsigned)lines, kThreads, (size_t)p2 * sizeof(KeyPos), st>>>(len, inner, k, largest, p2,
                                                                                   (const T*)x, (T*)values, indices);
    status = check_launch(fn);
  });
  return status;
}

int ct_cuda_topk_backward(int dtype, int64_t outer, int64_t len, int64_t inner, int64_t k, const void* dvalues,
                          const int64_t* indices, void* dx, int64_t stream) {
  static const char* fn = "ct_cuda_topk_backward";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"outer", outer}, {"len", len}, {"inner", inner}, {"k", k}}));
  const int64_t lines = outer * inner, picked = outer * k * inner;
  if (lines == 0 || len == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "dx", dx));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  if (picked > 0) {
    CT_TRY_STATUS(check_ptr(fn, "dvalues", dvalues));
    CT_TRY_STATUS(check_ptr(fn, "indices", indices));
    unsigned long long bad;
    CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* b) {
      range_check<<<grid_for(picked, sms), kThreads, 0, st>>>(picked, len, indices, b);
    }, &bad));
    if (bad != ~0ull) {
      int64_t v = 0;
      CT_TRY_STATUS(read_one(fn, indices + bad, &v));
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: indices[%lld] = %lld is out of range [0, %lld)", fn, (long long)bad,
                  (long long)v, (long long)len);
    }
  }
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    topk_backward_lines<T><<<grid_for(lines, sms), kThreads, 0, st>>>(lines, len, inner, k, (const T*)dvalues, indices,
                                                                        (T*)dx);
    status = check_launch(fn);
  });
  return status;
}

int ct_cuda_nm_compress(int dtype, int64_t rows, int64_t k, int n, int m, const void* x, void* values, uint8_t* meta,
                        int64_t stream) {
  static const char* fn = "ct_cuda_nm_compress";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"k", k}}));
  CT_TRY_STATUS(check_nm(fn, rows, k, n, m));
  if (rows == 0 || k == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "values", values));
  CT_TRY_STATUS(check_ptr(fn, "meta", meta));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  const int64_t groups = rows * (k / m);
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    nm_compress_groups<T><<<grid_for(groups, sms), kThreads, 0, st>>>(groups, n, m, (const T*)x, (T*)values, meta);
    status = check_launch(fn);
  });
  return status;
}

int ct_cuda_nm_decompress(int dtype, int64_t rows, int64_t k, int n, int m, const void* values, const uint8_t* meta,
                          void* x, int64_t stream) {
  static const char* fn = "ct_cuda_nm_decompress";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"k", k}}));
  CT_TRY_STATUS(check_nm(fn, rows, k, n, m));
  if (rows == 0 || k == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_TRY_STATUS(check_ptr(fn, "values", values));
  const cudaStream_t st = as_stream(stream);
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_meta(fn, rows, k, n, m, meta, st, sms));
  const int64_t groups = rows * (k / m);
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    nm_decompress_groups<T><<<grid_for(groups, sms), kThreads, 0, st>>>(groups, n, m, (const T*)values, meta, (T*)x);
    status = check_launch(fn);
  });
  return status;
}

int ct_cuda_nm_matmul(int dtype, int64_t rows, int64_t k, int64_t ncols, int n, int m, const void* values,
                      const uint8_t* meta, const void* b, void* c, int64_t stream) {
  static const char* fn = "ct_cuda_nm_matmul";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"k", k}, {"ncols", ncols}}));
  CT_TRY_STATUS(check_nm(fn, rows, k, n, m));
  if (rows == 0 || ncols == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "c", c));
  const cudaStream_t st = as_stream(stream);
  const size_t esize = dtype == CT_F64 ? 8 : dtype == CT_F32 ? 4 : 2;
  if (k == 0) {
    CT_CUDA_TRY(fn, cudaMemsetAsync(c, 0, (size_t)(rows * ncols) * esize, st));
    return CT_OK;
  }
  CT_TRY_STATUS(check_ptr(fn, "values", values));
  CT_TRY_STATUS(check_ptr(fn, "b", b));
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_meta(fn, rows, k, n, m, meta, st, sms));
  if (n == 2 && m == 4 && sp24_applies(dtype, rows, ncols, values))  // the sparse tensor cores (sparse24.cu)
    return sp24_matmul_positions(fn, dtype, rows, k, ncols, values, meta, b, c, st);
  const int64_t tiles = (ncols + 31) / 32;
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    spmm_rows<T, NmCols><<<blocks_for_warps(rows * tiles), kWarps * 32, 0, st>>>(
        rows, ncols, NmCols{k / m * n, n, m, meta}, (const T*)values, (const T*)b, (T*)c);
    status = check_launch(fn);
  });
  return status;
}

int ct_cuda_nm_matmul_backward(int dtype, int64_t rows, int64_t k, int64_t ncols, int n, int m, const void* values,
                               const uint8_t* meta, const void* b, const void* dc, void* dvalues, void* db,
                               int64_t stream) {
  static const char* fn = "ct_cuda_nm_matmul_backward";
  CT_TRY_STATUS(check_dtype(fn, dtype));
  CT_TRY_STATUS(check_sizes(fn, {{"rows", rows}, {"k", k}, {"ncols", ncols}}));
  CT_TRY_STATUS(check_nm(fn, rows, k, n, m));
  const cudaStream_t st = as_stream(stream);
  const size_t esize = dtype == CT_F64 ? 8 : dtype == CT_F32 ? 4 : 2;
  const int64_t per_row = k / m * n, groups = k / m;
  if (rows == 0 || k == 0) {
    if (db && k > 0 && ncols > 0) CT_CUDA_TRY(fn, cudaMemsetAsync(db, 0, (size_t)(k * ncols) * esize, st));
    return CT_OK;
  }
  int sms = 0;
  CT_TRY_STATUS(sm_count(fn, &sms));
  CT_TRY_STATUS(check_meta(fn, rows, k, n, m, meta, st, sms));
  if (ncols > 0) {
    CT_TRY_STATUS(check_ptr(fn, "b", b));
    CT_TRY_STATUS(check_ptr(fn, "dc", dc));
  }
  if (db) CT_TRY_STATUS(check_ptr(fn, "values", values));
  int status = CT_OK;
  dispatch_sparse(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (dvalues) {
      if (ncols == 0) {
        cudaError_t err = cudaMemsetAsync(dvalues, 0, (size_t)(rows * per_row) * sizeof(T), st);
        if (err != cudaSuccess) { status = cuda_fail(fn, err); return; }
      } else {
        nm_dvalues<T><<<blocks_for_warps(rows * per_row), kWarps * 32, 0, st>>>(rows * per_row, per_row, ncols, n, m, meta,
                                                                                (const T*)b, (const T*)dc, (T*)dvalues);
        if ((status = check_launch(fn)) != CT_OK) return;
      }
    }
    if (db && ncols > 0) {
      nm_db<T><<<grid_for(groups * ncols, sms), kThreads, 0, st>>>(rows, groups, ncols, n, m, (const T*)values, meta,
                                                                     (const T*)dc, (T*)db);
      status = check_launch(fn);
    }
  });
  return status;
}

}  // extern "C"
