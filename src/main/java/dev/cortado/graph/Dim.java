package dev.cortado.graph;

/**
 * One dimension of a value's shape: a static size, or a linear form {@code scale * S + offset} of
 * a symbol {@code S} (such as {@code B}, a batch size) together with its size in this
 * specialization. Inputs get symbols from {@link CompileOptions.Builder#dynamicDim}; capture finds
 * the forms of every other dimension (see {@link CompiledFunction}), so that a graph prints
 * {@code float32[B, 1568]} or {@code float32[4*B, 64]} and a new value of the symbol is planned
 * without running the function again.
 *
 * @param size   the size in this specialization
 * @param symbol the symbol, or null for a static dimension
 * @param scale  the symbol's coefficient (0 when static)
 * @param offset the constant term (the size when static)
 */
public record Dim(long size, String symbol, long scale, long offset) {

    public Dim {
        if (size < 0) {
            throw new IllegalArgumentException("negative dimension size " + size);
        }
        if (symbol == null ? scale != 0 || offset != size : symbol.isEmpty() || scale == 0) {
            throw new IllegalArgumentException("inconsistent dimension: size " + size + ", symbol " + symbol
                    + ", scale " + scale + ", offset " + offset);
        }
    }

    public static Dim of(long size) {
        return new Dim(size, null, 0, size);
    }

    /** The symbol itself, of size {@code size} here. */
    public static Dim symbolic(String symbol, long size) {
        return new Dim(size, symbol, 1, 0);
    }

    /** {@code scale * symbol + offset} where the symbol is {@code value} (a static dimension when scale is 0). */
    public static Dim linear(String symbol, long scale, long offset, long value) {
        long size = scale * value + offset;
        return scale == 0 ? of(size) : new Dim(size, symbol, scale, offset);
    }

    public boolean isSymbolic() {
        return symbol != null;
    }

    /** This dimension where its symbol is {@code value} (static dimensions are unchanged). */
    public Dim at(long value) {
        return symbol == null ? this : linear(symbol, scale, offset, value);
    }

    /** {@code 784}, {@code B}, {@code 4*B}, {@code B+1}. */
    @Override
    public String toString() {
        if (symbol == null) {
            return Long.toString(size);
        }
        String s = scale == 1 ? symbol : scale == -1 ? "-" + symbol : scale + "*" + symbol;
        return offset == 0 ? s : offset > 0 ? s + "+" + offset : s + offset;
    }
}
