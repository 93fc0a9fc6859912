package dev.cortado.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Reductions along every subset of axes of a rank-3 tensor against float64 reductions of the
 * stored inputs. Tolerances: sum and mean are bounded relative to sum |x| (mean |x|): float64
 * 1e-12, float32 1e-5 (pairwise float32 accumulation), 16-bit 1e-2 / 2e-3 (float32
 * accumulation, one rounding of the result); var (float64 two-pass internally) and prod
 * relative to the result with the same per-dtype factors; max/min/argmax/argmin exactly.
 */
public class ReductionOpsTest {
    private static final long[] DIMS = {4, 5, 6};
    private static final int[][] AXES = {{}, {0}, {1}, {2}, {0, 1}, {0, 2}, {1, 2}, {0, 1, 2}, {-1}, {-3, -1}, {2, 0}};

    static double rel(DType t) {
        return switch (t) {
            case FLOAT64 -> 1e-12;
            case FLOAT32 -> 1e-5;
            case BFLOAT16 -> 1e-2;
            default -> 2e-3;
        };
    }

    /** Groups of input values per output element (reduced elements in row-major order). */
    public record Groups(double[][] values, long[] keptDims, long[] keepdimDims) {
    }

    public static Groups group(double[] x, long[] dims, int[] axes) {
        boolean[] red = new boolean[dims.length];
        if (axes.length == 0) {
            Arrays.fill(red, true);
        }
        for (int a : axes) {
            red[a < 0 ? a + dims.length : a] = true;
        }
        List<Long> kept = new ArrayList<>();
        long[] keep = new long[dims.length];
        long count = 1;
        for (int d = 0; d < dims.length; d++) {
            keep[d] = red[d] ? 1 : dims[d];
            if (!red[d]) {
                kept.add(dims[d]);
            } else {
                count *= dims[d];
            }
        }
        long[] keptDims = kept.stream().mapToLong(Long::longValue).toArray();
        int nOut = (int) Reference.numel(keptDims);
        double[][] g = new double[nOut][(int) count];
        int[] fill = new int[nOut];
        for (int i = 0; i < x.length; i++) {
            long[] idx = Reference.unravel(i, dims);
            long o = 0;
            for (int d = 0; d < dims.length; d++) {
                if (!red[d]) {
                    o = o * dims[d] + idx[d];
                }
            }
            g[(int) o][fill[(int) o]++] = x[i];
        }
        return new Groups(g, keptDims, keep);
    }

    public static double sum(double[] v) {
        double s = 0;
        for (double x : v) {
            s += x;
        }
        return s;
    }

    static double sumAbs(double[] v) {
        double s = 0;
        for (double x : v) {
            s += Math.abs(x);
        }
        return s;
    }

    public static double var(double[] v, double correction) {
        double m = sum(v) / v.length;
        double s = 0;
        for (double x : v) {
            s += (x - m) * (x - m);
        }
        return s / (v.length - correction);
    }

    public static double max(double[] v) {
        double m = Double.NEGATIVE_INFINITY;
        for (double x : v) {
            if (Double.isNaN(x)) {
                return x;
            }
            m = Math.max(m, x);
        }
        return m;
    }

    public static double min(double[] v) {
        double m = Double.POSITIVE_INFINITY;
        for (double x : v) {
            if (Double.isNaN(x)) {
                return x;
            }
            m = Math.min(m, x);
        }
        return m;
    }

    public static int argmax(double[] v) {
        int best = 0;
        for (int i = 0; i < v.length; i++) {
            if (Double.isNaN(v[i])) {
                return i;
            }
            if (v[i] > v[best]) {
                best = i;
            }
        }
        return best;
    }

    public static int argmin(double[] v) {
        int best = 0;
        for (int i = 0; i < v.length; i++) {
            if (Double.isNaN(v[i])) {
                return i;
            }
            if (v[i] < v[best]) {
                best = i;
            }
        }
        return best;
    }

    enum Red { SUM, MEAN, MAX, MIN, VAR0, VAR1, PROD }

    static Tensor apply(Red r, Tensor x, boolean keepdim, int[] axes) {
        return switch (r) {
            case SUM -> Reductions.sum(x, keepdim, axes);
            case MEAN -> Reductions.mean(x, keepdim, axes);
            case MAX -> Reductions.max(x, keepdim, axes);
            case MIN -> Reductions.min(x, keepdim, axes);
            case VAR0 -> Reductions.var(x, 0, keepdim, axes);
            case VAR1 -> Reductions.var(x, 1, keepdim, axes);
            case PROD -> Reductions.prod(x, keepdim, axes);
        };
    }

