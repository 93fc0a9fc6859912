package dev.cortado.sparse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.EmbeddingBag;
import dev.cortado.nn.ParamOptions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * nn.EmbeddingBag (sum, mean, per-sample weights; dense and sparse gradients) against a float64
 * Java reference on random tables, bags with repeated rows, an empty bag and a bag of one; the
 * row-sparse gradient equals the dense one; RowSparseOptimizer (lazy SGD with momentum, Nesterov
 * and weight decay; lazy Adam) against a float64 model over several steps, untouched rows
 * unchanged bit for bit; bad input. Tolerances: float64 tables, 1e-12 relative.
 */
class EmbeddingBagTest {
    private static final long NUM = 23;
    private static final long DIM = 5;
    private static final long[] INDICES = {3, 7, 3, 22, 0, 7, 7, 11, 5, 3};
    private static final long[] OFFSETS = {0, 3, 3, 4, 9}; // bags: {3,7,3}, {}, {22}, {0,7,7,11,5}, {3}

    private static ParamOptions f64() {
        return ParamOptions.seeded(4).withDType(DType.FLOAT64);
    }

    /** out[b] = sum over the bag of scale * table[row], scale 1, 1/|bag| or the per-sample weight. */
    private static double[] reference(double[] table, EmbeddingBag.Mode mode, double[] psw) {
        double[] out = new double[OFFSETS.length * (int) DIM];
        for (int b = 0; b < OFFSETS.length; b++) {
            long end = b + 1 < OFFSETS.length ? OFFSETS[b + 1] : INDICES.length;
            for (long e = OFFSETS[b]; e < end; e++) {
                double s = psw != null ? psw[(int) e] : mode == EmbeddingBag.Mode.MEAN ? 1.0 / (end - OFFSETS[b]) : 1;
                for (int j = 0; j < DIM; j++) {
                    out[b * (int) DIM + j] += s * table[(int) (INDICES[(int) e] * DIM + j)];
                }
            }
        }
        return out;
    }

    /** d table = sum over occurrences of scale * dout[bag]. */
    private static double[] referenceGrad(double[] dout, EmbeddingBag.Mode mode, double[] psw) {
        double[] g = new double[(int) (NUM * DIM)];
        for (int b = 0; b < OFFSETS.length; b++) {
            long end = b + 1 < OFFSETS.length ? OFFSETS[b + 1] : INDICES.length;
            for (long e = OFFSETS[b]; e < end; e++) {
                double s = psw != null ? psw[(int) e] : mode == EmbeddingBag.Mode.MEAN ? 1.0 / (end - OFFSETS[b]) : 1;
                for (int j = 0; j < DIM; j++) {
                    g[(int) (INDICES[(int) e] * DIM + j)] += s * dout[b * (int) DIM + j];
                }
            }
        }
        return g;
    }

