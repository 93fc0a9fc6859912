package dev.cortado.bench;

import com.google.protobuf.ByteString;
import dev.cortado.Cortado;
import dev.cortado.onnx.InferenceSession;
import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The serving promises of issue #17 that need an idle machine to measure (docs/serving.md,
 * "Benchmarks for an idle machine"):
 * <ul>
 *   <li>{@code planLoad}: creating a session of a 105 MB model (four 2560 x 2560 float32 MatMul
 *       weights) with the in-memory plan cache empty, from the model file ({@code source=model}:
 *       parse, convert, fold) or from the plan a first session wrote to disk ({@code source=plan}:
 *       the weights mapped). The bar: 200 ms or less after the first time.</li>
 *   <li>{@code steadyRequest}: one request of a seen shape (a transformer-like block, batch 8 x 128
 *       tokens x 256 features) through {@code run(feeds, outputs)}, with memory patterns
 *       ({@code reuse=true}: no allocation) and without; {@link Allocations} reports the host
 *       allocator's count per operation as a secondary result.</li>
 *   <li>{@code firstRequestAfterWarmUp}: the first request of a fresh session after one warm-up run
 *       of its shape (made in the per-invocation setup; single shot), to compare with
 *       {@code steadyRequest}: "the first request after warm-up is no slower than the
 *       thousandth".</li>
 * </ul>
 * Run: {@code java -jar jmh/target/benchmarks.jar ServingBenchmark -f 1 -wi 3 -i 5}.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
@Warmup(iterations = 3, time = 2, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 2, timeUnit = TimeUnit.SECONDS)
public class ServingBenchmark {
    static final int WIDTH = 2560;
    static final int FEATURES = 256;
    static final int HIDDEN = 1024;

    /** The 105 MB model and its plan on disk. */
    @State(Scope.Benchmark)
    public static class Plans {
        @Param({"model", "plan"})
        public String source;
        Path dir;
        Path big;
        Path plans;

        @Setup(Level.Trial)
        public void setUp() throws IOException {
            dir = Files.createTempDirectory("cortado-plans");
            big = writeChain(dir.resolve("big.onnx"));
            plans = dir.resolve("plans");
            try (InferenceSession first = InferenceSession.builder(big).device(Device.CPU).planCache(plans).build()) {
                first.model(); // writes the plan
            }
        }

        @TearDown(Level.Trial)
        public void tearDown() throws IOException {
            delete(dir);
        }
    }

    /** A session of the block model, warmed for the request shape. */
    @State(Scope.Benchmark)
    public static class Requests {
        @Param({"true", "false"})
        public boolean reuse;
        Path dir;
        Path block;
        InferenceSession session;
        Tensor x;
        Tensor y;

        @Setup(Level.Trial)
        public void setUp() throws IOException {
            dir = Files.createTempDirectory("cortado-requests");
            block = writeBlock(dir.resolve("block.onnx"));
            session = InferenceSession.builder(block).device(Device.CPU).reuseMemory(reuse).build();
            x = random(8, 128, FEATURES);
            y = Tensor.empty(DType.FLOAT32, Device.CPU, 8, 128, FEATURES);
            for (int i = 0; i < 3; i++) {
                session.run(Map.of("x", x), Map.of("y", y)); // records, then replays
            }
        }

        @TearDown(Level.Trial)
        public void tearDown() throws IOException {
            session.close();
            x.close();
            y.close();
            delete(dir);
        }
    }

    /** A fresh session per invocation, warmed with one run of the request shape. */
    @State(Scope.Thread)
    public static class Fresh {
        InferenceSession session;

        @Setup(Level.Invocation)
        public void setUp(Requests r) throws IOException {
            session = InferenceSession.builder(r.block).device(Device.CPU).reuseMemory(r.reuse).sharePlan(false).build();
            session.run(Map.of("x", r.x), Map.of("y", r.y)); // the warm-up run of this shape
        }

        @TearDown(Level.Invocation)
        public void tearDown() {
            session.close();
        }
    }

    /**
     * Host allocations of {@code steadyRequest}, counted over every measured operation (JMH sums an
     * {@code EVENTS} counter over the iterations: a total, not a count per operation; 0 with memory
     * patterns).
     */
    @AuxCounters(AuxCounters.Type.EVENTS)
    @State(Scope.Thread)
    public static class Allocations {
        public long allocations;
    }

    static void delete(Path dir) throws IOException {
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }

    /** A session of the 105 MB model, created (from the model or from its plan) and closed. */
    @Benchmark
    public int planLoad(Plans p) throws IOException {
        InferenceSession.Builder b = InferenceSession.builder(p.big).device(Device.CPU);
        if (p.source.equals("plan")) {
            b.planCache(p.plans);
        }
        try (InferenceSession s = b.build()) {
            return s.model().inputNames().size();
        }
    }

