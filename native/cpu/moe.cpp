/*
 * Mixture-of-experts family (contract in cortado/moe.h).
 *
 * Routing: one pass over the choices in priority order (choice j of every token, by position,
 * before choice j + 1) ranks each choice within its expert; a prefix sum over the kept counts
 * gives the expert offsets; a second pass turns ranks into buffer rows (-1 past the capacity).
 * O(tokens k + experts), serial: it is integer work of a few ns per choice.
 *
 * Dispatch and combine are permutations of rows: dispatch copies (or scales) each token's row to
 * the buffer rows named by its slots, combine sums a token's kept rows back, weighted by the gates.
 * Both run over tokens (each token owns its output row in combine and its named rows in dispatch,
 * so nothing is shared between threads and the result is deterministic). The gate gradient is
 * one dot product per kept choice. Cost: d elements moved per choice (~2 d sizeof(T) bytes),
 * 2 d FLOPs per choice for combine and the gate gradient.
 *
 * Grouped GEMM: when every group is large (m k n >= 2^26), one OpenBLAS call per group, threaded
 * by OpenBLAS. Otherwise the (expert, row tile, column tile) tasks of all groups in one list, run by the
 * OpenMP threads with dynamic scheduling; each task is one single-threaded OpenBLAS call on its
 * sub-matrices (OpenBLAS packs A and B panels for its register kernel, as in our matmul), with
 * OpenBLAS threading switched off for the region. Tiles: up to 256 rows x 512 columns, so that a
 * group of a few hundred rows still splits into enough tasks for the threads while each task
 * stays large enough (>= ~2^21 FLOPs at the sizes of an FFN) to run near the GEMM's peak. With one
 * thread each group is one BLAS call. The weight gradient tiles dB_e [k, n] the same way (each
 * task reduces over all of the group's rows), or, when every group with rows is large (its rows
 * are the product's depth: g k n >= 2^26), makes one OpenBLAS call per expert, threaded by
 * OpenBLAS, as the forward does. Cost: 2 sum(counts) k n FLOPs either way.
 * The float64 reference is the Java triple loop of the tests (MoeRef), on fresh random inputs.
 */
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cortado/moe.h"
#include "internal.h"

namespace ct {
namespace {

constexpr int64_t kTileRows = 256;
constexpr int64_t kTileCols = 512;

template <class F> bool dispatch_moe(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(float{}); return true;
    case CT_F64: f(double{}); return true;
    case CT_BF16: f(bf16{}); return true;
    default: return false;
  }
}

int check_dtype(const char* fn, int dtype, bool gemm) {
  if (dtype == CT_F32 || dtype == CT_F64 || (!gemm && dtype == CT_BF16)) return CT_OK;
  return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (%s only)", fn, dtype_name(dtype), dtype,
              gemm ? "F32, F64" : "F32, F64, BF16");
}

int check_sizes(const char* fn, std::initializer_list<std::pair<const char*, int64_t>> sizes) {
  for (auto& s : sizes)
    if (s.second < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s = %lld is negative", fn, s.first, (long long)s.second);
  return CT_OK;
}

int check_product(const char* fn, const char* what, int64_t a, int64_t b) {
  int64_t t;
  if (__builtin_mul_overflow(a, b, &t)) return fail(CT_ERR_INVALID_ARG, "%s: %s overflows int64", fn, what);
  return CT_OK;
}

/* slots in [-1, rows), each row named at most once. */
int check_slots(const char* fn, int64_t choices, int64_t rows, const int64_t* slots) {
  int st;
  if (choices == 0) return CT_OK;
  if ((st = check_ptr(fn, "slots", slots))) return st;
  std::vector<int64_t> owner((size_t)rows, -1);
  for (int64_t i = 0; i < choices; ++i) {
    const int64_t s = slots[i];
    if (s < -1 || s >= rows)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: slots[%lld] = %lld is out of range [-1, %lld)", fn, (long long)i,
                  (long long)s, (long long)rows);
    if (s >= 0) {
      if (owner[(size_t)s] >= 0)
        return fail(CT_ERR_INVALID_ARG, "%s: slots[%lld] and slots[%lld] both name buffer row %lld", fn,
                    (long long)owner[(size_t)s], (long long)i, (long long)s);
      owner[(size_t)s] = i;
    }
  }
  return CT_OK;
}

