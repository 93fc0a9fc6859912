package dev.cortado.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Sequential;
import dev.cortado.tensor.Tensor;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The sparse training recipes on the genuine MNIST t10k split, shortened (EPOCHS passes over the
 * shipped 10k training digits; the full-length figures are in docs/sparse.md): the train-mnist
 * CNN with 2:4 weights in every layer but the first trained with SR-STE must reach the dense
 * model's accuracy within 0.5 point, and gradual magnitude pruning to 90% within 1.0 point; both
 * at least 95% (chance is 10%), the sparsity exact, and the models converted to SparseConv2d /
 * SparseLinear giving the same accuracy (the same predictions but for float32 rounding ties).
 */
class PruneMnistTest {
    private static final int EPOCHS = 1;
    private static final PruneMnist.Settings SETTINGS = new PruneMnist.Settings(EPOCHS, 64, 2e-3, 1, 0.9);
    private static TensorDataset train;
    private static TensorDataset test;
    private static double dense;

    @BeforeAll
    static void load() {
        train = Mnist.train10k(true);
        test = Mnist.test(true);
        try (Sequential model = PruneMnist.train(PruneMnist.Method.DENSE, SETTINGS, train)) {
            dense = PruneMnist.accuracy(model, test);
        }
        System.out.printf("PruneMnistTest: dense t10k accuracy %.4f%n", dense);
    }

    @AfterAll
    static void free() {
        train.close();
        test.close();
    }

    /** Every group of 4 consecutive weights along in·kh·kw has at most 2 non-zeros. */
    private static void assertTwoOfFour(Tensor w) {
        float[] v = w.toFloatArray();
        int nonzero = 0;
        for (int i = 0; i < v.length; i++) {
            nonzero += v[i] != 0 ? 1 : 0;
            if (i % 4 == 3) {
                assertTrue(nonzero <= 2, "group " + i / 4 + " of " + w.describe() + " has " + nonzero + " non-zeros");
                nonzero = 0;
            }
        }
    }

    @Test
    void srSteTwoOfFourMatchesDense() {
        try (Sequential model = PruneMnist.train(PruneMnist.Method.NM_SRSTE, SETTINGS, train)) {
            List<Tensor> weights = PruneMnist.weights(model);
            for (Tensor w : weights.subList(1, weights.size())) {
                assertTwoOfFour(w);
            }
            PruneMnist.Row row = PruneMnist.evaluateAndConvert(PruneMnist.Method.NM_SRSTE, model, test);
            System.out.printf("PruneMnistTest: 2:4 SR-STE t10k accuracy %.4f (sparse modules %.4f), dense %.4f%n",
                    row.accuracy(), row.sparseAccuracy(), dense);
            assertTrue(row.accuracy() >= 0.95 && row.accuracy() >= dense - 0.005,
                    "2:4 SR-STE accuracy " + row.accuracy() + ", dense " + dense);
            assertEquals(row.accuracy(), row.sparseAccuracy(), 2e-4, "the sparse modules' accuracy");
        }
    }

    @Test
    void gradualMagnitudePruningTo90PercentMatchesDense() {
        try (Sequential model = PruneMnist.train(PruneMnist.Method.GRADUAL, SETTINGS, train)) {
            PruneMnist.Row row = PruneMnist.evaluateAndConvert(PruneMnist.Method.GRADUAL, model, test);
            System.out.printf("PruneMnistTest: 90%% gradual t10k accuracy %.4f (sparse modules %.4f), dense %.4f, "
                    + "%d of %d weights non-zero%n", row.accuracy(), row.sparseAccuracy(), dense, row.nonzeros(),
                    row.weights());
            assertTrue(row.nonzeros() <= Math.round(0.1 * row.weights()), row.nonzeros() + " of " + row.weights());
            assertTrue(row.accuracy() >= 0.95 && row.accuracy() >= dense - 0.010,
                    "90% pruned accuracy " + row.accuracy() + ", dense " + dense);
            assertEquals(row.accuracy(), row.sparseAccuracy(), 2e-4, "the sparse modules' accuracy");
            // CSR stores 12 bytes per kept weight (float32 value, int64 column): 10% of them is 0.3 of dense
            assertTrue(row.sparseBytes() < row.denseBytes() / 3, row.sparseBytes() + " vs " + row.denseBytes());
        }
    }
}
