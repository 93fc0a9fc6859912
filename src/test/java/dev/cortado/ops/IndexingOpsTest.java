package dev.cortado.ops;

import static dev.cortado.testing.Reference.assertExact;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** gather / embedding / concat: pure data movement, so every comparison is exact. */
public class IndexingOpsTest {
    private static final long[] DIMS = {4, 5, 6};

    /** gather reference: out = data[..., idx(j), ...] over contiguous data. */
    public static double[] gatherRef(double[] data, long[] dims, long[] idx, long[] idxDims, int axis, long[] outDims) {
        int ax = axis < 0 ? axis + dims.length : axis;
        int n = (int) Reference.numel(outDims);
        double[] out = new double[n];
        long[] strides = Reference.contiguousStrides(dims);
        for (int i = 0; i < n; i++) {
            long[] o = Reference.unravel(i, outDims);
            long p = 0;
            for (int d = 0; d < ax; d++) {
                p += o[d] * strides[d];
            }
            long flatIdx = 0;
            for (int d = 0; d < idxDims.length; d++) {
                flatIdx = flatIdx * idxDims[d] + o[ax + d];
            }
            long v = idx[(int) flatIdx];
            if (v < 0) {
                v += dims[ax];
            }
            p += v * strides[ax];
            for (int d = ax + 1; d < dims.length; d++) {
                p += o[d - 1 + idxDims.length] * strides[d];
            }
            out[i] = data[(int) p];
        }
        return out;
    }

    @TestFactory
    List<DynamicTest> gatherMatchesReference() {
        List<DynamicTest> tests = new ArrayList<>();
        long[][] idxShapes = {{}, {1}, {7}, {2, 3}, {0}};
        long seed = 1;
        for (DType t : new DType[] {DType.FLOAT32, DType.BFLOAT16, DType.INT8, DType.INT64, DType.BOOL, DType.FLOAT64}) {
            for (DType it : new DType[] {DType.INT32, DType.INT64}) {
                for (int axis : new int[] {0, 1, 2, -1, -3}) {
                    for (long[] idxDims : idxShapes) {
                        long s = seed++;
                        tests.add(dynamicTest(t + " idx " + it + Arrays.toString(idxDims) + " axis " + axis, () -> {
                            try (var scope = Scope.open()) {
                                Random r = new Random(s);
                                int ax = axis < 0 ? axis + 3 : axis;
                                double[] in = t.isFloatingPoint() ? Reference.uniform(r, 120, -3, 3)
                                        : Reference.ints(r, 120, t == DType.BOOL ? 0 : -100, 100);
                                Tensor data = Reference.make(in, t, DIMS);
                                double[] dv = Reference.values(data);
                                int ni = (int) Reference.numel(idxDims);
                                long[] idx = new long[ni];
                                for (int i = 0; i < ni; i++) {
                                    idx[i] = r.nextInt((int) (2 * DIMS[ax])) - DIMS[ax]; // [-len, len)
                                }
                                Tensor index = it == DType.INT64 ? Tensor.of(idx, idxDims)
                                        : Tensor.of(Arrays.stream(idx).mapToInt(v -> (int) v).toArray(), idxDims);
                                Tensor y = Indexing.gather(data, index, axis);
                                long[] outDims = new long[2 + idxDims.length];
                                System.arraycopy(DIMS, 0, outDims, 0, ax);
                                System.arraycopy(idxDims, 0, outDims, ax, idxDims.length);
                                System.arraycopy(DIMS, ax + 1, outDims, ax + idxDims.length, 2 - ax);
                                assertArrayEquals(outDims, y.dims());
                                assertEquals(t, y.dtype());
                                assertExact(gatherRef(dv, DIMS, idx, idxDims, axis, outDims), Reference.values(y), "gather");
                                // non-contiguous data and indices
                                Tensor dp = data.permute(2, 0, 1).permute(1, 2, 0); // same logical data, permuted twice
                                Tensor dt = data.transpose(0, 2).contiguous().transpose(0, 2);
                                assertExact(Reference.values(y), Reference.values(Indexing.gather(dt, index, axis)),
                                        "gather from non-contiguous data");
                                assertExact(Reference.values(y), Reference.values(Indexing.gather(dp, index, axis)), "permuted");
                            }
                        }));
                    }
                }
            }
        }
        return tests;
    }

