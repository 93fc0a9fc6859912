package dev.cortado.nn;

import dev.cortado.nn.functional.F;
import dev.cortado.tensor.Tensor;

/**
 * {@code y = x W^T + b}: x [..., in], weight [out, in], bias [out]. Initialised as PyTorch:
 * weight and bias U(-1/sqrt(in), 1/sqrt(in)).
 */
public class Linear extends Module {
    private final long inFeatures;
    private final long outFeatures;

    public Linear(long inFeatures, long outFeatures) {
        this(inFeatures, outFeatures, true, ParamOptions.defaults());
    }

    public Linear(long inFeatures, long outFeatures, boolean bias, ParamOptions o) {
        if (inFeatures <= 0 || outFeatures <= 0) {
            throw new IllegalArgumentException("Linear: features must be positive, got in=" + inFeatures + ", out="
                    + outFeatures);
        }
        this.inFeatures = inFeatures;
        this.outFeatures = outFeatures;
        registerParameter("weight", unscoped(() ->
                Init.torchDefaultWeight(Tensor.empty(o.dtype(), o.device(), outFeatures, inFeatures), o.generator())));
        registerParameter("bias", bias ? unscoped(() -> Init.torchDefaultBias(
                Tensor.empty(o.dtype(), o.device(), outFeatures), inFeatures, o.generator())) : null);
    }

    public Tensor weight() {
        return parameter("weight");
    }

    /** The bias, or null. */
    public Tensor bias() {
        return parameter("bias");
    }

    public long inFeatures() {
        return inFeatures;
    }

    public long outFeatures() {
        return outFeatures;
    }

    @Override
    public Tensor forward(Tensor x) {
        return F.linear(x, weight(), bias());
    }

    @Override
    protected String extraRepr() {
        return "in=" + inFeatures + ", out=" + outFeatures + ", bias=" + (bias() != null);
    }
}
