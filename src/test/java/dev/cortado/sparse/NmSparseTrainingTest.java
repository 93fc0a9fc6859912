package dev.cortado.sparse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.ops.SparseRef;
import dev.cortado.sparse.NmSparseTraining.MaskDecay;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * SR-STE against float64 arithmetic written here: the forward sees exactly the N:M projection
 * (or the mask-decayed one), the dense weights come back after the step, the gradient is the
 * straight-through one plus {@code λ·(1 − m) ⊙ w}, masks of convolution kernels group along
 * in·kh·kw, and {@code finish()} leaves N:M weights.
 */
class NmSparseTrainingTest {

    /** The N:M projection of x [rows, k] (n largest |x| per m, ties to the lower position) as a 1/0 mask. */
    private static double[] mask(double[] x, int rows, int k, int n, int m) {
        double[][] vm = SparseRef.nmCompress(x, rows, k, n, m);
        double[] ones = new double[vm[0].length];
        java.util.Arrays.fill(ones, 1);
        return SparseRef.nmDense(ones, vm[1], rows, k, n, m);
    }

    @Test
    void maskDecayFallsInStairs() {
        MaskDecay d = new MaskDecay(100, 300, 4);
        assertEquals(1, d.factorAt(0));
        assertEquals(1, d.factorAt(100));
        assertEquals(1, d.factorAt(149));          // floor(4 * 49/200) = 0
        assertEquals(0.75, d.factorAt(150));
        assertEquals(0.5, d.factorAt(200));
        assertEquals(0.25, d.factorAt(299));
        assertEquals(0, d.factorAt(300));
        assertEquals(0, MaskDecay.none().factorAt(0));
        assertThrows(IllegalArgumentException.class, () -> new MaskDecay(5, 4, 1));
        assertThrows(IllegalArgumentException.class, () -> new MaskDecay(0, 4, 0));
    }

    @Test
    void stepMasksRestoresAndAddsTheRefinedTerm() {
        Random r = new Random(31);
        int rows = 5;
        int k = 12;
        double lambda = 0.25;
        double[] w0 = Reference.uniform(r, rows * k, -1, 1);
        double[] g0 = Reference.uniform(r, rows * k, -1, 1);
        double[] m = mask(w0, rows, k, 2, 4);
        try (Scope s = Scope.open()) {
            Tensor w = Tensor.of(w0, rows, k).requiresGrad(true);
            try (NmSparseTraining t = NmSparseTraining.builder(List.of(w)).pattern(2, 4).lambda(lambda).build()) {
                double[] seen;
                try (NmSparseTraining.Step step = t.step(0)) {
                    seen = w.toDoubleArray();
                    // the gradient of loss = sum(w ⊙ g0) with respect to the masked weight is g0
                    try (Tensor prod = w.mul(Tensor.of(g0, rows, k)); Tensor loss = prod.sum()) {
                        loss.backward();
                    }
                    assertThrows(IllegalStateException.class, () -> t.step(1));
                }
                double[] wantSeen = new double[w0.length];
                double[] wantGrad = new double[w0.length];
                for (int i = 0; i < w0.length; i++) {
                    wantSeen[i] = w0[i] * m[i];
                    wantGrad[i] = g0[i] + lambda * (1 - m[i]) * w0[i];
                }
                Reference.assertExact(wantSeen, seen, "forward weights: exactly the 2:4 projection");
                Reference.assertExact(w0, w.toDoubleArray(), "dense weights restored");
                Reference.assertCloseChecked(wantGrad, w.grad().toDoubleArray(), Reference.tol(DType.FLOAT64),
                        "gradient + lambda (1 - m) w");
                Reference.assertExact(m, t.masks().get(0).toDoubleArray(), "mask");
                t.finish();
                Reference.assertExact(wantSeen, w.toDoubleArray(), "finish: the 2:4 weights");
            }
        }
    }

    @Test
    void stepsInsideTheCallersScopesKeepTheirState() {
        try (Scope outer = Scope.open()) {
            Tensor w = Tensor.of(Reference.uniform(new Random(34), 4 * 8, -1, 1), 4, 8).requiresGrad(true);
            try (NmSparseTraining t = NmSparseTraining.builder(List.of(w)).build()) {
                for (long step = 0; step < 3; step++) {
                    try (Scope perStep = Scope.open(); NmSparseTraining.Step s = t.step(step)) {
                        Tensor y = w.mul(2.0).sum();
                        y.backward();
                    }
                }
                assertTrue(!t.masks().get(0).isClosed(), "the masks outlive the step's scope");
                t.finish();
            }
        }
    }

    @Test
    void maskDecayScalesThePrunedWeights() {
        Random r = new Random(32);
        double[] w0 = Reference.uniform(r, 3 * 8, -1, 1);
        double[] m = mask(w0, 3, 8, 1, 4);
        try (Scope s = Scope.open()) {
            Tensor w = Tensor.of(w0, 3, 8).requiresGrad(true);
            try (NmSparseTraining t = NmSparseTraining.builder(List.of(w)).pattern(1, 4)
                    .maskDecay(new MaskDecay(0, 10, 2)).build()) {
                try (NmSparseTraining.Step step = t.step(6)) {  // β = 1 - floor(2 * 0.6) / 2 = 0.5
                    assertEquals(0.5, t.maskFactor());
                    double[] want = new double[w0.length];
                    for (int i = 0; i < w0.length; i++) {
                        want[i] = w0[i] * (m[i] + 0.5 * (1 - m[i]));
                    }
                    Reference.assertCloseChecked(want, w.toDoubleArray(), Reference.tol(DType.FLOAT64), "w (m + β(1 - m))");
                }
                Reference.assertExact(w0, w.toDoubleArray(), "dense weights restored");
            }
        }
    }

    @Test
    void convolutionKernelsGroupAlongTheReduction() {
        Random r = new Random(33);
        // [out 3, in 2, 2, 2]: rows of in·kh·kw = 8
        double[] w0 = Reference.uniform(r, 3 * 2 * 2 * 2, -1, 1);
        double[] m = mask(w0, 3, 8, 2, 4);
        try (Scope s = Scope.open()) {
            Tensor w = Tensor.of(w0, 3, 2, 2, 2).requiresGrad(true);
            try (NmSparseTraining t = NmSparseTraining.builder(List.of(w)).build()) {
                t.finish();
                double[] want = new double[w0.length];
                for (int i = 0; i < w0.length; i++) {
                    want[i] = w0[i] * m[i];
                }
                Reference.assertExact(want, w.toDoubleArray(), "2:4 along in·kh·kw");
            }
            try (MagnitudePruning p = MagnitudePruning.builder(List.of(Tensor.of(w0, 3, 2, 2, 2))).nm(2, 4).build()) {
                p.step(0);
                Reference.assertExact(m, p.masks().get(0).toDoubleArray(), "MagnitudePruning: the same 2:4 masks");
            }
        }
    }

    @Test
    void badWeightsAreRejected() {
        try (Scope s = Scope.open()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> NmSparseTraining.builder(List.of(Tensor.of(new double[6], 1, 6))).build());
            assertTrue(e.getMessage().contains("NmSparseTraining: 2:4 needs a weight [out, ...] of rank >= 2"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> NmSparseTraining.builder(List.of(Tensor.of(new double[8], 8))).build());
            assertTrue(e.getMessage().contains("float64[8]"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> NmSparseTraining.builder(List.of(Tensor.of(new double[8], 2, 4))).lambda(-1).build());
            assertTrue(e.getMessage().contains("lambda"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> NmSparseTraining.builder(List.of()).build());
        }
    }
}
