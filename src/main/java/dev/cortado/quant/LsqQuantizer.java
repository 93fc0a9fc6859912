package dev.cortado.quant;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Module;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;

/**
 * A learned-step-size quantizer (LSQ, Esser et al. 2020) as a module: {@code fake_quantize} of its
 * input on the integer grid of {@code scheme} with a zero point of 0, and a learnable float32
 * scale, per tensor or per channel along dimension 0 (weights [out, ...]). The scale starts at
 * {@code 2 mean|x| / sqrt(qmax)} (LSQ's choice) from the first input it sees, then trains with the
 * network: its gradient is LSQ's, the input's is the straight-through estimator (see
 * {@link Quantization#fakeQuantize}). The parameter is the scale's logarithm: an adaptive
 * optimizer moves a parameter by about its learning rate whatever the gradient's size, which
 * would drive a step of 0.01 negative within a few steps (LSQ's gradient scaling only helps
 * plain SGD); in log space a step changes the scale by a factor near 1 + lr and it stays positive.
 */
public final class LsqQuantizer extends Module {
    private final QuantScheme scheme;
    private boolean initialised;

    /**
     * Signed ({@code unsigned == false}: [-2^(bits-1), 2^(bits-1) - 1]) or unsigned ([0, 2^bits - 1],
     * for inputs after a ReLU) grid of {@code bits} (2 to 8); one scale, or one per channel of
     * dimension 0 when {@code channels > 0}.
     */
    public LsqQuantizer(int bits, boolean unsigned, long channels) {
        if (bits < 2 || bits > 8) {
            throw new IllegalArgumentException("LsqQuantizer: bits must be in [2, 8], got " + bits);
        }
        if (channels < 0) {
            throw new IllegalArgumentException("LsqQuantizer: channels must be >= 0, got " + channels);
        }
        int qmin = unsigned ? 0 : -(1 << (bits - 1));
        int qmax = unsigned ? (1 << bits) - 1 : (1 << (bits - 1)) - 1;
        DType storage = unsigned ? DType.UINT8 : DType.INT8;
        QuantScheme s = channels > 0 ? QuantScheme.perChannel(storage, 0) : QuantScheme.perTensor(storage);
        this.scheme = s.withRange(qmin, qmax);
        registerParameter("log_scale", unscoped(() -> channels > 0 ? Tensor.zeros(DType.FLOAT32, channels)
                : Tensor.zeros(DType.FLOAT32)));
    }

    public QuantScheme scheme() {
        return scheme;
    }

    /** The logarithm of the step size(s): the trained parameter. */
    public Tensor logScale() {
        return parameter("log_scale");
    }

    /** The current step size(s), a new tensor (no gradient history). */
    public Tensor scale() {
        try (var g = Autograd.noGrad()) {
            return logScale().exp();
        }
    }

    @Override
    public Tensor forward(Tensor x) {
        if (!initialised) {
            initialise(x);
        }
        try (Tensor scale = logScale().exp()) {
            return Quantization.fakeQuantize(x, scale, null, scheme);
        }
    }

    private void initialise(Tensor x) {
        try (var g = Autograd.noGrad(); Scope s = Scope.open()) {
            Tensor magnitude = x.abs();
            Tensor mean;
            if (scheme.granularity() == QuantScheme.Granularity.PER_CHANNEL) {
                int[] others = new int[x.shape().rank() - 1];
                for (int d = 1; d < x.shape().rank(); d++) {
                    others[d - 1] = d;
                }
                mean = others.length == 0 ? magnitude : Reductions.mean(magnitude, false, others);
            } else {
                mean = Reductions.mean(magnitude);
            }
            Tensor init = mean.mul(2 / Math.sqrt(scheme.qmax())).clamp(1e-8, Double.MAX_VALUE).log().to(DType.FLOAT32);
            logScale().copyFrom(init.reshape(logScale().dims()));
        }
        initialised = true;
    }

    @Override
    protected String extraRepr() {
        return scheme.toString();
    }
}