/* The arguments every permutation kernel (dispatch, combine, gate gradient) shares: the dtype,
   non-negative sizes whose products fit int64, and the slots (check_slots). */
int check_permutation(const char* fn, int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows,
                      const int64_t* slots) {
  int st;
  if ((st = check_dtype(fn, dtype, false)) || (st = check_sizes(fn, {{"tokens", tokens}, {"k", k}, {"d", d}, {"rows", rows}})) ||
      (st = check_product(fn, "tokens*k", tokens, k)) || (st = check_product(fn, "rows*d", rows, d)) ||
      (st = check_product(fn, "tokens*d", tokens, d)))
    return st;
  return check_slots(fn, tokens * k, rows, slots);
}

/* counts >= 0 with sum <= rows; writes the offsets (experts + 1 entries). */
int check_counts(const char* fn, int64_t experts, int64_t rows, const int64_t* counts, std::vector<int64_t>& off) {
  int st;
  off.assign((size_t)experts + 1, 0);
  if (experts == 0) return CT_OK;
  if ((st = check_ptr(fn, "counts", counts))) return st;
  for (int64_t e = 0; e < experts; ++e) {
    if (counts[e] < 0 || counts[e] > rows - off[(size_t)e])
      return fail(CT_ERR_INDEX_OUT_OF_RANGE,
                  "%s: counts[%lld] = %lld is negative or runs past the %lld buffer rows (offset %lld)", fn,
                  (long long)e, (long long)counts[e], (long long)rows, (long long)off[(size_t)e]);
    off[(size_t)e + 1] = off[(size_t)e] + counts[e];
  }
  return CT_OK;
}

template <class T> void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                             int64_t ldb, T* c, int64_t ldc) {
  const CBLAS_TRANSPOSE A = ta ? CblasTrans : CblasNoTrans, B = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, A, B, (blasint)m, (blasint)n, (blasint)k, 1.0f, a, (blasint)lda, b, (blasint)ldb, 0.0f,
                c, (blasint)ldc);
  else
    cblas_dgemm(CblasRowMajor, A, B, (blasint)m, (blasint)n, (blasint)k, 1.0, a, (blasint)lda, b, (blasint)ldb, 0.0, c,
                (blasint)ldc);
}

/* One task of a grouped product: expert e, rows [r0, r1) of its output block, columns [c0, c1). */
struct Task {
  int64_t e, r0, r1, c0, c1;
};

/* Runs the tasks on the threads, each a single-threaded BLAS call; serial when one thread. */
template <class Fn> void run_tasks(const std::vector<Task>& tasks, double flops, Fn&& fn) {
  int nt = threads_for((int64_t)std::min(flops / 4.0, 9e18));
  if (nt > (int)tasks.size()) nt = (int)tasks.size();
  if (nt <= 1) {
    for (const Task& t : tasks) fn(t);
    return;
  }
  BlasSingleThreaded single;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (size_t i = 0; i < tasks.size(); ++i) fn(tasks[i]);
}

/* Whether every non-empty group is large (m k n >= 2^26 multiply-adds): then one BLAS call per
 * group, threaded by OpenBLAS, beats single-threaded tiles on the threads (8 groups of 512 x 1024
 * x 1024 on 2 threads: 59.8 ms against 73.3 ms, dense 46.6 / 50.8 ms; docs/dev/performance-journal.md). */
bool large_groups(const std::vector<int64_t>& m_of, int64_t k, int64_t n) {
  bool any = false;
  for (int64_t m : m_of) {
    if (m == 0) continue;
    if ((double)m * (double)k * (double)n < (double)(1LL << 26)) return false;
    any = true;
  }
  return any;
}

