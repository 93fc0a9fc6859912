package dev.cortado.bench;

import dev.cortado.models.DenseNet;
import dev.cortado.models.Reversible;
import dev.cortado.nn.Activation;
import dev.cortado.nn.LayerNorm;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Indexing;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
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
 * The time price of the memory-saving blocks of {@code dev.cortado.models}: forward and backward
 * (of the output's sum; parameter gradients cleared each call), float32, 2 threads by default.
 * <ul>
 *   <li>{@code denseShared} / {@code denseNaive}: a 12-layer dense block (64 input channels, growth
 *       32, bottleneck 4x, batch 16, 28x28), the shared-buffer block (one buffer, recomputation in
 *       the backward) against the naive block that concatenates all earlier maps at every layer;</li>
 *   <li>{@code reversible} / {@code ordinary}: 16 reversible couplings (LayerNorm, Linear to 4x,
 *       GELU, Linear back, on halves of width 128; input [16, 128, 256]) against the same stack with
 *       every activation stored.</li>
 * </ul>
 * The memory side is deterministic and asserted in the tests ({@code DenseNetTest},
 * {@code ReversibleTest}); this measures the extra forward each recomputing form costs.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx2g"})
@Warmup(iterations = 2, time = 2, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 3, time = 2, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class ModelsBenchmark {
    @Param({"2"})
    public int threads;

    private DenseNet.DenseBlock dense;
    private Tensor denseInput;
    private Reversible stack;
    private Tensor stackInput;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        dense = new DenseNet.DenseBlock(64, 12, 32, 4, ParamOptions.seeded(1));
        denseInput = Generator.seeded(2).normal(0, 1, DType.FLOAT32, Device.CPU, 16, 64, 28, 28);
        List<Reversible.Coupling> couplings = new ArrayList<>();
        ParamOptions p = ParamOptions.seeded(3);
        for (int i = 0; i < 16; i++) {
            couplings.add(new Reversible.Coupling(mlp(128, p), mlp(128, p)));
        }
        stack = new Reversible(-1, couplings);
        stackInput = Generator.seeded(4).normal(0, 1, DType.FLOAT32, Device.CPU, 16, 128, 256);
    }

    private static Module mlp(int c, ParamOptions p) {
        return new Sequential(new LayerNorm(new long[] {c}, 1e-5, true, true, p), new Linear(c, 4L * c, true, p),
                Activation.gelu(), new Linear(4L * c, c, true, p));
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        dense.close();
        denseInput.close();
        stack.close();
        stackInput.close();
    }

    private static double backward(Module m, Tensor y) {
        try (Tensor out = y; Tensor s = out.sum()) {
            s.backward();
            double v = s.item();
            m.zeroGrad();
            return v;
        }
    }

    @Benchmark
    public double denseShared() {
        return backward(dense, dense.apply(denseInput));
    }

    @Benchmark
    public double denseNaive() {
        List<Tensor> maps = new ArrayList<>();
        maps.add(denseInput);
        for (int i = 0; i < dense.size(); i++) {
            try (Tensor cat = Indexing.concat(1, maps.toArray(new Tensor[0]))) {
                maps.add(dense.layer(i).apply(cat));
            }
        }
        Tensor out = Indexing.concat(1, maps.toArray(new Tensor[0]));
        for (int i = 1; i < maps.size(); i++) {
            maps.get(i).close();
        }
        return backward(dense, out);
    }

    @Benchmark
    public double reversible() {
        return backward(stack, stack.apply(stackInput));
    }

    @Benchmark
    public double ordinary() {
        return backward(stack, stack.forwardStoringActivations(stackInput));
    }
}
