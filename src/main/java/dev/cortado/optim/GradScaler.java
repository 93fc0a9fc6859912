package dev.cortado.optim;

import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.Tensor;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * Dynamic loss scaling for float16 training (PyTorch's {@code GradScaler}):
 * <pre>{@code
 * try (Tensor scaled = scaler.scale(loss)) { scaled.backward(); }
 * scaler.unscale(opt);                 // optional: before clipping
 * GradClip.clipByGlobalNorm(params, 1.0);
 * scaler.step(opt);                    // skipped when a gradient has inf/NaN
 * scaler.update();                     // backoff after a skip, growth after growthInterval good steps
 * }</pre>
 * {@link #unscale} multiplies every gradient by {@code 1/scale} in one fused pass that also
 * reports whether any result is inf or NaN. {@link #update()}: after an overflow the scale is
 * multiplied by {@code backoffFactor} and the good-step counter resets; after
 * {@code growthInterval} consecutive good steps it is multiplied by {@code growthFactor}.
 */
public final class GradScaler {
    private double scale;
    private final double growthFactor;
    private final double backoffFactor;
    private final int growthInterval;
    private int goodSteps;
    private boolean foundInfThisStep;
    private final Map<Optimizer, Boolean> unscaled = new IdentityHashMap<>();
    private long skipped;

    private GradScaler(Builder b) {
        this.scale = b.initScale;
        this.growthFactor = b.growthFactor;
        this.backoffFactor = b.backoffFactor;
        this.growthInterval = b.growthInterval;
    }

    /** initScale 65536, growthFactor 2, backoffFactor 0.5, growthInterval 2000 (PyTorch's defaults). */
    public static Builder builder() {
        return new Builder();
    }

    /** The loss-scaling policy (initial scale, growth and back-off factors, growth interval), set one by one. */
    public static final class Builder {
        private double initScale = 65536.0;
        private double growthFactor = 2.0;
        private double backoffFactor = 0.5;
        private int growthInterval = 2000;

        private Builder() {
        }

        public Builder initScale(double v) {
            if (!(v > 0) || Double.isInfinite(v)) {
                throw new IllegalArgumentException("GradScaler: initScale must be finite and > 0, got " + v);
            }
            initScale = v;
            return this;
        }

        public Builder growthFactor(double v) {
            if (!(v > 1) || Double.isInfinite(v)) {
                throw new IllegalArgumentException("GradScaler: growthFactor must be > 1, got " + v);
            }
            growthFactor = v;
            return this;
        }

        public Builder backoffFactor(double v) {
            if (!(v > 0 && v < 1)) {
                throw new IllegalArgumentException("GradScaler: backoffFactor must be in (0, 1), got " + v);
            }
            backoffFactor = v;
            return this;
        }

        public Builder growthInterval(int v) {
            if (v < 1) {
                throw new IllegalArgumentException("GradScaler: growthInterval must be >= 1, got " + v);
            }
            growthInterval = v;
            return this;
        }

        public GradScaler build() {
            return new GradScaler(this);
        }
    }

    public double getScale() {
        return scale;
    }

    /** Steps skipped so far because of inf/NaN gradients. */
    public long skippedSteps() {
        return skipped;
    }

    /** {@code loss * scale}, recorded for autograd (the caller owns the result). */
    public Tensor scale(Tensor loss) {
        return Elementwise.mul(loss, scale);
    }

    /**
     * Divides the gradients of {@code opt}'s parameters by the scale, in place, once per step;
     * returns true when any gradient has an inf or NaN.
     */
    public boolean unscale(Optimizer opt) {
        Boolean done = unscaled.get(opt);
        if (done != null) {
            throw new IllegalStateException("GradScaler.unscale: already called for " + opt.name()
                    + " since the last update()");
        }
        boolean found = OptimKernels.unscaleAndCheck(GradClip.grads(opt.params()), 1.0 / scale);
        unscaled.put(opt, found);
        foundInfThisStep |= found;
        return found;
    }

    /** Unscales (if not done yet) and runs {@code opt.step()} unless a gradient is inf/NaN; true when it stepped. */
    public boolean step(Optimizer opt) {
        Boolean found = unscaled.get(opt);
        if (found == null) {
            unscale(opt);
            found = unscaled.get(opt);
        }
        if (found) {
            skipped++;
            return false;
        }
        opt.step();
        return true;
    }

    /** Adjusts the scale for the next iteration (backoff after an overflow, growth after enough good steps). */
    public void update() {
        if (foundInfThisStep) {
            scale *= backoffFactor;
            goodSteps = 0;
        } else {
            goodSteps++;
            if (goodSteps == growthInterval) {
                scale *= growthFactor;
                goodSteps = 0;
            }
        }
        foundInfThisStep = false;
        unscaled.clear();
    }

    /** Scale and good-step counter, for checkpoints ({@code scale}, {@code growth_tracker}). */
    public Map<String, Double> stateDict() {
        return Map.of("scale", scale, "growth_tracker", (double) goodSteps);
    }

    public void loadStateDict(Map<String, Double> state) {
        Double s = state.get("scale");
        Double g = state.get("growth_tracker");
        if (s == null || g == null || !(s > 0)) {
            throw new IllegalArgumentException("GradScaler.loadStateDict: need 'scale' > 0 and 'growth_tracker', got "
                    + state);
        }
        scale = s;
        goodSteps = g.intValue();
    }
}
