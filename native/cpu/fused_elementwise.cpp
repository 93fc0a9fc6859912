/*
 * Fused elementwise family (cortado/fused.h): a chain of elementwise ops, given as a small
 * register program, run in one pass over memory.
 *
 * Algorithm: ct::for_each_row walks the iteration shape (odometer over the outer dimensions,
 * threads over rows or pieces of long rows) and hands each row piece to the interpreter, which
 * cuts it into tiles of kTileBytes / sizeof(C) elements. For one tile it executes the whole program:
 * every instruction is a loop over the tile (load an input with its stride, 0 = broadcast; apply
 * one ct::sop functor; store), so each instruction's dispatch costs one switch per tile, the loops
 * are the eager kernels' loops (GCC vectorizes them; the AVX-512 build of the same interpreter
 * runs when the CPU has it) and the registers, 16 tiles of 1 KiB, stay in L1. A contiguous input
 * already in the compute type is not copied into a tile: the instructions read it in place (unless
 * an output overlaps it). The formulas are the
 * functors of native/shared/scalar_ops.h, the same the eager ct_cpu_unary / ct_cpu_binary and
 * the CUDA kernels use; the dispatch switches are expansions of ops/unary.def and ops/binary.def.
 * float16/bfloat16 are computed in float32 and rounded once, on store (the unfused chain rounds
 * after every op).
 *
 * Cost: per element, the ops' FLOPs (a few each; 15-40 for exp/tanh/erf-based ones) and
 * (n_inputs + n_outputs) * sizeof(dtype) bytes of memory traffic; the unfused chain moves
 * (2 or 3) * sizeof(dtype) bytes per op and element.
 *
 * The scalar reference is the same interpreter with tiles of one element (exec_reference): the
 * tests compare the fused node with the unfused graph, which runs the eager kernels.
 */
#include <cstdlib>
#include <type_traits>

#include "cortado/elementwise.h"
#include "cortado/fused.h"
#include "internal.h"
#include "scalar_ops.h"
#include "vmath.h"

