package dev.cortado.bench;

import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.ops.Autocast;
import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
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
 * Square bfloat16 GEMM C[n,n] = A[n,n] B[n,n] (bfloat16 in and out, float32 accumulation),
 * 2 n^3 FLOPs per op, with each kernel of native/cpu/gemm_bf16.cpp forced through
 * {@code ct_cpu_set_bf16_gemm_kernel} ({@code kernel}: {@code auto} = the library's choice,
 * {@code widen} = bfloat16 widened to float32 + OpenBLAS sgemm, {@code dpbf16} = AVX512_BF16
 * register tiles, {@code amx} = AMX-BF16 tiles; a kernel this CPU cannot run fails its setup with
 * the reason):
 * <ul>
 *   <li>{@code matmul}: {@link LinearAlgebra#matmul} on bfloat16 tensors as a user calls it;</li>
 *   <li>{@code gemmKernel}: {@code ct_cpu_gemm} on the same buffers into a preallocated C;</li>
 *   <li>{@code autocastMatmul}: float32 tensors under {@link Autocast#bfloat16()} (the casts of
 *       A and B to bfloat16 included, as autocast training pays them).</li>
 * </ul>
 * Run in the same JMH invocation as {@code MatmulBenchmark} (float32 at the same n) and
 * {@code CeilingBenchmark} (fma, bf16Dot, amxBf16) for the ratios, e.g.
 * {@code java -jar jmh/target/benchmarks.jar 'CeilingBenchmark|MatmulBenchmark|Bf16MatmulBenchmark' -p n=1024,2048}
 * with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS >= 2 as for MatmulBenchmark (docs/benchmarks.md).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class Bf16MatmulBenchmark {
    @Param({"1024", "2048"})
    public int n;

    @Param({"1", "2"})
    public int threads;

    @Param({"auto", "widen", "dpbf16", "amx"})
    public String kernel;

    private Tensor a32;
    private Tensor b32;
    private Tensor a;
    private Tensor b;
    private Tensor c;

    static int kernelCode(String name) {
        return switch (name) {
            case "auto" -> NativeCodes.BF16_GEMM_AUTO;
            case "widen" -> NativeCodes.BF16_GEMM_WIDEN;
            case "dpbf16" -> NativeCodes.BF16_GEMM_DPBF16;
            case "amx" -> NativeCodes.BF16_GEMM_AMX;
            default -> throw new IllegalArgumentException("kernel must be auto, widen, dpbf16 or amx, got " + name);
        };
    }

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        if (NativeCpu.ct_cpu_set_bf16_gemm_kernel(kernelCode(kernel)) != 0) {
            throw new IllegalStateException("kernel " + kernel + ": " + NativeCpu.ct_cpu_last_error().getString());
        }
        System.out.println("\nBf16MatmulBenchmark: kernel " + kernel + " runs as "
                + NativeCpu.ct_cpu_bf16_gemm_kernel() + " (1 widen, 2 dpbf16, 3 amx)");
        Generator g = Generator.seeded(42);
        a32 = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n);
        b32 = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n);
        a = a32.to(DType.BFLOAT16);
        b = b32.to(DType.BFLOAT16);
        c = Tensor.zeros(DType.BFLOAT16, Device.CPU, n, n);
        verify();
    }

    /** The kernel's product against float32 sgemm of the same bfloat16 values (guards against a no-op). */
    private void verify() {
        try (Tensor aw = a.to(DType.FLOAT32);
             Tensor bw = b.to(DType.FLOAT32);
             Tensor want = LinearAlgebra.matmul(aw, bw);
             Tensor got = LinearAlgebra.matmul(a, b)) {
            float[] w = want.toFloatArray();
            float[] y = got.toFloatArray();
            for (int i = 0; i < w.length; i += 97) {
                // one bfloat16 rounding of the result plus float32 accumulation over n terms of |a b| <= 1
                if (Math.abs(w[i] - y[i]) > 0x1p-8 * Math.abs(w[i]) + n * 0x1p-22) {
                    throw new IllegalStateException("bf16 matmul differs at " + i + ": " + y[i] + " vs " + w[i]);
                }
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        NativeCpu.ct_cpu_set_bf16_gemm_kernel(NativeCodes.BF16_GEMM_AUTO);
        a32.close();
        b32.close();
        a.close();
        b.close();
        c.close();
    }

    @Benchmark
    public long matmul() {
        try (Tensor out = LinearAlgebra.matmul(a, b)) {
            return out.dataAddress();
        }
    }

    @Benchmark
    public int gemmKernel() {
        return NativeCpu.ct_cpu_gemm(DType.BFLOAT16.code(), 0, 0, 1, n, n, n, 1.0, a.dataAddress(), n, 0,
                b.dataAddress(), n, 0, 0.0, c.dataAddress(), n, 0, 0);
    }

    @Benchmark
    public long autocastMatmul() {
        try (Autocast ac = Autocast.bfloat16(); Tensor out = LinearAlgebra.matmul(a32, b32)) {
            return out.dataAddress();
        }
    }
}
