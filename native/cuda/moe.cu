/*
 * Mixture-of-experts family on CUDA (contract in cortado/moe.h; the CPU twins in native/cpu/moe.cpp).
 *
 * Checks first: expert ids and slots are checked by a kernel writing the FIRST offending position
 * into a device word (atomicMin; a slot naming a row twice is found through a per-row claim
 * counter); the launcher copies it back (one stream synchronization) and answers with the CPU's
 * status. The grouped GEMMs copy `counts` (experts int64) to the host, check them there, and
 * upload the offsets: one synchronization per call, so that the grid is sized by the largest group.
 *
 * Routing: one block of 1024 threads per expert walks the choices in priority order (choice-major,
 * then position), 1024 at a time: a warp ballot and a scan of the 32 warp totals give each choice
 * its rank within the expert (the CPU's ranks exactly); a second kernel turns ranks into buffer rows
 * from the prefix of the kept counts (O(experts) per choice: experts is small).
 * Dispatch: the buffer is zeroed (cudaMemsetAsync), then one block per choice copies (scales) the
 * token's row. Combine: one block per token, threads over columns, the kept choices summed in
 * compute_t in choice order (deterministic). Gate gradient: one warp per choice, a warp reduction.
 *
 * Grouped GEMM: a shared-memory tiled GEMM, 64 x 64 output tiles, 16-deep K slices, 256 threads
 * each holding a 4 x 4 register tile (compute_t accumulation); grid (column tiles, row tiles of
 * the largest group, experts): blocks past their group's end exit. The weight gradient uses the
 * same tile loop with A^T read through its strides and the reduction over the group's rows.
 * Cost: 2 sum(counts) k n FLOPs; each A tile is read n / 64 times, each B_e tile once per row tile.
 * (Not tuned: the tensor-core path is the GPU issue's work.)
 */
#include <vector>

#include "common.cuh"
#include "cortado/moe.h"
#include "device_check.cuh"

namespace ct {
namespace {

constexpr int kTile = 64;
constexpr int kSlice = 16;

int check_dtype(const char* fn, int dtype, bool gemm) {
  if (dtype == CT_F32 || dtype == CT_F64 || (!gemm && dtype == CT_BF16)) return CT_OK;
  return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (%s only)", fn, dtype_name(dtype), dtype,
              gemm ? "F32, F64" : "F32, F64, BF16");
}

template <class F> bool dispatch_moe(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(type_tag<float>{}); return true;
    case CT_F64: f(type_tag<double>{}); return true;
    case CT_BF16: f(type_tag<__nv_bfloat16>{}); return true;
    default: return false;
  }
}

int check_sizes(const char* fn, std::initializer_list<std::pair<const char*, int64_t>> sizes) {
  for (auto& s : sizes)
    if (s.second < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s = %lld is negative", fn, s.first, (long long)s.second);
  return CT_OK;
}

unsigned clamp_grid(int64_t n) { return (unsigned)(n < 1 ? 1 : (n > 2147483647 ? 2147483647 : n)); }

// ------------------------------------------------------------------ index checks
__global__ void ids_check(int64_t count, int64_t bound, const int64_t* __restrict__ ids, unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += step)
    if (ids[i] < 0 || ids[i] >= bound) atomicMin(bad, (unsigned long long)i);
}

__global__ void slots_check(int64_t count, int64_t rows, const int64_t* __restrict__ slots, int* claimed,
                            unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += step) {
    const int64_t s = slots[i];
    if (s < -1 || s >= rows || (s >= 0 && atomicAdd(claimed + s, 1) != 0)) atomicMin(bad, (unsigned long long)i);
  }
}

int check_slots(const char* fn, int64_t choices, int64_t rows, const int64_t* slots, cudaStream_t st) {
  if (choices == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "slots", slots));
  int* claimed = nullptr;
  CT_CUDA_TRY(fn, cudaMallocAsync((void**)&claimed, sizeof(int) * (size_t)(rows > 0 ? rows : 1), st));
  int status = CT_OK;
  cudaError_t err = cudaMemsetAsync(claimed, 0, sizeof(int) * (size_t)(rows > 0 ? rows : 1), st);
  if (err != cudaSuccess) status = cuda_fail(fn, err);
  unsigned long long first = ~0ull;
  if (status == CT_OK)
    status = first_bad(fn, st, [&](unsigned long long* bad) {
      slots_check<<<clamp_grid((choices + 255) / 256), 256, 0, st>>>(choices, rows, slots, claimed, bad);
    }, &first);
  err = cudaFreeAsync(claimed, st);
  if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
  if (status != CT_OK || first == ~0ull) return status;
  int64_t s = 0;
  CT_CUDA_TRY(fn, cudaMemcpy(&s, slots + first, sizeof s, cudaMemcpyDeviceToHost));
  if (s < -1 || s >= rows)
    return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: slots[%llu] = %lld is out of range [-1, %lld)", fn, first, (long long)s,
                (long long)rows);
  return fail(CT_ERR_INVALID_ARG, "%s: slots[%llu] names buffer row %lld, which another slot names too", fn, first,
              (long long)s);
}

