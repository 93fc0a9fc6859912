package dev.cortado.models;

import dev.cortado.nn.Module;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.Tensor;
import java.util.function.Function;

/**
 * Multi-sample dropout (Inoue, 2019): in training, the features pass through {@code samples}
 * independent dropout masks, each followed by the same head; the loss is the mean of the samples'
 * losses ({@link #loss}) and the logits the mean of theirs ({@link #forward}). More masks per step
 * at the cost of more head evaluations only (the backbone runs once). In evaluation (no dropout)
 * it is the head itself.
 */
public final class MultiSampleDropout extends Module {
    private final Module head;
    private final int samples;
    private final double p;
    private final Generator generator;

    /** {@code samples} dropout masks of rate {@code p} (from {@code generator}) before {@code head}. */
    public MultiSampleDropout(Module head, int samples, double p, Generator generator) {
        if (samples < 1 || !(p >= 0 && p < 1)) {
            throw new IllegalArgumentException("MultiSampleDropout: need samples >= 1 and p in [0, 1), got "
                    + samples + " and " + p);
        }
        this.head = registerModule("head", head);
        this.samples = samples;
        this.p = p;
        this.generator = generator;
    }

    /** The mean of the samples' head outputs in training; the head's output in evaluation. */
    @Override
    public Tensor forward(Tensor features) {
        return mean(features, h -> h);
    }

    /** The mean over the samples of {@code lossOfOutput(head(dropout_k(features)))}. */
    public Tensor loss(Tensor features, Function<Tensor, Tensor> lossOfOutput) {
        return mean(features, lossOfOutput);
    }

    private Tensor mean(Tensor features, Function<Tensor, Tensor> f) {
        if (!isTraining() || p == 0) {
            Tensor h = head.apply(features);
            Tensor v = f.apply(h);
            if (v != h) {
                h.close();
            }
            return v;
        }
        Tensor sum = null;
        try {
            for (int k = 0; k < samples; k++) {
                try (Tensor dropped = F.dropout(features, p, true, generator); Tensor h = head.apply(dropped);
                     Tensor v = f.apply(h)) {
                    Tensor next = sum == null ? Elementwise.mul(v, 1.0) : Elementwise.add(sum, v);
                    if (sum != null) {
                        sum.close();
                    }
                    sum = next;
                }
            }
            return Elementwise.mul(sum, 1.0 / samples);
        } finally {
            if (sum != null) {
                sum.close();
            }
        }
    }

    @Override
    protected String extraRepr() {
        return "samples=" + samples + ", p=" + p;
    }
}
