package dev.cortado.quant;

import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.io.Batch;
import dev.cortado.io.DataLoader;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Activation;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Sequential;
import dev.cortado.optim.Adam;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Quantization-aware training on the shipped MNIST data: an MLP 784-128-10 with 4-bit weights
 * (per output channel) and 4-bit hidden activations (the first layer's input, the normalized
 * pixels, on 8 bits, as usual for a first layer), LSQ step sizes, trained for one epoch of the
 * 10k training images, must reach the t10k accuracy of the same float MLP within 1.5 points and
 * at least 85% (measured: float 90.5%, QAT 91.0%; chance is 10%, and with the straight-through
 * gradient broken (dx = 0 in the kernel) QAT measured 7.9%). Short runs: the full figures belong
 * in docs/quantization.md.
 */
class QatTest {
    private static TensorDataset train;
    private static TensorDataset test;

    @BeforeAll
    static void load() {
        train = Mnist.train10k(true);
        test = Mnist.test(true);
    }

    @AfterAll
    static void free() {
        train.close();
        test.close();
    }

    private static Sequential mlp(boolean qat) {
        ParamOptions p = ParamOptions.seeded(17);
        Linear l1 = new Linear(784, 128, true, p);
        Linear l2 = new Linear(128, 10, true, p);
        return qat ? new Sequential(new Flatten(), new QatLinear(l1, 4, 8, false), Activation.relu(),
                new QatLinear(l2, 4, 4, true))
                : new Sequential(new Flatten(), l1, Activation.relu(), l2);
    }

    private static void trainOneEpoch(Module model) {
        try (Optimizer opt = Adam.adamW().lr(2e-3).build(model.parameters());
             DataLoader loader = DataLoader.builder(train).batchSize(64).shuffle(5).dropLast(true).build();
             DataLoader.Epoch batches = loader.epoch(0)) {
            for (int i = 0; i < 10000 / 64; i++) {
                try (Batch b = batches.next(); Scope s = Scope.open()) {
                    Tensor loss = Losses.crossEntropy(model.forward(b.input()), b.target());
                    opt.zeroGrad();
                    loss.backward();
                    opt.step();
                }
            }
        }
    }

    private static double accuracy(Module model) {
        long right = 0;
        try (var g = Autograd.noGrad();
             DataLoader loader = DataLoader.builder(test).batchSize(1000).build();
             DataLoader.Epoch batches = loader.epoch(0)) {
            for (int i = 0; i < 10; i++) {
                try (Batch b = batches.next(); Scope s = Scope.open()) {
                    Tensor predicted = model.forward(b.input()).argmax(1);
                    right += (long) predicted.eq(b.target()).sum().item();
                }
            }
        }
        return right / 10000.0;
    }

    @Test
    void fourBitWeightsAndActivationsTrainToTheFloatAccuracy() {
        try (Sequential fp = mlp(false); Sequential q = mlp(true)) {
            trainOneEpoch(fp);
            double floatAccuracy = accuracy(fp);
            QatLinear first = (QatLinear) q.get(1);
            double[] before;
            try (Scope s = Scope.open(); var g = Autograd.noGrad()) {
                q.forward(test.get(0).input().unsqueeze(0)); // the quantizers take their initial steps
                before = first.weightQuantizer().logScale().toDoubleArray();
            }
            trainOneEpoch(q);
            double qatAccuracy = accuracy(q);
            System.out.printf("QatTest: t10k accuracy after one epoch: float %.4f, 4-bit QAT %.4f%n", floatAccuracy,
                    qatAccuracy);
            assertTrue(qatAccuracy >= 0.85 && qatAccuracy >= floatAccuracy - 0.015,
                    "4-bit QAT accuracy " + qatAccuracy + ", float " + floatAccuracy);
            double[] after = first.weightQuantizer().logScale().toDoubleArray();
            assertNotEquals(before[0], after[0], "the LSQ step sizes train");
        }
    }

    @Test
    void badBitWidthsAreRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new LsqQuantizer(1, false, 0));
        assertTrue(e.getMessage().contains("bits"), e.getMessage());
    }
}
