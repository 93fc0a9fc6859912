package dev.cortado.quant;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Init;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.functional.F;
import dev.cortado.tensor.Tensor;

/**
 * A fully connected layer with binary weights (and, by default, binary inputs), as in XNOR-Net:
 * {@code y = alpha (sign(x) sign(W)^T) + b} with {@code alpha[j] = mean |W[j, :]|} per output.
 * The float weights are the trained latent values. While training (a gradient is recorded) the
 * signs go through {@link Binary#signSte} (straight-through, clipped to {@code |v| <= 1}) and the product
 * is a float32 matmul of +-1 values, so every parameter gets its gradient (alpha too, through
 * mean |W|); otherwise the inputs and weights are bit-packed and multiplied by the XNOR + popcount
 * kernel ({@link Binary#matmul}), which gives the same values (the +-1 sums are exact in both).
 * With {@code binaryInputs} false the inputs stay real: {@code y = alpha (x sign(W)^T) + b}.
 * {@link BinaryWeights} chooses how the weights become signs (XNOR-Net's sign, or BiPer's square
 * wave {@code sign(sin(omega W))}) and their scale alpha.
 */
public final class BinaryLinear extends Module {
    private final long inFeatures;
    private final long outFeatures;
    private final boolean binaryInputs;
    private final BinaryWeights weights;

    /** XNOR-Net weights and binary inputs, with a bias. */
    public BinaryLinear(long inFeatures, long outFeatures) {
        this(inFeatures, outFeatures, true, true, ParamOptions.defaults());
    }

    /** XNOR-Net weights ({@link BinaryWeights#xnor()}). */
    public BinaryLinear(long inFeatures, long outFeatures, boolean bias, boolean binaryInputs, ParamOptions o) {
        this(inFeatures, outFeatures, bias, binaryInputs, BinaryWeights.xnor(), o);
    }

    /** The layer with the given binarizer; the latent weights start as that binarizer says. */
    public BinaryLinear(long inFeatures, long outFeatures, boolean bias, boolean binaryInputs, BinaryWeights weights,
                        ParamOptions o) {
        if (inFeatures <= 0 || outFeatures <= 0) {
            throw new IllegalArgumentException("BinaryLinear: features must be positive, got in=" + inFeatures + ", out="
                    + outFeatures);
        }
        this.inFeatures = inFeatures;
        this.outFeatures = outFeatures;
        this.binaryInputs = binaryInputs;
        this.weights = java.util.Objects.requireNonNull(weights, "weights");
        registerParameter("weight", unscoped(() ->
                weights.init(Tensor.empty(o.dtype(), o.device(), outFeatures, inFeatures), o.generator())));
        registerParameter("bias", bias ? unscoped(() -> Init.torchDefaultBias(
                Tensor.empty(o.dtype(), o.device(), outFeatures), inFeatures, o.generator())) : null);
    }

    /** The latent float weights {@code [out, in]}. */
    public Tensor weight() {
        return parameter("weight");
    }

    /** The bias {@code [out]}, or null. */
    public Tensor bias() {
        return parameter("bias");
    }

    /** Whether the inputs are binarized too (else they stay real). */
    public boolean binaryInputs() {
        return binaryInputs;
    }

    /** How the weights become signs. */
    public BinaryWeights binaryWeights() {
        return weights;
    }

    /** alpha [out]: the binarizer's scale of each row (differentiable). */
    Tensor alpha() {
        return weights.alpha(weight(), 1);
    }

    @Override
    public Tensor forward(Tensor x) {
        boolean recording = Autograd.isGradEnabled() && (weight().requiresGrad() || x.requiresGrad());
        if (recording || !binaryInputs) {
            Tensor s;
            try (Tensor wb = weights.signs(weight()); Tensor xb = binaryInputs ? Binary.signSte(x) : null;
                 Tensor p = F.linear(xb == null ? x : xb, wb, null); Tensor a = alpha()) {
                s = p.mul(a);
            }
            if (bias() == null) {
                return s;
            }
            try (s) {
                return s.add(bias());
            }
        }
        int rank = x.shape().rank();
        long m = x.numel() / inFeatures;
        try (Tensor x2 = x.reshape(m, inFeatures); Tensor xbits = Binary.binarize(x2); Tensor wbits = weights.bits(weight());
             Tensor a0 = alpha(); Tensor a = a0.to(dev.cortado.tensor.DType.FLOAT32);
             Tensor y = Binary.matmul(xbits, wbits, inFeatures, a, null); Tensor yb = bias() == null ? null : y.add(bias())) {
            long[] od = x.dims();
            od[rank - 1] = outFeatures;
            return (yb == null ? y : yb).reshape(od);
        }
    }

    @Override
    protected String extraRepr() {
        return "in=" + inFeatures + ", out=" + outFeatures + ", bias=" + (bias() != null) + ", binary_inputs=" + binaryInputs + ", weights="
                + weights;
    }
}
