package dev.cortado.nn;

import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.BatchNorm.BatchNormAttrs;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;

/**
 * Batch normalization per channel. Training: batch statistics (biased variance for the
 * output), running statistics updated in place with {@code running = (1 - momentum) * running +
 * momentum * batch} (unbiased variance, as PyTorch) and {@code num_batches_tracked} counted.
 * Eval: the running statistics. weight ones, bias zeros, running_mean zeros, running_var ones
 * (PyTorch). The op keeps weight, bias and statistics in float32 whatever x's dtype, so
 * {@link Module#to(DType)} leaves them in float32.
 */
public abstract class BatchNormLayer extends Module {
    protected final long features;
    protected final BatchNormAttrs attrs;
    private final boolean track;

    protected BatchNormLayer(long features, double eps, double momentum, boolean affine, boolean trackRunningStats,
                             DataLayout layout, ParamOptions o) {
        if (features <= 0) {
            throw new IllegalArgumentException(getClass().getSimpleName() + ": features must be positive, got " + features);
        }
        this.features = features;
        this.attrs = new BatchNormAttrs(eps, momentum, layout);
        this.track = trackRunningStats;
        var d = o.device();
        registerParameter("weight", affine ? unscoped(() -> Init.ones(Tensor.empty(DType.FLOAT32, d, features))) : null);
        registerParameter("bias", affine ? unscoped(() -> Init.zeros(Tensor.empty(DType.FLOAT32, d, features))) : null);
        registerBuffer("running_mean", track ? unscoped(() -> Tensor.zeros(DType.FLOAT32, d, features)) : null);
        registerBuffer("running_var", track ? unscoped(() -> Tensor.ones(DType.FLOAT32, d, features)) : null);
        registerBuffer("num_batches_tracked", track ? unscoped(() -> Tensor.zeros(DType.INT64, d)) : null);
    }

    /** The epsilon added to the variance. */
    public double eps() {
        return attrs.eps();
    }

    /** Checks x's rank; throws with the expected shape. */
    protected abstract void checkInput(Tensor x);

    @Override
    public Tensor forward(Tensor x) {
        checkInput(x);
        long c = attrs.layout() == DataLayout.NCHW ? x.size(1) : x.size(-1);
        if (c != features) {
            throw new IllegalArgumentException(getClass().getSimpleName() + ": x " + x.describe() + " has " + c
                    + " channels (" + attrs.layout() + "), expected " + features);
        }
        Tensor w = parameter("weight");
        Tensor b = parameter("bias");
        Tensor rm = buffer("running_mean");
        Tensor rv = buffer("running_var");
        if (isTraining() || rm == null) {
            boolean update = isTraining() && rm != null;
            Tensor[] r = BatchNorm.training(x, w, b, update ? rm : null, update ? rv : null, attrs);
            r[1].close();
            r[2].close();
            if (update) {
                Tensor n = buffer("num_batches_tracked");
                try (Tensor next = Elementwise.add(n, 1.0)) {
                    n.copyFrom(next);
                }
            }
            return r[0];
        }
        return BatchNorm.inference(x, w, b, rm, rv, attrs);
    }

    @Override
    protected boolean keepsDType(String name) {
        return true;
    }

    @Override
    protected String extraRepr() {
        return features + ", eps=" + attrs.eps() + ", momentum=" + attrs.momentum() + ", " + attrs.layout()
                + (track ? "" : ", no running stats");
    }
}
