package dev.cortado.backend.cuda;

import dev.cortado.tensor.Device;

/**
 * A CUDA stream. Work is enqueued on the calling thread's current stream; make this one current
 * for a block with {@code try (var use = stream.use()) { ... }}.
 */
public final class CudaStream implements AutoCloseable {
    private final Device device;
    private final long handle;
    private boolean closed;

    private CudaStream(Device device, long handle) {
        this.device = device;
        this.handle = handle;
    }

    public static CudaStream create(Device device) {
        CudaBackend backend = CudaBackend.instance();
        backend.allocator(device); // checks availability and the index
        backend.activate(device.index());
        long[] out = new long[1];
        CudaBackend.check(NativeCuda.ct_cuda_stream_create(out), "cudaStreamCreate on " + device);
        return new CudaStream(device, out[0]);
    }

    public long handle() {
        return handle;
    }

    public Device device() {
        return device;
    }

    /** Makes this the current stream of the calling thread until the returned handle is closed. */
    public Use use() {
        return new Use(CudaBackend.instance().swapStream(this));
    }

    /** Restores the previously current stream when closed. */
    public static final class Use implements AutoCloseable {
        private final CudaStream previous;

        private Use(CudaStream previous) {
            this.previous = previous;
        }

        @Override
        public void close() {
            CudaBackend.instance().swapStream(previous);
        }
    }

    public void synchronize() {
        CudaBackend.check(NativeCuda.ct_cuda_stream_synchronize(handle), "cudaStreamSynchronize on " + device);
    }

    /** Makes later work on this stream wait for {@code event}. */
    public void waitFor(CudaEvent event) {
        CudaBackend.check(NativeCuda.ct_cuda_stream_wait_event(handle, event.handle()), "cudaStreamWaitEvent");
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            CudaBackend.check(NativeCuda.ct_cuda_stream_destroy(handle), "cudaStreamDestroy on " + device);
        }
    }
}
