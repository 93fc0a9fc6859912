package dev.cortado.bench;

import dev.cortado.ops.Attention;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.KvCache;
import dev.cortado.ops.PagedKvCache;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Decode attention throughput on the CPU, float32: 32 sequences with cached lengths drawn
 * uniformly from [1024, 4096] (seed 42; mean 2569 tokens, 82 208 in all), 8 query heads, 2 kv
 * heads, head dim {@code headDim}, one new query token per sequence, page size 16. Scores are
 * tokens per second (one token = one sequence's decode step), via {@code @OperationsPerInvocation(32)}.
 * Bytes per step: every cached K and V row once, sum(L) * 2 kv heads * D * 4 B * 2 (K and V) =
 * 84.2 MB for D = 64, 168 MB for D = 128; GB/s = tokens/s / 32 * that.
 * <ul>
 *   <li>{@code paged}: {@link KvCache#decode} over the pool through the block table, split-K chosen
 *       automatically.</li>
 *   <li>{@code pagedNoSplit}: the same with split-K off (one work item per sequence and kv head).</li>
 *   <li>{@code sdpaContiguous}: the non-paged composition: per sequence, the existing fused
 *       {@link Attention#scaledDotProductAttention} (layout BSHD) over K/V already gathered into
 *       contiguous [1, L, 2, D] tensors (gathered once in the setup: the best case of a contiguous
 *       cache, without its fragmentation and copies).</li>
 *   <li>{@code gatherThenSdpa}: the composition as a paged cache without a paged kernel must run it:
 *       per sequence, gather its pages from the pool ({@link Indexing#gather}), then SDPA.</li>
 * </ul>
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
@Warmup(iterations = 2, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class DecodeBenchmark {
    static final int SEQS = 32;
    static final int HQ = 8;
    static final int HKV = 2;
    static final int PAGE = 16;

    @Param({"64", "128"})
    public int headDim;

    @Param({"1", "2"})
    public int threads;

    private PagedKvCache cache;
    private PagedKvCache.Step step;
    private Tensor q;
    private int[] lens;
    private Tensor[] qSeq;
    private Tensor[] kSeq;
    private Tensor[] vSeq;
    private Tensor[] pageIdx;
    private KvCache.DecodeOptions noSplit;
    private Attention.Options sdpa;

    /** The cached lengths: 32 draws from [1024, 4096], seed 42. */
    static int[] lengths() {
        Random r = new Random(42);
        int[] l = new int[SEQS];
        for (int i = 0; i < SEQS; i++) {
            l[i] = 1024 + r.nextInt(4096 - 1024 + 1);
        }
        return l;
    }

    @Setup(Level.Trial)
    public void setup() {
        BenchSupport.setThreads(threads);
        lens = lengths();
        long total = 0;
        int pages = 0;
        for (int l : lens) {
            total += l;
            pages += (l + PAGE - 1) / PAGE;
        }
        cache = PagedKvCache.builder().pages(pages).pageSize(PAGE).kvHeads(HKV).headDim(headDim).maxSequences(SEQS)
                .build();
        int[] seqs = new int[SEQS];
        for (int i = 0; i < SEQS; i++) {
            seqs[i] = cache.newSequence();
        }
        // grow the sequences 256 tokens at a time, round robin: their pages interleave in the pool
        int[] done = new int[SEQS];
        boolean more = true;
        while (more) {
            more = false;
            int[] add = new int[SEQS];
            for (int i = 0; i < SEQS; i++) {
                add[i] = Math.min(256, lens[i] - done[i]);
                done[i] += add[i];
                more |= done[i] < lens[i];
            }
            cache.step(seqs, add).close();
        }
        Generator g = Generator.seeded(7);
        try (Tensor k = g.normal(0, 1, DType.FLOAT32, Device.CPU, pages, PAGE, HKV, headDim);
             Tensor v = g.normal(0, 1, DType.FLOAT32, Device.CPU, pages, PAGE, HKV, headDim)) {
            cache.keys(0).copyFrom(k);
            cache.values(0).copyFrom(v);
        }
        step = cache.step(seqs, new int[SEQS]);  // the tables of the current lengths
        q = g.normal(0, 1, DType.FLOAT32, Device.CPU, SEQS, 1, HQ, headDim);
        noSplit = KvCache.DecodeOptions.DEFAULT.withSplits(1);
        sdpa = Attention.Options.builder().layout(Attention.Layout.BSHD).causal(true).build();
        qSeq = new Tensor[SEQS];
        kSeq = new Tensor[SEQS];
        vSeq = new Tensor[SEQS];
        pageIdx = new Tensor[SEQS];
        for (int i = 0; i < SEQS; i++) {
            qSeq[i] = q.narrow(0, i, 1);
            pageIdx[i] = Tensor.of(cache.pages(seqs[i]), cache.pages(seqs[i]).length);
            kSeq[i] = gathered(cache.keys(0), i);
            vSeq[i] = gathered(cache.values(0), i);
        }
        // correctness: the paged kernel against the contiguous composition
        try (Tensor a = KvCache.decode(q, cache.keys(0), cache.values(0), step.blockTable(), step.lengths(),
                KvCache.DecodeOptions.DEFAULT)) {
            float[] pa = a.toFloatArray();
            for (int i = 0; i < SEQS; i++) {
                try (Tensor b = Attention.scaledDotProductAttention(qSeq[i], kSeq[i], vSeq[i], null, sdpa)) {
                    float[] pb = b.toFloatArray();
                    for (int x = 0; x < pb.length; x++) {
                        float w = pb[x];
                        float got = pa[i * pb.length + x];
                        if (Math.abs(w - got) > 1e-4 + 1e-4 * Math.abs(w)) {
                            throw new IllegalStateException("paged decode differs from SDPA at sequence " + i + " [" + x
                                    + "]: " + got + " vs " + w);
                        }
                    }
                }
            }
        }
        System.out.printf("%nDecodeBenchmark: %d sequences, %d cached tokens (mean %.0f), D %d, %.1f MB of K/V per step,"
                        + " auto splits %d%n", SEQS, total, total / (double) SEQS, headDim,
                total * HKV * headDim * 4.0 * 2 / 1e6,
                KvCache.cpuAutoSplits(SEQS, HKV, 4096, PAGE));
    }

    /** The K or V rows of sequence i as a contiguous [1, L, Hkv, D] tensor. */
    private Tensor gathered(Tensor pool, int i) {
        try (Tensor pg = Indexing.gather(pool, pageIdx[i], 0)) {
            Tensor flat = pg.reshape(1, pg.size(0) * PAGE, HKV, headDim);
            Tensor r = flat.narrow(1, 0, lens[i]).contiguous();
            flat.close();
            return r;
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        for (Tensor[] ts : new Tensor[][] {qSeq, kSeq, vSeq, pageIdx}) {
            for (Tensor t : ts) {
                t.close();
            }
        }
        q.close();
        step.close();
        cache.close();
    }

    @Benchmark
    @OperationsPerInvocation(SEQS)
    public long paged() {
        try (Tensor o = KvCache.decode(q, cache.keys(0), cache.values(0), step.blockTable(), step.lengths(),
                KvCache.DecodeOptions.DEFAULT)) {
            return o.dataAddress();
        }
    }

    @Benchmark
    @OperationsPerInvocation(SEQS)
    public long pagedNoSplit() {
        try (Tensor o = KvCache.decode(q, cache.keys(0), cache.values(0), step.blockTable(), step.lengths(), noSplit)) {
            return o.dataAddress();
        }
    }

    @Benchmark
    @OperationsPerInvocation(SEQS)
    public long sdpaContiguous() {
        long r = 0;
        for (int i = 0; i < SEQS; i++) {
            try (Tensor o = Attention.scaledDotProductAttention(qSeq[i], kSeq[i], vSeq[i], null, sdpa)) {
                r += o.dataAddress();
            }
        }
        return r;
    }

    @Benchmark
    @OperationsPerInvocation(SEQS)
    public long gatherThenSdpa() {
        long r = 0;
        for (int i = 0; i < SEQS; i++) {
            try (Tensor k = gathered(cache.keys(0), i); Tensor v = gathered(cache.values(0), i);
                 Tensor o = Attention.scaledDotProductAttention(qSeq[i], k, v, null, sdpa)) {
                r += o.dataAddress();
            }
        }
        return r;
    }
}
