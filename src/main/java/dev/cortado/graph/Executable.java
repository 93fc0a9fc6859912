package dev.cortado.graph;

import dev.cortado.ops.Op;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * A graph made ready to run: each node's kernel looked up once, the memory of every intermediate
 * value planned into one arena ({@link MemoryPlan}) and the tensors over it made once, the views of
 * parameters, constants and arena values made once, and a static schedule (the node order) that a
 * call walks without shape checks, registry lookups or allocations other than the returned values
 * and the views of the inputs. Results carry no autograd history (inference).
 *
 * <p>One arena means one call at a time: calls from several threads are serialized.
 */
public final class Executable implements AutoCloseable {

    private interface Step {
        void run(Tensor[] env);
    }

    private final Graph graph;
    private final MemoryPlan plan;
    private final Tensor arena;
    private final List<Tensor> owned = new ArrayList<>();
    private final Tensor[] env;
    private final Map<Value, Integer> slot = new IdentityHashMap<>();
    private final boolean[] dynamic;
    private final Step[] steps;
    private final int[] inputSlots;
    private final int[] outputSlots;
    private final int[] returnedSlots;
    private final List<Integer> perCallViews = new ArrayList<>();
    private boolean closed;

    /** Compiles {@code graph} (the executable reads the graph's constants: keep the graph open while this is). */
    public Executable(Graph graph) {
        this.graph = graph;
        this.plan = MemoryPlan.plan(graph);
        int n = 0;
        for (List<Value> group : List.of(graph.inputs(), graph.parameters(), graph.constants())) {
            for (Value v : group) {
                slot.put(v, n++);
            }
        }
        for (Node node : graph.nodes()) {
            for (Value v : node.outputs()) {
                slot.put(v, n++);
            }
        }
        env = new Tensor[n];
        dynamic = new boolean[n];
        inputSlots = slots(graph.inputs());
        outputSlots = slots(graph.outputs());
        returnedSlots = slots(plan.returned());
        for (int s : inputSlots) {
            dynamic[s] = true;
        }
        for (int s : returnedSlots) {
            dynamic[s] = true;
        }
        List<Step> program = new ArrayList<>();
        Tensor a = null;
        try (Scope detached = Scope.detached()) {
            if (!plan.buffers().isEmpty()) { // (empty values alone still need a tensor to view)
                a = Tensor.empty(DType.UINT8, deviceOf(graph), Math.max(plan.arenaBytes(), MemoryPlan.ALIGNMENT));
                owned.add(a);
            }
            for (Value v : graph.parameters()) {
                env[slot.get(v)] = v.tensor();
            }
            for (Value v : graph.constants()) {
                env[slot.get(v)] = v.tensor();
            }
            for (MemoryPlan.Buffer b : plan.buffers()) {
                TensorType t = b.value().type();
                Shape shape = t.shape();
                Tensor view = a.asStrided(t.dtype(), shape, shape.contiguousStrides(), b.offset() / t.dtype().byteSize());
                owned.add(view);
                env[slot.get(b.value())] = view;
            }
            for (Node node : graph.nodes()) {
                Step s = compile(node);
                if (s != null) {
                    program.add(s);
                }
            }
        } catch (RuntimeException | Error e) {
            for (Tensor t : owned) {
                t.close();
            }
            throw e;
        }
        this.arena = a;
        this.steps = program.toArray(new Step[0]);
    }

    private static dev.cortado.tensor.Device deviceOf(Graph g) {
        for (Node n : g.nodes()) {
            for (Value v : n.outputs()) {
                return v.type().device();
            }
        }
        throw new IllegalStateException("graph has no nodes");
    }

    private int[] slots(List<Value> values) {
        int[] s = new int[values.size()];
        for (int i = 0; i < s.length; i++) {
            s[i] = slot.get(values.get(i));
        }
        return s;
    }

