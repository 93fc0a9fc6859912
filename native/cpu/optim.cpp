/*
 * Optimizer family (optim.h): fused SGD/momentum, Adam/AdamW, Adagrad updates over many
 * tensors per call; sum of squares, scale, unscale-and-check for gradient clipping and loss
 * scaling. The update formulas and their coefficient mapping are in optim.h.
 *
 * Algorithm. The n tensors are cut into pieces of at most kPiece elements (a tensor smaller
 * than that is one piece); pieces are spread over OpenMP threads (static schedule, contiguous
 * ranges of pieces, so each thread streams through memory). Each piece runs one loop that
 * reads the gradient and the state once, updates in registers and writes back: ONE pass over
 * memory per step, no temporaries. The loop body is the per-element formula (the reference,
 * written once as a templated inline function) inside a `#pragma omp simd` loop with the
 * configuration (momentum / Nesterov / amsgrad / gradient dtype) hoisted into template
 * parameters, so for float32 params and gradients g++ emits 8-wide AVX2 code (vsqrtps,
 * vdivps) and the loop is bound by memory bandwidth. The independent reference that the
 * tests compare with is a float64 Java implementation (dev.cortado.optim tests).
 *
 * Cost per element (float32): SGD without momentum 12 B (read p, g; write p); with momentum
 * 20 B; Adam/AdamW 28 B (+8 amsgrad); Adagrad 20 B. With a 16-bit gradient 2 B less each.
 * FLOPs are a few per element (Adam ~15 + sqrt + div), far below the ~117 GFLOP/s per core
 * peak, so ~25 GB/s of DRAM bandwidth is the bound: 10M Adam params = 280 MB -> ~11 ms.
 *
 * Reductions (sum_squares) accumulate each piece in float64 (8 independent partial sums so
 * the loop vectorizes) and combine the pieces' sums in piece order, so the result does not
 * depend on the thread count.
 */
#include <cmath>
#include <vector>

#include "cortado/optim.h"
#include "internal.h"

using namespace ct;

namespace {

constexpr int64_t kPiece = 1 << 16;

struct Piece {
  int64_t t, begin, end;
};

/* Pieces of every non-empty tensor, in order. */
std::vector<Piece> make_pieces(int64_t n, const int64_t* sizes) {
  std::vector<Piece> out;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t b = 0; b < sizes[t]; b += kPiece) out.push_back({t, b, b + kPiece < sizes[t] ? b + kPiece : sizes[t]});
  }
  return out;
}

int64_t total_of(int64_t n, const int64_t* sizes) {
  int64_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += sizes[i];
  return s;
}

/* Runs fn(piece) over every piece, on up to threads() threads when the work is large. */
template <class Fn> void run_pieces(const std::vector<Piece>& pieces, int64_t total, Fn&& fn) {
  int nt = threads_for(total);
  const int64_t np = (int64_t)pieces.size();
  if (nt > np) nt = (int)(np > 0 ? np : 1);
  if (nt <= 1) {
    for (const Piece& p : pieces) fn(p);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < np; ++i) fn(pieces[i]);
}

// ------------------------------------------------------------------ validation
int check_table(const char* fn, const char* name, int64_t n, const int64_t* sizes, const int64_t* table) {
  if (!table) return fail(CT_ERR_INVALID_ARG, "%s: the %s table is NULL", fn, name);
  for (int64_t i = 0; i < n; ++i)
    if (sizes[i] > 0 && table[i] == 0) return fail(CT_ERR_INVALID_ARG, "%s: %s[%lld] is NULL", fn, name, (long long)i);
  return CT_OK;
}

int check_sizes(const char* fn, int64_t n, const int64_t* sizes) {
  if (n < 0) return fail(CT_ERR_INVALID_ARG, "%s: tensor count %lld is negative", fn, (long long)n);
  if (n > 0 && !sizes) return fail(CT_ERR_INVALID_ARG, "%s: the sizes table is NULL", fn);
  for (int64_t i = 0; i < n; ++i)
    if (sizes[i] < 0) return fail(CT_ERR_INVALID_ARG, "%s: sizes[%lld] = %lld is negative", fn, (long long)i, (long long)sizes[i]);
  return CT_OK;
}

