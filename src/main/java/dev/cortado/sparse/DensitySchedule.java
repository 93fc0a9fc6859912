package dev.cortado.sparse;

import java.util.Arrays;

/**
 * The fraction of each gradient that {@link DeepGradientCompression} sends at a given step
 * (counted from 0). Deep Gradient Compression warms the density up: it starts dense-ish and
 * shrinks it exponentially over the first epochs, so that the early, fast-changing gradients
 * are not held back in the residual for long.
 *
 * <pre>{@code
 * // the paper's warm-up: 25%, 6.25%, 1.5625%, 0.4%, then 0.1% from the fifth epoch on
 * DensitySchedule s = DensitySchedule.warmup(stepsPerEpoch, 0.25, 0.0625, 0.015625, 0.004, 0.001);
 * }</pre>
 */
@FunctionalInterface
public interface DensitySchedule {
    /** The density in (0, 1] used at {@code step} (0-based). */
    double density(long step);

    /** The same density at every step. */
    static DensitySchedule constant(double density) {
        requireDensity(density);
        return step -> density;
    }

    /**
     * {@code densities[i]} for steps {@code [i*stepsPerStage, (i+1)*stepsPerStage)}; the last
     * density holds from then on.
     */
    static DensitySchedule warmup(long stepsPerStage, double... densities) {
        if (stepsPerStage < 1) {
            throw new IllegalArgumentException("DensitySchedule.warmup: stepsPerStage must be >= 1, got " + stepsPerStage);
        }
        if (densities.length == 0) {
            throw new IllegalArgumentException("DensitySchedule.warmup: no densities given");
        }
        double[] d = densities.clone();
        for (double v : d) {
            requireDensity(v);
        }
        return new DensitySchedule() {
            @Override
            public double density(long step) {
                return d[(int) Math.min(d.length - 1, Math.max(0, step) / stepsPerStage)];
            }

            @Override
            public String toString() {
                return "warmup(" + stepsPerStage + " steps per stage, " + Arrays.toString(d) + ")";
            }
        };
    }

    private static void requireDensity(double density) {
        if (!(density > 0 && density <= 1)) {
            throw new IllegalArgumentException("DensitySchedule: density must be in (0, 1], got " + density);
        }
    }
}
