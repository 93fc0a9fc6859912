package dev.cortado.graph;

import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.Elementwise;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Batch norm + ReLU fusion for training graphs. In a captured training step,
 * <pre>
 *   y, mean, rstd = batch_norm_training(x, w, b, running_mean, running_var)
 *   r = relu(y)
 *   ...
 *   gy = relu_grad(gr, r)                                // ReLU's backward rule reads its output
 *   dx, dw, db = batch_norm_backward(gy, x, w, mean, rstd)
 * </pre>
 * becomes
 * <pre>
 *   r, mean, rstd = batch_norm_relu_training(x, w, b, running_mean, running_var)
 *   ...
 *   dx, dw, db = batch_norm_relu_backward(gr, r, x, w, mean, rstd)
 * </pre>
 * The forward writes the normalized values once and rectifies them in place; the backward masks
 * the gradient into dx and runs the batch-norm backward in place on it. Two nodes and two tensors
 * of x's size (the pre-activation and the masked gradient) go away per batch norm. What the
 * backward keeps from the forward is unchanged: x, the statistics and the ReLU output.
 *
 * <p>The forward is fused when the batch norm's output feeds only a ReLU of the same type (a graph
 * without backward, such as a forward in training mode, gets the fused forward alone); the backward
 * when the batch-norm backward's gradient is a {@code relu_grad} read by nothing else, of the fused
 * ReLU's output, and the backward reads the same x, weight and statistics as the fused forward.
 * Results equal the unfused graph's (the same kernels, in the same order).
 */
public final class BatchNormReluFusion implements Pass {
    @Override
    public String name() {
        return "fuse-batchnorm-relu";
    }

    @Override
    public Graph apply(Graph g) {
        Map<Value, List<Node>> read = g.readersThroughIdentityViews(); // the tape's detach views of saved tensors do not count
        Map<Value, Integer> uses = new IdentityHashMap<>();
        Map<Value, Node.OpCall> readers = new IdentityHashMap<>(); // a value's only reader, when it is an op call
        read.forEach((v, rs) -> {
            uses.put(v, rs.size());
            if (rs.size() == 1 && rs.get(0) instanceof Node.OpCall c) {
                readers.put(v, c);
            }
        });
        Map<Value, Node.OpCall> fusedOut = new IdentityHashMap<>(); // old relu output -> the bn it was fused with
        Map<Node, Boolean> skip = new IdentityHashMap<>();
        Map<Value, Boolean> fusedAway = new IdentityHashMap<>(); // pre-activations that no longer exist
        Rewriter r = new Rewriter(g);
        for (Node n : g.nodes()) {
            if (skip.containsKey(n) || n instanceof Node.View v && fusedAway.containsKey(g.origin(v.source()))) {
                continue; // the fused ReLU, and the tape's unread detach views of the pre-activation
            }
            if (n instanceof Node.OpCall bn && bn.op() == BatchNorm.BATCH_NORM_TRAINING_OP) {
                Node.OpCall relu = readers.get(bn.outputs().get(0));
                if (relu != null && relu.op() == Elementwise.RELU_OP
                        && relu.outputs().get(0).type().sameConcrete(bn.outputs().get(0).type())) {
                    List<Value> outs = r.builder().op(BatchNorm.BATCH_NORM_RELU_TRAINING_OP, bn.attrs(), r.map(bn.inputs()),
                            types(List.of(relu.outputs().get(0), bn.outputs().get(1), bn.outputs().get(2))));
                    r.replace(relu.outputs().get(0), outs.get(0));
                    r.replace(bn.outputs().get(1), outs.get(1));
                    r.replace(bn.outputs().get(2), outs.get(2));
                    fusedOut.put(relu.outputs().get(0), bn);
                    fusedAway.put(bn.outputs().get(0), true);
                    skip.put(relu, true);
                    continue;
                }
            }
            if (n instanceof Node.OpCall back && back.op() == BatchNorm.BATCH_NORM_BACKWARD_OP && fuseBackward(g, back, uses,
                    fusedOut, r)) {
                continue;
            }
            r.copy(n);
        }
        try (Graph fused = r.finish()) {
            return new DeadCodeElimination().apply(fused); // drops the relu_grad nodes the fused backward replaced
        }
    }

    /** Emits the fused backward for {@code back} when its gradient is the ReLU mask of a fused forward. */
    private static boolean fuseBackward(Graph g, Node.OpCall back, Map<Value, Integer> uses,
            Map<Value, Node.OpCall> fusedOut, Rewriter r) {
        Value gy = g.origin(back.inputs().get(0));
        if (uses.getOrDefault(gy, 0) != 1 || !(g.producer(gy) instanceof Node.OpCall mask)
                || mask.op() != Elementwise.RELU_GRAD_OP) {
            return false;
        }
        Value relued = g.origin(mask.inputs().get(1)); // the tape reads saved tensors through detach views
        Node.OpCall bn = fusedOut.get(relued);
        if (bn == null || !mask.inputs().get(0).type().sameConcrete(gy.type())) {
            return false;
        }
        // the backward must be of this forward: the same x, weight and saved statistics, the same attributes
        List<Value> bi = back.inputs();
        if (g.origin(bi.get(1)) != g.origin(bn.inputs().get(0)) || g.origin(at(bi, 2)) != g.origin(at(bn.inputs(), 1))
                || g.origin(at(bi, 3)) != bn.outputs().get(1) || g.origin(at(bi, 4)) != bn.outputs().get(2)
                || !back.attrs().equals(bn.attrs())) {
            return false;
        }
        List<Value> in = new ArrayList<>(List.of(r.map(mask.inputs().get(0)), r.map(relued), r.map(bi.get(1))));
        in.add(r.map(at(bi, 2)));
        in.add(r.map(bi.get(3)));
        in.add(r.map(bi.get(4)));
        List<Value> outs = r.builder().op(BatchNorm.BATCH_NORM_RELU_BACKWARD_OP, back.attrs(), in, types(back.outputs()));
        for (int i = 0; i < outs.size(); i++) {
            r.replace(back.outputs().get(i), outs.get(i));
        }
        return true;
    }

    private static Value at(List<Value> vs, int i) {
        return i < vs.size() ? vs.get(i) : null;
    }

    private static List<TensorType> types(List<Value> vs) {
        List<TensorType> t = new ArrayList<>(vs.size());
        for (Value v : vs) {
            t.add(v.type());
        }
        return t;
    }
}
