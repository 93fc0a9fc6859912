package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.cuda.Cudnn;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.DeviceType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;
import java.util.List;
import java.util.function.IntUnaryOperator;

/**
 * Convolutions: 1-d, 2-d and 3-d, NCHW ({@code [N, C, (D,) (H,) W]}) or NHWC ({@code [N, (D,) (H,) W, C]})
 * activations, weight always {@code [K, C/groups, k...]} (PyTorch's layout), groups (depthwise
 * included), stride, dilation, per-side or "same" padding, fused bias and activation on the forward.
 * Kernels: {@code native/cpu/conv.cpp} and {@code conv_fast.cpp} (REFERENCE, IM2COL_GEMM,
 * DIRECT_NHWC, WINOGRAD, DEPTHWISE; AUTO picks by shape); CUDA: {@code native/cuda/conv.cu}
 * (IMPLICIT_GEMM on tensor cores, DEPTHWISE, REFERENCE; AUTO picks DEPTHWISE for groups == C == K,
 * REFERENCE for float64, else IMPLICIT_GEMM; the CPU-only algorithms run IMPLICIT_GEMM (float64: REFERENCE) on CUDA and the
 * CUDA-only IMPLICIT_GEMM runs AUTO on the CPU). Cost: 2*N*K*(C/groups)*prod(k)*prod(out) FLOPs for each
 * of forward, backward-data and backward-weight.
 *
 * <p>Ops: {@code conv} (x, weight, bias?), {@code conv_transpose} (x, weight, bias?; the forward of a
 * transposed convolution = backward-data of a convolution), {@code conv_backward_data} (dy, weight)
 * and {@code conv_backward_weight} (x, dy) -> (dw, dbias?) for the autograd work. Inputs are made
 * contiguous in the stated layout first. float32 and float64 (float64 runs REFERENCE or IM2COL_GEMM on
 * the CPU, REFERENCE or DEPTHWISE on CUDA); float16 and bfloat16 on CUDA only (float32 accumulation;
 * float32 runs on TF32 tensor cores in IMPLICIT_GEMM, exact float32 with REFERENCE).
 */
public final class Convolution {
    private Convolution() {
    }

    /**
     * Algorithm (matches CT_CONV_ALGO_*). IMPLICIT_GEMM is CUDA's tensor-core kernel (AUTO on the CPU);
     * IM2COL_GEMM, DIRECT_NHWC and WINOGRAD are CPU kernels (IMPLICIT_GEMM on CUDA). CUDNN runs cuDNN on
     * CUDA (loaded on first use; AUTO where cuDNN cannot express the geometry, i.e. asymmetric padding;
     * UnsupportedOperationException on the CPU).
     */
    public enum Algorithm {
        AUTO(NativeCodes.ConvAlgo.AUTO), REFERENCE(NativeCodes.ConvAlgo.REFERENCE),
        IM2COL_GEMM(NativeCodes.ConvAlgo.IM2COL_GEMM), DIRECT_NHWC(NativeCodes.ConvAlgo.DIRECT_NHWC),
        WINOGRAD(NativeCodes.ConvAlgo.WINOGRAD), DEPTHWISE(NativeCodes.ConvAlgo.DEPTHWISE),
        IMPLICIT_GEMM(NativeCodes.ConvAlgo.IMPLICIT_GEMM), CUDNN(NativeCodes.ConvAlgo.CUDNN),
        /** CPU: time every algorithm that applies once per shape and keep the fastest ({@link ConvAutotune}); CUDA: AUTO. */
        AUTOTUNE(-1);

        private final int code;

        Algorithm(int code) {
            this.code = code;
        }

        /** The CT_CONV_ALGO_* code of cortado/conv.h (-1 for AUTOTUNE, which Java resolves). */
        int code() {
            return code;
        }

        static Algorithm ofCode(int code) {
            for (Algorithm a : values()) {
                if (a.code == code) {
                    return a;
                }
            }
            throw new IllegalArgumentException("no convolution algorithm has the native code " + code);
        }
    }

    /** A pass of a convolution: the forward, or one of the two products of its backward. */
    public enum Pass {
        /** {@code y = conv(x, w)}. */
        FORWARD,
        /** {@code dx} from {@code dy} and {@code w} (a transposed convolution). */
        BACKWARD_DATA,
        /** {@code dw} (and the bias gradient) from {@code x} and {@code dy}. */
        BACKWARD_WEIGHT;

        /** The pass number of cortado/conv.h (0 forward, 1 backward-data, 2 backward-weight). */
        int code() {
            return ordinal();
        }
    }

    /** The CPU algorithms AUTOTUNE times (each native call answers UNSUPPORTED where it does not apply). */
    private static final List<Algorithm> TUNABLE =
            List.of(Algorithm.WINOGRAD, Algorithm.DIRECT_NHWC, Algorithm.IM2COL_GEMM, Algorithm.DEPTHWISE);

    /** Runs a CPU entry point with the asked algorithm, or through the autotuner for AUTOTUNE. */
    private static int runCpu(int pass, Tensor x, ConvOptions o, Geometry g, IntUnaryOperator call) {
        if (o.algorithm() != Algorithm.AUTOTUNE) {
            return call.applyAsInt(o.algorithm() == Algorithm.IMPLICIT_GEMM ? Algorithm.AUTO.code() : o.algorithm().code());
        }
        String key = ConvAutotune.key(pass, x.dtype().name(), o.layout().name(), g.array(), CpuBackend.threads(),
                CpuBackend.avx512());
        return ConvAutotune.run(key, TUNABLE, call);
    }

    /** Fused activation of the forward (matches CT_ACTIVATION_*); GELU is the erf form. */
    public enum Activation {
        NONE(NativeCodes.Activation.NONE), RELU(NativeCodes.Activation.RELU), GELU(NativeCodes.Activation.GELU),
        SILU(NativeCodes.Activation.SILU);

        private final int code;

        Activation(int code) {
            this.code = code;
        }

        /** The CT_ACTIVATION_* code of cortado/conv.h. */
        public int code() {
            return code;
        }
    }

