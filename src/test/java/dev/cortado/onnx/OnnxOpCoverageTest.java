package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.cortado.onnx.OnnxTestCases.Case;
import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

/**
 * Guards the conformance run against passing vacuously: for every target op of the foundation
 * at least one ONNX node test must be selected and must pass, and the runner's selection must
 * agree with an independent reading of {@code MANIFEST.tsv}. Also checks the one handler no
 * runnable ONNX test exercises (Constant) on a small hand-built graph.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class OnnxOpCoverageTest {

    /**
     * The ops this foundation implements and that must each be covered by an ONNX test. An op
     * counts only when its handler calls the engine's own op for it; handlers composed from
     * other ops ({@link OnnxOps#COMPOSED_OPS}) are run by the conformance tests but are not
     * coverage of an engine op.
     */
    static final List<String> TARGET_OPS = List.of("Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Gelu",
            "Softmax", "LogSoftmax", "LayerNormalization", "RMSNormalization", "ReduceSum", "ReduceMean", "MatMul",
            "Gemm", "Gather", "Concat", "Reshape", "Transpose", "MaxPool", "AveragePool", "GlobalAveragePool",
            "BatchNormalization", "Conv", "ConvTranspose", "Attention");

    @Test
    void composedHandlersAreNotCountedAsCoverage() {
        for (String op : OnnxOps.COMPOSED_OPS) {
            assertTrue(OnnxOps.supportedOps().contains(op), op + " is listed as composed but has no handler");
            assertFalse(TARGET_OPS.contains(op), op + "'s handler is composed from other ops: it does not cover an"
                    + " engine op, so it cannot be a target op");
        }
    }

    @Test
    void everyTargetOpHasAHandler() {
        for (String op : TARGET_OPS) {
            assertTrue(OnnxOps.supportedOps().contains(op), op + " has no handler");
        }
        assertTrue(OnnxOps.supportedOps().contains("Constant"));
    }

    @Test
    void everyTargetOpIsCoveredByAPassingOnnxTest() throws IOException {
        Path dir = OnnxTestCases.nodeDir();
        OnnxNodeTest.requireDataUnderCi(dir != null, "ONNX node tests (onnx-node/MANIFEST.tsv)");
        assumeTrue(dir != null, "ONNX conformance data not found at " + OnnxTestCases.conformanceDir());
        List<Case> cases = OnnxTestCases.discover(dir, OnnxNodeTest.expectedFailures());
        List<String> uncovered = new ArrayList<>();
        for (String op : TARGET_OPS) {
            List<Case> candidates = cases.stream().filter(c -> c.ops().contains(op) && c.expectedToPass()).toList();
            if (candidates.isEmpty()) {
                uncovered.add(op + " (no runnable test)");
                continue;
            }
            // Run a few per op here (independently of the @TestFactory): they must pass.
            int ran = 0;
            for (Case c : candidates.subList(0, Math.min(3, candidates.size()))) {
                assertNull(OnnxTestCases.run(c), c.name());
                ran++;
            }
            assertTrue(ran > 0, op);
        }
        assertTrue(uncovered.isEmpty(), "target ops without a passing ONNX test: " + uncovered);
    }

    /** The selection (proto graph walk) equals an independent reading of MANIFEST.tsv's op lists. */
    @Test
    void selectionMatchesManifest() throws IOException {
        Path dir = OnnxTestCases.nodeDir();
        OnnxNodeTest.requireDataUnderCi(dir != null, "ONNX node tests (onnx-node/MANIFEST.tsv)");
        assumeTrue(dir != null, "ONNX conformance data not found at " + OnnxTestCases.conformanceDir());
        Set<String> supported = OnnxOps.supportedOps();
        Set<String> fromManifest = new TreeSet<>();
        Set<String> singleOpTargets = new HashSet<>();
        List<String> lines = Files.readAllLines(dir.resolve("MANIFEST.tsv"));
        assertTrue(lines.size() > 1, "empty MANIFEST.tsv");
        for (String line : lines.subList(1, lines.size())) {
            String[] f = line.split("\t");
            Set<String> ops = new HashSet<>(Arrays.asList(f[2].trim().split("\\s+")));
            if (supported.containsAll(ops)) {
                fromManifest.add(f[0]);
                if (ops.size() == 1) {
                    singleOpTargets.addAll(ops);
                }
            }
        }
        Set<String> selected = new TreeSet<>();
        for (Case c : OnnxTestCases.discover(dir, OnnxNodeTest.expectedFailures())) {
            if (c.opsSupported()) {
                selected.add(c.name());
            }
        }
        assertEquals(fromManifest, selected);
        for (String op : TARGET_OPS) {
            assertTrue(singleOpTargets.contains(op), "MANIFEST has no selected single-op test of " + op);
        }
        assertTrue(selected.size() >= TARGET_OPS.size(), "only " + selected.size() + " tests selected");
    }

    @Test
    void missingConformanceFolderIsDetected() {
        assertNull(OnnxTestCases.nodeDir(Path.of("/nonexistent/cortado/conformance")));
    }

    // ------------------------------------------------------------------ Constant (no ONNX test runs it)
    private static ValueInfoProto value(String name) {
        return ValueInfoProto.newBuilder().setName(name).build();
    }

    private static AttributeProto attr(String name, AttributeProto.AttributeType type) {
        return AttributeProto.newBuilder().setName(name).setType(type).build();
    }

    @Test
    void constantValuesFeedOtherNodes() {
        TensorProto c = TensorProto.newBuilder().setDataType(OnnxTensors.FLOAT).addDims(3)
                .addFloatData(10).addFloatData(20).addFloatData(30).build();
        GraphProto graph = GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("Constant").addOutput("c")
                        .addAttribute(attr("value", AttributeProto.AttributeType.TENSOR).toBuilder().setT(c)))
                .addNode(NodeProto.newBuilder().setOpType("Constant").addOutput("shape")
                        .addAttribute(attr("value_ints", AttributeProto.AttributeType.INTS).toBuilder()
                                .addInts(3).addInts(-1)))
                .addNode(NodeProto.newBuilder().setOpType("Constant").addOutput("half")
                        .addAttribute(attr("value_float", AttributeProto.AttributeType.FLOAT).toBuilder().setF(0.5f)))
                .addNode(NodeProto.newBuilder().setOpType("Add").addInput("x").addInput("c").addOutput("sum"))
                .addNode(NodeProto.newBuilder().setOpType("Mul").addInput("sum").addInput("half").addOutput("scaled"))
                .addNode(NodeProto.newBuilder().setOpType("Reshape").addInput("scaled").addInput("shape").addOutput("y"))
                .addInput(value("x"))
                .addOutput(value("y"))
                .build();
        ModelProto model = ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(18))
                .setGraph(graph).build();
        try (Scope scope = Scope.open()) {
            Map<String, Tensor> feeds = new LinkedHashMap<>();
            feeds.put("x", Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3));
            Tensor y = OnnxTestCases.runModel(model, feeds).get("y");
            assertArrayEquals(new long[] {3, 2}, y.dims());
            assertArrayEquals(new float[] {5.5f, 11, 16.5f, 7, 12.5f, 18}, y.toFloatArray());
        }
    }

    @Test
    void unsupportedOpsFailAtLoadNamingOpDomainOpsetAndNode() {
        GraphProto graph = GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("Relu").addInput("x").addOutput("r"))
                .addNode(NodeProto.newBuilder().setOpType("NoSuchOp").setName("mystery").addInput("r").addOutput("y"))
                .addInput(value("x")).addOutput(value("y")).build();
        ModelProto model = ModelProto.newBuilder()
                .addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(18)).setGraph(graph).build();
        assertEquals(Set.of("NoSuchOp"), OnnxTestCases.unsupportedOps(model));
        UnsupportedOnnxOpException e = org.junit.jupiter.api.Assertions.assertThrows(UnsupportedOnnxOpException.class,
                () -> OnnxModel.of(model));
        assertEquals("NoSuchOp", e.opType());
        assertEquals("ai.onnx", e.domain());
        assertEquals(18, e.opset());
        assertEquals("mystery", e.nodeName());
        assertTrue(e.getMessage().contains("NoSuchOp") && e.getMessage().contains("mystery")
                && e.getMessage().contains("18"), e.getMessage());

        ModelProto otherDomain = model.toBuilder().setGraph(graph.toBuilder().setNode(1,
                graph.getNode(1).toBuilder().setOpType("FusedMatMul").setDomain("com.microsoft"))).build();
        UnsupportedOnnxOpException d = org.junit.jupiter.api.Assertions.assertThrows(UnsupportedOnnxOpException.class,
                () -> OnnxModel.of(otherDomain));
        assertEquals("com.microsoft", d.domain());
        assertTrue(d.getMessage().contains("com.microsoft.FusedMatMul"), d.getMessage());

        ModelProto tooNew = model.toBuilder().setOpsetImport(0, OperatorSetIdProto.newBuilder().setVersion(99)).build();
        UnsupportedOnnxOpException o = org.junit.jupiter.api.Assertions.assertThrows(UnsupportedOnnxOpException.class,
                () -> OnnxModel.of(tooNew));
        assertEquals(99, o.opset());
        assertTrue(o.getMessage().contains("opset 99"), o.getMessage());

        // an op whose handler starts at a later version than the model imports
        ModelProto oldGelu = ModelProto.newBuilder().addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(18))
                .setGraph(GraphProto.newBuilder().addNode(NodeProto.newBuilder().setOpType("Gelu").addInput("x")
                        .addOutput("y")).addInput(value("x")).addOutput(value("y"))).build();
        UnsupportedOnnxOpException g = org.junit.jupiter.api.Assertions.assertThrows(UnsupportedOnnxOpException.class,
                () -> OnnxModel.of(oldGelu));
        assertTrue(g.getMessage().contains("from opset 20"), g.getMessage());
    }
}
