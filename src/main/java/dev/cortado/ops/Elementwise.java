package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeCodes.Binary;
import dev.cortado.backend.kernels.NativeCodes.Unary;
import dev.cortado.ops.Op.Saves;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * Elementwise ops: unary maps, binary arithmetic and comparisons with broadcasting and type
 * promotion, where, clamp. Kernels: {@code native/cpu/elementwise.cpp} and
 * {@code native/cuda/elementwise.cu} (one native entry per arity, the op as a code).
 *
 * <p>Dtype rules (as PyTorch): binary ops compute in the promoted dtype of their inputs;
 * {@code div} is true division (integers give float32); comparisons give bool; transcendental
 * unary ops on integers give float32.
 */
public final class Elementwise {
    private Elementwise() {
    }

    /** Parameters of a unary op (clamp bounds, exponent, affine scale and shift). */
    public record Params(double p0, double p1) {
        static final Params NONE = new Params(0, 0);
    }

    /** How a unary op treats dtypes. */
    private enum UnaryKind {
        /** floating result; integer and bool inputs compute in float32 */
        FLOATING,
        /** keeps any numeric dtype */
        NUMERIC,
        /** bool only */
        LOGICAL
    }

    /** How a binary op treats dtypes. */
    private enum BinaryKind {
        ARITHMETIC, TRUE_DIVIDE, COMPARISON, LOGICAL
    }

    // ------------------------------------------------------------------ declarations
    public static final Op<Params> NEG_OP = unary(Unary.NEG, UnaryKind.NUMERIC, Saves.NOTHING,
            (p, sv, g) -> grads(neg(g[0])));
    public static final Op<Params> ABS_OP = unary(Unary.ABS, UnaryKind.NUMERIC, Saves.INPUTS,
            (p, sv, g) -> grads(mulMask(g[0], sv.input(0), 0, 1, -1)));
    public static final Op<Params> EXP_OP = unary(Unary.EXP, UnaryKind.FLOATING, Saves.OUTPUTS,
            (p, sv, g) -> grads(mul(g[0], sv.output(0))));
    public static final Op<Params> LOG_OP = unary(Unary.LOG, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(div(g[0], sv.input(0))));
    public static final Op<Params> SQRT_OP = unary(Unary.SQRT, UnaryKind.FLOATING, Saves.OUTPUTS,
            (p, sv, g) -> grads(scaled(0.5, g[0], sv.output(0), -1)));
    public static final Op<Params> RSQRT_OP = unary(Unary.RSQRT, UnaryKind.FLOATING, Saves.OUTPUTS,
            (p, sv, g) -> grads(scaled(-0.5, g[0], sv.output(0), 3)));
    public static final Op<Params> TANH_OP = unary(Unary.TANH, UnaryKind.FLOATING, Saves.OUTPUTS,
            (p, sv, g) -> grads(timesOneMinus(g[0], sv.output(0), sv.output(0))));
    public static final Op<Params> SIGMOID_OP = unary(Unary.SIGMOID, UnaryKind.FLOATING, Saves.OUTPUTS,
            (p, sv, g) -> grads(timesOneMinus(g[0], sv.output(0), null)));
    public static final Op<Params> RELU_OP = unary(Unary.RELU, UnaryKind.NUMERIC, Saves.OUTPUTS,
            (p, sv, g) -> grads(Elementwise.RELU_GRAD_OP.call(null, g[0], sv.output(0))));
    public static final Op<Params> GELU_OP = unary(Unary.GELU_ERF, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(Elementwise.GELU_GRAD_OP.call(null, g[0], sv.input(0))));
    public static final Op<Params> GELU_TANH_OP = unary(Unary.GELU_TANH, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(Elementwise.GELU_TANH_GRAD_OP.call(null, g[0], sv.input(0))));
    public static final Op<Params> SILU_OP = unary(Unary.SILU, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(Elementwise.SILU_GRAD_OP.call(null, g[0], sv.input(0))));
    public static final Op<Params> HARDSWISH_OP = unary(Unary.HARDSWISH, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(Elementwise.HARDSWISH_GRAD_OP.call(null, g[0], sv.input(0))));
    public static final Op<Params> HARDSIGMOID_OP = unary(Unary.HARDSIGMOID, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(Elementwise.HARDSIGMOID_GRAD_OP.call(null, g[0], sv.input(0))));
    public static final Op<Params> MISH_OP = unary(Unary.MISH, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(Elementwise.MISH_GRAD_OP.call(null, g[0], sv.input(0))));
    public static final Op<Params> SOFTPLUS_OP = unary(Unary.SOFTPLUS, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(Elementwise.SOFTPLUS_GRAD_OP.call(null, g[0], sv.input(0))));
    public static final Op<Params> CLAMP_OP = unary(Unary.CLAMP, UnaryKind.NUMERIC, Saves.INPUTS,
            (p, sv, g) -> grads(clampGrad(g[0], sv.input(0), p)));
    public static final Op<Params> LOGICAL_NOT_OP = unary(Unary.NOT, UnaryKind.LOGICAL, Saves.NOTHING, null);
    public static final Op<Params> POW_SCALAR_OP = unary(Unary.POW_SCALAR, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(scaled(p.p0(), g[0], sv.input(0), p.p0() - 1)));
    public static final Op<Params> AFFINE_OP = unary(Unary.AFFINE, UnaryKind.NUMERIC, Saves.NOTHING,
            (p, sv, g) -> grads(mul(g[0], p.p0())));
    public static final Op<Params> RECIPROCAL_OP = unary(Unary.RECIPROCAL, UnaryKind.FLOATING, Saves.OUTPUTS,
            (p, sv, g) -> grads(scaled(-1, g[0], sv.output(0), 2)));
    public static final Op<Params> SIN_OP = unary(Unary.SIN, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(timesFunction(g[0], sv.input(0), true)));
    public static final Op<Params> COS_OP = unary(Unary.COS, UnaryKind.FLOATING, Saves.INPUTS,
            (p, sv, g) -> grads(timesFunction(g[0], sv.input(0), false)));

