/*
 * Indexing family: gather along one axis (ONNX Gather, embedding lookup); index_add, its
 * backward, is further down with its own algorithm note.
 *
 * Algorithm: indices are validated and normalized (negative += axis_len) once, up front, so
 * an out-of-range index fails before any output is written; then for each (o, j) one row of
 * `inner` elements is copied with memcpy: out[o, j, :] = src[o, idx(j), :]. Rows are spread
 * over threads when the output is large.
 *
 * Cost: one read + one write per output element: 2 * outer * n_index * inner * sizeof(dtype)
 * bytes, plus n_index * sizeof(index) to read the indices; no FLOPs.
 */
#include <vector>

#include "cortado/index.h"
#include "internal.h"

using namespace ct;

extern "C" int ct_cpu_gather(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner,
                             const void* src, int64_t n_index, const void* index, void* out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_gather";
  CT_TRY
  const int64_t es = dtype_size(dtype);
  if (es == 0 || dtype == CT_I4)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported", fn, dtype_name(dtype), dtype);
  if (index_dtype != CT_I32 && index_dtype != CT_I64)
    return fail(CT_ERR_UNSUPPORTED, "%s: index_dtype %s (%d) must be I32 or I64", fn, dtype_name(index_dtype),
                index_dtype);
  if (outer < 0 || axis_len < 0 || inner < 0 || n_index < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: negative size (outer=%lld axis_len=%lld inner=%lld n_index=%lld)", fn,
                (long long)outer, (long long)axis_len, (long long)inner, (long long)n_index);
  if (n_index == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "index", index))) return st;
  // Validate every index even when the output is empty: a bad index is an error regardless.
  std::vector<int64_t> idx((size_t)n_index);
  for (int64_t j = 0; j < n_index; ++j) {
    int64_t v = index_dtype == CT_I32 ? (int64_t)((const int32_t*)index)[j] : ((const int64_t*)index)[j];
    if (v < -axis_len || v >= axis_len)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: index[%lld]=%lld is out of range for axis length %lld", fn,
                  (long long)j, (long long)v, (long long)axis_len);
    idx[(size_t)j] = v < 0 ? v + axis_len : v;
  }
  if (outer == 0 || inner == 0) return CT_OK;
  if ((st = check_ptr(fn, "src", src)) || (st = check_ptr(fn, "out", out))) return st;
  const char* s = (const char*)src;
  char* o = (char*)out;
  const size_t row = (size_t)(inner * es);
  parallel_range(outer * n_index, inner, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t oi = i / n_index, j = i % n_index;
      std::memcpy(o + (size_t)i * row, s + (size_t)(oi * axis_len + idx[(size_t)j]) * row, row);
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

/*
 * index_add (scatter-add, the backward of gather): out[o, idx(j), :] += src[o, j, :].
 *
 * Deterministic parallel scheme: indices are validated and bucketed by destination with a
 * stable counting sort (start[p] .. start[p+1] lists the j with idx(j) == p, ascending).
 * Work items are destination rows (o, p); the thread that owns one adds its sources in
 * ascending j, so the result is the same bit for bit whatever the thread count. A row
 * whose bucket is empty is not touched. 16-bit floats accumulate in a float32 row buffer
 * (one rounding per destination element); float32/float64 accumulate in place.
 * Cost: outer*n_index*inner source reads + 1 FLOP each, one read-modify-write per touched
 * destination element; O(n_index + axis_len) for the bucketing.
 */
namespace ct {
namespace {

template <class T>
void index_add_typed(int64_t outer, int64_t axis_len, int64_t inner, int64_t n_index, const std::vector<int64_t>& start,
                     const std::vector<int64_t>& order, const T* src, T* out) {
  std::vector<float> scratch(std::is_same_v<T, float> || std::is_same_v<T, double> ? 0 : (size_t)threads() * (size_t)inner);
  const int64_t avg = (n_index + axis_len - 1) / (axis_len > 0 ? axis_len : 1) + 1;
  parallel_range(outer * axis_len, inner * avg, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t o = it / axis_len, p = it % axis_len;
      const int64_t b = start[(size_t)p], e = start[(size_t)p + 1];
      if (b == e) continue;
      T* dst = out + (o * axis_len + p) * inner;
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        for (int64_t k = b; k < e; ++k) {
          const T* s = src + (o * n_index + order[(size_t)k]) * inner;
          for (int64_t i = 0; i < inner; ++i) dst[i] += s[i];
        }
      } else {
        float* acc = scratch.data() + (size_t)omp_get_thread_num() * (size_t)inner;
        for (int64_t i = 0; i < inner; ++i) acc[i] = load(dst + i);
        for (int64_t k = b; k < e; ++k) {
          const T* s = src + (o * n_index + order[(size_t)k]) * inner;
          for (int64_t i = 0; i < inner; ++i) acc[i] += load(s + i);
        }
        for (int64_t i = 0; i < inner; ++i) store<T>(dst + i, acc[i]);
      }
    }
  });
}

}  // namespace
}  // namespace ct

