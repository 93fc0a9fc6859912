package dev.cortado.djl;

import ai.djl.Device;
import ai.djl.Model;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
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
import ai.djl.training.EasyTrain;
import ai.djl.training.Trainer;
import ai.djl.training.dataset.ArrayDataset;
import ai.djl.training.dataset.Batch;
import ai.djl.training.initializer.Initializer;
import ai.djl.training.loss.Loss;
import ai.djl.training.optimizer.Optimizer;
import ai.djl.training.tracker.Tracker;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import java.util.Random;

/**
 * The DJL-API MNIST models and training loop the engine tests and the benchmark share: the same
 * code runs on any DJL engine. The data are Cortado's shipped MNIST files (10,000 training
 * digits, the 10,000-digit test split; DJL's own Mnist dataset downloads, and this machine is
 * offline), normalized, the training set shuffled once with a fixed seed. Weights start from
 * {@link SeededInitializer}, so that both engines start from the same numbers.
 */
final class MnistModels {
    private MnistModels() {
    }

    /** Normalized MNIST pixels [N, 784] and labels [N], host arrays (engine-neutral). */
    record Digits(float[] pixels, long[] labels, int count) {
        NDArray images(NDManager m, boolean flat) {
            return m.create(pixels, flat ? new Shape(count, 784) : new Shape(count, 1, 28, 28));
        }

        NDArray labels(NDManager m) {
            return m.create(labels);
        }

        Digits first(int n) {
            float[] p = new float[n * 784];
            System.arraycopy(pixels, 0, p, 0, p.length);
            long[] l = new long[n];
            System.arraycopy(labels, 0, l, 0, n);
            return new Digits(p, l, n);
        }
    }

    private static Digits train;
    private static Digits test;

    /** The 10,000 training digits, shuffled with seed 7. */
    static synchronized Digits train() {
        if (train == null) {
            try (TensorDataset d = Mnist.train10k(true)) {
                train = shuffled(digits(d), new Random(7));
            }
        }
        return train;
    }

    /** The 10,000-digit test split. */
    static synchronized Digits test() {
        if (test == null) {
            try (TensorDataset d = Mnist.test(true)) {
                test = digits(d);
            }
        }
        return test;
    }

    private static Digits digits(TensorDataset d) {
        return new Digits(d.inputs().toFloatArray(), d.targets().toLongArray(), d.size());
    }

    private static Digits shuffled(Digits d, Random r) {
        int[] order = new int[d.count()];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        for (int i = order.length - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        float[] p = new float[d.pixels().length];
        long[] l = new long[d.count()];
        for (int i = 0; i < order.length; i++) {
            System.arraycopy(d.pixels(), order[i] * 784, p, i * 784, 784);
            l[i] = d.labels()[order[i]];
        }
        return new Digits(p, l, d.count());
    }

    /** The MLP: 784 - 128 - 64 - 10 with ReLU. Input [N, 784]. */
    static Block mlp() {
        return new SequentialBlock()
                .add(Linear.builder().setUnits(128).build()).add(Activation::relu)
                .add(Linear.builder().setUnits(64).build()).add(Activation::relu)
                .add(Linear.builder().setUnits(10).build());
    }

    /**
     * The small CNN: two stages of 5x5 convolution (8, then 16 channels), batch norm, ReLU and 2x2
     * max pooling, then a linear layer to 10. Input [N, 1, 28, 28].
     */
    static Block cnn() {
        SequentialBlock b = new SequentialBlock();
        for (int filters : new int[] {8, 16}) {
            b.add(Conv2d.builder().setKernelShape(new Shape(5, 5)).optPadding(new Shape(2, 2)).setFilters(filters)
                            .optBias(false).build())
                    .add(BatchNorm.builder().build())
                    .add(Activation::relu)
                    .add(Pool.maxPool2dBlock(new Shape(2, 2), new Shape(2, 2)));
        }
        return b.add(Blocks.batchFlattenBlock()).add(Linear.builder().setUnits(10).build());
    }

    /**
     * A trainer on {@code engine} for {@code block}: softmax cross-entropy, Adam (lr 1e-3), weights
     * from {@link SeededInitializer} with {@code seed}, initialized for {@code inputShape}.
     */
    static Trainer trainer(Engine engine, Model model, Block block, long seed, Shape inputShape) {
        model.setBlock(block);
        DefaultTrainingConfig config = new DefaultTrainingConfig(Loss.softmaxCrossEntropyLoss())
                .optInitializer(new SeededInitializer(seed), Parameter.Type.WEIGHT)
                .optOptimizer(Optimizer.adam().optLearningRateTracker(Tracker.fixed(1e-3f)).build())
                .optDevices(new Device[] {Device.cpu()});
        Trainer trainer = model.newTrainer(config);
        trainer.initialize(inputShape);
        return trainer;
    }

    /** Trains one epoch over {@code data} in order, batch {@code batchSize}, through DJL's EasyTrain. */
    static void trainEpoch(Trainer trainer, Digits data, boolean flat, int batchSize) throws Exception {
        NDManager m = trainer.getManager();
        try (NDArray x = data.images(m, flat); NDArray y = data.labels(m)) {
            ArrayDataset dataset = new ArrayDataset.Builder().setData(x).optLabels(y)
                    .setSampling(batchSize, false, true).build();
            for (Batch batch : trainer.iterateDataset(dataset)) {
                try (batch) {
                    EasyTrain.trainBatch(trainer, batch);
                    trainer.step();
                }
            }
        }
    }

    /** Test accuracy in percent over {@code data}, in batches of 1000, through {@link Trainer#evaluate}. */
    static double accuracy(Trainer trainer, Digits data, boolean flat) {
        long correct = 0;
        for (int from = 0; from < data.count(); from += 1000) {
            int n = Math.min(1000, data.count() - from);
            try (NDManager m = trainer.getManager().newSubManager()) {
                float[] p = new float[n * 784];
                System.arraycopy(data.pixels(), from * 784, p, 0, p.length);
                long[] l = new long[n];
                System.arraycopy(data.labels(), from, l, 0, n);
                NDArray x = m.create(p, flat ? new Shape(n, 784) : new Shape(n, 1, 28, 28));
                NDArray logits = trainer.evaluate(new NDList(x)).singletonOrThrow();
                long[] predicted = logits.argMax(1).toType(DataType.INT64, false).toLongArray();
                for (int i = 0; i < n; i++) {
                    correct += predicted[i] == l[i] ? 1 : 0;
                }
            }
        }
        return 100.0 * correct / data.count();
    }

    /**
     * Uniform(-1/sqrt(fanIn), 1/sqrt(fanIn)) from a seeded {@link Random} on the host, so that
     * every engine gets the same initial weights (the engines' own generators differ).
     */
    static final class SeededInitializer implements Initializer {
        private final Random random;

        SeededInitializer(long seed) {
            this.random = new Random(seed);
        }

        @Override
        public NDArray initialize(NDManager manager, Shape shape, DataType dataType) {
            long fanIn = shape.dimension() > 1 ? shape.size() / shape.get(0) : shape.size();
            double bound = 1 / Math.sqrt(Math.max(1, fanIn));
            float[] v = new float[Math.toIntExact(shape.size())];
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) ((random.nextDouble() * 2 - 1) * bound);
            }
            return manager.create(v, shape).toType(dataType, false);
        }
    }
}
