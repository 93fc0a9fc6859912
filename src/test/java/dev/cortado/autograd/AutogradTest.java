package dev.cortado.autograd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.ops.Attention;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.CrossEntropy;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Pooling;
import dev.cortado.ops.Pooling.PoolOptions;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.LeakCheck;
import java.util.Random;
import java.util.function.Function;
import java.util.function.UnaryOperator;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * The tape itself (accumulation, fan-out, views, noGrad, retainGraph, seeds, freeing) and the
 * backward rules of the elementwise, reduction and linear-algebra ops, each against central
 * finite differences in float64 ({@link GradCheck}: |analytic - numeric| <= 1e-6 + 1e-5 |numeric|).
 */
class AutogradTest {
    /**
     * The generator behind {@link #leaf}: reseeded from each test's (or dynamic test's) name by
     * {@link #seed}, so every case draws the same values whether it runs alone or in the suite.
     */
    private static final ThreadLocal<Random> RANDOM = ThreadLocal.withInitial(() -> new Random(20261129));

    static void seed(String testName) {
        RANDOM.set(new Random(20261129L * 31 + testName.hashCode()));
    }

    /** A dynamic test that reseeds {@link #leaf}'s generator from its name before it runs. */
    static DynamicTest seededTest(String name, Executable body) {
        return DynamicTest.dynamicTest(name, () -> {
            seed(name);
            body.execute();
        });
    }

    @BeforeEach
    void seedFromTheTestName(TestInfo info) {
        seed(info.getDisplayName());
    }

