package dev.cortado.sparse;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Sparse.NM;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * N:M structured-sparse training from scratch with SR-STE (Zhou et al., "Learning N:M
 * fine-grained structured sparse neural networks from scratch", 2021) and, optionally, a mask
 * decay that lets the pruned weights fade out gradually (the mask-decayed gradient flow of
 * Bambhaniya et al., "Progressive gradient flow for robust N:M sparsity training in
 * transformers", 2024).
 *
 * <p>The weights stay dense and train; each step runs the model on their N:M projection:
 * <ol>
 *   <li>{@link #step(long)} recomputes every mask {@code m} from the dense weights (the n largest
 *   |w| of every m consecutive entries of a row; a convolution kernel {@code [out, in, kh, kw]} is
 *   read as {@code [out, in·kh·kw]}), keeps a copy of the dense weights and writes
 *   {@code w̃ = w ⊙ (m + β(t)·(1 − m))} into the parameters, β the {@link MaskDecay} factor
 *   (0 for plain SR-STE: the forward sees exactly the N:M weights);</li>
 *   <li>the forward and backward run on w̃, so {@code w.grad()} holds {@code ∂L/∂w̃} (the
 *   straight-through estimator: the gradient of the masked weight is applied to the dense one);</li>
 *   <li>closing the returned {@link Step} restores the dense weights and adds the sparse-refined
 *   term: {@code grad += λ·(1 − m) ⊙ w}, which decays the pruned weights so that the mask
 *   settles; then the optimizer steps on the dense weights.</li>
 * </ol>
 *
 * <pre>{@code
 * try (var srste = NmSparseTraining.builder(weights).pattern(2, 4).lambda(2e-4).build()) {
 *     for (long step = 0; step < steps; step++) {
 *         try (var s = srste.step(step)) {        // the parameters now hold the 2:4 weights
 *             Tensor loss = lossOf(model.forward(x));
 *             opt.zeroGrad();
 *             loss.backward();
 *         }                                        // dense weights back, SR-STE term in the gradients
 *         opt.step();
 *     }
 *     srste.finish();                              // the parameters keep the final 2:4 weights
 * }
 * }</pre>
 */
public final class NmSparseTraining implements AutoCloseable {

    /**
     * The mask decay of the progressive recipe: the factor β(t) by which the forward multiplies
     * the pruned weights. β is 1 (dense) up to {@code startStep}, then falls in {@code levels}
     * equal stairs (β = 1 − ⌊levels·(t − t₀)/(t_end − t₀)⌋ / levels) and is 0 (plain SR-STE:
     * exactly N:M) from {@code endStep} on. {@link #none()} is β = 0 throughout.
     */
    public record MaskDecay(long startStep, long endStep, int levels) {
        public MaskDecay {
            if (startStep < 0 || endStep < startStep || levels < 1) {
                throw new IllegalArgumentException("MaskDecay: need 0 <= startStep (" + startStep + ") <= endStep ("
                        + endStep + ") and levels (" + levels + ") >= 1");
            }
        }

        /** No decay: the forward sees the N:M weights from the first step. */
        public static MaskDecay none() {
            return new MaskDecay(0, 0, 1);
        }

        /** β at {@code step}: the factor of the pruned weights in the forward. */
        public double factorAt(long step) {
            if (step >= endStep) {
                return 0;
            }
            if (step < startStep) {
                return 1;
            }
            double progress = (double) (step - startStep) / (endStep - startStep);
            return 1 - Math.floor(progress * levels) / levels;
        }
    }

    /** One training step's masked weights; {@link #close()} restores the dense ones (see the class comment). */
    public final class Step implements AutoCloseable {
        private boolean closed;

        private Step() {
        }

        /** Restores the dense weights and adds {@code λ·(1 − m) ⊙ w} to each weight's gradient (when it has one). */
        @Override
        public void close() {
            if (closed) {
                return;
            }
            closed = true;
            restore();
        }
    }

    private final List<Tensor> weights;
    private final NM pattern;
    private final double lambda;
    private final MaskDecay decay;
    private final List<Tensor> masks;
    private final List<Tensor> dense;
    private Step open;
    private double factor;

    private NmSparseTraining(List<Tensor> weights, NM pattern, double lambda, MaskDecay decay) {
        if (weights.isEmpty()) {
            throw new IllegalArgumentException("NmSparseTraining: no weights given");
        }
        for (Tensor w : weights) {
            if (!w.dtype().isFloatingPoint()) {
                throw new IllegalArgumentException("NmSparseTraining: weight " + w.describe() + " is not floating point");
            }
            NmMasks.check("NmSparseTraining", w, pattern);
        }
        if (!(lambda >= 0) || Double.isInfinite(lambda)) {
            throw new IllegalArgumentException("NmSparseTraining: lambda " + lambda + " must be finite and >= 0");
        }
        this.weights = List.copyOf(weights);
        this.pattern = pattern;
        this.lambda = lambda;
        this.decay = decay;
        this.masks = new ArrayList<>(Collections.nCopies(weights.size(), (Tensor) null));
        this.dense = new ArrayList<>(Collections.nCopies(weights.size(), (Tensor) null));
    }

    public static Builder builder(List<Tensor> weights) {
        return new Builder(weights);
    }

    /** Builder: the pattern (default 2:4), λ (default 2e-4, the paper's value) and the mask decay (default none). */
    public static final class Builder {
        private final List<Tensor> weights;
        private NM pattern = new NM(2, 4);
        private double lambda = 2e-4;
        private MaskDecay decay = MaskDecay.none();

        private Builder(List<Tensor> weights) {
            this.weights = weights;
        }

        public Builder pattern(int n, int m) {
            this.pattern = new NM(n, m);
            return this;
        }

        /** The weight of the sparse-refined term {@code λ·(1 − m) ⊙ w} added to the gradient; 0 is the plain STE. */
        public Builder lambda(double l) {
            this.lambda = l;
            return this;
        }

        public Builder maskDecay(MaskDecay d) {
            this.decay = d;
            return this;
        }

        public NmSparseTraining build() {
            return new NmSparseTraining(weights, pattern, lambda, decay);
        }
    }

    /**
     * Recomputes the masks from the dense weights and writes the masked weights into the
     * parameters for the forward and backward of training step {@code step}; close the result
     * before the optimizer step.
     */
    public Step step(long step) {
        if (open != null && !open.closed) {
            throw new IllegalStateException("NmSparseTraining.step(" + step + "): the previous step is still open "
                    + "(close it after backward, before the optimizer step)");
        }
        factor = decay.factorAt(step);
        try (var g = Autograd.noGrad(); Scope detached = Scope.detached()) { // kept tensors: in no user scope
            for (int i = 0; i < weights.size(); i++) {
                Tensor w = weights.get(i);
                replace(masks, i, NmMasks.of(w, pattern));
                if (dense.get(i) == null) {
                    dense.set(i, w.copy());
                } else {
                    dense.get(i).copyFrom(w);
                }
                try (Tensor masked = maskedWeight(w, masks.get(i), factor)) {
                    w.copyFrom(masked);
                }
            }
        }
        open = new Step();
        return open;
    }

    private void restore() {
        try (var g = Autograd.noGrad(); Scope detached = Scope.detached()) { // kept tensors: in no user scope
            for (int i = 0; i < weights.size(); i++) {
                Tensor w = weights.get(i);
                Tensor d = dense.get(i);
                w.copyFrom(d);
                Tensor grad = w.grad();
                if (grad != null && lambda > 0) {
                    try (Tensor negPruned = Elementwise.sub(masks.get(i), 1.0); // m - 1 = -(1 - m)
                         Tensor pw = Elementwise.mul(negPruned, d);
                         Tensor term = pw.mul(-lambda);
                         Tensor sum = Elementwise.add(grad, term)) {
                        grad.copyFrom(sum);
                    }
                }
            }
        }
    }

    /** w ⊙ (m + β(1 − m)) = w ⊙ m + β·(w − w ⊙ m). */
    private static Tensor maskedWeight(Tensor w, Tensor m, double beta) {
        Tensor kept = Elementwise.mul(w, m);
        if (beta == 0) {
            return kept;
        }
        try (kept; Tensor rest = Elementwise.sub(w, kept); Tensor faded = rest.mul(beta)) {
            return Elementwise.add(kept, faded);
        }
    }

    /**
     * Ends training: the masks are recomputed from the dense weights one last time and the
     * parameters keep the N:M weights {@code w ⊙ m} (pruned entries exactly zero), ready for
     * {@code SparseLinear} / {@code SparseConv2d}.
     */
    public void finish() {
        if (open != null && !open.closed) {
            throw new IllegalStateException("NmSparseTraining.finish: a step is still open");
        }
        try (var g = Autograd.noGrad(); Scope detached = Scope.detached()) { // kept tensors: in no user scope
            for (int i = 0; i < weights.size(); i++) {
                Tensor w = weights.get(i);
                replace(masks, i, NmMasks.of(w, pattern));
                try (Tensor masked = Elementwise.mul(w, masks.get(i))) {
                    w.copyFrom(masked);
                }
            }
        }
    }

    /** The masks of the last step (1 kept, 0 pruned; the weights' dtype, shape and device); null before the first. */
    public List<Tensor> masks() {
        return Collections.unmodifiableList(masks);
    }

    /** β of the last step (0 before the first). */
    public double maskFactor() {
        return factor;
    }

    public NM pattern() {
        return pattern;
    }

    public double lambda() {
        return lambda;
    }

    public MaskDecay maskDecay() {
        return decay;
    }

    @Override
    public void close() {
        if (open != null && !open.closed) {
            open.close();
        }
        for (int i = 0; i < weights.size(); i++) {
            replace(masks, i, null);
            replace(dense, i, null);
        }
    }

    private static void replace(List<Tensor> list, int i, Tensor t) {
        Tensor old = list.set(i, t);
        if (old != null) {
            old.close();
        }
    }
}
