package dev.cortado.optim;

import dev.cortado.tensor.Tensor;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and (L2)
 * weight decay, with PyTorch's {@code torch.optim.SGD} semantics:
 * {@code g += wd*p; b = momentum*b + (1-dampening)*g} (the first step sets {@code b = g});
 * {@code d = nesterov ? g + momentum*b : b; p -= lr*d}. One fused pass per batch of parameters.
 *
 * <pre>{@code
 * Sgd opt = Sgd.builder().lr(0.1).momentum(0.9).nesterov(true).weightDecay(5e-4).build(model.parameters());
 * }</pre>
 */
public final class Sgd extends Optimizer {
    private final double momentum;
    private final double dampening;
    private final boolean nesterov;

    private Sgd(Builder b, List<ParamGroup> groups) {
        super("Sgd", groups, b.lr, b.weightDecay);
        this.momentum = b.momentum;
        this.dampening = b.dampening;
        this.nesterov = b.nesterov;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Options; {@code lr} and {@code weightDecay} are defaults that each {@link ParamGroup} may override. */
    public static final class Builder {
        private double lr = 1e-3;
        private double momentum;
        private double dampening;
        private boolean nesterov;
        private double weightDecay;

        private Builder() {
        }

        public Builder lr(double v) {
            requireNonNegative("Sgd lr", v);
            lr = v;
            return this;
        }

        public Builder momentum(double v) {
            requireRange("Sgd", "momentum", v, 0, 1.0000001);
            momentum = v;
            return this;
        }

        public Builder dampening(double v) {
            requireRange("Sgd", "dampening", v, 0, 1.0000001);
            dampening = v;
            return this;
        }

        public Builder nesterov(boolean v) {
            nesterov = v;
            return this;
        }

        public Builder weightDecay(double v) {
            requireNonNegative("Sgd weightDecay", v);
            weightDecay = v;
            return this;
        }

        public Sgd build(List<Tensor> params) {
            return make(List.of(ParamGroup.of(params)));
        }

        public Sgd buildGroups(List<ParamGroup> groups) {
            return make(groups);
        }

        private Sgd make(List<ParamGroup> groups) {
            if (nesterov && (momentum <= 0 || dampening != 0)) {
                throw new IllegalArgumentException("Sgd: Nesterov momentum requires momentum > 0 and dampening 0, got"
                        + " momentum " + momentum + ", dampening " + dampening);
            }
            return new Sgd(this, groups);
        }
    }

    @Override
    protected List<String> stateNames() {
        return momentum != 0 ? List.of("momentum_buffer") : List.of();
    }

    @Override
    protected Map<String, Double> options() {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("momentum", momentum);
        m.put("dampening", dampening);
        m.put("nesterov", nesterov ? 1.0 : 0.0);
        return m;
    }

    @Override
    protected void update(ParamGroup group, Batch b) {
        var c = OptimKernels.SgdCoef.pytorch(group.lr(), momentum, dampening, group.weightDecay(), nesterov, b.step());
        MultiTensor.sgd(name() + ".step(group " + b.groupIndex() + ")", b.device(), b.paramType(), b.gradType(),
                b.params(), b.grads(), momentum != 0 ? b.state(0) : null, c);
    }
}
