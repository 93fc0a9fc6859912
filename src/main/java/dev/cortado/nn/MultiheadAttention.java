package dev.cortado.nn;

import dev.cortado.ops.Attention;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.Tensor;

/**
 * Multi-head self-attention over x [B, T, C] with separate projections {@code wq} [H*D, C],
 * {@code wk}, {@code wv} [Hkv*D, C] and {@code wo} [C, H*D] ({@link Linear} children).
 * {@code numKvHeads < numHeads} is grouped-query attention (1: multi-query); the fused
 * {@link Attention#scaledDotProductAttention} reads the shared K/V heads in place, no copies.
 * Q and K may be rotated by RoPE ({@link Attention#rope}); causal masking, an optional mask
 * (bool or additive, broadcastable to [B, H, T, T]) and attention dropout (training only,
 * Philox from the module's generator) are the kernel's.
 *
 * <p>The projections' outputs are viewed as [B, T, H, D] (layout BSHD, the default, no copy),
 * or permuted views [B, H, T, D] (BHSD). Init: wq/wk/wv xavier_uniform with zero bias, as
 * PyTorch's MultiheadAttention; wo is a default Linear with zero bias.
 */
public class MultiheadAttention extends Module {
    /** Configuration; {@link #builder(long, long)} gives the defaults. */
    public record Options(long dim, long numHeads, long numKvHeads, long headDim, boolean bias, boolean causal,
                          double dropout, double softcap, boolean rope, double ropeBase, long ropeDim,
                          boolean ropeInterleaved, Attention.Layout layout, ParamOptions params) {
        public Options {
            if (dim <= 0 || numHeads <= 0 || numKvHeads <= 0 || numHeads % numKvHeads != 0) {
                throw new IllegalArgumentException("MultiheadAttention: dim " + dim + ", heads " + numHeads
                        + " must be positive and a multiple of kv heads " + numKvHeads);
            }
            if (headDim <= 0) {
                if (dim % numHeads != 0) {
                    throw new IllegalArgumentException("MultiheadAttention: dim " + dim + " is not divisible by "
                            + numHeads + " heads; set headDim");
                }
                headDim = dim / numHeads;
            }
            if (!(dropout >= 0 && dropout < 1)) {
                throw new IllegalArgumentException("MultiheadAttention: dropout must be in [0, 1), got " + dropout);
            }
            if (!(softcap >= 0) || Double.isInfinite(softcap)) {
                throw new IllegalArgumentException("MultiheadAttention: softcap must be finite and >= 0 (0: no cap), got "
                        + softcap);
            }
            if (ropeDim <= 0) {
                ropeDim = headDim;
            }
            if (layout == null) {
                layout = Attention.Layout.BSHD;
            }
            if (params == null) {
                params = ParamOptions.defaults();
            }
        }

        public Builder toBuilder() {
            Builder b = new Builder(dim, numHeads);
            b.numKvHeads = numKvHeads;
            b.headDim = headDim;
            b.bias = bias;
            b.causal = causal;
            b.dropout = dropout;
            b.softcap = softcap;
            b.rope = rope;
            b.ropeBase = ropeBase;
            b.ropeDim = ropeDim;
            b.ropeInterleaved = ropeInterleaved;
            b.layout = layout;
            b.params = params;
            return b;
        }
    }

    public static Builder builder(long dim, long numHeads) {
        return new Builder(dim, numHeads);
    }

    /**
     * Defaults: kv heads = heads, head dim = dim / heads, bias, not causal, no dropout, no
     * soft-capping, no RoPE, BSHD.
     */
    public static final class Builder {
        private final long dim;
        private final long numHeads;
        private long numKvHeads;
        private long headDim;
        private boolean bias = true;
        private boolean causal;
        private double dropout;
        private double softcap;
        private boolean rope;
        private double ropeBase = 10000;
        private long ropeDim;
        private boolean ropeInterleaved;
        private Attention.Layout layout = Attention.Layout.BSHD;
        private ParamOptions params = ParamOptions.defaults();

        private Builder(long dim, long numHeads) {
            this.dim = dim;
            this.numHeads = numHeads;
            this.numKvHeads = numHeads;
        }

        public Builder kvHeads(long n) {
            numKvHeads = n;
            return this;
        }

        public Builder headDim(long d) {
            headDim = d;
            return this;
        }

        public Builder bias(boolean b) {
            bias = b;
            return this;
        }

        public Builder causal(boolean c) {
            causal = c;
            return this;
        }

        public Builder dropout(double p) {
            dropout = p;
            return this;
        }

        /**
         * Soft-caps the attention scores to {@code cap * tanh(s / cap)} before the mask (Gemma 2 uses
         * 50); also applied by the KV-cache decode of {@link CausalLanguageModel}. 0 (the default): none.
         */
        public Builder softcap(double cap) {
            softcap = cap;
            return this;
        }

        /** Rotary embeddings on Q and K over the first {@code rotaryDim} features (0: all) with {@code base}. */
        public Builder rope(double base, long rotaryDim, boolean interleaved) {
            rope = true;
            ropeBase = base;
            ropeDim = rotaryDim;
            ropeInterleaved = interleaved;
            return this;
        }

