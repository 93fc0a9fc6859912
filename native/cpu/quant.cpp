/*
 * Quantization family (quant.h), CPU: quantize, dequantize, requantize and dynamic (ONNX
 * DynamicQuantizeLinear) quantization over strided tensors with per-tensor, per-channel or
 * per-group parameters.
 *
 * Walk: the data is split into rows (the innermost dimension); a row's start offsets and its
 * parameter index are computed from its coordinates (one div/mod per outer dim), then the row
 * runs a tight loop. Along the row the parameter index is constant (axis not last: per tensor,
 * or per channel/group along an outer axis) or advances every `group` elements (axis last). Rows
 * are spread over OpenMP threads when the tensor is large. The scalar math is quant_math.h's, the
 * same code the CUDA kernels run, so the two agree bit for bit.
 *
 * Fast path: dense float32 to int8/uint8 with one scale (activations before an int8 layer) runs
 * as one flat AVX-512 pass, 16 elements per step, split over the threads (quantize_flat).
 *
 * Cost (n elements): quantize one float32 division, a rounding and a clamp per element (~3 FLOPs),
 * reads e_x and writes 1 byte per element; dequantize a subtraction and a multiply, reads 1 and
 * writes e_y bytes; dynamic quantization adds one min/max pass over x. Memory bound throughout.
 */
#include <algorithm>

#include "cortado/quant.h"
#include "internal.h"
#include "quant_check.h"
#include "quant_math.h"

