package dev.cortado.ops;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * Batch normalization over (N, spatial) per channel: training (batch statistics, running
 * statistics updated in place with momentum, the running variance unbiased as PyTorch),
 * inference (running statistics), backward (dx, dgamma, dbeta), and folding into a preceding
 * convolution for inference. x is [N, C, spatial...] (NCHW) or [N, spatial..., C] (NHWC), rank
 * >= 2, float32 or float64; weight (gamma), bias (beta), running and saved statistics are
 * float32 [C]. Kernels: {@code native/cpu/batchnorm.cpp} and {@code native/cuda/batchnorm.cu}.
 */
public final class BatchNorm {
    private BatchNorm() {
    }

    /** Epsilon, momentum (training: running = (1 - momentum) * running + momentum * batch) and layout. */
    public record BatchNormAttrs(double eps, double momentum, DataLayout layout) {
        public BatchNormAttrs {
            if (layout == null) {
                layout = DataLayout.NCHW;
            }
        }

        /** PyTorch's defaults: eps 1e-5, momentum 0.1, NCHW. */
        public static BatchNormAttrs defaults() {
            return new BatchNormAttrs(1e-5, 0.1, DataLayout.NCHW);
        }

        public BatchNormAttrs withLayout(DataLayout l) {
            return new BatchNormAttrs(eps, momentum, l);
        }
    }

    /** Outputs {y, save_mean, save_rstd}; running_mean / running_var (optional) are updated in place. */
    public static final Op<BatchNormAttrs> BATCH_NORM_TRAINING_OP = Op.<BatchNormAttrs>declare("batch_norm_training")
            .inputs("x", "weight", "bias", "running_mean", "running_var").required(1)
            .shape((op, a, in) -> {
                long c = check(op, a, in[0], in, 1, true);
                if ((in.length > 3 && in[3] != null) != (in.length > 4 && in[4] != null)) {
                    throw op.error("running_mean and running_var must be given together (x " + in[0].describe() + ")");
                }
                long m = in[0].numel() / Math.max(c, 1);
                if (c > 0 && m < 2) {
                    throw op.error("training needs more than 1 value per channel, x is " + in[0].describe());
                }
                Shape cs = Shape.of(c);
                return new TensorSpec[] {new TensorSpec(in[0].shape(), in[0].dtype()), new TensorSpec(cs, DType.FLOAT32),
                    new TensorSpec(cs, DType.FLOAT32)};
            })
            .kernels((a, in, out) -> trainingKernel(a, in, out))
            .backward(Op.Saves.INPUTS_AND_OUTPUTS, (a, sv, g) -> {
                Tensor[] r = new Tensor[sv.inputCount()];
                if (g[0] == null) {
                    return r;
                }
                Tensor weight = sv.inputCount() > 1 ? sv.input(1) : null;
                Tensor[] d = BatchNorm.backward(g[0], sv.input(0), weight, sv.output(1), sv.output(2), a);
                r[0] = d[0];
                if (r.length > 1 && sv.needsGradient(1)) {
                    r[1] = d[1];
                } else {
                    d[1].close();
                }
                if (r.length > 2 && sv.needsGradient(2)) {
                    r[2] = d[2];
                } else {
                    d[2].close();
                }
                return r;
            })
            .register();

    public static final Op<BatchNormAttrs> BATCH_NORM_INFERENCE_OP = Op.<BatchNormAttrs>declare("batch_norm_inference")
            .inputs("x", "weight", "bias", "running_mean", "running_var").required(1)
            .shape((op, a, in) -> {
                check(op, a, in[0], in, 1, false);
                if (in.length < 5 || in[3] == null || in[4] == null) {
                    throw op.error("needs running_mean and running_var (x " + in[0].describe() + ")");
                }
                return Op.one(in[0].shape(), in[0].dtype());
            })
            .kernels((a, in, out) -> inferenceKernel(a, in, out))
            .backward(Op.Saves.INPUTS, BatchNorm::inferenceGrad)
            .register();

