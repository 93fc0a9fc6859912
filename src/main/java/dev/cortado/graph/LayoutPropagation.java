package dev.cortado.graph;

import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Elementwise;
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
 * are fastest (docs/tuning.md), and transposes once at the chain's ends.
 *
 * <p>A chain is a connected group of NCHW nodes on 4-d float CPU activations that have an NHWC form:
 * {@code conv} (2-d, any fused activation), {@code batch_norm_inference}, {@code max_pool} (when its
 * indices are unread), {@code avg_pool}, the adaptive average pools, the elementwise unary ops
 * ({@code relu}, {@code gelu}, ...) and the elementwise binary ops whose two operands are chain
 * activations of the output's shape or scalar constants (the residual add of a ResNet block).
 * Chains are linked through the activations they pass each other. A chain with at least
 * {@link #minConvolutions} convolutions is rewritten: each of its nodes runs in NHWC (the
 * convolutions' weights keep their shape: the kernels take {@code [K, C, kH, kW]} in both
 * layouts), each activation entering it from outside is transposed once to a contiguous NHWC copy
 * ({@code view.permute} + {@code copy.contiguous}), and each activation leaving it (read by a node
 * outside the chain, or returned) is transposed back once to a contiguous NCHW copy, so that the
 * rest of the graph (a {@code Flatten} and a linear layer, the loss) sees what it saw before.
 *
 * <p>In a training graph the convolutions' outputs are read by batch norm in training mode and by
 * the backward, which this pass does not move, so chains are single convolutions and nothing is
 * rewritten: the pass is for inference graphs. Results equal the NCHW graph's up to the rounding
 * of the NHWC kernels (another summation order).
 */
public final class LayoutPropagation implements Pass {
    private final int minConvolutions;

    /** Rewrites chains of at least two convolutions (one convolution's speed-up does not pay for two transposes). */
    public LayoutPropagation() {
        this(2);
    }

    /** Rewrites chains of at least {@code minConvolutions} convolutions. */
    public LayoutPropagation(int minConvolutions) {
        this.minConvolutions = minConvolutions;
    }

