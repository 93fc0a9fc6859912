package dev.cortado.models;

import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Pooling.PoolOptions;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * ResNeSt (Zhang et al., 2022): a ResNet-D whose bottleneck 3x3 convolution is a
 * {@link SplitAttention} convolution. The "D" parts: a deep stem (three 3x3 convolutions, the
 * first with stride 2, {@code stemWidth}, {@code stemWidth} and {@code 2 * stemWidth} channels,
 * then a 3x3 max pool), shortcuts that downsample by average pooling before their 1x1
 * convolution, and blocks that downsample by a 3x3 average pool after the split-attention
 * convolution ("avd") instead of striding it. Stochastic depth as in {@link ResNet}.
 *
 * <p>Parameters (1000 classes, radix 2, cardinality 1, bottleneck width 64): ResNeSt-50
 * 27,483,240 (the reference implementation's and timm's {@code resnest50d}; the paper's 27.5M).
 */
public final class ResNeSt extends Module {
    /** The block counts and stem widths of the published depths. */
    public enum Depth {
        R50(32, 3, 4, 6, 3),
        R101(64, 3, 4, 23, 3);

        final int stemWidth;
        final int[] blocks;

        Depth(int stemWidth, int... blocks) {
            this.stemWidth = stemWidth;
            this.blocks = blocks;
        }
    }

    private final Module stem;
    private final Sequential stages;
    private final Module head;

    /** A builder for {@code depth}. */
    public static Builder builder(Depth depth) {
        return new Builder(depth);
    }

    /** Options of a {@link ResNeSt}. */
    public static final class Builder {
        private final Depth depth;
        private int classes = 1000;
        private int inChannels = 3;
        private int width = 64;
        private int radix = 2;
        private int cardinality = 1;
        private boolean smallImages;
        private double stochasticDepth;
        private Generator dropGenerator = Generator.global();
        private ParamOptions params = ParamOptions.seeded(Generator.DEFAULT_SEED);

        private Builder(Depth depth) {
            this.depth = depth;
        }

        /** Number of classes of the classifier. */
        public Builder classes(int n) {
            classes = positive("classes", n);
            return this;
        }

        /** Channels of the input images. */
        public Builder inChannels(int n) {
            inChannels = positive("inChannels", n);
            return this;
        }

        /** Bottleneck channels of the first stage (64 in the paper); the stages double it. */
        public Builder width(int n) {
            width = positive("width", n);
            return this;
        }

        /** Splits per cardinal group (2 in ResNeSt-50). */
        public Builder radix(int n) {
            radix = positive("radix", n);
            return this;
        }

        /** Cardinal groups of each split-attention convolution (1 in ResNeSt-50). */
        public Builder cardinality(int n) {
            cardinality = positive("cardinality", n);
            return this;
        }

        /** One 3x3 stride-1 stem convolution and no max pool: for 28x28 or 32x32 images. */
        public Builder smallImages(boolean on) {
            smallImages = on;
            return this;
        }

        /** The drop rate of the last block's residual branch (0 = off), rising linearly from 0. */
        public Builder stochasticDepth(double rate, Generator generator) {
            if (!(rate >= 0 && rate < 1)) {
                throw new IllegalArgumentException("ResNeSt: stochastic depth rate must be in [0, 1), got " + rate);
            }
            stochasticDepth = rate;
            dropGenerator = generator;
            return this;
        }

        /** Parameter dtype, device and initialisation generator. */
        public Builder params(ParamOptions p) {
            params = p;
            return this;
        }

        /** The network. */
        public ResNeSt build() {
            return new ResNeSt(this);
        }

        private static int positive(String what, int n) {
            if (n < 1) {
                throw new IllegalArgumentException("ResNeSt: " + what + " must be positive, got " + n);
            }
            return n;
        }
    }

    private ResNeSt(Builder b) {
        ParamOptions p = b.params;
        int sw = b.depth.stemWidth;
        int in;
        if (b.smallImages) {
            in = b.width;
            stem = registerModule("stem", new Sequential(ResNet.conv(b.inChannels, in, 3, 1, p), new BatchNorm2d(in),
                    Activation.relu()));
        } else {
            in = 2 * sw;
            stem = registerModule("stem", new Sequential(ResNet.conv(b.inChannels, sw, 3, 2, p), new BatchNorm2d(sw),
                    Activation.relu(), ResNet.conv(sw, sw, 3, 1, p), new BatchNorm2d(sw), Activation.relu(),
                    ResNet.conv(sw, in, 3, 1, p), new BatchNorm2d(in), Activation.relu(), new Pool.MaxPool2d(3, 2, 1)));
        }
        int total = 0;
        for (int n : b.depth.blocks) {
            total += n;
        }
        List<Module> stageList = new ArrayList<>();
        int index = 0;
        for (int s = 0; s < 4; s++) {
            int planes = b.width << s;
            List<Module> blocks = new ArrayList<>();
            for (int i = 0; i < b.depth.blocks[s]; i++) {
                int stride = (i == 0 && s > 0) ? 2 : 1;
                double drop = total > 1 ? b.stochasticDepth * index / (total - 1) : 0;
                blocks.add(new Block(in, planes, stride, b.radix, b.cardinality, drop, b.dropGenerator, p));
                in = planes * 4;
                index++;
            }
            stageList.add(new Sequential(blocks));
        }
        stages = registerModule("stages", new Sequential(stageList));
        head = registerModule("head", new Sequential(new Pool.GlobalAvgPool(), new Linear(in, b.classes, true, p)));
    }

    @Override
    public Tensor forward(Tensor x) {
        try (Tensor s = stem.apply(x); Tensor f = stages.apply(s)) {
            return head.apply(f);
        }
    }

    /**
     * The ResNeSt bottleneck: 1x1 reduce, split-attention 3x3, a 3x3 average pool with the stride
     * when downsampling, 1x1 expand x4; the shortcut average-pools (ceil mode, padding not counted)
     * before its 1x1 convolution.
     */
    static final class Block extends ResNet.Residual {
        private final Module body;

        Block(int in, int planes, int stride, int radix, int cardinality, double drop, Generator g, ParamOptions p) {
            super(drop, g, shortcut(in, planes * 4, stride, p));
            List<Module> parts = new ArrayList<>(List.of(ResNet.conv(in, planes, 1, 1, p), new BatchNorm2d(planes),
                    Activation.relu(), new SplitAttention(planes, planes, 3, 1, radix, cardinality, p)));
            if (stride > 1) {
                parts.add(new Pool.AvgPool2d(3, stride, 1));
            }
            parts.add(ResNet.conv(planes, planes * 4L, 1, 1, p));
            parts.add(new BatchNorm2d(planes * 4L));
            body = registerModule("body", new Sequential(parts));
        }

        private static Module shortcut(int in, int out, int stride, ParamOptions p) {
            if (stride == 1 && in == out) {
                return null;
            }
            Module projection = ResNet.projection(in, out, 1, p);
            if (stride == 1) {
                return projection;
            }
            PoolOptions avg = PoolOptions.builder(stride, stride).stride(stride, stride).ceilMode(true)
                    .countIncludePad(false).build();
            return new Sequential(new Pool.AvgPool2d(avg), projection);
        }

        @Override
        Tensor branch(Tensor x) {
            return body.apply(x);
        }
    }
}
