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
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * matmul (NumPy semantics) and gemm (ONNX) against a float64 triple loop over the inputs as
 * stored. The error of a dot product is bounded relative to sum_k |a_ik| |b_kj|, not to the
 * result (which may cancel), so the tolerance is {@code rel * sum|a||b|}: float64 1e-12, float32
 * 1e-5 (OpenBLAS sgemm, float32 accumulation over k <= 129), bfloat16 1e-2 and float16 2e-3
 * (inputs exact in float32, float32 accumulation, one final rounding to 8 or 11 bits).
 */
public class MatmulOpsTest {
    static double rel(DType t) {
        return switch (t) {
            case FLOAT64 -> 1e-12;
            case FLOAT32 -> 1e-5;
            case BFLOAT16 -> 1e-2;
            default -> 2e-3;
        };
    }

    /** Reference result: values, dims, and sum |a||b| per element. */
    public record Ref(double[] values, double[] absSum, long[] dims) {
    }

    /** NumPy matmul of contiguous row-major a (dims ad) and b (dims bd), in float64. */
    public static Ref matmulRef(double[] a, long[] ad, double[] b, long[] bd) {
        long[] a2 = ad.length == 1 ? new long[] {1, ad[0]} : ad;
        long[] b2 = bd.length == 1 ? new long[] {bd[0], 1} : bd;
        int m = (int) a2[a2.length - 2];
        int k = (int) a2[a2.length - 1];
        int n = (int) b2[b2.length - 1];
        long[] aBatch = Arrays.copyOf(a2, a2.length - 2);
        long[] bBatch = Arrays.copyOf(b2, b2.length - 2);
        long[] batch = Reference.broadcastShape(aBatch, bBatch);
        int nb = (int) Reference.numel(batch);
        double[] out = new double[nb * m * n];
        double[] abs = new double[nb * m * n];
        for (int p = 0; p < nb; p++) {
            long[] idx = Reference.unravel(p, batch);
            int pa = Reference.broadcastIndex(idx, aBatch);
            int pb = Reference.broadcastIndex(idx, bBatch);
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    double sa = 0;
                    for (int q = 0; q < k; q++) {
                        double x = a[pa * m * k + i * k + q];
                        double y = b[pb * k * n + q * n + j];
                        s += x * y;
                        sa += Math.abs(x * y);
                    }
                    out[p * m * n + i * n + j] = s;
                    abs[p * m * n + i * n + j] = sa;
                }
            }
        }
        long[] dims = Arrays.copyOf(batch, batch.length + 2);
        dims[batch.length] = m;
        dims[batch.length + 1] = n;
        if (ad.length == 1 && bd.length == 1) {
            dims = new long[0];
        } else if (ad.length == 1) {
            dims = Arrays.copyOf(batch, batch.length + 1);
            dims[batch.length] = n;
        } else if (bd.length == 1) {
            dims = Arrays.copyOf(batch, batch.length + 1);
            dims[batch.length] = m;
        }
        return new Ref(out, abs, dims);
    }

    static void assertMatClose(Ref want, Tensor got, double rel, String what) {
        assertArrayEquals(want.dims(), got.dims(), what + ": shape");
        double[] g = got.toDoubleArray();
        for (int i = 0; i < g.length; i++) {
            // float16 results below 2^-14 are subnormal: spacing 2^-24, so allow one such step absolutely
            double lim = rel * want.absSum()[i] + (got.dtype() == DType.FLOAT16 ? 0x1p-24 : 1e-300);
            if (!(Math.abs(g[i] - want.values()[i]) <= lim)) {
                fail(what + ": element " + i + " is " + g[i] + ", expected " + want.values()[i] + " (limit " + lim + ")");
            }
        }
    }

    /** Random matrix as dtype t; returns the tensor and its stored values. */
    static Tensor rand(Random r, DType t, long... dims) {
        return Reference.make(Reference.uniform(r, (int) Reference.numel(dims), -2, 2), t, dims);
    }

    @TestFactory
    List<DynamicTest> matrixTimesMatrix() {
        List<DynamicTest> tests = new ArrayList<>();
        int[] sizes = {1, 7, 64, 129};
        long seed = 1;
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
            for (int m : sizes) {
                for (int k : sizes) {
                    for (int n : sizes) {
                        if (t.bits() == 16 && (m == 64 || k == 64 || n == 64)) {
                            continue;
                        }
                        long s = seed++;
                        tests.add(dynamicTest(t + " [" + m + "," + k + "]x[" + k + "," + n + "]", () -> {
                            try (var scope = Scope.open()) {
                                Random r = new Random(s);
                                Tensor a = rand(r, t, m, k);
                                Tensor b = rand(r, t, k, n);
                                Tensor y = LinearAlgebra.matmul(a, b);
                                assertEquals(t, y.dtype());
                                Ref want = matmulRef(a.toDoubleArray(), a.dims(), b.toDoubleArray(), b.dims());
                                assertMatClose(want, y, rel(t), "matmul " + t);
                            }
                        }));
                    }
                }
            }
        }
        return tests;
    }

    @TestFactory
    List<DynamicTest> vectorsBatchesAndBroadcasts() {
        long[][][] cases = {
            {{7}, {7, 5}}, {{5, 7}, {7}}, {{7}, {7}}, {{1}, {1}}, {{129}, {129, 3}},
            {{4, 5, 7}, {4, 7, 3}}, {{4, 5, 7}, {7, 3}}, {{5, 7}, {4, 7, 3}}, {{2, 1, 5, 7}, {3, 7, 6}},
            {{7}, {3, 7, 2}}, {{3, 5, 7}, {7}}, {{1, 5, 7}, {4, 7, 3}}, {{2, 3, 1, 64}, {64, 65}},
            {{3, 0, 7}, {3, 7, 4}}, {{3, 5, 7}, {3, 7, 0}}, {{0, 5, 7}, {7, 3}},
        };
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 300;
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16}) {
            for (long[][] c : cases) {
                long s = seed++;
                tests.add(dynamicTest(t + " " + Arrays.toString(c[0]) + " @ " + Arrays.toString(c[1]), () -> {
                    try (var scope = Scope.open()) {
                        Random r = new Random(s);
                        Tensor a = rand(r, t, c[0]);
                        Tensor b = rand(r, t, c[1]);
                        Tensor y = LinearAlgebra.matmul(a, b);
                        Ref want = matmulRef(a.toDoubleArray(), c[0], b.toDoubleArray(), c[1]);
                        assertMatClose(want, y, rel(t), "matmul " + Arrays.toString(c[0]) + Arrays.toString(c[1]));
                    }
                }));
            }
        }
        return tests;
    }

    @Test
    void innerDimensionZeroGivesZeros() {
        try (var scope = Scope.open()) {
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16}) {
                Tensor a = Tensor.zeros(t, 3, 0);
                Tensor b = Tensor.zeros(t, 0, 4);
                Tensor y = LinearAlgebra.matmul(a, b);
                assertArrayEquals(new long[] {3, 4}, y.dims());
                assertArrayEquals(new double[12], y.toDoubleArray(), t + " k=0");
                Tensor v = LinearAlgebra.matmul(Tensor.zeros(t, 0), Tensor.zeros(t, 0));
                assertEquals(0, v.rank());
                assertEquals(0.0, v.item());
                Tensor bt = LinearAlgebra.matmul(Tensor.zeros(t, 2, 3, 0), Tensor.zeros(t, 0, 5));
                assertArrayEquals(new double[30], bt.toDoubleArray(), t + " batched k=0");
            }
        }
    }

    /** Transposed, sliced, permuted and expanded operands: the same product as their contiguous copies. */
    @TestFactory
    List<DynamicTest> nonContiguousOperands() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 500;
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
            for (int m : new int[] {1, 7, 33}) {
                for (int k : new int[] {1, 9, 64}) {
                    for (int n : new int[] {1, 5, 31}) {
                        long s = seed++;
                        tests.add(dynamicTest(t + " m" + m + " k" + k + " n" + n, () -> {
                            try (var scope = Scope.open()) {
                                Random r = new Random(s);
                                double[] abase = Reference.uniform(r, 2 * k * 2 * m, -2, 2);
                                double[] bbase = Reference.uniform(r, 2 * n * 2 * k, -2, 2);
                                Tensor aBase = Reference.make(abase, t, k, 2 * m * 2); // [k, 4m]
                                Tensor bBase = Reference.make(bbase, t, 2 * n, 2 * k); // [2n, 2k]
                                double[] av = aBase.toDoubleArray();
                                double[] bv = bBase.toDoubleArray();
                                List<Tensor[]> pairs = new ArrayList<>();
                                Tensor aT = aBase.slice(1, 0, m, 1).transpose(-1, -2); // [m, k], column-major
                                Tensor aS = aBase.slice(1, 1, 2 * m + 1, 2).transpose(0, 1); // [m, k], stride-2
                                Tensor bT = bBase.slice(0, 0, n, 1).slice(1, 0, k, 1).transpose(-1, -2); // [k, n] transposed, ld 2k
                                Tensor bS = bBase.slice(0, 0, 2 * n, 2).slice(1, 0, 2 * k, 2).transpose(0, 1); // both strides > 1
                                pairs.add(new Tensor[] {aT, bT});
                                pairs.add(new Tensor[] {aS, bS});
                                pairs.add(new Tensor[] {aT, bS});
                                pairs.add(new Tensor[] {aS, bT});
                                pairs.add(new Tensor[] {aT.contiguous(), bT});
                                for (Tensor[] p : pairs) {
                                    double[] x = p[0].sharesStorageWith(aBase) ? Reference.viewOf(av, p[0]) : p[0].toDoubleArray();
                                    double[] y = Reference.viewOf(bv, p[1]);
                                    Ref want = matmulRef(x, p[0].dims(), y, p[1].dims());
                                    Tensor got = LinearAlgebra.matmul(p[0], p[1]);
                                    assertMatClose(want, got, rel(t), "views " + Arrays.toString(p[0].strides()) + " "
                                            + Arrays.toString(p[1].strides()));
                                    Tensor viaCopy = LinearAlgebra.matmul(p[0].contiguous(), p[1].contiguous());
                                    assertMatClose(want, viaCopy, rel(t), "copies");
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
    void batchedViews() {
        try (var scope = Scope.open()) {
            Random r = new Random(77);
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                // a: [m, b, k] permuted to [b, m, k]; b: [b, n, k] transposed to [b, k, n]
                Tensor aBase = rand(r, t, 5, 3, 7);
                Tensor bBase = rand(r, t, 3, 4, 7);
                Tensor a = aBase.permute(1, 0, 2);
                Tensor b = bBase.transpose(-1, -2);
                Ref want = matmulRef(Reference.viewOf(aBase.toDoubleArray(), a), a.dims(),
                        Reference.viewOf(bBase.toDoubleArray(), b), b.dims());
                assertMatClose(want, LinearAlgebra.matmul(a, b), rel(t), "permuted batch " + t);
                // expanded batch operand (stride 0)
                Tensor w = rand(r, t, 1, 7, 4);
                Tensor we = w.expand(3, 7, 4);
                Tensor x = rand(r, t, 3, 5, 7);
                Ref want2 = matmulRef(x.toDoubleArray(), x.dims(), Reference.viewOf(w.toDoubleArray(), we), we.dims());
                assertMatClose(want2, LinearAlgebra.matmul(x, we), rel(t), "expanded batch " + t);
                // sliced batch (every other matrix)
                Tensor xs = rand(r, t, 6, 5, 7).slice(0, 0, 6, 2);
                Tensor full = xs; // view
                Ref want3 = matmulRef(xs.toDoubleArray(), xs.dims(), Reference.viewOf(w.toDoubleArray(), we), we.dims());
                assertMatClose(want3, LinearAlgebra.matmul(full, we), rel(t), "sliced batch " + t);
            }
        }
    }

    @TestFactory
    List<DynamicTest> gemmMatchesReference() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 900;
        double[][] alphaBeta = {{1, 0}, {1, 1}, {2.5, 0}, {-0.5, 1.5}, {1, -2}, {0, 1}};
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
            for (boolean ta : new boolean[] {false, true}) {
                for (boolean tb : new boolean[] {false, true}) {
                    for (double[] ab : alphaBeta) {
                        for (String cShape : new String[] {"null", "[n]", "[1]", "[m,n]", "[m,1]"}) {
                            long s = seed++;
                            tests.add(dynamicTest(t + " transA=" + ta + " transB=" + tb + " alpha=" + ab[0] + " beta=" + ab[1]
                                    + " c=" + cShape, () -> checkGemm(t, ta, tb, ab[0], ab[1], cShape, s, 6, 9, 5)));
                        }
                    }
                }
            }
        }
        tests.add(dynamicTest("gemm k=0", () -> checkGemm(DType.FLOAT32, false, false, 2, 3, "[m,n]", 1, 4, 0, 3)));
        tests.add(dynamicTest("gemm k=0 beta=1", () -> checkGemm(DType.FLOAT32, true, false, 2, 1, "[n]", 2, 4, 0, 3)));
        tests.add(dynamicTest("gemm bfloat16", () -> checkGemm(DType.BFLOAT16, true, true, 1.5, 0.5, "[m,n]", 3, 7, 33, 5)));
        return tests;
    }

    private static void checkGemm(DType t, boolean ta, boolean tb, double alpha, double beta, String cShape, long seed,
                                  int m, int k, int n) {
        try (var scope = Scope.open()) {
            Random r = new Random(seed);
            Tensor a = ta ? rand(r, t, k, m) : rand(r, t, m, k);
            Tensor b = tb ? rand(r, t, n, k) : rand(r, t, k, n);
            long[] cd = switch (cShape) {
                case "[n]" -> new long[] {n};
                case "[1]" -> new long[] {1};
                case "[m,n]" -> new long[] {m, n};
                case "[m,1]" -> new long[] {m, 1};
                default -> null;
            };
            Tensor c = cd == null ? null : rand(r, t, cd);
            double[] av = a.toDoubleArray();
            double[] bv = b.toDoubleArray();
            double[] cv = c == null ? null : Reference.broadcast(c.toDoubleArray(), cd, new long[] {m, n});
            double[] want = new double[m * n];
            double[] abs = new double[m * n];
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    double sa = 0;
                    for (int q = 0; q < k; q++) {
                        double x = ta ? av[q * m + i] : av[i * k + q];
                        double y = tb ? bv[j * k + q] : bv[q * n + j];
                        s += x * y;
                        sa += Math.abs(x * y);
                    }
                    double cc = cv == null ? 0 : cv[i * n + j];
                    want[i * n + j] = alpha * s + beta * cc;
                    abs[i * n + j] = Math.abs(alpha) * sa + Math.abs(beta * cc);
                }
            }
            Tensor y = LinearAlgebra.gemm(a, b, c, alpha, beta, ta, tb);
            assertEquals(t, y.dtype());
            assertMatClose(new Ref(want, abs, new long[] {m, n}), y, rel(t) * 2,
                    "gemm transA=" + ta + " transB=" + tb + " alpha=" + alpha + " beta=" + beta + " c=" + cShape);
        }
    }

    @Test
    void gemmBadCNamesTheOp() {
        try (var scope = Scope.open()) {
            var e = assertThrows(IllegalArgumentException.class,
                    () -> LinearAlgebra.gemm(Tensor.zeros(DType.FLOAT32, 2, 3), Tensor.zeros(DType.FLOAT32, 3, 4),
                            Tensor.zeros(DType.FLOAT32, 3), 1, 1, false, false));
            assertTrue(e.getMessage().contains("gemm"), e.getMessage());
        }
    }

    @Test
    void largeSquareFloat32() {
        try (var scope = Scope.open()) {
            Random r = new Random(5);
            Tensor a = rand(r, DType.FLOAT32, 200, 300);
            Tensor b = rand(r, DType.FLOAT32, 300, 150);
            Ref want = matmulRef(a.toDoubleArray(), a.dims(), b.toDoubleArray(), b.dims());
            assertMatClose(want, LinearAlgebra.matmul(a, b), 1e-5, "200x300x150");
            Tensor batched = rand(r, DType.FLOAT32, 16, 20, 30);
            Tensor w = rand(r, DType.FLOAT32, 16, 30, 10);
            Ref want2 = matmulRef(batched.toDoubleArray(), batched.dims(), w.toDoubleArray(), w.dims());
            assertMatClose(want2, LinearAlgebra.matmul(batched, w), 1e-5, "batched 16");
        }
    }

    @Test
    void errorsNameTheOpAndShapes() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, 2, 3);
            Tensor b = Tensor.zeros(DType.FLOAT32, 4, 5);
            var e = assertThrows(IllegalArgumentException.class, () -> LinearAlgebra.matmul(a, b));
            assertTrue(e.getMessage().contains("matmul") && e.getMessage().contains("[2, 3]")
                    && e.getMessage().contains("[4, 5]"), e.getMessage());
            Tensor ia = Tensor.zeros(DType.INT32, 2, 3);
            Tensor ib = Tensor.zeros(DType.INT32, 3, 2);
            var e2 = assertThrows(IllegalArgumentException.class, () -> LinearAlgebra.matmul(ia, ib));
            assertTrue(e2.getMessage().contains("matmul") && e2.getMessage().contains("int32"), e2.getMessage());
            Tensor s = Tensor.scalar(2, DType.FLOAT32, a.device());
            var e3 = assertThrows(IllegalArgumentException.class, () -> LinearAlgebra.matmul(s, a));
            assertTrue(e3.getMessage().contains("matmul") && e3.getMessage().contains("[2, 3]"), e3.getMessage());
            var e4 = assertThrows(IllegalArgumentException.class,
                    () -> LinearAlgebra.matmul(Tensor.zeros(DType.FLOAT32, 2, 2, 3), Tensor.zeros(DType.FLOAT32, 3, 3, 4)));
            assertTrue(e4.getMessage().contains("matmul") && e4.getMessage().contains("[2, 2, 3]"), e4.getMessage());
            var e5 = assertThrows(IllegalArgumentException.class, () -> LinearAlgebra.gemm(a, b, null, 1, 0, false, false));
            assertTrue(e5.getMessage().contains("gemm") && e5.getMessage().contains("[2, 3]"), e5.getMessage());
            var e6 = assertThrows(IllegalArgumentException.class,
                    () -> LinearAlgebra.gemm(a, Tensor.zeros(DType.FLOAT32, 3, 4), Tensor.zeros(DType.FLOAT32, 3), 1, 1,
                            false, false));
            assertTrue(e6.getMessage().contains("[3]"), e6.getMessage());
            var e7 = assertThrows(IllegalArgumentException.class,
                    () -> LinearAlgebra.gemm(Tensor.zeros(DType.FLOAT32, 2, 3, 4), b, null, 1, 0, false, false));
            assertTrue(e7.getMessage().contains("gemm"), e7.getMessage());
        }
    }
}