    /**
     * Evaluation mode is a per-channel affine map y = (x - mean) * rstd * w + b with fixed
     * statistics: dx = dy * w * rstd, dw = sum(dy * (x - mean) * rstd), db = sum(dy).
     */
    private static Tensor[] inferenceGrad(BatchNormAttrs a, Op.Saved sv, Tensor[] g) {
        Tensor x = sv.input(0);
        int channelAxis = a.layout() == DataLayout.NCHW ? 1 : x.rank() - 1;
        long c = x.size(channelAxis);
        long[] bshape = new long[x.rank()];
        java.util.Arrays.fill(bshape, 1);
        bshape[channelAxis] = c;
        int[] others = new int[x.rank() - 1];
        for (int d = 0, j = 0; d < x.rank(); d++) {
            if (d != channelAxis) {
                others[j++] = d;
            }
        }
        Tensor[] r = new Tensor[sv.inputCount()];
        try (Scope s = Scope.open()) {
            Tensor rstd = Elementwise.rsqrt(Elementwise.add(sv.input(4), a.eps())).reshape(bshape);
            Tensor w = sv.inputCount() > 1 && sv.input(1) != null ? sv.input(1).reshape(bshape) : null;
            if (sv.needsGradient(0)) {
                Tensor scale = w == null ? rstd : Elementwise.mul(rstd, w);
                r[0] = s.keep(Elementwise.mul(g[0], scale));
            }
            if (sv.needsGradient(1)) {
                Tensor xhat = Elementwise.mul(Elementwise.sub(x, sv.input(3).reshape(bshape)), rstd);
                r[1] = s.keep(Reductions.sum(Elementwise.mul(g[0], xhat), false, others));
            }
            if (r.length > 2 && sv.needsGradient(2)) {
                r[2] = s.keep(Reductions.sum(g[0], false, others));
            }
        }
        return r;
    }

    /** Outputs {dx, dgamma, dbeta} from dy, x, weight (optional) and the saved statistics. */
    public static final Op<BatchNormAttrs> BATCH_NORM_BACKWARD_OP = Op.<BatchNormAttrs>declare("batch_norm_backward")
            .inputs("dy", "x", "weight", "save_mean", "save_rstd").required(2)
            .shape((op, a, in) -> {
                Tensor dy = in[0];
                Tensor x = in[1];
                long c = check(op, a, x, new Tensor[] {x, in.length > 2 ? in[2] : null, null,
                    in.length > 3 ? in[3] : null, in.length > 4 ? in[4] : null}, 1, false);
                if (in.length < 5 || in[3] == null || in[4] == null) {
                    throw op.error("needs save_mean and save_rstd (x " + x.describe() + ")");
                }
                op.requireLike("dy", dy, "x", x);
                Shape cs = Shape.of(c);
                return new TensorSpec[] {new TensorSpec(x.shape(), x.dtype()), new TensorSpec(cs, DType.FLOAT32),
                    new TensorSpec(cs, DType.FLOAT32)};
            })
            .kernels((a, in, out) -> backwardKernel(a, in, out))
            .register();

    /**
     * Training-mode batch norm followed by ReLU, as one node (what the graph pass
     * {@code BatchNormReluFusion} makes of {@code relu(batch_norm_training(x))}): outputs
     * {relu(y), save_mean, save_rstd}, running statistics updated in place as by
     * {@link #BATCH_NORM_TRAINING_OP}. The normalized values are written once into the output
     * and rectified there, so the pre-activation never exists as a tensor of its own. Its
     * backward is {@link #BATCH_NORM_RELU_BACKWARD_OP}, which needs the output (the ReLU mask),
     * x and the statistics: what the unfused pair saves, less the pre-activation.
     */
    public static final Op<BatchNormAttrs> BATCH_NORM_RELU_TRAINING_OP = Op.<BatchNormAttrs>declare("batch_norm_relu_training")
            .inputs("x", "weight", "bias", "running_mean", "running_var").required(1)
            .shape((op, a, in) -> BATCH_NORM_TRAINING_OP.infer(a, in))
            .kernels((a, in, out) -> {
                trainingKernel(a, in, out);
                Tensor[] y = {out[0]};
                Elementwise.RELU_OP.kernel(out[0].device().type()).run(Elementwise.Params.NONE, y, y); // in place, per element
            })
            .backward(Op.Saves.INPUTS_AND_OUTPUTS, (a, sv, g) -> {
                Tensor[] r = new Tensor[sv.inputCount()];
                if (g[0] == null) {
                    return r;
                }
                Tensor weight = sv.inputCount() > 1 ? sv.input(1) : null;
                Tensor[] d = BatchNorm.BATCH_NORM_RELU_BACKWARD_OP.callMulti(a, g[0], sv.output(0), sv.input(0), weight,
                        sv.output(1), sv.output(2));
                r[0] = d[0];
                for (int i = 1; i < 3; i++) {
                    if (r.length > i && sv.needsGradient(i)) {
                        r[i] = d[i];
                    } else {
                        d[i].close();
                    }
                }
                return r;
            })
            .register();

