package dev.cortado.testing;

import dev.cortado.tensor.Tensor;
import java.lang.ref.PhantomReference;
import java.lang.ref.ReferenceQueue;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Fails a test class when any tensor it created was freed by the Cleaner safety net instead of
 * {@code close()} or a scope. Registered for every test class through
 * {@code META-INF/services/org.junit.jupiter.api.extension.Extension} (autodetection is on in
 * {@code junit-platform.properties}), so a leak anywhere in {@code mvn verify} fails the build,
 * naming the class; rerun it with {@code -Dcortado.traceLeaks=true} to see where the tensor was
 * created. Before the class and after it, {@link #settle()} collects garbage and waits until
 * the safety net has handled everything unreachable, so a leak is charged to the class that
 * made it and the memory counters the tests read are not moved by another class's garbage.
 */
public final class LeakCheck implements BeforeAllCallback, AfterAllCallback {
    private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(LeakCheck.class);

    @Override
    public void beforeAll(ExtensionContext context) throws InterruptedException {
        context.getStore(NS).put("leaked", settle());
    }

    @Override
    public void afterAll(ExtensionContext context) throws InterruptedException {
        long before = context.getStore(NS).get("leaked", Long.class);
        long leaked = settle() - before;
        if (leaked != 0) {
            throw new AssertionError(leaked + " tensor(s) created by " + context.getDisplayName()
                    + " were not closed and were freed by the Cleaner safety net (close them, or open a Scope;"
                    + " -Dcortado.traceLeaks=true logs where each was created)");
        }
    }

    /**
     * Runs the garbage collector until two collections in a row free no further tensor through
     * the safety net, and returns {@link Tensor.LeakCounter#leaked()}. Each round waits for a
     * canary object's phantom reference to be enqueued (the collector has processed that
     * cycle's references), then for the Cleaner thread to go quiet.
     */
    public static long settle() throws InterruptedException {
        long last = Tensor.LeakCounter.leaked();
        int quiet = 0;
        for (int round = 0; round < 100 && quiet < 2; round++) {
            ReferenceQueue<Object> queue = new ReferenceQueue<>();
            PhantomReference<Object> canary = new PhantomReference<>(new Object(), queue);
            System.gc();
            for (int tries = 0; tries < 100 && queue.remove(100) == null; tries++) {
                System.gc(); // (bounded: with -XX:+DisableExplicitGC the canary may never come back)
            }
            canary.clear();
            Thread.sleep(round == 0 ? 5 : 20);
            long now = Tensor.LeakCounter.leaked();
            quiet = now == last ? quiet + 1 : 0;
            last = now;
        }
        return last;
    }
}