    /**
     * Convolution options. Per-dimension arrays hold one value (used for every spatial dimension)
     * or one per spatial dimension. {@code samePadding}: padding chosen so that out = ceil(in / stride)
     * (extra padding after, as TensorFlow does). {@code outputPadding} only for transposed convolutions.
     */
    public record ConvOptions(long[] stride, long[] padBefore, long[] padAfter, boolean samePadding, long[] dilation,
                              long groups, DataLayout layout, Algorithm algorithm, Activation activation,
                              long[] outputPadding) {
        public static Builder builder() {
            return new Builder();
        }

        public static ConvOptions defaults() {
            return new Builder().build();
        }

        @Override
        public String toString() {
            return "stride " + Arrays.toString(stride) + ", padding "
                    + (samePadding ? "same" : Arrays.toString(padBefore) + "/" + Arrays.toString(padAfter)) + ", dilation "
                    + Arrays.toString(dilation) + ", groups " + groups + ", " + layout + ", " + algorithm
                    + (activation != Activation.NONE ? ", " + activation : "")
                    + (outputPadding != null && Arrays.stream(outputPadding).anyMatch(v -> v != 0)
                            ? ", output_padding " + Arrays.toString(outputPadding) : "");
        }

        /** Builder with defaults stride 1, padding 0, dilation 1, groups 1, NCHW, AUTO, no activation. */
        public static final class Builder {
            private long[] stride = {1};
            private long[] padBefore = {0};
            private long[] padAfter = {0};
            private boolean same;
            private long[] dilation = {1};
            private long groups = 1;
            private DataLayout layout = DataLayout.NCHW;
            private Algorithm algorithm = Algorithm.AUTO;
            private Activation activation = Activation.NONE;
            private long[] outputPadding = {0};

            public Builder stride(long... s) {
                stride = s.clone();
                return this;
            }

            /** Symmetric padding (one value or one per spatial dimension). */
            public Builder padding(long... p) {
                padBefore = p.clone();
                padAfter = p.clone();
                same = false;
                return this;
            }

            /** Padding before and after each spatial dimension (asymmetric). */
            public Builder padding(long[] before, long[] after) {
                padBefore = before.clone();
                padAfter = after.clone();
                same = false;
                return this;
            }

            /** "same" padding: out = ceil(in / stride). */
            public Builder paddingSame() {
                same = true;
                return this;
            }

            public Builder dilation(long... d) {
                dilation = d.clone();
                return this;
            }

            public Builder groups(long g) {
                groups = g;
                return this;
            }

            public Builder layout(DataLayout l) {
                layout = l;
                return this;
            }

            public Builder algorithm(Algorithm a) {
                algorithm = a;
                return this;
            }

            public Builder activation(Activation a) {
                activation = a;
                return this;
            }

            public Builder outputPadding(long... p) {
                outputPadding = p.clone();
                return this;
            }

            public ConvOptions build() {
                return new ConvOptions(stride.clone(), padBefore.clone(), padAfter.clone(), same, dilation.clone(), groups,
                        layout, algorithm, activation, outputPadding.clone());
            }
        }
    }

    /** Attributes of {@code conv} and {@code conv_transpose}: the number of spatial dimensions and the options. */
    public record ConvAttrs(int spatialDims, ConvOptions options) {
    }

    /**
     * Attributes of {@code conv_prepacked}: the convolution's, and the shape [K, C/groups, kernel...]
     * of the weight that was packed.
     */
    public record PrepackedAttrs(int spatialDims, ConvOptions options, long[] weightShape) {
        @Override
        public boolean equals(Object o) {
            return o instanceof PrepackedAttrs p && p.spatialDims == spatialDims && p.options.equals(options)
                    && Arrays.equals(p.weightShape, weightShape);
        }

        @Override
        public int hashCode() {
            return 31 * (31 * spatialDims + options.hashCode()) + Arrays.hashCode(weightShape);
        }

        @Override
        public String toString() {
            return "PrepackedAttrs[spatialDims=" + spatialDims + ", options=" + options + ", weightShape="
                    + Arrays.toString(weightShape) + "]";
        }
    }

    /** Attributes of {@code conv_backward_data}: {@code inputSize} is the spatial size of x. */
    public record BackwardDataAttrs(int spatialDims, ConvOptions options, long[] inputSize) {
    }

    /** Attributes of {@code conv_backward_weight}: the kernel's spatial size, and whether dbias is wanted. */
    public record BackwardWeightAttrs(int spatialDims, ConvOptions options, long[] kernelSize, boolean bias) {
    }

    public static final Op<ConvAttrs> CONV_OP = Op.<ConvAttrs>declare("conv")
            .inputs("x", "weight", "bias").required(2)
            .shape((op, a, in) -> {
                Geometry g = forwardGeometry(op, a, in[0], in[1], in.length > 2 ? in[2] : null);
                return Op.one(activationShape(a.options().layout(), a.spatialDims(), g.n, g.k, g.out), in[0].dtype());
            })
            .kernels((a, in, out) -> forwardKernel(a, in, out[0]))
            .backward(Op.Saves.INPUTS_AND_OUTPUTS, Convolution::convGrad)
            .register();

    /**
     * {@code conv} with its weight pre-packed by {@link #packWeight}: float32 on the CPU, for
     * inference (no backward). The DIRECT_NHWC kernel packs its weight into register-tile blocks,
     * and Winograd transforms every 3x3 filter (16/9 of the weight written), at every call of
     * {@code conv}; a graph with frozen parameters does it once at compile time
     * ({@code dev.cortado.graph.WeightPrepacking}) and calls this op. The packed buffer names the
     * algorithm it is for; the kernel checks it against the geometry.
     */
    public static final Op<PrepackedAttrs> CONV_PREPACKED_OP = Op.<PrepackedAttrs>declare("conv_prepacked")
            .inputs("x", "packed_weight", "bias").required(2)
            .shape((op, a, in) -> {
                Geometry g = prepackedGeometry(op, a, in[0], in[1], in.length > 2 ? in[2] : null);
                return Op.one(activationShape(a.options().layout(), a.spatialDims(), g.n, g.k, g.out), in[0].dtype());
            })
            .kernel(DeviceType.CPU, (a, in, out) -> prepackedKernel(a, in, out[0]))
            .register();

    public static final Op<ConvAttrs> CONV_TRANSPOSE_OP = Op.<ConvAttrs>declare("conv_transpose")
            .inputs("x", "weight", "bias").required(2)
            .shape((op, a, in) -> {
                Geometry g = transposeGeometry(op, a, in[0], in[1], in.length > 2 ? in[2] : null);
                return Op.one(activationShape(a.options().layout(), a.spatialDims(), g.n, g.c, g.in), in[0].dtype());
            })
            .kernels((a, in, out) -> transposeKernel(a, in, out[0]))
            .backward(Op.Saves.INPUTS, Convolution::convTransposeGrad)
            .register();

