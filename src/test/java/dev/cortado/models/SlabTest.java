package dev.cortado.models;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.ProgressiveRepBN;
import dev.cortado.optim.Adam;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * SLAB in the ViT: the PRepBN schedule, the inference fold (folded output = unfolded output),
 * gradients to every parameter through the linear attention and its convolution branch, and a
 * short MNIST run in which the SLAB ViT (linear attention + PRepBN) learns about as well as the
 * softmax/LayerNorm ViT of the same size.
 */
class SlabTest {
    private static VisionTransformer.Builder slab(int imageSize, int patch) {
        return VisionTransformer.builder(imageSize, patch).attention(VisionTransformer.AttentionKind.SLAB_LINEAR);
    }

    private static Tensor randomImages(SplittableRandom r, int n, int side) {
        float[] x = new float[n * side * side];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return Tensor.of(x, n, 1, side, side);
    }

    /**
     * gamma 1, 2/3, 1/3, 0 over 3 steps; then, after training steps that move the BatchNorm
     * statistics away from (0, 1), the folded model's evaluation output equals the unfolded one's
     * to float32 rounding (1e-4 of the largest logit); folding before the schedule ends is refused.
     */
    @Test
    void prepBnDecaysAndFoldsExactly() {
        for (VisionTransformer.Pooling pooling : VisionTransformer.Pooling.values()) {
            try (VisionTransformer vit = slab(16, 4).inChannels(1).classes(5).dim(24).depth(2).heads(2).pooling(pooling)
                    .distillationToken(pooling == VisionTransformer.Pooling.CLASS_TOKEN).prepBatchNorm(3)
                    .params(ParamOptions.seeded(4)).build()) {
                ProgressiveRepBN first = (ProgressiveRepBN) vit.namedModules().get("blocks.0.norm1");
                Optimizer opt = Adam.adamW().lr(1e-2).build(vit.parameters());
                SplittableRandom r = new SplittableRandom(9);
                double[] gammas = new double[4];
                for (int step = 0; step < 4; step++) {
                    gammas[step] = first.gamma();
                    try (Scope s = Scope.open()) {
                        Tensor x = randomImages(r, 6, 16);
                        Tensor y = Tensor.of(new long[] {0, 1, 2, 3, 4, 0}, 6);
                        Tensor loss = Losses.crossEntropy(vit.apply(x), y);
                        opt.zeroGrad();
                        loss.backward();
                        opt.step();
                        ProgressiveRepBN.stepAll(vit);
                    }
                }
                opt.close();
                assertEquals(1.0, gammas[0]);
                assertEquals(2.0 / 3, gammas[1], 1e-15);
                assertEquals(1.0 / 3, gammas[2], 1e-15);
                assertEquals(0.0, gammas[3]);
                double[] mean = vit.namedModules().get("blocks.1.norm2.bn").buffer("running_mean").toDoubleArray();
                assertTrue(Reference.maxAbs(mean) > 1e-3, "the BatchNorm statistics moved");
                try (Scope s = Scope.open(); Autograd.GradMode off = Autograd.noGrad()) {
                    vit.eval();
                    Tensor x = randomImages(r, 3, 16);
                    double[] before = Reference.values(vit.apply(x));
                    vit.reparameterize();
                    for (Map.Entry<String, Module> e : vit.namedModules().entrySet()) {
                        if (e.getValue() instanceof ProgressiveRepBN n) {
                            assertTrue(n.isFolded(), e.getKey() + " folded");
                        }
                    }
                    double[] after = Reference.values(vit.apply(x));
                    Reference.assertCloseChecked(before, after, Reference.relativeTo(new Tol(1e-4, 1e-4), before),
                            "folded vs unfolded logits, " + pooling);
                }
            }
        }
        try (VisionTransformer vit = slab(8, 4).inChannels(1).classes(2).dim(8).depth(1).heads(1).prepBatchNorm(10)
                .build()) {
            IllegalStateException e = assertThrows(IllegalStateException.class, vit::reparameterize);
            assertTrue(e.getMessage().contains("gamma"), e.getMessage());
        }
        try (VisionTransformer vit = VisionTransformer.builder(8, 4).inChannels(1).classes(2).dim(8).depth(1).heads(1)
                .build()) {
            assertThrows(IllegalStateException.class, vit::reparameterize);
        }
    }

