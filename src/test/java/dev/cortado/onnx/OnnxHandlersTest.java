package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Handler forms that no runnable ONNX node test reaches (old-opset semantics, attribute axes,
 * broadcast scales, integer division signs), checked against plain Java references.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class OnnxHandlersTest {

    private static AttributeProto intAttr(String name, long v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(v).build();
    }

    private static AttributeProto intsAttr(String name, long... v) {
        AttributeProto.Builder b = AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INTS);
        for (long x : v) {
            b.addInts(x);
        }
        return b.build();
    }

    /** Runs a one-node graph with inputs x0, x1, ... and output y. */
    private static Tensor runNode(int opset, String opType, Tensor[] inputs, AttributeProto... attrs) {
        NodeProto.Builder node = NodeProto.newBuilder().setOpType(opType).addOutput("y");
        GraphProto.Builder graph = GraphProto.newBuilder();
        Map<String, Tensor> feeds = new LinkedHashMap<>();
        for (int i = 0; i < inputs.length; i++) {
            if (inputs[i] == null) {
                node.addInput("");
                continue;
            }
            node.addInput("x" + i);
            graph.addInput(ValueInfoProto.newBuilder().setName("x" + i));
            feeds.put("x" + i, inputs[i]);
        }
        for (AttributeProto a : attrs) {
            node.addAttribute(a);
        }
        graph.addNode(node).addOutput(ValueInfoProto.newBuilder().setName("y"));
        ModelProto model = ModelProto.newBuilder()
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(opset))
                .setGraph(graph).build();
        return OnnxTestCases.runModel(model, feeds).get("y");
    }

    private static void assertClose(double[] want, float[] got, double tol) {
        assertEquals(want.length, got.length);
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], tol, "element " + i);
        }
    }

    @Test
    void softmaxBeforeOpset13CoercesTo2d() {
        float[] x = new float[24];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) Math.sin(i);
        }
        try (Scope s = Scope.open()) {
            for (boolean log : new boolean[] {false, true}) {
                // opset 11, axis 1 (default) on [2, 3, 4]: rows of 12 elements
                Tensor y = runNode(11, log ? "LogSoftmax" : "Softmax", new Tensor[] {Tensor.of(x, 2, 3, 4)});
                assertArrayEquals(new long[] {2, 3, 4}, y.dims());
                double[] want = new double[24];
                for (int r = 0; r < 2; r++) {
                    double sum = 0;
                    for (int j = 0; j < 12; j++) {
                        sum += Math.exp(x[r * 12 + j]);
                    }
                    for (int j = 0; j < 12; j++) {
                        double p = Math.exp(x[r * 12 + j]) / sum;
                        want[r * 12 + j] = log ? Math.log(p) : p;
                    }
                }
                assertClose(want, y.toFloatArray(), 1e-6);
            }
        }
    }

    @Test
    void reduceMeanWithAttributeAxes() {
        try (Scope s = Scope.open()) {
            float[] x = {1, 2, 3, 4, 5, 6};
            Tensor y = runNode(13, "ReduceMean", new Tensor[] {Tensor.of(x, 2, 3)}, intsAttr("axes", -1),
                    intAttr("keepdims", 0));
            assertArrayEquals(new long[] {2}, y.dims());
            assertArrayEquals(new float[] {2, 5}, y.toFloatArray());
            Tensor all = runNode(11, "ReduceSum", new Tensor[] {Tensor.of(x, 2, 3)});
            assertArrayEquals(new long[] {1, 1}, all.dims());
            assertArrayEquals(new float[] {21}, all.toFloatArray());
        }
    }

    @Test
    void reduceSumKeepsIntegerType() {
        try (Scope s = Scope.open()) {
            Tensor y = runNode(13, "ReduceSum", new Tensor[] {Tensor.of(new int[] {1, 2, 3, 4}, 2, 2),
                Tensor.of(new long[] {1}, 1)});
            assertEquals(DType.INT32, y.dtype());
            assertArrayEquals(new int[] {3, 7}, y.toIntArray());
        }
    }

    @Test
    void integerDivTruncatesTowardZero() {
        try (Scope s = Scope.open()) {
            int[] a = {7, -7, 7, -7, Integer.MAX_VALUE, 16777217, 0};
            int[] b = {2, 2, -2, -2, 3, 3, 5};
            Tensor y = runNode(14, "Div", new Tensor[] {Tensor.of(a, a.length), Tensor.of(b, b.length)});
            assertEquals(DType.INT32, y.dtype());
            int[] want = new int[a.length];
            for (int i = 0; i < a.length; i++) {
                want[i] = a[i] / b[i];
            }
            assertArrayEquals(want, y.toIntArray());
            Tensor u = runNode(14, "Div", new Tensor[] {Tensor.of(new byte[] {(byte) 250, 9}, DType.UINT8, 2),
                Tensor.of(new byte[] {7, 2}, DType.UINT8, 2)});
            assertEquals(DType.UINT8, u.dtype());
            assertArrayEquals(new long[] {35, 4}, u.toLongArray());
        }
    }

    @Test
    void layerNormWithBroadcastScaleAndStats() {
        try (Scope s = Scope.open()) {
            float[] x = {1, 2, 3, 4, 5, 7};
            // axis 0 on [2, 3]: normalize all 6; scale [3] broadcasts over the normalized [2, 3]
            NodeProto node = NodeProto.newBuilder().setOpType("LayerNormalization").addInput("x").addInput("scale")
                    .addOutput("y").addOutput("mean").addOutput("inv").addAttribute(intAttr("axis", 0)).build();
            GraphProto graph = GraphProto.newBuilder().addNode(node)
                    .addInput(ValueInfoProto.newBuilder().setName("x")).addInput(ValueInfoProto.newBuilder().setName("scale"))
                    .addOutput(ValueInfoProto.newBuilder().setName("y")).addOutput(ValueInfoProto.newBuilder().setName("mean"))
                    .addOutput(ValueInfoProto.newBuilder().setName("inv")).build();
            ModelProto model = ModelProto.newBuilder().addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(17))
                    .setGraph(graph).build();
            Map<String, Tensor> feeds = new LinkedHashMap<>();
            feeds.put("x", Tensor.of(x, 2, 3));
            feeds.put("scale", Tensor.of(new float[] {1, 2, 3}, 3));
            Map<String, Tensor> out = OnnxTestCases.runModel(model, feeds);
            double mean = 22.0 / 6;
            double var = 0;
            for (float v : x) {
                var += (v - mean) * (v - mean) / 6;
            }
            double inv = 1 / Math.sqrt(var + 1e-5);
            double[] want = new double[6];
            for (int i = 0; i < 6; i++) {
                want[i] = (x[i] - mean) * inv * (i % 3 + 1);
            }
            assertClose(want, out.get("y").toFloatArray(), 1e-5);
            assertArrayEquals(new long[] {1, 1}, out.get("mean").dims());
            assertClose(new double[] {mean}, out.get("mean").toFloatArray(), 1e-6);
            assertClose(new double[] {inv}, out.get("inv").toFloatArray(), 1e-6);
        }
    }

    @Test
    void reshapeCopiesZerosUnlessAllowzero() {
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.zeros(DType.FLOAT32, 2, 3, 4);
            Tensor y = runNode(14, "Reshape", new Tensor[] {x, Tensor.of(new long[] {0, -1}, 2)});
            assertArrayEquals(new long[] {2, 12}, y.dims());
            assertThrows(IllegalArgumentException.class,
                    () -> runNode(14, "Reshape", new Tensor[] {x, Tensor.of(new long[] {0, -1}, 2)},
                            intAttr("allowzero", 1)));
        }
    }

    @Test
    void geluRejectsUnknownApproximation() {
        try (Scope s = Scope.open()) {
            AttributeProto bad = AttributeProto.newBuilder().setName("approximate")
                    .setType(AttributeProto.AttributeType.STRING)
                    .setS(com.google.protobuf.ByteString.copyFromUtf8("sigmoid")).build();
            assertThrows(IllegalArgumentException.class,
                    () -> runNode(20, "Gelu", new Tensor[] {Tensor.of(new float[] {1}, 1)}, bad));
        }
    }
}
