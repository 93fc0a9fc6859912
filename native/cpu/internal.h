/*
 * Internal helpers shared by the CPU kernel files (never exported):
 *  - error reporting into the thread-local buffer behind ct_cpu_last_error();
 *  - argument validation (ndim, shapes, strides, pointers) with messages naming the argument;
 *  - element types: f16/bf16 storage types and their conversions to/from float32
 *    (round to nearest even, NaN preserved, overflow to inf, subnormals exact);
 *  - the strided N-d row iterator used by every elementwise op: it walks all but the last
 *    dimension with an odometer and hands the innermost dimension to a tight row kernel,
 *    splitting rows (or pieces of one long row) over OpenMP threads when the work is large;
 *  - run-time ISA selection (AVX-512 functions are compiled per function with CT_AVX512).
 */
#ifndef CORTADO_CPU_INTERNAL_H
#define CORTADO_CPU_INTERNAL_H

#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>

#include "cortado/common.h"
#include "cortado/cpu.h"
#include "shared.h"

/* Functions carrying this attribute are compiled for AVX-512 and only called after
 * ct::use_avx512() said yes. Nothing else in the library is compiled for AVX-512. */
#define CT_INLINE inline __attribute__((always_inline))
#define CT_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,prefer-vector-width=512")))

/* Every exported function body is wrapped in CT_TRY / CT_CATCH(name): no C++ exception
 * may cross the C boundary. */
#define CT_TRY try {
#define CT_CATCH(fn)                                                                    \
  }                                                                                     \
  catch (const std::bad_alloc&) {                                                       \
    return ct::fail(CT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);                \
  }                                                                                     \
  catch (...) {                                                                         \
    return ct::fail(CT_ERR_INVALID_ARG, "%s: unexpected internal exception", fn);       \
  }

namespace ct {

// ------------------------------------------------------------------ runtime (runtime.cpp)
/* Formats the message into the thread-local error buffer and returns `status`. */
int fail(int status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
/* AVX-512 F/BW/DQ/VL present on this CPU and not disabled by ct_cpu_set_avx512_enabled. */
bool use_avx512();
/* The CPU has AVX512_BF16 (vdpbf16ps) besides AVX-512 F/BW/DQ/VL (whether or not AVX-512 is enabled). */
bool cpu_has_avx512_bf16();
/* cpu_has_avx512_bf16() and AVX-512 enabled: the bfloat16 GEMM micro-kernel may run. */
bool use_avx512_bf16();
/* The CPU has AMX-TILE and AMX-BF16 and Linux granted the tile state (asked once); use_: and
 * AVX-512 enabled. Every thread that runs tile instructions calls amx_begin() / amx_end(). */
bool cpu_has_amx_bf16();
bool use_amx_bf16();
/* The same for AMX-INT8 (tdpbusd tiles, quant_gemm.cpp). */
bool cpu_has_amx_int8();
bool use_amx_int8();
/* Functions that also use AVX512_BF16 (vdpbf16ps); called only after use_avx512_bf16() said yes. */
#define CT_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,prefer-vector-width=512")))
#define CT_AMX __attribute__((target("amx-tile,amx-bf16,amx-int8,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
/* Configures all 8 tiles as 16 rows x 64 bytes (palette 1) on the calling thread. */
CT_AMX inline void amx_begin() {
  struct alignas(64) {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  } cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  // GCC 12 does not see that ldtilecfg reads the whole block and dropped the stores above when
  // this was inlined (every tile instruction then faulted): make them visible first.
  __asm__ volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}
CT_AMX inline void amx_end() { _tile_release(); }
/* Thread count for OpenMP regions (set by ct_cpu_set_num_threads; all cores by default). */
int threads();
/* The per-core L2 size (sysconf; 1 MiB when unknown), clamped to [256 KiB, 8 MiB]. */
int64_t l2_bytes();
/* Turns OpenBLAS threading off while an OpenMP region calls BLAS, restores it on exit. */
struct BlasSingleThreaded {
  int saved;
  BlasSingleThreaded();
  ~BlasSingleThreaded();
};

/* An uninitialized workspace of n elements from ct_cpu_alloc (blocks of 256 KiB and more come back
 * from its cache, so a large workspace costs no fresh page faults per call); freed when it goes out
 * of scope. Throws std::bad_alloc when the memory is not there. */
template <class T> class HostBuffer {
 public:
  explicit HostBuffer(int64_t n) : bytes_(n * (int64_t)sizeof(T)) {
    if (bytes_ == 0) return;  // an unused workspace allocates nothing (and counts no allocation)
    int64_t address = 0;
    if (ct_cpu_alloc(bytes_, &address) != CT_OK) throw std::bad_alloc();
    p_ = (T*)(intptr_t)address;
  }
  ~HostBuffer() {
    if (bytes_ != 0) ct_cpu_free((int64_t)(intptr_t)p_, bytes_);
  }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  T* data() const { return p_; }
  T& operator[](int64_t i) const { return p_[i]; }

 private:
  T* p_ = nullptr;
  int64_t bytes_ = 0;
};
using Workspace = HostBuffer<float>;

/* Work below this many elements runs on the calling thread (an OpenMP fork costs ~1-5 us). */
constexpr int64_t kParallelMin = 32768;

inline int threads_for(int64_t work) {
  if (work < kParallelMin) return 1;
  int t = threads();
  int64_t cap = work / (kParallelMin / 2);
  return cap < t ? (int)(cap < 1 ? 1 : cap) : t;
}

// ------------------------------------------------------------------ element types
struct f16 { uint16_t bits; };
struct bf16 { uint16_t bits; };

CT_INLINE uint32_t f32_bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
CT_INLINE float bits_f32(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }

CT_INLINE float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
/* F16C's vcvtps2ph with imm 0: round to nearest even, overflow -> inf, NaN stays NaN. */
CT_INLINE uint16_t f32_to_f16(float x) { return (uint16_t)_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT); }

CT_INLINE float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }
CT_INLINE uint16_t f32_to_bf16(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                            // RNE
  return (uint16_t)(u >> 16);
}