    public static final Op<Void> ADD_OP = binary(Binary.ADD, BinaryKind.ARITHMETIC, Saves.NOTHING,
            (a, sv, g) -> new Tensor[] {g[0], g[0]});
    public static final Op<Void> SUB_OP = binary(Binary.SUB, BinaryKind.ARITHMETIC, Saves.NOTHING,
            (a, sv, g) -> new Tensor[] {g[0], sv.needsGradient(1) ? neg(g[0]) : null});
    public static final Op<Void> MUL_OP = binary(Binary.MUL, BinaryKind.ARITHMETIC, Saves.INPUTS, (a, sv, g) -> new Tensor[] {
            sv.needsGradient(0) ? mul(g[0], sv.input(1)) : null, sv.needsGradient(1) ? mul(g[0], sv.input(0)) : null});
    public static final Op<Void> DIV_OP = binary(Binary.DIV, BinaryKind.TRUE_DIVIDE, Saves.INPUTS_AND_OUTPUTS, Elementwise::divGrad);
    public static final Op<Void> POW_OP = binary(Binary.POW, BinaryKind.ARITHMETIC, Saves.INPUTS_AND_OUTPUTS, Elementwise::powGrad);
    public static final Op<Void> MAXIMUM_OP = binary(Binary.MAX, BinaryKind.ARITHMETIC, Saves.INPUTS,
            (a, sv, g) -> selectGrad(g[0], sv, Elementwise.GE_OP));
    public static final Op<Void> MINIMUM_OP = binary(Binary.MIN, BinaryKind.ARITHMETIC, Saves.INPUTS,
            (a, sv, g) -> selectGrad(g[0], sv, Elementwise.LE_OP));
    public static final Op<Void> EQ_OP = binary(Binary.EQ, BinaryKind.COMPARISON, Saves.NOTHING, null);
    public static final Op<Void> NE_OP = binary(Binary.NE, BinaryKind.COMPARISON, Saves.NOTHING, null);
    public static final Op<Void> LT_OP = binary(Binary.LT, BinaryKind.COMPARISON, Saves.NOTHING, null);
    public static final Op<Void> LE_OP = binary(Binary.LE, BinaryKind.COMPARISON, Saves.NOTHING, null);
    public static final Op<Void> GT_OP = binary(Binary.GT, BinaryKind.COMPARISON, Saves.NOTHING, null);
    public static final Op<Void> GE_OP = binary(Binary.GE, BinaryKind.COMPARISON, Saves.NOTHING, null);
    public static final Op<Void> LOGICAL_AND_OP = binary(Binary.AND, BinaryKind.LOGICAL, Saves.NOTHING, null);
    public static final Op<Void> LOGICAL_OR_OP = binary(Binary.OR, BinaryKind.LOGICAL, Saves.NOTHING, null);
    public static final Op<Void> LOGICAL_XOR_OP = binary(Binary.XOR, BinaryKind.LOGICAL, Saves.NOTHING, null);

