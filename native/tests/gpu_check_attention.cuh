/* GPU check for the attention family: included by gpu_check.cu before main().
 *
 * check_attention(): ct_cuda_attention_forward / _backward / ct_cuda_rope against ct_cpu_* on
 * fresh random inputs for every floating dtype, over shapes that cover every padded head dim of
 * the tensor-core kernels (32, 64, 80, 96, 128, 256, plus odd D = 20 on the scalar-load path and
 * Dv != D), Lq != Lk (cross attention, decode Lq = 1, causal with Lq > Lk: empty rows), GQA
 * ratios 1/2/4/8, bool key-padding and additive masks, dropout with a fixed seed (the mask is the
 * CPU's, bit for bit), soft-capping (tanh on the scores, 1 - tanh^2 in the backward), both layouts. The backward of both sides is fed the CPU forward's o and
 * lse, so it is checked on its own. Tolerances: max-norm relative (|gpu - cpu| <= rtol |cpu| +
 * rtol max(max|cpu|, 0.01)): f64 1e-9, f32 2e-4 (summation order), f16 1e-2, bf16 4e-2 (P, dS rounded to
 * 16 bits before the tensor-core products, as FlashAttention does); lse 1e-4 for every dtype.
 * bench_attention(): bf16 forward and backward, D 64 and 128, L 1k..16k with B = 16k / L and
 * H = 2048 / D (constant work per L), causal and not; TFLOP/s with the usual FLOP counts.
 */
#pragma once
#include "cortado/attention.h"

/* The checks below were written against the flat argument lists; the C interface takes ct_tensor
 * descriptors and a ct_attention_params struct (cortado/attention.h). These adapters build them
 * from dims {B, Hq, Hkv, Lq, Lk, D, Dv} and 4 strides per operand, and call the CPU (stream < 0)
 * or the CUDA entry point. */
inline ct_tensor attn_desc(int dtype, const void* data, int64_t b, int64_t h, int64_t l, int64_t d, const int64_t* st) {
  ct_tensor t{};
  t.data = const_cast<void*>(data);
  t.dtype = dtype;
  t.ndim = 4;
  const int64_t shape[4] = {b, h, l, d};
  for (int i = 0; i < 4; ++i) t.shape[i] = shape[i], t.strides[i] = st[i];
  return t;
}

inline int attn_forward(bool cuda, int dt, const int64_t* dims, const void* q, const int64_t* qs, const void* k,
                        const int64_t* ks, const void* v, const int64_t* vs, int mask_kind, const void* mask,
                        const int64_t* ms, int causal, double scale, double softcap, double p, uint64_t seed,
                        uint64_t offset, void* o, const int64_t* os, float* lse, int64_t stream) {
  const int64_t B = dims[0], Hq = dims[1], Hkv = dims[2], Lq = dims[3], Lk = dims[4], D = dims[5], Dv = dims[6];
  ct_tensor tq = attn_desc(dt, q, B, Hq, Lq, D, qs), tk = attn_desc(dt, k, B, Hkv, Lk, D, ks),
            tv = attn_desc(dt, v, B, Hkv, Lk, Dv, vs), to = attn_desc(dt, o, B, Hq, Lq, Dv, os),
            tm = attn_desc(mask_kind == 1 ? CT_BOOL : dt, mask, B, Hq, Lq, Lk, ms);
  ct_attention_params pr{scale, softcap, p, seed, offset, causal, 0};
  const ct_tensor* pm = mask_kind == 0 ? nullptr : &tm;
  return cuda ? ct_cuda_attention_forward(&tq, &tk, &tv, pm, &pr, &to, lse, stream)
              : ct_cpu_attention_forward(&tq, &tk, &tv, pm, &pr, &to, lse, stream);
}

