package dev.cortado.graph;

/**
 * A function cannot be captured: it reads a tensor that is neither an input, a parameter nor made
 * inside it, writes into a tensor in place, calls an op with side effects or random numbers, or
 * returns something that is not a tensor of the trace. The message says what and where.
 */
public class CaptureException extends RuntimeException {
    public CaptureException(String message) {
        super(message);
    }

    public CaptureException(String message, Throwable cause) {
        super(message, cause);
    }
}
