package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;

import dev.cortado.ops.MixtureOfExperts.Route;
import dev.cortado.ops.MixtureOfExperts.Rows;
import dev.cortado.ops.MoeRef;
import dev.cortado.tensor.DType;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

/**
 * The mixture-of-experts family: routing with a capacity, dispatch / gather / combine between
 * token order and the expert-major buffer, and the grouped GEMM. Routings: 7 tokens with top-2 of
 * 4 experts at a capacity that drops choices (and buffer padding rows past the kept ones), top-1
 * of a single expert, no dropping, one token, no tokens; grouped GEMMs with odd sizes, an expert
 * without rows, one expert, padding rows, x as a transposed view, K = 1 and no rows at all.
 * Tolerances: float32 1e-5 and bfloat16 1e-2 (8-bit significand, inputs and outputs rounded)
 * relative to the largest reference value; float64 1e-10; routing exact.
 */
final class MoeSamples {
    private MoeSamples() {
    }

    private static final String F = "moe";
    private static final double F32 = 1e-5;
    private static final double BF16 = 1e-2;

    /** A routing: sizes, capacity, the buffer rows (>= kept rows), and its expert ids, slots and counts. */
    private record Routing(String label, int tokens, int k, int experts, long capacity, int rows, long[] ids, long[] slots,
                           long[] counts) {
        static Routing of(Random r, String label, int tokens, int k, int experts, long capacity, int padding) {
            long[] ids = new long[tokens * k];
            List<Long> all = new ArrayList<>();
            for (long e = 0; e < experts; e++) {
                all.add(e);
            }
            for (int t = 0; t < tokens; t++) {
                Collections.shuffle(all, r);
                for (int j = 0; j < k; j++) {
                    ids[t * k + j] = all.get(j);
                }
            }
            long[][] route = MoeRef.route(ids, tokens, k, experts, capacity);
            return new Routing(label, tokens, k, experts, capacity, tokens * k + padding, ids, route[0], route[1]);
        }

        Arg slotArg() {
            return Arg.index(slots, tokens, k);
        }
    }

    private static List<Routing> routings(Random r) {
        return List.of(Routing.of(r, "7 tokens, top-2 of 4, capacity 3 (drops), 2 padding rows", 7, 2, 4, 3, 2),
                Routing.of(r, "5 tokens, top-1 of 1", 5, 1, 1, 5, 0),
                Routing.of(r, "6 tokens, top-3 of 5, no dropping", 6, 3, 5, 18, 0),
                Routing.of(r, "one token, top-2 of 3", 1, 2, 3, 1, 1),
                Routing.of(r, "no tokens", 0, 2, 3, 1, 2));
    }

    private static final int[] WIDTHS = {5, 1, 9, 3, 4};

    private interface RoutingSample {
        Sample make(Routing g, int d, Random r, DType t);
    }

    private static List<Sample> perRouting(Random r, DType t, RoutingSample s) {
        List<Sample> out = new ArrayList<>();
        List<Routing> gs = routings(r);
        for (int i = 0; i < gs.size(); i++) {
            out.add(s.make(gs.get(i), WIDTHS[i], r, t));
        }
        return out;
    }

    private static Arg tokens(Random r, DType t, Routing g, int d, boolean view) {
        Arg a = u(r, t, g.tokens(), d);
        return view ? a.view() : a;
    }

    /** (label, experts, counts, padding rows, K, N, x a view). */
    private record Geo(String label, long[] counts, int padding, int k, int n, boolean view) {
        int rows() {
            int s = padding;
            for (long c : counts) {
                s += (int) c;
            }
            return s;
        }
    }

    private static final List<Geo> GEOS = List.of(
            new Geo("3 experts (4, 0, 5 rows) + 2 padding, 7 -> 5", new long[] {4, 0, 5}, 2, 7, 5, false),
            new Geo("one expert of 6 rows, 3 -> 9, x a view", new long[] {6}, 0, 3, 9, true),
            new Geo("4 experts (1, 3, 0, 2), K = 1", new long[] {1, 3, 0, 2}, 0, 1, 4, false),
            new Geo("2 experts without rows, 3 padding", new long[] {0, 0}, 3, 5, 2, false));

    private static List<Sample> grouped(Random r, DType t, boolean backward) {
        List<Sample> out = new ArrayList<>();
        for (Geo g : GEOS) {
            Arg x = u(r, t, g.rows(), g.k());
            Arg w = u(r, t, g.counts().length, g.k(), g.n());
            Arg c = Arg.index(g.counts(), g.counts().length);
            out.add(backward ? new Sample(g.label(), null, g.view() ? x.view() : x, w, c, u(r, t, g.rows(), g.n()))
                    : new Sample(g.label(), null, g.view() ? x.view() : x, w, c));
        }
        return out;
    }

    private static int width(Sample s, int input) {
        return (int) s.dims(input)[1];
    }

