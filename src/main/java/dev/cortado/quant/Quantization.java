package dev.cortado.quant;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeStructs.CtQuantMap;
import dev.cortado.ops.Launch;
import dev.cortado.ops.Op;
import dev.cortado.ops.Reductions;
import dev.cortado.ops.TensorSpec;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The quantization ops (registry declarations with CPU and CUDA kernels, native/include/cortado/quant.h)
 * and their entry points:
 * <ul>
 *   <li>{@code quantize}: {@code q = clamp(rne(x / scale) + zero_point, qmin, qmax)} (float32 math,
 *       round half to even), or {@code q = fp8(x / scale)} (round to nearest even, saturating);</li>
 *   <li>{@code dequantize}: {@code x = (q - zero_point) * scale} in float32;</li>
 *   <li>{@code requantize}: {@code quantize_out(dequantize_in(q))} without the float tensor;</li>
 *   <li>{@code dynamic_quantize}: ONNX DynamicQuantizeLinear, uint8 with the scale and zero point
 *       from the data's range (widened to hold 0);</li>
 *   <li>{@code fake_quantize}: quantization-aware training, {@code (quantize(x) - zero_point) * scale}
 *       in x's dtype, with the straight-through estimator for x and LSQ's gradient for the scale
 *       (quant.h); its backward kernel is {@code fake_quantize_backward}.</li>
 * </ul>
 * Parameters are per tensor, per channel or per group ({@link QuantScheme}). Bad parameters
 * (shape or axis, non-positive or non-finite scales, zero points out of range, group sizes that
 * do not divide the axis, float inputs where quantized ones are expected) throw an
 * {@link IllegalArgumentException} naming the op, the argument, the shapes and dtypes.
 */
public final class Quantization {
    private Quantization() {
    }

    /** Attributes of {@code requantize}: the input's scheme and the output's. */
    public record Requant(QuantScheme in, QuantScheme out) {
    }

    public static final Op<QuantScheme> QUANTIZE_OP = Op.<QuantScheme>declare("quantize")
            .inputs("x", "scale", "zero_point").required(2)
            .shape((op, s, in) -> {
                Tensor x = in[0];
                if (!x.dtype().isFloatingPoint() || x.dtype().isFloat8()) {
                    throw op.error("input 'x' (" + x.describe() + ") must be float32, float64, float16 or bfloat16 "
                            + "(it is quantized already?)");
                }
                checkParams(op, s, x, in[1], opt(in, 2));
                return Op.one(x.shape(), s.storage());
            })
            .kernels(Quantization::quantizeKernel)
            .register();

    public static final Op<QuantScheme> DEQUANTIZE_OP = Op.<QuantScheme>declare("dequantize")
            .inputs("q", "scale", "zero_point").required(2)
            .shape((op, s, in) -> {
                checkStored(op, "q", s, in[0]);
                checkParams(op, s, in[0], in[1], opt(in, 2));
                return Op.one(in[0].shape(), DType.FLOAT32);
            })
            .kernels(Quantization::dequantizeKernel)
            .register();

    public static final Op<Requant> REQUANTIZE_OP = Op.<Requant>declare("requantize")
            .inputs("x", "scale_in", "zero_point_in", "scale_out", "zero_point_out").required(2)
            .shape((op, r, in) -> {
                checkStored(op, "x", r.in(), in[0]);
                checkParams(op, r.in(), in[0], in[1], opt(in, 2));
                checkParams(op, r.out(), in[0], in[3], opt(in, 4));
                return Op.one(in[0].shape(), r.out().storage());
            })
            .kernels(Quantization::requantizeKernel)
            .register();

    public static final Op<Void> DYNAMIC_QUANTIZE_OP = Op.<Void>declare("dynamic_quantize")
            .inputs("x")
            .shape((op, a, in) -> {
                op.requireDType("x", in[0], DType.FLOAT32);
                return new TensorSpec[] {new TensorSpec(in[0].shape(), DType.UINT8),
                    new TensorSpec(Shape.SCALAR, DType.FLOAT32), new TensorSpec(Shape.SCALAR, DType.UINT8)};
            })
            .kernels(Quantization::dynamicKernel)
            .register();

