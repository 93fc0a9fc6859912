package dev.cortado.graph;

import dev.cortado.ops.Convolution;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Packs convolution weights once, at compile time (inference, frozen parameters): a float32 CPU
 * {@code conv} whose weight is a constant or a frozen parameter, and whose forward runs
 * DIRECT_NHWC or Winograd, becomes {@code conv_prepacked} reading the weight packed by
 * {@link Convolution#packWeight}. Both kernels otherwise pack at every call: DIRECT_NHWC copies the
 * weight into register-tile blocks, Winograd writes the 16/9-larger transform of every 3x3 filter;
 * at batch 1 on the late layers of a ResNet (512 channels at 7 x 7) that is most of the call. The
 * results are bit for bit those of {@code conv} (the same kernel on the same packed numbers). The
 * packed copy is held by the graph, beside the weights the module keeps.
 */
public final class WeightPrepacking implements Pass {
    private final boolean freezeParameters;

    public WeightPrepacking(boolean freezeParameters) {
        this.freezeParameters = freezeParameters;
    }

    @Override
    public String name() {
        return "prepack-weights";
    }

    @Override
    public Graph apply(Graph g) {
        Rewriter r = new Rewriter(g);
        for (Node n : g.nodes()) {
            if (n instanceof Node.OpCall c && c.op() == Convolution.CONV_OP && prepack(c, r)) {
                continue;
            }
            r.copy(n);
        }
        return r.finish();
    }

    private boolean known(Value v) {
        return v.tensor() != null && (v.kind() == Value.Kind.CONSTANT
                || (freezeParameters && v.kind() == Value.Kind.PARAMETER));
    }

    /** Emits {@code conv_prepacked} for {@code c} when its weight is known and has a packed layout. */
    private boolean prepack(Node.OpCall c, Rewriter r) {
        Value x = c.inputs().get(0);
        Value w = c.inputs().get(1);
        TensorType xt = x.type();
        if (!known(w) || xt.dtype() != DType.FLOAT32 || !xt.device().isCpu() || xt.rank() < 3) {
            return false;
        }
        Convolution.ConvAttrs a = (Convolution.ConvAttrs) c.attrs();
        long[] probeDims = xt.shape().toArray();
        probeDims[0] = 0; // only the channels and the spatial sizes matter: an empty batch allocates nothing
        Tensor packed;
        try (Tensor probe = Tensor.empty(DType.FLOAT32, Device.CPU, probeDims)) {
            packed = Convolution.packWeight(probe, w.tensor(), a.spatialDims(), a.options());
        }
        if (packed == null) {
            return false;
        }
        try (packed) {
            List<Value> in = new ArrayList<>(List.of(r.map(x), r.builder().constant(packed)));
            if (c.inputs().size() > 2 && c.inputs().get(2) != null) {
                in.add(r.map(c.inputs().get(2)));
            }
            Value out = c.outputs().get(0);
            List<Value> outs = r.builder().op(Convolution.CONV_PREPACKED_OP,
                    new Convolution.PrepackedAttrs(a.spatialDims(), a.options(), w.tensor().dims()), in,
                    List.of(out.type()));
            r.replace(out, outs.get(0));
            return true;
        }
    }
}
