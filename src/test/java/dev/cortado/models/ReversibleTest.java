package dev.cortado.models;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.Cortado;
import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Activation;
import dev.cortado.nn.LayerNorm;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Reductions;
import dev.cortado.optim.Adam;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Reversible couplings: the same outputs and gradients as the ordinary (stored) form in float64,
 * a peak memory at depth 16 at most half of the ordinary form's, and a small reversible network
 * that learns.
 */
class ReversibleTest {

    /** F and G as in the Reformer: LayerNorm, Linear to 4x, GELU, Linear back. */
    static Reversible stack(int depth, int half, long seed) {
        List<Reversible.Coupling> couplings = new ArrayList<>();
        ParamOptions p = ParamOptions.seeded(seed);
        for (int i = 0; i < depth; i++) {
            couplings.add(new Reversible.Coupling(mlp(half, p), mlp(half, p)));
        }
        return new Reversible(-1, couplings);
    }

    private static Module mlp(int c, ParamOptions p) {
        return new Sequential(new LayerNorm(new long[] {c}, 1e-5, true, true, p), new Linear(c, 4L * c, true, p),
                Activation.gelu(), new Linear(4L * c, c, true, p));
    }

    /** In float64, output, input gradient and every parameter gradient equal the ordinary form's to 1e-10. */
    @Test
    void gradientsEqualTheOrdinaryBlocks() {
        try (Scope s = Scope.open(); Reversible rev = stack(3, 4, 2)) {
            rev.to(DType.FLOAT64);
            Tensor x0 = ResNetTest.images(2, 3, 8, 1).reshape(2, 24, 8)
                    .to(DType.FLOAT64);
            Tensor w = ResNetTest.images(2, 3, 8, 2).reshape(2, 24, 8).to(DType.FLOAT64);
            Tensor xa = x0.detach().requiresGrad(true);
            Tensor ya = rev.apply(xa);
            ya.mul(w).sum().backward();
            Map<String, double[]> grads = new java.util.HashMap<>();
            for (Map.Entry<String, Tensor> e : rev.namedParameters().entrySet()) {
                assertNotNull(e.getValue().grad(), e.getKey());
                grads.put(e.getKey(), e.getValue().grad().toDoubleArray());
            }
            rev.zeroGrad();
            Tensor xb = x0.detach().requiresGrad(true);
            Tensor yb = rev.forwardStoringActivations(xb);
            assertArrayEquals(yb.toDoubleArray(), ya.toDoubleArray(), 1e-12);
            yb.mul(w).sum().backward();
            assertArrayEquals(xb.grad().toDoubleArray(), xa.grad().toDoubleArray(), 1e-10, "input gradient");
            for (Map.Entry<String, Tensor> e : rev.namedParameters().entrySet()) {
                assertArrayEquals(e.getValue().grad().toDoubleArray(), grads.get(e.getKey()), 1e-10, e.getKey());
            }
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> {
            try (Reversible rev = stack(1, 4, 1); Tensor odd = Tensor.zeros(DType.FLOAT32, 2, 7)) {
                rev.apply(odd);
            }
        });
        assertTrue(e.getMessage().contains("two equal halves"), e.getMessage());
    }

    /**
     * Peak host memory above the start (activations, gradients and temporaries), sampled after
     * the forward and whenever a parameter's gradient completes during the backward.
     */
    private static long peak(Reversible rev, Tensor x, boolean reversible) {
        rev.zeroGrad();
        for (Tensor p : rev.parameters()) {
            p.setGrad(null);
        }
        long base = Cortado.memoryStats(Device.CPU).allocatedBytes();
        long[] peak = {0};
        List<Autograd.Registration> listeners = new ArrayList<>();
        for (Tensor p : rev.parameters()) {
            listeners.add(Autograd.onGradientReady(p, t ->
                    peak[0] = Math.max(peak[0], Cortado.memoryStats(Device.CPU).allocatedBytes() - base)));
        }
        try (Scope s = Scope.open()) {
            Tensor y = reversible ? rev.apply(x) : rev.forwardStoringActivations(x);
            Tensor loss = Reductions.sum(y);
            peak[0] = Math.max(peak[0], Cortado.memoryStats(Device.CPU).allocatedBytes() - base);
            loss.backward();
        } finally {
            listeners.forEach(Autograd.Registration::close);
        }
        return peak[0];
    }

    /** Depth 16 on [8, 64, 32] float32: the reversible stack's peak is at most half the ordinary one's. */
    @Test
    void peakMemoryAtDepth16IsAtMostHalf() {
        try (Scope s = Scope.open(); Reversible rev = stack(16, 16, 3)) {
            Tensor x = ResNetTest.images(8, 1, 64, 4).reshape(8, 64, 64).narrow(2, 0, 32).contiguous().requiresGrad(true);
            long ordinary = peak(rev, x, false);
            long reversible = peak(rev, x, true);
            assertTrue(reversible > 0 && reversible <= ordinary / 2,
                    "peak bytes: reversible " + reversible + ", ordinary " + ordinary);
        }
    }

    /**
     * Tokens [16, 8, 4] embedded to width 16, two couplings, a linear head on all tokens: the
     * network learns whether the first or the last four tokens are bright (chance: ln 2 nats);
     * after 40 Adam steps the loss is below 40% of the first step's.
     */
    @Test
    void aSmallReversibleNetworkLearns() {
        try (Linear embed = new Linear(4, 16, true, ParamOptions.seeded(1)); Reversible rev = stack(2, 8, 2);
             Linear head = new Linear(8 * 16, 2, true, ParamOptions.seeded(3))) {
            List<Tensor> params = new ArrayList<>(embed.parameters());
            params.addAll(rev.parameters());
            params.addAll(head.parameters());
            Optimizer opt = Adam.builder().lr(1e-2).build(params);
            SplittableRandom r = new SplittableRandom(5);
            double first = 0;
            double last = 0;
            for (int step = 0; step < 40; step++) {
                float[] x = new float[16 * 32];
                long[] y = new long[16];
                for (int n = 0; n < 16; n++) {
                    y[n] = r.nextInt(2);
                    for (int i = 0; i < 32; i++) {
                        boolean front = i < 16;
                        x[n * 32 + i] = (float) (r.nextGaussian() * 0.5 + (front == (y[n] == 0) ? 1 : 0));
                    }
                }
                try (Scope s = Scope.open()) {
                    Tensor h = rev.apply(embed.apply(Tensor.of(x, 16, 8, 4)));
                    Tensor loss = Losses.crossEntropy(head.apply(h.reshape(16, 8 * 16)), Tensor.of(y, 16));
                    opt.zeroGrad();
                    loss.backward();
                    opt.step();
                    if (step == 0) {
                        first = loss.item();
                    }
                    last = loss.item();
                }
            }
            opt.close();
            assertTrue(last < 0.4 * first, "loss " + first + " -> " + last);
        }
    }
}
