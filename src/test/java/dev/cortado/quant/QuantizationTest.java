package dev.cortado.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Quantized tensors and the quantize ops beyond the OpInfo samples (QuantizationSamples): fp8
 * conversion of every float32 neighbourhood that matters (all 256 codes, midpoints between
 * neighbours, saturation, infinities, NaN, signed zero, subnormals), int4 storage, the
 * QuantizedTensor API and its printing, and the bad-input exceptions. Exact comparisons: the
 * kernels do the same float32 operations as QuantizationReference.
 */
class QuantizationTest {

    private static double[] fp8RoundTrip(DType type, float[] values) {
        try (Scope scope = Scope.open()) {
            Tensor x = Tensor.of(values, values.length);
            QuantizedTensor q = Quantization.quantize(x, QuantParams.perTensor(type, 1.0, 0));
            return q.values().toDoubleArray();
        }
    }

    @Test
    void fp8EveryCodeAndEveryMidpointRoundsToNearestEven() {
        for (DType type : new DType[] {DType.FLOAT8_E4M3, DType.FLOAT8_E5M2}) {
            // every finite code maps to itself; every midpoint of two neighbours to the even one;
            // points a quarter of the way round to the nearer one
            java.util.List<Float> xs = new java.util.ArrayList<>();
            for (int c = 0; c < 128; c++) {
                double v = QuantizationReference.fp8Value(type, c);
                double next = QuantizationReference.fp8Value(type, c + 1);
                if (!Double.isFinite(v)) {
                    continue;
                }
                xs.add((float) v);
                xs.add((float) -v);
                if (Double.isFinite(next)) {
                    xs.add((float) ((v + next) / 2));
                    xs.add((float) -((v + next) / 2));
                    xs.add((float) (v + (next - v) / 4));
                    xs.add((float) (v + 3 * (next - v) / 4));
                }
            }
            float max = type == DType.FLOAT8_E4M3 ? 448f : 57344f;
            float[] special = {max * 1.01f, -max * 1.5f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN,
                -0.0f, 1e-30f, -1e-30f, Float.MIN_VALUE, 3.4e38f};
            for (float f : special) {
                xs.add(f);
            }
            float[] in = new float[xs.size()];
            for (int i = 0; i < in.length; i++) {
                in[i] = xs.get(i);
            }
            double[] got = fp8RoundTrip(type, in);
            for (int i = 0; i < in.length; i++) {
                double want = QuantizationReference.toFp8(type, in[i]);
                boolean same = Double.isNaN(want) ? Double.isNaN(got[i]) : want == got[i];
                assertTrue(same, type + ": " + in[i] + " -> " + got[i] + ", expected " + want);
            }
            // saturation and NaN explicitly (the OCP saturating conversion)
            double[] s = fp8RoundTrip(type, new float[] {Float.POSITIVE_INFINITY, -1e9f, Float.NaN});
            assertEquals(max, s[0]);
            assertEquals(-max, s[1]);
            assertTrue(Double.isNaN(s[2]));
        }
    }

    @Test
    void fp8CodesAreTheOcpBitPatterns() {
        try (Scope scope = Scope.open()) {
            Tensor x = Tensor.of(new float[] {1f, -2f, 448f, 0.001953125f, Float.NaN}, 5);
            QuantizedTensor q = Quantization.quantize(x, QuantParams.perTensor(DType.FLOAT8_E4M3, 1, 0));
            Tensor raw = q.values();
            // 1.0 = 0.0111.000, -2 = 1.1000.000, 448 = 0.1111.110, 2^-9 = smallest subnormal 0.0000.001, NaN 0.1111.111
            byte[] want = {0x38, (byte) 0xC0, 0x7E, 0x01, 0x7F};
            byte[] got = new byte[5];
            dev.cortado.backend.kernels.HostMemory.read(raw.dataAddress(), got);
            assertArrayEquals(want, got);
            QuantizedTensor q2 = Quantization.quantize(x, QuantParams.perTensor(DType.FLOAT8_E5M2, 1, 0));
            dev.cortado.backend.kernels.HostMemory.read(q2.values().dataAddress(), got);
            // 1.0 = 0.01111.00, -2 = 1.10000.00, 448 = 0.10111.11 (1.75 * 2^8), 2^-9 = 0.00110.00, NaN 0.11111.11
            assertArrayEquals(new byte[] {0x3C, (byte) 0xC0, 0x5F, 0x18, 0x7F}, got);
        }
    }

