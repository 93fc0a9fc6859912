package dev.cortado.tensor;

import dev.cortado.backend.Backend;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A block of device or host memory shared by a tensor and its views. Reference counted: each
 * tensor holding it owns one reference; the memory returns to the backend when the last one is
 * released (explicitly by close(), by a scope, or by the Cleaner safety net).
 *
 * <p>Memory the backend did not allocate for this storage alone (a slice of a {@link MemoryPattern}
 * arena, a region of a {@link MappedFile}) has a {@link Releaser} instead: the last release calls
 * it rather than {@code backend.free}. Allocations go through {@link #allocate}, where a
 * {@link MemoryPattern} recording or replay on the calling thread sees them.
 */
final class Storage {
    /** What frees memory the backend did not allocate for this storage alone. */
    @FunctionalInterface
    interface Releaser {
        void released(Storage storage);
    }

    /** Sees every allocation of the thread while installed (a {@link MemoryPattern} recording or replay). */
    interface Interceptor {
        /** The storage for {@code bytes} on {@code device}, or null to allocate it from the backend as usual. */
        Storage allocate(Device device, long bytes);
    }

    private static final ThreadLocal<Interceptor> INTERCEPTOR = new ThreadLocal<>();
    /** Storages allocated from a backend since the class loaded ({@link MemoryPattern#storageAllocations()}). */
    static final java.util.concurrent.atomic.LongAdder FROM_BACKEND = new java.util.concurrent.atomic.LongAdder();

    final Device device;
    final long address;
    final long bytes;
    private final Backend backend;
    private final Releaser releaser;
    private final AtomicInteger references = new AtomicInteger(1);

    private Storage(Device device, Backend backend, long address, long bytes, Releaser releaser) {
        this.device = device;
        this.backend = backend;
        this.address = address;
        this.bytes = bytes;
        this.releaser = releaser;
    }

    static Storage allocate(Device device, long bytes) {
        Interceptor interceptor = INTERCEPTOR.get();
        if (interceptor != null) {
            Storage s = interceptor.allocate(device, bytes);
            if (s != null) {
                return s;
            }
        }
        return fromBackend(device, bytes, null);
    }

    /** Memory from the backend, bypassing any interceptor; {@code releaser} (if not null) is told when it is freed. */
    static Storage fromBackend(Device device, long bytes, Releaser releaser) {
        Backend backend = device.backend();
        long address = backend.allocate(device, bytes);
        FROM_BACKEND.increment();
        return new Storage(device, backend, address, bytes, releaser == null ? null : s -> {
            backend.free(device, address, bytes);
            releaser.released(s);
        });
    }

    /** Memory owned by someone else ({@code releaser} is called once, when the last reference goes). */
    static Storage external(Device device, long address, long bytes, Releaser releaser) {
        return new Storage(device, device.backend(), address, bytes, releaser);
    }

    /** Installs {@code interceptor} on this thread (null: none); returns the one it replaces. */
    static Interceptor intercept(Interceptor interceptor) {
        Interceptor before = INTERCEPTOR.get();
        if (interceptor == null) {
            INTERCEPTOR.remove();
        } else {
            INTERCEPTOR.set(interceptor);
        }
        return before;
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
            if (releaser != null) {
                releaser.released(this);
            } else {
                backend.free(device, address, bytes);
            }
        } else if (after < 0) {
            throw new IllegalStateException("storage on " + device + " released more often than retained");
        }
    }
}
