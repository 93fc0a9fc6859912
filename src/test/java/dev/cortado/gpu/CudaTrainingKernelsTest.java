package dev.cortado.gpu;

import static dev.cortado.gpu.CudaOpsTest.assertClose;
import static dev.cortado.gpu.CudaOpsTest.tolerance;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.CrossEntropy;
import dev.cortado.ops.CrossEntropy.CrossEntropyAttrs;
import dev.cortado.ops.CrossEntropy.Reduction;
import dev.cortado.ops.Normalization;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The training kernels (cross-entropy forward/backward, softmax/log-softmax backward, layer/RMS
 * norm backward, index_add) on CUDA against their CPU twins, on fresh random inputs. Run on a GPU
 * machine with {@code mvn verify -Pgpu}. Tolerances (relative, plus 0.1 x that absolute):
 * float64 1e-10, float32 1e-4 (different summation orders: warp trees vs float64 lanes, and
 * index_add's atomics), bfloat16 3e-2, float16 4e-3 (one rounding of a float32 result each side,
 * which may land on neighbouring values).
 */
@Tag("gpu")
class CudaTrainingKernelsTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    private static Tensor random(DType type, double lo, double hi, long... dims) {
        try (Tensor f = Generator.seeded(dims.length * 17L + (dims.length > 0 ? dims[0] : 0) + (long) (hi * 10))
                .uniform(lo, hi, DType.FLOAT32, Device.CPU, dims)) {
            return f.to(type);
        }
    }

    /** Runs {@code op} (all outputs) on CPU inputs and on their CUDA copies; compares each output. */
    private static void twin(String what, double rel, Function<Tensor[], Tensor[]> op, Tensor... cpuInputs) {
        try (var scope = Scope.open()) {
            Tensor[] gpuInputs = new Tensor[cpuInputs.length];
            for (int i = 0; i < cpuInputs.length; i++) {
                gpuInputs[i] = cpuInputs[i] == null ? null : cpuInputs[i].to(GPU);
            }
            Tensor[] c = op.apply(cpuInputs);
            Tensor[] g = op.apply(gpuInputs);
            assertEquals(c.length, g.length);
            for (int i = 0; i < c.length; i++) {
                assertClose(c[i], g[i], rel, what + " output " + i);
            }
        }
    }

    private static Tensor targets(long seed, int rows, int classes, long ignore, long... dims) {
        Random r = new Random(seed);
        long[] t = new long[rows];
        for (int i = 0; i < rows; i++) {
            t[i] = r.nextInt(5) == 0 ? ignore : r.nextInt(classes);
        }
        return Tensor.of(t, dims);
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64", "BFLOAT16", "FLOAT16"})
    void crossEntropy(DType type) {
        double tol = tolerance(type);
        for (int classes : new int[] {1, 37, 1024, 5000}) {
            for (Reduction red : Reduction.values()) {
                for (double eps : new double[] {0, 0.1}) {
                    try (var scope = Scope.open()) {
                        int rows = 3 * 7;
                        Tensor logits = random(type, -8, 8, 3, 7, classes);
                        Tensor target = targets(classes + rows, rows, classes, -100, 3, 7);
                        CrossEntropyAttrs a = new CrossEntropyAttrs(red, -100, eps);
                        String what = "cross_entropy " + type + " C " + classes + " " + red + " eps " + eps;
                        twin(what, tol, in -> CrossEntropy.crossEntropyWithLse(in[0], in[1], a), logits, target);
                        Tensor grad = red == Reduction.NONE ? random(type, -1, 1, 3, 7) : Tensor.scalar(1.5, type,
                                Device.CPU);
                        twin(what + " backward", tol, in -> {
                            Tensor[] f = CrossEntropy.crossEntropyWithLse(in[1], in[2], a);
                            return new Tensor[] {CrossEntropy.crossEntropyBackward(in[0], in[1], in[2], f[1], a)};
                        }, grad, logits, target);
                    }
                }
            }
        }
        try (var scope = Scope.open()) {
            Tensor logits = random(type, -1, 1, 4, 5).to(GPU);
            IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class,
                    () -> CrossEntropy.crossEntropy(logits, Tensor.of(new int[] {0, 9, 1, 1}, 4).to(GPU), CrossEntropyAttrs.defaults()));
            assertTrue(e.getMessage().contains("target 9 at position 1") && e.getMessage().contains("5 classes"),
                    e.getMessage());
            Tensor allIgnored = Tensor.of(new long[] {-100, -100, -100, -100}, 4).to(GPU);
            assertEquals(0.0, CrossEntropy.crossEntropy(logits, allIgnored, CrossEntropyAttrs.defaults()).item());
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64", "BFLOAT16", "FLOAT16"})
    void softmaxAndNormBackward(DType type) {
        double tol = tolerance(type);
        try (var scope = Scope.open()) {
            for (long[] dims : new long[][] {{6, 33, 70}, {4, 5000}, {3, 1, 1}}) {
                Tensor x = random(type, -3, 3, dims);
                Tensor dy = random(type, -1, 1, dims);
                for (int axis : new int[] {-1, 0, 1}) {
                    if (axis >= dims.length) {
                        continue;
                    }
                    for (boolean log : new boolean[] {false, true}) {
                        Normalization.SoftmaxAttrs a = new Normalization.SoftmaxAttrs(axis, log);
                        var op = log ? Normalization.LOG_SOFTMAX_BACKWARD_OP : Normalization.SOFTMAX_BACKWARD_OP;
                        twin(op.name() + " axis " + axis, tol, in -> {
                            Tensor y = log ? Normalization.logSoftmax(in[0], axis) : Normalization.softmax(in[0], axis);
                            return new Tensor[] {op.call(a, y, in[1])};
                        }, x, dy);
                    }
                }
                long cols = dims[dims.length - 1];
                Tensor w = random(type, 0.5, 1.5, cols);
                Normalization.NormAttrs na = new Normalization.NormAttrs(1, 1e-5);
                // parameter gradients sum over many rows: a looser relative bound for 16-bit types
                double ptol = type == DType.FLOAT32 ? 1e-3 : tol * 2;
                twin("layer_norm_backward " + java.util.Arrays.toString(dims), ptol,
                        in -> Normalization.LAYER_NORM_BACKWARD_OP.callMulti(na, in[0], in[1], in[2]), dy, x, w);
                twin("rms_norm_backward " + java.util.Arrays.toString(dims), ptol,
                        in -> Normalization.RMS_NORM_BACKWARD_OP.callMulti(na, in[0], in[1], in[2]), dy, x, w);
                twin("layer_norm_backward no weight", ptol,
                        in -> Normalization.LAYER_NORM_BACKWARD_OP.callMulti(na, in[0], in[1]), dy, x);
            }
            Tensor empty = random(type, -1, 1, 0, 9);
            twin("layer_norm_backward empty batch", tol, in -> Normalization.LAYER_NORM_BACKWARD_OP.callMulti(
                    new Normalization.NormAttrs(1, 1e-5), in[0], in[1], in[2]), empty, empty, random(type, 1, 2, 9));
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64", "BFLOAT16", "FLOAT16"})
    void indexAdd(DType type) {
        double tol = tolerance(type);
        try (var scope = Scope.open()) {
            Random r = new Random(3);
            long[] idx = new long[300];
            for (int j = 0; j < idx.length; j++) {
                idx[j] = r.nextInt(10) == 0 ? -1 : r.nextInt(50);
            }
            Tensor indices = Tensor.of(idx, 3, 100);
            Tensor src = random(type, -1, 1, 3, 100, 64);
            twin("embedding backward", tol, in -> new Tensor[] {Indexing.indexAdd(50, 0, in[0], in[1])}, indices, src);
            Tensor base = random(type, -1, 1, 2, 50, 3);
            Tensor src1 = random(type, -1, 1, 2, 7, 3);
            Tensor idx1 = Tensor.of(new int[] {0, 49, 49, -50, 3, 3, 3}, 7);
            twin("index_add axis 1", tol, in -> new Tensor[] {Indexing.indexAdd(in[0], 1, in[1], in[2])}, base, idx1,
                    src1);
            Tensor gBase = base.to(GPU);
            Tensor gSrc = src1.to(GPU);
            IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class,
                    () -> Indexing.indexAdd(gBase, 1, Tensor.of(new long[] {0, 1, 2, 3, 4, 50, 6}, 7).to(GPU), gSrc));
            assertTrue(e.getMessage().contains("index 50 at position 5"), e.getMessage());
        }
    }
}