    public static final Op<QuantScheme> FAKE_QUANTIZE_OP = Op.<QuantScheme>declare("fake_quantize")
            .inputs("x", "scale", "zero_point").required(2)
            .shape((op, s, in) -> {
                Tensor x = in[0];
                checkFakeQuant(op, s, x);
                checkParams(op, s, x, in[1], opt(in, 2));
                return Op.one(x.shape(), x.dtype());
            })
            .kernels(Quantization::fakeQuantizeKernel)
            .backward(Op.Saves.INPUTS, Quantization::fakeQuantizeGrad)
            .register();

    /** {dx, per-element scale gradient (float32)} of fake_quantize from the output gradient g. */
    public static final Op<QuantScheme> FAKE_QUANTIZE_BACKWARD_OP = Op.<QuantScheme>declare("fake_quantize_backward")
            .inputs("g", "x", "scale", "zero_point").required(3)
            .shape((op, s, in) -> {
                Tensor g = in[0];
                Tensor x = in[1];
                checkFakeQuant(op, s, x);
                op.requireLike("g", g, "x", x);
                checkParams(op, s, x, in[2], opt(in, 3));
                return new TensorSpec[] {new TensorSpec(x.shape(), x.dtype()), new TensorSpec(x.shape(), DType.FLOAT32)};
            })
            .kernels(Quantization::fakeQuantizeBackwardKernel)
            .register();

    // ------------------------------------------------------------------ entry points
    /** Quantizes {@code x} with {@code params} (which are copied into the result). */
    public static QuantizedTensor quantize(Tensor x, QuantParams params) {
        Tensor q = QUANTIZE_OP.call(params.scheme(), x, params.scale(), params.zeroPoint());
        return wrap(q, params.copy());
    }

    /** The raw op: {@code x} quantized with these parameter tensors (zeroPoint may be null). */
    public static Tensor quantize(Tensor x, Tensor scale, Tensor zeroPoint, QuantScheme scheme) {
        return QUANTIZE_OP.call(scheme, x, scale, zeroPoint);
    }

    /** The real values of {@code q} in float32. */
    public static Tensor dequantize(QuantizedTensor q) {
        QuantParams p = q.params();
        return DEQUANTIZE_OP.call(p.scheme(), q.values(), p.scale(), p.zeroPoint());
    }

    /** The raw op: float32 values of {@code q} stored as {@code scheme} (zeroPoint may be null). */
    public static Tensor dequantize(Tensor q, Tensor scale, Tensor zeroPoint, QuantScheme scheme) {
        return DEQUANTIZE_OP.call(scheme, q, scale, zeroPoint);
    }

    /** {@code q} stored with other parameters ({@code out} is copied into the result). */
    public static QuantizedTensor requantize(QuantizedTensor q, QuantParams out) {
        QuantParams in = q.params();
        Tensor v = REQUANTIZE_OP.call(new Requant(in.scheme(), out.scheme()), q.values(), in.scale(), in.zeroPoint(),
                out.scale(), out.zeroPoint());
        return wrap(v, out.copy());
    }

    /** uint8 per tensor, the scale and zero point from {@code x}'s range (ONNX DynamicQuantizeLinear). */
    public static QuantizedTensor quantizeDynamic(Tensor x) {
        Tensor[] out = DYNAMIC_QUANTIZE_OP.callMulti(null, x);
        try (Tensor scale = out[1]; Tensor zp = out[2]) {
            return wrap(out[0], QuantParams.of(QuantScheme.perTensor(DType.UINT8), scale, zp));
        }
    }

    private static QuantizedTensor wrap(Tensor values, QuantParams params) {
        try {
            return QuantizedTensor.of(values, params);
        } catch (RuntimeException e) {
            values.close();
            params.close();
            throw e;
        }
    }

