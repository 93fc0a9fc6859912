package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Reductions along any set of axes, with keepdim: sum, mean, max, min, argmax, argmin, var,
 * prod. Kernels: {@code native/cpu/reduce.cpp}, {@code native/cuda/reduce.cu}. The input's
 * dimensions are split into kept (outer) and reduced (inner) groups, each coalesced, so one
 * native entry covers every axis set and any strides.
 */
public final class Reductions {
    private Reductions() {
    }

    /**
     * Axes (empty = all), keepdim, and for var the correction (1 = unbiased).
     */
    public record Axes(int[] axes, boolean keepdim, double correction) {
        public Axes {
            axes = axes.clone();
        }

        public static Axes all() {
            return new Axes(new int[0], false, 0);
        }

        public static Axes of(boolean keepdim, int... axes) {
            return new Axes(axes, keepdim, 0);
        }
    }

    private static final int SUM = NativeCodes.Reduce.SUM, MEAN = NativeCodes.Reduce.MEAN, MAX = NativeCodes.Reduce.MAX,
            MIN = NativeCodes.Reduce.MIN, ARGMAX = NativeCodes.Reduce.ARGMAX, ARGMIN = NativeCodes.Reduce.ARGMIN,
            VAR = NativeCodes.Reduce.VAR, PROD = NativeCodes.Reduce.PROD;

    public static final Op<Axes> SUM_OP = reduction(SUM);
    public static final Op<Axes> MEAN_OP = reduction(MEAN);
    public static final Op<Axes> MAX_OP = reduction(MAX);
    public static final Op<Axes> MIN_OP = reduction(MIN);
    public static final Op<Axes> ARGMAX_OP = reduction(ARGMAX);
    public static final Op<Axes> ARGMIN_OP = reduction(ARGMIN);
    public static final Op<Axes> VAR_OP = reduction(VAR);
    public static final Op<Axes> PROD_OP = reduction(PROD);

    // ------------------------------------------------------------------ eager entry points
    /** Sum of all elements (a 0-dim tensor). */
    public static Tensor sum(Tensor x) {
        return SUM_OP.call(Axes.all(), x);
    }

    public static Tensor sum(Tensor x, boolean keepdim, int... axes) {
        return SUM_OP.call(new Axes(axes, keepdim, 0), x);
    }

    public static Tensor mean(Tensor x) {
        return MEAN_OP.call(Axes.all(), x);
    }

    public static Tensor mean(Tensor x, boolean keepdim, int... axes) {
        return MEAN_OP.call(new Axes(axes, keepdim, 0), x);
    }

    public static Tensor max(Tensor x) {
        return MAX_OP.call(Axes.all(), x);
    }

    public static Tensor max(Tensor x, boolean keepdim, int... axes) {
        return MAX_OP.call(new Axes(axes, keepdim, 0), x);
    }

    public static Tensor min(Tensor x) {
        return MIN_OP.call(Axes.all(), x);
    }

    public static Tensor min(Tensor x, boolean keepdim, int... axes) {
        return MIN_OP.call(new Axes(axes, keepdim, 0), x);
    }

    /** Index of the maximum along {@code axis} (first occurrence; NaN counts as maximal), int64. */
    public static Tensor argmax(Tensor x, int axis, boolean keepdim) {
        return ARGMAX_OP.call(new Axes(new int[] {axis}, keepdim, 0), x);
    }

    /** Flat index of the maximum of all elements. */
    public static Tensor argmax(Tensor x) {
        return ARGMAX_OP.call(Axes.all(), x);
    }

    public static Tensor argmin(Tensor x, int axis, boolean keepdim) {
        return ARGMIN_OP.call(new Axes(new int[] {axis}, keepdim, 0), x);
    }

    /** Flat index of the minimum of all elements. */
    public static Tensor argmin(Tensor x) {
        return ARGMIN_OP.call(Axes.all(), x);
    }

    /** Variance with Bessel's correction {@code correction} (1 = unbiased, 0 = population). */
    public static Tensor var(Tensor x, double correction, boolean keepdim, int... axes) {
        return VAR_OP.call(new Axes(axes, keepdim, correction), x);
    }

    public static Tensor prod(Tensor x, boolean keepdim, int... axes) {
        return PROD_OP.call(new Axes(axes, keepdim, 0), x);
    }

