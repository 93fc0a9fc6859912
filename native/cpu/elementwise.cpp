/*
 * Elementwise family: unary maps, binary maps (arithmetic, comparisons, logic), where,
 * strided copy with dtype conversion, fill, int4 pack/unpack.
 *
 * Algorithm: ct::for_each_row walks the output's outer dimensions (odometer) and calls a row
 * kernel on the innermost dimension. Row kernels special-case the stride patterns that
 * matter: all operands contiguous (stride 1), and one input broadcast along the row
 * (stride 0, a scalar held in a register); anything else is a plain strided loop. Contiguous
 * float32 rows of the hot ops run in an AVX-512 build of the same loop when the CPU has it.
 * f16/bf16 are computed in float32 and rounded to nearest even on store; integer arithmetic
 * wraps (two's complement), integer division truncates and x / 0 == 0.
 *
 * Cost: one op (a few FLOPs; ~15-40 for exp/tanh/erf-based ones) per element; bytes moved
 * (n_inputs + 1) * n * sizeof(dtype): memory bound except for the transcendental ops.
 */
#include <cstdlib>
#include <limits>

#include "cortado/elementwise.h"
#include "internal.h"
#include "microkernel.h"
#include "scalar_ops.h"

namespace ct {
namespace {

template <class C> using uint_of = std::make_unsigned_t<C>;

// The op formulas are ct::sop functors (native/shared/scalar_ops.h, shared with the CUDA
// kernels); the dispatch switches below are expansions of ops/unary.def and ops/binary.def.

// ------------------------------------------------------------------ generic row loops
/* Reference loop: any strides. */
template <class TO, class T, class Op>
CT_INLINE void binary_strided(int64_t n, TO* o, const T* a, const T* b, int64_t so, int64_t sa,
                              int64_t sb, Op op) {
  for (int64_t i = 0; i < n; ++i) store<TO>(o + i * so, (compute_t<TO>)op(load(a + i * sa), load(b + i * sb)));
}

/* The fast loop bodies, instantiated once for the baseline and once for AVX-512. Stride
 * patterns: (1,1,1) contiguous; (1,1,0) b broadcast; (1,0,1) a broadcast. */
#define CT_BINARY_FAST_BODY                                                              \
  if (sa == 1 && sb == 1) {                                                              \
    for (int64_t i = 0; i < n; ++i) store<TO>(o + i, (compute_t<TO>)op(load(a + i), load(b + i))); \
  } else if (sa == 1) {                                                                  \
    const auto y = load(b);                                                              \
    for (int64_t i = 0; i < n; ++i) store<TO>(o + i, (compute_t<TO>)op(load(a + i), y)); \
  } else {                                                                               \
    const auto x = load(a);                                                              \
    for (int64_t i = 0; i < n; ++i) store<TO>(o + i, (compute_t<TO>)op(x, load(b + i))); \
  }

template <class TO, class T, class Op>
void binary_fast(int64_t n, TO* o, const T* a, const T* b, int64_t sa, int64_t sb, Op op) {
  CT_BINARY_FAST_BODY
}
template <class TO, class T, class Op>
CT_AVX512 void binary_fast_avx512(int64_t n, TO* o, const T* a, const T* b, int64_t sa, int64_t sb, Op op) {
  CT_BINARY_FAST_BODY
}

template <class TO, class T, class Op>
void binary_row(int64_t n, char* const* p, const int64_t* s) {
  TO* o = (TO*)p[0];
  const T* a = (const T*)p[1];
  const T* b = (const T*)p[2];
  const bool fast = s[0] == 1 && ((s[1] == 1 && (s[2] == 1 || s[2] == 0)) || (s[1] == 0 && s[2] == 1));
  if (!fast) return binary_strided<TO, T>(n, o, a, b, s[0], s[1], s[2], Op{});
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (n >= 64 && use_avx512()) return binary_fast_avx512<TO, T>(n, o, a, b, s[1], s[2], Op{});
  }
  binary_fast<TO, T>(n, o, a, b, s[1], s[2], Op{});
}

template <class T, class Op, bool Cmp>
void run_binary(int ndim, const int64_t* shape, int64_t numel, void* out, const int64_t* os,
                const void* a, const int64_t* as, const void* b, const int64_t* bs) {
  using TO = std::conditional_t<Cmp, uint8_t, T>;
  const int64_t* st[3] = {os, as, bs};
  char* base[3] = {(char*)out, (char*)a, (char*)b};
  const int64_t es[3] = {(int64_t)sizeof(TO), (int64_t)sizeof(T), (int64_t)sizeof(T)};
  for_each_row<3>(ndim, shape, st, base, es, numel, binary_row<TO, T, Op>);
}

// ------------------------------------------------------------------ unary row loops
#define CT_UNARY_FAST_BODY                                                               \
  if (sx == 1) { for (int64_t i = 0; i < n; ++i) store<T>(o + i, op(load(x + i))); }     \
  else { const T y = *x; const auto v = op(load(&y)); for (int64_t i = 0; i < n; ++i) store<T>(o + i, v); }

template <class T, class Op> void unary_fast(int64_t n, T* o, const T* x, int64_t sx, Op op) { CT_UNARY_FAST_BODY }
template <class T, class Op> CT_AVX512 void unary_fast_avx512(int64_t n, T* o, const T* x, int64_t sx, Op op) { CT_UNARY_FAST_BODY }

template <class T, class Op> void run_unary(int ndim, const int64_t* shape, int64_t numel, void* out,
                                           const int64_t* os, const void* x, const int64_t* xs, Op op) {
  const int64_t* st[2] = {os, xs};
  char* base[2] = {(char*)out, (char*)x};
  const int64_t es[2] = {(int64_t)sizeof(T), (int64_t)sizeof(T)};
  for_each_row<2>(ndim, shape, st, base, es, numel, [op](int64_t n, char* const* p, const int64_t* s) {
    T* o = (T*)p[0];
    const T* x = (const T*)p[1];
    if (s[0] == 1 && (s[1] == 1 || s[1] == 0)) {
      if constexpr (std::is_same_v<T, float>)
        if (n >= 64 && use_avx512()) return unary_fast_avx512<T>(n, o, x, s[1], op);
      return unary_fast<T>(n, o, x, s[1], op);
    }
    for (int64_t i = 0; i < n; ++i) store<T>(o + i * s[0], op(load(x + i * s[1])));  // reference loop
  });
}

/* One unary op on dtype T: the functor in the compute type when the op's domain admits T. */
template <class T, template <class> class F, sop::UnaryDomain D>
int unary_op(int ndim, const int64_t* shape, int64_t numel, void* out, const int64_t* os, const void* x,
             const int64_t* xs, double p0, double p1) {
  using C = compute_t<T>;
  if constexpr (D == sop::FLOAT ? is_float_v<T> : D == sop::NUMERIC) {
    run_unary<T>(ndim, shape, numel, out, os, x, xs, F<C>::make(p0, p1));
    return CT_OK;
  } else {
    return CT_ERR_UNSUPPORTED;
  }
}

template <class T>
int unary_typed(int op, int ndim, const int64_t* shape, int64_t numel, void* out, const int64_t* os,
                const void* x, const int64_t* xs, double p0, double p1) {
  switch (op) {
#define CT_UNARY_OP(ident, name, domain, functor, grad) \
  case CT_UNARY_##ident: return unary_op<T, sop::functor, sop::domain>(ndim, shape, numel, out, os, x, xs, p0, p1);
#include "cortado/ops/unary.def"
#undef CT_UNARY_OP
    default: return CT_ERR_UNSUPPORTED;
  }
}

/* BOOL-domain unary ops on bytes. */
template <template <class> class F, sop::UnaryDomain D>
int unary_bool_op(int ndim, const int64_t* shape, int64_t numel, void* out, const int64_t* os, const void* x,
                  const int64_t* xs) {
  if constexpr (D == sop::BOOL) {
    run_unary<uint8_t>(ndim, shape, numel, out, os, x, xs, F<uint8_t>::make(0, 0));
    return CT_OK;
  } else {
    return CT_ERR_UNSUPPORTED;
  }
}

int unary_bool(int op, int ndim, const int64_t* shape, int64_t numel, void* out, const int64_t* os, const void* x,
               const int64_t* xs) {
  switch (op) {
#define CT_UNARY_OP(ident, name, domain, functor, grad) \
  case CT_UNARY_##ident: return unary_bool_op<sop::functor, sop::domain>(ndim, shape, numel, out, os, x, xs);
#include "cortado/ops/unary.def"
#undef CT_UNARY_OP
    default: return CT_ERR_UNSUPPORTED;
  }
}

/* One binary op on dtype T (BOOL arrives as uint8_t with is_bool set), by the op's KIND. */
template <class T, template <class> class F, sop::BinaryKind K>
void binary_op(bool is_bool, int ndim, const int64_t* shape, int64_t numel, void* out, const int64_t* os,
               const void* a, const int64_t* as, const void* b, const int64_t* bs) {
  using C = compute_t<T>;
  if constexpr (K == sop::ARITHMETIC) {
    if (!is_bool) run_binary<T, F<C>, false>(ndim, shape, numel, out, os, a, as, b, bs);
  } else if constexpr (K == sop::COMPARISON) {
    run_binary<T, F<C>, true>(ndim, shape, numel, out, os, a, as, b, bs);
  } else if constexpr (K == sop::LOGICAL) {
    if constexpr (std::is_same_v<T, uint8_t>)
      if (is_bool) run_binary<T, F<C>, true>(ndim, shape, numel, out, os, a, as, b, bs);
  } else {
    if constexpr (is_float_v<T>) run_binary<T, sop::GradOf<F, C>, false>(ndim, shape, numel, out, os, a, as, b, bs);
  }
}

// ------------------------------------------------------------------ conversions (copy/fill)
struct boolean { uint8_t v; };  // CT_BOOL as a distinct type for conversions

template <class D, class S> CT_INLINE D convert(S s) {
  if constexpr (std::is_same_v<S, boolean>) {
    return convert<D>((uint8_t)(s.v != 0));
  } else if constexpr (std::is_same_v<S, f16> || std::is_same_v<S, bf16>) {
    return convert<D>(load(&s));
  } else if constexpr (std::is_same_v<D, boolean>) {
    return boolean{(uint8_t)(s != 0)};
  } else if constexpr (std::is_same_v<D, f16> || std::is_same_v<D, bf16>) {
    float f;
    if constexpr (std::is_same_v<S, float> || std::is_same_v<S, int8_t> || std::is_same_v<S, uint8_t>) f = (float)s;
    else f = f64_to_f32_odd((double)s);  // exact or round-to-odd: no double rounding
    D d;
    store<D>(&d, f);
    return d;
  } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<S>) {
    return (D)(int64_t)s;  // truncation toward zero; out of range: unspecified, no trap
  } else {
    return (D)s;
  }
}

