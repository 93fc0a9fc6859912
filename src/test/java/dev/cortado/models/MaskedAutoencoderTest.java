package dev.cortado.models;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.TransformerBlock;
import dev.cortado.ops.Generator;
import dev.cortado.optim.Adam;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.HashSet;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Layer scale and MAE: the layer-scaled block against its formula in float64, random per-sample
 * masks, an encoder that sees only the visible patches, a loss blind to the visible patches
 * (value and gradient against a float64 reference), and a small MAE that learns to fill in
 * removed patches from visible ones.
 */
class MaskedAutoencoderTest {

    /** h = x + ls1 * attn(norm1(x)), y = h + ls2 * mlp(norm2(h)), in float64, with random ls1, ls2. */
    @Test
    void layerScaleBlockMatchesItsFormula() {
        try (Scope s = Scope.open();
             TransformerBlock block = TransformerBlock.builder(8, 2).layerScale(1e-4).params(ParamOptions.seeded(3)).build();
             VisionTransformer vit = VisionTransformer.small(224, 16).layerScale(1e-5).build()) {
            assertEquals(22_050_664 + 2 * 384 * 12, vit.numParameters(), "ViT-S/16 plus 2 x 384 per block");
            assertArrayEquals(new float[] {1e-5f, 1e-5f}, new float[] {vit.namedParameters().get("blocks.0.ls1").toFloatArray()[0],
                vit.namedParameters().get("blocks.11.ls2").toFloatArray()[383]});
            block.to(DType.FLOAT64);
            try (var off = Autograd.noGrad()) {
                block.parameter("ls1").copyFrom(ResNetTest.images(1, 1, 8, 6).reshape(64).narrow(0, 0, 8));
                block.parameter("ls2").copyFrom(ResNetTest.images(1, 1, 8, 7).reshape(64).narrow(0, 0, 8));
            }
            Tensor x = ResNetTest.images(2, 3, 8, 1).reshape(2, 24, 8).to(DType.FLOAT64);
            Tensor y = block.apply(x);
            Tensor h = x.add(block.child("attn").apply(block.child("norm1").apply(x)).mul(block.parameter("ls1")));
            Tensor expected = h.add(block.child("mlp").apply(block.child("norm2").apply(h)).mul(block.parameter("ls2")));
            assertArrayEquals(expected.toDoubleArray(), y.toDoubleArray(), 1e-12);
            y.sum().backward();
            assertTrue(block.parameter("ls1").grad().abs().sum().item() > 0, "ls1 learns");
        }
    }

    private static VisionTransformer encoder(int seed) {
        return VisionTransformer.builder(16, 4).inChannels(1).classes(3).dim(32).depth(2).heads(2)
                .positions(VisionTransformer.Positions.SINCOS).params(ParamOptions.seeded(seed)).build();
    }

    @Test
    void randomMasksArePerSamplePermutations() {
        try (MaskedAutoencoder mae = MaskedAutoencoder.builder(encoder(1)).channels(1).decoder(16, 1, 2)
                .generator(Generator.seeded(4)).build();
             MaskedAutoencoder.Masking m = mae.randomMasking(5, Device.CPU)) {
            long[] visible = m.visible().toLongArray();
            long[] restore = m.restore().toLongArray();
            float[] mask = m.mask().toFloatArray();
            assertArrayEquals(new long[] {5, 4}, m.visible().shape().toArray(), "16 patches, 75% removed: 4 kept");
            Set<String> distinct = new HashSet<>();
            for (int n = 0; n < 5; n++) {
                StringBuilder key = new StringBuilder();
                int removed = 0;
                for (int l = 0; l < 16; l++) {
                    removed += (int) mask[n * 16 + l];
                }
                assertEquals(12, removed);
                for (int j = 0; j < 4; j++) {
                    int p = (int) visible[n * 4 + j];
                    assertEquals(0f, mask[n * 16 + p], "a kept patch is not masked");
                    assertEquals(j, restore[n * 16 + p], "restore puts kept patch j back at its place");
                    key.append(p).append(',');
                }
                distinct.add(key.toString());
            }
            assertTrue(distinct.size() > 1, "each image draws its own mask");
        }
    }

    /**
     * The encoder's output for the visible patches does not change at all when the pixels of the
     * removed patches change; its length is 1 + K; with every patch visible in order it equals the
     * ordinary forward.
     */
    @Test
    void encoderSeesOnlyVisiblePatches() {
        try (Scope s = Scope.open(); VisionTransformer vit = encoder(2)) {
            Tensor images = ResNetTest.images(2, 1, 16, 3);
            long[][] keep = {{0, 5, 10, 15}, {3, 1, 12, 6}};
            try (MaskedAutoencoder.Masking m = MaskedAutoencoder.Masking.of(keep, 16, Device.CPU)) {
                float[] a = vit.features(images, m.visible()).toFloatArray();
                assertArrayEquals(new long[] {2, 5, 32}, vit.features(images, m.visible()).shape().toArray());
                float[] pixels = images.toFloatArray();
                float[] mask = m.mask().toFloatArray();
                for (int n = 0; n < 2; n++) {
                    for (int i = 0; i < 256; i++) {
                        int patch = (i / 16 / 4) * 4 + (i % 16) / 4;
                        if (mask[n * 16 + patch] == 1f) {
                            pixels[n * 256 + i] += 10f;
                        }
                    }
                }
                float[] b = vit.features(Tensor.of(pixels, 2, 1, 16, 16), m.visible()).toFloatArray();
                assertArrayEquals(a, b, 0f, "removed patches never reach the encoder");
                pixels[0] += 1f; // patch 0 of image 0 is visible
                float[] c = vit.features(Tensor.of(pixels, 2, 1, 16, 16), m.visible()).toFloatArray();
                assertNotEquals(a[0], c[0], "a visible patch does reach it");
            }
            long[][] all = new long[2][16];
            for (int l = 0; l < 16; l++) {
                all[0][l] = l;
                all[1][l] = l;
            }
            try (MaskedAutoencoder.Masking m = MaskedAutoencoder.Masking.of(all, 16, Device.CPU)) {
                assertArrayEquals(vit.features(images).toFloatArray(), vit.features(images, m.visible()).toFloatArray(), 1e-5f);
            }
        }
    }

