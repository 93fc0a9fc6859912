package dev.cortado.autograd;

import dev.cortado.ops.Op;
import dev.cortado.tensor.AutogradHook;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * One recorded call on the tape: the op or view that produced some tensors, where the gradient
 * of each of its inputs goes ({@link Edge}), and what its backward rule needs (saved aliases of
 * the forward's tensors, owned by the node and freed as soon as the node is no longer needed).
 *
 * <p>Lifetime: a node is referenced by its open outputs and by the nodes downstream that read
 * them. When that count reaches zero (every output closed and no live consumer) or when backward
 * has run through it without {@code retainGraph}, it frees what it saved.
 */
final class TapeNode implements AutogradHook.Node, Op.Saved {

    /** Where the gradient of one input goes: a leaf tensor, or an output of another node. */
    record Edge(Tensor leaf, TapeNode node, int output) {
    }

    /** The gradients of the inputs from those of the outputs. */
    @FunctionalInterface
    interface Backward {
        Tensor[] apply(TapeNode node, Tensor[] outputGradients);
    }

    private final String name;
    private final Backward backward;
    final Edge[] edges;
    final int outputCount;
    private final Shape[] inputShapes;
    private final DType[] inputDTypes;
    final Shape[] outputShapes;
    final DType[] outputDTypes;
    private Tensor[] savedInputs;
    private Tensor[] savedOutputs;
    private final boolean inputsSaved;
    private final boolean outputsSaved;
    private int references;
    private boolean released;
    private boolean savedFreed;

    TapeNode(String name, Backward backward, Edge[] edges, Shape[] inputShapes, DType[] inputDTypes,
            Tensor[] outputs, Tensor[] savedInputs, Tensor[] savedOutputs) {
        this.name = name;
        this.backward = backward;
        this.edges = edges;
        this.inputShapes = inputShapes;
        this.inputDTypes = inputDTypes;
        this.outputCount = outputs.length;
        this.outputShapes = new Shape[outputs.length];
        this.outputDTypes = new DType[outputs.length];
        for (int i = 0; i < outputs.length; i++) {
            outputShapes[i] = outputs[i].shape();
            outputDTypes[i] = outputs[i].dtype();
        }
        this.savedInputs = savedInputs;
        this.savedOutputs = savedOutputs;
        this.inputsSaved = savedInputs != null;
        this.outputsSaved = savedOutputs != null;
        for (Edge e : edges) {
            if (e != null && e.node != null) {
                e.node.references++;
            }
        }
    }

    @Override
    public String name() {
        return name;
    }

    /** Counts an output tensor that points at this node. */
    void addOutputReference() {
        references++;
    }

    @Override
    public void outputClosed() {
        unreference();
    }

    private void unreference() {
        if (--references <= 0 && !released) {
            release();
        }
    }

    boolean isReleased() {
        return released;
    }

    /** Frees the saved tensors (backward has used them); the node can no longer run backward. */
    void freeSaved() {
        savedFreed = true;
        closeAll(savedInputs);
        closeAll(savedOutputs);
        savedInputs = null;
        savedOutputs = null;
    }

    /** Frees the saved tensors and lets go of the nodes upstream. */
    void release() {
        if (released) {
            return;
        }
        released = true;
        freeSaved();
        for (Edge e : edges) {
            if (e != null && e.node != null) {
                e.node.unreference();
            }
        }
    }

    /**
     * Runs the backward rule in its own scope: every temporary the rule makes (a mask, a cast, a
     * partial product) is freed when it returns; the gradients it returns survive, unowned, for
     * the engine to hand on and close.
     */
    Tensor[] runBackward(Tensor[] outputGradients) {
        if (released || savedFreed) {
            throw new IllegalStateException("backward: the tape behind " + name + " was already freed (by an earlier "
                    + "backward, or because its outputs were closed); pass retainGraph=true to run backward twice");
        }
        try (Scope rule = Scope.open()) {
            Tensor[] grads = backward.apply(this, outputGradients);
            if (grads != null) {
                for (Tensor g : grads) {
                    if (g != null && rule.owns(g)) {
                        rule.keep(g);
                    }
                }
            }
            return grads;
        }
    }

    /** Closes every non-null tensor of {@code ts} (null arrays allowed). */
    static void closeAll(Tensor[] ts) {
        if (ts != null) {
            for (Tensor t : ts) {
                if (t != null) {
                    t.close();
                }
            }
        }
    }

    // ---------------------------------------------------------------- Op.Saved

    @Override
    public Tensor input(int i) {
        if (!inputsSaved) {
            throw new IllegalStateException(name + ": the backward rule reads input " + i
                    + " but the op declares that it saves no inputs");
        }
        return i < savedInputs.length ? savedInputs[i] : null;  // a trailing optional input left out of the call
    }

    @Override
    public Tensor output(int i) {
        if (!outputsSaved) {
            throw new IllegalStateException(name + ": the backward rule reads output " + i
                    + " but the op declares that it saves no outputs");
        }
        return savedOutputs[i];
    }

    @Override
    public Shape inputShape(int i) {
        return inputShapes[i];
    }

    @Override
    public DType inputDType(int i) {
        return inputDTypes[i];
    }

    @Override
    public boolean needsGradient(int i) {
        return i < edges.length && edges[i] != null;
    }

    @Override
    public int inputCount() {
        return edges.length;
    }

    @Override
    public String toString() {
        return "TapeNode(" + name + ")";
    }
}
