package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertClose;
import static dev.cortado.testing.Reference.assertExact;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.BiFunction;
import java.util.function.DoubleBinaryOperator;
import java.util.function.DoubleUnaryOperator;
import java.util.function.Function;
import java.util.function.LongBinaryOperator;
import java.util.function.LongUnaryOperator;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Every unary and binary elementwise op against a float64 reference computed in plain Java on
 * the inputs as stored (16-bit inputs are read back after rounding). Tolerances:
 * {@link Reference#tol}: float64 1e-12 rel; float32 1e-5 rel + 1e-6 abs (2e-5 for the
 * transcendental ops whose float32 kernels are polynomial approximations); bfloat16 1e-2 rel;
 * float16 2e-3 rel (one rounding of a float32 result: 2^-9 and 2^-12). Integer results are
 * compared exactly against two's-complement wrapping arithmetic.
 */
public class ElementwiseOpsTest {
    private static final DType[] FLOATS = {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16};
    private static final DType[] INTS = {DType.INT8, DType.UINT8, DType.INT32, DType.INT64};
    private static final long[][] UNARY_SHAPES = {{}, {1}, {7}, {3, 5}, {0, 4}, {5, 0}, {17, 33}};
    /** Pairs of operand shapes: equal, broadcast both directions, scalar, empty. */
    private static final long[][][] BINARY_SHAPES = {
        {{}, {}}, {{1}, {7}}, {{7}, {7}}, {{3, 5}, {3, 5}}, {{2, 1, 4}, {3, 1}}, {{3, 1}, {2, 1, 4}},
        {{3, 5}, {}}, {{}, {3, 5}}, {{1, 5}, {3, 1}}, {{0, 4}, {4}}, {{5, 0}, {5, 1}}, {{17, 33}, {17, 33}},
        {{17, 33}, {33}},
    };

    // ================================================================== reference functions
    /** erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (2n+1)!!: all terms positive, no cancellation. */
    public static double erf(double x) {
        if (Math.abs(x) > 6) {
            return Math.signum(x);
        }
        double term = x;
        double sum = x;
        for (int n = 1; n < 200; n++) {
            term *= 2 * x * x / (2 * n + 1);
            sum += term;
            if (Math.abs(term) < 1e-17 * Math.abs(sum)) {
                break;
            }
        }
        return 2 / Math.sqrt(Math.PI) * Math.exp(-x * x) * sum;
    }

    public static double sigmoid(double x) {
        return 1 / (1 + Math.exp(-x));
    }

    public static double geluErf(double x) {
        return 0.5 * x * (1 + erf(x / Math.sqrt(2)));
    }

    public static double geluTanh(double x) {
        return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    }

    record Unary(String name, Function<Tensor, Tensor> op, DoubleUnaryOperator ref, double lo, double hi,
                 double f32Scale) {
        @Override
        public String toString() {
            return name;
        }
    }

    static List<Unary> unaryOps() {
        return List.of(
                new Unary("neg", Elementwise::neg, x -> -x, -3, 3, 1),
                new Unary("abs", Elementwise::abs, Math::abs, -3, 3, 1),
                new Unary("exp", Elementwise::exp, Math::exp, -3, 3, 2),
                new Unary("log", Elementwise::log, Math::log, 0.05, 4, 2),
                new Unary("sqrt", Elementwise::sqrt, Math::sqrt, 0.05, 4, 1),
                new Unary("rsqrt", Elementwise::rsqrt, x -> 1 / Math.sqrt(x), 0.05, 4, 1),
                new Unary("tanh", Elementwise::tanh, Math::tanh, -3, 3, 2),
                new Unary("sigmoid", Elementwise::sigmoid, ElementwiseOpsTest::sigmoid, -3, 3, 2),
                new Unary("relu", Elementwise::relu, x -> Math.max(x, 0), -3, 3, 1),
                new Unary("gelu", Elementwise::gelu, ElementwiseOpsTest::geluErf, -3, 3, 2),
                new Unary("geluTanh", Elementwise::geluTanh, ElementwiseOpsTest::geluTanh, -3, 3, 2),
                new Unary("silu", Elementwise::silu, x -> x * sigmoid(x), -3, 3, 2),
                new Unary("sin", Elementwise::sin, Math::sin, -3, 3, 2),
                new Unary("cos", Elementwise::cos, Math::cos, -3, 3, 2),
                new Unary("reciprocal", Elementwise::reciprocal, x -> 1 / x, 0.05, 3, 1),
                new Unary("reciprocalNeg", Elementwise::reciprocal, x -> 1 / x, -3, -0.05, 1),
                new Unary("clamp", x -> Elementwise.clamp(x, -1.25, 0.75), x -> Math.min(Math.max(x, -1.25), 0.75), -3, 3, 1),
                new Unary("pow2", x -> Elementwise.pow(x, 2), x -> x * x, -3, 3, 1),
                new Unary("pow3", x -> Elementwise.pow(x, 3), x -> x * x * x, -3, 3, 2),
                new Unary("powHalf", x -> Elementwise.pow(x, 0.5), Math::sqrt, 0.05, 4, 2),
                new Unary("powNeg1.5", x -> Elementwise.pow(x, -1.5), x -> Math.pow(x, -1.5), 0.05, 4, 2),
                new Unary("affine", x -> Elementwise.affine(x, -1.75, 0.5), x -> x * -1.75 + 0.5, -3, 3, 1));
    }

