package dev.cortado.tensor;

import java.util.Arrays;

/** An immutable tensor shape. Sizes are non-negative; rank 0 is a scalar with one element. */
public final class Shape {
    public static final Shape SCALAR = new Shape(new long[0]);

    private final long[] dims;
    private final long numel;

    private Shape(long[] dims) {
        long n = 1;
        for (int i = 0; i < dims.length; i++) {
            if (dims[i] < 0) {
                throw new IllegalArgumentException("negative size " + dims[i] + " in dimension " + i
                        + " of shape " + Arrays.toString(dims));
            }
            if (dims[i] != 0 && n > Long.MAX_VALUE / dims[i]) {
                // keep checking for a later 0 or negative size: [2^40, 2^40, 0] is a valid empty shape
                n = overflow(dims, i);
                break;
            }
            n *= dims[i];
        }
        this.dims = dims;
        this.numel = n;
    }

    /** 0 when a size from {@code at} on is 0 (the product is then 0); else throws for a negative size or the overflow. */
    private static long overflow(long[] dims, int at) {
        boolean empty = false;
        for (int i = at; i < dims.length; i++) {
            if (dims[i] < 0) {
                throw new IllegalArgumentException("negative size " + dims[i] + " in dimension " + i
                        + " of shape " + Arrays.toString(dims));
            }
            empty |= dims[i] == 0;
        }
        if (empty) {
            return 0;
        }
        throw new IllegalArgumentException("shape " + Arrays.toString(dims) + " has more than 2^63 - 1 elements");
    }

    public static Shape of(long... dims) {
        return new Shape(dims.clone());
    }

    public static Shape of(int... dims) {
        long[] d = new long[dims.length];
        for (int i = 0; i < dims.length; i++) {
            d[i] = dims[i];
        }
        return new Shape(d);
    }

    /** Shape from an array the caller will not modify afterwards (no copy). */
    static Shape wrap(long[] dims) {
        return new Shape(dims);
    }

    public int rank() {
        return dims.length;
    }

    public long size(int dim) {
        return dims[normalize(dim, dims.length)];
    }

    public long numel() {
        return numel;
    }

    /** Product of the sizes before dimension {@code axis} (the "outer" count of an axis-wise kernel). */
    public long sizeBefore(int axis) {
        long n = 1;
        for (int d = 0; d < axis && d < dims.length; d++) {
            n *= dims[d];
        }
        return n;
    }

    /** Product of the sizes after dimension {@code axis} (the "inner" stride of an axis-wise kernel). */
    public long sizeAfter(int axis) {
        long n = 1;
        for (int d = axis + 1; d < dims.length; d++) {
            n *= dims[d];
        }
        return n;
    }

    public long[] toArray() {
        return dims.clone();
    }

    /** The dims without copying; callers must not modify the array. */
    long[] raw() {
        return dims;
    }

    /** Row-major (C order) strides for this shape. */
    public long[] contiguousStrides() {
        long[] strides = new long[dims.length];
        long s = 1;
        for (int i = dims.length - 1; i >= 0; i--) {
            strides[i] = s;
            s *= Math.max(dims[i], 1);
        }
        return strides;
    }

    /** NumPy broadcasting of two shapes; throws naming both shapes when they do not broadcast. */
    public static Shape broadcast(Shape a, Shape b) {
        if (a.equals(b)) {
            return a;
        }
        int rank = Math.max(a.rank(), b.rank());
        long[] out = new long[rank];
        for (int i = 0; i < rank; i++) {
            int ia = i - (rank - a.rank());
            int ib = i - (rank - b.rank());
            long da = ia >= 0 ? a.dims[ia] : 1;
            long db = ib >= 0 ? b.dims[ib] : 1;
            if (da == db || db == 1) {
                out[i] = da;
            } else if (da == 1) {
                out[i] = db;
            } else {
                throw new IllegalArgumentException("shapes " + a + " and " + b
                        + " do not broadcast (dimension " + i + ": " + da + " vs " + db + ")");
            }
        }
        return new Shape(out);
    }

    /** Normalizes a possibly negative dimension index against {@code rank}; throws if out of range. */
    public static int normalize(int dim, int rank) {
        int d = dim < 0 ? dim + rank : dim;
        if (d < 0 || d >= rank) {
            throw new IndexOutOfBoundsException("dimension " + dim + " is out of range for rank " + rank
                    + " (valid: " + (-rank) + ".." + (rank - 1) + ")");
        }
        return d;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Shape s && Arrays.equals(dims, s.dims);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(dims);
    }

    @Override
    public String toString() {
        return Arrays.toString(dims);
    }
}
