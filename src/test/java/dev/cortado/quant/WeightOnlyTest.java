package dev.cortado.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.nn.Linear;
import dev.cortado.nn.functional.F;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The weight-only kernels beyond the OpInfo samples: the AVX-512 and AVX2 register tiles against
 * the native scalar reference loop (the same float32 formulas, one element at a time) on shapes
 * crossing every tile edge for all four formats (relative 2e-5 of the largest |y|: the fast paths
 * sum in lanes, the reference in order); PackedWeights.quantize against the float product through
 * the existing dequantize op (the packed codes and parameters are the quantized tensor's:
 * 1e-5) and against the float weights (within the quantization error bound sum |x| s / 2); the
 * module; and bad input.
 */
class WeightOnlyTest {

    private static void bothPaths(Runnable check) {
        check.run();
        boolean was = CpuBackend.avx512();
        CpuBackend.setAvx512Enabled(false);
        try {
            check.run();
        } finally {
            CpuBackend.setAvx512Enabled(was);
        }
    }

    private static double maxAbs(float[] v) {
        double m = 0;
        for (float f : v) {
            m = Math.max(m, Math.abs(f));
        }
        return m;
    }

    private static void assertClose(float[] want, float[] got, double rel, String what) {
        assertEquals(want.length, got.length, what);
        double tol = rel * Math.max(1e-30, maxAbs(want));
        for (int i = 0; i < want.length; i++) {
            if (!(Math.abs(want[i] - got[i]) <= tol)) {
                throw new AssertionError(what + ": element " + i + " is " + got[i] + ", the reference " + want[i] + " (tol " + tol + ")");
            }
        }
    }

