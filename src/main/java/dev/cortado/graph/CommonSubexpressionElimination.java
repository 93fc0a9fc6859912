package dev.cortado.graph;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Merges nodes that compute the same thing: the same op with equal attributes (their records'
 * {@code equals}) on the same values, the same view of the same value, the same copy. Nodes are
 * pure, so the second is replaced by the first one's outputs; updates ({@link Node.Update}) are
 * copied as they are. One forward walk with a table keyed
 * by (kind, op, attributes, inputs after replacement), so chains of duplicates merge in one pass.
 */
public final class CommonSubexpressionElimination implements Pass {
    @Override
    public String name() {
        return "cse";
    }

    /** What identifies a computation: values compare by identity, attributes by equals. */
    private record Key(String label, Object attrs, List<Object> inputs, List<Object> shape) {
    }

    @Override
    public Graph apply(Graph g) {
        Rewriter r = new Rewriter(g);
        Map<Key, List<Value>> seen = new HashMap<>();
        for (Node n : g.nodes()) {
            if (n instanceof Node.Update) {
                r.copy(n); // a side effect: never merged, kept where it is
                continue;
            }
            List<Value> mapped = r.map(n.inputs());
            List<Object> ins = new ArrayList<>();
            for (Value v : mapped) {
                ins.add(v == null ? "none" : new Identity(v));
            }
            Object attrs;
            List<Object> types = new ArrayList<>();
            for (Value out : n.outputs()) {
                types.add(out.type().dtype());
                types.add(out.type().shape());
            }
            if (n instanceof Node.OpCall c) {
                attrs = c.attrs() == null ? "none" : c.attrs();
                ins.add(0, c.op());
            } else if (n instanceof Node.View v) {
                attrs = Arrays.toString(v.strides()) + "@" + v.offset();
            } else {
                attrs = "copy";
            }
            Key key = new Key(n instanceof Node.OpCall ? "op" : n.label(), attrs, ins, types);
            List<Value> earlier = seen.get(key);
            if (earlier != null) {
                for (int i = 0; i < earlier.size(); i++) {
                    r.replace(n.outputs().get(i), earlier.get(i));
                }
                continue;
            }
            r.copy(n);
            List<Value> outs = new ArrayList<>();
            for (Value v : n.outputs()) {
                outs.add(r.map(v));
            }
            seen.put(key, outs);
        }
        return r.finish();
    }

    /** A value compared by identity inside a key. */
    private record Identity(Value value) {
        @Override
        public boolean equals(Object o) {
            return o instanceof Identity i && i.value == value;
        }

        @Override
        public int hashCode() {
            return System.identityHashCode(value);
        }
    }
}
