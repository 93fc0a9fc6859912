package dev.cortado.graph;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Rebuilds a graph node by node for a pass: the graph's inputs, parameters and constants carry
 * over (parameters and constants only while something reads them), each old value maps to its new one, and a pass either {@link #copy copies} a node (new
 * output values, inputs mapped), {@link #replace replaces} a value by another, or adds new nodes
 * through {@link #builder()}.
 */
final class Rewriter {
    private final Graph source;
    private final Graph.Builder builder;
    private final Map<Value, Value> map = new IdentityHashMap<>();

    Rewriter(Graph source) {
        this.source = source;
        this.builder = source.derive();
        for (Value v : source.inputs()) {
            map.put(v, builder.keep(v));
        }
    }

    Graph.Builder builder() {
        return builder;
    }

    /** The new value of {@code old} (null stays null). */
    Value map(Value old) {
        if (old == null) {
            return null;
        }
        Value v = map.get(old);
        if (v == null && old.kind() != Value.Kind.NODE && old.kind() != Value.Kind.INPUT) {
            v = builder.keep(old); // parameters and constants carry over when something still reads them
            map.put(old, v);
        }
        if (v == null) {
            throw new GraphException("value " + old + " is read before it is defined");
        }
        return v;
    }

    List<Value> map(List<Value> olds) {
        List<Value> out = new ArrayList<>(olds.size());
        for (Value v : olds) {
            out.add(map(v));
        }
        return out;
    }

    /** From now on, reads of {@code old} read {@code with}. */
    void replace(Value old, Value with) {
        map.put(old, with);
    }

    /** Re-adds {@code n} with its inputs mapped and fresh outputs of the same types. */
    void copy(Node n) {
        if (n instanceof Node.OpCall c) {
            List<TensorType> types = new ArrayList<>();
            for (Value v : c.outputs()) {
                types.add(v.type());
            }
            List<Value> outs = builder.op(c.op(), c.attrs(), map(c.inputs()), types);
            for (int i = 0; i < outs.size(); i++) {
                map.put(c.outputs().get(i), outs.get(i));
            }
        } else if (n instanceof Node.View v) {
            map.put(v.output(), builder.view(v.kind(), map(v.source()), v.output().type(), v.strides(), v.offset()));
        } else if (n instanceof Node.Copy c) {
            map.put(c.output(), builder.copy(c.kind(), map(c.source()), c.output().type()));
        } else if (n instanceof Node.Update u) {
            builder.update(u.kind(), u.rule(), map(u.reads()), map(u.writes()));
        }
    }

    /** The new graph: the source's outputs, mapped. */
    Graph finish() {
        for (Value v : source.outputs()) {
            builder.output(map(v));
        }
        return builder.build();
    }
}
