package dev.cortado.models;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.nn.ModuleList;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * DenseNet (Huang et al., 2017) in the torchvision form: a 7x7 stride-2 stem and 3x3 max pool (or
 * a 3x3 stride-1 stem for small images), dense blocks whose every layer (batch norm, ReLU, 1x1
 * convolution to {@code bnSize * growth} channels, batch norm, ReLU, 3x3 convolution to
 * {@code growth} channels) reads the concatenation of all earlier feature maps of its block,
 * transitions (batch norm, ReLU, 1x1 convolution halving the channels, 2x2 average pool), a final
 * batch norm and ReLU, global average pooling and a linear classifier.
 *
 * <p>Parameters (1000 classes): DenseNet-121 7,978,856, DenseNet-169 14,149,480, DenseNet-201
 * 20,013,928, DenseNet-161 28,681,000 (torchvision's counts).
 */
public final class DenseNet extends Module {
    /** The published configurations: growth rate, stem width, layers per block. */
    public enum Depth {
        D121(32, 64, 6, 12, 24, 16),
        D161(48, 96, 6, 12, 36, 24),
        D169(32, 64, 6, 12, 32, 32),
        D201(32, 64, 6, 12, 48, 32);

        final int growth;
        final int stem;
        final int[] blocks;

        Depth(int growth, int stem, int... blocks) {
            this.growth = growth;
            this.stem = stem;
            this.blocks = blocks;
        }
    }

    private final Module stem;
    private final Sequential features;
    private final Module head;

    /** A builder for {@code depth}; the growth rate, stem width and block sizes may be changed. */
    public static Builder builder(Depth depth) {
        return new Builder(depth);
    }

    /** Options of a {@link DenseNet}. */
    public static final class Builder {
        private int growth;
        private int stemWidth;
        private int[] blocks;
        private int bnSize = 4;
        private int classes = 1000;
        private int inChannels = 3;
        private boolean smallImages;
        private ParamOptions params = ParamOptions.seeded(Generator.DEFAULT_SEED);

        private Builder(Depth depth) {
            growth = depth.growth;
            stemWidth = depth.stem;
            blocks = depth.blocks.clone();
        }

        /** Channels each dense layer adds (32 for DenseNet-121). */
        public Builder growth(int k) {
            growth = positive("growth", k);
            return this;
        }

        /** Channels of the stem (64 for DenseNet-121). */
        public Builder stemWidth(int n) {
            stemWidth = positive("stemWidth", n);
            return this;
        }

        /** Layers per dense block (one entry per block; transitions between them). */
        public Builder blocks(int... layers) {
            if (layers.length == 0) {
                throw new IllegalArgumentException("DenseNet: at least one dense block is needed");
            }
            for (int n : layers) {
                positive("layers per block", n);
            }
            blocks = layers.clone();
            return this;
        }

        /** The bottleneck width of a dense layer, in multiples of the growth rate (4 in the paper). */
        public Builder bnSize(int n) {
            bnSize = positive("bnSize", n);
            return this;
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

        /** A 3x3 stride-1 stem and no max pool: for 28x28 or 32x32 images (MNIST, CIFAR). */
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
        public DenseNet build() {
            return new DenseNet(this);
        }

        private static int positive(String what, int n) {
            if (n < 1) {
                throw new IllegalArgumentException("DenseNet: " + what + " must be positive, got " + n);
            }
            return n;
        }
    }

    private DenseNet(Builder b) {
        ParamOptions p = b.params;
        if (b.smallImages) {
            stem = registerModule("stem", new Sequential(ResNet.conv(b.inChannels, b.stemWidth, 3, 1, p),
                    new BatchNorm2d(b.stemWidth), Activation.relu()));
        } else {
            stem = registerModule("stem", new Sequential(ResNet.conv(b.inChannels, b.stemWidth, 7, 2, p),
                    new BatchNorm2d(b.stemWidth), Activation.relu(), new Pool.MaxPool2d(3, 2, 1)));
        }
        List<Module> parts = new ArrayList<>();
        int channels = b.stemWidth;
        for (int i = 0; i < b.blocks.length; i++) {
            DenseBlock block = new DenseBlock(channels, b.blocks[i], b.growth, b.bnSize, p);
            parts.add(block);
            channels = block.outChannels();
            if (i < b.blocks.length - 1) {
                parts.add(new Sequential(new BatchNorm2d(channels), Activation.relu(),
                        ResNet.conv(channels, channels / 2, 1, 1, p), new Pool.AvgPool2d(2, 2, 0)));
                channels /= 2;
            }
        }
        parts.add(new Sequential(new BatchNorm2d(channels), Activation.relu()));
        features = registerModule("features", new Sequential(parts));
        head = registerModule("head", new Sequential(new Pool.GlobalAvgPool(), new Linear(channels, b.classes, true, p)));
    }

    @Override
    public Tensor forward(Tensor x) {
        try (Tensor s = stem.apply(x); Tensor f = features.apply(s)) {
            return head.apply(f);
        }
    }

    /**
     * A dense block whose concatenations cost no copying beyond each layer's own new channels: one
     * buffer [N, in + layers * growth, H, W] is allocated per call, the block's input is copied
     * into its first channels, and layer i reads the view of the first {@code in + i * growth}
     * channels and writes its {@code growth} new channels after them. The naive form copies every
     * earlier feature map again at every layer, O(layers^2) copies and stored concatenations; here
     * the buffer is the only activation the block keeps for its backward.
     *
     * <p>Backward: the layers run under {@link Autograd#noGrad()} in the forward, and the block is
     * one node on the tape ({@link Autograd#recordFunction}) that saves only the buffer. Its
     * backward walks the layers from the last: it recomputes layer i from its view of the buffer
     * (with recording on), runs layer i's backward seeded with the gradient of its channels (complete
     * by then: only later layers read them), which gives its parameters their gradients, and adds the
     * gradient of its input into the gradient of the earlier channels, in place. Cost: one more
     * forward of every layer in the backward (as Pleiss et al.'s memory-efficient DenseNet);
     * batch-norm running statistics are restored after the recomputation, so they are updated once
     * per step. Layers must be deterministic (no dropout).
     */
    public static final class DenseBlock extends Module {
        private final int in;
        private final int growth;
        private final ModuleList<Module> layers;

        /** A block of {@code layers} dense layers on {@code in} input channels. */
        public DenseBlock(int in, int layers, int growth, int bnSize, ParamOptions p) {
            this.in = in;
            this.growth = growth;
            ModuleList<Module> list = new ModuleList<>();
            for (int i = 0; i < layers; i++) {
                int c = in + i * growth;
                list.add(new Sequential(new BatchNorm2d(c), Activation.relu(), ResNet.conv(c, (long) bnSize * growth, 1, 1, p),
                        new BatchNorm2d((long) bnSize * growth), Activation.relu(),
                        ResNet.conv((long) bnSize * growth, growth, 3, 1, p)));
            }
            this.layers = registerModule("layers", list);
        }

        /** Channels of the block's output. */
        public int outChannels() {
            return in + layers.size() * growth;
        }

        /** Layer {@code i} (maps the first {@code in + i * growth} channels to {@code growth} new ones). */
        public Module layer(int i) {
            return layers.get(i);
        }

        /** Number of dense layers. */
        public int size() {
            return layers.size();
        }

        @Override
        public Tensor forward(Tensor x) {
            if (x.rank() != 4 || x.size(1) != in) {
                throw new IllegalArgumentException("DenseBlock: expected input [N, " + in + ", H, W], got " + x.describe());
            }
            long n = x.size(0);
            long h = x.size(2);
            long w = x.size(3);
            Tensor buffer = Tensor.empty(x.dtype(), x.device(), n, outChannels(), h, w);
            try (var off = Autograd.noGrad()) {
                try (Tensor first = buffer.narrow(1, 0, in)) {
                    first.copyFrom(x);
                }
                for (int i = 0; i < layers.size(); i++) {
                    long c = in + (long) i * growth;
                    try (Tensor view = buffer.narrow(1, 0, c); Tensor out = layers.get(i).apply(view);
                         Tensor slot = buffer.narrow(1, c, growth)) {
                        slot.copyFrom(out);
                    }
                }
            } catch (RuntimeException | Error e) {
                buffer.close();
                throw e;
            }
            List<Tensor> inputs = new ArrayList<>();
            inputs.add(x);
            inputs.addAll(parameters());
            int count = inputs.size();
            boolean inputNeedsGradient = x.requiresGrad();
            Autograd.recordFunction("dense_block", inputs.toArray(new Tensor[0]), new Tensor[] {buffer},
                    new Tensor[] {buffer}, (saved, g) -> backward(saved[0], g[0], count, inputNeedsGradient));
            return buffer;
        }

        /** See the class comment; answers {input gradient or null, null for every parameter}. */
        private Tensor[] backward(Tensor buffer, Tensor gradOut, int inputCount, boolean inputNeedsGradient) {
            Tensor[] result = new Tensor[inputCount];
            if (gradOut == null) {
                return result;
            }
            Tensor grad = gradOut.copy();
            try {
                for (int i = layers.size() - 1; i >= 0; i--) {
                    long c = in + (long) i * growth;
                    Module layer = layers.get(i);
                    Map<String, Tensor> stats = snapshot(layer);
                    try (Tensor view = buffer.narrow(1, 0, c); Tensor leaf = view.detach().requiresGrad(true);
                         Tensor gOut = grad.narrow(1, c, growth)) {
                        try (var on = Autograd.enableGrad(); Tensor y = layer.apply(leaf)) {
                            y.backward(gOut, false);
                        } finally {
                            restore(layer, stats);
                        }
                        if (i > 0 || inputNeedsGradient) {
                            try (Tensor gIn = grad.narrow(1, 0, c); Tensor sum = gIn.add(leaf.grad())) {
                                gIn.copyFrom(sum);
                            }
                        }
                    }
                }
                if (inputNeedsGradient) {
                    try (Tensor first = grad.narrow(1, 0, in)) {
                        result[0] = first.copy();
                    }
                }
                return result;
            } finally {
                grad.close();
            }
        }

        @Override
        protected String extraRepr() {
            return "in=" + in + ", layers=" + layers.size() + ", growth=" + growth + ", shared buffer";
        }
    }

    /** Copies of a module's buffers (batch-norm running statistics), to undo a recomputation's update. */
    static Map<String, Tensor> snapshot(Module m) {
        Map<String, Tensor> copies = new LinkedHashMap<>();
        try (var off = Autograd.noGrad()) {
            for (Map.Entry<String, Tensor> e : m.namedBuffers().entrySet()) {
                copies.put(e.getKey(), e.getValue().copy());
            }
        }
        return copies;
    }

    /** Writes the snapshot back and closes it. */
    static void restore(Module m, Map<String, Tensor> copies) {
        Map<String, Tensor> now = m.namedBuffers();
        try (var off = Autograd.noGrad()) {
            for (Map.Entry<String, Tensor> e : copies.entrySet()) {
                try (Tensor saved = e.getValue()) {
                    now.get(e.getKey()).copyFrom(saved);
                }
            }
        }
    }
}
