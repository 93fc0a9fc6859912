package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.ops.Pooling.PoolOptions;
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
 * max_pool / avg_pool / adaptive_avg_pool / global_avg_pool, forward and backward, against
 * float64 references written here (plain loops over NCHW data; NHWC inputs are permuted copies
 * of the same data and the outputs are permuted back), plus finite differences in float64.
 * Tolerances: float32 1e-5 relative + 1e-6 absolute (means of values in [-1, 1] cancel);
 * float64 1e-10 relative + 1e-12 absolute. Max pooling is exact (distinct inputs, exact indices).
 */
public class PoolingOpsTest {
    static Tol tol(DType t) {
        return t == DType.FLOAT64 ? new Tol(1e-10, 1e-12) : new Tol(1e-5, 1e-6);
    }

    // ------------------------------------------------------------------ references
    /** Reference pooling of NCHW x [n, c, sp...]; kind 0 max, 1 avg; returns {y, indices}. */
    public static double[][] poolRef(double[] x, int n, int c, int[] in, int[] k, int[] s, int[] p, int[] dil, int kind,
                              boolean includePad) {
        int nd = in.length;
        int[] out = new int[nd];
        int plane = 1;
        int oplane = 1;
        int taps = 1;
        for (int i = 0; i < nd; i++) {
            out[i] = (in[i] + 2 * p[i] - dil[i] * (k[i] - 1) - 1) / s[i] + 1;
            plane *= in[i];
            oplane *= out[i];
            taps *= k[i];
        }
        double[] y = new double[n * c * oplane];
        double[] idx = new double[n * c * oplane];
        for (int nc = 0; nc < n * c; nc++) {
            for (int o = 0; o < oplane; o++) {
                int[] oc = unflat(o, out);
                double m = Double.NEGATIVE_INFINITY;
                long mi = -1;
                double sum = 0;
                int count = 0;
                for (int t = 0; t < taps; t++) {
                    int[] r = unflat(t, k);
                    int flat = 0;
                    boolean inside = true;
                    for (int i = 0; i < nd; i++) {
                        int pos = oc[i] * s[i] - p[i] + r[i] * dil[i];
                        if (pos < 0 || pos >= in[i]) {
                            inside = false;
                        }
                        flat = flat * in[i] + pos;
                    }
                    if (!inside) {
                        continue;
                    }
                    double v = x[nc * plane + flat];
                    if (count == 0) {
                        mi = flat;
                    }
                    count++;
                    sum += v;
                    if (v > m || Double.isNaN(v)) {
                        m = v;
                        mi = flat;
                    }
                }
                y[nc * oplane + o] = kind == 0 ? m : sum / (includePad ? taps : count);
                idx[nc * oplane + o] = mi;
            }
        }
        return new double[][] {y, idx};
    }

    /** Average pooling backward reference: dy / divisor added to every tap inside the input. */
    public static double[] avgBackwardRef(double[] dy, int n, int c, int[] in, int[] k, int[] s, int[] p, boolean includePad) {
        int nd = in.length;
        int[] out = new int[nd];
        int plane = prod(in);
        int taps = prod(k);
        for (int i = 0; i < nd; i++) {
            out[i] = (in[i] + 2 * p[i] - k[i]) / s[i] + 1;
        }
        int oplane = prod(out);
        double[] dx = new double[n * c * plane];
        for (int nc = 0; nc < n * c; nc++) {
            for (int o = 0; o < oplane; o++) {
                int[] oc = unflat(o, out);
                List<Integer> inside = new ArrayList<>();
                for (int t = 0; t < taps; t++) {
                    int[] r = unflat(t, k);
                    int flat = 0;
                    boolean ok = true;
                    for (int i = 0; i < nd; i++) {
                        int pos = oc[i] * s[i] - p[i] + r[i];
                        ok &= pos >= 0 && pos < in[i];
                        flat = flat * in[i] + pos;
                    }
                    if (ok) {
                        inside.add(flat);
                    }
                }
                double v = dy[nc * oplane + o] / (includePad ? taps : inside.size());
                for (int f : inside) {
                    dx[nc * plane + f] += v;
                }
            }
        }
        return dx;
    }

    /** Adaptive average pooling backward reference. */
    public static double[] adaptiveBackwardRef(double[] dy, int n, int c, int[] in, int[] out) {
        int nd = in.length;
        int plane = prod(in);
        int oplane = prod(out);
        double[] dx = new double[n * c * plane];
        for (int nc = 0; nc < n * c; nc++) {
            for (int o = 0; o < oplane; o++) {
                int[] oc = unflat(o, out);
                int[] lo = new int[nd];
                int[] len = new int[nd];
                for (int i = 0; i < nd; i++) {
                    lo[i] = Math.floorDiv(oc[i] * in[i], out[i]);
                    len[i] = -Math.floorDiv(-(oc[i] + 1) * in[i], out[i]) - lo[i];
                }
                int total = prod(len);
                for (int t = 0; t < total; t++) {
                    int[] r = unflat(t, len);
                    int flat = 0;
                    for (int i = 0; i < nd; i++) {
                        flat = flat * in[i] + lo[i] + r[i];
                    }
                    dx[nc * plane + flat] += dy[nc * oplane + o] / total;
                }
            }
        }
        return dx;
    }

