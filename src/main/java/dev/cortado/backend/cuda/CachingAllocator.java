package dev.cortado.backend.cuda;

import dev.cortado.backend.DeviceOutOfMemoryException;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;

/**
 * A caching allocator for device memory, in the manner of PyTorch's: freed blocks are kept in
 * bins by size class and by the stream they were used on, and handed out again to allocations
 * of the same size class on the same stream without calling cudaMalloc/cudaFree (which
 * synchronise the device). Size classes: multiples of 512 bytes up to 1 MiB, multiples of 2 MiB
 * above. When the device is out of memory the cache is returned to the device and the
 * allocation retried once; if it still fails, a {@link DeviceOutOfMemoryException} reports the
 * request and the statistics.
 *
 * <p>A block freed on one stream is reused only on that stream, so work queued on the stream
 * that last used it is ordered before its next use. Tensors used on several streams must be
 * synchronised by the caller (events) before they are freed.
 */
public final class CachingAllocator {
    static final long SMALL_LIMIT = 1L << 20;
    static final long SMALL_ROUND = 512;
    static final long LARGE_ROUND = 2L << 20;

    /** The raw device allocator underneath: cudaMalloc/cudaFree, or a fake in tests. */
    public interface RawMemory {
        /** Allocates; returns 0 when the device is out of memory; throws on other errors. */
        long malloc(long bytes);

        void free(long address);

        /** Free and total device memory for error messages ({-1, -1} if unknown). */
        long[] memInfo();
    }

    /** Counters of one allocator; bytes are size-class bytes. */
    public record Stats(long allocatedBytes, long reservedBytes, long peakAllocatedBytes, long peakReservedBytes,
                        long allocations, long cacheHits, long deviceMallocs, long cacheFlushes) {
    }

    private record Block(long size, long stream) {
    }

    private final String deviceName;
    private final RawMemory raw;
    private final Map<Long, Map<Long, ArrayDeque<Long>>> cache = new HashMap<>();
    private final Map<Long, Block> live = new HashMap<>();
    private long allocated;
    private long reserved;
    private long peakAllocated;
    private long peakReserved;
    private long allocations;
    private long cacheHits;
    private long deviceMallocs;
    private long cacheFlushes;

    public CachingAllocator(String deviceName, RawMemory raw) {
        this.deviceName = deviceName;
        this.raw = raw;
    }

    /** The size class a request of {@code bytes} is served from. */
    static long sizeClass(long bytes) {
        long b = Math.max(bytes, 1);
        if (b <= SMALL_LIMIT) {
            return (b + SMALL_ROUND - 1) / SMALL_ROUND * SMALL_ROUND;
        }
        return (b + LARGE_ROUND - 1) / LARGE_ROUND * LARGE_ROUND;
    }

    public synchronized long allocate(long bytes, long stream) {
        if (bytes < 0) {
            throw new IllegalArgumentException("allocate: negative size " + bytes + " on " + deviceName);
        }
        long size = sizeClass(bytes);
        allocations++;
        Long address = takeCached(size, stream);
        if (address != null) {
            cacheHits++;
        } else {
            long a = raw.malloc(size);
            if (a == 0) {
                emptyCache();
                a = raw.malloc(size);
                if (a == 0) {
                    long[] info = raw.memInfo();
                    throw new DeviceOutOfMemoryException(String.format(
                            "CUDA out of memory on %s: tried to allocate %s; Cortado has %s allocated, %s reserved "
                                    + "(peak %s allocated); the device has %s free of %s",
                            deviceName, human(size), human(allocated), human(reserved), human(peakAllocated),
                            info[0] < 0 ? "?" : human(info[0]), info[1] < 0 ? "?" : human(info[1])), bytes);
                }
            }
            deviceMallocs++;
            reserved += size;
            peakReserved = Math.max(peakReserved, reserved);
            address = a;
        }
        live.put(address, new Block(size, stream));
        allocated += size;
        peakAllocated = Math.max(peakAllocated, allocated);
        return address;
    }

    private Long takeCached(long size, long stream) {
        Map<Long, ArrayDeque<Long>> bins = cache.get(stream);
        if (bins == null) {
            return null;
        }
        ArrayDeque<Long> bin = bins.get(size);
        return bin == null ? null : bin.pollLast();
    }

    public synchronized void free(long address) {
        Block block = live.remove(address);
        if (block == null) {
            throw new IllegalArgumentException("free: address 0x" + Long.toHexString(address)
                    + " was not allocated by the caching allocator of " + deviceName);
        }
        allocated -= block.size();
        cache.computeIfAbsent(block.stream(), s -> new HashMap<>())
                .computeIfAbsent(block.size(), s -> new ArrayDeque<>())
                .addLast(address);
    }

    /** Returns every cached (unused) block to the device. */
    public synchronized void emptyCache() {
        cacheFlushes++;
        for (Map<Long, ArrayDeque<Long>> bins : cache.values()) {
            for (Map.Entry<Long, ArrayDeque<Long>> e : bins.entrySet()) {
                for (long a : e.getValue()) {
                    raw.free(a);
                    reserved -= e.getKey();
                }
            }
        }
        cache.clear();
    }

    public synchronized Stats stats() {
        return new Stats(allocated, reserved, peakAllocated, peakReserved, allocations, cacheHits, deviceMallocs,
                cacheFlushes);
    }

    /** Number of blocks handed out and not yet freed. */
    public synchronized long liveAllocations() {
        return live.size();
    }

    public synchronized void resetPeak() {
        peakAllocated = allocated;
        peakReserved = reserved;
    }

    static String human(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(java.util.Locale.ROOT, "%.2f %s", v, units[u]);
    }
}