    private static OpInfo.Builder floats(OpInfo.Builder b) {
        return b.floats(F32).dtype(DType.BFLOAT16, BF16, BF16);
    }

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("moe_route", F, "top-k expert ids to buffer rows with a capacity per expert (first choices "
                            + "first, by position; -1 = dropped), kept counts and load")
                    .dtype(DType.FLOAT64, 0, 0)
                    .samples((r, t) -> {
                        List<Sample> out = new ArrayList<>();
                        for (Routing g : routings(r)) {
                            out.add(new Sample(g.label(), new Route(g.experts(), g.capacity()),
                                    Arg.index(g.ids(), g.tokens(), g.k())));
                        }
                        return out;
                    })
                    .reference((s, in) -> {
                        Route a = (Route) s.attrs();
                        long[] dims = s.dims(0);
                        long[] ids = new long[in[0].length];
                        for (int i = 0; i < ids.length; i++) {
                            ids[i] = (long) in[0][i];
                        }
                        long[][] r = MoeRef.route(ids, (int) dims[0], (int) dims[1], a.experts(), a.capacity());
                        return new double[][] {doubles(r[0]), doubles(r[1]), doubles(r[2])};
                    })
                    .notDifferentiable("integer routing; gradients reach the router through the gates").build(),
            floats(OpInfo.of("moe_dispatch", F, "tokens [T, d] into the expert-major buffer: row slots[t, j] = x[t], zeros elsewhere")
                    .samples((r, t) -> perRouting(r, t, (g, d, rr, tt) -> new Sample(g.label(), new Rows(g.rows()),
                            tokens(rr, tt, g, d, d > 1), g.slotArg())))
                    .reference((s, in) -> new double[][] {MoeRef.dispatch(in[0], in[1], null, (int) s.dims(1)[1],
                            width(s, 0), (int) ((Rows) s.attrs()).rows())}))
                    .gradCheck().build(),
            floats(OpInfo.of("moe_gather", F, "the buffer back to tokens: out[t] = sum of its kept rows (dispatch's gradient)")
                    .samples((r, t) -> perRouting(r, t, (g, d, rr, tt) -> new Sample(g.label(), null,
                            u(rr, tt, g.rows(), d), g.slotArg())))
                    .reference((s, in) -> new double[][] {MoeRef.combine(in[0], in[1], null, (int) s.dims(1)[1],
                            width(s, 0))}))
                    .gradCheck().build(),
            floats(OpInfo.of("moe_combine", F, "expert outputs back to tokens weighted by the gates: out[t] = Σ_j g[t, j]·y[slots[t, j]]")
                    .samples((r, t) -> perRouting(r, t, (g, d, rr, tt) -> new Sample(g.label(), null,
                            u(rr, tt, g.rows(), d), g.slotArg(), u(rr, tt, g.tokens(), g.k()))))
                    .reference((s, in) -> new double[][] {MoeRef.combine(in[0], in[1], in[2], (int) s.dims(1)[1],
                            width(s, 0))}))
                    .gradCheck().build(),
            floats(OpInfo.of("moe_combine_backward", F, "both gradients of moe_combine: dy (gate-weighted dispatch) and dgates")
                    .samples((r, t) -> perRouting(r, t, (g, d, rr, tt) -> new Sample(g.label(), null,
                            tokens(rr, tt, g, d, false), u(rr, tt, g.rows(), d), g.slotArg(), u(rr, tt, g.tokens(), g.k()))))
                    .reference((s, in) -> {
                        int k = (int) s.dims(2)[1];
                        int d = width(s, 1);
                        return new double[][] {MoeRef.dispatch(in[0], in[2], in[3], k, d, (int) s.dims(1)[0]),
                            MoeRef.gateGrad(in[0], in[1], in[2], k, d)};
                    }))
                    .coveredBy("moe_combine").build(),
            OpInfo.of("grouped_matmul", F, "each expert's rows of x [rows, K] times its w[e] [K, N], one call; padding rows 0")
                    .floats(F32)
                    .samples((r, t) -> grouped(r, t, false))
                    .reference((s, in) -> new double[][] {MoeRef.grouped(in[0], in[1], in[2], (int) s.dims(0)[0],
                            (int) s.dims(0)[1], (int) s.dims(1)[2], false)})
                    .gradCheck().build(),
            OpInfo.of("grouped_matmul_backward", F, "both gradients of grouped_matmul: dx = dy·w_eᵀ per group, dw_e = x_eᵀ·dy_e")
                    .floats(F32)
                    .samples((r, t) -> grouped(r, t, true))
                    .reference((s, in) -> {
                        int rows = (int) s.dims(0)[0];
                        int k = (int) s.dims(0)[1];
                        int n = (int) s.dims(1)[2];
                        return new double[][] {MoeRef.grouped(in[3], in[1], in[2], rows, n, k, true),
                            MoeRef.groupedWeightGrad(in[0], in[3], in[2], k, n)};
                    })
                    .coveredBy("grouped_matmul").build());

    private static double[] doubles(long[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < d.length; i++) {
            d[i] = v[i];
        }
        return d;
    }
}
