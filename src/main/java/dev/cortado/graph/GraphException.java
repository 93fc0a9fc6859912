package dev.cortado.graph;

/** A graph breaks one of the rules of {@link Verifier} (the message names the node and the value). */
public class GraphException extends RuntimeException {
    public GraphException(String message) {
        super(message);
    }
}
