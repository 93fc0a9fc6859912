// libcortado_comm.so: the collectives of comm.h on MPI (or, built without MPI, answers that say so).
//
// Each call maps to one MPI collective on MPI_COMM_WORLD. The error handler of the communicator
// is MPI_ERRORS_RETURN, so a failed call returns its MPI error string instead of ending the JVM.
// Averaging is a sum followed by a division here (float32/float64), n/p flops after the transfer.
#include "comm.h"
#include "cortado/common.h"

#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace {

thread_local char last_error[512];

int fail(int code, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(last_error, sizeof last_error, fmt, args);
  va_end(args);
  return code;
}

}  // namespace

extern "C" const char* ct_comm_last_error(void) { return last_error; }

#ifndef CT_WITH_MPI
// ------------------------------------------------------------------ built without MPI
extern "C" {
int ct_comm_built_with_mpi(void) { return 0; }
#define CT_NO_MPI(...) { return fail(CT_ERR_NOT_BUILT, "libcortado_comm was built without MPI (install libopenmpi-dev and rebuild)"); }
int ct_comm_init(int32_t*, int32_t*) CT_NO_MPI()
int ct_comm_library_version(char*, int32_t) CT_NO_MPI()
int ct_comm_finalize(void) CT_NO_MPI()
int ct_comm_abort(int32_t) CT_NO_MPI()
int ct_comm_barrier(void) CT_NO_MPI()
int ct_comm_all_reduce(int32_t, int32_t, void*, int64_t) CT_NO_MPI()
int ct_comm_broadcast(int32_t, void*, int64_t, int32_t) CT_NO_MPI()
int ct_comm_all_gather(int32_t, const void*, void*, int64_t) CT_NO_MPI()
int ct_comm_reduce_scatter(int32_t, int32_t, const void*, void*, int64_t) CT_NO_MPI()
}
#else
// ------------------------------------------------------------------ MPI
#include <dlfcn.h>
#include <mpi.h>

namespace {

int world_rank = -1, world_size = 0;

struct TypeInfo {
  MPI_Datatype type;
  int bytes;
  bool reducible;  // MPI has arithmetic for it
  bool floating;
};

bool type_of(int32_t dtype, TypeInfo* out) {
  switch (dtype) {
    case CT_F32: *out = {MPI_FLOAT, 4, true, true}; return true;
    case CT_F64: *out = {MPI_DOUBLE, 8, true, true}; return true;
    case CT_I32: *out = {MPI_INT32_T, 4, true, false}; return true;
    case CT_I64: *out = {MPI_INT64_T, 8, true, false}; return true;
    case CT_I8:  *out = {MPI_INT8_T, 1, true, false}; return true;
    case CT_U8:  *out = {MPI_UINT8_T, 1, true, false}; return true;
    case CT_BOOL: *out = {MPI_UINT8_T, 1, false, false}; return true;
    case CT_F16: case CT_BF16: *out = {MPI_UINT16_T, 2, false, true}; return true;
    default: return false;
  }
}

const char* op_name(int32_t op) {
  switch (op) {
    case CT_COMM_SUM: return "sum";
    case CT_COMM_AVG: return "avg";
    case CT_COMM_MAX: return "max";
    case CT_COMM_MIN: return "min";
    default: return "?";
  }
}

int mpi_fail(int rc, const char* call) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) std::snprintf(text, sizeof text, "MPI error %d", rc);
  return fail(CT_ERR_INVALID_ARG, "%s failed: %s", call, text);
}

int check_ready(const char* call) {
  if (world_size <= 0) return fail(CT_ERR_INVALID_ARG, "%s: ct_comm_init has not run", call);
  return CT_OK;
}

// Validates dtype, op and count; fills `info`. `reduce` says whether the call does arithmetic.
int check_args(const char* call, int32_t dtype, int32_t op, bool reduce, const void* a, const void* b,
               int64_t count, TypeInfo* info) {
  if (int rc = check_ready(call)) return rc;
  if (!type_of(dtype, info)) return fail(CT_ERR_UNSUPPORTED, "%s: dtype code %d cannot be communicated", call, dtype);
  if (count < 0) return fail(CT_ERR_INVALID_ARG, "%s: count %lld is negative", call, (long long) count);
  if (count > 0 && (a == nullptr || b == nullptr)) return fail(CT_ERR_INVALID_ARG, "%s: null buffer", call);
  if (reduce) {
    if (op < CT_COMM_SUM || op > CT_COMM_MIN) return fail(CT_ERR_INVALID_ARG, "%s: reduction code %d is unknown", call, op);
    if (!info->reducible) return fail(CT_ERR_UNSUPPORTED, "%s: MPI cannot reduce dtype code %d (float16/bfloat16/bool); reduce in float32", call, dtype);
    if (op == CT_COMM_AVG && !info->floating) return fail(CT_ERR_UNSUPPORTED, "%s: %s needs a float dtype, not code %d", call, op_name(op), dtype);
  }
  return CT_OK;
}

MPI_Op mpi_op(int32_t op) {
  switch (op) {
    case CT_COMM_MAX: return MPI_MAX;
    case CT_COMM_MIN: return MPI_MIN;
    default: return MPI_SUM;
  }
}

