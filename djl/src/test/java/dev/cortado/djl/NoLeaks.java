package dev.cortado.djl;

import dev.cortado.tensor.Tensor;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Fails a test class when a Cortado tensor it created was freed by Cortado's Cleaner safety net
 * rather than closed (by its array or its manager). The garbage is collected before and after
 * the class, so a leak is charged to the class that made it; {@code -Dcortado.traceLeaks=true}
 * logs where each leaked tensor was created.
 */
final class NoLeaks implements BeforeAllCallback, AfterAllCallback {
    private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(NoLeaks.class);

    @Override
    public void beforeAll(ExtensionContext context) throws InterruptedException {
        context.getStore(NS).put("leaked", collect());
    }

    @Override
    public void afterAll(ExtensionContext context) throws InterruptedException {
        long leaked = collect() - context.getStore(NS).get("leaked", Long.class);
        if (leaked != 0) {
            throw new AssertionError(leaked + " Cortado tensor(s) made by " + context.getDisplayName()
                    + " were freed by the safety net instead of being closed");
        }
    }

    /** Collects garbage until the leak count stops moving for three rounds; returns it. */
    private static long collect() throws InterruptedException {
        long last = Tensor.LeakCounter.leaked();
        for (int round = 0, still = 0; round < 50 && still < 3; round++) {
            System.gc();
            Thread.sleep(30);
            long now = Tensor.LeakCounter.leaked();
            still = now == last ? still + 1 : 0;
            last = now;
        }
        return last;
    }
}
