package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.cortado.Cortado;
import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.MemoryPattern;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Zero allocation per request in steady state (issue #17, point 4): after warm-up, a request of an
 * input shape the session has seen takes every intermediate tensor from the shape's planned arena
 * ({@code MemoryPattern}) and writes its outputs into the caller's tensors, so the host
 * allocator's cumulative counters ({@link Cortado#hostAllocationCounts()}: every allocation, and
 * those that took fresh memory from the system) do not move over hundreds of requests. The same
 * loop with memory reuse off moves them on every request, which shows the check can fail.
 */
class SteadyStateAllocationTest {
    static final int D = 24;
    static final int HIDDEN = 40;

    /**
     * A transformer-like block over x [batch, seq, D]: h = relu(x @ W1 + b1), s = softmax(h @ W2),
     * a written-out layer norm of s (ReduceMean, Sub, Mul, ReduceMean, Add, Sqrt, Div), and the
     * result reshaped through Shape / Reshape (shape arithmetic read on the host every run).
     */
    static Path writeModel(Path dir, long seed) throws IOException {
        SplittableRandom r = new SplittableRandom(seed);
        GraphProto.Builder g = GraphProto.newBuilder().setName("block");
        g.addInput(input("x", TensorProto.DataType.FLOAT_VALUE, "batch", "seq", D));
        g.addOutput(ValueInfoProto.newBuilder().setName("y"));
        g.addOutput(ValueInfoProto.newBuilder().setName("pooled"));
        g.addInitializer(floats("w1", r, D, HIDDEN));
        g.addInitializer(floats("b1", r, HIDDEN));
        g.addInitializer(floats("w2", r, HIDDEN, D));
        g.addInitializer(floats("eps", new float[] {1e-5f}));
        g.addNode(node("MatMul", List.of("x", "w1"), "h0"));
        g.addNode(node("Add", List.of("h0", "b1"), "h1"));
        g.addNode(node("Relu", List.of("h1"), "h2"));
        g.addNode(node("MatMul", List.of("h2", "w2"), "s0"));
        g.addNode(node("Softmax", List.of("s0"), "s1", AttributeProto.newBuilder().setName("axis").setI(-1)
                .setType(AttributeProto.AttributeType.INT).build()));
        g.addNode(node("ReduceMean", List.of("s1"), "m", ints("axes", -1)));
        g.addNode(node("Sub", List.of("s1", "m"), "c"));
        g.addNode(node("Mul", List.of("c", "c"), "c2"));
        g.addNode(node("ReduceMean", List.of("c2"), "v", ints("axes", -1)));
        g.addNode(node("Add", List.of("v", "eps"), "ve"));
        g.addNode(node("Sqrt", List.of("ve"), "sd"));
        g.addNode(node("Div", List.of("c", "sd"), "ln"));
        g.addNode(node("Shape", List.of("x"), "shape"));
        g.addNode(node("Reshape", List.of("ln", "shape"), "y"));
        g.addNode(node("ReduceMean", List.of("y"), "pooled", ints("axes", 1)));
        ModelProto m = ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(13)).setGraph(g).build();
        Path file = dir.resolve("block.onnx");
        try (OutputStream out = Files.newOutputStream(file)) {
            m.writeTo(out);
        }
        return file;
    }

    static ValueInfoProto input(String name, int elemType, Object... dims) {
        TensorShapeProto.Builder shape = TensorShapeProto.newBuilder();
        for (Object d : dims) {
            shape.addDim(d instanceof String s ? TensorShapeProto.Dimension.newBuilder().setDimParam(s)
                    : TensorShapeProto.Dimension.newBuilder().setDimValue(((Number) d).longValue()));
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder()
                .setTensorType(TypeProto.Tensor.newBuilder().setElemType(elemType).setShape(shape))).build();
    }

    static NodeProto node(String op, List<String> inputs, String output, AttributeProto... attrs) {
        return NodeProto.newBuilder().setOpType(op).addAllInput(inputs).addOutput(output)
                .addAllAttribute(List.of(attrs)).build();
    }

    static AttributeProto ints(String name, long... v) {
        AttributeProto.Builder a = AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INTS);
        for (long x : v) {
            a.addInts(x);
        }
        return a.build();
    }

    static TensorProto floats(String name, SplittableRandom r, long... dims) {
        long n = 1;
        for (long d : dims) {
            n *= d;
        }
        float[] v = new float[(int) n];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextDouble(-0.5, 0.5);
        }
        return floats(name, v, dims);
    }

    static TensorProto floats(String name, float[] v, long... dims) {
        ByteBuffer raw = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (float x : v) {
            raw.putFloat(x);
        }
        raw.flip();
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(TensorProto.DataType.FLOAT_VALUE)
                .setRawData(ByteString.copyFrom(raw));
        for (long d : dims) {
            t.addDims(d);
        }
        return t.build();
    }

    static Tensor randomInput(SplittableRandom r, long batch, long seq) {
        float[] v = new float[(int) (batch * seq * D)];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextDouble(-1, 1);
        }
        return Tensor.of(v, Device.CPU, batch, seq, D);
    }

    /** The requests of the steady loop: two batch sizes and two sequence lengths (padded to buckets 8 and 16). */
    record Request(Map<String, Tensor> feeds, Map<String, Tensor> outputs) implements AutoCloseable {
        @Override
        public void close() {
            feeds.values().forEach(Tensor::close);
            outputs.values().forEach(Tensor::close);
        }
    }

    static List<Request> requests(SplittableRandom r) {
        long[][] shapes = {{2, 5}, {2, 12}, {3, 8}, {1, 16}};
        List<Request> list = new ArrayList<>();
        for (long[] s : shapes) {
            long bucket = s[1] <= 8 ? 8 : 16;
            Map<String, Tensor> out = new LinkedHashMap<>();
            out.put("y", Tensor.empty(DType.FLOAT32, Device.CPU, s[0], bucket, D));
            out.put("pooled", Tensor.empty(DType.FLOAT32, Device.CPU, s[0], 1, D));
            list.add(new Request(Map.of("x", randomInput(r, s[0], s[1])), out));
        }
        return list;
    }

    static InferenceSession.Builder builder(Path file) {
        return InferenceSession.builder(file).device(Device.CPU).shapeBuckets(1, 8, 16).warmUp(1)
                .maxConcurrentRuns(2).sharePlan(false);
    }

    /** Native allocations of {@code rounds} passes over the requests, after one pass to record and one to replay. */
    static Cortado.AllocationCounts steadyAllocations(InferenceSession s, List<Request> requests, int rounds) {
        for (int pass = 0; pass < 2; pass++) {
            for (Request q : requests) {
                s.run(q.feeds(), q.outputs());
            }
        }
        LAST_STORAGES = MemoryPattern.storageAllocations();
        Cortado.AllocationCounts before = Cortado.hostAllocationCounts();
        for (int i = 0; i < rounds; i++) {
            for (Request q : requests) {
                s.run(q.feeds(), q.outputs());
            }
        }
        Cortado.AllocationCounts host = Cortado.hostAllocationCounts().minus(before);
        LAST_STORAGES = MemoryPattern.storageAllocations() - LAST_STORAGES;
        return host;
    }

    /** The tensor storages the last {@link #steadyAllocations} loop allocated from the backend. */
    private static long LAST_STORAGES;

    @Test
    void aSteadyStreamOfRequestsAllocatesNoNativeMemory(@TempDir Path dir) throws IOException {
        Path file = writeModel(dir, 5);
        List<Request> requests = requests(new SplittableRandom(17));
        int rounds = 100;
        try (InferenceSession planned = builder(file).build();
             InferenceSession unplanned = builder(file).reuseMemory(false).build()) {
            Cortado.AllocationCounts steady = steadyAllocations(planned, requests, rounds);
            System.out.printf("SteadyStateAllocationTest: %d requests of %d shapes: %d host allocations, %d from the system"
                    + " (%d memory patterns)%n", rounds * requests.size(), requests.size(), steady.allocations(),
                    steady.systemAllocations(), planned.memoryPatterns());
            assertEquals(0, steady.allocations(), "host allocations over " + rounds * requests.size() + " requests");
            assertEquals(0, steady.systemAllocations(), "fresh system memory over the requests");
            assertTrue(planned.memoryPatterns() >= requests.size(), "a pattern per shape: " + planned.memoryPatterns());
            // one run at a time: at most one arena kept per planned shape (none for a shape only the
            // warm-up ran, which recorded it), none without reuse
            assertTrue(planned.idleArenas() >= 1 && planned.idleArenas() <= planned.memoryPatterns(),
                    planned.idleArenas() + " idle arenas for " + planned.memoryPatterns() + " patterns");
            assertTrue(planned.idleArenaBytes() >= 64L * planned.idleArenas(), "arena bytes " + planned.idleArenaBytes());
            assertEquals(0, unplanned.idleArenas(), "a session without memory reuse keeps no arena");

            // the check can fail: without memory reuse every request allocates its intermediates
            Cortado.AllocationCounts plain = steadyAllocations(unplanned, requests, 5);
            System.out.printf("SteadyStateAllocationTest: without memory reuse, %.1f host allocations per request%n",
                    plain.allocations() / (5.0 * requests.size()));
            assertTrue(plain.allocations() >= 5L * requests.size() * 3,
                    "without reuse each request allocates its intermediates (got " + plain.allocations() + ")");

            // and the planned runs give the unplanned run's bits
            for (Request q : requests) {
                planned.run(q.feeds(), q.outputs());
                Map<String, Tensor> want = unplanned.run(q.feeds());
                try {
                    for (String name : List.of("y", "pooled")) {
                        assertArrayEquals(want.get(name).toFloatArray(), q.outputs().get(name).toFloatArray(), name);
                    }
                } finally {
                    want.values().forEach(Tensor::close);
                }
            }
        } finally {
            requests.forEach(Request::close);
        }
    }

    /**
     * all-MiniLM-L6-v2, fp32 and int8 (skipped without the model jars): after warm-up, requests of
     * 2 x 20 tokens padded to the 32 bucket allocate nothing on the host, every kernel workspace
     * included.
     */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.EnumSource(MiniLmModels.Variant.class)
    void miniLmRequestsAllocateNoNativeMemory(MiniLmModels.Variant variant) throws IOException {
        ModelProto proto = MiniLmModels.model(variant);
        SplittableRandom r = new SplittableRandom(9);
        long[] ids = new long[2 * 20];
        long[] mask = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = i % 20 == 0 ? 101 : 1000 + r.nextInt(20000);
            mask[i] = 1;
        }
        try (InferenceSession s = InferenceSession.builder(proto).device(Device.CPU).shapeBuckets(1, 32, 128).warmUp(1)
                .build();
             Tensor idsT = Tensor.of(ids, Device.CPU, 2, 20);
             Tensor maskT = Tensor.of(mask, Device.CPU, 2, 20);
             Tensor typesT = Tensor.zeros(DType.INT64, Device.CPU, 2, 20)) {
            Map<String, Tensor> feeds = new LinkedHashMap<>();
            for (String name : s.model().inputNames()) {
                feeds.put(name, name.contains("mask") ? maskT : name.contains("type") ? typesT : idsT);
            }
            String output = s.model().outputNames().get(0);
            try (Tensor out = Tensor.empty(DType.FLOAT32, Device.CPU, 2, 32, 384)) {
                Request q = new Request(feeds, Map.of(output, out));
                Cortado.AllocationCounts steady = steadyAllocations(s, List.of(q), 10);
                long storages = LAST_STORAGES;
                System.out.printf("SteadyStateAllocationTest: MiniLM %s, 10 requests: %d host allocations (%d from the"
                        + " system), %d tensor storages%n", variant, steady.allocations(), steady.systemAllocations(),
                        storages);
                assertEquals(0, storages, variant + ": tensor storages allocated over 10 requests");
            }
        }
    }

    /**
     * The Java side: a steady request allocates a bounded amount of Java heap (the interpreter's
     * per-node objects), the same at the end of the run as at its start (no growth).
     */
    @Test
    void javaAllocationPerRequestDoesNotGrow(@TempDir Path dir) throws IOException {
        Path file = writeModel(dir, 6);
        List<Request> requests = requests(new SplittableRandom(18));
        ThreadAllocation bean = new ThreadAllocation();
        long thread = Thread.currentThread().getId();
        try (InferenceSession s = builder(file).build()) {
            steadyAllocations(s, requests, 20); // warm: patterns, arenas, JIT
            int rounds = 150;
            long[] perRound = new long[rounds];
            for (int i = 0; i < rounds; i++) {
                long before = bean.getThreadAllocatedBytes(thread);
                for (Request q : requests) {
                    s.run(q.feeds(), q.outputs());
                }
                perRound[i] = bean.getThreadAllocatedBytes(thread) - before;
            }
            long first = median(java.util.Arrays.copyOfRange(perRound, 0, rounds / 3));
            long last = median(java.util.Arrays.copyOfRange(perRound, rounds - rounds / 3, rounds));
            System.out.printf("SteadyStateAllocationTest: Java heap per request %d bytes (first third), %d (last third)%n",
                    first / requests.size(), last / requests.size());
            assertTrue(last <= first + first / 5 + 4096, "Java allocation per round grew: " + first + " -> " + last);
        } finally {
            requests.forEach(Request::close);
        }
    }

    /**
     * {@code com.sun.management.ThreadMXBean.getThreadAllocatedBytes}, called reflectively: the
     * tests compile inside the module {@code dev.cortado}, which does not read java.management
     * (they run on the class path, where it is there).
     */
    static final class ThreadAllocation {
        private final Object bean;
        private final java.lang.reflect.Method allocated;

        ThreadAllocation() {
            try {
                bean = Class.forName("java.lang.management.ManagementFactory").getMethod("getThreadMXBean").invoke(null);
                allocated = Class.forName("com.sun.management.ThreadMXBean").getMethod("getThreadAllocatedBytes", long.class);
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException("this JVM has no per-thread allocation counter", e);
            }
        }

        long getThreadAllocatedBytes(long thread) {
            try {
                return (Long) allocated.invoke(bean, thread);
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    private static long median(long[] v) {
        long[] c = v.clone();
        java.util.Arrays.sort(c);
        return c[c.length / 2];
    }

    /** Results returned by run(feeds) are copies out of the arena: they stay valid while later runs reuse it. */
    @Test
    void returnedOutputsOutliveTheArena(@TempDir Path dir) throws IOException {
        Path file = writeModel(dir, 7);
        SplittableRandom r = new SplittableRandom(4);
        try (InferenceSession s = builder(file).build();
             InferenceSession plain = builder(file).reuseMemory(false).build();
             Tensor x1 = randomInput(r, 2, 7);
             Tensor x2 = randomInput(r, 2, 7)) {
            s.run(Map.of("x", x1)).values().forEach(Tensor::close); // recorded
            Map<String, Tensor> a = s.run(Map.of("x", x1));        // replayed, copied out
            Map<String, Tensor> b = s.run(Map.of("x", x2));        // replayed in the same arena
            Map<String, Tensor> wantA = plain.run(Map.of("x", x1));
            Map<String, Tensor> wantB = plain.run(Map.of("x", x2));
            try {
                assertArrayEquals(wantA.get("y").toFloatArray(), a.get("y").toFloatArray());
                assertArrayEquals(wantB.get("y").toFloatArray(), b.get("y").toFloatArray());
            } finally {
                for (Map<String, Tensor> m : List.of(a, b, wantA, wantB)) {
                    m.values().forEach(Tensor::close);
                }
            }
        }
    }

    @Test
    void wrongOutputTensorsAreRefusedByName(@TempDir Path dir) throws IOException {
        Path file = writeModel(dir, 8);
        try (InferenceSession s = builder(file).build();
             Tensor x = randomInput(new SplittableRandom(1), 2, 5);
             Tensor wrong = Tensor.empty(DType.FLOAT32, Device.CPU, 2, 5, D);
             Tensor any = Tensor.empty(DType.FLOAT32, Device.CPU, 2, D)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> s.run(Map.of("x", x), Map.of("y", wrong)));
            assertTrue(e.getMessage().contains("output 'y'") && e.getMessage().contains("[2, 8, 24]"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> s.run(Map.of("x", x), Map.of("nope", any)));
            assertTrue(e.getMessage().contains("'nope' is not an output"), e.getMessage());
        }
    }
}