/* Calls f(P{}, G{}) for the supported (param, grad) dtype pairs. */
template <class F> int dispatch_pg(const char* fn, int pd, int gd, F&& f) {
  if (pd == CT_F32 && gd == CT_F32) { f(float{}, float{}); return CT_OK; }
  if (pd == CT_F64 && gd == CT_F64) { f(double{}, double{}); return CT_OK; }
  if (pd == CT_F32 && gd == CT_F16) { f(float{}, f16{}); return CT_OK; }
  if (pd == CT_F32 && gd == CT_BF16) { f(float{}, bf16{}); return CT_OK; }
  return fail(CT_ERR_UNSUPPORTED, "%s: parameters of dtype %s with gradients of dtype %s are not supported "
              "(params F32 or F64; gradients of the param dtype, or F16/BF16 with F32 params)",
              fn, dtype_name(pd), dtype_name(gd));
}

template <class F> int dispatch_float_fn(const char* fn, int dtype, F&& f) {
  switch (dtype) {
    case CT_F32: f(float{}); return CT_OK;
    case CT_F64: f(double{}); return CT_OK;
    case CT_F16: f(f16{}); return CT_OK;
    case CT_BF16: f(bf16{}); return CT_OK;
    default: return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s is not a floating dtype", fn, dtype_name(dtype));
  }
}

template <class T> CT_INLINE T* at(const int64_t* table, int64_t i) { return reinterpret_cast<T*>((intptr_t)table[i]); }

// ------------------------------------------------------------------ SGD / momentum
// MODE 0: no buffer (d = g'); 1: momentum (d = b); 2: Nesterov (d = g' + alpha b)
template <class P, class G, int MODE>
void sgd_range(int64_t n, P* __restrict p, const G* __restrict g, P* __restrict b, P lr, P l2, P alpha, P beta, P gs) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    P x = p[i];
    P gr = gs * (P)load(&g[i]) + l2 * x;
    P d = gr;
    if constexpr (MODE >= 1) {
      P bn = alpha * b[i] + beta * gr;
      b[i] = bn;
      d = MODE == 2 ? gr + alpha * bn : bn;
    }
    p[i] = x - lr * d;
  }
}

// ------------------------------------------------------------------ Adam / AdamW
template <class P, class G, bool AMS>
void adam_range(int64_t n, P* __restrict p, const G* __restrict g, P* __restrict m, P* __restrict v, P* __restrict vmax,
                P beta1, P beta2, P eps, P l2, P keep, P step, P dscale, P post, P gs) {
  const P omb1 = P(1) - beta1, omb2 = P(1) - beta2;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    P x = p[i];
    P gr = gs * (P)load(&g[i]) + l2 * x;
    x *= keep;
    P mn = beta1 * m[i] + omb1 * gr;
    P vn = beta2 * v[i] + omb2 * gr * gr;
    m[i] = mn;
    v[i] = vn;
    P vu = vn;
    if constexpr (AMS) {
      vu = vmax[i] > vn ? vmax[i] : vn;
      vmax[i] = vu;
    }
    p[i] = (x - step * mn / (std::sqrt(vu) * dscale + eps)) * post;
  }
}

// ------------------------------------------------------------------ Adagrad
template <class P, class G>
void adagrad_range(int64_t n, P* __restrict p, const G* __restrict g, P* __restrict h, P lr, P l2, P eps, P gs) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    P x = p[i];
    P gr = gs * (P)load(&g[i]) + l2 * x;
    P hn = h[i] + gr * gr;
    h[i] = hn;
    p[i] = x - lr * gr / (std::sqrt(hn) + eps);
  }
}

// ------------------------------------------------------------------ utilities
template <class T> double sumsq_range(int64_t n, const T* __restrict x) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
#pragma omp simd
    for (int k = 0; k < 8; ++k) {
      double v = (double)load(&x[i + k]);
      acc[k] += v * v;
    }
  }
  for (; i < n; ++i) {
    double v = (double)load(&x[i]);
    acc[0] += v * v;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <class T> void scale_range(int64_t n, T* __restrict x, compute_t<T> f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) store(&x[i], load(&x[i]) * f);
}

/* Returns true when any scaled element is not finite. */
template <class T> bool unscale_range(int64_t n, T* __restrict x, compute_t<T> f) {
  using C = compute_t<T>;
  int bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t i = 0; i < n; ++i) {
    C v = load(&x[i]) * f;
    store(&x[i], v);
    bad |= (v - v) != (v - v);  // inf - inf and NaN - NaN are NaN; finite - itself is 0
  }
  return bad != 0;
}

}  // namespace