namespace ct {
namespace {

using qm::Msg;

int report(int status, const Msg& m) { return status == CT_OK ? CT_OK : fail(status, "%s", m.text); }

/* Loads element i of a float-io row as float32. */
template <class T> CT_INLINE float load_f(const T* p) { return (float)load(p); }

/* The row geometry shared by the kernels: rows of the innermost dim over the outer dims. */
struct Rows {
  int ndim;
  const int64_t* shape;
  int64_t n;     // innermost size (1 for ndim 0)
  int64_t rows;  // numel / n
};

/* Coordinates of row r (outer dims only) into coord[0..ndim-2]. */
inline void row_coords(const Rows& g, int64_t r, int64_t* coord) {
  for (int d = g.ndim - 2; d >= 0; --d) {
    coord[d] = r % g.shape[d];
    r /= g.shape[d];
  }
}

/* Offset of a row start in a tensor with these strides. */
inline int64_t row_offset(const Rows& g, const int64_t* coord, const int64_t* strides) {
  int64_t o = 0;
  for (int d = 0; d < g.ndim - 1; ++d) o += coord[d] * strides[d];
  return o;
}

/* Parameter index of a row start, and how it moves along the row (step every `every` elements). */
struct ParamRow {
  int64_t base, step, every;
};

inline ParamRow param_row(const Rows& g, const int64_t* coord, const ct_quant_map* q) {
  ParamRow p{0, 0, 1};
  for (int d = 0; d < g.ndim - 1; ++d) p.base += (d == q->axis ? coord[d] / q->group : coord[d]) * q->strides[d];
  if (g.ndim > 0) {
    p.step = q->strides[g.ndim - 1];
    p.every = q->axis == g.ndim - 1 ? q->group : 1;
  }
  return p;
}

inline int32_t zp_at(const ct_quant_map* q, int64_t i) {
  return q->zero_point ? ((const int32_t*)q->zero_point)[i] : 0;
}

inline float scale_at(const ct_quant_map* q, int64_t i) { return ((const float*)q->scale)[i]; }

template <class Fn> void for_rows(const Rows& g, Fn&& fn) {
  parallel_range(g.rows, g.n, [&](int64_t r0, int64_t r1) {
    int64_t coord[CT_MAX_DIMS] = {0};
    for (int64_t r = r0; r < r1; ++r) {
      row_coords(g, r, coord);
      fn(coord);
    }
  });
}

Rows rows_of(const ct_tensor* t, int64_t numel) {
  Rows g{t->ndim, t->shape, t->ndim > 0 ? t->shape[t->ndim - 1] : 1, 0};
  g.rows = g.n > 0 ? numel / g.n : 0;
  return g;
}

inline int64_t last_stride(const ct_tensor* t) { return t->ndim > 0 ? t->strides[t->ndim - 1] : 0; }

// ------------------------------------------------------------------ quantize
template <class TX, class TY>
void quantize_rows(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* q, int32_t qmin, int32_t qmax,
                   const Rows& g) {
  const int64_t xs = last_stride(x), ys = last_stride(y);
  const bool fp8 = qm::is_fp8(y->dtype);
  const int ydt = y->dtype;
  for_rows(g, [&](const int64_t* coord) {
    const TX* xr = (const TX*)x->data + row_offset(g, coord, x->strides);
    TY* yr = (TY*)y->data + row_offset(g, coord, y->strides);
    ParamRow p = param_row(g, coord, q);
    if (p.step == 0) {  // one scale for the row: the common case (per tensor, or an outer axis)
      const float s = scale_at(q, p.base);
      const int32_t z = zp_at(q, p.base);
      if (fp8) {
        for (int64_t j = 0; j < g.n; ++j) yr[j * ys] = (TY)qm::quantize_fp8(ydt, load_f(xr + j * xs) / s);
      } else {
        for (int64_t j = 0; j < g.n; ++j) yr[j * ys] = (TY)qm::quantize_int(load_f(xr + j * xs), s, z, qmin, qmax);
      }
      return;
    }
    for (int64_t j = 0; j < g.n; ++j) {
      const int64_t pi = p.base + (j / p.every) * p.step;
      const float v = load_f(xr + j * xs);
      yr[j * ys] = fp8 ? (TY)qm::quantize_fp8(ydt, v / scale_at(q, pi))
                       : (TY)qm::quantize_int(v, scale_at(q, pi), zp_at(q, pi), qmin, qmax);
    }
  });
}

/* Whether t is dense in row-major order (size-1 dims ignored). */
bool dense(const ct_tensor* t) {
  int64_t expect = 1;
  for (int d = t->ndim - 1; d >= 0; --d) {
    if (t->shape[d] != 1 && t->strides[d] != expect) return false;
    expect *= t->shape[d];
  }
  return true;
}

/* One scale for every element: the map's strides are all zero. */
bool per_tensor(const ct_quant_map* q, int ndim) {
  for (int d = 0; d < ndim; ++d)
    if (q->strides[d] != 0) return false;
  return true;
}

/* quantize_int over n contiguous float32 into bytes (int8 or uint8 codes), 16 at a time: the same
 * division, round-to-nearest-even, clamp and NaN rule as quant_math.h's scalar code, so the two
 * agree bit for bit (the tail runs the scalar code). */
CT_AVX512 void quantize_bytes_avx512(const float* x, uint8_t* y, int64_t n, float s, int32_t z, int32_t qmin,
                                     int32_t qmax) {
  const __m512 vs = _mm512_set1_ps(s);
  const __m512 lo = _mm512_set1_ps((float)((int64_t)qmin - z)), hi = _mm512_set1_ps((float)((int64_t)qmax - z));
  const __m512i vz = _mm512_set1_epi32(z), vmin = _mm512_set1_epi32(qmin), vmax = _mm512_set1_epi32(qmax);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 r = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(x + j), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __mmask16 num = _mm512_cmp_ps_mask(r, r, _CMP_ORD_Q);
    r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
    __m512i q = _mm512_maskz_add_epi32(num, _mm512_cvtps_epi32(r), vz);  // NaN lanes: 0, then + z below
    q = _mm512_mask_mov_epi32(q, (__mmask16)~num, vz);
    q = _mm512_min_epi32(_mm512_max_epi32(q, vmin), vmax);
    _mm_storeu_si128((__m128i*)(y + j), _mm512_cvtepi32_epi8(q));
  }
  for (; j < n; ++j) y[j] = (uint8_t)qm::quantize_int(x[j], s, z, qmin, qmax);
}

/* Dense float32 in, dense int8/uint8 out, one scale: the tensor as one flat run split over the
 * threads (a [n, h, w, 1] or channels-last view has rows of 1 or strided elements otherwise). */
bool quantize_flat(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* q, int32_t qmin, int32_t qmax,
                   int64_t n) {
  if (x->dtype != CT_F32 || (y->dtype != CT_U8 && y->dtype != CT_I8) || !use_avx512() || !dense(x) || !dense(y) ||
      !per_tensor(q, x->ndim))
    return false;
  const float s = scale_at(q, 0);
  const int32_t z = zp_at(q, 0);
  const float* xp = (const float*)x->data;
  uint8_t* yp = (uint8_t*)y->data;
  const int64_t block = 1 << 14;
  parallel_range((n + block - 1) / block, block, [&](int64_t b0, int64_t b1) {
    const int64_t i0 = b0 * block, i1 = std::min(n, b1 * block);
    quantize_bytes_avx512(xp + i0, yp + i0, i1 - i0, s, z, qmin, qmax);
  });
  return true;
}

/* DynamicQuantizeLinear's parameters from the data's range [lo, hi] (widened to hold 0), as ONNX
 * defines them: s = (hi - lo) / (qmax - qmin), z = saturate(rne(qmin - lo / s)), s = 1 for an
 * all-zero range. Stored in *scale and *zero_point; z is returned. */
int32_t dynamic_params(float lo, float hi, float* scale, uint8_t* zero_point) {
  const float s = hi > lo ? (hi - lo) / 255.0f : 1.0f;
  float zf = qm::rne(0.0f - lo / s);
  zf = zf < 0.0f ? 0.0f : (zf > 255.0f ? 255.0f : zf);
  *scale = s;
  *zero_point = (uint8_t)zf;
  return (int32_t)zf;
}

/* The range of n contiguous float32, widened to hold 0, 16 lanes at a time: min_ps(v, l) returns l
 * when v is NaN, as the scalar `v < l ? v : l` does, so NaN elements are skipped the same way. */
CT_AVX512 void range_avx512(const float* x, int64_t n, float* lo, float* hi) {
  __m512 l = _mm512_setzero_ps(), h = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 v = _mm512_loadu_ps(x + j);
    l = _mm512_min_ps(v, l);
    h = _mm512_max_ps(v, h);
  }
  if (j < n) {
    const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + j);  // masked-off lanes are 0: inside the range
    l = _mm512_min_ps(v, l);
    h = _mm512_max_ps(v, h);
  }
  *lo = _mm512_reduce_min_ps(l);
  *hi = _mm512_reduce_max_ps(h);
}

