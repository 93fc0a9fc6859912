package dev.cortado.backend.cuda;

/** A CUDA event, for ordering streams and timing work. */
public final class CudaEvent implements AutoCloseable {
    private final long handle;
    private boolean closed;

    private CudaEvent(long handle) {
        this.handle = handle;
    }

    public static CudaEvent create() {
        long[] out = new long[1];
        CudaBackend.check(NativeCuda.ct_cuda_event_create(out), "cudaEventCreate");
        return new CudaEvent(out[0]);
    }

    long handle() {
        return handle;
    }

    /** Records this event on the calling thread's current stream. */
    public void record() {
        CudaBackend.check(NativeCuda.ct_cuda_event_record(handle, CudaBackend.instance().currentStream()),
                "cudaEventRecord");
    }

    public void record(CudaStream stream) {
        CudaBackend.check(NativeCuda.ct_cuda_event_record(handle, stream.handle()), "cudaEventRecord");
    }

    public void synchronize() {
        CudaBackend.check(NativeCuda.ct_cuda_event_synchronize(handle), "cudaEventSynchronize");
    }

    /** Milliseconds between {@code start} and this event (both recorded and complete). */
    public float elapsedSince(CudaEvent start) {
        float[] ms = new float[1];
        CudaBackend.check(NativeCuda.ct_cuda_event_elapsed_ms(start.handle, handle, ms), "cudaEventElapsedTime");
        return ms[0];
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            CudaBackend.check(NativeCuda.ct_cuda_event_destroy(handle), "cudaEventDestroy");
        }
    }
}
