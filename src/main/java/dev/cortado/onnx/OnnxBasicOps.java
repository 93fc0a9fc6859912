package dev.cortado.onnx;

import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;
import java.util.function.BinaryOperator;

/**
 * Handlers of the ONNX elementwise, comparison, cast, reduction and loss ops, written on the
 * engine's ops (registered in {@link OnnxOps}'s table). ONNX keeps the input dtype where Cortado
 * promotes (integer division, integer means): those handlers say how they convert back.
 */
final class OnnxBasicOps {
    private OnnxBasicOps() {
    }

    static Tensor[] one(Tensor t) {
        return new Tensor[] {t};
    }

    /** Sum / Max / Min / Mean of any number of inputs, with broadcasting. */
    static Tensor[] variadic(OnnxNode n, BinaryOperator<Tensor> op, boolean mean) {
        Tensor acc = null;
        int count = 0;
        for (int i = 0; i < n.inputCount(); i++) {
            Tensor t = n.input(i);
            if (t == null) {
                continue;
            }
            acc = acc == null ? t : op.apply(acc, t);
            count++;
        }
        if (acc == null) {
            throw n.error("needs at least one input");
        }
        return one(mean ? Elementwise.div(acc, count).to(acc.dtype()) : acc.contiguous());
    }

    /** Pow: the result has the base's dtype (ONNX), the exponent may be of another type. */
    static Tensor[] pow(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor y = OnnxOps.legacyBroadcast(n);
        if (x.dtype().isFloatingPoint()) {
            return one(Elementwise.pow(x, y.dtype() == x.dtype() ? y : y.to(x.dtype())));
        }
        Tensor r = Elementwise.pow(x.to(DType.FLOAT64), y.to(DType.FLOAT64));
        return one(r.to(x.dtype()));
    }

    /**
     * Mod. fmod=1: the C fmod (sign of the dividend), fmod=0: the sign of the divisor (integers).
     * Computed as a - trunc(a / b) * b in float64 (exact for the integer types up to 2^53), with
     * the divisor-sign fix-up for fmod=0.
     */
    static Tensor[] mod(OnnxNode n) {
        Tensor a = n.required(0);
        Tensor b = n.required(1);
        DType type = a.dtype();
        Tensor a64 = a.to(DType.FLOAT64);
        Tensor b64 = b.to(DType.FLOAT64);
        Tensor q = Elementwise.div(a64, b64).to(DType.INT64).to(DType.FLOAT64); // trunc toward zero
        Tensor r = Elementwise.sub(a64, Elementwise.mul(q, b64));
        if (n.attrInt("fmod", 0) == 0) {
            // r != 0 and sign(r) != sign(b): r += b
            Tensor fix = Elementwise.logicalAnd(Elementwise.ne(r, 0),
                    Elementwise.ne(Elementwise.lt(r, 0), Elementwise.lt(b64, 0)));
            r = Elementwise.where(fix, Elementwise.add(r, b64), r);
        }
        return one(r.to(type));
    }

    /** Cast to the ONNX type in attribute {@code to}. */
    static Tensor[] cast(OnnxNode n) {
        if (!n.has("to")) {
            throw n.error("attribute 'to' is required");
        }
        return one(n.required(0).to(OnnxTensors.dtypeOf(n.attrIntAsInt("to", 0))));
    }

    /** CastLike: cast input 0 to input 1's dtype. */
    static Tensor[] castLike(OnnxNode n) {
        return one(n.required(0).to(n.required(1).dtype()));
    }

    /** Clip: bounds from attributes (opset &lt; 11) or the optional inputs 1 and 2. */
    static Tensor[] clip(OnnxNode n) {
        Tensor x = n.required(0);
        if (n.opset() < 11) {
            return one(Elementwise.clamp(x, n.attrFloat("min", Double.NEGATIVE_INFINITY),
                    n.attrFloat("max", Double.POSITIVE_INFINITY)));
        }
        Tensor y = x;
        if (n.input(1) != null) {
            y = Elementwise.maximum(y, n.input(1));
        }
        if (n.input(2) != null) {
            y = Elementwise.minimum(y, n.input(2));
        }
        return one(y.contiguous());
    }

    static Tensor[] leakyRelu(OnnxNode n) {
        Tensor x = n.required(0);
        double alpha = n.attrFloat("alpha", 0.01);
        return one(Elementwise.where(Elementwise.ge(x, 0), x, Elementwise.mul(x, alpha)));
    }

