/*
 * 2:4 operands in the sparse tensor cores' metadata layout (contract in cortado/sparse24.h; the
 * layout in native/shared/sp24_layout.h). This file is the host side of the CUDA kernel in
 * native/cuda/sparse24.cu:
 *   pack_meta  the N:M positions (one byte per kept value) -> the mma.sp words (2 bits per kept
 *              value), tile by tile with sp24::meta_word (the layout's one definition);
 *   unpack     values + packed words -> the dense W, decoding each nibble through sp24::locate
 *              (the inverse written from the layout, so pack -> unpack == decompress is a test);
 *   matmul     the scalar reference of the tensor-core GEMM: per row of W and per group, decode
 *              the two positions from the packed word and add value * (a row of B) to the row of
 *              C in compute_t (double for F64, float otherwise): 2 rows (k / 2) ncols FLOPs.
 * Parallel over rows of W (OpenMP); every result is independent of the thread count.
 */
#include <algorithm>
#include <cmath>
#include <vector>

#include "cortado/sparse24.h"
#include "internal.h"
#include "sp24_layout.h"

namespace ct {
namespace {


/* rows, k >= 0, k % 4 == 0, and the sizes the packed array and B need fit int64. */
int check_shape24(const char* fn, int64_t rows, int64_t k, int64_t ncols) {
  if (rows < 0 || k < 0 || ncols < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: rows=%lld, k=%lld, ncols=%lld (must be >= 0)", fn, (long long)rows, (long long)k,
                (long long)ncols);
  if (k % 4 != 0) return fail(CT_ERR_INVALID_ARG, "%s: k = %lld is not a multiple of 4 (2:4 groups)", fn, (long long)k);
  int64_t t;
  if (__builtin_mul_overflow(rows, k, &t) || __builtin_mul_overflow(k, ncols, &t) ||
      __builtin_mul_overflow(rows, ncols, &t))
    return fail(CT_ERR_INVALID_ARG, "%s: rows=%lld, k=%lld, ncols=%lld overflow int64", fn, (long long)rows,
                (long long)k, (long long)ncols);
  return CT_OK;
}

/* The two positions of group grp of row r from the packed words, or CT_ERR_INVALID_ARG. */
inline int positions(const char* fn, int64_t k, const uint32_t* packed, int64_t r, int64_t grp, int* p0, int* p1) {
  int64_t w;
  int shift;
  sp24::locate(k, r, grp, &w, &shift);
  const uint32_t nib = (packed[w] >> shift) & 0xFu;
  *p0 = (int)(nib & 3u);
  *p1 = (int)(nib >> 2);
  if (*p0 >= *p1)
    return fail(CT_ERR_INVALID_ARG,
                "%s: packed metadata word %lld, bits %d..%d (row %lld, group %lld) = 0x%x: not two increasing "
                "positions of a 2:4 group",
                fn, (long long)w, shift, shift + 3, (long long)r, (long long)grp, nib);
  return CT_OK;
}

/* Every kept position of every row checked once (before any data is read). */
int check_packed(const char* fn, int64_t rows, int64_t k, const uint32_t* packed) {
  int p0, p1, st;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < k / 4; ++g)
      if ((st = positions(fn, k, packed, r, g, &p0, &p1))) return st;
  return CT_OK;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cpu_sp24_pack_meta(int64_t rows, int64_t k, const uint8_t* meta, uint32_t* packed, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_sp24_pack_meta";
  CT_TRY
  int st;
  if ((st = check_shape24(fn, rows, k, 0))) return st;
  if (rows == 0 || k == 0) return CT_OK;
  if ((st = check_ptr(fn, "meta", meta)) || (st = check_ptr(fn, "packed", packed))) return st;
  const int64_t per_row = k / 2;
  for (int64_t s = 0; s < rows * per_row; ++s) {
    const int t = (int)(s % 2);
    if (meta[s] >= 4 || (t == 1 && meta[s] <= meta[s - 1]))
      return fail(CT_ERR_INVALID_ARG,
                  "%s: meta of row %lld, group %lld, slot %d is %d: the 2:4 pattern needs positions in [0, 4), "
                  "strictly increasing within a group",
                  fn, (long long)(s / per_row), (long long)((s % per_row) / 2), t, meta[s]);
  }
  const int64_t rt = sp24::row_tiles(rows), kt = sp24::k_tiles(k);
  const int nt = threads_for(rows * k / 4);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t tile = 0; tile < rt * kt; ++tile)
    for (int w = 0; w < sp24::kWordsPerTile; ++w)
      packed[tile * sp24::kWordsPerTile + w] = sp24::meta_word(rows, k, meta, tile / kt, tile % kt, w);
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_sp24_unpack(int dtype, int64_t rows, int64_t k, const void* values, const uint32_t* packed, void* x,
                       int64_t /*stream*/) {
  static const char* fn = "ct_cpu_sp24_unpack";
  CT_TRY
  int st;
  if ((st = check_float_dtype(fn, dtype)) || (st = check_shape24(fn, rows, k, 0))) return st;
  if (rows == 0 || k == 0) return CT_OK;
  if ((st = check_ptr(fn, "values", values)) || (st = check_ptr(fn, "packed", packed)) || (st = check_ptr(fn, "x", x)) ||
      (st = check_packed(fn, rows, k, packed)))
    return st;
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* v = (const T*)values;
    T* xp = (T*)x;
    const int nt = threads_for(rows * k);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < k / 4; ++g) {
        int p0 = 0, p1 = 1;
        positions(fn, k, packed, r, g, &p0, &p1);  // valid: checked above
        T* out = xp + r * k + g * 4;
        for (int p = 0; p < 4; ++p) store(out + p, (A)0);
        out[p0] = v[r * (k / 2) + g * 2];
        out[p1] = v[r * (k / 2) + g * 2 + 1];
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_sp24_matmul(int dtype, int64_t rows, int64_t k, int64_t ncols, const void* values, const uint32_t* packed,
                       const void* b, void* c, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_sp24_matmul";
  CT_TRY
  int st;
  if ((st = check_float_dtype(fn, dtype)) || (st = check_shape24(fn, rows, k, ncols))) return st;
  if (rows == 0 || ncols == 0) return CT_OK;
  if ((st = check_ptr(fn, "c", c))) return st;
  if (k > 0) {
    if ((st = check_ptr(fn, "values", values)) || (st = check_ptr(fn, "packed", packed)) ||
        (st = check_ptr(fn, "b", b)) || (st = check_packed(fn, rows, k, packed)))
      return st;
  }
  dispatch_float(dtype, [&](auto z) {
    using T = decltype(z);
    using A = compute_t<T>;
    const T* v = (const T*)values;
    const T* bp = (const T*)b;
    T* cp = (T*)c;
    const int nt = threads_for(rows * (k / 2) * ncols);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      std::vector<A> acc((size_t)ncols);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        std::fill(acc.begin(), acc.end(), (A)0);
        for (int64_t g = 0; g < k / 4; ++g) {
          int p[2] = {0, 1};
          positions(fn, k, packed, r, g, &p[0], &p[1]);
          for (int j = 0; j < 2; ++j) {
            const A w = load(v + r * (k / 2) + g * 2 + j);
            const T* brow = bp + (g * 4 + p[j]) * ncols;
            for (int64_t q = 0; q < ncols; ++q) acc[q] += w * (A)load(brow + q);
          }
        }
        for (int64_t q = 0; q < ncols; ++q) store(cp + r * ncols + q, acc[q]);
      }
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"
