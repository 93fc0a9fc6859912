package dev.cortado.quant;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeStructs.CtBconvArgs;
import dev.cortado.backend.kernels.NativeStructs.CtBgemmArgs;
import dev.cortado.ops.Launch;
import dev.cortado.ops.Op;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * Binary (1-bit) networks: signs packed 64 per word, XNOR + popcount products and the
 * straight-through estimator that trains them (native/include/cortado/quant_binary.h).
 *
 * <p>A row of k signs is stored as a byte string of {@code 8 * ceil(k / 64)} bytes (uint8): element
 * e is bit {@code e % 8} of byte {@code e / 8}, 1 for +1 and 0 for -1, so the kernels read it as
 * little-endian 64-bit words; the padding bits are written 0 and ignored. The dot product of two
 * rows is {@code k - 2 popcount(a XOR b)}, exact; the products are scaled as in XNOR-Net
 * (Rastegari et al., 2016): {@code alpha[j]} per output channel (the mean |w| of its weights) and
 * optionally {@code beta[i]} per row of activations. {@link BinaryLinear} and {@link BinaryConv2d}
 * are the modules.
 */
public final class Binary {
    private Binary() {
    }

    /** Bytes of one packed row of k signs (whole 64-bit words). */
    public static long rowBytes(long k) {
        return (k + 63) / 64 * 8;
    }

    /** {@code bits [..., 8 ceil(k / 64)]} (uint8) of a float {@code x [..., k]}: 1 where x >= 0. */
    public static final Op<Void> BINARIZE_OP = Op.<Void>declare("binarize")
            .inputs("x")
            .shape((op, a, in) -> {
                Tensor x = in[0];
                if (!x.dtype().isFloatingPoint() || x.dtype().isFloat8() || x.shape().rank() < 1) {
                    throw op.error("input 'x' (" + x.describe() + ") must be a float tensor [..., k] (not fp8)");
                }
                long[] d = x.dims();
                d[d.length - 1] = rowBytes(d[d.length - 1]);
                return Op.one(Shape.of(d), DType.UINT8);
            })
            .kernels((a, in, out) -> {
                Tensor x = in[0];
                if (out[0].numel() == 0) {
                    return;
                }
                long k = x.dims()[x.shape().rank() - 1];
                try (Tensor f = x.to(DType.FLOAT32); Tensor c = f.contiguous()) {
                    Launch l = Launch.on(x);
                    l.check(l.kernels().binarize(c.dataAddress(), k == 0 ? 0 : x.numel() / k, k, k, out[0].dataAddress(),
                            l.stream()), "binarize(x " + x.describe() + ")");
                }
            })
            .register();

    /**
     * {@code y [m, n] = (k - 2 popcount(a[i] XOR b[j])) * alpha[j] * beta[i]} in float32: a bits
     * {@code [m, 8 kw]}, b bits {@code [n, 8 kw]} (uint8, kw = ceil(k / 64)), alpha float32 {@code [n]}
     * and beta float32 {@code [m]} optional (1). The attribute is k, the number of signs per row.
     */
    public static final Op<Long> MATMUL_OP = Op.<Long>declare("binary_matmul")
            .inputs("a", "b", "alpha", "beta").required(2)
            .shape((op, k, in) -> {
                if (k == null || k < 0) {
                    throw op.error("the number of signs per row k = " + k + " must be >= 0");
                }
                long bytes = rowBytes(k);
                bitMatrix(op, "a", in[0], bytes, k);
                bitMatrix(op, "b", in[1], bytes, k);
                long m = in[0].dims()[0];
                long n = in[1].dims()[0];
                vector(op, "alpha", in.length > 2 ? in[2] : null, n);
                vector(op, "beta", in.length > 3 ? in[3] : null, m);
                return Op.one(Shape.of(m, n), DType.FLOAT32);
            })
            .kernels((k, in, out) -> matmulKernel(k, in, out, false))
            .register();

    /** The convolution's attributes: input channels c, strides and zero padding (no dilation). */
    public record Conv(long channels, int strideH, int strideW, int padH, int padW) {
        public Conv {
            if (channels < 1 || strideH < 1 || strideW < 1 || padH < 0 || padW < 0) {
                throw new IllegalArgumentException("Binary.Conv: channels " + channels + ", stride " + strideH + "x" + strideW
                        + ", padding " + padH + "x" + padW + " (channels and strides >= 1, padding >= 0)");
            }
        }
    }

