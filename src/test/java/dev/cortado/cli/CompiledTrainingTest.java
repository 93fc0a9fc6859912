package dev.cortado.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.graph.CompileOptions;
import dev.cortado.graph.TrainingStep;
import dev.cortado.nn.CausalLanguageModel;
import dev.cortado.optim.Adam;
import dev.cortado.optim.GradClip;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code --compile} of the demos' training loops: the step compiled as one graph
 * ({@link TrainMnist.CompiledStep}) trains as the eager loop does.
 */
class CompiledTrainingTest {

    /** The train losses of a train-mnist run's metrics.csv, in step order. */
    private static double[] trainLosses(Path dir) throws Exception {
        List<String> lines = Files.readAllLines(dir.resolve("metrics.csv"));
        List<String> header = List.of(lines.get(0).split(","));
        int split = header.indexOf("split");
        int loss = header.indexOf("loss");
        return lines.stream().skip(1).map(l -> l.split(",")).filter(f -> f[split].equals("train"))
                .mapToDouble(f -> Double.parseDouble(f[loss])).toArray();
    }

    /**
     * train-mnist itself, one epoch (156 steps of batch 64, AdamW with a cosine schedule, batch norm
     * in training mode) eagerly and with {@code --compile}: the first 20 logged losses agree to
     * 1e-3 relative (the graph's passes round differently, and the difference grows with the
     * steps), and the test accuracies after the epoch within half a point.
     */
    @Test
    void theMnistDemoTrainsCompiledAsItTrainsEagerly(@TempDir Path dir) throws Exception {
        double eager = TrainMnist.run(new TrainMnist.Settings(1, 64, 2e-3, 1, Device.CPU, dir.resolve("eager"), false, null));
        double compiled = TrainMnist.run(new TrainMnist.Settings(1, 64, 2e-3, 1, Device.CPU, dir.resolve("compiled"), true,
                null));
        double[] e = trainLosses(dir.resolve("eager"));
        double[] c = trainLosses(dir.resolve("compiled"));
        assertEquals(156, e.length);
        assertEquals(e.length, c.length);
        for (int i = 0; i < 20; i++) {
            assertEquals(e[i], c[i], 1e-3 * Math.abs(e[i]), "logged loss of step " + i);
        }
        assertTrue(eager > 0.9, "one epoch reaches 90%: " + eager);
        assertEquals(eager, compiled, 0.005, "test accuracy after one epoch, eager and compiled");
    }

    /**
     * train-charlm's step, dense and as a mixture of experts (router losses in the loss), on a small
     * vocabulary: three compiled steps (clipping to norm 1, AdamW) give the eager loop's losses and
     * parameters (float32: 1e-4 relative, 1e-5 absolute), and the model output the step returns is
     * the logits the logged cross-entropy is computed from.
     */
    @Test
    void theCharacterModelStepCompiledMatchesTheEagerLoop() {
        int vocab = 20;
        for (int experts : new int[] {0, 4}) {
            int topK = experts == 0 ? 0 : 2;
            String what = experts == 0 ? "dense" : experts + " experts, top " + topK;
            try (Scope s = Scope.open(); CausalLanguageModel compiled = TrainCharLm.model(vocab, 5, experts, topK);
                 CausalLanguageModel eager = TrainCharLm.model(vocab, 5, experts, topK);
                 Optimizer oc = Adam.adamW().lr(3e-3).betas(0.9, 0.95).weightDecay(0.1).build(compiled.parameters());
                 Optimizer oe = Adam.adamW().lr(3e-3).betas(0.9, 0.95).weightDecay(0.1).build(eager.parameters());
                 TrainMnist.CompiledStep step = new TrainMnist.CompiledStep(compiled, TrainCharLm.loss(compiled, vocab), oc,
                         CompileOptions.builder().maxGradNorm(1.0).build(), true)) {
                compiled.train();
                eager.train();
                BiFunction<Tensor, Tensor, Tensor> eagerLoss = TrainCharLm.loss(eager, vocab);
                for (int k = 0; k < 3; k++) {
                    long[] ids = new long[4 * 17];
                    for (int i = 0; i < ids.length; i++) {
                        ids[i] = (i * 7L + k * 3L + i / 5) % vocab;
                    }
                    try (Scope b = Scope.open()) {
                        Tensor tokens = Tensor.of(ids, 4, 17);
                        Tensor x = tokens.narrow(1, 0, 16).contiguous();
                        Tensor y = tokens.narrow(1, 1, 16).contiguous();
                        oe.zeroGrad();
                        Tensor logits = eager.forward(x);
                        Tensor l = eagerLoss.apply(logits, y);
                        l.backward();
                        GradClip.clipByGlobalNorm(oe.params(), 1.0);
                        oe.step();
                        try (TrainingStep.Output out = step.run(x, y)) {
                            assertNotNull(out, what + ": the step is captured");
                            Reference.assertCloseChecked(new double[] {l.item()}, new double[] {out.loss().item()},
                                    new Reference.Tol(1e-4, 1e-5), what + ", loss of step " + k);
                            Reference.assertCloseChecked(logits.toDoubleArray(), out.modelOutput().toDoubleArray(),
                                    new Reference.Tol(1e-4, 1e-5), what + ", logits of step " + k);
                        }
                    }
                }
                Map<String, Tensor> want = eager.namedParameters();
                compiled.namedParameters().forEach((name, t) -> Reference.assertClose(want.get(name).toDoubleArray(),
                        t.toDoubleArray(), new Reference.Tol(1e-4, 1e-5), what + ", parameter " + name + " after 3 steps"));
            }
        }
    }
}
