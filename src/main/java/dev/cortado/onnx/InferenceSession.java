package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.Semaphore;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The serving core: an ONNX model loaded once, run from any number of threads at the same time
 * with its weights shared (one copy, read-only), and closed safely while requests are in flight.
 *
 * <pre>{@code
 * try (InferenceSession s = InferenceSession.builder(Path.of("model.onnx"))
 *         .maxConcurrentRuns(8)
 *         .build()) {
 *     Map<String, Tensor> out = s.run(Map.of("input_ids", ids));   // from any thread
 * }
 * }</pre>
 *
 * <p>{@link #close()} stops new runs (they fail with {@link IllegalStateException}), waits for the
 * runs already in progress to finish, then frees the weights, so no run ever reads freed memory.
 * {@code maxConcurrentRuns} bounds how many runs execute at once (each run's kernels use the
 * engine's CPU thread pool, {@code Cortado.setThreads}); further callers wait their turn.
 */
public final class InferenceSession implements AutoCloseable {
    private final OnnxModel model;
    private final Semaphore slots;
    private final ReentrantReadWriteLock lifecycle = new ReentrantReadWriteLock();
    private volatile boolean closed;

    private InferenceSession(OnnxModel model, int maxConcurrentRuns) {
        this.model = model;
        this.slots = new Semaphore(maxConcurrentRuns, true);
    }

    /** A builder for a session of the model file {@code file}. */
    public static Builder builder(Path file) {
        return new Builder(Objects.requireNonNull(file, "file"), null);
    }

    /**
     * A builder for a session of a parsed model without external data (one read from inside a
     * jar, for example).
     */
    public static Builder builder(ModelProto model) {
        return new Builder(null, Objects.requireNonNull(model, "model"));
    }

    /** Options of a session. */
    public static final class Builder {
        private final Path file;
        private final ModelProto proto;
        private Device device = Device.defaultDevice();
        private int maxConcurrentRuns = Runtime.getRuntime().availableProcessors();

        private Builder(Path file, ModelProto proto) {
            this.file = file;
            this.proto = proto;
        }

        /** The device of the weights and of the runs (default: the default device). */
        public Builder device(Device device) {
            this.device = Objects.requireNonNull(device, "device");
            return this;
        }

        /** How many runs may execute at once (default: the number of processors); more callers wait. */
        public Builder maxConcurrentRuns(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("maxConcurrentRuns must be at least 1, got " + n);
            }
            this.maxConcurrentRuns = n;
            return this;
        }

        /** Loads the model (all checks happen here: an unsupported op fails now, not on a request). */
        public InferenceSession build() throws IOException {
            OnnxModel model = file != null ? OnnxModel.load(file, device) : OnnxModel.of(proto, null, device);
            return new InferenceSession(model, maxConcurrentRuns);
        }
    }

    /** The imported model (its input and output names, opset). */
    public OnnxModel model() {
        return model;
    }

    /**
     * Runs the model on {@code feeds} (input name -> tensor, not taken over); returns the outputs
     * by name, owned by the caller. Thread-safe. Fails with {@link IllegalStateException} once the
     * session is closed, with {@link IllegalArgumentException} for a wrong input name, dtype or rank.
     */
    public Map<String, Tensor> run(Map<String, Tensor> feeds) {
        ReentrantReadWriteLock.ReadLock read = lifecycle.readLock();
        if (closed || !read.tryLock()) {
            throw new IllegalStateException("the inference session is closed");
        }
        try {
            if (closed) {
                throw new IllegalStateException("the inference session is closed");
            }
            slots.acquireUninterruptibly();
            try {
                return model.run(feeds);
            } finally {
                slots.release();
            }
        } finally {
            read.unlock();
        }
    }

    /** Refuses new runs, waits for the running ones, frees the weights. Idempotent. */
    @Override
    public void close() {
        closed = true;
        lifecycle.writeLock().lock();
        try {
            model.close();
        } finally {
            lifecycle.writeLock().unlock();
        }
    }
}
