package dev.cortado.graph;

import dev.cortado.ops.Attention;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Recognizes attention written out op by op and rewrites it to the fused
 * {@code scaled_dot_product_attention} (whose kernel never stores the score matrix). The pattern,
 * on 4-d operands {@code q [B, H, Lq, D]}, {@code kᵀ [B, H, D, Lk]}, {@code v [B, H, Lk, Dv]}
 * (what an exported transformer imported from ONNX, or attention written with tensor methods,
 * captures):
 * <pre>
 *   u = matmul(q, kt)                  kt: any value; k is read as kt's memory with the last two dims swapped
 *   t = mul(u, c) | div(u, c) | u      c: a scalar constant (the scale; none means 1)
 *   s = add(t, mask) | where(m, t, -inf) | t
 *   p = softmax(s, axis -1)
 *   o = matmul(p, v)
 * </pre>
 * becomes {@code o, lse = scaled_dot_product_attention(q, k, v[, mask])} with the scale. An
 * additive mask (same dtype, broadcastable to {@code [B, H, Lq, Lk]}) is passed as the op's mask,
 * a boolean one of a {@code where} with a {@code -inf} fill likewise; a constant additive mask that
 * is exactly the causal one (0 where key j &lt;= query i + Lk - Lq, -inf elsewhere, equal over the
 * leading dims) becomes the {@code causal} option and no mask.
 *
 * <p>In a training graph (the backward captured from the tape's rules) the backward of the
 * pattern is recognized too: {@code dP = matmul(dO, vᵀ)}, {@code dV = matmul(pᵀ, dO)},
 * {@code dS = softmax_backward(p, dP)}, the scale's {@code dU = mul(dS, c)} or {@code div(dS, c)},
 * {@code dQ = matmul(dU, ktᵀ)}, {@code dKt = matmul(qᵀ, dU)}; the three gradients are then
 * replaced by {@code scaled_dot_product_attention_backward(dO, q, k, v, o, lse[, mask])} (dKt by
 * a contiguous copy of dK's transpose). A training graph whose backward differs (a boolean mask,
 * gradients into the mask, the probabilities read elsewhere) is left alone.
 *
 * <p>Only a pattern whose intermediates nothing else reads is rewritten (a score or probability
 * tensor that is returned or read by another op stays as it is), so the rewrite always removes the
 * [B, H, Lq, Lk] tensors. The results differ from the unfused graph's by rounding (the fused kernel
 * sums in another order); a row that every key is masked out of gives NaN unfused and is not
 * specified fused.
 */
public final class AttentionFusion implements Pass {
    @Override
    public String name() {
        return "fuse-attention";
    }

    /** What a matched pattern reads and the nodes it spans. */
    private record Match(Node.OpCall mm1, Node.OpCall softmax, Node.OpCall mm2, Value q, Value kt, Value v, Value mask,
                         double scale, double scaleConstant, boolean divides, boolean causal, Backward back) {
    }

    /** The matched backward: its gradient input and the three result nodes. */
    private record Backward(Value dO, Node.OpCall dv, Node.OpCall dq, Node.OpCall dkt) {
    }

