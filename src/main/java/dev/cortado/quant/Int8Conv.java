package dev.cortado.quant;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeStructs.CtQconvArgs;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.Launch;
import dev.cortado.ops.Op;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * The int8 2-d convolution, NHWC: {@code y = epilogue(sum (x - zx)(w - zw))} over each output
 * pixel's patch, with x uint8 {@code [N, H, W, C]}, the weights int8 packed once per group
 * ({@link PackedInt8Conv}), exact int32 sums, stride, padding (before and after), dilation and
 * groups, and the int8 GEMM's fused epilogue ({@link Int8Gemm.Epilogue}: per-channel scale, bias,
 * ReLU; int32, float32, int8 or uint8 output {@code [N, OH, OW, OC]}). On the CPU it is an
 * implicit GEMM on the int8 GEMM's VNNI / AVX2 micro-kernel, depthwise convolutions a direct
 * kernel (native/include/cortado/quant_conv.h).
 */
public final class Int8Conv {
    private Int8Conv() {
    }

    /**
     * The convolution's geometry: kernel {@code kh x kw}, strides, padding before (top, left) and
     * after (bottom, right), dilations, groups, output channels.
     */
    public record Geometry(long kh, long kw, long strideH, long strideW, long padTop, long padLeft, long padBottom,
                           long padRight, long dilationH, long dilationW, long groups, long outChannels) {
        public Geometry {
            if (kh < 1 || kw < 1 || strideH < 1 || strideW < 1 || dilationH < 1 || dilationW < 1 || groups < 1
                    || outChannels < 1 || padTop < 0 || padLeft < 0 || padBottom < 0 || padRight < 0
                    || outChannels % groups != 0) {
                throw new IllegalArgumentException("Int8Conv.Geometry: kernel " + kh + "x" + kw + ", stride " + strideH + "/"
                        + strideW + ", padding " + padTop + "/" + padLeft + "/" + padBottom + "/" + padRight + ", dilation "
                        + dilationH + "/" + dilationW + ", groups " + groups + ", " + outChannels + " output channels: "
                        + "sizes >= 1, padding >= 0, groups dividing the output channels");
            }
        }

        /** Square kernel, one stride, symmetric padding, one dilation. */
        public static Geometry of(long kernel, long stride, long padding, long dilation, long groups, long outChannels) {
            return new Geometry(kernel, kernel, stride, stride, padding, padding, padding, padding, dilation, dilation,
                    groups, outChannels);
        }

        /** Output height for an input height h. */
        public long outHeight(long h) {
            return out(h + padTop + padBottom, kh, dilationH, strideH);
        }

        /** Output width for an input width w. */
        public long outWidth(long w) {
            return out(w + padLeft + padRight, kw, dilationW, strideW);
        }

        private static long out(long padded, long k, long d, long s) {
            long e = padded - d * (k - 1);
            return e < 1 ? 0 : (e - 1) / s + 1;
        }

        @Override
        public String toString() {
            return "kernel " + kh + "x" + kw + ", stride " + strideH + "x" + strideW + ", padding " + padTop + "/" + padLeft
                    + "/" + padBottom + "/" + padRight + ", dilation " + dilationH + "x" + dilationW + ", groups " + groups
                    + ", " + outChannels + " output channels";
        }
    }

    /** The op's attributes: the geometry and the epilogue (zx is the epilogue's a zero point). */
    public record Attrs(Geometry geometry, Int8Gemm.Epilogue epilogue) {
    }

    private static final long MAX_K = 32768;

    /** Bytes of one group's packed weights (the int8 GEMM's layout for B [K, OC / groups]). */
    static long groupBytes(long kh, long kw, long cinPerGroup, long outPerGroup) {
        return Int8Gemm.paddedSize(kh * kw * cinPerGroup, outPerGroup);
    }

