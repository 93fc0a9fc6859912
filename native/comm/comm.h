/*
 * Cortado collective communication between processes: a plain C interface over MPI.
 *
 * libcortado_comm.so implements it on the MPI library found at build time (Open MPI on Debian:
 * libopenmpi-dev); built without one, every entry point answers CT_ERR_NOT_BUILT with the message
 * "built without MPI". Java binds it by hand (dev.cortado.distributed.NativeComm): the generated
 * kernel bindings cover ct_cpu_* / ct_cuda_* only, and communication is not a kernel.
 *
 * The communicator is MPI_COMM_WORLD. Buffers are host memory, contiguous, `count` elements of the
 * Cortado dtype code `dtype` (common.h). All-reduce and broadcast split counts above INT_MAX; the
 * gathers take at most INT_MAX elements per process (larger ones are refused). Every
 * entry point returns CT_OK or an error code, with the message in ct_comm_last_error().
 *
 * Threading: ct_comm_init asks for MPI_THREAD_SERIALIZED; the Java process group makes every other
 * call from one communication thread, so no two calls overlap.
 *
 * Costs (ring algorithms, p processes, n bytes): all-reduce moves 2(p-1)/p * n bytes per process,
 * all-gather and reduce-scatter (p-1)/p * n (of the gathered size), broadcast n log2 p or less.
 */
#ifndef CORTADO_COMM_H
#define CORTADO_COMM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* reduction operators */
#define CT_COMM_SUM 0
#define CT_COMM_AVG 1   /* sum, then divided by the number of processes (float dtypes only) */
#define CT_COMM_MAX 2
#define CT_COMM_MIN 3

/* 1 when the library was built with MPI, else 0. */
int ct_comm_built_with_mpi(void);
/* Initialises MPI once per process (later calls only report); rank and size of MPI_COMM_WORLD. */
int ct_comm_init(int32_t* rank, int32_t* size);
/* The version string of the MPI library (e.g. "Open MPI v4.1.4 ..."). */
int ct_comm_library_version(char* out, int32_t capacity);
int ct_comm_finalize(void);
/* Ends every process of the job (MPI_Abort): the answer to a peer that hangs or died. */
int ct_comm_abort(int32_t code);
int ct_comm_barrier(void);
/* In place: buffer <- op over all processes' buffers. */
int ct_comm_all_reduce(int32_t dtype, int32_t op, void* buffer, int64_t count);
/* buffer <- root's buffer. */
int ct_comm_broadcast(int32_t dtype, void* buffer, int64_t count, int32_t root);
/* out[r*count ... (r+1)*count) <- process r's in[0 ... count). */
int ct_comm_all_gather(int32_t dtype, const void* in, void* out, int64_t count);
/* out[0 ... count) <- op over processes of their in[rank*count ... (rank+1)*count). */
int ct_comm_reduce_scatter(int32_t dtype, int32_t op, const void* in, void* out, int64_t count);
const char* ct_comm_last_error(void);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
