package dev.cortado.bench;

import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.ops.Elementwise;
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
 * Per-op overhead on a 1-element float32 tensor (the work itself is ~1 ns):
 * <ul>
 *   <li>{@code add1}: {@link Elementwise#add} including the output allocation and its close
 *       (acceptance bar: under 1 us);</li>
 *   <li>{@code add1Scoped}: the same add inside a {@link dev.cortado.tensor.Scope} opened and
 *       closed around it (the scope frees the output);</li>
 *   <li>{@code emptyClose}: {@code Tensor.empty(float32, cpu, 1)} + close alone (the allocation
 *       share of {@code add1});</li>
 *   <li>{@code nativeAllocFree}: {@code ct_cpu_alloc} + {@code ct_cpu_free} of 4 bytes called
 *       directly, the way {@code CpuBackend} calls them (a fresh {@code long[1]} out-parameter):
 *       the native share of {@code emptyClose};</li>
 *   <li>{@code jniTrivial}: {@code NativeCpu.ct_cpu_get_num_threads()}, the cost of one JavaCPP
 *       JNI call that does nothing (an add makes several native calls: alloc, kernel, free).</li>
 * </ul>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class DispatchBenchmark {
    /** Cortado's thread setting (a 1-element op must not pay for a parallel region). */
    @Param({"1", "2"})
    public int threads;

    private Tensor x;
    private Tensor y;

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        x = Tensor.of(new float[] {1.5f}, 1);
        y = Tensor.of(new float[] {2.25f}, 1);
        try (Tensor z = Elementwise.add(x, y)) {
            if (z.toFloatArray()[0] != 3.75f) {
                throw new IllegalStateException("1.5 + 2.25 = " + z.toFloatArray()[0]);
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        x.close();
        y.close();
    }

    @Benchmark
    public long add1() {
        try (Tensor z = Elementwise.add(x, y)) {
            return z.dataAddress();
        }
    }

    @Benchmark
    public long add1Scoped() {
        try (dev.cortado.tensor.Scope scope = dev.cortado.tensor.Scope.open()) {
            Tensor z = Elementwise.add(x, y);
            return z.dataAddress();
        }
    }

    @Benchmark
    public long emptyClose() {
        try (Tensor z = Tensor.empty(DType.FLOAT32, Device.CPU, 1)) {
            return z.dataAddress();
        }
    }

    @Benchmark
    public long nativeAllocFree() {
        long[] address = new long[1];
        NativeCpu.ct_cpu_alloc(4, address);
        NativeCpu.ct_cpu_free(address[0], 4);
        return address[0];
    }

    @Benchmark
    public int jniTrivial() {
        return NativeCpu.ct_cpu_get_num_threads();
    }
}