    @Override
    public Graph apply(Graph g) {
        Map<Value, List<Node>> readers = g.readersThroughIdentityViews(); // the tape reads saved tensors through detach views
        Map<Value, Integer> uses = new IdentityHashMap<>();
        readers.forEach((v, rs) -> uses.put(v, rs.size()));
        Map<Node, Match> byOutputNode = new IdentityHashMap<>();
        Map<Node, Match> byBackwardNode = new IdentityHashMap<>();
        for (Node n : g.nodes()) {
            if (n instanceof Node.OpCall c && c.op() == Normalization.SOFTMAX_OP) {
                Match m = match(g, c, uses, readers);
                if (m != null) {
                    byOutputNode.put(m.mm2(), m);
                    if (m.back() != null) {
                        byBackwardNode.put(m.back().dv(), m);
                        byBackwardNode.put(m.back().dq(), m);
                        byBackwardNode.put(m.back().dkt(), m);
                    }
                }
            }
        }
        if (byOutputNode.isEmpty()) {
            return new DeadCodeElimination().apply(g);
        }
        Rewriter r = new Rewriter(g);
        Map<Match, Value[]> emitted = new IdentityHashMap<>(); // {o, lse, k}
        Map<Match, Boolean> backwardDone = new IdentityHashMap<>();
        for (Node n : g.nodes()) {
            Match m = byOutputNode.get(n);
            if (m != null) {
                emitted.put(m, emitForward(g, m, r));
                continue;
            }
            m = byBackwardNode.get(n);
            if (m != null) {
                if (!backwardDone.containsKey(m)) {
                    backwardDone.put(m, true);
                    emitBackward(m, emitted.get(m), r);
                }
                continue;
            }
            r.copy(n);
        }
        try (Graph fused = r.finish()) {
            return new DeadCodeElimination().apply(fused); // the unfused forward and backward are now unread
        }
    }

    private static Attention.Options options(Match m) {
        return Attention.Options.builder().causal(m.causal()).scale(m.scale()).build();
    }

    private static Value[] emitForward(Graph g, Match m, Rewriter r) {
        Value k = transposedView(g, m.kt(), r);
        List<Value> in = new ArrayList<>(List.of(r.map(m.q()), k, r.map(m.v())));
        if (m.mask() != null) {
            in.add(r.map(m.mask()));
        }
        List<Value> out = r.builder().op(Attention.SDPA_OP, options(m), in);
        r.replace(m.mm2().outputs().get(0), out.get(0));
        return new Value[] {out.get(0), out.get(1), k};
    }

    private static void emitBackward(Match m, Value[] fwd, Rewriter r) {
        Backward b = m.back();
        List<Value> in = new ArrayList<>(List.of(r.map(b.dO()), r.map(m.q()), fwd[2], r.map(m.v()), fwd[0], fwd[1]));
        if (m.mask() != null) {
            in.add(r.map(m.mask()));
        }
        List<Value> d = r.builder().op(Attention.SDPA_BACKWARD_OP, options(m), in);
        r.replace(b.dq().outputs().get(0), d.get(0));
        r.replace(b.dv().outputs().get(0), d.get(2));
        // dKt was a contiguous [B, H, D, Lk]: a contiguous copy of dK's transpose (views of it assume that layout)
        Value dk = d.get(1);
        TensorType ktType = b.dkt().outputs().get(0).type();
        long[] st = dk.type().shape().contiguousStrides();
        Value t = r.builder().view("transpose", dk, ktType, swapLast(st), 0);
        r.replace(b.dkt().outputs().get(0), r.builder().copy("contiguous", t, ktType));
    }

    /** k: kt's memory with the last two dims swapped, as a view of what kt is a view of (or of kt itself). */
    private static Value transposedView(Graph g, Value kt, Rewriter r) {
        Strided s = resolve(g, kt);
        List<dev.cortado.graph.Dim> dims = new ArrayList<>(kt.type().dims());
        java.util.Collections.swap(dims, dims.size() - 1, dims.size() - 2);
        TensorType kType = new TensorType(kt.type().dtype(), kt.type().device(), dims);
        return r.builder().view("transpose", r.map(s.root()), kType, swapLast(s.strides()), s.offset());
    }

    private static long[] swapLast(long[] st) {
        long[] s = st.clone();
        int n = s.length;
        long t = s[n - 1];
        s[n - 1] = s[n - 2];
        s[n - 2] = t;
        return s;
    }

    /** A value as memory: the value owning it (through views), the strides in its units and the offset from its start. */
    private record Strided(Value root, long[] strides, long offset) {
    }

    private static Strided resolve(Graph g, Value v) {
        long[] strides = g.strides(v);
        long offset = 0;
        Value root = v;
        while (g.producer(root) instanceof Node.View view) {
            offset += view.offset();
            root = view.source();
        }
        return new Strided(root, strides, offset);
    }