inline int attn_backward(bool cuda, int dt, const int64_t* dims, const void* q, const int64_t* qs, const void* k,
                         const int64_t* ks, const void* v, const int64_t* vs, int mask_kind, const void* mask,
                         const int64_t* ms, int causal, double scale, double softcap, double p, uint64_t seed,
                         uint64_t offset, const void* o, const int64_t* os, const void* d_o, const int64_t* dos,
                         const float* lse, void* dq, const int64_t* dqs, void* dk, const int64_t* dks, void* dv,
                         const int64_t* dvs, int64_t stream) {
  const int64_t B = dims[0], Hq = dims[1], Hkv = dims[2], Lq = dims[3], Lk = dims[4], D = dims[5], Dv = dims[6];
  ct_tensor tq = attn_desc(dt, q, B, Hq, Lq, D, qs), tk = attn_desc(dt, k, B, Hkv, Lk, D, ks),
            tv = attn_desc(dt, v, B, Hkv, Lk, Dv, vs), to = attn_desc(dt, o, B, Hq, Lq, Dv, os),
            tdo = attn_desc(dt, d_o, B, Hq, Lq, Dv, dos), tdq = attn_desc(dt, dq, B, Hq, Lq, D, dqs),
            tdk = attn_desc(dt, dk, B, Hkv, Lk, D, dks), tdv = attn_desc(dt, dv, B, Hkv, Lk, Dv, dvs),
            tm = attn_desc(mask_kind == 1 ? CT_BOOL : dt, mask, B, Hq, Lq, Lk, ms);
  ct_attention_params pr{scale, softcap, p, seed, offset, causal, 0};
  const ct_tensor* pm = mask_kind == 0 ? nullptr : &tm;
  return cuda ? ct_cuda_attention_backward(&tq, &tk, &tv, pm, &pr, &to, &tdo, lse, &tdq, &tdk, &tdv, stream)
              : ct_cpu_attention_backward(&tq, &tk, &tv, pm, &pr, &to, &tdo, lse, &tdq, &tdk, &tdv, stream);
}

namespace attn_check {

static void fill_uniform(Buf& b, double lo, double hi) {
  for (int64_t i = 0; i < b.n; ++i) setv(b.h.data(), b.dt, i, unif(lo, hi));
  b.up();
}

static double maxabs(const void* p, int dt, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = std::fabs(getv(p, dt, i));
    if (v == v && !std::isinf(v)) m = std::max(m, v);
  }
  return m;
}

static double attn_rtol(int dt) {
  switch (dt) {
    case CT_F64: return 1e-9;
    case CT_F32: return 2e-4;
    case CT_F16: return 1e-2;
    default: return 4e-2;
  }
}

/* compare() with atol = rtol * max(max|ref|, 0.01) (the floor: outputs that are zero in exact
 * arithmetic carry only rounding noise on both sides). */
static void compare_scaled(const std::string& kernel, int dt, const std::string& kase, const void* ref,
                           const void* got, int64_t n, double rtol) {
  compare(kernel, dt, kase, ref, got, n, rtol, rtol * std::max(maxabs(ref, dt, n), 0.01));
}

struct Case {
  int64_t B, Hq, Hkv, Lq, Lk, D, Dv;
  int causal, mask_kind;  // mask_kind 1: key padding [B,1,1,Lk]; 2: additive [B,Hq,Lq,Lk]
  double p;
  bool bshd;
  double softcap;  // 0: none
};

/* Strides of a [B, H, L, F] operand stored as BHSD or BSHD. */
static void strides_of(const Case& c, int64_t H, int64_t L, int64_t F, int64_t (&s)[4]) {
  if (c.bshd) {
    s[0] = L * H * F; s[1] = F; s[2] = H * F; s[3] = 1;
  } else {
    s[0] = H * L * F; s[1] = L * F; s[2] = F; s[3] = 1;
  }
}

static std::string case_name(const Case& c) {
  char b[200];
  snprintf(b, sizeof b, "B%lld Hq%lld Hkv%lld Lq%lld Lk%lld D%lld Dv%lld%s%s%s%s", (long long)c.B, (long long)c.Hq,
           (long long)c.Hkv, (long long)c.Lq, (long long)c.Lk, (long long)c.D, (long long)c.Dv,
           c.causal ? " causal" : "", c.mask_kind == 1 ? " keypad" : c.mask_kind == 2 ? " additive" : "",
           c.p > 0 ? " dropout" : "", c.bshd ? (c.softcap > 0 ? " BSHD softcap" : " BSHD")
                                             : (c.softcap > 0 ? " BHSD softcap" : " BHSD"));
  return b;
}

