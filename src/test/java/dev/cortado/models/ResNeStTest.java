package dev.cortado.models;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.autograd.GradCheck;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * ResNeSt, its split-attention convolution and MobileNet's depthwise-separable blocks: published
 * parameter counts, split attention against a float64 loop reference and central differences,
 * gradients to every parameter, and a small ResNeSt that learns.
 */
class ResNeStTest {

    @Test
    void parameterCountsAreThePublishedOnes() {
        try (ResNeSt r50 = ResNeSt.builder(ResNeSt.Depth.R50).build(); MobileNet m = MobileNet.builder().build()) {
            assertEquals(27_483_240, r50.numParameters(), "ResNeSt-50 (the paper's 27.5M)");
            assertEquals(4_231_976, m.numParameters(), "MobileNet v1 1.0-224");
        }
        assertEquals(32, SplitAttention.attentionWidth(64 * 2));
        assertEquals(64, SplitAttention.attentionWidth(128 * 2));
        assertEquals(256, SplitAttention.attentionWidth(512 * 2));
    }

    /**
     * Radix 3, cardinality 2, evaluation mode: from the module's own convolution output
     * relu(bn0(conv(x))), a float64 loop computes the split sum, the pooled vector, both grouped
     * 1x1 convolutions with the batch norm between, the softmax across splits within each group,
     * and the weighted sum; the module must agree to 1e-10.
     */
    @Test
    void splitAttentionMatchesALoopReference() {
        int n = 2;
        int in = 6;
        int ch = 6;
        int radix = 3;
        int card = 2;
        try (Scope s = Scope.open(); SplitAttention sa = new SplitAttention(in, ch, 3, 1, radix, card, ParamOptions.seeded(4))) {
            sa.to(DType.FLOAT64);
            sa.eval();
            randomiseNorms(sa);
            Tensor x = ResNetTest.images(n, in, 5, 3).to(DType.FLOAT64);
            double[] got = sa.apply(x).toDoubleArray();
            Tensor yt;
            try (Tensor c = sa.child("conv").apply(x); Tensor b = sa.child("bn0").apply(c)) {
                yt = b.relu();
            }
            double[] y = yt.toDoubleArray();
            int hw = 25;
            Map<String, Tensor> params = sa.namedParameters();
            Map<String, Tensor> buffers = sa.namedBuffers();
            double[] w1 = params.get("fc1.weight").toDoubleArray();
            double[] b1 = params.get("fc1.bias").toDoubleArray();
            double[] w2 = params.get("fc2.weight").toDoubleArray();
            double[] b2 = params.get("fc2.bias").toDoubleArray();
            double[] g1 = params.get("bn1.weight").toDoubleArray();
            double[] be1 = params.get("bn1.bias").toDoubleArray();
            double[] m1 = buffers.get("bn1.running_mean").toDoubleArray();
            double[] v1 = buffers.get("bn1.running_var").toDoubleArray();
            int att = b1.length;
            int chPerGroup = ch / card;
            int attPerGroup = att / card;
            int outPerGroup = ch * radix / card;
            for (int b = 0; b < n; b++) {
                double[] gap = new double[ch];
                for (int c = 0; c < ch; c++) {
                    for (int r = 0; r < radix; r++) {
                        for (int p = 0; p < hw; p++) {
                            gap[c] += y[((b * radix + r) * ch + c) * hw + p] / hw;
                        }
                    }
                }
                double[] hidden = new double[att];
                for (int o = 0; o < att; o++) {
                    int g = o / attPerGroup;
                    double acc = b1[o];
                    for (int j = 0; j < chPerGroup; j++) {
                        acc += w1[o * chPerGroup + j] * gap[g * chPerGroup + j];
                    }
                    acc = (acc - m1[o]) / Math.sqrt(v1[o] + 1e-5) * g1[o] + be1[o];
                    hidden[o] = Math.max(0, acc);
                }
                double[] logit = new double[ch * radix]; // [card][radix][chPerGroup]
                for (int o = 0; o < ch * radix; o++) {
                    int g = o / outPerGroup;
                    double acc = b2[o];
                    for (int j = 0; j < attPerGroup; j++) {
                        acc += w2[o * attPerGroup + j] * hidden[g * attPerGroup + j];
                    }
                    logit[o] = acc;
                }
                for (int g = 0; g < card; g++) {
                    for (int j = 0; j < chPerGroup; j++) {
                        double max = Double.NEGATIVE_INFINITY;
                        for (int r = 0; r < radix; r++) {
                            max = Math.max(max, logit[(g * radix + r) * chPerGroup + j]);
                        }
                        double sum = 0;
                        for (int r = 0; r < radix; r++) {
                            sum += Math.exp(logit[(g * radix + r) * chPerGroup + j] - max);
                        }
                        int c = g * chPerGroup + j;
                        for (int p = 0; p < hw; p++) {
                            double expected = 0;
                            for (int r = 0; r < radix; r++) {
                                double a = Math.exp(logit[(g * radix + r) * chPerGroup + j] - max) / sum;
                                expected += a * y[((b * radix + r) * ch + c) * hw + p];
                            }
                            assertEquals(expected, got[(b * ch + c) * hw + p], 1e-10, "b " + b + " c " + c + " p " + p);
                        }
                    }
                }
            }
        }
    }