    /**
     * Binary convolution, NHWC, as an implicit GEMM over bit-packed channels: x bits
     * {@code [batch, h, w, 8 cw]}, weight bits {@code [cout, kh, kw, 8 cw]} (uint8, cw = ceil(c / 64)),
     * alpha float32 {@code [cout]} optional; {@code y [batch, oh, ow, cout]} float32 with
     * {@code y = alpha[co] * sum over the taps inside the image of (c - 2 popcount(x XOR w))}; taps
     * in the zero padding contribute 0.
     */
    public static final Op<Conv> CONV2D_OP = Op.<Conv>declare("binary_conv2d")
            .inputs("x", "weight", "alpha").required(2)
            .shape((op, p, in) -> {
                Tensor x = in[0];
                Tensor w = in[1];
                long bytes = rowBytes(p.channels());
                op.requireDType("x", x, DType.UINT8);
                op.requireDType("weight", w, DType.UINT8);
                if (x.shape().rank() != 4 || x.dims()[3] != bytes || w.shape().rank() != 4 || w.dims()[3] != bytes) {
                    throw op.error("x " + x.describe() + " and weight " + w.describe() + " must be [batch, h, w, " + bytes
                            + "] and [cout, kh, kw, " + bytes + "] bit tensors of " + p.channels() + " channels");
                }
                long oh = (x.dims()[1] + 2L * p.padH() - w.dims()[1]) / p.strideH() + 1;
                long ow = (x.dims()[2] + 2L * p.padW() - w.dims()[2]) / p.strideW() + 1;
                if (x.dims()[1] + 2L * p.padH() < w.dims()[1] || x.dims()[2] + 2L * p.padW() < w.dims()[2] || w.dims()[1] < 1
                        || w.dims()[2] < 1) {
                    throw op.error("the kernel " + w.describe() + " does not fit the padded input " + x.describe() + " (" + p + ")");
                }
                vector(op, "alpha", in.length > 2 ? in[2] : null, w.dims()[0]);
                return Op.one(Shape.of(x.dims()[0], oh, ow, w.dims()[0]), DType.FLOAT32);
            })
            .kernels(Binary::convKernel)
            .register();

