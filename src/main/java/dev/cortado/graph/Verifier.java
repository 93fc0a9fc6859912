package dev.cortado.graph;

import dev.cortado.ops.Op;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The rules every graph keeps, checked after every pass in the tests:
 * <ul>
 * <li>single assignment: each value is defined once (by the graph or by one node);</li>
 * <li>acyclic and ordered: a node reads only values defined before it, so the node list is a
 * topological order (a cycle cannot be written down without breaking this);</li>
 * <li>types: an op call has its declaration's inputs (required ones present) and outputs of
 * exactly the types its shape rule gives for its inputs' types, on its inputs' device; a view keeps
 * its source's dtype and device and stays inside the memory its source reads; a copy keeps the
 * sizes;</li>
 * <li>the outputs are defined;</li>
 * <li>updates ({@link Node.Update}) write parameters only, each parameter is written by at most
 * one update, and an update is the last access of what it writes: every other node that reads a
 * written parameter or a view of it comes before the update, and no output is (a view of) it.
 * This write-after-read order is what passes must keep, since no data edge carries it.</li>
 * </ul>
 */
public final class Verifier {
    private Verifier() {
    }

    /** Throws {@link GraphException} naming the first rule {@code g} breaks. */
    public static void verify(Graph g) {
        Set<Value> defined = Collections.newSetFromMap(new IdentityHashMap<>());
        // for each value, the element range [lo, hi] of its root's memory it reads, relative to the root's first element
        Map<Value, long[]> reach = new IdentityHashMap<>();
        Map<Value, long[]> rootSpan = new IdentityHashMap<>();
        for (Value v : g.inputs()) {
            define(defined, v, "input", Value.Kind.INPUT);
            root(v, g, reach, rootSpan);
        }
        for (Value v : g.parameters()) {
            define(defined, v, "parameter", Value.Kind.PARAMETER);
            requireTensor(v);
            root(v, g, reach, rootSpan);
        }
        for (Value v : g.constants()) {
            define(defined, v, "constant", Value.Kind.CONSTANT);
            requireTensor(v);
            root(v, g, reach, rootSpan);
        }
        int index = 0;
        for (Node n : g.nodes()) {
            String where = "node " + index + " (" + n.label() + ")";
            for (Value in : n.inputs()) {
                if (in != null && !defined.contains(in)) {
                    throw new GraphException(where + " reads " + in + " before it is defined (a cycle, or nodes out of order)");
                }
            }
            checkTypes(g, n, where, reach, rootSpan);
            for (Value out : n.outputs()) {
                define(defined, out, where, Value.Kind.NODE);
            }
            index++;
        }
        for (Value v : g.outputs()) {
            if (!defined.contains(v)) {
                throw new GraphException("output " + v + " is not defined by the graph");
            }
        }
        checkUpdates(g);
    }

    /** The write-after-read rules of {@link Node.Update}. */
    private static void checkUpdates(Graph g) {
        List<Node> nodes = g.nodes();
        Map<Value, Integer> writtenAt = new IdentityHashMap<>();
        for (int i = 0; i < nodes.size(); i++) {
            if (!(nodes.get(i) instanceof Node.Update u)) {
                continue;
            }
            for (Value w : u.writes()) {
                if (w == null || w.kind() != Value.Kind.PARAMETER) {
                    throw new GraphException("node " + i + " (" + u.label() + ") writes " + w
                            + ", which is not a parameter (updates write tensors held by reference only)");
                }
                Integer before = writtenAt.put(w, i);
                if (before != null) {
                    throw new GraphException("node " + i + " (" + u.label() + ") writes " + w + ", written already by node "
                            + before);
                }
            }
        }
        if (writtenAt.isEmpty()) {
            return;
        }
        for (int i = 0; i < nodes.size(); i++) {
            Node n = nodes.get(i);
            for (Value in : n.inputs()) {
                Integer at = in == null ? null : writtenAt.get(MemoryPlan.root(g, in));
                if (at != null && at != i && at < i) {
                    throw new GraphException("node " + i + " (" + n.label() + ") reads " + in + " after node " + at
                            + " (" + nodes.get(at).label() + ") updated it in place: an update must come after every read"
                            + " of the old value");
                }
            }
        }
        for (Value v : g.outputs()) {
            Integer at = writtenAt.get(MemoryPlan.root(g, v));
            if (at != null) {
                throw new GraphException("output " + v + " reads a parameter that node " + at + " updates in place");
            }
        }
    }

