package dev.cortado.models;

import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Init;
import dev.cortado.nn.LayerNorm;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.nn.ModuleList;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.ProgressiveRepBN;
import dev.cortado.nn.SlabAttention;
import dev.cortado.nn.TransformerBlock;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;

/**
 * The Vision Transformer (Dosovitskiy et al., 2021) with DeiT's distillation token (Touvron et al.,
 * 2021) as an option: non-overlapping patches embedded by a strided convolution, a class token (and
 * a distillation token), learned or fixed 2-D sine-cosine positions (as MAE uses), pre-norm
 * transformer blocks (LayerNorm, bidirectional multi-head attention, GELU MLP), a final LayerNorm
 * and a linear head on the class token, or on the mean of the patch tokens.
 *
 * <p>Cost per image: about 2 * depth * tokens * 12 * dim^2 FLOPs in the blocks' matmuls plus
 * 4 * depth * tokens^2 * dim in attention. Parameters: ViT-B/16 at 224 with 1000 classes
 * 86,567,656; ViT-S/16 22,050,664; ViT-Ti/16 5,717,416 (timm's counts).
 */
public final class VisionTransformer extends Module {
    /** How the head reads the sequence. */
    public enum Pooling {
        CLASS_TOKEN, MEAN
    }

    /** Position embeddings. */
    public enum Positions {
        LEARNED, SINCOS
    }

    /** The token mixer of the blocks: softmax attention, or SLAB's linear attention ({@link SlabAttention}). */
    public enum AttentionKind {
        SOFTMAX, SLAB_LINEAR
    }

    /** The norms: LayerNorm, or SLAB's progressive re-parameterized BatchNorm ({@link ProgressiveRepBN}). */
    public enum NormKind {
        LAYER, PREP_BN
    }

    private final Builder config;
    private final Conv2d patchEmbed;
    private final ModuleList<TransformerBlock> blocks;
    private final boolean hasDistHead;

    /** A builder for square images of side {@code imageSize} cut into {@code patchSize} patches. */
    public static Builder builder(int imageSize, int patchSize) {
        return new Builder(imageSize, patchSize);
    }

    /** ViT-Ti/16 (dim 192, depth 12, 3 heads). */
    public static Builder tiny(int imageSize, int patchSize) {
        return builder(imageSize, patchSize).dim(192).depth(12).heads(3);
    }

    /** ViT-S/16 (dim 384, depth 12, 6 heads). */
    public static Builder small(int imageSize, int patchSize) {
        return builder(imageSize, patchSize).dim(384).depth(12).heads(6);
    }

    /** ViT-B/16 (dim 768, depth 12, 12 heads). */
    public static Builder base(int imageSize, int patchSize) {
        return builder(imageSize, patchSize).dim(768).depth(12).heads(12);
    }

    /** Options of a {@link VisionTransformer}. */
    public static final class Builder {
        private final int imageSize;
        private final int patchSize;
        private int inChannels = 3;
        private int classes = 1000;
        private int dim = 192;
        private int depth = 12;
        private int heads = 3;
        private int mlpRatio = 4;
        private Positions positions = Positions.LEARNED;
        private Pooling pooling = Pooling.CLASS_TOKEN;
        private boolean distillationToken;
        private double dropout;
        private double layerScale;
        private AttentionKind attention = AttentionKind.SOFTMAX;
        private int slabKernel = 5;
        private NormKind norm = NormKind.LAYER;
        private long prepSteps;
        private ParamOptions params = ParamOptions.seeded(Generator.DEFAULT_SEED);

        private Builder(int imageSize, int patchSize) {
            if (patchSize < 1 || imageSize < patchSize || imageSize % patchSize != 0) {
                throw new IllegalArgumentException("VisionTransformer: image size " + imageSize
                        + " must be a positive multiple of the patch size " + patchSize);
            }
            this.imageSize = imageSize;
            this.patchSize = patchSize;
        }

        /** Channels of the input images. */
        public Builder inChannels(int n) {
            inChannels = positive("inChannels", n);
            return this;
        }

        /** Number of classes of the head. */
        public Builder classes(int n) {
            classes = positive("classes", n);
            return this;
        }

        /** Width of the tokens. */
        public Builder dim(int n) {
            dim = positive("dim", n);
            return this;
        }

        /** Number of transformer blocks. */
        public Builder depth(int n) {
            depth = positive("depth", n);
            return this;
        }

        /** Attention heads per block (must divide the width). */
        public Builder heads(int n) {
            heads = positive("heads", n);
            return this;
        }

