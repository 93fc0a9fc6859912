package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.abort;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.cortado.onnx.OnnxTestCases.Case;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * ONNX backend node tests ({@code ../shared/conformance/onnx-node}) through
 * {@link OnnxNodeRunner}: one dynamic test per test directory whose graph uses only ops of
 * {@link OnnxOps}; every output compared with ONNX's rule (rtol 1e-3, atol 1e-7, NaN == NaN,
 * integers and bools exact, dtype and shape exact).
 *
 * <p>Outcomes: passed; skipped because the test's tensors use an ONNX element type Cortado has
 * no dtype for (INT16, UINT16, UINT32, UINT64); expected failure (listed in
 * {@link #EXPECTED_FAILURES} with the reason: the test runs, and is reported as skipped when it
 * fails as expected, but FAILS when it unexpectedly passes, so the list cannot go stale).
 * Tests using ops without a handler are not generated; their count is logged. The numbers of
 * generated and passing tests may only grow: {@link #FLOOR} pins them, and with CI=true missing
 * conformance data fails the run instead of skipping it.
 */
class OnnxNodeTest {

    /**
     * Known failures caused by bugs or missing features in main code (src/main, native/), each
     * with its reason. Remove an entry when the bug is fixed (the test then fails as "unexpectedly
     * passes" until the entry is removed).
     */
    static final Map<String, String> EXPECTED_FAILURES = Map.ofEntries(
    );

    /**
     * Known failures of the older PyTorch-exported tests ({@code onnx-pytorch}), same rules as
     * {@link #EXPECTED_FAILURES}.
     */
    static final Map<String, String> PYTORCH_EXPECTED_FAILURES = Map.ofEntries(
    );

    /** Counters and the outcome rules of one suite (node tests, PyTorch-exported tests). */
    static final class Suite {
        final String title;
        final AtomicInteger passed = new AtomicInteger();
        final AtomicInteger failed = new AtomicInteger();
        final AtomicInteger xfailed = new AtomicInteger();
        final AtomicInteger dtypeSkipped = new AtomicInteger();
        final AtomicLong nanos = new AtomicLong();
        volatile int opSkipped = -1;
        volatile int generated;
        final Map<String, String> xfailDetails = new TreeMap<>();

        Suite(String title) {
            this.title = title;
        }

        Stream<DynamicTest> tests(List<Case> cases, Map<String, String> expectedFailures, String where) {
            List<Case> runnable = cases.stream().filter(Case::opsSupported).toList();
            opSkipped = cases.size() - runnable.size();
            generated = runnable.size();
            for (String name : expectedFailures.keySet()) {
                assertNotNull(runnable.stream().filter(c -> c.name().equals(name)).findFirst().orElse(null),
                        title + ": expected-failure list names " + name + ", which is not a generated test");
            }
            System.out.println(title + ": " + cases.size() + " test directories in " + where + "; " + runnable.size()
                    + " generated, " + opSkipped + " not generated (unsupported ops)");
            return runnable.stream().map(c -> DynamicTest.dynamicTest(c.name(), c.dir().toUri(), () -> execute(c)));
        }

        void execute(Case c) throws Exception {
            if (!c.unsupportedDTypes().isEmpty()) {
                dtypeSkipped.incrementAndGet();
                abort(c.name() + ": ONNX element type(s) " + c.unsupportedDTypes() + " have no Cortado dtype");
            }
            long t0 = System.nanoTime();
            String problem;
            try {
                problem = OnnxTestCases.run(c);
            } catch (RuntimeException | Error e) {
                if (e instanceof OutOfMemoryError) {
                    throw e;
                }
                problem = e.toString();
                if (c.expectedFailure() == null) {
                    failed.incrementAndGet();
                    throw new AssertionError(c.name() + " threw " + e, e);
                }
            } finally {
                nanos.addAndGet(System.nanoTime() - t0);
            }
            if (c.expectedFailure() != null) {
                if (problem == null) {
                    failed.incrementAndGet();
                    fail(c.name() + " is listed as an expected failure (" + c.expectedFailure()
                            + ") but now passes: remove it from the list");
                }
                xfailed.incrementAndGet();
                synchronized (xfailDetails) {
                    xfailDetails.put(c.name(), problem);
                }
                abort("expected failure (" + c.expectedFailure() + "): " + problem);
            }
            if (problem != null) {
                failed.incrementAndGet();
                fail(c.name() + ": " + problem);
            }
            passed.incrementAndGet();
        }

        /** Whether every generated test ran (not a filtered run), so the counts can be pinned. */
        boolean complete() {
            return opSkipped >= 0 && passed.get() + failed.get() + xfailed.get() + dtypeSkipped.get() == generated;
        }

        void summary() {
            if (opSkipped < 0) {
                return;
            }
            System.out.println(title + ": " + passed.get() + " passed, " + opSkipped + " skipped (unsupported ops), "
                    + xfailed.get() + " expected failures, " + dtypeSkipped.get() + " skipped (unsupported dtypes), "
                    + failed.get() + " failed; " + generated + " generated; " + String.format("%.2f", nanos.get() / 1e9)
                    + " s in the runner");
            synchronized (xfailDetails) {
                xfailDetails.forEach((k, v) -> System.out.println("  expected failure " + k + ": "
                        + (v.length() > 300 ? v.substring(0, 300) + "..." : v)));
            }
        }
    }

    private static final Suite NODE = new Suite("ONNX node tests");
    private static final Suite PYTORCH = new Suite("ONNX pytorch tests");

    @TestFactory
    Stream<DynamicTest> onnxNodeTests() {
        Path dir = OnnxTestCases.nodeDir();
        requireDataUnderCi(dir != null, "ONNX node tests (onnx-node/MANIFEST.tsv)");
        assumeTrue(dir != null, "ONNX conformance data not found at " + OnnxTestCases.conformanceDir()
                + " (set -Dcortado.conformance.dir); skipping");
        return NODE.tests(OnnxTestCases.discover(dir, EXPECTED_FAILURES), EXPECTED_FAILURES, dir.toString());
    }

    /**
     * The older IR-3 / opset-6 PyTorch exports ({@code onnx-pytorch/pytorch-converted} and
     * {@code pytorch-operator}): same runner and rules; initializers listed in graph.input are
     * not fed. Skips when the folder is absent.
     */
    @TestFactory
    Stream<DynamicTest> onnxPytorchTests() {
        List<Path> dirs = OnnxTestCases.pytorchDirs();
        requireDataUnderCi(!dirs.isEmpty(), "ONNX pytorch tests (onnx-pytorch)");
        assumeTrue(!dirs.isEmpty(), "ONNX pytorch conformance data not found under " + OnnxTestCases.conformanceDir()
                + "/onnx-pytorch; skipping");
        List<Case> cases = new java.util.ArrayList<>();
        for (Path d : dirs) {
            cases.addAll(OnnxTestCases.discover(d, PYTORCH_EXPECTED_FAILURES));
        }
        return PYTORCH.tests(cases, PYTORCH_EXPECTED_FAILURES, dirs.toString());
    }

    /**
     * The floor of the conformance counts, a tracked file that may only grow: a run with fewer
     * generated or passing tests fails (a handler removed, an op dropped from the selection, a
     * regression); a run with more says which line to raise. Checked only when every generated
     * test ran (not under a test filter).
     */
    static final Path FLOOR = Path.of("src/test/resources/onnx-coverage-floor.properties");

    @AfterAll
    static void summary() throws IOException {
        NODE.summary();
        PYTORCH.summary();
        Properties floor = new Properties();
        try (var in = Files.newBufferedReader(Path.of(System.getProperty("user.dir")).resolve(FLOOR))) {
            floor.load(in);
        }
        List<String> drops = new ArrayList<>();
        List<String> rises = new ArrayList<>();
        for (var e : Map.of("node", NODE, "pytorch", PYTORCH).entrySet()) {
            Suite suite = e.getValue();
            if (!suite.complete()) {
                continue;
            }
            checkFloor(floor, e.getKey() + ".generated", suite.generated, drops, rises);
            checkFloor(floor, e.getKey() + ".passed", suite.passed.get(), drops, rises);
        }
        if (!rises.isEmpty()) {
            System.out.println("ONNX coverage grew: raise these lines in " + FLOOR + ": " + rises);
        }
        if (!drops.isEmpty()) {
            throw new AssertionError("ONNX coverage dropped below the floor in " + FLOOR + ": " + drops);
        }
    }

    static void checkFloor(Properties floor, String key, int count, List<String> drops, List<String> rises) {
        String v = floor.getProperty(key);
        if (v == null) {
            throw new AssertionError(FLOOR + " has no line " + key + " (this run: " + key + "=" + count + ")");
        }
        int min = Integer.parseInt(v.trim());
        if (count < min) {
            drops.add(key + " = " + count + " < " + min);
        } else if (count > min) {
            rises.add(key + "=" + count);
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
