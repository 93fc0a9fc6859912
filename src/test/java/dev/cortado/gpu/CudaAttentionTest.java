package dev.cortado.gpu;

import static dev.cortado.gpu.CudaOpsTest.assertClose;
import static dev.cortado.gpu.CudaOpsTest.tolerance;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.backend.cuda.CachingAllocator;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.ops.Attention;
import dev.cortado.ops.Attention.Layout;
import dev.cortado.ops.Attention.Options;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * The CUDA attention kernels (native/cuda/attention.cu: FlashAttention-2 forward and backward on
 * tensor cores for bfloat16/float16, the SIMT path for float32/float64, RoPE) against their CPU
 * twins on the same random inputs, and against a float64 naive reference written here (explicit
 * score matrix) for the small shapes without dropout. Grid: head dims 32, 64, 80, 96, 128, 256;
 * lengths 1, 17, 128, 1000 with Lq != Lk (cross attention, decoding, causal with Lq > Lk so that
 * some rows are empty); causal on/off; boolean [Lq, Lk], additive [B, Hq, Lq, Lk] and key-padding
 * [B, 1, 1, Lk] masks; GQA ratios 1, 2, 8; dropout with a fixed seed (the CUDA mask is the CPU's,
 * bit for bit, so the outputs agree within the usual tolerance); both layouts; o, lse, dq, dk, dv.
 *
 * <p>Tolerances are max-norm relative: |cuda - ref| &lt;= tol |ref| + tol max(max|ref|, 0.01) per tensor.
 * float64 1e-9; float32 2e-4 (summation order); float16 1e-2, bfloat16 4e-2 (P and dS are rounded
 * to 16 bits before the tensor-core products, as in FlashAttention; the CPU keeps them in float32);
 * lse 1e-4 relative for every dtype. Run on a GPU machine with {@code mvn verify -Pgpu}.
 */
