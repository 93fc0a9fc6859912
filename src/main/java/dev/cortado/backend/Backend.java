package dev.cortado.backend;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;

/**
 * What the tensor core needs from a device: memory, transfers and the strided copy behind
 * {@code contiguous()}, {@code to(dtype)} and views written into. Kernels of ops do not go
 * through this interface: op declarations call the binding classes of each backend directly.
 *
 * <p>Addresses are raw native addresses (host or device). Shapes and strides count elements.
 */
public interface Backend {

    /** Allocates {@code bytes} on {@code device}; throws {@link DeviceOutOfMemoryException}. */
    long allocate(Device device, long bytes);

    /** Frees memory obtained from {@link #allocate} with the same device and size. */
    void free(Device device, long address, long bytes);

    /** Copies {@code bytes} from host memory at {@code hostSrc} to {@code dst} on the device. */
    void copyFromHost(Device device, long dst, long hostSrc, long bytes);

    /** Copies {@code bytes} from {@code src} on the device to host memory at {@code hostDst}. */
    void copyToHost(Device device, long hostDst, long src, long bytes);

    /**
     * Strided copy with dtype conversion within one device: {@code dst = (dstType) src}, both
     * described by the same shape and their own element strides (0 broadcasts).
     */
    void copy(Device device, DType dstType, long dst, long[] dstStrides,
              DType srcType, long src, long[] srcStrides, long[] shape);

    /** Fills {@code count} contiguous elements with {@code value}. */
    void fill(Device device, DType type, long address, long count, double value);

    /** Unpacks {@code count} int4 values (two per byte, low nibble first) to int8. */
    void unpackInt4(Device device, long count, long packedSrc, long int8Dst);

    /** Packs {@code count} int8 values in [-8, 7] into int4 nibbles. */
    void packInt4(Device device, long count, long int8Src, long packedDst);

    /** Whether this backend can run on this machine; {@link #unavailableReason()} says why not. */
    boolean isAvailable();

    String unavailableReason();

    /**
     * Maps all of {@code file} read-only into host memory ({@code mmap}); returns its address and
     * length in bytes. Host backends only.
     *
     * @throws IllegalArgumentException when the file cannot be opened or mapped (the message says why)
     */
    default long[] mapFile(java.nio.file.Path file) {
        throw new UnsupportedOperationException("this backend does not map files");
    }

    /** Unmaps what {@link #mapFile} mapped. */
    default void unmapFile(long address, long length) {
        throw new UnsupportedOperationException("this backend does not map files");
    }
}
