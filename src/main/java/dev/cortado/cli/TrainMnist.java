package dev.cortado.cli;

import dev.cortado.autograd.Autograd;
import dev.cortado.distributed.DistributedDataParallel;
import dev.cortado.distributed.ProcessGroup;
import dev.cortado.graph.CaptureException;
import dev.cortado.graph.CompileOptions;
import dev.cortado.graph.CompiledFunction;
import dev.cortado.graph.Graphs;
import dev.cortado.graph.TrainingStep;
import dev.cortado.io.Batch;
import dev.cortado.io.Checkpoint;
import dev.cortado.io.DataLoader;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Reductions;
import dev.cortado.optim.Adam;
import dev.cortado.optim.CosineWithWarmup;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.function.BiFunction;
import java.util.function.Function;

/**
 * {@code train-mnist}: a small CNN (two conv-batchnorm-relu-maxpool stages, two linear layers)
 * trained with AdamW and a cosine schedule on the shipped 10,000 MNIST digits, evaluated after
 * every epoch on the genuine 10,000-image t10k test split.
 */
final class TrainMnist {
    /**
     * Command-line settings (defaults finish in about a minute on 2 CPU cores); {@code compile}
     * runs the training steps and the evaluations as compiled graphs ({@code --compile}).
     */
    record Settings(int epochs, int batchSize, double lr, long seed, Device device, Path out, boolean compile,
                    Path resume) {
        Settings(int epochs, int batchSize, double lr, long seed, Device device, Path out) {
            this(epochs, batchSize, lr, seed, device, out, false, null);
        }
    }

    /**
     * A module's forward compiled on its first call ({@link Graphs#compile}; parameters by reference,
     * so one compiled graph serves every evaluation while training updates the weights); used by
     * {@code --compile} of train-mnist and train-charlm.
     */
    static final class CompiledForward implements Function<Tensor, Tensor>, AutoCloseable {
        /** The batch is dynamic: a last, smaller batch is planned from the symbolic graph. */
        private static final CompileOptions DYNAMIC_BATCH = CompileOptions.builder().dynamicDim(0, 0, "B").build();

        private final Module model;
        private CompiledFunction compiled;

        CompiledForward(Module model) {
            this.model = model;
        }

        @Override
        public Tensor apply(Tensor x) {
            if (compiled == null) {
                compiled = Graphs.compile(model, x, DYNAMIC_BATCH);
                System.out.printf(Locale.ROOT, "evaluation runs a compiled graph: %d nodes, %s%n",
                        compiled.graph().nodes().size(), compiled.memoryPlan());
            }
            return compiled.apply(x);
        }

        @Override
        public void close() {
            if (compiled != null) {
                compiled.close();
            }
        }
    }

    /**
     * The training step compiled on its first batch ({@link Graphs#compileTrainingStep}: forward,
     * loss, backward, clipping, the data-parallel gradient average and the optimizer update as one
     * graph, the logits returned for the training accuracy); used by {@code --compile} of
     * train-mnist and train-charlm. A model the graph layer cannot capture is stepped eagerly by
     * the caller, with the reason printed once. The batch size must not change (the loaders drop
     * the last, smaller batch).
     */
    static final class CompiledStep implements AutoCloseable {
        private final Module model;
        private final BiFunction<Tensor, Tensor, Tensor> loss;
        private final Optimizer optimizer;
        private final CompileOptions options;
        private final boolean quiet;
        private TrainingStep step;
        private boolean refused;

        CompiledStep(Module model, BiFunction<Tensor, Tensor, Tensor> loss, Optimizer optimizer, CompileOptions options,
                boolean quiet) {
            this.model = model;
            this.loss = loss;
            this.optimizer = optimizer;
            this.options = CompileOptions.builder().from(options).returnModelOutput(true).build();
            this.quiet = quiet;
        }

        /**
         * One compiled step on {@code (x, y)}: the loss and the model's output, which the caller
         * closes; null when the model cannot be captured (the caller steps eagerly).
         */
        TrainingStep.Output run(Tensor x, Tensor y) {
            if (step == null && !refused) {
                long t0 = System.nanoTime();
                try {
                    step = Graphs.compileTrainingStep(model, loss, optimizer, x, y, options);
                } catch (CaptureException e) {
                    refused = true;
                    System.out.println("--compile: the training step cannot be captured (" + e.getMessage()
                            + "); it runs eagerly");
                    return null;
                }
                if (!quiet) {
                    System.out.printf(Locale.ROOT, "training steps run a compiled graph: %d nodes, %s; compiled in %.2f s%n",
                            step.graph().nodes().size(), step.memoryPlan(), (System.nanoTime() - t0) / 1e9);
                }
            }
            return step == null ? null : step.runWithOutput(x, y);
        }

        @Override
        public void close() {
            if (step != null) {
                step.close();
            }
        }
    }

    private TrainMnist() {
    }

