package dev.cortado.backend.cpu;

import dev.cortado.backend.Backend;
import dev.cortado.backend.DeviceOutOfMemoryException;
import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.backend.kernels.NativeStatus;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;

/**
 * The host backend: 64-byte aligned native memory from libcortado_cpu (counted, so leak tests
 * can compare against a baseline), OpenMP kernels, OpenBLAS for GEMM.
 */
public final class CpuBackend implements Backend {
    /** The system property that sets the host-memory budget at startup (a byte count: 512m, 8g). */
    public static final String BUDGET_PROPERTY = "cortado.hostMemoryBudget";
    /** Bytes of live host blocks handed out by {@link #allocate} (requested sizes), always counted. */
    private static final java.util.concurrent.atomic.AtomicLong inUse = new java.util.concurrent.atomic.AtomicLong();
    /** The host-memory budget in bytes (0: none); see {@link #setMemoryBudget}. */
    private static volatile long budget = startupBudget();

    public static final CpuBackend INSTANCE = new CpuBackend();

    private final String unavailableReason;

    private CpuBackend() {
        String reason = null;
        try {
            NativeCpu.ensureLoaded();
            int threads = startupThreads();
            if (threads > 0) {
                NativeCpu.ct_cpu_set_num_threads(threads);
            }
        } catch (LinkageError e) {
            reason = "libcortado_cpu could not be loaded: " + e;
        }
        unavailableReason = reason;
    }

    /**
     * The thread count asked for at startup: {@code -Dcortado.threads=N}, else the first number of
     * {@code OMP_NUM_THREADS} (as libgomp, OpenBLAS and PyTorch read it), else 0 (every core).
     */
    static int startupThreads() {
        int threads = Integer.getInteger("cortado.threads", 0);
        if (threads > 0) {
            return threads;
        }
        String omp = System.getenv("OMP_NUM_THREADS");
        if (omp != null) {
            try {
                return Math.max(0, Integer.parseInt(omp.split(",")[0].trim()));
            } catch (NumberFormatException e) {
                return 0; // libgomp ignores a malformed value too
            }
        }
        return 0;
    }

    /** The budget asked for at startup: {@code -Dcortado.hostMemoryBudget=SIZE}, else 0 (none). */
    static long startupBudget() {
        String v = System.getProperty(BUDGET_PROPERTY);
        return v == null || v.isBlank() ? 0 : parseBytes(v, BUDGET_PROPERTY);
    }

    /**
     * A byte count written as a number with an optional binary suffix: {@code 1073741824},
     * {@code 512m}, {@code 8g}, {@code 64k}, {@code 1t} (k = 1024; case-insensitive, an optional
     * trailing {@code b} or {@code ib}, as in {@code 8GiB}).
     */
    static long parseBytes(String text, String what) {
        String t = text.trim().toLowerCase(java.util.Locale.ROOT).replace("_", "");
        if (t.endsWith("ib")) {
            t = t.substring(0, t.length() - 2);
        } else if (t.endsWith("b")) {
            t = t.substring(0, t.length() - 1);
        }
        int shift = 0;
        if (!t.isEmpty()) {
            switch (t.charAt(t.length() - 1)) {
                case 'k' -> shift = 10;
                case 'm' -> shift = 20;
                case 'g' -> shift = 30;
                case 't' -> shift = 40;
                default -> shift = -1;
            }
            if (shift >= 0) {
                t = t.substring(0, t.length() - 1).trim();
            } else {
                shift = 0;
            }
        }
        try {
            long n = Long.parseLong(t);
            if (n < 0 || n > (Long.MAX_VALUE >> shift)) {
                throw new NumberFormatException();
            }
            return n << shift;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(what + " = \"" + text + "\" is not a byte count (a whole number of "
                    + "bytes, optionally with k, m, g or t: 512m, 8g)");
        }
    }

    /** Throws the exception that fits a failed native call; {@code context} names op and arguments. */
    public static RuntimeException failure(int status, String context) {
        return NativeStatus.toException(status, NativeCpu.ct_cpu_last_error().getString(), context);
    }

