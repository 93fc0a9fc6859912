package dev.cortado.nn;

import java.util.Arrays;
import java.util.Random;

/**
 * How a next token is picked from logits: greedy (temperature 0), or sampled from
 * softmax(logits / temperature) restricted to the {@code topK} most likely tokens (0 = all) and to
 * the smallest set whose probability reaches {@code topP} (1 = all), in that order.
 */
public record Sampling(double temperature, int topK, double topP) {
    public Sampling {
        if (!(temperature >= 0) || topK < 0 || !(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("Sampling: temperature >= 0, topK >= 0, 0 < topP <= 1; got "
                    + temperature + ", " + topK + ", " + topP);
        }
    }

    public static Sampling greedy() {
        return new Sampling(0, 0, 1);
    }

    public static Sampling temperature(double t) {
        return new Sampling(t, 0, 1);
    }

    public Sampling withTopK(int k) {
        return new Sampling(temperature, k, topP);
    }

    public Sampling withTopP(double p) {
        return new Sampling(temperature, topK, p);
    }

    /**
     * The chosen token id. Logits of -inf are never chosen (masked tokens); NaN, +inf or all -inf
     * logits are rejected with an {@link IllegalArgumentException} naming the first bad index.
     */
    public int sample(float[] logits, Random random) {
        int n = logits.length;
        if (n == 0) {
            throw new IllegalArgumentException("Sampling: empty logits");
        }
        boolean any = false;
        for (int i = 0; i < n; i++) {
            if (Float.isNaN(logits[i]) || logits[i] == Float.POSITIVE_INFINITY) {
                throw new IllegalArgumentException("Sampling: logit " + i + " of " + n + " is " + logits[i]);
            }
            any |= logits[i] != Float.NEGATIVE_INFINITY;
        }
        if (!any) {
            throw new IllegalArgumentException("Sampling: all " + n + " logits are -inf: no token can be chosen");
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> Float.compare(logits[b], logits[a]));
        if (temperature == 0) {
            return order[0];
        }
        int keep = topK > 0 ? Math.min(topK, n) : n;
        double max = logits[order[0]];
        double[] p = new double[keep];
        double sum = 0;
        for (int i = 0; i < keep; i++) {
            p[i] = Math.exp((logits[order[i]] - max) / temperature);
            sum += p[i];
        }
        double cumulative = 0;
        int cut = keep;
        for (int i = 0; i < keep; i++) {
            cumulative += p[i] / sum;
            if (cumulative >= topP) {
                cut = i + 1;
                break;
            }
        }
        double total = 0;
        for (int i = 0; i < cut; i++) {
            total += p[i];
        }
        double u = random.nextDouble() * total;
        for (int i = 0; i < cut; i++) {
            u -= p[i];
            if (u <= 0) {
                return order[i];
            }
        }
        return order[cut - 1];
    }
}
