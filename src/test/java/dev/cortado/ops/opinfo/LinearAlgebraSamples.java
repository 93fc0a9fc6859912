package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;

import dev.cortado.ops.LinearAlgebra.GemmAttrs;
import dev.cortado.ops.MatmulOpsTest;
import dev.cortado.testing.Reference;
import java.util.List;

/**
 * matmul (NumPy semantics) and gemm (ONNX). Reference: MatmulOpsTest.matmulRef. Tolerances are
 * relative to the output's magnitude: float32 accumulation over k <= 9 (1e-5), 16-bit inputs
 * accumulate in float32 and round once (bfloat16 1e-2, float16 2e-3).
 */
final class LinearAlgebraSamples {
    private LinearAlgebraSamples() {
    }

    private static final String F = "linear algebra";

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("matmul", F, "matrix product with NumPy semantics (1-d vectors, broadcast batches)")
                    .samples((r, t) -> List.of(
                            new Sample("odd", null, u(r, t, 7, 5), u(r, t, 5, 3)),
                            new Sample("broadcast batch, transposed view", null, u(r, t, 2, 1, 3, 4), u(r, t, 3, 4, 5).view()),
                            new Sample("vector @ matrix", null, u(r, t, 6), u(r, t, 6, 1)),
                            new Sample("size-1 k", null, u(r, t, 4, 1), u(r, t, 1, 3)),
                            new Sample("empty m", null, u(r, t, 0, 3), u(r, t, 3, 2)),
                            new Sample("empty k", null, u(r, t, 2, 0), u(r, t, 0, 3)).noGradCheck()))
                    .reference((s, in) -> new double[][] {MatmulOpsTest.matmulRef(in[0], s.dims(0), in[1], s.dims(1)).values()})
                    .floats(1e-5).halves(1e-2, 3e-3).gradCheck().build(),
            OpInfo.of("gemm", F, "alpha·op(A)·op(B) + beta·C (ONNX Gemm, C broadcast)")
                    .samples((r, t) -> List.of(
                            new Sample("transA, C [n]", new GemmAttrs(0.75, -1.5, true, false), u(r, t, 5, 7), u(r, t, 5, 3),
                                    u(r, t, 3)),
                            new Sample("transB, C [m, 1]", new GemmAttrs(1.25, 0.5, false, true), u(r, t, 4, 6), u(r, t, 3, 6),
                                    u(r, t, 4, 1)),
                            new Sample("no C, a view", new GemmAttrs(1, 0, false, false), u(r, t, 3, 4).view(), u(r, t, 4, 2))))
                    .reference((s, in) -> {
                        GemmAttrs g = (GemmAttrs) s.attrs();
                        double[] a = g.transA() ? transpose(in[0], s.dims(0)) : in[0];
                        long[] ad = g.transA() ? new long[] {s.dims(0)[1], s.dims(0)[0]} : s.dims(0);
                        double[] b = g.transB() ? transpose(in[1], s.dims(1)) : in[1];
                        long[] bd = g.transB() ? new long[] {s.dims(1)[1], s.dims(1)[0]} : s.dims(1);
                        double[] y = MatmulOpsTest.matmulRef(a, ad, b, bd).values();
                        long[] od = {ad[0], bd[1]};
                        double[] c = in.length > 2 && in[2] != null ? Reference.broadcast(in[2], s.dims(2), od) : null;
                        for (int i = 0; i < y.length; i++) {
                            y[i] = g.alpha() * y[i] + (c == null ? 0 : g.beta() * c[i]);
                        }
                        return new double[][] {y};
                    })
                    .floats(1e-5).halves(1e-2, 3e-3).gradCheck().build());

    static double[] transpose(double[] x, long[] d) {
        int m = (int) d[0];
        int n = (int) d[1];
        double[] y = new double[x.length];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                y[j * m + i] = x[i * n + j];
            }
        }
        return y;
    }
}
