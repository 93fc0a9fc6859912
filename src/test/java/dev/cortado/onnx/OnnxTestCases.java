package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;

/**
 * Finds and runs the ONNX backend node tests of the shared conformance folder.
 *
 * <p>Location: the system property {@code cortado.conformance.dir} (the {@code conformance}
 * folder, or its {@code onnx-node} folder directly), else {@code ../shared/conformance} relative
 * to {@code user.dir} (Surefire runs in the repository root). Absent folder: {@link #nodeDir()}
 * returns null and the tests skip.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
public final class OnnxTestCases {
    private OnnxTestCases() {
    }

    /** ONNX's default tolerances (onnx/backend/test/loader): rtol 1e-3, atol 1e-7. */
    public static final double RTOL = 1e-3;
    public static final double ATOL = 1e-7;

    /** One test directory, with what keeps it from running (if anything). */
    public record Case(String name, String key, Path dir, ModelProto model, Set<String> ops, Set<String> unsupportedOps,
                       Set<String> unsupportedDTypes, String expectedFailure) {
        /** All ops have handlers: the test is generated. */
        public boolean opsSupported() {
            return unsupportedOps.isEmpty();
        }

        /** Generated, all dtypes exist in Cortado, and not listed as an expected failure. */
        public boolean expectedToPass() {
            return opsSupported() && unsupportedDTypes.isEmpty() && expectedFailure == null;
        }
    }

    public static Path conformanceDir() {
        String override = System.getProperty("cortado.conformance.dir");
        if (override != null && !override.isBlank()) {
            return Paths.get(override).toAbsolutePath().normalize();
        }
        return Paths.get(System.getProperty("user.dir")).resolve("../shared/conformance").toAbsolutePath().normalize();
    }

    /** The onnx-node folder, or null when it is not there. */
    public static Path nodeDir() {
        return nodeDir(conformanceDir());
    }

    /** The onnx-node folder under (or at) {@code base}, or null when it is not there. */
    public static Path nodeDir(Path base) {
        for (Path p : new Path[] {base.resolve("onnx-node"), base}) {
            if (Files.isDirectory(p) && Files.isRegularFile(p.resolve("MANIFEST.tsv"))) {
                return p;
            }
        }
        return null;
    }

    /**
     * The folders of the older PyTorch-exported tests ({@code onnx-pytorch/pytorch-converted} and
     * {@code onnx-pytorch/pytorch-operator}) that exist under {@code base}; empty when absent.
     */
    public static List<Path> pytorchDirs(Path base) {
        List<Path> dirs = new ArrayList<>();
        for (String sub : new String[] {"pytorch-converted", "pytorch-operator"}) {
            Path p = base.resolve("onnx-pytorch").resolve(sub);
            if (Files.isDirectory(p)) {
                dirs.add(p);
            }
        }
        return dirs;
    }

    public static List<Path> pytorchDirs() {
        return pytorchDirs(conformanceDir());
    }

    /** The onnx-node-training folder (7 optimizer steps), or null when it is not there. */
    public static Path trainingDir() {
        Path p = conformanceDir().resolve("onnx-node-training");
        return Files.isDirectory(p) ? p : null;
    }

    /** The onnx-light folder (9 real CNN graphs), or null when it is not there. */
    public static Path lightDir() {
        Path p = conformanceDir().resolve("onnx-light");
        return Files.isDirectory(p) ? p : null;
    }

    /** The node tests of {@code nodeDir}, in suite "onnx-node". */
    public static List<Case> discover(Path nodeDir, Map<String, String> expectedFailures) {
        return discover(nodeDir, "onnx-node", expectedFailures);
    }

    /**
     * Every {@code test_*} directory with a model.onnx, sorted by name; its key in
     * {@code expectedFailures} is {@code suite + "/" + name}.
     */
    public static List<Case> discover(Path nodeDir, String suite, Map<String, String> expectedFailures) {
        List<Path> dirs;
        try (Stream<Path> s = Files.list(nodeDir)) {
            dirs = s.filter(p -> p.getFileName().toString().startsWith("test_"))
                    .filter(p -> Files.isRegularFile(p.resolve("model.onnx")))
                    .sorted()
                    .toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        List<Case> cases = new ArrayList<>();
        for (Path dir : dirs) {
            String name = dir.getFileName().toString();
            ModelProto model;
            try {
                model = OnnxModel.read(dir.resolve("model.onnx"));
            } catch (IOException e) {
                throw new UncheckedIOException("reading " + dir.resolve("model.onnx"), e);
            }
            String key = suite + "/" + name;
            cases.add(new Case(name, key, dir, model, OnnxModel.opTypes(model), unsupportedOps(model),
                    unsupportedDTypes(model.getGraph()), expectedFailures.get(key)));
        }
        return cases;
    }

    /**
     * The main graph's op types that the importer has no handler for at the model's opset (or in
     * a non-default domain); empty if every node has one.
     */
    static Set<String> unsupportedOps(ModelProto model) {
        Map<String, Integer> opsets = new java.util.HashMap<>();
        for (var o : model.getOpsetImportList()) {
            opsets.put(OnnxOps.canonicalDomain(o.getDomain()), (int) o.getVersion());
        }
        Set<String> missing = new TreeSet<>();
        for (var n : model.getGraph().getNodeList()) {
            String domain = OnnxOps.canonicalDomain(n.getDomain());
            OnnxOps.Entry e = OnnxOps.entry(domain, n.getOpType());
            if (e == null || opsets.getOrDefault(domain, -1) < e.since()) {
                missing.add(domain.equals(OnnxOps.DEFAULT_DOMAIN) ? n.getOpType() : domain + "." + n.getOpType());
            }
        }
        return missing;
    }

    /** Element types of the graph's inputs and outputs that Cortado has no dtype for. */
    static Set<String> unsupportedDTypes(GraphProto graph) {
        Set<String> out = new TreeSet<>();
        List<ValueInfoProto> values = new ArrayList<>(graph.getInputList());
        values.addAll(graph.getOutputList());
        for (ValueInfoProto v : values) {
            TypeProto type = v.getType();
            if (type.hasTensorType() && type.getTensorType().hasElemType()) {
                int t = type.getTensorType().getElemType();
                if (!OnnxTensors.isSupported(t)) {
                    out.add(OnnxTensors.typeName(t));
                }
            }
        }
        return out;
    }

    /** Imports {@code model} (no external data), runs it once on {@code feeds} and closes it. */
    public static Map<String, Tensor> runModel(ModelProto model, Map<String, Tensor> feeds) {
        try (OnnxModel m = OnnxModel.of(model)) {
            return m.run(feeds);
        }
    }

    /**
     * Runs a test: feeds {@code input_i.pb}, checks that the outputs match {@code output_j.pb}
     * by ONNX's rule. Returns null when they all match, else what differs; exceptions from the
     * engine propagate.
     */
    public static String run(Case c) throws IOException {
        Path data = c.dir().resolve("test_data_set_0");
        GraphProto graph = c.model().getGraph();
        List<String> feedNames = OnnxModel.feedNames(graph);
        List<TensorProto> expected = new ArrayList<>();
        for (int j = 0; Files.exists(data.resolve("output_" + j + ".pb")); j++) {
            expected.add(OnnxTensors.read(data.resolve("output_" + j + ".pb")));
        }
        if (expected.size() != graph.getOutputCount()) {
            return expected.size() + " output_*.pb files for " + graph.getOutputCount() + " graph outputs";
        }
        try (Scope scope = Scope.open()) {
            Map<String, Tensor> feeds = new LinkedHashMap<>();
            for (int i = 0; i < feedNames.size(); i++) {
                Path pb = data.resolve("input_" + i + ".pb");
                if (!Files.exists(pb)) {
                    return "missing " + pb.getFileName() + " for graph input '" + feedNames.get(i) + "'";
                }
                feeds.put(feedNames.get(i), OnnxTensors.toTensor(OnnxTensors.read(pb)));
            }
            Map<String, Tensor> outputs;
            try (OnnxModel model = OnnxModel.of(c.model(), c.dir(), dev.cortado.tensor.Device.defaultDevice())) {
                outputs = model.run(feeds);
            }
            List<String> problems = new ArrayList<>();
            for (int j = 0; j < expected.size(); j++) {
                String name = graph.getOutput(j).getName();
                String problem = OnnxValues.compare("output " + j + " '" + name + "'", expected.get(j), outputs.get(name),
                        c.name().equals("test_densenet121") ? 2e-3 : RTOL, ATOL);
                if (problem != null) {
                    problems.add(problem);
                }
            }
            return problems.isEmpty() ? null : String.join("; ", problems);
        }
    }
}
