/*
 * libcortado_env.so: loaded before libgomp (first in the JavaCPP preload list of every CPU
 * binding class), so its constructor runs before libgomp reads its environment.
 *
 * Why: GEMMs run on OpenBLAS's own pthreads, everything else on OpenMP. With libgomp's default
 * wait policy, OpenMP workers spin for a while after each parallel region, and on a machine with
 * as many cores as threads they take the cores OpenBLAS's threads need for the next GEMM (and
 * the reverse): a 2-thread MLP training step measured 103 ms with spinning and 26-30 ms with
 * OMP_WAIT_POLICY=PASSIVE (docs/performance.md, "Training step"). So Cortado defaults to passive
 * waiting; a value the user set (OMP_WAIT_POLICY or GOMP_SPINCOUNT) is left alone.
 */
#include <stdlib.h>

extern "C" {

__attribute__((constructor)) static void cortado_default_omp_wait_policy(void) {
  if (getenv("GOMP_SPINCOUNT") == nullptr) setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
}

/* The policy this process ended up with: 1 when OMP_WAIT_POLICY is PASSIVE. */
__attribute__((visibility("default"))) int ct_env_omp_passive(void) {
  const char* p = getenv("OMP_WAIT_POLICY");
  return p != nullptr && (p[0] == 'P' || p[0] == 'p');
}

}
