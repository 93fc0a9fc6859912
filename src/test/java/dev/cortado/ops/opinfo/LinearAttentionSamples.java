package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;

import dev.cortado.ops.LinearAttention.Options;
import dev.cortado.ops.SlabRef;
import dev.cortado.tensor.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * SLAB's linear attention (forward, backward) over [B, H, N, D]: odd sizes (D = 17 crosses the
 * 8- and 16-lane vector tails), size-1 everything, an empty batch, a transposed view of k, and a
 * larger eps. Reference: {@link SlabRef} (the quadratic float64 form). float32 1e-4 relative to the
 * largest value (sums of N D products and a division); CUDA the same.
 */
final class LinearAttentionSamples {
    private LinearAttentionSamples() {
    }

    private static final String F = "linear attention";

    /** b, h, n, d, eps, k a view. */
    private record Geo(int b, int h, int n, int d, double eps, boolean view) {
        String label() {
            return "B" + b + " H" + h + " N" + n + " D" + d + (eps != 1e-6 ? " eps " + eps : "") + (view ? ", k a view" : "");
        }
    }

    private static final List<Geo> GEOS = List.of(new Geo(2, 3, 7, 5, 1e-6, false), new Geo(1, 2, 9, 17, 1e-6, true),
            new Geo(1, 1, 1, 1, 1e-6, false), new Geo(0, 2, 3, 4, 1e-6, false), new Geo(2, 1, 6, 3, 0.25, false));

    private static List<Sample> samples(Random r, DType t, boolean backward) {
        List<Sample> out = new ArrayList<>();
        for (Geo g : GEOS) {
            Arg q = u(r, t, g.b(), g.h(), g.n(), g.d());
            Arg k = u(r, t, g.b(), g.h(), g.n(), g.d());
            Arg v = u(r, t, g.b(), g.h(), g.n(), g.d());
            if (g.view()) {
                k = k.view();
            }
            Options o = new Options(g.eps());
            out.add(backward ? new Sample(g.label(), o, u(r, t, g.b(), g.h(), g.n(), g.d()), q, k, v)
                    : new Sample(g.label(), o, q, k, v));
        }
        return out;
    }

    private static double[][] ref(Sample s, double[] q, double[] k, double[] v, double[] dO, int input) {
        long[] d = s.dims(input);
        return SlabRef.compute(q, k, v, dO, (int) d[0], (int) d[1], (int) d[2], (int) d[3], ((Options) s.attrs()).eps());
    }

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("slab_attention", F, "SLAB's linear attention: relu(q)·(relu(k)ᵀv) / (relu(q)·relu(k)ᵀ1 + eps), "
                            + "O(N·D²), no N×N scores")
                    .samples((r, t) -> samples(r, t, false))
                    .reference((s, in) -> ref(s, in[0], in[1], in[2], null, 0))
                    .floats(1e-4).cuda(DType.FLOAT64, 1e-9, 1e-9).cuda(DType.FLOAT32, 1e-4, 1e-4).gradCheck().build(),
            OpInfo.of("slab_attention_backward", F, "{dq, dk, dv} of slab_attention from do, q, k, v")
                    .samples((r, t) -> samples(r, t, true))
                    .reference((s, in) -> {
                        double[][] all = ref(s, in[1], in[2], in[3], in[0], 1);
                        return new double[][] {all[1], all[2], all[3]};
                    })
                    .floats(1e-4).cuda(DType.FLOAT64, 1e-9, 1e-9).cuda(DType.FLOAT32, 1e-4, 1e-4)
                    .coveredBy("slab_attention").build());
}
