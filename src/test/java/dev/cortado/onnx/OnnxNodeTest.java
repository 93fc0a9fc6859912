package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.abort;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.cortado.onnx.OnnxTestCases.Case;
import java.nio.file.Path;
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
 * ONNX backend node tests ({@code ../shared/conformance/onnx-node}) through
 * {@link OnnxNodeRunner}: one dynamic test per test directory whose graph uses only ops of
 * {@link OnnxOps}; every output compared with ONNX's rule (rtol 1e-3, atol 1e-7, NaN == NaN,
 * integers and bools exact, dtype and shape exact).
 *
 * <p>Outcomes: passed; skipped because the test's tensors use an ONNX element type Cortado has
 * no dtype for (INT16, UINT16, UINT32, UINT64); expected failure (listed in
 * {@link #EXPECTED_FAILURES} with the reason: the test runs, and is reported as skipped when it
 * fails as expected, but FAILS when it unexpectedly passes, so the list cannot go stale).
 * Tests using ops without a handler are not generated; their count is logged.
 */
class OnnxNodeTest {

    /**
     * Known failures caused by bugs or missing features in main code (src/main, native/), each
     * with its reason. Remove an entry when the bug is fixed (the test then fails as "unexpectedly
     * passes" until the entry is removed).
     */
    static final Map<String, String> EXPECTED_FAILURES = Map.ofEntries(
    );

    private static final AtomicInteger PASSED = new AtomicInteger();
    private static final AtomicInteger FAILED = new AtomicInteger();
    private static final AtomicInteger XFAILED = new AtomicInteger();
    private static final AtomicInteger DTYPE_SKIPPED = new AtomicInteger();
    private static final AtomicLong NANOS = new AtomicLong();
    private static volatile int opSkipped = -1;
    private static volatile int generated;
    private static final Map<String, String> XFAIL_DETAILS = new TreeMap<>();

    @TestFactory
    Stream<DynamicTest> onnxNodeTests() {
        Path dir = OnnxTestCases.nodeDir();
        assumeTrue(dir != null, "ONNX conformance data not found at " + OnnxTestCases.conformanceDir()
                + " (set -Dcortado.conformance.dir); skipping");
        List<Case> cases = OnnxTestCases.discover(dir, EXPECTED_FAILURES);
        List<Case> runnable = cases.stream().filter(Case::opsSupported).toList();
        opSkipped = cases.size() - runnable.size();
        generated = runnable.size();
        for (String name : EXPECTED_FAILURES.keySet()) {
            assertNotNull(runnable.stream().filter(c -> c.name().equals(name)).findFirst().orElse(null),
                    "EXPECTED_FAILURES lists " + name + ", which is not a generated test");
        }
        System.out.println("ONNX node tests: " + cases.size() + " test directories in " + dir + "; " + runnable.size()
                + " generated, " + opSkipped + " not generated (unsupported ops)");
        return runnable.stream().map(c -> DynamicTest.dynamicTest(c.name(), c.dir().toUri(), () -> execute(c)));
    }

    private static void execute(Case c) throws Exception {
        if (!c.unsupportedDTypes().isEmpty()) {
            DTYPE_SKIPPED.incrementAndGet();
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
                FAILED.incrementAndGet();
                throw new AssertionError(c.name() + " threw " + e, e);
            }
        } finally {
            NANOS.addAndGet(System.nanoTime() - t0);
        }
        if (c.expectedFailure() != null) {
            if (problem == null) {
                FAILED.incrementAndGet();
                fail(c.name() + " is listed in EXPECTED_FAILURES (" + c.expectedFailure()
                        + ") but now passes: remove it from the list");
            }
            XFAILED.incrementAndGet();
            synchronized (XFAIL_DETAILS) {
                XFAIL_DETAILS.put(c.name(), problem);
            }
            abort("expected failure (" + c.expectedFailure() + "): " + problem);
        }
        if (problem != null) {
            FAILED.incrementAndGet();
            fail(c.name() + ": " + problem);
        }
        PASSED.incrementAndGet();
    }

    @AfterAll
    static void summary() {
        if (opSkipped < 0) {
            return;
        }
        System.out.println("ONNX node tests: " + PASSED.get() + " passed, " + opSkipped + " skipped (unsupported ops), "
                + XFAILED.get() + " expected failures, " + DTYPE_SKIPPED.get() + " skipped (unsupported dtypes), "
                + FAILED.get() + " failed; " + generated + " generated; " + String.format("%.2f", NANOS.get() / 1e9)
                + " s in the runner");
        synchronized (XFAIL_DETAILS) {
            XFAIL_DETAILS.forEach((k, v) -> System.out.println("  expected failure " + k + ": "
                    + (v.length() > 300 ? v.substring(0, 300) + "..." : v)));
        }
    }
}
