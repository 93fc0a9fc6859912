package dev.cortado.bench;

import ai.djl.Model;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.nn.Block;
import ai.djl.nn.Blocks;
import ai.djl.nn.Parameter;
import ai.djl.nn.SequentialBlock;
import ai.djl.nn.convolutional.Conv2d;
import ai.djl.nn.core.Linear;
import ai.djl.nn.norm.BatchNorm;
import ai.djl.nn.pooling.Pool;
import ai.djl.training.DefaultTrainingConfig;
import ai.djl.training.GradientCollector;
import ai.djl.training.Trainer;
import ai.djl.training.loss.Loss;
import ai.djl.training.optimizer.Optimizer;
import ai.djl.training.tracker.Tracker;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Pooling.PoolOptions;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.Tensor;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The models, data and training steps of {@link TrainingStepBenchmark}, built identically in
 * Cortado ({@code dev.cortado.nn} + {@code dev.cortado.optim}) and in PyTorch through DJL
 * ({@code ai.djl.nn} blocks, a {@link Trainer} with softmax cross-entropy and SGD).
 *
 * <p>One training step = forward, mean softmax cross-entropy against integer labels, backward,
 * SGD update (momentum 0.9, lr 0.01, no weight decay), gradients cleared, loss read back as a
 * float. Both sides start from the same weights (Cortado's PyTorch-style initialisation from a
 * seeded generator, copied into the DJL parameters) and train on the same fixed batch.
 */
final class TrainingModels {
    static final double LR = 0.01;
    static final double MOMENTUM = 0.9;
    static final long WEIGHT_SEED = 1234;
    static final long DATA_SEED = 42;

    private TrainingModels() {
    }

    /**
     * A model geometry. MLP: in -> h1 -> h2 -> classes (ReLU between). CNN on [batch, 1, hw, hw]:
     * conv 1->c1 3x3 pad 1, BN, ReLU, maxpool 2, conv c1->c2 3x3 pad 1, BN, ReLU, maxpool 2,
     * flatten (c2 * (hw/4)^2), linear -> hidden, ReLU, linear -> classes.
     */
    record Spec(String name, boolean cnn, int batch, int in, int h1, int h2, int hidden, int classes) {
        /** Input dims (NCHW for the CNN). */
        long[] inputDims() {
            return cnn ? new long[] {batch, 1, in, in} : new long[] {batch, in};
        }

        long inputNumel() {
            long n = 1;
            for (long d : inputDims()) {
                n *= d;
            }
            return n;
        }

        int flat() {
            int s = in / 4;
            return h2 * s * s;
        }

        /**
         * Multiply-add FLOPs of one training step (forward + 2x for backward), counting only
         * matmuls and convolutions (x3 in total); elementwise, BN, pooling and the optimizer
         * are not counted.
         */
        double flops() {
            double fwd;
            if (cnn) {
                double s1 = (double) in * in;
                double s2 = s1 / 4;
                fwd = 2.0 * batch * (s1 * h1 * 9 + s2 * h2 * h1 * 9 + (double) flat() * hidden + (double) hidden * classes);
            } else {
                fwd = 2.0 * batch * ((double) in * h1 + (double) h1 * h2 + (double) h2 * classes);
            }
            return 3 * fwd;
        }
    }

    static Spec spec(String model) {
        return switch (model) {
            case "mlp" -> new Spec(model, false, 256, 784, 1024, 1024, 0, 10);
            case "cnn" -> new Spec(model, true, 128, 28, 32, 64, 128, 10);
            // the same op sequence on shapes where kernel time is negligible: step time ~ host overhead
            case "mlp_tiny" -> new Spec(model, false, 2, 16, 16, 16, 0, 10);
            case "cnn_tiny" -> new Spec(model, true, 2, 8, 2, 4, 8, 10);
            default -> throw new IllegalArgumentException("unknown model " + model);
        };
    }