    static Tensor[] elu(OnnxNode n) {
        Tensor x = n.required(0);
        double alpha = n.attrFloat("alpha", 1.0);
        return one(Elementwise.where(Elementwise.gt(x, 0), x, Elementwise.mul(Elementwise.sub(Elementwise.exp(x), 1), alpha)));
    }

    static Tensor[] selu(OnnxNode n) {
        Tensor x = n.required(0);
        double alpha = n.attrFloat("alpha", 1.67326319217681884765625);
        double gamma = n.attrFloat("gamma", 1.05070102214813232421875);
        Tensor neg = Elementwise.mul(Elementwise.sub(Elementwise.exp(x), 1), alpha);
        return one(Elementwise.mul(Elementwise.where(Elementwise.gt(x, 0), x, neg), gamma));
    }

    static Tensor[] hardSigmoid(OnnxNode n) {
        Tensor x = n.required(0);
        return one(Elementwise.clamp(Elementwise.affine(x, n.attrFloat("alpha", 0.2), n.attrFloat("beta", 0.5)), 0, 1));
    }

    static Tensor[] softsign(OnnxNode n) {
        Tensor x = n.required(0);
        return one(Elementwise.div(x, Elementwise.add(Elementwise.abs(x), 1)));
    }

    /** Dropout at inference: the identity, and an all-true mask when asked for. */
    static Tensor[] dropout(OnnxNode n) {
        Tensor x = n.required(0);
        boolean training = n.input(2) != null && n.input(2).item() != 0;
        if (training && n.input(1) != null && n.input(1).item() != 0) {
            throw n.error("training_mode=true with a ratio > 0 is not supported (inference only)");
        }
        Tensor[] out = new Tensor[2];
        out[0] = x;
        if (n.wantsOutput(1)) {
            out[1] = Tensor.full(1, DType.BOOL, x.device(), x.dims());
        }
        return out;
    }

    // ------------------------------------------------------------------ reductions

    /** The axes of a reduction: an input from {@code axesInputOpset}, else the attribute; null for none. */
    static int[] reduceAxes(OnnxNode n, Tensor x, int axesInputOpset) {
        long[] axes;
        if (n.opset() >= axesInputOpset) {
            Tensor a = n.input(1);
            axes = a == null ? null : a.toLongArray();
        } else {
            axes = n.attrInts("axes");
        }
        if (axes == null || axes.length == 0) {
            return null;
        }
        int[] ax = new int[axes.length];
        for (int i = 0; i < axes.length; i++) {
            ax[i] = OnnxOps.axis(n, axes[i], x.rank());
        }
        return ax;
    }

    /** The reductions beyond ReduceSum/ReduceMean: max, min, prod, sum of squares, L1, L2, log-sum(-exp). */
    static Tensor[] reduce(OnnxNode n, String kind) {
        Tensor x = n.required(0);
        int[] ax = reduceAxes(n, x, 18);
        boolean keepdims = n.attrInt("keepdims", 1) != 0;
        if (ax == null) {
            if (n.attrInt("noop_with_empty_axes", 0) != 0) {
                return one(x.contiguous());
            }
            ax = OnnxOps.range(0, x.rank());
        }
        if (x.rank() == 0) {
            return one(x.contiguous());
        }
        boolean empty = x.numel() == 0;
        Tensor r = switch (kind) {
            case "max" -> empty ? emptyReduce(x, ax, keepdims, minValue(x.dtype())) : Reductions.max(x, keepdims, ax);
            case "min" -> empty ? emptyReduce(x, ax, keepdims, maxValue(x.dtype())) : Reductions.min(x, keepdims, ax);
            case "prod" -> Reductions.prod(x, keepdims, ax);
            case "sumsquare" -> Reductions.sum(Elementwise.mul(x, x), keepdims, ax);
            case "l1" -> Reductions.sum(Elementwise.abs(x), keepdims, ax);
            case "l2" -> Elementwise.sqrt(Reductions.sum(Elementwise.mul(x, x).to(wide(x)), keepdims, ax));
            case "logsum" -> Elementwise.log(Reductions.sum(x, keepdims, ax));
            case "logsumexp" -> logSumExp(x, ax, keepdims);
            default -> throw new IllegalArgumentException(kind);
        };
        return one(r.dtype() == x.dtype() ? r : r.to(x.dtype()));
    }

    private static DType wide(Tensor x) {
        return x.dtype().isFloatingPoint() ? x.dtype() : DType.FLOAT64;
    }

