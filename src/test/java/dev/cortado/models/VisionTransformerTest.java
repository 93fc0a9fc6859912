package dev.cortado.models;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.ParamOptions;
import dev.cortado.optim.Adam;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * ViT/DeiT: published parameter counts, shapes, sine-cosine positions against their formula in
 * float64, gradients to every parameter, the distillation losses against a float64 reference, and
 * a tiny ViT that learns.
 */
class VisionTransformerTest {

    @Test
    void parameterCountsAreThePublishedOnes() {
        try (VisionTransformer b = VisionTransformer.base(224, 16).build();
             VisionTransformer s = VisionTransformer.small(224, 16).build();
             VisionTransformer t = VisionTransformer.tiny(224, 16).build();
             VisionTransformer deit = VisionTransformer.tiny(224, 16).distillationToken(true).build()) {
            assertEquals(86_567_656, b.numParameters());
            assertEquals(22_050_664, s.numParameters());
            assertEquals(5_717_416, t.numParameters());
            assertEquals(5_910_800, deit.numParameters(), "DeiT-Ti distilled");
        }
    }

    @Test
    void shapesGradientsAndPositions() {
        try (Scope s = Scope.open();
             VisionTransformer vit = VisionTransformer.builder(28, 7).inChannels(1).classes(10).dim(32).depth(2)
                     .heads(4).positions(VisionTransformer.Positions.SINCOS).pooling(VisionTransformer.Pooling.MEAN)
                     .distillationToken(true).params(ParamOptions.seeded(2)).build()) {
            Tensor x = ResNetTest.images(3, 1, 28, 1);
            Tensor[] both = vit.forwardBoth(x);
            assertArrayEquals(new long[] {3, 10}, both[0].shape().toArray());
            assertArrayEquals(new long[] {3, 18, 32}, vit.features(x).shape().toArray(), "2 prefix tokens + 16 patches");
            both[0].add(both[1]).sum().backward();
            for (Map.Entry<String, Tensor> e : vit.namedParameters().entrySet()) {
                assertNotNull(e.getValue().grad(), e.getKey() + " got no gradient");
            }
            // sin/cos positions: token (prefix + r*4 + c), channel k of the row quarter = sin(r * 10000^(-k/8))
            float[] pos = vit.buffer("pos_embed").toFloatArray();
            for (int r = 0; r < 4; r++) {
                for (int c = 0; c < 4; c++) {
                    for (int k = 0; k < 8; k++) {
                        double w = Math.pow(10000, -k / 8.0);
                        int base = (2 + r * 4 + c) * 32;
                        assertEquals(Math.sin(r * w), pos[base + k], 1e-6);
                        assertEquals(Math.cos(c * w), pos[base + 24 + k], 1e-6);
                    }
                }
            }
            for (int i = 0; i < 64; i++) {
                assertEquals(0f, pos[i], "the prefix tokens have no position");
            }
            vit.eval();
            float[] mean = vit.apply(x).toFloatArray();
            Tensor[] evalBoth = vit.forwardBoth(x);
            float[] a = evalBoth[0].toFloatArray();
            float[] d = evalBoth[1].toFloatArray();
            for (int i = 0; i < mean.length; i++) {
                assertEquals((a[i] + d[i]) / 2, mean[i], 1e-5, "DeiT evaluation averages the heads");
            }
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> VisionTransformer.builder(30, 7));
        assertTrue(e.getMessage().contains("multiple of the patch size 7"), e.getMessage());
    }

    /** In float64, the gradients of the tokens, positions, patch embedding and attention match central differences. */
    @Test
    void gradientsMatchFiniteDifferencesInFloat64() {
        try (Scope s = Scope.open();
             VisionTransformer vit = VisionTransformer.builder(16, 8).inChannels(1).classes(4).dim(32).depth(2).heads(2)
                     .params(ParamOptions.seeded(3)).build()) {
            vit.to(dev.cortado.tensor.DType.FLOAT64);
            Tensor x = ResNetTest.images(2, 1, 16, 1).to(dev.cortado.tensor.DType.FLOAT64);
            Tensor w = ResNetTest.images(1, 1, 2, 7).reshape(1, 4).to(dev.cortado.tensor.DType.FLOAT64);
            vit.apply(x).mul(w).sum().backward();
            for (String name : new String[] {"cls_token", "pos_embed", "patch_embed.weight", "blocks.0.attn.wq.weight",
                    "blocks.1.mlp.fc1.weight"}) {
                Tensor p = vit.namedParameters().get(name);
                double[] g = p.grad().toDoubleArray();
                for (int k : new int[] {0, 3, 17}) {
                    double[] v = p.toDoubleArray();
                    double eps = 1e-5;
                    double plus;
                    double minus;
                    try (var off = dev.cortado.autograd.Autograd.noGrad()) {
                        v[k] += eps;
                        p.copyFrom(Tensor.of(v, p.shape().toArray()));
                        plus = vit.apply(x).mul(w).sum().item();
                        v[k] -= 2 * eps;
                        p.copyFrom(Tensor.of(v, p.shape().toArray()));
                        minus = vit.apply(x).mul(w).sum().item();
                        v[k] += eps;
                        p.copyFrom(Tensor.of(v, p.shape().toArray()));
                    }
                    double numeric = (plus - minus) / (2 * eps);
                    assertEquals(numeric, g[k], 1e-6 + 1e-5 * Math.abs(numeric), name + "[" + k + "]");
                }
            }
        }
    }

