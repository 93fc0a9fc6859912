package dev.cortado.djl;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Model;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Block;
import ai.djl.training.Trainer;
import java.util.Locale;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Trains the MNIST MLP and the small CNN through DJL's {@code Trainer} with Cortado as the engine,
 * then the same code with PyTorch as the engine from the same initial weights and the same batches,
 * and requires the test accuracies to agree within 0.3 points and to clear a bar chance cannot
 * reach (10 % is chance). Shortened: one epoch over 10,000 digits (MLP) or the first 6,000 (CNN).
 */
@ExtendWith(NoLeaks.class)
class MnistTrainingTest {
    private static final double AGREEMENT = 0.3;

    private static double train(Engine engine, String name, Supplier<Block> block, boolean flat, int examples) throws Exception {
        long t0 = System.nanoTime();
        try (Model model = Model.newInstance(name, ai.djl.Device.cpu(), engine.getEngineName());
             Trainer trainer = MnistModels.trainer(engine, model, block.get(), 42,
                     flat ? new Shape(1, 784) : new Shape(1, 1, 28, 28))) {
            MnistModels.trainEpoch(trainer, MnistModels.train().first(examples), flat, 64);
            double acc = MnistModels.accuracy(trainer, MnistModels.test(), flat);
            System.out.printf(Locale.ROOT, "%s on %s: test accuracy %.2f %% (%.1f s)%n", name,
                    engine.getEngineName(), acc, (System.nanoTime() - t0) / 1e9);
            return acc;
        }
    }

    private static void compare(String name, Supplier<Block> block, boolean flat, int examples, double bar)
            throws Exception {
        double cortado = train(Engines.cortado(), name, block, flat, examples);
        assertTrue(cortado >= bar, () -> name + " on Cortado: test accuracy " + cortado + " % is below " + bar + " %");
        Engine torch = Engines.pytorch();
        double pytorch = train(torch, name, block, flat, examples);
        assertTrue(Math.abs(cortado - pytorch) <= AGREEMENT, () -> String.format(Locale.ROOT,
                "%s: Cortado %.2f %% vs PyTorch %.2f %% differ by more than %.1f points", name, cortado, pytorch,
                AGREEMENT));
    }

    @Test
    void mlpMatchesPyTorch() throws Exception {
        compare("mnist-mlp", MnistModels::mlp, true, 10_000, 90);
    }

    @Test
    void cnnMatchesPyTorch() throws Exception {
        compare("mnist-cnn", MnistModels::cnn, false, 6_000, 93);
    }
}
