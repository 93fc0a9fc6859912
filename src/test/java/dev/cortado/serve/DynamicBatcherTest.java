package dev.cortado.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.onnx.InferenceMetrics;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * The dynamic batcher: batches grow under concurrent load and give the unbatched results; bad
 * items fail alone (validated before batching, or found by the batch call); a full queue rejects;
 * closing runs or fails what is pending. Also on a real Cortado model ({@link NgramEmbedder}).
 */
class DynamicBatcherTest {

    /** A "model" whose call costs 3 ms whatever the batch size: f(x) = x * x + 1. */
    private static List<Long> slowSquares(List<Integer> xs) {
        java.util.concurrent.locks.LockSupport.parkNanos(3_000_000);
        List<Long> out = new ArrayList<>();
        for (int x : xs) {
            out.add((long) x * x + 1);
        }
        return out;
    }

    @Test
    void batchesGrowUnderConcurrentLoadAndResultsMatchUnbatched() throws Exception {
        int threads = 16;
        int perThread = 30;
        try (DynamicBatcher<Integer, Long> b = DynamicBatcher.<Integer, Long>builder(DynamicBatcherTest::slowSquares)
                .maxBatchSize(16).maxWait(Duration.ofMillis(5)).build()) {
            ExecutorService pool = Executors.newFixedThreadPool(threads);
            try {
                List<Future<?>> done = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    int base = t * 1000;
                    done.add(pool.submit(() -> {
                        for (int i = 0; i < perThread; i++) {
                            int x = base + i;
                            assertEquals((long) x * x + 1, b.call(x), "item " + x);
                        }
                        return null;
                    }));
                }
                for (Future<?> f : done) {
                    f.get(60, TimeUnit.SECONDS);
                }
            } finally {
                pool.shutdown();
            }
            InferenceMetrics.Snapshot m = b.metrics();
            assertEquals(threads * perThread, m.succeeded());
            assertEquals(threads * perThread, m.batchedItems());
            // 16 callers and a 3 ms model: unbatched would be 480 calls; batching must cut them a lot
            assertTrue(m.maxBatchSize() > 4 && m.meanBatchSize() > 3, "batches did not grow: " + m);
            assertTrue(m.batches() < threads * perThread / 3, m.toString());
            assertTrue(m.maxBatchSize() <= 16, m.toString());
        }
    }

    @Test
    void aLoneRequestWaitsAtMostMaxWait() {
        try (DynamicBatcher<Integer, Long> b = DynamicBatcher.<Integer, Long>builder(
                xs -> xs.stream().map(x -> (long) x).toList()).maxBatchSize(64).maxWait(Duration.ofMillis(20)).build()) {
            long t0 = System.nanoTime();
            assertEquals(7L, b.call(7));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms >= 19 && ms < 2000, "waited " + ms + " ms for a batch of one with maxWait 20 ms");
            assertEquals(1, b.metrics().maxBatchSize());
        }
    }

    @Test
    void invalidItemsFailAloneBeforeBatchingAndAfter() throws Exception {
        AtomicInteger calls = new AtomicInteger();
        try (DynamicBatcher<Integer, Long> b = DynamicBatcher.<Integer, Long>builder(xs -> {
            calls.incrementAndGet();
            if (xs.contains(13)) {
                throw new IllegalArgumentException("13 is unlucky");
            }
            return xs.stream().map(x -> (long) x * 2).toList();
        }).maxBatchSize(8).maxWait(Duration.ofMillis(200)).validator(x -> {
            if (x < 0) {
                throw new IllegalArgumentException("negative: " + x);
            }
        }).build()) {
            IllegalArgumentException refused = assertThrows(IllegalArgumentException.class, () -> b.submit(-1));
            assertEquals("negative: -1", refused.getMessage());
            assertThrows(IllegalArgumentException.class, () -> b.submitAll(List.of(1, -2, 3)));
            assertEquals(0, b.queued(), "nothing of a refused group is queued");

            // four items in one batch (the 200 ms wait gathers them); 13 fails, the others succeed
            List<CompletableFuture<Long>> f = b.submitAll(List.of(4, 13, 5, 6));
            assertEquals(8L, f.get(0).get());
            ExecutionException e = assertThrows(ExecutionException.class, () -> f.get(1).get());
            assertTrue(e.getCause() instanceof IllegalArgumentException && e.getCause().getMessage().contains("unlucky"));
            assertEquals(10L, f.get(2).get());
            assertEquals(12L, f.get(3).get());
            assertEquals(1 + 4, calls.get(), "the batch, then each item alone");
            assertEquals(1, b.metrics().failed());
            assertEquals(3, b.metrics().succeeded());
        }
    }

    @Test
    void otherFailuresAndWrongResultCountsFailTheWholeBatch() {
        try (DynamicBatcher<Integer, Long> b = DynamicBatcher.<Integer, Long>builder(xs -> List.of(1L))
                .maxBatchSize(4).maxWait(Duration.ofMillis(100)).build()) {
            List<CompletableFuture<Long>> f = b.submitAll(List.of(1, 2));
            for (CompletableFuture<Long> x : f) {
                ExecutionException e = assertThrows(ExecutionException.class, x::get);
                assertTrue(e.getCause() instanceof IllegalStateException
                        && e.getCause().getMessage().contains("returned 1 results for 2 items"), e.getCause().toString());
            }
        }
        try (DynamicBatcher<Integer, Long> b = DynamicBatcher.<Integer, Long>builder(xs -> {
            throw new UnsupportedOperationException("broken model");
        }).build()) {
            assertThrows(UnsupportedOperationException.class, () -> b.call(1));
        }
    }

    @Test
    void aFullQueueRejectsAtOnceAndAdmitsAGroupWhole() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        CountDownLatch entered = new CountDownLatch(1);
        try (DynamicBatcher<Integer, Long> b = DynamicBatcher.<Integer, Long>builder(xs -> {
            entered.countDown();
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return xs.stream().map(x -> (long) x).toList();
        }).maxBatchSize(1).maxWait(Duration.ZERO).queueCapacity(4).build()) {
            CompletableFuture<Long> running = b.submit(0);
            entered.await();
            List<CompletableFuture<Long>> queued = new ArrayList<>(b.submitAll(List.of(1, 2, 3)));
            RejectedExecutionException group = assertThrows(RejectedExecutionException.class,
                    () -> b.submitAll(List.of(4, 5)));
            assertTrue(group.getMessage().contains("queue is full"), group.getMessage());
            queued.add(b.submit(4));
            assertEquals(4, b.queued());
            assertThrows(RejectedExecutionException.class, () -> b.submit(5));
            RejectedExecutionException never = assertThrows(RejectedExecutionException.class,
                    () -> b.submitAll(List.of(1, 2, 3, 4, 5)));
            assertTrue(never.getMessage().contains("never"), never.getMessage());
            release.countDown();
            assertEquals(0L, running.get());
            for (int i = 0; i < queued.size(); i++) {
                assertEquals(i + 1L, queued.get(i).get());
            }
            assertEquals(3, b.metrics().rejected());
        }
    }

    @Test
    void closeRunsQueuedItemsThenRefuses() throws Exception {
        DynamicBatcher<Integer, Long> b = DynamicBatcher.<Integer, Long>builder(DynamicBatcherTest::slowSquares)
                .maxBatchSize(2).maxWait(Duration.ZERO).build();
        List<CompletableFuture<Long>> f = b.submitAll(List.of(1, 2, 3, 4, 5, 6, 7));
        b.close();
        for (int i = 0; i < f.size(); i++) {
            assertEquals((long) (i + 1) * (i + 1) + 1, f.get(i).get(), "queued before the close, run by it");
        }
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> b.submit(1));
        assertTrue(e.getMessage().contains("closed"));
        b.close(); // idempotent
    }

    @Test
    void closeFailsWhatIsNotDoneWithinTheTimeout() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        DynamicBatcher<Integer, Long> b = DynamicBatcher.<Integer, Long>builder(xs -> {
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return xs.stream().map(x -> (long) x).toList();
        }).maxBatchSize(1).maxWait(Duration.ZERO).build();
        try {
            List<CompletableFuture<Long>> f = b.submitAll(List.of(1, 2, 3));
            b.close(Duration.ofMillis(100));
            for (CompletableFuture<Long> x : f) {
                ExecutionException e = assertThrows(ExecutionException.class, () -> x.get(5, TimeUnit.SECONDS));
                assertTrue(e.getCause() instanceof IllegalStateException, e.getCause().toString());
            }
        } finally {
            release.countDown();
        }
    }

    @Test
    void onARealModelBatchedVectorsEqualTheFloat64Reference() throws Exception {
        try (NgramEmbedder model = new NgramEmbedder(24, 2);
             DynamicBatcher<String, float[]> b = DynamicBatcher.<String, float[]>builder(
                     texts -> List.of(model.embed(texts))).maxBatchSize(32).maxWait(Duration.ofMillis(5)).build()) {
            int threads = 8;
            ExecutorService pool = Executors.newFixedThreadPool(threads);
            try {
                List<Future<?>> done = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    int id = t;
                    done.add(pool.submit(() -> {
                        for (int i = 0; i < 20; i++) {
                            String text = "client " + id + " sentence " + i + " about tensors";
                            float[] v = b.call(text);
                            model.assertEmbedding(text, v);
                            // unbatched, the same model gives the same numbers (rows are independent)
                            float[] alone = model.embed(List.of(text))[0];
                            for (int k = 0; k < v.length; k++) {
                                assertEquals(alone[k], v[k], 1e-6f, text);
                            }
                        }
                        return null;
                    }));
                }
                for (Future<?> f : done) {
                    f.get(60, TimeUnit.SECONDS);
                }
            } finally {
                pool.shutdown();
            }
            assertTrue(b.metrics().maxBatchSize() > 1, b.metrics().toString());
            assertThrows(IllegalArgumentException.class, () -> b.call("bad\0text"));
            model.assertEmbedding("still serving", b.call("still serving"));
        }
    }
}
