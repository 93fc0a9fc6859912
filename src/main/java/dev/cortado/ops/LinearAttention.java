package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Linear attention: the simplified linear attention of SLAB (Guo et al., ICML 2024). With the ReLU
 * feature map phi on queries and keys, per batch and head of {@code q, k, v [B, H, N, D]}:
 * <pre>
 *   KV   = (1/N) sum_m phi(k_m) v_m^T        kbar = (1/N) sum_m phi(k_m)
 *   o_n  = phi(q_n)^T KV / (phi(q_n) . kbar + eps)
 * </pre>
 * that is {@code Q (K^T V)} normalized by {@code Q (K^T 1)}, in {@code 4 B H N D^2} FLOPs and no
 * {@code N x N} matrix: linear in the sequence length, where softmax attention is quadratic. The
 * depthwise-convolution branch SLAB adds on V is the module's ({@code dev.cortado.nn.SlabAttention}).
 * Any strides are read as they lie when the feature stride is 1 (so BSHD projections viewed as
 * {@code [B, H, N, D]} cost no copy); the outputs are contiguous. dtypes: float32 and float64.
 * Kernels: {@code native/cpu/slab.cpp} and {@code native/cuda/slab.cu} (contract in
 * {@code native/include/cortado/slab.h}).
 */
public final class LinearAttention {
    private LinearAttention() {
    }

    /** The default eps of the normalizer (SLAB's 1e-6). */
    public static final double DEFAULT_EPS = 1e-6;

    /**
     * The options of {@code slab_attention}.
     *
     * @param eps added to the normalizer {@code phi(q) . kbar} (positive, finite)
     */
    public record Options(double eps) {
        /** Checks eps. */
        public Options {
            if (!(eps > 0) || Double.isInfinite(eps)) {
                throw new IllegalArgumentException("slab_attention: eps must be positive and finite, got " + eps);
            }
        }
    }

    private static final Options DEFAULTS = new Options(DEFAULT_EPS);

