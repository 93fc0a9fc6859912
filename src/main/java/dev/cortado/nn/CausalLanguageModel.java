package dev.cortado.nn;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Attention;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.KvCache;
import dev.cortado.ops.PagedKvCache;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Random;

/**
 * A GPT-style decoder for language modelling: token embedding, pre-norm transformer blocks
 * (causal self-attention with grouped-query heads and rotary positions, RMSNorm, SwiGLU MLP),
 * a final RMSNorm and an untied output projection. {@link #forward} maps token ids [B, T] to
 * logits [B, T, vocab] for training; {@link #generate} continues a prompt one token at a time
 * from a {@link PagedKvCache} (each step runs the blocks on the new token only and attends the
 * cached keys and values), sampling with a {@link Sampling} policy.
 */
public class CausalLanguageModel extends Module {

    /**
     * Sizes; {@code kvHeads} divides {@code heads} (GQA), head dim = dim / heads; {@code softcap}
     * &gt; 0 soft-caps the attention scores (Gemma 2 style) in training and in KV-cache decoding;
     * {@code moe} non-null makes every block's feed-forward a {@link MoeFeedForward} of SwiGLU
     * experts (then {@code mlpHidden} is unused; {@link #auxiliaryLoss()} gives the router losses).
     */
    public record Config(int vocab, int dim, int layers, int heads, int kvHeads, int mlpHidden, int context,
                         double dropout, double softcap, MoeFeedForward.Options moe) {
        /** A dense model. */
        public Config(int vocab, int dim, int layers, int heads, int kvHeads, int mlpHidden, int context,
                      double dropout, double softcap) {
            this(vocab, dim, layers, heads, kvHeads, mlpHidden, context, dropout, softcap, null);
        }

        /** Without soft-capping. */
        public Config(int vocab, int dim, int layers, int heads, int kvHeads, int mlpHidden, int context,
                      double dropout) {
            this(vocab, dim, layers, heads, kvHeads, mlpHidden, context, dropout, 0, null);
        }

        public Config {
            if (vocab < 1 || dim < 1 || layers < 1 || heads < 1 || kvHeads < 1 || context < 1) {
                throw new IllegalArgumentException("CausalLanguageModel: sizes must be positive: " + this);
            }
            if (dim % heads != 0 || heads % kvHeads != 0) {
                throw new IllegalArgumentException("CausalLanguageModel: heads (" + heads + ") must divide dim (" + dim
                        + ") and kv heads (" + kvHeads + ") must divide heads");
            }
            // checked here, before any parameter is allocated (the layers check them again)
            if (mlpHidden < 1) {
                throw new IllegalArgumentException("CausalLanguageModel: mlpHidden must be positive: " + this);
            }
            if (!(dropout >= 0 && dropout < 1)) {
                throw new IllegalArgumentException("CausalLanguageModel: dropout must be in [0, 1): " + this);
            }
            if (!(softcap >= 0) || Double.isInfinite(softcap)) {
                throw new IllegalArgumentException("CausalLanguageModel: softcap must be finite and >= 0: " + this);
            }
        }

        public int headDim() {
            return dim / heads;
        }
    }

    private final Config config;

    public CausalLanguageModel(Config c, ParamOptions p) {
        this.config = c;
        try {
            build(c, p);
        } catch (RuntimeException | Error e) {
            close(); // the parameters made before the failure
            throw e;
        }
    }

    private void build(Config c, ParamOptions p) {
        registerModule("embed", new Embedding(c.vocab(), c.dim(), p));
        ModuleList<TransformerBlock> blocks = new ModuleList<>();
        registerModule("blocks", blocks); // registered first: a failure in block i closes blocks 0..i-1
        for (int i = 0; i < c.layers(); i++) {
            blocks.add(TransformerBlock.builder(c.dim(), c.heads()).kvHeads(c.kvHeads()).llama(c.mlpHidden())
                    .layout(Attention.Layout.BSHD).dropout(c.dropout()).softcap(c.softcap()).moe(c.moe()).params(p).build());
        }
        registerModule("norm", new RMSNorm(new long[] {c.dim()}, 1e-6, true, p));
        registerModule("head", new Linear(c.dim(), c.vocab(), false, p));
        // GPT-2 style: small residual-path outputs keep the initial loss near log(vocab)
        try (Autograd.GradMode off = Autograd.noGrad()) {
            for (TransformerBlock b : blocks) {
                Init.normal(((Linear) b.child("attn").child("wo")).weight(), 0, 0.02 / Math.sqrt(2.0 * c.layers()),
                        p.generator());
            }
            Init.normal(((Linear) child("head")).weight(), 0, 0.02, p.generator());
        }
    }

    public Config config() {
        return config;
    }

    @SuppressWarnings("unchecked")
    private ModuleList<TransformerBlock> blocks() {
        return (ModuleList<TransformerBlock>) child("blocks");
    }

    /** Logits [B, T, vocab] of the next token at every position of {@code tokens} [B, T] (int64). */
    @Override
    public Tensor forward(Tensor tokens) {
        if (tokens.rank() != 2 || tokens.size(1) > config.context()) {
            throw new IllegalArgumentException("CausalLanguageModel: tokens must be [B, T] with T <= " + config.context()
                    + ", got " + tokens.describe());
        }
        try (Scope s = Scope.open()) {
            Tensor h = child("embed").forward(tokens);
            for (TransformerBlock b : blocks()) {
                h = b.forward(h);
            }
            return s.keep(child("head").forward(child("norm").forward(h)));
        }
    }