namespace ct {
namespace {

constexpr int kTileBytes = 1024;
constexpr int kOperands = CT_FUSED_MAX_INPUTS + CT_FUSED_MAX_OUTPUTS;

struct Instr {
  int kind, code, dst, a, b;
  double p0, p1;
};

struct Program {
  int n = 0;
  int n_inputs = 0;
  Instr ins[CT_FUSED_MAX_INSTRUCTIONS];
};

// ------------------------------------------------------------------ one instruction over a tile
template <class C, template <class> class F, sop::UnaryDomain D>
CT_INLINE void unary_loop(int64_t n, C* d, const C* a, double p0, double p1) {
  if constexpr (D != sop::BOOL) {
    const auto f = F<C>::make(p0, p1);
    for (int64_t j = 0; j < n; ++j) d[j] = f(a[j]);
  }
}

template <class C, template <class> class F, sop::BinaryKind K>
CT_INLINE void binary_loop(int64_t n, C* d, const C* a, const C* b) {
  if constexpr (K == sop::ARITHMETIC) {
    const F<C> f{};
    for (int64_t j = 0; j < n; ++j) d[j] = f(a[j], b[j]);
  } else if constexpr (K == sop::ACTIVATION_GRAD) {
    const sop::GradOf<F, C> f{};
    for (int64_t j = 0; j < n; ++j) d[j] = f(a[j], b[j]);
  }
}

template <class C> CT_INLINE void unary_tile(int code, int64_t n, C* d, const C* a, double p0, double p1) {
  if constexpr (std::is_same_v<C, float>) {
    if (code == CT_UNARY_GELU_ERF) {  // the vectorizable float32 erf GELU of vmath.h (libm's erfcf is scalar)
      for (int64_t j = 0; j < n; ++j) d[j] = gelu_erf_f32(a[j]);
      return;
    }
  }
  switch (code) {
#define CT_UNARY_OP(ident, name, domain, functor, grad) \
  case CT_UNARY_##ident: unary_loop<C, sop::functor, sop::domain>(n, d, a, p0, p1); break;
#include "cortado/ops/unary.def"
#undef CT_UNARY_OP
    default: break;  // validated before
  }
}

template <class C> CT_INLINE void binary_tile(int code, int64_t n, C* d, const C* a, const C* b) {
  switch (code) {
#define CT_BINARY_OP(ident, name, kind, functor) \
  case CT_BINARY_##ident: binary_loop<C, sop::functor, sop::kind>(n, d, a, b); break;
#include "cortado/ops/binary.def"
#undef CT_BINARY_OP
    default: break;  // validated before
  }
}

/* The whole program over one tile of n elements: operand k at byte pointer p[k] with element
 * stride s[k] (inputs first, then outputs). */
template <class T>
CT_INLINE void exec_tile(const Program& P, int64_t n, char* const* p, const int64_t* s,
                         compute_t<T> (*r)[kTileBytes / sizeof(compute_t<T>)], bool alias) {
  using C = compute_t<T>;
  // what each register reads from: its tile, or (with `alias`: a contiguous input of the compute
  // type, loaded without conversion, that no output overlaps) the input's memory itself, so that
  // such a load copies nothing
  const C* v[CT_FUSED_MAX_REGS];
  for (int i = 0; i < P.n; ++i) {
    const Instr& in = P.ins[i];
    C* d = r[in.dst];
    switch (in.kind) {
      case CT_FUSED_LOAD: {
        const T* x = (const T*)p[in.a];
        const int64_t sx = s[in.a];
        if constexpr (std::is_same_v<T, C>) {
          if (sx == 1 && alias) {
            v[in.dst] = x;
            continue;
          }
        }
        if (sx == 1) {
          for (int64_t j = 0; j < n; ++j) d[j] = load(x + j);
        } else if (sx == 0) {
          const C v = load(x);
          for (int64_t j = 0; j < n; ++j) d[j] = v;
        } else {
          for (int64_t j = 0; j < n; ++j) d[j] = load(x + j * sx);
        }
        break;
      }
      case CT_FUSED_CONST: {
        const C v = (C)in.p0;
        for (int64_t j = 0; j < n; ++j) d[j] = v;
        break;
      }
      case CT_FUSED_UNARY: unary_tile<C>(in.code, n, d, v[in.a], in.p0, in.p1); break;
      case CT_FUSED_BINARY: binary_tile<C>(in.code, n, d, v[in.a], v[in.b]); break;
      case CT_FUSED_STORE: {
        T* o = (T*)p[P.n_inputs + in.dst];
        const int64_t so = s[P.n_inputs + in.dst];
        const C* x = v[in.a];
        if (so == 1) {
          for (int64_t j = 0; j < n; ++j) store<T>(o + j, x[j]);
        } else {
          for (int64_t j = 0; j < n; ++j) store<T>(o + j * so, x[j]);
        }
        continue;  // a store writes no register
      }
      default: break;
    }
    v[in.dst] = d;
  }
}

/* A row piece, tile by tile; the baseline and the AVX-512 builds of the same body. */
#define CT_FUSED_ROW_BODY                                                            \
  using C = compute_t<T>;                                                            \
  constexpr int64_t tile = kTileBytes / (int64_t)sizeof(C);                          \
  alignas(64) C r[CT_FUSED_MAX_REGS][tile];                                          \
  char* q[kOperands];                                                                \
  for (int64_t off = 0; off < n; off += tile) {                                      \
    const int64_t len = n - off < tile ? n - off : tile;                             \
    for (int k = 0; k < kOperands; ++k) q[k] = p[k] + off * s[k] * (int64_t)sizeof(T); \
    exec_tile<T>(P, len, q, s, r, alias);                                            \
  }

template <class T> void row(const Program& P, int64_t n, char* const* p, const int64_t* s, bool alias) {
  CT_FUSED_ROW_BODY
}
template <class T>
CT_AVX512 void row_avx512(const Program& P, int64_t n, char* const* p, const int64_t* s, bool alias) {
  CT_FUSED_ROW_BODY
}

/* The bytes [lo, hi) a strided operand touches over the iteration shape. */
void span(const ct_tensor& t, int ndim, const int64_t* shape, int64_t es, uintptr_t* lo, uintptr_t* hi) {
  int64_t a = 0, b = 0;
  for (int d = 0; d < ndim; ++d) {
    const int64_t e = (shape[d] - 1) * t.strides[d];
    (e < 0 ? a : b) += e;
  }
  *lo = (uintptr_t)t.data + (uintptr_t)(a * es);
  *hi = (uintptr_t)t.data + (uintptr_t)((b + 1) * es);
}

template <class T>
void run(const Program& P, int ndim, const int64_t* shape, int64_t numel, const ct_tensor* inputs, int n_outputs,
         const ct_tensor* outputs) {
  static T dummy[1];
  const int64_t zeros[CT_MAX_DIMS] = {0};
  const int64_t* st[kOperands];
  char* base[kOperands];
  int64_t es[kOperands];
  for (int k = 0; k < kOperands; ++k) {
    const ct_tensor* t = k < P.n_inputs ? &inputs[k]
                         : k - P.n_inputs < n_outputs ? &outputs[k - P.n_inputs] : nullptr;
    st[k] = t ? t->strides : zeros;
    base[k] = t ? (char*)t->data : (char*)dummy;
    es[k] = (int64_t)sizeof(T);
  }
  // inputs are read in place (no copy into a tile) unless an output overlaps them: a store could
  // then change what a later instruction of the same tile reads
  bool alias = true;
  for (int i = 0; i < P.n_inputs && alias; ++i) {
    uintptr_t il, ih;
    span(inputs[i], ndim, shape, (int64_t)sizeof(T), &il, &ih);
    for (int o = 0; o < n_outputs && alias; ++o) {
      uintptr_t ol, oh;
      span(outputs[o], ndim, shape, (int64_t)sizeof(T), &ol, &oh);
      if (il < oh && ol < ih) alias = false;
    }
  }
  const bool wide = use_avx512();
  for_each_row<kOperands>(ndim, shape, st, base, es, numel, [&](int64_t n, char* const* p, const int64_t* s) {
    if (wide) row_avx512<T>(P, n, p, s, alias);
    else row<T>(P, n, p, s, alias);
  });
}

// ------------------------------------------------------------------ validation
int decode(const char* fn, int n_inputs, int n_outputs, int n_instructions, const int64_t* program,
           const double* params, Program* P) {
  if (n_instructions < 1 || n_instructions > CT_FUSED_MAX_INSTRUCTIONS)
    return fail(CT_ERR_INVALID_ARG, "%s: %d instructions (1..%d allowed)", fn, n_instructions, CT_FUSED_MAX_INSTRUCTIONS);
  int st;
  if ((st = check_ptr(fn, "program", program)) || (st = check_ptr(fn, "params", params))) return st;
  bool written[CT_FUSED_MAX_REGS] = {false};
  bool stored[CT_FUSED_MAX_OUTPUTS] = {false};
  P->n = n_instructions;
  P->n_inputs = n_inputs;
  for (int i = 0; i < n_instructions; ++i) {
    const int64_t* f = program + (int64_t)i * CT_FUSED_FIELDS;
    for (int k = 0; k < CT_FUSED_FIELDS; ++k)
      if (f[k] < -1 || f[k] > 1000000) return fail(CT_ERR_INVALID_ARG, "%s: instruction %d: field %d is %lld", fn, i, k, (long long)f[k]);
    Instr& in = P->ins[i];
    in.kind = (int)f[0];
    in.code = (int)f[1];
    in.dst = (int)f[2];
    in.a = (int)f[3];
    in.b = (int)f[4];
    in.p0 = params[2 * i];
    in.p1 = params[2 * i + 1];
    auto reg_ok = [&](int r) { return r >= 0 && r < CT_FUSED_MAX_REGS; };
    auto reads = [&](int r, const char* what) {
      if (!reg_ok(r)) return fail(CT_ERR_INVALID_ARG, "%s: instruction %d reads register %d (%s; 0..%d)", fn, i, r, what, CT_FUSED_MAX_REGS - 1);
      if (!written[r]) return fail(CT_ERR_INVALID_ARG, "%s: instruction %d reads register %d before it is written", fn, i, r);
      return CT_OK;
    };
    if (in.kind != CT_FUSED_STORE && !reg_ok(in.dst))
      return fail(CT_ERR_INVALID_ARG, "%s: instruction %d writes register %d (0..%d)", fn, i, in.dst, CT_FUSED_MAX_REGS - 1);
    switch (in.kind) {
      case CT_FUSED_LOAD:
        if (in.a < 0 || in.a >= n_inputs) return fail(CT_ERR_INVALID_ARG, "%s: instruction %d loads input %d of %d", fn, i, in.a, n_inputs);
        break;
      case CT_FUSED_CONST: break;
      case CT_FUSED_UNARY:
        if (in.code < 0 || in.code >= CT_UNARY_COUNT || sop::kUnaryDomain[in.code] == sop::BOOL)
          return fail(CT_ERR_UNSUPPORTED, "%s: instruction %d: unary op code %d is not fusable (unknown or boolean)", fn, i, in.code);
        if ((st = reads(in.a, "operand"))) return st;
        break;
      case CT_FUSED_BINARY:
        if (in.code < 0 || in.code >= CT_BINARY_COUNT ||
            (sop::kBinaryKind[in.code] != sop::ARITHMETIC && sop::kBinaryKind[in.code] != sop::ACTIVATION_GRAD))
          return fail(CT_ERR_UNSUPPORTED, "%s: instruction %d: binary op code %d is not fusable (unknown, comparison or logical)", fn, i, in.code);
        if ((st = reads(in.a, "first operand")) || (st = reads(in.b, "second operand"))) return st;
        break;
      case CT_FUSED_STORE:
        if (in.dst < 0 || in.dst >= n_outputs) return fail(CT_ERR_INVALID_ARG, "%s: instruction %d stores output %d of %d", fn, i, in.dst, n_outputs);
        if ((st = reads(in.a, "stored"))) return st;
        stored[in.dst] = true;
        break;
      default: return fail(CT_ERR_INVALID_ARG, "%s: instruction %d has unknown kind %d", fn, i, in.kind);
    }
    if (in.kind != CT_FUSED_STORE) written[in.dst] = true;
  }
  for (int o = 0; o < n_outputs; ++o)
    if (!stored[o]) return fail(CT_ERR_INVALID_ARG, "%s: output %d is never stored", fn, o);
  return CT_OK;
}

int check_operand(const char* fn, const char* what, int k, const ct_tensor* t, int dtype, int ndim, const int64_t* shape,
                  int64_t numel) {
  if (t->dtype != dtype)
    return fail(CT_ERR_INVALID_ARG, "%s: %s %d has dtype %s, the program runs on %s", fn, what, k, dtype_name(t->dtype), dtype_name(dtype));
  if (t->ndim != ndim) return fail(CT_ERR_INVALID_ARG, "%s: %s %d has %d dims, the iteration shape %d", fn, what, k, t->ndim, ndim);
  for (int d = 0; d < ndim; ++d) {
    if (t->shape[d] != shape[d])
      return fail(CT_ERR_INVALID_ARG, "%s: %s %d has size %lld in dim %d, the iteration shape %lld (broadcast with stride 0)",
                  fn, what, k, (long long)t->shape[d], d, (long long)shape[d]);
    if (t->strides[d] < 0) return fail(CT_ERR_INVALID_ARG, "%s: %s %d has a negative stride in dim %d", fn, what, k, d);
  }
  if (numel > 0 && !t->data) return fail(CT_ERR_INVALID_ARG, "%s: %s %d has no data", fn, what, k);
  return CT_OK;
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cpu_fused_elementwise(int dtype, int ndim, const int64_t* shape, int n_inputs, const ct_tensor* inputs,
                                        int n_outputs, const ct_tensor* outputs, int n_instructions,
                                        const int64_t* program, const double* params, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_fused_elementwise";
  CT_TRY
  if (dtype != CT_F32 && dtype != CT_F64 && dtype != CT_F16 && dtype != CT_BF16)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d): fused programs run on floating dtypes", fn, dtype_name(dtype), dtype);
  if (n_inputs < 0 || n_inputs > CT_FUSED_MAX_INPUTS)
    return fail(CT_ERR_INVALID_ARG, "%s: %d inputs (0..%d allowed)", fn, n_inputs, CT_FUSED_MAX_INPUTS);
  if (n_outputs < 1 || n_outputs > CT_FUSED_MAX_OUTPUTS)
    return fail(CT_ERR_INVALID_ARG, "%s: %d outputs (1..%d allowed)", fn, n_outputs, CT_FUSED_MAX_OUTPUTS);
  int64_t numel;
  int st;
  if ((st = check_shape(fn, ndim, shape, &numel))) return st;
  if ((n_inputs > 0 && (st = check_ptr(fn, "inputs", inputs))) || (st = check_ptr(fn, "outputs", outputs))) return st;
  for (int k = 0; k < n_inputs; ++k)
    if ((st = check_operand(fn, "input", k, &inputs[k], dtype, ndim, shape, numel))) return st;
  for (int k = 0; k < n_outputs; ++k)
    if ((st = check_operand(fn, "output", k, &outputs[k], dtype, ndim, shape, numel))) return st;
  Program* P = new Program();
  struct Free {
    Program* p;
    ~Free() { delete p; }
  } guard{P};
  if ((st = decode(fn, n_inputs, n_outputs, n_instructions, program, params, P))) return st;
  if (numel == 0) return CT_OK;
  switch (dtype) {
    case CT_F32: run<float>(*P, ndim, shape, numel, inputs, n_outputs, outputs); break;
    case CT_F64: run<double>(*P, ndim, shape, numel, inputs, n_outputs, outputs); break;
    case CT_F16: run<f16>(*P, ndim, shape, numel, inputs, n_outputs, outputs); break;
    default: run<bf16>(*P, ndim, shape, numel, inputs, n_outputs, outputs); break;
  }
  return CT_OK;
  CT_CATCH(fn)
}
