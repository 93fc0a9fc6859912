package dev.cortado.tensor;

import dev.cortado.backend.Backend;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A block of device or host memory shared by a tensor and its views. Reference counted: each
 * tensor holding it owns one reference; the memory returns to the backend when the last one is
 * released (explicitly by close(), by a scope, or by the Cleaner safety net).
 */
final class Storage {
    final Device device;
    final long address;
    final long bytes;
    private final Backend backend;
    private final AtomicInteger references = new AtomicInteger(1);

    private Storage(Device device, Backend backend, long address, long bytes) {
        this.device = device;
        this.backend = backend;
        this.address = address;
        this.bytes = bytes;
    }

    static Storage allocate(Device device, long bytes) {
        Backend backend = device.backend();
        long address = backend.allocate(device, bytes);
        return new Storage(device, backend, address, bytes);
    }

    Backend backend() {
        return backend;
    }

    int references() {
        return references.get();
    }

    void retain() {
        int before = references.getAndIncrement();
        if (before <= 0) {
            references.decrementAndGet();
            throw new IllegalStateException("storage of " + bytes + " bytes on " + device + " was already freed");
        }
    }

    void release() {
        int after = references.decrementAndGet();
        if (after == 0) {
            backend.free(device, address, bytes);
        } else if (after < 0) {
            throw new IllegalStateException("storage on " + device + " released more often than retained");
        }
    }
}
