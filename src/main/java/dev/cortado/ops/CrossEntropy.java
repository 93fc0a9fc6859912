package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * The fused softmax cross-entropy op ({@code cross_entropy}) and its backward, over ROWS of
 * classes: logits {@code [..., C]} with the class dimension last (each row's classes contiguous,
 * the layout the kernels read), integer class targets of shape {@code [...]} (int32 or int64),
 * label smoothing, ignore_index and reduction none/mean/sum. Users call
 * {@code dev.cortado.nn.Losses.crossEntropy}, which takes PyTorch's convention (logits
 * {@code [N, C]} or {@code [N, C, d...]}, targets {@code [N]} or {@code [N, d...]}) and passes
 * this op a permuted view; this class is the op declaration it dispatches to. The forward computes
 * each row's log-sum-exp once and returns it as output 1 ({@code lse}, float32, or float64 for
 * float64 logits); the backward ({@code cross_entropy_backward}) computes
 * {@code dlogits = (softmax - smoothed one-hot) * g} from it in one pass, so the probabilities are
 * never materialized. Kernels: {@code native/cpu/loss.cpp}, {@code native/cuda/loss.cu}.
 *
 * <p>Mean over zero counted rows (every target ignored, or an empty batch) is defined as 0 with a
 * zero gradient (PyTorch gives NaN): an all-padding batch then contributes nothing instead of
 * poisoning the run. A target outside {@code [0, C)} that is not ignore_index throws
 * {@link IndexOutOfBoundsException} naming the label, its (flattened) position and C.
 *
 * <p>Backward rule: the loss's gradient goes through {@code cross_entropy_backward}; a gradient
 * reaching the lse output (when a caller uses it, e.g. for a z-loss) adds {@code softmax * g_lse}.
 */
public final class CrossEntropy {
    private CrossEntropy() {
    }

    /** How per-row losses are combined. */
    public enum Reduction {
        NONE(NativeCodes.LossReduction.NONE), MEAN(NativeCodes.LossReduction.MEAN), SUM(NativeCodes.LossReduction.SUM);

        private final int code;

        Reduction(int code) {
            this.code = code;
        }

        public int code() {
            return code;
        }
    }

    /**
     * Options of {@code cross_entropy}: reduction, ignore_index (targets equal to it take no loss
     * and are not counted by MEAN) and label smoothing in [0, 1] (the target distribution is
     * {@code (1 - s) one_hot + s / C}).
     */
    public record CrossEntropyAttrs(Reduction reduction, long ignoreIndex, double labelSmoothing) {
        public CrossEntropyAttrs {
            if (reduction == null) {
                throw new IllegalArgumentException("cross_entropy: reduction must not be null");
            }
            if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) {
                throw new IllegalArgumentException("cross_entropy: label smoothing must be in [0, 1], got "
                        + labelSmoothing);
            }
        }

        /** PyTorch's defaults: mean, ignore_index -100, no smoothing. */
        public static CrossEntropyAttrs defaults() {
            return new CrossEntropyAttrs(Reduction.MEAN, -100, 0);
        }

        public static Builder builder() {
            return new Builder();
        }

        /** Builder starting from {@link #defaults()}. */
        public static final class Builder {
            private Reduction reduction = Reduction.MEAN;
            private long ignoreIndex = -100;
            private double labelSmoothing;

            public Builder reduction(Reduction r) {
                reduction = r;
                return this;
            }

            public Builder ignoreIndex(long index) {
                ignoreIndex = index;
                return this;
            }

            public Builder labelSmoothing(double s) {
                labelSmoothing = s;
                return this;
            }