template <class D, class S> void copy_row(int64_t n, char* const* p, const int64_t* s) {
  D* d = (D*)p[0];
  const S* x = (const S*)p[1];
  if constexpr (std::is_same_v<D, S>) {
    if (s[0] == 1 && s[1] == 1) { std::memcpy(d, x, (size_t)n * sizeof(D)); return; }
  }
  if (s[0] == 1 && s[1] == 1) { for (int64_t i = 0; i < n; ++i) d[i] = convert<D>(x[i]); return; }
  if (s[0] == 1 && s[1] == 0) { const D v = convert<D>(*x); for (int64_t i = 0; i < n; ++i) d[i] = v; return; }
  for (int64_t i = 0; i < n; ++i) d[i * s[0]] = convert<D>(x[i * s[1]]);  // reference loop
}

// ------------------------------------------------------------------ blocked transposing copy
/* A copy whose innermost contiguous destination dimension `a` is strided in the source while
 * another dimension `b` is contiguous there (x.transpose(i, j).contiguous(), NCHW <-> NHWC).
 * Walking the destination's rows would read one source cache line, and often one page, per
 * element. Instead each (a, b) plane is copied in kTB x kTB blocks (256 KiB in + 256 KiB out for
 * 4-byte elements: L2), so reads and writes both move whole cache lines in runs of 1 KiB, and
 * within a block 16 x 16 tiles (1 KiB each way, L1). 4-byte elements with
 * AVX-512 go through 16 x 16 register transposes (16 loads, 64 shuffles, 16 stores), with
 * non-temporal stores when the destination exceeds the caches; other sizes and block edges through
 * a scalar loop inside the block. Cost: no FLOPs; numel * esize bytes read and written once.
 * Measured (BandwidthBenchmark.transposedCopy, [16384, 1024] float32 transposed, one Zen 5 core):
 * 121 ms row by row (1.1 GB/s, 4% of a copy), 12.9 ms in 64 x 64 blocks, 7.7 ms with streamed
 * stores, 6.6 ms in 256 x 256 blocks (7.7 again with 64 x 64 in the same session); software
 * prefetch of the next block's lines gained nothing. */