    /** Checks a native status; the context string is only built by callers on failure paths. */
    public static void check(int status, String context) {
        if (status != NativeStatus.OK) {
            throw failure(status, context);
        }
    }

    /** Sets the threads used by Cortado's OpenMP kernels and by OpenBLAS; n <= 0 means all cores. */
    public static void setThreads(int n) {
        INSTANCE.requireAvailable();
        check(NativeCpu.ct_cpu_set_num_threads(n), "cpu.setThreads(" + n + ")");
    }

    public static int threads() {
        INSTANCE.requireAvailable();
        return NativeCpu.ct_cpu_get_num_threads();
    }

    /**
     * True when OpenBLAS's parallel GEMM jobs run on Cortado's OpenMP threads (the default: one
     * thread pool, so OpenBLAS's idle workers no longer spin on the cores the next kernel needs);
     * false when the environment variable {@code CORTADO_BLAS_THREADS=openblas} keeps OpenBLAS's
     * own pthreads.
     */
    public static boolean blasOnOpenMp() {
        INSTANCE.requireAvailable();
        return NativeCpu.ct_cpu_blas_on_openmp() == 1;
    }

    /** Bytes of host memory currently allocated by Cortado's CPU allocator. */
    public static long allocatedBytes() {
        INSTANCE.requireAvailable();
        return NativeCpu.ct_cpu_allocated_bytes();
    }

    /** Number of live host allocations. */
    public static long liveAllocations() {
        INSTANCE.requireAvailable();
        return NativeCpu.ct_cpu_live_allocations();
    }

    /**
     * Successful host allocations since the library loaded (cumulative; every storage and every
     * kernel workspace), and how many of them took fresh memory from the system rather than the
     * block cache: {@code {allocations, systemAllocations}}.
     */
    public static long[] allocationCounts() {
        INSTANCE.requireAvailable();
        return new long[] {NativeCpu.ct_cpu_allocation_count(), NativeCpu.ct_cpu_system_allocation_count()};
    }

    /** Bytes of freed large host blocks kept for reuse. */
    public static long cachedBytes() {
        INSTANCE.requireAvailable();
        return NativeCpu.ct_cpu_cached_bytes();
    }

    /** Returns every cached host block to the system. */
    public static void emptyCache() {
        INSTANCE.requireAvailable();
        check(NativeCpu.ct_cpu_empty_cache(), "cpu.emptyCache");
    }

    /**
     * The process's C heap (glibc malloc, every arena): bytes in live malloc blocks and bytes
     * malloc holds free. It counts every native user of the process, the JVM's own mallocs (the
     * JIT compilers' arenas among them) and the BLAS library's, and the block cache above.
     */
    public record MallocStats(long inUseBytes, long freeHeldBytes) {}

    /** The C heap as malloc sees it now (see {@link MallocStats}). */
    public static MallocStats mallocStats() {
        INSTANCE.requireAvailable();
        long[] inUse = new long[1];
        long[] freeHeld = new long[1];
        check(NativeCpu.ct_cpu_malloc_stats(inUse, freeHeld), "cpu.mallocStats");
        return new MallocStats(inUse[0], freeHeld[0]);
    }

    /**
     * Gives the free memory malloc holds back to the operating system ({@code malloc_trim}): what a
     * long-running server calls after a burst, and what a resident-memory check calls before it
     * reads the resident size, so that memory freed but kept by malloc is not taken for a leak.
     * The block cache is left alone ({@link #emptyCache} empties it).
     */
    public static void releaseFreeMemory() {
        INSTANCE.requireAvailable();
        check(NativeCpu.ct_cpu_release_free_memory(), "cpu.releaseFreeMemory");
    }

    /** Caps the host block cache (0 disables it). */
    public static void setCacheLimit(long bytes) {
        INSTANCE.requireAvailable();
        check(NativeCpu.ct_cpu_set_cache_limit(bytes), "cpu.setCacheLimit(" + bytes + ")");
    }