    @Test
    void gatherWithStridedIndices() {
        try (var scope = Scope.open()) {
            Random r = new Random(5);
            double[] in = Reference.uniform(r, 120, -3, 3);
            Tensor data = Reference.make(in, DType.FLOAT64, DIMS);
            long[] idx = {0, 4, -1, 2, 3, -5, 1, 1};
            Tensor index = Tensor.of(idx, 2, 4).transpose(0, 1); // [4, 2], non-contiguous
            long[] idxT = {0, 3, 4, -5, -1, 1, 2, 1};
            Tensor y = Indexing.gather(data, index, 1);
            assertArrayEquals(new long[] {4, 4, 2, 6}, y.dims());
            assertExact(gatherRef(in, DIMS, idxT, new long[] {4, 2}, 1, y.dims()), y.toDoubleArray(), "strided indices");
        }
    }

    @Test
    void gatherOutOfRangeThrows() {
        try (var scope = Scope.open()) {
            Tensor data = Tensor.zeros(DType.FLOAT32, 4, 5);
            for (long bad : new long[] {5, -6, 1000}) {
                Tensor idx = Tensor.of(new long[] {0, bad, 1}, 3);
                var e = assertThrows(IndexOutOfBoundsException.class, () -> Indexing.gather(data, idx, 1));
                assertTrue(e.getMessage().contains(Long.toString(bad)), e.getMessage());
                assertTrue(e.getMessage().contains("gather"), e.getMessage());
                Tensor idx32 = Tensor.of(new int[] {(int) bad}, 1);
                var e2 = assertThrows(IndexOutOfBoundsException.class, () -> Indexing.gather(data, idx32, -1));
                assertTrue(e2.getMessage().contains(Long.toString(bad)), e2.getMessage());
            }
            var e3 = assertThrows(IndexOutOfBoundsException.class,
                    () -> Indexing.gather(Tensor.zeros(DType.FLOAT32, 0, 3), Tensor.of(new int[] {0}, 1), 0));
            assertTrue(e3.getMessage().contains("gather"), e3.getMessage());
            var e4 = assertThrows(IllegalArgumentException.class,
                    () -> Indexing.gather(data, Tensor.of(new float[] {0}, 1), 0));
            assertTrue(e4.getMessage().contains("gather") && e4.getMessage().contains("float32[1]"), e4.getMessage());
            var e5 = assertThrows(IllegalArgumentException.class, () -> Indexing.gather(data, Tensor.of(new int[] {0}, 1), 2));
            assertTrue(e5.getMessage().contains("gather") && e5.getMessage().contains("[4, 5]"), e5.getMessage());
        }
    }

    @Test
    void embedding() {
        try (var scope = Scope.open()) {
            Random r = new Random(8);
            for (DType t : new DType[] {DType.FLOAT32, DType.BFLOAT16, DType.FLOAT16}) {
                Tensor w = Reference.make(Reference.uniform(r, 40, -1, 1), t, 10, 4);
                double[] wv = w.toDoubleArray();
                int[] ids = {3, 0, 9, 3, -1, 7};
                Tensor idx = Tensor.of(ids, 2, 3);
                Tensor y = Indexing.embedding(w, idx);
                assertArrayEquals(new long[] {2, 3, 4}, y.dims());
                double[] want = new double[24];
                for (int j = 0; j < 6; j++) {
                    int row = ids[j] < 0 ? ids[j] + 10 : ids[j];
                    System.arraycopy(wv, row * 4, want, j * 4, 4);
                }
                assertExact(want, y.toDoubleArray(), "embedding " + t);
                Tensor scalarIdx = Tensor.scalar(9, DType.INT64, w.device());
                assertExact(Arrays.copyOfRange(wv, 36, 40), Indexing.embedding(w, scalarIdx).toDoubleArray(), "rank-0 index");
                assertArrayEquals(new long[] {4}, Indexing.embedding(w, scalarIdx).dims());
            }
            var e = assertThrows(IllegalArgumentException.class,
                    () -> Indexing.embedding(Tensor.zeros(DType.FLOAT32, 3), Tensor.of(new int[] {0}, 1)));
            assertTrue(e.getMessage().contains("embedding") && e.getMessage().contains("[3]"), e.getMessage());
        }
    }

