package dev.cortado.nn;

import static dev.cortado.testing.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.PagedKvCache;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference.Tol;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/**
 * The GPT-style model's two paths agree: KV-cache decoding (paged cache, fused decode kernel, RoPE
 * at explicit positions) gives the logits of the full causal forward (fused attention over the
 * whole sequence) at every position, for a batch of sequences, with and without soft-capped
 * attention scores; greedy generation picks what recomputing the full forward picks. float32,
 * tolerance 1e-4 (the two paths sum in different orders). Random weights, never zeros.
 */
class CausalLanguageModelTest {
    static final int VOCAB = 13;
    static final int CONTEXT = 24;

    static CausalLanguageModel model(double softcap) {
        CausalLanguageModel m = new CausalLanguageModel(
                new CausalLanguageModel.Config(VOCAB, 32, 2, 4, 2, 48, CONTEXT, 0.0, softcap), ParamOptions.seeded(5));
        m.eval();
        return m;
    }

    @ParameterizedTest
    @ValueSource(doubles = {0, 0.2})
    void decodeStepsGiveTheFullForwardsLogits(double softcap) {
        int t = 19;
        int batch = 2;
        Random r = new Random(3);
        long[] tokens = new long[batch * t];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = r.nextInt(VOCAB);
        }
        try (Scope s = Scope.open(); CausalLanguageModel m = model(softcap);
             Autograd.GradMode off = Autograd.noGrad();
             PagedKvCache cache = m.newCache(batch, CONTEXT, Device.CPU)) {
            float[] full = m.forward(Tensor.of(tokens, batch, t)).toFloatArray(); // [B, T, V]
            int[] seqs = {cache.newSequence(), cache.newSequence()};
            for (int pos = 0; pos < t; pos++) {
                long[] step = {tokens[pos], tokens[t + pos]};
                float[] got = m.decodeStep(cache, seqs, Tensor.of(step, batch, 1), pos).toFloatArray(); // [B, V]
                double[] want = new double[batch * VOCAB];
                for (int b = 0; b < batch; b++) {
                    for (int v = 0; v < VOCAB; v++) {
                        want[b * VOCAB + v] = full[(b * t + pos) * VOCAB + v];
                    }
                }
                assertClose(want, toDouble(got), new Tol(1e-4, 1e-4), "softcap " + softcap + ", position " + pos);
            }
        }
    }

    @Test
    void softcapChangesTheModel() {
        long[] tokens = {1, 5, 2, 7, 7, 3, 0, 12};
        try (Scope s = Scope.open(); CausalLanguageModel plain = model(0); CausalLanguageModel capped = model(0.2)) {
            float[] a = plain.forward(Tensor.of(tokens, 1, tokens.length)).toFloatArray();
            float[] b = capped.forward(Tensor.of(tokens, 1, tokens.length)).toFloatArray();
            double worst = 0;
            for (int i = 0; i < a.length; i++) {
                worst = Math.max(worst, Math.abs(a[i] - b[i]));
            }
            // same weights (same seed), different attention: the logits must differ
            assertTrue(worst > 1e-3, "a cap of 0.2 should change the logits, max difference " + worst);
        }
    }

    @Test
    void greedyGenerationMatchesRecomputingTheForward() {
        long[] prompt = {3, 1, 4, 1, 5};
        int n = 10;
        try (Scope s = Scope.open(); CausalLanguageModel m = model(0.2)) {
            long[] got = m.generate(prompt, n, Sampling.greedy(), new Random(1));
            long[] seq = new long[prompt.length + n];
            System.arraycopy(prompt, 0, seq, 0, prompt.length);
            long[] want = new long[n];
            try (Autograd.GradMode off = Autograd.noGrad()) {
                for (int i = 0; i < n; i++) {
                    int len = prompt.length + i;
                    long[] ctx = java.util.Arrays.copyOf(seq, len);
                    float[] logits = m.forward(Tensor.of(ctx, 1, len)).toFloatArray();
                    int best = 0;
                    for (int v = 1; v < VOCAB; v++) {
                        if (logits[(len - 1) * VOCAB + v] > logits[(len - 1) * VOCAB + best]) {
                            best = v;
                        }
                    }
                    want[i] = best;
                    seq[len] = best;
                }
            }
            assertArrayEquals(want, got);
        }
    }

    @Test
    void badConfigurationsAndInputsAreRejected() {
        var e = assertThrows(IllegalArgumentException.class,
                () -> new CausalLanguageModel(new CausalLanguageModel.Config(VOCAB, 30, 1, 4, 2, 8, 8, 0), ParamOptions.seeded(1)));
        assertTrue(e.getMessage().contains("heads (4) must divide dim (30)"), e.getMessage());
        long live = dev.cortado.backend.cpu.CpuBackend.liveAllocations();
        e = assertThrows(IllegalArgumentException.class, () -> model(-1));
        assertTrue(e.getMessage().contains("softcap must be finite and >= 0"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new CausalLanguageModel(
                new CausalLanguageModel.Config(VOCAB, 32, 2, 4, 2, 0, CONTEXT, 0.0), ParamOptions.seeded(1)));
        assertTrue(e.getMessage().contains("mlpHidden must be positive"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new CausalLanguageModel(
                new CausalLanguageModel.Config(VOCAB, 32, 2, 4, 2, 48, CONTEXT, 1.0), ParamOptions.seeded(1)));
        assertTrue(e.getMessage().contains("dropout must be in [0, 1)"), e.getMessage());
        assertEquals(live, dev.cortado.backend.cpu.CpuBackend.liveAllocations(), "a rejected configuration allocates nothing");
        try (Scope s = Scope.open(); CausalLanguageModel m = model(0)) {
            e = assertThrows(IllegalArgumentException.class, () -> m.forward(Tensor.of(new long[CONTEXT + 1], 1, CONTEXT + 1)));
            assertTrue(e.getMessage().contains("T <= " + CONTEXT) && e.getMessage().contains("[1, 25]"), e.getMessage());
        }
    }

    static double[] toDouble(float[] x) {
        double[] y = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            y[i] = x[i];
        }
        return y;
    }
}
