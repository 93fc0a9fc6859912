package dev.cortado.bench;

import dev.cortado.autograd.Autograd;
import dev.cortado.io.DataLoader;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Generator;
import dev.cortado.quant.QuantConfig;
import dev.cortado.quant.Quantizer;
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
 * Inference of the MNIST CNN of {@code train-mnist} (conv 1->32 3x3, BN, ReLU, pool, conv 32->64
 * 3x3, BN, ReLU, pool, linear 3136->128, ReLU, linear 128->10) on a batch of 256 images, float32
 * against its int8 post-training quantization ({@link Quantizer}: batch norm folded, ReLU fused,
 * the int8 NHWC convolution and GEMM with their fused epilogues). The bar: int8 at least
 * 2x the float32 speed. The weights are random (speed does not depend on them); the int8 model is
 * calibrated on 4 random batches. Thread count {@code threads}; run with OMP_NUM_THREADS /
 * OPENBLAS_NUM_THREADS set (jmh/run-main-table.sh does).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 3, time = 2, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 2, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class QuantizedCnnBenchmark {
    @Param({"1", "2"})
    public int threads;

    private static final int BATCH = 256;

    private Sequential floatModel;
    private Sequential int8Model;
    private Tensor x;

    static Sequential cnn(long seed) {
        ParamOptions p = ParamOptions.seeded(seed);
        ConvOptions same = ConvOptions.builder().padding(1).build();
        return new Sequential(
                new Conv2d(1, 32, new long[] {3, 3}, same, false, p), new BatchNorm2d(32), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Conv2d(32, 64, new long[] {3, 3}, same, false, p), new BatchNorm2d(64), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Flatten(), new Linear(64 * 7 * 7, 128, true, p), Activation.relu(), new Linear(128, 10, true, p));
    }

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        Generator g = Generator.seeded(42);
        x = g.normal(0, 1, DType.FLOAT32, Device.CPU, BATCH, 1, 28, 28);
        floatModel = cnn(1);
        floatModel.eval();
        int8Model = cnn(1);
        int8Model.eval();
        try (Tensor calib = g.normal(0, 1, DType.FLOAT32, Device.CPU, 4 * BATCH, 1, 28, 28);
             Tensor labels = Tensor.zeros(DType.INT64, 4 * BATCH);
             TensorDataset ds = new TensorDataset(calib, labels);
             DataLoader loader = DataLoader.builder(ds).batchSize(BATCH).build()) {
            Quantizer.prepare(int8Model, QuantConfig.int8());
            Quantizer.calibrate(int8Model, loader, 4);
            Quantizer.convert(int8Model);
        }
        // both produce logits of the same shape
        try (Autograd.GradMode off = Autograd.noGrad(); Tensor a = floatModel.forward(x); Tensor b = int8Model.forward(x)) {
            if (!a.shape().equals(b.shape())) {
                throw new IllegalStateException("float " + a.describe() + " vs int8 " + b.describe());
            }
        }
    }

    @Benchmark
    public double float32() {
        try (Autograd.GradMode off = Autograd.noGrad(); Tensor y = floatModel.forward(x)) {
            return y.dataAddress();
        }
    }

    @Benchmark
    public double int8() {
        try (Autograd.GradMode off = Autograd.noGrad(); Tensor y = int8Model.forward(x)) {
            return y.dataAddress();
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        floatModel.close();
        int8Model.close();
        x.close();
    }
}
