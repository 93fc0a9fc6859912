package dev.cortado.io;

import dev.cortado.backend.kernels.NativeStatus;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.backend.cuda.CudaEvent;
import dev.cortado.backend.cuda.NativeCuda;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.SplittableRandom;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * Mini-batches of a {@code Dataset<Example>}: examples stacked along a new leading dimension into
 * contiguous tensors ({@link Batch}), optionally shuffled, prepared ahead on a background thread.
 *
 * <pre>{@code
 * try (TensorDataset train = Mnist.train10k(true);
 *      DataLoader loader = DataLoader.builder(train).batchSize(64).shuffle(42).prefetch(2).build()) {
 *     for (int e = 0; e < 10; e++) {
 *         for (Batch b : loader.epoch(e)) {
 *             try (b) {
 *                 // b.input(): float32 [64, 1, 28, 28], b.target(): int64 [64]
 *             }
 *         }
 *     }
 * }
 * }</pre>
 *
 * <p><b>Order.</b> Without {@link Builder#shuffle(long)} examples come in index order. With it,
 * epoch {@code e} visits the permutation {@link #order(int) order(e)}: a Fisher-Yates shuffle
 * (for {@code i} from {@code n-1} down to 1, swap {@code i} with {@code j = rnd.nextInt(i + 1)})
 * of {@code 0..n-1} driven by {@code new SplittableRandom(seed + 0x9E3779B97F4A7C15L * (e + 1))}.
 * So the order depends only on (seed, epoch): reproducible, independent of threads and of which
 * epochs ran before, and different from epoch to epoch.
 *
 * <p><b>Batches.</b> {@code ceil(n / batchSize)} per epoch, the last one smaller; with
 * {@link Builder#dropLast(boolean) dropLast} {@code floor(n / batchSize)}, all full. Every example
 * must have the dtype and shape of example 0. Inputs stack to {@code [B, ...input shape]},
 * targets to {@code [B, ...target shape]}.
 *
 * <p><b>Ownership.</b> The caller owns each batch: close it, or open a
 * {@link dev.cortado.tensor.Scope} around the loop body (batches are handed over on the thread
 * that calls {@code next()}, so they belong to its scope).
 *
 * <p><b>Prefetch.</b> With depth {@code N >= 1} (default 2) a daemon thread assembles up to
 * {@code N} batches ahead into a bounded queue while the caller computes; with 0 batches are
 * assembled in {@code next()}. An exception while assembling (e.g. from {@code Dataset.get})
 * surfaces from the consumer's {@code next()} as a {@link LoadException} whose cause it is.
 *
 * <p><b>Devices.</b> Batches land on {@link Builder#device(Device)} (default: the CPU). For a CUDA
 * device the batch is assembled in page-locked ("pinned") host memory from
 * {@code ct_cuda_malloc_host}, then copied to the device on the consumer thread's current stream;
 * a CUDA event recorded after the copy guards each pinned buffer's reuse. If pinned memory cannot
 * be had (or {@link Builder#pinMemory(boolean) pinMemory(false)}) batches go through ordinary host
 * tensors and {@code Tensor.to(device)}. A CUDA device that is not usable fails at
 * {@link Builder#build()}.
 *
 * <p><b>Lifetime.</b> One epoch runs at a time: {@link #epoch(int)} closes the loader's previous
 * epoch if still open. An {@link Epoch} that is exhausted, or closed (e.g. by try-with-resources
 * after a {@code break}), stops its thread and frees the batches it had queued; {@link #close()}
 * does so for the current epoch and frees the pinned buffers. The loader does not own the dataset.
 * A loader and its epochs are used from one thread.
 */
public final class DataLoader implements AutoCloseable {
    private static final AtomicInteger IDS = new AtomicInteger();

    private final Dataset<Example> dataset;
    private final int batchSize;
    private final boolean dropLast;
    private final boolean shuffle;
    private final long seed;
    private final int shardRank;
    private final int shardCount;
    private final int prefetch;
    private final Device device;
    private final int id = IDS.incrementAndGet();
    private final Spec spec;
    private final PinnedPool pinned;
    private Epoch current;
    private boolean closed;

    /** Thrown by {@code next()} when a batch could not be assembled; the cause says why. */
    public static final class LoadException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        LoadException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** Dtypes and per-example shapes of inputs and targets. */
    private record Spec(DType inputType, long[] inputShape, DType targetType, long[] targetShape) {
        long inputBytes() {
            return inputType.bytesFor(numel(inputShape));
        }

        long targetBytes() {
            return targetType.bytesFor(numel(targetShape));
        }

        static long numel(long[] dims) {
            long n = 1;
            for (long d : dims) {
                n *= d;
            }
            return n;
        }
    }

    public static Builder builder(Dataset<Example> dataset) {
        return new Builder(dataset);
    }

    /** Settings of a {@link DataLoader}; see the class comment for their meaning. */
    public static final class Builder {
        private final Dataset<Example> dataset;
        private int batchSize = 32;
        private boolean dropLast;
        private boolean shuffle;
        private long seed;
        private int prefetch = 2;
        private Device device = Device.CPU;
        private boolean pinMemory = true;
        private int shardRank;
        private int shardCount = 1;

        private Builder(Dataset<Example> dataset) {
            this.dataset = Objects.requireNonNull(dataset, "dataset");
        }

        /** Examples per batch (default 32). */
        public Builder batchSize(int batchSize) {
            if (batchSize < 1) {
                throw new IllegalArgumentException("batch size " + batchSize + " must be positive");
            }
            this.batchSize = batchSize;
            return this;
        }

        /** Whether to drop a last, smaller batch (default false). */
        public Builder dropLast(boolean dropLast) {
            this.dropLast = dropLast;
            return this;
        }

        /** Shuffles each epoch with a permutation derived from (seed, epoch). */
        public Builder shuffle(long seed) {
            this.shuffle = true;
            this.seed = seed;
            return this;
        }

        /**
         * Visits only shard {@code rank} of {@code count} (data-parallel training: each process its
         * own examples): positions {@code rank, rank + count, ...} of each epoch's order, over the
         * first {@code count * floor(n / count)} positions, so every shard has the same number of
         * examples and batches, and all shards use the same shuffle (same seed and epoch).
         */
        public Builder shard(int rank, int count) {
            if (count < 1 || rank < 0 || rank >= count) {
                throw new IllegalArgumentException("DataLoader shard " + rank + " of " + count
                        + ": need count >= 1 and 0 <= rank < count");
            }
            this.shardRank = rank;
            this.shardCount = count;
            return this;
        }

        /** Batches prepared ahead on a background thread (default 2); 0 prepares them in {@code next()}. */
        public Builder prefetch(int depth) {
            if (depth < 0) {
                throw new IllegalArgumentException("prefetch depth " + depth + " must be >= 0");
            }
            this.prefetch = depth;
            return this;
        }

        /** Where batches land (default the CPU). */
        public Builder device(Device device) {
            this.device = Objects.requireNonNull(device, "device");
            return this;
        }

        /** Whether CUDA batches are staged in pinned host memory (default true). */
        public Builder pinMemory(boolean pinMemory) {
            this.pinMemory = pinMemory;
            return this;
        }

        public DataLoader build() {
            device.backend(); // throws BackendUnavailableException naming the device if it cannot run here
            return new DataLoader(this);
        }
    }

    private DataLoader(Builder b) {
        this.dataset = b.dataset;
        this.batchSize = b.batchSize;
        this.dropLast = b.dropLast;
        this.shuffle = b.shuffle;
        this.seed = b.seed;
        this.shardRank = b.shardRank;
        this.shardCount = b.shardCount;
        this.prefetch = b.prefetch;
        this.device = b.device;
        this.spec = dataset.size() == 0 ? null : specOf(dataset);
        boolean usePinned = b.pinMemory && device.isCuda() && spec != null && CudaBackend.instance().isAvailable();
        this.pinned = usePinned
                ? new PinnedPool(align(spec.inputBytes() * batchSize) + spec.targetBytes() * batchSize, prefetch + 2)
                : null;
    }

    private static Spec specOf(Dataset<Example> dataset) {
        if (dataset instanceof Stackable) {
            Stackable s = (Stackable) dataset;
            return new Spec(s.inputType(), s.inputShape(), s.targetType(), s.targetShape());
        }
        try (Example e = dataset.get(0)) {
            return new Spec(e.input().dtype(), e.input().dims(), e.target().dtype(), e.target().dims());
        }
    }

    private static long align(long bytes) {
        return (bytes + 255) & ~255L;
    }

    /** Batches per epoch. */
    public int size() {
        int n = dataset.size() / shardCount;
        return dropLast ? n / batchSize : (n + batchSize - 1) / batchSize;
    }

    public int batchSize() {
        return batchSize;
    }

    public Device device() {
        return device;
    }

    /** Whether CUDA batches are staged in pinned host memory (false on the CPU, or without CUDA). */
    public boolean usesPinnedMemory() {
        return pinned != null && !pinned.failed;
    }

    /**
     * The order in which epoch {@code epoch} visits the examples (see the class comment); with a
     * {@link Builder#shard shard}, the shard's part of it.
     */
    public int[] order(int epoch) {
        int n = dataset.size();
        int[] order = new int[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        if (shuffle) {
            SplittableRandom rnd = new SplittableRandom(seed + 0x9E3779B97F4A7C15L * (epoch + 1L));
            for (int i = n - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1);
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
        if (shardCount > 1) {
            int[] shard = new int[n / shardCount];
            for (int i = 0; i < shard.length; i++) {
                shard[i] = order[shardRank + i * shardCount];
            }
            return shard;
        }
        return order;
    }

    /**
     * Starts epoch {@code epoch} (closing the previous one if still open) and returns its batches:
     * iterate it once (for-each, {@link Epoch#stream()} or as an iterator); close it when leaving
     * early.
     */
    public Epoch epoch(int epoch) {
        if (closed) {
            throw new IllegalStateException("DataLoader is closed");
        }
        if (current != null) {
            current.close();
        }
        current = new Epoch(epoch);
        return current;
    }

    /** Stops the current epoch's thread, frees its queued batches and the pinned buffers. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            if (current != null) {
                current.close();
            }
        } finally {
            if (pinned != null) {
                pinned.close();
            }
        }
    }

    // ------------------------------------------------------------------ assembly

    /** A batch assembled on the host: tensors, or a pinned buffer; or a failure. */
    private static final class Staged {
        final int index;
        final int count;
        Tensor input;
        Tensor target;
        PinnedBuffer buffer;
        Throwable failure;

        Staged(int index, int count) {
            this.index = index;
            this.count = count;
        }

        void discard(PinnedPool pool) {
            if (input != null) {
                input.close();
            }
            if (target != null) {
                target.close();
            }
            if (buffer != null) {
                pool.release(buffer, null);
                buffer = null;
            }
        }
    }

    private long[] batchDims(long[] shape, int count) {
        long[] d = new long[shape.length + 1];
        d[0] = count;
        System.arraycopy(shape, 0, d, 1, shape.length);
        return d;
    }

    /** Assembles batch {@code k} of an epoch with the given order (any thread). */
    private Staged assemble(int[] order, int k) throws InterruptedException {
        int from = k * batchSize;
        int count = Math.min(batchSize, order.length - from);
        Staged s = new Staged(k, count);
        try {
            long inRow = spec.inputBytes();
            long tgRow = spec.targetBytes();
            long inAddr;
            long tgAddr;
            PinnedBuffer buf = pinned == null ? null : pinned.acquire();
            if (buf != null) {
                s.buffer = buf;
                inAddr = buf.address;
                tgAddr = buf.address + align(inRow * batchSize);
            } else {
                s.input = Tensor.empty(spec.inputType(), Device.CPU, batchDims(spec.inputShape(), count));
                s.target = Tensor.empty(spec.targetType(), Device.CPU, batchDims(spec.targetShape(), count));
                inAddr = s.input.dataAddress();
                tgAddr = s.target.dataAddress();
            }
            Stackable fast = dataset instanceof Stackable ? (Stackable) dataset : null;
            for (int i = 0; i < count; i++) {
                int idx = order[from + i];
                if (fast != null) {
                    fast.copyInput(idx, inAddr + i * inRow);
                    fast.copyTarget(idx, tgAddr + i * tgRow);
                } else {
                    try (Example e = dataset.get(idx)) {
                        copyRow(e.input(), spec.inputType(), spec.inputShape(), idx, "input", inAddr + i * inRow, inRow);
                        copyRow(e.target(), spec.targetType(), spec.targetShape(), idx, "target", tgAddr + i * tgRow,
                                tgRow);
                    }
                }
            }
            return s;
        } catch (Throwable t) {
            s.discard(pinned);
            throw t;
        }
    }

    private static void copyRow(Tensor t, DType type, long[] shape, int idx, String what, long dst, long bytes) {
        if (t.dtype() != type || !Arrays.equals(t.dims(), shape)) {
            throw new IllegalArgumentException("example " + idx + ": " + what + " is " + t.describe() + " but example 0's is "
                    + type + Arrays.toString(shape) + "; a batch needs equal dtypes and shapes");
        }
        try (Tensor host = t.to(Device.CPU); Tensor c = host.contiguous()) {
            TensorDataset.hostCopy(dst, c.dataAddress(), bytes);
        }
    }

    /** On the consumer thread: the batch on the target device, owned by this thread's scope. */
    private Batch handOver(Staged s) {
        if (s.buffer != null) {
            PinnedBuffer buf = s.buffer;
            s.buffer = null;
            Tensor in = null;
            Tensor tg = null;
            CudaEvent event = null;
            try {
                in = Tensor.empty(spec.inputType(), device, batchDims(spec.inputShape(), s.count));
                tg = Tensor.empty(spec.targetType(), device, batchDims(spec.targetShape(), s.count));
                CudaBackend cuda = CudaBackend.instance();
                cuda.copyFromHost(device, in.dataAddress(), buf.address, spec.inputBytes() * s.count);
                cuda.copyFromHost(device, tg.dataAddress(), buf.address + align(spec.inputBytes() * batchSize),
                        spec.targetBytes() * s.count);
                event = CudaEvent.create();
                event.record();
                pinned.release(buf, event);
                return new Batch(in, tg, s.index);
            } catch (RuntimeException e) {
                if (in != null) {
                    in.close();
                }
                if (tg != null) {
                    tg.close();
                }
                if (event != null) {
                    event.close();
                }
                pinned.release(buf, null, true);
                throw e;
            }
        }
        try {
            Tensor in = s.input.to(device);
            try {
                return new Batch(in, s.target.to(device), s.index);
            } catch (RuntimeException e) {
                in.close();
                throw e;
            }
        } finally {
            s.input.close();
            s.target.close();
        }
    }

    // ------------------------------------------------------------------ epochs

    /**
     * The batches of one epoch, in order. Iterable once; {@link #close()} (also called when the
     * last batch has been taken) stops the prefetch thread and frees undelivered batches.
     */
    public final class Epoch implements Iterator<Batch>, Iterable<Batch>, AutoCloseable {
        private final int epoch;
        private final int[] order;
        private final int batches;
        private final BlockingQueue<Staged> queue;
        private final Thread producer;
        private volatile boolean cancelled;
        private int next;
        private boolean iterated;
        private boolean done;

        private Epoch(int epoch) {
            this.epoch = epoch;
            this.order = order(epoch);
            this.batches = size();
            if (prefetch > 0 && batches > 0) {
                queue = new ArrayBlockingQueue<>(prefetch);
                producer = new Thread(this::produce, "cortado-dataloader-" + id + "-epoch-" + epoch);
                producer.setDaemon(true);
                producer.start();
            } else {
                queue = null;
                producer = null;
            }
        }

        /** The epoch number. */
        public int number() {
            return epoch;
        }

        /** Number of batches in this epoch. */
        public int batches() {
            return batches;
        }

        private void produce() {
            for (int k = 0; k < batches && !cancelled; k++) {
                Staged s;
                try {
                    s = assemble(order, k);
                } catch (InterruptedException e) {
                    return;
                } catch (Throwable t) {
                    s = new Staged(k, 0);
                    s.failure = t;
                    offer(s);
                    return;
                }
                if (!offer(s)) {
                    s.discard(pinned);
                    return;
                }
            }
        }

        /** Puts into the queue unless cancelled; false when it was not put. */
        private boolean offer(Staged s) {
            try {
                while (!cancelled) {
                    if (queue.offer(s, 20, TimeUnit.MILLISECONDS)) {
                        return true;
                    }
                }
            } catch (InterruptedException e) {
                // cancelled
            }
            return false;
        }

        @Override
        public Iterator<Batch> iterator() {
            if (iterated) {
                throw new IllegalStateException("epoch " + epoch + " can be iterated only once; call loader.epoch("
                        + epoch + ") again to repeat it");
            }
            iterated = true;
            return this;
        }

        /** The batches as a sequential stream; closing the stream closes the epoch. */
        public Stream<Batch> stream() {
            return StreamSupport.stream(Spliterators.spliterator(iterator(), batches, Spliterator.ORDERED | Spliterator.NONNULL),
                    false).onClose(this::close);
        }

        @Override
        public boolean hasNext() {
            if (done) {
                return false;
            }
            if (next >= batches) {
                close();
                return false;
            }
            return true;
        }

        @Override
        public Batch next() {
            if (!hasNext()) {
                throw new NoSuchElementException("epoch " + epoch + " has no more batches (it had " + batches + ")");
            }
            int k = next++;
            Staged s;
            if (queue == null) {
                try {
                    s = assemble(order, k);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new LoadException("interrupted while loading batch " + k + " of epoch " + epoch, e);
                } catch (RuntimeException | Error e) {
                    close();
                    throw new LoadException("batch " + k + " of epoch " + epoch + " could not be loaded: " + e, e);
                }
            } else {
                try {
                    s = queue.take();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    close();
                    throw new LoadException("interrupted while waiting for batch " + k + " of epoch " + epoch, e);
                }
                if (s.failure != null) {
                    close();
                    throw new LoadException("batch " + k + " of epoch " + epoch + " could not be loaded: " + s.failure,
                            s.failure);
                }
            }
            try {
                return handOver(s);
            } catch (RuntimeException e) {
                s.discard(pinned);
                throw e;
            }
        }

        /** Stops the prefetch thread (waiting for it) and frees the batches not yet delivered. */
        @Override
        public void close() {
            if (done) {
                return;
            }
            done = true;
            cancelled = true;
            if (producer != null) {
                producer.interrupt();
                try {
                    producer.join(10_000);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                List<Staged> left = new ArrayList<>();
                queue.drainTo(left);
                for (Staged s : left) {
                    s.discard(pinned);
                }
            }
            if (current == this) {
                current = null;
            }
        }
    }

    // ------------------------------------------------------------------ pinned staging (CUDA)

    /** One page-locked host buffer; {@code lastUse} is the event after its last device copy. */
    private static final class PinnedBuffer {
        final long address;
        CudaEvent lastUse;

        PinnedBuffer(long address) {
            this.address = address;
        }
    }

    /**
     * Up to {@code capacity} pinned buffers of {@code bytes} each, allocated on first need. A
     * buffer is reused only after the device copy that read it has completed (its event).
     */
    private static final class PinnedPool implements AutoCloseable {
        private final long bytes;
        private final int capacity;
        private final BlockingQueue<PinnedBuffer> free = new LinkedBlockingQueue<>();
        private final List<PinnedBuffer> all = new ArrayList<>();
        volatile boolean failed;
        private boolean closed;

        PinnedPool(long bytes, int capacity) {
            this.bytes = Math.max(bytes, 1);
            this.capacity = capacity;
        }

        /** A buffer ready to be written, or null when pinned memory is unavailable (use host tensors). */
        PinnedBuffer acquire() throws InterruptedException {
            if (failed) {
                return null;
            }
            PinnedBuffer b = free.poll();
            if (b == null) {
                synchronized (this) {
                    if (closed) {
                        return null;
                    }
                    if (all.size() < capacity) {
                        long[] out = new long[1];
                        if (NativeCuda.ct_cuda_malloc_host(bytes, out) != NativeStatus.OK || out[0] == 0) {
                            failed = true;
                            return null;
                        }
                        b = new PinnedBuffer(out[0]);
                        all.add(b);
                    }
                }
                if (b == null) {
                    b = free.take();
                }
            }
            if (b.lastUse != null) {
                b.lastUse.synchronize();
                b.lastUse.close();
                b.lastUse = null;
            }
            return b;
        }

        void release(PinnedBuffer b, CudaEvent lastUse) {
            release(b, lastUse, false);
        }

        void release(PinnedBuffer b, CudaEvent lastUse, boolean syncDevice) {
            if (syncDevice && lastUse == null) {
                CudaBackend.check(NativeCuda.ct_cuda_device_synchronize(), "synchronize before reusing a pinned buffer");
            }
            b.lastUse = lastUse;
            free.add(b);
        }

        @Override
        public synchronized void close() {
            if (closed) {
                return;
            }
            closed = true;
            RuntimeException first = null;
            for (PinnedBuffer b : all) {
                try {
                    if (b.lastUse != null) {
                        b.lastUse.synchronize();
                        b.lastUse.close();
                    }
                    CudaBackend.check(NativeCuda.ct_cuda_free_host(b.address), "cudaFreeHost");
                } catch (RuntimeException e) {
                    if (first == null) {
                        first = e;
                    }
                }
            }
            all.clear();
            free.clear();
            if (first != null) {
                throw first;
            }
        }
    }
}
