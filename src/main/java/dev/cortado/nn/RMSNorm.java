package dev.cortado.nn;

import dev.cortado.ops.Normalization;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * RMS normalization over the trailing {@code normalizedShape}: {@code x / sqrt(mean(x^2) + eps) * weight}
 * (fused op {@code rms_norm}); weight ones. Default eps 1e-6 (LLaMA's; PyTorch's default is the
 * dtype's machine epsilon).
 */
public class RMSNorm extends Module {
    private final long[] normalizedShape;
    private final double eps;

    public RMSNorm(long... normalizedShape) {
        this(normalizedShape, 1e-6, true, ParamOptions.defaults());
    }

    public RMSNorm(long[] normalizedShape, double eps, boolean affine, ParamOptions o) {
        if (normalizedShape.length == 0) {
            throw new IllegalArgumentException("RMSNorm: normalizedShape must not be empty");
        }
        this.normalizedShape = normalizedShape.clone();
        this.eps = eps;
        registerParameter("weight", affine ? unscoped(() -> Init.ones(Tensor.empty(o.dtype(), o.device(), normalizedShape)))
                : null);
    }

    @Override
    public Tensor forward(Tensor x) {
        int k = normalizedShape.length;
        if (x.rank() < k || !Arrays.equals(Arrays.copyOfRange(x.dims(), x.rank() - k, x.rank()), normalizedShape)) {
            throw new IllegalArgumentException("RMSNorm: x " + x.describe() + " must end in " + Arrays.toString(normalizedShape));
        }
        return Normalization.rmsNorm(x, parameter("weight"), k, eps);
    }

    @Override
    protected String extraRepr() {
        return Arrays.toString(normalizedShape) + ", eps=" + eps;
    }
}