        /** Hidden width of each block's MLP, in multiples of the token width (4). */
        public Builder mlpRatio(int n) {
            mlpRatio = positive("mlpRatio", n);
            return this;
        }

        /** Learned or fixed sine-cosine position embeddings. */
        public Builder positions(Positions p) {
            positions = p;
            return this;
        }

        /** What the head reads: the class token or the mean of the patch tokens. */
        public Builder pooling(Pooling p) {
            pooling = p;
            return this;
        }

        /** DeiT: a second token whose head learns from a teacher ({@link Distillation}). */
        public Builder distillationToken(boolean on) {
            distillationToken = on;
            return this;
        }

        /** Dropout on the residual branches. */
        public Builder dropout(double p) {
            dropout = p;
            return this;
        }

        /**
         * SLAB (Guo et al., ICML 2024): the blocks' attention is softmax (the default) or the
         * ReLU-kernel linear attention with a {@code 5 x 5} depthwise convolution on V over the patch grid.
         */
        public Builder attention(AttentionKind kind) {
            attention = kind;
            return this;
        }

        /** The side of SLAB's depthwise convolution on V (odd; 5 by default). */
        public Builder slabKernel(int k) {
            slabKernel = k;
            return this;
        }

        /** LayerNorm (the default) everywhere. */
        public Builder layerNorm() {
            norm = NormKind.LAYER;
            return this;
        }

        /**
         * SLAB's progressive re-parameterized BatchNorm in place of every LayerNorm, its LayerNorm
         * share decaying from 1 to 0 over {@code decaySteps} optimizer steps (call
         * {@link ProgressiveRepBN#stepAll} after each); fold it away for inference with
         * {@link VisionTransformer#reparameterize()}.
         */
        public Builder prepBatchNorm(long decaySteps) {
            norm = NormKind.PREP_BN;
            prepSteps = decaySteps;
            return this;
        }

        /** Parameter dtype, device and initialisation generator. */
        public Builder params(ParamOptions p) {
            params = p;
            return this;
        }

        /**
         * Layer scale (CaiT, DeiT III): every block multiplies its attention and MLP branches by
         * learned per-channel factors starting at {@code init} (1e-5 to 1e-1; 0 = off, the default).
         */
        public Builder layerScale(double init) {
            if (!(init >= 0) || Double.isInfinite(init)) {
                throw new IllegalArgumentException("VisionTransformer: layer scale must be finite and >= 0, got " + init);
            }
            layerScale = init;
            return this;
        }

        /** The model. */
        public VisionTransformer build() {
            if (dim % heads != 0) {
                throw new IllegalArgumentException("VisionTransformer: dim " + dim + " is not divisible by heads " + heads);
            }
            return new VisionTransformer(this);
        }

        private static int positive(String what, int n) {
            if (n < 1) {
                throw new IllegalArgumentException("VisionTransformer: " + what + " must be positive, got " + n);
            }
            return n;
        }
    }

    private VisionTransformer(Builder b) {
        this.config = b;
        ParamOptions p = b.params;
        ConvOptions patches = ConvOptions.builder().stride(b.patchSize, b.patchSize).build();
        patchEmbed = registerModule("patch_embed",
                new Conv2d(b.inChannels, b.dim, new long[] {b.patchSize, b.patchSize}, patches, true, p));
        Generator g = p.generator();
        registerParameter("cls_token", Init.truncatedNormal(Tensor.empty(DType.FLOAT32, 1, 1, b.dim),
                0, 0.02, -0.04, 0.04, g).requiresGrad(true));
        if (b.distillationToken) {
            registerParameter("dist_token", Init.truncatedNormal(Tensor.empty(DType.FLOAT32, 1, 1, b.dim), 0, 0.02, -0.04,
                    0.04, g).requiresGrad(true));
        }
        int tokens = patchCount() + prefixTokens();
        if (b.positions == Positions.LEARNED) {
            registerParameter("pos_embed", Init.truncatedNormal(Tensor.empty(DType.FLOAT32, 1, tokens, b.dim),
                    0, 0.02, -0.04, 0.04, g).requiresGrad(true));
        } else {
            registerBuffer("pos_embed", sincos2d(b.dim, b.imageSize / b.patchSize, prefixTokens()));
        }
        ModuleList<TransformerBlock> list = new ModuleList<>();
        for (int i = 0; i < b.depth; i++) {
            TransformerBlock.Builder block = TransformerBlock.builder(b.dim, b.heads)
                    .mlp(dev.cortado.nn.MLP.Kind.GELU, (long) b.mlpRatio * b.dim)
                    .norm(TransformerBlock.Norm.LAYER_NORM, 1e-6).dropout(b.dropout).layerScale(b.layerScale).params(p);
            if (b.norm == NormKind.PREP_BN) {
                block.prepBn(b.prepSteps, 1e-6);
            }
            if (b.attention == AttentionKind.SLAB_LINEAR) {
                block.slabAttention(b.imageSize / b.patchSize, prefixTokens(), b.slabKernel);
            }
            list.add(block.build());
        }
        blocks = registerModule("blocks", list);
        registerModule("norm", b.norm == NormKind.PREP_BN ? new ProgressiveRepBN(b.dim, 1e-6, b.prepSteps, p)
                : new LayerNorm(new long[] {b.dim}, 1e-6, true, true, p));
        registerModule("head", new Linear(b.dim, b.classes, true, p));
        hasDistHead = b.distillationToken;
        if (hasDistHead) {
            registerModule("head_dist", new Linear(b.dim, b.classes, true, p));
        }
    }

