package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A minimal ONNX graph interpreter for the backend node tests: reads a {@code ModelProto}, walks
 * {@code graph.node} in order with a name -> tensor environment, and runs each node through the
 * handler registered for its {@code op_type} in {@link OnnxOps} (the op table that later work
 * extends: one {@code register("OpType", OnnxOps::handler)} line plus the handler).
 *
 * <p>Only the default domain ({@code ""} / {@code ai.onnx}) is supported. An input name of
 * {@code ""} is an omitted optional input and reaches the handler as null.
 */
public final class OnnxNodeRunner {
    private OnnxNodeRunner() {
    }

    /** Runs one ONNX node: returns its outputs in order (at least {@link Node#outputCount()}). */
    @FunctionalInterface
    public interface OpHandler {
        Tensor[] run(Node node);
    }

    /** A node being run: its inputs, attributes and the graph's opset. */
    public static final class Node {
        private final NodeProto proto;
        private final Tensor[] inputs;
        private final int opset;
        private final Map<String, AttributeProto> attributes = new HashMap<>();

        Node(NodeProto proto, Tensor[] inputs, int opset) {
            this.proto = proto;
            this.inputs = inputs;
            this.opset = opset;
            for (AttributeProto a : proto.getAttributeList()) {
                attributes.put(a.getName(), a);
            }
        }

        public NodeProto proto() {
            return proto;
        }

        public String opType() {
            return proto.getOpType();
        }

        /** The ai.onnx opset version the model imports. */
        public int opset() {
            return opset;
        }

        public int inputCount() {
            return inputs.length;
        }

        /** Input {@code i}, or null when it is omitted (name "" or past the end). */
        public Tensor input(int i) {
            return i < inputs.length ? inputs[i] : null;
        }

        /** Input {@code i}, which must be present. */
        public Tensor required(int i) {
            Tensor t = input(i);
            if (t == null) {
                throw error("input " + i + " is required");
            }
            return t;
        }

        /** Number of outputs the node names (trailing optional outputs may be left out). */
        public int outputCount() {
            return proto.getOutputCount();
        }

        /** Whether output {@code i} is requested (named and not ""). */
        public boolean wantsOutput(int i) {
            return i < proto.getOutputCount() && !proto.getOutput(i).isEmpty();
        }

        public boolean has(String attribute) {
            return attributes.containsKey(attribute);
        }

        public AttributeProto attribute(String name) {
            return attributes.get(name);
        }

        public long attrInt(String name, long defaultValue) {
            AttributeProto a = attributes.get(name);
            return a == null ? defaultValue : a.getI();
        }

        public int attrIntAsInt(String name, int defaultValue) {
            return Math.toIntExact(attrInt(name, defaultValue));
        }

        public double attrFloat(String name, double defaultValue) {
            AttributeProto a = attributes.get(name);
            return a == null ? defaultValue : a.getF();
        }

        public String attrString(String name, String defaultValue) {
            AttributeProto a = attributes.get(name);
            return a == null ? defaultValue : a.getS().toStringUtf8();
        }

        /** A repeated-int attribute, or null when absent. */
        public long[] attrInts(String name) {
            AttributeProto a = attributes.get(name);
            if (a == null) {
                return null;
            }
            long[] out = new long[a.getIntsCount()];
            for (int i = 0; i < out.length; i++) {
                out[i] = a.getInts(i);
            }
            return out;
        }

        public float[] attrFloats(String name) {
            AttributeProto a = attributes.get(name);
            if (a == null) {
                return null;
            }
            float[] out = new float[a.getFloatsCount()];
            for (int i = 0; i < out.length; i++) {
                out[i] = a.getFloats(i);
            }
            return out;
        }

        public TensorProto attrTensor(String name) {
            AttributeProto a = attributes.get(name);
            return a == null ? null : a.getT();
        }

        /** An exception naming the node. */
        public IllegalArgumentException error(String message) {
            return new IllegalArgumentException(describe() + ": " + message);
        }

        public String describe() {
            return proto.getOpType() + (proto.getName().isEmpty() ? "" : " '" + proto.getName() + "'") + " (opset "
                    + opset + ")";
        }
    }

    /** A graph node whose op has no handler (or a non-default domain). */
    public static final class UnsupportedOpException extends UnsupportedOperationException {
        private static final long serialVersionUID = 1L;

        public UnsupportedOpException(String message) {
            super(message);
        }
    }

