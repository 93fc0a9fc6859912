/*
 * Standalone timing of the bfloat16 GEMM paths on one thread (or CT_THREADS), best of `reps`:
 *   ct_cpu_gemm BF16 with each kernel this CPU runs (ct_cpu_set_bf16_gemm_kernel: widen + sgemm,
 *   AVX512_BF16, AMX; gemm_bf16.cpp), OpenBLAS cblas_sgemm on float32, OpenBLAS cblas_sbgemm when the loaded
 *   OpenBLAS exports it (looked up with dlsym), and the vdpbf16ps / FMA / AMX probes of probe.cpp.
 * Build (after mvn package; OB = the unpacked OpenBLAS preset, LIB = the folder of libcortado_cpu.so):
 *   g++ -O2 -std=c++17 native/bench/bf16_gemm_timing.cpp -Inative/include -I$OB/include \
 *       -L$LIB -lcortado_cpu -L$OB -l:libopenblas.so.0 -ldl -Wl,-rpath,$LIB:$OB -o /tmp/bf16_timing
 *   /tmp/bf16_timing [n=2048] [reps=5] [m n k [ta [tb]]]
 */
#include <cblas.h>
#include <dlfcn.h>

#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <vector>

#include "cortado/common.h"
#include "cortado/cpu.h"
#include "cortado/gemm.h"

typedef void (*sbgemm_fn)(int, int, int, int, int, int, float, const void*, int, const void*, int, float, float*, int);

static uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* Best of `reps` runs in ms. With one thread the time is the calling thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID: time the thread was preempted by the other tenants of a shared
 * machine does not count; their cache and SMT pressure still does); with more, wall time. */
static bool g_cpu_time = true;
static double now_ms() {
  timespec ts;
  clock_gettime(g_cpu_time ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
template <class F> static double best_ms(int reps, F&& f) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_ms();
    f();
    const double ms = now_ms() - t0;
    if (ms < best) best = ms;
  }
  return best;
}

int main(int argc, char** argv) {
  // square n^3, or m n k ta tb (row-major op(A)[m,k] op(B)[k,n], as ct_cpu_gemm)
  const int n = argc > 1 ? atoi(argv[1]) : 2048, reps = argc > 2 ? atoi(argv[2]) : 5;
  const int M = argc > 5 ? atoi(argv[3]) : n, N = argc > 5 ? atoi(argv[4]) : n, K = argc > 5 ? atoi(argv[5]) : n;
  const int ta = argc > 6 ? atoi(argv[6]) : 0, tb = argc > 7 ? atoi(argv[7]) : 0;
  const int threads = getenv("CT_THREADS") ? atoi(getenv("CT_THREADS")) : 1;
  ct_cpu_set_num_threads(threads);
  g_cpu_time = threads == 1;
  const size_t nn = (size_t)std::max(M, K) * std::max(K, N) + (size_t)M * N;
  std::vector<uint16_t> a(nn), b(nn), c(nn);
  std::vector<float> fa(nn), fb(nn), fc(nn);
  srand(1);
  for (size_t i = 0; i < nn; ++i) {
    a[i] = to_bf16((float)rand() / RAND_MAX * 2 - 1), b[i] = to_bf16((float)rand() / RAND_MAX * 2 - 1);
    uint32_t ua = (uint32_t)a[i] << 16, ub = (uint32_t)b[i] << 16;
    std::memcpy(&fa[i], &ua, 4), std::memcpy(&fb[i], &ub, 4);
  }
  const double gflop = 2.0 * M * (double)N * K * 1e-9;
  const int lda = ta ? M : K, ldb = tb ? K : N;
  auto gemm_bf16 = [&] {
    if (ct_cpu_gemm(CT_BF16, ta, tb, 1, M, N, K, 1.0, a.data(), lda, 0, b.data(), ldb, 0, 0.0, c.data(), N, 0, 0))
      fprintf(stderr, "%s\n", ct_cpu_last_error()), exit(1);
  };
  printf("m=%d n=%d k=%d ta=%d tb=%d threads=%d best of %d, %s (shared machine: noisy)\n", M, N, K, ta, tb, threads, reps,
         g_cpu_time ? "thread CPU time" : "wall time");
  double probe_sum;
  const int64_t steps = 1 << 20;
  double t = best_ms(reps, [&] { ct_cpu_probe_bf16_dot(steps, &probe_sum); });
  printf("probe vdpbf16ps          %8.2f ms  %7.1f GFLOP/s\n", t, 64.0 * 24 * steps * 1e-9 / (t * 1e-3));
  t = best_ms(reps, [&] { ct_cpu_probe_fma_f32(steps, &probe_sum); });
  printf("probe vfmadd231ps        %8.2f ms  %7.1f GFLOP/s\n", t, 32.0 * 24 * steps * 1e-9 / (t * 1e-3));
  if (ct_cpu_probe_amx_bf16(1 << 16, &probe_sum) == CT_OK) {
    t = best_ms(reps, [&] { ct_cpu_probe_amx_bf16(1 << 16, &probe_sum); });
    printf("probe tdpbf16ps (AMX)    %8.2f ms  %7.1f GFLOP/s\n", t, 65536.0 * (1 << 16) * 1e-9 / (t * 1e-3));
  }
  printf("automatic bf16 kernel: %d (1 widen, 2 dpbf16, 3 amx)\n", ct_cpu_bf16_gemm_kernel());
  const char* names[] = {"", "widen + sgemm", "dpbf16 (AVX512_BF16)", "amx (AMX-BF16)"};
  for (int kernel = CT_BF16_GEMM_WIDEN; kernel <= CT_BF16_GEMM_AMX; ++kernel) {
    if (ct_cpu_set_bf16_gemm_kernel(kernel) != CT_OK) {
      printf("ct_cpu_gemm bf16 %-22s not on this CPU\n", names[kernel]);
      continue;
    }
    gemm_bf16();
    t = best_ms(reps, gemm_bf16);
    printf("ct_cpu_gemm bf16 %-22s %8.2f ms  %7.1f GFLOP/s\n", names[kernel], t, gflop / (t * 1e-3));
  }
  ct_cpu_set_bf16_gemm_kernel(CT_BF16_GEMM_AUTO);
  t = best_ms(reps, [&] {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.f, fa.data(),
                lda, fb.data(), ldb, 0.f, fc.data(), N);
  });
  printf("cblas_sgemm f32          %8.2f ms  %7.1f GFLOP/s\n", t, gflop / (t * 1e-3));
  sbgemm_fn sb = (sbgemm_fn)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
  if (!sb) {
    printf("cblas_sbgemm             not exported by the loaded OpenBLAS (%s)\n", openblas_get_config());
  } else {
    t = best_ms(reps, [&] {
      sb(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.f, a.data(), lda,
         b.data(), ldb, 0.f, fc.data(), N);
    });
    printf("cblas_sbgemm             %8.2f ms  %7.1f GFLOP/s\n", t, gflop / (t * 1e-3));
  }
  return 0;
}
