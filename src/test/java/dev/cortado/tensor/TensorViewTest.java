package dev.cortado.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;

/**
 * Views share storage and address the elements an independent index computation says they
 * should: every view result is compared with values read through plain Java index math on the
 * source array.
 */
class TensorViewTest {
    /** Reseeded from each test's name, so a case draws the same data alone or in the suite. */
    private static final ThreadLocal<Random> RANDOM = ThreadLocal.withInitial(() -> new Random(42));

    @BeforeEach
    void seedFromTheTestName(TestInfo info) {
        RANDOM.set(new Random(42L * 31 + info.getDisplayName().hashCode()));
    }

    private static double[] randomData(int n) {
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = RANDOM.get().nextDouble() * 10 - 5;
        }
        return d;
    }

    @Test
    void permuteMatchesIndexMath() {
        try (var scope = Scope.open()) {
            double[] data = randomData(2 * 3 * 4);
            Tensor t = Tensor.of(data, 2, 3, 4).to(Device.CPU);
            Tensor p = t.permute(2, 0, 1); // [4, 2, 3]
            assertArrayEquals(new long[] {4, 2, 3}, p.dims());
            assertTrue(p.sharesStorageWith(t));
            assertFalse(p.isContiguous());
            double[] got = p.toDoubleArray();
            int k = 0;
            for (int c = 0; c < 4; c++) {
                for (int a = 0; a < 2; a++) {
                    for (int b = 0; b < 3; b++) {
                        assertEquals(data[a * 12 + b * 4 + c], got[k++]);
                    }
                }
            }
        }
    }

    @Test
    void sliceWithStepAndNegativeBounds() {
        try (var scope = Scope.open()) {
            double[] data = randomData(5 * 7);
            Tensor t = Tensor.of(data, 5, 7).to(Device.CPU);
            Tensor s = t.slice(1, 1, -1, 2); // columns 1, 3, 5
            assertArrayEquals(new long[] {5, 3}, s.dims());
            double[] got = s.toDoubleArray();
            for (int r = 0; r < 5; r++) {
                for (int j = 0; j < 3; j++) {
                    assertEquals(data[r * 7 + 1 + 2 * j], got[r * 3 + j]);
                }
            }
            Tensor empty = t.slice(0, 4, 2, 1);
            assertEquals(0, empty.numel());
            assertArrayEquals(new long[] {0, 7}, empty.dims());
        }
    }

    @Test
    void narrowSelectSqueezeUnsqueeze() {
        try (var scope = Scope.open()) {
            double[] data = randomData(3 * 4);
            Tensor t = Tensor.of(data, 3, 4).to(Device.CPU);
            Tensor row = t.select(0, -1);
            assertArrayEquals(new double[] {data[8], data[9], data[10], data[11]}, row.toDoubleArray());
            Tensor col = t.narrow(1, 2, 1).squeeze(1);
            assertArrayEquals(new double[] {data[2], data[6], data[10]}, col.toDoubleArray());
            Tensor u = col.unsqueeze(0).unsqueeze(-1);
            assertArrayEquals(new long[] {1, 3, 1}, u.dims());
            assertArrayEquals(col.toDoubleArray(), u.toDoubleArray());
            assertArrayEquals(new long[] {3}, u.squeeze().dims());
        }
    }

    @Test
    void expandBroadcastsWithZeroStrides() {
        try (var scope = Scope.open()) {
            Tensor v = Tensor.of(new double[] {1, 2, 3}, 3, 1).to(Device.CPU);
            Tensor e = v.expand(2, 3, 4);
            assertArrayEquals(new long[] {2, 3, 4}, e.dims());
            assertArrayEquals(new long[] {0, 1, 0}, e.strides());
            double[] got = e.toDoubleArray();
            for (int i = 0; i < 24; i++) {
                assertEquals((i / 4) % 3 + 1, got[i]);
            }
            assertThrows(IllegalArgumentException.class, () -> v.expand(2, 2));
            assertThrows(IllegalArgumentException.class, () -> v.expand(4));
        }
    }

    @Test
    void reshapeViewsWhenPossibleAndCopiesOtherwise() {
        try (var scope = Scope.open()) {
            double[] data = randomData(6 * 4);
            Tensor t = Tensor.of(data, 6, 4).to(Device.CPU);
            Tensor r = t.reshape(2, -1, 4);
            assertTrue(r.sharesStorageWith(t));
            assertArrayEquals(new long[] {2, 3, 4}, r.dims());
            Tensor tr = t.transpose(0, 1); // [4, 6], not viewable as [24]
            assertThrows(IllegalArgumentException.class, () -> tr.view(24));
            Tensor flat = tr.reshape(24);
            assertFalse(flat.sharesStorageWith(t));
            double[] got = flat.toDoubleArray();
            for (int i = 0; i < 4; i++) {
                for (int j = 0; j < 6; j++) {
                    assertEquals(data[j * 4 + i], got[i * 6 + j]);
                }
            }
            // A view over split dims of a transposed tensor is allowed where chunks are contiguous.
            Tensor t3 = Tensor.of(randomData(2 * 3 * 4), 2, 3, 4).to(Device.CPU).permute(1, 2, 0); // [3, 4, 2]
            Tensor merged = t3.view(12, 2);
            assertTrue(merged.sharesStorageWith(t3));
            assertArrayEquals(t3.toDoubleArray(), merged.toDoubleArray());
            assertThrows(IllegalArgumentException.class, () -> t.reshape(5, -1));
            assertThrows(IllegalArgumentException.class, () -> t.reshape(-1, -1));
        }
    }

    @Test
    void writesThroughViewsReachTheSharedStorage() {
        try (var scope = Scope.open()) {
            Tensor t = Tensor.zeros(DType.FLOAT32, Device.CPU, 3, 3);
            Tensor diagonalRow = t.select(0, 1);
            diagonalRow.fillWith(7);
            t.narrow(1, 0, 1).fillWith(-1); // non-contiguous fill
            assertArrayEquals(new float[] {-1, 0, 0, -1, 7, 7, -1, 0, 0}, t.toFloatArray());
            Tensor src = Tensor.of(new float[] {1, 2, 3}, 3).to(Device.CPU);
            t.select(1, 2).copyFrom(src);
            assertArrayEquals(new float[] {-1, 0, 1, -1, 7, 2, -1, 0, 3}, t.toFloatArray());
        }
    }

    @Test
    void contiguousCopiesNonContiguousAndViewsContiguous() {
        try (var scope = Scope.open()) {
            Tensor t = Tensor.of(randomData(20), 4, 5).to(Device.CPU);
            Tensor c = t.contiguous();
            assertTrue(c.sharesStorageWith(t));
            Tensor tc = t.transpose(0, 1).contiguous();
            assertFalse(tc.sharesStorageWith(t));
            assertTrue(tc.isContiguous());
            assertArrayEquals(t.transpose(0, 1).toDoubleArray(), tc.toDoubleArray());
        }
    }

    /**
     * Copies of views whose innermost destination dim is strided in the source (transposes and
     * permutes; the native copy runs these as blocked transposes, 16 x 16 register transposes for
     * 4-byte elements), for every element size, with block edges (sizes that are not multiples of
     * 16 or 64), outer dims and size-1 dims, both ways (contiguous() of the view, and copyFrom into
     * the view), against index math. Integer values, exact in every dtype: equality is exact.
     */
    @Test
    void transposedCopiesMatchIndexMathForEveryElementSize() {
        long[][] shapes = {{37, 53}, {16, 16}, {130, 129}, {1, 40}, {40, 1}, {3, 70, 33}, {2, 1, 65, 18}, {17, 16, 4}};
        DType[] dtypes = {DType.FLOAT32, DType.INT32, DType.FLOAT64, DType.BFLOAT16, DType.INT8};
        for (long[] dims : shapes) {
            int r = dims.length;
            int[] swapLast = new int[r];
            int[] lastFirst = new int[r];
            for (int i = 0; i < r; i++) {
                swapLast[i] = i;
                lastFirst[i] = i == 0 ? r - 1 : i - 1;
            }
            swapLast[r - 2] = r - 1;
            swapLast[r - 1] = r - 2;
            int n = 1;
            for (long d : dims) {
                n *= (int) d;
            }
            double[] data = new double[n];
            for (int i = 0; i < n; i++) {
                data[i] = RANDOM.get().nextInt(201) - 100;
            }
            for (int[] perm : new int[][] {swapLast, lastFirst}) {
                double[] expected = permuted(data, dims, perm);
                for (DType dtype : dtypes) {
                    String what = dtype + " " + java.util.Arrays.toString(dims) + " permuted "
                            + java.util.Arrays.toString(perm);
                    try (var scope = Scope.open()) {
                        Tensor t = Tensor.of(data, dims).to(dtype);
                        Tensor c = t.permute(perm).contiguous();
                        assertTrue(c.isContiguous(), what);
                        assertArrayEquals(expected, c.toDoubleArray(), what);
                        Tensor back = Tensor.empty(dtype, Device.CPU, dims);
                        back.permute(perm).copyFrom(c);
                        assertArrayEquals(data, back.toDoubleArray(), what + ", copied back into the view");
                    }
                }
            }
        }
    }

    /**
     * A transposed copy of 32 MiB and more with 64-byte aligned destination rows streams its
     * stores past the caches (and [2048, 4100], whose rows are not whole cache lines, does not):
     * both against index math, exactly.
     */
    @Test
    void largeTransposedCopiesMatchIndexMath() {
        for (long[] dims : new long[][] {{2048, 4112}, {2050, 4100}}) {
            int n = (int) (dims[0] * dims[1]);
            float[] data = new float[n];
            double[] asDouble = new double[n];
            for (int i = 0; i < n; i++) {
                data[i] = RANDOM.get().nextInt(2001) - 1000;
                asDouble[i] = data[i];
            }
            double[] expected = permuted(asDouble, dims, new int[] {1, 0});
            try (var scope = Scope.open()) {
                Tensor t = Tensor.of(data, dims);
                Tensor c = t.transpose(0, 1).contiguous();
                assertArrayEquals(expected, c.toDoubleArray(), java.util.Arrays.toString(dims));
                Tensor back = Tensor.empty(DType.FLOAT32, Device.CPU, dims);
                back.transpose(0, 1).copyFrom(c);
                assertArrayEquals(asDouble, back.toDoubleArray(), java.util.Arrays.toString(dims) + " copied back");
            }
        }
    }

    /** data (row-major, dims) permuted: out[i_0..] = data at the source index whose dim perm[k] is i_k. */
    private static double[] permuted(double[] data, long[] dims, int[] perm) {
        int r = dims.length;
        long[] srcStride = new long[r];
        long acc = 1;
        for (int d = r - 1; d >= 0; d--) {
            srcStride[d] = acc;
            acc *= dims[d];
        }
        double[] out = new double[data.length];
        int[] coord = new int[r];
        for (int i = 0; i < out.length; i++) {
            long src = 0;
            for (int k = 0; k < r; k++) {
                src += coord[k] * srcStride[perm[k]];
            }
            out[i] = data[(int) src];
            for (int k = r - 1; k >= 0; k--) {
                if (++coord[k] < dims[perm[k]]) {
                    break;
                }
                coord[k] = 0;
            }
        }
        return out;
    }

    @Test
    void sizeOneAndEmptyTensors() {
        try (var scope = Scope.open()) {
            Tensor s = Tensor.scalar(3.5, DType.FLOAT32, Device.CPU);
            assertEquals(0, s.rank());
            assertEquals(1, s.numel());
            assertEquals(3.5, s.item());
            Tensor e = Tensor.empty(DType.FLOAT32, Device.CPU, 0, 5);
            assertEquals(0, e.numel());
            assertEquals(0, e.toFloatArray().length);
            assertEquals(0, e.transpose(0, 1).contiguous().numel());
            assertEquals("tensor([], shape=[0, 5], dtype=float32, device=cpu)", e.toString());
        }
    }
}
