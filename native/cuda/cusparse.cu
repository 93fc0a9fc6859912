/*
 * cuSPARSE SpMM as an optional baseline (contract in cortado/cusparse.h).
 *
 * No cuSPARSE header or library is needed to build: the few entry points of the generic API used
 * here are declared below with opaque handles and int enums (values of the cuSPARSE and
 * library_types.h APIs), resolved by dlopen/dlsym on the first call (once, under a mutex), and a
 * missing library is an ordinary CT_ERR_UNSUPPORTED with the loader's message. One handle per
 * device, created on first use and kept for the process. Per call: the two dense descriptors and
 * the CSR descriptor (64-bit indices, 0-based), cusparseSpMM_bufferSize, a workspace from
 * cudaMallocAsync on the stream, cusparseSpMM with CUSPARSE_SPMM_CSR_ALG2 (deterministic), and
 * the descriptors destroyed. Cost: cuSPARSE's; the Cortado kernel it is compared with is
 * csr_spmm_sputnik in sparse.cu.
 */
#include <dlfcn.h>

#include <mutex>

#include "common.cuh"
#include "cortado/cusparse.h"
#include "sparse_internal.cuh"

namespace ct {
namespace {

// cuSPARSE / library_types.h values (cusparse.h: cusparseIndexType_t, cusparseIndexBase_t,
// cusparseOperation_t, cusparseOrder_t, cusparseSpMMAlg_t; library_types.h: cudaDataType).
constexpr int kStatusSuccess = 0;
constexpr int kIndex64 = 3, kIndexBaseZero = 0, kOpNone = 0, kOrderRow = 2, kSpmmCsrAlg2 = 6;
constexpr int kR32F = 0, kR64F = 1, kR16BF = 14;

using Handle = void*;
using SpMat = void*;
using DnMat = void*;
struct Api {
  int (*create)(Handle*);
  int (*set_stream)(Handle, cudaStream_t);
  const char* (*error_string)(int);
  int (*create_csr)(SpMat*, int64_t, int64_t, int64_t, void*, void*, void*, int, int, int, int);
  int (*create_dn)(DnMat*, int64_t, int64_t, int64_t, void*, int, int);
  int (*destroy_sp)(SpMat);
  int (*destroy_dn)(DnMat);
  int (*buffer_size)(Handle, int, int, const void*, SpMat, DnMat, const void*, DnMat, int, int, size_t*);
  int (*spmm)(Handle, int, int, const void*, SpMat, DnMat, const void*, DnMat, int, int, void*);
};

std::mutex g_mutex;
bool g_tried = false;
Api g_api{};
char g_why[512] = "";
Handle g_handles[64] = {};

template <class F> bool resolve(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  if (*out == nullptr) snprintf(g_why, sizeof g_why, "symbol %s not found in libcusparse", name);
  return *out != nullptr;
}

/* The API, loaded once; nullptr (and g_why) when cuSPARSE is not there. */
const Api* api() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_tried) {
    g_tried = true;
    void* lib = nullptr;
    for (const char* name : {"libcusparse.so.13", "libcusparse.so.12", "libcusparse.so"}) {
      if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
      const char* e = dlerror();
      snprintf(g_why, sizeof g_why, "libcusparse.so.13, .so.12 and .so could not be loaded (last: %s)", e ? e : "?");
    }
    if (lib != nullptr &&
        !(resolve(lib, "cusparseCreate", &g_api.create) && resolve(lib, "cusparseSetStream", &g_api.set_stream) &&
          resolve(lib, "cusparseGetErrorString", &g_api.error_string) &&
          resolve(lib, "cusparseCreateCsr", &g_api.create_csr) && resolve(lib, "cusparseCreateDnMat", &g_api.create_dn) &&
          resolve(lib, "cusparseDestroySpMat", &g_api.destroy_sp) &&
          resolve(lib, "cusparseDestroyDnMat", &g_api.destroy_dn) &&
          resolve(lib, "cusparseSpMM_bufferSize", &g_api.buffer_size) && resolve(lib, "cusparseSpMM", &g_api.spmm)))
      g_api.create = nullptr;
    if (lib != nullptr && g_api.create != nullptr) g_why[0] = 0;
  }
  return g_why[0] == 0 ? &g_api : nullptr;
}

int sp_fail(const char* fn, const Api* a, int status, const char* what) {
  return fail(CT_ERR_CUDA, "%s: %s failed: %s (cuSPARSE status %d)", fn, what, a->error_string(status), status);
}

}  // namespace
}  // namespace ct

using namespace ct;

