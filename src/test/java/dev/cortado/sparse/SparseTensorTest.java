package dev.cortado.sparse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.ops.SparseRef;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Layout;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.Arrays;
import java.util.Comparator;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * SparseTensor: the four layouts from components and from dense (non-zeros, mask, magnitude),
 * round trips to dense, nnz and density, COO coalescing, printing, the products with their
 * gradients, and the validation errors (each names the factory, the argument and the rule).
 */
class SparseTensorTest {

    /** A 5x8 matrix with about half its entries zero, and one all-zero row. */
    private static double[] sparseDense(Random r) {
        double[] x = new double[40];
        for (int i = 0; i < 40; i++) {
            x[i] = i / 8 == 2 || r.nextBoolean() ? 0 : r.nextDouble() * 2 - 1;
        }
        return x;
    }

    private static long count(double[] x) {
        return Arrays.stream(x).filter(v -> v != 0).count();
    }

    @Test
    void csrAndCooRoundTripThroughDense() {
        double[] x = sparseDense(new Random(1));
        try (Scope s = Scope.open()) {
            Tensor d = Tensor.of(x, 5, 8);
            for (boolean csr : new boolean[] {true, false}) {
                try (SparseTensor t = csr ? SparseTensor.fromDense(d).toCsr() : SparseTensor.fromDense(d).toCoo()) {
                    assertEquals(csr ? Layout.CSR : Layout.COO, t.layout());
                    assertEquals(count(x), t.nnz());
                    assertEquals(count(x) / 40.0, t.density(), 1e-15);
                    assertTrue(t.isCoalesced());
                    assertArrayEquals(x, t.toDense().toDoubleArray());
                }
            }
            try (SparseTensor t = SparseTensor.fromDense(d).toCsr()) {
                long[] crow = t.crowIndices().toLongArray();
                assertEquals(crow[2], crow[3], "row 2 is empty");
                assertThrows(IllegalStateException.class, t::meta);
            }
        }
    }

    @Test
    void cooWithDuplicatesCoalesces() {
        try (Scope s = Scope.open()) {
            Tensor r = Tensor.of(new long[] {1, 0, 1, 1}, 4);
            Tensor c = Tensor.of(new long[] {2, 1, 0, 2}, 4);
            Tensor v = Tensor.of(new float[] {1.5f, 2f, -1f, 0.25f}, 4);
            try (SparseTensor t = SparseTensor.coo(r, c, v, 2, 3); SparseTensor k = t.coalesce()) {
                assertFalse(t.isCoalesced());
                double[] want = {0, 2, 0, -1, 0, 1.75};
                assertArrayEquals(want, t.toDense().toDoubleArray());
                assertTrue(k.isCoalesced());
                assertEquals(3, k.nnz());
                assertArrayEquals(new long[] {0, 1, 1}, k.rowIndices().toLongArray());
                assertArrayEquals(new long[] {1, 0, 2}, k.colIndices().toLongArray());
                assertArrayEquals(want, k.toDense().toDoubleArray());
                assertTrue(t.toString().contains("not coalesced"), t.toString());
            }
        }
    }

