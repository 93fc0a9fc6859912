package dev.cortado.sparse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.sparse.MagnitudePruning.Schedule;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * Magnitude pruning: the cubic schedule's values, per-layer and global selection against a Java
 * sort of the magnitudes, and gradual pruning over simulated optimizer steps (pruned weights stay
 * zero, the sparsity never decreases and ends at the target).
 */
class MagnitudePruningTest {

    /** Keep-mask of the k largest |x| (ties to the lower position). */
    private static boolean[] keepLargest(double[] x, int k) {
        Integer[] order = IntStream.range(0, x.length).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingDouble((Integer i) -> -Math.abs(x[i])).thenComparing(i -> i));
        boolean[] keep = new boolean[x.length];
        for (int i = 0; i < k; i++) {
            keep[order[i]] = true;
        }
        return keep;
    }

    private static double[] masked(double[] x, boolean[] keep, int from) {
        double[] o = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            o[i] = keep[from + i] ? x[i] : 0;
        }
        return o;
    }

    @Test
    void scheduleIsCubic() {
        Schedule s = new Schedule(0.1, 0.9, 100, 300, 20);
        assertEquals(0, s.sparsityAt(99));
        assertEquals(0.1, s.sparsityAt(100), 1e-15);
        assertEquals(0.9 + (0.1 - 0.9) * 0.125, s.sparsityAt(200), 1e-15); // half way: (1 - 1/2)^3
        assertEquals(0.9, s.sparsityAt(300), 1e-15);
        assertEquals(0.9, s.sparsityAt(10_000), 1e-15);
        assertTrue(s.prunesAt(100) && s.prunesAt(120) && s.prunesAt(300));
        assertFalse(s.prunesAt(110) || s.prunesAt(320) || s.prunesAt(80));
        assertThrows(IllegalArgumentException.class, () -> new Schedule(0.5, 0.4, 0, 10, 1));
        assertThrows(IllegalArgumentException.class, () -> new Schedule(0, 1.0, 0, 10, 1));
    }

    @Test
    void perLayerPrunesEachTensorToTheSparsity() {
        Random r = new Random(1);
        double[] a = Reference.uniform(r, 40, -1, 1);
        double[] b = Reference.uniform(r, 30, -0.01, 0.01);
        try (Scope s = Scope.open()) {
            Tensor wa = Tensor.of(a, 5, 8);
            Tensor wb = Tensor.of(b, 30);
            try (MagnitudePruning p = MagnitudePruning.builder(List.of(wa, wb)).build()) {
                p.pruneTo(0.75);
                assertArrayEquals(masked(a, keepLargest(a, 10), 0), wa.toDoubleArray(), 0.0); // -0 == 0
                assertArrayEquals(masked(b, keepLargest(b, 7), 0), wb.toDoubleArray(), 0.0); // round(0.75 * 30) = 23 pruned
                assertEquals((30 + 23) / 70.0, p.measuredSparsity(), 1e-12);
            }
        }
    }

    @Test
    void globalUsesOneThresholdOverAllTensors() {
        Random r = new Random(2);
        double[] a = Reference.uniform(r, 40, -1, 1);
        double[] b = Reference.uniform(r, 60, -0.1, 0.1); // small weights: pruned first
        double[] all = new double[100];
        System.arraycopy(a, 0, all, 0, 40);
        System.arraycopy(b, 0, all, 40, 60);
        boolean[] keep = keepLargest(all, 50);
        try (Scope s = Scope.open()) {
            Tensor wa = Tensor.of(a, 40);
            Tensor wb = Tensor.of(b, 6, 10);
            try (MagnitudePruning p = MagnitudePruning.builder(List.of(wa, wb)).scope(MagnitudePruning.Scope.GLOBAL).build()) {
                p.pruneTo(0.5);
                assertArrayEquals(masked(a, keep, 0), wa.toDoubleArray(), 0.0);
                assertArrayEquals(masked(b, keep, 40), wb.toDoubleArray(), 0.0);
                long zerosA = Arrays.stream(wa.toDoubleArray()).filter(v -> v == 0).count();
                long zerosB = Arrays.stream(wb.toDoubleArray()).filter(v -> v == 0).count();
                assertTrue(zerosA + zerosB == 50 && zerosB >= 45, "global pruning takes the small layer first: " + zerosA + ", " + zerosB);
            }
        }
    }

    @Test
    void gradualPruningKeepsPrunedWeightsAtZero() {
        Random r = new Random(3);
        try (Scope s = Scope.open()) {
            Tensor w = Tensor.of(Reference.uniform(r, 200, -1, 1), 10, 20);
            Schedule sched = new Schedule(0.0, 0.8, 0, 10, 2);
            try (MagnitudePruning p = MagnitudePruning.builder(List.of(w)).schedule(sched).build()) {
                double last = 0;
                for (long step = 0; step <= 12; step++) {
                    // an "optimizer step": every weight moves, the pruned ones too
                    double[] v = w.toDoubleArray();
                    for (int i = 0; i < v.length; i++) {
                        v[i] += 0.01 * (r.nextDouble() - 0.5);
                    }
                    try (Tensor moved = Tensor.of(v, 10, 20)) {
                        w.copyFrom(moved);
                    }
                    double sp = p.step(step);
                    assertTrue(sp >= last, "the sparsity never decreases");
                    last = sp;
                    assertEquals(Math.round(sp * 200) / 200.0, p.measuredSparsity(), 1e-12, "step " + step);
                }
                assertEquals(0.8, p.measuredSparsity(), 1e-12);
                double[] m = p.masks().get(0).toDoubleArray();
                double[] v = w.toDoubleArray();
                for (int i = 0; i < v.length; i++) {
                    assertTrue(m[i] != 0 || v[i] == 0, "a pruned weight is zero");
                }
            }
        }
    }

    @Test
    void nmPruningKeepsTheLargestTwoOfEveryFour() {
        Random r = new Random(4);
        double[] x = Reference.uniform(r, 3 * 8, -1, 1);
        double[][] ref = dev.cortado.ops.SparseRef.nmCompress(x, 3, 8, 2, 4);
        double[] want = dev.cortado.ops.SparseRef.nmDense(ref[0], ref[1], 3, 8, 2, 4);
        try (Scope s = Scope.open()) {
            Tensor w = Tensor.of(x, 3, 8);
            try (MagnitudePruning p = MagnitudePruning.builder(List.of(w)).nm(2, 4).build()) {
                assertEquals(0.5, p.step(0), 0);
                assertArrayEquals(want, w.toDoubleArray(), 0.0);
                assertEquals(0.5, p.measuredSparsity(), 0);
                assertThrows(IllegalStateException.class, () -> p.pruneTo(0.3));
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> MagnitudePruning.builder(List.of(Tensor.of(new double[6], 1, 6))).nm(2, 4).build());
            assertTrue(e.getMessage().contains("MagnitudePruning: 2:4 needs a weight [out, ...] of rank >= 2"), e.getMessage());
        }
    }
}
