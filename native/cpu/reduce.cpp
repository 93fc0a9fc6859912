/*
 * Reduction family: SUM MEAN MAX MIN ARGMAX ARGMIN VAR PROD over the inner block of every
 * outer index (see reduce.h for the layout).
 *
 * Algorithm: both dimension groups are first coalesced (size-1 dims dropped, adjacent dims
 * merged where strides allow; row-major order, hence argmax indices, is preserved). Then:
 *  - row path: inner block contiguous (reduce the last axis). SUM/MEAN of float32/16-bit use
 *    pairwise summation over 2048-element leaves; a leaf is summed in 16 (AVX2) or 32
 *    (AVX-512) independent float32 lanes, so the error is O(log n) ulp and the loop runs at
 *    memory speed. A single long row (full reduction) is split over threads, partial sums
 *    combined in a fixed order (deterministic for a given thread count).
 *  - column path: one inner dim and outer stride 1 (reduce a leading axis): whole rows of
 *    up to 256 outputs are accumulated at once (pairwise over the reduced index for sums),
 *    reading memory sequentially instead of with a large stride.
 *  - general path: an odometer over the inner dims with a strided innermost loop; row partial
 *    results are combined in float64.
 * VAR is two-pass in float64 (mean, then squared deviations). MAX/MIN propagate NaN;
 * ARGMAX/ARGMIN return the first occurrence, NaN counting as the extreme.
 *
 * Cost: one read of every input element, numel * sizeof(dtype) bytes, ~1 FLOP per element
 * (VAR: 2 reads, ~3 FLOPs); memory bound.
 */
#include <cstdio>
#include <limits>
#include <vector>

#include "cortado/reduce.h"
#include "internal.h"

