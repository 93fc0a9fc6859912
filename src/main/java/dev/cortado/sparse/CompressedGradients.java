package dev.cortado.sparse;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Indexing;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * What one worker sends in one step of sparse gradient exchange: for each gradient tensor, the
 * selected entries as {@code (values, indices)}, {@code values} of the gradient's dtype and
 * {@code indices} int64 positions in the flattened tensor (distinct, in the order top-k chose
 * them). This is the payload a data-parallel exchange carries: all-gather the parts of every
 * worker, then {@link #sum(List, double)} them into dense gradients, the same on every worker.
 *
 * <p>Owns its tensors; {@link #close()} frees them.
 */
public final class CompressedGradients implements AutoCloseable {
    /** The sent entries of gradient {@code index} (position in the compressor's parameter list). */
    public record Part(int index, Shape shape, Tensor values, Tensor indices) {
        /** How many values this part sends. */
        public long count() {
            return values.numel();
        }
    }

    private final List<Part> parts;
    private final long denseValues;
    private final long denseBytes;
    private boolean closed;

    CompressedGradients(List<Part> parts, long denseValues, long denseBytes) {
        this.parts = List.copyOf(parts);
        this.denseValues = denseValues;
        this.denseBytes = denseBytes;
    }

    public List<Part> parts() {
        return parts;
    }

    /** Values sent, over all tensors. */
    public long valuesSent() {
        long n = 0;
        for (Part p : parts) {
            n += p.count();
        }
        return n;
    }

    /** Values a dense exchange would send (the total size of the gradients). */
    public long denseValues() {
        return denseValues;
    }

    /**
     * Bytes on the wire: each value in its dtype plus its index as an int32 (an int64 for a
     * tensor of 2^31 elements or more).
     */
    public long bytesSent() {
        long n = 0;
        for (Part p : parts) {
            long indexBytes = p.shape().numel() >= (1L << 31) ? 8 : 4;
            n += p.count() * (p.values().dtype().byteSize() + indexBytes);
        }
        return n;
    }

    /** Bytes a dense exchange would send. */
    public long denseBytes() {
        return denseBytes;
    }

    /** Gradient {@code i} of this worker as a dense tensor (zero where nothing was sent); caller owns it. */
    public Tensor decompress(int i) {
        Part p = part(i);
        try (Scope d = Scope.detached(); var ng = Autograd.noGrad()) {
            return scatter(p);
        }
    }

    /**
     * The sum over workers of their decompressed gradients, times {@code scale} (1/W averages),
     * one dense tensor per gradient index present in the first worker's parts, in index order;
     * every worker must have compressed the same tensors. The caller owns the results.
     */
    public static List<Tensor> sum(List<CompressedGradients> workers, double scale) {
        if (workers.isEmpty()) {
            throw new IllegalArgumentException("CompressedGradients.sum: no workers");
        }
        List<Part> first = workers.get(0).parts;
        for (CompressedGradients w : workers) {
            w.ensureOpen();
            if (w.parts.size() != first.size()) {
                throw new IllegalArgumentException("CompressedGradients.sum: workers sent " + first.size() + " and "
                        + w.parts.size() + " tensors");
            }
        }
        List<Tensor> out = new ArrayList<>(first.size());
        try (Scope d = Scope.detached(); var ng = Autograd.noGrad()) {
            for (int j = 0; j < first.size(); j++) {
                Part p0 = first.get(j);
                Tensor acc = null;
                for (CompressedGradients w : workers) {
                    Part p = w.parts.get(j);
                    if (p.index() != p0.index() || !p.shape().equals(p0.shape())) {
                        throw new IllegalArgumentException("CompressedGradients.sum: part " + j + " is tensor "
                                + p.index() + " " + p.shape() + " on one worker and " + p0.index() + " " + p0.shape()
                                + " on another");
                    }
                    Tensor next = acc == null ? Indexing.indexAdd(p.shape().numel(), 0, p.indices(), p.values())
                            : Indexing.indexAdd(acc, 0, p.indices(), p.values());
                    if (acc != null) {
                        acc.close();
                    }
                    acc = next;
                }
                if (scale != 1) {
                    Tensor scaled = acc.mul(scale);
                    acc.close();
                    acc = scaled;
                }
                out.add(acc.reshape(p0.shape().toArray()));
                acc.close();
            }
        }
        return out;
    }

    private static Tensor scatter(Part p) {
        try (Tensor flat = Indexing.indexAdd(p.shape().numel(), 0, p.indices(), p.values())) {
            return flat.reshape(p.shape().toArray());
        }
    }

    private Part part(int i) {
        ensureOpen();
        for (Part p : parts) {
            if (p.index() == i) {
                return p;
            }
        }
        throw new IllegalArgumentException("CompressedGradients: no part for tensor " + i);
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("CompressedGradients: already closed");
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (Part p : parts) {
            p.values().close();
            p.indices().close();
        }
    }
}