    /** Reference value and error limit for one group. */
    static double[] reference(Red r, double[] g, DType t) {
        double q = rel(t);
        return switch (r) {
            case SUM -> new double[] {sum(g), q * sumAbs(g)};
            case MEAN -> new double[] {sum(g) / g.length, q * sumAbs(g) / g.length};
            case MAX -> new double[] {max(g), 0};
            case MIN -> new double[] {min(g), 0};
            case VAR0 -> new double[] {var(g, 0), q * var(g, 0)};
            case VAR1 -> new double[] {var(g, 1), q * var(g, 1)};
            case PROD -> {
                double p = 1;
                for (double x : g) {
                    p *= x;
                }
                yield new double[] {p, 4 * q * Math.abs(p)};
            }
        };
    }

    static void checkReduction(Red r, DType t, Tensor x, double[] xv, int[] axes, boolean keepdim) {
        Groups gr = group(xv, x.dims(), axes);
        Tensor y = apply(r, x, keepdim, axes);
        String what = r + " " + t + " axes " + Arrays.toString(axes) + " keepdim " + keepdim;
        assertEquals(t, y.dtype(), what + ": dtype");
        assertArrayEquals(keepdim ? gr.keepdimDims() : gr.keptDims(), y.dims(), what + ": shape");
        double[] got = y.toDoubleArray();
        for (int o = 0; o < got.length; o++) {
            double[] ref = reference(r, gr.values()[o], t);
            if (!(Math.abs(got[o] - ref[0]) <= ref[1]) && !(Double.isNaN(ref[0]) && Double.isNaN(got[o]))) {
                fail(what + ": output " + o + " is " + got[o] + ", expected " + ref[0] + " (limit " + ref[1] + ")");
            }
        }
    }

