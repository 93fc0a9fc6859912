package dev.cortado.quant;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.backend.kernels.NativeStructs.CtWqArgs;
import dev.cortado.ops.Launch;
import dev.cortado.ops.Op;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * Weight-only quantized matrix products, the decode path of a language model:
 * {@code y = x W^T + bias} with float32 or bfloat16 activations {@code x [m, k]} and weights
 * {@code W [n, k]} stored in 4 bits (signed or unsigned int4, two per byte) or 8 bits (fp8 E4M3 /
 * E5M2) with float32 scales per group of {@code g} consecutive k (g a multiple of 32 dividing k;
 * per channel is g = k) and, for int4, optional integer zero points. The weights are dequantized
 * in registers inside the kernel (AVX-512 or AVX2, chosen at run time; on CUDA a warp-per-channel
 * GEMV for {@code m <= 4} and bfloat16 tensor-core tiles above) and never materialized; the GEMV (m = 1)
 * reads each packed byte once (native/include/cortado/quant_weight.h).
 * {@link PackedWeights} holds a packed matrix; {@link WeightOnlyLinear} is the module.
 */
public final class WeightOnly {
    private WeightOnly() {
    }

    /** The storage formats of the weights. */
    public enum Format {
        /** Signed int4, codes in [-8, 7], two per byte. */
        INT4(NativeCodes.WQ_S4, DType.INT8, -8, 7),
        /** Unsigned int4, codes in [0, 15], two per byte. */
        UINT4(NativeCodes.WQ_U4, DType.UINT8, 0, 15),
        /** fp8 E4M3 (OCP), one per byte, no zero point. */
        FLOAT8_E4M3(NativeCodes.WQ_E4M3, DType.FLOAT8_E4M3, 0, 0),
        /** fp8 E5M2 (OCP), one per byte, no zero point. */
        FLOAT8_E5M2(NativeCodes.WQ_E5M2, DType.FLOAT8_E5M2, 0, 0);

        private final int code;
        private final DType codes;
        private final int qmin;
        private final int qmax;

        Format(int code, DType codes, int qmin, int qmax) {
            this.code = code;
            this.codes = codes;
            this.qmin = qmin;
            this.qmax = qmax;
        }

        /** The dtype of the unpacked codes that {@link #PACK_OP} takes. */
        public DType codes() {
            return codes;
        }

        public boolean isInt4() {
            return this == INT4 || this == UINT4;
        }

        /** Smallest integer code (int4 only). */
        public int qmin() {
            return qmin;
        }

        /** Largest integer code (int4 only). */
        public int qmax() {
            return qmax;
        }

        /** Packed bytes of an [n, k] matrix. */
        public long packedBytes(long n, long k) {
            return isInt4() ? n * k / 2 : n * k;
        }
    }

    /** The attributes of {@link #MATMUL_OP}: the weight format and the group size along k. */
    public record Spec(Format format, int group) {
        public Spec {
            if (format == null) {
                throw new IllegalArgumentException("WeightOnly.Spec: format is null");
            }
            if (group < 32 || group % 32 != 0) {
                throw new IllegalArgumentException("WeightOnly.Spec: group size " + group + " is not a positive multiple of 32");
            }
        }
    }

    /**
     * Packs the codes {@code q [n, k]} (int8 in [-8, 7] for INT4, uint8 in [0, 15] for UINT4, the
     * fp8 dtype for fp8; any strides; k a multiple of 32) into the kernel's layout: uint8
     * {@code [n * k / 2]} (int4) or {@code [n * k]} (fp8).
     */
    public static final Op<Format> PACK_OP = Op.<Format>declare("wq_pack")
            .inputs("q")
            .shape((op, f, in) -> {
                Tensor q = in[0];
                op.requireDType("q", q, f.codes());
                if (q.shape().rank() != 2 || q.dims()[1] % 32 != 0) {
                    throw op.error("input 'q' (" + q.describe() + ") must be a matrix [n, k] with k a multiple of 32");
                }
                return Op.one(Shape.of(f.packedBytes(q.dims()[0], q.dims()[1])), DType.UINT8);
            })
            .kernels((f, in, out) -> {
                Tensor q = in[0];
                if (q.numel() == 0) {
                    return;
                }
                Launch l = Launch.on(q);
                long[] st = q.strides();
                l.check(l.kernels().wqPack(q.dataAddress(), q.dtype().code(), q.dims()[0], q.dims()[1], st[0], st[1],
                        f.code, out[0].dataAddress(), l.stream()), "wq_pack(q " + q.describe() + ", " + f + ")");
            })
            .register();