    /** Gradients of activations: {@code g * f'(x)} from the output gradient g and the input x. */
    public static final Op<Void> GELU_GRAD_OP = binary(Binary.GELU_ERF_GRAD, BinaryKind.TRUE_DIVIDE, Saves.NOTHING, null);
    public static final Op<Void> GELU_TANH_GRAD_OP = binary(Binary.GELU_TANH_GRAD, BinaryKind.TRUE_DIVIDE,
            Saves.NOTHING, null);
    public static final Op<Void> SILU_GRAD_OP = binary(Binary.SILU_GRAD, BinaryKind.TRUE_DIVIDE, Saves.NOTHING, null);
    public static final Op<Void> HARDSWISH_GRAD_OP = binary(Binary.HARDSWISH_GRAD, BinaryKind.TRUE_DIVIDE,
            Saves.NOTHING, null);
    public static final Op<Void> HARDSIGMOID_GRAD_OP = binary(Binary.HARDSIGMOID_GRAD,
            BinaryKind.TRUE_DIVIDE, Saves.NOTHING, null);
    public static final Op<Void> MISH_GRAD_OP = binary(Binary.MISH_GRAD, BinaryKind.TRUE_DIVIDE, Saves.NOTHING, null);
    public static final Op<Void> SOFTPLUS_GRAD_OP = binary(Binary.SOFTPLUS_GRAD, BinaryKind.TRUE_DIVIDE,
            Saves.NOTHING, null);
    /** ReLU's gradient in one pass: g where y > 0, else 0; differentiable in g (double backward). */
    public static final Op<Void> RELU_GRAD_OP = binary(Binary.RELU_GRAD, BinaryKind.TRUE_DIVIDE, Saves.INPUTS,
            (a, sv, g) -> new Tensor[] {
                sv.needsGradient(0) ? Elementwise.RELU_GRAD_OP.call(null, g[0], sv.input(1)) : null, null});

    public static final Op<Void> WHERE_OP = Op.<Void>declare("where")
            .inputs("condition", "a", "b")
            .shape((op, attrs, in) -> {
                if (in[0].dtype() != DType.BOOL) {
                    throw op.error("condition must be bool, got " + in[0].describe());
                }
                Shape s = op.broadcast(op.broadcast(in[0].shape(), in[1].shape()), in[2].shape());
                return Op.one(s, promoteFor(op, in[1], in[2]));
            })
            .kernels((attrs, in, out) -> where(in, out[0]))
            .backward(Saves.INPUTS, (attrs, sv, g) -> {
                try (Tensor zero = Tensor.scalar(0, g[0].dtype(), g[0].device())) {
                    return new Tensor[] {null, sv.needsGradient(1) ? where(sv.input(0), g[0], zero) : null,
                        sv.needsGradient(2) ? where(sv.input(0), zero, g[0]) : null};
                }
            })
            .register();

    // ------------------------------------------------------------------ eager entry points
    public static Tensor neg(Tensor x) {
        return NEG_OP.call(Params.NONE, x);
    }

    public static Tensor abs(Tensor x) {
        return ABS_OP.call(Params.NONE, x);
    }

    public static Tensor exp(Tensor x) {
        return EXP_OP.call(Params.NONE, x);
    }

    public static Tensor log(Tensor x) {
        return LOG_OP.call(Params.NONE, x);
    }

    public static Tensor sqrt(Tensor x) {
        return SQRT_OP.call(Params.NONE, x);
    }

    public static Tensor rsqrt(Tensor x) {
        return RSQRT_OP.call(Params.NONE, x);
    }

    public static Tensor tanh(Tensor x) {
        return TANH_OP.call(Params.NONE, x);
    }

    public static Tensor sigmoid(Tensor x) {
        return SIGMOID_OP.call(Params.NONE, x);
    }

    public static Tensor relu(Tensor x) {
        return RELU_OP.call(Params.NONE, x);
    }

