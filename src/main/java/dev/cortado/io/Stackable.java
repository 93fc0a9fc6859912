package dev.cortado.io;

import dev.cortado.tensor.DType;

/**
 * The fast path of {@link DataLoader}: a dataset whose examples lie in contiguous host memory and
 * can be copied straight into a batch, with no per-example tensor objects.
 */
interface Stackable {
    DType inputType();

    /** Shape of one example's input. */
    long[] inputShape();

    DType targetType();

    long[] targetShape();

    /** Copies example {@code index}'s input bytes to host memory at {@code dst}. */
    void copyInput(int index, long dst);

    void copyTarget(int index, long dst);
}