    /** The model: [N, 1, 28, 28] -> [N, 10] logits. */
    static Sequential model(long seed) {
        ParamOptions p = ParamOptions.seeded(seed);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        return new Sequential(
                new Conv2d(1, 32, new long[] {3, 3}, same, false, p), new BatchNorm2d(32), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Conv2d(32, 64, new long[] {3, 3}, same, false, p), new BatchNorm2d(64), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Flatten(), new Linear(64 * 7 * 7, 128, true, p), Activation.relu(), new Linear(128, 10, true, p));
    }

    /**
     * Trains, evaluates, plots and saves; returns the final test accuracy. Started by {@code mpirun}
     * (or {@code launch --nproc N}) with more than one process, it trains data-parallel: each rank
     * its shard of every epoch with batch {@code batchSize}, gradients averaged by
     * {@link DistributedDataParallel}; rank 0 alone logs, evaluates and writes the checkpoint.
     */
    static double run(Settings s) throws IOException {
        Device device = s.device();
        int world = ProcessGroup.launchedWorldSize();
        try (ProcessGroup group = world > 1 ? ProcessGroup.mpi() : null) {
            int rank = group == null ? 0 : group.rank();
            if (rank == 0) {
                System.out.printf(Locale.ROOT, "train-mnist: %d epochs, batch %d%s, AdamW lr %.3g, seed %d, on %s%n",
                        s.epochs(), s.batchSize(), world > 1 ? " per process x " + world + " processes (MPI)" : "",
                        s.lr(), s.seed(), device);
            }
            return run(s, group, rank, world);
        }
    }

    private static double run(Settings s, ProcessGroup group, int rank, int world) throws IOException {
        Device device = s.device();
        try (TensorDataset train = Mnist.train10k(true); TensorDataset test = Mnist.test(true);
             Sequential model = model(s.seed());
             DataLoader loader = DataLoader.builder(train).batchSize(s.batchSize()).shuffle(s.seed()).dropLast(true)
                     .shard(rank, world).prefetch(2).device(device).build();
             DataLoader testLoader = DataLoader.builder(test).batchSize(1000).device(device).build();
             TrainingLog log = new TrainingLog(s.out(), "accuracy", rank != 0);
             CompiledForward compiled = new CompiledForward(model);
             DistributedDataParallel ddp = group == null ? null : DistributedDataParallel.builder(model, group).build()) {
            model.to(device);
            Function<Tensor, Tensor> forward = s.compile() ? compiled : model::forward;
            if (rank == 0) {
                System.out.printf(Locale.ROOT, "model: %,d parameters%n%s%n", model.numParameters(), model);
            }
            Optimizer opt = Adam.adamW().lr(s.lr()).weightDecay(1e-4).build(model.parameters());
            // --compile: the whole step as one graph, the gradients averaged over the processes inside it
            CompiledStep compiledStep = s.compile() ? new CompiledStep(model, Losses::crossEntropy, opt,
                    CompileOptions.builder().dataParallel(ddp).build(), rank != 0) : null;
            try (opt; compiledStep) {   // the optimizer's state (moments) is freed on every exit, an exception too
                int stepsPerEpoch = loader.size();
                long total = (long) stepsPerEpoch * s.epochs();
                CosineWithWarmup schedule = CosineWithWarmup.of(Math.min(100, total / 10), total);
                long step = 0;
                double accuracy = 0;
                Path ckpt = s.out().resolve("checkpoint.safetensors");
                int firstEpoch = 1;
                if (s.resume() != null) {   // every rank loads the file; DDP checks they loaded the same
                    Map<String, String> info = ddp != null ? ddp.resume(s.resume(), opt) : resume(s.resume(), model, opt);
                    step = Long.parseLong(info.getOrDefault("step", "0"));
                    if (step % stepsPerEpoch != 0) {
                        throw new IllegalArgumentException("train-mnist --resume " + s.resume() + ": step " + step
                                + " is not at the end of an epoch of " + stepsPerEpoch + " steps (batch size or process"
                                + " count changed?)");
                    }
                    firstEpoch = (int) (step / stepsPerEpoch) + 1;
                    if (firstEpoch > s.epochs()) {
                        throw new IllegalArgumentException("train-mnist --resume " + s.resume() + ": the checkpoint is"
                                + " already after epoch " + (firstEpoch - 1) + "; ask for more --epochs than that");
                    }
                    if (rank == 0) {
                        System.out.printf(Locale.ROOT, "resumed from %s at step %d: epochs %d to %d follow%s%n",
                                s.resume(), step, firstEpoch, s.epochs(), world > 1 ? " (every rank loaded it)" : "");
                    }
                }
                for (int epoch = firstEpoch; epoch <= s.epochs(); epoch++) {
                    model.train();
                    log.startEpoch(epoch, s.epochs(), stepsPerEpoch);
                    try (DataLoader.Epoch batches = loader.epoch(epoch - 1)) {
                        for (Batch b : batches) {
                            long t0 = System.nanoTime();
                            schedule.apply(opt, step);
                            double loss;
                            double correct;
                            try (b; Scope scope = Scope.open();
                                 TrainingStep.Output stepped = compiledStep == null ? null
                                         : compiledStep.run(b.input(), b.target())) {
                                if (stepped != null) {
                                    loss = stepped.loss().item();
                                    correct = countCorrect(stepped.modelOutput(), b.target());
                                } else {
                                    Tensor logits = model.forward(b.input());
                                    Tensor l = Losses.crossEntropy(logits, b.target());
                                    opt.zeroGrad();
                                    if (ddp != null) {
                                        ddp.backward(l);
                                    } else {
                                        l.backward();
                                    }
                                    opt.step();
                                    loss = l.item();
                                    correct = countCorrect(logits, b.target());
                                }
                            }
                            double seconds = (System.nanoTime() - t0) / 1e9;
                            log.step(epoch, step, loss, correct / b.size(), (double) b.size() * world / seconds,
                                    opt.groups().get(0).lr());
                            step++;
                        }
                    }
                    log.endEpoch();
                    if (rank == 0) {   // the replicas are equal: rank 0 evaluates for the job
                        double[] eval = evaluate(model, forward, testLoader, 10, Integer.MAX_VALUE);
                        accuracy = eval[1];
                        log.evaluation(epoch, step, eval[0], eval[1], "t10k test");
                    }
                    // after every epoch, atomically: a fault later leaves this one loadable (--resume)
                    Map<String, String> info = new LinkedHashMap<>();
                    info.put("step", Long.toString(step));
                    info.put("seed", Long.toString(s.seed()));
                    info.put("epochs", Integer.toString(epoch));
                    info.put("test_accuracy", String.format(Locale.ROOT, "%.4f", accuracy));
                    if (ddp != null) {
                        ddp.saveCheckpoint(ckpt, opt, info);
                    } else {
                        try (Scope views = Scope.open()) {   // the optimizer's state() gives views; the scope closes them
                            Checkpoint.save(ckpt, model.state(), opt.state(), info);
                        }
                    }
                }
                if (rank != 0) {
                    return accuracy;
                }
                System.out.printf(Locale.ROOT, "test accuracy %.2f%% after %d steps in %.1f s%nwrote %s, %s, %s%n",
                        100 * accuracy, step, log.elapsedSeconds(), s.out().resolve("metrics.csv"),
                        s.out().resolve("training-curves.png"), ckpt);
                return accuracy;
            }
        }
    }