    // ------------------------------------------------------------------ checks
    /**
     * Fake quantization with {@code scheme} (a differentiable scale: LSQ; zeroPoint may be null):
     * the values x takes after quantizing and dequantizing, in x's dtype, gradients flowing to x
     * inside the grid (straight-through) and to the scale.
     */
    public static Tensor fakeQuantize(Tensor x, Tensor scale, Tensor zeroPoint, QuantScheme scheme) {
        return FAKE_QUANTIZE_OP.call(scheme, x, scale, zeroPoint);
    }

    private static void checkFakeQuant(Op<?> op, QuantScheme s, Tensor x) {
        if (!x.dtype().isFloatingPoint() || x.dtype().isFloat8()) {
            throw op.error("input 'x' (" + x.describe() + ") must be float32, float64, float16 or bfloat16");
        }
        if (s.isFloat8()) {
            throw op.error("fake quantization is on an integer grid; " + s + " is fp8");
        }
    }

    /** Straight-through dx; the scale's LSQ gradient summed over the elements each scale serves. */
    private static Tensor[] fakeQuantizeGrad(QuantScheme s, Op.Saved sv, Tensor[] g) {
        Tensor x = sv.input(0);
        Tensor scale = sv.input(1);
        Tensor zp = sv.input(2);
        Tensor[] r = zp == null ? FAKE_QUANTIZE_BACKWARD_OP.callMulti(s, g[0], x, scale)
                : FAKE_QUANTIZE_BACKWARD_OP.callMulti(s, g[0], x, scale, zp);
        Tensor dx = r[0];
        try (Tensor perElement = r[1]) {
            Tensor ds = sv.needsGradient(1) ? sumPerParameter(s, perElement, scale.shape()) : null;
            if (!sv.needsGradient(0)) {
                dx.close();
                dx = null;
            }
            return new Tensor[] {dx, ds, null};
        }
    }

    /**
     * Sums per-element values over the elements that share each parameter of {@code s}, in float64
     * (the terms of LSQ's scale gradient cancel: a float32 sum of values near 100 that comes to 0.08
     * would keep only three digits), rounded once to float32.
     */
    private static Tensor sumPerParameter(QuantScheme s, Tensor perElementF32, Shape paramShape) {
        try (Tensor perElement = perElementF32.to(DType.FLOAT64); Tensor sum64 = sumGroups(s, perElement)) {
            try (Tensor shaped = sum64.reshape(paramShape.toArray())) {
                return shaped.to(DType.FLOAT32);
            }
        }
    }

    private static Tensor sumGroups(QuantScheme s, Tensor perElement) {
        Shape data = perElement.shape();
        int a = s.axisFor(FAKE_QUANTIZE_OP.name(), data.rank());
        Tensor summed;
        switch (s.granularity()) {
            case PER_TENSOR -> summed = Reductions.sum(perElement);
            case PER_CHANNEL -> {
                int[] others = new int[data.rank() - 1];
                for (int d = 0, i = 0; d < data.rank(); d++) {
                    if (d != a) {
                        others[i++] = d;
                    }
                }
                summed = others.length == 0 ? perElement.copy() : Reductions.sum(perElement, false, others);
            }
            default -> {
                long[] dims = data.toArray();
                long[] split = new long[dims.length + 1];
                for (int d = 0, i = 0; d < dims.length; d++) {
                    if (d == a) {
                        split[i++] = dims[d] / s.groupSize();
                        split[i++] = s.groupSize();
                    } else {
                        split[i++] = dims[d];
                    }
                }
                try (Tensor grouped = perElement.reshape(split)) {
                    summed = Reductions.sum(grouped, false, a + 1);
                }
            }
        }
        return summed;
    }

    private static void checkStored(Op<?> op, String name, QuantScheme s, Tensor q) {
        if (q.dtype() != s.storage()) {
            throw op.error("input '" + name + "' (" + q.describe() + ") is not stored as " + s
                    + (q.dtype().isFloatingPoint() && !q.dtype().isFloat8() ? ": quantize the float tensor first" : ""));
        }
    }

