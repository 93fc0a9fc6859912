package dev.cortado.graph;

/**
 * A graph-to-graph transformation. A pass returns a new graph computing the same outputs from the
 * same inputs (the caller closes both); it never modifies its argument. Each pass is checked in the
 * tests by running the optimized and the unoptimized graph on random inputs and comparing, and by
 * the {@link Verifier}.
 */
public interface Pass {
    /** A short name for logs and the text form ({@code dce}, {@code cse}). */
    String name();

    Graph apply(Graph g);
}