    @TestFactory
    List<DynamicTest> concatAlongEachAxis() {
        List<DynamicTest> tests = new ArrayList<>();
        long seed = 50;
        for (int axis : new int[] {0, 1, 2, -1}) {
            for (DType[] types : new DType[][] {{DType.FLOAT32, DType.FLOAT32, DType.FLOAT32}, {DType.FLOAT32, DType.INT32,
                    DType.BFLOAT16}, {DType.INT8, DType.UINT8, DType.INT8}, {DType.BFLOAT16, DType.FLOAT16, DType.FLOAT64},
                {DType.BOOL, DType.INT64, DType.BOOL}}) {
                long s = seed++;
                tests.add(dynamicTest("axis " + axis + " " + Arrays.toString(types), () -> {
                    try (var scope = Scope.open()) {
                        Random r = new Random(s);
                        int ax = axis < 0 ? axis + 3 : axis;
                        long[] sizes = {3, 0, 2}; // the middle input is empty along the axis
                        Tensor[] in = new Tensor[3];
                        double[][] vals = new double[3][];
                        long[][] dims = new long[3][];
                        DType out = types[0];
                        for (int k = 0; k < 3; k++) {
                            long[] d = {2, 3, 4};
                            d[ax] = sizes[k];
                            dims[k] = d;
                            int n = (int) Reference.numel(d);
                            double[] v = types[k].isFloatingPoint() ? Reference.uniform(r, n, -3, 3)
                                    : Reference.ints(r, n, types[k] == DType.BOOL || types[k] == DType.UINT8 ? 0 : -5,
                                    types[k] == DType.BOOL ? 1 : 100);
                            in[k] = Reference.make(v, types[k], d);
                            if (k == 2) {
                                // a non-contiguous input: the transpose of a contiguous transpose
                                in[k] = in[k].transpose(0, 2).contiguous().transpose(0, 2);
                            }
                            vals[k] = Reference.values(in[k]);
                            if (k > 0) {
                                out = DType.promote(out, types[k]);
                            }
                        }
                        Tensor y = Indexing.concat(axis, in);
                        assertEquals(out, y.dtype(), "promoted dtype");
                        long[] od = {2, 3, 4};
                        od[ax] = 5;
                        assertArrayEquals(od, y.dims());
                        double[] want = new double[(int) Reference.numel(od)];
                        for (int i = 0; i < want.length; i++) {
                            long[] o = Reference.unravel(i, od);
                            int k = o[ax] < 3 ? 0 : 2;
                            long[] src = o.clone();
                            src[ax] -= k == 0 ? 0 : 3;
                            long flat = 0;
                            for (int d = 0; d < 3; d++) {
                                flat = flat * dims[k][d] + src[d];
                            }
                            want[i] = vals[k][(int) flat];
                        }
                        double[] got = Reference.values(y);
                        if (out == DType.BFLOAT16 || out == DType.FLOAT16) {
                            Reference.assertClose(want, got, Reference.tol(out), "concat");
                        } else if (out == DType.BOOL) {
                            assertExact(Arrays.stream(want).map(v -> v != 0 ? 1 : 0).toArray(), got, "concat bool");
                        } else {
                            assertExact(want, got, "concat");
                        }
                    }
                }));
            }
        }
        return tests;
    }

    @Test
    void concatErrorsNameTheOpAndShapes() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, 2, 3);
            Tensor b = Tensor.zeros(DType.FLOAT32, 2, 4);
            var e = assertThrows(IllegalArgumentException.class, () -> Indexing.concat(0, a, b));
            assertTrue(e.getMessage().contains("concat") && e.getMessage().contains("[2, 3]")
                    && e.getMessage().contains("[2, 4]"), e.getMessage());
            assertArrayEquals(new long[] {2, 7}, Indexing.concat(1, a, b).dims());
            var e2 = assertThrows(IllegalArgumentException.class, () -> Indexing.concat(0, a, Tensor.zeros(DType.FLOAT32, 3)));
            assertTrue(e2.getMessage().contains("concat") && e2.getMessage().contains("[3]"), e2.getMessage());
            var e3 = assertThrows(IllegalArgumentException.class, () -> Indexing.concat(2, a, a));
            assertTrue(e3.getMessage().contains("concat") && e3.getMessage().contains("[2, 3]"), e3.getMessage());
            assertThrows(IllegalArgumentException.class, () -> Indexing.concat(0));
        }
    }
}
