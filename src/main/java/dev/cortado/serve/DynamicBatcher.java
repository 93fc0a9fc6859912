package dev.cortado.serve;

import dev.cortado.onnx.InferenceMetrics;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * Groups concurrent requests into batches: one call of a batch function for up to
 * {@code maxBatchSize} items, each caller getting its own result. A model that runs a batch of 32
 * in little more time than a batch of 1 serves many concurrent clients this way.
 *
 * <pre>{@code
 * try (DynamicBatcher<String, float[]> batcher = DynamicBatcher.<String, float[]>builder(
 *             texts -> List.of(embedder.embed(texts)))
 *         .maxBatchSize(32).maxWait(Duration.ofMillis(2)).queueCapacity(1024)
 *         .build()) {
 *     float[] v = batcher.call("a sentence");                // from any number of threads
 * }
 * }</pre>
 *
 * <p><b>Forming batches.</b> One dispatcher thread waits until one of {@code maxConcurrentBatches}
 * workers is free, takes the oldest queued item, and adds the items that arrive until the batch is
 * full or {@code maxWait} has passed since that oldest item was queued (when it waited longer
 * already, it takes only what is queued). While the workers are busy, requests pile up and the next
 * batch is bigger: under load the batch size grows by itself; alone, a request waits at most
 * {@code maxWait}.
 *
 * <p><b>Back-pressure.</b> At most {@code queueCapacity} items wait; beyond that {@link #submit} and
 * {@link #submitAll} throw {@link RejectedExecutionException} at once (a server answers 503), and
 * {@code submitAll} admits all of its items or none.
 *
 * <p><b>Failure isolation.</b> The validator runs on the caller's thread before an item is queued,
 * so an invalid item fails alone with the validator's {@link IllegalArgumentException}. If a batch
 * call still throws an {@code IllegalArgumentException} (an item the validator could not judge),
 * each item of the batch runs again alone, so only the offending items fail. Any other exception
 * fails the whole batch (the model itself is broken or closed). A batch function that returns a
 * wrong number of results fails its batch with {@link IllegalStateException}.
 *
 * <p><b>Shutdown.</b> {@link #close(Duration)} refuses new items ({@link IllegalStateException}),
 * runs every item already queued, and waits up to the given time for the batches in progress;
 * items not finished by then fail with {@link IllegalStateException}.
 *
 * @param <I> the item type (a request)
 * @param <O> the result type of one item
 */
public final class DynamicBatcher<I, O> implements AutoCloseable {
    private static final AtomicInteger INSTANCES = new AtomicInteger();

    private final Function<List<I>, List<O>> batchFunction;
    private final Consumer<? super I> validator;
    private final int maxBatchSize;
    private final long maxWaitNanos;
    private final int queueCapacity;
    private final LinkedBlockingQueue<Pending<I, O>> queue = new LinkedBlockingQueue<>();
    private final Semaphore capacity;
    private final Semaphore freeWorkers;
    private final ExecutorService workers;
    private final Thread dispatcher;
    private final InferenceMetrics metrics = new InferenceMetrics();
    private final Object admission = new Object();
    private final List<Pending<I, O>> inFlight = new ArrayList<>();
    private volatile boolean closed;

    /** A queued item: the future its caller waits on, and when it was queued. */
    private record Pending<I, O>(I item, CompletableFuture<O> result, long queuedAt) {
    }

    /** The marker close() queues after the last item. */
    private final Pending<I, O> endOfQueue = new Pending<>(null, null, 0);

    private DynamicBatcher(Builder<I, O> b) {
        this.batchFunction = b.batchFunction;
        this.validator = b.validator;
        this.maxBatchSize = b.maxBatchSize;
        this.maxWaitNanos = b.maxWait.toNanos();
        this.queueCapacity = b.queueCapacity;
        this.capacity = new Semaphore(b.queueCapacity);
        this.freeWorkers = new Semaphore(b.maxConcurrentBatches);
        String name = b.name + "-" + INSTANCES.incrementAndGet();
        AtomicInteger n = new AtomicInteger();
        this.workers = new ThreadPoolExecutor(b.maxConcurrentBatches, b.maxConcurrentBatches, 0, TimeUnit.SECONDS,
                new LinkedBlockingQueue<>(), r -> {
                    Thread t = new Thread(r, name + "-worker-" + n.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                });
        this.dispatcher = new Thread(this::dispatch, name + "-dispatcher");
        dispatcher.setDaemon(true);
        dispatcher.start();
    }

    /** A builder for a batcher around {@code batchFunction} (items in, one result per item, in order). */
    public static <I, O> Builder<I, O> builder(Function<List<I>, List<O>> batchFunction) {
        return new Builder<>(Objects.requireNonNull(batchFunction, "batchFunction"));
    }

    /**
     * Options of a batcher. Defaults: batches of at most 32, 2 ms of waiting, 1024 queued items,
     * one batch at a time, no validation.
     *
     * @param <I> the item type
     * @param <O> the result type
     */
    public static final class Builder<I, O> {
        private final Function<List<I>, List<O>> batchFunction;
        private Consumer<? super I> validator = item -> { };
        private int maxBatchSize = 32;
        private Duration maxWait = Duration.ofMillis(2);
        private int queueCapacity = 1024;
        private int maxConcurrentBatches = 1;
        private String name = "batcher";

        private Builder(Function<List<I>, List<O>> batchFunction) {
            this.batchFunction = batchFunction;
        }

        /** The most items one batch call receives (at least 1). */
        public Builder<I, O> maxBatchSize(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("maxBatchSize must be at least 1, got " + n);
            }
            this.maxBatchSize = n;
            return this;
        }

        /** How long the oldest item of a batch may wait for others to join it (0: never wait). */
        public Builder<I, O> maxWait(Duration d) {
            if (d.isNegative()) {
                throw new IllegalArgumentException("maxWait must not be negative, got " + d);
            }
            this.maxWait = d;
            return this;
        }

        /** How many items may wait for a batch; more are rejected (at least 1). */
        public Builder<I, O> queueCapacity(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("queueCapacity must be at least 1, got " + n);
            }
            this.queueCapacity = n;
            return this;
        }

        /** How many batch calls may run at the same time (at least 1; the batch function must then be thread-safe). */
        public Builder<I, O> maxConcurrentBatches(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("maxConcurrentBatches must be at least 1, got " + n);
            }
            this.maxConcurrentBatches = n;
            return this;
        }

        /**
         * Checks each item on the caller's thread before it is queued; an item it throws
         * {@link IllegalArgumentException} for is refused alone.
         */
        public Builder<I, O> validator(Consumer<? super I> v) {
            this.validator = Objects.requireNonNull(v, "validator");
            return this;
        }

        /** The prefix of the batcher's thread names (default "batcher"). */
        public Builder<I, O> name(String n) {
            this.name = Objects.requireNonNull(n, "name");
            return this;
        }

        /** Starts the batcher (its dispatcher thread and workers). */
        public DynamicBatcher<I, O> build() {
            return new DynamicBatcher<>(this);
        }
    }

    /**
     * Queues {@code item}; the future completes with its result, or with the exception of its
     * batch call.
     *
     * @throws IllegalArgumentException when the validator refuses the item
     * @throws RejectedExecutionException when the queue is full
     * @throws IllegalStateException after {@link #close()}
     */
    public CompletableFuture<O> submit(I item) {
        return submitAll(List.of(item)).get(0);
    }

    /**
     * Queues {@code items} together: all are validated first and admitted only if there is room
     * for all of them. Each future completes independently.
     *
     * @throws IllegalArgumentException when the validator refuses one of the items (none is queued)
     * @throws RejectedExecutionException when the queue has no room for all of them
     * @throws IllegalStateException after {@link #close()}
     */
    public List<CompletableFuture<O>> submitAll(List<? extends I> items) {
        if (closed) {
            metrics.recordRejected();
            throw new IllegalStateException("the batcher is closed");
        }
        for (I item : items) {
            validator.accept(item);
        }
        if (items.size() > queueCapacity) {
            metrics.recordRejected();
            throw new RejectedExecutionException(items.size() + " items can never be queued at once: the queue holds "
                    + queueCapacity);
        }
        if (!capacity.tryAcquire(items.size())) {
            metrics.recordRejected();
            throw new RejectedExecutionException("the batcher's queue is full (" + queueCapacity
                    + " items wait); try again later");
        }
        List<CompletableFuture<O>> futures = new ArrayList<>(items.size());
        long now = System.nanoTime();
        synchronized (admission) {
            if (closed) {
                capacity.release(items.size());
                metrics.recordRejected();
                throw new IllegalStateException("the batcher is closed");
            }
            for (I item : items) {
                CompletableFuture<O> f = new CompletableFuture<>();
                f.whenComplete((r, e) -> metrics.recordRequest(System.nanoTime() - now, e == null));
                futures.add(f);
                queue.add(new Pending<>(item, f, now));
            }
        }
        return futures;
    }

    /**
     * Runs {@code item} through a batch and waits for its result; the batch call's exception is
     * rethrown as it was thrown (a checked one wrapped in {@link CompletionException}).
     */
    public O call(I item) {
        return await(submit(item));
    }

    /** Runs {@code items} (admitted together, see {@link #submitAll}) and waits for all their results. */
    public List<O> callAll(List<? extends I> items) {
        List<CompletableFuture<O>> futures = submitAll(items);
        List<O> out = new ArrayList<>(futures.size());
        for (CompletableFuture<O> f : futures) {
            out.add(await(f));
        }
        return out;
    }

    private static <O> O await(CompletableFuture<O> f) {
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CompletionException(e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) {
                throw r;
            }
            if (e.getCause() instanceof Error err) {
                throw err;
            }
            throw new CompletionException(e.getCause());
        }
    }

    /** The requests, batch sizes and latencies (queueing included) so far. */
    public InferenceMetrics.Snapshot metrics() {
        return metrics.snapshot();
    }

    /** How many items wait for a batch now. */
    public int queued() {
        return queueCapacity - capacity.availablePermits();
    }

    /** The most items one batch call receives. */
    public int maxBatchSize() {
        return maxBatchSize;
    }

    // ------------------------------------------------------------------ the dispatcher

    private void dispatch() {
        try {
            boolean ending = false;
            while (!ending) {
                freeWorkers.acquire();
                Pending<I, O> first = queue.take();
                if (first == endOfQueue) {
                    break;
                }
                List<Pending<I, O>> batch = new ArrayList<>(Math.min(maxBatchSize, 64));
                batch.add(first);
                long deadline = first.queuedAt() + maxWaitNanos;
                while (batch.size() < maxBatchSize) {
                    long left = deadline - System.nanoTime();
                    Pending<I, O> next;
                    try {
                        next = left <= 0 ? queue.poll() : queue.poll(left, TimeUnit.NANOSECONDS);
                    } catch (InterruptedException e) {
                        ending = true; // close() gave up waiting: hand this batch on, then stop
                        break;
                    }
                    if (next == null) {
                        break;
                    }
                    if (next == endOfQueue) {
                        ending = true;
                        break;
                    }
                    batch.add(next);
                }
                capacity.release(batch.size());
                hand(batch);
            }
        } catch (InterruptedException e) {
            // close() gave up waiting for the batches in progress; it fails what is left
        }
    }

    /** Gives {@code batch} to a worker (or fails it, when close() has already stopped them). */
    private void hand(List<Pending<I, O>> batch) {
        synchronized (inFlight) {
            inFlight.addAll(batch);
        }
        try {
            workers.execute(() -> {
                try {
                    runBatch(batch);
                } finally {
                    synchronized (inFlight) {
                        inFlight.removeAll(batch);
                    }
                    freeWorkers.release();
                }
            });
        } catch (RejectedExecutionException e) {
            IllegalStateException closing = new IllegalStateException("the batcher was closed before this request ran");
            for (Pending<I, O> p : batch) {
                p.result().completeExceptionally(closing);
            }
        }
    }

    private void runBatch(List<Pending<I, O>> batch) {
        metrics.recordBatch(batch.size());
        try {
            complete(batch, callBatch(batch));
        } catch (IllegalArgumentException e) {
            if (batch.size() == 1) {
                batch.get(0).result().completeExceptionally(e);
                return;
            }
            // one item (or more) is bad: run each alone, so only those fail
            for (Pending<I, O> p : batch) {
                try {
                    complete(List.of(p), callBatch(List.of(p)));
                } catch (RuntimeException | Error alone) {
                    p.result().completeExceptionally(alone);
                }
            }
        } catch (RuntimeException | Error e) {
            for (Pending<I, O> p : batch) {
                p.result().completeExceptionally(e);
            }
        }
    }

    private List<O> callBatch(List<Pending<I, O>> batch) {
        List<I> items = new ArrayList<>(batch.size());
        for (Pending<I, O> p : batch) {
            items.add(p.item());
        }
        List<O> results = batchFunction.apply(items);
        if (results == null || results.size() != items.size()) {
            throw new IllegalStateException("the batch function returned " + (results == null ? "null" : results.size()
                    + " results") + " for " + items.size() + " items");
        }
        return results;
    }

    private void complete(List<Pending<I, O>> batch, List<O> results) {
        for (int i = 0; i < batch.size(); i++) {
            batch.get(i).result().complete(results.get(i));
        }
    }

    // ------------------------------------------------------------------ shutdown

    /** {@link #close(Duration)} with 30 seconds. */
    @Override
    public void close() {
        close(Duration.ofSeconds(30));
    }

    /**
     * Refuses new items, runs the queued ones, and waits up to {@code timeout} for every batch to
     * finish; items not finished by then fail with {@link IllegalStateException}. Idempotent.
     */
    public void close(Duration timeout) {
        synchronized (admission) {
            if (closed) {
                return;
            }
            closed = true;
            queue.add(endOfQueue);
        }
        long deadline = System.nanoTime() + timeout.toNanos();
        try {
            dispatcher.join(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
            workers.shutdown();
            workers.awaitTermination(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        IllegalStateException late = new IllegalStateException(
                "the batcher was closed before this request finished (waited " + timeout + ")");
        List<Pending<I, O>> left = new ArrayList<>();
        queue.drainTo(left);
        synchronized (inFlight) {
            left.addAll(inFlight);
        }
        for (Pending<I, O> p : left) {
            if (p != endOfQueue) {
                p.result().completeExceptionally(late);
            }
        }
        workers.shutdownNow();
        dispatcher.interrupt();
    }

    /** Whether {@link #close()} has been called. */
    public boolean isClosed() {
        return closed;
    }
}
