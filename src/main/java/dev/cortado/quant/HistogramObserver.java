package dev.cortado.quant;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Calibration by a histogram of the observed values, per tensor or per channel (a per-channel
 * scheme's axis): the clipping range is chosen to ignore rare outliers instead of the overall
 * extremes of {@link MinMaxObserver}.
 * <ul>
 *   <li>{@link #percentile(QuantScheme, double)}: {@code [lo, hi]} are the {@code 1 - p} and
 *       {@code p} quantiles of the values (for a symmetric signed scheme, {@code hi} the
 *       {@code p} quantile of {@code |x|} and {@code lo = -hi});</li>
 *   <li>{@link #mse(QuantScheme)}: the range {@code f [min, max]}, {@code f} in
 *       {@code {0.005, 0.01, ..., 1}}, that minimizes the expected squared quantization error
 *       over the histogram: {@code s^2 / 12} for a value inside the range (rounding, uniform),
 *       {@code (v - clip(v))^2} outside (clipping), with {@code s = (hi - lo) / (qmax - qmin)}.</li>
 * </ul>
 * Each slot keeps {@value #BINS} bins over its running {@code [min, max]}; a batch that widens the
 * range re-bins the old counts at their bin centres. Zero is always inside the range (it must be
 * exactly representable); the scale and zero point follow from {@code [lo, hi]} as in
 * {@link MinMaxObserver} (affine, or symmetric for a signed scheme whose range is centred on 0).
 * The histograms live on the host: each batch is copied there once.
 */
public final class HistogramObserver implements Observer {
    static final int BINS = 2048;

    private enum Method { PERCENTILE, MSE }

    private final QuantScheme scheme;
    private final Method method;
    private final double p;
    private double[] lo;
    private double[] hi;
    private long[][] counts;

    private HistogramObserver(QuantScheme scheme, Method method, double p) {
        if (scheme.granularity() == QuantScheme.Granularity.PER_GROUP || scheme.isFloat8()) {
            throw new IllegalArgumentException("HistogramObserver: " + scheme + " is not an integer per-tensor or per-channel scheme");
        }
        this.scheme = scheme;
        this.method = method;
        this.p = p;
    }

    /** Clipping at the {@code p} quantile (e.g. 0.9999), {@code p} in (0.5, 1]. */
    public static HistogramObserver percentile(QuantScheme scheme, double p) {
        if (!(p > 0.5 && p <= 1)) {
            throw new IllegalArgumentException("HistogramObserver.percentile: " + p + " is not in (0.5, 1]");
        }
        return new HistogramObserver(scheme, Method.PERCENTILE, p);
    }

    /** The clipping range with the smallest expected squared quantization error. */
    public static HistogramObserver mse(QuantScheme scheme) {
        return new HistogramObserver(scheme, Method.MSE, 1);
    }

    @Override
    public QuantScheme scheme() {
        return scheme;
    }

    private boolean symmetric() {
        return scheme.qmin() < 0 && scheme.qmin() + scheme.qmax() <= 0;
    }

    @Override
    public void observe(Tensor x) {
        if (!x.dtype().isFloatingPoint() || x.dtype().isFloat8() || x.numel() == 0) {
            throw new IllegalArgumentException("HistogramObserver.observe: " + x.describe() + " is not a non-empty float tensor");
        }
        int rank = x.shape().rank();
        int axis = scheme.axisFor("HistogramObserver.observe", rank);
        long channels = axis < 0 ? 1 : x.dims()[axis];
        long inner = 1;
        for (int d = axis + 1; d < rank && axis >= 0; d++) {
            inner *= x.dims()[d];
        }
        float[] v;
        try (Tensor c = x.contiguous()) {
            v = c.toFloatArray();
        }
        if (lo != null && lo.length != channels) {
            throw new IllegalArgumentException("HistogramObserver.observe: " + x.describe() + " has " + channels
                    + " channels, earlier batches " + lo.length);
        }
        int n = (int) channels;
        double[] bmin = new double[n];
        double[] bmax = new double[n];
        Arrays.fill(bmin, Double.POSITIVE_INFINITY);
        Arrays.fill(bmax, Double.NEGATIVE_INFINITY);
        for (int i = 0; i < v.length; i++) {
            int ch = axis < 0 ? 0 : (int) ((i / inner) % channels);
            if (Float.isFinite(v[i])) {
                bmin[ch] = Math.min(bmin[ch], v[i]);
                bmax[ch] = Math.max(bmax[ch], v[i]);
            }
        }
        if (lo == null) {
            lo = new double[n];
            hi = new double[n];
            counts = new long[n][BINS];
            for (int ch = 0; ch < n; ch++) {
                lo[ch] = Math.min(0, bmin[ch]);
                hi[ch] = Math.max(0, bmax[ch]);
            }
        } else {
            for (int ch = 0; ch < n; ch++) {
                double nlo = Math.min(lo[ch], bmin[ch]);
                double nhi = Math.max(hi[ch], bmax[ch]);
                if (nlo < lo[ch] || nhi > hi[ch]) {
                    counts[ch] = rebin(counts[ch], lo[ch], hi[ch], nlo, nhi);
                    lo[ch] = nlo;
                    hi[ch] = nhi;
                }
            }
        }
        for (int i = 0; i < v.length; i++) {
            int ch = axis < 0 ? 0 : (int) ((i / inner) % channels);
            if (Float.isFinite(v[i])) {
                counts[ch][bin(v[i], lo[ch], hi[ch])]++;
            }
        }
    }

    private static int bin(double v, double lo, double hi) {
        if (hi <= lo) {
            return 0;
        }
        int b = (int) ((v - lo) / (hi - lo) * BINS);
        return Math.max(0, Math.min(BINS - 1, b));
    }

    private static double center(int b, double lo, double hi) {
        return lo + (b + 0.5) * (hi - lo) / BINS;
    }

    private static long[] rebin(long[] old, double lo, double hi, double nlo, double nhi) {
        long[] out = new long[BINS];
        for (int b = 0; b < BINS; b++) {
            if (old[b] != 0) {
                out[bin(center(b, lo, hi), nlo, nhi)] += old[b];
            }
        }
        return out;
    }

    /** {lo, hi} chosen for one slot. */
    private double[] range(int ch) {
        long[] c = counts[ch];
        double l = lo[ch];
        double h = hi[ch];
        long total = 0;
        for (long k : c) {
            total += k;
        }
        if (total == 0 || h <= l) {
            return new double[] {l, h};
        }
        if (method == Method.PERCENTILE) {
            if (symmetric()) {
                // quantile of |x|: fold the histogram around 0
                double amax = Math.max(-l, h);
                long[] mag = new long[BINS];
                for (int b = 0; b < BINS; b++) {
                    mag[bin(Math.abs(center(b, l, h)), 0, amax)] += c[b];
                }
                double top = quantile(mag, total, p, 0, amax);
                return new double[] {-top, top};
            }
            return new double[] {Math.min(0, quantile(c, total, 1 - p, l, h)), Math.max(0, quantile(c, total, p, l, h))};
        }
        double best = Double.POSITIVE_INFINITY;
        double[] out = {l, h};
        double amax = Math.max(-l, h);
        for (int step = 1; step <= 200; step++) {
            double f = step / 200.0;
            double cl = symmetric() ? -amax * f : l * f;
            double ch2 = symmetric() ? amax * f : h * f;
            double s = (ch2 - cl) / ((double) scheme.qmax() - scheme.qmin());
            double err = 0;
            for (int b = 0; b < BINS; b++) {
                if (c[b] == 0) {
                    continue;
                }
                double v = center(b, l, h);
                double d = v < cl ? cl - v : v > ch2 ? v - ch2 : 0;
                err += c[b] * (d * d + s * s / 12);
            }
            if (err < best) {
                best = err;
                out = new double[] {cl, ch2};
            }
        }
        return out;
    }

    /** The value below which a fraction q of the counts lies (linear inside the bin). */
    private static double quantile(long[] c, long total, double q, double lo, double hi) {
        double target = q * total;
        double seen = 0;
        double width = (hi - lo) / BINS;
        for (int b = 0; b < BINS; b++) {
            if (seen + c[b] >= target) {
                double frac = c[b] == 0 ? 0 : (target - seen) / c[b];
                return lo + (b + frac) * width;
            }
            seen += c[b];
        }
        return hi;
    }

    @Override
    public QuantParams params(Device device) {
        if (lo == null) {
            throw new IllegalStateException("HistogramObserver.params: nothing observed yet (" + scheme + ")");
        }
        int n = lo.length;
        float[] scale = new float[n];
        int[] zp = new int[n];
        int qmin = scheme.qmin();
        int qmax = scheme.qmax();
        for (int i = 0; i < n; i++) {
            double[] r = range(i);
            double l = Math.min(0, r[0]);
            double h = Math.max(0, r[1]);
            double s;
            int z;
            if (symmetric()) {
                s = Math.max(-l, h) / ((qmax - (double) qmin) / 2);
                z = 0;
            } else {
                s = (h - l) / ((double) qmax - qmin);
                z = s > 0 ? (int) Math.max(qmin, Math.min(qmax, qmin - Math.rint(l / s))) : 0;
            }
            scale[i] = s > 0 && Double.isFinite(s) ? (float) s : 1f;
            zp[i] = z;
        }
        long[] dims = scheme.granularity() == QuantScheme.Granularity.PER_TENSOR ? new long[0] : new long[] {n};
        try (Tensor sc = Tensor.of(scale, device, dims); Tensor z = Tensor.of(zp, device, dims)) {
            return QuantParams.of(scheme, sc, z);
        }
    }

    /** {@link #params(Device)} on the CPU. */
    public QuantParams params() {
        return params(Device.CPU);
    }

    @Override
    public String toString() {
        return "HistogramObserver(" + scheme + ", " + (method == Method.MSE ? "MSE" : "percentile " + p) + ")";
    }
}
