/*
 * CPU runtime: aligned host memory with live-byte accounting, thread count shared by OpenMP
 * and OpenBLAS, thread-local error messages, CPU feature detection, argument validation.
 *
 * Cost: ct_cpu_alloc is one posix_memalign (64-byte alignment, one cache line / one AVX-512
 * register) plus two relaxed atomic adds; ct_cpu_memcpy moves 2 * bytes through memory.
 *
 * Large blocks (>= 256 KiB) are cached: glibc serves them with mmap and returns them with
 * munmap, so every fresh block costs a page fault per 4 KiB on first touch (a 4 MiB matmul
 * output: ~1000 faults, ~10% of a 1024^3 sgemm). Freed large blocks go to per-size-class free
 * lists (classes round up by at most 1/8) and are handed out again; the cache holds at most
 * ct_cpu_set_cache_limit bytes (default 1 GiB), is emptied on demand and before an allocation
 * is reported as out of memory. Live-byte accounting counts requested bytes in use only.
 */
#include <cblas.h>
#include <malloc.h>
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cortado/cpu.h"
#include "internal.h"

namespace ct {

static thread_local char g_error[512];
static std::atomic<int64_t> g_bytes{0};
static std::atomic<int64_t> g_allocs{0};
static std::atomic<int64_t> g_alloc_count{0};         // cumulative: every ct_cpu_alloc
static std::atomic<int64_t> g_system_alloc_count{0};  // cumulative: those that called posix_memalign
static std::atomic<int> g_threads{0};        // 0 = not set yet: all cores
static std::atomic<int> g_avx512_enabled{1};

int fail(int status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
  return status;
}

static bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return has;
}

bool use_avx512() { return g_avx512_enabled.load(std::memory_order_relaxed) && cpu_has_avx512(); }

bool cpu_has_avx512_bf16() {
  static const bool has = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return has;
}

bool use_avx512_bf16() { return use_avx512() && cpu_has_avx512_bf16(); }

/* AMX-TILE (CPUID.7.0:EDX bit 24) with the unit `bit` of the same word (AMX-BF16 22, AMX-INT8
 * 25), the OS saving the tile state (XCR0 bits 17 and 18), and the tile data granted to this
 * process by Linux (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, asked once; refused,
 * for example, while a thread has a too small sigaltstack). */
static bool cpu_has_amx_unit(int bit) {
  static const bool tiles = [] {
    unsigned a, b, c, d;
    if (!cpu_has_avx512() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!((d >> 24) & 1u)) return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return false;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
  }();
  unsigned a, b, c, d;
  return tiles && __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((d >> bit) & 1u);
}

bool cpu_has_amx_bf16() {
  static const bool has = cpu_has_amx_unit(22);
  return has;
}

bool cpu_has_amx_int8() {
  static const bool has = cpu_has_amx_unit(25);
  return has;
}

bool use_amx_int8() { return use_avx512() && cpu_has_amx_int8(); }

bool use_amx_bf16() { return use_avx512() && cpu_has_amx_bf16(); }

int threads() {
  int t = g_threads.load(std::memory_order_relaxed);
  return t > 0 ? t : omp_get_num_procs();
}

int64_t l2_bytes() {
  static const int64_t bytes = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return std::clamp<int64_t>(l2 > 0 ? l2 : (1 << 20), 256 << 10, 8 << 20);
  }();
  return bytes;
}

/*
 * OpenBLAS's parallel GEMM jobs run on Cortado's OpenMP threads, not on OpenBLAS's own pthreads.
 *
 * Why: with two thread pools on the same cores, OpenBLAS's workers busy-wait (about 2^28 cycles)
 * after every parallel GEMM and take the cores the next OpenMP region needs. In the 2-thread MNIST
 * CNN training step they were 40% of all CPU samples and the step ran no faster than on one thread
 * (75 ms on 2 threads, 71 ms on 1); with one pool it takes 45 ms (docs/performance.md).
 *
 * The jobs of one OpenBLAS call wait for each other (level-3 GEMM hands packed panels from job to
 * job), so they must all run at the same time: one OpenMP team of exactly numjobs threads, one job
 * per thread. Where OpenMP cannot promise that team (called from inside a parallel region, dynamic
 * teams, a thread limit below numjobs), the jobs get plain std::threads instead. Parallel calls
 * from several caller threads run one after the other, as they do in OpenBLAS's own server.
 * CORTADO_BLAS_THREADS=openblas keeps OpenBLAS's own pool.
 */