    /** GELU, exact form: {@code x * Phi(x)} with the normal CDF through erf. */
    public static Tensor gelu(Tensor x) {
        return GELU_OP.call(Params.NONE, x);
    }

    /** GELU, tanh approximation (as GPT-2 and BERT implementations use). */
    public static Tensor geluTanh(Tensor x) {
        return GELU_TANH_OP.call(Params.NONE, x);
    }

    public static Tensor silu(Tensor x) {
        return SILU_OP.call(Params.NONE, x);
    }

    /** Hardswish (MobileNetV3): {@code x * relu6(x + 3) / 6}; gradient 0 below -3, {@code x/3 + 1/2} up to 3, then 1. */
    public static Tensor hardswish(Tensor x) {
        return HARDSWISH_OP.call(Params.NONE, x);
    }

    /** Hardsigmoid: {@code relu6(x + 3) / 6}; gradient 1/6 on (-3, 3), else 0. */
    public static Tensor hardsigmoid(Tensor x) {
        return HARDSIGMOID_OP.call(Params.NONE, x);
    }

    /** Mish: {@code x * tanh(softplus(x))}, softplus(x) = log(1 + e^x). */
    public static Tensor mish(Tensor x) {
        return MISH_OP.call(Params.NONE, x);
    }

    /** Softplus: {@code log(1 + e^x)}, and x itself above 20 (PyTorch's defaults); gradient sigmoid(x). */
    public static Tensor softplus(Tensor x) {
        return SOFTPLUS_OP.call(Params.NONE, x);
    }

    public static Tensor sin(Tensor x) {
        return SIN_OP.call(Params.NONE, x);
    }

    public static Tensor cos(Tensor x) {
        return COS_OP.call(Params.NONE, x);
    }

    public static Tensor reciprocal(Tensor x) {
        return RECIPROCAL_OP.call(Params.NONE, x);
    }

    /** Clamps into [min, max]; NaN stays NaN. Use ±infinity for a one-sided clamp. */
    public static Tensor clamp(Tensor x, double min, double max) {
        if (min > max) {
            throw CLAMP_OP.error("min " + min + " is greater than max " + max);
        }
        return CLAMP_OP.call(new Params(min, max), x);
    }

    public static Tensor logicalNot(Tensor x) {
        return LOGICAL_NOT_OP.call(Params.NONE, x);
    }

    public static Tensor pow(Tensor x, double exponent) {
        return POW_SCALAR_OP.call(new Params(exponent, 0), x);
    }

    /** {@code x * scale + shift} in one pass. */
    public static Tensor affine(Tensor x, double scale, double shift) {
        return AFFINE_OP.call(new Params(scale, shift), x);
    }

    public static Tensor add(Tensor a, Tensor b) {
        return ADD_OP.call(null, a, b);
    }

    public static Tensor add(Tensor a, double b) {
        return scalarOp(ADD_OP, a, b);
    }

    public static Tensor sub(Tensor a, Tensor b) {
        return SUB_OP.call(null, a, b);
    }

    public static Tensor sub(Tensor a, double b) {
        return scalarOp(SUB_OP, a, b);
    }

    public static Tensor mul(Tensor a, Tensor b) {
        return MUL_OP.call(null, a, b);
    }

    public static Tensor mul(Tensor a, double b) {
        return scalarOp(MUL_OP, a, b);
    }

    public static Tensor div(Tensor a, Tensor b) {
        return DIV_OP.call(null, a, b);
    }

    public static Tensor div(Tensor a, double b) {
        return scalarOp(DIV_OP, a, b);
    }

    public static Tensor pow(Tensor a, Tensor b) {
        return POW_OP.call(null, a, b);
    }

    public static Tensor maximum(Tensor a, Tensor b) {
        return MAXIMUM_OP.call(null, a, b);
    }

    public static Tensor minimum(Tensor a, Tensor b) {
        return MINIMUM_OP.call(null, a, b);
    }

    public static Tensor eq(Tensor a, Tensor b) {
        return EQ_OP.call(null, a, b);
    }

    public static Tensor ne(Tensor a, Tensor b) {
        return NE_OP.call(null, a, b);
    }

    public static Tensor lt(Tensor a, Tensor b) {
        return LT_OP.call(null, a, b);
    }

    public static Tensor le(Tensor a, Tensor b) {
        return LE_OP.call(null, a, b);
    }

