package dev.cortado.models;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.ops.Convolution;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The elastic supernet: weight slicing (filters, channels, centred kernel) against an index-by-
 * index reference in float64 with gradients confined to the slice, sub-network extraction that
 * computes the same function, and sandwich-rule training that teaches both the largest and the
 * smallest sub-network.
 */
class ElasticNetTest {

    /**
     * A 7x7 shared kernel of 6 filters over 5 channels used as 4 filters, 3 channels, centre 3x3:
     * the output equals a convolution with that slice copied element by element, and the gradient
     * of the shared weight equals that convolution's weight gradient inside the slice, 0 outside.
     */
    @Test
    void slicedConvolutionMatchesItsSlice() {
        try (Scope s = Scope.open();
             ElasticNet.ElasticConv conv = new ElasticNet.ElasticConv(5, 6, 7, 1, ParamOptions.seeded(2))) {
            conv.to(DType.FLOAT64);
            double[] w = conv.parameter("weight").toDoubleArray();
            double[] slice = new double[4 * 3 * 3 * 3];
            for (int o = 0; o < 4; o++) {
                for (int i = 0; i < 3; i++) {
                    for (int y = 0; y < 3; y++) {
                        for (int x = 0; x < 3; x++) {
                            slice[((o * 3 + i) * 3 + y) * 3 + x] = w[((o * 5 + i) * 7 + y + 2) * 7 + x + 2];
                        }
                    }
                }
            }
            Tensor ref = Tensor.of(slice, 4, 3, 3, 3).requiresGrad(true);
            Tensor x = ResNetTest.images(2, 3, 6, 1).to(DType.FLOAT64);
            Tensor r = ResNetTest.images(2, 4, 6, 2).to(DType.FLOAT64);
            Tensor y = conv.forward(x, 4, 3);
            Tensor expected = Convolution.conv2d(x, ref, null, conv.options(3));
            assertArrayEquals(expected.toDoubleArray(), y.toDoubleArray(), 1e-12);
            y.mul(r).sum().backward();
            expected.mul(r).sum().backward();
            double[] g = conv.parameter("weight").grad().toDoubleArray();
            double[] gr = ref.grad().toDoubleArray();
            for (int o = 0; o < 6; o++) {
                for (int i = 0; i < 5; i++) {
                    for (int ky = 0; ky < 7; ky++) {
                        for (int kx = 0; kx < 7; kx++) {
                            boolean inside = o < 4 && i < 3 && ky >= 2 && ky < 5 && kx >= 2 && kx < 5;
                            double want = inside ? gr[((o * 3 + i) * 3 + ky - 2) * 3 + kx - 2] : 0;
                            assertEquals(want, g[((o * 5 + i) * 7 + ky) * 7 + kx], 1e-12);
                        }
                    }
                }
            }
        }
    }

    private static ElasticNet net(long seed) {
        return ElasticNet.builder().inChannels(1).classes(2).stemWidth(8).stageWidths(8, 16).depthChoices(1, 2)
                .kernelChoices(3, 5).widthRatios(0.5, 1.0).params(ParamOptions.seeded(seed)).build();
    }

    /** In evaluation mode, each extracted sub-network computes what the supernet computes with it active. */
    @Test
    void extractedSubnetworksComputeTheSameFunction() {
        try (Scope s = Scope.open(); ElasticNet supernet = net(3)) {
            // move the running statistics off their initial values
            Tensor warm = ResNetTest.images(8, 1, 12, 4);
            for (ElasticNet.Config c : new ElasticNet.Config[] {supernet.largest(), supernet.smallest()}) {
                supernet.setActive(c);
                supernet.apply(warm);
            }
            supernet.eval();
            Tensor x = ResNetTest.images(3, 1, 12, 5);
            SplittableRandom r = new SplittableRandom(6);
            ElasticNet.Config[] configs = {supernet.largest(), supernet.smallest(), supernet.sample(r), supernet.sample(r)};
            long previous = Long.MAX_VALUE;
            for (ElasticNet.Config c : configs) {
                supernet.setActive(c);
                float[] want = supernet.apply(x).toFloatArray();
                try (Module sub = supernet.extract()) {
                    assertArrayEquals(want, sub.apply(x).toFloatArray(), 1e-5f, c.toString());
                    assertTrue(sub.numParameters() <= supernet.numParameters());
                    if (c == configs[1]) {
                        assertTrue(sub.numParameters() < previous, "the smallest is smaller than the largest");
                    }
                    previous = sub.numParameters();
                }
            }
        }
        try (ElasticNet supernet = net(1)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> supernet.setActive(
                    new ElasticNet.Config(new int[] {1, 1}, new int[] {7, 3}, new int[] {8, 16})));
            assertTrue(e.getMessage().contains("stage 0"), e.getMessage());
        }
    }

    /**
     * Sandwich rule with in-place distillation on the bright-top / bright-bottom task (chance:
     * ln 2): after 25 steps both the largest and the smallest sub-network have a loss below 40% of
     * their loss at initialisation, on a fresh batch.
     */
    @Test
    void sandwichTrainingTeachesLargestAndSmallest() {
        try (ElasticNet supernet = net(7)) {
            Sgd opt = Sgd.builder().lr(0.05).momentum(0.9).build(supernet.parameters());
            SplittableRandom data = new SplittableRandom(8);
            SplittableRandom pick = new SplittableRandom(9);
            Tensor[] probe = batch(data);
            double[] before = losses(supernet, probe);
            for (int step = 0; step < 25; step++) {
                Tensor[] b = batch(data);
                try (Scope s = Scope.open()) {
                    supernet.sandwichStep(b[0], b[1], opt, 1, pick);
                }
                b[0].close();
                b[1].close();
            }
            double[] after = losses(supernet, probe);
            opt.close();
            probe[0].close();
            probe[1].close();
            assertTrue(after[0] < 0.4 * before[0], "largest " + before[0] + " -> " + after[0]);
            assertTrue(after[1] < 0.4 * before[1], "smallest " + before[1] + " -> " + after[1]);
        }
    }

    private static double[] losses(ElasticNet supernet, Tensor[] b) {
        double[] out = new double[2];
        ElasticNet.Config[] configs = {supernet.largest(), supernet.smallest()};
        for (int i = 0; i < 2; i++) {
            supernet.setActive(configs[i]);
            try (Scope s = Scope.open(); var off = dev.cortado.autograd.Autograd.noGrad()) {
                out[i] = Losses.crossEntropy(supernet.apply(b[0]), b[1]).item();
            }
        }
        supernet.setActive(supernet.largest());
        return out;
    }

    private static Tensor[] batch(SplittableRandom r) {
        float[] x = new float[16 * 144];
        long[] y = new long[16];
        for (int n = 0; n < 16; n++) {
            y[n] = r.nextInt(2);
            for (int i = 0; i < 144; i++) {
                x[n * 144 + i] = (float) (r.nextGaussian() * 0.5 + (((i < 72) == (y[n] == 0)) ? 1 : 0));
            }
        }
        return new Tensor[] {Tensor.of(x, 16, 1, 12, 12), Tensor.of(y, 16)};
    }
}
