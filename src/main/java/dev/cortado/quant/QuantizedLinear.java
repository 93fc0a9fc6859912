package dev.cortado.quant;

import dev.cortado.ops.Convolution.Activation;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;

/**
 * A linear layer on the int8 GEMM ({@link Int8Gemm}): the float input {@code [..., in]} is
 * quantized on its calibrated uint8 grid, multiplied by the int8 weights (per output channel
 * scales) in exact int32 sums, and the epilogue rescales, adds the bias and applies the fused
 * ReLU, giving float32 {@code [..., out]}. Made by {@link Quantizer#convert} or {@link #fromFloat};
 * printing shows the quantization parameters.
 */
public final class QuantizedLinear extends QuantizedLayer {
    private final long in;
    private final long out;
    private PackedInt8Matrix packed;

    private QuantizedLinear(long in, long out, Tensor[] w, Tensor bias, Tensor[] input, Activation activation) {
        super(w[0], w[1], bias, input[0], input[1], input[2], activation);
        this.in = in;
        this.out = out;
    }

    /**
     * The layer for float {@code weight [out, in]} and {@code bias [out]} (or null): weights
     * quantized symmetrically per output channel on {@code weightBits}, inputs on {@code input}'s
     * uint8 per-tensor grid.
     */
    public static QuantizedLinear fromFloat(Tensor weight, Tensor bias, QuantParams input, int weightBits, Activation activation) {
        if (weight.shape().rank() != 2) {
            throw new IllegalArgumentException("QuantizedLinear: weight " + weight.describe() + " is not [out, in]");
        }
        return unscoped(() -> {
            Tensor[] w = quantizeWeights(weight, weightBits);
            Tensor b = null;
            if (bias != null) {
                try (Tensor bd = bias.detach()) {
                    b = bd.to(DType.FLOAT32);
                }
            }
            return new QuantizedLinear(weight.dims()[1], weight.dims()[0], w, b, inputState(input, weight.device()), activation);
        });
    }

    /** The layer for float weights and learned per-channel weight scales {@code weightScale [out]} (after QAT). */
    public static QuantizedLinear fromFloat(Tensor weight, Tensor bias, QuantParams input, Tensor weightScale,
                                            int weightBits, Activation activation) {
        if (weight.shape().rank() != 2 || weightScale.numel() != weight.dims()[0]) {
            throw new IllegalArgumentException("QuantizedLinear: weight " + weight.describe() + " with scales "
                    + weightScale.describe() + " is not [out, in] with [out] scales");
        }
        return unscoped(() -> {
            Tensor[] w = quantizeWeights(weight, weightScale, weightBits);
            Tensor b = null;
            if (bias != null) {
                try (Tensor bd = bias.detach()) {
                    b = bd.to(DType.FLOAT32);
                }
            }
            return new QuantizedLinear(weight.dims()[1], weight.dims()[0], w, b, inputState(input, weight.device()), activation);
        });
    }

    public long inFeatures() {
        return in;
    }

    public long outFeatures() {
        return out;
    }

    @Override
    public void repack() {
        if (packed != null) {
            packed.close();
            packed = null;
        }
        closeEpilogue();
        unscoped(() -> {
            try (Tensor t = weight().transpose(0, 1)) {
                packed = PackedInt8Matrix.pack(t);
            }
            refreshEpilogue();
            return null;
        });
    }

    @Override
    public Tensor forward(Tensor x) {
        if (packed == null) {
            repack();
        }
        long[] d = x.dims();
        if (d.length < 1 || d[d.length - 1] != in) {
            throw new IllegalArgumentException("QuantizedLinear: x " + x.describe() + " does not end in " + in + " features");
        }
        long m = x.numel() / Math.max(1, in);
        try (Tensor q = quantizeInput(x); Tensor q2 = q.reshape(m, in)) {
            Tensor y = Int8Gemm.GEMM_OP.call(epilogue(), q2, packed.packed(), packed.colsum(), null, epilogueScale(),
                    epilogueBias());
            if (d.length == 2) {
                return y;
            }
            long[] od = d.clone();
            od[od.length - 1] = out;
            try (y) {
                return y.reshape(od);
            }
        }
    }

    @Override
    public void close() {
        if (packed != null) {
            packed.close();
            packed = null;
        }
        closeEpilogue();
        super.close();
    }

    @Override
    protected String extraRepr() {
        return "in=" + in + ", out=" + out + ", bias=" + (bias() != null) + ", " + quantRepr();
    }
}
