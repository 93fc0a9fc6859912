package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.Cortado;
import dev.cortado.backend.cuda.CudaStream;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.MemoryPattern;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;
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
 * <p><b>Memory.</b> The imported model is interpreted node by node, and each run's allocations are
 * planned ({@link Builder#reuseMemory}, on by default): the first run of an input shape records
 * them as a {@link MemoryPattern}, planned into one arena; later runs of that shape take every
 * intermediate tensor from an arena of the pattern (one per run executing at once, kept between
 * runs). With the outputs copied into the caller's tensors ({@link #run(Map, Map)}), a request of
 * a seen shape allocates no native memory at all; a run that strays from its pattern falls back to
 * the allocator and the shape is recorded again.
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
    /** One stream per run executing at once, on a CUDA device (null on the CPU). */
    private final StreamPool<CudaStream> streams;
    /** Memory patterns by input shapes ({@link Builder#reuseMemory}); null when off. */
    private final Map<String, ShapePlan> patterns;
    /** The arenas waiting in the {@link ShapePlan#idle} queues, counted as they come and go. */
    private final IdleArenas idleTally = new IdleArenas();
    private volatile boolean closed;
    private boolean released;
    private boolean planFromDisk;
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(InferenceSession.class);

    /** The most input shapes a session keeps memory patterns for; runs of further shapes allocate as usual. */
    static final int MAX_PATTERNS = 32;
    /**
     * The most memory the idle arenas of a session keep (1 GiB): an arena given back beyond it is
     * freed, and the next run of its shape allocates a new one (one allocation instead of one per
     * tensor). Shapes without buckets (every batch padded to its own longest text) can be many.
     */
    static final long MAX_IDLE_ARENA_BYTES = 1L << 30;
    /** Divergent replays after which a shape is run without a pattern (its allocations vary from run to run). */
    static final int MAX_DIVERGENCES = 3;

    private InferenceSession(OnnxModel model, Builder b, PlanCache.Key planKey, boolean planFromCache,
                             Map<String, Integer> warmedUp) {
        this.patterns = b.reuseMemory ? new ConcurrentHashMap<>() : null;
        Device device = model.device();
        this.streams = device.isCuda() ? new StreamPool<>(b.maxConcurrentRuns, () -> CudaStream.create(device)) : null;
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
        private boolean reuseMemory = true;
        private Path planCache;

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

        /**
         * Whether runs reuse planned memory (default true). The first run of each input shape (the
         * shapes after bucket padding) records its allocations and plans them into one arena
         * ({@link MemoryPattern}); later runs of that shape take every tensor from an arena of
         * that plan, one arena per run executing at once, kept between runs. A request of a seen
         * shape then allocates no native memory when its outputs go into the caller's tensors
         * ({@link InferenceSession#run(Map, Map)}); {@link InferenceSession#run(Map)} allocates
         * only the returned outputs. Memory held: one arena (the run's planned peak) per shape and
         * concurrent run, for at most {@value InferenceSession#MAX_PATTERNS} shapes, freed by
         * {@link InferenceSession#close()}.
         */
        public Builder reuseMemory(boolean reuse) {
            this.reuseMemory = reuse;
            return this;
        }

        /**
         * A folder for plans on disk (default: none). The first session of a model file writes its
         * plan there (the fused and folded graph and its constants, {@code <hash>.plan}, written to
         * a temporary file and renamed); a later process, or a later session once the in-memory
         * plan is gone, loads it instead of the model: no parsing, no tensor conversion, no
         * folding, the constants mapped from the file rather than copied. A plan is keyed like the
         * in-memory cache (the model file's path, size, modification time and file key, the device,
         * the optimization level) plus the engine version; a corrupted, truncated or stale file is
         * detected (checksum, length, key), logged, deleted and rebuilt. Sessions of a parsed
         * {@code ModelProto} and models with subgraphs (If, Loop, Scan) do not use it.
         */
        public Builder planCache(Path folder) {
            this.planCache = folder;
            return this;
        }

        private OnnxModel load(PlanCache.Key key, boolean fold, boolean[] fromDisk) throws IOException {
            return loadFrom(planCache, key, file, fold, fromDisk);
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
                boolean[] fromDisk = new boolean[1];
                PlanCache.Lease lease = PlanCache.acquire(key, retainPlan, () -> load(key, fold, fromDisk));
                s = new InferenceSession(lease.model(), this, key, lease.hit(), lease.warmedUp());
                s.planFromDisk = fromDisk[0];
            } else if (file != null) {
                boolean[] fromDisk = new boolean[1];
                OnnxModel m = load(PlanCache.key(file, device, optimization), fold, fromDisk);
                s = new InferenceSession(m, this, null, false, new java.util.concurrent.ConcurrentHashMap<>());
                s.planFromDisk = fromDisk[0];
            } else {
                OnnxModel m = OnnxModel.of(proto, null, device, fold);
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
     * The model of {@code key}: from the plan folder when it holds a valid plan ({@code fromDisk[0]}
     * set), else loaded from the model file (and its plan written to the folder, if any).
     */
    private static OnnxModel loadFrom(Path folder, PlanCache.Key key, Path file, boolean fold, boolean[] fromDisk)
            throws IOException {
        if (folder != null) {
            OnnxModel m = PlanFile.read(folder, key.diskKey(), key.device());
            if (m != null) {
                fromDisk[0] = true;
                return m;
            }
        }
        OnnxModel m = OnnxModel.load(file, key.device(), fold);
        if (folder != null) {
            try {
                PlanFile.write(m, key.diskKey(), folder);
            } catch (IOException | RuntimeException e) {
                // the session serves from the model it loaded; the next one tries again
                LOG.warn("plan cache: cannot write the plan of {} into {}: {}", file, folder, e.toString());
            }
        }
        return m;
    }

    /**
     * Whether this session's plan was loaded from the plan folder ({@link Builder#planCache})
     * rather than from the model file (false also when it came from the in-memory cache).
     */
    public boolean planFromDisk() {
        return planFromDisk;
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

    /** How many input shapes have a memory pattern (0 with {@link Builder#reuseMemory} off). */
    public int memoryPatterns() {
        if (patterns == null) {
            return 0;
        }
        int n = 0;
        for (ShapePlan p : patterns.values()) {
            n += p.pattern == null ? 0 : 1;
        }
        return n;
    }

    /**
     * Bytes of the memory arenas this session keeps between runs ({@link Builder#reuseMemory}):
     * memory it holds on purpose, at most one arena per input shape and run executing at once
     * (and within {@link #MAX_IDLE_ARENA_BYTES}). Counts the arenas not in use by a run now.
     */
    public long idleArenaBytes() {
        return idleTally.bytes.get();
    }

    /** How many memory arenas this session keeps between runs now ({@link #idleArenaBytes}): one allocation each. */
    public int idleArenas() {
        return idleTally.count.get();
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
        return guardedRun(feeds, null);
    }

    /**
     * Runs the model on {@code feeds} and copies the outputs into {@code outputs} (output name ->
     * a tensor of that output's dtype and shape, the bucket length included; a subset of the
     * outputs may be asked for). With {@link Builder#reuseMemory} on (the default), a run of an
     * input shape seen before allocates no native memory at all: every intermediate comes from
     * the shape's planned arena and the results go into the caller's tensors. Thread-safe; fails
     * as {@link #run(Map)} does, and with {@link IllegalArgumentException} for an unknown output
     * name or a tensor of the wrong dtype or shape (nothing is written then).
     */
    public void run(Map<String, Tensor> feeds, Map<String, Tensor> outputs) {
        Objects.requireNonNull(outputs, "outputs");
        for (Map.Entry<String, Tensor> e : outputs.entrySet()) {
            if (!model.outputNames().contains(e.getKey())) {
                throw new IllegalArgumentException("'" + e.getKey() + "' is not an output of the model; its outputs are "
                        + model.outputNames());
            }
            Objects.requireNonNull(e.getValue(), "outputs: the tensor of '" + e.getKey() + "'");
        }
        guardedRun(feeds, outputs);
    }

    private Map<String, Tensor> guardedRun(Map<String, Tensor> feeds, Map<String, Tensor> into) {
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
                Map<String, Tensor> out = runOnce(feeds, into);
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

    /** One input shape's memory pattern and its idle arenas (null pattern: the shape runs unplanned). */
    private static final class ShapePlan {
        final MemoryPattern pattern;
        final ConcurrentLinkedQueue<MemoryPattern.Arena> idle = new ConcurrentLinkedQueue<>();
        final AtomicInteger divergences;

        ShapePlan(MemoryPattern pattern, AtomicInteger divergences) {
            this.pattern = pattern;
            this.divergences = divergences;
        }

        MemoryPattern.Arena take(IdleArenas tally) {
            for (MemoryPattern.Arena a; (a = idle.poll()) != null; ) {
                tally.remove(a);
                if (a.reusable()) {
                    return a;
                }
                a.close();
            }
            return pattern.newArena();
        }

        /** Keeps {@code a} for the next run of the shape if the session's idle arenas stay within their budget. */
        void give(MemoryPattern.Arena a, IdleArenas tally) {
            if (tally.add(a)) {
                idle.offer(a);
            } else {
                a.close();
            }
        }

        void closeIdle(IdleArenas tally) {
            for (MemoryPattern.Arena a; (a = idle.poll()) != null; ) {
                tally.remove(a);
                a.close();
            }
        }
    }

    /** Bytes and number of a session's idle arenas, within {@link #MAX_IDLE_ARENA_BYTES}. */
    private static final class IdleArenas {
        final java.util.concurrent.atomic.AtomicLong bytes = new java.util.concurrent.atomic.AtomicLong();
        final AtomicInteger count = new AtomicInteger();

        /** Counts {@code a} in if the budget allows it; false (nothing counted) if it does not. */
        boolean add(MemoryPattern.Arena a) {
            if (bytes.addAndGet(a.bytes()) > MAX_IDLE_ARENA_BYTES) {
                bytes.addAndGet(-a.bytes());
                return false;
            }
            count.incrementAndGet();
            return true;
        }

        void remove(MemoryPattern.Arena a) {
            bytes.addAndGet(-a.bytes());
            count.decrementAndGet();
        }
    }

    /**
     * {@link #execute} on the CPU; on a GPU on a stream of its own, taken from the session's pool
     * for the run and given back once the run has synchronized it, so runs executing at once (the
     * batches of a dynamic batcher with several in flight) overlap on the device.
     */
    @SuppressWarnings("try") // the stream is current for the block
    private Map<String, Tensor> runOnce(Map<String, Tensor> feeds, Map<String, Tensor> into) {
        if (streams == null) {
            return execute(feeds, into, null);
        }
        CudaStream stream;
        try {
            stream = streams.take();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for a stream", e);
        }
        try (CudaStream.Use use = stream.use()) {
            return execute(feeds, into, stream);
        } finally {
            streams.give(stream);
        }
    }

    /** How many CUDA streams this session has made (0 on the CPU): at most one per run executing at once. */
    public int streamsCreated() {
        return streams == null ? 0 : streams.created();
    }

    private static void synchronize(CudaStream stream) {
        if (stream != null) {
            stream.synchronize();
        }
    }

    /**
     * Runs the model (padding the feeds to their bucket) and delivers the outputs: into the
     * caller's tensors when {@code into} is given (returns an empty map), else as new tensors.
     * With memory reuse, the first run of a shape records its pattern and later ones replay it.
     */
    private Map<String, Tensor> execute(Map<String, Tensor> feeds, Map<String, Tensor> into, CudaStream stream) {
        if (patterns == null) {
            Map<String, Tensor> result = deliver(unplanned(feeds), into, false);
            synchronize(stream);
            return result;
        }
        String key = shapeKey(feeds);
        ShapePlan plan = patterns.get(key);
        if (plan == null && patterns.size() < MAX_PATTERNS) {
            Map<String, Tensor> out;
            MemoryPattern pattern;
            try (MemoryPattern.Recording recording = MemoryPattern.record(model.device())) {
                out = unplanned(feeds);
                pattern = recording.finish();
            }
            patterns.putIfAbsent(key, new ShapePlan(pattern, new AtomicInteger()));
            Map<String, Tensor> result = deliver(out, into, false);
            synchronize(stream);
            return result;
        }
        if (plan == null || plan.pattern == null) {
            Map<String, Tensor> result = deliver(unplanned(feeds), into, false);
            synchronize(stream);
            return result;
        }
        MemoryPattern.Arena arena = plan.take(idleTally);
        boolean diverged = true;
        Map<String, Tensor> out = null;
        try {
            try (MemoryPattern.Replay replay = arena.replay()) {
                try {
                    out = unplanned(feeds);
                } finally {
                    replay.close();
                    diverged = replay.diverged();
                }
            }
            Map<String, Tensor> result = deliver(out, into, true);
            out = null;
            return result;
        } finally {
            if (out != null) {
                closeAll(out);
            }
            try {
                synchronize(stream); // the run's kernels are done with the arena before another run gets it
            } catch (RuntimeException | Error e) {
                diverged = true; // the arena is not reused
                throw e;
            } finally {
                releaseArena(plan, key, arena, diverged);
            }
        }
    }

    /** Back to the shape's idle arenas, or closed (and the shape recorded again) after a divergence. */
    private void releaseArena(ShapePlan plan, String key, MemoryPattern.Arena arena, boolean diverged) {
        if (!diverged && !closed && arena.reusable()) {
            plan.give(arena, idleTally);
        } else {
            arena.close();
        }
        if (diverged && patterns.remove(key, plan)) {
            // record the shape again on its next run, or give up on it after a few tries
            plan.closeIdle(idleTally);
            int n = plan.divergences.incrementAndGet();
            if (n >= MAX_DIVERGENCES) {
                patterns.put(key, new ShapePlan(null, plan.divergences));
            }
        }
    }

    /** The outputs of a run: copied into {@code into} (then closed), or returned (copied out of the arena when {@code planned}). */
    private Map<String, Tensor> deliver(Map<String, Tensor> out, Map<String, Tensor> into, boolean planned) {
        try {
            if (into != null) {
                for (Map.Entry<String, Tensor> e : into.entrySet()) {
                    Tensor result = out.get(e.getKey());
                    Tensor dst = e.getValue();
                    if (dst.dtype() != result.dtype() || !dst.shape().equals(result.shape())) {
                        throw new IllegalArgumentException("output '" + e.getKey() + "' is " + result.describe()
                                + "; the tensor given for it is " + dst.describe());
                    }
                }
                for (Map.Entry<String, Tensor> e : into.entrySet()) {
                    e.getValue().copyFrom(out.get(e.getKey()));
                }
                return Map.of();
            }
            if (!planned) {
                Map<String, Tensor> kept = out;
                out = null;
                return kept;
            }
            Map<String, Tensor> copies = new java.util.LinkedHashMap<>();
            try {
                for (Map.Entry<String, Tensor> e : out.entrySet()) {
                    copies.put(e.getKey(), e.getValue().copy()); // out of the arena: the caller keeps it
                }
            } catch (RuntimeException | Error e) {
                closeAll(copies);
                throw e;
            }
            return copies;
        } finally {
            if (out != null) {
                closeAll(out);
            }
        }
    }

    private static void closeAll(Map<String, Tensor> tensors) {
        for (Tensor t : tensors.values()) {
            if (!t.isClosed()) {
                t.close();
            }
        }
    }

    /** The model's outputs for {@code feeds}, padded to their bucket, allocated as the run goes. */
    private Map<String, Tensor> unplanned(Map<String, Tensor> feeds) {
        return buckets.length == 0 ? model.run(feeds) : runPadded(feeds);
    }

    /** The input shapes the model sees for {@code feeds} (after padding), in input order: a memory pattern's key. */
    private String shapeKey(Map<String, Tensor> feeds) {
        int target = -1;
        if (buckets.length > 0) {
            long longest = 0;
            for (Tensor t : feeds.values()) {
                if (t.rank() > bucketDim) {
                    longest = Math.max(longest, t.size(bucketDim));
                }
            }
            target = longest == 0 ? -1 : paddedLengthOrZero(longest);
        }
        StringBuilder key = new StringBuilder();
        for (String name : model.inputNames()) {
            Tensor t = feeds.get(name);
            if (t == null) {
                continue; // the model's check names it
            }
            key.append(t.dtype().ordinal()).append(t.device()).append('[');
            for (int d = 0; d < t.rank(); d++) {
                key.append(d == bucketDim && target > 0 ? target : t.size(d)).append(',');
            }
            key.append(']');
        }
        return key.toString();
    }

    /** {@link #paddedLength}, or 0 beyond the largest bucket (the run reports it). */
    private int paddedLengthOrZero(long length) {
        for (int b : buckets) {
            if (b >= length) {
                return b;
            }
        }
        return 0;
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
        Map<String, Tensor> padded = new HashMap<>(feeds);
        try (Scope scope = Scope.open()) {
            // in the model's input order, whatever the map's: a memory pattern replays the order
            for (String name : model.inputNames()) {
                Tensor t = feeds.get(name);
                if (t == null || t.rank() <= bucketDim || t.size(bucketDim) == target) {
                    continue;
                }
                long[] dims = t.dims();
                dims[bucketDim] = target;
                Tensor p = Tensor.zeros(t.dtype(), t.device(), dims);
                try (Tensor head = p.narrow(bucketDim, 0, t.size(bucketDim))) {
                    head.copyFrom(t);
                }
                padded.put(name, p);
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
                    runOnce(feeds, null);
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
                if (patterns != null) {
                    patterns.values().forEach(p -> p.closeIdle(idleTally));
                    patterns.clear();
                }
                if (streams != null) {
                    streams.close();
                }
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
