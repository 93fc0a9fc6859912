package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.cortado.Cortado;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The plan cache of {@link InferenceSession}: sessions of one model file share one loaded plan
 * (the weights once in memory), a retained plan makes the next session of a ~100 MB model skip
 * the whole load, a rewritten file gets a new plan, and the last close frees everything.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class PlanCacheTest {
    /** Four [2560, 2560] float32 weights: 105 MB of initializers. */
    static final int WIDTH = 2560;
    static final int LAYERS = 4;

    /** y = x @ W0 @ W1 @ W2 @ W3 with x [n, WIDTH]; the weights are returned in {@code weights}. */
    static Path writeModel(Path dir, long seed, float[][] weights) throws IOException {
        SplittableRandom r = new SplittableRandom(seed);
        GraphProto.Builder g = GraphProto.newBuilder().setName("chain");
        TypeProto.Tensor.Builder tt = TypeProto.Tensor.newBuilder().setElemType(TensorProto.DataType.FLOAT_VALUE)
                .setShape(TensorShapeProto.newBuilder()
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("n"))
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(WIDTH)));
        g.addInput(ValueInfoProto.newBuilder().setName("x").setType(TypeProto.newBuilder().setTensorType(tt)));
        g.addOutput(ValueInfoProto.newBuilder().setName("y" + LAYERS));
        float scale = (float) (1 / Math.sqrt(WIDTH));
        for (int l = 0; l < LAYERS; l++) {
            float[] w = new float[WIDTH * WIDTH];
            ByteBuffer raw = ByteBuffer.allocate(w.length * 4).order(ByteOrder.LITTLE_ENDIAN);
            for (int k = 0; k < w.length; k++) {
                w[k] = (float) (r.nextDouble(-1.7, 1.7) * scale);
                raw.putFloat(w[k]);
            }
            weights[l] = w;
            raw.flip();
            g.addInitializer(TensorProto.newBuilder().setName("w" + l).setDataType(TensorProto.DataType.FLOAT_VALUE)
                    .addDims(WIDTH).addDims(WIDTH).setRawData(ByteString.copyFrom(raw)));
            g.addNode(NodeProto.newBuilder().setOpType("MatMul").addInput(l == 0 ? "x" : "y" + l).addInput("w" + l)
                    .addOutput("y" + (l + 1)));
        }
        ModelProto m = ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(17)).setGraph(g).build();
        Path file = dir.resolve("big.onnx");
        try (OutputStream out = Files.newOutputStream(file)) {
            m.writeTo(out);
        }
        return file;
    }

    /** x @ W0 @ ... in float64 for one row. */
    static double[] reference(float[] x, float[][] weights) {
        double[] v = new double[WIDTH];
        for (int k = 0; k < WIDTH; k++) {
            v[k] = x[k];
        }
        for (float[] w : weights) {
            double[] next = new double[WIDTH];
            for (int k = 0; k < WIDTH; k++) {
                double a = v[k];
                int row = k * WIDTH;
                for (int j = 0; j < WIDTH; j++) {
                    next[j] += a * w[row + j];
                }
            }
            v = next;
        }
        return v;
    }

    private static float[] run(InferenceSession s, float[] x) {
        try (Scope scope = Scope.open()) {
            return s.run(Map.of("x", Tensor.of(x, Device.CPU, 1, WIDTH))).get("y" + LAYERS).toFloatArray();
        }
    }

    private static InferenceSession.Builder builder(Path file) {
        return InferenceSession.builder(file).device(Device.CPU).retainPlan(true).warmUp(1);
    }

    /**
     * The second and later create + warm-up of a 105 MB model reuse the retained plan: correct
     * outputs (equal to the first session's and within 1e-4 of a float64 reference) and at least
     * 10x faster than the first (measured as the best of three, a ratio that holds on a loaded
     * machine; the absolute figure is for an idle one, see docs/serving.md).
     */
    @Test
    void aRetainedPlanMakesTheNextSessionOfA100MbModelCheap(@TempDir Path dir) throws IOException {
        float[][] weights = new float[LAYERS][];
        Path file = writeModel(dir, 11, weights);
        assertTrue(Files.size(file) > 100_000_000L, "model size " + Files.size(file));
        float[] x = new float[WIDTH];
        SplittableRandom r = new SplittableRandom(3);
        for (int k = 0; k < WIDTH; k++) {
            x[k] = (float) r.nextDouble(-1, 1);
        }
        double[] want = reference(x, weights);
        long allocated = Cortado.memoryStats(Device.CPU).allocatedBytes();
        float[] first;
        long cold = System.nanoTime();
        try (InferenceSession s = builder(file).build()) {
            cold = System.nanoTime() - cold;
            assertFalse(s.planFromCache());
            first = run(s, x);
        }
        for (int k = 0; k < WIDTH; k++) {
            assertEquals(want[k], first[k], 1e-4 + 1e-4 * Math.abs(want[k]), "output " + k);
        }
        long warm = Long.MAX_VALUE;
        long oneRun = Long.MAX_VALUE;
        for (int i = 0; i < 3; i++) {
            long t = System.nanoTime();
            try (InferenceSession s = builder(file).build()) {
                warm = Math.min(warm, System.nanoTime() - t);
                assertTrue(s.planFromCache(), "session " + (i + 2) + " found the retained plan");
                t = System.nanoTime();
                float[] again = run(s, x);
                oneRun = Math.min(oneRun, System.nanoTime() - t);
                assertArrayEquals(first, again, "the cached plan gives the same outputs");
            }
        }
        System.out.printf("PlanCacheTest: create + warm-up of a %d MB model: first %.1f ms, with the retained plan %.1f ms;"
                + " one run %.1f ms%n", Files.size(file) >> 20, cold / 1e6, warm / 1e6, oneRun / 1e6);
        assertTrue(warm * 10 < cold, "create + warm-up: first " + cold / 1e6 + " ms, cached " + warm / 1e6 + " ms");
        assertEquals(1, InferenceSession.releaseRetainedPlans());
        assertEquals(allocated, Cortado.memoryStats(Device.CPU).allocatedBytes(), "releasing frees the weights");
    }

    /** Sessions built at the same time from many threads end on one plan, counted once each. */
    @Test
    void concurrentBuildsShareOnePlan(@TempDir Path dir) throws Exception {
        java.util.Random r = new java.util.Random(9);
        Path file = InferenceSessionTest.writeModel(dir, InferenceSessionTest.random(r, 64 * 64),
                InferenceSessionTest.random(r, 64), 64, 64);
        long allocated = Cortado.memoryStats(Device.CPU).allocatedBytes();
        int threads = 6;
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(threads);
        java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(threads);
        java.util.List<java.util.concurrent.Future<InferenceSession>> built = new java.util.ArrayList<>();
        try {
            for (int t = 0; t < threads; t++) {
                built.add(pool.submit(() -> {
                    start.await();
                    return InferenceSession.builder(file).device(Device.CPU).build();
                }));
            }
            java.util.List<InferenceSession> sessions = new java.util.ArrayList<>();
            for (java.util.concurrent.Future<InferenceSession> f : built) {
                sessions.add(f.get());
            }
            for (InferenceSession s : sessions) {
                assertSame(sessions.get(0).model(), s.model(), "one plan for all");
            }
            for (InferenceSession s : sessions) {
                s.close();
            }
        } finally {
            pool.shutdown();
        }
        assertEquals(allocated, Cortado.memoryStats(Device.CPU).allocatedBytes(), "the last close freed the one plan");
    }

    @Test
    void openSessionsShareOnePlanAndTheLastCloseFreesIt(@TempDir Path dir) throws IOException {
        java.util.Random r = new java.util.Random(8);
        Path file = InferenceSessionTest.writeModel(dir, InferenceSessionTest.random(r, 8 * 16), InferenceSessionTest.random(r, 8), 16, 8);
        long allocated = Cortado.memoryStats(Device.CPU).allocatedBytes();
        try (InferenceSession a = InferenceSession.builder(file).device(Device.CPU).build()) {
            long one = Cortado.memoryStats(Device.CPU).allocatedBytes();
            try (InferenceSession b = InferenceSession.builder(file).device(Device.CPU).build();
                 InferenceSession own = InferenceSession.builder(file).device(Device.CPU).sharePlan(false).build()) {
                assertFalse(a.planFromCache());
                assertTrue(b.planFromCache());
                assertSame(a.model(), b.model());
                assertFalse(own.planFromCache());
                assertNotSame(a.model(), own.model());
                try (InferenceSession noFold = InferenceSession.builder(file).device(Device.CPU)
                        .optimization(InferenceSession.Optimization.NONE).build()) {
                    assertFalse(noFold.planFromCache(), "another optimization level is another plan");
                }
            }
            assertEquals(one, Cortado.memoryStats(Device.CPU).allocatedBytes(), "b shared a's weights");
            // a rewritten file is a new plan
            Files.setLastModifiedTime(file, FileTime.fromMillis(Files.getLastModifiedTime(file).toMillis() + 5000));
            try (InferenceSession c = InferenceSession.builder(file).device(Device.CPU).build()) {
                assertFalse(c.planFromCache());
                assertNotSame(a.model(), c.model());
            }
        }
        assertEquals(allocated, Cortado.memoryStats(Device.CPU).allocatedBytes(), "the last close freed the plan");
        assertEquals(0, InferenceSession.releaseRetainedPlans());
    }
}
