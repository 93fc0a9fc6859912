package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.optim.Adagrad;
import dev.cortado.optim.OptimKernels;
import dev.cortado.optim.Optimizer;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The ONNX training-domain optimizer node tests ({@code ../shared/conformance/onnx-node-training}:
 * Adagrad, Adam, Momentum, Nesterov; ai.onnx.preview.training opset 1) through the high-level
 * optimizer classes, compared with ONNX's expected outputs by ONNX's rule (rtol 1e-3, atol 1e-7).
 *
 * <p>The tests themselves run through the importer in {@link OnnxNodeTest} (the handlers of
 * {@code OnnxTrainingOps} call {@link OptimKernels} with the ONNX attributes mapped onto the
 * general coefficients, {@code SgdCoef.onnx}, {@code AdamCoef.onnx}, {@code AdagradCoef.onnx};
 * docs/optim.md). Adagrad and Momentum are also PyTorch-style rules in disguise, so each of those
 * tests gets a dynamic test here through the high-level optimizer ({@link Adagrad}, {@link Sgd}) with its state loaded from the
 * node's inputs ({@code step = T}); ONNX Adam puts epsilon outside the bias correction and uses
 * T (not T + 1) in it, so it has no {@code Adam} twin. Skipped when the folder is absent.
 */
class OnnxTrainingTest {

    static Path trainingDir() {
        Path base = OnnxTestCases.conformanceDir();
        for (Path p : new Path[] {base.resolve("onnx-node-training"), base}) {
            if (Files.isDirectory(p) && Files.isDirectory(p.resolve("test_adam"))) {
                return p;
            }
        }
        return null;
    }

    @TestFactory
    Stream<DynamicTest> onnxOptimizerNodes() throws IOException {
        Path dir = trainingDir();
        OnnxNodeTest.requireDataUnderCi(dir != null, "ONNX training node tests (onnx-node-training)");
        assumeTrue(dir != null, () -> "no onnx-node-training folder under " + OnnxTestCases.conformanceDir());
        List<Path> cases;
        try (Stream<Path> s = Files.list(dir)) {
            cases = s.filter(p -> p.getFileName().toString().startsWith("test_") && Files.isRegularFile(p.resolve("model.onnx")))
                    .sorted().toList();
        }
        assertEquals(7, cases.size(), "onnx-node-training holds 7 tests");
        List<DynamicTest> tests = new ArrayList<>();
        for (Path c : cases) {
            String name = c.getFileName().toString();
            // the kernel path (OnnxTrainingOps through the importer) runs in OnnxNodeTest
            if (!name.startsWith("test_adam")) {
                tests.add(DynamicTest.dynamicTest(name + " (optimizer class)", () -> run(c)));
            }
        }
        return tests.stream();
    }

    private static double attr(NodeProto node, String name, double dflt) {
        for (AttributeProto a : node.getAttributeList()) {
            if (a.getName().equals(name)) {
                return a.getType() == AttributeProto.AttributeType.INT ? a.getI() : a.getF();
            }
        }
        return dflt;
    }

    private static String stringAttr(NodeProto node, String name) {
        for (AttributeProto a : node.getAttributeList()) {
            if (a.getName().equals(name)) {
                return a.getS().toStringUtf8();
            }
        }
        throw new IllegalArgumentException(node.getOpType() + ": attribute '" + name + "' is required");
    }

