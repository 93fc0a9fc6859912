package dev.cortado.quant;

import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Calibration by the observed range: {@link #observe} folds each batch's minimum and maximum
 * per parameter slot of the scheme (per tensor, per channel, per group) into running values,
 * either the overall extremes (min-max) or an exponential moving average of each batch's
 * extremes ({@link #movingAverage}, as PyTorch's MovingAverageMinMaxObserver); {@link #params}
 * turns them into scales and zero points:
 * <ul>
 *   <li>affine: {@code lo = min(0, min)}, {@code hi = max(0, max)}, {@code s = (hi - lo) / (qmax - qmin)},
 *       {@code z = clamp(qmin - rne(lo / s), qmin, qmax)} (0 is exactly representable);</li>
 *   <li>symmetric ({@link #symmetric}): {@code s = max(|lo|, |hi|) / ((qmax - qmin) / 2)},
 *       {@code z = 0} (int8, int4) or the middle of the range (uint8);</li>
 *   <li>fp8: {@code s = max(|lo|, |hi|) / max_finite} (448 for E4M3, 57344 for E5M2), no zero point.</li>
 * </ul>
 * A slot that saw only zeros gets scale 1. The running values live on the host (one pair of
 * doubles per slot); the reductions run on the data's device. Immutable configuration, mutable
 * running state: one observer per tensor being calibrated.
 */
public final class MinMaxObserver implements Observer {
    private final QuantScheme scheme;
    private final boolean symmetric;
    private final double averaging;
    private double[] lo;
    private double[] hi;
    private Shape paramShape;

    private MinMaxObserver(QuantScheme scheme, boolean symmetric, double averaging) {
        this.scheme = scheme;
        this.symmetric = symmetric;
        this.averaging = averaging;
    }

    /** Affine min-max calibration for {@code scheme}. */
    public static MinMaxObserver of(QuantScheme scheme) {
        return new MinMaxObserver(scheme, scheme.isFloat8(), 0);
    }

    /** The same observer with symmetric parameters (zero point 0, or the range's middle for uint8). */
    public MinMaxObserver symmetric() {
        return new MinMaxObserver(scheme, true, averaging);
    }

    /**
     * The same observer averaging each batch's extremes: {@code run = run + c * (batch - run)}
     * after the first batch; {@code c} in (0, 1].
     */
    public MinMaxObserver movingAverage(double c) {
        if (!(c > 0 && c <= 1)) {
            throw new IllegalArgumentException("MinMaxObserver.movingAverage: " + c + " is not in (0, 1]");
        }
        return new MinMaxObserver(scheme, symmetric, c);
    }

    @Override
    public QuantScheme scheme() {
        return scheme;
    }

    /** Folds the extremes of {@code x} (floating, any shape the scheme fits) into the running range. */
    @Override
    public void observe(Tensor x) {
        if (!x.dtype().isFloatingPoint() || x.dtype().isFloat8()) {
            throw new IllegalArgumentException("MinMaxObserver.observe: " + x.describe() + " is not a float tensor");
        }
        Shape ps = scheme.paramShape("MinMaxObserver.observe", x.shape());
        if (paramShape != null && !paramShape.equals(ps)) {
            throw new IllegalArgumentException("MinMaxObserver.observe: " + x.describe() + " gives parameters of shape " + ps
                    + ", earlier batches gave " + paramShape);
        }
        double[][] ext = extremes(x);
        if (lo == null) {
            paramShape = ps;
            lo = ext[0];
            hi = ext[1];
            return;
        }
        for (int i = 0; i < lo.length; i++) {
            if (averaging > 0) {
                lo[i] += averaging * (ext[0][i] - lo[i]);
                hi[i] += averaging * (ext[1][i] - hi[i]);
            } else {
                lo[i] = Math.min(lo[i], ext[0][i]);
                hi[i] = Math.max(hi[i], ext[1][i]);
            }
        }
    }

    /** Per-slot {min, max} of x, in the order of the parameter shape. */
    private double[][] extremes(Tensor x) {
        int rank = x.shape().rank();
        int axis = scheme.axisFor("MinMaxObserver.observe", rank);
        if (x.numel() == 0) {
            throw new IllegalArgumentException("MinMaxObserver.observe: " + x.describe() + " is empty");
        }
        switch (scheme.granularity()) {
            case PER_TENSOR -> {
                try (Tensor mn = Reductions.min(x); Tensor mx = Reductions.max(x)) {
                    return new double[][] {{mn.item()}, {mx.item()}};
                }
            }
            case PER_CHANNEL -> {
                int[] others = new int[rank - 1];
                for (int d = 0, j = 0; d < rank; d++) {
                    if (d != axis) {
                        others[j++] = d;
                    }
                }
                if (others.length == 0) {
                    return new double[][] {x.toDoubleArray(), x.toDoubleArray()};
                }
                try (Tensor mn = Reductions.min(x, false, others); Tensor mx = Reductions.max(x, false, others)) {
                    return new double[][] {mn.toDoubleArray(), mx.toDoubleArray()};
                }
            }
            default -> {
                // split the axis into (groups, g) and reduce over g: the result has the parameter shape
                long[] d = x.dims();
                long[] split = new long[rank + 1];
                for (int i = 0, j = 0; i < rank; i++) {
                    if (i == axis) {
                        split[j++] = d[i] / scheme.groupSize();
                        split[j++] = scheme.groupSize();
                    } else {
                        split[j++] = d[i];
                    }
                }
                try (Tensor c = x.contiguous(); Tensor v = c.reshape(split);
                     Tensor mn = Reductions.min(v, false, axis + 1); Tensor mx = Reductions.max(v, false, axis + 1)) {
                    return new double[][] {mn.toDoubleArray(), mx.toDoubleArray()};
                }
            }
        }
    }

    /** The scales and zero points for the range seen so far, on {@code device}. */
    @Override
    public QuantParams params(Device device) {
        if (lo == null) {
            throw new IllegalStateException("MinMaxObserver.params: nothing observed yet (" + scheme + ")");
        }
        int n = lo.length;
        float[] scale = new float[n];
        int[] zp = new int[n];
        int qmin = scheme.qmin();
        int qmax = scheme.qmax();
        for (int i = 0; i < n; i++) {
            double l = Math.min(0, lo[i]);
            double h = Math.max(0, hi[i]);
            double amax = Math.max(-l, h);
            double s;
            int z;
            if (scheme.isFloat8()) {
                s = amax / (scheme.storage() == DType.FLOAT8_E4M3 ? 448.0 : 57344.0);
                z = 0;
            } else if (symmetric) {
                s = amax / ((qmax - (double) qmin) / 2);
                z = scheme.storage() == DType.UINT8 ? (qmin + qmax + 1) / 2 : 0;
            } else {
                s = (h - l) / ((double) qmax - qmin);
                z = s > 0 ? (int) Math.max(qmin, Math.min(qmax, qmin - Math.rint(l / s))) : 0;
            }
            scale[i] = s > 0 && Double.isFinite(s) ? (float) s : 1f;
            zp[i] = z;
        }
        long[] dims = paramShape.toArray();
        try (Tensor sc = Tensor.of(scale, device, dims); Tensor z = scheme.isFloat8() ? null : Tensor.of(zp, device, dims)) {
            return QuantParams.of(scheme, sc, z);
        }
    }

    /** {@link #params(Device)} on the CPU. */
    public QuantParams params() {
        return params(Device.CPU);
    }

    /** The running minimum per slot (a copy). */
    public double[] min() {
        return lo == null ? new double[0] : lo.clone();
    }

    /** The running maximum per slot (a copy). */
    public double[] max() {
        return hi == null ? new double[0] : hi.clone();
    }

    @Override
    public String toString() {
        return "MinMaxObserver(" + scheme + (symmetric ? ", symmetric" : "") + (averaging > 0 ? ", moving average "
                + averaging : "") + ", min=" + Arrays.toString(min()) + ", max=" + Arrays.toString(max()) + ")";
    }
}