/* counts to the host, checked (>= 0, sum <= rows); offsets (experts + 1) uploaded to *dev_off. */
int load_counts(const char* fn, int64_t experts, int64_t rows, const int64_t* counts, cudaStream_t st,
                std::vector<int64_t>& off, int64_t* max_count) {
  off.assign((size_t)experts + 1, 0);
  *max_count = 0;
  if (experts == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "counts", counts));
  std::vector<int64_t> h((size_t)experts);
  CT_CUDA_TRY(fn, cudaMemcpyAsync(h.data(), counts, sizeof(int64_t) * (size_t)experts, cudaMemcpyDeviceToHost, st));
  CT_CUDA_TRY(fn, cudaStreamSynchronize(st));
  for (int64_t e = 0; e < experts; ++e) {
    if (h[(size_t)e] < 0 || h[(size_t)e] > rows - off[(size_t)e])
      return fail(CT_ERR_INDEX_OUT_OF_RANGE,
                  "%s: counts[%lld] = %lld is negative or runs past the %lld buffer rows (offset %lld)", fn,
                  (long long)e, (long long)h[(size_t)e], (long long)rows, (long long)off[(size_t)e]);
    off[(size_t)e + 1] = off[(size_t)e] + h[(size_t)e];
    if (h[(size_t)e] > *max_count) *max_count = h[(size_t)e];
  }
  return CT_OK;
}

// ------------------------------------------------------------------ routing
__global__ void __launch_bounds__(1024) route_rank(int64_t tokens, int64_t k, int64_t capacity,
                                                   const int64_t* __restrict__ ids, int64_t* __restrict__ slots,
                                                   int64_t* __restrict__ counts, int64_t* __restrict__ load) {
  __shared__ int warp_total[32];
  __shared__ int warp_base[32];
  const int64_t e = blockIdx.x, choices = tokens * k;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t running = 0;
  for (int64_t base = 0; base < choices; base += blockDim.x) {
    const int64_t p = base + threadIdx.x;  // priority index: choice j = p / tokens of token t = p % tokens
    int64_t at = -1;
    if (p < choices) at = (p % tokens) * k + p / tokens;
    const bool mine = at >= 0 && ids[at] == e;
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_total[warp] = __popc(ballot);
    __syncthreads();
    if (threadIdx.x == 0) {
      int acc = 0;
      for (int w = 0; w < (int)(blockDim.x >> 5); ++w) {
        warp_base[w] = acc;
        acc += warp_total[w];
      }
      warp_total[0] = acc;  // the block's total, read after the barrier
    }
    __syncthreads();
    if (mine) slots[at] = running + warp_base[warp] + __popc(ballot & ((1u << lane) - 1u));
    running += warp_total[0];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    load[e] = running;
    counts[e] = running < capacity ? running : capacity;
  }
}

__global__ void route_slots(int64_t choices, int64_t capacity, const int64_t* __restrict__ ids,
                            const int64_t* __restrict__ counts, int64_t* __restrict__ slots) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < choices; i += step) {
    const int64_t e = ids[i];
    int64_t off = 0;
    for (int64_t q = 0; q < e; ++q) off += counts[q];
    slots[i] = slots[i] < capacity ? off + slots[i] : -1;
  }
}

// ------------------------------------------------------------------ permutations
template <class T>
__global__ void dispatch_kernel(int64_t choices, int64_t k, int64_t d, const int64_t* __restrict__ slots,
                                const T* __restrict__ gates, const T* __restrict__ x, T* __restrict__ buf) {
  using A = compute_t<T>;
  for (int64_t i = blockIdx.x; i < choices; i += gridDim.x) {
    const int64_t s = slots[i];
    if (s < 0) continue;
    const T* src = x + (i / k) * d;
    T* dst = buf + s * d;
    const A w = gates == nullptr ? (A)1 : load(gates[i]);
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) dst[c] = store<T>(w * load(src[c]));
  }
}

