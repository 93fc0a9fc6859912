package dev.cortado.ops;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A paged key/value cache for autoregressive decoding: per layer, K and V pools of fixed-size
 * pages [pages, pageSize, kvHeads, headDim] on one device; per sequence, a block table (the pool
 * pages holding its tokens, in order) and a length. Pages come from one free list shared by all
 * layers (page p is slot p of every layer's pools), so sequences of different lengths share the
 * pool without fragmentation and {@link #free} returns a sequence's pages at once. The tables and
 * the allocator are plain Java arrays; the kernels get per-step device copies.
 *
 * <p>A decoding step for a batch of sequences:
 * <pre>{@code
 * try (PagedKvCache.Step step = cache.step(seqs, 1)) {   // reserves pages, lengths += 1
 *     for (int layer = 0; layer < layers; layer++) {
 *         step.append(layer, kNew, vNew);                 // [S, 1, kvHeads, headDim]
 *         Tensor o = step.attention(layer, q);            // q [S, 1, heads, headDim]
 *     }
 * }
 * }</pre>
 * Not thread-safe: one decoding loop owns a cache.
 */
public final class PagedKvCache implements AutoCloseable {

    /** Thrown when the pool has no free page for a step; nothing was reserved. */
    public static final class CacheFullException extends IllegalStateException {
        private static final long serialVersionUID = 1L;

        CacheFullException(String message) {
            super(message);
        }
    }

    /** The cache's geometry. */
    public record Config(int layers, int pages, int pageSize, int kvHeads, int headDim, DType dtype, Device device,
                         int maxSequences, int maxPagesPerSequence) {
        public Config {
            if (layers < 1 || pages < 1 || pageSize < 1 || kvHeads < 1 || headDim < 1 || maxSequences < 1
                    || maxPagesPerSequence < 1) {
                throw new IllegalArgumentException("PagedKvCache: layers, pages, pageSize, kvHeads, headDim, maxSequences"
                        + " and maxPagesPerSequence must be positive, got " + layers + ", " + pages + ", " + pageSize
                        + ", " + kvHeads + ", " + headDim + ", " + maxSequences + ", " + maxPagesPerSequence);
            }
            if (dtype != DType.FLOAT32 && dtype != DType.FLOAT16 && dtype != DType.BFLOAT16) {
                throw new IllegalArgumentException("PagedKvCache: dtype " + dtype + " is not supported (float32, float16, bfloat16)");
            }
            if (device == null) {
                device = Device.CPU;
            }
        }

        /** Bytes of K and V of one token over all layers. */
        public long bytesPerToken() {
            return 2L * layers * kvHeads * headDim * dtype.byteSize();
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The sizes of a paged KV cache (layers, heads, head size, page size, pages), set one by one. */
    public static final class Builder {
        private int layers = 1;
        private int pages;
        private int pageSize = 16;
        private int kvHeads;
        private int headDim;
        private DType dtype = DType.FLOAT32;
        private Device device = Device.CPU;
        private int maxSequences = 64;
        private int maxPagesPerSequence;

        private Builder() {
        }

        public Builder layers(int n) {
            layers = n;
            return this;
        }

        /** Pages in the pool (of every layer). */
        public Builder pages(int n) {
            pages = n;
            return this;
        }

        /** Tokens per page (16 by default). */
        public Builder pageSize(int n) {
            pageSize = n;
            return this;
        }

        public Builder kvHeads(int n) {
            kvHeads = n;
            return this;
        }

        public Builder headDim(int n) {
            headDim = n;
            return this;
        }

        public Builder dtype(DType t) {
            dtype = t;
            return this;
        }

        public Builder device(Device d) {
            device = d;
            return this;
        }

        /** Sequence slots (rows of the block table); 64 by default. */
        public Builder maxSequences(int n) {
            maxSequences = n;
            return this;
        }

        /** Block-table row length: the longest sequence is this many pages (all pages by default). */
        public Builder maxPagesPerSequence(int n) {
            maxPagesPerSequence = n;
            return this;
        }

        public PagedKvCache build() {
            return new PagedKvCache(new Config(layers, pages, pageSize, kvHeads, headDim, dtype, device, maxSequences,
                    maxPagesPerSequence > 0 ? maxPagesPerSequence : Math.max(1, pages)));
        }
    }

    private final Config config;
    private final Tensor[] keys;
    private final Tensor[] values;
    private final int[] table;      // [maxSequences, maxPagesPerSequence], -1 where unused
    private final int[] lengths;    // tokens per sequence slot
    private final int[] pageCount;  // pages held per sequence slot
    private final boolean[] live;
    private final int[] freeList;   // stack of free pages
    private int freeTop;
    private boolean closed;

    private PagedKvCache(Config c) {
        this.config = c;
        keys = new Tensor[c.layers()];
        values = new Tensor[c.layers()];
        try {
            for (int l = 0; l < c.layers(); l++) {
                keys[l] = Tensor.zeros(c.dtype(), c.device(), c.pages(), c.pageSize(), c.kvHeads(), c.headDim());
                values[l] = Tensor.zeros(c.dtype(), c.device(), c.pages(), c.pageSize(), c.kvHeads(), c.headDim());
            }
        } catch (RuntimeException | Error e) {
            closePools();
            throw e;
        }
        table = new int[c.maxSequences() * c.maxPagesPerSequence()];
        Arrays.fill(table, -1);
        lengths = new int[c.maxSequences()];
        pageCount = new int[c.maxSequences()];
        live = new boolean[c.maxSequences()];
        freeList = new int[c.pages()];
        for (int i = 0; i < c.pages(); i++) {
            freeList[i] = c.pages() - 1 - i;  // page 0 on top
        }
        freeTop = c.pages();
    }

    public Config config() {
        return config;
    }

    /** The K pool of a layer, [pages, pageSize, kvHeads, headDim] (owned by the cache). */
    public Tensor keys(int layer) {
        ensureOpen();
        return keys[layer];
    }

    /** The V pool of a layer (owned by the cache). */
    public Tensor values(int layer) {
        ensureOpen();
        return values[layer];
    }

    /** A new empty sequence; returns its id (its block-table row). */
    public int newSequence() {
        ensureOpen();
        for (int s = 0; s < live.length; s++) {
            if (!live[s]) {
                live[s] = true;
                lengths[s] = 0;
                pageCount[s] = 0;
                return s;
            }
        }
        throw new IllegalStateException("PagedKvCache: all " + live.length + " sequence slots are in use; free one");
    }

    /** Ends a sequence: its pages go back to the free list. */
    public void free(int seq) {
        requireLive(seq);
        int mp = config.maxPagesPerSequence();
        for (int i = 0; i < pageCount[seq]; i++) {  // the last page ends on top: reuse runs backwards
            freeList[freeTop++] = table[seq * mp + i];
            table[seq * mp + i] = -1;
        }
        pageCount[seq] = 0;
        lengths[seq] = 0;
        live[seq] = false;
    }

    /** Cached tokens of a sequence. */
    public int length(int seq) {
        requireLive(seq);
        return lengths[seq];
    }

    /** The pool pages of a sequence, in order (a copy). */
    public int[] pages(int seq) {
        requireLive(seq);
        int mp = config.maxPagesPerSequence();
        return Arrays.copyOfRange(table, seq * mp, seq * mp + pageCount[seq]);
    }

    public int freePages() {
        return freeTop;
    }

    public int usedPages() {
        return config.pages() - freeTop;
    }

    private void requireLive(int seq) {
        ensureOpen();
        if (seq < 0 || seq >= live.length || !live[seq]) {
            throw new IllegalArgumentException("PagedKvCache: sequence " + seq + " is not live (slots 0.." + (live.length - 1)
                    + ")");
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("PagedKvCache is closed");
        }
    }

    private String poolText() {
        return "a pool of " + config.pages() + " pages of " + config.pageSize() + " tokens, [" + config.pages() + ", "
                + config.pageSize() + ", " + config.kvHeads() + ", " + config.headDim() + "] " + config.dtype()
                + " per layer and K/V, " + config.layers() + " layers";
    }

    /** A step appending {@code tokens} tokens to each of {@code seqs}. */
    public Step step(int[] seqs, int tokens) {
        int[] t = new int[seqs.length];
        Arrays.fill(t, tokens);
        return step(seqs, t, false);
    }

    /**
     * A ragged step: sequence seqs[i] grows by tokens[i] (new keys/values are then padded to
     * max(tokens) rows; rows past tokens[i] are ignored, and queries are aligned at each
     * sequence's end).
     */
    public Step step(int[] seqs, int[] tokens) {
        return step(seqs, tokens, true);
    }

    private Step step(int[] seqs, int[] tokens, boolean ragged) {
        ensureOpen();
        if (seqs.length != tokens.length) {
            throw new IllegalArgumentException("PagedKvCache.step: " + seqs.length + " sequences but " + tokens.length
                    + " token counts");
        }
        int ps = config.pageSize();
        int mp = config.maxPagesPerSequence();
        // check everything first: a failed step reserves nothing
        int need = 0;
        boolean[] seen = new boolean[live.length];
        for (int i = 0; i < seqs.length; i++) {
            int s = seqs[i];
            requireLive(s);
            if (seen[s]) {
                throw new IllegalArgumentException("PagedKvCache.step: sequence " + s + " appears twice");
            }
            seen[s] = true;
            if (tokens[i] < 0) {
                throw new IllegalArgumentException("PagedKvCache.step: sequence " + s + ": negative token count " + tokens[i]);
            }
            long end = (long) lengths[s] + tokens[i];
            if (end > (long) mp * ps) {
                throw new IllegalArgumentException("PagedKvCache.step: sequence " + s + " would hold " + end
                        + " tokens but a block-table row has " + mp + " pages of " + ps + " tokens (" + (long) mp * ps
                        + "); raise maxPagesPerSequence");
            }
            int pagesNeeded = (int) ((end + ps - 1) / ps) - pageCount[s];
            if (pagesNeeded > 0 && need + pagesNeeded > freeTop) {
                int available = freeTop - need;  // pages this sequence still gets
                throw new CacheFullException("cache full: sequence " + s + " needs page " + (config.pages() + 1) + " of "
                        + config.pages() + " (its page " + (pageCount[s] + available + 1) + ", growing from " + lengths[s]
                        + " to "
                        + end + " tokens; " + freeTop + " free pages, " + need + " already claimed by this step; "
                        + poolText() + "); free a sequence or build a larger cache");
            }
            need += Math.max(0, pagesNeeded);
        }
        int[] start = new int[seqs.length];
        int[] end = new int[seqs.length];
        int maxPages = 1;
        for (int i = 0; i < seqs.length; i++) {
            int s = seqs[i];
            start[i] = lengths[s];
            end[i] = lengths[s] + tokens[i];
            int pagesNeeded = (end[i] + ps - 1) / ps;
            while (pageCount[s] < pagesNeeded) {
                table[s * mp + pageCount[s]++] = freeList[--freeTop];
            }
            lengths[s] = end[i];
            maxPages = Math.max(maxPages, pageCount[s]);
        }
        int[] rows = new int[seqs.length * maxPages];
        int maxLen = 0;
        for (int i = 0; i < seqs.length; i++) {
            System.arraycopy(table, seqs[i] * mp, rows, i * maxPages, maxPages);
            maxLen = Math.max(maxLen, end[i]);
        }
        int maxT = 0;
        for (int t : tokens) {
            maxT = Math.max(maxT, t);
        }
        return new Step(seqs.clone(), rows, maxPages, start, end, ragged ? tokens.clone() : null, maxT, maxLen);
    }

    /**
     * The device-side tables of one step: block table [S, pages], lengths before and after. Holds
     * device tensors: close it.
     */
    public final class Step implements AutoCloseable {
        private final int[] seqs;
        private final int maxTokens;
        private final int maxLen;
        private final List<Tensor> owned = new ArrayList<>();
        private final Tensor blockTable;
        private final Tensor startLens;
        private final Tensor endLens;
        private final Tensor newLens;

        private Step(int[] seqs, int[] rows, int maxPages, int[] start, int[] end, int[] ragged, int maxTokens,
                     int maxLen) {
            this.seqs = seqs;
            this.maxTokens = maxTokens;
            this.maxLen = maxLen;
            try {
                blockTable = upload(Tensor.of(rows, seqs.length, maxPages));
                startLens = upload(Tensor.of(start, seqs.length));
                endLens = upload(Tensor.of(end, seqs.length));
                newLens = ragged == null ? null : upload(Tensor.of(ragged, seqs.length));
            } catch (RuntimeException | Error e) {
                close();
                throw e;
            }
        }

        private Tensor upload(Tensor host) {
            if (config.device().isCpu()) {
                owned.add(host);
                return host;
            }
            try (host) {
                Tensor d = host.to(config.device());
                owned.add(d);
                return d;
            }
        }

        public int[] sequences() {
            return seqs.clone();
        }

        /** int32 [S, pages]: the block table of this step's sequences (owned by the step). */
        public Tensor blockTable() {
            return blockTable;
        }

        /** int32 [S]: lengths after the step (owned by the step). */
        public Tensor lengths() {
            return endLens;
        }

        /** Writes kNew, vNew [S, T, kvHeads, headDim] of a layer at the sequences' previous ends. */
        public void append(int layer, Tensor kNew, Tensor vNew) {
            ensureOpen();
            if (kNew.rank() == 4 && kNew.size(1) != maxTokens) {
                throw KvCache.APPEND_OP.error("this step adds " + maxTokens + " tokens per sequence (at most), but k_new is "
                        + kNew.describe());
            }
            Tensor r = KvCache.append(keys[layer], values[layer], blockTable, startLens, kNew, vNew, newLens,
                    new KvCache.AppendOptions(true));
            r.close();
        }

        /** Decode attention of q [S, Tq, heads, headDim] over a layer's cached tokens (causal, 1/sqrt(D)). */
        public Tensor attention(int layer, Tensor q) {
            return attention(layer, q, KvCache.DecodeOptions.DEFAULT);
        }

        public Tensor attention(int layer, Tensor q, KvCache.DecodeOptions options) {
            ensureOpen();
            KvCache.DecodeOptions o = (options == null ? KvCache.DecodeOptions.DEFAULT : options).withMaxSeqLen(maxLen);
            return KvCache.decode(q, keys[layer], values[layer], blockTable, endLens, o);
        }

        @Override
        public void close() {
            for (Tensor t : owned) {
                t.close();
            }
            owned.clear();
        }
    }

    private void closePools() {
        for (Tensor[] ts : new Tensor[][] {keys, values}) {
            for (int i = 0; i < ts.length; i++) {
                if (ts[i] != null) {
                    ts[i].close();
                    ts[i] = null;
                }
            }
        }
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            closePools();
        }
    }
}