/* DynamicQuantizeLinear of dense float32 into dense uint8 (the activations of an int8 transformer
 * layer): the range pass and the quantize pass each one flat AVX-512 run split over the threads.
 * Returns false where it does not apply. */
bool dynamic_quantize_flat(const ct_tensor* y, const ct_tensor* x, int64_t n, float* scale, uint8_t* zero_point) {
  if (x->dtype != CT_F32 || !use_avx512() || !dense(x) || !dense(y)) return false;
  const float* xp = (const float*)x->data;
  const int64_t block = 1 << 14, blocks = (n + block - 1) / block;
  float los[256], his[256];
  for (int t = 0; t < 256; ++t) los[t] = his[t] = 0.0f;
  parallel_range(blocks, block, [&](int64_t b0, int64_t b1) {
    const int t = omp_get_thread_num() & 255;
    const int64_t i0 = b0 * block, i1 = std::min(n, b1 * block);
    range_avx512(xp + i0, i1 - i0, &los[t], &his[t]);
  });
  float lo = 0.0f, hi = 0.0f;
  for (int t = 0; t < 256; ++t) {
    lo = std::min(lo, los[t]);
    hi = std::max(hi, his[t]);
  }
  const int32_t z = dynamic_params(lo, hi, scale, zero_point);
  const float s = *scale;
  uint8_t* yp = (uint8_t*)y->data;
  parallel_range(blocks, block, [&](int64_t b0, int64_t b1) {
    const int64_t i0 = b0 * block, i1 = std::min(n, b1 * block);
    quantize_bytes_avx512(xp + i0, yp + i0, i1 - i0, s, z, 0, 255);
  });
  return true;
}

template <class TX> void quantize_x(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* q, int32_t qmin,
                                    int32_t qmax, const Rows& g) {
  switch (y->dtype) {
    case CT_I8: quantize_rows<TX, int8_t>(y, x, q, qmin, qmax, g); break;
    case CT_I32: quantize_rows<TX, int32_t>(y, x, q, qmin, qmax, g); break;
    default: quantize_rows<TX, uint8_t>(y, x, q, qmin, qmax, g); break;  // U8 and both fp8 codes
  }
}