    /** Loads a train-mnist checkpoint into the model and the optimizer; returns its info. */
    private static Map<String, String> resume(Path file, Module model, Optimizer opt) throws IOException {
        try (Checkpoint.Loaded loaded = Checkpoint.load(file, model.parameters().get(0).device())) {
            model.loadState(loaded.model(), true);
            opt.loadState(loaded.optimizer());
            return Map.copyOf(loaded.info());
        }
    }

    /** Mean loss and accuracy over a loader, in evaluation mode without recording. */
    static double[] evaluate(Sequential model, DataLoader loader) {
        return evaluate(model, loader, 10, Integer.MAX_VALUE);
    }

    /**
     * Mean cross-entropy and accuracy of {@code model}'s logits (last dimension {@code classes})
     * against the targets over the first {@code maxBatches} batches of {@code loader}, averaged
     * per predicted position, in evaluation mode without recording.
     */
    static double[] evaluate(Module model, DataLoader loader, int classes, int maxBatches) {
        return evaluate(model, model::forward, loader, classes, maxBatches);
    }

    /** {@link #evaluate(Module, DataLoader, int, int)} with the logits from {@code forward} (eager or compiled). */
    static double[] evaluate(Module model, Function<Tensor, Tensor> forward, DataLoader loader, int classes,
            int maxBatches) {
        model.eval();
        double lossSum = 0;
        double correct = 0;
        long n = 0;
        try (Autograd.GradMode off = Autograd.noGrad(); DataLoader.Epoch batches = loader.epoch(0)) {
            int seen = 0;
            for (Batch b : batches) {
                if (seen++ == maxBatches) {
                    b.close();
                    break;
                }
                try (b; Scope scope = Scope.open()) {
                    Tensor logits = forward.apply(b.input()).reshape(-1, classes);
                    Tensor targets = b.target().reshape(-1);
                    long count = targets.numel();
                    lossSum += Losses.crossEntropy(logits, targets).item() * count;
                    correct += countCorrect(logits, targets);
                    n += count;
                }
            }
        }
        model.train();
        return new double[] {lossSum / n, correct / n};
    }

    static double countCorrect(Tensor logits, Tensor target) {
        try (Autograd.GradMode off = Autograd.noGrad(); Scope scope = Scope.open()) {
            Tensor predicted = Reductions.argmax(logits, 1, false);
            return Reductions.sum(Elementwise.eq(predicted, target.to(predicted.dtype()))).item();
        }
    }
}
