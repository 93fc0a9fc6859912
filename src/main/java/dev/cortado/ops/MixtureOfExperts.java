package dev.cortado.ops;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.function.Supplier;

/**
 * The mixture-of-experts kernel family: routing with a capacity ({@code moe_route}), the
 * permutations between token order and the expert-major buffer ({@code moe_dispatch},
 * {@code moe_gather}, {@code moe_combine} and its backward), and the grouped GEMM that runs every
 * expert's matmul in one call ({@code grouped_matmul} and its backward). Kernels:
 * {@code native/cpu/moe.cpp} and {@code native/cuda/moe.cu} (contract in
 * {@code native/include/cortado/moe.h}).
 *
 * <p>A routing of {@code T} tokens with {@code k} choices each is {@code slots} (int64
 * {@code [T, k]}: the row of the expert-major buffer that receives choice j of token t, or -1 when
 * the expert was full and the choice was dropped) with {@code counts} (int64 {@code [experts]}:
 * the rows of each expert, in expert order; expert e's rows start at the sum of the counts before
 * it). The buffer has {@code rows >= T k} rows; the rows past the sum of the counts are padding.
 * The module built on these ops is {@code dev.cortado.nn.MixtureOfExpertsLayer}.
 * dtypes: float32, float64 and bfloat16 for the permutations; float32 and float64 for the GEMM.
 */
public final class MixtureOfExperts {
    private MixtureOfExperts() {
    }

    /**
     * Routing options.
     *
     * @param experts the number of experts (at least 1, at least k)
     * @param capacity the most choices an expert keeps (at least 1); later ones are dropped
     */
    public record Route(int experts, long capacity) {
        /** Checks the options. */
        public Route {
            if (experts < 1) {
                throw new IllegalArgumentException("moe_route: experts = " + experts + ", need at least 1");
            }
            if (capacity < 1) {
                throw new IllegalArgumentException("moe_route: capacity = " + capacity + ", need at least 1");
            }
        }
    }

    /**
     * The size of the expert-major buffer a dispatch writes.
     *
     * @param rows its number of rows (at least tokens x k for any routing)
     */
    public record Rows(long rows) {
        /** Checks the size. */
        public Rows {
            if (rows < 0) {
                throw new IllegalArgumentException("moe_dispatch: rows = " + rows + " is negative");
            }
        }
    }

    private static final DType[] FLOATS = {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16};
    private static final DType[] GEMM_FLOATS = {DType.FLOAT32, DType.FLOAT64};

    /** moe_route: top-k expert ids [T, k] to (slots [T, k], counts [E], load [E]), all int64. */
    public static final Op<Route> ROUTE_OP = Op.<Route>declare("moe_route")
            .inputs("expert_ids")
            .shape((op, a, in) -> {
                Tensor ids = in[0];
                if (ids.dtype() != DType.INT64 || ids.rank() != 2) {
                    throw op.error("expert_ids " + ids.describe() + " must be int64 [tokens, k]");
                }
                if (ids.size(1) > a.experts()) {
                    throw op.error("k = " + ids.size(1) + " (expert_ids " + ids.describe() + ") exceeds the "
                            + a.experts() + " experts");
                }
                Shape e = Shape.of(a.experts());
                return new TensorSpec[] {new TensorSpec(ids.shape(), DType.INT64), new TensorSpec(e, DType.INT64),
                    new TensorSpec(e, DType.INT64)};
            })
            .kernels((a, in, out) -> {
                Launch l = Launch.on(out[0]);
                try (Tensor ids = in[0].contiguous()) {
                    check(l, l.kernels.moeRoute(ids.size(0), ids.size(1), a.experts(), a.capacity(), ids.dataAddress(),
                            out[0].dataAddress(), out[1].dataAddress(), out[2].dataAddress(), l.stream),
                            () -> "moe_route(expert_ids " + ids.describe() + ", experts " + a.experts() + ", capacity "
                                    + a.capacity() + ")");
                }
            })
            .register();

