package dev.cortado.graph;

import dev.cortado.ops.Op;
import dev.cortado.ops.TensorSpec;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * A captured function as data: its inputs, the parameters it reads by reference, the constants it
 * owns, its nodes in an order where every value is defined before it is read, and its outputs.
 * Immutable; passes return new graphs ({@link Pass}). {@link #toString()} is the text form
 * (one line per node, like torch.fx), {@link #toDot()} a Graphviz rendering, {@link #verify()}
 * the checks every pass must keep true.
 *
 * <p>A graph owns views of its constants' tensors and closes them in {@link #close()}; parameters
 * belong to their module. Values are shared between a graph and the graphs passes derive from it,
 * each holding its own view of a shared constant.
 */
public final class Graph implements AutoCloseable {
    private final List<Value> inputs;
    private final List<Value> parameters;
    private final List<Value> constants;
    private final List<Node> nodes;
    private final List<Value> outputs;
    private final Map<Value, Node> producers = new IdentityHashMap<>();
    private final List<Tensor> owned;
    private final int nextId;
    private boolean closed;

    private Graph(Builder b) {
        this.inputs = List.copyOf(b.inputs);
        this.parameters = List.copyOf(b.parameters);
        this.constants = List.copyOf(b.constants);
        this.nodes = List.copyOf(b.nodes);
        this.outputs = List.copyOf(b.outputs);
        this.owned = List.copyOf(b.owned);
        this.nextId = b.nextId;
        for (Node n : nodes) {
            for (Value v : n.outputs()) {
                producers.put(v, n);
            }
        }
    }

    public static Builder builder() {
        return new Builder(0);
    }

    public List<Value> inputs() {
        return inputs;
    }

    public List<Value> parameters() {
        return parameters;
    }

    public List<Value> constants() {
        return constants;
    }

    /** The nodes in execution order (every input defined earlier). */
    public List<Node> nodes() {
        return nodes;
    }

    public List<Value> outputs() {
        return outputs;
    }

    /** The node defining {@code v}, or null for inputs, parameters and constants. */
    public Node producer(Value v) {
        return producers.get(v);
    }

    /**
     * {@code v} with the identity views over it taken away: while {@code v} is a view that reads its
     * source exactly as it is (same sizes and strides, offset 0, such as the {@code detach} the tape
     * makes of each tensor it saves), its source. Passes matching patterns compare values this way.
     */
    Value origin(Value v) {
        while (v != null && producers.get(v) instanceof Node.View view && view.offset() == 0
                && view.output().type().sameConcrete(view.source().type())
                && Arrays.equals(view.strides(), strides(view.source()))) {
            v = view.source();
        }
        return v;
    }

    /**
     * The nodes that read each value, seen through identity views ({@link #origin}): keyed by the
     * value under the views, identity views themselves left out, and each returned value read once
     * more by a null entry. A view the tape made of a saved tensor that nothing reads does not count.
     */
    Map<Value, List<Node>> readersThroughIdentityViews() {
        Map<Value, List<Node>> rd = new IdentityHashMap<>();
        for (Node n : nodes) {
            if (n instanceof Node.View v && origin(v.output()) != v.output()) {
                continue;
            }
            for (Value v : n.inputs()) {
                if (v != null) {
                    rd.computeIfAbsent(origin(v), x -> new ArrayList<>()).add(n);
                }
            }
        }
        for (Value v : outputs) {
            rd.computeIfAbsent(origin(v), x -> new ArrayList<>()).add(null);
        }
        return rd;
    }

    /** How many times each value is read (node inputs and graph outputs). */
    public Map<Value, Integer> useCounts() {
        Map<Value, Integer> uses = new IdentityHashMap<>();
        for (Node n : nodes) {
            for (Value v : n.inputs()) {
                if (v != null) {
                    uses.merge(v, 1, Integer::sum);
                }
            }
        }
        for (Value v : outputs) {
            uses.merge(v, 1, Integer::sum);
        }
        return uses;
    }

    /**
     * The element strides {@code v} has when the graph runs: contiguous for inputs and for the
     * outputs of ops and copies, the view's own for views, the tensor's for parameters and constants.
     */
    public long[] strides(Value v) {
        if (v.tensor() != null) {
            return v.tensor().strides();
        }
        if (producers.get(v) instanceof Node.View view) {
            return view.strides();
        }
        return v.type().shape().contiguousStrides();
    }

    /**
     * A builder that continues this graph's value numbering (for passes: new values get fresh ids).
     * Nothing of this graph is copied; see {@link Rewriter} for rebuilding a graph node by node.
     */
    Builder derive() {
        return new Builder(nextId);
    }

    /** Runs the checks of {@link Verifier} and returns this graph; throws {@link GraphException} naming the first problem. */
    public Graph verify() {
        Verifier.verify(this);
        return this;
    }

    /** The text form: the signature, one line per parameter, constant and node, and the returned values. */
    @Override
    public String toString() {
        StringBuilder s = new StringBuilder("graph(");
        for (int i = 0; i < inputs.size(); i++) {
            s.append(i == 0 ? "" : ", ").append(inputs.get(i));
        }
        s.append(") {\n");
        for (Value p : parameters) {
            s.append("  ").append(p).append(" = parameter\n");
        }
        for (Value c : constants) {
            s.append("  ").append(c).append(" = constant\n");
        }
        for (Node n : nodes) {
            s.append("  ");
            List<Value> outs = n.outputs();
            for (int i = 0; i < outs.size(); i++) {
                s.append(i == 0 ? "" : ", ").append(outs.get(i));
            }
            s.append(outs.isEmpty() ? "" : " = ").append(n.label()).append('(');
            List<Value> ins = n.inputs();
            for (int i = 0; i < ins.size(); i++) {
                s.append(i == 0 ? "" : ", ").append(ins.get(i) == null ? "none" : ins.get(i).ref());
            }
            String attrs = n.attributes();
            if (!attrs.isEmpty()) {
                s.append(ins.isEmpty() ? "" : ", ").append(attrs);
            }
            s.append(")\n");
        }
        s.append("  return (");
        for (int i = 0; i < outputs.size(); i++) {
            s.append(i == 0 ? "" : ", ").append(outputs.get(i).ref());
        }
        return s.append(")\n}\n").toString();
    }

    /** A Graphviz DOT rendering: a box per node, an ellipse per input, parameter and constant, edges labelled with types. */
    public String toDot() {
        StringBuilder s = new StringBuilder("digraph graph {\n  rankdir=TB;\n  node [fontname=\"monospace\"];\n");
        Map<Value, String> source = new IdentityHashMap<>();
        int k = 0;
        for (List<Value> group : List.of(inputs, parameters, constants)) {
            for (Value v : group) {
                String id = "v" + v.id();
                String color = v.kind() == Value.Kind.INPUT ? "lightblue" : v.kind() == Value.Kind.PARAMETER ? "lightyellow" : "lightgrey";
                s.append("  ").append(id).append(" [shape=ellipse, style=filled, fillcolor=").append(color)
                        .append(", label=\"").append(dotEscape(v.ref() + "\\n" + v.type())).append("\"];\n");
                source.put(v, id);
            }
        }
        for (Node n : nodes) {
            String id = "n" + (k++);
            String attrs = n.attributes();
            s.append("  ").append(id).append(" [shape=box, label=\"").append(dotEscape(n.label()))
                    .append(attrs.isEmpty() ? "" : "\\n" + dotEscape(attrs)).append("\"];\n");
            for (Value in : n.inputs()) {
                if (in != null) {
                    s.append("  ").append(source.get(in)).append(" -> ").append(id).append(" [label=\"")
                            .append(dotEscape(in.ref() + " " + in.type())).append("\"];\n");
                }
            }
            for (Value out : n.outputs()) {
                source.put(out, id);
            }
        }
        for (int i = 0; i < outputs.size(); i++) {
            Value v = outputs.get(i);
            s.append("  out").append(i).append(" [shape=ellipse, style=filled, fillcolor=lightgreen, label=\"output ")
                    .append(i).append("\"];\n");
            s.append("  ").append(source.get(v)).append(" -> out").append(i).append(" [label=\"")
                    .append(dotEscape(v.ref() + " " + v.type())).append("\"];\n");
        }
        return s.append("}\n").toString();
    }

    private static String dotEscape(String s) {
        return s.replace("\\n", "\u0000").replace("\\", "\\\\").replace("\"", "\\\"").replace("\u0000", "\\n");
    }

    /** Closes this graph's views of its constants (parameters belong to their module). Idempotent. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            for (Tensor t : owned) {
                t.close();
            }
        }
    }

    /** Output types of {@code op} on values of these types, from the op's own shape rule. */
    static List<TensorType> infer(Op<?> op, Object attrs, List<Value> inputs) {
        Tensor[] probes = new Tensor[inputs.size()];
        try (Scope scope = Scope.detached()) {
            for (int i = 0; i < probes.length; i++) {
                Value v = inputs.get(i);
                if (v != null) {
                    probes[i] = v.tensor() != null ? v.tensor() : Tensor.empty(v.type().dtype(), v.type().device(), v.type().shape());
                }
            }
            TensorSpec[] specs = inferRaw(op, attrs, probes);
            List<TensorType> out = new ArrayList<>(specs.length);
            for (TensorSpec spec : specs) {
                out.add(TensorType.of(spec.dtype(), inputs.isEmpty() ? null : deviceOf(inputs), spec.shape()));
            }
            return out;
        } finally {
            for (int i = 0; i < probes.length; i++) {
                if (probes[i] != null && inputs.get(i).tensor() == null) {
                    probes[i].close();
                }
            }
        }
    }

    private static dev.cortado.tensor.Device deviceOf(List<Value> inputs) {
        for (Value v : inputs) {
            if (v != null) {
                return v.type().device();
            }
        }
        throw new IllegalArgumentException("no inputs");
    }

    @SuppressWarnings("unchecked")
    private static <A> TensorSpec[] inferRaw(Op<A> op, Object attrs, Tensor[] inputs) {
        return op.infer((A) attrs, inputs);
    }

    /**
     * Builds a graph: define inputs, parameters and constants, add nodes in execution order, name
     * the outputs, {@link #build()}. Closing a builder that was not built closes the constants'
     * views it took.
     */
    public static final class Builder implements AutoCloseable {
        private final List<Value> inputs = new ArrayList<>();
        private final List<Value> parameters = new ArrayList<>();
        private final List<Value> constants = new ArrayList<>();
        private final List<Node> nodes = new ArrayList<>();
        private final List<Value> outputs = new ArrayList<>();
        private final List<Tensor> owned = new ArrayList<>();
        private int nextId;
        private boolean built;

        private Builder(int firstId) {
            this.nextId = firstId;
        }

        private Value value(Value.Kind kind, TensorType type, String name, Tensor tensor) {
            return new Value(nextId++, kind, type, name, tensor);
        }

        public Value input(TensorType type) {
            Value v = value(Value.Kind.INPUT, type, null, null);
            inputs.add(v);
            return v;
        }

        /** A tensor read by reference each time the graph runs (a module's parameter or buffer). */
        public Value parameter(Tensor t, String name) {
            t.ensureOpen("parameter " + name);
            Value v = value(Value.Kind.PARAMETER, TensorType.of(t), name, t);
            parameters.add(v);
            return v;
        }

        /** A constant: the graph takes a view of {@code t} (the caller keeps and closes its own). */
        public Value constant(Tensor t) {
            t.ensureOpen("constant");
            Tensor mine;
            try (Scope s = Scope.detached()) {
                mine = t.asStrided(t.dtype(), t.shape(), t.strides(), t.offset());
            }
            owned.add(mine);
            Value v = value(Value.Kind.CONSTANT, TensorType.of(t), null, mine);
            constants.add(v);
            return v;
        }

        /** Keeps an existing input, parameter or constant value (for passes rebuilding a graph). */
        Value keep(Value v) {
            switch (v.kind()) {
                case INPUT -> inputs.add(v);
                case PARAMETER -> parameters.add(v);
                case CONSTANT -> {
                    Tensor t = v.tensor();
                    Tensor mine;
                    try (Scope s = Scope.detached()) {
                        mine = t.asStrided(t.dtype(), t.shape(), t.strides(), t.offset());
                    }
                    owned.add(mine);
                    Value c = new Value(v.id(), Value.Kind.CONSTANT, v.type(), v.name(), mine);
                    constants.add(c);
                    return c;
                }
                default -> throw new IllegalArgumentException("only graph-defined values are kept, not " + v);
            }
            return v;
        }

        /** A call of {@code op}; output types from its shape rule. */
        public List<Value> op(Op<?> op, Object attrs, List<Value> in) {
            return op(op, attrs, in, infer(op, attrs, in));
        }

        /** A call of {@code op} with the given output types (capture knows them from the run). */
        public List<Value> op(Op<?> op, Object attrs, List<Value> in, List<TensorType> outputTypes) {
            List<Value> outs = new ArrayList<>(outputTypes.size());
            for (TensorType t : outputTypes) {
                outs.add(value(Value.Kind.NODE, t, null, null));
            }
            nodes.add(new Node.OpCall(op, attrs, in, outs));
            return outs;
        }

        /** A single-output call, types from the shape rule. */
        public Value op1(Op<?> op, Object attrs, Value... in) {
            return op(op, attrs, Arrays.asList(in)).get(0);
        }

        public Value view(String kind, Value source, TensorType type, long[] strides, long offset) {
            Value v = value(Value.Kind.NODE, type, null, null);
            nodes.add(new Node.View(kind, source, v, strides, offset));
            return v;
        }

        public Value copy(String kind, Value source, TensorType type) {
            Value v = value(Value.Kind.NODE, type, null, null);
            nodes.add(new Node.Copy(kind, source, v));
            return v;
        }

        /** An in-place update of the parameters {@code writes} by {@code rule}, reading {@code reads} (see {@link Node.Update}). */
        public void update(String kind, Node.UpdateRule rule, List<Value> reads, List<Value> writes) {
            nodes.add(new Node.Update(kind, rule, reads, writes));
        }

        /** Appends a node whose outputs are fresh values of this builder (a rewriter re-adding a node). */
        void add(Node n) {
            nodes.add(n);
        }

        /** A fresh node value of this builder (for {@link Rewriter}). */
        Value fresh(TensorType type) {
            return value(Value.Kind.NODE, type, null, null);
        }

        public Builder output(Value... vs) {
            outputs.addAll(Arrays.asList(vs));
            return this;
        }

        public Graph build() {
            if (built) {
                throw new IllegalStateException("built already");
            }
            built = true;
            return new Graph(this);
        }

        @Override
        public void close() {
            if (!built) {
                built = true;
                for (Tensor t : owned) {
                    t.close();
                }
            }
        }
    }
}