// ------------------------------------------------------------------ dequantize (and requantize)
/* The float value of stored element v with parameters (s, z). */
template <class TQ> CT_INLINE float dequant_one(int qdt, TQ v, float s, int32_t z) {
  if (qm::is_fp8(qdt)) return qm::dequantize_fp8(qdt, (uint8_t)v) * s;
  return (float)((int64_t)v - z) * s;
}

template <class TQ, class TY> void dequantize_rows(const ct_tensor* y, const ct_tensor* xq, const ct_quant_map* q,
                                                   const Rows& g) {
  const int64_t xs = last_stride(xq), ys = last_stride(y);
  const int qdt = xq->dtype;
  for_rows(g, [&](const int64_t* coord) {
    const TQ* xr = (const TQ*)xq->data + row_offset(g, coord, xq->strides);
    TY* yr = (TY*)y->data + row_offset(g, coord, y->strides);
    ParamRow p = param_row(g, coord, q);
    for (int64_t j = 0; j < g.n; ++j) {
      const int64_t pi = p.base + (j / p.every) * p.step;
      store(yr + j * ys, (compute_t<TY>)dequant_one(qdt, xr[j * xs], scale_at(q, pi), zp_at(q, pi)));
    }
  });
}

template <class TQ> void dequantize_q(const ct_tensor* y, const ct_tensor* xq, const ct_quant_map* q, const Rows& g) {
  switch (y->dtype) {
    case CT_F32: dequantize_rows<TQ, float>(y, xq, q, g); break;
    case CT_F64: dequantize_rows<TQ, double>(y, xq, q, g); break;
    case CT_F16: dequantize_rows<TQ, f16>(y, xq, q, g); break;
    default: dequantize_rows<TQ, bf16>(y, xq, q, g); break;
  }
}

template <class TQ, class TY>
void requantize_rows(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* in, const ct_quant_map* out,
                     int32_t qmin, int32_t qmax, const Rows& g) {
  const int64_t xs = last_stride(x), ys = last_stride(y);
  const int xdt = x->dtype, ydt = y->dtype;
  const bool fp8 = qm::is_fp8(ydt);
  for_rows(g, [&](const int64_t* coord) {
    const TQ* xr = (const TQ*)x->data + row_offset(g, coord, x->strides);
    TY* yr = (TY*)y->data + row_offset(g, coord, y->strides);
    ParamRow pi = param_row(g, coord, in), po = param_row(g, coord, out);
    for (int64_t j = 0; j < g.n; ++j) {
      const int64_t a = pi.base + (j / pi.every) * pi.step, b = po.base + (j / po.every) * po.step;
      const float v = dequant_one(xdt, xr[j * xs], scale_at(in, a), zp_at(in, a));
      yr[j * ys] = fp8 ? (TY)qm::quantize_fp8(ydt, v / scale_at(out, b))
                       : (TY)qm::quantize_int(v, scale_at(out, b), zp_at(out, b), qmin, qmax);
    }
  });
}

template <class TQ> void requantize_x(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* in,
                                      const ct_quant_map* out, int32_t qmin, int32_t qmax, const Rows& g) {
  switch (y->dtype) {
    case CT_I8: requantize_rows<TQ, int8_t>(y, x, in, out, qmin, qmax, g); break;
    case CT_I32: requantize_rows<TQ, int32_t>(y, x, in, out, qmin, qmax, g); break;
    default: requantize_rows<TQ, uint8_t>(y, x, in, out, qmin, qmax, g); break;
  }
}

/* Calls f(T{}) with the storage type of a quantized dtype. */
template <class F> void dispatch_q(int dtype, F&& f) {
  switch (dtype) {
    case CT_I8: f(int8_t{}); break;
    case CT_I32: f(int32_t{}); break;
    default: f(uint8_t{}); break;  // U8 and the fp8 codes
  }
}

// ------------------------------------------------------------------ fake quantization
/* The row walk of quantize_rows for a function of the element and its scale / zero point. */
template <class Fn> void for_row_params(const Rows& g, const ct_quant_map* q, Fn&& fn) {
  for_rows(g, [&](const int64_t* coord) {
    ParamRow p = param_row(g, coord, q);
    for (int64_t j = 0; j < g.n; ++j) {
      const int64_t pi = p.base + (j / p.every) * p.step;
      fn(coord, j, scale_at(q, pi), zp_at(q, pi));
    }
  });
}

