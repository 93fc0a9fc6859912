package dev.cortado.nn;

import dev.cortado.nn.functional.F;
import dev.cortado.ops.Attention;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.LinearAttention;
import dev.cortado.tensor.Tensor;

/**
 * A pre-norm transformer block over x [B, T, C]:
 * {@code h = x + drop(attn(norm1(x)))}, {@code y = h + drop(mlp(norm2(h)))}. Children: {@code norm1},
 * {@code attn} ({@link MultiheadAttention}), {@code norm2}, {@code mlp} ({@link MLP}), and
 * {@code drop} ({@link Dropout}, residual dropout) when dropout > 0. With layer scale (CaiT,
 * DeiT III) each branch is multiplied per channel by a learned vector before the residual sum,
 * {@code h = x + ls1 * attn(...)}, {@code y = h + ls2 * mlp(...)}: parameters {@code ls1} and
 * {@code ls2} [C], starting at a small value (1e-5 to 1e-1) so deep stacks start near identity.
 */
public class TransformerBlock extends Module {
    /**
     * Which normalization the block uses: LayerNorm, RMSNorm, or SLAB's progressive
     * re-parameterized BatchNorm ({@link ProgressiveRepBN}, foldable for inference by
     * {@link #reparameterize()}).
     */
    public enum Norm {
        LAYER_NORM, RMS_NORM, PREP_BN
    }

    /**
     * Configuration; {@link #builder(long, long)} gives GPT-2-like defaults (LayerNorm, GELU MLP of 4*dim).
     * {@code layerScale}: the initial value of per-channel scales on both residual branches (CaiT /
     * DeiT-III), 0 for none. {@code moe}: null for a dense MLP, else the options of a
     * {@link MoeFeedForward} of experts of kind {@code mlp} used as the block's feed-forward (child
     * {@code mlp}). {@code slab}: null for softmax attention ({@link MultiheadAttention}), else the
     * options of the {@link SlabAttention} used instead (child {@code attn}). {@code prepSteps}: the
     * decay steps of the {@link ProgressiveRepBN} norms when {@code norm} is PREP_BN.
     */
    public record Options(MultiheadAttention.Options attention, long mlpHidden, MLP.Kind mlp, Norm norm, double eps,
                          boolean mlpBias, double residualDropout, double layerScale, MoeFeedForward.Options moe,
                          SlabAttention.Options slab, long prepSteps) {
        public Options {
            if (mlpHidden <= 0) {
                mlpHidden = 4 * attention.dim();
            }
        }

        /** A block with a dense MLP. */
        public Options(MultiheadAttention.Options attention, long mlpHidden, MLP.Kind mlp, Norm norm, double eps,
                       boolean mlpBias, double residualDropout) {
            this(attention, mlpHidden, mlp, norm, eps, mlpBias, residualDropout, 0, null, null, 0);
        }
    }

    public static Builder builder(long dim, long numHeads) {
        return new Builder(dim, numHeads);
    }

    /** The options of a transformer block, set one by one; {@code build()} creates its parameters. */
    public static final class Builder {
        private final MultiheadAttention.Builder attention;
        private long mlpHidden;
        private MLP.Kind mlp = MLP.Kind.GELU;
        private Norm norm = Norm.LAYER_NORM;
        private double eps = 1e-5;
        private boolean mlpBias = true;
        private double dropout;
        private double layerScale;
        private ParamOptions params = ParamOptions.defaults();
        private MoeFeedForward.Options moe;
        private SlabAttention.Options slab;
        private long prepSteps;

        private Builder(long dim, long numHeads) {
            attention = MultiheadAttention.builder(dim, numHeads);
        }

        public Builder kvHeads(long n) {
            attention.kvHeads(n);
            return this;
        }

        public Builder causal(boolean c) {
            attention.causal(c);
            return this;
        }

        public Builder rope() {
            attention.rope();
            return this;
        }

        public Builder rope(double base, long rotaryDim, boolean interleaved) {
            attention.rope(base, rotaryDim, interleaved);
            return this;
        }

        /** Attention logit soft-capping ({@link MultiheadAttention.Builder#softcap}). */
        public Builder softcap(double cap) {
            attention.softcap(cap);
            return this;
        }

        public Builder layout(Attention.Layout l) {
            attention.layout(l);
            return this;
        }

        /** Bias in every projection (attention and MLP). */
        public Builder bias(boolean b) {
            attention.bias(b);
            mlpBias = b;
            return this;
        }

        public Builder mlp(MLP.Kind kind, long hidden) {
            mlp = kind;
            mlpHidden = hidden;
            return this;
        }

        public Builder norm(Norm n, double eps) {
            norm = n;
            this.eps = eps;
            return this;
        }

        /**
         * SLAB's progressive re-parameterized BatchNorm for both norms, its LayerNorm share decaying
         * to 0 over {@code decaySteps} optimizer steps ({@link ProgressiveRepBN#stepAll}).
         */
        public Builder prepBn(long decaySteps, double lnEps) {
            norm = Norm.PREP_BN;
            eps = lnEps;
            prepSteps = decaySteps;
            return this;
        }

        /**
         * SLAB's linear attention ({@link SlabAttention}) instead of softmax attention, over a
         * sequence of {@code prefixTokens} tokens then a {@code gridSide x gridSide} patch grid, with a
         * {@code kernel x kernel} depthwise convolution on V.
         */
        public Builder slabAttention(int gridSide, int prefixTokens, int kernel) {
            MultiheadAttention.Options a = attention.options();
            slab = new SlabAttention.Options(a.dim(), a.numHeads(), kernel, gridSide, prefixTokens,
                    LinearAttention.DEFAULT_EPS, params);
            return this;
        }

