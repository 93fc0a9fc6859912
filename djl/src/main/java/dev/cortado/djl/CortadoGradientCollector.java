package dev.cortado.djl;

import ai.djl.ndarray.NDArray;
import ai.djl.training.GradientCollector;
import dev.cortado.autograd.Autograd;

/**
 * DJL's {@link GradientCollector} over Cortado's tape: while one is open on a thread, Cortado
 * arrays record their operations (outside one they do not, as in DJL's PyTorch engine), and
 * {@link #backward} runs the tape from a target with a gradient of ones, accumulating into the
 * gradients that {@link NDArray#getGradient()} returns. One collector per thread at a time.
 */
public final class CortadoGradientCollector implements GradientCollector {
    private static final ThreadLocal<int[]> OPEN = ThreadLocal.withInitial(() -> new int[1]);

    private final Autograd.GradMode mode;
    private boolean closed;

    CortadoGradientCollector() {
        int[] open = OPEN.get();
        if (open[0] > 0) {
            throw new IllegalStateException("A CortadoGradientCollector is already collecting on this thread; "
                    + "close it before opening another");
        }
        open[0]++;
        mode = Autograd.enableGrad();
    }

    /** Whether a collector is open on this thread (then array operations are recorded). */
    static boolean isCollecting() {
        return OPEN.get()[0] > 0;
    }

    /** {@inheritDoc} The target's gradient is ones of its shape; the tape behind it is freed. */
    @Override
    public void backward(NDArray target) {
        if (!(target instanceof CortadoNDArray)) {
            throw new IllegalArgumentException("GradientCollector.backward: the target is a "
                    + target.getManager().getEngine().getEngineName() + " array, not a Cortado array");
        }
        ((CortadoNDArray) target).backwardWithOnes();
    }

    /** {@inheritDoc} Frees the gradients of every open Cortado array that has one. */
    @Override
    public void zeroGradients() {
        for (NDArray a : CortadoNDManager.system().getManagedArrays()) {
            if (a instanceof CortadoNDArray) {
                ((CortadoNDArray) a).clearGradient();
            }
        }
    }

    /** {@inheritDoc} */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            mode.close();
            OPEN.get()[0]--;
        }
    }
}
