package dev.cortado.sparse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.kernels.Kernels;
import dev.cortado.ops.Launch;
import dev.cortado.ops.Sparse;
import dev.cortado.ops.Sparse.NM;
import dev.cortado.ops.Sparse.SpmmBackend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The host side of the 2:4 sparse-tensor-core path ({@code native/cpu/sparse24.cpp},
 * {@code native/shared/sp24_layout.h}): the metadata packer that turns the N:M compressed form
 * (values + one byte of position per kept value) into the words {@code mma.sp.m16n8k32} reads.
 * Checked against a float64 dense reference on fresh random 2:4 matrices (no zeros among the kept
 * values), with partial tiles in both directions (rows 1, 16, 37, 130; k 4, 32, 100, 256):
 * compress, pack, unpack gives the dense matrix back exactly, and a decoder written here from the
 * layout's documentation reads the same positions from the words; the scalar GEMM on the packed
 * form (the CUDA kernel's CPU twin) matches the float64 product (float64 rel 1e-12; float32
 * 1e-5 of the largest |C|; bfloat16 / float16 one output rounding, 2^-8 / 2^-11 of the largest |C|,
 * the reference computed from the rounded inputs). Bad metadata and a CPU tensor asking for cuSPARSE
 * are clear exceptions.
 */
class Sparse24LayoutTest {
    private static final NM TWO_FOUR = new NM(2, 4);
    private static final long[][] SHAPES = {{1, 4}, {16, 32}, {37, 100}, {130, 256}};

    /** A dense [rows, k] 2:4 matrix: two random positions per group of 4 hold ±[0.25, 4), the rest 0. */
    static double[] random24(Random r, long rows, long k) {
        double[] w = new double[(int) (rows * k)];
        for (int g = 0; g < rows * k / 4; g++) {
            int a = r.nextInt(4);
            int b = r.nextInt(3);
            if (b >= a) {
                b++;
            }
            w[g * 4 + a] = (r.nextBoolean() ? 1 : -1) * (0.25 + 3.75 * r.nextDouble());
            w[g * 4 + b] = (r.nextBoolean() ? 1 : -1) * (0.25 + 3.75 * r.nextDouble());
        }
        return w;
    }

    static long packedWords(long rows, long k) {
        return (rows + 15) / 16 * ((k + 31) / 32) * 16;
    }

    /** The packed words of a 2:4 N:M pair (values, meta), through the given kernels. */
    static Tensor pack(Tensor meta, long rows, long k) {
        Tensor packed = Tensor.empty(DType.INT32, meta.device(), packedWords(rows, k));
        Launch l = Launch.on(meta);
        l.check(l.kernels().sp24PackMeta(rows, k, meta.dataAddress(), packed.dataAddress(), l.stream()),
                "sp24_pack_meta(" + meta.describe() + ")");
        return packed;
    }

    /**
     * The positions of group {@code grp} of row {@code r} read from the packed words as the layout
     * documents them: tile (r / 16, grp / 8), word 2 (r % 8) + (grp % 8) / 4, bits 16 (r % 16 / 8)
     * + 4 (grp % 4): low 2 bits the first position, high 2 bits the second.
     */
    static int[] decode(int[] words, long k, long r, long grp) {
        long tiles = (k + 31) / 32;
        long word = ((r / 16) * tiles + grp / 8) * 16 + 2 * (r % 8) + (grp % 8) / 4;
        int shift = (int) (16 * ((r % 16) / 8) + 4 * (grp % 4));
        int nib = (words[(int) word] >>> shift) & 0xF;
        return new int[] {nib & 3, nib >>> 2};
    }

    @Test
    void packUnpackGivesTheDenseMatrixBackExactly() {
        Random rnd = new Random(24);
        for (long[] s : SHAPES) {
            long rows = s[0];
            long k = s[1];
            String what = rows + "x" + k;
            try (Scope scope = Scope.open()) {
                double[] w = random24(rnd, rows, k);
                Tensor dense = Tensor.of(w, rows, k);
                Tensor[] vm = Sparse.nmCompress(dense, TWO_FOUR);
                Tensor packed = pack(vm[1], rows, k);
                int[] words = packed.toIntArray();
                // every word of a padding row or group carries positions (0, 1)
                for (long r = 0; r < (rows + 15) / 16 * 16; r++) {
                    for (long g = 0; g < (k + 31) / 32 * 8; g++) {
                        int[] p = decode(words, k, r, g);
                        if (r >= rows || g >= k / 4) {
                            assertArrayEquals(new int[] {0, 1}, p, what + " padding row " + r + " group " + g);
                        } else {
                            assertTrue(p[0] < p[1], what + " row " + r + " group " + g);
                            assertTrue(w[(int) (r * k + g * 4 + p[0])] != 0 && w[(int) (r * k + g * 4 + p[1])] != 0,
                                    what + ": the decoded positions of row " + r + " group " + g + " hold the kept values");
                        }
                    }
                }
                Tensor back = Tensor.empty(DType.FLOAT64, rows, k);
                Launch l = Launch.on(back);
                l.check(l.kernels().sp24Unpack(DType.FLOAT64.code(), rows, k, vm[0].dataAddress(), packed.dataAddress(),
                        back.dataAddress(), l.stream()), "sp24_unpack");
                assertArrayEquals(w, back.toDoubleArray(), 0.0, what + ": unpack(pack(compress(W))) == W");
            }
        }
    }

