package dev.cortado.serve;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Linear;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A small real Cortado model behind {@link TextEmbedder}, for the serving tests: a bag of hashed
 * character trigrams (of {@code ^text$}) → {@code nn.Linear(buckets, dimension)} → L2
 * normalization, on the engine's ops. {@link #reference} computes the same in float64 from the
 * layer's weights, so the server's numbers are checked, not only their shapes.
 *
 * <p>Tokens are the whitespace-separated words (at least 1). A text containing U+0000 is refused
 * with {@link IllegalArgumentException} inside {@link #embed} (a rejection the server cannot see
 * coming, to exercise the batcher's failure isolation). {@link #calls()} counts the batch calls.
 */
@SuppressWarnings("try") // the scope frees each call's tensors
final class NgramEmbedder implements TextEmbedder {
    static final int BUCKETS = 64;
    private final int dimension;
    private final Linear linear;
    private final float[] weight;
    private final float[] bias;
    private final AtomicInteger calls = new AtomicInteger();
    private final long delayNanos;
    private volatile boolean closed;

    /** A model of {@code dimension} outputs; each batch call also sleeps {@code delayMillis} (a slower model). */
    NgramEmbedder(int dimension, long delayMillis) {
        this.dimension = dimension;
        this.delayNanos = delayMillis * 1_000_000;
        this.linear = new Linear(BUCKETS, dimension);
        this.weight = linear.weight().toFloatArray();
        this.bias = linear.bias().toFloatArray();
    }

    NgramEmbedder(int dimension) {
        this(dimension, 0);
    }

    int calls() {
        return calls.get();
    }

    @Override
    public String modelName() {
        return "ngram-test-" + dimension;
    }

    @Override
    public int dimension() {
        return dimension;
    }

    @Override
    public int maxTokens() {
        return 512;
    }

    @Override
    public int tokenCount(String text) {
        String t = text.strip();
        return t.isEmpty() ? 1 : t.split("\\s+").length;
    }

    static double[] features(String text) {
        String s = "^" + text + "$";
        double[] f = new double[BUCKETS];
        for (int i = 0; i + 3 <= s.length(); i++) {
            f[Math.floorMod(s.substring(i, i + 3).hashCode(), BUCKETS)] += 1;
        }
        return f;
    }

    @Override
    public float[][] embed(List<String> texts) {
        if (closed) {
            throw new IllegalStateException("the embedder is closed");
        }
        calls.incrementAndGet();
        float[] x = new float[texts.size() * BUCKETS];
        for (int i = 0; i < texts.size(); i++) {
            String t = texts.get(i);
            if (t.indexOf('\0') >= 0) {
                throw new IllegalArgumentException("text " + i + " contains a NUL character");
            }
            double[] f = features(t);
            for (int k = 0; k < BUCKETS; k++) {
                x[i * BUCKETS + k] = (float) f[k];
            }
        }
        if (delayNanos > 0) {
            java.util.concurrent.locks.LockSupport.parkNanos(delayNanos);
        }
        float[] flat;
        try (Autograd.GradMode g = Autograd.noGrad(); Scope scope = Scope.open()) {
            Tensor y = linear.forward(Tensor.of(x, Device.CPU, texts.size(), BUCKETS));
            Tensor norm = y.mul(y).sum(1, true).sqrt();
            flat = y.div(norm).toFloatArray();
        }
        float[][] out = new float[texts.size()][dimension];
        for (int i = 0; i < out.length; i++) {
            System.arraycopy(flat, i * dimension, out[i], 0, dimension);
        }
        return out;
    }

    /** The float64 embedding of {@code text}. */
    double[] reference(String text) {
        double[] f = features(text);
        double[] y = new double[dimension];
        double norm = 0;
        for (int o = 0; o < dimension; o++) {
            double s = bias[o];
            for (int k = 0; k < BUCKETS; k++) {
                s += (double) weight[o * BUCKETS + k] * f[k];
            }
            y[o] = s;
            norm += s * s;
        }
        norm = Math.sqrt(norm);
        for (int o = 0; o < dimension; o++) {
            y[o] /= norm;
        }
        return y;
    }

    /**
     * Asserts that {@code got} is {@code text}'s embedding: float32 sums of at most 64 integer
     * counts times weights of about 0.1, then a normalization: 1e-5 absolute on unit vectors is
     * far above the rounding (about 1e-6) and far below any wrong value.
     */
    void assertEmbedding(String text, float[] got) {
        double[] want = reference(text);
        if (got.length != want.length) {
            throw new AssertionError("'" + text + "': " + got.length + " values, want " + want.length);
        }
        for (int i = 0; i < want.length; i++) {
            if (Math.abs(got[i] - want[i]) > 1e-5) {
                throw new AssertionError("'" + text + "' element " + i + ": " + got[i] + ", want " + want[i]);
            }
        }
    }

    @Override
    public void close() {
        closed = true;
        linear.close();
    }
}