    /** Patches per image. */
    public int patchCount() {
        int side = config.imageSize / config.patchSize;
        return side * side;
    }

    private int prefixTokens() {
        return 1 + (config.distillationToken ? 1 : 0);
    }

    /**
     * MAE's fixed positions: for a side x side grid, half the channels encode the row and half the
     * column, each as [sin(pos * w_k), cos(pos * w_k)] with w_k = 10000^(-k / (dim / 4)); the
     * prefix tokens get zeros. Shape [1, prefix + side^2, dim].
     */
    static Tensor sincos2d(int dim, int side, int prefix) {
        if (dim % 4 != 0) {
            throw new IllegalArgumentException("VisionTransformer: sine-cosine positions need dim % 4 == 0, got " + dim);
        }
        int quarter = dim / 4;
        float[] e = new float[(prefix + side * side) * dim];
        for (int r = 0; r < side; r++) {
            for (int c = 0; c < side; c++) {
                int base = (prefix + r * side + c) * dim;
                for (int k = 0; k < quarter; k++) {
                    double w = Math.pow(10000, -(double) k / quarter);
                    e[base + k] = (float) Math.sin(r * w);
                    e[base + quarter + k] = (float) Math.cos(r * w);
                    e[base + 2 * quarter + k] = (float) Math.sin(c * w);
                    e[base + 3 * quarter + k] = (float) Math.cos(c * w);
                }
            }
        }
        return Tensor.of(e, 1, prefix + side * side, dim);
    }

    /** [N, C, H, W] images to [N, patches, dim] patch embeddings. */
    public Tensor embedPatches(Tensor images) {
        long n = images.size(0);
        try (Tensor conv = patchEmbed.apply(images); Tensor flat = conv.reshape(n, config.dim, patchCount());
             Tensor t = flat.transpose(1, 2)) {
            return t.contiguous();
        }
    }

    /** The width of the tokens. */
    public int dim() {
        return config.dim;
    }

    /** The side of a (square) patch, in pixels. */
    public int patchSize() {
        return config.patchSize;
    }

    /** The final-normed token sequence [N, prefix + patches, dim] of [N, C, H, W] images. */
    public Tensor features(Tensor images) {
        long n = images.size(0);
        Tensor positions = positions();
        Tensor x;
        try (Tensor patches = embedPatches(images); Tensor cls = parameter("cls_token").expand(n, 1, config.dim);
             Tensor dist = config.distillationToken ? parameter("dist_token").expand(n, 1, config.dim) : null;
             Tensor seq = dist == null ? Indexing.concat(1, cls, patches) : Indexing.concat(1, cls, dist, patches)) {
            x = Elementwise.add(seq, positions);
        }
        return encode(x);
    }

