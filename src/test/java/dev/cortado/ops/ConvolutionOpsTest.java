package dev.cortado.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.Convolution.Algorithm;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * conv / conv_backward_data / conv_backward_weight / conv_transpose against an independent
 * float64 direct-loop reference written here (plain arrays, canonical [N, C, D, H, W] order).
 * Every algorithm is forced separately where it applies (and must report UnsupportedOperation
 * where it does not). Tolerances: float64 1e-10 relative to sum |x||w| per output; float32 1e-4
 * relative to the same sum (Winograd's transforms and float32 GEMM accumulation stay well inside).
 * Gradients are also checked against central finite differences of sum(y * r) in float64.
 */
public class ConvolutionOpsTest {

    /** A 3-d description (1-d and 2-d right-aligned, leading sizes 1). */
    public record Case(String name, int spatial, int n, int c, int k, int groups, int[] in, int[] ks, int[] st, int[] dil,
                int[] pb, int[] pa) {
        int[] out() {
            int[] o = new int[3];
            for (int i = 0; i < 3; i++) {
                o[i] = (in[i] + pb[i] + pa[i] - dil[i] * (ks[i] - 1) - 1) / st[i] + 1;
            }
            return o;
        }

        public int inVol() {
            return in[0] * in[1] * in[2];
        }

        public int outVol() {
            int[] o = out();
            return o[0] * o[1] * o[2];
        }

        public int kVol() {
            return ks[0] * ks[1] * ks[2];
        }

        int cg() {
            return c / groups;
        }

        int kg() {
            return k / groups;
        }

        long[] tail(int[] a) {
            long[] r = new long[spatial];
            for (int i = 0; i < spatial; i++) {
                r[i] = a[3 - spatial + i];
            }
            return r;
        }

        ConvOptions.Builder options() {
            return ConvOptions.builder().stride(tail(st)).dilation(tail(dil)).padding(tail(pb), tail(pa)).groups(groups);
        }

        public long[] actDims(DataLayout l, int ch, int[] sp) {
            long[] d = new long[spatial + 2];
            d[0] = n;
            long[] t = tail(sp);
            for (int i = 0; i < spatial; i++) {
                d[l == DataLayout.NCHW ? 2 + i : 1 + i] = t[i];
            }
            d[l == DataLayout.NCHW ? 1 : spatial + 1] = ch;
            return d;
        }

        long[] wDims() {
            long[] d = new long[spatial + 2];
            d[0] = k;
            d[1] = cg();
            long[] t = tail(ks);
            System.arraycopy(t, 0, d, 2, spatial);
            return d;
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static int[] a3(int spatial, int... v) {
        int[] r = {1, 1, 1};
        System.arraycopy(v, 0, r, 3 - spatial, spatial);
        return r;
    }

    /** Padding: leading (unused) dimensions 0. */
    static int[] p3(int spatial, int... v) {
        int[] r = {0, 0, 0};
        System.arraycopy(v, 0, r, 3 - spatial, spatial);
        return r;
    }

    static int[] z3() {
        return new int[] {0, 0, 0};
    }

    public static Case c2(String name, int n, int c, int k, int g, int h, int w, int kh, int kw, int s, int d, int pb, int pa) {
        return new Case(name, 2, n, c, k, g, a3(2, h, w), a3(2, kh, kw), a3(2, s, s), a3(2, d, d),
                new int[] {0, pb, pb}, new int[] {0, pa, pa});
    }

    static final List<Case> CASES = List.of(
            c2("2d 3x3 pad1 odd", 1, 3, 4, 1, 7, 9, 3, 3, 1, 1, 1, 1),
            c2("2d 3x3 s2 groups2 asym pad 2/0", 2, 4, 6, 2, 9, 8, 3, 3, 2, 1, 2, 0),
            c2("2d 7x7 s2 pad3", 2, 3, 5, 1, 11, 10, 7, 7, 2, 1, 3, 3),
            c2("2d 1x1 plain", 1, 5, 7, 1, 6, 7, 1, 1, 1, 1, 0, 0),
            c2("2d 1x1 s2 pad 1/0", 2, 4, 3, 1, 9, 9, 1, 1, 2, 1, 1, 0),
            c2("2d depthwise 3x3 d2 pad2", 2, 6, 6, 6, 9, 10, 3, 3, 1, 2, 2, 2),
            c2("2d depthwise 3x3 s2 pad 1/0", 1, 5, 5, 5, 7, 8, 3, 3, 2, 1, 1, 0),
            c2("2d 3x3 pad 3/1 (pad > kernel)", 2, 4, 4, 1, 8, 7, 3, 3, 1, 1, 3, 1),
            c2("2d 3x3 18->20 channels", 1, 18, 20, 1, 10, 9, 3, 3, 1, 1, 1, 1),
            c2("2d 7x7 d2 groups2 pad6", 1, 6, 4, 2, 15, 14, 7, 7, 1, 2, 6, 5),
            c2("2d 3x3 pad 0/2", 2, 3, 17, 1, 6, 5, 3, 3, 1, 1, 0, 2),
            // Winograd with full 12-row panels, three 32-wide column blocks (the last partial) and
            // two tile chunks (64 x 96 channels: 96 tiles per chunk, 2 x 64 tiles here)
            c2("2d 3x3 64->96 two chunks", 2, 64, 96, 1, 16, 15, 3, 3, 1, 1, 1, 1),
            c2("2d 3x3 groups2 64->64 pad 2/0", 1, 64, 64, 2, 7, 6, 3, 3, 1, 1, 2, 0),
            new Case("1d k5 s2 d2 pad 4/1", 1, 2, 3, 4, 1, a3(1, 13), a3(1, 5), a3(1, 2), a3(1, 2), p3(1, 4), p3(1, 1)),
            new Case("1d depthwise k3 pad1", 1, 1, 4, 4, 4, a3(1, 10), a3(1, 3), a3(1, 1), a3(1, 1), p3(1, 1), p3(1, 1)),
            new Case("3d 3x3x3 s(1,2,1) pad 1/0", 3, 2, 2, 4, 1, new int[] {5, 6, 7}, new int[] {3, 3, 3},
                    new int[] {1, 2, 1}, new int[] {1, 1, 1}, new int[] {1, 1, 1}, z3()),
            new Case("3d (2,3,1) groups2 d(1,2,1)", 3, 1, 4, 4, 2, new int[] {4, 5, 6}, new int[] {2, 3, 1},
                    new int[] {1, 1, 1}, new int[] {1, 2, 1}, new int[] {0, 2, 0}, new int[] {1, 1, 0}),
            new Case("3d depthwise 3x3x3", 3, 1, 3, 3, 3, new int[] {4, 5, 5}, new int[] {3, 3, 3},
                    new int[] {1, 1, 1}, new int[] {1, 1, 1}, new int[] {1, 1, 1}, new int[] {1, 1, 1}));

    // ------------------------------------------------------------------ reference (canonical NCHW order)
    static double act(double v, Activation a) {
        return switch (a) {
            case NONE -> v;
            case RELU -> Math.max(v, 0);
            case SILU -> v / (1 + Math.exp(-v));
            case GELU -> 0.5 * v * (1 + erf(v / Math.sqrt(2)));
        };
    }

    /** erf to ~1e-15 (series for small |x|, continued fraction for large). */
    static double erf(double x) {
        double ax = Math.abs(x);
        double r;
        if (ax < 3) {
            double term = ax;
            double sum = ax;
            double x2 = ax * ax;
            for (int n = 1; n < 200; n++) {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.abs(add) < 1e-17 * Math.abs(sum)) {
                    break;
                }
            }
            r = 2 / Math.sqrt(Math.PI) * sum;
        } else {
            // erfc continued fraction
            double f = 0;
            for (int n = 60; n >= 1; n--) {
                f = n / 2.0 / (ax + f);
            }
            r = 1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
        }
        return x < 0 ? -r : r;
    }

    /** y[n][k][o] (canonical); abs: uses |x|, |w|, |b| and no activation (the error scale). */
    public static double[] refForward(Case c, double[] x, double[] w, double[] b, Activation a, boolean abs) {
        int[] o = c.out();
        double[] y = new double[c.n * c.k * c.outVol()];
        for (int n = 0; n < c.n; n++) {
            for (int k = 0; k < c.k; k++) {
                int grp = k / c.kg();
                for (int od = 0; od < o[0]; od++) {
                    for (int oh = 0; oh < o[1]; oh++) {
                        for (int ow = 0; ow < o[2]; ow++) {
                            double acc = b == null ? 0 : (abs ? Math.abs(b[k]) : b[k]);
                            for (int cc = 0; cc < c.cg(); cc++) {
                                int ch = grp * c.cg() + cc;
                                for (int kd = 0; kd < c.ks[0]; kd++) {
                                    int id = od * c.st[0] - c.pb[0] + kd * c.dil[0];
                                    for (int kh = 0; kh < c.ks[1]; kh++) {
                                        int ih = oh * c.st[1] - c.pb[1] + kh * c.dil[1];
                                        for (int kw = 0; kw < c.ks[2]; kw++) {
                                            int iw = ow * c.st[2] - c.pb[2] + kw * c.dil[2];
                                            if (id < 0 || id >= c.in[0] || ih < 0 || ih >= c.in[1] || iw < 0 || iw >= c.in[2]) {
                                                continue;
                                            }
                                            double xv = x[(((n * c.c + ch) * c.in[0] + id) * c.in[1] + ih) * c.in[2] + iw];
                                            double wv = w[(((k * c.cg() + cc) * c.ks[0] + kd) * c.ks[1] + kh) * c.ks[2] + kw];
                                            acc += abs ? Math.abs(xv * wv) : xv * wv;
                                        }
                                    }
                                }
                            }
                            y[(((n * c.k + k) * o[0] + od) * o[1] + oh) * o[2] + ow] = abs ? acc : act(acc, a);
                        }
                    }
                }
            }
        }
        return y;
    }

    /** dx (canonical) = scatter of dy through w; also gives the transposed convolution. */
    public static double[] refBackwardData(Case c, double[] dy, double[] w, boolean abs) {
        int[] o = c.out();
        double[] dx = new double[c.n * c.c * c.inVol()];
        for (int n = 0; n < c.n; n++) {
            for (int k = 0; k < c.k; k++) {
                int grp = k / c.kg();
                for (int od = 0; od < o[0]; od++) {
                    for (int oh = 0; oh < o[1]; oh++) {
                        for (int ow = 0; ow < o[2]; ow++) {
                            double g = dy[(((n * c.k + k) * o[0] + od) * o[1] + oh) * o[2] + ow];
                            for (int cc = 0; cc < c.cg(); cc++) {
                                int ch = grp * c.cg() + cc;
                                for (int kd = 0; kd < c.ks[0]; kd++) {
                                    int id = od * c.st[0] - c.pb[0] + kd * c.dil[0];
                                    for (int kh = 0; kh < c.ks[1]; kh++) {
                                        int ih = oh * c.st[1] - c.pb[1] + kh * c.dil[1];
                                        for (int kw = 0; kw < c.ks[2]; kw++) {
                                            int iw = ow * c.st[2] - c.pb[2] + kw * c.dil[2];
                                            if (id < 0 || id >= c.in[0] || ih < 0 || ih >= c.in[1] || iw < 0 || iw >= c.in[2]) {
                                                continue;
                                            }
                                            double wv = w[(((k * c.cg() + cc) * c.ks[0] + kd) * c.ks[1] + kh) * c.ks[2] + kw];
                                            dx[(((n * c.c + ch) * c.in[0] + id) * c.in[1] + ih) * c.in[2] + iw] +=
                                                    abs ? Math.abs(g * wv) : g * wv;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return dx;
    }

    /** dw, then dbias appended (length K*Cg*KS + K). */
    public static double[] refBackwardWeight(Case c, double[] x, double[] dy, boolean abs) {
        int[] o = c.out();
        int nw = c.k * c.cg() * c.kVol();
        double[] r = new double[nw + c.k];
        for (int n = 0; n < c.n; n++) {
            for (int k = 0; k < c.k; k++) {
                int grp = k / c.kg();
                for (int od = 0; od < o[0]; od++) {
                    for (int oh = 0; oh < o[1]; oh++) {
                        for (int ow = 0; ow < o[2]; ow++) {
                            double g = dy[(((n * c.k + k) * o[0] + od) * o[1] + oh) * o[2] + ow];
                            r[nw + k] += abs ? Math.abs(g) : g;
                            for (int cc = 0; cc < c.cg(); cc++) {
                                int ch = grp * c.cg() + cc;
                                for (int kd = 0; kd < c.ks[0]; kd++) {
                                    int id = od * c.st[0] - c.pb[0] + kd * c.dil[0];
                                    for (int kh = 0; kh < c.ks[1]; kh++) {
                                        int ih = oh * c.st[1] - c.pb[1] + kh * c.dil[1];
                                        for (int kw = 0; kw < c.ks[2]; kw++) {
                                            int iw = ow * c.st[2] - c.pb[2] + kw * c.dil[2];
                                            if (id < 0 || id >= c.in[0] || ih < 0 || ih >= c.in[1] || iw < 0 || iw >= c.in[2]) {
                                                continue;
                                            }
                                            double xv = x[(((n * c.c + ch) * c.in[0] + id) * c.in[1] + ih) * c.in[2] + iw];
                                            r[(((k * c.cg() + cc) * c.ks[0] + kd) * c.ks[1] + kh) * c.ks[2] + kw] +=
                                                    abs ? Math.abs(xv * g) : xv * g;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return r;
    }

    // ------------------------------------------------------------------ helpers
    /** canonical [N, C, S] -> layout order. */
    public static double[] toLayout(double[] a, int n, int ch, int s, DataLayout l) {
        if (l == DataLayout.NCHW) {
            return a;
        }
        double[] r = new double[a.length];
        for (int i = 0; i < n; i++) {
            for (int c = 0; c < ch; c++) {
                for (int p = 0; p < s; p++) {
                    r[(i * s + p) * ch + c] = a[(i * ch + c) * s + p];
                }
            }
        }
        return r;
    }

    public static double[] fromLayout(double[] a, int n, int ch, int s, DataLayout l) {
        if (l == DataLayout.NCHW) {
            return a;
        }
        double[] r = new double[a.length];
        for (int i = 0; i < n; i++) {
            for (int c = 0; c < ch; c++) {
                for (int p = 0; p < s; p++) {
                    r[(i * ch + c) * s + p] = a[(i * s + p) * ch + c];
                }
            }
        }
        return r;
    }

    static double[] rand(Random r, int n) {
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = r.nextDouble() * 2 - 1;
        }
        return d;
    }

    /** Rounds to float32 when t is FLOAT32 (the reference then sees exactly the tensor's values). */
    static double[] rounded(double[] a, DType t) {
        if (t == DType.FLOAT64) {
            return a;
        }
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) {
            r[i] = (float) a[i];
        }
        return r;
    }

    static Tensor tensor(double[] a, DType t, long... dims) {
        if (t == DType.FLOAT64) {
            return Tensor.of(a, dims);
        }
        float[] f = new float[a.length];
        for (int i = 0; i < a.length; i++) {
            f[i] = (float) a[i];
        }
        return Tensor.of(f, dims);
    }

    static double[] read(Tensor t) {
        return t.toDoubleArray();
    }

    static void assertNear(String what, double[] got, double[] want, double[] scale, double rel) {
        assertEquals(want.length, got.length, what + ": length");
        for (int i = 0; i < want.length; i++) {
            double tol = rel * (scale[i] + 1e-3);
            if (!(Math.abs(got[i] - want[i]) <= tol)) {
                fail(what + ": element " + i + " got " + got[i] + " want " + want[i] + " (tol " + tol + ")");
            }
        }
    }

    static boolean applies(Algorithm a, Case c, DataLayout l, DType t, int pass) {
        // IMPLICIT_GEMM is CUDA's kernel: on the CPU it runs AUTO
        if (a == Algorithm.REFERENCE || a == Algorithm.IM2COL_GEMM || a == Algorithm.AUTO
                || a == Algorithm.AUTOTUNE || a == Algorithm.IMPLICIT_GEMM) {
            return true;
        }
        if (a == Algorithm.CUDNN) {
            return false;  // CUDA tensors only
        }
        if (t != DType.FLOAT32) {
            return false;
        }
        boolean flipOk = true;
        for (int i = 0; i < 3; i++) {
            int span = c.dil[i] * (c.ks[i] - 1);
            flipOk &= c.st[i] == 1 && c.pb[i] <= span && c.pa[i] <= span;
        }
        return switch (a) {
            case DEPTHWISE -> c.groups == c.c && c.k == c.c;
            // NCHW too: the kernel's padded copy transposes the image, its epilogue writes NCHW planes
            case DIRECT_NHWC -> pass == 0 || (pass == 1 && flipOk);
            case WINOGRAD -> c.spatial == 2 && c.ks[1] == 3 && c.ks[2] == 3 && c.st[1] == 1 && c.st[2] == 1
                    && c.dil[1] == 1 && c.dil[2] == 1 && (pass != 1 || flipOk);
            default -> true;
        };
    }

    static double tolOf(DType t) {
        return t == DType.FLOAT64 ? 1e-10 : 1e-4;
    }

    // ------------------------------------------------------------------ grid
    @TestFactory
    List<DynamicTest> everyAlgorithmAgainstReference() {
        List<DynamicTest> tests = new ArrayList<>();
        int idx = 0;
        for (Case c : CASES) {
            for (DataLayout l : DataLayout.values()) {
                for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                    final int seed = 1000 + idx++;
                    final boolean bias = seed % 2 == 0;
                    final Activation act = Activation.values()[(seed / 2) % 4];
                    tests.add(dynamicTest(c + " " + l + " " + t + (bias ? " bias" : "") + " " + act,
                            () -> checkCase(c, l, t, bias, act, seed)));
                }
            }
        }
        return tests;
    }

    /** The same grid in float32 on the AVX2 baseline kernels (the AVX-512 paths switched off), where AVX-512 exists. */
    @TestFactory
    List<DynamicTest> everyAlgorithmOnTheAvx2Baseline() {
        List<DynamicTest> tests = new ArrayList<>();
        if (!CpuBackend.avx512()) {
            return tests;  // the grid above already ran the baseline
        }
        int idx = 0;
        for (Case c : CASES) {
            for (DataLayout l : DataLayout.values()) {
                final int seed = 5000 + idx++;
                final Activation act = Activation.values()[seed % 4];
                tests.add(dynamicTest(c + " " + l + " AVX2 " + act, () -> {
                    CpuBackend.setAvx512Enabled(false);
                    try {
                        checkCase(c, l, DType.FLOAT32, seed % 2 == 0, act, seed);
                    } finally {
                        CpuBackend.setAvx512Enabled(true);
                    }
                }));
            }
        }
        return tests;
    }

    static void checkCase(Case c, DataLayout l, DType t, boolean withBias, Activation act, long seed) {
        try (var scope = Scope.open()) {
            Random r = new Random(seed);
            int p = c.outVol();
            int s = c.inVol();
            double[] x = rounded(rand(r, c.n * c.c * s), t);
            double[] w = rounded(rand(r, c.k * c.cg() * c.kVol()), t);
            double[] b = withBias ? rounded(rand(r, c.k), t) : null;
            double[] dy = rounded(rand(r, c.n * c.k * p), t);
            Tensor xt = tensor(toLayout(x, c.n, c.c, s, l), t, c.actDims(l, c.c, c.in));
            Tensor wt = tensor(w, t, c.wDims());
            Tensor bt = withBias ? tensor(b, t, c.k) : null;
            Tensor dyt = tensor(toLayout(dy, c.n, c.k, p, l), t, c.actDims(l, c.k, c.out()));

            double[] yRef = refForward(c, x, w, b, act, false);
            double[] yScale = refForward(c, x, w, b, act, true);
            double[] dxRef = refBackwardData(c, dy, w, false);
            double[] dxScale = refBackwardData(c, dy, w, true);
            double[] dwRef = refBackwardWeight(c, x, dy, false);
            double[] dwScale = refBackwardWeight(c, x, dy, true);
            double tol = tolOf(t);
            for (Algorithm a : Algorithm.values()) {
                ConvOptions o = c.options().layout(l).algorithm(a).activation(act).build();
                ConvOptions o0 = c.options().layout(l).algorithm(a).build();
                String what = c + " " + l + " " + t + " " + a;
                // forward
                if (applies(a, c, l, t, 0)) {
                    Tensor y = Convolution.CONV_OP.call(new Convolution.ConvAttrs(c.spatial, o), xt, wt, bt);
                    assertArrayEquals(c.actDims(l, c.k, c.out()), y.dims(), what + " forward shape");
                    assertNear(what + " forward", fromLayout(read(y), c.n, c.k, p, l), yRef, yScale, tol);
                } else {
                    UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                            () -> Convolution.CONV_OP.call(new Convolution.ConvAttrs(c.spatial, o), xt, wt, bt));
                    assertTrue(e.getMessage().contains(a.name()), e.getMessage());
                }
                // backward data
                if (applies(a, c, l, t, 1)) {
                    Tensor dx = Convolution.convBackwardData(dyt, wt, c.tail(c.in), o0);
                    assertArrayEquals(c.actDims(l, c.c, c.in), dx.dims(), what + " backward-data shape");
                    assertNear(what + " backward-data", fromLayout(read(dx), c.n, c.c, s, l), dxRef, dxScale, tol);
                } else {
                    assertThrows(UnsupportedOperationException.class,
                            () -> Convolution.convBackwardData(dyt, wt, c.tail(c.in), o0));
                }
                // backward weight (+ dbias)
                if (applies(a, c, l, t, 2)) {
                    Tensor[] g = Convolution.convBackwardWeight(xt, dyt, c.tail(c.ks), true, o0);
                    assertArrayEquals(c.wDims(), g[0].dims(), what + " dw shape");
                    double[] got = new double[dwRef.length];
                    System.arraycopy(read(g[0]), 0, got, 0, dwRef.length - c.k);
                    System.arraycopy(read(g[1]), 0, got, dwRef.length - c.k, c.k);
                    assertNear(what + " backward-weight", got, dwRef, dwScale, tol);
                    Tensor[] g1 = Convolution.convBackwardWeight(xt, dyt, c.tail(c.ks), false, o0);
                    assertEquals(1, g1.length);
                } else {
                    assertThrows(UnsupportedOperationException.class,
                            () -> Convolution.convBackwardWeight(xt, dyt, c.tail(c.ks), true, o0));
                }
            }
        }
    }

    @TestFactory
    List<DynamicTest> everyActivationAndBiasOnEveryForwardAlgorithm() {
        List<DynamicTest> tests = new ArrayList<>();
        Case c = c2("2d 3x3 16->16 depthwise-free", 2, 16, 16, 1, 7, 6, 3, 3, 1, 1, 1, 1);
        Case dw = c2("2d depthwise 16", 2, 16, 16, 16, 7, 6, 3, 3, 1, 1, 1, 1);
        for (Case cs : List.of(c, dw)) {
            for (Activation act : Activation.values()) {
                for (boolean bias : new boolean[] {false, true}) {
                    tests.add(dynamicTest(cs + " " + act + (bias ? " bias" : ""), () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(7);
                            double[] x = rounded(rand(r, cs.n * cs.c * cs.inVol()), DType.FLOAT32);
                            double[] w = rounded(rand(r, cs.k * cs.cg() * cs.kVol()), DType.FLOAT32);
                            double[] b = bias ? rounded(rand(r, cs.k), DType.FLOAT32) : null;
                            double[] want = refForward(cs, x, w, b, act, false);
                            double[] scale = refForward(cs, x, w, b, act, true);
                            for (DataLayout l : DataLayout.values()) {
                                Tensor xt = tensor(toLayout(x, cs.n, cs.c, cs.inVol(), l), DType.FLOAT32,
                                        cs.actDims(l, cs.c, cs.in));
                                Tensor wt = tensor(w, DType.FLOAT32, cs.wDims());
                                Tensor bt = bias ? tensor(b, DType.FLOAT32, cs.k) : null;
                                for (Algorithm a : Algorithm.values()) {
                                    if (!applies(a, cs, l, DType.FLOAT32, 0)) {
                                        continue;
                                    }
                                    Tensor y = Convolution.conv2d(xt, wt, bt,
                                            cs.options().layout(l).algorithm(a).activation(act).build());
                                    assertNear(cs + " " + l + " " + a + " " + act,
                                            fromLayout(read(y), cs.n, cs.k, cs.outVol(), l), want, scale, 1e-4);
                                }
                            }
                        }
                    }));
                }
            }
        }
        return tests;
    }

    // ------------------------------------------------------------------ finite differences
    static double lossOf(Case c, DataLayout l, Algorithm a, double[] xl, double[] w, double[] b, double[] rl) {
        try (Tensor xt = Tensor.of(xl, c.actDims(l, c.c, c.in)); Tensor wt = Tensor.of(w, c.wDims());
             Tensor bt = Tensor.of(b, c.k);
             Tensor y = Convolution.CONV_OP.call(new Convolution.ConvAttrs(c.spatial, c.options().layout(l).algorithm(a)
                     .build()), xt, wt, bt)) {
            double[] yv = y.toDoubleArray();
            double s = 0;
            for (int i = 0; i < yv.length; i++) {
                s += yv[i] * rl[i];
            }
            return s;
        }
    }

    @TestFactory
    List<DynamicTest> gradientsMatchFiniteDifferences() {
        List<Case> tiny = List.of(
                c2("fd 2d s2 groups2 pad 2/1", 1, 2, 4, 2, 5, 4, 3, 2, 2, 1, 2, 1),
                new Case("fd 1d d2", 1, 2, 2, 3, 1, a3(1, 7), a3(1, 3), a3(1, 1), a3(1, 2), p3(1, 1), p3(1, 2)),
                new Case("fd 3d", 3, 1, 2, 2, 1, new int[] {3, 3, 4}, new int[] {2, 2, 3}, new int[] {1, 2, 1},
                        new int[] {1, 1, 1}, new int[] {0, 1, 1}, new int[] {1, 0, 1}));
        List<DynamicTest> tests = new ArrayList<>();
        for (Case c : tiny) {
            for (DataLayout l : DataLayout.values()) {
                for (Algorithm a : new Algorithm[] {Algorithm.REFERENCE, Algorithm.IM2COL_GEMM}) {
                    tests.add(dynamicTest(c + " " + l + " " + a, () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(42);
                            int s = c.inVol();
                            int p = c.outVol();
                            double[] xl = rand(r, c.n * c.c * s);
                            double[] w = rand(r, c.k * c.cg() * c.kVol());
                            double[] b = rand(r, c.k);
                            double[] rl = rand(r, c.n * c.k * p);
                            ConvOptions o = c.options().layout(l).algorithm(a).build();
                            Tensor rt = Tensor.of(rl, c.actDims(l, c.k, c.out()));
                            double[] dx = Convolution.convBackwardData(rt, Tensor.of(w, c.wDims()), c.tail(c.in), o)
                                    .toDoubleArray();
                            Tensor[] gw = Convolution.convBackwardWeight(Tensor.of(xl, c.actDims(l, c.c, c.in)), rt,
                                    c.tail(c.ks), true, o);
                            double[] dw = gw[0].toDoubleArray();
                            double[] db = gw[1].toDoubleArray();
                            double h = 1e-3;
                            for (int i = 0; i < xl.length; i++) {
                                double v = xl[i];
                                xl[i] = v + h;
                                double lp = lossOf(c, l, a, xl, w, b, rl);
                                xl[i] = v - h;
                                double lm = lossOf(c, l, a, xl, w, b, rl);
                                xl[i] = v;
                                assertEquals((lp - lm) / (2 * h), dx[i], 1e-8, c + " dx[" + i + "]");
                            }
                            for (int i = 0; i < w.length; i++) {
                                double v = w[i];
                                w[i] = v + h;
                                double lp = lossOf(c, l, a, xl, w, b, rl);
                                w[i] = v - h;
                                double lm = lossOf(c, l, a, xl, w, b, rl);
                                w[i] = v;
                                assertEquals((lp - lm) / (2 * h), dw[i], 1e-8, c + " dw[" + i + "]");
                            }
                            for (int i = 0; i < b.length; i++) {
                                double v = b[i];
                                b[i] = v + h;
                                double lp = lossOf(c, l, a, xl, w, b, rl);
                                b[i] = v - h;
                                double lm = lossOf(c, l, a, xl, w, b, rl);
                                b[i] = v;
                                assertEquals((lp - lm) / (2 * h), db[i], 1e-8, c + " db[" + i + "]");
                            }
                        }
                    }));
                }
            }
        }
        return tests;
    }

    // ------------------------------------------------------------------ transposed convolution
    @TestFactory
    List<DynamicTest> convTranspose2dAgainstReference() {
        List<DynamicTest> tests = new ArrayList<>();
        // {cin, cout, groups, h, w, k, stride, dil, padBefore, padAfter, outputPadding}
        // (the last three: stride-2 upsampling with 4x4 and 2x2 kernels, where col2im adds pairs of
        // taps; widths past one vector, odd sizes, padding 0/1/2, asymmetric padding)
        int[][] cfgs = {{3, 4, 1, 5, 6, 3, 2, 1, 1, 1, 1}, {4, 6, 2, 4, 4, 3, 1, 2, 2, 0, 0}, {2, 3, 1, 3, 5, 5, 3, 1, 0, 2, 2},
            {5, 3, 1, 7, 37, 4, 2, 1, 1, 1, 0}, {4, 4, 2, 5, 19, 2, 2, 1, 0, 0, 1}, {3, 2, 1, 6, 23, 4, 2, 1, 2, 1, 1}};
        int idx = 0;
        for (int[] f : cfgs) {
            for (DataLayout l : DataLayout.values()) {
                for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                    final long seed = 77 + idx++;
                    tests.add(dynamicTest(Arrays.toString(f) + " " + l + " " + t, () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(seed);
                            int cin = f[0];
                            int cout = f[1];
                            int g = f[2];
                            int k = f[5];
                            int st = f[6];
                            int dl = f[7];
                            int pb = f[8];
                            int pa = f[9];
                            int op = f[10];
                            int oh = (f[3] - 1) * st - pb - pa + dl * (k - 1) + op + 1;
                            int ow = (f[4] - 1) * st - pb - pa + dl * (k - 1) + op + 1;
                            // the convolution whose backward-data this is: x [N, cout, oh, ow] -> y [N, cin, h, w]
                            Case c = c2("t", 2, cout, cin, g, oh, ow, k, k, st, dl, pb, pa);
                            assertArrayEquals(new int[] {1, f[3], f[4]}, c.out());
                            double[] x = rounded(rand(r, 2 * cin * f[3] * f[4]), t);
                            double[] w = rounded(rand(r, cin * (cout / g) * k * k), t);
                            double[] b = rounded(rand(r, cout), t);
                            double[] want = refBackwardData(c, x, w, false);
                            double[] scale = refBackwardData(c, x, w, true);
                            int s = oh * ow;
                            for (int n = 0; n < 2; n++) {
                                for (int ch = 0; ch < cout; ch++) {
                                    for (int q = 0; q < s; q++) {
                                        want[(n * cout + ch) * s + q] += b[ch];
                                    }
                                }
                            }
                            Tensor xt = tensor(toLayout(x, 2, cin, f[3] * f[4], l), t,
                                    c.actDims(l, cin, new int[] {1, f[3], f[4]}));
                            Tensor wt = tensor(w, t, cin, cout / g, k, k);
                            Tensor bt = tensor(b, t, cout);
                            Tensor y = Convolution.convTranspose2d(xt, wt, bt, ConvOptions.builder().stride(st).dilation(dl)
                                    .padding(new long[] {pb}, new long[] {pa}).groups(g).outputPadding(op).layout(l).build());
                            assertArrayEquals(c.actDims(l, cout, c.in), y.dims());
                            assertNear("convTranspose2d", fromLayout(read(y), 2, cout, s, l), want, scale, tolOf(t));
                        }
                    }));
                }
            }
        }
        return tests;
    }

    // ------------------------------------------------------------------ options and errors
    @Test
    void samePaddingKeepsTheSizeAndAutoChooses() {
        try (var scope = Scope.open()) {
            Random r = new Random(3);
            Tensor x = Tensor.of(rand(r, 2 * 3 * 7 * 8), 2, 3, 7, 8);
            Tensor w = Tensor.of(rand(r, 4 * 3 * 4 * 3), 4, 3, 4, 3);
            Tensor y = Convolution.conv2d(x, w, null, ConvOptions.builder().paddingSame().build());
            assertArrayEquals(new long[] {2, 4, 7, 8}, y.dims());
            Tensor y2 = Convolution.conv2d(x, w, null, ConvOptions.builder().paddingSame().stride(2).build());
            assertArrayEquals(new long[] {2, 4, 4, 4}, y2.dims());
            // "same" with k=4 pads 1 before, 2 after: compare with explicit padding
            Tensor y3 = Convolution.conv2d(x, w, null,
                    ConvOptions.builder().padding(new long[] {1, 1}, new long[] {2, 1}).build());
            assertArrayEquals(y3.toDoubleArray(), y.toDoubleArray(), 0);

            Tensor xf = Tensor.of(new float[1 * 128 * 8 * 8], 1, 128, 8, 8);
            Tensor wf = Tensor.of(new float[128 * 128 * 9], 128, 128, 3, 3);
            Tensor wd = Tensor.of(new float[128 * 9], 128, 1, 3, 3);
            ConvOptions o = ConvOptions.builder().padding(1).build();
            assertEquals(Algorithm.WINOGRAD, Convolution.chosenAlgorithm(xf, wf, o, Convolution.Pass.FORWARD));
            assertEquals(Algorithm.WINOGRAD, Convolution.chosenAlgorithm(xf, wf, o, Convolution.Pass.BACKWARD_DATA));
            assertEquals(Algorithm.WINOGRAD, Convolution.chosenAlgorithm(xf, wf, o, Convolution.Pass.BACKWARD_WEIGHT));
            // padding 3 > kernel - 1: backward-data cannot be the flipped forward
            assertEquals(Algorithm.IM2COL_GEMM,
                    Convolution.chosenAlgorithm(xf, wf, ConvOptions.builder().padding(3).build(), Convolution.Pass.BACKWARD_DATA));
            assertEquals(Algorithm.DEPTHWISE,
                    Convolution.chosenAlgorithm(xf, wd, ConvOptions.builder().padding(1).groups(128).build(), Convolution.Pass.FORWARD));
            // fewer than 32 output channels: Winograd's 32-wide GEMM blocks would be mostly padding
            Tensor xs = Tensor.of(new float[1 * 8 * 8 * 32], 1, 8, 8, 32);
            Tensor ws = Tensor.of(new float[16 * 32 * 9], 16, 32, 3, 3);
            assertEquals(Algorithm.DIRECT_NHWC, Convolution.chosenAlgorithm(xs, ws,
                    ConvOptions.builder().padding(1).layout(DataLayout.NHWC).build(), Convolution.Pass.FORWARD));
            Tensor xd = Tensor.of(new double[1 * 8 * 8 * 32], 1, 8, 8, 32);
            Tensor wdd = Tensor.of(new double[32 * 32 * 9], 32, 32, 3, 3);
            assertEquals(Algorithm.IM2COL_GEMM, Convolution.chosenAlgorithm(xd, wdd,
                    ConvOptions.builder().padding(1).layout(DataLayout.NHWC).build(), Convolution.Pass.FORWARD));
            // an NCHW RGB stem: the direct kernel, which transposes the image in its padded copy; its
            // backward passes and NCHW images of many channels stay on im2col
            Tensor xrgb = Tensor.of(new float[1 * 3 * 16 * 16], 1, 3, 16, 16);
            Tensor wstem = Tensor.of(new float[64 * 3 * 49], 64, 3, 7, 7);
            ConvOptions stem = ConvOptions.builder().stride(2).padding(3).build();
            assertEquals(Algorithm.DIRECT_NHWC, Convolution.chosenAlgorithm(xrgb, wstem, stem, Convolution.Pass.FORWARD));
            assertEquals(Algorithm.IM2COL_GEMM,
                    Convolution.chosenAlgorithm(xrgb, wstem, stem, Convolution.Pass.BACKWARD_WEIGHT));
            Tensor x32 = Tensor.of(new float[1 * 32 * 8 * 8], 1, 32, 8, 8);
            Tensor w32 = Tensor.of(new float[16 * 32 * 9], 16, 32, 3, 3);
            assertEquals(Algorithm.IM2COL_GEMM,
                    Convolution.chosenAlgorithm(x32, w32, ConvOptions.builder().padding(1).build(), Convolution.Pass.FORWARD));
        }
    }

    /** AUTOTUNE times the applicable algorithms once per shape, caches the winner (also in a file) and reuses it. */
    @Test
    void autotuneCachesTheFastestAlgorithmPerShape() throws Exception {
        java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("cortado-autotune");
        java.nio.file.Path file = dir.resolve("conv-autotune.txt");
        String before = System.getProperty(ConvAutotune.FILE_PROPERTY);
        System.setProperty(ConvAutotune.FILE_PROPERTY, file.toString());
        try (var scope = Scope.open()) {
            Random r = new Random(21);
            Tensor x = tensor(rand(r, 2 * 19 * 23 * 40), DType.FLOAT32, 2, 19, 23, 40);
            Tensor w = tensor(rand(r, 48 * 40 * 9), DType.FLOAT32, 48, 40, 3, 3);
            ConvOptions tune = ConvOptions.builder().padding(1).layout(DataLayout.NHWC).algorithm(Algorithm.AUTOTUNE)
                    .build();
            ConvOptions ref = ConvOptions.builder().padding(1).layout(DataLayout.NHWC).algorithm(Algorithm.REFERENCE)
                    .build();
            int entries = ConvAutotune.entries().size();
            Tensor y1 = Convolution.conv2d(x, w, null, tune);
            var tuned = new java.util.HashMap<>(ConvAutotune.entries());
            assertEquals(entries + 1, tuned.size(), "one new cache entry: " + tuned);
            String key = tuned.keySet().stream()
                    .filter(k -> k.startsWith("pass0 FLOAT32 NHWC")
                            && k.endsWith(",2,40,48,1,1,19,23,1,3,3,1,1,1,1,1,1,0,1,1,0,1,1,1,19,23"))
                    .findFirst().orElseThrow(() -> new AssertionError("no entry for the shape in " + tuned));
            assertTrue(List.of(Algorithm.WINOGRAD, Algorithm.DIRECT_NHWC, Algorithm.IM2COL_GEMM).contains(tuned.get(key)),
                    tuned.get(key).toString());
            // the tuned output is the chosen algorithm's: the second (cached) call is bit-identical
            Tensor y2 = Convolution.conv2d(x, w, null, tune);
            assertArrayEquals(y1.toFloatArray(), y2.toFloatArray());
            assertEquals(tuned.size(), ConvAutotune.entries().size(), "no re-tuning for a cached shape");
            double[] want = Convolution.conv2d(tensor(read(x), DType.FLOAT64, x.dims()),
                    tensor(read(w), DType.FLOAT64, w.dims()), null, ref).toDoubleArray();
            float[] got = y1.toFloatArray();
            for (int i = 0; i < want.length; i++) {
                assertTrue(Math.abs(got[i] - want[i]) <= 1e-4 * (1 + Math.abs(want[i])), "element " + i);
            }
            // persisted atomically: a fresh cache reads the same choice back
            List<String> lines = java.nio.file.Files.readAllLines(file);
            assertTrue(lines.contains(key + "=" + tuned.get(key).name()), lines.toString());
            ConvAutotune.clear();
            assertTrue(ConvAutotune.entries().isEmpty());
            ConvAutotune.reload();
            assertEquals(tuned.get(key), ConvAutotune.entries().get(key));
        } finally {
            if (before == null) {
                System.clearProperty(ConvAutotune.FILE_PROPERTY);
            } else {
                System.setProperty(ConvAutotune.FILE_PROPERTY, before);
            }
        }
    }

    /** Winograd backward-weight sums over tiles in a fixed chunk order: bit-identical on 1 and 2 threads. */
    @Test
    void winogradBackwardWeightDoesNotDependOnThreadCount() {
        int before = CpuBackend.threads();
        try (var scope = Scope.open()) {
            Random r = new Random(11);
            Tensor x = tensor(rand(r, 3 * 17 * 50 * 50), DType.FLOAT32, 3, 50, 50, 17);
            Tensor dy = tensor(rand(r, 3 * 70 * 50 * 50), DType.FLOAT32, 3, 50, 50, 70);
            ConvOptions o = ConvOptions.builder().padding(1).layout(DataLayout.NHWC).algorithm(Algorithm.WINOGRAD).build();
            float[][] got = new float[2][];
            for (int t = 1; t <= 2; t++) {
                CpuBackend.setThreads(t);
                got[t - 1] = Convolution.convBackwardWeight(x, dy, new long[] {3, 3}, false, o)[0].toFloatArray();
            }
            assertArrayEquals(got[0], got[1], "dw on 1 and 2 threads");
        } finally {
            CpuBackend.setThreads(before);
        }
    }

    /**
     * Winograd's forward at batch 1 (one chunk of tiles) splits the output channels over the
     * threads; every output is computed as without the split: bit for bit on 1, 2 and 3 threads,
     * NCHW and NHWC, with a fused SiLU (applied per slice) and a partial last channel block.
     */
    @Test
    void winogradForwardDoesNotDependOnThreadCount() {
        int before = CpuBackend.threads();
        try (var scope = Scope.open()) {
            Random r = new Random(12);
            for (DataLayout l : DataLayout.values()) {
                Case c = c2("slices", 1, 24, 100, 1, 7, 9, 3, 3, 1, 1, 1, 1);
                Tensor x = tensor(toLayout(rand(r, 24 * 63), 1, 24, 63, l), DType.FLOAT32, c.actDims(l, 24, c.in));
                Tensor w = tensor(rand(r, 100 * 24 * 9), DType.FLOAT32, 100, 24, 3, 3);
                Tensor b = tensor(rand(r, 100), DType.FLOAT32, 100);
                ConvOptions o = c.options().layout(l).algorithm(Algorithm.WINOGRAD).activation(Activation.SILU).build();
                double[][] got = new double[3][];
                for (int t = 1; t <= 3; t++) {
                    CpuBackend.setThreads(t);
                    got[t - 1] = Convolution.conv2d(x, w, b, o).toDoubleArray();
                }
                assertArrayEquals(got[0], got[1], l + ": 1 and 2 threads");
                assertArrayEquals(got[0], got[2], l + ": 1 and 3 threads");
                double[] xs = fromLayout(read(x), 1, 24, 63, l);
                assertNear(l + " against float64", fromLayout(got[1], 1, 100, c.outVol(), l),
                        refForward(c, xs, read(w), read(b), Activation.SILU, false),
                        refForward(c, xs, read(w), read(b), Activation.SILU, true), 1e-4);
            }
        } finally {
            CpuBackend.setThreads(before);
        }
    }

    static void expectError(String opName, Runnable r, String... fragments) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, r::run);
        String m = e.getMessage();
        assertTrue(m.startsWith(opName + ":"), m);
        for (String f : fragments) {
            assertTrue(m.contains(f), "'" + f + "' missing from: " + m);
        }
    }

    @Test
    void badInputsNameTheOpAndShapes() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.of(new float[1 * 3 * 5 * 5], 1, 3, 5, 5);
            Tensor w = Tensor.of(new float[4 * 2 * 3 * 3], 4, 2, 3, 3);
            ConvOptions d = ConvOptions.defaults();
            expectError("conv", () -> Convolution.conv2d(x, w, null, d), "[1, 3, 5, 5]", "[4, 2, 3, 3]", "channels");
            Tensor w6 = Tensor.of(new float[6 * 1 * 3 * 3], 6, 1, 3, 3);
            expectError("conv", () -> Convolution.conv2d(x, w6, null, ConvOptions.builder().groups(2).build()),
                    "divisible by groups 2", "[1, 3, 5, 5]");
            Tensor big = Tensor.of(new float[2 * 3 * 7 * 7], 2, 3, 7, 7);
            expectError("conv", () -> Convolution.conv2d(x, big, null, ConvOptions.builder().padding(0).build()),
                    "padded input", "[2, 3, 7, 7]");
            Tensor w3 = Tensor.of(new float[2 * 3 * 3 * 3], 2, 3, 3, 3);
            expectError("conv", () -> Convolution.conv2d(x, w3, null, ConvOptions.builder().stride(0).build()),
                    "stride must be positive", "[1, 3, 5, 5]");
            expectError("conv", () -> Convolution.conv2d(x, w3, null, ConvOptions.builder().dilation(-1).build()),
                    "dilation must be positive");
            expectError("conv", () -> Convolution.conv2d(x, w3, null, ConvOptions.builder().padding(-1).build()),
                    "padding must be non-negative");
            Tensor x3 = Tensor.of(new float[3 * 5 * 5], 3, 5, 5);
            expectError("conv", () -> Convolution.conv2d(x3, w3, null, d), "rank 4", "[3, 5, 5]");
            expectError("conv", () -> Convolution.conv1d(x, w3, null, d), "rank 3", "[1, 3, 5, 5]");
            Tensor xi = Tensor.of(new int[1 * 3 * 5 * 5], 1, 3, 5, 5);
            expectError("conv", () -> Convolution.conv2d(xi, w3, null, d), "int32", "float32 or float64");
            Tensor wd = Tensor.of(new double[2 * 3 * 3 * 3], 2, 3, 3, 3);
            expectError("conv", () -> Convolution.conv2d(x, wd, null, d), "float64", "weight");
            Tensor b5 = Tensor.of(new float[5], 5);
            expectError("conv", () -> Convolution.conv2d(x, w3, b5, d), "bias must have shape [2]");
            // backward ops
            Tensor dy = Tensor.of(new float[1 * 2 * 4 * 4], 1, 2, 4, 4);
            expectError("conv_backward_data", () -> Convolution.convBackwardData(dy, w3, new long[] {5, 5}, d),
                    "[1, 2, 4, 4]", "output size [3, 3]");
            expectError("conv_backward_weight",
                    () -> Convolution.convBackwardWeight(x, dy, new long[] {3, 3}, true, d), "[1, 2, 4, 4]", "[3, 3]");
            expectError("conv_transpose", () -> Convolution.convTranspose2d(x, w, null,
                    ConvOptions.builder().stride(2).outputPadding(2).build()), "output_padding");
            // an algorithm that does not apply: unsupported, naming it
            UnsupportedOperationException u = assertThrows(UnsupportedOperationException.class,
                    () -> Convolution.conv2d(x, w3, null, ConvOptions.builder().algorithm(Algorithm.DEPTHWISE).build()));
            assertTrue(u.getMessage().contains("DEPTHWISE"), u.getMessage());
        }
    }

    @Test
    void nonContiguousInputsAreCopiedFirst() {
        try (var scope = Scope.open()) {
            Random r = new Random(5);
            Case c = c2("nc", 2, 3, 4, 1, 6, 5, 3, 3, 1, 1, 1, 1);
            double[] x = rand(r, 2 * 3 * 30);
            double[] w = rand(r, 4 * 3 * 9);
            // an NHWC tensor permuted to NCHW: not contiguous
            Tensor xNhwc = Tensor.of(toLayout(x, 2, 3, 30, DataLayout.NHWC), 2, 6, 5, 3);
            Tensor xView = xNhwc.permute(0, 3, 1, 2);
            Tensor y = Convolution.conv2d(xView, Tensor.of(w, 4, 3, 3, 3), null, c.options().build());
            double[] want = refForward(c, x, w, null, Activation.NONE, false);
            assertArrayEquals(want, y.toDoubleArray(), 1e-12);
        }
    }
}
