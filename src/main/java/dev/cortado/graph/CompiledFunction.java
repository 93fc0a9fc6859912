package dev.cortado.graph;

import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A function captured, optimized and planned by {@link Graphs#compile}. Each call checks its
 * inputs against the guards of the captured graphs (dtype, device, rank, each dimension's size) and
 * runs the first graph they fit; when none fits it captures again (logging the guard that failed)
 * or throws {@link GuardFailedException}, per {@link CompileOptions#guardPolicy()}. A dimension
 * declared dynamic always re-captures. Non-contiguous inputs are copied to contiguous ones first.
 */
public final class CompiledFunction implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(CompiledFunction.class);

    /** One capture: the graph as captured, as optimized, and ready to run. */
    private record Specialization(Graph captured, Graph optimized, Executable executable) {
        void close() {
            executable.close();
            optimized.close();
            captured.close();
        }
    }

    private final Function<Tensor[], Tensor[]> fn;
    private final java.util.function.UnaryOperator<Graph> complete;
    private final boolean gradients;
    private final boolean assignments;
    private final CompileOptions options;
    private final Map<Tensor, String> parameters;
    private final List<Specialization> specializations = new ArrayList<>();
    private final String symbol;
    private SymbolicShapes symbolic;
    private Specialization last;
    private boolean closed;

    CompiledFunction(Function<Tensor[], Tensor[]> fn, Tensor[] examples, CompileOptions options, Map<Tensor, String> parameters) {
        this(fn, false, examples, options, parameters);
    }

    /** {@code gradients}: the function calls backward (see {@link Graphs#compileGradients}). */
    CompiledFunction(Function<Tensor[], Tensor[]> fn, boolean gradients, Tensor[] examples, CompileOptions options,
            Map<Tensor, String> parameters) {
        this(fn, gradients, false, examples, options, parameters);
    }

    /** {@code assignments}: the function's {@code copyFrom}s into parameters are recorded (see {@link Capture}). */
    CompiledFunction(Function<Tensor[], Tensor[]> fn, boolean gradients, boolean assignments, Tensor[] examples,
            CompileOptions options, Map<Tensor, String> parameters) {
        this(fn, gradients, assignments, examples, options, parameters, null);
    }

    /**
     * {@code complete}: turns each capture into the graph that is optimized and run (a training step
     * appends its updates; it returns a new graph and leaves its argument to the caller), or null.
     */
    CompiledFunction(Function<Tensor[], Tensor[]> fn, boolean gradients, boolean assignments, Tensor[] examples,
            CompileOptions options, Map<Tensor, String> parameters, java.util.function.UnaryOperator<Graph> complete) {
        this.complete = complete;
        this.fn = fn;
        this.gradients = gradients;
        this.assignments = assignments;
        this.options = options;
        this.parameters = parameters;
        java.util.Set<String> symbols = new java.util.TreeSet<>();
        for (CompileOptions.DynamicDim d : options.dynamicDims()) {
            symbols.add(d.symbol());
        }
        this.symbol = symbols.size() == 1 ? symbols.iterator().next() : null;
        if (symbols.size() > 1) {
            LOG.info("dynamic dimensions with {} symbols {}: each new size is captured again (one symbol is made generic)",
                    symbols.size(), symbols);
        }
        Graph captured = capture(examples);
        if (symbol != null) {
            captured = generalize(captured, examples);
        }
        last = add(captured);
    }

    /**
     * Captures at two more values of the symbol and, when the three graphs agree, keeps the generic
     * graph and returns its instance at the examples' value (else the capture as it was).
     */
    private Graph generalize(Graph captured, Tensor[] examples) {
        long value = -1;
        Graph[] probes = {captured, null, null};
        try {
            for (CompileOptions.DynamicDim d : options.dynamicDims()) {
                value = examples[d.input()].size(d.dim());
            }
            for (int k = 1; k <= 2; k++) {
                Tensor[] grown = grow(examples, k);
                try {
                    probes[k] = capture(grown);
                } finally {
                    for (int i = 0; i < grown.length; i++) {
                        if (grown[i] != examples[i]) {
                            grown[i].close();
                        }
                    }
                }
            }
            SymbolicShapes.Result r = SymbolicShapes.generalize(probes, symbol, value);
            if (r.shapes() == null) {
                LOG.info("the graph is not generic in {}: {}; each new size is captured again", symbol, r.whyNot());
                return captured;
            }
            symbolic = r.shapes();
            Graph g = symbolic.instantiate(value);
            captured.close();
            return g;
        } catch (RuntimeException | Error e) {
            captured.close();
            throw e;
        } finally {
            for (int k = 1; k <= 2; k++) {
                if (probes[k] != null) {
                    probes[k].close();
                }
            }
        }
    }

    /** The examples with every dynamic dimension {@code k} larger (the new slices repeat the first ones). */
    private Tensor[] grow(Tensor[] examples, int k) {
        Tensor[] out = examples.clone();
        for (CompileOptions.DynamicDim d : options.dynamicDims()) {
            Tensor src = out[d.input()];
            int dim = dev.cortado.tensor.Shape.normalize(d.dim(), src.rank());
            long n = src.size(dim);
            long[] dims = src.dims();
            dims[dim] = n + k;
            Tensor bigger = Tensor.empty(src.dtype(), src.device(), dims);
            try (Tensor head = bigger.narrow(dim, 0, n)) {
                head.copyFrom(src);
                for (long j = n; j < n + k; j++) {
                    try (Tensor to = bigger.narrow(dim, j, 1); Tensor from = src.narrow(dim, n == 0 ? 0 : (j - n) % n, n == 0 ? 0 : 1)) {
                        if (n == 0) {
                            to.fillWith(0);
                        } else {
                            to.copyFrom(from);
                        }
                    }
                }
            }
            if (out[d.input()] != examples[d.input()]) {
                out[d.input()].close();
            }
            out[d.input()] = bigger;
        }
        return out;
    }

    private Graph capture(Tensor[] examples) {
        List<TensorType> types = new ArrayList<>();
        for (int i = 0; i < examples.length; i++) {
            TensorType t = TensorType.of(examples[i]);
            for (CompileOptions.DynamicDim d : options.dynamicDims()) {
                if (d.input() == i) {
                    int dim = dev.cortado.tensor.Shape.normalize(d.dim(), t.rank());
                    t = t.withDim(dim, Dim.symbolic(d.symbol(), t.dims().get(dim).size()));
                }
            }
            types.add(t);
        }
        return Capture.capture(fn, examples, types, parameters, gradients, assignments);
    }

    private Specialization add(Graph captured) {
        Graph optimized = null;
        try {
            if (complete != null) {
                Graph whole = complete.apply(captured);
                captured.close();
                captured = whole;
            }
            optimized = Graphs.optimize(captured, options);
            Executable exe = new Executable(optimized);
            Specialization s = new Specialization(captured, optimized, exe);
            specializations.add(s);
            if (specializations.size() > options.maxSpecializations()) {
                specializations.remove(0).close();
            }
            return s;
        } catch (RuntimeException | Error e) {
            if (optimized != null && optimized != captured) {
                optimized.close();
            }
            captured.close();
            throw e;
        }
    }

    /** Runs on one input and returns the single output (a new tensor the caller closes). */
    public Tensor apply(Tensor x) {
        Tensor[] out = applyAll(x);
        if (out.length != 1) {
            for (Tensor t : out) {
                t.close();
            }
            throw new IllegalStateException("the compiled function returns " + out.length + " tensors; use applyAll");
        }
        return out[0];
    }

    /** Runs on the inputs and returns every output (new tensors the caller closes). */
    public synchronized Tensor[] applyAll(Tensor... inputs) {
        if (closed) {
            throw new IllegalStateException("compiled function is closed");
        }
        Specialization s = find(inputs);
        if (s == null) {
            Failure why = guardFailure(last, inputs);
            if (options.guardPolicy() == CompileOptions.GuardPolicy.THROW && !why.dynamicDim()) {
                throw new GuardFailedException(why.message());
            }
            Graph planned = why.dynamicDim() ? fromSymbolic(inputs) : null;
            if (planned != null) {
                LOG.info("planning from the graph generic in {} (no re-capture): {}", symbol, why.message());
                s = add(planned);
            } else {
                LOG.info("re-capturing: {}", why.message());
                s = add(capture(inputs));
            }
        }
        last = s;
        Tensor[] in = inputs;
        List<Tensor> made = new ArrayList<>();
        try {
            for (int i = 0; i < in.length; i++) {
                if (!in[i].isContiguous()) {
                    if (in == inputs) {
                        in = inputs.clone();
                    }
                    in[i] = inputs[i].contiguous();
                    made.add(in[i]);
                }
            }
            return s.executable().run(in);
        } finally {
            for (Tensor t : made) {
                t.close();
            }
        }
    }

    /** The generic graph's instance for these inputs, or null when there is none or it does not fit them. */
    private Graph fromSymbolic(Tensor[] inputs) {
        if (symbolic == null) {
            return null;
        }
        CompileOptions.DynamicDim d = options.dynamicDims().get(0);
        if (d.input() >= inputs.length || inputs[d.input()].rank() != symbolic.base().inputs().get(d.input()).type().rank()) {
            return null;
        }
        long v = inputs[d.input()].size(d.dim());
        Graph g;
        try {
            g = symbolic.instantiate(v);
        } catch (GraphException | IllegalArgumentException e) {
            LOG.info("the graph generic in {} does not hold at {} = {}: {}", symbol, symbol, v, e.getMessage());
            return null;
        }
        if (guardFailure(g.inputs(), inputs) != null) {
            g.close();
            return null;
        }
        return g;
    }

    private Specialization find(Tensor[] inputs) {
        if (last != null && guardFailure(last, inputs) == null) {
            return last;
        }
        for (int i = specializations.size() - 1; i >= 0; i--) {
            if (guardFailure(specializations.get(i), inputs) == null) {
                return specializations.get(i);
            }
        }
        return null;
    }

    /** A failed guard: what failed, and whether it is a dimension declared dynamic. */
    private record Failure(String message, boolean dynamicDim) {
    }

    /** The first guard of {@code s} that {@code inputs} fail, or null when they pass them all. */
    private static Failure guardFailure(Specialization s, Tensor[] inputs) {
        return guardFailure(s.captured().inputs(), inputs);
    }

    /** The first static guard that fails, else the first dynamic dimension that differs, else null. */
    private static Failure guardFailure(List<Value> expected, Tensor[] inputs) {
        if (inputs.length != expected.size()) {
            return new Failure("the function takes " + expected.size() + " inputs, got " + inputs.length, false);
        }
        Failure dynamic = null;
        for (int i = 0; i < inputs.length; i++) {
            Tensor t = inputs[i];
            TensorType e = expected.get(i).type();
            t.ensureOpen("compiled function input " + i);
            if (t.dtype() != e.dtype()) {
                return new Failure("input " + i + " has dtype " + t.dtype() + ", the graph was captured for " + e, false);
            }
            if (!t.device().equals(e.device())) {
                return new Failure("input " + i + " is on " + t.device() + ", the graph was captured for " + e, false);
            }
            if (t.rank() != e.rank()) {
                return new Failure("input " + i + " has rank " + t.rank() + " (" + t.describe() + "), the graph was captured for "
                        + e, false);
            }
            for (int d = 0; d < t.rank(); d++) {
                Dim dim = e.dims().get(d);
                if (t.size(d) != dim.size()) {
                    Failure f = new Failure("input " + i + " dimension " + d + " is " + t.size(d) + " (" + t.describe()
                            + "), the graph was captured for " + (dim.isSymbolic() ? "dynamic " + dim.symbol() + " = " : "")
                            + dim.size() + " (" + e + ")", dim.isSymbolic());
                    if (!dim.isSymbolic()) {
                        return f;
                    }
                    if (dynamic == null) {
                        dynamic = f;
                    }
                }
            }
        }
        return dynamic;
    }

    /** The optimized graph that ran last (or was captured first). */
    public Graph graph() {
        return last.optimized();
    }

    /**
     * The graph generic in the dynamic dimension's symbol (dimensions as {@code B}, {@code 4*B}), or
     * null when there is no dynamic dimension or the function's graph is not linear in it.
     */
    public Graph symbolicGraph() {
        return symbolic == null ? null : symbolic.base();
    }

    /** The graph as captured, before the passes. */
    public Graph capturedGraph() {
        return last.captured();
    }

    /** The memory plan of {@link #graph()}. */
    public MemoryPlan memoryPlan() {
        return last.executable().memoryPlan();
    }

    /** How many captures are kept. */
    public int specializations() {
        return specializations.size();
    }

    /** Frees every capture's arena and constants. */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            for (Specialization s : specializations) {
                s.close();
            }
            specializations.clear();
            if (symbolic != null) {
                symbolic.close();
            }
        }
    }
}
