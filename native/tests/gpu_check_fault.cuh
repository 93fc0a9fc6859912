/* GPU check of the test-only fault injection entry points (cortado/cuda.h): included by
 * gpu_check.cu before main().
 *
 * check_fault() (part of every run; it leaves the context healthy):
 *  - ct_cuda_debug_fault_kernel(CT_DEBUG_FAULT_NONE) is a correct launch: it returns CT_OK and the
 *    kernel's write (1 over a sentinel of -7) is visible in the scratch buffer;
 *  - an unknown kind and a NULL scratch give CT_ERR_INVALID_ARG before any launch;
 *  - ct_cuda_last_error_code() names the cudaError_t of the last failed call: cudaSetDevice on a
 *    device index that does not exist gives cudaErrorInvalidDevice (101), and the device still
 *    works afterwards (a non-sticky error).
 *
 * check_fault_illegal_address() (only with --fault-only, as its own process: the fault breaks the
 * CUDA context for the rest of the process):
 *  - CT_DEBUG_FAULT_ILLEGAL_ADDRESS returns CT_ERR_CUDA with code 700 (cudaErrorIllegalAddress)
 *    within the timeout (no hang), and the message names the entry point;
 *  - the next call (a malloc) fails too, with the same sticky code: the device is unusable, which is
 *    what CudaBackend reports to Java callers from then on.
 */
#pragma once

namespace fault_check {

static void check_none_kind() {
  int32_t sentinel = -7;
  Buf scratch(CT_I32, 1);
  memcpy(scratch.hp(), &sentinel, sizeof sentinel);
  scratch.up();
  const int st = ct_cuda_debug_fault_kernel(CT_DEBUG_FAULT_NONE, (int64_t)(intptr_t)scratch.d, 0);
  int32_t got = 0;
  if (st == CT_OK) {
    std::vector<uint8_t> r = scratch.down();
    memcpy(&got, r.data(), sizeof got);
  }
  record("ct_cuda_debug_fault_kernel", "i32", "NONE: a correct launch writes 1", std::fabs(got - 1.0), 0,
         st == CT_OK && got == 1, st == CT_OK ? "" : ct_cuda_last_error());
}

static void check_bad_arguments() {
  Buf scratch(CT_I32, 1);
  const int st_kind = ct_cuda_debug_fault_kernel(7, (int64_t)(intptr_t)scratch.d, 0);
  record("ct_cuda_debug_fault_kernel", "-", "unknown kind 7 is CT_ERR_INVALID_ARG", 0, 0,
         st_kind == CT_ERR_INVALID_ARG, st_kind == CT_ERR_INVALID_ARG ? "" : "status " + std::to_string(st_kind));
  const int st_null = ct_cuda_debug_fault_kernel(CT_DEBUG_FAULT_NONE, 0, 0);
  record("ct_cuda_debug_fault_kernel", "-", "NULL scratch is CT_ERR_INVALID_ARG", 0, 0,
         st_null == CT_ERR_INVALID_ARG, st_null == CT_ERR_INVALID_ARG ? "" : "status " + std::to_string(st_null));
}

static void check_error_code() {
  const int st = ct_cuda_set_device(1 << 20);
  const int code = ct_cuda_last_error_code();
  record("ct_cuda_last_error_code", "-", "cudaSetDevice(2^20) -> 101 (cudaErrorInvalidDevice)", 0, 0,
         st == CT_ERR_CUDA && code == (int)cudaErrorInvalidDevice,
         "status " + std::to_string(st) + ", code " + std::to_string(code));
  const int again = ct_cuda_set_device(0);
  int64_t a = 0;
  const int alloc = ct_cuda_malloc(256, &a);
  if (alloc == CT_OK) ct_cuda_free(a);
  record("ct_cuda_last_error_code", "-", "the device works after a non-sticky error", 0, 0,
         again == CT_OK && alloc == CT_OK, again == CT_OK && alloc == CT_OK ? "" : ct_cuda_last_error());
}

}  // namespace fault_check

static void check_fault() {
  fault_check::check_none_kind();
  fault_check::check_bad_arguments();
  fault_check::check_error_code();
}

/* The destructive half; main() runs it alone with --fault-only. Returns the process exit code. */
static int check_fault_illegal_address() {
  Buf scratch(CT_I32, 1);
  const int st = ct_cuda_debug_fault_kernel(CT_DEBUG_FAULT_ILLEGAL_ADDRESS, (int64_t)(intptr_t)scratch.d, 0);
  const int code = ct_cuda_last_error_code();
  const std::string message = ct_cuda_last_error();
  record("ct_cuda_debug_fault_kernel", "-", "ILLEGAL_ADDRESS -> CT_ERR_CUDA, code 700, names the call", 0, 0,
         st == CT_ERR_CUDA && code == (int)cudaErrorIllegalAddress &&
             message.find("ct_cuda_debug_fault_kernel") != std::string::npos,
         "status " + std::to_string(st) + ", code " + std::to_string(code) + ": " + message);
  int64_t a = 0;
  const int next = ct_cuda_malloc(256, &a);
  const int next_code = ct_cuda_last_error_code();
  record("ct_cuda_debug_fault_kernel", "-", "the context is lost: the next call fails with the sticky code", 0, 0,
         next != CT_OK && next_code == (int)cudaErrorIllegalAddress,
         "status " + std::to_string(next) + ", code " + std::to_string(next_code));
  print_checks();
  printf("\nRESULT: %s (%d of %zu checks failed)\n", g_fail ? "FAIL" : "PASS", g_fail, g_rows.size());
  return g_fail ? 1 : 0;
}