    public static final Op<BackwardDataAttrs> CONV_BACKWARD_DATA_OP = Op.<BackwardDataAttrs>declare("conv_backward_data")
            .inputs("dy", "weight")
            .shape((op, a, in) -> {
                Geometry g = backwardDataGeometry(op, a, in[0], in[1]);
                return Op.one(activationShape(a.options().layout(), a.spatialDims(), g.n, g.c, g.in), in[0].dtype());
            })
            .kernels((a, in, out) -> backwardDataKernel(a, in, out[0]))
            .register();

    public static final Op<BackwardWeightAttrs> CONV_BACKWARD_WEIGHT_OP =
            Op.<BackwardWeightAttrs>declare("conv_backward_weight")
                    .inputs("x", "dy")
                    .shape((op, a, in) -> {
                        Geometry g = backwardWeightGeometry(op, a, in[0], in[1]);
                        Shape w = weightShape(a.spatialDims(), g);
                        DType t = in[0].dtype();
                        return a.bias() ? new TensorSpec[] {new TensorSpec(w, t), new TensorSpec(Shape.of(g.k), t)}
                                : new TensorSpec[] {new TensorSpec(w, t)};
                    })
                    .kernels((a, in, out) -> backwardWeightKernel(a, in, out))
                    .register();

    // ------------------------------------------------------------------ backward rules

    /**
     * conv: dx = conv_backward_data(dy, w), (dw, db) = conv_backward_weight(x, dy). A fused ReLU
     * is differentiated through its output (dy masked where y == 0); the other fused activations
     * are for inference (their pre-activation is not kept), so training applies them as ops.
     */
    private static Tensor[] convGrad(ConvAttrs a, Op.Saved sv, Tensor[] g) {
        ConvOptions o = a.options();
        try (Scope scope = Scope.open()) {
            Tensor dy = g[0];
            if (o.activation() == Activation.RELU) {
                dy = Elementwise.mul(dy, Elementwise.gt(sv.output(0), 0));
            } else if (o.activation() != Activation.NONE) {
                throw new UnsupportedOperationException("conv: the fused " + o.activation() + " activation is for "
                        + "inference; for training apply " + o.activation().name().toLowerCase() + " as a separate op");
            }
            Tensor x = sv.input(0);
            Tensor w = sv.input(1);
            boolean hasBias = sv.inputCount() > 2 && sv.input(2) != null;
            Tensor dx = null;
            Tensor dw = null;
            Tensor db = null;
            if (sv.needsGradient(0)) {
                dx = scope.keep(convBackwardData(dy, w, spatialSize(x, o.layout(), a.spatialDims()), o));
            }
            boolean wantBias = hasBias && sv.needsGradient(2);
            if (sv.needsGradient(1) || wantBias) {
                long[] kernel = Arrays.copyOfRange(w.dims(), 2, w.rank());
                Tensor[] r = convBackwardWeight(x, dy, kernel, wantBias, o);
                dw = sv.needsGradient(1) ? scope.keep(r[0]) : null;
                db = wantBias ? scope.keep(r[1]) : null;
            }
            return hasBias || sv.inputCount() > 2 ? new Tensor[] {dx, dw, db} : new Tensor[] {dx, dw};
        }
    }

    /**
     * conv_transpose is the data-gradient of a convolution, so: dx = conv(dy, w), dw =
     * conv_backward_weight with dy as the convolution's input and x as its output gradient,
     * db = dy summed over batch and space.
     */
    private static Tensor[] convTransposeGrad(ConvAttrs a, Op.Saved sv, Tensor[] g) {
        ConvOptions o = a.options();
        if (o.activation() != Activation.NONE) {
            throw new UnsupportedOperationException("conv_transpose: fused activations are for inference");
        }
        try (Scope scope = Scope.open()) {
            Tensor dy = g[0];
            Tensor x = sv.input(0);
            Tensor w = sv.input(1);
            boolean hasBias = sv.inputCount() > 2 && sv.input(2) != null;
            Tensor dx = sv.needsGradient(0) ? scope.keep(CONV_OP.call(new ConvAttrs(a.spatialDims(), o), dy, w)) : null;
            Tensor dw = null;
            if (sv.needsGradient(1)) {
                long[] kernel = Arrays.copyOfRange(w.dims(), 2, w.rank());
                dw = scope.keep(convBackwardWeight(dy, x, kernel, false, o)[0]);
            }
            Tensor db = null;
            if (hasBias && sv.needsGradient(2)) {
                int[] axes = new int[a.spatialDims() + 1];
                for (int i = 0; i < axes.length; i++) {
                    axes[i] = o.layout() == DataLayout.NCHW ? (i == 0 ? 0 : i + 1) : i;
                }
                db = scope.keep(Reductions.sum(dy, false, axes));
            }
            return sv.inputCount() > 2 ? new Tensor[] {dx, dw, db} : new Tensor[] {dx, dw};
        }
    }

    private static long[] spatialSize(Tensor x, DataLayout layout, int spatialDims) {
        int first = layout == DataLayout.NCHW ? 2 : 1;
        return Arrays.copyOfRange(x.dims(), first, first + spatialDims);
    }

    // ------------------------------------------------------------------ eager entry points
    /** 1-d convolution: x [N, C, W] (NHWC: [N, W, C]), weight [K, C/groups, kW], bias [K] or null. */
    public static Tensor conv1d(Tensor x, Tensor weight, Tensor bias, ConvOptions options) {
        return CONV_OP.call(new ConvAttrs(1, options), x, weight, bias);
    }

    /** 2-d convolution: x [N, C, H, W] (NHWC: [N, H, W, C]), weight [K, C/groups, kH, kW], bias [K] or null. */
    public static Tensor conv2d(Tensor x, Tensor weight, Tensor bias, ConvOptions options) {
        return CONV_OP.call(new ConvAttrs(2, options), x, weight, bias);
    }

    /** 3-d convolution: x [N, C, D, H, W] (NHWC: [N, D, H, W, C]), weight [K, C/groups, kD, kH, kW]. */
    public static Tensor conv3d(Tensor x, Tensor weight, Tensor bias, ConvOptions options) {
        return CONV_OP.call(new ConvAttrs(3, options), x, weight, bias);
    }

    /**
     * 2-d transposed convolution (PyTorch's ConvTranspose2d): x [N, Cin, H, W], weight
     * [Cin, Cout/groups, kH, kW], output [N, Cout, (H-1)*s - padBefore - padAfter + d*(k-1) + outputPadding + 1, ...].
     */
    public static Tensor convTranspose2d(Tensor x, Tensor weight, Tensor bias, ConvOptions options) {
        return CONV_TRANSPOSE_OP.call(new ConvAttrs(2, options), x, weight, bias);
    }

