package dev.cortado.graph;

import dev.cortado.ops.Convolution;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Op;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Moves the work after a matmul or a convolution into the kernel's epilogue, where the existing
 * fused kernels allow it, saving one pass over the result:
 * <ul>
 * <li>{@code relu/gelu/silu(conv(x, w, b))} becomes {@code conv} with the fused activation (the
 * conv kernels apply it to each output as they write it; GELU is the erf form in both);</li>
 * <li>{@code matmul(x, w) + b} with 2-d {@code x} and {@code w} and a bias that broadcasts along the
 * rows becomes {@code gemm(x, w, b)} with beta 1 (the bias is the GEMM's initial C: BLAS accumulates
 * onto it instead of a separate add reading the product back).</li>
 * </ul>
 * Only when the first node's result feeds nothing else and the fused node keeps the second node's
 * output type. The fused conv activation is for inference (its backward supports ReLU only), which
 * is what compiled graphs run. Results differ from the unfused ones by rounding only.
 */
public final class EpilogueFusion implements Pass {
    @Override
    public String name() {
        return "fuse-epilogues";
    }

    @Override
    public Graph apply(Graph g) {
        Map<Value, Integer> uses = g.useCounts();
        Rewriter r = new Rewriter(g);
        for (Node n : g.nodes()) {
            if (n instanceof Node.OpCall c && fuse(g, c, uses, r)) {
                continue;
            }
            r.copy(n);
        }
        try (Graph fused = r.finish()) {
            return new DeadCodeElimination().apply(fused);
        }
    }

    private static Node.OpCall producedBy(Graph g, Value v, Op<?> op, Map<Value, Integer> uses) {
        if (v != null && uses.getOrDefault(v, 0) == 1 && g.producer(v) instanceof Node.OpCall c && c.op() == op) {
            return c;
        }
        return null;
    }

    /** Emits the fused node for {@code c} if it ends a pattern; the first node of the pattern was copied and DCE drops it. */
    private static boolean fuse(Graph g, Node.OpCall c, Map<Value, Integer> uses, Rewriter r) {
        Value out = c.outputs().get(0);
        Convolution.Activation act = c.op() == Elementwise.RELU_OP ? Convolution.Activation.RELU
                : c.op() == Elementwise.GELU_OP ? Convolution.Activation.GELU
                : c.op() == Elementwise.SILU_OP ? Convolution.Activation.SILU : null;
        if (act != null) {
            Node.OpCall conv = producedBy(g, c.inputs().get(0), Convolution.CONV_OP, uses);
            if (conv == null) {
                return false;
            }
            Convolution.ConvAttrs a = (Convolution.ConvAttrs) conv.attrs();
            Convolution.ConvOptions o = a.options();
            if (o.activation() != Convolution.Activation.NONE || !conv.outputs().get(0).type().sameConcrete(out.type())) {
                return false;
            }
            Convolution.ConvOptions fused = new Convolution.ConvOptions(o.stride(), o.padBefore(), o.padAfter(),
                    o.samePadding(), o.dilation(), o.groups(), o.layout(), o.algorithm(), act, o.outputPadding());
            List<Value> outs = r.builder().op(Convolution.CONV_OP, new Convolution.ConvAttrs(a.spatialDims(), fused),
                    r.map(conv.inputs()), List.of(out.type()));
            r.replace(out, outs.get(0));
            return true;
        }
        if (c.op() == Elementwise.ADD_OP) {
            for (int side = 0; side < 2; side++) {
                Node.OpCall mm = producedBy(g, c.inputs().get(side), LinearAlgebra.MATMUL_OP, uses);
                Value bias = c.inputs().get(1 - side);
                if (mm == null || mm.inputs().get(0).type().rank() != 2 || mm.inputs().get(1).type().rank() != 2) {
                    continue;
                }
                TensorType product = mm.outputs().get(0).type();
                boolean rowBias = bias.type().rank() == 1
                        || (bias.type().rank() == 2 && bias.type().dims().get(0).size() == 1);
                if (!rowBias || !product.sameConcrete(out.type()) || bias.type().dtype() != product.dtype()) {
                    continue;
                }
                List<Value> in = new ArrayList<>(r.map(mm.inputs()));
                in.add(r.map(bias));
                List<Value> outs = r.builder().op(LinearAlgebra.GEMM_OP, new LinearAlgebra.GemmAttrs(1, 1, false, false),
                        in, List.of(out.type()));
                r.replace(out, outs.get(0));
                return true;
            }
        }
        return false;
    }
}