/* Tiles a [m, n] block of every expert; single-threaded runs take whole blocks. */
std::vector<Task> tile(int64_t experts, const std::vector<int64_t>& m_of, int64_t n, bool whole) {
  std::vector<Task> tasks;
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t m = m_of[(size_t)e];
    if (m == 0 || n == 0) continue;
    const int64_t tr = whole ? m : kTileRows, tc = whole ? n : kTileCols;
    for (int64_t r = 0; r < m; r += tr)
      for (int64_t c = 0; c < n; c += tc) tasks.push_back({e, r, std::min(m, r + tr), c, std::min(n, c + tc)});
  }
  return tasks;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_moe_route(int64_t tokens, int64_t k, int64_t experts, int64_t capacity,
                                const int64_t* expert_ids, int64_t* slots, int64_t* counts, int64_t* load,
                                int64_t /*stream*/) {
  static const char* fn = "ct_cpu_moe_route";
  CT_TRY
  int st;
  if ((st = check_sizes(fn, {{"tokens", tokens}, {"k", k}, {"experts", experts}})) ||
      (st = check_product(fn, "tokens*k", tokens, k)))
    return st;
  if (experts < 1) return fail(CT_ERR_INVALID_ARG, "%s: experts = %lld, need at least 1", fn, (long long)experts);
  if (k > experts)
    return fail(CT_ERR_INVALID_ARG, "%s: k = %lld exceeds the %lld experts", fn, (long long)k, (long long)experts);
  if (capacity < 1) return fail(CT_ERR_INVALID_ARG, "%s: capacity = %lld, need at least 1", fn, (long long)capacity);
  if ((st = check_ptr(fn, "counts", counts)) || (st = check_ptr(fn, "load", load))) return st;
  const int64_t choices = tokens * k;
  if (choices > 0 && ((st = check_ptr(fn, "expert_ids", expert_ids)) || (st = check_ptr(fn, "slots", slots))))
    return st;
  for (int64_t i = 0; i < choices; ++i)
    if (expert_ids[i] < 0 || expert_ids[i] >= experts)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: expert_ids[%lld] = %lld is out of range [0, %lld)", fn, (long long)i,
                  (long long)expert_ids[i], (long long)experts);
  std::fill(load, load + experts, (int64_t)0);
  // pass 1: rank within the expert, in priority order (choice-major, then position)
  for (int64_t j = 0; j < k; ++j)
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t i = t * k + j;
      slots[i] = load[expert_ids[i]]++;
    }
  std::vector<int64_t> off((size_t)experts + 1, 0);
  for (int64_t e = 0; e < experts; ++e) {
    counts[e] = std::min(load[e], capacity);
    off[(size_t)e + 1] = off[(size_t)e] + counts[e];
  }
  // pass 2: rank -> buffer row
  for (int64_t i = 0; i < choices; ++i) slots[i] = slots[i] < capacity ? off[(size_t)expert_ids[i]] + slots[i] : -1;
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_moe_dispatch(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows,
                                   const int64_t* slots, const void* gates, const void* x, void* buf,
                                   int64_t /*stream*/) {
  static const char* fn = "ct_cpu_moe_dispatch";
  CT_TRY
  int st;
  if ((st = check_permutation(fn, dtype, tokens, k, d, rows, slots))) return st;
  if (rows * d == 0) return CT_OK;
  if ((st = check_ptr(fn, "buf", buf))) return st;
  if (tokens * k > 0 && ((st = check_ptr(fn, "x", x)))) return st;
  dispatch_moe(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* xp = (const T*)x;
    const T* gp = (const T*)gates;
    T* bp = (T*)buf;
    // padding rows (and dropped capacity) are zero: one memset, then the named rows are overwritten
    std::memset(buf, 0, (size_t)(rows * d) * sizeof(T));
    parallel_range(tokens, k * d, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t j = 0; j < k; ++j) {
          const int64_t s = slots[t * k + j];
          if (s < 0) continue;
          const T* src = xp + t * d;
          T* dst = bp + s * d;
          if (gp == nullptr) {
            std::memcpy(dst, src, (size_t)d * sizeof(T));
          } else {
            const A w = load(gp + t * k + j);
            for (int64_t c = 0; c < d; ++c) store(dst + c, (A)(w * (A)load(src + c)));
          }
        }
    });
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_moe_combine(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows, const int64_t* slots,
                                  const void* gates, const void* y, void* out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_moe_combine";
  CT_TRY
  int st;
  if ((st = check_permutation(fn, dtype, tokens, k, d, rows, slots))) return st;
  if (tokens * d == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out))) return st;
  if (rows * d > 0 && ((st = check_ptr(fn, "y", y)))) return st;
  dispatch_moe(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* yp = (const T*)y;
    const T* gp = (const T*)gates;
    T* op = (T*)out;
    parallel_range(tokens, k * d, [&](int64_t t0, int64_t t1) {
      std::vector<A> acc((size_t)d);
      for (int64_t t = t0; t < t1; ++t) {
        std::fill(acc.begin(), acc.end(), (A)0);
        for (int64_t j = 0; j < k; ++j) {
          const int64_t s = slots[t * k + j];
          if (s < 0) continue;
          const A w = gp == nullptr ? (A)1 : (A)load(gp + t * k + j);
          const T* src = yp + s * d;
          for (int64_t c = 0; c < d; ++c) acc[(size_t)c] += w * (A)load(src + c);
        }
        for (int64_t c = 0; c < d; ++c) store(op + t * d + c, acc[(size_t)c]);
      }
    });
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_moe_gate_grad(int dtype, int64_t tokens, int64_t k, int64_t d, int64_t rows,
                                    const int64_t* slots, const void* dout, const void* y, void* dgates,
                                    int64_t /*stream*/) {
  static const char* fn = "ct_cpu_moe_gate_grad";
  CT_TRY
  int st;
  if ((st = check_permutation(fn, dtype, tokens, k, d, rows, slots))) return st;
  if (tokens * k == 0) return CT_OK;
  if ((st = check_ptr(fn, "dgates", dgates))) return st;
  if (d > 0 && ((st = check_ptr(fn, "dout", dout)) || (rows > 0 && (st = check_ptr(fn, "y", y))))) return st;
  dispatch_moe(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* gp = (const T*)dout;
    const T* yp = (const T*)y;
    T* dg = (T*)dgates;
    parallel_range(tokens, k * d, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t j = 0; j < k; ++j) {
          const int64_t s = slots[t * k + j];
          A acc = 0;
          if (s >= 0)
            for (int64_t c = 0; c < d; ++c) acc += (A)load(gp + t * d + c) * (A)load(yp + s * d + c);
          store(dg + t * k + j, acc);
        }
    });
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_grouped_gemm(int dtype, int64_t experts, int64_t rows, int64_t k, int64_t n, int trans_b,
                                   const int64_t* counts, const void* a, const void* b, void* c, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_grouped_gemm";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype, true)) ||
      (st = check_sizes(fn, {{"experts", experts}, {"rows", rows}, {"k", k}, {"n", n}})) ||
      (st = check_product(fn, "rows*k", rows, k)) || (st = check_product(fn, "rows*n", rows, n)) ||
      (st = check_product(fn, "experts*k", experts, k)) || (st = check_product(fn, "experts*k*n", experts * k, n)))
    return st;
  if (trans_b != 0 && trans_b != 1) return fail(CT_ERR_INVALID_ARG, "%s: trans_b = %d, must be 0 or 1", fn, trans_b);
  if (k > 2147483647 || n > 2147483647 || rows > 2147483647)
    return fail(CT_ERR_INVALID_ARG, "%s: rows, k and n must fit BLAS's int (rows %lld, k %lld, n %lld)", fn,
                (long long)rows, (long long)k, (long long)n);
  std::vector<int64_t> off;
  if ((st = check_counts(fn, experts, rows, counts, off))) return st;
  if (rows * n == 0) return CT_OK;
  if ((st = check_ptr(fn, "c", c))) return st;
  const int64_t used = off[(size_t)experts];
  if (used > 0 && k > 0 && ((st = check_ptr(fn, "a", a)) || (st = check_ptr(fn, "b", b)))) return st;
  dispatch_moe(dtype, [&](auto z) {
    using T = decltype(z);
    if constexpr (!std::is_same_v<T, bf16>) {
      const T* ap = (const T*)a;
      const T* bp = (const T*)b;
      T* cp = (T*)c;
      std::memset(cp + used * n, 0, (size_t)((rows - used) * n) * sizeof(T));  // the padding rows
      std::vector<int64_t> m_of(counts, counts + experts);
      const double flops = 2.0 * (double)used * (double)k * (double)n;
      const bool whole = threads_for((int64_t)std::min(flops / 4.0, 9e18)) <= 1 || large_groups(m_of, k, n);
      auto task = [&](const Task& t) {
        const int64_t r = off[(size_t)t.e] + t.r0, m = t.r1 - t.r0, w = t.c1 - t.c0;
        T* ct_ = cp + r * n + t.c0;
        if (k == 0) {
          for (int64_t i = 0; i < m; ++i) std::fill(ct_ + i * n, ct_ + i * n + w, (T)0);
          return;
        }
        const T* be = bp + t.e * k * n;
        // op(B_e) columns [c0, c1): B_e [k, n] -> column offset; B_e [n, k] (trans) -> row offset
        const T* bt = trans_b ? be + t.c0 * k : be + t.c0;
        blas<T>(false, trans_b, m, w, k, ap + r * k, k, bt, trans_b ? k : n, ct_, n);
      };
      if (whole) {
        for (const Task& t : tile(experts, m_of, n, true)) task(t);  // one call per group, threaded by OpenBLAS
      } else {
        run_tasks(tile(experts, m_of, n, false), flops, task);
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_grouped_gemm_wgrad(int dtype, int64_t experts, int64_t rows, int64_t k, int64_t n,
                                         const int64_t* counts, const void* a, const void* dc, void* db,
                                         int64_t /*stream*/) {
  static const char* fn = "ct_cpu_grouped_gemm_wgrad";
  CT_TRY
  int st;
  if ((st = check_dtype(fn, dtype, true)) ||
      (st = check_sizes(fn, {{"experts", experts}, {"rows", rows}, {"k", k}, {"n", n}})) ||
      (st = check_product(fn, "rows*k", rows, k)) || (st = check_product(fn, "rows*n", rows, n)) ||
      (st = check_product(fn, "experts*k", experts, k)) || (st = check_product(fn, "experts*k*n", experts * k, n)))
    return st;
  if (k > 2147483647 || n > 2147483647 || rows > 2147483647)
    return fail(CT_ERR_INVALID_ARG, "%s: rows, k and n must fit BLAS's int (rows %lld, k %lld, n %lld)", fn,
                (long long)rows, (long long)k, (long long)n);
  std::vector<int64_t> off;
  if ((st = check_counts(fn, experts, rows, counts, off))) return st;
  if (experts * k * n == 0) return CT_OK;
  if ((st = check_ptr(fn, "db", db))) return st;
  const int64_t used = off[(size_t)experts];
  if (used > 0 && ((st = check_ptr(fn, "a", a)) || (st = check_ptr(fn, "dc", dc)))) return st;
  dispatch_moe(dtype, [&](auto z) {
    using T = decltype(z);
    if constexpr (!std::is_same_v<T, bf16>) {
      const T* ap = (const T*)a;
      const T* gp = (const T*)dc;
      T* dp = (T*)db;
      // dB_e [k, n]: every expert has k rows of output; an expert without tokens gets zeros
      std::vector<int64_t> m_of((size_t)experts, k);
      const double flops = 2.0 * (double)used * (double)k * (double)n + (double)experts * k * n;
      // every expert with tokens a large product (its g tokens are the product's depth): one BLAS
      // call per expert, threaded by OpenBLAS, as in the forward
      const bool large = large_groups(std::vector<int64_t>(counts, counts + experts), k, n);
      const bool whole = threads_for((int64_t)std::min(flops / 4.0, 9e18)) <= 1 || large;
      auto task = [&](const Task& t) {
        const int64_t g = counts[t.e], r = off[(size_t)t.e], m = t.r1 - t.r0, w = t.c1 - t.c0;
        T* out = dp + t.e * k * n + t.r0 * n + t.c0;
        if (g == 0) {
          for (int64_t i = 0; i < m; ++i) std::fill(out + i * n, out + i * n + w, (T)0);
          return;
        }
        // dB_e[r0:r1, c0:c1] = A_e[:, r0:r1]^T dC_e[:, c0:c1]
        blas<T>(true, false, m, w, g, ap + r * k + t.r0, k, gp + r * n + t.c0, n, out, n);
      };
      if (large) {
        for (const Task& t : tile(experts, m_of, n, true)) task(t);
      } else {
        run_tasks(tile(experts, m_of, n, whole), flops, task);
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}