    private static void assertClose(double[] want, double[] got, String what) {
        assertEquals(want.length, got.length, what);
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], 1e-12 * Math.max(1, Math.abs(want[i])), what + " at " + i);
        }
    }

    @Test
    void bagsAndGradientsMatchTheReference() {
        Random r = new Random(8);
        double[] psw = r.doubles(INDICES.length, -2, 2).toArray();
        double[] dout = r.doubles(OFFSETS.length * DIM, -1, 1).toArray();
        for (EmbeddingBag.Mode mode : EmbeddingBag.Mode.values()) {
            for (boolean withWeights : new boolean[] {false, true}) {
                if (withWeights && mode == EmbeddingBag.Mode.MEAN) {
                    continue;
                }
                double[] w = withWeights ? psw : null;
                String what = mode + (withWeights ? " with per-sample weights" : "");
                double[] dense;
                try (EmbeddingBag bag = new EmbeddingBag(NUM, DIM, mode, false, f64());
                     Scope s = Scope.open()) {
                    double[] table = bag.weight().toDoubleArray();
                    Tensor out = bag.forward(Tensor.of(INDICES, INDICES.length), Tensor.of(OFFSETS, OFFSETS.length),
                            w == null ? null : Tensor.of(w, w.length));
                    assertArrayEquals(new long[] {OFFSETS.length, DIM}, out.dims());
                    assertClose(reference(table, mode, w), out.toDoubleArray(), what + " forward");
                    out.mul(Tensor.of(dout, OFFSETS.length, DIM)).sum().backward();
                    dense = bag.weight().grad().toDoubleArray();
                    assertClose(referenceGrad(dout, mode, w), dense, what + " dense gradient");
                }
                try (EmbeddingBag bag = new EmbeddingBag(NUM, DIM, mode, true, f64())) {
                    try (Scope s = Scope.open()) {
                        double[] table = bag.weight().toDoubleArray();
                        Tensor out = bag.forward(Tensor.of(INDICES, INDICES.length),
                                Tensor.of(OFFSETS, OFFSETS.length), w == null ? null : Tensor.of(w, w.length));
                        assertClose(reference(table, mode, w), out.toDoubleArray(), what + " sparse-mode forward");
                        out.mul(Tensor.of(dout, OFFSETS.length, DIM)).sum().backward();
                    }
                    assertEquals(null, bag.weight().grad(), "no dense gradient in sparse mode");
                    try (RowSparseGradient g = bag.sparseGradient(); Tensor d = g.toDense()) {
                        assertArrayEquals(Arrays.stream(INDICES).sorted().distinct().toArray(), g.rows().toLongArray());
                        assertClose(dense, d.toDoubleArray(), what + " row-sparse gradient");
                    }
                }
            }
        }
    }

    @Test
    void fixedLengthBags() {
        try (EmbeddingBag bag = new EmbeddingBag(NUM, DIM, EmbeddingBag.Mode.MEAN, false, f64());
             Scope s = Scope.open()) {
            double[] table = bag.weight().toDoubleArray();
            Tensor out = bag.forward(Tensor.of(new long[] {1, 2, 3, 4, 5, 6}, 2, 3));
            double[] want = new double[2 * (int) DIM];
            for (int b = 0; b < 2; b++) {
                for (int j = 0; j < DIM; j++) {
                    for (int e = 0; e < 3; e++) {
                        want[b * (int) DIM + j] += table[(int) ((1 + b * 3 + e) * DIM + j)] / 3;
                    }
                }
            }
            assertClose(want, out.toDoubleArray(), "[2, 3] bags");
        }
    }

    /** Lazy SGD (momentum, Nesterov, weight decay) and Adam over 4 steps against the float64 model. */
    @Test
    void lazyOptimizersUpdateOnlyTouchedRows() {
        Random r = new Random(21);
        long[][] touched = {{1, 4, 9}, {4, 22}, {0, 1, 2, 3}, {9}};
        for (int variant = 0; variant < 3; variant++) {
            double[] p;
            double[] a = new double[(int) (NUM * DIM)];
            double[] b = new double[(int) (NUM * DIM)];
            double lr = 0.1;
            double mom = 0.9;
            double wd = variant == 1 ? 0.01 : 0;
            RowSparseOptimizer.Builder o = variant == 2 ? RowSparseOptimizer.adam(lr).weightDecay(0.02)
                    : RowSparseOptimizer.sgd(lr).momentum(mom).weightDecay(wd).nesterov(variant == 1);
            try (Tensor table = Tensor.of(r.doubles(NUM * DIM, -1, 1).toArray(), NUM, DIM);
                 RowSparseOptimizer opt = o.build()) {
                p = table.toDoubleArray();
                for (int step = 1; step <= touched.length; step++) {
                    long[] rows = touched[step - 1];
                    double[] g = r.doubles(rows.length * DIM, -1, 1).toArray();
                    double[] before = table.toDoubleArray();
                    try (Tensor gi = Tensor.of(rows, rows.length); Tensor gv = Tensor.of(g, rows.length, DIM);
                         RowSparseGradient grad = RowSparseGradient.coalesce(gi, gv, NUM)) {
                        opt.step(table, grad);
                    }
                    for (int i = 0; i < rows.length; i++) {
                        for (int j = 0; j < DIM; j++) {
                            int at = (int) (rows[i] * DIM + j);
                            if (variant == 2) {
                                double gg = g[i * (int) DIM + j] + 0.02 * p[at];
                                a[at] = 0.9 * a[at] + 0.1 * gg;
                                b[at] = 0.999 * b[at] + 0.001 * gg * gg;
                                double mh = a[at] / (1 - Math.pow(0.9, step));
                                double vh = b[at] / (1 - Math.pow(0.999, step));
                                p[at] -= lr * mh / (Math.sqrt(vh) + 1e-8);
                            } else {
                                double gg = g[i * (int) DIM + j] + wd * p[at];
                                a[at] = mom * a[at] + gg;
                                p[at] -= lr * (variant == 1 ? gg + mom * a[at] : a[at]);
                            }
                        }
                    }
                    double[] got = table.toDoubleArray();
                    assertClose(p, got, "variant " + variant + " step " + step);
                    for (int row = 0; row < NUM; row++) {
                        final long rr = row;
                        if (Arrays.stream(rows).noneMatch(x -> x == rr)) {
                            for (int j = 0; j < DIM; j++) {
                                int at = (int) (row * DIM + j);
                                assertEquals(before[at], got[at], 0.0, "untouched row " + row + " changed");
                            }
                        }
                    }
                }
                assertEquals(touched.length, opt.steps(table));
            }
        }
    }

    @Test
    void coalesceSumsRepeatedRows() {
        try (Tensor idx = Tensor.of(new long[] {5, 2, 5, 5}, 4);
             Tensor g = Tensor.of(new double[] {1, 2, 10, 20, 100, 200, 1000, 2000}, 4, 2);
             RowSparseGradient c = RowSparseGradient.coalesce(idx, g, 6)) {
            assertArrayEquals(new long[] {2, 5}, c.rows().toLongArray());
            assertArrayEquals(new double[] {10, 20, 1101, 2202}, c.values().toDoubleArray());
        }
    }

    @Test
    void badInputIsRejected() {
        try (EmbeddingBag bag = new EmbeddingBag(NUM, DIM, EmbeddingBag.Mode.MEAN, false, f64());
             Scope s = Scope.open()) {
            Tensor idx = Tensor.of(INDICES, INDICES.length);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> bag.forward(idx, Tensor.of(new long[] {0, 5, 2}, 3)));
            assertTrue(e.getMessage().contains("offsets[2]"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> bag.forward(idx, Tensor.of(OFFSETS, OFFSETS.length),
                    Tensor.of(new double[INDICES.length], INDICES.length)));
            assertTrue(e.getMessage().contains("perSampleWeights"), e.getMessage());
            RuntimeException out = assertThrows(RuntimeException.class,
                    () -> bag.forward(Tensor.of(new long[] {1, 23}, 2), Tensor.of(new long[] {0}, 1)));
            assertTrue(out.getMessage().contains("csr_spmm"), out.getMessage());
        }
        try (Tensor idx = Tensor.of(new long[] {1, 6}, 2); Tensor g = Tensor.zeros(DType.FLOAT64, 2, 2)) {
            assertThrows(IndexOutOfBoundsException.class, () -> RowSparseGradient.coalesce(idx, g, 6));
        }
        try (Tensor table = Tensor.zeros(DType.FLOAT64, 6, 3); Tensor idx = Tensor.of(new long[] {1}, 1);
             Tensor g = Tensor.zeros(DType.FLOAT64, 1, 2); RowSparseGradient grad = RowSparseGradient.coalesce(idx, g, 6);
             RowSparseOptimizer opt = RowSparseOptimizer.sgd(0.1).build()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> opt.step(table, grad));
            assertTrue(e.getMessage().contains("does not match"), e.getMessage());
        }
    }
}
