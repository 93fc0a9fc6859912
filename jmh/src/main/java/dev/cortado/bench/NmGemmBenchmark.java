package dev.cortado.bench;

import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.sparse.SparseTensor;
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
 * 2:4 sparse x dense GEMM against our dense matmul in the same run (issue #15's bar: at least 1.5x
 * at M = N = K = 2048, float32, 1 and 2 threads). W [2048, 2048] compressed 2:4 by magnitude
 * ({@code nm_matmul}: half the FLOPs of the dense product, one byte of metadata per kept value)
 * times B [2048, 2048]; {@code denseMatmul} multiplies the dense W (OpenBLAS sgemm). Run:
 * {@code java -jar target/benchmarks.jar NmGemmBenchmark}; not yet run for numbers.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class NmGemmBenchmark {
    @Param({"2048"})
    public int n;

    @Param({"1", "2"})
    public int threads;

    private SparseTensor w;
    private Tensor dense;
    private Tensor b;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        Generator g = Generator.seeded(42);
        try (Tensor full = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n)) {
            w = SparseTensor.fromDense(full).toNm(2, 4);
        }
        dense = w.toDense(); // the same matrix, pruned entries stored as zeros
        b = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n);
        try (Tensor s = w.matmul(b); Tensor d = LinearAlgebra.matmul(dense, b)) {
            float[] x = s.toFloatArray();
            float[] y = d.toFloatArray();
            for (int i = 0; i < x.length; i++) {
                if (Math.abs(x[i] - y[i]) > 1e-3f * (1 + Math.abs(y[i]))) {
                    throw new IllegalStateException("nm_matmul and matmul differ at " + i + ": " + x[i] + " vs " + y[i]);
                }
            }
        }
    }

    @Benchmark
    public float nm24Matmul() {
        try (Tensor c = w.matmul(b)) {
            return c.dataAddress() == 0 ? 0 : 1;
        }
    }

    @Benchmark
    public float denseMatmul() {
        try (Tensor c = LinearAlgebra.matmul(dense, b)) {
            return c.dataAddress() == 0 ? 0 : 1;
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        w.close();
        dense.close();
        b.close();
    }
}