    static int[] unflat(int f, int[] dims) {
        int[] r = new int[dims.length];
        for (int i = dims.length - 1; i >= 0; i--) {
            r[i] = f % dims[i];
            f /= dims[i];
        }
        return r;
    }

    /** Adaptive average pooling reference: windows [floor(i*L/o), ceil((i+1)*L/o)). */
    public static double[] adaptiveRef(double[] x, int n, int c, int[] in, int[] out) {
        int nd = in.length;
        int plane = 1;
        int oplane = 1;
        for (int i = 0; i < nd; i++) {
            plane *= in[i];
            oplane *= out[i];
        }
        double[] y = new double[n * c * oplane];
        for (int nc = 0; nc < n * c; nc++) {
            for (int o = 0; o < oplane; o++) {
                int[] oc = unflat(o, out);
                int[] lo = new int[nd];
                int[] len = new int[nd];
                for (int i = 0; i < nd; i++) {
                    lo[i] = Math.floorDiv(oc[i] * in[i], out[i]);
                    int hi = -Math.floorDiv(-(oc[i] + 1) * in[i], out[i]);
                    len[i] = hi - lo[i];
                }
                double sum = 0;
                int cnt = 0;
                int total = 1;
                for (int l : len) {
                    total *= l;
                }
                for (int t = 0; t < total; t++) {
                    int[] r = unflat(t, len);
                    int flat = 0;
                    for (int i = 0; i < nd; i++) {
                        flat = flat * in[i] + lo[i] + r[i];
                    }
                    sum += x[nc * plane + flat];
                    cnt++;
                }
                y[nc * oplane + o] = sum / cnt;
            }
        }
        return y;
    }

    // ------------------------------------------------------------------ layout helpers
    static long[] nchwDims(int n, int c, int[] sp) {
        long[] d = new long[sp.length + 2];
        d[0] = n;
        d[1] = c;
        for (int i = 0; i < sp.length; i++) {
            d[2 + i] = sp[i];
        }
        return d;
    }

    /** NCHW -> the layout's contiguous tensor. */
    static Tensor toLayout(Tensor nchw, DataLayout l) {
        if (l == DataLayout.NCHW) {
            return nchw;
        }
        int r = nchw.rank();
        int[] perm = new int[r];
        perm[0] = 0;
        for (int i = 1; i < r - 1; i++) {
            perm[i] = i + 1;
        }
        perm[r - 1] = 1;
        return nchw.permute(perm).contiguous();
    }

    /** The layout's tensor -> NCHW values. */
    static double[] fromLayout(Tensor t, DataLayout l) {
        if (l == DataLayout.NCHW) {
            return Reference.values(t);
        }
        int r = t.rank();
        int[] perm = new int[r];
        perm[0] = 0;
        perm[1] = r - 1;
        for (int i = 2; i < r; i++) {
            perm[i] = i - 1;
        }
        return Reference.values(t.permute(perm).contiguous());
    }

