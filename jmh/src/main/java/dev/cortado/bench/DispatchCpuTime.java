package dev.cortado.bench;

import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.Tensor;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;

/**
 * {@link DispatchBenchmark#add1}'s work (a 1-element float32 {@code Elementwise.add} with the
 * output's allocation and close) timed in the calling thread's CPU time rather than wall time, so
 * that time the thread spends descheduled while other processes run is not counted: the way to
 * compare two builds' per-op overhead on a loaded machine, where JMH's wall-clock averages move
 * by 2x. Prints the best and every round's ns/op.
 *
 * <p>Two builds are compared by putting the older build's classes first on the class path (this
 * class is only in the newer jar): {@code java -cp old-benchmarks.jar:jmh/target/benchmarks.jar
 * dev.cortado.bench.DispatchCpuTime old}, then {@code java -cp jmh/target/benchmarks.jar
 * dev.cortado.bench.DispatchCpuTime new}, alternating a few times.
 */
public final class DispatchCpuTime {
    private static long sink;

    private DispatchCpuTime() {
    }

    public static void main(String[] args) {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        int n = 1_000_000;
        try (Tensor x = Tensor.of(new float[] {1.5f}, 1); Tensor y = Tensor.of(new float[] {2.25f}, 1)) {
            for (int w = 0; w < 5; w++) {
                loop(x, y, n);
            }
            double best = Double.MAX_VALUE;
            StringBuilder rounds = new StringBuilder();
            for (int r = 0; r < 9; r++) {
                long c0 = mx.getCurrentThreadCpuTime();
                loop(x, y, n);
                double ns = (mx.getCurrentThreadCpuTime() - c0) / (double) n;
                best = Math.min(best, ns);
                rounds.append(String.format(" %.1f", ns));
            }
            System.out.printf("%s add1: best %.1f ns/op of thread CPU time; rounds:%s%n", args.length > 0 ? args[0] : "",
                    best, rounds);
        }
        if (sink == 42) {
            System.out.println();
        }
    }

    private static void loop(Tensor x, Tensor y, int n) {
        long s = 0;
        for (int i = 0; i < n; i++) {
            try (Tensor z = Elementwise.add(x, y)) {
                s += z.dataAddress();
            }
        }
        sink += s;
    }
}