    @Test
    void packedGemmMatchesTheFloat64Product() {
        Random rnd = new Random(7);
        DType[] types = {DType.FLOAT64, DType.FLOAT32, DType.BFLOAT16, DType.FLOAT16};
        for (long[] s : SHAPES) {
            long rows = s[0];
            long k = s[1];
            for (long n : new long[] {1, 45}) {
                for (DType t : types) {
                    try (Scope scope = Scope.open()) {
                        Tensor[] vm = Sparse.nmCompress(Tensor.of(random24(rnd, rows, k), rows, k), TWO_FOUR);
                        Tensor values = vm[0].to(t);
                        Tensor b = Tensor.of(rnd.doubles(k * n, -2, 2).toArray(), k, n).to(t);
                        Tensor packed = pack(vm[1], rows, k);
                        // the reference from the inputs as the kernel sees them (rounded to t)
                        Tensor wd = Sparse.nmDecompress(values.to(DType.FLOAT64), vm[1], TWO_FOUR);
                        double[] want = reference(wd.toDoubleArray(), b.to(DType.FLOAT64).toDoubleArray(), rows, k, n);
                        Tensor c = Tensor.empty(t, rows, n);
                        Launch l = Launch.on(c);
                        l.check(l.kernels().sp24Matmul(t.code(), rows, k, n, values.dataAddress(), packed.dataAddress(),
                                b.dataAddress(), c.dataAddress(), l.stream()), "sp24_matmul");
                        double max = 0;
                        for (double v : want) {
                            max = Math.max(max, Math.abs(v));
                        }
                        double tol = switch (t) {
                            case FLOAT64 -> 1e-12 * max;
                            case FLOAT32 -> 1e-5 * max;
                            case BFLOAT16 -> 0x1p-8 * max;
                            default -> 0x1p-11 * max;
                        };
                        double[] got = c.to(DType.FLOAT64).toDoubleArray();
                        for (int i = 0; i < want.length; i++) {
                            assertEquals(want[i], got[i], tol, t + " " + rows + "x" + k + "x" + n + " at " + i);
                        }
                    }
                }
            }
        }
    }

    private static double[] reference(double[] w, double[] b, long rows, long k, long n) {
        double[] c = new double[(int) (rows * n)];
        for (int i = 0; i < rows; i++) {
            for (int p = 0; p < k; p++) {
                double a = w[(int) (i * k + p)];
                for (int j = 0; j < n; j++) {
                    c[(int) (i * n + j)] += a * b[(int) (p * n + j)];
                }
            }
        }
        return c;
    }

    @Test
    void badMetadataIsAClearException() {
        try (Scope scope = Scope.open()) {
            Tensor[] vm = Sparse.nmCompress(Tensor.of(random24(new Random(3), 16, 32), 16, 32), TWO_FOUR);
            Tensor packed = pack(vm[1], 16, 32);
            int[] words = packed.toIntArray();
            words[5] = (words[5] & ~0xF0) | 0x50; // row 2, group 5: positions (1, 1)
            Tensor bad = Tensor.of(words, words.length);
            Tensor out = Tensor.empty(DType.FLOAT32, 16, 32);
            Tensor v = vm[0].to(DType.FLOAT32);
            Launch l = Launch.on(out);
            Kernels kern = l.kernels();
            RuntimeException e = assertThrows(RuntimeException.class, () -> l.check(kern.sp24Unpack(DType.FLOAT32.code(),
                    16, 32, v.dataAddress(), bad.dataAddress(), out.dataAddress(), l.stream()), "sp24_unpack"));
            assertTrue(e.getMessage().contains("word 5") && e.getMessage().contains("not two increasing positions"),
                    e.getMessage());
            // a repeated N:M position cannot be packed
            byte[] meta = vm[1].toByteArray();
            meta[1] = meta[0];
            Tensor fromBytes = Tensor.of(toInts(meta), meta.length).to(DType.UINT8);
            e = assertThrows(RuntimeException.class, () -> pack(fromBytes, 16, 32));
            assertTrue(e.getMessage().contains("row 0, group 0, slot 1") && e.getMessage().contains("strictly increasing"),
                    e.getMessage());
            // k not a multiple of 4
            e = assertThrows(RuntimeException.class, () -> pack(vm[1], 16, 30));
            assertTrue(e.getMessage().contains("multiple of 4"), e.getMessage());
        }
    }

    private static int[] toInts(byte[] b) {
        int[] out = new int[b.length];
        for (int i = 0; i < b.length; i++) {
            out[i] = b[i] & 0xFF;
        }
        return out;
    }

    @Test
    void cusparseOnTheCpuSaysItNeedsCuda() {
        try (Scope scope = Scope.open()) {
            Tensor crow = Tensor.of(new long[] {0, 1, 2}, 3);
            Tensor col = Tensor.of(new long[] {1, 0}, 2);
            Tensor values = Tensor.of(new double[] {1.5, -2}, 2).to(DType.FLOAT32);
            Tensor b = Tensor.of(new double[] {1, 2, 3, 4}, 2, 2).to(DType.FLOAT32);
            assertArrayEquals(new double[] {4.5, 6, -2, -4},
                    Sparse.csrSpmm(crow, col, values, b, SpmmBackend.CORTADO).to(DType.FLOAT64).toDoubleArray(), 0);
            RuntimeException e = assertThrows(RuntimeException.class,
                    () -> Sparse.csrSpmm(crow, col, values, b, SpmmBackend.CUSPARSE));
            assertTrue(e.getMessage().contains("cuSPARSE runs on CUDA devices only"), e.getMessage());
        }
    }
}
