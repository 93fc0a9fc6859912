package dev.cortado.nn;

import static dev.cortado.testing.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.Losses.Reduction;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Every loss against a float64 reference, for each reduction. Tolerances: float64 1e-11 relative
 * + 1e-13 absolute; float32 2e-5 relative + 2e-6 absolute (float32 exp/log polynomials, row sums).
 */
class LossesTest {
    static Tol tol(DType t) {
        return t == DType.FLOAT64 ? new Tol(1e-11, 1e-13) : new Tol(2e-5, 2e-6);
    }

    static double[] reduce(double[] perElement, Reduction r, double count, int batch) {
        double s = 0;
        for (double v : perElement) {
            s += v;
        }
        return switch (r) {
            case NONE -> perElement;
            case SUM -> new double[] {s};
            case MEAN -> new double[] {count == 0 ? 0 : s / count};
            case BATCH_MEAN -> new double[] {s / batch};
        };
    }

    /** Per-row cross entropy of [N, C] logits with smoothing; ignored rows give 0. */
    static double[] crossEntropyRef(double[] x, int n, int c, long[] t, long ignore, double eps) {
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            if (t[i] == ignore) {
                continue;
            }
            double m = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < c; j++) {
                m = Math.max(m, x[i * c + j]);
            }
            double z = 0;
            for (int j = 0; j < c; j++) {
                z += Math.exp(x[i * c + j] - m);
            }
            double lse = m + Math.log(z);
            double mean = 0;
            for (int j = 0; j < c; j++) {
                mean += (lse - x[i * c + j]) / c;
            }
            out[i] = (1 - eps) * (lse - x[i * c + (int) t[i]]) + eps * mean;
        }
        return out;
    }

    @ParameterizedTest
    @CsvSource({
        "FLOAT32,1,MEAN,0", "FLOAT32,3,SUM,0", "FLOAT64,3,NONE,0", "FLOAT64,7,MEAN,0.1", "FLOAT32,7,BATCH_MEAN,0.2",
        "FLOAT64,1,SUM,0.3"})
    void crossEntropyFusedAndComposed(DType dt, int n, Reduction red, double eps) {
        Random r = new Random(n * 13 + red.ordinal());
        int c = 5;
        try (Scope s = Scope.open()) {
            double[] x = Reference.uniform(r, n * c, -4, 4);
            long[] t = new long[n];
            int counted = 0;
            for (int i = 0; i < n; i++) {
                t[i] = i == 1 ? -100 : r.nextInt(c);
                counted += t[i] == -100 ? 0 : 1;
            }
            Tensor logits = Reference.make(x, dt, n, c);
            Tensor targets = Tensor.of(t, n);
            double[] want = reduce(crossEntropyRef(Reference.values(logits), n, c, t, -100, eps), red, counted, n);
            Tensor fused = Losses.crossEntropy(logits, targets, red, -100, eps);
            assertClose(want, fused.toDoubleArray(), tol(dt), "cross entropy (fused) " + red);
            assertClose(want, Losses.crossEntropyComposed(logits, targets, red, -100, eps).toDoubleArray(),
                    tol(dt), "cross entropy (composed) " + red);
            if (eps == 0 && red != Reduction.BATCH_MEAN) {
                Tensor logp = dev.cortado.ops.Normalization.logSoftmax(logits, 1);
                assertClose(want, Losses.nll(logp, targets, red, -100).toDoubleArray(), tol(dt), "nll " + red);
            }
        }
    }

    @Test
    void crossEntropyWithSpatialDimsAndSoftTargets() {
        Random r = new Random(5);
        int n = 3;
        int c = 4;
        int d = 5;
        try (Scope s = Scope.open()) {
            double[] x = Reference.uniform(r, n * c * d, -3, 3);
            long[] t = new long[n * d];
            for (int i = 0; i < t.length; i++) {
                t[i] = r.nextInt(c);
            }
            // the [N, C, d] logits as [N*d, C] rows
            double[] rows = new double[n * d * c];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < c; j++) {
                    for (int k = 0; k < d; k++) {
                        rows[(i * d + k) * c + j] = x[(i * c + j) * d + k];
                    }
                }
            }
            double[] per = crossEntropyRef(rows, n * d, c, t, -100, 0);
            Tensor logits = Tensor.of(x, n, c, d);
            Tensor targets = Tensor.of(t, n, d);
            Tensor none = Losses.crossEntropy(logits, targets, Reduction.NONE, -100, 0);
            assertArrayEquals(new long[] {n, d}, none.dims());
            assertClose(per, none.toDoubleArray(), tol(DType.FLOAT64), "cross entropy [N, C, d]");
            assertClose(per, Losses.crossEntropyComposed(logits, targets, Reduction.NONE, -100, 0).toDoubleArray(),
                    tol(DType.FLOAT64), "composed [N, C, d]");

            // probability targets equal to one-hot give the same loss as indices
            Tensor x2 = Tensor.of(Reference.uniform(r, 3 * c, -2, 2), 3, c);
            long[] t2 = {2, 0, 3};
            double[] oneHot = new double[3 * c];
            for (int i = 0; i < 3; i++) {
                oneHot[i * c + (int) t2[i]] = 1;
            }
            double[] want = reduce(crossEntropyRef(x2.toDoubleArray(), 3, c, t2, -100, 0.1), Reduction.MEAN, 3, 3);
            assertClose(want, Losses.crossEntropy(x2, Tensor.of(oneHot, 3, c), Reduction.MEAN, -100, 0.1).toDoubleArray(),
                    tol(DType.FLOAT64), "soft targets");
            assertThrows(IndexOutOfBoundsException.class,
                    () -> Losses.crossEntropy(x2, Tensor.of(new long[] {0, 4, 1}, 3)));
            assertThrows(IndexOutOfBoundsException.class,
                    () -> Losses.crossEntropyComposed(x2, Tensor.of(new long[] {0, 4, 1}, 3), Reduction.MEAN, -100, 0));
            assertThrows(IllegalArgumentException.class, () -> Losses.crossEntropy(x2, Tensor.of(new long[] {0, 1}, 2)));
        }
    }

    @ParameterizedTest
    @CsvSource({"FLOAT32,MEAN", "FLOAT64,SUM", "FLOAT64,NONE", "FLOAT32,BATCH_MEAN"})
    void regressionAndBinaryLosses(DType dt, Reduction red) {
        Random r = new Random(red.ordinal());
        int n = 3;
        int m = 7;
        try (Scope s = Scope.open()) {
            Tensor a = Reference.make(Reference.uniform(r, n * m, -3, 3), dt, n, m);
            Tensor b = Reference.make(Reference.uniform(r, n * m, -3, 3), dt, n, m);
            Tensor y = Reference.make(Reference.uniform(r, n * m, 0, 1), dt, n, m);
            double[] av = a.toDoubleArray();
            double[] bv = b.toDoubleArray();
            double[] yv = y.toDoubleArray();
            double[] se = new double[n * m];
            double[] ae = new double[n * m];
            double[] bce = new double[n * m];
            for (int i = 0; i < se.length; i++) {
                double d = av[i] - bv[i];
                se[i] = d * d;
                ae[i] = Math.abs(d);
                // -[y log sigmoid(x) + (1-y) log(1 - sigmoid(x))], evaluated stably
                bce[i] = Math.max(av[i], 0) - av[i] * yv[i] + Math.log1p(Math.exp(-Math.abs(av[i])));
            }
            assertClose(reduce(se, red, se.length, n), Losses.mse(a, b, red).toDoubleArray(), tol(dt), "mse");
            assertClose(reduce(ae, red, ae.length, n), Losses.l1(a, b, red).toDoubleArray(), tol(dt), "l1");
            assertClose(reduce(bce, red, bce.length, n), Losses.binaryCrossEntropyWithLogits(a, y, red).toDoubleArray(),
                    tol(dt).scaled(5), "bce with logits");
            assertThrows(IllegalArgumentException.class, () -> Losses.mse(a, Tensor.zeros(dt, n, m + 1)));
        }
    }

    @Test
    void binaryCrossEntropyIsStableForHugeLogits() {
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.of(new float[] {-1000, -50, 0, 50, 1000}, 5);
            Tensor y = Tensor.of(new float[] {1, 0, 0.5f, 1, 0}, 5);
            double[] got = Losses.binaryCrossEntropyWithLogits(x, y, Reduction.NONE).toDoubleArray();
            assertClose(new double[] {1000, Math.log1p(Math.exp(-50)), Math.log(2), Math.log1p(Math.exp(-50)), 1000}, got,
                    new Tol(1e-6, 1e-7), "bce extremes");
        }
    }

    @ParameterizedTest
    @CsvSource({"FLOAT64,false,BATCH_MEAN", "FLOAT64,true,SUM", "FLOAT32,false,MEAN", "FLOAT32,true,NONE"})
    void klDivergence(DType dt, boolean logTarget, Reduction red) {
        Random r = new Random(3);
        int n = 3;
        int c = 5;
        try (Scope s = Scope.open()) {
            double[] q = new double[n * c];
            double[] p = new double[n * c];
            for (int i = 0; i < n; i++) {
                double zq = 0;
                double zp = 0;
                for (int j = 0; j < c; j++) {
                    q[i * c + j] = 0.1 + r.nextDouble();
                    p[i * c + j] = (i == 0 && j == 1) ? 0 : 0.1 + r.nextDouble();
                    zq += q[i * c + j];
                    zp += p[i * c + j];
                }
                for (int j = 0; j < c; j++) {
                    q[i * c + j] = Math.log(q[i * c + j] / zq);
                    p[i * c + j] /= zp;
                }
            }
            double[] tgt = p.clone();
            if (logTarget) {
                for (int i = 0; i < tgt.length; i++) {
                    tgt[i] = p[i] == 0 ? -1e30 : Math.log(p[i]);
                }
            }
            Tensor input = Reference.make(q, dt, n, c);
            Tensor target = Reference.make(tgt, dt, n, c);
            double[] qv = input.toDoubleArray();
            double[] tv = target.toDoubleArray();
            double[] per = new double[n * c];
            for (int i = 0; i < per.length; i++) {
                double pi = logTarget ? Math.exp(tv[i]) : tv[i];
                double lp = logTarget ? tv[i] : Math.log(tv[i]);
                per[i] = pi == 0 ? 0 : pi * (lp - qv[i]);
            }
            double[] got = Losses.klDiv(input, target, red, logTarget).toDoubleArray();
            assertClose(reduce(per, red, per.length, n), got, tol(dt).scaled(5), "kl div");
            for (double g : got) {
                assertTrue(Double.isFinite(g));
            }
        }
    }
}
