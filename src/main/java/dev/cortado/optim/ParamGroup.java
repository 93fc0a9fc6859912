package dev.cortado.optim;

import dev.cortado.tensor.Tensor;
import java.util.Arrays;
import java.util.List;

/**
 * A group of parameters that share a learning rate and a weight decay (PyTorch's param_groups).
 * Built with {@link #of}, optionally overriding the optimizer's defaults
 * ({@code ParamGroup.of(biases).weightDecay(0)}); once an optimizer owns the group, {@link #lr()}
 * is the live rate that schedules change and {@link #initialLr()} the rate they scale.
 * Hyper-parameters other than these two (betas, momentum, eps...) are per optimizer.
 */
public final class ParamGroup {
    private final List<Tensor> params;
    private double lr = Double.NaN;
    private double initialLr = Double.NaN;
    private double weightDecay = Double.NaN;

    private ParamGroup(List<Tensor> params) {
        for (int i = 0; i < params.size(); i++) {
            if (params.get(i) == null) {
                throw new IllegalArgumentException("ParamGroup: parameter " + i + " is null");
            }
        }
        this.params = List.copyOf(params);
    }

    public static ParamGroup of(List<Tensor> params) {
        return new ParamGroup(params);
    }

    public static ParamGroup of(Tensor... params) {
        return new ParamGroup(Arrays.asList(params));
    }

    /** Sets this group's learning rate (before the optimizer is built: overrides its default). */
    public ParamGroup lr(double value) {
        Optimizer.requireNonNegative("lr", value);
        this.lr = value;
        return this;
    }

    /** Sets this group's weight decay (before the optimizer is built: overrides its default). */
    public ParamGroup weightDecay(double value) {
        Optimizer.requireNonNegative("weightDecay", value);
        this.weightDecay = value;
        return this;
    }

    /** Sets the rate schedules scale ({@link LrSchedule#apply}); defaults to the first lr. */
    public ParamGroup initialLr(double value) {
        Optimizer.requireNonNegative("initialLr", value);
        this.initialLr = value;
        return this;
    }

    public List<Tensor> params() {
        return params;
    }

    public double lr() {
        return lr;
    }

    public double initialLr() {
        return initialLr;
    }

    public double weightDecay() {
        return weightDecay;
    }

    /** Fills unset values from the optimizer's defaults. */
    void resolve(double defaultLr, double defaultWeightDecay) {
        if (Double.isNaN(lr)) {
            lr = defaultLr;
        }
        if (Double.isNaN(weightDecay)) {
            weightDecay = defaultWeightDecay;
        }
        if (Double.isNaN(initialLr)) {
            initialLr = lr;
        }
    }

    @Override
    public String toString() {
        return "ParamGroup(" + params.size() + " params, lr " + lr + ", weight decay " + weightDecay + ")";
    }
}
