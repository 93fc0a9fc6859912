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
    private final CompileOptions options;
    private final Map<Tensor, String> parameters;
    private final List<Specialization> specializations = new ArrayList<>();
    private Specialization last;
    private boolean closed;

    CompiledFunction(Function<Tensor[], Tensor[]> fn, Tensor[] examples, CompileOptions options, Map<Tensor, String> parameters) {
        this.fn = fn;
        this.options = options;
        this.parameters = parameters;
        last = specialize(examples);
    }

    private Specialization specialize(Tensor[] examples) {
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
        Graph captured = Capture.capture(fn, examples, types, parameters);
        Graph optimized = null;
        try {
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
            LOG.info("re-capturing: {}", why.message());
            s = specialize(inputs);
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
        List<Value> expected = s.captured().inputs();
        if (inputs.length != expected.size()) {
            return new Failure("the function takes " + expected.size() + " inputs, got " + inputs.length, false);
        }
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
                return new Failure("input " + i + " has rank " + t.rank() + " (" + t.describe() + "), the graph was captured for " + e, false);
            }
            for (int d = 0; d < t.rank(); d++) {
                Dim dim = e.dims().get(d);
                if (t.size(d) != dim.size()) {
                    return new Failure("input " + i + " dimension " + d + " is " + t.size(d) + " (" + t.describe()
                            + "), the graph was captured for " + (dim.isSymbolic() ? "dynamic " + dim.symbol() + " = " : "")
                            + dim.size() + " (" + e + ")", dim.isSymbolic());
                }
            }
        }
        return null;
    }

    /** The optimized graph that ran last (or was captured first). */
    public Graph graph() {
        return last.optimized();
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
        }
    }
}
