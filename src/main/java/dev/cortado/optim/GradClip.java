package dev.cortado.optim;

import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Gradient clipping by global L2 norm (PyTorch's {@code clip_grad_norm_}): the norm of all
 * gradients taken together is {@code sqrt(sum over params of sum(g^2))} (one fused float64
 * sum-of-squares pass per device and dtype); when it exceeds {@code maxNorm} every gradient is
 * scaled in place by {@code maxNorm / (norm + 1e-6)} (one more pass). Parameters without a
 * gradient are skipped. A NaN or infinite norm is returned as is and the gradients are left
 * alone (check the return value, or let {@link GradScaler} skip the step).
 */
public final class GradClip {
    private GradClip() {
    }

    /** The global L2 norm of the gradients of {@code params}. */
    public static double globalNorm(List<Tensor> params) {
        return Math.sqrt(OptimKernels.sumOfSquares(grads(params)));
    }

    /** Clips the gradients of {@code params} to global norm {@code maxNorm}; returns the norm before clipping. */
    public static double clipByGlobalNorm(List<Tensor> params, double maxNorm) {
        if (!(maxNorm >= 0)) {
            throw new IllegalArgumentException("GradClip.clipByGlobalNorm: maxNorm must be >= 0, got " + maxNorm);
        }
        return clip(grads(params), maxNorm);
    }

    /**
     * Clips {@code grads} (open, contiguous tensors) in place to global norm {@code maxNorm}, as
     * {@link #clipByGlobalNorm} does with parameters' gradients; returns the norm before clipping.
     * A tensor listed twice (one gradient shared by two parameters) counts twice in the norm and is
     * scaled once.
     */
    public static double clip(List<Tensor> grads, double maxNorm) {
        if (!(maxNorm >= 0)) {
            throw new IllegalArgumentException("GradClip.clip: maxNorm must be >= 0, got " + maxNorm);
        }
        double norm = Math.sqrt(OptimKernels.sumOfSquares(grads));
        double coef = maxNorm / (norm + 1e-6);
        if (coef < 1 && Double.isFinite(norm)) {
            java.util.Set<Tensor> distinct = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
            List<Tensor> once = new ArrayList<>(grads.size());
            for (Tensor g : grads) {
                if (distinct.add(g)) {
                    once.add(g);
                }
            }
            OptimKernels.scale(once, coef);
        }
        return norm;
    }

    /**
     * The gradients of {@code params} (null ones skipped). A non-contiguous gradient (an expanded
     * or strided one from autograd) is replaced by a contiguous copy first, so that the in-place
     * kernels can scale it.
     */
    @SuppressWarnings("try")
    static List<Tensor> grads(List<Tensor> params) {
        List<Tensor> grads = new ArrayList<>();
        for (Tensor p : params) {
            Tensor g = p.grad();
            if (g != null && !g.isClosed() && !g.isContiguous()) {
                try (Scope detached = Scope.detached()) {
                    p.setGrad(g.contiguous());
                }
                g = p.grad();
            }
            if (g != null) {
                grads.add(g);
            }
        }
        return grads;
    }
}