extern "C" {

int ct_cpu_optim_sgd(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes, const int64_t* params,
                     const int64_t* grads, const int64_t* momentum_bufs, double lr, double l2, double alpha,
                     double beta, int nesterov, double grad_scale, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_optim_sgd";
  CT_TRY
  int st;
  if ((st = check_sizes(fn, n, sizes))) return st;
  if (n == 0) return CT_OK;
  if ((st = check_table(fn, "params", n, sizes, params)) || (st = check_table(fn, "grads", n, sizes, grads))) return st;
  if (momentum_bufs && (st = check_table(fn, "momentum_bufs", n, sizes, momentum_bufs))) return st;
  if (nesterov && !momentum_bufs) return fail(CT_ERR_INVALID_ARG, "%s: Nesterov momentum needs momentum buffers", fn);
  const int mode = momentum_bufs ? (nesterov ? 2 : 1) : 0;
  const std::vector<Piece> pieces = make_pieces(n, sizes);
  const int64_t total = total_of(n, sizes);
  return dispatch_pg(fn, param_dtype, grad_dtype, [&](auto pz, auto gz) {
    using P = decltype(pz);
    using G = decltype(gz);
    run_pieces(pieces, total, [&](const Piece& pc) {
      const int64_t len = pc.end - pc.begin;
      P* p = at<P>(params, pc.t) + pc.begin;
      const G* g = at<const G>(grads, pc.t) + pc.begin;
      P* b = mode ? at<P>(momentum_bufs, pc.t) + pc.begin : nullptr;
      if (mode == 0) sgd_range<P, G, 0>(len, p, g, b, (P)lr, (P)l2, (P)alpha, (P)beta, (P)grad_scale);
      else if (mode == 1) sgd_range<P, G, 1>(len, p, g, b, (P)lr, (P)l2, (P)alpha, (P)beta, (P)grad_scale);
      else sgd_range<P, G, 2>(len, p, g, b, (P)lr, (P)l2, (P)alpha, (P)beta, (P)grad_scale);
    });
  });
  CT_CATCH(fn)
}

int ct_cpu_optim_adam(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes, const int64_t* params,
                      const int64_t* grads, const int64_t* exp_avgs, const int64_t* exp_avg_sqs,
                      const int64_t* max_exp_avg_sqs, double beta1, double beta2, double eps, double l2,
                      double decoupled, double step_size, double denom_scale, double post_scale, double grad_scale, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_optim_adam";
  CT_TRY
  int st;
  if ((st = check_sizes(fn, n, sizes))) return st;
  if (n == 0) return CT_OK;
  if ((st = check_table(fn, "params", n, sizes, params)) || (st = check_table(fn, "grads", n, sizes, grads)) ||
      (st = check_table(fn, "exp_avgs", n, sizes, exp_avgs)) ||
      (st = check_table(fn, "exp_avg_sqs", n, sizes, exp_avg_sqs)))
    return st;
  if (max_exp_avg_sqs && (st = check_table(fn, "max_exp_avg_sqs", n, sizes, max_exp_avg_sqs))) return st;
  const std::vector<Piece> pieces = make_pieces(n, sizes);
  const int64_t total = total_of(n, sizes);
  const double keep = 1.0 - decoupled;
  return dispatch_pg(fn, param_dtype, grad_dtype, [&](auto pz, auto gz) {
    using P = decltype(pz);
    using G = decltype(gz);
    run_pieces(pieces, total, [&](const Piece& pc) {
      const int64_t len = pc.end - pc.begin, o = pc.begin;
      P* p = at<P>(params, pc.t) + o;
      const G* g = at<const G>(grads, pc.t) + o;
      P* m = at<P>(exp_avgs, pc.t) + o;
      P* v = at<P>(exp_avg_sqs, pc.t) + o;
      if (max_exp_avg_sqs)
        adam_range<P, G, true>(len, p, g, m, v, at<P>(max_exp_avg_sqs, pc.t) + o, (P)beta1, (P)beta2, (P)eps, (P)l2,
                               (P)keep, (P)step_size, (P)denom_scale, (P)post_scale, (P)grad_scale);
      else
        adam_range<P, G, false>(len, p, g, m, v, nullptr, (P)beta1, (P)beta2, (P)eps, (P)l2, (P)keep, (P)step_size,
                                (P)denom_scale, (P)post_scale, (P)grad_scale);
    });
  });
  CT_CATCH(fn)
}

int ct_cpu_optim_adagrad(int param_dtype, int grad_dtype, int64_t n, const int64_t* sizes, const int64_t* params,
                         const int64_t* grads, const int64_t* sums, double lr, double l2, double eps,
                         double grad_scale, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_optim_adagrad";
  CT_TRY
  int st;
  if ((st = check_sizes(fn, n, sizes))) return st;
  if (n == 0) return CT_OK;
  if ((st = check_table(fn, "params", n, sizes, params)) || (st = check_table(fn, "grads", n, sizes, grads)) ||
      (st = check_table(fn, "sums", n, sizes, sums)))
    return st;
  const std::vector<Piece> pieces = make_pieces(n, sizes);
  const int64_t total = total_of(n, sizes);
  return dispatch_pg(fn, param_dtype, grad_dtype, [&](auto pz, auto gz) {
    using P = decltype(pz);
    using G = decltype(gz);
    run_pieces(pieces, total, [&](const Piece& pc) {
      const int64_t o = pc.begin;
      adagrad_range<P, G>(pc.end - o, at<P>(params, pc.t) + o, at<const G>(grads, pc.t) + o, at<P>(sums, pc.t) + o,
                          (P)lr, (P)l2, (P)eps, (P)grad_scale);
    });
  });
  CT_CATCH(fn)
}

int ct_cpu_optim_sum_squares(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double* out, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_optim_sum_squares";
  CT_TRY
  int st;
  if ((st = check_sizes(fn, n, sizes)) || (st = check_ptr(fn, "out", out))) return st;
  *out = 0.0;
  if (n == 0) return CT_OK;
  if ((st = check_table(fn, "tensors", n, sizes, tensors))) return st;
  const std::vector<Piece> pieces = make_pieces(n, sizes);
  std::vector<double> partial(pieces.size(), 0.0);
  const int64_t total = total_of(n, sizes);
  st = dispatch_float_fn(fn, dtype, [&](auto z) {
    using T = decltype(z);
    // index of the piece inside the vector, so partial sums land in piece order
    const Piece* base = pieces.data();
    run_pieces(pieces, total, [&](const Piece& pc) {
      partial[&pc - base] = sumsq_range<T>(pc.end - pc.begin, at<const T>(tensors, pc.t) + pc.begin);
    });
  });
  if (st) return st;
  double s = 0.0;
  for (double v : partial) s += v;
  *out = s;
  return CT_OK;
  CT_CATCH(fn)
}

int ct_cpu_optim_scale(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double factor, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_optim_scale";
  CT_TRY
  int st;
  if ((st = check_sizes(fn, n, sizes))) return st;
  if (n == 0) return CT_OK;
  if ((st = check_table(fn, "tensors", n, sizes, tensors))) return st;
  const std::vector<Piece> pieces = make_pieces(n, sizes);
  const int64_t total = total_of(n, sizes);
  return dispatch_float_fn(fn, dtype, [&](auto z) {
    using T = decltype(z);
    run_pieces(pieces, total, [&](const Piece& pc) {
      scale_range<T>(pc.end - pc.begin, at<T>(tensors, pc.t) + pc.begin, (compute_t<T>)factor);
    });
  });
  CT_CATCH(fn)
}

int ct_cpu_optim_unscale_check(int dtype, int64_t n, const int64_t* sizes, const int64_t* tensors, double inv_scale,
                               int32_t* found_inf, int64_t /*stream*/) {
  static const char* fn = "ct_cpu_optim_unscale_check";
  CT_TRY
  int st;
  if ((st = check_sizes(fn, n, sizes)) || (st = check_ptr(fn, "found_inf", found_inf))) return st;
  if (n == 0) return CT_OK;
  if ((st = check_table(fn, "tensors", n, sizes, tensors))) return st;
  const std::vector<Piece> pieces = make_pieces(n, sizes);
  const int64_t total = total_of(n, sizes);
  int any = 0;
  st = dispatch_float_fn(fn, dtype, [&](auto z) {
    using T = decltype(z);
    const Piece* base = pieces.data();
    const int64_t np = (int64_t)pieces.size();
    int nt = threads_for(total);
    if (nt > np) nt = (int)(np > 0 ? np : 1);
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : any) if (nt > 1)
    for (int64_t i = 0; i < np; ++i) {
      const Piece& pc = base[i];
      any |= unscale_range<T>(pc.end - pc.begin, at<T>(tensors, pc.t) + pc.begin, (compute_t<T>)inv_scale) ? 1 : 0;
    }
  });
  if (st) return st;
  if (any) *found_inf = 1;
  return CT_OK;
  CT_CATCH(fn)
}

}  // extern "C"
