package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;

import dev.cortado.ops.KvCache.AppendOptions;
import dev.cortado.ops.KvCache.DecodeOptions;
import dev.cortado.ops.KvCacheOpsTest;
import dev.cortado.tensor.DType;
import java.util.List;
import java.util.Random;

/**
 * Paged KV cache: append (checked through the pools it writes in place) and decode attention
 * over permuted pages (reference: KvCacheOpsTest.reference on the sequences gathered here
 * through the block table). Pools [P=6, PS=4, Hkv=2, D=8]; block table [[4, 1, 5], [0, 3, 2]];
 * float32, bfloat16, float16 (the pools' dtypes).
 */
final class KvCacheSamples {
    private KvCacheSamples() {
    }

    private static final String F = "kv cache";
    static final int P = 6, PS = 4, HKV = 2, D = 8;
    static final long[] TABLE = {4, 1, 5, 0, 3, 2};

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("kv_cache_append", F, "writes new keys/values [S, T, Hkv, D] into the paged pools (in place) at "
                            + "each sequence's length; returns the new lengths")
                    .samples((r, t) -> List.of(
                            append(r, t, "T 3 across a page boundary", new long[] {5, 2}, 3, null),
                            append(r, t, "ragged new lengths, one empty", new long[] {3, 6}, 2, new long[] {2, 0})))
                    .reference((s, in) -> {
                        double[] k = in[0].clone();
                        double[] v = in[1].clone();
                        long[] lens = IndexingSamples.longs(in[3]);
                        int tNew = (int) s.dims(4)[1];
                        long[] add = in.length > 6 ? IndexingSamples.longs(in[6]) : new long[] {tNew, tNew};
                        double[] newLens = new double[lens.length];
                        for (int seq = 0; seq < lens.length; seq++) {
                            for (int t = 0; t < add[seq]; t++) {
                                int base = row(seq, (int) lens[seq] + t);
                                int src = (seq * tNew + t) * HKV * D;
                                System.arraycopy(in[4], src, k, base, HKV * D);
                                System.arraycopy(in[5], src, v, base, HKV * D);
                            }
                            newLens[seq] = lens[seq] + add[seq];
                        }
                        return new double[][] {newLens, k, v};
                    })
                    .inPlace(0, 1)
                    .dtype(DType.FLOAT32, 0, 0).halves(0, 0).notDifferentiable("writes a cache; integer result").build(),
            OpInfo.of("paged_decode_attention", F, "attention of Tq new queries per sequence over its cached tokens "
                            + "through the block table (split-K, causal among the new tokens, GQA, soft-capping)")
                    .samples((r, t) -> List.of(
                            decode(r, t, "causal, Tq 2, auto splits", new DecodeOptions(0.4, true, 0, -1, 0), 2),
                            decode(r, t, "not causal, Tq 1, 3 splits", new DecodeOptions(0.3, false, 3, -1, 0), 1),
                            decode(r, t, "soft-capped", new DecodeOptions(0.5, true, 1, -1, 2.0), 2)))
                    .reference((s, in) -> {
                        DecodeOptions o = (DecodeOptions) s.attrs();
                        long[] qd = s.dims(0);
                        int[] lens = {(int) in[4][0], (int) in[4][1]};
                        double[][] k = new double[2][];
                        double[][] v = new double[2][];
                        for (int seq = 0; seq < 2; seq++) {
                            k[seq] = new double[lens[seq] * HKV * D];
                            v[seq] = new double[lens[seq] * HKV * D];
                            for (int j = 0; j < lens[seq]; j++) {
                                System.arraycopy(in[1], row(seq, j), k[seq], j * HKV * D, HKV * D);
                                System.arraycopy(in[2], row(seq, j), v[seq], j * HKV * D, HKV * D);
                            }
                        }
                        KvCacheOpsTest.Case c = new KvCacheOpsTest.Case(DType.FLOAT32, lens, (int) qd[2], HKV, D, (int) qd[1], PS);
                        return KvCacheOpsTest.reference(c, in[0], k, v, o.scale(), o.causal(), o.softcap());
                    })
                    .dtype(DType.FLOAT32, 2e-5, 2e-5).halves(2e-2, 4e-3).notDifferentiable("inference op: no backward rule")
                    .build());

    /** Offset of the row (position pos, kv head 0) of sequence seq in a pool. */
    static int row(int seq, int pos) {
        int page = (int) TABLE[seq * 3 + pos / PS];
        return (page * PS + pos % PS) * HKV * D;
    }

    static Sample append(Random r, DType t, String label, long[] lens, int tNew, long[] newLens) {
        Arg[] a = {u(r, t, P, PS, HKV, D), u(r, t, P, PS, HKV, D), Arg.int32(TABLE, 2, 3), Arg.int32(lens, 2),
            u(r, t, 2, tNew, HKV, D), u(r, t, 2, tNew, HKV, D)};
        if (newLens == null) {
            return new Sample(label, AppendOptions.DEFAULT, a);
        }
        Arg[] b = java.util.Arrays.copyOf(a, 7);
        b[6] = Arg.int32(newLens, 2);
        return new Sample(label, AppendOptions.DEFAULT, b);
    }

    static Sample decode(Random r, DType t, String label, DecodeOptions o, int tq) {
        return new Sample(label, o, u(r, t, 2, tq, 4, D), u(r, t, P, PS, HKV, D), u(r, t, P, PS, HKV, D), Arg.int32(TABLE, 2, 3),
                Arg.int32(new long[] {9, 3}, 2));
    }
}
