package dev.cortado.backend.cpu;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Runs only under {@code scripts/sanitize.sh} (which sets {@code -Dcortado.sanitizedLibrary}):
 * checks that the libcortado_cpu.so mapped into this JVM is the sanitized build and that the
 * AddressSanitizer runtime is loaded, so the sanitizer run cannot silently test the normal
 * library. {@link Canary} is the script's self-check: a deliberate heap overflow that ASan must
 * report.
 */
@EnabledIfSystemProperty(named = "cortado.sanitizedLibrary", matches = ".+")
class SanitizedLibraryTest {
    @Test
    void theSanitizedLibraryIsTheOneMapped() throws IOException {
        CpuBackend.allocatedBytes(); // loads the library
        Path want = Path.of(System.getProperty("cortado.sanitizedLibrary")).toRealPath();
        List<String> maps = Files.readAllLines(Path.of("/proc/self/maps"));
        List<String> cpu = maps.stream().filter(l -> l.endsWith("/libcortado_cpu.so")).map(l -> l.substring(l.indexOf('/')))
                .distinct().toList();
        assertFalse(cpu.isEmpty(), "libcortado_cpu.so is not mapped");
        for (String path : cpu) {
            assertTrue(Path.of(path).toRealPath().equals(want), "mapped " + path + ", expected the sanitized " + want);
        }
        assertTrue(maps.stream().anyMatch(l -> l.contains("/libasan.so")), "libasan is not loaded");
    }

    /** Writes 1 KiB past the end of a 4 KiB host block through a kernel: ASan must abort the JVM. */
    public static final class Canary {
        public static void main(String[] args) {
            try (Tensor t = Tensor.empty(DType.FLOAT32, Device.CPU, 1024)) {
                int status = NativeCpu.ct_cpu_fill(DType.FLOAT32.code(), 1024 + 256, t.dataAddress(), 1.0, 0);
                System.out.println("canary: the overflow was not caught (status " + status + ")");
            }
            System.exit(0);
        }
    }
}
