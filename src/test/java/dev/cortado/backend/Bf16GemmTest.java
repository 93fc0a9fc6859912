package dev.cortado.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * The bfloat16 GEMM kernels of native/cpu/gemm_bf16.cpp (AMX tiles, AVX512_BF16 register tiles)
 * and the widening fallback of gemm.cpp, each forced with ct_cpu_set_bf16_gemm_kernel, through
 * ct_cpu_gemm on raw buffers: every transpose, leading dimensions wider than the rows, batches
 * with strides (0 = one operand for every entry), alpha and beta, odd sizes that end inside a
 * register tile and inside a k pair, k long enough for several cache blocks, C larger than one
 * cache block, size-1 and empty dimensions, on 2 threads.
 *
 * <p>Reference: float64 products of the stored bfloat16 inputs (exact). Tolerance per element:
 * {@code 2^-8 |want| + (k + 4) 2^-23 S + 2^-126}, S = |alpha| sum_k |a b| + |beta c|: one
 * rounding of the result to bfloat16 (unit roundoff 2^-8) after float32 accumulation in any order
 * (at most k roundings of 2^-24 S each, doubled for the order of the pair sums and the alpha/beta
 * step); 2^-126 for results that the instructions flush from subnormal to zero. A kernel that drops
 * a k pair, a tile row or column, or a cache block misses by about S / k, well above it (checked
 * by breaking the kernels, see the commit).
 */
class Bf16GemmTest {
    static final int[] KERNELS = {
        NativeCodes.BF16_GEMM_WIDEN, NativeCodes.BF16_GEMM_DPBF16, NativeCodes.BF16_GEMM_AMX};
    private int savedThreads;

    @BeforeEach
    void twoThreads() {
        savedThreads = CpuBackend.threads();
        CpuBackend.setThreads(2);
    }

    @AfterEach
    void restore() {
        NativeCpu.ct_cpu_set_bf16_gemm_kernel(NativeCodes.BF16_GEMM_AUTO);
        CpuBackend.setThreads(savedThreads);
    }

    static String name(int kernel) {
        return switch (kernel) {
            case NativeCodes.BF16_GEMM_WIDEN -> "widen+sgemm";
            case NativeCodes.BF16_GEMM_DPBF16 -> "AVX512_BF16";
            default -> "AMX";
        };
    }

    /** Forces a kernel, or skips the test on a CPU that cannot run it. */
    static void use(int kernel) {
        int status = NativeCpu.ct_cpu_set_bf16_gemm_kernel(kernel);
        assumeTrue(status == 0, () -> name(kernel) + " does not run here: " + NativeCpu.ct_cpu_last_error().getString());
        assertEquals(kernel, NativeCpu.ct_cpu_bf16_gemm_kernel());
    }

    /** One ct_cpu_gemm call's geometry; stored sizes follow from it. */
    record Case(boolean ta, boolean tb, int batch, int m, int n, int k, double alpha, double beta, int padA, int padB,
                int padC, boolean broadcastA, boolean broadcastB) {
        @Override
        public String toString() {
            return "ta=" + ta + " tb=" + tb + " batch=" + batch + " m=" + m + " n=" + n + " k=" + k + " alpha=" + alpha
                    + " beta=" + beta + " pad=" + padA + "/" + padB + "/" + padC
                    + (broadcastA ? " A broadcast" : "") + (broadcastB ? " B broadcast" : "");
        }
    }

    static List<Case> cases() {
        List<Case> out = new ArrayList<>();
        int[][] sizes = {{1, 1, 1}, {1, 5, 1}, {3, 5, 7}, {13, 37, 33}, {12, 32, 64}, {33, 65, 64}, {40, 50, 1100},
                         {150, 300, 70}, {129, 257, 33}};
        for (int[] s : sizes) {
            for (boolean ta : new boolean[] {false, true}) {
                for (boolean tb : new boolean[] {false, true}) {
                    out.add(new Case(ta, tb, 1, s[0], s[1], s[2], 1, 0, 0, 0, 0, false, false));
                }
            }
        }
        // strides, alpha/beta, batches (several entries per thread, broadcast operands)
        out.add(new Case(false, false, 1, 13, 37, 33, 1.5, 0.5, 3, 5, 7, false, false));
        out.add(new Case(true, true, 1, 29, 45, 66, -0.75, 1, 1, 2, 3, false, false));
        out.add(new Case(false, true, 3, 17, 40, 19, 1, 0, 2, 0, 1, false, false));
        out.add(new Case(true, false, 9, 7, 9, 11, 2, -1, 0, 3, 0, false, true));
        out.add(new Case(false, false, 8, 5, 6, 70, 1, 0, 0, 0, 0, true, false));
        out.add(new Case(false, false, 2, 140, 270, 40, 0.5, 2, 1, 1, 1, false, true));   // threads over entries
        out.add(new Case(false, true, 2, 300, 600, 20, 1, 0.5, 0, 1, 0, true, false));    // threads over C blocks
        return out;
    }

