package dev.cortado.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.cortado.io.DataLoader;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Sequential;
import org.junit.jupiter.api.Test;

/** {@code train-mnist --compile}: the evaluation through a compiled graph gives eager's loss and accuracy. */
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
}