    private static Tensor randn(Random r, double scale, long... dims) {
        int n = 1;
        for (long d : dims) {
            n *= (int) d;
        }
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (scale * r.nextGaussian());
        }
        return Tensor.of(v, dims);
    }

    @Test
    void registerTilesMatchTheScalarReference() {
        Random r = new Random(11);
        // {m, n, k[, group]}: group 96 and odd block counts (k / 32) reach every path of the int4 kernels
        int[][] shapes = {{1, 7, 256}, {5, 9, 96}, {4, 8, 128}, {9, 33, 64}, {2, 1, 32}, {3, 4096 / 64, 4096},
                {2, 5, 192, 96}, {1, 3, 160, 32}};
        for (WeightOnly.Format f : WeightOnly.Format.values()) {
            for (int[] sh : shapes) {
                int m = sh[0];
                int n = sh[1];
                int k = sh[2];
                int group = sh.length > 3 ? sh[3] : k % 64 == 0 ? 64 : 32;
                bothPaths(() -> {
                    try (Scope scope = Scope.open()) {
                        PackedWeights w = PackedWeights.quantize(randn(r, 0.3, n, k), f, group);
                        Tensor x = randn(r, 1, m, k);
                        Tensor bias = randn(r, 1, n);
                        Tensor fast = WeightOnly.matmul(x, w, bias);
                        Tensor ref = Tensor.empty(DType.FLOAT32, m, n);
                        WeightOnly.matmulKernel(new WeightOnly.Spec(f, group),
                                new Tensor[] {x, w.packed(), w.scale(), w.zeroPoint(), bias}, new Tensor[] {ref}, true);
                        assertClose(ref.toFloatArray(), fast.toFloatArray(), 2e-5,
                                f + " m=" + m + " n=" + n + " k=" + k + " avx512=" + CpuBackend.avx512());
                        w.close();
                    }
                });
            }
        }
    }

    @Test
    void packedWeightsAreTheQuantizedTensorsCodesAndParameters() {
        Random r = new Random(5);
        for (WeightOnly.Format f : new WeightOnly.Format[] {WeightOnly.Format.UINT4, WeightOnly.Format.INT4}) {
            try (Scope scope = Scope.open()) {
                int n = 13;
                int k = 192;
                Tensor wf = randn(r, 0.2, n, k);
                QuantScheme s = f == WeightOnly.Format.UINT4 ? QuantScheme.perGroup(DType.UINT8, 1, 64).withRange(0, 15)
                        : QuantScheme.perGroup(DType.INT8, 1, 64).withRange(-8, 7);
                MinMaxObserver obs = MinMaxObserver.of(s);
                obs.observe(wf);
                QuantParams p = obs.params();
                QuantizedTensor q = Quantization.quantize(wf, p);
                PackedWeights w = PackedWeights.pack(q.values(), p.scale(), p.zeroPoint(), f, 64);
                Tensor x = randn(r, 1, 6, k);
                Tensor want = F.linear(x, q.dequantize(), null);
                assertClose(want.toFloatArray(), WeightOnly.matmul(x, w, null).toFloatArray(), 1e-5, f.toString());
                w.close();
                q.close();
                p.close();
            }
        }
    }

    @Test
    void quantizationErrorStaysWithinHalfAStep() {
        Random r = new Random(8);
        for (WeightOnly.Format f : new WeightOnly.Format[] {WeightOnly.Format.INT4, WeightOnly.Format.UINT4}) {
            for (int group : new int[] {32, 64, 128}) {
                try (Scope scope = Scope.open()) {
                    int n = 17;
                    int k = 256;
                    Tensor wf = randn(r, 0.2, n, k);
                    PackedWeights w = PackedWeights.quantize(wf, f, group);
                    Tensor x = randn(r, 1, 3, k);
                    float[] got = WeightOnly.matmul(x, w, null).toFloatArray();
                    float[] want = F.linear(x, wf, null).toFloatArray();
                    float[] xs = x.toFloatArray();
                    float[] sc = w.scale().toFloatArray();
                    for (int i = 0; i < 3; i++) {
                        for (int j = 0; j < n; j++) {
                            double bound = 1e-4;
                            for (int kk = 0; kk < k; kk++) {
                                bound += Math.abs(xs[i * k + kk]) * sc[j * (k / group) + kk / group] * 0.5;
                            }
                            double err = Math.abs(got[i * n + j] - want[i * n + j]);
                            assertTrue(err <= bound, f + " g" + group + " y[" + i + ", " + j + "] error " + err + " > " + bound);
                        }
                    }
                    w.close();
                }
            }
        }
    }

    @Test
    void moduleMatchesTheFloatLinearWithinTheQuantizationError() {
        try (Scope scope = Scope.open(); Linear lin = new Linear(96, 40);
             WeightOnlyLinear q4 = new WeightOnlyLinear(lin, WeightOnly.Format.INT4, 32);
             WeightOnlyLinear q8 = new WeightOnlyLinear(lin, WeightOnly.Format.FLOAT8_E4M3, 96)) {
            Tensor x = randn(new Random(2), 1, 2, 3, 96);
            float[] want;
            try (var ng = dev.cortado.autograd.Autograd.noGrad()) {
                want = lin.forward(x).toFloatArray();
            }
            Tensor y4 = q4.forward(x);
            assertEquals(java.util.List.of(2L, 3L, 40L), java.util.Arrays.stream(y4.dims()).boxed().toList());
            double scale = maxAbs(want);
            float[] g4 = y4.toFloatArray();
            float[] g8 = q8.forward(x).toFloatArray();
            double e4 = 0;
            double e8 = 0;
            for (int i = 0; i < want.length; i++) {
                e4 = Math.max(e4, Math.abs(g4[i] - want[i]));
                e8 = Math.max(e8, Math.abs(g8[i] - want[i]));
            }
            assertTrue(e4 < 0.15 * scale && e4 > 0, "int4 error " + e4 + " of " + scale);
            assertTrue(e8 < 0.05 * scale && e8 > 0, "fp8 error " + e8 + " of " + scale);
            Tensor yb = q4.forward(x.to(DType.BFLOAT16));
            assertEquals(DType.BFLOAT16, yb.dtype());
            assertClose(g4, yb.to(DType.FLOAT32).toFloatArray(), 3e-2, "bf16 activations");
            assertTrue(q4.state().containsKey("packed") && q4.state().containsKey("scale"), q4.state().keySet().toString());
        }
    }

    @Test
    void broadcastAndStridedActivationRowsAreRead() {
        try (Scope scope = Scope.open()) {
            Random r = new Random(6);
            PackedWeights w = PackedWeights.quantize(randn(r, 0.3, 9, 64), WeightOnly.Format.INT4, 32);
            Tensor row = randn(r, 1, 1, 64);
            float[] one = WeightOnly.matmul(row, w, null).toFloatArray();
            float[] many = WeightOnly.matmul(row.expand(5, 64), w, null).toFloatArray();  // row stride 0
            for (int i = 0; i < 5; i++) {
                assertClose(one, java.util.Arrays.copyOfRange(many, i * 9, i * 9 + 9), 0, "broadcast row " + i);
            }
            Tensor wide = randn(r, 1, 4, 100);
            Tensor x = wide.narrow(1, 10, 64);  // rows 100 elements apart
            try (Tensor xc = x.contiguous()) {
                assertClose(WeightOnly.matmul(xc, w, null).toFloatArray(), WeightOnly.matmul(x, w, null).toFloatArray(), 0,
                        "strided rows");
            }
            w.close();
        }
    }

    @Test
    void badInputIsAClearException() {
        try (Scope scope = Scope.open()) {
            Random r = new Random(1);
            PackedWeights w = PackedWeights.quantize(randn(r, 1, 4, 64), WeightOnly.Format.UINT4, 32);
            Tensor x = randn(r, 1, 2, 64);
            WeightOnly.Spec spec = new WeightOnly.Spec(WeightOnly.Format.UINT4, 32);
            String m = assertThrows(IllegalArgumentException.class,
                    () -> WeightOnly.MATMUL_OP.call(new WeightOnly.Spec(WeightOnly.Format.UINT4, 64), randn(r, 1, 2, 96),
                            w.packed(), w.scale())).getMessage();
            assertTrue(m.contains("wq_matmul") && m.contains("group size 64") && m.contains("96"), m);
            m = assertThrows(IllegalArgumentException.class,
                    () -> WeightOnly.MATMUL_OP.call(spec, x, w.packed(), randn(r, 1, 4, 3))).getMessage();
            assertTrue(m.contains("'scale'") && m.contains("[n, 2]"), m);
            m = assertThrows(IllegalArgumentException.class,
                    () -> WeightOnly.MATMUL_OP.call(spec, x.to(DType.FLOAT64), w.packed(), w.scale())).getMessage();
            assertTrue(m.contains("wq_matmul") && m.contains("float64"), m);
            m = assertThrows(IllegalArgumentException.class, () -> new WeightOnly.Spec(WeightOnly.Format.INT4, 48)).getMessage();
            assertTrue(m.contains("48"), m);
            for (float bad : new float[] {0f, -1f, Float.NaN, Float.POSITIVE_INFINITY}) {
                float[] s = w.scale().toFloatArray();
                s[5] = bad;
                Tensor sc = Tensor.of(s, 4, 2);
                m = assertThrows(RuntimeException.class, () -> WeightOnly.MATMUL_OP.call(spec, x, w.packed(), sc)).getMessage();
                assertTrue(m.contains("wq_matmul") && m.contains("scale[5]"), m);
            }
            Tensor zp = Tensor.of(new int[] {0, 1, 2, 3, 16, 5, 6, 7}, 4, 2);
            m = assertThrows(RuntimeException.class, () -> WeightOnly.MATMUL_OP.call(spec, x, w.packed(), w.scale(), zp)).getMessage();
            assertTrue(m.contains("zero_point[4] = 16"), m);
            m = assertThrows(IllegalArgumentException.class, () -> WeightOnly.MATMUL_OP.call(
                    new WeightOnly.Spec(WeightOnly.Format.FLOAT8_E4M3, 32), x, randn(r, 1, 256).to(DType.UINT8), w.scale(),
                    w.zeroPoint())).getMessage();
            assertTrue(m.contains("no 'zero_point'"), m);
            Tensor codes = Tensor.of(new byte[64], DType.INT8, 2, 32);
            byte[] b = new byte[64];
            b[40] = 9;
            Tensor badCodes = Tensor.of(b, DType.INT8, 2, 32);
            WeightOnly.PACK_OP.call(WeightOnly.Format.INT4, codes).close();
            m = assertThrows(RuntimeException.class, () -> WeightOnly.PACK_OP.call(WeightOnly.Format.INT4, badCodes)).getMessage();
            assertTrue(m.contains("wq_pack") && m.contains("row 1") && m.contains("[-8, 7]"), m);
            m = assertThrows(IllegalArgumentException.class, () -> WeightOnly.PACK_OP.call(WeightOnly.Format.UINT4, codes)).getMessage();
            assertTrue(m.contains("wq_pack") && m.contains("int8"), m);
            w.close();
        }
    }
}
