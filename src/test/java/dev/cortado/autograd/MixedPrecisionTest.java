package dev.cortado.autograd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.ops.Autocast;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** bfloat16 autocast with float32 master weights: dtypes on the way, gradients back in float32. */
class MixedPrecisionTest {

    @Test
    void matmulRunsInBfloat16AndGradientsReachFloat32Weights() {
        Random r = new Random(5);
        int m = 7, k = 33, n = 5;
        float[] xs = new float[m * k];
        float[] ws = new float[k * n];
        for (int i = 0; i < xs.length; i++) {
            xs[i] = (float) r.nextGaussian();
        }
        for (int i = 0; i < ws.length; i++) {
            ws[i] = (float) r.nextGaussian();
        }
        try (Tensor x = Tensor.of(xs, m, k); Tensor w = Tensor.of(ws, k, n).requiresGrad(true); Scope s = Scope.open()) {
            Tensor loss;
            try (Autocast ac = Autocast.bfloat16()) {
                Tensor y = LinearAlgebra.matmul(x, w);
                assertEquals(DType.BFLOAT16, y.dtype(), "matmul runs in bfloat16");
                Tensor e = Elementwise.exp(Elementwise.mul(x, 0.01));
                assertEquals(DType.FLOAT32, e.dtype(), "ops outside the autocast list keep float32");
                try (Autocast off = Autocast.disabled()) {
                    assertEquals(DType.FLOAT32, LinearAlgebra.matmul(x, w).dtype());
                }
                assertEquals(DType.BFLOAT16, Autocast.current());
                loss = Reductions.sum(Elementwise.mul(y.to(DType.FLOAT32), y.to(DType.FLOAT32)));
            }
            assertNull(Autocast.current());
            loss.backward();
            assertEquals(DType.FLOAT32, w.grad().dtype());
            // d/dW sum((XW)^2) = 2 X^T (X W), in float64 from the float32 data
            double[] g = w.grad().toDoubleArray();
            double worst = 0;
            for (int a = 0; a < k; a++) {
                for (int b = 0; b < n; b++) {
                    double ref = 0;
                    double scale = 0;
                    for (int i = 0; i < m; i++) {
                        double y = 0;
                        for (int j = 0; j < k; j++) {
                            y += (double) xs[i * k + j] * ws[j * n + b];
                        }
                        ref += 2 * xs[i * k + a] * y;
                        scale += Math.abs(2 * xs[i * k + a] * y);
                    }
                    worst = Math.max(worst, Math.abs(g[a * n + b] - ref) / scale);
                }
            }
            // bfloat16 keeps 8 significant bits (unit roundoff 2^-9): x, W, y, the output gradient
            // and the weight gradient each round once, so the error is a few units of 2^-9 of the
            // sum of |terms|; stated tolerance 3% of that sum (float32 would be ~1e-6)
            assertTrue(worst < 0.03, "bfloat16 error " + worst + " of the sum of |terms|");
            assertTrue(worst > 1e-5, "really computed in bfloat16 (float32 would be exact to ~1e-6)");
        }
    }

    /**
     * The factories are the only way in and they target bfloat16, float16 or nothing; the one
     * constructor behind them refuses any other dtype (reached here by reflection, the only way
     * to hand it one) and leaves the thread's setting untouched when it does.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BFLOAT16", "FLOAT16"}, mode = EnumSource.Mode.EXCLUDE)
    void onlySixteenBitTargets(DType target) throws ReflectiveOperationException {
        Constructor<Autocast> ctor = Autocast.class.getDeclaredConstructor(DType.class);
        ctor.setAccessible(true);
        try (Autocast outer = Autocast.bfloat16()) {
            InvocationTargetException e = assertThrows(InvocationTargetException.class, () -> ctor.newInstance(target));
            IllegalArgumentException cause = assertInstanceOf(IllegalArgumentException.class, e.getCause());
            assertTrue(cause.getMessage().contains(target.toString()), cause.getMessage());
            assertEquals(DType.BFLOAT16, Autocast.current(), "a refused target does not change the setting");
        }
        assertNull(Autocast.current());
        // the accepted targets, through the public factories, and how they nest
        try (Autocast h = Autocast.float16()) {
            assertEquals(DType.FLOAT16, Autocast.current());
            try (Autocast b = Autocast.bfloat16()) {
                assertEquals(DType.BFLOAT16, Autocast.current());
                try (Autocast off = Autocast.disabled()) {
                    assertNull(Autocast.current());
                }
                assertEquals(DType.BFLOAT16, Autocast.current());
            }
            assertEquals(DType.FLOAT16, Autocast.current());
            try (Tensor x = Tensor.of(new float[] {1, 2, 3, 4}, 2, 2); Tensor y = LinearAlgebra.matmul(x, x)) {
                assertEquals(DType.FLOAT16, y.dtype(), "matmul runs in float16 under Autocast.float16()");
            }
        }
        assertNull(Autocast.current());
    }
}