    /**
     * MAE's encoder: the final-normed sequence [N, 1 + K, dim] of the class token and only the
     * visible patches, {@code visible} int64 [N, K] holding each image's visible patch indices
     * (0 to patches - 1, row-major), each patch with its own position. The blocks never see the
     * other patches: their cost is that of a K-patch sequence.
     */
    public Tensor features(Tensor images, Tensor visible) {
        if (config.distillationToken) {
            throw new IllegalStateException("VisionTransformer.features(images, visible): not with a distillation token");
        }
        long n = images.size(0);
        long l = patchCount();
        if (visible.rank() != 2 || visible.size(0) != n || visible.dtype() != DType.INT64) {
            throw new IllegalArgumentException("VisionTransformer.features: visible must be int64 [" + n + ", K], got "
                    + visible.describe());
        }
        Tensor positions = positions();
        Tensor x;
        try (Tensor patches = embedPatches(images); Tensor patchPos = positions.narrow(1, 1, l);
             Tensor posed = Elementwise.add(patches, patchPos); Tensor rows = posed.reshape(n * l, config.dim);
             Tensor starts = Tensor.arange(0, n * l, l, DType.INT64, visible.device());
             Tensor offsets = starts.reshape(n, 1);
             Tensor index = Elementwise.add(visible, offsets); Tensor kept = Indexing.gather(rows, index, 0);
             Tensor clsPos = positions.narrow(1, 0, 1); Tensor cls = Elementwise.add(parameter("cls_token"), clsPos);
             Tensor clsN = cls.expand(n, 1, config.dim)) {
            x = Indexing.concat(1, clsN, kept);
        }
        return encode(x);
    }

    /** Positions [1, prefix + patches, dim]; looked up by name each call: Module.to(...) replaces the tensors. */
    private Tensor positions() {
        return config.positions == Positions.LEARNED ? parameter("pos_embed") : buffer("pos_embed");
    }

    /** The blocks and the final norm over a token sequence (consumed: closed here). */
    private Tensor encode(Tensor sequence) {
        Tensor x = sequence;
        for (TransformerBlock block : blocks) {
            Tensor in = x;
            try {
                x = block.apply(in);
            } finally {
                in.close();
            }
        }
        try (Tensor last = x) {
            return child("norm").apply(last);
        }
    }

    /**
     * SLAB's inference re-parameterization, for a model built with {@link Builder#prepBatchNorm}
     * whose norm schedule has ended: every PRepBN (evaluation-mode BatchNorm plus eta x, an affine
     * map per channel) is folded into the linear layers that read it (each block's Q/K/V
     * projections and first MLP layer, the heads for the final norm), leaving no normalization
     * work at inference. Puts the model in evaluation mode; the outputs are unchanged up to
     * rounding.
     *
     * @throws IllegalStateException when the model has LayerNorms or a norm's gamma is still above 0
     */
    public void reparameterize() {
        if (config.norm != NormKind.PREP_BN) {
            throw new IllegalStateException("VisionTransformer.reparameterize: the model was built with LayerNorm");
        }
        eval();
        for (TransformerBlock block : blocks) {
            block.reparameterize();
        }
        ProgressiveRepBN last = (ProgressiveRepBN) child("norm");
        if (hasDistHead) {
            last.foldInto(this, "head", "head_dist");
        } else {
            last.foldInto(this, "head");
        }
    }

    /**
     * Class logits [N, classes]. With a distillation token: in training the class head's logits
     * (use {@link #forwardBoth} to train both heads), in evaluation the mean of both heads, as DeiT.
     */
    @Override
    public Tensor forward(Tensor images) {
        if (!hasDistHead || isTraining()) {
            try (Tensor f = features(images); Tensor pooled = pool(f)) {
                return child("head").apply(pooled);
            }
        }
        Tensor[] both = forwardBoth(images);
        try (Tensor a = both[0]; Tensor d = both[1]; Tensor sum = Elementwise.add(a, d)) {
            return Elementwise.mul(sum, 0.5);
        }
    }

    /** DeiT: {class-head logits, distillation-head logits}, each [N, classes]. */
    public Tensor[] forwardBoth(Tensor images) {
        if (!hasDistHead) {
            throw new IllegalStateException("VisionTransformer.forwardBoth: built without a distillation token");
        }
        try (Tensor f = features(images); Tensor c = f.select(1, 0); Tensor d = f.select(1, 1)) {
            return new Tensor[] {child("head").apply(c), child("head_dist").apply(d)};
        }
    }

    private Tensor pool(Tensor features) {
        if (config.pooling == Pooling.CLASS_TOKEN) {
            return features.select(1, 0);
        }
        try (Tensor patches = features.narrow(1, prefixTokens(), patchCount())) {
            return Reductions.mean(patches, false, 1);
        }
    }

    @Override
    protected String extraRepr() {
        return "image=" + config.imageSize + ", patch=" + config.patchSize + ", dim=" + config.dim + ", depth="
                + config.depth + ", heads=" + config.heads + ", " + config.positions + ", " + config.pooling
                + (config.distillationToken ? ", distillation token" : "") + (config.layerScale > 0 ? ", layer scale" : "")
                + (config.attention == AttentionKind.SLAB_LINEAR ? ", SLAB linear attention" : "")
                + (config.norm == NormKind.PREP_BN ? ", PRepBN" : "");
    }
}
