package dev.cortado.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CachingAllocator;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The caching allocator's policy, against a fake device with a fixed capacity. */
class CachingAllocatorTest {

    /** A device of {@code capacity} bytes handing out increasing addresses. */
    static final class FakeDevice implements CachingAllocator.RawMemory {
        final long capacity;
        final Map<Long, Long> blocks = new HashMap<>();
        long used;
        long next = 0x1000;
        int mallocs;
        int frees;

        FakeDevice(long capacity) {
            this.capacity = capacity;
        }

        @Override
        public long malloc(long bytes) {
            if (used + bytes > capacity) {
                return 0;
            }
            mallocs++;
            used += bytes;
            long a = next;
            next += bytes + 256;
            blocks.put(a, bytes);
            return a;
        }

        @Override
        public void free(long address) {
            frees++;
            used -= blocks.remove(address);
        }

        @Override
        public long[] memInfo() {
            return new long[] {capacity - used, capacity};
        }
    }

    @Test
    void reusesFreedBlocksOfTheSameSizeClassOnTheSameStream() {
        FakeDevice dev = new FakeDevice(1L << 30);
        CachingAllocator alloc = new CachingAllocator("fake:0", dev);
        long a = alloc.allocate(1000, 0);
        alloc.free(a);
        long b = alloc.allocate(1024, 0); // same 512-byte class (1024)
        assertEquals(a, b);
        assertEquals(1, dev.mallocs);
        long c = alloc.allocate(1000, 7); // other stream: not reused
        assertNotEquals(b, c);
        assertEquals(2, dev.mallocs);
        CachingAllocator.Stats s = alloc.stats();
        assertEquals(2048, s.allocatedBytes());
        assertEquals(2048, s.reservedBytes());
        assertEquals(1, s.cacheHits());
        assertEquals(3, s.allocations());
    }

    @Test
    void tracksPeaksAndReservedVersusAllocated() {
        FakeDevice dev = new FakeDevice(1L << 30);
        CachingAllocator alloc = new CachingAllocator("fake:0", dev);
        long big = alloc.allocate(3L << 20, 0); // rounded to 4 MiB
        long small = alloc.allocate(10, 0); // 512 B
        alloc.free(big);
        CachingAllocator.Stats s = alloc.stats();
        assertEquals(512, s.allocatedBytes());
        assertEquals((4L << 20) + 512, s.reservedBytes());
        assertEquals((4L << 20) + 512, s.peakAllocatedBytes());
        alloc.emptyCache();
        assertEquals(512, alloc.stats().reservedBytes());
        assertEquals(1, dev.frees);
        alloc.free(small);
        assertThrows(IllegalArgumentException.class, () -> alloc.free(small), "double free is caught");
    }

    @Test
    void outOfMemoryFlushesTheCacheRetriesThenReports() {
        FakeDevice dev = new FakeDevice(10L << 20);
        CachingAllocator alloc = new CachingAllocator("fake:0", dev);
        long a = alloc.allocate(6L << 20, 0);
        alloc.free(a); // 6 MiB cached
        long b = alloc.allocate(8L << 20, 0); // needs the cache flushed
        assertTrue(b != 0);
        assertEquals(1, alloc.stats().cacheFlushes());
        DeviceOutOfMemoryException e = assertThrows(DeviceOutOfMemoryException.class,
                () -> alloc.allocate(4L << 20, 0));
        assertTrue(e.getMessage().contains("fake:0") && e.getMessage().contains("4.00 MiB")
                && e.getMessage().contains("8.00 MiB allocated") && e.getMessage().contains("of 10.00 MiB"), e.getMessage());
        assertEquals(4L << 20, e.requestedBytes());
    }
}
