package dev.cortado.ops;

import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Lays out operands of an elementwise kernel over one iteration shape: each operand's strides
 * are aligned to the output's rank (0 where it is broadcast), dimensions of size 1 are dropped
 * and neighbouring dimensions that are contiguous with each other in every operand are merged.
 * A contiguous add of any shape becomes one dimension of numel elements.
 */
public final class StridedPlan {
    public final int ndim;
    public final long[] shape;
    /** strides[k] are the strides of operand k (operand 0 is the output). */
    public final long[][] strides;

    private StridedPlan(int ndim, long[] shape, long[][] strides) {
        this.ndim = ndim;
        this.shape = shape;
        this.strides = strides;
    }

    /** Operands' strides broadcast to {@code out}'s shape, then coalesced. */
    public static StridedPlan of(String op, Tensor out, Tensor... inputs) {
        if (allContiguousSameShape(out, inputs)) {
            long[][] unit = new long[inputs.length + 1][];
            for (int k = 0; k < unit.length; k++) {
                unit[k] = UNIT_STRIDE;
            }
            return new StridedPlan(1, new long[] {out.numel()}, unit);
        }
        long[] dims = out.dims();
        int rank = dims.length;
        int n = inputs.length + 1;
        long[][] s = new long[n][];
        s[0] = out.strides();
        for (int k = 0; k < inputs.length; k++) {
            s[k + 1] = aligned(op, inputs[k], dims);
        }
        // Drop size-1 dimensions, then merge dimension i into i+1 where every operand allows it.
        long[] shape = new long[rank];
        long[][] st = new long[n][rank];
        int m = 0;
        for (int d = 0; d < rank; d++) {
            if (dims[d] == 1) {
                continue;
            }
            if (m > 0) {
                boolean merge = true;
                for (int k = 0; k < n && merge; k++) {
                    merge = st[k][m - 1] == s[k][d] * dims[d];
                }
                if (merge) {
                    shape[m - 1] *= dims[d];
                    for (int k = 0; k < n; k++) {
                        st[k][m - 1] = s[k][d];
                    }
                    continue;
                }
            }
            shape[m] = dims[d];
            for (int k = 0; k < n; k++) {
                st[k][m] = s[k][d];
            }
            m++;
        }
        if (m > 8) {
            throw new UnsupportedOperationException(op + ": " + m + " non-mergeable dimensions exceed the kernels' limit "
                    + "of 8 (shape " + Arrays.toString(dims) + "); make the inputs contiguous first");
        }
        return new StridedPlan(m, shape, st);
    }

    private static final long[] UNIT_STRIDE = {1};

    /** The common case: every operand has the output's shape and is contiguous — one flat loop. */
    private static boolean allContiguousSameShape(Tensor out, Tensor[] inputs) {
        if (!out.isContiguous()) {
            return false;
        }
        for (Tensor t : inputs) {
            if (!t.shape().equals(out.shape()) || !t.isContiguous()) {
                return false;
            }
        }
        return true;
    }

    /** {@code t}'s strides for iterating over {@code dims} (t broadcast to it). */
    private static long[] aligned(String op, Tensor t, long[] dims) {
        long[] tDims = t.dims();
        long[] tStrides = t.strides();
        int rank = dims.length;
        long[] out = new long[rank];
        int offset = rank - tDims.length;
        if (offset < 0) {
            throw new IllegalArgumentException(op + ": " + t.describe() + " has more dimensions than the result "
                    + Shape.of(dims));
        }
        for (int d = 0; d < tDims.length; d++) {
            long want = dims[d + offset];
            if (tDims[d] == want) {
                out[d + offset] = want == 1 ? 0 : tStrides[d];
            } else if (tDims[d] == 1) {
                out[d + offset] = 0;
            } else {
                throw new IllegalArgumentException(op + ": " + t.describe() + " does not broadcast to " + Shape.of(dims));
            }
        }
        return out;
    }
}
