package dev.cortado.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The int8 GEMM beyond the OpInfo samples: every CPU kernel this machine runs (AMX-INT8 tiles,
 * AVX-512 VNNI and the exact AVX2 path, each forced with ct_cpu_set_qgemm_kernel) against exact
 * long-arithmetic sums on shapes that cross every tile edge (m not a multiple of 8, 32 or 64, n
 * not a multiple of 16/32/64, k not a multiple of 4 or 64: AMX's copied last k-block; k = 2050 and
 * n = 300: AMX's column groups of 3 and 2 tiles), m over several 4096-row chunks of the packed panel (the phases of one
 * parallel region), extreme values (a = 255, b = -128: the products that would saturate
 * vpmaddubsw) up to the largest k (32768, whose sums come within a factor of 2 of int32's range),
 * and the quantized-tensor entry points against a float64 reference.
 */
class QuantizedGemmTest {

    private static double[] randomInts(Random r, int n, int lo, int hi) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            v[i] = lo + r.nextInt(hi - lo + 1);
        }
        return v;
    }

    private static Tensor bytes(double[] v, DType t, long... dims) {
        byte[] b = new byte[v.length];
        for (int i = 0; i < v.length; i++) {
            b[i] = (byte) (long) v[i];
        }
        return Tensor.of(b, t, dims);
    }

    /** b [k, n] packed with per-column zero points zb (unit scales), in the caller's scope. */
    private static PackedInt8Matrix packedWithZeroPoints(double[] b, int k, int n, double[] zb) {
        QuantizedTensor w = QuantizedTensor.of(bytes(b, DType.INT8, k, n), QuantParams.of(QuantScheme.perChannel(DType.INT8, 1),
                Tensor.ones(DType.FLOAT32, n), Tensor.of(toInts(zb), n)));
        return PackedInt8Matrix.pack(w);
    }

    private static long[] exact(double[] a, double[] b, int m, int k, int n, int za, double[] zb) {
        double[] c = QuantizationReference.qgemm(a, b, m, k, n, zb, null, null, Int8Gemm.Epilogue.int32(za));
        long[] out = new long[c.length];
        for (int i = 0; i < c.length; i++) {
            out[i] = (long) c[i];
        }
        return out;
    }

    /**
     * Runs {@code check} once per int8 GEMM kernel this CPU runs (AVX2 always runs), passing the
     * run's index. A check whose inputs do not vary with the index can pass on a kernel that writes
     * nothing: the output allocation may get the previous run's block back, holding its right
     * answer. The int32 checks therefore take a different A zero point per run.
     */
    private static void allKernels(java.util.function.IntConsumer check) {
        int[] kernels = {NativeCodes.QGEMM_AVX2, NativeCodes.QGEMM_VNNI, NativeCodes.QGEMM_AMX};
        int ran = 0;
        try {
            for (int kernel : kernels) {
                if (NativeCpu.ct_cpu_set_qgemm_kernel(kernel) != 0) {
                    assertTrue(kernel != NativeCodes.QGEMM_AVX2, "the AVX2 kernel runs everywhere");
                    assertTrue(kernel != NativeCodes.QGEMM_AMX || NativeCpu.ct_cpu_has_amx_int8() == 0,
                            "the CPU has AMX-INT8 but the AMX kernel was refused");
                    continue;
                }
                assertEquals(kernel, NativeCpu.ct_cpu_qgemm_kernel());
                check.accept(ran++);
            }
        } finally {
            NativeCpu.ct_cpu_set_qgemm_kernel(NativeCodes.QGEMM_AUTO);
        }
        assertTrue(ran >= 1);
    }

    @Test
    void int32SumsAreExactOnEveryKernel() {
        Random r = new Random(3);
        int[][] shapes = {{70, 301, 100}, {9, 513, 33}, {1, 3, 1}, {65, 4, 64}, {8, 256, 32}, {97, 640, 96}, {33, 1100, 70}, {70, 2050, 300}};
        for (int[] sh : shapes) {
            int m = sh[0];
            int k = sh[1];
            int n = sh[2];
            double[] a = randomInts(r, m * k, 0, 255);
            double[] b = randomInts(r, k * n, -128, 127);
            double[] zb = randomInts(r, n, -128, 127);
            int za0 = r.nextInt(256);
            allKernels(run -> {
                int za = (za0 + 37 * run) % 256;
                long[] want = exact(a, b, m, k, n, za, zb);
                try (Scope scope = Scope.open()) {
                    PackedInt8Matrix packed = packedWithZeroPoints(b, k, n, zb);
                    Tensor c = Int8Gemm.matmulInteger(bytes(a, DType.UINT8, m, k), za, packed);
                    assertArrayEquals(want, c.toLongArray(), "m=" + m + " k=" + k + " n=" + n + " kernel="
                            + CpuBackend.int8GemmKernel());
                }
            });
        }
    }

    @Test
    void rowsOverSeveralPanelChunksAreExact() {
        Random r = new Random(11);
        int m = 8200; // chunks of 4096, 4096 and 8 rows at k = 300
        int k = 300;
        int n = 40;
        double[] a = randomInts(r, m * k, 0, 255);
        double[] b = randomInts(r, k * n, -128, 127);
        allKernels(run -> {
            int za = 77 + run;
            long[] want = exact(a, b, m, k, n, za, null);
            try (Scope scope = Scope.open()) {
                PackedInt8Matrix packed = PackedInt8Matrix.pack(bytes(b, DType.INT8, k, n));
                assertArrayEquals(want, Int8Gemm.matmulInteger(bytes(a, DType.UINT8, m, k), za, packed).toLongArray(),
                        "kernel=" + CpuBackend.int8GemmKernel());
            }
        });
    }

    @Test
    void extremeProductsOverTheLongestKStayExact() {
        int m = 2;
        int k = 32768;
        int n = 17;
        double[] a = new double[m * k];
        double[] b = new double[k * n];
        java.util.Arrays.fill(a, 255);
        java.util.Arrays.fill(b, -128);
        long[] want = exact(a, b, m, k, n, 0, null);
        assertEquals(255L * -128 * k, want[0]);
        allKernels(run -> {
            try (Scope scope = Scope.open()) {
                PackedInt8Matrix packed = PackedInt8Matrix.pack(bytes(b, DType.INT8, k, n));
                assertArrayEquals(want, Int8Gemm.matmulInteger(bytes(a, DType.UINT8, m, k), 0, packed).toLongArray(),
                        "kernel=" + CpuBackend.int8GemmKernel());
            }
        });
    }

    @Test
    void extremeProductsDoNotSaturate() {
        int m = 3;
        int k = 64;
        int n = 20;
        double[] a = new double[m * k];
        double[] b = new double[k * n];
        java.util.Arrays.fill(a, 255);
        java.util.Arrays.fill(b, -128);
        for (int i = 0; i < b.length; i += 3) {
            b[i] = 127;
        }
        long[] want = exact(a, b, m, k, n, 0, null);
        allKernels(run -> {
            try (Scope scope = Scope.open()) {
                PackedInt8Matrix packed = PackedInt8Matrix.pack(bytes(b, DType.INT8, k, n));
                assertArrayEquals(want, Int8Gemm.matmulInteger(bytes(a, DType.UINT8, m, k), 0, packed).toLongArray());
            }
        });
    }

    /**
     * Every epilogue (no activation, ReLU, GELU, SiLU; float32, bfloat16, int8 and uint8 out, the
     * integer outputs with no activation or ReLU: the others are refused) on every kernel, against QuantizationReference.epilogue on the exact sums. Tolerances: none and
     * ReLU are bit for bit in float32 and bfloat16 (the same float32 fma and rounding) and exact in
     * int8; GELU and SiLU (the kernels' float32 forms) within 1e-6 relative plus 1e-7 of the largest
     * |value| in float32, one bfloat16 step (2^-8 relative) in bfloat16.
     * The shapes cross the 16-lane groups, the 64-column tiles and AMX's column groups, with zero
     * points on both sides and a bias; the values f = fma(acc, scale, bias) span about [-8, 8] on
     * the first two shapes and about [-60, 60] on the last (GELU's selected tails past |f| = 12.87).
     */
    @Test
    void everyEpilogueOnEveryKernel() {
        Random r = new Random(21);
        int[][] shapes = {{37, 70, 45}, {70, 300, 100}, {1, 9, 17}, {9, 64, 40}};
        DType[] outs = {DType.FLOAT32, DType.BFLOAT16, DType.INT8, DType.UINT8};
        for (int[] sh : shapes) {
            int m = sh[0];
            int k = sh[1];
            int n = sh[2];
            double[] a = randomInts(r, m * k, 0, 255);
            double[] b = randomInts(r, k * n, -128, 127);
            double[] zb = randomInts(r, n, -20, 20);
            double[] scale = new double[n];
            double[] bias = new double[n];
            for (int j = 0; j < n; j++) {
                scale[j] = (float) ((k == 64 ? 30.0 : 4.0) / (128 * 80 * Math.sqrt(k)) * (0.5 + r.nextDouble()));
                bias[j] = (float) (r.nextDouble() * 4 - 2);
            }
            allKernels(run -> {
                for (Activation act : Activation.values()) {
                    for (DType out : outs) {
                        if ((out == DType.INT8 || out == DType.UINT8) && act != Activation.NONE && act != Activation.RELU) {
                            continue; // refused: epilogueArgumentsAreChecked
                        }
                        int za = (11 * run + 7 * act.ordinal() + 3 * out.ordinal() + 90) % 256;
                        int zo = out == DType.INT8 ? -3 : out == DType.UINT8 ? 100 : 0;
                        // int8 out: values in code units (scale folded as the callers do: so = 1/16)
                        double fold = out == DType.INT8 || out == DType.UINT8 ? 16 : 1;
                        double[] sc = new double[n];
                        double[] bi = new double[n];
                        for (int j = 0; j < n; j++) {
                            sc[j] = (float) (scale[j] * fold);
                            bi[j] = (float) (bias[j] * fold);
                        }
                        Int8Gemm.Epilogue e = new Int8Gemm.Epilogue(za, out, act, zo);
                        double[] want = QuantizationReference.qgemm(a, b, m, k, n, zb, sc, bi, e);
                        try (Scope scope = Scope.open()) {
                            PackedInt8Matrix p = packedWithZeroPoints(b, k, n, zb);
                            Tensor c = Int8Gemm.GEMM_OP.call(e, bytes(a, DType.UINT8, m, k), p.packed(), p.colsum(),
                                    p.zeroPoint(), Tensor.of(toFloats(sc), n), Tensor.of(toFloats(bi), n));
                            assertEquals(out, c.dtype());
                            double[] got = c.toDoubleArray();
                            boolean exact = act == Activation.NONE || act == Activation.RELU;
                            double largest = 0;
                            for (double v : want) {
                                largest = Math.max(largest, Math.abs(v));
                            }
                            for (int i = 0; i < got.length; i++) {
                                double tol;
                                if (exact) {
                                    tol = 0;
                                } else if (out == DType.FLOAT32) {
                                    tol = 1e-6 * Math.abs(want[i]) + 1e-7 * largest;
                                } else {
                                    tol = Math.abs(want[i]) / 256 + 1e-7 * largest; // bfloat16
                                }
                                if (!(Math.abs(got[i] - want[i]) <= tol)) {
                                    throw new AssertionError(act + " " + out + " m=" + m + " k=" + k + " n=" + n + " kernel="
                                            + CpuBackend.int8GemmKernel() + ": element " + i + " is " + got[i] + ", want "
                                            + want[i] + " (tolerance " + tol + ")");
                                }
                            }
                        }
                    }
                }
            });
        }
    }

    @Test
    void epilogueArgumentsAreChecked() {
        var e = assertThrows(IllegalArgumentException.class, () -> new Int8Gemm.Epilogue(0, DType.INT32, Activation.RELU, 0));
        assertTrue(e.getMessage().contains("int32 output") && e.getMessage().contains("RELU"), e.getMessage());
        for (DType out : new DType[] {DType.INT8, DType.UINT8}) {
            for (Activation act : new Activation[] {Activation.GELU, Activation.SILU}) {
                e = assertThrows(IllegalArgumentException.class, () -> new Int8Gemm.Epilogue(0, out, act, 0));
                assertTrue(e.getMessage().contains("does not commute"), e.getMessage());
            }
        }
        e = assertThrows(IllegalArgumentException.class, () -> new Int8Gemm.Epilogue(0, DType.FLOAT16, Activation.NONE, 0));
        assertTrue(e.getMessage().contains("float16") || e.getMessage().contains("FLOAT16"), e.getMessage());
        try (Scope scope = Scope.open()) {
            Random r = new Random(4);
            float[] x = new float[12 * 6];
            float[] wf = new float[6 * 4];
            for (int i = 0; i < x.length; i++) {
                x[i] = r.nextFloat() * 20;
            }
            for (int i = 0; i < wf.length; i++) {
                wf[i] = r.nextFloat() * 2 - 1;
            }
            QuantizedTensor a8 = Quantization.quantize(Tensor.of(x, 12, 6), QuantParams.perTensor(DType.UINT8, 0.1, 0));
            QuantizedTensor w = Quantization.quantize(Tensor.of(wf, 6, 4),
                    QuantParams.of(QuantScheme.perChannel(DType.INT8, 1), Tensor.full(0.01, DType.FLOAT32, 4), null));
            PackedInt8Matrix packed = PackedInt8Matrix.pack(w);
            e = assertThrows(IllegalArgumentException.class, () -> Int8Gemm.matmul(a8, packed, null, Activation.NONE, DType.INT8));
            assertTrue(e.getMessage().contains("float32 or bfloat16"), e.getMessage());
            // the bfloat16 entry point: the float32 result rounded to nearest even
            Tensor f = Int8Gemm.matmul(a8, packed, null, Activation.GELU);
            Tensor h = Int8Gemm.matmul(a8, packed, null, Activation.GELU, DType.BFLOAT16);
            assertEquals(DType.BFLOAT16, h.dtype());
            double[] fv = f.toDoubleArray();
            double[] hv = h.toDoubleArray();
            for (int i = 0; i < fv.length; i++) {
                assertEquals(QuantizationReference.bf16((float) fv[i]), hv[i], 0.0, "element " + i);
            }
        }
    }

    private static float[] toFloats(double[] v) {
        float[] o = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            o[i] = (float) v[i];
        }
        return o;
    }

    @Test
    void quantizedLinearMatchesTheFloat64ReferenceInFloat32AndInt8() {
        Random r = new Random(5);
        int m = 13;
        int k = 70;
        int n = 37;
        float[] x = new float[m * k];
        float[] w = new float[k * n];
        float[] bias = new float[n];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextDouble() * 4 - 1);
        }
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) r.nextGaussian() * 0.2f;
        }
        for (int j = 0; j < n; j++) {
            bias[j] = (float) r.nextGaussian();
        }
        try (Scope scope = Scope.open()) {
            QuantizedTensor xq = Quantization.quantizeDynamic(Tensor.of(x, 1, m, k)); // rank 3: leading dims flattened
            float[] sw = new float[n];
            for (int j = 0; j < n; j++) {
                float amax = 0;
                for (int kk = 0; kk < k; kk++) {
                    amax = Math.max(amax, Math.abs(w[kk * n + j]));
                }
                sw[j] = amax / 127;
            }
            QuantizedTensor wq = Quantization.quantize(Tensor.of(w, k, n),
                    QuantParams.of(QuantScheme.perChannel(DType.INT8, 1).withRange(-127, 127), Tensor.of(sw, n), null));
            PackedInt8Matrix packed = PackedInt8Matrix.pack(wq);
            Tensor bt = Tensor.of(bias, n);
            // float64 reference from the dequantized operands
            double[] xd = xq.dequantize().toDoubleArray();
            double[] wd = wq.dequantize().toDoubleArray();
            double[] ref = new double[m * n];
            double maxAbs = 0;
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double s = bias[j];
                    for (int kk = 0; kk < k; kk++) {
                        s += xd[i * k + kk] * wd[kk * n + j];
                    }
                    ref[i * n + j] = Math.max(s, 0);
                    maxAbs = Math.max(maxAbs, Math.abs(ref[i * n + j]));
                }
            }
            Tensor y = Int8Gemm.matmul(xq, packed, bt, Activation.RELU);
            assertArrayEquals(new long[] {1, m, n}, y.dims());
            double[] got = y.toDoubleArray();
            // float32: one rounding of the scale product and one of the fma, relative to the output's magnitude
            for (int i = 0; i < got.length; i++) {
                assertEquals(ref[i], got[i], 1e-6 * maxAbs + 1e-6 * Math.abs(ref[i]), "element " + i);
            }
            // int8 output: the float result quantized, up to one step where rounding meets a tie
            QuantParams out = QuantParams.perTensor(DType.INT8, maxAbs / 100, -5);
            QuantizedTensor yq = Int8Gemm.matmul(xq, packed, bt, Activation.RELU, out);
            assertEquals(DType.INT8, yq.dtype());
            long[] q = yq.values().toLongArray();
            int same = 0;
            for (int i = 0; i < q.length; i++) {
                double want = Math.max(-128, Math.min(127, Math.rint(ref[i] / (float) (maxAbs / 100)) - 5));
                assertTrue(Math.abs(q[i] - want) <= 1, "element " + i + ": " + q[i] + " vs " + want);
                same += q[i] == want ? 1 : 0;
            }
            assertTrue(same >= q.length * 0.95, same + " of " + q.length + " exact");
        }
    }

    @Test
    void badOperandsAreNamed() {
        try (Scope scope = Scope.open()) {
            PackedInt8Matrix packed = PackedInt8Matrix.pack(Tensor.zeros(DType.INT8, 6, 4));
            var e = assertThrows(IllegalArgumentException.class,
                    () -> Int8Gemm.matmulInteger(Tensor.zeros(DType.UINT8, 3, 5), 0, packed));
            assertTrue(e.getMessage().contains("uint8[3, 5]") && e.getMessage().contains("k = 6"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> Int8Gemm.matmulInteger(Tensor.zeros(DType.INT8, 3, 6), 0, packed));
            assertTrue(e.getMessage().startsWith("qgemm: input 'a'") && e.getMessage().contains("int8[3, 6]"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> Int8Gemm.matmulInteger(Tensor.zeros(DType.UINT8, 3, 6), 300, packed));
            assertTrue(e.getMessage().contains("300"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> PackedInt8Matrix.pack(Tensor.zeros(DType.UINT8, 3, 6)));
            assertTrue(e.getMessage().startsWith("qgemm_pack: input 'b'"), e.getMessage());
            QuantizedTensor grouped = Quantization.quantize(Tensor.zeros(DType.FLOAT32, 4, 8),
                    QuantParams.of(QuantScheme.perGroup(DType.INT8, 1, 4), Tensor.ones(DType.FLOAT32, 4, 2), null));
            e = assertThrows(IllegalArgumentException.class, () -> PackedInt8Matrix.pack(grouped));
            assertTrue(e.getMessage().contains("per group"), e.getMessage());
            QuantizedTensor a8 = Quantization.quantize(Tensor.zeros(DType.FLOAT32, 2, 6), QuantParams.perTensor(DType.INT8, 0.1, 0));
            e = assertThrows(IllegalArgumentException.class, () -> Int8Gemm.matmul(a8, packed, null, Activation.NONE));
            assertTrue(e.getMessage().contains("must be uint8 quantized per tensor"), e.getMessage());
            // the dequantizing form's scale: one element or one per column (n = 4), float32
            for (Tensor badScale : new Tensor[] {Tensor.ones(DType.FLOAT32, 3), Tensor.ones(DType.FLOAT32, 4, 2),
                    Tensor.ones(DType.FLOAT64, 4)}) {
                e = assertThrows(IllegalArgumentException.class,
                        () -> Int8Gemm.matmulIntegerScaled(Tensor.zeros(DType.UINT8, 3, 6), 0, packed, badScale, null));
                assertTrue(e.getMessage().startsWith("Int8Gemm.matmulIntegerScaled: scale " + badScale.describe()),
                        e.getMessage());
            }
        }
    }

    private static int[] toInts(double[] v) {
        int[] o = new int[v.length];
        for (int i = 0; i < v.length; i++) {
            o[i] = (int) v[i];
        }
        return o;
    }
}
