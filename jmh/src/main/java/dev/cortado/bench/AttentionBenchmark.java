package dev.cortado.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import dev.cortado.ops.Attention;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.BenchmarkParams;

/**
 * Scaled-dot-product attention, float32, layout BHSD, B = 4, H = 8, head dim D = {@code headDim}
 * (64 unless given; issue #22 also measures 128), sequence length {@code len}, optionally causal, no
 * dropout, scale 1/sqrt(D). FLOPs: 4*B*H*L^2*D for the forward
 * (half of it when causal); the backward is reported against the same count (its own work is
 * about 2.5x that).
 * <ul>
 *   <li>{@code cortadoFusedForward}: {@link Attention#scaledDotProductAttention} (the flash kernel;
 *       causal through the options, no mask tensor).</li>
 *   <li>{@code cortadoFusedBackward}: {@link Attention#scaledDotProductAttentionBackward} from the
 *       forward's o and lse (computed once in the setup): dq, dk, dv only.</li>
 *   <li>{@code cortadoUnfusedForward}: Cortado's own composition mul(q, scale) -> matmul(., k^T) ->
 *       (causal: add an additive [L, L] mask of -inf above the diagonal) -> softmax(-1) -> matmul(., v),
 *       each step allocating its output.</li>
 *   <li>{@code torchForward}: the same composition in PyTorch (libtorch 2.7.1 CPU through DJL
 *       0.35.1) without autograd: q.mul(scale).matMul(k^T) (+ mask) .softmax(-1) .matMul(v). DJL
 *       exposes no scaled_dot_product_attention, so PyTorch's fused CPU SDPA kernel is NOT what is
 *       measured here; this is PyTorch's "math" path.</li>
 *   <li>{@code torchForwardBackward}: the composition on fresh autograd leaves (detached views of
 *       q, k, v, no copy) and backward(o, dO), computing dq, dk, dv. PyTorch's backward alone is
 *       reported as torchForwardBackward - torchForward.</li>
 * </ul>
 * L = 8192 runs in {@link Long8192} (Cortado's fused forward and backward only): the composed path
 * would hold the scores, 4*8*8192*8192*4 B = 8.6 GB per copy, and several copies are alive at once.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
@Warmup(iterations = 2, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class AttentionBenchmark {
    static final int B = 4;
    static final int H = 8;
    @Param({"512", "2048"})
    public int len;

    /** Head dim D. */
    @Param({"64"})
    public int headDim;

    @Param({"false", "true"})
    public boolean causal;

    @Param({"1", "2"})
    public int threads;

    /** Logit soft-capping (Gemma 2 uses 50): cap * tanh(s / cap) on the scores in every variant; 0 = none. */
    @Param({"0"})
    public double softcap;

    private Attention.Options options;
    private double scale;
    private Tensor q;
    private Tensor k;
    private Tensor v;
    private Tensor kT;
    private Tensor dO;
    private Tensor o;
    private Tensor lse;
    private Tensor mask;

    private NDManager torch;
    private NDArray tq;
    private NDArray tk;
    private NDArray tv;
    private NDArray tdO;
    private NDArray tMask;

    /** Forward FLOPs as the brief counts them: 4*B*H*L^2*D, half when causal. */
    public static double flops(int len, int headDim, boolean causal) {
        double f = 4.0 * B * H * (double) len * len * headDim;
        return causal ? f / 2 : f;
    }

    /** The additive causal mask [L, L]: -inf above the diagonal, 0 elsewhere. */
    static float[] causalMask(int len) {
        float[] m = new float[len * len];
        for (int i = 0; i < len; i++) {
            for (int j = i + 1; j < len; j++) {
                m[i * len + j] = Float.NEGATIVE_INFINITY;
            }
        }
        return m;
    }

    @Setup(Level.Trial)
    public void setup(BenchmarkParams params) {
        BenchSupport.setThreads(threads);
        options = Attention.Options.builder().causal(causal).softcap(softcap).build();
        scale = 1.0 / Math.sqrt(headDim);
        Generator g = Generator.seeded(7);
        q = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, headDim);
        k = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, headDim);
        v = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, headDim);
        dO = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, headDim);
        kT = k.transpose(-2, -1);
        String bench = params.getBenchmark();
        if (causal && (bench.endsWith(".cortadoUnfusedForward") || bench.contains(".torch"))) {
            mask = Tensor.of(causalMask(len), len, len);
        }
        if (bench.endsWith(".cortadoFusedBackward")) {
            Tensor[] r = Attention.scaledDotProductAttentionWithLse(q, k, v, null, options);
            o = r[0];
            lse = r[1];
        }
        if (bench.endsWith(".cortadoUnfusedForward")) {
            try (Tensor fused = Attention.scaledDotProductAttention(q, k, v, null, options);
                 Tensor unfused = unfused()) {
                TorchPeer.check("Cortado unfused vs fused, L " + len + (causal ? " causal" : "")
                        + (softcap > 0 ? " softcap " + softcap : ""), fused.toFloatArray(),
                        unfused.toFloatArray(), 1e-3);
            }
        }
        if (bench.contains(".torch")) {
            setupTorch(bench.endsWith(".torchForwardBackward"));
        }
    }

    private void setupTorch(boolean backward) {
        torch = TorchPeer.start(threads);
        tq = TorchPeer.copyOf(torch, q);
        tk = TorchPeer.copyOf(torch, k);
        tv = TorchPeer.copyOf(torch, v);
        tdO = TorchPeer.copyOf(torch, dO);
        if (causal) {
            tMask = TorchPeer.copyOf(torch, mask);
        }
        // correctness against Cortado's fused kernels on the same data
        String what = "L " + len + (causal ? " causal" : "") + (softcap > 0 ? " softcap " + softcap : "");
        Tensor[] r = Attention.scaledDotProductAttentionWithLse(q, k, v, null, options);
        try (Tensor co = r[0]; Tensor clse = r[1]; NDManager m = torch.newSubManager()) {
            if (!backward) {
                NDArray to = composed(tq, tk, tv);
                to.attach(m);
                TorchPeer.check("attention forward " + what, co.toFloatArray(), to.toFloatArray(), 1e-3);
                return;
            }
            Tensor[] grads = Attention.scaledDotProductAttentionBackward(dO, q, k, v, co, clse, null, options);
            try (GradientCollector gc = torch.getEngine().newGradientCollector()) {
                NDArray lq = TorchPeer.leaf(tq, m);
                NDArray lk = TorchPeer.leaf(tk, m);
                NDArray lv = TorchPeer.leaf(tv, m);
                NDArray to = composed(lq, lk, lv);
                TorchPeer.check("attention forward " + what, co.toFloatArray(), to.toFloatArray(), 1e-3);
                TorchPeer.backward(to, tdO);
                TorchPeer.check("attention dq " + what, grads[0].toFloatArray(), lq.getGradient().toFloatArray(), 1e-3);
                TorchPeer.check("attention dk " + what, grads[1].toFloatArray(), lk.getGradient().toFloatArray(), 1e-3);
                TorchPeer.check("attention dv " + what, grads[2].toFloatArray(), lv.getGradient().toFloatArray(), 1e-3);
            } finally {
                for (Tensor t : grads) {
                    t.close();
                }
            }
        }
    }

    /**
     * softmax(cap(scale q k^T) (+ mask)) v in PyTorch; intermediates are closed, the result is owned by
     * q's manager.
     */
    private NDArray composed(NDArray a, NDArray b, NDArray c) {
        NDArray qs = a.mul(scale);
        NDArray bt = b.transpose(0, 1, 3, 2);
        NDArray s = qs.matMul(bt);
        if (softcap > 0) {
            NDArray sd = s.div(softcap);
            NDArray th = sd.tanh();
            NDArray sc = th.mul(softcap);
            for (NDArray x : new NDArray[] {s, sd, th}) {
                x.close();
            }
            s = sc;
        }
        if (tMask != null) {
            NDArray sm = s.add(tMask);
            s.close();
            s = sm;
        }
        NDArray p = s.softmax(-1);
        NDArray out = p.matMul(c);
        qs.close();
        bt.close();
        s.close();
        p.close();
        return out;
    }

    private Tensor unfused() {
        try (Tensor qs = Elementwise.mul(q, scale); Tensor s0 = LinearAlgebra.matmul(qs, kT);
             Tensor sd = softcap > 0 ? Elementwise.div(s0, softcap) : null;
             Tensor th = sd == null ? null : Elementwise.tanh(sd);
             Tensor sc = th == null ? null : Elementwise.mul(th, softcap);
             Tensor sm = mask == null ? null : Elementwise.add(sc == null ? s0 : sc, mask);
             Tensor p = Normalization.softmax(sm != null ? sm : sc != null ? sc : s0, -1)) {
            return LinearAlgebra.matmul(p, v);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        for (Tensor t : new Tensor[] {q, k, v, kT, dO, o, lse, mask}) {
            if (t != null) {
                t.close();
            }
        }
        if (torch != null) {
            torch.close();
        }
    }

    @Benchmark
    public long cortadoFusedForward() {
        try (Tensor out = Attention.scaledDotProductAttention(q, k, v, null, options)) {
            return out.dataAddress();
        }
    }

    @Benchmark
    public long cortadoFusedBackward() {
        return fusedBackward(dO, q, k, v, o, lse, options);
    }

    /** dq, dk, dv from the forward's o and lse, closed at once; the address of dq. */
    static long fusedBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse,
            Attention.Options options) {
        Tensor[] g = Attention.scaledDotProductAttentionBackward(dO, q, k, v, o, lse, null, options);
        long r = g[0].dataAddress();
        for (Tensor t : g) {
            t.close();
        }
        return r;
    }

    @Benchmark
    public long cortadoUnfusedForward() {
        try (Tensor out = unfused()) {
            return out.dataAddress();
        }
    }

    @Benchmark
    public Object torchForward() {
        NDArray out = composed(tq, tk, tv);
        out.close();
        return out;
    }

    @Benchmark
    public Object torchForwardBackward() {
        try (NDManager m = torch.newSubManager(); GradientCollector gc = torch.getEngine().newGradientCollector()) {
            NDArray lq = TorchPeer.leaf(tq, m);
            NDArray lk = TorchPeer.leaf(tk, m);
            NDArray lv = TorchPeer.leaf(tv, m);
            NDArray out = composed(lq, lk, lv);
            TorchPeer.backward(out, tdO);
            NDArray gq = lq.getGradient();
            NDArray gk = lk.getGradient();
            NDArray gv = lv.getGradient();
            gq.close();
            gk.close();
            gv.close();
            out.close();
            return gq;
        }
    }

    /**
     * L = 8192: Cortado's fused forward and backward only (see the class comment for why PyTorch's
     * composition is skipped).
     */
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    @Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
    @Warmup(iterations = 1, time = 1, timeUnit = TimeUnit.SECONDS)
    @Measurement(iterations = 2, time = 1, timeUnit = TimeUnit.SECONDS)
    @State(Scope.Benchmark)
    public static class Long8192 {
        @Param({"8192"})
        public int len;

        /** Head dim D. */
        @Param({"64"})
        public int headDim;

        @Param({"false", "true"})
        public boolean causal;

        @Param({"1", "2"})
        public int threads;

        private Attention.Options options;
        private Tensor q;
        private Tensor k;
        private Tensor v;
        private Tensor dO;
        private Tensor o;
        private Tensor lse;

        @Setup(Level.Trial)
        public void setup(BenchmarkParams params) {
            BenchSupport.setThreads(threads);
            options = Attention.Options.builder().causal(causal).build();
            Generator g = Generator.seeded(7);
            q = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, headDim);
            k = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, headDim);
            v = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, headDim);
            if (params.getBenchmark().endsWith(".cortadoFusedBackward")) {
                dO = g.normal(0, 1, DType.FLOAT32, Device.CPU, B, H, len, headDim);
                Tensor[] r = Attention.scaledDotProductAttentionWithLse(q, k, v, null, options);
                o = r[0];
                lse = r[1];
            }
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            for (Tensor t : new Tensor[] {q, k, v, dO, o, lse}) {
                if (t != null) {
                    t.close();
                }
            }
        }

        @Benchmark
        public long cortadoFusedForward() {
            try (Tensor out = Attention.scaledDotProductAttention(q, k, v, null, options)) {
                return out.dataAddress();
            }
        }

        @Benchmark
        public long cortadoFusedBackward() {
            return fusedBackward(dO, q, k, v, o, lse, options);
        }
    }
}