    private static void define(Set<Value> defined, Value v, String by, Value.Kind expected) {
        if (v == null) {
            throw new GraphException(by + " defines a null value");
        }
        if (v.kind() != expected) {
            throw new GraphException(by + " defines " + v + " of kind " + v.kind() + ", expected " + expected);
        }
        if (!defined.add(v)) {
            throw new GraphException(by + " defines " + v + " a second time (single assignment)");
        }
    }

    private static void requireTensor(Value v) {
        if (v.tensor() == null || v.tensor().isClosed()) {
            throw new GraphException(v.kind() + " " + v + " has no open tensor");
        }
        if (!TensorType.of(v.tensor()).sameConcrete(v.type())) {
            throw new GraphException(v.kind() + " " + v + " does not match its tensor " + v.tensor().describe());
        }
    }

    /** A value that owns its memory: it reads [0, span] of itself. */
    private static void root(Value v, Graph g, Map<Value, long[]> reach, Map<Value, long[]> rootSpan) {
        long span = span(v.type().shape().toArray(), g.strides(v));
        reach.put(v, new long[] {0, span});
        rootSpan.put(v, new long[] {0, span});
    }

    /** The largest element offset a tensor of these sizes and strides reads (-1 when empty). */
    private static long span(long[] dims, long[] strides) {
        long last = 0;
        for (int i = 0; i < dims.length; i++) {
            if (dims[i] == 0) {
                return -1;
            }
            last += (dims[i] - 1) * strides[i];
        }
        return last;
    }

    private static void checkTypes(Graph g, Node n, String where, Map<Value, long[]> reach, Map<Value, long[]> rootSpan) {
        if (n instanceof Node.OpCall c) {
            Op<?> op = c.op();
            List<Value> in = c.inputs();
            for (int i = 0; i < in.size(); i++) {
                if (in.get(i) == null && !op.isOptionalInput(i)) {
                    throw new GraphException(where + ": required input '" + op.inputName(i) + "' is missing");
                }
            }
            List<TensorType> expected;
            try {
                expected = Graph.infer(op, c.attrs(), in);
            } catch (RuntimeException e) {
                throw new GraphException(where + ": the shape rule rejects its inputs: " + e.getMessage());
            }
            if (expected.size() != c.outputs().size()) {
                throw new GraphException(where + " has " + c.outputs().size() + " outputs, its shape rule gives "
                        + expected.size());
            }
            for (int i = 0; i < expected.size(); i++) {
                TensorType have = c.outputs().get(i).type();
                if (!have.sameConcrete(expected.get(i))) {
                    throw new GraphException(where + ": output " + i + " is " + have + ", the shape rule gives "
                            + expected.get(i));
                }
            }
            for (Value out : c.outputs()) {
                root(out, g, reach, rootSpan);
            }
        } else if (n instanceof Node.View v) {
            TensorType s = v.source().type();
            TensorType o = v.output().type();
            if (s.dtype() != o.dtype() || !s.device().equals(o.device())) {
                throw new GraphException(where + ": view " + o + " changes the dtype or device of " + v.source());
            }
            long[] src = reach.get(v.source());
            long[] rootRange = rootSpan.get(v.source());
            long span = span(o.shape().toArray(), v.strides());
            if (span >= 0) {
                long lo = src[0] + v.offset();
                long hi = lo + span;
                if (lo < rootRange[0] || hi > rootRange[1]) {
                    throw new GraphException(where + ": view " + v.output() + " reads elements " + lo + ".." + hi
                            + " of memory that holds " + rootRange[0] + ".." + rootRange[1]);
                }
                reach.put(v.output(), new long[] {lo, hi});
            } else {
                reach.put(v.output(), new long[] {src[0], src[0] - 1});
            }
            rootSpan.put(v.output(), rootRange);
        } else if (n instanceof Node.Copy c) {
            if (!c.source().type().shape().equals(c.output().type().shape())) {
                throw new GraphException(where + ": copy " + c.output() + " changes the sizes of " + c.source());
            }
            root(c.output(), g, reach, rootSpan);
        }
    }
}