    public static Tensor gt(Tensor a, Tensor b) {
        return GT_OP.call(null, a, b);
    }

    public static Tensor gt(Tensor a, double b) {
        return scalarOp(GT_OP, a, b);
    }

    public static Tensor ge(Tensor a, Tensor b) {
        return GE_OP.call(null, a, b);
    }

    public static Tensor ge(Tensor a, double b) {
        return scalarOp(GE_OP, a, b);
    }

    public static Tensor le(Tensor a, double b) {
        return scalarOp(LE_OP, a, b);
    }

    public static Tensor lt(Tensor a, double b) {
        return scalarOp(LT_OP, a, b);
    }

    public static Tensor eq(Tensor a, double b) {
        return scalarOp(EQ_OP, a, b);
    }

    public static Tensor ne(Tensor a, double b) {
        return scalarOp(NE_OP, a, b);
    }

    public static Tensor logicalAnd(Tensor a, Tensor b) {
        return LOGICAL_AND_OP.call(null, a, b);
    }

    public static Tensor logicalOr(Tensor a, Tensor b) {
        return LOGICAL_OR_OP.call(null, a, b);
    }

    public static Tensor logicalXor(Tensor a, Tensor b) {
        return LOGICAL_XOR_OP.call(null, a, b);
    }

    /** {@code condition ? a : b}, broadcasting all three. */
    public static Tensor where(Tensor condition, Tensor a, Tensor b) {
        return WHERE_OP.call(null, condition, a, b);
    }

    /**
     * A Java number acts like PyTorch's: it does not widen the tensor's dtype within its kind
     * (float32 + 2.5 stays float32), but an integer tensor with a fractional number gives float32.
     */
    private static Tensor scalarOp(Op<Void> op, Tensor a, double b) {
        a.ensureOpen(op.name());
        DType type = a.dtype();
        if (type == DType.BOOL || (!type.isFloatingPoint() && b != Math.rint(b))) {
            type = b == Math.rint(b) && type == DType.BOOL ? DType.INT64 : DType.FLOAT32;
        }
        try (Tensor s = Tensor.scalar(b, type, a.device())) {
            return op.call(null, a, s);
        }
    }

    // ------------------------------------------------------------------ rules
    private static DType promoteFor(Op<?> op, Tensor a, Tensor b) {
        if (a.dtype().isPacked() || b.dtype().isPacked()) {
            throw op.error("packed int4 inputs must be unpacked first (" + a.describe() + ", " + b.describe() + ")");
        }
        return DType.promote(a.dtype(), b.dtype());
    }

    private static DType unaryComputeType(Op<?> op, UnaryKind kind, Tensor x) {
        DType t = x.dtype();
        if (t.isPacked()) {
            throw op.error("packed int4 input must be unpacked first: " + x.describe());
        }
        return switch (kind) {
            case FLOATING -> t.isFloatingPoint() ? t : DType.FLOAT32;
            case NUMERIC -> {
                if (t == DType.BOOL) {
                    throw op.error("does not take bool input " + x.describe());
                }
                yield t;
            }
            case LOGICAL -> {
                if (t != DType.BOOL) {
                    throw op.error("takes bool input, got " + x.describe());
                }
                yield t;
            }
        };
    }

    private static DType binaryComputeType(Op<?> op, BinaryKind kind, Tensor a, Tensor b) {
        DType t = promoteFor(op, a, b);
        return switch (kind) {
            case ARITHMETIC -> {
                if (t == DType.BOOL) {
                    throw op.error("arithmetic on bool tensors (" + a.describe() + ", " + b.describe()
                            + ") is not defined; use logical ops or convert with to()");
                }
                yield t;
            }
            case TRUE_DIVIDE -> t.isFloatingPoint() ? t : DType.FLOAT32;
            case COMPARISON -> t;
            case LOGICAL -> DType.BOOL;
        };
    }

    /** A unary op: its name is its line's in native/include/cortado/ops/unary.def (the one list). */
    private static Op<Params> unary(int code, UnaryKind kind, Saves saves, Op.BackwardRule<Params> rule) {
        String name = Unary.name(code);
        Op.Builder<Params> b = Op.<Params>declare(name)
                .inputs("x")
                .shape((op, p, in) -> Op.one(in[0].shape(), unaryComputeType(op, kind, in[0])))
                .kernels((p, in, out) -> unaryKernel(name, code, p, in[0], out[0]));
        return (rule == null ? b : b.backward(saves, rule)).register();
    }