    /** Whether {@code a} reads {@code b}'s memory with its last two dims swapped. */
    private static boolean isTransposeOf(Graph g, Value a, Value b) {
        if (a.type().rank() != b.type().rank() || a.type().rank() < 2) {
            return false;
        }
        Strided sa = resolve(g, a);
        Strided sb = resolve(g, b);
        return sa.root() == sb.root() && sa.offset() == sb.offset() && Arrays.equals(sa.strides(), swapLast(sb.strides()));
    }

    private static Node.OpCall call(Graph g, Value v, dev.cortado.ops.Op<?> op) {
        return v != null && g.producer(g.origin(v)) instanceof Node.OpCall c && c.op() == op ? c : null;
    }

    /** The value of a scalar constant (numel 1), or NaN. */
    private static double scalarConstant(Graph g, Value v) {
        v = g.origin(v);
        if (v == null || v.kind() != Value.Kind.CONSTANT || v.tensor().numel() != 1 || !v.type().dtype().isFloatingPoint()) {
            return Double.NaN;
        }
        return v.tensor().toDoubleArray()[0];
    }

    private static Match match(Graph g, Node.OpCall softmax, Map<Value, Integer> uses, Map<Value, List<Node>> readers) {
        Normalization.SoftmaxAttrs sa = (Normalization.SoftmaxAttrs) softmax.attrs();
        Value s = g.origin(softmax.inputs().get(0));
        Value p = softmax.outputs().get(0);
        TensorType st = s.type();
        if (sa.log() || st.rank() != 4 || (sa.axis() != -1 && sa.axis() != 3) || !supported(st.dtype())) {
            return null;
        }
        // s = add(t, mask) | where(m, t, -inf) | t
        Value t = s;
        Value mask = null;
        boolean additive = false;
        Node.OpCall add = call(g, s, Elementwise.ADD_OP);
        Node.OpCall where = call(g, s, Elementwise.WHERE_OP);
        if (add != null) {
            for (int side = 0; side < 2 && mask == null; side++) {
                Value a = add.inputs().get(side);
                Value b = add.inputs().get(1 - side);
                if (a.type().sameConcrete(st) && b.type().dtype() == st.dtype() && broadcastsTo(b.type(), st)
                        && (call(g, a, LinearAlgebra.MATMUL_OP) != null || call(g, a, Elementwise.MUL_OP) != null
                        || call(g, a, Elementwise.DIV_OP) != null)) {
                    t = g.origin(a);
                    mask = b;
                }
            }
            if (mask == null || uses.getOrDefault(t, 0) != 1) {
                return null;
            }
            additive = true;
        } else if (where != null) {
            Value cond = where.inputs().get(0);
            double fill = scalarConstant(g, where.inputs().get(2));
            t = g.origin(where.inputs().get(1));
            if (cond.type().dtype() != DType.BOOL || fill != Double.NEGATIVE_INFINITY || !t.type().sameConcrete(st)
                    || !broadcastsTo(cond.type(), st) || uses.getOrDefault(t, 0) != 1) {
                return null;
            }
            mask = cond;
        }
        // t = mul(u, c) | div(u, c) | u
        Value u = t;
        double scale = 1.0;
        double c = Double.NaN;
        boolean divides = false;
        Node.OpCall mul = call(g, t, Elementwise.MUL_OP);
        Node.OpCall div = call(g, t, Elementwise.DIV_OP);
        if (mul != null || div != null) {
            Node.OpCall op = mul != null ? mul : div;
            int side = mul != null && !Double.isNaN(scalarConstant(g, mul.inputs().get(0))) ? 0 : 1;
            c = scalarConstant(g, op.inputs().get(side));
            if (div != null && side != 1) {
                return null;
            }
            u = g.origin(op.inputs().get(1 - side));
            if (Double.isNaN(c) || c == 0 || !u.type().sameConcrete(st) || uses.getOrDefault(u, 0) != 1) {
                return null;
            }
            scale = div != null ? 1 / c : c;
            divides = div != null;
        }
        Node.OpCall mm1 = call(g, u, LinearAlgebra.MATMUL_OP);
        if (mm1 == null || uses.getOrDefault(s, 0) != 1) {
            return null;
        }
        Value q = mm1.inputs().get(0);
        Value kt = mm1.inputs().get(1);
        // o = matmul(p, v): p's reader that is a matmul with p on the left
        Node.OpCall mm2 = null;
        for (Node n : readers.getOrDefault(p, List.of())) {
            if (n instanceof Node.OpCall m && m.op() == LinearAlgebra.MATMUL_OP && g.origin(m.inputs().get(0)) == p) {
                mm2 = m;
            }
        }
        if (mm2 == null) {
            return null;
        }
        Value v = mm2.inputs().get(1);
        if (!shapesFit(q.type(), kt.type(), v.type(), st, mm2.outputs().get(0).type())) {
            return null;
        }
        boolean causal = false;
        if (additive && isCausalConstant(mask, st)) {
            causal = true;
            mask = null;
        }
        Match fwd = new Match(mm1, softmax, mm2, q, kt, v, mask, scale, c, divides, causal, null);
        int pUses = uses.getOrDefault(p, 0);
        if (pUses == 1) {
            return fwd;
        }
        if (where != null || mask != null && !additive) {
            return null;
        }
        Backward b = matchBackward(g, fwd, t, u, readers, uses);
        return b == null ? null : new Match(mm1, softmax, mm2, q, kt, v, mask, scale, c, divides, causal, b);
    }

