package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.autograd.GradCheck;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.Convolution.Algorithm;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.BinaryOperator;
import java.util.function.DoubleBinaryOperator;
import java.util.function.DoubleUnaryOperator;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * hardswish, hardsigmoid and mish (forward, gradient kernel, autograd) against float64 references
 * written from PyTorch's definitions, and the one GELU formula shared by the unary op and the
 * fused convolution epilogue (native/shared/scalar_ops.h).
 *
 * Tolerances ({@link Reference#tol}): float64 1e-12 rel; float32 1e-5 rel + 1e-6 abs (x2 for mish,
 * whose float32 kernel uses a polynomial exp); bfloat16 1e-2 rel; float16 2e-3 rel (one rounding
 * of a float32 result). Inputs avoid the kinks of the piecewise ops by 1e-3 (1/6-wide jumps of
 * the derivative there: a finite difference across them checks nothing).
 */
class ActivationOpsTest {
    private static final DType[] FLOATS = {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16};
    private static final long[][] SHAPES = {{}, {1}, {7}, {3, 5}, {0, 4}, {5, 0}, {17, 33}};

    // ------------------------------------------------------------------ float64 references
    static double relu6(double x) {
        return Math.min(Math.max(x, 0), 6);
    }

    static double hardswish(double x) {
        return x * relu6(x + 3) / 6;
    }

    static double hardsigmoid(double x) {
        return relu6(x + 3) / 6;
    }

    /** log(1 + e^x) without overflow: x + log1p(e^-x) for x > 0. */
    static double softplus(double x) {
        return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
    }

    static double mish(double x) {
        return x * Math.tanh(softplus(x));
    }

    /** PyTorch's hardswish_backward: 0 below -3, x/3 + 1/2 on [-3, 3], 1 above. */
    static double hardswishGrad(double x) {
        return x < -3 ? 0 : x <= 3 ? x / 3 + 0.5 : 1;
    }

    static double hardsigmoidGrad(double x) {
        return x > -3 && x < 3 ? 1.0 / 6 : 0;
    }

    static double mishGrad(double x) {
        double t = Math.tanh(softplus(x));
        double s = 1 / (1 + Math.exp(-x));
        return t + x * (1 - t * t) * s;
    }

    /** 1 + erf(x / sqrt 2) = erfc(-x / sqrt 2), in float64 through ElementwiseOpsTest's series. */
    static double gelu(double x) {
        return 0.5 * x * (1 + ElementwiseOpsTest.erf(x / Math.sqrt(2)));
    }

    record Act(String name, UnaryOperator<Tensor> op, Op<Void> gradOp, DoubleUnaryOperator ref,
               DoubleUnaryOperator grad, double f32Scale) {
        @Override
        public String toString() {
            return name;
        }
    }

    static List<Act> acts() {
        return List.of(
                new Act("hardswish", Elementwise::hardswish, Elementwise.HARDSWISH_GRAD_OP, ActivationOpsTest::hardswish,
                        ActivationOpsTest::hardswishGrad, 1),
                new Act("hardsigmoid", Elementwise::hardsigmoid, Elementwise.HARDSIGMOID_GRAD_OP,
                        ActivationOpsTest::hardsigmoid, ActivationOpsTest::hardsigmoidGrad, 1),
                new Act("mish", Elementwise::mish, Elementwise.MISH_GRAD_OP, ActivationOpsTest::mish,
                        ActivationOpsTest::mishGrad, 2));
    }

    /** Uniform on [lo, hi], moved off the kinks at -3 and 3 by at least 1e-3. */
    static double[] offKinks(Random r, int n, double lo, double hi) {
        double[] v = Reference.uniform(r, n, lo, hi);
        for (int i = 0; i < n; i++) {
            for (double k : new double[] {-3, 3}) {
                if (Math.abs(v[i] - k) < 1e-3) {
                    v[i] = k + Math.copySign(1e-3, v[i] - k);
                }
            }
        }
        return v;
    }

    static Tol tol(DType t, double f32Scale) {
        Tol tol = Reference.tol(t);
        return t == DType.FLOAT32 ? tol.scaled(f32Scale) : tol;
    }

    // ------------------------------------------------------------------ forward
    @TestFactory
    List<DynamicTest> forwardMatchesFloat64Reference() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 4100;
        for (Act a : acts()) {
            for (DType t : FLOATS) {
                for (long[] dims : SHAPES) {
                    long s = seed++;
                    tests.add(dynamicTest(a + " " + t + Arrays.toString(dims), () -> {
                        try (var scope = Scope.open()) {
                            int n = (int) Reference.numel(dims);
                            Tensor x = Reference.make(offKinks(new Random(s), n, -6, 6), t, dims);
                            Tensor y = a.op().apply(x);
                            assertEquals(t, y.dtype(), "dtype");
                            assertArrayEquals(dims, y.dims(), "shape");
                            double[] xv = x.toDoubleArray();
                            double[] want = new double[n];
                            for (int i = 0; i < n; i++) {
                                want[i] = a.ref().applyAsDouble(xv[i]);
                            }
                            assertClose(want, y.toDoubleArray(), tol(t, a.f32Scale()), a + " " + t);
                        }
                    }));
                }
            }
        }
        return tests;
    }

    /** A transposed (non-contiguous) input, and a broadcast (stride-0) one. */
    @TestFactory
    List<DynamicTest> forwardOnViews() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Act a : acts()) {
            for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
                tests.add(dynamicTest(a + " " + t, () -> {
                    try (var scope = Scope.open()) {
                        Tensor base = Reference.make(offKinks(new Random(77), 13 * 70, -6, 6), t, 13, 70);
                        for (Tensor x : new Tensor[] {base.transpose(0, 1), base.narrow(0, 2, 1).expand(9, 70)}) {
                            double[] xv = x.toDoubleArray();
                            double[] want = new double[xv.length];
                            for (int i = 0; i < xv.length; i++) {
                                want[i] = a.ref().applyAsDouble(xv[i]);
                            }
                            Tensor y = a.op().apply(x);
                            assertArrayEquals(x.dims(), y.dims());
                            assertClose(want, y.toDoubleArray(), tol(t, a.f32Scale()), a + " view " + t);
                        }
                    }
                }));
            }
        }
        return tests;
    }

    /** Far tails and special values: no overflow to NaN (mish's e^x), NaN propagates. */
    @Test
    void extremeInputs() {
        double[] xs = {-1e30, -100, -30, -10, -3.5, 3.5, 10, 19.9, 20.1, 30, 100, 1e30};
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
            for (Act a : acts()) {
                try (var scope = Scope.open()) {
                    Tensor x = Reference.make(xs, t, xs.length);
                    double[] xv = x.toDoubleArray();
                    double[] want = new double[xs.length];
                    for (int i = 0; i < xs.length; i++) {
                        want[i] = a.ref().applyAsDouble(xv[i]);
                    }
                    assertClose(want, a.op().apply(x).toDoubleArray(), tol(t, a.f32Scale()), a + " tails " + t);
                    Tensor g = Reference.make(new double[xs.length], t, xs.length);
                    g = Elementwise.affine(g, 0, 1); // ones
                    double[] wantGrad = new double[xs.length];
                    for (int i = 0; i < xs.length; i++) {
                        wantGrad[i] = a.grad().applyAsDouble(xv[i]);
                    }
                    assertClose(wantGrad, a.gradOp().call(null, g, x).toDoubleArray(), tol(t, a.f32Scale()),
                            a + " grad tails " + t);
                    double y = a.op().apply(Tensor.of(new double[] {Double.NaN}, 1)).toDoubleArray()[0];
                    assertTrue(Double.isNaN(y), a + "(NaN) = " + y);
                }
            }
        }
    }

    /** Integer inputs compute in float32 (as gelu/silu). */
    @Test
    void integerInputsGiveFloat32() {
        try (var scope = Scope.open()) {
            Tensor x = Reference.make(new double[] {-5, -3, -1, 0, 2, 3, 4}, DType.INT32, 7);
            for (Act a : acts()) {
                Tensor y = a.op().apply(x);
                assertEquals(DType.FLOAT32, y.dtype(), a.name());
                double[] want = Arrays.stream(x.toDoubleArray()).map(a.ref()).toArray();
                assertClose(want, y.toDoubleArray(), tol(DType.FLOAT32, a.f32Scale()), a + " int32");
            }
        }
    }

    // ------------------------------------------------------------------ gradients
    /** The gradient kernel g * f'(x) against the float64 derivative, with broadcasting of g. */
    @TestFactory
    List<DynamicTest> gradientKernelMatchesFloat64Reference() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 5200;
        for (Act a : acts()) {
            for (DType t : FLOATS) {
                for (long[][] dims : new long[][][] {{{}, {}}, {{7}, {7}}, {{17, 33}, {17, 33}}, {{33}, {17, 33}},
                        {{0, 3}, {0, 3}}}) {
                    long s = seed++;
                    tests.add(dynamicTest(a + "_grad " + t + Arrays.toString(dims[0]) + Arrays.toString(dims[1]), () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(s);
                            Tensor g = Reference.make(Reference.uniform(r, (int) Reference.numel(dims[0]), -2, 2), t,
                                    dims[0]);
                            Tensor x = Reference.make(offKinks(r, (int) Reference.numel(dims[1]), -6, 6), t, dims[1]);
                            Tensor got = a.gradOp().call(null, g, x);
                            assertArrayEquals(dims[1], got.dims());
                            double[] gv = Reference.broadcast(g.toDoubleArray(), dims[0], dims[1]);
                            double[] xv = x.toDoubleArray();
                            double[] want = new double[xv.length];
                            for (int i = 0; i < xv.length; i++) {
                                want[i] = gv[i] * a.grad().applyAsDouble(xv[i]);
                            }
                            assertClose(want, got.toDoubleArray(), tol(t, 2 * a.f32Scale()), a + "_grad " + t);
                        }
                    }));
                }
            }
        }
        return tests;
    }

    /** Autograd through the backward rules: finite differences in float64 (GradCheck). */
    @TestFactory
    List<DynamicTest> gradCheck() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Act a : acts()) {
            tests.add(dynamicTest(a.name(), () -> {
                try (Tensor x = Tensor.of(offKinks(new Random(31), 24, -5, 5), 4, 6).requiresGrad(true)) {
                    GradCheck.check(a.name(), in -> a.op().apply(in[0]), x);
                }
            }));
        }
        return tests;
    }

    // ------------------------------------------------------------------ one GELU formula
    /**
     * Fused conv + GELU equals GELU of the conv output (float64 reference) for every CPU algorithm,
     * on outputs in [-6, -2], where 0.5 x (1 + erf(x / sqrt 2)) in float32 cancels (relative error
     * up to ~1e-1 at x = -5) and the shared erfc form stays at float32 rounding.
     */
    @TestFactory
    List<DynamicTest> fusedConvGeluUsesTheUnaryFormula() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Algorithm alg : new Algorithm[] {Algorithm.REFERENCE, Algorithm.IM2COL_GEMM, Algorithm.DIRECT_NHWC,
                Algorithm.WINOGRAD}) {
            tests.add(dynamicTest(alg.name(), () -> {
                try (var scope = Scope.open()) {
                    Random r = new Random(11);
                    Tensor x = Reference.make(Reference.uniform(r, 2 * 6 * 7 * 4, -1, 1), DType.FLOAT32, 2, 6, 7, 4);
                    Tensor w = Reference.make(Reference.uniform(r, 5 * 4 * 9, -0.15, 0.15), DType.FLOAT32, 5, 4, 3, 3);
                    Tensor b = Reference.make(Reference.uniform(r, 5, -4.5, -3.5), DType.FLOAT32, 5);
                    ConvOptions plain = ConvOptions.builder().padding(1).layout(DataLayout.NHWC).algorithm(alg).build();
                    ConvOptions fused = ConvOptions.builder().padding(1).layout(DataLayout.NHWC).algorithm(alg)
                            .activation(Activation.GELU).build();
                    double[] pre = Convolution.conv2d(x, w, b, plain).toDoubleArray();
                    double[] got = Convolution.conv2d(x, w, b, fused).toDoubleArray();
                    double[] want = new double[pre.length];
                    double lo = 0;
                    for (int i = 0; i < pre.length; i++) {
                        want[i] = gelu(pre[i]);
                        lo = Math.min(lo, pre[i]);
                    }
                    assertTrue(lo < -5, "outputs reach the cancelling range: min " + lo);
                    assertClose(want, got, new Tol(1e-5, 1e-30), "conv+gelu " + alg);
                    assertClose(want, Elementwise.gelu(Reference.make(pre, DType.FLOAT32, pre.length)).toDoubleArray(),
                            new Tol(1e-5, 1e-30), "gelu");
                }
            }));
        }
        return tests;
    }

    // ------------------------------------------------------------------ CUDA twins
    @Test
    @Tag("gpu")
    void cudaMatchesCpu() {
        Device gpu = Device.cuda(0);
        Assumptions.assumeTrue(gpu.isAvailable(), "no usable CUDA device");
        for (DType t : FLOATS) {
            try (var scope = Scope.open()) {
                Random r = new Random(99);
                Tensor x = Reference.make(offKinks(r, 37 * 129, -8, 8), t, 37, 129);
                Tensor g = Reference.make(Reference.uniform(r, 129, -2, 2), t, 129);
                for (Act a : acts()) {
                    Tol tol = tol(t, 4 * a.f32Scale());
                    assertClose(a.op().apply(x).toDoubleArray(), a.op().apply(x.to(gpu)).to(Device.CPU).toDoubleArray(),
                            tol, a + " cuda " + t);
                    assertClose(a.gradOp().call(null, g, x).toDoubleArray(),
                            a.gradOp().call(null, g.to(gpu), x.to(gpu)).to(Device.CPU).toDoubleArray(), tol,
                            a + "_grad cuda " + t);
                }
            }
        }
    }
}
