package dev.cortado.quant;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Init;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;

/**
 * A 2-d convolution with binary weights and binary inputs (XNOR-Net): x {@code [N, C, H, W]},
 * latent float weights {@code [out, C, kh, kw]}, {@code y = alpha[o] conv(sign(x), sign(W)) + b}
 * with {@code alpha[o] = mean |W[o]|}, stride and zero padding (the padding contributes 0, not a
 * sign). While a gradient is recorded it runs {@link Binary#signSte} (clipped straight-through)
 * and the float convolution; otherwise the channels are bit-packed (NHWC) and the XNOR + popcount
 * implicit GEMM ({@link Binary#conv2d}) runs, with the same values. With {@code binaryInputs}
 * false the inputs stay real (a binary-weight layer): {@code y = alpha[o] conv(x, sign(W)) + b},
 * a float convolution of the signs. {@link BinaryWeights} chooses how the weights become signs
 * (XNOR-Net's sign, or BiPer's square wave {@code sign(sin(omega W))}) and their scale alpha.
 */
public final class BinaryConv2d extends Module {
    private final long in;
    private final long out;
    private final int kernel;
    private final int stride;
    private final int padding;
    private final boolean binaryInputs;
    private final BinaryWeights weights;

    /** XNOR-Net weights and binary inputs, with a bias. */
    public BinaryConv2d(long in, long out, int kernel, int stride, int padding) {
        this(in, out, kernel, stride, padding, true, ParamOptions.defaults());
    }

    /** XNOR-Net weights ({@link BinaryWeights#xnor()}) and binary inputs. */
    public BinaryConv2d(long in, long out, int kernel, int stride, int padding, boolean bias, ParamOptions o) {
        this(in, out, kernel, stride, padding, bias, true, BinaryWeights.xnor(), o);
    }

    /** The layer with the given binarizer, binary or real inputs; the latent weights start as the binarizer says. */
    public BinaryConv2d(long in, long out, int kernel, int stride, int padding, boolean bias, boolean binaryInputs,
                        BinaryWeights weights, ParamOptions o) {
        if (in <= 0 || out <= 0 || kernel <= 0 || stride <= 0 || padding < 0) {
            throw new IllegalArgumentException("BinaryConv2d: in=" + in + ", out=" + out + ", kernel=" + kernel + ", stride="
                    + stride + ", padding=" + padding + " (positive sizes, padding >= 0)");
        }
        this.in = in;
        this.out = out;
        this.kernel = kernel;
        this.stride = stride;
        this.padding = padding;
        this.binaryInputs = binaryInputs;
        this.weights = java.util.Objects.requireNonNull(weights, "weights");
        registerParameter("weight", unscoped(() ->
                weights.init(Tensor.empty(o.dtype(), o.device(), out, in, kernel, kernel), o.generator())));
        registerParameter("bias", bias ? unscoped(() -> Init.torchDefaultBias(
                Tensor.empty(o.dtype(), o.device(), out), in * kernel * kernel, o.generator())) : null);
    }

    /** The latent float weights {@code [out, in, k, k]}. */
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

    /** alpha [out]: the binarizer's scale of each output channel's weights (differentiable). */
    Tensor alpha() {
        return weights.alpha(weight(), 1, 2, 3);
    }

    @Override
    public Tensor forward(Tensor x) {
        if (x.shape().rank() != 4 || x.dims()[1] != in) {
            throw new IllegalArgumentException("BinaryConv2d: x " + x.describe() + " must be [N, " + in + ", H, W]");
        }
        boolean recording = Autograd.isGradEnabled() && (weight().requiresGrad() || x.requiresGrad());
        Tensor y;
        if (recording || !binaryInputs) {
            ConvOptions opts = ConvOptions.builder().stride(stride, stride).padding(padding, padding).build();
            try (Tensor xb = binaryInputs ? Binary.signSte(x) : null; Tensor wb = weights.signs(weight());
                 Tensor c = Convolution.conv2d(xb == null ? x : xb, wb, null, opts);
                 Tensor a = alpha(); Tensor a4 = a.reshape(1, out, 1, 1)) {
                y = c.mul(a4);
            }
        } else {
            try (Tensor xn = x.permute(0, 2, 3, 1); Tensor xbits = Binary.binarize(xn); Tensor wn = weight().permute(0, 2, 3, 1);
                 Tensor wbits = weights.bits(wn); Tensor a0 = alpha(); Tensor a = a0.to(DType.FLOAT32);
                 Tensor yn = Binary.conv2d(xbits, wbits, a, new Binary.Conv(in, stride, stride, padding, padding));
                 Tensor yp = yn.permute(0, 3, 1, 2)) {
                y = yp.contiguous();
            }
        }
        if (bias() == null) {
            return y;
        }
        try (y; Tensor b4 = bias().reshape(1, out, 1, 1)) {
            return y.add(b4);
        }
    }

    @Override
    protected String extraRepr() {
        return "in=" + in + ", out=" + out + ", kernel=" + kernel + ", stride=" + stride + ", padding=" + padding + ", bias="
                + (bias() != null) + ", binary_inputs=" + binaryInputs + ", weights=" + weights;
    }
}
