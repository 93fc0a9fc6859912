package dev.cortado.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * MinMaxObserver against running extremes computed here in float64 (per tensor, per channel of a
 * transposed view, per group), its scale/zero-point formulas, and the round trip it is for:
 * values inside the observed range come back from quantize/dequantize within half a step.
 */
class MinMaxObserverTest {

    private static float[] random(Random r, int n, double lo, double hi) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (lo + (hi - lo) * r.nextDouble());
        }
        return v;
    }

    @Test
    void runningExtremesPerChannelOfAView() {
        Random r = new Random(1);
        int rows = 6;
        int cols = 5;
        double[] lo = new double[cols];
        double[] hi = new double[cols];
        java.util.Arrays.fill(lo, Double.POSITIVE_INFINITY);
        java.util.Arrays.fill(hi, Double.NEGATIVE_INFINITY);
        MinMaxObserver obs = MinMaxObserver.of(QuantScheme.perChannel(DType.INT8, 1));
        for (int batch = 0; batch < 3; batch++) {
            float[] x = random(r, rows * cols, -2 - batch, 3);
            for (int i = 0; i < x.length; i++) {
                lo[i % cols] = Math.min(lo[i % cols], x[i]);
                hi[i % cols] = Math.max(hi[i % cols], x[i]);
            }
            try (Scope scope = Scope.open()) {
                // stored transposed, seen through a view: the observer reduces over the view's dims
                Tensor t = Tensor.of(x, rows, cols).transpose(0, 1).contiguous().transpose(0, 1);
                obs.observe(t);
            }
        }
        assertArrayEquals(lo, obs.min());
        assertArrayEquals(hi, obs.max());
        try (QuantParams p = obs.params()) {
            float[] s = p.scale().toFloatArray();
            int[] z = p.zeroPoint().toIntArray();
            for (int j = 0; j < cols; j++) {
                double l = Math.min(0, lo[j]);
                double h = Math.max(0, hi[j]);
                double want = (h - l) / 255;
                assertEquals((float) want, s[j], "scale " + j);
                assertEquals((int) Math.max(-128, Math.min(127, -128 - Math.rint(l / want))), z[j], "zero point " + j);
            }
        }
    }

    @Test
    void perGroupSymmetricRoundTripIsWithinHalfAStep() {
        Random r = new Random(2);
        int rows = 4;
        int cols = 64;
        float[] x = random(r, rows * cols, -1.5, 1.0);
        try (Scope scope = Scope.open()) {
            Tensor t = Tensor.of(x, rows, cols);
            MinMaxObserver obs = MinMaxObserver.of(QuantScheme.perGroup(DType.INT4, 1, 32)).symmetric();
            obs.observe(t);
            QuantParams p = obs.params();
            assertArrayEquals(new long[] {rows, cols / 32}, p.scale().dims());
            float[] s = p.scale().toFloatArray();
            for (int g = 0; g < s.length; g++) {
                double amax = 0;
                for (int i = 0; i < 32; i++) {
                    amax = Math.max(amax, Math.abs(x[(g / 2) * cols + (g % 2) * 32 + i]));
                }
                assertEquals((float) (amax / 7.5), s[g], "group " + g);
            }
            for (long v : p.zeroPoint().toLongArray()) {
                assertEquals(0, v);
            }
            float[] back = Quantization.quantize(t, p).dequantize().toFloatArray();
            for (int i = 0; i < x.length; i++) {
                float step = s[(i / cols) * 2 + (i % cols) / 32];
                // symmetric int4 clips +amax at 7 steps: allow the clipped top half step more
                assertTrue(Math.abs(back[i] - x[i]) <= step * 0.5f * 1.0001f || x[i] > 7 * step,
                        "element " + i + ": " + x[i] + " -> " + back[i] + " (step " + step + ")");
            }
        }
    }

    @Test
    void movingAverageAndFp8AndErrors() {
        MinMaxObserver avg = MinMaxObserver.of(QuantScheme.perTensor(DType.UINT8)).movingAverage(0.5);
        try (Scope scope = Scope.open()) {
            avg.observe(Tensor.of(new float[] {-1, 3}, 2));
            avg.observe(Tensor.of(new float[] {-3, 1}, 2));
            assertArrayEquals(new double[] {-2}, avg.min());
            assertArrayEquals(new double[] {2}, avg.max());
            MinMaxObserver f8 = MinMaxObserver.of(QuantScheme.perTensor(DType.FLOAT8_E4M3));
            f8.observe(Tensor.of(new float[] {-896, 10}, 2));
            QuantParams p = f8.params();
            assertEquals(2.0, p.scale().item());
            assertEquals(null, p.zeroPoint());
            MinMaxObserver zeros = MinMaxObserver.of(QuantScheme.perTensor(DType.INT8));
            zeros.observe(Tensor.zeros(DType.FLOAT32, 3));
            assertEquals(1.0, zeros.params().scale().item());
            assertThrows(IllegalStateException.class, () -> MinMaxObserver.of(QuantScheme.perTensor(DType.INT8)).params());
            MinMaxObserver ch = MinMaxObserver.of(QuantScheme.perChannel(DType.INT8, 0));
            ch.observe(Tensor.zeros(DType.FLOAT32, 2, 3));
            var e = assertThrows(IllegalArgumentException.class, () -> ch.observe(Tensor.zeros(DType.FLOAT32, 4, 3)));
            assertTrue(e.getMessage().contains("earlier batches gave [2]"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> avg.movingAverage(0));
        }
    }
}