extern "C" int ct_cpu_index_add(int dtype, int index_dtype, int64_t outer, int64_t axis_len, int64_t inner,
                                int64_t n_index, const void* index, const void* src, void* out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_index_add";
  CT_TRY
  if (dtype != CT_F32 && dtype != CT_F64 && dtype != CT_F16 && dtype != CT_BF16)
    return fail(dtype_size(dtype) ? CT_ERR_UNSUPPORTED : CT_ERR_INVALID_ARG,
                "%s: dtype %s (%d) is not supported (F32, F64, F16, BF16 only)", fn, dtype_name(dtype), dtype);
  if (index_dtype != CT_I32 && index_dtype != CT_I64)
    return fail(CT_ERR_UNSUPPORTED, "%s: index_dtype %s (%d) must be I32 or I64", fn, dtype_name(index_dtype),
                index_dtype);
  if (outer < 0 || axis_len < 0 || inner < 0 || n_index < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: negative size (outer=%lld axis_len=%lld inner=%lld n_index=%lld)", fn,
                (long long)outer, (long long)axis_len, (long long)inner, (long long)n_index);
  int64_t t;
  if (__builtin_mul_overflow(outer, axis_len, &t) || __builtin_mul_overflow(t, inner, &t) ||
      __builtin_mul_overflow(outer, n_index, &t) || __builtin_mul_overflow(t, inner, &t))
    return fail(CT_ERR_INVALID_ARG, "%s: sizes overflow int64", fn);
  if (n_index == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "index", index))) return st;
  // Validate, normalize and bucket by destination (stable counting sort).
  std::vector<int64_t> start((size_t)axis_len + 1, 0), order((size_t)n_index), idx((size_t)n_index);
  for (int64_t j = 0; j < n_index; ++j) {
    int64_t v = index_dtype == CT_I32 ? (int64_t)((const int32_t*)index)[j] : ((const int64_t*)index)[j];
    if (v < -axis_len || v >= axis_len)
      return fail(CT_ERR_INDEX_OUT_OF_RANGE, "%s: index[%lld]=%lld is out of range for axis length %lld", fn,
                  (long long)j, (long long)v, (long long)axis_len);
    v = v < 0 ? v + axis_len : v;
    idx[(size_t)j] = v;
    ++start[(size_t)v + 1];
  }
  if (outer == 0 || inner == 0) return CT_OK;
  if ((st = check_ptr(fn, "src", src)) || (st = check_ptr(fn, "out", out))) return st;
  for (int64_t p = 0; p < axis_len; ++p) start[(size_t)p + 1] += start[(size_t)p];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t j = 0; j < n_index; ++j) order[(size_t)fill[(size_t)idx[(size_t)j]]++] = j;
  }
  switch (dtype) {
    case CT_F32: index_add_typed<float>(outer, axis_len, inner, n_index, start, order, (const float*)src, (float*)out); break;
    case CT_F64: index_add_typed<double>(outer, axis_len, inner, n_index, start, order, (const double*)src, (double*)out); break;
    case CT_F16: index_add_typed<f16>(outer, axis_len, inner, n_index, start, order, (const f16*)src, (f16*)out); break;
    default: index_add_typed<bf16>(outer, axis_len, inner, n_index, start, order, (const bf16*)src, (bf16*)out); break;
  }
  return CT_OK;
  CT_CATCH(fn)
}
