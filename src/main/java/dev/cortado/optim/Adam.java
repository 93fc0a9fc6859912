package dev.cortado.optim;

import dev.cortado.tensor.Tensor;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Adam and AdamW with PyTorch's semantics ({@code torch.optim.Adam} / {@code AdamW}), one fused
 * pass per batch of parameters (28 bytes moved per float32 parameter):
 * {@code m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)} with {@code t} the parameter's step
 * count. Weight decay is added to the gradient ({@code g += wd*p}, Adam) or decoupled
 * ({@code p *= 1 - lr*wd} before the update, AdamW). {@code amsgrad} keeps the running maximum of
 * {@code v} and uses it in the denominator.
 *
 * <pre>{@code
 * Adam adam  = Adam.builder().lr(1e-3).betas(0.9, 0.999).build(params);
 * Adam adamW = Adam.adamW().lr(3e-4).weightDecay(0.1).buildGroups(List.of(
 *         ParamGroup.of(weights), ParamGroup.of(biasesAndNorms).weightDecay(0)));
 * }</pre>
 */
public final class Adam extends Optimizer {
    private final double beta1;
    private final double beta2;
    private final double eps;
    private final boolean decoupled;
    private final boolean amsgrad;

    private Adam(Builder b, List<ParamGroup> groups) {
        super(b.decoupled ? "AdamW" : "Adam", groups, b.lr, b.weightDecay);
        this.beta1 = b.beta1;
        this.beta2 = b.beta2;
        this.eps = b.eps;
        this.decoupled = b.decoupled;
        this.amsgrad = b.amsgrad;
    }

    /** Adam: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0 (added to the gradient). */
    public static Builder builder() {
        return new Builder(false, 0);
    }

    /** AdamW: as {@link #builder()} with decoupled weight decay, default 0.01 (PyTorch's AdamW). */
    public static Builder adamW() {
        return new Builder(true, 0.01);
    }

    /** The hyper-parameters of Adam/AdamW, set one by one. */
    public static final class Builder {
        private double lr = 1e-3;
        private double beta1 = 0.9;
        private double beta2 = 0.999;
        private double eps = 1e-8;
        private double weightDecay;
        private boolean decoupled;
        private boolean amsgrad;

        private Builder(boolean decoupled, double weightDecay) {
            this.decoupled = decoupled;
            this.weightDecay = weightDecay;
        }

        public Builder lr(double v) {
            requireNonNegative("Adam lr", v);
            lr = v;
            return this;
        }

        public Builder betas(double b1, double b2) {
            requireRange("Adam", "beta1", b1, 0, 1);
            requireRange("Adam", "beta2", b2, 0, 1);
            beta1 = b1;
            beta2 = b2;
            return this;
        }

        public Builder eps(double v) {
            requireNonNegative("Adam eps", v);
            eps = v;
            return this;
        }

        public Builder weightDecay(double v) {
            requireNonNegative("Adam weightDecay", v);
            weightDecay = v;
            return this;
        }

        /** True: AdamW's decoupled weight decay; false: Adam's L2 term added to the gradient. */
        public Builder decoupledWeightDecay(boolean v) {
            decoupled = v;
            return this;
        }

        public Builder amsgrad(boolean v) {
            amsgrad = v;
            return this;
        }

        public Adam build(List<Tensor> params) {
            return new Adam(this, List.of(ParamGroup.of(params)));
        }

        public Adam buildGroups(List<ParamGroup> groups) {
            return new Adam(this, groups);
        }
    }

    @Override
    protected List<String> stateNames() {
        return amsgrad ? List.of("exp_avg", "exp_avg_sq", "max_exp_avg_sq") : List.of("exp_avg", "exp_avg_sq");
    }

    @Override
    protected Map<String, Double> options() {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("beta1", beta1);
        m.put("beta2", beta2);
        m.put("eps", eps);
        m.put("decoupled_weight_decay", decoupled ? 1.0 : 0.0);
        m.put("amsgrad", amsgrad ? 1.0 : 0.0);
        return m;
    }

    @Override
    protected void update(ParamGroup group, Batch b) {
        var c = OptimKernels.AdamCoef.pytorch(group.lr(), beta1, beta2, eps, group.weightDecay(), decoupled, b.step());
        MultiTensor.adam(name() + ".step(group " + b.groupIndex() + ")", b.device(), b.paramType(), b.gradType(),
                b.params(), b.grads(), b.state(0), b.state(1), amsgrad ? b.state(2) : null, c);
    }
}
