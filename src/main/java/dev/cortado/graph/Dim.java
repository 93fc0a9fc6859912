package dev.cortado.graph;

/**
 * One dimension of a value's shape: a static size, or a symbol (such as {@code B}, a batch size)
 * with the size it had when the graph was captured. A graph is specialized to the sizes it was
 * captured with; a symbol marks a dimension that is expected to change, so that a change of it
 * re-captures instead of failing (see {@link CompileOptions#dynamicDim}).
 *
 * @param size   the size (for a symbol: its size in this specialization)
 * @param symbol the symbol's name, or null for a static dimension
 */
public record Dim(long size, String symbol) {

    public Dim {
        if (size < 0) {
            throw new IllegalArgumentException("negative dimension size " + size);
        }
        if (symbol != null && symbol.isEmpty()) {
            throw new IllegalArgumentException("empty symbol name");
        }
    }

    public static Dim of(long size) {
        return new Dim(size, null);
    }

    public static Dim symbolic(String symbol, long size) {
        return new Dim(size, symbol);
    }

    public boolean isSymbolic() {
        return symbol != null;
    }

    /** {@code 784}, or {@code B} for a symbol. */
    @Override
    public String toString() {
        return symbol != null ? symbol : Long.toString(size);
    }
}
