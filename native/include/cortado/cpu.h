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
/* Cumulative counters since the library loaded: every successful ct_cpu_alloc, and those of them
 * that took fresh memory from the system (posix_memalign) instead of the block cache below. A
 * steady loop that allocates nothing leaves both unchanged (the serving tests assert it). */
int64_t ct_cpu_allocation_count(void);
int64_t ct_cpu_system_allocation_count(void);
/* Maps the whole file `path` (NUL-terminated, UTF-8) read-only into memory (mmap, MAP_PRIVATE):
 * *out_address is its first byte (page aligned), *out_length its size in bytes. The pages are
 * read on first touch and shared with the page cache; nothing is copied. An empty file, a missing
 * or unreadable one fails with CT_ERR_INVALID_ARG and the path and errno text. Unmap with
 * ct_cpu_unmap(address, length). The counters above do not count mappings. */
int ct_cpu_map_file(const char* path, int64_t* out_address, int64_t* out_length);
int ct_cpu_unmap(int64_t address, int64_t length);
/* Freed blocks of 256 KiB and more are kept for reuse (no fresh page faults in hot loops):
 * bytes held by that cache, emptying it, and its limit (default 1 GiB; 0 disables it). */
int64_t ct_cpu_cached_bytes(void);
int ct_cpu_empty_cache(void);
int ct_cpu_set_cache_limit(int64_t bytes);
/* The C heap of the whole process (glibc malloc, every arena; the JVM's and the BLAS library's own
 * mallocs included, the block cache above too): bytes in use by live malloc blocks, and bytes that
 * malloc holds free (freed blocks not yet given back to the system, resident where touched). */
int ct_cpu_malloc_stats(int64_t* out_in_use, int64_t* out_free_held);
/* Gives the free memory malloc holds back to the system (glibc malloc_trim(0): every arena, free
 * pages in the middle of an arena too). Leaves the block cache alone; nothing in use moves. */
int ct_cpu_release_free_memory(void);

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
/* 1 if the AVX512_BF16 paths (vdpbf16ps) may run: the CPU has AVX512_BF16 besides the AVX-512 set
 * above, and AVX-512 is enabled (ct_cpu_set_avx512_enabled(0) turns them off too). */
int ct_cpu_has_avx512_bf16(void);
/* 1 if the AMX-BF16 paths (tdpbf16ps tiles) may run: the CPU has AMX-TILE and AMX-BF16, the kernel
 * granted this process the tile state (arch_prctl ARCH_REQ_XCOMP_PERM), and AVX-512 is enabled. */
int ct_cpu_has_amx_bf16(void);
/* 1 if the AMX-INT8 paths (tdpbusd tiles) may run: as above, with AMX-INT8. */
int ct_cpu_has_amx_int8(void);

/* The bfloat16 GEMM kernel of ct_cpu_gemm (gemm_bf16.cpp):
 *  WIDEN   inputs widened to float32, OpenBLAS sgemm (every CPU);
 *  DPBF16  the AVX512_BF16 vdpbf16ps register-tile micro-kernel;
 *  AMX     the AMX-BF16 tile micro-kernel (tdpbf16ps).
 * AUTO (the default) takes AMX where it runs, else DPBF16 where the vdpbf16ps probe beats the
 * float32 FMA probe by 1.5x (measured once, ~0.1 ms: AMD Zen 4/5 do twice the FMA rate, recent
 * Intel cores half of it), else WIDEN. All accumulate in float32 and round C once. */
#define CT_BF16_GEMM_AUTO   0
#define CT_BF16_GEMM_WIDEN  1
#define CT_BF16_GEMM_DPBF16 2
#define CT_BF16_GEMM_AMX    3
/* The kernel a BF16 ct_cpu_gemm uses now (never AUTO). */
int ct_cpu_bf16_gemm_kernel(void);
/* Forces one kernel (tests, benchmarks) or AUTO; CT_ERR_UNSUPPORTED when this CPU cannot run it. */
int ct_cpu_set_bf16_gemm_kernel(int kernel);

