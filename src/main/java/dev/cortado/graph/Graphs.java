package dev.cortado.graph;

import dev.cortado.nn.Module;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;
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

    /**
     * Compiles a loss and its gradients: the compiled function takes {@code examples}' kinds of
     * inputs and returns {@code [loss, grad(p_1), ..., grad(p_n)]} for the parameters in
     * {@code parameters}' order, new tensors the caller closes (set them with {@code setGrad} and
     * step an optimizer, for example). The capture runs {@code loss}, then {@code backward()} on
     * it with the tape on: the backward is made of the same backward rules the tape runs, captured
     * as op calls like the forward. Parameters are read by reference, so the graph sees every
     * update; they must not hold gradients when a capture runs ({@code zeroGrad()} first), and
     * {@link CompileOptions#freezeParameters()} must be off. The optimizer step is not part of the
     * graph.
     */
    public static CompiledFunction compileGradients(Function<Tensor[], Tensor> loss, Tensor[] examples,
            Map<String, Tensor> parameters, CompileOptions options) {
        if (options.freezeParameters()) {
            throw new IllegalArgumentException("compileGradients: parameters change between steps; "
                    + "freezeParameters must be off");
        }
        List<Map.Entry<String, Tensor>> params = new ArrayList<>(parameters.entrySet());
        Map<Tensor, String> names = new IdentityHashMap<>(options.parameters());
        for (Map.Entry<String, Tensor> e : params) {
            if (!e.getValue().requiresGrad() || !e.getValue().isLeaf()) {
                throw new IllegalArgumentException("compileGradients: parameter " + e.getKey() + " ("
                        + e.getValue().describe() + ") is not a leaf that requires gradients");
            }
            names.put(e.getValue(), e.getKey());
        }
        Function<Tensor[], Tensor[]> step = in -> {
            for (Map.Entry<String, Tensor> e : params) {
                if (e.getValue().grad() != null) {
                    throw new IllegalStateException("compileGradients: parameter " + e.getKey()
                            + " holds a gradient; clear the gradients (zeroGrad) before a capture");
                }
            }
            Tensor l = loss.apply(in);
            Tensor[] out = new Tensor[params.size() + 1];
            out[0] = l;
            try {
                l.backward();
                for (int i = 0; i < params.size(); i++) {
                    Tensor g = params.get(i).getValue().grad();
                    if (g == null) {
                        throw new CaptureException("compileGradients: the loss does not depend on parameter "
                                + params.get(i).getKey());
                    }
                    out[i + 1] = g.detach(); // a view the capture returns; the parameter's own is cleared
                }
            } finally {
                for (Map.Entry<String, Tensor> e : params) {
                    e.getValue().setGrad(null);
                }
            }
            return out;
        };
        return new CompiledFunction(step, true, examples, options, names);
    }

    /** {@link #compileGradients(Function, Tensor[], Map, CompileOptions)} of {@code loss(model(input), target)} for every parameter of {@code model}. */
    public static CompiledFunction compileGradients(Module model, BiFunction<Tensor, Tensor, Tensor> loss, Tensor input,
            Tensor target, CompileOptions options) {
        Map<String, Tensor> params = new LinkedHashMap<>();
        model.namedParameters().forEach((name, t) -> {
            if (t.requiresGrad()) {
                params.put(name, t);
            }
        });
        CompileOptions.Builder b = CompileOptions.builder().from(options);
        Map<String, Tensor> buffers = new LinkedHashMap<>();
        model.namedBuffers().forEach((name, t) -> {
            if (t != null) {
                buffers.put(name, t);
            }
        });
        b.parameters(buffers);
        return compileGradients(in -> {
            try (Tensor y = model.forward(in[0])) {
                return loss.apply(y, in[1]);
            }
        }, new Tensor[] {input, target}, params, b.build());
    }

    /**
     * Compiles a whole training step of {@code model}: {@code loss(model(x), y)}, its backward, the
     * module's buffer updates, optional gradient clipping ({@link CompileOptions#maxGradNorm()}) and
     * {@code optimizer}'s update of its parameters; {@code step.run(x, y)} returns the loss. See
     * {@link TrainingStep}. The model's current mode (train or eval) is the one captured. With
     * {@link CompileOptions.Builder#returnModelOutput} the step also returns {@code model(x)}
     * ({@link TrainingStep#runWithOutput}).
     */
    public static TrainingStep compileTrainingStep(Module model, BiFunction<Tensor, Tensor, Tensor> loss,
            dev.cortado.optim.Optimizer optimizer, Tensor input, Tensor target, CompileOptions options) {
        Map<String, Tensor> byReference = new LinkedHashMap<>(TrainingStep.buffersOf(model));
        CompileOptions.Builder b = CompileOptions.builder().from(options);
        Map<String, Tensor> named = new LinkedHashMap<>();
        model.namedParameters().forEach(named::put);
        options.parameters().forEach((t, name) -> named.put(name, t));
        b.parameters(named);
        boolean withOutput = options.returnModelOutput();
        return new TrainingStep(in -> {
            Tensor y = model.forward(in[0]);
            if (withOutput) {
                return new Tensor[] {loss.apply(y, in[1]), y};
            }
            try (y) {
                return new Tensor[] {loss.apply(y, in[1])};
            }
        }, new Tensor[] {input, target}, optimizer, byReference, b.build());
    }

    /** {@link #compileTrainingStep(Module, BiFunction, dev.cortado.optim.Optimizer, Tensor, Tensor, CompileOptions)} with the default options. */
    public static TrainingStep compileTrainingStep(Module model, BiFunction<Tensor, Tensor, Tensor> loss,
            dev.cortado.optim.Optimizer optimizer, Tensor input, Tensor target) {
        return compileTrainingStep(model, loss, optimizer, input, target, CompileOptions.defaults());
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
        List<Pass> passes = new ArrayList<>(List.of(new AlgebraicSimplification(), new CommonSubexpressionElimination(),
                new AttentionFusion(), new BatchNormReluFusion(), new ConvBatchNormFolding(options.freezeParameters()), new ConstantFolding(options.freezeParameters()),
                new AlgebraicSimplification()));
        if (options.propagateLayout()) {
            passes.add(new LayoutPropagation());
        }
        passes.add(new EpilogueFusion());
        if (options.prepackWeights()) {
            passes.add(new WeightPrepacking(options.freezeParameters()));
        }
        if (options.fuseElementwise()) {
            passes.add(new ElementwiseFusion());
        }
        passes.add(new DeadCodeElimination());
        passes.add(new MemoryAwareSchedule());
        if (options.memoryBudget() != Long.MAX_VALUE) {
            passes.add(new ActivationCheckpointing(options.memoryBudget()));
        } else if (options.recomputeActivations()) {
            passes.add(ActivationCheckpointing.free());
        }
        return List.copyOf(passes);
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