namespace ct {
namespace {

const char* op_name(int op) {
  static const char* n[] = {
#define CT_REDUCE_OP(ident, name) #ident,
#include "cortado/ops/reduce.def"
#undef CT_REDUCE_OP
  };
  return op >= 0 && op < CT_REDUCE_COUNT ? n[op] : "unknown";
}

/* Accumulator type of SUM/PROD/MEAN: float32 for f32/f16/bf16, double for f64, int64 for ints. */
template <class T> using acc_t =
    std::conditional_t<std::is_same_v<T, double>, double, std::conditional_t<is_float_v<T>, float, int64_t>>;

// ------------------------------------------------------------------ contiguous sum kernels
constexpr int64_t kLeaf = 2048;

/* Leaf: L independent lanes (the compiler keeps them in vector registers), reference tail. */
#define CT_SUM_LEAF_BODY(L)                                                  \
  float lane[L] = {0};                                                       \
  int64_t i = 0;                                                             \
  for (; i + L <= n; i += L)                                                 \
    for (int j = 0; j < L; ++j) lane[j] += (float)load(x + i + j);           \
  float s = 0;                                                               \
  for (; i < n; ++i) s += load(x + i);                                       \
  for (int w = L / 2; w > 0; w /= 2)                                         \
    for (int j = 0; j < w; ++j) lane[j] += lane[j + w];                      \
  return lane[0] + s;

template <class T> float sum_leaf(const T* x, int64_t n) { CT_SUM_LEAF_BODY(16) }
template <class T> CT_AVX512 float sum_leaf_avx512(const T* x, int64_t n) { CT_SUM_LEAF_BODY(32) }

/* Pairwise sum of a contiguous float32/16-bit row. */
template <class T> float sum_pairwise(const T* x, int64_t n, bool avx512) {
  if (n <= kLeaf) return avx512 ? sum_leaf_avx512(x, n) : sum_leaf(x, n);
  int64_t half = ((n / 2) + kLeaf - 1) / kLeaf * kLeaf;
  return sum_pairwise(x, half, avx512) + sum_pairwise(x + half, n - half, avx512);
}

/* Strided pairwise sum (reference loop at the leaves). */
template <class T, class A> A sum_strided(const T* x, int64_t n, int64_t s) {
  if (n <= 64) {
    A acc = 0;
    for (int64_t i = 0; i < n; ++i) acc = (A)(acc + (A)load(x + i * s));
    return acc;
  }
  int64_t half = n / 2;
  return (A)(sum_strided<T, A>(x, half, s) + sum_strided<T, A>(x + half * s, n - half, s));
}

template <class C> CT_INLINE C vmax(C a, C b) {
  if constexpr (std::is_integral_v<C>) return a > b ? a : b;
  else return a != a ? a : (b != b ? b : (a > b ? a : b));
}
template <class C> CT_INLINE C vmin(C a, C b) {
  if constexpr (std::is_integral_v<C>) return a < b ? a : b;
  else return a != a ? a : (b != b ? b : (a < b ? a : b));
}

// ------------------------------------------------------------------ one inner block
struct Inner {
  int ndim;             // >= 1 after coalescing (a scalar block is shape {1})
  int64_t shape[CT_MAX_DIMS];
  int64_t stride[CT_MAX_DIMS];
  int64_t numel;
};

/* Calls fn(row_ptr, n, stride, flat_index_of_row_start) for each innermost row of the block. */
template <class T, class Fn> void for_each_inner_row(const T* base, const Inner& in, Fn&& fn) {
  const int last = in.ndim - 1;
  const int64_t n = in.shape[last], s = in.stride[last];
  int64_t coord[CT_MAX_DIMS] = {0};
  const T* row = base;
  for (int64_t r = 0, rows = in.numel / n; r < rows; ++r) {
    fn(row, n, s, r * n);
    for (int d = last - 1; d >= 0; --d) {
      row += in.stride[d];
      if (++coord[d] < in.shape[d]) break;
      row -= in.shape[d] * in.stride[d];
      coord[d] = 0;
    }
  }
}

/* Reduces one inner block; writes the result into *out (type per reduce.h). */
template <class T> void reduce_block(int op, const T* x, const Inner& in, void* out, double param, bool avx512) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  const bool contig = in.ndim == 1 && in.stride[0] == 1;
  switch (op) {
    case CT_REDUCE_SUM:
    case CT_REDUCE_MEAN: {
      A total;
      if constexpr (std::is_same_v<A, float>) {
        if (contig) total = sum_pairwise(x, in.numel, avx512);
        else {
          double t = 0;
          for_each_inner_row(x, in, [&](const T* r, int64_t n, int64_t s, int64_t) { t += sum_strided<T, float>(r, n, s); });
          total = (float)t;
        }
      } else {
        A t = 0;
        for_each_inner_row(x, in, [&](const T* r, int64_t n, int64_t s, int64_t) {
          if constexpr (std::is_integral_v<A>) {
            uint64_t u = 0;
            for (int64_t i = 0; i < n; ++i) u += (uint64_t)(int64_t)load(r + i * s);
            t = (A)((uint64_t)t + u);
          } else {
            t += sum_strided<T, A>(r, n, s);
          }
        });
        total = t;
      }
      if (op == CT_REDUCE_SUM) {
        if constexpr (std::is_integral_v<A>) *(int64_t*)out = total;
        else store<T>((T*)out, (C)total);
      } else if constexpr (!std::is_integral_v<A>) {
        store<T>((T*)out, (C)(total / (A)in.numel));
      }
      return;
    }
    case CT_REDUCE_PROD: {
      A p = 1;
      for_each_inner_row(x, in, [&](const T* r, int64_t n, int64_t s, int64_t) {
        for (int64_t i = 0; i < n; ++i) {
          if constexpr (std::is_integral_v<A>) p = (A)((uint64_t)p * (uint64_t)(int64_t)load(r + i * s));
          else p *= (A)load(r + i * s);
        }
      });
      if constexpr (std::is_integral_v<A>) *(int64_t*)out = p;
      else store<T>((T*)out, (C)p);
      return;
    }
    case CT_REDUCE_MAX:
    case CT_REDUCE_MIN: {
      C m = load(x);
      const bool mx = op == CT_REDUCE_MAX;
      for_each_inner_row(x, in, [&](const T* r, int64_t n, int64_t s, int64_t) {
        if (s == 1) {
          if (mx) for (int64_t i = 0; i < n; ++i) m = vmax(m, load(r + i));
          else for (int64_t i = 0; i < n; ++i) m = vmin(m, load(r + i));
        } else {
          if (mx) for (int64_t i = 0; i < n; ++i) m = vmax(m, load(r + i * s));
          else for (int64_t i = 0; i < n; ++i) m = vmin(m, load(r + i * s));
        }
      });
      store<T>((T*)out, m);
      return;
    }
    case CT_REDUCE_ARGMAX:
    case CT_REDUCE_ARGMIN: {
      C best = load(x);
      int64_t bi = 0;
      bool nan = best != best;
      const bool mx = op == CT_REDUCE_ARGMAX;
      for_each_inner_row(x, in, [&](const T* r, int64_t n, int64_t s, int64_t i0) {
        if (nan) return;
        for (int64_t i = 0; i < n; ++i) {
          C v = load(r + i * s);
          if (v != v) { best = v; bi = i0 + i; nan = true; return; }  // first NaN wins
          if (mx ? v > best : v < best) { best = v; bi = i0 + i; }
        }
      });
      *(int64_t*)out = bi;
      return;
    }
    case CT_REDUCE_VAR: {
      if constexpr (!std::is_integral_v<A>) {
        double s1 = 0;
        for_each_inner_row(x, in, [&](const T* r, int64_t n, int64_t s, int64_t) { s1 += sum_strided<T, double>(r, n, s); });
        const double mean = s1 / (double)in.numel;
        double s2 = 0;
        for_each_inner_row(x, in, [&](const T* r, int64_t n, int64_t s, int64_t) {
          for (int64_t i = 0; i < n; ++i) { double d = (double)load(r + i * s) - mean; s2 += d * d; }
        });
        double div = (double)in.numel - param;
        if (div < 0) div = 0;
        store<T>((T*)out, (C)(s2 / div));
      }
      return;
    }
  }
}

// ------------------------------------------------------------------ column path
/* Reduce a leading axis: out[j] for j in [0, B) accumulates rows x + k*S, k in [k0, k1). */
template <class T, class A> void col_sum(const T* x, int64_t S, int64_t k0, int64_t k1, int64_t B, A* acc) {
  if (k1 - k0 <= 32) {
    for (int64_t j = 0; j < B; ++j) acc[j] = (A)load(x + k0 * S + j);
    for (int64_t k = k0 + 1; k < k1; ++k) {
      const T* r = x + k * S;
      for (int64_t j = 0; j < B; ++j) acc[j] = (A)(acc[j] + (A)load(r + j));
    }
    return;
  }
  int64_t mid = k0 + (k1 - k0) / 2;
  A tmp[256];
  col_sum<T, A>(x, S, k0, mid, B, acc);
  col_sum<T, A>(x, S, mid, k1, B, tmp);
  for (int64_t j = 0; j < B; ++j) acc[j] = (A)(acc[j] + tmp[j]);
}

template <class T> void col_block(int op, const T* x, int64_t S, int64_t N, int64_t B, char* out, int64_t ostride) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  if (op == CT_REDUCE_SUM || op == CT_REDUCE_MEAN) {
    A acc[256];
    if constexpr (std::is_integral_v<A>) {
      for (int64_t j = 0; j < B; ++j) acc[j] = (A)load(x + j);
      for (int64_t k = 1; k < N; ++k)
        for (int64_t j = 0; j < B; ++j) acc[j] = (A)((uint64_t)acc[j] + (uint64_t)(int64_t)load(x + k * S + j));
      for (int64_t j = 0; j < B; ++j) ((int64_t*)out)[j * ostride] = acc[j];
    } else {
      col_sum<T, A>(x, S, 0, N, B, acc);
      for (int64_t j = 0; j < B; ++j) store<T>((T*)out + j * ostride, (C)(op == CT_REDUCE_MEAN ? acc[j] / (A)N : acc[j]));
    }
    return;
  }
  C m[256];
  for (int64_t j = 0; j < B; ++j) m[j] = load(x + j);
  for (int64_t k = 1; k < N; ++k) {
    const T* r = x + k * S;
    if (op == CT_REDUCE_MAX) for (int64_t j = 0; j < B; ++j) m[j] = vmax(m[j], load(r + j));
    else for (int64_t j = 0; j < B; ++j) m[j] = vmin(m[j], load(r + j));
  }
  for (int64_t j = 0; j < B; ++j) store<T>((T*)out + j * ostride, m[j]);
}

