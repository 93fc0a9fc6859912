package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertCloseChecked;
import static dev.cortado.testing.Reference.relativeTo;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.Cortado;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The mixture-of-experts family beyond the OpInfo samples: grouped GEMMs at sizes that split into
 * several (expert, 256-row, 512-column) tasks, with 1 and 2 threads; the routing order spelled out
 * by hand; and the errors for mismatched operands and bad indices (from Java's shape rules and
 * from the native checks). References: {@link MoeRef} (float64). Tolerances: float32 1e-5 and
 * float64 1e-12, relative to the largest reference value (sums of up to 600 products).
 */
class MixtureOfExpertsOpsTest {
    private static final Tol F32 = new Tol(1e-5, 1e-5);
    private static final Tol F64 = new Tol(1e-12, 1e-12);

    private static double[] stored(double[] v, DType t) {
        double[] o = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            o[i] = Reference.roundTo(v[i], t);
        }
        return o;
    }

    /**
     * Groups of 300 (two row tiles), 0, 1 and 257 rows + 3 padding rows, K = 45, N = 530 (two
     * column tiles): forward, dx and dw against the float64 loops, float32 and float64, 1 and 2
     * threads. Then groups of 300, 0 and 257 rows with K = 512: every group has at least 2^26
     * multiply-adds, so with 2 threads each group is one BLAS call threaded by OpenBLAS.
     */
    @ParameterizedTest
    @ValueSource(ints = {1, 2})
    void groupedMatmulAcrossTiles(int threads) {
        int saved = Cortado.threads();
        Cortado.setThreads(threads);
        try {
            Random r = new Random(5 + threads);
            groupedAgainstReference(r, threads, new long[] {300, 0, 1, 257}, 561, 45, 530);
            groupedAgainstReference(r, threads, new long[] {300, 0, 257}, 560, 512, 530);
        } finally {
            Cortado.setThreads(saved);
        }
    }

    private static void groupedAgainstReference(Random r, int threads, long[] counts, int rows, int k, int n) {
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
            Tol tol = t == DType.FLOAT32 ? F32 : F64;
            double[] x = stored(Reference.uniform(r, rows * k, -1, 1), t);
            double[] w = stored(Reference.uniform(r, counts.length * k * n, -1, 1), t);
            double[] dy = stored(Reference.uniform(r, rows * n, -1, 1), t);
            double[] c = new double[counts.length];
            for (int e = 0; e < c.length; e++) {
                c[e] = counts[e];
            }
            try (Scope s = Scope.open()) {
                Tensor xt = Reference.make(x, t, rows, k);
                Tensor wt = Reference.make(w, t, counts.length, k, n);
                Tensor ct = Tensor.of(counts, counts.length);
                double[] want = MoeRef.grouped(x, w, c, rows, k, n, false);
                assertCloseChecked(want, Reference.values(MixtureOfExperts.groupedMatmul(xt, wt, ct)),
                        relativeTo(tol, want), "grouped_matmul " + t + " k=" + k + " x" + threads);
                Tensor[] d = MixtureOfExperts.GROUPED_MATMUL_BACKWARD_OP.callMulti(null, xt, wt, ct,
                        Reference.make(dy, t, rows, n));
                double[] dx = MoeRef.grouped(dy, w, c, rows, n, k, true);
                double[] dw = MoeRef.groupedWeightGrad(x, dy, c, k, n);
                assertCloseChecked(dx, Reference.values(d[0]), relativeTo(tol, dx), "grouped dx " + t + " x" + threads);
                assertCloseChecked(dw, Reference.values(d[1]), relativeTo(tol, dw), "grouped dw " + t + " x" + threads);
            }
        }
    }

    /**
     * 4 tokens, top-2 of 2 experts (ids per token: [0 1], [0 1], [1 0], [0 1]), capacity 2: first
     * choices first, by position: expert 0 keeps tokens 0 and 1 (token 3's first choice is
     * dropped), expert 1 keeps token 2's first choice and then token 0's second; the rest is dropped.
     */
    @Test
    void routingDropsInPriorityOrder() {
        try (Scope s = Scope.open()) {
            Tensor ids = Tensor.of(new long[] {0, 1, 0, 1, 1, 0, 0, 1}, 4, 2);
            Tensor[] route = MixtureOfExperts.route(ids, 2, 2);
            assertArrayEquals(new long[] {0, 3, 1, -1, 2, -1, -1, -1}, route[0].toLongArray());
            assertArrayEquals(new long[] {2, 2}, route[1].toLongArray());
            assertArrayEquals(new long[] {4, 4}, route[2].toLongArray());
        }
    }

    /** Dispatch then combine with unit gates and no dropping is the identity times k. */
    @Test
    void dispatchThenGatherSumsTheChoices() {
        Random r = new Random(3);
        try (Scope s = Scope.open()) {
            double[] x = Reference.uniform(r, 6 * 5, -1, 1);
            Tensor xt = Reference.make(x, DType.FLOAT64, 6, 5);
            Tensor ids = Tensor.of(new long[] {2, 0, 1, 2, 0, 1, 2, 1, 0, 2, 1, 0}, 6, 2);
            Tensor slots = MixtureOfExperts.route(ids, 3, 12)[0];
            Tensor back = MixtureOfExperts.GATHER_OP.call(null, MixtureOfExperts.dispatch(xt, slots, 12), slots);
            double[] want = new double[x.length];
            for (int i = 0; i < x.length; i++) {
                want[i] = 2 * x[i];
            }
            assertCloseChecked(want, Reference.values(back), relativeTo(F64, want), "gather(dispatch(x))");
        }
    }

    @Test
    void badInputIsRejectedWithTheOpAndShapes() {
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.zeros(DType.FLOAT32, 6, 4);
            Tensor w = Tensor.zeros(DType.FLOAT32, 3, 4, 5);
            // expert count mismatch between w and counts
            String m = assertThrows(IllegalArgumentException.class,
                    () -> MixtureOfExperts.groupedMatmul(x, w, Tensor.of(new long[] {1, 2}, 2))).getMessage();
            assertTrue(m.contains("grouped_matmul") && m.contains("counts") && m.contains("[2]") && m.contains("[3, 4, 5]"), m);
            // K mismatch
            m = assertThrows(IllegalArgumentException.class,
                    () -> MixtureOfExperts.groupedMatmul(x, Tensor.zeros(DType.FLOAT32, 3, 5, 5),
                            Tensor.of(new long[] {1, 2, 3}, 3))).getMessage();
            assertTrue(m.contains("grouped_matmul") && m.contains("w"), m);
            // counts past the buffer: the native check
            m = assertThrows(RuntimeException.class,
                    () -> MixtureOfExperts.groupedMatmul(x, w, Tensor.of(new long[] {4, 2, 1}, 3))).getMessage();
            assertTrue(m.contains("counts[2]") && m.contains("grouped_matmul"), m);
            m = assertThrows(RuntimeException.class,
                    () -> MixtureOfExperts.groupedMatmul(x, w, Tensor.of(new long[] {-1, 2, 1}, 3))).getMessage();
            assertTrue(m.contains("counts[0]"), m);
            // k > experts, capacity < 1, expert id out of range
            Tensor ids = Tensor.of(new long[] {0, 1, 2, 1, 0, 2}, 2, 3);
            m = assertThrows(IllegalArgumentException.class, () -> MixtureOfExperts.route(ids, 2, 4)).getMessage();
            assertTrue(m.contains("moe_route") && m.contains("k = 3") && m.contains("2 experts"), m);
            m = assertThrows(IllegalArgumentException.class, () -> MixtureOfExperts.route(ids, 3, 0)).getMessage();
            assertTrue(m.contains("moe_route") && m.contains("capacity = 0"), m);
            Tensor outOfRange = Tensor.of(new long[] {0, 1, 3, 1}, 2, 2);
            m = assertThrows(RuntimeException.class, () -> MixtureOfExperts.route(outOfRange, 3, 4)).getMessage();
            assertTrue(m.contains("expert_ids[2] = 3") && m.contains("moe_route"), m);
            // slots out of range and naming a row twice
            Tensor slotsBad = Tensor.of(new long[] {0, 1, 2, 3, 4, 12, 5, 6, 7, 8, 9, 10}, 6, 2);
            m = assertThrows(RuntimeException.class, () -> MixtureOfExperts.dispatch(x, slotsBad, 12)).getMessage();
            assertTrue(m.contains("slots[5] = 12") && m.contains("moe_dispatch"), m);
            Tensor slotsTwice = Tensor.of(new long[] {0, 1, 2, 3, 4, 1, 5, 6, 7, 8, 9, 10}, 6, 2);
            m = assertThrows(RuntimeException.class, () -> MixtureOfExperts.dispatch(x, slotsTwice, 12)).getMessage();
            assertTrue(m.contains("row 1"), m);
            // slots for another number of tokens; gates of another shape
            m = assertThrows(IllegalArgumentException.class,
                    () -> MixtureOfExperts.dispatch(x, Tensor.of(new long[] {0, 1}, 1, 2), 4)).getMessage();
            assertTrue(m.contains("moe_dispatch") && m.contains("tokens = 1"), m);
            Tensor slots = Tensor.of(new long[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 6, 2);
            m = assertThrows(IllegalArgumentException.class,
                    () -> MixtureOfExperts.combine(Tensor.zeros(DType.FLOAT32, 12, 4), slots, Tensor.zeros(DType.FLOAT32, 6, 3)))
                    .getMessage();
            assertTrue(m.contains("moe_combine") && m.contains("gates"), m);
            // bfloat16 is not a grouped-GEMM dtype
            m = assertThrows(IllegalArgumentException.class,
                    () -> MixtureOfExperts.groupedMatmul(x.to(DType.BFLOAT16), w.to(DType.BFLOAT16),
                            Tensor.of(new long[] {1, 2, 3}, 3))).getMessage();
            assertTrue(m.contains("grouped_matmul") && m.contains("bfloat16"), m);
        }
    }
}