    /** Gradient of the convolution's input: dx for dy and weight; {@code inputSize} is x's spatial size. */
    public static Tensor convBackwardData(Tensor dy, Tensor weight, long[] inputSize, ConvOptions options) {
        return CONV_BACKWARD_DATA_OP.call(new BackwardDataAttrs(weight.rank() - 2, options, inputSize.clone()), dy, weight);
    }

    /** Gradient of the weight, and of the bias when {@code bias}: returns {dw} or {dw, dbias}. */
    public static Tensor[] convBackwardWeight(Tensor x, Tensor dy, long[] kernelSize, boolean bias, ConvOptions options) {
        return CONV_BACKWARD_WEIGHT_OP.callMulti(
                new BackwardWeightAttrs(kernelSize.length, options, kernelSize.clone(), bias), x, dy);
    }

    /** The algorithm AUTO runs for {@code pass} of conv(x, weight) on x's device. */
    public static Algorithm chosenAlgorithm(Tensor x, Tensor weight, ConvOptions options, Pass pass) {
        Geometry g = forwardGeometry(CONV_OP, new ConvAttrs(weight.rank() - 2, options), x, weight, null);
        if (x.device().isCuda()) { // the rule of resolve() in native/cuda/conv.cu
            if (g.groups == g.c && g.k == g.c) {
                return Algorithm.DEPTHWISE;
            }
            return x.dtype() == DType.FLOAT64 ? Algorithm.REFERENCE : Algorithm.IMPLICIT_GEMM;
        }
        NativeArgs args = NativeArgs.get();
        int r = NativeCpu.ct_cpu_conv_choose(x.dtype().code(), options.layout().code(), args.put(g.array()), pass.code(), 0);
        if (r < 0) {
            throw CpuBackend.failure(-r, "conv_choose(" + x.describe() + ", " + weight.describe() + ")");
        }
        return Algorithm.ofCode(r);
    }

    // ------------------------------------------------------------------ geometry
    /** The native geometry with spatial dimensions right-aligned into (D, H, W). */
    static final class Geometry {
        long n;
        long c;
        long k;
        long groups;
        final long[] in = {1, 1, 1};
        final long[] ks = {1, 1, 1};
        final long[] stride = {1, 1, 1};
        final long[] dil = {1, 1, 1};
        final long[] pb = {0, 0, 0};
        final long[] pa = {0, 0, 0};
        final long[] out = {1, 1, 1};
        int spatial;

        long[] array() {
            long[] g = new long[NativeCodes.CONV_GEOMETRY_LEN];
            g[0] = n;
            g[1] = c;
            g[2] = k;
            g[3] = groups;
            for (int i = 0; i < 3; i++) {
                g[4 + i] = in[i];
                g[7 + i] = ks[i];
                g[10 + i] = stride[i];
                g[13 + i] = dil[i];
                g[16 + i] = pb[i];
                g[19 + i] = pa[i];
                g[22 + i] = out[i];
            }
            return g;
        }

        long[] tail(long[] a) {
            return Arrays.copyOfRange(a, 3 - spatial, 3);
        }
    }

    private static void requireFloat(Op<?> op, String name, Tensor t) {
        DType d = t.dtype();
        if (d != DType.FLOAT32 && d != DType.FLOAT64 && d != DType.FLOAT16 && d != DType.BFLOAT16) {
            throw op.error("input '" + name + "' has dtype " + d + " (" + t.describe()
                    + "); expected float32 or float64 (or float16 / bfloat16 on CUDA)");
        }
    }

    private static void sameType(Op<?> op, String name, Tensor t, Tensor ref, String refName) {
        if (t.dtype() != ref.dtype()) {
            throw op.error("input '" + name + "' (" + t.describe() + ") has dtype " + t.dtype() + " but '" + refName + "' ("
                    + ref.describe() + ") has " + ref.dtype());
        }
    }

    private static long[] perDim(Op<?> op, String what, long[] v, int spatial, String ctx) {
        if (v == null || (v.length != 1 && v.length != spatial)) {
            throw op.error(what + " " + Arrays.toString(v) + " must have 1 or " + spatial + " entries (" + ctx + ")");
        }
        long[] r = new long[spatial];
        for (int i = 0; i < spatial; i++) {
            r[i] = v.length == 1 ? v[0] : v[i];
        }
        return r;
    }

    /** Spatial sizes and channel count of an activation in the given layout. */
    private static long channelsOf(DataLayout l, Tensor t) {
        return l == DataLayout.NCHW ? t.size(1) : t.size(t.rank() - 1);
    }

    private static long spatialOf(DataLayout l, Tensor t, int i) {
        return l == DataLayout.NCHW ? t.size(2 + i) : t.size(1 + i);
    }

    private static Shape activationShape(DataLayout l, int spatial, long n, long ch, long[] sp3) {
        long[] d = new long[spatial + 2];
        d[0] = n;
        for (int i = 0; i < spatial; i++) {
            d[l == DataLayout.NCHW ? 2 + i : 1 + i] = sp3[3 - spatial + i];
        }
        d[l == DataLayout.NCHW ? 1 : spatial + 1] = ch;
        return Shape.of(d);
    }

    private static Shape weightShape(int spatial, Geometry g) {
        long[] d = new long[spatial + 2];
        d[0] = g.k;
        d[1] = g.c / g.groups;
        for (int i = 0; i < spatial; i++) {
            d[2 + i] = g.ks[3 - spatial + i];
        }
        return Shape.of(d);
    }

    private static void checkSpatial(Op<?> op, int spatial) {
        if (spatial < 1 || spatial > 3) {
            throw op.error("supports 1, 2 or 3 spatial dimensions, got " + spatial);
        }
    }

    private static void requireRank(Op<?> op, String name, Tensor t, int rank, String expect) {
        if (t.rank() != rank) {
            throw op.error("input '" + name + "' must have rank " + rank + " " + expect + ", got " + t.describe());
        }
    }

    private static String layoutDims(DataLayout l, int spatial, String ch) {
        String sp = switch (spatial) {
            case 1 -> "W";
            case 2 -> "H, W";
            default -> "D, H, W";
        };
        return l == DataLayout.NCHW ? "[N, " + ch + ", " + sp + "]" : "[N, " + sp + ", " + ch + "]";
    }