    /** The backward the tape's rules capture for the matched forward, or null. */
    private static Backward matchBackward(Graph g, Match m, Value t, Value u, Map<Value, List<Node>> readers,
            Map<Value, Integer> uses) {
        Value p = m.softmax().outputs().get(0);
        List<Node> pr = readers.getOrDefault(p, List.of());
        Node.OpCall sb = null;
        Node.OpCall dv = null;
        for (Node n : pr) {
            if (n == m.mm2()) {
                continue;
            }
            if (n instanceof Node.OpCall c && c.op() == Normalization.SOFTMAX_BACKWARD_OP && g.origin(c.inputs().get(0)) == p
                    && c.attrs().equals(m.softmax().attrs())) {
                sb = c;
            } else if (n instanceof Node.View view && readers.getOrDefault(view.output(), List.of()).size() == 1
                    && readers.get(view.output()).get(0) instanceof Node.OpCall c && c.op() == LinearAlgebra.MATMUL_OP
                    && c.inputs().get(0) == view.output() && isTransposeOf(g, view.output(), p)) {
                dv = c;
            } else {
                return null;
            }
        }
        if (sb == null || dv == null || uses.getOrDefault(p, 0) != 3) {
            return null;
        }
        Value dO = g.origin(dv.inputs().get(1));
        // dP = matmul(dO, vᵀ)
        Node.OpCall dpm = call(g, sb.inputs().get(1), LinearAlgebra.MATMUL_OP);
        if (dpm == null || g.origin(dpm.inputs().get(0)) != dO || !isTransposeOf(g, dpm.inputs().get(1), m.v())
                || !dO.type().sameConcrete(m.mm2().outputs().get(0).type())) {
            return null;
        }
        // dT = dS (add passes its gradient through); dU = mul(dS, c) | div(dS, c) | dS
        Value dS = sb.outputs().get(0);
        Value dU = dS;
        if (!Double.isNaN(m.scaleConstant())) {
            List<Node> sr = readers.getOrDefault(dS, List.of());
            if (sr.size() != 1 || !(sr.get(0) instanceof Node.OpCall sc)
                    || sc.op() != (m.divides() ? Elementwise.DIV_OP : Elementwise.MUL_OP) || g.origin(sc.inputs().get(0)) != dS
                    || scalarConstant(g, sc.inputs().get(1)) != m.scaleConstant()) {
                return null;
            }
            dU = sc.outputs().get(0);
        }
        // dQ = matmul(dU, ktᵀ), dKt = matmul(qᵀ, dU)
        Node.OpCall dq = null;
        Node.OpCall dkt = null;
        for (Node n : readers.getOrDefault(dU, List.of())) {
            if (n instanceof Node.OpCall c && c.op() == LinearAlgebra.MATMUL_OP && g.origin(c.inputs().get(0)) == dU
                    && isTransposeOf(g, c.inputs().get(1), m.kt())) {
                dq = c;
            } else if (n instanceof Node.OpCall c && c.op() == LinearAlgebra.MATMUL_OP && g.origin(c.inputs().get(1)) == dU
                    && isTransposeOf(g, c.inputs().get(0), m.q())) {
                dkt = c;
            } else {
                return null;
            }
        }
        if (dq == null || dkt == null || !dq.outputs().get(0).type().sameConcrete(m.q().type())
                || !dkt.outputs().get(0).type().sameConcrete(m.kt().type())
                || !dv.outputs().get(0).type().sameConcrete(m.v().type())) {
            return null;
        }
        return new Backward(dO, dv, dq, dkt);
    }

