package dev.cortado;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.BackendUnavailableException;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.bytedeco.javacpp.Loader;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The public settings of {@link Cortado}: the thread count (set/get, and at startup from
 * {@code -Dcortado.threads} or {@code OMP_NUM_THREADS}, checked in child JVMs whose environment
 * the test sets), the default device, the allocator statistics, and the message that names the
 * CUDA natives artifact when it is missing.
 */
class CortadoTest {

    @Test
    void threadsRoundTrip() {
        int saved = Cortado.threads();
        try {
            Cortado.setThreads(1);
            assertEquals(1, Cortado.threads());
            Cortado.setThreads(3);
            assertEquals(3, Cortado.threads());
        } finally {
            Cortado.setThreads(saved);
        }
        assertEquals(saved, Cortado.threads());
    }

    /** Prints the thread count a fresh process starts with. */
    public static final class PrintThreads {
        public static void main(String[] args) {
            System.out.println("threads=" + Cortado.threads());
        }
    }

    @Test
    void ompNumThreadsIsHonouredAtStartup() throws Exception {
        assertEquals("threads=3", child(PrintThreads.class, List.of(), Map.of("OMP_NUM_THREADS", "3"), null));
        // a nested list: the first level counts, as in libgomp
        assertEquals("threads=5", child(PrintThreads.class, List.of(), Map.of("OMP_NUM_THREADS", "5,2"), null));
        // the system property wins over the environment
        assertEquals("threads=1",
                child(PrintThreads.class, List.of("-Dcortado.threads=1"), Map.of("OMP_NUM_THREADS", "3"), null));
    }

    @Test
    void defaultDeviceIsSetInOnePlace() {
        Device saved = Cortado.defaultDevice();
        try {
            Cortado.setDefaultDevice(Device.CPU);
            assertEquals(Device.CPU, Cortado.defaultDevice());
            assertEquals(Device.CPU, Device.defaultDevice());
            try (Tensor t = Tensor.zeros(DType.FLOAT32, 2, 3)) {
                assertEquals(Device.CPU, t.device());
            }
            if (!Device.cuda(0).isAvailable()) {
                BackendUnavailableException e = assertThrows(BackendUnavailableException.class,
                        () -> Cortado.setDefaultDevice(Device.cuda(0)));
                assertTrue(e.getMessage().contains("cuda:0"), e.getMessage());
                assertEquals(Device.CPU, Cortado.defaultDevice(), "a failed set leaves the default alone");
            }
            assertThrows(IllegalArgumentException.class, () -> Cortado.setDefaultDevice(null));
        } finally {
            Device.setDefault(saved);
        }
    }

    @Test
    void cpuMemoryStatsFollowAnAllocationAndItsRelease() {
        Cortado.emptyCache(Device.CPU);
        Cortado.MemoryStats before = Cortado.memoryStats(Device.CPU);
        long bytes = 4L * 300_001; // above the 256 KiB threshold from which freed blocks are cached
        Cortado.MemoryStats during;
        try (Tensor t = Tensor.empty(DType.FLOAT32, Device.CPU, 300_001)) {
            during = Cortado.memoryStats(Device.CPU);
            assertEquals(300_001, t.numel());
        }
        Cortado.MemoryStats after = Cortado.memoryStats(Device.CPU);
        assertEquals(before.allocatedBytes() + bytes, during.allocatedBytes(), during + " vs " + before);
        assertEquals(before.liveAllocations() + 1, during.liveAllocations(), during + " vs " + before);
        assertEquals(before.allocatedBytes(), after.allocatedBytes(), after + " vs " + before);
        assertEquals(before.liveAllocations(), after.liveAllocations(), after + " vs " + before);
        assertTrue(after.cachedBytes() >= before.cachedBytes() + bytes, "the freed block is cached: " + after);
        Cortado.emptyCache(Device.CPU);
        assertEquals(0, Cortado.memoryStats(Device.CPU).cachedBytes());
    }

    /** Asks for cuda:0 and prints the exception's message. */
    public static final class AskForCuda {
        public static void main(String[] args) {
            try {
                Device.cuda(0).backend();
                System.out.println("cuda:0 is usable");
            } catch (BackendUnavailableException e) {
                System.out.println(e.getMessage());
            }
        }
    }

    /**
     * Without the CUDA natives (the {@code linux-x86_64-cuda} artifact), asking for CUDA names the
     * artifact to add: a child JVM whose class path is a copy of the library's classes (as links)
     * without {@code dev/cortado/backend/cuda/<platform>/}.
     */
    @Test
    void missingCudaNativesNameTheirArtifact(@TempDir Path tmp) throws Exception {
        String nativeDir = "dev/cortado/backend/cuda/" + Loader.getPlatform();
        assertTrue(ClassLoader.getSystemResource(nativeDir + "/" + System.mapLibraryName("cortado_cuda")) != null,
                "this build's classes hold the CUDA natives");
        assertFalse(CudaBackend.instance().unavailableReason().contains("not on the class path"),
                CudaBackend.instance().unavailableReason());

        Path classes = Path.of(Cortado.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        Path copy = tmp.resolve("classes");
        try (Stream<Path> files = Files.walk(classes)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                String rel = classes.relativize(f).toString();
                if (Files.isRegularFile(f) && !rel.startsWith(nativeDir + "/")) {
                    Files.createDirectories(copy.resolve(rel).getParent());
                    Files.createSymbolicLink(copy.resolve(rel), f);
                }
            }
        }
        List<String> cp = new ArrayList<>();
        cp.add(copy.toString());
        for (String e : System.getProperty("java.class.path").split(java.io.File.pathSeparator)) {
            if (!Path.of(e).toAbsolutePath().equals(classes.toAbsolutePath())) {
                cp.add(e);
            }
        }
        String out = child(AskForCuda.class, List.of(), Map.of(), String.join(java.io.File.pathSeparator, cp));
        assertTrue(out.startsWith("device cuda:0 is not usable on this machine: the CUDA natives of Cortado"), out);
        assertTrue(out.contains("dev.cortado:cortado:"), out);
        assertTrue(out.contains(":" + Loader.getPlatform() + "-cuda"), out);
        assertTrue(out.contains("<classifier>" + Loader.getPlatform() + "-cuda</classifier>"), out);
    }

    /** Runs {@code main} in a child JVM (this class path unless given) and returns its last line of output. */
    static String child(Class<?> main, List<String> jvmArgs, Map<String, String> env, String classPath)
            throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(jvmArgs);
        cmd.add("-cp");
        cmd.add(classPath != null ? classPath : System.getProperty("java.class.path"));
        cmd.add(main.getName());
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().remove("OMP_NUM_THREADS");
        pb.environment().putAll(env);
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "child JVM timed out: " + out);
        assertEquals(0, p.exitValue(), out);
        return out.substring(out.lastIndexOf('\n') + 1);
    }
}
