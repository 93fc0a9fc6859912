package dev.cortado.quant;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * Quantization parameters: a {@link QuantScheme}, the scales (float32) and the zero points
 * (int32; absent means all zero, and fp8 has none) in the scheme's parameter shape. Immutable:
 * the parameters own copies of the tensors they were made from, freed by {@link #close()}.
 * Values are checked when an op uses them (scales positive and finite, zero points inside the
 * storage range).
 */
public final class QuantParams implements AutoCloseable {
    private final QuantScheme scheme;
    private final Tensor scale;
    private final Tensor zeroPoint;

    private QuantParams(QuantScheme scheme, Tensor scale, Tensor zeroPoint) {
        this.scheme = scheme;
        this.scale = scale;
        this.zeroPoint = zeroPoint;
    }

    /**
     * Parameters from tensors (copied: the caller keeps and closes its own). {@code zeroPoint} may
     * be null (all zero) and must be for fp8 storage; its dtype is any integer dtype.
     */
    public static QuantParams of(QuantScheme scheme, Tensor scale, Tensor zeroPoint) {
        if (!scale.dtype().isFloatingPoint() || scale.dtype().isFloat8()) {
            throw new IllegalArgumentException("QuantParams.of: scale " + scale.describe() + " must be floating point");
        }
        if (zeroPoint != null) {
            if (scheme.isFloat8()) {
                throw new IllegalArgumentException("QuantParams.of: " + scheme + " takes no zero point (got "
                        + zeroPoint.describe() + ")");
            }
            if (!zeroPoint.dtype().isInteger() || zeroPoint.dtype() == DType.INT4) {
                throw new IllegalArgumentException("QuantParams.of: zero point " + zeroPoint.describe()
                        + " must be an integer tensor");
            }
            if (!zeroPoint.shape().equals(scale.shape()) || !zeroPoint.device().equals(scale.device())) {
                throw new IllegalArgumentException("QuantParams.of: zero point " + zeroPoint.describe()
                        + " and scale " + scale.describe() + " differ in shape or device");
            }
        }
        Tensor s = scale.dtype() == DType.FLOAT32 ? scale.copy() : scale.to(DType.FLOAT32);
        try {
            Tensor z = zeroPoint == null ? null
                    : zeroPoint.dtype() == DType.INT32 ? zeroPoint.copy() : zeroPoint.to(DType.INT32);
            return new QuantParams(scheme, s, z);
        } catch (RuntimeException e) {
            s.close();
            throw e;
        }
    }

    /** Per-tensor parameters: one scale and zero point on {@code device}. */
    public static QuantParams perTensor(DType storage, double scale, int zeroPoint, Device device) {
        QuantScheme s = QuantScheme.perTensor(storage);
        Tensor sc = Tensor.scalar(scale, DType.FLOAT32, device);
        Tensor zp = s.isFloat8() ? null : Tensor.scalar(zeroPoint, DType.INT32, device);
        return new QuantParams(s, sc, zp);
    }

    /** Per-tensor parameters on the CPU. */
    public static QuantParams perTensor(DType storage, double scale, int zeroPoint) {
        return perTensor(storage, scale, zeroPoint, Device.CPU);
    }

    public QuantScheme scheme() {
        return scheme;
    }

    /** The scales (float32, contiguous); owned by these parameters. */
    public Tensor scale() {
        return scale;
    }

    /** The zero points (int32, contiguous), or null when all are zero; owned by these parameters. */
    public Tensor zeroPoint() {
        return zeroPoint;
    }

    public Device device() {
        return scale.device();
    }

    /** Copies of these parameters (for a second owner). */
    public QuantParams copy() {
        Tensor s = scale.copy();
        try {
            return new QuantParams(scheme, s, zeroPoint == null ? null : zeroPoint.copy());
        } catch (RuntimeException e) {
            s.close();
            throw e;
        }
    }

    /** These parameters on {@code device}. */
    public QuantParams to(Device device) {
        if (device.equals(device())) {
            return copy();
        }
        Tensor s = scale.to(device);
        try {
            return new QuantParams(scheme, s, zeroPoint == null ? null : zeroPoint.to(device));
        } catch (RuntimeException e) {
            s.close();
            throw e;
        }
    }

    /** Throws unless these parameters fit data of shape {@code data}. */
    void checkFits(String op, Shape data) {
        Shape want = scheme.paramShape(op, data);
        boolean ok = want.equals(scale.shape()) || (want.rank() == 0 && scale.numel() == 1);
        if (!ok) {
            throw new IllegalArgumentException(op + ": scale " + scale.describe() + " does not fit " + scheme
                    + " for data of shape " + data + " (expected shape " + want + ")");
        }
    }

    @Override
    public void close() {
        scale.close();
        if (zeroPoint != null) {
            zeroPoint.close();
        }
    }

    /** The scheme with the scales and zero points (the first few of many). */
    @Override
    public String toString() {
        return scheme + ", scale=" + Quantization.preview(scale) + (zeroPoint == null ? "" : ", zero_point="
                + Quantization.preview(zeroPoint));
    }
}
