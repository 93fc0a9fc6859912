package dev.cortado.graph;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Folds an inference batch norm into the convolution before it (inference, frozen parameters):
 * {@code bn(conv(x, W, b))} with per-channel {@code s = gamma / sqrt(var + eps)} is
 * {@code conv(x, W * s[k], (b - mean) * s + beta)}, so one kernel and one pass over the activation
 * are saved. Applies when the conv has no fused activation, its output feeds only the batch norm,
 * both use the same layout, and the weight, conv bias and all batch-norm tensors are constants or
 * (with {@code freezeParameters}) parameters. The new weight and bias are computed once, with ops,
 * in float32 or the weight's dtype; the folded result differs from the unfolded one by rounding.
 */
public final class ConvBatchNormFolding implements Pass {
    private final boolean freezeParameters;

    public ConvBatchNormFolding(boolean freezeParameters) {
        this.freezeParameters = freezeParameters;
    }

    @Override
    public String name() {
        return "fold-conv-batchnorm";
    }

    private boolean known(Value v) {
        return v == null || v.kind() == Value.Kind.CONSTANT || (freezeParameters && v.kind() == Value.Kind.PARAMETER);
    }

    @Override
    public Graph apply(Graph g) {
        Map<Value, Integer> uses = g.useCounts();
        Rewriter r = new Rewriter(g);
        List<Node> nodes = g.nodes();
        boolean[] skip = new boolean[nodes.size()];
        for (int i = 0; i < nodes.size(); i++) {
            if (skip[i]) {
                continue;
            }
            Node n = nodes.get(i);
            Node.OpCall bn = n instanceof Node.OpCall c && c.op() == BatchNorm.BATCH_NORM_INFERENCE_OP ? c : null;
            Node.OpCall conv = bn == null ? null : g.producer(bn.inputs().get(0)) instanceof Node.OpCall c
                    && c.op() == Convolution.CONV_OP ? c : null;
            if (conv == null || !foldable(conv, bn, uses)) {
                r.copy(n);
                continue;
            }
            // the conv was copied when it was reached; re-emit it folded, reading the folded weight and bias
            Tensor[] wb = fold(conv, bn);
            try {
                Value w = r.builder().constant(wb[0]);
                Value b = r.builder().constant(wb[1]);
                List<Value> in = new ArrayList<>(Arrays.asList(r.map(conv.inputs().get(0)), w, b));
                List<Value> out = r.builder().op(Convolution.CONV_OP, conv.attrs(), in, List.of(bn.outputs().get(0).type()));
                r.replace(bn.outputs().get(0), out.get(0));
            } finally {
                wb[0].close();
                wb[1].close();
            }
        }
        // the unfolded conv is now unread: dead-code elimination removes it
        try (Graph folded = r.finish()) {
            return new DeadCodeElimination().apply(folded);
        }
    }

    private boolean foldable(Node.OpCall conv, Node.OpCall bn, Map<Value, Integer> uses) {
        Convolution.ConvAttrs ca = (Convolution.ConvAttrs) conv.attrs();
        BatchNorm.BatchNormAttrs ba = (BatchNorm.BatchNormAttrs) bn.attrs();
        if (ca.options().activation() != Convolution.Activation.NONE || ca.options().layout() != ba.layout()
                || uses.getOrDefault(conv.outputs().get(0), 0) != 1 || !conv.outputs().get(0).type().dtype().isFloatingPoint()) {
            return false;
        }
        if (!known(conv.inputs().get(1)) || (conv.inputs().size() > 2 && !known(conv.inputs().get(2)))) {
            return false;
        }
        for (int i = 1; i < bn.inputs().size(); i++) {
            if (!known(bn.inputs().get(i))) {
                return false;
            }
        }
        return bn.inputs().size() >= 5 && bn.inputs().get(3) != null && bn.inputs().get(4) != null;
    }

    /** {W * s[k], (b - mean) * s + beta} with s = gamma / sqrt(var + eps). */
    private static Tensor[] fold(Node.OpCall conv, Node.OpCall bn) {
        BatchNorm.BatchNormAttrs ba = (BatchNorm.BatchNormAttrs) bn.attrs();
        Tensor w = conv.inputs().get(1).tensor();
        Value convBias = conv.inputs().size() > 2 ? conv.inputs().get(2) : null;
        Value gamma = bn.inputs().get(1);
        Value beta = bn.inputs().get(2);
        Tensor mean = bn.inputs().get(3).tensor();
        Tensor var = bn.inputs().get(4).tensor();
        long k = w.size(0);
        long[] perChannel = new long[w.rank()];
        Arrays.fill(perChannel, 1);
        perChannel[0] = k;
        try (Scope s = Scope.detached(); Autograd.GradMode noGrad = Autograd.noGrad();
             Tensor ve = Elementwise.add(var, ba.eps()); Tensor rstd = Elementwise.rsqrt(ve);
             Tensor scale = gamma == null ? rstd.copy() : Elementwise.mul(gamma.tensor(), rstd);
             Tensor scaleW = scale.reshape(perChannel);
             Tensor centered = convBias == null ? Elementwise.neg(mean) : Elementwise.sub(convBias.tensor(), mean);
             Tensor scaled = Elementwise.mul(centered, scale)) {
            Tensor newW = Elementwise.mul(w, scaleW);
            try {
                Tensor newB = beta == null ? scaled.copy() : Elementwise.add(scaled, beta.tensor());
                if (newB.dtype() != w.dtype()) {
                    try (Tensor b0 = newB) {
                        newB = b0.to(w.dtype());
                    }
                }
                return new Tensor[] {newW, newB};
            } catch (RuntimeException e) {
                newW.close();
                throw e;
            }
        }
    }
}
