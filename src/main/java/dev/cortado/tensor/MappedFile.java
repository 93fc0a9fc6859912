package dev.cortado.tensor;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Objects;

/**
 * A file mapped read-only into host memory ({@code mmap}), whose regions are host tensors with no
 * copy: their storage points into the mapping, pages are read from the page cache on first touch,
 * and processes mapping the same file share those pages.
 *
 * <pre>{@code
 * try (MappedFile file = MappedFile.map(path)) {
 *     Tensor w = file.tensor(4096, DType.FLOAT32, 384, 384);   // bytes 4096.. of the file
 *     ...                                                     // w stays valid after file.close()
 * }
 * }</pre>
 *
 * <p>The mapping is reference counted like any storage: this object holds one reference and every
 * tensor made from it another, so it is unmapped deterministically, when this object and the last
 * of those tensors are closed, never by the garbage collector. The tensors are read-only by
 * contract: the mapping is private and read-only, so a write into one faults (do not pass them as
 * the output of an op).
 */
public final class MappedFile implements AutoCloseable {
    private final Path path;
    private final Tensor whole;

    private MappedFile(Path path, Tensor whole) {
        this.path = path;
        this.whole = whole;
    }

    /**
     * Maps all of {@code file} read-only.
     *
     * @throws IOException when the file is missing, empty, not a regular file or cannot be mapped
     */
    public static MappedFile map(Path file) throws IOException {
        Objects.requireNonNull(file, "file");
        long[] mapping;
        try {
            mapping = Device.CPU.backend().mapFile(file);
        } catch (IllegalArgumentException e) {
            throw new IOException("cannot map " + file + ": " + e.getMessage(), e);
        }
        long address = mapping[0];
        long length = mapping[1];
        Storage storage = Storage.external(Device.CPU, address, length,
                s -> s.backend().unmapFile(address, length));
        return new MappedFile(file, Tensor.over(storage, DType.UINT8, Shape.of(length)));
    }

    /** The mapped file. */
    public Path path() {
        return path;
    }

    /** The file's size in bytes. */
    public long size() {
        return whole.numel();
    }

    /**
     * A host tensor of {@code dtype} and {@code dims}, contiguous, over the file's bytes from
     * {@code byteOffset} (a multiple of the dtype's element size). It keeps the mapping alive
     * until it is closed.
     *
     * @throws IllegalArgumentException when the region does not lie inside the file or the
     *                                  offset is not aligned to the element size
     */
    public Tensor tensor(long byteOffset, DType dtype, long... dims) {
        Shape shape = Shape.of(dims);
        long bytes = dtype.bytesFor(shape.numel());
        if (byteOffset < 0 || byteOffset > size() || bytes > size() - byteOffset) {
            throw new IllegalArgumentException("region of " + bytes + " bytes at offset " + byteOffset
                    + " (" + dtype + shape + ") is outside the " + size() + " bytes of " + path);
        }
        if (dtype.isPacked() || byteOffset % dtype.bytesFor(1) != 0) {
            throw new IllegalArgumentException("offset " + byteOffset + " of " + dtype + shape + " in " + path
                    + " is not a whole number of elements (or the dtype is packed)");
        }
        return whole.asStrided(dtype, shape, shape.contiguousStrides(), byteOffset / dtype.bytesFor(1));
    }

    /** Drops this object's reference: the file is unmapped once the tensors made from it are closed too. */
    @Override
    public void close() {
        if (!whole.isClosed()) {
            whole.close();
        }
    }
}
