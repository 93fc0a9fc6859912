package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.abort;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.cortado.onnx.OnnxTestCases.Case;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The ONNX conformance tests of {@code ../shared/conformance} through the importer
 * ({@link OnnxModel}): every test directory of onnx-node (667), onnx-node-training (7),
 * onnx-pytorch (115) and onnx-light (9) is loaded, run on its {@code test_data_set_0} inputs and compared with its
 * outputs by ONNX's rule (rtol 1e-3, densenet121 2e-3; atol 1e-7; NaN == NaN; integers and bools
 * exact; dtype and shape exact).
 *
 * <p>Every test that does not pass (an op the importer lacks, fails at load; an ONNX element type
 * with no Cortado dtype; a numerical mismatch) must be listed with its reason in the tracked file
 * {@link #EXPECTED_FAILURES} ({@code suite/test<TAB>reason}), which can only shrink: a listed test
 * that passes fails the build ("remove the line"), an unlisted failure fails the build, and a
 * line naming no test fails the build. Listed failures report as skipped with the reason.
 * {@code -Donnx.writeExpectedFailures=true} rewrites the file from the run (for review in a diff).
 * Two heavy onnx-light graphs run only with {@code -Dcortado.onnx.heavy=true} ({@link #HEAVY}).
 * With CI=true missing conformance data fails the run instead of skipping it.
 */
class OnnxNodeTest {

    static final Path EXPECTED_FAILURES = Path.of("src/test/resources/onnx/expected-failures.tsv");

    /** The expected-failure file: key (suite/test) -> reason. */
    static Map<String, String> expectedFailures() {
        Path file = Path.of(System.getProperty("user.dir")).resolve(EXPECTED_FAILURES);
        Map<String, String> out = new LinkedHashMap<>();
        try {
            for (String line : Files.readAllLines(file)) {
                if (line.isBlank() || line.startsWith("#")) {
                    continue;
                }
                int tab = line.indexOf('\t');
                if (tab <= 0 || line.substring(tab + 1).isBlank()) {
                    throw new AssertionError(EXPECTED_FAILURES + ": '" + line + "' is not 'suite/test<TAB>reason'");
                }
                if (out.put(line.substring(0, tab), line.substring(tab + 1)) != null) {
                    throw new AssertionError(EXPECTED_FAILURES + " lists " + line.substring(0, tab) + " twice");
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out;
    }

    /** Counters of one suite. */
    static final class Suite {
        final String title;
        final AtomicInteger passed = new AtomicInteger();
        final AtomicInteger failed = new AtomicInteger();
        final AtomicInteger xfailed = new AtomicInteger();
        final AtomicInteger skipped = new AtomicInteger();
        final AtomicLong nanos = new AtomicLong();
        volatile int generated = -1;

        Suite(String title) {
            this.title = title;
        }

        boolean complete() {
            return generated >= 0 && passed.get() + failed.get() + xfailed.get() + skipped.get() == generated;
        }
    }

    private static final Map<String, Suite> SUITES = new LinkedHashMap<>();
    /** key -> why it failed, for every failure of this run (written with -Donnx.writeExpectedFailures). */
    private static final Map<String, String> FAILURES = new TreeMap<>();

    static {
        for (String s : new String[] {"onnx-node", "onnx-node-training", "onnx-pytorch", "onnx-light"}) {
            SUITES.put(s, new Suite(s));
        }
    }

    private static Stream<DynamicTest> suite(String suiteName, List<Case> cases) {
        Suite suite = SUITES.get(suiteName);
        suite.generated = cases.size();
        Map<String, String> expected = expectedFailures();
        List<String> stale = new ArrayList<>();
        for (String key : expected.keySet()) {
            if (key.startsWith(suiteName + "/") && cases.stream().noneMatch(c -> c.key().equals(key))) {
                stale.add(key);
            }
        }
        if (!stale.isEmpty()) {
            throw new AssertionError(EXPECTED_FAILURES + " lists tests that do not exist: " + stale);
        }
        return cases.stream().map(c -> DynamicTest.dynamicTest(c.name(), c.dir().toUri(), () -> execute(suite, c)));
    }

    /**
     * The two onnx-light graphs that take most of the suite's time (VGG-19: about 20 GFLOP per
     * image, 24 s on two loaded cores; AlexNet's 4096 x 9216 dense layers: 7 s): they run with
     * {@code -Dcortado.onnx.heavy=true} and are skipped (not counted) otherwise.
     */
    static final java.util.Set<String> HEAVY = java.util.Set.of("onnx-light/test_vgg19", "onnx-light/test_bvlc_alexnet");

    private static void execute(Suite suite, Case c) {
        if (HEAVY.contains(c.key()) && !Boolean.getBoolean("cortado.onnx.heavy")) {
            suite.skipped.incrementAndGet();
            abort(c.key() + " is a heavy model: run it with -Dcortado.onnx.heavy=true");
        }
        long t0 = System.nanoTime();
        String problem;
        try {
            problem = OnnxTestCases.run(c);
        } catch (OutOfMemoryError e) {
            throw e;
        } catch (Exception | Error e) {
            problem = e.toString();
        } finally {
            suite.nanos.addAndGet(System.nanoTime() - t0);
        }
        if (problem != null) {
            synchronized (FAILURES) {
                FAILURES.put(c.key(), problem.replace('\t', ' ').replace('\n', ' '));
            }
        }
        if (c.expectedFailure() != null) {
            if (problem == null) {
                suite.failed.incrementAndGet();
                fail(c.key() + " is listed in " + EXPECTED_FAILURES + " (" + c.expectedFailure()
                        + ") but now passes: remove its line");
            }
            suite.xfailed.incrementAndGet();
            abort("expected failure (" + c.expectedFailure() + "): " + problem);
        }
        if (problem != null) {
            suite.failed.incrementAndGet();
            fail(c.key() + " fails and is not listed in " + EXPECTED_FAILURES + ": " + problem);
        }
        suite.passed.incrementAndGet();
    }

    @TestFactory
    Stream<DynamicTest> onnxNodeTests() {
        Path dir = OnnxTestCases.nodeDir();
        requireDataUnderCi(dir != null, "ONNX node tests (onnx-node/MANIFEST.tsv)");
        assumeTrue(dir != null, "ONNX conformance data not found at " + OnnxTestCases.conformanceDir()
                + " (set -Dcortado.conformance.dir); skipping");
        return suite("onnx-node", OnnxTestCases.discover(dir, "onnx-node", expectedFailures()));
    }

    /**
     * The older IR-3 / opset-6 PyTorch exports ({@code onnx-pytorch/pytorch-converted} and
     * {@code pytorch-operator}); initializers listed in graph.input are not fed.
     */
    @TestFactory
    Stream<DynamicTest> onnxPytorchTests() {
        List<Path> dirs = OnnxTestCases.pytorchDirs();
        requireDataUnderCi(!dirs.isEmpty(), "ONNX pytorch tests (onnx-pytorch)");
        assumeTrue(!dirs.isEmpty(), "ONNX pytorch conformance data not found under " + OnnxTestCases.conformanceDir()
                + "/onnx-pytorch; skipping");
        List<Case> cases = new ArrayList<>();
        for (Path d : dirs) {
            cases.addAll(OnnxTestCases.discover(d, "onnx-pytorch/" + d.getFileName(), expectedFailures()));
        }
        return suite("onnx-pytorch", cases);
    }

    /** The 7 optimizer steps of onnx-node-training (domain ai.onnx.preview.training). */
    @TestFactory
    Stream<DynamicTest> onnxTrainingTests() {
        Path dir = OnnxTestCases.trainingDir();
        requireDataUnderCi(dir != null, "ONNX training node tests (onnx-node-training)");
        assumeTrue(dir != null, "onnx-node-training not found under " + OnnxTestCases.conformanceDir() + "; skipping");
        return suite("onnx-node-training", OnnxTestCases.discover(dir, "onnx-node-training", expectedFailures()));
    }

    /** The 9 real CNN graphs of onnx-light (constant weights: load and smoke tests). */
    @TestFactory
    Stream<DynamicTest> onnxLightModels() {
        Path dir = OnnxTestCases.lightDir();
        requireDataUnderCi(dir != null, "ONNX light models (onnx-light)");
        assumeTrue(dir != null, "onnx-light not found under " + OnnxTestCases.conformanceDir() + "; skipping");
        return suite("onnx-light", OnnxTestCases.discover(dir, "onnx-light", expectedFailures()));
    }

    @AfterAll
    static void summary() throws IOException {
        for (Suite s : SUITES.values()) {
            if (s.generated < 0) {
                continue;
            }
            System.out.println(s.title + ": " + s.passed.get() + " passed, " + s.xfailed.get() + " expected failures, "
                    + s.failed.get() + " failed, " + s.skipped.get() + " skipped (heavy), of " + s.generated + "; " + String.format("%.2f", s.nanos.get() / 1e9)
                    + " s in the runner");
        }
        if (Boolean.getBoolean("onnx.writeExpectedFailures")
                && SUITES.values().stream().allMatch(s -> s.complete() && s.skipped.get() == 0)) {
            StringBuilder sb = new StringBuilder();
            sb.append("# ONNX conformance tests that do not pass (OnnxNodeTest): suite/test<TAB>reason.\n")
                    .append("# This list may only shrink: a listed test that passes fails the build, and so does an\n")
                    .append("# unlisted failure. Regenerate with -Donnx.writeExpectedFailures=true and review the diff.\n");
            for (var e : FAILURES.entrySet()) {
                String reason = e.getValue();
                sb.append(e.getKey()).append('\t').append(reason.length() > 240 ? reason.substring(0, 240) + "..." : reason)
                        .append('\n');
            }
            Files.writeString(Path.of(System.getProperty("user.dir")).resolve(EXPECTED_FAILURES), sb.toString());
            System.out.println("wrote " + FAILURES.size() + " lines to " + EXPECTED_FAILURES);
        }
    }

    /**
     * Where the conformance data must be there (CI=true: CI puts a copy of shared/ beside the
     * clone), its absence fails instead of skipping.
     */
    static void requireDataUnderCi(boolean present, String what) {
        if (!present && "true".equalsIgnoreCase(System.getenv("CI"))) {
            fail(what + " not found under " + OnnxTestCases.conformanceDir()
                    + ", and CI=true says it must be there (a copy of shared/ beside the repository)");
        }
    }
}