    /**
     * The backward of {@link #BATCH_NORM_RELU_TRAINING_OP}: {dx, dgamma, dbeta} from the gradient of
     * its output {@code dy}, its output {@code y} (ReLU passes the gradient where {@code y > 0}),
     * x, weight (optional) and the saved statistics. One node for what the unfused graph does with
     * {@code relu_grad} and {@code batch_norm_backward}: the masked gradient is written into dx and
     * the batch-norm backward runs in place on it (its last stage is per element, dx[i] from dy[i]),
     * so no tensor of x's size is made besides dx.
     */
    public static final Op<BatchNormAttrs> BATCH_NORM_RELU_BACKWARD_OP = Op.<BatchNormAttrs>declare("batch_norm_relu_backward")
            .inputs("dy", "y", "x", "weight", "save_mean", "save_rstd").required(3)
            .shape((op, a, in) -> {
                op.requireLike("y", in[1], "x", in[2]);
                Tensor[] rest = new Tensor[] {in[0], in[2], in.length > 3 ? in[3] : null, in.length > 4 ? in[4] : null,
                    in.length > 5 ? in[5] : null};
                return BATCH_NORM_BACKWARD_OP.infer(a, rest);
            })
            .kernels((a, in, out) -> {
                Tensor[] mask = {in[0], in[1]};
                Tensor[] dx = {out[0]};
                Elementwise.RELU_GRAD_OP.kernel(out[0].device().type()).run(null, mask, dx);
                Tensor[] rest = {out[0], in[2], in.length > 3 ? in[3] : null, in.length > 4 ? in[4] : null,
                    in.length > 5 ? in[5] : null};
                backwardKernel(a, rest, out);
            })
            .register();

    // ------------------------------------------------------------------ eager entry points
    /**
     * Training-mode batch norm: returns {y, save_mean, save_rstd}; running statistics (float32 [C],
     * contiguous; both or neither) are updated in place. weight/bias may be null.
     */
    public static Tensor[] training(Tensor x, Tensor weight, Tensor bias, Tensor runningMean, Tensor runningVar,
                                   BatchNormAttrs a) {
        return BATCH_NORM_TRAINING_OP.callMulti(a, x, weight, bias, runningMean, runningVar);
    }

    /** Inference-mode batch norm with the running statistics. */
    public static Tensor inference(Tensor x, Tensor weight, Tensor bias, Tensor runningMean, Tensor runningVar,
                                   BatchNormAttrs a) {
        return BATCH_NORM_INFERENCE_OP.call(a, x, weight, bias, runningMean, runningVar);
    }

    /** {@link #BATCH_NORM_RELU_TRAINING_OP}: returns {relu(y), save_mean, save_rstd}; running statistics updated in place. */
    public static Tensor[] trainingRelu(Tensor x, Tensor weight, Tensor bias, Tensor runningMean, Tensor runningVar,
                                        BatchNormAttrs a) {
        return BATCH_NORM_RELU_TRAINING_OP.callMulti(a, x, weight, bias, runningMean, runningVar);
    }

    /** Returns {dx, dgamma, dbeta}. */
    public static Tensor[] backward(Tensor dy, Tensor x, Tensor weight, Tensor saveMean, Tensor saveRstd,
                                    BatchNormAttrs a) {
        return BATCH_NORM_BACKWARD_OP.callMulti(a, dy, x, weight, saveMean, saveRstd);
    }

