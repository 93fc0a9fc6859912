package dev.cortado.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * OpenBLAS's parallel GEMM jobs on Cortado's OpenMP threads (native/cpu/runtime.cpp): the jobs of
 * one call wait for each other, so a team smaller than the job count would hang, and a wrong job
 * index would give wrong blocks. Checked against a float64 product on fresh random inputs of odd
 * sizes (float32: |error| <= 1e-5 * sum |a||b| per element), on 2 threads, from one Java thread,
 * from four at once, and in a child JVM where OpenMP may not start a second thread (the callback's
 * plain-thread fallback); every call must finish within the timeout.
 */
class BlasThreadPoolTest {
    private int savedThreads;

    @BeforeEach
    void twoThreads() {
        savedThreads = CpuBackend.threads();
        CpuBackend.setThreads(2);
    }

    @AfterEach
    void restore() {
        CpuBackend.setThreads(savedThreads);
    }

    /** One product [m,k] x [k,n] (b transposed in memory when bT) checked against float64. */
    private static void checkedProduct(long seed, int m, int k, int n, boolean bT) {
        Random r = new Random(seed);
        double[] a = Reference.uniform(r, m * k, -1, 1);
        double[] b = Reference.uniform(r, k * n, -1, 1);
        try (Tensor ta = Reference.make(a, DType.FLOAT32, m, k);
             Tensor tb0 = bT ? Reference.make(b, DType.FLOAT32, n, k) : Reference.make(b, DType.FLOAT32, k, n);
             Tensor tb = bT ? tb0.transpose(0, 1) : tb0.view(tb0.dims());
             Tensor y = LinearAlgebra.matmul(ta, tb)) {
            double[] got = Reference.values(y);
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double want = 0;
                    double mag = 0;
                    for (int p = 0; p < k; p++) {
                        double av = Reference.f32(a[i * k + p]);
                        double bv = Reference.f32(bT ? b[j * k + p] : b[p * n + j]);
                        want += av * bv;
                        mag += Math.abs(av * bv);
                    }
                    double err = Math.abs(got[i * n + j] - want);
                    if (err > 1e-5 * mag + 1e-30) {
                        throw new AssertionError("matmul [" + m + "," + k + "]x[" + k + "," + n + "] bT=" + bT + " at ("
                                + i + "," + j + "): got " + got[i * n + j] + ", want " + want + " (|a||b| " + mag + ")");
                    }
                }
            }
        }
    }

    @Test
    void openBlasJobsRunOnCortadosThreads() {
        String pool = System.getenv("CORTADO_BLAS_THREADS");
        assumeTrue(pool == null || !pool.equals("openblas"), "CORTADO_BLAS_THREADS=openblas keeps OpenBLAS's pool");
        assertTrue(CpuBackend.blasOnOpenMp());
        long before = NativeCpu.ct_cpu_blas_parallel_calls();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            checkedProduct(1, 301, 517, 389, false);
            checkedProduct(2, 257, 383, 511, true);
        });
        // both products are far above OpenBLAS's single-thread threshold on 2 threads
        assertTrue(NativeCpu.ct_cpu_blas_parallel_calls() - before >= 2,
                "OpenBLAS ran " + (NativeCpu.ct_cpu_blas_parallel_calls() - before) + " parallel calls on Cortado's threads");
    }

    /**
     * Under {@code OMP_THREAD_LIMIT=1} OpenMP cannot give a 2-job OpenBLAS call its team (a team
     * of one would leave job 0 waiting for job 1 forever), so the callback must start plain
     * threads: a child JVM with that limit runs checked products on 2 threads and must finish.
     */
    @Test
    void plainThreadsWhenOpenMpCannotPromiseATeam() throws Exception {
        String pool = System.getenv("CORTADO_BLAS_THREADS");
        assumeTrue(pool == null || !pool.equals("openblas"), "CORTADO_BLAS_THREADS=openblas keeps OpenBLAS's pool");
        ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), ChildWithThreadLimit.class.getName())
                .redirectErrorStream(true);
        pb.environment().put("OMP_THREAD_LIMIT", "1");
        Process p = pb.start();
        String out;
        try (var in = p.getInputStream()) {
            boolean done = p.waitFor(60, TimeUnit.SECONDS);
            if (!done) {
                p.destroyForcibly();
            }
            assertTrue(done, "the child JVM hung (OpenBLAS jobs without their partner)");
            out = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("parallel BLAS calls: "), out);
        long calls = Long.parseLong(out.substring(out.indexOf("parallel BLAS calls: ") + 21).trim().split("\\s+")[0]);
        assertTrue(calls >= 2, out);
    }

    /** The child of {@link #plainThreadsWhenOpenMpCannotPromiseATeam}. */
    public static final class ChildWithThreadLimit {
        public static void main(String[] args) {
            CpuBackend.setThreads(2);
            checkedProduct(7, 301, 517, 389, false);
            checkedProduct(8, 257, 383, 511, true);
            System.out.println("parallel BLAS calls: " + NativeCpu.ct_cpu_blas_parallel_calls());
        }
    }

    @Test
    void concurrentCallersEachGetAWholeTeam() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            assertTimeoutPreemptively(Duration.ofSeconds(120), () -> {
                List<Future<?>> done = new ArrayList<>();
                for (int t = 0; t < 4; t++) {
                    final int id = t;
                    done.add(pool.submit(() -> {
                        for (int rep = 0; rep < 3; rep++) {
                            checkedProduct(100 + 10L * id + rep, 193 + id, 411, 277 + 2 * rep, (id + rep) % 2 == 1);
                        }
                    }));
                }
                for (Future<?> f : done) {
                    f.get();
                }
            });
        } finally {
            pool.shutdownNow();
        }
        assertEquals(2, CpuBackend.threads());
    }
}
