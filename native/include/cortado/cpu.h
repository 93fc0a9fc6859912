/*
 * CPU backend runtime: memory, threads, errors, CPU features.
 * All kernel entry points of the CPU library are prefixed ct_cpu_.
 */
#ifndef CORTADO_CPU_H
#define CORTADO_CPU_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Message of the last failed call on this thread ("" if none). Valid until the next call. */
const char* ct_cpu_last_error(void);

/* 64-byte aligned host memory. *out is set to 0 on failure (CT_ERR_OUT_OF_MEMORY).
 * bytes == 0 returns a valid unique pointer. Live bytes and allocation counts are tracked. */
int ct_cpu_alloc(int64_t bytes, int64_t* out_address);
int ct_cpu_free(int64_t address, int64_t bytes);
/* Bytes currently allocated through ct_cpu_alloc, and the number of live allocations. */
int64_t ct_cpu_allocated_bytes(void);
int64_t ct_cpu_live_allocations(void);
/* Freed blocks of 256 KiB and more are kept for reuse (no fresh page faults in hot loops):
 * bytes held by that cache, emptying it, and its limit (default 1 GiB; 0 disables it). */
int64_t ct_cpu_cached_bytes(void);
int ct_cpu_empty_cache(void);
int ct_cpu_set_cache_limit(int64_t bytes);

/* Threads used by OpenMP regions and by OpenBLAS (bounded together). n <= 0 means all cores. */
int ct_cpu_set_num_threads(int n);
int ct_cpu_get_num_threads(void);
/* 1 when OpenBLAS runs its parallel GEMM jobs on Cortado's OpenMP threads (the default), 0 when
 * on its own pthreads (CORTADO_BLAS_THREADS=openblas). */
int ct_cpu_blas_on_openmp(void);
/* OpenBLAS calls that ran their jobs on Cortado's threads so far (parallel calls only). */
int64_t ct_cpu_blas_parallel_calls(void);

/* 1 if the running CPU supports the AVX-512 (F, BW, DQ, VL) paths and they are enabled. */
int ct_cpu_has_avx512(void);
/* Force the baseline AVX2 paths even where AVX-512 exists (for tests and benchmarks). */
int ct_cpu_set_avx512_enabled(int enabled);

/* memcpy between two host buffers (no overlap). */
int ct_cpu_memcpy(int64_t dst, int64_t src, int64_t bytes);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
