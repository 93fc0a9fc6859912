package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeStatus;
import dev.cortado.tensor.AtomicFiles;
import dev.cortado.ops.Convolution.Algorithm;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.IntUnaryOperator;

/**
 * Timed choice among the CPU convolution algorithms, cached per problem: what {@link Algorithm#AUTOTUNE}
 * runs. The first call for a problem (pass, dtype, layout, the 25-entry geometry, thread count, ISA) runs
 * every algorithm that applies twice, keeps the fastest second run, and remembers it; later calls with the
 * same problem go straight to it. The output of the first call is the chosen algorithm's (it is re-run if
 * another algorithm ran last), so a tuned run is bit-identical to the runs after it.
 *
 * <p>The cache lives in memory and, when the system property {@value #FILE_PROPERTY} names a file, also in
 * that file: read on first use, rewritten atomically (temporary file, then rename) after each new entry,
 * one {@code key=ALGORITHM} line per problem. A line naming an unknown algorithm is ignored.
 */
public final class ConvAutotune {
    /** System property naming the file that keeps the tuned choices between runs. */
    public static final String FILE_PROPERTY = "cortado.conv.autotuneFile";

    private static final Map<String, Algorithm> CACHE = new ConcurrentHashMap<>();
    private static volatile boolean loaded;

    private ConvAutotune() {
    }

    /** The cache key of one problem. */
    static String key(int pass, String dtype, String layout, long[] geometry, int threads, boolean avx512) {
        StringBuilder b = new StringBuilder(96).append("pass").append(pass).append(' ').append(dtype).append(' ')
                .append(layout).append(" t").append(threads).append(avx512 ? " avx512" : " avx2").append(" g");
        for (long v : geometry) {
            b.append(',').append(v);
        }
        return b.toString();
    }

    /**
     * The algorithm for {@code key}: the cached one, or the fastest of {@code candidates} timed now. {@code run}
     * runs one algorithm (its CT_CONV_ALGO code) into the real output and returns the native status; algorithms
     * answering CT_ERR_UNSUPPORTED are skipped, any other failure is returned as is (negated) so the caller
     * reports it. Returns the chosen algorithm's status of its last run (OK) or the failure.
     */
    static int run(String key, List<Algorithm> candidates, IntUnaryOperator run) {
        load();
        Algorithm hit = CACHE.get(key);
        if (hit != null) {
            return run.applyAsInt(hit.code());
        }
        Algorithm best = null;
        Algorithm last = null;
        long bestNanos = Long.MAX_VALUE;
        for (Algorithm a : candidates) {
            long nanos = Long.MAX_VALUE;
            for (int rep = 0; rep < 2; rep++) {
                long t0 = System.nanoTime();
                int status = run.applyAsInt(a.code());
                long t = System.nanoTime() - t0;
                if (status == NativeStatus.UNSUPPORTED) {
                    nanos = Long.MAX_VALUE;
                    break;
                }
                if (status != NativeStatus.OK) {
                    return status;
                }
                last = a;
                nanos = rep == 0 ? nanos : t;  // the second run: caches and workspaces warm
            }
            if (nanos < bestNanos) {
                bestNanos = nanos;
                best = a;
            }
        }
        if (best == null) {
            return NativeStatus.UNSUPPORTED;
        }
        CACHE.put(key, best);
        save();
        return best == last ? NativeStatus.OK : run.applyAsInt(best.code());
    }

    /** The cached choices, key to algorithm, sorted by key. */
    public static Map<String, Algorithm> entries() {
        load();
        return Collections.unmodifiableMap(new TreeMap<>(CACHE));
    }

    /** Forgets every choice (in memory; the file, if any, is rewritten at the next new entry). */
    public static void clear() {
        CACHE.clear();
    }

    /** Forgets the choices in memory and reads the file (if {@value #FILE_PROPERTY} names one) again. */
    public static synchronized void reload() {
        CACHE.clear();
        loaded = false;
        load();
    }

    private static Path file() {
        String f = System.getProperty(FILE_PROPERTY);
        return f == null || f.isBlank() ? null : Path.of(f);
    }

    private static synchronized void load() {
        if (loaded) {
            return;
        }
        loaded = true;
        Path f = file();
        if (f == null || !Files.isRegularFile(f)) {
            return;
        }
        try {
            for (String line : Files.readAllLines(f, StandardCharsets.UTF_8)) {
                int eq = line.lastIndexOf('=');
                if (eq <= 0) {
                    continue;
                }
                try {
                    CACHE.putIfAbsent(line.substring(0, eq), Algorithm.valueOf(line.substring(eq + 1).trim()));
                } catch (IllegalArgumentException unknownAlgorithm) {
                    // written by another version: tune again
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("conv autotune: cannot read " + f, e);
        }
    }

    private static synchronized void save() {
        Path f = file();
        if (f == null) {
            return;
        }
        List<String> lines = new ArrayList<>();
        new TreeMap<>(CACHE).forEach((k, v) -> lines.add(k + "=" + v.name()));
        try {
            Path dir = f.toAbsolutePath().getParent();
            Files.createDirectories(dir);
            AtomicFiles.write(f, (String.join("\n", lines) + "\n").getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException("conv autotune: cannot write " + f, e);
        }
    }
}