    @Test
    void int4PerGroupRoundTripIsExactOnTheGrid() {
        Random r = new Random(7);
        int rows = 3, cols = 64, g = 32;
        float[] x = new float[rows * cols];
        float[] scales = new float[rows * cols / g];
        for (int i = 0; i < scales.length; i++) {
            scales[i] = 0.05f + 0.1f * r.nextFloat();
        }
        int[] codes = new int[x.length];
        for (int i = 0; i < x.length; i++) {
            codes[i] = r.nextInt(16) - 8;
            x[i] = codes[i] * scales[(i / cols) * (cols / g) + (i % cols) / g];
        }
        try (Scope scope = Scope.open()) {
            Tensor xt = Tensor.of(x, rows, cols);
            QuantParams p = QuantParams.of(QuantScheme.perGroup(DType.INT4, 1, g), Tensor.of(scales, rows, cols / g), null);
            QuantizedTensor q = Quantization.quantize(xt, p);
            assertEquals(DType.INT4, q.dtype());
            assertEquals(rows * cols / 2, DType.INT4.bytesFor(q.values().numel()));
            long[] got = q.values().toLongArray();
            for (int i = 0; i < codes.length; i++) {
                assertEquals(codes[i], got[i], "code " + i);
            }
            assertArrayEquals(x, q.dequantize().toFloatArray());
        }
    }

    /**
     * Dense float32 with one scale (the activations before an int8 layer) takes a flat AVX-512
     * pass (quant.cpp, quantize_flat): against the reference bit for bit, for int8 and uint8, a
     * length that leaves a tail, values exactly halfway between grid points (ties to even), values
     * far past the range, infinities and NaN; and the same codes with AVX-512 switched off.
     */
    @Test
    void denseFloat32PerTensorMatchesTheReferenceBitForBit() {
        Random r = new Random(5);
        int n = 3 * 4099;
        double[] x = new double[n];
        float scale = 0.05f;
        for (int i = 0; i < n; i++) {
            x[i] = switch (i % 5) {
                case 0 -> (r.nextInt(200) - 100 + 0.5) * scale;   // a tie in x / s (up to float rounding)
                case 1 -> r.nextGaussian() * 20;                  // often clamped
                default -> r.nextGaussian() * 3;
            };
        }
        x[7] = Double.NaN;
        x[100] = Double.POSITIVE_INFINITY;
        x[n - 1] = Double.NEGATIVE_INFINITY;
        x[n - 2] = Double.NaN;
        for (boolean avx512 : new boolean[] {true, false}) {
            dev.cortado.backend.cpu.CpuBackend.setAvx512Enabled(avx512);
            try (Scope scope = Scope.open()) {
                Tensor xt = Tensor.of(toFloats(x), 3, 4099);
                for (QuantParams p : new QuantParams[] {QuantParams.perTensor(DType.UINT8, scale, 131),
                        QuantParams.perTensor(DType.INT8, scale, -3)}) {
                    QuantizedTensor q = Quantization.quantize(xt, p);
                    double[] ref = QuantizationReference.quantize(p.scheme(), new long[] {3, 4099}, x, new double[] {scale},
                            new double[] {p.zeroPoint().item()});
                    assertArrayEquals(ref, q.values().toDoubleArray(), 0.0, p.scheme() + " AVX-512 " + avx512);
                }
            } finally {
                dev.cortado.backend.cpu.CpuBackend.setAvx512Enabled(true);
            }
        }
    }