    /**
     * Folds an inference batch norm into the convolution before it: returns {w', b'} with
     * {@code w'[k] = w[k] * gamma[k] * rstd[k]} and {@code b'[k] = (b[k] - mean[k]) * gamma[k] * rstd[k] + beta[k]},
     * {@code rstd = 1 / sqrt(running_var + eps)}; conv(x, w', b') = batch_norm_inference(conv(x, w, b)).
     * The weight is [K, ...] (PyTorch's layout, output channels first) of float32 or float64; bias,
     * gamma, beta may be null (0, 1, 0); statistics are [K]. Results have the weight's dtype, on the CPU.
     */
    public static Tensor[] foldIntoConv(Tensor weight, Tensor bias, Tensor gamma, Tensor beta, Tensor runningMean,
                                       Tensor runningVar, double eps) {
        String op = "batch_norm_fold";
        if (weight.rank() < 1 || (weight.dtype() != DType.FLOAT32 && weight.dtype() != DType.FLOAT64)) {
            throw new IllegalArgumentException(op + ": weight " + weight.describe()
                    + " must be float32 or float64 with output channels first");
        }
        long k = weight.size(0);
        double[] w = weight.toDoubleArray();
        double[] b = vec(op, "bias", bias, k, 0.0, weight);
        double[] g = vec(op, "gamma", gamma, k, 1.0, weight);
        double[] be = vec(op, "beta", beta, k, 0.0, weight);
        double[] m = vec(op, "running_mean", runningMean, k, Double.NaN, weight);
        double[] v = vec(op, "running_var", runningVar, k, Double.NaN, weight);
        int per = (int) (k == 0 ? 0 : w.length / k);
        double[] nb = new double[(int) k];
        for (int c = 0; c < k; c++) {
            double s = g[c] / Math.sqrt(v[c] + eps);
            for (int i = 0; i < per; i++) {
                w[c * per + i] *= s;
            }
            nb[c] = (b[c] - m[c]) * s + be[c];
        }
        long[] wd = weight.dims();
        if (weight.dtype() == DType.FLOAT64) {
            return new Tensor[] {Tensor.of(w, wd), Tensor.of(nb, k)};
        }
        float[] wf = new float[w.length];
        for (int i = 0; i < w.length; i++) {
            wf[i] = (float) w[i];
        }
        float[] bf = new float[nb.length];
        for (int i = 0; i < nb.length; i++) {
            bf[i] = (float) nb[i];
        }
        return new Tensor[] {Tensor.of(wf, wd), Tensor.of(bf, k)};
    }

    // ------------------------------------------------------------------ rules and kernels
    private static double[] vec(String op, String name, Tensor t, long k, double dflt, Tensor weight) {
        if (t == null) {
            if (Double.isNaN(dflt)) {
                throw new IllegalArgumentException(op + ": " + name + " is required (weight " + weight.describe() + ")");
            }
            double[] d = new double[(int) k];
            java.util.Arrays.fill(d, dflt);
            return d;
        }
        if (t.rank() != 1 || t.size(0) != k) {
            throw new IllegalArgumentException(op + ": " + name + " " + t.describe() + " must be [" + k
                    + "] for weight " + weight.describe());
        }
        return t.toDoubleArray();
    }

    /** {N, C, S} of x in the layout. */
    static long[] ncs(Tensor x, DataLayout layout) {
        long[] d = x.dims();
        long n = d[0];
        long c = layout == DataLayout.NHWC ? d[d.length - 1] : d[1];
        long s = 1;
        int from = layout == DataLayout.NHWC ? 1 : 2;
        int to = layout == DataLayout.NHWC ? d.length - 1 : d.length;
        for (int i = from; i < to; i++) {
            s *= d[i];
        }
        return new long[] {n, c, s};
    }

