package dev.cortado.bench;

import dev.cortado.graph.CompileOptions;
import dev.cortado.graph.CompiledFunction;
import dev.cortado.graph.Graphs;
import dev.cortado.graph.TrainingStep;
import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.CausalLanguageModel;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Generator;
import dev.cortado.optim.Adam;
import dev.cortado.optim.GradClip;
import dev.cortado.optim.Optimizer;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Compiled ({@code dev.cortado.graph}) against eager inference, same model, same input, same run:
 * <ul>
 *   <li>{@code mnistCnn*}: the MNIST CNN of {@code train-mnist} (conv-BN-ReLU-pool twice, two linear
 *       layers; eval mode) at batch 256 (issue #16's bar: compiled at least 1.3x eager);</li>
 *   <li>{@code mlp*}: a 3-layer MLP (784-256-256-10, ReLU) at batch 1, where host overhead per op
 *       dominates (the bar: at least 3x less overhead per op than eager);</li>
 *   <li>{@code mlpGradients*}: the same MLP's cross-entropy loss and parameter gradients at batch 64,
 *       eager through the tape against {@code Graphs.compileGradients} (the optimizer step, eager in
 *       both, is left out).</li>
 *   <li>{@code mnistCnnStep*} and {@code charLmStep*}: whole training steps (forward, loss, backward,
 *       clipping to norm 1, AdamW update) of the MNIST CNN (train mode: batch norm updates its running
 *       statistics) at batch 64 and of the character model of {@code train-charlm} at batch 16 x 128
 *       tokens, eager against {@code Graphs.compileTrainingStep} (issue #16's bar: compiled at least
 *       1.2x eager); {@code charLmStepCheckpointed} compiles the character model's step with a memory
 *       budget of 40% of the eager step's measured peak (activation checkpointing; the bar: at most 1.35x the time).
 *       The compiled step is one graph: the optimizer's update is graph nodes ({@code update.optimizer},
 *       one after all gradients when clipping).</li>
 *   <li>{@code mnistCnnSgdStep*}: the MNIST CNN's step with SGD (momentum 0.9) and no clipping, where
 *       the compiled graph updates each parameter as soon as its gradient is ready (one
 *       {@code update.optimizer} node per parameter), so each gradient's memory is reused early;
 *       eager against compiled, with the same memory counters.</li>
 *   <li>{@code mnistCnnStepCompiledNchw}, {@code resnetStep*}: layout propagation in training graphs.
 *       The compiled CNN steps run NHWC from the images to the flatten, backward included (three
 *       transposes per step); the {@code *Nchw} variants compile the same step with
 *       {@code propagateLayout(false)}. {@code resnetStep*} is a CIFAR ResNet-18 of width 16 at
 *       batch 32 x 3 x 32 x 32 (SGD with momentum), where the convolutions dominate.</li>
 *   <li>{@code vitStep*}: the whole ViT training step (patch embedding, class token, 4 pre-norm blocks
 *       of dim 192 and 3 heads, 64 patches of 4 x 4 from 32 x 32 images, the head, cross-entropy,
 *       backward, clipping to norm 1, AdamW) at batch 16, eager against one compiled graph.</li>
 * </ul>
 * The memory figures (planned peak of each compiled step, with checkpointing, the eager peak of the
 * same graph and the eager step's measured allocation peak, in bytes) and the batch-1 MLP's op counts
 * (host overhead per op is the time over the op count) do not change with time: each trial prints them
 * once, on a line starting {@code GraphBenchmark figures}. (They were JMH secondary results before;
 * JMH sums an {@code EVENTS} counter over the measurement iterations, which multiplied them by the
 * iteration count.) Every timing at 1 and 2 threads ({@code threads}).
 * Run: {@code java -cp "target/benchmarks.jar:$(cat target/classpath.txt)" org.openjdk.jmh.Main GraphBenchmark}.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 3, time = 2, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 2, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class GraphBenchmark {
    @Param({"1", "2"})
    public int threads;

    private Module cnn;
    private Module mlp;
    private Tensor images;
    private Tensor row;
    private CompiledFunction cnnCompiled;
    private CompiledFunction mlpCompiled;
    private Module trained;
    private Tensor batch;
    private Tensor labels;
    private CompiledFunction gradients;
    private Module cnnTrain;
    private Module cnnEager;
    private Optimizer cnnOpt;
    private Optimizer cnnEagerOpt;
    private TrainingStep cnnStep;
    private Tensor stepImages;
    private Tensor stepLabels;
    private Module lm;
    private Module lmEager;
    private Module lmCheckpointed;
    private Optimizer lmOpt;
    private Optimizer lmEagerOpt;
    private Optimizer lmCheckpointedOpt;
    private TrainingStep lmStep;
    private TrainingStep lmStepCheckpointed;
    private Tensor tokens;
    private Tensor nextTokens;
    private Module cnnSgd;
    private Module cnnSgdEager;
    private Optimizer cnnSgdOpt;
    private Optimizer cnnSgdEagerOpt;
    private TrainingStep cnnSgdStep;
    private long cnnSgdEagerMeasuredPeak;
    private Module cnnNchw;
    private Optimizer cnnNchwOpt;
    private TrainingStep cnnNchwStep;
    private Module resnet;
    private Module resnetEager;
    private Module resnetNchw;
    private Optimizer resnetOpt;
    private Optimizer resnetEagerOpt;
    private Optimizer resnetNchwOpt;
    private TrainingStep resnetStep;
    private TrainingStep resnetNchwStep;
    private Tensor cifar;
    private Tensor cifarLabels;
    private Module vit;
    private Module vitEager;
    private Optimizer vitOpt;
    private Optimizer vitEagerOpt;
    private TrainingStep vitStep;
    private Tensor vitImages;
    private Tensor vitLabels;

    /**
     * Peak memory of the compiled training steps, reported next to their times (bytes, not rates):
     * the planned peak of the compiled step, with checkpointing, the eager peak of the same graph
     * (every tensor freed right after its last read), and the peak the eager step was measured to
     * allocate above what it started with ({@link #measuredEagerPeak}, once at setup).
     */
    private static final int VOCAB = 65;

    private static Module charModel() {
        return new CausalLanguageModel(new CausalLanguageModel.Config(VOCAB, 128, 4, 4, 2, 384, 128, 0.0),
                ParamOptions.seeded(3));
    }

    private static Module mnistCnn() {
        ParamOptions p = ParamOptions.seeded(4);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        Module m = new Sequential(
                new Conv2d(1, 32, new long[] {3, 3}, same, false, p), new BatchNorm2d(32), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Conv2d(32, 64, new long[] {3, 3}, same, false, p), new BatchNorm2d(64), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Flatten(), new Linear(64 * 7 * 7, 128, true, p), Activation.relu(), new Linear(128, 10, true, p));
        m.train();
        return m;
    }

    private static Module resnet() {
        Module m = dev.cortado.models.ResNet.builder(dev.cortado.models.ResNet.Depth.R18).smallImages(true).width(16)
                .classes(10).params(ParamOptions.seeded(6)).build();
        m.train();
        return m;
    }

    private static Module vit() {
        Module m = dev.cortado.models.VisionTransformer.builder(32, 4).dim(192).depth(4).heads(3).classes(10)
                .params(ParamOptions.seeded(8)).build();
        m.train();
        return m;
    }

    private static Tensor charLoss(Tensor logits, Tensor targets) {
        try (Tensor flat = logits.reshape(-1, VOCAB); Tensor t = targets.reshape(-1)) {
            return Losses.crossEntropy(flat, t);
        }
    }

    private static Optimizer adamW(Module m) {
        return Adam.adamW().lr(1e-3).weightDecay(0.01).build(m.parameters());
    }

    /**
     * Runs {@code step} once and returns the most host memory Cortado's CPU allocator held during it
     * above what it held before: sampled at every tensor construction, view, copy and host read
     * through a {@link dev.cortado.tensor.TensorTracer} (which records nothing; ops run as usual).
     */
    static long measuredEagerPeak(Runnable step) {
        long base = dev.cortado.backend.cpu.CpuBackend.allocatedBytes();
        long[] peak = {base};
        dev.cortado.tensor.TensorTracer sampler = new dev.cortado.tensor.TensorTracer() {
            private void sample() {
                peak[0] = Math.max(peak[0], dev.cortado.backend.cpu.CpuBackend.allocatedBytes());
            }

            @Override
            public void created(Tensor tensor) {
                sample();
            }

            @Override
            public void derived(String name, Tensor source, Tensor result) {
                sample();
            }

            @Override
            public void writing(String what, Tensor target) {
                sample();
            }

            @Override
            public void reading(String what, Tensor source) {
                sample();
            }
        };
        try (dev.cortado.tensor.TensorTracer.Installation i = dev.cortado.tensor.TensorTracer.install(sampler)) {
            step.run();
        }
        return peak[0] - base;
    }

    private long cnnEagerMeasuredPeak;
    private long lmEagerMeasuredPeak;

    private static double eagerStep(Module m, Optimizer opt, java.util.function.BiFunction<Tensor, Tensor, Tensor> loss,
            Tensor x, Tensor y) {
        return eagerStep(m, opt, loss, x, y, true);
    }

    private static Optimizer sgd(Module m) {
        return Sgd.builder().lr(0.01).momentum(0.9).build(m.parameters());
    }

    private static double eagerStep(Module m, Optimizer opt, java.util.function.BiFunction<Tensor, Tensor, Tensor> loss,
            Tensor x, Tensor y, boolean clip) {
        opt.zeroGrad();
        double address;
        try (Tensor out = m.forward(x); Tensor l = loss.apply(out, y)) {
            l.backward();
            address = l.dataAddress();
        }
        if (clip) {
            GradClip.clipByGlobalNorm(opt.params(), 1.0);
        }
        opt.step();
        opt.zeroGrad();
        return address;
    }

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        ParamOptions p = ParamOptions.seeded(1);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        cnn = new Sequential(
                new Conv2d(1, 32, new long[] {3, 3}, same, false, p), new BatchNorm2d(32), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Conv2d(32, 64, new long[] {3, 3}, same, false, p), new BatchNorm2d(64), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Flatten(), new Linear(64 * 7 * 7, 128, true, p), Activation.relu(), new Linear(128, 10, true, p));
        cnn.eval();
        mlp = new Sequential(new Linear(784, 256, true, p), Activation.relu(), new Linear(256, 256, true, p),
                Activation.relu(), new Linear(256, 10, true, p));
        mlp.eval();
        Generator g = Generator.seeded(2);
        images = g.uniform(0, 1, DType.FLOAT32, Device.CPU, 256, 1, 28, 28);
        row = g.uniform(0, 1, DType.FLOAT32, Device.CPU, 1, 784);
        cnnCompiled = Graphs.compile(cnn, images);
        mlpCompiled = Graphs.compile(mlp, row);
        trained = new Sequential(new Linear(784, 256, true, p), Activation.relu(), new Linear(256, 256, true, p),
                Activation.relu(), new Linear(256, 10, true, p));
        batch = g.uniform(0, 1, DType.FLOAT32, Device.CPU, 64, 784);
        long[] classes = new long[64];
        for (int i = 0; i < classes.length; i++) {
            classes[i] = i % 10;
        }
        labels = Tensor.of(classes, 64);
        gradients = Graphs.compileGradients(trained, Losses::crossEntropy, batch, labels, CompileOptions.defaults());

        CompileOptions clipped = CompileOptions.builder().maxGradNorm(1.0).build();
        cnnTrain = mnistCnn();
        cnnEager = mnistCnn();
        cnnOpt = adamW(cnnTrain);
        cnnEagerOpt = adamW(cnnEager);
        stepImages = g.uniform(0, 1, DType.FLOAT32, Device.CPU, 64, 1, 28, 28);
        stepLabels = Tensor.of(java.util.Arrays.copyOf(classes, 64), 64);
        cnnStep = Graphs.compileTrainingStep(cnnTrain, Losses::crossEntropy, cnnOpt, stepImages, stepLabels, clipped);
        lm = charModel();
        lmEager = charModel();
        lmCheckpointed = charModel();
        lmOpt = adamW(lm);
        lmEagerOpt = adamW(lmEager);
        lmCheckpointedOpt = adamW(lmCheckpointed);
        long[] ids = new long[16 * 128];
        long[] next = new long[ids.length];
        java.util.Random r = new java.util.Random(5);
        for (int i = 0; i < ids.length; i++) {
            ids[i] = r.nextInt(VOCAB);
            next[i] = r.nextInt(VOCAB);
        }
        tokens = Tensor.of(ids, 16, 128);
        nextTokens = Tensor.of(next, 16, 128);
        lmStep = Graphs.compileTrainingStep(lm, GraphBenchmark::charLoss, lmOpt, tokens, nextTokens, clipped);
        // measured on throw-away copies, so that the timed eager models start from the same state
        try (Module cm = mnistCnn(); Optimizer co = adamW(cm); Module lmm = charModel(); Optimizer lo = adamW(lmm)) {
            eagerStep(cm, co, Losses::crossEntropy, stepImages, stepLabels); // optimizer state allocated
            cnnEagerMeasuredPeak = measuredEagerPeak(() -> eagerStep(cm, co, Losses::crossEntropy, stepImages, stepLabels));
            eagerStep(lmm, lo, GraphBenchmark::charLoss, tokens, nextTokens);
            lmEagerMeasuredPeak = measuredEagerPeak(() -> eagerStep(lmm, lo, GraphBenchmark::charLoss, tokens, nextTokens));
        }
        cnnSgd = mnistCnn();
        cnnSgdEager = mnistCnn();
        cnnSgdOpt = sgd(cnnSgd);
        cnnSgdEagerOpt = sgd(cnnSgdEager);
        cnnSgdStep = Graphs.compileTrainingStep(cnnSgd, Losses::crossEntropy, cnnSgdOpt, stepImages, stepLabels);
        try (Module cm = mnistCnn(); Optimizer co = sgd(cm)) {
            eagerStep(cm, co, Losses::crossEntropy, stepImages, stepLabels, false); // momentum buffers allocated
            cnnSgdEagerMeasuredPeak = measuredEagerPeak(() -> eagerStep(cm, co, Losses::crossEntropy, stepImages, stepLabels,
                    false));
        }
        CompileOptions nchw = CompileOptions.builder().maxGradNorm(1.0).propagateLayout(false).build();
        cnnNchw = mnistCnn();
        cnnNchwOpt = adamW(cnnNchw);
        cnnNchwStep = Graphs.compileTrainingStep(cnnNchw, Losses::crossEntropy, cnnNchwOpt, stepImages, stepLabels, nchw);
        cifar = g.uniform(0, 1, DType.FLOAT32, Device.CPU, 32, 3, 32, 32);
        cifarLabels = Tensor.of(java.util.Arrays.copyOf(classes, 32), 32);
        resnet = resnet();
        resnetEager = resnet();
        resnetNchw = resnet();
        resnetOpt = sgd(resnet);
        resnetEagerOpt = sgd(resnetEager);
        resnetNchwOpt = sgd(resnetNchw);
        resnetStep = Graphs.compileTrainingStep(resnet, Losses::crossEntropy, resnetOpt, cifar, cifarLabels);
        resnetNchwStep = Graphs.compileTrainingStep(resnetNchw, Losses::crossEntropy, resnetNchwOpt, cifar, cifarLabels,
                CompileOptions.builder().propagateLayout(false).build());
        vit = vit();
        vitEager = vit();
        vitOpt = adamW(vit);
        vitEagerOpt = adamW(vitEager);
        try (Tensor images16 = cifar.narrow(0, 0, 16); Tensor labels16 = cifarLabels.narrow(0, 0, 16)) {
            vitImages = images16.contiguous();
            vitLabels = labels16.contiguous();
        }
        vitStep = Graphs.compileTrainingStep(vit, Losses::crossEntropy, vitOpt, vitImages, vitLabels, clipped);
        long budget = (long) (0.4 * lmEagerMeasuredPeak); // issue #16: at most 0.4x the eager step's measured peak
        lmStepCheckpointed = Graphs.compileTrainingStep(lmCheckpointed, GraphBenchmark::charLoss, lmCheckpointedOpt, tokens,
                nextTokens, CompileOptions.builder().maxGradNorm(1.0).memoryBudget(budget).build());
        System.out.printf(java.util.Locale.ROOT, "GraphBenchmark figures (bytes; threads %d): character-model step planned"
                + " %d, checkpointed %d, eager by the same plan %d, eager measured %d; MNIST CNN step (AdamW) planned %d,"
                + " eager by the plan %d, eager measured %d; MNIST CNN step (SGD) planned %d, eager by the plan %d, eager"
                + " measured %d; ViT step planned %d, eager by the plan %d; batch-1 MLP: %d captured op calls, %d compiled"
                + " nodes%n", threads, lmStep.memoryPlan().plannedPeakBytes(),
                lmStepCheckpointed.memoryPlan().plannedPeakBytes(), lmStep.memoryPlan().eagerPeakBytes(),
                lmEagerMeasuredPeak, cnnStep.memoryPlan().plannedPeakBytes(), cnnStep.memoryPlan().eagerPeakBytes(),
                cnnEagerMeasuredPeak, cnnSgdStep.memoryPlan().plannedPeakBytes(),
                cnnSgdStep.memoryPlan().eagerPeakBytes(), cnnSgdEagerMeasuredPeak,
                vitStep.memoryPlan().plannedPeakBytes(), vitStep.memoryPlan().eagerPeakBytes(),
                mlpCompiled.capturedGraph().nodes().size(), mlpCompiled.graph().nodes().size());
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        for (AutoCloseable c : new AutoCloseable[] {cnnNchwStep, cnnNchwOpt, cnnNchw, resnetStep, resnetNchwStep, resnetOpt,
            resnetEagerOpt, resnetNchwOpt, resnet, resnetEager, resnetNchw, cifar, cifarLabels, vitStep, vitOpt, vitEagerOpt,
            vit, vitEager, vitImages, vitLabels}) {
            try {
                c.close();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }
        cnnStep.close();
        cnnSgdStep.close();
        cnnSgdOpt.close();
        cnnSgdEagerOpt.close();
        cnnSgd.close();
        cnnSgdEager.close();
        lmStep.close();
        lmStepCheckpointed.close();
        for (Optimizer o : new Optimizer[] {cnnOpt, cnnEagerOpt, lmOpt, lmEagerOpt, lmCheckpointedOpt}) {
            o.close();
        }
        for (Module m : new Module[] {cnnTrain, cnnEager, lm, lmEager, lmCheckpointed}) {
            m.close();
        }
        stepImages.close();
        stepLabels.close();
        tokens.close();
        nextTokens.close();
        cnnCompiled.close();
        mlpCompiled.close();
        gradients.close();
        batch.close();
        labels.close();
        trained.close();
        images.close();
        row.close();
        cnn.close();
        mlp.close();
    }

    @Benchmark
    public long mnistCnnEager() {
        try (Tensor y = cnn.forward(images)) {
            return y.dataAddress();
        }
    }

    @Benchmark
    public long mnistCnnCompiled() {
        try (Tensor y = cnnCompiled.apply(images)) {
            return y.dataAddress();
        }
    }

    @Benchmark
    public long mlpBatch1Eager() {
        try (Tensor y = mlp.forward(row)) {
            return y.dataAddress();
        }
    }

    @Benchmark
    public double mlpGradientsEager() {
        trained.zeroGrad();
        double sum;
        try (Tensor logits = trained.forward(batch); Tensor loss = Losses.crossEntropy(logits, labels)) {
            loss.backward();
            sum = loss.dataAddress();
        }
        for (Tensor t : trained.parameters()) {
            sum += t.grad().dataAddress();
        }
        trained.zeroGrad();
        return sum;
    }

    @Benchmark
    public double mlpGradientsCompiled() {
        Tensor[] r = gradients.applyAll(batch, labels);
        double sum = 0;
        for (Tensor t : r) {
            sum += t.dataAddress();
            t.close();
        }
        return sum;
    }

    @Benchmark
    public long mlpBatch1Compiled() {
        try (Tensor y = mlpCompiled.apply(row)) {
            return y.dataAddress();
        }
    }

    @Benchmark
    public double mnistCnnStepEager() {
        return eagerStep(cnnEager, cnnEagerOpt, Losses::crossEntropy, stepImages, stepLabels);
    }

    @Benchmark
    public double mnistCnnStepCompiled() {
        try (Tensor loss = cnnStep.run(stepImages, stepLabels)) {
            return loss.dataAddress();
        }
    }

    @Benchmark
    public double mnistCnnSgdStepEager() {
        return eagerStep(cnnSgdEager, cnnSgdEagerOpt, Losses::crossEntropy, stepImages, stepLabels, false);
    }

    @Benchmark
    public double mnistCnnSgdStepCompiled() {
        try (Tensor loss = cnnSgdStep.run(stepImages, stepLabels)) {
            return loss.dataAddress();
        }
    }

    @Benchmark
    public double charLmStepEager() {
        return eagerStep(lmEager, lmEagerOpt, GraphBenchmark::charLoss, tokens, nextTokens);
    }

    @Benchmark
    public double charLmStepCompiled() {
        try (Tensor loss = lmStep.run(tokens, nextTokens)) {
            return loss.dataAddress();
        }
    }

    @Benchmark
    public double charLmStepCheckpointed() {
        try (Tensor loss = lmStepCheckpointed.run(tokens, nextTokens)) {
            return loss.dataAddress();
        }
    }

    @Benchmark
    public double mnistCnnStepCompiledNchw() {
        try (Tensor loss = cnnNchwStep.run(stepImages, stepLabels)) {
            return loss.dataAddress();
        }
    }

    @Benchmark
    public double resnetStepEager() {
        return eagerStep(resnetEager, resnetEagerOpt, Losses::crossEntropy, cifar, cifarLabels, false);
    }

    @Benchmark
    public double resnetStepCompiled() {
        try (Tensor loss = resnetStep.run(cifar, cifarLabels)) {
            return loss.dataAddress();
        }
    }

    @Benchmark
    public double resnetStepCompiledNchw() {
        try (Tensor loss = resnetNchwStep.run(cifar, cifarLabels)) {
            return loss.dataAddress();
        }
    }

    @Benchmark
    public double vitStepEager() {
        return eagerStep(vitEager, vitEagerOpt, Losses::crossEntropy, vitImages, vitLabels);
    }

    @Benchmark
    public double vitStepCompiled() {
        try (Tensor loss = vitStep.run(vitImages, vitLabels)) {
            return loss.dataAddress();
        }
    }
}