    // ------------------------------------------------------------------ rules
    /** reduced[d] is true when dimension d is reduced; empty axes reduce everything. */
    private static boolean[] reducedDims(Op<?> op, Axes a, int rank) {
        boolean[] reduced = new boolean[rank];
        if (a.axes().length == 0) {
            Arrays.fill(reduced, true);
            return reduced;
        }
        for (int axis : a.axes()) {
            int d;
            try {
                d = Shape.normalize(axis, rank);
            } catch (IndexOutOfBoundsException e) {
                throw op.error("axis " + axis + " is out of range for rank " + rank + " (axes "
                        + Arrays.toString(a.axes()) + ")");
            }
            if (reduced[d]) {
                throw op.error("axis " + axis + " is repeated in " + Arrays.toString(a.axes()));
            }
            reduced[d] = true;
        }
        return reduced;
    }

    private static DType outputType(Op<?> op, int code, Tensor x) {
        DType t = x.dtype();
        if (t.isPacked()) {
            throw op.error("packed int4 input must be unpacked first: " + x.describe());
        }
        return switch (code) {
            case ARGMAX, ARGMIN -> {
                if (t == DType.BOOL) {
                    throw op.error("does not take bool input " + x.describe());
                }
                yield DType.INT64;
            }
            case SUM, PROD -> t.isFloatingPoint() ? t : DType.INT64;
            case MEAN, VAR -> {
                if (!t.isFloatingPoint()) {
                    throw op.error("needs a floating-point input, got " + x.describe() + "; convert with to(DType.FLOAT32)");
                }
                yield t;
            }
            default -> {
                if (t == DType.BOOL) {
                    throw op.error("does not take bool input " + x.describe());
                }
                yield t;
            }
        };
    }

    /** A reduction: its name is its line's in native/include/cortado/ops/reduce.def (the one list). */
    private static Op<Axes> reduction(int code) {
        String name = NativeCodes.Reduce.name(code);
        return Op.<Axes>declare(name)
                .inputs("x")
                .shape((op, a, in) -> {
                    Tensor x = in[0];
                    if ((code == ARGMAX || code == ARGMIN) && a.axes().length > 1) {
                        throw op.error("takes one axis, got " + Arrays.toString(a.axes()));
                    }
                    boolean[] reduced = reducedDims(op, a, x.rank());
                    long[] dims = x.dims();
                    long reducedCount = 1;
                    int kept = 0;
                    for (int d = 0; d < dims.length; d++) {
                        if (reduced[d]) {
                            reducedCount *= dims[d];
                        } else {
                            kept++;
                        }
                    }
                    if (reducedCount == 0 && code != SUM && code != PROD && code != MEAN && code != VAR) {
                        throw op.error("cannot reduce an empty set of elements: " + x.describe() + ", axes "
                                + Arrays.toString(a.axes()));
                    }
                    long[] out = new long[a.keepdim() ? dims.length : kept];
                    for (int d = 0, j = 0; d < dims.length; d++) {
                        if (!reduced[d]) {
                            out[j++] = dims[d];
                        } else if (a.keepdim()) {
                            out[j++] = 1;
                        }
                    }
                    return Op.one(Shape.of(out), outputType(op, code, x));
                })
                .kernels((a, in, out) -> reduceKernel(name, code, a, in[0], out[0]))
                .backward(code == SUM || code == MEAN ? Op.Saves.NOTHING : code == VAR ? Op.Saves.INPUTS
                        : Op.Saves.INPUTS_AND_OUTPUTS, (a, sv, g) -> new Tensor[] {reductionGrad(code, a, sv, g[0])})
                .register();
    }

    // ------------------------------------------------------------------ backward rules