    /** slab_attention: q, k, v [B, H, N, D] to o [B, H, N, D]. */
    public static final Op<Options> SLAB_OP = Op.<Options>declare("slab_attention")
            .inputs("q", "k", "v")
            .shape((op, a, in) -> {
                check(op, in[0], in[1], in[2]);
                return Op.one(in[0].shape(), in[0].dtype());
            })
            .kernels((a, in, out) -> forward(opts(a), in, out[0]))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> LinearAttention.SLAB_BACKWARD_OP.callMulti(a, g[0], sv.input(0),
                    sv.input(1), sv.input(2)))
            .register();

    /** slab_attention_backward: (dq, dk, dv) from do, q, k, v (the forward's normalizers are recomputed). */
    public static final Op<Options> SLAB_BACKWARD_OP = Op.<Options>declare("slab_attention_backward")
            .inputs("do", "q", "k", "v")
            .shape((op, a, in) -> {
                check(op, in[1], in[2], in[3]);
                op.requireLike("do", in[0], "q", in[1]); // the output has q's shape and dtype
                return new TensorSpec[] {new TensorSpec(in[1].shape(), in[1].dtype()),
                    new TensorSpec(in[1].shape(), in[1].dtype()), new TensorSpec(in[1].shape(), in[1].dtype())};
            })
            .kernels((a, in, out) -> backward(opts(a), in, out))
            .register();

    /** SLAB's linear attention of {@code q, k, v [B, H, N, D]} with eps 1e-6. */
    public static Tensor slab(Tensor q, Tensor k, Tensor v) {
        return SLAB_OP.call(DEFAULTS, q, k, v);
    }

    /** SLAB's linear attention of {@code q, k, v [B, H, N, D]} with the given eps. */
    public static Tensor slab(Tensor q, Tensor k, Tensor v, double eps) {
        return SLAB_OP.call(new Options(eps), q, k, v);
    }

    /** FLOPs of one forward call: 4 B H N D^2 (plus O(B H N D) for the feature map and the division). */
    public static long forwardFlops(long b, long h, long n, long d) {
        return 4 * b * h * n * d * d;
    }

    private static Options opts(Options a) {
        return a == null ? DEFAULTS : a;
    }

    private static void check(Op<?> op, Tensor q, Tensor k, Tensor v) {
        op.requireDType("q", q, DType.FLOAT32, DType.FLOAT64);
        if (q.rank() != 4) {
            throw op.error("q " + q.describe() + " must be [B, H, N, D]");
        }
        for (Tensor t : new Tensor[] {k, v}) {
            if (t.dtype() != q.dtype() || !t.shape().equals(q.shape())) {
                throw op.error((t == k ? "k " : "v ") + t.describe() + " must be " + q.dtype() + q.shape()
                        + " like q " + q.describe());
            }
        }
        if (!q.device().equals(k.device()) || !q.device().equals(v.device())) {
            throw op.error("q, k, v must be on one device: " + q.device() + ", " + k.device() + ", " + v.device());
        }
    }

    /** The 3 strides (batch, head, sequence) of t when its feature stride is 1, else null. */
    private static long[] strides3(Tensor t) {
        long[] s = t.strides();
        return t.size(3) == 1 || s[3] == 1 ? new long[] {s[0], s[1], s[2]} : null;
    }

    /** t itself when its feature stride is 1, else a contiguous copy (recorded in temps). */
    private static Tensor unitFeatures(Tensor t, List<Tensor> temps) {
        if (strides3(t) != null) {
            return t;
        }
        Tensor c = t.contiguous();
        temps.add(c);
        return c;
    }

    private static void forward(Options a, Tensor[] in, Tensor o) {
        if (o.numel() == 0) {
            return;
        }
        List<Tensor> temps = new ArrayList<>();
        try {
            Tensor q = unitFeatures(in[0], temps);
            Tensor k = unitFeatures(in[1], temps);
            Tensor v = unitFeatures(in[2], temps);
            Launch l = Launch.on(o);
            NativeArgs args = NativeArgs.get();
            int st = l.kernels.slabAttentionForward(q.dtype().code(), args.put(q.dims()), q.dataAddress(),
                    args.put(strides3(q)), k.dataAddress(), args.put(strides3(k)), v.dataAddress(), args.put(strides3(v)),
                    a.eps(), o.dataAddress(), l.stream);
            if (st != 0) {
                throw l.failure(st, "slab_attention(q " + q.describe() + ", k " + k.describe() + ", v " + v.describe() + ")");
            }
        } finally {
            temps.forEach(Tensor::close);
        }
    }

    private static void backward(Options a, Tensor[] in, Tensor[] out) {
        if (out[0].numel() == 0) {
            return;
        }
        List<Tensor> temps = new ArrayList<>();
        try {
            Tensor dO = in[0].contiguous();
            temps.add(dO);
            Tensor q = unitFeatures(in[1], temps);
            Tensor k = unitFeatures(in[2], temps);
            Tensor v = unitFeatures(in[3], temps);
            Launch l = Launch.on(out[0]);
            NativeArgs args = NativeArgs.get();
            int st = l.kernels.slabAttentionBackward(q.dtype().code(), args.put(q.dims()), q.dataAddress(),
                    args.put(strides3(q)), k.dataAddress(), args.put(strides3(k)), v.dataAddress(), args.put(strides3(v)),
                    dO.dataAddress(), a.eps(), out[0].dataAddress(), out[1].dataAddress(), out[2].dataAddress(), l.stream);
            if (st != 0) {
                throw l.failure(st, "slab_attention_backward(do " + dO.describe() + ", q " + q.describe() + ", k "
                        + k.describe() + ", v " + v.describe() + ")");
            }
        } finally {
            temps.forEach(Tensor::close);
        }
    }
}
