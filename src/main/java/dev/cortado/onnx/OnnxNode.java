package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.tensor.Tensor;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * One ONNX node as its handler sees it while a model runs: the node's proto, its input tensors
 * (null for an omitted optional input), its attributes and the opset of its domain that the model
 * imports. Handlers read the versioned form of their op through {@link #opset()}.
 */
public final class OnnxNode {
    /** Runs a graph-valued attribute (the branches of If, the body of Loop and Scan). */
    @FunctionalInterface
    interface SubgraphRunner {
        List<Tensor> run(GraphProto graph, List<Tensor> inputs);
    }

    private final NodeProto proto;
    private final Tensor[] inputs;
    private final int opset;
    private final Map<String, AttributeProto> attributes = new HashMap<>();
    private final SubgraphRunner subgraphs;

    OnnxNode(NodeProto proto, Tensor[] inputs, int opset, SubgraphRunner subgraphs) {
        this.proto = proto;
        this.inputs = inputs;
        this.opset = opset;
        this.subgraphs = subgraphs;
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

    /** The version of the node's domain that the model imports. */
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

    /**
     * Runs the graph attribute {@code name} with {@code inputs} bound to its formal inputs (in
     * order); names it does not define resolve in the enclosing graphs. Returns its outputs.
     */
    public List<Tensor> runSubgraph(String name, List<Tensor> inputs) {
        AttributeProto a = attributes.get(name);
        if (a == null || !a.hasG()) {
            throw error("graph attribute '" + name + "' is missing");
        }
        return subgraphs.run(a.getG(), inputs);
    }

    /** An exception naming the node. */
    public IllegalArgumentException error(String message) {
        return new IllegalArgumentException(describe() + ": " + message);
    }

    /** "OpType 'name' (opset N)". */
    public String describe() {
        return proto.getOpType() + (proto.getName().isEmpty() ? "" : " '" + proto.getName() + "'") + " (opset "
                + opset + ")";
    }
}