    @Override
    public String name() {
        return "propagate-nhwc";
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

    /** The indices of the activation inputs of {@code n} if it has an NHWC form, else null. */
    private static int[] layoutInputs(Node n, Map<Value, Integer> uses) {
        if (!(n instanceof Node.OpCall c) || !activation(c.outputs().get(0))) {
            return null;
        }
        Object a = c.attrs();
        if (c.op() == Convolution.CONV_OP) {
            Convolution.ConvAttrs ca = (Convolution.ConvAttrs) a;
            return ca.spatialDims() == 2 && ca.options().layout() == DataLayout.NCHW && activation(c.inputs().get(0))
                    ? new int[] {0} : null;
        }
        if (c.op() == BatchNorm.BATCH_NORM_INFERENCE_OP) {
            return ((BatchNorm.BatchNormAttrs) a).layout() == DataLayout.NCHW && activation(c.inputs().get(0))
                    ? new int[] {0} : null;
        }
        if (c.op() == Pooling.MAX_POOL_OP || c.op() == Pooling.AVG_POOL_OP) {
            Pooling.PoolOptions o = (Pooling.PoolOptions) a;
            boolean indicesRead = c.outputs().size() > 1 && uses.getOrDefault(c.outputs().get(1), 0) > 0;
            return o.layout() == DataLayout.NCHW && !indicesRead && activation(c.inputs().get(0))
                    ? new int[] {0} : null;
        }
        if (c.op() == Pooling.ADAPTIVE_AVG_POOL_OP || c.op() == Pooling.GLOBAL_AVG_POOL_OP) {
            return ((Pooling.AdaptiveOptions) a).layout() == DataLayout.NCHW && activation(c.inputs().get(0))
                    ? new int[] {0} : null;
        }
        String name = c.op().name();
        if (FusedElementwise.UNARY_CODES.containsKey(name) && a instanceof Elementwise.Params && c.inputs().size() == 1
                && c.inputs().get(0).type().sameConcrete(c.outputs().get(0).type())) {
            return new int[] {0};
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
            return act.isEmpty() ? null : act.stream().mapToInt(Integer::intValue).toArray();
        }
        return null;
    }

    /** The node's attributes in NHWC. */
    private static Object nhwcAttrs(Node.OpCall c) {
        Object a = c.attrs();
        if (a instanceof Convolution.ConvAttrs ca) {
            Convolution.ConvOptions o = ca.options();
            return new Convolution.ConvAttrs(ca.spatialDims(), new Convolution.ConvOptions(o.stride(), o.padBefore(),
                    o.padAfter(), o.samePadding(), o.dilation(), o.groups(), DataLayout.NHWC, o.algorithm(),
                    o.activation(), o.outputPadding()));
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

    @Override
    public Graph apply(Graph g) {
        Map<Value, Integer> uses = g.useCounts();
        List<Node> nodes = g.nodes();
        // union-find over the candidate nodes, joined through the activations one passes another
        Map<Node, int[]> inputsOf = new IdentityHashMap<>();
        Map<Node, Node> parent = new IdentityHashMap<>();
        for (Node n : nodes) {
            int[] in = layoutInputs(n, uses);
            if (in != null) {
                inputsOf.put(n, in);
                parent.put(n, n);
            }
        }
        for (Node n : inputsOf.keySet()) {
            for (int i : inputsOf.get(n)) {
                Node p = g.producer(n.inputs().get(i));
                if (p != null && inputsOf.containsKey(p) && p.outputs().get(0) == n.inputs().get(i)) {
                    parent.put(find(parent, n), find(parent, p));
                }
            }
        }
        Map<Node, Integer> convs = new IdentityHashMap<>();
        for (Node n : inputsOf.keySet()) {
            if (((Node.OpCall) n).op() == Convolution.CONV_OP) {
                convs.merge(find(parent, n), 1, Integer::sum);
            }
        }
        Set<Node> chain = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
        for (Node n : inputsOf.keySet()) {
            if (convs.getOrDefault(find(parent, n), 0) >= minConvolutions) {
                chain.add(n);
            }
        }
        if (chain.isEmpty()) {
            return new DeadCodeElimination().apply(g);
        }
        // values read outside the chain (or returned) need their NCHW form back
        Set<Value> leaving = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
        leaving.addAll(g.outputs());
        for (Node n : nodes) {
            int[] act = chain.contains(n) ? inputsOf.get(n) : new int[0];
            for (int i = 0; i < n.inputs().size(); i++) {
                final int k = i;
                if (!java.util.Arrays.stream(act).anyMatch(j -> j == k)) {
                    leaving.add(n.inputs().get(i));
                }
            }
        }
        Rewriter r = new Rewriter(g);
        Map<Value, Value> nhwc = new IdentityHashMap<>();
        for (Node n : nodes) {
            if (!chain.contains(n)) {
                r.copy(n);
                continue;
            }
            Node.OpCall c = (Node.OpCall) n;
            List<Value> in = new ArrayList<>(c.inputs());
            int[] act = inputsOf.get(n);
            for (int i = 0; i < in.size(); i++) {
                final int k = i;
                if (!java.util.Arrays.stream(act).anyMatch(j -> j == k)) {
                    in.set(i, r.map(in.get(i)));
                }
            }
            for (int i : act) {
                Value old = c.inputs().get(i);
                Value v = nhwc.get(old);
                if (v == null) { // entering the chain: one transposed contiguous copy
                    Value src = r.map(old);
                    TensorType t = nhwcType(old.type());
                    Value view = r.builder().view("nhwc", src, t, toNhwc(g.strides(old)), 0);
                    v = r.builder().copy("contiguous", view, t);
                    nhwc.put(old, v);
                }
                in.set(i, v);
            }
            List<Value> outs = r.builder().op(c.op(), nhwcAttrs(c), in);
            for (int o = 0; o < outs.size(); o++) {
                Value old = c.outputs().get(o);
                Value v = outs.get(o);
                if (o == 0) {
                    nhwc.put(old, v);
                    if (leaving.contains(old)) { // leaving the chain: back to a contiguous NCHW copy
                        long[] st = v.type().shape().contiguousStrides();
                        Value view = r.builder().view("nchw", v, old.type(), toNchw(st), 0);
                        r.replace(old, r.builder().copy("contiguous", view, old.type()));
                    }
                } else {
                    r.replace(old, v); // max_pool's unread indices
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