    /**
     * Sets the host-memory budget: the most bytes that live host tensors (every block of
     * {@link #allocate}) may hold together; an allocation that would go past it throws a
     * {@link DeviceOutOfMemoryException} naming the request, the budget and the bytes in use,
     * instead of growing until the operating system kills the process. {@code 0} removes the
     * budget (the default, unless {@code -Dcortado.hostMemoryBudget} is set). Lowering it below
     * what is in use is allowed: only new allocations are refused until enough is freed. Freed
     * blocks kept for reuse ({@link #cachedBytes}) are not counted; their own cap is
     * {@link #setCacheLimit}.
     */
    public static void setMemoryBudget(long bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("cpu.setMemoryBudget: bytes = " + bytes + " is negative (0 removes the budget)");
        }
        budget = bytes;
    }

    /** The host-memory budget in bytes, 0 when there is none (see {@link #setMemoryBudget}). */
    public static long memoryBudget() {
        return budget;
    }

    /** Bytes of live host tensor memory counted against the budget (requested sizes). */
    public static long budgetedBytes() {
        return inUse.get();
    }

    /** Whether the AVX-512 kernel paths are in use on this CPU. */
    public static boolean avx512() {
        INSTANCE.requireAvailable();
        return NativeCpu.ct_cpu_has_avx512() != 0;
    }

    /**
     * The bfloat16 GEMM kernel in use (native/cpu/gemm_bf16.cpp): {@code "AMX"} (AMX-BF16 tiles),
     * {@code "AVX512_BF16"} (vdpbf16ps register tiles) or {@code "float32 sgemm"} (bfloat16
     * widened to float32).
     */
    public static String bf16GemmKernel() {
        INSTANCE.requireAvailable();
        return switch (NativeCpu.ct_cpu_bf16_gemm_kernel()) {
            case NativeCodes.BF16_GEMM_AMX -> "AMX";
            case NativeCodes.BF16_GEMM_DPBF16 -> "AVX512_BF16";
            default -> "float32 sgemm";
        };
    }

    /**
     * The int8 GEMM kernel in use (native/cpu/quant_gemm.cpp; the int8 convolution runs on it too):
     * {@code "AMX"} (AMX-INT8 tiles), {@code "AVX512_VNNI"} (vpdpbusd register tiles) or
     * {@code "AVX2"} (exact 16-bit products). All three give the same exact int32 sums.
     */
    public static String int8GemmKernel() {
        INSTANCE.requireAvailable();
        return switch (NativeCpu.ct_cpu_qgemm_kernel()) {
            case NativeCodes.QGEMM_AMX -> "AMX";
            case NativeCodes.QGEMM_VNNI -> "AVX512_VNNI";
            default -> "AVX2";
        };
    }

    /** Enables or disables the AVX-512 paths (the AVX2 baseline is used when disabled). */
    public static void setAvx512Enabled(boolean enabled) {
        INSTANCE.requireAvailable();
        NativeCpu.ct_cpu_set_avx512_enabled(enabled ? 1 : 0);
    }

    private void requireAvailable() {
        if (unavailableReason != null) {
            throw new dev.cortado.backend.BackendUnavailableException(unavailableReason);
        }
    }

    /** Per-thread 8-byte native slot receiving the address from ct_cpu_alloc (no JNI array copy). */
    private static final class Slot {
        final java.nio.ByteBuffer buffer = java.nio.ByteBuffer.allocateDirect(8).order(java.nio.ByteOrder.nativeOrder());
        final long address = dev.cortado.backend.kernels.HostMemory.addressOf(buffer);
    }

    private static final ThreadLocal<Slot> ALLOC_SLOT = ThreadLocal.withInitial(Slot::new);

    @Override
    public long allocate(Device device, long bytes) {
        long counted = Math.max(0, bytes); // a negative size is refused by the native call
        reserve(counted);
        try {
            return allocateNative(bytes);
        } catch (RuntimeException | Error e) {
            inUse.addAndGet(-counted);
            throw e;
        }
    }

    /** Counts {@code bytes} as in use, or throws if that would pass the budget. */
    private static void reserve(long bytes) {
        long limit = budget;
        if (limit <= 0) {
            inUse.addAndGet(bytes);
            return;
        }
        long now;
        do {
            now = inUse.get();
            if (bytes > limit - now) {
                throw new DeviceOutOfMemoryException("cpu: allocating " + bytes + " bytes would exceed the host memory budget of "
                        + limit + " bytes (" + now + " bytes in use by live tensors, " + Math.max(0, limit - now)
                        + " left; the budget is set by -D" + BUDGET_PROPERTY + " or Cortado.setHostMemoryBudget)", bytes);
            }
        } while (!inUse.compareAndSet(now, now + bytes));
    }

    private long allocateNative(long bytes) {
        Slot slot = ALLOC_SLOT.get();
        int status = NativeCpu.ct_cpu_alloc_at(bytes, slot.address);
        if (status == NativeStatus.OUT_OF_MEMORY) {
            throw new DeviceOutOfMemoryException("cpu: out of host memory allocating " + bytes + " bytes ("
                    + NativeCpu.ct_cpu_allocated_bytes() + " bytes already allocated by Cortado in "
                    + NativeCpu.ct_cpu_live_allocations() + " blocks)", bytes);
        }
        check(status, "cpu.allocate(" + bytes + " bytes)");
        return slot.buffer.getLong(0);
    }

    @Override
    public long[] mapFile(java.nio.file.Path file) {
        requireAvailable();
        byte[] utf8 = file.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
        byte[] path = java.util.Arrays.copyOf(utf8, utf8.length + 1); // NUL-terminated
        long[] address = new long[1];
        long[] length = new long[1];
        int status = NativeCpu.ct_cpu_map_file(path, address, length);
        if (status != NativeStatus.OK) {
            throw failure(status, "cpu.mapFile(" + file + ")");
        }
        return new long[] {address[0], length[0]};
    }

    @Override
    public void unmapFile(long address, long length) {
        check(NativeCpu.ct_cpu_unmap(address, length), "cpu.unmapFile(" + length + " bytes)");
    }

    @Override
    public void free(Device device, long address, long bytes) {
        check(NativeCpu.ct_cpu_free(address, bytes), "cpu.free");
        if (address != 0 && bytes >= 0) {
            inUse.addAndGet(-bytes);
        }
    }

    @Override
    public void copyFromHost(Device device, long dst, long hostSrc, long bytes) {
        check(NativeCpu.ct_cpu_memcpy(dst, hostSrc, bytes), "cpu.copyFromHost(" + bytes + " bytes)");
    }

    @Override
    public void copyToHost(Device device, long hostDst, long src, long bytes) {
        check(NativeCpu.ct_cpu_memcpy(hostDst, src, bytes), "cpu.copyToHost(" + bytes + " bytes)");
    }

    @Override
    public void copy(Device device, DType dstType, long dst, long[] dstStrides,
                     DType srcType, long src, long[] srcStrides, long[] shape) {
        NativeArgs args = NativeArgs.get();
        int status = NativeCpu.ct_cpu_copy(dstType.code(), srcType.code(), shape.length, args.put(shape),
                dst, args.put(dstStrides), src, args.put(srcStrides), 0);
        if (status != NativeStatus.OK) {
            throw failure(status, "copy(" + srcType + " -> " + dstType + ", shape "
                    + java.util.Arrays.toString(shape) + ")");
        }
    }

    @Override
    public void fill(Device device, DType type, long address, long count, double value) {
        check(NativeCpu.ct_cpu_fill(type.code(), count, address, value, 0), "fill(" + type + ", " + value + ")");
    }

    @Override
    public void unpackInt4(Device device, long count, long packedSrc, long int8Dst) {
        check(NativeCpu.ct_cpu_int4_unpack(count, packedSrc, int8Dst, 0), "int4 unpack of " + count + " values");
    }

    @Override
    public void packInt4(Device device, long count, long int8Src, long packedDst) {
        check(NativeCpu.ct_cpu_int4_pack(count, int8Src, packedDst, 0), "int4 pack of " + count + " values");
    }

    @Override
    public boolean isAvailable() {
        return unavailableReason == null;
    }

    @Override
    public String unavailableReason() {
        return unavailableReason == null ? "" : unavailableReason;
    }
}
