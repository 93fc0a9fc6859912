package dev.cortado.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Next-token sampling: greedy is the argmax; sampled tokens follow softmax(logits / T) restricted
 * to the top k and then to the smallest top-p set, renormalized. Each distribution is checked
 * from 200,000 seeded draws: every token's frequency within 5 standard deviations
 * (sqrt(p (1 - p) / n)) of the exact probability computed here in float64, and tokens outside the
 * kept set never drawn.
 */
class SamplingTest {
    static final int DRAWS = 200_000;
    static final float[] LOGITS = {1.0f, 2.5f, -0.5f, 2.0f, Float.NEGATIVE_INFINITY, 0.3f};

    /** The exact distribution: softmax(l / t) over the top k, then the smallest set reaching p. */
    static double[] expected(float[] l, double t, int k, double p) {
        int n = l.length;
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        java.util.Arrays.sort(order, (a, b) -> Float.compare(l[b], l[a]));
        int keep = k > 0 ? k : n;
        double[] w = new double[n];
        double sum = 0;
        for (int r = 0; r < keep; r++) {
            w[order[r]] = Math.exp(l[order[r]] / t);
            sum += w[order[r]];
        }
        double cum = 0;
        int cut = keep;
        for (int r = 0; r < keep; r++) {
            cum += w[order[r]] / sum;
            if (cum >= p) {
                cut = r + 1;
                break;
            }
        }
        double total = 0;
        for (int r = 0; r < keep; r++) {
            if (r >= cut) {
                w[order[r]] = 0;
            }
            total += w[order[r]];
        }
        for (int i = 0; i < n; i++) {
            w[i] /= total;
        }
        return w;
    }

    static void assertDistribution(Sampling s, double[] want, long seed) {
        Random r = new Random(seed);
        int[] count = new int[LOGITS.length];
        for (int i = 0; i < DRAWS; i++) {
            count[s.sample(LOGITS, r)]++;
        }
        for (int i = 0; i < want.length; i++) {
            double f = (double) count[i] / DRAWS;
            if (want[i] == 0) {
                assertEquals(0, count[i], s + ": token " + i + " is outside the kept set");
                continue;
            }
            double sd = Math.sqrt(want[i] * (1 - want[i]) / DRAWS);
            assertTrue(Math.abs(f - want[i]) <= 5 * sd, s + ": token " + i + " frequency " + f + ", want " + want[i]);
        }
    }

    @Test
    void greedyIsTheArgmax() {
        assertEquals(1, Sampling.greedy().sample(LOGITS, new Random(1)));
        // ties: the lowest index
        assertEquals(2, Sampling.greedy().sample(new float[] {0, 1, 3, 3, -1}, new Random(1)));
        assertEquals(0, Sampling.greedy().sample(new float[] {7}, new Random(1)));
    }

    @Test
    void temperatureFollowsTheSoftmax() {
        for (double t : new double[] {0.5, 1.0, 2.0}) {
            assertDistribution(Sampling.temperature(t), expected(LOGITS, t, 0, 1), 11);
        }
    }

    @Test
    void topKKeepsTheKMostLikely() {
        double[] want = expected(LOGITS, 1.0, 2, 1);
        assertEquals(0, want[0]);
        assertTrue(want[1] > 0 && want[3] > 0);
        assertDistribution(Sampling.temperature(1.0).withTopK(2), want, 12);
        // k larger than the vocabulary keeps everything
        assertDistribution(Sampling.temperature(1.0).withTopK(50), expected(LOGITS, 1.0, 0, 1), 13);
    }

    @Test
    void topPKeepsTheSmallestSetReachingP() {
        // probabilities at T = 1 (by rank): 0.502, 0.305, 0.112, 0.056, 0.025, 0 -> p 0.6 keeps two tokens
        double[] want = expected(LOGITS, 1.0, 0, 0.6);
        int kept = 0;
        for (double w : want) {
            kept += w > 0 ? 1 : 0;
        }
        assertEquals(2, kept);
        assertDistribution(Sampling.temperature(1.0).withTopP(0.6), want, 14);
        // top-k first, then top-p over the renormalized top k
        assertDistribution(Sampling.temperature(0.8).withTopK(3).withTopP(0.9), expected(LOGITS, 0.8, 3, 0.9), 15);
    }

    @Test
    void maskedTokensAreNeverChosenAndBadLogitsAreRejected() {
        Random r = new Random(3);
        float[] l = {Float.NEGATIVE_INFINITY, 0f, Float.NEGATIVE_INFINITY};
        for (int i = 0; i < 1000; i++) {
            assertEquals(1, Sampling.temperature(5).sample(l, r));
        }
        var e = assertThrows(IllegalArgumentException.class,
                () -> Sampling.temperature(1).sample(new float[] {0, Float.NaN, 1}, r));
        assertTrue(e.getMessage().contains("logit 1 of 3 is NaN"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> Sampling.greedy().sample(new float[] {0, Float.POSITIVE_INFINITY}, r));
        assertTrue(e.getMessage().contains("logit 1 of 2 is Infinity"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> Sampling.greedy().sample(new float[] {Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY}, r));
        assertTrue(e.getMessage().contains("all 2 logits are -inf"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Sampling.greedy().sample(new float[0], r));
        assertThrows(IllegalArgumentException.class, () -> new Sampling(-1, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> new Sampling(1, -1, 1));
        assertThrows(IllegalArgumentException.class, () -> new Sampling(1, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new Sampling(1, 0, 1.5));
    }
}
