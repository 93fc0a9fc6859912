package dev.cortado;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Cortado as a named module ({@code src/main/java/module-info.java}): a small user module that
 * {@code requires dev.cortado} compiles against the exported packages, runs from the module path
 * (JavaCPP finds libcortado_cpu and its JNI glue there) and adds two tensors; a class that names a
 * binding package does not compile. The test suite itself runs on the class path.
 */
class ModulePathTest {
    private static final String MODULE_INFO = "module smoke { requires dev.cortado; }\n";

    private static final String MAIN = """
            package smoke;

            import dev.cortado.Cortado;
            import dev.cortado.ops.Elementwise;
            import dev.cortado.tensor.Device;
            import dev.cortado.tensor.Tensor;
            import java.util.Arrays;

            public class Main {
                public static void main(String[] args) {
                    Cortado.setDefaultDevice(Device.CPU);
                    try (Tensor a = Tensor.of(new float[] {1, 2, 3}, 3);
                         Tensor b = Tensor.of(new float[] {10, 20, 30}, 3);
                         Tensor c = Elementwise.add(a, b)) {
                        System.out.println("sum=" + Arrays.toString(c.toFloatArray()) + " on " + c.device()
                                + ", module " + Tensor.class.getModule().getName());
                    }
                }
            }
            """;

    private static final String INTERNAL = """
            package smoke;

            public class Internal {
                static int threads() {
                    return dev.cortado.backend.cpu.CpuBackend.threads();
                }
            }
            """;

    /** The library's classes directory and the jars it requires, as a module path. */
    private static String modulePath() throws Exception {
        List<String> path = new ArrayList<>();
        path.add(Path.of(Cortado.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toString());
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            String name = Path.of(e).getFileName().toString();
            if (name.endsWith(".jar") && (name.startsWith("javacpp-") || name.startsWith("openblas-")
                    || name.startsWith("cuda-") || name.startsWith("slf4j-api-") || name.startsWith("jackson-core-")
                    || name.startsWith("protobuf-java-") || name.startsWith("HdrHistogram-"))) {
                path.add(e);
            }
        }
        return String.join(File.pathSeparator, path);
    }

    /** Compiles the sources under {@code src} with the JDK's javac; returns its errors, or null. */
    private static String compile(Path src, Path out, String modulePath) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "javac").toString(),
                "--module-path", modulePath, "-d", out.toString()));
        try (var files = Files.walk(src)) {
            files.filter(f -> f.toString().endsWith(".java")).forEach(f -> cmd.add(f.toString()));
        }
        Result r = run(cmd);
        return r.exit() == 0 ? null : r.output();
    }

    private record Result(int exit, String output) {
    }

    private static Result run(List<String> cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), text);
        return new Result(p.exitValue(), text);
    }

    @Test
    void aUserModuleAddsTwoTensorsFromTheModulePath(@TempDir Path tmp) throws Exception {
        String modulePath = modulePath();
        Path src = tmp.resolve("src");
        Files.createDirectories(src.resolve("smoke"));
        Files.writeString(src.resolve("module-info.java"), MODULE_INFO);
        Files.writeString(src.resolve("smoke/Main.java"), MAIN);
        Path out = tmp.resolve("out");
        String errors = compile(src, out, modulePath);
        assertEquals(null, errors, "the user module compiles against the exported packages");

        Result r = run(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--module-path", out + File.pathSeparator + modulePath, "-m", "smoke/smoke.Main"));
        String text = r.output();
        assertEquals(0, r.exit(), text);
        assertTrue(text.endsWith("sum=[11.0, 22.0, 33.0] on cpu, module dev.cortado"), text);
    }

    @Test
    void theBindingPackagesAreNotExported(@TempDir Path tmp) throws Exception {
        Path src = tmp.resolve("src");
        Files.createDirectories(src.resolve("smoke"));
        Files.writeString(src.resolve("module-info.java"), MODULE_INFO);
        Files.writeString(src.resolve("smoke/Internal.java"), INTERNAL);
        String errors = compile(src, tmp.resolve("out"), modulePath());
        assertFalse(errors == null, "a user module reached dev.cortado.backend.cpu");
        assertTrue(errors.contains("dev.cortado.backend.cpu") && errors.contains("not visible"), errors);
    }
}
