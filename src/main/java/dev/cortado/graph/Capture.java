package dev.cortado.graph;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Op;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.tensor.TensorTracer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * Traces a function into a graph by running it once: while it runs, every op call ({@link Op.Tracer})
 * and every view, copy, creation and in-place write of a tensor ({@link TensorTracer}) on this
 * thread is seen here. Each tensor the function touches becomes a value: the inputs, the outputs of
 * the ops and views it called, the parameters it reads (by reference), and tensors it made itself
 * without an op ({@code Tensor.scalar}, {@code Tensor.of}: constants). Anything else is an error,
 * as are in-place writes into graph tensors, random ops (a graph would replay the same numbers) and
 * ops with side effects. What an op's kernel does inside (other ops, views) is the op's business and
 * is not recorded. The run happens under {@link Autograd#noGrad()} (or with the tape on, to capture
 * a backward) and in a scope that frees what the function made.
 */
final class Capture implements TensorTracer, Op.Tracer {
    /** Ops that write into their inputs: a graph cannot replay them as values. */
    private static final Set<String> SIDE_EFFECTS = Set.of("kv_cache_append");

    private final Graph.Builder builder = Graph.builder();
    private final Map<Tensor, Value> known = new IdentityHashMap<>();
    private final Map<Tensor, String> parameterNames;
    private final Set<Tensor> created = Collections.newSetFromMap(new IdentityHashMap<>());
    /** Parameters the function assigned ({@code copyFrom}), in the order of their first assignment. */
    private final List<Tensor> assigned = new ArrayList<>();
    private final boolean assignments;
    private int depth;
    private int calls;
    private int autoParameters;

    private static final ThreadLocal<Capture> CURRENT = new ThreadLocal<>();

    private Capture(Map<Tensor, String> parameterNames, boolean assignments) {
        this.parameterNames = parameterNames;
        this.assignments = assignments;
    }

    /**
     * The parameters the function running in this thread's capture has assigned so far with
     * {@code copyFrom} (captures that record assignments only; empty otherwise). Returned as
     * outputs of the function, each reads the value assigned last: how a training step hands its
     * buffer updates (batch norm's {@code num_batches_tracked}) to the code that applies them.
     */
    static List<Tensor> assignedParameters() {
        Capture c = CURRENT.get();
        return c == null ? List.of() : List.copyOf(c.assigned);
    }

    /**
     * The graph of {@code fn} on inputs of {@code types}, run once on {@code examples} (made
     * contiguous first: graphs take contiguous inputs). {@code parameters} names the tensors read
     * by reference; leaf tensors that require gradients count as parameters too.
     */
    static Graph capture(Function<Tensor[], Tensor[]> fn, Tensor[] examples, List<TensorType> types,
            Map<Tensor, String> parameters) {
        return capture(fn, examples, types, parameters, false, false);
    }

    /**
     * As {@link #capture(Function, Tensor[], List, Map)}; with {@code gradients} the function runs with
     * the tape recording, so a {@code backward()} inside it is captured too: the backward rules are
     * written with ops, and the tape runs them through {@code Op.call} like any other call.
     */
    static Graph capture(Function<Tensor[], Tensor[]> fn, Tensor[] examples, List<TensorType> types,
            Map<Tensor, String> parameters, boolean gradients) {
        return capture(fn, examples, types, parameters, gradients, false);
    }

    /**
     * As {@link #capture(Function, Tensor[], List, Map, boolean)}; with {@code assignments} a
     * {@code copyFrom} into a parameter is not refused but recorded: later reads of the parameter in
     * the graph read the assigned value, and {@link #assignedParameters()} lists the parameters
     * assigned (the function returns them as outputs and the caller applies them after each run).
     * The assignment does happen during the capture run; the function restores what it must.
     */
    static Graph capture(Function<Tensor[], Tensor[]> fn, Tensor[] examples, List<TensorType> types,
            Map<Tensor, String> parameters, boolean gradients, boolean assignments) {
        Capture c = new Capture(parameters, assignments);
        Capture outer = CURRENT.get();
        CURRENT.set(c);
        try (Scope scope = Scope.open();
             Autograd.GradMode mode = gradients ? Autograd.enableGrad() : Autograd.noGrad()) {
            Tensor[] in = new Tensor[examples.length];
            for (int i = 0; i < in.length; i++) {
                in[i] = examples[i].isContiguous() ? examples[i] : examples[i].contiguous();
                c.known.put(in[i], c.builder.input(types.get(i)));
            }
            Tensor[] results;
            try (TensorTracer.Installation installed = TensorTracer.install(c)) {
                results = fn.apply(in);
            }
            if (results == null || results.length == 0) {
                throw new CaptureException("the captured function returned no tensors");
            }
            for (int i = 0; i < results.length; i++) {
                if (results[i] == null) {
                    throw new CaptureException("the captured function returned null as output " + i);
                }
                c.builder.output(c.valueOf(results[i], "output " + i));
            }
            return c.builder.build();
        } catch (RuntimeException | Error e) {
            c.builder.close();
            throw e;
        } finally {
            if (outer == null) {
                CURRENT.remove();
            } else {
                CURRENT.set(outer);
            }
        }
    }