    @TestFactory
    List<DynamicTest> everyAxisSubset() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 1;
        for (Red r : Red.values()) {
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
                for (int[] axes : AXES) {
                    for (boolean keepdim : new boolean[] {false, true}) {
                        long s = seed++;
                        tests.add(dynamicTest(r + " " + t + " " + Arrays.toString(axes) + " keepdim=" + keepdim, () -> {
                            try (var scope = Scope.open()) {
                                Random rnd = new Random(s);
                                int n = (int) Reference.numel(DIMS);
                                double[] in = r == Red.PROD ? Reference.uniform(rnd, n, 0.6, 1.5) : Reference.uniform(rnd, n, -3, 3);
                                Tensor x = Reference.make(in, t, DIMS);
                                checkReduction(r, t, x, x.toDoubleArray(), axes, keepdim);
                                // the same on a permuted (non-contiguous) view [6, 4, 5]
                                Tensor p = x.permute(2, 0, 1);
                                checkReduction(r, t, p, Reference.viewOf(x.toDoubleArray(), p), axes, keepdim);
                                // and on a step-2 slice [4, 5, 3]
                                Tensor sl = x.slice(2, 1, 6, 2);
                                checkReduction(r, t, sl, Reference.viewOf(x.toDoubleArray(), sl), axes, keepdim);
                            }
                        }));
                    }
                }
            }
        }
        return tests;
    }

    @TestFactory
    List<DynamicTest> argmaxArgmin() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 400;
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.INT32, DType.INT8, DType.UINT8,
                DType.INT64}) {
            for (int axis : new int[] {0, 1, 2, -1, -2}) {
                for (boolean keepdim : new boolean[] {false, true}) {
                    long s = seed++;
                    tests.add(dynamicTest(t + " axis " + axis + " keepdim " + keepdim, () -> {
                        try (var scope = Scope.open()) {
                            Random rnd = new Random(s);
                            int n = (int) Reference.numel(DIMS);
                            // a coarse grid: many ties, which must resolve to the first index
                            double[] in = t.isInteger() ? Reference.ints(rnd, n, t == DType.UINT8 ? 0 : -3, 3)
                                    : Reference.grid(rnd, n, -2, 2);
                            Tensor base = Reference.make(in, t, DIMS);
                            double[] bv = Reference.values(base);
                            for (Tensor x : new Tensor[] {base, base.permute(1, 2, 0)}) {
                                double[] xv = Reference.viewOf(bv, x);
                                Groups gr = group(xv, x.dims(), new int[] {axis});
                                Tensor am = Reductions.argmax(x, axis, keepdim);
                                Tensor an = Reductions.argmin(x, axis, keepdim);
                                assertEquals(DType.INT64, am.dtype());
                                assertArrayEquals(keepdim ? gr.keepdimDims() : gr.keptDims(), am.dims());
                                long[] gmax = am.toLongArray();
                                long[] gmin = an.toLongArray();
                                for (int o = 0; o < gmax.length; o++) {
                                    assertEquals(argmax(gr.values()[o]), gmax[o], "argmax " + t + " out " + o);
                                    assertEquals(argmin(gr.values()[o]), gmin[o], "argmin " + t + " out " + o);
                                }
                                assertEquals(argmax(xv), Reductions.argmax(x).item(), "flat argmax");
                            }
                        }
                    }));
                }
            }
        }
        return tests;
    }

    @Test
    void integerReductions() {
        try (var scope = Scope.open()) {
            Random rnd = new Random(9);
            int n = (int) Reference.numel(DIMS);
            for (DType t : new DType[] {DType.INT8, DType.UINT8, DType.INT32, DType.INT64}) {
                double[] in = t == DType.UINT8 ? Reference.ints(rnd, n, 0, 255)
                        : t == DType.INT8 ? Reference.ints(rnd, n, -128, 127) : Reference.ints(rnd, n, -1000000, 1000000);
                Tensor x = Reference.make(in, t, DIMS);
                double[] xv = Reference.values(x);
                for (int[] axes : AXES) {
                    Groups gr = group(xv, DIMS, axes);
                    Tensor s = Reductions.sum(x, false, axes);
                    assertEquals(DType.INT64, s.dtype(), "integer sum gives int64");
                    Tensor mx = Reductions.max(x, true, axes);
                    Tensor mn = Reductions.min(x, false, axes);
                    assertEquals(t, mx.dtype());
                    long[] gs = s.toLongArray();
                    long[] gmx = mx.toLongArray();
                    long[] gmn = mn.toLongArray();
                    for (int o = 0; o < gs.length; o++) {
                        assertEquals((long) sum(gr.values()[o]), gs[o], "sum " + t + Arrays.toString(axes));
                        assertEquals((long) max(gr.values()[o]), gmx[o], "max " + t);
                        assertEquals((long) min(gr.values()[o]), gmn[o], "min " + t);
                    }
                }
                // prod of small integers -> int64
                Tensor small = Reference.make(Reference.ints(rnd, 24, t == DType.UINT8 ? 0 : -3, 3), t, 4, 6);
                double[] sv = Reference.values(small);
                Tensor p = Reductions.prod(small, false, 1);
                assertEquals(DType.INT64, p.dtype());
                long[] gp = p.toLongArray();
                for (int i = 0; i < 4; i++) {
                    long want = 1;
                    for (int j = 0; j < 6; j++) {
                        want *= (long) sv[i * 6 + j];
                    }
                    assertEquals(want, gp[i], "prod " + t);
                }
            }
            // bool sum counts trues
            boolean[] b = Reference.bools(rnd, 30);
            Tensor bt = Tensor.of(b, 5, 6);
            Tensor cnt = Reductions.sum(bt, false, 1);
            assertEquals(DType.INT64, cnt.dtype());
            long[] gc = cnt.toLongArray();
            for (int i = 0; i < 5; i++) {
                long c = 0;
                for (int j = 0; j < 6; j++) {
                    c += b[i * 6 + j] ? 1 : 0;
                }
                assertEquals(c, gc[i]);
            }
        }
    }

    @Test
    void largeFloat32SumIsAccurate() {
        try (var scope = Scope.open()) {
            Random rnd = new Random(13);
            int n = 1_000_000;
            double[] in = Reference.uniform(rnd, n, 0, 1);
            Tensor x = Reference.make(in, DType.FLOAT32, n);
            double[] xv = x.toDoubleArray();
            double want = sum(xv);
            double got = Reductions.sum(x).item();
            // naive float32 accumulation is off by ~1e-4 here; pairwise stays near 1e-7
            assertTrue(Math.abs(got - want) / want < 2e-6, "relative error " + Math.abs(got - want) / want);
            double gotMean = Reductions.mean(x).item();
            assertTrue(Math.abs(gotMean - want / n) / (want / n) < 2e-6, "mean relative error");
            // rows of a large 2-d tensor and a reduction over the outer axis (strided inner loop)
            Tensor m = x.reshape(1000, 1000);
            double[] rows = Reductions.sum(m, false, 1).toDoubleArray();
            double[] cols = Reductions.sum(m, false, 0).toDoubleArray();
            for (int i = 0; i < 1000; i++) {
                double r = 0;
                double c = 0;
                for (int j = 0; j < 1000; j++) {
                    r += xv[i * 1000 + j];
                    c += xv[j * 1000 + i];
                }
                assertEquals(r, rows[i], 1e-5 * r, "row " + i);
                assertEquals(c, cols[i], 1e-5 * c, "col " + i);
            }
            // float32 variance of data with a large mean (two-pass: no catastrophic cancellation)
            double[] shifted = Arrays.stream(xv).map(v -> v + 1000).toArray();
            Tensor xs = Reference.make(shifted, DType.FLOAT32, n);
            double[] sv = xs.toDoubleArray();
            double wantVar = var(sv, 1);
            double gotVar = Reductions.var(xs, 1, false).item();
            assertEquals(wantVar, gotVar, 1e-4 * wantVar, "var with mean 1000");
            assertEquals(max(sv), Reductions.max(xs).item(), 0.0);
            assertEquals(argmax(sv), (int) Reductions.argmax(xs).item());
        }
    }

    @Test
    void emptyReductions() {
        try (var scope = Scope.open()) {
            Tensor e = Tensor.zeros(DType.FLOAT32, 0, 3);
            Tensor s = Reductions.sum(e, false, 0);
            assertArrayEquals(new long[] {3}, s.dims());
            assertArrayEquals(new double[] {0, 0, 0}, s.toDoubleArray());
            assertArrayEquals(new double[] {1, 1, 1}, Reductions.prod(e, false, 0).toDoubleArray());
            double[] m = Reductions.mean(e, true, 0).toDoubleArray();
            assertTrue(Arrays.stream(m).allMatch(Double::isNaN), "mean of nothing is NaN");
            assertArrayEquals(new long[] {1, 3}, Reductions.mean(e, true, 0).dims());
            assertEquals(0, Reductions.sum(e, false, 1).numel(), "reducing the non-empty axis leaves [0]");
            assertEquals(0.0, Reductions.sum(e).item());
            assertEquals(0L, Reductions.sum(Tensor.zeros(DType.INT32, 0, 3)).toLongArray()[0]);
            var ex = assertThrows(IllegalArgumentException.class, () -> Reductions.max(e, false, 0));
            assertTrue(ex.getMessage().contains("max") && ex.getMessage().contains("[0, 3]"), ex.getMessage());
            var ex2 = assertThrows(IllegalArgumentException.class, () -> Reductions.argmin(e, 0, false));
            assertTrue(ex2.getMessage().contains("argmin") && ex2.getMessage().contains("[0, 3]"), ex2.getMessage());
            // max over the non-empty axis of an empty tensor is fine: an empty result
            assertEquals(0, Reductions.max(e, false, 1).numel());
        }
    }

    @Test
    void nanPropagatesInMaxMinAndArgmax() {
        try (var scope = Scope.open()) {
            double nan = Double.NaN;
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
                Tensor x = Reference.make(new double[] {1, nan, 5, nan, 2, 3, 3, 0, -1, 7, 7, 7}, t, 3, 4);
                assertTrue(Double.isNaN(Reductions.max(x).item()), "max " + t);
                assertTrue(Double.isNaN(Reductions.min(x).item()), "min " + t);
                double[] rowMax = Reductions.max(x, false, 1).toDoubleArray();
                assertTrue(Double.isNaN(rowMax[0]));
                assertArrayEquals(new double[] {3, 7}, Arrays.copyOfRange(rowMax, 1, 3), 0.0, "max " + t);
                assertArrayEquals(new double[] {nan, 0, -1}, Reductions.min(x, false, 1).toDoubleArray(), 0.0, "min " + t);
                assertArrayEquals(new long[] {1, 1, 1}, Reductions.argmax(x, 1, false).toLongArray(), "argmax " + t);
                assertArrayEquals(new long[] {1, 3, 0}, Reductions.argmin(x, 1, false).toLongArray(), "argmin " + t);
                assertEquals(1.0, Reductions.argmax(x).item(), "flat argmax " + t);
                assertTrue(Double.isNaN(Reductions.sum(x, false, 1).toDoubleArray()[0]));
            }
        }
    }

    @Test
    void badInputsNameTheOpAndShapes() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.zeros(DType.FLOAT32, 2, 3);
            var e = assertThrows(IllegalArgumentException.class, () -> Reductions.sum(x, false, 2));
            assertTrue(e.getMessage().contains("sum") && e.getMessage().contains("axis 2"), e.getMessage());
            var e2 = assertThrows(IllegalArgumentException.class, () -> Reductions.mean(Tensor.zeros(DType.INT32, 2, 3)));
            assertTrue(e2.getMessage().contains("mean") && e2.getMessage().contains("[2, 3]"), e2.getMessage());
            var e3 = assertThrows(IllegalArgumentException.class, () -> Reductions.sum(x, false, 1, -1));
            assertTrue(e3.getMessage().contains("sum") && e3.getMessage().contains("repeated"), e3.getMessage());
            var e4 = assertThrows(IllegalArgumentException.class,
                    () -> Reductions.ARGMAX_OP.call(new Reductions.Axes(new int[] {0, 1}, false, 0), x));
            assertTrue(e4.getMessage().contains("argmax"), e4.getMessage());
            Function<Tensor, Tensor> maxBool = t -> Reductions.max(t);
            var e5 = assertThrows(IllegalArgumentException.class, () -> maxBool.apply(Tensor.of(new boolean[] {true}, 1)));
            assertTrue(e5.getMessage().contains("max") && e5.getMessage().contains("bool[1]"), e5.getMessage());
        }
    }
}