    @SuppressWarnings("try")
    private static void run(Path caseDir) {
        ModelProto model;
        try {
            model = OnnxModel.read(caseDir.resolve("model.onnx"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        GraphProto graph = model.getGraph();
        NodeProto node = graph.getNode(0);
        assertEquals("ai.onnx.preview.training", node.getDomain());
        Path data = caseDir.resolve("test_data_set_0");
        try (Scope scope = Scope.open()) {
            Map<String, Tensor> values = new HashMap<>();
            List<String> feeds = OnnxModel.feedNames(graph);
            for (int i = 0; i < feeds.size(); i++) {
                values.put(feeds.get(i), OnnxTensors.toTensor(OnnxTensors.read(data.resolve("input_" + i + ".pb"))));
            }
            String op = node.getOpType();
            int states = op.equals("Adam") ? 2 : 1;
            int n = (node.getInputCount() - 2) / (2 + states);
            double r = values.get(node.getInput(0)).item();
            long t = (long) values.get(node.getInput(1)).item();
            List<Tensor> x = new ArrayList<>();
            List<Tensor> g = new ArrayList<>();
            List<List<Tensor>> s = new ArrayList<>();
            for (int k = 0; k < states; k++) {
                s.add(new ArrayList<>());
            }
            for (int i = 0; i < n; i++) {
                x.add(values.get(node.getInput(2 + i)).copy());   // updated in place: the outputs
                g.add(values.get(node.getInput(2 + n + i)));
                for (int k = 0; k < states; k++) {
                    s.get(k).add(values.get(node.getInput(2 + (2 + k) * n + i)).copy());
                }
            }
            switch (op) {
                case "Adagrad" -> {
                    double decay = attr(node, "decay_factor", 0);
                    double eps = attr(node, "epsilon", 0);
                    double norm = attr(node, "norm_coefficient", 0);
                    try (Adagrad opt = Adagrad.builder().lr(r).lrDecay(decay).eps(eps).weightDecay(norm).build(x)) {
                        stepWithState(opt, x, g, s, List.of("sum"), t);
                    }
                }
                case "Momentum" -> {
                    double alpha = attr(node, "alpha", Double.NaN);
                    double beta = attr(node, "beta", Double.NaN);
                    double norm = attr(node, "norm_coefficient", Double.NaN);
                    boolean nesterov = switch (stringAttr(node, "mode")) {
                        case "nesterov" -> true;
                        case "standard" -> false;
                        default -> throw new IllegalArgumentException("Momentum: mode " + stringAttr(node, "mode"));
                    };
                    // PyTorch SGD: momentum = alpha, dampening = 1 - beta (first step: whole gradient)
                    Sgd.Builder b = Sgd.builder().lr(r).momentum(alpha).weightDecay(norm).nesterov(nesterov);
                    if (!nesterov) {
                        b.dampening(1 - beta);
                    } else if (beta != 1) {
                        fail("Nesterov with beta != 1 has no torch.optim.SGD twin (dampening must be 0)");
                    }
                    try (Sgd opt = b.build(x)) {
                        stepWithState(opt, x, g, s, List.of("momentum_buffer"), t);
                    }
                }
                default -> fail("unexpected op " + op);
            }
            List<Tensor> outputs = new ArrayList<>(x);
            s.forEach(outputs::addAll);
            assertEquals(graph.getOutputCount(), outputs.size(), "outputs");
            List<String> problems = new ArrayList<>();
            for (int j = 0; j < outputs.size(); j++) {
                TensorProto expected;
                try {
                    expected = OnnxTensors.read(data.resolve("output_" + j + ".pb"));
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
                String p = OnnxValues.compare("output " + j + " '" + graph.getOutput(j).getName() + "'", expected,
                        outputs.get(j), OnnxTestCases.RTOL, OnnxTestCases.ATOL);
                if (p != null) {
                    problems.add(p);
                }
            }
            if (!problems.isEmpty()) {
                fail(String.join("; ", problems));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Loads the node's state (step T) into {@code opt}, sets the gradients, steps; outputs land in x and s. */
    private static void stepWithState(Optimizer opt, List<Tensor> x, List<Tensor> g, List<List<Tensor>> s,
                                      List<String> names, long t) {
        Map<String, Tensor> state = new HashMap<>();
        for (int i = 0; i < x.size(); i++) {
            for (int k = 0; k < names.size(); k++) {
                state.put("state." + i + "." + names.get(k), s.get(k).get(i));
            }
            state.put("state." + i + ".step", Tensor.scalar(t, DType.FLOAT64, Device.CPU));
            x.get(i).setGrad(g.get(i).copy());
        }
        opt.loadState(state);
        opt.step();
        for (int i = 0; i < x.size(); i++) {
            x.get(i).setGrad(null);
            for (int k = 0; k < names.size(); k++) {
                s.get(k).get(i).copyFrom(opt.stateTensor(i, names.get(k)));
            }
        }
    }
}