void divide(int32_t dtype, void* buffer, int64_t count, int divisor) {
  if (dtype == CT_F32) {
    float* x = static_cast<float*>(buffer);
    const float inv = 1.0f / (float) divisor;
    for (int64_t i = 0; i < count; i++) x[i] *= inv;
  } else {
    double* x = static_cast<double*>(buffer);
    for (int64_t i = 0; i < count; i++) x[i] /= divisor;
  }
}

// MPI counts are int: the largest piece one call moves.
constexpr int64_t PIECE = INT_MAX / 2 + 1;  // 2^30

}  // namespace

extern "C" {

int ct_comm_built_with_mpi(void) { return 1; }

int ct_comm_init(int32_t* rank, int32_t* size) {
  if (rank == nullptr || size == nullptr) return fail(CT_ERR_INVALID_ARG, "ct_comm_init: null output");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // The JVM loads this library with RTLD_LOCAL; Open MPI's components (dlopened plugins) need
    // libmpi's symbols to be global, so promote the already-loaded library first.
    Dl_info where;
    if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &where) != 0 && where.dli_fname != nullptr) {
      dlopen(where.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    }
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return fail(CT_ERR_INVALID_ARG, "MPI_Init_thread failed (code %d)", rc);
    if (provided < MPI_THREAD_SERIALIZED) {
      return fail(CT_ERR_UNSUPPORTED, "the MPI library gives thread level %d, below MPI_THREAD_SERIALIZED", provided);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return fail(CT_ERR_INVALID_ARG, "ct_comm_init: MPI was finalized in this process; it cannot start again");
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  *rank = world_rank;
  *size = world_size;
  return CT_OK;
}

int ct_comm_library_version(char* out, int32_t capacity) {
  if (out == nullptr || capacity <= 0) return fail(CT_ERR_INVALID_ARG, "ct_comm_library_version: no room");
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::snprintf(out, (size_t) capacity, "%s", text);
  return CT_OK;
}

int ct_comm_finalize(void) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    int rc = MPI_Finalize();
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Finalize");
  }
  world_size = 0;
  return CT_OK;
}

int ct_comm_abort(int32_t code) {
  if (int rc = check_ready("ct_comm_abort")) return rc;
  MPI_Abort(MPI_COMM_WORLD, code);
  return CT_OK;
}

int ct_comm_barrier(void) {
  if (int rc = check_ready("ct_comm_barrier")) return rc;
  int rc = MPI_Barrier(MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? CT_OK : mpi_fail(rc, "MPI_Barrier");
}

int ct_comm_all_reduce(int32_t dtype, int32_t op, void* buffer, int64_t count) {
  TypeInfo info;
  if (int rc = check_args("ct_comm_all_reduce", dtype, op, true, buffer, buffer, count, &info)) return rc;
  char* bytes = static_cast<char*>(buffer);
  for (int64_t done = 0; done < count; done += PIECE) {
    const int n = (int) (count - done < PIECE ? count - done : PIECE);
    int rc = MPI_Allreduce(MPI_IN_PLACE, bytes + done * info.bytes, n, info.type, mpi_op(op), MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce");
  }
  if (op == CT_COMM_AVG) divide(dtype, buffer, count, world_size);
  return CT_OK;
}

int ct_comm_broadcast(int32_t dtype, void* buffer, int64_t count, int32_t root) {
  TypeInfo info;
  if (int rc = check_args("ct_comm_broadcast", dtype, CT_COMM_SUM, false, buffer, buffer, count, &info)) return rc;
  if (root < 0 || root >= world_size) {
    return fail(CT_ERR_INVALID_ARG, "ct_comm_broadcast: root %d is not a rank of a world of %d", root, world_size);
  }
  char* bytes = static_cast<char*>(buffer);
  for (int64_t done = 0; done < count; done += PIECE) {
    const int n = (int) (count - done < PIECE ? count - done : PIECE);
    int rc = MPI_Bcast(bytes + done * info.bytes, n, info.type, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast");
  }
  return CT_OK;
}

int ct_comm_all_gather(int32_t dtype, const void* in, void* out, int64_t count) {
  TypeInfo info;
  if (int rc = check_args("ct_comm_all_gather", dtype, CT_COMM_SUM, false, in, out, count, &info)) return rc;
  if (count > INT_MAX) return fail(CT_ERR_UNSUPPORTED, "ct_comm_all_gather: %lld elements per process is above INT_MAX", (long long) count);
  int rc = MPI_Allgather(in, (int) count, info.type, out, (int) count, info.type, MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? CT_OK : mpi_fail(rc, "MPI_Allgather");
}

int ct_comm_reduce_scatter(int32_t dtype, int32_t op, const void* in, void* out, int64_t count) {
  TypeInfo info;
  if (int rc = check_args("ct_comm_reduce_scatter", dtype, op, true, in, out, count, &info)) return rc;
  if (count > INT_MAX) return fail(CT_ERR_UNSUPPORTED, "ct_comm_reduce_scatter: %lld elements per process is above INT_MAX", (long long) count);
  int rc = MPI_Reduce_scatter_block(in, out, (int) count, info.type, mpi_op(op), MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Reduce_scatter_block");
  if (op == CT_COMM_AVG) divide(dtype, out, count, world_size);
  return CT_OK;
}

}  // extern "C"
#endif
