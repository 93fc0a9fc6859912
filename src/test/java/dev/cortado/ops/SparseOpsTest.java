package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertCloseChecked;
import static dev.cortado.testing.Reference.relativeTo;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.ops.Sparse.NM;
import dev.cortado.ops.SparseRef.Pattern;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/**
 * The sparse family beyond the OpInfo samples: sizes that run every block of the float32 fast
 * paths (64-column AVX-512 blocks, 32-column AVX2 blocks and both tails; each test runs with
 * AVX-512 on and off), bfloat16 at those sizes, NaN in top-k, and the errors for malformed
 * indices, violated N:M patterns and mismatched operands. References: {@link SparseRef} (float64).
 * Tolerances: float32 1e-5 and bfloat16 1e-2, relative to the largest reference value.
 */
class SparseOpsTest {
    private static final Tol F32 = new Tol(1e-5, 1e-5);
    private static final Tol BF16 = new Tol(1e-2, 1e-2);

    @AfterEach
    void restoreIsa() {
        CpuBackend.setAvx512Enabled(true);
    }

    private static Tensor longs(long[] v) {
        return Tensor.of(v, v.length);
    }

    private static Tensor make(double[] v, DType t, long... dims) {
        return Reference.make(v, t, dims);
    }

    private static double[] stored(double[] v, DType t) {
        double[] o = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            o[i] = Reference.roundTo(v[i], t);
        }
        return o;
    }

    /**
     * Block sizes (70 x 130, n = 200), and 40 x 2100 with n = 300: several row panels of b (256
     * columns by half of L2 in rows: 3 panels of 1,024 rows on a 2 MiB L2, 5 of 512 on 1 MiB) and
     * two column panels of the blocked float32 path (A b and A^T b), unsorted indices (the unblocked path).
     */
    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void csrProductsAtBlockSizes(boolean avx512) {
        CpuBackend.setAvx512Enabled(avx512);
        Random r = new Random(11);
        for (int[] geo : new int[][] {{70, 130, 200}, {40, 2100, 300}}) {
            int rows = geo[0];
            int cols = geo[1];
            int n = geo[2];
            for (DType t : new DType[] {DType.FLOAT32, DType.BFLOAT16}) {
                Tol tol = t == DType.FLOAT32 ? F32 : BF16;
                Pattern p = SparseRef.pattern(r, rows, cols, 0.1, 5);
                double[] v = stored(Reference.uniform(r, p.nnz(), -1, 1), t);
                double[] b = stored(Reference.uniform(r, cols * n, -1, 1), t);
                double[] bt = stored(Reference.uniform(r, rows * n, -1, 1), t);
                int d = 77; // SDDMM: 2 x 32 + 13 (AVX-512), 4 x 16 + 13 (AVX2)
                double[] x = stored(Reference.uniform(r, rows * d, -1, 1), t);
                double[] y = stored(Reference.uniform(r, cols * d, -1, 1), t);
                try (Scope s = Scope.open()) {
                    Tensor crow = longs(p.crow());
                    Tensor col = longs(p.col());
                    Tensor vt = make(v, t, p.nnz());
                    String what = t + " " + rows + "x" + cols + " n=" + n + (avx512 ? " avx512" : " avx2");
                    double[] want = SparseRef.spmm(p, v, b, n);
                    assertCloseChecked(want, Reference.values(Sparse.csrSpmm(crow, col, vt, make(b, t, cols, n))),
                            relativeTo(tol, want), "csr_spmm " + what);
                    want = SparseRef.spmmT(p, v, bt, n);
                    assertCloseChecked(want, Reference.values(Sparse.csrSpmmTransposed(crow, col, vt, cols, make(bt, t, rows, n))),
                            relativeTo(tol, want), "csr_spmm_t " + what);
                    want = SparseRef.sddmm(p, x, y, d);
                    assertCloseChecked(want, Reference.values(Sparse.csrSddmm(crow, col, make(x, t, rows, d), make(y, t, cols, d))),
                            relativeTo(tol, want), "csr_sddmm " + what);
                    // the same entries with each row's order reversed: unsorted columns, the same product
                    long[] rc = p.col().clone();
                    double[] rv = v.clone();
                    for (int i = 0; i < rows; i++) {
                        for (long lo = p.crow()[i], hi = p.crow()[i + 1] - 1; lo < hi; lo++, hi--) {
                            long tc = rc[(int) lo];
                            rc[(int) lo] = rc[(int) hi];
                            rc[(int) hi] = tc;
                            double tv = rv[(int) lo];
                            rv[(int) lo] = rv[(int) hi];
                            rv[(int) hi] = tv;
                        }
                    }
                    want = SparseRef.spmm(p, v, b, n);
                    assertCloseChecked(want, Reference.values(Sparse.csrSpmm(crow, longs(rc), make(rv, t, p.nnz()),
                            make(b, t, cols, n))), relativeTo(tol, want), "csr_spmm unsorted " + what);
                }
            }
        }
    }

    /** Block sizes, and (9 x 520 by 520 x 300) three k panels of 256 and two column panels of the blocked float32 path. */
    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void nmGemmAtBlockSizes(boolean avx512) {
        CpuBackend.setAvx512Enabled(avx512);
        Random r = new Random(12);
        for (int[] shape : new int[][] {{33, 64, 200}, {9, 520, 300}}) {
            int rows = shape[0];
            int k = shape[1];
            int n = shape[2];
            NM nm = new NM(2, 4);
            double[] w = Reference.uniform(r, rows * k, -1, 1);
            double[] b = Reference.uniform(r, k * n, -1, 1);
            double[] dc = Reference.uniform(r, rows * n, -1, 1);
            String what = " " + rows + "x" + k + "x" + n + " avx512=" + avx512;
            try (Scope s = Scope.open()) {
                Tensor[] c = Sparse.nmCompress(make(w, DType.FLOAT32, rows, k), nm);
                double[][] ref = SparseRef.nmCompress(stored(w, DType.FLOAT32), rows, k, 2, 4);
                assertArrayEquals(ref[1], Reference.values(c[1]), "nm_compress meta" + what);
                double[] dense = SparseRef.nmDense(ref[0], ref[1], rows, k, 2, 4);
                double[] want = SparseRef.matmul(dense, stored(b, DType.FLOAT32), rows, k, n);
                Tensor bt = make(b, DType.FLOAT32, k, n);
                assertCloseChecked(want, Reference.values(Sparse.nmMatmul(c[0], c[1], nm, bt)), relativeTo(F32, want),
                        "nm_matmul" + what);
                Tensor[] g = Sparse.NM_MATMUL_BACKWARD_OP.callMulti(nm, c[0], c[1], bt, make(dc, DType.FLOAT32, rows, n));
                double[] dcs = stored(dc, DType.FLOAT32);
                double[] db = new double[k * n];
                for (int i = 0; i < rows; i++) {
                    for (int q = 0; q < k; q++) {
                        for (int j = 0; j < n; j++) {
                            db[q * n + j] += dense[i * k + q] * dcs[i * n + j];
                        }
                    }
                }
                assertCloseChecked(db, Reference.values(g[1]), relativeTo(F32, db), "nm_matmul_backward db" + what);
            }
        }
    }

    /**
     * The packed-panel float32 N:M GEMM (products of at least 2^21 multiply-adds, 48 columns):
     * 70 x 1036 x 173 runs 17 k-panels of 64 (AVX-512; 9 of 128 with AVX2), the last one partial,
     * and column panels with a masked tail (173 = 128 + 45; AVX2 64 + 64 + 45); 2050 rows cross
     * the 2048-row block; 1:3 and 3:8 have panels whose depth (63, 64 / 126, 128) is not a power
     * of two.
     */
    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void nmGemmPackedPanels(boolean avx512) {
        CpuBackend.setAvx512Enabled(avx512);
        Random r = new Random(13);
        int[][] shapes = {{70, 1036, 173, 2, 4}, {2050, 8, 512, 2, 4}, {50, 999, 130, 1, 3}, {30, 1040, 200, 3, 8}};
        for (int[] shape : shapes) {
            int rows = shape[0];
            int k = shape[1];
            int n = shape[2];
            NM nm = new NM(shape[3], shape[4]);
            double[] w = Reference.uniform(r, rows * k, -1, 1);
            double[] b = Reference.uniform(r, k * n, -1, 1);
            String what = " " + rows + "x" + k + "x" + n + " " + nm + " avx512=" + avx512;
            try (Scope s = Scope.open()) {
                Tensor[] c = Sparse.nmCompress(make(w, DType.FLOAT32, rows, k), nm);
                double[][] ref = SparseRef.nmCompress(stored(w, DType.FLOAT32), rows, k, nm.n(), nm.m());
                double[] dense = SparseRef.nmDense(ref[0], ref[1], rows, k, nm.n(), nm.m());
                double[] want = SparseRef.matmul(dense, stored(b, DType.FLOAT32), rows, k, n);
                assertCloseChecked(want, Reference.values(Sparse.nmMatmul(c[0], c[1], nm, make(b, DType.FLOAT32, k, n))),
                        relativeTo(F32, want), "nm_matmul (packed panels)" + what);
            }
        }
    }

    @Test
    void topkPutsNanFirstAndBreaksTiesByIndex() {
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.of(new double[] {1, Double.NaN, 3, 3, -1}, 5);
            Tensor[] top = Sparse.topk(x, 3, 0, true);
            assertArrayEquals(new double[] {Double.NaN, 3, 3}, Reference.values(top[0]));
            assertArrayEquals(new double[] {1, 2, 3}, Reference.values(top[1]));
            Tensor[] low = Sparse.topk(x, 2, 0, false);
            assertArrayEquals(new double[] {-1, 1}, Reference.values(low[0]));
        }
    }

    // ------------------------------------------------------------------ bad input
    private static void assertMessage(RuntimeException e, String... parts) {
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "message \"" + e.getMessage() + "\" lacks \"" + p + "\"");
        }
    }

    @Test
    void malformedCsrIndicesAreRejected() {
        try (Scope s = Scope.open()) {
            Tensor v = Tensor.of(new float[] {1, 2, 3}, 3);
            Tensor b = Tensor.of(new float[8], 4, 2);
            Tensor col = longs(new long[] {0, 1, 3});
            assertMessage(assertThrows(IndexOutOfBoundsException.class,
                    () -> Sparse.csrSpmm(longs(new long[] {1, 2, 3}), col, v, b)), "csr_spmm", "crow_indices[0] = 1");
            assertMessage(assertThrows(IndexOutOfBoundsException.class,
                    () -> Sparse.csrSpmm(longs(new long[] {0, 2, 1, 3}), col, v, b)), "csr_spmm", "crow_indices[2] = 1");
            assertMessage(assertThrows(IndexOutOfBoundsException.class,
                    () -> Sparse.csrSpmm(longs(new long[] {0, 1, 2}), col, v, b)), "crow_indices[2] = 2", "nnz = 3");
            assertMessage(assertThrows(IndexOutOfBoundsException.class,
                    () -> Sparse.csrSpmm(longs(new long[] {0, 1, 3}), longs(new long[] {0, 4, 1}), v, b)),
                    "col_indices[1] = 4", "[0, 4)");
            assertMessage(assertThrows(IndexOutOfBoundsException.class,
                    () -> Sparse.csrSddmm(longs(new long[] {0, 1, 3}), longs(new long[] {0, -1, 1}),
                            Tensor.of(new float[4], 2, 2), b)), "csr_sddmm", "col_indices[1] = -1");
            assertMessage(assertThrows(IndexOutOfBoundsException.class,
                    () -> Sparse.csrSoftmax(longs(new long[] {0, 3, 2}), v)), "csr_softmax", "crow_indices");
            assertMessage(assertThrows(IllegalArgumentException.class,
                    () -> Sparse.csrSpmm(longs(new long[] {0, 1, 3}), col, v, Tensor.of(new double[8], 4, 2))),
                    "csr_spmm", "b", "float64", "dtype float32");
            assertMessage(assertThrows(IllegalArgumentException.class,
                    () -> Sparse.csrSpmm(longs(new long[] {0, 1, 3}), longs(new long[] {0, 1}), v, b)),
                    "csr_spmm", "values", "col");
            assertMessage(assertThrows(IllegalArgumentException.class,
                    () -> Sparse.csrSpmm(Tensor.of(new int[] {0, 1, 3}, 3), col, v, b)), "csr_spmm", "crow", "int64");
        }
    }

    @Test
    void violatedNmPatternsAreRejected() {
        try (Scope s = Scope.open()) {
            NM nm = new NM(2, 4);
            Tensor v = Tensor.of(new float[] {1, 2, 3, 4}, 1, 4);
            Tensor b = Tensor.of(new float[16], 8, 2);
            Tensor tooLarge = Tensor.of(new byte[] {0, 4, 1, 2}, DType.UINT8, 1, 4);
            assertMessage(assertThrows(IllegalArgumentException.class, () -> Sparse.nmMatmul(v, tooLarge, nm, b)),
                    "nm_matmul", "row 0, group 0, slot 1 is 4", "2:4");
            Tensor unsorted = Tensor.of(new byte[] {0, 1, 2, 2}, DType.UINT8, 1, 4);
            assertMessage(assertThrows(IllegalArgumentException.class, () -> Sparse.nmDecompress(v, unsorted, nm)),
                    "nm_decompress", "group 1, slot 1 is 2", "strictly increasing");
            assertMessage(assertThrows(IllegalArgumentException.class,
                    () -> Sparse.nmMatmul(v, Tensor.of(new byte[] {0, 1, 0, 1}, DType.UINT8, 1, 4), nm,
                            Tensor.of(new float[14], 7, 2))), "nm_matmul", "k = 8");
            assertMessage(assertThrows(IllegalArgumentException.class,
                    () -> Sparse.nmCompress(Tensor.of(new float[6], 1, 6), nm)), "nm_compress", "multiple of M");
            assertMessage(assertThrows(IllegalArgumentException.class, () -> new NM(4, 4)), "N:M = 4:4");
            assertMessage(assertThrows(IllegalArgumentException.class,
                    () -> Sparse.topk(Tensor.of(new float[3], 3), 4, 0, true)), "topk", "k = 4");
            assertMessage(assertThrows(IndexOutOfBoundsException.class,
                    () -> Sparse.TOPK_BACKWARD_OP.call(new Sparse.TopKGrad(0, 3), Tensor.of(new float[] {1}, 1),
                            longs(new long[] {3}))), "topk_backward", "indices[0] = 3");
        }
    }
}
