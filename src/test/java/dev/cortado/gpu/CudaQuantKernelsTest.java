package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.quant.Binary;
import dev.cortado.quant.Int8Gemm;
import dev.cortado.quant.PackedInt8Matrix;
import dev.cortado.quant.PackedWeights;
import dev.cortado.quant.WeightOnly;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The CUDA kernels of the quantization family that have their own code paths by size
 * ({@code native/cuda/quant_weight.cu}, {@code quant_binary.cu} and the tensor-core int8 GEMM of
 * {@code quant.cu}) against the same calls on the CPU, on fresh random inputs:
 * <ul>
 *   <li>weight-only int4 / uint4 / fp8 matmul on the GEMV (m = 1, 3), the tensor-core tile of
 *   16 rows (m = 7) and of 32 rows (m = 37), odd n, float32 and bfloat16 x. Tolerance: relative
 *   to the largest |y|, 3e-5 for float32 (the sums run in another order; float32 x is split into
 *   two bfloat16 halves for the mma, ~2^-17 relative) and 1e-2 for bfloat16 (one rounding of y);</li>
 *   <li>the int8 GEMM (uint8 x int8, zero points, int32 and float32 outputs) on shapes around the
 *   64 x 64 tile and k not a multiple of 4 or 32, a row-strided a (unaligned rows take the byte
 *   path): exact (integers; the float epilogue is the same fma);</li>
 *   <li>binary matmul and convolution: exact (integer popcounts, the same float epilogue).</li>
 * </ul>
 * Run with {@code mvn verify -Pgpu}.
 */
