package dev.cortado.testing;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.testing.Reference.Tol;
import org.junit.jupiter.api.Test;

/** The comparison helpers themselves: a tolerance larger than the values must be caught. */
class ReferenceTest {
    /** A bfloat16 softmax_backward row of 1500 entries is ~1e-3 everywhere. */
    static final double[] SMALL = {1.2e-3, -8e-4, 3e-4, -2.5e-3, 6e-4};

    @Test
    void anAbsoluteToleranceLargerThanTheValuesIsRejected() {
        Tol loose = new Tol(2e-2, 2e-2); // NormalizationBackwardTest's old bfloat16 tolerance
        assertDoesNotThrow(() -> Reference.assertClose(SMALL, new double[SMALL.length], loose, "zeros"),
                "the weakness itself: zeros pass the loose tolerance");
        AssertionError e = assertThrows(AssertionError.class, () -> Reference.assertZerosRejected(SMALL, loose, "dx"));
        assertTrue(e.getMessage().contains("accepts an all-zero output"), e.getMessage());
        assertThrows(AssertionError.class,
                () -> Reference.assertCloseChecked(SMALL, SMALL.clone(), loose, "dx"), "even when the output is right");
    }

    @Test
    void aToleranceScaledToTheValuesRejectsZerosAndAcceptsRoundoff() {
        Tol t = Reference.relativeTo(new Tol(2e-2, 2e-2), SMALL);
        assertEquals(2e-2 * 2.5e-3, t.abs(), 1e-18);
        double[] rounded = new double[SMALL.length];
        for (int i = 0; i < SMALL.length; i++) {
            rounded[i] = SMALL[i] * (1 + 1.0 / 256); // one bfloat16 ulp off
        }
        assertDoesNotThrow(() -> Reference.assertCloseChecked(SMALL, rounded, t, "one ulp"));
        assertThrows(AssertionError.class, () -> Reference.assertCloseChecked(SMALL, new double[SMALL.length], t, "zeros"));
    }

    @Test
    void allZeroOrNonFiniteReferencesAreNotFlagged() {
        Tol t = new Tol(1e-2, 1);
        assertDoesNotThrow(() -> Reference.assertZerosRejected(new double[] {0, 0, 0}, t, "zero reference"));
        assertDoesNotThrow(() -> Reference.assertZerosRejected(new double[0], t, "empty"));
        assertDoesNotThrow(() -> Reference.assertZerosRejected(new double[] {1e-3, Double.NaN}, t, "NaN"));
        assertEquals(3, Reference.maxAbs(new double[] {-3, Double.POSITIVE_INFINITY, 2, Double.NaN}));
    }
}