    /**
     * The gradient of a reduction, broadcast back over the reduced dimensions: sum 1, mean 1/n,
     * var 2(x - mean)/(n - correction), max/min split evenly among the elements equal to the
     * result, prod y/x (NaN where x is 0). Arg reductions have integer outputs and no gradient.
     */
    private static Tensor reductionGrad(int code, Axes a, Op.Saved sv, Tensor g) {
        Shape in = sv.inputShape(0);
        boolean[] reduced = reducedDims(SUM_OP, a, in.rank());
        long[] keep = in.toArray();
        long count = 1;
        for (int d = 0; d < keep.length; d++) {
            if (reduced[d]) {
                count *= keep[d];
                keep[d] = 1;
            }
        }
        try (Scope s = Scope.open()) {
            Tensor gk = g.reshape(keep);
            Tensor r = switch (code) {
                case SUM -> gk.expand(in.toArray());
                case MEAN -> Elementwise.mul(gk.expand(in.toArray()), 1.0 / count);
                case VAR -> {
                    Tensor x = sv.input(0);
                    Tensor centered = Elementwise.sub(x, mean(x, true, reducedAxes(reduced)));
                    yield Elementwise.mul(Elementwise.mul(centered, gk), 2.0 / (count - a.correction()));
                }
                case MAX, MIN -> {
                    Tensor x = sv.input(0);
                    Tensor hit = Elementwise.eq(x, sv.output(0).reshape(keep)).to(g.dtype());
                    Tensor ties = sum(hit, true, reducedAxes(reduced));
                    yield Elementwise.mul(hit, Elementwise.div(gk, ties));
                }
                case PROD -> Elementwise.mul(gk, Elementwise.div(sv.output(0).reshape(keep), sv.input(0)));
                default -> throw new IllegalStateException("no gradient for reduction code " + code);
            };
            return s.keep(r.contiguous());
        }
    }

    private static int[] reducedAxes(boolean[] reduced) {
        int n = 0;
        for (boolean r : reduced) {
            n += r ? 1 : 0;
        }
        int[] axes = new int[n];
        for (int d = 0, j = 0; d < reduced.length; d++) {
            if (reduced[d]) {
                axes[j++] = d;
            }
        }
        return axes;
    }

    /** Merges neighbouring dims of one group where {@code outer stride == inner stride * inner size}. */
    private static int coalesce(long[] shape, long[][] strides, int n) {
        int m = 0;
        for (int d = 0; d < n; d++) {
            if (shape[d] == 1) {
                continue;
            }
            if (m > 0) {
                boolean merge = true;
                for (long[] s : strides) {
                    merge &= s[m - 1] == s[d] * shape[d];
                }
                if (merge) {
                    shape[m - 1] *= shape[d];
                    for (long[] s : strides) {
                        s[m - 1] = s[d];
                    }
                    continue;
                }
            }
            shape[m] = shape[d];
            for (long[] s : strides) {
                s[m] = s[d];
            }
            m++;
        }
        return m;
    }

    private static void reduceKernel(String name, int code, Axes a, Tensor x, Tensor out) {
        if (out.numel() == 0) {
            return;
        }
        int rank = x.rank();
        boolean[] reduced = reducedDims(null, a, rank);
        long[] dims = x.dims();
        long[] xs = x.strides();
        // Output strides per input dimension (0 for reduced ones), from the contiguous output.
        long[] outStridesFull = new long[rank];
        long[] os = out.strides();
        for (int d = 0, j = 0; d < rank; d++) {
            if (!reduced[d]) {
                outStridesFull[d] = os[a.keepdim() ? d : j++];
            }
        }
        long[] outerShape = new long[rank];
        long[] outerIn = new long[rank];
        long[] outerOut = new long[rank];
        long[] innerShape = new long[rank];
        long[] innerIn = new long[rank];
        int no = 0;
        int ni = 0;
        for (int d = 0; d < rank; d++) {
            if (reduced[d]) {
                innerShape[ni] = dims[d];
                innerIn[ni++] = xs[d];
            } else {
                outerShape[no] = dims[d];
                outerIn[no] = xs[d];
                outerOut[no++] = outStridesFull[d];
            }
        }
        no = coalesce(outerShape, new long[][] {outerIn, outerOut}, no);
        ni = coalesce(innerShape, new long[][] {innerIn}, ni);
        if (no > 8 || ni > 8) {
            throw new UnsupportedOperationException(name + ": too many non-mergeable dimensions in " + x.describe());
        }
        NativeArgs args = NativeArgs.get();
        long pOuterShape = args.put(outerShape, no);
        long pOuterIn = args.put(outerIn, no);
        long pOuterOut = args.put(outerOut, no);
        long pInnerShape = args.put(innerShape, ni);
        long pInnerIn = args.put(innerIn, ni);
        Launch l = Launch.on(out);
        int status = l.kernels.reduce(code, x.dtype().code(), out.dtype().code(), no, pOuterShape, pOuterIn,
                pOuterOut, ni, pInnerShape, pInnerIn, x.dataAddress(), out.dataAddress(), a.correction(),
                l.stream);
        if (status != 0) {
            String ctx = name + "(" + x.describe() + ", axes " + Arrays.toString(a.axes()) + ")";
            throw l.failure(status, ctx);
        }
    }
}