template <class T> void fake_quantize_t(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* q, int32_t qmin,
                                        int32_t qmax, const Rows& g) {
  const int64_t xs = last_stride(x), ys = last_stride(y);
  for_row_params(g, q, [&](const int64_t* coord, int64_t j, float s, int32_t z) {
    const T* xr = (const T*)x->data + row_offset(g, coord, x->strides);
    T* yr = (T*)y->data + row_offset(g, coord, y->strides);
    store(yr + j * ys, (compute_t<T>)qm::fake_quantize(load_f(xr + j * xs), s, z, qmin, qmax));
  });
}

template <class T> void fake_quantize_backward_t(const ct_tensor* dx, const ct_tensor* ds, const ct_tensor* gt,
                                                 const ct_tensor* x, const ct_quant_map* q, int32_t qmin, int32_t qmax,
                                                 const Rows& g) {
  const int64_t xs = last_stride(x), gs = last_stride(gt), dxs = last_stride(dx), dss = last_stride(ds);
  for_row_params(g, q, [&](const int64_t* coord, int64_t j, float s, int32_t z) {
    const T* xr = (const T*)x->data + row_offset(g, coord, x->strides);
    const T* gr = (const T*)gt->data + row_offset(g, coord, gt->strides);
    T* dxr = (T*)dx->data + row_offset(g, coord, dx->strides);
    float* dsr = (float*)ds->data + row_offset(g, coord, ds->strides);
    float d, e;
    qm::fake_quantize_grad(load_f(gr + j * gs), load_f(xr + j * xs), s, z, qmin, qmax, &d, &e);
    store(dxr + j * dxs, (compute_t<T>)d);
    dsr[j * dss] = e;
  });
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_quantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map, int32_t qmin,
                               int32_t qmax, int64_t stream) {
  static const char* fn = "ct_cpu_quantize";
  CT_TRY
  Msg m;
  int64_t n = 0;
  int st = qm::check_quantize(fn, y, x, map, qmin, qmax, &n, &m);
  if (st) return report(st, m);
  if (n == 0 || quantize_flat(y, x, map, qmin, qmax, n)) return CT_OK;
  Rows g = rows_of(x, n);
  dispatch_dtype(x->dtype, [&](auto tx) {
    using TX = decltype(tx);
    if constexpr (is_float_v<TX>) quantize_x<TX>(y, x, map, qmin, qmax, g);
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_dequantize(const ct_tensor* y, const ct_tensor* q, const ct_quant_map* map, int64_t stream) {
  static const char* fn = "ct_cpu_dequantize";
  CT_TRY
  Msg m;
  int64_t n = 0;
  int st = qm::check_dequantize(fn, y, q, map, &n, &m);
  if (st) return report(st, m);
  if (n == 0) return CT_OK;
  Rows g = rows_of(q, n);
  dispatch_q(q->dtype, [&](auto tq) { dequantize_q<decltype(tq)>(y, q, map, g); });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_requantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* in_map,
                                 const ct_quant_map* out_map, int32_t qmin, int32_t qmax, int64_t stream) {
  static const char* fn = "ct_cpu_requantize";
  CT_TRY
  Msg m;
  int64_t n = 0;
  int st = qm::check_requantize(fn, y, x, in_map, out_map, qmin, qmax, &n, &m);
  if (st) return report(st, m);
  if (n == 0) return CT_OK;
  Rows g = rows_of(x, n);
  dispatch_q(x->dtype, [&](auto tq) { requantize_x<decltype(tq)>(y, x, in_map, out_map, qmin, qmax, g); });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_dynamic_quantize(const ct_tensor* y, const ct_tensor* x, float* scale, uint8_t* zero_point,
                                       int64_t stream) {
  static const char* fn = "ct_cpu_dynamic_quantize";
  CT_TRY
  Msg m;
  int64_t n = 0;
  int st = qm::check_dynamic_quantize(fn, y, x, scale, zero_point, &n, &m);
  if (st) return report(st, m);
  if (n > 0 && dynamic_quantize_flat(y, x, n, scale, zero_point)) return CT_OK;
  // pass 1: the range, widened to hold 0 (NaN elements are skipped by the comparisons)
  Rows g = rows_of(x, n);
  const int64_t xs = last_stride(x);
  float lo = 0.0f, hi = 0.0f;
  if (n > 0) {
    const int nt = threads_for(n);
    float los[256], his[256];
    const int parts = nt < 256 ? nt : 256;
    const int64_t per = (g.rows + parts - 1) / parts;
#pragma omp parallel for num_threads(parts) if (parts > 1)
    for (int t = 0; t < parts; ++t) {
      float l = 0.0f, h = 0.0f;
      int64_t coord[CT_MAX_DIMS] = {0};
      for (int64_t r = t * per; r < std::min(g.rows, (t + 1) * per); ++r) {
        row_coords(g, r, coord);
        const float* xr = (const float*)x->data + row_offset(g, coord, x->strides);
        if (xs == 1) {  // contiguous rows (the usual activations): the same loop, vectorized
          for (int64_t j = 0; j < g.n; ++j) {
            const float v = xr[j];
            l = v < l ? v : l;
            h = v > h ? v : h;
          }
          continue;
        }
        for (int64_t j = 0; j < g.n; ++j) {
          const float v = xr[j * xs];
          l = v < l ? v : l;
          h = v > h ? v : h;
        }
      }
      los[t] = l;
      his[t] = h;
    }
    for (int t = 0; t < parts; ++t) {
      lo = std::min(lo, los[t]);
      hi = std::max(hi, his[t]);
    }
  }
  const int32_t z = dynamic_params(lo, hi, scale, zero_point);
  const float s = *scale;
  if (n == 0) return CT_OK;
  if (xs == 1 && last_stride(y) == 1) {
    // pass 2 over contiguous rows: quantize_int's arithmetic (rne(x / s) clamped to
    // [-z, 255 - z], NaN -> z) in float32 and int32 only, so that it vectorizes
    const float lo_q = (float)-z, hi_q = (float)(255 - z);
    for_rows(g, [&](const int64_t* coord) {
      const float* xr = (const float*)x->data + row_offset(g, coord, x->strides);
      uint8_t* yr = (uint8_t*)y->data + row_offset(g, coord, y->strides);
      for (int64_t j = 0; j < g.n; ++j) {
        float r = qm::rne(xr[j] / s);
        r = r == r ? r : 0.0f;
        r = r < lo_q ? lo_q : r;
        r = r > hi_q ? hi_q : r;
        yr[j] = (uint8_t)((int32_t)r + z);
      }
    });
    return CT_OK;
  }
  ct_quant_map map{};
  map.scale = scale;
  map.zero_point = &z;
  map.group = 1;
  map.axis = -1;
  quantize_rows<float, uint8_t>(y, x, &map, 0, 255, g);
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_fake_quantize(const ct_tensor* y, const ct_tensor* x, const ct_quant_map* map, int32_t qmin,
                                    int32_t qmax, int64_t stream) {
  static const char* fn = "ct_cpu_fake_quantize";
  CT_TRY
  Msg m;
  int64_t n = 0;
  int st = qm::check_fake_quantize(fn, y, x, map, qmin, qmax, &n, &m);
  if (st) return report(st, m);
  if (n == 0) return CT_OK;
  Rows g = rows_of(x, n);
  dispatch_dtype(x->dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (is_float_v<T>) fake_quantize_t<T>(y, x, map, qmin, qmax, g);
  });
  return CT_OK;
  CT_CATCH(fn)
}

extern "C" int ct_cpu_fake_quantize_backward(const ct_tensor* dx, const ct_tensor* ds, const ct_tensor* g,
                                             const ct_tensor* x, const ct_quant_map* map, int32_t qmin, int32_t qmax,
                                             int64_t stream) {
  static const char* fn = "ct_cpu_fake_quantize_backward";
  CT_TRY
  Msg m;
  int64_t n = 0;
  int st = qm::check_fake_quantize_backward(fn, dx, ds, g, x, map, qmin, qmax, &n, &m);
  if (st) return report(st, m);
  if (n == 0) return CT_OK;
  Rows rows = rows_of(x, n);
  dispatch_dtype(x->dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (is_float_v<T>) fake_quantize_backward_t<T>(dx, ds, g, x, map, qmin, qmax, rows);
  });
  return CT_OK;
  CT_CATCH(fn)
}
