package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertClose;
import static dev.cortado.testing.Reference.assertCloseChecked;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.ops.Attention.Layout;
import dev.cortado.ops.Attention.Options;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Fused attention (forward o and lse, backward dq/dk/dv) and RoPE against an independent float64
 * reference written here: the explicit Lq x Lk score matrix, softmax, matmuls in plain arrays,
 * dropout from a Java Philox4x32-10 with the element numbering of attention.h. Tolerances
 * (abs + rel): float64 1e-10; float32 2e-5 (float32 accumulation, polynomial exp); float16 2e-3
 * and bfloat16 2e-2 (inputs rounded, float32 compute, one rounding of each result, o rounded
 * before it enters the backward's rowsum(dO * o)). The absolute parts are fractions of each
 * reference's largest |value| ({@link Reference#relativeTo}), and every comparison first checks
 * that an all-zero output would fail it.
 */
public class AttentionOpsTest {
    public enum MaskType { NONE, BOOL, ADDITIVE, KEY_PADDING, FULLY_MASKED_ROW }

    /** One grid point; softcap 0 means no soft-capping. */
    public record Case(int b, int hq, int hkv, int lq, int lk, int d, int dv, boolean causal, MaskType mask, Layout layout,
                DType dtype, double dropout, double softcap) {
        Case(int b, int hq, int hkv, int lq, int lk, int d, int dv, boolean causal, MaskType mask, Layout layout,
             DType dtype, double dropout) {
            this(b, hq, hkv, lq, lk, d, dv, causal, mask, layout, dtype, dropout, 0);
        }

        Case softcapped(double cap) {
            return new Case(b, hq, hkv, lq, lk, d, dv, causal, mask, layout, dtype, dropout, cap);
        }

        @Override
        public String toString() {
            return dtype + " B" + b + " Hq" + hq + " Hkv" + hkv + " Lq" + lq + " Lk" + lk + " D" + d + " Dv" + dv
                    + (causal ? " causal" : "") + " mask " + mask + " " + layout + (dropout > 0 ? " dropout " + dropout : "")
                    + (softcap > 0 ? " softcap " + softcap : "");
        }
    }

    static Tol tol(DType t) {
        return switch (t) {
            case FLOAT64 -> new Tol(1e-10, 1e-10);
            case FLOAT32 -> new Tol(2e-5, 2e-5);
            case FLOAT16 -> new Tol(2e-3, 2e-3);
            default -> new Tol(2e-2, 2e-2);
        };
    }

    // ------------------------------------------------------------------ Philox4x32-10
    static int[] philox(long group, long seed, long offset) {
        int c0 = (int) group;
        int c1 = (int) (group >>> 32);
        int c2 = (int) offset;
        int c3 = (int) (offset >>> 32);
        int k0 = (int) seed;
        int k1 = (int) (seed >>> 32);
        for (int round = 0; round < 10; round++) {
            long p0 = 0xD2511F53L * (c0 & 0xffffffffL);
            long p1 = 0xCD9E8D57L * (c2 & 0xffffffffL);
            c0 = (int) (p1 >>> 32) ^ c1 ^ k0;
            c1 = (int) p1;
            c2 = (int) (p0 >>> 32) ^ c3 ^ k1;
            c3 = (int) p0;
            k0 += 0x9E3779B9;
            k1 += 0xBB67AE85;
        }
        return new int[] {c0, c1, c2, c3};
    }

    static boolean keep(long e, double p, long seed, long offset) {
        int r = philox(e >>> 2, seed, offset)[(int) (e & 3)];
        float u = (r >>> 8) * 0x1p-24f;
        return u >= (float) p;
    }

    @Test
    void philoxKnownAnswer() {
        int[] r = philox(0, 0, 0);
        assertArrayEquals(new int[] {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}, r);
    }

    // ------------------------------------------------------------------ float64 reference
    /** Logical [B, H, L, F] arrays (flattened), mask additive [B, Hq, Lq, Lk] (-inf = forbidden) or null. */
    public record Ref(double[] o, double[] lse, double[] dq, double[] dk, double[] dv) {
    }

    public static Ref reference(Case c, double[] q, double[] k, double[] v, double[] mask, double[] dO, double scale, long seed,
                         long offset) {
        int lq = c.lq(), lk = c.lk(), d = c.d(), dv = c.dv(), g = c.hq() / c.hkv();
        double[] o = new double[c.b() * c.hq() * lq * dv];
        double[] lse = new double[c.b() * c.hq() * lq];
        double[] dq = new double[q.length];
        double[] dk = new double[k.length];
        double[] dvv = new double[v.length];
        double zs = 1.0 / (1.0 - c.dropout());
        for (int b = 0; b < c.b(); b++) {
            for (int h = 0; h < c.hq(); h++) {
                int hk = h / g;
                int qb = (b * c.hq() + h) * lq;
                int kb = (b * c.hkv() + hk) * lk;
                double[][] p = new double[lq][lk];
                double[][] z = new double[lq][lk];
                double[][] capGrad = new double[lq][lk]; // d(cap(s))/ds = 1 - tanh^2(s / cap)
                for (int i = 0; i < lq; i++) {
                    double m = Double.NEGATIVE_INFINITY;
                    double[] s = new double[lk];
                    for (int j = 0; j < lk; j++) {
                        double dot = 0;
                        for (int x = 0; x < d; x++) {
                            dot += q[(qb + i) * d + x] * k[(kb + j) * d + x];
                        }
                        double raw = dot * scale;
                        capGrad[i][j] = 1;
                        if (c.softcap() > 0) {
                            double t = Math.tanh(raw / c.softcap());
                            raw = c.softcap() * t;
                            capGrad[i][j] = 1 - t * t;
                        }
                        s[j] = raw + (mask == null ? 0 : mask[(qb + i) * lk + j]);
                        if (c.causal() && j > i + lk - lq) {
                            s[j] = Double.NEGATIVE_INFINITY;
                        }
                        m = Math.max(m, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < lk; j++) {
                        p[i][j] = m == Double.NEGATIVE_INFINITY ? 0 : Math.exp(s[j] - m);
                        sum += p[i][j];
                    }
                    for (int j = 0; j < lk; j++) {
                        p[i][j] = sum > 0 ? p[i][j] / sum : 0;
                        long e = (long) (qb + i) * lk + j;
                        z[i][j] = c.dropout() > 0 ? (keep(e, c.dropout(), seed, offset) ? zs : 0) : 1;
                    }
                    lse[qb + i] = sum > 0 ? m + Math.log(sum) : Double.NEGATIVE_INFINITY;
                    for (int x = 0; x < dv; x++) {
                        double acc = 0;
                        for (int j = 0; j < lk; j++) {
                            acc += p[i][j] * z[i][j] * v[(kb + j) * dv + x];
                        }
                        o[(qb + i) * dv + x] = acc;
                    }
                }
                if (dO == null) {
                    continue;
                }
                for (int i = 0; i < lq; i++) {
                    double[] dp = new double[lk];
                    double rs = 0;
                    for (int j = 0; j < lk; j++) {
                        double acc = 0;
                        for (int x = 0; x < dv; x++) {
                            acc += dO[(qb + i) * dv + x] * v[(kb + j) * dv + x];
                        }
                        dp[j] = acc * z[i][j];
                        rs += p[i][j] * dp[j];
                    }
                    for (int j = 0; j < lk; j++) {
                        double ds = p[i][j] * (dp[j] - rs) * capGrad[i][j] * scale;
                        for (int x = 0; x < d; x++) {
                            dq[(qb + i) * d + x] += ds * k[(kb + j) * d + x];
                            dk[(kb + j) * d + x] += ds * q[(qb + i) * d + x];
                        }
                        double pz = p[i][j] * z[i][j];
                        for (int x = 0; x < dv; x++) {
                            dvv[(kb + j) * dv + x] += pz * dO[(qb + i) * dv + x];
                        }
                    }
                }
            }
        }
        return new Ref(o, lse, dq, dk, dvv);
    }

    // ------------------------------------------------------------------ layouts
    /** [B, H, L, F] logical data to the physical order of the layout. */
    static double[] toPhys(double[] x, int b, int h, int l, int f, Layout layout) {
        if (layout == Layout.BHSD) {
            return x;
        }
        double[] y = new double[x.length];
        for (int bi = 0; bi < b; bi++) {
            for (int hi = 0; hi < h; hi++) {
                for (int li = 0; li < l; li++) {
                    System.arraycopy(x, ((bi * h + hi) * l + li) * f, y, ((bi * l + li) * h + hi) * f, f);
                }
            }
        }
        return y;
    }

    static double[] fromPhys(double[] y, int b, int h, int l, int f, Layout layout) {
        if (layout == Layout.BHSD) {
            return y;
        }
        double[] x = new double[y.length];
        for (int bi = 0; bi < b; bi++) {
            for (int hi = 0; hi < h; hi++) {
                for (int li = 0; li < l; li++) {
                    System.arraycopy(y, ((bi * l + li) * h + hi) * f, x, ((bi * h + hi) * l + li) * f, f);
                }
            }
        }
        return x;
    }

    static long[] physDims(int b, int h, int l, int f, Layout layout) {
        return layout == Layout.BHSD ? new long[] {b, h, l, f} : new long[] {b, l, h, f};
    }

    /** A tensor of the layout holding logical data x; x is replaced by the values the tensor stores. */
    static Tensor tensor(double[] x, int b, int h, int l, int f, Case c) {
        Tensor t = Reference.make(toPhys(x, b, h, l, f, c.layout()), c.dtype(), physDims(b, h, l, f, c.layout()));
        double[] stored = fromPhys(t.toDoubleArray(), b, h, l, f, c.layout());
        System.arraycopy(stored, 0, x, 0, x.length);
        return t;
    }

    static double[] logical(Tensor t, int b, int h, int l, int f, Layout layout) {
        return fromPhys(t.toDoubleArray(), b, h, l, f, layout);
    }

    // ------------------------------------------------------------------ the grid
    static void run(Case c, long seedRandom) {
        try (var scope = Scope.open()) {
            Random r = new Random(seedRandom);
            double[] q = Reference.uniform(r, c.b() * c.hq() * c.lq() * c.d(), -1, 1);
            double[] k = Reference.uniform(r, c.b() * c.hkv() * c.lk() * c.d(), -1, 1);
            double[] v = Reference.uniform(r, c.b() * c.hkv() * c.lk() * c.dv(), -1, 1);
            double[] dO = Reference.uniform(r, c.b() * c.hq() * c.lq() * c.dv(), -1, 1);
            Tensor tq = tensor(q, c.b(), c.hq(), c.lq(), c.d(), c);
            Tensor tk = tensor(k, c.b(), c.hkv(), c.lk(), c.d(), c);
            Tensor tv = tensor(v, c.b(), c.hkv(), c.lk(), c.dv(), c);
            Tensor tdo = tensor(dO, c.b(), c.hq(), c.lq(), c.dv(), c);
            // mask: the tensor and its full additive [B, Hq, Lq, Lk] expansion
            Tensor tm = null;
            double[] full = null;
            int n = c.b() * c.hq() * c.lq() * c.lk();
            switch (c.mask()) {
                case BOOL, FULLY_MASKED_ROW -> {
                    double[] m = new double[n];
                    for (int i = 0; i < n; i++) {
                        m[i] = r.nextDouble() < 0.8 ? 1 : 0;
                    }
                    if (c.mask() == MaskType.FULLY_MASKED_ROW) {
                        int row = Math.min(2, c.lq() - 1);
                        for (int j = 0; j < c.lk(); j++) {
                            m[row * c.lk() + j] = 0;
                        }
                    }
                    tm = Reference.make(m, DType.BOOL, c.b(), c.hq(), c.lq(), c.lk());
                    full = new double[n];
                    for (int i = 0; i < n; i++) {
                        full[i] = m[i] != 0 ? 0 : Double.NEGATIVE_INFINITY;
                    }
                }
                case ADDITIVE -> {
                    double[] m = Reference.uniform(r, n, -2, 2);
                    for (int i = 0; i < n; i++) {
                        if (r.nextDouble() < 0.1) {
                            m[i] = Double.NEGATIVE_INFINITY;
                        }
                    }
                    tm = Reference.make(m, c.dtype(), c.b(), c.hq(), c.lq(), c.lk());
                    full = tm.toDoubleArray();
                }
                case KEY_PADDING -> {
                    double[] m = new double[c.b() * c.lk()];
                    for (int bi = 0; bi < c.b(); bi++) {
                        int valid = 1 + r.nextInt(c.lk());
                        for (int j = 0; j < c.lk(); j++) {
                            m[bi * c.lk() + j] = j < valid ? 1 : 0;
                        }
                    }
                    tm = Reference.make(m, DType.BOOL, c.b(), 1, 1, c.lk());
                    full = new double[n];
                    for (int i = 0; i < n; i++) {
                        int bi = i / (c.hq() * c.lq() * c.lk());
                        full[i] = m[bi * c.lk() + i % c.lk()] != 0 ? 0 : Double.NEGATIVE_INFINITY;
                    }
                }
                default -> {
                }
            }
            Options.Builder ob = Options.builder().layout(c.layout()).causal(c.causal()).softcap(c.softcap());
            if (c.dropout() > 0) {
                ob.dropout(c.dropout(), 1234567L + seedRandom, 42);
            }
            Options opts = ob.build();
            double scale = 1 / Math.sqrt(c.d());
            Tensor[] out = Attention.scaledDotProductAttentionWithLse(tq, tk, tv, tm, opts);
            Ref ref = reference(c, q, k, v, full, dO, scale, 1234567L + seedRandom, 42);
            Tol t = tol(c.dtype());
            // absolute parts are fractions of each reference's largest |value| (dq, dk, dv are
            // often far below 1), and a zeroed output must fail every comparison
            assertCloseChecked(ref.o(), logical(out[0], c.b(), c.hq(), c.lq(), c.dv(), c.layout()),
                    Reference.relativeTo(t, ref.o()), c + ": o");
            assertClose(ref.lse(), out[1].toDoubleArray(), tol(DType.FLOAT32), c + ": lse");
            Tensor[] g = Attention.scaledDotProductAttentionBackward(tdo, tq, tk, tv, out[0], out[1], tm, opts);
            // Half types: o is rounded before the backward reads it; give the gradients one more unit.
            Tol tg = c.dtype() == DType.FLOAT16 || c.dtype() == DType.BFLOAT16 ? t.scaled(2) : t;
            assertCloseChecked(ref.dq(), logical(g[0], c.b(), c.hq(), c.lq(), c.d(), c.layout()),
                    Reference.relativeTo(tg, ref.dq()), c + ": dq");
            assertCloseChecked(ref.dk(), logical(g[1], c.b(), c.hkv(), c.lk(), c.d(), c.layout()),
                    Reference.relativeTo(tg, ref.dk()), c + ": dk");
            assertCloseChecked(ref.dv(), logical(g[2], c.b(), c.hkv(), c.lk(), c.dv(), c.layout()),
                    Reference.relativeTo(tg, ref.dv()), c + ": dv");
        }
    }

    static List<Case> cases() {
        List<Case> cs = new ArrayList<>();
        DType f32 = DType.FLOAT32;
        for (int d : new int[] {32, 64, 80}) {
            for (int l : new int[] {1, 17, 128}) {
                for (boolean causal : new boolean[] {false, true}) {
                    cs.add(new Case(1, 2, 2, l, l, d, d, causal, MaskType.NONE, Layout.BHSD, f32, 0));
                }
            }
        }
        for (int d : new int[] {96, 128, 256}) {
            cs.add(new Case(1, 2, 1, 17, 33, d, d, true, MaskType.NONE, Layout.BSHD, f32, 0));
        }
        // cross attention, both orders (Lq > Lk with causal leaves rows with no key)
        cs.add(new Case(2, 2, 2, 17, 100, 32, 32, false, MaskType.NONE, Layout.BHSD, f32, 0));
        cs.add(new Case(2, 2, 2, 17, 100, 32, 32, true, MaskType.NONE, Layout.BSHD, f32, 0));
        cs.add(new Case(1, 2, 2, 100, 30, 32, 32, true, MaskType.NONE, Layout.BHSD, f32, 0));
        cs.add(new Case(1, 2, 2, 70, 130, 64, 40, true, MaskType.NONE, Layout.BHSD, f32, 0));
        // masks
        for (MaskType m : new MaskType[] {MaskType.BOOL, MaskType.ADDITIVE, MaskType.KEY_PADDING, MaskType.FULLY_MASKED_ROW}) {
            cs.add(new Case(2, 2, 1, 67, 80, 32, 32, false, m, Layout.BHSD, f32, 0));
            cs.add(new Case(1, 4, 2, 20, 70, 64, 64, true, m, Layout.BSHD, f32, 0));
            cs.add(new Case(1, 2, 2, 9, 13, 16, 16, true, m, Layout.BHSD, DType.FLOAT64, 0));
        }
        // GQA / MQA
        for (int[] h : new int[][] {{4, 4}, {4, 2}, {8, 2}, {4, 1}}) {
            cs.add(new Case(2, h[0], h[1], 65, 65, 64, 64, true, MaskType.NONE, Layout.BSHD, f32, 0));
            cs.add(new Case(1, h[0], h[1], 20, 33, 32, 32, false, MaskType.NONE, Layout.BHSD, DType.FLOAT64, 0));
        }
        // one long case (small B*H)
        cs.add(new Case(1, 1, 1, 1000, 1000, 64, 64, true, MaskType.NONE, Layout.BHSD, f32, 0));
        // float64
        for (boolean causal : new boolean[] {false, true}) {
            cs.add(new Case(1, 2, 2, 130, 70, 80, 48, causal, MaskType.NONE, Layout.BSHD, DType.FLOAT64, 0));
        }
        // 16-bit floats
        for (DType t : new DType[] {DType.BFLOAT16, DType.FLOAT16}) {
            cs.add(new Case(1, 2, 2, 70, 70, 64, 64, true, MaskType.NONE, Layout.BHSD, t, 0));
            cs.add(new Case(2, 4, 2, 17, 40, 32, 32, false, MaskType.ADDITIVE, Layout.BSHD, t, 0));
            cs.add(new Case(1, 2, 1, 33, 20, 80, 80, true, MaskType.KEY_PADDING, Layout.BHSD, t, 0));
        }
        // dropout
        cs.add(new Case(1, 2, 2, 70, 90, 32, 32, false, MaskType.NONE, Layout.BHSD, f32, 0.3));
        cs.add(new Case(2, 4, 2, 33, 33, 64, 64, true, MaskType.BOOL, Layout.BSHD, f32, 0.5));
        cs.add(new Case(1, 2, 1, 17, 9, 16, 16, true, MaskType.ADDITIVE, Layout.BHSD, DType.FLOAT64, 0.2));
        cs.add(new Case(1, 2, 2, 40, 40, 32, 32, false, MaskType.NONE, Layout.BHSD, DType.BFLOAT16, 0.1));
        // soft-capping (Gemma 2 uses 50; caps of 1-2 bend most of these scores, whose scale is ~1-3)
        cs.add(new Case(1, 2, 2, 70, 90, 32, 32, false, MaskType.NONE, Layout.BHSD, f32, 0).softcapped(1.5));
        cs.add(new Case(2, 4, 2, 67, 80, 64, 64, true, MaskType.ADDITIVE, Layout.BSHD, f32, 0).softcapped(2));
        cs.add(new Case(1, 4, 1, 33, 20, 80, 48, true, MaskType.KEY_PADDING, Layout.BHSD, f32, 0.3).softcapped(1));
        cs.add(new Case(1, 2, 2, 9, 13, 16, 16, true, MaskType.FULLY_MASKED_ROW, Layout.BHSD, DType.FLOAT64, 0)
                .softcapped(0.75));
        cs.add(new Case(1, 2, 1, 130, 70, 80, 48, false, MaskType.BOOL, Layout.BSHD, DType.FLOAT64, 0.2).softcapped(3));
        cs.add(new Case(1, 2, 2, 70, 70, 64, 64, true, MaskType.NONE, Layout.BHSD, DType.BFLOAT16, 0).softcapped(1));
        cs.add(new Case(2, 4, 2, 17, 40, 32, 32, false, MaskType.ADDITIVE, Layout.BSHD, DType.FLOAT16, 0).softcapped(2));
        return cs;
    }

    @TestFactory
    List<DynamicTest> forwardAndBackwardAgainstReference() {
        List<DynamicTest> tests = new ArrayList<>();
        long s = 1;
        for (Case c : cases()) {
            long seed = s++;
            tests.add(dynamicTest(c.toString(), () -> run(c, seed)));
        }
        return tests;
    }

    // ------------------------------------------------------------------ views and strides
    @Test
    void stridedViewsAndNonUnitFeatureStride() {
        try (var scope = Scope.open()) {
            Random r = new Random(7);
            int b = 1, h = 2, l = 19, d = 16;
            Case c = new Case(b, h, h, l, l, d, d, true, MaskType.NONE, Layout.BHSD, DType.FLOAT32, 0);
            double[] q = Reference.uniform(r, b * h * l * d, -1, 1);
            double[] k = Reference.uniform(r, b * h * l * d, -1, 1);
            double[] v = Reference.uniform(r, b * h * l * d, -1, 1);
            // q: a [B, L, H, D] tensor seen as [B, H, L, D] (feature stride 1, permuted);
            // k: a [B, H, D, L] tensor transposed (feature stride L: copied by the op).
            Tensor qb = Reference.make(toPhys(q, b, h, l, d, Layout.BSHD), DType.FLOAT32, b, l, h, d);
            Tensor qv = qb.permute(0, 2, 1, 3);
            double[] kt = new double[k.length];
            for (int hi = 0; hi < h; hi++) {
                for (int li = 0; li < l; li++) {
                    for (int x = 0; x < d; x++) {
                        kt[(hi * d + x) * l + li] = k[(hi * l + li) * d + x];
                    }
                }
            }
            Tensor kb = Reference.make(kt, DType.FLOAT32, b, h, d, l);
            Tensor kv = kb.transpose(2, 3);
            Tensor tv = Reference.make(v, DType.FLOAT32, b, h, l, d);
            q = qv.contiguous().toDoubleArray();
            k = kv.contiguous().toDoubleArray();
            v = tv.toDoubleArray();
            Tensor o = Attention.scaledDotProductAttention(qv, kv, tv, null, Options.builder().causal(true).build());
            Ref ref = reference(c, q, k, v, null, null, 1 / Math.sqrt(d), 0, 0);
            assertClose(ref.o(), o.toDoubleArray(), tol(DType.FLOAT32), "strided views");
        }
    }

    // ------------------------------------------------------------------ finite differences
    @Test
    void gradientsMatchFiniteDifferences() {
        try (var scope = Scope.open()) {
            Random r = new Random(11);
            Case c = new Case(1, 2, 1, 3, 4, 5, 3, true, MaskType.NONE, Layout.BHSD, DType.FLOAT64, 0);
            double[] q = Reference.uniform(r, 2 * 3 * 5, -1, 1);
            double[] k = Reference.uniform(r, 4 * 5, -1, 1);
            double[] v = Reference.uniform(r, 4 * 3, -1, 1);
            double[] w = Reference.uniform(r, 2 * 3 * 3, -1, 1);
            for (double cap : new double[] {0, 0.8}) {
                finiteDifferences(q, k, v, w, Options.builder().causal(true).scale(0.7).softcap(cap).build());
            }
        }
    }

    private static void finiteDifferences(double[] q, double[] k, double[] v, double[] w, Options opts) {
        try (var scope = Scope.open()) {
            Tensor tq = Tensor.of(q, 1, 2, 3, 5);
            Tensor tk = Tensor.of(k, 1, 1, 4, 5);
            Tensor tv = Tensor.of(v, 1, 1, 4, 3);
            Tensor tw = Tensor.of(w, 1, 2, 3, 3);
            Tensor[] fo = Attention.scaledDotProductAttentionWithLse(tq, tk, tv, null, opts);
            Tensor[] g = Attention.scaledDotProductAttentionBackward(tw, tq, tk, tv, fo[0], fo[1], null, opts);
            double[][] inputs = {q, k, v};
            long[][] dims = {{1, 2, 3, 5}, {1, 1, 4, 5}, {1, 1, 4, 3}};
            double eps = 1e-6;
            for (int which = 0; which < 3; which++) {
                double[] analytic = g[which].toDoubleArray();
                double[] numeric = new double[analytic.length];
                for (int i = 0; i < numeric.length; i++) {
                    double[] f = new double[2];
                    for (int sgn = 0; sgn < 2; sgn++) {
                        double[][] x = {q.clone(), k.clone(), v.clone()};
                        x[which][i] += sgn == 0 ? eps : -eps;
                        try (Tensor a = Tensor.of(x[0], dims[0]); Tensor bb = Tensor.of(x[1], dims[1]);
                             Tensor cc = Tensor.of(x[2], dims[2]);
                             Tensor o = Attention.scaledDotProductAttention(a, bb, cc, null, opts)) {
                            double[] ov = o.toDoubleArray();
                            for (int j = 0; j < ov.length; j++) {
                                f[sgn] += ov[j] * w[j];
                            }
                        }
                    }
                    numeric[i] = (f[0] - f[1]) / (2 * eps);
                }
                assertClose(numeric, analytic, new Tol(1e-6, 1e-7), "finite differences of input " + which + ", " + opts);
                assertTrue(inputs[which].length == numeric.length);
            }
        }
    }

    // ------------------------------------------------------------------ RoPE
    public static double[] ropeRef(double[] x, int b, int h, int l, int d, long[] pos, int rd, double base, boolean inter,
                            boolean inverse) {
        double[] y = x.clone();
        int half = rd / 2;
        for (int bh = 0; bh < b * h; bh++) {
            for (int li = 0; li < l; li++) {
                double p = pos == null ? li : pos[li];
                int row = (bh * l + li) * d;
                for (int i = 0; i < half; i++) {
                    double ang = p * Math.pow(base, -2.0 * i / rd) * (inverse ? -1 : 1);
                    int ia = inter ? 2 * i : i;
                    int ib = inter ? 2 * i + 1 : i + half;
                    double xa = x[row + ia];
                    double xb = x[row + ib];
                    y[row + ia] = xa * Math.cos(ang) - xb * Math.sin(ang);
                    y[row + ib] = xa * Math.sin(ang) + xb * Math.cos(ang);
                }
            }
        }
        return y;
    }

    @TestFactory
    List<DynamicTest> ropeAgainstReference() {
        List<DynamicTest> tests = new ArrayList<>();
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
            for (boolean inter : new boolean[] {false, true}) {
                for (Layout layout : Layout.values()) {
                    for (int rd : new int[] {8, 16}) {
                        for (boolean withPos : new boolean[] {false, true}) {
                            String name = t + (inter ? " interleaved" : " half-split") + " " + layout + " rd " + rd
                                    + (withPos ? " positions" : "");
                            tests.add(dynamicTest(name, () -> {
                                try (var scope = Scope.open()) {
                                    Random r = new Random(rd * 31 + (inter ? 1 : 0));
                                    int b = 2, h = 3, l = 7, d = 16;
                                    double[] x = Reference.uniform(r, b * h * l * d, -1, 1);
                                    long[] pos = null;
                                    Tensor tp = null;
                                    if (withPos) {
                                        pos = new long[l];
                                        for (int i = 0; i < l; i++) {
                                            pos[i] = 3L * i + 100;
                                        }
                                        tp = Tensor.of(pos, l);
                                    }
                                    Case c = new Case(b, h, h, l, l, d, d, false, MaskType.NONE, layout, t, 0);
                                    Tensor tx = tensor(x, b, h, l, d, c);
                                    Tensor y = Attention.rope(tx, tp, rd, 10000, inter, layout);
                                    double[] want = ropeRef(x, b, h, l, d, pos, rd, 10000, inter, false);
                                    Tol tl = t == DType.FLOAT64 ? new Tol(1e-12, 1e-12) : Reference.tol(t).scaled(2);
                                    assertClose(want, logical(y, b, h, l, d, layout), tl, name + ": rope");
                                    Tensor back = Attention.ropeBackward(tx, tp, rd, 10000, inter, layout);
                                    double[] inv = ropeRef(x, b, h, l, d, pos, rd, 10000, inter, true);
                                    assertClose(inv, logical(back, b, h, l, d, layout), tl, name + ": rope_backward");
                                    if (t == DType.FLOAT64) {
                                        Tensor round = Attention.ropeBackward(y, tp, rd, 10000, inter, layout);
                                        assertClose(x, logical(round, b, h, l, d, layout), tl, name + ": inverse");
                                    }
                                }
                            }));
                        }
                    }
                }
            }
        }
        return tests;
    }

    // ------------------------------------------------------------------ memory
    @Test
    void longSequenceUsesBlockMemory() {
        try (var scope = Scope.open()) {
            int l = 16384, d = 64;
            Random r = new Random(3);
            double[] q = Reference.uniform(r, l * d, -1, 1);
            double[] k = Reference.uniform(r, l * d, -1, 1);
            double[] v = Reference.uniform(r, l * d, -1, 1);
            Tensor tq = Reference.make(q, DType.FLOAT32, 1, 1, l, d);
            Tensor tk = Reference.make(k, DType.FLOAT32, 1, 1, l, d);
            Tensor tv = Reference.make(v, DType.FLOAT32, 1, 1, l, d);
            q = tq.toDoubleArray();
            k = tk.toDoubleArray();
            v = tv.toDoubleArray();
            long before = CpuBackend.allocatedBytes();
            Tensor[] out = Attention.scaledDotProductAttentionWithLse(tq, tk, tv, null,
                    Options.builder().causal(true).build());
            long used = CpuBackend.allocatedBytes() - before;
            // o (4 MiB) and lse (64 KiB) only; the kernel's scratch is O(block) per thread (std::vector, untracked
            // and tiny), far from the 1 GiB a materialized 16384^2 float32 score matrix would take.
            assertTrue(used < 16L << 20, "allocated " + used + " bytes");
            // spot-check a few rows against the reference
            double[] o = out[0].toDoubleArray();
            double[] lse = out[1].toDoubleArray();
            for (int i : new int[] {0, 1, 777, 8191, l - 1}) {
                double m = Double.NEGATIVE_INFINITY;
                double[] s = new double[i + 1];
                for (int j = 0; j <= i; j++) {
                    double dot = 0;
                    for (int x = 0; x < d; x++) {
                        dot += q[i * d + x] * k[j * d + x];
                    }
                    s[j] = dot / Math.sqrt(d);
                    m = Math.max(m, s[j]);
                }
                double sum = 0;
                double[] acc = new double[d];
                for (int j = 0; j <= i; j++) {
                    double p = Math.exp(s[j] - m);
                    sum += p;
                    for (int x = 0; x < d; x++) {
                        acc[x] += p * v[j * d + x];
                    }
                }
                for (int x = 0; x < d; x++) {
                    acc[x] /= sum;
                }
                assertClose(acc, java.util.Arrays.copyOfRange(o, i * d, (i + 1) * d), tol(DType.FLOAT32), "row " + i);
                assertClose(new double[] {m + Math.log(sum)}, new double[] {lse[i]}, tol(DType.FLOAT32), "lse " + i);
            }
        }
    }

    // ------------------------------------------------------------------ bad input
    @Test
    void badInputsNameTheOpAndShapes() {
        try (var scope = Scope.open()) {
            Tensor q = Tensor.zeros(DType.FLOAT32, 1, 4, 8, 16);
            Tensor k = Tensor.zeros(DType.FLOAT32, 1, 2, 8, 16);
            Tensor v = Tensor.zeros(DType.FLOAT32, 1, 2, 8, 16);
            String op = "scaled_dot_product_attention";
            var e1 = assertThrows(IllegalArgumentException.class,
                    () -> Attention.scaledDotProductAttention(q, Tensor.zeros(DType.FLOAT32, 1, 2, 8, 32), v, null, Options.DEFAULT));
            assertTrue(e1.getMessage().startsWith(op + ":") && e1.getMessage().contains("head dims")
                    && e1.getMessage().contains("[1, 4, 8, 16]") && e1.getMessage().contains("[1, 2, 8, 32]"), e1.getMessage());
            var e2 = assertThrows(IllegalArgumentException.class, () -> Attention.scaledDotProductAttention(q,
                    Tensor.zeros(DType.FLOAT32, 1, 3, 8, 16), Tensor.zeros(DType.FLOAT32, 1, 3, 8, 16), null, Options.DEFAULT));
            assertTrue(e2.getMessage().startsWith(op + ":") && e2.getMessage().contains("[1, 3, 8, 16]"), e2.getMessage());
            var e3 = assertThrows(IllegalArgumentException.class, () -> Attention.scaledDotProductAttention(q,
                    Tensor.zeros(DType.FLOAT32, 2, 2, 8, 16), Tensor.zeros(DType.FLOAT32, 2, 2, 8, 16), null, Options.DEFAULT));
            assertTrue(e3.getMessage().startsWith(op + ":") && e3.getMessage().contains("batch")
                    && e3.getMessage().contains("[2, 2, 8, 16]"), e3.getMessage());
            var e4 = assertThrows(IllegalArgumentException.class, () -> Attention.scaledDotProductAttention(q, k, v,
                    Tensor.zeros(DType.BOOL, 1, 4, 7, 8), Options.DEFAULT));
            assertTrue(e4.getMessage().startsWith(op + ":") && e4.getMessage().contains("mask shape [1, 4, 7, 8]")
                    && e4.getMessage().contains("[1, 4, 8, 8]"), e4.getMessage());
            var e5 = assertThrows(IllegalArgumentException.class,
                    () -> Attention.scaledDotProductAttention(q, k, Tensor.zeros(DType.FLOAT64, 1, 2, 8, 16), null, Options.DEFAULT));
            assertTrue(e5.getMessage().contains("same dtype"), e5.getMessage());
            var e6 = assertThrows(IllegalArgumentException.class,
                    () -> Attention.rope(q, null, 5, 10000, false, Layout.BHSD));
            assertTrue(e6.getMessage().startsWith("rope:") && e6.getMessage().contains("rotary dim 5"), e6.getMessage());
            for (double cap : new double[] {-1, Double.NaN, Double.POSITIVE_INFINITY}) {
                var e7 = assertThrows(IllegalArgumentException.class, () -> Attention.scaledDotProductAttention(q, k, v,
                        null, Options.builder().softcap(cap).build()));
                assertTrue(e7.getMessage().startsWith(op + ":") && e7.getMessage().contains("softcap must be finite and >= 0")
                        && e7.getMessage().contains("[1, 4, 8, 16]"), e7.getMessage());
            }
            // an empty batch is a no-op
            Tensor o = Attention.scaledDotProductAttention(Tensor.zeros(DType.FLOAT32, 0, 4, 8, 16),
                    Tensor.zeros(DType.FLOAT32, 0, 2, 8, 16), Tensor.zeros(DType.FLOAT32, 0, 2, 8, 16), null, Options.DEFAULT);
            assertEquals(0, o.numel());
        }
    }
}
