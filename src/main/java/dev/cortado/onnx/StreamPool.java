package dev.cortado.onnx;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;

/**
 * The streams of an {@link InferenceSession} on a GPU: each run (one request, or one batch of the
 * dynamic batcher) takes a stream of its own for its whole duration, so runs executing at once
 * enqueue their kernels on different streams and overlap on the device; a run gives its stream
 * back once it has synchronized it (its outputs are complete and its memory may be reused).
 *
 * <p>Streams are made when needed, at most {@code capacity} of them (the session's
 * {@code maxConcurrentRuns}, which also bounds the runs that can hold one), and reused: a stream
 * given back is the next one taken, so a lone client keeps using one stream. Generic over the
 * stream type so the assignment is tested without a GPU.
 *
 * @param <S> the stream type ({@code CudaStream} in a session)
 */
final class StreamPool<S extends AutoCloseable> implements AutoCloseable {
    private final int capacity;
    private final Supplier<S> create;
    private final ArrayDeque<S> idle = new ArrayDeque<>();
    private final List<S> all = new ArrayList<>();
    private boolean closed;

    StreamPool(int capacity, Supplier<S> create) {
        if (capacity < 1) {
            throw new IllegalArgumentException("a stream pool holds at least one stream, got " + capacity);
        }
        this.capacity = capacity;
        this.create = create;
    }

    /**
     * A stream no other run holds: the one given back last, or a new one while fewer than
     * {@code capacity} exist; otherwise waits for one to be given back.
     *
     * @throws IllegalStateException once the pool is closed
     */
    synchronized S take() throws InterruptedException {
        while (true) {
            if (closed) {
                throw new IllegalStateException("the session's streams are closed");
            }
            if (!idle.isEmpty()) {
                return idle.pop();
            }
            if (all.size() < capacity) {
                S s = create.get();
                all.add(s);
                return s;
            }
            wait();
        }
    }

    /** Gives back a stream taken from this pool (closed at once if the pool was closed meanwhile). */
    synchronized void give(S stream) {
        if (closed) {
            closeStream(stream);
            return;
        }
        idle.push(stream);
        notifyAll();
    }

    /** How many streams the pool has made. */
    synchronized int created() {
        return all.size();
    }

    /** Closes the idle streams; those still held are closed when given back. Idempotent. */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            while (!idle.isEmpty()) {
                closeStream(idle.pop());
            }
            notifyAll();
        }
    }

    private static void closeStream(AutoCloseable s) {
        try {
            s.close();
        } catch (Exception e) {
            throw new IllegalStateException("closing a stream: " + e.getMessage(), e);
        }
    }
}
