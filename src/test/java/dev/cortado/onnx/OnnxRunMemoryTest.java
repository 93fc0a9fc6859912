package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.MemoryPattern;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * A run frees each value after its last reader: the memory a run needs at once (the arena of its
 * recorded {@link MemoryPattern}) follows the live values, not the number of nodes, and values
 * that are aliased (Identity), read by a subgraph or returned stay alive as long as they must.
 * Results are checked against float64 references on random inputs.
 */
@SuppressWarnings("try")
class OnnxRunMemoryTest {

    private static final int ROWS = 256;
    private static final int COLS = 1024; // one value: 1 MiB of float32

    private static NodeProto node(String op, String out, String... in) {
        NodeProto.Builder b = NodeProto.newBuilder().setOpType(op).addOutput(out);
        for (String i : in) {
            b.addInput(i);
        }
        return b.build();
    }

    private static ModelProto model(GraphProto.Builder graph) {
        return ModelProto.newBuilder()
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(17))
                .setGraph(graph).build();
    }

    private static ValueInfoProto value(String name) {
        return ValueInfoProto.newBuilder().setName(name).build();
    }

    private static float[] random(long seed, int n) {
        Random r = new Random(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (r.nextGaussian() * 0.5 + 0.25);
        }
        return x;
    }

    @Test
    void aChainOfNodesNeedsMemoryForTheLiveValuesOnly() {
        // y_i = Tanh(y_{i-1}) + y_{i-1}: 24 nodes, each output 1 MiB; at most two values are live
        int steps = 12;
        GraphProto.Builder g = GraphProto.newBuilder().addInput(value("y0"));
        for (int i = 1; i <= steps; i++) {
            g.addNode(node("Tanh", "t" + i, "y" + (i - 1)));
            g.addNode(node("Add", "y" + i, "t" + i, "y" + (i - 1)));
        }
        g.addOutput(value("y" + steps));
        float[] x = random(7, ROWS * COLS);
        double[] want = new double[x.length];
        for (int j = 0; j < x.length; j++) {
            double v = x[j];
            for (int i = 0; i < steps; i++) {
                v = Math.tanh(v) + v;
            }
            want[j] = v;
        }
        long value = 4L * ROWS * COLS;
        try (OnnxModel m = OnnxModel.of(model(g), null, Device.CPU); Scope s = Scope.open()) {
            Tensor in = Tensor.of(x, ROWS, COLS);
            MemoryPattern pattern;
            try (MemoryPattern.Recording r = MemoryPattern.record(Device.CPU)) {
                try (Scope run = Scope.open()) {
                    float[] got = m.run(Map.of("y0", in)).get("y" + steps).toFloatArray();
                    for (int j = 0; j < x.length; j += 997) {
                        assertEquals(want[j], got[j], 1e-5 * Math.max(1, Math.abs(want[j])), "element " + j);
                    }
                }
                pattern = r.finish();
            }
            // 24 values of 1 MiB were made; a run that held them all would need 24 MiB at once
            assertTrue(pattern.totalBytes() >= 2L * steps * value, pattern.toString());
            assertTrue(pattern.arenaBytes() <= 4 * value,
                    "a 24-node chain of 1 MiB values needed " + pattern.arenaBytes() + " bytes at once: " + pattern);
        }
    }

    @Test
    void anAliasedValueLivesUntilItsLastNameDies() {
        // a = Neg(x); b = Identity(a) (the same tensor); c = Exp(a) is a's last reader; y = b * c
        GraphProto.Builder g = GraphProto.newBuilder().addInput(value("x"))
                .addNode(node("Neg", "a", "x"))
                .addNode(node("Identity", "b", "a"))
                .addNode(node("Exp", "c", "a"))
                .addNode(node("Sin", "d", "c"))          // c's value is read again after a dies
                .addNode(node("Mul", "e", "b", "c"))
                .addNode(node("Add", "y", "e", "d"))
                .addOutput(value("y")).addOutput(value("b"));
        float[] x = random(11, 3 * 37);
        try (OnnxModel m = OnnxModel.of(model(g), null, Device.CPU); Scope s = Scope.open()) {
            Map<String, Tensor> out = m.run(Map.of("x", Tensor.of(x, 3, 37)));
            float[] y = out.get("y").toFloatArray();
            float[] b = out.get("b").toFloatArray();
            for (int j = 0; j < x.length; j++) {
                double a = -(double) x[j];
                assertEquals(a * Math.exp(a) + Math.sin(Math.exp(a)), y[j], 1e-5, "y element " + j);
                assertEquals(a, b[j], 0, "b element " + j);
            }
        }
    }

    @Test
    void aValueReadInsideASubgraphLivesUntilThatNode() {
        // a = Neg(x); c = Exp(a) is a's last reader in the main graph, but the If after it reads a
        // in both branches
        GraphProto thenBranch = GraphProto.newBuilder().setName("then")
                .addNode(node("Add", "t", "a", "a")).addOutput(value("t")).build();
        GraphProto elseBranch = GraphProto.newBuilder().setName("else")
                .addNode(node("Mul", "e", "a", "c")).addOutput(value("e")).build();
        NodeProto ifNode = NodeProto.newBuilder().setOpType("If").addInput("cond").addOutput("z")
                .addAttribute(AttributeProto.newBuilder().setName("then_branch")
                        .setType(AttributeProto.AttributeType.GRAPH).setG(thenBranch))
                .addAttribute(AttributeProto.newBuilder().setName("else_branch")
                        .setType(AttributeProto.AttributeType.GRAPH).setG(elseBranch))
                .build();
        GraphProto.Builder g = GraphProto.newBuilder().addInput(value("x")).addInput(value("cond"))
                .addNode(node("Neg", "a", "x"))
                .addNode(node("Exp", "c", "a"))
                .addNode(ifNode)
                .addNode(node("Add", "y", "z", "c"))
                .addOutput(value("y"));
        float[] x = random(13, 5 * 9);
        try (OnnxModel m = OnnxModel.of(model(g), null, Device.CPU); Scope s = Scope.open()) {
            for (boolean cond : new boolean[] {true, false}) {
                float[] y = m.run(Map.of("x", Tensor.of(x, 5, 9), "cond", Tensor.of(new boolean[] {cond})))
                        .get("y").toFloatArray();
                for (int j = 0; j < x.length; j++) {
                    double a = -(double) x[j];
                    double c = Math.exp(a);
                    assertEquals((cond ? 2 * a : a * c) + c, y[j], 1e-5, "cond " + cond + ", element " + j);
                }
            }
        }
    }
}
