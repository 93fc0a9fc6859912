package dev.cortado.bench;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.ops.Sparse;
import dev.cortado.ops.Sparse.SpmmBackend;
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
 * CSR SpMM on CUDA, Cortado's Sputnik-style kernel against cuSPARSE ({@link SpmmBackend}): A
 * [4096, 4096] float32 with a uniformly random pattern at density 10% or 1% (SparseBenchmark's
 * shapes), times B [4096, 256], each call synchronized (the time includes the index checks' one
 * synchronization). Needs a CUDA device; with {@code backend = CUSPARSE} also libcusparse (the
 * setup fails with the loader's message otherwise). Run: {@code java -jar target/benchmarks.jar
 * CudaSpmmBenchmark}; not yet run for numbers.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class CudaSpmmBenchmark {
    /** Fraction of A's entries stored: 0.1 (90% sparsity) or 0.01 (99%). */
    @Param({"0.1", "0.01"})
    public double density;

    /** The kernel that runs the product. */
    @Param({"CORTADO", "CUSPARSE"})
    public SpmmBackend backend;

    static final int M = 4096;
    static final int K = 4096;
    static final int N = 256;

    private final Device gpu = Device.cuda(0);
    private Tensor crow;
    private Tensor col;
    private Tensor values;
    private Tensor b;

    @Setup(Level.Trial)
    public void setup() {
        if (!gpu.isAvailable()) {
            throw new IllegalStateException("no usable CUDA device: " + CudaBackend.instance().unavailableReason());
        }
        Random r = new Random(42);
        long[] rowPtr = new long[M + 1];
        long[] colBuf = new long[(int) (M * (long) K * density * 1.2) + K];
        float[] valBuf = new float[colBuf.length];
        int nnz = 0;
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < K; j++) {
                if (r.nextDouble() < density) {
                    colBuf[nnz] = j;
                    valBuf[nnz++] = (float) (r.nextDouble() * 2 - 1);
                }
            }
            rowPtr[i + 1] = nnz;
        }
        crow = Tensor.of(rowPtr, gpu, M + 1);
        col = Tensor.of(java.util.Arrays.copyOf(colBuf, nnz), gpu, nnz);
        values = Tensor.of(java.util.Arrays.copyOf(valBuf, nnz), gpu, nnz);
        b = Tensor.of(new Random(7).doubles((long) K * N, -1, 1).toArray(), K, N).to(DType.FLOAT32, gpu);
        try (Tensor c = Sparse.csrSpmm(crow, col, values, b, backend)) { // fails here when cuSPARSE is missing
            CudaBackend.instance().synchronize(gpu);
        }
    }

    @Benchmark
    public float spmm() {
        try (Tensor c = Sparse.csrSpmm(crow, col, values, b, backend)) {
            CudaBackend.instance().synchronize(gpu);
            return c.dataAddress() == 0 ? 0 : 1;
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        crow.close();
        col.close();
        values.close();
        b.close();
    }
}
