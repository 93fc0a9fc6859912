package dev.cortado.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.GradCheck;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Reductions;
import dev.cortado.testing.Reference;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Tensor's op methods: each is exactly (bit for bit, same dtype and shape) the family call of the
 * same name on fresh random inputs (odd sizes, broadcasting, a non-contiguous view); gradients flow
 * through a fluent chain (GradCheck in float64, and the same gradients as the family chain);
 * negative dims; strict narrow against clamping slice; the device-taking creation forms; and
 * package {@code tensor} does not reference {@code ops} (or any package above it) in its bytecode.
 */
class FluentTensorTest {

    private record Case(String name, Function<Tensor, Tensor> fluent, Function<Tensor, Tensor> family) {
    }

    /** x [3, 5] float32 in (-2, 2); y broadcasts as [5]; positive inputs for log/sqrt/pow. */
    private static List<Case> cases(Tensor y, Tensor w, Tensor cond) {
        List<Case> c = new ArrayList<>();
        c.add(new Case("add", x -> x.add(y), x -> Elementwise.add(x, y)));
        c.add(new Case("add scalar", x -> x.add(1.25), x -> Elementwise.add(x, 1.25)));
        c.add(new Case("sub", x -> x.sub(y), x -> Elementwise.sub(x, y)));
        c.add(new Case("sub scalar", x -> x.sub(0.5), x -> Elementwise.sub(x, 0.5)));
        c.add(new Case("mul", x -> x.mul(y), x -> Elementwise.mul(x, y)));
        c.add(new Case("mul scalar", x -> x.mul(-3), x -> Elementwise.mul(x, -3)));
        c.add(new Case("div", x -> x.div(y), x -> Elementwise.div(x, y)));
        c.add(new Case("div scalar", x -> x.div(7), x -> Elementwise.div(x, 7)));
        c.add(new Case("pow scalar", x -> x.abs().pow(1.5), x -> Elementwise.pow(Elementwise.abs(x), 1.5)));
        c.add(new Case("pow tensor", x -> x.abs().pow(y), x -> Elementwise.pow(Elementwise.abs(x), y)));
        c.add(new Case("maximum", x -> x.maximum(y), x -> Elementwise.maximum(x, y)));
        c.add(new Case("minimum", x -> x.minimum(y), x -> Elementwise.minimum(x, y)));
        c.add(new Case("neg", Tensor::neg, Elementwise::neg));
        c.add(new Case("abs", Tensor::abs, Elementwise::abs));
        c.add(new Case("exp", Tensor::exp, Elementwise::exp));
        c.add(new Case("log", x -> x.abs().log(), x -> Elementwise.log(Elementwise.abs(x))));
        c.add(new Case("sqrt", x -> x.abs().sqrt(), x -> Elementwise.sqrt(Elementwise.abs(x))));
        c.add(new Case("rsqrt", x -> x.abs().rsqrt(), x -> Elementwise.rsqrt(Elementwise.abs(x))));
        c.add(new Case("reciprocal", Tensor::reciprocal, Elementwise::reciprocal));
        c.add(new Case("sin", Tensor::sin, Elementwise::sin));
        c.add(new Case("cos", Tensor::cos, Elementwise::cos));
        c.add(new Case("tanh", Tensor::tanh, Elementwise::tanh));
        c.add(new Case("sigmoid", Tensor::sigmoid, Elementwise::sigmoid));
        c.add(new Case("relu", Tensor::relu, Elementwise::relu));
        c.add(new Case("gelu", Tensor::gelu, Elementwise::gelu));
        c.add(new Case("silu", Tensor::silu, Elementwise::silu));
        c.add(new Case("clamp", x -> x.clamp(-0.5, 0.75), x -> Elementwise.clamp(x, -0.5, 0.75)));
        c.add(new Case("eq", x -> x.eq(y), x -> Elementwise.eq(x, y)));
        c.add(new Case("eq scalar", x -> x.relu().eq(0), x -> Elementwise.eq(Elementwise.relu(x), 0)));
        c.add(new Case("ne", x -> x.ne(y), x -> Elementwise.ne(x, y)));
        c.add(new Case("ne scalar", x -> x.relu().ne(0), x -> Elementwise.ne(Elementwise.relu(x), 0)));
        c.add(new Case("lt", x -> x.lt(y), x -> Elementwise.lt(x, y)));
        c.add(new Case("lt scalar", x -> x.lt(0.1), x -> Elementwise.lt(x, 0.1)));
        c.add(new Case("le", x -> x.le(y), x -> Elementwise.le(x, y)));
        c.add(new Case("le scalar", x -> x.le(0.1), x -> Elementwise.le(x, 0.1)));
        c.add(new Case("gt", x -> x.gt(y), x -> Elementwise.gt(x, y)));
        c.add(new Case("gt scalar", x -> x.gt(0.1), x -> Elementwise.gt(x, 0.1)));
        c.add(new Case("ge", x -> x.ge(y), x -> Elementwise.ge(x, y)));
        c.add(new Case("ge scalar", x -> x.ge(0.1), x -> Elementwise.ge(x, 0.1)));
        c.add(new Case("logicalNot", x -> x.gt(0).logicalNot(), x -> Elementwise.logicalNot(Elementwise.gt(x, 0))));
        c.add(new Case("logicalAnd", x -> x.gt(0).logicalAnd(cond),
                x -> Elementwise.logicalAnd(Elementwise.gt(x, 0), cond)));
        c.add(new Case("logicalOr", x -> x.gt(0).logicalOr(cond),
                x -> Elementwise.logicalOr(Elementwise.gt(x, 0), cond)));
        c.add(new Case("where", x -> x.where(cond, y), x -> Elementwise.where(cond, x, y)));
        c.add(new Case("sum", Tensor::sum, Reductions::sum));
        c.add(new Case("sum dims", x -> x.sum(1), x -> Reductions.sum(x, false, 1)));
        c.add(new Case("sum two dims", x -> x.sum(0, 1), x -> Reductions.sum(x, false, 0, 1)));
        c.add(new Case("sum keepDim", x -> x.sum(0, true), x -> Reductions.sum(x, true, 0)));
        c.add(new Case("mean", Tensor::mean, Reductions::mean));
        c.add(new Case("mean dims", x -> x.mean(0), x -> Reductions.mean(x, false, 0)));
        c.add(new Case("mean keepDim", x -> x.mean(1, true), x -> Reductions.mean(x, true, 1)));
        c.add(new Case("max", Tensor::max, Reductions::max));
        c.add(new Case("max dims", x -> x.max(1), x -> Reductions.max(x, false, 1)));
        c.add(new Case("max keepDim", x -> x.max(0, true), x -> Reductions.max(x, true, 0)));
        c.add(new Case("min", Tensor::min, Reductions::min));
        c.add(new Case("min dims", x -> x.min(0), x -> Reductions.min(x, false, 0)));
        c.add(new Case("min keepDim", x -> x.min(1, true), x -> Reductions.min(x, true, 1)));
        c.add(new Case("argmax", Tensor::argmax, Reductions::argmax));
        c.add(new Case("argmax dim", x -> x.argmax(1), x -> Reductions.argmax(x, 1, false)));
        c.add(new Case("argmax keepDim", x -> x.argmax(0, true), x -> Reductions.argmax(x, 0, true)));
        c.add(new Case("argmin", Tensor::argmin, Reductions::argmin));
        c.add(new Case("argmin dim", x -> x.argmin(1), x -> Reductions.argmin(x, 1, false)));
        c.add(new Case("argmin keepDim", x -> x.argmin(0, true), x -> Reductions.argmin(x, 0, true)));
        c.add(new Case("softmax", x -> x.softmax(1), x -> Normalization.softmax(x, 1)));
        c.add(new Case("logSoftmax", x -> x.logSoftmax(0), x -> Normalization.logSoftmax(x, 0)));
        c.add(new Case("matmul", x -> x.matmul(w), x -> LinearAlgebra.matmul(x, w)));
        c.add(new Case("to bfloat16", x -> x.to(DType.BFLOAT16), x -> x.to(DType.BFLOAT16)));
        return c;
    }

