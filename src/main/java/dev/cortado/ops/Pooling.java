package dev.cortado.ops;

import dev.cortado.backend.kernels.Kernels;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Max pooling (with int64 indices for backward), average pooling and adaptive / global average
 * pooling, 1-d, 2-d and 3-d (the spatial rank is the input's rank minus 2), in the NCHW
 * (channels first) or NHWC (channels last) layout. Kernels: {@code native/cpu/pool.cpp} and
 * {@code native/cuda/pool.cu}; the geometry travels as the int64[25] array of {@code cortado/conv.h}
 * (a host array for both).
 * Indices hold, per output, the flat index {@code (d * H + h) * W + w} of the chosen element
 * within its (n, c) plane, in either layout.
 */
public final class Pooling {
    private Pooling() {
    }

    /**
     * Pooling options. Each of kernel, stride, padding, dilation holds one value per spatial
     * dimension or a single value for all; an empty stride means stride = kernel.
     *
     * <p>{@code padding} is the padding before each spatial dimension and, when
     * {@code paddingAfter} is empty, also after it (symmetric, PyTorch's form: at most half the
     * dilated kernel). A non-empty {@code paddingAfter} gives the padding after each dimension
     * separately (asymmetric, ONNX's {@code pads} / "same" padding: any non-negative amounts).
     * {@code ceilMode} rounds the output size up ({@code ceil((in + before + after - eff) / stride) + 1},
     * less one when the last window would start past the input and the padding before it, as
     * PyTorch and ONNX); the extra windows are clipped at the end of the input. With ceilMode
     * and countIncludePad, the divisor of a window hanging past the padded input counts only
     * the taps inside the input and its padding (PyTorch / ONNX), not the full kernel.
     */
    public record PoolOptions(int[] kernel, int[] stride, int[] padding, int[] paddingAfter, int[] dilation,
                              boolean countIncludePad, boolean ceilMode, DataLayout layout) {
        public PoolOptions {
            kernel = kernel.clone();
            stride = stride.clone();
            padding = padding.clone();
            paddingAfter = paddingAfter == null ? new int[0] : paddingAfter.clone();
            dilation = dilation.clone();
            if (layout == null) {
                layout = DataLayout.NCHW;
            }
        }

        /** The same options in {@code l}. */
        public PoolOptions withLayout(DataLayout l) {
            return new PoolOptions(kernel, stride, padding, paddingAfter, dilation, countIncludePad, ceilMode, l);
        }

        /** Whether the padding after is given separately. */
        public boolean asymmetric() {
            return paddingAfter.length > 0;
        }

        public static Builder builder(int... kernel) {
            return new Builder(kernel);
        }

        /** Kernel (and stride) {@code k}, no padding, NCHW. */
        public static PoolOptions of(int... kernel) {
            return builder(kernel).build();
        }

        @Override
        public String toString() {
            return "kernel " + Arrays.toString(kernel) + ", stride " + (stride.length == 0 ? "= kernel" : Arrays.toString(stride))
                    + ", padding " + Arrays.toString(padding)
                    + (paddingAfter.length > 0 ? ", padding after " + Arrays.toString(paddingAfter) : "")
                    + ", dilation " + Arrays.toString(dilation)
                    + (countIncludePad ? ", count_include_pad" : "") + (ceilMode ? ", ceil_mode" : "") + ", " + layout;
        }

        /** The options of a pooling call, set one by one; {@code build()} checks them. */
        public static final class Builder {
            private final int[] kernel;
            private int[] stride = new int[0];
            private int[] padding = {0};
            private int[] paddingAfter = new int[0];
            private int[] dilation = {1};
            private boolean countIncludePad = true;
            private boolean ceilMode;
            private DataLayout layout = DataLayout.NCHW;

            private Builder(int[] kernel) {
                this.kernel = kernel.clone();
            }

            public Builder stride(int... s) {
                stride = s.clone();
                return this;
            }

            public Builder padding(int... p) {
                padding = p.clone();
                return this;
            }

            /**
             * Asymmetric padding: {@code padding} is then the padding before each dimension
             * and {@code p} the padding after it (one value per dimension or one for all).
             */
            public Builder paddingAfter(int... p) {
                paddingAfter = p.clone();
                return this;
            }

            /** Round the output size up (PyTorch's / ONNX's ceil_mode). */
            public Builder ceilMode(boolean b) {
                ceilMode = b;
                return this;
            }

            /** Dilation of the kernel (max and average pooling). */
            public Builder dilation(int... d) {
                dilation = d.clone();
                return this;
            }

            /** Average pooling: divide by the full kernel size (true, the default) or the non-padding count. */
            public Builder countIncludePad(boolean b) {
                countIncludePad = b;
                return this;
            }

            public Builder layout(DataLayout l) {
                layout = l;
                return this;
            }

            public PoolOptions build() {
                return new PoolOptions(kernel, stride, padding, paddingAfter, dilation, countIncludePad, ceilMode,
                        layout);
            }
        }
    }

    /** Adaptive average pooling to {@code outputSize} (one value per spatial dimension or one for all). */
    public record AdaptiveOptions(int[] outputSize, DataLayout layout) {
        public AdaptiveOptions {
            outputSize = outputSize.clone();
            if (layout == null) {
                layout = DataLayout.NCHW;
            }
        }
    }

    public static final Op<PoolOptions> MAX_POOL_OP = Op.<PoolOptions>declare("max_pool")
            .inputs("x")
            .shape((op, a, in) -> {
                long[] g = poolGeometry(op.name(), a, in[0], true);
                Shape ys = outShape(in[0], g, a.layout());
                return new TensorSpec[] {new TensorSpec(ys, in[0].dtype()), new TensorSpec(ys, DType.INT64)};
            })
            .kernels((a, in, out) -> maxForward(a, in, out))
            .backward(Op.Saves.INPUTS_AND_OUTPUTS, (a, sv, g) -> new Tensor[] {
                Pooling.MAX_POOL_BACKWARD_OP.call(a, g[0], sv.input(0), sv.output(1))})
            .register();

    /**
     * Max pooling without the indices, for inference: the same kernel with no index output (the
     * int64 indices are twice the bytes of a float32 output: they tripled what an inference max
     * pool wrote). On the CPU it also takes uint8 quantization codes (the activations an int8
     * layer hands the next one: the max of the codes is the code of the max). No backward:
     * {@link #maxPool} takes it only when no gradient can be asked for.
     */
    public static final Op<PoolOptions> MAX_POOL_VALUES_OP = Op.<PoolOptions>declare("max_pool_values")
            .inputs("x")
            .shape((op, a, in) -> Op.one(outShape(in[0], poolGeometry(op.name(), a, in[0], true), a.layout()), in[0].dtype()))
            .kernels((a, in, out) -> maxForward(a, in, out))
            .register();

    public static final Op<PoolOptions> MAX_POOL_BACKWARD_OP = Op.<PoolOptions>declare("max_pool_backward")
            .inputs("dy", "x", "indices")
            .shape((op, a, in) -> {
                long[] g = poolGeometry(op.name(), a, in[1], true);
                Shape ys = outShape(in[1], g, a.layout());
                requireGrad(op.name(), "dy", in[0], ys, in[1]);
                if (in[2].dtype() != DType.INT64 || !in[2].shape().equals(ys)) {
                    throw op.error("indices " + in[2].describe() + " must be int64 of the output shape " + ys
                            + " for x " + in[1].describe() + " (" + a + ")");
                }
                return Op.one(in[1].shape(), in[1].dtype());
            })
            .kernels((a, in, out) -> maxBackward(a, in, out))
            .register();

    public static final Op<PoolOptions> AVG_POOL_OP = Op.<PoolOptions>declare("avg_pool")
            .inputs("x")
            .shape((op, a, in) -> Op.one(outShape(in[0], poolGeometry(op.name(), a, in[0], false), a.layout()), in[0].dtype()))
            .kernels((a, in, out) -> avgForward(a, in, out))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {
                Pooling.AVG_POOL_BACKWARD_OP.call(a, g[0], sv.input(0))})
            .register();

    public static final Op<PoolOptions> AVG_POOL_BACKWARD_OP = Op.<PoolOptions>declare("avg_pool_backward")
            .inputs("dy", "x")
            .shape((op, a, in) -> {
                long[] g = poolGeometry(op.name(), a, in[1], false);
                requireGrad(op.name(), "dy", in[0], outShape(in[1], g, a.layout()), in[1]);
                return Op.one(in[1].shape(), in[1].dtype());
            })
            .kernels((a, in, out) -> avgBackward(a, in, out))
            .register();

    public static final Op<AdaptiveOptions> ADAPTIVE_AVG_POOL_OP = adaptiveOp("adaptive_avg_pool");
    public static final Op<AdaptiveOptions> GLOBAL_AVG_POOL_OP = adaptiveOp("global_avg_pool");

    public static final Op<AdaptiveOptions> ADAPTIVE_AVG_POOL_BACKWARD_OP = Op.<AdaptiveOptions>declare(
                    "adaptive_avg_pool_backward")
            .inputs("dy", "x")
            .shape((op, a, in) -> {
                long[] g = adaptiveGeometry(op.name(), a, in[1]);
                requireGrad(op.name(), "dy", in[0], outShape(in[1], g, a.layout()), in[1]);
                return Op.one(in[1].shape(), in[1].dtype());
            })
            .kernels((a, in, out) -> adaptiveBackward(a, in, out))
            .register();

    // ------------------------------------------------------------------ eager entry points
    /**
     * Max pooling over the trailing spatial dimensions of x (rank 3, 4 or 5): {y, indices}. An NCHW
     * call on a channels-last view (an NHWC tensor permuted to NCHW, as an NHWC layer hands back to
     * an NCHW model) runs the NHWC kernel on the memory as it lies and returns its outputs as the
     * same kind of view, instead of copying the input into NCHW order first (the indices are
     * positions within a plane in either layout, so they are the same).
     */
    public static Tensor[] maxPoolWithIndices(Tensor x, PoolOptions o) {
        return callAsItLies(MAX_POOL_OP, x, o);
    }

    /**
     * Max pooling. When a gradient can be asked for (gradients enabled and x requires one), the
     * indices the backward needs are computed and kept on the tape; otherwise the values-only op
     * runs. Channels-last views run the NHWC kernel as in {@link #maxPoolWithIndices}.
     */
    public static Tensor maxPool(Tensor x, PoolOptions o) {
        if (!Op.gradientPossible(x)) {
            return callAsItLies(MAX_POOL_VALUES_OP, x, o)[0];
        }
        Tensor[] r = maxPoolWithIndices(x, o);
        r[1].close();
        return r[0];
    }

    /** op on x; an NCHW call on a channels-last view runs in NHWC and returns channels-last views. */
    private static Tensor[] callAsItLies(Op<PoolOptions> op, Tensor x, PoolOptions o) {
        int[] toLast = channelsLastOrder(x, o);
        if (toLast == null) {
            return op.callMulti(o, x);
        }
        Tensor[] r;
        try (Tensor xl = x.permute(toLast)) {
            r = op.callMulti(o.withLayout(DataLayout.NHWC), xl);
        }
        int[] back = inverse(toLast);
        Tensor[] out = new Tensor[r.length];
        for (int i = 0; i < r.length; i++) {
            try (Tensor t = r[i]) {
                out[i] = t.permute(back);
            }
        }
        return out;
    }

    /**
     * For an NCHW call on x whose memory is channels-last (x not dense, x with its channel dim moved
     * last dense): that permutation; otherwise null.
     */
    private static int[] channelsLastOrder(Tensor x, PoolOptions o) {
        int rank = x.rank();
        if (o.layout() != DataLayout.NCHW || rank < 3 || x.isContiguous()) {
            return null;
        }
        int[] order = new int[rank];
        order[0] = 0;
        for (int d = 1; d < rank - 1; d++) {
            order[d] = d + 1;
        }
        order[rank - 1] = 1;
        try (Tensor v = x.permute(order)) {
            return v.isContiguous() ? order : null;
        }
    }

    private static int[] inverse(int[] order) {
        int[] inv = new int[order.length];
        for (int d = 0; d < order.length; d++) {
            inv[order[d]] = d;
        }
        return inv;
    }

    public static Tensor maxPool1d(Tensor x, PoolOptions o) {
        return maxPool(requireRank("max_pool", x, 3, o), o);
    }

    public static Tensor maxPool2d(Tensor x, PoolOptions o) {
        return maxPool(requireRank("max_pool", x, 4, o), o);
    }

    public static Tensor maxPool3d(Tensor x, PoolOptions o) {
        return maxPool(requireRank("max_pool", x, 5, o), o);
    }

    /** Gradient of max pooling with respect to x: dy scattered to the indices. */
    public static Tensor maxPoolBackward(Tensor dy, Tensor x, Tensor indices, PoolOptions o) {
        return MAX_POOL_BACKWARD_OP.call(o, dy, x, indices);
    }

    /**
     * Average pooling. With ceilMode and countIncludePad, windows hanging past the padded input
     * are divided by their taps inside the input and its padding (the op itself divides by the
     * full kernel; this entry point rescales).
     */
    public static Tensor avgPool(Tensor x, PoolOptions o) {
        Tensor y = AVG_POOL_OP.call(o, x);
        try (Tensor fix = ceilDivisorFix(x, o)) {
            if (fix == null) {
                return y;
            }
            try (y) {
                return Elementwise.mul(y, fix);
            }
        }
    }

    public static Tensor avgPool1d(Tensor x, PoolOptions o) {
        return avgPool(requireRank("avg_pool", x, 3, o), o);
    }

    public static Tensor avgPool2d(Tensor x, PoolOptions o) {
        return avgPool(requireRank("avg_pool", x, 4, o), o);
    }

    public static Tensor avgPool3d(Tensor x, PoolOptions o) {
        return avgPool(requireRank("avg_pool", x, 5, o), o);
    }

    /** Gradient of {@link #avgPool} (including its ceilMode / countIncludePad rescaling). */
    public static Tensor avgPoolBackward(Tensor dy, Tensor x, PoolOptions o) {
        try (Tensor fix = ceilDivisorFix(x, o)) {
            if (fix == null) {
                return AVG_POOL_BACKWARD_OP.call(o, dy, x);
            }
            try (Tensor dys = Elementwise.mul(dy, fix)) {
                return AVG_POOL_BACKWARD_OP.call(o, dys, x);
            }
        }
    }

    /** Adaptive average pooling of the trailing spatial dimensions to {@code outputSize}. */
    public static Tensor adaptiveAvgPool(Tensor x, DataLayout layout, int... outputSize) {
        return ADAPTIVE_AVG_POOL_OP.call(new AdaptiveOptions(outputSize, layout), x);
    }

    public static Tensor adaptiveAvgPool(Tensor x, int... outputSize) {
        return adaptiveAvgPool(x, DataLayout.NCHW, outputSize);
    }

    public static Tensor adaptiveAvgPoolBackward(Tensor dy, Tensor x, DataLayout layout, int... outputSize) {
        return ADAPTIVE_AVG_POOL_BACKWARD_OP.call(new AdaptiveOptions(outputSize, layout), dy, x);
    }

    /** Mean over all spatial positions; the spatial dimensions stay with size 1 ([N, C, 1, 1] for NCHW 2-d). */
    public static Tensor globalAvgPool(Tensor x, DataLayout layout) {
        return GLOBAL_AVG_POOL_OP.call(new AdaptiveOptions(new int[] {1}, layout), x);
    }

    public static Tensor globalAvgPool(Tensor x) {
        return globalAvgPool(x, DataLayout.NCHW);
    }

    // ------------------------------------------------------------------ rules
    private static Tensor requireRank(String op, Tensor x, int rank, Object opts) {
        if (x.rank() != rank) {
            throw new IllegalArgumentException(op + ": " + (rank - 2) + "-d pooling needs a rank-" + rank + " input, got "
                    + x.describe() + " (" + opts + ")");
        }
        return x;
    }

    private static void requireFloat(String op, String input, Tensor t) {
        if (t.dtype() == DType.UINT8 && op.equals("max_pool_values") && t.device().isCpu()) {
            return;  // quantization codes (max commutes with a one-scale quantization)
        }
        if (t.dtype() != DType.FLOAT32 && t.dtype() != DType.FLOAT64) {
            throw err(op, "input '" + input + "' must be float32 or float64, got " + t.describe());
        }
    }

    private static void requireGrad(String op, String name, Tensor dy, Shape want, Tensor x) {
        if (dy.dtype() != x.dtype()) {
            throw err(op, "'" + name + "' " + dy.describe() + " must have x's dtype " + x.dtype());
        }
        if (!dy.shape().equals(want)) {
            throw err(op, "'" + name + "' " + dy.describe() + " must have the forward output shape " + want + " of x "
                    + x.describe());
        }
    }

    /** One value per spatial dimension from a per-dimension or single-value array. */
    private static int[] expand(String op, String what, int[] v, int nd, Tensor x, Object opts) {
        if (v.length == nd) {
            return v;
        }
        if (v.length == 1) {
            int[] r = new int[nd];
            Arrays.fill(r, v[0]);
            return r;
        }
        throw err(op, what + " " + Arrays.toString(v) + " needs 1 or " + nd + " values for the " + nd
                + "-d pooling of x " + x.describe() + " (" + opts + ")");
    }

    private static int spatialRank(String op, Tensor x, Object opts) {
        requireFloat(op, "x", x);
        if (x.rank() < 3 || x.rank() > 5) {
            throw err(op, "x " + x.describe() + " must have rank 3, 4 or 5 ([N, C, spatial...] or [N, spatial..., C]) ("
                    + opts + ")");
        }
        return x.rank() - 2;
    }

    /** Fills N, C, K, groups and the input size of a conv.h geometry; returns it. */
    private static long[] baseGeometry(Tensor x, DataLayout layout) {
        long[] d = x.dims();
        int nd = d.length - 2;
        long[] g = new long[NativeCodes.CONV_GEOMETRY_LEN];
        boolean cl = layout == DataLayout.NHWC;
        long c = cl ? d[d.length - 1] : d[1];
        g[0] = d[0];
        g[1] = c;
        g[2] = c;
        g[3] = c;
        for (int i = 0; i < 3; i++) {
            g[4 + i] = 1;
            g[7 + i] = 1;
            g[10 + i] = 1;
            g[13 + i] = 1;
            g[22 + i] = 1;
        }
        for (int i = 0; i < nd; i++) {
            g[4 + 3 - nd + i] = cl ? d[1 + i] : d[2 + i];
        }
        return g;
    }

    static long[] poolGeometry(String op, PoolOptions a, Tensor x, boolean max) {
        int nd = spatialRank(op, x, a);
        int[] k = expand(op, "kernel", a.kernel(), nd, x, a);
        int[] s = a.stride().length == 0 ? k : expand(op, "stride", a.stride(), nd, x, a);
        int[] p = expand(op, "padding", a.padding(), nd, x, a);
        int[] pa = a.asymmetric() ? expand(op, "padding after", a.paddingAfter(), nd, x, a) : p;
        int[] dl = expand(op, "dilation", a.dilation(), nd, x, a);
        long[] g = baseGeometry(x, a.layout());
        for (int i = 0; i < nd; i++) {
            int j = 3 - nd + i;
            long in = g[4 + j];
            if (k[i] < 1) {
                throw err(op, "kernel " + Arrays.toString(k) + " must be positive (x " + x.describe() + ", " + a + ")");
            }
            if (s[i] < 1) {
                throw err(op, "stride " + Arrays.toString(s) + " must be positive (x " + x.describe() + ", " + a + ")");
            }
            if (dl[i] < 1) {
                throw err(op, "dilation " + Arrays.toString(dl) + " must be positive (x " + x.describe() + ", " + a + ")");
            }
            if (p[i] < 0 || pa[i] < 0) {
                throw err(op, "padding " + Arrays.toString(p) + (a.asymmetric() ? " / " + Arrays.toString(pa) : "")
                        + " must be non-negative (x " + x.describe() + ", " + a + ")");
            }
            long eff = (long) dl[i] * (k[i] - 1) + 1;
            if (!a.asymmetric() && p[i] > eff / 2) {
                throw err(op, "padding " + Arrays.toString(p) + " must be at most half of the (dilated) kernel "
                        + Arrays.toString(k) + " (x " + x.describe() + ", " + a + ")");
            }
            long padded = in + p[i] + pa[i];
            if (padded < eff) {
                throw err(op, "the (dilated) kernel " + Arrays.toString(k) + " is larger than the padded input: x "
                        + x.describe() + ", " + a);
            }
            long out = (padded - eff) / s[i] + 1;
            long after = pa[i];
            if (a.ceilMode()) {
                out = (padded - eff + s[i] - 1) / s[i] + 1;
                if ((out - 1) * s[i] >= in + p[i]) {
                    out--; // the last window would start in the padding after the input
                }
                after = Math.max(after, (out - 1) * s[i] + eff - in - p[i]); // windows past the end are clipped
            }
            g[7 + j] = k[i];
            g[10 + j] = s[i];
            g[13 + j] = dl[i];
            g[16 + j] = p[i];
            g[19 + j] = after;
            g[22 + j] = out;
        }
        return g;
    }

    /**
     * Average pooling with ceilMode and countIncludePad: the factor (per output position, shape
     * [1, 1, oD?, oH?, oW] or its NHWC form) that turns the native divisor (the full kernel) into
     * the number of taps inside the input and its padding; null when every window lies inside.
     */
    private static Tensor ceilDivisorFix(Tensor x, PoolOptions a) {
        if (!a.ceilMode() || !a.countIncludePad()) {
            return null;
        }
        String op = "avg_pool";
        long[] g = poolGeometry(op, a, x, false);
        int nd = x.rank() - 2;
        int[] pa = a.asymmetric() ? expand(op, "padding after", a.paddingAfter(), nd, x, a)
                : expand(op, "padding", a.padding(), nd, x, a);
        double[][] per = new double[3][];
        boolean clipped = false;
        for (int j = 0; j < 3; j++) {
            int o = (int) g[22 + j];
            per[j] = new double[o];
            long in = g[4 + j], k = g[7 + j], s = g[10 + j], dl = g[13 + j], pb = g[16 + j];
            int i = j - (3 - nd);
            long limit = in + (i >= 0 ? pa[i] : 0); // end of the input and its real padding
            for (int t = 0; t < o; t++) {
                long base = t * s - pb;
                long inside = Math.min(k, Math.max(0, (limit - base + dl - 1) / dl));
                per[j][t] = (double) k / inside;
                clipped |= inside < k;
            }
        }
        if (!clipped) {
            return null;
        }
        double[] f = new double[per[0].length * per[1].length * per[2].length];
        int q = 0;
        for (double f0 : per[0]) {
            for (double f1 : per[1]) {
                for (double f2 : per[2]) {
                    f[q++] = f0 * f1 * f2;
                }
            }
        }
        long[] dims = new long[x.rank()];
        Arrays.fill(dims, 1);
        int first = a.layout() == DataLayout.NHWC ? 1 : 2;
        for (int i = 0; i < nd; i++) {
            dims[first + i] = g[22 + 3 - nd + i];
        }
        try (Tensor host = Tensor.of(f, dims)) {
            return host.to(x.dtype()).to(x.device());
        }
    }

    static long[] adaptiveGeometry(String op, AdaptiveOptions a, Tensor x) {
        int nd = spatialRank(op, x, a);
        int[] o = expand(op, "output size", a.outputSize(), nd, x, a);
        long[] g = baseGeometry(x, a.layout());
        for (int i = 0; i < nd; i++) {
            if (o[i] < 1) {
                throw err(op, "output size " + Arrays.toString(o) + " must be positive (x " + x.describe() + ")");
            }
            g[22 + 3 - nd + i] = o[i];
        }
        return g;
    }

    /** The output shape of x's pooling with geometry g, in x's layout. */
    private static Shape outShape(Tensor x, long[] g, DataLayout layout) {
        long[] d = x.dims().clone();
        int nd = d.length - 2;
        int first = layout == DataLayout.NHWC ? 1 : 2;
        for (int i = 0; i < nd; i++) {
            d[first + i] = g[22 + 3 - nd + i];
        }
        return Shape.of(d);
    }

    private static Op<AdaptiveOptions> adaptiveOp(String name) {
        return Op.<AdaptiveOptions>declare(name)
                .inputs("x")
                .shape((op, a, in) -> Op.one(outShape(in[0], adaptiveGeometry(op.name(), a, in[0]), a.layout()), in[0].dtype()))
                .kernels((a, in, out) -> adaptiveForward(name, a, in, out))
                .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {
                    Pooling.ADAPTIVE_AVG_POOL_BACKWARD_OP.call(a, g[0], sv.input(0))})
                .register();
    }

    private static IllegalArgumentException err(String op, String message) {
        return new IllegalArgumentException(op + ": " + message);
    }

    // ------------------------------------------------------------------ kernels (one body for CPU and CUDA)
    /** One native pooling call: (kernels, dtype code, geometry pointer, source address, stream) -> status. */
    @FunctionalInterface
    private interface PoolCall {
        int run(Kernels k, int dtype, long geometry, long src, long stream);
    }

    /**
     * Runs {@code call} on a contiguous copy of {@code src} (when it is not contiguous already),
     * with the geometry in the scratch buffer, on the output's backend and stream; a failure names
     * {@code name}, the tensor {@code named} and the options. An empty output launches nothing.
     */
    private static void launch(String name, Object opts, Tensor named, long[] g, Tensor src, Tensor out, PoolCall call) {
        if (out.numel() == 0) {
            return;
        }
        try (Tensor sc = src.contiguous()) {
            Launch l = Launch.on(out); // before the geometry goes into the scratch buffer
            long gp = NativeArgs.get().put(g);
            int status = call.run(l.kernels, named.dtype().code(), gp, sc.dataAddress(), l.stream);
            if (status != 0) {
                throw l.failure(status, name + "(" + named.describe() + ", " + opts + ")");
            }
        }
    }

    /** max_pool's kernel (out = {y, indices}) and max_pool_values' (out = {y}: no indices written). */
    private static void maxForward(PoolOptions a, Tensor[] in, Tensor[] out) {
        int layout = a.layout().code();
        long y = out[0].dataAddress();
        long idx = out.length > 1 ? out[1].dataAddress() : 0L;
        String name = out.length > 1 ? "max_pool" : "max_pool_values";
        launch(name, a, in[0], poolGeometry(name, a, in[0], true), in[0], out[0],
                (k, dt, gp, x, stream) ->
                k.maxpoolForward(dt, layout, gp, x, y, idx, stream));
    }

    private static void maxBackward(PoolOptions a, Tensor[] in, Tensor[] out) {
        int layout = a.layout().code();
        long[] g = poolGeometry("max_pool_backward", a, in[1], true);
        long dx = out[0].dataAddress();
        try (Tensor ic = out[0].numel() == 0 ? null : in[2].contiguous()) {
            launch("max_pool_backward", a, in[1], g, in[0], out[0], (k, dt, gp, dy, stream) ->
                k.maxpoolBackward(dt, layout, gp, dy, ic.dataAddress(), dx, stream));
        }
    }

    private static void avgForward(PoolOptions a, Tensor[] in, Tensor[] out) {
        int layout = a.layout().code();
        int pad = a.countIncludePad() ? 1 : 0;
        long y = out[0].dataAddress();
        launch("avg_pool", a, in[0], poolGeometry("avg_pool", a, in[0], false), in[0], out[0],
                (k, dt, gp, x, stream) ->
                k.avgpoolForward(dt, layout, gp, pad, x, y, stream));
    }

    private static void avgBackward(PoolOptions a, Tensor[] in, Tensor[] out) {
        int layout = a.layout().code();
        int pad = a.countIncludePad() ? 1 : 0;
        long dx = out[0].dataAddress();
        launch("avg_pool_backward", a, in[1], poolGeometry("avg_pool_backward", a, in[1], false), in[0], out[0],
                (k, dt, gp, dy, stream) ->
                k.avgpoolBackward(dt, layout, gp, pad, dy, dx, stream));
    }

    private static void adaptiveForward(String name, AdaptiveOptions a, Tensor[] in, Tensor[] out) {
        if (out[0].numel() == 0) {
            return; // (before the geometry: an empty output needs no valid one)
        }
        int layout = a.layout().code();
        long y = out[0].dataAddress();
        launch(name, a, in[0], adaptiveGeometry(name, a, in[0]), in[0], out[0], (k, dt, gp, x, stream) ->
                k.adaptiveAvgpoolForward(dt, layout, gp, x, y, stream));
    }

    private static void adaptiveBackward(AdaptiveOptions a, Tensor[] in, Tensor[] out) {
        int layout = a.layout().code();
        long dx = out[0].dataAddress();
        launch("adaptive_avg_pool_backward", a, in[1], adaptiveGeometry("adaptive_avg_pool_backward", a, in[1]), in[0],
                out[0], (k, dt, gp, dy, stream) ->
                k.adaptiveAvgpoolBackward(dt, layout, gp, dy, dx, stream));
    }
}
