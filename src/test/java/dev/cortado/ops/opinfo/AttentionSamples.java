package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;

import dev.cortado.ops.Attention.Layout;
import dev.cortado.ops.Attention.Options;
import dev.cortado.ops.Attention.RopeAttrs;
import dev.cortado.ops.AttentionOpsTest;
import dev.cortado.ops.AttentionOpsTest.Case;
import dev.cortado.ops.AttentionOpsTest.MaskType;
import dev.cortado.tensor.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Fused attention (forward, backward) and RoPE, layout [B, H, L, D] (the layout x mask x
 * dropout x soft-capping grid: AttentionOpsTest, whose float64 references these are). Samples:
 * odd lengths, grouped-query heads, cross-attention, causal, an additive mask, size-1 query, a
 * transposed view of k. On CUDA the tolerances of CudaAttentionTest: float32 2e-4 (summation
 * order), float16 1e-2 and bfloat16 4e-2 (P and dS rounded to 16 bits before the tensor-core products).
 */
final class AttentionSamples {
    private AttentionSamples() {
    }

    private static final String F = "attention";

    /** Geometries: b, hq, hkv, lq, lk, d, dv, causal; mask ADDITIVE for one. */
    static final List<Case> CASES = List.of(
            new Case(2, 2, 2, 5, 5, 4, 4, false, MaskType.NONE, Layout.BHSD, DType.FLOAT64, 0, 0),
            new Case(1, 4, 2, 3, 7, 6, 5, true, MaskType.NONE, Layout.BHSD, DType.FLOAT64, 0, 0),
            new Case(1, 2, 1, 1, 6, 8, 8, false, MaskType.ADDITIVE, Layout.BHSD, DType.FLOAT64, 0, 0));

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("scaled_dot_product_attention", F, "fused softmax(q·kᵀ·scale + mask)·v without the L×L scores "
                            + "(causal, masks, GQA, dropout, soft-capping); also returns the log-sum-exp")
                    .samples((r, t) -> forCases(r, t, false))
                    .reference((s, in) -> {
                        AttentionOpsTest.Ref ref = ref(s, in, null);
                        return new double[][] {ref.o(), ref.lse()};
                    })
                    .floats(2e-5).halves(2e-2, 2e-3).cuda(DType.FLOAT64, 1e-9, 1e-9).cuda(DType.FLOAT32, 2e-4, 2e-4)
                    .cuda(DType.FLOAT16, 1e-2, 1e-2).cuda(DType.BFLOAT16, 4e-2, 4e-2).gradCheck().build(),
            OpInfo.of("scaled_dot_product_attention_backward", F, "{dq, dk, dv} of scaled_dot_product_attention from do, "
                            + "q, k, v, o and the log-sum-exp")
                    .samples((r, t) -> forCases(r, t, true))
                    .reference((s, in) -> {
                        double[] mask = in.length > 6 ? in[6] : null;
                        double[][] qkv = {in[1], in[2], in[3], mask};
                        AttentionOpsTest.Ref ref = ref(s, qkv, in[0]);
                        return new double[][] {ref.dq(), ref.dk(), ref.dv()};
                    })
                    .floats(2e-5).cuda(DType.FLOAT64, 1e-9, 1e-9).cuda(DType.FLOAT32, 2e-4, 2e-4)
                    .coveredBy("scaled_dot_product_attention").build(),
            rope("rope", false),
            rope("rope_backward", true));

    static Case caseOf(Sample s) {
        return CASES.get(Integer.parseInt(s.label().substring(5, 6)));
    }

    static double scale(Case c) {
        return 1 / Math.sqrt(c.d()) * 1.5;
    }

    /** The reference for a case from logical q, k, v, optional mask (in[3]) and dO. */
    static AttentionOpsTest.Ref ref(Sample s, double[][] in, double[] dO) {
        Case c = caseOf(s);
        double[] mask = in.length > 3 ? in[3] : null;
        if (dO == null) {
            dO = new double[c.b() * c.hq() * c.lq() * c.dv()];
        }
        return AttentionOpsTest.reference(c, in[0], in[1], in[2], mask, dO, scale(c), 0, 0);
    }

    static List<Sample> forCases(Random r, DType t, boolean backward) {
        List<Sample> out = new ArrayList<>();
        for (int i = 0; i < CASES.size(); i++) {
            Case c = CASES.get(i);
            Options o = Options.builder().causal(c.causal()).scale(scale(c)).build();
            Arg q = u(r, t, c.b(), c.hq(), c.lq(), c.d());
            Arg k = u(r, t, c.b(), c.hkv(), c.lk(), c.d());
            Arg v = u(r, t, c.b(), c.hkv(), c.lk(), c.dv());
            Arg mask = c.mask() == MaskType.ADDITIVE ? u(r, t, c.b(), c.hq(), c.lq(), c.lk()).noGrad() : null;
            String label = "case " + i + ": B" + c.b() + " Hq" + c.hq() + " Hkv" + c.hkv() + " Lq" + c.lq() + " Lk" + c.lk()
                    + " D" + c.d() + " Dv" + c.dv() + (c.causal() ? " causal" : "") + (mask != null ? " additive mask" : "")
                    + (i == 1 ? ", k a view" : "");
            if (i == 1) {
                k = k.view();
            }
            if (!backward) {
                out.add(mask == null ? new Sample(label, o, q, k, v) : new Sample(label, o, q, k, v, mask));
                continue;
            }
            // o and lse of the forward, from the reference on the stored inputs (o rounded to t, lse float32)
            double[][] stored = {q.stored(), k.stored(), v.stored(), mask == null ? null : mask.stored()};
            AttentionOpsTest.Ref f = AttentionOpsTest.reference(c, stored[0], stored[1], stored[2], stored[3],
                    new double[c.b() * c.hq() * c.lq() * c.dv()], scale(c), 0, 0);
            Arg dO = u(r, t, c.b(), c.hq(), c.lq(), c.dv());
            Arg oArg = Arg.of(f.o(), t, c.b(), c.hq(), c.lq(), c.dv()).noGrad();
            Arg lse = Arg.of(f.lse(), DType.FLOAT32, c.b(), c.hq(), c.lq()).float32();
            out.add(new Sample(label, o, dO, q, k, v, oArg, lse, mask));
        }
        return out;
    }

    /** RoPE over [B, H, L, D]: half-split and interleaved, partial rotary dim, explicit positions. */
    static OpInfo rope(String name, boolean inverse) {
        OpInfo.Builder b = OpInfo.of(name, F, inverse ? "dx of rope: the inverse rotation" : "rotary position embedding "
                        + "(half-split or interleaved, partial rotary dim, optional positions)")
                .samples((r, t) -> List.of(
                        new Sample("half-split, rd 8 of 8", new RopeAttrs(8, 10000, false, Layout.BHSD), u(r, t, 2, 3, 7, 8)),
                        new Sample("interleaved, rd 4 of 6, positions", new RopeAttrs(4, 10000, true, Layout.BHSD),
                                u(r, t, 1, 2, 5, 6), Arg.index(new long[] {100, 103, 106, 109, 112}, 5)),
                        new Sample("size-1 length, base 500", new RopeAttrs(6, 500, false, Layout.BHSD), u(r, t, 1, 1, 1, 6))))
                .reference((s, in) -> {
                    RopeAttrs a = (RopeAttrs) s.attrs();
                    long[] d = s.dims(0);
                    long[] pos = in.length > 1 ? IndexingSamples.longs(in[1]) : null;
                    return new double[][] {AttentionOpsTest.ropeRef(in[0], (int) d[0], (int) d[1], (int) d[2], (int) d[3], pos,
                            (int) a.rotaryDim(), a.base(), a.interleaved(), inverse)};
                })
                .floats(1e-5).halves(1e-2, 3e-3);
        return b.gradCheck().build();
    }
}
