/*
 * libcortado_env.so: loaded before libgomp (first in the JavaCPP preload list of every CPU
 * binding class), so its constructor runs before libgomp reads its environment.
 *
 * What: idle OpenMP workers spin for about half a millisecond (GOMP_SPINCOUNT=30000 iterations
 * of PAUSE), then sleep. A value the user set (OMP_WAIT_POLICY or GOMP_SPINCOUNT) is left alone.
 *
 * Why: a model's forward or training step opens hundreds of parallel regions with a few to a few
 * hundred microseconds of single-threaded work (Java dispatch, small ops) between them. Workers
 * that sleep at once (OMP_WAIT_POLICY=PASSIVE, libgomp's futex wait) must be woken by a system
 * call at every region; on a 2-core VM a quarter of a 2-thread MiniLM run was in the scheduler's
 * wake-up paths, and the run was slower on two threads than on one (docs/tuning.md, "Threads").
 * A short spin keeps the workers awake across those gaps and sleeps through real idleness.
 * (Passive waiting was the default while OpenBLAS ran its own pthreads, whose spinning fought
 * OpenMP's for the cores; OpenBLAS now runs its jobs on the OpenMP pool, native/cpu/runtime.cpp.)
 * When more threads are busy than there are cores, libgomp itself shortens the spin.
 */
#include <stdlib.h>

extern "C" {

__attribute__((constructor)) static void cortado_default_omp_wait_policy(void) {
  if (getenv("GOMP_SPINCOUNT") == nullptr && getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("GOMP_SPINCOUNT", "30000", 0);
  }
}

}
