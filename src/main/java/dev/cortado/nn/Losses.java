package dev.cortado.nn;

import dev.cortado.ops.CrossEntropy;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Loss functions composed of ops (so gradients flow through autograd), each with a
 * {@link Reduction}. Conventions follow PyTorch: class scores are [N, C] or [N, C, d...] with
 * integer targets [N] or [N, d...]; {@code ignoreIndex} targets contribute nothing and are not
 * counted by MEAN; a MEAN over zero counted targets is 0 with a zero gradient (as the fused
 * {@code cross_entropy} op; PyTorch gives NaN).
 */
public final class Losses {
    private Losses() {
    }

    /** How per-element losses are combined. BATCH_MEAN (KL divergence's mathematically right mean) divides the sum by N. */
    public enum Reduction {
        MEAN, SUM, NONE, BATCH_MEAN
    }

    /** PyTorch's default ignore index. */
    public static final long IGNORE_INDEX = -100;

    // ------------------------------------------------------------------ classification
    /** Mean cross entropy of logits [N, C] (or [N, C, d...]) against class indices. */
    public static Tensor crossEntropy(Tensor logits, Tensor targets) {
        return crossEntropy(logits, targets, Reduction.MEAN, IGNORE_INDEX, 0);
    }

    /**
     * Cross entropy = nll(log_softmax(logits, 1)). Integer targets are class indices (with
     * {@code ignoreIndex} and {@code labelSmoothing} ε: the loss of a row becomes
     * {@code (1-ε) nll + ε mean_c(-log p_c)}); floating targets shaped like the logits are class
     * probabilities ({@code -sum_c t_c log p_c}, e.g. distillation).
     */
    public static Tensor crossEntropy(Tensor logits, Tensor targets, Reduction reduction, long ignoreIndex,
                                      double labelSmoothing) {
        if (logits.rank() < 2) {
            throw new IllegalArgumentException("cross_entropy: logits must be [N, C, ...], got " + logits.describe());
        }
        if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) {
            throw new IllegalArgumentException("cross_entropy: label smoothing must be in [0, 1], got " + labelSmoothing);
        }
        if (targets.dtype().isFloatingPoint()) {
            if (!targets.shape().equals(logits.shape())) {
                throw new IllegalArgumentException("cross_entropy: probability targets " + targets.describe()
                        + " must have the logits' shape " + logits.describe());
            }
            try (Tensor logp = Normalization.logSoftmax(logits, 1);
                 Tensor soft = smoothed(targets, labelSmoothing, logits.size(1));
                 Tensor prod = Elementwise.mul(soft, logp);
                 Tensor s = Reductions.sum(prod, false, 1);
                 Tensor loss = Elementwise.neg(s)) {
                return reduce(loss, reduction, -1, "cross_entropy");
            }
        }
        return fusedCrossEntropy(logits, targets, reduction, ignoreIndex, labelSmoothing);
    }

    /**
     * Integer targets go to the fused op {@code cross_entropy} ({@link CrossEntropy}), which reads
     * rows with the class dimension last: [N, C] as is, [N, C, d...] through a permuted view.
     */
    private static Tensor fusedCrossEntropy(Tensor logits, Tensor targets, Reduction reduction, long ignoreIndex,
                                            double labelSmoothing) {
        if (!targets.dtype().isInteger()) {
            throw new IllegalArgumentException("cross_entropy: targets must be integer class indices or probabilities, got "
                    + targets.describe());
        }
        long[] ld = logits.dims();
        long[] want = new long[ld.length - 1];
        want[0] = ld[0];
        System.arraycopy(ld, 2, want, 1, ld.length - 2);
        if (!Arrays.equals(targets.dims(), want)) {
            throw new IllegalArgumentException("cross_entropy: targets " + targets.describe() + " must be "
                    + Arrays.toString(want) + " for logits " + logits.describe());
        }
        CrossEntropy.Reduction r = switch (reduction) {
            case NONE -> CrossEntropy.Reduction.NONE;
            case MEAN -> CrossEntropy.Reduction.MEAN;
            case SUM, BATCH_MEAN -> CrossEntropy.Reduction.SUM;
        };
        var attrs = new CrossEntropy.CrossEntropyAttrs(r, ignoreIndex, labelSmoothing);
        int[] order = new int[ld.length];
        order[0] = 0;
        for (int i = 1; i < ld.length - 1; i++) {
            order[i] = i + 1;
        }
        order[ld.length - 1] = 1;
        try (Tensor classLast = ld.length == 2 ? logits.reshape(ld) : logits.permute(order)) {
            Tensor loss = CrossEntropy.crossEntropy(classLast, targets, attrs);
            if (reduction != Reduction.BATCH_MEAN) {
                return loss;
            }
            try (loss) {
                return Elementwise.mul(loss, 1.0 / Math.max(1, ld[0]));
            }
        }
    }

    /**
     * The composed form of {@link #crossEntropy(Tensor, Tensor, Reduction, long, double)} for
     * integer targets (log_softmax, then {@link #nll}); kept as the reference the fused op is
     * tested against and for backends without the fused kernel.
     */
    public static Tensor crossEntropyComposed(Tensor logits, Tensor targets, Reduction reduction, long ignoreIndex,
                                              double labelSmoothing) {
        try (Tensor logp = Normalization.logSoftmax(logits, 1)) {
            return nllImpl("cross_entropy", logp, targets, reduction, ignoreIndex, labelSmoothing);
        }
    }

    private static Tensor smoothed(Tensor targets, double eps, long classes) {
        if (eps == 0) {
            return targets.reshape(targets.dims());
        }
        try (Tensor a = Elementwise.mul(targets, 1 - eps)) {
            return Elementwise.add(a, eps / classes);
        }
    }

    /** Negative log likelihood of log-probabilities [N, C] (or [N, C, d...]) at integer targets. */
    public static Tensor nll(Tensor logProbs, Tensor targets, Reduction reduction, long ignoreIndex) {
        return nllImpl("nll", logProbs, targets, reduction, ignoreIndex, 0);
    }

    public static Tensor nll(Tensor logProbs, Tensor targets) {
        return nll(logProbs, targets, Reduction.MEAN, IGNORE_INDEX);
    }

    /**
     * Picks {@code -logp[row, target[row]]} through one gather over the flattened [M, C] rows. The
     * targets are read on the host once to check their range (a clear error instead of a wrong
     * row) and to build the flat indices and the ignore mask.
     */
    private static Tensor nllImpl(String op, Tensor logp, Tensor targets, Reduction reduction, long ignoreIndex,
                                  double smoothing) {
        if (logp.rank() < 2) {
            throw new IllegalArgumentException(op + ": input must be [N, C, ...], got " + logp.describe());
        }
        if (!targets.dtype().isInteger()) {
            throw new IllegalArgumentException(op + ": targets must be integer class indices, got " + targets.describe());
        }
        long[] ld = logp.dims();
        long[] want = new long[ld.length - 1];
        want[0] = ld[0];
        System.arraycopy(ld, 2, want, 1, ld.length - 2);
        if (!Arrays.equals(targets.dims(), want)) {
            throw new IllegalArgumentException(op + ": targets " + targets.describe() + " must be " + Arrays.toString(want)
                    + " for input " + logp.describe());
        }
        long c = ld[1];
        long[] t = targets.toLongArray();
        int m = t.length;
        long[] idx = new long[m];
        double[] keep = new double[m];
        long valid = 0;
        for (int i = 0; i < m; i++) {
            if (t[i] == ignoreIndex) {
                idx[i] = (long) i * c;
                continue;
            }
            if (t[i] < 0 || t[i] >= c) {
                throw new IndexOutOfBoundsException(op + ": target " + t[i] + " at flat position " + i
                        + " is out of range for " + c + " classes (input " + logp.describe() + ")");
            }
            idx[i] = (long) i * c + t[i];
            keep[i] = 1;
            valid++;
        }
        boolean anyIgnored = valid < m;
        Tensor rows;
        if (ld.length == 2) {
            rows = logp.reshape(ld);
        } else {
            int[] order = new int[ld.length];
            order[0] = 0;
            for (int i = 1; i < ld.length - 1; i++) {
                order[i] = i + 1;
            }
            order[ld.length - 1] = 1;
            try (Tensor moved = logp.permute(order)) {
                rows = moved.reshape(-1, c);
            }
        }
        Tensor perRow;
        try (rows; Tensor flat = rows.reshape(-1); Tensor idxHost = Tensor.of(idx, m);
             Tensor idxT = idxHost.to(logp.device());
             Tensor picked = Indexing.gather(flat, idxT, 0)) {
            Tensor nllRow = Elementwise.neg(picked);
            if (smoothing > 0) {
                try (Tensor meanLogp = Reductions.mean(rows, false, 1);
                     Tensor smooth = Elementwise.mul(meanLogp, -smoothing);
                     Tensor hard = Elementwise.mul(nllRow, 1 - smoothing)) {
                    nllRow.close();
                    nllRow = Elementwise.add(hard, smooth);
                }
            }
            perRow = nllRow;
        }
        if (anyIgnored) {
            try (Tensor r = perRow; Tensor maskHost = Tensor.of(keep, m);
                 Tensor mask = maskHost.to(perRow.dtype(), perRow.device())) {
                perRow = Elementwise.mul(r, mask);
            }
        }
        Tensor result = perRow;
        try (result; Tensor shaped = result.reshape(targets.dims())) {
            return reduce(shaped, reduction, valid, op);
        }
    }

    // ------------------------------------------------------------------ regression
    /** Mean squared error (input - target)^2. */
    public static Tensor mse(Tensor input, Tensor target, Reduction reduction) {
        sameShape("mse", input, target);
        try (Tensor d = Elementwise.sub(input, target); Tensor sq = Elementwise.mul(d, d)) {
            return reduce(sq, reduction, -1, "mse");
        }
    }

    public static Tensor mse(Tensor input, Tensor target) {
        return mse(input, target, Reduction.MEAN);
    }

    /** Mean absolute error |input - target|. */
    public static Tensor l1(Tensor input, Tensor target, Reduction reduction) {
        sameShape("l1", input, target);
        try (Tensor d = Elementwise.sub(input, target); Tensor a = Elementwise.abs(d)) {
            return reduce(a, reduction, -1, "l1");
        }
    }

    public static Tensor l1(Tensor input, Tensor target) {
        return l1(input, target, Reduction.MEAN);
    }

    // ------------------------------------------------------------------ probabilistic
    /**
     * Binary cross entropy of logits x against targets y in [0, 1], in the numerically stable
     * form {@code max(x, 0) - x*y + log(1 + exp(-|x|))} (no overflow for any x).
     */
    public static Tensor binaryCrossEntropyWithLogits(Tensor logits, Tensor targets, Reduction reduction) {
        sameShape("binary_cross_entropy_with_logits", logits, targets);
        try (Tensor pos = Elementwise.relu(logits);
             Tensor xy = Elementwise.mul(logits, targets);
             Tensor a = Elementwise.sub(pos, xy);
             Tensor ax = Elementwise.abs(logits);
             Tensor nax = Elementwise.neg(ax);
             Tensor e = Elementwise.exp(nax);
             Tensor e1 = Elementwise.add(e, 1.0);
             Tensor l = Elementwise.log(e1);
             Tensor loss = Elementwise.add(a, l)) {
            return reduce(loss, reduction, -1, "binary_cross_entropy_with_logits");
        }
    }

    public static Tensor binaryCrossEntropyWithLogits(Tensor logits, Tensor targets) {
        return binaryCrossEntropyWithLogits(logits, targets, Reduction.MEAN);
    }

    /**
     * KL divergence KL(target || model) with {@code input} the model's log-probabilities (PyTorch's
     * {@code kl_div}): pointwise {@code t * (log t - input)}, or with {@code logTarget}
     * {@code exp(t) * (t - input)}; zero where t = 0. Use BATCH_MEAN for the true KL per sample
     * (MEAN averages over every element, as PyTorch's default).
     */
    public static Tensor klDiv(Tensor input, Tensor target, Reduction reduction, boolean logTarget) {
        sameShape("kl_div", input, target);
        Tensor pointwise;
        if (logTarget) {
            try (Tensor p = Elementwise.exp(target); Tensor d = Elementwise.sub(target, input)) {
                pointwise = Elementwise.mul(p, d);
            }
        } else {
            try (Tensor safe = Elementwise.clamp(target, tiny(target.dtype()), Double.POSITIVE_INFINITY);
                 Tensor lt = Elementwise.log(safe);
                 Tensor d = Elementwise.sub(lt, input)) {
                pointwise = Elementwise.mul(target, d);
            }
        }
        try (pointwise) {
            return reduce(pointwise, reduction, -1, "kl_div");
        }
    }

    private static double tiny(DType t) {
        return switch (t) {
            case FLOAT64 -> 1e-300;
            case FLOAT16 -> 6.2e-5;
            default -> 1e-37;
        };
    }

    // ------------------------------------------------------------------ helpers
    private static void sameShape(String op, Tensor a, Tensor b) {
        if (!a.shape().equals(b.shape())) {
            throw new IllegalArgumentException(op + ": input " + a.describe() + " and target " + b.describe()
                    + " must have the same shape");
        }
    }

    /** Applies the reduction; {@code count} >= 0 overrides MEAN's divisor (the non-ignored targets). */
    static Tensor reduce(Tensor loss, Reduction r, long count, String op) {
        switch (r) {
            case NONE:
                return loss.reshape(loss.dims());
            case SUM:
                return Reductions.sum(loss);
            case MEAN:
                if (count < 0) {
                    return Reductions.mean(loss);
                }
                try (Tensor s = Reductions.sum(loss)) {
                    return Elementwise.mul(s, count == 0 ? 0.0 : 1.0 / count);
                }
            case BATCH_MEAN:
                if (loss.rank() == 0) {
                    return Reductions.sum(loss);
                }
                try (Tensor s = Reductions.sum(loss)) {
                    return Elementwise.mul(s, 1.0 / Math.max(1, loss.size(0)));
                }
            default:
                throw new IllegalArgumentException(op + ": unknown reduction " + r);
        }
    }
}
