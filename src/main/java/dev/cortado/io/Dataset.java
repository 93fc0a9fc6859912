package dev.cortado.io;

/**
 * A finite, indexed collection of examples: {@link #size()} of them, read by index in any order
 * and from any thread (the {@link DataLoader} reads from its prefetch thread).
 *
 * <p>When {@code T} holds tensors (as {@link Example} does), each {@link #get} returns new tensor
 * objects (usually views of the dataset's own storage) that the caller closes; the dataset keeps
 * its own storage alive until it is closed itself.
 *
 * @param <T> the type of one example
 */
public interface Dataset<T> {

    /** Number of examples. */
    int size();

    /** The example at {@code index}, in {@code [0, size())}; owned by the caller. */
    T get(int index);

    /** Throws {@link IndexOutOfBoundsException} naming the dataset unless {@code 0 <= index < size}. */
    static int checkIndex(int index, int size, String what) {
        if (index < 0 || index >= size) {
            throw new IndexOutOfBoundsException(what + ": index " + index + " is outside [0, " + size + ")");
        }
        return index;
    }
}
