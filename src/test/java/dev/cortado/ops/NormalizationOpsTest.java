package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * softmax / logSoftmax / layerNorm / rmsNorm against float64 references on the stored inputs.
 * Tolerances: float64 1e-12; float32 2e-5 rel + 1e-6 abs (float32 exp polynomial, float32 row
 * sums; log-softmax values reach -10 so the abs part matters); bfloat16 1e-2 rel + 1e-3 abs and
 * float16 2e-3 rel + 1e-4 abs (float32 compute, one rounding of the output).
 */
public class NormalizationOpsTest {
    static Tol tol(DType t) {
        return switch (t) {
            case FLOAT64 -> new Tol(1e-12, 1e-12);
            case FLOAT32 -> new Tol(2e-5, 1e-6);
            case BFLOAT16 -> new Tol(1e-2, 1e-3);
            default -> new Tol(2e-3, 1e-4);
        };
    }

    /** Softmax (or log-softmax) of contiguous x with dims along axis, in float64. */
    public static double[] softmaxRef(double[] x, long[] dims, int axis, boolean log) {
        int ax = axis < 0 ? axis + dims.length : axis;
        long outer = 1;
        long inner = 1;
        for (int d = 0; d < ax; d++) {
            outer *= dims[d];
        }
        for (int d = ax + 1; d < dims.length; d++) {
            inner *= dims[d];
        }
        int len = (int) dims[ax];
        double[] y = new double[x.length];
        for (long o = 0; o < outer; o++) {
            for (long i = 0; i < inner; i++) {
                double m = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < len; j++) {
                    m = Math.max(m, x[(int) ((o * len + j) * inner + i)]);
                }
                double s = 0;
                for (int j = 0; j < len; j++) {
                    s += Math.exp(x[(int) ((o * len + j) * inner + i)] - m);
                }
                for (int j = 0; j < len; j++) {
                    int p = (int) ((o * len + j) * inner + i);
                    y[p] = log ? x[p] - m - Math.log(s) : Math.exp(x[p] - m) / s;
                }
            }
        }
        return y;
    }

    @TestFactory
    List<DynamicTest> softmaxAlongEveryAxis() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 1;
        long[] dims = {3, 4, 5};
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
            for (int axis : new int[] {0, 1, 2, -1, -2}) {
                for (boolean log : new boolean[] {false, true}) {
                    long s = seed++;
                    tests.add(dynamicTest((log ? "logSoftmax " : "softmax ") + t + " axis " + axis, () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(s);
                            Tensor x = Reference.make(Reference.uniform(r, 60, -4, 4), t, dims);
                            double[] xv = x.toDoubleArray();
                            Tensor y = log ? Normalization.logSoftmax(x, axis) : Normalization.softmax(x, axis);
                            assertEquals(t, y.dtype());
                            assertArrayEquals(dims, y.dims());
                            assertClose(softmaxRef(xv, dims, axis, log), y.toDoubleArray(), tol(t), "softmax " + t + " " + axis);
                            // a permuted (non-contiguous) input [5, 3, 4]
                            Tensor p = x.permute(2, 0, 1);
                            double[] pv = Reference.viewOf(xv, p);
                            Tensor yp = log ? Normalization.logSoftmax(p, axis) : Normalization.softmax(p, axis);
                            assertClose(softmaxRef(pv, p.dims(), axis, log), yp.toDoubleArray(), tol(t), "permuted " + axis);
                        }
                    }));
                }
            }
        }
        return tests;
    }

    @Test
    void softmaxWideRows() {
        try (var scope = Scope.open()) {
            Random r = new Random(2);
            long[] dims = {64, 1000};
            for (DType t : new DType[] {DType.FLOAT32, DType.BFLOAT16}) {
                Tensor x = Reference.make(Reference.uniform(r, 64000, -10, 10), t, dims);
                double[] xv = x.toDoubleArray();
                assertClose(softmaxRef(xv, dims, -1, false), Normalization.softmax(x, -1).toDoubleArray(),
                        new Tol(tol(t).rel(), 1e-7), "softmax [64, 1000] " + t);
                assertClose(softmaxRef(xv, dims, -1, true), Normalization.logSoftmax(x, -1).toDoubleArray(),
                        tol(t).scaled(2), "logSoftmax [64, 1000] " + t);
            }
            // large offsets: the max subtraction keeps exp in range
            double[] big = Reference.uniform(r, 10, 1000, 1010);
            Tensor xb = Reference.make(big, DType.FLOAT32, 2, 5);
            assertClose(softmaxRef(xb.toDoubleArray(), new long[] {2, 5}, 1, false),
                    Normalization.softmax(xb, 1).toDoubleArray(), tol(DType.FLOAT32), "offset 1000");
        }
    }

    @Test
    void infinities() {
        try (var scope = Scope.open()) {
            double ninf = Double.NEGATIVE_INFINITY;
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16}) {
                Tensor x = Reference.make(new double[] {ninf, ninf, ninf, 1, ninf, 2, 0.5, 0.5, 0.5}, t, 3, 3);
                double[] y = Normalization.softmax(x, 1).toDoubleArray();
                assertTrue(Double.isNaN(y[0]) && Double.isNaN(y[1]) && Double.isNaN(y[2]), "all -inf row is NaN: " + Arrays.toString(y));
                double e = Math.exp(-1);
                assertClose(new double[] {e / (1 + e), 0, 1 / (1 + e), 1 / 3.0, 1 / 3.0, 1 / 3.0},
                        Arrays.copyOfRange(y, 3, 9), tol(t), "some -inf " + t);
                double[] ly = Normalization.logSoftmax(x, 1).toDoubleArray();
                assertTrue(Double.isNaN(ly[0]), "log_softmax all -inf row NaN");
                assertEquals(ninf, ly[4], "log_softmax of -inf is -inf " + t);
                assertClose(new double[] {-1 - Math.log(1 + e), -Math.log(1 + e)}, new double[] {ly[3], ly[5]}, tol(t), "log " + t);
            }
        }
    }

    public static double[] layerNormRef(double[] x, int cols, double[] w, double[] b, double eps, boolean rms) {
        double[] y = new double[x.length];
        for (int r = 0; r < x.length / cols; r++) {
            double mean = 0;
            for (int c = 0; c < cols; c++) {
                mean += x[r * cols + c];
            }
            mean /= cols;
            double v = 0;
            for (int c = 0; c < cols; c++) {
                double d = rms ? x[r * cols + c] : x[r * cols + c] - mean;
                v += d * d;
            }
            v /= cols;
            double inv = 1 / Math.sqrt(v + eps);
            for (int c = 0; c < cols; c++) {
                double d = rms ? x[r * cols + c] : x[r * cols + c] - mean;
                y[r * cols + c] = d * inv * (w == null ? 1 : w[c]) + (b == null ? 0 : b[c]);
            }
        }
        return y;
    }

    /**
     * Outputs of 32 MiB and more with rows of whole cache lines go out with non-temporal stores
     * (softmax through a per-thread scratch row); rows of 1000 floats take the ordinary stores at
     * the same size. float32 against the float64 references, the tolerance of the small cases.
     */
    @Test
    void largeOutputsStreamedPastTheCaches() {
        for (int cols : new int[] {1024, 1000}) {
            int rows = (int) ((33L << 20) / 4 / cols) + 3;
            Random r = new Random(cols);
            float[] xf = new float[rows * cols];
            double[] x = new double[xf.length];
            for (int i = 0; i < xf.length; i++) {
                xf[i] = (float) (r.nextGaussian() * 3 + 0.5);
                x[i] = xf[i];
            }
            double[] w = new double[cols];
            double[] b = new double[cols];
            float[] wf = new float[cols];
            float[] bf = new float[cols];
            for (int c = 0; c < cols; c++) {
                wf[c] = (float) (0.5 + r.nextDouble());
                bf[c] = (float) r.nextGaussian();
                w[c] = wf[c];
                b[c] = bf[c];
            }
            Tol tol = tol(DType.FLOAT32);
            String shape = "[" + rows + ", " + cols + "]";
            try (Scope scope = Scope.open()) {
                Tensor xt = Tensor.of(xf, rows, cols);
                Tensor wt = Tensor.of(wf, cols);
                Tensor bt = Tensor.of(bf, cols);
                long[] dims = {rows, cols};
                assertClose(softmaxRef(x, dims, 1, false), Normalization.softmax(xt, 1).toDoubleArray(), tol,
                        "softmax " + shape);
                assertClose(softmaxRef(x, dims, 1, true), Normalization.logSoftmax(xt, 1).toDoubleArray(), tol,
                        "logSoftmax " + shape);
                assertClose(layerNormRef(x, cols, w, b, 1e-5, false),
                        Normalization.layerNorm(xt, wt, bt, 1, 1e-5).toDoubleArray(), tol, "layerNorm " + shape);
                assertClose(layerNormRef(x, cols, w, null, 1e-5, true),
                        Normalization.rmsNorm(xt, wt, 1, 1e-5).toDoubleArray(), tol, "rmsNorm " + shape);
            }
        }
    }

    /**
     * A NaN anywhere in a row makes the whole normalized row NaN (as PyTorch does), in layer norm and
     * RMS norm alike, for rows that take the vector path (long rows) and the tail; the other rows
     * are unaffected.
     */
    @Test
    void aNanInARowMakesThatRowNan() {
        for (int cols : new int[] {7, 64, 333}) {
            float[] xf = new float[3 * cols];
            Random r = new Random(cols);
            for (int i = 0; i < xf.length; i++) {
                xf[i] = (float) r.nextGaussian();
            }
            xf[cols + cols / 2] = Float.NaN;
            try (Scope scope = Scope.open()) {
                Tensor xt = Tensor.of(xf, 3, cols);
                for (Tensor y : new Tensor[] {Normalization.layerNorm(xt, null, null, 1, 1e-5),
                        Normalization.rmsNorm(xt, null, 1, 1e-5)}) {
                    float[] v = y.toFloatArray();
                    for (int i = 0; i < v.length; i++) {
                        boolean nanRow = i / cols == 1;
                        assertEquals(nanRow, Float.isNaN(v[i]), "cols " + cols + ", element " + i + ": " + v[i]);
                    }
                }
            }
        }
    }

    /**
     * The float32 layer norm takes the mean and variance in one pass, shifted by the row's first
     * value: rows far from zero (mean 1e4, deviation 1), and rows whose first value is an outlier
     * (1e6 among values of deviation 1), against the two-pass float64 reference.
     */
    @Test
    void layerNormOfRowsFarFromZeroAndWithOutliers() {
        int rows = 6;
        int cols = 333;
        Random r = new Random(5);
        float[] xf = new float[rows * cols];
        double[] x = new double[xf.length];
        for (int i = 0; i < xf.length; i++) {
            int row = i / cols;
            boolean first = i % cols == 0;
            double v = row < 3 ? 1e4 + r.nextGaussian() : (first ? 1e6 : r.nextGaussian());
            xf[i] = (float) v;
            x[i] = xf[i];
        }
        try (Scope scope = Scope.open()) {
            Tensor xt = Tensor.of(xf, rows, cols);
            assertClose(layerNormRef(x, cols, null, null, 1e-5, false),
                    Normalization.layerNorm(xt, null, null, 1, 1e-5).toDoubleArray(), tol(DType.FLOAT32),
                    "layerNorm of rows far from zero / with an outlier first");
        }
    }

    @TestFactory
    List<DynamicTest> layerNormAndRmsNorm() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 100;
        long[] dims = {3, 4, 7};
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
            for (int k : new int[] {1, 2}) {
                for (int params = 0; params < 3; params++) {
                    for (double eps : new double[] {1e-5, 0.5}) {
                        for (boolean rms : new boolean[] {false, true}) {
                            if (rms && params == 2) {
                                continue;
                            }
                            long s = seed++;
                            int p = params;
                            tests.add(dynamicTest((rms ? "rmsNorm " : "layerNorm ") + t + " dims " + k + " params " + p + " eps " + eps,
                                    () -> {
                                try (var scope = Scope.open()) {
                                    Random r = new Random(s);
                                    long[] nd = Arrays.copyOfRange(dims, dims.length - k, dims.length);
                                    int cols = (int) Reference.numel(nd);
                                    Tensor x = Reference.make(Reference.uniform(r, 84, -3, 3).clone(), t, dims);
                                    // a non-zero mean per row so centring matters
                                    x = Elementwise.add(x, 1.5);
                                    double[] xv = x.toDoubleArray();
                                    Tensor w = p >= 1 ? Reference.make(Reference.uniform(r, cols, 0.5, 2), t, nd) : null;
                                    Tensor b = p >= 2 ? Reference.make(Reference.uniform(r, cols, -1, 1), t, nd) : null;
                                    double[] wv = w == null ? null : w.toDoubleArray();
                                    double[] bv = b == null ? null : b.toDoubleArray();
                                    Tensor y = rms ? Normalization.rmsNorm(x, w, k, eps) : Normalization.layerNorm(x, w, b, k, eps);
                                    assertEquals(t, y.dtype());
                                    assertArrayEquals(dims, y.dims());
                                    Tol tol = t == DType.FLOAT32 ? new Tol(1e-4, 1e-5) : tol(t).scaled(2);
                                    assertClose(layerNormRef(xv, cols, wv, bv, eps, rms), y.toDoubleArray(), tol,
                                            (rms ? "rmsNorm " : "layerNorm ") + t);
                                    // non-contiguous input: the same values through a transposed copy's transpose
                                    Tensor xt = x.transpose(0, 1).contiguous().transpose(0, 1);
                                    Tensor yt = rms ? Normalization.rmsNorm(xt, w, k, eps) : Normalization.layerNorm(xt, w, b, k, eps);
                                    assertClose(layerNormRef(xv, cols, wv, bv, eps, rms), yt.toDoubleArray(), tol, "non-contiguous");
                                }
                            }));
                        }
                    }
                }
            }
        }
        return tests;
    }

    @Test
    void epsMatters() {
        try (var scope = Scope.open()) {
            // a constant row has variance 0: the output is 0 for layerNorm and x/sqrt(x^2 + eps) for rmsNorm
            Tensor x = Tensor.of(new double[] {2, 2, 2, 2}, 1, 4);
            assertArrayEquals(new double[4], Normalization.layerNorm(x, null, null, 1, 1e-5).toDoubleArray(), 0.0);
            double want = 2 / Math.sqrt(4 + 5);
            assertClose(new double[] {want, want, want, want}, Normalization.rmsNorm(x, null, 1, 5).toDoubleArray(),
                    tol(DType.FLOAT64), "rms eps 5");
            Tensor z = Tensor.of(new float[] {1, -1, 1, -1}, 4);
            double l = 1 / Math.sqrt(1 + 3);
            assertClose(new double[] {l, -l, l, -l}, Normalization.layerNorm(z, null, null, 1, 3).toDoubleArray(),
                    tol(DType.FLOAT32), "layerNorm eps 3");
        }
    }

    @Test
    void badInputsNameTheOpAndShapes() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.zeros(DType.FLOAT32, 2, 3);
            Tensor w = Tensor.ones(DType.FLOAT32, 4);
            var e = assertThrows(IllegalArgumentException.class, () -> Normalization.layerNorm(x, w, null, 1, 1e-5));
            assertTrue(e.getMessage().contains("layer_norm") && e.getMessage().contains("[4]")
                    && e.getMessage().contains("[2, 3]"), e.getMessage());
            var e2 = assertThrows(IllegalArgumentException.class, () -> Normalization.rmsNorm(x, w, 1, 1e-5));
            assertTrue(e2.getMessage().contains("rms_norm") && e2.getMessage().contains("[4]"), e2.getMessage());
            var e3 = assertThrows(IllegalArgumentException.class, () -> Normalization.softmax(x, 2));
            assertTrue(e3.getMessage().contains("softmax") && e3.getMessage().contains("[2, 3]"), e3.getMessage());
            var e4 = assertThrows(IllegalArgumentException.class, () -> Normalization.layerNorm(x, null, null, 3, 1e-5));
            assertTrue(e4.getMessage().contains("layer_norm") && e4.getMessage().contains("[2, 3]"), e4.getMessage());
            var e5 = assertThrows(IllegalArgumentException.class,
                    () -> Normalization.softmax(Tensor.zeros(DType.INT32, 2, 3), 1));
            assertTrue(e5.getMessage().contains("softmax") && e5.getMessage().contains("int32[2, 3]"), e5.getMessage());
            var e6 = assertThrows(IllegalArgumentException.class,
                    () -> Normalization.layerNorm(x, Tensor.ones(DType.FLOAT64, 3), null, 1, 1e-5));
            assertTrue(e6.getMessage().contains("layer_norm") && e6.getMessage().contains("float64"), e6.getMessage());
            var e7 = assertThrows(IllegalArgumentException.class, () -> Normalization.layerNorm(x, null, null, 1, -1));
            assertTrue(e7.getMessage().contains("eps"), e7.getMessage());
        }
    }
}