    /** Distinct values (a shuffled grid of multiples of 1/8, exact in float32). */
    static double[] distinct(Random r, int n) {
        List<Double> v = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            v.add((i - n / 2) / 8.0);
        }
        java.util.Collections.shuffle(v, r);
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = v.get(i);
        }
        return d;
    }

    static int prod(int[] a) {
        int p = 1;
        for (int v : a) {
            p *= v;
        }
        return p;
    }

    static int[] fill(int nd, int v) {
        int[] a = new int[nd];
        Arrays.fill(a, v);
        return a;
    }

    // ------------------------------------------------------------------ forward grids
    static final int[][] SPATIAL = {{13}, {7}, {7, 9}, {5, 11}, {5, 6, 7}};

    /** kernel/stride/padding/dilation combinations valid for the input (PyTorch's rules). */
    static List<int[]> configs(int[] in, boolean max) {
        List<int[]> out = new ArrayList<>();
        int minIn = Arrays.stream(in).min().getAsInt();
        for (int k : new int[] {1, 2, 3, 7}) {
            for (int s : new int[] {1, 2, 3}) {
                for (int p : new int[] {0, 1}) {
                    for (int d : max ? new int[] {1, 2} : new int[] {1}) {
                        int eff = d * (k - 1) + 1;
                        if (p > eff / 2 || minIn + 2 * p < eff) {
                            continue;
                        }
                        if (in.length == 3 && (k == 7 || s == 3) && d == 2) {
                            continue;  // keep the 3-d grid small
                        }
                        out.add(new int[] {k, s, p, d});
                    }
                }
            }
        }
        return out;
    }

    @TestFactory
    List<DynamicTest> maxPoolForwardAndBackward() {
        List<DynamicTest> tests = new ArrayList<>();
        for (int[] sp : SPATIAL) {
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                for (DataLayout l : DataLayout.values()) {
                    tests.add(dynamicTest("max_pool " + Arrays.toString(sp) + " " + t + " " + l, () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(7 + Arrays.hashCode(sp) + t.ordinal() * 31 + l.ordinal());
                            int nd = sp.length;
                            int iter = 0;
                            for (int[] cfg : configs(sp, true)) {
                                int n = (iter++ % 2 == 0) ? 1 : 3;
                                int c = nd == 3 ? 2 : 3;
                                int[] k = fill(nd, cfg[0]);
                                int[] s = fill(nd, cfg[1]);
                                int[] p = fill(nd, cfg[2]);
                                int[] d = fill(nd, cfg[3]);
                                double[] xv = distinct(r, n * c * prod(sp));
                                Tensor x = toLayout(Reference.make(xv, t, nchwDims(n, c, sp)), l);
                                PoolOptions o = PoolOptions.builder(cfg[0]).stride(cfg[1]).padding(cfg[2])
                                        .dilation(cfg[3]).layout(l).build();
                                String what = "max_pool " + Reference.dims(x.dims()) + " " + t + " " + o;
                                Tensor[] yi = Pooling.maxPoolWithIndices(x, o);
                                double[][] ref = poolRef(xv, n, c, sp, k, s, p, d, 0, false);
                                assertEquals(t, yi[0].dtype());
                                assertEquals(DType.INT64, yi[1].dtype());
                                Reference.assertExact(ref[0], fromLayout(yi[0], l), what);
                                Reference.assertExact(ref[1], fromLayout(yi[1], l), what + " indices");
                                // backward: dy scattered to the argmax positions
                                double[] dyv = Reference.uniform(r, ref[0].length, -1, 1);
                                long[] ydims = nchwDims(n, c, unflatOut(yi[0], l));
                                Tensor dy = toLayout(Reference.make(dyv, t, ydims), l);
                                Tensor dx = Pooling.maxPoolBackward(dy, x, yi[1], o);
                                double[] dyr = Reference.values(Reference.make(dyv, t, ydims));
                                double[] want = new double[xv.length];
                                int oplane = ref[0].length / (n * c);
                                int plane = prod(sp);
                                for (int i = 0; i < ref[0].length; i++) {
                                    want[(i / oplane) * plane + (int) ref[1][i]] += dyr[i];
                                }
                                assertClose(want, fromLayout(dx, l), tol(t), what + " backward");
                            }
                        }
                    }));
                }
            }
        }
        return tests;
    }

    /** Spatial output sizes of a pooled tensor in layout l. */
    static int[] unflatOut(Tensor y, DataLayout l) {
        long[] d = y.dims();
        int nd = d.length - 2;
        int[] sp = new int[nd];
        for (int i = 0; i < nd; i++) {
            sp[i] = (int) d[(l == DataLayout.NHWC ? 1 : 2) + i];
        }
        return sp;
    }

    /** Many channels: the NHWC vector paths (32-channel float32 blocks plus a tail) and channel-split backward. */
    @Test
    void manyChannels() {
        try (var scope = Scope.open()) {
            Random r = new Random(12);
            int n = 2;
            int c = 41;
            int[] sp = {9, 11};
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                for (DataLayout l : DataLayout.values()) {
                    double[] xv = distinct(r, n * c * prod(sp));
                    xv[5 * 99 + 40] = Double.NaN;
                    Tensor x = toLayout(Reference.make(xv, t, nchwDims(n, c, sp)), l);
                    PoolOptions o = PoolOptions.builder(3).stride(2).padding(1).layout(l).build();
                    Tensor[] yi = Pooling.maxPoolWithIndices(x, o);
                    int[] k = {3, 3};
                    int[] s2 = {2, 2};
                    int[] p1 = {1, 1};
                    int[] one = {1, 1};
                    double[][] ref = poolRef(xv, n, c, sp, k, s2, p1, one, 0, false);
                    String what = "max_pool many channels " + t + " " + l;
                    Reference.assertExact(ref[0], fromLayout(yi[0], l), what);
                    Reference.assertExact(ref[1], fromLayout(yi[1], l), what + " indices");
                    Reference.assertExact(ref[0], fromLayout(Pooling.maxPool(x, o), l), what + " without indices");
                    double[] dyv = Reference.uniform(r, ref[0].length, -1, 1);
                    long[] yd = nchwDims(n, c, unflatOut(yi[0], l));
                    Tensor dyn = Reference.make(dyv, t, yd);
                    double[] dyr = Reference.values(dyn);
                    double[] want = new double[xv.length];
                    int oplane = ref[0].length / (n * c);
                    for (int i = 0; i < ref[0].length; i++) {
                        want[(i / oplane) * prod(sp) + (int) ref[1][i]] += dyr[i];
                    }
                    assertClose(want, fromLayout(Pooling.maxPoolBackward(toLayout(dyn, l), x, yi[1], o), l), tol(t),
                            what + " backward");
                    double[] av = Reference.values(Reference.make(Reference.uniform(r, xv.length, -1, 1), t,
                            nchwDims(n, c, sp)));
                    Tensor xa = toLayout(Reference.make(av, t, nchwDims(n, c, sp)), l);
                    assertClose(poolRef(av, n, c, sp, k, s2, p1, one, 1, false)[0],
                            fromLayout(Pooling.avgPool(xa, PoolOptions.builder(3).stride(2).padding(1)
                                    .countIncludePad(false).layout(l).build()), l), tol(t), what + " avg");
                    assertClose(avgBackwardRef(dyr, n, c, sp, k, s2, p1, true),
                            fromLayout(Pooling.avgPoolBackward(toLayout(dyn, l), xa, o), l), tol(t), what + " avg backward");
                }
            }
        }
    }

    /**
     * The plain 2x2 stride-2 kernel (its own fast path; float32 in AVX-512 16 outputs at a time):
     * odd planes, rows of 4, 12 and 35 outputs (a partial vector below and above 8, two full ones
     * and a tail), 5 and 37 channels (NHWC in AVX-512 16 channels at a time), ties, NaNs, exact
     * values and indices.
     */
    @Test
    void maxPool2x2Stride2MatchesTheDefinition() {
        try (var scope = Scope.open()) {
            Random r = new Random(17);
            int n = 3;
            for (int[] sp : new int[][] {{7, 9}, {4, 25}, {5, 70}})
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                int c = sp[0] == 7 ? 5 : 37;   // NHWC: a channel tail alone, and two full vectors and a tail
                for (DataLayout l : DataLayout.values()) {
                    double[] xv = new double[n * c * prod(sp)];
                    for (int i = 0; i < xv.length; i++) {
                        xv[i] = r.nextInt(4);  // many ties: the first maximum of a window must win
                    }
                    xv[10] = Double.NaN;
                    xv[2 * 63 + 20] = Double.NaN;
                    xv[2 * 63 + 21] = Double.NaN;
                    Tensor x = toLayout(Reference.make(xv, t, nchwDims(n, c, sp)), l);
                    PoolOptions o = PoolOptions.builder(2).stride(2).layout(l).build();
                    Tensor[] yi = Pooling.maxPoolWithIndices(x, o);
                    double[][] ref = poolRef(xv, n, c, sp, new int[] {2, 2}, new int[] {2, 2}, new int[] {0, 0},
                            new int[] {1, 1}, 0, false);
                    String what = "max_pool 2x2/2 " + t + " " + l;
                    Reference.assertExact(ref[0], fromLayout(yi[0], l), what);
                    Reference.assertExact(ref[1], fromLayout(yi[1], l), what + " indices");
                    Reference.assertExact(ref[0], fromLayout(Pooling.maxPool(x, o), l), what + " without indices");
                }
            }
        }
    }

    @Test
    void maxPoolNaNPropagatesAndPaddingNeverWins() {
        try (var scope = Scope.open()) {
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                for (DataLayout l : DataLayout.values()) {
                    // all negative values: a padding zero must not win
                    double[] xv = new double[2 * 5 * 5];
                    Random r = new Random(3);
                    for (int i = 0; i < xv.length; i++) {
                        xv[i] = -1 - r.nextDouble();
                    }
                    xv[12] = Double.NaN;   // channel 0, (2, 2)
                    xv[25 + 0] = Double.NaN; // channel 1, (0, 0)
                    xv[25 + 1] = Double.NaN; // channel 1, (0, 1): the last NaN of a window wins its index
                    Tensor xn = Reference.make(xv, t, 1, 2, 5, 5);
                    xv = Reference.values(xn);
                    Tensor x = toLayout(xn, l);
                    PoolOptions o = PoolOptions.builder(3).stride(1).padding(1).layout(l).build();
                    Tensor[] yi = Pooling.maxPoolWithIndices(x, o);
                    double[][] ref = poolRef(xv, 1, 2, new int[] {5, 5}, new int[] {3, 3}, new int[] {1, 1},
                            new int[] {1, 1}, new int[] {1, 1}, 0, false);
                    double[] y = fromLayout(yi[0], l);
                    Reference.assertExact(ref[0], y, "NaN max " + t + " " + l);
                    Reference.assertExact(ref[1], fromLayout(yi[1], l), "NaN indices " + t + " " + l);
                    assertTrue(Double.isNaN(y[6]) && Double.isNaN(y[18]) && !Double.isNaN(y[0]), Arrays.toString(y));
                    assertEquals(12.0, fromLayout(yi[1], l)[6]);
                    assertEquals(1.0, fromLayout(yi[1], l)[25]);
                    for (double v : y) {
                        assertTrue(Double.isNaN(v) || v < -1 + 1e-12, "padding won: " + v);
                    }
                }
            }
        }
    }

    @TestFactory
    List<DynamicTest> avgPoolForwardAndBackward() {
        List<DynamicTest> tests = new ArrayList<>();
        for (int[] sp : SPATIAL) {
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                for (DataLayout l : DataLayout.values()) {
                    tests.add(dynamicTest("avg_pool " + Arrays.toString(sp) + " " + t + " " + l, () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(11 + Arrays.hashCode(sp) + t.ordinal() * 31 + l.ordinal());
                            int nd = sp.length;
                            int iter = 0;
                            for (int[] cfg : configs(sp, false)) {
                                for (boolean inc : new boolean[] {true, false}) {
                                    int n = (iter++ % 2 == 0) ? 1 : 3;
                                    int c = nd == 3 ? 2 : 3;
                                    double[] xv = Reference.uniform(r, n * c * prod(sp), -1, 1);
                                    Tensor xn = Reference.make(xv, t, nchwDims(n, c, sp));
                                    double[] xr = Reference.values(xn);
                                    Tensor x = toLayout(xn, l);
                                    PoolOptions o = PoolOptions.builder(cfg[0]).stride(cfg[1]).padding(cfg[2])
                                            .countIncludePad(inc).layout(l).build();
                                    String what = "avg_pool " + Reference.dims(x.dims()) + " " + t + " " + o;
                                    int[] k = fill(nd, cfg[0]);
                                    int[] s = fill(nd, cfg[1]);
                                    int[] p = fill(nd, cfg[2]);
                                    int[] one = fill(nd, 1);
                                    Tensor y = Pooling.avgPool(x, o);
                                    double[] ref = poolRef(xr, n, c, sp, k, s, p, one, 1, inc)[0];
                                    assertClose(ref, fromLayout(y, l), tol(t), what);
                                    // backward = transpose of the (linear) forward
                                    double[] dyv = Reference.uniform(r, ref.length, -1, 1);
                                    long[] ydims = nchwDims(n, c, unflatOut(y, l));
                                    Tensor dyn = Reference.make(dyv, t, ydims);
                                    double[] dyr = Reference.values(dyn);
                                    Tensor dx = Pooling.avgPoolBackward(toLayout(dyn, l), x, o);
                                    double[] want = avgBackwardRef(dyr, n, c, sp, k, s, p, inc);
                                    assertClose(want, fromLayout(dx, l), tol(t), what + " backward");
                                }
                            }
                        }
                    }));
                }
            }
        }
        return tests;
    }

    @TestFactory
    List<DynamicTest> adaptiveAndGlobal() {
        List<DynamicTest> tests = new ArrayList<>();
        int[][][] cases = {
            {{10}, {3}}, {{7}, {7}}, {{5}, {8}}, {{7, 9}, {3, 4}}, {{11, 5}, {4, 2}}, {{6, 6}, {1, 1}},
            {{5, 7, 6}, {2, 3, 4}}, {{3, 4, 5}, {1, 1, 1}}};
        for (int[][] cs : cases) {
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                for (DataLayout l : DataLayout.values()) {
                    tests.add(dynamicTest("adaptive " + Arrays.toString(cs[0]) + " -> " + Arrays.toString(cs[1]) + " " + t
                            + " " + l, () -> {
                        try (var scope = Scope.open()) {
                            int[] sp = cs[0];
                            int[] out = cs[1];
                            Random r = new Random(5 + Arrays.hashCode(sp) + t.ordinal() + 7 * l.ordinal());
                            for (int n : new int[] {1, 3}) {
                                int c = 3;
                                Tensor xn = Reference.make(Reference.uniform(r, n * c * prod(sp), -1, 1), t,
                                        nchwDims(n, c, sp));
                                double[] xr = Reference.values(xn);
                                Tensor x = toLayout(xn, l);
                                Tensor y = Pooling.adaptiveAvgPool(x, l, out);
                                double[] ref = adaptiveRef(xr, n, c, sp, out);
                                String what = "adaptive " + Reference.dims(x.dims()) + " -> " + Arrays.toString(out);
                                assertArrayEquals(out, unflatOut(y, l), what);
                                assertClose(ref, fromLayout(y, l), tol(t), what);
                                if (prod(out) == 1) {
                                    Tensor gp = Pooling.globalAvgPool(x, l);
                                    assertClose(ref, fromLayout(gp, l), tol(t), "global " + what);
                                }
                                double[] dyv = Reference.uniform(r, ref.length, -1, 1);
                                Tensor dyn = Reference.make(dyv, t, nchwDims(n, c, out));
                                Tensor dx = Pooling.adaptiveAvgPoolBackward(toLayout(dyn, l), x, l, out);
                                double[] want = adaptiveBackwardRef(Reference.values(dyn), n, c, sp, out);
                                assertClose(want, fromLayout(dx, l), tol(t), what + " backward");
                            }
                        }
                    }));
                }
            }
        }
        return tests;
    }

    @Test
    void globalAvgPoolLarge() {
        try (var scope = Scope.open()) {
            Random r = new Random(9);
            int[] sp = {56, 56};
            for (DataLayout l : DataLayout.values()) {
                Tensor xn = Reference.make(Reference.uniform(r, 2 * 16 * 56 * 56, 0, 1), DType.FLOAT32, 2, 16, 56, 56);
                Tensor y = Pooling.globalAvgPool(toLayout(xn, l), l);
                assertClose(adaptiveRef(Reference.values(xn), 2, 16, sp, new int[] {1, 1}), fromLayout(y, l),
                        tol(DType.FLOAT32), "global 56x56 " + l);
            }
        }
    }

    // ------------------------------------------------------------------ finite differences (float64)
    interface Fwd {
        Tensor run(Tensor x);
    }

    /** Central differences of L(x) = sum(f(x) * dy) in float64. */
    static double[] finiteDiff(Fwd f, double[] x, long[] dims, double[] dy, double h) {
        double[] g = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            double[] xp = x.clone();
            double[] xm = x.clone();
            xp[i] += h;
            xm[i] -= h;
            try (Tensor tp = Tensor.of(xp, dims); Tensor tm = Tensor.of(xm, dims);
                 Tensor yp = f.run(tp); Tensor ym = f.run(tm)) {
                double[] a = yp.toDoubleArray();
                double[] b = ym.toDoubleArray();
                double s = 0;
                for (int j = 0; j < a.length; j++) {
                    s += (a[j] - b[j]) * dy[j];
                }
                g[i] = s / (2 * h);
            }
        }
        return g;
    }

    @Test
    void backwardMatchesFiniteDifferences() {
        try (var scope = Scope.open()) {
            Random r = new Random(21);
            Tol fd = new Tol(1e-7, 1e-8);
            for (DataLayout l : DataLayout.values()) {
                long[] dims = l == DataLayout.NCHW ? new long[] {2, 2, 5, 4} : new long[] {2, 5, 4, 2};
                int numel = 80;
                double[] xv = distinct(r, numel);
                Tensor x = Tensor.of(xv, dims);
                // avg pool, padding excluded from the count
                PoolOptions ao = PoolOptions.builder(3).stride(2).padding(1).countIncludePad(false).layout(l).build();
                Tensor y = Pooling.avgPool(x, ao);
                double[] dy = Reference.uniform(r, (int) y.numel(), -1, 1);
                Tensor dyt = Tensor.of(dy, y.dims());
                assertClose(finiteDiff(t -> Pooling.avgPool(t, ao), xv, dims, dy, 1e-3),
                        Pooling.avgPoolBackward(dyt, x, ao).toDoubleArray(), fd, "avg_pool fd " + l);
                // adaptive to a non-dividing size
                Tensor ya = Pooling.adaptiveAvgPool(x, l, 3, 3);
                double[] dya = Reference.uniform(r, (int) ya.numel(), -1, 1);
                assertClose(finiteDiff(t -> Pooling.adaptiveAvgPool(t, l, 3, 3), xv, dims, dya, 1e-3),
                        Pooling.adaptiveAvgPoolBackward(Tensor.of(dya, ya.dims()), x, l, 3, 3).toDoubleArray(), fd,
                        "adaptive fd " + l);
                // max pool with dilation: distinct values 1/8 apart, h = 1e-4 keeps the argmax
                PoolOptions mo = PoolOptions.builder(2).stride(1).padding(1).dilation(2).layout(l).build();
                Tensor[] yi = Pooling.maxPoolWithIndices(x, mo);
                double[] dym = Reference.uniform(r, (int) yi[0].numel(), -1, 1);
                assertClose(finiteDiff(t -> Pooling.maxPool(t, mo), xv, dims, dym, 1e-4),
                        Pooling.maxPoolBackward(Tensor.of(dym, yi[0].dims()), x, yi[1], mo).toDoubleArray(), fd,
                        "max_pool fd " + l);
            }
        }
    }

    // ------------------------------------------------------------------ shapes, entry points, errors
    @Test
    void entryPointsAndShapes() {
        try (var scope = Scope.open()) {
            Tensor x2 = Tensor.zeros(DType.FLOAT32, 1, 3, 9, 7);
            assertArrayEquals(new long[] {1, 3, 3, 2}, Pooling.maxPool2d(x2, PoolOptions.of(3)).dims());
            assertArrayEquals(new long[] {1, 3, 5, 4},
                    Pooling.avgPool2d(x2, PoolOptions.builder(3).stride(2).padding(1).build()).dims());
            Tensor x1 = Tensor.zeros(DType.FLOAT64, 2, 4, 10);
            assertArrayEquals(new long[] {2, 4, 5}, Pooling.maxPool1d(x1, PoolOptions.of(2)).dims());
            assertArrayEquals(new long[] {2, 4, 3}, Pooling.avgPool1d(x1, PoolOptions.builder(4).stride(3).build()).dims());
            Tensor x3 = Tensor.zeros(DType.FLOAT32, 1, 4, 5, 6, 2);
            assertArrayEquals(new long[] {1, 2, 2, 3, 2},
                    Pooling.maxPool3d(x3, PoolOptions.builder(2).layout(DataLayout.NHWC).build()).dims());
            assertArrayEquals(new long[] {1, 4, 2, 3, 1}, Pooling.avgPool3d(x3, PoolOptions.builder(2, 2, 2).build()).dims());
            assertArrayEquals(new long[] {1, 3, 1, 1}, Pooling.globalAvgPool(x2).dims());
            assertArrayEquals(new long[] {1, 1, 1, 7}, Pooling.globalAvgPool(x2, DataLayout.NHWC).dims());
            // per-dimension options
            assertArrayEquals(new long[] {1, 3, 3, 7},
                    Pooling.maxPool2d(x2, PoolOptions.builder(3, 1).stride(3, 1).build()).dims());
            // empty batch
            assertArrayEquals(new long[] {0, 3, 4, 3}, Pooling.maxPool2d(Tensor.zeros(DType.FLOAT32, 0, 3, 9, 7),
                    PoolOptions.of(2)).dims());
            assertTrue(OpRegistryHas("max_pool") && OpRegistryHas("adaptive_avg_pool_backward"));
        }
        // empty batch through every backward kernel: gradients of the input's (empty) shape
        for (java.util.function.Function<Tensor, Tensor> pool : List.<java.util.function.Function<Tensor, Tensor>>of(
                x -> Pooling.maxPool2d(x, PoolOptions.of(2)), x -> Pooling.avgPool2d(x, PoolOptions.of(2)),
                x -> Pooling.adaptiveAvgPool(x, 2, 3))) {
            try (Scope s = Scope.open()) {
                Tensor x = Tensor.zeros(DType.FLOAT32, 0, 3, 9, 7).requiresGrad(true);
                Reductions.sum(pool.apply(x)).backward();
                assertArrayEquals(new long[] {0, 3, 9, 7}, x.grad().dims());
            }
        }
    }

    /**
     * An NCHW max pool of a channels-last view (an NHWC tensor permuted to NCHW) runs the NHWC
     * kernel on the memory as it lies: the values, the indices and the gradient equal those of
     * the same pool on a dense NCHW copy, and the output is again a channels-last view.
     */
    @Test
    void maxPoolOfAChannelsLastViewEqualsThePlainOne() {
        try (Scope s = Scope.open()) {
            Random r = new Random(23);
            double[] v = Reference.uniform(r, 2 * 9 * 7 * 5, -1, 1);
            Tensor nhwc = Reference.make(v, DType.FLOAT32, 2, 9, 7, 5).requiresGrad(true);
            Tensor view = nhwc.permute(0, 3, 1, 2);   // NCHW shape [2, 5, 9, 7], channels-last memory
            Tensor dense = view.detach().contiguous().requiresGrad(true);
            PoolOptions o = PoolOptions.builder(2).stride(2).build();
            Tensor[] a = Pooling.maxPoolWithIndices(view, o);
            Tensor[] b = Pooling.maxPoolWithIndices(dense, o);
            assertArrayEquals(b[0].dims(), a[0].dims());
            Reference.assertExact(b[0].toDoubleArray(), a[0].contiguous().toDoubleArray(), "channels-last max_pool");
            Reference.assertExact(b[1].toDoubleArray(), a[1].contiguous().toDoubleArray(), "channels-last indices");
            assertTrue(!a[0].isContiguous() && a[0].permute(0, 2, 3, 1).isContiguous(), "output stays channels-last");
            double[] w = Reference.uniform(r, (int) b[0].numel(), -1, 1);
            Tensor wt = Reference.make(w, DType.FLOAT32, b[0].dims());
            Reductions.sum(Elementwise.mul(a[0], wt)).backward();
            Reductions.sum(Elementwise.mul(b[0], wt)).backward();
            Reference.assertExact(dense.grad().toDoubleArray(), nhwc.grad().permute(0, 3, 1, 2).contiguous().toDoubleArray(),
                    "channels-last max_pool gradient");
        }
    }

    /**
     * uint8 codes (the activations between int8 layers) pool without indices: the max of the codes
     * in both layouts, with padding, equal to the float max pool of the same values; asking for
     * indices or a gradient of codes is refused.
     */
    @Test
    void maxPoolOfUint8CodesIsTheMaxOfTheCodes() {
        try (Scope s = Scope.open()) {
            Random r = new Random(29);
            double[] v = new double[2 * 19 * 9 * 7];
            for (int i = 0; i < v.length; i++) {
                v[i] = r.nextInt(256);
            }
            Tensor nchw = Reference.make(v, DType.FLOAT32, 2, 19, 9, 7);
            for (DataLayout l : DataLayout.values())
            for (PoolOptions o : new PoolOptions[] {PoolOptions.builder(3).stride(2).padding(1).layout(l).build(),
                    PoolOptions.builder(2).stride(2).layout(l).build()}) {   // the 2x2 fast path: odd planes, 19 channels
                Tensor x = toLayout(nchw, l);
                Tensor codes = x.to(DType.UINT8);
                Tensor want = Pooling.maxPool(x, o);
                Tensor got = Pooling.maxPool(codes, o);
                assertEquals(DType.UINT8, got.dtype());
                Reference.assertExact(want.toDoubleArray(), got.toDoubleArray(), "uint8 max_pool " + o);
            }
            Tensor codes = nchw.to(DType.UINT8);
            assertBad(() -> Pooling.maxPoolWithIndices(codes, PoolOptions.of(2)), "max_pool", "uint8");
        }
    }

    static boolean OpRegistryHas(String name) {
        return OpRegistry.get(name).name().equals(name);
    }

    static void assertBad(Runnable r, String... parts) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, r::run);
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "message '" + e.getMessage() + "' lacks '" + p + "'");
        }
    }

    @Test
    void badInputs() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.zeros(DType.FLOAT32, 1, 2, 3, 3);
            assertBad(() -> Pooling.maxPool2d(Tensor.zeros(DType.FLOAT32, 1, 3, 5), PoolOptions.of(2)), "max_pool",
                    "[1, 3, 5]");
            assertBad(() -> Pooling.maxPool(Tensor.zeros(DType.FLOAT32, 3, 5), PoolOptions.of(2)), "max_pool", "[3, 5]");
            assertBad(() -> Pooling.maxPool2d(x, PoolOptions.of(5)), "max_pool", "[1, 2, 3, 3]", "larger than the padded");
            assertBad(() -> Pooling.avgPool2d(x, PoolOptions.builder(2).stride(0).build()), "avg_pool", "[1, 2, 3, 3]",
                    "stride");
            assertBad(() -> Pooling.avgPool2d(x, PoolOptions.builder(2).padding(-1).build()), "avg_pool", "[1, 2, 3, 3]",
                    "padding");
            assertBad(() -> Pooling.maxPool2d(x, PoolOptions.builder(3).padding(2).build()), "max_pool", "[1, 2, 3, 3]",
                    "at most half");
            assertBad(() -> Pooling.maxPool2d(x, PoolOptions.builder(2, 2, 2).build()), "max_pool", "[1, 2, 3, 3]",
                    "kernel");
            assertBad(() -> Pooling.maxPool2d(Tensor.zeros(DType.INT32, 1, 2, 4, 4), PoolOptions.of(2)), "max_pool",
                    "int32[1, 2, 4, 4]");
            assertBad(() -> Pooling.adaptiveAvgPool(x, 0, 2), "adaptive_avg_pool", "[1, 2, 3, 3]");
            assertBad(() -> Pooling.avgPoolBackward(Tensor.zeros(DType.FLOAT32, 1, 2, 2, 2), x, PoolOptions.of(2)),
                    "avg_pool_backward", "[1, 2, 2, 2]", "[1, 2, 1, 1]");
            Tensor[] yi = Pooling.maxPoolWithIndices(x, PoolOptions.of(2));
            assertBad(() -> Pooling.maxPoolBackward(yi[0], x, yi[0], PoolOptions.of(2)), "max_pool_backward",
                    "indices");
            assertBad(() -> Pooling.maxPool2d(x, PoolOptions.builder(2).padding(0).paddingAfter(-1).build()),
                    "max_pool", "[1, 2, 3, 3]", "non-negative");
        }
    }

    /** ONNX-style options: asymmetric padding, ceil mode (with both divisors), dilated average pooling. */
    @Test
    void asymmetricPaddingCeilModeAndAvgDilation() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.of(new float[] {1, 2, 3, 4, 5}, 1, 1, 5);
            assertArrayEquals(new float[] {2, 4, 5},
                    Pooling.maxPool(x, PoolOptions.builder(2).stride(2).ceilMode(true).build()).toFloatArray());
            assertArrayEquals(new float[] {1.5f, 3.5f, 5},
                    Pooling.avgPool(x, PoolOptions.builder(2).stride(2).ceilMode(true).countIncludePad(false).build())
                            .toFloatArray());
            // count_include_pad: the clipped last window divides by its taps inside the input (+ real padding)
            assertArrayEquals(new float[] {1.5f, 3.5f, 5},
                    Pooling.avgPool(x, PoolOptions.builder(2).stride(2).ceilMode(true).build()).toFloatArray());
            assertArrayEquals(new float[] {0.5f, 2.5f, 4.5f},
                    Pooling.avgPool(x, PoolOptions.builder(2).stride(2).padding(1).ceilMode(true).build()).toFloatArray());
            assertArrayEquals(new float[] {2, 3, 4, 5, 5},
                    Pooling.maxPool(x, PoolOptions.builder(2).stride(1).padding(0).paddingAfter(1).build()).toFloatArray());
            assertArrayEquals(new float[] {2, 3, 4},
                    Pooling.avgPool(x, PoolOptions.builder(2).stride(1).dilation(2).build()).toFloatArray());
        }
    }
}
