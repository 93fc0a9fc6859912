package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.autograd.GradCheck;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.ops.CrossEntropy.CrossEntropyAttrs;
import dev.cortado.ops.CrossEntropy.Reduction;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * cross_entropy and cross_entropy_backward against a float64 reference written here from the
 * definition (log-softmax, smoothed one-hot), on fresh random logits, and the backward rule
 * through GradCheck. Tolerances: float64 1e-12 rel + 1e-12 abs; float32 2e-5 rel + 2e-6 abs
 * (float32 exp polynomial and lane sums; the loss is ~log C); bfloat16 and float16 inputs are
 * compared with the reference on their rounded values (read back) — the kernel computes in
 * float32 and rounds once: losses 1e-2 (bf16) / 2e-3 (f16) relative, gradients (values < 1) the
 * same relative plus 1e-3 (bf16) / 1e-4 (f16) absolute.
 */
public class LossOpsTest {
    static Tol lossTol(DType t) {
        return switch (t) {
            case FLOAT64 -> new Tol(1e-12, 1e-12);
            case FLOAT32 -> new Tol(2e-5, 2e-6);
            case BFLOAT16 -> new Tol(1e-2, 1e-3);
            default -> new Tol(2e-3, 1e-4);
        };
    }

    /** Per-row losses, lse, and dlogits for gradient g (per row) from the definition, in float64. */
    public record Ref(double[] rowLoss, double[] lse, double[] dlogits, int count) {
    }

    public static Ref reference(double[] x, long[] t, int classes, long ignore, double eps, double[] gPerRow) {
        int rows = t.length;
        double[] loss = new double[rows];
        double[] lse = new double[rows];
        double[] dx = new double[x.length];
        int count = 0;
        for (int r = 0; r < rows; r++) {
            double m = Double.NEGATIVE_INFINITY;
            for (int c = 0; c < classes; c++) {
                m = Math.max(m, x[r * classes + c]);
            }
            double s = 0;
            for (int c = 0; c < classes; c++) {
                s += Math.exp(x[r * classes + c] - m);
            }
            lse[r] = m + Math.log(s);
            if (t[r] == ignore) {
                continue;
            }
            count++;
            double l = 0;
            for (int c = 0; c < classes; c++) {
                double logp = x[r * classes + c] - lse[r];
                double q = (c == t[r] ? 1 - eps : 0) + eps / classes;
                l -= q * logp;
                dx[r * classes + c] = (Math.exp(logp) - q) * gPerRow[r];
            }
            loss[r] = l;
        }
        return new Ref(loss, lse, dx, count);
    }

    static long[] targets(Random r, int rows, int classes, long ignore, boolean withIgnored) {
        long[] t = new long[rows];
        for (int i = 0; i < rows; i++) {
            t[i] = withIgnored && r.nextInt(4) == 0 ? ignore : r.nextInt(classes);
        }
        return t;
    }

    static Tensor targetTensor(long[] t, DType type, long... dims) {
        double[] d = new double[t.length];
        for (int i = 0; i < t.length; i++) {
            d[i] = t[i];
        }
        return Reference.make(d, type, dims);
    }

