package dev.cortado.graph;

import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Op;
import dev.cortado.ops.Pooling;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.DeviceType;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Layout propagation: keeps a chain of 2-d convolutions in NHWC, where the CPU convolution kernels
 * are fastest (docs/tuning.md), and transposes once at the chain's ends, in inference graphs and in
 * training graphs (the backward ops are chain members too).
 *
 * <p>A chain is a connected group of NCHW nodes on 4-d float CPU activations that have an NHWC form:
 * <ul>
 *   <li>forward: {@code conv} (2-d, any fused activation), {@code batch_norm_inference},
 *       {@code batch_norm_training}, {@code batch_norm_relu_training}, {@code max_pool},
 *       {@code max_pool_values}, {@code avg_pool}, the adaptive and global average pools, the
 *       elementwise unary ops ({@code relu}, {@code gelu}, ...) and the elementwise binary ops whose
 *       operands are chain activations of the output's shape or scalar constants (the residual add
 *       of a ResNet block);</li>
 *   <li>backward: {@code conv_backward_data}, {@code conv_backward_weight} (its weight and bias
 *       gradients keep their shape: only its inputs are activations), {@code batch_norm_backward},
 *       {@code batch_norm_relu_backward}, {@code max_pool_backward}, {@code avg_pool_backward},
 *       {@code adaptive_avg_pool_backward}, and the elementwise ops again (activation gradients such
 *       as {@code relu_grad}, the {@code add} that sums the two gradients of a residual).</li>
 * </ul>
 * Chains are linked through the activations they pass each other (seen through the identity views
 * the tape makes of the tensors it saves) and through max pooling's indices, which are
 * layout-bound: a {@code max_pool} whose indices are read by anything but a member
 * {@code max_pool_backward} (or returned) stays out, and so does a backward whose indices come from
 * a pool that stays out. A chain with at least {@link #minConvolutions} forward convolutions is
 * rewritten: each of its nodes runs in NHWC (the convolutions' weights keep their shape: the
 * kernels take {@code [K, C, kH, kW]} in both layouts), each activation entering it from outside is
 * transposed once to a contiguous NHWC copy ({@code view.nhwc} + {@code copy.contiguous}), and each
 * activation leaving it (read by a node outside the chain, or returned) is transposed back once to
 * a contiguous NCHW copy ({@code view.nchw} + {@code copy.contiguous}), so that the rest of the graph
 * (a {@code Flatten} and a linear layer, the loss, the optimizer's update) sees what it saw before.
 * In a CNN's training step that leaves three transposes: the images in, the last activation out to
 * the flatten, and its gradient back in. Results equal the NCHW graph's up to the rounding of the
 * NHWC kernels (another summation order).
 */
public final class LayoutPropagation implements Pass {
    private final int minConvolutions;
    private final boolean backwardOps;

    /** Rewrites chains of at least two convolutions (one convolution's speed-up does not pay for two transposes). */
    public LayoutPropagation() {
        this(2);
    }

    /** Rewrites chains of at least {@code minConvolutions} forward convolutions, backward ops included. */
    public LayoutPropagation(int minConvolutions) {
        this(minConvolutions, true);
    }

    /**
     * Rewrites chains of at least {@code minConvolutions} forward convolutions; without
     * {@code backwardOps} the backward ops never join a chain (the pass as it was for inference
     * graphs; tests show what the backward members save).
     */
    LayoutPropagation(int minConvolutions, boolean backwardOps) {
        this.minConvolutions = minConvolutions;
        this.backwardOps = backwardOps;
    }

    @Override
    public String name() {
        return "propagate-nhwc";
    }

    /**
     * How a node takes part in a chain: the positions of its activation inputs and outputs, of the
     * max-pooling indices it reads or makes, and whether it is a backward op.
     */
    private record Form(int[] inputs, int[] outputs, int[] indexInputs, int[] indexOutputs, boolean backward) {
        static Form of(int[] inputs, int[] outputs) {
            return new Form(inputs, outputs, new int[0], new int[0], false);
        }

        static Form backward(int[] inputs, int[] outputs) {
            return new Form(inputs, outputs, new int[0], new int[0], true);
        }

        boolean isInput(int i) {
            return contains(inputs, i) || contains(indexInputs, i);
        }

        boolean isActivationOutput(int i) {
            return contains(outputs, i);
        }

        private static boolean contains(int[] a, int i) {
            for (int v : a) {
                if (v == i) {
                    return true;
                }
            }
            return false;
        }
    }

    /** NCHW [N, C, H, W] strides {sN, sC, sH, sW} read as [N, H, W, C]. */
    private static long[] toNhwc(long[] s) {
        return new long[] {s[0], s[2], s[3], s[1]};
    }

    /** NHWC [N, H, W, C] strides read as [N, C, H, W]. */
    private static long[] toNchw(long[] s) {
        return new long[] {s[0], s[3], s[1], s[2]};
    }

    private static TensorType nhwcType(TensorType t) {
        List<Dim> d = t.dims();
        return new TensorType(t.dtype(), t.device(), List.of(d.get(0), d.get(2), d.get(3), d.get(1)));
    }

    private static boolean activation(Value v) {
        if (v == null || v.type().rank() != 4 || v.type().device().type() != DeviceType.CPU) {
            return false;
        }
        DType t = v.type().dtype();
        return t == DType.FLOAT32 || t == DType.FLOAT64;
    }

    private static boolean scalarConstant(Value v) {
        return v != null && v.isConstant() && v.tensor().numel() == 1;
    }

    /** Whether the node's inputs at {@code positions} (seen through identity views) and its outputs at {@code outs} are activations. */
    private static boolean activations(Graph g, Node.OpCall c, int[] positions, int[] outs) {
        for (int i : positions) {
            if (i >= c.inputs().size() || !activation(g.origin(c.inputs().get(i)))) {
                return false;
            }
        }
        for (int o : outs) {
            if (!activation(c.outputs().get(o))) {
                return false;
            }
        }
        return true;
    }

    private static int[] range(int n) {
        int[] r = new int[n];
        for (int i = 0; i < n; i++) {
            r[i] = i;
        }
        return r;
    }

    /** The node's form if it is NCHW with an NHWC form (its indices not yet checked), else null. */
    private Form form(Graph g, Node n) {
        if (!(n instanceof Node.OpCall c)) {
            return null;
        }
        Form f = rawForm(c);
        if (f == null || (f.backward() && !backwardOps) || !activations(g, c, f.inputs(), f.outputs())) {
            return null;
        }
        return f;
    }

    private static Form rawForm(Node.OpCall c) {
        Object a = c.attrs();
        Op<?> op = c.op();
        if (op == Convolution.CONV_OP) {
            Convolution.ConvAttrs ca = (Convolution.ConvAttrs) a;
            return ca.spatialDims() == 2 && ca.options().layout() == DataLayout.NCHW ? Form.of(new int[] {0}, new int[] {0}) : null;
        }
        if (op == Convolution.CONV_BACKWARD_DATA_OP) {
            Convolution.BackwardDataAttrs ba = (Convolution.BackwardDataAttrs) a;
            return ba.spatialDims() == 2 && ba.options().layout() == DataLayout.NCHW
                    ? Form.backward(new int[] {0}, new int[] {0}) : null;
        }
        if (op == Convolution.CONV_BACKWARD_WEIGHT_OP) {
            Convolution.BackwardWeightAttrs ba = (Convolution.BackwardWeightAttrs) a;
            return ba.spatialDims() == 2 && ba.options().layout() == DataLayout.NCHW
                    ? Form.backward(new int[] {0, 1}, new int[0]) : null;
        }
        if (op == BatchNorm.BATCH_NORM_INFERENCE_OP || op == BatchNorm.BATCH_NORM_TRAINING_OP
                || op == BatchNorm.BATCH_NORM_RELU_TRAINING_OP) {
            return ((BatchNorm.BatchNormAttrs) a).layout() == DataLayout.NCHW ? Form.of(new int[] {0}, new int[] {0}) : null;
        }
        if (op == BatchNorm.BATCH_NORM_BACKWARD_OP) {
            return ((BatchNorm.BatchNormAttrs) a).layout() == DataLayout.NCHW
                    ? Form.backward(new int[] {0, 1}, new int[] {0}) : null;
        }
        if (op == BatchNorm.BATCH_NORM_RELU_BACKWARD_OP) {
            return ((BatchNorm.BatchNormAttrs) a).layout() == DataLayout.NCHW
                    ? Form.backward(new int[] {0, 1, 2}, new int[] {0}) : null;
        }
        if (op == Pooling.MAX_POOL_OP) {
            return ((Pooling.PoolOptions) a).layout() == DataLayout.NCHW
                    ? new Form(new int[] {0}, new int[] {0}, new int[0], new int[] {1}, false) : null;
        }
        if (op == Pooling.MAX_POOL_BACKWARD_OP) {
            return ((Pooling.PoolOptions) a).layout() == DataLayout.NCHW
                    ? new Form(new int[] {0, 1}, new int[] {0}, new int[] {2}, new int[0], true) : null;
        }
        if (op == Pooling.AVG_POOL_OP || op == Pooling.MAX_POOL_VALUES_OP) {
            return ((Pooling.PoolOptions) a).layout() == DataLayout.NCHW ? Form.of(new int[] {0}, new int[] {0}) : null;
        }
        if (op == Pooling.AVG_POOL_BACKWARD_OP) {
            return ((Pooling.PoolOptions) a).layout() == DataLayout.NCHW
                    ? Form.backward(new int[] {0, 1}, new int[] {0}) : null;
        }
        if (op == Pooling.ADAPTIVE_AVG_POOL_OP || op == Pooling.GLOBAL_AVG_POOL_OP) {
            return ((Pooling.AdaptiveOptions) a).layout() == DataLayout.NCHW ? Form.of(new int[] {0}, new int[] {0}) : null;
        }
        if (op == Pooling.ADAPTIVE_AVG_POOL_BACKWARD_OP) {
            return ((Pooling.AdaptiveOptions) a).layout() == DataLayout.NCHW
                    ? Form.backward(new int[] {0, 1}, new int[] {0}) : null;
        }
        String name = op.name();
        boolean grad = name.endsWith("_grad");
        if (FusedElementwise.UNARY_CODES.containsKey(name) && a instanceof Elementwise.Params && c.inputs().size() == 1
                && c.inputs().get(0).type().sameConcrete(c.outputs().get(0).type())) {
            return new Form(new int[] {0}, new int[] {0}, new int[0], new int[0], grad);
        }
        if (FusedElementwise.BINARY_CODES.containsKey(name) && c.inputs().size() == 2) {
            List<Integer> act = new ArrayList<>();
            for (int i = 0; i < 2; i++) {
                Value v = c.inputs().get(i);
                if (activation(v) && v.type().sameConcrete(c.outputs().get(0).type())) {
                    act.add(i);
                } else if (!scalarConstant(v)) {
                    return null;
                }
            }
            return act.isEmpty() ? null
                    : new Form(act.stream().mapToInt(Integer::intValue).toArray(), new int[] {0}, new int[0], new int[0], grad);
        }
        return null;
    }

    private static Convolution.ConvOptions nhwc(Convolution.ConvOptions o) {
        return new Convolution.ConvOptions(o.stride(), o.padBefore(), o.padAfter(), o.samePadding(), o.dilation(),
                o.groups(), DataLayout.NHWC, o.algorithm(), o.activation(), o.outputPadding());
    }

    /** The node's attributes in NHWC. */
    private static Object nhwcAttrs(Node.OpCall c) {
        Object a = c.attrs();
        if (a instanceof Convolution.ConvAttrs ca) {
            return new Convolution.ConvAttrs(ca.spatialDims(), nhwc(ca.options()));
        }
        if (a instanceof Convolution.BackwardDataAttrs ba) {
            return new Convolution.BackwardDataAttrs(ba.spatialDims(), nhwc(ba.options()), ba.inputSize());
        }
        if (a instanceof Convolution.BackwardWeightAttrs ba) {
            return new Convolution.BackwardWeightAttrs(ba.spatialDims(), nhwc(ba.options()), ba.kernelSize(), ba.bias());
        }
        if (a instanceof BatchNorm.BatchNormAttrs ba) {
            return ba.withLayout(DataLayout.NHWC);
        }
        if (a instanceof Pooling.PoolOptions o) {
            return new Pooling.PoolOptions(o.kernel(), o.stride(), o.padding(), o.paddingAfter(), o.dilation(),
                    o.countIncludePad(), o.ceilMode(), DataLayout.NHWC);
        }
        if (a instanceof Pooling.AdaptiveOptions o) {
            return new Pooling.AdaptiveOptions(o.outputSize(), DataLayout.NHWC);
        }
        return a;
    }

    /** Whether {@code n} is a view that reads its source exactly as it is (what the tape makes of a saved tensor). */
    private static boolean identityView(Graph g, Node n) {
        return n instanceof Node.View v && g.origin(v.output()) != v.output();
    }

    /**
     * The candidates and their forms: the nodes with an NHWC form, less the max pools whose indices
     * something else reads (or the graph returns) and the backward ops whose indices come from a pool
     * that is not a candidate, until nothing changes.
     */
    private Map<Node, Form> candidates(Graph g) {
        Map<Node, Form> forms = new IdentityHashMap<>();
        for (Node n : g.nodes()) {
            Form f = form(g, n);
            if (f != null) {
                forms.put(n, f);
            }
        }
        Map<Value, List<Node>> readers = g.readersThroughIdentityViews();
        boolean changed = true;
        while (changed) {
            changed = false;
            for (Node n : List.copyOf(forms.keySet())) {
                Form f = forms.get(n);
                boolean ok = true;
                for (int o : f.indexOutputs()) {
                    Value idx = n.outputs().get(o);
                    for (Node reader : readers.getOrDefault(idx, List.of())) {
                        if (reader == null || !forms.containsKey(reader) || !readsIndicesOnly(g, reader, forms.get(reader), idx)) {
                            ok = false;
                        }
                    }
                }
                for (int i : f.indexInputs()) {
                    Value idx = g.origin(n.inputs().get(i));
                    Node p = g.producer(idx);
                    if (p == null || !forms.containsKey(p) || !Form.contains(forms.get(p).indexOutputs(), p.outputs().indexOf(idx))) {
                        ok = false;
                    }
                }
                if (!ok) {
                    forms.remove(n);
                    changed = true;
                }
            }
        }
        return forms;
    }

    /** Whether {@code reader} reads {@code idx} (through identity views) only at its index positions. */
    private static boolean readsIndicesOnly(Graph g, Node reader, Form f, Value idx) {
        for (int i = 0; i < reader.inputs().size(); i++) {
            Value in = reader.inputs().get(i);
            if (in != null && g.origin(in) == idx && !Form.contains(f.indexInputs(), i)) {
                return false;
            }
        }
        return true;
    }

    @Override
    public Graph apply(Graph g) {
        List<Node> nodes = g.nodes();
        Map<Node, Form> forms = candidates(g);
        // union-find over the candidates, joined through the activations and indices one passes another
        Map<Node, Node> parent = new IdentityHashMap<>();
        for (Node n : forms.keySet()) {
            parent.put(n, n);
        }
        for (Map.Entry<Node, Form> e : forms.entrySet()) {
            Node n = e.getKey();
            for (int i = 0; i < n.inputs().size(); i++) {
                if (!e.getValue().isInput(i)) {
                    continue;
                }
                Value v = g.origin(n.inputs().get(i));
                Node p = g.producer(v);
                Form pf = p == null ? null : forms.get(p);
                int o = p == null ? -1 : p.outputs().indexOf(v);
                if (pf != null && (pf.isActivationOutput(o) || Form.contains(pf.indexOutputs(), o))) {
                    parent.put(find(parent, n), find(parent, p));
                }
            }
        }
        Map<Node, Integer> convs = new IdentityHashMap<>();
        for (Node n : forms.keySet()) {
            if (((Node.OpCall) n).op() == Convolution.CONV_OP) {
                convs.merge(find(parent, n), 1, Integer::sum);
            }
        }
        Set<Node> chain = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
        for (Node n : forms.keySet()) {
            if (convs.getOrDefault(find(parent, n), 0) >= minConvolutions) {
                chain.add(n);
            }
        }
        if (chain.isEmpty()) {
            return new DeadCodeElimination().apply(g);
        }
        // values read outside the chain (or returned) need their NCHW form back; identity views are seen through
        Set<Value> leaving = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
        for (Value v : g.outputs()) {
            leaving.add(g.origin(v));
        }
        for (Node n : nodes) {
            if (identityView(g, n)) {
                continue;
            }
            Form f = chain.contains(n) ? forms.get(n) : null;
            for (int i = 0; i < n.inputs().size(); i++) {
                if (n.inputs().get(i) != null && (f == null || !f.isInput(i))) {
                    leaving.add(g.origin(n.inputs().get(i)));
                }
            }
        }
        Rewriter r = new Rewriter(g);
        Map<Value, Value> nhwc = new IdentityHashMap<>(); // a chain value (activation or indices) -> its NHWC value
        for (Node n : nodes) {
            if (identityView(g, n) && nhwc.containsKey(g.origin(((Node.View) n).output()))) {
                if (leaving.contains(g.origin(((Node.View) n).output()))) {
                    r.copy(n); // of the NCHW copy
                }
                continue; // chain members read the value under it
            }
            if (!chain.contains(n)) {
                r.copy(n);
                continue;
            }
            Node.OpCall c = (Node.OpCall) n;
            Form f = forms.get(n);
            List<Value> in = new ArrayList<>(c.inputs().size());
            for (int i = 0; i < c.inputs().size(); i++) {
                Value old = c.inputs().get(i);
                if (!f.isInput(i)) {
                    in.add(r.map(old));
                    continue;
                }
                Value o = g.origin(old);
                Value v = nhwc.get(o);
                if (v == null) { // entering the chain: one transposed contiguous copy
                    Value src = r.map(o);
                    TensorType t = nhwcType(o.type());
                    Value view = r.builder().view("nhwc", src, t, toNhwc(g.strides(o)), 0);
                    v = r.builder().copy("contiguous", view, t);
                    nhwc.put(o, v);
                }
                in.add(v);
            }
            List<Value> outs = r.builder().op(c.op(), nhwcAttrs(c), in);
            for (int o = 0; o < outs.size(); o++) {
                Value old = c.outputs().get(o);
                Value v = outs.get(o);
                if (f.isActivationOutput(o)) {
                    nhwc.put(old, v);
                    if (leaving.contains(old)) { // leaving the chain: back to a contiguous NCHW copy
                        long[] st = v.type().shape().contiguousStrides();
                        Value view = r.builder().view("nchw", v, old.type(), toNchw(st), 0);
                        r.replace(old, r.builder().copy("contiguous", view, old.type()));
                    }
                } else if (Form.contains(f.indexOutputs(), o)) {
                    nhwc.put(old, v); // max pooling's indices: read by member backward ops only
                } else {
                    r.replace(old, v); // statistics, weight and bias gradients: the same in both layouts
                }
            }
        }
        try (Graph out = r.finish()) {
            return new DeadCodeElimination().apply(out);
        }
    }

    private static Node find(Map<Node, Node> parent, Node n) {
        Node p = parent.get(n);
        while (p != parent.get(p)) {
            p = parent.get(p);
        }
        parent.put(n, p);
        return p;
    }
}
