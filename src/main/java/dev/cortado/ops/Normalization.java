package dev.cortado.ops;

import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Softmax, log-softmax, layer norm and RMS norm, and their backward ops (declared as the
 * forward ops' backward rules). Kernels: {@code native/cpu/norm.cpp}, {@code native/cuda/norm.cu};
 * inputs are made contiguous first (a no-op for the usual case).
 */
public final class Normalization {
    private Normalization() {
    }

    /** Softmax along {@code axis}. */
    public record SoftmaxAttrs(int axis, boolean log) {
    }

    /** Normalization over the trailing {@code normalizedDims} dimensions, with epsilon. */
    public record NormAttrs(int normalizedDims, double eps) {
    }

    public static final Op<SoftmaxAttrs> SOFTMAX_OP = softmaxOp("softmax");
    public static final Op<SoftmaxAttrs> LOG_SOFTMAX_OP = softmaxOp("log_softmax");

    public static final Op<NormAttrs> LAYER_NORM_OP = Op.<NormAttrs>declare("layer_norm")
            .inputs("x", "weight", "bias").required(1)
            .shape((op, a, in) -> normShape(op, a, in))
            .kernels((a, in, out) -> normKernel("layer_norm", a, in, out[0]))
            .backward(Op.Saves.INPUTS, (a, saved, g) -> normBackward(Normalization.LAYER_NORM_BACKWARD_OP, a, saved, g))
            .register();

    public static final Op<NormAttrs> RMS_NORM_OP = Op.<NormAttrs>declare("rms_norm")
            .inputs("x", "weight").required(1)
            .shape((op, a, in) -> normShape(op, a, in))
            .kernels((a, in, out) -> normKernel("rms_norm", a, in, out[0]))
            .backward(Op.Saves.INPUTS, (a, saved, g) -> normBackward(Normalization.RMS_NORM_BACKWARD_OP, a, saved, g))
            .register();

    /** Backward of softmax from its output y and dy: {@code dx = y * (dy - sum(dy * y))} along the axis. */
    public static final Op<SoftmaxAttrs> SOFTMAX_BACKWARD_OP = softmaxBackwardOp("softmax_backward");
    /** Backward of log-softmax from its output y and dy: {@code dx = dy - exp(y) * sum(dy)} along the axis. */
    public static final Op<SoftmaxAttrs> LOG_SOFTMAX_BACKWARD_OP = softmaxBackwardOp("log_softmax_backward");

    /**
     * Outputs {dx, dweight, dbias} of layer norm from dy, x and weight (optional; dweight and dbias
     * are always computed). Mean and 1/std are recomputed from x.
     */
    public static final Op<NormAttrs> LAYER_NORM_BACKWARD_OP = Op.<NormAttrs>declare("layer_norm_backward")
            .inputs("dy", "x", "weight").required(2)
            .shape((op, a, in) -> normBackwardShape(op, a, in, 3))
            .kernels((a, in, out) -> normBackwardKernel("layer_norm_backward", a, in, out))
            .register();

    /** Outputs {dx, dweight} of RMS norm from dy, x and weight (optional). */
    public static final Op<NormAttrs> RMS_NORM_BACKWARD_OP = Op.<NormAttrs>declare("rms_norm_backward")
            .inputs("dy", "x", "weight").required(2)
            .shape((op, a, in) -> normBackwardShape(op, a, in, 2))
            .kernels((a, in, out) -> normBackwardKernel("rms_norm_backward", a, in, out))
            .register();

    // ------------------------------------------------------------------ eager entry points
    public static Tensor softmax(Tensor x, int axis) {
        return SOFTMAX_OP.call(new SoftmaxAttrs(axis, false), x);
    }

    public static Tensor logSoftmax(Tensor x, int axis) {
        return LOG_SOFTMAX_OP.call(new SoftmaxAttrs(axis, true), x);
    }

    /**
     * Layer normalization over the trailing dimensions matching {@code weight}'s shape (or the last
     * {@code normalizedDims} when weight is null): {@code (x - mean) / sqrt(var + eps) * weight + bias}.
     */
    public static Tensor layerNorm(Tensor x, Tensor weight, Tensor bias, int normalizedDims, double eps) {
        return LAYER_NORM_OP.call(new NormAttrs(normalizedDims, eps), x, weight, bias);
    }

    /** RMS normalization over the trailing {@code normalizedDims}: {@code x / sqrt(mean(x^2) + eps) * weight}. */
    public static Tensor rmsNorm(Tensor x, Tensor weight, int normalizedDims, double eps) {
        return RMS_NORM_OP.call(new NormAttrs(normalizedDims, eps), x, weight);
    }

    // ------------------------------------------------------------------ rules and kernels
    private static void requireFloat(Op<?> op, String input, Tensor t) {
        if (!t.dtype().isFloatingPoint()) {
            throw op.error("input '" + input + "' must be floating point, got " + t.describe());
        }
    }

    private static Op<SoftmaxAttrs> softmaxOp(String name) {
        return Op.<SoftmaxAttrs>declare(name)
                .inputs("x")
                .shape((op, a, in) -> {
                    requireFloat(op, "x", in[0]);
                    if (in[0].rank() == 0 && a.axis() != 0 && a.axis() != -1) {
                        throw op.error("axis " + a.axis() + " is out of range for a 0-dim tensor");
                    }
                    if (in[0].rank() > 0) {
                        try {
                            Shape.normalize(a.axis(), in[0].rank());
                        } catch (IndexOutOfBoundsException e) {
                            throw op.error("axis " + a.axis() + " is out of range for " + in[0].describe());
                        }
                    }
                    return Op.one(in[0].shape(), in[0].dtype());
                })
                .kernels((a, in, out) -> softmaxKernel(name, a, in[0], out[0]))
                .backward(Op.Saves.OUTPUTS, (a, saved, g) -> {
                    if (g[0] == null || !saved.needsGradient(0)) {
                        return new Tensor[] {null};
                    }
                    Op<SoftmaxAttrs> bw = a.log() ? Normalization.LOG_SOFTMAX_BACKWARD_OP
                            : Normalization.SOFTMAX_BACKWARD_OP;
                    return new Tensor[] {bw.call(a, saved.output(0), g[0])};
                })
                .register();
    }

    private static Op<SoftmaxAttrs> softmaxBackwardOp(String name) {
        boolean log = name.startsWith("log");
        return Op.<SoftmaxAttrs>declare(name)
                .inputs("y", "dy")
                .shape((op, a, in) -> {
                    requireFloat(op, "y", in[0]);
                    requireFloat(op, "dy", in[1]);
                    if (a.log() != log) {
                        throw op.error("attrs say log=" + a.log());
                    }
                    if (!in[0].shape().equals(in[1].shape())) {
                        throw op.error("dy " + in[1].describe() + " must have the shape of y " + in[0].describe());
                    }
                    if (in[0].rank() > 0) {
                        try {
                            Shape.normalize(a.axis(), in[0].rank());
                        } catch (IndexOutOfBoundsException e) {
                            throw op.error("axis " + a.axis() + " is out of range for " + in[0].describe());
                        }
                    }
                    return Op.one(in[0].shape(), in[0].dtype());
                })
                .kernels((a, in, out) -> softmaxBackwardKernel(name, a, in[0], in[1], out[0]))
                .register();
    }

    private static void softmaxBackwardKernel(String name, SoftmaxAttrs a, Tensor y, Tensor dy, Tensor out) {
        if (out.numel() == 0) {
            return;
        }
        long[] dims = y.dims();
        int axis = dims.length == 0 ? 0 : Shape.normalize(a.axis(), dims.length);
        long outer = y.shape().sizeBefore(axis);
        long inner = y.shape().sizeAfter(axis);
        long dim = dims.length == 0 ? 1 : dims[axis];
        try (Tensor yc = y.contiguous(); Tensor gc = dy.dtype() == y.dtype() ? dy.contiguous() : dy.to(y.dtype())) {
            Launch l = Launch.on(out);
            int status;
            status = l.kernels.softmaxBackward(y.dtype().code(), a.log() ? 1 : 0, outer, dim, inner,
                    yc.dataAddress(), gc.dataAddress(), out.dataAddress(), l.stream);
            if (status != 0) {
                String ctx = name + "(y " + y.describe() + ", dy " + dy.describe() + ", axis " + a.axis() + ")";
                throw l.failure(status, ctx);
            }
        }
    }

    /** Shared rule of layer_norm / rms_norm: keeps the gradients the inputs need, closes the rest. */
    private static Tensor[] normBackward(Op<NormAttrs> bw, NormAttrs a, Op.Saved saved, Tensor[] g) {
        Tensor[] res = new Tensor[saved.inputCount()];
        if (g[0] == null) {
            return res;
        }
        Tensor w = saved.inputCount() > 1 ? saved.input(1) : null;
        Tensor[] r = bw.callMulti(a, g[0], saved.input(0), w);
        for (int i = 0; i < r.length; i++) {
            if (i < res.length && saved.needsGradient(i)) {
                res[i] = r[i];
            } else {
                r[i].close();
            }
        }
        return res;
    }

    private static TensorSpec[] normBackwardShape(Op<NormAttrs> op, NormAttrs a, Tensor[] in, int outputs) {
        Tensor dy = in[0];
        Tensor x = in[1];
        Tensor w = in.length > 2 ? in[2] : null;
        normShape(op, a, new Tensor[] {x});
        requireFloat(op, "dy", dy);
        if (!dy.shape().equals(x.shape())) {
            throw op.error("dy " + dy.describe() + " must have the shape of x " + x.describe());
        }
        long[] dims = x.dims();
        Shape normalized = Shape.of(Arrays.copyOfRange(dims, dims.length - a.normalizedDims(), dims.length));
        if (w != null && (!w.shape().equals(normalized) || w.dtype() != x.dtype())) {
            throw op.error("input 'weight' " + w.describe() + " must be " + x.dtype() + " " + normalized
                    + ", the normalized shape of x " + x.describe());
        }
        TensorSpec[] specs = new TensorSpec[outputs];
        specs[0] = new TensorSpec(x.shape(), x.dtype());
        for (int i = 1; i < outputs; i++) {
            specs[i] = new TensorSpec(normalized, x.dtype());
        }
        return specs;
    }

    private static void normBackwardKernel(String name, NormAttrs a, Tensor[] in, Tensor[] out) {
        Tensor dy = in[0];
        Tensor x = in[1];
        Tensor weight = in.length > 2 ? in[2] : null;
        long[] dims = x.dims();
        long cols = 1;
        for (int d = dims.length - a.normalizedDims(); d < dims.length; d++) {
            cols *= dims[d];
        }
        if (cols == 0) {
            return;
        }
        long rows = x.numel() / cols;
        boolean layer = out.length == 3;
        try (Tensor xc = x.contiguous(); Tensor gc = dy.dtype() == x.dtype() ? dy.contiguous() : dy.to(x.dtype());
             Tensor wc = weight == null ? null : weight.contiguous()) {
            long w = wc == null ? 0 : wc.dataAddress();
            long dxa = rows == 0 ? 0 : out[0].dataAddress();
            long dg = out[1].dataAddress();
            long db = layer ? out[2].dataAddress() : 0;
            int code = x.dtype().code();
            Launch l = Launch.on(out[0]);
            int status;
            status = layer
                    ? l.kernels.layernormBackward(code, rows, cols, xc.dataAddress(), w, a.eps(),
                            gc.dataAddress(), dxa, dg, db, l.stream)
                    : l.kernels.rmsnormBackward(code, rows, cols, xc.dataAddress(), w, a.eps(),
                            gc.dataAddress(), dxa, dg, l.stream);
            if (status != 0) {
                String ctx = name + "(dy " + dy.describe() + ", x " + x.describe() + ")";
                throw l.failure(status, ctx);
            }
        }
    }

    private static void softmaxKernel(String name, SoftmaxAttrs a, Tensor x, Tensor out) {
        if (out.numel() == 0) {
            return;
        }
        long[] dims = x.dims();
        int axis = dims.length == 0 ? 0 : Shape.normalize(a.axis(), dims.length);
        long outer = x.shape().sizeBefore(axis);
        long inner = x.shape().sizeAfter(axis);
        long dim = dims.length == 0 ? 1 : dims[axis];
        try (Tensor xc = x.contiguous()) {
            Launch l = Launch.on(out);
            int status;
            status = l.kernels.softmax(x.dtype().code(), a.log() ? 1 : 0, outer, dim, inner,
                    xc.dataAddress(), out.dataAddress(), l.stream);
            if (status != 0) {
                String ctx = name + "(" + x.describe() + ", axis " + a.axis() + ")";
                throw l.failure(status, ctx);
            }
        }
    }

    private static TensorSpec[] normShape(Op<NormAttrs> op, NormAttrs a, Tensor[] in) {
        Tensor x = in[0];
        requireFloat(op, "x", x);
        int k = a.normalizedDims();
        if (k < 1 || k > x.rank()) {
            throw op.error("normalizes the last " + k + " dimensions but " + x.describe() + " has rank " + x.rank());
        }
        if (!(a.eps() >= 0)) {
            throw op.error("eps must be non-negative, got " + a.eps());
        }
        long[] dims = x.dims();
        long[] normalized = Arrays.copyOfRange(dims, dims.length - k, dims.length);
        for (int i = 1; i < in.length; i++) {
            Tensor p = in[i];
            if (p == null) {
                continue;
            }
            if (!Arrays.equals(p.dims(), normalized)) {
                throw op.error("input '" + op.inputName(i) + "' has shape " + p.shape() + " but the normalized shape of "
                        + x.describe() + " is " + Arrays.toString(normalized));
            }
            if (p.dtype() != x.dtype()) {
                throw op.error("input '" + op.inputName(i) + "' has dtype " + p.dtype() + ", x has " + x.dtype());
            }
        }
        return Op.one(x.shape(), x.dtype());
    }

    private static void normKernel(String name, NormAttrs a, Tensor[] in, Tensor out) {
        Tensor x = in[0];
        if (out.numel() == 0) {
            return;
        }
        long[] dims = x.dims();
        long cols = 1;
        for (int d = dims.length - a.normalizedDims(); d < dims.length; d++) {
            cols *= dims[d];
        }
        long rows = x.numel() / cols;
        Tensor weight = in.length > 1 ? in[1] : null;
        Tensor bias = in.length > 2 ? in[2] : null;
        try (Tensor xc = x.contiguous();
             Tensor wc = weight == null ? null : weight.contiguous();
             Tensor bc = bias == null ? null : bias.contiguous()) {
            long w = wc == null ? 0 : wc.dataAddress();
            long b = bc == null ? 0 : bc.dataAddress();
            int code = x.dtype().code();
            int status;
            boolean layer = name.equals("layer_norm");
            Launch l = Launch.on(out);
            status = layer
                    ? l.kernels.layernorm(code, rows, cols, xc.dataAddress(), w, b, a.eps(), out.dataAddress(), 0, 0,
                            l.stream)
                    : l.kernels.rmsnorm(code, rows, cols, xc.dataAddress(), w, a.eps(), out.dataAddress(), 0, l.stream);
            if (status != 0) {
                String ctx = name + "(" + x.describe() + ")";
                throw l.failure(status, ctx);
            }
        }
    }
}