    @TestFactory
    Stream<DynamicTest> eachMethodIsItsFamilyCall() {
        List<DynamicTest> tests = new ArrayList<>();
        for (DType type : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
            for (boolean transposed : new boolean[] {false, true}) {
                tests.add(DynamicTest.dynamicTest(type + (transposed ? " non-contiguous" : " contiguous"), () -> {
                    try (var scope = Scope.open()) {
                        Random r = new Random(11 + (transposed ? 1 : 0));
                        Tensor x = transposed
                                ? Reference.make(Reference.uniform(r, 15, -2, 2), type, 5, 3).transpose(0, 1)
                                : Reference.make(Reference.uniform(r, 15, -2, 2), type, 3, 5);
                        Tensor y = Reference.make(Reference.uniform(r, 5, 0.25, 2), type, 5);
                        Tensor w = Reference.make(Reference.uniform(r, 5 * 4, -1, 1), type, 5, 4);
                        Tensor cond = Tensor.of(Reference.bools(r, 5), 5);
                        for (Case c : cases(y, w, cond)) {
                            Tensor got = c.fluent().apply(x);
                            Tensor want = c.family().apply(x);
                            String what = c.name() + " " + type + (transposed ? " transposed" : "");
                            assertEquals(want.dtype(), got.dtype(), what + ": dtype");
                            assertEquals(want.shape(), got.shape(), what + ": shape");
                            assertArrayEquals(want.toDoubleArray(), got.toDoubleArray(), 0.0, what + ": values");
                        }
                    }
                }));
            }
        }
        tests.add(DynamicTest.dynamicTest("int32", () -> {
            try (var scope = Scope.open()) {
                Random r = new Random(15);
                Tensor x = Reference.make(Reference.ints(r, 15, -9, 9), DType.INT32, 3, 5);
                Tensor y = Reference.make(Reference.ints(r, 5, 1, 5), DType.INT32, 5);
                Tensor w = Reference.make(Reference.ints(r, 20, -3, 3), DType.FLOAT32, 5, 4);
                Tensor cond = Tensor.of(Reference.bools(r, 5), 5);
                List<String> integerOps = List.of("add", "add scalar", "sub", "sub scalar", "mul", "mul scalar", "div",
                        "div scalar", "maximum", "minimum", "neg", "abs", "relu", "clamp", "eq", "eq scalar", "ne",
                        "ne scalar", "lt", "lt scalar", "le", "le scalar", "gt", "gt scalar", "ge", "ge scalar",
                        "logicalNot", "logicalAnd", "logicalOr", "where", "sum", "sum dims", "sum two dims",
                        "sum keepDim", "max", "max dims", "max keepDim", "min", "min dims", "min keepDim", "argmax",
                        "argmax dim", "argmax keepDim", "argmin", "argmin dim", "argmin keepDim");
                int checked = 0;
                for (Case c : cases(y, w, cond)) {
                    if (integerOps.contains(c.name())) {
                        Tensor got = c.fluent().apply(x);
                        Tensor want = c.family().apply(x);
                        assertEquals(want.dtype(), got.dtype(), c.name() + " int32: dtype");
                        assertEquals(want.shape(), got.shape(), c.name() + " int32: shape");
                        assertArrayEquals(want.toDoubleArray(), got.toDoubleArray(), 0.0, c.name() + " int32: values");
                        checked++;
                    }
                }
                assertEquals(integerOps.size(), checked, "every listed integer case exists");
                assertEquals(DType.INT64, x.sum().dtype(), "integer sums widen to int64, as the family call");
            }
        }));
        return tests.stream();
    }