template <class T>
__global__ void combine_kernel(int64_t tokens, int64_t k, int64_t d, const int64_t* __restrict__ slots,
                               const T* __restrict__ gates, const T* __restrict__ y, T* __restrict__ out) {
  using A = compute_t<T>;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x)
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
      A acc = 0;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = slots[t * k + j];
        if (s < 0) continue;
        const A w = gates == nullptr ? (A)1 : load(gates[t * k + j]);
        acc += w * load(y[s * d + c]);
      }
      out[t * d + c] = store<T>(acc);
    }
}

template <class T>
__global__ void gate_grad_kernel(int64_t choices, int64_t k, int64_t d, const int64_t* __restrict__ slots,
                                 const T* __restrict__ dout, const T* __restrict__ y, T* __restrict__ dg) {
  using A = compute_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t i = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); i < choices; i += warps) {
    const int64_t s = slots[i];
    A acc = 0;
    if (s >= 0)
      for (int64_t c = lane; c < d; c += 32) acc += load(dout[(i / k) * d + c]) * load(y[s * d + c]);
    acc = warp_allreduce(acc, [](A a, A b) { return a + b; });
    if (lane == 0) dg[i] = store<T>(acc);
  }
}

// ------------------------------------------------------------------ grouped GEMM
/* C_e tile = sum over r < depth of Aop(row, r) Bop(r, col); 64 x 64 outputs, 4 x 4 per thread.
 * mode 0: C[off + row, col] = A[off + row, :] op(B_e);  depth k, rows = counts[e], cols n.
 * mode 1: dB_e[row, col] = sum_r A[off + r, row] dC[off + r, col];  depth counts[e], rows k, cols n. */
template <class T, int kMode>
__global__ void __launch_bounds__(256) grouped_kernel(int64_t k, int64_t n, int trans_b, const int64_t* __restrict__ off,
                                                      const T* __restrict__ a, const T* __restrict__ b,
                                                      T* __restrict__ c) {
  using A = compute_t<T>;
  __shared__ A as[kSlice][kTile + 1];
  __shared__ A bs[kSlice][kTile + 1];
  const int64_t e = blockIdx.z, o = off[e], group = off[e + 1] - o;
  const int64_t rows = kMode == 0 ? group : k, depth = kMode == 0 ? k : group;
  const int64_t row0 = (int64_t)blockIdx.y * kTile, col0 = (int64_t)blockIdx.x * kTile;
  if (row0 >= rows) return;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  A acc[4][4] = {};
  for (int64_t r0 = 0; r0 < depth; r0 += kSlice) {
    for (int q = threadIdx.x; q < kSlice * kTile; q += blockDim.x) {
      const int rr = q / kTile, ii = q % kTile;  // slice position, tile position
      const int64_t r = r0 + rr, row = row0 + ii, col = col0 + ii;
      A av = 0, bv = 0;
      if (r < depth && row < rows) av = kMode == 0 ? load(a[(o + row) * k + r]) : load(a[(o + r) * k + row]);
      if (r < depth && col < n) {
        if (kMode == 0)
          bv = trans_b ? load(b[e * n * k + col * k + r]) : load(b[e * k * n + r * n + col]);
        else
          bv = load(b[(o + r) * n + col]);
      }
      as[rr][ii] = av;
      bs[rr][ii] = bv;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kSlice; ++rr)
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += as[rr][tr * 4 + i] * bs[rr][tc * 4 + j];
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int64_t row = row0 + tr * 4 + i;
    if (row >= rows) continue;
    for (int j = 0; j < 4; ++j) {
      const int64_t col = col0 + tc * 4 + j;
      if (col >= n) continue;
      if (kMode == 0)
        c[(o + row) * n + col] = store<T>(acc[i][j]);
      else
        c[e * k * n + row * n + col] = store<T>(acc[i][j]);
    }
  }
}