    /** Fills stride, dilation and padding (checking them); needs g.in and g.ks set. */
    private static void options(Op<?> op, Geometry g, ConvOptions o, String ctx) {
        int s = g.spatial;
        long[] st = perDim(op, "stride", o.stride(), s, ctx);
        long[] dl = perDim(op, "dilation", o.dilation(), s, ctx);
        for (int i = 0; i < s; i++) {
            if (st[i] <= 0) {
                throw op.error("stride must be positive, got " + Arrays.toString(o.stride()) + " (" + ctx + ")");
            }
            if (dl[i] <= 0) {
                throw op.error("dilation must be positive, got " + Arrays.toString(o.dilation()) + " (" + ctx + ")");
            }
            g.stride[3 - s + i] = st[i];
            g.dil[3 - s + i] = dl[i];
        }
        if (o.samePadding()) {
            for (int j = 3 - s; j < 3; j++) {
                long out = (g.in[j] + g.stride[j] - 1) / g.stride[j];
                long total = Math.max((out - 1) * g.stride[j] + g.dil[j] * (g.ks[j] - 1) + 1 - g.in[j], 0);
                g.pb[j] = total / 2;
                g.pa[j] = total - total / 2;
            }
        } else {
            long[] pb = perDim(op, "padding", o.padBefore(), s, ctx);
            long[] pa = perDim(op, "padding", o.padAfter(), s, ctx);
            for (int i = 0; i < s; i++) {
                if (pb[i] < 0 || pa[i] < 0) {
                    throw op.error("padding must be non-negative, got " + Arrays.toString(o.padBefore()) + "/"
                            + Arrays.toString(o.padAfter()) + " (" + ctx + ")");
                }
                g.pb[3 - s + i] = pb[i];
                g.pa[3 - s + i] = pa[i];
            }
        }
    }

    private static void computeOut(Op<?> op, Geometry g, String ctx) {
        for (int j = 3 - g.spatial; j < 3; j++) {
            long span = g.dil[j] * (g.ks[j] - 1) + 1;
            long padded = g.in[j] + g.pb[j] + g.pa[j];
            if (span > padded) {
                throw op.error("kernel " + Arrays.toString(g.tail(g.ks)) + " with dilation " + Arrays.toString(g.tail(g.dil))
                        + " spans " + span + " but the padded input is only " + padded + " in spatial dimension "
                        + (j - 3 + g.spatial) + " (" + ctx + ")");
            }
            g.out[j] = (padded - span) / g.stride[j] + 1;
        }
    }

    private static void groupsCheck(Op<?> op, Geometry g, String ctx) {
        if (g.groups < 1) {
            throw op.error("groups must be positive, got " + g.groups + " (" + ctx + ")");
        }
        if (g.c % g.groups != 0 || g.k % g.groups != 0) {
            throw op.error("channels in " + g.c + " and out " + g.k + " must both be divisible by groups " + g.groups + " ("
                    + ctx + ")");
        }
    }

    static Geometry forwardGeometry(Op<?> op, ConvAttrs a, Tensor x, Tensor w, Tensor bias) {
        requireFloat(op, "x", x);
        sameType(op, "weight", w, x, "x");
        return forwardGeometry(op, a, x, w.dims(), w.describe(), bias);
    }

    /** The forward geometry with the weight given by its shape {@code w} (described as {@code wDesc}). */
    private static Geometry forwardGeometry(Op<?> op, ConvAttrs a, Tensor x, long[] w, String wDesc, Tensor bias) {
        int s = a.spatialDims();
        checkSpatial(op, s);
        ConvOptions o = a.options();
        String ctx = "x " + x.describe() + ", weight " + wDesc + (bias != null ? ", bias " + bias.describe() : "")
                + ", " + o;
        requireFloat(op, "x", x);
        if (bias != null) {
            sameType(op, "bias", bias, x, "x");
        }
        requireRank(op, "x", x, s + 2, layoutDims(o.layout(), s, "C"), ctx);
        if (w.length != s + 2) {
            throw op.error("input 'weight' must have rank " + (s + 2) + " [K, C/groups, kernel...], got " + wDesc + " ("
                    + ctx + ")");
        }
        Geometry g = new Geometry();
        g.spatial = s;
        g.n = x.size(0);
        g.c = channelsOf(o.layout(), x);
        g.k = w[0];
        g.groups = o.groups();
        for (int i = 0; i < s; i++) {
            g.in[3 - s + i] = spatialOf(o.layout(), x, i);
            g.ks[3 - s + i] = w[2 + i];
        }
        groupsCheck(op, g, ctx);
        if (w[1] * g.groups != g.c) {
            throw op.error("x has " + g.c + " channels but weight expects " + w[1] + " per group x " + g.groups
                    + " groups = " + w[1] * g.groups + " (" + ctx + ")");
        }
        if (bias != null && (bias.rank() != 1 || bias.size(0) != g.k)) {
            throw op.error("bias must have shape [" + g.k + "], got " + bias.describe() + " (" + ctx + ")");
        }
        checkPositive(op, g, ctx);
        options(op, g, o, ctx);
        computeOut(op, g, ctx);
        return g;
    }

    private static void requireRank(Op<?> op, String name, Tensor t, int rank, String expect, String ctx) {
        if (t.rank() != rank) {
            throw op.error("input '" + name + "' must have rank " + rank + " " + expect + ", got " + t.describe() + " ("
                    + ctx + ")");
        }
    }

    private static void checkPositive(Op<?> op, Geometry g, String ctx) {
        for (int j = 0; j < 3; j++) {
            if (g.ks[j] < 1) {
                throw op.error("kernel size must be positive, got " + Arrays.toString(g.tail(g.ks)) + " (" + ctx + ")");
            }
            if (g.in[j] < 1) {
                throw op.error("spatial size must be positive, got " + Arrays.toString(g.tail(g.in)) + " (" + ctx + ")");
            }
        }
        if (g.c < 1 || g.k < 1) {
            throw op.error("channel counts must be positive (" + ctx + ")");
        }
    }

