package dev.cortado.optim;

/**
 * A learning-rate schedule: a pure function from the step number to a factor of each group's
 * initial rate ({@link ParamGroup#initialLr()}). Call {@link #apply} before each
 * {@link Optimizer#step()} (or once per epoch for epoch-based schedules such as {@link StepLr}):
 *
 * <pre>{@code
 * LrSchedule sched = CosineWithWarmup.of(500, 10_000);
 * for (long step = 0; step < 10_000; step++) {
 *     sched.apply(opt, step);   // lr = initialLr * sched.factor(step)
 *     ... loss.backward(); opt.step(); opt.zeroGrad();
 * }
 * }</pre>
 * Being pure (no hidden counter), a schedule resumes from a checkpoint by passing the saved step.
 */
@FunctionalInterface
public interface LrSchedule {
    /** The multiplier of the initial learning rate at {@code step} (0-based). */
    double factor(long step);

    /** The learning rate at {@code step} for a group whose initial rate is {@code initialLr}. */
    default double lr(long step, double initialLr) {
        return initialLr * factor(step);
    }

    /** Sets every group's lr to {@code initialLr * factor(step)}. */
    default void apply(Optimizer optimizer, long step) {
        double f = factor(step);
        for (ParamGroup g : optimizer.groups()) {
            g.lr(g.initialLr() * f);
        }
    }
}