    private static Tensor logSumExp(Tensor x, int[] ax, boolean keepdims) {
        Tensor xf = x.to(wide(x));
        Tensor m = Reductions.max(xf, true, ax);
        Tensor safe = Elementwise.where(Elementwise.eq(m, Double.NEGATIVE_INFINITY), Tensor.scalar(0, m.dtype(), m.device()), m);
        Tensor s = Elementwise.add(Elementwise.log(Reductions.sum(Elementwise.exp(Elementwise.sub(xf, safe)), true, ax)), safe);
        if (!keepdims) {
            long[] dims = s.dims();
            long[] kept = new long[dims.length - ax.length];
            int k = 0;
            for (int i = 0; i < dims.length; i++) {
                final int d = i;
                if (Arrays.stream(ax).noneMatch(a -> a == d)) {
                    kept[k++] = dims[i];
                }
            }
            s = s.reshape(kept);
        }
        return s;
    }

    private static double minValue(DType t) {
        return switch (t) {
            case INT8 -> Byte.MIN_VALUE;
            case UINT8, BOOL -> 0;
            case INT32 -> Integer.MIN_VALUE;
            case INT64 -> Long.MIN_VALUE;
            default -> Double.NEGATIVE_INFINITY;
        };
    }

    private static double maxValue(DType t) {
        return switch (t) {
            case INT8 -> Byte.MAX_VALUE;
            case UINT8 -> 255;
            case BOOL -> 1;
            case INT32 -> Integer.MAX_VALUE;
            case INT64 -> Long.MAX_VALUE;
            default -> Double.POSITIVE_INFINITY;
        };
    }

    /** A reduction over an empty extent: its identity, in the reduced shape. */
    private static Tensor emptyReduce(Tensor x, int[] ax, boolean keepdims, double identity) {
        long[] dims = x.dims();
        long[] out = new long[dims.length];
        int k = 0;
        for (int i = 0; i < dims.length; i++) {
            final int d = i;
            boolean reduced = Arrays.stream(ax).anyMatch(a -> a == d);
            if (reduced && keepdims) {
                out[k++] = 1;
            } else if (!reduced) {
                out[k++] = dims[i];
            }
        }
        return Tensor.full(identity, x.dtype(), x.device(), Arrays.copyOf(out, k));
    }

    /** ArgMax / ArgMin along {@code axis} (keepdims, select_last_index). */
    static Tensor[] argExtreme(OnnxNode n, boolean max) {
        Tensor x = n.required(0);
        int axis = OnnxOps.axis(n, n.attrInt("axis", 0), x.rank());
        boolean keepdims = n.attrInt("keepdims", 1) != 0;
        if (n.attrInt("select_last_index", 0) != 0) {
            // the last extreme = size - 1 - the first extreme of the reversed axis
            long size = x.size(axis);
            Tensor rev = OnnxShapeOps.reverse(x, axis);
            Tensor first = max ? Reductions.argmax(rev, axis, keepdims) : Reductions.argmin(rev, axis, keepdims);
            return one(Elementwise.sub(Tensor.scalar(size - 1, DType.INT64, x.device()), first).to(DType.INT64));
        }
        return one(max ? Reductions.argmax(x, axis, keepdims) : Reductions.argmin(x, axis, keepdims));
    }

    // ------------------------------------------------------------------ losses

    /**
     * NegativeLogLikelihoodLoss: input [N, C, d...] (log-probabilities), target [N, d...], optional
     * weight [C]. loss[n, d] = -input[n, target[n, d], d] * w[target[n, d]], 0 where target equals
     * ignore_index; reduction none, sum, or mean (divided by the summed weights of the counted
     * elements). The class pick is a one-hot product (target == class), so an ignored or
     * out-of-range target picks nothing.
     */
    static Tensor[] nll(OnnxNode n) {
        return one(nllLoss(n, n.required(0), n.required(1), n.input(2)));
    }

    static Tensor nllLoss(OnnxNode n, Tensor input, Tensor target, Tensor weight) {
        if (input.rank() < 2 || target.rank() != input.rank() - 1) {
            throw n.error("input " + input.describe() + " must be [N, C, ...] and target [N, ...], got " + target.describe());
        }
        long c = input.size(1);
        long[] classShape = new long[input.rank()];
        Arrays.fill(classShape, 1);
        classShape[1] = c;
        Tensor classes = Tensor.arange(0, c, 1, DType.INT64, input.device()).reshape(classShape);
        Tensor t = target.to(DType.INT64).unsqueeze(1);
        Tensor onehot = Elementwise.eq(classes, t).to(input.dtype()); // [N, C, d...]
        Tensor picked = Reductions.sum(Elementwise.mul(input, onehot), false, 1); // [N, d...]
        Tensor w;
        if (weight != null) {
            w = Reductions.sum(Elementwise.mul(weight.reshape(classShape).to(input.dtype()), onehot), false, 1);
        } else {
            w = Reductions.sum(onehot, false, 1); // 1 for an in-range target
        }
        if (n.has("ignore_index")) {
            Tensor keep = Elementwise.ne(target.to(DType.INT64), n.attrInt("ignore_index", 0)).to(input.dtype());
            w = Elementwise.mul(w, keep);
        }
        Tensor loss = Elementwise.neg(Elementwise.mul(picked, w));
        String reduction = n.attrString("reduction", "mean");
        return switch (reduction) {
            case "none" -> loss;
            case "sum" -> Reductions.sum(loss);
            case "mean" -> Elementwise.div(Reductions.sum(loss), Reductions.sum(w)).to(input.dtype());
            default -> throw n.error("unknown reduction '" + reduction + "'");
        };
    }

