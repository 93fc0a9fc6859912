package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.Cortado;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Plans on disk ({@link InferenceSession.Builder#planCache}, {@link PlanFile}): a session whose
 * in-memory plan is gone loads the plan a first session wrote, with its constants mapped from the
 * file, gives the same bits, and loads much faster than parsing the model; a corrupted, truncated
 * or stale plan file is detected and rebuilt, never used.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class PlanFileTest {
    private static Path onlyPlan(Path folder) throws IOException {
        try (Stream<Path> files = Files.list(folder)) {
            List<Path> plans = files.filter(f -> f.toString().endsWith(".plan")).toList();
            assertEquals(1, plans.size(), "plan files: " + plans);
            return plans.get(0);
        }
    }

    private static float[] run(InferenceSession s, float[] x) {
        try (Scope scope = Scope.open()) {
            return s.run(Map.of("x", Tensor.of(x, Device.CPU, 1, PlanCacheTest.WIDTH))).get("y" + PlanCacheTest.LAYERS)
                    .toFloatArray();
        }
    }

    /**
     * A 105 MB model: the plan written by the first session is loaded by the next ones (the
     * in-memory cache no longer holds it), mapped (the weights add no allocated host memory), with
     * the same outputs bit for bit, and the load at least 3x faster than parsing the model (best of
     * three against best of two, a ratio that holds on a loaded machine; printed).
     */
    @Test
    void aPlanOnDiskLoadsMappedBitwiseEqualAndFasterThanParsing(@TempDir Path dir) throws IOException {
        float[][] weights = new float[PlanCacheTest.LAYERS][];
        Path file = PlanCacheTest.writeModel(dir, 12, weights);
        Path plans = dir.resolve("plans");
        float[] x = new float[PlanCacheTest.WIDTH];
        SplittableRandom r = new SplittableRandom(5);
        for (int k = 0; k < x.length; k++) {
            x[k] = (float) r.nextDouble(-1, 1);
        }
        long parse = Long.MAX_VALUE;
        float[] want = null;
        for (int i = 0; i < 2; i++) {
            long t = System.nanoTime();
            try (InferenceSession s = InferenceSession.builder(file).device(Device.CPU).build()) {
                parse = Math.min(parse, System.nanoTime() - t);
                want = run(s, x);
            }
        }
        try (InferenceSession first = InferenceSession.builder(file).device(Device.CPU).planCache(plans).build()) {
            assertFalse(first.planFromDisk());
            assertArrayEquals(want, run(first, x));
        }
        Path plan = onlyPlan(plans);
        assertTrue(Files.size(plan) > 100_000_000L, "the plan holds the weights: " + Files.size(plan));
        long load = Long.MAX_VALUE;
        for (int i = 0; i < 3; i++) {
            long allocated = Cortado.memoryStats(Device.CPU).allocatedBytes();
            long t = System.nanoTime();
            try (InferenceSession s = InferenceSession.builder(file).device(Device.CPU).planCache(plans).build()) {
                load = Math.min(load, System.nanoTime() - t);
                assertTrue(s.planFromDisk(), "session " + i + " loaded the plan file");
                long added = Cortado.memoryStats(Device.CPU).allocatedBytes() - allocated;
                assertTrue(added < 1 << 20, "the weights are mapped, not allocated: " + added + " bytes allocated");
                assertArrayEquals(want, run(s, x), "the plan from disk gives the same bits");
            }
        }
        System.out.printf("PlanFileTest: a %d MB model: parsed and loaded in %.1f ms, its plan loaded from disk in %.1f ms"
                + " (%.1fx)%n", Files.size(file) >> 20, parse / 1e6, load / 1e6, (double) parse / load);
        assertTrue(load * 3 < parse, "plan load " + load / 1e6 + " ms against parsing " + parse / 1e6 + " ms");
    }

    /** The fused nodes (MatMulBias, LayerNorm) get their handlers back from the saved graph. */
    @Test
    void aFusedGraphFromDiskGivesTheSameBits(@TempDir Path dir) throws IOException {
        Path file = SteadyStateAllocationTest.writeModel(dir, 21);
        Path plans = dir.resolve("plans");
        try (Tensor x = SteadyStateAllocationTest.randomInput(new SplittableRandom(3), 2, 9);
             InferenceSession first = InferenceSession.builder(file).device(Device.CPU).planCache(plans).build()) {
            assertTrue(first.model().runningOps().stream().anyMatch(op -> op.startsWith(OnnxFusion.DOMAIN)),
                    "the model has fused nodes: " + first.model().runningOps());
            Map<String, Tensor> want = first.run(Map.of("x", x));
            try (InferenceSession again = InferenceSession.builder(file).device(Device.CPU).planCache(plans)
                    .sharePlan(false).build()) {
                assertTrue(again.planFromDisk());
                Map<String, Tensor> got = again.run(Map.of("x", x));
                for (String name : List.of("y", "pooled")) {
                    assertArrayEquals(want.get(name).toFloatArray(), got.get(name).toFloatArray(), name);
                }
                got.values().forEach(Tensor::close);
            } finally {
                want.values().forEach(Tensor::close);
            }
        }
    }

    private static float[] smallRun(Path file, Path plans, boolean expectDisk, Tensor x) throws IOException {
        try (InferenceSession s = InferenceSession.builder(file).device(Device.CPU).planCache(plans).build();
             Scope scope = Scope.open()) {
            assertEquals(expectDisk, s.planFromDisk(), "from disk");
            return s.run(Map.of("x", x)).get("y").toFloatArray();
        }
    }

    private static void flip(Path file, long position) throws IOException {
        try (FileChannel c = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocate(1);
            c.read(b, position);
            b.put(0, (byte) (b.get(0) ^ 0x5a)).position(0);
            c.write(b, position);
        }
    }

    @Test
    void corruptedTruncatedOrStalePlansAreRebuiltNeverTrusted(@TempDir Path dir) throws IOException {
        Path file = SteadyStateAllocationTest.writeModel(dir, 22);
        Path plans = dir.resolve("plans");
        try (Tensor x = SteadyStateAllocationTest.randomInput(new SplittableRandom(4), 1, 6)) {
            float[] want = smallRun(file, plans, false, x);
            Path plan = onlyPlan(plans);
            assertArrayEquals(want, smallRun(file, plans, true, x));

            // a flipped byte in the weights: the checksum fails, the plan is rebuilt from the model
            flip(plan, Files.size(plan) - 100);
            assertNotNull(PlanFile.verify(plan, keyOf(file)));
            assertArrayEquals(want, smallRun(file, plans, false, x), "rebuilt, same outputs");
            assertNull(PlanFile.verify(plan, keyOf(file)), "the rebuilt plan is whole again");
            assertArrayEquals(want, smallRun(file, plans, true, x));

            // truncated
            try (FileChannel c = FileChannel.open(plan, StandardOpenOption.WRITE)) {
                c.truncate(Files.size(plan) / 2);
            }
            assertTrue(PlanFile.verify(plan, keyOf(file)).contains("truncated"), PlanFile.verify(plan, keyOf(file)));
            assertArrayEquals(want, smallRun(file, plans, false, x));

            // stale: another model's plan under this model's name (its key says so)
            Path other = SteadyStateAllocationTest.writeModel(Files.createDirectories(dir.resolve("other")), 23);
            Path otherPlans = dir.resolve("otherPlans");
            smallRun(other, otherPlans, false, x);
            Files.copy(onlyPlan(otherPlans), plan, StandardCopyOption.REPLACE_EXISTING);
            assertTrue(PlanFile.verify(plan, keyOf(file)).contains("another model"), PlanFile.verify(plan, keyOf(file)));
            assertArrayEquals(want, smallRun(file, plans, false, x), "not the other model's outputs");

            // garbage of the right length and a wrong magic
            Files.write(plan, new byte[(int) Files.size(plan)]);
            assertTrue(PlanFile.verify(plan, keyOf(file)).contains("magic"), PlanFile.verify(plan, keyOf(file)));
            assertArrayEquals(want, smallRun(file, plans, false, x));
            assertArrayEquals(want, smallRun(file, plans, true, x));
        }
    }

    private static String keyOf(Path file) throws IOException {
        return PlanCache.key(file, Device.CPU, InferenceSession.Optimization.FOLD_CONSTANTS).diskKey();
    }

    /** The mapping is freed deterministically: closing the last session unmaps it (the file can be replaced at once). */
    @Test
    void closingTheLastSessionReleasesTheMapping(@TempDir Path dir) throws IOException {
        Path file = SteadyStateAllocationTest.writeModel(dir, 24);
        Path plans = dir.resolve("plans");
        try (Tensor x = SteadyStateAllocationTest.randomInput(new SplittableRandom(5), 1, 4)) {
            smallRun(file, plans, false, x);
            long live = Cortado.memoryStats(Device.CPU).liveAllocations();
            long mapped = mappedBytes(onlyPlan(plans));
            try (InferenceSession s = InferenceSession.builder(file).device(Device.CPU).planCache(plans).build()) {
                assertTrue(s.planFromDisk());
                assertTrue(mappedBytes(onlyPlan(plans)) > mapped, "the plan file is mapped while the session is open");
            }
            assertEquals(mapped, mappedBytes(onlyPlan(plans)), "and unmapped when it closes");
            assertEquals(live, Cortado.memoryStats(Device.CPU).liveAllocations());
        }
    }

    /** How many mappings of {@code file} this process has (from /proc/self/maps; 0 where there is none). */
    private static long mappedBytes(Path file) throws IOException {
        Path maps = Path.of("/proc/self/maps");
        if (!Files.exists(maps)) {
            return 0;
        }
        String name = file.toRealPath().toString();
        try (Stream<String> lines = Files.lines(maps)) {
            return lines.filter(l -> l.endsWith(name)).count();
        }
    }
}