    /** Shapes and dtypes of the parameters against the data (values are checked by the kernels' bodies). */
    private static void checkParams(Op<?> op, QuantScheme s, Tensor data, Tensor scale, Tensor zp) {
        Shape want = s.paramShape(op.name(), data.shape());
        if (scale == null) {
            throw op.error("a scale is required for " + s);
        }
        if (scale.dtype() != DType.FLOAT32) {
            throw op.error("scale " + scale.describe() + " must be float32 (data " + data.describe() + ", " + s + ")");
        }
        boolean fits = want.equals(scale.shape()) || (want.rank() == 0 && scale.numel() == 1);
        if (!fits) {
            throw op.error("scale " + scale.describe() + " does not fit " + s + " for data " + data.describe()
                    + ": expected shape " + want);
        }
        if (zp != null) {
            if (s.isFloat8()) {
                throw op.error(s + " takes no zero point (got " + zp.describe() + ")");
            }
            if (zp.dtype() != DType.INT32 && zp.dtype() != DType.INT8 && zp.dtype() != DType.UINT8) {
                throw op.error("zero point " + zp.describe() + " must be int32, int8 or uint8");
            }
            if (!zp.shape().equals(scale.shape()) && !(want.rank() == 0 && zp.numel() == 1)) {
                throw op.error("zero point " + zp.describe() + " and scale " + scale.describe() + " differ in shape");
            }
        }
    }

    /** Scales positive and finite, zero points in [qmin, qmax]: read on the host (parameters are small). */
    private static void checkValues(Op<?> op, QuantScheme s, Tensor data, Tensor scale, Tensor zp) {
        double[] sv = scale.toDoubleArray();
        for (int i = 0; i < sv.length; i++) {
            if (!(sv[i] > 0) || !Double.isFinite(sv[i])) {
                throw op.error("scale element " + i + " is " + sv[i] + ", not a positive finite number (scale "
                        + scale.describe() + ", data " + data.describe() + ", " + s + ")");
            }
        }
        if (zp != null) {
            double[] zv = zp.toDoubleArray();
            for (int i = 0; i < zv.length; i++) {
                if (zv[i] < s.qmin() || zv[i] > s.qmax()) {
                    throw op.error("zero point element " + i + " is " + (long) zv[i] + ", outside [" + s.qmin() + ", "
                            + s.qmax() + "] (zero point " + zp.describe() + ", data " + data.describe() + ", " + s + ")");
                }
            }
        }
    }

    // ------------------------------------------------------------------ kernels
    private static void quantizeKernel(QuantScheme s, Tensor[] in, Tensor[] out) {
        Tensor x = in[0];
        checkValues(QUANTIZE_OP, s, x, in[1], opt(in, 2));
        Tensor y = out[0];
        if (y.numel() == 0) {
            return;
        }
        List<Tensor> temps = new ArrayList<>();
        try {
            Tensor zp = zeroPoint32(opt(in, 2), temps);
            Tensor target = y;
            if (s.storage() == DType.INT4) {
                target = Tensor.empty(DType.INT8, y.device(), y.shape());
                temps.add(target);
            }
            Launch l = Launch.on(y);
            NativeArgs args = NativeArgs.get();
            long yd = descriptor(args, target);
            long xd = descriptor(args, x);
            long map = map(args, QUANTIZE_OP, s, x.shape(), in[1], zp);
            int st = l.kernels().quantize(yd, xd, map, s.qmin(), s.qmax(), l.stream());
            if (st != 0) {
                throw l.failure(st, "quantize(x " + x.describe() + ", scale " + in[1].describe() + ", " + s + ")");
            }
            if (target != y) {
                l.check(l.kernels().int4Pack(y.numel(), target.dataAddress(), y.dataAddress(), l.stream()),
                        "quantize: packing int4 " + y.describe());
            }
        } finally {
            closeAll(temps);
        }
    }

