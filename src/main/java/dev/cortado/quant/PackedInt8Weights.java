package dev.cortado.quant;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;

/**
 * What every int8 weight packed for the VNNI/AVX2 micro-kernel holds: the packed bytes, the
 * per-column sums the zero-point compensation needs, and optionally per-column zero points and
 * scales. {@link PackedInt8Matrix} (GEMM) and {@link PackedInt8Conv} (convolution) add their shapes.
 */
public abstract sealed class PackedInt8Weights implements AutoCloseable permits PackedInt8Matrix, PackedInt8Conv {
    private final Tensor packed;
    private final Tensor colsum;
    private final Tensor zeroPoint;
    private final Tensor scale;

    PackedInt8Weights(Tensor packed, Tensor colsum, Tensor zeroPoint, Tensor scale) {
        this.packed = packed;
        this.colsum = colsum;
        this.zeroPoint = zeroPoint;
        this.scale = scale;
    }

    public Device device() {
        return packed.device();
    }

    /** The packed bytes (int8). */
    public Tensor packed() {
        return packed;
    }

    /** int32, one per output column: the column sums. */
    public Tensor colsum() {
        return colsum;
    }

    /** int32 zero points, one per output column, or null (all zero). */
    public Tensor zeroPoint() {
        return zeroPoint;
    }

    /** float32 scales, one per output column, or null for raw weights. */
    public Tensor scale() {
        return scale;
    }

    @Override
    public void close() {
        packed.close();
        colsum.close();
        if (zeroPoint != null) {
            zeroPoint.close();
        }
        if (scale != null) {
            scale.close();
        }
    }

    /** A per-tensor (one element) or per-column parameter as a contiguous [n] vector of {@code t}. */
    static Tensor perColumn(Tensor p, long n, DType t) {
        try (Tensor flat = p.reshape(-1); Tensor wide = flat.expand(n)) {
            return wide.dtype() == t ? wide.copy() : wide.to(t);
        }
    }

    /** {@code on cpu, scale=[...], zero_point=[...]}: the tail of {@code toString}. */
    final String describeParameters() {
        return "on " + device() + (scale == null ? "" : ", scale=" + Quantization.preview(scale))
                + (zeroPoint == null ? "" : ", zero_point=" + Quantization.preview(zeroPoint));
    }
}
