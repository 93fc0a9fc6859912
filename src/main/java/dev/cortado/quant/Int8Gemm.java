package dev.cortado.quant;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeStructs.CtQgemmArgs;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.Launch;
import dev.cortado.ops.Op;
import dev.cortado.ops.TensorSpec;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * The int8 GEMM: {@code C = epilogue(sum_k (A - za)(B - zb))} with A uint8 {@code [m, k]}, B an
 * int8 {@code [k, n]} matrix packed once ({@link PackedInt8Matrix}), exact int32 accumulation
 * (AVX-512 VNNI {@code vpdpbusd} when the CPU has it, else AVX2; {@code dp4a} on CUDA), the
 * zero-point compensation, and a fused epilogue: per-column scale, bias and an activation (ReLU,
 * the erf GELU, SiLU), with an int32, float32, bfloat16, int8 or uint8 output
 * (native/include/cortado/quant.h). {@code k} is at most 32768.
 */
public final class Int8Gemm {
    private Int8Gemm() {
    }

    /**
     * The epilogue: {@code za} the zero point of A; {@code out} INT32 (the compensated sums, no
     * activation), FLOAT32 ({@code activation(fma(acc, scale[j], bias[j]))}, in float32), BFLOAT16
     * (that value rounded to nearest even), INT8 or UINT8 (that value rounded half to even plus
     * {@code outZeroPoint}, saturated; the output scale is folded into scale and bias, so an
     * integer output takes only NONE or RELU). GELU and SiLU run in the vectorized float32 forms on the
     * CPU (within ~6 ulp of the exact functions).
     */
    public record Epilogue(int aZeroPoint, DType out, Activation activation, int outZeroPoint) {
        public Epilogue {
            if (aZeroPoint < 0 || aZeroPoint > 255) {
                throw new IllegalArgumentException("Int8Gemm.Epilogue: a zero point " + aZeroPoint + " is not a uint8 value");
            }
            if (out != DType.INT32 && out != DType.FLOAT32 && out != DType.BFLOAT16 && out != DType.INT8 && out != DType.UINT8) {
                throw new IllegalArgumentException("Int8Gemm.Epilogue: output " + out
                        + "; expected int32, float32, bfloat16, int8 or uint8");
            }
            java.util.Objects.requireNonNull(activation, "Int8Gemm.Epilogue: activation");
            if (out == DType.INT32 && activation != Activation.NONE) {
                throw new IllegalArgumentException("Int8Gemm.Epilogue: an int32 output (the raw sums) takes no activation, got "
                        + activation);
            }
            if ((out == DType.INT8 || out == DType.UINT8) && activation != Activation.NONE && activation != Activation.RELU) {
                throw new IllegalArgumentException("Int8Gemm.Epilogue: an " + out + " output takes no " + activation
                        + " (its scale, folded into the epilogue's scale and bias, does not commute with it): write float32 "
                        + "or bfloat16");
            }
            int lo = out == DType.INT8 ? -128 : 0;
            int hi = out == DType.INT8 ? 127 : out == DType.UINT8 ? 255 : 0;
            if (outZeroPoint < lo || outZeroPoint > hi) {
                throw new IllegalArgumentException("Int8Gemm.Epilogue: output zero point " + outZeroPoint + " is outside ["
                        + lo + ", " + hi + "] for " + out);
            }
        }

        /** The raw compensated int32 sums (ONNX MatMulInteger). */
        public static Epilogue int32(int aZeroPoint) {
            return new Epilogue(aZeroPoint, DType.INT32, Activation.NONE, 0);
        }
    }

    private static final long MAX_K = 32768;

    static long paddedSize(long k, long n) {
        return (n + 31) / 32 * 32 * ((k + 3) / 4 * 4);
    }

    public static final Op<Void> PACK_OP = Op.<Void>declare("qgemm_pack")
            .inputs("b")
            .shape((op, a, in) -> {
                Tensor b = in[0];
                op.requireDType("b", b, DType.INT8);
                if (b.shape().rank() != 2 || b.dims()[0] > MAX_K) {
                    throw op.error("input 'b' (" + b.describe() + ") must be a matrix [k, n] with k <= " + MAX_K);
                }
                long k = b.dims()[0];
                long n = b.dims()[1];
                return new TensorSpec[] {new TensorSpec(Shape.of(paddedSize(k, n)), DType.INT8),
                    new TensorSpec(Shape.of(n), DType.INT32)};
            })
            .kernels((a, in, out) -> {
                Tensor b = in[0];
                if (out[1].numel() == 0) {
                    return;
                }
                Launch l = Launch.on(b);
                long[] st = b.strides();
                int status = l.kernels().qgemmPackB(b.dataAddress(), b.dims()[0], b.dims()[1], st[0], st[1],
                        out[0].dataAddress(), out[1].dataAddress(), l.stream());
                l.check(status, "qgemm_pack(b " + b.describe() + ")");
            })
            .register();