static std::atomic<int> g_blas_on_openmp{0};
static std::atomic<int64_t> g_blas_parallel_calls{0};
static std::mutex g_blas_call_lock;

static void run_blas_jobs(int /*sync*/, openblas_dojob_callback dojob, int numjobs, size_t job_bytes, void* jobs,
                          int data) {
  char* base = static_cast<char*>(jobs);
  if (numjobs <= 1) {
    if (numjobs == 1) dojob(0, base, data);
    return;
  }
  // OpenBLAS's pthreads build hands each job a per-thread-index scratch buffer shared by all
  // callers; its own server serializes calls, so callers from several Java threads must be
  // serialized here too (without this lock concurrent GEMMs gave wrong results, tested)
  std::lock_guard<std::mutex> one_call_at_a_time(g_blas_call_lock);
  g_blas_parallel_calls.fetch_add(1, std::memory_order_relaxed);
  bool team_guaranteed = !omp_in_parallel() && !omp_get_dynamic() && omp_get_thread_limit() >= numjobs;
  if (team_guaranteed) {
#pragma omp parallel num_threads(numjobs)
    {
      int t = omp_get_thread_num();
      dojob(t, base + (size_t)t * job_bytes, data);
    }
    return;
  }
  std::vector<std::thread> helpers;
  helpers.reserve((size_t)numjobs - 1);
  for (int t = 1; t < numjobs; ++t) helpers.emplace_back(dojob, t, base + (size_t)t * job_bytes, data);
  dojob(0, base, data);
  for (auto& h : helpers) h.join();
}

__attribute__((constructor)) static void blas_jobs_on_openmp() {
  const char* pool = std::getenv("CORTADO_BLAS_THREADS");
  if (pool != nullptr && std::strcmp(pool, "openblas") == 0) return;
  openblas_set_threads_callback_function(run_blas_jobs);
  g_blas_on_openmp.store(1, std::memory_order_relaxed);
}

BlasSingleThreaded::BlasSingleThreaded() : saved(openblas_get_num_threads()) {
  if (saved != 1) openblas_set_num_threads(1);
}
BlasSingleThreaded::~BlasSingleThreaded() {
  if (saved != 1) openblas_set_num_threads(saved);
}

const char* dtype_name(int dtype) {
  static const char* names[] = {"F32", "F64", "F16", "BF16", "I8", "U8", "I32", "I64", "BOOL", "I4",
                                "F8E4M3", "F8E5M2"};
  return dtype >= 0 && dtype <= CT_F8E5M2 ? names[dtype] : "unknown";
}

int check_shape(const char* fn, int ndim, const int64_t* shape, int64_t* numel) {
  if (ndim < 0 || ndim > CT_MAX_DIMS)
    return fail(CT_ERR_INVALID_ARG, "%s: ndim=%d is outside [0, %d]", fn, ndim, CT_MAX_DIMS);
  if (ndim > 0 && !shape) return fail(CT_ERR_INVALID_ARG, "%s: shape is NULL with ndim=%d", fn, ndim);
  int64_t n = 1;
  bool empty = false;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] < 0)
      return fail(CT_ERR_INVALID_ARG, "%s: shape[%d]=%lld is negative", fn, d, (long long)shape[d]);
    if (shape[d] == 0) empty = true;
    else if (__builtin_mul_overflow(n, shape[d], &n))
      return fail(CT_ERR_INVALID_ARG, "%s: element count overflows int64 at shape[%d]", fn, d);
  }
  *numel = empty ? 0 : n;
  return CT_OK;
}

int check_strides(const char* fn, const char* name, int ndim, const int64_t* strides) {
  if (ndim > 0 && !strides) return fail(CT_ERR_INVALID_ARG, "%s: %s is NULL with ndim=%d", fn, name, ndim);
  for (int d = 0; d < ndim; ++d)
    if (strides[d] < 0)
      return fail(CT_ERR_INVALID_ARG, "%s: %s[%d]=%lld is negative", fn, name, d, (long long)strides[d]);
  return CT_OK;
}

// ------------------------------------------------------------------ large-block cache
static constexpr uint64_t kCacheMin = 256 * 1024;
static std::mutex g_cache_mutex;
static std::unordered_map<uint64_t, std::vector<void*>> g_cache;  // class size -> free blocks
static uint64_t g_cached = 0;
static uint64_t g_cache_limit = 1ull << 30;

