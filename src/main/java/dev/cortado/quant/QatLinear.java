package dev.cortado.quant;

import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.nn.functional.F;
import dev.cortado.tensor.Tensor;

/**
 * A {@link Linear} trained with quantized weights and inputs (quantization-aware training): its
 * weight goes through a per-output-channel {@link LsqQuantizer} and its input through a
 * per-tensor one, so the layer computes what a {@code bits}-bit integer layer would while the
 * float weights and the step sizes train. The bias stays in float, as integer kernels keep it in
 * 32 bits.
 */
public final class QatLinear extends Module {
    private final Linear linear;
    private final LsqQuantizer weightQuantizer;
    private final LsqQuantizer inputQuantizer;

    /**
     * Wraps {@code linear} (its parameters are shared, not copied): weights on a signed grid of
     * {@code weightBits}, inputs on a grid of {@code inputBits}, unsigned when the inputs are
     * non-negative (after a ReLU).
     */
    public QatLinear(Linear linear, int weightBits, int inputBits, boolean unsignedInputs) {
        this.linear = registerModule("linear", linear);
        this.weightQuantizer = registerModule("weight_quantizer", new LsqQuantizer(weightBits, false, linear.outFeatures()));
        this.inputQuantizer = registerModule("input_quantizer", new LsqQuantizer(inputBits, unsignedInputs, 0));
    }

    public Linear linear() {
        return linear;
    }

    public LsqQuantizer weightQuantizer() {
        return weightQuantizer;
    }

    public LsqQuantizer inputQuantizer() {
        return inputQuantizer;
    }

    @Override
    public Tensor forward(Tensor x) {
        try (Tensor xq = inputQuantizer.forward(x); Tensor wq = weightQuantizer.forward(linear.weight())) {
            return F.linear(xq, wq, linear.bias());
        }
    }
}
