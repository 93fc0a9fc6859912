package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.ops.BatchNorm.BatchNormAttrs;
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
 * batch_norm_training / batch_norm_inference / batch_norm_backward and the conv folding against
 * float64 references written here (NCHW loops; NHWC inputs are permuted copies), plus central
 * finite differences in float64. Tolerances: float32 1e-4 relative (+1e-5 absolute: outputs
 * near zero), float64 1e-10; saved and running statistics are float32 (1e-6 relative).
 */
public class BatchNormOpsTest {
    static Tol tol(DType t) {
        return t == DType.FLOAT64 ? new Tol(1e-10, 1e-12) : new Tol(1e-4, 1e-5);
    }

    static final Tol STATS = new Tol(1e-6, 1e-7);

    /** {mean, biased var} per channel of NCHW x [n, c, s]. */
    public static double[][] stats(double[] x, int n, int c, int s) {
        double[] mean = new double[c];
        double[] var = new double[c];
        for (int ch = 0; ch < c; ch++) {
            double sum = 0;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < s; j++) {
                    sum += x[(i * c + ch) * s + j];
                }
            }
            mean[ch] = sum / (n * s);
            double sq = 0;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < s; j++) {
                    double d = x[(i * c + ch) * s + j] - mean[ch];
                    sq += d * d;
                }
            }
            var[ch] = sq / (n * s);
        }
        return new double[][] {mean, var};
    }

    public static double[] normalize(double[] x, int n, int c, int s, double[] mean, double[] var, double eps, double[] g,
                              double[] b) {
        double[] y = new double[x.length];
        for (int i = 0; i < n; i++) {
            for (int ch = 0; ch < c; ch++) {
                double r = 1 / Math.sqrt(var[ch] + eps);
                for (int j = 0; j < s; j++) {
                    int p = (i * c + ch) * s + j;
                    y[p] = (x[p] - mean[ch]) * r * g[ch] + b[ch];
                }
            }
        }
        return y;
    }

    /** {dx, dgamma, dbeta} from the given statistics (mean, rstd). */
    public static double[][] backwardRef(double[] dy, double[] x, int n, int c, int s, double[] g, double[] mean,
                                  double[] rstd) {
        double[] dx = new double[x.length];
        double[] dg = new double[c];
        double[] db = new double[c];
        double m = n * s;
        for (int ch = 0; ch < c; ch++) {
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < s; j++) {
                    int p = (i * c + ch) * s + j;
                    db[ch] += dy[p];
                    dg[ch] += dy[p] * (x[p] - mean[ch]) * rstd[ch];
                }
            }
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < s; j++) {
                    int p = (i * c + ch) * s + j;
                    double xh = (x[p] - mean[ch]) * rstd[ch];
                    dx[p] = g[ch] * rstd[ch] * (dy[p] - db[ch] / m - xh * dg[ch] / m);
                }
            }
        }
        return new double[][] {dx, dg, db};
    }

    static double[] f32(double[] v) {
        double[] r = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            r[i] = (float) v[i];
        }
        return r;
    }

    static Tensor vec(double[] v) {
        return Reference.make(v, DType.FLOAT32, v.length);
    }

    static final long[][] SHAPES = {{3, 4, 5, 6}, {2, 3, 7}, {4, 5}, {2, 3, 3, 4, 5}, {1, 2, 9, 9}};

    /** {n, c, s} of an NCHW shape. */
    static int[] ncs(long[] d) {
        int s = 1;
        for (int i = 2; i < d.length; i++) {
            s *= (int) d[i];
        }
        return new int[] {(int) d[0], (int) d[1], s};
    }

    @TestFactory
    List<DynamicTest> trainingInferenceBackward() {
        List<DynamicTest> tests = new ArrayList<>();
        for (long[] dims : SHAPES) {
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                for (DataLayout l : DataLayout.values()) {
                    tests.add(dynamicTest("batch_norm " + Arrays.toString(dims) + " " + t + " " + l, () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(Arrays.hashCode(dims) + 13L * t.ordinal() + l.ordinal());
                            int[] k = ncs(dims);
                            int n = k[0];
                            int c = k[1];
                            int s = k[2];
                            // an offset far from zero exercises the variance's cancellation
                            double[] raw = Reference.uniform(r, n * c * s, -1, 1);
                            for (int i = 0; i < raw.length; i++) {
                                raw[i] = raw[i] * (1 + (i / s) % c) + 3 * ((i / s) % c);
                            }
                            Tensor xn = Reference.make(raw, t, dims);
                            double[] xv = Reference.values(xn);
                            Tensor x = PoolingOpsTest.toLayout(xn, l);
                            double[] g = f32(Reference.uniform(r, c, 0.5, 1.5));
                            double[] b = f32(Reference.uniform(r, c, -1, 1));
                            double[] rm0 = f32(Reference.uniform(r, c, -0.5, 0.5));
                            double[] rv0 = f32(Reference.uniform(r, c, 0.5, 2));
                            Tensor rm = vec(rm0);
                            Tensor rv = vec(rv0);
                            BatchNormAttrs a = new BatchNormAttrs(1e-5, 0.1, l);
                            String what = "batch_norm " + Reference.dims(x.dims()) + " " + t + " " + l;

                            Tensor[] out = BatchNorm.training(x, vec(g), vec(b), rm, rv, a);
                            double[][] st = stats(xv, n, c, s);
                            double[] rstd = new double[c];
                            double[] wantRm = new double[c];
                            double[] wantRv = new double[c];
                            for (int ch = 0; ch < c; ch++) {
                                rstd[ch] = 1 / Math.sqrt(st[1][ch] + 1e-5);
                                wantRm[ch] = 0.9 * rm0[ch] + 0.1 * st[0][ch];
                                wantRv[ch] = 0.9 * rv0[ch] + 0.1 * st[1][ch] * (n * s) / (n * s - 1.0);
                            }
                            assertClose(normalize(xv, n, c, s, st[0], st[1], 1e-5, g, b),
                                    PoolingOpsTest.fromLayout(out[0], l), tol(t), what + " y");
                            assertClose(st[0], out[1].toDoubleArray(), STATS, what + " save_mean");
                            assertClose(rstd, out[2].toDoubleArray(), STATS, what + " save_rstd");
                            assertClose(wantRm, rm.toDoubleArray(), STATS, what + " running_mean");
                            assertClose(wantRv, rv.toDoubleArray(), STATS, what + " running_var (unbiased)");

                            // inference with the updated running statistics
                            double[] rmv = rm.toDoubleArray();
                            double[] rvv = rv.toDoubleArray();
                            Tensor yi = BatchNorm.inference(x, vec(g), vec(b), rm, rv, a);
                            assertClose(normalize(xv, n, c, s, rmv, rvv, 1e-5, g, b), PoolingOpsTest.fromLayout(yi, l),
                                    tol(t), what + " inference");

                            // backward with the saved statistics
                            Tensor dyn = Reference.make(Reference.uniform(r, xv.length, -1, 1), t, dims);
                            double[] dyv = Reference.values(dyn);
                            Tensor[] grads = BatchNorm.backward(PoolingOpsTest.toLayout(dyn, l), x, vec(g), out[1],
                                    out[2], a);
                            double[][] want = backwardRef(dyv, xv, n, c, s, g, out[1].toDoubleArray(),
                                    out[2].toDoubleArray());
                            assertClose(want[0], PoolingOpsTest.fromLayout(grads[0], l), tol(t), what + " dx");
                            Tol gt = new Tol(1e-5, 1e-5);
                            assertClose(want[1], grads[1].toDoubleArray(), gt, what + " dgamma");
                            assertClose(want[2], grads[2].toDoubleArray(), gt, what + " dbeta");
                        }
                    }));
                }
            }
        }
        return tests;
    }

    @Test
    void optionalInputs() {
        try (var scope = Scope.open()) {
            Random r = new Random(4);
            double[] xv = Reference.uniform(r, 2 * 3 * 4, -2, 2);
            Tensor x = Tensor.of(xv, 2, 3, 4);
            Tensor[] out = BatchNorm.training(x, null, null, null, null, BatchNormAttrs.defaults());
            double[][] st = stats(xv, 2, 3, 4);
            double[] ones = {1, 1, 1};
            double[] zeros = {0, 0, 0};
            assertClose(normalize(xv, 2, 3, 4, st[0], st[1], 1e-5, ones, zeros), out[0].toDoubleArray(),
                    tol(DType.FLOAT64), "no affine, no running stats");
            double[] dy = Reference.uniform(r, xv.length, -1, 1);
            Tensor[] gr = BatchNorm.backward(Tensor.of(dy, 2, 3, 4), x, null, out[1], out[2], BatchNormAttrs.defaults());
            assertClose(backwardRef(dy, xv, 2, 3, 4, ones, out[1].toDoubleArray(), out[2].toDoubleArray())[0],
                    gr[0].toDoubleArray(), tol(DType.FLOAT64), "backward without gamma");
        }
    }

    // ------------------------------------------------------------------ finite differences (float64)
    static double loss(double[] xv, long[] dims, double[] g, double[] b, double[] dy, DataLayout l) {
        try (Tensor x = Tensor.of(xv, dims); Tensor gt = vec(g); Tensor bt = vec(b)) {
            Tensor[] o = BatchNorm.training(x, gt, bt, null, null, new BatchNormAttrs(1e-5, 0.1, l));
            double[] y = o[0].toDoubleArray();
            for (Tensor t : o) {
                t.close();
            }
            double s = 0;
            for (int i = 0; i < y.length; i++) {
                s += y[i] * dy[i];
            }
            return s;
        }
    }

    @Test
    void backwardMatchesFiniteDifferences() {
        try (var scope = Scope.open()) {
            for (DataLayout l : DataLayout.values()) {
                Random r = new Random(17 + l.ordinal());
                long[] dims = l == DataLayout.NCHW ? new long[] {2, 3, 2, 2} : new long[] {2, 2, 2, 3};
                int c = (int) (l == DataLayout.NCHW ? dims[1] : dims[3]);
                double[] xv = Reference.uniform(r, 24, -2, 2);
                double[] dy = Reference.uniform(r, 24, -1, 1);
                // gamma, beta on a 1/8 grid and h = 1/64: exact in float32 (the loss is linear in them)
                double[] g = {0.75, 1.25, 1.5};
                double[] b = {-0.5, 0.25, 0.125};
                Tensor x = Tensor.of(xv, dims);
                BatchNormAttrs a = new BatchNormAttrs(1e-5, 0.1, l);
                Tensor[] out = BatchNorm.training(x, vec(g), vec(b), null, null, a);
                Tensor[] gr = BatchNorm.backward(Tensor.of(dy, dims), x, vec(g), out[1], out[2], a);
                double h = 1e-5;
                double[] fdx = new double[xv.length];
                for (int i = 0; i < xv.length; i++) {
                    double[] xp = xv.clone();
                    double[] xm = xv.clone();
                    xp[i] += h;
                    xm[i] -= h;
                    fdx[i] = (loss(xp, dims, g, b, dy, l) - loss(xm, dims, g, b, dy, l)) / (2 * h);
                }
                // the saved statistics are float32: ~1e-7 relative differences from the exact gradient
                assertClose(fdx, gr[0].toDoubleArray(), new Tol(1e-5, 1e-6), "dx fd " + l);
                double hg = 1.0 / 64;
                double[] fdg = new double[c];
                double[] fdb = new double[c];
                for (int ch = 0; ch < c; ch++) {
                    double[] gp = g.clone();
                    double[] gm = g.clone();
                    gp[ch] += hg;
                    gm[ch] -= hg;
                    fdg[ch] = (loss(xv, dims, gp, b, dy, l) - loss(xv, dims, gm, b, dy, l)) / (2 * hg);
                    double[] bp = b.clone();
                    double[] bm = b.clone();
                    bp[ch] += hg;
                    bm[ch] -= hg;
                    fdb[ch] = (loss(xv, dims, g, bp, dy, l) - loss(xv, dims, g, bm, dy, l)) / (2 * hg);
                }
                assertClose(fdg, gr[1].toDoubleArray(), new Tol(1e-6, 1e-6), "dgamma fd " + l);
                assertClose(fdb, gr[2].toDoubleArray(), new Tol(1e-6, 1e-6), "dbeta fd " + l);
            }
        }
    }

    // ------------------------------------------------------------------ folding
    /** Direct convolution reference: x [n, c, h, w], w [k, c, kh, kw], stride 1, padding pad. */
    static double[] conv(double[] x, int n, int c, int hh, int ww, double[] w, int k, int kh, int kw, int pad,
                         double[] bias) {
        int oh = hh + 2 * pad - kh + 1;
        int ow = ww + 2 * pad - kw + 1;
        double[] y = new double[n * k * oh * ow];
        for (int i = 0; i < n; i++) {
            for (int o = 0; o < k; o++) {
                for (int a = 0; a < oh; a++) {
                    for (int b2 = 0; b2 < ow; b2++) {
                        double s = bias[o];
                        for (int ch = 0; ch < c; ch++) {
                            for (int p = 0; p < kh; p++) {
                                for (int q = 0; q < kw; q++) {
                                    int ih = a - pad + p;
                                    int iw = b2 - pad + q;
                                    if (ih >= 0 && ih < hh && iw >= 0 && iw < ww) {
                                        s += x[((i * c + ch) * hh + ih) * ww + iw] * w[((o * c + ch) * kh + p) * kw + q];
                                    }
                                }
                            }
                        }
                        y[((i * k + o) * oh + a) * ow + b2] = s;
                    }
                }
            }
        }
        return y;
    }

    @Test
    void foldingIntoConvolution() {
        try (var scope = Scope.open()) {
            Random r = new Random(31);
            int n = 2;
            int c = 3;
            int k = 4;
            int hh = 5;
            int ww = 6;
            for (int ks : new int[] {1, 3}) {
                double[] xv = Reference.uniform(r, n * c * hh * ww, -1, 1);
                double[] wv = Reference.uniform(r, k * c * ks * ks, -1, 1);
                double[] bv = Reference.uniform(r, k, -1, 1);
                double[] g = f32(Reference.uniform(r, k, 0.5, 1.5));
                double[] be = f32(Reference.uniform(r, k, -1, 1));
                double[] rm = f32(Reference.uniform(r, k, -0.5, 0.5));
                double[] rv = f32(Reference.uniform(r, k, 0.5, 2));
                int pad = ks / 2;
                double[] yc = conv(xv, n, c, hh, ww, wv, k, ks, ks, pad, bv);
                Tensor bn = BatchNorm.inference(Tensor.of(yc, n, k, hh, ww), vec(g), vec(be), vec(rm), vec(rv),
                        BatchNormAttrs.defaults());
                Tensor[] folded = BatchNorm.foldIntoConv(Tensor.of(wv, k, c, ks, ks), Tensor.of(bv, k), vec(g), vec(be),
                        vec(rm), vec(rv), 1e-5);
                assertArrayEquals(new long[] {k, c, ks, ks}, folded[0].dims());
                double[] yf = conv(xv, n, c, hh, ww, folded[0].toDoubleArray(), k, ks, ks, pad, folded[1].toDoubleArray());
                assertClose(bn.toDoubleArray(), yf, tol(DType.FLOAT64), "folded conv " + ks + "x" + ks);
                if (ks == 1) {
                    // the 1x1 convolution as Cortado's matmul: y[n] = W [k, c] @ x[n] [c, h*w] + b'
                    Tensor w2 = folded[0].reshape(k, c);
                    Tensor x0 = Tensor.of(Arrays.copyOfRange(xv, 0, c * hh * ww), c, hh * ww);
                    Tensor y0 = Elementwise.add(LinearAlgebra.matmul(w2, x0), folded[1].reshape(k, 1));
                    double[] want = Arrays.copyOfRange(bn.toDoubleArray(), 0, k * hh * ww);
                    assertClose(want, y0.toDoubleArray(), tol(DType.FLOAT64), "folded 1x1 conv as matmul");
                }
            }
            // float32 weights stay float32; missing bias counts as 0
            Tensor[] f = BatchNorm.foldIntoConv(Tensor.ones(DType.FLOAT32, 2, 1), null, null, null, vec(new double[] {1, 2}),
                    vec(new double[] {3, 0}), 1.0);
            assertArrayEquals(new double[] {0.5, 1}, f[0].toDoubleArray(), 1e-7);
            assertArrayEquals(new double[] {-0.5, -2}, f[1].toDoubleArray(), 1e-7);
        }
    }

    // ------------------------------------------------------------------ errors
    static void assertBad(Runnable r, String... parts) {
        PoolingOpsTest.assertBad(r, parts);
    }

    @Test
    void badInputs() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.zeros(DType.FLOAT32, 2, 3, 4);
            BatchNormAttrs a = BatchNormAttrs.defaults();
            assertBad(() -> BatchNorm.training(x, Tensor.ones(DType.FLOAT32, 4), null, null, null, a),
                    "batch_norm_training", "[2, 3, 4]", "[4]");
            assertBad(() -> BatchNorm.training(x, Tensor.ones(DType.FLOAT64, 3), null, null, null, a),
                    "batch_norm_training", "float64[3]");
            assertBad(() -> BatchNorm.training(Tensor.zeros(DType.FLOAT32, 5), null, null, null, null, a),
                    "batch_norm_training", "[5]");
            assertBad(() -> BatchNorm.training(Tensor.zeros(DType.INT32, 2, 3), null, null, null, null, a),
                    "batch_norm_training", "int32[2, 3]");
            assertBad(() -> BatchNorm.training(Tensor.zeros(DType.FLOAT32, 1, 3), null, null, Tensor.zeros(DType.FLOAT32, 3),
                    Tensor.ones(DType.FLOAT32, 3), a), "batch_norm_training", "[1, 3]", "more than 1 value");
            assertBad(() -> BatchNorm.training(x, null, null, Tensor.zeros(DType.FLOAT32, 3), null, a),
                    "batch_norm_training", "together");
            assertBad(() -> BatchNorm.inference(x, null, null, null, null, a), "batch_norm_inference", "[2, 3, 4]");
            assertBad(() -> BatchNorm.training(x, null, null, null, null, new BatchNormAttrs(1e-5, 1.5, DataLayout.NCHW)),
                    "batch_norm_training", "momentum");
            Tensor[] o = BatchNorm.training(x, null, null, null, null, a);
            assertBad(() -> BatchNorm.backward(Tensor.zeros(DType.FLOAT32, 2, 3, 5), x, null, o[1], o[2], a),
                    "batch_norm_backward", "[2, 3, 5]", "[2, 3, 4]");
            assertBad(() -> BatchNorm.foldIntoConv(Tensor.ones(DType.FLOAT32, 2, 1), null, null, null,
                    Tensor.zeros(DType.FLOAT32, 3), Tensor.ones(DType.FLOAT32, 2), 1e-5), "batch_norm_fold", "[3]");
            assertTrue(OpRegistry.get("batch_norm_backward") == BatchNorm.BATCH_NORM_BACKWARD_OP);
        }
    }
}
