package dev.cortado.sparse;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.Sparse;
import dev.cortado.ops.Sparse.NM;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Magnitude pruning of a set of weight tensors: unstructured, at one sparsity or gradually with the
 * cubic schedule of Zhu and Gupta ("To prune, or not to prune", 2017), or N:M structured
 * ({@link Builder#nm}: the n largest of every m consecutive weights of a row).
 *
 * <p>At each pruning step the weights of smallest magnitude are zeroed so that the fraction
 * {@code s} of the weights is zero: per layer ({@link Scope#PER_LAYER}, each tensor loses the
 * fraction s of its own entries) or globally ({@link Scope#GLOBAL}, one magnitude threshold over all
 * the tensors together, so layers with small weights lose more). The kept entries are chosen by the
 * {@code topk} kernel (ties to the lower position). The masks are kept: {@link #applyMasks()} zeroes
 * the pruned entries again after each optimizer step (a pruned weight stays zero, as in the paper),
 * and a later pruning step only ever raises the sparsity.
 *
 * <pre>{@code
 * var pruning = MagnitudePruning.builder(model.parameters().stream().filter(p -> p.rank() >= 2).toList())
 *         .schedule(new Schedule(0.0, 0.9, 0, 2000, 100))
 *         .scope(Scope.GLOBAL).build();
 * for (long step = 0; step < steps; step++) {
 *     ... loss.backward(); opt.step();
 *     pruning.step(step);          // prunes on the schedule's steps, re-applies the masks on every step
 * }
 * }</pre>
 */
public final class MagnitudePruning implements AutoCloseable {

    /** Per layer or one threshold over all the weights. */
    public enum Scope {
        PER_LAYER, GLOBAL
    }

    /**
     * Zhu and Gupta's gradual schedule: from {@code initialSparsity} at {@code startStep} to
     * {@code finalSparsity} at {@code endStep}, pruning every {@code frequency} steps, with
     * {@code s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_end - t_0))^3}: fast at first, when the
     * redundant weights are many, slower as fewer remain. Constant {@code finalSparsity} after
     * {@code endStep}; zero (no pruning) before {@code startStep}.
     */
    public record Schedule(double initialSparsity, double finalSparsity, long startStep, long endStep, long frequency) {
        public Schedule {
            if (!(initialSparsity >= 0 && initialSparsity <= finalSparsity && finalSparsity < 1)) {
                throw new IllegalArgumentException("Schedule: need 0 <= initialSparsity (" + initialSparsity
                        + ") <= finalSparsity (" + finalSparsity + ") < 1");
            }
            if (startStep < 0 || endStep < startStep || frequency < 1) {
                throw new IllegalArgumentException("Schedule: need 0 <= startStep (" + startStep + ") <= endStep (" + endStep
                        + ") and frequency (" + frequency + ") >= 1");
            }
        }

        /** One pruning at {@code sparsity} on step 0. */
        public static Schedule oneShot(double sparsity) {
            return new Schedule(sparsity, sparsity, 0, 0, 1);
        }

        /** The target sparsity at {@code step}. */
        public double sparsityAt(long step) {
            if (step < startStep) {
                return 0;
            }
            if (step >= endStep) {
                return finalSparsity;
            }
            double progress = (double) (step - startStep) / (endStep - startStep);
            double rest = 1 - progress;
            return finalSparsity + (initialSparsity - finalSparsity) * rest * rest * rest;
        }

        /** Whether the masks are recomputed at {@code step}: every frequency steps from start, and at the end. */
        public boolean prunesAt(long step) {
            return step >= startStep && step <= endStep && ((step - startStep) % frequency == 0 || step == endStep);
        }
    }

    private final List<Tensor> weights;
    private final List<Tensor> masks;
    private final Schedule schedule;
    private final Scope scope;
    private final NM pattern;
    private double sparsity;

    private MagnitudePruning(List<Tensor> weights, Schedule schedule, Scope scope, NM pattern) {
        if (weights.isEmpty()) {
            throw new IllegalArgumentException("MagnitudePruning: no weights given");
        }
        for (Tensor w : weights) {
            if (!w.dtype().isFloatingPoint()) {
                throw new IllegalArgumentException("MagnitudePruning: weight " + w.describe() + " is not floating point");
            }
            if (pattern != null) {
                NmMasks.check("MagnitudePruning", w, pattern);
            }
        }
        this.weights = List.copyOf(weights);
        this.schedule = schedule;
        this.scope = scope;
        this.pattern = pattern;
        this.masks = new ArrayList<>(Collections.nCopies(weights.size(), (Tensor) null));
    }

    public static Builder builder(List<Tensor> weights) {
        return new Builder(weights);
    }

    /** Builder: the schedule (default: one-shot 50%), the scope (default per layer) or an N:M pattern. */
    public static final class Builder {
        private final List<Tensor> weights;
        private Schedule schedule = Schedule.oneShot(0.5);
        private Scope scope = Scope.PER_LAYER;
        private NM pattern;

        private Builder(List<Tensor> weights) {
            this.weights = weights;
        }

        public Builder schedule(Schedule s) {
            this.schedule = s;
            return this;
        }

        public Builder scope(Scope s) {
            this.scope = s;
            return this;
        }

        /**
         * N:M structured pruning instead of unstructured: on each pruning step every group of m
         * consecutive weights along a row keeps its n largest (the {@code nm_compress} kernel), a
         * sparsity of 1 - n / m; the schedule then only says when the masks are recomputed. A
         * weight of rank above 2 (a convolution kernel {@code [out, in, kh, kw]}) is read as
         * {@code [out, in·kh·kw]}.
         */
        public Builder nm(int n, int m) {
            this.pattern = new NM(n, m);
            return this;
        }

        public MagnitudePruning build() {
            return new MagnitudePruning(weights, schedule, scope, pattern);
        }
    }

    /**
     * Call once per training step after the optimizer step: on the schedule's pruning steps the
     * masks are recomputed at its sparsity, then the masks are applied. Returns the sparsity in force.
     */
    public double step(long step) {
        if (schedule.prunesAt(step)) {
            if (pattern != null) {
                pruneToPattern();
            } else {
                pruneTo(Math.max(sparsity, schedule.sparsityAt(step)));
            }
        }
        applyMasks();
        return sparsity;
    }

    /** Recomputes the masks so that the fraction {@code s} of the weights (per layer or overall) is zero, and applies them. */
    public void pruneTo(double s) {
        if (!(s >= 0 && s < 1)) {
            throw new IllegalArgumentException("MagnitudePruning.pruneTo: sparsity " + s + " is not in [0, 1)");
        }
        if (pattern != null) {
            throw new IllegalStateException("MagnitudePruning.pruneTo: this pruning is " + pattern
                    + " structured; use pruneToPattern()");
        }
        pruneBy(s, weights);
    }

    /**
     * Recomputes the masks from saliency {@code scores} instead of the magnitudes (one tensor per
     * weight, of its shape; the largest |score| are kept, per layer or overall), and applies them.
     * {@link FisherPruning} chooses its masks this way.
     */
    public void pruneTo(double s, List<Tensor> scores) {
        if (!(s >= 0 && s < 1)) {
            throw new IllegalArgumentException("MagnitudePruning.pruneTo: sparsity " + s + " is not in [0, 1)");
        }
        if (pattern != null) {
            throw new IllegalStateException("MagnitudePruning.pruneTo: this pruning is " + pattern + " structured");
        }
        if (scores.size() != weights.size()) {
            throw new IllegalArgumentException("MagnitudePruning.pruneTo: " + scores.size() + " score tensors for "
                    + weights.size() + " weights");
        }
        for (int i = 0; i < scores.size(); i++) {
            if (!scores.get(i).shape().equals(weights.get(i).shape())) {
                throw new IllegalArgumentException("MagnitudePruning.pruneTo: scores " + scores.get(i).describe()
                        + " do not match weight " + weights.get(i).describe());
            }
        }
        pruneBy(s, scores);
    }

    private void pruneBy(double s, List<Tensor> sources) {
        try (var g = Autograd.noGrad()) { // choosing the masks is not part of the model's graph
            setMasks(scope == Scope.GLOBAL ? globalKeep(s, sources) : perLayerKeep(s, sources));
        }
        sparsity = s;
        applyMasks();
    }

    /** N:M pruning (see {@link Builder#nm}): the masks of the n largest of every m along each row, applied. */
    public void pruneToPattern() {
        if (pattern == null) {
            throw new IllegalStateException("MagnitudePruning.pruneToPattern: no N:M pattern was given (Builder.nm)");
        }
        for (int i = 0; i < weights.size(); i++) {
            Tensor old = masks.set(i, NmMasks.of(weights.get(i), pattern));
            if (old != null) {
                old.close();
            }
        }
        sparsity = 1 - (double) pattern.n() / pattern.m();
        applyMasks();
    }

    private void setMasks(List<boolean[]> keep) {
        for (int i = 0; i < weights.size(); i++) {
            Tensor w = weights.get(i);
            Tensor mask;
            // the mask is kept across steps: created in no user scope
            try (dev.cortado.tensor.Scope detached = dev.cortado.tensor.Scope.detached();
                 Tensor host = Tensor.of(keep.get(i), w.dims())) {
                mask = host.to(w.dtype(), w.device()); // bool to 1 / 0: always a new tensor
            }
            Tensor old = masks.set(i, mask);
            if (old != null) {
                old.close();
            }
        }
    }

    /** Zeroes the pruned entries of every weight again (after an optimizer step moved them). */
    public void applyMasks() {
        try (var g = Autograd.noGrad()) {
            for (int i = 0; i < weights.size(); i++) {
                Tensor m = masks.get(i);
                if (m != null) {
                    Tensor w = weights.get(i);
                    try (Tensor pruned = Elementwise.mul(w, m)) {
                        w.copyFrom(pruned);
                    }
                }
            }
        }
    }

    /** The masks (1 kept, 0 pruned; the weights' dtype and device), null before the first pruning. */
    public List<Tensor> masks() {
        return Collections.unmodifiableList(masks);
    }

    /** The sparsity of the last pruning (0 before any). */
    public double sparsity() {
        return sparsity;
    }

    /** The fraction of zeros over all the weights now. */
    public double measuredSparsity() {
        long zeros = 0;
        long total = 0;
        for (Tensor w : weights) {
            for (double v : w.toDoubleArray()) {
                zeros += v == 0 ? 1 : 0;
            }
            total += w.numel();
        }
        return total == 0 ? 0 : (double) zeros / total;
    }

    public Schedule schedule() {
        return schedule;
    }

    public Scope scope() {
        return scope;
    }

    @Override
    public void close() {
        for (int i = 0; i < masks.size(); i++) {
            Tensor m = masks.set(i, null);
            if (m != null) {
                m.close();
            }
        }
    }

    // ------------------------------------------------------------------ mask selection
    private static List<boolean[]> perLayerKeep(double s, List<Tensor> sources) {
        List<boolean[]> keep = new ArrayList<>();
        for (Tensor w : sources) {
            long n = w.numel();
            try (Tensor flat = magnitudes(w)) {
                keep.add(largest(flat, n - Math.round(s * n), (int) n));
            }
        }
        return keep;
    }

    private static List<boolean[]> globalKeep(double s, List<Tensor> sources) {
        Tensor[] flats = new Tensor[sources.size()];
        long total = 0;
        try {
            for (int i = 0; i < flats.length; i++) {
                flats[i] = magnitudes(sources.get(i));
                total += sources.get(i).numel();
            }
            if (total > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("MagnitudePruning: " + total + " weights exceed a Java array");
            }
            boolean[] all;
            try (Tensor cat = Indexing.concat(0, flats)) {
                all = largest(cat, total - Math.round(s * total), (int) total);
            }
            List<boolean[]> keep = new ArrayList<>();
            int at = 0;
            for (Tensor w : sources) {
                boolean[] k = new boolean[(int) w.numel()];
                System.arraycopy(all, at, k, 0, k.length);
                at += k.length;
                keep.add(k);
            }
            return keep;
        } finally {
            for (Tensor f : flats) {
                if (f != null) {
                    f.close();
                }
            }
        }
    }

    /** |w| flattened, as float64 on the CPU (top-k there takes lines of any length). */
    private static Tensor magnitudes(Tensor w) {
        try (Tensor a = Elementwise.abs(w); Tensor flat = a.reshape(w.numel())) {
            return flat.to(DType.FLOAT64, Device.CPU);
        }
    }

    /** A keep-mask of the {@code k} largest entries of the 1-d {@code values} (ties to the lower position). */
    private static boolean[] largest(Tensor values, long k, int n) {
        boolean[] keep = new boolean[n];
        if (k <= 0) {
            return keep;
        }
        Tensor[] top = Sparse.topk(values, (int) k, 0, true);
        try (Tensor v = top[0]; Tensor idx = top[1]) {
            for (long i : idx.toLongArray()) {
                keep[(int) i] = true;
            }
        }
        return keep;
    }
}
