/*
 * Argument checks that need the device's data (indices, codes, scales): a check kernel writes the
 * FIRST offending position into one device word by atomicMin; first_bad() runs it on the stream,
 * copies the word back (one stream synchronization) and hands the position to the launcher, which
 * answers with the CPU twin's status and a message naming the position and value. Used by the
 * sparse (indices) and quantization (codes, scales, zero points) families.
 */
#ifndef CORTADO_CUDA_DEVICE_CHECK_CUH
#define CORTADO_CUDA_DEVICE_CHECK_CUH

#include "common.cuh"

namespace ct {

/* Runs launch(bad) on the stream and returns the first bad position (~0 when none) in *first. */
template <class L> int first_bad(const char* fn, cudaStream_t st, L&& launch, unsigned long long* first) {
  unsigned long long* bad = nullptr;
  CT_CUDA_TRY(fn, cudaMallocAsync((void**)&bad, sizeof(unsigned long long), st));
  int status = CT_OK;
  cudaError_t err = cudaMemsetAsync(bad, 0xFF, sizeof(unsigned long long), st);
  if (err != cudaSuccess) status = cuda_fail(fn, err);
  if (status == CT_OK) {
    launch(bad);
    status = check_launch(fn);
  }
  *first = ~0ull;
  if (status == CT_OK) {
    err = cudaMemcpyAsync(first, bad, sizeof *first, cudaMemcpyDeviceToHost, st);
    if (err == cudaSuccess) err = cudaStreamSynchronize(st);
    if (err != cudaSuccess) status = cuda_fail(fn, err);
  }
  err = cudaFreeAsync(bad, st);
  if (status == CT_OK && err != cudaSuccess) status = cuda_fail(fn, err);
  return status;
}

/* One element copied from the device (the offending value of an error message). */
template <class T> int read_one(const char* fn, const T* p, T* out) {
  CT_CUDA_TRY(fn, cudaMemcpy(out, p, sizeof(T), cudaMemcpyDeviceToHost));
  return CT_OK;
}

namespace {
/* The first i < n with !isfinite(p[i]) into *bad (one copy per translation unit). */
__global__ void nonfinite_check(int64_t n, const float* __restrict__ p, unsigned long long* bad) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    if (!isfinite(p[i])) atomicMin(bad, (unsigned long long)i);
}
}  // namespace

/* CT_OK when p (NULL: nothing to check) holds n finite floats, else CT_ERR_INVALID_ARG naming
 * name[i]. */
inline int check_finite(const char* fn, const char* name, const float* p, int64_t n, cudaStream_t st, int sms) {
  if (!p || n <= 0) return CT_OK;
  unsigned long long bad;
  CT_TRY_STATUS(first_bad(fn, st, [&](unsigned long long* b) {
    nonfinite_check<<<grid_for(n, sms), kThreads, 0, st>>>(n, p, b);
  }, &bad));
  if (bad == ~0ull) return CT_OK;
  return fail(CT_ERR_INVALID_ARG, "%s: %s[%lld] is not finite", fn, name, (long long)bad);
}

}  // namespace ct

#endif