    private static boolean supported(DType t) {
        return t == DType.FLOAT32 || t == DType.FLOAT64 || t == DType.FLOAT16 || t == DType.BFLOAT16;
    }

    private static boolean broadcastsTo(TensorType m, TensorType to) {
        long[] md = m.shape().toArray();
        long[] td = to.shape().toArray();
        if (md.length > td.length) {
            return false;
        }
        for (int i = 0; i < md.length; i++) {
            long want = td[td.length - md.length + i];
            if (md[i] != want && md[i] != 1) {
                return false;
            }
        }
        return true;
    }

    /** q [B, H, Lq, D], kt [B, H, D, Lk], v [B, H, Lk, Dv], scores [B, H, Lq, Lk], o [B, H, Lq, Dv], one dtype, no broadcasting. */
    private static boolean shapesFit(TensorType q, TensorType kt, TensorType v, TensorType s, TensorType o) {
        if (q.rank() != 4 || kt.rank() != 4 || v.rank() != 4 || o.rank() != 4) {
            return false;
        }
        DType d = s.dtype();
        if (q.dtype() != d || kt.dtype() != d || v.dtype() != d || o.dtype() != d) {
            return false;
        }
        long[] qd = q.shape().toArray();
        long[] kd = kt.shape().toArray();
        long[] vd = v.shape().toArray();
        long[] sd = s.shape().toArray();
        long[] od = o.shape().toArray();
        return qd[0] == kd[0] && qd[1] == kd[1] && vd[0] == qd[0] && vd[1] == qd[1] && qd[3] == kd[2] && kd[3] == vd[2]
                && sd[2] == qd[2] && sd[3] == kd[3] && od[2] == qd[2] && od[3] == vd[3] && qd[3] > 0 && vd[3] > 0;
    }

    /** Whether an additive constant mask is exactly the (bottom-right aligned) causal one, the same for every batch and head. */
    private static boolean isCausalConstant(Value mask, TensorType scores) {
        if (mask.kind() != Value.Kind.CONSTANT || mask.type().rank() < 2) {
            return false;
        }
        long[] md = mask.type().shape().toArray();
        long lq = scores.shape().toArray()[2];
        long lk = scores.shape().toArray()[3];
        if (md[md.length - 2] != lq || md[md.length - 1] != lk || lq * lk > (1 << 22)) {
            return false;
        }
        for (int i = 0; i < md.length - 2; i++) {
            if (md[i] != 1) {
                return false;
            }
        }
        Tensor m = mask.tensor();
        double[] a = m.toDoubleArray();
        for (long i = 0; i < lq; i++) {
            for (long j = 0; j < lk; j++) {
                double x = a[(int) (i * lk + j)];
                boolean attend = j <= i + (lk - lq);
                if (attend ? x != 0 : x != Double.NEGATIVE_INFINITY) {
                    return false;
                }
            }
        }
        return true;
    }
}
