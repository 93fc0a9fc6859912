package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertClose;
import static dev.cortado.testing.Reference.assertCloseChecked;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.autograd.GradCheck;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cpu.NativeCpu;
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
 * index_add (the backward of gather/embedding) against a float64 scatter-add written here, the
 * backward rules of gather, embedding and concat through GradCheck, determinism across thread
 * counts, and bad indices. Tolerances: float64 1e-12; float32 1e-5 rel + 1e-6 abs (sums of a few
 * terms in float32); bfloat16 1e-2 rel + 1e-2 abs and float16 2e-3 rel + 2e-3 abs (float32
 * accumulation, one rounding of base + sum; the absolute part covers sums that cancel).
 */
public class IndexingBackwardTest {
    static Tol tol(DType t) {
        return switch (t) {
            case FLOAT64 -> new Tol(1e-12, 1e-12);
            case FLOAT32 -> new Tol(1e-5, 1e-6);
            case BFLOAT16 -> new Tol(1e-2, 1e-2);
            default -> new Tol(2e-3, 2e-3);
        };
    }

    /** out = base; out[o, idx(j), i] += src[o, j, i] for base [outer, len, inner], src [outer, n, inner]. */
    public static double[] indexAddRef(double[] base, long outer, long len, long inner, long[] idx, double[] src) {
        double[] out = base.clone();
        int n = idx.length;
        for (int o = 0; o < outer; o++) {
            for (int j = 0; j < n; j++) {
                long p = idx[j] < 0 ? idx[j] + len : idx[j];
                for (int i = 0; i < inner; i++) {
                    out[(int) ((o * len + p) * inner + i)] += src[(int) ((o * n + j) * inner + i)];
                }
            }
        }
        return out;
    }

