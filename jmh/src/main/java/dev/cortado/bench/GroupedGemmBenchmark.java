package dev.cortado.bench;

import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.MixtureOfExperts;
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
 * The grouped GEMM of a mixture of experts against one dense GEMM of the same total FLOPs
 * (issue #15's speed bar: at least 90% of the dense GEMM's throughput): 8 experts, x [4096, 1024]
 * float32 split into 8 groups, each group times its own w[e] [1024, 1024]; the dense GEMM is
 * x [4096, 1024] times one [1024, 1024] (2 * 4096 * 1024 * 1024 FLOPs, 8.6 GFLOP, either way).
 * <ul>
 *   <li>{@code groupedMatmul}: {@link MixtureOfExperts#groupedMatmul} (the {@code grouped_matmul}
 *       op: the counts check, the (expert, tile) tasks on the threads, output allocation);</li>
 *   <li>{@code denseMatmul}: {@link LinearAlgebra#matmul} of the same x with one weight.</li>
 *   <li>{@code groupedBackward}: the {@code grouped_matmul_backward} op on an output gradient dy
 *       [4096, 1024]: dx (a grouped GEMM with each w[e] transposed) and dw (per expert
 *       x_e^T dy_e, the weight gradient, reducing over the group's rows); 17.2 GFLOP.</li>
 *   <li>{@code denseBackward}: the dense layer's two backward products of the same sizes,
 *       dy w0^T and x^T dy (transposed views, no copies); 17.2 GFLOP.</li>
 * </ul>
 * Groups: {@code even} (8 x 512 rows) or {@code skewed} (1024, 896, 640, 512, 384, 320, 192, 128
 * rows, as a router after a few steps of training gives). The ratio to report is
 * denseMatmul / groupedMatmul time in the same run.
 * Run: {@code java -jar target/benchmarks.jar GroupedGemmBenchmark} with OMP_NUM_THREADS set (see
 * docs/benchmarks.md, runs J and K).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
@Warmup(iterations = 3, time = 2, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 2, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class GroupedGemmBenchmark {
    /** How the 4096 rows are split over the 8 experts. */
    @Param({"even", "skewed"})
    public String groups;

    @Param({"1", "2"})
    public int threads;

    static final int ROWS = 4096;
    static final int K = 1024;
    static final int N = 1024;
    static final int EXPERTS = 8;

    private Tensor x;
    private Tensor w;
    private Tensor w0;
    private Tensor counts;
    private Tensor dy;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        long[] c = groups.equals("even") ? new long[] {512, 512, 512, 512, 512, 512, 512, 512}
                : new long[] {1024, 896, 640, 512, 384, 320, 192, 128};
        counts = Tensor.of(c, EXPERTS);
        Generator g = Generator.seeded(7);
        x = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, ROWS, K);
        w = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, EXPERTS, K, N);
        w0 = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, K, N);
        dy = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, ROWS, N);
        verify(c);
    }

    /** The last group's rows must equal a dense product with its weight (guards against timing a wrong kernel). */
    private void verify(long[] c) {
        long start = ROWS - c[EXPERTS - 1];
        try (Tensor y = MixtureOfExperts.groupedMatmul(x, w, counts);
             Tensor xs = x.narrow(0, start, ROWS - start).contiguous(); Tensor we = w.select(0, EXPERTS - 1).contiguous();
             Tensor d = LinearAlgebra.matmul(xs, we); Tensor ys = y.narrow(0, start, ROWS - start).contiguous()) {
            float[] a = ys.toFloatArray();
            float[] b = d.toFloatArray();
            double scale = 0;
            for (float v : b) {
                scale = Math.max(scale, Math.abs(v));
            }
            for (int i = 0; i < a.length; i++) {
                if (Math.abs(a[i] - b[i]) > 1e-4 * scale) {
                    throw new IllegalStateException("grouped_matmul and matmul differ at " + i + ": " + a[i] + " vs " + b[i]);
                }
            }
        }
    }

    @Benchmark
    public float groupedMatmul() {
        try (Tensor y = MixtureOfExperts.groupedMatmul(x, w, counts)) {
            return y.dataAddress() == 0 ? 0 : 1;
        }
    }

    @Benchmark
    public float denseMatmul() {
        try (Tensor y = LinearAlgebra.matmul(x, w0)) {
            return y.dataAddress() == 0 ? 0 : 1;
        }
    }

    @Benchmark
    public float groupedBackward() {
        Tensor[] d = MixtureOfExperts.GROUPED_MATMUL_BACKWARD_OP.callMulti(null, x, w, counts, dy);
        float r = d[0].dataAddress() == 0 || d[1].dataAddress() == 0 ? 0 : 1;
        for (Tensor t : d) {
            t.close();
        }
        return r;
    }

    @Benchmark
    public float denseBackward() {
        try (Tensor w0t = w0.transpose(0, 1); Tensor xt = x.transpose(0, 1); Tensor dx = LinearAlgebra.matmul(dy, w0t);
             Tensor dw = LinearAlgebra.matmul(xt, dy)) {
            return dx.dataAddress() == 0 || dw.dataAddress() == 0 ? 0 : 1;
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        x.close();
        w.close();
        w0.close();
        counts.close();
        dy.close();
    }
}