    /**
     * {@code sign(x)} (+1 for x >= 0, else -1) with the clipped straight-through gradient
     * {@code dx = g} where {@code |x| <= 1}, else 0 (BinaryConnect, XNOR-Net).
     */
    public static final Op<Void> SIGN_STE_OP = Op.<Void>declare("sign_ste")
            .inputs("x")
            .shape((op, a, in) -> {
                op.requireDType("x", in[0], DType.FLOAT32, DType.FLOAT64, DType.FLOAT16, DType.BFLOAT16);
                return Op.one(in[0].shape(), in[0].dtype());
            })
            .kernels((a, in, out) -> {
                Tensor x = in[0];
                if (x.numel() == 0) {
                    return;
                }
                try (Tensor c = x.contiguous()) {
                    Launch l = Launch.on(x);
                    l.check(l.kernels().signSte(c.dataAddress(), out[0].dataAddress(), x.dtype().code(), x.numel(),
                            l.stream()), "sign_ste(x " + x.describe() + ")");
                }
            })
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {Binary.SIGN_STE_BACKWARD_OP.call(null, g[0], sv.input(0))})
            .register();

    /** {@code dx = g} where {@code |x| <= 1}, else 0: the backward of {@link #SIGN_STE_OP}. */
    public static final Op<Void> SIGN_STE_BACKWARD_OP = Op.<Void>declare("sign_ste_backward")
            .inputs("g", "x")
            .shape((op, a, in) -> {
                op.requireDType("x", in[1], DType.FLOAT32, DType.FLOAT64, DType.FLOAT16, DType.BFLOAT16);
                op.requireLike("g", in[0], "x", in[1]);
                return Op.one(in[1].shape(), in[1].dtype());
            })
            .kernels((a, in, out) -> {
                Tensor x = in[1];
                if (x.numel() == 0) {
                    return;
                }
                try (Tensor gc = in[0].contiguous(); Tensor xc = x.contiguous()) {
                    Launch l = Launch.on(x);
                    l.check(l.kernels().signSteBackward(gc.dataAddress(), xc.dataAddress(), out[0].dataAddress(),
                            x.dtype().code(), x.numel(), l.stream()), "sign_ste_backward(x " + x.describe() + ")");
                }
            })
            .register();

    /** BiPer's frequency in the paper's CIFAR-10 setting (the official code's {@code --freq 20}). */
    public static final double BIPER_OMEGA = 20;

    /**
     * BiPer (Vargas et al., CVPR 2024): the square wave {@code sign(sin(omega x))} (+1 where the sine
     * is {@code >= 0}, else -1; NaN for a NaN or infinite x), trained through the sine it replaces: its
     * surrogate gradient is {@code dx = g omega cos(omega x)}. The attribute is the frequency omega
     * (finite, {@code > 0}). Near 0 ({@code |omega x| < pi}) the wave is sign(x).
     */
    public static final Op<Double> BIPER_OP = Op.<Double>declare("biper")
            .inputs("x")
            .shape((op, omega, in) -> {
                omega(op, omega);
                op.requireDType("x", in[0], DType.FLOAT32, DType.FLOAT64, DType.FLOAT16, DType.BFLOAT16);
                return Op.one(in[0].shape(), in[0].dtype());
            })
            .kernels((omega, in, out) -> {
                Tensor x = in[0];
                if (x.numel() == 0) {
                    return;
                }
                try (Tensor c = x.contiguous()) {
                    Launch l = Launch.on(x);
                    l.check(l.kernels().biper(c.dataAddress(), out[0].dataAddress(), x.dtype().code(), x.numel(), omega,
                            l.stream()), "biper(x " + x.describe() + ", omega " + omega + ")");
                }
            })
            .backward(Op.Saves.INPUTS, (omega, sv, g) -> new Tensor[] {Binary.BIPER_BACKWARD_OP.call(omega, g[0], sv.input(0))})
            .register();

    /** {@code dx = g omega cos(omega x)}: the backward of {@link #BIPER_OP}. */
    public static final Op<Double> BIPER_BACKWARD_OP = Op.<Double>declare("biper_backward")
            .inputs("g", "x")
            .shape((op, omega, in) -> {
                omega(op, omega);
                op.requireDType("x", in[1], DType.FLOAT32, DType.FLOAT64, DType.FLOAT16, DType.BFLOAT16);
                op.requireLike("g", in[0], "x", in[1]);
                return Op.one(in[1].shape(), in[1].dtype());
            })
            .kernels((omega, in, out) -> {
                Tensor x = in[1];
                if (x.numel() == 0) {
                    return;
                }
                try (Tensor gc = in[0].contiguous(); Tensor xc = x.contiguous()) {
                    Launch l = Launch.on(x);
                    l.check(l.kernels().biperBackward(gc.dataAddress(), xc.dataAddress(), out[0].dataAddress(),
                            x.dtype().code(), x.numel(), omega, l.stream()), "biper_backward(x " + x.describe() + ", omega "
                            + omega + ")");
                }
            })
            .register();

    private static void omega(Op<?> op, Double omega) {
        if (omega == null || !(omega > 0) || omega.isInfinite()) {
            throw op.error("the frequency omega = " + omega + " must be finite and > 0");
        }
    }

    private static void bitMatrix(Op<?> op, String name, Tensor t, long bytes, long k) {
        op.requireDType(name, t, DType.UINT8);
        if (t.shape().rank() != 2 || t.dims()[1] != bytes) {
            throw op.error("input '" + name + "' (" + t.describe() + ") must be a bit matrix [rows, " + bytes + "] of k = " + k
                    + " signs per row");
        }
    }

    private static void vector(Op<?> op, String name, Tensor t, long n) {
        if (t != null && (t.dtype() != DType.FLOAT32 || t.shape().rank() != 1 || t.numel() != n)) {
            throw op.error("input '" + name + "' (" + t.describe() + ") must be float32[" + n + "]");
        }
    }

    /** Runs the GEMM, or (reference) the native scalar popcnt loop: for tests. */
    static void matmulKernel(Long k, Tensor[] in, Tensor[] out, boolean reference) {
        Tensor y = out[0];
        if (y.numel() == 0) {
            return;
        }
        Tensor alpha0 = in.length > 2 ? in[2] : null;
        Tensor beta0 = in.length > 3 ? in[3] : null;
        try (Tensor a = in[0].contiguous(); Tensor b = in[1].contiguous(); Tensor alpha = alpha0 == null ? null : alpha0.contiguous();
             Tensor beta = beta0 == null ? null : beta0.contiguous()) {
            Launch l = Launch.on(y);
            NativeArgs args = NativeArgs.get();
            long s = args.struct(CtBgemmArgs.SIZE);
            args.putLong(s + CtBgemmArgs.A, a.dataAddress());
            args.putLong(s + CtBgemmArgs.B, b.dataAddress());
            args.putLong(s + CtBgemmArgs.ALPHA, alpha == null ? 0 : alpha.dataAddress());
            args.putLong(s + CtBgemmArgs.BETA, beta == null ? 0 : beta.dataAddress());
            args.putLong(s + CtBgemmArgs.Y, y.dataAddress());
            args.putLong(s + CtBgemmArgs.M, y.dims()[0]);
            args.putLong(s + CtBgemmArgs.N, y.dims()[1]);
            args.putLong(s + CtBgemmArgs.K, k);
            args.putInt(s + CtBgemmArgs.REFERENCE, reference ? 1 : 0);
            l.check(l.kernels().binaryGemm(s, l.stream()), "binary_matmul(a " + in[0].describe() + ", b " + in[1].describe()
                    + ", k " + k + ")");
        }
    }

    private static void convKernel(Conv p, Tensor[] in, Tensor[] out) {
        Tensor y = out[0];
        if (y.numel() == 0) {
            return;
        }
        Tensor alpha0 = in.length > 2 ? in[2] : null;
        try (Tensor x = in[0].contiguous(); Tensor w = in[1].contiguous(); Tensor alpha = alpha0 == null ? null : alpha0.contiguous()) {
            Launch l = Launch.on(y);
            NativeArgs args = NativeArgs.get();
            long s = args.struct(CtBconvArgs.SIZE);
            args.putLong(s + CtBconvArgs.X, x.dataAddress());
            args.putLong(s + CtBconvArgs.W, w.dataAddress());
            args.putLong(s + CtBconvArgs.ALPHA, alpha == null ? 0 : alpha.dataAddress());
            args.putLong(s + CtBconvArgs.Y, y.dataAddress());
            args.putLong(s + CtBconvArgs.BATCH, x.dims()[0]);
            args.putLong(s + CtBconvArgs.H, x.dims()[1]);
            args.putLong(s + CtBconvArgs.W_IN, x.dims()[2]);
            args.putLong(s + CtBconvArgs.C, p.channels());
            args.putLong(s + CtBconvArgs.COUT, w.dims()[0]);
            args.putLong(s + CtBconvArgs.KH, w.dims()[1]);
            args.putLong(s + CtBconvArgs.KW, w.dims()[2]);
            args.putLong(s + CtBconvArgs.STRIDE_H, p.strideH());
            args.putLong(s + CtBconvArgs.STRIDE_W, p.strideW());
            args.putLong(s + CtBconvArgs.PAD_H, p.padH());
            args.putLong(s + CtBconvArgs.PAD_W, p.padW());
            args.putLong(s + CtBconvArgs.OH, y.dims()[1]);
            args.putLong(s + CtBconvArgs.OW, y.dims()[2]);
            l.check(l.kernels().binaryConv2d(s, l.stream()), "binary_conv2d(x " + in[0].describe() + ", weight "
                    + in[1].describe() + ", " + p + ")");
        }
    }

    // ------------------------------------------------------------------ entry points
    /** The packed signs of {@code x [..., k]}. */
    public static Tensor binarize(Tensor x) {
        return BINARIZE_OP.call(null, x);
    }

    /** {@code sign(x)} with the clipped straight-through gradient. */
    public static Tensor signSte(Tensor x) {
        return SIGN_STE_OP.call(null, x);
    }

    /** {@code sign(sin(omega x))} with BiPer's surrogate gradient {@code omega cos(omega x)}. */
    public static Tensor biper(Tensor x, double omega) {
        return BIPER_OP.call(omega, x);
    }

    /** The binary product of packed rows: {@code [m, n]} float32, alpha / beta optional. */
    public static Tensor matmul(Tensor aBits, Tensor bBits, long k, Tensor alpha, Tensor beta) {
        return MATMUL_OP.call(k, aBits, bBits, alpha, beta);
    }

    /** The binary NHWC convolution of packed pixels (see {@link #CONV2D_OP}). */
    public static Tensor conv2d(Tensor xBits, Tensor wBits, Tensor alpha, Conv p) {
        return CONV2D_OP.call(p, xBits, wBits, alpha);
    }
}
