package dev.cortado.distributed;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The MPI process group across real processes: {@code mpirun -np N} child JVMs running
 * {@link CollectivesWorker}, every collective against a float64 reference of the whole job (2 and 4
 * processes on this 2-core machine: oversubscribed). Skipped where {@code mpirun} is absent or the
 * build has no MPI; {@code .ci/run} installs Open MPI, so CI runs it.
 */
class MpiProcessGroupTest {

    static Path mpirun() {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            Path p = Path.of(dir, "mpirun");
            if (Files.isExecutable(p)) {
                return p;
            }
        }
        return null;
    }

    /** Runs {@code mpirun -np n java <worker> scenario}; returns exit code and output. */
    static Result launch(int n, String scenario, int timeoutSeconds, String... arguments)
            throws IOException, InterruptedException {
        Path mpirun = mpirun();
        assumeTrue(mpirun != null, "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)");
        assumeTrue(ProcessGroup.mpiAvailable(), "this build of libcortado_comm has no MPI");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cp = System.getProperty("java.class.path");
        String mp = System.getProperty("jdk.module.path");
        if (mp != null && !mp.isEmpty()) {
            cp = cp + File.pathSeparator + mp;
        }
        List<String> command = new ArrayList<>(List.of(mpirun.toString(), "-np", Integer.toString(n),
                "--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader",
                java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp", cp, CollectivesWorker.class.getName(), scenario));
        command.addAll(List.of(arguments));
        ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true);
        // one OpenMP/BLAS thread per process: they share two cores
        builder.environment().put("OMP_NUM_THREADS", "1");
        Process process = builder.start();
        byte[] out = process.getInputStream().readAllBytes();
        boolean finished = process.waitFor(timeoutSeconds, TimeUnit.SECONDS);
        if (!finished) {
            process.destroyForcibly();
        }
        return new Result(finished ? process.exitValue() : -1, new String(out, StandardCharsets.UTF_8));
    }

    record Result(int exit, String output) {
    }

    @ParameterizedTest(name = "{0} processes")
    @ValueSource(ints = {2, 4})
    void everyCollectiveMatchesItsReferenceOnEveryRank(int processes) throws Exception {
        Result r = launch(processes, "collectives", 120);
        assertEquals(0, r.exit(), r.output());
        for (int rank = 0; rank < processes; rank++) {
            assertTrue(r.output().contains("rank " + rank + " of " + processes + ": 11 checks passed"), r.output());
        }
    }

    /**
     * DDP over 2 and 4 processes gives the parameters of one process training on the concatenated
     * batch (broadcast at wrap, bucketed averaging, gradient accumulation with noSync), starts an
     * all-reduce before the backward ends, and names a parameter that got no gradient.
     */
    @ParameterizedTest(name = "{0} processes")
    @ValueSource(ints = {2, 4})
    void dataParallelTrainingEqualsOneProcessOnTheWholeBatch(int processes) throws Exception {
        Result r = launch(processes, "ddp", 180);
        assertEquals(0, r.exit(), r.output());
        for (int rank = 0; rank < processes; rank++) {
            assertTrue(r.output().contains("rank " + rank + " of " + processes + ": 6 checks passed"), r.output());
        }
    }

    /** Deep Gradient Compression's exchange over 2 and 4 processes, against every rank's compressions rebuilt locally. */
    @ParameterizedTest(name = "{0} processes")
    @ValueSource(ints = {2, 4})
    void compressedAllReduceAveragesWhatEachRankSent(int processes) throws Exception {
        Result r = launch(processes, "dgc", 180);
        assertEquals(0, r.exit(), r.output());
        for (int rank = 0; rank < processes; rank++) {
            assertTrue(r.output().contains("rank " + rank + " of " + processes + ": 2 checks passed"), r.output());
        }
    }

    /**
     * DDP with compression built in (CompressedDdpScenario.compressed): exact at density 1, replicas
     * bitwise identical at 1%, the bytes sent equal the formula, >= 100x fewer values at 0.1%, the
     * all-gather overlaps the backward.
     */
    @ParameterizedTest(name = "{0} processes")
    @ValueSource(ints = {2, 4})
    void compressedDataParallelKeepsReplicasIdenticalAndSendsTheRatio(int processes) throws Exception {
        assertChecks(launch(processes, "ddp-compressed", 180), processes, 5);
    }

    /** Error feedback: the gradients delivered at 5% density average to the true mean gradient. */
    @ParameterizedTest(name = "{0} processes")
    @ValueSource(ints = {2, 4})
    void errorFeedbackDeliversEveryGradientEventually(int processes) throws Exception {
        assertChecks(launch(processes, "error-feedback", 180), processes, 1);
    }

    /** MNIST on 2 processes: compressed DDP (1% after warm-up) within 1.5 points of dense DDP, dense above 88%. */
    @Test
    void compressedMnistAccuracyIsWithinOnePointFiveOfDense() throws Exception {
        assertChecks(launch(2, "mnist-compressed", 400), 2, 2);
    }

    /** The compiled training step under DDP equals eager DDP and one process on the whole batch. */
    @ParameterizedTest(name = "{0} processes")
    @ValueSource(ints = {2, 4})
    void compiledTrainingStepUnderDdpEqualsEagerDdp(int processes) throws Exception {
        assertChecks(launch(processes, "ddp-compiled", 180), processes, 3);
    }

    private static void assertChecks(Result r, int processes, int checks) {
        System.out.print(r.output()); // the measured figures (accuracies, bytes, errors) for the log
        assertEquals(0, r.exit(), r.output());
        for (int rank = 0; rank < processes; rank++) {
            assertTrue(r.output().contains("rank " + rank + " of " + processes + ": " + checks + " checks passed"), r.output());
        }
    }

    @ParameterizedTest(name = "{0} processes")
    @ValueSource(ints = {2, 4})
    void everyRankResumesFromTheCheckpoint(int processes, @TempDir Path dir) throws Exception {
        Result r = launch(processes, "resume", 180, dir.toString());
        assertEquals(0, r.exit(), r.output());
        for (int rank = 0; rank < processes; rank++) {
            assertTrue(r.output().contains("rank " + rank + " of " + processes + ": 3 checks passed"), r.output());
        }
    }

    /** A rank that crashes ends the whole job (mpirun), naming the rank, instead of leaving rank 0 waiting. */
    @Test
    void aPeerThatDiesEndsTheJobQuickly() throws Exception {
        long start = System.nanoTime();
        Result r = launch(2, "die", 60);
        long seconds = (System.nanoTime() - start) / 1_000_000_000L;
        assertNotEquals(0, r.exit(), r.output());
        assertTrue(r.output().contains("rank 1 halts"), r.output());
        assertTrue(!r.output().contains("checks passed"), r.output());
        assertTrue(r.output().contains("Exit code:    7"), "mpirun names the process and its exit code:\n" + r.output());
        assertTrue(seconds < 45, "the job ended after " + seconds + " s, well before rank 0's 60 s timeout:\n" + r.output());
    }

    @Test
    void aPeerThatNeverJoinsFailsTheCollectiveWithinTheTimeout() throws Exception {
        Result r = launch(2, "hang", 60);
        assertNotEquals(0, r.exit(), "the job was aborted:\n" + r.output());
        String line = r.output().lines().filter(l -> l.startsWith("rank 0 gave up after")).findFirst().orElse("");
        assertTrue(line.contains("did not complete within 3000 ms") && line.contains("all_reduce(sum)")
                && line.contains("rank 0 of 2"), r.output());
        long ms = Long.parseLong(line.replaceAll("^rank 0 gave up after (\\d+) ms.*$", "$1"));
        assertTrue(ms >= 3000 && ms < 20_000, "gave up after " + ms + " ms, timeout 3000 ms");
    }
}