@Tag("gpu")
class CudaAttentionTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    enum Mask { NONE, BOOL, ADDITIVE, KEY_PADDING }

    /** One grid point; softcap 0 means no soft-capping. */
    record Case(int b, int hq, int hkv, int lq, int lk, int d, boolean causal, Mask mask, Layout layout, DType dtype,
                double dropout, double softcap) {
        Case(int b, int hq, int hkv, int lq, int lk, int d, boolean causal, Mask mask, Layout layout, DType dtype,
             double dropout) {
            this(b, hq, hkv, lq, lk, d, causal, mask, layout, dtype, dropout, 0);
        }

        @Override
        public String toString() {
            return dtype + " B" + b + " Hq" + hq + " Hkv" + hkv + " Lq" + lq + " Lk" + lk + " D" + d
                    + (causal ? " causal" : "") + " mask " + mask + " " + layout
                    + (dropout > 0 ? " dropout " + dropout : "") + (softcap > 0 ? " softcap " + softcap : "");
        }
    }

    static double tol(DType t) {
        return switch (t) {
            case FLOAT64 -> 1e-9;
            case FLOAT32 -> 2e-4;
            case FLOAT16 -> 1e-2;
            default -> 4e-2;
        };
    }

    /**
     * |got - ref| <= rel |ref| + rel max(max|ref|, 0.01) elementwise; infinities must match. The floor
     * covers tensors that are exactly zero in exact arithmetic (e.g. dq, dk with a single key), where
     * both sides only carry rounding noise of the O(1) inputs.
     */
    static void assertCloseNorm(double[] ref, double[] got, double rel, String what) {
        assertEquals(ref.length, got.length, what + ": length");
        double scale = 0.01;
        for (double x : ref) {
            if (Double.isFinite(x)) {
                scale = Math.max(scale, Math.abs(x));
            }
        }
        for (int i = 0; i < ref.length; i++) {
            if (Double.isInfinite(ref[i]) || Double.isNaN(ref[i])) {
                assertEquals(ref[i], got[i], what + " [" + i + "]");
                continue;
            }
            double t = rel * Math.abs(ref[i]) + rel * scale;
            assertTrue(Math.abs(ref[i] - got[i]) <= t, what + " [" + i + "]: reference " + ref[i] + " vs cuda " + got[i]
                    + " (tolerance " + t + ")");
        }
    }

    static Tensor random(DType type, long seed, double lo, double hi, long... dims) {
        try (Tensor f = Generator.seeded(seed).uniform(lo, hi, DType.FLOAT32, Device.CPU, dims)) {
            return f.to(type);
        }
    }

    static long[] physDims(int b, int h, int l, int f, Layout layout) {
        return layout == Layout.BHSD ? new long[] {b, h, l, f} : new long[] {b, l, h, f};
    }

    /** Values of t in logical [B, H, L, F] order (any device, any layout). */
    static double[] logical(Tensor t, Layout layout) {
        try (Tensor p = layout == Layout.BHSD ? t.contiguous() : t.permute(0, 2, 1, 3).contiguous();
             Tensor c = p.device().equals(Device.CPU) ? p.contiguous() : p.to(Device.CPU)) {
            return c.toDoubleArray();
        }
    }

    // ------------------------------------------------------------------ float64 naive reference
    /** {o, lse, dq, dk, dv} in logical BHSD order; maskAdd(b, h, i, j) gives 0, -inf or the additive value. */
    interface MaskFn {
        double at(int b, int h, int i, int j);
    }

    static double[][] reference(Case c, double[] q, double[] k, double[] v, double[] dO, MaskFn mask, double scale) {
        int b = c.b(), hq = c.hq(), hkv = c.hkv(), lq = c.lq(), lk = c.lk(), d = c.d(), g = hq / hkv;
        double[] o = new double[b * hq * lq * d];
        double[] lse = new double[b * hq * lq];
        double[] dq = new double[q.length];
        double[] dk = new double[k.length];
        double[] dv = new double[v.length];
        double[] s = new double[lk];
        double[] dp = new double[lk];
        double[] gc = new double[lk]; // d(cap(x))/dx = 1 - tanh^2(x / cap)
        for (int bb = 0; bb < b; bb++) {
            for (int h = 0; h < hq; h++) {
                int hk = h / g;
                for (int i = 0; i < lq; i++) {
                    int qr = ((bb * hq + h) * lq + i) * d;
                    double m = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < lk; j++) {
                        int kr = ((bb * hkv + hk) * lk + j) * d;
                        double x = 0;
                        for (int c2 = 0; c2 < d; c2++) {
                            x += q[qr + c2] * k[kr + c2];
                        }
                        x *= scale;
                        gc[j] = 1;
                        if (c.softcap() > 0) {
                            double th = Math.tanh(x / c.softcap());
                            x = c.softcap() * th;
                            gc[j] = 1 - th * th;
                        }
                        x += mask.at(bb, h, i, j);
                        if (c.causal() && j > i + (lk - lq)) {
                            x = Double.NEGATIVE_INFINITY;
                        }
                        s[j] = x;
                        m = Math.max(m, x);
                    }
                    double l = 0;
                    for (int j = 0; j < lk; j++) {
                        s[j] = m == Double.NEGATIVE_INFINITY ? 0 : Math.exp(s[j] - m);
                        l += s[j];
                    }
                    int row = (bb * hq + h) * lq + i;
                    lse[row] = l > 0 ? m + Math.log(l) : Double.NEGATIVE_INFINITY;
                    if (l == 0) {
                        continue;
                    }
                    double delta = 0;
                    for (int j = 0; j < lk; j++) {
                        s[j] /= l;
                        int vr = ((bb * hkv + hk) * lk + j) * d;
                        double acc = 0;
                        for (int c2 = 0; c2 < d; c2++) {
                            o[qr + c2] += s[j] * v[vr + c2];
                            acc += dO[qr + c2] * v[vr + c2];
                        }
                        dp[j] = acc;
                    }
                    for (int c2 = 0; c2 < d; c2++) {
                        delta += dO[qr + c2] * o[qr + c2];
                    }
                    for (int j = 0; j < lk; j++) {
                        double ds = s[j] * (dp[j] - delta) * gc[j];
                        int kr = ((bb * hkv + hk) * lk + j) * d;
                        for (int c2 = 0; c2 < d; c2++) {
                            dv[kr + c2] += s[j] * dO[qr + c2];
                            dk[kr + c2] += scale * ds * q[qr + c2];
                            dq[qr + c2] += scale * ds * k[kr + c2];
                        }
                    }
                }
            }
        }
        return new double[][] {o, lse, dq, dk, dv};
    }

    // ------------------------------------------------------------------ the grid
    static List<Case> cases() {
        List<Case> cs = new ArrayList<>();
        for (DType t : new DType[] {DType.BFLOAT16, DType.FLOAT16, DType.FLOAT32}) {
            for (int d : new int[] {32, 64, 80, 96, 128, 256}) {
                cs.add(new Case(2, 4, 4, 17, 17, d, false, Mask.NONE, Layout.BHSD, t, 0));
                cs.add(new Case(1, 8, 2, 128, 1000, d, true, Mask.KEY_PADDING, Layout.BSHD, t, 0));
                cs.add(new Case(1, 8, 1, 1000, 128, d, true, Mask.ADDITIVE, Layout.BHSD, t, 0));
                cs.add(new Case(2, 2, 1, 1, 17, d, false, Mask.BOOL, Layout.BSHD, t, 0.1));
                cs.add(new Case(1, 4, 2, 128, 128, d, true, Mask.NONE, Layout.BHSD, t, 0.2));
                cs.add(new Case(1, 2, 2, 1, 1, d, true, Mask.NONE, Layout.BSHD, t, 0));
            }
            cs.add(new Case(1, 2, 2, 1000, 1000, 64, false, Mask.NONE, Layout.BSHD, t, 0));
            cs.add(new Case(1, 2, 1, 1000, 1000, 128, true, Mask.KEY_PADDING, Layout.BHSD, t, 0.1));
            cs.add(new Case(1, 3, 3, 33, 47, 20, true, Mask.ADDITIVE, Layout.BHSD, t, 0)); // D % 8 != 0: scalar loads
            // soft-capping (tanh on the scores; 1 - tanh^2 in the backward), tensor-core and SIMT paths
            cs.add(new Case(2, 4, 2, 70, 90, 64, true, Mask.ADDITIVE, Layout.BHSD, t, 0, 1.5));
            cs.add(new Case(1, 4, 1, 33, 129, 128, false, Mask.KEY_PADDING, Layout.BSHD, t, 0.1, 2));
        }
        for (int d : new int[] {32, 80, 256}) {
            cs.add(new Case(1, 4, 2, 17, 128, d, true, Mask.BOOL, Layout.BHSD, DType.FLOAT64, 0));
            cs.add(new Case(1, 2, 1, 128, 17, d, false, Mask.ADDITIVE, Layout.BSHD, DType.FLOAT64, 0.1));
        }
        cs.add(new Case(1, 4, 2, 40, 40, 80, true, Mask.BOOL, Layout.BHSD, DType.FLOAT64, 0, 0.75));
        return cs;
    }

    @TestFactory
    List<DynamicTest> cudaMatchesCpuAndReference() {
        List<DynamicTest> ts = new ArrayList<>();
        long seed = 1;
        for (Case c : cases()) {
            long s = seed++;
            ts.add(dynamicTest(c.toString(), () -> run(c, s)));
        }
        return ts;
    }

    static void run(Case c, long seed) {
        DType t = c.dtype();
        double tol = tol(t);
        try (var scope = Scope.open()) {
            Tensor q = random(t, seed * 11 + 1, -1.5, 1.5, physDims(c.b(), c.hq(), c.lq(), c.d(), c.layout()));
            Tensor k = random(t, seed * 11 + 2, -1.5, 1.5, physDims(c.b(), c.hkv(), c.lk(), c.d(), c.layout()));
            Tensor v = random(t, seed * 11 + 3, -2, 2, physDims(c.b(), c.hkv(), c.lk(), c.d(), c.layout()));
            Tensor dO = random(t, seed * 11 + 4, -1, 1, physDims(c.b(), c.hq(), c.lq(), c.d(), c.layout()));
            Random r = new Random(seed);
            Tensor mask = null;
            MaskFn fn = (bb, h, i, j) -> 0;
            switch (c.mask()) {
                case BOOL -> {
                    boolean[] m = new boolean[c.lq() * c.lk()];
                    for (int x = 0; x < m.length; x++) {
                        m[x] = r.nextInt(4) != 0;
                    }
                    mask = Tensor.of(m, c.lq(), c.lk());
                    fn = (bb, h, i, j) -> m[i * c.lk() + j] ? 0 : Double.NEGATIVE_INFINITY;
                }
                case KEY_PADDING -> {
                    boolean[] m = new boolean[c.b() * c.lk()];
                    for (int bb = 0; bb < c.b(); bb++) {
                        for (int j = 0; j < c.lk(); j++) {
                            m[bb * c.lk() + j] = j < c.lk() - 7 * bb - 3;
                        }
                    }
                    mask = Tensor.of(m, c.b(), 1, 1, c.lk());
                    fn = (bb, h, i, j) -> m[bb * c.lk() + j] ? 0 : Double.NEGATIVE_INFINITY;
                }
                case ADDITIVE -> {
                    double[] m = new double[c.b() * c.hq() * c.lq() * c.lk()];
                    for (int x = 0; x < m.length; x++) {
                        m[x] = x % 11 == 5 ? Double.NEGATIVE_INFINITY : r.nextDouble() * 4 - 2;
                    }
                    try (Tensor m64 = Tensor.of(m, c.b(), c.hq(), c.lq(), c.lk())) {
                        mask = m64.to(t); // rounded like the kernels see it
                    }
                    double[] mr = mask.toDoubleArray();
                    fn = (bb, h, i, j) -> mr[((bb * c.hq() + h) * c.lq() + i) * c.lk() + j];
                }
                default -> {
                }
            }
            Options.Builder ob = Options.builder().layout(c.layout()).causal(c.causal()).softcap(c.softcap());
            if (c.dropout() > 0) {
                ob.dropout(c.dropout(), 4242, 17);
            }
            Options opts = ob.build();
            Tensor gq = q.to(GPU);
            Tensor gk = k.to(GPU);
            Tensor gv = v.to(GPU);
            Tensor gdO = dO.to(GPU);
            Tensor gmask = mask == null ? null : mask.to(GPU);
            // forward
            Tensor[] cpu = Attention.scaledDotProductAttentionWithLse(q, k, v, mask, opts);
            Tensor[] cuda = Attention.scaledDotProductAttentionWithLse(gq, gk, gv, gmask, opts);
            assertEquals(GPU, cuda[0].device());
            assertArrayEquals(cpu[0].dims(), cuda[0].dims(), c + ": o shape");
            assertCloseNorm(logical(cpu[0], c.layout()), logical(cuda[0], c.layout()), tol, c + ": o (vs CPU)");
            assertCloseNorm(cpu[1].toDoubleArray(), logical(cuda[1].unsqueeze(3), Layout.BHSD), 1e-4,
                    c + ": lse (vs CPU)");
            // backward, both sides from the CPU's o and lse
            Tensor go = cpu[0].to(GPU);
            Tensor glse = cpu[1].to(GPU);
            Tensor[] dc = Attention.scaledDotProductAttentionBackward(dO, q, k, v, cpu[0], cpu[1], mask, opts);
            Tensor[] dg = Attention.scaledDotProductAttentionBackward(gdO, gq, gk, gv, go, glse, gmask, opts);
            String[] names = {"dq", "dk", "dv"};
            for (int i = 0; i < 3; i++) {
                assertArrayEquals(dc[i].dims(), dg[i].dims(), c + ": " + names[i] + " shape");
                assertCloseNorm(logical(dc[i], c.layout()), logical(dg[i], c.layout()), tol * 1.5,
                        c + ": " + names[i] + " (vs CPU)");
            }
            // float64 naive reference (small, no dropout)
            if (c.dropout() == 0 && (long) c.lq() * c.lk() <= 128 * 1000) {
                double scale = 1.0 / Math.sqrt(c.d());
                double[][] ref = reference(c, logical(q, c.layout()), logical(k, c.layout()), logical(v, c.layout()),
                        logical(dO, c.layout()), fn, scale);
                assertCloseNorm(ref[0], logical(cuda[0], c.layout()), tol, c + ": o (vs float64 reference)");
                assertCloseNorm(ref[1], logical(cuda[1].unsqueeze(3), Layout.BHSD), 1e-4,
                        c + ": lse (vs float64 reference)");
                // the gradients of the reference use its own o; the kernels used the CPU's (rounded) o
                double gtol = t == DType.FLOAT64 ? 1e-8 : tol * 2;
                for (int i = 0; i < 3; i++) {
                    assertCloseNorm(ref[2 + i], logical(dg[i], c.layout()), gtol,
                            c + ": " + names[i] + " (vs float64 reference)");
                }
            }
        }
    }

    @Test
    void stridedViewsAndUnalignedPointers() {
        // q is a narrow slice of a wider tensor (rows not 16-byte aligned): the scalar-load path
        for (DType t : new DType[] {DType.BFLOAT16, DType.FLOAT16}) {
            try (var scope = Scope.open()) {
                Tensor wide = random(t, 99, -1, 1, 2, 37, 4, 65);
                Tensor q = wide.narrow(3, 1, 64);
                Tensor k = random(t, 98, -1, 1, 2, 37, 2, 64);
                Tensor v = random(t, 97, -1, 1, 2, 37, 2, 64);
                Options o = Options.builder().layout(Layout.BSHD).causal(true).build();
                Tensor[] c = Attention.scaledDotProductAttentionWithLse(q, k, v, null, o);
                Tensor[] g = Attention.scaledDotProductAttentionWithLse(q.to(GPU), k.to(GPU), v.to(GPU), null, o);
                assertCloseNorm(logical(c[0], Layout.BSHD), logical(g[0], Layout.BSHD), tol(t), t + " strided q");
            }
        }
    }

    @Test
    void longSequenceForwardAllocatesOnlyItsOutputs() {
        try (var scope = Scope.open()) {
            int l = 16384;
            Tensor qh = random(DType.BFLOAT16, 5, -1, 1, 1, 2, l, 64);
            Tensor kh = random(DType.BFLOAT16, 6, -1, 1, 1, 2, l, 64);
            Tensor vh = random(DType.BFLOAT16, 7, -1, 1, 1, 2, l, 64);
            Tensor q = qh.to(GPU);
            Tensor k = kh.to(GPU);
            Tensor v = vh.to(GPU);
            CachingAllocator alloc = CudaBackend.instance().allocator(GPU);
            long before = alloc.stats().allocatedBytes();
            alloc.resetPeak();
            Tensor[] r = Attention.scaledDotProductAttentionWithLse(q, k, v, null,
                    Options.builder().causal(true).build());
            long extra = alloc.stats().peakAllocatedBytes() - before;
            long outputs = 2L * l * 64 * 2 + 2L * l * 4;
            // O(L): the outputs (size classes may round up), never the 2 x 16384^2 score matrix (2 GiB in float32)
            assertTrue(extra <= 2 * outputs + (1 << 20), "forward allocated " + extra + " bytes, outputs are " + outputs);
            double[] o = logical(r[0], Layout.BHSD);
            double[] lse = r[1].to(Device.CPU).toDoubleArray();
            for (double x : o) {
                assertTrue(Double.isFinite(x), "non-finite output");
            }
            // rows across the whole length (first, block edges, last) of both heads against a
            // float64 causal softmax(q k^T / 8) v over all their keys, from the same bf16 inputs
            double[] qs = qh.toDoubleArray();
            double[] ks = kh.toDoubleArray();
            double[] vs = vh.toDoubleArray();
            for (int h = 0; h < 2; h++) {
                for (int i : new int[] {0, 1, 63, 64, 4095, 8191, 12345, l - 1}) {
                    long base = (long) h * l * 64;
                    double[] s = new double[i + 1];
                    double m = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= i; j++) {
                        double dot = 0;
                        for (int c = 0; c < 64; c++) {
                            dot += qs[(int) (base + (long) i * 64 + c)] * ks[(int) (base + (long) j * 64 + c)];
                        }
                        s[j] = dot / 8;
                        m = Math.max(m, s[j]);
                    }
                    double sum = 0;
                    double[] want = new double[64];
                    for (int j = 0; j <= i; j++) {
                        double p = Math.exp(s[j] - m);
                        sum += p;
                        for (int c = 0; c < 64; c++) {
                            want[c] += p * vs[(int) (base + (long) j * 64 + c)];
                        }
                    }
                    for (int c = 0; c < 64; c++) {
                        want[c] /= sum;
                    }
                    double[] got = java.util.Arrays.copyOfRange(o, (int) (base + (long) i * 64), (int) (base + (long) i * 64 + 64));
                    assertCloseNorm(want, got, tol(DType.BFLOAT16), "16k causal row " + i + " head " + h);
                    assertEquals(m + Math.log(sum), lse[h * l + i], 1e-4 * Math.max(1, Math.abs(m + Math.log(sum))),
                            "16k causal lse row " + i + " head " + h);
                }
            }
        }
    }

    @Test
    void ropeMatchesCpu() {
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
            for (Layout layout : Layout.values()) {
                for (boolean interleaved : new boolean[] {false, true}) {
                    for (long rot : new long[] {64, 32}) {
                        for (int pos = 0; pos < 3; pos++) {
                            try (var scope = Scope.open()) {
                                long[] dims = layout == Layout.BHSD ? new long[] {2, 3, 17, 64} : new long[] {2, 17, 3, 64};
                                Tensor x = random(t, rot + pos, -2, 2, dims);
                                Random r = new Random(pos);
                                long[] p = new long[17];
                                for (int i = 0; i < p.length; i++) {
                                    p[i] = r.nextInt(8000);
                                }
                                Tensor positions = pos == 0 ? null : pos == 1 ? Tensor.of(p, 17) : Tensor.of(p, 17).to(DType.INT32);
                                Tensor gp = positions == null ? null : positions.to(GPU);
                                String what = "rope " + t + " " + layout + (interleaved ? " interleaved" : " half-split")
                                        + " rot " + rot + " positions " + pos;
                                Tensor c = Attention.rope(x, positions, rot, 10000, interleaved, layout);
                                Tensor g = Attention.rope(x.to(GPU), gp, rot, 10000, interleaved, layout);
                                assertClose(c, g, tolerance(t) * 2, what);
                                Tensor cb = Attention.ropeBackward(c, positions, rot, 10000, interleaved, layout);
                                Tensor gb = Attention.ropeBackward(g, gp, rot, 10000, interleaved, layout);
                                assertClose(cb, gb, tolerance(t) * 2, what + " backward");
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void badInputsGiveClearExceptions() {
        try (var scope = Scope.open()) {
            Tensor q = random(DType.BFLOAT16, 1, -1, 1, 1, 2, 8, 300).to(GPU);
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                    () -> Attention.scaledDotProductAttention(q, q, q));
            assertTrue(e.getMessage().contains("scaled_dot_product_attention") && e.getMessage().contains("256"),
                    e.getMessage());
            Tensor q3 = random(DType.BFLOAT16, 2, -1, 1, 1, 3, 8, 64).to(GPU);
            Tensor k2 = random(DType.BFLOAT16, 3, -1, 1, 1, 2, 8, 64).to(GPU);
            IllegalArgumentException e2 = assertThrows(IllegalArgumentException.class,
                    () -> Attention.scaledDotProductAttention(q3, k2, k2));
            assertTrue(e2.getMessage().contains("scaled_dot_product_attention"), e2.getMessage());
        }
    }
}