    // ------------------------------------------------------------------ data
    /** The fixed batch: inputs uniform in [0, 1) (NCHW for the CNN), labels uniform in [0, classes). */
    record Data(float[] x, long[] labels) {
        static Data of(Spec s) {
            SplittableRandom r = new SplittableRandom(DATA_SEED);
            float[] x = new float[Math.toIntExact(s.inputNumel())];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) r.nextDouble();
            }
            long[] y = new long[s.batch()];
            for (int i = 0; i < y.length; i++) {
                y[i] = r.nextInt(s.classes());
            }
            return new Data(x, y);
        }
    }

    // ------------------------------------------------------------------ Cortado
    /** The model in {@code layout} (the MLP ignores it), weights from {@link #WEIGHT_SEED}. */
    static Sequential cortadoModel(Spec s, DataLayout layout) {
        ParamOptions po = ParamOptions.seeded(WEIGHT_SEED);
        if (!s.cnn()) {
            return new Sequential(new dev.cortado.nn.Linear(s.in(), s.h1(), true, po), dev.cortado.nn.Activation.relu(),
                    new dev.cortado.nn.Linear(s.h1(), s.h2(), true, po), dev.cortado.nn.Activation.relu(),
                    new dev.cortado.nn.Linear(s.h2(), s.classes(), true, po));
        }
        ConvOptions co = ConvOptions.builder().stride(1).padding(1).layout(layout).build();
        PoolOptions pool = PoolOptions.builder(2).stride(2).layout(layout).build();
        long[] k3 = {3, 3};
        return new Sequential(
                new dev.cortado.nn.Conv2d(1, s.h1(), k3, co, true, po),
                new BatchNorm2d(s.h1(), 1e-5, 0.1, true, true, layout, po),
                dev.cortado.nn.Activation.relu(),
                new dev.cortado.nn.Pool.MaxPool2d(pool),
                new dev.cortado.nn.Conv2d(s.h1(), s.h2(), k3, co, true, po),
                new BatchNorm2d(s.h2(), 1e-5, 0.1, true, true, layout, po),
                dev.cortado.nn.Activation.relu(),
                new dev.cortado.nn.Pool.MaxPool2d(pool),
                new Flatten(),
                new dev.cortado.nn.Linear(s.flat(), s.hidden(), true, po), dev.cortado.nn.Activation.relu(),
                new dev.cortado.nn.Linear(s.hidden(), s.classes(), true, po));
    }

    /**
     * Makes an NHWC CNN compute exactly what the NCHW one computes: copies every state entry,
     * permuting the first linear layer's input features from (c, h, w) order to (h, w, c)
     * (NHWC flatten order).
     */
    static void copyToNhwc(Spec s, Module nchw, Module nhwc) {
        Map<String, Tensor> src = nchw.state();
        Map<String, Tensor> dst = nhwc.state();
        int side = s.in() / 4;
        for (Map.Entry<String, Tensor> e : dst.entrySet()) {
            Tensor from = src.get(e.getKey());
            if (e.getKey().equals("9.weight")) {
                try (Tensor plain = from.detach();
                     Tensor r = plain.reshape(s.hidden(), s.h2(), side, side);
                     Tensor p = r.permute(0, 2, 3, 1);
                     Tensor c = p.contiguous();
                     Tensor f = c.reshape(s.hidden(), s.flat())) {
                    e.getValue().copyFrom(f);
                }
            } else {
                e.getValue().copyFrom(from);
            }
        }
    }

    /** One Cortado training step on a fixed batch. */
    static final class CortadoStep implements AutoCloseable {
        final Spec spec;
        final Sequential model;
        final Sgd optimizer;
        final Tensor x;
        final Tensor y;

        CortadoStep(Spec s, DataLayout layout, Data d) {
            this.spec = s;
            this.model = cortadoModel(s, layout);
            if (s.cnn() && layout == DataLayout.NHWC) {
                try (Sequential ref = cortadoModel(s, DataLayout.NCHW)) {
                    copyToNhwc(s, ref, model);
                }
            }
            this.optimizer = Sgd.builder().lr(LR).momentum(MOMENTUM).build(model.parameters());
            try (dev.cortado.tensor.Scope ignored = dev.cortado.tensor.Scope.detached()) {
                Tensor x0 = Tensor.of(d.x(), s.inputDims());
                if (s.cnn() && layout == DataLayout.NHWC) {
                    try (x0; Tensor p = x0.permute(0, 2, 3, 1)) {
                        x = p.contiguous();
                    }
                } else {
                    x = x0;
                }
                y = Tensor.of(d.labels(), s.batch());
            }
        }

        /** forward, loss, backward, SGD step, gradients dropped; returns the loss before the update. */
        float step() {
            try (dev.cortado.tensor.Scope ignored = dev.cortado.tensor.Scope.open()) {
                Tensor logits = model.forward(x);
                Tensor loss = Losses.crossEntropy(logits, y);
                loss.backward();
                optimizer.step();
                optimizer.zeroGrad();
                return (float) loss.item();
            }
        }

        /** Parameters, then batch-norm running statistics (num_batches_tracked skipped), as DJL lists them. */
        List<Map.Entry<String, Tensor>> djlOrderedState() {
            List<Map.Entry<String, Tensor>> out = new ArrayList<>();
            for (Map.Entry<String, Tensor> e : model.state().entrySet()) {
                if (!e.getKey().endsWith("num_batches_tracked")) {
                    out.add(e);
                }
            }
            return out;
        }

        @Override
        public void close() {
            optimizer.close();
            model.close();
            x.close();
            y.close();
        }
    }

    // ------------------------------------------------------------------ PyTorch through DJL
    static Block djlBlock(Spec s) {
        if (!s.cnn()) {
            return new SequentialBlock()
                    .add(Linear.builder().setUnits(s.h1()).build()).add(Activation.reluBlock())
                    .add(Linear.builder().setUnits(s.h2()).build()).add(Activation.reluBlock())
                    .add(Linear.builder().setUnits(s.classes()).build());
        }
        Shape k3 = new Shape(3, 3);
        Shape p1 = new Shape(1, 1);
        Shape two = new Shape(2, 2);
        return new SequentialBlock()
                .add(Conv2d.builder().setKernelShape(k3).optPadding(p1).setFilters(s.h1()).build())
                .add(BatchNorm.builder().optEpsilon(1e-5f).optMomentum(0.9f).build())  // DJL momentum 0.9 = PyTorch's 0.1
                .add(Activation.reluBlock())
                .add(Pool.maxPool2dBlock(two, two))
                .add(Conv2d.builder().setKernelShape(k3).optPadding(p1).setFilters(s.h2()).build())
                .add(BatchNorm.builder().optEpsilon(1e-5f).optMomentum(0.9f).build())
                .add(Activation.reluBlock())
                .add(Pool.maxPool2dBlock(two, two))
                .add(Blocks.batchFlattenBlock())
                .add(Linear.builder().setUnits(s.hidden()).build()).add(Activation.reluBlock())
                .add(Linear.builder().setUnits(s.classes()).build());
    }

    /**
     * One PyTorch training step through DJL's training API: {@code trainer.forward},
     * {@code Loss.softmaxCrossEntropyLoss().evaluate}, {@code GradientCollector.backward},
     * {@code trainer.step()} (DJL's fused-per-parameter {@code sgdUpdate} JNI call, then grad
     * zeroed in place). The step's intermediates live in a sub-manager closed after the step.
     */
    static final class TorchStep implements AutoCloseable {
        /** Cortado's state names (last component) and DJL's parameter names. */
        static final Map<String, java.util.Set<String>> DJL_NAMES = Map.of("weight", java.util.Set.of("weight", "gamma"),
                "bias", java.util.Set.of("bias", "beta"), "running_mean", java.util.Set.of("runningMean"),
                "running_var", java.util.Set.of("runningVar"));

        final Spec spec;
        final Model model;
        final Trainer trainer;
        final NDManager base;
        final NDArray x;
        final NDArray y;

        TorchStep(NDManager base, Spec s, Data d, List<Map.Entry<String, Tensor>> initial) {
            this.spec = s;
            this.base = base;
            model = Model.newInstance(s.name(), ai.djl.Device.cpu(), "PyTorch");
            model.setBlock(djlBlock(s));
            DefaultTrainingConfig config = new DefaultTrainingConfig(Loss.softmaxCrossEntropyLoss())
                    .optOptimizer(Optimizer.sgd().setLearningRateTracker(Tracker.fixed((float) LR))
                            .optMomentum((float) MOMENTUM).build())
                    .optDevices(new ai.djl.Device[] {ai.djl.Device.cpu()});
            trainer = model.newTrainer(config);
            trainer.initialize(new Shape(s.inputDims()));
            List<Parameter> params = new ArrayList<>(model.getBlock().getParameters().values());
            if (params.size() != initial.size()) {
                throw new IllegalStateException(s.name() + ": DJL has " + params.size() + " parameters/statistics, Cortado "
                        + initial.size());
            }
            for (int i = 0; i < params.size(); i++) {
                NDArray a = params.get(i).getArray();
                String name = initial.get(i).getKey();
                Tensor t = initial.get(i).getValue();
                String djlName = params.get(i).getName();
                if (!java.util.Arrays.equals(a.getShape().getShape(), t.dims()) || !DJL_NAMES.get(
                        name.substring(name.lastIndexOf('.') + 1)).contains(djlName)) {
                    throw new IllegalStateException(s.name() + ": DJL parameter " + djlName + " " + a.getShape()
                            + " does not match Cortado's " + name + " " + t.describe());
                }
                a.set(FloatBuffer.wrap(t.toFloatArray()));
            }
            x = base.create(d.x(), new Shape(s.inputDims()));
            y = base.create(d.labels(), new Shape(s.batch()));
        }

        float step() {
            try (NDManager m = base.newSubManager()) {
                NDArray xs = x.stopGradient();
                xs.attach(m);
                NDArray ys = y.stopGradient();
                ys.attach(m);
                float l;
                try (GradientCollector gc = trainer.newGradientCollector()) {
                    NDList pred = trainer.forward(new NDList(xs));
                    NDArray loss = trainer.getLoss().evaluate(new NDList(ys), pred);
                    gc.backward(loss);
                    l = loss.getFloat();
                }
                trainer.step();
                return l;
            }
        }

        @Override
        public void close() {
            trainer.close();
            model.close();
        }
    }

    // ------------------------------------------------------------------ checks and memory
    /** Runs {@code steps} steps and returns the losses; fails unless the last is below the first. */
    static float[] losses(String what, int steps, java.util.function.Supplier<Float> step) {
        float[] l = new float[steps];
        for (int i = 0; i < steps; i++) {
            l[i] = step.get();
        }
        System.out.println("# sanity " + what + " losses " + java.util.Arrays.toString(l));
        if (!(l[steps - 1] < l[0]) || !Float.isFinite(l[steps - 1])) {
            throw new IllegalStateException(what + ": the loss does not decrease over " + steps + " steps on a fixed batch: "
                    + java.util.Arrays.toString(l));
        }
        return l;
    }

    /** Fails unless two loss trajectories agree (relative tolerance {@code tol}). */
    static void sameLosses(String what, float[] a, float[] b, double tol) {
        for (int i = 0; i < a.length; i++) {
            double e = Math.abs(a[i] - b[i]) / Math.max(1.0, Math.abs(a[i]));
            if (!(e <= tol)) {
                throw new IllegalStateException(what + ": losses differ at step " + i + ": " + java.util.Arrays.toString(a)
                        + " vs " + java.util.Arrays.toString(b) + " (tolerance " + tol + ")");
            }
        }
        System.out.println("# sanity " + what + ": loss trajectories agree within " + tol);
    }

    /**
     * Cortado's host-memory high-water mark over {@code steps} steps: a thread samples
     * {@link CpuBackend#allocatedBytes()} (live tensor bytes of Cortado's allocator, excluding its
     * block cache and any kernel-internal scratch not taken from the allocator) in a spin loop.
     * Returns {live bytes before the steps, peak, cached bytes after, live bytes after}.
     */
    static long[] peakMemory(int steps, Runnable step) {
        long before = CpuBackend.allocatedBytes();
        AtomicLong peak = new AtomicLong(before);
        AtomicBoolean running = new AtomicBoolean(true);
        Thread sampler = new Thread(() -> {
            long p = before;
            while (running.get()) {
                long a = CpuBackend.allocatedBytes();
                if (a > p) {
                    p = a;
                }
                Thread.onSpinWait();
            }
            peak.set(p);
        }, "alloc-sampler");
        sampler.setDaemon(true);
        sampler.start();
        for (int i = 0; i < steps; i++) {
            step.run();
        }
        running.set(false);
        try {
            sampler.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        long after = CpuBackend.allocatedBytes();
        return new long[] {before, Math.max(peak.get(), after), CpuBackend.cachedBytes(), after};
    }

    static String mib(long bytes) {
        return String.format("%.2f MiB", bytes / 1048576.0);
    }
}
