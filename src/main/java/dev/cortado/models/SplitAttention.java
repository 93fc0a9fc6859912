package dev.cortado.models;

import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.Tensor;

/**
 * ResNeSt's split-attention convolution (Zhang et al., 2022): a grouped k x k convolution gives
 * {@code radix} feature-map splits of {@code channels} channels each (in {@code cardinality *
 * radix} groups), then batch norm and ReLU; the splits are summed, globally average-pooled, and
 * two grouped 1x1 convolutions (with batch norm and ReLU between, {@code attention} hidden
 * channels) give one logit per split and channel; a softmax across the splits (a sigmoid when
 * radix is 1) weighs them, and the output is the weighted sum of the splits, [N, channels, H', W'].
 *
 * <p>Channel order: split r, cardinal group g, channel j of the group is channel
 * {@code r * channels + g * (channels / cardinality) + j}, as in the reference implementation
 * (so trained weights carry over). Cost per output pixel: the k x k convolution's
 * {@code 2 * k^2 * in * channels * radix / (cardinality * radix)} FLOPs, plus O(channels * radix)
 * for the attention, whose 1x1 convolutions run once per image.
 */
public final class SplitAttention extends Module {
    private final int channels;
    private final int radix;
    private final int cardinality;
    private final Conv2d conv;
    private final BatchNorm2d bn0;
    private final Conv2d fc1;
    private final BatchNorm2d bn1;
    private final Conv2d fc2;

    /**
     * A split-attention convolution from {@code in} to {@code channels} channels, kernel
     * {@code kernel} with "same" padding and the given stride. The attention width is
     * {@code channels * radix / 4} rounded to a multiple of 8, at least 32 (the reference's).
     */
    public SplitAttention(int in, int channels, int kernel, int stride, int radix, int cardinality, ParamOptions p) {
        if (radix < 1 || cardinality < 1 || channels % cardinality != 0 || in % (cardinality * radix) != 0) {
            throw new IllegalArgumentException("SplitAttention: radix " + radix + " and cardinality " + cardinality
                    + " must be positive, cardinality must divide the output channels " + channels
                    + " and cardinality * radix the input channels " + in);
        }
        this.channels = channels;
        this.radix = radix;
        this.cardinality = cardinality;
        int attention = attentionWidth(channels * radix);
        if (attention % cardinality != 0) {
            attention += cardinality - attention % cardinality;
        }
        ConvOptions o = ConvOptions.builder().stride(stride, stride).padding(kernel / 2, kernel / 2)
                .groups((long) cardinality * radix).build();
        conv = registerModule("conv", new Conv2d(in, (long) channels * radix, new long[] {kernel, kernel}, o, false, p));
        bn0 = registerModule("bn0", new BatchNorm2d((long) channels * radix));
        ConvOptions grouped = ConvOptions.builder().groups(cardinality).build();
        fc1 = registerModule("fc1", new Conv2d(channels, attention, new long[] {1, 1}, grouped, true, p));
        bn1 = registerModule("bn1", new BatchNorm2d(attention));
        fc2 = registerModule("fc2", new Conv2d(attention, (long) channels * radix, new long[] {1, 1}, grouped, true, p));
    }

    /** The reference's attention width: a quarter of the input, rounded to a multiple of 8, at least 32. */
    static int attentionWidth(int v) {
        int rounded = Math.max(32, (v / 4 + 4) / 8 * 8);
        return rounded < 0.9 * (v / 4.0) ? rounded + 8 : rounded;
    }

    @Override
    public Tensor forward(Tensor x) {
        long n = x.size(0);
        try (Tensor c = conv.apply(x); Tensor b = bn0.apply(c); Tensor y = Elementwise.relu(b)) {
            long h = y.size(2);
            long w = y.size(3);
            try (Tensor splits = y.reshape(n, radix, channels, h, w);
                 Tensor summed = radix == 1 ? y.reshape(n, channels, h, w) : Reductions.sum(splits, false, 1);
                 Tensor gap = Reductions.mean(summed, true, 2, 3);
                 Tensor a1 = fc1.apply(gap); Tensor a2 = bn1.apply(a1); Tensor a3 = Elementwise.relu(a2);
                 Tensor logits = fc2.apply(a3);
                 Tensor weights = splitWeights(logits, n);
                 Tensor weighted = Elementwise.mul(splits, weights)) {
                return Reductions.sum(weighted, false, 1);
            }
        }
    }

    /**
     * Logits [N, channels * radix, 1, 1], laid out [cardinality][radix][channels / cardinality] by
     * the grouped convolution, to weights [N, radix, channels, 1, 1]: a softmax across the radix
     * within each cardinal group (a sigmoid for radix 1).
     */
    private Tensor splitWeights(Tensor logits, long n) {
        if (radix == 1) {
            try (Tensor s = Elementwise.sigmoid(logits)) {
                return s.reshape(n, 1, channels, 1, 1);
            }
        }
        try (Tensor grouped = logits.reshape(n, cardinality, radix, channels / cardinality);
             Tensor t = grouped.transpose(1, 2); Tensor soft = Normalization.softmax(t, 1);
             Tensor ordered = soft.contiguous()) {
            return ordered.reshape(n, radix, channels, 1, 1);
        }
    }

    @Override
    protected String extraRepr() {
        return "channels=" + channels + ", radix=" + radix + ", cardinality=" + cardinality;
    }
}
