package dev.cortado.graph;

import dev.cortado.distributed.DistributedDataParallel;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * How {@link Graphs#compile} captures and optimizes. Immutable; made with {@link #builder()}.
 * Defaults: {@link Level#DEFAULT}, parameters not frozen, {@link GuardPolicy#RECAPTURE}, at most 8
 * specializations, no verification.
 */
public final class CompileOptions {

    /** Which passes run. */
    public enum Level {
        /** The captured graph as it is. */
        NONE,
        /**
         * Algebraic simplification, common-subexpression elimination, conv + batch-norm folding (with
         * frozen parameters), constant folding, simplification again, dead-code elimination.
         */
        DEFAULT
    }

    /** What a call does whose inputs the captured graphs do not apply to. */
    public enum GuardPolicy {
        /** Capture again for these inputs (logged, with the guard that failed) and keep both. */
        RECAPTURE,
        /** Throw {@link GuardFailedException} naming the guard (a dimension declared dynamic still re-captures). */
        THROW
    }

    /** A dimension of an input that is expected to change, and its symbol. */
    public record DynamicDim(int input, int dim, String symbol) {
    }

    private final Level level;
    private final boolean freezeParameters;
    private final GuardPolicy guardPolicy;
    private final int maxSpecializations;
    private final boolean verify;
    private final List<DynamicDim> dynamicDims;
    private final Map<Tensor, String> parameters;
    private final double maxGradNorm;
    private final boolean fuseElementwise;
    private final boolean recomputeActivations;
    private final boolean propagateLayout;
    private final long memoryBudget;
    private final DistributedDataParallel dataParallel;
    private final boolean returnModelOutput;
    private final boolean prepackWeights;

    private CompileOptions(Builder b) {
        this.prepackWeights = b.prepackWeights;
        this.returnModelOutput = b.returnModelOutput;
        this.memoryBudget = b.memoryBudget;
        this.dataParallel = b.dataParallel;
        this.maxGradNorm = b.maxGradNorm;
        this.fuseElementwise = b.fuseElementwise;
        this.recomputeActivations = b.recomputeActivations;
        this.propagateLayout = b.propagateLayout;
        this.level = b.level;
        this.freezeParameters = b.freezeParameters;
        this.guardPolicy = b.guardPolicy;
        this.maxSpecializations = b.maxSpecializations;
        this.verify = b.verify;
        this.dynamicDims = List.copyOf(b.dynamicDims);
        this.parameters = new IdentityHashMap<>(b.parameters);
    }

    public static CompileOptions defaults() {
        return builder().build();
    }

    public static Builder builder() {
        return new Builder();
    }

    public Level level() {
        return level;
    }

    public boolean freezeParameters() {
        return freezeParameters;
    }

    public GuardPolicy guardPolicy() {
        return guardPolicy;
    }

    public int maxSpecializations() {
        return maxSpecializations;
    }

    public boolean verify() {
        return verify;
    }

    public List<DynamicDim> dynamicDims() {
        return dynamicDims;
    }

    /**
     * Training steps ({@link Graphs#compileTrainingStep}): the global L2 norm the gradients are
     * clipped to before the optimizer update, or {@code +Infinity} (the default) for no clipping.
     */
    public double maxGradNorm() {
        return maxGradNorm;
    }

    /** Whether {@link ElementwiseFusion} runs (at {@link Level#DEFAULT}; on by default). */
    public boolean fuseElementwise() {
        return fuseElementwise;
    }

    /**
     * Whether {@link ActivationCheckpointing#free()} runs (at {@link Level#DEFAULT}; on by default):
     * cheap activations recomputed where nothing lives longer for it (less memory for one more pass
     * over memory per recomputed node).
     */
    public boolean recomputeActivations() {
        return recomputeActivations;
    }

    /**
     * Whether {@link WeightPrepacking} packs the weights of convolutions once at compile time (at
     * {@link Level#DEFAULT}; on by default; it applies to constant weights and, with
     * {@link #freezeParameters}, parameters).
     */
    public boolean prepackWeights() {
        return prepackWeights;
    }

    /** Whether {@link LayoutPropagation} keeps chains of convolutions in NHWC (at {@link Level#DEFAULT}; on by default). */
    public boolean propagateLayout() {
        return propagateLayout;
    }

    /**
     * The planned peak memory (bytes) above which {@link ActivationCheckpointing} recomputes cheap
     * activations instead of keeping them; {@code Long.MAX_VALUE} (the default) for no budget.
     */
    public long memoryBudget() {
        return memoryBudget;
    }

    /**
     * Training steps: the data-parallel wrapper whose processes average the gradients after the
     * compiled backward and before the optimizer update ({@link DistributedDataParallel#synchronizeGradients()}),
     * or null (the default) for a single process.
     */
    public DistributedDataParallel dataParallel() {
        return dataParallel;
    }

    /**
     * Training steps: whether the compiled step also returns the model's output
     * ({@link TrainingStep#runWithOutput}, for a training accuracy or any other metric of the
     * batch); off by default, where the output is a temporary whose memory the plan reuses.
     */
    public boolean returnModelOutput() {
        return returnModelOutput;
    }

    /** Tensors read by reference, with their names (a copy). */
    public Map<Tensor, String> parameters() {
        return new IdentityHashMap<>(parameters);
    }

    /** Builds {@link CompileOptions}. */
    public static final class Builder {
        private Level level = Level.DEFAULT;
        private boolean freezeParameters;
        private GuardPolicy guardPolicy = GuardPolicy.RECAPTURE;
        private int maxSpecializations = 8;
        private boolean verify;
        private final List<DynamicDim> dynamicDims = new ArrayList<>();
        private final Map<Tensor, String> parameters = new IdentityHashMap<>();
        private double maxGradNorm = Double.POSITIVE_INFINITY;
        private boolean fuseElementwise = true;
        private boolean recomputeActivations = true;
        private boolean propagateLayout = true;
        private long memoryBudget = Long.MAX_VALUE;
        private DistributedDataParallel dataParallel;
        private boolean returnModelOutput;
        private boolean prepackWeights = true;

        private Builder() {
        }

        /**
         * A memory budget in bytes for the planned peak: above it, activation checkpointing
         * recomputes cheap values where they are read again instead of keeping them
         * ({@link ActivationCheckpointing}); a budget is a target, not a guarantee.
         */
        public Builder memoryBudget(long bytes) {
            if (bytes <= 0) {
                throw new IllegalArgumentException("memoryBudget must be positive, got " + bytes);
            }
            memoryBudget = bytes;
            return this;
        }

        /**
         * A copy of {@code o}'s settings (a starting point for changing a few). The parameters map
         * is not copied.
         */
        public Builder from(CompileOptions o) {
            level = o.level;
            freezeParameters = o.freezeParameters;
            guardPolicy = o.guardPolicy;
            maxSpecializations = o.maxSpecializations;
            verify = o.verify;
            dynamicDims.clear();
            dynamicDims.addAll(o.dynamicDims);
            maxGradNorm = o.maxGradNorm;
            fuseElementwise = o.fuseElementwise;
            recomputeActivations = o.recomputeActivations;
            propagateLayout = o.propagateLayout;
            memoryBudget = o.memoryBudget;
            dataParallel = o.dataParallel;
            returnModelOutput = o.returnModelOutput;
            prepackWeights = o.prepackWeights;
            return this;
        }

        /**
         * Training steps: clip the gradients to global L2 norm {@code norm} before the optimizer
         * update (as {@code GradClip.clipByGlobalNorm}); {@code +Infinity} turns clipping off.
         */
        public Builder maxGradNorm(double norm) {
            if (!(norm > 0)) {
                throw new IllegalArgumentException("maxGradNorm must be > 0 (or +Infinity for none), got " + norm);
            }
            maxGradNorm = norm;
            return this;
        }

        /**
         * Training steps: average the gradients over the processes of {@code ddp} (bucketed, and
         * compressed if {@code ddp} compresses) after the compiled backward, before clipping and the
         * optimizer update, so every replica takes the same step as under eager
         * {@link DistributedDataParallel#backward}. {@code ddp} must wrap the trained model; null: off.
         */
        public Builder dataParallel(DistributedDataParallel ddp) {
            dataParallel = ddp;
            return this;
        }

        /**
         * Training steps: the compiled step also returns the model's output, read with
         * {@link TrainingStep#runWithOutput} (one more graph output; off by default).
         */
        public Builder returnModelOutput(boolean on) {
            returnModelOutput = on;
            return this;
        }

        /** Fuse chains of elementwise ops into one kernel ({@link ElementwiseFusion}); on by default. */
        public Builder fuseElementwise(boolean on) {
            fuseElementwise = on;
            return this;
        }

        /**
         * Recompute cheap activations in the backward when the values they are made from are live
         * there anyway ({@link ActivationCheckpointing#free()}); on by default. Off: the planned
         * peak of the character model's step goes from 56.0 to 83.2 MB, for about 2% of its time
         * (docs/benchmarks.md, run L). A memory budget recomputes regardless.
         */
        public Builder recomputeActivations(boolean on) {
            recomputeActivations = on;
            return this;
        }

        /**
         * Pack the weights of convolutions once at compile time where their kernel has a packed
         * layout ({@link WeightPrepacking}: DIRECT_NHWC and Winograd, float32 on the CPU, constant
         * or frozen weights); on by default.
         */
        public Builder prepackWeights(boolean on) {
            prepackWeights = on;
            return this;
        }

        /** Keep chains of convolutions in NHWC, transposing at their ends ({@link LayoutPropagation}); on by default. */
        public Builder propagateLayout(boolean on) {
            propagateLayout = on;
            return this;
        }

        public Builder level(Level l) {
            level = l;
            return this;
        }

        /**
         * Treat parameters as constants when optimizing (inference only: the compiled function
         * then does not see later updates of the parameters).
         */
        public Builder freezeParameters(boolean on) {
            freezeParameters = on;
            return this;
        }

        public Builder onGuardFailure(GuardPolicy p) {
            guardPolicy = p;
            return this;
        }

        /** How many captures a function keeps (the oldest is dropped beyond it). */
        public Builder maxSpecializations(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("maxSpecializations must be at least 1, got " + n);
            }
            maxSpecializations = n;
            return this;
        }

        /** Run the {@link Verifier} on the captured graph and after every pass. */
        public Builder verify(boolean on) {
            verify = on;
            return this;
        }

        /** Dimension {@code dim} of input {@code input} changes from call to call (a batch size): named {@code symbol}. */
        public Builder dynamicDim(int input, int dim, String symbol) {
            dynamicDims.add(new DynamicDim(input, dim, symbol));
            return this;
        }

        /** Tensors the function reads by reference (besides a compiled Module's own), with their names. */
        public Builder parameters(Map<String, Tensor> named) {
            named.forEach((name, t) -> parameters.put(t, name));
            return this;
        }

        public CompileOptions build() {
            return new CompileOptions(this);
        }
    }
}
