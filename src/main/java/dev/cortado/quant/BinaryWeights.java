package dev.cortado.quant;

import dev.cortado.nn.Init;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.Tensor;

/**
 * How {@link BinaryLinear} and {@link BinaryConv2d} turn their latent float weights W into signs,
 * and the per-output scale that multiplies the +-1 products. An immutable value with two kinds:
 *
 * <ul>
 *   <li>{@link #xnor()}: XNOR-Net (Rastegari et al., 2016). Signs {@code sign(W)} through the
 *       clipped straight-through estimator ({@link Binary#signSte}); scale {@code alpha = mean |W|}
 *       of each output's weights; latent weights start from PyTorch's default initialization.</li>
 *   <li>{@link #biper(double)}: BiPer (Vargas et al., CVPR 2024). Signs {@code sign(sin(omega W))},
 *       a square wave, trained through the derivative of the sine it replaces
 *       ({@link Binary#biper}); scale {@code alpha = mean |sin(omega W)|} of each output, the
 *       least-squares scale of the signs to the sine (the paper learns its scale as a parameter;
 *       this choice needs none and follows the weights); latent weights start He-normal,
 *       {@code N(0, 2 / fan_in)}, as in the paper's code, with the paper's CIFAR-10 frequency
 *       {@link Binary#BIPER_OMEGA} = 20 by default.</li>
 * </ul>
 *
 * <p>Both scales are differentiable, so the latent weights also get a gradient through alpha.
 */
public final class BinaryWeights {
    /** The two binarizers. */
    public enum Kind {
        /** sign(W), clipped straight-through estimator, alpha = mean |W|. */
        XNOR,
        /** sign(sin(omega W)), gradient omega cos(omega W), alpha = mean |sin(omega W)|. */
        BIPER
    }

    private static final BinaryWeights XNOR = new BinaryWeights(Kind.XNOR, 0);

    private final Kind kind;
    private final double omega;

    private BinaryWeights(Kind kind, double omega) {
        this.kind = kind;
        this.omega = omega;
    }

    /** XNOR-Net's binarizer (the default of the binary modules). */
    public static BinaryWeights xnor() {
        return XNOR;
    }

    /** BiPer at the paper's frequency {@link Binary#BIPER_OMEGA}. */
    public static BinaryWeights biper() {
        return biper(Binary.BIPER_OMEGA);
    }

    /** BiPer at frequency {@code omega} (finite, > 0): the square wave's period is 2 pi / omega. */
    public static BinaryWeights biper(double omega) {
        if (!(omega > 0) || Double.isInfinite(omega)) {
            throw new IllegalArgumentException("BinaryWeights.biper: the frequency omega = " + omega + " must be finite and > 0");
        }
        return new BinaryWeights(Kind.BIPER, omega);
    }

    /** Which binarizer. */
    public Kind kind() {
        return kind;
    }

    /** BiPer's frequency (0 for XNOR). */
    public double omega() {
        return omega;
    }

    /** The +-1 signs of the latent weights, differentiable by this binarizer's surrogate. */
    public Tensor signs(Tensor w) {
        return kind == Kind.XNOR ? Binary.signSte(w) : Binary.biper(w, omega);
    }

    /** The per-output scale: the mean over {@code dims} of |W| (XNOR) or |sin(omega W)| (BiPer), differentiable. */
    public Tensor alpha(Tensor w, int... dims) {
        if (kind == Kind.XNOR) {
            try (Tensor a = w.abs()) {
                return a.mean(dims);
            }
        }
        try (Tensor z = w.mul(omega); Tensor s = z.sin(); Tensor a = s.abs()) {
            return a.mean(dims);
        }
    }

    /** The packed sign bits of latent weights {@code w [..., k]} (no gradient): {@link Binary#binarize} of the signs. */
    Tensor bits(Tensor w) {
        if (kind == Kind.XNOR) {
            return Binary.binarize(w);
        }
        try (Tensor s = Binary.biper(w, omega)) {
            return Binary.binarize(s);
        }
    }

    /** Initializes latent weights {@code w} (output channels first) in place and returns it. */
    Tensor init(Tensor w, Generator g) {
        if (kind == Kind.XNOR) {
            return Init.torchDefaultWeight(w, g);
        }
        return Init.kaimingNormal(w, Init.Fan.FAN_IN, Math.sqrt(2), g);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof BinaryWeights b && b.kind == kind && Double.compare(b.omega, omega) == 0;
    }

    @Override
    public int hashCode() {
        return kind.hashCode() * 31 + Double.hashCode(omega);
    }

    @Override
    public String toString() {
        return kind == Kind.XNOR ? "xnor" : "biper(omega=" + omega + ")";
    }
}
