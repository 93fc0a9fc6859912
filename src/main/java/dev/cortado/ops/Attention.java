package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeStructs.CtAttentionParams;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Fused scaled-dot-product attention (forward and backward, FlashAttention-2 style: the score
 * matrix is never stored) and rotary position embeddings. Kernels: {@code native/cpu/attention.cpp},
 * {@code native/cuda/attention.cu} (tensor cores for bfloat16/float16 with head dims up to 256;
 * a SIMT path for float32/float64); contract: {@code cortado/attention.h}.
 *
 * <p>q is [B, Hq, Lq, D] (layout BHSD) or [B, Lq, Hq, D] (BSHD); k [B, Hkv, Lk, D] and v
 * [B, Hkv, Lk, Dv] in the same layout; Hq must be a multiple of Hkv (grouped-query and
 * multi-query attention need no copies). The output o has q's layout with Dv features; lse is
 * float32 [B, Hq, Lq]. An optional mask broadcastable to [B, Hq, Lq, Lk] (always in that order,
 * whatever the layout) is boolean (true = attend) or additive (floating, added to the scaled
 * scores). Inputs are read through their strides; only a feature dimension that is not
 * contiguous is copied.
 *
 * <p>Causal masking is aligned to the bottom-right when the lengths differ (FlashAttention 2.1's
 * convention, right for decoding with a cache): query i attends key j iff j &lt;= i + (Lk - Lq).
 * ONNX Attention (opset 23) aligns to the top-left; pass an explicit mask for that.
 */
public final class Attention {
    private Attention() {
    }

    /** Memory order of the attention operands. */
    public enum Layout {
        /** [batch, heads, seq, dim]. */
        BHSD,
        /** [batch, seq, heads, dim]. */
        BSHD
    }

    /**
     * Attention options. {@code scale} NaN means 1/sqrt(D). {@code softcap > 0} soft-caps every
     * scaled score s to {@code softcap * tanh(s / softcap)} before the mask is added (Gemma 2's
     * logit soft-capping, ONNX Attention's {@code softcap}); 0 means no cap. With {@code dropoutP > 0} and
     * {@code seeded == false}, the eager entry points draw (seed, offset) from
     * {@link Generator#global()}; call {@link #resolve()} once and pass the result to both the
     * forward and the backward so that they use the same dropout mask.
     */
    public record Options(Layout layout, boolean causal, double scale, double softcap, double dropoutP, long seed,
                          long offset, boolean seeded) {
        public Options {
            if (layout == null) {
                layout = Layout.BHSD;
            }
        }

        public static final Options DEFAULT = new Options(Layout.BHSD, false, Double.NaN, 0, 0, 0, 0, false);

        public static Builder builder() {
            return new Builder();
        }

        /** These options with an explicit dropout seed and offset (one offset taken from the global generator if needed). */
        public Options resolve() {
            if (seeded || dropoutP == 0) {
                return this;
            }
            Generator g = Generator.global();
            long off;
            synchronized (g) {
                off = g.offset();
                g.setOffset(off + 1);
            }
            return new Options(layout, causal, scale, softcap, dropoutP, g.seed(), off, true);
        }

        @Override
        public String toString() {
            return layout + (causal ? ", causal" : "") + (Double.isNaN(scale) ? "" : ", scale " + scale)
                    + (softcap != 0 ? ", softcap " + softcap : "")
                    + (dropoutP > 0 ? ", dropout " + dropoutP + (seeded ? " (seed " + seed + ", offset " + offset + ")" : "")
                    : "");
        }

        /** The options of an attention call (layout, causality, scale, soft cap, dropout), set one by one. */
        public static final class Builder {
            private Layout layout = Layout.BHSD;
            private boolean causal;
            private double scale = Double.NaN;
            private double softcap;
            private double dropoutP;
            private long seed;
            private long offset;
            private boolean seeded;

            private Builder() {
            }

            public Builder layout(Layout l) {
                layout = l;
                return this;
            }

            public Builder causal(boolean c) {
                causal = c;
                return this;
            }

            public Builder scale(double s) {
                scale = s;
                return this;
            }

            /** Soft-caps the scaled scores to {@code cap * tanh(s / cap)}; 0 (the default) means no cap. */
            public Builder softcap(double cap) {
                softcap = cap;
                return this;
            }

            /** Dropout on the attention probabilities; seed and offset from the global generator. */
            public Builder dropout(double p) {
                dropoutP = p;
                return this;
            }

            public Builder dropout(double p, long seed, long offset) {
                dropoutP = p;
                this.seed = seed;
                this.offset = offset;
                seeded = true;
                return this;
            }

            public Options build() {
                return new Options(layout, causal, scale, softcap, dropoutP, seed, offset, seeded);
            }
        }
    }

