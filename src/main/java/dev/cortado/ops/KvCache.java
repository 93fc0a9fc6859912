package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Paged KV cache ops for decoding: {@code kv_cache_append} writes new keys/values into the pages
 * of a pool, {@code paged_decode_attention} attends a few new query tokens per sequence over the
 * sequences' cached tokens through their block tables (split-K over long contexts). Kernels:
 * {@code native/cpu/kvcache.cpp}, {@code native/cuda/kvcache.cu}; contract: {@code cortado/kvcache.h}.
 * {@link PagedKvCache} owns the pools, the page allocator and the block tables; these ops are its
 * kernels, usable directly with hand-built tables.
 *
 * <p>Shapes: pools k_cache, v_cache [P, PS, Hkv, D] (contiguous, float32/float16/bfloat16);
 * block_table int32 [S, MP] (row s: the physical pages of sequence s in order); seq_lens int32 [S].
 * New keys/values [S, T, Hkv, D]; queries and output [S, Tq, Hq, D] with Hq a multiple of Hkv.
 *
 * <p>On CUDA the tables live on the device: unless the options say that the caller has checked
 * them ({@link PagedKvCache} does, from its host copy), the op reads them back to check them
 * (a synchronization).
 */
public final class KvCache {
    private KvCache() {
    }

    /** Options of {@code kv_cache_append}: {@code tablesChecked} skips the CUDA read-back check. */
    public record AppendOptions(boolean tablesChecked) {
        public static final AppendOptions DEFAULT = new AppendOptions(false);
    }

    /**
     * Options of {@code paged_decode_attention}. {@code scale} NaN means 1/sqrt(D); {@code causal}
     * masks among the new query tokens (aligned at the end of each sequence); {@code numSplits}
     * 0 chooses split-K from the context length, 1 disables it, n &gt; 1 forces up to n splits;
     * {@code maxSeqLen} &ge; 0 tells the CUDA kernel the longest sequence and that the tables were
     * checked by the caller (-1: unknown, read back and check); {@code softcap} &gt; 0 soft-caps
     * the scaled scores to {@code softcap * tanh(s / softcap)}, as
     * {@link Attention.Options#softcap()} does (0: none).
     */
    public record DecodeOptions(double scale, boolean causal, int numSplits, long maxSeqLen, double softcap) {
        public static final DecodeOptions DEFAULT = new DecodeOptions(Double.NaN, true, 0, -1, 0);

        public DecodeOptions {
            if (numSplits < 0) {
                throw new IllegalArgumentException("paged_decode_attention: numSplits must be >= 0, got " + numSplits);
            }
            if (!Double.isNaN(scale) && Double.isInfinite(scale)) {
                throw new IllegalArgumentException("paged_decode_attention: scale must be finite, got " + scale);
            }
            if (!(softcap >= 0) || Double.isInfinite(softcap)) {
                throw new IllegalArgumentException("paged_decode_attention: softcap must be finite and >= 0 (0: no cap), got "
                        + softcap);
            }
        }

        public DecodeOptions withSplits(int n) {
            return new DecodeOptions(scale, causal, n, maxSeqLen, softcap);
        }

        public DecodeOptions withScale(double s) {
            return new DecodeOptions(s, causal, numSplits, maxSeqLen, softcap);
        }

        public DecodeOptions withCausal(boolean c) {
            return new DecodeOptions(scale, c, numSplits, maxSeqLen, softcap);
        }

        public DecodeOptions withMaxSeqLen(long m) {
            return new DecodeOptions(scale, causal, numSplits, m, softcap);
        }

        public DecodeOptions withSoftcap(double cap) {
            return new DecodeOptions(scale, causal, numSplits, maxSeqLen, cap);
        }

        @Override
        public String toString() {
            return (causal ? "causal" : "not causal") + (Double.isNaN(scale) ? "" : ", scale " + scale)
                    + (softcap != 0 ? ", softcap " + softcap : "")
                    + (numSplits == 0 ? ", auto splits" : ", splits " + numSplits);
        }
    }

