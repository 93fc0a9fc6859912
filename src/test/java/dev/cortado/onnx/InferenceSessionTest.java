package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The serving options of {@link InferenceSession}: shape buckets, constant folding, warm-up,
 * metrics, closing under load, and resident memory over many load/close cycles and requests.
 * The model: {@code y = relu(x @ transpose(Wt) + b)} with {@code x [batch, seq, in]} (batch and
 * seq open), checked against a float64 reference.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class InferenceSessionTest {

    private static ValueInfoProto value(String name, Object... dims) {
        TensorShapeProto.Builder s = TensorShapeProto.newBuilder();
        for (Object d : dims) {
            s.addDim(d instanceof String p ? TensorShapeProto.Dimension.newBuilder().setDimParam(p)
                    : TensorShapeProto.Dimension.newBuilder().setDimValue(((Number) d).longValue()));
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(
                TypeProto.Tensor.newBuilder().setElemType(OnnxTensors.FLOAT).setShape(s))).build();
    }

    private static TensorProto floats(String name, float[] v, long... dims) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            b.putFloat(f);
        }
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(OnnxTensors.FLOAT)
                .setRawData(com.google.protobuf.ByteString.copyFrom(b.array()));
        for (long d : dims) {
            t.addDims(d);
        }
        return t.build();
    }

    /** A model file of {@code relu(x @ transpose(Wt) + b)}; Wt is [out, in]. */
    static Path writeModel(Path dir, float[] wt, float[] b, int in, int out) throws IOException {
        GraphProto.Builder g = GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("Transpose").setName("t").addInput("Wt").addOutput("W"))
                .addNode(NodeProto.newBuilder().setOpType("MatMul").setName("mm").addInput("x").addInput("W").addOutput("xw"))
                .addNode(NodeProto.newBuilder().setOpType("Add").setName("add").addInput("xw").addInput("b").addOutput("z"))
                .addNode(NodeProto.newBuilder().setOpType("Relu").setName("relu").addInput("z").addOutput("y"))
                .addInitializer(floats("Wt", wt, out, in))
                .addInitializer(floats("b", b, out))
                .addInput(value("x", "batch", "seq", in))
                .addOutput(value("y", "batch", "seq", out));
        ModelProto m = ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(17)).setGraph(g).build();
        Path file = dir.resolve("dense.onnx");
        Files.write(file, m.toByteArray());
        return file;
    }

    static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    /** The float64 reference of one row: relu(x @ Wt^T + b). */
    private static double[] reference(float[] x, int rows, float[] wt, float[] b, int in, int out) {
        double[] y = new double[rows * out];
        for (int r = 0; r < rows; r++) {
            for (int o = 0; o < out; o++) {
                double s = b[o];
                for (int i = 0; i < in; i++) {
                    s += (double) x[r * in + i] * wt[o * in + i];
                }
                y[r * out + o] = Math.max(0, s);
            }
        }
        return y;
    }

    private static void assertClose(double[] want, float[] got, int from, int count, String what) {
        for (int k = 0; k < count; k++) {
            double w = want[k];
            double g = got[from + k];
            // float32 accumulation over at most 64 terms of unit-variance products: 1e-5 relative to
            // the row's scale (sqrt(in) <= 8) is far above the rounding, far below any wrong value
            if (Math.abs(g - w) > 1e-4 * (1 + Math.abs(w))) {
                throw new AssertionError(what + ": element " + k + " is " + g + ", want " + w);
            }
        }
    }

    @Test
    void shapeBucketsPadAndRefuseBeyondTheLargest(@TempDir Path dir) throws IOException {
        int in = 5;
        int out = 3;
        Random r = new Random(1);
        float[] wt = random(r, out * in);
        float[] b = random(r, out);
        Path file = writeModel(dir, wt, b, in, out);
        try (InferenceSession s = InferenceSession.builder(file).device(Device.CPU).shapeBuckets(1, 8, 4).build()) {
            assertEquals(List.of(4, 8), s.shapeBuckets());
            assertEquals(4, s.paddedLength(1));
            assertEquals(8, s.paddedLength(5));
            for (int seq : new int[] {1, 3, 4, 7}) {
                int batch = 2;
                float[] x = random(r, batch * seq * in);
                try (Scope scope = Scope.open()) {
                    Tensor y = s.run(Map.of("x", Tensor.of(x, Device.CPU, batch, seq, in))).get("y");
                    int padded = s.paddedLength(seq);
                    assertEquals(List.of(2L, (long) padded, 3L), List.of(y.size(0), y.size(1), y.size(2)));
                    float[] got = y.toFloatArray();
                    for (int bi = 0; bi < batch; bi++) {
                        float[] xb = java.util.Arrays.copyOfRange(x, bi * seq * in, (bi + 1) * seq * in);
                        assertClose(reference(xb, seq, wt, b, in, out), got, bi * padded * out, seq * out,
                                "seq " + seq + " batch row " + bi);
                        // padded positions see x = 0: relu(b)
                        float[] zeros = new float[(padded - seq) * in];
                        assertClose(reference(zeros, padded - seq, wt, b, in, out), got,
                                (bi * padded + seq) * out, (padded - seq) * out, "padding of seq " + seq);
                    }
                }
            }
            try (Tensor x = Tensor.zeros(dev.cortado.tensor.DType.FLOAT32, Device.CPU, 1, 9, in)) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> s.run(Map.of("x", x)));
                assertTrue(e.getMessage().contains("input 'x'") && e.getMessage().contains("length 9")
                        && e.getMessage().contains("largest shape bucket 8"), e.getMessage());
            }
        }
    }

    @Test
    void constantFoldingEvaluatesTheWeightTransposeOnceWithTheSameResults(@TempDir Path dir) throws IOException {
        int in = 7;
        int out = 4;
        Random r = new Random(2);
        float[] wt = random(r, out * in);
        float[] b = random(r, out);
        Path file = writeModel(dir, wt, b, in, out);
        float[] x = random(r, 3 * in);
        try (InferenceSession folded = InferenceSession.builder(file).device(Device.CPU).build();
             InferenceSession plain = InferenceSession.builder(file).device(Device.CPU)
                     .optimization(InferenceSession.Optimization.NONE).build();
             Scope scope = Scope.open()) {
            assertEquals(1, folded.model().foldedNodes(), "the Transpose of the initializer");
            assertEquals(0, plain.model().foldedNodes());
            Tensor xt = Tensor.of(x, Device.CPU, 1, 3, in);
            float[] a = folded.run(Map.of("x", xt)).get("y").toFloatArray();
            float[] c = plain.run(Map.of("x", xt)).get("y").toFloatArray();
            assertClose(reference(x, 3, wt, b, in, out), a, 0, a.length, "folded");
            assertClose(reference(x, 3, wt, b, in, out), c, 0, c.length, "not folded");
        }
    }

    @Test
    void warmUpRunsEveryBucketAndMetricsCountOnlyRequests(@TempDir Path dir) throws IOException {
        int in = 4;
        int out = 2;
        Random r = new Random(3);
        Path file = writeModel(dir, random(r, out * in), random(r, out), in, out);
        try (InferenceSession s = InferenceSession.builder(file).device(Device.CPU).shapeBuckets(1, 2, 4)
                .warmUp(2).threads(0).build()) {
            assertEquals(0, s.metrics().requests(), "warm-up runs are not requests");
            for (int i = 0; i < 12; i++) {
                int batch = 1 + i % 3;
                try (Tensor x = Tensor.of(random(r, batch * 2 * in), Device.CPU, batch, 2, in);
                     Scope scope = Scope.open()) {
                    s.run(Map.of("x", x));
                }
            }
            try (Tensor bad = Tensor.zeros(dev.cortado.tensor.DType.FLOAT32, Device.CPU, 1, 2, in + 1)) {
                assertThrows(IllegalArgumentException.class, () -> s.run(Map.of("x", bad)));
            }
            InferenceMetrics.Snapshot m = s.metrics();
            assertEquals(13, m.requests());
            assertEquals(1, m.failed());
            assertEquals(12, m.batches());
            assertEquals(24, m.batchedItems(), "batch sizes 1, 2, 3 four times each");
            assertEquals(3, m.maxBatchSize());
            assertEquals(2.0, m.meanBatchSize(), 1e-9);
            assertTrue(m.p50() > 0 && m.p50() <= m.p99() && m.p99() <= m.maxLatency() * 1.001, m.toString());
        }
    }

    @Test
    void closingUnderLoadFailsPendingRunsCleanlyAndFreesTheWeights(@TempDir Path dir) throws Exception {
        int in = 16;
        int out = 16;
        Random r = new Random(4);
        float[] wt = random(r, out * in);
        float[] b = random(r, out);
        Path file = writeModel(dir, wt, b, in, out);
        long before = Cortado.memoryStats(Device.CPU).allocatedBytes();
        InferenceSession s = InferenceSession.builder(file).device(Device.CPU).maxConcurrentRuns(2).build();
        int threads = 8;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        CountDownLatch running = new CountDownLatch(threads * 5);
        AtomicInteger ok = new AtomicInteger();
        AtomicInteger refused = new AtomicInteger();
        try {
            List<Future<?>> done = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                long seed = 100 + t;
                done.add(pool.submit(() -> {
                    Random rr = new Random(seed);
                    for (int i = 0; i < 100; i++) {
                        float[] x = random(rr, 4 * in);
                        try (Scope scope = Scope.open()) {
                            float[] y = s.run(Map.of("x", Tensor.of(x, Device.CPU, 1, 4, in))).get("y").toFloatArray();
                            assertClose(reference(x, 4, wt, b, in, out), y, 0, y.length, "a run racing the close");
                            ok.incrementAndGet();
                        } catch (IllegalStateException e) {
                            assertTrue(e.getMessage().contains("closed"), e.getMessage());
                            refused.incrementAndGet();
                        }
                        running.countDown();
                    }
                    return null;
                }));
            }
            running.await();
            s.close();
            for (Future<?> f : done) {
                f.get();
            }
        } finally {
            pool.shutdown();
            s.close();
        }
        assertTrue(ok.get() >= threads * 5, "runs before the close succeeded: " + ok);
        assertTrue(refused.get() > 0, "runs after the close were refused");
        assertEquals(threads * 100, ok.get() + refused.get());
        assertEquals(before, Cortado.memoryStats(Device.CPU).allocatedBytes(), "the weights are freed");
        try (Tensor x = Tensor.zeros(dev.cortado.tensor.DType.FLOAT32, Device.CPU, 1, 1, in)) {
            assertThrows(IllegalStateException.class, () -> s.run(Map.of("x", x)));
        }
    }

    /**
     * In a child JVM ({@link RssProbe}) whose heap is fixed and pre-touched (so the collector does
     * not move resident memory), with one kernel thread: 20 load/close cycles of a model with 256
     * KiB of weights and 10 requests each, then 4,000 requests on one session (resident memory has
     * settled); then 80 more cycles and 4,000 more requests ({@code -Dcortado.rssRequests=N} for
     * more), which must leave resident memory within 2% of where the first phase left it. A leak
     * of the weights alone would add 20 MiB (about 12%); the child also checks that the engine's
     * allocation counter comes back exactly after every close.
     */
    @Test
    void residentMemorySettlesOverLoadCloseCyclesAndRequests(@TempDir Path dir) throws Exception {
        Assumptions.assumeTrue(Files.exists(Path.of("/proc/self/status")), "VmRSS needs Linux's /proc");
        int in = 256;
        int out = 256;
        Random r = new Random(5);
        Path file = writeModel(dir, random(r, out * in), random(r, out), in, out);
        List<String> cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                // a fixed, pre-touched heap and the C1 compiler only (whose code and arenas settle
                // within a few thousand requests; C2 keeps compiling until ~12,000)
                "-Xms96m", "-Xmx96m", "-XX:+AlwaysPreTouch", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-cp", System.getProperty("java.class.path"), RssProbe.class.getName(),
                file.toString(), "100", "20", "10", Integer.toString(Integer.getInteger("cortado.rssRequests", 4000)));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().put("MALLOC_ARENA_MAX", "2");
        pb.environment().put("OMP_NUM_THREADS", "1");
        pb.environment().put("OPENBLAS_NUM_THREADS", "1");
        Process p = pb.start();
        String text = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        assertTrue(p.waitFor(300, java.util.concurrent.TimeUnit.SECONDS), text);
        assertEquals(0, p.exitValue(), text);
        long settled = -1;
        long end = -1;
        for (String line : text.split("\n")) {
            if (line.startsWith("settled ")) {
                settled = Long.parseLong(line.substring(8).trim());
            } else if (line.startsWith("end ")) {
                end = Long.parseLong(line.substring(4).trim());
            }
        }
        assertTrue(settled > 0 && end > 0, text);
        double growth = (end - settled) / (double) settled;
        assertTrue(Math.abs(growth) <= 0.02, "VmRSS " + settled + " kB after 20 cycles, " + end
                + " kB at the end: " + String.format("%.2f%%", 100 * growth) + "\n" + text);
    }
}
