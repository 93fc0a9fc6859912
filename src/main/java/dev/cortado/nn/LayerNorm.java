package dev.cortado.nn;

import dev.cortado.ops.Normalization;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Layer normalization over the trailing dimensions {@code normalizedShape}:
 * {@code (x - mean) / sqrt(var + eps) * weight + bias} (biased variance), fused op
 * {@code layer_norm}. weight ones, bias zeros (PyTorch); eps 1e-5.
 */
public class LayerNorm extends Module {
    private final long[] normalizedShape;
    private final double eps;

    public LayerNorm(long... normalizedShape) {
        this(normalizedShape, 1e-5, true, true, ParamOptions.defaults());
    }

    public LayerNorm(long[] normalizedShape, double eps, boolean affine, boolean bias, ParamOptions o) {
        if (normalizedShape.length == 0) {
            throw new IllegalArgumentException("LayerNorm: normalizedShape must not be empty");
        }
        this.normalizedShape = normalizedShape.clone();
        this.eps = eps;
        registerParameter("weight", affine ? unscoped(() -> Init.ones(Tensor.empty(o.dtype(), o.device(), normalizedShape)))
                : null);
        registerParameter("bias", affine && bias
                ? unscoped(() -> Init.zeros(Tensor.empty(o.dtype(), o.device(), normalizedShape))) : null);
    }

    @Override
    public Tensor forward(Tensor x) {
        int k = normalizedShape.length;
        if (x.rank() < k || !Arrays.equals(Arrays.copyOfRange(x.dims(), x.rank() - k, x.rank()), normalizedShape)) {
            throw new IllegalArgumentException("LayerNorm: x " + x.describe() + " must end in " + Arrays.toString(normalizedShape));
        }
        return Normalization.layerNorm(x, parameter("weight"), parameter("bias"), k, eps);
    }

    @Override
    protected String extraRepr() {
        return Arrays.toString(normalizedShape) + ", eps=" + eps + ", affine=" + (parameter("weight") != null);
    }
}