static void run_case(int dt, const Case& c) {
  const std::string kase = case_name(c);
  const int64_t dims[7] = {c.B, c.Hq, c.Hkv, c.Lq, c.Lk, c.D, c.Dv};
  int64_t qs[4], ks[4], vs[4], os[4], ms[4] = {0, 0, 0, 0};
  strides_of(c, c.Hq, c.Lq, c.D, qs);
  strides_of(c, c.Hkv, c.Lk, c.D, ks);
  strides_of(c, c.Hkv, c.Lk, c.Dv, vs);
  strides_of(c, c.Hq, c.Lq, c.Dv, os);
  const int64_t nq = c.B * c.Hq * c.Lq * c.D, nk = c.B * c.Hkv * c.Lk * c.D, nv = c.B * c.Hkv * c.Lk * c.Dv;
  const int64_t no = c.B * c.Hq * c.Lq * c.Dv, nl = c.B * c.Hq * c.Lq;
  Buf q(dt, nq), k(dt, nk), v(dt, nv);
  fill_uniform(q, -1.5, 1.5);
  fill_uniform(k, -1.5, 1.5);
  fill_uniform(v, -2, 2);
  Buf mask;
  if (c.mask_kind == 1) {
    mask = Buf(CT_BOOL, c.B * c.Lk);
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t j = 0; j < c.Lk; ++j) setv(mask.h.data(), CT_BOOL, b * c.Lk + j, j < c.Lk - 3 * b - 1 ? 1 : 0);
    mask.up();
    ms[0] = c.Lk; ms[3] = 1;
  } else if (c.mask_kind == 2) {
    const int64_t n = c.B * c.Hq * c.Lq * c.Lk;
    mask = Buf(dt, n);
    for (int64_t i = 0; i < n; ++i) setv(mask.h.data(), dt, i, i % 7 == 3 ? -INFINITY : unif(-2, 2));
    mask.up();
    ms[0] = c.Hq * c.Lq * c.Lk; ms[1] = c.Lq * c.Lk; ms[2] = c.Lk; ms[3] = 1;
  }
  const double scale = 1.0 / std::sqrt((double)c.D);
  const uint64_t seed = 1234, offset = 7;
  Buf o(dt, no), lse(CT_F32, nl), go(dt, no), glse(CT_F32, nl);
  o.fill_sentinel(); lse.fill_sentinel(); go.fill_sentinel(); glse.fill_sentinel();
  int cs = attn_forward(false, dt, dims, q.hp(), qs, k.hp(), ks, v.hp(), vs, c.mask_kind, mask.hp(), ms, c.causal,
                                    scale, c.softcap, c.p, seed, offset, o.hp(), os, (float*)lse.hp(), 0);
  int gs = attn_forward(true, dt, dims, q.d, qs, k.d, ks, v.d, vs, c.mask_kind, mask.d, ms, c.causal, scale,
                                     c.softcap, c.p, seed, offset, go.d, os, (float*)glse.d, 0);
  if (!status_ok("attention_forward", dt, kase, cs, gs)) return;
  {
    auto ro = go.down(), rl = glse.down();
    compare_scaled("attention_forward o", dt, kase, o.hp(), ro.data(), no, attn_rtol(dt));
    compare("attention_forward lse", CT_F32, kase + " (" + dname(dt) + ")", lse.hp(), rl.data(), nl, 1e-4, 1e-4);
  }
  // backward on the CPU's o and lse
  o.up();
  lse.up();
  Buf d_o(dt, no);
  fill_uniform(d_o, -1, 1);
  Buf dq(dt, nq), dk(dt, nk), dv(dt, nv), gdq(dt, nq), gdk(dt, nk), gdv(dt, nv);
  for (Buf* b : {&dq, &dk, &dv, &gdq, &gdk, &gdv}) b->fill_sentinel();
  cs = attn_backward(false, dt, dims, q.hp(), qs, k.hp(), ks, v.hp(), vs, c.mask_kind, mask.hp(), ms, c.causal,
                                 scale, c.softcap, c.p, seed, offset, o.hp(), os, d_o.hp(), os,
                                 (const float*)lse.hp(), dq.hp(), qs, dk.hp(), ks, dv.hp(), vs, 0);
  gs = attn_backward(true, dt, dims, q.d, qs, k.d, ks, v.d, vs, c.mask_kind, mask.d, ms, c.causal, scale,
                                  c.softcap, c.p, seed, offset, o.d, os, d_o.d, os, (const float*)lse.d, gdq.d, qs,
                                  gdk.d, ks, gdv.d, vs, 0);
  if (!status_ok("attention_backward", dt, kase, cs, gs)) return;
  auto rq = gdq.down(), rk = gdk.down(), rv = gdv.down();
  compare_scaled("attention_backward dq", dt, kase, dq.hp(), rq.data(), nq, attn_rtol(dt) * 1.5);
  compare_scaled("attention_backward dk", dt, kase, dk.hp(), rk.data(), nk, attn_rtol(dt) * 1.5);
  compare_scaled("attention_backward dv", dt, kase, dv.hp(), rv.data(), nv, attn_rtol(dt) * 1.5);
}

