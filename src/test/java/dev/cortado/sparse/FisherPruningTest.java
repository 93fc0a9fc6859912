package dev.cortado.sparse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * Fisher masks against a float64 computation here: the saliency is mean(g²)·w² over the
 * accumulated batches, the masks keep its largest entries (per layer and globally), they stay
 * fixed through later steps, and misuse throws.
 */
class FisherPruningTest {

    /** Keep-mask of the k largest x (ties to the lower position). */
    private static double[] keepLargest(double[] x, int k) {
        Integer[] order = IntStream.range(0, x.length).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingDouble((Integer i) -> -x[i]).thenComparing(i -> i));
        double[] keep = new double[x.length];
        for (int i = 0; i < k; i++) {
            keep[order[i]] = 1;
        }
        return keep;
    }

    @Test
    void masksKeepTheLargestSaliency() {
        Random r = new Random(51);
        int n1 = 4 * 6;
        int n2 = 3 * 5;
        double[] w1 = Reference.uniform(r, n1, -1, 1);
        double[] w2 = Reference.uniform(r, n2, -1, 1);
        double[][] g1 = {Reference.uniform(r, n1, -1, 1), Reference.uniform(r, n1, -1, 1), Reference.uniform(r, n1, -1, 1)};
        double[][] g2 = {Reference.uniform(r, n2, -2, 2), Reference.uniform(r, n2, -2, 2), Reference.uniform(r, n2, -2, 2)};
        double[] s1 = new double[n1];
        double[] s2 = new double[n2];
        for (int i = 0; i < n1; i++) {
            s1[i] = (g1[0][i] * g1[0][i] + g1[1][i] * g1[1][i] + g1[2][i] * g1[2][i]) / 3 * w1[i] * w1[i];
        }
        for (int i = 0; i < n2; i++) {
            s2[i] = (g2[0][i] * g2[0][i] + g2[1][i] * g2[1][i] + g2[2][i] * g2[2][i]) / 3 * w2[i] * w2[i];
        }
        for (MagnitudePruning.Scope scope : MagnitudePruning.Scope.values()) {
            try (Scope s = Scope.open()) {
                Tensor a = Tensor.of(w1, 4, 6).requiresGrad(true);
                Tensor b = Tensor.of(w2, 3, 5).requiresGrad(true);
                try (FisherPruning f = new FisherPruning(List.of(a, b), scope)) {
                    for (int batch = 0; batch < 3; batch++) {
                        try (Scope step = Scope.open()) {
                            Tensor loss = a.mul(Tensor.of(g1[batch], 4, 6)).sum().add(b.mul(Tensor.of(g2[batch], 3, 5)).sum());
                            loss.backward();
                            f.accumulate();
                            a.setGrad(null);
                            b.setGrad(null);
                        }
                    }
                    assertEquals(3, f.batches());
                    List<Tensor> sal = f.saliency();
                    Reference.assertCloseChecked(s1, sal.get(0).toDoubleArray(), Reference.tol(dev.cortado.tensor.DType.FLOAT64),
                            "saliency of the first weight");
                    sal.forEach(Tensor::close);
                    f.chooseMasks(0.6);
                    double[] m1;
                    double[] m2;
                    if (scope == MagnitudePruning.Scope.PER_LAYER) {
                        m1 = keepLargest(s1, (int) (n1 - Math.round(0.6 * n1)));
                        m2 = keepLargest(s2, (int) (n2 - Math.round(0.6 * n2)));
                    } else {
                        double[] all = new double[n1 + n2];
                        System.arraycopy(s1, 0, all, 0, n1);
                        System.arraycopy(s2, 0, all, n1, n2);
                        double[] m = keepLargest(all, (int) (n1 + n2 - Math.round(0.6 * (n1 + n2))));
                        m1 = Arrays.copyOfRange(m, 0, n1);
                        m2 = Arrays.copyOfRange(m, n1, n1 + n2);
                    }
                    Reference.assertExact(m1, f.masks().get(0).toDoubleArray(), scope + ": mask of the first weight");
                    Reference.assertExact(m2, f.masks().get(1).toDoubleArray(), scope + ": mask of the second weight");
                    try (var g = Autograd.noGrad()) {
                        a.copyFrom(Tensor.of(Reference.uniform(r, n1, 1, 2), 4, 6)); // an optimizer step moves every weight
                    }
                    f.applyMasks();
                    double[] after = a.toDoubleArray();
                    for (int i = 0; i < n1; i++) {
                        assertTrue((m1[i] == 0) == (after[i] == 0), scope + ": the pruned weights stay zero, the others not");
                    }
                    assertThrows(IllegalStateException.class, f::accumulate);
                    assertThrows(IllegalStateException.class, () -> f.chooseMasks(0.5));
                }
            }
        }
    }

    @Test
    void misuseIsRejected() {
        try (Scope s = Scope.open()) {
            Tensor w = Tensor.of(new double[] {1, 2, 3, 4}, 2, 2).requiresGrad(true);
            try (FisherPruning f = new FisherPruning(List.of(w), MagnitudePruning.Scope.PER_LAYER)) {
                IllegalStateException e = assertThrows(IllegalStateException.class, f::accumulate);
                assertTrue(e.getMessage().contains("has no gradient"), e.getMessage());
                assertThrows(IllegalStateException.class, () -> f.chooseMasks(0.5));
                assertThrows(IllegalStateException.class, f::applyMasks);
            }
        }
    }
}
