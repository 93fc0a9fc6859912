package dev.cortado.graph;

import dev.cortado.nn.Module;
import dev.cortado.tensor.Tensor;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * Entry points of the graph layer:
 * <pre>{@code
 * model.eval();
 * try (var f = Graphs.compile(model, example)) {   // runs model.forward once, recording it
 *     Tensor y = f.apply(x);                        // runs the optimized, memory-planned graph
 *     System.out.println(f.graph());                // the text form
 * }
 * }</pre>
 * A function is captured by running it once through the op registry ({@code Op.call}) with a
 * tracer installed; see {@link Graph} for the IR, {@link Pass} for the passes, {@link Executable} for
 * how a graph runs.
 */
public final class Graphs {
    private Graphs() {
    }

    /** Compiles a function of one tensor with the default options. */
    public static CompiledFunction compile(Function<Tensor, Tensor> fn, Tensor example) {
        return compile(fn, example, CompileOptions.defaults());
    }

    public static CompiledFunction compile(Function<Tensor, Tensor> fn, Tensor example, CompileOptions options) {
        return compileAll(single(fn), new Tensor[] {example}, options);
    }

    /** Compiles a module's forward; its parameters and buffers are read by reference, named by their paths. */
    public static CompiledFunction compile(Module module, Tensor example) {
        return compile(module, example, CompileOptions.defaults());
    }

    public static CompiledFunction compile(Module module, Tensor example, CompileOptions options) {
        Map<Tensor, String> params = parametersOf(module, options);
        return new CompiledFunction(single(module::forward), new Tensor[] {example}, options, params);
    }

    /** Compiles a function of several tensors returning several. */
    public static CompiledFunction compileAll(Function<Tensor[], Tensor[]> fn, Tensor[] examples, CompileOptions options) {
        return new CompiledFunction(fn, examples, options, options.parameters());
    }

    /** The graph of {@code fn} on {@code example}, as captured (the caller closes it). */
    public static Graph capture(Function<Tensor, Tensor> fn, Tensor example, CompileOptions options) {
        return Capture.capture(single(fn), new Tensor[] {example}, List.of(TensorType.of(example)), options.parameters());
    }

    /** The graph of a module's forward on {@code example}, as captured (the caller closes it). */
    public static Graph capture(Module module, Tensor example) {
        return Capture.capture(single(module::forward), new Tensor[] {example}, List.of(TensorType.of(example)),
                parametersOf(module, CompileOptions.defaults()));
    }

    /** The passes {@code options} selects, in order. */
    public static List<Pass> passes(CompileOptions options) {
        if (options.level() == CompileOptions.Level.NONE) {
            return List.of();
        }
        return List.of(new AlgebraicSimplification(), new CommonSubexpressionElimination(),
                new ConvBatchNormFolding(options.freezeParameters()), new ConstantFolding(options.freezeParameters()), new AlgebraicSimplification(), new EpilogueFusion(),
                new DeadCodeElimination(), new MemoryAwareSchedule());
    }

    /**
     * Runs the passes of {@code options} on {@code g}; returns a new graph (the caller closes it and
     * {@code g}), or {@code g} itself when no pass runs. Verifies after each pass when asked to.
     */
    public static Graph optimize(Graph g, CompileOptions options) {
        if (options.verify()) {
            g.verify();
        }
        Graph current = g;
        for (Pass p : passes(options)) {
            Graph next;
            try {
                next = p.apply(current);
                if (options.verify()) {
                    try {
                        next.verify();
                    } catch (GraphException e) {
                        next.close();
                        throw new GraphException("after pass " + p.name() + ": " + e.getMessage());
                    }
                }
            } finally {
                if (current != g) {
                    current.close();
                }
            }
            current = next;
        }
        return current;
    }

    private static Function<Tensor[], Tensor[]> single(Function<Tensor, Tensor> fn) {
        return in -> new Tensor[] {fn.apply(in[0])};
    }

    private static Map<Tensor, String> parametersOf(Module module, CompileOptions options) {
        Map<Tensor, String> params = new IdentityHashMap<>(options.parameters());
        module.namedParameters().forEach((name, t) -> params.put(t, name));
        module.namedBuffers().forEach((name, t) -> {
            if (t != null) {
                params.put(t, name);
            }
        });
        return params;
    }
}
