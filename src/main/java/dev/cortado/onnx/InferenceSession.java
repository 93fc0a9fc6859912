package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.Cortado;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
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
 *         .maxConcurrentRuns(4)
 *         .optimization(InferenceSession.Optimization.FOLD_CONSTANTS)
 *         .shapeBuckets(1, 32, 64, 128)        // sequence lengths (dimension 1), padded up
 *         .warmUp(2)                           // two runs per bucket before build() returns
 *         .build()) {
 *     Map<String, Tensor> out = s.run(Map.of("input_ids", ids, "attention_mask", mask));  // any thread
 *     System.out.println(s.metrics());         // requests, batch sizes, latency percentiles
 * }
 * }</pre>
 *
 * <p><b>Shape buckets.</b> With {@link Builder#shapeBuckets}, every fed tensor whose rank reaches
 * the bucket dimension is padded with zeros in that dimension up to the smallest bucket that holds
 * the longest feed, so the model only ever sees the bucket lengths (the shapes warm-up has run and
 * the allocator's block cache holds). Zero is the padding id and the "masked" value of an attention
 * mask in the exported transformers; outputs come back at the bucket length (the caller's mask says
 * which positions are real). A length beyond the largest bucket is an
 * {@link IllegalArgumentException} naming the input, its length and the buckets.
 *
 * <p><b>Closing.</b> {@link #close()} stops new runs (they fail with {@link IllegalStateException}),
 * fails the runs still waiting for a slot the same way, waits for the runs already executing to
 * finish, then frees the weights, so no run ever reads freed memory.
 *
 * <p><b>Plans.</b> What loading produces (the parsed graph, the weights on the device, the
 * constants folded at load) is a plan, shared by every open session of the same model file,
 * device and optimization level ({@link Builder#sharePlan}, on by default): the weights exist once
 * however many sessions serve them. With {@link Builder#retainPlan} the plan also outlives its
 * sessions, so creating a session of that model again costs next to nothing: the plan is loaded
 * and already warm.
 *
 * <p><b>Memory.</b> The imported model is interpreted node by node (it is not yet lowered to a
 * memory-planned graph), so each run allocates its intermediate tensors and frees them at its end
 * through a {@link Scope}. Blocks of 256 KiB and more come back from the host allocator's block
 * cache, so a steady stream of requests of the bucket shapes reuses the same memory and causes no
 * fresh page faults; resident memory stays flat (a test runs 100 load/close cycles and thousands
 * of requests against {@code VmRSS}).
 */
public final class InferenceSession implements AutoCloseable {
    /** What is done to the model at load. */
    public enum Optimization {
        /** The model as exported. */
        NONE,
        /**
         * Nodes whose inputs are all weights or constants (transposed or dequantized weights, shape
         * arithmetic) are evaluated once at load instead of on every run, and the written-out
         * GELU, LayerNorm and attention chains run as Cortado's fused ops (constant int8 weights
         * packed once). The default.
         */
        FOLD_CONSTANTS
    }

    private final OnnxModel model;
    private final Semaphore slots;
    private final ReentrantReadWriteLock lifecycle = new ReentrantReadWriteLock();
    private final int bucketDim;
    private final int[] buckets;
    private final InferenceMetrics metrics = new InferenceMetrics();
    /** The shared plan this session uses (null: the model is this session's own). */
    private final PlanCache.Key planKey;
    private final boolean planFromCache;
    /** The warm-up runs done on this session's plan (input shape -> runs), shared with the plan's other sessions. */
    private final Map<String, Integer> warmedUp;
    private volatile boolean closed;
    private boolean released;

    private InferenceSession(OnnxModel model, Builder b, PlanCache.Key planKey, boolean planFromCache,
                             Map<String, Integer> warmedUp) {
        this.model = model;
        this.planKey = planKey;
        this.planFromCache = planFromCache;
        this.warmedUp = warmedUp;
        this.slots = new Semaphore(b.maxConcurrentRuns, true);
        this.bucketDim = b.bucketDim;
        this.buckets = b.buckets;
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
        private int threads;
        private Optimization optimization = Optimization.FOLD_CONSTANTS;
        private int bucketDim = -1;
        private int[] buckets = new int[0];
        private int warmUpRuns;
        private boolean sharePlan = true;
        private boolean retainPlan;

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

        /**
         * The CPU threads each run's kernels use (0, the default: leave the engine's setting). The
         * engine has one OpenMP/OpenBLAS thread pool per process, so {@link #build()} applies this
         * with {@link Cortado#setThreads}: it is process-wide, the last session built decides.
         */
        public Builder threads(int n) {
            if (n < 0) {
                throw new IllegalArgumentException("threads must be 0 (keep the engine's) or more, got " + n);
            }
            this.threads = n;
            return this;
        }

        /** What is done to the model at load (default {@link Optimization#FOLD_CONSTANTS}). */
        public Builder optimization(Optimization level) {
            this.optimization = Objects.requireNonNull(level, "optimization");
            return this;
        }

        /**
         * Pre-planned lengths of dimension {@code dim} of the inputs (typically 1, the sequence
         * length of {@code [batch, sequence]} token inputs): feeds are padded with zeros up to the
         * smallest bucket that holds them; longer feeds are refused. Lengths must be positive.
         */
        public Builder shapeBuckets(int dim, int... lengths) {
            if (dim < 0) {
                throw new IllegalArgumentException("shapeBuckets: the dimension must be 0 or more, got " + dim);
            }
            if (lengths.length == 0) {
                throw new IllegalArgumentException("shapeBuckets: give at least one length");
            }
            int[] sorted = lengths.clone();
            Arrays.sort(sorted);
            if (sorted[0] < 1) {
                throw new IllegalArgumentException("shapeBuckets: lengths must be positive, got " + Arrays.toString(lengths));
            }
            this.bucketDim = dim;
            this.buckets = Arrays.stream(sorted).distinct().toArray();
            return this;
        }

        /**
         * Runs the model {@code runsPerShape} times on zero inputs before {@link #build()} returns:
         * once per shape bucket (or once at all without buckets), with every dimension the model
         * leaves open set to 1 except the bucket dimension. This pays the first-call costs (the
         * allocator's cache, lazily loaded kernels, the JIT) before the first request. Those costs
         * are per process: on a shared plan ({@link #sharePlan}), the runs earlier sessions already
         * did for a shape are not repeated.
         */
        public Builder warmUp(int runsPerShape) {
            if (runsPerShape < 0) {
                throw new IllegalArgumentException("warmUp must be 0 or more runs, got " + runsPerShape);
            }
            this.warmUpRuns = runsPerShape;
            return this;
        }

        /**
         * Whether sessions of the same model file with the same device and optimization share one
         * loaded plan (default true): the second session open at the same time as the first reads,
         * parses and folds nothing, and the weights are in memory once. The plan is freed when its
         * last session closes (unless {@link #retainPlan}). A session of a parsed {@code ModelProto}
         * always has its own plan.
         */
        public Builder sharePlan(boolean share) {
            this.sharePlan = share;
            return this;
        }

        /**
         * Keeps this model's plan in the JVM after its last session closes (default false), so that
         * creating a session of the model again reads, parses, converts and folds nothing, and its
         * warm-up skips the runs earlier sessions already did on the plan (see {@link #warmUp}). Implies {@link #sharePlan}. The plan's memory (the weights)
         * stays in use until {@link InferenceSession#releaseRetainedPlans()}.
         */
        public Builder retainPlan(boolean retain) {
            this.retainPlan = retain;
            return this;
        }

        /** Loads the model (all checks happen here: an unsupported op fails now, not on a request). */
        public InferenceSession build() throws IOException {
            if (threads > 0) {
                Cortado.setThreads(threads);
            }
            boolean fold = optimization == Optimization.FOLD_CONSTANTS;
            InferenceSession s;
            if (file != null && (sharePlan || retainPlan)) {
                PlanCache.Key key = PlanCache.key(file, device, optimization);
                PlanCache.Lease lease = PlanCache.acquire(key, retainPlan, () -> OnnxModel.load(file, device, fold));
                s = new InferenceSession(lease.model(), this, key, lease.hit(), lease.warmedUp());
            } else {
                OnnxModel m = file != null ? OnnxModel.load(file, device, fold) : OnnxModel.of(proto, null, device, fold);
                s = new InferenceSession(m, this, null, false, new java.util.concurrent.ConcurrentHashMap<>());
            }
            try {
                s.warmUp(warmUpRuns);
            } catch (RuntimeException | Error e) {
                s.close();
                throw e;
            }
            return s;
        }
    }

    /**
     * The imported model (its input and output names, opset). It may be shared with other sessions
     * of the same model file ({@link Builder#sharePlan}): close the session, not the model.
     */
    public OnnxModel model() {
        return model;
    }

    /**
     * Whether this session found its model's plan already loaded (by another open session, or
     * retained by {@link Builder#retainPlan}) instead of loading it.
     */
    public boolean planFromCache() {
        return planFromCache;
    }

    /**
     * Frees the retained plans ({@link Builder#retainPlan}) that no open session uses; a plan still
     * in use is freed when its last session closes. Returns how many plans were freed now.
     */
    public static int releaseRetainedPlans() {
        return PlanCache.releaseRetained();
    }

    /** The shape buckets, ascending (empty: feeds are not padded). */
    public List<Integer> shapeBuckets() {
        return Arrays.stream(buckets).boxed().toList();
    }

    /**
     * The length a feed of {@code length} in the bucket dimension is padded to ({@code length}
     * itself without buckets).
     *
     * @throws IllegalArgumentException when {@code length} is beyond the largest bucket
     */
    public int paddedLength(int length) {
        if (buckets.length == 0) {
            return length;
        }
        for (int b : buckets) {
            if (b >= length) {
                return b;
            }
        }
        throw new IllegalArgumentException("length " + length + " in dimension " + bucketDim
                + " is beyond the largest shape bucket " + buckets[buckets.length - 1] + " (buckets "
                + Arrays.toString(buckets) + ")");
    }

    /** The requests, batch sizes and latency percentiles of this session's runs so far. */
    public InferenceMetrics.Snapshot metrics() {
        return metrics.snapshot();
    }

    /**
     * Runs the model on {@code feeds} (input name -> tensor, not taken over); returns the outputs
     * by name, owned by the caller. Thread-safe. Fails with {@link IllegalStateException} once the
     * session is closed (also for a run still waiting for a slot when it closes), with
     * {@link IllegalArgumentException} for a wrong input name, dtype or rank, or a length beyond
     * the largest shape bucket.
     */
    public Map<String, Tensor> run(Map<String, Tensor> feeds) {
        long start = System.nanoTime();
        ReentrantReadWriteLock.ReadLock read = lifecycle.readLock();
        if (closed || !read.tryLock()) {
            metrics.recordRejected();
            throw new IllegalStateException("the inference session is closed");
        }
        boolean ok = false;
        try {
            if (closed) {
                metrics.recordRejected();
                throw new IllegalStateException("the inference session is closed");
            }
            slots.acquireUninterruptibly();
            try {
                if (closed) {
                    throw new IllegalStateException("the inference session was closed while this run waited for a slot");
                }
                Map<String, Tensor> out = buckets.length == 0 ? model.run(feeds) : runPadded(feeds);
                metrics.recordBatch(batchSize(feeds));
                ok = true;
                return out;
            } finally {
                slots.release();
                metrics.recordRequest(System.nanoTime() - start, ok);
            }
        } finally {
            read.unlock();
        }
    }

    /** The leading dimension of the first fed tensor (1 for a scalar or no feed). */
    private static int batchSize(Map<String, Tensor> feeds) {
        for (Tensor t : feeds.values()) {
            return t.rank() == 0 ? 1 : (int) Math.min(Integer.MAX_VALUE, t.size(0));
        }
        return 1;
    }

    @SuppressWarnings("try") // the scope frees the padded copies
    private Map<String, Tensor> runPadded(Map<String, Tensor> feeds) {
        long longest = 0;
        String longestName = null;
        for (Map.Entry<String, Tensor> e : feeds.entrySet()) {
            if (e.getValue().rank() > bucketDim && e.getValue().size(bucketDim) > longest) {
                longest = e.getValue().size(bucketDim);
                longestName = e.getKey();
            }
        }
        if (longestName == null) {
            return model.run(feeds);
        }
        int target;
        try {
            target = paddedLength((int) Math.min(Integer.MAX_VALUE, longest));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("input '" + longestName + "': " + e.getMessage(), e);
        }
        Map<String, Tensor> padded = new HashMap<>();
        try (Scope scope = Scope.open()) {
            for (Map.Entry<String, Tensor> e : feeds.entrySet()) {
                Tensor t = e.getValue();
                if (t.rank() <= bucketDim || t.size(bucketDim) == target) {
                    padded.put(e.getKey(), t);
                    continue;
                }
                long[] dims = t.dims();
                dims[bucketDim] = target;
                Tensor p = Tensor.zeros(t.dtype(), t.device(), dims);
                try (Tensor head = p.narrow(bucketDim, 0, t.size(bucketDim))) {
                    head.copyFrom(t);
                }
                padded.put(e.getKey(), p);
            }
            Map<String, Tensor> out = model.run(padded);
            // the outputs were made inside this scope: hand them to the caller's
            out.values().forEach(scope::keep);
            return out;
        }
    }

    /**
     * Runs the model on zero feeds of each bucket shape, {@code runs} times each, less the runs
     * already done on this plan by earlier sessions (a cached plan is already warm in this process).
     */
    @SuppressWarnings("try") // the scope frees the feeds and outputs
    private void warmUp(int runs) {
        if (runs == 0) {
            return;
        }
        int[] lengths = buckets.length == 0 ? new int[] {-1} : buckets;
        for (int length : lengths) {
            String shape = bucketDim + ":" + length;
            for (int r = warmedUp.getOrDefault(shape, 0); r < runs; r++) {
                try (Scope scope = Scope.open()) {
                    Map<String, Tensor> feeds = new HashMap<>();
                    for (String name : model.inputNames()) {
                        feeds.put(name, zeroFeed(name, length));
                    }
                    model.run(feeds);
                }
                warmedUp.merge(shape, r + 1, Math::max);
            }
        }
    }

    /** A zero tensor of input {@code name}'s declared dtype and shape, open dimensions 1 (the bucket dimension {@code length}). */
    private Tensor zeroFeed(String name, int length) {
        ValueInfoProto info = model.inputInfo(name);
        TypeProto type = info.getType();
        if (!type.hasTensorType() || !type.getTensorType().hasShape()
                || !OnnxTensors.isSupported(type.getTensorType().getElemType())) {
            throw new IllegalArgumentException("warm-up: input '" + name + "' declares no tensor shape and dtype"
                    + " to make a zero input from; build without warmUp and run a request instead");
        }
        DType dtype = OnnxTensors.dtypeOf(type.getTensorType().getElemType());
        TensorShapeProto shape = type.getTensorType().getShape();
        long[] dims = new long[shape.getDimCount()];
        for (int i = 0; i < dims.length; i++) {
            TensorShapeProto.Dimension d = shape.getDim(i);
            dims[i] = d.hasDimValue() ? d.getDimValue() : (i == bucketDim && length > 0 ? length : 1);
        }
        return Tensor.zeros(dtype, model.device(), dims);
    }

    /**
     * Refuses new runs, fails the runs waiting for a slot, waits for the executing ones, frees the
     * weights. Idempotent.
     */
    @Override
    public void close() {
        closed = true;
        lifecycle.writeLock().lock();
        try {
            if (!released) {
                released = true;
                if (planKey != null) {
                    PlanCache.release(planKey);
                } else {
                    model.close();
                }
            }
        } finally {
            lifecycle.writeLock().unlock();
        }
    }
}
