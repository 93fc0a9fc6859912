package dev.cortado.quant;

import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.tensor.DType;
import java.util.ArrayList;
import java.util.List;

/**
 * Which layers {@link Quantizer} quantizes and how: the mode (post-training calibration or
 * quantization-aware training), bit widths per layer (mixed precision: rules by module path or
 * type, the last matching rule wins, else the defaults), the calibration of activations, and
 * the QuantNAS noise of QAT. Only {@link Linear} and {@link Conv2d} layers are quantized; weights
 * are symmetric per output channel, activations a uint8 grid per tensor. Immutable; built with
 * {@link #builder()}.
 */
public final class QuantConfig {
    /** Post-training (observers, then {@link Quantizer#calibrate}) or quantization-aware training (LSQ fake-quant). */
    public enum Mode { POST_TRAINING, QUANTIZATION_AWARE }

    /** How post-training calibration sets the activations' range. */
    public enum Calibration {
        /** The overall minimum and maximum. */
        MIN_MAX,
        /** An exponential moving average (0.01) of each batch's extremes. */
        MOVING_AVERAGE,
        /** The {@code percentile} quantiles of a histogram. */
        PERCENTILE,
        /** The clipping range with the smallest expected squared error. */
        MSE
    }

    /** Bit widths of one layer: weights (signed grid, 2 to 8) and input activations (unsigned grid, 2 to 8). */
    public record Bits(int weights, int activations) {
        public Bits {
            if (weights < 2 || weights > 8 || activations < 2 || activations > 8) {
                throw new IllegalArgumentException("QuantConfig.Bits: weights " + weights + ", activations " + activations
                        + ": each must be in [2, 8] (the integer kernels store int8 / uint8)");
            }
        }
    }

    private record Rule(String path, Class<? extends Module> type, Bits bits) {
        boolean matches(String p, Module m) {
            if (path != null) {
                return p.equals(path) || p.startsWith(path + ".");
            }
            return type.isInstance(m);
        }
    }

    private final Mode mode;
    private final Bits defaults;
    private final List<Rule> rules;
    private final Calibration calibration;
    private final double percentile;
    private final double noise;

    private QuantConfig(Builder b) {
        this.mode = b.mode;
        this.defaults = b.defaults;
        this.rules = List.copyOf(b.rules);
        this.calibration = b.calibration;
        this.percentile = b.percentile;
        this.noise = b.noise;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** int8 weights and activations for every Linear and Conv2d, post-training, min-max calibration. */
    public static QuantConfig int8() {
        return builder().build();
    }

    public Mode mode() {
        return mode;
    }

    public Calibration calibration() {
        return calibration;
    }

    /** The fraction of weights that get QuantNAS noise instead of quantization while training (0: none). */
    public double noise() {
        return noise;
    }

    /**
     * The bits for the module at {@code path}, or null when it is not quantized (not a Linear or
     * Conv2d, or skipped by a rule).
     */
    public Bits bitsFor(String path, Module m) {
        if (!(m instanceof Linear) && !(m instanceof Conv2d)) {
            return null;
        }
        Bits out = defaults;
        for (Rule r : rules) {
            if (r.matches(path, m)) {
                out = r.bits();
            }
        }
        return out;
    }

    /** The observer of a layer's input activations on an unsigned grid of {@code bits}. */
    Observer activationObserver(int bits) {
        QuantScheme s = QuantScheme.perTensor(DType.UINT8).withRange(0, (1 << bits) - 1);
        return switch (calibration) {
            case MIN_MAX -> MinMaxObserver.of(s);
            case MOVING_AVERAGE -> MinMaxObserver.of(s).movingAverage(0.01);
            case PERCENTILE -> HistogramObserver.percentile(s, percentile);
            case MSE -> HistogramObserver.mse(s);
        };
    }

    @Override
    public String toString() {
        return "QuantConfig(" + mode + ", default " + defaults + ", " + rules.size() + " rules, " + calibration
                + (calibration == Calibration.PERCENTILE ? " " + percentile : "") + (noise > 0 ? ", noise " + noise : "") + ")";
    }

    /** The choices of a quantization configuration, set one by one. */
    public static final class Builder {
        private Mode mode = Mode.POST_TRAINING;
        private Bits defaults = new Bits(8, 8);
        private final List<Rule> rules = new ArrayList<>();
        private Calibration calibration = Calibration.MIN_MAX;
        private double percentile = 0.9999;
        private double noise;

        /** Post-training quantization (the default). */
        public Builder postTraining() {
            mode = Mode.POST_TRAINING;
            return this;
        }

        /** Quantization-aware training: LSQ fake quantization of weights and inputs. */
        public Builder quantizationAware() {
            mode = Mode.QUANTIZATION_AWARE;
            return this;
        }

        /** Bits of every quantized layer no rule matches (8 and 8 by default). */
        public Builder bits(int weights, int activations) {
            defaults = new Bits(weights, activations);
            return this;
        }

        /** Bits of the module at {@code path} (a dotted module path) and of everything under it. */
        public Builder layer(String path, int weights, int activations) {
            rules.add(new Rule(requirePath(path), null, new Bits(weights, activations)));
            return this;
        }

        /** Bits of every module of {@code type} (Linear or Conv2d, or a subclass). */
        public Builder type(Class<? extends Module> type, int weights, int activations) {
            if (type == null) {
                throw new IllegalArgumentException("QuantConfig.type: null");
            }
            rules.add(new Rule(null, type, new Bits(weights, activations)));
            return this;
        }

        /** Keeps the module at {@code path} (and everything under it) in floating point. */
        public Builder skip(String path) {
            rules.add(new Rule(requirePath(path), null, null));
            return this;
        }

        public Builder calibration(Calibration c) {
            if (c == null) {
                throw new IllegalArgumentException("QuantConfig.calibration: null");
            }
            calibration = c;
            return this;
        }

        /** Percentile calibration at quantile {@code p} in (0.5, 1]. */
        public Builder percentile(double p) {
            if (!(p > 0.5 && p <= 1)) {
                throw new IllegalArgumentException("QuantConfig.percentile: " + p + " is not in (0.5, 1]");
            }
            calibration = Calibration.PERCENTILE;
            percentile = p;
            return this;
        }

        /**
         * QAT with QuantNAS noise: while training, a random {@code fraction} of the weights gets
         * additive uniform noise of one quantization step instead of being quantized.
         */
        public Builder noise(double fraction) {
            if (!(fraction >= 0 && fraction <= 1)) {
                throw new IllegalArgumentException("QuantConfig.noise: " + fraction + " is not in [0, 1]");
            }
            noise = fraction;
            return this;
        }

        private static String requirePath(String path) {
            if (path == null || path.isEmpty()) {
                throw new IllegalArgumentException("QuantConfig: a module path must be non-empty");
            }
            return path;
        }

        public QuantConfig build() {
            return new QuantConfig(this);
        }
    }
}