    public static final Op<Attrs> CONV_OP = Op.<Attrs>declare("qconv2d")
            .inputs("x", "w_packed", "w_colsum", "w_zero_point", "scale", "bias").required(3)
            .shape((op, at, in) -> {
                Tensor x = in[0];
                Geometry g = at.geometry();
                op.requireDType("x", x, DType.UINT8);
                op.requireDType("w_packed", in[1], DType.INT8);
                op.requireDType("w_colsum", in[2], DType.INT32);
                if (x.shape().rank() != 4) {
                    throw op.error("input 'x' (" + x.describe() + ") must be NHWC [N, H, W, C]");
                }
                long c = x.dims()[3];
                long oc = g.outChannels();
                if (c % g.groups() != 0 || c == 0) {
                    throw op.error("input 'x' (" + x.describe() + ") has " + c + " channels, not a positive multiple of "
                            + g.groups() + " groups");
                }
                long cg = c / g.groups();
                if (g.kh() * g.kw() * cg > MAX_K) {
                    throw op.error("reduction length " + g.kh() * g.kw() * cg + " exceeds " + MAX_K);
                }
                long bytes = g.groups() * groupBytes(g.kh(), g.kw(), cg, oc / g.groups());
                if (in[1].shape().rank() != 1 || in[1].numel() != bytes || in[2].shape().rank() != 1 || in[2].numel() != oc) {
                    throw op.error("packed weights " + in[1].describe() + " with column sums " + in[2].describe()
                            + " do not pack " + oc + " filters of " + g.kh() + "x" + g.kw() + "x" + cg + " in " + g.groups()
                            + " groups (expected INT8[" + bytes + "] and INT32[" + oc + "])");
                }
                vector(op, "w_zero_point", in.length > 3 ? in[3] : null, oc, DType.INT32);
                vector(op, "scale", in.length > 4 ? in[4] : null, oc, DType.FLOAT32);
                vector(op, "bias", in.length > 5 ? in[5] : null, oc, DType.FLOAT32);
                if (at.epilogue().out() != DType.INT32 && (in.length <= 4 || in[4] == null)) {
                    throw op.error("a " + at.epilogue().out() + " output needs the per-channel 'scale'");
                }
                return Op.one(Shape.of(x.dims()[0], g.outHeight(x.dims()[1]), g.outWidth(x.dims()[2]), oc),
                        at.epilogue().out());
            })
            .kernels(Int8Conv::convKernel)
            .register();

    private static void vector(Op<?> op, String name, Tensor t, long n, DType dtype) {
        if (t != null && (t.dtype() != dtype || t.shape().rank() != 1 || t.numel() != n)) {
            throw op.error("input '" + name + "' (" + t.describe() + ") must be " + dtype + "[" + n + "]");
        }
    }

    private static void convKernel(Attrs at, Tensor[] in, Tensor[] out) {
        Tensor y = out[0];
        if (y.numel() == 0) {
            return;
        }
        Geometry g = at.geometry();
        Int8Gemm.Epilogue e = at.epilogue();
        Tensor x = in[0];
        try (Tensor xc = x.isContiguous() ? null : x.contiguous();
             Tensor wp = in[1].contiguous(); Tensor cs = in[2].contiguous();
             Tensor zp = contiguousOrNull(in.length > 3 ? in[3] : null);
             Tensor sc = contiguousOrNull(in.length > 4 ? in[4] : null);
             Tensor bias = contiguousOrNull(in.length > 5 ? in[5] : null)) {
            Tensor xv = xc == null ? x : xc;
            long[] d = x.dims();
            Launch l = Launch.on(y);
            NativeArgs args = NativeArgs.get();
            long s = args.struct(CtQconvArgs.SIZE);
            args.putLong(s + CtQconvArgs.X, xv.dataAddress());
            args.putLong(s + CtQconvArgs.W_PACKED, wp.dataAddress());
            args.putLong(s + CtQconvArgs.W_COLSUM, cs.dataAddress());
            args.putLong(s + CtQconvArgs.W_ZERO_POINT, zp == null ? 0 : zp.dataAddress());
            args.putLong(s + CtQconvArgs.SCALE, sc == null ? 0 : sc.dataAddress());
            args.putLong(s + CtQconvArgs.BIAS, bias == null ? 0 : bias.dataAddress());
            args.putLong(s + CtQconvArgs.Y, y.dataAddress());
            args.putLong(s + CtQconvArgs.N, d[0]);
            args.putLong(s + CtQconvArgs.H, d[1]);
            args.putLong(s + CtQconvArgs.W, d[2]);
            args.putLong(s + CtQconvArgs.C, d[3]);
            args.putLong(s + CtQconvArgs.OC, g.outChannels());
            args.putLong(s + CtQconvArgs.KH, g.kh());
            args.putLong(s + CtQconvArgs.KW, g.kw());
            args.putLong(s + CtQconvArgs.OH, y.dims()[1]);
            args.putLong(s + CtQconvArgs.OW, y.dims()[2]);
            args.putLong(s + CtQconvArgs.STRIDE_H, g.strideH());
            args.putLong(s + CtQconvArgs.STRIDE_W, g.strideW());
            args.putLong(s + CtQconvArgs.PAD_H, g.padTop());
            args.putLong(s + CtQconvArgs.PAD_W, g.padLeft());
            args.putLong(s + CtQconvArgs.DIL_H, g.dilationH());
            args.putLong(s + CtQconvArgs.DIL_W, g.dilationW());
            args.putLong(s + CtQconvArgs.GROUPS, g.groups());
            args.putInt(s + CtQconvArgs.X_ZERO_POINT, e.aZeroPoint());
            args.putInt(s + CtQconvArgs.OUT_DTYPE, e.out().code());
            args.putInt(s + CtQconvArgs.ACTIVATION, e.activation().code());
            args.putInt(s + CtQconvArgs.OUT_ZERO_POINT, e.outZeroPoint());
            l.check(l.kernels().qconv2d(s, l.stream()), "qconv2d(x " + x.describe() + ", " + g + ", " + e + ")");
        }
    }