    /** A binary op: its name is its line's in native/include/cortado/ops/binary.def (the one list). */
    private static Op<Void> binary(int code, BinaryKind kind, Saves saves, Op.BackwardRule<Void> rule) {
        String name = Binary.name(code);
        Op.Builder<Void> b = Op.<Void>declare(name)
                .inputs("a", "b")
                .shape((op, attrs, in) -> {
                    DType compute = binaryComputeType(op, kind, in[0], in[1]);
                    Shape s = op.broadcast(in[0].shape(), in[1].shape());
                    return Op.one(s, kind == BinaryKind.COMPARISON || kind == BinaryKind.LOGICAL ? DType.BOOL : compute);
                })
                .kernels((attrs, in, out) -> binaryKernel(name, code, kind, in[0], in[1], out[0]));
        return (rule == null ? b : b.backward(saves, rule)).register();
    }

    // ------------------------------------------------------------------ backward rules
    // Rules may return gradients in the broadcast shape: the tape sums them down to each input.

    private static Tensor[] grads(Tensor... g) {
        return g;
    }

    /** {@code g * m} where m is {@code pos} where x > 0, {@code neg} where x < 0 and {@code zero} at 0. */
    private static Tensor mulMask(Tensor g, Tensor x, double zero, double pos, double neg) {
        try (Scope s = Scope.open()) {
            Tensor sign = sub(gt(x, 0).to(g.dtype()), lt(x, 0).to(g.dtype()));
            // m = zero + sign * (pos - neg)/2 + |sign| * ((pos + neg)/2 - zero)
            Tensor m = add(mul(sign, (pos - neg) / 2), mul(abs(sign), (pos + neg) / 2 - zero));
            return s.keep(mul(g, add(m, zero)));
        }
    }

    /** {@code scale * g * y^power}. */
    private static Tensor scaled(double scale, Tensor g, Tensor y, double power) {
        try (Scope s = Scope.open()) {
            Tensor p = power == 1 ? y : pow(y, power);
            return s.keep(mul(mul(g, p), scale));
        }
    }

    /** {@code g * (1 - y*y)} when {@code y2} is given (tanh), else {@code g * y * (1 - y)} (sigmoid). */
    private static Tensor timesOneMinus(Tensor g, Tensor y, Tensor y2) {
        try (Scope s = Scope.open()) {
            Tensor d = y2 != null ? affine(mul(y, y2), -1, 1) : mul(y, affine(y, -1, 1));
            return s.keep(mul(g, d));
        }
    }

    /** {@code g * cos(x)} (sin's rule) or {@code -g * sin(x)} (cos's rule). */
    private static Tensor timesFunction(Tensor g, Tensor x, boolean cosine) {
        try (Scope s = Scope.open()) {
            return s.keep(cosine ? mul(g, cos(x)) : mul(g, neg(sin(x))));
        }
    }

    private static Tensor clampGrad(Tensor g, Tensor x, Params p) {
        try (Scope s = Scope.open()) {
            Tensor inside = logicalAnd(ge(x, p.p0()), le(x, p.p1()));
            return s.keep(mul(g, inside.to(g.dtype())));
        }
    }

    private static Tensor[] divGrad(Void attrs, Op.Saved sv, Tensor[] g) {
        try (Scope s = Scope.open()) {
            Tensor ga = div(g[0], sv.input(1));
            Tensor gb = sv.needsGradient(1) ? s.keep(neg(mul(ga, sv.output(0)))) : null;
            return new Tensor[] {sv.needsGradient(0) ? s.keep(ga) : null, gb};
        }
    }

    private static Tensor[] powGrad(Void attrs, Op.Saved sv, Tensor[] g) {
        try (Scope s = Scope.open()) {
            Tensor a = sv.input(0);
            Tensor b = sv.input(1);
            Tensor ga = null;
            Tensor gb = null;
            if (sv.needsGradient(0)) {
                ga = s.keep(mul(g[0], mul(b, pow(a, sub(b, 1.0)))));
            }
            if (sv.needsGradient(1)) {
                gb = s.keep(mul(g[0], mul(sv.output(0), log(a))));
            }
            return new Tensor[] {ga, gb};
        }
    }