    /** conv_transpose: the convolution whose backward-data it is (c = output channels, k = x's channels). */
    static Geometry transposeGeometry(Op<?> op, ConvAttrs a, Tensor x, Tensor w, Tensor bias) {
        int s = a.spatialDims();
        checkSpatial(op, s);
        ConvOptions o = a.options();
        String ctx = "x " + x.describe() + ", weight " + w.describe() + (bias != null ? ", bias " + bias.describe() : "")
                + ", " + o;
        requireFloat(op, "x", x);
        sameType(op, "weight", w, x, "x");
        if (bias != null) {
            sameType(op, "bias", bias, x, "x");
        }
        requireRank(op, "x", x, s + 2, layoutDims(o.layout(), s, "Cin"), ctx);
        requireRank(op, "weight", w, s + 2, "[Cin, Cout/groups, kernel...]", ctx);
        if (o.samePadding()) {
            throw op.error("'same' padding is not defined for a transposed convolution (" + ctx + ")");
        }
        if (o.activation() != Activation.NONE) {
            throw op.error("a fused activation is not supported on a transposed convolution (" + ctx + ")");
        }
        Geometry g = new Geometry();
        g.spatial = s;
        g.n = x.size(0);
        g.k = channelsOf(o.layout(), x);
        g.groups = o.groups();
        if (w.size(0) != g.k) {
            throw op.error("x has " + g.k + " channels but weight's first dimension is " + w.size(0) + " (" + ctx + ")");
        }
        g.c = w.size(1) * g.groups;
        for (int i = 0; i < s; i++) {
            g.out[3 - s + i] = spatialOf(o.layout(), x, i);
            g.ks[3 - s + i] = w.size(2 + i);
            g.in[3 - s + i] = 1; // placeholder for options()
        }
        groupsCheck(op, g, ctx);
        if (bias != null && (bias.rank() != 1 || bias.size(0) != g.c)) {
            throw op.error("bias must have shape [" + g.c + "], got " + bias.describe() + " (" + ctx + ")");
        }
        checkPositive(op, g, ctx);
        options(op, g, o, ctx);
        long[] op_ = perDim(op, "output_padding", o.outputPadding(), s, ctx);
        for (int i = 0; i < s; i++) {
            int j = 3 - s + i;
            if (op_[i] < 0 || op_[i] >= g.stride[j]) {
                throw op.error("output_padding " + Arrays.toString(o.outputPadding()) + " must be in [0, stride) ("
                        + ctx + ")");
            }
            if (g.out[j] < 1) {
                throw op.error("spatial size must be positive (" + ctx + ")");
            }
            long size = (g.out[j] - 1) * g.stride[j] - g.pb[j] - g.pa[j] + g.dil[j] * (g.ks[j] - 1) + op_[i] + 1;
            if (size < 1) {
                throw op.error("the output size " + size + " in spatial dimension " + i + " is not positive (" + ctx + ")");
            }
            g.in[j] = size;
        }
        return g;
    }

    static Geometry backwardDataGeometry(Op<?> op, BackwardDataAttrs a, Tensor dy, Tensor w) {
        int s = a.spatialDims();
        checkSpatial(op, s);
        ConvOptions o = a.options();
        String ctx = "dy " + dy.describe() + ", weight " + w.describe() + ", input size " + Arrays.toString(a.inputSize())
                + ", " + o;
        requireFloat(op, "dy", dy);
        sameType(op, "weight", w, dy, "dy");
        requireRank(op, "dy", dy, s + 2, layoutDims(o.layout(), s, "K"), ctx);
        requireRank(op, "weight", w, s + 2, "[K, C/groups, kernel...]", ctx);
        if (a.inputSize() == null || a.inputSize().length != s) {
            throw op.error("input size must have " + s + " entries (" + ctx + ")");
        }
        Geometry g = new Geometry();
        g.spatial = s;
        g.n = dy.size(0);
        g.k = w.size(0);
        g.groups = o.groups();
        g.c = w.size(1) * g.groups;
        for (int i = 0; i < s; i++) {
            g.in[3 - s + i] = a.inputSize()[i];
            g.ks[3 - s + i] = w.size(2 + i);
        }
        groupsCheck(op, g, ctx);
        if (channelsOf(o.layout(), dy) != g.k) {
            throw op.error("dy has " + channelsOf(o.layout(), dy) + " channels but weight has " + g.k + " output channels ("
                    + ctx + ")");
        }
        checkPositive(op, g, ctx);
        options(op, g, o, ctx);
        computeOut(op, g, ctx);
        for (int i = 0; i < s; i++) {
            if (spatialOf(o.layout(), dy, i) != g.out[3 - s + i]) {
                throw op.error("dy's spatial size " + Arrays.toString(g.tail(dySizes(o.layout(), dy, s)))
                        + " differs from the convolution's output size " + Arrays.toString(g.tail(g.out)) + " (" + ctx + ")");
            }
        }
        return g;
    }

    private static long[] dySizes(DataLayout l, Tensor t, int s) {
        long[] r = {1, 1, 1};
        for (int i = 0; i < s; i++) {
            r[3 - s + i] = spatialOf(l, t, i);
        }
        return r;
    }

    static Geometry backwardWeightGeometry(Op<?> op, BackwardWeightAttrs a, Tensor x, Tensor dy) {
        int s = a.spatialDims();
        checkSpatial(op, s);
        ConvOptions o = a.options();
        String ctx = "x " + x.describe() + ", dy " + dy.describe() + ", kernel " + Arrays.toString(a.kernelSize()) + ", "
                + o;
        requireFloat(op, "x", x);
        sameType(op, "dy", dy, x, "x");
        requireRank(op, "x", x, s + 2, layoutDims(o.layout(), s, "C"), ctx);
        requireRank(op, "dy", dy, s + 2, layoutDims(o.layout(), s, "K"), ctx);
        if (a.kernelSize() == null || a.kernelSize().length != s) {
            throw op.error("kernel size must have " + s + " entries (" + ctx + ")");
        }
        Geometry g = new Geometry();
        g.spatial = s;
        g.n = x.size(0);
        g.c = channelsOf(o.layout(), x);
        g.k = channelsOf(o.layout(), dy);
        g.groups = o.groups();
        for (int i = 0; i < s; i++) {
            g.in[3 - s + i] = spatialOf(o.layout(), x, i);
            g.ks[3 - s + i] = a.kernelSize()[i];
        }
        if (dy.size(0) != g.n) {
            throw op.error("x has batch " + g.n + " but dy has " + dy.size(0) + " (" + ctx + ")");
        }
        groupsCheck(op, g, ctx);
        checkPositive(op, g, ctx);
        options(op, g, o, ctx);
        computeOut(op, g, ctx);
        for (int i = 0; i < s; i++) {
            if (spatialOf(o.layout(), dy, i) != g.out[3 - s + i]) {
                throw op.error("dy's spatial size " + Arrays.toString(g.tail(dySizes(o.layout(), dy, s)))
                        + " differs from the convolution's output size " + Arrays.toString(g.tail(g.out)) + " (" + ctx + ")");
            }
        }
        return g;
    }

