package dev.cortado.bench;

import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Normalization;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.concurrent.TimeUnit;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.Pointer;
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
 * Memory-bound ops on 16M float32 elements (64 MiB per tensor, far beyond the 32 MiB L3), in
 * ms/op; jmh/summarize.py converts to GB/s with the bytes each op must move at minimum
 * (read + write, not counting write-allocate traffic):
 * <ul>
 *   <li>{@code add}: {@link Elementwise#add} as a user calls it (allocates and closes the
 *       output), 2 x 64 MiB read + 64 MiB written = 192 MiB;</li>
 *   <li>{@code addKernel}: the native {@code ct_cpu_binary(ADD)} into a preallocated output;</li>
 *   <li>{@code softmax}: {@link Normalization#softmax} over rows of 1024 ([16384, 1024], last
 *       axis), allocating the output, 64 MiB read + 64 MiB written = 128 MiB;</li>
 *   <li>{@code softmaxKernel}: the native {@code ct_cpu_softmax} into a preallocated output;</li>
 *   <li>{@code layerNorm} and {@code rmsNorm}: {@link Normalization#layerNorm} (weight and bias)
 *       and {@link Normalization#rmsNorm} (weight) over the same rows of 1024, allocating the output,
 *       128 MiB (the 4 KiB weight and bias stay in L1);</li>
 *   <li>{@code transposedCopy}: {@link Tensor#contiguous()} of the transposed view
 *       {@code x.transpose(0, 1)} ([1024, 16384] with strides (1, 1024)), allocating: a copy of a
 *       strided view, 128 MiB;</li>
 *   <li>ceilings, 64 MiB read + 64 MiB written = 128 MiB each: {@code copyTensor}
 *       ({@link Tensor#copy()}, allocates), {@code copyInto} ({@link Tensor#copyFrom} into a
 *       preallocated tensor), {@code ctMemcpy} (Cortado's threaded {@code ct_cpu_memcpy}) and
 *       {@code javacppMemcpy} ({@link Pointer#memcpy}: a single-threaded libc memcpy).</li>
 * </ul>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class BandwidthBenchmark {
    static final long N = 16L << 20;          // 16,777,216 elements
    static final long ROW = 1024;
    static final long ROWS = N / ROW;
    static final long BYTES = N * 4;          // 64 MiB per tensor
    /** CT_BINARY_ADD of native/include/cortado/elementwise.h (generated constant). */
    static final int CT_BINARY_ADD = dev.cortado.backend.kernels.NativeCodes.Binary.ADD;

    @Param({"1", "2"})
    public int threads;

    private Tensor a;
    private Tensor b;
    private Tensor x;
    private Tensor out;
    private Tensor gamma;
    private Tensor beta;
    private LongPointer shape;
    private LongPointer strides;
    private Pointer src;
    private Pointer dst;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        a = BenchSupport.filled(1.0f, N);
        b = BenchSupport.filled(2.0f, N);
        x = dev.cortado.ops.Generator.seeded(7).uniform(-4, 4, DType.FLOAT32, dev.cortado.tensor.Device.CPU,
                ROWS, ROW);
        out = BenchSupport.filled(0.0f, N);
        gamma = Generator.seeded(8).uniform(0.5, 1.5, DType.FLOAT32, Device.CPU, ROW);
        beta = Generator.seeded(9).uniform(-1, 1, DType.FLOAT32, Device.CPU, ROW);
        shape = new LongPointer(1).put(0, N);
        strides = new LongPointer(1).put(0, 1);
        src = BenchSupport.bytes(a.dataAddress(), BYTES);
        dst = BenchSupport.bytes(out.dataAddress(), BYTES);
        check(addKernel(), "ct_cpu_binary");
        if (out.toFloatArray()[(int) (N - 1)] != 3.0f) {
            throw new IllegalStateException("addKernel did not write 3.0");
        }
        check(softmaxKernel(), "ct_cpu_softmax");
    }

    private static void check(int status, String what) {
        if (status != 0) {
            throw new IllegalStateException(what + " failed: " + NativeCpu.ct_cpu_last_error().getString());
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        a.close();
        b.close();
        x.close();
        out.close();
        gamma.close();
        beta.close();
        shape.close();
        strides.close();
    }

    @Benchmark
    public long add() {
        try (Tensor z = Elementwise.add(a, b)) {
            return z.dataAddress();
        }
    }

    @Benchmark
    public int addKernel() {
        long s = strides.address();
        return NativeCpu.ct_cpu_binary(CT_BINARY_ADD, DType.FLOAT32.code(), 1, shape.address(),
                out.dataAddress(), s, a.dataAddress(), s, b.dataAddress(), s, 0);
    }

    @Benchmark
    public long softmax() {
        try (Tensor z = Normalization.softmax(x, -1)) {
            return z.dataAddress();
        }
    }

    @Benchmark
    public int softmaxKernel() {
        return NativeCpu.ct_cpu_softmax(DType.FLOAT32.code(), 0, ROWS, ROW, 1, x.dataAddress(), out.dataAddress(), 0);
    }

    @Benchmark
    public long layerNorm() {
        try (Tensor z = Normalization.layerNorm(x, gamma, beta, 1, 1e-5)) {
            return z.dataAddress();
        }
    }

    @Benchmark
    public long rmsNorm() {
        try (Tensor z = Normalization.rmsNorm(x, gamma, 1, 1e-6)) {
            return z.dataAddress();
        }
    }

    @Benchmark
    public long transposedCopy() {
        try (Tensor t = x.transpose(0, 1); Tensor z = t.contiguous()) {
            return z.dataAddress();
        }
    }

    @Benchmark
    public long copyTensor() {
        try (Tensor z = a.copy()) {
            return z.dataAddress();
        }
    }

    @Benchmark
    public void copyInto() {
        out.copyFrom(a);
    }

    @Benchmark
    public int ctMemcpy() {
        return NativeCpu.ct_cpu_memcpy(out.dataAddress(), a.dataAddress(), BYTES);
    }

    @Benchmark
    public Pointer javacppMemcpy() {
        return Pointer.memcpy(dst, src, BYTES);
    }
}