    private static Tensor contiguousOrNull(Tensor t) {
        return t == null ? null : t.contiguous();
    }

    // ------------------------------------------------------------------ entry points
    /**
     * ONNX ConvInteger: the int32 sums {@code sum (x - xZeroPoint)(w - zw)} of a uint8 NHWC
     * {@code x} and packed weights (their zero points, if packed from a quantized tensor).
     */
    public static Tensor convInteger(Tensor x, int xZeroPoint, PackedInt8Conv w) {
        return run(x, w, w.geometry(), Int8Gemm.Epilogue.int32(xZeroPoint), w.zeroPoint(), null, null);
    }

    /**
     * The float32 convolution {@code activation((x - zx)(w - zw) * sx * sw[o] + bias[o])}
     * of a uint8 per-tensor quantized NHWC {@code x} and quantized packed weights; {@code bias}
     * float32 {@code [OC]} or null. Output {@code [N, OH, OW, OC]}.
     */
    public static Tensor conv2d(QuantizedTensor x, PackedInt8Conv w, Tensor bias, Activation activation) {
        float sx = activationScale(x, w);
        try (Tensor scale = w.channelScale(sx, 1f)) {
            return run(x.values(), w, w.geometry(), new Int8Gemm.Epilogue(zeroPoint(x), DType.FLOAT32, activation, 0),
                    w.zeroPoint(), scale, bias);
        }
    }

    /**
     * The same convolution requantized in the epilogue to {@code out} (uint8 or int8 per tensor):
     * the integer output of a quantized layer, never materialized in float.
     */
    public static QuantizedTensor conv2d(QuantizedTensor x, PackedInt8Conv w, Tensor bias, Activation activation,
                                         QuantParams out) {
        QuantScheme s = out.scheme();
        if (s.granularity() != QuantScheme.Granularity.PER_TENSOR || (s.storage() != DType.INT8 && s.storage() != DType.UINT8)) {
            throw new IllegalArgumentException("Int8Conv.conv2d: the output parameters must be int8 or uint8 per tensor, not " + s);
        }
        float sx = activationScale(x, w);
        float so = (float) out.scale().item();
        int zo = out.zeroPoint() == null ? 0 : (int) out.zeroPoint().item();
        try (Tensor scale = w.channelScale(sx, so); Tensor biasScaled = bias == null ? null : bias.div(so)) {
            Tensor v = run(x.values(), w, w.geometry(), new Int8Gemm.Epilogue(zeroPoint(x), s.storage(), activation, zo),
                    w.zeroPoint(), scale, biasScaled);
            try {
                return QuantizedTensor.of(v, out.copy());
            } catch (RuntimeException ex) {
                v.close();
                throw ex;
            }
        }
    }

    private static float activationScale(QuantizedTensor x, PackedInt8Conv w) {
        QuantScheme s = x.scheme();
        if (x.dtype() != DType.UINT8 || s.granularity() != QuantScheme.Granularity.PER_TENSOR) {
            throw new IllegalArgumentException("Int8Conv.conv2d: the activations " + x.values().describe()
                    + " must be uint8 quantized per tensor, not " + s);
        }
        if (w.scale() == null) {
            throw new IllegalArgumentException("Int8Conv.conv2d: " + w + " has no scales: pack it from a QuantizedTensor");
        }
        return (float) x.params().scale().item();
    }

    private static int zeroPoint(QuantizedTensor x) {
        return x.params().zeroPoint() == null ? 0 : (int) x.params().zeroPoint().item();
    }

    private static Tensor run(Tensor x, PackedInt8Conv w, Geometry g, Int8Gemm.Epilogue e, Tensor zp, Tensor scale,
                              Tensor bias) {
        if (x.shape().rank() != 4 || x.dims()[3] != w.inChannels()) {
            throw new IllegalArgumentException("Int8Conv: x " + x.describe() + " is not NHWC with the " + w.inChannels()
                    + " channels of " + w);
        }
        if (!x.device().equals(w.device())) {
            throw new IllegalArgumentException("Int8Conv: x " + x.describe() + " and " + w + " are on different devices");
        }
        return CONV_OP.call(new Attrs(g, e), x, w.packed(), w.colsum(), zp, scale, bias);
    }
}
