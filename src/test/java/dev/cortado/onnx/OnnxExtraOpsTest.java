package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.DoubleBinaryOperator;
import java.util.function.DoubleUnaryOperator;
import org.junit.jupiter.api.Test;

/**
 * The handlers that no test of the conformance set exercises (LeakyRelu, Elu, Selu, HardSigmoid,
 * Softsign, Softplus, Abs, Sin, Cos; Greater, GreaterOrEqual, LessOrEqual, Or, Xor; ReduceProd,
 * ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp; ArgMax/ArgMin with select_last_index; Tile;
 * Mean; Scan), each on a one-node model with fresh random inputs against a float64 Java reference.
 * float32 results: 1e-5 relative plus 1e-6 absolute.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class OnnxExtraOpsTest {

    private static final Random RND = new Random(29);

    private static AttributeProto f(String name, double v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.FLOAT).setF((float) v).build();
    }

    private static AttributeProto i(String name, long v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(v).build();
    }

    private static Map<String, Tensor> run(int opset, String op, List<Tensor> inputs, int outputs, AttributeProto... attrs) {
        NodeProto.Builder node = NodeProto.newBuilder().setOpType(op);
        GraphProto.Builder g = GraphProto.newBuilder();
        Map<String, Tensor> feeds = new LinkedHashMap<>();
        for (int k = 0; k < inputs.size(); k++) {
            node.addInput("x" + k);
            g.addInput(ValueInfoProto.newBuilder().setName("x" + k));
            feeds.put("x" + k, inputs.get(k));
        }
        for (int k = 0; k < outputs; k++) {
            node.addOutput("y" + k);
            g.addOutput(ValueInfoProto.newBuilder().setName("y" + k));
        }
        for (AttributeProto a : attrs) {
            node.addAttribute(a);
        }
        ModelProto m = ModelProto.newBuilder().addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(opset))
                .setGraph(g.addNode(node)).build();
        return OnnxTestCases.runModel(m, feeds);
    }

    private static float[] random(int n) {
        float[] v = new float[n];
        for (int k = 0; k < n; k++) {
            v[k] = (float) (RND.nextGaussian() * 2);
        }
        return v;
    }

    private static void close(float[] want, float[] got, String what) {
        assertEquals(want.length, got.length, what);
        for (int k = 0; k < want.length; k++) {
            assertTrue(Math.abs(got[k] - want[k]) <= 1e-6 + 1e-5 * Math.abs(want[k]),
                    what + " element " + k + ": " + got[k] + " vs " + want[k]);
        }
    }

    private static void unary(String op, DoubleUnaryOperator ref, AttributeProto... attrs) {
        float[] x = random(3 * 7);
        float[] want = new float[x.length];
        for (int k = 0; k < x.length; k++) {
            want[k] = (float) ref.applyAsDouble(x[k]);
        }
        try (Scope s = Scope.open()) {
            close(want, run(18, op, List.of(Tensor.of(x, 3, 7)), 1, attrs).get("y0").toFloatArray(), op);
        }
    }

    @Test
    void activations() {
        unary("LeakyRelu", v -> v >= 0 ? v : 0.01 * v);
        unary("LeakyRelu", v -> v >= 0 ? v : 0.3 * v, f("alpha", 0.3));
        unary("Elu", v -> v > 0 ? v : 0.7 * (Math.exp(v) - 1), f("alpha", 0.7));
        double a = 1.67326319217681884765625;
        double gamma = 1.05070102214813232421875;
        unary("Selu", v -> gamma * (v > 0 ? v : a * (Math.exp(v) - 1)));
        unary("HardSigmoid", v -> Math.max(0, Math.min(1, 0.2 * v + 0.5)));
        unary("HardSigmoid", v -> Math.max(0, Math.min(1, 0.3 * v + 0.4)), f("alpha", 0.3), f("beta", 0.4));
        unary("Softsign", v -> v / (1 + Math.abs(v)));
        unary("Softplus", v -> Math.log1p(Math.exp(v)));
        unary("Abs", Math::abs);
        unary("Sin", Math::sin);
        unary("Cos", Math::cos);
    }

    private static void compare(String op, DoubleBinaryOperator ref) {
        float[] a = random(4 * 5);
        float[] b = random(5);
        b[1] = a[6]; // an equal pair, where the strict and non-strict comparisons differ
        try (Scope s = Scope.open()) {
            boolean[] got = run(16, op, List.of(Tensor.of(a, 4, 5), Tensor.of(b, 5)), 1).get("y0").toBooleanArray();
            for (int k = 0; k < a.length; k++) {
                assertEquals(ref.applyAsDouble(a[k], b[k % 5]) != 0, got[k], op + " element " + k);
            }
        }
    }

    @Test
    void comparisonsAndLogic() {
        compare("Greater", (x, y) -> x > y ? 1 : 0);
        compare("GreaterOrEqual", (x, y) -> x >= y ? 1 : 0);
        compare("LessOrEqual", (x, y) -> x <= y ? 1 : 0);
        boolean[] p = {true, true, false, false};
        boolean[] q = {true, false, true, false};
        try (Scope s = Scope.open()) {
            List<Tensor> in = List.of(Tensor.of(p, 4), Tensor.of(q, 4));
            assertArrayEquals(new boolean[] {true, true, true, false}, run(16, "Or", in, 1).get("y0").toBooleanArray());
            assertArrayEquals(new boolean[] {false, true, true, false}, run(16, "Xor", in, 1).get("y0").toBooleanArray());
        }
    }

    @Test
    void reductionsOverAnAxesInput() {
        float[] x = random(3 * 4 * 2);
        for (int k = 0; k < x.length; k++) {
            x[k] = Math.abs(x[k]) * 0.5f + 0.25f; // positive: logs are defined
        }
        String[] ops = {"ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"};
        for (String op : ops) {
            float[] want = new float[3 * 2];
            for (int a = 0; a < 3; a++) {
                for (int c = 0; c < 2; c++) {
                    double prod = 1, l1 = 0, l2 = 0, sum = 0, sumExp = 0;
                    for (int b = 0; b < 4; b++) {
                        double v = x[(a * 4 + b) * 2 + c];
                        prod *= v;
                        l1 += Math.abs(v);
                        l2 += v * v;
                        sum += v;
                        sumExp += Math.exp(v);
                    }
                    want[a * 2 + c] = (float) switch (op) {
                        case "ReduceProd" -> prod;
                        case "ReduceL1" -> l1;
                        case "ReduceL2" -> Math.sqrt(l2);
                        case "ReduceLogSum" -> Math.log(sum);
                        default -> Math.log(sumExp);
                    };
                }
            }
            try (Scope s = Scope.open()) {
                Tensor y = run(18, op, List.of(Tensor.of(x, 3, 4, 2), Tensor.of(new long[] {1}, 1)), 1,
                        i("keepdims", 0)).get("y0");
                assertArrayEquals(new long[] {3, 2}, y.dims(), op);
                close(want, y.toFloatArray(), op);
            }
        }
    }

    @Test
    void argMaxAndArgMinPickTheFirstOrTheLastTie() {
        float[] x = {1, 5, 5, 0, /* row 2 */ -2, -2, 3, -7};
        try (Scope s = Scope.open()) {
            Tensor t = Tensor.of(x, 2, 4);
            assertArrayEquals(new long[] {1, 2}, run(13, "ArgMax", List.of(t), 1, i("axis", 1), i("keepdims", 0))
                    .get("y0").toLongArray());
            assertArrayEquals(new long[] {2, 2}, run(13, "ArgMax", List.of(t), 1, i("axis", 1), i("keepdims", 0),
                    i("select_last_index", 1)).get("y0").toLongArray());
            Tensor min = run(13, "ArgMin", List.of(Tensor.of(new float[] {-2, -2, 3, -2}, 4)), 1, i("axis", 0),
                    i("select_last_index", 1)).get("y0");
            assertArrayEquals(new long[] {1}, min.dims());
            assertArrayEquals(new long[] {3}, min.toLongArray());
        }
    }

    @Test
    void tileRepeatsEachDimension() {
        try (Scope s = Scope.open()) {
            Tensor y = run(13, "Tile", List.of(Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3),
                    Tensor.of(new long[] {2, 2}, 2)), 1).get("y0");
            assertArrayEquals(new long[] {4, 6}, y.dims());
            assertArrayEquals(new float[] {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6, 1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6},
                    y.toFloatArray());
            // and Mean, the variadic op no conformance test uses: broadcasting, divided by the count
            Tensor mean = run(13, "Mean", List.of(Tensor.of(new float[] {1, 2, 3, 4}, 2, 2), Tensor.of(new float[] {3, 6}, 2),
                    Tensor.of(new float[] {2}, 1)), 1).get("y0");
            assertArrayEquals(new float[] {2, 10 / 3f, 8 / 3f, 4}, mean.toFloatArray());
        }
    }

    /** Scan as a running sum: state s, slice x_t -> (s + x_t, s + x_t), forwards and reversed. */
    @Test
    void scanCarriesAStateAlongTheSequence() {
        GraphProto body = GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("Add").addInput("s_in").addInput("x_t").addOutput("s_out"))
                .addNode(NodeProto.newBuilder().setOpType("Identity").addInput("s_out").addOutput("y_t"))
                .addInput(ValueInfoProto.newBuilder().setName("s_in")).addInput(ValueInfoProto.newBuilder().setName("x_t"))
                .addOutput(ValueInfoProto.newBuilder().setName("s_out")).addOutput(ValueInfoProto.newBuilder().setName("y_t"))
                .build();
        AttributeProto bodyAttr = AttributeProto.newBuilder().setName("body").setType(AttributeProto.AttributeType.GRAPH)
                .setG(body).build();
        try (Scope s = Scope.open()) {
            Tensor init = Tensor.of(new float[] {0, 100}, 2);
            Tensor seq = Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 3, 2); // 3 steps of [2]
            Map<String, Tensor> fwd = run(16, "Scan", List.of(init, seq), 2, bodyAttr, i("num_scan_inputs", 1));
            assertArrayEquals(new float[] {9, 112}, fwd.get("y0").toFloatArray());
            assertArrayEquals(new float[] {1, 102, 4, 106, 9, 112}, fwd.get("y1").toFloatArray());
            AttributeProto reversed = AttributeProto.newBuilder().setName("scan_input_directions")
                    .setType(AttributeProto.AttributeType.INTS).addInts(1).build();
            Map<String, Tensor> back = run(16, "Scan", List.of(init, seq), 2, bodyAttr, i("num_scan_inputs", 1), reversed);
            assertArrayEquals(new float[] {5, 106, 8, 110, 9, 112}, back.get("y1").toFloatArray());
            assertEquals(DType.FLOAT32, back.get("y1").dtype());
        }
    }
}