    /**
     * In float64, with and without per-patch normalisation: the loss equals a loop reference over
     * the removed patches, and its gradient with respect to the prediction is exactly zero on the
     * visible ones (and equals the reference's on the removed ones).
     */
    @Test
    void lossCountsOnlyRemovedPatches() {
        int n = 2;
        int l = 5;
        int d = 6;
        double[] pred = new double[n * l * d];
        double[] target = new double[n * l * d];
        SplittableRandom r = new SplittableRandom(8);
        for (int i = 0; i < pred.length; i++) {
            pred[i] = r.nextGaussian();
            target[i] = r.nextGaussian() * 2 + 1;
        }
        float[] mask = {1, 0, 1, 1, 0, 0, 1, 0, 0, 1};
        for (boolean norm : new boolean[] {false, true}) {
            double[] t = target.clone();
            if (norm) {
                for (int row = 0; row < n * l; row++) {
                    double mean = 0;
                    for (int j = 0; j < d; j++) {
                        mean += target[row * d + j] / d;
                    }
                    double var = 0;
                    for (int j = 0; j < d; j++) {
                        var += Math.pow(target[row * d + j] - mean, 2) / (d - 1);
                    }
                    for (int j = 0; j < d; j++) {
                        t[row * d + j] = (target[row * d + j] - mean) / Math.sqrt(var + 1e-6);
                    }
                }
            }
            double count = 0;
            for (float m : mask) {
                count += m;
            }
            double expected = 0;
            double[] grad = new double[pred.length];
            for (int row = 0; row < n * l; row++) {
                for (int j = 0; j < d; j++) {
                    double diff = pred[row * d + j] - t[row * d + j];
                    expected += mask[row] * diff * diff / d / count;
                    grad[row * d + j] = mask[row] * 2 * diff / d / count;
                }
            }
            try (Scope s = Scope.open()) {
                Tensor p = Tensor.of(pred, n, l, d).requiresGrad(true);
                Tensor loss = MaskedAutoencoder.loss(p, Tensor.of(target, n, l, d), Tensor.of(mask, n, l).to(DType.FLOAT64),
                        norm);
                assertEquals(expected, loss.item(), 1e-12, "normPixels " + norm);
                loss.backward();
                double[] g = p.grad().toDoubleArray();
                for (int i = 0; i < g.length; i++) {
                    if (mask[i / d] == 0f) {
                        assertEquals(0.0, g[i], 0.0, "visible patch " + i / d + " gets no gradient");
                    } else {
                        assertEquals(grad[i], g[i], 1e-12);
                    }
                }
            }
        }
    }

    @Test
    void patchifyOrdersPixelsByRowColumnChannel() {
        try (Scope s = Scope.open(); MaskedAutoencoder mae = MaskedAutoencoder.builder(
                VisionTransformer.builder(8, 4).inChannels(2).dim(16).depth(1).heads(2).build()).channels(2)
                .decoder(16, 1, 2).build()) {
            float[] x = new float[2 * 8 * 8];
            for (int i = 0; i < x.length; i++) {
                x[i] = i;
            }
            float[] p = mae.patchify(Tensor.of(x, 1, 2, 8, 8)).toFloatArray();
            // patch (1, 0), pixel (row 2, col 3), channel 1 of image 0
            int patch = 2;
            int at = patch * 32 + (2 * 4 + 3) * 2 + 1;
            assertEquals(1 * 64 + (4 + 2) * 8 + 3, p[at], 0f);
        }
    }

    /**
     * Each 16x16 image is one random brightness b ~ N(0, 1) plus noise 0.1; 12 of its 16 patches
     * are removed. A decoder that ignores the visible patches cannot beat the variance of b (loss
     * 1); after 80 AdamW steps the mean loss of the last 5 must be below 0.3 and below 30% of the
     * first step's.
     */
    @Test
    void aSmallMaeLearnsToFillInRemovedPatches() {
        try (MaskedAutoencoder mae = MaskedAutoencoder.builder(encoder(5)).channels(1).decoder(32, 1, 2).normPixels(false)
                .generator(Generator.seeded(6)).params(ParamOptions.seeded(7)).build()) {
            Optimizer opt = Adam.adamW().lr(3e-3).weightDecay(0).build(mae.parameters());
            SplittableRandom r = new SplittableRandom(9);
            double first = 0;
            double last = 0;
            for (int step = 0; step < 80; step++) {
                float[] x = new float[16 * 256];
                for (int n = 0; n < 16; n++) {
                    double b = r.nextGaussian();
                    for (int i = 0; i < 256; i++) {
                        x[n * 256 + i] = (float) (b + 0.1 * r.nextGaussian());
                    }
                }
                try (Scope s = Scope.open()) {
                    Tensor loss = mae.apply(Tensor.of(x, 16, 1, 16, 16));
                    opt.zeroGrad();
                    loss.backward();
                    opt.step();
                    if (step == 0) {
                        first = loss.item();
                    }
                    if (step >= 75) {
                        last += loss.item() / 5;
                    }
                }
            }
            opt.close();
            assertTrue(last < 0.3 && last < 0.3 * first, "loss " + first + " -> " + last);
            Module enc = mae.encoder();
            assertTrue(enc.numParameters() > 0);
        }
    }
}
