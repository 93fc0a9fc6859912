package dev.cortado.autograd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.Cortado;
import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import org.junit.jupiter.api.Test;

/**
 * {@link Autograd#recordFunction}: a function computed off the tape (here y = x * x) gets its
 * gradient through the given rule, nothing is recorded without an input that requires gradients,
 * and the saved tensors are freed with the node.
 */
class RecordFunctionTest {

    private static Tensor square(Tensor x) {
        Tensor y;
        try (var off = Autograd.noGrad()) {
            y = Elementwise.mul(x, x);
        }
        Autograd.recordFunction("square", new Tensor[] {x}, new Tensor[] {y}, new Tensor[] {x},
                (saved, g) -> new Tensor[] {Elementwise.mul(Elementwise.mul(saved[0], g[0]), 2.0)});
        return y;
    }

    @Test
    void gradientFlowsThroughTheRule() {
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.of(new double[] {1.5, -2, 0.25}, 3).requiresGrad(true);
            Tensor y = square(x);
            assertTrue(y.requiresGrad());
            Elementwise.mul(y, Tensor.of(new double[] {1, 2, 3}, 3)).sum().backward();
            assertArrayEquals(new double[] {3, -8, 1.5}, x.grad().toDoubleArray(), 1e-15);
            Tensor plain = Tensor.of(new double[] {1, 2}, 2);
            assertFalse(square(plain).requiresGrad(), "no input requires gradients: nothing recorded");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Autograd.recordFunction(
                    "again", new Tensor[] {x}, new Tensor[] {y}, new Tensor[0], (saved, g) -> new Tensor[1]));
            assertTrue(e.getMessage().contains("already on the tape"), e.getMessage());
        }
    }

    /**
     * A rule that runs its own backward (y = w * x recomputed with recording on) gives the leaf w
     * its gradient; a gradient-ready listener on w hears of it exactly once, with the gradient
     * complete.
     */
    @Test
    void nestedBackwardAnnouncesALeafOnce() {
        try (Scope s = Scope.open()) {
            Tensor w = Tensor.of(new double[] {2, -1}, 2).requiresGrad(true);
            Tensor x = Tensor.of(new double[] {3, 5}, 2);
            Tensor y;
            try (var off = Autograd.noGrad()) {
                y = Elementwise.mul(w, x);
            }
            Autograd.recordFunction("scaled", new Tensor[] {w}, new Tensor[] {y}, new Tensor[0], (saved, g) -> {
                try (var on = Autograd.enableGrad(); Tensor again = Elementwise.mul(w, x)) {
                    again.backward(g[0], false);
                }
                return new Tensor[1];
            });
            int[] heard = {0};
            double[][] seen = new double[1][];
            try (Autograd.Registration r = Autograd.onGradientReady(w, t -> {
                heard[0]++;
                seen[0] = t.grad().toDoubleArray();
            })) {
                Elementwise.mul(y, Tensor.of(new double[] {1, 10}, 2)).sum().backward();
            }
            assertEquals(1, heard[0], "announced once");
            assertArrayEquals(new double[] {3, 50}, seen[0], 0.0);
        }
    }

    /** y = 2x saving its output: closing y without a backward releases the node and its alias of y's storage. */
    @Test
    void savedTensorsAreFreedWithTheNode() {
        try (Tensor x = Tensor.zeros(DType.FLOAT32, 1000).requiresGrad(true)) {
            long before = Cortado.memoryStats(Device.CPU).allocatedBytes();
            Tensor y;
            try (var off = Autograd.noGrad()) {
                y = Elementwise.mul(x, 2.0);
            }
            Autograd.recordFunction("double", new Tensor[] {x}, new Tensor[] {y}, new Tensor[] {y},
                    (saved, g) -> new Tensor[] {Elementwise.mul(g[0], 2.0)});
            assertEquals(before + 4000, Cortado.memoryStats(Device.CPU).allocatedBytes(), 64, "y's storage, shared");
            y.close();
            assertEquals(before, Cortado.memoryStats(Device.CPU).allocatedBytes(), "closing the output frees the node");
        }
    }
}
