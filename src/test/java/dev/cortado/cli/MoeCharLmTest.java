package dev.cortado.cli;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.io.Batch;
import dev.cortado.io.CharSequenceDataset;
import dev.cortado.io.DataLoader;
import dev.cortado.io.TextCorpus;
import dev.cortado.nn.CausalLanguageModel;
import dev.cortado.nn.Losses;
import dev.cortado.ops.Elementwise;
import dev.cortado.optim.Adam;
import dev.cortado.optim.CosineWithWarmup;
import dev.cortado.optim.GradClip;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import org.junit.jupiter.api.Test;

/**
 * Issue #15's MoE accuracy bar: the train-charlm model with 4 experts, top-2, in every block (each
 * expert half the dense MLP's width, so a token runs through as many weights as in the dense
 * model) reaches a lower validation loss than the dense model after the same 400 steps on the
 * same batches (same seed, same AdamW and schedule as train-charlm). Validation: the same 8 batches
 * of 64 held-out windows for both.
 *
 * <p>The bar is a margin, {@value #MARGIN} nats/char, not just "lower". Measured with this test's
 * seed: dense 1.6588, MoE 1.6300 (a 0.029 lead); with train-charlm's seeds 1337 and 2 the MoE
 * model led by 0.069 and 0.024 (docs/sparse.md, Mixture of experts, Accuracy). The full 400 steps
 * are needed: with a 240-step schedule the two were level (0.006 apart), within the 0.02 the dense
 * model moves between seeds.
 */
class MoeCharLmTest {
    static final int STEPS = Integer.getInteger("cortado.moeTest.steps", 400);
    static final double MARGIN = 0.01;

    /** Trains train-charlm's model (dense when experts = 0) for {@code steps}; returns the validation loss. */
    static double train(int experts, int topK, int steps, long seed) {
        TextCorpus corpus = TextCorpus.austen();
        TextCorpus.Split split = corpus.split(0.05);
        int vocab = corpus.vocabSize();
        try (CharSequenceDataset train = new CharSequenceDataset(split.train(), TrainCharLm.CONTEXT);
             CharSequenceDataset validation = new CharSequenceDataset(split.validation(), TrainCharLm.CONTEXT,
                     TrainCharLm.CONTEXT);
             CausalLanguageModel model = TrainCharLm.model(vocab, seed, experts, topK);
             DataLoader loader = DataLoader.builder(train).batchSize(16).shuffle(seed).dropLast(true).build();
             DataLoader valLoader = DataLoader.builder(validation).batchSize(64).build();
             Optimizer opt = Adam.adamW().lr(3e-3).betas(0.9, 0.95).weightDecay(0.1).build(model.parameters())) {
            CosineWithWarmup schedule = new CosineWithWarmup(Math.min(50, steps / 10), steps, 0.1);
            try (DataLoader.Epoch batches = loader.epoch(0)) {
                for (int step = 0; step < steps; step++) {
                    schedule.apply(opt, step);
                    try (Batch b = batches.next(); Scope scope = Scope.open()) {
                        Tensor logits = model.forward(b.input()).reshape(-1, vocab);
                        Tensor loss = Losses.crossEntropy(logits, b.target().reshape(-1));
                        Tensor aux = model.auxiliaryLoss();
                        opt.zeroGrad();
                        (aux == null ? loss : Elementwise.add(loss, aux)).backward();
                        GradClip.clipByGlobalNorm(opt.params(), 1.0);
                        opt.step();
                    }
                }
            }
            return TrainMnist.evaluate(model, valLoader, vocab, 8)[0];
        }
    }

    @Test
    void fourExpertsTopTwoReachALowerValidationLossThanDenseAtTheSameActiveParameters() {
        double dense = train(0, 0, STEPS, 1);
        double moe = train(4, 2, STEPS, 1);
        System.out.printf("MoeCharLmTest: %d steps: dense %.4f, 4 experts top-2 %.4f nats/char%n", STEPS, dense, moe);
        assertTrue(moe < dense - MARGIN, "validation loss after " + STEPS + " steps: MoE " + moe + " vs dense " + dense
                + " (must be lower by " + MARGIN + ")");
        assertTrue(dense < 3.0, "the dense model learned something: " + dense);
    }
}
