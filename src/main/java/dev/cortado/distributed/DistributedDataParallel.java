package dev.cortado.distributed;

import dev.cortado.autograd.Autograd;
import dev.cortado.io.Checkpoint;
import dev.cortado.nn.Module;
import dev.cortado.ops.Indexing;
import dev.cortado.optim.Optimizer;
import dev.cortado.sparse.CompressedGradients;
import dev.cortado.sparse.DeepGradientCompression;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Data-parallel training of one module replicated in every process of a {@link ProcessGroup}:
 * each process runs forward and backward on its own shard of the batch, and the gradients are
 * averaged across processes during the backward, so every replica takes the same optimizer step.
 *
 * <p>How: at wrap time rank 0's parameters and buffers are broadcast, so replicas start equal. The
 * parameters are grouped into buckets of about {@link Builder#bucketCapBytes} (25 MiB by default)
 * in reverse registration order (roughly the order backward produces their gradients). An
 * {@link Autograd#onGradientReady} listener copies each finished gradient into its bucket's flat
 * buffer; when a bucket is full its all-reduce (average) starts on the group's communication
 * thread while the backward goes on (buckets start in index order on every rank, so the
 * collectives match). {@link #backward(Tensor)} returns when every bucket is reduced and copied
 * back into the parameters' gradients.
 *
 * <p>With {@link Builder#compression} a float bucket is not all-reduced: it is compressed (top-k
 * with error feedback, {@link GradientCompression}) on the backward thread as soon as it is
 * complete, and its (index, value) pairs are all-gathered on the communication thread while the
 * backward goes on; at the end every process sums the pairs of every process in the same order.
 * {@link StepReport} gives the bytes sent against a dense exchange.
 *
 * <p>Under a compiled training step ({@code dev.cortado.graph.TrainingStep}), which computes all
 * gradients in one graph, {@link #synchronizeGradients()} averages them (bucketed, compressed if
 * configured) before the optimizer update.
 *
 * <pre>{@code
 * try (var group = ProcessGroup.mpi(); var ddp = DistributedDataParallel.builder(model, group).build()) {
 *     for (Batch b : loader.epoch(e)) {            // loader built with .shard(group.rank(), group.worldSize())
 *         optimizer.zeroGrad();
 *         try (Tensor loss = Losses.crossEntropy(model.apply(b.input()), b.target())) {
 *             ddp.backward(loss);
 *         }
 *         optimizer.step();
 *     }
 * }
 * }</pre>
 */
public final class DistributedDataParallel implements AutoCloseable {
    private final Module module;
    private final ProcessGroup group;
    private final boolean findUnusedParameters;
    private final GradientCompression compression;
    private boolean inBackward;
    private final List<Bucket> buckets = new ArrayList<>();
    private final Map<Tensor, Slot> slots = new IdentityHashMap<>();
    private final List<Autograd.Registration> registrations = new ArrayList<>();
    private int nextToLaunch;
    private boolean syncing = true;
    private StepReport lastStep;
    private long stepStartNanos;

    /** Where one parameter's gradient lives in its bucket. */
    private record Slot(String name, Tensor parameter, Bucket bucket, long offset) {
    }

    /** A flat buffer of several gradients, reduced by one all-reduce. */
    private static final class Bucket {
        final int index;
        final Tensor flat;
        final List<Slot> members = new ArrayList<>();
        int ready;
        Work work;
        long launchedNanos;
        /** Top-k with error feedback (null: dense all-reduce); its residual is this bucket's. */
        DeepGradientCompression compressor;
        /** This step's compressed message and the gathered messages of every process (while in flight). */
        CompressedGradients sent;
        Tensor sentIndices;
        Tensor gatheredValues;
        Tensor gatheredIndices;
        Work indicesWork;
        long bytesSent;

        Bucket(int index, Tensor flat) {
            this.index = index;
            this.flat = flat;
        }
    }

    /**
     * What the last synchronised backward did: when it started, when each bucket's all-reduce was
     * launched, when backward's own work ended and when the last reduction was done (System.nanoTime),
     * the bytes this process contributed to the collectives ({@code bytesSent}: its all-reduce inputs,
     * or with compression its (index, value) pairs) and those of a dense all-reduce ({@code denseBytes}).
     */
    public record StepReport(long startNanos, long[] bucketLaunchNanos, long backwardEndNanos, long doneNanos,
                             long bytesSent, long denseBytes) {
        /** The fraction of a dense exchange's bytes this process sent (1 without compression). */
        public double sentFraction() {
            return denseBytes == 0 ? 1 : (double) bytesSent / denseBytes;
        }

        /** Buckets whose all-reduce started before the backward had finished: the overlap. */
        public int bucketsLaunchedDuringBackward() {
            int n = 0;
            for (long t : bucketLaunchNanos) {
                n += t < backwardEndNanos ? 1 : 0;
            }
            return n;
        }
    }

    /** Options for wrapping {@code module}, whose replicas live in the processes of {@code group}. */
    public static Builder builder(Module module, ProcessGroup group) {
        return new Builder(module, group);
    }

    /** Options of {@link DistributedDataParallel}. */
    public static final class Builder {
        private final Module module;
        private final ProcessGroup group;
        private long bucketCapBytes = 25L << 20;
        private boolean findUnusedParameters;
        private GradientCompression compression;

        private Builder(Module module, ProcessGroup group) {
            this.module = Objects.requireNonNull(module, "module");
            this.group = Objects.requireNonNull(group, "group");
        }

        /** Gradient bytes per all-reduce (default 25 MiB, PyTorch's): fewer, larger messages vs earlier overlap. */
        public Builder bucketCapBytes(long bytes) {
            if (bytes < 1) {
                throw new IllegalArgumentException("DistributedDataParallel: bucketCapBytes " + bytes + " must be positive");
            }
            this.bucketCapBytes = bytes;
            return this;
        }

        /**
         * Whether parameters that get no gradient in a backward are allowed (their gradient counts as
         * zero and their buckets are reduced at the end). Off by default: such a parameter is then
         * an error that names it, since it usually means a forward that skips part of the model.
         */
        public Builder findUnusedParameters(boolean on) {
            this.findUnusedParameters = on;
            return this;
        }

        /**
         * Compresses the float gradient buckets instead of all-reducing them (null, the default:
         * dense all-reduce). See {@link GradientCompression}.
         */
        public Builder compression(GradientCompression options) {
            this.compression = options;
            return this;
        }

        /** Broadcasts rank 0's parameters and buffers and builds the buckets (a collective: every rank calls it). */
        public DistributedDataParallel build() {
            return new DistributedDataParallel(this);
        }
    }

    private DistributedDataParallel(Builder b) {
        this.module = b.module;
        this.group = b.group;
        this.findUnusedParameters = b.findUnusedParameters;
        this.compression = b.compression;
        Map<String, Tensor> named = module.namedParameters();
        List<Work> sync = new ArrayList<>();
        for (Map.Entry<String, Tensor> e : named.entrySet()) {
            sync.add(broadcastOf(e.getKey(), e.getValue()));
        }
        for (Map.Entry<String, Tensor> e : module.namedBuffers().entrySet()) {
            if (e.getValue() != null) {
                sync.add(broadcastOf(e.getKey(), e.getValue()));
            }
        }
        sync.forEach(Work::await);
        // buckets in reverse registration order, one dtype per bucket
        List<Map.Entry<String, Tensor>> trainable = new ArrayList<>();
        for (Map.Entry<String, Tensor> e : named.entrySet()) {
            if (e.getValue() != null && e.getValue().requiresGrad()) {
                trainable.add(0, e);
            }
        }
        try (Scope detached = Scope.detached()) {
            int i = 0;
            while (i < trainable.size()) {
                DType dtype = trainable.get(i).getValue().dtype();
                long elements = 0;
                int j = i;
                while (j < trainable.size() && trainable.get(j).getValue().dtype() == dtype
                        && (j == i || (elements + trainable.get(j).getValue().numel()) * dtype.byteSize() <= b.bucketCapBytes)) {
                    elements += trainable.get(j).getValue().numel();
                    j++;
                }
                Tensor p0 = trainable.get(i).getValue();
                Bucket bucket = new Bucket(buckets.size(), Tensor.zeros(dtype, p0.device(), elements));
                long offset = 0;
                for (int k = i; k < j; k++) {
                    Slot slot = new Slot(trainable.get(k).getKey(), trainable.get(k).getValue(), bucket, offset);
                    bucket.members.add(slot);
                    slots.put(slot.parameter(), slot);
                    offset += slot.parameter().numel();
                }
                if (compression != null && dtype.isFloatingPoint()) {
                    bucket.compressor = compression.compressorFor(bucket.flat);
                }
                buckets.add(bucket);
                i = j;
            }
        }
        for (Slot s : slots.values()) {
            registrations.add(Autograd.onGradientReady(s.parameter(), this::gradientReady));
        }
    }

    private Work broadcastOf(String name, Tensor t) {
        if (!t.isContiguous()) {
            throw new IllegalArgumentException("DistributedDataParallel: parameter or buffer '" + name + "' "
                    + t.describe() + " is not contiguous");
        }
        try (Autograd.GradMode off = Autograd.noGrad()) {
            return group.broadcast(t, 0);
        }
    }

    /**
     * Writes the job's checkpoint: rank 0 saves the module's state, {@code optimizer}'s (null for
     * none) and {@code info} to {@code path} with {@link Checkpoint#save}, which is atomic (a crash
     * mid-write, of this process or of a peer that takes the job down, leaves the previous file
     * intact); then every rank waits at a barrier, so none runs ahead of a checkpoint that is not
     * complete. The replicas are equal, so rank 0's copy is the job's.
     */
    public void saveCheckpoint(Path path, Optimizer optimizer, Map<String, String> info) throws IOException {
        Objects.requireNonNull(path, "path");
        if (group.rank() == 0) {
            try (Scope views = Scope.open()) { // the optimizer's state() gives views: the scope closes them
                Checkpoint.save(path, module.state(), optimizer == null ? Map.of() : optimizer.state(), info);
            }
        }
        group.barrier().await();
    }

    /**
     * Resumes training on every rank from {@code path}: each process reads the file and loads it
     * into the module (strictly) and into {@code optimizer} (null for none), so every replica has
     * the same parameters, buffers and optimizer state (moments, step counts) again. The ranks
     * then compare what they loaded, the checkpoint's step and a fingerprint of the parameters,
     * and all of them throw an {@link IllegalStateException} giving both ranges when any differs (a
     * rank that read another file, or an older copy of it). Returns the checkpoint's info.
     */
    public Map<String, String> resume(Path path, Optimizer optimizer) throws IOException {
        Objects.requireNonNull(path, "path");
        Map<String, String> info;
        double step;
        try (Checkpoint.Loaded loaded = Checkpoint.load(path, device())) {
            module.loadState(loaded.model(), true);
            if (optimizer != null) {
                optimizer.loadState(loaded.optimizer());
            }
            info = Map.copyOf(loaded.info());
            step = loaded.step().isPresent() ? loaded.step().getAsLong() : -1;
        }
        double fingerprint = 0;
        int k = 0;
        for (Tensor p : module.parameters()) {
            double sum = 0;
            for (double v : p.toDoubleArray()) {
                sum += v;
            }
            fingerprint += ++k * sum;
        }
        double[] low;
        double[] high;
        try (Tensor min = Tensor.of(new double[] {step, fingerprint}, 2);
             Tensor max = Tensor.of(new double[] {step, fingerprint}, 2)) {
            Work a = group.allReduce(min, ReduceOp.MIN);
            Work b = group.allReduce(max, ReduceOp.MAX);
            a.await();
            b.await();
            low = min.toDoubleArray();
            high = max.toDoubleArray();
        }
        if (low[0] != high[0] || low[1] != high[1]) {
            throw new IllegalStateException("DistributedDataParallel.resume(" + path + "): the " + group.worldSize()
                    + " ranks loaded different checkpoints: step " + (long) low[0] + " to " + (long) high[0]
                    + ", parameter fingerprint " + low[1] + " to " + high[1] + " (this rank " + group.rank()
                    + ": step " + (long) step + "); every rank must read the same file");
        }
        return info;
    }

    private Device device() {
        for (Tensor p : module.parameters()) {
            return p.device();
        }
        return Device.CPU;
    }

    /** The wrapped module (use it for forward as usual). */
    public Module module() {
        return module;
    }

    /** The number of gradient buckets (each one all-reduce per step). */
    public int bucketCount() {
        return buckets.size();
    }

    /** What the last synchronised {@link #backward} did (null before the first). */
    public StepReport lastStep() {
        return lastStep;
    }

    /**
     * Runs {@code loss.backward()} and averages the gradients across processes, overlapping the
     * all-reduces (or, with compression, the all-gathers) with the backward; returns when the
     * parameters' gradients hold the average. Inside {@link #noSync()} it only accumulates locally.
     */
    public void backward(Tensor loss) {
        if (!syncing) {
            loss.backward();
            return;
        }
        beginStep();
        inBackward = true;
        try {
            loss.backward();
        } catch (RuntimeException e) {
            drainLaunched();
            throw e;
        } finally {
            inBackward = false;
        }
        finishStep(System.nanoTime());
    }

    /**
     * Averages the gradients the parameters already hold (computed by something other than an
     * autograd backward under {@link #backward}, such as a compiled training step, which produces
     * them all at once): every bucket is filled and its all-reduce (or compressed all-gather)
     * started in bucket order, then all are awaited; nothing overlaps a backward here. A
     * collective: every rank calls it at the same step. Parameters without a gradient are treated
     * as in {@link #backward} (an error, or zeros with {@code findUnusedParameters}).
     */
    public void synchronizeGradients() {
        synchronizeGradients(null);
    }

    /**
     * {@link #synchronizeGradients()} for gradients the parameters do not hold: {@code gradients}
     * maps each parameter (by identity) to the tensor holding its gradient, such as a value of a
     * compiled training step's graph; those tensors are averaged in place and stay owned by the
     * caller. A collective, like the other form.
     *
     * @param gradients parameter to gradient; a parameter missing from it counts as without gradient
     */
    public void synchronizeGradients(Map<Tensor, Tensor> gradients) {
        external = gradients;
        try {
            synchronizeHeldGradients();
        } finally {
            external = null;
        }
    }

    /** The gradient of {@code p} that this step averages: an external one, or the one p holds. */
    private Tensor gradientOf(Tensor p) {
        return external != null ? external.get(p) : p.grad();
    }

    private void synchronizeHeldGradients() {
        beginStep();
        long start = System.nanoTime();
        List<String> missing = new ArrayList<>();
        for (Bucket b : buckets) {
            for (Slot s : b.members) {
                if (gradientOf(s.parameter()) == null) {
                    missing.add(s.name());
                }
            }
        }
        if (!missing.isEmpty() && !findUnusedParameters) {
            throw new IllegalStateException("DistributedDataParallel.synchronizeGradients: parameter(s) " + missing
                    + " hold no gradient (on rank " + group.rank() + "); every rank would wait for them. If that is"
                    + " on purpose, build with findUnusedParameters(true)");
        }
        for (Bucket b : buckets) {
            for (Slot s : b.members) {
                fillSlot(s);
            }
            b.ready = b.members.size();
            launchReady();
        }
        finishStep(start);
    }

    private void beginStep() {
        stepStartNanos = System.nanoTime();
        nextToLaunch = 0;
        readyNow.clear();
        for (Bucket b : buckets) {
            b.ready = 0;
            b.work = null;
            b.launchedNanos = 0;
        }
    }

    /** After the gradients are computed: the unused-parameter check, then await every bucket and copy back. */
    private void finishStep(long backwardEnd) {
        List<String> unused = new ArrayList<>();
        for (Bucket b : buckets) {
            if (b.ready < b.members.size()) {
                for (Slot s : b.members) {
                    if (s.parameter().grad() == null || !readyThisStep(s)) {
                        unused.add(s.name());
                    }
                }
            }
        }
        if (!unused.isEmpty()) {
            if (!findUnusedParameters) {
                drainLaunched();
                throw new IllegalStateException("DistributedDataParallel.backward: parameter(s) " + unused
                        + " received no gradient in this backward (on rank " + group.rank() + "); every rank would "
                        + "wait for them. If the forward skips them on purpose, build with findUnusedParameters(true)");
            }
            for (Bucket b : buckets) {
                for (Slot s : b.members) {
                    if (!readyThisStep(s)) {
                        fillSlot(s);
                    }
                }
                b.ready = b.members.size();
            }
            launchReady();
        }
        long[] launches = new long[buckets.size()];
        long bytes = 0;
        long dense = 0;
        try {
            for (Bucket b : buckets) {
                b.work.await();
                if (b.compressor != null) {
                    b.indicesWork.await();
                    sumGathered(b);
                }
                copyBack(b);
            }
        } finally {
            for (Bucket b : buckets) {
                releaseMessage(b);
            }
        }
        for (Bucket b : buckets) {
            launches[b.index] = b.launchedNanos;
            bytes += b.bytesSent;
            dense += b.flat.numel() * b.flat.dtype().byteSize();
        }
        lastStep = new StepReport(stepStartNanos, launches, backwardEnd, System.nanoTime(), bytes, dense);
    }

    /**
     * Gradient accumulation: inside the returned block, {@link #backward} accumulates locally and
     * communicates nothing; the first synchronised backward after it averages the sum.
     * {@code try (var local = ddp.noSync()) { ddp.backward(loss1); }  ddp.backward(loss2);}
     */
    public AutoCloseable noSync() {
        syncing = false;
        return new AutoCloseable() {
            @Override
            public void close() {
                syncing = true;
            }
        };
    }

    private final Map<Tensor, Boolean> readyNow = new IdentityHashMap<>();
    /** The gradients of the synchronizeGradients(Map) call in progress, or null. */
    private Map<Tensor, Tensor> external;

    private boolean readyThisStep(Slot s) {
        return readyNow.getOrDefault(s.parameter(), false);
    }

    /**
     * Called by the backward thread when a parameter's gradient is complete; acts only inside
     * {@link #backward} (not in a plain {@code loss.backward()} nor in a graph capture's).
     */
    private void gradientReady(Tensor parameter) {
        if (!syncing || !inBackward) {
            return;
        }
        Slot s = slots.get(parameter);
        if (s == null || readyThisStep(s)) {
            return;
        }
        fillSlot(s);
        s.bucket().ready++;
        launchReady();
    }

    private void fillSlot(Slot s) {
        readyNow.put(s.parameter(), true);
        try (Autograd.GradMode off = Autograd.noGrad();
             Tensor dst = s.bucket().flat.narrow(0, s.offset(), s.parameter().numel())) {
            Tensor g = gradientOf(s.parameter());
            if (g == null) {
                try (Tensor zero = Tensor.zeros(dst.dtype(), dst.device(), dst.numel())) {
                    dst.copyFrom(zero);
                }
            } else {
                try (Tensor flat = g.reshape(g.numel())) {
                    dst.copyFrom(flat);
                }
            }
        }
    }

    /**
     * Launches the collectives of complete buckets, in index order (the same on every rank): an
     * all-reduce (average), or with compression the bucket's top-k compressed here, on the
     * backward thread, and its values and indices all-gathered.
     */
    private void launchReady() {
        while (nextToLaunch < buckets.size() && buckets.get(nextToLaunch).ready == buckets.get(nextToLaunch).members.size()) {
            Bucket b = buckets.get(nextToLaunch++);
            b.launchedNanos = System.nanoTime();
            if (b.compressor == null) {
                b.work = group.allReduce(b.flat, b.flat.dtype().isFloatingPoint() ? ReduceOp.AVG : ReduceOp.SUM);
                b.bytesSent = b.flat.numel() * b.flat.dtype().byteSize();
            } else {
                launchCompressed(b);
            }
        }
    }

    private void launchCompressed(Bucket b) {
        int p = group.worldSize();
        try (Scope detached = Scope.detached(); Autograd.GradMode off = Autograd.noGrad()) {
            b.sent = b.compressor.compress(List.of(b.flat));
            CompressedGradients.Part part = b.sent.parts().get(0);
            long k = part.count();
            // int32 indices while they fit: half the bytes of int64 (index_add widens them back)
            DType indexType = b.flat.numel() < (1L << 31) ? DType.INT32 : DType.INT64;
            b.sentIndices = part.indices().to(indexType);
            b.gatheredValues = Tensor.empty(part.values().dtype(), b.flat.device(), p * k);
            b.gatheredIndices = Tensor.empty(indexType, b.flat.device(), p * k);
            b.work = group.allGather(b.gatheredValues, part.values());
            b.indicesWork = group.allGather(b.gatheredIndices, b.sentIndices);
            b.bytesSent = k * (part.values().dtype().byteSize() + indexType.byteSize());
        }
    }

    /** The bucket's average: the sum of every process's (index, value) pairs, in rank order, over p. */
    private void sumGathered(Bucket b) {
        try (Scope s = Scope.open(); Autograd.GradMode off = Autograd.noGrad()) {
            Tensor indices = b.gatheredIndices.to(DType.INT64);
            Tensor sum = Indexing.indexAdd(b.flat.numel(), 0, indices, b.gatheredValues);
            b.flat.copyFrom(sum.mul(1.0 / group.worldSize()).to(b.flat.dtype()));
        }
    }

    private static void releaseMessage(Bucket b) {
        if (b.sent != null) {
            b.sent.close();
            b.sentIndices.close();
            b.gatheredValues.close();
            b.gatheredIndices.close();
            b.sent = null;
            b.sentIndices = null;
            b.gatheredValues = null;
            b.gatheredIndices = null;
            b.indicesWork = null;
        }
    }

    private void copyBack(Bucket b) {
        try (Autograd.GradMode off = Autograd.noGrad()) {
            for (Slot s : b.members) {
                readyNow.remove(s.parameter());
                Tensor p = s.parameter();
                try (Tensor part = b.flat.narrow(0, s.offset(), p.numel()); Tensor shaped = part.view(p.shape().toArray())) {
                    Tensor g = gradientOf(p);
                    if (g != null) {
                        g.copyFrom(shaped);
                    } else if (external == null) {
                        p.setGrad(shaped.copy());
                    }
                }
            }
        }
    }

    /** After a failure: waits for what was launched (every rank launched the same) and resets. */
    private void drainLaunched() {
        for (Bucket b : buckets) {
            if (b.work != null) {
                b.work.await();
            }
            if (b.indicesWork != null) {
                b.indicesWork.await();
            }
            releaseMessage(b);
        }
        readyNow.clear();
    }

    /** Stops listening to the gradients and frees the buckets and the compressors' residuals (the group stays open). */
    @Override
    public void close() {
        registrations.forEach(Autograd.Registration::close);
        registrations.clear();
        for (Bucket b : buckets) {
            releaseMessage(b);
            if (b.compressor != null) {
                b.compressor.close();
            }
            b.flat.close();
        }
        buckets.clear();
        slots.clear();
    }
}
