/*
 * Indexing family: gather along one axis (ONNX Gather, embedding lookup).
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
                             const void* src, int64_t n_index, const void* index, void* out) {
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
