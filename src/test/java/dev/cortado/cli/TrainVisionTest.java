package dev.cortado.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * train-vision shortened (the full-length runs and their figures are in docs/models.md): narrow
 * and shallow versions of its ResNet-18 and ViT, on 4,000 of the shipped training digits (every
 * class) for a few epochs, evaluated on 2,000 genuine t10k digits. Chance is 10%; the bars sit
 * below what these runs reach (measured: ResNet 95.5%, ViT 69.6%, MAE then fine-tuning 65.1%, the
 * MAE loss 0.538 then 0.501) and far above what an untrained or broken model could.
 */
class TrainVisionTest {
    @TempDir
    Path out;

    private TrainVision.Settings settings(TrainVision.Arch arch, int epochs, int maeEpochs, int width, int dim,
            int depth) {
        return new TrainVision.Settings(arch, epochs, maeEpochs, 32, 2e-3, width, dim, depth, 2, 7, 1, 4000, 2000, out);
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

    /** MAE pre-training lowers its reconstruction loss, and the pre-trained encoder then fine-tunes to a classifier. */
    @Test
    void maePreTrainingThenFineTuning() throws Exception {
        TrainVision.Result r = TrainVision.run(settings(TrainVision.Arch.VIT_TINY, 4, 2, 8, 64, 2));
        System.out.println("TrainVisionTest: MAE loss " + Arrays.toString(r.maeLoss()) + ", fine-tuned t10k accuracy "
                + Arrays.toString(r.testAccuracy()));
        assertEquals(2, r.maeLoss().length);
        assertEquals(2, r.testAccuracy().length);
        assertTrue(r.maeLoss()[1] < 0.96 * r.maeLoss()[0], "MAE loss " + Arrays.toString(r.maeLoss()));
        assertTrue(r.last() >= 0.55, "fine-tuned accuracy " + r.last());
    }

    @Test
    void settingsTheRunCannotHonourAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> TrainVision.Arch.parse("alexnet"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> settings(TrainVision.Arch.RESNET18, 4, 2, 8, 64, 2));
        assertTrue(e.getMessage().contains("--mae-epochs"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> settings(TrainVision.Arch.VIT_TINY, 2, 2, 8, 64, 2));
        assertThrows(IllegalArgumentException.class, () -> new TrainVision.Settings(TrainVision.Arch.VIT_TINY, 2, 0, 32,
                2e-3, 8, 64, 2, 2, 5, 1, 100, 100, out));
    }
}