    /**
     * Checks x (rank >= 2, float32/float64) and the per-channel inputs in[first..] (float32 [C]);
     * with {@code inPlaceStats} the running statistics (in[3], in[4]) must be contiguous. Returns C.
     */
    private static long check(Op<?> op, BatchNormAttrs a, Tensor x, Tensor[] in, int first, boolean inPlaceStats) {
        if (x.dtype() != DType.FLOAT32 && x.dtype() != DType.FLOAT64) {
            throw op.error("x must be float32 or float64, got " + x.describe());
        }
        if (x.rank() < 2) {
            throw op.error("x " + x.describe() + " must have rank >= 2 ([N, C, ...] or [N, ..., C])");
        }
        if (!(a.eps() >= 0) || Double.isInfinite(a.eps())) {
            throw op.error("eps must be finite and non-negative, got " + a.eps());
        }
        if (!(a.momentum() >= 0 && a.momentum() <= 1)) {
            throw op.error("momentum must be in [0, 1], got " + a.momentum());
        }
        long c = ncs(x, a.layout())[1];
        for (int i = first; i < in.length; i++) {
            Tensor p = in[i];
            if (p == null) {
                continue;
            }
            if (p.dtype() != DType.FLOAT32 || p.rank() != 1 || p.size(0) != c) {
                throw op.error("input '" + op.inputName(i) + "' " + p.describe() + " must be float32 [" + c
                        + "] for x " + x.describe() + " (" + a.layout() + ")");
            }
            if (inPlaceStats && i >= 3 && !p.isContiguous()) {
                throw op.error("input '" + op.inputName(i) + "' " + p.describe()
                        + " is updated in place and must be contiguous");
            }
        }
        return c;
    }

    private static Tensor contig(Tensor[] in, int i) {
        return i < in.length && in[i] != null ? in[i].contiguous() : null;
    }

    private static long addr(Tensor t) {
        return t == null ? 0 : t.dataAddress();
    }

    private static long addr(Tensor[] in, int i) {
        return i < in.length && in[i] != null ? in[i].dataAddress() : 0;
    }

    private static void check(Launch l, int status, String name, Tensor x, BatchNormAttrs a) {
        if (status != 0) {
            throw l.failure(status, name + "(" + x.describe() + ", " + a + ")");
        }
    }

    private static void trainingKernel(BatchNormAttrs a, Tensor[] in, Tensor[] out) {
        Tensor x = in[0];
        long[] ncs = ncs(x, a.layout());
        if (ncs[1] == 0) {
            return;
        }
        try (Tensor xc = x.contiguous(); Tensor w = contig(in, 1); Tensor b = contig(in, 2)) {
            int dt = x.dtype().code();
            int lay = a.layout().code();
            Launch l = Launch.on(out[0]);
            int st = l.kernels.batchnormForwardTraining(dt, lay, ncs[0], ncs[1], ncs[2], xc.dataAddress(), addr(w),
                    addr(b), a.eps(), a.momentum(), addr(in, 3), addr(in, 4), out[0].dataAddress(),
                    out[1].dataAddress(), out[2].dataAddress(), l.stream);
            check(l, st, "batch_norm_training", x, a);
        }
    }

    private static void inferenceKernel(BatchNormAttrs a, Tensor[] in, Tensor[] out) {
        Tensor x = in[0];
        long[] ncs = ncs(x, a.layout());
        if (x.numel() == 0) {
            return;
        }
        try (Tensor xc = x.contiguous(); Tensor w = contig(in, 1); Tensor b = contig(in, 2);
             Tensor rm = contig(in, 3); Tensor rv = contig(in, 4)) {
            int dt = x.dtype().code();
            int lay = a.layout().code();
            Launch l = Launch.on(out[0]);
            int st = l.kernels.batchnormForwardInference(dt, lay, ncs[0], ncs[1], ncs[2], xc.dataAddress(), addr(w),
                    addr(b), addr(rm), addr(rv), a.eps(), out[0].dataAddress(), l.stream);
            check(l, st, "batch_norm_inference", x, a);
        }
    }

    private static void backwardKernel(BatchNormAttrs a, Tensor[] in, Tensor[] out) {
        Tensor x = in[1];
        long[] ncs = ncs(x, a.layout());
        if (ncs[1] == 0) {
            return;
        }
        try (Tensor dyc = in[0].contiguous(); Tensor xc = x.contiguous(); Tensor w = contig(in, 2);
             Tensor sm = contig(in, 3); Tensor sr = contig(in, 4)) {
            int dt = x.dtype().code();
            int lay = a.layout().code();
            Launch l = Launch.on(out[0]);
            int st = l.kernels.batchnormBackward(dt, lay, ncs[0], ncs[1], ncs[2], xc.dataAddress(),
                    dyc.dataAddress(), addr(w), addr(sm), addr(sr), out[0].dataAddress(), out[1].dataAddress(),
                    out[2].dataAddress(), l.stream);
            check(l, st, "batch_norm_backward", x, a);
        }
    }
}