    /** moe_dispatch: x [T, d] to the expert-major buffer [rows, d] (row slots[t, j] = x[t]). */
    public static final Op<Rows> DISPATCH_OP = Op.<Rows>declare("moe_dispatch")
            .inputs("x", "slots")
            .shape((op, a, in) -> {
                checkTokens(op, "x", in[0], in[1]);
                return Op.one(Shape.of(a.rows(), in[0].size(1)), in[0].dtype());
            })
            .kernels((a, in, out) -> dispatch(in[0], in[1], null, out[0], "moe_dispatch"))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {
                MixtureOfExperts.GATHER_OP.call(null, g[0], sv.input(1)), null})
            .register();

    /** moe_gather: buffer [rows, d] to tokens [T, d], out[t] = sum of the kept rows slots[t, :]. */
    public static final Op<Void> GATHER_OP = Op.<Void>declare("moe_gather")
            .inputs("buf", "slots")
            .shape((op, a, in) -> {
                checkBuffer(op, "buf", in[0], in[1]);
                return Op.one(Shape.of(in[1].size(0), in[0].size(1)), in[0].dtype());
            })
            .kernels((a, in, out) -> combine(in[0], in[1], null, out[0], "moe_gather"))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {
                MixtureOfExperts.DISPATCH_OP.call(new Rows(sv.inputShape(0).size(0)), g[0], sv.input(1)), null})
            .register();

    /** moe_combine: expert outputs [rows, d] to tokens [T, d], weighted by the gates [T, k]. */
    public static final Op<Void> COMBINE_OP = Op.<Void>declare("moe_combine")
            .inputs("y", "slots", "gates")
            .shape((op, a, in) -> {
                checkBuffer(op, "y", in[0], in[1]);
                checkGates(op, in[2], in[1], in[0].dtype());
                return Op.one(Shape.of(in[1].size(0), in[0].size(1)), in[0].dtype());
            })
            .kernels((a, in, out) -> combine(in[0], in[1], in[2], out[0], "moe_combine"))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> {
                Tensor[] d = MixtureOfExperts.COMBINE_BACKWARD_OP.callMulti(null, g[0], sv.input(0), sv.input(1),
                        sv.input(2));
                return new Tensor[] {d[0], null, d[1]};
            })
            .register();

    /** moe_combine_backward: (dy [rows, d], dgates [T, k]) from dout [T, d]. */
    public static final Op<Void> COMBINE_BACKWARD_OP = Op.<Void>declare("moe_combine_backward")
            .inputs("dout", "y", "slots", "gates")
            .shape((op, a, in) -> {
                checkBuffer(op, "y", in[1], in[2]);
                checkGates(op, in[3], in[2], in[1].dtype());
                checkTokens(op, "dout", in[0], in[2]);
                if (in[0].dtype() != in[1].dtype() || in[0].size(1) != in[1].size(1)) {
                    throw op.error("dout " + in[0].describe() + " must have the dtype and width of y " + in[1].describe());
                }
                return new TensorSpec[] {new TensorSpec(in[1].shape(), in[1].dtype()),
                    new TensorSpec(in[3].shape(), in[1].dtype())};
            })
            .kernels((a, in, out) -> {
                dispatch(in[0], in[2], in[3], out[0], "moe_combine_backward");
                Launch l = Launch.on(out[1]);
                try (Tensor g = in[0].contiguous(); Tensor y = in[1].contiguous(); Tensor s = in[2].contiguous()) {
                    check(l, l.kernels.moeGateGrad(y.dtype().code(), s.size(0), s.size(1), y.size(1), y.size(0),
                            s.dataAddress(), g.dataAddress(), y.dataAddress(), out[1].dataAddress(), l.stream),
                            () -> "moe_combine_backward(dout " + g.describe() + ", y " + y.describe() + ", slots "
                                    + s.describe() + ")");
                }
            })
            .register();

    /** grouped_matmul: x [rows, K] times w [E, K, N], expert e on its rows: [rows, N]. */
    public static final Op<Void> GROUPED_MATMUL_OP = Op.<Void>declare("grouped_matmul")
            .inputs("x", "w", "counts")
            .shape((op, a, in) -> {
                checkGrouped(op, in[0], in[1], in[2]);
                return Op.one(Shape.of(in[0].size(0), in[1].size(2)), in[0].dtype());
            })
            .kernels((a, in, out) -> {
                Launch l = Launch.on(out[0]);
                try (Tensor x = in[0].contiguous(); Tensor w = in[1].contiguous(); Tensor c = in[2].contiguous()) {
                    check(l, l.kernels.groupedGemm(x.dtype().code(), w.size(0), x.size(0), x.size(1), w.size(2), 0,
                            c.dataAddress(), x.dataAddress(), w.dataAddress(), out[0].dataAddress(), l.stream),
                            () -> "grouped_matmul(x " + x.describe() + ", w " + w.describe() + ", counts " + c.describe() + ")");
                }
            })
            .backward(Op.Saves.INPUTS, (a, sv, g) -> {
                Tensor[] d = MixtureOfExperts.GROUPED_MATMUL_BACKWARD_OP.callMulti(null, sv.input(0), sv.input(1),
                        sv.input(2), g[0]);
                return new Tensor[] {d[0], d[1], null};
            })
            .register();

    /** grouped_matmul_backward: (dx = dy w_e^T on each group's rows, dw_e = x_e^T dy_e). */
    public static final Op<Void> GROUPED_MATMUL_BACKWARD_OP = Op.<Void>declare("grouped_matmul_backward")
            .inputs("x", "w", "counts", "dy")
            .shape((op, a, in) -> {
                checkGrouped(op, in[0], in[1], in[2]);
                Tensor dy = in[3];
                if (dy.dtype() != in[0].dtype() || dy.rank() != 2 || dy.size(0) != in[0].size(0)
                        || dy.size(1) != in[1].size(2)) {
                    throw op.error("dy " + dy.describe() + " must be " + in[0].dtype() + " [" + in[0].size(0) + ", "
                            + in[1].size(2) + "] for x " + in[0].describe() + " and w " + in[1].describe());
                }
                return new TensorSpec[] {new TensorSpec(in[0].shape(), in[0].dtype()),
                    new TensorSpec(in[1].shape(), in[0].dtype())};
            })
            .kernels((a, in, out) -> {
                Launch l = Launch.on(out[0]);
                try (Tensor x = in[0].contiguous(); Tensor w = in[1].contiguous(); Tensor c = in[2].contiguous();
                     Tensor dy = in[3].contiguous()) {
                    Supplier<String> ctx = () -> "grouped_matmul_backward(x " + x.describe() + ", w " + w.describe()
                            + ", counts " + c.describe() + ", dy " + dy.describe() + ")";
                    long e = w.size(0);
                    long k = x.size(1);
                    long n = w.size(2);
                    check(l, l.kernels.groupedGemm(x.dtype().code(), e, x.size(0), n, k, 1, c.dataAddress(),
                            dy.dataAddress(), w.dataAddress(), out[0].dataAddress(), l.stream), ctx);
                    check(l, l.kernels.groupedGemmWgrad(x.dtype().code(), e, x.size(0), k, n, c.dataAddress(),
                            x.dataAddress(), dy.dataAddress(), out[1].dataAddress(), l.stream), ctx);
                }
            })
            .register();

    // ------------------------------------------------------------------ entry points
    /**
     * Routes the top-k choices {@code expertIds [T, k]} with the given capacity per expert.
     *
     * @return {slots [T, k], counts [experts], load [experts]} (int64): the buffer row of every choice
     *     (-1 when dropped), the kept rows per expert, and the choices per expert before dropping
     */
    public static Tensor[] route(Tensor expertIds, int experts, long capacity) {
        return ROUTE_OP.callMulti(new Route(experts, capacity), expertIds);
    }

    /** The expert-major buffer {@code [rows, d]} of the tokens {@code x [T, d]} under {@code slots}. */
    public static Tensor dispatch(Tensor x, Tensor slots, long rows) {
        return DISPATCH_OP.call(new Rows(rows), x, slots);
    }

    /** The tokens {@code [T, d]} back from the expert outputs {@code y [rows, d]}, weighted by {@code gates [T, k]}. */
    public static Tensor combine(Tensor y, Tensor slots, Tensor gates) {
        return COMBINE_OP.call(null, y, slots, gates);
    }

    /** Each expert's rows of {@code x [rows, K]} times its weight {@code w[e] [K, N]}: {@code [rows, N]}. */
    public static Tensor groupedMatmul(Tensor x, Tensor w, Tensor counts) {
        return GROUPED_MATMUL_OP.call(null, x, w, counts);
    }

    /**
     * The capacity of each expert for {@code tokens} tokens with {@code k} choices each:
     * {@code ceil(factor * tokens * k / experts)}, at least 1; a factor of 0 or less keeps every choice.
     */
    public static long capacity(double factor, long tokens, int k, int experts) {
        if (!(factor > 0) || Double.isInfinite(factor)) {
            return Math.max(1, tokens * k);
        }
        return Math.max(1, (long) Math.ceil(factor * tokens * k / experts));
    }

    // ------------------------------------------------------------------ checks and kernel bodies
    private static void checkSlots(Op<?> op, Tensor slots) {
        if (slots.dtype() != DType.INT64 || slots.rank() != 2) {
            throw op.error("slots " + slots.describe() + " must be int64 [tokens, k]");
        }
    }

    private static void checkTokens(Op<?> op, String name, Tensor x, Tensor slots) {
        op.requireDType(name, x, FLOATS);
        checkSlots(op, slots);
        if (x.rank() != 2 || x.size(0) != slots.size(0)) {
            throw op.error(name + " " + x.describe() + " must be [tokens, d] with tokens = " + slots.size(0)
                    + " (slots " + slots.describe() + ")");
        }
    }

    private static void checkBuffer(Op<?> op, String name, Tensor buf, Tensor slots) {
        op.requireDType(name, buf, FLOATS);
        checkSlots(op, slots);
        if (buf.rank() != 2) {
            throw op.error(name + " " + buf.describe() + " must be a buffer [rows, d]");
        }
    }

    private static void checkGates(Op<?> op, Tensor gates, Tensor slots, DType dtype) {
        if (gates.dtype() != dtype || !gates.shape().equals(slots.shape())) {
            throw op.error("gates " + gates.describe() + " must be " + dtype + " of the shape of slots " + slots.describe());
        }
    }

    private static void checkGrouped(Op<?> op, Tensor x, Tensor w, Tensor counts) {
        op.requireDType("x", x, GEMM_FLOATS);
        if (x.rank() != 2) {
            throw op.error("x " + x.describe() + " must be [rows, K]");
        }
        if (w.dtype() != x.dtype() || w.rank() != 3 || w.size(1) != x.size(1)) {
            throw op.error("w " + w.describe() + " must be " + x.dtype() + " [experts, " + x.size(1) + ", N] for x "
                    + x.describe());
        }
        if (counts.dtype() != DType.INT64 || counts.rank() != 1 || counts.size(0) != w.size(0)) {
            throw op.error("counts " + counts.describe() + " must be int64 [" + w.size(0) + "] (one per expert of w "
                    + w.describe() + ")");
        }
    }

    private static void dispatch(Tensor x0, Tensor slots0, Tensor gates0, Tensor out, String name) {
        Launch l = Launch.on(out);
        try (Tensor x = x0.contiguous(); Tensor s = slots0.contiguous();
             Tensor g = gates0 == null ? null : gates0.contiguous()) {
            check(l, l.kernels.moeDispatch(x.dtype().code(), s.size(0), s.size(1), x.size(1), out.size(0), s.dataAddress(),
                    g == null ? 0L : g.dataAddress(), x.dataAddress(), out.dataAddress(), l.stream),
                    () -> name + "(" + x.describe() + ", slots " + s.describe() + ", rows " + out.size(0) + ")");
        }
    }

    private static void combine(Tensor y0, Tensor slots0, Tensor gates0, Tensor out, String name) {
        Launch l = Launch.on(out);
        try (Tensor y = y0.contiguous(); Tensor s = slots0.contiguous();
             Tensor g = gates0 == null ? null : gates0.contiguous()) {
            check(l, l.kernels.moeCombine(y.dtype().code(), s.size(0), s.size(1), y.size(1), y.size(0), s.dataAddress(),
                    g == null ? 0L : g.dataAddress(), y.dataAddress(), out.dataAddress(), l.stream),
                    () -> name + "(" + y.describe() + ", slots " + s.describe() + ")");
        }
    }

    private static void check(Launch l, int status, Supplier<String> context) {
        if (status != 0) {
            throw l.failure(status, context.get());
        }
    }
}