    /** A float64 leaf of fresh normal values (|x| >= 0.05 so kinks are not straddled). */
    static Tensor leaf(long... dims) {
        int n = 1;
        for (long d : dims) {
            n *= (int) d;
        }
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            double x = RANDOM.get().nextGaussian();
            v[i] = Math.abs(x) < 0.05 ? Math.copySign(0.05 + Math.abs(x), x) : x;
        }
        return Tensor.of(v, dims).requiresGrad(true);
    }

    static Tensor positiveLeaf(long... dims) {
        try (Tensor x = leaf(dims); var g = Autograd.noGrad(); Tensor a = Elementwise.abs(x)) {
            return Elementwise.affine(a, 1, 0.5).requiresGrad(true);
        }
    }

    private static DynamicTest unary(String name, boolean positive, UnaryOperator<Tensor> f) {
        return seededTest(name, () -> {
            try (Tensor x = positive ? positiveLeaf(3, 5) : leaf(3, 5)) {
                GradCheck.check(name, in -> f.apply(in[0]), x);
            }
        });
    }

    @TestFactory
    Stream<DynamicTest> unaryRules() {
        return Stream.of(
                unary("neg", false, Elementwise::neg),
                unary("abs", false, Elementwise::abs),
                unary("exp", false, Elementwise::exp),
                unary("log", true, Elementwise::log),
                unary("sqrt", true, Elementwise::sqrt),
                unary("rsqrt", true, Elementwise::rsqrt),
                unary("tanh", false, Elementwise::tanh),
                unary("sigmoid", false, Elementwise::sigmoid),
                unary("relu", false, Elementwise::relu),
                unary("gelu", false, Elementwise::gelu),
                unary("gelu_tanh", false, Elementwise::geluTanh),
                unary("silu", false, Elementwise::silu),
                unary("sin", false, Elementwise::sin),
                unary("cos", false, Elementwise::cos),
                unary("reciprocal", true, Elementwise::reciprocal),
                unary("clamp", false, x -> Elementwise.clamp(x, -0.7, 0.6)),
                unary("pow_scalar", true, x -> Elementwise.pow(x, 2.5)),
                unary("affine", false, x -> Elementwise.affine(x, -1.5, 0.25)));
    }

    private static DynamicTest binary(String name, long[] a, long[] b, boolean positiveA,
            java.util.function.BinaryOperator<Tensor> f) {
        return seededTest(name + java.util.Arrays.toString(a) + java.util.Arrays.toString(b), () -> {
            try (Tensor x = positiveA ? positiveLeaf(a) : leaf(a); Tensor y = positiveLeaf(b)) {
                GradCheck.check(name, in -> f.apply(in[0], in[1]), x, y);
            }
        });
    }

    @TestFactory
    Stream<DynamicTest> binaryRulesWithBroadcasting() {
        long[] full = {2, 3, 4};
        long[] row = {4};
        long[] col = {3, 1};
        return Stream.of(
                binary("add", full, row, false, Elementwise::add),
                binary("sub", col, full, false, Elementwise::sub),
                binary("mul", full, col, false, Elementwise::mul),
                binary("div", full, row, false, Elementwise::div),
                binary("pow", full, row, true, Elementwise::pow),
                binary("maximum", full, full, false, Elementwise::maximum),
                binary("minimum", full, col, false, Elementwise::minimum),
                seededTest("relu_grad (double backward of relu)", () -> {
                    // d/dg is relu_grad itself; d/dy is zero away from 0 (leaves keep |y| >= 0.05)
                    try (Tensor g = leaf(full); Tensor y = leaf(row)) {
                        GradCheck.check("relu_grad", in -> Elementwise.RELU_GRAD_OP.call(null, in[0], in[1]), g, y);
                    }
                }),
                binary("where", full, row, false, (p, q) -> {
                    try (Tensor c = Elementwise.gt(p, 0.2)) {
                        return Elementwise.where(c, p, q);
                    }
                }));
    }

    @TestFactory
    Stream<DynamicTest> reductionRules() {
        return Stream.<Object[]>of(
                new Object[] {"sum all", (Function<Tensor, Tensor>) Reductions::sum},
                new Object[] {"sum axis 1", (Function<Tensor, Tensor>) x -> Reductions.sum(x, false, 1)},
                new Object[] {"sum keepdim", (Function<Tensor, Tensor>) x -> Reductions.sum(x, true, 0, 2)},
                new Object[] {"mean", (Function<Tensor, Tensor>) x -> Reductions.mean(x, false, -1)},
                new Object[] {"max", (Function<Tensor, Tensor>) x -> Reductions.max(x, false, 1)},
                new Object[] {"min all", (Function<Tensor, Tensor>) Reductions::min},
                new Object[] {"var", (Function<Tensor, Tensor>) x -> Reductions.var(x, 1, true, 2)},
                new Object[] {"prod", (Function<Tensor, Tensor>) x -> Reductions.prod(x, false, 0)})
                .map(c -> seededTest((String) c[0], () -> {
                    @SuppressWarnings("unchecked")
                    Function<Tensor, Tensor> f = (Function<Tensor, Tensor>) c[1];
                    try (Tensor x = leaf(3, 4, 5)) {
                        GradCheck.check((String) c[0], in -> f.apply(in[0]), x);
                    }
                }));
    }

    @TestFactory
    Stream<DynamicTest> matmulRules() {
        long[][][] shapes = {
            {{3, 4}, {4, 5}}, {{4}, {4, 5}}, {{3, 4}, {4}}, {{4}, {4}}, {{2, 3, 4}, {4, 5}}, {{2, 3, 4}, {2, 4, 5}},
            {{2, 1, 3, 4}, {3, 4, 2}}, {{1, 4}, {4, 1}}};
        return Stream.of(shapes).map(s -> seededTest(
                "matmul " + java.util.Arrays.toString(s[0]) + " x " + java.util.Arrays.toString(s[1]), () -> {
                    try (Tensor a = leaf(s[0]); Tensor b = leaf(s[1])) {
                        GradCheck.check("matmul", in -> LinearAlgebra.matmul(in[0], in[1]), a, b);
                    }
                }));
    }

    @TestFactory
    Stream<DynamicTest> gemmRules() {
        return Stream.of(false, true).flatMap(ta -> Stream.of(false, true).map(tb -> seededTest(
                "gemm transA=" + ta + " transB=" + tb, () -> {
                    try (Tensor a = ta ? leaf(4, 3) : leaf(3, 4); Tensor b = tb ? leaf(5, 4) : leaf(4, 5);
                            Tensor c = leaf(5)) {
                        GradCheck.check("gemm", in -> LinearAlgebra.gemm(in[0], in[1], in[2], 0.7, -1.3, ta, tb), a, b, c);
                    }
                })));
    }

    @Test
    void viewsCarryGradients() {
        try (Tensor x = leaf(2, 3, 4)) {
            GradCheck.check("reshape", in -> Elementwise.mul(in[0].reshape(4, 6), in[0].reshape(4, 6)), x);
            GradCheck.check("permute", in -> LinearAlgebra.matmul(in[0].permute(2, 0, 1).reshape(4, 6),
                    in[0].reshape(6, 4)), x);
            GradCheck.check("transpose+contiguous", in -> Elementwise.exp(in[0].transpose(0, 2).contiguous()), x);
            GradCheck.check("slice step 2", in -> Elementwise.tanh(in[0].slice(2, 1, 4, 2)), x);
            GradCheck.check("select", in -> Elementwise.sigmoid(in[0].select(1, -1)), x);
            GradCheck.check("narrow", in -> Elementwise.mul(in[0].narrow(0, 1, 1), 3.0), x);
            GradCheck.check("unsqueeze+expand", in -> Elementwise.mul(in[0].unsqueeze(1).expand(2, 5, 3, 4), 1.5), x);
            GradCheck.check("squeeze", in -> Elementwise.sin(in[0].narrow(1, 0, 1).squeeze()), x);
            GradCheck.check("to float32 and back", new GradCheck.Options(1e-2, 1e-4, 1e-4, 256, 7),
                    in -> Elementwise.mul(in[0].to(DType.FLOAT32).to(DType.FLOAT64), in[0]), x);
        }
    }

    @Test
    void fanOutSumsAndRepeatedBackwardAccumulates() {
        try (Tensor x = Tensor.of(new double[] {1, 2, 3}, 3).requiresGrad(true)) {
            try (Scope s = Scope.open()) {
                // y = sum(x*x + 3x): dy/dx = 2x + 3
                Tensor y = Reductions.sum(Elementwise.add(Elementwise.mul(x, x), Elementwise.mul(x, 3.0)));
                y.backward();
            }
            assertArrayEquals(new double[] {5, 7, 9}, x.grad().toDoubleArray(), 1e-12);
            try (Scope s = Scope.open()) {
                Reductions.sum(Elementwise.mul(x, 2.0)).backward();
            }
            assertArrayEquals(new double[] {7, 9, 11}, x.grad().toDoubleArray(), 1e-12, "gradients accumulate");
            x.setGrad(null);
            assertNull(x.grad());
        }
    }

    @Test
    void seedGradientForNonScalarOutputs() {
        try (Tensor x = Tensor.of(new double[] {1, 2, 3, 4}, 2, 2).requiresGrad(true);
                Scope s = Scope.open()) {
            Tensor y = Elementwise.mul(x, x);
            assertThrows(IllegalArgumentException.class, y::backward, "a non-scalar needs a seed");
            y.backward(Tensor.of(new double[] {1, 0, 0.5, -1}, 2, 2), false);
            assertArrayEquals(new double[] {2, 0, 3, -8}, x.grad().toDoubleArray(), 1e-12);
        }
    }

    @Test
    void noGradRecordsNothingAndIntegerResultsAreNotDifferentiable() {
        try (Tensor x = leaf(3); Scope s = Scope.open()) {
            try (var off = Autograd.noGrad()) {
                assertFalse(Autograd.isGradEnabled());
                assertFalse(Elementwise.exp(x).requiresGrad());
                try (var on = Autograd.enableGrad()) {
                    assertTrue(Elementwise.exp(x).requiresGrad());
                }
            }
            assertTrue(Autograd.isGradEnabled());
            assertFalse(Reductions.argmax(x).requiresGrad());
            assertFalse(Elementwise.gt(x, 0).requiresGrad());
            assertTrue(x.detach().isLeaf());
            assertFalse(x.detach().requiresGrad());
            Tensor i = Tensor.of(new int[] {1, 2}, 2);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> i.requiresGrad(true));
            assertTrue(e.getMessage().contains("floating"), e.getMessage());
        }
    }

    @Test
    void retainGraphAllowsASecondBackward() {
        try (Tensor x = Tensor.of(new double[] {0.5, -1}, 2).requiresGrad(true); Scope s = Scope.open()) {
            Tensor y = Reductions.sum(Elementwise.exp(x));
            y.backward(null, true);
            y.backward(null, false);
            assertArrayEquals(new double[] {2 * Math.exp(0.5), 2 * Math.exp(-1)}, x.grad().toDoubleArray(), 1e-12);
            IllegalStateException e = assertThrows(IllegalStateException.class, y::backward);
            assertTrue(e.getMessage().contains("retainGraph"), e.getMessage());
        }
    }

    @Test
    void backwardWithASeedAndZeroGradFreeingTheGradient() throws InterruptedException {
        LeakCheck.settle();
        try (Tensor x = Tensor.of(new double[] {0.5, -1, 2}, 3).requiresGrad(true);
             Tensor seed = Tensor.of(new double[] {3, -2, 0.25}, 3)) {
            long before = CpuBackend.allocatedBytes();
            try (Scope s = Scope.open()) {
                Elementwise.exp(x).backward(seed); // d exp(x) = exp(x) * seed, elementwise
            }
            assertArrayEquals(new double[] {3 * Math.exp(0.5), -2 * Math.exp(-1), 0.25 * Math.exp(2)},
                    x.grad().toDoubleArray(), 1e-12);
            assertEquals(before + 3 * 8, CpuBackend.allocatedBytes(), "only x.grad remains");
            x.zeroGrad();
            assertNull(x.grad());
            assertEquals(before, CpuBackend.allocatedBytes(), "zeroGrad freed the gradient's memory");
            x.zeroGrad(); // none: a no-op
            try (Scope s = Scope.open()) {
                Elementwise.exp(x).backward(seed);
            }
            assertEquals(3 * Math.exp(0.5), x.grad().toDoubleArray()[0], 1e-12, "a fresh gradient, not accumulated");
            x.zeroGrad();
        }
    }

    @Test
    void opsWithoutBackwardRuleFailAtBackwardNamingTheOp() {
        try (Tensor x = leaf(4); Scope s = Scope.open()) {
            Tensor y = Reductions.sum(Elementwise.mul(Elementwise.GELU_GRAD_OP.call(null, x, x), 1.0));
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, y::backward);
            assertTrue(e.getMessage().contains("gelu_grad"), e.getMessage());
        }
    }

    @Test
    void savedTensorsAreFreedByBackwardAndByClosingTheOutputs() throws InterruptedException {
        LeakCheck.settle(); // no other test's garbage can reach the safety net while we count
        try (Tensor x = leaf(256, 256)) {
            long before = CpuBackend.allocatedBytes();
            try (Scope s = Scope.open()) {
                Tensor y = Reductions.sum(Elementwise.tanh(Elementwise.exp(x)));
                y.backward();
            }
            long afterBackward = CpuBackend.allocatedBytes();
            assertEquals(before + 256 * 256 * 8, afterBackward, "only x.grad remains");
            x.setGrad(null);
            try (Scope s = Scope.open()) {
                Reductions.sum(Elementwise.tanh(Elementwise.exp(x)));
            }
            assertEquals(before, CpuBackend.allocatedBytes(), "a tape nobody can reach is freed when its outputs close");
        }
    }

    /**
     * The backward rules free every temporary they make: after forward + backward in a scope, the
     * live bytes are the leaf's gradient only, and nothing accumulates over steps (ReLU's old rule
     * kept its boolean mask alive, 1 byte per element per step).
     */
    @TestFactory
    Stream<DynamicTest> backwardLeavesOnlyTheGradient() {
        record Case(String name, long[] dims, Function<Tensor, Tensor> f) {
        }
        Random r = new Random(9);
        double[] w = new double[4 * 3 * 3 * 3];
        for (int i = 0; i < w.length; i++) {
            w[i] = r.nextGaussian();
        }
        ConvOptions pad1 = ConvOptions.builder().padding(1).build();
        Attention.Options capped = Attention.Options.builder().causal(true).softcap(1).build();
        Case[] cases = {
            new Case("relu", new long[] {64, 64}, Elementwise::relu),
            new Case("gelu", new long[] {64, 64}, Elementwise::gelu),
            new Case("silu", new long[] {64, 64}, Elementwise::silu),
            new Case("sigmoid", new long[] {64, 64}, Elementwise::sigmoid),
            new Case("abs", new long[] {64, 64}, Elementwise::abs),
            new Case("clamp", new long[] {64, 64}, x -> Elementwise.clamp(x, -0.5, 0.5)),
            new Case("softmax", new long[] {64, 64}, x -> Normalization.softmax(x, -1)),
            new Case("layer_norm", new long[] {64, 64}, x -> Normalization.layerNorm(x, null, null, 1, 1e-5)),
            new Case("matmul", new long[] {64, 64}, x -> LinearAlgebra.matmul(x, x.transpose(0, 1))),
            new Case("max", new long[] {64, 64}, x -> Reductions.max(x, false, 1)),
            new Case("conv2d + max_pool2d", new long[] {2, 3, 8, 8},
                    x -> Pooling.maxPool2d(Convolution.conv2d(x, Tensor.of(w, 4, 3, 3, 3), null, pad1), PoolOptions.of(2))),
            new Case("attention (causal, softcap)", new long[] {1, 2, 9, 8},
                    x -> Attention.scaledDotProductAttention(x, x, x, null, capped)),
            new Case("cross_entropy", new long[] {6, 5},
                    x -> CrossEntropy.crossEntropy(x, Tensor.of(new long[] {0, 1, 2, 3, 4, 0}, 6), CrossEntropy.CrossEntropyAttrs.defaults())),
        };
        return Stream.of(cases).map(c -> seededTest(c.name(), () -> {
            LeakCheck.settle(); // the safety net has nothing to free while we count
            try (Tensor x = leaf(c.dims())) {
                long base = CpuBackend.allocatedBytes();
                for (int step = 0; step < 3; step++) {
                    try (Scope s = Scope.open()) {
                        Reductions.sum(c.f().apply(x)).backward();
                    }
                    assertEquals(base + x.numel() * 8, CpuBackend.allocatedBytes(), c.name() + ", step " + step
                            + ": live bytes after backward (x.grad only)");
                    x.setGrad(null);
                    assertEquals(base, CpuBackend.allocatedBytes(), c.name() + ", step " + step + ": after clearing x.grad");
                }
            }
        }));
    }

    @Test
    void gradCheckCatchesAWrongRule() {
        try (Tensor x = leaf(3)) {
            // d/dx of x * detach(x) is detach(x), not 2x: the checker must notice the difference
            AssertionError e = assertThrows(AssertionError.class, () -> GradCheck.check("wrong",
                    in -> Elementwise.mul(in[0], in[0].detach()), x));
            assertTrue(e.getMessage().contains("finite differences"), e.getMessage());
        }
    }
}