constexpr int64_t kTB = 256;

/* d[j * dsb + i] = s[i * ssa + j] for i < na, j < nb. */
template <class T> void transpose_block_scalar(int64_t na, int64_t nb, T* d, int64_t dsb, const T* s, int64_t ssa) {
  for (int64_t j = 0; j < nb; ++j)
    for (int64_t i = 0; i < na; ++i) d[j * dsb + i] = s[i * ssa + j];
}

template <bool NT>
CT_AVX512 void transpose_block_4byte_avx512(int64_t na, int64_t nb, uint32_t* d, int64_t dsb, const uint32_t* s,
                                            int64_t ssa) {
  int64_t i = 0;
  for (; i + 16 <= na; i += 16) {
    int64_t j = 0;
    for (; j + 16 <= nb; j += 16)
      mk::transpose16x16<NT>((float*)(d + j * dsb + i), dsb, (const float*)(s + i * ssa + j), ssa);
    if (j < nb) transpose_block_scalar<uint32_t>(16, nb - j, d + j * dsb + i, dsb, s + i * ssa + j, ssa);
  }
  if (i < na) transpose_block_scalar<uint32_t>(na - i, nb, d + i, dsb, s + i * ssa, ssa);
}

/* The copy of ct_cpu_copy's same-representation case when it has the shape described above;
 * false (nothing done) otherwise. */