    public static final Op<AppendOptions> APPEND_OP = Op.<AppendOptions>declare("kv_cache_append")
            .inputs("k_cache", "v_cache", "block_table", "seq_lens", "k_new", "v_new", "new_lens").required(6)
            .shape((op, a, in) -> {
                appendGeometry(op, in);
                return Op.one(Shape.of(in[3].size(0)), DType.INT32);
            })
            .kernels((a, in, out) -> appendKernel(a, in, out))
            .register();

    public static final Op<DecodeOptions> DECODE_OP = Op.<DecodeOptions>declare("paged_decode_attention")
            .inputs("q", "k_cache", "v_cache", "block_table", "seq_lens")
            .shape((op, a, in) -> {
                long[] g = decodeGeometry(op, in);
                return new TensorSpec[] {new TensorSpec(in[0].shape(), in[0].dtype()),
                        new TensorSpec(Shape.of(g[0], g[2], g[1]), DType.FLOAT32)};
            })
            .kernels((a, in, out) -> decodeKernel(a, in, out))
            .register();

    // ------------------------------------------------------------------ eager entry points
    /**
     * Writes kNew/vNew [S, T, Hkv, D] into the pools at each sequence's length seqLens[s] (in
     * place: the pools are modified); newLens (int32 [S], or null for T each) makes the append
     * ragged. Returns the lengths after the append, int32 [S]; seqLens itself is not changed.
     */
    public static Tensor append(Tensor kCache, Tensor vCache, Tensor blockTable, Tensor seqLens, Tensor kNew, Tensor vNew,
                                Tensor newLens, AppendOptions options) {
        AppendOptions o = options == null ? AppendOptions.DEFAULT : options;
        return newLens == null ? APPEND_OP.call(o, kCache, vCache, blockTable, seqLens, kNew, vNew)
                : APPEND_OP.call(o, kCache, vCache, blockTable, seqLens, kNew, vNew, newLens);
    }

    public static Tensor append(Tensor kCache, Tensor vCache, Tensor blockTable, Tensor seqLens, Tensor kNew, Tensor vNew) {
        return append(kCache, vCache, blockTable, seqLens, kNew, vNew, null, AppendOptions.DEFAULT);
    }

    /** o [S, Tq, Hq, D]: q attends its sequence's seqLens[s] cached tokens (the Tq new ones included). */
    public static Tensor decode(Tensor q, Tensor kCache, Tensor vCache, Tensor blockTable, Tensor seqLens,
                                DecodeOptions options) {
        Tensor[] r = decodeWithLse(q, kCache, vCache, blockTable, seqLens, options);
        r[1].close();
        return r[0];
    }

    /** {o [S, Tq, Hq, D], lse float32 [S, Hq, Tq]}. */
    public static Tensor[] decodeWithLse(Tensor q, Tensor kCache, Tensor vCache, Tensor blockTable, Tensor seqLens,
                                         DecodeOptions options) {
        return DECODE_OP.callMulti(options == null ? DecodeOptions.DEFAULT : options, q, kCache, vCache, blockTable,
                seqLens);
    }

    /** The split count the CPU kernel picks for {@code numSplits = 0} (benchmarks and tests). */
    public static long cpuAutoSplits(long sequences, long kvHeads, long maxSeqLen, long pageSize) {
        return NativeCpu.ct_cpu_paged_decode_auto_splits(sequences, kvHeads, maxSeqLen, pageSize);
    }

    // ------------------------------------------------------------------ rules
    private static boolean supported(DType t) {
        return t == DType.FLOAT32 || t == DType.FLOAT16 || t == DType.BFLOAT16;
    }