    @Test
    void magnitudeKeepsTheLargestEntries() {
        Random r = new Random(2);
        double[] x = Reference.uniform(r, 60, -1, 1);
        int keep = 15; // density 0.25 of 60
        Integer[] order = IntStream.range(0, 60).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingDouble((Integer i) -> -Math.abs(x[i])));
        double[] want = new double[60];
        for (int e = 0; e < keep; e++) {
            want[order[e]] = x[order[e]];
        }
        try (Scope s = Scope.open(); SparseTensor t = SparseTensor.fromDense(Tensor.of(x, 6, 10)).density(0.25).toCsr()) {
            assertEquals(keep, t.nnz());
            assertArrayEquals(want, t.toDense().toDoubleArray());
        }
    }

    @Test
    void maskKeepsZerosToo() {
        try (Scope s = Scope.open()) {
            Tensor d = Tensor.of(new double[] {0, 1, 2, 0}, 2, 2);
            Tensor m = Tensor.of(new boolean[] {true, false, true, true}, 2, 2);
            try (SparseTensor t = SparseTensor.fromDense(d).mask(m).toCsr()) {
                assertEquals(3, t.nnz());
                assertArrayEquals(new double[] {0, 0, 2, 0}, t.toDense().toDoubleArray());
            }
        }
    }

    @Test
    void bsrByMaskAndByBlockNorm() {
        Random r = new Random(3);
        double[] x = Reference.uniform(r, 6 * 8, -1, 1);
        for (int i = 0; i < 2; i++) {         // block (0, 1) of 2x2 blocks scaled up: the largest by norm
            for (int j = 2; j < 4; j++) {
                x[i * 8 + j] *= 10;
            }
        }
        try (Scope s = Scope.open()) {
            Tensor d = Tensor.of(x, 6, 8);
            try (SparseTensor all = SparseTensor.fromDense(d).toBsr(2)) {
                assertEquals(12, all.values().size(0));
                assertEquals(48, all.nnz());
                assertArrayEquals(x, all.toDense().toDoubleArray());
                double[] b = Reference.uniform(r, 8 * 3, -1, 1);
                assertArrayEquals(SparseRef.matmul(x, b, 6, 8, 3), all.matmul(Tensor.of(b, 8, 3)).toDoubleArray(), 1e-12);
            }
            try (SparseTensor top = SparseTensor.fromDense(d).density(1.0 / 12).toBsr(2)) {
                assertEquals(1, top.values().size(0));
                assertArrayEquals(new long[] {1}, top.colIndices().toLongArray());
                assertArrayEquals(new long[] {0, 1, 1, 1}, top.crowIndices().toLongArray());
                assertEquals(2, top.blockSize());
                try (SparseTensor c = top.toCsr()) {
                    assertEquals(4, c.nnz());
                    assertArrayEquals(top.toDense().toDoubleArray(), c.toDense().toDoubleArray());
                }
            }
            assertThrows(IllegalArgumentException.class, () -> SparseTensor.fromDense(d).toBsr(3));
        }
    }

    @Test
    void nmByMagnitudeAndByMask() {
        Random r = new Random(4);
        double[] x = Reference.uniform(r, 3 * 8, -1, 1);
        double[][] ref = SparseRef.nmCompress(x, 3, 8, 2, 4);
        try (Scope s = Scope.open()) {
            Tensor d = Tensor.of(x, 3, 8);
            try (SparseTensor t = SparseTensor.fromDense(d).toNm(2, 4)) {
                assertEquals(Layout.NM, t.layout());
                assertEquals(12, t.nnz());
                assertEquals(0.5, t.density(), 0);
                assertArrayEquals(ref[0], t.values().toDoubleArray());
                assertArrayEquals(SparseRef.nmDense(ref[0], ref[1], 3, 8, 2, 4), t.toDense().toDoubleArray());
                assertTrue(t.toString().startsWith("nm 2:4 float64[3, 8] on cpu, nnz 12 (density 0.500)"), t.toString());
            }
            boolean[] keep = new boolean[24];
            keep[0] = true;             // group 0 of row 0 keeps one: padded with position 1
            keep[5] = keep[6] = true;   // group 1 keeps two
            try (SparseTensor t = SparseTensor.fromDense(d).mask(Tensor.of(keep, 3, 8)).toNm(2, 4)) {
                byte[] meta = t.meta().toByteArray();
                assertArrayEquals(new byte[] {0, 1, 1, 2}, Arrays.copyOf(meta, 4));
                double[] dense = t.toDense().toDoubleArray();
                assertEquals(x[0], dense[0]);
                assertEquals(0, dense[1]);
                assertEquals(x[5], dense[5]);
            }
            keep[1] = keep[2] = true; // group 0 now keeps three
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> SparseTensor.fromDense(d).mask(Tensor.of(keep, 3, 8)).toNm(2, 4));
            assertTrue(e.getMessage().contains("keeps 3 entries of group 0 in row 0; 2:4 allows at most 2"), e.getMessage());
        }
    }

    @Test
    void csrAndNmProductsCarryGradientsToValuesAndB() {
        Random r = new Random(5);
        double[] x = sparseDense(r);
        double[] b = Reference.uniform(r, 8 * 3, -1, 1);
        try (Scope s = Scope.open()) {
            SparseTensor a = SparseTensor.fromDense(Tensor.of(x, 5, 8)).toCsr();
            Tensor v = a.values().requiresGrad(true);
            Tensor bt = Tensor.of(b, 8, 3).requiresGrad(true);
            Tensor c = a.matmul(bt);
            assertArrayEquals(SparseRef.matmul(x, b, 5, 8, 3), c.toDoubleArray(), 1e-12);
            c.sum().backward();
            long[] col = a.colIndices().toLongArray();
            double[] dv = new double[col.length];
            for (int e = 0; e < col.length; e++) {
                dv[e] = b[(int) col[e] * 3] + b[(int) col[e] * 3 + 1] + b[(int) col[e] * 3 + 2];
            }
            assertArrayEquals(dv, v.grad().toDoubleArray(), 1e-12);
            double[] db = new double[24];
            for (int i = 0; i < 5; i++) {
                for (int k = 0; k < 8; k++) {
                    for (int j = 0; j < 3; j++) {
                        db[k * 3 + j] += x[i * 8 + k];
                    }
                }
            }
            assertArrayEquals(db, bt.grad().toDoubleArray(), 1e-12);
            a.close();

            SparseTensor w = SparseTensor.fromDense(Tensor.of(x, 5, 8)).toNm(2, 4);
            assertArrayEquals(SparseRef.matmul(w.toDense().toDoubleArray(), b, 5, 8, 3),
                    w.matmul(Tensor.of(b, 8, 3)).toDoubleArray(), 1e-12);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> w.matmul(Tensor.of(b, 3, 8)));
            assertTrue(e.getMessage().contains("must be [8, n] for nm 2:4 float64[5, 8]"), e.getMessage());
            w.close();
        }
    }

    @Test
    void printingShowsLayoutShapeAndComponents() {
        try (Scope s = Scope.open()) {
            Tensor d = Tensor.of(new float[] {1, 0, 2, 0, 0, 0, 0, 3, 4, 5, 0, 0}, 3, 4);
            try (SparseTensor t = SparseTensor.fromDense(d).toCsr()) {
                String p = t.toString();
                assertTrue(p.startsWith("csr float32[3, 4] on cpu, nnz 5 (density 0.417)"), p);
                assertTrue(p.contains("crow_indices: [0, 2, 3, 5]"), p);
                assertTrue(p.contains("col_indices: [0, 2, 3, 0, 1]"), p);
                assertTrue(p.contains("values: [1.000, 2.000, 3.000, 4.000, 5.000]"), p);
            }
        }
    }

    private static void assertRejected(String part, Runnable r) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, r::run);
        assertTrue(e.getMessage().contains(part), "\"" + e.getMessage() + "\" lacks \"" + part + "\"");
    }

    @Test
    void invalidIndicesAreRejectedWithTheArgumentAndTheRule() {
        try (Scope s = Scope.open()) {
            Tensor v3 = Tensor.of(new float[] {1, 2, 3}, 3);
            assertRejected("SparseTensor.csr: colIndices[2] = 1 follows 1 in row 1 (column indices must be sorted and distinct",
                    () -> SparseTensor.csr(Tensor.of(new long[] {0, 1, 3}, 3), Tensor.of(new long[] {0, 1, 1}, 3), v3, 2, 4));
            assertRejected("SparseTensor.csr: colIndices[2] = 0 follows 2",
                    () -> SparseTensor.csr(Tensor.of(new long[] {0, 1, 3}, 3), Tensor.of(new long[] {0, 2, 0}, 3), v3, 2, 4));
            assertRejected("SparseTensor.csr: colIndices[1] = 4 is out of range [0, 4)",
                    () -> SparseTensor.csr(Tensor.of(new long[] {0, 1, 3}, 3), Tensor.of(new long[] {0, 4, 5}, 3), v3, 2, 4));
            assertRejected("SparseTensor.csr: crowIndices[0] = 1, must be 0",
                    () -> SparseTensor.csr(Tensor.of(new long[] {1, 1, 3}, 3), Tensor.of(new long[] {0, 1, 2}, 3), v3, 2, 4));
            assertRejected("crowIndices[2] = 2, must equal nnz = 3",
                    () -> SparseTensor.csr(Tensor.of(new long[] {0, 1, 2}, 3), Tensor.of(new long[] {0, 1, 2}, 3), v3, 2, 4));
            assertRejected("SparseTensor.csr: crowIndices int64[2] on cpu must be int64 [3]",
                    () -> SparseTensor.csr(Tensor.of(new long[] {0, 3}, 2), Tensor.of(new long[] {0, 1, 2}, 3), v3, 2, 4));
            assertRejected("SparseTensor.coo: rowIndices[1] = 2 is out of range [0, 2)",
                    () -> SparseTensor.coo(Tensor.of(new long[] {0, 2, 1}, 3), Tensor.of(new long[] {0, 1, 2}, 3), v3, 2, 4));
            assertRejected("SparseTensor.coo: colIndices int32[3] on cpu must be int64 [3]",
                    () -> SparseTensor.coo(Tensor.of(new long[] {0, 1, 1}, 3), Tensor.of(new int[] {0, 1, 2}, 3), v3, 2, 4));
            assertRejected("SparseTensor.bsr: blockSize 3 must be positive and divide rows 4 and cols 4",
                    () -> SparseTensor.bsr(Tensor.of(new long[] {0, 0}, 2), Tensor.of(new long[0], 0),
                            Tensor.of(new float[0], 0, 3, 3), 4, 4, 3));
            assertRejected("SparseTensor.nm: meta of row 0, group 1, slot 1 is 0: a 2:4 pattern needs positions in [0, 4), strictly",
                    () -> SparseTensor.nm(Tensor.of(new float[4], 1, 4), Tensor.of(new byte[] {0, 3, 1, 0}, DType.UINT8, 1, 4),
                            2, 4, 1, 8));
            assertRejected("SparseTensor.nm: values float32[1, 4] on cpu must be [1, 2] for a 1:4 matrix [1, 8]",
                    () -> SparseTensor.nm(Tensor.of(new float[4], 1, 4), Tensor.of(new byte[4], DType.UINT8, 1, 4), 1, 4, 1, 8));
        }
    }
}
