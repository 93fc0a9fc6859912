package dev.cortado.bench;

import dev.cortado.ops.Attention;
import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAttention;
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
 * SLAB's linear attention against the fused softmax attention on the same q, k, v: float32,
 * [B, H, L, D] with B = 1, H = 8, D = 64, sequence length {@code len} (1024 to 8192), 1 or 2 threads.
 * FLOPs per call:
 * <ul>
 *   <li>{@code slabForward} ({@link LinearAttention#slab}): 4 B H L D^2 (KV = relu(K)^T V and
 *       relu(Q) KV) = 134 MFLOP at L = 1024, 537 MFLOP at 4096, 1.07 GFLOP at 8192: linear in L.</li>
 *   <li>{@code slabForwardBackward}: the forward plus the backward op (~12 B H L D^2 more, it
 *       recomputes KV): about 16 B H L D^2.</li>
 *   <li>{@code softmaxForward} ({@link Attention#scaledDotProductAttention}, the flash kernel, not
 *       causal, scale 1/sqrt(D)): 4 B H L^2 D = 2.1 GFLOP at L = 1024, 34 GFLOP at 4096, 137 GFLOP
 *       at 8192: quadratic in L. The ratio of the two FLOP counts is L / D.</li>
 * </ul>
 * Run: {@code java -jar jmh/target/benchmarks.jar SlabAttentionBenchmark} (issue 19 asks for the
 * SLAB forward at 8k tokens to beat the fused softmax forward by at least 5x).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
@Warmup(iterations = 2, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class SlabAttentionBenchmark {
    static final int B = 1;
    static final int H = 8;
    static final int D = 64;

    @Param({"1024", "2048", "4096", "8192"})
    public int len;

    @Param({"1", "2"})
    public int threads;

    private Tensor q;
    private Tensor k;
    private Tensor v;
    private Tensor dO;
    private Attention.Options softmax;

    /** FLOPs of the SLAB forward: 4 B H L D^2. */
    public static double slabFlops(int len) {
        return 4.0 * B * H * len * (double) D * D;
    }

    /** FLOPs of the softmax forward: 4 B H L^2 D. */
    public static double softmaxFlops(int len) {
        return 4.0 * B * H * (double) len * len * D;
    }

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        Generator g = Generator.seeded(19);
        q = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, D);
        k = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, D);
        v = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, D);
        dO = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, D);
        softmax = Attention.Options.builder().scale(1.0 / Math.sqrt(D)).build();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        for (Tensor t : new Tensor[] {q, k, v, dO}) {
            t.close();
        }
    }

    @Benchmark
    public float slabForward() {
        try (Tensor o = LinearAttention.slab(q, k, v)) {
            return o.dtype() == DType.FLOAT32 ? 0f : 1f;
        }
    }

    @Benchmark
    public float slabForwardBackward() {
        try (Tensor o = LinearAttention.slab(q, k, v)) {
            Tensor[] g = LinearAttention.SLAB_BACKWARD_OP.callMulti(new LinearAttention.Options(LinearAttention.DEFAULT_EPS),
                    dO, q, k, v);
            for (Tensor t : g) {
                t.close();
            }
            return o.dtype() == DType.FLOAT32 ? 0f : 1f;
        }
    }

    @Benchmark
    public float softmaxForward() {
        try (Tensor o = Attention.scaledDotProductAttention(q, k, v, null, softmax)) {
            return o.dtype() == DType.FLOAT32 ? 0f : 1f;
        }
    }
}