@Tag("gpu")
class CudaQuantKernelsTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: " + CudaBackend.instance().unavailableReason());
    }

    private static void assertCloseToScale(double[] want, double[] got, double rel, String what) {
        assertEquals(want.length, got.length, what);
        double scale = 0;
        for (double v : want) {
            scale = Math.max(scale, Math.abs(v));
        }
        assertTrue(scale > 0, what + ": an all-zero reference proves nothing");
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], rel * scale, what + " at " + i);
        }
    }

    @Test
    void weightOnlyMatmulMatchesTheCpuOnEveryPath() {
        Random r = new Random(7);
        for (WeightOnly.Format f : WeightOnly.Format.values()) {
            for (long m : new long[] {1, 3, 7, 37}) {
                for (DType t : new DType[] {DType.FLOAT32, DType.BFLOAT16}) {
                    long n = 45;
                    long k = 192;
                    int group = m == 7 ? 32 : 64;
                    try (Scope s = Scope.open()) {
                        Tensor w = Tensor.of(r.doubles(n * k, -1, 1).toArray(), n, k);
                        Tensor x = Tensor.of(r.doubles(m * k, -2, 2).toArray(), m, k).to(t);
                        Tensor bias = Tensor.of(r.doubles(n, -1, 1).toArray(), n).to(DType.FLOAT32);
                        try (PackedWeights pc = PackedWeights.quantize(w, f, group);
                             PackedWeights pg = PackedWeights.quantize(w.to(GPU), f, group)) {
                            Tensor yc = WeightOnly.matmul(x, pc, bias);
                            Tensor yg = WeightOnly.matmul(x.to(GPU), pg, bias.to(GPU));
                            assertEquals(GPU, yg.device());
                            assertCloseToScale(yc.toDoubleArray(), yg.cpu().toDoubleArray(), t == DType.FLOAT32 ? 3e-5 : 1e-2,
                                    f + " m=" + m + " " + t);
                        }
                    }
                }
            }
        }
    }

    @Test
    void weightOnlyMatmulRejectsABadScaleOnTheGpu() {
        try (Scope s = Scope.open()) {
            Tensor q = Tensor.of(new Random(3).ints(4 * 64, -8, 8).asDoubleStream().toArray(), 4, 64).to(DType.INT8).to(GPU);
            double[] sc = {0.1, 0.1, 0.1, 0.0, 0.1, 0.1, 0.1, 0.1};
            Tensor scale = Tensor.of(sc, 4, 2).to(DType.FLOAT32).to(GPU);
            try (PackedWeights p = PackedWeights.pack(q, scale, null, WeightOnly.Format.INT4, 32)) {
                Tensor x = Tensor.of(new double[64], 1, 64).to(DType.FLOAT32).to(GPU);
                RuntimeException e = assertThrows(RuntimeException.class, () -> WeightOnly.matmul(x, p, null));
                assertTrue(e.getMessage().contains("wq_matmul") && e.getMessage().contains("scale[3]"), e.getMessage());
            }
        }
    }

    @Test
    void int8GemmOnTensorCoresMatchesTheCpu() {
        Random r = new Random(11);
        long[][] shapes = {{1, 1, 1}, {70, 45, 100}, {64, 64, 32}, {130, 33, 257}};
        for (long[] sh : shapes) {
            long m = sh[0];
            long n = sh[1];
            long k = sh[2];
            for (boolean strided : new boolean[] {false, true}) {
                try (Scope s = Scope.open()) {
                    Tensor aWide = Tensor.of(r.ints(m * (k + 3), 0, 256).asDoubleStream().toArray(), m, k + 3).to(DType.UINT8);
                    Tensor a = strided ? aWide.narrow(1, 0, k) : aWide.narrow(1, 0, k).contiguous();
                    Tensor b = Tensor.of(r.ints(k * n, -128, 128).asDoubleStream().toArray(), k, n).to(DType.INT8);
                    int za = r.nextInt(256);
                    try (PackedInt8Matrix bc = PackedInt8Matrix.pack(b); PackedInt8Matrix bg = PackedInt8Matrix.pack(b.to(GPU))) {
                        Tensor yc = Int8Gemm.matmulInteger(a, za, bc);
                        Tensor yg = Int8Gemm.matmulInteger(a.to(GPU), za, bg);
                        assertArrayEquals(yc.toDoubleArray(), yg.cpu().toDoubleArray(),
                                "qgemm m=" + m + " n=" + n + " k=" + k + (strided ? " strided a" : ""));
                    }
                }
            }
        }
    }

    @Test
    void binaryKernelsMatchTheCpuExactly() {
        Random r = new Random(5);
        for (long[] sh : new long[][] {{67, 65, 577}, {5, 130, 64}, {1, 1, 3}}) {
            try (Scope s = Scope.open()) {
                Tensor x = Tensor.of(r.doubles(sh[0] * sh[2], -1, 1).toArray(), sh[0], sh[2]);
                Tensor w = Tensor.of(r.doubles(sh[1] * sh[2], -1, 1).toArray(), sh[1], sh[2]);
                Tensor alpha = Tensor.of(r.doubles(sh[1], 0.1, 2).toArray(), sh[1]).to(DType.FLOAT32);
                Tensor xb = Binary.binarize(x);
                Tensor wb = Binary.binarize(w);
                assertArrayEquals(xb.toDoubleArray(), Binary.binarize(x.to(GPU)).cpu().toDoubleArray(), "binarize");
                Tensor yc = Binary.matmul(xb, wb, sh[2], alpha, null);
                Tensor yg = Binary.matmul(xb.to(GPU), wb.to(GPU), sh[2], alpha.to(GPU), null);
                assertArrayEquals(yc.toDoubleArray(), yg.cpu().toDoubleArray(), "binary_matmul " + java.util.Arrays.toString(sh));
            }
        }
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.of(r.doubles(2 * 7 * 6 * 70, -1, 1).toArray(), 2, 7, 6, 70);
            Tensor w = Tensor.of(r.doubles(5 * 3 * 3 * 70, -1, 1).toArray(), 5, 3, 3, 70);
            Tensor xb = Binary.binarize(x);
            Tensor wb = Binary.binarize(w);
            Binary.Conv p = new Binary.Conv(70, 2, 1, 1, 1);
            Tensor yc = Binary.conv2d(xb, wb, null, p);
            Tensor yg = Binary.conv2d(xb.to(GPU), wb.to(GPU), null, p);
            assertArrayEquals(yc.toDoubleArray(), yg.cpu().toDoubleArray(), "binary_conv2d");
            Tensor v = Tensor.of(r.doubles(1001, -2, 2).toArray(), 1001);
            assertArrayEquals(Binary.signSte(v).toDoubleArray(), Binary.signSte(v.to(GPU)).cpu().toDoubleArray(), "sign_ste");
        }
    }
}
