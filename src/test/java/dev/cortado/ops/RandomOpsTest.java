package dev.cortado.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The Philox4x32-10 generator against an independent Java Philox and the formulas of
 * {@code native/include/cortado/random.h}: uniform and Bernoulli must match bit for bit; normal
 * (float32 log/sqrt/cos in the kernel, float64 here) to 2e-5 absolute + 1e-5 relative.
 */
public class RandomOpsTest {
    // ------------------------------------------------------------------ reference Philox4x32-10
    static int[] philox(long counterLo64, long counterHi64, long key) {
        int c0 = (int) counterLo64;
        int c1 = (int) (counterLo64 >>> 32);
        int c2 = (int) counterHi64;
        int c3 = (int) (counterHi64 >>> 32);
        int k0 = (int) key;
        int k1 = (int) (key >>> 32);
        for (int round = 0; round < 10; round++) {
            long p0 = 0xD2511F53L * (c0 & 0xFFFFFFFFL);
            long p1 = 0xCD9E8D57L * (c2 & 0xFFFFFFFFL);
            int n0 = (int) (p1 >>> 32) ^ c1 ^ k0;
            int n2 = (int) (p0 >>> 32) ^ c3 ^ k1;
            c1 = (int) p1;
            c3 = (int) p0;
            c0 = n0;
            c2 = n2;
            k0 += 0x9E3779B9;
            k1 += 0xBB67AE85;
        }
        return new int[] {c0, c1, c2, c3};
    }

    static double u24(int r) {
        return (r >>> 8) * 0x1p-24;
    }

