package dev.cortado.quant;

import dev.cortado.nn.Module;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;

/**
 * What {@link QuantizedLinear} and {@link QuantizedConv2d} share: the integer weights (int8
 * storage of a signed grid, symmetric per output channel), their float32 scales, an optional
 * float32 bias, and the calibrated parameters of the input (a uint8 grid {@code [0, qmax]} with a
 * scale and zero point, per tensor). All of it is module state (buffers), so it saves and loads
 * with {@link Module#state()} through safetensors ({@link Quantizer#save}, {@link Quantizer#load});
 * the packed weights the kernels read are derived from it on first use and by {@link #repack()}.
 */
public abstract class QuantizedLayer extends Module {
    private final Activation activation;
    /** The layer whose input grid this one writes its output on (uint8 codes), or null: float32 out. */
    private QuantizedLayer codesFor;
    private Tensor epilogueScale;
    private Tensor epilogueBias;

    QuantizedLayer(Tensor weight, Tensor weightScale, Tensor bias, Tensor inputScale, Tensor inputZeroPoint,
                   Tensor inputRange, Activation activation) {
        this.activation = java.util.Objects.requireNonNull(activation, "activation");
        registerBuffer("weight", weight);
        registerBuffer("weight_scale", weightScale);
        registerBuffer("bias", bias);
        registerBuffer("input_scale", inputScale);
        registerBuffer("input_zero_point", inputZeroPoint);
        registerBuffer("input_range", inputRange);
    }

    /** The state tensors of a layer from the float weights quantized per output channel on {@code weightBits}. */
    static Tensor[] quantizeWeights(Tensor weight, int weightBits) {
        if (weightBits < 2 || weightBits > 8) {
            throw new IllegalArgumentException("quantized layer: weight bits must be in [2, 8], got " + weightBits);
        }
        int qmax = (1 << (weightBits - 1)) - 1;
        QuantScheme s = QuantScheme.perChannel(DType.INT8, 0).withRange(-qmax, qmax);
        MinMaxObserver obs = MinMaxObserver.of(s).symmetric();
        try (Tensor w = weight.detach(); Tensor w32 = w.to(DType.FLOAT32)) {
            obs.observe(w32);
            try (QuantParams p = obs.params(weight.device()); QuantizedTensor q = Quantization.quantize(w32, p)) {
                return new Tensor[] {q.values().copy(), p.scale().copy()};
            }
        }
    }

    /**
     * The state tensors from float weights and learned per-channel scales {@code scale [out]}
     * (QAT): {@code clamp(rne(w / s), -2^(b-1), 2^(b-1))} (the upper end holds a grid point whose
     * sign a folded negative batch-norm factor flipped).
     */
    static Tensor[] quantizeWeights(Tensor weight, Tensor scale, int weightBits) {
        if (weightBits < 2 || weightBits > 8) {
            throw new IllegalArgumentException("quantized layer: weight bits must be in [2, 8], got " + weightBits);
        }
        int half = 1 << (weightBits - 1);
        QuantScheme s = QuantScheme.perChannel(DType.INT8, 0).withRange(-half, Math.min(127, half));
        try (Tensor w = weight.detach(); Tensor w32 = w.to(DType.FLOAT32); Tensor sc = scale.reshape(-1);
             QuantParams p = QuantParams.of(s, sc, null); QuantizedTensor q = Quantization.quantize(w32, p)) {
            return new Tensor[] {q.values().copy(), sc.to(DType.FLOAT32)};
        }
    }

    /** Input state tensors {scale (scalar float32), zero point (scalar int32), range int32 [qmin, qmax]}. */
    static Tensor[] inputState(QuantParams input, dev.cortado.tensor.Device device) {
        QuantScheme s = input.scheme();
        if (s.granularity() != QuantScheme.Granularity.PER_TENSOR || s.storage() != DType.UINT8) {
            throw new IllegalArgumentException("quantized layer: the input parameters must be uint8 per tensor, not " + s);
        }
        float scale = (float) input.scale().item();
        int zp = input.zeroPoint() == null ? 0 : (int) input.zeroPoint().item();
        return new Tensor[] {Tensor.of(new float[] {scale}, device), Tensor.of(new int[] {zp}, device),
            Tensor.of(new int[] {s.qmin(), s.qmax()}, device, 2)};
    }

    /** The activation the layer applies in its epilogue (a following ReLU, erf GELU or SiLU module was fused), or NONE. */
    public final Activation activation() {
        return activation;
    }

    /** The int8 weights (the signed grid's values). */
    public final Tensor weight() {
        return buffer("weight");
    }

    /** float32 [out]: the weights' scales. */
    public final Tensor weightScale() {
        return buffer("weight_scale");
    }

    /** float32 [out] or null. */
    public final Tensor bias() {
        return buffer("bias");
    }

    /** The input's quantization parameters (a new object the caller closes). */
    public final QuantParams inputParams() {
        int[] r = buffer("input_range").toIntArray();
        return QuantParams.of(QuantScheme.perTensor(DType.UINT8).withRange(r[0], r[1]), buffer("input_scale"),
                buffer("input_zero_point"));
    }

