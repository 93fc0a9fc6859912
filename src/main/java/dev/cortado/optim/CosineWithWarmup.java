package dev.cortado.optim;

/**
 * Linear warmup then cosine decay (Hugging Face's {@code get_cosine_schedule_with_warmup} with
 * half a cosine period, plus an optional floor):
 * <ul>
 *   <li>{@code step < warmupSteps}: {@code factor = step / warmupSteps} (0 at step 0);</li>
 *   <li>then, with {@code progress = (step - warmupSteps) / (totalSteps - warmupSteps)} clamped to
 *       [0, 1]: {@code factor = minFactor + (1 - minFactor) * 0.5 * (1 + cos(pi * progress))};</li>
 *   <li>from {@code totalSteps} on the factor stays at {@code minFactor}.</li>
 * </ul>
 */
public record CosineWithWarmup(long warmupSteps, long totalSteps, double minFactor) implements LrSchedule {
    public CosineWithWarmup {
        if (warmupSteps < 0 || totalSteps <= warmupSteps) {
            throw new IllegalArgumentException("CosineWithWarmup: need 0 <= warmupSteps < totalSteps, got warmup "
                    + warmupSteps + ", total " + totalSteps);
        }
        if (!(minFactor >= 0 && minFactor <= 1)) {
            throw new IllegalArgumentException("CosineWithWarmup: minFactor must be in [0, 1], got " + minFactor);
        }
    }

    /** Decays to 0. */
    public static CosineWithWarmup of(long warmupSteps, long totalSteps) {
        return new CosineWithWarmup(warmupSteps, totalSteps, 0);
    }

    @Override
    public double factor(long step) {
        if (step < 0) {
            throw new IllegalArgumentException("CosineWithWarmup: step must be >= 0, got " + step);
        }
        if (step < warmupSteps) {
            return (double) step / warmupSteps;
        }
        double progress = Math.min(1.0, (double) (step - warmupSteps) / (totalSteps - warmupSteps));
        return minFactor + (1 - minFactor) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }
}