    public static double[] uniformRef(long seed, long offset, double a, double b, int n) {
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            int[] r = philox(i / 4, offset, seed);
            out[i] = a + (b - a) * u24(r[i % 4]);
        }
        return out;
    }

    public static double[] normalRef(long seed, long offset, double mean, double std, int n) {
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            int[] r = philox(i / 2, offset, seed);
            int j = i % 2;
            double u1 = ((r[2 * j] >>> 8) + 1) * 0x1p-24;
            double u2 = u24(r[2 * j + 1]);
            out[i] = mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
        }
        return out;
    }

    @Test
    void philoxKnownAnswer() {
        // Random123's published test vector: counter 0, key 0
        assertArrayEquals(new int[] {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}, philox(0, 0, 0));
    }

    @ParameterizedTest
    @ValueSource(longs = {0, 1, 42, 0x123456789ABCDEFL, -1L, Generator.DEFAULT_SEED})
    void uniformMatchesPhiloxBitForBit(long seed) {
        try (var scope = Scope.open()) {
            Generator g = Generator.seeded(seed);
            int n = 1001; // not a multiple of 4
            float[] got = g.uniform(0, 1, DType.FLOAT32, Device.CPU, n).toFloatArray();
            double[] want = uniformRef(seed, 0, 0, 1, n);
            for (int i = 0; i < n; i++) {
                assertEquals((float) want[i], got[i], "uniform element " + i);
                assertTrue(got[i] >= 0 && got[i] < 1);
            }
            // the second call uses offset 1; a scaled range is a + (b - a) u in float64, then rounded
            double[] got2 = g.uniform(-2, 3, DType.FLOAT64, Device.CPU, 3, 7).toDoubleArray();
            assertArrayEquals(uniformRef(seed, 1, -2, 3, 21), got2, 0.0, "uniform(-2, 3) float64 at offset 1");
            float[] got3 = g.uniform(-2, 3, DType.FLOAT32, Device.CPU, 9).toFloatArray();
            double[] want3 = uniformRef(seed, 2, -2, 3, 9);
            for (int i = 0; i < 9; i++) {
                assertEquals((float) want3[i], got3[i], "uniform(-2, 3) float32 element " + i);
            }
            assertEquals(3, g.offset());
        }
    }

    @Test
    void sameSeedSameTensorAndPrefixIndependentOfN() {
        try (var scope = Scope.open()) {
            float[] a = Generator.seeded(7).uniform(0, 1, DType.FLOAT32, Device.CPU, 100_000).toFloatArray();
            float[] b = Generator.seeded(7).uniform(0, 1, DType.FLOAT32, Device.CPU, 100_000).toFloatArray();
            assertArrayEquals(a, b, "same seed, same tensor");
            float[] prefix = Generator.seeded(7).uniform(0, 1, DType.FLOAT32, Device.CPU, 13).toFloatArray();
            assertArrayEquals(prefix, Arrays.copyOf(a, 13), "a prefix does not depend on n");
            Generator g = Generator.seeded(7);
            float[] first = g.uniform(0, 1, DType.FLOAT32, Device.CPU, 64).toFloatArray();
            float[] second = g.uniform(0, 1, DType.FLOAT32, Device.CPU, 64).toFloatArray();
            assertFalse(Arrays.equals(first, second), "successive calls differ");
            float[] other = Generator.seeded(8).uniform(0, 1, DType.FLOAT32, Device.CPU, 64).toFloatArray();
            assertFalse(Arrays.equals(first, other), "different seeds differ");
            // restoring (seed, offset) continues identically
            Generator h = Generator.seeded(7);
            h.setOffset(1);
            assertArrayEquals(second, h.uniform(0, 1, DType.FLOAT32, Device.CPU, 64).toFloatArray());
            // multi-dimensional shape is the flat sequence
            assertArrayEquals(first, Generator.seeded(7).uniform(0, 1, DType.FLOAT32, Device.CPU, 4, 16).toFloatArray());
            assertEquals(0, Generator.seeded(7).uniform(0, 1, DType.FLOAT32, Device.CPU, 0, 5).numel());
        }
    }

    @Test
    void normalMatchesBoxMullerAndStatistics() {
        try (var scope = Scope.open()) {
            int n = 1_000_000;
            long seed = 1234;
            Generator g = Generator.seeded(seed);
            double[] got = g.normal(0, 1, DType.FLOAT32, Device.CPU, n).toDoubleArray();
            double[] want = normalRef(seed, 0, 0, 1, n);
            double mean = 0;
            for (int i = 0; i < n; i++) {
                double lim = 2e-5 + 1e-5 * Math.abs(want[i]);
                if (!(Math.abs(got[i] - want[i]) <= lim)) {
                    throw new AssertionError("normal element " + i + " is " + got[i] + ", Box-Muller gives " + want[i]);
                }
                mean += got[i];
            }
            mean /= n;
            double var = 0;
            for (double v : got) {
                var += (v - mean) * (v - mean);
            }
            var /= n - 1;
            // standard errors: mean 1/sqrt(n) = 0.001, variance sqrt(2/n) = 0.0014; 5 sigma bounds
            assertEquals(0, mean, 0.005, "mean");
            assertEquals(1, Math.sqrt(var), 0.0075, "std");
            // mean and std parameters, float64 output
            double[] scaled = g.normal(3, 0.5, DType.FLOAT64, Device.CPU, 1001).toDoubleArray();
            double[] wantScaled = normalRef(seed, 1, 3, 0.5, 1001);
            for (int i = 0; i < scaled.length; i++) {
                assertEquals(wantScaled[i], scaled[i], 2e-5 + 1e-5 * Math.abs(wantScaled[i]), "normal(3, 0.5) " + i);
            }
        }
    }

    @Test
    void bernoulli() {
        try (var scope = Scope.open()) {
            int n = 200_000;
            double p = 0.3;
            long seed = 99;
            Generator g = Generator.seeded(seed);
            double[] want = uniformRef(seed, 0, 0, 1, n);
            boolean[] got = g.bernoulli(p, DType.BOOL, Device.CPU, n).toBooleanArray();
            int ones = 0;
            for (int i = 0; i < n; i++) {
                assertEquals(want[i] < p, got[i], "bernoulli element " + i);
                ones += got[i] ? 1 : 0;
            }
            // binomial standard deviation sqrt(n p (1-p)) = 205; 5 sigma
            assertEquals(n * p, ones, 5 * Math.sqrt(n * p * (1 - p)), "frequency");
            for (DType t : new DType[] {DType.FLOAT32, DType.INT32, DType.UINT8, DType.BFLOAT16}) {
                double[] v = Reference.values(g.bernoulli(0.5, t, Device.CPU, 1000));
                long off = g.offset() - 1;
                double[] u = uniformRef(seed, off, 0, 1, 1000);
                for (int i = 0; i < 1000; i++) {
                    assertEquals(u[i] < 0.5 ? 1.0 : 0.0, v[i], "bernoulli " + t + " " + i);
                }
            }
            assertTrue(Arrays.stream(Reference.values(g.bernoulli(0, DType.FLOAT32, Device.CPU, 100))).allMatch(x -> x == 0));
            assertTrue(Arrays.stream(Reference.values(g.bernoulli(1, DType.FLOAT32, Device.CPU, 100))).allMatch(x -> x == 1));
        }
    }

    @Test
    void sixteenBitOutputs() {
        try (var scope = Scope.open()) {
            long seed = 5;
            Generator g = Generator.seeded(seed);
            Tensor t = g.uniform(0, 1, DType.BFLOAT16, Device.CPU, 257);
            assertEquals(DType.BFLOAT16, t.dtype());
            double[] got = t.toDoubleArray();
            double[] want = uniformRef(seed, 0, 0, 1, 257);
            for (int i = 0; i < got.length; i++) {
                assertEquals(Reference.bf16(want[i]), got[i], 0.0, "bfloat16 uniform " + i);
            }
            double[] n16 = g.normal(0, 1, DType.BFLOAT16, Device.CPU, 101).toDoubleArray();
            double[] wantN = normalRef(seed, 1, 0, 1, 101);
            for (int i = 0; i < n16.length; i++) {
                assertEquals(wantN[i], n16[i], 1e-2 * Math.abs(wantN[i]) + 1e-4, "bfloat16 normal " + i);
            }
            double[] h = g.uniform(0, 1, DType.FLOAT16, Device.CPU, 100).toDoubleArray();
            double[] wantH = uniformRef(seed, 2, 0, 1, 100);
            for (int i = 0; i < h.length; i++) {
                assertEquals(wantH[i], h[i], 1e-3 * wantH[i] + 0x1p-25, "float16 uniform " + i);
            }
        }
    }

    @Test
    void badArgumentsNameTheOp() {
        try (var scope = Scope.open()) {
            Generator g = Generator.seeded(1);
            var e = assertThrows(IllegalArgumentException.class, () -> g.uniform(0, 1, DType.INT32, Device.CPU, 2, 3));
            assertTrue(e.getMessage().contains("random_uniform") && e.getMessage().contains("int32"), e.getMessage());
            var e2 = assertThrows(IllegalArgumentException.class, () -> g.normal(0, -1, DType.FLOAT32, Device.CPU, 2, 3));
            assertTrue(e2.getMessage().contains("random_normal"), e2.getMessage());
            var e3 = assertThrows(IllegalArgumentException.class, () -> g.bernoulli(1.5, DType.FLOAT32, Device.CPU, 3));
            assertTrue(e3.getMessage().contains("random_bernoulli"), e3.getMessage());
            var e4 = assertThrows(IllegalArgumentException.class, () -> g.uniform(2, 1, DType.FLOAT32, Device.CPU, 3));
            assertTrue(e4.getMessage().contains("random_uniform"), e4.getMessage());
        }
    }
}
