package dev.cortado.nn;

import static dev.cortado.testing.Reference.assertCloseChecked;
import static dev.cortado.testing.Reference.relativeTo;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.autograd.GradCheck;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.MixtureOfExperts;
import dev.cortado.ops.MoeRef;
import dev.cortado.ops.PagedKvCache;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The mixture-of-experts layer against a float64 loop written from its definition (router softmax,
 * top-k, renormalised gates, capacity with first-choices-first dropping, per-expert GELU or SwiGLU
 * FFNs, the load-balancing and z losses), its gradients by finite differences (float64), and the
 * language model with experts: KV-cache decoding gives the full forward's logits and the router
 * losses reach the training loss. Tolerances: float64 1e-10 relative to the largest reference value.
 */
class MoeFeedForwardTest {
    private static final Tol F64 = new Tol(1e-10, 1e-10);
    private static final int DIM = 6;
    private static final int TOKENS = 11;

    private static MoeFeedForward layer(MLP.Kind kind, MoeFeedForward.Options o) {
        return new MoeFeedForward(DIM, o, kind, new ParamOptions(DType.FLOAT64, Device.CPU, Generator.seeded(9)));
    }

    /** The float64 layer: {out [T, dim], aux}. */
    private static double[][] reference(MoeFeedForward m, double[] x, boolean training) {
        MoeFeedForward.Options o = m.options();
        int e = o.experts();
        int k = o.topK();
        int h = (int) o.hidden();
        double[] wr = m.child("router").parameter("weight").toDoubleArray(); // [E, dim]
        boolean gelu = m.namedParameters().containsKey("w1");
        double[] w1 = m.parameter(gelu ? "w1" : "gate").toDoubleArray();    // [E, dim, h]
        double[] w3 = gelu ? null : m.parameter("up").toDoubleArray();
        double[] w2 = m.parameter(gelu ? "w2" : "down").toDoubleArray();    // [E, h, dim]
        double[] probs = new double[TOKENS * e];
        double[] lse = new double[TOKENS];
        long[] ids = new long[TOKENS * k];
        double[] gates = new double[TOKENS * k];
        for (int t = 0; t < TOKENS; t++) {
            double[] logit = new double[e];
            double max = Double.NEGATIVE_INFINITY;
            for (int q = 0; q < e; q++) {
                for (int c = 0; c < DIM; c++) {
                    logit[q] += wr[q * DIM + c] * x[t * DIM + c];
                }
                max = Math.max(max, logit[q]);
            }
            double sum = 0;
            for (int q = 0; q < e; q++) {
                sum += Math.exp(logit[q] - max);
            }
            lse[t] = max + Math.log(sum);
            for (int q = 0; q < e; q++) {
                probs[t * e + q] = Math.exp(logit[q] - max) / sum;
            }
            boolean[] taken = new boolean[e];
            double kept = 0;
            for (int j = 0; j < k; j++) {
                int best = -1;
                for (int q = 0; q < e; q++) {
                    if (!taken[q] && (best < 0 || probs[t * e + q] > probs[t * e + best])) {
                        best = q;
                    }
                }
                taken[best] = true;
                ids[t * k + j] = best;
                gates[t * k + j] = probs[t * e + best];
                kept += gates[t * k + j];
            }
            if (o.renormalize()) {
                for (int j = 0; j < k; j++) {
                    gates[t * k + j] /= kept;
                }
            }
        }
        long capacity = MixtureOfExperts.capacity(training ? o.capacityFactor() : 0, TOKENS, k, e);
        long[][] route = MoeRef.route(ids, TOKENS, k, e, capacity);
        double[] out = new double[TOKENS * DIM];
        for (int t = 0; t < TOKENS; t++) {
            for (int j = 0; j < k; j++) {
                if (route[0][t * k + j] < 0) {
                    continue;
                }
                int q = (int) ids[t * k + j];
                double[] hid = new double[h];
                for (int u = 0; u < h; u++) {
                    double a = 0;
                    double b = 0;
                    for (int c = 0; c < DIM; c++) {
                        a += x[t * DIM + c] * w1[(q * DIM + c) * h + u];
                        if (!gelu) {
                            b += x[t * DIM + c] * w3[(q * DIM + c) * h + u];
                        }
                    }
                    hid[u] = gelu ? NnRef.gelu(a) : NnRef.silu(a) * b;
                }
                for (int c = 0; c < DIM; c++) {
                    double y = 0;
                    for (int u = 0; u < h; u++) {
                        y += hid[u] * w2[(q * h + u) * DIM + c];
                    }
                    out[t * DIM + c] += gates[t * k + j] * y;
                }
            }
        }
        double balance = 0;
        double z = 0;
        for (int q = 0; q < e; q++) {
            double p = 0;
            for (int t = 0; t < TOKENS; t++) {
                p += probs[t * e + q] / TOKENS;
            }
            balance += (double) route[2][q] / (TOKENS * k) * p;
        }
        for (int t = 0; t < TOKENS; t++) {
            z += lse[t] * lse[t] / TOKENS;
        }
        return new double[][] {out, {o.balanceWeight() * e * balance + o.zLossWeight() * z}};
    }

