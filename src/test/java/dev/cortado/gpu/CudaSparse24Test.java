package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.ops.Launch;
import dev.cortado.ops.Sparse;
import dev.cortado.ops.Sparse.NM;
import dev.cortado.ops.Sparse.SpmmBackend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The 2:4 GEMM on the sparse tensor cores ({@code native/cuda/sparse24.cu}, {@code mma.sp
 * m16n8k32}), the Sputnik-style CSR SpMM and the optional cuSPARSE backend against the CPU twins,
 * on fresh random inputs with partial tiles (rows 37 and 130, k 100 and 256, n 1, 45, 200):
 * the packed metadata word for word and the unpacked matrix exactly; {@code sp24_matmul} (float16,
 * bfloat16) and {@code nm_matmul} with a bfloat16 2:4 weight (the same kernel with its metadata
 * built from the N:M bytes) within 2^-7 (bf16) / 2^-10 (f16) of the largest |C| (float32
 * accumulation in another order, one output rounding on each side); the CSR SpMM on a skewed
 * 3000-row pattern (the row swizzle runs; n = 1 and 7 scalar, 64 and 256 vector loads) within
 * float32 rel 1e-5 of the largest |C|; cuSPARSE the same, or an exception that says it is not
 * available. Run with {@code mvn verify -Pgpu}.
 */
