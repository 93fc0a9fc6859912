package dev.cortado.distributed;

import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The one thread a process group makes its library calls on (MPI's serialized thread level,
 * NCCL's enqueueing), in call order, with the bookkeeping both groups share: the pending
 * collectives, closing after them, and the argument checks of the collectives.
 */
final class CommThread {
    private final ExecutorService thread;
    private final ProcessGroup.Options options;
    private final List<Work> pending = new ArrayList<>();
    private boolean closed;

    CommThread(String name, ProcessGroup.Options options) {
        this.options = options;
        this.thread = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, name);
            t.setDaemon(true);
            return t;
        });
    }

    /** Runs {@code body} on the thread and waits for it (within the timeout). */
    void runNow(String what, Runnable body) {
        new Work(what, CompletableFuture.runAsync(body, thread), options.timeout()).await();
    }

    /**
     * Queues a collective; {@code operands} stay referenced until it has run, and are checked open
     * when it starts.
     */
    synchronized Work submit(String what, Runnable body, Tensor... operands) {
        if (closed) {
            throw new IllegalStateException(what + ": the process group is closed");
        }
        pending.removeIf(Work::isCompleted);
        CompletableFuture<Void> done = CompletableFuture.runAsync(() -> {
            for (Tensor t : operands) {
                t.ensureOpen(what);
            }
            body.run();
        }, thread);
        Work work = new Work(what, done, options.timeout());
        pending.add(work);
        return work;
    }

    /** Waits for the pending collectives, runs {@code last} (the library's shutdown), stops the thread. */
    synchronized void close(String what, Runnable last) {
        if (closed) {
            return;
        }
        closed = true;
        try {
            for (Work w : pending) {
                w.await();
            }
            pending.clear();
            runNow(what, last);
        } finally {
            thread.shutdown();
        }
    }

    /** Open and contiguous: what every collective needs of its tensors. */
    static void checkOperand(String what, String argument, Tensor t) {
        t.ensureOpen(what);
        if (!t.isContiguous()) {
            throw new IllegalArgumentException(what + ": " + argument + " " + t.describe()
                    + " is a non-contiguous view; communicate tensor.contiguous() and copy back");
        }
    }

    /** {@code whole} holds worldSize parts of {@code part}'s size, of the same dtype (all-gather, reduce-scatter). */
    static void checkParts(String what, Tensor whole, Tensor part, String wholeName, int worldSize) {
        if (whole.dtype() != part.dtype()) {
            throw new IllegalArgumentException(what + ": dtypes differ (" + whole.dtype() + " vs " + part.dtype() + ")");
        }
        if (whole.numel() != part.numel() * worldSize) {
            throw new IllegalArgumentException(what + ": " + wholeName + " must hold worldSize (" + worldSize
                    + ") x " + part.numel() + " elements, but holds " + whole.numel());
        }
    }

    /** {@code ProcessGroup.<op> of <tensor> at rank r of p}: how messages name a collective. */
    static String describe(String op, Tensor t, int rank, int worldSize) {
        return "ProcessGroup." + op + " of " + t.describe() + " at rank " + rank + " of " + worldSize;
    }
}
