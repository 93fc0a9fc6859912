package dev.cortado.reliability;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.backend.DeviceOutOfMemoryException;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cuda.CachingAllocator;
import dev.cortado.backend.kernels.HostMemory;
import dev.cortado.nn.Activation;
import dev.cortado.nn.LayerNorm;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.nn.Sequential;
import dev.cortado.onnx.InferenceSession;
import dev.cortado.onnx.MiniLmModels;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Function;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * The threading rules of docs/reliability.md#concurrency, each checked: a shared model (an ONNX
 * inference session, an nn module in eval mode) gives 16 threads bitwise the results one thread
 * gets; scopes and the tensors they own reject use from another thread with an
 * {@link IllegalStateException} naming the threads (and the tensor) and stay intact; racing
 * closes of one unowned tensor free it once; the host block cache and the caching allocator
 * hand no block to two holders at once under 16 threads and balance their counters.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class ConcurrencyTest {
    static final int THREADS = 16;

    /** Runs {@code task(t)} on {@code threads} threads started together; the results by thread. */
    static <T> List<T> onThreads(int threads, Function<Integer, T> task) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            CyclicBarrier start = new CyclicBarrier(threads);
            List<Future<T>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int id = t;
                futures.add(pool.submit((Callable<T>) () -> {
                    start.await();
                    return task.apply(id);
                }));
            }
            List<T> out = new ArrayList<>();
            for (Future<T> f : futures) {
                out.add(f.get(5, TimeUnit.MINUTES));
            }
            return out;
        } finally {
            pool.shutdownNow();
        }
    }

    private static int[] bits(float[] v) {
        int[] b = new int[v.length];
        for (int i = 0; i < v.length; i++) {
            b[i] = Float.floatToRawIntBits(v[i]);
        }
        return b;
    }

    // ------------------------------------------------------------------ shared models

    @Test
    void sixteenThreadsOnOneInferenceSessionGetBitwiseTheSingleThreadResults() throws Exception {
        int in = 784;
        int requests = 6;
        float[][] inputs = new float[requests][];
        int[] batches = {1, 3, 8, 1, 5, 2};
        SplittableRandom r = new SplittableRandom(20);
        for (int i = 0; i < requests; i++) {
            inputs[i] = TestModels.gaussian(r, batches[i] * in, 1.0);
        }
        try (InferenceSession s = InferenceSession.builder(TestModels.mlp(7, in, 256, 10)).device(Device.CPU)
                .maxConcurrentRuns(THREADS).build()) {
            Function<Integer, int[][]> all = t -> {
                int[][] out = new int[requests][];
                for (int k = 0; k < requests; k++) {
                    int i = (k + t) % requests; // threads visit the requests in different orders
                    try (Scope scope = Scope.open()) {
                        Tensor y = s.run(Map.of("x", Tensor.of(inputs[i], Device.CPU, batches[i], in))).get("y");
                        out[i] = bits(y.toFloatArray());
                    }
                }
                return out;
            };
            int[][] single = all.apply(0);
            List<int[][]> many = onThreads(THREADS, all);
            for (int t = 0; t < THREADS; t++) {
                for (int i = 0; i < requests; i++) {
                    assertArrayEquals(single[i], many.get(t)[i], "thread " + t + ", request " + i);
                }
            }
        }
    }

    /** The same with all-MiniLM-L6-v2 (skipped when its jar cannot be had, as in MiniLmTest). */
    @Test
    void sixteenThreadsOnOneMiniLmSessionGetBitwiseTheSingleThreadResults() throws Exception {
        var proto = MiniLmModels.model(MiniLmModels.Variant.FP32);
        long[][] ids = {{101, 7592, 2088, 102}, {101, 2023, 2003, 1037, 3231, 1012, 102}}; // two short sentences: 34 runs
        try (InferenceSession s = InferenceSession.builder(proto).device(Device.CPU).maxConcurrentRuns(THREADS)
                .build()) {
            Function<Integer, int[][]> all = t -> {
                int[][] out = new int[ids.length][];
                for (int k = 0; k < ids.length; k++) {
                    int i = (k + t) % ids.length;
                    int n = ids[i].length;
                    long[] ones = new long[n];
                    Arrays.fill(ones, 1);
                    try (Scope scope = Scope.open()) {
                        Tensor y = s.run(Map.of("input_ids", Tensor.of(ids[i], Device.CPU, 1, n),
                                "attention_mask", Tensor.of(ones, Device.CPU, 1, n),
                                "token_type_ids", Tensor.of(new long[n], Device.CPU, 1, n))).get("last_hidden_state");
                        out[i] = bits(y.toFloatArray());
                    }
                }
                return out;
            };
            int[][] single = all.apply(0);
            List<int[][]> many = onThreads(THREADS, all);
            for (int t = 0; t < THREADS; t++) {
                for (int i = 0; i < ids.length; i++) {
                    assertArrayEquals(single[i], many.get(t)[i], "MiniLM, thread " + t + ", sentence " + i);
                }
            }
        }
    }

    @Test
    void sixteenThreadsOnOneModuleInEvalModeGetBitwiseTheSingleThreadResults() throws Exception {
        int in = 96;
        int inputs = 5;
        float[][] xs = new float[inputs][];
        SplittableRandom r = new SplittableRandom(21);
        for (int i = 0; i < inputs; i++) {
            xs[i] = TestModels.gaussian(r, (i + 1) * 7 * in, 1.0);
        }
        try (Module model = new Sequential(new Linear(in, 128), new LayerNorm(128), Activation.relu(),
                new Linear(128, 33))) {
            model.eval();
            Function<Integer, int[][]> all = t -> {
                int[][] out = new int[inputs][];
                try (var off = Autograd.noGrad()) {
                    for (int k = 0; k < inputs; k++) {
                        int i = (k + t) % inputs;
                        try (Scope scope = Scope.open()) {
                            out[i] = bits(model.forward(Tensor.of(xs[i], Device.CPU, (i + 1) * 7, in)).toFloatArray());
                        }
                    }
                }
                return out;
            };
            int[][] single = all.apply(0);
            List<int[][]> many = onThreads(THREADS, all);
            for (int t = 0; t < THREADS; t++) {
                for (int i = 0; i < inputs; i++) {
                    assertArrayEquals(single[i], many.get(t)[i], "thread " + t + ", input " + i);
                }
            }
        }
    }

    // ------------------------------------------------------------------ confinement

    /** Runs {@code body} on a new thread named {@code name}; what it threw (null if nothing). */
    static Throwable fromThread(String name, Runnable body) throws InterruptedException {
        AtomicReference<Throwable> thrown = new AtomicReference<>();
        Thread t = new Thread(() -> {
            try {
                body.run();
            } catch (Throwable e) {
                thrown.set(e);
            }
        }, name);
        t.start();
        t.join();
        return thrown.get();
    }

    @Test
    void aScopeAndTheTensorsItOwnsRejectAnotherThreadAndStayIntact() throws Exception {
        long live = CpuBackend.liveAllocations();
        String me = Thread.currentThread().getName();
        try (Scope scope = Scope.open()) {
            Tensor owned = Tensor.of(new float[] {1, 2, 3}, Device.CPU, 3);
            Tensor view = owned.narrow(0, 1, 2);

            Throwable close = fromThread("intruder-close", view::close);
            assertTrue(close instanceof IllegalStateException, "closing an owned tensor elsewhere: " + close);
            assertTrue(close.getMessage().contains("float32[2] on cpu") && close.getMessage().contains("'" + me + "'")
                    && close.getMessage().contains("'intruder-close'"), close.getMessage());
            assertFalse(view.isClosed(), "the rejected close changed nothing");

            Throwable keep = fromThread("intruder-keep", () -> scope.keep(owned));
            assertTrue(keep instanceof IllegalStateException && keep.getMessage().contains("'intruder-keep'")
                    && keep.getMessage().contains("'" + me + "'"), "keep elsewhere: " + keep);
            assertTrue(scope.owns(owned), "the rejected keep changed nothing");

            Throwable closeScope = fromThread("intruder-scope", scope::close);
            assertTrue(closeScope instanceof IllegalStateException
                    && closeScope.getMessage().contains("'intruder-scope'"), "closing the scope elsewhere: " + closeScope);

            assertArrayEquals(new float[] {2, 3}, view.toFloatArray(), 0f, "the data survived");
            assertEquals(2, scope.size());
        }
        assertEquals(live, CpuBackend.liveAllocations(), "the scope freed everything on its own thread");
    }

    @Test
    void unownedTensorsMayBeHandedToAnotherThreadAndRacingClosesFreeOnce() throws Exception {
        long live = CpuBackend.liveAllocations();
        // made outside any scope: e.g. a result handed from a worker to the caller
        Tensor made = Tensor.of(new float[] {4, 5}, Device.CPU, 2);
        assertNull(fromThread("receiver", made::close));
        assertTrue(made.isClosed());
        for (int round = 0; round < 50; round++) {
            Tensor base = Tensor.of(new float[] {1, 2, 3, 4}, Device.CPU, 4);
            Tensor view = base.narrow(0, 0, 2);
            onThreads(8, t -> {
                view.close(); // 8 racing closes of one view release its storage reference once
                return null;
            });
            assertTrue(view.isClosed());
            assertArrayEquals(new float[] {1, 2, 3, 4}, base.toFloatArray(), 0f, "round " + round + ": base intact");
            base.close();
        }
        assertEquals(live, CpuBackend.liveAllocations());
    }

    // ------------------------------------------------------------------ allocators under load

    /** Writes a pattern of {@code tag} into the first 256 bytes of a block and, when it has 512 or more, its last 256. */
    static void stamp(long address, long bytes, long tag) {
        int n = (int) Math.min(32, bytes / 8);
        long[] p = new long[n];
        for (int i = 0; i < n; i++) {
            p[i] = tag * 31 + i;
        }
        HostMemory.write(address, p);
        if (bytes / 8 >= 2L * n) { // a tail that does not overlap the head
            HostMemory.write(address + (bytes / 8 - n) * 8, p);
        }
    }

    static boolean stampIntact(long address, long bytes, long tag) {
        int n = (int) Math.min(32, bytes / 8);
        long[] p = new long[n];
        HostMemory.read(address, p);
        for (int i = 0; i < n; i++) {
            if (p[i] != tag * 31 + i) {
                return false;
            }
        }
        if (bytes / 8 >= 2L * n) { // a tail that does not overlap the head
            HostMemory.read(address + (bytes / 8 - n) * 8, p);
            for (int i = 0; i < n; i++) {
                if (p[i] != tag * 31 + i) {
                    return false;
                }
            }
        }
        return true;
    }

    /** Sizes around the block cache's 256 KiB threshold and a few repeated classes, so blocks come back. */
    static long randomSize(SplittableRandom r) {
        return switch (r.nextInt(4)) {
            case 0 -> r.nextLong(8, 4096);
            case 1 -> r.nextLong(200_000, 300_000);
            case 2 -> (1L << 20) * (1 + r.nextInt(4));
            default -> r.nextLong(256 * 1024, 3L << 20);
        };
    }

    @Test
    void theHostBlockCacheHandsNoBlockOutTwiceUnderSixteenThreads() throws Exception {
        long bytes0 = CpuBackend.allocatedBytes();
        long live0 = CpuBackend.liveAllocations();
        ConcurrentHashMap<Long, Long> held = new ConcurrentHashMap<>();
        AtomicLong duplicates = new AtomicLong();
        AtomicLong corrupted = new AtomicLong();
        AtomicBoolean stop = new AtomicBoolean();
        Thread flusher = new Thread(() -> { // emptying the cache races the takes and puts
            while (!stop.get()) {
                CpuBackend.emptyCache();
                Thread.onSpinWait();
            }
        }, "cache-flusher");
        flusher.start();
        try {
            List<Long> ops = onThreads(THREADS, t -> {
                SplittableRandom r = new SplittableRandom(100 + t);
                long[] addr = new long[6];
                long[] size = new long[6];
                long[] tag = new long[6];
                long count = 0;
                for (int it = 0; it < 3000; it++) {
                    int slot = r.nextInt(addr.length);
                    if (addr[slot] != 0) {
                        if (!stampIntact(addr[slot], size[slot], tag[slot])) {
                            corrupted.incrementAndGet();
                        }
                        held.remove(addr[slot]);
                        CpuBackend.INSTANCE.free(Device.CPU, addr[slot], size[slot]);
                        addr[slot] = 0;
                    } else {
                        size[slot] = randomSize(r);
                        addr[slot] = CpuBackend.INSTANCE.allocate(Device.CPU, size[slot]);
                        tag[slot] = ((long) t << 32) | it;
                        if (held.putIfAbsent(addr[slot], tag[slot]) != null) {
                            duplicates.incrementAndGet();
                        }
                        stamp(addr[slot], size[slot], tag[slot]);
                        count++;
                    }
                }
                for (int slot = 0; slot < addr.length; slot++) {
                    if (addr[slot] != 0) {
                        if (!stampIntact(addr[slot], size[slot], tag[slot])) {
                            corrupted.incrementAndGet();
                        }
                        held.remove(addr[slot]);
                        CpuBackend.INSTANCE.free(Device.CPU, addr[slot], size[slot]);
                    }
                }
                return count;
            });
            long made = ops.stream().mapToLong(Long::longValue).sum();
            assertTrue(made > THREADS * 1000L, "allocations made: " + ops);
            System.out.println("host block cache stress: " + made + " allocations by " + THREADS
                    + " threads, cache emptied concurrently; cached now " + CpuBackend.cachedBytes() + " B");
        } finally {
            stop.set(true);
            flusher.join();
        }
        assertEquals(0, duplicates.get(), "blocks handed to two holders at once");
        assertEquals(0, corrupted.get(), "blocks whose pattern another holder overwrote");
        assertEquals(bytes0, CpuBackend.allocatedBytes(), "allocated bytes balance");
        assertEquals(live0, CpuBackend.liveAllocations(), "live allocations balance");
        assertTrue(CpuBackend.cachedBytes() <= 1L << 30, "the cache stays under its limit: " + CpuBackend.cachedBytes());
    }

    /** A device of {@code capacity} bytes made of host memory, thread-safe, so patterns can be checked. */
    static final class HostBackedDevice implements CachingAllocator.RawMemory {
        final long capacity;
        final ConcurrentHashMap<Long, Long> blocks = new ConcurrentHashMap<>();
        final AtomicLong used = new AtomicLong();

        HostBackedDevice(long capacity) {
            this.capacity = capacity;
        }

        @Override
        public long malloc(long bytes) {
            if (used.addAndGet(bytes) > capacity) {
                used.addAndGet(-bytes);
                return 0;
            }
            long a = CpuBackend.INSTANCE.allocate(Device.CPU, bytes);
            blocks.put(a, bytes);
            return a;
        }

        @Override
        public void free(long address) {
            long bytes = blocks.remove(address);
            CpuBackend.INSTANCE.free(Device.CPU, address, bytes);
            used.addAndGet(-bytes);
        }

        @Override
        public long[] memInfo() {
            return new long[] {capacity - used.get(), capacity};
        }
    }

    @Test
    void theCachingAllocatorHandsNoBlockOutTwiceUnderSixteenThreads() throws Exception {
        long live0 = CpuBackend.liveAllocations();
        // small enough that the threads together run it out of memory: flush-and-retry races too
        HostBackedDevice device = new HostBackedDevice(48L << 20);
        CachingAllocator alloc = new CachingAllocator("host-backed:0", device);
        ConcurrentHashMap<Long, Long> held = new ConcurrentHashMap<>();
        AtomicLong duplicates = new AtomicLong();
        AtomicLong corrupted = new AtomicLong();
        AtomicLong outOfMemory = new AtomicLong();
        onThreads(THREADS, t -> {
            SplittableRandom r = new SplittableRandom(200 + t);
            long[] addr = new long[4];
            long[] size = new long[4];
            long[] tag = new long[4];
            for (int it = 0; it < 3000; it++) {
                int slot = r.nextInt(addr.length);
                long stream = r.nextInt(2); // two streams: blocks are binned per stream
                if (addr[slot] != 0) {
                    if (!stampIntact(addr[slot], size[slot], tag[slot])) {
                        corrupted.incrementAndGet();
                    }
                    held.remove(addr[slot]);
                    alloc.free(addr[slot]);
                    addr[slot] = 0;
                } else {
                    size[slot] = randomSize(r) / 4;
                    try {
                        addr[slot] = alloc.allocate(size[slot], stream);
                    } catch (DeviceOutOfMemoryException e) {
                        outOfMemory.incrementAndGet();
                        continue;
                    }
                    tag[slot] = ((long) t << 32) | it;
                    if (held.putIfAbsent(addr[slot], tag[slot]) != null) {
                        duplicates.incrementAndGet();
                    }
                    stamp(addr[slot], size[slot], tag[slot]);
                }
            }
            for (int slot = 0; slot < addr.length; slot++) {
                if (addr[slot] != 0) {
                    held.remove(addr[slot]);
                    alloc.free(addr[slot]);
                }
            }
            return null;
        });
        CachingAllocator.Stats s = alloc.stats();
        assertEquals(0, duplicates.get(), "blocks handed to two holders at once");
        assertEquals(0, corrupted.get(), "blocks whose pattern another holder overwrote");
        assertEquals(0, s.allocatedBytes(), "allocated bytes balance: " + s);
        assertEquals(0, alloc.liveAllocations());
        assertTrue(s.cacheHits() > 0 && s.cacheFlushes() > 0, "the cache was used and flushed under load: " + s);
        alloc.emptyCache();
        assertEquals(0, alloc.stats().reservedBytes(), "reserved bytes balance after emptyCache: " + alloc.stats());
        assertEquals(0, device.used.get(), "every device block went back");
        assertEquals(live0, CpuBackend.liveAllocations());
        System.out.println("caching allocator stress: " + s + ", out-of-memory answers " + outOfMemory.get());
    }
}
