package dev.cortado.graph;

/** A compiled function was called with inputs its captured graph does not apply to (the message names the guard). */
public class GuardFailedException extends RuntimeException {
    public GuardFailedException(String message) {
        super(message);
    }
}