// ------------------------------------------------------------------ driver
/* Drops size-1 dims and merges dim d into d+1 when stride[d] == shape[d+1] * stride[d+1]
 * for every stride array. Returns the new ndim. */
int coalesce(int ndim, int64_t* shape, int64_t* s1, int64_t* s2) {
  int m = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    if (m > 0 && s1[m - 1] == shape[d] * s1[d] && (!s2 || s2[m - 1] == shape[d] * s2[d])) {
      shape[m - 1] *= shape[d];
      s1[m - 1] = s1[d];
      if (s2) s2[m - 1] = s2[d];
      continue;
    }
    shape[m] = shape[d];
    s1[m] = s1[d];
    if (s2) s2[m] = s2[d];
    ++m;
  }
  return m;
}

template <class T>
void reduce_typed(int op, int on, const int64_t* oshape, const int64_t* ois, const int64_t* oos, int64_t outer,
                  Inner in, const T* x, char* out, int64_t out_es, double param) {
  const bool avx512 = use_avx512();
  // Column path: one reduced dim, outer stride 1 on the last kept dim.
  if ((op == CT_REDUCE_SUM || op == CT_REDUCE_MEAN || op == CT_REDUCE_MAX || op == CT_REDUCE_MIN) && on >= 1 &&
      in.ndim == 1 && ois[on - 1] == 1 && in.stride[0] > 1 && in.numel > 1) {
    const int64_t L = oshape[on - 1], prefix = outer / L, N = in.numel, S = in.stride[0];
    const int nt = threads_for(outer * N);
    int64_t B = 256;
    if (nt > 1 && prefix * ((L + B - 1) / B) < 4 * nt) {
      B = (L + 4 * nt - 1) / (4 * nt);
      B = B < 16 ? 16 : (B > 256 ? 256 : B);
    }
    const int64_t chunks = (L + B - 1) / B, items = prefix * chunks;
    auto run = [&](int64_t i0, int64_t i1) {
      for (int64_t it = i0; it < i1; ++it) {
        int64_t p = it / chunks, j0 = (it % chunks) * B, b = L - j0 < B ? L - j0 : B;
        int64_t xo = j0, oo = j0 * oos[on - 1];
        for (int d = on - 2; d >= 0; --d) { int64_t c = p % oshape[d]; p /= oshape[d]; xo += c * ois[d]; oo += c * oos[d]; }
        col_block<T>(op, x + xo, S, N, b, out + oo * out_es, oos[on - 1]);
      }
    };
    if (nt > 1 && items > 1) parallel_range(items, 1 << 20, run);
    else run(0, items);
    return;
  }
  // Single long contiguous row (full reduction of a contiguous tensor): split it over threads.
  const int nt = threads_for(outer * in.numel);
  if ((op == CT_REDUCE_SUM || op == CT_REDUCE_MEAN) && std::is_same_v<acc_t<T>, float> && outer < nt &&
      in.ndim == 1 && in.stride[0] == 1) {
    for (int64_t o = 0; o < outer; ++o) {
      int64_t xo = 0, oo = 0, r = o;
      for (int d = on - 1; d >= 0; --d) { int64_t c = r % oshape[d]; r /= oshape[d]; xo += c * ois[d]; oo += c * oos[d]; }
      std::vector<double> part(nt, 0.0);
      const T* row = x + xo;
      const int64_t n = in.numel, per = (n + nt - 1) / nt;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
      for (int t = 0; t < nt; ++t) {
        int64_t a = t * per, b = a + per < n ? a + per : n;
        if (b > a) part[t] = sum_pairwise(row + a, b - a, avx512);
      }
      double s = 0;
      for (int t = 0; t < nt; ++t) s += part[t];
      float total = (float)s;
      if (op == CT_REDUCE_MEAN) total = (float)(s / (double)n);
      store<T>((T*)(out + oo * out_es), total);
    }
    return;
  }
  // Row / general path: parallel over outer indices.
  auto run = [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      int64_t xo = 0, oo = 0, r = o;
      for (int d = on - 1; d >= 0; --d) { int64_t c = r % oshape[d]; r /= oshape[d]; xo += c * ois[d]; oo += c * oos[d]; }
      reduce_block<T>(op, x + xo, in, out + oo * out_es, param, avx512);
    }
  };
  parallel_range(outer, in.numel, run);
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_reduce(int op, int dtype, int out_dtype, int outer_ndim, const int64_t* outer_shape,
                             const int64_t* in_outer_strides, const int64_t* out_strides, int inner_ndim,
                             const int64_t* inner_shape, const int64_t* in_inner_strides, const void* in, void* out,
                             double param, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_reduce";
  CT_TRY
  if (op < 0 || op >= CT_REDUCE_COUNT) return fail(CT_ERR_INVALID_ARG, "%s: unknown op code %d", fn, op);
  const bool fp = dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16;
  const bool integer = dtype == CT_I8 || dtype == CT_U8 || dtype == CT_I32 || dtype == CT_I64;
  bool ok = fp || integer || (dtype == CT_BOOL && op == CT_REDUCE_SUM);
  if ((op == CT_REDUCE_MEAN || op == CT_REDUCE_VAR) && !fp) ok = false;
  if (!ok)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %s is not defined for dtype %s (%d)", fn, op_name(op), dtype_name(dtype), dtype);
  int expect = dtype;
  if (op == CT_REDUCE_ARGMAX || op == CT_REDUCE_ARGMIN || ((op == CT_REDUCE_SUM || op == CT_REDUCE_PROD) && !fp))
    expect = CT_I64;
  if (out_dtype != expect)
    return fail(CT_ERR_INVALID_ARG, "%s: out_dtype=%s (%d) but op %s on %s writes %s", fn, dtype_name(out_dtype),
                out_dtype, op_name(op), dtype_name(dtype), dtype_name(expect));
  int64_t outer, inner;
  int st;
  if ((st = check_shape(fn, outer_ndim, outer_shape, &outer)) ||
      (st = check_strides(fn, "in_outer_strides", outer_ndim, in_outer_strides)) ||
      (st = check_strides(fn, "out_strides", outer_ndim, out_strides)) ||
      (st = check_shape(fn, inner_ndim, inner_shape, &inner)) ||
      (st = check_strides(fn, "in_inner_strides", inner_ndim, in_inner_strides)))
    return st;
  if (outer == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out))) return st;

  int64_t oshape[CT_MAX_DIMS], ois[CT_MAX_DIMS], oos[CT_MAX_DIMS];
  for (int d = 0; d < outer_ndim; ++d) { oshape[d] = outer_shape[d]; ois[d] = in_outer_strides[d]; oos[d] = out_strides[d]; }
  const int on = coalesce(outer_ndim, oshape, ois, oos);
  const int64_t out_es = dtype_size(out_dtype);

  if (inner == 0) {
    if (op == CT_REDUCE_MAX || op == CT_REDUCE_MIN || op == CT_REDUCE_ARGMAX || op == CT_REDUCE_ARGMIN)
      return fail(CT_ERR_INVALID_ARG, "%s: %s over an empty block (inner numel 0) has no identity", fn, op_name(op));
    const double v = op == CT_REDUCE_SUM ? 0.0 : op == CT_REDUCE_PROD ? 1.0 : std::numeric_limits<double>::quiet_NaN();
    for (int64_t o = 0; o < outer; ++o) {
      int64_t oo = 0, r = o;
      for (int d = on - 1; d >= 0; --d) { oo += (r % oshape[d]) * oos[d]; r /= oshape[d]; }
      char* p = (char*)out + oo * out_es;
      dispatch_dtype(out_dtype, [&](auto t) {
        using T = decltype(t);
        store<T>((T*)p, (compute_t<T>)v);
      });
    }
    return CT_OK;
  }
  if ((st = check_ptr(fn, "in", in))) return st;

  Inner blk;
  for (int d = 0; d < inner_ndim; ++d) { blk.shape[d] = inner_shape[d]; blk.stride[d] = in_inner_strides[d]; }
  blk.ndim = coalesce(inner_ndim, blk.shape, blk.stride, nullptr);
  if (blk.ndim == 0) { blk.ndim = 1; blk.shape[0] = 1; blk.stride[0] = 1; }
  blk.numel = inner;

  dispatch_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    reduce_typed<T>(op, on, oshape, ois, oos, outer, blk, (const T*)in, (char*)out, out_es, param);
  });
  return CT_OK;
  CT_CATCH(fn)
}
