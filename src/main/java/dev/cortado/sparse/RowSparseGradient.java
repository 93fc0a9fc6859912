package dev.cortado.sparse;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Indexing;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * The gradient of an embedding table [numRows, dim] that touches only some rows: {@code rows}
 * (int64 [n], strictly increasing, each in [0, numRows)) and {@code values} [n, dim], the
 * gradient of those rows; every other row's gradient is zero. Coalesced: a row appears once, the
 * gradients of its occurrences summed ({@link #coalesce}). Produced by
 * {@link dev.cortado.nn.EmbeddingBag} in sparse mode, consumed by {@link RowSparseOptimizer}.
 * Owns its tensors.
 */
public final class RowSparseGradient implements AutoCloseable {
    private final Tensor rows;
    private final Tensor values;
    private final long numRows;

    private RowSparseGradient(Tensor rows, Tensor values, long numRows) {
        this.rows = rows;
        this.values = values;
        this.numRows = numRows;
    }

    /**
     * Sums the gradient rows {@code grads} [k, dim] of the occurrences {@code indices} (int64 [k],
     * any order, repeats allowed) of a table with {@code numRows} rows. The indices are read on the
     * host (O(k log k) sort); the sum runs on the gradients' device ({@code index_add}).
     */
    public static RowSparseGradient coalesce(Tensor indices, Tensor grads, long numRows) {
        if (indices.dtype() != DType.INT64 || indices.rank() != 1 || grads.rank() != 2
                || grads.size(0) != indices.size(0) || !grads.dtype().isFloatingPoint()) {
            throw new IllegalArgumentException("RowSparseGradient.coalesce: need int64 indices [k] and float gradients"
                    + " [k, dim], got indices " + indices.describe() + ", gradients " + grads.describe());
        }
        long[] idx = indices.toLongArray();
        for (int i = 0; i < idx.length; i++) {
            if (idx[i] < 0 || idx[i] >= numRows) {
                throw new IndexOutOfBoundsException("RowSparseGradient.coalesce: indices[" + i + "] = " + idx[i]
                        + " is outside [0, " + numRows + ")");
            }
        }
        long[] unique = Arrays.stream(idx).sorted().distinct().toArray();
        long[] slot = new long[idx.length];
        for (int i = 0; i < idx.length; i++) {
            slot[i] = Arrays.binarySearch(unique, idx[i]);
        }
        try (Scope d = Scope.detached(); var ng = Autograd.noGrad();
             Tensor slots = onDevice(slot, grads)) {
            Tensor rows = onDevice(unique, grads);
            Tensor values = Indexing.indexAdd(unique.length, 0, slots, grads);
            return new RowSparseGradient(rows, values, numRows);
        }
    }

    /** int64 [v.length] on {@code like}'s device. */
    private static Tensor onDevice(long[] v, Tensor like) {
        Tensor host = Tensor.of(v, v.length);
        if (host.device().equals(like.device())) {
            return host;
        }
        try (host) {
            return host.to(like.device());
        }
    }

    /** The touched rows, int64 [n], strictly increasing. */
    public Tensor rows() {
        return rows;
    }

    /** Their gradients [n, dim]. */
    public Tensor values() {
        return values;
    }

    public long numRows() {
        return numRows;
    }

    /** How many rows are touched. */
    public long count() {
        return rows.numel();
    }

    /** The dense gradient [numRows, dim] (zeros in untouched rows); the caller owns it. */
    public Tensor toDense() {
        try (Scope d = Scope.detached(); var ng = Autograd.noGrad()) {
            return Indexing.indexAdd(numRows, 0, rows, values);
        }
    }

    @Override
    public void close() {
        rows.close();
        values.close();
    }
}