        public Builder rope() {
            return rope(10000, 0, false);
        }

        public Builder layout(Attention.Layout l) {
            layout = l;
            return this;
        }

        public Builder params(ParamOptions p) {
            params = p;
            return this;
        }

        public Options options() {
            return new Options(dim, numHeads, numKvHeads, headDim, bias, causal, dropout, softcap, rope, ropeBase,
                    ropeDim, ropeInterleaved, layout, params);
        }

        public MultiheadAttention build() {
            return new MultiheadAttention(options());
        }
    }

    private final Options o;
    private final Generator generator;

    public MultiheadAttention(long dim, long numHeads) {
        this(builder(dim, numHeads).options());
    }

    public MultiheadAttention(Options o) {
        this.o = o;
        this.generator = o.params().generator();
        long h = o.numHeads() * o.headDim();
        long kv = o.numKvHeads() * o.headDim();
        ParamOptions p = o.params();
        Linear wq = registerModule("wq", new Linear(o.dim(), h, o.bias(), p));
        Linear wk = registerModule("wk", new Linear(o.dim(), kv, o.bias(), p));
        Linear wv = registerModule("wv", new Linear(o.dim(), kv, o.bias(), p));
        Linear wo = registerModule("wo", new Linear(h, o.dim(), o.bias(), p));
        for (Linear l : new Linear[] {wq, wk, wv}) {
            Init.xavierUniform(l.weight(), 1.0, p.generator());
        }
        for (Linear l : new Linear[] {wq, wk, wv, wo}) {
            if (l.bias() != null) {
                Init.zeros(l.bias());
            }
        }
    }

    public Options options() {
        return o;
    }

    @Override
    public Tensor forward(Tensor x) {
        return forward(x, null);
    }

    /** Self-attention of x [B, T, C] with an optional mask (bool: true = attend; floating: added to the scores). */
    public Tensor forward(Tensor x, Tensor mask) {
        if (x.rank() != 3 || x.size(2) != o.dim()) {
            throw new IllegalArgumentException("MultiheadAttention: x must be [B, T, " + o.dim() + "], got " + x.describe());
        }
        long b = x.size(0);
        long t = x.size(1);
        boolean bhsd = o.layout() == Attention.Layout.BHSD;
        Tensor q = null;
        Tensor k = null;
        Tensor v = null;
        Tensor attn = null;
        try {
            q = heads(child("wq").forward(x), b, t, o.numHeads(), bhsd);
            k = heads(child("wk").forward(x), b, t, o.numKvHeads(), bhsd);
            v = heads(child("wv").forward(x), b, t, o.numKvHeads(), bhsd);
            if (o.rope()) {
                Tensor qr = Attention.rope(q, null, o.ropeDim(), o.ropeBase(), o.ropeInterleaved(), o.layout());
                q.close();
                q = qr;
                Tensor kr = Attention.rope(k, null, o.ropeDim(), o.ropeBase(), o.ropeInterleaved(), o.layout());
                k.close();
                k = kr;
            }
            Attention.Options.Builder ab = Attention.Options.builder().layout(o.layout()).causal(o.causal())
                    .softcap(o.softcap());
            if (isTraining() && o.dropout() > 0) {
                long offset;
                synchronized (generator) {
                    offset = generator.offset();
                    generator.setOffset(offset + 1);
                }
                ab.dropout(o.dropout(), generator.seed(), offset);
            }
            attn = Attention.scaledDotProductAttention(q, k, v, mask, ab.build());
            long hd = o.numHeads() * o.headDim();
            try (Tensor bthd = bhsd ? attn.permute(0, 2, 1, 3) : attn.reshape(attn.dims());
                 Tensor merged = bthd.reshape(b, t, hd)) {
                return child("wo").forward(merged);
            }
        } finally {
            for (Tensor z : new Tensor[] {q, k, v, attn}) {
                if (z != null) {
                    z.close();
                }
            }
        }
    }

    /** [B, T, n*D] as [B, T, n, D] (a view), or [B, n, T, D] (a permuted view) for BHSD; closes {@code y}. */
    private Tensor heads(Tensor y, long b, long t, long n, boolean bhsd) {
        try (y) {
            if (!bhsd) {
                return y.view(b, t, n, o.headDim());
            }
            try (Tensor v = y.view(b, t, n, o.headDim())) {
                return v.permute(0, 2, 1, 3);
            }
        }
    }

    @Override
    protected String extraRepr() {
        return "dim=" + o.dim() + ", heads=" + o.numHeads() + ", kv_heads=" + o.numKvHeads() + ", head_dim="
                + o.headDim() + (o.causal() ? ", causal" : "") + (o.rope() ? ", rope(base=" + o.ropeBase() + ")" : "")
                + (o.dropout() > 0 ? ", dropout=" + o.dropout() : "") + (o.softcap() > 0 ? ", softcap=" + o.softcap() : "")
                + ", " + o.layout();
    }

}
