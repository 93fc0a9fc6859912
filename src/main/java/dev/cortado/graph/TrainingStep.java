package dev.cortado.graph;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Module;
import dev.cortado.optim.GradClip;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.tensor.TensorTracer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.BiFunction;
import java.util.function.Function;

/**
 * A whole training step compiled once: {@code step.run(x, y)} runs the forward, the loss, the
 * backward, the module's buffer updates, gradient clipping and the optimizer update, and returns
 * the loss.
 * <pre>{@code
 * model.train();
 * try (var opt = Adam.adamW().lr(1e-3).build(model.parameters());
 *      var step = Graphs.compileTrainingStep(model, Losses::crossEntropy, opt, x, y)) {
 *     for (Batch b : loader) {
 *         try (Tensor loss = step.run(b.x(), b.y())) { ... }
 *     }
 * }
 * }</pre>
 *
 * <p>What is captured, as one graph: the forward and the loss; the backward, made of the same
 * backward rules the tape runs (the capture runs {@code backward()} with the tape on, and the rules
 * are op calls); the in-place updates a module makes while training, as assignments: batch norm's
 * running statistics are written by its training kernel into the buffers it reads by reference,
 * and {@code num_batches_tracked.copyFrom(n + 1)} becomes an output that is copied into the buffer
 * after each run. The graph's outputs are {@code [loss, grad(p_1), ..., grad(p_n), assigned...]}
 * for the optimizer's parameters in its order. After the graph, on the same buffers: the gradients
 * are clipped by global norm ({@link CompileOptions#maxGradNorm()}, optional) with
 * {@link GradClip}'s kernels and the optimizer's own fused kernels update the parameters and its
 * state in place ({@link Optimizer#step()}): the numbers equal an eager step's, up to the rounding of
 * the graph passes. With {@link CompileOptions.Builder#dataParallel} the gradients are averaged
 * over the processes of a {@code DistributedDataParallel} between the graph and the update.
 *
 * <p>The capture runs the function once for real; the buffers it changes are restored afterwards,
 * so compiling has no effect on the model. The model's mode (train or eval) at compile time is the
 * one captured. Dropout in training mode draws random numbers and cannot be captured. Not
 * thread-safe; {@link #close()} frees the graph (not the model or the optimizer).
 */
public final class TrainingStep implements AutoCloseable {
    private final CompiledFunction graph;
    private final Optimizer optimizer;
    private final List<Tensor> params;
    private final double maxGradNorm;
    private final dev.cortado.distributed.DistributedDataParallel dataParallel;
    private List<Tensor> assigned;
    private double lastGradNorm = Double.NaN;

    TrainingStep(Function<Tensor[], Tensor> loss, Tensor[] examples, Optimizer optimizer, Map<String, Tensor> buffers,
            CompileOptions options) {
        if (options.freezeParameters()) {
            throw new IllegalArgumentException("compileTrainingStep: parameters change at every step; freezeParameters"
                    + " must be off");
        }
        this.optimizer = optimizer;
        this.params = List.copyOf(optimizer.params());
        this.maxGradNorm = options.maxGradNorm();
        this.dataParallel = options.dataParallel();
        Map<Tensor, String> names = new IdentityHashMap<>(options.parameters());
        buffers.forEach((name, t) -> names.put(t, name));
        for (int i = 0; i < params.size(); i++) {
            Tensor p = params.get(i);
            if (!p.requiresGrad() || !p.isLeaf()) {
                throw new IllegalArgumentException("compileTrainingStep: optimizer parameter " + i + " ("
                        + p.describe() + ") is not a leaf that requires gradients");
            }
            names.putIfAbsent(p, "param" + i);
        }
        List<Tensor> state = new ArrayList<>(buffers.values());
        Function<Tensor[], Tensor[]> fn = in -> captureStep(loss, in, state);
        this.graph = new CompiledFunction(fn, true, true, examples, options, names);
    }

