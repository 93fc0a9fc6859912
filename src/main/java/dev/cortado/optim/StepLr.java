package dev.cortado.optim;

/**
 * PyTorch's StepLR: {@code factor(step) = gamma ^ floor(step / stepSize)} (decays by
 * {@code gamma} every {@code stepSize} steps or epochs).
 */
public record StepLr(long stepSize, double gamma) implements LrSchedule {
    public StepLr {
        if (stepSize < 1) {
            throw new IllegalArgumentException("StepLr: stepSize must be >= 1, got " + stepSize);
        }
        if (!(gamma >= 0) || Double.isInfinite(gamma)) {
            throw new IllegalArgumentException("StepLr: gamma must be finite and >= 0, got " + gamma);
        }
    }

    @Override
    public double factor(long step) {
        if (step < 0) {
            throw new IllegalArgumentException("StepLr: step must be >= 0, got " + step);
        }
        return Math.pow(gamma, Math.floorDiv(step, stepSize));
    }
}