static void rope_case(int dt, int64_t B, int64_t H, int64_t L, int64_t D, int64_t rot, bool interleaved, bool pos,
                      bool inverse) {
  char kb[160];
  snprintf(kb, sizeof kb, "[%lld,%lld,%lld,%lld] rot %lld%s%s%s", (long long)B, (long long)H, (long long)L,
           (long long)D, (long long)rot, interleaved ? " interleaved" : " half-split", pos ? " positions" : "",
           inverse ? " inverse" : "");
  const int64_t dims[4] = {B, H, L, D};
  const int64_t st[4] = {H * L * D, L * D, D, 1};
  const int64_t n = B * H * L * D;
  Buf x(dt, n);
  fill_uniform(x, -2, 2);
  Buf p(CT_I64, L);
  for (int64_t l = 0; l < L; ++l) setv(p.h.data(), CT_I64, l, (double)irand(0, 5000));
  p.up();
  const int cs = ct_cpu_rope(dt, dims, x.hp(), st, pos ? (const int64_t*)p.hp() : nullptr, rot, 10000.0,
                             interleaved, inverse, 0);
  const int gs = ct_cuda_rope(dt, dims, x.d, st, pos ? (const int64_t*)p.d : nullptr, rot, 10000.0, interleaved,
                              inverse, 0);
  if (!status_ok("rope", dt, kb, cs, gs)) return;
  auto r = x.down();
  compare("rope", dt, kb, x.hp(), r.data(), n, 2 * rtol_of(dt), 2 * atol_of(dt));
}

}  // namespace attn_check

static void check_attention() {
  using namespace attn_check;
  const Case cases[] = {
      {2, 4, 4, 17, 17, 64, 64, 0, 0, 0.0, false},
      {1, 8, 2, 128, 200, 128, 128, 1, 0, 0.0, true},
      {2, 2, 1, 33, 65, 80, 80, 0, 1, 0.1, false},
      {1, 2, 2, 1, 1000, 96, 96, 1, 2, 0.0, false},
      {1, 2, 1, 100, 37, 256, 256, 1, 0, 0.2, true},
      {1, 3, 3, 65, 65, 32, 40, 0, 0, 0.0, false},
      {2, 8, 1, 130, 129, 64, 64, 1, 1, 0.15, true},
      {1, 2, 2, 5, 23, 20, 20, 1, 2, 0.0, false},
      {1, 2, 2, 0, 9, 64, 64, 0, 0, 0.0, false},
      {1, 2, 2, 9, 0, 64, 64, 0, 0, 0.0, false},
      {2, 4, 2, 70, 90, 64, 64, 1, 2, 0.0, false, 1.5},
      {1, 4, 1, 33, 129, 128, 128, 0, 1, 0.1, true, 2.0},
      {1, 2, 2, 40, 40, 20, 20, 1, 0, 0.0, false, 0.75},
  };
  for (int dt : {CT_F32, CT_F64, CT_F16, CT_BF16})
    for (const Case& c : cases) run_case(dt, c);
  for (int dt : {CT_F32, CT_F64, CT_F16, CT_BF16})
    for (int variant = 0; variant < 8; ++variant)
      rope_case(dt, 2, 3, 17, 64, variant & 4 ? 32 : 64, variant & 1, variant & 2, variant == 7);
  for (int dt : {CT_F32, CT_BF16}) rope_case(dt, 1, 2, 1, 128, 128, false, true, true);
}

