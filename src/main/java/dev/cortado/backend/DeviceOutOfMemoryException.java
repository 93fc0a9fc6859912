package dev.cortado.backend;

/**
 * A device (or the host) could not provide memory, even after the caching allocator released
 * its cache. The message carries the request and the allocator's statistics.
 */
public final class DeviceOutOfMemoryException extends RuntimeException {
    private final long requestedBytes;

    public DeviceOutOfMemoryException(String message, long requestedBytes) {
        super(message);
        this.requestedBytes = requestedBytes;
    }

    public long requestedBytes() {
        return requestedBytes;
    }
}