    /** maximum/minimum: the gradient goes to a where {@code pick(a, b)}, else to b. */
    private static Tensor[] selectGrad(Tensor g, Op.Saved sv, Op<Void> pick) {
        try (Scope s = Scope.open()) {
            Tensor takeA = pick.call(null, sv.input(0), sv.input(1));
            Tensor zero = Tensor.scalar(0, g.dtype(), g.device());
            return new Tensor[] {sv.needsGradient(0) ? s.keep(where(takeA, g, zero)) : null,
                sv.needsGradient(1) ? s.keep(where(takeA, zero, g)) : null};
        }
    }

    // ------------------------------------------------------------------ kernels
    /** {@code t} as {@code type}: itself when it already is (not to be closed), else a converted copy. */
    static Tensor as(Tensor t, DType type) {
        return t.dtype() == type ? t : t.to(type);
    }

    static void closeIfCopy(Tensor converted, Tensor original) {
        if (converted != original) {
            converted.close();
        }
    }

    private static void unaryKernel(String name, int code, Params p, Tensor x, Tensor out) {
        if (out.numel() == 0) {
            return;
        }
        Tensor xc = as(x, out.dtype());
        try {
            StridedPlan plan = StridedPlan.of(name, out, xc);
            NativeArgs args = NativeArgs.get();
            long shape = args.put(plan.shape, plan.ndim);
            long os = args.put(plan.strides[0], plan.ndim);
            long xs = args.put(plan.strides[1], plan.ndim);
            Launch l = Launch.on(out);
            int status = l.kernels.unary(code, out.dtype().code(), plan.ndim, shape, out.dataAddress(), os,
                    xc.dataAddress(), xs, p.p0(), p.p1(), l.stream);
            if (status != 0) {
                throw l.failure(status, name + "(" + x.describe() + ")");
            }
        } finally {
            closeIfCopy(xc, x);
        }
    }

    private static void binaryKernel(String name, int code, BinaryKind kind, Tensor a, Tensor b, Tensor out) {
        if (out.numel() == 0) {
            return;
        }
        DType compute = kind == BinaryKind.LOGICAL ? DType.BOOL
                : kind == BinaryKind.COMPARISON ? DType.promote(a.dtype(), b.dtype()) : out.dtype();
        Tensor ac = as(a, compute);
        Tensor bc = as(b, compute);
        try {
            StridedPlan plan = StridedPlan.of(name, out, ac, bc);
            NativeArgs args = NativeArgs.get();
            long shape = args.put(plan.shape, plan.ndim);
            long os = args.put(plan.strides[0], plan.ndim);
            long as = args.put(plan.strides[1], plan.ndim);
            long bs = args.put(plan.strides[2], plan.ndim);
            Launch l = Launch.on(out);
            int status = l.kernels.binary(code, compute.code(), plan.ndim, shape, out.dataAddress(), os,
                    ac.dataAddress(), as, bc.dataAddress(), bs, l.stream);
            if (status != 0) {
                throw l.failure(status, name + "(" + a.describe() + ", " + b.describe() + ")");
            }
        } finally {
            closeIfCopy(ac, a);
            closeIfCopy(bc, b);
        }
    }

    private static void where(Tensor[] in, Tensor out) {
        if (out.numel() == 0) {
            return;
        }
        Tensor cond = in[0];
        Tensor a = as(in[1], out.dtype());
        Tensor b = as(in[2], out.dtype());
        try {
            StridedPlan plan = StridedPlan.of("where", out, cond, a, b);
            NativeArgs args = NativeArgs.get();
            long shape = args.put(plan.shape, plan.ndim);
            long os = args.put(plan.strides[0], plan.ndim);
            long cs = args.put(plan.strides[1], plan.ndim);
            long as = args.put(plan.strides[2], plan.ndim);
            long bs = args.put(plan.strides[3], plan.ndim);
            Launch l = Launch.on(out);
            int status = l.kernels.where(out.dtype().code(), plan.ndim, shape, out.dataAddress(), os,
                    cond.dataAddress(), cs, a.dataAddress(), as, b.dataAddress(), bs, l.stream);
            if (status != 0) {
                throw l.failure(status, "where(" + cond.describe() + ", " + in[1].describe() + ", "
                        + in[2].describe() + ")");
            }
        } finally {
            closeIfCopy(a, in[1]);
            closeIfCopy(b, in[2]);
        }
    }
}