    /** SoftmaxCrossEntropyLoss: NLL of log_softmax(scores, axis 1); the optional output 1 is the log-probabilities. */
    static Tensor[] softmaxCrossEntropy(OnnxNode n) {
        Tensor scores = n.required(0);
        Tensor logProb = Normalization.logSoftmax(scores, 1);
        Tensor[] out = new Tensor[2];
        out[0] = nllLoss(n, logProb, n.required(1), n.input(2));
        out[1] = logProb;
        return out;
    }
    // ------------------------------------------------------------------ composed ops

    /** PRelu: x where x &gt;= 0, else slope * x (opset &lt; 7: a [C] slope applies per channel). */
    static Tensor[] prelu(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor slope = n.required(1);
        if (n.opset() < 7 && slope.rank() == 1 && x.rank() > 2 && slope.size(0) == x.size(1) && slope.size(0) > 1) {
            long[] d = new long[x.rank() - 1];
            Arrays.fill(d, 1);
            d[0] = slope.size(0);
            slope = slope.reshape(d);
        }
        return one(Elementwise.where(Elementwise.ge(x, 0), x, Elementwise.mul(x, slope)));
    }

    /**
     * Erf from the engine's exact gelu: gelu(z) = z/2 (1 + erf(z / sqrt 2)), so erf(y) =
     * 2 gelu(y sqrt 2) / (y sqrt 2) - 1, computed in float64 (0 at y = 0).
     */
    static Tensor[] erf(OnnxNode n) {
        Tensor x = n.required(0);
        Tensor z = Elementwise.mul(x.to(DType.FLOAT64), Math.sqrt(2));
        Tensor ratio = Elementwise.div(Elementwise.gelu(z), z);
        Tensor e = Elementwise.sub(Elementwise.mul(ratio, 2), 1);
        Tensor zero = Tensor.scalar(0, DType.FLOAT64, x.device());
        return one(Elementwise.where(Elementwise.eq(z, 0), zero, e).to(x.dtype()));
    }

    /**
     * Round half to even, in float64: t = trunc(x) (through int64), then away from t when the
     * fraction is above one half, or exactly one half and t is odd. |x| &gt;= 2^52 is already an
     * integer and is kept.
     */
    static Tensor roundHalfEven(Tensor x) {
        Tensor x64 = x.to(DType.FLOAT64);
        Tensor big = Elementwise.ge(Elementwise.abs(x64), 0x1p52);
        Tensor small = Elementwise.where(big, Tensor.scalar(0, DType.FLOAT64, x.device()), x64);
        Tensor t = small.to(DType.INT64).to(DType.FLOAT64);
        Tensor frac = Elementwise.abs(Elementwise.sub(small, t));
        Tensor sign = Elementwise.where(Elementwise.lt(small, 0), Tensor.scalar(-1, DType.FLOAT64, x.device()),
                Tensor.scalar(1, DType.FLOAT64, x.device()));
        Tensor half = Elementwise.mul(t, 0.5);
        Tensor odd = Elementwise.ne(half.to(DType.INT64).to(DType.FLOAT64), half);
        Tensor away = Elementwise.logicalOr(Elementwise.gt(frac, 0.5),
                Elementwise.logicalAnd(Elementwise.eq(frac, 0.5), odd));
        Tensor r = Elementwise.add(t, Elementwise.where(away, sign, Tensor.scalar(0, DType.FLOAT64, x.device())));
        return Elementwise.where(big, x64, r).to(x.dtype());
    }