    // ------------------------------------------------------------------ kernels
    private static String describe(String name, Tensor[] in, Object attrs) {
        StringBuilder b = new StringBuilder(name).append('(');
        for (Tensor t : in) {
            if (t != null) {
                b.append(t.describe()).append(", ");
            }
        }
        return b.append(attrs).append(')').toString();
    }

    /** The algorithm code a backend's native entry point is given (each maps the other's algorithms). */
    private static int algorithmCode(String name, Tensor[] in, ConvOptions o, Launch run) {
        Algorithm a = o.algorithm();
        if (!run.isCuda()) {
            DType d = in[0].dtype();
            if (d == DType.FLOAT16 || d == DType.BFLOAT16) {
                throw new UnsupportedOperationException(describe(name, in, o) + ": " + d
                        + " convolutions run on CUDA only; the CPU kernels take float32 or float64");
            }
            if (a == Algorithm.CUDNN) {
                throw new UnsupportedOperationException(describe(name, in, o)
                        + ": algorithm CUDNN is for CUDA tensors only");
            }
            return a == Algorithm.IMPLICIT_GEMM || a == Algorithm.AUTOTUNE ? Algorithm.AUTO.code() : a.code();
        }
        return a == Algorithm.CUDNN || a == Algorithm.AUTOTUNE ? Algorithm.AUTO.code() : a.code();
    }

    /** True when the CUDA kernel should call cuDNN (CUDNN asked for and the geometry expressible). */
    private static boolean useCudnn(Launch run, ConvOptions o, Geometry g) {
        return run.isCuda() && o.algorithm() == Algorithm.CUDNN && Cudnn.applies(g.array());
    }

    /** Applies a fused activation in place (the cuDNN path; the native kernels fuse it). */
    private static void activateInPlace(Tensor out, Activation act) {
        if (act == Activation.NONE) {
            return;
        }
        try (Tensor r = switch (act) {
            case RELU -> Elementwise.relu(out);
            case GELU -> Elementwise.gelu(out);
            default -> Elementwise.silu(out);
        }) {
            out.copyFrom(r);
        }
    }

    /** cuDNN backward-data (also the conv_transpose forward); returns status 0 (failures throw). */
    private static int cudnnBackwardData(int spatial, ConvOptions o, Geometry g, Tensor dy, Tensor w, Tensor dx) {
        Cudnn.backwardData(dx.device(), dy.dtype(), o.layout() == DataLayout.NHWC, spatial, g.array(), dy.dataAddress(),
                w.dataAddress(), dx.dataAddress());
        return 0;
    }

    /**
     * Runs a native entry point ({@code call}: algorithm code to status): on CUDA with the resolved
     * algorithm, on the CPU with the asked one or through the autotuner.
     */
    private static int dispatch(Launch run, int pass, Tensor x, ConvOptions o, Geometry g, int algo,
                                IntUnaryOperator call) {
        return run.isCuda() ? call.applyAsInt(algo) : runCpu(pass, x, o, g, call);
    }

    private static void forwardKernel(ConvAttrs a, Tensor[] in, Tensor out) {
        Tensor bias = in.length > 2 ? in[2] : null;
        Geometry g = forwardGeometry(CONV_OP, a, in[0], in[1], bias);
        if (out.numel() == 0) {
            return;
        }
        ConvOptions o = a.options();
        Launch run = Launch.on(out);
        int algo = algorithmCode("conv", in, o, run);
        try (Tensor xc = in[0].contiguous(); Tensor wc = in[1].contiguous();
             Tensor bc = bias == null ? null : bias.contiguous()) {
            if (useCudnn(run, o, g)) {
                Cudnn.forward(out.device(), in[0].dtype(), o.layout() == DataLayout.NHWC, a.spatialDims(), g.array(),
                        xc.dataAddress(), wc.dataAddress(), bc == null ? 0 : bc.dataAddress(), out.dataAddress());
                activateInPlace(out, o.activation());
                return;
            }
            NativeArgs args = NativeArgs.get();
            int dt = in[0].dtype().code();
            int layout = o.layout().code();
            long bp = bc == null ? 0 : bc.dataAddress();
            int status = dispatch(run, 0, in[0], o, g, algo, code -> run.kernels.convForward(dt, layout, code,
                    args.put(g.array()), xc.dataAddress(), wc.dataAddress(), bp, o.activation().code(), out.dataAddress(),
                    run.stream));
            if (status != 0) {
                throw run.failure(status, describe("conv", in, o));
            }
        }
    }

    /**
     * {@code weight} packed for the CPU forward of a {@code spatialDims}-d convolution with
     * {@code options} on inputs shaped like {@code x} (only its channels and spatial sizes matter:
     * an empty batch will do), for {@link #CONV_PREPACKED_OP}: a float32 tensor of the packed
     * length, or null when the algorithm the forward would run has no packed layout (im2col,
     * depthwise, the reference, float64, AUTOTUNE's choice) or the tensors are not float32 CPU
     * tensors. The packed layout also depends on this CPU's vector width: it is for this process.
     */
    public static Tensor packWeight(Tensor x, Tensor weight, int spatialDims, ConvOptions options) {
        Algorithm algo = options.algorithm();
        if (!x.device().isCpu() || !weight.device().isCpu() || x.dtype() != DType.FLOAT32
                || weight.dtype() != DType.FLOAT32 || (algo != Algorithm.AUTO && algo != Algorithm.IMPLICIT_GEMM
                && algo != Algorithm.WINOGRAD && algo != Algorithm.DIRECT_NHWC)) {
            return null;
        }
        ConvAttrs a = new ConvAttrs(spatialDims, options);
        Geometry g = forwardGeometry(CONV_OP, a, x, weight, null);
        int code = algo == Algorithm.IMPLICIT_GEMM ? Algorithm.AUTO.code() : algo.code();
        int dt = DType.FLOAT32.code();
        int layout = options.layout().code();
        long len = NativeCpu.ct_cpu_conv_packed_len(dt, layout, code, NativeArgs.get().put(g.array()), 0);
        if (len < 0) {
            throw CpuBackend.failure((int) -len, "conv_packed_len(" + x.describe() + ", " + weight.describe() + ", " + options + ")");
        }
        if (len == 0) {
            return null;
        }
        Tensor packed = Tensor.empty(DType.FLOAT32, Device.CPU, len);
        try (Tensor wc = weight.contiguous()) {
            int status = NativeCpu.ct_cpu_conv_pack_weight(dt, layout, code, NativeArgs.get().put(g.array()),
                    wc.dataAddress(), packed.dataAddress(), len, 0);
            if (status != 0) {
                throw CpuBackend.failure(status, "conv_pack_weight(" + weight.describe() + ", " + options + ")");
            }
            return packed;
        } catch (RuntimeException e) {
            packed.close();
            throw e;
        }
    }