extern "C" int ct_cuda_cusparse_csr_spmm(int dtype, int64_t rows, int64_t cols, int64_t n, int64_t nnz,
                                         const int64_t* crow, const int64_t* col, const void* values, const void* b,
                                         void* c, int64_t stream) {
  static const char* fn = "ct_cuda_cusparse_csr_spmm";
  const int type = dtype == CT_F32 ? kR32F : dtype == CT_F64 ? kR64F : dtype == CT_BF16 ? kR16BF : -1;
  if (type < 0)
    return fail(CT_ERR_UNSUPPORTED, "%s: dtype %s (%d) is not supported (F32, F64, BF16)", fn, dtype_name(dtype), dtype);
  if (rows < 0 || cols < 0 || n < 0 || nnz < 0)
    return fail(CT_ERR_INVALID_ARG, "%s: rows=%lld, cols=%lld, n=%lld, nnz=%lld (must be >= 0)", fn, (long long)rows,
                (long long)cols, (long long)n, (long long)nnz);
  const Api* a = api();
  if (a == nullptr) return fail(CT_ERR_UNSUPPORTED, "%s: cuSPARSE is not available: %s", fn, g_why);
  const cudaStream_t st = as_stream(stream);
  CT_TRY_STATUS(check_csr_indices(fn, rows, cols, nnz, crow, col, st));
  if (rows == 0 || n == 0) return CT_OK;
  CT_TRY_STATUS(check_ptr(fn, "c", c));
  if (nnz == 0 || cols == 0) {
    CT_CUDA_TRY(fn, cudaMemsetAsync(c, 0, (size_t)(rows * n) * (dtype == CT_F64 ? 8 : dtype == CT_F32 ? 4 : 2), st));
    return CT_OK;
  }
  CT_TRY_STATUS(check_ptr(fn, "values", values));
  CT_TRY_STATUS(check_ptr(fn, "b", b));
  int device = 0;
  CT_CUDA_TRY(fn, cudaGetDevice(&device));
  if (device < 0 || device >= 64) return fail(CT_ERR_INVALID_ARG, "%s: device %d out of range", fn, device);
  Handle h;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_handles[device] == nullptr) {
      const int s = a->create(&g_handles[device]);
      if (s != kStatusSuccess) return sp_fail(fn, a, s, "cusparseCreate");
    }
    h = g_handles[device];
  }
  int s = a->set_stream(h, st);
  if (s != kStatusSuccess) return sp_fail(fn, a, s, "cusparseSetStream");
  const float one32 = 1, zero32 = 0;
  const double one64 = 1, zero64 = 0;
  const void* alpha = dtype == CT_F64 ? (const void*)&one64 : (const void*)&one32;
  const void* beta = dtype == CT_F64 ? (const void*)&zero64 : (const void*)&zero32;
  const int compute = dtype == CT_F64 ? kR64F : kR32F;
  SpMat ma = nullptr;
  DnMat mb = nullptr, mc = nullptr;
  int status = CT_OK;
  void* work = nullptr;
  size_t bytes = 0;
  if ((s = a->create_csr(&ma, rows, cols, nnz, (void*)crow, (void*)col, (void*)values, kIndex64, kIndex64,
                         kIndexBaseZero, type)) != kStatusSuccess)
    status = sp_fail(fn, a, s, "cusparseCreateCsr");
  else if ((s = a->create_dn(&mb, cols, n, n, (void*)b, type, kOrderRow)) != kStatusSuccess)
    status = sp_fail(fn, a, s, "cusparseCreateDnMat(B)");
  else if ((s = a->create_dn(&mc, rows, n, n, c, type, kOrderRow)) != kStatusSuccess)
    status = sp_fail(fn, a, s, "cusparseCreateDnMat(C)");
  else if ((s = a->buffer_size(h, kOpNone, kOpNone, alpha, ma, mb, beta, mc, compute, kSpmmCsrAlg2, &bytes)) !=
           kStatusSuccess)
    status = sp_fail(fn, a, s, "cusparseSpMM_bufferSize");
  else if (bytes > 0 && cudaMallocAsync(&work, bytes, st) != cudaSuccess)
    status = fail(CT_ERR_OUT_OF_MEMORY, "%s: workspace of %zu bytes could not be allocated", fn, bytes);
  else if ((s = a->spmm(h, kOpNone, kOpNone, alpha, ma, mb, beta, mc, compute, kSpmmCsrAlg2, work)) != kStatusSuccess)
    status = sp_fail(fn, a, s, "cusparseSpMM");
  if (work != nullptr) cudaFreeAsync(work, st);
  if (mc != nullptr) a->destroy_dn(mc);
  if (mb != nullptr) a->destroy_dn(mb);
  if (ma != nullptr) a->destroy_sp(ma);
  if (status == CT_OK) status = check_launch(fn);
  return status;
}
