package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertClose;
import static dev.cortado.testing.Reference.assertCloseChecked;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.autograd.GradCheck;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cpu.NativeCpu;
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
 * softmax_backward, log_softmax_backward, layer_norm_backward and rms_norm_backward against
 * float64 references written here from the definitions, and the forward ops' backward rules
 * through GradCheck (central differences in float64). Tolerances: float64 1e-10 rel + 1e-12 abs;
 * float32 1e-4 rel + 1e-5 abs (float32 element math after float64 row sums; dx of a norm is a
 * difference of O(1) terms); bfloat16 2e-2 rel + 2e-2 abs and float16 4e-3 rel + 4e-3 abs (the
 * reference uses the rounded inputs; the kernel rounds its float32 result once, and the absolute
 * part covers results that cancel near zero). Every absolute part is a fraction of the
 * reference's largest |value| ({@link Reference#relativeTo}), and each comparison first checks
 * that an all-zero output would fail it ({@link Reference#assertCloseChecked}).
 */
public class NormalizationBackwardTest {
    static Tol tol(DType t) {
        return switch (t) {
            case FLOAT64 -> new Tol(1e-10, 1e-12);
            case FLOAT32 -> new Tol(1e-4, 1e-5);
            case BFLOAT16 -> new Tol(2e-2, 2e-2);
            default -> new Tol(4e-3, 4e-3);
        };
    }

    static final DType[] FLOATS = {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16};

    /** dx of softmax (log: log-softmax) along axis from y and dy, contiguous, in float64. */
    public static double[] softmaxBackwardRef(double[] y, double[] dy, long[] dims, int axis, boolean log) {
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
        double[] dx = new double[y.length];
        for (long o = 0; o < outer; o++) {
            for (long i = 0; i < inner; i++) {
                double s = 0;
                for (int j = 0; j < len; j++) {
                    int p = (int) ((o * len + j) * inner + i);
                    s += log ? dy[p] : dy[p] * y[p];
                }
                for (int j = 0; j < len; j++) {
                    int p = (int) ((o * len + j) * inner + i);
                    dx[p] = log ? dy[p] - Math.exp(y[p]) * s : y[p] * (dy[p] - s);
                }
            }
        }
        return dx;
    }

    @TestFactory
    List<DynamicTest> softmaxBackwardAlongEveryAxis() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 21;
        long[][] shapes = {{3, 4, 5}, {1, 1, 1}, {2, 0, 3}, {4, 1500}};
        for (DType t : FLOATS) {
            for (long[] dims : shapes) {
                for (int axis : dims.length == 3 ? new int[] {0, 1, -1} : new int[] {-1, 0}) {
                    for (boolean log : new boolean[] {false, true}) {
                        long s = seed++;
                        tests.add(dynamicTest((log ? "log_softmax_backward " : "softmax_backward ") + t + " "
                                + Arrays.toString(dims) + " axis " + axis, () -> {
                            try (var scope = Scope.open()) {
                                Random r = new Random(s);
                                int n = (int) Reference.numel(dims);
                                Tensor x = Reference.make(Reference.uniform(r, n, -3, 3), t, dims);
                                Tensor y = log ? Normalization.logSoftmax(x, axis) : Normalization.softmax(x, axis);
                                Tensor dy = Reference.make(Reference.uniform(r, n, -2, 2), t, dims);
                                double[] want = softmaxBackwardRef(y.toDoubleArray(), dy.toDoubleArray(), dims, axis, log);
                                Normalization.SoftmaxAttrs a = new Normalization.SoftmaxAttrs(axis, log);
                                Op<Normalization.SoftmaxAttrs> op = log ? Normalization.LOG_SOFTMAX_BACKWARD_OP
                                        : Normalization.SOFTMAX_BACKWARD_OP;
                                Tensor dx = op.call(a, y, dy);
                                assertEquals(t, dx.dtype());
                                assertArrayEquals(dims, dx.dims());
                                assertCloseChecked(want, dx.toDoubleArray(), Reference.relativeTo(tol(t), want), "dx");
                                if (dims.length == 3) { // permuted (non-contiguous) y and dy
                                    Tensor yp = y.permute(2, 0, 1);
                                    Tensor dp = dy.permute(2, 0, 1);
                                    double[] w2 = softmaxBackwardRef(Reference.viewOf(y.toDoubleArray(), yp),
                                            Reference.viewOf(dy.toDoubleArray(), dp), yp.dims(), axis, log);
                                    assertCloseChecked(w2, op.call(a, yp, dp).toDoubleArray(), Reference.relativeTo(tol(t), w2), "permuted dx");
                                }
                            }
                        }));
                    }
                }
            }
        }
        return tests;
    }

    /** {dx, dweight, dbias} of layer norm (rms: RMS norm) over rows of `cols`, in float64. */
    public static double[][] normBackwardRef(double[] x, double[] dy, double[] w, int cols, double eps, boolean rms) {
        int rows = cols == 0 ? 0 : x.length / cols;
        double[] dx = new double[x.length];
        double[] dw = new double[cols];
        double[] db = new double[cols];
        for (int r = 0; r < rows; r++) {
            double mean = 0;
            if (!rms) {
                for (int c = 0; c < cols; c++) {
                    mean += x[r * cols + c];
                }
                mean /= cols;
            }
            double v = 0;
            for (int c = 0; c < cols; c++) {
                double d = x[r * cols + c] - mean;
                v += d * d;
            }
            double rstd = 1 / Math.sqrt(v / cols + eps);
            double sg = 0;
            double sgx = 0;
            double[] xh = new double[cols];
            double[] g = new double[cols];
            for (int c = 0; c < cols; c++) {
                xh[c] = (x[r * cols + c] - mean) * rstd;
                g[c] = dy[r * cols + c] * (w == null ? 1 : w[c]);
                sg += g[c];
                sgx += g[c] * xh[c];
                dw[c] += dy[r * cols + c] * xh[c];
                db[c] += dy[r * cols + c];
            }
            for (int c = 0; c < cols; c++) {
                dx[r * cols + c] = rstd * (g[c] - (rms ? 0 : sg / cols) - xh[c] * sgx / cols);
            }
        }
        return new double[][] {dx, dw, db};
    }

    @TestFactory
    List<DynamicTest> layerNormAndRmsNormBackward() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 300;
        long[][] shapes = {{3, 5, 7}, {1, 1}, {0, 6}, {150, 9}, {2, 3000}, {5, 1}};
        for (DType t : FLOATS) {
            for (long[] dims : shapes) {
                for (boolean rms : new boolean[] {false, true}) {
                    for (boolean weighted : new boolean[] {true, false}) {
                        int k = dims.length == 3 ? 2 : 1;
                        long s = seed++;
                        tests.add(dynamicTest((rms ? "rms_norm_backward " : "layer_norm_backward ") + t + " "
                                + Arrays.toString(dims) + " k " + k + (weighted ? " weighted" : ""), () -> {
                            try (var scope = Scope.open()) {
                                Random r = new Random(s);
                                int n = (int) Reference.numel(dims);
                                long[] nd = Arrays.copyOfRange(dims, dims.length - k, dims.length);
                                int cols = (int) Reference.numel(nd);
                                Tensor x = Reference.make(Reference.uniform(r, n, -2, 3), t, dims);
                                Tensor dy = Reference.make(Reference.uniform(r, n, -1, 1), t, dims);
                                Tensor w = weighted ? Reference.make(Reference.uniform(r, cols, 0.5, 1.5), t, nd) : null;
                                double eps = 1e-5;
                                double[][] want = normBackwardRef(x.toDoubleArray(), dy.toDoubleArray(),
                                        w == null ? null : w.toDoubleArray(), cols, eps, rms);
                                Normalization.NormAttrs a = new Normalization.NormAttrs(k, eps);
                                Tensor[] got = (rms ? Normalization.RMS_NORM_BACKWARD_OP : Normalization.LAYER_NORM_BACKWARD_OP)
                                        .callMulti(a, dy, x, w);
                                assertEquals(rms ? 2 : 3, got.length);
                                assertArrayEquals(dims, got[0].dims());
                                assertArrayEquals(nd, got[1].dims());
                                Tol tol = tol(t);
                                if (cols == 1) {
                                    // one element per row: dx is a cancellation of O(1) terms down to
                                    // ~eps/(x^2+eps) (0 for layer norm); only the unscaled tolerance applies
                                    assertClose(want[0], got[0].toDoubleArray(), tol, "dx");
                                } else {
                                    assertCloseChecked(want[0], got[0].toDoubleArray(), Reference.relativeTo(tol, want[0]), "dx");
                                }
                                // parameter gradients sum over rows: their magnitude (and so the
                                // absolute part) grows with the row count
                                assertCloseChecked(want[1], got[1].toDoubleArray(), Reference.relativeTo(tol, want[1]), "dweight");
                                if (!rms) {
                                    assertCloseChecked(want[2], got[2].toDoubleArray(), Reference.relativeTo(tol, want[2]), "dbias");
                                }
                                // non-contiguous x and dy (a transposed copy transposed back) give the same bits
                                if (dims.length == 2 && n > 0) {
                                    Tensor xs = x.transpose(0, 1).contiguous().transpose(0, 1);
                                    Tensor ds = dy.transpose(0, 1).contiguous().transpose(0, 1);
                                    Tensor[] g2 = (rms ? Normalization.RMS_NORM_BACKWARD_OP
                                            : Normalization.LAYER_NORM_BACKWARD_OP).callMulti(a, ds, xs, w);
                                    assertClose(got[0].toDoubleArray(), g2[0].toDoubleArray(), new Tol(0, 0), "strided dx");
                                }
                            }
                        }));
                    }
                }
            }
        }
        return tests;
    }

    @Test
    void parameterGradientsAreDeterministicAcrossThreadCounts() {
        try (var scope = Scope.open()) {
            Random r = new Random(8);
            int rows = 997;
            int cols = 129;
            Tensor x = Reference.make(Reference.uniform(r, rows * cols, -2, 2), DType.FLOAT32, rows, cols);
            Tensor dy = Reference.make(Reference.uniform(r, rows * cols, -2, 2), DType.FLOAT32, rows, cols);
            Tensor w = Reference.make(Reference.uniform(r, cols, 0.5, 2), DType.FLOAT32, cols);
            Normalization.NormAttrs a = new Normalization.NormAttrs(1, 1e-5);
            int before = NativeCpu.ct_cpu_get_num_threads();
            try {
                CpuBackend.setThreads(1);
                Tensor[] one = Normalization.LAYER_NORM_BACKWARD_OP.callMulti(a, dy, x, w);
                CpuBackend.setThreads(2);
                Tensor[] two = Normalization.LAYER_NORM_BACKWARD_OP.callMulti(a, dy, x, w);
                for (int i = 0; i < 3; i++) {
                    assertArrayEquals(one[i].toFloatArray(), two[i].toFloatArray(), "output " + i);
                }
            } finally {
                CpuBackend.setThreads(before);
            }
        }
    }

    @Test
    void gradientChecksThroughTheRules() {
        try (var scope = Scope.open()) {
            Random r = new Random(9);
            Tensor x = Reference.make(Reference.uniform(r, 2 * 3 * 5, -2, 2), DType.FLOAT64, 2, 3, 5).requiresGrad(true);
            Tensor w = Reference.make(Reference.uniform(r, 5, 0.5, 1.5), DType.FLOAT64, 5).requiresGrad(true);
            Tensor b = Reference.make(Reference.uniform(r, 5, -1, 1), DType.FLOAT64, 5).requiresGrad(true);
            Tensor w2 = Reference.make(Reference.uniform(r, 15, 0.5, 1.5), DType.FLOAT64, 3, 5).requiresGrad(true);
            GradCheck.check("softmax axis 1", in -> Normalization.softmax(in[0], 1), x);
            GradCheck.check("softmax last", in -> Normalization.softmax(in[0], -1), x);
            GradCheck.check("log_softmax axis 0", in -> Normalization.logSoftmax(in[0], 0), x);
            GradCheck.check("log_softmax last", in -> Normalization.logSoftmax(in[0], -1), x);
            GradCheck.check("layer_norm", in -> Normalization.layerNorm(in[0], in[1], in[2], 1, 1e-5), x, w, b);
            GradCheck.check("layer_norm 2 dims", in -> Normalization.layerNorm(in[0], in[1], null, 2, 1e-3), x, w2);
            GradCheck.check("layer_norm no weight", in -> Normalization.layerNorm(in[0], null, null, 1, 1e-5), x);
            GradCheck.check("rms_norm", in -> Normalization.rmsNorm(in[0], in[1], 1, 1e-6), x, w);
            GradCheck.check("rms_norm no weight", in -> Normalization.rmsNorm(in[0], null, 2, 1e-6), x);
        }
    }

    @Test
    void badInputsNameTheOp() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.ones(DType.FLOAT32, 3, 4);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Normalization.LAYER_NORM_BACKWARD_OP.callMulti(new Normalization.NormAttrs(1, 1e-5),
                            Tensor.ones(DType.FLOAT32, 3, 5), x, null));
            assertTrue(e.getMessage().startsWith("layer_norm_backward: dy"), e.getMessage());
            IllegalArgumentException e2 = assertThrows(IllegalArgumentException.class,
                    () -> Normalization.SOFTMAX_BACKWARD_OP.call(new Normalization.SoftmaxAttrs(2, false), x, x));
            assertTrue(e2.getMessage().startsWith("softmax_backward: axis 2"), e2.getMessage());
            IllegalArgumentException e3 = assertThrows(IllegalArgumentException.class,
                    () -> Normalization.RMS_NORM_BACKWARD_OP.callMulti(new Normalization.NormAttrs(1, 1e-5), x, x,
                            Tensor.ones(DType.FLOAT32, 3)));
            assertTrue(e3.getMessage().startsWith("rms_norm_backward: input 'weight'"), e3.getMessage());
        }
    }
}