    /** Capacity factor 0.5 (drops about half the choices in training) and no dropping in evaluation. */
    @ParameterizedTest
    @EnumSource(MLP.Kind.class)
    void forwardAndRouterLossesMatchTheFloat64Loop(MLP.Kind kind) {
        MoeFeedForward.Options o = new MoeFeedForward.Options(4, 2, 5, 0.5, true, 0.01, 0.001);
        double[] x = Reference.uniform(new Random(4), TOKENS * DIM, -2, 2);
        try (Scope s = Scope.open(); MoeFeedForward m = layer(kind, o)) {
            assertNull(m.auxiliaryLoss());
            for (boolean training : new boolean[] {true, false}) {
                m.train(training);
                double[][] want = reference(m, x, training);
                Tensor out = m.forward(Tensor.of(x, 1, TOKENS, DIM));
                String what = kind + (training ? " training" : " eval");
                assertEquals(3, out.rank());
                assertCloseChecked(want[0], out.toDoubleArray(), relativeTo(F64, want[0]), what);
                assertEquals(want[1][0], m.auxiliaryLoss().item(), 1e-12, what + " aux");
                if (training) {   // some choices dropped; a token with both dropped gives exact zeros
                    int zeroRows = 0;
                    for (int t = 0; t < TOKENS; t++) {
                        boolean zero = true;
                        for (int c = 0; c < DIM; c++) {
                            zero &= want[0][t * DIM + c] == 0;
                        }
                        zeroRows += zero ? 1 : 0;
                    }
                    assertTrue(zeroRows > 0, "capacity 0.5 must drop every choice of some token");
                }
            }
        }
    }

    /** Finite differences through the whole layer (no dropping: routing fixed): x, router and expert weights. */
    @ParameterizedTest
    @EnumSource(MLP.Kind.class)
    void gradientsMatchFiniteDifferences(MLP.Kind kind) {
        MoeFeedForward.Options o = new MoeFeedForward.Options(3, 2, 4, 0, true, 0.01, 0.001);
        try (Scope s = Scope.open(); MoeFeedForward m = layer(kind, o)) {
            Tensor x = Tensor.of(Reference.uniform(new Random(8), TOKENS * DIM, -2, 2), TOKENS, DIM).requiresGrad(true);
            Tensor[] in = new Tensor[1 + m.parameters().size()];
            in[0] = x;
            for (int i = 0; i < m.parameters().size(); i++) {
                in[i + 1] = m.parameters().get(i);
            }
            GradCheck.check("moe layer " + kind, a -> m.forward(a[0]), in);
            GradCheck.check("moe router losses " + kind, a -> {
                try (Tensor y = m.forward(a[0])) {
                    return Elementwise.mul(m.auxiliaryLoss(), 1.0);
                }
            }, x, m.child("router").parameter("weight"));
        }
    }

    @Test
    void badOptionsAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> MoeFeedForward.Options.of(2, 3, 8));
        assertThrows(IllegalArgumentException.class, () -> MoeFeedForward.Options.of(0, 1, 8));
        assertThrows(IllegalArgumentException.class, () -> MoeFeedForward.Options.of(4, 2, 8).withCapacityFactor(-1));
        try (MoeFeedForward m = layer(MLP.Kind.GELU, MoeFeedForward.Options.of(4, 2, 8)); Scope s = Scope.open()) {
            String msg = assertThrows(IllegalArgumentException.class,
                    () -> m.forward(Tensor.zeros(DType.FLOAT64, 3, 5))).getMessage();
            assertTrue(msg.contains("MoeFeedForward") && msg.contains("[3, 5]"), msg);
        }
    }

    /**
     * A language model with experts in every block: cached decoding (evaluation: nothing dropped)
     * gives the logits of the full forward; a training step's router losses reach the router.
     */
    @Test
    void languageModelWithExpertsDecodesAndTrains() {
        int vocab = 13;
        int context = 24;
        CausalLanguageModel.Config c = new CausalLanguageModel.Config(vocab, 32, 2, 4, 2, 48, context, 0.0, 0,
                MoeFeedForward.Options.of(4, 2, 24));
        int t = 9;
        Random r = new Random(3);
        long[] tokens = new long[t];
        for (int i = 0; i < t; i++) {
            tokens[i] = r.nextInt(vocab);
        }
        try (Scope s = Scope.open(); CausalLanguageModel m = new CausalLanguageModel(c, ParamOptions.seeded(5))) {
            m.eval();
            try (Autograd.GradMode off = Autograd.noGrad(); PagedKvCache cache = m.newCache(1, context, Device.CPU)) {
                float[] full = m.forward(Tensor.of(tokens, 1, t)).toFloatArray();
                int[] seqs = {cache.newSequence()};
                for (int pos = 0; pos < t; pos++) {
                    float[] got = m.decodeStep(cache, seqs, Tensor.of(new long[] {tokens[pos]}, 1, 1), pos).toFloatArray();
                    for (int v = 0; v < vocab; v++) {
                        assertEquals(full[pos * vocab + v], got[v], 1e-4, "position " + pos + ", token " + v);
                    }
                }
            }
            m.train();
            Tensor logits = m.forward(Tensor.of(tokens, 1, t));
            Tensor aux = m.auxiliaryLoss();
            assertNotNull(aux);
            assertTrue(aux.item() > 0, "router losses " + aux.item());
            Elementwise.add(logits.sum(), aux).backward();
            for (String name : new String[] {"blocks.0.mlp.router.weight", "blocks.1.mlp.gate", "blocks.1.mlp.down"}) {
                Tensor p = m.namedParameters().get(name);
                assertNotNull(p, name);
                assertNotNull(p.grad(), name + " gets a gradient");
                assertTrue(p.grad().abs().max().item() > 0, name + " gradient is not zero");
            }
        }
    }
}