bool copy_transposed(int ndim, const int64_t* shape, char* dst, const int64_t* ds, const char* src, const int64_t* ss,
                     int64_t es, int64_t numel) {
  int a = -1, b = -1;
  for (int k = ndim - 1; k >= 0 && a < 0; --k)
    if (shape[k] > 1 && ds[k] == 1) a = k;
  if (a < 0 || ss[a] == 1) return false;
  for (int k = ndim - 1; k >= 0 && b < 0; --k)
    if (k != a && shape[k] > 1 && ss[k] == 1) b = k;
  if (b < 0 || shape[a] < 16 || shape[b] < 16) return false;
  int outer[CT_MAX_DIMS], no = 0;
  for (int k = 0; k < ndim; ++k)
    if (k != a && k != b) outer[no++] = k;
  const int64_t na = shape[a], nb = shape[b], dsb = ds[b], ssa = ss[a];
  const int64_t ba = (na + kTB - 1) / kTB, bb = (nb + kTB - 1) / kTB;
  const int64_t planes = numel / (na * nb);
  const bool avx512 = es == 4 && use_avx512();
  // Non-temporal stores when the destination is larger than the caches (its lines are written whole,
  // never read for ownership) and every 16-element store is 64-byte aligned.
  bool nt = avx512 && numel * es >= ((int64_t)32 << 20) && ((uintptr_t)dst & 63) == 0 && dsb % 16 == 0;
  for (int q = 0; q < no; ++q) nt = nt && ds[outer[q]] % 16 == 0;
  parallel_range(planes * ba * bb, kTB * kTB, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      int64_t plane = it / (ba * bb), blk = it % (ba * bb);
      const int64_t ia = (blk / bb) * kTB, ib = (blk % bb) * kTB;
      const int64_t ma = na - ia < kTB ? na - ia : kTB, mb = nb - ib < kTB ? nb - ib : kTB;
      int64_t doff = ib * dsb + ia, soff = ia * ssa + ib;
      for (int q = no - 1; q >= 0; --q) {
        const int k = outer[q];
        const int64_t c = plane % shape[k];
        plane /= shape[k];
        doff += c * ds[k];
        soff += c * ss[k];
      }
      switch (es) {
        case 1: transpose_block_scalar<uint8_t>(ma, mb, (uint8_t*)dst + doff, dsb, (const uint8_t*)src + soff, ssa); break;
        case 2: transpose_block_scalar<uint16_t>(ma, mb, (uint16_t*)dst + doff, dsb, (const uint16_t*)src + soff, ssa); break;
        case 4:
          if (nt)
            transpose_block_4byte_avx512<true>(ma, mb, (uint32_t*)dst + doff, dsb, (const uint32_t*)src + soff, ssa);
          else if (avx512)
            transpose_block_4byte_avx512<false>(ma, mb, (uint32_t*)dst + doff, dsb, (const uint32_t*)src + soff, ssa);
          else
            transpose_block_scalar<uint32_t>(ma, mb, (uint32_t*)dst + doff, dsb, (const uint32_t*)src + soff, ssa);
          break;
        default: transpose_block_scalar<uint64_t>(ma, mb, (uint64_t*)dst + doff, dsb, (const uint64_t*)src + soff, ssa); break;
      }
    }
    if (nt) _mm_sfence();
  });
  return true;
}

