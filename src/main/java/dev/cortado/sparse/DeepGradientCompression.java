package dev.cortado.sparse;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.Sparse;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Deep Gradient Compression (Lin et al., 2018) on one worker: each step it sends only the
 * largest-magnitude fraction of every gradient and keeps the rest locally until it grows large
 * enough to be sent. Per parameter {@code p} with gradient {@code g} it keeps a velocity {@code u}
 * and a residual {@code v} (float tensors of p's shape) and does
 * <pre>
 *   g = g + weightDecay * p          (before the momentum, as SGD does)
 *   g = g * min(1, clipNorm / ||g||)  (local clipping over all of this worker's gradients, if set)
 *   u = momentum * u + g             (momentum correction: the momentum is accumulated locally)
 *   v = v + u                        (local gradient accumulation)
 *   S = top-k |v|, k = max(1, ceil(density(step) * numel))
 *   send (v[S], S);  v[S] = 0;  u[S] = 0   (momentum factor masking)
 * </pre>
 * The receiver sums what every worker sent (and divides by the number of workers) and applies
 * it with plain SGD without momentum: the momentum already lives in {@code u}. With momentum 0
 * this is top-k sparsification with residual accumulation, and every value of every gradient is
 * either sent once or still in {@code v}: the sum of everything sent plus the residual is the
 * sum of the gradients.
 *
 * <p>The selection is the registry's {@code topk} op on {@code |v|}, the bookkeeping is
 * {@code gather}/{@code index_add}, so it runs on the parameters' device. Cost per tensor of n
 * elements: a few elementwise passes over n plus the top-k selection ({@code O(n log k)} on
 * the CPU).
 *
 * <pre>{@code
 * DeepGradientCompression dgc = DeepGradientCompression.builder()
 *         .density(DensitySchedule.warmup(stepsPerEpoch, 0.25, 0.0625, 0.015625, 0.004, 0.001))
 *         .momentum(0.9).build(model.parameters());
 * loss.backward();
 * try (CompressedGradients sent = dgc.compress()) { ... all-gather, CompressedGradients.sum ... }
 * }</pre>
 * Not thread-safe; {@link #close()} frees the state.
 */
public final class DeepGradientCompression implements AutoCloseable {
    private final DensitySchedule density;
    private final double momentum;
    private final double weightDecay;
    private final double clipNorm;
    private final List<Tensor> params;
    private final Tensor[] velocity;
    private final Tensor[] residual;
    private long step;
    private boolean closed;

    private DeepGradientCompression(Builder b, List<Tensor> params) {
        this.density = b.density;
        this.momentum = b.momentum;
        this.weightDecay = b.weightDecay;
        this.clipNorm = b.clipNorm;
        this.params = List.copyOf(params);
        if (this.params.isEmpty()) {
            throw new IllegalArgumentException("DeepGradientCompression: no parameters given");
        }
        for (int i = 0; i < this.params.size(); i++) {
            Tensor p = this.params.get(i);
            if (!p.dtype().isFloatingPoint()) {
                throw new IllegalArgumentException("DeepGradientCompression: parameter " + i + " " + p.describe()
                        + " is not floating point");
            }
        }
        velocity = new Tensor[this.params.size()];
        residual = new Tensor[this.params.size()];
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Options: density schedule (default constant 0.1%), momentum, weight decay, local clipping. */
    public static final class Builder {
        private DensitySchedule density = DensitySchedule.constant(0.001);
        private double momentum;
        private double weightDecay;
        private double clipNorm;

        private Builder() {
        }

        public Builder density(DensitySchedule v) {
            density = Objects.requireNonNull(v, "density");
            return this;
        }

        public Builder density(double v) {
            density = DensitySchedule.constant(v);
            return this;
        }

        /** Momentum accumulated locally (momentum correction); 0 turns it off. */
        public Builder momentum(double v) {
            if (!(v >= 0 && v < 1)) {
                throw new IllegalArgumentException("DeepGradientCompression: momentum must be in [0, 1), got " + v);
            }
            momentum = v;
            return this;
        }

        public Builder weightDecay(double v) {
            if (!(v >= 0) || Double.isInfinite(v)) {
                throw new IllegalArgumentException("DeepGradientCompression: weightDecay must be finite and >= 0, got " + v);
            }
            weightDecay = v;
            return this;
        }

        /**
         * Clips this worker's gradients (all tensors together) to this L2 norm before they are
         * accumulated; the paper scales the global threshold by {@code 1/sqrt(workers)}. 0: off.
         */
        public Builder clipNorm(double v) {
            if (!(v >= 0) || Double.isInfinite(v)) {
                throw new IllegalArgumentException("DeepGradientCompression: clipNorm must be finite and >= 0, got " + v);
            }
            clipNorm = v;
            return this;
        }

        public DeepGradientCompression build(List<Tensor> params) {
            return new DeepGradientCompression(this, params);
        }
    }

    /** Steps compressed so far. */
    public long step() {
        return step;
    }

    /** The density the next {@link #compress()} uses. */
    public double density() {
        return density.density(step);
    }

    /** How many values of a tensor of {@code numel} elements are sent at {@code density}. */
    public static long count(long numel, double density) {
        if (numel == 0) {
            return 0;
        }
        return Math.min(numel, Math.max(1, (long) Math.ceil(density * numel - 1e-9)));
    }

    /** The residual of parameter {@code i} (what was accumulated but not sent), or null before the first step. */
    public Tensor residual(int i) {
        ensureOpen();
        return residual[i];
    }

    /** The local velocity of parameter {@code i}, or null (momentum 0, or before the first step). */
    public Tensor velocity(int i) {
        ensureOpen();
        return velocity[i];
    }

    /**
     * Compresses the current gradients ({@code p.grad()}; a parameter without one counts as a zero
     * gradient) and updates the residuals; the caller owns the result.
     */
    public CompressedGradients compress() {
        ensureOpen();
        List<Tensor> gradients = new ArrayList<>(params.size());
        for (Tensor p : params) {
            p.ensureOpen("DeepGradientCompression.compress");
            gradients.add(p.grad());
        }
        return compress(gradients);
    }

    /**
     * Compresses {@code gradients} (one per parameter, in the parameters' order, each of its
     * parameter's shape, dtype and device; null counts as zero) instead of the parameters' own
     * {@code grad}: for a caller that keeps the gradients elsewhere, such as the flat gradient
     * buckets of a data-parallel wrapper. Updates the residuals; the caller owns the result.
     */
    public CompressedGradients compress(List<Tensor> gradients) {
        ensureOpen();
        if (gradients.size() != params.size()) {
            throw new IllegalArgumentException("DeepGradientCompression.compress: " + gradients.size()
                    + " gradients for " + params.size() + " parameters");
        }
        double d = density.density(step);
        List<CompressedGradients.Part> parts = new ArrayList<>(params.size());
        long denseValues = 0;
        long denseBytes = 0;
        boolean done = false;
        try (Scope detached = Scope.detached(); var ng = Autograd.noGrad()) {
            try (Scope s = Scope.open()) {
                Tensor[] g = new Tensor[params.size()];
                for (int i = 0; i < g.length; i++) {
                    Tensor p = params.get(i);
                    p.ensureOpen("DeepGradientCompression.compress");
                    Tensor grad = gradients.get(i);
                    if (grad != null && (!grad.shape().equals(p.shape()) || grad.device() != p.device())) {
                        throw new IllegalArgumentException("DeepGradientCompression: gradient " + grad.describe()
                                + " does not match parameter " + i + " " + p.describe());
                    }
                    Tensor flat = grad == null ? Tensor.zeros(p.dtype(), p.device(), p.numel()) : grad.reshape(-1);
                    if (flat.dtype() != p.dtype()) {
                        flat = flat.to(p.dtype());
                    }
                    if (weightDecay != 0) {
                        flat = flat.add(p.reshape(-1).mul(weightDecay));
                    }
                    g[i] = flat;
                    denseValues += p.numel();
                    denseBytes += p.numel() * p.dtype().byteSize();
                }
                if (clipNorm > 0) {
                    double sq = 0;
                    for (Tensor t : g) {
                        sq += t.mul(t).sum().item();
                    }
                    double norm = Math.sqrt(sq);
                    if (norm > clipNorm) {
                        for (int i = 0; i < g.length; i++) {
                            g[i] = g[i].mul(clipNorm / norm);
                        }
                    }
                }
                Tensor[] nextU = new Tensor[g.length];
                Tensor[] nextV = new Tensor[g.length];
                for (int i = 0; i < g.length; i++) {
                    Tensor u = g[i];
                    if (momentum != 0 && velocity[i] != null) {
                        u = velocity[i].mul(momentum).add(g[i]);
                    }
                    Tensor v = residual[i] == null ? u : residual[i].add(u);
                    long n = v.numel();
                    long k = count(n, d);
                    Tensor idx = Sparse.topk(v.abs(), (int) k, 0, true)[1];
                    Tensor values = Indexing.gather(v, idx, 0);
                    // exact zeros: x + (-x) == 0, so nothing is lost or sent twice
                    nextV[i] = Indexing.indexAdd(v, 0, idx, values.neg());
                    if (momentum != 0) {
                        nextU[i] = Indexing.indexAdd(u, 0, idx, Indexing.gather(u, idx, 0).neg());
                    }
                    parts.add(new CompressedGradients.Part(i, params.get(i).shape(), s.keep(values), s.keep(idx)));
                }
                for (int i = 0; i < g.length; i++) {
                    replace(residual, i, s.keep(nextV[i]));
                    if (momentum != 0) {
                        replace(velocity, i, s.keep(nextU[i]));
                    }
                }
                done = true;
            }
        } finally {
            if (!done) {
                for (CompressedGradients.Part p : parts) {
                    p.values().close();
                    p.indices().close();
                }
            }
        }
        step++;
        return new CompressedGradients(parts, denseValues, denseBytes);
    }

    private static void replace(Tensor[] slots, int i, Tensor t) {
        if (slots[i] != null) {
            slots[i].close();
        }
        slots[i] = t;
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("DeepGradientCompression: already closed");
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (int i = 0; i < params.size(); i++) {
            replace(velocity, i, null);
            replace(residual, i, null);
        }
    }
}
