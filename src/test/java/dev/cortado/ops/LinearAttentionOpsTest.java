package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertCloseChecked;
import static dev.cortado.testing.Reference.relativeTo;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.Cortado;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

/**
 * SLAB's linear attention beyond the OpInfo samples: q, k, v as permuted views of [B, N, H, D]
 * projections (the BSHD layout read in place through the kernels' strides), a long sequence and
 * head dims that fill the AVX2 and AVX-512 lanes (D = 32, 64) and leave tails (D = 40), on 1 and
 * 2 threads and with AVX-512 switched off (the AVX2 path); forward and the backward against
 * {@link SlabRef} (float64). Tolerances: float32 1e-4, float64 1e-11, relative to the largest
 * reference value. Bad input: rank, dtype, shape and eps errors name the op and the operands.
 */
class LinearAttentionOpsTest {
    private static final Tol F32 = new Tol(1e-4, 1e-4);
    private static final Tol F64 = new Tol(1e-11, 1e-11);

    private static double[] stored(double[] v, DType t) {
        double[] o = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            o[i] = Reference.roundTo(v[i], t);
        }
        return o;
    }

    /** [B, N, H, D] row-major values as logical [B, H, N, D]. */
    private static double[] bhnd(double[] bnhd, int b, int n, int h, int d) {
        double[] o = new double[bnhd.length];
        for (int i = 0; i < b; i++) {
            for (int t = 0; t < n; t++) {
                for (int j = 0; j < h; j++) {
                    System.arraycopy(bnhd, ((i * n + t) * h + j) * d, o, ((i * h + j) * n + t) * d, d);
                }
            }
        }
        return o;
    }

    @ParameterizedTest
    @CsvSource({"1, true, 2, 3, 129, 32", "2, true, 1, 2, 77, 64", "2, false, 2, 2, 65, 40", "1, false, 1, 2, 300, 17"})
    void bshdViewsAgainstTheReference(int threads, boolean avx512, int b, int h, int n, int d) {
        int saved = Cortado.threads();
        Cortado.setThreads(threads);
        CpuBackend.setAvx512Enabled(avx512);
        try (Scope scope = Scope.open()) {
            Random r = new Random(11 + n);
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                int size = b * n * h * d;
                double[] q = stored(Reference.uniform(r, size, -1, 1), t);
                double[] k = stored(Reference.uniform(r, size, -1, 1), t);
                double[] v = stored(Reference.uniform(r, size, -1, 1), t);
                double[] dO = stored(Reference.uniform(r, size, -1, 1), t);
                Tensor qt = Reference.make(q, t, b, n, h, d).permute(0, 2, 1, 3);
                Tensor kt = Reference.make(k, t, b, n, h, d).permute(0, 2, 1, 3);
                Tensor vt = Reference.make(v, t, b, n, h, d).permute(0, 2, 1, 3);
                assertTrue(!qt.isContiguous(), "the test must exercise the strided path");
                Tensor o = LinearAttention.slab(qt, kt, vt);
                Tensor[] g = LinearAttention.SLAB_BACKWARD_OP.callMulti(new LinearAttention.Options(1e-6),
                        Reference.make(bhnd(dO, b, n, h, d), t, b, h, n, d), qt, kt, vt);
                double[][] want = SlabRef.compute(bhnd(q, b, n, h, d), bhnd(k, b, n, h, d), bhnd(v, b, n, h, d),
                        bhnd(dO, b, n, h, d), b, h, n, d, 1e-6);
                Tol tol = t == DType.FLOAT32 ? F32 : F64;
                String what = t + " B" + b + " H" + h + " N" + n + " D" + d + ", " + threads + " threads"
                        + (avx512 ? "" : ", AVX2");
                assertCloseChecked(want[0], Reference.values(o), relativeTo(tol, want[0]), "o " + what);
                String[] names = {"dq", "dk", "dv"};
                for (int i = 0; i < 3; i++) {
                    assertCloseChecked(want[i + 1], Reference.values(g[i]), relativeTo(tol, want[i + 1]),
                            names[i] + " " + what);
                }
            }
        } finally {
            Cortado.setThreads(saved);
            CpuBackend.setAvx512Enabled(true);
        }
    }

    @Test
    void badInputIsAClearError() {
        try (Scope scope = Scope.open()) {
            Tensor q = Tensor.zeros(DType.FLOAT32, 1, 2, 3, 4);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> LinearAttention.slab(q, q, Tensor.zeros(DType.FLOAT32, 1, 2, 5, 4)));
            assertTrue(e.getMessage().contains("slab_attention") && e.getMessage().contains("v ")
                    && e.getMessage().contains("[1, 2, 5, 4]"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> LinearAttention.slab(q, Tensor.zeros(DType.FLOAT64, 1, 2, 3, 4), q));
            assertTrue(e.getMessage().contains("slab_attention") && e.getMessage().contains("float64"), e.getMessage());
            Tensor q3 = Tensor.zeros(DType.FLOAT32, 2, 3, 4);
            e = assertThrows(IllegalArgumentException.class, () -> LinearAttention.slab(q3, q3, q3));
            assertTrue(e.getMessage().contains("[B, H, N, D]"), e.getMessage());
            Tensor qi = Tensor.zeros(DType.INT32, 1, 2, 3, 4);
            e = assertThrows(IllegalArgumentException.class, () -> LinearAttention.slab(qi, qi, qi));
            assertTrue(e.getMessage().contains("slab_attention"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> LinearAttention.slab(q, q, q, 0));
            assertTrue(e.getMessage().contains("eps"), e.getMessage());
        }
    }
}