    @Test
    void distillationLossesMatchAFloat64Reference() {
        double[][] cls = {{0.5, -1.0, 2.0}, {1.5, 0.25, -0.75}};
        double[][] dist = {{-0.5, 1.0, 0.3}, {0.2, -1.2, 0.9}};
        double[][] teacher = {{2.0, 0.1, -1.0}, {-0.3, 0.4, 1.7}};
        long[] y = {2, 0};
        double alpha = 0.3;
        double tau = 2.0;
        double ceCls = 0;
        double ceDistHard = 0;
        double kl = 0;
        for (int n = 0; n < 2; n++) {
            ceCls += -logSoftmax(cls[n], 1)[(int) y[n]] / 2;
            int t = teacher[n][0] > teacher[n][1] ? (teacher[n][0] > teacher[n][2] ? 0 : 2) : (teacher[n][1] > teacher[n][2] ? 1 : 2);
            ceDistHard += -logSoftmax(dist[n], 1)[t] / 2;
            double[] lt = logSoftmax(teacher[n], tau);
            double[] ls = logSoftmax(dist[n], tau);
            for (int c = 0; c < 3; c++) {
                kl += Math.exp(lt[c]) * (lt[c] - ls[c]) / 2;
            }
        }
        try (Scope s = Scope.open()) {
            Tensor tc = Tensor.of(flat(cls), 2, 3);
            Tensor td = Tensor.of(flat(dist), 2, 3);
            Tensor tt = Tensor.of(flat(teacher), 2, 3);
            Tensor ty = Tensor.of(y, 2);
            assertEquals((ceCls + ceDistHard) / 2, Distillation.hard(tc, td, ty, tt).item(), 1e-5);
            assertEquals((1 - alpha) * ceCls + alpha * tau * tau * kl, Distillation.soft(tc, td, ty, tt, alpha, tau).item(), 1e-5);
        }
    }

    static float[] flat(double[][] a) {
        float[] f = new float[a.length * a[0].length];
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < a[0].length; j++) {
                f[i * a[0].length + j] = (float) a[i][j];
            }
        }
        return f;
    }

    static double[] logSoftmax(double[] x, double tau) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : x) {
            max = Math.max(max, v / tau);
        }
        double sum = 0;
        for (double v : x) {
            sum += Math.exp(v / tau - max);
        }
        double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = x[i] / tau - max - Math.log(sum);
        }
        return out;
    }

    /**
     * A 2-block ViT with one patch per quadrant learns which quadrant of a 16x16 image is bright
     * (chance: ln 4 = 1.386 nats) in 100 AdamW steps: the mean loss of the last 5 steps below half
     * of the first step's. Mean pooling: a class token learns the same, more slowly (it must first
     * learn to attend), which takes more steps than a unit test should.
     */
    @Test
    void aTinyVitLearns() {
        try (VisionTransformer vit = VisionTransformer.builder(16, 8).inChannels(1).classes(4).dim(32).depth(2).heads(2).pooling(VisionTransformer.Pooling.MEAN)
                .params(ParamOptions.seeded(3)).build()) {
            Optimizer opt = Adam.adamW().lr(1e-2).weightDecay(0).build(vit.parameters());
            SplittableRandom r = new SplittableRandom(5);
            double first = 0;
            double last = 0;
            for (int step = 0; step < 100; step++) {
                float[] x = new float[32 * 256];
                long[] y = new long[32];
                for (int n = 0; n < 32; n++) {
                    y[n] = r.nextInt(4);
                    for (int i = 0; i < 256; i++) {
                        int q = (i / 16 < 8 ? 0 : 2) + (i % 16 < 8 ? 0 : 1);
                        x[n * 256 + i] = (float) (r.nextGaussian() * 0.5 + (q == y[n] ? 1 : 0));
                    }
                }
                try (Scope s = Scope.open()) {
                    Tensor loss = dev.cortado.nn.Losses.crossEntropy(vit.apply(Tensor.of(x, 32, 1, 16, 16)), Tensor.of(y, 32));
                    opt.zeroGrad();
                    loss.backward();
                    opt.step();
                    if (step == 0) {
                        first = loss.item();
                    }
                    if (step >= 95) {
                        last += loss.item() / 5;
                    }
                }
            }
            opt.close();
            assertTrue(last < 0.5 * first, "loss " + first + " -> " + last);
        }
    }
}
