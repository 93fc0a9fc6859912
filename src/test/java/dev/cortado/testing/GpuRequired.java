package dev.cortado.testing;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.tensor.Device;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * On a run that must exercise the GPU ({@code -Dcortado.requireGpu=true}: {@code mvn verify -Pgpu}
 * and {@code scripts/gpu-session.sh}), a test tagged {@code gpu} FAILS when no CUDA device is
 * usable, where it would otherwise skip: a GPU session that ran no GPU test must not report
 * success. Without the property nothing changes (the CPU build skips the {@code gpu} tests).
 * Registered for every test class with {@link LeakCheck}, through META-INF/services.
 */
public final class GpuRequired implements BeforeAllCallback, BeforeEachCallback {
    /** Whether this run requires a GPU. */
    public static boolean required() {
        return Boolean.getBoolean("cortado.requireGpu");
    }

    @Override
    public void beforeAll(ExtensionContext context) {
        check(context);
    }

    @Override
    public void beforeEach(ExtensionContext context) {
        check(context);
    }

    private static void check(ExtensionContext context) {
        if (required() && context.getTags().contains("gpu") && !Device.cuda(0).isAvailable()) {
            throw new AssertionError(context.getDisplayName() + ": -Dcortado.requireGpu=true but no CUDA device is"
                    + " usable (" + CudaBackend.instance().unavailableReason() + "); a GPU run that executes no"
                    + " GPU test fails");
        }
    }
}
