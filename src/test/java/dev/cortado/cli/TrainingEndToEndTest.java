package dev.cortado.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Convolution;
import dev.cortado.optim.Adam;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Training end to end on the shipped MNIST data: a short run reaches a stated accuracy on the
 * genuine test split, runs are deterministic, a checkpoint resumes to the same losses as an
 * uninterrupted run, and the usual mistakes fail with clear messages.
 */
class TrainingEndToEndTest {
    private static TensorDataset train;
    private static TensorDataset test;

    @BeforeAll
    static void load() {
        train = Mnist.train10k(true);
        test = Mnist.test(true);
    }

    @AfterAll
    static void free() {
        train.close();
        test.close();
    }

    /** A small CNN (8 and 16 channels) that trains in seconds. */
    static Sequential smallCnn(long seed) {
        ParamOptions p = ParamOptions.seeded(seed);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        return new Sequential(
                new Conv2d(1, 8, new long[] {3, 3}, same, false, p), new BatchNorm2d(8), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Conv2d(8, 16, new long[] {3, 3}, same, false, p), new BatchNorm2d(16), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Flatten(), new Linear(16 * 7 * 7, 10, true, p));
    }

    /** Runs {@code steps} steps from the loader's epoch 0 (skipping {@code skip} batches); returns the losses. */
    private static double[] trainSteps(Sequential model, Optimizer opt, DataLoader loader, int skip, int steps) {
        double[] losses = new double[steps];
        try (DataLoader.Epoch batches = loader.epoch(0)) {
            for (int i = 0; i < skip; i++) {
                batches.next().close();
            }
            for (int i = 0; i < steps; i++) {
                try (Batch b = batches.next(); Scope s = Scope.open()) {
                    Tensor loss = Losses.crossEntropy(model.forward(b.input()), b.target());
                    opt.zeroGrad();
                    loss.backward();
                    opt.step();
                    losses[i] = loss.item();
                }
            }
        }
        return losses;
    }

    @Test
    void theMnistDemoReachesNinetySevenAndAHalfPercentInTwoEpochsAcrossAResume(@TempDir Path dir) throws Exception {
        // train-mnist itself, 2 epochs of 156 steps of batch 64 (AdamW 2e-3, cosine schedule): a run
        // of 1 epoch, then --resume from the checkpoint written after it, asking for 2 epochs (the
        // schedule of the second run spans 2 epochs; continuing exactly like an uninterrupted run is
        // checked below, and across processes in MpiProcessGroupTest)
        Path ckpt = dir.resolve("checkpoint.safetensors");
        TrainMnist.run(new TrainMnist.Settings(1, 64, 2e-3, 1, Device.CPU, dir, false, null));
        assertEquals("156", info(ckpt).get("step"), "the checkpoint after epoch 1");
        double accuracy = TrainMnist.run(new TrainMnist.Settings(2, 64, 2e-3, 1, Device.CPU, dir, false, ckpt));
        assertTrue(accuracy >= 0.975, "t10k accuracy after 2 epochs: " + accuracy);
        assertEquals("312", info(ckpt).get("step"), "the checkpoint after epoch 2");
        for (String f : new String[] {"metrics.csv", "training-curves.png", "checkpoint.safetensors"}) {
            assertTrue(java.nio.file.Files.size(dir.resolve(f)) > 0, f + " written");
        }
        // a row per step of the resumed run (a resumed run writes its own metrics.csv and curves)
        assertTrue(java.nio.file.Files.readAllLines(dir.resolve("metrics.csv")).size() > 150, "a row per step");
        IllegalArgumentException done = assertThrows(IllegalArgumentException.class,
                () -> TrainMnist.run(new TrainMnist.Settings(2, 64, 2e-3, 1, Device.CPU, dir, false, ckpt)));
        assertTrue(done.getMessage().contains("already after epoch 2"), done.getMessage());
    }

    private static Map<String, String> info(Path checkpoint) throws java.io.IOException {
        try (Checkpoint.Loaded loaded = Checkpoint.load(checkpoint, Device.CPU)) {
            return loaded.info();
        }
    }