/* double -> float rounding to odd: a later float -> f16/bf16 rounding to nearest even then
 * gives the correctly rounded double -> f16/bf16 result (no double-rounding error). */
inline float f64_to_f32_odd(double d) {
  float f = (float)d;
  if ((double)f != d && d == d) {
    uint32_t u = f32_bits(f);
    if ((u & 1u) == 0) u += (std::fabs(d) > std::fabs((double)f)) ? 1 : (uint32_t)-1;
    f = bits_f32(u);
  }
  return f;
}

/* The arithmetic type an element type is computed in. */
template <class T> struct compute { using type = T; };
template <> struct compute<f16> { using type = float; };
template <> struct compute<bf16> { using type = float; };
template <class T> using compute_t = typename compute<T>::type;

template <class T> CT_INLINE compute_t<T> load(const T* p) { return *p; }
template <> CT_INLINE float load<f16>(const f16* p) { return f16_to_f32(p->bits); }
template <> CT_INLINE float load<bf16>(const bf16* p) { return bf16_to_f32(p->bits); }

template <class T> CT_INLINE void store(T* p, compute_t<T> v) { *p = v; }
template <> CT_INLINE void store<f16>(f16* p, float v) { p->bits = f32_to_f16(v); }
template <> CT_INLINE void store<bf16>(bf16* p, float v) { p->bits = f32_to_bf16(v); }

template <class T> constexpr bool is_float_v =
    std::is_floating_point_v<T> || std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

const char* dtype_name(int dtype);

/* Calls f(T{}) with T the storage type of a numeric dtype (BOOL maps to uint8_t). Returns
 * false for unknown codes and I4. */
template <class F> inline bool dispatch_dtype(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(float{}); return true;
    case CT_F64: f(double{}); return true;
    case CT_F16: f(f16{}); return true;
    case CT_BF16: f(bf16{}); return true;
    case CT_I8: f(int8_t{}); return true;
    case CT_U8: f(uint8_t{}); return true;
    case CT_I32: f(int32_t{}); return true;
    case CT_I64: f(int64_t{}); return true;
    case CT_BOOL: f(uint8_t{}); return true;
    default: return false;
  }
}

/* CT_OK for a floating-point dtype (F32, F64, F16, BF16), else CT_ERR_UNSUPPORTED with a message
 * naming fn and the dtype. */
inline int check_float_dtype(const char* fn, int dtype) {
  if (dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16) return CT_OK;
  return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64, F16, BF16 only)", fn,
              dtype_name(dtype), dtype);
}

/* Calls f(T{}) with T the storage type of a floating-point dtype (F32, F64, F16, BF16); returns
 * false for the other codes. */
template <class F> inline bool dispatch_float(int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(float{}); return true;
    case CT_F64: f(double{}); return true;
    case CT_F16: f(f16{}); return true;
    case CT_BF16: f(bf16{}); return true;
    default: return false;
  }
}

/* bfloat16 GEMM (gemm_bf16.cpp): the kernel to use now (CT_BF16_GEMM_WIDEN, _DPBF16 or _AMX), and
 * the DPBF16 / AMX kernels on ct_cpu_gemm's arguments, already validated (m, n, k, batch > 0). */
