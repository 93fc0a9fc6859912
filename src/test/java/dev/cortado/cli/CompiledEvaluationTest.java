package dev.cortado.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.cortado.io.DataLoader;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.CausalLanguageModel;
import dev.cortado.nn.Sequential;
import dev.cortado.tensor.Tensor;
import org.junit.jupiter.api.Test;

/** {@code --compile} of the demos: evaluation through a compiled graph gives eager's loss, accuracy and logits. */
class CompiledEvaluationTest {

    @Test
    void compiledEvaluationMatchesEager() throws Exception {
        try (TensorDataset test = Mnist.test(true); Sequential model = TrainMnist.model(3);
             DataLoader loader = DataLoader.builder(test).batchSize(100).build();
             TrainMnist.CompiledForward compiled = new TrainMnist.CompiledForward(model)) {
            double[] eager = TrainMnist.evaluate(model, loader, 10, 3);
            double[] graph = TrainMnist.evaluate(model, compiled, loader, 10, 3);
            double[] again = TrainMnist.evaluate(model, compiled, loader, 10, 3); // the same graph, reused
            assertEquals(eager[0], graph[0], 1e-5 * Math.abs(eager[0]), "loss");
            assertEquals(eager[1], graph[1], 0.0, "accuracy");
            assertEquals(graph[0], again[0], 0.0, "loss of the second compiled evaluation");
        }
    }

    @Test
    void compiledCharacterModelServesAnotherBatchSize() {
        try (CausalLanguageModel model = TrainCharLm.model(20, 4);
             TrainMnist.CompiledForward compiled = new TrainMnist.CompiledForward(model)) {
            model.eval();
            for (long batch : new long[] {3, 2}) { // a last, smaller batch: planned from the symbolic graph
                long[] ids = new long[(int) batch * 16];
                for (int i = 0; i < ids.length; i++) {
                    ids[i] = (i * 7 + batch) % 20;
                }
                try (Tensor tokens = Tensor.of(ids, batch, 16); Tensor want = model.forward(tokens);
                     Tensor got = compiled.apply(tokens)) {
                    double[] w = want.toDoubleArray();
                    double[] g = got.toDoubleArray();
                    assertEquals(w.length, g.length);
                    for (int i = 0; i < w.length; i++) {
                        assertEquals(w[i], g[i], 1e-6 + 1e-5 * Math.abs(w[i]), "batch " + batch + " element " + i);
                    }
                }
            }
        }
    }
}
