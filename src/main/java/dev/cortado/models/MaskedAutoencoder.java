package dev.cortado.models;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.LayerNorm;
import dev.cortado.nn.Linear;
import dev.cortado.nn.MLP;
import dev.cortado.nn.Module;
import dev.cortado.nn.ModuleList;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.TransformerBlock;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * The masked autoencoder (He et al., 2022) around a {@link VisionTransformer} encoder: each image
 * keeps a random subset of its patches (a fresh subset per sample and call; {@code maskRatio} of
 * them removed); the encoder sees the class token and the visible patches only
 * ({@link VisionTransformer#features(Tensor, Tensor)}); a lightweight decoder projects the encoded
 * tokens to its own width, puts a shared learned mask token at every removed patch, restores the
 * image order, adds fixed sine-cosine positions, runs its transformer blocks and predicts every
 * patch's pixels. The loss is the mean squared error over the removed patches only, against the
 * pixels normalised per patch (mean 0, variance 1) when {@code normPixels} is on.
 *
 * <p>After pre-training, {@link #encoder()} is fine-tuned as an ordinary classifier.
 */
public final class MaskedAutoencoder extends Module {
    private final VisionTransformer encoder;
    private final Builder config;
    private final Linear decoderEmbed;
    private final ModuleList<TransformerBlock> decoderBlocks;
    private final LayerNorm decoderNorm;
    private final Linear decoderPred;
    private final int patches;
    private final int patchPixels;

    /** A builder around {@code encoder} (closed with this autoencoder). */
    public static Builder builder(VisionTransformer encoder) {
        return new Builder(encoder);
    }

    /** Options of a {@link MaskedAutoencoder}; the defaults are the paper's ViT-B decoder. */
    public static final class Builder {
        private final VisionTransformer encoder;
        private int channels = 3;
        private int decoderDim = 512;
        private int decoderDepth = 8;
        private int decoderHeads = 16;
        private double maskRatio = 0.75;
        private boolean normPixels = true;
        private Generator generator = Generator.global();
        private ParamOptions params = ParamOptions.seeded(Generator.DEFAULT_SEED);

        private Builder(VisionTransformer encoder) {
            this.encoder = encoder;
        }

        /** Channels of the images (as the encoder's patch embedding takes them). */
        public Builder channels(int n) {
            channels = positive("channels", n);
            return this;
        }

        /** Decoder width, depth and heads (512, 8, 16 in the paper). */
        public Builder decoder(int dim, int depth, int heads) {
            decoderDim = positive("decoder dim", dim);
            decoderDepth = positive("decoder depth", depth);
            decoderHeads = positive("decoder heads", heads);
            if (dim % heads != 0 || dim % 4 != 0) {
                throw new IllegalArgumentException("MaskedAutoencoder: decoder dim " + dim
                        + " must be a multiple of 4 and of the heads " + heads);
            }
            return this;
        }

        /** The fraction of patches removed from each image (0.75 in the paper). */
        public Builder maskRatio(double r) {
            if (!(r >= 0 && r < 1)) {
                throw new IllegalArgumentException("MaskedAutoencoder: mask ratio must be in [0, 1), got " + r);
            }
            maskRatio = r;
            return this;
        }

        /** Targets normalised per patch (the paper's better variant; on by default). */
        public Builder normPixels(boolean on) {
            normPixels = on;
            return this;
        }

        /** Where the random masks come from. */
        public Builder generator(Generator g) {
            generator = g;
            return this;
        }

        /** Parameter dtype, device and initialisation generator of the decoder. */
        public Builder params(ParamOptions p) {
            params = p;
            return this;
        }

        /** The autoencoder. */
        public MaskedAutoencoder build() {
            return new MaskedAutoencoder(this);
        }

        private static int positive(String what, int n) {
            if (n < 1) {
                throw new IllegalArgumentException("MaskedAutoencoder: " + what + " must be positive, got " + n);
            }
            return n;
        }
    }

    /**
     * Which patches an image batch keeps.
     *
     * @param visible int64 [N, K], the kept patch indices of each image
     * @param restore int64 [N, L], where patch l sits in the order visible-then-removed
     * @param mask    float32 [N, L], 1 where the patch was removed, 0 where visible
     */
    public record Masking(Tensor visible, Tensor restore, Tensor mask) implements AutoCloseable {
        /**
         * A masking from each image's kept patch indices ({@code visible[n]}, distinct, all
         * images the same count) out of {@code patches}, on {@code device}.
         */
        public static Masking of(long[][] visible, int patches, Device device) {
            int n = visible.length;
            int k = visible[0].length;
            long[] vis = new long[n * k];
            long[] restore = new long[n * patches];
            float[] mask = new float[n * patches];
            for (int i = 0; i < n; i++) {
                if (visible[i].length != k) {
                    throw new IllegalArgumentException("MaskedAutoencoder.Masking: every image must keep " + k
                            + " patches, image " + i + " keeps " + visible[i].length);
                }
                Arrays.fill(mask, i * patches, (i + 1) * patches, 1f);
                for (int j = 0; j < k; j++) {
                    long p = visible[i][j];
                    if (p < 0 || p >= patches || mask[i * patches + (int) p] == 0f) {
                        throw new IllegalArgumentException("MaskedAutoencoder.Masking: image " + i
                                + " keeps patch " + p + " twice or out of [0, " + patches + ")");
                    }
                    vis[i * k + j] = p;
                    mask[i * patches + (int) p] = 0f;
                    restore[i * patches + (int) p] = j;
                }
                int next = k;
                for (int p = 0; p < patches; p++) {
                    if (mask[i * patches + p] == 1f) {
                        restore[i * patches + p] = next++;
                    }
                }
            }
            return new Masking(Tensor.of(vis, device, n, k), Tensor.of(restore, device, n, patches),
                    Tensor.of(mask, device, n, patches));
        }

        @Override
        public void close() {
            visible.close();
            restore.close();
            mask.close();
        }
    }

    /**
     * What {@link #forward(Tensor, Masking)} gives.
     *
     * @param loss       the scalar loss over the removed patches
     * @param prediction every patch's predicted pixels [N, L, p * p * C]
     */
    public record Output(Tensor loss, Tensor prediction) implements AutoCloseable {
        @Override
        public void close() {
            loss.close();
            prediction.close();
        }
    }

    private MaskedAutoencoder(Builder b) {
        this.config = b;
        this.encoder = registerModule("encoder", b.encoder);
        ParamOptions p = b.params;
        this.patches = encoder.patchCount();
        this.patchPixels = encoder.patchSize() * encoder.patchSize() * b.channels;
        decoderEmbed = registerModule("decoder_embed", new Linear(encoder.dim(), b.decoderDim, true, p));
        registerParameter("mask_token", unscoped(() -> dev.cortado.nn.Init.normal(
                Tensor.empty(DType.FLOAT32, 1, 1, b.decoderDim), 0, 0.02, p.generator())));
        int side = (int) Math.round(Math.sqrt(patches));
        registerBuffer("decoder_pos_embed", unscoped(() -> VisionTransformer.sincos2d(b.decoderDim, side, 1)));
        ModuleList<TransformerBlock> list = new ModuleList<>();
        for (int i = 0; i < b.decoderDepth; i++) {
            list.add(TransformerBlock.builder(b.decoderDim, b.decoderHeads).mlp(MLP.Kind.GELU, 4L * b.decoderDim)
                    .norm(TransformerBlock.Norm.LAYER_NORM, 1e-6).params(p).build());
        }
        decoderBlocks = registerModule("decoder_blocks", list);
        decoderNorm = registerModule("decoder_norm", new LayerNorm(new long[] {b.decoderDim}, 1e-6, true, true, p));
        decoderPred = registerModule("decoder_pred", new Linear(b.decoderDim, patchPixels, true, p));
    }

    /** The encoder, to fine-tune after pre-training. */
    public VisionTransformer encoder() {
        return encoder;
    }

    /**
     * A fresh random masking of {@code n} images on {@code device}: each keeps
     * {@code round(L * (1 - maskRatio))} patches, those of the smallest uniform noise (the paper's).
     */
    public Masking randomMasking(int n, Device device) {
        int keep = Math.max(1, (int) Math.round(patches * (1 - config.maskRatio)));
        float[] noise;
        try (var off = Autograd.noGrad();
             Tensor u = config.generator.uniform(0, 1, DType.FLOAT32, device, n, patches)) {
            noise = u.toFloatArray();
        }
        long[][] visible = new long[n][keep];
        for (int i = 0; i < n; i++) {
            Integer[] order = new Integer[patches];
            for (int p = 0; p < patches; p++) {
                order[p] = p;
            }
            int row = i * patches;
            Arrays.sort(order, (a, c) -> Float.compare(noise[row + a], noise[row + c]));
            for (int j = 0; j < keep; j++) {
                visible[i][j] = order[j];
            }
        }
        return Masking.of(visible, patches, device);
    }

    /** The pre-training loss of a batch under a fresh random masking. */
    @Override
    public Tensor forward(Tensor images) {
        try (Masking m = randomMasking((int) images.size(0), images.device())) {
            Output out = forward(images, m);
            out.prediction().close();
            return out.loss();
        }
    }

    /** The loss and predictions of a batch under {@code masking}. */
    public Output forward(Tensor images, Masking masking) {
        long n = images.size(0);
        int dd = config.decoderDim;
        Tensor decoded;
        try (Tensor encoded = encoder.features(images, masking.visible()); Tensor x = decoderEmbed.apply(encoded)) {
            long k = x.size(1) - 1;
            try (Tensor cls = x.narrow(1, 0, 1); Tensor vis = x.narrow(1, 1, k);
                 Tensor masks = parameter("mask_token").expand(n, patches - k, dd);
                 Tensor shuffled = Indexing.concat(1, vis, masks); Tensor rows = shuffled.reshape(n * patches, dd);
                 Tensor starts = Tensor.arange(0, n * patches, patches, DType.INT64, images.device());
                 Tensor offsets = starts.reshape(n, 1);
                 Tensor index = Elementwise.add(masking.restore(), offsets);
                 Tensor ordered = Indexing.gather(rows, index, 0); Tensor seq = Indexing.concat(1, cls, ordered)) {
                decoded = Elementwise.add(seq, buffer("decoder_pos_embed"));
            }
        }
        for (TransformerBlock block : decoderBlocks) {
            try (Tensor in = decoded) {
                decoded = block.apply(in);
            }
        }
        Tensor prediction;
        try (Tensor d = decoded; Tensor normed = decoderNorm.apply(d); Tensor patchTokens = normed.narrow(1, 1, patches)) {
            prediction = decoderPred.apply(patchTokens);
        }
        try (Tensor target = patchify(images)) {
            return new Output(loss(prediction, target, masking.mask(), config.normPixels), prediction);
        } catch (RuntimeException | Error e) {
            prediction.close();
            throw e;
        }
    }

    /** Images [N, C, H, W] as patches [N, L, p * p * C], each patch's pixels in (row, column, channel) order. */
    public Tensor patchify(Tensor images) {
        long n = images.size(0);
        long c = images.size(1);
        int p = encoder.patchSize();
        long h = images.size(2) / p;
        long w = images.size(3) / p;
        try (Tensor a = images.reshape(n, c, h, p, w, p); Tensor b = a.permute(0, 2, 4, 3, 5, 1);
             Tensor cont = b.contiguous()) {
            return cont.reshape(n, h * w, (long) p * p * c);
        }
    }

    /**
     * MAE's loss: per patch the mean over its pixels of (prediction - target)^2, then the mean over
     * the removed patches ({@code mask} 1); visible patches contribute nothing (nor gradient). With
     * {@code normPixels}, each target patch is first normalised by its mean and unbiased variance
     * (plus 1e-6), as the reference implementation.
     */
    public static Tensor loss(Tensor prediction, Tensor target, Tensor mask, boolean normPixels) {
        Tensor t = target;
        if (normPixels) {
            try (Tensor mean = Reductions.mean(target, true, -1); Tensor var = Reductions.var(target, 1, true, -1);
                 Tensor centred = Elementwise.sub(target, mean); Tensor eps = Elementwise.add(var, 1e-6);
                 Tensor std = Elementwise.sqrt(eps)) {
                t = Elementwise.div(centred, std);
            }
        }
        try (Tensor owned = t != target ? t : null; Tensor diff = Elementwise.sub(prediction, t);
             Tensor sq = Elementwise.mul(diff, diff); Tensor perPatch = Reductions.mean(sq, false, -1);
             Tensor masked = Elementwise.mul(perPatch, mask); Tensor total = Reductions.sum(masked);
             Tensor count = Reductions.sum(mask)) {
            return Elementwise.div(total, count);
        }
    }

    @Override
    protected String extraRepr() {
        return "mask_ratio=" + config.maskRatio + ", decoder=" + config.decoderDim + "x" + config.decoderDepth
                + (config.normPixels ? ", normalised pixel targets" : "");
    }
}