    /** One request of a seen shape, outputs into the caller's tensor. */
    @Benchmark
    public Tensor steadyRequest(Requests r, Allocations counts) {
        long before = Cortado.hostAllocationCounts().allocations();
        r.session.run(Map.of("x", r.x), Map.of("y", r.y));
        counts.allocations += Cortado.hostAllocationCounts().allocations() - before;
        return r.y;
    }

    /** The first request of a session after its warm-up run (single shot: compare with steadyRequest). */
    @Benchmark
    @BenchmarkMode(Mode.SingleShotTime)
    @Warmup(iterations = 2)
    @Measurement(iterations = 20)
    public Tensor firstRequestAfterWarmUp(Requests r, Fresh f) {
        f.session.run(Map.of("x", r.x), Map.of("y", r.y));
        return r.y;
    }

    private static Tensor random(long... dims) {
        SplittableRandom r = new SplittableRandom(1);
        long n = 1;
        for (long d : dims) {
            n *= d;
        }
        float[] v = new float[(int) n];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextDouble(-1, 1);
        }
        return Tensor.of(v, Device.CPU, dims);
    }

    private static TensorProto floats(String name, SplittableRandom r, double scale, long... dims) {
        long n = 1;
        for (long d : dims) {
            n *= d;
        }
        ByteBuffer raw = ByteBuffer.allocate((int) (n * 4)).order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < n; i++) {
            raw.putFloat((float) (r.nextDouble(-1, 1) * scale));
        }
        raw.flip();
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(TensorProto.DataType.FLOAT_VALUE)
                .setRawData(ByteString.copyFrom(raw));
        for (long d : dims) {
            t.addDims(d);
        }
        return t.build();
    }

    private static NodeProto node(String op, List<String> in, String out, AttributeProto... attrs) {
        return NodeProto.newBuilder().setOpType(op).addAllInput(in).addOutput(out).addAllAttribute(List.of(attrs)).build();
    }

    private static Path write(Path file, GraphProto.Builder g, int opset) {
        ModelProto m = ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(opset)).setGraph(g).build();
        try (OutputStream out = Files.newOutputStream(file)) {
            m.writeTo(out);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return file;
    }

    /** y = x @ W0 @ W1 @ W2 @ W3, 105 MB of weights. */
    static Path writeChain(Path file) {
        SplittableRandom r = new SplittableRandom(11);
        GraphProto.Builder g = GraphProto.newBuilder().setName("chain");
        g.addInput(ValueInfoProto.newBuilder().setName("x"));
        g.addOutput(ValueInfoProto.newBuilder().setName("y4"));
        for (int l = 0; l < 4; l++) {
            g.addInitializer(floats("w" + l, r, 1 / Math.sqrt(WIDTH), WIDTH, WIDTH));
            g.addNode(node("MatMul", List.of(l == 0 ? "x" : "y" + l, "w" + l), "y" + (l + 1)));
        }
        return write(file, g, 17);
    }

    /** A feed-forward block with a softmax and a written-out layer norm over x [batch, seq, FEATURES]. */
    static Path writeBlock(Path file) {
        SplittableRandom r = new SplittableRandom(12);
        GraphProto.Builder g = GraphProto.newBuilder().setName("block");
        g.addInput(ValueInfoProto.newBuilder().setName("x"));
        g.addOutput(ValueInfoProto.newBuilder().setName("y"));
        g.addInitializer(floats("w1", r, 0.05, FEATURES, HIDDEN));
        g.addInitializer(floats("b1", r, 0.05, HIDDEN));
        g.addInitializer(floats("w2", r, 0.05, HIDDEN, FEATURES));
        g.addInitializer(floats("eps", r, 1e-6, 1));
        AttributeProto last = AttributeProto.newBuilder().setName("axes").setType(AttributeProto.AttributeType.INTS)
                .addInts(-1).build();
        g.addNode(node("MatMul", List.of("x", "w1"), "h0"));
        g.addNode(node("Add", List.of("h0", "b1"), "h1"));
        g.addNode(node("Relu", List.of("h1"), "h2"));
        g.addNode(node("MatMul", List.of("h2", "w2"), "s0"));
        g.addNode(node("Softmax", List.of("s0"), "s1"));
        g.addNode(node("ReduceMean", List.of("s1"), "m", last));
        g.addNode(node("Sub", List.of("s1", "m"), "c"));
        g.addNode(node("Mul", List.of("c", "c"), "c2"));
        g.addNode(node("ReduceMean", List.of("c2"), "v", last));
        g.addNode(node("Add", List.of("v", "eps"), "ve"));
        g.addNode(node("Sqrt", List.of("ve"), "sd"));
        g.addNode(node("Div", List.of("c", "sd"), "y"));
        return write(file, g, 13);
    }
}
