package dev.cortado.graph;

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

    private CompileOptions(Builder b) {
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

        private Builder() {
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