    /** The traced body: loss, backward, the gradients and the assigned buffers; the buffers are restored after. */
    @SuppressWarnings("try")
    private Tensor[] captureStep(Function<Tensor[], Tensor> loss, Tensor[] in, List<Tensor> buffers) {
        for (int i = 0; i < params.size(); i++) {
            if (params.get(i).grad() != null) {
                throw new IllegalStateException("compileTrainingStep: optimizer parameter " + i + " ("
                        + params.get(i).describe() + ") holds a gradient; clear the gradients (zeroGrad) before a capture");
            }
        }
        List<Tensor> saved = new ArrayList<>(buffers.size());
        try (TensorTracer.Pause p = TensorTracer.pause(); Scope detached = Scope.detached();
             Autograd.GradMode off = Autograd.noGrad()) {
            for (Tensor b : buffers) {
                saved.add(b.copy());
            }
        }
        try {
            Tensor l = loss.apply(in);
            l.backward();
            List<Tensor> written = Capture.assignedParameters();
            if (assigned != null && !sameTensors(assigned, written)) {
                throw new CaptureException("compileTrainingStep: a new capture assigned other buffers (" + written.size()
                        + ") than the first (" + assigned.size() + ")");
            }
            assigned = written;
            Tensor[] out = new Tensor[1 + params.size() + written.size()];
            out[0] = l;
            for (int i = 0; i < params.size(); i++) {
                Tensor g = params.get(i).grad();
                if (g == null) {
                    throw new CaptureException("compileTrainingStep: the loss does not depend on optimizer parameter "
                            + i + " (" + params.get(i).describe() + ")");
                }
                out[1 + i] = g.detach();
            }
            for (int j = 0; j < written.size(); j++) {
                out[1 + params.size() + j] = written.get(j); // reads the value assigned last
            }
            return out;
        } finally {
            for (Tensor p : params) {
                p.setGrad(null);
            }
            try (TensorTracer.Pause p = TensorTracer.pause(); Autograd.GradMode off = Autograd.noGrad()) {
                for (int i = 0; i < saved.size(); i++) {
                    buffers.get(i).copyFrom(saved.get(i));
                    saved.get(i).close();
                }
            }
        }
    }

    private static boolean sameTensors(List<Tensor> a, List<Tensor> b) {
        if (a.size() != b.size()) {
            return false;
        }
        for (int i = 0; i < a.size(); i++) {
            if (a.get(i) != b.get(i)) {
                return false;
            }
        }
        return true;
    }

    /**
     * One step on {@code batch} (the example batch's kinds of inputs): returns the loss, a new
     * tensor the caller closes. The parameters, the optimizer's state and the module's buffers are
     * updated in place.
     */
    @SuppressWarnings("try")
    public synchronized Tensor run(Tensor... batch) {
        Tensor[] r = graph.applyAll(batch);
        int n = params.size();
        try (Autograd.GradMode off = Autograd.noGrad(); Scope detached = Scope.detached()) {
            for (int j = 0; j < assigned.size(); j++) {
                assigned.get(j).copyFrom(r[1 + n + j]);
            }
            for (int i = 0; i < n; i++) {
                params.get(i).setGrad(r[1 + i]); // the parameter owns it; cleared below
                r[1 + i] = null;
            }
            if (dataParallel != null) {
                dataParallel.synchronizeGradients();
            }
            if (maxGradNorm != Double.POSITIVE_INFINITY) {
                lastGradNorm = GradClip.clipByGlobalNorm(params, maxGradNorm);
            }
            optimizer.step();
        } catch (RuntimeException | Error e) {
            r[0].close();
            throw e;
        } finally {
            for (Tensor p : params) {
                p.setGrad(null);
            }
            for (int k = 1; k < r.length; k++) {
                if (r[k] != null) {
                    r[k].close();
                }
            }
        }
        return r[0];
    }

    /** The global gradient norm before clipping of the last {@link #run}, or NaN without clipping. */
    public double lastGradNorm() {
        return lastGradNorm;
    }

    /** The optimized graph of the latest capture: loss, gradients and assigned buffers. */
    public Graph graph() {
        return graph.graph();
    }

    /** The graph as captured. */
    public Graph capturedGraph() {
        return graph.capturedGraph();
    }

    /** The memory plan of the latest capture: arena, planned and eager peaks. */
    public MemoryPlan memoryPlan() {
        return graph.memoryPlan();
    }

    /** The buffers each run assigns (outputs after the gradients), in order. */
    public List<Tensor> assignedBuffers() {
        return Collections.unmodifiableList(assigned);
    }

    @Override
    public synchronized void close() {
        graph.close();
    }

    /** The module's buffers by name (batch norm's running statistics), non-null ones. */
    static Map<String, Tensor> buffersOf(Module model) {
        Map<String, Tensor> buffers = new LinkedHashMap<>();
        Set<Tensor> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        model.namedBuffers().forEach((name, t) -> {
            if (t != null && seen.add(t)) {
                buffers.put(name, t);
            }
        });
        return buffers;
    }
}