    /**
     * {@code y [m, n] = x [m, k] W^T + bias} with W packed by {@link #PACK_OP}: inputs x (float32 or
     * bfloat16, stride 1 along k), w_packed (uint8), scale (float32 [n, k / g], finite and > 0),
     * zero_point (int32 [n, k / g] in the int4 range, int4 only, optional), bias (float32 [n],
     * optional). y has x's dtype.
     */
    public static final Op<Spec> MATMUL_OP = Op.<Spec>declare("wq_matmul")
            .inputs("x", "w_packed", "scale", "zero_point", "bias").required(3)
            .shape((op, s, in) -> {
                Tensor x = in[0];
                op.requireDType("x", x, DType.FLOAT32, DType.BFLOAT16);
                op.requireDType("w_packed", in[1], DType.UINT8);
                op.requireDType("scale", in[2], DType.FLOAT32);
                if (x.shape().rank() != 2) {
                    throw op.error("input 'x' (" + x.describe() + ") must be a matrix [m, k]");
                }
                long k = x.dims()[1];
                if (k % s.group() != 0) {
                    throw op.error("group size " + s.group() + " does not divide k = " + k + " of x " + x.describe());
                }
                Tensor scale = in[2];
                if (scale.shape().rank() != 2 || scale.dims()[1] != k / s.group()) {
                    throw op.error("input 'scale' (" + scale.describe() + ") must be [n, " + (k / s.group()) + "] (k = " + k
                            + " in groups of " + s.group() + ")");
                }
                long n = scale.dims()[0];
                if (in[1].shape().rank() != 1 || in[1].numel() != s.format().packedBytes(n, k)) {
                    throw op.error("input 'w_packed' (" + in[1].describe() + ") is not a packed " + s.format() + " [" + n + ", "
                            + k + "] matrix (" + s.format().packedBytes(n, k) + " bytes)");
                }
                Tensor zp = in.length > 3 ? in[3] : null;
                if (zp != null) {
                    if (!s.format().isInt4()) {
                        throw op.error(s.format() + " weights take no 'zero_point' (got " + zp.describe() + ")");
                    }
                    if (zp.dtype() != DType.INT32 || !zp.shape().equals(scale.shape())) {
                        throw op.error("input 'zero_point' (" + zp.describe() + ") must be int32 of the scale's shape "
                                + scale.shape());
                    }
                }
                Tensor bias = in.length > 4 ? in[4] : null;
                if (bias != null && (bias.dtype() != DType.FLOAT32 || bias.shape().rank() != 1 || bias.numel() != n)) {
                    throw op.error("input 'bias' (" + bias.describe() + ") must be float32[" + n + "]");
                }
                return Op.one(Shape.of(x.dims()[0], n), x.dtype());
            })
            .kernels((s, in, out) -> matmulKernel(s, in, out, false))
            .register();

