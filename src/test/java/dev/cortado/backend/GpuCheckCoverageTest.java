package dev.cortado.backend;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The native GPU check (native/tests/gpu_check*.cu[h]) is the only test that runs every CUDA
 * entry point against its CPU twin on a lent GPU: every {@code ct_cuda_*} declared in
 * native/include/cortado/*.h must be called there, so a new kernel cannot ship unchecked
 * (docs/gpu-status.md lists them). Runs on the CPU build: it reads the sources.
 */
class GpuCheckCoverageTest {
    private static final Pattern DECL = Pattern.compile("\\b(ct_cuda_[a-z0-9_]+)\\s*\\(");

    static Set<String> names(Path dir, String glob) throws IOException {
        Set<String> out = new TreeSet<>();
        try (Stream<Path> files = Files.list(dir)) {
            for (Path f : files.filter(p -> p.getFileSystem().getPathMatcher("glob:" + glob).matches(p.getFileName()))
                    .toList()) {
                Matcher m = DECL.matcher(Files.readString(f));
                while (m.find()) {
                    out.add(m.group(1));
                }
            }
        }
        return out;
    }

    @Test
    void everyCudaEntryPointIsCalledByTheNativeGpuCheck() throws IOException {
        Path root = Path.of(System.getProperty("user.dir"));
        Set<String> declared = names(root.resolve("native/include/cortado"), "*.h");
        Set<String> checked = names(root.resolve("native/tests"), "gpu_check*");
        assertTrue(declared.size() > 60, "only " + declared.size() + " ct_cuda_* declarations found: " + declared);
        Set<String> missing = new TreeSet<>(declared);
        missing.removeAll(checked);
        assertTrue(missing.isEmpty(), "CUDA entry points the native GPU check never calls: " + missing);
    }
}