    @Test
    void aFixedSeedGivesIdenticalLossesTwice() {
        double[][] runs = new double[2][];
        for (int r = 0; r < 2; r++) {
            try (Sequential model = smallCnn(42);
                 DataLoader loader = DataLoader.builder(train).batchSize(16).shuffle(3).dropLast(true).build()) {
                Optimizer opt = Adam.adamW().lr(1e-3).build(model.parameters());
                runs[r] = trainSteps(model, opt, loader, 0, 8);
                opt.close();
            }
        }
        assertArrayEquals(runs[0], runs[1], 0.0, "bit-identical losses for the same seed");
    }

    @Test
    void resumingFromACheckpointContinuesLikeAnUninterruptedRun(@TempDir Path dir) throws Exception {
        double[] uninterrupted;
        try (Sequential model = smallCnn(5);
             DataLoader loader = DataLoader.builder(train).batchSize(16).shuffle(9).dropLast(true).build()) {
            Optimizer opt = Adam.adamW().lr(1e-3).build(model.parameters());
            uninterrupted = trainSteps(model, opt, loader, 0, 8);
            opt.close();
        }
        Path ckpt = dir.resolve("ckpt.safetensors");
        double[] first;
        try (Sequential model = smallCnn(5);
             DataLoader loader = DataLoader.builder(train).batchSize(16).shuffle(9).dropLast(true).build()) {
            Optimizer opt = Adam.adamW().lr(1e-3).build(model.parameters());
            first = trainSteps(model, opt, loader, 0, 4);
            try (Scope views = Scope.open()) {
                Checkpoint.save(ckpt, model.state(), opt.state(), Map.of("step", "4"));
            }
            opt.close();
        }
        double[] resumed;
        try (Sequential model = smallCnn(99);  // different initial weights: all must come from the file
             DataLoader loader = DataLoader.builder(train).batchSize(16).shuffle(9).dropLast(true).build();
             Checkpoint.Loaded loaded = Checkpoint.load(ckpt, Device.CPU)) {
            model.loadState(loaded.model(), true);
            Optimizer opt = Adam.adamW().lr(1e-3).build(model.parameters());
            opt.loadState(loaded.optimizer());
            resumed = trainSteps(model, opt, loader, (int) loaded.step().orElseThrow(), 4);
            opt.close();
        }
        List<Double> joined = new ArrayList<>();
        for (double v : first) {
            joined.add(v);
        }
        for (double v : resumed) {
            joined.add(v);
        }
        assertArrayEquals(uninterrupted, joined.stream().mapToDouble(Double::doubleValue).toArray(), 0.0,
                "save at step 4 + load + 4 more steps = 8 uninterrupted steps, bit for bit");
    }

    @Test
    void clearErrorsForLabelsOutOfRangeShapeMismatchesAndForeignCheckpoints(@TempDir Path dir) throws Exception {
        try (Sequential model = smallCnn(1); Scope s = Scope.open()) {
            Tensor x = Tensor.zeros(dev.cortado.tensor.DType.FLOAT32, Device.CPU, 2, 1, 28, 28);
            Tensor logits = model.forward(x);
            Tensor bad = Tensor.of(new long[] {3, 12}, 2);
            IndexOutOfBoundsException e1 = assertThrows(IndexOutOfBoundsException.class,
                    () -> Losses.crossEntropy(logits, bad));
            assertTrue(e1.getMessage().contains("12") && e1.getMessage().contains("10"), e1.getMessage());

            Tensor wrongSize = Tensor.zeros(dev.cortado.tensor.DType.FLOAT32, Device.CPU, 2, 1, 20, 20);
            IllegalArgumentException e2 = assertThrows(IllegalArgumentException.class, () -> model.forward(wrongSize));
            assertTrue(e2.getMessage().contains("784") || e2.getMessage().contains("400"), e2.getMessage());

            Path other = dir.resolve("other.safetensors");
            try (Sequential wider = new Sequential(new Linear(784, 32, true, ParamOptions.seeded(1)))) {
                try (Scope views = Scope.open()) {
                    Checkpoint.save(other, wider.state(), Map.of(), Map.of());
                }
            }
            try (Checkpoint.Loaded loaded = Checkpoint.load(other, Device.CPU)) {
                IllegalArgumentException e3 = assertThrows(IllegalArgumentException.class,
                        () -> model.loadState(loaded.model(), true));
                assertTrue(e3.getMessage().contains("0.weight"), e3.getMessage());
            }
        }
    }
}