    /** Runs the op's kernel, or (reference) the native scalar reference loop: for tests. */
    static void matmulKernel(Spec s, Tensor[] in, Tensor[] out, boolean reference) {
        Tensor y = out[0];
        if (y.numel() == 0) {
            return;
        }
        Tensor x = in[0];
        // rows with unit stride along k, each at least k elements apart (a broadcast or overlapping view is copied)
        boolean rows = (x.strides()[1] == 1 || x.dims()[1] <= 1) && (x.dims()[0] <= 1 || x.strides()[0] >= x.dims()[1]);
        Tensor zp0 = in.length > 3 ? in[3] : null;
        Tensor bias0 = in.length > 4 ? in[4] : null;
        try (Tensor xc = rows ? null : x.contiguous(); Tensor sc = in[2].contiguous();
             Tensor zp = zp0 == null ? null : zp0.contiguous(); Tensor bias = bias0 == null ? null : bias0.contiguous()) {
            Tensor xv = xc == null ? x : xc;
            Launch l = Launch.on(y);
            String ctx = "wq_matmul(x " + x.describe() + ", w_packed " + in[1].describe() + ", scale " + in[2].describe()
                    + ", " + s + ")";
            NativeArgs args = NativeArgs.get();
            long a = args.struct(CtWqArgs.SIZE);
            args.putLong(a + CtWqArgs.X, xv.dataAddress());
            args.putLong(a + CtWqArgs.W_PACKED, in[1].dataAddress());
            args.putLong(a + CtWqArgs.SCALE, sc.dataAddress());
            args.putLong(a + CtWqArgs.ZERO_POINT, zp == null ? 0 : zp.dataAddress());
            args.putLong(a + CtWqArgs.BIAS, bias == null ? 0 : bias.dataAddress());
            args.putLong(a + CtWqArgs.Y, y.dataAddress());
            args.putLong(a + CtWqArgs.M, y.dims()[0]);
            args.putLong(a + CtWqArgs.N, y.dims()[1]);
            args.putLong(a + CtWqArgs.K, x.dims()[1]);
            args.putLong(a + CtWqArgs.LDX, xv.dims()[0] > 1 ? xv.strides()[0] : x.dims()[1]);
            args.putLong(a + CtWqArgs.LDY, y.dims()[1]);
            args.putLong(a + CtWqArgs.GROUP, s.group());
            args.putInt(a + CtWqArgs.FORMAT, s.format().code);
            args.putInt(a + CtWqArgs.X_DTYPE, x.dtype().code());
            args.putInt(a + CtWqArgs.Y_DTYPE, y.dtype().code());
            args.putInt(a + CtWqArgs.REFERENCE, reference ? 1 : 0);
            l.check(l.kernels().wqGemm(a, l.stream()), ctx);
        }
    }

    // ------------------------------------------------------------------ entry point
    /**
     * {@code x [..., k] W^T + bias} for a packed weight matrix; {@code bias} float32 {@code [n]} or
     * null; x float32 or bfloat16, the result in x's dtype.
     */
    public static Tensor matmul(Tensor x, PackedWeights w, Tensor bias) {
        return matmul(x, new Spec(w.format(), w.group()), w.packed(), w.scale(), w.zeroPoint(), bias, w.n(), w.k());
    }

    /** The op on x's leading dims flattened (and restored), for a packed [n, k] matrix. */
    static Tensor matmul(Tensor x, Spec spec, Tensor packed, Tensor scale, Tensor zeroPoint, Tensor bias, long n, long k) {
        int rank = x.shape().rank();
        if (rank < 1 || x.dims()[rank - 1] != k) {
            throw new IllegalArgumentException("WeightOnly.matmul: x " + x.describe() + " does not end in k = " + k
                    + " of the packed [" + n + ", " + k + "] " + spec.format() + " weights");
        }
        if (!x.device().equals(packed.device())) {
            throw new IllegalArgumentException("WeightOnly.matmul: x " + x.describe() + " and the weights "
                    + packed.describe() + " are on different devices");
        }
        long[] d = x.dims();
        long m = 1;
        for (int i = 0; i < rank - 1; i++) {
            m *= d[i];
        }
        try (Tensor x2 = rank == 2 ? null : x.reshape(m, k)) {
            Tensor y = MATMUL_OP.call(spec, x2 == null ? x : x2, packed, scale, zeroPoint, bias);
            if (rank == 2) {
                return y;
            }
            long[] od = d.clone();
            od[rank - 1] = n;
            try (y) {
                return y.reshape(od);
            }
        }
    }
}
