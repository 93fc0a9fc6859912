package dev.cortado.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Creation from and export to Java arrays and NIO buffers, dtype conversion (float32 to
 * bfloat16/float16 with round-to-nearest-even, checked bit for bit against an independent Java
 * implementation), packed int4, type promotion and printing.
 */
class TensorDataTest {

    /** float32 -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN. */
    static int bf16Bits(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) {
            return ((bits >>> 16) | 0x40) & 0xFFFF;
        }
        int lsb = (bits >>> 16) & 1;
        return ((bits + 0x7FFF + lsb) >>> 16) & 0xFFFF;
    }

    /** float32 -> IEEE half bits, round to nearest even, with subnormals, overflow to inf, NaN. */
    static int f16Bits(float f) {
        int bits = Float.floatToRawIntBits(f);
        int sign = (bits >>> 16) & 0x8000;
        int exp = (bits >>> 23) & 0xFF;
        int mant = bits & 0x7FFFFF;
        if (exp == 0xFF) {
            return sign | 0x7C00 | (mant != 0 ? 0x200 : 0);
        }
        int e = exp - 127 + 15;
        if (e >= 0x1F) {
            return sign | 0x7C00;
        }
        if (e <= 0) {
            if (e < -10) {
                return sign;
            }
            int m = mant | 0x800000;
            int shift = 14 - e;
            int half = m >>> shift;
            int rem = m & ((1 << shift) - 1);
            int mid = 1 << (shift - 1);
            if (rem > mid || (rem == mid && (half & 1) == 1)) {
                half++;
            }
            return sign | half;
        }
        int half = (e << 10) | (mant >>> 13);
        int rem = mant & 0x1FFF;
        if (rem > 0x1000 || (rem == 0x1000 && (half & 1) == 1)) {
            half++;
        }
        return sign | half;
    }

    private static float[] conversionInputs() {
        Random r = new Random(7);
        float[] v = new float[4096 + 12];
        for (int i = 0; i < 4096; i++) {
            // wide exponent range, random mantissas (many exact ties are covered below)
            v[i] = (float) ((r.nextBoolean() ? 1 : -1) * Math.pow(2, r.nextInt(60) - 30) * (1 + r.nextDouble()));
        }
        float[] special = {0f, -0f, Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 65504f, 65520f,
            1e-8f, 6.1e-5f, Float.intBitsToFloat(0x3F808000), Float.intBitsToFloat(0x3F818000), 1.00048828125f};
        System.arraycopy(special, 0, v, 4096, special.length);
        return v;
    }

    private static int[] rawShorts(Tensor t) {
        ByteBuffer b = ByteBuffer.wrap(t.toByteArray()).order(ByteOrder.LITTLE_ENDIAN);
        int[] out = new int[(int) t.numel()];
        for (int i = 0; i < out.length; i++) {
            out[i] = b.getShort() & 0xFFFF;
        }
        return out;
    }

    @Test
    void float32ToBfloat16RoundsToNearestEven() {
        float[] v = conversionInputs();
        try (var scope = Scope.open()) {
            int[] got = rawShorts(Tensor.of(v, v.length).to(DType.BFLOAT16));
            for (int i = 0; i < v.length; i++) {
                int want = bf16Bits(v[i]);
                if (Float.isNaN(v[i])) {
                    assertEquals(0x7F80, got[i] & 0x7F80, "NaN exponent");
                    assertTrue((got[i] & 0x7F) != 0, "NaN stays NaN");
                } else {
                    assertEquals(want, got[i], "bf16 of " + v[i]);
                }
            }
        }
    }

    @Test
    void float32ToFloat16RoundsToNearestEvenWithSubnormalsAndOverflow() {
        float[] v = conversionInputs();
        try (var scope = Scope.open()) {
            int[] got = rawShorts(Tensor.of(v, v.length).to(DType.FLOAT16));
            for (int i = 0; i < v.length; i++) {
                if (Float.isNaN(v[i])) {
                    assertEquals(0x7C00, got[i] & 0x7C00);
                    assertTrue((got[i] & 0x3FF) != 0);
                } else {
                    assertEquals(f16Bits(v[i]), got[i], "f16 of " + v[i] + " (bits " + Integer.toHexString(Float.floatToRawIntBits(v[i])) + ")");
                }
            }
        }
    }

    @Test
    void sixteenBitFloatsWidenExactly() {
        float[] v = conversionInputs();
        try (var scope = Scope.open()) {
            Tensor bf = Tensor.of(v, v.length).to(DType.BFLOAT16);
            float[] back = bf.toFloatArray();
            int[] bits = rawShorts(bf);
            for (int i = 0; i < v.length; i++) {
                float want = Float.intBitsToFloat(bits[i] << 16);
                assertEquals(Float.floatToIntBits(want), Float.floatToIntBits(back[i]));
            }
        }
    }

    @Test
    void arraysRoundTripForEveryDtype() {
        try (var scope = Scope.open()) {
            assertArrayEquals(new double[] {1.5, -2, 1e300}, Tensor.of(new double[] {1.5, -2, 1e300}, 3).toDoubleArray());
            assertArrayEquals(new int[] {1, -2, Integer.MAX_VALUE}, Tensor.of(new int[] {1, -2, Integer.MAX_VALUE}, 3).toIntArray());
            assertArrayEquals(new long[] {1, -2, Long.MIN_VALUE}, Tensor.of(new long[] {1, -2, Long.MIN_VALUE}, 3).toLongArray());
            assertArrayEquals(new boolean[] {true, false, true}, Tensor.of(new boolean[] {true, false, true}, 3).toBooleanArray());
            Tensor u8 = Tensor.of(new byte[] {(byte) 200, 3}, DType.UINT8, 2);
            assertArrayEquals(new int[] {200, 3}, u8.toIntArray());
            Tensor i8 = Tensor.of(new byte[] {-100, 3}, DType.INT8, 2);
            assertArrayEquals(new float[] {-100, 3}, i8.toFloatArray());
            // conversions between kinds: float -> int truncates toward zero, anything -> bool is != 0
            Tensor f = Tensor.of(new float[] {-2.7f, 2.7f, 0f, 0.25f}, 4);
            assertArrayEquals(new int[] {-2, 2, 0, 0}, f.to(DType.INT32).toIntArray());
            assertArrayEquals(new boolean[] {true, true, false, true}, f.to(DType.BOOL).toBooleanArray());
        }
    }

    @Test
    void nioBuffersRoundTrip() {
        try (var scope = Scope.open()) {
            ByteBuffer in = ByteBuffer.allocateDirect(6 * 4).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < 6; i++) {
                in.putFloat(i * 1.25f);
            }
            in.flip();
            Tensor t = Tensor.fromBuffer(in, DType.FLOAT32, Device.CPU, 2, 3);
            assertEquals(0, in.position(), "fromBuffer leaves the position alone");
            assertArrayEquals(new float[] {0, 1.25f, 2.5f, 3.75f, 5, 6.25f}, t.toFloatArray());
            ByteBuffer out = ByteBuffer.allocate(6 * 4).order(ByteOrder.LITTLE_ENDIAN);
            t.transpose(0, 1).copyTo(out);
            out.flip();
            float[] got = new float[6];
            out.asFloatBuffer().get(got);
            assertArrayEquals(new float[] {0, 3.75f, 1.25f, 5, 2.5f, 6.25f}, got);
            ByteBuffer heap = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(77).flip();
            assertArrayEquals(new int[] {77}, Tensor.fromBuffer(heap, DType.INT32, Device.CPU, 1).toIntArray());
            assertThrows(IllegalArgumentException.class, () -> Tensor.fromBuffer(in, DType.FLOAT32, Device.CPU, 7));
        }
    }

    @Test
    void packedInt4StoresTwoValuesPerByte() {
        try (var scope = Scope.open()) {
            byte[] values = {-8, 7, 0, -1, 3};
            Tensor t = Tensor.of(values, DType.INT4, 5);
            assertArrayEquals(new byte[] {(byte) 0x78, (byte) 0xF0, 0x03}, t.toByteArray());
            assertArrayEquals(new int[] {-8, 7, 0, -1, 3}, t.toIntArray());
            Tensor back = Tensor.of(new float[] {-8, 7, 2, 1}, 2, 2).to(DType.INT4);
            assertArrayEquals(new float[] {-8, 7, 2, 1}, back.reshape(4).toFloatArray());
            assertThrows(UnsupportedOperationException.class, () -> back.transpose(0, 1));
            assertThrows(IllegalArgumentException.class, () -> Tensor.of(new byte[] {9}, DType.INT4, 1));
            Tensor filled = Tensor.full(-3, DType.INT4, Device.CPU, 3);
            assertArrayEquals(new int[] {-3, -3, -3}, filled.toIntArray());
        }
    }

    @Test
    void typePromotion() {
        assertEquals(DType.FLOAT32, DType.promote(DType.FLOAT32, DType.INT64));
        assertEquals(DType.FLOAT32, DType.promote(DType.BFLOAT16, DType.FLOAT16));
        assertEquals(DType.FLOAT64, DType.promote(DType.FLOAT32, DType.FLOAT64));
        assertEquals(DType.INT32, DType.promote(DType.UINT8, DType.INT8));
        assertEquals(DType.INT64, DType.promote(DType.INT32, DType.INT64));
        assertEquals(DType.INT8, DType.promote(DType.BOOL, DType.INT8));
        assertEquals(DType.BFLOAT16, DType.promote(DType.BFLOAT16, DType.INT32));
    }

    @Test
    void printsLikePyTorch() {
        try (var scope = Scope.open()) {
            Tensor t = Tensor.of(new float[] {0.5f, -1.25f, 3f, 4.125f}, 2, 2);
            assertEquals("tensor([[ 0.5000, -1.2500],\n        [ 3.0000,  4.1250]], shape=[2, 2], dtype=float32, device=cpu)",
                    t.toString());
            Tensor ints = Tensor.of(new long[] {1, 20, 300}, 3);
            assertEquals("tensor([  1,  20, 300], shape=[3], dtype=int64, device=cpu)", ints.toString());
            Tensor big = Tensor.arange(0, 2000, 1, DType.FLOAT32, Device.CPU).reshape(2, 1000);
            String s = big.toString();
            assertTrue(s.contains("..."), s);
            assertTrue(s.startsWith("tensor([[   0.,    1.,    2., ...,  997.,  998.,  999.],"), s);
            assertTrue(s.endsWith("shape=[2, 1000], dtype=float32, device=cpu)"), s);
            Tensor closed = Tensor.zeros(DType.BOOL, Device.CPU, 1);
            closed.close();
            assertEquals("tensor(<closed>, shape=[1], dtype=bool, device=cpu)", closed.toString());
        }
    }
}