    public static final Op<Epilogue> GEMM_OP = Op.<Epilogue>declare("qgemm")
            .inputs("a", "b_packed", "b_colsum", "b_zero_point", "scale", "bias").required(3)
            .shape((op, e, in) -> {
                Tensor a = in[0];
                op.requireDType("a", a, DType.UINT8);
                op.requireDType("b_packed", in[1], DType.INT8);
                op.requireDType("b_colsum", in[2], DType.INT32);
                if (a.shape().rank() != 2 || a.dims()[1] > MAX_K) {
                    throw op.error("input 'a' (" + a.describe() + ") must be a matrix [m, k] with k <= " + MAX_K);
                }
                long k = a.dims()[1];
                long n = in[2].numel();
                if (in[2].shape().rank() != 1 || in[1].shape().rank() != 1 || in[1].numel() != paddedSize(k, n)) {
                    throw op.error("packed b " + in[1].describe() + " with column sums " + in[2].describe()
                            + " is not a packed [" + k + ", " + n + "] matrix for a " + a.describe()
                            + " (expected " + paddedSize(k, n) + " packed bytes)");
                }
                vector(op, "b_zero_point", in.length > 3 ? in[3] : null, n, DType.INT32);
                vector(op, "scale", in.length > 4 ? in[4] : null, n, DType.FLOAT32);
                vector(op, "bias", in.length > 5 ? in[5] : null, n, DType.FLOAT32);
                if (e.out() != DType.INT32 && (in.length <= 4 || in[4] == null)) {
                    throw op.error("a " + e.out() + " output needs the per-column 'scale'");
                }
                return Op.one(Shape.of(a.dims()[0], n), e.out());
            })
            .kernels(Int8Gemm::gemmKernel)
            .register();

    private static void vector(Op<?> op, String name, Tensor t, long n, DType dtype) {
        if (t != null && (t.dtype() != dtype || t.shape().rank() != 1 || t.numel() != n)) {
            throw op.error("input '" + name + "' (" + t.describe() + ") must be " + dtype + "[" + n + "]");
        }
    }

    private static void gemmKernel(Epilogue e, Tensor[] in, Tensor[] out) {
        Tensor c = out[0];
        if (c.numel() == 0) {
            return;
        }
        Tensor a = in[0];
        Tensor[] opt = new Tensor[3];
        for (int i = 0; i < 3; i++) {
            Tensor t = in.length > 3 + i ? in[3 + i] : null;
            opt[i] = t;
        }
        boolean rowMajor = a.strides()[1] == 1 || a.dims()[1] <= 1;
        try (Tensor ac = rowMajor ? null : a.contiguous();
             Tensor zp = contiguousOrNull(opt[0]); Tensor sc = contiguousOrNull(opt[1]); Tensor bias = contiguousOrNull(opt[2])) {
            Tensor av = ac == null ? a : ac;
            Launch l = Launch.on(c);
            NativeArgs args = NativeArgs.get();
            long s = args.struct(CtQgemmArgs.SIZE);
            args.putLong(s + CtQgemmArgs.A, av.dataAddress());
            args.putLong(s + CtQgemmArgs.B_PACKED, in[1].dataAddress());
            args.putLong(s + CtQgemmArgs.B_COLSUM, in[2].dataAddress());
            args.putLong(s + CtQgemmArgs.B_ZERO_POINT, zp == null ? 0 : zp.dataAddress());
            args.putLong(s + CtQgemmArgs.SCALE, sc == null ? 0 : sc.dataAddress());
            args.putLong(s + CtQgemmArgs.BIAS, bias == null ? 0 : bias.dataAddress());
            args.putLong(s + CtQgemmArgs.C, c.dataAddress());
            args.putLong(s + CtQgemmArgs.M, c.dims()[0]);
            args.putLong(s + CtQgemmArgs.N, c.dims()[1]);
            args.putLong(s + CtQgemmArgs.K, a.dims()[1]);
            args.putLong(s + CtQgemmArgs.LDA, Math.max(av.strides()[0], a.dims()[1]));
            args.putLong(s + CtQgemmArgs.LDC, c.dims()[1]);
            args.putInt(s + CtQgemmArgs.A_ZERO_POINT, e.aZeroPoint());
            args.putInt(s + CtQgemmArgs.OUT_DTYPE, e.out().code());
            args.putInt(s + CtQgemmArgs.ACTIVATION, e.activation().code());
            args.putInt(s + CtQgemmArgs.OUT_ZERO_POINT, e.outZeroPoint());
            l.check(l.kernels().qgemm(s, l.stream()), "qgemm(a " + a.describe() + ", b_packed " + in[1].describe() + ", " + e + ")");
        }
    }

