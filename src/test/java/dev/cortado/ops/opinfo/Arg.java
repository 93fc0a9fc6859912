package dev.cortado.ops.opinfo;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.Arrays;

/**
 * One tensor input of a {@link Sample}: its logical values (row-major), dims and dtype, and
 * whether the op receives it as a non-contiguous view (stored transposed in its last two dims,
 * then transposed back, so the op sees the same logical values through swapped strides).
 *
 * @param grad whether the gradient check perturbs this input (floating inputs only)
 * @param fixed whether the dtype stays when the sample is converted (e.g. float32 per-channel statistics)
 */
public record Arg(double[] values, long[] dims, DType dtype, boolean transposed, boolean grad, boolean fixed) {

    public static Arg of(double[] values, DType dtype, long... dims) {
        return new Arg(values, dims, dtype, false, dtype.isFloatingPoint(), false);
    }

    /** An index (int64) input: no gradient. */
    public static Arg index(long[] values, long... dims) {
        double[] d = new double[values.length];
        for (int i = 0; i < d.length; i++) {
            d[i] = values[i];
        }
        return new Arg(d, dims, DType.INT64, false, false, true);
    }

    /** An int32 input (block tables, lengths): no gradient. */
    public static Arg int32(long[] values, long... dims) {
        double[] d = new double[values.length];
        for (int i = 0; i < d.length; i++) {
            d[i] = values[i];
        }
        return new Arg(d, dims, DType.INT32, false, false, true);
    }

    /** This input as a non-contiguous view (needs rank >= 2). */
    public Arg view() {
        if (dims.length < 2) {
            throw new IllegalArgumentException("a transposed view needs rank >= 2: " + Arrays.toString(dims));
        }
        return new Arg(values, dims, dtype, true, grad, fixed);
    }

    /** The values as a float32 input that keeps its dtype and takes no gradient. */
    public Arg float32() {
        return new Arg(values, dims, DType.FLOAT32, transposed, false, true);
    }

    /** Excluded from the gradient check (e.g. running statistics). */
    public Arg noGrad() {
        return new Arg(values, dims, dtype, transposed, false, fixed);
    }

    /** The same values in another floating dtype (integer and bool inputs keep theirs). */
    public Arg as(DType t) {
        return dtype.isFloatingPoint() && !fixed ? new Arg(values, dims, t, transposed, grad, fixed) : this;
    }

    public Arg contiguous() {
        return new Arg(values, dims, dtype, false, grad, fixed);
    }

    /** The tensor on {@code device} (created in the caller's Scope). */
    public Tensor tensor(Device device) {
        Tensor t;
        if (!transposed) {
            t = Reference.make(values, dtype, dims);
        } else {
            int r = dims.length;
            long[] sd = dims.clone();
            sd[r - 2] = dims[r - 1];
            sd[r - 1] = dims[r - 2];
            t = Reference.make(swapLast(values, dims), dtype, sd);
        }
        if (!device.equals(Device.CPU)) {
            t = t.to(device);
        }
        return transposed ? t.transpose(dims.length - 2, dims.length - 1) : t;
    }

    /** The values as the tensor stores them (16-bit dtypes round): the reference's input. */
    public double[] stored() {
        if (dtype == DType.FLOAT32) {
            return roundF32(values);
        }
        if (dtype != DType.BFLOAT16 && dtype != DType.FLOAT16) {
            return values;
        }
        try (Tensor t = Reference.make(values, dtype, dims)) {
            return Reference.values(t);
        }
    }

    public long numel() {
        return Reference.numel(dims);
    }

    private static double[] roundF32(double[] v) {
        double[] o = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            o[i] = (float) v[i];
        }
        return o;
    }

    /** Row-major values of the transpose of the last two dims. */
    private static double[] swapLast(double[] v, long[] dims) {
        int r = dims.length;
        int rows = (int) dims[r - 2];
        int cols = (int) dims[r - 1];
        int plane = rows * cols;
        double[] o = new double[v.length];
        for (int p = 0; p * plane < v.length && plane > 0; p++) {
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < cols; j++) {
                    o[p * plane + j * rows + i] = v[p * plane + i * cols + j];
                }
            }
        }
        return o;
    }

    @Override
    public String toString() {
        return dtype.name().toLowerCase() + Arrays.toString(dims) + (transposed ? " (transposed view)" : "");
    }
}