/* The size a block of `size` bytes (already a multiple of 64) is allocated with. */
static uint64_t size_class(uint64_t size) {
  if (size < kCacheMin) return size;
  int top = 63 - __builtin_clzll(size);          // size in [2^top, 2^(top+1))
  uint64_t step = 1ull << (top - 3);             // eighths of that octave
  return (size + step - 1) & ~(step - 1);
}

static void* cache_take(uint64_t cls) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  auto it = g_cache.find(cls);
  if (it == g_cache.end() || it->second.empty()) return nullptr;
  void* p = it->second.back();
  it->second.pop_back();
  g_cached -= cls;
  return p;
}

/* Keeps the block if the cache has room; returns false if the caller must free it. */
static bool cache_put(void* p, uint64_t cls) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  if (g_cached + cls > g_cache_limit) return false;
  g_cache[cls].push_back(p);
  g_cached += cls;
  return true;
}

static void cache_empty() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  for (auto& entry : g_cache)
    for (void* p : entry.second) std::free(p);
  g_cache.clear();
  g_cached = 0;
}

}  // namespace ct

extern "C" {

const char* ct_cpu_last_error(void) { return ct::g_error; }

int ct_cpu_alloc(int64_t bytes, int64_t* out_address) {
  if (!out_address) return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_alloc: out_address is NULL");
  *out_address = 0;
  if (bytes < 0)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_alloc: bytes=%lld is negative", (long long)bytes);
  // Round up to whole cache lines so vector tails may read the last line safely.
  uint64_t size = bytes == 0 ? 64 : (((uint64_t)bytes + 63) & ~(uint64_t)63);
  if (size > (uint64_t)INT64_MAX / 2)
    return ct::fail(CT_ERR_OUT_OF_MEMORY, "ct_cpu_alloc: cannot allocate %lld bytes", (long long)bytes);
  uint64_t cls = ct::size_class(size);
  void* p = cls >= ct::kCacheMin ? ct::cache_take(cls) : nullptr;
  if (!p) {
    if (posix_memalign(&p, 64, (size_t)cls) != 0) {
      ct::cache_empty();
      if (posix_memalign(&p, 64, (size_t)cls) != 0) p = nullptr;
    }
    if (p) ct::g_system_alloc_count.fetch_add(1, std::memory_order_relaxed);
  }
  if (!p)
    return ct::fail(CT_ERR_OUT_OF_MEMORY, "ct_cpu_alloc: cannot allocate %lld bytes", (long long)bytes);
  ct::g_bytes.fetch_add(bytes, std::memory_order_relaxed);
  ct::g_allocs.fetch_add(1, std::memory_order_relaxed);
  ct::g_alloc_count.fetch_add(1, std::memory_order_relaxed);
  *out_address = (int64_t)(intptr_t)p;
  return CT_OK;
}

int ct_cpu_free(int64_t address, int64_t bytes) {
  if (address == 0) return CT_OK;  // free(NULL) is a no-op
  if (bytes < 0)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_free: bytes=%lld is negative", (long long)bytes);
  void* p = (void*)(intptr_t)address;
  uint64_t size = bytes == 0 ? 64 : (((uint64_t)bytes + 63) & ~(uint64_t)63);
  uint64_t cls = ct::size_class(size);
  if (cls < ct::kCacheMin || !ct::cache_put(p, cls)) std::free(p);
  ct::g_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  ct::g_allocs.fetch_sub(1, std::memory_order_relaxed);
  return CT_OK;
}

int64_t ct_cpu_allocated_bytes(void) { return ct::g_bytes.load(std::memory_order_relaxed); }

int64_t ct_cpu_cached_bytes(void) {
  std::lock_guard<std::mutex> lock(ct::g_cache_mutex);
  return (int64_t)ct::g_cached;
}

int ct_cpu_empty_cache(void) {
  ct::cache_empty();
  return CT_OK;
}

int ct_cpu_set_cache_limit(int64_t bytes) {
  if (bytes < 0)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_set_cache_limit: bytes=%lld is negative", (long long)bytes);
  {
    std::lock_guard<std::mutex> lock(ct::g_cache_mutex);
    ct::g_cache_limit = (uint64_t)bytes;
  }
  if ((uint64_t)ct_cpu_cached_bytes() > (uint64_t)bytes) ct::cache_empty();
  return CT_OK;
}
int ct_cpu_malloc_stats(int64_t* out_in_use, int64_t* out_free_held) {
  if (!out_in_use || !out_free_held)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_malloc_stats: an output pointer is NULL");
  struct mallinfo2 mi = mallinfo2();
  *out_in_use = (int64_t)(mi.uordblks + mi.hblkhd);  // arena blocks in use + mmapped blocks
  *out_free_held = (int64_t)mi.fordblks;             // free bytes inside the arenas
  return CT_OK;
}

int ct_cpu_release_free_memory(void) {
  malloc_trim(0);
  return CT_OK;
}

int64_t ct_cpu_live_allocations(void) { return ct::g_allocs.load(std::memory_order_relaxed); }
int64_t ct_cpu_allocation_count(void) { return ct::g_alloc_count.load(std::memory_order_relaxed); }
int64_t ct_cpu_system_allocation_count(void) {
  return ct::g_system_alloc_count.load(std::memory_order_relaxed);
}

int ct_cpu_map_file(const char* path, int64_t* out_address, int64_t* out_length) {
  if (!path || !out_address || !out_length)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_map_file: path, out_address or out_length is NULL");
  *out_address = 0;
  *out_length = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_map_file: cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_map_file: cannot stat %s: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
    close(fd);
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_map_file: %s is not a non-empty regular file", path);
  }
  void* p = mmap(nullptr, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);  // the mapping keeps the file open
  if (p == MAP_FAILED) return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_map_file: cannot map %s: %s", path, strerror(e));
  *out_address = (int64_t)(intptr_t)p;
  *out_length = (int64_t)st.st_size;
  return CT_OK;
}

