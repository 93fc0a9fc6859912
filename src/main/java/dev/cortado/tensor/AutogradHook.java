package dev.cortado.tensor;

/**
 * The seam between tensors and the autograd tape. The tape lives in {@code dev.cortado.autograd},
 * above this package; it installs itself here when first loaded (which happens when a tensor is
 * first marked {@link Tensor#requiresGrad(boolean) requiresGrad}, the only way a gradient can
 * start), so views record their backward without this package depending on autograd.
 */
public interface AutogradHook {

    /** A node of the tape: the op or view that produced a tensor. */
    interface Node {
        String name();

        /** One of the tensors this node produced was closed (the node frees its saved tensors when unused). */
        void outputClosed();
    }

    /** The gradient of a view's source from the gradient of the view. */
    @FunctionalInterface
    interface ViewBackward {
        Tensor apply(Tensor gradOutput);
    }

    /** Records that {@code view} was derived from {@code source}, if gradients are being recorded. */
    void recordView(String name, Tensor source, Tensor view, ViewBackward backward);

    /** Runs backward from {@code root} (seed: the gradient of root, null for a scalar's 1). */
    void backward(Tensor root, Tensor seed, boolean retainGraph);

    /** Sums {@code gradient} over broadcast dimensions down to {@code shape}. */
    Tensor sumToShape(Tensor gradient, Shape shape);

    /**
     * The gradient of a tensor of {@code shape} from the gradient of its slice
     * {@code start, start + step, ...} along {@code dim} ({@code gradient}'s size along {@code dim}
     * is the slice's length): zeros with {@code gradient} written into the slice's elements.
     */
    Tensor sliceBackward(Tensor gradient, Shape shape, int dim, long start, long step);

    /** The installed tape; loads {@code dev.cortado.autograd.Autograd} on first use. */
    static AutogradHook get() {
        AutogradHook h = Installed.hook;
        if (h == null) {
            try {
                Class.forName("dev.cortado.autograd.Autograd", true, AutogradHook.class.getClassLoader());
            } catch (ClassNotFoundException e) {
                throw new IllegalStateException("autograd is not on the class path", e);
            }
            h = Installed.hook;
        }
        return h;
    }

    /** Called once by the autograd package. */
    static void install(AutogradHook hook) {
        Installed.hook = hook;
    }

    /** Holder of the installed hook. */
    final class Installed {
        static volatile AutogradHook hook;

        private Installed() {
        }

        /** The hook if installed, else null (no tensor can require gradients yet). */
        public static AutogradHook current() {
            return hook;
        }
    }
}
