package dev.cortado.quant;

import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.tensor.Tensor;

/**
 * A {@link Linear} for inference with its weights stored in 4 bits (int4 / uint4) or 8 bits (fp8)
 * with group-wise scales ({@link PackedWeights#quantize}), run by the weight-only kernels
 * ({@link WeightOnly}): {@code y = x W^T + b} with float32 or bfloat16 x, W dequantized in
 * registers. The packed codes, scales, zero points and the float32 bias are buffers (saved by
 * {@link #state()}); nothing here is trained.
 */
public final class WeightOnlyLinear extends Module {
    private final WeightOnly.Spec spec;
    private final long inFeatures;
    private final long outFeatures;
    private final boolean zeroPoints;
    private final boolean bias;

    /** Quantizes {@code linear}'s weights (copied; the Linear is left as it was). */
    public WeightOnlyLinear(Linear linear, WeightOnly.Format format, int group) {
        this.spec = new WeightOnly.Spec(format, group);
        this.inFeatures = linear.inFeatures();
        this.outFeatures = linear.outFeatures();
        PackedWeights w = unscoped(() -> {
            try (Tensor f = linear.weight().detach()) {
                return PackedWeights.quantize(f, format, group);
            }
        });
        registerBuffer("packed", w.packed());
        registerBuffer("scale", w.scale());
        this.zeroPoints = w.zeroPoint() != null;
        this.bias = linear.bias() != null;
        if (w.zeroPoint() != null) {
            registerBuffer("zero_point", w.zeroPoint());
        }
        if (linear.bias() != null) {
            registerBuffer("bias", unscoped(() -> {
                try (Tensor b = linear.bias().detach(); Tensor f = b.to(dev.cortado.tensor.DType.FLOAT32)) {
                    return f.copy();
                }
            }));
        }
    }

    public WeightOnly.Spec spec() {
        return spec;
    }

    public long inFeatures() {
        return inFeatures;
    }

    public long outFeatures() {
        return outFeatures;
    }

    @Override
    public Tensor forward(Tensor x) {
        return WeightOnly.matmul(x, spec, buffer("packed"), buffer("scale"), zeroPoints ? buffer("zero_point") : null,
                bias ? buffer("bias") : null, outFeatures, inFeatures);
    }

    @Override
    protected String extraRepr() {
        return "in=" + inFeatures + ", out=" + outFeatures + ", " + spec.format() + ", group=" + spec.group();
    }
}
