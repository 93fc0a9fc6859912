package dev.cortado.backend;

/** A CUDA runtime or library (cuBLAS) call failed; the message names the call and the CUDA error. */
public final class CudaException extends RuntimeException {
    public CudaException(String message) {
        super(message);
    }
}