static void bench_attention() {
  printf("\n## Attention (bf16, FlashAttention-2 kernels)\n\n");
  printf("Total tokens B*L = 16384, H = 2048 / D; FLOPs forward 4 B H L^2 D (halved when causal), backward 2.5x "
         "forward. CUDA-event timings, median of 10.\n\n");
  printf("| pass | D | L | B x H | causal | time (ms) | TFLOP/s | FA2 paper (A100/H100) |\n"
         "|---|---|---|---|---|---|---|---|\n");
  const int dt = CT_BF16;
  for (int64_t D : {64ll, 128ll}) {
    for (int64_t L : {1024ll, 2048ll, 4096ll, 8192ll, 16384ll}) {
      const int64_t B = 16384 / L, H = 2048 / D;
      const int64_t n = B * H * L * D;
      void *q, *k, *v, *o, *d_o, *dq, *dk, *dv;
      float* lse;
      for (void** p : {&q, &k, &v, &o, &d_o, &dq, &dk, &dv}) CUDA_OK(cudaMalloc(p, n * 2));
      CUDA_OK(cudaMalloc((void**)&lse, B * H * L * sizeof(float)));
      must(ct_cuda_random(CT_RANDOM_UNIFORM, dt, n, q, 1, 0, -1, 1, 0), "random");
      must(ct_cuda_random(CT_RANDOM_UNIFORM, dt, n, k, 2, 0, -1, 1, 0), "random");
      must(ct_cuda_random(CT_RANDOM_UNIFORM, dt, n, v, 3, 0, -1, 1, 0), "random");
      must(ct_cuda_random(CT_RANDOM_UNIFORM, dt, n, d_o, 4, 0, -1, 1, 0), "random");
      const int64_t dims[7] = {B, H, H, L, L, D, D};
      const int64_t st[4] = {H * L * D, L * D, D, 1};
      const int64_t ms[4] = {0, 0, 0, 0};
      const double scale = 1.0 / std::sqrt((double)D);
      for (int causal : {0, 1}) {
        const double fl = 4.0 * B * H * L * L * D * (causal ? 0.5 : 1.0);
        const double tf = time_ms([&] {
          must(attn_forward(true, dt, dims, q, st, k, st, v, st, 0, nullptr, ms, causal, scale, 0, 0, 0, 0, o,
                                         st, lse, 0), "attention forward");
        }, 10);
        const double tb = time_ms([&] {
          must(attn_backward(true, dt, dims, q, st, k, st, v, st, 0, nullptr, ms, causal, scale, 0, 0, 0, 0, o,
                                          st, d_o, st, lse, dq, st, dk, st, dv, st, 0), "attention backward");
        }, 10);
        printf("| forward | %lld | %lld | %lld x %lld | %s | %.3f | %.1f | |\n", (long long)D, (long long)L,
               (long long)B, (long long)H, causal ? "yes" : "no", tf, fl / (tf * 1e-3) / 1e12);
        printf("| backward | %lld | %lld | %lld x %lld | %s | %.3f | %.1f | |\n", (long long)D, (long long)L,
               (long long)B, (long long)H, causal ? "yes" : "no", tb, 2.5 * fl / (tb * 1e-3) / 1e12);
      }
      for (void* p : {q, k, v, o, d_o, dq, dk, dv}) cudaFree(p);
      cudaFree(lse);
    }
  }
}