@Tag("gpu")
class CudaSparse24Test {
    private static final Device GPU = Device.cuda(0);
    private static final NM TWO_FOUR = new NM(2, 4);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    private static double[] random24(Random r, long rows, long k) {
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

    private static Tensor pack(Tensor meta, long rows, long k) {
        Tensor packed = Tensor.empty(DType.INT32, meta.device(), (rows + 15) / 16 * ((k + 31) / 32) * 16);
        Launch l = Launch.on(meta);
        l.check(l.kernels().sp24PackMeta(rows, k, meta.dataAddress(), packed.dataAddress(), l.stream()), "sp24_pack_meta");
        return packed;
    }

    private static Tensor matmul(DType t, long rows, long k, long n, Tensor values, Tensor packed, Tensor b) {
        Tensor c = Tensor.empty(t, values.device(), rows, n);
        Launch l = Launch.on(c);
        l.check(l.kernels().sp24Matmul(t.code(), rows, k, n, values.dataAddress(), packed.dataAddress(), b.dataAddress(),
                c.dataAddress(), l.stream()), "sp24_matmul");
        return c;
    }

    private static void assertNear(double[] want, double[] got, double relOfMax, String what) {
        double max = 0;
        for (double v : want) {
            max = Math.max(max, Math.abs(v));
        }
        assertTrue(max > 0, what + ": the reference is not all zero");
        assertEquals(want.length, got.length, what);
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], relOfMax * max, what + " at " + i);
        }
    }

    @Test
    void tensorCoreGemmMatchesTheCpu() {
        Random rnd = new Random(2024);
        for (long[] s : new long[][] {{37, 100}, {130, 256}}) {
            long rows = s[0];
            long k = s[1];
            try (Scope scope = Scope.open()) {
                Tensor[] vm = Sparse.nmCompress(Tensor.of(random24(rnd, rows, k), rows, k), TWO_FOUR);
                Tensor packedCpu = pack(vm[1], rows, k);
                Tensor metaGpu = vm[1].to(GPU);
                Tensor packedGpu = pack(metaGpu, rows, k);
                assertArrayEquals(packedCpu.toIntArray(), packedGpu.cpu().toIntArray(), "packed words " + rows + "x" + k);
                for (DType t : new DType[] {DType.FLOAT16, DType.BFLOAT16}) {
                    Tensor v = vm[0].to(t);
                    Tensor vg = v.to(GPU);
                    Tensor xg = Tensor.empty(t, GPU, rows, k);
                    Launch l = Launch.on(xg);
                    l.check(l.kernels().sp24Unpack(t.code(), rows, k, vg.dataAddress(), packedGpu.dataAddress(),
                            xg.dataAddress(), l.stream()), "sp24_unpack");
                    assertArrayEquals(Sparse.nmDecompress(v, vm[1], TWO_FOUR).to(DType.FLOAT64).toDoubleArray(),
                            xg.to(DType.FLOAT64).cpu().toDoubleArray(), 0.0, "unpack " + t);
                    double tol = t == DType.BFLOAT16 ? 0x1p-7 : 0x1p-10;
                    for (long n : new long[] {1, 45, 200}) {
                        String what = t + " " + rows + "x" + k + "x" + n;
                        Tensor b = Tensor.of(rnd.doubles(k * n, -2, 2).toArray(), k, n).to(t);
                        Tensor bg = b.to(GPU);
                        double[] want = matmul(t, rows, k, n, v, packedCpu, b).to(DType.FLOAT64).toDoubleArray();
                        assertNear(want, matmul(t, rows, k, n, vg, packedGpu, bg).to(DType.FLOAT64).cpu().toDoubleArray(),
                                tol, "sp24_matmul " + what);
                        if (t == DType.BFLOAT16) {
                            assertNear(Sparse.nmMatmul(v, vm[1], TWO_FOUR, b).to(DType.FLOAT64).toDoubleArray(),
                                    Sparse.nmMatmul(vg, metaGpu, TWO_FOUR, bg).to(DType.FLOAT64).cpu().toDoubleArray(), tol,
                                    "nm_matmul 2:4 (mma.sp) " + what);
                        }
                    }
                }
            }
        }
    }

    /** A CSR pattern of 3000 x 300 whose every 97th row is ~50x longer than the rest. */
    private static Tensor[] skewed(Random r) {
        List<Long> crow = new ArrayList<>(List.of(0L));
        List<Long> col = new ArrayList<>();
        for (int i = 0; i < 3000; i++) {
            int len = i % 97 == 0 ? 200 : r.nextInt(9);
            r.ints(0, 300).distinct().limit(len).sorted().forEach(c -> col.add((long) c));
            crow.add((long) col.size());
        }
        return new Tensor[] {Tensor.of(crow.stream().mapToLong(Long::longValue).toArray(), crow.size()),
            Tensor.of(col.stream().mapToLong(Long::longValue).toArray(), col.size())};
    }

    @Test
    void sputnikSpmmAndCusparseMatchTheCpu() {
        Random rnd = new Random(5);
        try (Scope scope = Scope.open()) {
            Tensor[] a = skewed(rnd);
            long nnz = a[1].size(0);
            Tensor values = Tensor.of(rnd.doubles(nnz, -1, 1).toArray(), nnz).to(DType.FLOAT32);
            Tensor crowG = a[0].to(GPU);
            Tensor colG = a[1].to(GPU);
            Tensor valuesG = values.to(GPU);
            for (long n : new long[] {1, 7, 64, 256}) {
                Tensor b = Tensor.of(rnd.doubles(300 * n, -1, 1).toArray(), 300, n).to(DType.FLOAT32);
                double[] want = Sparse.csrSpmm(a[0], a[1], values, b).toDoubleArray();
                Tensor bg = b.to(GPU);
                assertNear(want, Sparse.csrSpmm(crowG, colG, valuesG, bg).cpu().toDoubleArray(), 1e-5, "csr_spmm n=" + n);
                try {
                    double[] got = Sparse.csrSpmm(crowG, colG, valuesG, bg, SpmmBackend.CUSPARSE).cpu().toDoubleArray();
                    assertNear(want, got, 1e-5, "cuSPARSE csr_spmm n=" + n);
                } catch (RuntimeException e) {
                    assertTrue(e.getMessage().contains("cuSPARSE is not available"), e.getMessage());
                }
            }
            // a column index out of range: the CPU's status on the cuSPARSE path too (checked before the call)
            Tensor badCol = Tensor.of(a[1].toLongArray(), a[1].size(0));
            long[] cols = badCol.toLongArray();
            cols[0] = 300;
            Tensor badColG = Tensor.of(cols, cols.length).to(GPU);
            Tensor b = Tensor.of(rnd.doubles(300 * 8L, -1, 1).toArray(), 300, 8).to(DType.FLOAT32).to(GPU);
            RuntimeException e = assertThrows(RuntimeException.class, () -> Sparse.csrSpmm(crowG, badColG, valuesG, b));
            assertTrue(e.getMessage().contains("col_indices[0] = 300"), e.getMessage());
        }
    }
}
