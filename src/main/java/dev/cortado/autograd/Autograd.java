package dev.cortado.autograd;

import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.Op;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.AutogradHook;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * The autograd tape. When an input of an op requires gradients (a leaf marked
 * {@link Tensor#requiresGrad(boolean)}, or a tensor computed from one) and recording is on, the
 * op registry records a {@link TapeNode} holding the op's backward rule, where each input's gradient
 * goes, and the tensors the rule declared it needs. {@link Tensor#backward()} walks the nodes in
 * reverse topological order, runs each rule (written with ops, so on every backend), sums
 * gradients that meet, and accumulates into the leaves' {@link Tensor#grad()}.
 *
 * <p>Memory: a node frees what it saved as soon as backward has used it (unless
 * {@code retainGraph}), or as soon as nothing can reach it any more (every output closed, no
 * consumer left). Gradients of leaves belong to the leaf; everything else backward creates is
 * closed before it returns. Recording is per thread; {@link #noGrad()} turns it off in a block.
 */
public final class Autograd {
    private static final ThreadLocal<boolean[]> ENABLED = ThreadLocal.withInitial(() -> new boolean[] {true});
    private static final Tape TAPE = new Tape();

    static {
        AutogradHook.install(TAPE);
        Op.installRecorder(TAPE);
    }

    private Autograd() {
    }

    /** Whether ops on this thread are recorded now. */
    public static boolean isGradEnabled() {
        return ENABLED.get()[0];
    }

    /** Turns recording off until the returned mode is closed: {@code try (var g = Autograd.noGrad()) {...}}. */
    public static GradMode noGrad() {
        return new GradMode(false);
    }

    /** Turns recording back on inside a {@link #noGrad()} block. */
    public static GradMode enableGrad() {
        return new GradMode(true);
    }

    /** Backward from {@code root} (see {@link Tensor#backward(Tensor, boolean)}). */
    public static void backward(Tensor root, Tensor seed, boolean retainGraph) {
        TAPE.backward(root, seed, retainGraph);
    }

    /**
     * Calls {@code listener} with {@code leaf} during every backward that reaches it, as soon as
     * the leaf's gradient for that backward is complete (every contribution accumulated), while
     * the rest of the backward still runs: where data-parallel training starts communicating a
     * gradient. Runs on the thread running backward. Close the registration to stop.
     */
    public static Registration onGradientReady(Tensor leaf, Consumer<Tensor> listener) {
        if (!leaf.isLeaf() || !leaf.requiresGrad()) {
            throw new IllegalArgumentException("Autograd.onGradientReady: " + leaf.describe()
                    + " is not a leaf that requires gradients");
        }
        READY.computeIfAbsent(leaf, k -> new CopyOnWriteArrayList<>()).add(listener);
        return () -> READY.computeIfPresent(leaf, (k, list) -> {
            list.remove(listener);
            return list.isEmpty() ? null : list;
        });
    }

    /** A listener installed by {@link #onGradientReady}; closing removes it. */
    @FunctionalInterface
    public interface Registration extends AutoCloseable {
        @Override
        void close();
    }

    /** Listeners by leaf (identity: tensors do not override equals). */
    private static final Map<Tensor, List<Consumer<Tensor>>> READY = new ConcurrentHashMap<>();

    private static void gradientReady(Tensor leaf) {
        List<Consumer<Tensor>> listeners = READY.get(leaf);
        if (listeners != null && !leaf.isClosed()) {
            for (Consumer<Tensor> l : listeners) {
                l.accept(leaf);
            }
        }
    }

    /**
     * The backward rule of a function recorded with {@link #recordFunction}: the gradients of its
     * inputs (null where none) from the gradients of its outputs (null for an output no gradient
     * reached), given the tensors the function saved. It runs with recording off; a rule may turn
     * it on ({@link #enableGrad()}) and run a backward of its own, whose gradients accumulate into
     * the leaves it reaches (how recomputing layers such as reversible or memory-efficient dense
     * blocks give their parameters gradients without storing activations).
     */
    @FunctionalInterface
    public interface FunctionBackward {
        /** Input gradients (new tensors; the tape closes them), one per input. */
        Tensor[] backward(Tensor[] saved, Tensor[] outputGradients);
    }

    /**
     * Records a function computed outside the tape (typically under {@link #noGrad()}) as one node:
     * gradients reaching {@code outputs} flow to {@code inputs} through {@code backward}. The node
     * keeps aliases of {@code saved} (sharing storage) and frees them like an op's saved tensors:
     * after backward has used them, or when no output can reach the node any more. Nothing is
     * recorded when recording is off or no input requires gradients. Each output must be a fresh
     * tensor the tape has not seen. A leaf that the rule's own backward gives a gradient to should
     * also be an input (with a null gradient returned): {@link #onGradientReady} listeners hear of
     * it once, when that input's edge is done (a nested backward announces nothing itself).
     */
    public static void recordFunction(String name, Tensor[] inputs, Tensor[] outputs, Tensor[] saved,
            FunctionBackward backward) {
        TAPE.recordFunction(name, inputs, outputs, saved, backward);
    }

    /** Sums {@code gradient} over the dimensions it was broadcast along, down to {@code shape}. */
    public static Tensor sumToShape(Tensor gradient, Shape shape) {
        return TAPE.sumToShape(gradient, shape);
    }

    /** A recording switch for one block; closing restores the previous state. */
    public static final class GradMode implements AutoCloseable {
        private final boolean previous;
        private final boolean[] flag;

        private GradMode(boolean enabled) {
            flag = ENABLED.get();
            previous = flag[0];
            flag[0] = enabled;
        }

        @Override
        public void close() {
            flag[0] = previous;
        }
    }

    /** Records ops and views, and runs backward. */
    private static final class Tape implements AutogradHook, Op.Recorder {

        @Override
        public boolean recording() {
            return isGradEnabled();
        }

        @Override
        public <A> void record(Op<A> op, A attrs, Tensor[] inputs, Tensor[] outputs) {
            if (!isGradEnabled() || !anyFloating(outputs)) {
                return;
            }
            TapeNode.Edge[] edges = new TapeNode.Edge[inputs.length];
            boolean any = false;
            Shape[] shapes = new Shape[inputs.length];
            DType[] dtypes = new DType[inputs.length];
            for (int i = 0; i < inputs.length; i++) {
                Tensor t = inputs[i];
                if (t == null) {
                    continue;
                }
                shapes[i] = t.shape();
                dtypes[i] = t.dtype();
                if (t.requiresGrad() && t.dtype().isFloatingPoint()) {
                    edges[i] = edgeTo(t);
                    any = true;
                }
            }
            if (!any) {
                return;
            }
            Tensor[] savedIn = null;
            Tensor[] savedOut = null;
            try (Scope s = Scope.detached()) {
                if (op.saves().inputs()) {
                    savedIn = aliases(inputs);
                }
                if (op.saves().outputs()) {
                    savedOut = aliases(outputs);
                }
            }
            Op.BackwardRule<A> rule = op.backward();
            TapeNode.Backward fn = rule == null
                    ? (n, g) -> {
                        throw new UnsupportedOperationException(op.name() + " has no backward rule: gradients cannot "
                                + "flow through it (compute it under Autograd.noGrad(), or detach() its inputs)");
                    }
                    : (n, g) -> rule.backward(attrs, n, g);
            TapeNode node = new TapeNode(op.name(), fn, edges, shapes, dtypes, outputs, savedIn, savedOut);
            for (int i = 0; i < outputs.length; i++) {
                if (outputs[i].dtype().isFloatingPoint()) {
                    outputs[i].attachGradNode(node, i);
                    node.addOutputReference();
                }
            }
        }

        void recordFunction(String name, Tensor[] inputs, Tensor[] outputs, Tensor[] saved, FunctionBackward backward) {
            for (Tensor o : outputs) {
                if (!o.isLeaf() || o.requiresGrad()) {
                    throw new IllegalArgumentException("Autograd.recordFunction(" + name + "): output " + o.describe()
                            + " is already on the tape");
                }
            }
            if (!isGradEnabled() || !anyFloating(outputs)) {
                return;
            }
            TapeNode.Edge[] edges = new TapeNode.Edge[inputs.length];
            Shape[] shapes = new Shape[inputs.length];
            DType[] dtypes = new DType[inputs.length];
            boolean any = false;
            for (int i = 0; i < inputs.length; i++) {
                Tensor t = inputs[i];
                shapes[i] = t.shape();
                dtypes[i] = t.dtype();
                if (t.requiresGrad() && t.dtype().isFloatingPoint()) {
                    edges[i] = edgeTo(t);
                    any = true;
                }
            }
            if (!any) {
                return;
            }
            Tensor[] kept;
            try (Scope s = Scope.detached()) {
                kept = aliases(saved);
            }
            int count = saved.length;
            TapeNode node = new TapeNode(name, (n, g) -> {
                Tensor[] view = new Tensor[count];
                for (int i = 0; i < count; i++) {
                    view[i] = n.input(i);
                }
                return backward.backward(view, g);
            }, edges, shapes, dtypes, outputs, kept, null);
            for (int i = 0; i < outputs.length; i++) {
                if (outputs[i].dtype().isFloatingPoint()) {
                    outputs[i].attachGradNode(node, i);
                    node.addOutputReference();
                }
            }
        }

        @Override
        public void recordView(String name, Tensor source, Tensor view, ViewBackward backward) {
            if (!isGradEnabled()) {
                return;
            }
            TapeNode node = new TapeNode(name, (n, g) -> new Tensor[] {g[0] == null ? null : backward.apply(g[0])},
                    new TapeNode.Edge[] {edgeTo(source)}, new Shape[] {source.shape()}, new DType[] {source.dtype()},
                    new Tensor[] {view}, null, null);
            view.attachGradNode(node, 0);
            node.addOutputReference();
        }

        private static TapeNode.Edge edgeTo(Tensor t) {
            return t.isLeaf() ? new TapeNode.Edge(t, null, 0) : new TapeNode.Edge(null, (TapeNode) t.gradNode(), t.gradOutput());
        }

        private static boolean anyFloating(Tensor[] ts) {
            for (Tensor t : ts) {
                if (t.dtype().isFloatingPoint()) {
                    return true;
                }
            }
            return false;
        }

        private static Tensor[] aliases(Tensor[] ts) {
            Tensor[] out = new Tensor[ts.length];
            for (int i = 0; i < ts.length; i++) {
                out[i] = ts[i] == null ? null : ts[i].detach();
            }
            return out;
        }

        /** Backward calls running on this thread: a rule's own backward (see recordFunction) is nested. */
        private static final ThreadLocal<int[]> DEPTH = ThreadLocal.withInitial(() -> new int[1]);

        @Override
        public void backward(Tensor root, Tensor seed, boolean retainGraph) {
            int[] depth = DEPTH.get();
            depth[0]++;
            try {
                backward(root, seed, retainGraph, depth[0] > 1);
            } finally {
                depth[0]--;
            }
        }

        /**
         * A nested backward announces no leaf as ready: the enclosing node's edges to those leaves
         * announce them once the rule (and so the nested backward) has run.
         */
        private void backward(Tensor root, Tensor seed, boolean retainGraph, boolean nested) {
            List<TapeNode> done = new ArrayList<>();
            try (Autograd.GradMode off = noGrad(); Scope s = Scope.detached()) {
                Tensor seedGrad;
                if (seed == null) {
                    if (root.numel() != 1) {
                        throw new IllegalArgumentException("backward: " + root.describe() + " is not a single value; "
                                + "pass the gradient of the output as seed: backward(seed, retainGraph)");
                    }
                    seedGrad = Tensor.full(1.0, root.dtype(), root.device(), root.shape().toArray());
                } else {
                    if (!seed.shape().equals(root.shape())) {
                        throw new IllegalArgumentException("backward: seed gradient " + seed.describe()
                                + " does not match the output " + root.describe());
                    }
                    seedGrad = seed.to(root.dtype(), root.device());
                }
                if (root.isLeaf()) {
                    accumulate(root, seedGrad);
                    if (!nested) {
                        gradientReady(root);
                    }
                    return;
                }
                TapeNode start = (TapeNode) root.gradNode();
                Map<TapeNode, Integer> dependencies = countDependencies(start);
                // edges into each listened-to leaf: its gradient is complete when the last is taken
                Map<Tensor, Integer> leafEdges = READY.isEmpty() || nested ? null : countLeafEdges(dependencies.keySet());
                Map<TapeNode, Tensor[]> pending = new IdentityHashMap<>();
                pending.put(start, new Tensor[start.outputCount]);
                pending.get(start)[root.gradOutput()] = seedGrad;
                Deque<TapeNode> ready = new ArrayDeque<>();
                ready.push(start);
                try {
                    while (!ready.isEmpty()) {
                        TapeNode n = ready.pop();
                        done.add(n);
                        Tensor[] g = pending.remove(n);
                        Tensor[] in = null;
                        try {
                            if (anyNonNull(g)) {
                                in = distinct(n.runBackward(g), g);
                                // a rule may answer null for trailing optional inputs the call left out
                                if (in.length < n.edges.length || anyNonNull(
                                        java.util.Arrays.copyOfRange(in, n.edges.length, Math.max(in.length, n.edges.length)))) {
                                    throw new IllegalStateException("backward rule of " + n.name() + " returned "
                                            + in.length + " gradients for " + n.edges.length + " inputs");
                                }
                            }
                        } finally {
                            TapeNode.closeAll(g);
                        }
                        if (!retainGraph) {
                            n.freeSaved();
                        }
                        for (int i = 0; i < n.edges.length; i++) {
                            TapeNode.Edge e = n.edges[i];
                            Tensor gi = in == null ? null : in[i];
                            if (e == null) {
                                if (gi != null) {
                                    gi.close();
                                }
                                continue;
                            }
                            if (gi != null) {
                                gi = conform(gi, n.inputShape(i), n.inputDType(i), n.name(), i);
                                if (e.leaf() != null) {
                                    accumulate(e.leaf(), gi);
                                } else {
                                    addPending(pending, e.node(), e.output(), gi);
                                }
                            }
                            if (leafEdges != null && e.leaf() != null && leafEdges.containsKey(e.leaf())
                                    && leafEdges.merge(e.leaf(), -1, Integer::sum) == 0) {
                                gradientReady(e.leaf());
                            }
                            if (e.node() != null && dependencies.merge(e.node(), -1, Integer::sum) == 0) {
                                ready.push(e.node());
                            }
                        }
                    }
                } finally {
                    for (Tensor[] g : pending.values()) {
                        TapeNode.closeAll(g);
                    }
                    if (!retainGraph) {
                        for (TapeNode n : done) {
                            n.release();
                        }
                    }
                }
            }
        }

        /** How many edges of the given nodes point at each leaf that has a gradient listener. */
        private static Map<Tensor, Integer> countLeafEdges(Iterable<TapeNode> nodes) {
            Map<Tensor, Integer> count = new IdentityHashMap<>();
            for (TapeNode n : nodes) {
                for (TapeNode.Edge e : n.edges) {
                    if (e != null && e.leaf() != null && READY.containsKey(e.leaf())) {
                        count.merge(e.leaf(), 1, Integer::sum);
                    }
                }
            }
            return count;
        }

        /** How many edges of reachable nodes point at each node. */
        private static Map<TapeNode, Integer> countDependencies(TapeNode start) {
            Map<TapeNode, Integer> deps = new IdentityHashMap<>();
            Deque<TapeNode> stack = new ArrayDeque<>();
            stack.push(start);
            deps.put(start, 0);
            while (!stack.isEmpty()) {
                TapeNode n = stack.pop();
                for (TapeNode.Edge e : n.edges) {
                    if (e != null && e.node() != null) {
                        Integer before = deps.get(e.node());
                        deps.put(e.node(), before == null ? 1 : before + 1);
                        if (before == null) {
                            stack.push(e.node());
                        }
                    }
                }
            }
            return deps;
        }

        /** Gives every returned gradient its own handle, so each can be closed independently. */
        private static Tensor[] distinct(Tensor[] result, Tensor[] incoming) {
            Tensor[] out = result.clone();
            for (int i = 0; i < out.length; i++) {
                if (out[i] == null) {
                    continue;
                }
                boolean shared = false;
                for (Tensor t : incoming) {
                    shared |= t == out[i];
                }
                for (int j = 0; j < i; j++) {
                    shared |= result[j] == out[i];
                }
                if (shared) {
                    out[i] = out[i].detach();
                }
            }
            return out;
        }

        private static void addPending(Map<TapeNode, Tensor[]> pending, TapeNode node, int output, Tensor g) {
            Tensor[] slot = pending.computeIfAbsent(node, k -> new Tensor[k.outputCount]);
            if (slot[output] == null) {
                slot[output] = g;
            } else {
                Tensor sum = Elementwise.add(slot[output], g);
                slot[output].close();
                g.close();
                slot[output] = sum;
            }
        }

        private static void accumulate(Tensor leaf, Tensor g) {
            if (leaf.isClosed()) {
                g.close();
                return;
            }
            Tensor old = leaf.grad();
            if (old == null) {
                if (g.ownsStorageAlone() && g.isContiguous()) {
                    leaf.setGrad(g);
                } else {
                    try (g) {
                        leaf.setGrad(g.copy());
                    }
                }
            } else {
                try (g) {
                    leaf.setGrad(Elementwise.add(old, g));
                }
            }
        }

        /** Brings a rule's gradient to its input's shape (summing broadcast dims) and dtype. */
        private Tensor conform(Tensor g, Shape shape, DType dtype, String op, int input) {
            Tensor out = g;
            if (!out.shape().equals(shape)) {
                try (Tensor full = out) {
                    out = sumToShape(full, shape, op, input);
                }
            }
            if (out.dtype() != dtype) {
                try (Tensor wrongType = out) {
                    out = wrongType.to(dtype);
                }
            }
            return out;
        }

        @Override
        public Tensor sumToShape(Tensor gradient, Shape shape) {
            return sumToShape(gradient, shape, "sumToShape", -1);
        }

        /**
         * {@code index_add} of the gradient into zeros at {@code start, start + step, ...} of {@code dim}:
         * an op call, so that a graph capture records it (a zero tensor written in place could not be).
         */
        @Override
        public Tensor sliceBackward(Tensor gradient, Shape shape, int dim, long start, long step) {
            long len = gradient.size(dim);
            try (Tensor at = Tensor.arange(start, start + len * step, step, DType.INT64, gradient.device())) {
                return Indexing.INDEX_ADD_OP.call(new Indexing.IndexAddAttrs(dim, shape.size(dim)), gradient, at);
            }
        }

        private static Tensor sumToShape(Tensor g, Shape shape, String op, int input) {
            int extra = g.rank() - shape.rank();
            List<Integer> axes = new ArrayList<>();
            boolean ok = extra >= 0;
            for (int i = 0; ok && i < g.rank(); i++) {
                long have = g.shape().size(i);
                if (i < extra) {
                    axes.add(i);
                } else {
                    long want = shape.size(i - extra);
                    if (want == 1 && have != 1) {
                        axes.add(i);
                    } else if (want != have) {
                        ok = false;
                    }
                }
            }
            if (!ok) {
                throw new IllegalStateException(op + ": gradient " + g.describe() + " for input " + input
                        + " cannot be reduced to its shape " + shape);
            }
            if (axes.isEmpty()) {
                return g.reshape(shape.toArray());
            }
            int[] a = axes.stream().mapToInt(Integer::intValue).toArray();
            try (Tensor summed = Reductions.sum(g, true, a)) {
                return summed.reshape(shape.toArray());
            }
        }

        private static boolean anyNonNull(Tensor[] ts) {
            if (ts == null) {
                return false;
            }
            for (Tensor t : ts) {
                if (t != null) {
                    return true;
                }
            }
            return false;
        }

    }
}