    /** Checks the pools and tables; returns {P, PS, Hkv, D, S, MP}. */
    private static long[] poolGeometry(Op<?> op, Tensor kc, Tensor vc, Tensor bt, Tensor lens) {
        String ctx = " (k_cache " + kc.describe() + ", v_cache " + vc.describe() + ", block_table " + bt.describe()
                + ", seq_lens " + lens.describe() + ")";
        if (kc.rank() != 4 || !kc.shape().equals(vc.shape())) {
            throw op.error("k_cache and v_cache must both be [pages, page_size, kv_heads, head_dim]" + ctx);
        }
        if (!supported(kc.dtype()) || vc.dtype() != kc.dtype()) {
            throw op.error("the caches must have one dtype among float32, float16, bfloat16" + ctx);
        }
        if (!kc.isContiguous() || !vc.isContiguous()) {
            throw op.error("the caches must be contiguous pools" + ctx);
        }
        if (kc.size(1) < 1 || kc.size(2) < 1 || kc.size(3) < 1) {
            throw op.error("page_size, kv_heads and head_dim must be positive" + ctx);
        }
        if (bt.rank() != 2 || bt.dtype() != DType.INT32) {
            throw op.error("block_table must be int32 [sequences, max_pages_per_sequence]" + ctx);
        }
        if (lens.rank() != 1 || lens.dtype() != DType.INT32 || lens.size(0) != bt.size(0)) {
            throw op.error("seq_lens must be int32 [" + bt.size(0) + "] (one length per block_table row)" + ctx);
        }
        return new long[] {kc.size(0), kc.size(1), kc.size(2), kc.size(3), bt.size(0), bt.size(1)};
    }

    private static long[] appendGeometry(Op<?> op, Tensor[] in) {
        long[] p = poolGeometry(op, in[0], in[1], in[2], in[3]);
        Tensor kn = in[4];
        Tensor vn = in[5];
        Tensor nl = in.length > 6 ? in[6] : null;
        String ctx = " (k_new " + kn.describe() + ", v_new " + vn.describe() + ", k_cache " + in[0].describe()
                + ", block_table " + in[2].describe() + ")";
        if (kn.rank() != 4 || !kn.shape().equals(vn.shape())) {
            throw op.error("k_new and v_new must both be [sequences, new_tokens, kv_heads, head_dim]" + ctx);
        }
        if (kn.dtype() != in[0].dtype() || vn.dtype() != in[0].dtype()) {
            throw op.error("k_new and v_new must have the cache's dtype " + in[0].dtype() + ctx);
        }
        if (kn.size(0) != p[4]) {
            throw op.error("k_new has " + kn.size(0) + " sequences but block_table has " + p[4] + " rows" + ctx);
        }
        if (kn.size(2) != p[2] || kn.size(3) != p[3]) {
            throw op.error("k_new's kv_heads x head_dim " + kn.size(2) + " x " + kn.size(3) + " differ from the cache's "
                    + p[2] + " x " + p[3] + ctx);
        }
        if (nl != null && (nl.rank() != 1 || nl.dtype() != DType.INT32 || nl.size(0) != p[4])) {
            throw op.error("new_lens " + nl.describe() + " must be int32 [" + p[4] + "]" + ctx);
        }
        return p;
    }

    /** Checks q against the pools; returns {S, Tq, Hq, Hkv, D, P, PS, MP}. */
    private static long[] decodeGeometry(Op<?> op, Tensor[] in) {
        Tensor q = in[0];
        long[] p = poolGeometry(op, in[1], in[2], in[3], in[4]);
        String ctx = " (q " + q.describe() + ", k_cache " + in[1].describe() + ", block_table " + in[3].describe() + ")";
        if (q.rank() != 4) {
            throw op.error("q must be [sequences, q_tokens, heads, head_dim]" + ctx);
        }
        if (q.dtype() != in[1].dtype()) {
            throw op.error("q must have the cache's dtype " + in[1].dtype() + ctx);
        }
        if (q.size(0) != p[4]) {
            throw op.error("q has " + q.size(0) + " sequences but block_table has " + p[4] + " rows" + ctx);
        }
        if (q.size(3) != p[3]) {
            throw op.error("head dims differ: q has " + q.size(3) + ", the cache " + p[3] + ctx);
        }
        if (q.size(2) < 1 || q.size(2) % p[2] != 0) {
            throw op.error("the query heads (" + q.size(2) + ") must be a positive multiple of the cache's kv heads ("
                    + p[2] + ")" + ctx);
        }
        return new long[] {q.size(0), q.size(1), q.size(2), p[2], p[3], p[0], p[1], p[5]};
    }

