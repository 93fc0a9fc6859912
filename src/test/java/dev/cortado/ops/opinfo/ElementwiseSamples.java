package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;
import static dev.cortado.ops.opinfo.Gen.ur;

import dev.cortado.ops.Elementwise.Params;
import dev.cortado.ops.ElementwiseOpsTest;
import dev.cortado.tensor.DType;
import dev.cortado.testing.Reference;
import java.util.List;
import java.util.Random;
import java.util.function.DoubleBinaryOperator;
import java.util.function.DoubleUnaryOperator;

/**
 * The elementwise family: one line per op. A unary op gives its float64 scalar function and the
 * domain its samples are drawn from; the gradient is checked by finite differences
 * automatically. Samples: odd sizes [7, 5], a size-1 dim [1, 3], an empty dim [0, 4], a
 * transposed (non-contiguous) view [3, 6, 4]; binary ops add broadcasting [4, 1, 3] with [5, 1].
 * Dtypes: float64, float32, bfloat16, float16 (integer dtypes: ElementwiseOpsTest).
 */
public final class ElementwiseSamples {
    private ElementwiseSamples() {
    }

    private static final String F = "elementwise";
    private static final double SQRT_2_PI = Math.sqrt(2 / Math.PI);

    static final List<OpInfo> ENTRIES = List.of(
            unary("neg", "-x", x -> -x, -3, 3),
            unary("abs", "|x|", Math::abs, -3, 3),
            unary("exp", "e^x", Math::exp, -3, 3),
            unary("log", "natural logarithm", Math::log, 0.05, 4),
            unary("sqrt", "square root", Math::sqrt, 0.05, 4),
            unary("rsqrt", "1 / sqrt(x)", x -> 1 / Math.sqrt(x), 0.05, 4),
            unary("tanh", "hyperbolic tangent", Math::tanh, -3, 3),
            unary("sigmoid", "1 / (1 + e^-x)", ElementwiseOpsTest::sigmoid, -3, 3),
            unary("relu", "max(x, 0)", x -> Math.max(x, 0), -3, 3),
            unary("gelu", "x·Φ(x) (erf form)", ElementwiseOpsTest::geluErf, -3, 3),
            unary("gelu_tanh", "GELU, tanh approximation", ElementwiseOpsTest::geluTanh, -3, 3),
            unary("silu", "x·sigmoid(x)", x -> x * ElementwiseOpsTest.sigmoid(x), -3, 3),
            unary("sin", "sine", Math::sin, -3, 3),
            unary("cos", "cosine", Math::cos, -3, 3),
            unary("hardswish", "x·relu6(x + 3) / 6", x -> x * Math.min(Math.max(x + 3, 0), 6) / 6, -5, 5),
            unary("hardsigmoid", "relu6(x + 3) / 6", x -> Math.min(Math.max(x + 3, 0), 6) / 6, -5, 5),
            unary("mish", "x·tanh(softplus(x))", x -> x * Math.tanh(Math.log1p(Math.exp(x))), -4, 4),
            unary("softplus", "log(1 + eˣ); x above 20", x -> x > 20 ? x : Math.log1p(Math.exp(x)), -30, 30),
            unary("reciprocal", "1 / x", x -> 1 / x, 0.05, 3),
            unary("clamp", new Params(-1.25, 0.75), "min(max(x, lo), hi); NaN kept", x -> Math.min(Math.max(x, -1.25), 0.75), -3, 3),
            unary("pow_scalar", new Params(-1.5, 0), "x^p for a scalar exponent p", x -> Math.pow(x, -1.5), 0.05, 4),
            unary("affine", new Params(-1.75, 0.5), "x·scale + shift", x -> x * -1.75 + 0.5, -3, 3),

            binary("add", "a + b, broadcasting", Double::sum, -3, 3, -3, 3),
            binary("sub", "a - b", (a, b) -> a - b, -3, 3, -3, 3),
            binary("mul", "a · b", (a, b) -> a * b, -3, 3, -3, 3),
            binary("div", "true division a / b (integers give float32)", (a, b) -> a / b, -3, 3, 0.25, 3),
            binary("pow", "a^b", Math::pow, 0.1, 3, -2.5, 2.5),
            binary("maximum", "elementwise max, NaN propagates", Math::max, -3, 3, -3, 3),
            binary("minimum", "elementwise min, NaN propagates", Math::min, -3, 3, -3, 3),

            compare("eq", "a == b (bool)", (a, b) -> a == b ? 1 : 0),
            compare("ne", "a != b (bool)", (a, b) -> a != b ? 1 : 0),
            compare("lt", "a < b (bool)", (a, b) -> a < b ? 1 : 0),
            compare("le", "a <= b (bool)", (a, b) -> a <= b ? 1 : 0),
            compare("gt", "a > b (bool)", (a, b) -> a > b ? 1 : 0),
            compare("ge", "a >= b (bool)", (a, b) -> a >= b ? 1 : 0),
            logical("logical_and", "a ∧ b on bools", (a, b) -> a != 0 && b != 0 ? 1 : 0),
            logical("logical_or", "a ∨ b on bools", (a, b) -> a != 0 || b != 0 ? 1 : 0),
            logical("logical_xor", "a ⊕ b on bools", (a, b) -> (a != 0) != (b != 0) ? 1 : 0),
            logical("logical_not", "¬x on bools", (a, b) -> a != 0 ? 0 : 1),

            gradient("gelu_grad", "gelu", (g, x) -> g * (0.5 * (1 + ElementwiseOpsTest.erf(x / Math.sqrt(2)))
                    + x * Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI))),
            gradient("gelu_tanh_grad", "gelu_tanh", (g, x) -> {
                double t = Math.tanh(SQRT_2_PI * (x + 0.044715 * x * x * x));
                return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_PI * (1 + 3 * 0.044715 * x * x));
            }),
            gradient("hardswish_grad", "hardswish", (g, x) -> g * (x < -3 ? 0 : x > 3 ? 1 : (2 * x + 3) / 6)),
            gradient("hardsigmoid_grad", "hardsigmoid", (g, x) -> g * (x > -3 && x < 3 ? 1.0 / 6 : 0)),
            gradient("mish_grad", "mish", (g, x) -> {
                double t = Math.tanh(Math.log1p(Math.exp(x)));
                return g * (t + x * (1 - t * t) / (1 + Math.exp(-x)));
            }),
            gradient("softplus_grad", "softplus", (g, x) -> g * (x > 20 ? 1 : ElementwiseOpsTest.sigmoid(x))),
            gradient("silu_grad", "silu", (g, x) -> {
                double s = ElementwiseOpsTest.sigmoid(x);
                return g * s * (1 + x * (1 - s));
            }),
            binaryEntry("relu_grad", "g where y > 0, else 0 (relu's backward, from its output)", (g, y) -> y > 0 ? g : 0,
                    -3, 3, -0.5, 3).gradCheck().build(),
            OpInfo.of("where", F, "condition ? a : b, broadcasting all three")
                    .samples((r, t) -> List.of(
                            new Sample("broadcast", null, Gen.bools(r, 4, 1, 3), u(r, t, 5, 1), u(r, t, 3)),
                            new Sample("odd", null, Gen.bools(r, 7, 5), u(r, t, 7, 5), u(r, t, 7, 5).view()),
                            new Sample("empty", null, Gen.bools(r, 0, 3), u(r, t, 1, 3), u(r, t, 0, 3))))
                    .reference((s, in) -> {
                        long[] out = Reference.broadcastShape(Reference.broadcastShape(s.dims(0), s.dims(1)), s.dims(2));
                        double[] c = Reference.broadcast(in[0], s.dims(0), out);
                        double[] a = Reference.broadcast(in[1], s.dims(1), out);
                        double[] b = Reference.broadcast(in[2], s.dims(2), out);
                        double[] y = new double[c.length];
                        for (int i = 0; i < y.length; i++) {
                            y[i] = c[i] != 0 ? a[i] : b[i];
                        }
                        return new double[][] {y};
                    })
                    .floats(0).halves(0, 0).gradCheck().build());
    // hardswish, hardsigmoid, mish: one unary(...) line each, above, once their declarations land.

    // ------------------------------------------------------------------ one-line declarations
    static OpInfo unary(String name, String doc, DoubleUnaryOperator f, double lo, double hi) {
        return unary(name, new Params(0, 0), doc, f, lo, hi);
    }

    /** A floating unary op with parameters; gradient checked on the samples. */
    static OpInfo unary(String name, Params params, String doc, DoubleUnaryOperator f, double lo, double hi) {
        return OpInfo.of(name, F, doc)
                .samples((r, t) -> List.of(
                        new Sample("odd", params, ur(r, t, lo, hi, 7, 5)),
                        new Sample("size-1", params, ur(r, t, lo, hi, 1, 3)),
                        new Sample("empty", params, ur(r, t, lo, hi, 0, 4)),
                        new Sample("view", params, ur(r, t, lo, hi, 3, 6, 4).view())))
                .reference((s, in) -> new double[][] {map(in[0], f)})
                .floats(1e-5).halves(1e-2, 2e-3).gradCheck().build();
    }

    static OpInfo binary(String name, String doc, DoubleBinaryOperator f, double aLo, double aHi, double bLo, double bHi) {
        return binaryEntry(name, doc, f, aLo, aHi, bLo, bHi).gradCheck().build();
    }

    /** Comparisons: values on a 0.5 grid so that ties occur; bool results compared exactly. */
    static OpInfo compare(String name, String doc, DoubleBinaryOperator f) {
        return OpInfo.of(name, F, doc)
                .samples((r, t) -> binarySamples(r, (g, d) -> Gen.grid(g, t, -2, 2, d), (g, d) -> Gen.grid(g, t, -2, 2, d)))
                .reference((s, in) -> new double[][] {zip(s, in, f)})
                .floats(0).halves(0, 0).notDifferentiable("bool result").build();
    }

    /** Logical ops on bool inputs (arity from the registry: logical_not takes one). */
    static OpInfo logical(String name, String doc, DoubleBinaryOperator f) {
        boolean unary = name.equals("logical_not");
        return OpInfo.of(name, F, doc)
                .samples((r, t) -> unary
                        ? List.of(new Sample("odd", new Params(0, 0), Gen.bools(r, 7, 5)),
                                new Sample("view", new Params(0, 0), Gen.bools(r, 4, 6).view()),
                                new Sample("empty", new Params(0, 0), Gen.bools(r, 0, 3)))
                        : binarySamples(r, Gen::bools, Gen::bools))
                .reference((s, in) -> new double[][] {unary ? map(in[0], x -> f.applyAsDouble(x, 0)) : zip(s, in, f)})
                .dtype(DType.BOOL, 0, 0).notDifferentiable("bool result").build();
    }

    /** g·f'(x) in one pass: the backward of {@code forward}, checked through its gradient check. */
    static OpInfo gradient(String name, String forward, DoubleBinaryOperator f) {
        return binaryEntry(name, "g·" + forward + "'(x) from the output gradient g and the input x", f, -3, 3, -3, 3)
                .coveredBy(forward).build();
    }

    static OpInfo.Builder binaryEntry(String name, String doc, DoubleBinaryOperator f, double aLo, double aHi, double bLo,
            double bHi) {
        return OpInfo.of(name, F, doc)
                .samples((r, t) -> binarySamples(r, (g, d) -> ur(g, t, aLo, aHi, d), (g, d) -> ur(g, t, bLo, bHi, d)))
                .reference((s, in) -> new double[][] {zip(s, in, f)})
                .floats(1e-5).halves(1e-2, 2e-3);
    }

    interface Maker {
        Arg make(Random r, long... dims);
    }

    static List<Sample> binarySamples(Random r, Maker a, Maker b) {
        return List.of(
                new Sample("odd", null, a.make(r, 7, 5), b.make(r, 7, 5)),
                new Sample("broadcast", null, a.make(r, 4, 1, 3), b.make(r, 5, 1)),
                new Sample("size-1", null, a.make(r, 1, 6), b.make(r, 1, 1)),
                new Sample("empty", null, a.make(r, 0, 3), b.make(r, 1, 3)),
                new Sample("view", null, a.make(r, 5, 6).view(), b.make(r, 5, 6)));
    }

    static double[] map(double[] x, DoubleUnaryOperator f) {
        double[] y = new double[x.length];
        for (int i = 0; i < y.length; i++) {
            y[i] = f.applyAsDouble(x[i]);
        }
        return y;
    }

    /** f over the broadcast of inputs 0 and 1. */
    static double[] zip(Sample s, double[][] in, DoubleBinaryOperator f) {
        long[] out = Reference.broadcastShape(s.dims(0), s.dims(1));
        double[] a = Reference.broadcast(in[0], s.dims(0), out);
        double[] b = Reference.broadcast(in[1], s.dims(1), out);
        double[] y = new double[a.length];
        for (int i = 0; i < y.length; i++) {
            y[i] = f.applyAsDouble(a[i], b[i]);
        }
        return y;
    }
}