    /**
     * LRN: y = x / (bias + alpha / size * sum of x^2 over the channel window)^beta, the window
     * [c - floor((size-1)/2), c + ceil((size-1)/2)] (zero outside the channels).
     */
    static Tensor[] lrn(OnnxNode n) {
        Tensor x = n.required(0);
        long size = n.attrInt("size", 0);
        if (size <= 0) {
            throw n.error("attribute 'size' is required and positive");
        }
        double alpha = n.attrFloat("alpha", 1e-4);
        double beta = n.attrFloat("beta", 0.75);
        double bias = n.attrFloat("bias", 1.0);
        long c = x.size(1);
        long before = (size - 1) / 2;
        long after = size - 1 - before;
        Tensor sq = Elementwise.mul(x, x);
        long[] padShape = x.dims();
        padShape[1] = before;
        long[] padShape2 = x.dims();
        padShape2[1] = after;
        Tensor padded = dev.cortado.ops.Indexing.concat(1, Tensor.zeros(x.dtype(), x.device(), padShape), sq,
                Tensor.zeros(x.dtype(), x.device(), padShape2));
        Tensor sum = null;
        for (long k = 0; k < size; k++) {
            Tensor part = padded.narrow(1, k, c);
            sum = sum == null ? part : Elementwise.add(sum, part);
        }
        Tensor denom = Elementwise.pow(Elementwise.affine(sum, alpha / size, bias), beta);
        return one(Elementwise.div(x, denom));
    }

    /** InstanceNormalization: per (n, c), normalize over the spatial dims; then scale[c], B[c]. */
    static Tensor[] instanceNorm(OnnxNode n) {
        Tensor x = n.required(0);
        double eps = n.attrFloat("epsilon", 1e-5);
        int[] spatial = OnnxOps.range(2, x.rank());
        Tensor mean = Reductions.mean(x, true, spatial);
        Tensor var = Reductions.var(x, 0, true, spatial);
        Tensor norm = Elementwise.div(Elementwise.sub(x, mean), Elementwise.sqrt(Elementwise.add(var, eps)));
        long[] cs = new long[x.rank()];
        Arrays.fill(cs, 1);
        cs[1] = x.size(1);
        return one(Elementwise.add(Elementwise.mul(norm, n.required(1).reshape(cs)), n.required(2).reshape(cs)));
    }

    /** t - zero point in float64; a per-channel zero point [M] applies along dimension 0. */
    private static Tensor centered(Tensor t, Tensor zp) {
        Tensor t64 = t.to(DType.FLOAT64);
        if (zp == null) {
            return t64;
        }
        Tensor z = zp.to(DType.FLOAT64);
        if (z.numel() > 1) {
            long[] d = new long[t.rank()];
            Arrays.fill(d, 1);
            d[0] = z.numel();
            z = z.reshape(d);
        } else {
            z = z.reshape();
        }
        return Elementwise.sub(t64, z);
    }

    /** ConvInteger: int32 conv of (x - x_zero_point) and (w - w_zero_point), exact in float64. */
    static Tensor[] convInteger(OnnxNode n) {
        Tensor x = centered(n.required(0), n.input(2));
        Tensor w = centered(n.required(1), n.input(3));
        return one(OnnxOps.conv(n, x, w, null).to(DType.INT32));
    }

    /**
     * QLinearConv: the integer conv (+ int32 bias) scaled by x_scale * w_scale[m] / y_scale,
     * rounded half to even, plus y_zero_point, saturated to y's type.
     */
    static Tensor[] qLinearConv(OnnxNode n) {
        Tensor x = centered(n.required(0), n.required(2));
        Tensor w = centered(n.required(3), n.input(5));
        Tensor acc = OnnxOps.conv(n, x, w, null);
        long[] cs = new long[acc.rank()];
        Arrays.fill(cs, 1);
        cs[1] = acc.size(1);
        if (n.input(8) != null) {
            acc = Elementwise.add(acc, n.input(8).to(DType.FLOAT64).reshape(cs));
        }
        Tensor ws = n.required(4).to(DType.FLOAT64);
        ws = ws.numel() > 1 ? ws.reshape(cs) : ws.reshape();
        Tensor scale = Elementwise.div(Elementwise.mul(ws, n.required(1).to(DType.FLOAT64).reshape()),
                n.required(6).to(DType.FLOAT64).reshape());
        Tensor yzp = n.input(7);
        DType type = yzp == null ? DType.UINT8 : yzp.dtype();
        Tensor q = roundHalfEven(Elementwise.mul(acc, scale));
        if (yzp != null) {
            q = Elementwise.add(q, yzp.to(DType.FLOAT64).reshape());
        }
        double lo = type == DType.INT8 ? -128 : 0;
        double hi = type == DType.INT8 ? 127 : 255;
        return one(Elementwise.clamp(q, lo, hi).to(type));
    }
}