    @TestFactory
    List<DynamicTest> indexAddAgainstTheReference() {
        List<DynamicTest> tests = new ArrayList<>();
        // {outer, len, inner, n_index}
        long[][] geoms = {{3, 5, 7, 9}, {1, 1, 1, 1}, {2, 4, 3, 0}, {1, 50, 64, 200}, {4, 3, 1, 11}, {0, 3, 2, 4}};
        long seed = 40;
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
            for (long[] g : geoms) {
                for (boolean withBase : new boolean[] {true, false}) {
                    long s = seed++;
                    DType it = s % 2 == 0 ? DType.INT64 : DType.INT32;
                    tests.add(dynamicTest("index_add " + t + " " + Arrays.toString(g) + (withBase ? " base" : "") + " "
                            + it, () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(s);
                            long outer = g[0];
                            long len = g[1];
                            long inner = g[2];
                            int n = (int) g[3];
                            long[] idx = new long[n];
                            double[] idd = new double[n];
                            for (int j = 0; j < n; j++) {
                                idx[j] = r.nextInt((int) (2 * len)) - len; // negative ones count from the end; repeats
                                idd[j] = idx[j];
                            }
                            Tensor indices = Reference.make(idd, it, n);
                            Tensor src = Reference.make(Reference.uniform(r, (int) (outer * n * inner), -2, 2), t,
                                    outer, n, inner);
                            Tensor base = withBase ? Reference.make(Reference.uniform(r, (int) (outer * len * inner), -1, 1),
                                    t, outer, len, inner) : null;
                            double[] bv = base == null ? new double[(int) (outer * len * inner)] : base.toDoubleArray();
                            double[] want = indexAddRef(bv, outer, len, inner, idx, src.toDoubleArray());
                            Tensor out = withBase ? Indexing.indexAdd(base, 1, indices, src)
                                    : Indexing.indexAdd(len, 1, indices, src);
                            assertEquals(t, out.dtype());
                            assertArrayEquals(new long[] {outer, len, inner}, out.dims());
                            assertCloseChecked(want, out.toDoubleArray(), Reference.relativeTo(tol(t), want), "index_add");
                            if (base != null) {
                                assertClose(bv, base.toDoubleArray(), new Tol(0, 0), "base unchanged");
                            }
                            // non-contiguous source: a transposed copy transposed back
                            if (outer * n * inner > 0) {
                                Tensor st = src.transpose(0, 2).contiguous().transpose(0, 2);
                                Tensor out2 = withBase ? Indexing.indexAdd(base, 1, indices, st)
                                        : Indexing.indexAdd(len, 1, indices, st);
                                assertClose(out.toDoubleArray(), out2.toDoubleArray(), new Tol(0, 0), "strided source");
                            }
                        }
                    }));
                }
            }
        }
        return tests;
    }

    @Test
    void embeddingGradientIsDeterministicAcrossThreadCounts() {
        try (var scope = Scope.open()) {
            Random r = new Random(12);
            int vocab = 97;
            int dim = 65;
            int n = 5000;
            long[] idx = new long[n];
            for (int j = 0; j < n; j++) {
                idx[j] = r.nextInt(10) == 0 ? 0 : r.nextInt(vocab); // a frequent "padding" row
            }
            Tensor indices = Tensor.of(idx, 50, 100);
            Tensor src = Reference.make(Reference.uniform(r, n * dim, -1, 1), DType.FLOAT32, 50, 100, dim);
            int before = NativeCpu.ct_cpu_get_num_threads();
            try {
                CpuBackend.setThreads(1);
                float[] one = Indexing.indexAdd(vocab, 0, indices, src).toFloatArray();
                CpuBackend.setThreads(2);
                float[] two = Indexing.indexAdd(vocab, 0, indices, src).toFloatArray();
                assertArrayEquals(one, two, "bit-identical whatever the thread count");
            } finally {
                CpuBackend.setThreads(before);
            }
        }
    }

    @Test
    void gradientChecksThroughTheRules() {
        try (var scope = Scope.open()) {
            Random r = new Random(13);
            Tensor data = Reference.make(Reference.uniform(r, 4 * 5 * 3, -2, 2), DType.FLOAT64, 4, 5, 3).requiresGrad(true);
            Tensor idx1 = Tensor.of(new long[] {4, 0, -1, 2, 4, 4}, 2, 3); // repeats and a negative index
            Tensor idx0 = Tensor.of(new int[] {3, 3, 1}, 3);
            GradCheck.check("gather axis 1, 2-d indices", in -> Indexing.gather(in[0], idx1, 1), data);
            GradCheck.check("gather axis 0", in -> Indexing.gather(in[0], idx0, 0), data);
            GradCheck.check("gather axis -1", in -> Indexing.gather(in[0], Tensor.of(new long[] {2, 0, 2}, 3), -1), data);
            GradCheck.check("gather scalar index", in -> Indexing.gather(in[0], Tensor.of(new long[] {1}), 1), data);
            Tensor table = Reference.make(Reference.uniform(r, 7 * 4, -1, 1), DType.FLOAT64, 7, 4).requiresGrad(true);
            GradCheck.check("embedding", in -> Indexing.embedding(in[0], Tensor.of(new long[] {0, 6, 6, 2, 0, 0}, 2, 3)),
                    table);
            Tensor a = Reference.make(Reference.uniform(r, 6, -1, 1), DType.FLOAT64, 2, 3).requiresGrad(true);
            Tensor b = Reference.make(Reference.uniform(r, 4, -1, 1), DType.FLOAT64, 2, 2).requiresGrad(true);
            Tensor c = Reference.make(Reference.uniform(r, 2, -1, 1), DType.FLOAT64, 2, 1).requiresGrad(true);
            GradCheck.check("concat axis 1", in -> Indexing.concat(1, in[0], in[1], in[2]), a, b, c);
            Tensor d = Reference.make(Reference.uniform(r, 3, -1, 1), DType.FLOAT64, 1, 3).requiresGrad(true);
            GradCheck.check("concat axis 0", in -> Indexing.concat(0, in[0], in[1]), a, d);
            Tensor src = Reference.make(Reference.uniform(r, 3 * 6, -1, 1), DType.FLOAT64, 3, 6).requiresGrad(true);
            Tensor base = Reference.make(Reference.uniform(r, 5 * 6, -1, 1), DType.FLOAT64, 5, 6).requiresGrad(true);
            GradCheck.check("index_add", in -> Indexing.indexAdd(in[0], 0, Tensor.of(new long[] {4, 4, 0}, 3), in[1]),
                    base, src);
        }
    }

    @Test
    void badIndicesAndShapes() {
        try (var scope = Scope.open()) {
            Tensor src = Tensor.ones(DType.FLOAT32, 2, 3);
            IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class,
                    () -> Indexing.indexAdd(4, 0, Tensor.of(new long[] {1, 4}, 2), src));
            assertTrue(e.getMessage().startsWith("index_add(") && e.getMessage().contains("index[1]=4"), e.getMessage());
            IllegalArgumentException shape = assertThrows(IllegalArgumentException.class,
                    () -> Indexing.indexAdd(4, 0, Tensor.of(new long[] {1, 2, 3}, 3), src));
            assertTrue(shape.getMessage().startsWith("index_add: source"), shape.getMessage());
            IllegalArgumentException base = assertThrows(IllegalArgumentException.class,
                    () -> Indexing.indexAdd(Tensor.ones(DType.FLOAT32, 4, 2), 0, Tensor.of(new long[] {1, 2}, 2), src));
            assertTrue(base.getMessage().startsWith("index_add: base"), base.getMessage());
            IllegalArgumentException ints = assertThrows(IllegalArgumentException.class,
                    () -> Indexing.indexAdd(4, 0, Tensor.of(new long[] {1, 2}, 2), Tensor.of(new int[] {1, 2}, 2)));
            assertTrue(ints.getMessage().contains("'source'"), ints.getMessage());
        }
    }
}