    /** A contiguous view or copy (the caller closes it), or null. */
    private static Tensor contiguousOrNull(Tensor t) {
        return t == null ? null : t.contiguous();
    }

    // ------------------------------------------------------------------ entry points
    /**
     * ONNX MatMulInteger: {@code sum_k (a - aZeroPoint)(b - zb)} in int32, with {@code a} uint8
     * {@code [..., k]} and {@code b}'s zero points (if it was packed from a quantized tensor).
     */
    public static Tensor matmulInteger(Tensor a, int aZeroPoint, PackedInt8Matrix b) {
        return run(a, b, Epilogue.int32(aZeroPoint), b.zeroPoint(), null, null);
    }

    /**
     * ONNX MatMulInteger and the dequantization the dynamically quantized graphs write after it
     * (Cast to float, Mul by the product of the activation's and the weight's scales, Add a bias),
     * in the GEMM's float32 epilogue: {@code sum_k (a - aZeroPoint)(b - zb) * scale[j] + bias[j]},
     * {@code a} uint8 {@code [..., k]}; {@code scale} float32 with one element (per-tensor weights)
     * or {@code n} along its last axis (per-column weights, any leading sizes 1); {@code bias}
     * float32 {@code [n]} or null.
     */
    public static Tensor matmulIntegerScaled(Tensor a, int aZeroPoint, PackedInt8Matrix b, Tensor scale, Tensor bias) {
        return matmulIntegerScaled(a, aZeroPoint, b, scale, bias, Activation.NONE);
    }

    /**
     * {@link #matmulIntegerScaled(Tensor, int, PackedInt8Matrix, Tensor, Tensor)} followed by an
     * activation in the same epilogue (e.g. the erf GELU the dynamically quantized transformers
     * write after their first feed-forward matmul).
     */
    public static Tensor matmulIntegerScaled(Tensor a, int aZeroPoint, PackedInt8Matrix b, Tensor scale, Tensor bias,
                                             Activation activation) {
        if (!isColumnScale(scale, b.n()) || !scale.device().equals(a.device())) {
            throw new IllegalArgumentException("Int8Gemm.matmulIntegerScaled: scale " + scale.describe()
                    + " must be float32 on " + a.device() + " with one element or " + b.n() + " along its last axis (b "
                    + b + ")");
        }
        Tensor epilogueScale;
        if (scale.numel() == 1 && b.n() != 1) {
            float[] s = new float[Math.toIntExact(b.n())];
            java.util.Arrays.fill(s, (float) scale.item());
            epilogueScale = Tensor.of(s, a.device(), b.n());
        } else {
            try (Tensor flat = scale.reshape(b.n())) {
                epilogueScale = flat.contiguous(); // a handle of its own
            }
        }
        try (epilogueScale) {
            return run(a, b, new Epilogue(aZeroPoint, DType.FLOAT32, activation, 0), b.zeroPoint(), epilogueScale, bias);
        }
    }

    /** Whether {@code scale} is a float32 per-tensor ({@code 1} element) or per-column ({@code [1.., n]}) scale. */
    public static boolean isColumnScale(Tensor scale, long n) {
        return scale.dtype() == DType.FLOAT32
                && (scale.numel() == 1 || scale.numel() == n && scale.size(scale.rank() - 1) == n);
    }

    /**
     * The float32 product of a uint8 per-tensor quantized {@code a [..., k]} and a quantized packed
     * {@code b}: {@code activation((a - za)(b - zb) * sa * sb[j] + bias[j])}; {@code bias} float32
     * {@code [n]} or null.
     */
    public static Tensor matmul(QuantizedTensor a, PackedInt8Matrix b, Tensor bias, Activation activation) {
        return matmul(a, b, bias, activation, DType.FLOAT32);
    }