            public CrossEntropyAttrs build() {
                return new CrossEntropyAttrs(reduction, ignoreIndex, labelSmoothing);
            }
        }
    }

    /** Outputs {loss, lse}: loss is [] (mean/sum) or the target's shape (none); lse has the target's shape. */
    public static final Op<CrossEntropyAttrs> CROSS_ENTROPY_OP = Op.<CrossEntropyAttrs>declare("cross_entropy")
            .inputs("logits", "target")
            .shape((op, a, in) -> {
                Shape rows = checkLogitsAndTarget(op, in[0], in[1]);
                Shape lossShape = a.reduction() == Reduction.NONE ? rows : Shape.SCALAR;
                return new TensorSpec[] {new TensorSpec(lossShape, in[0].dtype()),
                    new TensorSpec(rows, lseType(in[0].dtype()))};
            })
            .kernels((a, in, out) -> forward(a, in[0], in[1], out))
            .backward(Op.Saves.INPUTS_AND_OUTPUTS, (a, saved, g) -> {
                if (!saved.needsGradient(0)) {
                    return new Tensor[] {null, null};
                }
                Tensor dx = g[0] == null ? null : CrossEntropy.CROSS_ENTROPY_BACKWARD_OP.call(a, g[0], saved.input(0),
                        saved.input(1), saved.output(1));
                if (g.length > 1 && g[1] != null) { // lse used downstream: d lse / d x = softmax(x)
                    try (Tensor lse = saved.output(1).unsqueeze(-1); Tensor gl = g[1].unsqueeze(-1);
                         Tensor shifted = Elementwise.sub(saved.input(0), lse); Tensor p = Elementwise.exp(shifted)) {
                        Tensor extra = Elementwise.mul(p, gl);
                        if (dx == null) {
                            dx = extra;
                        } else {
                            try (Tensor old = dx; extra) {
                                dx = Elementwise.add(old, extra);
                            }
                        }
                    }
                }
                return new Tensor[] {dx, null};
            })
            .register();

    /** dlogits from the loss gradient, logits, target and the forward's lse. */
    public static final Op<CrossEntropyAttrs> CROSS_ENTROPY_BACKWARD_OP =
            Op.<CrossEntropyAttrs>declare("cross_entropy_backward")
            .inputs("grad", "logits", "target", "lse")
            .shape((op, a, in) -> {
                Tensor grad = in[0];
                Tensor logits = in[1];
                Shape rows = checkLogitsAndTarget(op, logits, in[2]);
                Tensor lse = in[3];
                if (!lse.shape().equals(rows) || lse.dtype() != lseType(logits.dtype())) {
                    throw op.error("lse " + lse.describe() + " must be " + lseType(logits.dtype()) + " " + rows
                            + " for logits " + logits.describe());
                }
                if (!grad.dtype().isFloatingPoint()) {
                    throw op.error("grad must be floating point, got " + grad.describe());
                }
                boolean ok = a.reduction() == Reduction.NONE ? grad.shape().equals(rows) : grad.numel() == 1;
                if (!ok) {
                    throw op.error("grad " + grad.describe() + " does not match the loss of reduction "
                            + a.reduction() + " (rows " + rows + ")");
                }
                return Op.one(logits.shape(), logits.dtype());
            })
            .kernels((a, in, out) -> backward(a, in, out[0]))
            .register();

    // ------------------------------------------------------------------ eager entry points
    /** Cross-entropy of rows {@code [..., C]} against targets {@code [...]}; the loss only (the lse is released). */
    public static Tensor crossEntropy(Tensor logits, Tensor target, CrossEntropyAttrs attrs) {
        Tensor[] out = CROSS_ENTROPY_OP.callMulti(attrs, logits, target);
        out[1].close();
        return out[0];
    }

    /** Cross-entropy returning {loss, lse}. */
    public static Tensor[] crossEntropyWithLse(Tensor logits, Tensor target, CrossEntropyAttrs attrs) {
        return CROSS_ENTROPY_OP.callMulti(attrs, logits, target);
    }

    /** The backward kernel directly: dlogits from grad (loss-shaped), logits, target and lse. */
    public static Tensor crossEntropyBackward(Tensor grad, Tensor logits, Tensor target, Tensor lse,
                                              CrossEntropyAttrs attrs) {
        return CROSS_ENTROPY_BACKWARD_OP.call(attrs, grad, logits, target, lse);
    }

    // ------------------------------------------------------------------ rules and kernels
    private static DType lseType(DType logits) {
        return logits == DType.FLOAT64 ? DType.FLOAT64 : DType.FLOAT32;
    }

    /** Validates logits [..., C] and target [...]; returns the rows' shape (the target's). */
    private static Shape checkLogitsAndTarget(Op<?> op, Tensor logits, Tensor target) {
        if (!logits.dtype().isFloatingPoint()) {
            throw op.error("input 'logits' must be floating point, got " + logits.describe());
        }
        op.requireDType("target", target, DType.INT32, DType.INT64);
        if (logits.rank() < 1) {
            throw op.error("logits must have a class dimension (last), got " + logits.describe());
        }
        long[] d = logits.dims();
        long[] rows = Arrays.copyOf(d, d.length - 1);
        if (!Arrays.equals(rows, target.dims())) {
            throw op.error("target " + target.describe() + " must have the shape of logits " + logits.describe()
                    + " without its last (class) dimension: " + Arrays.toString(rows));
        }
        long n = target.numel();
        if (n > 0 && d[d.length - 1] == 0) {
            throw op.error("logits " + logits.describe() + " have 0 classes");
        }
        return Shape.of(rows);
    }

    private static String context(String name, Tensor logits, Tensor target, CrossEntropyAttrs a) {
        return name + "(logits " + logits.describe() + ", target " + target.describe() + ", " + a + ")";
    }

    private static void forward(CrossEntropyAttrs a, Tensor logits, Tensor target, Tensor[] out) {
        long rows = target.numel();
        long classes = logits.size(logits.rank() - 1);
        try (Tensor xc = logits.contiguous(); Tensor tc = target.contiguous()) {
            Launch l = Launch.on(out[0]);
            int status = l.kernels.crossEntropyForward(logits.dtype().code(), target.dtype().code(), rows,
                    classes, xc.dataAddress(), tc.dataAddress(), a.ignoreIndex(), a.labelSmoothing(),
                    a.reduction().code(), out[0].dataAddress(), out[1].dataAddress(), l.stream);
            if (status != 0) {
                String ctx = context("cross_entropy", logits, target, a);
                throw l.failure(status, ctx);
            }
        }
    }

    private static void backward(CrossEntropyAttrs a, Tensor[] in, Tensor dx) {
        Tensor logits = in[1];
        Tensor target = in[2];
        long rows = target.numel();
        long classes = logits.size(logits.rank() - 1);
        if (dx.numel() == 0) {
            return;
        }
        try (Tensor gc = in[0].dtype() == logits.dtype() ? in[0].contiguous() : in[0].to(logits.dtype());
             Tensor xc = logits.contiguous(); Tensor tc = target.contiguous(); Tensor lc = in[3].contiguous()) {
            Launch l = Launch.on(dx);
            int status = l.kernels.crossEntropyBackward(logits.dtype().code(), target.dtype().code(), rows,
                    classes, xc.dataAddress(), tc.dataAddress(), lc.dataAddress(), gc.dataAddress(), a.ignoreIndex(),
                    a.labelSmoothing(), a.reduction().code(), dx.dataAddress(), l.stream);
            if (status != 0) {
                String ctx = context("cross_entropy_backward", logits, target, a);
                throw l.failure(status, ctx);
            }
        }
    }
}