    final float inputScale() {
        return (float) buffer("input_scale").item();
    }

    final int inputZeroPoint() {
        return (int) buffer("input_zero_point").item();
    }

    /**
     * The input quantized on its calibrated uint8 grid (raw values). A uint8 x is taken as codes
     * already on that grid (what the layer before writes when {@link Quantizer#convert} chained the
     * two) and handed back as it is.
     */
    final Tensor quantizeInput(Tensor x) {
        if (x.dtype() == DType.UINT8) {
            return x.contiguous();
        }
        int[] r = buffer("input_range").toIntArray();
        return Quantization.quantize(x, buffer("input_scale"), buffer("input_zero_point"),
                QuantScheme.perTensor(DType.UINT8).withRange(r[0], r[1]));
    }

    /**
     * Makes this layer write its output as uint8 codes on {@code next}'s input grid instead of
     * float32 (null: float32 again): the epilogue divides its scale and bias by the next layer's
     * input scale, adds its zero point, rounds and clamps to [0, 255], which is what the next layer's
     * input quantization would have done to the float output (up to the rounding of the folded
     * division). Only for a next layer with the full uint8 input range; {@link Quantizer#convert}
     * links the layers of a Sequential with nothing between them but max pooling, flattening and
     * the fused placeholders, all of which commute with the quantization.
     */
    final void writeCodesFor(QuantizedLayer next) {
        if (next != null && !next.fullUint8Input()) {
            int[] r = next.buffer("input_range").toIntArray();
            throw new IllegalArgumentException("quantized layer: the next layer's input range [" + r[0] + ", " + r[1]
                    + "] is not uint8's [0, 255]");
        }
        codesFor = next;
        refreshEpilogue();
    }

    /** Whether the input grid is the full uint8 range [0, 255] (codes of another layer fit it). */
    final boolean fullUint8Input() {
        int[] r = buffer("input_range").toIntArray();
        return r[0] == 0 && r[1] == 255;
    }

    /** The layer this one writes codes for, or null. */
    final QuantizedLayer codesFor() {
        return codesFor;
    }

    /** The fused epilogue: float32 out, or uint8 codes on the next layer's grid. */
    final Int8Gemm.Epilogue epilogue() {
        return codesFor == null ? new Int8Gemm.Epilogue(inputZeroPoint(), DType.FLOAT32, activation, 0)
                : new Int8Gemm.Epilogue(inputZeroPoint(), DType.UINT8, activation, codesFor.inputZeroPoint());
    }

    /** float32 [out]: input scale x weight scale (/ the next layer's input scale when writing codes). */
    final Tensor epilogueScale() {
        return epilogueScale;
    }

    /** float32 [out] or null: the bias (/ the next layer's input scale when writing codes). */
    final Tensor epilogueBias() {
        return epilogueBias;
    }

    /** Recomputes the epilogue's scale and bias from the state (after a repack or a new link). */
    final void refreshEpilogue() {
        closeEpilogue();
        float sx = inputScale();
        float so = codesFor == null ? 1f : codesFor.inputScale();
        float[] sw = weightScale().toFloatArray();
        float[] out = new float[sw.length];
        for (int j = 0; j < sw.length; j++) {
            out[j] = sx * sw[j] / so;
        }
        epilogueScale = unscoped(() -> Tensor.of(out, weight().device(), out.length));
        Tensor b = bias();
        if (b != null) {
            float[] bv = b.toFloatArray();
            for (int j = 0; j < bv.length; j++) {
                bv[j] /= so;
            }
            epilogueBias = unscoped(() -> Tensor.of(bv, b.device(), bv.length));
        }
    }

    final void closeEpilogue() {
        if (epilogueScale != null) {
            epilogueScale.close();
            epilogueScale = null;
        }
        if (epilogueBias != null) {
            epilogueBias.close();
            epilogueBias = null;
        }
    }

    /** Rebuilds the packed weights from the state (after the state was loaded or moved). */
    public abstract void repack();

    /** The bytes of the state as stored (weights, scales, bias, input parameters). */
    public final long stateBytes() {
        long n = 0;
        for (Tensor t : state().values()) {
            n += t.numel() * t.dtype().byteSize();
        }
        return n;
    }

    @Override
    public Module to(dev.cortado.tensor.Device device) {
        super.to(device);
        repack();
        return this;
    }

    /** The state keeps its dtypes under {@code to(DType)}: the integer kernels read int8 / float32. */
    @Override
    protected boolean keepsDType(String name) {
        return true;
    }

    String quantRepr() {
        int[] r = buffer("input_range").toIntArray();
        return "weight=" + weight().dtype() + ", weight_scale=" + Quantization.preview(weightScale()) + ", input=uint8 ["
                + r[0] + ", " + r[1] + "] scale=" + inputScale() + " zero_point=" + inputZeroPoint()
                + (activation == Activation.NONE ? "" : ", " + activation.name().toLowerCase(java.util.Locale.ROOT));
    }
}
