package dev.cortado;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cuda.CachingAllocator;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.tensor.Device;

/**
 * The process-wide settings a user reaches for, in one place: the CPU thread count, the default
 * device, and the allocators' statistics. Each can also be set at startup without code; the table
 * of every system property and environment variable is {@code docs/reference/configuration.md}.
 *
 * <pre>{@code
 * Cortado.setThreads(4);                      // or -Dcortado.threads=4, or OMP_NUM_THREADS=4
 * Cortado.setDefaultDevice(Device.cuda(0));   // or -Dcortado.device=cuda:0
 * Cortado.MemoryStats m = Cortado.memoryStats(Device.CPU);
 * Cortado.setHostMemoryBudget(8L << 30);     // or -Dcortado.hostMemoryBudget=8g
 * }</pre>
 */
public final class Cortado {
    private Cortado() {
    }

    /**
     * Threads used by Cortado's CPU kernels (OpenMP) and by OpenBLAS, which share one pool. At
     * startup: {@code -Dcortado.threads=N} if set, else {@code OMP_NUM_THREADS} if set, else every
     * core the process may use.
     */
    public static int threads() {
        return CpuBackend.threads();
    }

    /** Sets the CPU thread count for the whole process; {@code n <= 0} means every core. */
    public static void setThreads(int n) {
        CpuBackend.setThreads(n);
    }

    /**
     * The device a tensor is created on when no device is named. Unless set, it comes from
     * {@code -Dcortado.device} ({@code auto}, the default, picks {@code cuda:0} when a usable GPU
     * exists, else the CPU).
     */
    public static Device defaultDevice() {
        return Device.defaultDevice();
    }

    /** Sets the device that tensors created without one go to, for every thread. */
    public static void setDefaultDevice(Device device) {
        if (device == null) {
            throw new IllegalArgumentException("setDefaultDevice: device must not be null");
        }
        device.backend(); // a device that cannot run here fails now, not at the first tensor
        Device.setDefault(device);
    }

    /**
     * What an allocator holds, in bytes as it counts them (CUDA: the caching allocator's size
     * classes).
     *
     * @param allocatedBytes  memory in use by live tensors' storage
     * @param liveAllocations number of live blocks
     * @param cachedBytes     freed memory kept for reuse (returned by {@link #emptyCache(Device)})
     */
    public record MemoryStats(long allocatedBytes, long liveAllocations, long cachedBytes) {
    }

    /** The statistics of the allocator of {@code device} (the host's for {@link Device#CPU}). */
    public static MemoryStats memoryStats(Device device) {
        if (device.isCpu()) {
            return new MemoryStats(CpuBackend.allocatedBytes(), CpuBackend.liveAllocations(), CpuBackend.cachedBytes());
        }
        device.backend();
        CachingAllocator allocator = CudaBackend.instance().allocator(device);
        CachingAllocator.Stats s = allocator.stats();
        return new MemoryStats(s.allocatedBytes(), allocator.liveAllocations(), s.reservedBytes() - s.allocatedBytes());
    }

    /**
     * Caps the host memory that live CPU tensors may hold together, in bytes ({@code 0}: no cap,
     * the default unless {@code -Dcortado.hostMemoryBudget=SIZE} is set, e.g. {@code 8g}). An
     * allocation that would pass the cap throws a
     * {@link dev.cortado.backend.DeviceOutOfMemoryException} naming the requested bytes, the
     * budget and the bytes in use, so a runaway allocation fails as an exception instead of the
     * operating system killing the process; freeing tensors returns their bytes to the budget.
     */
    public static void setHostMemoryBudget(long bytes) {
        CpuBackend.setMemoryBudget(bytes);
    }

    /** The host-memory budget in bytes, {@code 0} when there is none (see {@link #setHostMemoryBudget}). */
    public static long hostMemoryBudget() {
        return CpuBackend.memoryBudget();
    }

    /**
     * Cumulative counts of the host allocator since the library loaded.
     *
     * @param allocations       successful allocations (tensor storage and kernel workspaces)
     * @param systemAllocations those of them that took fresh memory from the system instead of
     *                          the block cache
     */
    public record AllocationCounts(long allocations, long systemAllocations) {
        /** What happened between {@code before} and this count. */
        public AllocationCounts minus(AllocationCounts before) {
            return new AllocationCounts(allocations - before.allocations, systemAllocations - before.systemAllocations);
        }
    }

    /**
     * The host allocator's cumulative counts: a loop that allocates no host memory leaves them
     * unchanged (the serving tests check a steady stream of requests that way).
     */
    public static AllocationCounts hostAllocationCounts() {
        long[] c = CpuBackend.allocationCounts();
        return new AllocationCounts(c[0], c[1]);
    }

    /** Returns the cached (freed, kept for reuse) memory of {@code device}'s allocator to the system. */
    public static void emptyCache(Device device) {
        if (device.isCpu()) {
            CpuBackend.emptyCache();
        } else {
            device.backend();
            CudaBackend.instance().allocator(device).emptyCache();
        }
    }
}
