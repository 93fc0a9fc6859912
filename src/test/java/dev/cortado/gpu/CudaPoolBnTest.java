package dev.cortado.gpu;

import static dev.cortado.gpu.CudaOpsTest.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.BatchNorm.BatchNormAttrs;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Pooling;
import dev.cortado.ops.Pooling.AdaptiveOptions;
import dev.cortado.ops.Pooling.PoolOptions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The CUDA pooling and batch-norm kernels (native/cuda/pool.cu, batchnorm.cu) against their CPU
 * twins on fresh random inputs, NCHW and NHWC, float32 and float64 (the dtypes both backends
 * support). Run on a GPU machine with {@code mvn verify -Pgpu}.
 *
 * <p>Tolerances (relative, plus 0.1 x that absolute, {@link CudaOpsTest#assertClose}):
 * <ul>
 * <li>max pooling: values, int64 indices and the backward dx are BIT-IDENTICAL to the CPU (inputs
 *     on a coarse grid so windows have ties, NaNs in float32);</li>
 * <li>average / adaptive / global pooling, forward and backward: float32 2e-5 (float32 sums on
 *     the GPU vs float64 on the CPU), float64 1e-12;</li>
 * <li>batch norm y, dx and the saved / running statistics: float32 1e-4 (float32 Welford vs
 *     shifted float64 sums), float64 1e-10; dgamma / dbeta (sums over N*S values): float32 1e-3,
 *     float64 1e-10.</li>
 * </ul>
 * Determinism: two CUDA runs give bit-identical outputs (fixed-order reductions, no atomics).
 */
@Tag("gpu")
class CudaPoolBnTest {
    private static final Device GPU = Device.cuda(0);
    private static final DataLayout[] LAYOUTS = {DataLayout.NCHW, DataLayout.NHWC};

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    private static double avgTol(DType t) {
        return t == DType.FLOAT64 ? 1e-12 : 2e-5;
    }

    private static double bnTol(DType t) {
        return t == DType.FLOAT64 ? 1e-10 : 1e-4;
    }

    /** Random CPU tensor: uniform [lo, hi), or (grid) multiples of 0.5 in [-2, 2] so max windows tie. */
    private static Tensor random(long seed, DType type, double lo, double hi, boolean grid, long... dims) {
        Random r = new Random(seed);
        int n = (int) Arrays.stream(dims).reduce(1, (a, b) -> a * b);
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            v[i] = grid ? Math.round(r.nextDouble() * 8 - 4) * 0.5 : lo + (hi - lo) * r.nextDouble();
        }
        try (Tensor d = Tensor.of(v, dims)) {
            return d.to(type);
        }
    }

    /** Same data with a few NaNs (float32 max pooling: NaN propagation and the last-NaN index). */
    private static Tensor withNaNs(Tensor t, long seed) {
        double[] v = t.toDoubleArray();
        Random r = new Random(seed);
        for (int i = 0; i < Math.max(1, v.length / 50); i++) {
            v[r.nextInt(v.length)] = Double.NaN;
        }
        try (Tensor d = Tensor.of(v, t.dims())) {
            return d.to(t.dtype());
        }
    }

    private static long[] dims(DataLayout l, long n, long c, long... sp) {
        long[] d = new long[sp.length + 2];
        d[0] = n;
        if (l == DataLayout.NCHW) {
            d[1] = c;
            System.arraycopy(sp, 0, d, 2, sp.length);
        } else {
            System.arraycopy(sp, 0, d, 1, sp.length);
            d[d.length - 1] = c;
        }
        return d;
    }

    private static void assertBits(Tensor cpu, Tensor gpu, String what) {
        assertArrayEquals(cpu.dims(), gpu.dims(), what + ": shape");
        double[] a = cpu.toDoubleArray();
        double[] b = gpu.toDoubleArray();
        for (int i = 0; i < a.length; i++) {
            if (Double.doubleToLongBits(a[i]) != Double.doubleToLongBits(b[i])) {
                throw new AssertionError(what + " [" + i + "]: cpu " + a[i] + " vs cuda " + b[i] + " (bit-identical expected)");
            }
        }
    }

    /** Spatial sizes of the pooling grid (1-d, 2-d, 3-d; odd sizes; size-1 dims). */
    private static final long[][] SPATIAL = {{17}, {9, 11}, {7, 13}, {1, 1}, {1, 8}, {5, 6, 7}};

    private static boolean fits(long[] sp, int k, int p, int dil) {
        for (long s : sp) {
            if (s + 2L * p < (long) dil * (k - 1) + 1) {
                return false;
            }
        }
        return true;
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64"})
    void maxPoolBitIdentical(DType type) {
        int cases = 0;
        for (DataLayout l : LAYOUTS) {
            for (long[] sp : SPATIAL) {
                long c = sp.length == 3 ? 3 : 5;
                try (Scope scope = Scope.open()) {
                    Tensor x0 = random(sp.length * 31L + c, type, -2, 2, true, dims(l, 2, c, sp));
                    Tensor x = type == DType.FLOAT32 ? withNaNs(x0, 7) : x0;
                    Tensor xg = x.to(GPU);
                    for (int k : new int[] {1, 2, 3, 7}) {
                        for (int s : new int[] {1, 2, 3}) {
                            for (int p : new int[] {0, k / 2}) {
                                for (int dil : new int[] {1, 2}) {
                                    for (boolean ceil : new boolean[] {false, true}) {
                                        if (!fits(sp, k, p, dil) || (dil > 1 && k == 1)) {
                                            continue;
                                        }
                                        PoolOptions o = PoolOptions.builder(k).stride(s).padding(p).dilation(dil)
                                                .ceilMode(ceil).layout(l).build();
                                        String what = "max_pool " + type + " " + Arrays.toString(x.dims()) + " " + o;
                                        try (Scope inner = Scope.open()) {
                                            Tensor[] rc = Pooling.maxPoolWithIndices(x, o);
                                            Tensor[] rg = Pooling.maxPoolWithIndices(xg, o);
                                            assertBits(rc[0], rg[0], what + " y");
                                            assertArrayEquals(rc[1].toLongArray(), rg[1].toLongArray(), what + " indices");
                                            Tensor dy = random(k * 7L + s, type, -1, 1, false, rc[0].dims());
                                            Tensor dxc = Pooling.maxPoolBackward(dy, x, rc[1], o);
                                            Tensor dxg = Pooling.maxPoolBackward(dy.to(GPU), xg, rg[1], o);
                                            assertBits(dxc, dxg, what + " dx");
                                            cases++;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assertTrue(cases > 100, "cases run: " + cases);
    }

    @Test
    void maxPoolLargeWindowWarpPath() {
        // windows of >= 64 taps take the warp-per-output kernel in NCHW: ties and NaNs across lanes
        for (DType type : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
            try (Scope scope = Scope.open()) {
                Tensor x0 = random(5, type, -2, 2, true, 2, 3, 30, 29);
                Tensor x = type == DType.FLOAT32 ? withNaNs(x0, 11) : x0;
                for (int k : new int[] {9, 15, 29}) {
                    PoolOptions o = PoolOptions.builder(k).stride(k / 2 + 1).padding(k / 2).build();
                    Tensor[] rc = Pooling.maxPoolWithIndices(x, o);
                    Tensor[] rg = Pooling.maxPoolWithIndices(x.to(GPU), o);
                    String what = "max_pool warp " + type + " k " + k;
                    assertBits(rc[0], rg[0], what + " y");
                    assertArrayEquals(rc[1].toLongArray(), rg[1].toLongArray(), what + " indices");
                }
                Tensor gc = Pooling.globalAvgPool(x0);
                assertClose(gc, Pooling.globalAvgPool(x0.to(GPU)), avgTol(type), "global_avg_pool warp " + type);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64"})
    void avgPool(DType type) {
        double tol = avgTol(type);
        int cases = 0;
        for (DataLayout l : LAYOUTS) {
            for (long[] sp : SPATIAL) {
                long c = sp.length == 3 ? 3 : 4;
                try (Scope scope = Scope.open()) {
                    Tensor x = random(sp.length * 13L + c, type, -1, 1, false, dims(l, 3, c, sp));
                    Tensor xg = x.to(GPU);
                    for (int k : new int[] {1, 2, 3, 7}) {
                        for (int s : new int[] {1, 2, 3}) {
                            for (int p : new int[] {0, k / 2}) {
                                for (boolean inc : new boolean[] {true, false}) {
                                    for (boolean ceil : new boolean[] {false, true}) {
                                        if (!fits(sp, k, p, 1)) {
                                            continue;
                                        }
                                        PoolOptions o = PoolOptions.builder(k).stride(s).padding(p).countIncludePad(inc)
                                                .ceilMode(ceil).layout(l).build();
                                        String what = "avg_pool " + type + " " + Arrays.toString(x.dims()) + " " + o;
                                        try (Scope inner = Scope.open()) {
                                            Tensor yc = Pooling.avgPool(x, o);
                                            assertClose(yc, Pooling.avgPool(xg, o), tol, what);
                                            Tensor dy = random(k * 5L + s, type, -1, 1, false, yc.dims());
                                            assertClose(Pooling.avgPoolBackward(dy, x, o),
                                                    Pooling.avgPoolBackward(dy.to(GPU), xg, o), tol, what + " backward");
                                            cases++;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assertTrue(cases > 100, "cases run: " + cases);
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64"})
    void adaptiveAndGlobalAvgPool(DType type) {
        double tol = avgTol(type);
        long[][] spatial = {{10, 13}, {7}, {1, 1}, {5, 4, 9}, {64, 64}};
        int[][] outs = {{1}, {3}, {4}, {7}, {13}, {20}, {3, 5}};
        for (DataLayout l : LAYOUTS) {
            for (long[] sp : spatial) {
                try (Scope scope = Scope.open()) {
                    Tensor x = random(sp[0] * 3 + sp.length, type, -1, 1, false, dims(l, 2, 3, sp));
                    Tensor xg = x.to(GPU);
                    for (int[] o : outs) {
                        if (o.length != 1 && o.length != sp.length) {
                            continue;
                        }
                        String what = "adaptive_avg_pool " + type + " " + Arrays.toString(x.dims()) + " -> "
                                + Arrays.toString(o) + " " + l;
                        try (Scope inner = Scope.open()) {
                            Tensor yc = Pooling.adaptiveAvgPool(x, l, o);
                            assertClose(yc, Pooling.adaptiveAvgPool(xg, l, o), tol, what);
                            Tensor dy = random(o[0] * 17L, type, -1, 1, false, yc.dims());
                            assertClose(Pooling.adaptiveAvgPoolBackward(dy, x, l, o),
                                    Pooling.adaptiveAvgPoolBackward(dy.to(GPU), xg, l, o), tol, what + " backward");
                        }
                    }
                    assertClose(Pooling.globalAvgPool(x, l), Pooling.globalAvgPool(xg, l), tol,
                            "global_avg_pool " + type + " " + Arrays.toString(x.dims()) + " " + l);
                }
            }
        }
    }

    @Test
    void poolingNonContiguousAndEmptyAndErrors() {
        try (Scope scope = Scope.open()) {
            // an NHWC view of NCHW data (permuted, not contiguous)
            Tensor base = random(21, DType.FLOAT32, -1, 1, false, 2, 5, 9, 11);
            Tensor view = base.permute(0, 2, 3, 1);
            PoolOptions o = PoolOptions.builder(3).stride(2).padding(1).layout(DataLayout.NHWC).build();
            Tensor[] rc = Pooling.maxPoolWithIndices(view, o);
            Tensor[] rg = Pooling.maxPoolWithIndices(base.to(GPU).permute(0, 2, 3, 1), o);
            assertBits(rc[0], rg[0], "max_pool non-contiguous");
            assertArrayEquals(rc[1].toLongArray(), rg[1].toLongArray(), "max_pool non-contiguous indices");
            assertClose(Pooling.avgPool(view, o), Pooling.avgPool(base.to(GPU).permute(0, 2, 3, 1), o), 2e-5,
                    "avg_pool non-contiguous");
            // empty batch
            Tensor empty = random(1, DType.FLOAT32, -1, 1, false, 0, 3, 5, 5).to(GPU);
            assertArrayEquals(new long[] {0, 3, 2, 2}, Pooling.maxPool(empty, PoolOptions.of(2)).dims());
            assertArrayEquals(new long[] {0, 3, 1, 1}, Pooling.globalAvgPool(empty).dims());
            // indices that are not a tap of their window: a clear exception, no crash
            Tensor xg = base.to(GPU);
            PoolOptions o2 = PoolOptions.of(2);
            Tensor[] f = Pooling.maxPoolWithIndices(xg, o2);
            long[] bad = f[1].toLongArray();
            bad[5] = 98;  // inside the 9x11 plane, outside window 5
            Tensor badIdx = Tensor.of(bad, f[1].dims()).to(GPU);
            IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class,
                    () -> Pooling.maxPoolBackward(f[0], xg, badIdx, o2));
            assertTrue(e.getMessage().contains("indices[5] = 98") && e.getMessage().contains("max_pool_backward"),
                    e.getMessage());
            bad[5] = 1000;
            Tensor badIdx2 = Tensor.of(bad, f[1].dims()).to(GPU);
            assertThrows(IndexOutOfBoundsException.class, () -> Pooling.maxPoolBackward(f[0], xg, badIdx2, o2));
            // unsupported dtype: the op names itself and the input
            Tensor half = xg.to(DType.FLOAT16);
            IllegalArgumentException e2 = assertThrows(IllegalArgumentException.class, () -> Pooling.maxPool(half, o2));
            assertTrue(e2.getMessage().contains("max_pool"), e2.getMessage());
        }
    }

    @Test
    void poolingDeterministic() {
        try (Scope scope = Scope.open()) {
            Tensor x = random(3, DType.FLOAT32, -1, 1, false, 4, 16, 33, 31).to(GPU);
            PoolOptions o = PoolOptions.builder(3).stride(2).padding(1).countIncludePad(false).build();
            Tensor dy = random(4, DType.FLOAT32, -1, 1, false, 4, 16, 17, 16).to(GPU);
            assertBits(Pooling.avgPoolBackward(dy, x, o), Pooling.avgPoolBackward(dy, x, o), "avg_pool_backward twice");
            Tensor g1 = Pooling.globalAvgPool(x);
            assertBits(g1, Pooling.globalAvgPool(x), "global_avg_pool twice");
        }
    }

    // ------------------------------------------------------------------ batch norm
    private static final long[] CHANNELS = {1, 3, 64, 257};

    /** x shapes for C channels: [N, C, H, W] style with odd sizes, 2-d [N, C], and a large-M case. */
    private static long[][] bnShapes(DataLayout l, long c) {
        return new long[][] {dims(l, 4, c, 5, 7), dims(l, 6, c), dims(l, 8, c, 33, 33), dims(l, 2, c, 3, 1, 5)};
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64"})
    void batchNorm(DType type) {
        double tol = bnTol(type);
        double ptol = type == DType.FLOAT64 ? 1e-10 : 1e-3;
        for (DataLayout l : LAYOUTS) {
            BatchNormAttrs a = new BatchNormAttrs(1e-5, 0.1, l);
            for (long c : CHANNELS) {
                for (long[] d : bnShapes(l, c)) {
                    if (c == 257 && d[0] == 8 && d.length == 4 && d[2] == 33 && type == DType.FLOAT64) {
                        continue;  // keep the float64 run short; float32 covers this shape
                    }
                    String what = "batch_norm " + type + " " + Arrays.toString(d) + " " + l;
                    try (Scope scope = Scope.open()) {
                        long seed = c * 101 + d.length + d[0];
                        Tensor x = random(seed, type, 2, 4, false, d);  // mean far from 0
                        Tensor w = random(seed + 1, DType.FLOAT32, 0.5, 1.5, false, c);
                        Tensor b = random(seed + 2, DType.FLOAT32, -1, 1, false, c);
                        Tensor rm0 = random(seed + 3, DType.FLOAT32, -1, 1, false, c);
                        Tensor rv0 = random(seed + 4, DType.FLOAT32, 0.5, 2, false, c);
                        Tensor rmc = rm0.copy();
                        Tensor rvc = rv0.copy();
                        Tensor rmg = rm0.to(GPU);
                        Tensor rvg = rv0.to(GPU);
                        Tensor xg = x.to(GPU);
                        Tensor wg = w.to(GPU);
                        Tensor bg = b.to(GPU);
                        Tensor[] tc = BatchNorm.training(x, w, b, rmc, rvc, a);
                        Tensor[] tg = BatchNorm.training(xg, wg, bg, rmg, rvg, a);
                        assertClose(tc[0], tg[0], tol, what + " training y");
                        assertClose(tc[1], tg[1], tol, what + " save_mean");
                        assertClose(tc[2], tg[2], tol, what + " save_rstd");
                        assertClose(rmc, rmg, tol, what + " running_mean");
                        assertClose(rvc, rvg, tol, what + " running_var");
                        // no affine parameters, no running statistics
                        Tensor[] nc = BatchNorm.training(x, null, null, null, null, a);
                        Tensor[] ng = BatchNorm.training(xg, null, null, null, null, a);
                        assertClose(nc[0], ng[0], tol, what + " training y (no affine)");
                        // inference with the (CPU-updated) running statistics on both sides
                        assertClose(BatchNorm.inference(x, w, b, rmc, rvc, a),
                                BatchNorm.inference(xg, wg, bg, rmc.to(GPU), rvc.to(GPU), a), tol, what + " inference");
                        // backward from the CPU's saved statistics on both sides
                        Tensor dy = random(seed + 5, type, -1, 1, false, d);
                        Tensor[] bc = BatchNorm.backward(dy, x, w, tc[1], tc[2], a);
                        Tensor[] bgr = BatchNorm.backward(dy.to(GPU), xg, wg, tc[1].to(GPU), tc[2].to(GPU), a);
                        assertClose(bc[0], bgr[0], tol, what + " dx");
                        assertClose(bc[1], bgr[1], ptol, what + " dgamma");
                        assertClose(bc[2], bgr[2], ptol, what + " dbeta");
                        Tensor[] bc2 = BatchNorm.backward(dy, x, null, tc[1], tc[2], a);
                        Tensor[] bg2 = BatchNorm.backward(dy.to(GPU), xg, null, tc[1].to(GPU), tc[2].to(GPU), a);
                        assertClose(bc2[0], bg2[0], tol, what + " dx (no weight)");
                    }
                }
            }
        }
    }

    @Test
    void batchNormDeterministicAndEdges() {
        for (DataLayout l : LAYOUTS) {
            BatchNormAttrs a = new BatchNormAttrs(1e-5, 0.1, l);
            try (Scope scope = Scope.open()) {
                long[] d = dims(l, 16, 64, 31, 29);
                Tensor xg = random(9, DType.FLOAT32, -3, 5, false, d).to(GPU);
                Tensor wg = random(10, DType.FLOAT32, 0.5, 1.5, false, 64).to(GPU);
                Tensor[] r1 = BatchNorm.training(xg, wg, null, null, null, a);
                Tensor[] r2 = BatchNorm.training(xg, wg, null, null, null, a);
                for (int i = 0; i < 3; i++) {
                    assertBits(r1[i], r2[i], "batch_norm_training twice, output " + i + " " + l);
                }
                Tensor dy = random(12, DType.FLOAT32, -1, 1, false, d).to(GPU);
                Tensor[] b1 = BatchNorm.backward(dy, xg, wg, r1[1], r1[2], a);
                Tensor[] b2 = BatchNorm.backward(dy, xg, wg, r1[1], r1[2], a);
                for (int i = 0; i < 3; i++) {
                    assertBits(b1[i], b2[i], "batch_norm_backward twice, output " + i + " " + l);
                }
                // M = 1 per channel: rejected like the CPU, with a clear message
                Tensor one = random(13, DType.FLOAT32, -1, 1, false, dims(l, 1, 3, 1, 1)).to(GPU);
                Tensor rm = Tensor.of(new float[3], 3).to(GPU);
                Tensor rv = Tensor.of(new float[] {1, 1, 1}, 3).to(GPU);
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> BatchNorm.training(one, null, null, rm, rv, a));
                assertTrue(e.getMessage().contains("batch_norm_training"), e.getMessage());
                // empty batch: inference gives an empty result
                Tensor empty = random(14, DType.FLOAT32, -1, 1, false, dims(l, 0, 3, 4, 4)).to(GPU);
                assertArrayEquals(empty.dims(), BatchNorm.inference(empty, null, null, rm, rv, a).dims());
            }
        }
    }
}
