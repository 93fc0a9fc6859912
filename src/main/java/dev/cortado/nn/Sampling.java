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

    /** The chosen token id. */
    public int sample(float[] logits, Random random) {
        int n = logits.length;
        if (n == 0) {
            throw new IllegalArgumentException("Sampling: empty logits");
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