    /**
     * The sum of the blocks' router losses ({@link MoeFeedForward#auxiliaryLoss()}) of the last
     * forward, a new scalar to add to the training loss; null for a dense model.
     */
    public Tensor auxiliaryLoss() {
        if (config.moe() == null) {
            return null;
        }
        Tensor total = null;
        for (TransformerBlock b : blocks()) {
            Tensor a = ((MoeFeedForward) b.child("mlp")).auxiliaryLoss();
            if (a == null) {
                throw new IllegalStateException("CausalLanguageModel: auxiliaryLoss() before the first forward");
            }
            total = total == null ? Elementwise.mul(a, 1.0) : Elementwise.add(total, a);
        }
        return total;
    }

    /** A KV cache sized for {@code sequences} sequences of up to {@code maxTokens} tokens each. */
    public PagedKvCache newCache(int sequences, int maxTokens, Device device) {
        int pageSize = 16;
        int pagesPerSeq = (maxTokens + pageSize - 1) / pageSize;
        return PagedKvCache.builder().layers(config.layers()).pageSize(pageSize).pages(sequences * pagesPerSeq)
                .kvHeads(config.kvHeads()).headDim(config.headDim()).dtype(DType.FLOAT32).device(device)
                .maxSequences(sequences).maxPagesPerSequence(pagesPerSeq).build();
    }

    /**
     * Runs the new tokens {@code [S, 1]} of the sequences {@code seqs} at position {@code position}
     * through the model, appending their keys and values to {@code cache}; returns logits [S, vocab].
     */
    public Tensor decodeStep(PagedKvCache cache, int[] seqs, Tensor tokens, long position) {
        int s = seqs.length;
        int hd = config.headDim();
        try (Autograd.GradMode off = Autograd.noGrad(); Scope scope = Scope.open();
             PagedKvCache.Step step = cache.step(seqs, 1)) {
            Tensor pos = Tensor.of(new long[] {position}, 1).to(tokens.device());
            Tensor x = child("embed").forward(tokens);
            int layer = 0;
            for (TransformerBlock b : blocks()) {
                MultiheadAttention attn = (MultiheadAttention) b.child("attn");
                MultiheadAttention.Options o = attn.options();
                Tensor n1 = b.child("norm1").forward(x);
                Tensor q = attn.child("wq").forward(n1).view(s, 1, config.heads(), hd);
                Tensor k = attn.child("wk").forward(n1).view(s, 1, config.kvHeads(), hd);
                Tensor v = attn.child("wv").forward(n1).view(s, 1, config.kvHeads(), hd);
                q = Attention.rope(q, pos, o.ropeDim(), o.ropeBase(), o.ropeInterleaved(), Attention.Layout.BSHD);
                k = Attention.rope(k, pos, o.ropeDim(), o.ropeBase(), o.ropeInterleaved(), Attention.Layout.BSHD);
                step.append(layer, k, v);
                Tensor a = step.attention(layer, q, KvCache.DecodeOptions.DEFAULT.withSoftcap(o.softcap()))
                        .reshape(s, 1, (long) config.heads() * hd);
                Tensor h = Elementwise.add(x, attn.child("wo").forward(a));
                x = Elementwise.add(h, b.child("mlp").forward(b.child("norm2").forward(h)));
                layer++;
            }
            Tensor logits = child("head").forward(child("norm").forward(x));
            return scope.keep(logits.reshape(s, config.vocab()));
        }
    }

    /**
     * Continues {@code prompt} by {@code newTokens} tokens: the prompt is fed through the cache one
     * token at a time, then each sampled token is fed back. When the context is full, the cache
     * restarts from the last half-context of tokens (a sliding window, so positions never exceed
     * what the model was trained on). Returns the generated ids only.
     */
    public long[] generate(long[] prompt, int newTokens, Sampling sampling, Random random) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("generate: the prompt needs at least one token");
        }
        Device device = ((Embedding) child("embed")).weight().device();
        boolean wasTraining = isTraining();
        eval();
        int context = config.context();
        long[] history = new long[prompt.length + newTokens];
        System.arraycopy(prompt, 0, history, 0, prompt.length);
        int length = prompt.length;
        long[] out = new long[newTokens];
        try (PagedKvCache cache = newCache(1, context, device)) {
            int[] seqs = {cache.newSequence()};
            int position = 0;
            float[] logits = null;
            for (int i = Math.max(0, prompt.length - context); i < prompt.length; i++) {
                logits = step(cache, seqs, prompt[i], position++, device);
            }
            for (int i = 0; i < newTokens; i++) {
                out[i] = sampling.sample(logits, random);
                history[length++] = out[i];
                if (i + 1 == newTokens) {
                    break;
                }
                if (position == context) {
                    cache.free(seqs[0]);
                    seqs[0] = cache.newSequence();
                    position = 0;
                    for (int j = length - context / 2; j < length - 1; j++) {
                        step(cache, seqs, history[j], position++, device);
                    }
                }
                logits = step(cache, seqs, out[i], position++, device);
            }
        } finally {
            train(wasTraining);
        }
        return out;
    }

    private float[] step(PagedKvCache cache, int[] seqs, long token, long position, Device device) {
        try (Tensor t = Tensor.of(new long[] {token}, 1, 1); Tensor td = t.to(device);
             Tensor logits = decodeStep(cache, seqs, td, position)) {
            return logits.toFloatArray();
        }
    }

    @Override
    protected String extraRepr() {
        return config.toString();
    }
}
