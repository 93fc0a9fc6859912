package dev.cortado.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Checkpoints survive crashes and bad disks (docs/reliability.md, "Crash-safe files"):
 *
 * <ul>
 *   <li>a child JVM saving checkpoints in a loop, alternating two known states, is killed with
 *       SIGKILL at a random moment, many times: the file on disk is always complete, loads (its
 *       checksums verified) and equals one of the two states, never a mix or a torn write;
 *   <li>a save onto a full file system (a real 1 MiB tmpfs, when the test may mount one) throws
 *       and leaves the old checkpoint byte for byte, with no temporary file;
 *   <li>a byte flipped in a tensor's data after the save is reported on load, naming the tensor
 *       and the file, before any tensor reaches the caller.
 * </ul>
 *
 * <p>{@code -Dcortado.crashTrials=N} sets the number of kills (default {@value #DEFAULT_TRIALS},
 * about two minutes on 2 cores shared with other builds); {@code scripts/crash-safety.sh N} runs only this class with N.
 */
class CrashSafetyTest {
    static final int DEFAULT_TRIALS = 60;
    /** Children running at once (each on its own file): overlaps JVM start-up with the others' saves. */
    static final int LANES = 3;

    @TempDir
    Path dir;

    // ------------------------------------------------------------------ the two states

    /** State {@code k} (0 or 1): a model and an optimizer of ~1.2 MB whose every value depends on k. */
    static Map<String, Tensor> model(int k) {
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("embed.weight", Tensor.of(values(k, 1, 512 * 256), 512, 256));
        m.put("fc.weight", Tensor.of(values(k, 2, 64 * 257), 64, 257));
        m.put("fc.bias", Tensor.of(values(k, 3, 64), 64));
        m.put("steps", Tensor.of(new long[] {k, 1000 + k, 7L * k}, 3));
        return m;
    }

    static Map<String, Tensor> optimizer(int k) {
        return Map.of("embed.weight.exp_avg", Tensor.of(values(k, 4, 512 * 256), 512, 256));
    }

    private static final Map<String, float[]> VALUES = new java.util.concurrent.ConcurrentHashMap<>();

    /** Deterministic values of state {@code k}, computed once per process (read-only: never modify). */
    private static float[] values(int k, int which, int n) {
        return VALUES.computeIfAbsent(k + "/" + which + "/" + n, key -> gaussians(k, which, n));
    }

    private static float[] gaussians(int k, int which, int n) {
        Random r = new Random(31L * which + k);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    static void save(Path p, int k) throws IOException {
        try (Scope s = Scope.open()) {
            Checkpoint.save(p, model(k), optimizer(k), Map.of("step", Integer.toString(k)));
        }
    }

    /** Loads {@code p} and returns which state it holds; fails unless it is exactly state 0 or 1. */
    static int loadAndIdentify(Path p) throws IOException {
        try (Scope s = Scope.open(); Checkpoint.Loaded ck = Checkpoint.load(p, Device.CPU)) {
            int k = (int) ck.step().orElseThrow();
            assertTrue(k == 0 || k == 1, p + ": step " + k);
            Map<String, Tensor> wantModel = model(k);
            Map<String, Tensor> wantOpt = optimizer(k);
            assertEquals(wantModel.keySet(), ck.model().keySet());
            assertEquals(wantOpt.keySet(), ck.optimizer().keySet());
            for (var e : wantModel.entrySet()) {
                assertSame(e.getValue(), ck.model().get(e.getKey()), p + " model." + e.getKey());
            }
            for (var e : wantOpt.entrySet()) {
                assertSame(e.getValue(), ck.optimizer().get(e.getKey()), p + " optim." + e.getKey());
            }
            return k;
        }
    }

    private static void assertSame(Tensor want, Tensor got, String what) {
        assertEquals(want.shape(), got.shape(), what);
        assertEquals(want.dtype(), got.dtype(), what);
        if (want.dtype() == dev.cortado.tensor.DType.INT64) {
            assertArrayEquals(want.toLongArray(), got.toLongArray(), what);
        } else {
            assertArrayEquals(want.toFloatArray(), got.toFloatArray(), what);
        }
    }

    // ------------------------------------------------------------------ SIGKILL

    /**
     * The child: saves state 1, 0, 1, 0, ... to args[0] forever, printing a line after each save.
     * Both states are built once, so the loop is (nearly) all saving.
     */
    public static final class Saver {
        public static void main(String[] args) throws IOException {
            Path p = Path.of(args[0]);
            List<Map<String, Tensor>> models = List.of(model(0), model(1));
            List<Map<String, Tensor>> optimizers = List.of(optimizer(0), optimizer(1));
            for (long i = 1; ; i++) {
                int k = (int) (i & 1);
                Checkpoint.save(p, models.get(k), optimizers.get(k), Map.of("step", Integer.toString(k)));
                System.out.println("saved " + i);
                System.out.flush();
            }
        }
    }

    record Outcome(int state, int leftovers) {
    }

    @Test
    void sigkillAtRandomPointsLeavesTheOldOrTheNewCheckpoint() throws Exception {
        int trials = Integer.getInteger("cortado.crashTrials", DEFAULT_TRIALS);
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cp = System.getProperty("java.class.path");
        int[] byState = new int[2];
        AtomicInteger midSave = new AtomicInteger();
        AtomicInteger leftoverFiles = new AtomicInteger();
        AtomicInteger done = new AtomicInteger();
        long start = System.nanoTime();
        ExecutorService lanes = Executors.newFixedThreadPool(LANES);
        try {
            List<Future<List<Outcome>>> futures = new ArrayList<>();
            for (int lane = 0; lane < LANES; lane++) {
                Path laneDir = Files.createDirectory(dir.resolve("lane" + lane));
                int count = trials / LANES + (lane < trials % LANES ? 1 : 0);
                futures.add(lanes.submit(() -> runLane(java, cp, laneDir, count, done)));
            }
            for (Future<List<Outcome>> f : futures) {
                for (Outcome o : f.get(30, TimeUnit.MINUTES)) {
                    byState[o.state()]++;
                    leftoverFiles.addAndGet(o.leftovers());
                    if (o.leftovers() > 0) {
                        midSave.incrementAndGet();
                    }
                }
            }
        } finally {
            lanes.shutdownNow();
        }
        String summary = String.format("%d SIGKILLs in %.1f s: file held state 0 %d times, state 1 %d times; "
                        + "%d kills landed inside a save (a temporary file was left beside the checkpoint)",
                trials, (System.nanoTime() - start) / 1e9, byState[0], byState[1], midSave.get());
        System.out.println("CrashSafetyTest: " + summary);
        assertEquals(trials, byState[0] + byState[1], summary);
        // the kills must have hit the interesting moments, or the test proves nothing
        if (trials >= 30) {
            assertTrue(midSave.get() >= trials / 10, "too few kills landed inside a save: " + summary);
            assertTrue(byState[0] > 0 && byState[1] > 0, "one state never survived: " + summary);
        }
    }

    private static List<Outcome> runLane(String java, String cp, Path laneDir, int count, AtomicInteger done)
            throws IOException, InterruptedException {
        Path ck = laneDir.resolve("ck.safetensors");
        save(ck, 0);
        List<Outcome> out = new ArrayList<>();
        ThreadLocalRandom rnd = ThreadLocalRandom.current();
        for (int t = 0; t < count; t++) {
            ProcessBuilder pb = new ProcessBuilder(java, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                    "-Xshare:auto", "-cp", cp, Saver.class.getName(), ck.toString())
                    .redirectErrorStream(true);
            pb.environment().put("OMP_NUM_THREADS", "1");
            pb.environment().put("OPENBLAS_NUM_THREADS", "1");
            Process child = pb.start();
            try {
                BufferedReader lines = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8));
                // wait for the child's first completed save, timing it: the kill then comes at a random
                // moment of the next few saves
                long t0 = System.nanoTime();
                StringBuilder other = new StringBuilder();
                String line;
                while ((line = lines.readLine()) != null && !line.startsWith("saved ")) {
                    other.append(line).append('\n'); // JVM or library warnings
                }
                if (line == null) {
                    fail("the saving child did not start (exit " + child.waitFor() + "):\n" + other);
                }
                long firstSave = Math.max(System.nanoTime() - t0, 1_000_000);
                long period = Math.min(firstSave / 4, 100_000_000L);   // later saves are faster (JIT)
                long delay = rnd.nextLong(Math.max(period * 3, 2_000_000));
                TimeUnit.NANOSECONDS.sleep(delay);
                // Process.destroyForcibly is SIGKILL on Linux: no shutdown hooks, no finally blocks
                // (it also closes our end of the pipes: nothing is read after it)
                child.destroyForcibly();
                child.waitFor();
            } finally {
                child.destroyForcibly();
            }
            int leftovers = 0;
            try (Stream<Path> files = Files.list(laneDir)) {
                for (Path f : files.toList()) {
                    if (f.equals(ck)) {
                        continue;
                    }
                    String name = f.getFileName().toString();
                    assertTrue(name.startsWith(".ck.safetensors.") && name.endsWith(".tmp"), "unexpected file " + f);
                    Files.delete(f);
                    leftovers++;
                }
            }
            out.add(new Outcome(loadAndIdentify(ck), leftovers));
            done.incrementAndGet();
        }
        return out;
    }

    // ------------------------------------------------------------------ full disk

    @Test
    void aFullDiskFailsTheSaveAndKeepsTheOldCheckpoint() throws Exception {
        Path mnt = Files.createDirectory(dir.resolve("tiny"));
        assumeTrue(run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt.toString()) == 0,
                "needs permission to mount a 1 MiB tmpfs (root in a container that allows it)");
        try {
            Path ck = mnt.resolve("ck.safetensors");
            try (Scope s = Scope.open()) {
                // ~0.2 MB: fits; then ~1 MB, which cannot fit beside it
                Checkpoint.save(ck, Map.of("w", Tensor.of(values(0, 9, 50_000), 50_000)), null, Map.of("step", "1"));
                byte[] old = Files.readAllBytes(ck);
                Map<String, Tensor> big = Map.of("w", Tensor.of(values(1, 9, 250_000), 250_000));
                IOException e = assertThrows(IOException.class, () -> Checkpoint.save(ck, big, null, Map.of("step", "2")));
                assertTrue(String.valueOf(e.getMessage()).contains("No space left on device"), e.toString());
                assertArrayEquals(old, Files.readAllBytes(ck));
                try (Stream<Path> files = Files.list(mnt)) {
                    assertEquals(List.of(ck), files.toList(), "the temporary file was removed");
                }
                try (Checkpoint.Loaded loaded = Checkpoint.load(ck, Device.CPU)) {
                    assertEquals(1, loaded.step().getAsLong());
                }
                // and the space came back: a save that fits works again
                Checkpoint.save(ck, Map.of("w", Tensor.of(values(2, 9, 60_000), 60_000)), null, Map.of("step", "3"));
                try (Checkpoint.Loaded loaded = Checkpoint.load(ck, Device.CPU)) {
                    assertEquals(3, loaded.step().getAsLong());
                }
            }
        } finally {
            assertEquals(0, run("umount", mnt.toString()), "umount " + mnt);
        }
    }

    private static int run(String... command) throws InterruptedException {
        try {
            Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor();
        } catch (IOException e) {
            return -1; // no such command
        }
    }

    // ------------------------------------------------------------------ checksums

    @Test
    void aFlippedByteIsReportedWithTheTensorAndTheFile() throws IOException {
        Path ck = dir.resolve("ck.safetensors");
        save(ck, 1);
        Safetensors.Header h = Safetensors.readHeader(ck);
        assertEquals(5, h.checksums().size(), "a CRC32C per tensor");
        assertTrue(h.metadata().keySet().stream().noneMatch(k -> k.startsWith(Safetensors.CRC32C_KEY_PREFIX)));
        for (Safetensors.TensorInfo victim : h.tensors()) {
            if (victim.byteSize() == 0) {
                continue;
            }
            byte[] good = Files.readAllBytes(ck);
            long at = h.dataStart() + victim.begin() + ThreadLocalRandom.current().nextLong(victim.byteSize());
            byte[] bad = good.clone();
            bad[(int) at] ^= (byte) (1 << ThreadLocalRandom.current().nextInt(8));
            Files.write(ck, bad, StandardOpenOption.TRUNCATE_EXISTING);
            long before = dev.cortado.backend.cpu.CpuBackend.liveAllocations();
            CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> Checkpoint.load(ck, Device.CPU));
            assertEquals(before, dev.cortado.backend.cpu.CpuBackend.liveAllocations(), "tensors read so far were freed");
            assertTrue(e.getMessage().contains("\"" + victim.name() + "\"") && e.getMessage().contains(ck.toString())
                    && e.getMessage().contains("CRC32C"), e.getMessage());
            Files.write(ck, good, StandardOpenOption.TRUNCATE_EXISTING);
        }
        assertEquals(1, loadAndIdentify(ck));
    }

    @Test
    void checksumsAreOptionalAndMustBeWellFormed() throws IOException {
        Path ck = dir.resolve("ck.safetensors");
        save(ck, 0);
        Safetensors.Header h = Safetensors.readHeader(ck);
        byte[] file = Files.readAllBytes(ck);
        String header = new String(file, 8, (int) (h.dataStart() - 8), StandardCharsets.UTF_8);
        // a file without checksums (as other tools write it) loads: the entries renamed to plain metadata
        Path foreign = dir.resolve("foreign.safetensors");
        writeWithHeader(foreign, file, header, withSameLength(header, header.replace("\"cortado.crc32c:", "\"x.crc32c:")));
        try (Checkpoint.Loaded ck2 = Checkpoint.load(foreign, Device.CPU)) {
            assertEquals(0, ck2.step().getAsLong());
        }
        // a malformed entry is refused before any tensor is read
        Path malformed = dir.resolve("malformed.safetensors");
        String bad = header.replaceFirst("(\"cortado\\.crc32c:[^\"]*\":\")[0-9a-f]{8}", "$1XYZ12345");
        writeWithHeader(malformed, file, header, withSameLength(header, bad));
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> Safetensors.readHeader(malformed));
        assertTrue(e.getMessage().contains("not a CRC32C"), e.getMessage());
        // user metadata cannot forge the reserved prefix
        try (Tensor t = Tensor.of(new float[] {1}, 1)) {
            assertThrows(IllegalArgumentException.class,
                    () -> Safetensors.write(dir.resolve("x.safetensors"), Map.of("a", t), Map.of("cortado.crc32c:a", "00000000")));
        }
    }

    private static String withSameLength(String original, String changed) {
        if (changed.length() > original.length()) {
            return changed.substring(0, original.length());
        }
        return changed + " ".repeat(original.length() - changed.length());
    }

    private static void writeWithHeader(Path to, byte[] file, String oldHeader, String newHeader) throws IOException {
        byte[] nh = newHeader.getBytes(StandardCharsets.UTF_8);
        assertEquals(oldHeader.getBytes(StandardCharsets.UTF_8).length, nh.length);
        byte[] out = file.clone();
        System.arraycopy(nh, 0, out, 8, nh.length);
        try {
            Files.write(to, out);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