    /** Rotary embedding attributes: features [0, rotaryDim) rotate; pairs (2i, 2i+1) or (i, i + rotaryDim/2). */
    public record RopeAttrs(long rotaryDim, double base, boolean interleaved, Layout layout) {
        public RopeAttrs {
            if (layout == null) {
                layout = Layout.BHSD;
            }
        }
    }

    public static final Op<Options> SDPA_OP = Op.<Options>declare("scaled_dot_product_attention")
            .inputs("q", "k", "v", "mask").required(3)
            .shape((op, a, in) -> {
                Geometry g = geometry(op, a, in[0], in[1], in[2], in.length > 3 ? in[3] : null);
                long[] od = in[0].dims();
                od[3] = g.dims[6];
                return new TensorSpec[] {new TensorSpec(Shape.of(od), in[0].dtype()),
                        new TensorSpec(Shape.of(g.dims[0], g.dims[1], g.dims[3]), DType.FLOAT32)};
            })
            .kernels((a, in, out) -> forwardKernel(a, in, out))
            .autocast(0, 1, 2)
            .backward(Op.Saves.INPUTS_AND_OUTPUTS, (a, sv, g) -> {
                // the fused backward recomputes the scores from q, k, v, o and the row log-sum-exp
                Tensor mask = sv.inputCount() > 3 ? sv.input(3) : null;
                Tensor[] d = mask == null
                        ? Attention.SDPA_BACKWARD_OP.callMulti(a, g[0], sv.input(0), sv.input(1), sv.input(2),
                                sv.output(0), sv.output(1))
                        : Attention.SDPA_BACKWARD_OP.callMulti(a, g[0], sv.input(0), sv.input(1), sv.input(2),
                                sv.output(0), sv.output(1), mask);
                return sv.inputCount() > 3 ? new Tensor[] {d[0], d[1], d[2], null} : d;
            })
            .register();

    public static final Op<Options> SDPA_BACKWARD_OP = Op.<Options>declare("scaled_dot_product_attention_backward")
            .inputs("do", "q", "k", "v", "o", "lse", "mask").required(6)
            .shape((op, a, in) -> {
                Geometry g = geometry(op, a, in[1], in[2], in[3], in.length > 6 ? in[6] : null);
                long[] od = in[1].dims();
                od[3] = g.dims[6];
                Shape os = Shape.of(od);
                for (int i : new int[] {0, 4}) {
                    if (!in[i].shape().equals(os) || in[i].dtype() != in[1].dtype()) {
                        throw op.error("'" + op.inputName(i) + "' " + in[i].describe() + " must be " + in[1].dtype() + os
                                + " (the output of q " + in[1].describe() + ", v " + in[3].describe() + ")");
                    }
                }
                Shape ls = Shape.of(g.dims[0], g.dims[1], g.dims[3]);
                if (!in[5].shape().equals(ls) || in[5].dtype() != DType.FLOAT32) {
                    throw op.error("'lse' " + in[5].describe() + " must be float32" + ls);
                }
                return new TensorSpec[] {new TensorSpec(in[1].shape(), in[1].dtype()),
                        new TensorSpec(in[2].shape(), in[2].dtype()), new TensorSpec(in[3].shape(), in[3].dtype())};
            })
            .kernels((a, in, out) -> backwardKernel(a, in, out))
            .register();

    public static final Op<RopeAttrs> ROPE_OP = ropeOp("rope", false);
    public static final Op<RopeAttrs> ROPE_BACKWARD_OP = ropeOp("rope_backward", true);

    // ------------------------------------------------------------------ eager entry points
    /** softmax(cap(scale q k^T) + mask) v, with causal masking, soft-capping and dropout per the options; returns o. */
    public static Tensor scaledDotProductAttention(Tensor q, Tensor k, Tensor v, Tensor mask, Options options) {
        Tensor[] r = scaledDotProductAttentionWithLse(q, k, v, mask, options);
        r[1].close();
        return r[0];
    }

    public static Tensor scaledDotProductAttention(Tensor q, Tensor k, Tensor v) {
        return scaledDotProductAttention(q, k, v, null, Options.DEFAULT);
    }

