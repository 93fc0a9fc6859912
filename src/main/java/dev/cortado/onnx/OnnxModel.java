package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.AttributeProto;
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
import com.google.protobuf.CodedInputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * An imported ONNX model, ready to run: {@code ModelProto} -> an executable graph of Cortado ops.
 *
 * <p>Loading does all the checking: the model must import a default-domain opset in
 * [{@value #MIN_OPSET}, {@value #MAX_OPSET}]; every node (also inside If/Loop/Scan bodies) must
 * be in the default domain (or ai.onnx.preview.training, the optimizer steps, or com.microsoft, ONNX
 * Runtime's transformer ops: {@link MicrosoftOps}) and have a handler
 * in the op table that implements the imported version of its op, else {@link UnsupportedOnnxOpException} names the op, domain, opset and node.
 * Initializers (with their external data files, confined to the model's folder) and
 * {@code Constant} nodes become tensors once, at load, on the model's device; they are shared,
 * read-only, by every run.
 *
 * <p>{@link #run} holds no state of its own (each call evaluates the nodes in order with its own
 * name -> tensor environment inside a {@link Scope}), so one model can serve many threads at
 * once without copying its weights. {@link #close()} frees the weights; it must not race with
 * running calls (an {@link InferenceSession} guards that).
 *
 * <pre>{@code
 * try (OnnxModel model = OnnxModel.load(Path.of("model.onnx"));
 *      Tensor x = Tensor.of(data, 1, 3, 224, 224)) {
 *     Map<String, Tensor> out = model.run(Map.of("input", x));   // the caller closes the outputs
 * }
 * }</pre>
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
public final class OnnxModel implements AutoCloseable {
    /** The oldest default-domain opset the importer reads (the legacy broadcast of opset 6 included). */
    public static final int MIN_OPSET = 6;
    /**
     * The newest default-domain opset the importer reads (25 only widened the types of a few ops,
     * such as Reshape, Transpose and (De)QuantizeLinear, over 24).
     */
    public static final int MAX_OPSET = 25;

    private final ModelProto proto;
    private final int opset;
    private final Map<String, Integer> opsets;
    private final Device device;
    /** Per graph (the main one and every subgraph): its initializers and Constant outputs. */
    private final Map<GraphProto, Map<String, Tensor>> constants = new IdentityHashMap<>();
    private final List<String> inputNames;
    private final List<String> outputNames;
    private final Map<String, ValueInfoProto> inputInfo = new HashMap<>();
    /** Main-graph nodes evaluated once at load ({@link #foldConstants}); a run skips them. */
    private final Set<NodeProto> folded = Collections.newSetFromMap(new IdentityHashMap<>());
    /** The main graph that runs: the model's, or its rewrite by {@link OnnxFusion}. */
    private GraphProto main;
    /** The handlers of the fused nodes of {@link #main} ({@link OnnxFusion}). */
    private final Map<NodeProto, OnnxOps.Handler> fusedHandlers = new IdentityHashMap<>();
    /** What the fused nodes hold (packed weights), freed with the constants. */
    private final List<AutoCloseable> fusedResources = new ArrayList<>();
    /** Per graph that has run, when each value it computes is freed ({@link #releasePlan}). */
    private final Map<GraphProto, List<String>[]> releasePlans = Collections.synchronizedMap(new IdentityHashMap<>());
    private volatile boolean closed;

    private OnnxModel(ModelProto proto, Path folder, Device device) {
        this(proto, folder, device, false, true);
    }

    private OnnxModel(ModelProto proto, Path folder, Device device, boolean foldConstants, boolean fuse) {
        this.proto = proto;
        this.device = device;
        this.opset = defaultOpset(proto);
        this.opsets = importedOpsets(proto);
        GraphProto graph = proto.getGraph();
        this.main = graph;
        checkNodes(graph, opsets);
        this.inputNames = List.copyOf(feedNames(graph));
        List<String> outs = new ArrayList<>();
        for (ValueInfoProto v : graph.getOutputList()) {
            outs.add(v.getName());
        }
        this.outputNames = List.copyOf(outs);
        for (ValueInfoProto v : graph.getInputList()) {
            inputInfo.put(v.getName(), v);
        }
        try (Scope detached = Scope.detached()) {
            loadConstants(graph, folder);
            if (fuse) {
                OnnxFusion.Result fused = OnnxFusion.apply(graph, constants.get(graph), inputInfo.keySet(), opset);
                fusedHandlers.putAll(fused.handlers());
                fusedResources.addAll(fused.resources());
                main = fused.graph();
                constants.put(main, constants.remove(graph));
            }
            if (foldConstants) {
                foldConstants(main);
            }
        } catch (RuntimeException | Error e) {
            freeConstants();
            throw e;
        }
    }

    /**
     * A model from a saved plan ({@link PlanFile}): {@code plan} is the model with its optimized
     * main graph (fused nodes, no folded or Constant nodes, no initializers), {@code constants}
     * the graph's initializers and folded values (taken over: freed by {@link #close()}).
     */
    private OnnxModel(ModelProto plan, Device device, Map<String, Tensor> constants) {
        this.proto = plan;
        this.device = device;
        this.opset = defaultOpset(plan);
        this.opsets = importedOpsets(plan);
        GraphProto graph = plan.getGraph();
        this.main = graph;
        this.constants.put(graph, new HashMap<>(constants));
        try {
            checkNodes(graph, opsets, true);
            List<String> feeds = new ArrayList<>();
            for (ValueInfoProto v : graph.getInputList()) {
                inputInfo.put(v.getName(), v);
                if (!constants.containsKey(v.getName())) {
                    feeds.add(v.getName());
                }
            }
            this.inputNames = List.copyOf(feeds);
            List<String> outs = new ArrayList<>();
            for (ValueInfoProto v : graph.getOutputList()) {
                outs.add(v.getName());
            }
            this.outputNames = List.copyOf(outs);
            try (Scope detached = Scope.detached()) {
                for (NodeProto n : graph.getNodeList()) {
                    if (n.getDomain().equals(OnnxFusion.DOMAIN)) {
                        fusedHandlers.put(n, OnnxFusion.handler(n,
                                name -> inputInfo.containsKey(name) ? null : constants.get(name), opset, fusedResources));
                    }
                }
            }
        } catch (RuntimeException | Error e) {
            freeConstants();
            throw e;
        }
    }

    /** A model from a saved plan (see the constructor); the constants are taken over, also on failure. */
    static OnnxModel ofPlan(ModelProto plan, Map<String, Tensor> constants, Device device) {
        return new OnnxModel(plan, device, constants);
    }

    /**
     * What a saved plan holds ({@link PlanFile}): the model with the main graph as it runs (fused,
     * without the folded and Constant nodes, whose values are constants, and without
     * initializers), and the constants that graph reads, by name. Null when the model has
     * subgraphs (If, Loop, Scan), whose constants a plan does not hold.
     */
    PlanContent planContent() {
        if (hasSubgraphs(main)) {
            return null;
        }
        GraphProto.Builder g = main.toBuilder().clearNode().clearInitializer();
        for (NodeProto n : main.getNodeList()) {
            boolean constantNode = n.getOpType().equals("Constant")
                    && OnnxOps.canonicalDomain(n.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN);
            if (!folded.contains(n) && !constantNode) {
                g.addNode(n);
            }
        }
        return new PlanContent(proto.toBuilder().setGraph(g).build(), Collections.unmodifiableMap(constants.get(main)));
    }

    /** A plan's graph and constants ({@link #planContent()}). */
    record PlanContent(ModelProto model, Map<String, Tensor> constants) {
    }

    private static boolean hasSubgraphs(GraphProto graph) {
        for (NodeProto n : graph.getNodeList()) {
            for (AttributeProto a : n.getAttributeList()) {
                if (a.hasG() || a.getGraphsCount() > 0) {
                    return true;
                }
            }
        }
        return false;
    }

    /**
     * Reads and imports {@code file}; external data files resolve in its folder. The known chains
     * of small ops (the written-out GELU, LayerNorm and attention) run as Cortado's fused ops, and
     * constant int8 weights are packed once (see {@code OnnxFusion}).
     */
    public static OnnxModel load(Path file) throws IOException {
        return load(file, Device.defaultDevice());
    }

    /** Reads and imports {@code file} with its weights on {@code device}. */
    public static OnnxModel load(Path file, Device device) throws IOException {
        Path folder = file.toAbsolutePath().getParent();
        return new OnnxModel(read(file), folder, device);
    }

    /**
     * Reads and imports {@code file} with its weights on {@code device}; with {@code foldConstants},
     * the main graph's nodes whose inputs are all weights or constants are evaluated once, now
     * (see {@link #foldConstants}).
     */
    static OnnxModel load(Path file, Device device, boolean foldConstants) throws IOException {
        Path folder = file.toAbsolutePath().getParent();
        return new OnnxModel(read(file), folder, device, foldConstants, foldConstants);
    }

    /** Imports a parsed model that has no external data, with its weights on the default device. */
    public static OnnxModel of(ModelProto model) {
        return new OnnxModel(model, null, Device.defaultDevice());
    }

    /** Imports a parsed model; external data files resolve in {@code folder} (null: none allowed). */
    public static OnnxModel of(ModelProto model, Path folder, Device device) {
        return new OnnxModel(model, folder == null ? null : folder.toAbsolutePath(), device);
    }

    /**
     * {@link #of(ModelProto, Path, Device)}, with the constants folded and the op chains fused at
     * load when {@code optimize}, the graph run as written otherwise.
     */
    static OnnxModel of(ModelProto model, Path folder, Device device, boolean optimize) {
        return new OnnxModel(model, folder == null ? null : folder.toAbsolutePath(), device, optimize, optimize);
    }

    /**
     * The deepest protobuf message nesting {@link #read} accepts. A model nests ModelProto,
     * GraphProto, NodeProto, AttributeProto, then GraphProto again per level of {@code If}/
     * {@code Loop}/{@code Scan} subgraph (three messages a level), so 64 allows about 20 levels of
     * control flow; deeper input is refused before the importer's recursive walks could overflow the
     * stack.
     */
    public static final int MAX_NESTING = 64;

    /**
     * Parses a {@code model.onnx} file; a truncated or corrupt file, one whose messages nest deeper
     * than {@link #MAX_NESTING} or declare more bytes than the file has, gives an
     * {@link OnnxImportException}.
     */
    public static ModelProto read(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            ModelProto m = ModelProto.parseFrom(limited(in, Files.size(file)));
            if (!m.hasGraph()) {
                throw new OnnxImportException(file + " is not an ONNX model (no graph)");
            }
            return m;
        } catch (InvalidProtocolBufferException e) {
            throw new OnnxImportException(file + " is not a readable ONNX model: " + e.getMessage(), e);
        }
    }

    /**
     * A protobuf reader of {@code in} ({@code size} bytes) that refuses messages nested deeper than
     * {@link #MAX_NESTING} and lengths past the end of the input (protobuf-java's recursion and size
     * limits; its parsers then never allocate more than they have read).
     */
    static CodedInputStream limited(InputStream in, long size) {
        CodedInputStream c = CodedInputStream.newInstance(in);
        c.setRecursionLimit(MAX_NESTING);
        c.setSizeLimit((int) Math.min(Integer.MAX_VALUE, size));
        return c;
    }

    public ModelProto proto() {
        return proto;
    }

    /** The default-domain opset the model imports (-1 when it imports none). */
    public int opset() {
        return opset;
    }

    public Device device() {
        return device;
    }

    /** The graph inputs a caller feeds (those that are not initializers), in graph order. */
    public List<String> inputNames() {
        return inputNames;
    }

    /** The graph outputs, in graph order. */
    public List<String> outputNames() {
        return outputNames;
    }

    /** The distinct op types of the main graph's nodes, in order of first use. */
    public static Set<String> opTypes(ModelProto model) {
        Set<String> ops = new LinkedHashSet<>();
        for (NodeProto n : model.getGraph().getNodeList()) {
            ops.add(n.getOpType());
        }
        return ops;
    }

    /** The op types of the default domain that the importer has a handler for (some version). */
    public static Set<String> supportedOps() {
        return OnnxOps.supportedOps();
    }

    /**
     * Runs the graph on {@code feeds} (graph input name -> tensor; not taken over) and returns the
     * graph outputs by name, in graph order. The returned tensors belong to the caller (or to the
     * caller's enclosing {@link Scope}); everything else the run creates is freed. Thread-safe.
     */
    public Map<String, Tensor> run(Map<String, Tensor> feeds) {
        if (closed) {
            throw new IllegalStateException("the ONNX model is closed");
        }
        GraphProto graph = main;
        checkFeeds(feeds);
        Map<String, Tensor> result = new LinkedHashMap<>();
        try (Scope scope = Scope.open()) {
            Env env = new Env(null);
            env.values.putAll(constants.get(graph));
            env.values.putAll(feeds);
            List<Tensor> outs = evaluate(graph, env);
            Map<Tensor, Boolean> notOurs = new IdentityHashMap<>();
            constants.get(graph).values().forEach(t -> notOurs.put(t, true));
            feeds.values().forEach(t -> notOurs.put(t, true));
            for (int i = 0; i < outs.size(); i++) {
                // a new tensor owned by this scope, kept past it: a weight or a feed passed
                // through is copied (it belongs to the model or the caller), a result of this
                // run is a new handle (a view when contiguous)
                Tensor t = outs.get(i);
                result.put(outputNames.get(i), scope.keep(notOurs.containsKey(t) ? t.copy() : t.contiguous()));
            }
        }
        return result;
    }

    /** Frees the weights. Idempotent. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            freeConstants();
        }
    }

    // ------------------------------------------------------------------ load

    private static boolean isDefaultDomain(String domain) {
        return domain.isEmpty() || domain.equals("ai.onnx");
    }

    /** The default-domain opset the model imports, checked against the supported range; -1 if none. */
    static int defaultOpset(ModelProto model) {
        for (OperatorSetIdProto o : model.getOpsetImportList()) {
            if (isDefaultDomain(o.getDomain())) {
                long v = o.getVersion();
                if (v < MIN_OPSET || v > MAX_OPSET) {
                    throw new UnsupportedOnnxOpException(null, "", (int) v, null,
                            "the model imports ai.onnx opset " + v + "; the importer reads opsets " + MIN_OPSET
                                    + " to " + MAX_OPSET);
                }
                return (int) v;
            }
        }
        return -1; // no default-domain node may then appear (checkNodes)
    }

    /** The versions the model imports, by canonical domain ("ai.onnx" for the default one). */
    private static Map<String, Integer> importedOpsets(ModelProto model) {
        Map<String, Integer> m = new HashMap<>();
        for (OperatorSetIdProto o : model.getOpsetImportList()) {
            m.put(OnnxOps.canonicalDomain(o.getDomain()), (int) o.getVersion());
        }
        return m;
    }

    /** Every node of {@code graph} and its subgraphs has a handler for the imported version. */
    private static void checkNodes(GraphProto graph, Map<String, Integer> opsets) {
        checkNodes(graph, opsets, false);
    }

    /** {@link #checkNodes(GraphProto, Map)}; with {@code fused}, the nodes of a saved plan's fusions are allowed too. */
    private static void checkNodes(GraphProto graph, Map<String, Integer> opsets, boolean fused) {
        for (NodeProto n : graph.getNodeList()) {
            if (fused && n.getDomain().equals(OnnxFusion.DOMAIN)) {
                continue; // its handler is made from it (OnnxFusion.handler), which refuses an unknown one
            }
            String where = n.getName().isEmpty() ? null : n.getName();
            String domain = OnnxOps.canonicalDomain(n.getDomain());
            Integer version = opsets.get(domain);
            if (version == null) {
                throw new UnsupportedOnnxOpException(n.getOpType(), domain, -1, where, "op " + domain + "."
                        + n.getOpType() + nodeText(n) + ": the model imports no opset of domain '" + domain + "'");
            }
            if (!OnnxOps.domains().contains(domain)) {
                throw new UnsupportedOnnxOpException(n.getOpType(), domain, version, where,
                        "op " + domain + "." + n.getOpType() + nodeText(n) + " (opset " + version + "): domain '" + domain
                                + "' is not supported (the importer reads " + OnnxOps.domains() + ")");
            }
            OnnxOps.Entry e = OnnxOps.entry(domain, n.getOpType());
            if (e == null) {
                throw new UnsupportedOnnxOpException(n.getOpType(), domain, version, where,
                        "op " + n.getOpType() + nodeText(n) + " (domain " + domain + ", opset " + version
                                + ") is not supported");
            }
            if (version < e.since()) {
                throw new UnsupportedOnnxOpException(n.getOpType(), domain, version, where,
                        "op " + n.getOpType() + nodeText(n) + " (domain " + domain + ") is supported from opset "
                                + e.since() + ", the model imports opset " + version);
            }
            MicrosoftOps.checkAtLoad(graph, n, version);
            for (AttributeProto a : n.getAttributeList()) {
                if (a.hasG()) {
                    checkNodes(a.getG(), opsets);
                }
                for (GraphProto g : a.getGraphsList()) {
                    checkNodes(g, opsets);
                }
            }
        }
    }

    private static String nodeText(NodeProto n) {
        return n.getName().isEmpty() ? "" : " (node '" + n.getName() + "')";
    }

    /** Initializers and Constant outputs of {@code graph} and its subgraphs, made once. */
    private void loadConstants(GraphProto graph, Path folder) {
        Map<String, Tensor> values = new HashMap<>();
        constants.put(graph, values);
        for (TensorProto init : graph.getInitializerList()) {
            TensorProto data = OnnxTensors.withExternalData(init, folder);
            keep(values, init.getName(), OnnxTensors.toTensor(data, device));
        }
        for (NodeProto n : graph.getNodeList()) {
            if (n.getOpType().equals("Constant") && OnnxOps.canonicalDomain(n.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN)) {
                Tensor t = OnnxOps.entry("Constant").handler().run(new OnnxNode(n, new Tensor[0], opset, null))[0];
                keep(values, n.getOutput(0), t.device().equals(device) ? t : t.to(device));
            }
            for (AttributeProto a : n.getAttributeList()) {
                if (a.hasG()) {
                    loadConstants(a.getG(), folder);
                }
                for (GraphProto g : a.getGraphsList()) {
                    loadConstants(g, folder);
                }
            }
        }
    }

    /** Puts a constant, closing one it replaces (a repeated name in a malformed model, found by fuzzing). */
    private static void keep(Map<String, Tensor> values, String name, Tensor t) {
        Tensor previous = values.put(name, t);
        if (previous != null && previous != t) {
            previous.close();
        }
    }

    /** Ops whose result must not be computed once for all runs (they draw random numbers). */
    private static final Set<String> NOT_FOLDED = Set.of("RandomNormal", "RandomUniform", "RandomNormalLike",
            "RandomUniformLike", "Bernoulli", "Multinomial");

    /**
     * Constant folding: every main-graph node of the default domain whose inputs are all
     * initializers, {@code Constant} outputs or earlier folded results (and that draws no random
     * numbers and has no subgraph) is run once here; its outputs join the graph's constants and
     * {@link #evaluate} skips it. This is what exported models compute on every request for
     * nothing: transposed or dequantized weights, shape arithmetic on constants. Folded values that
     * only fed other folded nodes are freed again.
     */
    private void foldConstants(GraphProto graph) {
        Map<String, Tensor> values = constants.get(graph);
        boolean hasSubgraphs = false;
        try (Scope scope = Scope.open()) {
            for (NodeProto n : graph.getNodeList()) {
                boolean subgraph = n.getAttributeList().stream().anyMatch(a -> a.hasG() || a.getGraphsCount() > 0);
                hasSubgraphs |= subgraph;
                if (subgraph || n.getOpType().equals("Constant") || NOT_FOLDED.contains(n.getOpType())
                        || !OnnxOps.canonicalDomain(n.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN)
                        || n.getInputCount() == 0) {
                    continue;
                }
                Tensor[] inputs = new Tensor[n.getInputCount()];
                boolean allConstant = true;
                for (int i = 0; i < inputs.length && allConstant; i++) {
                    if (!n.getInput(i).isEmpty()) {
                        // an initializer that is also a graph input is a default a caller may override
                        inputs[i] = inputInfo.containsKey(n.getInput(i)) ? null : values.get(n.getInput(i));
                        allConstant = inputs[i] != null;
                    }
                }
                if (!allConstant) {
                    continue;
                }
                Tensor[] outputs = OnnxOps.entry(n.getOpType()).handler().run(new OnnxNode(n, inputs, opset, null));
                for (int i = 0; i < n.getOutputCount() && i < outputs.length; i++) {
                    if (!n.getOutput(i).isEmpty() && outputs[i] != null) {
                        Tensor t = outputs[i];
                        values.put(n.getOutput(i), scope.owns(t) ? scope.keep(t) : t);
                    }
                }
                folded.add(n);
            }
        }
        if (hasSubgraphs || folded.isEmpty()) {
            return; // a subgraph may read any outer name: keep every folded value
        }
        Set<String> used = new java.util.HashSet<>(outputNames);
        for (NodeProto n : graph.getNodeList()) {
            if (!folded.contains(n)) {
                used.addAll(n.getInputList());
            }
        }
        Map<Tensor, Boolean> kept = new IdentityHashMap<>();
        for (Map.Entry<String, Tensor> e : values.entrySet()) {
            if (used.contains(e.getKey())) {
                kept.put(e.getValue(), true);
            }
        }
        for (NodeProto n : folded) {
            for (String out : n.getOutputList()) {
                Tensor t = used.contains(out) ? null : values.remove(out);
                if (t != null && !kept.containsKey(t) && !t.isClosed()) {
                    t.close();
                }
            }
        }
    }

    /** What the load-time fusions keep for the model's lifetime (packed weights), freed by {@link #close}. */
    List<AutoCloseable> resources() {
        return java.util.Collections.unmodifiableList(fusedResources);
    }

    /**
     * The op types of the main graph as it runs, in order: after the load-time fusions (a fused
     * node as {@code dev.cortado.fused.Gelu}, for example), before constant folding.
     */
    List<String> runningOps() {
        List<String> ops = new ArrayList<>();
        for (NodeProto n : main.getNodeList()) {
            ops.add(n.getDomain().equals(OnnxFusion.DOMAIN) ? OnnxFusion.DOMAIN + "." + n.getOpType() : n.getOpType());
        }
        return ops;
    }

    /** How many main-graph nodes were folded into constants at load (0 unless asked for). */
    int foldedNodes() {
        return folded.size();
    }

    /** The declared type of graph input {@code name} (null for an unknown name). */
    ValueInfoProto inputInfo(String name) {
        return inputInfo.get(name);
    }

    private void freeConstants() {
        for (AutoCloseable r : fusedResources) {
            try {
                r.close();
            } catch (Exception e) {
                throw new IllegalStateException("closing " + r + ": " + e.getMessage(), e);
            }
        }
        fusedResources.clear();
        for (Map<String, Tensor> m : constants.values()) {
            for (Tensor t : m.values()) {
                if (!t.isClosed()) {
                    t.close();
                }
            }
        }
        constants.clear();
    }

    /** The names of the graph inputs that are fed (those that are not initializers). */
    static List<String> feedNames(GraphProto graph) {
        Set<String> init = new LinkedHashSet<>();
        for (TensorProto t : graph.getInitializerList()) {
            init.add(t.getName());
        }
        List<String> names = new ArrayList<>();
        for (ValueInfoProto v : graph.getInputList()) {
            if (!init.contains(v.getName())) {
                names.add(v.getName());
            }
        }
        return names;
    }

    // ------------------------------------------------------------------ run

    /** Every input fed, no unknown name, dtype and rank as the graph declares them. */
    private void checkFeeds(Map<String, Tensor> feeds) {
        for (String name : feeds.keySet()) {
            if (!inputInfo.containsKey(name)) {
                throw new IllegalArgumentException("'" + name + "' is not an input of the model; its inputs are "
                        + inputNames);
            }
        }
        for (String name : inputNames) {
            Tensor t = feeds.get(name);
            if (t == null) {
                throw new IllegalArgumentException("model input '" + name + "' is not fed (inputs: " + inputNames + ")");
            }
            TypeProto type = inputInfo.get(name).getType();
            if (!type.hasTensorType()) {
                continue;
            }
            TypeProto.Tensor tt = type.getTensorType();
            if (tt.hasElemType() && OnnxTensors.isSupported(tt.getElemType())
                    && OnnxTensors.dtypeOf(tt.getElemType()) != t.dtype()) {
                throw new IllegalArgumentException("model input '" + name + "' is " + OnnxTensors.dtypeOf(tt.getElemType())
                        + ", got " + t.describe());
            }
            if (tt.hasShape()) {
                TensorShapeProto shape = tt.getShape();
                if (shape.getDimCount() != t.rank()) {
                    throw new IllegalArgumentException("model input '" + name + "' has rank " + shape.getDimCount()
                            + ", got " + t.describe());
                }
                for (int i = 0; i < shape.getDimCount(); i++) {
                    TensorShapeProto.Dimension d = shape.getDim(i);
                    if (d.hasDimValue() && d.getDimValue() != t.size(i)) {
                        throw new IllegalArgumentException("model input '" + name + "' needs size " + d.getDimValue()
                                + " in dimension " + i + ", got " + t.describe());
                    }
                }
            }
        }
    }

    /** Names visible to a graph: its own values, then the enclosing graphs'. */
    private static final class Env {
        final Env parent;
        final Map<String, Tensor> values = new HashMap<>();

        Env(Env parent) {
            this.parent = parent;
        }

        Tensor get(String name) {
            for (Env e = this; e != null; e = e.parent) {
                Tensor t = e.values.get(name);
                if (t != null) {
                    return t;
                }
            }
            return null;
        }
    }

    /**
     * Runs {@code graph}'s nodes in order in {@code env}; returns its outputs in order.
     *
     * <p>Memory follows the values' lifetimes, as a planned run would: each node runs in its own
     * {@link Scope}, so whatever its handler allocates besides its outputs is freed as soon as it
     * returns, and each output a node made is closed right after the last node that reads it
     * ({@link #releasePlan}), instead of when the run ends. Only tensors a node of this graph
     * made are closed here, once no live name is bound to them; a handler that passes an input
     * through (Identity), a weight, a feed or a value of an enclosing graph keep theirs.
     */
    private List<Tensor> evaluate(GraphProto graph, Env env) {
        List<String>[] release = releasePlans.computeIfAbsent(graph, OnnxModel::releasePlan);
        Map<Tensor, int[]> liveNames = new IdentityHashMap<>();
        Map<Tensor, Boolean> created = new IdentityHashMap<>();
        for (int index = 0; index < graph.getNodeCount(); index++) {
            NodeProto n = graph.getNode(index);
            if (n.getOpType().equals("Constant") && OnnxOps.canonicalDomain(n.getDomain()).equals(OnnxOps.DEFAULT_DOMAIN)
                    || folded.contains(n)) {
                continue; // made at load
            }
            Tensor[] inputs = new Tensor[n.getInputCount()];
            for (int i = 0; i < inputs.length; i++) {
                String name = n.getInput(i);
                if (name.isEmpty()) {
                    continue;
                }
                Tensor t = env.get(name);
                if (t == null) {
                    throw new IllegalArgumentException(n.getOpType() + nodeText(n) + ": input '" + name
                            + "' is not defined before the node");
                }
                inputs[i] = t;
            }
            String domain = OnnxOps.canonicalDomain(n.getDomain());
            OnnxOps.Handler fused = fusedHandlers.get(n);
            OnnxNode node = new OnnxNode(n, inputs, fused != null ? opset : opsets.get(domain),
                    (g, args) -> runSubgraph(g, args, env));
            OnnxOps.Handler handler = fused != null ? fused : OnnxOps.entry(domain, n.getOpType()).handler();
            Tensor[] outputs;
            created.clear();
            try (Scope nodeScope = Scope.open()) {
                outputs = handler.run(node);
                for (Tensor t : outputs) {
                    if (t != null && nodeScope.owns(t)) {
                        created.put(nodeScope.keep(t), Boolean.TRUE);
                    }
                }
            }
            for (int i = 0; i < n.getOutputCount(); i++) {
                String name = n.getOutput(i);
                if (name.isEmpty()) {
                    continue;
                }
                if (i >= outputs.length || outputs[i] == null) {
                    throw new UnsupportedOperationException(node.describe() + ": output " + i + " ('" + name
                            + "') is not produced by this handler");
                }
                Tensor t = outputs[i];
                if (created.containsKey(t) || liveNames.containsKey(t)) {
                    liveNames.computeIfAbsent(t, k -> new int[1])[0]++;
                }
                env.values.put(name, t);
            }
            for (String name : release[index]) {
                Tensor t = env.values.remove(name);
                int[] count = t == null ? null : liveNames.get(t);
                if (count != null && --count[0] == 0) {
                    liveNames.remove(t);
                    t.close();
                }
            }
        }
        List<Tensor> outs = new ArrayList<>();
        for (ValueInfoProto out : graph.getOutputList()) {
            Tensor t = env.get(out.getName());
            if (t == null) {
                throw new IllegalArgumentException("graph output '" + out.getName() + "' is never produced");
            }
            outs.add(t);
        }
        return outs;
    }

    /**
     * For each node of {@code graph}, by position, the values its nodes produce whose last reader
     * it is (a node reads its inputs and every name its subgraphs read, at any depth), or that it
     * produces and nothing reads. The graph's outputs are never in it.
     */
    @SuppressWarnings("unchecked")
    private static List<String>[] releasePlan(GraphProto graph) {
        Map<String, Integer> lastUse = new HashMap<>();
        for (int i = 0; i < graph.getNodeCount(); i++) {
            NodeProto n = graph.getNode(i);
            for (String out : n.getOutputList()) {
                if (!out.isEmpty()) {
                    lastUse.put(out, i);
                }
            }
        }
        for (int i = 0; i < graph.getNodeCount(); i++) {
            for (String name : namesRead(graph.getNode(i), new java.util.HashSet<>())) {
                Integer last = lastUse.get(name);
                if (last != null && last < i) {
                    lastUse.put(name, i);
                }
            }
        }
        for (ValueInfoProto out : graph.getOutputList()) {
            lastUse.remove(out.getName());
        }
        List<String>[] plan = new List[graph.getNodeCount()];
        Arrays.fill(plan, List.of());
        lastUse.forEach((name, i) -> {
            if (plan[i].isEmpty()) {
                plan[i] = new ArrayList<>();
            }
            plan[i].add(name);
        });
        return plan;
    }

    /** The names {@code n} reads: its inputs and, through its subgraphs, any name they read. */
    private static Set<String> namesRead(NodeProto n, Set<String> into) {
        for (String in : n.getInputList()) {
            if (!in.isEmpty()) {
                into.add(in);
            }
        }
        for (AttributeProto a : n.getAttributeList()) {
            List<GraphProto> graphs = new ArrayList<>(a.getGraphsList());
            if (a.hasG()) {
                graphs.add(a.getG());
            }
            for (GraphProto g : graphs) {
                for (NodeProto inner : g.getNodeList()) {
                    namesRead(inner, into);
                }
                for (ValueInfoProto out : g.getOutputList()) {
                    into.add(out.getName()); // a subgraph may return an outer value as it is
                }
            }
        }
        return into;
    }

    private List<Tensor> runSubgraph(GraphProto graph, List<Tensor> args, Env outer) {
        if (args.size() != graph.getInputCount()) {
            throw new IllegalArgumentException("subgraph '" + graph.getName() + "' takes " + graph.getInputCount()
                    + " inputs, given " + args.size());
        }
        Env env = new Env(outer);
        Map<String, Tensor> own = constants.get(graph);
        if (own != null) {
            env.values.putAll(own);
        }
        for (int i = 0; i < args.size(); i++) {
            env.values.put(graph.getInput(i).getName(), args.get(i));
        }
        return Collections.unmodifiableList(evaluate(graph, env));
    }
}