        /** Dropout on the attention probabilities and on both residual branches. */
        public Builder dropout(double p) {
            attention.dropout(p);
            dropout = p;
            return this;
        }

        /** A mixture of experts (of the block's MLP kind) as the feed-forward; null for the dense MLP. */
        public Builder moe(MoeFeedForward.Options o) {
            moe = o;
            return this;
        }

        public Builder params(ParamOptions p) {
            params = p;
            attention.params(p);
            if (slab != null) {
                slab = new SlabAttention.Options(slab.dim(), slab.heads(), slab.kernel(), slab.gridSide(),
                        slab.prefixTokens(), slab.eps(), p);
            }
            return this;
        }

        /** Layer scale: learned per-channel factors on both branches, starting at {@code init} (0 = off). */
        public Builder layerScale(double init) {
            if (!(init >= 0) || Double.isInfinite(init)) {
                throw new IllegalArgumentException("TransformerBlock: layer scale must be finite and >= 0, got " + init);
            }
            layerScale = init;
            return this;
        }

        /** GPT-2 / LLaMA presets in one call: RMSNorm, SwiGLU, no bias, RoPE, causal. */
        public Builder llama(long hidden) {
            norm(Norm.RMS_NORM, 1e-6);
            mlp(MLP.Kind.SWIGLU, hidden);
            bias(false);
            rope();
            return causal(true);
        }

        public Options options() {
            return new Options(attention.options(), mlpHidden, mlp, norm, eps, mlpBias, dropout, layerScale, moe, slab,
                    prepSteps);
        }

        public TransformerBlock build() {
            return new TransformerBlock(options(), params);
        }
    }

    private final Options o;

    public TransformerBlock(Options o, ParamOptions p) {
        this.o = o;
        long dim = o.attention().dim();
        registerModule("norm1", norm(o, dim, p));
        registerModule("attn", o.slab() == null ? new MultiheadAttention(o.attention()) : new SlabAttention(o.slab()));
        registerModule("norm2", norm(o, dim, p));
        registerModule("mlp", o.moe() == null ? new MLP(dim, o.mlpHidden(), o.mlp(), o.mlpBias(), p)
                : new MoeFeedForward(dim, o.moe(), o.mlp(), p));
        if (o.residualDropout() > 0) {
            registerModule("drop", new Dropout(o.residualDropout(), p.generator()));
        }
        if (o.layerScale() > 0) {
            for (String name : new String[] {"ls1", "ls2"}) {
                registerParameter(name, unscoped(() -> Tensor.full(o.layerScale(), p.dtype(), p.device(), dim)));
            }
        }
    }

    private static Module norm(Options o, long dim, ParamOptions p) {
        return switch (o.norm()) {
            case LAYER_NORM -> new LayerNorm(new long[] {dim}, o.eps(), true, true, p);
            case RMS_NORM -> new RMSNorm(new long[] {dim}, o.eps(), true, p);
            case PREP_BN -> new ProgressiveRepBN(dim, o.eps(), o.prepSteps(), p);
        };
    }

    /**
     * SLAB's inference re-parameterization: with PREP_BN norms whose schedule has ended, folds
     * {@code norm1} into the attention's {@code wq, wk, wv} and {@code norm2} into the MLP's input
     * layers ({@code fc1}, or {@code gate} and {@code up}); both norms then pass their input through.
     * Call in evaluation mode (it uses the running statistics).
     *
     * @throws IllegalStateException without PREP_BN norms, with a mixture of experts, or while gamma is above 0
     */
    public void reparameterize() {
        if (o.norm() != Norm.PREP_BN || o.moe() != null) {
            throw new IllegalStateException("TransformerBlock.reparameterize: needs PREP_BN norms and a dense MLP, got "
                    + o.norm() + (o.moe() != null ? " with experts" : ""));
        }
        ((ProgressiveRepBN) child("norm1")).foldInto(child("attn"), "wq", "wk", "wv");
        Module mlp = child("mlp");
        ((ProgressiveRepBN) child("norm2")).foldInto(mlp, mlp.children().containsKey("fc1")
                ? new String[] {"fc1"} : new String[] {"gate", "up"});
    }

    public Options options() {
        return o;
    }

    @Override
    public Tensor forward(Tensor x) {
        return forward(x, null);
    }

    /** The block with an attention mask (see {@link MultiheadAttention#forward(Tensor, Tensor)}). */
    public Tensor forward(Tensor x, Tensor mask) {
        Tensor h;
        try (Tensor n1 = child("norm1").forward(x); Tensor a = attend(n1, mask); Tensor ad = drop(a);
             Tensor as = scale(ad, "ls1")) {
            h = Elementwise.add(x, as);
        }
        try (h; Tensor n2 = child("norm2").forward(h); Tensor m = child("mlp").forward(n2); Tensor md = drop(m);
             Tensor ms = scale(md, "ls2")) {
            return Elementwise.add(h, ms);
        }
    }

    private Tensor attend(Tensor x, Tensor mask) {
        if (child("attn") instanceof MultiheadAttention attn) {
            return attn.forward(x, mask);
        }
        if (mask != null) {
            throw new IllegalArgumentException("TransformerBlock: SLAB's linear attention takes no mask");
        }
        return child("attn").forward(x);
    }

    private Tensor scale(Tensor branch, String name) {
        return o.layerScale() > 0 ? Elementwise.mul(branch, parameter(name)) : F.identity(branch);
    }

    private Tensor drop(Tensor t) {
        return o.residualDropout() > 0 ? child("drop").forward(t) : F.identity(t);
    }

    @Override
    protected String extraRepr() {
        return o.norm() + ", " + o.mlp() + (o.moe() == null ? " hidden=" + o.mlpHidden() : " experts")
                + (o.layerScale() > 0 ? ", layer scale" : "");
    }
}
