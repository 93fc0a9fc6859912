package dev.cortado.models;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.io.Batch;
import dev.cortado.io.DataLoader;
import dev.cortado.io.Dataset;
import dev.cortado.io.Example;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.Test;

/**
 * The training recipes: mixup and CutMix with their mixed loss (and label smoothing) against a
 * float64 reference, Beta draws with the right moments, the weight EMA against its formula,
 * multi-sample dropout against its definition, and RandAugment's operations against their
 * formulas and running on the DataLoader's thread.
 */
class RecipesTest {

    private static double[] logSoftmax(double[] row) {
        return VisionTransformerTest.logSoftmax(row, 1);
    }

    /**
     * Mixup on 4 images with distinct labels 0..3: each mixed image is lambda x_i + (1 - lambda)
     * x_perm(i), perm read off the partner labels; the loss equals lambda CE(y) + (1 - lambda)
     * CE(y_perm) computed in float64, with label smoothing 0.1.
     */
    @Test
    void mixupMixesImagesAndLabels() {
        try (Scope s = Scope.open()) {
            Mixing mixing = Mixing.builder().mixup(0.4).labelSmoothing(0.1).seed(3).build();
            Tensor x = ResNetTest.images(4, 2, 3, 1).to(DType.FLOAT64);
            Tensor y = Tensor.of(new long[] {0, 1, 2, 3}, 4);
            try (Mixing.Mixed m = mixing.apply(x, y)) {
                double lam = m.lambda();
                assertTrue(lam > 0 && lam < 1, "lambda " + lam);
                long[] perm = m.partnerTargets().toLongArray();
                double[] xs = x.toDoubleArray();
                double[] mixed = m.images().toDoubleArray();
                for (int i = 0; i < 4; i++) {
                    for (int j = 0; j < 18; j++) {
                        assertEquals(lam * xs[i * 18 + j] + (1 - lam) * xs[(int) perm[i] * 18 + j], mixed[i * 18 + j], 1e-12);
                    }
                }
                double[][] logits = {{0.3, -1, 2, 0.5}, {1, 0, -0.5, 0.2}, {-1, 2, 0.1, 0}, {0.4, 0.4, -2, 1}};
                double eps = 0.1;
                double expected = 0;
                for (int i = 0; i < 4; i++) {
                    double[] lp = logSoftmax(logits[i]);
                    double mean = 0;
                    for (double v : lp) {
                        mean -= v / 4;
                    }
                    double ceA = (1 - eps) * -lp[i] + eps * mean;
                    double ceB = (1 - eps) * -lp[(int) perm[i]] + eps * mean;
                    expected += (lam * ceA + (1 - lam) * ceB) / 4;
                }
                double[] flat = new double[16];
                for (int i = 0; i < 16; i++) {
                    flat[i] = logits[i / 4][i % 4];
                }
                Tensor l = Tensor.of(flat, 4, 4);
                assertEquals(expected, m.loss(l).item(), 1e-12);
            }
        }
    }

    /** CutMix: every pixel comes from the image or its partner, and the partner's share is 1 - lambda. */
    @Test
    void cutmixPastesABoxAndSetsLambdaToTheKeptArea() {
        try (Scope s = Scope.open()) {
            Mixing mixing = Mixing.builder().cutmix(1.0).seed(5).build();
            int boxes = 0;
            for (int trial = 0; trial < 5; trial++) {
                Tensor x = ResNetTest.images(3, 1, 10, 10 + trial);
                Tensor y = Tensor.of(new long[] {0, 1, 2}, 3);
                try (Mixing.Mixed m = mixing.apply(x, y)) {
                    long[] perm = m.partnerTargets().toLongArray();
                    float[] xs = x.toFloatArray();
                    float[] mixed = m.images().toFloatArray();
                    for (int i = 0; i < 3; i++) {
                        if (perm[i] == i) {
                            continue;
                        }
                        int fromPartner = 0;
                        for (int j = 0; j < 100; j++) {
                            float own = xs[i * 100 + j];
                            float other = xs[(int) perm[i] * 100 + j];
                            float v = mixed[i * 100 + j];
                            assertTrue(v == own || v == other, "pixel " + j + " of image " + i);
                            fromPartner += v == other ? 1 : 0;
                        }
                        assertEquals(1 - m.lambda(), fromPartner / 100.0, 1e-12, "image " + i);
                        boxes += fromPartner > 0 ? 1 : 0;
                    }
                }
            }
            assertTrue(boxes > 0, "some boxes were pasted");
        }
    }