    @TestFactory
    List<DynamicTest> matchesFloat64Reference() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 2200;
        for (int kernel : KERNELS) {
            for (Case c : cases()) {
                long s = seed++;
                tests.add(dynamicTest(name(kernel) + " " + c, () -> {
                    use(kernel);
                    check(c, s);
                }));
            }
        }
        return tests;
    }

    static void check(Case c, long seed) {
        Random r = new Random(seed);
        int aRows = c.ta ? c.k : c.m;
        int aCols = c.ta ? c.m : c.k;
        int bRows = c.tb ? c.n : c.k;
        int bCols = c.tb ? c.k : c.n;
        int lda = aCols + c.padA;
        int ldb = bCols + c.padB;
        int ldc = c.n + c.padC;
        int sa = c.broadcastA ? 0 : aRows * lda + 3;   // entries apart by more than a matrix
        int sb = c.broadcastB ? 0 : bRows * ldb + 5;
        int sc = c.m * ldc + 2;
        int na = (c.broadcastA ? 1 : c.batch) * Math.max(sa, aRows * lda);
        int nb = (c.broadcastB ? 1 : c.batch) * Math.max(sb, bRows * ldb);
        int nc = c.batch * sc;
        try (Tensor ta = Reference.make(Reference.uniform(r, na, -2, 2), DType.BFLOAT16, na);
             Tensor tb = Reference.make(Reference.uniform(r, nb, -2, 2), DType.BFLOAT16, nb);
             Tensor tc = Reference.make(Reference.uniform(r, nc, -2, 2), DType.BFLOAT16, nc)) {
            double[] a = ta.toDoubleArray();
            double[] b = tb.toDoubleArray();
            double[] c0 = tc.toDoubleArray();
            int status = NativeCpu.ct_cpu_gemm(DType.BFLOAT16.code(), c.ta ? 1 : 0, c.tb ? 1 : 0, c.batch, c.m, c.n, c.k,
                    c.alpha, ta.dataAddress(), lda, sa, tb.dataAddress(), ldb, sb, c.beta, tc.dataAddress(), ldc, sc, 0);
            assertEquals(0, status, () -> NativeCpu.ct_cpu_last_error().getString());
            double[] got = tc.toDoubleArray();
            for (int e = 0; e < c.batch; e++) {
                for (int i = 0; i < c.m; i++) {
                    for (int j = 0; j < c.n; j++) {
                        double sum = 0;
                        double abs = 0;
                        for (int q = 0; q < c.k; q++) {
                            double x = a[e * sa + (c.ta ? q * lda + i : i * lda + q)];
                            double y = b[e * sb + (c.tb ? j * ldb + q : q * ldb + j)];
                            sum += x * y;
                            abs += Math.abs(x * y);
                        }
                        int at = e * sc + i * ldc + j;
                        double want = c.alpha * sum + (c.beta == 0 ? 0 : c.beta * c0[at]);
                        double s = Math.abs(c.alpha) * abs + Math.abs(c.beta * c0[at]);
                        double limit = 0x1p-8 * Math.abs(want) + (c.k + 4) * 0x1p-23 * s + 0x1p-126;
                        if (!(Math.abs(got[at] - want) <= limit)) {
                            fail(c + ": C[" + e + "][" + i + "][" + j + "] = " + got[at] + ", expected " + want
                                    + " (limit " + limit + ")");
                        }
                    }
                }
            }
            // the padding between rows and between entries is not written
            for (int e = 0; e < c.batch; e++) {
                for (int i = 0; i < c.m; i++) {
                    for (int j = c.n; j < (i == c.m - 1 ? sc - (c.m - 1) * ldc : ldc); j++) {
                        int at = e * sc + i * ldc + j;
                        assertEquals(c0[at], got[at], c + ": padding C[" + at + "] was written");
                    }
                }
            }
        }
    }

    /** beta = 0 ignores C (NaN there stays out of the result); k = 0 gives beta C; m or n = 0 is a no-op. */
    @TestFactory
    List<DynamicTest> edgeCases() {
        List<DynamicTest> tests = new ArrayList<>();
        for (int kernel : KERNELS) {
            tests.add(dynamicTest(name(kernel) + " beta=0 ignores NaN in C", () -> {
                use(kernel);
                try (Tensor a = Reference.make(new double[] {1, 2, 3, 4, 5, 6}, DType.BFLOAT16, 2, 3);
                     Tensor b = Reference.make(new double[] {1, 0, 0, 1, 1, 1}, DType.BFLOAT16, 3, 2);
                     Tensor c = Reference.make(new double[] {Double.NaN, Double.NaN, Double.NaN, Double.NaN},
                             DType.BFLOAT16, 2, 2)) {
                    assertEquals(0, NativeCpu.ct_cpu_gemm(DType.BFLOAT16.code(), 0, 0, 1, 2, 2, 3, 1.0, a.dataAddress(),
                            3, 0, b.dataAddress(), 2, 0, 0.0, c.dataAddress(), 2, 0, 0));
                    assertEquals(Arrays.toString(new double[] {4, 5, 10, 11}), Arrays.toString(c.toDoubleArray()));
                }
            }));
            tests.add(dynamicTest(name(kernel) + " k=0 and empty m, n", () -> {
                use(kernel);
                try (Tensor c = Reference.make(new double[] {1, 2, 3, 4}, DType.BFLOAT16, 2, 2)) {
                    assertEquals(0, NativeCpu.ct_cpu_gemm(DType.BFLOAT16.code(), 0, 0, 1, 2, 2, 0, 1.0, 0, 1, 0, 0, 2, 0,
                            0.5, c.dataAddress(), 2, 0, 0));
                    assertEquals(Arrays.toString(new double[] {0.5, 1, 1.5, 2}), Arrays.toString(c.toDoubleArray()));
                    assertEquals(0, NativeCpu.ct_cpu_gemm(DType.BFLOAT16.code(), 0, 0, 1, 0, 2, 3, 1.0, 0, 3, 0, 0, 2, 0,
                            0.0, c.dataAddress(), 2, 0, 0));
                    assertEquals(0, NativeCpu.ct_cpu_gemm(DType.BFLOAT16.code(), 0, 0, 1, 2, 0, 3, 1.0, 0, 3, 0, 0, 1, 0,
                            0.0, c.dataAddress(), 1, 0, 0));
                    assertEquals(Arrays.toString(new double[] {0.5, 1, 1.5, 2}), Arrays.toString(c.toDoubleArray()));
                }
            }));
            tests.add(dynamicTest(name(kernel) + " matmul of bfloat16 views", () -> {
                use(kernel);
                Random r = new Random(31);
                // a: [k, 2m] sliced and transposed to [m, k] (column-major); b: [n, k] transposed to [k, n]
                try (var scope = Scope.open()) {
                    Tensor aBase = Reference.make(Reference.uniform(r, 45 * 2 * 19, -2, 2), DType.BFLOAT16, 45, 38);
                    Tensor bBase = Reference.make(Reference.uniform(r, 3 * 35 * 45, -2, 2), DType.BFLOAT16, 3, 35, 45);
                    Tensor a = aBase.slice(1, 0, 38, 2).transpose(0, 1);
                    Tensor b = bBase.transpose(-1, -2);
                    Tensor y = LinearAlgebra.matmul(a, b);
                    assertEquals(DType.BFLOAT16, y.dtype());
                    double[] av = a.toDoubleArray();
                    double[] bv = b.toDoubleArray();
                    double[] got = y.toDoubleArray();
                    for (int e = 0; e < 3; e++) {
                        for (int i = 0; i < 19; i++) {
                            for (int j = 0; j < 35; j++) {
                                double sum = 0;
                                double abs = 0;
                                for (int q = 0; q < 45; q++) {
                                    double p = av[i * 45 + q] * bv[e * 45 * 35 + q * 35 + j];
                                    sum += p;
                                    abs += Math.abs(p);
                                }
                                double limit = 0x1p-8 * Math.abs(sum) + 49 * 0x1p-23 * abs;
                                double g = got[e * 19 * 35 + i * 35 + j];
                                assertTrue(Math.abs(g - sum) <= limit, "y[" + e + "," + i + "," + j + "] = " + g
                                        + ", expected " + sum);
                            }
                        }
                    }
                }
            }));
        }
        return tests;
    }

    @Test
    void automaticChoiceRunsAndUnknownKernelsAreRefused() {
        int auto = NativeCpu.ct_cpu_bf16_gemm_kernel();
        assertTrue(auto == NativeCodes.BF16_GEMM_WIDEN || auto == NativeCodes.BF16_GEMM_DPBF16
                || auto == NativeCodes.BF16_GEMM_AMX, "automatic kernel " + auto);
        assertEquals(NativeCodes.ERR_INVALID_ARG, NativeCpu.ct_cpu_set_bf16_gemm_kernel(7));
        assertTrue(NativeCpu.ct_cpu_last_error().getString().contains("kernel=7"));
        // with AVX-512 switched off only the widening kernel runs, whatever was forced
        if (NativeCpu.ct_cpu_set_bf16_gemm_kernel(NativeCodes.BF16_GEMM_DPBF16) == 0
                || NativeCpu.ct_cpu_set_bf16_gemm_kernel(NativeCodes.BF16_GEMM_AMX) == 0) {
            CpuBackend.setAvx512Enabled(false);
            try {
                assertEquals(NativeCodes.BF16_GEMM_WIDEN, NativeCpu.ct_cpu_bf16_gemm_kernel());
                assertEquals(NativeCodes.ERR_UNSUPPORTED, NativeCpu.ct_cpu_set_bf16_gemm_kernel(NativeCodes.BF16_GEMM_AMX));
            } finally {
                CpuBackend.setAvx512Enabled(true);
            }
        }
    }
}
