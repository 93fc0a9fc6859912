package dev.cortado.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.ops.KvCache.DecodeOptions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Paged KV cache and split-K decode attention against an independent float64 reference written
 * here (explicit scores over each sequence's tokens, softmax, P V) on the values the cache stores.
 * Tolerances |got - want| &lt;= abs + rel |want|: float32 2e-5 (float32 accumulation, polynomial
 * exp); float16 2e-3 and bfloat16 1e-2 (exact stored inputs, float32 compute, one rounding of the
 * output: half an ulp is 2^-12 and 2^-9). Split-K on and off agree within the same tolerance.
 */
@SuppressWarnings("try")  // scopes that only close what the test allocates
public class KvCacheOpsTest {

    static Tol tol(DType t) {
        return switch (t) {
            case FLOAT32 -> new Tol(2e-5, 2e-5);
            case FLOAT16 -> new Tol(2e-3, 2e-3);
            default -> new Tol(1e-2, 1e-2);
        };
    }

    public record Case(DType dtype, int[] lens, int hq, int hkv, int d, int tq, int pageSize) {
        @Override
        public String toString() {
            return dtype + " lens " + Arrays.toString(lens) + " Hq" + hq + " Hkv" + hkv + " D" + d + " Tq" + tq + " PS"
                    + pageSize;
        }
    }

    /** Logical contents: k[s][j][h][c] etc. as stored (after rounding to the dtype). */
    record Filled(PagedKvCache cache, int[] seqs, double[][] k, double[][] v) {
    }

    static void assertClose(String what, double[] want, double[] got, Tol t) {
        assertEquals(want.length, got.length, what + ": length");
        for (int i = 0; i < want.length; i++) {
            double w = want[i];
            double g = got[i];
            if (w == Double.NEGATIVE_INFINITY) {
                assertEquals(w, g, what + " [" + i + "]");
                continue;
            }
            assertTrue(Math.abs(g - w) <= t.abs() + t.rel() * Math.abs(w),
                    what + " [" + i + "]: want " + w + ", got " + g + " (tol " + t + ")");
        }
    }

    /** Tensor [S, T, H, D] from per-sequence rows x[s][(t * H + h) * D + c] of tokens [from, from + n_s), padded to T. */
    static Tensor rows(double[][] x, int[] from, int[] n, int t, int h, int d, DType dtype) {
        int s = x.length;
        double[] flat = new double[s * t * h * d];
        for (int i = 0; i < s; i++) {
            for (int j = 0; j < n[i]; j++) {
                System.arraycopy(x[i], (from[i] + j) * h * d, flat, (i * t + j) * h * d, h * d);
            }
        }
        return Reference.make(flat, dtype, s, t, h, d);
    }

    /** Rounds every value to what the dtype stores. */
    static double[] stored(double[] x, DType dtype) {
        try (Tensor t = Reference.make(x, dtype, x.length)) {
            return t.toDoubleArray();
        }
    }

    /**
     * A cache holding the case's sequences: a dummy sequence is filled and freed first (so the
     * pages are not in order), then every sequence gets lens[s] - tq tokens in one ragged step;
     * the caller appends the last tq tokens in its own step.
     */
    static Filled fill(Case c, Random r, int extraPages) {
        int s = c.lens().length;
        int ps = c.pageSize();
        int pages = 3 + extraPages;
        for (int len : c.lens()) {
            pages += (len + ps - 1) / ps;
        }
        int maxLen = Arrays.stream(c.lens()).max().orElse(0);
        PagedKvCache cache = PagedKvCache.builder().layers(2).pages(pages).pageSize(ps).kvHeads(c.hkv()).headDim(c.d())
                .dtype(c.dtype()).maxSequences(s + 2).maxPagesPerSequence((maxLen + ps - 1) / ps + 2).build();
        int dummy = cache.newSequence();
        int[] seqs = new int[s];
        for (int i = 0; i < s; i++) {
            seqs[i] = cache.newSequence();
        }
        try (PagedKvCache.Step st = cache.step(new int[] {dummy}, 2 * ps + 1)) {
            assertEquals(3, cache.usedPages());
        }
        cache.free(dummy);
        assertEquals(0, cache.usedPages());
        int row = c.hkv() * c.d();
        double[][] k = new double[s][];
        double[][] v = new double[s][];
        for (int i = 0; i < s; i++) {
            k[i] = stored(Reference.uniform(r, Math.max(1, c.lens()[i] * row), -1, 1), c.dtype());
            v[i] = stored(Reference.uniform(r, Math.max(1, c.lens()[i] * row), -1, 1), c.dtype());
        }
        int[] first = new int[s];
        int[] zero = new int[s];
        for (int i = 0; i < s; i++) {
            first[i] = Math.max(0, c.lens()[i] - c.tq());
        }
        int t = Arrays.stream(first).max().orElse(0);
        try (PagedKvCache.Step st = cache.step(seqs, first); Scope scope = Scope.open()) {
            for (int layer = 0; layer < 2; layer++) {
                // layer 1 holds other values (negated): the layers must not mix
                double[][] kl = layer == 0 ? k : negate(k);
                st.append(layer, rows(kl, zero, first, t, c.hkv(), c.d(), c.dtype()),
                        rows(layer == 0 ? v : negate(v), zero, first, t, c.hkv(), c.d(), c.dtype()));
            }
        }
        return new Filled(cache, seqs, k, v);
    }

    static double[][] negate(double[][] x) {
        double[][] y = new double[x.length][];
        for (int i = 0; i < x.length; i++) {
            y[i] = x[i].clone();
            for (int j = 0; j < y[i].length; j++) {
                y[i][j] = -y[i][j];
            }
        }
        return y;
    }

    /** float64 decode reference: o [S, Tq, Hq, D] and lse [S, Hq, Tq]; softcap &gt; 0 caps the scores to c tanh(s / c). */
    public static double[][] reference(Case c, double[] q, double[][] k, double[][] v, double scale, boolean causal,
                                double softcap) {
        int s = c.lens().length;
        int tq = c.tq();
        int hq = c.hq();
        int d = c.d();
        int g = hq / c.hkv();
        double[] o = new double[s * tq * hq * d];
        double[] lse = new double[s * hq * tq];
        for (int i = 0; i < s; i++) {
            int len = c.lens()[i];
            for (int t = 0; t < tq; t++) {
                int last = causal ? Math.min(len - 1, len - tq + t) : len - 1;
                for (int h = 0; h < hq; h++) {
                    int hk = h / g;
                    double[] sc = new double[Math.max(0, last + 1)];
                    double m = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= last; j++) {
                        double dot = 0;
                        for (int x = 0; x < d; x++) {
                            dot += q[((i * tq + t) * hq + h) * d + x] * k[i][(j * c.hkv() + hk) * d + x];
                        }
                        sc[j] = softcap > 0 ? softcap * Math.tanh(dot * scale / softcap) : dot * scale;
                        m = Math.max(m, sc[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= last; j++) {
                        sc[j] = Math.exp(sc[j] - m);
                        sum += sc[j];
                    }
                    for (int x = 0; x < d; x++) {
                        double acc = 0;
                        for (int j = 0; j <= last; j++) {
                            acc += sc[j] * v[i][(j * c.hkv() + hk) * d + x];
                        }
                        o[((i * tq + t) * hq + h) * d + x] = sum > 0 ? acc / sum : 0;
                    }
                    lse[(i * hq + h) * tq + t] = sum > 0 ? m + Math.log(sum) : Double.NEGATIVE_INFINITY;
                }
            }
        }
        return new double[][] {o, lse};
    }

    static void run(Case c, long seed, double softcap) {
        Random r = new Random(seed);
        Filled f = fill(c, r, 0);
        try (PagedKvCache cache = f.cache(); Scope scope = Scope.open()) {
            int s = c.lens().length;
            int[] from = new int[s];
            int[] n = new int[s];
            for (int i = 0; i < s; i++) {
                from[i] = Math.max(0, c.lens()[i] - c.tq());
                n[i] = c.lens()[i] - from[i];
            }
            double[] q = stored(Reference.uniform(r, s * c.tq() * c.hq() * c.d(), -1, 1), c.dtype());
            Tensor tq = Reference.make(q, c.dtype(), s, c.tq(), c.hq(), c.d());
            double scale = 1.0 / Math.sqrt(c.d());
            double[][] want = reference(c, q, f.k(), f.v(), scale, true, softcap);
            try (PagedKvCache.Step st = cache.step(f.seqs(), n)) {
                st.append(0, rows(f.k(), from, n, c.tq(), c.hkv(), c.d(), c.dtype()),
                        rows(f.v(), from, n, c.tq(), c.hkv(), c.d(), c.dtype()));
                st.append(1, rows(negate(f.k()), from, n, c.tq(), c.hkv(), c.d(), c.dtype()),
                        rows(negate(f.v()), from, n, c.tq(), c.hkv(), c.d(), c.dtype()));
                for (int i = 0; i < s; i++) {
                    assertEquals(c.lens()[i], cache.length(f.seqs()[i]));
                }
                double[] off = null;
                for (int splits : new int[] {1, 0, 3, 64}) {
                    DecodeOptions o = DecodeOptions.DEFAULT.withSplits(splits).withSoftcap(softcap);
                    Tensor[] out = KvCache.decodeWithLse(tq, cache.keys(0), cache.values(0), st.blockTable(), st.lengths(),
                            o);
                    double[] got = out[0].toDoubleArray();
                    // absolute part relative to the outputs' magnitude; a zeroed output must fail
                    Tol ot = Reference.relativeTo(tol(c.dtype()), want[0]);
                    Reference.assertZerosRejected(want[0], ot, c + " splits " + splits + ": o");
                    assertClose(c + " splits " + splits + ": o", want[0], got, ot);
                    assertClose(c + " splits " + splits + ": lse", want[1], out[1].toDoubleArray(), new Tol(2e-5, 2e-5));
                    if (off == null) {
                        off = got;
                    } else {
                        assertClose(c + " splits " + splits + " vs no split", off, got, tol(c.dtype()));
                    }
                    out[0].close();
                    out[1].close();
                }
                // layer 1 holds -k, -v: softmax(-q.k) (-v) = the reference with q negated, output negated
                double[] qn = q.clone();
                for (int i = 0; i < qn.length; i++) {
                    qn[i] = -qn[i];
                }
                double[] want1 = reference(c, qn, f.k(), f.v(), scale, true, softcap)[0];
                for (int i = 0; i < want1.length; i++) {
                    want1[i] = -want1[i];
                }
                try (Tensor o1 = st.attention(1, tq, DecodeOptions.DEFAULT.withSoftcap(softcap))) {
                    Tol t1 = Reference.relativeTo(tol(c.dtype()), want1);
                    Reference.assertZerosRejected(want1, t1, c + " layer 1");
                    assertClose(c + " layer 1", want1, o1.toDoubleArray(), t1);
                }
            }
        }
    }

    @TestFactory
    List<DynamicTest> decodeAgainstFloat64Reference() {
        int[] lens = {1, 17, 128, 1033, 16};
        List<Case> cases = new ArrayList<>();
        // GQA ratios 1/2/4/8, q tokens 1 and 3, head dims 64/128/80
        cases.add(new Case(DType.FLOAT32, lens, 2, 2, 64, 1, 16));
        cases.add(new Case(DType.FLOAT32, lens, 4, 2, 64, 3, 16));
        cases.add(new Case(DType.FLOAT32, lens, 8, 2, 128, 1, 16));
        cases.add(new Case(DType.FLOAT32, lens, 8, 1, 80, 3, 32));
        cases.add(new Case(DType.FLOAT32, new int[] {5, 300, 2}, 16, 2, 64, 3, 7));
        cases.add(new Case(DType.FLOAT32, new int[] {3}, 3, 3, 5, 3, 1));
        cases.add(new Case(DType.BFLOAT16, lens, 8, 2, 64, 1, 16));
        cases.add(new Case(DType.BFLOAT16, new int[] {40, 700}, 4, 4, 128, 3, 32));
        cases.add(new Case(DType.FLOAT16, lens, 4, 1, 80, 3, 16));
        cases.add(new Case(DType.FLOAT16, new int[] {1, 1200}, 2, 1, 64, 1, 16));
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 1;
        for (Case c : cases) {
            long sd = seed++;
            tests.add(dynamicTest(c.toString(), () -> run(c, sd, 0)));
        }
        // soft-capped scores (the scores here are ~0.3 in size: a cap of 0.5 bends them strongly)
        for (Case c : new Case[] {cases.get(1), cases.get(3), cases.get(6)}) {
            long sd = seed++;
            tests.add(dynamicTest(c + " softcap 0.5", () -> run(c, sd, 0.5)));
        }
        return tests;
    }

    @Test
    void decodeEqualsCausalSdpaForTheLastTokens() {
        int len = 300;
        int hq = 8;
        int hkv = 2;
        int d = 64;
        int tq = 3;
        Random r = new Random(11);
        try (Scope scope = Scope.open();
             PagedKvCache cache = PagedKvCache.builder().pages(40).pageSize(16).kvHeads(hkv).headDim(d).build()) {
            Tensor q = Reference.make(Reference.uniform(r, len * hq * d, -1, 1), DType.FLOAT32, 1, len, hq, d);
            Tensor k = Reference.make(Reference.uniform(r, len * hkv * d, -1, 1), DType.FLOAT32, 1, len, hkv, d);
            Tensor v = Reference.make(Reference.uniform(r, len * hkv * d, -1, 1), DType.FLOAT32, 1, len, hkv, d);
            for (double cap : new double[] {0, 0.5}) {
                decodeEqualsSdpa(cache, q, k, v, len, tq, cap);
            }
        }
    }

    private static void decodeEqualsSdpa(PagedKvCache cache, Tensor q, Tensor k, Tensor v, int len, int tq,
                                         double softcap) {
        try (Scope scope = Scope.open()) {
            Tensor full = Attention.scaledDotProductAttention(q, k, v, null,
                    Attention.Options.builder().layout(Attention.Layout.BSHD).causal(true).softcap(softcap).build());
            DecodeOptions opts = DecodeOptions.DEFAULT.withSoftcap(softcap);
            int seq = cache.newSequence();
            try (PagedKvCache.Step st = cache.step(new int[] {seq}, len - tq)) {
                st.append(0, k.narrow(1, 0, len - tq), v.narrow(1, 0, len - tq));
            }
            try (PagedKvCache.Step st = cache.step(new int[] {seq}, tq)) {
                st.append(0, k.narrow(1, len - tq, tq), v.narrow(1, len - tq, tq));
                Tensor o = st.attention(0, q.narrow(1, len - tq, tq), opts);
                Tensor want = full.narrow(1, len - tq, tq).contiguous();
                assertClose("decode vs sdpa, softcap " + softcap, want.toDoubleArray(), o.toDoubleArray(),
                        new Tol(2e-5, 2e-5));
                Tensor o1 = st.attention(0, q.narrow(1, len - 1, 1), opts);
                // a single query at the end sees every token (no mask at all)
                Tensor want1 = full.narrow(1, len - 1, 1).contiguous();
                assertClose("decode q_tokens 1 vs sdpa, softcap " + softcap, want1.toDoubleArray(), o1.toDoubleArray(),
                        new Tol(2e-5, 2e-5));
            }
            cache.free(seq);
        }
    }

    @Test
    void appendWritesThePagesAndRaggedRowsAreIgnored() {
        int ps = 4;
        int hkv = 2;
        int d = 3;
        try (Scope scope = Scope.open();
             PagedKvCache cache = PagedKvCache.builder().pages(8).pageSize(ps).kvHeads(hkv).headDim(d).maxSequences(3)
                     .maxPagesPerSequence(4).build()) {
            int a = cache.newSequence();
            int b = cache.newSequence();
            Random r = new Random(3);
            double[] kn = Reference.uniform(r, 2 * 6 * hkv * d, -1, 1);
            double[] vn = Reference.uniform(r, 2 * 6 * hkv * d, -1, 1);
            Tensor kt = Reference.make(kn, DType.FLOAT32, 2, 6, hkv, d);
            Tensor vt = Reference.make(vn, DType.FLOAT32, 2, 6, hkv, d);
            try (PagedKvCache.Step st = cache.step(new int[] {a, b}, new int[] {6, 3})) {
                st.append(0, kt, vt);
                assertArrayEquals(new int[] {6, 3}, st.lengths().toIntArray());
            }
            assertEquals(6, cache.length(a));
            assertEquals(3, cache.length(b));
            assertEquals(3, cache.usedPages());
            double[] pool = cache.keys(0).toDoubleArray();
            double[] vpool = cache.values(0).toDoubleArray();
            int[] pa = cache.pages(a);
            int[] pb = cache.pages(b);
            assertEquals(2, pa.length);
            assertEquals(1, pb.length);
            int written = 0;
            for (int seqi = 0; seqi < 2; seqi++) {
                int[] pg = seqi == 0 ? pa : pb;
                int n = seqi == 0 ? 6 : 3;
                for (int t = 0; t < n; t++) {
                    for (int x = 0; x < hkv * d; x++) {
                        int at = (pg[t / ps] * ps + t % ps) * hkv * d + x;
                        assertEquals((float) kn[(seqi * 6 + t) * hkv * d + x], pool[at], 0.0);
                        assertEquals((float) vn[(seqi * 6 + t) * hkv * d + x], vpool[at], 0.0);
                        written++;
                    }
                }
            }
            long nonZero = Arrays.stream(pool).filter(x -> x != 0).count();
            assertEquals(written, nonZero, "nothing but the appended rows is written");
            // the raw op returns the lengths after the append and leaves seq_lens alone
            Tensor bt = Tensor.of(new int[] {pa[0], pa[1], 7}, 1, 3);
            Tensor lens = Tensor.of(new int[] {6}, 1);
            Tensor k1 = Reference.make(Reference.uniform(r, 3 * hkv * d, -1, 1), DType.FLOAT32, 1, 3, hkv, d);
            Tensor after = KvCache.append(cache.keys(0), cache.values(0), bt, lens, k1, k1);
            assertArrayEquals(new int[] {9}, after.toIntArray());
            assertArrayEquals(new int[] {6}, lens.toIntArray());
            double[] pool2 = cache.keys(0).toDoubleArray();
            double[] k1v = k1.toDoubleArray();
            for (int t = 0; t < 3; t++) {
                int pos = 6 + t;
                int page = pos / ps == 1 ? pa[1] : 7;
                for (int x = 0; x < hkv * d; x++) {
                    assertEquals(k1v[t * hkv * d + x], pool2[(page * ps + pos % ps) * hkv * d + x], 0.0);
                }
            }
        }
    }

    @Test
    void nonContiguousInputsAndEmptyBatches() {
        int hkv = 2;
        int d = 16;
        Random r = new Random(5);
        try (Scope scope = Scope.open();
             PagedKvCache cache = PagedKvCache.builder().pages(10).pageSize(8).kvHeads(hkv).headDim(d).build()) {
            int a = cache.newSequence();
            int empty = cache.newSequence();
            // k_new as a permuted view [S, T, H, D] of a [S, H, T, D] tensor
            double[] kd = Reference.uniform(r, 20 * hkv * d, -1, 1);
            Tensor kh = Reference.make(kd, DType.FLOAT32, 1, hkv, 20, d);
            Tensor kv = kh.permute(0, 2, 1, 3);
            try (PagedKvCache.Step st = cache.step(new int[] {a, empty}, new int[] {20, 0})) {
                Tensor k2 = Tensor.zeros(DType.FLOAT32, Device.CPU, 2, 20, hkv, d);
                k2.narrow(0, 0, 1).copyFrom(kv);
                st.append(0, k2, k2);
                // q non-contiguous (heads 2..5 of 8), the empty sequence gets zeros and lse -inf
                Tensor qh = Reference.make(Reference.uniform(r, 2 * 8 * d, -1, 1), DType.FLOAT32, 2, 1, 8, d);
                Tensor q = qh.narrow(2, 2, 4);  // [2, 1, 4, d]
                assertTrue(!q.isContiguous());
                Tensor[] out = KvCache.decodeWithLse(q, cache.keys(0), cache.values(0), st.blockTable(), st.lengths(),
                        DecodeOptions.DEFAULT);
                Tensor qc = q.contiguous();
                Tensor[] want = KvCache.decodeWithLse(qc, cache.keys(0), cache.values(0), st.blockTable(), st.lengths(),
                        DecodeOptions.DEFAULT);
                assertArrayEquals(want[0].toDoubleArray(), out[0].toDoubleArray());
                double[] o = out[0].toDoubleArray();
                for (int i = 4 * d; i < 8 * d; i++) {
                    assertEquals(0.0, o[i], "empty sequence gives zeros");
                }
                float[] lse = out[1].toFloatArray();
                for (int i = 4; i < 8; i++) {
                    assertEquals(Float.NEGATIVE_INFINITY, lse[i]);
                }
                // reference for sequence a with q token 0, head 0 (k rows = kv permuted back)
                double[] kvals = k2.toDoubleArray();
                double[] qv = qc.toDoubleArray();
                for (int h = 0; h < 4; h++) {
                    int hk = h / 2;
                    double m = Double.NEGATIVE_INFINITY;
                    double[] sc = new double[20];
                    for (int j = 0; j < 20; j++) {
                        double dot = 0;
                        for (int x = 0; x < d; x++) {
                            dot += qv[h * d + x] * kvals[(j * hkv + hk) * d + x];
                        }
                        sc[j] = dot / Math.sqrt(d);
                        m = Math.max(m, sc[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < 20; j++) {
                        sum += Math.exp(sc[j] - m);
                    }
                    assertEquals(m + Math.log(sum), lse[h], 2e-5);
                    for (int x = 0; x < d; x++) {
                        double acc = 0;
                        for (int j = 0; j < 20; j++) {
                            acc += Math.exp(sc[j] - m) / sum * kvals[(j * hkv + hk) * d + x];
                        }
                        assertEquals(acc, o[h * d + x], 2e-5);
                    }
                }
            }
            // an empty batch and zero query tokens
            Tensor bt0 = Tensor.zeros(DType.INT32, Device.CPU, 0, 3);
            Tensor l0 = Tensor.zeros(DType.INT32, Device.CPU, 0);
            Tensor q0 = Tensor.zeros(DType.FLOAT32, Device.CPU, 0, 1, 2, d);
            assertArrayEquals(new long[] {0, 1, 2, d}, KvCache.decode(q0, cache.keys(0), cache.values(0), bt0, l0,
                    DecodeOptions.DEFAULT).dims());
            Tensor btz = Tensor.of(new int[] {cache.pages(a)[0]}, 1, 1);
            Tensor lz = Tensor.of(new int[] {3}, 1);
            Tensor qz = Tensor.zeros(DType.FLOAT32, Device.CPU, 1, 0, 2, d);
            assertArrayEquals(new long[] {1, 0, 2, d}, KvCache.decode(qz, cache.keys(0), cache.values(0), btz, lz,
                    DecodeOptions.DEFAULT).dims());
            Tensor kz = Tensor.zeros(DType.FLOAT32, Device.CPU, 1, 0, hkv, d);
            assertArrayEquals(new int[] {3}, KvCache.append(cache.keys(0), cache.values(0), btz, lz, kz, kz).toIntArray());
        }
    }

    @Test
    void badInputsGiveClearExceptions() {
        try (Scope scope = Scope.open();
             PagedKvCache cache = PagedKvCache.builder().pages(4).pageSize(8).kvHeads(2).headDim(16).maxSequences(4)
                     .maxPagesPerSequence(3).build()) {
            Tensor kc = cache.keys(0);
            Tensor vc = cache.values(0);
            Tensor bt = Tensor.of(new int[] {0, 1, 2}, 1, 3);
            Tensor lens = Tensor.of(new int[] {10}, 1);
            // heads that do not divide
            Tensor q3 = Tensor.zeros(DType.FLOAT32, Device.CPU, 1, 1, 3, 16);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> KvCache.decode(q3, kc, vc, bt, lens, DecodeOptions.DEFAULT));
            assertTrue(e.getMessage().contains("paged_decode_attention") && e.getMessage().contains("multiple")
                    && e.getMessage().contains("[1, 1, 3, 16]"), e.getMessage());
            // mismatched head dim
            Tensor q8 = Tensor.zeros(DType.FLOAT32, Device.CPU, 1, 1, 4, 8);
            e = assertThrows(IllegalArgumentException.class, () -> KvCache.decode(q8, kc, vc, bt, lens, DecodeOptions.DEFAULT));
            assertTrue(e.getMessage().contains("head dims differ") && e.getMessage().contains("[4, 8, 2, 16]"),
                    e.getMessage());
            // dtype mismatch
            Tensor qh = Tensor.zeros(DType.FLOAT16, Device.CPU, 1, 1, 4, 16);
            e = assertThrows(IllegalArgumentException.class, () -> KvCache.decode(qh, kc, vc, bt, lens, DecodeOptions.DEFAULT));
            assertTrue(e.getMessage().contains("dtype"), e.getMessage());
            // block table pointing outside the pool (checked by the native code)
            Tensor q = Tensor.zeros(DType.FLOAT32, Device.CPU, 1, 1, 4, 16);
            Tensor badBt = Tensor.of(new int[] {0, 99, 2}, 1, 3);
            IndexOutOfBoundsException ie = assertThrows(IndexOutOfBoundsException.class,
                    () -> KvCache.decode(q, kc, vc, badBt, lens, DecodeOptions.DEFAULT));
            assertTrue(ie.getMessage().contains("block_table[0][1] = 99") && ie.getMessage().contains("outside the pool of 4"),
                    ie.getMessage());
            Tensor kn = Tensor.zeros(DType.FLOAT32, Device.CPU, 1, 1, 2, 16);
            ie = assertThrows(IndexOutOfBoundsException.class, () -> KvCache.append(kc, vc, badBt, lens, kn, kn));
            assertTrue(ie.getMessage().contains("block_table[0][1] = 99"), ie.getMessage());
            Tensor negBt = Tensor.of(new int[] {-1, 0, 0}, 1, 3);
            assertThrows(IndexOutOfBoundsException.class, () -> KvCache.decode(q, kc, vc, negBt, lens, DecodeOptions.DEFAULT));
            // a sequence longer than its block table
            Tensor longLens = Tensor.of(new int[] {25}, 1);
            ie = assertThrows(IndexOutOfBoundsException.class,
                    () -> KvCache.decode(q, kc, vc, bt, longLens, DecodeOptions.DEFAULT));
            assertTrue(ie.getMessage().contains("sequence 0 needs 25 tokens") && ie.getMessage().contains("3 pages of 8"),
                    ie.getMessage());
            // shapes of the tables
            Tensor bt64 = Tensor.of(new long[] {0, 1, 2}, 1, 3);
            e = assertThrows(IllegalArgumentException.class, () -> KvCache.decode(q, kc, vc, bt64, lens, DecodeOptions.DEFAULT));
            assertTrue(e.getMessage().contains("block_table must be int32"), e.getMessage());
            Tensor lens2 = Tensor.of(new int[] {1, 2}, 2);
            e = assertThrows(IllegalArgumentException.class, () -> KvCache.decode(q, kc, vc, bt, lens2, DecodeOptions.DEFAULT));
            assertTrue(e.getMessage().contains("seq_lens must be int32 [1]"), e.getMessage());
            Tensor kbad = Tensor.zeros(DType.FLOAT32, Device.CPU, 1, 1, 2, 8);
            e = assertThrows(IllegalArgumentException.class, () -> KvCache.append(kc, vc, bt, lens, kbad, kbad));
            assertTrue(e.getMessage().contains("kv_cache_append") && e.getMessage().contains("[1, 1, 2, 8]"), e.getMessage());
            Tensor nlBad = Tensor.of(new int[] {2}, 1);
            e = assertThrows(IllegalArgumentException.class,
                    () -> KvCache.append(kc, vc, bt, lens, kn, kn, nlBad, KvCache.AppendOptions.DEFAULT));
            assertTrue(e.getMessage().contains("new_lens[0] = 2"), e.getMessage());

            // the cache: full pool, too long a sequence, unknown sequences
            int a = cache.newSequence();
            int b = cache.newSequence();
            cache.step(new int[] {a}, 24).close();
            assertEquals(3, cache.usedPages());
            PagedKvCache.CacheFullException full = assertThrows(PagedKvCache.CacheFullException.class,
                    () -> cache.step(new int[] {b}, 9));
            assertTrue(full.getMessage().startsWith("cache full: sequence " + b + " needs page 5 of 4")
                    && full.getMessage().contains("[4, 8, 2, 16] float32"), full.getMessage());
            assertEquals(0, cache.length(b), "a failed step reserves nothing");
            assertEquals(3, cache.usedPages());
            e = assertThrows(IllegalArgumentException.class, () -> cache.step(new int[] {a}, 1));
            assertTrue(e.getMessage().contains("would hold 25 tokens") && e.getMessage().contains("3 pages of 8"),
                    e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> cache.step(new int[] {3}, 1));
            // freeing returns the pages; the next sequence reuses them
            cache.free(a);
            assertEquals(0, cache.usedPages());
            cache.step(new int[] {b}, 17).close();
            assertEquals(3, cache.usedPages());
            assertEquals(17, cache.length(b));
        }
    }
}