int ct_cpu_unmap(int64_t address, int64_t length) {
  if (address == 0 || length <= 0)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_unmap: address=%lld length=%lld", (long long)address,
                    (long long)length);
  if (munmap((void*)(intptr_t)address, (size_t)length) != 0)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_unmap: %s", strerror(errno));
  return CT_OK;
}

int ct_cpu_set_num_threads(int n) {
  int procs = omp_get_num_procs();
  if (n <= 0) n = procs;
  ct::g_threads.store(n, std::memory_order_relaxed);
  omp_set_num_threads(n);  // this thread's ICV; every region also passes num_threads(ct::threads())
  openblas_set_num_threads(n);
  return CT_OK;
}

int ct_cpu_get_num_threads(void) { return ct::threads(); }

int ct_cpu_blas_on_openmp(void) { return ct::g_blas_on_openmp.load(std::memory_order_relaxed); }
int64_t ct_cpu_blas_parallel_calls(void) { return ct::g_blas_parallel_calls.load(std::memory_order_relaxed); }

int ct_cpu_has_avx512(void) { return ct::use_avx512() ? 1 : 0; }

int ct_cpu_has_avx512_bf16(void) { return ct::use_avx512_bf16() ? 1 : 0; }
int ct_cpu_has_amx_bf16(void) { return ct::use_amx_bf16() ? 1 : 0; }
int ct_cpu_has_amx_int8(void) { return ct::use_amx_int8() ? 1 : 0; }

int ct_cpu_set_avx512_enabled(int enabled) {
  ct::g_avx512_enabled.store(enabled ? 1 : 0, std::memory_order_relaxed);
  return CT_OK;
}

int ct_cpu_memcpy(int64_t dst, int64_t src, int64_t bytes) {
  if (bytes < 0)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_memcpy: bytes=%lld is negative", (long long)bytes);
  if (bytes == 0) return CT_OK;
  if (!dst || !src)
    return ct::fail(CT_ERR_INVALID_ARG, "ct_cpu_memcpy: dst=%#llx src=%#llx (NULL) for %lld bytes",
                    (unsigned long long)dst, (unsigned long long)src, (long long)bytes);
  char* d = (char*)(intptr_t)dst;
  const char* s = (const char*)(intptr_t)src;
  // Large copies (>= 1 MiB): one contiguous slice per thread (memory bound; 2 threads fill
  // the bus); smaller ones are a plain memcpy on the calling thread.
  if (bytes < (1 << 20)) {
    std::memcpy(d, s, (size_t)bytes);
    return CT_OK;
  }
  ct::parallel_range(bytes, 1, [&](int64_t i0, int64_t i1) {
    if (i1 > i0) std::memcpy(d + i0, s + i0, (size_t)(i1 - i0));
  });
  return CT_OK;
}

}  // extern "C"
