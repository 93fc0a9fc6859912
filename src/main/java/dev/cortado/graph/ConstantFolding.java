package dev.cortado.graph;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Op;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.List;

/**
 * Computes at compile time every node whose inputs are all constants, and replaces its outputs by
 * constants holding the results (computed by the op itself, eagerly). With frozen parameters,
 * parameters count as constants too: then a chain such as a weight's transpose, a conv followed by
 * batch-norm statistics arithmetic, or a scale of a weight is done once; the graph no longer sees
 * later updates of those parameters, which is right for inference only (the option says so).
 */
public final class ConstantFolding implements Pass {
    private final boolean freezeParameters;

    /** @param freezeParameters whether parameters count as constants */
    public ConstantFolding(boolean freezeParameters) {
        this.freezeParameters = freezeParameters;
    }

    @Override
    public String name() {
        return freezeParameters ? "fold-constants(frozen parameters)" : "fold-constants";
    }

    private boolean known(Value v) {
        return v.kind() == Value.Kind.CONSTANT || (freezeParameters && v.kind() == Value.Kind.PARAMETER);
    }

    @Override
    public Graph apply(Graph g) {
        Rewriter r = new Rewriter(g);
        for (Node n : g.nodes()) {
            List<Value> in = r.map(n.inputs());
            boolean foldable = !in.isEmpty() && !(n instanceof Node.Update);
            for (Value v : in) {
                if (v != null && !known(v)) {
                    foldable = false;
                    break;
                }
            }
            if (!foldable) {
                r.copy(n);
                continue;
            }
            Tensor[] results = evaluate(n, in);
            try {
                for (int i = 0; i < results.length; i++) {
                    r.replace(n.outputs().get(i), r.builder().constant(results[i]));
                }
            } finally {
                for (Tensor t : results) {
                    t.close();
                }
            }
        }
        return r.finish();
    }

    private static Tensor[] evaluate(Node n, List<Value> in) {
        try (Scope s = Scope.detached(); Autograd.GradMode noGrad = Autograd.noGrad()) {
            if (n instanceof Node.OpCall c) {
                Tensor[] args = new Tensor[in.size()];
                for (int i = 0; i < args.length; i++) {
                    args[i] = in.get(i) == null ? null : in.get(i).tensor();
                }
                return callMulti(c.op(), c.attrs(), args);
            }
            Tensor src = in.get(0).tensor();
            TensorType t = n.outputs().get(0).type();
            if (n instanceof Node.View v) {
                return new Tensor[] {src.asStrided(t.dtype(), t.shape(), v.strides(), src.offset() + v.offset())};
            }
            Shape shape = t.shape();
            Tensor out = Tensor.empty(t.dtype(), t.device(), shape);
            try {
                out.copyFrom(src);
            } catch (RuntimeException e) {
                out.close();
                throw e;
            }
            return new Tensor[] {out};
        }
    }

    @SuppressWarnings("unchecked")
    private static <A> Tensor[] callMulti(Op<A> op, Object attrs, Tensor[] args) {
        return op.callMulti((A) attrs, args);
    }
}