    /**
     * The same product in a float output: FLOAT32, or BFLOAT16 (the float32 value rounded to nearest
     * even in the epilogue: half the bytes for the next bfloat16 layer).
     */
    public static Tensor matmul(QuantizedTensor a, PackedInt8Matrix b, Tensor bias, Activation activation, DType out) {
        if (out != DType.FLOAT32 && out != DType.BFLOAT16) {
            throw new IllegalArgumentException("Int8Gemm.matmul: a float output is float32 or bfloat16, not " + out
                    + " (int8 outputs take QuantParams)");
        }
        float sa = activationScale(a, b);
        try (Tensor scale = columnScale(b, sa, 1f)) {
            return run(a.values(), b, new Epilogue(activationZeroPoint(a), out, activation, 0), b.zeroPoint(), scale, bias);
        }
    }

    /**
     * The same product requantized to {@code out} (int8 or uint8 per tensor) in the epilogue: the
     * int8 output of a quantized layer, never materialized in float.
     */
    public static QuantizedTensor matmul(QuantizedTensor a, PackedInt8Matrix b, Tensor bias, Activation activation,
                                         QuantParams out) {
        QuantScheme s = out.scheme();
        if (s.granularity() != QuantScheme.Granularity.PER_TENSOR || (s.storage() != DType.INT8 && s.storage() != DType.UINT8)) {
            throw new IllegalArgumentException("Int8Gemm.matmul: the output parameters must be int8 or uint8 per tensor, not " + s);
        }
        float sa = activationScale(a, b);
        float so = (float) out.scale().item();
        int zo = out.zeroPoint() == null ? 0 : (int) out.zeroPoint().item();
        try (Tensor scale = columnScale(b, sa, so); Tensor biasScaled = bias == null ? null : scaled(bias, so)) {
            Tensor v = run(a.values(), b, new Epilogue(activationZeroPoint(a), s.storage(), activation, zo), b.zeroPoint(), scale,
                    biasScaled);
            try {
                return QuantizedTensor.of(v, out.copy());
            } catch (RuntimeException ex) {
                v.close();
                throw ex;
            }
        }
    }

    private static float activationScale(QuantizedTensor a, PackedInt8Matrix b) {
        QuantScheme s = a.scheme();
        if (a.dtype() != DType.UINT8 || s.granularity() != QuantScheme.Granularity.PER_TENSOR) {
            throw new IllegalArgumentException("Int8Gemm.matmul: the activations " + a.values().describe()
                    + " must be uint8 quantized per tensor, not " + s);
        }
        if (b.scale() == null) {
            throw new IllegalArgumentException("Int8Gemm.matmul: " + b + " has no scales: pack it from a QuantizedTensor");
        }
        return (float) a.params().scale().item();
    }

    private static int activationZeroPoint(QuantizedTensor a) {
        return a.params().zeroPoint() == null ? 0 : (int) a.params().zeroPoint().item();
    }

    /** float32 [n]: sa * sb[j] / so (float32 arithmetic), on b's device. */
    private static Tensor columnScale(PackedInt8Matrix b, float sa, float so) {
        float[] sb = b.scale().toFloatArray();
        float[] out = new float[sb.length];
        for (int j = 0; j < sb.length; j++) {
            out[j] = sa * sb[j] / so;
        }
        return Tensor.of(out, b.device(), out.length);
    }

    private static Tensor scaled(Tensor bias, float so) {
        float[] v = bias.toFloatArray();
        for (int j = 0; j < v.length; j++) {
            v[j] = v[j] / so;
        }
        return Tensor.of(v, bias.device(), v.length);
    }

    /** Flattens a's leading dims, runs the op, restores them. */
    private static Tensor run(Tensor a, PackedInt8Matrix b, Epilogue e, Tensor zp, Tensor scale, Tensor bias) {
        if (a.shape().rank() < 2 || a.dims()[a.shape().rank() - 1] != b.k()) {
            throw new IllegalArgumentException("Int8Gemm: a " + a.describe() + " does not end in k = " + b.k() + " of " + b);
        }
        if (!a.device().equals(b.device())) {
            throw new IllegalArgumentException("Int8Gemm: a " + a.describe() + " and " + b + " are on different devices");
        }
        long[] d = a.dims();
        long m = a.numel() / Math.max(1, b.k());
        if (b.k() == 0) {
            m = 1;
            for (int i = 0; i < d.length - 1; i++) {
                m *= d[i];
            }
        }
        try (Tensor a2 = d.length == 2 ? null : a.reshape(m, b.k())) {
            Tensor c = GEMM_OP.call(e, a2 == null ? a : a2, b.packed(), b.colsum(), zp, scale, bias);
            if (d.length == 2) {
                return c;
            }
            long[] od = d.clone();
            od[od.length - 1] = b.n();
            try (c) {
                return c.reshape(od);
            }
        }
    }
}