template <int kMode>
int grouped(const char* fn, int dtype, int64_t experts, int64_t rows, int64_t k, int64_t n, int trans_b,
            const int64_t* counts, const void* a, const void* b, void* c, int64_t stream) {
  CT_TRY_STATUS(check_dtype(fn, dtype, true));
  CT_TRY_STATUS(check_sizes(fn, {{"experts", experts}, {"rows", rows}, {"k", k}, {"n", n}}));
  if (trans_b != 0 && trans_b != 1) return fail(CT_ERR_INVALID_ARG, "%s: trans_b = %d, must be 0 or 1", fn, trans_b);
  if (experts > 65535) return fail(CT_ERR_INVALID_ARG, "%s: experts = %lld exceeds 65535", fn, (long long)experts);
  const cudaStream_t st = as_stream(stream);
  std::vector<int64_t> off;
  int64_t max_count = 0;
  CT_TRY_STATUS(load_counts(fn, experts, rows, counts, st, off, &max_count));
  const int64_t used = off[(size_t)experts];
  const size_t esize = dtype == CT_F64 ? 8 : 4;
  if (kMode == 0) {
    if (rows * n == 0) return CT_OK;
    CT_TRY_STATUS(check_ptr(fn, "c", c));
    if (rows > used) CT_CUDA_TRY(fn, cudaMemsetAsync((char*)c + used * n * esize, 0, (size_t)((rows - used) * n) * esize, st));
    if (used == 0) return CT_OK;
  } else {
    if (experts * k * n == 0) return CT_OK;
    CT_TRY_STATUS(check_ptr(fn, "db", c));
  }
  if (used > 0) {
    CT_TRY_STATUS(check_ptr(fn, "a", a));
    CT_TRY_STATUS(check_ptr(fn, kMode == 0 ? "b" : "dc", b));
  }
  int64_t* doff = nullptr;
  CT_CUDA_TRY(fn, cudaMallocAsync((void**)&doff, sizeof(int64_t) * (size_t)(experts + 1), st));
  int status = CT_OK;
  cudaError_t err = cudaMemcpyAsync(doff, off.data(), sizeof(int64_t) * (size_t)(experts + 1), cudaMemcpyHostToDevice, st);
  if (err != cudaSuccess) status = cuda_fail(fn, err);
  if (status == CT_OK) {
    const int64_t out_rows = kMode == 0 ? max_count : k;
    const dim3 grid(clamp_grid((n + kTile - 1) / kTile), clamp_grid((out_rows + kTile - 1) / kTile), (unsigned)experts);
    dispatch_moe(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (!std::is_same_v<T, __nv_bfloat16>)
        grouped_kernel<T, kMode><<<grid, 256, 0, st>>>(k, n, trans_b, doff, (const T*)a, (const T*)b, (T*)c);
    });
    status = check_launch(fn);
  }
  err = cudaFreeAsync(doff, st);
  if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
  return status;
}

int check_common(const char* fn, int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows) {
  CT_TRY_STATUS(check_dtype(fn, dtype, false));
  return check_sizes(fn, {{"tokens", tokens}, {"k", k}, {"d", d}, {"rows", rows}});
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_moe_route(int64_t tokens, int64_t k, int64_t experts, int64_t capacity,
                                 const int64_t* expert_ids, int64_t* slots, int64_t* counts, int64_t* load,
                                 int64_t stream) {
  static const char* fn = "ct_cuda_moe_route";
  CT_TRY_STATUS(check_sizes(fn, {{"tokens", tokens}, {"k", k}, {"experts", experts}}));
  if (experts < 1) return fail(CT_ERR_INVALID_ARG, "%s: experts = %lld, need at least 1", fn, (long long)experts);
  if (k > experts)
    return fail(CT_ERR_INVALID_ARG, "%s: k = %lld exceeds the %lld experts", fn, (long long)k, (long long)experts);
  if (capacity < 1) return fail(CT_ERR_INVALID_ARG, "%s: capacity = %lld, need at least 1", fn, (long long)capacity);
  CT_TRY_STATUS(check_ptr(fn, "counts", counts));
  CT_TRY_STATUS(check_ptr(fn, "load", load));
  const cudaStream_t st = as_stream(stream);
  const int64_t choices = tokens * k;
  if (choices > 0) {
    CT_TRY_STATUS(check_ptr(fn, "expert_ids", expert_ids));
    CT_TRY_STATUS(check_ptr(fn, "slots", slots));
    unsigned long long first = ~0ull;
    CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* bad) {
      ids_check<<<clamp_grid((choices + 255) / 256), 256, 0, st>>>(choices, experts, expert_ids, bad);
    }, &first));
    if (first != ~0ull) {
      int64_t v = 0;
      CT_CUDA_TRY(fn, cudaMemcpy(&v, expert_ids + first, sizeof v, cudaMemcpyDeviceToHost));
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: expert_ids[%llu] = %lld is out of range [0, %lld)", fn, first,
                  (long long)v, (long long)experts);
    }
  }
  if (experts > 2147483647) return fail(CT_ERR_INVALID_ARG, "%s: experts = %lld is too many", fn, (long long)experts);
  route_rank<<<(unsigned)experts, 1024, 0, st>>>(tokens, k, capacity, expert_ids, slots, counts, load);
  CT_TRY_STATUS(check_launch(fn));
  if (choices > 0) {
    route_slots<<<clamp_grid((choices + 255) / 256), 256, 0, st>>>(choices, capacity, expert_ids, counts, slots);
    CT_TRY_STATUS(check_launch(fn));
  }
  return CT_OK;
}