    /** The reference value of {@code f} on inputs rounded like the kernel's constants for 16-bit types. */
    @TestFactory
    List<DynamicTest> unaryOpsMatchReference() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 100;
        for (Unary u : unaryOps()) {
            for (DType t : FLOATS) {
                for (long[] dims : UNARY_SHAPES) {
                    long s = seed++;
                    tests.add(dynamicTest(u + " " + t + Arrays.toString(dims), () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(s);
                            int n = (int) Reference.numel(dims);
                            Tensor x = Reference.make(Reference.uniform(r, n, u.lo(), u.hi()), t, dims);
                            double[] xv = x.toDoubleArray();
                            Tensor y = u.op().apply(x);
                            assertEquals(t, y.dtype(), "dtype");
                            assertArrayEquals(dims, y.dims(), "shape");
                            double[] want = new double[n];
                            for (int i = 0; i < n; i++) {
                                want[i] = u.ref().applyAsDouble(xv[i]);
                            }
                            Tol tol = Reference.tol(t);
                            if (t == DType.FLOAT32) {
                                tol = tol.scaled(u.f32Scale());
                            }
                            assertClose(want, y.toDoubleArray(), tol, u + " " + t + Arrays.toString(dims));
                        }
                    }));
                }
            }
        }
        return tests;
    }

    record IntUnary(String name, Function<Tensor, Tensor> op, LongUnaryOperator ref) {
    }

    /** neg, abs, relu, clamp, affine keep integer dtypes; results wrap like two's complement. */
    @TestFactory
    List<DynamicTest> integerUnaryOpsAreExact() {
        List<IntUnary> ops = List.of(
                new IntUnary("neg", Elementwise::neg, x -> -x),
                new IntUnary("abs", Elementwise::abs, Math::abs),
                new IntUnary("relu", Elementwise::relu, x -> Math.max(x, 0)),
                new IntUnary("clamp", x -> Elementwise.clamp(x, -2.5, 7.5), x -> Math.min(Math.max(x, -2), 7)),
                new IntUnary("clampWide", x -> Elementwise.clamp(x, -1e30, 1e30), x -> x),
                new IntUnary("affineInt", x -> Elementwise.affine(x, 3, -7), x -> 3 * x - 7),
                new IntUnary("affineReal", x -> Elementwise.affine(x, 0.5, 0.25), x -> (long) (x * 0.5 + 0.25)));
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 900;
        for (IntUnary u : ops) {
            for (DType t : INTS) {
                for (long[] dims : new long[][] {{}, {7}, {3, 5}, {0, 3}, {17, 33}}) {
                    long s = seed++;
                    tests.add(dynamicTest(u.name() + " " + t + Arrays.toString(dims), () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(s);
                            int n = (int) Reference.numel(dims);
                            double[] in = intData(r, n, t);
                            if (n > 1 && t != DType.UINT8) {
                                in[0] = minOf(t); // the wrap-around corner: -(-128) == -128 in int8
                            }
                            Tensor x = Reference.make(in, t, dims);
                            long[] xv = x.toLongArray();
                            Tensor y = u.op().apply(x);
                            assertEquals(t, y.dtype());
                            long[] got = y.toLongArray();
                            long[] want = new long[n];
                            for (int i = 0; i < n; i++) {
                                want[i] = Reference.wrap(u.ref().applyAsLong(xv[i]), t);
                            }
                            assertArrayEquals(want, got, u.name() + " " + t);
                        }
                    }));
                }
            }
        }
        return tests;
    }

    static double minOf(DType t) {
        return switch (t) {
            case INT8 -> -128;
            case INT32 -> Integer.MIN_VALUE;
            case INT64 -> -(double) (1L << 53);
            default -> 0;
        };
    }

    static double[] intData(Random r, int n, DType t) {
        return switch (t) {
            case INT8 -> Reference.ints(r, n, -128, 127);
            case UINT8 -> Reference.ints(r, n, 0, 255);
            case INT32 -> Reference.ints(r, n, Integer.MIN_VALUE, Integer.MAX_VALUE);
            default -> Reference.ints(r, n, -(1L << 53), 1L << 53);
        };
    }

    /** Floating unary ops on integer input compute in float32 (PyTorch's rule). */
    @Test
    void floatingUnaryOnIntegersGivesFloat32() {
        try (var scope = Scope.open()) {
            for (DType t : INTS) {
                double[] in = Reference.ints(new Random(7), 12, 1, 9);
                Tensor x = Reference.make(in, t, 3, 4);
                for (Unary u : List.of(unaryOps().get(2), unaryOps().get(4), unaryOps().get(7))) {
                    Tensor y = u.op().apply(x);
                    assertEquals(DType.FLOAT32, y.dtype(), u + " of " + t);
                    double[] want = Arrays.stream(in).map(u.ref()).toArray();
                    assertClose(want, y.toDoubleArray(), Reference.tol(DType.FLOAT32).scaled(2), u + " " + t);
                }
            }
        }
    }

    @Test
    void logicalNot() {
        try (var scope = Scope.open()) {
            boolean[] b = Reference.bools(new Random(3), 35);
            Tensor x = Tensor.of(b, 5, 7);
            boolean[] got = Elementwise.logicalNot(x).toBooleanArray();
            for (int i = 0; i < b.length; i++) {
                assertEquals(!b[i], got[i]);
            }
            // non-contiguous bool input
            boolean[] gotT = Elementwise.logicalNot(x.transpose(0, 1)).toBooleanArray();
            for (int i = 0; i < 7; i++) {
                for (int j = 0; j < 5; j++) {
                    assertEquals(!b[j * 7 + i], gotT[i * 5 + j]);
                }
            }
            assertEquals(0, Elementwise.logicalNot(Tensor.of(new boolean[0], 0, 2)).numel());
        }
    }

    // ================================================================== binary
    enum Kind { ARITH, DIV, CMP, LOGIC }

    record Binary(String name, BiFunction<Tensor, Tensor, Tensor> op, DoubleBinaryOperator ref,
                  LongBinaryOperator intRef, Kind kind, double aLo, double aHi, double bLo, double bHi) {
        @Override
        public String toString() {
            return name;
        }
    }

    static long intPow(long a, long b) {
        if (b < 0) {
            if (a == 1) {
                return 1;
            }
            if (a == -1) {
                return (b & 1) != 0 ? -1 : 1;
            }
            return 0;
        }
        long r = 1;
        for (long i = 0; i < b; i++) {
            r *= a;
        }
        return r;
    }

    static List<Binary> binaryOps() {
        return List.of(
                new Binary("add", Elementwise::add, Double::sum, Long::sum, Kind.ARITH, -3, 3, -3, 3),
                new Binary("sub", Elementwise::sub, (a, b) -> a - b, (a, b) -> a - b, Kind.ARITH, -3, 3, -3, 3),
                new Binary("mul", Elementwise::mul, (a, b) -> a * b, (a, b) -> a * b, Kind.ARITH, -3, 3, -3, 3),
                new Binary("div", Elementwise::div, (a, b) -> a / b, null, Kind.DIV, -3, 3, 0.25, 3),
                new Binary("divNeg", Elementwise::div, (a, b) -> a / b, null, Kind.DIV, -3, 3, -3, -0.25),
                new Binary("pow", Elementwise::pow, Math::pow, ElementwiseOpsTest::intPow, Kind.ARITH, 0.1, 3, -2.5, 2.5),
                new Binary("maximum", Elementwise::maximum, Math::max, Math::max, Kind.ARITH, -3, 3, -3, 3),
                new Binary("minimum", Elementwise::minimum, Math::min, Math::min, Kind.ARITH, -3, 3, -3, 3),
                new Binary("eq", Elementwise::eq, (a, b) -> a == b ? 1 : 0, null, Kind.CMP, -2, 2, -2, 2),
                new Binary("ne", Elementwise::ne, (a, b) -> a != b ? 1 : 0, null, Kind.CMP, -2, 2, -2, 2),
                new Binary("lt", Elementwise::lt, (a, b) -> a < b ? 1 : 0, null, Kind.CMP, -2, 2, -2, 2),
                new Binary("le", Elementwise::le, (a, b) -> a <= b ? 1 : 0, null, Kind.CMP, -2, 2, -2, 2),
                new Binary("gt", Elementwise::gt, (a, b) -> a > b ? 1 : 0, null, Kind.CMP, -2, 2, -2, 2),
                new Binary("ge", Elementwise::ge, (a, b) -> a >= b ? 1 : 0, null, Kind.CMP, -2, 2, -2, 2),
                new Binary("logicalAnd", Elementwise::logicalAnd, (a, b) -> (a != 0 && b != 0) ? 1 : 0, null, Kind.LOGIC, 0, 1, 0, 1),
                new Binary("logicalOr", Elementwise::logicalOr, (a, b) -> (a != 0 || b != 0) ? 1 : 0, null, Kind.LOGIC, 0, 1, 0, 1),
                new Binary("logicalXor", Elementwise::logicalXor, (a, b) -> ((a != 0) ^ (b != 0)) ? 1 : 0, null, Kind.LOGIC, 0, 1, 0, 1));
    }

    private static double[] binaryInput(Random r, int n, Binary op, boolean first, DType t) {
        double lo = first ? op.aLo() : op.bLo();
        double hi = first ? op.aHi() : op.bHi();
        if (op.kind() == Kind.LOGIC) {
            return Reference.ints(r, n, 0, 1);
        }
        if (op.kind() == Kind.CMP) {
            return t.isInteger() ? Reference.ints(r, n, t == DType.UINT8 ? 0 : -3, 3) : Reference.grid(r, n, lo, hi);
        }
        return Reference.uniform(r, n, lo, hi);
    }

    /** Float dtypes: all binary ops (logical ops on bool), every shape pair. */
    @TestFactory
    List<DynamicTest> binaryOpsOnFloatsMatchReference() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 2000;
        for (Binary op : binaryOps()) {
            DType[] types = op.kind() == Kind.LOGIC ? new DType[] {DType.BOOL} : FLOATS;
            for (DType t : types) {
                for (long[][] pair : BINARY_SHAPES) {
                    long s = seed++;
                    tests.add(dynamicTest(op + " " + t + Arrays.toString(pair[0]) + Arrays.toString(pair[1]),
                            () -> checkBinary(op, t, pair[0], pair[1], s)));
                }
            }
        }
        return tests;
    }

    private static void checkBinary(Binary op, DType t, long[] da, long[] db, long seed) {
        try (var scope = Scope.open()) {
            Random r = new Random(seed);
            int na = (int) Reference.numel(da);
            int nb = (int) Reference.numel(db);
            Tensor a = Reference.make(binaryInput(r, na, op, true, t), t, da);
            Tensor b = Reference.make(binaryInput(r, nb, op, false, t), t, db);
            double[] av = Reference.values(a);
            double[] bv = Reference.values(b);
            Tensor y = op.op().apply(a, b);
            long[] od = Reference.broadcastShape(da, db);
            assertArrayEquals(od, y.dims(), "shape");
            DType expectType = op.kind() == Kind.CMP || op.kind() == Kind.LOGIC ? DType.BOOL : t;
            assertEquals(expectType, y.dtype(), "dtype");
            int n = (int) Reference.numel(od);
            double[] want = new double[n];
            for (int i = 0; i < n; i++) {
                long[] idx = Reference.unravel(i, od);
                want[i] = op.ref().applyAsDouble(av[Reference.broadcastIndex(idx, da)], bv[Reference.broadcastIndex(idx, db)]);
            }
            String what = op + " " + t + Arrays.toString(da) + Arrays.toString(db);
            if (expectType == DType.BOOL) {
                assertExact(want, Reference.values(y), what);
            } else {
                Tol tol = Reference.tol(t);
                assertClose(want, y.toDoubleArray(), op.name().equals("pow") && t == DType.FLOAT32 ? tol.scaled(2) : tol, what);
            }
        }
    }

    /** Integer arithmetic (wrapping), comparisons (bool), max/min, pow; div gives float32. */
    @TestFactory
    List<DynamicTest> binaryOpsOnIntegersAreExact() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 5000;
        for (Binary op : binaryOps()) {
            if (op.kind() == Kind.LOGIC) {
                continue;
            }
            for (DType t : INTS) {
                for (long[][] pair : new long[][][] {{{3, 5}, {3, 5}}, {{2, 1, 4}, {3, 1}}, {{}, {7}}, {{0, 3}, {3}},
                        {{17, 33}, {17, 33}}}) {
                    long s = seed++;
                    tests.add(dynamicTest(op + " " + t + Arrays.toString(pair[0]) + Arrays.toString(pair[1]), () -> {
                        try (var scope = Scope.open()) {
                            Random r = new Random(s);
                            long[] da = pair[0];
                            long[] db = pair[1];
                            int na = (int) Reference.numel(da);
                            int nb = (int) Reference.numel(db);
                            double[] ain;
                            double[] bin;
                            if (op.kind() == Kind.CMP) {
                                ain = binaryInput(r, na, op, true, t);
                                bin = binaryInput(r, nb, op, false, t);
                            } else if (op.name().equals("pow")) {
                                ain = Reference.ints(r, na, t == DType.UINT8 ? 0 : -4, 4);
                                bin = Reference.ints(r, nb, t == DType.UINT8 ? 0 : -2, 6);
                            } else if (op.kind() == Kind.DIV) {
                                ain = Reference.ints(r, na, t == DType.UINT8 ? 0 : -100, 100);
                                bin = Reference.ints(r, nb, 1, 50);
                            } else {
                                ain = intData(r, na, t);
                                bin = intData(r, nb, t);
                            }
                            Tensor a = Reference.make(ain, t, da);
                            Tensor b = Reference.make(bin, t, db);
                            long[] av = a.toLongArray();
                            long[] bv = b.toLongArray();
                            Tensor y = op.op().apply(a, b);
                            long[] od = Reference.broadcastShape(da, db);
                            assertArrayEquals(od, y.dims());
                            int n = (int) Reference.numel(od);
                            String what = op + " " + t;
                            if (op.kind() == Kind.DIV) {
                                assertEquals(DType.FLOAT32, y.dtype(), what + ": true division gives float32");
                                double[] want = new double[n];
                                for (int i = 0; i < n; i++) {
                                    long[] idx = Reference.unravel(i, od);
                                    want[i] = (double) av[Reference.broadcastIndex(idx, da)] / bv[Reference.broadcastIndex(idx, db)];
                                }
                                assertClose(want, y.toDoubleArray(), Reference.tol(DType.FLOAT32), what);
                            } else if (op.kind() == Kind.CMP) {
                                assertEquals(DType.BOOL, y.dtype());
                                double[] want = new double[n];
                                for (int i = 0; i < n; i++) {
                                    long[] idx = Reference.unravel(i, od);
                                    want[i] = op.ref().applyAsDouble(av[Reference.broadcastIndex(idx, da)],
                                            bv[Reference.broadcastIndex(idx, db)]);
                                }
                                assertExact(want, Reference.values(y), what);
                            } else {
                                assertEquals(t, y.dtype());
                                long[] want = new long[n];
                                for (int i = 0; i < n; i++) {
                                    long[] idx = Reference.unravel(i, od);
                                    want[i] = Reference.wrap(op.intRef().applyAsLong(av[Reference.broadcastIndex(idx, da)],
                                            bv[Reference.broadcastIndex(idx, db)]), t);
                                }
                                assertArrayEquals(want, y.toLongArray(), what);
                            }
                        }
                    }));
                }
            }
        }
        return tests;
    }

    @Test
    void integerDivisionByZeroIsTrueDivision() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.of(new int[] {5, -3, 0, 7}, 4);
            Tensor b = Tensor.of(new int[] {0, 0, 0, 2}, 4);
            Tensor y = Elementwise.div(a, b);
            assertEquals(DType.FLOAT32, y.dtype());
            assertExact(new double[] {Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, Double.NaN, 3.5},
                    y.toDoubleArray(), "int div");
        }
    }

    @Test
    void whereBroadcastsAndPromotes() {
        try (var scope = Scope.open()) {
            Random r = new Random(11);
            long[] dc = {2, 1, 4};
            long[] da = {3, 1};
            long[] db = {4};
            boolean[] c = Reference.bools(r, 8);
            double[] av = Reference.uniform(r, 3, -3, 3);
            Tensor cond = Tensor.of(c, dc);
            Tensor a = Reference.make(av, DType.FLOAT32, da);
            Tensor b = Tensor.of(new int[] {1, -2, 3, -4}, db);
            Tensor y = Elementwise.where(cond, a, b);
            assertEquals(DType.FLOAT32, y.dtype());
            long[] od = {2, 3, 4};
            assertArrayEquals(od, y.dims());
            double[] afl = a.toDoubleArray();
            double[] bd = {1, -2, 3, -4};
            double[] want = new double[24];
            for (int i = 0; i < 24; i++) {
                long[] idx = Reference.unravel(i, od);
                boolean ci = c[Reference.broadcastIndex(idx, dc)];
                want[i] = ci ? afl[Reference.broadcastIndex(idx, da)] : bd[Reference.broadcastIndex(idx, db)];
            }
            assertExact(want, y.toDoubleArray(), "where");
            // every dtype moves bits unchanged; non-contiguous condition and operands
            for (DType t : new DType[] {DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16, DType.INT8, DType.UINT8, DType.INT32,
                    DType.INT64, DType.BOOL}) {
                double[] x1 = t.isFloatingPoint() ? Reference.uniform(r, 15, -3, 3) : Reference.ints(r, 15, 0, 1);
                double[] x2 = t.isFloatingPoint() ? Reference.uniform(r, 15, -3, 3) : Reference.ints(r, 15, 0, 1);
                boolean[] cc = Reference.bools(r, 15);
                Tensor ct = Tensor.of(cc, 5, 3).transpose(0, 1);
                Tensor x = Reference.make(x1, t, 5, 3).transpose(0, 1);
                Tensor z = Reference.make(x2, t, 3, 5);
                Tensor out = Elementwise.where(ct, x, z);
                assertEquals(t, out.dtype());
                double[] xv = Reference.values(Reference.make(x1, t, 15));
                double[] zv = Reference.values(z);
                double[] w = new double[15];
                for (int i = 0; i < 3; i++) {
                    for (int j = 0; j < 5; j++) {
                        w[i * 5 + j] = cc[j * 3 + i] ? xv[j * 3 + i] : zv[i * 5 + j];
                    }
                }
                assertExact(w, Reference.values(out), "where " + t);
            }
            assertEquals(0, Elementwise.where(Tensor.of(new boolean[0], 0), Tensor.of(new float[0], 0),
                    Tensor.of(new float[] {1f}, 1)).numel());
        }
    }

    // ================================================================== views and promotion
    /** Transposed, step-2 sliced and expanded operands give what their elements say. */
    @TestFactory
    List<DynamicTest> nonContiguousOperands() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 7000;
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.INT32}) {
            for (Unary u : unaryOps()) {
                if (t == DType.INT32) {
                    break;
                }
                long s = seed++;
                tests.add(dynamicTest("unary " + u + " " + t, () -> {
                    try (var scope = Scope.open()) {
                        Random r = new Random(s);
                        Tensor base = Reference.make(Reference.uniform(r, 6 * 10, u.lo(), u.hi()), t, 6, 10);
                        double[] bv = base.toDoubleArray();
                        Tensor col = Reference.make(Reference.uniform(r, 6, u.lo(), u.hi()), t, 6, 1);
                        double[] cv = col.toDoubleArray();
                        Tensor[] views = {base.transpose(0, 1), base.slice(1, 1, 10, 2), base.slice(0, 0, 6, 2).transpose(0, 1),
                            col.expand(6, 7), base.permute(1, 0).slice(0, 3, 9, 2)};
                        for (Tensor v : views) {
                            double[] xv = Reference.viewOf(v == views[3] ? cv : bv, v);
                            double[] want = Arrays.stream(xv).map(u.ref()).toArray();
                            Tol tol = Reference.tol(t).scaled(t == DType.FLOAT32 ? u.f32Scale() : 1);
                            assertClose(want, u.op().apply(v).toDoubleArray(), tol,
                                    u + " on view " + Arrays.toString(v.dims()) + Arrays.toString(v.strides()));
                        }
                    }
                }));
            }
            for (Binary op : binaryOps()) {
                if (op.kind() == Kind.LOGIC || (t == DType.INT32 && (op.kind() == Kind.DIV || op.name().equals("pow")))) {
                    continue;
                }
                long s = seed++;
                tests.add(dynamicTest("binary " + op + " " + t, () -> {
                    try (var scope = Scope.open()) {
                        Random r = new Random(s);
                        Tensor ba = Reference.make(t == DType.INT32 ? Reference.ints(r, 60, -50, 50)
                                : binaryInput(r, 60, op, true, t), t, 6, 10);
                        Tensor bb = Reference.make(t == DType.INT32 ? Reference.ints(r, 60, -50, 50)
                                : binaryInput(r, 60, op, false, t), t, 10, 6);
                        double[] av = Reference.values(ba);
                        double[] bv = Reference.values(bb);
                        // a: rows 0,2,4 of [6, 10] x cols 1,3,..,9 -> [3, 5]; b: transposed [6, 10] -> slice -> [3, 5]
                        Tensor a = ba.slice(0, 0, 6, 2).slice(1, 1, 10, 2);
                        Tensor b = bb.transpose(0, 1).slice(0, 1, 6, 2).slice(1, 0, 10, 2).slice(0, 0, 3, 1);
                        Tensor bExp = bb.slice(0, 0, 1, 1).slice(1, 0, 5, 1).expand(3, 5); // [1, 5] stride-0 rows
                        for (Tensor bo : new Tensor[] {b, bExp}) {
                            double[] x = Reference.viewOf(av, a);
                            double[] z = Reference.viewOf(bv, bo);
                            double[] want = new double[x.length];
                            for (int i = 0; i < x.length; i++) {
                                want[i] = op.ref().applyAsDouble(x[i], z[i]);
                            }
                            if (op.kind() != Kind.CMP && t == DType.INT32) {
                                for (int i = 0; i < x.length; i++) {
                                    want[i] = op.intRef().applyAsLong((long) x[i], (long) z[i]);
                                }
                            }
                            Tensor y = op.op().apply(a, bo);
                            assertArrayEquals(new long[] {3, 5}, y.dims());
                            assertClose(want, Reference.values(y), Reference.tol(t).scaled(2), op + " " + t + " views");
                            // and the other operand order (b non-contiguous on the left)
                            Tensor y2 = op.op().apply(bo, a);
                            double[] want2 = new double[x.length];
                            for (int i = 0; i < x.length; i++) {
                                want2[i] = t == DType.INT32 && op.kind() != Kind.CMP
                                        ? op.intRef().applyAsLong((long) z[i], (long) x[i]) : op.ref().applyAsDouble(z[i], x[i]);
                            }
                            if (!op.name().equals("pow")) {
                                assertClose(want2, Reference.values(y2), Reference.tol(t).scaled(2), op + " " + t + " views swapped");
                            }
                        }
                    }
                }));
            }
        }
        return tests;
    }

    @Test
    void typePromotion() {
        try (var scope = Scope.open()) {
            Random r = new Random(21);
            double[] f = Reference.uniform(r, 6, -3, 3);
            double[] i = Reference.ints(r, 6, -100, 100);
            double[] j = Reference.ints(r, 6, 0, 127);
            record Case(DType a, DType b, DType out, double[] av, double[] bv) {
            }
            Case[] cases = {
                new Case(DType.FLOAT32, DType.INT32, DType.FLOAT32, f, i),
                new Case(DType.INT32, DType.FLOAT32, DType.FLOAT32, i, f),
                new Case(DType.BFLOAT16, DType.FLOAT16, DType.FLOAT32, f, f),
                new Case(DType.FLOAT16, DType.FLOAT64, DType.FLOAT64, f, f),
                new Case(DType.INT8, DType.UINT8, DType.INT32, i, j),
                new Case(DType.INT32, DType.INT64, DType.INT64, i, i),
                new Case(DType.UINT8, DType.FLOAT16, DType.FLOAT16, j, f),
                new Case(DType.BOOL, DType.INT32, DType.INT32, Reference.ints(r, 6, 0, 1), i),
                new Case(DType.BFLOAT16, DType.FLOAT32, DType.FLOAT32, f, f),
            };
            for (Case c : cases) {
                Tensor a = Reference.make(c.av(), c.a(), 2, 3);
                Tensor b = Reference.make(Arrays.copyOf(c.bv(), 3), c.b(), 3);
                double[] av = Reference.values(a);
                double[] bv = Reference.values(b);
                Tensor y = Elementwise.add(a, b);
                Tensor m = Elementwise.mul(a, b);
                assertEquals(c.out(), y.dtype(), c.a() + " + " + c.b());
                assertEquals(c.out(), m.dtype(), c.a() + " * " + c.b());
                double[] want = new double[6];
                double[] wantM = new double[6];
                for (int k = 0; k < 6; k++) {
                    want[k] = Reference.roundTo(av[k] + bv[k % 3], c.out());
                    wantM[k] = Reference.roundTo(av[k] * bv[k % 3], c.out());
                }
                assertClose(want, y.toDoubleArray(), Reference.tol(c.out()).scaled(4), c.a() + " + " + c.b());
                assertClose(wantM, m.toDoubleArray(), Reference.tol(c.out()).scaled(4), c.a() + " * " + c.b());
                assertEquals(DType.BOOL, Elementwise.lt(a, b).dtype());
            }
        }
    }

    @Test
    void scalarVariantsKeepTheTensorDtype() {
        try (var scope = Scope.open()) {
            Random r = new Random(31);
            for (DType t : FLOATS) {
                Tensor x = Reference.make(Reference.uniform(r, 15, -3, 3), t, 3, 5);
                double[] xv = x.toDoubleArray();
                Tol tol = Reference.tol(t);
                check(Elementwise.add(x, 2.5), t, Arrays.stream(xv).map(v -> v + 2.5).toArray(), tol, "add scalar");
                check(Elementwise.sub(x, 2.5), t, Arrays.stream(xv).map(v -> v - 2.5).toArray(), tol, "sub scalar");
                check(Elementwise.mul(x, -3.0), t, Arrays.stream(xv).map(v -> v * -3).toArray(), tol, "mul scalar");
                check(Elementwise.div(x, 4.0), t, Arrays.stream(xv).map(v -> v / 4).toArray(), tol, "div scalar");
                check(Elementwise.gt(x, 0.5), DType.BOOL, Arrays.stream(xv).map(v -> v > 0.5 ? 1 : 0).toArray(), tol, "gt scalar");
                check(Elementwise.lt(x, 0.5), DType.BOOL, Arrays.stream(xv).map(v -> v < 0.5 ? 1 : 0).toArray(), tol, "lt scalar");
                check(Elementwise.eq(x, xv[3]), DType.BOOL, Arrays.stream(xv).map(v -> v == xv[3] ? 1 : 0).toArray(), tol,
                        "eq scalar");
            }
            Tensor xi = Tensor.of(new int[] {-7, 0, 3, 9}, 4);
            check(Elementwise.add(xi, 2), DType.INT32, new double[] {-5, 2, 5, 11}, null, "int + 2");
            check(Elementwise.mul(xi, 3), DType.INT32, new double[] {-21, 0, 9, 27}, null, "int * 3");
            check(Elementwise.add(xi, 2.5), DType.FLOAT32, new double[] {-4.5, 2.5, 5.5, 11.5}, null, "int + 2.5");
            check(Elementwise.div(xi, 2), DType.FLOAT32, new double[] {-3.5, 0, 1.5, 4.5}, null, "int / 2");
        }
    }

    private static void check(Tensor y, DType t, double[] want, Tol tol, String what) {
        assertEquals(t, y.dtype(), what + ": dtype");
        if (tol == null || t == DType.BOOL) {
            assertExact(want, Reference.values(y), what);
        } else {
            assertClose(want, y.toDoubleArray(), tol, what);
        }
    }

    /**
     * relu's one-pass gradient: g where y > 0, else 0, for float32, float64 and bfloat16 (exact:
     * it only selects), with y broadcast along rows; y = 0, -0, NaN and an infinite g under a
     * non-positive y all give 0 (an infinite g times a 0 mask would have given NaN).
     */
    @Test
    void reluGradSelectsTheGradientWhereTheOutputIsPositive() {
        Random r = new Random(41);
        double nan = Double.NaN;
        double inf = Double.POSITIVE_INFINITY;
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16}) {
            double[] g = Reference.uniform(r, 5 * 7, -2, 2);
            double[] y = Reference.uniform(r, 7, -1, 1);
            y[0] = 0;
            y[1] = -0.0;
            y[2] = nan;
            y[3] = 0.25;
            g[0] = inf;
            g[2] = -inf;
            g[3] = inf;
            try (Tensor tg = Reference.make(g, t, 5, 7); Tensor ty = Reference.make(y, t, 7);
                 Tensor out = Elementwise.RELU_GRAD_OP.call(null, tg, ty)) {
                assertEquals(t, out.dtype());
                double[] want = new double[g.length];
                for (int i = 0; i < g.length; i++) {
                    double yi = Reference.roundTo(y[i % 7], t);
                    want[i] = yi > 0 ? Reference.roundTo(g[i], t) : 0;
                }
                assertExact(want, out.toDoubleArray(), "relu_grad " + t);
            }
        }
    }

    @Test
    void nanAndInfinityInMaximumMinimumClamp() {
        try (var scope = Scope.open()) {
            double nan = Double.NaN;
            double inf = Double.POSITIVE_INFINITY;
            for (DType t : FLOATS) {
                Tensor a = Reference.make(new double[] {nan, 1, inf, -inf, nan, -0.5}, t, 6);
                Tensor b = Reference.make(new double[] {1, nan, 2, 3, nan, -inf}, t, 6);
                assertExact(new double[] {nan, nan, inf, 3, nan, -0.5}, Elementwise.maximum(a, b).toDoubleArray(), "maximum " + t);
                assertExact(new double[] {nan, nan, 2, -inf, nan, -inf}, Elementwise.minimum(a, b).toDoubleArray(), "minimum " + t);
                assertExact(new double[] {nan, 1, 1.5, -1, nan, -0.5}, Elementwise.clamp(a, -1, 1.5).toDoubleArray(), "clamp " + t);
                assertExact(new double[] {nan, 1, inf, 0, nan, 0}, Elementwise.relu(a).toDoubleArray(), "relu " + t);
                assertExact(new double[] {nan, 1, inf, -1, nan, -0.5},
                        Elementwise.clamp(a, -1, Double.POSITIVE_INFINITY).toDoubleArray(), "one-sided clamp " + t);
                // NaN compares false except ne
                assertExact(new double[] {0, 0, 0, 0, 0, 0}, Reference.values(Elementwise.eq(a, b)), "eq NaN " + t);
                assertExact(new double[] {1, 1, 1, 1, 1, 1}, Reference.values(Elementwise.ne(a, b)), "ne NaN " + t);
            }
        }
    }

    /** 1e6 elements: the OpenMP-parallel row splitting must give the same values. */
    @Test
    void largeOpsRunInParallelCorrectly() {
        try (var scope = Scope.open()) {
            Random r = new Random(41);
            int rows = 1000;
            int cols = 1001;
            double[] av = Reference.uniform(r, rows * cols, -3, 3);
            double[] bv = Reference.uniform(r, cols, -3, 3);
            Tensor a = Reference.make(av, DType.FLOAT32, rows, cols);
            Tensor b = Reference.make(bv, DType.FLOAT32, cols);
            double[] af = a.toDoubleArray();
            double[] bf = b.toDoubleArray();
            double[] sum = Elementwise.add(a, b).toDoubleArray();
            double[] want = new double[rows * cols];
            for (int i = 0; i < want.length; i++) {
                want[i] = af[i] + bf[i % cols];
            }
            assertClose(want, sum, Reference.tol(DType.FLOAT32), "large add");
            double[] e = Elementwise.exp(a).toDoubleArray();
            assertClose(Arrays.stream(af).map(Math::exp).toArray(), e, Reference.tol(DType.FLOAT32).scaled(2), "large exp");
            // a long single row (rows split into pieces) and a transposed large operand
            Tensor flat = a.reshape(-1);
            double[] g = Elementwise.mul(flat, 0.5).toDoubleArray();
            assertClose(Arrays.stream(af).map(x -> x * 0.5).toArray(), g, Reference.tol(DType.FLOAT32), "large row");
            Tensor at = a.transpose(0, 1);
            double[] tanh = Elementwise.tanh(at).toDoubleArray();
            double[] wantT = new double[rows * cols];
            for (int i = 0; i < cols; i++) {
                for (int j = 0; j < rows; j++) {
                    wantT[i * rows + j] = Math.tanh(af[j * cols + i]);
                }
            }
            assertClose(wantT, tanh, Reference.tol(DType.FLOAT32).scaled(2), "large transposed tanh");
            Tensor bh = Reference.make(av, DType.BFLOAT16, rows, cols);
            double[] bhv = bh.toDoubleArray();
            double[] sub = Elementwise.sub(bh, bh.transpose(0, 1).transpose(0, 1)).toDoubleArray();
            assertTrue(Arrays.stream(sub).allMatch(x -> x == 0), "x - x == 0 in bfloat16");
            double[] sq = Elementwise.mul(bh, bh).toDoubleArray();
            assertClose(Arrays.stream(bhv).map(x -> x * x).toArray(), sq, Reference.tol(DType.BFLOAT16), "large bf16 mul");
        }
    }

    // ================================================================== bad input
    @Test
    void broadcastErrorNamesTheShapes() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, 2, 3);
            Tensor b = Tensor.zeros(DType.FLOAT32, 4);
            var e = assertThrows(IllegalArgumentException.class, () -> Elementwise.add(a, b));
            assertTrue(e.getMessage().contains("[2, 3]") && e.getMessage().contains("[4]"), e.getMessage());
        }
    }

    @Test
    void broadcastErrorNamesTheOp() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, 2, 3);
            Tensor b = Tensor.zeros(DType.FLOAT32, 4);
            var e = assertThrows(IllegalArgumentException.class, () -> Elementwise.add(a, b));
            assertTrue(e.getMessage().contains("add"), "message should name the op: " + e.getMessage());
            Tensor c = Tensor.of(new boolean[] {true, false, true}, 3);
            var e2 = assertThrows(IllegalArgumentException.class, () -> Elementwise.where(c, a, b));
            assertTrue(e2.getMessage().contains("where"), "message should name the op: " + e2.getMessage());
        }
    }

    @Test
    void badDtypesNameTheOp() {
        try (var scope = Scope.open()) {
            Tensor bools = Tensor.of(new boolean[] {true, false, true, true, false, false}, 2, 3);
            Tensor f = Tensor.zeros(DType.FLOAT32, 2, 3);
            var e1 = assertThrows(IllegalArgumentException.class, () -> Elementwise.neg(bools));
            assertTrue(e1.getMessage().contains("neg") && e1.getMessage().contains("[2, 3]"), e1.getMessage());
            var e2 = assertThrows(IllegalArgumentException.class, () -> Elementwise.add(bools, bools));
            assertTrue(e2.getMessage().contains("add") && e2.getMessage().contains("[2, 3]"), e2.getMessage());
            var e3 = assertThrows(IllegalArgumentException.class, () -> Elementwise.logicalNot(f));
            assertTrue(e3.getMessage().contains("logical_not") && e3.getMessage().contains("[2, 3]"), e3.getMessage());
            var e4 = assertThrows(IllegalArgumentException.class, () -> Elementwise.where(f, f, f));
            assertTrue(e4.getMessage().contains("where") && e4.getMessage().contains("[2, 3]"), e4.getMessage());
            var e5 = assertThrows(IllegalArgumentException.class, () -> Elementwise.clamp(f, 2, 1));
            assertTrue(e5.getMessage().contains("clamp"), e5.getMessage());
            Tensor closed = Tensor.zeros(DType.FLOAT32, 2);
            closed.close();
            var e6 = assertThrows(IllegalStateException.class, () -> Elementwise.exp(closed));
            assertTrue(e6.getMessage().contains("exp"), e6.getMessage());
        }
    }

    /**
     * float32 tanh (the vectorized polynomial / exp formula of native/cpu/vmath.h) against
     * Math.tanh over 200k points of [-12, 12] (dense around the 0.25 switch point), tiny and
     * subnormal inputs (tanh(x) = x there), saturation and the special values: at most 4 ulp of
     * the float32 result (Math.ulp of the rounded reference).
     */
    @Test
    void tanhFloat32WithinFourUlp() {
        try (var scope = Scope.open()) {
            List<Float> xs = new ArrayList<>();
            for (int i = 0; i <= 200_000; i++) {
                xs.add((float) (-12 + 24.0 * i / 200_000));
            }
            for (int i = -2000; i <= 2000; i++) {
                xs.add(0.25f + i * 1e-6f);
                xs.add(-0.25f + i * 1e-6f);
            }
            for (float x : new float[] {1e-3f, 1e-8f, 1e-30f, Float.MIN_NORMAL, Float.MIN_VALUE, 9.01f, 40f, 1e30f,
                    Float.MAX_VALUE}) {
                xs.add(x);
                xs.add(-x);
            }
            float[] x = new float[xs.size()];
            for (int i = 0; i < x.length; i++) {
                x[i] = xs.get(i);
            }
            float[] y = Elementwise.tanh(Tensor.of(x, x.length)).toFloatArray();
            for (int i = 0; i < x.length; i++) {
                float want = (float) Math.tanh(x[i]);
                assertTrue(Math.abs(y[i] - want) <= 4 * Math.ulp(want), "tanh(" + x[i] + ") = " + y[i] + ", want " + want);
            }
            float[] special = Elementwise.tanh(Tensor.of(new float[] {0f, -0f, Float.POSITIVE_INFINITY,
                    Float.NEGATIVE_INFINITY, Float.NaN}, 5)).toFloatArray();
            assertEquals(Float.floatToRawIntBits(0f), Float.floatToRawIntBits(special[0]), "tanh(+0) = +0");
            assertEquals(Float.floatToRawIntBits(-0f), Float.floatToRawIntBits(special[1]), "tanh(-0) = -0");
            assertEquals(1f, special[2]);
            assertEquals(-1f, special[3]);
            assertTrue(Float.isNaN(special[4]), "tanh(NaN) is NaN");
        }
    }
}
