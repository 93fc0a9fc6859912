package dev.cortado.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Autocast's conversion of an operand ({@link Autocast#convert}): a transposed or permuted view of
 * a dense float32 tensor becomes the same view of a bfloat16 tensor converted in storage order
 * (strides kept, so the GEMM reads it as a transposed operand), holding exactly the values of the
 * plain conversion (one rounding to nearest even per element), and the gradient comes back to the
 * float32 tensor in its own layout. Other views are converted as before (a contiguous copy).
 */
class AutocastConvertTest {

    @Test
    void transposedAndPermutedViewsKeepTheirLayout() {
        Random r = new Random(12);
        try (var scope = Scope.open()) {
            Tensor base = Reference.make(Reference.uniform(r, 5 * 7, -3, 3), DType.FLOAT32, 5, 7);
            Tensor t = base.transpose(0, 1);   // [7, 5], strides [1, 7]
            Tensor c = Autocast.convert(t, DType.BFLOAT16);
            assertEquals(DType.BFLOAT16, c.dtype());
            assertArrayEquals(new long[] {7, 5}, c.dims());
            assertArrayEquals(new long[] {1, 7}, c.strides(), "the transposed layout is kept");
            try (Tensor plain = t.to(DType.BFLOAT16)) {
                assertArrayEquals(plain.toDoubleArray(), c.toDoubleArray(), 0.0);
            }

            Tensor base3 = Reference.make(Reference.uniform(r, 2 * 3 * 4, -3, 3), DType.FLOAT32, 2, 3, 4);
            Tensor p = base3.permute(2, 0, 1);   // [4, 2, 3]
            Tensor cp = Autocast.convert(p, DType.BFLOAT16);
            assertArrayEquals(p.strides(), cp.strides(), "the permuted layout is kept");
            try (Tensor plain = p.to(DType.BFLOAT16)) {
                assertArrayEquals(plain.toDoubleArray(), cp.toDoubleArray(), 0.0);
            }

            // a strided slice is not a permutation of a dense tensor: converted to a contiguous copy
            Tensor s = base.slice(1, 0, 7, 2);   // [5, 4], strides [7, 2]
            Tensor cs = Autocast.convert(s, DType.BFLOAT16);
            assertArrayEquals(new long[] {4, 1}, cs.strides());
            try (Tensor plain = s.to(DType.BFLOAT16)) {
                assertArrayEquals(plain.toDoubleArray(), cs.toDoubleArray(), 0.0);
            }
        }
    }

    @Test
    void gradientReachesTheFloat32Tensor() {
        Random r = new Random(13);
        try (var scope = Scope.open()) {
            Tensor w = Reference.make(Reference.uniform(r, 4 * 6, -1, 1), DType.FLOAT32, 4, 6).requiresGrad(true);
            double[] coef = Reference.grid(r, 6 * 4, -4, 4);   // multiples of 0.5: exact in bfloat16
            Tensor k = Reference.make(coef, DType.FLOAT32, 6, 4);
            Tensor c = Autocast.convert(w.transpose(0, 1), DType.BFLOAT16);   // [6, 4]
            Tensor loss = Reductions.sum(Elementwise.mul(c.to(DType.FLOAT32), k));
            loss.backward();
            assertEquals(DType.FLOAT32, w.grad().dtype());
            double[] g = w.grad().toDoubleArray();
            for (int i = 0; i < 4; i++) {
                for (int j = 0; j < 6; j++) {
                    assertEquals(coef[j * 4 + i], g[i * 6 + j], 0.0, "dloss/dw[" + i + "," + j + "]");
                }
            }
        }
    }
}
