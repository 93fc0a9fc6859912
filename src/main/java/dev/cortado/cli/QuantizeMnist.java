package dev.cortado.cli;

import dev.cortado.autograd.Autograd;
import dev.cortado.io.Batch;
import dev.cortado.io.Checkpoint;
import dev.cortado.io.DataLoader;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.Sequential;
import dev.cortado.nn.ParamOptions;
import dev.cortado.optim.Adam;
import dev.cortado.optim.CosineWithWarmup;
import dev.cortado.optim.Optimizer;
import dev.cortado.quant.BinaryConv2d;
import dev.cortado.quant.BinaryLinear;
import dev.cortado.quant.BinaryWeights;
import dev.cortado.quant.QuantConfig;
import dev.cortado.quant.Quantizer;
import dev.cortado.quant.WeightOnly;
import dev.cortado.quant.WeightOnlyLinear;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * {@code quantize-mnist}: the MNIST CNN of {@code train-mnist} (trained here for a few epochs, or
 * loaded from a train-mnist checkpoint) quantized several ways, each evaluated on the genuine
 * t10k split: int8 post-training quantization (min-max and percentile calibration; conv + batch
 * norm folded, ReLU fused, the int8 convolution and GEMM kernels), and 4-bit weights and
 * activations trained with LSQ quantization-aware training then run on the same integer
 * kernels; weight-only int4 linear layers; and binary-weight CNNs (XNOR-Net and BiPer) trained
 * from the float model. Prints accuracy, model size (the bytes of the saved state) and the
 * inference time of the 10,000 test images at batch 256 per variant. More variants are rows of
 * {@link #variants}.
 */
final class QuantizeMnist {
    /** Settings: float training (when no checkpoint), calibration batches, QAT epochs and binary-weight training epochs. */
    record Settings(int epochs, int batchSize, double lr, long seed, Path checkpoint, int calibrationBatches,
                    int qatEpochs, int binaryEpochs) {
        /** The settings with {@link #BINARY_EPOCHS} epochs of binary-weight training. */
        Settings(int epochs, int batchSize, double lr, long seed, Path checkpoint, int calibrationBatches, int qatEpochs) {
            this(epochs, batchSize, lr, seed, checkpoint, calibrationBatches, qatEpochs, BINARY_EPOCHS);
        }
    }

    /** Default epochs of training for the binary-weight rows. */
    static final int BINARY_EPOCHS = 4;

    /** One row of the table. */
    record Row(String variant, double accuracy, long bytes, double millis) {
    }

    /** Makes a quantized model from a copy of the float one (which it may change in place). */
    @FunctionalInterface
    interface Maker {
        Module make(Sequential floatCopy, TensorDataset train, Settings s);
    }

    /** A row of the table after the float one: a name and how to make the model. */
    record Variant(String name, Maker maker) {
    }

    private QuantizeMnist() {
    }

    /** The variants of the table, in order (the float model is the first row, always). */
    static List<Variant> variants() {
        return List.of(
                new Variant("int8 PTQ (min-max)", (m, train, s) -> ptq(m, train, s, QuantConfig.int8())),
                new Variant("int8 PTQ (percentile 99.99%)",
                        (m, train, s) -> ptq(m, train, s, QuantConfig.builder().percentile(0.9999).build())),
                new Variant("w4a4 QAT (LSQ, 1st conv 8-bit)", QuantizeMnist::qat4),
                new Variant("int4 weight-only Linear (g=32)", QuantizeMnist::weightOnlyInt4),
                new Variant("binary weights, XNOR-Net (sign, STE)",
                        (m, train, s) -> binaryWeights(m, train, s, BinaryWeights.xnor())),
                new Variant("binary weights, BiPer (omega 20)",
                        (m, train, s) -> binaryWeights(m, train, s, BinaryWeights.biper())));
    }

    static List<Row> run(Settings s) throws IOException {
        System.out.printf(Locale.ROOT, "quantize-mnist: seed %d, %s%n", s.seed(), s.checkpoint() != null
                ? "float model from " + s.checkpoint() : "float model trained for " + s.epochs() + " epochs");
        List<Row> rows = new ArrayList<>();
        try (TensorDataset train = Mnist.train10k(true); TensorDataset test = Mnist.test(true);
             Sequential model = floatModel(s, train)) {
            rows.add(measure("float32", model, test));
            for (Variant v : variants()) {
                try (Sequential copy = copyOf(model, s.seed())) {
                    long t0 = System.nanoTime();
                    Module q = v.maker().make(copy, train, s);
                    System.out.printf(Locale.ROOT, "%s: made in %.1f s%n", v.name(), (System.nanoTime() - t0) / 1e9);
                    rows.add(measure(v.name(), q, test));
                }
            }
        }
        System.out.println();
        System.out.println(table(rows));
        return rows;
    }

    /** The table: variant, t10k accuracy, state bytes, time of the 10,000 test images at batch 256. */
    static String table(List<Row> rows) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "| %-32s | %14s | %12s | %16s |%n", "variant", "t10k accuracy", "size (KiB)",
                "inference (ms)"));
        b.append(String.format(Locale.ROOT, "|%s|%s|%s|%s|%n", "-".repeat(34), "-".repeat(16), "-".repeat(14), "-".repeat(18)));
        for (Row r : rows) {
            b.append(String.format(Locale.ROOT, "| %-32s | %13.2f%% | %12.1f | %16.0f |%n", r.variant(), 100 * r.accuracy(),
                    r.bytes() / 1024.0, r.millis()));
        }
        return b.toString();
    }

    /** The float CNN: loaded from the checkpoint, or trained on the 10k training digits. */
    static Sequential floatModel(Settings s, TensorDataset train) throws IOException {
        Sequential model = TrainMnist.model(s.seed());
        try {
            if (s.checkpoint() != null) {
                try (Checkpoint.Loaded c = Checkpoint.load(s.checkpoint(), Device.CPU)) {
                    model.loadState(c.model(), true);
                }
            } else {
                train(model, train, s.epochs(), s.batchSize(), s.lr(), s.seed());
            }
            model.eval();
            return model;
        } catch (IOException | RuntimeException e) {
            model.close();
            throw e;
        }
    }

    /** AdamW at a constant rate over the training digits. */
    static void train(Module model, TensorDataset train, int epochs, int batchSize, double lr, long seed) {
        try (DataLoader loader = DataLoader.builder(train).batchSize(batchSize).shuffle(seed).dropLast(true).build();
             Optimizer opt = Adam.adamW().lr(lr).weightDecay(1e-4).build(model.parameters())) {
            model.train();
            for (int epoch = 0; epoch < epochs; epoch++) {
                try (DataLoader.Epoch batches = loader.epoch(epoch)) {
                    for (Batch b : batches) {
                        try (b; Scope scope = Scope.open()) {
                            Tensor l = Losses.crossEntropy(model.forward(b.input()), b.target());
                            opt.zeroGrad();
                            l.backward();
                            opt.step();
                        }
                    }
                }
            }
            model.eval();
        }
    }

    /** A fresh CNN with the float model's weights. */
    static Sequential copyOf(Sequential model, long seed) {
        Sequential copy = TrainMnist.model(seed);
        copy.loadState(model.state(), true);
        copy.eval();
        return copy;
    }

    /** Post-training quantization: observers, calibration on training batches, conversion. */
    static Module ptq(Sequential m, TensorDataset train, Settings s, QuantConfig config) {
        Quantizer.prepare(m, config);
        try (DataLoader loader = DataLoader.builder(train).batchSize(256).shuffle(s.seed() + 1).build()) {
            Quantizer.calibrate(m, loader, s.calibrationBatches());
        }
        return Quantizer.convert(m);
    }

    /** 4-bit weights and activations (the first conv's 8-bit: one input channel), LSQ QAT from the float weights, then conversion. */
    static Module qat4(Sequential m, TensorDataset train, Settings s) {
        QuantConfig config = QuantConfig.builder().quantizationAware().bits(4, 4).layer("0", 8, 8).build();
        Quantizer.prepare(m, config);
        train(m, train, s.qatEpochs(), 64, 5e-4, s.seed() + 2);
        return Quantizer.convert(m);
    }

    /**
     * Post-training weight-only int4: every Linear (96% of this CNN's weights) becomes a
     * {@link WeightOnlyLinear} with signed 4-bit codes and a scale per group of 32 inputs, run by the
     * weight-only kernels (activations stay float32); the convolutions stay float32.
     */
    static Module weightOnlyInt4(Sequential m, TensorDataset train, Settings s) {
        for (Map.Entry<String, Module> c : new ArrayList<>(m.children().entrySet())) {
            if (c.getValue() instanceof Linear linear) {
                m.replaceChild(c.getKey(), new WeightOnlyLinear(linear, WeightOnly.Format.INT4, 32)).close();
            }
        }
        return m;
    }

    /**
     * A binary-weight CNN: the second convolution (32 to 64 channels) and the first linear layer
     * (3136 to 128), 98% of the weights, become {@link BinaryConv2d} / {@link BinaryLinear} with
     * binary weights (signs times a scale per output channel) and real inputs; the first
     * convolution and the last linear layer stay float32, as usual for binary networks. The
     * binary layers' latent weights start as their binarizer says (XNOR-Net: PyTorch's default;
     * BiPer: He-normal), the rest from the float model; the whole network then trains for
     * {@code s.binaryEpochs()} epochs of AdamW with a cosine rate from {@code s.lr()}.
     */
    static Module binaryWeights(Sequential m, TensorDataset train, Settings s, BinaryWeights w) {
        ParamOptions p = ParamOptions.seeded(s.seed() + 3);
        m.replaceChild("4", new BinaryConv2d(32, 64, 3, 1, 1, false, false, w, p)).close();
        m.replaceChild("9", new BinaryLinear(64 * 7 * 7, 128, true, false, w, p)).close();
        trainCosine(m, train, s.binaryEpochs(), 64, s.lr(), s.seed() + 3);
        return m;
    }

    /** AdamW over the training digits with a cosine rate from {@code lr} to 0. */
    static void trainCosine(Module model, TensorDataset train, int epochs, int batchSize, double lr, long seed) {
        try (DataLoader loader = DataLoader.builder(train).batchSize(batchSize).shuffle(seed).dropLast(true).build();
             Optimizer opt = Adam.adamW().lr(lr).weightDecay(1e-4).build(model.parameters())) {
            CosineWithWarmup schedule = new CosineWithWarmup(0, (long) epochs * (train.size() / batchSize), 0);
            long step = 0;
            model.train();
            for (int epoch = 0; epoch < epochs; epoch++) {
                try (DataLoader.Epoch batches = loader.epoch(epoch)) {
                    for (Batch b : batches) {
                        try (b; Scope scope = Scope.open()) {
                            schedule.apply(opt, step++);
                            Tensor l = Losses.crossEntropy(model.forward(b.input()), b.target());
                            opt.zeroGrad();
                            l.backward();
                            opt.step();
                        }
                    }
                }
            }
            model.eval();
        }
    }

    /** Accuracy on t10k, state bytes and the time of one pass over t10k at batch 256. */
    static Row measure(String name, Module model, TensorDataset test) {
        long bytes = 0;
        for (Tensor t : model.state().values()) {
            bytes += t.numel() * t.dtype().byteSize();
        }
        try (DataLoader loader = DataLoader.builder(test).batchSize(256).build()) {
            evaluate(model, loader);  // warm-up (packing, allocations)
            long t0 = System.nanoTime();
            double acc = evaluate(model, loader);
            double ms = (System.nanoTime() - t0) / 1e6;
            System.out.printf(Locale.ROOT, "%s: t10k accuracy %.2f%%, %,d bytes, %.0f ms%n", name, 100 * acc, bytes, ms);
            return new Row(name, acc, bytes, ms);
        }
    }

    /** Accuracy of the model's logits over the loader, in evaluation mode without gradients. */
    static double evaluate(Module model, DataLoader loader) {
        model.eval();
        double correct = 0;
        long n = 0;
        try (Autograd.GradMode off = Autograd.noGrad(); DataLoader.Epoch batches = loader.epoch(0)) {
            for (Batch b : batches) {
                try (b; Scope scope = Scope.open()) {
                    correct += TrainMnist.countCorrect(model.forward(b.input()), b.target());
                    n += b.size();
                }
            }
        }
        return correct / n;
    }
}