    /** {o, lse}: lse (float32 [B, Hq, Lq]) is what the backward needs. */
    public static Tensor[] scaledDotProductAttentionWithLse(Tensor q, Tensor k, Tensor v, Tensor mask, Options options) {
        Options o = (options == null ? Options.DEFAULT : options).resolve();
        return mask == null ? SDPA_OP.callMulti(o, q, k, v) : SDPA_OP.callMulti(o, q, k, v, mask);
    }

    /**
     * {dq, dk, dv} from the output gradient dO, the forward's inputs, output o and lse. With dropout
     * the options must carry the forward's seed and offset ({@link Options#resolve()}).
     */
    public static Tensor[] scaledDotProductAttentionBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse,
                                                             Tensor mask, Options options) {
        Options a = options == null ? Options.DEFAULT : options;
        if (a.dropoutP() > 0 && !a.seeded()) {
            throw SDPA_BACKWARD_OP.error("dropout needs the forward's seed and offset: pass options.resolve() to both");
        }
        return mask == null ? SDPA_BACKWARD_OP.callMulti(a, dO, q, k, v, o, lse)
                : SDPA_BACKWARD_OP.callMulti(a, dO, q, k, v, o, lse, mask);
    }

    /** Rotary embedding of x ([B, H, L, D] or [B, L, H, D]); positions int64 [L] or null for 0..L-1. */
    public static Tensor rope(Tensor x, Tensor positions, long rotaryDim, double base, boolean interleaved, Layout layout) {
        RopeAttrs a = new RopeAttrs(rotaryDim, base, interleaved, layout);
        return positions == null ? ROPE_OP.call(a, x) : ROPE_OP.call(a, x, positions);
    }

    /** Gradient of {@link #rope}: the inverse rotation of dy. */
    public static Tensor ropeBackward(Tensor dy, Tensor positions, long rotaryDim, double base, boolean interleaved,
                                      Layout layout) {
        RopeAttrs a = new RopeAttrs(rotaryDim, base, interleaved, layout);
        return positions == null ? ROPE_BACKWARD_OP.call(a, dy) : ROPE_BACKWARD_OP.call(a, dy, positions);
    }

    // ------------------------------------------------------------------ rules
    /** dims {B, Hq, Hkv, Lq, Lk, D, Dv}, the mask kind and its strides over [B, Hq, Lq, Lk]. */
    private record Geometry(long[] dims, long[] maskStrides) {
    }

    /** Index of the (b, h, s, d) dimensions in a tensor of this layout. */
    private static int[] axes(Layout l) {
        return l == Layout.BHSD ? new int[] {0, 1, 2, 3} : new int[] {0, 2, 1, 3};
    }

    private static boolean supported(DType t) {
        return t == DType.FLOAT32 || t == DType.FLOAT64 || t == DType.FLOAT16 || t == DType.BFLOAT16;
    }

    private static Geometry geometry(Op<?> op, Options a, Tensor q, Tensor k, Tensor v, Tensor mask) {
        String ctx = " (q " + q.describe() + ", k " + k.describe() + ", v " + v.describe()
                + (mask != null ? ", mask " + mask.describe() : "") + ", " + a + ")";
        if (q.rank() != 4 || k.rank() != 4 || v.rank() != 4) {
            throw op.error("q, k and v must have rank 4 (" + (a.layout() == Layout.BHSD ? "[batch, heads, seq, dim]"
                    : "[batch, seq, heads, dim]") + ")" + ctx);
        }
        if (!supported(q.dtype())) {
            throw op.error("dtype " + q.dtype() + " is not supported (float32, float64, float16, bfloat16)" + ctx);
        }
        if (k.dtype() != q.dtype() || v.dtype() != q.dtype()) {
            throw op.error("q, k and v must have the same dtype" + ctx);
        }
        int[] ax = axes(a.layout());
        long b = q.size(ax[0]);
        long hq = q.size(ax[1]);
        long lq = q.size(ax[2]);
        long d = q.size(ax[3]);
        long hkv = k.size(ax[1]);
        long lk = k.size(ax[2]);
        long dv = v.size(ax[3]);
        if (k.size(ax[0]) != b || v.size(ax[0]) != b) {
            throw op.error("batch sizes differ: q " + q.shape() + ", k " + k.shape() + ", v " + v.shape() + ctx);
        }
        if (k.size(ax[3]) != d) {
            throw op.error("head dims differ: q " + q.shape() + " has " + d + ", k " + k.shape() + " has " + k.size(ax[3])
                    + ctx);
        }
        if (v.size(ax[1]) != hkv || v.size(ax[2]) != lk) {
            throw op.error("k " + k.shape() + " and v " + v.shape() + " must agree in heads and sequence length" + ctx);
        }
        if (hkv < 1 || d < 1 || dv < 1 || hq % hkv != 0) {
            throw op.error("the query heads (" + hq + ", q " + q.shape() + ") must be a positive multiple of the key/value heads ("
                    + hkv + ", k " + k.shape() + ") and head dims positive" + ctx);
        }
        if (!(a.dropoutP() >= 0 && a.dropoutP() < 1)) {
            throw op.error("dropout p must be in [0, 1), got " + a.dropoutP() + ctx);
        }
        if (!Double.isNaN(a.scale()) && Double.isInfinite(a.scale())) {
            throw op.error("scale must be finite" + ctx);
        }
        if (!(a.softcap() >= 0) || Double.isInfinite(a.softcap())) {
            throw op.error("softcap must be finite and >= 0 (0: no cap), got " + a.softcap() + ctx);
        }
        long[] ms = new long[4];
        if (mask != null) {
            long[] full = {b, hq, lq, lk};
            long[] md = mask.dims();
            boolean ok = md.length <= 4;
            for (int i = 0; ok && i < md.length; i++) {
                long want = full[4 - md.length + i];
                ok = md[i] == want || md[i] == 1;
            }
            if (!ok) {
                throw op.error("mask shape " + mask.shape() + " is not broadcastable to [B, Hq, Lq, Lk] = "
                        + Arrays.toString(full) + ctx);
            }
            // the kernel reads the mask's kind off its dtype: bool, or additive
            if (mask.dtype() != DType.BOOL && !mask.dtype().isFloatingPoint()) {
                throw op.error("mask must be bool (true = attend) or floating (additive), got " + mask.describe() + ctx);
            }
            long[] st = mask.strides();
            for (int i = 0; i < md.length; i++) {
                ms[4 - md.length + i] = md[i] == 1 ? 0 : st[i];
            }
        }
        return new Geometry(new long[] {b, hq, hkv, lq, lk, d, dv}, ms);
    }

    /** The 4 strides (b, h, s, d) of t in this layout; a non-unit feature stride needs a contiguous copy first. */
    private static long[] strides4(Tensor t, Layout l) {
        int[] ax = axes(l);
        long[] s = t.strides();
        long[] r = {s[ax[0]], s[ax[1]], s[ax[2]], s[ax[3]]};
        if (t.size(ax[3]) == 1) {
            r[3] = 1;
        }
        return r;
    }

    /** t, or a contiguous copy (added to temps) when its feature stride is not 1. */
    private static Tensor prep(Tensor t, Layout l, List<Tensor> temps) {
        if (strides4(t, l)[3] == 1) {
            return t;
        }
        Tensor c = t.contiguous();
        temps.add(c);
        return c;
    }

    private static double scaleOf(Options a, long d) {
        return Double.isNaN(a.scale()) ? 1.0 / Math.sqrt(d) : a.scale();
    }

    private static void closeAll(List<Tensor> temps) {
        for (Tensor t : temps) {
            t.close();
        }
    }

    /** The mask as the kernel takes it: additive masks converted to q's dtype. */
    private static Tensor prepMask(Tensor mask, DType dtype, List<Tensor> temps) {
        if (mask == null || mask.dtype() == DType.BOOL || mask.dtype() == dtype) {
            return mask;
        }
        Tensor c = mask.to(dtype);
        temps.add(c);
        return c;
    }

    /** A 4-d ct_tensor descriptor [B, H, L, D] of {@code t} in {@code layout} (cortado/common.h). */
    private static long descriptor(NativeArgs args, Tensor t, Layout layout, long b, long h, long len, long d) {
        return args.tensor(t.dataAddress(), t.dtype().code(), new long[] {b, h, len, d}, strides4(t, layout));
    }

    /** The descriptors of q, k, v and the mask (0 for none), in that order, from dims {B, Hq, Hkv, Lq, Lk, D, Dv}. */
    private static long[] qkvMask(NativeArgs args, Layout l, long[] dm, Tensor q, Tensor k, Tensor v, Tensor mask,
                                  Geometry gm) {
        return new long[] {descriptor(args, q, l, dm[0], dm[1], dm[3], dm[5]),
            descriptor(args, k, l, dm[0], dm[2], dm[4], dm[5]),
            descriptor(args, v, l, dm[0], dm[2], dm[4], dm[6]),
            mask == null ? 0 : args.tensor(mask.dataAddress(), mask.dtype().code(),
                    new long[] {dm[0], dm[1], dm[3], dm[4]}, gm.maskStrides())};
    }

    /** A ct_attention_params struct (cortado/attention.h) of these options. */
    private static long params(NativeArgs args, Options a, double scale) {
        long p = args.struct(CtAttentionParams.SIZE);
        args.putDouble(p + CtAttentionParams.SCALE, scale);
        args.putDouble(p + CtAttentionParams.SOFTCAP, a.softcap());
        args.putDouble(p + CtAttentionParams.DROPOUT_P, a.dropoutP());
        args.putLong(p + CtAttentionParams.SEED, a.seed());
        args.putLong(p + CtAttentionParams.OFFSET, a.offset());
        args.putInt(p + CtAttentionParams.CAUSAL, a.causal() ? 1 : 0);
        return p;
    }

    /** The CUDA kernels take at most 256 features per head (CT_ERR_UNSUPPORTED otherwise): say so early. */
    private static void requireCudaHeadDims(Op<?> op, Geometry g, Tensor q, Tensor v) {
        if (g.dims()[5] > 256 || g.dims()[6] > 256) {
            throw new UnsupportedOperationException(op.name() + ": the CUDA kernels support head dims up to 256, got D = "
                    + g.dims()[5] + ", Dv = " + g.dims()[6] + " (q " + q.describe() + ", v " + v.describe()
                    + "); run on the CPU");
        }
    }

    private static void forwardKernel(Options a, Tensor[] in, Tensor[] out) {
        Tensor mask0 = in.length > 3 ? in[3] : null;
        Geometry g = geometry(SDPA_OP, a, in[0], in[1], in[2], mask0);
        if (out[0].numel() == 0) {
            return;
        }
        Launch run = Launch.on(out[0]);
        if (run.isCuda()) {
            requireCudaHeadDims(SDPA_OP, g, in[0], in[2]);
        }
        List<Tensor> temps = new ArrayList<>();
        try {
            Layout l = a.layout();
            Tensor q = prep(in[0], l, temps);
            Tensor k = prep(in[1], l, temps);
            Tensor v = prep(in[2], l, temps);
            Tensor mask = prepMask(mask0, in[0].dtype(), temps);
            Geometry gm = mask == mask0 ? g : geometry(SDPA_OP, a, in[0], in[1], in[2], mask);
            long[] dm = g.dims();
            NativeArgs args = NativeArgs.get();
            long[] qkvm = qkvMask(args, l, dm, q, k, v, mask, gm);
            long o = descriptor(args, out[0], l, dm[0], dm[1], dm[3], dm[6]);
            int st = run.kernels.attentionForward(qkvm[0], qkvm[1], qkvm[2], qkvm[3], params(args, a, scaleOf(a, dm[5])),
                    o, out[1].dataAddress(), run.stream);
            if (st != 0) {
                throw run.failure(st, "scaled_dot_product_attention(q " + in[0].describe() + ", k " + in[1].describe()
                        + ", v " + in[2].describe() + ", " + a + ")");
            }
        } finally {
            closeAll(temps);
        }
    }

    private static void backwardKernel(Options a, Tensor[] in, Tensor[] out) {
        Tensor mask0 = in.length > 6 ? in[6] : null;
        Geometry g = geometry(SDPA_BACKWARD_OP, a, in[1], in[2], in[3], mask0);
        if (out[0].numel() == 0 && out[1].numel() == 0) {
            return;
        }
        Launch run = Launch.on(out[0]);
        if (run.isCuda()) {
            requireCudaHeadDims(SDPA_BACKWARD_OP, g, in[1], in[3]);
        }
        List<Tensor> temps = new ArrayList<>();
        try {
            Layout l = a.layout();
            Tensor dO = prep(in[0], l, temps);
            Tensor q = prep(in[1], l, temps);
            Tensor k = prep(in[2], l, temps);
            Tensor v = prep(in[3], l, temps);
            Tensor o = prep(in[4], l, temps);
            Tensor lse = in[5].contiguous();
            temps.add(lse);
            Tensor mask = prepMask(mask0, in[1].dtype(), temps);
            Geometry gm = mask == mask0 ? g : geometry(SDPA_BACKWARD_OP, a, in[1], in[2], in[3], mask);
            long[] dm = g.dims();
            NativeArgs args = NativeArgs.get();
            long[] qkvm = qkvMask(args, l, dm, q, k, v, mask, gm);
            long od = descriptor(args, o, l, dm[0], dm[1], dm[3], dm[6]);
            long dod = descriptor(args, dO, l, dm[0], dm[1], dm[3], dm[6]);
            long dq = descriptor(args, out[0], l, dm[0], dm[1], dm[3], dm[5]);
            long dk = descriptor(args, out[1], l, dm[0], dm[2], dm[4], dm[5]);
            long dv = descriptor(args, out[2], l, dm[0], dm[2], dm[4], dm[6]);
            int st = run.kernels.attentionBackward(qkvm[0], qkvm[1], qkvm[2], qkvm[3],
                    params(args, a, scaleOf(a, dm[5])), od, dod, lse.dataAddress(), dq, dk, dv, run.stream);
            if (st != 0) {
                throw run.failure(st, "scaled_dot_product_attention_backward(q " + in[1].describe() + ", k "
                        + in[2].describe() + ", v " + in[3].describe() + ", " + a + ")");
            }
        } finally {
            closeAll(temps);
        }
    }

    private static Op<RopeAttrs> ropeOp(String name, boolean inverse) {
        return Op.<RopeAttrs>declare(name)
                .inputs(inverse ? "dy" : "x", "positions").required(1)
                .shape((op, a, in) -> {
                    Tensor x = in[0];
                    if (x.rank() != 4) {
                        throw op.error("x " + x.describe() + " must have rank 4 (" + a.layout() + ")");
                    }
                    if (!supported(x.dtype())) {
                        throw op.error("dtype " + x.dtype() + " is not supported (float32, float64, float16, bfloat16): "
                                + x.describe());
                    }
                    long d = x.size(3);
                    if (a.rotaryDim() <= 0 || a.rotaryDim() % 2 != 0 || a.rotaryDim() > d) {
                        throw op.error("rotary dim " + a.rotaryDim() + " must be positive, even and at most the head dim "
                                + d + " of " + x.describe());
                    }
                    if (!(a.base() > 0) || Double.isInfinite(a.base())) {
                        throw op.error("base must be positive, got " + a.base());
                    }
                    Tensor p = in.length > 1 ? in[1] : null;
                    long len = x.size(axes(a.layout())[2]);
                    if (p != null && (p.rank() != 1 || p.size(0) != len || !p.dtype().isInteger())) {
                        throw op.error("positions " + p.describe() + " must be an integer vector of the sequence length "
                                + len + " of " + x.describe() + " (" + a.layout() + ")");
                    }
                    return Op.one(x.shape(), x.dtype());
                })
                .kernels((a, in, out) -> ropeKernel(name, inverse, a, in, out))
                .backward(Op.Saves.INPUTS, (a, sv, g) -> {
                    // a rotation: its gradient is the inverse rotation (and back)
                    Op<RopeAttrs> transpose = inverse ? Attention.ROPE_OP : Attention.ROPE_BACKWARD_OP;
                    Tensor positions = sv.inputCount() > 1 ? sv.input(1) : null;
                    Tensor dx = positions == null ? transpose.call(a, g[0]) : transpose.call(a, g[0], positions);
                    return sv.inputCount() > 1 ? new Tensor[] {dx, null} : new Tensor[] {dx};
                })
                .register();
    }

    private static void ropeKernel(String name, boolean inverse, RopeAttrs a, Tensor[] in, Tensor[] out) {
        Tensor y = out[0];
        if (y.numel() == 0) {
            return;
        }
        y.copyFrom(in[0]);
        Tensor p = in.length > 1 ? in[1] : null;
        try (Tensor p64 = p == null ? null : p.to(DType.INT64);
             Tensor pc = p64 == null ? null : p64.contiguous()) {
            int[] ax = axes(a.layout());
            long[] dims = {y.size(ax[0]), y.size(ax[1]), y.size(ax[2]), y.size(ax[3])};
            Launch run = Launch.on(y);
            NativeArgs args = NativeArgs.get();
            long dimsAddr = args.put(dims);
            long xs = args.put(strides4(y, a.layout()));
            long pos = pc == null ? 0 : pc.dataAddress();
            int st = run.kernels.rope(y.dtype().code(), dimsAddr, y.dataAddress(), xs, pos, a.rotaryDim(), a.base(),
                    a.interleaved() ? 1 : 0, inverse ? 1 : 0, run.stream);
            if (st != 0) {
                throw run.failure(st, name + "(" + in[0].describe() + ", " + a + ")");
            }
        }
    }
}