    /** The step of {@code node}, or null when its result was made here once (a view of static memory). */
    private Step compile(Node node) {
        if (node instanceof Node.View v) {
            int src = slot.get(v.source());
            int out = slot.get(v.output());
            TensorType t = v.output().type();
            Shape shape = t.shape();
            long[] strides = v.strides();
            long offset = v.offset();
            if (!dynamic[src]) {
                Tensor s = env[src];
                Tensor view = s.asStrided(t.dtype(), shape, strides, s.offset() + offset);
                owned.add(view);
                env[out] = view;
                return null;
            }
            dynamic[out] = true;
            perCallViews.add(out);
            return e -> e[out] = e[src].asStrided(t.dtype(), shape, strides, e[src].offset() + offset);
        }
        if (node instanceof Node.Copy c) {
            int src = slot.get(c.source());
            int out = slot.get(c.output());
            return e -> e[out].copyFrom(e[src]);
        }
        if (node instanceof Node.Update u) {
            int[] reads = slots(u.reads());
            int[] writes = slots(u.writes());
            Node.UpdateRule rule = u.rule();
            return e -> rule.run(tensors(reads, e), tensors(writes, e));
        }
        Node.OpCall call = (Node.OpCall) node;
        Op<?> op = call.op();
        dev.cortado.tensor.Device device = call.outputs().get(0).type().device();
        Op.Kernel<?> kernel = op.kernel(device.type());
        if (kernel == null) {
            throw new UnsupportedOperationException(op.name() + " has no kernel for " + device.type()
                    + " (available: " + op.backends() + ")");
        }
        int[] in = new int[call.inputs().size()];
        boolean anyDynamic = false;
        for (int i = 0; i < in.length; i++) {
            Value v = call.inputs().get(i);
            in[i] = v == null ? -1 : slot.get(v);
            anyDynamic |= v != null && dynamic[in[i]];
        }
        int[] out = slots(call.outputs());
        for (int o : out) {
            anyDynamic |= dynamic[o];
        }
        Tensor[] ins = new Tensor[in.length];
        Tensor[] outs = new Tensor[out.length];
        Object attrs = call.attrs();
        if (!anyDynamic) {
            fill(ins, in, env);
            fill(outs, out, env);
            return e -> run(kernel, attrs, ins, outs);
        }
        return e -> {
            fill(ins, in, e);
            fill(outs, out, e);
            run(kernel, attrs, ins, outs);
        };
    }

    private static List<Tensor> tensors(int[] slots, Tensor[] env) {
        Tensor[] t = new Tensor[slots.length];
        fill(t, slots, env);
        return java.util.Arrays.asList(t);
    }

    private static void fill(Tensor[] dst, int[] slots, Tensor[] env) {
        for (int i = 0; i < slots.length; i++) {
            dst[i] = slots[i] < 0 ? null : env[slots[i]];
        }
    }

    @SuppressWarnings("unchecked")
    private static <A> void run(Op.Kernel<A> kernel, Object attrs, Tensor[] in, Tensor[] out) {
        kernel.run((A) attrs, in, out);
    }

    public Graph graph() {
        return graph;
    }

    public MemoryPlan memoryPlan() {
        return plan;
    }

    /**
     * Runs the graph on {@code inputs} (contiguous, of the graph's input types: {@link CompiledFunction}
     * checks that) and returns its outputs, new tensors the caller closes.
     */
    public synchronized Tensor[] run(Tensor... inputs) {
        if (closed) {
            throw new IllegalStateException("executable is closed");
        }
        if (inputs.length != inputSlots.length) {
            throw new IllegalArgumentException("graph takes " + inputSlots.length + " inputs, got " + inputs.length);
        }
        Tensor[] results = new Tensor[outputSlots.length];
        boolean ok = false;
        try {
            for (int i = 0; i < inputs.length; i++) {
                env[inputSlots[i]] = inputs[i];
            }
            for (int i = 0; i < returnedSlots.length; i++) {
                TensorType t = plan.returned().get(i).type();
                env[returnedSlots[i]] = Tensor.empty(t.dtype(), t.device(), t.shape());
            }
            for (Step s : steps) {
                s.run(env);
            }
            boolean[] handed = new boolean[env.length];
            for (int i = 0; i < outputSlots.length; i++) {
                int s = outputSlots[i];
                Tensor t = env[s];
                boolean fresh = isReturnedRoot(s) || perCallViews.contains(s);
                if (fresh && !handed[s]) {
                    handed[s] = true;
                    results[i] = t;
                } else {
                    results[i] = t.asStrided(t.dtype(), t.shape(), t.strides(), t.offset());
                }
            }
            for (int s : returnedSlots) {
                if (!handed[s] && env[s] != null) {
                    env[s].close();
                }
            }
            for (int s : perCallViews) {
                if (!handed[s] && env[s] != null) {
                    env[s].close();
                }
            }
            ok = true;
            return results;
        } finally {
            if (!ok) {
                for (int s : returnedSlots) {
                    if (env[s] != null) {
                        env[s].close();
                    }
                }
                for (int s : perCallViews) {
                    if (env[s] != null) {
                        env[s].close();
                    }
                }
                for (Tensor r : results) {
                    if (r != null) {
                        r.close();
                    }
                }
            }
            for (int s : inputSlots) {
                env[s] = null;
            }
            for (int s : returnedSlots) {
                env[s] = null;
            }
            for (int s : perCallViews) {
                env[s] = null;
            }
        }
    }

    private boolean isReturnedRoot(int s) {
        for (int r : returnedSlots) {
            if (r == s) {
                return true;
            }
        }
        return false;
    }

    /** Frees the arena and the views made at compile time (not the graph, not the parameters). */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            for (Tensor t : owned) {
                t.close();
            }
            java.util.Arrays.fill(env, null);
        }
    }
}