    public static ModelProto readModel(Path modelOnnx) throws IOException {
        try (InputStream in = Files.newInputStream(modelOnnx)) {
            return ModelProto.parseFrom(in);
        }
    }

    /** The ai.onnx opset the model imports (domain "" or "ai.onnx"). */
    public static int opset(ModelProto model) {
        for (OperatorSetIdProto o : model.getOpsetImportList()) {
            if (o.getDomain().isEmpty() || o.getDomain().equals("ai.onnx")) {
                return Math.toIntExact(o.getVersion());
            }
        }
        throw new IllegalArgumentException("model imports no ai.onnx opset");
    }

    /** The distinct op types of the graph's nodes, in order of first use. */
    public static Set<String> opTypes(ModelProto model) {
        Set<String> ops = new LinkedHashSet<>();
        for (NodeProto n : model.getGraph().getNodeList()) {
            ops.add(n.getOpType());
        }
        return ops;
    }

    /** The graph's op types that have no handler (or a non-default domain); empty if all run. */
    public static Set<String> unsupportedOps(ModelProto model) {
        Set<String> missing = new LinkedHashSet<>();
        for (NodeProto n : model.getGraph().getNodeList()) {
            if (!isDefaultDomain(n.getDomain())) {
                missing.add(n.getDomain() + "." + n.getOpType());
            } else if (OnnxOps.handler(n.getOpType()) == null) {
                missing.add(n.getOpType());
            }
        }
        return missing;
    }

    private static boolean isDefaultDomain(String domain) {
        return domain.isEmpty() || domain.equals("ai.onnx");
    }

    /** The names of the graph inputs that are fed (those that are not initializers). */
    public static List<String> feedNames(GraphProto graph) {
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

    /**
     * Runs the graph on {@code feeds} (graph input name -> tensor, not taken over) and returns
     * the graph outputs by name, in graph order. Intermediate tensors are freed; the returned
     * ones belong to the caller (or to the caller's enclosing {@link Scope}).
     */
    public static Map<String, Tensor> run(ModelProto model, Map<String, Tensor> feeds) {
        GraphProto graph = model.getGraph();
        int opset = opset(model);
        Set<String> missing = unsupportedOps(model);
        if (!missing.isEmpty()) {
            throw new UnsupportedOpException("no handler for " + missing);
        }
        Map<String, Tensor> result = new LinkedHashMap<>();
        try (Scope scope = Scope.open()) {
            Map<String, Tensor> env = new HashMap<>();
            Device device = Device.defaultDevice();
            for (Tensor t : feeds.values()) {
                device = t.device();
                break;
            }
            for (TensorProto init : graph.getInitializerList()) {
                env.put(init.getName(), OnnxTensors.toTensor(init, device));
            }
            env.putAll(feeds);
            for (String name : feedNames(graph)) {
                if (!env.containsKey(name)) {
                    throw new IllegalArgumentException("graph input '" + name + "' is not fed");
                }
            }
            for (NodeProto n : graph.getNodeList()) {
                Tensor[] inputs = new Tensor[n.getInputCount()];
                for (int i = 0; i < inputs.length; i++) {
                    String name = n.getInput(i);
                    if (name.isEmpty()) {
                        continue;
                    }
                    Tensor t = env.get(name);
                    if (t == null) {
                        throw new IllegalArgumentException(n.getOpType() + " '" + n.getName() + "': input '" + name
                                + "' is not defined before the node");
                    }
                    inputs[i] = t;
                }
                Node node = new Node(n, inputs, opset);
                Tensor[] outputs = OnnxOps.handler(n.getOpType()).run(node);
                for (int i = 0; i < n.getOutputCount(); i++) {
                    String name = n.getOutput(i);
                    if (name.isEmpty()) {
                        continue;
                    }
                    if (i >= outputs.length || outputs[i] == null) {
                        throw new UnsupportedOperationException(node.describe() + ": output " + i + " ('" + name
                                + "') is not produced by this handler");
                    }
                    env.put(name, outputs[i]);
                }
            }
            for (ValueInfoProto out : graph.getOutputList()) {
                Tensor t = env.get(out.getName());
                if (t == null) {
                    throw new IllegalArgumentException("graph output '" + out.getName() + "' is never produced");
                }
                // A new handle owned by this scope (a view when contiguous), kept past it.
                result.put(out.getName(), scope.keep(t.contiguous()));
            }
        }
        return result;
    }
}
