package dev.cortado.quant;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import java.util.Objects;

/**
 * How a tensor is quantized: the storage dtype, its integer range, and how the scale and zero
 * point are shared: one for the whole tensor, one per channel along an axis, or one per group of
 * {@code groupSize} consecutive elements along an axis. An immutable value.
 *
 * <p>Storage dtypes: {@link DType#INT8} [-128, 127], {@link DType#UINT8} [0, 255],
 * {@link DType#INT4} [-8, 7] (packed two per byte), {@link DType#INT32} (bias and accumulators),
 * and fp8 {@link DType#FLOAT8_E4M3} / {@link DType#FLOAT8_E5M2} (no zero point; round to nearest
 * even, saturating). {@link #withRange} narrows the integer range (e.g. symmetric int8 [-127, 127]).
 *
 * <p>Parameter shapes for data of shape {@code [d0, ..., dn]}: per tensor {@code []} (or
 * {@code [1]}); per channel along {@code a} {@code [d_a]}; per group along {@code a}, the data
 * shape with {@code d_a} replaced by {@code d_a / g} (g must divide d_a), as ONNX's blocked
 * quantization.
 */
public final class QuantScheme {

    /** How the parameters are shared. */
    public enum Granularity { PER_TENSOR, PER_CHANNEL, PER_GROUP }

    private final DType storage;
    private final Granularity granularity;
    private final int axis;
    private final int groupSize;
    private final int qmin;
    private final int qmax;

    private QuantScheme(DType storage, Granularity granularity, int axis, int groupSize, int qmin, int qmax) {
        this.storage = storage;
        this.granularity = granularity;
        this.axis = axis;
        this.groupSize = groupSize;
        this.qmin = qmin;
        this.qmax = qmax;
    }

    /** One scale (and zero point) for the whole tensor. */
    public static QuantScheme perTensor(DType storage) {
        return new QuantScheme(storage, Granularity.PER_TENSOR, 0, 1, lo(storage), hi(storage));
    }

    /** One scale per index along {@code axis} (negative counts from the end). */
    public static QuantScheme perChannel(DType storage, int axis) {
        return new QuantScheme(storage, Granularity.PER_CHANNEL, axis, 1, lo(storage), hi(storage));
    }

    /** One scale per {@code groupSize} consecutive elements along {@code axis}. */
    public static QuantScheme perGroup(DType storage, int axis, int groupSize) {
        if (groupSize < 1) {
            throw new IllegalArgumentException("QuantScheme.perGroup: group size " + groupSize + " must be >= 1");
        }
        return new QuantScheme(storage, Granularity.PER_GROUP, axis, groupSize, lo(storage), hi(storage));
    }

    /** The same scheme with the integer range narrowed to [qmin, qmax] (inside the storage's range). */
    public QuantScheme withRange(int qmin, int qmax) {
        if (storage.isFloat8()) {
            throw new IllegalArgumentException("QuantScheme.withRange: " + storage + " has no integer range");
        }
        if (qmin > qmax || qmin < lo(storage) || qmax > hi(storage)) {
            throw new IllegalArgumentException("QuantScheme.withRange: [" + qmin + ", " + qmax + "] is not inside "
                    + storage + "'s [" + lo(storage) + ", " + hi(storage) + "]");
        }
        return new QuantScheme(storage, granularity, axis, groupSize, qmin, qmax);
    }

    private static int lo(DType t) {
        return switch (t) {
            case INT8 -> -128;
            case UINT8 -> 0;
            case INT4 -> -8;
            case INT32 -> Integer.MIN_VALUE;
            case FLOAT8_E4M3, FLOAT8_E5M2 -> 0;
            default -> throw new IllegalArgumentException("QuantScheme: " + t + " is not a quantized storage dtype "
                    + "(int8, uint8, int4, int32, float8_e4m3, float8_e5m2)");
        };
    }

    private static int hi(DType t) {
        return switch (t) {
            case INT8 -> 127;
            case UINT8 -> 255;
            case INT4 -> 7;
            case INT32 -> Integer.MAX_VALUE;
            default -> 0;
        };
    }

    public DType storage() {
        return storage;
    }

    public Granularity granularity() {
        return granularity;
    }

    /** The axis as given (negative counts from the end); meaningless per tensor. */
    public int axis() {
        return axis;
    }

    /** Elements per group (1 unless per group). */
    public int groupSize() {
        return groupSize;
    }

    public int qmin() {
        return qmin;
    }

    public int qmax() {
        return qmax;
    }

    /** Whether values are stored as fp8 (no zero point). */
    public boolean isFloat8() {
        return storage.isFloat8();
    }

    /** The axis for data of rank {@code rank} (in [0, rank)), or -1 per tensor; {@code op} names the caller. */
    public int axisFor(String op, int rank) {
        if (granularity == Granularity.PER_TENSOR) {
            return -1;
        }
        if (axis < -rank || axis >= rank) {
            throw new IllegalArgumentException(op + ": axis " + axis + " of " + this + " is out of range for data of rank "
                    + rank);
        }
        return axis < 0 ? axis + rank : axis;
    }

    /** The shape of the scale and zero point for data of shape {@code data}; throws naming {@code op}. */
    public Shape paramShape(String op, Shape data) {
        int a = axisFor(op, data.rank());
        return switch (granularity) {
            case PER_TENSOR -> Shape.SCALAR;
            case PER_CHANNEL -> Shape.of(data.size(a));
            case PER_GROUP -> {
                long d = data.size(a);
                if (d % groupSize != 0) {
                    throw new IllegalArgumentException(op + ": group size " + groupSize + " does not divide dimension "
                            + a + " (size " + d + ") of the data " + data);
                }
                long[] dims = data.toArray();
                dims[a] = d / groupSize;
                yield Shape.of(dims);
            }
        };
    }

    /**
     * Element strides of the parameters for each data dimension (0 where they are shared): what
     * the kernels' {@code ct_quant_map} takes (quant.h).
     */
    long[] paramStrides(String op, Shape data) {
        long[] out = new long[data.rank()];
        int a = axisFor(op, data.rank());
        switch (granularity) {
            case PER_TENSOR -> { }
            case PER_CHANNEL -> out[a] = 1;
            case PER_GROUP -> {
                long[] s = paramShape(op, data).contiguousStrides();
                System.arraycopy(s, 0, out, 0, s.length);
            }
        }
        return out;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof QuantScheme q && q.storage == storage && q.granularity == granularity && q.axis == axis
                && q.groupSize == groupSize && q.qmin == qmin && q.qmax == qmax;
    }

    @Override
    public int hashCode() {
        return Objects.hash(storage, granularity, axis, groupSize, qmin, qmax);
    }

    /** {@code int8 per channel (axis 0) [-127, 127]}. */
    @Override
    public String toString() {
        String where = switch (granularity) {
            case PER_TENSOR -> "per tensor";
            case PER_CHANNEL -> "per channel (axis " + axis + ")";
            case PER_GROUP -> "per group of " + groupSize + " (axis " + axis + ")";
        };
        String range = storage.isFloat8() ? "" : (qmin != lo(storage) || qmax != hi(storage) ? " [" + qmin + ", " + qmax + "]" : "");
        return storage + " " + where + range;
    }
}
