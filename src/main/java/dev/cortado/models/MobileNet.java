package dev.cortado.models;

import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * MobileNet v1 (Howard et al., 2017): a 3x3 stride-2 stem and thirteen depthwise-separable blocks
 * ({@link DepthwiseSeparable}), global average pooling and a linear classifier; the width
 * multiplier scales every layer's channels.
 *
 * <p>Parameters (1000 classes, width 1.0): 4,231,976, the published MobileNet-224 (Keras's
 * trainable count; batch-norm running statistics are buffers here).
 */
public final class MobileNet extends Module {
    /** Output channels and stride of the thirteen blocks. */
    private static final int[][] BLOCKS = {{64, 1}, {128, 2}, {128, 1}, {256, 2}, {256, 1}, {512, 2}, {512, 1},
        {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 2}, {1024, 1}};

    private final Module features;
    private final Module head;

    /** A builder with the published defaults (width 1.0, 1000 classes, RGB). */
    public static Builder builder() {
        return new Builder();
    }

    /** Options of a {@link MobileNet}. */
    public static final class Builder {
        private double width = 1.0;
        private int classes = 1000;
        private int inChannels = 3;
        private boolean smallImages;
        private ParamOptions params = ParamOptions.seeded(Generator.DEFAULT_SEED);

        private Builder() {
        }

        /** The width multiplier (alpha: 1.0, 0.75, 0.5, 0.25 in the paper). */
        public Builder width(double alpha) {
            if (!(alpha > 0)) {
                throw new IllegalArgumentException("MobileNet: width multiplier must be positive, got " + alpha);
            }
            width = alpha;
            return this;
        }

        /** Number of classes of the classifier. */
        public Builder classes(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("MobileNet: classes must be positive, got " + n);
            }
            classes = n;
            return this;
        }

        /** Channels of the input images. */
        public Builder inChannels(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("MobileNet: inChannels must be positive, got " + n);
            }
            inChannels = n;
            return this;
        }

        /** A stride-1 stem: for 28x28 or 32x32 images. */
        public Builder smallImages(boolean on) {
            smallImages = on;
            return this;
        }

        /** Parameter dtype, device and initialisation generator. */
        public Builder params(ParamOptions p) {
            params = p;
            return this;
        }

        /** The network. */
        public MobileNet build() {
            return new MobileNet(this);
        }
    }

    private MobileNet(Builder b) {
        ParamOptions p = b.params;
        int c = scaled(32, b.width);
        List<Module> parts = new ArrayList<>(List.of(ResNet.conv(b.inChannels, c, 3, b.smallImages ? 1 : 2, p),
                new BatchNorm2d(c), Activation.relu()));
        for (int[] block : BLOCKS) {
            int out = scaled(block[0], b.width);
            parts.add(new DepthwiseSeparable(c, out, block[1], p));
            c = out;
        }
        features = registerModule("features", new Sequential(parts));
        head = registerModule("head", new Sequential(new Pool.GlobalAvgPool(), new Linear(c, b.classes, true, p)));
    }

    private static int scaled(int channels, double width) {
        return Math.max(1, (int) Math.round(channels * width));
    }

    @Override
    public Tensor forward(Tensor x) {
        try (Tensor f = features.apply(x)) {
            return head.apply(f);
        }
    }

    /**
     * A depthwise-separable convolution: a 3x3 depthwise convolution (one filter per channel,
     * groups = channels, with the stride), batch norm, ReLU, then a 1x1 pointwise convolution to
     * the output channels, batch norm, ReLU. Cost per output pixel: {@code 2 * (9 * in + in * out)}
     * FLOPs against {@code 2 * 9 * in * out} for a full 3x3 convolution.
     */
    public static final class DepthwiseSeparable extends Module {
        private final Sequential body;

        /** A block from {@code in} to {@code out} channels; {@code stride} on the depthwise convolution. */
        public DepthwiseSeparable(int in, int out, int stride, ParamOptions p) {
            ConvOptions dw = ConvOptions.builder().stride(stride, stride).padding(1, 1).groups(in).build();
            body = registerModule("body", new Sequential(new Conv2d(in, in, new long[] {3, 3}, dw, false, p),
                    new BatchNorm2d(in), Activation.relu(), ResNet.conv(in, out, 1, 1, p), new BatchNorm2d(out),
                    Activation.relu()));
        }

        @Override
        public Tensor forward(Tensor x) {
            return body.apply(x);
        }
    }
}
