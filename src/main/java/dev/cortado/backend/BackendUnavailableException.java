package dev.cortado.backend;

/** A backend was asked for work on a machine where it cannot run (no GPU, no driver, no CUDA build). */
public final class BackendUnavailableException extends RuntimeException {
    public BackendUnavailableException(String message) {
        super(message);
    }

    public BackendUnavailableException(String message, Throwable cause) {
        super(message, cause);
    }
}
