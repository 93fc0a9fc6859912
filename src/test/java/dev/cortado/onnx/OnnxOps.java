package dev.cortado.onnx;

import dev.cortado.onnx.OnnxNodeRunner.Node;
import dev.cortado.onnx.OnnxNodeRunner.OpHandler;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The ONNX op table of the conformance runner: op_type -> handler on the Cortado API.
 *
 * <p>Adding an op: write a handler {@code static Tensor[] myOp(Node n)} (inputs through
 * {@link Node#input}/{@link Node#required}, attributes through {@code attr*}, opset-dependent
 * forms through {@link Node#opset}) and add one line {@code register("MyOp", OnnxOps::myOp);} to
 * the static block. Handlers may create temporaries freely: the runner runs the graph inside a
 * {@link dev.cortado.tensor.Scope} that frees everything but the graph outputs.
 */
public final class OnnxOps {
    private OnnxOps() {
    }

    private static final Map<String, OpHandler> HANDLERS = new LinkedHashMap<>();

    static {
        register("Add", n -> one(Elementwise.add(n.required(0), n.required(1))));
        register("Sub", n -> one(Elementwise.sub(n.required(0), n.required(1))));
        register("Mul", n -> one(Elementwise.mul(n.required(0), n.required(1))));
        register("Div", OnnxOps::div);
        register("Relu", n -> one(Elementwise.relu(n.required(0))));
        register("Sigmoid", n -> one(Elementwise.sigmoid(n.required(0))));
        register("Tanh", n -> one(Elementwise.tanh(n.required(0))));
        register("Gelu", OnnxOps::gelu);
        register("Softmax", n -> softmax(n, false));
        register("LogSoftmax", n -> softmax(n, true));
        register("LayerNormalization", OnnxOps::layerNormalization);
        register("RMSNormalization", OnnxOps::rmsNormalization);
        register("ReduceSum", n -> reduce(n, false, 13));
        register("ReduceMean", n -> reduce(n, true, 18));
        register("MatMul", n -> one(LinearAlgebra.matmul(n.required(0), n.required(1))));
        register("Gemm", OnnxOps::gemm);
        register("Gather", n -> one(Indexing.gather(n.required(0), n.required(1), n.attrIntAsInt("axis", 0))));
        register("Concat", OnnxOps::concat);
        register("Reshape", OnnxOps::reshape);
        register("Transpose", OnnxOps::transpose);
        register("Constant", OnnxOps::constant);
    }

    /** Registers (or replaces) the handler of {@code opType} (default domain). */
    public static void register(String opType, OpHandler handler) {
        HANDLERS.put(opType, handler);
    }

    /** The handler of {@code opType}, or null. */
    public static OpHandler handler(String opType) {
        return HANDLERS.get(opType);
    }

    public static Set<String> supportedOps() {
        return Collections.unmodifiableSet(HANDLERS.keySet());
    }

    // ------------------------------------------------------------------ helpers
    static Tensor[] one(Tensor t) {
        return new Tensor[] {t};
    }

    private static int axis(Node n, long axis, int rank) {
        if (axis < -rank || axis >= rank) {
            throw n.error("axis " + axis + " is out of range for rank " + rank);
        }
        return (int) (axis < 0 ? axis + rank : axis);
    }

    private static long prod(long[] dims, int from, int to) {
        long p = 1;
        for (int i = from; i < to; i++) {
            p *= dims[i];
        }
        return p;
    }

    private static int[] range(int from, int to) {
        int[] r = new int[to - from];
        for (int i = 0; i < r.length; i++) {
            r[i] = from + i;
        }
        return r;
    }

    /** ONNX stash_type (an element type code) as a Cortado dtype. */
    private static DType stashType(Node n) {
        return OnnxTensors.dtypeOf(n.attrIntAsInt("stash_type", OnnxTensors.FLOAT));
    }

    // ------------------------------------------------------------------ handlers
    /**
     * Div. Floating point: Cortado's div. Integers: ONNX divides with truncation toward zero and
     * keeps the integer type, while Cortado's div is true division giving float32 (inexact above
     * 2^24). So both operands go to float64 (exact for int8/uint8/int32, and int64 up to 2^53),
     * are divided there, and the quotient is cast back: Cortado's float -> int conversion
     * truncates toward zero. For |a| < 2^53 the rounded float64 quotient never crosses an integer,
     * so the result is the exact truncated quotient. (Division by zero is undefined in ONNX.)
     */
    static Tensor[] div(Node n) {
        Tensor a = n.required(0);
        Tensor b = n.required(1);
        if (a.dtype().isFloatingPoint() || b.dtype().isFloatingPoint()) {
            return one(Elementwise.div(a, b));
        }
        DType type = DType.promote(a.dtype(), b.dtype());
        Tensor q = Elementwise.div(a.to(DType.FLOAT64), b.to(DType.FLOAT64));
        return one(q.to(type));
    }

    static Tensor[] gelu(Node n) {
        String approximate = n.attrString("approximate", "none");
        return switch (approximate) {
            case "none" -> one(Elementwise.gelu(n.required(0)));
            case "tanh" -> one(Elementwise.geluTanh(n.required(0)));
            default -> throw n.error("unknown approximate='" + approximate + "'");
        };
    }

    /**
     * Softmax / LogSoftmax. Opset >= 13: along {@code axis} (default -1). Before 13: the input
     * is coerced to 2-D [prod(dims[:axis]), prod(dims[axis:])] (axis default 1) and normalized
     * along the second dimension, then reshaped back.
     */
    static Tensor[] softmax(Node n, boolean log) {
        Tensor x = n.required(0);
        if (n.opset() >= 13) {
            int axis = n.attrIntAsInt("axis", -1);
            return one(log ? Normalization.logSoftmax(x, axis) : Normalization.softmax(x, axis));
        }
        long[] dims = x.dims();
        int rank = dims.length;
        int axis = rank == 0 ? 0 : axis(n, n.attrInt("axis", 1), rank);
        Tensor x2 = x.reshape(prod(dims, 0, axis), prod(dims, axis, rank));
        Tensor y = log ? Normalization.logSoftmax(x2, 1) : Normalization.softmax(x2, 1);
        return one(y.reshape(dims));
    }

    /** Whether {@code p} can go to Cortado's fused norm as weight/bias: normalized shape and x's dtype. */
    private static boolean fusable(Tensor p, long[] normalized, DType type) {
        return p == null || (Arrays.equals(p.dims(), normalized) && p.dtype() == type);
    }

    /**
     * LayerNormalization (opset 17): normalize over dims [axis, rank) with epsilon, computing in
     * stash_type (default float32), then Y = normalized * Scale + B (Scale and B broadcast to the
     * normalized shape). Optional outputs Mean and InvStdDev (shape of X with the normalized dims
     * set to 1, in stash_type) come from Cortado's mean and population variance.
     */
    static Tensor[] layerNormalization(Node n) {
        Tensor x = n.required(0);
        Tensor scale = n.input(1);
        Tensor bias = n.input(2);
        int rank = x.rank();
        int axis = axis(n, n.attrInt("axis", -1), rank);
        double eps = n.attrFloat("epsilon", 1e-5);
        DType stash = stashType(n);
        long[] dims = x.dims();
        long[] normalized = Arrays.copyOfRange(dims, axis, rank);
        int k = rank - axis;
        Tensor xs = x.to(stash);
        Tensor y;
        if (fusable(scale, normalized, stash) && fusable(bias, normalized, stash)) {
            y = Normalization.layerNorm(xs, scale, bias, k, eps).to(x.dtype());
        } else {
            y = Normalization.layerNorm(xs, null, null, k, eps).to(x.dtype());
            if (scale != null) {
                y = Elementwise.mul(y, scale);
            }
            if (bias != null) {
                y = Elementwise.add(y, bias);
            }
        }
        Tensor[] out = new Tensor[3];
        out[0] = y;
        int[] axes = range(axis, rank);
        if (n.wantsOutput(1)) {
            out[1] = Reductions.mean(xs, true, axes);
        }
        if (n.wantsOutput(2)) {
            Tensor var = Reductions.var(xs, 0, true, axes);
            out[2] = Elementwise.rsqrt(Elementwise.add(var, eps));
        }
        return out;
    }

    /**
     * RMSNormalization (opset 23): Y = X / sqrt(mean(X^2 over [axis, rank)) + epsilon) * scale,
     * computed in stash_type, scale broadcast to the normalized shape.
     */
    static Tensor[] rmsNormalization(Node n) {
        Tensor x = n.required(0);
        Tensor scale = n.required(1);
        int rank = x.rank();
        int axis = axis(n, n.attrInt("axis", -1), rank);
        double eps = n.attrFloat("epsilon", 1e-5);
        DType stash = stashType(n);
        long[] normalized = Arrays.copyOfRange(x.dims(), axis, rank);
        Tensor xs = x.to(stash);
        if (fusable(scale, normalized, stash)) {
            return one(Normalization.rmsNorm(xs, scale, rank - axis, eps).to(x.dtype()));
        }
        Tensor y = Normalization.rmsNorm(xs, null, rank - axis, eps).to(x.dtype());
        return one(Elementwise.mul(y, scale));
    }

    /**
     * ReduceSum / ReduceMean. Axes come from the second input from {@code axesInputOpset} on
     * (ReduceSum 13, ReduceMean 18), before that from the {@code axes} attribute. No axes reduce
     * everything unless noop_with_empty_axes, which makes the op an identity. The result keeps
     * the input dtype (Cortado sums integers into int64 and takes no integer mean: those go
     * through int64 / float64 and are cast back).
     */
    static Tensor[] reduce(Node n, boolean mean, int axesInputOpset) {
        Tensor x = n.required(0);
        long[] axes;
        if (n.opset() >= axesInputOpset) {
            Tensor a = n.input(1);
            axes = a == null ? null : a.toLongArray();
        } else {
            axes = n.attrInts("axes");
        }
        boolean keepdims = n.attrInt("keepdims", 1) != 0;
        boolean noop = n.attrInt("noop_with_empty_axes", 0) != 0;
        int rank = x.rank();
        int[] ax;
        if (axes == null || axes.length == 0) {
            if (noop) {
                return one(x.contiguous());
            }
            ax = range(0, rank);
        } else {
            ax = new int[axes.length];
            for (int i = 0; i < axes.length; i++) {
                ax[i] = axis(n, axes[i], rank);
            }
        }
        if (rank == 0) {
            return one(x.contiguous());
        }
        Tensor r;
        if (mean) {
            Tensor src = x.dtype().isFloatingPoint() ? x : x.to(DType.FLOAT64);
            r = Reductions.mean(src, keepdims, ax);
        } else {
            r = Reductions.sum(x, keepdims, ax);
        }
        return one(r.dtype() == x.dtype() ? r : r.to(x.dtype()));
    }

    static Tensor[] gemm(Node n) {
        return one(LinearAlgebra.gemm(n.required(0), n.required(1), n.input(2), n.attrFloat("alpha", 1.0),
                n.attrFloat("beta", 1.0), n.attrInt("transA", 0) != 0, n.attrInt("transB", 0) != 0));
    }

    static Tensor[] concat(Node n) {
        if (!n.has("axis")) {
            throw n.error("attribute 'axis' is required");
        }
        List<Tensor> inputs = new ArrayList<>();
        for (int i = 0; i < n.inputCount(); i++) {
            if (n.input(i) != null) {
                inputs.add(n.input(i));
            }
        }
        return one(Indexing.concat(n.attrIntAsInt("axis", 0), inputs.toArray(new Tensor[0])));
    }

    /**
     * Reshape: target shape from the second input (opset >= 5) or the {@code shape} attribute; a
     * 0 copies the input's dimension at that index unless allowzero=1 (then it is a real 0), and
     * one -1 is inferred.
     */
    static Tensor[] reshape(Node n) {
        Tensor x = n.required(0);
        long[] shape = n.opset() >= 5 ? n.required(1).toLongArray() : n.attrInts("shape");
        if (shape == null) {
            throw n.error("no target shape");
        }
        boolean allowzero = n.attrInt("allowzero", 0) != 0;
        long[] dims = x.dims();
        long[] target = shape.clone();
        for (int i = 0; i < target.length; i++) {
            if (target[i] == 0 && !allowzero) {
                if (i >= dims.length) {
                    throw n.error("shape " + Arrays.toString(shape) + " copies dimension " + i + " of " + x.describe());
                }
                target[i] = dims[i];
            }
        }
        return one(x.reshape(target));
    }

    /** Transpose: perm, default reversed dimensions. */
    static Tensor[] transpose(Node n) {
        Tensor x = n.required(0);
        long[] perm = n.attrInts("perm");
        int rank = x.rank();
        int[] order = new int[rank];
        for (int i = 0; i < rank; i++) {
            order[i] = perm == null ? rank - 1 - i : Math.toIntExact(perm[i]);
        }
        if (perm != null && perm.length != rank) {
            throw n.error("perm " + Arrays.toString(perm) + " does not match rank " + rank);
        }
        return one(x.permute(order));
    }

    /** Constant: value (tensor), value_float(s), value_int(s). Strings and sparse values are not supported. */
    static Tensor[] constant(Node n) {
        Device device = Device.defaultDevice();
        TensorProto t = n.attrTensor("value");
        if (t != null) {
            return one(OnnxTensors.toTensor(t, device));
        }
        if (n.has("value_float")) {
            return one(Tensor.scalar(n.attrFloat("value_float", 0), DType.FLOAT32, device));
        }
        if (n.has("value_int")) {
            return one(Tensor.scalar(n.attrInt("value_int", 0), DType.INT64, device));
        }
        if (n.has("value_floats")) {
            float[] f = n.attrFloats("value_floats");
            try (Tensor host = Tensor.of(f, f.length)) {
                return one(host.to(device));
            }
        }
        if (n.has("value_ints")) {
            long[] l = n.attrInts("value_ints");
            try (Tensor host = Tensor.of(l, l.length)) {
                return one(host.to(device));
            }
        }
        throw new UnsupportedOperationException(n.describe() + ": only tensor, float(s) and int(s) values are supported");
    }
}
