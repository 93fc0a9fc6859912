package dev.cortado.autograd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.ops.Elementwise;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * {@link Autograd#onGradientReady}: the listener runs once per backward per leaf, when the leaf's
 * gradient is complete (all contributions of a leaf used twice summed), before the backward ends
 * (the leaf nearest the loss first), not for leaves the backward does not reach, and no more once
 * its registration is closed.
 */
class GradientReadyTest {

    @Test
    void firesOncePerBackwardWithTheCompleteGradient() {
        try (Scope s = Scope.open()) {
            Tensor w1 = Tensor.of(new float[] {0.5f, -1.5f, 2f, 0.25f}, 2, 2).requiresGrad(true);
            Tensor w2 = Tensor.of(new float[] {1.5f, 0.75f, -0.5f, 1f}, 2, 2).requiresGrad(true);
            Tensor unused = Tensor.of(new float[] {1f}, 1).requiresGrad(true);
            Tensor x = Tensor.of(new float[] {1f, 2f, -3f, 0.5f}, 2, 2);
            List<String> order = new ArrayList<>();
            List<float[]> seenW1 = new ArrayList<>();
            try (Autograd.Registration r1 = Autograd.onGradientReady(w1, t -> {
                    order.add("w1");
                    seenW1.add(t.grad().toFloatArray());
                });
                 Autograd.Registration r2 = Autograd.onGradientReady(w2, t -> order.add("w2"));
                 Autograd.Registration r3 = Autograd.onGradientReady(unused, t -> order.add("unused"))) {
                // w1 is used twice: once through w2's matmul, once directly
                Tensor h = LinearAlgebra.matmul(x, w1);
                Tensor y = LinearAlgebra.matmul(Elementwise.relu(h), w2);
                Tensor loss = Reductions.sum(Elementwise.add(y, Elementwise.mul(h, h)));
                loss.backward();
                assertEquals(List.of("w2", "w1"), order, "w2 is nearer the loss; w1 once, after both contributions");
                assertArrayEquals(w1.grad().toFloatArray(), seenW1.get(0), 0f, "the listener saw the complete gradient");
                Reductions.sum(LinearAlgebra.matmul(x, w1)).backward();
                assertEquals(List.of("w2", "w1", "w1"), order, "again in the next backward, only for the leaves reached");
            }
            Reductions.sum(LinearAlgebra.matmul(x, w1)).backward();
            assertEquals(3, order.size(), "no call after the registration is closed");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Autograd.onGradientReady(x, t -> { }));
            assertTrue(e.getMessage().contains("not a leaf that requires gradients"), e.getMessage());
        }
    }
}