    @Test
    void everyParameterGetsAGradient() {
        try (VisionTransformer vit = slab(12, 4).inChannels(1).classes(3).dim(16).depth(2).heads(2).prepBatchNorm(5)
                .params(ParamOptions.seeded(2)).build(); Scope s = Scope.open()) {
            ProgressiveRepBN.stepAll(vit);
            ProgressiveRepBN.stepAll(vit); // gamma 0.6: both the LayerNorm and the RepBN branch carry gradient
            Tensor loss = Losses.crossEntropy(vit.apply(randomImages(new SplittableRandom(1), 4, 12)),
                    Tensor.of(new long[] {0, 1, 2, 0}, 4));
            loss.backward();
            for (Map.Entry<String, Tensor> e : vit.namedParameters().entrySet()) {
                assertNotNull(e.getValue().grad(), e.getKey() + " got no gradient");
                assertTrue(Reference.maxAbs(Reference.values(e.getValue().grad())) > 0, e.getKey() + " gradient is zero");
            }
        }
    }

    /**
     * A ViT of width 32, depth 2, 2 heads, 7x7 patches (16 + 1 tokens) trained for {@value #STEPS}
     * AdamW steps of 32 shuffled digits from the shipped 10k training set, then scored on the
     * first 1000 t10k digits: SLAB (linear attention, PRepBN decaying over the run, folded for the
     * evaluation) must reach 75% (chance: 10%) and stay within 8 points of the softmax/LayerNorm
     * ViT trained identically.
     */
    @Test
    void slabVitLearnsMnistAboutAsWellAsSoftmax() {
        try (TensorDataset train = Mnist.train10k(true); TensorDataset test = Mnist.test(true)) {
            float[] tx = train.inputs().toFloatArray();
            long[] ty = train.targets().toLongArray();
            float[] ex = test.inputs().toFloatArray();
            long[] ey = test.targets().toLongArray();
            double soft = trainAndScore(VisionTransformer.builder(28, 7), tx, ty, ex, ey, false);
            double linear = trainAndScore(slab(28, 7).prepBatchNorm(STEPS * 3 / 4), tx, ty, ex, ey, true);
            System.out.printf(Locale.ROOT, "SlabTest: %d steps, t10k[0, 1000) accuracy softmax+LN %.3f, SLAB+PRepBN %.3f%n",
                    STEPS, soft, linear);
            assertTrue(linear >= 0.75, "SLAB accuracy " + linear);
            assertTrue(linear >= soft - 0.08, "SLAB " + linear + " vs softmax " + soft);
        }
    }

    private static final int STEPS = 200;
    private static final int BATCH = 32;
    private static final int PIXELS = 28 * 28;

    private static double trainAndScore(VisionTransformer.Builder b, float[] tx, long[] ty, float[] ex, long[] ey,
                                        boolean fold) {
        try (VisionTransformer vit = b.inChannels(1).classes(10).dim(32).depth(2).heads(2)
                .pooling(VisionTransformer.Pooling.MEAN).params(ParamOptions.seeded(7)).build()) {
            Optimizer opt = Adam.adamW().lr(3e-3).weightDecay(0.01).build(vit.parameters());
            SplittableRandom r = new SplittableRandom(3);
            for (int step = 0; step < STEPS; step++) {
                float[] x = new float[BATCH * PIXELS];
                long[] y = new long[BATCH];
                for (int i = 0; i < BATCH; i++) {
                    int k = r.nextInt(ty.length);
                    System.arraycopy(tx, k * PIXELS, x, i * PIXELS, PIXELS);
                    y[i] = ty[k];
                }
                try (Scope s = Scope.open()) {
                    Tensor loss = Losses.crossEntropy(vit.apply(Tensor.of(x, BATCH, 1, 28, 28)), Tensor.of(y, BATCH));
                    opt.zeroGrad();
                    loss.backward();
                    opt.step();
                    ProgressiveRepBN.stepAll(vit);
                }
            }
            opt.close();
            vit.eval();
            if (fold) {
                vit.reparameterize();
            }
            int right = 0;
            int n = 1000;
            try (Scope s = Scope.open(); Autograd.GradMode off = Autograd.noGrad()) {
                float[] x = new float[n * PIXELS];
                System.arraycopy(ex, 0, x, 0, n * PIXELS);
                float[] logits = vit.apply(Tensor.of(x, n, 1, 28, 28)).toFloatArray();
                for (int i = 0; i < n; i++) {
                    int best = 0;
                    for (int c = 1; c < 10; c++) {
                        if (logits[i * 10 + c] > logits[i * 10 + best]) {
                            best = c;
                        }
                    }
                    right += best == ey[i] ? 1 : 0;
                }
            }
            return right / (double) n;
        }
    }
}
