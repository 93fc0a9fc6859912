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
 * <p>One graph holds all of it: the forward and the loss; the backward, made of the same backward
 * rules the tape runs (the capture runs {@code backward()} with the tape on, and the rules are op
 * calls); the in-place updates a module makes while training (batch norm's running statistics,
 * written by its training kernel into the buffers it reads by reference, and
 * {@code num_batches_tracked.copyFrom(n + 1)}, an {@code update.assign} node); and the optimizer's
 * update, one {@code update.optimizer} node ({@link Node.Update}) that reads the gradients where the
 * memory plan put them, clips them by global norm ({@link CompileOptions#maxGradNorm()}, optional)
 * with {@link GradClip}'s kernels and runs the optimizer's own fused kernels
 * ({@link Optimizer#step(List)}), which write the parameters and the optimizer's state (graph
 * parameters, held by reference) in place. The update nodes come after every read of the values
 * they write; the verifier checks it and every pass keeps it. The graph returns the loss alone:
 * the numbers equal an eager step's up to the rounding of the graph passes. With
 * {@link CompileOptions.Builder#dataParallel} the update node first averages the gradients over the
 * processes of a {@code DistributedDataParallel} (bucketed, compressed if it compresses), in place.
 * Optimizer parameters the loss does not reach (a frozen head, an unused branch) get no gradient
 * and no update, as in an eager step; a re-capture must reach the same ones.
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
    /** The indices of the optimizer's parameters the loss reaches (the others get no gradient and no update, as in an eager step). */
    private int[] reached;
    private double lastGradNorm = Double.NaN;
    /** How many values the step returns after the loss (1 with the model's output, else 0). */
    private int extras = -1;
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(TrainingStep.class);

    /** {@code loss} returns the loss first, then the values the step returns with it (the model's output). */
    TrainingStep(Function<Tensor[], Tensor[]> loss, Tensor[] examples, Optimizer optimizer, Map<String, Tensor> buffers,
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
        this.graph = new CompiledFunction(fn, true, true, examples, options, names, this::withUpdates);
    }

    /**
     * The captured graph ({@code [loss, extras..., grads..., assigned...]}) made whole: one
     * {@code update.assign} per assigned buffer and one {@code update.optimizer} that clips the
     * gradients and steps the optimizer, writing its parameters and state in place; the graph
     * returns the loss and the extras.
     */
    private Graph withUpdates(Graph captured) {
        int n = reached.length;
        int first = 1 + extras; // the first gradient
        List<Value> outs = captured.outputs();
        if (outs.size() != first + n + assigned.size()) {
            throw new GraphException("compileTrainingStep: the captured graph returns " + outs.size() + " values, expected "
                    + (first + n + assigned.size()));
        }
        Map<Tensor, Value> byTensor = new IdentityHashMap<>();
        for (Value v : captured.parameters()) {
            byTensor.put(v.tensor(), v);
        }
        Rewriter r = new Rewriter(captured);
        for (Node node : captured.nodes()) {
            r.copy(node);
        }
        Graph.Builder b = r.builder();
        for (int j = 0; j < assigned.size(); j++) {
            Tensor buffer = assigned.get(j);
            Value target = byTensor.containsKey(buffer) ? r.map(byTensor.get(buffer))
                    : b.parameter(buffer, "assigned" + j);
            b.update("assign", ASSIGN, List.of(r.map(outs.get(first + n + j))), List.of(target));
        }
        List<Value> grads = new ArrayList<>(n);
        List<Value> written = new ArrayList<>();
        for (int j = 0; j < n; j++) {
            int i = reached[j];
            grads.add(r.map(outs.get(first + j)));
            Value p = byTensor.get(params.get(i));
            written.add(p != null ? r.map(p) : b.parameter(params.get(i), "param" + i));
        }
        List<Tensor> state = optimizer.stateTensors();
        int perParam = params.isEmpty() ? 0 : state.size() / params.size();
        List<List<Value>> stateOf = new ArrayList<>();
        for (int j = 0; j < n; j++) {
            int i = reached[j];
            List<Value> own = new ArrayList<>();
            for (int k = 0; k < perParam; k++) {
                own.add(b.parameter(state.get(i * perParam + k), optimizer.name() + ".state." + i + "." + k));
            }
            stateOf.add(own);
        }
        if (maxGradNorm != Double.POSITIVE_INFINITY || dataParallel != null) {
            // clipping scales every gradient by their global norm, and the processes average them all
            // in one collective step: one update after all of them
            for (int j = 0; j < n; j++) {
                written.addAll(stateOf.get(j));
            }
            b.update("optimizer", new OptimizerStep(reached), grads, written);
        } else {
            // one update per parameter, which the schedule runs once its gradient is ready and its old value read
            for (int j = 0; j < n; j++) {
                List<Value> w = new ArrayList<>(List.of(written.get(j)));
                w.addAll(stateOf.get(j));
                b.update("optimizer", new OptimizerStep(new int[] {reached[j]}), List.of(grads.get(j)), w);
            }
        }
        for (int j = 0; j < first; j++) {
            b.output(r.map(outs.get(j)));
        }
        return b.build();
    }

    /** {@code update.assign}: the buffer takes the value (num_batches_tracked = n + 1). */
    private static final Node.UpdateRule ASSIGN = new Node.UpdateRule() {
        @Override
        public void run(List<Tensor> reads, List<Tensor> writes) {
            writes.get(0).copyFrom(reads.get(0));
        }

        @Override
        public String toString() {
            return "copy";
        }
    };

    /**
     * {@code update.optimizer} of the optimizer's parameters {@code indices}: clips the gradients (the
     * graph's values, read in place) by global norm when asked to (then {@code indices} are all of
     * them) and runs the optimizer's fused kernels on them ({@link Optimizer#step(List, boolean)}),
     * which update the parameters and their state in place with the learning rates and step counts
     * of the moment (schedules and bias correction apply at each run). The update of the first
     * parameter the loss reaches counts the optimizer's completed step.
     */
    private final class OptimizerStep implements Node.UpdateRule {
        private final int[] indices;

        OptimizerStep(int[] indices) {
            this.indices = indices.clone();
        }

        @Override
        @SuppressWarnings("try")
        public void run(List<Tensor> reads, List<Tensor> writes) {
            try (Autograd.GradMode off = Autograd.noGrad(); Scope detached = Scope.detached()) {
                List<Tensor> grads = new ArrayList<>(reads.size());
                List<Tensor> made = new ArrayList<>();
                try {
                    for (Tensor g : reads) {
                        if (!g.isContiguous()) {
                            g = g.contiguous();
                            made.add(g);
                        }
                        grads.add(g);
                    }
                    if (dataParallel != null) {  // indices are all the parameters here
                        Map<Tensor, Tensor> byParameter = new IdentityHashMap<>();
                        for (int k = 0; k < indices.length; k++) {
                            byParameter.put(params.get(indices[k]), grads.get(k));
                        }
                        dataParallel.synchronizeGradients(byParameter);
                    }
                    if (maxGradNorm != Double.POSITIVE_INFINITY) {
                        lastGradNorm = GradClip.clip(grads, maxGradNorm);
                    }
                    List<Tensor> byParam = new ArrayList<>(Collections.nCopies(params.size(), (Tensor) null));
                    for (int k = 0; k < indices.length; k++) {
                        byParam.set(indices[k], grads.get(k));
                    }
                    optimizer.step(byParam, indices[0] == reached[0]);
                } finally {
                    for (Tensor t : made) {
                        t.close();
                    }
                }
            }
        }

        @Override
        public String toString() {
            String which = indices.length == params.size() && indices.length > 1 ? "all" : java.util.Arrays.toString(indices);
            if (indices.length == reached.length && indices.length < params.size()) {
                which = "reached " + java.util.Arrays.toString(indices);
            }
            return optimizer.name() + " params " + which + (dataParallel == null ? "" : ", averaged over processes")
                    + (maxGradNorm == Double.POSITIVE_INFINITY ? "" : ", maxGradNorm=" + maxGradNorm);
        }
    }

    /** The traced body: loss, backward, the gradients and the assigned buffers; the buffers are restored after. */
    @SuppressWarnings("try")
    private Tensor[] captureStep(Function<Tensor[], Tensor[]> loss, Tensor[] in, List<Tensor> buffers) {
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
            Tensor[] returned = loss.apply(in);
            Tensor l = returned[0];
            extras = returned.length - 1;
            l.backward();
            List<Tensor> written = Capture.assignedParameters();
            if (assigned != null && !sameTensors(assigned, written)) {
                throw new CaptureException("compileTrainingStep: a new capture assigned other buffers (" + written.size()
                        + ") than the first (" + assigned.size() + ")");
            }
            assigned = written;
            int[] withGrad = java.util.stream.IntStream.range(0, params.size())
                    .filter(i -> params.get(i).grad() != null).toArray();
            if (withGrad.length == 0) {
                throw new CaptureException("compileTrainingStep: the loss depends on none of the optimizer's "
                        + params.size() + " parameters");
            }
            if (reached == null) {
                reached = withGrad;
                if (withGrad.length < params.size()) {
                    LOG.info("compileTrainingStep: the loss reaches {} of the optimizer's {} parameters; the others are not"
                            + " updated, as an eager step skips a parameter without a gradient", withGrad.length,
                            params.size());
                }
            } else if (!java.util.Arrays.equals(reached, withGrad)) {
                throw new CaptureException("compileTrainingStep: a new capture reaches other optimizer parameters ("
                        + java.util.Arrays.toString(withGrad) + ") than the first (" + java.util.Arrays.toString(reached)
                        + ")");
            }
            Tensor[] out = new Tensor[returned.length + reached.length + written.size()];
            System.arraycopy(returned, 0, out, 0, returned.length);
            for (int j = 0; j < reached.length; j++) {
                out[returned.length + j] = params.get(reached[j]).grad().detach();
            }
            for (int j = 0; j < written.size(); j++) {
                out[returned.length + reached.length + j] = written.get(j); // reads the value assigned last
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
     * updated in place, by the graph's update nodes.
     */
    public synchronized Tensor run(Tensor... batch) {
        Tensor[] out = graph.applyAll(batch);
        for (int i = 1; i < out.length; i++) {
            out[i].close();
        }
        return out[0];
    }

    /** The loss of a step and the model's output on its batch; closing it closes both. */
    public record Output(Tensor loss, Tensor modelOutput) implements AutoCloseable {
        @Override
        public void close() {
            try (loss) {
                modelOutput.close();
            }
        }
    }

    /**
     * One step, as {@link #run}, that also returns the model's output on the batch (computed by the
     * step's forward, not again): for a step compiled with
     * {@link CompileOptions.Builder#returnModelOutput}.
     */
    public synchronized Output runWithOutput(Tensor... batch) {
        if (extras == 0) {
            throw new IllegalStateException("TrainingStep.runWithOutput: the step was compiled without"
                    + " CompileOptions.returnModelOutput(true); it returns the loss alone (use run)");
        }
        Tensor[] out = graph.applyAll(batch);
        return new Output(out[0], out[1]);
    }

    /** The global gradient norm before clipping of the last {@link #run}, or NaN without clipping. */
    public double lastGradNorm() {
        return lastGradNorm;
    }

    /** The optimized graph of the latest capture: forward, loss, backward and the update nodes; it returns the loss. */
    public Graph graph() {
        return graph.graph();
    }

    /** The graph as captured, with its update nodes, before the passes. */
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
