package dev.cortado.nn;

import dev.cortado.ops.DataLayout;
import dev.cortado.tensor.Tensor;

/** Batch norm of x [N, C, H, W] (NHWC: [N, H, W, C]); eps 1e-5, momentum 0.1 (PyTorch). */
public class BatchNorm2d extends BatchNormLayer {
    public BatchNorm2d(long features) {
        this(features, 1e-5, 0.1, true, true, DataLayout.NCHW, ParamOptions.defaults());
    }

    public BatchNorm2d(long features, double eps, double momentum, boolean affine, boolean trackRunningStats,
                       DataLayout layout, ParamOptions o) {
        super(features, eps, momentum, affine, trackRunningStats, layout, o);
    }

    @Override
    protected void checkInput(Tensor x) {
        if (x.rank() != 4) {
            throw new IllegalArgumentException("BatchNorm2d: x must be rank 4 (" + attrs.layout() + "), got "
                    + x.describe());
        }
    }
}
