package dev.cortado.reliability;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.nn.Activation;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.Sequential;
import dev.cortado.onnx.InferenceSession;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.ops.Generator;
import dev.cortado.optim.Adam;
import dev.cortado.serve.DynamicBatcher;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.LeakCheck;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Trains and serves in a loop and checks that nothing grows (docs/reliability.md#soak). Each
 * iteration: a few training steps of a small MLP with AdamW, 32 requests from 4 client threads
 * through a {@link DynamicBatcher} over an {@link InferenceSession}, and every 8th iteration a
 * second session and batcher loaded, used and closed (the churn of a server reloading a model).
 * After a warm-up (a quarter of the run, and at least 16 iterations: two reloads) the baseline is taken; then, at the end of every
 * iteration, the engine's host memory (bytes and live blocks) outside the memory arenas the served
 * session keeps on purpose must equal the baseline exactly, those arenas must stay within one per
 * batch size and run at once; at the end, threads and open files must be within their bounds of
 * the baseline, resident memory outside the Java heap must not have grown from the first quarter of
 * the run to the last by more than its bound (lowest sample of each quarter, taken after malloc's
 * free memory is given back), and the Cleaner safety net must have freed no tensor.
 *
 * <p>{@code -Dsoak.seconds=N} (default 30) sets the length ({@code scripts/soak.sh} runs it for
 * minutes); {@code -Dsoak.injectLeak=true} leaves one tensor unclosed per iteration, to see it
 * fail, and {@code -Dsoak.injectNativeLeak=true} leaves 128 KiB of malloc'd memory per iteration
 * that the engine does not count, to see the resident bound fail. The figures go to {@code target/soak-report.txt}.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class SoakTest {
    /** Bounds on growth after the warm-up (see docs/reliability.md#soak for why these). */
    static final long OUTSIDE_HEAP_BOUND_KB = 64 * 1024;
    static final int THREAD_BOUND = 4;
    static final int FD_BOUND = 4;

    static final int IN = 64;
    static final int CLASSES = 10;

    static long statusKb(String key) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith(key + ":")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return -1;
    }

    /** The Java heap's reserved address range, [lo, hi), from the JVM's {@code GC.heap_info}. */
    static final long[] JAVA_HEAP_RANGE = javaHeapRange();

    static long[] javaHeapRange() {
        String info;
        try { // by reflection: the tests compile patched into dev.cortado, which does not read java.management
            Class<?> objectName = Class.forName("javax.management.ObjectName");
            Object server = Class.forName("java.lang.management.ManagementFactory")
                    .getMethod("getPlatformMBeanServer").invoke(null);
            info = String.valueOf(Class.forName("javax.management.MBeanServerConnection")
                    .getMethod("invoke", objectName, String.class, Object[].class, String[].class)
                    .invoke(server, objectName.getConstructor(String.class).newInstance(
                            "com.sun.management:type=DiagnosticCommand"), "gcHeapInfo", new Object[] {null},
                            new String[] {String[].class.getName()}));
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("GC.heap_info", e);
        }
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("\\[(0x[0-9a-f]+),\\s*(0x[0-9a-f]+)[,)]")
                .matcher(info);
        long lo = Long.MAX_VALUE;
        long hi = 0;
        while (m.find()) { // G1 prints one range; the generational collectors one per generation
            lo = Math.min(lo, Long.parseUnsignedLong(m.group(1).substring(2), 16));
            hi = Math.max(hi, Long.parseUnsignedLong(m.group(2).substring(2), 16));
        }
        if (hi == 0) {
            throw new IllegalStateException("no heap range in GC.heap_info: " + info);
        }
        return new long[] {lo, hi};
    }

    /** Whether a line of {@code /proc/self/smaps} starts a mapping (its address range; the fields start upper case). */
    static boolean isMappingHeader(String line) {
        char c = line.isEmpty() ? ' ' : line.charAt(0);
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }

    /**
     * Resident kB of every mapping of this process outside the Java heap's reserved range
     * ({@code /proc/self/smaps}): malloc's arenas, thread stacks, the code cache, metaspace, mapped
     * files. Not the resident size less the committed heap: the heap commits and uncommits regions
     * as it sizes itself, and that difference moved by hundreds of MiB with nothing leaking.
     */
    static long residentOutsideHeapKb() throws IOException {
        long kb = 0;
        boolean inHeap = false;
        for (String line : Files.readAllLines(Path.of("/proc/self/smaps"))) {
            if (isMappingHeader(line)) {
                String[] range = line.substring(0, line.indexOf(' ')).split("-");
                long lo = Long.parseUnsignedLong(range[0], 16);
                long hi = Long.parseUnsignedLong(range[1], 16);
                inHeap = lo < JAVA_HEAP_RANGE[1] && hi > JAVA_HEAP_RANGE[0];
            } else if (!inHeap && line.startsWith("Rss:")) {
                kb += Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return kb;
    }

    /**
     * Resident kB per mapping of this process ({@code /proc/self/smaps}), keyed by address range and
     * name: two of these, at the baseline and at the end, show which mapping grew when the resident
     * bound fails (the Java heap, a malloc arena, the code cache, a thread stack...).
     */
    static Map<String, Long> residentByMapping() throws IOException {
        Map<String, Long> rss = new java.util.LinkedHashMap<>();
        String mapping = null;
        for (String line : Files.readAllLines(Path.of("/proc/self/smaps"))) {
            if (isMappingHeader(line)) {
                String[] f = line.trim().split("\\s+");
                String[] range = f[0].split("-");
                long sizeKb = (Long.parseUnsignedLong(range[1], 16) - Long.parseUnsignedLong(range[0], 16)) / 1024;
                mapping = f[0] + " " + (f.length > 5 ? f[5] : "[anon " + sizeKb + " kB]");
            } else if (mapping != null && line.startsWith("Rss:")) {
                rss.merge(mapping, Long.parseLong(line.replaceAll("[^0-9]", "")), Long::sum);
            }
        }
        return rss;
    }

    /** The mappings whose resident memory grew most from {@code before} to {@code after}. */
    static String residentGrowth(Map<String, Long> before, Map<String, Long> after, int top) {
        return after.entrySet().stream()
                .map(e -> Map.entry(e.getKey(), e.getValue() - before.getOrDefault(e.getKey(), 0L)))
                .filter(e -> e.getValue() > 0)
                .sorted((a, b) -> Long.compare(b.getValue(), a.getValue())).limit(top)
                .map(e -> "+" + e.getValue() + " kB " + e.getKey())
                .collect(java.util.stream.Collectors.joining("; "));
    }

    /**
     * The lowest value in each quarter of {@code samples}: a leak raises every quarter's lowest
     * sample; memory that comes and goes does not (the JIT compilers' working memory: C2 takes tens
     * of MiB of malloc'd arena chunks while it compiles, and the JVM frees them seconds later).
     */
    static long[] quarterMinima(List<Long> samples) {
        long[] lowest = {-1, -1, -1, -1};
        for (int q = 0; q < 4 && samples.size() >= 4; q++) {
            lowest[q] = samples.subList(q * samples.size() / 4, (q + 1) * samples.size() / 4).stream()
                    .mapToLong(Long::longValue).min().orElseThrow();
        }
        return lowest;
    }

    static long openFiles() throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.count();
        }
    }

    /**
     * One sample of everything the soak bounds. The engine's bytes and blocks leave out the served
     * session's idle memory arenas ({@link InferenceSession#idleArenaBytes}): memory it keeps on
     * purpose, one arena per batch size and run at once, that grows the first time a batch size
     * meets a second run of the same size, however late in the run; those are bounded separately.
     */
    record Sample(long engineBytes, long engineBlocks, long arenas, long rssKb, long outsideHeapKb, long threads,
            long fds) {
        static Sample now(InferenceSession served) throws IOException {
            CpuBackend.releaseFreeMemory(); // memory freed but kept by malloc is not a leak
            return new Sample(CpuBackend.allocatedBytes() - served.idleArenaBytes(),
                    CpuBackend.liveAllocations() - served.idleArenas(), served.idleArenas(), statusKb("VmRSS"),
                    residentOutsideHeapKb(),
                    statusKb("Threads"), openFiles());
        }
    }

    /** The most arenas the served session may keep: one per batch size (1..16) and run at once (2). */
    static final int ARENA_BOUND = 16 * 2;

    /** A served model: session + batcher; rows of IN floats in, CLASSES probabilities out. */
    static final class Server implements AutoCloseable {
        final InferenceSession session;
        final DynamicBatcher<float[], float[]> batcher;

        Server(ModelProto model, String name) throws IOException {
            session = InferenceSession.builder(model).device(Device.CPU).maxConcurrentRuns(2).build();
            batcher = DynamicBatcher.<float[], float[]>builder(this::runBatch).maxBatchSize(16)
                    .maxWait(Duration.ofMillis(1)).maxConcurrentBatches(2).name(name).build();
        }

        List<float[]> runBatch(List<float[]> rows) {
            float[] x = new float[rows.size() * IN];
            for (int i = 0; i < rows.size(); i++) {
                System.arraycopy(rows.get(i), 0, x, i * IN, IN);
            }
            try (Scope scope = Scope.open()) {
                float[] y = session.run(Map.of("x", Tensor.of(x, Device.CPU, rows.size(), IN))).get("y").toFloatArray();
                List<float[]> out = new ArrayList<>();
                for (int i = 0; i < rows.size(); i++) {
                    float[] row = new float[CLASSES];
                    System.arraycopy(y, i * CLASSES, row, 0, CLASSES);
                    out.add(row);
                }
                return out;
            }
        }

        @Override
        public void close() {
            batcher.close();
            session.close();
        }
    }

    /** Sends {@code n} requests from the client pool; checks each answer is a distribution. */
    static void serve(Server server, ExecutorService clients, int n, SplittableRandom r) throws Exception {
        List<CompletableFuture<float[]>> answers = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            float[] row = TestModels.gaussian(r, IN, 1.0);
            answers.add(CompletableFuture.supplyAsync(() -> server.batcher.call(row), clients));
        }
        for (CompletableFuture<float[]> a : answers) {
            float[] p = a.get(60, TimeUnit.SECONDS);
            double sum = 0;
            for (float v : p) {
                sum += v;
            }
            assertEquals(1.0, sum, 1e-4, "a served answer is a probability distribution");
        }
    }

    /**
     * What the resident bound stands on: {@link CpuBackend#mallocStats} sees native blocks come and
     * go, and {@link CpuBackend#releaseFreeMemory} gives their memory back to the system. 256 MiB in
     * 64 KiB blocks (under malloc's mmap threshold: they live in its arenas), touched; slack 64 MiB
     * for what the JVM's own threads (the JIT compilers) malloc and free meanwhile.
     */
    @Test
    void mallocStatsSeeNativeBlocksAndReleaseFreeMemoryGivesThemBack() throws IOException {
        int blocks = 4096;
        int size = 64 * 1024;
        long total = (long) blocks * size;
        long slack = 64L << 20;
        CpuBackend.releaseFreeMemory();
        CpuBackend.MallocStats before = CpuBackend.mallocStats();
        long outside0 = residentOutsideHeapKb();
        List<org.bytedeco.javacpp.BytePointer> held = new ArrayList<>();
        for (int i = 0; i < blocks; i++) {
            held.add(new org.bytedeco.javacpp.BytePointer(size).fill(1));
        }
        CpuBackend.MallocStats during = CpuBackend.mallocStats();
        long outside1 = residentOutsideHeapKb();
        held.forEach(org.bytedeco.javacpp.Pointer::close);
        CpuBackend.releaseFreeMemory();
        CpuBackend.MallocStats after = CpuBackend.mallocStats();
        long outside2 = residentOutsideHeapKb();
        String seen = before + " -> " + during + " -> " + after + "; resident outside the heap " + outside0 + " -> "
                + outside1 + " -> " + outside2 + " kB";
        assertTrue(during.inUseBytes() - before.inUseBytes() >= total - slack, "in use while held: " + seen);
        assertTrue(after.inUseBytes() - before.inUseBytes() <= slack, "in use after the blocks are freed: " + seen);
        assertTrue(outside1 - outside0 >= (total - slack) / 1024, "resident while held: " + seen);
        assertTrue(outside2 - outside0 <= slack / 1024, "resident after releaseFreeMemory: " + seen);
    }

    @Test
    void trainingAndServingInALoopGrowNothing() throws Exception {
        double seconds = Double.parseDouble(System.getProperty("soak.seconds", "30"));
        boolean injectLeak = Boolean.getBoolean("soak.injectLeak");
        boolean injectNativeLeak = Boolean.getBoolean("soak.injectNativeLeak");
        List<org.bytedeco.javacpp.BytePointer> nativeLeaks = new ArrayList<>();
        long warmUpNanos = (long) (seconds * 0.25e9);
        long endNanos = (long) (seconds * 1e9);
        long leaked0 = LeakCheck.settle();
        SplittableRandom r = new SplittableRandom(30);
        ModelProto served = TestModels.mlp(31, IN, 128, CLASSES);
        ExecutorService clients = Executors.newFixedThreadPool(4, t -> {
            Thread th = new Thread(t, "soak-client");
            th.setDaemon(true);
            return th;
        });
        List<Tensor> leaks = new ArrayList<>();
        long iterations = 0;
        long steps = 0;
        long requests = 0;
        Sample base = null;
        Sample peak = null;
        List<Long> outsideHeapKb = new ArrayList<>(); // one per iteration from the baseline on
        Map<String, Long> baseMappings = null;
        Map<String, Long> endMappings = null;
        double firstLoss = Double.NaN;
        double lastLoss = Double.NaN;
        Generator data = Generator.seeded(32);
        try (Module model = new Sequential(new Linear(IN, 128), Activation.relu(), new Linear(128, CLASSES));
             Adam opt = Adam.adamW().lr(1e-3).build(model.parameters());
             Server server = new Server(served, "soak")) {
            long start = System.nanoTime();
            while (System.nanoTime() - start < endNanos) {
                for (int s = 0; s < 4; s++, steps++) {
                    try (Scope scope = Scope.open()) {
                        Tensor x = data.normal(0, 1, DType.FLOAT32, Device.CPU, 32, IN);
                        long[] labels = new long[32];
                        for (int i = 0; i < labels.length; i++) {
                            labels[i] = r.nextInt(CLASSES);
                        }
                        Tensor loss = Losses.crossEntropy(model.forward(x), Tensor.of(labels, Device.CPU, 32));
                        opt.zeroGrad();
                        loss.backward();
                        opt.step();
                        lastLoss = loss.item();
                        if (Double.isNaN(firstLoss)) {
                            firstLoss = lastLoss;
                        }
                    }
                }
                serve(server, clients, 32, r);
                requests += 32;
                if (iterations % 8 == 7) { // reload churn: a second model served and closed
                    try (Server other = new Server(served, "soak-reload")) {
                        serve(other, clients, 8, r);
                        requests += 8;
                    }
                }
                if (injectLeak) {
                    leaks.add(Tensor.zeros(DType.FLOAT32, Device.CPU, 1024)); // never closed: the bug to catch
                }
                if (injectNativeLeak) { // 2 x 64 KiB malloc'd and touched, outside the engine's accounting
                    nativeLeaks.add(new org.bytedeco.javacpp.BytePointer(64 * 1024).fill(1));
                    nativeLeaks.add(new org.bytedeco.javacpp.BytePointer(64 * 1024).fill(1));
                }
                iterations++;
                Sample now = Sample.now(server.session);
                if (base == null && System.nanoTime() - start >= warmUpNanos && iterations >= 16) {
                    base = now;
                    peak = now;
                    baseMappings = residentByMapping();
                } else if (base != null) {
                    peak = new Sample(Math.max(peak.engineBytes, now.engineBytes),
                            Math.max(peak.engineBlocks, now.engineBlocks), Math.max(peak.arenas, now.arenas),
                            Math.max(peak.rssKb, now.rssKb), Math.max(peak.outsideHeapKb, now.outsideHeapKb),
                            Math.max(peak.threads, now.threads), Math.max(peak.fds, now.fds));
                    assertEquals(base.engineBytes, now.engineBytes, "iteration " + iterations
                            + ": engine host bytes differ from the baseline after the warm-up (a tensor leaks)");
                    assertEquals(base.engineBlocks, now.engineBlocks, "iteration " + iterations
                            + ": live engine blocks differ from the baseline after the warm-up (a tensor leaks)");
                }
                if (base != null) {
                    outsideHeapKb.add(now.outsideHeapKb);
                }
            }
            endMappings = residentByMapping();
        } finally {
            clients.shutdownNow();
            clients.awaitTermination(10, TimeUnit.SECONDS);
            leaks.forEach(Tensor::close);
            nativeLeaks.forEach(org.bytedeco.javacpp.Pointer::close);
        }
        long endBytes = CpuBackend.allocatedBytes();
        long endThreads = statusKb("Threads");
        long endFds = openFiles();
        long leaked = LeakCheck.settle() - leaked0;
        long[] outside = quarterMinima(outsideHeapKb);
        String report = String.format(java.util.Locale.ROOT,
                "soak: %.0f s, %d iterations, %d training steps (loss %.4f -> %.4f), %d requests served%n"
                        + "after warm-up: engine %d B in %d blocks outside the served session's idle arenas (end of every iteration equal), RSS %d kB -> peak %d kB,"
                        + " resident outside the Java heap (malloc's free memory given back before each sample) lowest per quarter of the run %d, %d, %d, %d kB"
                        + " (first to last quarter %+d kB, bound %d kB; peak %d kB), threads %d -> peak %d (bound +%d), open files %d -> peak %d (bound +%d),"
                        +  " served session's idle arenas %d -> peak %d (bound %d);"
                        + " after the models closed: engine %d B, threads %d, files %d; Cleaner-freed tensors %d%n",
                seconds, iterations, steps, firstLoss, lastLoss, requests, base == null ? -1 : base.engineBytes,
                base == null ? -1 : base.engineBlocks, base == null ? -1 : base.rssKb, peak == null ? -1 : peak.rssKb,
                outside[0], outside[1], outside[2], outside[3], outside[3] - outside[0], OUTSIDE_HEAP_BOUND_KB,
                peak == null ? -1 : peak.outsideHeapKb, base == null ? -1 : base.threads,
                peak == null ? -1 : peak.threads, THREAD_BOUND, base == null ? -1 : base.fds,
                peak == null ? -1 : peak.fds, FD_BOUND, base == null ? -1 : base.arenas,
                peak == null ? -1 : peak.arenas, ARENA_BOUND, endBytes, endThreads, endFds, leaked);
        if (baseMappings != null && endMappings != null) {
            report += "resident growth from the baseline to the end, by mapping: "
                    + residentGrowth(baseMappings, endMappings, 8) + "; engine block cache "
                    + CpuBackend.cachedBytes() + " B" + System.lineSeparator();
        }
        System.out.print(report);
        Files.createDirectories(Path.of("target"));
        Files.writeString(Path.of("target/soak-report.txt"), report);
        assertTrue(base != null && outsideHeapKb.size() >= 8, "the soak ran past its warm-up: " + report);
        assertTrue(outside[3] - outside[0] <= OUTSIDE_HEAP_BOUND_KB,
                "resident memory outside the Java heap grew past its bound: " + report);
        assertTrue(peak.threads - base.threads <= THREAD_BOUND, "threads grew past their bound: " + report);
        assertTrue(peak.fds - base.fds <= FD_BOUND, "open files grew past their bound: " + report);
        assertTrue(peak.arenas <= ARENA_BOUND, "the served session kept more arenas than batch sizes x runs: " + report);
        assertEquals(0, leaked, "tensors freed by the Cleaner safety net: " + report);
    }
}
