package dev.cortado.models;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Init;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ModuleList;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Normalization;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * An elastic supernet in the manner of Once-for-All (Cai et al., 2020) and BigNAS (Yu et al.,
 * 2020): a residual CNN whose every sub-network shares the largest one's weights. Per stage, the
 * depth (the first d blocks run), the kernel size of the blocks' convolutions (the centre k x k
 * crop of the largest kernel) and the inner width of the blocks (the first w filters and channels)
 * are chosen by {@link #setActive(Config)}, per step. The stem, the block outputs and the head are
 * fixed. Blocks: {@code relu(bn(conv_k(relu(bn(conv_k(x))))) + shortcut(x))}, the first
 * convolution to the inner width (with the stage's stride on the first block), the second back to
 * the stage width.
 *
 * <p>Training: {@link #sandwichStep} applies the sandwich rule (the largest, the smallest and
 * {@code n} random sub-networks every step, gradients summed) with in-place distillation (the
 * smaller ones learn the largest one's predicted distribution). Deployment: {@link #extract}
 * copies the active sub-network's slices into an ordinary standalone model (plain convolutions,
 * batch norms and linear layer) that computes the same function. The running statistics of the
 * batch norms are shared by all sub-networks: re-estimate them for the chosen one (forward passes
 * of the extracted model in training mode under no-grad) before evaluating it, as OFA does.
 */
public final class ElasticNet extends Module {
    private final Builder config;
    private final Module stem;
    private final List<ModuleList<Block>> stages = new ArrayList<>();
    private final Linear head;
    private Config active;

    /**
     * A sub-network: per stage, the number of blocks that run, their kernel size and inner width.
     *
     * @param depths  blocks per stage, each in the builder's depth choices
     * @param kernels kernel size per stage, each in the kernel choices
     * @param widths  inner width per stage, each in that stage's width choices
     */
    public record Config(int[] depths, int[] kernels, int[] widths) {
        @Override
        public String toString() {
            return "depths " + Arrays.toString(depths) + ", kernels " + Arrays.toString(kernels) + ", widths "
                    + Arrays.toString(widths);
        }
    }

    /** A builder with a small default shape (3 stages of width 16, 32, 64). */
    public static Builder builder() {
        return new Builder();
    }

    /** Options of an {@link ElasticNet}. */
    public static final class Builder {
        private int inChannels = 3;
        private int classes = 10;
        private int stemWidth = 16;
        private int[] stageWidths = {16, 32, 64};
        private int[] depthChoices = {1, 2, 3};
        private int[] kernelChoices = {3, 5, 7};
        private double[] widthRatios = {0.5, 0.75, 1.0};
        private int expansion = 2;
        private ParamOptions params = ParamOptions.seeded(Generator.DEFAULT_SEED);

        private Builder() {
        }

        /** Channels of the input images. */
        public Builder inChannels(int n) {
            inChannels = positive("inChannels", n);
            return this;
        }

        /** Number of classes of the head. */
        public Builder classes(int n) {
            classes = positive("classes", n);
            return this;
        }

        /** Channels of the stem. */
        public Builder stemWidth(int n) {
            stemWidth = positive("stemWidth", n);
            return this;
        }

        /** Output channels of each stage (each stage after the first halves the resolution). */
        public Builder stageWidths(int... widths) {
            for (int w : widths) {
                positive("stage width", w);
            }
            stageWidths = widths.clone();
            return this;
        }

        /** The depths a stage may take; the largest is the number of blocks built. */
        public Builder depthChoices(int... d) {
            for (int v : d) {
                positive("depth choice", v);
            }
            depthChoices = sorted(d);
            return this;
        }

        /** The kernel sizes a stage may take (odd); the largest is the size stored. */
        public Builder kernelChoices(int... k) {
            for (int v : k) {
                if (v < 1 || v % 2 == 0) {
                    throw new IllegalArgumentException("ElasticNet: kernel choices must be odd and positive, got " + v);
                }
            }
            kernelChoices = sorted(k);
            return this;
        }

        /** The inner widths a stage may take, as fractions (in (0, 1]) of the largest one. */
        public Builder widthRatios(double... r) {
            for (double v : r) {
                if (!(v > 0 && v <= 1)) {
                    throw new IllegalArgumentException("ElasticNet: width ratios must be in (0, 1], got " + v);
                }
            }
            widthRatios = r.clone();
            Arrays.sort(widthRatios);
            return this;
        }

        /** The largest inner width of a block, in multiples of its stage width (2). */
        public Builder expansion(int e) {
            expansion = positive("expansion", e);
            return this;
        }

        /** Parameter dtype, device and initialisation generator. */
        public Builder params(ParamOptions p) {
            params = p;
            return this;
        }

        /** The supernet, active at its largest sub-network. */
        public ElasticNet build() {
            return new ElasticNet(this);
        }

        private static int positive(String what, int n) {
            if (n < 1) {
                throw new IllegalArgumentException("ElasticNet: " + what + " must be positive, got " + n);
            }
            return n;
        }

        private static int[] sorted(int[] v) {
            if (v.length == 0) {
                throw new IllegalArgumentException("ElasticNet: a choice list is empty");
            }
            int[] s = v.clone();
            Arrays.sort(s);
            return s;
        }
    }

    private ElasticNet(Builder b) {
        this.config = b;
        ParamOptions p = b.params;
        stem = registerModule("stem", new Sequential(ResNet.conv(b.inChannels, b.stemWidth, 3, 1, p),
                new BatchNorm2d(b.stemWidth), Activation.relu()));
        int in = b.stemWidth;
        int maxDepth = b.depthChoices[b.depthChoices.length - 1];
        int maxKernel = b.kernelChoices[b.kernelChoices.length - 1];
        for (int s = 0; s < b.stageWidths.length; s++) {
            ModuleList<Block> blocks = new ModuleList<>();
            for (int i = 0; i < maxDepth; i++) {
                int stride = (i == 0 && s > 0) ? 2 : 1;
                blocks.add(new Block(in, b.stageWidths[s] * b.expansion, b.stageWidths[s], maxKernel, stride, p));
                in = b.stageWidths[s];
            }
            stages.add(registerModule("stage" + s, blocks));
        }
        head = registerModule("head", new Linear(in, b.classes, true, p));
        active = largest();
    }

    /** The widths stage {@code s} may take. */
    public int[] widthChoices(int s) {
        int max = config.stageWidths[s] * config.expansion;
        return Arrays.stream(config.widthRatios).mapToInt(r -> Math.max(1, (int) Math.round(r * max))).distinct().toArray();
    }

    /** Every stage at its largest depth, kernel and width. */
    public Config largest() {
        int n = config.stageWidths.length;
        int[] d = new int[n];
        int[] k = new int[n];
        int[] w = new int[n];
        for (int s = 0; s < n; s++) {
            d[s] = config.depthChoices[config.depthChoices.length - 1];
            k[s] = config.kernelChoices[config.kernelChoices.length - 1];
            int[] wc = widthChoices(s);
            w[s] = wc[wc.length - 1];
        }
        return new Config(d, k, w);
    }

    /** Every stage at its smallest depth, kernel and width. */
    public Config smallest() {
        int n = config.stageWidths.length;
        int[] d = new int[n];
        int[] k = new int[n];
        int[] w = new int[n];
        for (int s = 0; s < n; s++) {
            d[s] = config.depthChoices[0];
            k[s] = config.kernelChoices[0];
            w[s] = widthChoices(s)[0];
        }
        return new Config(d, k, w);
    }

    /** A sub-network drawn uniformly per stage from the choices. */
    public Config sample(SplittableRandom random) {
        int n = config.stageWidths.length;
        int[] d = new int[n];
        int[] k = new int[n];
        int[] w = new int[n];
        for (int s = 0; s < n; s++) {
            d[s] = config.depthChoices[random.nextInt(config.depthChoices.length)];
            k[s] = config.kernelChoices[random.nextInt(config.kernelChoices.length)];
            int[] wc = widthChoices(s);
            w[s] = wc[random.nextInt(wc.length)];
        }
        return new Config(d, k, w);
    }

    /** Makes {@code c} the sub-network that {@link #forward} runs. */
    public void setActive(Config c) {
        int n = config.stageWidths.length;
        if (c.depths().length != n || c.kernels().length != n || c.widths().length != n) {
            throw new IllegalArgumentException("ElasticNet: a config needs one entry per stage (" + n + "), got " + c);
        }
        for (int s = 0; s < n; s++) {
            int stage = s;
            if (Arrays.stream(config.depthChoices).noneMatch(v -> v == c.depths()[stage])
                    || Arrays.stream(config.kernelChoices).noneMatch(v -> v == c.kernels()[stage])
                    || Arrays.stream(widthChoices(s)).noneMatch(v -> v == c.widths()[stage])) {
                throw new IllegalArgumentException("ElasticNet: stage " + s + " of " + c + " is not among the choices");
            }
        }
        active = new Config(c.depths().clone(), c.kernels().clone(), c.widths().clone());
    }

    /** The sub-network {@link #forward} runs. */
    public Config active() {
        return active;
    }

    @Override
    public Tensor forward(Tensor x) {
        Tensor h = stem.apply(x);
        for (int s = 0; s < stages.size(); s++) {
            for (int i = 0; i < active.depths()[s]; i++) {
                try (Tensor in = h) {
                    h = stages.get(s).get(i).forward(in, active.kernels()[s], active.widths()[s]);
                }
            }
        }
        try (Tensor f = h; Tensor pooled = dev.cortado.ops.Reductions.mean(f, false, 2, 3)) {
            return head.apply(pooled);
        }
    }

    /**
     * One step of the sandwich rule with in-place distillation: the largest sub-network learns the
     * labels (cross entropy); the smallest and {@code randomSubnets} sampled ones learn the
     * largest one's softmax (cross entropy against it, detached); their gradients add up and the
     * optimizer steps once. Leaves the largest sub-network active. Answers the largest one's loss.
     */
    public double sandwichStep(Tensor images, Tensor labels, Optimizer optimizer, int randomSubnets,
            SplittableRandom random) {
        optimizer.zeroGrad();
        double loss;
        Tensor teacher;
        setActive(largest());
        try (Tensor logits = apply(images); Tensor l = Losses.crossEntropy(logits, labels)) {
            l.backward();
            loss = l.item();
            try (var off = Autograd.noGrad(); Tensor d = logits.detach()) {
                teacher = Normalization.softmax(d, 1);
            }
        }
        try (teacher) {
            List<Config> students = new ArrayList<>();
            students.add(smallest());
            for (int i = 0; i < randomSubnets; i++) {
                students.add(sample(random));
            }
            for (Config c : students) {
                setActive(c);
                try (Tensor logits = apply(images); Tensor l = Losses.crossEntropy(logits, teacher)) {
                    l.backward();
                }
            }
        } finally {
            setActive(largest());
        }
        optimizer.step();
        return loss;
    }

    /**
     * The active sub-network as a standalone model of ordinary layers with copies of its weight
     * slices (and batch-norm statistics): in evaluation mode it computes what this supernet
     * computes with that sub-network active. The caller owns (closes) it.
     */
    public Module extract() {
        ParamOptions p = config.params;
        List<Module> parts = new ArrayList<>();
        Module stemCopy = new Sequential(ResNet.conv(config.inChannels, config.stemWidth, 3, 1, p),
                new BatchNorm2d(config.stemWidth), Activation.relu());
        stemCopy.loadState(stem.state(), true);
        parts.add(stemCopy);
        int in = config.stemWidth;
        for (int s = 0; s < stages.size(); s++) {
            for (int i = 0; i < active.depths()[s]; i++) {
                parts.add(stages.get(s).get(i).extract(in, active.kernels()[s], active.widths()[s], p));
                in = config.stageWidths[s];
            }
        }
        parts.add(new Pool.GlobalAvgPool());
        Linear headCopy = new Linear(in, config.classes, true, p);
        headCopy.loadState(head.state(), true);
        parts.add(headCopy);
        Sequential model = new Sequential(parts);
        model.train(isTraining());
        return model;
    }

    @Override
    protected String extraRepr() {
        return "active: " + active;
    }

    /** A convolution whose output channels, input channels and (centred) kernel are sliced per call. */
    static final class ElasticConv extends Module {
        private final int maxKernel;
        private final int stride;

        ElasticConv(int maxIn, int maxOut, int maxKernel, int stride, ParamOptions p) {
            this.maxKernel = maxKernel;
            this.stride = stride;
            registerParameter("weight", unscoped(() -> Init.kaimingUniform(Tensor.empty(p.dtype(), p.device(), maxOut,
                    maxIn, maxKernel, maxKernel), Init.Fan.FAN_IN, Init.gain("relu"), p.generator())));
        }

        /** The first {@code out} filters over the input's channels, centre {@code kernel} x {@code kernel}. */
        Tensor slice(long in, long out, int kernel) {
            int start = (maxKernel - kernel) / 2;
            try (Tensor a = parameter("weight").narrow(0, 0, out); Tensor b = a.narrow(1, 0, in);
                 Tensor c = b.narrow(2, start, kernel); Tensor d = c.narrow(3, start, kernel)) {
                return d.contiguous();
            }
        }

        ConvOptions options(int kernel) {
            return ConvOptions.builder().stride(stride, stride).padding(kernel / 2, kernel / 2).build();
        }

        Tensor forward(Tensor x, long out, int kernel) {
            try (Tensor w = slice(x.size(1), out, kernel)) {
                return Convolution.conv2d(x, w, null, options(kernel));
            }
        }

        @Override
        public Tensor forward(Tensor x) {
            return forward(x, parameter("weight").size(0), maxKernel);
        }

        /** A plain convolution holding a copy of the slice. */
        Conv2d extract(long in, long out, int kernel, ParamOptions p) {
            Conv2d conv = new Conv2d(in, out, new long[] {kernel, kernel}, options(kernel), false, p);
            try (var off = Autograd.noGrad(); Tensor w = slice(in, out, kernel)) {
                conv.parameter("weight").copyFrom(w);
            }
            return conv;
        }
    }

    /** A batch norm over the first C of its channels (C from the input). */
    static final class ElasticNorm extends Module {
        private final BatchNorm.BatchNormAttrs attrs = new BatchNorm.BatchNormAttrs(1e-5, 0.1, DataLayout.NCHW);

        ElasticNorm(int maxChannels, ParamOptions p) {
            registerParameter("weight", unscoped(() -> Init.ones(Tensor.empty(p.dtype(), p.device(), maxChannels))));
            registerParameter("bias", unscoped(() -> Init.zeros(Tensor.empty(p.dtype(), p.device(), maxChannels))));
            registerBuffer("running_mean", unscoped(() -> Tensor.zeros(DType.FLOAT32, p.device(), maxChannels)));
            registerBuffer("running_var", unscoped(() -> Tensor.ones(DType.FLOAT32, p.device(), maxChannels)));
        }

        @Override
        public Tensor forward(Tensor x) {
            long c = x.size(1);
            try (Tensor w = parameter("weight").narrow(0, 0, c); Tensor b = parameter("bias").narrow(0, 0, c);
                 Tensor rm = buffer("running_mean").narrow(0, 0, c); Tensor rv = buffer("running_var").narrow(0, 0, c)) {
                if (isTraining()) {
                    Tensor[] r = BatchNorm.training(x, w, b, rm, rv, attrs);
                    r[1].close();
                    r[2].close();
                    return r[0];
                }
                return BatchNorm.inference(x, w, b, rm, rv, attrs);
            }
        }

        /** A plain batch norm holding copies of the first {@code c} channels' parameters and statistics. */
        BatchNorm2d extract(long c) {
            BatchNorm2d bn = new BatchNorm2d(c);
            try (var off = Autograd.noGrad()) {
                for (String name : new String[] {"weight", "bias"}) {
                    try (Tensor src = parameter(name).narrow(0, 0, c)) {
                        bn.parameter(name).copyFrom(src);
                    }
                }
                for (String name : new String[] {"running_mean", "running_var"}) {
                    try (Tensor src = buffer(name).narrow(0, 0, c)) {
                        bn.buffer(name).copyFrom(src);
                    }
                }
            }
            return bn;
        }

        @Override
        protected boolean keepsDType(String name) {
            return true; // float32 like BatchNorm2d's state
        }
    }

    /** The elastic residual block. */
    static final class Block extends Module {
        private final ElasticConv conv1;
        private final ElasticNorm bn1;
        private final ElasticConv conv2;
        private final ElasticNorm bn2;
        private final Module shortcut;
        private final int out;

        Block(int in, int maxInner, int out, int maxKernel, int stride, ParamOptions p) {
            this.out = out;
            conv1 = registerModule("conv1", new ElasticConv(in, maxInner, maxKernel, stride, p));
            bn1 = registerModule("bn1", new ElasticNorm(maxInner, p));
            conv2 = registerModule("conv2", new ElasticConv(maxInner, out, maxKernel, 1, p));
            bn2 = registerModule("bn2", new ElasticNorm(out, p));
            shortcut = stride != 1 || in != out ? registerModule("shortcut", ResNet.projection(in, out, stride, p)) : null;
        }

        Tensor forward(Tensor x, int kernel, int inner) {
            try (Tensor a = conv1.forward(x, inner, kernel); Tensor b = bn1.apply(a); Tensor c = b.relu();
                 Tensor d = conv2.forward(c, out, kernel); Tensor e = bn2.apply(d);
                 Tensor sc = shortcut == null ? null : shortcut.apply(x);
                 Tensor sum = e.add(sc == null ? x : sc)) {
                return sum.relu();
            }
        }

        @Override
        public Tensor forward(Tensor x) {
            return forward(x, (int) conv1.parameter("weight").size(2), (int) conv1.parameter("weight").size(0));
        }

        Module extract(int in, int kernel, int inner, ParamOptions p) {
            Module sc = null;
            if (shortcut != null) {
                ConvOptions o = ConvOptions.builder().stride(conv1.stride, conv1.stride).build();
                sc = new Sequential(new Conv2d(in, out, new long[] {1, 1}, o, false, p), new BatchNorm2d(out));
                sc.loadState(shortcut.state(), true);
            }
            Module body = new Sequential(conv1.extract(in, inner, kernel, p), bn1.extract(inner), Activation.relu(),
                    conv2.extract(inner, out, kernel, p), bn2.extract(out));
            return new Extracted(body, sc);
        }
    }

    /** An extracted block: relu(body(x) + shortcut(x)). */
    static final class Extracted extends ResNet.Residual {
        private final Module body;

        Extracted(Module body, Module shortcut) {
            super(0, Generator.global(), shortcut);
            this.body = registerModule("body", body);
        }

        @Override
        Tensor branch(Tensor x) {
            return body.apply(x);
        }
    }
}
