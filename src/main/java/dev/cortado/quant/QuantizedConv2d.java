package dev.cortado.quant;

import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.DataLayout;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;

/**
 * A 2-d convolution on the integer kernels ({@link Int8Conv}): the float input (NCHW or NHWC, as
 * the float layer it replaces) is quantized on its calibrated uint8 grid, convolved with the int8
 * weights (per output channel scales) in exact int32 sums, and the epilogue rescales, adds the
 * bias and applies the fused ReLU, giving float32 (or, chained by {@link Quantizer#convert}, uint8
 * codes on the next layer's grid) in the input's layout: for NCHW, the kernel's NHWC output as an
 * NCHW view, which the next layer of this kind and max pooling take as it lies. Made by
 * {@link Quantizer#convert} (batch norm folded in first) or from float weights by
 * {@link #fromFloat}; printing shows the quantization parameters.
 */
public final class QuantizedConv2d extends QuantizedLayer {
    private final Int8Conv.Geometry geometry;
    private final long inChannels;
    private final DataLayout layout;
    private PackedInt8Conv packed;

    private QuantizedConv2d(long inChannels, Int8Conv.Geometry geometry, DataLayout layout, Tensor[] w, Tensor bias,
                            Tensor[] in, Activation activation) {
        super(w[0], w[1], bias, in[0], in[1], in[2], activation);
        this.inChannels = inChannels;
        this.geometry = geometry;
        this.layout = layout;
    }

    /**
     * The layer for float filters {@code weight [OC, C / groups, kh, kw]} and {@code bias [OC]} (or
     * null): weights quantized symmetrically per output channel on {@code weightBits}, inputs on
     * {@code input}'s uint8 per-tensor grid.
     */
    public static QuantizedConv2d fromFloat(Tensor weight, Tensor bias, Int8Conv.Geometry geometry, DataLayout layout,
                                            QuantParams input, int weightBits, Activation activation) {
        long[] d = weight.dims();
        if (d.length != 4 || d[0] != geometry.outChannels() || d[2] != geometry.kh() || d[3] != geometry.kw()) {
            throw new IllegalArgumentException("QuantizedConv2d: filters " + weight.describe() + " do not match " + geometry);
        }
        return unscoped(() -> {
            Tensor[] w = quantizeWeights(weight, weightBits);
            Tensor b = null;
            if (bias != null) {
                try (Tensor bd = bias.detach()) {
                    b = bd.to(DType.FLOAT32);
                }
            }
            return new QuantizedConv2d(d[1] * geometry.groups(), geometry, layout, w, b, inputState(input, weight.device()),
                    activation);
        });
    }

    /** The layer for float filters and learned per-channel weight scales {@code weightScale [OC]} (after QAT). */
    public static QuantizedConv2d fromFloat(Tensor weight, Tensor bias, Int8Conv.Geometry geometry, DataLayout layout,
                                            QuantParams input, Tensor weightScale, int weightBits, Activation activation) {
        long[] d = weight.dims();
        if (d.length != 4 || d[0] != geometry.outChannels() || d[2] != geometry.kh() || d[3] != geometry.kw()
                || weightScale.numel() != d[0]) {
            throw new IllegalArgumentException("QuantizedConv2d: filters " + weight.describe() + " with scales "
                    + weightScale.describe() + " do not match " + geometry);
        }
        return unscoped(() -> {
            Tensor[] w = quantizeWeights(weight, weightScale, weightBits);
            Tensor b = null;
            if (bias != null) {
                try (Tensor bd = bias.detach()) {
                    b = bd.to(DType.FLOAT32);
                }
            }
            return new QuantizedConv2d(d[1] * geometry.groups(), geometry, layout, w, b, inputState(input, weight.device()),
                    activation);
        });
    }

    public Int8Conv.Geometry geometry() {
        return geometry;
    }

    @Override
    public void repack() {
        if (packed != null) {
            packed.close();
            packed = null;
        }
        closeEpilogue();
        unscoped(() -> {
            try (Tensor s = weightScale().reshape(-1);
                 QuantizedTensor q = QuantizedTensor.of(weight().copy(), QuantParams.of(QuantScheme.perChannel(DType.INT8, 0),
                         s, null))) {
                packed = PackedInt8Conv.pack(q, geometry);
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
        boolean nchw = layout == DataLayout.NCHW;
        if (x.shape().rank() != 4 || x.size(nchw ? 1 : 3) != inChannels) {
            throw new IllegalArgumentException("QuantizedConv2d: x " + x.describe() + " is not " + layout + " with "
                    + inChannels + " channels");
        }
        try (Tensor q = quantizeNhwc(x, nchw)) {
            Tensor y = Int8Conv.CONV_OP.call(new Int8Conv.Attrs(geometry, epilogue()), q, packed.packed(), packed.colsum(),
                    null, epilogueScale(), epilogueBias());
            if (!nchw) {
                return y;
            }
            try (y) {
                return y.permute(0, 3, 1, 2);
            }
        }
    }

    /**
     * x quantized, in NHWC order for the kernel. The input grid is one scale for the tensor, so
     * quantizing commutes with any permutation: an NCHW x that is dense is quantized as it lies
     * (one contiguous pass) and its bytes, a quarter of the floats, are what gets transposed; a
     * channels-last view (what an NCHW layer of this kind returns) is already NHWC in memory.
     */
    private Tensor quantizeNhwc(Tensor x, boolean nchw) {
        if (!nchw) {
            return quantizeInput(x);
        }
        try (Tensor nhwc = x.permute(0, 2, 3, 1)) {
            // uint8 codes from the layer before pass through quantizeInput as they are
            if (x.dtype() == DType.UINT8 || nhwc.isContiguous() || !x.isContiguous()) {
                return quantizeInput(nhwc);
            }
        }
        try (Tensor q = quantizeInput(x); Tensor qt = q.permute(0, 2, 3, 1)) {
            return qt.contiguous();
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
        return inChannels + ", " + geometry.outChannels() + ", " + geometry + ", " + layout + ", " + quantRepr();
    }
}
