package dev.cortado.bench;

import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.sparse.SparseTensor;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.Random;
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
 * CSR SpMM against our dense matmul in the same run (issue #15's speed bar: at least 3x at 90%
 * sparsity and 20x at 99%, and within 2x of the memory-bandwidth bound on the bytes SpMM must
 * read): A [4096, 4096] float32 with a uniformly random pattern of density 10% or 1%, times a dense
 * B [4096, 256].
 * <ul>
 *   <li>{@code csrSpmm}: {@link SparseTensor#matmul} (the {@code csr_spmm} op: validation of the
 *       indices, the AVX-512/AVX2 row kernel, output allocation);</li>
 *   <li>{@code denseMatmul}: {@link LinearAlgebra#matmul} of the same A stored dense (zeros included).</li>
 * </ul>
 * The bytes SpMM must read: values and column indices, 12·nnz, plus the row pointers, plus B once
 * (4 MiB) and C written once (4 MiB); at 10% that is 20 MiB + 8 MiB, so the bandwidth bound is
 * that over the machine's read bandwidth (BandwidthBenchmark measures it in the same run).
 * Run: {@code java -jar target/benchmarks.jar SparseBenchmark} with OMP_NUM_THREADS set (see
 * docs/benchmarks.md, run H).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class SparseBenchmark {
    /** Fraction of A's entries stored: 0.1 (90% sparsity) or 0.01 (99%). */
    @Param({"0.1", "0.01"})
    public double density;

    @Param({"1", "2"})
    public int threads;

    static final int M = 4096;
    static final int K = 4096;
    static final int N = 256;

    private SparseTensor a;
    private Tensor dense;
    private Tensor b;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        Random r = new Random(42);
        long[] crow = new long[M + 1];
        long[] colBuf = new long[(int) (M * (long) K * density * 1.2) + K];
        float[] valBuf = new float[colBuf.length];
        float[] full = new float[M * K];
        int nnz = 0;
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < K; j++) {
                if (r.nextDouble() < density) {
                    float v = (float) (r.nextDouble() * 2 - 1);
                    colBuf[nnz] = j;
                    valBuf[nnz++] = v;
                    full[i * K + j] = v;
                }
            }
            crow[i + 1] = nnz;
        }
        long[] col = java.util.Arrays.copyOf(colBuf, nnz);
        float[] val = java.util.Arrays.copyOf(valBuf, nnz);
        try (Tensor c = Tensor.of(crow, M + 1); Tensor k = Tensor.of(col, nnz); Tensor v = Tensor.of(val, nnz)) {
            a = SparseTensor.csr(c, k, v, M, K);
        }
        dense = Tensor.of(full, M, K);
        b = Generator.seeded(7).uniform(-1, 1, DType.FLOAT32, Device.CPU, K, N);
        verify();
    }

    /** The sparse and dense products must agree (guards against timing a wrong kernel). */
    private void verify() {
        try (Tensor s = a.matmul(b); Tensor d = LinearAlgebra.matmul(dense, b)) {
            float[] x = s.toFloatArray();
            float[] y = d.toFloatArray();
            double scale = 0;
            for (float v : y) {
                scale = Math.max(scale, Math.abs(v));
            }
            for (int i = 0; i < x.length; i++) {
                if (Math.abs(x[i] - y[i]) > 1e-4 * scale) {
                    throw new IllegalStateException("csr_spmm and matmul differ at " + i + ": " + x[i] + " vs " + y[i]);
                }
            }
        }
    }

    @Benchmark
    public float csrSpmm() {
        try (Tensor c = a.matmul(b)) {
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
        a.close();
        dense.close();
        b.close();
    }
}
