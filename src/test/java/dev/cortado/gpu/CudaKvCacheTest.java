package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.ops.Generator;
import dev.cortado.ops.KvCache;
import dev.cortado.ops.KvCache.DecodeOptions;
import dev.cortado.ops.PagedKvCache;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The CUDA paged KV cache (append, split-K decode, merge) against its CPU twin (itself checked
 * against a float64 reference in KvCacheOpsTest) on the same random data, through
 * {@link PagedKvCache} on both devices. Run on a GPU machine with {@code mvn verify -Pgpu}.
 * Tolerances (abs + rel): float32 2e-5 (both accumulate in float32, in different orders);
 * float16 2e-3, bfloat16 1e-2 (one output rounding each side, possibly to neighbouring values).
 */
@SuppressWarnings("try")  // scopes that only close what the test allocates
@Tag("gpu")
class CudaKvCacheTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    private static double tol(DType t) {
        return switch (t) {
            case FLOAT16 -> 2e-3;
            case BFLOAT16 -> 1e-2;
            default -> 2e-5;
        };
    }

    private static void assertClose(String what, double[] cpu, double[] gpu, double tol) {
        assertEquals(cpu.length, gpu.length, what + ": length");
        for (int i = 0; i < cpu.length; i++) {
            if (cpu[i] == Double.NEGATIVE_INFINITY) {
                assertEquals(cpu[i], gpu[i], what + " [" + i + "]");
                continue;
            }
            assertTrue(Math.abs(cpu[i] - gpu[i]) <= tol + tol * Math.abs(cpu[i]),
                    what + " [" + i + "]: cpu " + cpu[i] + " vs cuda " + gpu[i]);
        }
    }

    private static Tensor random(Generator g, DType t, long... dims) {
        try (Tensor f = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, dims)) {
            return f.to(t);
        }
    }

    @ParameterizedTest(name = "{0} Hq{1} Hkv{2} D{3} Tq{4} PS{5}")
    @CsvSource({
        "FLOAT32, 8, 2, 64, 1, 16",
        "FLOAT32, 8, 1, 128, 3, 16",
        "FLOAT32, 4, 4, 80, 3, 32",
        "FLOAT32, 32, 1, 256, 4, 16",
        "BFLOAT16, 8, 2, 128, 1, 16",
        "FLOAT16, 16, 2, 64, 3, 32",
    })
    void decodeMatchesCpu(DType dtype, int hq, int hkv, int d, int tq, int ps) {
        int[] lens = {1, 17, 128, 1033, 2500, 16};
        int s = lens.length;
        int pages = 8;
        for (int len : lens) {
            pages += (len + ps - 1) / ps;
        }
        Generator g = Generator.seeded(hq * 31L + d);
        try (Scope scope = Scope.open();
             PagedKvCache cpu = PagedKvCache.builder().pages(pages).pageSize(ps).kvHeads(hkv).headDim(d).dtype(dtype)
                     .maxSequences(s).build();
             PagedKvCache gpu = PagedKvCache.builder().pages(pages).pageSize(ps).kvHeads(hkv).headDim(d).dtype(dtype)
                     .device(GPU).maxSequences(s).build()) {
            int[] seqs = new int[s];
            for (int i = 0; i < s; i++) {
                seqs[i] = cpu.newSequence();
                assertEquals(seqs[i], gpu.newSequence());
            }
            int[] first = new int[s];
            int[] rest = new int[s];
            for (int i = 0; i < s; i++) {
                first[i] = Math.max(0, lens[i] - tq);
                rest[i] = lens[i] - first[i];
            }
            int t = Arrays.stream(first).max().getAsInt();
            Tensor k1 = random(g, dtype, s, t, hkv, d);
            Tensor v1 = random(g, dtype, s, t, hkv, d);
            try (PagedKvCache.Step a = cpu.step(seqs, first); PagedKvCache.Step b = gpu.step(seqs, first)) {
                a.append(0, k1, v1);
                b.append(0, k1.to(GPU), v1.to(GPU));
            }
            assertClose("pool after append", cpu.keys(0).toDoubleArray(), gpu.keys(0).to(Device.CPU).toDoubleArray(), 0);
            Tensor k2 = random(g, dtype, s, tq, hkv, d);
            Tensor v2 = random(g, dtype, s, tq, hkv, d);
            Tensor q = random(g, dtype, s, tq, hq, d);
            try (PagedKvCache.Step a = cpu.step(seqs, rest); PagedKvCache.Step b = gpu.step(seqs, rest)) {
                a.append(0, k2, v2);
                b.append(0, k2.to(GPU), v2.to(GPU));
                Tensor[] want = KvCache.decodeWithLse(q, cpu.keys(0), cpu.values(0), a.blockTable(), a.lengths(),
                        DecodeOptions.DEFAULT.withSplits(1));
                for (int splits : new int[] {1, 0, 4, 13}) {
                    DecodeOptions o = DecodeOptions.DEFAULT.withSplits(splits);
                    Tensor[] got = KvCache.decodeWithLse(q.to(GPU), gpu.keys(0), gpu.values(0), b.blockTable(), b.lengths(),
                            o);
                    String what = dtype + " splits " + splits;
                    assertClose(what + ": o", want[0].toDoubleArray(), got[0].to(Device.CPU).toDoubleArray(), tol(dtype));
                    assertClose(what + ": lse", want[1].toDoubleArray(), got[1].to(Device.CPU).toDoubleArray(), 2e-5);
                }
                // soft-capped scores (cap 0.5 bends these scores strongly), split and not
                Tensor[] wantCap = KvCache.decodeWithLse(q, cpu.keys(0), cpu.values(0), a.blockTable(), a.lengths(),
                        DecodeOptions.DEFAULT.withSplits(1).withSoftcap(0.5));
                for (int splits : new int[] {1, 4}) {
                    Tensor[] got = KvCache.decodeWithLse(q.to(GPU), gpu.keys(0), gpu.values(0), b.blockTable(),
                            b.lengths(), DecodeOptions.DEFAULT.withSplits(splits).withSoftcap(0.5));
                    String what = dtype + " softcap 0.5 splits " + splits;
                    assertClose(what + ": o", wantCap[0].toDoubleArray(), got[0].to(Device.CPU).toDoubleArray(), tol(dtype));
                    assertClose(what + ": lse", wantCap[1].toDoubleArray(), got[1].to(Device.CPU).toDoubleArray(), 2e-5);
                }
                // the PagedKvCache path (max length known, tables not read back)
                try (Tensor o = b.attention(0, q.to(GPU))) {
                    assertClose(dtype + " step.attention", want[0].toDoubleArray(), o.to(Device.CPU).toDoubleArray(),
                            tol(dtype));
                }
            }
        }
    }

    @Test
    void badTablesAreCheckedBeforeTheKernel() {
        try (Scope scope = Scope.open();
             PagedKvCache gpu = PagedKvCache.builder().pages(4).pageSize(8).kvHeads(2).headDim(16).device(GPU)
                     .maxPagesPerSequence(3).build()) {
            Tensor q = Tensor.zeros(DType.FLOAT32, GPU, 1, 1, 4, 16);
            Tensor bt = Tensor.of(new int[] {0, 99, 2}, 1, 3).to(GPU);
            Tensor lens = Tensor.of(new int[] {10}, 1).to(GPU);
            IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class,
                    () -> KvCache.decode(q, gpu.keys(0), gpu.values(0), bt, lens, DecodeOptions.DEFAULT));
            assertTrue(e.getMessage().contains("block_table[0][1] = 99"), e.getMessage());
            Tensor kn = Tensor.zeros(DType.FLOAT32, GPU, 1, 1, 2, 16);
            e = assertThrows(IndexOutOfBoundsException.class,
                    () -> KvCache.append(gpu.keys(0), gpu.values(0), bt, lens, kn, kn));
            assertTrue(e.getMessage().contains("block_table[0][1] = 99"), e.getMessage());
            // a kernel told the tables are fine still reads nothing outside the pool: NaN rows
            Tensor o = KvCache.decode(q, gpu.keys(0), gpu.values(0), bt, lens, DecodeOptions.DEFAULT.withMaxSeqLen(10));
            assertTrue(Double.isNaN(o.to(Device.CPU).toDoubleArray()[0]));
            Tensor after = KvCache.append(gpu.keys(0), gpu.values(0), Tensor.of(new int[] {0, 1, 2}, 1, 3).to(GPU), lens,
                    kn, kn);
            assertArrayEquals(new int[] {11}, after.to(Device.CPU).toIntArray());
        }
    }
}
