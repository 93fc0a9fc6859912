package dev.cortado.quant;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;

/**
 * A weight matrix {@code W [n, k]} (a Linear's {@code [out, in]}) quantized and packed once for
 * {@link WeightOnly#matmul}: the packed codes (int4 two per byte, or fp8), float32 scales per group
 * of {@code group} consecutive k ({@code [n, k / group]}) and, for unsigned int4, int32 zero
 * points. Owns its tensors; {@link #close()} frees them.
 */
public final class PackedWeights implements AutoCloseable {
    private final Tensor packed;
    private final Tensor scale;
    private final Tensor zeroPoint;
    private final WeightOnly.Format format;
    private final int group;
    private final long n;
    private final long k;

    private PackedWeights(Tensor packed, Tensor scale, Tensor zeroPoint, WeightOnly.Format format, int group, long n, long k) {
        this.packed = packed;
        this.scale = scale;
        this.zeroPoint = zeroPoint;
        this.format = format;
        this.group = group;
        this.n = n;
        this.k = k;
    }

    /**
     * Quantizes a float weight matrix {@code [n, k]} by min-max calibration per group of
     * {@code group} along k (a multiple of 32 dividing k): symmetric for INT4 ({@code s = max|w| / 7.5},
     * no zero point) and the fp8 formats ({@code s = max|w| / max_finite}); affine for UINT4
     * ({@code s = (max - min) / 15} over the range widened to hold 0, integer zero points).
     */
    public static PackedWeights quantize(Tensor weight, WeightOnly.Format format, int group) {
        new WeightOnly.Spec(format, group);
        if (weight.shape().rank() != 2 || !weight.dtype().isFloatingPoint() || weight.dtype().isFloat8()
                || weight.dims()[1] % group != 0) {
            throw new IllegalArgumentException("PackedWeights.quantize: the weights " + weight.describe() + " must be a float "
                    + "matrix [n, k] with k a multiple of the group size " + group);
        }
        QuantScheme scheme = switch (format) {
            case INT4 -> QuantScheme.perGroup(DType.INT8, 1, group).withRange(-8, 7);
            case UINT4 -> QuantScheme.perGroup(DType.UINT8, 1, group).withRange(0, 15);
            case FLOAT8_E4M3 -> QuantScheme.perGroup(DType.FLOAT8_E4M3, 1, group);
            case FLOAT8_E5M2 -> QuantScheme.perGroup(DType.FLOAT8_E5M2, 1, group);
        };
        MinMaxObserver obs = MinMaxObserver.of(scheme);
        if (format == WeightOnly.Format.INT4) {
            obs = obs.symmetric();
        }
        obs.observe(weight);
        try (QuantParams params = obs.params(weight.device()); QuantizedTensor q = Quantization.quantize(weight, params)) {
            return pack(q.values(), params.scale(), format == WeightOnly.Format.UINT4 ? params.zeroPoint() : null, format, group);
        }
    }

    /**
     * Packs codes {@code q [n, k]} ({@link WeightOnly.Format#codes()}'s dtype) with their scales
     * ({@code [n, k / group]}, float32) and zero points (int32 of the same shape, or null); the
     * parameters are copied.
     */
    public static PackedWeights pack(Tensor q, Tensor scale, Tensor zeroPoint, WeightOnly.Format format, int group) {
        new WeightOnly.Spec(format, group);
        if (q.shape().rank() != 2 || q.dims()[1] % group != 0) {
            throw new IllegalArgumentException("PackedWeights.pack: codes " + q.describe() + " must be [n, k] with k a multiple "
                    + "of the group size " + group);
        }
        long n = q.dims()[0];
        long k = q.dims()[1];
        if (!scale.shape().equals(dev.cortado.tensor.Shape.of(n, k / group)) || scale.dtype() != DType.FLOAT32) {
            throw new IllegalArgumentException("PackedWeights.pack: scale " + scale.describe() + " must be float32[" + n + ", "
                    + (k / group) + "] for codes " + q.describe() + " in groups of " + group);
        }
        Tensor packed = null;
        Tensor sc = null;
        Tensor zp = null;
        try {
            packed = WeightOnly.PACK_OP.call(format, q);
            sc = scale.copy();
            zp = zeroPoint == null ? null : zeroPoint.dtype() == DType.INT32 ? zeroPoint.copy() : zeroPoint.to(DType.INT32);
            return new PackedWeights(packed, sc, zp, format, group, n, k);
        } catch (RuntimeException e) {
            for (Tensor t : new Tensor[] {packed, sc, zp}) {
                if (t != null) {
                    t.close();
                }
            }
            throw e;
        }
    }

    /** Output features (rows of W). */
    public long n() {
        return n;
    }

    /** Input features (the reduction length). */
    public long k() {
        return k;
    }

    public WeightOnly.Format format() {
        return format;
    }

    public int group() {
        return group;
    }

    public Device device() {
        return packed.device();
    }

    /** uint8: the packed codes. */
    public Tensor packed() {
        return packed;
    }

    /** float32 [n, k / group]. */
    public Tensor scale() {
        return scale;
    }

    /** int32 [n, k / group], or null (all zero). */
    public Tensor zeroPoint() {
        return zeroPoint;
    }

    /** Bytes of the packed weights and their parameters. */
    public long bytes() {
        return packed.numel() + scale.numel() * 4 + (zeroPoint == null ? 0 : zeroPoint.numel() * 4);
    }

    @Override
    public void close() {
        packed.close();
        scale.close();
        if (zeroPoint != null) {
            zeroPoint.close();
        }
    }

    @Override
    public String toString() {
        return "PackedWeights[" + format + ", n=" + n + ", k=" + k + ", group=" + group + ", on " + device() + ", scale="
                + Quantization.preview(scale) + (zeroPoint == null ? "" : ", zero_point=" + Quantization.preview(zeroPoint)) + "]";
    }
}