    private static float[] toFloats(double[] x) {
        float[] f = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            f[i] = (float) x[i];
        }
        return f;
    }

    @Test
    void requantizeEqualsDequantizeThenQuantize() {
        Random r = new Random(11);
        float[] x = new float[5 * 7];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextGaussian() * 2);
        }
        try (Scope scope = Scope.open()) {
            Tensor xt = Tensor.of(x, 5, 7);
            QuantParams in = QuantParams.of(QuantScheme.perChannel(DType.INT8, 1),
                    Tensor.of(new float[] {0.02f, 0.03f, 0.05f, 0.04f, 0.01f, 0.06f, 0.07f}, 7),
                    Tensor.of(new int[] {0, 1, -2, 3, 0, 5, -7}, 7));
            QuantParams out = QuantParams.perTensor(DType.UINT8, 0.041, 128);
            QuantizedTensor q = Quantization.quantize(xt, in);
            QuantizedTensor direct = Quantization.requantize(q, out);
            QuantizedTensor twoStep = Quantization.quantize(q.dequantize(), out);
            assertArrayEquals(twoStep.values().toLongArray(), direct.values().toLongArray());
        }
    }

    @Test
    void dynamicQuantizationOfZerosUsesScaleOne() {
        try (Scope scope = Scope.open()) {
            QuantizedTensor q = Quantization.quantizeDynamic(Tensor.zeros(DType.FLOAT32, 3, 4));
            assertEquals(1.0, q.params().scale().item());
            assertEquals(0.0, q.params().zeroPoint().item());
            for (long v : q.values().toLongArray()) {
                assertEquals(0, v);
            }
        }
    }

    @Test
    void printingShowsTheParameters() {
        try (Scope scope = Scope.open()) {
            Tensor x = Tensor.of(new float[] {0.5f, -1f, 2f, 0.25f}, 2, 2);
            QuantParams p = QuantParams.of(QuantScheme.perChannel(DType.INT8, 0), Tensor.of(new float[] {0.5f, 0.25f}, 2),
                    Tensor.of(new int[] {1, -3}, 2));
            QuantizedTensor q = Quantization.quantize(x, p);
            String s = q.toString();
            assertTrue(s.contains("int8 per channel (axis 0)"), s);
            assertTrue(s.contains("scale=[0.500000, 0.250000]"), s);
            assertTrue(s.contains("zero_point=[1, -3]"), s);
            assertTrue(s.contains("dtype=int8"), s);
            Tensor f8 = Quantization.quantize(x, Tensor.scalar(1, DType.FLOAT32), null,
                    QuantScheme.perTensor(DType.FLOAT8_E4M3));
            assertTrue(f8.toString().contains("dtype=float8_e4m3"), f8.toString());
            assertTrue(f8.toString().contains("-1.0000"), f8.toString());
        }
    }

    @Test
    void fp8TensorsCopyAndRefuseImplicitConversion() {
        try (Scope scope = Scope.open()) {
            Tensor x = Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3);
            Tensor f8 = Quantization.quantize(x, Tensor.scalar(0.5, DType.FLOAT32), null,
                    QuantScheme.perTensor(DType.FLOAT8_E5M2));
            Tensor t = f8.transpose(0, 1);
            Tensor c = t.contiguous();
            assertArrayEquals(new double[] {2, 8, 4, 10, 6, 12}, c.toDoubleArray());
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, () -> x.to(DType.FLOAT8_E4M3));
            assertTrue(e.getMessage().contains("Quantization"), e.getMessage());
            // the op reads a transposed fp8 view through its strides
            Tensor back = Quantization.dequantize(t, Tensor.scalar(2, DType.FLOAT32), null,
                    QuantScheme.perTensor(DType.FLOAT8_E5M2));
            assertArrayEquals(new float[] {4, 16, 8, 20, 12, 24}, back.toFloatArray());
        }
    }

    @Test
    void badParametersNameTheOpTheArgumentAndTheShapes() {
        try (Scope scope = Scope.open()) {
            Tensor x = Tensor.of(new float[12], 3, 4);
            Tensor s3 = Tensor.of(new float[] {0.1f, 0.2f, 0.3f}, 3);
            // wrong shape for the axis
            var e = assertThrows(IllegalArgumentException.class,
                    () -> Quantization.quantize(x, s3, null, QuantScheme.perChannel(DType.INT8, 1)));
            assertTrue(e.getMessage().startsWith("quantize: scale float32[3]"), e.getMessage());
            assertTrue(e.getMessage().contains("float32[3, 4]") && e.getMessage().contains("expected shape [4]"), e.getMessage());
            // axis out of range
            e = assertThrows(IllegalArgumentException.class,
                    () -> Quantization.quantize(x, s3, null, QuantScheme.perChannel(DType.INT8, 2)));
            assertTrue(e.getMessage().contains("quantize: axis 2") && e.getMessage().contains("rank 2"), e.getMessage());
            // group size that does not divide the axis
            e = assertThrows(IllegalArgumentException.class,
                    () -> Quantization.quantize(x, s3, null, QuantScheme.perGroup(DType.INT4, 1, 3)));
            assertTrue(e.getMessage().contains("group size 3 does not divide dimension 1 (size 4)"), e.getMessage());
            // zero, negative, non-finite scales
            for (float bad : new float[] {0f, -0.5f, Float.NaN, Float.POSITIVE_INFINITY}) {
                Tensor s = Tensor.of(new float[] {0.1f, bad, 0.3f}, 3);
                e = assertThrows(IllegalArgumentException.class,
                        () -> Quantization.quantize(x, s, null, QuantScheme.perChannel(DType.INT8, 0)));
                assertTrue(e.getMessage().startsWith("quantize: scale element 1 is"), e.getMessage());
                assertTrue(e.getMessage().contains("not a positive finite number"), e.getMessage());
            }
            // zero point out of range
            Tensor zp = Tensor.of(new int[] {0, 300, 1}, 3);
            e = assertThrows(IllegalArgumentException.class,
                    () -> Quantization.quantize(x, s3, zp, QuantScheme.perChannel(DType.UINT8, 0)));
            assertTrue(e.getMessage().contains("zero point element 1 is 300, outside [0, 255]"), e.getMessage());
            // a zero point for fp8
            e = assertThrows(IllegalArgumentException.class,
                    () -> Quantization.quantize(x, s3, zp, QuantScheme.perChannel(DType.FLOAT8_E4M3, 0)));
            assertTrue(e.getMessage().contains("takes no zero point"), e.getMessage());
            // float data where quantized values are expected, and quantized data where float is
            e = assertThrows(IllegalArgumentException.class,
                    () -> Quantization.dequantize(x, s3, null, QuantScheme.perChannel(DType.INT8, 0)));
            assertTrue(e.getMessage().startsWith("dequantize: input 'q' (float32[3, 4] on cpu) is not stored as int8"),
                    e.getMessage());
            Tensor q8 = Tensor.zeros(DType.INT8, 3, 4);
            e = assertThrows(IllegalArgumentException.class,
                    () -> Quantization.quantize(q8, s3, null, QuantScheme.perChannel(DType.INT8, 0)));
            assertTrue(e.getMessage().startsWith("quantize: input 'x' (int8[3, 4] on cpu)"), e.getMessage());
            // a scale in the wrong dtype
            Tensor s64 = Tensor.of(new double[] {0.1, 0.2, 0.3}, 3);
            e = assertThrows(IllegalArgumentException.class,
                    () -> Quantization.quantize(x, s64, null, QuantScheme.perChannel(DType.INT8, 0)));
            assertTrue(e.getMessage().contains("must be float32"), e.getMessage());
            // schemes themselves
            assertThrows(IllegalArgumentException.class, () -> QuantScheme.perTensor(DType.FLOAT32));
            assertThrows(IllegalArgumentException.class, () -> QuantScheme.perTensor(DType.INT8).withRange(-200, 0));
            assertThrows(IllegalArgumentException.class, () -> QuantScheme.perGroup(DType.INT4, 0, 0));
            assertEquals(Shape.of(3, 2), QuantScheme.perGroup(DType.INT4, -1, 2).paramShape("t", x.shape()));
        }
    }

    @Test
    void quantizedTensorOfChecksItsParts() {
        try (Scope scope = Scope.open()) {
            QuantParams p = QuantParams.perTensor(DType.INT8, 0.1, 0);
            Tensor u8 = Tensor.zeros(DType.UINT8, 2);
            var e = assertThrows(IllegalArgumentException.class, () -> QuantizedTensor.of(u8, p));
            assertTrue(e.getMessage().contains("uint8[2] on cpu") && e.getMessage().contains("int8 per tensor"), e.getMessage());
            assertEquals(Device.CPU, p.device());
        }
    }
}
