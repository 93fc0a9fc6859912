package dev.cortado.djl;

import dev.cortado.ops.Indexing;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * DJL's index-driven reshapes composed from Cortado views and {@link Indexing#gather}: picking
 * along an axis (DJL's pick and {@code gather}, PyTorch's {@code torch.gather}), tiling and
 * repeating. Each is differentiable through the ops it is made of.
 */
final class Gathers {
    private Gathers() {
    }

    /**
     * {@code out[i..., j, k...] = x[i..., index[i..., j, k...], k...]} along {@code axis}: the output
     * has the index's shape. An index of lower rank whose shape is a run of x's dimensions (the
     * labels [N] of logits [N, C]) is first given size-1 dimensions around it, as DJL's PyTorch
     * engine does; floating indices (DJL's float labels) are truncated to int64. Cost: one int64 index per output element, one gather.
     */
    static Tensor takeAlongAxis(Tensor x, Tensor index, int axis) {
        int rank = x.rank();
        if (rank == 0) {
            throw new IllegalArgumentException("pick/gather: the array must have at least one dimension");
        }
        int ax = Math.floorMod(axis, rank);
        long[] xd = x.dims();
        long[] id = index.dims();
        if (id.length != rank) {
            id = alignedIndexShape(xd, id);
        }
        if (index.dtype() == DType.BOOL) {
            throw new IllegalArgumentException("pick/gather: indices must be numbers, got " + index.describe());
        }
        for (int d = 0; d < rank; d++) {
            if (d != ax && id[d] > xd[d]) {
                throw new IllegalArgumentException("pick/gather: index shape " + Arrays.toString(id) + " exceeds "
                        + x.describe() + " in dimension " + d);
            }
        }
        long[] strides = dev.cortado.tensor.Shape.of(xd).contiguousStrides();
        Tensor lin;
        try (Tensor shaped = index.reshape(id); Tensor i64 = shaped.to(DType.INT64)) {
            lin = i64.mul((double) strides[ax]);
        }
        for (int d = 0; d < rank; d++) {
            if (d == ax || id[d] == 1) {
                continue;
            }
            long[] ones = new long[rank];
            Arrays.fill(ones, 1);
            ones[d] = id[d];
            try (Tensor r = Tensor.arange(0, id[d], 1, DType.INT64, x.device());
                 Tensor rs = r.reshape(ones);
                 Tensor off = rs.mul((double) strides[d]);
                 Tensor prev = lin) {
                lin = prev.add(off);
            }
        }
        try (Tensor l = lin; Tensor flat = x.reshape(-1)) {
            return Indexing.gather(flat, l, 0);
        }
    }

    private static long[] alignedIndexShape(long[] xd, long[] id) {
        for (int i = 0; i + id.length <= xd.length; i++) {
            if (Arrays.equals(Arrays.copyOfRange(xd, i, i + id.length), id)) {
                long[] out = new long[xd.length];
                Arrays.fill(out, 1);
                System.arraycopy(id, 0, out, i, id.length);
                return out;
            }
        }
        throw new IllegalArgumentException("pick/gather: index shape " + Arrays.toString(id)
                + " does not match the array's rank " + xd.length + " or a run of its dimensions " + Arrays.toString(xd));
    }

    /** numpy's tile: the whole array repeated {@code reps[i]} times along each axis. */
    static Tensor tile(Tensor x, long[] reps) {
        long[] d0 = x.dims();
        int r = Math.max(d0.length, reps.length);
        long[] d = padLeft(d0, r);
        long[] k = padLeft(reps, r);
        long[] inter = new long[2 * r];
        long[] exp = new long[2 * r];
        long[] out = new long[r];
        for (int i = 0; i < r; i++) {
            if (k[i] < 0) {
                throw new IllegalArgumentException("tile: negative repeat " + k[i]);
            }
            inter[2 * i] = 1;
            inter[2 * i + 1] = d[i];
            exp[2 * i] = k[i];
            exp[2 * i + 1] = d[i];
            out[i] = k[i] * d[i];
        }
        try (Tensor a = x.reshape(inter); Tensor e = a.expand(exp)) {
            return e.reshape(out);
        }
    }

    /** numpy's repeat per axis: each element repeated {@code reps[i]} times along axis i. */
    static Tensor repeat(Tensor x, long[] reps) {
        long[] d = x.dims();
        if (reps.length != d.length) {
            throw new IllegalArgumentException("repeat: " + reps.length + " repeats for an array of rank " + d.length);
        }
        int r = d.length;
        long[] inter = new long[2 * r];
        long[] exp = new long[2 * r];
        long[] out = new long[r];
        for (int i = 0; i < r; i++) {
            if (reps[i] < 0) {
                throw new IllegalArgumentException("repeat: negative repeat " + reps[i]);
            }
            inter[2 * i] = d[i];
            inter[2 * i + 1] = 1;
            exp[2 * i] = d[i];
            exp[2 * i + 1] = reps[i];
            out[i] = reps[i] * d[i];
        }
        try (Tensor a = x.reshape(inter); Tensor e = a.expand(exp)) {
            return e.reshape(out);
        }
    }

    private static long[] padLeft(long[] v, int n) {
        long[] out = new long[n];
        Arrays.fill(out, 1);
        System.arraycopy(v, 0, out, n - v.length, v.length);
        return out;
    }
}