    @TestFactory
    List<DynamicTest> forwardAndBackwardAgainstTheReference() {
        List<DynamicTest> tests = new ArrayList<>();
        long[][] shapes = {{7, 13}, {1, 1}, {3, 4, 5}, {5, 1000}, {2, 3, 37}, {0, 5}, {1, 33}};
        long seed = 11;
        for (DType type : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16, DType.FLOAT16}) {
            for (long[] dims : shapes) {
                for (double eps : new double[] {0, 0.1}) {
                    for (Reduction red : Reduction.values()) {
                        long s = seed++;
                        DType tt = s % 2 == 0 ? DType.INT64 : DType.INT32;
                        tests.add(dynamicTest(type + " " + Arrays.toString(dims) + " smoothing " + eps + " " + red + " "
                                + tt, () -> check(type, dims, eps, red, tt, s)));
                    }
                }
            }
        }
        return tests;
    }

    private static void check(DType type, long[] dims, double eps, Reduction red, DType targetType, long seed) {
        try (var scope = Scope.open()) {
            Random r = new Random(seed);
            int classes = (int) dims[dims.length - 1];
            int rows = (int) (Reference.numel(dims) / classes);
            long[] rowDims = Arrays.copyOf(dims, dims.length - 1);
            long ignore = seed % 3 == 0 ? -100 : 0; // ignore_index also as a valid class id
            long[] t = targets(r, rows, classes, ignore, true);
            Tensor logits = Reference.make(Reference.uniform(r, rows * classes, -6, 6), type, dims);
            double[] xv = logits.toDoubleArray();
            Tensor target = targetTensor(t, targetType, rowDims);
            CrossEntropyAttrs a = CrossEntropyAttrs.builder().reduction(red).ignoreIndex(ignore).labelSmoothing(eps).build();

            Tensor[] out = CrossEntropy.crossEntropyWithLse(logits, target, a);
            double[] gRows = new double[rows];
            double gScalar = 0.5 + r.nextDouble();
            Tensor grad;
            Ref ref0 = reference(xv, t, classes, ignore, eps, new double[rows]);
            if (red == Reduction.NONE) {
                double[] gv = Reference.uniform(r, rows, -2, 2);
                grad = Reference.make(gv, type, rowDims);
                double[] gRead = grad.toDoubleArray();
                System.arraycopy(gRead, 0, gRows, 0, rows);
            } else {
                grad = Reference.make(new double[] {gScalar}, type);
                double g = grad.toDoubleArray()[0];
                double scale = red == Reduction.SUM ? g : (ref0.count() == 0 ? 0 : g / ref0.count());
                Arrays.fill(gRows, scale);
            }
            Ref ref = reference(xv, t, classes, ignore, eps, gRows);
            Tol tol = lossTol(type);
            // lse: float32 (float64 for float64 logits), computed from the rounded inputs
            assertEquals(type == DType.FLOAT64 ? DType.FLOAT64 : DType.FLOAT32, out[1].dtype());
            assertArrayEquals(rowDims, out[1].dims());
            assertClose(ref.lse(), out[1].toDoubleArray(), type == DType.FLOAT64 ? tol : new Tol(2e-6, 2e-6), "lse");
            assertEquals(type, out[0].dtype());
            if (red == Reduction.NONE) {
                assertArrayEquals(rowDims, out[0].dims());
                assertClose(ref.rowLoss(), out[0].toDoubleArray(), tol, "loss none");
            } else {
                assertEquals(0, out[0].rank());
                double sum = 0;
                for (double v : ref.rowLoss()) {
                    sum += v;
                }
                double want = red == Reduction.SUM ? sum : (ref.count() == 0 ? 0 : sum / ref.count());
                assertClose(new double[] {want}, out[0].toDoubleArray(), tol.scaled(red == Reduction.SUM ? 4 : 1),
                        "loss " + red);
            }
            Tensor dx = CrossEntropy.crossEntropyBackward(grad, logits, target, out[1], a);
            assertEquals(type, dx.dtype());
            assertArrayEquals(dims, dx.dims());
            Tol gtol = switch (type) {
                case FLOAT64 -> new Tol(1e-11, 1e-13);
                case FLOAT32 -> new Tol(2e-5, 1e-6);
                case BFLOAT16 -> new Tol(1e-2, 1e-3);
                default -> new Tol(2e-3, 1e-4);
            };
            assertClose(ref.dlogits(), dx.toDoubleArray(), gtol, "dlogits");

            // non-contiguous logits: a transposed [C, rows] buffer viewed as [rows, C]
            if (dims.length == 2 && rows > 0) {
                Tensor tr = logits.transpose(0, 1).contiguous().transpose(0, 1);
                assertTrue(!tr.isContiguous() || rows == 1 || classes == 1);
                Tensor[] o2 = CrossEntropy.crossEntropyWithLse(tr, target, a);
                assertClose(out[0].toDoubleArray(), o2[0].toDoubleArray(), new Tol(0, 0), "strided logits");
                Tensor dx2 = CrossEntropy.crossEntropyBackward(grad, tr, target, o2[1], a);
                assertClose(dx.toDoubleArray(), dx2.toDoubleArray(), new Tol(0, 0), "strided logits backward");
            }
        }
    }

    @Test
    void allRowsIgnoredGiveZeroLossAndZeroGradient() {
        try (var scope = Scope.open()) {
            Tensor logits = Reference.make(Reference.uniform(new Random(3), 12, -2, 2), DType.FLOAT32, 3, 4);
            Tensor target = Tensor.of(new long[] {-100, -100, -100}, 3);
            for (Reduction red : Reduction.values()) {
                CrossEntropyAttrs a = new CrossEntropyAttrs(red, -100, 0.1);
                Tensor[] out = CrossEntropy.crossEntropyWithLse(logits, target, a);
                for (double v : out[0].toDoubleArray()) {
                    assertEquals(0.0, v, red + ": the mean over zero rows is defined as 0 (PyTorch: NaN)");
                }
                Tensor g = red == Reduction.NONE ? Tensor.ones(DType.FLOAT32, 3) : Tensor.ones(DType.FLOAT32);
                Tensor dx = CrossEntropy.crossEntropyBackward(g, logits, target, out[1], a);
                for (double v : dx.toDoubleArray()) {
                    assertEquals(0.0, v, red + " gradient");
                }
            }
            // an empty batch: mean 0, sum 0
            Tensor empty = Tensor.zeros(DType.FLOAT32, 0, 4);
            Tensor noTargets = Tensor.of(new long[0], 0);
            assertEquals(0.0, CrossEntropy.crossEntropy(empty, noTargets, CrossEntropyAttrs.defaults()).item());
        }
    }

    @Test
    void badTargetsAndShapesGiveClearMessages() {
        try (var scope = Scope.open()) {
            Tensor logits = Reference.make(Reference.uniform(new Random(4), 20, -2, 2), DType.FLOAT32, 4, 5);
            IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class,
                    () -> CrossEntropy.crossEntropy(logits, Tensor.of(new long[] {0, 4, -100, 7}, 4), CrossEntropyAttrs.defaults()));
            assertTrue(e.getMessage().startsWith("cross_entropy("), e.getMessage());
            assertTrue(e.getMessage().contains("target 7 at position 3") && e.getMessage().contains("5 classes"),
                    e.getMessage());
            IndexOutOfBoundsException neg = assertThrows(IndexOutOfBoundsException.class,
                    () -> CrossEntropy.crossEntropy(logits, Tensor.of(new int[] {0, -1, 1, 1}, 4), CrossEntropyAttrs.defaults()));
            assertTrue(neg.getMessage().contains("target -1 at position 1"), neg.getMessage());
            IllegalArgumentException shape = assertThrows(IllegalArgumentException.class,
                    () -> CrossEntropy.crossEntropy(logits, Tensor.of(new long[] {0, 1, 2}, 3), CrossEntropyAttrs.defaults()));
            assertTrue(shape.getMessage().startsWith("cross_entropy: target") && shape.getMessage().contains("[4]"),
                    shape.getMessage());
            IllegalArgumentException ftarget = assertThrows(IllegalArgumentException.class,
                    () -> CrossEntropy.crossEntropy(logits, Tensor.of(new float[] {0, 1, 2, 3}, 4), CrossEntropyAttrs.defaults()));
            assertTrue(ftarget.getMessage().contains("'target'") && ftarget.getMessage().contains("float32"),
                    ftarget.getMessage());
            IllegalArgumentException ilogits = assertThrows(IllegalArgumentException.class,
                    () -> CrossEntropy.crossEntropy(Tensor.of(new int[] {1, 2}, 1, 2), Tensor.of(new long[] {0}, 1), CrossEntropyAttrs.defaults()));
            assertTrue(ilogits.getMessage().contains("floating point"), ilogits.getMessage());
            IllegalArgumentException smoothing = assertThrows(IllegalArgumentException.class,
                    () -> new CrossEntropyAttrs(Reduction.MEAN, -100, 1.5));
            assertTrue(smoothing.getMessage().contains("label smoothing"), smoothing.getMessage());
        }
    }

    @Test
    void meanAndSumAreDeterministicAcrossThreadCounts() {
        try (var scope = Scope.open()) {
            Random r = new Random(5);
            int rows = 4099;
            int classes = 64;
            Tensor logits = Reference.make(Reference.uniform(r, rows * classes, -5, 5), DType.FLOAT32, rows, classes);
            Tensor target = targetTensor(targets(r, rows, classes, -100, true), DType.INT64, rows);
            int before = dev.cortado.backend.cpu.NativeCpu.ct_cpu_get_num_threads();
            try {
                CpuBackend.setThreads(1);
                double one = CrossEntropy.crossEntropy(logits, target, CrossEntropyAttrs.defaults()).item();
                CpuBackend.setThreads(2);
                double two = CrossEntropy.crossEntropy(logits, target, CrossEntropyAttrs.defaults()).item();
                assertEquals(one, two, 0.0, "bit-identical whatever the thread count");
            } finally {
                CpuBackend.setThreads(before);
            }
        }
    }

    @Test
    void gradientChecks() {
        try (var scope = Scope.open()) {
            Random r = new Random(6);
            for (Reduction red : Reduction.values()) {
                for (double eps : new double[] {0, 0.1}) {
                    Tensor logits = Reference.make(Reference.uniform(r, 2 * 3 * 5, -2, 2), DType.FLOAT64, 2, 3, 5)
                            .requiresGrad(true);
                    Tensor target = Tensor.of(new long[] {4, -100, 0, 2, 2, 1}, 2, 3);
                    CrossEntropyAttrs a = new CrossEntropyAttrs(red, -100, eps);
                    GradCheck.check("cross_entropy " + red + " smoothing " + eps,
                            in -> CrossEntropy.crossEntropy(in[0], target, a), logits);
                }
            }
            // the lse output is differentiable too (d lse / dx = softmax), alone and with the loss
            Tensor x = Reference.make(Reference.uniform(r, 12, -2, 2), DType.FLOAT64, 3, 4).requiresGrad(true);
            Tensor t = Tensor.of(new long[] {1, -100, 3}, 3);
            CrossEntropyAttrs sum = new CrossEntropyAttrs(Reduction.SUM, -100, 0.1);
            GradCheck.check("cross_entropy lse", in -> CrossEntropy.crossEntropyWithLse(in[0], t, sum)[1], x);
            GradCheck.check("cross_entropy loss + lse^2", in -> {
                Tensor[] o = CrossEntropy.crossEntropyWithLse(in[0], t, sum);
                return Elementwise.add(o[0], Reductions.sum(Elementwise.mul(o[1], o[1])));
            }, x);
            // a small model: embedding -> rms_norm -> layer_norm (as logits) -> loss
            Tensor table = Reference.make(Reference.uniform(r, 6 * 5, -1, 1), DType.FLOAT64, 6, 5).requiresGrad(true);
            Tensor w = Reference.make(Reference.uniform(r, 5, 0.5, 1.5), DType.FLOAT64, 5).requiresGrad(true);
            Tensor ids = Tensor.of(new int[] {5, 0, 0, 3}, 2, 2);
            Tensor labels = Tensor.of(new long[] {4, 1, -100, 0}, 2, 2);
            GradCheck.check("embedding -> rms_norm -> layer_norm -> cross_entropy", in -> {
                Tensor e = Indexing.embedding(in[0], ids);
                Tensor h = Normalization.rmsNorm(e, in[1], 1, 1e-6);
                Tensor z = Normalization.layerNorm(h, null, null, 1, 1e-5);
                return CrossEntropy.crossEntropy(z, labels, CrossEntropyAttrs.builder().labelSmoothing(0.05).build());
            }, table, w);
        }
    }
}