    private static void dequantizeKernel(QuantScheme s, Tensor[] in, Tensor[] out) {
        checkValues(DEQUANTIZE_OP, s, in[0], in[1], opt(in, 2));
        Tensor y = out[0];
        if (y.numel() == 0) {
            return;
        }
        List<Tensor> temps = new ArrayList<>();
        try {
            Tensor q = unpacked(in[0], temps);
            Tensor zp = zeroPoint32(opt(in, 2), temps);
            Launch l = Launch.on(y);
            NativeArgs args = NativeArgs.get();
            long yd = descriptor(args, y);
            long qd = descriptor(args, q);
            long map = map(args, DEQUANTIZE_OP, s, q.shape(), in[1], zp);
            int st = l.kernels().dequantize(yd, qd, map, l.stream());
            if (st != 0) {
                throw l.failure(st, "dequantize(q " + in[0].describe() + ", scale " + in[1].describe() + ", " + s + ")");
            }
        } finally {
            closeAll(temps);
        }
    }

    private static void requantizeKernel(Requant r, Tensor[] in, Tensor[] out) {
        checkValues(REQUANTIZE_OP, r.in(), in[0], in[1], opt(in, 2));
        checkValues(REQUANTIZE_OP, r.out(), in[0], in[3], opt(in, 4));
        Tensor y = out[0];
        if (y.numel() == 0) {
            return;
        }
        List<Tensor> temps = new ArrayList<>();
        try {
            Tensor x = unpacked(in[0], temps);
            Tensor zin = zeroPoint32(opt(in, 2), temps);
            Tensor zout = zeroPoint32(opt(in, 4), temps);
            Tensor target = y;
            if (r.out().storage() == DType.INT4) {
                target = Tensor.empty(DType.INT8, y.device(), y.shape());
                temps.add(target);
            }
            Launch l = Launch.on(y);
            NativeArgs args = NativeArgs.get();
            long yd = descriptor(args, target);
            long xd = descriptor(args, x);
            long mi = map(args, REQUANTIZE_OP, r.in(), x.shape(), in[1], zin);
            long mo = map(args, REQUANTIZE_OP, r.out(), x.shape(), in[3], zout);
            int st = l.kernels().requantize(yd, xd, mi, mo, r.out().qmin(), r.out().qmax(), l.stream());
            if (st != 0) {
                throw l.failure(st, "requantize(x " + in[0].describe() + ", " + r.in() + " -> " + r.out() + ")");
            }
            if (target != y) {
                l.check(l.kernels().int4Pack(y.numel(), target.dataAddress(), y.dataAddress(), l.stream()),
                        "requantize: packing int4 " + y.describe());
            }
        } finally {
            closeAll(temps);
        }
    }

    private static void dynamicKernel(Void a, Tensor[] in, Tensor[] out) {
        Launch l = Launch.on(out[0]);
        NativeArgs args = NativeArgs.get();
        long yd = descriptor(args, out[0]);
        long xd = descriptor(args, in[0]);
        int st = l.kernels().dynamicQuantize(yd, xd, out[1].dataAddress(), out[2].dataAddress(), l.stream());
        if (st != 0) {
            throw l.failure(st, "dynamic_quantize(x " + in[0].describe() + ")");
        }
    }

    private static void fakeQuantizeKernel(QuantScheme s, Tensor[] in, Tensor[] out) {
        Tensor x = in[0];
        checkValues(FAKE_QUANTIZE_OP, s, x, in[1], opt(in, 2));
        Tensor y = out[0];
        if (y.numel() == 0) {
            return;
        }
        List<Tensor> temps = new ArrayList<>();
        try {
            Tensor zp = zeroPoint32(opt(in, 2), temps);
            Launch l = Launch.on(y);
            NativeArgs args = NativeArgs.get();
            long map = map(args, FAKE_QUANTIZE_OP, s, x.shape(), in[1], zp);
            int st = l.kernels().fakeQuantize(descriptor(args, y), descriptor(args, x), map, s.qmin(), s.qmax(),
                    l.stream());
            if (st != 0) {
                throw l.failure(st, "fake_quantize(x " + x.describe() + ", scale " + in[1].describe() + ", " + s + ")");
            }
        } finally {
            closeAll(temps);
        }
    }

