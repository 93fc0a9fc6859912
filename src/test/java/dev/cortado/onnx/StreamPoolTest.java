package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * The stream assignment of a GPU session ({@link StreamPool}), with fake streams: runs executing
 * at once hold distinct streams, no more streams exist than runs can execute at once, a lone client
 * keeps reusing one, and closing the pool closes every stream, those still held when given back.
 */
class StreamPoolTest {
    /** A stream stand-in that counts its closes. */
    static final class FakeStream implements AutoCloseable {
        static final AtomicInteger MADE = new AtomicInteger();
        final int id = MADE.incrementAndGet();
        final AtomicInteger closes = new AtomicInteger();

        @Override
        public void close() {
            closes.incrementAndGet();
        }
    }

    @Test
    void concurrentRunsHoldDistinctStreamsAndALoneRunReusesOne() throws Exception {
        int runs = 4;
        List<FakeStream> made = new ArrayList<>();
        StreamPool<FakeStream> pool = new StreamPool<>(runs, () -> {
            FakeStream s = new FakeStream();
            synchronized (made) {
                made.add(s);
            }
            return s;
        });
        ExecutorService threads = Executors.newFixedThreadPool(runs);
        try {
            for (int round = 0; round < 20; round++) {
                CyclicBarrier together = new CyclicBarrier(runs);
                Set<FakeStream> held = ConcurrentHashMap.newKeySet();
                List<Future<?>> done = new ArrayList<>();
                for (int t = 0; t < runs; t++) {
                    done.add(threads.submit(() -> {
                        FakeStream s = pool.take();
                        try {
                            assertTrue(held.add(s), "a stream held by two runs at once");
                            together.await(); // all runs hold their streams at the same time
                            held.remove(s);
                        } finally {
                            pool.give(s);
                        }
                        return null;
                    }));
                }
                for (Future<?> f : done) {
                    f.get();
                }
            }
        } finally {
            threads.shutdown();
        }
        assertEquals(runs, pool.created(), "one stream per run executing at once, reused across rounds");
        FakeStream first = pool.take();
        pool.give(first);
        for (int i = 0; i < 10; i++) {
            FakeStream s = pool.take();
            assertSame(first, s, "a lone run keeps the stream it gave back");
            pool.give(s);
        }
        FakeStream held = pool.take();
        pool.close();
        for (FakeStream s : made) {
            assertEquals(s == held ? 0 : 1, s.closes.get(), "idle streams closed with the pool");
        }
        pool.give(held);
        assertEquals(1, held.closes.get(), "a held stream is closed when given back");
        assertThrows(IllegalStateException.class, pool::take);
        assertEquals(runs, pool.created());
    }

    @Test
    void aRunWaitsWhenEveryStreamIsHeld() throws Exception {
        StreamPool<FakeStream> pool = new StreamPool<>(1, FakeStream::new);
        FakeStream only = pool.take();
        ExecutorService thread = Executors.newSingleThreadExecutor();
        try {
            Future<FakeStream> waiting = thread.submit(pool::take);
            Thread.sleep(50);
            assertTrue(!waiting.isDone(), "the second run waits");
            pool.give(only);
            assertSame(only, waiting.get());
            assertEquals(1, pool.created());
        } finally {
            thread.shutdown();
        }
        assertThrows(IllegalArgumentException.class, () -> new StreamPool<>(0, FakeStream::new));
    }
}
