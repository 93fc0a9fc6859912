package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;

import dev.cortado.ops.Indexing.Axis;
import dev.cortado.ops.Indexing.IndexAddAttrs;
import dev.cortado.ops.IndexingBackwardTest;
import dev.cortado.ops.IndexingOpsTest;
import dev.cortado.testing.Reference;
import java.util.List;

/** gather, index_add, concat (references: IndexingOpsTest, IndexingBackwardTest). */
final class IndexingSamples {
    private IndexingSamples() {
    }

    private static final String F = "indexing";

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("gather", F, "data[..., indices, ...] along an axis (indices int32/int64, negative from the end)")
                    .samples((r, t) -> List.of(
                            new Sample("axis 0, 2-d indices", new Axis(0), u(r, t, 7, 5), Gen.indices(r, 7, 2, 3)),
                            new Sample("axis 1 of a view", new Axis(1), u(r, t, 4, 6).view(), Gen.indices(r, 6, 5)),
                            new Sample("negative index, size-1", new Axis(-1), u(r, t, 3, 1, 4), Arg.index(new long[] {-1, 0}, 2)),
                            new Sample("empty indices", new Axis(0), u(r, t, 5, 3), Gen.indices(r, 5, 0))))
                    .reference((s, in) -> {
                        long[] d = s.dims(0);
                        long[] id = s.dims(1);
                        int ax = ((Axis) s.attrs()).axis();
                        ax = ax < 0 ? ax + d.length : ax;
                        long[] out = new long[d.length - 1 + id.length];
                        System.arraycopy(d, 0, out, 0, ax);
                        System.arraycopy(id, 0, out, ax, id.length);
                        System.arraycopy(d, ax + 1, out, ax + id.length, d.length - ax - 1);
                        return new double[][] {IndexingOpsTest.gatherRef(in[0], d, longs(in[1]), id, ax, out)};
                    })
                    .floats(0).halves(0, 0).gradCheck().build(),
            OpInfo.of("index_add", F, "base + source scattered along an axis at indices (repeats accumulate)")
                    .samples((r, t) -> List.of(
                            new Sample("axis 1, repeats, base", new IndexAddAttrs(1, 5), u(r, t, 3, 9, 7), Gen.indices(r, 5, 9),
                                    u(r, t, 3, 5, 7)),
                            new Sample("axis 0, no base", new IndexAddAttrs(0, 4), u(r, t, 6, 3), Gen.indices(r, 4, 6)),
                            new Sample("empty source", new IndexAddAttrs(0, 3), u(r, t, 0, 2), Gen.indices(r, 3, 0),
                                    u(r, t, 3, 2))))
                    .reference((s, in) -> {
                        IndexAddAttrs a = (IndexAddAttrs) s.attrs();
                        long[] d = s.dims(0);
                        long outer = Reference.numel(java.util.Arrays.copyOfRange(d, 0, a.axis()));
                        long inner = Reference.numel(java.util.Arrays.copyOfRange(d, a.axis() + 1, d.length));
                        double[] base = in.length > 2 && in[2] != null ? in[2] : new double[(int) (outer * a.size() * inner)];
                        return new double[][] {IndexingBackwardTest.indexAddRef(base, outer, a.size(), inner, longs(in[1]), in[0])};
                    })
                    .floats(1e-6).halves(1e-2, 4e-3).gradCheck().build(),
            OpInfo.of("concat", F, "joins tensors along an axis (empty inputs allowed)")
                    .samples((r, t) -> List.of(
                            new Sample("axis 1, three inputs, a view", new Axis(1), u(r, t, 3, 2), u(r, t, 3, 4).view(), u(r, t, 3, 1)),
                            new Sample("axis 0 with an empty input", new Axis(0), u(r, t, 2, 5), u(r, t, 0, 5), u(r, t, 1, 5)),
                            new Sample("negative axis", new Axis(-1), u(r, t, 2, 1, 3), u(r, t, 2, 1, 2))))
                    .reference((s, in) -> {
                        int rank = s.dims(0).length;
                        int ax = ((Axis) s.attrs()).axis();
                        ax = ax < 0 ? ax + rank : ax;
                        long outer = Reference.numel(java.util.Arrays.copyOfRange(s.dims(0), 0, ax));
                        int total = 0;
                        for (double[] x : in) {
                            total += x.length;
                        }
                        double[] y = new double[total];
                        int p = 0;
                        for (long o = 0; o < outer; o++) {
                            for (int k = 0; k < in.length; k++) {
                                int chunk = (int) (in[k].length / Math.max(outer, 1));
                                System.arraycopy(in[k], (int) (o * chunk), y, p, chunk);
                                p += chunk;
                            }
                        }
                        return new double[][] {y};
                    })
                    .floats(0).halves(0, 0).gradCheck().build());

    static long[] longs(double[] v) {
        long[] l = new long[v.length];
        for (int i = 0; i < l.length; i++) {
            l[i] = (long) v[i];
        }
        return l;
    }
}
