package dev.cortado.bench;

import static org.bytedeco.openblas.global.openblas_nolapack.CblasNoTrans;
import static org.bytedeco.openblas.global.openblas_nolapack.CblasRowMajor;
import static org.bytedeco.openblas.global.openblas_nolapack.cblas_sgemm;

import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.concurrent.TimeUnit;
import org.bytedeco.javacpp.FloatPointer;
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
 * Square float32 GEMM C[n,n] = A[n,n] B[n,n], 2 n^3 FLOPs per op:
 * <ul>
 *   <li>{@code cortadoMatmul}: {@link LinearAlgebra#matmul} as a user calls it (allocates the
 *       output, closes it);</li>
 *   <li>{@code rawCblasSgemm}: OpenBLAS {@code cblas_sgemm} through the JavaCPP preset on the
 *       same native buffers, into a preallocated C (the ceiling Cortado is held to);</li>
 *   <li>{@code cortadoGemmKernel}: Cortado's native entry point {@code ct_cpu_gemm} on the same
 *       buffers, into the preallocated C (no Java op layer, no allocation): separates the cost of
 *       the Java layer + output allocation from the native wrapper.</li>
 * </ul>
 * Thread count: {@code threads} for both Cortado (OpenMP + OpenBLAS) and the raw call. Run the
 * JVM with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set to at least 2 (jmh/run-main-table.sh does;
 * see docs/benchmarks.md).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class MatmulBenchmark {
    @Param({"512", "1024", "2048"})
    public int n;

    @Param({"1", "2"})
    public int threads;

    private Tensor a;
    private Tensor b;
    private Tensor c;
    private FloatPointer pa;
    private FloatPointer pb;
    private FloatPointer pc;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        Generator g = Generator.seeded(42);
        a = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n);
        b = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n);
        c = Tensor.zeros(DType.FLOAT32, Device.CPU, n, n);
        long count = (long) n * n;
        pa = BenchSupport.floats(a.dataAddress(), count);
        pb = BenchSupport.floats(b.dataAddress(), count);
        pc = BenchSupport.floats(c.dataAddress(), count);
        verify();
    }

    /** The three variants must compute the same product (guards against measuring a no-op). */
    private void verify() {
        try (Tensor ref = LinearAlgebra.matmul(a, b)) {
            float[] expected = ref.toFloatArray();
            rawCblasSgemm();
            float[] raw = c.toFloatArray();
            if (cortadoGemmKernel() != 0) {
                throw new IllegalStateException("ct_cpu_gemm failed: " + NativeCpu.ct_cpu_last_error().getString());
            }
            float[] kernel = c.toFloatArray();
            for (int i = 0; i < expected.length; i++) {
                float tol = 1e-3f * Math.max(1f, Math.abs(expected[i]));
                if (Math.abs(expected[i] - raw[i]) > tol || Math.abs(expected[i] - kernel[i]) > tol) {
                    throw new IllegalStateException("results differ at " + i + ": matmul " + expected[i]
                            + ", cblas " + raw[i] + ", ct_cpu_gemm " + kernel[i]);
                }
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        a.close();
        b.close();
        c.close();
    }

    @Benchmark
    public long cortadoMatmul() {
        try (Tensor out = LinearAlgebra.matmul(a, b)) {
            return out.dataAddress();
        }
    }

    @Benchmark
    public void rawCblasSgemm() {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1f, pa, n, pb, n, 0f, pc, n);
    }

    @Benchmark
    public int cortadoGemmKernel() {
        long count = (long) n * n;
        return NativeCpu.ct_cpu_gemm(DType.FLOAT32.code(), 0, 0, 1, n, n, n, 1.0, a.dataAddress(), n, count,
                b.dataAddress(), n, count, 0.0, c.dataAddress(), n, count, 0);
    }
}
