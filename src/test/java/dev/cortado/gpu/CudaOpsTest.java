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

    private static Tensor random(DType type, long... dims) {
        try (Tensor f = Generator.seeded(dims.length * 31L + dims[0]).uniform(-2, 2, DType.FLOAT32, Device.CPU, dims)) {
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
            Tensor x = random(type, 37, 129);
            Tensor y = random(type, 129);
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
            Tensor x = random(type, 6, 33, 70);
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
            Tensor w = random(type, 70);
            Tensor b = random(type, 70);
            twin("layer_norm", tol, in -> Normalization.layerNorm(in[0], in[1], in[2], 1, 1e-5), x, w, b);
            twin("rms_norm", tol, in -> Normalization.rmsNorm(in[0], in[1], 1, 1e-6), x, w);
            Tensor big = random(type, 4, 5000);
            twin("softmax long rows", tol, in -> Normalization.softmax(in[0], -1), big);
        }
    }

    @Test
    void gatherConcatAndMatmul() {
        try (var scope = Scope.open()) {
            Tensor table = random(DType.FLOAT32, 50, 64);
            Tensor idx = Tensor.of(new long[] {0, 49, -1, 7, 7}, 5);
            twin("embedding", 0, in -> Indexing.embedding(in[0], in[1]), table, idx);
            Tensor bad = Tensor.of(new long[] {50}, 1).to(GPU);
            Tensor gTable = table.to(GPU);
            assertThrows(IndexOutOfBoundsException.class, () -> Indexing.embedding(gTable, bad));
            twin("concat", 0, in -> Indexing.concat(1, in[0], in[0].narrow(1, 0, 3)), table);
            for (DType t : new DType[] {DType.FLOAT32, DType.BFLOAT16, DType.FLOAT16}) {
                Tensor a = random(t, 3, 65, 127);
                Tensor bm = random(t, 127, 33);
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