    /** The 4 strides of t with a unit feature stride, or null when t needs a contiguous copy. */
    private static long[] strides4(Tensor t) {
        long[] s = t.strides();
        if (t.size(3) == 1) {
            s[3] = 1;
        }
        return s[3] == 1 ? s : null;
    }

    private static Tensor prep(Tensor t, List<Tensor> temps) {
        if (strides4(t) != null) {
            return t;
        }
        Tensor c = t.contiguous();
        temps.add(c);
        return c;
    }

    private static Tensor dense(Tensor t, List<Tensor> temps) {
        if (t == null || t.isContiguous()) {
            return t;
        }
        Tensor c = t.contiguous();
        temps.add(c);
        return c;
    }

    private static void closeAll(List<Tensor> temps) {
        for (Tensor t : temps) {
            t.close();
        }
    }

    /**
     * Host-side check of the tables (the CUDA path, whose kernels cannot report): every page that
     * the lengths reach is inside the pool, every length fits its block-table row. Returns the
     * longest sequence after the append (append) or the longest sequence (decode).
     */
    static long checkTables(Op<?> op, int[] table, int[] lens, int[] add, long t, long pages, long pageSize,
                            long maxPages) {
        long max = 0;
        for (int s = 0; s < lens.length; s++) {
            long n = add == null ? t : add[s];
            if (n < 0 || n > t) {
                throw op.error("new_lens[" + s + "] = " + n + " must be in [0, " + t + "]");
            }
            if (lens[s] < 0) {
                throw op.error("seq_lens[" + s + "] = " + lens[s] + " is negative");
            }
            long begin = add == null && t == 0 ? 0 : lens[s];
            long end = lens[s] + n;
            max = Math.max(max, end);
            if (end > maxPages * pageSize) {
                throw new IndexOutOfBoundsException(op.name() + ": sequence " + s + " needs " + end
                        + " tokens but its block table row holds " + maxPages + " pages of " + pageSize + " tokens ("
                        + maxPages * pageSize + ")");
            }
            for (long i = (add == null && t == 0 ? 0 : begin / pageSize); i < (end + pageSize - 1) / pageSize; i++) {
                int page = table[(int) (s * maxPages + i)];
                if (page < 0 || page >= pages) {
                    throw new IndexOutOfBoundsException(op.name() + ": block_table[" + s + "][" + i + "] = " + page
                            + " (sequence " + s + ", tokens " + i * pageSize + ".." + ((i + 1) * pageSize - 1)
                            + ") is outside the pool of " + pages + " pages");
                }
            }
        }
        return max;
    }

    private static void appendKernel(AppendOptions a, Tensor[] in, Tensor[] out) {
        long[] p = appendGeometry(APPEND_OP, in);
        Tensor kn0 = in[4];
        long s = p[4];
        long t = kn0.size(1);
        List<Tensor> temps = new ArrayList<>();
        try {
            Tensor bt = dense(in[2], temps);
            Tensor lens = dense(in[3], temps);
            Tensor nl = dense(in.length > 6 ? in[6] : null, temps);
            Tensor kn = prep(kn0, temps);
            Tensor vn = prep(in[5], temps);
            long[] dims = {s, t, p[2], p[3], p[0], p[1], p[5]};
            String ctx = "kv_cache_append(k_cache " + in[0].describe() + ", block_table " + in[2].describe()
                    + ", seq_lens " + in[3].describe() + ", k_new " + kn0.describe() + ")";
            if (s > 0) {
                Launch l = Launch.on(out[0]);
                if (l.isCuda() && !a.tablesChecked()) { // the CPU kernel checks the tables itself
                    checkTables(APPEND_OP, bt.toIntArray(), lens.toIntArray(), nl == null ? null : nl.toIntArray(),
                            t, p[0], p[1], p[5]);
                }
                NativeArgs args = NativeArgs.get();
                int st = l.kernels.kvCacheAppend(kn.dtype().code(), args.put(dims), kn.dataAddress(),
                        args.put(strides4(kn)), vn.dataAddress(), args.put(strides4(vn)), in[0].dataAddress(),
                        in[1].dataAddress(), bt.dataAddress(), lens.dataAddress(), nl == null ? 0 : nl.dataAddress(),
                        l.stream);
                if (st != 0) {
                    throw l.failure(st, ctx);
                }
            }
            // the lengths after the append
            if (nl != null) {
                try (Tensor r = Elementwise.add(lens, nl)) {
                    out[0].copyFrom(r);
                }
            } else {
                try (Tensor r = Elementwise.add(lens, (double) t)) {
                    out[0].copyFrom(r);
                }
            }
        } finally {
            closeAll(temps);
        }
    }

