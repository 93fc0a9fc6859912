package dev.cortado.testing;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The contract every fuzz target checks (docs/reliability.md#fuzzing): an input is either accepted
 * or refused with one of the target's <em>declared</em> exception types carrying a non-blank
 * message. Anything else (NullPointerException, ArrayIndexOutOfBounds, NegativeArraySize,
 * ClassCast, ArithmeticException, OutOfMemoryError, StackOverflowError, a declared type without a
 * message, an assertion about the result) is a finding; a JVM crash ends the run.
 *
 * <p>By default a finding is rethrown, so that JUnit (regression mode over the corpus) and Jazzer
 * (fuzzing mode, which then saves the input as {@code crash-*}) both fail. With the system
 * property {@code fuzz.countsDir} set (scripts/fuzz.sh), the inputs, acceptances, declared
 * rejections and findings are counted in {@code <countsDir>/<target>.counts} (rewritten every
 * 1000 inputs, at a finding and at exit); with {@code fuzz.keepGoing=true} as well, a finding is
 * recorded instead of thrown (its stack trace, and the input of a {@code byte[]} target, under
 * {@code <countsDir>/<target>-findings/}) so that one run measures a whole budget.
 */
public final class Fuzzing {
    private static final Path COUNTS_DIR = System.getProperty("fuzz.countsDir") == null ? null
            : Path.of(System.getProperty("fuzz.countsDir"));
    private static final boolean KEEP_GOING = Boolean.getBoolean("fuzz.keepGoing");
    private static final Map<String, Counts> COUNTS = new ConcurrentHashMap<>();
    private static final int MAX_SAVED_FINDINGS = 20;

    static {
        if (COUNTS_DIR != null) {
            Runtime.getRuntime().addShutdownHook(new Thread(() -> COUNTS.values().forEach(Counts::write)));
        }
    }

    private static Path scratch;

    private Fuzzing() {
    }

    /**
     * A per-JVM scratch folder (deleted at exit) for targets that read files: each input is
     * written to a file there and read back by the code under test.
     */
    public static synchronized Path scratchDir() {
        if (scratch == null) {
            try {
                scratch = Files.createTempDirectory("cortado-fuzz");
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            Path dir = scratch;
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                try (var files = Files.walk(dir)) {
                    files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
                } catch (IOException ignored) {
                    // a temporary folder left behind is harmless
                }
            }));
        }
        return scratch;
    }

    /** Writes {@code data} to the file {@code name} of {@link #scratchDir()} and returns its path. */
    public static Path scratchFile(String name, byte[] data) {
        Path p = scratchDir().resolve(name);
        try {
            Files.write(p, data);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return p;
    }

    /** The body of one fuzz input. */
    @FunctionalInterface
    public interface Body {
        /** Runs the target on the input. */
        void run() throws Exception;
    }

    /**
     * Runs {@code body} on one input of {@code target}; an exception that is not one of
     * {@code declared} with a message is a finding. {@code input} (may be null) is saved with a
     * finding in counting mode.
     */
    public static void check(String target, List<Class<? extends Throwable>> declared, byte[] input, Body body) {
        Counts counts = COUNTS.computeIfAbsent(target, Counts::new);
        counts.inputs.incrementAndGet();
        try {
            body.run();
            counts.accepted.incrementAndGet();
        } catch (Throwable t) {
            if (isDeclared(t, declared)) {
                counts.rejected.incrementAndGet();
            } else {
                counts.findings.incrementAndGet();
                if (!KEEP_GOING || COUNTS_DIR == null) {
                    counts.write();
                    throw new AssertionError(target + ": undeclared " + t.getClass().getName()
                            + " (declared: " + declared.stream().map(Class::getSimpleName).toList()
                            + ", each with a message): " + t, t);
                }
                counts.save(t, input);
            }
        } finally {
            if (counts.inputs.get() % 1000 == 0) {
                counts.write();
            }
        }
    }

    /** Whether {@code t} is an instance of one of {@code declared} with a non-blank message. */
    public static boolean isDeclared(Throwable t, List<Class<? extends Throwable>> declared) {
        if (t.getMessage() == null || t.getMessage().isBlank()) {
            return false;
        }
        if (t instanceof ArrayIndexOutOfBoundsException || t instanceof StringIndexOutOfBoundsException) {
            return false; // thrown by the JVM, never on purpose: a finding even where IndexOutOfBounds is declared
        }
        for (Class<? extends Throwable> c : declared) {
            if (c.isInstance(t)) {
                return true;
            }
        }
        return false;
    }

    private static final class Counts {
        final String target;
        final AtomicLong inputs = new AtomicLong();
        final AtomicLong accepted = new AtomicLong();
        final AtomicLong rejected = new AtomicLong();
        final AtomicLong findings = new AtomicLong();

        Counts(String target) {
            this.target = target;
        }

        synchronized void write() {
            if (COUNTS_DIR == null) {
                return;
            }
            try {
                Files.createDirectories(COUNTS_DIR);
                Files.writeString(COUNTS_DIR.resolve(target + ".counts"), "inputs=" + inputs + " accepted=" + accepted
                        + " rejected=" + rejected + " undeclared=" + findings + "\n");
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        synchronized void save(Throwable t, byte[] input) {
            long n = findings.get();
            if (n > MAX_SAVED_FINDINGS) {
                return;
            }
            try {
                Path dir = Files.createDirectories(COUNTS_DIR.resolve(target + "-findings"));
                StringWriter trace = new StringWriter();
                t.printStackTrace(new PrintWriter(trace));
                Files.writeString(dir.resolve("finding-" + n + ".txt"), trace.toString(), StandardCharsets.UTF_8);
                if (input != null) {
                    Files.write(dir.resolve("finding-" + n + ".bin"), input);
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