/* The int8 GEMM kernel of ct_cpu_qgemm (quant_gemm.cpp; the int8 convolution runs on it too):
 *  AVX2  exact 16-bit products (every CPU);
 *  VNNI  AVX-512 VNNI vpdpbusd register tiles;
 *  AMX   AMX-INT8 tdpbusd tiles.
 * AUTO (the default) takes AMX where it runs (VNNI for calls of fewer than 8 rows, where AMX's
 * 32-row blocks are mostly padding), else VNNI, else AVX2. All give the same exact int32 sums. */
#define CT_QGEMM_AUTO 0
#define CT_QGEMM_AVX2 1
#define CT_QGEMM_VNNI 2
#define CT_QGEMM_AMX  3
/* The kernel ct_cpu_qgemm uses now for calls of 8 rows or more (never AUTO). */
int ct_cpu_qgemm_kernel(void);
/* Forces one kernel (tests, benchmarks) or AUTO; CT_ERR_UNSUPPORTED when this CPU cannot run it. */
int ct_cpu_set_qgemm_kernel(int kernel);

/* Compute-ceiling probes (probe.cpp), run on the calling thread: `steps` steps of 24 independent
 * accumulator chains of 512-bit vectors, enough to hide the instruction latency on two pipes.
 *  - bf16_dot: acc = vdpbf16ps(acc, a, b), 32 bfloat16 products per instruction, counted as
 *    2 FLOPs each: 64 x 24 x steps FLOPs. CT_ERR_UNSUPPORTED without AVX512_BF16.
 *  - fma_f32: acc = vfmadd(acc, m, c) over 16 float32 lanes: 32 x 24 x steps FLOPs (the native
 *    twin of the Java FMA probe, to check that both measure the same pipes).
 * *out_sum receives the sum of all lanes of all chains; it is exact, so the caller can check it:
 * bf16_dot 16 sum_{j<24} (j + steps 2^-12) (steps < 2^24), fma_f32 see probe.cpp. */
int ct_cpu_probe_bf16_dot(int64_t steps, double* out_sum);
/* AMX: `steps` steps of 4 independent tdpbf16ps on 16 x 16 float32 tiles (a 2 x 2 block of C
 * tiles from 2 A and 2 B tiles of 16 x 32 bfloat16): 4 x 16 x 16 x 32 x 2 = 65536 FLOPs per step.
 * Every product is 1 x 1: *out_sum = 4 x 256 x 32 x steps (exact for steps < 2^19).
 * CT_ERR_UNSUPPORTED without AMX-BF16 or when the kernel refuses the tile state. */
int ct_cpu_probe_amx_bf16(int64_t steps, double* out_sum);
/* The same with tdpbusd (uint8 x int8 into int32 tiles, 16 x 16 x 64 products per instruction):
 * 4 x 16 x 16 x 64 x 2 = 131072 integer ops per step; all bytes 1, so *out_sum = 4 x 256 x 64 x
 * steps (steps < 2^24). CT_ERR_UNSUPPORTED without AMX-INT8 or the tile state. */
int ct_cpu_probe_amx_int8(int64_t steps, double* out_sum);
int ct_cpu_probe_fma_f32(int64_t steps, double* out_sum);
/* VNNI: acc = vpdpbusd(acc, a, b) on 24 int32 chains: 64 uint8 x int8 products per instruction,
 * counted as 2 operations each (the int8 GEMM's 2 m n k): 128 x 24 x steps. All bytes are 1, so
 * every step adds 4 to every lane: *out_sum = 16 sum_{j<24} (j + 4 steps), exact (steps < 2^23).
 * CT_ERR_UNSUPPORTED without AVX512_VNNI. */
int ct_cpu_probe_vnni_u8s8(int64_t steps, double* out_sum);

/* memcpy between two host buffers (no overlap). */
int ct_cpu_memcpy(int64_t dst, int64_t src, int64_t bytes);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