    /** CUDA split count: about two blocks per SM, at least 256 tokens per split. */
    static int cudaSplits(int sms, long s, long hkv, long maxLen, long pageSize) {
        long items = s * hkv;
        if (items <= 0 || maxLen <= 0 || items >= 2L * sms) {
            return 1;
        }
        long want = (2L * sms + items - 1) / items;
        long cap = Math.min(Math.max(1, maxLen / 256), (maxLen + pageSize - 1) / pageSize);
        return (int) Math.max(1, Math.min(want, cap));
    }

    private static void decodeKernel(DecodeOptions a, Tensor[] in, Tensor[] out) {
        long[] g = decodeGeometry(DECODE_OP, in);
        if (out[0].numel() == 0) {
            return;
        }
        double scale = Double.isNaN(a.scale()) ? 1.0 / Math.sqrt(g[4]) : a.scale();
        List<Tensor> temps = new ArrayList<>();
        try {
            Tensor q = prep(in[0], temps);
            Tensor bt = dense(in[3], temps);
            Tensor lens = dense(in[4], temps);
            long[] ostr = strides4(out[0]);
            String ctx = "paged_decode_attention(q " + in[0].describe() + ", k_cache " + in[1].describe()
                    + ", block_table " + in[3].describe() + ", seq_lens " + in[4].describe() + ", " + a + ")";
            Launch l = Launch.on(out[0]);
            long maxLen = 0;  // the CPU kernel reads seq_lens and allocates its own workspace
            int splits = a.numSplits();
            Tensor ws = null;
            long wsFloats = 0;
            if (l.isCuda()) {
                maxLen = a.maxSeqLen();
                if (maxLen < 0) {
                    maxLen = checkTables(DECODE_OP, bt.toIntArray(), lens.toIntArray(), null, 0, g[5], g[6], g[7]);
                }
                if (splits <= 0) {
                    int sms = CudaBackend.instance().devices().get(out[0].device().index()).multiprocessors();
                    splits = cudaSplits(sms, g[0], g[3], maxLen, g[6]);
                }
                if (splits > 1) {
                    wsFloats = g[0] * g[2] * g[1] * splits * (g[4] + 2);
                    ws = Tensor.empty(DType.FLOAT32, out[0].device(), wsFloats);
                    temps.add(ws);
                }
            }
            NativeArgs args = NativeArgs.get();
            int st = l.kernels.pagedDecodeAttention(q.dtype().code(), args.put(g), q.dataAddress(),
                    args.put(strides4(q)), in[1].dataAddress(), in[2].dataAddress(), bt.dataAddress(),
                    lens.dataAddress(), maxLen, a.causal() ? 1 : 0, scale, a.softcap(), splits, out[0].dataAddress(),
                    args.put(ostr), out[1].dataAddress(), ws == null ? 0 : ws.dataAddress(), wsFloats, l.stream);
            if (st != 0) {
                throw l.failure(st, ctx);
            }
        } finally {
            closeAll(temps);
        }
    }
}
