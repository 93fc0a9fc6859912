package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.DeviceOutOfMemoryException;
import dev.cortado.backend.cuda.CachingAllocator;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.backend.cuda.CudaEvent;
import dev.cortado.backend.cuda.CudaStream;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.NormalizationOpsTest;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.function.Function;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Every CUDA op against its CPU twin on fresh random inputs: the whole path Java -> JavaCPP ->
 * libcortado_cuda (and cuBLAS for matmul), the caching allocator, streams, and out-of-memory.
 * Run on a GPU machine with {@code mvn verify -Pgpu}. Tolerances: float32 1e-5 relative (+1e-6
 * absolute; 1e-3 for matmul, whose summation order differs), bfloat16 2e-2, float16 2e-3.
 */
@Tag("gpu")
class CudaOpsTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    /** Uniform(-2, 2) values of {@code type}; every call site passes its own seed. */
    private static Tensor random(long seed, DType type, long... dims) {
        try (Tensor f = Generator.seeded(seed).uniform(-2, 2, DType.FLOAT32, Device.CPU, dims)) {
            return f.to(type);
        }
    }

    static double tolerance(DType t) {
        return switch (t) {
            case BFLOAT16 -> 2e-2;
            case FLOAT16 -> 2e-3;
            case FLOAT64 -> 1e-12;
            default -> 1e-5;
        };
    }

    static void assertClose(Tensor cpu, Tensor gpu, double rel, String what) {
        assertArrayEquals(cpu.dims(), gpu.dims(), what + ": shape");
        assertEquals(cpu.dtype(), gpu.dtype(), what + ": dtype");
        double[] a = cpu.toDoubleArray();
        double[] b = gpu.toDoubleArray();
        for (int i = 0; i < a.length; i++) {
            if (Double.isNaN(a[i])) {
                assertTrue(Double.isNaN(b[i]), what + " [" + i + "]: expected NaN, got " + b[i]);
                continue;
            }
            double tol = rel * Math.abs(a[i]) + rel * 0.1;
            assertTrue(Math.abs(a[i] - b[i]) <= tol, what + " [" + i + "]: cpu " + a[i] + " vs cuda " + b[i]);
        }
    }

    /** Runs {@code op} on CPU inputs and on their CUDA copies; compares. */
    private static void twin(String what, double rel, Function<Tensor[], Tensor> op, Tensor... cpuInputs) {
        try (var scope = Scope.open()) {
            Tensor[] gpuInputs = new Tensor[cpuInputs.length];
            for (int i = 0; i < cpuInputs.length; i++) {
                gpuInputs[i] = cpuInputs[i].to(GPU);
            }
            assertClose(op.apply(cpuInputs), op.apply(gpuInputs), rel, what);
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64", "BFLOAT16", "FLOAT16"})
    void elementwise(DType type) {
        try (var scope = Scope.open()) {
            double tol = tolerance(type);
            Tensor x = random(11, type, 37, 129);
            Tensor y = random(12, type, 129);
            Tensor pos = Elementwise.add(Elementwise.abs(x), 0.5);
            twin("exp", tol, in -> Elementwise.exp(in[0]), x);
            twin("log", tol, in -> Elementwise.log(in[0]), pos);
            twin("sqrt", tol, in -> Elementwise.sqrt(in[0]), pos);
            twin("rsqrt", tol, in -> Elementwise.rsqrt(in[0]), pos);
            twin("tanh", tol, in -> Elementwise.tanh(in[0]), x);
            twin("sigmoid", tol, in -> Elementwise.sigmoid(in[0]), x);
            twin("relu", tol, in -> Elementwise.relu(in[0]), x);
            twin("gelu", tol, in -> Elementwise.gelu(in[0]), x);
            twin("gelu_tanh", tol, in -> Elementwise.geluTanh(in[0]), x);
            twin("silu", tol, in -> Elementwise.silu(in[0]), x);
            twin("relu_grad broadcast", 0, in -> Elementwise.RELU_GRAD_OP.call(null, in[0], in[1]), x, y);
            twin("clamp", tol, in -> Elementwise.clamp(in[0], -0.5, 0.7), x);
            twin("neg of transposed", tol, in -> Elementwise.neg(in[0].transpose(0, 1)), x);
            twin("add broadcast", tol, in -> Elementwise.add(in[0], in[1]), x, y);
            twin("sub", tol, in -> Elementwise.sub(in[1], in[0]), x, y);
            twin("mul strided", tol, in -> Elementwise.mul(in[0].slice(1, 0, 129, 2), in[1].slice(0, 1, 129, 2)), x, y);
            twin("div", tol, in -> Elementwise.div(in[0], in[1]), x, pos);
            twin("pow", tol, in -> Elementwise.pow(in[1], in[0]), x, pos);
            twin("maximum", tol, in -> Elementwise.maximum(in[0], in[1]), x, y);
            twin("lt", 0, in -> Elementwise.lt(in[0], in[1]), x, y);
            twin("where", tol, in -> Elementwise.where(Elementwise.gt(in[0], 0.0), in[0], in[1]), x, y);
            twin("copy to float32", tol, in -> in[0].transpose(0, 1).to(DType.FLOAT32), x);
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "BFLOAT16"})
    void reductionsAndNorms(DType type) {
        try (var scope = Scope.open()) {
            double tol = type == DType.FLOAT32 ? 1e-4 : 3e-2;
            Tensor x = random(21, type, 6, 33, 70);
            for (int[] axes : new int[][] {{}, {0}, {1}, {2}, {0, 2}, {1, 2}}) {
                twin("sum " + java.util.Arrays.toString(axes), tol, in -> Reductions.sum(in[0], true, axes), x);
                twin("mean", tol, in -> Reductions.mean(in[0], false, axes), x);
                twin("max", tol, in -> Reductions.max(in[0], false, axes), x);
                twin("var", tol, in -> Reductions.var(in[0], 1, false, axes), x);
            }
            twin("argmax", 0, in -> Reductions.argmax(in[0], 1, false), x);
            twin("softmax last", tol, in -> Normalization.softmax(in[0], -1), x);
            twin("softmax middle", tol, in -> Normalization.softmax(in[0], 1), x);
            twin("log_softmax", tol, in -> Normalization.logSoftmax(in[0], -1), x);
            Tensor w = random(22, type, 70); // weight and bias from different seeds: a swap shows
            Tensor b = random(23, type, 70);
            twin("layer_norm", tol, in -> Normalization.layerNorm(in[0], in[1], in[2], 1, 1e-5), x, w, b);
            twin("rms_norm", tol, in -> Normalization.rmsNorm(in[0], in[1], 1, 1e-6), x, w);
            Tensor big = random(24, type, 4, 5000);
            twin("softmax long rows", tol, in -> Normalization.softmax(in[0], -1), big);
            // against float64 references computed here from the same (rounded) inputs
            assertClose64(NormalizationOpsTest.layerNormRef(x.toDoubleArray(), 70, w.toDoubleArray(),
                    b.toDoubleArray(), 1e-5, false),
                    Normalization.layerNorm(x.to(GPU), w.to(GPU), b.to(GPU), 1, 1e-5), tol, "layer_norm vs float64");
            assertClose64(NormalizationOpsTest.softmaxRef(big.toDoubleArray(), new long[] {4, 5000}, 1, false),
                    Normalization.softmax(big.to(GPU), -1), tol,
                    "softmax long rows vs float64");
        }
    }

    /**
     * Reductions over large and odd shapes (the block, split and leading-axis paths) against
     * float64 sums of the same inputs. A tree sum of n terms in float32 is off by ~sqrt(n)
     * roundings of the terms' scale: tolerance 64 eps rms(x) sqrt(n) (eps = 1.2e-7) plus the
     * rounding of the result (float32 1.2e-7, bfloat16 2^-8 relative); a mean's is that / n, so
     * it does not grow with n, and a zeroed mean fails it (checked).
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "BFLOAT16"})
    void reductionsOnLargeAndOddShapes(DType type) {
        try (var scope = Scope.open()) {
            long[][] shapes = {{2_000_003}, {300_001, 3}, {4, 100_003}, {7, 1, 33, 5}};
            int[][] axes = {{0}, {0}, {1}, {0, 2}};
            long seed = 31;
            for (int c = 0; c < shapes.length; c++) {
                Tensor x = random(seed++, type, shapes[c]);
                double[] xs = x.toDoubleArray();
                double[][] want = sumAndMean64(xs, shapes[c], axes[c]);
                Tensor gx = x.to(GPU);
                Tensor sum = Reductions.sum(gx, false, axes[c]);
                Tensor mean = Reductions.mean(gx, false, axes[c]);
                long n = 1;
                for (int a : axes[c]) {
                    n *= shapes[c][a];
                }
                double rms = Math.sqrt(java.util.Arrays.stream(xs).map(v -> v * v).sum() / xs.length);
                double eps = 1.2e-7; // float32 accumulation for both dtypes
                double out = type == DType.FLOAT32 ? 1.2e-7 : 1.0 / 256; // rounding of the result
                double sumAbs = 64 * eps * rms * Math.sqrt(n);
                String what = type + " " + java.util.Arrays.toString(shapes[c]) + " axes "
                        + java.util.Arrays.toString(axes[c]);
                assertWithin(want[0], sum.toDoubleArray(), out, sumAbs, what + " sum");
                double meanAbs = sumAbs / n;
                assertWithin(want[1], mean.toDoubleArray(), out, meanAbs, what + " mean");
                double[] zeros = new double[want[1].length];
                assertThrows(AssertionError.class, () -> assertWithin(want[1], zeros, out, meanAbs, "zeros"),
                        what + ": the mean's tolerance accepts zeros");
                int[] ax = axes[c];
                twin("max " + what, 0, in -> Reductions.max(in[0], false, ax), x);
            }
        }
    }

    /** |got - want| <= rel |want| + abs, element by element. */
    static void assertWithin(double[] want, double[] got, double rel, double abs, String what) {
        assertEquals(want.length, got.length, what + ": length");
        for (int i = 0; i < want.length; i++) {
            double lim = rel * Math.abs(want[i]) + abs;
            if (!(Math.abs(got[i] - want[i]) <= lim)) {
                throw new AssertionError(what + " [" + i + "]: " + got[i] + " vs float64 " + want[i] + " (limit " + lim + ")");
            }
        }
    }

    /** A GPU result against a float64 reference: |gpu - ref| <= rel |ref| + rel * 0.01 * max|ref|. */
    static void assertClose64(double[] want, Tensor gpu, double rel, String what) {
        double max = 0;
        for (double w : want) {
            max = Math.max(max, Math.abs(w));
        }
        assertWithin(want, gpu.toDoubleArray(), rel, rel * 0.01 * max, what);
    }

    /** Sum and mean over {@code axes} of a contiguous row-major array, in float64. */
    static double[][] sumAndMean64(double[] x, long[] dims, int[] axes) {
        boolean[] reduced = new boolean[dims.length];
        for (int a : axes) {
            reduced[a] = true;
        }
        long outN = 1;
        long n = 1;
        for (int d = 0; d < dims.length; d++) {
            if (reduced[d]) {
                n *= dims[d];
            } else {
                outN *= dims[d];
            }
        }
        double[] sum = new double[(int) outN];
        long[] idx = new long[dims.length];
        for (int i = 0; i < x.length; i++) {
            long o = 0;
            for (int d = 0; d < dims.length; d++) {
                if (!reduced[d]) {
                    o = o * dims[d] + idx[d];
                }
            }
            sum[(int) o] += x[i];
            for (int d = dims.length - 1; d >= 0; d--) {
                if (++idx[d] < dims[d]) {
                    break;
                }
                idx[d] = 0;
            }
        }
        double[] mean = new double[sum.length];
        for (int i = 0; i < sum.length; i++) {
            mean[i] = sum[i] / n;
        }
        return new double[][] {sum, mean};
    }

    @Test
    void gatherConcatAndMatmul() {
        try (var scope = Scope.open()) {
            Tensor table = random(41, DType.FLOAT32, 50, 64);
            Tensor idx = Tensor.of(new long[] {0, 49, -1, 7, 7}, 5);
            twin("embedding", 0, in -> Indexing.embedding(in[0], in[1]), table, idx);
            Tensor bad = Tensor.of(new long[] {50}, 1).to(GPU);
            Tensor gTable = table.to(GPU);
            assertThrows(IndexOutOfBoundsException.class, () -> Indexing.embedding(gTable, bad));
            twin("concat", 0, in -> Indexing.concat(1, in[0], in[0].narrow(1, 0, 3)), table);
            for (DType t : new DType[] {DType.FLOAT32, DType.BFLOAT16, DType.FLOAT16}) {
                Tensor a = random(42, t, 3, 65, 127);
                Tensor bm = random(43, t, 127, 33);
                twin("matmul " + t, t == DType.FLOAT32 ? 1e-3 : 3e-2, in -> LinearAlgebra.matmul(in[0], in[1]), a, bm);
                twin("matmul transposed " + t, t == DType.FLOAT32 ? 1e-3 : 3e-2,
                        in -> LinearAlgebra.matmul(in[1].transpose(0, 1), in[0].transpose(1, 2)), a, bm);
            }
        }
    }

    @Test
    void randomMatchesTheCpuBitForBit() {
        try (var scope = Scope.open()) {
            Tensor cpu = Generator.seeded(99).uniform(0, 1, DType.FLOAT32, Device.CPU, 100_003);
            Tensor gpu = Generator.seeded(99).uniform(0, 1, DType.FLOAT32, GPU, 100_003);
            assertArrayEquals(cpu.toFloatArray(), gpu.toFloatArray());
            Tensor ncpu = Generator.seeded(5).normal(0, 1, DType.FLOAT32, Device.CPU, 10_001);
            Tensor ngpu = Generator.seeded(5).normal(0, 1, DType.FLOAT32, GPU, 10_001);
            assertClose(ncpu, ngpu, 1e-5, "normal");
        }
    }

    @Test
    void allocatorStreamsAndOutOfMemory() {
        CachingAllocator alloc = CudaBackend.instance().allocator(GPU);
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, GPU, 1 << 20);
            long reserved = alloc.stats().reservedBytes();
            a.close();
            Tensor b = Tensor.zeros(DType.FLOAT32, GPU, 1 << 20);
            assertEquals(reserved, alloc.stats().reservedBytes(), "the freed block was reused");
            assertTrue(alloc.stats().cacheHits() > 0);
            try (CudaStream stream = CudaStream.create(GPU); var use = stream.use();
                 CudaEvent start = CudaEvent.create(); CudaEvent end = CudaEvent.create()) {
                start.record();
                Tensor c = Elementwise.add(b, b);
                end.record();
                end.synchronize();
                assertTrue(end.elapsedSince(start) >= 0);
                assertEquals(0f, c.toFloatArray()[0]);
            }
        }
        long total = CudaBackend.instance().devices().get(0).totalMemoryBytes();
        DeviceOutOfMemoryException e = assertThrows(DeviceOutOfMemoryException.class,
                () -> Tensor.empty(DType.FLOAT32, GPU, total)); // 4x the device
        assertTrue(e.getMessage().contains("CUDA out of memory on cuda:0"), e.getMessage());
        try (Tensor after = Tensor.ones(DType.FLOAT32, GPU, 10)) {
            assertEquals(10f, (float) Reductions.sum(after).item(), "the device still works after OOM");
        }
    }
}
