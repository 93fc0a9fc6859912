package dev.cortado.distributed;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A collective in flight. It completes once every process has taken part; until then the tensors
 * it was given belong to it (do not read, write or close them). {@link #await()} waits at most the
 * group's timeout, so a peer that died or hangs becomes a {@link CommunicationException} instead of
 * a process that waits forever.
 */
public final class Work {
    private final String what;
    private final CompletableFuture<Void> done;
    private final Duration timeout;

    Work(String what, CompletableFuture<Void> done, Duration timeout) {
        this.what = what;
        this.done = done;
        this.timeout = timeout;
    }

    /** Whether the collective has finished, successfully or not. */
    public boolean isCompleted() {
        return done.isDone();
    }

    /** Waits for the collective within the group's timeout; rethrows its failure. */
    public void await() {
        await(timeout);
    }

    /** Waits for the collective at most {@code limit}; rethrows its failure. */
    public void await(Duration limit) {
        try {
            done.get(limit.toNanos(), TimeUnit.NANOSECONDS);
        } catch (TimeoutException e) {
            throw new CommunicationException(what + " did not complete within " + limit.toMillis()
                    + " ms: a peer process is gone or stuck (see ProcessGroup.Options.timeout)", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CommunicationException(what + ": interrupted while waiting", e);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof CommunicationException c) {
                throw c;
            }
            throw new CommunicationException(what + " failed: " + cause, cause);
        }
    }

    /** What this is, e.g. {@code all_reduce(sum) float32[1000] on cpu at rank 1 of 2}. */
    @Override
    public String toString() {
        return what + (isCompleted() ? " (completed)" : " (pending)");
    }
}
