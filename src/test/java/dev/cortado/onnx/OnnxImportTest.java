package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.StringStringEntryProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.DType;
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
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The importer's own contract, beyond the conformance data: external data files (read, and
 * confined to the model's folder), corrupt files, wrong feeds, If/Loop subgraphs, and an
 * {@link InferenceSession} run from many threads against a float64 reference.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class OnnxImportTest {

    private static ValueInfoProto value(String name, int type, long... dims) {
        TypeProto.Tensor.Builder t = TypeProto.Tensor.newBuilder().setElemType(type);
        TensorShapeProto.Builder s = TensorShapeProto.newBuilder();
        for (long d : dims) {
            s.addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(d));
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(t.setShape(s)))
                .build();
    }

    private static ModelProto model(GraphProto.Builder graph, int opset) {
        return ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(opset))
                .setGraph(graph).build();
    }

    private static byte[] floats(float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            b.putFloat(f);
        }
        return b.array();
    }

    /** y = x @ W (W [3, 2] in an external file at {@code location}, from byte 8). */
    private static ModelProto externalModel(String location) {
        TensorProto w = TensorProto.newBuilder().setName("W").setDataType(OnnxTensors.FLOAT).addDims(3).addDims(2)
                .setDataLocation(TensorProto.DataLocation.EXTERNAL)
                .addExternalData(StringStringEntryProto.newBuilder().setKey("location").setValue(location))
                .addExternalData(StringStringEntryProto.newBuilder().setKey("offset").setValue("8"))
                .addExternalData(StringStringEntryProto.newBuilder().setKey("length").setValue("24"))
                .build();
        GraphProto.Builder g = GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("MatMul").setName("mm").addInput("x").addInput("W").addOutput("y"))
                .addInitializer(w)
                .addInput(value("x", OnnxTensors.FLOAT, 2, 3))
                .addOutput(value("y", OnnxTensors.FLOAT, 2, 2));
        return model(g, 17);
    }

    @Test
    void externalDataIsReadFromTheModelsFolder(@TempDir Path dir) throws IOException {
        Files.write(dir.resolve("weights.bin"), concat(new byte[8], floats(1, 2, 3, 4, 5, 6)));
        Files.write(dir.resolve("model.onnx"), externalModel("weights.bin").toByteArray());
        try (Scope scope = Scope.open(); OnnxModel m = OnnxModel.load(dir.resolve("model.onnx"), Device.CPU)) {
            Tensor x = Tensor.of(new float[] {1, 0, -1, 0.5f, 2, 1}, 2, 3);
            Tensor y = m.run(Map.of("x", x)).get("y");
            // [1 0 -1] @ [[1 2][3 4][5 6]] = [-4 -4]; [0.5 2 1] @ ... = [11.5 15]
            assertArrayEquals(new float[] {-4, -4, 11.5f, 15}, y.toFloatArray());
        }
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] r = new byte[a.length + b.length];
        System.arraycopy(a, 0, r, 0, a.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }

    @Test
    void externalDataOutsideTheFolderIsRefused(@TempDir Path root) throws IOException {
        Path dir = Files.createDirectory(root.resolve("model"));
        Path outside = root.resolve("secret.bin");
        Files.write(outside, concat(new byte[8], floats(1, 2, 3, 4, 5, 6)));
        Files.createSymbolicLink(dir.resolve("link.bin"), outside);
        for (String location : new String[] {"../secret.bin", outside.toString(), "link.bin", "missing.bin"}) {
            Files.write(dir.resolve("model.onnx"), externalModel(location).toByteArray());
            OnnxImportException e = assertThrows(OnnxImportException.class,
                    () -> OnnxModel.load(dir.resolve("model.onnx"), Device.CPU), location);
            assertTrue(e.getMessage().contains("initializer 'W'"), e.getMessage());
        }
        // and a model parsed from memory has no folder to read from
        assertThrows(OnnxImportException.class, () -> OnnxModel.of(externalModel("weights.bin")));
    }

    @Test
    void corruptAndTruncatedFilesFailClearly(@TempDir Path dir) throws IOException {
        byte[] good = externalModel("w.bin").toByteArray();
        Files.write(dir.resolve("cut.onnx"), java.util.Arrays.copyOf(good, good.length / 2));
        assertThrows(OnnxImportException.class, () -> OnnxModel.load(dir.resolve("cut.onnx")));
        Files.write(dir.resolve("junk.onnx"), new byte[] {(byte) 0xFF, (byte) 0xFF, (byte) 0xFF, 0x01});
        assertThrows(OnnxImportException.class, () -> OnnxModel.load(dir.resolve("junk.onnx")));
    }

    private static ModelProto reluModel() {
        return model(GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("Relu").addInput("x").addOutput("y"))
                .addInput(value("x", OnnxTensors.FLOAT, 2, 3))
                .addOutput(value("y", OnnxTensors.FLOAT, 2, 3)), 14);
    }

    @Test
    void wrongFeedsAreNamed() {
        try (Scope scope = Scope.open(); OnnxModel m = OnnxModel.of(reluModel())) {
            Tensor good = Tensor.of(new float[6], 2, 3);
            var unknown = assertThrows(IllegalArgumentException.class, () -> m.run(Map.of("z", good)));
            assertTrue(unknown.getMessage().contains("'z'") && unknown.getMessage().contains("[x]"), unknown.getMessage());
            var missing = assertThrows(IllegalArgumentException.class, () -> m.run(Map.of()));
            assertTrue(missing.getMessage().contains("'x' is not fed"), missing.getMessage());
            var dtype = assertThrows(IllegalArgumentException.class,
                    () -> m.run(Map.of("x", Tensor.of(new double[6], 2, 3))));
            assertTrue(dtype.getMessage().contains("float32"), dtype.getMessage());
            var rank = assertThrows(IllegalArgumentException.class, () -> m.run(Map.of("x", Tensor.of(new float[6], 6))));
            assertTrue(rank.getMessage().contains("rank 2"), rank.getMessage());
            var size = assertThrows(IllegalArgumentException.class, () -> m.run(Map.of("x", Tensor.of(new float[6], 3, 2))));
            assertTrue(size.getMessage().contains("size 2 in dimension 0"), size.getMessage());
        }
    }

    private static GraphProto branch(String name, String op, String in) {
        return GraphProto.newBuilder().setName(name)
                .addNode(NodeProto.newBuilder().setOpType(op).addInput(in).addOutput(name + "_out"))
                .addOutput(ValueInfoProto.newBuilder().setName(name + "_out")).build();
    }

    @Test
    void ifRunsTheBranchTheConditionPicksReadingOuterNames() {
        GraphProto.Builder g = GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("If").addInput("c").addOutput("y")
                        .addAttribute(AttributeProto.newBuilder().setName("then_branch")
                                .setType(AttributeProto.AttributeType.GRAPH).setG(branch("then", "Neg", "x")))
                        .addAttribute(AttributeProto.newBuilder().setName("else_branch")
                                .setType(AttributeProto.AttributeType.GRAPH).setG(branch("else", "Abs", "x"))))
                .addInput(value("c", OnnxTensors.BOOL)).addInput(value("x", OnnxTensors.FLOAT, 3))
                .addOutput(ValueInfoProto.newBuilder().setName("y"));
        try (Scope scope = Scope.open(); OnnxModel m = OnnxModel.of(model(g, 16))) {
            Tensor x = Tensor.of(new float[] {-1, 2, -3}, 3);
            Tensor yes = m.run(Map.of("c", Tensor.of(new boolean[] {true}), "x", x)).get("y");
            Tensor no = m.run(Map.of("c", Tensor.of(new boolean[] {false}), "x", x)).get("y");
            assertArrayEquals(new float[] {1, -2, 3}, yes.toFloatArray());
            assertArrayEquals(new float[] {1, 2, 3}, no.toFloatArray());
        }
        // an unsupported op inside a branch fails at load
        GraphProto bad = g.build().toBuilder().setNode(0, g.getNode(0).toBuilder().setAttribute(0,
                g.getNode(0).getAttribute(0).toBuilder().setG(branch("then", "NoSuchOp", "x")))).build();
        assertThrows(UnsupportedOnnxOpException.class, () -> OnnxModel.of(model(bad.toBuilder(), 16)));
    }

    @Test
    void loopCarriesValuesAndStacksScanOutputs() {
        // body(i, cond, acc) -> (cond, acc + x, acc + x): 4 trips of acc += x
        GraphProto body = GraphProto.newBuilder().setName("body")
                .addNode(NodeProto.newBuilder().setOpType("Identity").addInput("cond_in").addOutput("cond_out"))
                .addNode(NodeProto.newBuilder().setOpType("Add").addInput("acc_in").addInput("x").addOutput("acc_out"))
                .addNode(NodeProto.newBuilder().setOpType("Identity").addInput("acc_out").addOutput("scan_out"))
                .addInput(ValueInfoProto.newBuilder().setName("i")).addInput(ValueInfoProto.newBuilder().setName("cond_in"))
                .addInput(ValueInfoProto.newBuilder().setName("acc_in"))
                .addOutput(ValueInfoProto.newBuilder().setName("cond_out"))
                .addOutput(ValueInfoProto.newBuilder().setName("acc_out"))
                .addOutput(ValueInfoProto.newBuilder().setName("scan_out")).build();
        GraphProto.Builder g = GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("Loop").addInput("m").addInput("").addInput("a0")
                        .addOutput("acc").addOutput("all")
                        .addAttribute(AttributeProto.newBuilder().setName("body")
                                .setType(AttributeProto.AttributeType.GRAPH).setG(body)))
                .addInput(value("m", OnnxTensors.INT64)).addInput(value("a0", OnnxTensors.FLOAT, 2))
                .addInput(value("x", OnnxTensors.FLOAT, 2))
                .addOutput(ValueInfoProto.newBuilder().setName("acc")).addOutput(ValueInfoProto.newBuilder().setName("all"));
        try (Scope scope = Scope.open(); OnnxModel m = OnnxModel.of(model(g, 16))) {
            Map<String, Tensor> out = m.run(Map.of("m", Tensor.scalar(4, DType.INT64), "a0", Tensor.of(new float[] {0, 1}, 2),
                    "x", Tensor.of(new float[] {1, 10}, 2)));
            assertArrayEquals(new float[] {4, 41}, out.get("acc").toFloatArray());
            assertArrayEquals(new long[] {4, 2}, out.get("all").dims());
            assertArrayEquals(new float[] {1, 11, 2, 21, 3, 31, 4, 41}, out.get("all").toFloatArray());
        }
    }

    /** A two-layer MLP, y = relu(x W1 + b1) W2, with random weights as initializers. */
    @Test
    void sessionRunsFromManyThreadsWithSharedWeights(@TempDir Path dir) throws Exception {
        Random rnd = new Random(17);
        int in = 7;
        int hidden = 5;
        int out = 3;
        float[] w1 = random(rnd, in * hidden);
        float[] b1 = random(rnd, hidden);
        float[] w2 = random(rnd, hidden * out);
        GraphProto.Builder g = GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("MatMul").addInput("x").addInput("W1").addOutput("h0"))
                .addNode(NodeProto.newBuilder().setOpType("Add").addInput("h0").addInput("b1").addOutput("h1"))
                .addNode(NodeProto.newBuilder().setOpType("Relu").addInput("h1").addOutput("h"))
                .addNode(NodeProto.newBuilder().setOpType("MatMul").addInput("h").addInput("W2").addOutput("y"))
                .addInitializer(init("W1", w1, in, hidden)).addInitializer(init("b1", b1, hidden))
                .addInitializer(init("W2", w2, hidden, out))
                .addInput(value("x", OnnxTensors.FLOAT, -1, in).toBuilder().setType(TypeProto.newBuilder()
                        .setTensorType(TypeProto.Tensor.newBuilder().setElemType(OnnxTensors.FLOAT))))
                .addOutput(ValueInfoProto.newBuilder().setName("y"));
        Files.write(dir.resolve("mlp.onnx"), model(g, 17).toByteArray());
        InferenceSession session = InferenceSession.builder(dir.resolve("mlp.onnx")).device(Device.CPU)
                .maxConcurrentRuns(4).build();
        int threads = 8;
        int perThread = 25;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            List<Future<Integer>> done = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                final long seed = t;
                done.add(pool.submit(() -> {
                    Random r = new Random(seed);
                    int checked = 0;
                    for (int i = 0; i < perThread; i++) {
                        int rows = 1 + r.nextInt(4);
                        float[] x = random(r, rows * in);
                        try (Scope s = Scope.open()) {
                            Tensor y = session.run(Map.of("x", Tensor.of(x, Device.CPU, rows, in))).get("y");
                            float[] got = y.toFloatArray();
                            double[] want = mlp(x, rows, w1, b1, w2, in, hidden, out);
                            for (int k = 0; k < want.length; k++) {
                                // float32 accumulation over at most 7 terms: 1e-5 relative
                                if (Math.abs(got[k] - want[k]) > 1e-5 * (1 + Math.abs(want[k]))) {
                                    throw new AssertionError("row-major element " + k + ": " + got[k] + " vs " + want[k]);
                                }
                            }
                            checked++;
                        }
                    }
                    return checked;
                }));
            }
            int total = 0;
            for (Future<Integer> f : done) {
                total += f.get();
            }
            assertEquals(threads * perThread, total);
        } finally {
            pool.shutdown();
            session.close();
        }
        try (Tensor x = Tensor.of(new float[in], 1, in)) {
            var closed = assertThrows(IllegalStateException.class, () -> session.run(Map.of("x", x)));
            assertTrue(closed.getMessage().contains("closed"), closed.getMessage());
        }
        session.close(); // idempotent
    }

    private static TensorProto init(String name, float[] v, long... dims) {
        TensorProto.Builder b = TensorProto.newBuilder().setName(name).setDataType(OnnxTensors.FLOAT)
                .setRawData(ByteString.copyFrom(floats(v)));
        for (long d : dims) {
            b.addDims(d);
        }
        return b.build();
    }

    private static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    private static double[] mlp(float[] x, int rows, float[] w1, float[] b1, float[] w2, int in, int hidden, int out) {
        double[] y = new double[rows * out];
        for (int r = 0; r < rows; r++) {
            double[] h = new double[hidden];
            for (int j = 0; j < hidden; j++) {
                double s = b1[j];
                for (int k = 0; k < in; k++) {
                    s += (double) x[r * in + k] * w1[k * hidden + j];
                }
                h[j] = Math.max(0, s);
            }
            for (int j = 0; j < out; j++) {
                double s = 0;
                for (int k = 0; k < hidden; k++) {
                    s += h[k] * w2[k * out + j];
                }
                y[r * out + j] = s;
            }
        }
        return y;
    }
}
