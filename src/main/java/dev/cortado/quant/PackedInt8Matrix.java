package dev.cortado.quant;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;

/**
 * The right-hand operand of the int8 GEMM ({@link Int8Gemm}), packed once: an int8 matrix
 * {@code [k, n]} rearranged into the blocks of 16 columns x 4 k that one {@code vpdpbusd} (or
 * {@code dp4a}) consumes (native/include/cortado/quant.h), with its column sums for the
 * zero-point compensation, and optionally its per-column zero points and scales (from a
 * {@link QuantizedTensor}). Owns its tensors; {@link #close()} frees them.
 */
public final class PackedInt8Matrix extends PackedInt8Weights {
    private final long k;
    private final long n;

    PackedInt8Matrix(Tensor packed, Tensor colsum, Tensor zeroPoint, Tensor scale, long k, long n) {
        super(packed, colsum, zeroPoint, scale);
        this.k = k;
        this.n = n;
    }

    /** Packs a raw int8 matrix {@code [k, n]} (any strides); zero points 0, no scales. */
    public static PackedInt8Matrix pack(Tensor b) {
        Tensor[] out = Int8Gemm.PACK_OP.callMulti(null, b);
        return new PackedInt8Matrix(out[0], out[1], null, null, b.dims()[0], b.dims()[1]);
    }

    /**
     * Packs a quantized int8 matrix {@code [k, n]}, per tensor or per channel along the columns
     * (axis 1): its scales and zero points become per-column vectors.
     */
    public static PackedInt8Matrix pack(QuantizedTensor b) {
        QuantScheme s = b.scheme();
        if (b.dtype() != DType.INT8 || b.shape().rank() != 2 || s.granularity() == QuantScheme.Granularity.PER_GROUP
                || (s.granularity() == QuantScheme.Granularity.PER_CHANNEL && s.axisFor("PackedInt8Matrix.pack", 2) != 1)) {
            throw new IllegalArgumentException("PackedInt8Matrix.pack: the weights " + b.values().describe() + " must be "
                    + "an int8 matrix [k, n] quantized per tensor or per column (axis 1), not " + s);
        }
        long n = b.shape().size(1);
        Tensor scale = null;
        Tensor zp = null;
        Tensor[] out = null;
        try {
            scale = perColumn(b.params().scale(), n, DType.FLOAT32);
            zp = b.params().zeroPoint() == null ? null : perColumn(b.params().zeroPoint(), n, DType.INT32);
            out = Int8Gemm.PACK_OP.callMulti(null, b.values());
            return new PackedInt8Matrix(out[0], out[1], zp, scale, b.shape().size(0), n);
        } catch (RuntimeException e) {
            for (Tensor t : new Tensor[] {scale, zp, out == null ? null : out[0], out == null ? null : out[1]}) {
                if (t != null) {
                    t.close();
                }
            }
            throw e;
        }
    }

    /** Rows of the matrix (the reduction length). */
    public long k() {
        return k;
    }

    /** Columns of the matrix. */
    public long n() {
        return n;
    }

    @Override
    public String toString() {
        return "PackedInt8Matrix[k=" + k + ", n=" + n + ", " + describeParameters() + "]";
    }
}