    @Override
    public void copying(Tensor target, Tensor source) {
        boolean parameter = parameterNames.containsKey(target)
                && (!known.containsKey(target) || assigned.contains(target) || known.get(target).kind() == Value.Kind.PARAMETER);
        if (!assignments || depth > 0 || !parameter) {
            writing("copyFrom", target);
            return;
        }
        Value s = valueOf(source, "the source of an assignment to parameter " + parameterNames.get(target));
        TensorType want = TensorType.of(target);
        if (!s.type().equals(want)) {
            throw new CaptureException("copyFrom assigns " + s.type() + " to parameter " + parameterNames.get(target) + " ("
                    + target.describe() + "): a captured assignment keeps the parameter's type (no broadcast or conversion)");
        }
        if (!assigned.contains(target)) {
            assigned.add(target);
        }
        known.put(target, s);
    }

    @Override
    public void created(Tensor tensor) {
        if (depth == 0) {
            created.add(tensor);
        }
    }

    @Override
    public void derived(String name, Tensor source, Tensor result) {
        if (depth > 0) {
            return;
        }
        Value s = valueOf(source, name + " of " + source.describe());
        TensorType type = TensorType.of(result);
        Value v;
        if (result.sharesStorageWith(source)) {
            v = builder.view(name, s, type, result.strides(), result.offset() - source.offset());
        } else {
            v = builder.copy(name, s, type);
        }
        created.remove(result);
        known.put(result, v);
    }

    @Override
    public void writing(String what, Tensor target) {
        if (depth > 0 || (created.contains(target) && !known.containsKey(target))) {
            return; // filling a tensor the function just made (Tensor.scalar, Tensor.full) is how constants are born
        }
        Value v = known.get(target);
        String role = v != null ? (v.kind() == Value.Kind.NODE ? "a value computed in the graph" : "graph " + v.kind().toString().toLowerCase())
                : parameterNames.containsKey(target) ? "parameter " + parameterNames.get(target) : "a tensor from outside the function";
        throw new CaptureException(what + " writes in place into " + target.describe() + " (" + role
                + "): in-place writes cannot be captured (a module updating its buffers, such as batch norm in "
                + "training mode, is captured in eval mode)");
    }

    @Override
    public void reading(String what, Tensor source) {
        if (depth > 0) {
            return;
        }
        Value v = known.get(source);
        if (v != null && (v.kind() == Value.Kind.NODE || v.kind() == Value.Kind.INPUT)) {
            throw new CaptureException(what + " reads the elements of " + source.describe() + " (" + v.ref()
                    + ", computed from the inputs) on the host while the function is captured: control flow or host "
                    + "arithmetic on tensor values cannot be captured (the graph would keep what this one run computed)");
        }
    }

    @Override
    public void enterKernel() {
        depth++;
    }

    @Override
    public void exitKernel() {
        depth--;
    }

    @Override
    public <A> void called(Op<A> op, A attrs, Tensor[] inputs, Tensor[] outputs) {
        if (depth > 0) {
            return;
        }
        int call = calls++;
        if (attrs instanceof Generator.RandomAttrs) {
            throw new CaptureException("op '" + op.name() + "' (call " + call + ") draws random numbers: a graph would "
                    + "replay the same ones at every call; capture in eval mode (no dropout) or draw them outside");
        }
        if (SIDE_EFFECTS.contains(op.name())) {
            throw new CaptureException("op '" + op.name() + "' (call " + call + ") writes into its inputs and cannot be "
                    + "captured as a graph");
        }
        List<Value> in = new ArrayList<>(inputs.length);
        for (int i = 0; i < inputs.length; i++) {
            in.add(inputs[i] == null ? null
                    : valueOf(inputs[i], "input '" + op.inputName(i) + "' of op '" + op.name() + "' (call " + call + ")"));
        }
        List<TensorType> types = new ArrayList<>(outputs.length);
        for (Tensor t : outputs) {
            types.add(TensorType.of(t));
        }
        List<Value> outs = builder.op(op, attrs, in, types);
        for (int i = 0; i < outputs.length; i++) {
            created.remove(outputs[i]);
            known.put(outputs[i], outs.get(i));
        }
    }

    /** The value of {@code t}; parameters and constants are defined on first use. */
    private Value valueOf(Tensor t, String where) {
        Value v = known.get(t);
        if (v != null) {
            return v;
        }
        String name = parameterNames.get(t);
        if (name == null && t.requiresGrad() && t.isLeaf()) {
            name = "p" + (autoParameters++);
        }
        if (name != null) {
            v = builder.parameter(t, name);
        } else if (created.contains(t)) {
            depth++;
            try {
                v = builder.constant(t);
            } finally {
                depth--;
            }
        } else {
            throw new CaptureException(where + " reads " + t.describe() + ", which is not an input of the function, "
                    + "not a parameter (compile the Module, or list the tensor with CompileOptions.Builder.parameters) "
                    + "and was not made inside the function");
        }
        known.put(t, v);
        return v;
    }
}
