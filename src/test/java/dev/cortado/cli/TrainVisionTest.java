package dev.cortado.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.Module;
import dev.cortado.optim.ParamGroup;
import dev.cortado.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * train-vision shortened (the full-length runs and their figures are in docs/models.md): narrow
 * and shallow versions of its ResNet-18 and ViT, on 4,000 of the shipped training digits (every
 * class) for a few epochs, evaluated on 2,000 genuine t10k digits. Chance is 10%; the bars sit
 * below what these runs reach (measured: ResNet 95.5%, ViT 69.4%, MAE then fine-tuning 64.3%, the
 * MAE loss 0.533 then 0.497) and far above what an untrained or broken model could.
 */
class TrainVisionTest {
    @TempDir
    Path out;

    private TrainVision.Settings settings(TrainVision.Arch arch, int epochs, int maeEpochs, int width, int dim,
            int depth) {
        return new TrainVision.Settings(arch, epochs, new TrainVision.Pretraining(maeEpochs, 2e-3, 0.75, 1, 1), 32, 2e-3,
                width, dim, depth, 2, 7, 1, 4000, 2000, out);
    }

    @Test
    void aNarrowResNet18LearnsTheDigits() throws Exception {
        TrainVision.Result r = TrainVision.run(settings(TrainVision.Arch.RESNET18, 2, 0, 8, 64, 2));
        System.out.println("TrainVisionTest: ResNet-18 (width 8) t10k accuracy " + Arrays.toString(r.testAccuracy()));
        assertEquals(2, r.testAccuracy().length);
        assertTrue(r.last() >= 0.90, "ResNet-18 (width 8) accuracy " + r.last());
        assertTrue(Files.size(out.resolve("metrics.csv")) > 0);
        assertTrue(Files.exists(out.resolve("training-curves.png")));
    }

    @Test
    void aSmallVitLearnsTheDigits() throws Exception {
        TrainVision.Result r = TrainVision.run(settings(TrainVision.Arch.VIT_TINY, 3, 0, 8, 64, 2));
        System.out.println("TrainVisionTest: ViT (dim 64, depth 2) t10k accuracy " + Arrays.toString(r.testAccuracy()));
        assertEquals(0, r.maeLoss().length);
        assertTrue(r.last() >= 0.60, "ViT accuracy " + r.last());
    }

    /**
     * MAE pre-training (batches twice the classifier's: its 2 epochs of steps are 4 passes of its
     * loader) lowers its reconstruction loss, and the pre-trained encoder then fine-tunes, with the
     * rates decaying by depth, to a classifier.
     */
    @Test
    void maePreTrainingThenFineTuning() throws Exception {
        TrainVision.Result r = TrainVision.run(new TrainVision.Settings(TrainVision.Arch.VIT_TINY, 4,
                new TrainVision.Pretraining(2, 2e-3, 0.75, 0.85, 2), 32, 2e-3, 8, 64, 2, 2, 7, 1, 4000, 2000, out));
        System.out.println("TrainVisionTest: MAE loss " + Arrays.toString(r.maeLoss()) + ", fine-tuned t10k accuracy "
                + Arrays.toString(r.testAccuracy()));
        assertEquals(2, r.maeLoss().length);
        assertEquals(2, r.testAccuracy().length);
        assertTrue(r.maeLoss()[1] < 0.96 * r.maeLoss()[0], "MAE loss " + Arrays.toString(r.maeLoss()));
        assertTrue(r.last() >= 0.55, "fine-tuned accuracy " + r.last());
    }

    /** After pre-training, block i of depth d fine-tunes at lr * decay^(d - i), the embeddings below it, the head at lr. */
    @Test
    void fineTuningRatesDecayWithDepth() {
        TrainVision.Settings s = new TrainVision.Settings(TrainVision.Arch.VIT_TINY, 4,
                new TrainVision.Pretraining(2, 1e-3, 0.75, 0.5, 1), 32, 2e-3, 8, 64, 2, 2, 7, 1, 100, 100, out);
        try (Module vit = TrainVision.model(s)) {
            List<ParamGroup> groups = TrainVision.layerGroups(vit, s);
            assertEquals(4, groups.size());
            double[] expected = {2e-3 / 8, 2e-3 / 4, 2e-3 / 2, 2e-3};
            Set<Tensor> seen = Collections.newSetFromMap(new IdentityHashMap<>());
            for (int i = 0; i < 4; i++) {
                assertEquals(expected[i], groups.get(i).lr(), 1e-15, "group " + i);
                for (Tensor p : groups.get(i).params()) {
                    assertTrue(seen.add(p), "a parameter in two groups");
                }
            }
            assertEquals(vit.parameters().size(), seen.size());
            assertTrue(groups.get(0).params().contains(vit.namedParameters().get("cls_token")));
            assertTrue(groups.get(2).params().contains(vit.namedParameters().get("blocks.1.norm1.weight")),
                    vit.namedParameters().keySet().toString());
            assertTrue(groups.get(3).params().contains(vit.namedParameters().get("head.weight")));
            // without pre-training (or without decay) one group at the run's rate
            TrainVision.Settings scratch = s.with(4, TrainVision.Pretraining.NONE, 32, 2e-3, 8, 7, 1);
            assertEquals(1, TrainVision.layerGroups(vit, scratch).size());
        }
    }

    @Test
    void settingsTheRunCannotHonourAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> TrainVision.Arch.parse("alexnet"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> settings(TrainVision.Arch.RESNET18, 4, 2, 8, 64, 2));
        assertTrue(e.getMessage().contains("--mae-epochs"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> settings(TrainVision.Arch.VIT_TINY, 2, 2, 8, 64, 2));
        assertThrows(IllegalArgumentException.class, () -> new TrainVision.Pretraining(2, 1e-3, 0.75, 1.5, 1));
        assertThrows(IllegalArgumentException.class, () -> new TrainVision.Pretraining(2, 1e-3, 1.0, 0.75, 1));
        assertThrows(IllegalArgumentException.class, () -> new TrainVision.Settings(TrainVision.Arch.VIT_TINY, 2, TrainVision.Pretraining.NONE, 32,
                2e-3, 8, 64, 2, 2, 5, 1, 100, 100, out));
    }
}
