package dev.cortado.backend.kernels;

import dev.cortado.backend.BackendUnavailableException;
import dev.cortado.backend.CudaException;
import dev.cortado.backend.DeviceOutOfMemoryException;

/**
 * Turns the int status of a native call into the Java exception that fits it. The native
 * library's own message (thread-local, read right after the failed call) is combined with the
 * op's name and the Java-side description of its arguments.
 */
public final class NativeStatus {
    public static final int OK = NativeCodes.OK;
    public static final int INVALID_ARG = NativeCodes.ERR_INVALID_ARG;
    public static final int UNSUPPORTED = NativeCodes.ERR_UNSUPPORTED;
    public static final int OUT_OF_MEMORY = NativeCodes.ERR_OUT_OF_MEMORY;
    public static final int INDEX_OUT_OF_RANGE = NativeCodes.ERR_INDEX_OUT_OF_RANGE;
    public static final int CUDA_ERROR = NativeCodes.ERR_CUDA;
    public static final int NOT_BUILT = NativeCodes.ERR_NOT_BUILT;

    private NativeStatus() {
    }

    /** Builds the exception for a failed call; {@code context} names the op and its arguments. */
    public static RuntimeException toException(int status, String nativeMessage, String context) {
        String message = context + ": " + nativeMessage;
        return switch (status) {
            case INVALID_ARG -> new IllegalArgumentException(message);
            case UNSUPPORTED -> new UnsupportedOperationException(message);
            case OUT_OF_MEMORY -> new DeviceOutOfMemoryException(message, -1);
            case INDEX_OUT_OF_RANGE -> new IndexOutOfBoundsException(message);
            case NOT_BUILT -> new BackendUnavailableException(message);
            case CUDA_ERROR -> new CudaException(message);
            default -> new IllegalStateException(message + " (native status " + status + ")");
        };
    }
}
