package dev.cortado.bench;

import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.quant.Binary;
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
 * Square binary GEMM {@code Y [n, n] = alpha (sign(A) sign(B)^T)}, n^3 sign multiply-adds per
 * call (XNOR + popcount, AVX-512 VPOPCNTDQ), next to our float32 matmul of the same shape (issue
 * 14's bar: the binary GEMM at n = 4096 at least 15x the float32 one):
 * <ul>
 *   <li>{@code binaryGemm}: {@link Binary#matmul} on operands bit-packed once (64 signs per word),
 *       with the per-column XNOR-Net scale;</li>
 *   <li>{@code binaryGemmWithBinarize}: the inference path of a binary layer, the activations
 *       binarized ({@link Binary#binarize}) in each call, then the same GEMM;</li>
 *   <li>{@code float32Matmul}: {@link LinearAlgebra#matmul} on float32 operands of the same shape.</li>
 * </ul>
 * Thread count {@code threads} (BenchSupport.setThreads).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 2, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class BinaryGemmBenchmark {
    @Param({"4096"})
    public int n;

    @Param({"1", "2"})
    public int threads;

    private Tensor af;
    private Tensor bf;
    private Tensor aBits;
    private Tensor bBits;
    private Tensor alpha;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        Generator g = Generator.seeded(42);
        af = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n);
        bf = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n);
        aBits = Binary.binarize(af);
        bBits = Binary.binarize(bf);
        alpha = Tensor.full(0.5, DType.FLOAT32, Device.CPU, n);
        verify();
    }

    /** A few elements against sign sums computed here (guards against timing a no-op). */
    private void verify() {
        float[] a = af.toFloatArray();
        float[] b = bf.toFloatArray();
        try (Tensor y = Binary.matmul(aBits, bBits, n, alpha, null)) {
            float[] got = y.toFloatArray();
            java.util.Random r = new java.util.Random(1);
            for (int t = 0; t < 32; t++) {
                int i = r.nextInt(n);
                int j = r.nextInt(n);
                long dot = 0;
                for (int k = 0; k < n; k++) {
                    dot += (a[i * n + k] >= 0) == (b[j * n + k] >= 0) ? 1 : -1;
                }
                if (got[i * n + j] != 0.5f * dot) {
                    throw new IllegalStateException("binary GEMM differs at (" + i + ", " + j + "): " + got[i * n + j] + " vs "
                            + 0.5 * dot);
                }
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        af.close();
        bf.close();
        aBits.close();
        bBits.close();
        alpha.close();
    }

    @Benchmark
    public long binaryGemm() {
        try (Tensor y = Binary.matmul(aBits, bBits, n, alpha, null)) {
            return y.dataAddress();
        }
    }

    @Benchmark
    public long binaryGemmWithBinarize() {
        try (Tensor bits = Binary.binarize(af); Tensor y = Binary.matmul(bits, bBits, n, alpha, null)) {
            return y.dataAddress();
        }
    }

    @Benchmark
    public long float32Matmul() {
        try (Tensor c = LinearAlgebra.matmul(af, bf)) {
            return c.dataAddress();
        }
    }
}
