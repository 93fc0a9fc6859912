package dev.cortado.tensor;

/**
 * Sees what happens to tensors on one thread while a graph is captured (the tracer lives in
 * {@code dev.cortado.graph}, above this package, and installs itself for the length of a capture).
 * When no capture runs, each hook in {@link Tensor} costs one read of a volatile counter.
 */
public interface TensorTracer {

    /** A tensor was constructed (a fresh allocation, an op's output before it runs, or a view). */
    void created(Tensor tensor);

    /** {@code result} was derived from {@code source} by the view or copy {@code name} (reshape, permute, to, ...). */
    void derived(String name, Tensor source, Tensor result);

    /** {@code target}'s elements are about to be written in place by {@code what} (copyFrom, fill). */
    void writing(String what, Tensor target);

    /**
     * {@code target}'s elements are about to be overwritten by {@code source}'s ({@code copyFrom}).
     * By default the same as {@code writing("copyFrom", target)}; a tracer that records assignments
     * (a training step's buffer updates) sees the source too.
     */
    default void copying(Tensor target, Tensor source) {
        writing("copyFrom", target);
    }

    /**
     * {@code source}'s elements are about to be read on the host by {@code what} (item, toFloatArray,
     * copyTo): a value a traced function branches or computes on, which a graph cannot replay.
     * The copies the read itself makes are not reported ({@link #pause}).
     */
    void reading(String what, Tensor source);

    /**
     * Installs {@code tracer} on this thread until the returned handle is closed (captures do not
     * nest: a second one on the same thread throws).
     */
    static Installation install(TensorTracer tracer) {
        if (Installation.CURRENT.get() != null) {
            throw new IllegalStateException("a graph capture is already running on this thread");
        }
        Installation.CURRENT.set(tracer);
        synchronized (Installation.class) {
            Installation.active++;
        }
        return new Installation();
    }

    /**
     * Hides this thread's tracer until the returned handle is closed (what a host read does
     * internally is not part of a traced function); a no-op when nothing is traced.
     */
    static Pause pause() {
        TensorTracer t = current();
        if (t == null) {
            return Installation.NOTHING_PAUSED;
        }
        Installation.CURRENT.remove();
        return () -> Installation.CURRENT.set(t);
    }

    /** The tracer of this thread, or null (the fast path reads only a volatile counter). */
    static TensorTracer current() {
        return Installation.active == 0 ? null : Installation.CURRENT.get();
    }

    /** Ends a {@link #pause()}. */
    interface Pause extends AutoCloseable {
        @Override
        void close();
    }

    /** Removes the tracer from its thread when closed. */
    final class Installation implements AutoCloseable {
        private static final ThreadLocal<TensorTracer> CURRENT = new ThreadLocal<>();
        private static final Pause NOTHING_PAUSED = () -> { };
        private static volatile int active;
        private final Thread thread = Thread.currentThread();
        private boolean closed;

        private Installation() {
        }

        @Override
        public void close() {
            if (closed) {
                return;
            }
            if (Thread.currentThread() != thread) {
                throw new IllegalStateException("a tracer is removed by the thread that installed it");
            }
            closed = true;
            CURRENT.remove();
            synchronized (Installation.class) {
                active--;
            }
        }
    }
}
