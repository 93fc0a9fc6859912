package dev.cortado.models;

import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * ResNet (He et al., 2016) in the torchvision form: a 7x7 stride-2 stem and 3x3 max pool (or, for
 * small images, a 3x3 stride-1 stem without the pool), four stages of basic (two 3x3) or bottleneck
 * (1x1, 3x3, 1x1 with 4x expansion, stride on the 3x3 as in "ResNet v1.5") blocks, global average
 * pooling and a linear classifier. Convolutions without bias, each followed by batch norm; the
 * last batch norm of each block may start at zero ({@link Builder#zeroInitResidual}). Stochastic
 * depth (Huang et al., 2016) drops whole residual branches per sample in training, with the rate
 * rising linearly from 0 at the first block to {@link Builder#stochasticDepth} at the last.
 *
 * <p>Parameters (1000 classes): ResNet-18 11,689,512, ResNet-34 21,797,672, ResNet-50
 * 25,557,032, as published with torchvision.
 */
public final class ResNet extends Module {
    /** The block shapes of the published depths. */
    public enum Depth {
        R18(false, 2, 2, 2, 2),
        R34(false, 3, 4, 6, 3),
        R50(true, 3, 4, 6, 3),
        R101(true, 3, 4, 23, 3),
        R152(true, 3, 8, 36, 3);

        final boolean bottleneck;
        final int[] blocks;

        Depth(boolean bottleneck, int... blocks) {
            this.bottleneck = bottleneck;
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

    /** Options of a {@link ResNet}. */
    public static final class Builder {
        private final Depth depth;
        private int classes = 1000;
        private int inChannels = 3;
        private int width = 64;
        private boolean smallImages;
        private double stochasticDepth;
        private boolean zeroInitResidual;
        private ParamOptions params = ParamOptions.seeded(Generator.DEFAULT_SEED);
        private Generator dropGenerator = Generator.global();

        private Builder(Depth depth) {
            this.depth = depth;
        }

        /** Number of classes of the classifier. */
        public Builder classes(int n) {
            this.classes = positive("classes", n);
            return this;
        }

        /** Channels of the input images. */
        public Builder inChannels(int n) {
            this.inChannels = positive("inChannels", n);
            return this;
        }

        /** Channels of the first stage (64 in the paper); the stages double it. */
        public Builder width(int n) {
            this.width = positive("width", n);
            return this;
        }

        /** A 3x3 stride-1 stem and no max pool: for 28x28 or 32x32 images (MNIST, CIFAR). */
        public Builder smallImages(boolean on) {
            this.smallImages = on;
            return this;
        }

        /** The drop rate of the last block's residual branch (0 = off; 0.1-0.2 is usual). */
        public Builder stochasticDepth(double rate, Generator generator) {
            if (!(rate >= 0 && rate < 1)) {
                throw new IllegalArgumentException("ResNet: stochastic depth rate must be in [0, 1), got " + rate);
            }
            this.stochasticDepth = rate;
            this.dropGenerator = generator;
            return this;
        }

        /** Starts each block's last batch norm at zero, so each block starts as the identity (Goyal et al.). */
        public Builder zeroInitResidual(boolean on) {
            this.zeroInitResidual = on;
            return this;
        }

        /** Parameter dtype, device and initialisation generator. */
        public Builder params(ParamOptions p) {
            this.params = p;
            return this;
        }

        /** The network. */
        public ResNet build() {
            return new ResNet(this);
        }

        private static int positive(String what, int n) {
            if (n < 1) {
                throw new IllegalArgumentException("ResNet: " + what + " must be positive, got " + n);
            }
            return n;
        }
    }

    private ResNet(Builder b) {
        ParamOptions p = b.params;
        int w = b.width;
        if (b.smallImages) {
            stem = registerModule("stem", new Sequential(conv(b.inChannels, w, 3, 1, p), new BatchNorm2d(w),
                    Activation.relu()));
        } else {
            stem = registerModule("stem", new Sequential(conv(b.inChannels, w, 7, 2, p), new BatchNorm2d(w),
                    Activation.relu(), new Pool.MaxPool2d(3, 2, 1)));
        }
        int expansion = b.depth.bottleneck ? 4 : 1;
        int total = 0;
        for (int n : b.depth.blocks) {
            total += n;
        }
        List<Module> stageList = new ArrayList<>();
        int in = w;
        int index = 0;
        for (int s = 0; s < 4; s++) {
            int planes = w << s;
            List<Module> blocks = new ArrayList<>();
            for (int i = 0; i < b.depth.blocks[s]; i++) {
                int stride = (i == 0 && s > 0) ? 2 : 1;
                double drop = total > 1 ? b.stochasticDepth * index / (total - 1) : 0;
                blocks.add(b.depth.bottleneck
                        ? new Bottleneck(in, planes, stride, drop, b.dropGenerator, b.zeroInitResidual, p)
                        : new BasicBlock(in, planes, stride, drop, b.dropGenerator, b.zeroInitResidual, p));
                in = planes * expansion;
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

    static Conv2d conv(long in, long out, int kernel, int stride, ParamOptions p) {
        ConvOptions o = ConvOptions.builder().stride(stride, stride).padding(kernel / 2, kernel / 2).build();
        return new Conv2d(in, out, new long[] {kernel, kernel}, o, false, p);
    }

    /** The 1x1 (strided) convolution and batch norm that match a shortcut to its branch. */
    static Module projection(long in, long out, int stride, ParamOptions p) {
        ConvOptions o = ConvOptions.builder().stride(stride, stride).build();
        return new Sequential(new Conv2d(in, out, new long[] {1, 1}, o, false, p), new BatchNorm2d(out));
    }

    /** A residual block: relu(branch(x) * keep + shortcut(x)), keep the per-sample stochastic-depth mask. */
    abstract static class Residual extends Module {
        private final double drop;
        private final Generator generator;
        private final Module shortcut;

        Residual(double drop, Generator generator, Module shortcut) {
            this.drop = drop;
            this.generator = generator;
            this.shortcut = shortcut == null ? null : registerModule("shortcut", shortcut);
        }

        abstract Tensor branch(Tensor x);

        @Override
        public Tensor forward(Tensor x) {
            try (Tensor r = branch(x); Tensor sc = shortcut == null ? null : shortcut.apply(x)) {
                Tensor kept = dropPath(r);
                try (Tensor sum = Elementwise.add(kept, sc == null ? x : sc)) {
                    return Elementwise.relu(sum);
                } finally {
                    if (kept != r) {
                        kept.close();
                    }
                }
            }
        }

        /**
         * Zeroes whole samples of the branch with probability drop (scaling the rest by 1/(1-drop)),
         * in training only; otherwise answers {@code r} itself.
         */
        private Tensor dropPath(Tensor r) {
            if (drop == 0 || !isTraining()) {
                return r;
            }
            long[] maskShape = new long[r.rank()];
            java.util.Arrays.fill(maskShape, 1);
            maskShape[0] = r.size(0);
            try (Tensor ones = Tensor.ones(r.dtype(), r.device(), maskShape);
                 Tensor mask = F.dropout(ones, drop, true, generator)) {
                return Elementwise.mul(r, mask);
            }
        }

        @Override
        protected String extraRepr() {
            return drop == 0 ? "" : "stochastic_depth=" + String.format(java.util.Locale.ROOT, "%.3f", drop);
        }
    }

    /** Two 3x3 convolutions (ResNet-18/34). */
    static final class BasicBlock extends Residual {
        private final Module body;

        BasicBlock(int in, int planes, int stride, double drop, Generator g, boolean zeroInit, ParamOptions p) {
            super(drop, g, stride != 1 || in != planes ? projection(in, planes, stride, p) : null);
            BatchNorm2d last = new BatchNorm2d(planes);
            if (zeroInit) {
                zero(last);
            }
            body = registerModule("body", new Sequential(conv(in, planes, 3, stride, p), new BatchNorm2d(planes),
                    Activation.relu(), conv(planes, planes, 3, 1, p), last));
        }

        @Override
        Tensor branch(Tensor x) {
            return body.apply(x);
        }
    }

    /** 1x1 reduce, 3x3 (with the stride), 1x1 expand x4 (ResNet-50 and deeper). */
    static final class Bottleneck extends Residual {
        private final Module body;

        Bottleneck(int in, int planes, int stride, double drop, Generator g, boolean zeroInit, ParamOptions p) {
            super(drop, g, stride != 1 || in != planes * 4 ? projection(in, planes * 4L, stride, p) : null);
            BatchNorm2d last = new BatchNorm2d(planes * 4L);
            if (zeroInit) {
                zero(last);
            }
            body = registerModule("body", new Sequential(conv(in, planes, 1, 1, p), new BatchNorm2d(planes),
                    Activation.relu(), conv(planes, planes, 3, stride, p), new BatchNorm2d(planes), Activation.relu(),
                    conv(planes, planes * 4L, 1, 1, p), last));
        }

        @Override
        Tensor branch(Tensor x) {
            return body.apply(x);
        }
    }

    private static void zero(BatchNorm2d bn) {
        try (var off = dev.cortado.autograd.Autograd.noGrad(); Tensor z = Tensor.zeros(bn.parameter("weight").dtype(),
                bn.parameter("weight").numel())) {
            bn.parameter("weight").copyFrom(z);
        }
    }
}
