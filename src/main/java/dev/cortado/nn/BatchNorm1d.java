package dev.cortado.nn;

import dev.cortado.ops.DataLayout;
import dev.cortado.tensor.Tensor;

/** Batch norm of x [N, C] or [N, C, L]; eps 1e-5, momentum 0.1 (PyTorch). */
public class BatchNorm1d extends BatchNormLayer {
    public BatchNorm1d(long features) {
        this(features, 1e-5, 0.1, true, true, ParamOptions.defaults());
    }

    public BatchNorm1d(long features, double eps, double momentum, boolean affine, boolean trackRunningStats,
                       ParamOptions o) {
        super(features, eps, momentum, affine, trackRunningStats, DataLayout.NCHW, o);
    }

    @Override
    protected void checkInput(Tensor x) {
        if (x.rank() != 2 && x.rank() != 3) {
            throw new IllegalArgumentException("BatchNorm1d: x must be [N, C] or [N, C, L], got " + x.describe());
        }
    }
}
