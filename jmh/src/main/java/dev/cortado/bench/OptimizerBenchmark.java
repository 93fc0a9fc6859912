package dev.cortado.bench;

import dev.cortado.ops.Generator;
import dev.cortado.optim.Adam;
import dev.cortado.optim.OptimKernels;
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
 * One fused AdamW step over 10,000,000 float32 parameters (10 tensors of 1M), in ms/op. AdamW
 * reads p, g, m, v and writes p, m, v: 28 bytes per parameter, 280 MB per step, so at ~25 GB/s
 * of DRAM bandwidth the bound is ~11.2 ms (docs/optim.md).
 * <ul>
 *   <li>{@code adamWStep}: {@link Adam#step()} as a user calls it (gradient checks, batching,
 *       one native call for the 10 tensors);</li>
 *   <li>{@code adamKernel}: {@link OptimKernels#adam} with precomputed coefficients.</li>
 * </ul>
 * Run (docs/optim.md): {@code java -jar target/benchmarks.jar OptimizerBenchmark -f 1 -wi 2 -i 3}.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
@Warmup(iterations = 2, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class OptimizerBenchmark {
    static final int TENSORS = 10;
    static final long PER_TENSOR = 1_000_000;

    @Param({"1", "2"})
    public int threads;

    private final List<Tensor> params = new ArrayList<>();
    private final List<Tensor> grads = new ArrayList<>();
    private final List<Tensor> m = new ArrayList<>();
    private final List<Tensor> v = new ArrayList<>();
    private Adam adamW;
    private OptimKernels.AdamCoef coef;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        Generator gen = Generator.seeded(1);
        for (int i = 0; i < TENSORS; i++) {
            Tensor p = gen.uniform(-1, 1, DType.FLOAT32, Device.CPU, PER_TENSOR);
            p.setGrad(gen.uniform(-1, 1, DType.FLOAT32, Device.CPU, PER_TENSOR));
            params.add(p);
            grads.add(p.grad());
            m.add(BenchSupport.filled(0f, PER_TENSOR));
            v.add(BenchSupport.filled(0f, PER_TENSOR));
        }
        adamW = Adam.adamW().lr(1e-4).weightDecay(0.01).build(params);
        coef = OptimKernels.AdamCoef.pytorch(1e-4, 0.9, 0.999, 1e-8, 0.01, true, 10);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        adamW.close();
        m.forEach(Tensor::close);
        v.forEach(Tensor::close);
        params.forEach(Tensor::close);
    }

    @Benchmark
    public void adamWStep() {
        adamW.step();
    }

    @Benchmark
    public void adamKernel() {
        OptimKernels.adam(params, grads, m, v, null, coef);
    }
}
