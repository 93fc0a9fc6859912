package dev.cortado.io;

import dev.cortado.tensor.Tensor;
import java.util.Objects;

/**
 * A mini-batch from a {@link DataLoader}: the inputs and the targets of {@link #size()} examples,
 * stacked along a new leading dimension into contiguous tensors on the loader's device.
 *
 * <p>The caller owns both tensors: close the batch ({@code try (batch) { ... }}), or open a
 * {@link dev.cortado.tensor.Scope} around the loop body; the loader hands its batches over on the
 * consuming thread so that they belong to that thread's current scope.
 *
 * @param index the batch's position within its epoch (0, 1, ...)
 */
public record Batch(Tensor input, Tensor target, int index) implements AutoCloseable {
    public Batch {
        Objects.requireNonNull(input, "input");
        Objects.requireNonNull(target, "target");
    }

    /** Number of examples (the leading dimension). */
    public int size() {
        return (int) input.size(0);
    }

    @Override
    public void close() {
        try {
            input.close();
        } finally {
            target.close();
        }
    }
}
