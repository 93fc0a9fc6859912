package dev.cortado.bench;

import dev.cortado.backend.cpu.NativeCpu;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.IntToDoubleFunction;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
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
 * The machine's ceilings, measured in the same JMH run as the benchmarks they bound, so that a
 * "fraction of peak" in docs/benchmarks.md compares numbers taken under the same conditions. Pure
 * Java (no Cortado code, no native library), so the ceilings do not move with the library:
 * <ul>
 *   <li>{@code fma}: peak float32 fused multiply-add throughput. Each thread runs {@link #CHAINS}
 *       independent chains {@code acc = acc * m + c} over {@link FloatVector}s of the preferred
 *       species (16 lanes on AVX-512: C2 emits one {@code vfmadd231ps zmm} per chain and step).
 *       The chains hide the FMA latency: with 2 FMA pipes of 4-cycle latency, 8 chains in flight
 *       keep both pipes busy; 12 leave a margin and still fit the 32 vector registers.
 *       FLOPs per op = {@link #FLOP_PER_THREAD} per thread, any vector width; the summarizer
 *       (jmh/summarize.py) turns ms/op into GFLOP/s. A core with two 512-bit FMA pipes (Zen 5,
 *       Xeon server cores) peaks at 64 FLOP/cycle, about 260 GFLOP/s at ~4 GHz; the hosts of
 *       this project's VMs have changed between sessions (Zen 4, Zen 5, Xeon), which is why the
 *       peak is measured in each run rather than assumed.</li>
 *   <li>{@code readSum}: read-only bandwidth, a vector sum over a 64 MiB float array (the size
 *       BandwidthBenchmark uses: twice the 32 MiB L3 of the AMD hosts; a host whose L3 is larger,
 *       as lscpu shows, may serve part of it from cache), split evenly across the threads;
 *       bytes = 64 MiB read.</li>
 *   <li>{@code copy}: copy bandwidth, {@code System.arraycopy} (an AVX-512 intrinsic) of a 64 MiB
 *       float array into another, split across the threads; bytes = 64 MiB read + 64 MiB
 *       written (write-allocate traffic not counted, as in {@link BandwidthBenchmark}).</li>
 * </ul>
 * Java has no bfloat16 dot product, so five compute ceilings come from the native probes of
 * {@code native/cpu/probe.cpp} (hand-written chains of one instruction, on the Java worker threads
 * like the FMA probe; each op {@link #FLOP_PER_THREAD} per thread too, so the summarizer's
 * arithmetic is the same):
 * <ul>
 *   <li>{@code bf16Dot}: AVX512_BF16 {@code vdpbf16ps} on 24 zmm chains, 32 bfloat16 products
 *       per instruction counted as 2 FLOPs each (the ceiling of the bfloat16 GEMM's DPBF16 kernel).
 *       On AMD Zen 4/5 it is twice the FMA rate; on the Intel Xeon (AMX) hosts it measured half.</li>
 *   <li>{@code amxBf16}: AMX-BF16 {@code tdpbf16ps}, four independent 16 x 16 tile products
 *       (16384 FLOPs each) per step: the ceiling of the AMX kernel, ~12x the FMA rate there.</li>
 *   <li>{@code amxInt8}: AMX-INT8 {@code tdpbusd}, the same four tile products (16 x 16 x 64
 *       uint8 x int8 products, 32768 operations each): the ceiling of the int8 GEMM's AMX kernel.</li>
 *   <li>{@code vnniU8s8}: AVX512_VNNI {@code vpdpbusd} on 24 zmm chains, 64 uint8 x int8
 *       products per instruction counted as 2 operations each (the int8 GEMM's 2 m n k): the
 *       ceiling of the int8 GEMM's VNNI kernel, in GOP/s.</li>
 *   <li>{@code fmaNative}: the same FMA chains as {@code fma}, in C++ ({@code vfmadd231ps}, 24
 *       chains): it should equal {@code fma}, showing the two probe families measure alike.</li>
 * </ul>
 * A probe the CPU lacks fails its benchmark with the reason (the others still run).
 * {@code threads} workers (the calling thread plus {@code threads - 1} pool threads) each do
 * their share; one op ends when the slowest finishes, as an OpenMP region does.
 * Needs {@code --add-modules jdk.incubator.vector}, set in the fork's JVM arguments below and in
 * the compiler arguments of jmh/pom.xml.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g", "--add-modules", "jdk.incubator.vector"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class CeilingBenchmark {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    /** Independent accumulator chains per thread. */
    static final int CHAINS = 12;
    /**
     * FLOPs per thread and op, 1.61 GFLOP (~6 ms at 260 GFLOP/s), whatever the vector width:
     * jmh/summarize.py divides it by the time.
     */
    static final long FLOP_PER_THREAD = 3L << 29;
    /** FMA steps per chain and op: 2^22 with 16 lanes (12 chains x 16 lanes x 2 FLOPs x 2^22 = FLOP_PER_THREAD). */
    static final int FMA_STEPS = (int) (FLOP_PER_THREAD / (CHAINS * 2L * S.length()));
    /** Elements of the bandwidth arrays: 16M float32 = 64 MiB, as in {@link BandwidthBenchmark}. */
    static final int N = 16 << 20;

    @Param({"1", "2"})
    public int threads;

    private ExecutorService pool;
    private float[] src;
    private float[] dst;

    @Setup(Level.Trial)
    public void setup() {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        pool = threads > 1 ? Executors.newFixedThreadPool(threads - 1, r -> {
            Thread t = new Thread(r, "ceiling-worker");
            t.setDaemon(true);
            return t;
        }) : null;
        src = new float[N];
        dst = new float[N];
        // small integers: every lane's partial sum stays exact in float32; the period 7 shares no
        // factor with the vector width, so a misplaced or missing load changes the sum
        for (int i = 0; i < N; i++) {
            src[i] = i % 7;
        }
        // Compile the kernels with C2 before the first measured op: the Vector API is only fast
        // once C2 has intrinsified it (interpreted, one op of fma takes seconds), and a short
        // warm-up would otherwise spend its only iteration in the interpreter.
        float sink = 0;
        for (int i = 0; i < 3000; i++) {
            sink += fmaChains(256, 1.0f);
            sink += (float) sum(src, 0, 1 << 14);
        }
        // sanity: the probes compute what they claim (a wrong vector loop would show here, not as a fast number)
        double want = 0;
        for (int i = 0; i < N; i++) {
            want += i % 7;
        }
        double got = readSum();
        if (got != want) {
            throw new IllegalStateException("readSum = " + got + ", expected " + want);
        }
        copy();
        for (int part = 0; part < threads; part++) {
            for (int i : new int[] {from(part), from(part) + 1, to(part) - 1}) {
                if (dst[i] != src[i]) {
                    throw new IllegalStateException("copy did not copy element " + i);
                }
            }
        }
        // each lane must hold exactly what the scalar float FMA chain gives (the same IEEE operation);
        // after 2^20 steps a chain started at a is near 1 + (a - 1) / e, far enough from its start
        // that a multiply without the add, a dropped chain or a wrong constant is off by percents
        int checkSteps = 1 << 20;
        double fmaWant = 0;
        for (int k = 0; k < CHAINS; k++) {
            float a = 1.0f + k;
            for (int step = 0; step < checkSteps; step++) {
                a = Math.fma(a, M, C);
            }
            fmaWant += (double) S.length() * a;
        }
        float fmaGot = fmaChains(checkSteps, 1.0f);
        if (Math.abs(fmaGot - fmaWant) > 1e-5 * fmaWant) {   // only the order of the final sum differs
            throw new IllegalStateException("fma chains gave " + fmaGot + ", expected " + fmaWant);
        }
        System.out.println("\nCeilingBenchmark: " + S + " (" + S.length() + " float32 lanes), " + CHAINS
                + " FMA chains per thread, " + threads + " thread(s); checks passed (fma relative error "
                + String.format("%.1e", Math.abs(fmaGot - fmaWant) / fmaWant) + ", warm-up sum " + sink + ")");
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (pool != null) {
            pool.shutdownNow();
        }
    }

    /** Runs {@code part(i)} for i in [0, threads): i = 0 on the calling thread; returns the sum. */
    private double team(IntToDoubleFunction part) {
        if (pool == null) {
            return part.applyAsDouble(0);
        }
        List<Future<Double>> rest = new ArrayList<>(threads - 1);
        for (int i = 1; i < threads; i++) {
            int id = i;
            rest.add(pool.submit(() -> part.applyAsDouble(id)));
        }
        double sum = part.applyAsDouble(0);
        try {
            for (Future<Double> f : rest) {
                sum += f.get();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        } catch (ExecutionException e) {
            throw new IllegalStateException(e.getCause());
        }
        return sum;
    }

    private int from(int part) {
        // split on whole vectors so that every part but the last has no scalar tail
        int per = (N / threads) / S.length() * S.length();
        return part * per;
    }

    private int to(int part) {
        return part == threads - 1 ? N : from(part + 1);
    }

    @Benchmark
    public double fma() {
        return team(i -> fmaChains(FMA_STEPS, 1.0f + 16 * i));
    }

    /** vdpbf16ps steps per op: 64 FLOPs x 24 chains per step (2^20 steps, ~15 ms at 107 GFLOP/s). */
    static final long BF16_DOT_STEPS = FLOP_PER_THREAD / (64 * 24);
    /** AMX steps per op: 4 x 16384 FLOPs per step. */
    static final long AMX_STEPS = FLOP_PER_THREAD / 65536;
    /** AMX int8 steps per op: 4 x 32768 integer operations per step. */
    static final long AMX_INT8_STEPS = FLOP_PER_THREAD / 131072;
    /** VNNI steps per op: 128 integer operations x 24 chains per step. */
    static final long VNNI_STEPS = FLOP_PER_THREAD / (128 * 24);
    /** Native FMA steps per op: 32 FLOPs x 24 chains per step. */
    static final long FMA_NATIVE_STEPS = FLOP_PER_THREAD / (32 * 24);

    /** A native probe's call: status and exact lane sum (checked against its closed form once per trial). */
    interface NativeProbe {
        int run(long steps, double[] sum);
    }

    /** Runs a probe on the team; fails with the native message where the CPU lacks the instruction. */
    private double nativeProbe(String name, NativeProbe probe, long steps, double expectedSum) {
        return team(i -> {
            double[] sum = new double[1];
            int status = probe.run(steps, sum);
            if (status != 0) {
                throw new IllegalStateException(name + ": " + NativeCpu.ct_cpu_last_error().getString());
            }
            if (sum[0] != expectedSum) {
                throw new IllegalStateException(name + " summed " + sum[0] + ", expected " + expectedSum);
            }
            return sum[0];
        });
    }

    /** 16 lanes x sum_{j<24} (j + steps 2^-12): the exact lane sum of bf16Dot and fmaNative. */
    static double chainSum(long steps) {
        double s = 0;
        for (int j = 0; j < 24; j++) {
            s += 16 * (j + steps * 0x1p-12);
        }
        return s;
    }

    @Benchmark
    public double bf16Dot() {
        return nativeProbe("bf16Dot", NativeCpu::ct_cpu_probe_bf16_dot, BF16_DOT_STEPS, chainSum(BF16_DOT_STEPS));
    }

    @Benchmark
    public double amxBf16() {
        return nativeProbe("amxBf16", NativeCpu::ct_cpu_probe_amx_bf16, AMX_STEPS, 4.0 * 256 * 32 * AMX_STEPS);
    }

    @Benchmark
    public double amxInt8() {
        return nativeProbe("amxInt8", NativeCpu::ct_cpu_probe_amx_int8, AMX_INT8_STEPS, 4.0 * 256 * 64 * AMX_INT8_STEPS);
    }

    @Benchmark
    public double vnniU8s8() {
        double want = 0;
        for (int j = 0; j < 24; j++) {
            want += 16 * (j + 4.0 * VNNI_STEPS);
        }
        return nativeProbe("vnniU8s8", NativeCpu::ct_cpu_probe_vnni_u8s8, VNNI_STEPS, want);
    }

    @Benchmark
    public double fmaNative() {
        return nativeProbe("fmaNative", NativeCpu::ct_cpu_probe_fma_f32, FMA_NATIVE_STEPS, chainSum(FMA_NATIVE_STEPS));
    }

    @Benchmark
    public double readSum() {
        return team(i -> sum(src, from(i), to(i)));
    }

    @Benchmark
    public double copy() {
        return team(i -> {
            int a = from(i);
            System.arraycopy(src, a, dst, a, to(i) - a);
            return 0;
        });
    }

    static final float M = 1.0f - 0x1p-20f;
    static final float C = 0x1p-20f;

    /**
     * {@link #CHAINS} independent chains of {@code acc = acc * m + c} for {@code steps} steps,
     * chain k starting at {@code start + k}. With m = 1 - 2^-20 and c = 2^-20 every chain moves
     * slowly towards 1 and stays finite and normal, so no denormal or overflow slows the pipes.
     * The starts differ so that the compiler cannot merge identical chains into one. Returns the
     * sum of all lanes (consumed by JMH).
     */
    static float fmaChains(int steps, float start) {
        FloatVector m = FloatVector.broadcast(S, M);
        FloatVector c = FloatVector.broadcast(S, C);
        FloatVector a0 = FloatVector.broadcast(S, start);
        FloatVector a1 = FloatVector.broadcast(S, start + 1);
        FloatVector a2 = FloatVector.broadcast(S, start + 2);
        FloatVector a3 = FloatVector.broadcast(S, start + 3);
        FloatVector a4 = FloatVector.broadcast(S, start + 4);
        FloatVector a5 = FloatVector.broadcast(S, start + 5);
        FloatVector a6 = FloatVector.broadcast(S, start + 6);
        FloatVector a7 = FloatVector.broadcast(S, start + 7);
        FloatVector a8 = FloatVector.broadcast(S, start + 8);
        FloatVector a9 = FloatVector.broadcast(S, start + 9);
        FloatVector a10 = FloatVector.broadcast(S, start + 10);
        FloatVector a11 = FloatVector.broadcast(S, start + 11);
        for (int i = 0; i < steps; i++) {
            a0 = a0.fma(m, c);
            a1 = a1.fma(m, c);
            a2 = a2.fma(m, c);
            a3 = a3.fma(m, c);
            a4 = a4.fma(m, c);
            a5 = a5.fma(m, c);
            a6 = a6.fma(m, c);
            a7 = a7.fma(m, c);
            a8 = a8.fma(m, c);
            a9 = a9.fma(m, c);
            a10 = a10.fma(m, c);
            a11 = a11.fma(m, c);
        }
        return a0.add(a1).add(a2).add(a3).add(a4).add(a5).add(a6).add(a7).add(a8).add(a9).add(a10).add(a11)
                .reduceLanes(VectorOperators.ADD);
    }

    /** Sum of a[from, to) with four vector accumulators (enough to keep the loads streaming); part bounds are whole vectors. */
    static double sum(float[] a, int from, int to) {
        int step = 4 * S.length();
        FloatVector s0 = FloatVector.zero(S);
        FloatVector s1 = s0;
        FloatVector s2 = s0;
        FloatVector s3 = s0;
        int i = from;
        for (; i + step <= to; i += step) {
            s0 = s0.add(FloatVector.fromArray(S, a, i));
            s1 = s1.add(FloatVector.fromArray(S, a, i + S.length()));
            s2 = s2.add(FloatVector.fromArray(S, a, i + 2 * S.length()));
            s3 = s3.add(FloatVector.fromArray(S, a, i + 3 * S.length()));
        }
        double r = 0;   // the lanes' sums in double: their total may exceed float32's exact range
        for (FloatVector v : List.of(s0, s1, s2, s3)) {
            for (float lane : v.toArray()) {
                r += lane;
            }
        }
        for (; i < to; i++) {
            r += a[i];
        }
        return r;
    }
}