extern "C" int ct_cuda_moe_dispatch(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows,
                                    const int64_t* slots, const void* gates, const void* x, void* buf,
                                    int64_t stream) {
  static const char* fn = "ct_cuda_moe_dispatch";
  CT_TRY_STATUS(check_common(fn, dtype, tokens, k, d, rows));
  const cudaStream_t st = as_stream(stream);
  CT_TRY_STATUS(check_slots(fn, tokens * k, rows, slots, st));
  if (rows * d == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "buf", buf));
  if (tokens * k > 0) CT_TRY_STATUS(check_ptr(fn, "x", x));
  CT_CUDA_TRY(fn, cudaMemsetAsync(buf, 0, (size_t)(rows * d) * (dtype == CT_F64 ? 8 : dtype == CT_F32 ? 4 : 2), st));
  if (tokens * k == 0) return CT_OK;
  dispatch_moe(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_kernel<T><<<clamp_grid(tokens * k), 128, 0, st>>>(tokens * k, k, d, slots, (const T*)gates, (const T*)x,
                                                               (T*)buf);
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_moe_combine(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows,
                                   const int64_t* slots, const void* gates, const void* y, void* out,
                                   int64_t stream) {
  static const char* fn = "ct_cuda_moe_combine";
  CT_TRY_STATUS(check_common(fn, dtype, tokens, k, d, rows));
  const cudaStream_t st = as_stream(stream);
  CT_TRY_STATUS(check_slots(fn, tokens * k, rows, slots, st));
  if (tokens * d == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "out", out));
  if (rows * d > 0) CT_TRY_STATUS(check_ptr(fn, "y", y));
  dispatch_moe(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    combine_kernel<T><<<clamp_grid(tokens), 128, 0, st>>>(tokens, k, d, slots, (const T*)gates, (const T*)y, (T*)out);
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_moe_gate_grad(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows,
                                     const int64_t* slots, const void* dout, const void* y, void* dgates,
                                     int64_t stream) {
  static const char* fn = "ct_cuda_moe_gate_grad";
  CT_TRY_STATUS(check_common(fn, dtype, tokens, k, d, rows));
  const cudaStream_t st = as_stream(stream);
  CT_TRY_STATUS(check_slots(fn, tokens * k, rows, slots, st));
  if (tokens * k == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "dgates", dgates));
  if (d > 0) {
    CT_TRY_STATUS(check_ptr(fn, "dout", dout));
    if (rows > 0) CT_TRY_STATUS(check_ptr(fn, "y", y));
  }
  dispatch_moe(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gate_grad_kernel<T><<<clamp_grid((tokens * k + 7) / 8), 256, 0, st>>>(tokens * k, k, d, slots, (const T*)dout,
                                                                          (const T*)y, (T*)dgates);
  });
  return check_launch(fn);
}

extern "C" int ct_cuda_grouped_gemm(int dtype, int64_t experts, int64_t rows, int64_t k, int64_t n, int trans_b,
                                    const int64_t* counts, const void* a, const void* b, void* c, int64_t stream) {
  return grouped<0>("ct_cuda_grouped_gemm", dtype, experts, rows, k, n, trans_b, counts, a, b, c, stream);
}

extern "C" int ct_cuda_grouped_gemm_wgrad(int dtype, int64_t experts, int64_t rows, int64_t k, int64_t n,
                                          const int64_t* counts, const void* a, const void* dc, void* db,
                                          int64_t stream) {
  return grouped<1>("ct_cuda_grouped_gemm_wgrad", dtype, experts, rows, k, n, 0, counts, a, dc, db, stream);
}
