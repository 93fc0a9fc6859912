package dev.cortado.optim;

import dev.cortado.tensor.Tensor;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Adagrad with PyTorch's semantics ({@code torch.optim.Adagrad}): {@code g += wd*p; h += g^2;
 * p -= clr * g / (sqrt(h) + eps)} with {@code clr = lr / (1 + (t-1)*lrDecay)}; the accumulator
 * {@code h} ("sum") starts at {@code initialAccumulatorValue}. One fused pass (20 bytes per
 * float32 parameter).
 */
public final class Adagrad extends Optimizer {
    private final double lrDecay;
    private final double eps;
    private final double initialAccumulator;

    private Adagrad(Builder b, List<ParamGroup> groups) {
        super("Adagrad", groups, b.lr, b.weightDecay);
        this.lrDecay = b.lrDecay;
        this.eps = b.eps;
        this.initialAccumulator = b.initialAccumulator;
    }

    /** lr 1e-2, lrDecay 0, weight decay 0, initial accumulator 0, eps 1e-10 (PyTorch's defaults). */
    public static Builder builder() {
        return new Builder();
    }

    /** The hyper-parameters of Adagrad, set one by one. */
    public static final class Builder {
        private double lr = 1e-2;
        private double lrDecay;
        private double weightDecay;
        private double initialAccumulator;
        private double eps = 1e-10;

        private Builder() {
        }

        public Builder lr(double v) {
            requireNonNegative("Adagrad lr", v);
            lr = v;
            return this;
        }

        public Builder lrDecay(double v) {
            requireNonNegative("Adagrad lrDecay", v);
            lrDecay = v;
            return this;
        }

        public Builder weightDecay(double v) {
            requireNonNegative("Adagrad weightDecay", v);
            weightDecay = v;
            return this;
        }

        public Builder initialAccumulatorValue(double v) {
            requireNonNegative("Adagrad initialAccumulatorValue", v);
            initialAccumulator = v;
            return this;
        }

        public Builder eps(double v) {
            requireNonNegative("Adagrad eps", v);
            eps = v;
            return this;
        }

        public Adagrad build(List<Tensor> params) {
            return new Adagrad(this, List.of(ParamGroup.of(params)));
        }

        public Adagrad buildGroups(List<ParamGroup> groups) {
            return new Adagrad(this, groups);
        }
    }

    @Override
    protected List<String> stateNames() {
        return List.of("sum");
    }

    @Override
    protected double initialStateValue(String stateName) {
        return initialAccumulator;
    }

    @Override
    protected Map<String, Double> options() {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("lr_decay", lrDecay);
        m.put("eps", eps);
        m.put("initial_accumulator_value", initialAccumulator);
        return m;
    }

    @Override
    protected void update(ParamGroup group, Batch b) {
        var c = OptimKernels.AdagradCoef.pytorch(group.lr(), lrDecay, group.weightDecay(), eps, b.step());
        MultiTensor.adagrad(name() + ".step(group " + b.groupIndex() + ")", b.device(), b.paramType(), b.gradType(),
                b.params(), b.grads(), b.state(0), c);
    }
}
