package dev.cortado.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.BackendUnavailableException;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.LeakCheck;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class DataLoaderTest {

    /** n examples: input float32 [2] = {i, -i}, target int64 scalar = i. */
    static TensorDataset indexed(int n) {
        float[] x = new float[2 * n];
        long[] y = new long[n];
        for (int i = 0; i < n; i++) {
            x[2 * i] = i;
            x[2 * i + 1] = -i;
            y[i] = i;
        }
        ByteBuffer xb = ByteBuffer.allocate(8 * n).order(ByteOrder.LITTLE_ENDIAN);
        xb.asFloatBuffer().put(x);
        ByteBuffer yb = ByteBuffer.allocate(8 * n).order(ByteOrder.LITTLE_ENDIAN);
        yb.asLongBuffer().put(y);
        try (Tensor xt = Tensor.fromBuffer(xb, DType.FLOAT32, Device.CPU, n, 2);
             Tensor yt = Tensor.fromBuffer(yb, DType.INT64, Device.CPU, n)) {
            return new TensorDataset(xt, yt);
        }
    }

    /** A generic (non-stackable) dataset over another, optionally slow or failing. */
    static final class Wrapped implements Dataset<Example> {
        final TensorDataset inner;
        final long sleepMs;
        final int failAt;
        final AtomicInteger calls = new AtomicInteger();

        Wrapped(TensorDataset inner, long sleepMs, int failAt) {
            this.inner = inner;
            this.sleepMs = sleepMs;
            this.failAt = failAt;
        }

        @Override
        public int size() {
            return inner.size();
        }

        @Override
        public Example get(int index) {
            calls.incrementAndGet();
            if (index == failAt) {
                throw new IllegalStateException("disk on fire at " + index);
            }
            if (sleepMs > 0) {
                try {
                    Thread.sleep(sleepMs);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException("interrupted", e);
                }
            }
            return inner.get(index);
        }
    }

    /** All example ids of one epoch, checking that inputs and targets match. */
    static List<Long> drain(DataLoader loader, int epoch) {
        List<Long> ids = new ArrayList<>();
        for (Batch b : loader.epoch(epoch)) {
            try (b) {
                assertTrue(b.input().isContiguous());
                long[] y = b.target().toLongArray();
                float[] x = b.input().toFloatArray();
                assertEquals(y.length * 2, x.length);
                for (int i = 0; i < y.length; i++) {
                    assertEquals(y[i], x[2 * i]);
                    assertEquals(-y[i], x[2 * i + 1]);
                    ids.add(y[i]);
                }
            }
        }
        return ids;
    }

    /**
     * Shards of a data-parallel run: the same shuffle on every rank, disjoint, equal in size
     * (floor(n / count) examples each), together the first count * floor(n / count) positions of
     * the unsharded order; bad rank/count refused.
     */
    @Test
    void shardsPartitionTheSameShuffledOrder() {
        try (TensorDataset d = indexed(103);
             DataLoader whole = DataLoader.builder(d).batchSize(4).shuffle(11).prefetch(0).build()) {
            int[] order = whole.order(2);
            List<Long> seen = new ArrayList<>();
            for (int rank = 0; rank < 3; rank++) {
                try (DataLoader shard = DataLoader.builder(d).batchSize(4).shuffle(11).shard(rank, 3).prefetch(0).build()) {
                    assertEquals(9, shard.size(), "34 examples per shard in batches of 4");
                    int[] part = shard.order(2);
                    assertEquals(34, part.length);
                    for (int i = 0; i < part.length; i++) {
                        assertEquals(order[rank + 3 * i], part[i]);
                    }
                    List<Long> ids = drain(shard, 2);
                    assertEquals(34, ids.size());
                    seen.addAll(ids);
                }
            }
            assertEquals(102, seen.stream().distinct().count(), "disjoint shards");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> DataLoader.builder(d).shard(3, 3));
            assertTrue(e.getMessage().contains("shard 3 of 3"), e.getMessage());
        }
    }

    @Test
    void everyIndexOncePerEpochAndReproducible() throws InterruptedException {
        LeakCheck.settle();
        long base = CpuBackend.allocatedBytes();
        try (TensorDataset d = indexed(103)) {
            for (int prefetch : new int[] {0, 3}) {
                try (DataLoader a = DataLoader.builder(d).batchSize(10).shuffle(7).prefetch(prefetch).build();
                     DataLoader b = DataLoader.builder(new Wrapped(d, 0, -1)).batchSize(10).shuffle(7)
                             .prefetch(prefetch).build()) {
                    assertEquals(11, a.size());
                    List<Long> e0 = drain(a, 0);
                    List<Long> e1 = drain(a, 1);
                    assertEquals(103, e0.size());
                    List<Long> sorted = new ArrayList<>(e0);
                    sorted.sort(null);
                    for (int i = 0; i < 103; i++) {
                        assertEquals(i, sorted.get(i));
                    }
                    List<Long> s1 = new ArrayList<>(e1);
                    s1.sort(null);
                    assertEquals(sorted, s1);
                    assertNotEquals(e0, e1, "epochs 0 and 1 in the same order");
                    assertEquals(e0, drain(a, 0), "epoch 0 repeated differs");
                    assertEquals(e0, drain(b, 0), "generic path differs from the fast path");
                    assertArrayEquals(a.order(5), b.order(5));
                }
            }
            try (DataLoader plain = DataLoader.builder(d).batchSize(50).build()) {
                List<Long> ids = drain(plain, 0);
                for (int i = 0; i < 103; i++) {
                    assertEquals(i, ids.get(i));
                }
            }
            try (DataLoader other = DataLoader.builder(d).shuffle(8).build();
                 DataLoader same = DataLoader.builder(d).shuffle(7).build()) {
                assertFalse(Arrays.equals(other.order(0), same.order(0)));
            }
        }
        assertEquals(base, CpuBackend.allocatedBytes());
    }

    @Test
    void batchShapesAndDropLast() {
        try (TensorDataset d = indexed(25)) {
            try (DataLoader keep = DataLoader.builder(d).batchSize(10).build()) {
                List<Integer> sizes = new ArrayList<>();
                for (Batch b : keep.epoch(0)) {
                    try (b) {
                        sizes.add(b.size());
                        assertArrayEquals(new long[] {b.size(), 2}, b.input().dims());
                        assertArrayEquals(new long[] {b.size()}, b.target().dims());
                        assertEquals(DType.INT64, b.target().dtype());
                        assertEquals(Device.CPU, b.input().device());
                    }
                }
                assertEquals(List.of(10, 10, 5), sizes);
            }
            try (DataLoader drop = DataLoader.builder(d).batchSize(10).dropLast(true).shuffle(1).build()) {
                assertEquals(2, drop.size());
                assertEquals(20, drain(drop, 0).size());
                assertEquals(2, drop.epoch(1).stream().peek(Batch::close).count());
            }
        }
    }

    @Test
    void charWindowsBatch() {
        long[] tokens = new long[100];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = i;
        }
        try (CharSequenceDataset ds = new CharSequenceDataset(tokens, 8);
             DataLoader loader = DataLoader.builder(ds).batchSize(4).shuffle(3).build()) {
            for (Batch b : loader.epoch(0)) {
                try (b) {
                    assertArrayEquals(new long[] {4, 8}, b.input().dims());
                    long[] x = b.input().toLongArray();
                    long[] y = b.target().toLongArray();
                    for (int i = 0; i < x.length; i++) {
                        assertEquals(x[i] + 1, y[i]);
                    }
                }
                break; // leaves the epoch open: the loader's close() must stop it
            }
        }
    }

    /**
     * Overlap shown by events, not by timing: while the consumer holds batch k (its "training
     * step"), the prefetch thread must already have started loading batch k + 1. Without a
     * prefetch thread nothing loads until the consumer asks again, so the wait fails (it is the
     * only timed part, and only the failing case waits it out).
     */
    @Test
    void prefetchOverlapsWithTheConsumer() throws InterruptedException {
        int n = 16;
        int batch = 2;
        try (TensorDataset d = indexed(n)) {
            Wrapped data = new Wrapped(d, 0, -1);
            try (DataLoader loader = DataLoader.builder(data).batchSize(batch).prefetch(4).build()) {
            int built = data.calls.get(); // build() reads one example to learn the shapes
            int k = 0;
            for (Batch b : loader.epoch(0)) {
                try (b) {
                    if (k + 1 < n / batch) {
                        int needed = built + (k + 1) * batch + 1; // the first example of batch k + 1
                        int step = k;
                        waitFor(() -> data.calls.get() >= needed,
                                "loading batch " + (step + 1) + " while batch " + step + " is being consumed");
                    }
                }
                k++;
            }
            assertEquals(n / batch, k);
            }
        }
    }

    @Test
    void producerExceptionSurfacesInNext() {
        for (int prefetch : new int[] {0, 2}) {
            try (TensorDataset d = indexed(20);
                 DataLoader loader = DataLoader.builder(new Wrapped(d, 0, 13)).batchSize(5).prefetch(prefetch).build()) {
                DataLoader.Epoch epoch = loader.epoch(4);
                for (int k = 0; k < 2; k++) {
                    epoch.next().close();
                }
                DataLoader.LoadException e = assertThrows(DataLoader.LoadException.class, epoch::next);
                assertTrue(e.getMessage().contains("batch 2 of epoch 4"), e.getMessage());
                assertTrue(e.getCause() instanceof IllegalStateException);
                assertEquals("disk on fire at 13", e.getCause().getMessage());
                assertFalse(epoch.hasNext());
            }
        }
    }

    @Test
    void closeStopsTheThreadAndFreesQueuedBatches() throws Exception {
        LeakCheck.settle(); // the safety net has nothing left to free while we count
        long base = CpuBackend.allocatedBytes();
        long leaked = Tensor.LeakCounter.leaked();
        try (TensorDataset d = indexed(64)) {
            long withData = CpuBackend.allocatedBytes();
            DataLoader loader = DataLoader.builder(d).batchSize(4).prefetch(3).shuffle(1).build();
            DataLoader.Epoch epoch = loader.epoch(0);
            epoch.next().close();
            waitFor(() -> loaderThreads() == 1, "prefetch thread running");
            waitFor(() -> CpuBackend.allocatedBytes() > withData, "a prefetched batch in the queue");
            DataLoader.Epoch second = loader.epoch(1); // closes epoch 0
            assertFalse(epoch.hasNext());
            second.next().close();
            loader.close();
            assertEquals(0, loaderThreads());
            assertEquals(withData, CpuBackend.allocatedBytes());
            assertThrows(IllegalStateException.class, () -> loader.epoch(2));
            // an epoch run to its end stops its thread by itself
            try (DataLoader l2 = DataLoader.builder(d).batchSize(8).build()) {
                drainIds(l2);
                assertEquals(0, loaderThreads());
            }
        }
        assertEquals(base, CpuBackend.allocatedBytes());
        assertEquals(leaked, Tensor.LeakCounter.leaked());
    }

    private static void drainIds(DataLoader loader) {
        for (Batch b : loader.epoch(0)) {
            b.close();
        }
    }

    @Test
    void batchesBelongToTheConsumersScope() throws InterruptedException {
        LeakCheck.settle();
        long base = CpuBackend.allocatedBytes();
        try (TensorDataset d = indexed(12); DataLoader loader = DataLoader.builder(d).batchSize(4).build()) {
            long withData = CpuBackend.allocatedBytes();
            DataLoader.Epoch epoch = loader.epoch(0);
            while (epoch.hasNext()) {
                Batch b;
                try (Scope scope = Scope.open()) {
                    b = epoch.next(); // assembled on the prefetch thread, handed over to this scope
                    assertEquals(2, scope.size());
                }
                assertTrue(b.input().isClosed());
                assertTrue(b.target().isClosed());
            }
            assertEquals(withData, CpuBackend.allocatedBytes());
        }
        assertEquals(base, CpuBackend.allocatedBytes());
    }

    @Test
    void iterableOnceAndCudaFallback() {
        try (TensorDataset d = indexed(4); DataLoader loader = DataLoader.builder(d).batchSize(4).build()) {
            assertFalse(loader.usesPinnedMemory());
            DataLoader.Epoch e = loader.epoch(0);
            e.iterator();
            assertThrows(IllegalStateException.class, e::iterator);
            e.close();
            if (!Device.cuda().isAvailable()) {
                BackendUnavailableException x = assertThrows(BackendUnavailableException.class,
                        () -> DataLoader.builder(d).device(Device.cuda()).build());
                assertTrue(x.getMessage().contains("cuda:0"), x.getMessage());
            } else {
                try (DataLoader gpu = DataLoader.builder(d).batchSize(3).device(Device.cuda()).build()) {
                    assertTrue(gpu.usesPinnedMemory());
                    for (Batch b : gpu.epoch(0)) {
                        try (b) {
                            assertTrue(b.input().device().isCuda());
                        }
                    }
                    assertEquals(List.of(0L, 1L, 2L, 3L), drain(gpu, 1));
                }
            }
        }
    }

    @Test
    void badArguments() {
        try (TensorDataset d = indexed(3)) {
            assertThrows(IllegalArgumentException.class, () -> DataLoader.builder(d).batchSize(0));
            assertThrows(IllegalArgumentException.class, () -> DataLoader.builder(d).prefetch(-1));
        }
        try (Tensor x = Tensor.zeros(DType.FLOAT32, Device.CPU, 3, 2);
             Tensor y = Tensor.zeros(DType.INT64, Device.CPU, 4)) {
            assertThrows(IllegalArgumentException.class, () -> new TensorDataset(x, y));
        }
    }

    static int loaderThreads() {
        int n = 0;
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith("cortado-dataloader-") && t.isAlive()) {
                n++;
            }
        }
        return n;
    }

    static void waitFor(java.util.function.BooleanSupplier c, String what) throws InterruptedException {
        long end = System.nanoTime() + 20_000_000_000L; // generous: only a failing case waits it out
        while (!c.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for: " + what);
            }
            Thread.sleep(5);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            throw new RuntimeException(e);
        }
    }
}