template <class F> bool dispatch_conv(int dtype, F&& f) {
  if (dtype == CT_BOOL) { f(boolean{}); return true; }
  return dispatch_dtype(dtype, f);
}

const char* unary_name(int op) { return op >= 0 && op < CT_UNARY_COUNT ? sop::kUnaryName[op] : "unknown"; }
const char* binary_name(int op) { return op >= 0 && op < CT_BINARY_COUNT ? sop::kBinaryName[op] : "unknown"; }

bool numeric(int dtype) { return dtype >= CT_F32 && dtype <= CT_I64; }

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" {

int ct_cpu_unary(int op, int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides,
                 const void* x, const int64_t* x_strides, double p0, double p1, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_unary";
  CT_TRY
  if (op < 0 || op >= CT_UNARY_COUNT) return fail(CT_ERR_INVALID_ARG, "%s: unknown op code %d", fn, op);
  const bool is_fp = dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16;
  const bool is_int = dtype == CT_I8 || dtype == CT_U8 || dtype == CT_I32 || dtype == CT_I64;
  const sop::UnaryDomain dom = sop::kUnaryDomain[op];
  const bool ok = dom == sop::BOOL ? dtype == CT_BOOL : dom == sop::FLOAT ? is_fp : (is_fp || is_int);
  if (!ok)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %s is not defined for dtype %s (%d)", fn, unary_name(op),
                dtype_name(dtype), dtype);
  int64_t numel;
  int st;
  if ((st = check_shape(fn, ndim, shape, &numel)) || (st = check_strides(fn, "out_strides", ndim, out_strides)) ||
      (st = check_strides(fn, "x_strides", ndim, x_strides)))
    return st;
  if (numel == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out)) || (st = check_ptr(fn, "x", x))) return st;
  if (dtype == CT_BOOL) return unary_bool(op, ndim, shape, numel, out, out_strides, x, x_strides);
  int r = CT_OK;
  dispatch_dtype(dtype, [&](auto t) {
    r = unary_typed<decltype(t)>(op, ndim, shape, numel, out, out_strides, x, x_strides, p0, p1);
  });
  return r;
  CT_CATCH(fn)
}

