/* The CPU side of cortado/cusparse.h: cuSPARSE is a CUDA library, so a CPU tensor asking for it
 * gets a clear error (the CPU product is ct_cpu_csr_spmm). */
#include "cortado/cusparse.h"
#include "internal.h"

extern "C" int ct_cpu_cusparse_csr_spmm(int, int64_t, int64_t, int64_t, int64_t, const int64_t*, const int64_t*,
                                        const void*, const void*, void*, int64_t) {
  return ct::fail(CT_ERR_UNSUPPORTED,
                  "ct_cpu_cusparse_csr_spmm: cuSPARSE runs on CUDA devices only (on the CPU, csr_spmm runs Cortado's "
                  "kernel)");
}
