package dev.cortado.optim;

/**
 * PyTorch's OneCycleLR (two phases, cosine annealing; {@code three_phase=False}), as a factor of
 * the maximum rate — the groups' initial lr is the cycle's {@code max_lr}:
 * <ul>
 *   <li>start at {@code 1/divFactor}, anneal up to 1 over steps {@code [0, pctStart*totalSteps - 1]};</li>
 *   <li>anneal from 1 down to {@code 1/(divFactor*finalDivFactor)} at step {@code totalSteps - 1};</li>
 *   <li>cosine annealing between phase ends: {@code end + (start - end)/2 * (1 + cos(pi * pct))}, pct the
 *       fraction of the phase done: {@code (step - phaseStart) / (phaseEnd - phaseStart)}.</li>
 * </ul>
 * Steps at or past {@code totalSteps} are an error, as in PyTorch. PyTorch also cycles the
 * momentum (beta1) inversely; that part is not implemented here.
 */
public record OneCycle(long totalSteps, double pctStart, double divFactor, double finalDivFactor) implements LrSchedule {
    public OneCycle {
        if (totalSteps < 2) {
            throw new IllegalArgumentException("OneCycle: totalSteps must be >= 2, got " + totalSteps);
        }
        if (!(pctStart > 0 && pctStart < 1)) {
            throw new IllegalArgumentException("OneCycle: pctStart must be in (0, 1), got " + pctStart);
        }
        if (!(divFactor > 0) || !(finalDivFactor > 0)) {
            throw new IllegalArgumentException("OneCycle: divFactor and finalDivFactor must be > 0, got " + divFactor
                    + ", " + finalDivFactor);
        }
    }

    /** PyTorch's defaults: pctStart 0.3, divFactor 25, finalDivFactor 1e4. */
    public static OneCycle of(long totalSteps) {
        return new OneCycle(totalSteps, 0.3, 25, 1e4);
    }

    @Override
    public double factor(long step) {
        if (step < 0 || step >= totalSteps) {
            throw new IllegalArgumentException("OneCycle: step " + step + " is outside [0, " + totalSteps + ")");
        }
        double initial = 1 / divFactor;
        double min = initial / finalDivFactor;
        double end1 = pctStart * totalSteps - 1;
        double end2 = totalSteps - 1;
        if (step <= end1) {
            return end1 <= 0 ? initial : anneal(initial, 1.0, step / end1);
        }
        return anneal(1.0, min, (step - end1) / (end2 - end1));
    }

    private static double anneal(double start, double end, double pct) {
        return end + (start - end) / 2.0 * (Math.cos(Math.PI * pct) + 1);
    }
}
