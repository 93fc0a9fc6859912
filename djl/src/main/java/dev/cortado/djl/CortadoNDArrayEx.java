package dev.cortado.djl;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDArrayIndexer;
import ai.djl.ndarray.internal.NDArrayEx;

import ai.djl.ndarray.types.Shape;
import ai.djl.ndarray.types.SparseFormat;
import ai.djl.nn.recurrent.RNN;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Pooling;
import dev.cortado.ops.Reductions;
import dev.cortado.optim.OptimKernels;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The operators behind DJL's blocks, losses and optimizers ({@link NDArrayEx}) for a
 * {@link CortadoNDArray}: activations, pooling, convolution, linear, embedding, dropout, layer and
 * batch norm, concat/stack, where, and the SGD and Adam updates on Cortado's fused optimizer
 * kernels. Results are attached to the array's manager; the rest throws
 * {@link UnsupportedOperationException} naming the method.
 */
final class CortadoNDArrayEx implements NDArrayEx {
    private final CortadoNDArray array;

    CortadoNDArrayEx(CortadoNDArray array) {
        this.array = array;
    }

    private Tensor x() {
        return array.tensor();
    }

    private Tensor t(NDArray a) {
        return a == null ? null : array.tensorOf(a);
    }

    private static UnsupportedOperationException unsupported(String method) {
        return CortadoNDArray.unsupported("NDArrayEx." + method);
    }

    private static int[] ints(Shape s) {
        return s.getShape().length == 0 ? new int[0]
                : java.util.Arrays.stream(s.getShape()).mapToInt(Math::toIntExact).toArray();
    }

    // ================================================================ activations