    @Test
    void negativeDimsCountFromTheEnd() {
        try (var scope = Scope.open()) {
            Random r = new Random(12);
            Tensor x = Reference.make(Reference.uniform(r, 2 * 3 * 5, -2, 2), DType.FLOAT32, 2, 3, 5);
            int[][] pairs = {{-1, 2}, {-2, 1}, {-3, 0}};
            for (int[] p : pairs) {
                String what = "dim " + p[0];
                assertSameValues(x.sum(p[1]), x.sum(p[0]), "sum " + what);
                assertSameValues(x.sum(p[1], true), x.sum(p[0], true), "sum keepDim " + what);
                assertSameValues(x.mean(p[1]), x.mean(p[0]), "mean " + what);
                assertSameValues(x.max(p[1]), x.max(p[0]), "max " + what);
                assertSameValues(x.min(p[1], true), x.min(p[0], true), "min " + what);
                assertSameValues(x.argmax(p[1]), x.argmax(p[0]), "argmax " + what);
                assertSameValues(x.argmin(p[1]), x.argmin(p[0]), "argmin " + what);
                assertSameValues(x.softmax(p[1]), x.softmax(p[0]), "softmax " + what);
                assertSameValues(x.logSoftmax(p[1]), x.logSoftmax(p[0]), "logSoftmax " + what);
            }
            assertSameValues(x.sum(0, 2), x.sum(-3, -1), "sum over two negative dims");
            assertArrayEquals(new long[] {2, 3}, x.argmax(-1).dims());
            // the reference for softmax(-1) along rows of 5, in float64
            double[] xv = x.toDoubleArray();
            double[] sv = x.softmax(-1).toDoubleArray();
            for (int row = 0; row < 6; row++) {
                double m = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < 5; j++) {
                    m = Math.max(m, xv[row * 5 + j]);
                }
                double z = 0;
                for (int j = 0; j < 5; j++) {
                    z += Math.exp(xv[row * 5 + j] - m);
                }
                for (int j = 0; j < 5; j++) {
                    assertEquals(Math.exp(xv[row * 5 + j] - m) / z, sv[row * 5 + j], 1e-6, "softmax(-1) row " + row);
                }
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> x.sum(-4));
            assertTrue(e.getMessage().contains("sum") && e.getMessage().contains("-4"), e.getMessage());
            IllegalArgumentException none = assertThrows(IllegalArgumentException.class, () -> x.sum(new int[0]));
            assertTrue(none.getMessage().contains("sum()"), none.getMessage());
        }
    }

    private static void assertSameValues(Tensor want, Tensor got, String what) {
        assertEquals(want.shape(), got.shape(), what + ": shape");
        assertArrayEquals(want.toDoubleArray(), got.toDoubleArray(), 0.0, what + ": values");
    }

    @Test
    void gradientsFlowThroughAFluentChain() {
        try (var scope = Scope.open()) {
            Random r = new Random(13);
            Tensor x = Reference.make(Reference.uniform(r, 4 * 3, -1, 1), DType.FLOAT64, 4, 3).requiresGrad(true);
            Tensor w = Reference.make(Reference.uniform(r, 3 * 5, -1, 1), DType.FLOAT64, 3, 5).requiresGrad(true);
            Tensor b = Reference.make(Reference.uniform(r, 5, -0.5, 0.5), DType.FLOAT64, 5).requiresGrad(true);
            GradCheck.check("x.matmul(w).add(b).relu().sum()", in -> in[0].matmul(in[1]).add(in[2]).relu().sum(), x, w, b);
            GradCheck.check("fluent mixed chain",
                    in -> in[0].mul(2.5).sub(in[1]).tanh().exp().logSoftmax(-1).mean(0).pow(2.0).sum(), x,
                    Reference.make(Reference.uniform(r, 3, -1, 1), DType.FLOAT64, 3).requiresGrad(true));
            GradCheck.check("fluent sigmoid/gelu/silu/div/sqrt", in -> in[0].sigmoid().add(in[0].gelu())
                    .div(in[0].silu().abs().add(1)).pow(2.0).add(0.1).sqrt().max(-1).sum(), x);

            // the same gradients as the family calls
            Tensor loss = x.matmul(w).add(b).relu().softmax(-1).max(1).sum();
            loss.backward();
            double[] gx = x.grad().toDoubleArray();
            double[] gw = w.grad().toDoubleArray();
            double[] gb = b.grad().toDoubleArray();
            x.setGrad(null);
            w.setGrad(null);
            b.setGrad(null);
            Tensor familyLoss = Reductions.sum(Reductions.max(Normalization.softmax(Elementwise.relu(
                    Elementwise.add(LinearAlgebra.matmul(x, w), b)), -1), false, 1));
            familyLoss.backward();
            assertEquals(familyLoss.item(), loss.item(), 0.0);
            assertArrayEquals(x.grad().toDoubleArray(), gx, 0.0);
            assertArrayEquals(w.grad().toDoubleArray(), gw, 0.0);
            assertArrayEquals(b.grad().toDoubleArray(), gb, 0.0);
            assertFalse(Arrays.stream(gx).allMatch(v -> v == 0), "the gradient reached x");
        }
    }

    @Test
    void errorsAreTheFamilyCallsErrors() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, 2, 3);
            Tensor b = Tensor.zeros(DType.FLOAT32, 4);
            String fluent = assertThrows(IllegalArgumentException.class, () -> a.add(b)).getMessage();
            String family = assertThrows(IllegalArgumentException.class, () -> Elementwise.add(a, b)).getMessage();
            assertEquals(family, fluent);
            assertTrue(fluent.contains("add"), fluent);
            assertThrows(IllegalArgumentException.class, () -> a.clamp(1, 0));
        }
    }

    // ------------------------------------------------------------------ narrow and slice

    @Test
    void narrowIsStrict() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.arange(0, 8, 1, DType.FLOAT32, Device.CPU).reshape(4, 2);
            assertArrayEquals(new double[] {2, 3, 4, 5}, x.narrow(0, 1, 2).toDoubleArray());
            assertArrayEquals(new double[] {4, 5, 6, 7}, x.narrow(0, -2, 2).toDoubleArray(), "negative start");
            assertArrayEquals(new double[] {1, 3, 5, 7}, x.narrow(-1, 1, 1).toDoubleArray(), "negative dim");
            assertArrayEquals(new double[] {0, 1, 2, 3, 4, 5, 6, 7}, x.narrow(0, -4, 4).toDoubleArray());
            assertEquals(0, x.narrow(0, 4, 0).numel(), "an empty range at the end is allowed");
            assertEquals(0, x.narrow(0, 0, 0).numel());
            long[][] bad = {{3, 5}, {4, 1}, {5, 0}, {-5, 1}, {0, -1}, {-1, 2}, {1, 4}};
            for (long[] sl : bad) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> x.narrow(0, sl[0], sl[1]), "narrow(0, " + sl[0] + ", " + sl[1] + ")");
                String m = e.getMessage();
                assertTrue(m.startsWith("narrow(dim 0, start " + sl[0] + ", length " + sl[1] + ")"), m);
                assertTrue(m.contains("float32[4, 2]") && m.contains("dimension 0"), m);
            }
            assertTrue(assertThrows(IllegalArgumentException.class, () -> x.narrow(0, 3, 5)).getMessage()
                    .contains("exceeds the size 4"));
            assertTrue(assertThrows(IllegalArgumentException.class, () -> x.narrow(0, 0, -1)).getMessage()
                    .contains("length must not be negative"));
            assertThrows(IndexOutOfBoundsException.class, () -> x.narrow(2, 0, 1));
        }
    }

    @Test
    void sliceKeepsClamping() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.arange(0, 8, 1, DType.FLOAT32, Device.CPU).reshape(4, 2);
            assertArrayEquals(new double[] {6, 7}, x.slice(0, 3, 8, 1).toDoubleArray());
            assertArrayEquals(new double[] {0, 1, 2, 3}, x.slice(0, -10, 2, 1).toDoubleArray());
            assertEquals(0, x.slice(0, 5, 9, 1).numel());
            assertArrayEquals(new double[] {2, 3, 6, 7}, x.slice(0, 1, 100, 2).toDoubleArray());
        }
    }

    @Test
    void narrowGradient() {
        try (var scope = Scope.open()) {
            Tensor x = Reference.make(Reference.uniform(new Random(14), 12, -1, 1), DType.FLOAT64, 4, 3)
                    .requiresGrad(true);
            GradCheck.check("narrow(-2, -3, 2)", in -> in[0].narrow(-2, -3, 2).mul(in[0].narrow(1, 1, 2).sum()).sum(), x);
        }
    }

    // ------------------------------------------------------------------ creation with a device

    @Test
    void creationTakesADevice() {
        try (var scope = Scope.open()) {
            Device cpu = Device.CPU;
            assertCreated(Tensor.of(new float[] {1.5f, -2}, 2), Tensor.of(new float[] {1.5f, -2}, cpu, 2));
            assertCreated(Tensor.of(new double[] {1.5, -2}, 1, 2), Tensor.of(new double[] {1.5, -2}, cpu, 1, 2));
            assertCreated(Tensor.of(new int[] {3, -4}, 2), Tensor.of(new int[] {3, -4}, cpu, 2));
            assertCreated(Tensor.of(new long[] {3, -4}, 2), Tensor.of(new long[] {3, -4}, cpu, 2));
            assertCreated(Tensor.of(new boolean[] {true, false}, 2), Tensor.of(new boolean[] {true, false}, cpu, 2));
            assertCreated(Tensor.of(new byte[] {-8, 7, 3}, DType.INT4, 3), Tensor.of(new byte[] {-8, 7, 3}, DType.INT4, cpu, 3));
            assertCreated(Tensor.of(new byte[] {-8, 7}, DType.INT8, 2), Tensor.of(new byte[] {-8, 7}, DType.INT8, cpu, 2));
            assertCreated(Tensor.full(2.5, DType.FLOAT32, 2, 2), Tensor.full(2.5, DType.FLOAT32, cpu, 2, 2));
            assertCreated(Tensor.scalar(-1, DType.INT64), Tensor.scalar(-1, DType.INT64, cpu));
            assertCreated(Tensor.arange(1, 2, 0.25, DType.FLOAT32), Tensor.arange(1, 2, 0.25, DType.FLOAT32, cpu));
            assertArrayEquals(new double[] {1, 1.25, 1.5, 1.75}, Tensor.arange(1, 2, 0.25, DType.FLOAT32).toDoubleArray());
            assertThrows(IllegalArgumentException.class, () -> Tensor.of(new float[] {1, 2, 3}, cpu, 2));
        }
    }

    private static void assertCreated(Tensor want, Tensor got) {
        assertEquals(want.dtype(), got.dtype());
        assertEquals(want.shape(), got.shape());
        assertEquals(Device.CPU, got.device());
        assertArrayEquals(want.toDoubleArray(), got.toDoubleArray(), 0.0);
    }

    // ------------------------------------------------------------------ the layer rule

    /**
     * No class of package {@code tensor} names a class of {@code ops} or of a package above it:
     * a class reference is a CONSTANT_Class entry of the class file's constant pool, stored as
     * {@code dev/cortado/ops/...} (the name TensorOps loads by is a string with dots, not a reference).
     */
    @Test
    void tensorPackageDoesNotReferenceOps() throws IOException, URISyntaxException {
        Path dir = Path.of(Tensor.class.getProtectionDomain().getCodeSource().getLocation().toURI())
                .resolve("dev/cortado/tensor");
        List<Path> classes;
        try (Stream<Path> s = Files.list(dir)) {
            classes = s.filter(p -> p.toString().endsWith(".class")).toList();
        }
        assertTrue(classes.size() > 10, "found the compiled classes of dev.cortado.tensor in " + dir);
        for (Path p : classes) {
            String pool = new String(Files.readAllBytes(p), StandardCharsets.ISO_8859_1);
            for (String above : new String[] {"ops", "autograd", "optim", "nn", "io", "cli"}) {
                assertFalse(pool.contains("dev/cortado/" + above + "/"),
                        p.getFileName() + " references dev.cortado." + above + " (package tensor must not depend on it)");
            }
        }
    }
}