    private static void fakeQuantizeBackwardKernel(QuantScheme s, Tensor[] in, Tensor[] out) {
        Tensor g = in[0];
        Tensor x = in[1];
        if (x.numel() == 0) {
            return;
        }
        List<Tensor> temps = new ArrayList<>();
        try {
            Tensor zp = zeroPoint32(opt(in, 3), temps);
            Launch l = Launch.on(x);
            NativeArgs args = NativeArgs.get();
            long map = map(args, FAKE_QUANTIZE_BACKWARD_OP, s, x.shape(), in[2], zp);
            int st = l.kernels().fakeQuantizeBackward(descriptor(args, out[0]), descriptor(args, out[1]),
                    descriptor(args, g), descriptor(args, x), map, s.qmin(), s.qmax(), l.stream());
            if (st != 0) {
                throw l.failure(st, "fake_quantize_backward(g " + g.describe() + ", x " + x.describe() + ", scale "
                        + in[2].describe() + ", " + s + ")");
            }
        } finally {
            closeAll(temps);
        }
    }

    // ------------------------------------------------------------------ helpers
    /** Optional input {@code i} (null when absent). */
    private static Tensor opt(Tensor[] in, int i) {
        return i < in.length ? in[i] : null;
    }

    private static long descriptor(NativeArgs args, Tensor t) {
        int code = t.dtype() == DType.INT4 ? DType.INT8.code() : t.dtype().code();
        return args.tensor(t.dataAddress(), code, t.dims(), t.strides());
    }

    /** The ct_quant_map of {@code s} over data of shape {@code data} (quant.h). */
    private static long map(NativeArgs args, Op<?> op, QuantScheme s, Shape data, Tensor scale, Tensor zp32) {
        long m = args.struct(CtQuantMap.SIZE);
        args.putLong(m + CtQuantMap.SCALE, scale.dataAddress());
        args.putLong(m + CtQuantMap.ZERO_POINT, zp32 == null ? 0 : zp32.dataAddress());
        long[] strides = s.paramStrides(op.name(), data);
        for (int i = 0; i < strides.length; i++) {
            args.putLong(m + CtQuantMap.STRIDES + (long) i * Long.BYTES, strides[i]);
        }
        args.putLong(m + CtQuantMap.GROUP, s.groupSize());
        args.putInt(m + CtQuantMap.AXIS, s.axisFor(op.name(), data.rank()));
        return m;
    }

    /**
     * The zero points as contiguous int32 (a temporary when converted), or null. Called before
     * {@link NativeArgs#get}: converting runs a copy kernel, which takes the argument scratch.
     */
    private static Tensor zeroPoint32(Tensor zp, List<Tensor> temps) {
        if (zp == null || (zp.dtype() == DType.INT32 && zp.isContiguous())) {
            return zp;
        }
        Tensor t = zp.to(DType.INT32).contiguous();
        temps.add(t);
        return t;
    }

    /** int4 values as int8 (a temporary), others as they are. */
    private static Tensor unpacked(Tensor q, List<Tensor> temps) {
        if (q.dtype() != DType.INT4) {
            return q;
        }
        Tensor t = q.to(DType.INT8);
        temps.add(t);
        return t;
    }

    private static void closeAll(List<Tensor> temps) {
        for (Tensor t : temps) {
            t.close();
        }
    }

    /** The first values of a small tensor, for printing parameters: {@code [0.1, 0.2, ...] (float32[64])}. */
    static String preview(Tensor t) {
        double[] v;
        try (Tensor flat = t.reshape(-1); Tensor head = flat.narrow(0, 0, Math.min(8, flat.numel()))) {
            v = head.toDoubleArray();
        }
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < v.length; i++) {
            b.append(i == 0 ? "" : ", ");
            b.append(t.dtype().isFloatingPoint() ? String.format(java.util.Locale.ROOT, "%.6g", v[i]) : Long.toString((long) v[i]));
        }
        String body = t.numel() == 1 && t.shape().rank() == 0 ? b.toString()
                : "[" + b + (t.numel() > 8 ? ", ..." : "") + "]";
        return t.numel() > 8 ? body + " (" + t.dtype() + Arrays.toString(t.dims()) + ")" : body;
    }
}
