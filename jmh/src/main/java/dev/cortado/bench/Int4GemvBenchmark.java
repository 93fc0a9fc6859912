package dev.cortado.bench;

import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.quant.PackedWeights;
import dev.cortado.quant.WeightOnly;
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
 * The decode path of a language model: a weight-only int4 GEMV {@code y [1, 4096] = x W^T} with
 * W {@code [4096, 4096]} packed two codes per byte with float32 scales per group of {@code group}
 * along k (issue 14's bar: it reads its packed weights at >= 80% of the copy bandwidth measured in
 * the same run). One op reads {@code 4096 * 4096 / 2} packed bytes (8 MiB) plus
 * {@code 4096 * 4096 / group * 4} scale bytes (2 MiB at g = 32, 0.5 MiB at g = 128), printed in
 * setup as "bytes per GEMV"; bandwidth = those bytes / time.
 * <ul>
 *   <li>{@code int4Gemv}: {@link WeightOnly#matmul} on the next of {@code layers} packed matrices
 *       (cycled, as the layers of a model are: with 8 layers the 80 MiB of weights do not stay in
 *       the L3 of the AMD hosts, with 1 the matrix may be served from cache);</li>
 *   <li>{@code float32Gemv}: {@link LinearAlgebra#matmul} of the same x with the float32 W^T of one
 *       layer (64 MiB read per op), for the 8x byte ratio;</li>
 *   <li>{@code copyProbe}: the copy ceiling, Cortado's threaded {@code ct_cpu_memcpy} of 64 MiB
 *       (64 MiB read + 64 MiB written per op, as CeilingBenchmark.copy and
 *       BandwidthBenchmark.ctMemcpy count it) on the same threads.</li>
 * </ul>
 * Thread count {@code threads} (BenchSupport.setThreads: the OpenMP pool the kernels use).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class Int4GemvBenchmark {
    static final int N = 4096;
    static final long COPY_BYTES = 64L << 20;

    @Param({"1", "2"})
    public int threads;

    @Param({"32", "128"})
    public int group;

    @Param({"1", "8"})
    public int layers;

    private PackedWeights[] w;
    private Tensor x;
    private Tensor wtF32;
    private Tensor copySrc;
    private Tensor copyDst;
    private int next;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        Generator g = Generator.seeded(42);
        x = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, 1, N);
        w = new PackedWeights[layers];
        for (int l = 0; l < layers; l++) {
            try (Tensor wf = g.uniform(-0.05, 0.05, DType.FLOAT32, Device.CPU, N, N)) {
                w[l] = PackedWeights.quantize(wf, WeightOnly.Format.INT4, group);
                if (l == 0) {
                    try (Tensor t = wf.transpose(0, 1)) {
                        wtF32 = t.contiguous();
                    }
                }
            }
        }
        copySrc = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, COPY_BYTES / 4);
        copyDst = Tensor.empty(DType.FLOAT32, Device.CPU, COPY_BYTES / 4);
        verify();
        System.out.println("\nInt4GemvBenchmark: bytes per GEMV " + w[0].bytes() + " (packed " + w[0].packed().numel()
                + " + scales " + w[0].scale().numel() * 4 + "), copy probe bytes " + 2 * COPY_BYTES + ", " + threads
                + " thread(s), group " + group + ", " + layers + " layer(s)");
    }

    /** The int4 GEMV against the float32 one within the int4 quantization error (guards against timing a no-op). */
    private void verify() {
        try (Tensor y = WeightOnly.matmul(x, w[0], null); Tensor yf = LinearAlgebra.matmul(x, wtF32)) {
            float[] a = y.toFloatArray();
            float[] b = yf.toFloatArray();
            double err = 0;
            double mag = 0;
            for (int i = 0; i < a.length; i++) {
                err = Math.max(err, Math.abs(a[i] - b[i]));
                mag = Math.max(mag, Math.abs(b[i]));
            }
            if (!(err < 0.2 * mag) || mag == 0) {
                throw new IllegalStateException("int4 GEMV differs from float32 by " + err + " (max |y| " + mag + ")");
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        for (PackedWeights p : w) {
            p.close();
        }
        x.close();
        wtF32.close();
        copySrc.close();
        copyDst.close();
    }

    @Benchmark
    public long int4Gemv() {
        PackedWeights layer = w[next];
        next = next + 1 == w.length ? 0 : next + 1;
        try (Tensor y = WeightOnly.matmul(x, layer, null)) {
            return y.dataAddress();
        }
    }

    @Benchmark
    public long float32Gemv() {
        try (Tensor y = LinearAlgebra.matmul(x, wtF32)) {
            return y.dataAddress();
        }
    }

    @Benchmark
    public int copyProbe() {
        return NativeCpu.ct_cpu_memcpy(copyDst.dataAddress(), copySrc.dataAddress(), COPY_BYTES);
    }
}