int ct_cpu_binary(int op, int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides,
                  const void* a, const int64_t* a_strides, const void* b, const int64_t* b_strides, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_binary";
  CT_TRY
  if (op < 0 || op >= CT_BINARY_COUNT) return fail(CT_ERR_INVALID_ARG, "%s: unknown op code %d", fn, op);
  const sop::BinaryKind kind = sop::kBinaryKind[op];
  const bool fp = dtype == CT_F32 || dtype == CT_F64 || dtype == CT_F16 || dtype == CT_BF16;
  const bool ok = kind == sop::LOGICAL           ? dtype == CT_BOOL
                  : kind == sop::ACTIVATION_GRAD ? fp
                  : kind == sop::COMPARISON      ? (numeric(dtype) || dtype == CT_BOOL)
                                                 : numeric(dtype);
  if (!ok)
    return fail(CT_ERR_UNSUPPORTED, "%s: op %s is not defined for dtype %s (%d)", fn, binary_name(op),
                dtype_name(dtype), dtype);
  int64_t numel;
  int st;
  if ((st = check_shape(fn, ndim, shape, &numel)) || (st = check_strides(fn, "out_strides", ndim, out_strides)) ||
      (st = check_strides(fn, "a_strides", ndim, a_strides)) || (st = check_strides(fn, "b_strides", ndim, b_strides)))
    return st;
  if (numel == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out)) || (st = check_ptr(fn, "a", a)) || (st = check_ptr(fn, "b", b))) return st;
  const bool is_bool = dtype == CT_BOOL;
  dispatch_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    switch (op) {
#define CT_BINARY_OP(ident, name, kind, functor)                                                            \
  case CT_BINARY_##ident:                                                                                  \
    binary_op<T, sop::functor, sop::kind>(is_bool, ndim, shape, numel, out, out_strides, a, a_strides, b, \
                                          b_strides);                                                      \
    break;
#include "cortado/ops/binary.def"
#undef CT_BINARY_OP
    }
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_where(int dtype, int ndim, const int64_t* shape, void* out, const int64_t* out_strides,
                 const uint8_t* cond, const int64_t* cond_strides, const void* a, const int64_t* a_strides,
                 const void* b, const int64_t* b_strides, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_where";
  CT_TRY
  const int64_t es = dtype_size(dtype);
  if (es == 0 || dtype == CT_I4) return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported", fn, dtype_name(dtype), dtype);
  int64_t numel;
  int st;
  if ((st = check_shape(fn, ndim, shape, &numel)) || (st = check_strides(fn, "out_strides", ndim, out_strides)) ||
      (st = check_strides(fn, "cond_strides", ndim, cond_strides)) ||
      (st = check_strides(fn, "a_strides", ndim, a_strides)) || (st = check_strides(fn, "b_strides", ndim, b_strides)))
    return st;
  if (numel == 0) return CT_OK;
  if ((st = check_ptr(fn, "out", out)) || (st = check_ptr(fn, "cond", cond)) || (st = check_ptr(fn, "a", a)) ||
      (st = check_ptr(fn, "b", b)))
    return st;
  auto go = [&](auto t) {
    using T = decltype(t);  // same-size unsigned integer: where only moves bits
    const int64_t* sts[4] = {out_strides, cond_strides, a_strides, b_strides};
    char* base[4] = {(char*)out, (char*)cond, (char*)a, (char*)b};
    const int64_t esz[4] = {es, 1, es, es};
    for_each_row<4>(ndim, shape, sts, base, esz, numel, [](int64_t n, char* const* p, const int64_t* s) {
      T* o = (T*)p[0];
      const uint8_t* c = (const uint8_t*)p[1];
      const T* x = (const T*)p[2];
      const T* y = (const T*)p[3];
      if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {
        for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? x[i] : y[i];
      } else {
        for (int64_t i = 0; i < n; ++i) o[i * s[0]] = c[i * s[1]] ? x[i * s[2]] : y[i * s[3]];
      }
    });
  };
  switch (es) {
    case 1: go(uint8_t{}); break;
    case 2: go(uint16_t{}); break;
    case 4: go(uint32_t{}); break;
    default: go(uint64_t{}); break;
  }
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_copy(int dst_dtype, int src_dtype, int ndim, const int64_t* shape, void* dst, const int64_t* dst_strides,
                const void* src, const int64_t* src_strides, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_copy";
  CT_TRY
  if (dst_dtype < CT_F32 || dst_dtype > CT_BOOL)
    return fail(CT_ERR_UNSUPPORTED, "%s: dst_dtype %s (%d) is not supported", fn, dtype_name(dst_dtype), dst_dtype);
  if (src_dtype < CT_F32 || src_dtype > CT_BOOL)
    return fail(CT_ERR_UNSUPPORTED, "%s: src_dtype %s (%d) is not supported", fn, dtype_name(src_dtype), src_dtype);
  int64_t numel;
  int st;
  if ((st = check_shape(fn, ndim, shape, &numel)) || (st = check_strides(fn, "dst_strides", ndim, dst_strides)) ||
      (st = check_strides(fn, "src_strides", ndim, src_strides)))
    return st;
  if (numel == 0) return CT_OK;
  if ((st = check_ptr(fn, "dst", dst)) || (st = check_ptr(fn, "src", src))) return st;
  const int64_t* sts[2] = {dst_strides, src_strides};
  char* base[2] = {(char*)dst, (char*)src};
  const int64_t es[2] = {dtype_size(dst_dtype), dtype_size(src_dtype)};
  if (dst_dtype == src_dtype || (dtype_size(dst_dtype) == 1 && dst_dtype != CT_BOOL && src_dtype != CT_BOOL &&
                                 dtype_size(src_dtype) == 1)) {
    // Same representation (or I8 <-> U8, a bit cast): move bits by element size.
    if (copy_transposed(ndim, shape, (char*)dst, dst_strides, (const char*)src, src_strides, es[0], numel))
      return CT_OK;
    switch (es[0]) {
      case 1: for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<uint8_t, uint8_t>); break;
      case 2: for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<uint16_t, uint16_t>); break;
      case 4: for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<uint32_t, uint32_t>); break;
      default: for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<uint64_t, uint64_t>); break;
    }
    return CT_OK;
  }
  dispatch_conv(dst_dtype, [&](auto d) {
    dispatch_conv(src_dtype, [&](auto s) {
      for_each_row<2>(ndim, shape, sts, base, es, numel, copy_row<decltype(d), decltype(s)>);
    });
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_fill(int dtype, int64_t n, void* out, double value, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_fill";
  CT_TRY
  if (dtype_size(dtype) == 0) return fail(CT_ERR_UNSUPPORTED, "%s: unknown dtype code %d", fn, dtype);
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n=%lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "out", out))) return st;
  if (dtype == CT_I4) {  // n nibbles; an odd tail keeps the high nibble of the last byte
    uint8_t nib = (uint8_t)((int64_t)value & 0xF);
    uint8_t* p = (uint8_t*)out;
    std::memset(p, nib | (nib << 4), (size_t)(n / 2));
    if (n & 1) p[n / 2] = (uint8_t)((p[n / 2] & 0xF0) | nib);
    return CT_OK;
  }
  dispatch_conv(dtype, [&](auto t) {
    using T = decltype(t);
    const T v = convert<T>(value);
    T* o = (T*)out;
    parallel_range(n, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) o[i] = v;
    });
  });
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_int4_unpack(int64_t n, const uint8_t* packed, int8_t* out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_int4_unpack";
  CT_TRY
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n=%lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "packed", packed)) || (st = check_ptr(fn, "out", out))) return st;
  // Sign extension of a nibble: shift it to the top of an int8 and arithmetic-shift back.
  parallel_range(n / 2, 2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      uint8_t b = packed[i];
      out[2 * i] = (int8_t)((int8_t)(b << 4) >> 4);
      out[2 * i + 1] = (int8_t)((int8_t)b >> 4);
    }
  });
  if (n & 1) out[n - 1] = (int8_t)((int8_t)(packed[n / 2] << 4) >> 4);
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_int4_pack(int64_t n, const int8_t* in, uint8_t* packed, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_int4_pack";
  CT_TRY
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: n=%lld is negative", fn, (long long)n);
  if (n == 0) return CT_OK;
  int st;
  if ((st = check_ptr(fn, "in", in)) || (st = check_ptr(fn, "packed", packed))) return st;
  for (int64_t i = 0; i < n; ++i)
    if (in[i] < -8 || in[i] > 7)
      return fail(CT_ERR_INVALID_ARG, "%s: in[%lld]=%d is outside the int4 range [-8, 7]", fn, (long long)i, in[i]);
  parallel_range(n / 2, 2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) packed[i] = (uint8_t)((in[2 * i] & 0xF) | ((in[2 * i + 1] & 0xF) << 4));
  });
  if (n & 1) packed[n / 2] = (uint8_t)(in[n - 1] & 0xF);
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"