int bf16_gemm_kernel();
void gemm_bf16(int kernel, bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k, float alpha,
               const bf16* a, int64_t lda, int64_t batch_stride_a, const bf16* b, int64_t ldb, int64_t batch_stride_b,
               float beta, bf16* c, int64_t ldc, int64_t batch_stride_c);

// ------------------------------------------------------------------ validation
/* Checks ndim, shape and (optional) stride arrays; sets *numel. Returns CT_OK or an error. */
int check_shape(const char* fn, int ndim, const int64_t* shape, int64_t* numel);
int check_strides(const char* fn, const char* name, int ndim, const int64_t* strides);
inline int check_ptr(const char* fn, const char* name, const void* p) {
  return p ? CT_OK : fail(CT_ERR_INVALID_ARG, "%s: %s is NULL", fn, name);
}

// ------------------------------------------------------------------ strided N-d iteration
/* Operand k has base byte pointer base[k], element size esize[k] and ndim strides (elements).
 * fn(n, p, s) processes one row piece: n elements, byte pointers p[k], inner strides s[k]
 * (elements). Rows are the innermost dimension; the outer dimensions are walked with an
 * odometer, so one element costs the row kernel's work plus amortized O(1). */
template <int K, class Fn>
void for_each_row(int ndim, const int64_t* shape, const int64_t* const* strides,
                  char* const* base, const int64_t* esize, int64_t numel, Fn&& fn) {
  if (ndim == 0) {
    char* p[K];
    int64_t s[K];
    for (int k = 0; k < K; ++k) { p[k] = base[k]; s[k] = 0; }
    fn((int64_t)1, p, s);
    return;
  }
  const int last = ndim - 1;
  const int64_t n = shape[last];
  const int64_t rows = numel / n;
  int64_t s[K];
  for (int k = 0; k < K; ++k) s[k] = strides[k][last];

  const int nt = threads_for(numel);
  // Pieces per row: split long rows when there are too few rows to feed the threads.
  int64_t pieces = 1;
  if (nt > 1 && rows < 4 * nt) {
    pieces = (4 * nt + rows - 1) / rows;
    int64_t maxp = n / 4096 > 1 ? n / 4096 : 1;
    if (pieces > maxp) pieces = maxp;
  }
  const int64_t chunk = (n + pieces - 1) / pieces;
  const int64_t items = rows * pieces;

  auto run = [&](int64_t i0, int64_t i1) {
    if (i0 >= i1) return;
    int64_t coord[CT_MAX_DIMS];
    int64_t row = i0 / pieces, piece = i0 % pieces;
    char* rp[K];  // start of the current row for each operand
    for (int k = 0; k < K; ++k) rp[k] = base[k];
    for (int d = last - 1; d >= 0; --d) {
      coord[d] = row % shape[d];
      row /= shape[d];
      for (int k = 0; k < K; ++k) rp[k] += coord[d] * strides[k][d] * esize[k];
    }
    for (int64_t i = i0; i < i1; ++i) {
      int64_t lo = piece * chunk, hi = lo + chunk < n ? lo + chunk : n;
      char* p[K];
      for (int k = 0; k < K; ++k) p[k] = rp[k] + lo * s[k] * esize[k];
      if (hi > lo) fn(hi - lo, p, s);
      if (++piece == pieces) {
        piece = 0;
        for (int d = last - 1; d >= 0; --d) {  // odometer step to the next row
          for (int k = 0; k < K; ++k) rp[k] += strides[k][d] * esize[k];
          if (++coord[d] < shape[d]) break;
          for (int k = 0; k < K; ++k) rp[k] -= shape[d] * strides[k][d] * esize[k];
          coord[d] = 0;
        }
      }
    }
  };

  if (nt <= 1 || items < 2) {
    run(0, items);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t per = items / T, rem = items % T;
    int64_t i0 = t * per + (t < rem ? t : rem);
    run(i0, i0 + per + (t < rem ? 1 : 0));
  }
}

/* Splits [0, n) into contiguous per-thread ranges (serial below kParallelMin). */
template <class Fn> void parallel_range(int64_t n, int64_t work_per_item, Fn&& fn) {
  int nt = threads_for(n * work_per_item);
  if (nt > n) nt = (int)(n > 0 ? n : 1);
  if (nt <= 1) { fn((int64_t)0, n); return; }
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t per = n / T, rem = n % T;
    int64_t i0 = t * per + (t < rem ? t : rem);
    fn(i0, i0 + per + (t < rem ? 1 : 0));
  }
}

}  // namespace ct

#endif
