package dev.cortado.sparse;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Fixed sparse masks chosen once from the empirical Fisher information, then kept through
 * training. After each of some batches' backward passes, {@link #accumulate()} adds the squared
 * gradient of every weight: the mean over the batches is the diagonal of the empirical Fisher
 * information F. {@link #chooseMasks} then keeps the weights of largest saliency
 * {@code F_ii · w_i²} (the second-order estimate of the loss increase when w_i is set to zero,
 * as in Optimal Brain Damage with the Fisher for the Hessian), per layer or with one threshold
 * over all the weights, and applies the masks; {@link #applyMasks()} after every later optimizer
 * step keeps the pruned weights at zero. The selection and the masks are those of
 * {@link MagnitudePruning} (top-k over the scores instead of the magnitudes).
 *
 * <pre>{@code
 * try (FisherPruning fisher = new FisherPruning(weights, MagnitudePruning.Scope.GLOBAL)) {
 *     for (Batch b : firstBatches) { loss(b).backward(); fisher.accumulate(); model.zeroGrad(); }
 *     fisher.chooseMasks(0.9);
 *     for (...) { ... opt.step(); fisher.applyMasks(); }
 * }
 * }</pre>
 */
public final class FisherPruning implements AutoCloseable {
    private final List<Tensor> weights;
    private final List<Tensor> sums;
    private final MagnitudePruning pruning;
    private long batches;
    private boolean chosen;

    /** Prunes {@code weights} (floating point, each with a gradient after backward) per layer or globally. */
    public FisherPruning(List<Tensor> weights, MagnitudePruning.Scope scope) {
        this.pruning = MagnitudePruning.builder(weights).scope(scope).build();
        this.weights = List.copyOf(weights);
        this.sums = new ArrayList<>(Collections.nCopies(weights.size(), (Tensor) null));
    }

    /** Adds the squared gradient of every weight (call after a backward pass, before zeroing the gradients). */
    public void accumulate() {
        if (chosen) {
            throw new IllegalStateException("FisherPruning.accumulate: the masks are already chosen (they stay fixed)");
        }
        try (var g = Autograd.noGrad(); Scope detached = Scope.detached()) { // the sums outlive the caller's scopes
            for (int i = 0; i < weights.size(); i++) {
                Tensor grad = weights.get(i).grad();
                if (grad == null) {
                    throw new IllegalStateException("FisherPruning.accumulate: weight " + i + " "
                            + weights.get(i).describe() + " has no gradient (call after backward)");
                }
                Tensor sq = Elementwise.mul(grad, grad);
                Tensor old = sums.get(i);
                if (old == null) {
                    sums.set(i, sq);
                } else {
                    try (sq) {
                        try (Tensor sum = Elementwise.add(old, sq)) {
                            old.copyFrom(sum);
                        }
                    }
                }
            }
        }
        batches++;
    }

    /** The batches accumulated so far. */
    public long batches() {
        return batches;
    }

    /**
     * The saliency {@code F_ii · w_i²} of every weight (F the mean squared gradient), as new
     * tensors the caller closes.
     */
    public List<Tensor> saliency() {
        if (batches == 0) {
            throw new IllegalStateException("FisherPruning.saliency: no batch accumulated yet");
        }
        List<Tensor> out = new ArrayList<>();
        try (var g = Autograd.noGrad()) {
            for (int i = 0; i < weights.size(); i++) {
                Tensor w = weights.get(i);
                try (Tensor w2 = Elementwise.mul(w, w); Tensor f = sums.get(i).mul(1.0 / batches)) {
                    out.add(Elementwise.mul(f, w2));
                }
            }
        }
        return out;
    }

    /** Chooses the masks once: the fraction {@code sparsity} of lowest saliency is zeroed, now and after every {@link #applyMasks()}. */
    public void chooseMasks(double sparsity) {
        if (chosen) {
            throw new IllegalStateException("FisherPruning.chooseMasks: the masks are already chosen (they stay fixed)");
        }
        List<Tensor> scores = saliency();
        try {
            pruning.pruneTo(sparsity, scores);
        } finally {
            scores.forEach(Tensor::close);
        }
        chosen = true;
    }

    /** Zeroes the pruned weights again (after an optimizer step moved them). */
    public void applyMasks() {
        if (!chosen) {
            throw new IllegalStateException("FisherPruning.applyMasks: call chooseMasks first");
        }
        pruning.applyMasks();
    }

    /** The fixed masks (1 kept, 0 pruned), empty entries (null) before {@link #chooseMasks}. */
    public List<Tensor> masks() {
        return pruning.masks();
    }

    /** The fraction of zeros over all the weights now. */
    public double measuredSparsity() {
        return pruning.measuredSparsity();
    }

    @Override
    public void close() {
        pruning.close();
        for (int i = 0; i < sums.size(); i++) {
            Tensor t = sums.set(i, null);
            if (t != null) {
                t.close();
            }
        }
    }
}