    /** {@inheritDoc} */
    @Override
    public NDArray rdivi(NDArray b) {
        throw unsupported("rdivi");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray rmodi(NDArray b) {
        throw unsupported("rmodi");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray rpowi(Number n) {
        throw unsupported("rpowi");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray relu() {
        return array.result(() -> x().relu());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sigmoid() {
        return array.result(() -> x().sigmoid());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray tanh() {
        return array.result(() -> x().tanh());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray softPlus() {
        return array.result(() -> Elementwise.softplus(x()));
    }

    /** {@inheritDoc} {@code x / (1 + |x|)}. */
    @Override
    public NDArray softSign() {
        return array.result(() -> {
            try (Tensor a = x().abs(); Tensor d = a.add(1.0)) {
                return x().div(d);
            }
        });
    }

    /** {@inheritDoc} {@code x} where positive, else {@code alpha * x}. */
    @Override
    public NDArray leakyRelu(float alpha) {
        return array.result(() -> {
            try (Tensor pos = x().gt(0.0); Tensor scaled = x().mul(alpha)) {
                return x().where(pos, scaled);
            }
        });
    }

    /** {@inheritDoc} {@code x} where positive, else {@code alpha * (e^x - 1)}. */
    @Override
    public NDArray elu(float alpha) {
        return array.result(() -> elu(x(), alpha));
    }

    private static Tensor elu(Tensor x, double alpha) {
        try (Tensor pos = x.gt(0.0); Tensor e = x.exp(); Tensor em1 = e.sub(1.0); Tensor neg = em1.mul(alpha)) {
            return x.where(pos, neg);
        }
    }

    /** {@inheritDoc} {@code scale * elu(x, alpha)} with SELU's constants. */
    @Override
    public NDArray selu() {
        return array.result(() -> {
            try (Tensor e = elu(x(), 1.6732632423543772)) {
                return e.mul(1.0507009873554805);
            }
        });
    }

    /** {@inheritDoc} The erf form. */
    @Override
    public NDArray gelu() {
        return array.result(() -> x().gelu());
    }

    // ================================================================ pooling

    private Pooling.PoolOptions poolOptions(Shape kernel, Shape stride, Shape padding, boolean ceil, boolean countPad) {
        int[] k = ints(kernel);
        int[] s = stride == null || stride.dimension() == 0 ? k : ints(stride);
        int[] p = padding == null || padding.dimension() == 0 ? new int[k.length] : ints(padding);
        return Pooling.PoolOptions.builder(k).stride(s).padding(p).ceilMode(ceil).countIncludePad(countPad).build();
    }

    /** {@inheritDoc} NCHW (1-, 2- or 3-d). */
    @Override
    public NDArray maxPool(Shape kernelShape, Shape stride, Shape padding, boolean ceilMode) {
        Pooling.PoolOptions o = poolOptions(kernelShape, stride, padding, ceilMode, true);
        return array.result(() -> Pooling.maxPool(x(), o));
    }

    /** {@inheritDoc} [N, C, ...] to [N, C]. */
    @Override
    public NDArray globalMaxPool() {
        int[] spatial = IntStream.range(2, x().rank()).toArray();
        return array.result(() -> Reductions.max(x(), false, spatial));
    }

    /** {@inheritDoc} NCHW (1-, 2- or 3-d). */
    @Override
    public NDArray avgPool(Shape kernelShape, Shape stride, Shape padding, boolean ceilMode, boolean countIncludePad) {
        Pooling.PoolOptions o = poolOptions(kernelShape, stride, padding, ceilMode, countIncludePad);
        return array.result(() -> Pooling.avgPool(x(), o));
    }

    /** {@inheritDoc} [N, C, ...] to [N, C]. */
    @Override
    public NDArray globalAvgPool() {
        int[] spatial = IntStream.range(2, x().rank()).toArray();
        return array.result(() -> Reductions.mean(x(), false, spatial));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray lpPool(float normType, Shape kernelShape, Shape stride, Shape padding, boolean ceilMode) {
        throw unsupported("lpPool");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray globalLpPool(float normType) {
        throw unsupported("globalLpPool");
    }

    // ================================================================ optimizers

    /** {@inheritDoc} */
    @Override
    public void adadeltaUpdate(NDList inputs, NDList weights, float weightDecay, float rescaleGrad, float clipGrad,
                               float rho, float epsilon) {
        throw unsupported("adadeltaUpdate");
    }

    /** {@inheritDoc} */
    @Override
    public void adagradUpdate(NDList inputs, NDList weights, float learningRate, float weightDecay, float rescaleGrad,
                              float clipGrad, float epsilon) {
        throw unsupported("adagradUpdate");
    }

    /**
     * The gradient as DJL's update rules see it: {@code min(rescale * g, clip)} when {@code clip >= 0}
     * (a new tensor), else null (the kernel scales by {@code rescale} itself).
     */
    private static Tensor clippedGradient(Tensor g, float rescaleGrad, float clipGrad) {
        if (clipGrad < 0) {
            return null;
        }
        try (Tensor scaled = g.mul(rescaleGrad)) {
            return scaled.clamp(Double.NEGATIVE_INFINITY, clipGrad);
        }
    }

    /**
     * {@inheritDoc} DJL's rule, in one fused pass: {@code g' = min(rescale*g, clip) + wd*w} (AdamW:
     * {@code w *= 1 - lr*wd} instead of the {@code wd*w} term), {@code m = b1*m + (1-b1)*g'},
     * {@code v = b2*v + (1-b2)*g'^2}, {@code w -= lrBiasCorrection * m / (sqrt(v) + eps)}; then the
     * weight's gradient is cleared (freed), as DJL's PyTorch engine zeroes it.
     */
    @Override
    public void adamUpdate(NDList inputs, NDList weights, float learningRate, float learningRateBiasCorrection,
                           float weightDecay, float rescaleGrad, float clipGrad, float beta1, float beta2,
                           float epsilon, boolean lazyUpdate, boolean adamw) {
        Tensor w = t(inputs.get(0));
        Tensor g = t(inputs.get(1));
        Tensor m = t(inputs.get(2));
        Tensor v = t(inputs.get(3));
        try (Tensor clipped = CortadoNDArray.run(() -> clippedGradient(g, rescaleGrad, clipGrad))) {
            double gradScale = clipped == null ? rescaleGrad : 1.0;
            OptimKernels.AdamCoef c = new OptimKernels.AdamCoef(beta1, beta2, epsilon, adamw ? 0 : weightDecay,
                    adamw ? (double) learningRate * weightDecay : 0, learningRateBiasCorrection, 1.0, 1.0, gradScale);
            OptimKernels.adam(List.of(w), List.of(clipped == null ? g : clipped), List.of(m), List.of(v), null, c);
        }
        clearGradient(weights);
    }

    /** {@inheritDoc} */
    @Override
    public void nagUpdate(NDList inputs, NDList weights, float learningRate, float weightDecay, float rescaleGrad,
                          float clipGrad, float momentum) {
        throw unsupported("nagUpdate");
    }

    /** {@inheritDoc} */
    @Override
    public void rmspropUpdate(NDList inputs, NDList weights, float learningRate, float weightDecay, float rescaleGrad,
                              float clipGrad, float rho, float momentum, float epsilon, boolean centered) {
        throw unsupported("rmspropUpdate");
    }

    /**
     * {@inheritDoc} DJL's rule, in one fused pass: {@code g' = lr * (min(rescale*g, clip) + wd*w)};
     * without momentum {@code w -= g'}, with it {@code state = momentum*state + g'; w -= state}; then
     * the weight's gradient is cleared (freed).
     */
    @Override
    public void sgdUpdate(NDList inputs, NDList weights, float learningRate, float weightDecay, float rescaleGrad,
                          float clipGrad, float momentum, boolean lazyUpdate) {
        Tensor w = t(inputs.get(0));
        Tensor g = t(inputs.get(1));
        Tensor state = momentum == 0f ? null : t(inputs.get(2));
        try (Tensor clipped = CortadoNDArray.run(() -> clippedGradient(g, rescaleGrad, clipGrad))) {
            double gradScale = clipped == null ? rescaleGrad : 1.0;
            Tensor grad = clipped == null ? g : clipped;
            if (state == null) {
                OptimKernels.sgd(List.of(w), List.of(grad), null,
                        new OptimKernels.SgdCoef(learningRate, weightDecay, 0, 1, false, gradScale));
            } else {
                // the state holds lr-scaled steps: b = momentum*b + lr*g'; w -= 1*b
                OptimKernels.sgd(List.of(w), List.of(grad), List.of(state),
                        new OptimKernels.SgdCoef(1.0, weightDecay, momentum, learningRate, false, gradScale));
            }
        }
        clearGradient(weights);
    }

    private static void clearGradient(NDList weights) {
        NDArray w = weights.singletonOrThrow();
        if (w instanceof CortadoNDArray) {
            ((CortadoNDArray) w).clearGradient();
        }
    }

    // ================================================================ layers

    /**
     * {@inheritDoc} NCHW, weight [out, in/groups, k...], 1-, 2- or 3-d; Cortado picks the algorithm
     * (autotuned where enabled).
     */
    @Override
    public NDList convolution(NDArray input, NDArray weight, NDArray bias, Shape stride, Shape padding,
                              Shape dilation, int groups) {
        int spatial = weight.getShape().dimension() - 2;
        Convolution.ConvOptions.Builder b = Convolution.ConvOptions.builder().groups(groups);
        if (stride != null && stride.dimension() > 0) {
            b.stride(stride.getShape());
        }
        if (padding != null && padding.dimension() > 0) {
            b.padding(padding.getShape());
        }
        if (dilation != null && dilation.dimension() > 0) {
            b.dilation(dilation.getShape());
        }
        Convolution.ConvOptions o = b.build();
        Tensor xt = t(input);
        Tensor wt = t(weight);
        Tensor bt = t(bias);
        switch (spatial) {
            case 1: return new NDList(array.result(() -> Convolution.conv1d(xt, wt, bt, o)));
            case 2: return new NDList(array.result(() -> Convolution.conv2d(xt, wt, bt, o)));
            case 3: return new NDList(array.result(() -> Convolution.conv3d(xt, wt, bt, o)));
            default:
                throw new IllegalArgumentException("NDArrayEx.convolution: weight " + weight.getShape()
                        + " must be [out, in/groups, k...] with 1 to 3 spatial dimensions");
        }
    }

    /** {@inheritDoc} */
    @Override
    public NDList deconvolution(NDArray input, NDArray weight, NDArray bias, Shape stride, Shape padding,
                                Shape outPadding, Shape dilation, int groups) {
        throw unsupported("deconvolution");
    }

    /** {@inheritDoc} {@code input @ weight^T + bias}, weight [out, in]. */
    @Override
    public NDList linear(NDArray input, NDArray weight, NDArray bias) {
        Tensor xt = t(input);
        Tensor wt = t(weight);
        Tensor bt = t(bias);
        return new NDList(array.result(() -> F.linear(xt, wt, bt)));
    }

    /** {@inheritDoc} Dense gradients only. */
    @Override
    public NDList embedding(NDArray input, NDArray weight, SparseFormat sparseFormat) {
        if (sparseFormat != SparseFormat.DENSE) {
            throw unsupported("embedding with sparse gradients (" + sparseFormat + ")");
        }
        Tensor idx = t(input);
        Tensor wt = t(weight);
        return new NDList(array.result(() -> {
            if (idx.dtype() == DType.INT32 || idx.dtype() == DType.INT64) {
                return Indexing.embedding(wt, idx);
            }
            try (Tensor i64 = idx.to(DType.INT64)) {
                return Indexing.embedding(wt, i64);
            }
        }));
    }

    /** {@inheritDoc} */
    @Override
    public NDList prelu(NDArray input, NDArray alpha) {
        throw unsupported("prelu");
    }

    /** {@inheritDoc} Inverted dropout with a mask from the engine's generator. */
    @Override
    public NDList dropout(NDArray input, float rate, boolean training) {
        Tensor xt = t(input);
        return new NDList(array.result(() -> F.dropout(xt, rate, training, CortadoEngine.instance().generator())));
    }

    /** {@inheritDoc} Over the trailing {@code normalizedShape} dimensions. */
    @Override
    public NDList layerNorm(NDArray input, Shape normalizedShape, NDArray gamma, NDArray beta, float eps) {
        Tensor xt = t(input);
        Tensor g = t(gamma);
        Tensor b = t(beta);
        int dims = normalizedShape.dimension();
        return new NDList(array.result(() -> Normalization.layerNorm(xt, g, b, dims, eps)));
    }

    /**
     * {@inheritDoc} Channels on axis 1 (NCHW) or last (NHWC). DJL's momentum keeps that share of the
     * running statistics ({@code running = momentum*running + (1-momentum)*batch}); the running
     * variance takes the unbiased batch variance, as PyTorch's.
     */
    @Override
    public NDList batchNorm(NDArray input, NDArray runningMean, NDArray runningVar, NDArray gamma, NDArray beta,
                            int axis, float momentum, float eps, boolean training) {
        Tensor xt = t(input);
        int rank = xt.rank();
        int ax = Math.floorMod(axis, rank);
        DataLayout layout;
        if (ax == 1) {
            layout = DataLayout.NCHW;
        } else if (ax == rank - 1) {
            layout = DataLayout.NHWC;
        } else {
            throw unsupported("batchNorm over axis " + axis + " of a rank-" + rank + " array (axis 1 or the last)");
        }
        BatchNorm.BatchNormAttrs a = new BatchNorm.BatchNormAttrs(eps, 1.0 - momentum, layout);
        Tensor rm = t(runningMean);
        Tensor rv = t(runningVar);
        Tensor g = t(gamma);
        Tensor b = t(beta);
        if (!training) {
            return new NDList(array.result(() -> BatchNorm.inference(xt, g, b, rm, rv, a)));
        }
        return new NDList(array.result(() -> {
            Tensor[] out = BatchNorm.training(xt, g, b, rm, rv, a);
            out[1].close();
            out[2].close();
            return out[0];
        }));
    }

    /** {@inheritDoc} */
    @Override
    public NDList rnn(NDArray input, NDArray state, NDList params, boolean hasBiases, int numLayers,
                      RNN.Activation activation, double dropRate, boolean training, boolean bidirectional,
                      boolean batchFirst) {
        throw unsupported("rnn");
    }

    /** {@inheritDoc} */
    @Override
    public NDList gru(NDArray input, NDArray state, NDList params, boolean hasBiases, int numLayers, double dropRate,
                      boolean training, boolean bidirectional, boolean batchFirst) {
        throw unsupported("gru");
    }

    /** {@inheritDoc} */
    @Override
    public NDList lstm(NDArray input, NDList states, NDList params, boolean hasBiases, int numLayers,
                       double dropRate, boolean training, boolean bidirectional, boolean batchFirst) {
        throw unsupported("lstm");
    }

    // ================================================================ image ops

    /** {@inheritDoc} */
    @Override
    public NDArray interpolation(long[] size, int mode, boolean alignCorners) {
        throw unsupported("interpolation");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray resize(int width, int height, int interpolation) {
        throw unsupported("resize");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray randomFlipLeftRight() {
        throw unsupported("randomFlipLeftRight");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray randomFlipTopBottom() {
        throw unsupported("randomFlipTopBottom");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray randomBrightness(float brightness) {
        throw unsupported("randomBrightness");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray randomHue(float hue) {
        throw unsupported("randomHue");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray randomColorJitter(float brightness, float contrast, float saturation, float hue) {
        throw unsupported("randomColorJitter");
    }

    // ================================================================ misc

    /** {@inheritDoc} */
    @Override
    public NDArrayIndexer getIndexer(NDManager manager) {
        return new CortadoNDArrayIndexer((CortadoNDManager) manager);
    }

    /** {@inheritDoc} {@code condition ? this : other} (a non-boolean condition is true where non-zero). */
    @Override
    public NDArray where(NDArray condition, NDArray other) {
        Tensor c = t(condition);
        Tensor o = t(other);
        return array.result(() -> {
            if (c.dtype() == DType.BOOL) {
                return x().where(c, o);
            }
            try (Tensor cb = c.ne(0.0)) {
                return x().where(cb, o);
            }
        });
    }

    /** {@inheritDoc} This array followed by {@code arrays}, each given a new axis {@code axis}. */
    @Override
    public NDArray stack(NDList arrays, int axis) {
        int ax = axis < 0 ? axis + x().rank() + 1 : axis;
        return array.result(() -> {
            Tensor[] parts = new Tensor[arrays.size() + 1];
            try {
                parts[0] = x().unsqueeze(ax);
                for (int i = 0; i < arrays.size(); i++) {
                    parts[i + 1] = t(arrays.get(i)).unsqueeze(ax);
                }
                return Indexing.concat(ax, parts);
            } finally {
                for (Tensor p : parts) {
                    if (p != null) {
                        p.close();
                    }
                }
            }
        });
    }

    /** {@inheritDoc} This array followed by {@code arrays}. */
    @Override
    public NDArray concat(NDList arrays, int axis) {
        return array.result(() -> {
            Tensor[] parts = new Tensor[arrays.size() + 1];
            parts[0] = x();
            for (int i = 0; i < arrays.size(); i++) {
                parts[i + 1] = t(arrays.get(i));
            }
            return Indexing.concat(axis, parts);
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDList multiBoxTarget(NDList inputs, float iouThreshold, float ignoreThreshold, float negativeMiningRatio,
                                 float negativeMiningThreshold, int minNegativeSamples) {
        throw unsupported("multiBoxTarget");
    }

    /** {@inheritDoc} */
    @Override
    public NDList multiBoxPrior(List<Float> sizes, List<Float> ratios, List<Float> steps, List<Float> offsets,
                                boolean clip) {
        throw unsupported("multiBoxPrior");
    }

    /** {@inheritDoc} */
    @Override
    public NDList multiBoxDetection(NDList inputs, boolean clip, float threshold, int backgroundId,
                                    float nmsThreshold, boolean forceSuppress, int nmsTopK) {
        throw unsupported("multiBoxDetection");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray getArray() {
        return array;
    }

}
