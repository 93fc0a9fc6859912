package dev.cortado.models;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.Losses;
import dev.cortado.nn.ParamOptions;
import dev.cortado.ops.Generator;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

/**
 * ResNet: the published parameter counts, output shapes, gradients reaching every parameter,
 * stochastic depth (identity in eval, whole samples dropped in training), and a small network that
 * learns a task it cannot solve at initialisation.
 */
class ResNetTest {

    /** torchvision's counts for 1000 classes. */
    @ParameterizedTest(name = "{0}: {1} parameters")
    @CsvSource({"R18, 11689512", "R34, 21797672", "R50, 25557032", "R101, 44549160"})
    void parameterCountsAreThePublishedOnes(ResNet.Depth depth, long expected) {
        try (ResNet net = ResNet.builder(depth).build()) {
            assertEquals(expected, net.numParameters());
        }
    }

    static Tensor images(int n, int c, int hw, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[n * c * hw * hw];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return Tensor.of(x, n, c, hw, hw);
    }

    @Test
    void forwardShapesAndGradientsReachEveryParameter() {
        try (Scope s = Scope.open();
             ResNet basic = ResNet.builder(ResNet.Depth.R18).classes(7).width(8).build();
             ResNet bottleneck = ResNet.builder(ResNet.Depth.R50).classes(5).width(4).inChannels(1).build()) {
            Tensor y = basic.apply(images(2, 3, 45, 1));
            assertArrayEquals(new long[] {2, 7}, y.shape().toArray(), "odd input size through the strided stages");
            Tensor z = bottleneck.apply(images(3, 1, 32, 2));
            assertArrayEquals(new long[] {3, 5}, z.shape().toArray());
            y.sum().backward();
            z.sum().backward();
            for (ResNet net : new ResNet[] {basic, bottleneck}) {
                for (Map.Entry<String, Tensor> e : net.namedParameters().entrySet()) {
                    assertNotNull(e.getValue().grad(), e.getKey() + " got no gradient");
                    double norm = e.getValue().grad().abs().sum().item();
                    assertTrue(norm > 0 && Double.isFinite(norm), e.getKey() + " gradient norm " + norm);
                }
            }
        }
    }

    @Test
    void stochasticDepthDropsWholeSamplesInTrainingOnly() {
        try (Scope s = Scope.open();
             ResNet net = ResNet.builder(ResNet.Depth.R18).classes(3).width(4).smallImages(true)
                     .stochasticDepth(0.5, Generator.seeded(3)).params(ParamOptions.seeded(5)).build();
             ResNet plain = ResNet.builder(ResNet.Depth.R18).classes(3).width(4).smallImages(true)
                     .params(ParamOptions.seeded(5)).build()) {
            Tensor x = images(16, 3, 12, 9);
            net.eval();
            plain.eval();
            assertArrayEquals(plain.apply(x).toFloatArray(), net.apply(x).toFloatArray(), 0f,
                    "in eval stochastic depth is the identity");
            net.train();
            plain.train();
            float[] a = net.apply(x).toFloatArray();
            float[] b = plain.apply(x).toFloatArray();
            int differing = 0;
            for (int i = 0; i < a.length; i++) {
                differing += a[i] != b[i] ? 1 : 0;
            }
            assertTrue(differing > 0, "in training some residual branches were dropped");
            assertTrue(net.toString().contains("stochastic_depth=0.500"), "the last block's rate is shown");
        }
    }

    /**
     * A width-8 ResNet-18 learns to tell a bright top half from a bright bottom half (accuracy 50%
     * by chance) within 30 SGD steps; loss must fall below 40% of its start.
     */
    @Test
    void aSmallResNetLearns() {
        try (ResNet net = ResNet.builder(ResNet.Depth.R18).classes(2).width(8).inChannels(1).smallImages(true)
                .params(ParamOptions.seeded(11)).build()) {
            Sgd opt = Sgd.builder().lr(0.05).momentum(0.9).build(net.parameters());
            double first = 0;
            double last = 0;
            SplittableRandom r = new SplittableRandom(4);
            for (int step = 0; step < 30; step++) {
                float[] x = new float[16 * 12 * 12];
                long[] y = new long[16];
                for (int n = 0; n < 16; n++) {
                    y[n] = r.nextInt(2);
                    for (int i = 0; i < 12 * 12; i++) {
                        boolean top = i < 6 * 12;
                        x[n * 144 + i] = (float) (r.nextGaussian() * 0.5 + ((top == (y[n] == 0)) ? 1 : 0));
                    }
                }
                try (Scope s = Scope.open()) {
                    Tensor loss = Losses.crossEntropy(net.apply(Tensor.of(x, 16, 1, 12, 12)), Tensor.of(y, 16));
                    opt.zeroGrad();
                    loss.backward();
                    opt.step();
                    double v = loss.item();
                    if (step == 0) {
                        first = v;
                    }
                    last = v;
                }
            }
            opt.close();
            assertTrue(last < 0.4 * first, "loss " + first + " -> " + last);
        }
    }
}