    private static Geometry prepackedGeometry(Op<?> op, PrepackedAttrs a, Tensor x, Tensor packed, Tensor bias) {
        if (!x.device().isCpu() || x.dtype() != DType.FLOAT32) {
            throw op.error("takes float32 CPU tensors (weights are packed for the CPU kernels), got x " + x.describe());
        }
        if (packed.dtype() != DType.FLOAT32 || packed.rank() != 1 || !packed.device().isCpu()) {
            throw op.error("input 'packed_weight' must be the 1-d float32 CPU tensor packWeight made, got "
                    + packed.describe());
        }
        return forwardGeometry(op, new ConvAttrs(a.spatialDims(), a.options()), x, a.weightShape(),
                "packed for " + Arrays.toString(a.weightShape()), bias);
    }

    private static void prepackedKernel(PrepackedAttrs a, Tensor[] in, Tensor out) {
        Tensor bias = in.length > 2 ? in[2] : null;
        Geometry g = prepackedGeometry(CONV_PREPACKED_OP, a, in[0], in[1], bias);
        if (out.numel() == 0) {
            return;
        }
        ConvOptions o = a.options();
        try (Tensor xc = in[0].contiguous(); Tensor pc = in[1].contiguous();
             Tensor bc = bias == null ? null : bias.contiguous()) {
            int status = NativeCpu.ct_cpu_conv_forward_packed(DType.FLOAT32.code(), o.layout().code(),
                    NativeArgs.get().put(g.array()), xc.dataAddress(), pc.dataAddress(), pc.numel(),
                    bc == null ? 0 : bc.dataAddress(), o.activation().code(), out.dataAddress(), 0);
            if (status != 0) {
                throw CpuBackend.failure(status, "conv_prepacked(x " + in[0].describe() + ", weight packed for "
                        + Arrays.toString(a.weightShape()) + ", " + o + ")");
            }
        }
    }

    private static void transposeKernel(ConvAttrs a, Tensor[] in, Tensor out) {
        Tensor bias = in.length > 2 ? in[2] : null;
        Geometry g = transposeGeometry(CONV_TRANSPOSE_OP, a, in[0], in[1], bias);
        if (out.numel() == 0) {
            return;
        }
        ConvOptions o = a.options();
        Launch run = Launch.on(out);
        int algo = algorithmCode("conv_transpose", in, o, run);
        try (Tensor xc = in[0].contiguous(); Tensor wc = in[1].contiguous()) {
            NativeArgs args = NativeArgs.get();
            int dt = in[0].dtype().code();
            int layout = o.layout().code();
            int status = useCudnn(run, o, g) ? cudnnBackwardData(a.spatialDims(), o, g, xc, wc, out)
                    : dispatch(run, 1, in[0], o, g, algo, code -> run.kernels.convBackwardData(dt, layout, code,
                            args.put(g.array()), xc.dataAddress(), wc.dataAddress(), out.dataAddress(), run.stream));
            if (status != 0) {
                throw run.failure(status, describe("conv_transpose", in, o));
            }
        }
        if (bias != null) {
            long[] bd = new long[a.spatialDims() + 1];
            Arrays.fill(bd, 1);
            bd[o.layout() == DataLayout.NCHW ? 0 : a.spatialDims()] = g.c;
            try (Tensor bv = bias.reshape(bd); Tensor sum = Elementwise.add(out, bv)) {
                out.copyFrom(sum);
            }
        }
    }

    private static void backwardDataKernel(BackwardDataAttrs a, Tensor[] in, Tensor out) {
        Geometry g = backwardDataGeometry(CONV_BACKWARD_DATA_OP, a, in[0], in[1]);
        if (out.numel() == 0) {
            return;
        }
        ConvOptions o = a.options();
        Launch run = Launch.on(out);
        int algo = algorithmCode("conv_backward_data", in, o, run);
        try (Tensor dyc = in[0].contiguous(); Tensor wc = in[1].contiguous()) {
            NativeArgs args = NativeArgs.get();
            int dt = in[0].dtype().code();
            int layout = o.layout().code();
            int status = useCudnn(run, o, g) ? cudnnBackwardData(a.spatialDims(), o, g, dyc, wc, out)
                    : dispatch(run, 1, in[0], o, g, algo, code -> run.kernels.convBackwardData(dt, layout, code,
                            args.put(g.array()), dyc.dataAddress(), wc.dataAddress(), out.dataAddress(), run.stream));
            if (status != 0) {
                throw run.failure(status, describe("conv_backward_data", in, o));
            }
        }
    }

    private static void backwardWeightKernel(BackwardWeightAttrs a, Tensor[] in, Tensor[] out) {
        Geometry g = backwardWeightGeometry(CONV_BACKWARD_WEIGHT_OP, a, in[0], in[1]);
        if (out[0].numel() == 0) {
            return;
        }
        ConvOptions o = a.options();
        Launch run = Launch.on(out[0]);
        int algo = algorithmCode("conv_backward_weight", in, o, run);
        try (Tensor xc = in[0].contiguous(); Tensor dyc = in[1].contiguous()) {
            if (useCudnn(run, o, g)) {
                Cudnn.backwardWeight(out[0].device(), in[0].dtype(), o.layout() == DataLayout.NHWC, a.spatialDims(),
                        g.array(), xc.dataAddress(), dyc.dataAddress(), out[0].dataAddress());
                if (a.bias()) {
                    int s = a.spatialDims();
                    int[] axes = new int[s + 1];
                    for (int i = 0; i < axes.length; i++) {
                        axes[i] = o.layout() == DataLayout.NCHW ? (i == 0 ? 0 : i + 1) : i;
                    }
                    try (Tensor db = Reductions.sum(dyc, false, axes)) {
                        out[1].copyFrom(db);
                    }
                }
                return;
            }
            NativeArgs args = NativeArgs.get();
            int dt = in[0].dtype().code();
            int layout = o.layout().code();
            long db = a.bias() ? out[1].dataAddress() : 0;
            int status = dispatch(run, 2, in[0], o, g, algo, code -> run.kernels.convBackwardWeight(dt, layout, code,
                    args.put(g.array()), xc.dataAddress(), dyc.dataAddress(), out[0].dataAddress(), db, run.stream));
            if (status != 0) {
                throw run.failure(status, describe("conv_backward_weight", in, o));
            }
        }
    }
}