    /** 2000 Beta(0.4, 0.4) draws: mean 0.5 and variance 1 / (4 (2 alpha + 1)) = 0.1389, within 4 standard errors. */
    @Test
    void mixupWeightsFollowTheBetaDistribution() {
        Mixing mixing = Mixing.builder().mixup(0.4).seed(11).build();
        double sum = 0;
        double sumSq = 0;
        int draws = 2000;
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.zeros(DType.FLOAT32, 2, 1, 1, 1);
            Tensor y = Tensor.of(new long[] {0, 1}, 2);
            for (int i = 0; i < draws; i++) {
                try (Mixing.Mixed m = mixing.apply(x, y)) {
                    sum += m.lambda();
                    sumSq += m.lambda() * m.lambda();
                }
            }
        }
        double mean = sum / draws;
        double var = sumSq / draws - mean * mean;
        double expectedVar = 1 / (4 * (2 * 0.4 + 1));
        assertEquals(0.5, mean, 4 * Math.sqrt(expectedVar / draws));
        assertEquals(expectedVar, var, 0.012);
    }

    /** Three updates with warm-up against the formula, buffers copied, and copyTo. */
    @Test
    void emaFollowsItsFormula() {
        try (Scope s = Scope.open(); Linear model = new Linear(3, 2, true, ParamOptions.seeded(1));
             Linear target = new Linear(3, 2, true, ParamOptions.seeded(2));
             ModelEma ema = new ModelEma(model, 0.9, true)) {
            double[] expected = model.parameter("weight").toDoubleArray();
            for (int t = 1; t <= 3; t++) {
                try (var off = dev.cortado.autograd.Autograd.noGrad()) {
                    model.parameter("weight").copyFrom(model.parameter("weight").add(0.5 * t));
                }
                double d = Math.min(0.9, (1.0 + t) / (10.0 + t));
                assertEquals(d, ema.currentDecay(), 1e-15);
                double[] now = model.parameter("weight").toDoubleArray();
                for (int i = 0; i < expected.length; i++) {
                    expected[i] = d * expected[i] + (1 - d) * now[i];
                }
                ema.update();
            }
            assertEquals(3, ema.updates());
            assertArrayEquals(expected, ema.average("weight").toDoubleArray(), 1e-6);
            ema.copyTo(target);
            assertArrayEquals(ema.average("bias").toFloatArray(), target.parameter("bias").toFloatArray(), 0f);
        }
    }

    /** Training: the mean of heads over independent masks (same generator stream); evaluation: the head. */
    @Test
    void multiSampleDropoutAveragesIndependentMasks() {
        try (Scope s = Scope.open(); Linear head = new Linear(6, 3, true, ParamOptions.seeded(1));
             MultiSampleDropout msd = new MultiSampleDropout(head, 4, 0.5, Generator.seeded(9))) {
            Tensor feats = ResNetTest.images(5, 6, 1, 3).reshape(5, 6);
            msd.eval();
            assertArrayEquals(head.apply(feats).toFloatArray(), msd.apply(feats).toFloatArray(), 0f);
            msd.train();
            float[] got = msd.apply(feats).toFloatArray();
            Generator g = Generator.seeded(9);
            float[] expected = new float[got.length];
            float[] first = null;
            for (int k = 0; k < 4; k++) {
                float[] h = head.apply(F.dropout(feats, 0.5, true, g)).toFloatArray();
                first = first == null ? h : first;
                for (int i = 0; i < h.length; i++) {
                    expected[i] += h[i] / 4;
                }
            }
            assertArrayEquals(expected, got, 1e-5f);
            assertNotEquals(first[0], expected[0], "the masks differ between samples");
            Tensor y = Tensor.of(new long[] {0, 1, 2, 0, 1}, 5);
            double loss = msd.loss(feats, logits -> Losses.crossEntropy(logits, y)).item();
            assertTrue(Double.isFinite(loss) && loss > 0);
        }
    }

    /** Each operation against its formula on a 4x4 single-channel image of values i / 16. */
    @Test
    void randAugmentOperationsMatchTheirFormulas() {
        float[] img = new float[16];
        for (int i = 0; i < 16; i++) {
            img[i] = i / 16f;
        }
        float[] rot = RandAugment.transform(RandAugment.Op.ROTATE, img, 1, 4, 4, 90, 1f, 0f);
        float[] tx = RandAugment.transform(RandAugment.Op.TRANSLATE_X, img, 1, 4, 4, 2, 1f, -1f);
        float[] ty = RandAugment.transform(RandAugment.Op.TRANSLATE_Y, img, 1, 4, 4, -1, 1f, -1f);
        float[] sx = RandAugment.transform(RandAugment.Op.SHEAR_X, img, 1, 4, 4, 0.5, 1f, -1f);
        for (int y = 0; y < 4; y++) {
            for (int x = 0; x < 4; x++) {
                assertEquals(img[x * 4 + (3 - y)], rot[y * 4 + x], 0f, "rotate 90 at " + x + "," + y);
                assertEquals(x >= 2 ? img[y * 4 + x - 2] : -1f, tx[y * 4 + x], 0f, "translate x");
                assertEquals(y <= 2 ? img[(y + 1) * 4 + x] : -1f, ty[y * 4 + x], 0f, "translate y");
                int src = (int) Math.floor(x + 0.5 - 0.5 * (y + 0.5 - 2));
                assertEquals(src >= 0 && src < 4 ? img[y * 4 + src] : -1f, sx[y * 4 + x], 0f, "shear x");
            }
        }
        float[] bright = RandAugment.transform(RandAugment.Op.BRIGHTNESS, img, 1, 4, 4, 0.5, 1f, 0f);
        float[] contrast = RandAugment.transform(RandAugment.Op.CONTRAST, img, 1, 4, 4, -0.5, 1f, 0f);
        float[] solar = RandAugment.transform(RandAugment.Op.SOLARIZE, img, 1, 4, 4, 0.5, 1f, 0f);
        float[] poster = RandAugment.transform(RandAugment.Op.POSTERIZE, img, 1, 4, 4, 2, 1f, 0f);
        float[] auto = RandAugment.transform(RandAugment.Op.AUTO_CONTRAST, img, 1, 4, 4, 0, 1f, 0f);
        for (int i = 0; i < 16; i++) {
            assertEquals(Math.min(1f, img[i] * 1.5f), bright[i], 1e-6f);
            assertEquals(7.5 / 16 + 0.5 * (img[i] - 7.5 / 16), contrast[i], 1e-6);
            assertEquals(img[i] >= 0.5f ? 1 - img[i] : img[i], solar[i], 0f);
            int q = (int) Math.floor(img[i] * 255 + 0.5);
            assertEquals((q & 0xC0) / 255f, poster[i], 1e-7f, "2 bits");
            assertEquals(img[i] / (15 / 16f), auto[i], 1e-6f);
        }
        assertEquals(0.9 * 9 / 30, RandAugment.value(RandAugment.Op.BRIGHTNESS, 9, 4, 4), 1e-15);
        assertEquals(7, RandAugment.value(RandAugment.Op.POSTERIZE, 9, 4, 4), 0);
    }

    /** Under a DataLoader with prefetch, the augmentation runs on the loader's thread, not the caller's. */
    @Test
    void randAugmentRunsOnTheLoadersThread() {
        try (Scope scope = Scope.open()) {
            runsOnTheLoadersThread();
        }
    }

    private static void runsOnTheLoadersThread() {
        java.util.Map<Thread, Integer> threads = new ConcurrentHashMap<>();
        try (TensorDataset data = new TensorDataset(ResNetTest.images(12, 1, 8, 1).abs().clamp(0, 1),
                Tensor.of(new long[12], 12))) {
            RandAugment aug = RandAugment.builder(data).n(2).magnitude(15).seed(4).build();
            Dataset<Example> probe = new Dataset<>() {
                @Override
                public int size() {
                    return aug.size();
                }

                @Override
                public Example get(int index) {
                    threads.merge(Thread.currentThread(), 1, Integer::sum);
                    return aug.get(index);
                }
            };
            int batches = 0;
            try (DataLoader loader = DataLoader.builder(probe).batchSize(4).prefetch(2).build()) {
                for (Batch b : loader.epoch(0)) {
                    try (b) {
                        assertArrayEquals(new long[] {4, 1, 8, 8}, b.input().shape().toArray());
                        batches++;
                    }
                }
            }
            assertEquals(3, batches);
            // the caller reads example 0 once when the loader is built (its shape); every batch is the loader thread's
            int elsewhere = threads.entrySet().stream().filter(e -> e.getKey() != Thread.currentThread())
                    .mapToInt(java.util.Map.Entry::getValue).sum();
            assertEquals(12, elsewhere, "ran on " + threads);
        }
        try (TensorDataset data = new TensorDataset(ResNetTest.images(2, 1, 8, 1).abs().clamp(0, 1),
                Tensor.of(new long[2], 2)); Example plain = data.get(0);
             Example augmented = RandAugment.builder(data).n(3).magnitude(20).ops(java.util.List.of(RandAugment.Op.ROTATE,
                     RandAugment.Op.SOLARIZE)).build().get(0)) {
            float[] a = augmented.input().toFloatArray();
            assertNotEquals(java.util.Arrays.toString(plain.input().toFloatArray()), java.util.Arrays.toString(a),
                    "the image was changed");
        }
    }
}