    /** Non-trivial batch-norm statistics and affine parameters, so the reference exercises them. */
    private static void randomiseNorms(Module m) {
        SplittableRandom r = new SplittableRandom(9);
        try (var off = Autograd.noGrad()) {
            for (Map.Entry<String, Tensor> e : m.namedBuffers().entrySet()) {
                Tensor t = e.getValue();
                if (!t.dtype().isFloatingPoint()) {
                    continue;
                }
                double[] v = new double[(int) t.numel()];
                for (int i = 0; i < v.length; i++) {
                    v[i] = e.getKey().endsWith("var") ? 0.5 + r.nextDouble() : r.nextGaussian() * 0.3;
                }
                t.copyFrom(Tensor.of(v, t.shape().toArray()));
            }
            for (Map.Entry<String, Tensor> e : m.namedParameters().entrySet()) {
                if (e.getKey().contains("bn")) {
                    Tensor t = e.getValue();
                    double[] v = new double[(int) t.numel()];
                    for (int i = 0; i < v.length; i++) {
                        v[i] = (e.getKey().endsWith("weight") ? 1 : 0) + r.nextGaussian() * 0.3;
                    }
                    t.copyFrom(Tensor.of(v, t.shape().toArray()));
                }
            }
        }
    }

    /** Float64, training mode (batch statistics): input gradients against central differences. */
    @Test
    void splitAttentionGradientsMatchFiniteDifferences() {
        for (int radix : new int[] {1, 2}) {
            try (Scope s = Scope.open(); SplitAttention sa = new SplitAttention(4, 4, 3, 2, radix, 2, ParamOptions.seeded(5))) {
                sa.to(DType.FLOAT64);
                Tensor x = ResNetTest.images(3, 4, 5, 8).to(DType.FLOAT64).requiresGrad(true);
                GradCheck.check("split attention radix " + radix, GradCheck.Options.DEFAULT.withTolerance(1e-6, 1e-4),
                        in -> sa.apply(in[0]), x);
            }
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new SplitAttention(4, 6, 3, 1, 2, 4, ParamOptions.seeded(1)));
        assertTrue(e.getMessage().contains("cardinality 4"), e.getMessage());
    }

    @Test
    void forwardShapesAndGradientsReachEveryParameter() {
        try (Scope s = Scope.open();
             ResNeSt net = ResNeSt.builder(ResNeSt.Depth.R50).width(8).classes(5).cardinality(2).radix(2)
                     .params(ParamOptions.seeded(2)).build();
             MobileNet mobile = MobileNet.builder().width(0.125).classes(3).params(ParamOptions.seeded(3)).build()) {
            Tensor y = net.apply(ResNetTest.images(2, 3, 45, 1));
            assertArrayEquals(new long[] {2, 5}, y.shape().toArray(), "odd input size through the strided stages");
            Tensor z = mobile.apply(ResNetTest.images(2, 3, 33, 2));
            assertArrayEquals(new long[] {2, 3}, z.shape().toArray());
            y.sum().backward();
            z.sum().backward();
            for (Module m : new Module[] {net, mobile}) {
                for (Map.Entry<String, Tensor> e : m.namedParameters().entrySet()) {
                    assertNotNull(e.getValue().grad(), e.getKey() + " got no gradient");
                    double norm = e.getValue().grad().abs().sum().item();
                    assertTrue(norm > 0 && Double.isFinite(norm), e.getKey() + " gradient norm " + norm);
                }
            }
        }
    }

    /**
     * A width-8 small-image ResNeSt-50 learns to tell a bright top half from a bright bottom half
     * (chance: ln 2 nats) within 30 SGD steps: the loss falls below 40% of its start.
     */
    @Test
    void aSmallResNeStLearns() {
        try (ResNeSt net = ResNeSt.builder(ResNeSt.Depth.R50).width(8).classes(2).inChannels(1).smallImages(true)
                .params(ParamOptions.seeded(11)).build()) {
            Sgd opt = Sgd.builder().lr(0.05).momentum(0.9).build(net.parameters());
            SplittableRandom r = new SplittableRandom(4);
            double first = 0;
            double last = 0;
            for (int step = 0; step < 30; step++) {
                float[] x = new float[16 * 144];
                long[] y = new long[16];
                for (int n = 0; n < 16; n++) {
                    y[n] = r.nextInt(2);
                    for (int i = 0; i < 144; i++) {
                        x[n * 144 + i] = (float) (r.nextGaussian() * 0.5 + (((i < 72) == (y[n] == 0)) ? 1 : 0));
                    }
                }
                try (Scope s = Scope.open()) {
                    Tensor loss = Losses.crossEntropy(net.apply(Tensor.of(x, 16, 1, 12, 12)), Tensor.of(y, 16));
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
