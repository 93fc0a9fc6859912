package dev.cortado.ops.opinfo;

import dev.cortado.tensor.DType;
import dev.cortado.testing.Reference;
import java.util.Random;

/** Random sample values for the catalogue: fresh uniform values (never an all-zero tensor), ints, bools. */
final class Gen {
    private Gen() {
    }

    /** Uniform in [lo, hi] as an input of {@code t}. */
    static Arg ur(Random r, DType t, double lo, double hi, long... dims) {
        return Arg.of(Reference.uniform(r, (int) Reference.numel(dims), lo, hi), t, dims);
    }

    /** Uniform in [-1, 1]. */
    static Arg u(Random r, DType t, long... dims) {
        return ur(r, t, -1, 1, dims);
    }

    /** Multiples of 0.5 in [lo, hi]: comparisons see ties. */
    static Arg grid(Random r, DType t, double lo, double hi, long... dims) {
        return Arg.of(Reference.grid(r, (int) Reference.numel(dims), lo, hi), t, dims);
    }

    static Arg bools(Random r, long... dims) {
        int n = (int) Reference.numel(dims);
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = r.nextBoolean() ? 1 : 0;
        }
        return new Arg(d, dims, DType.BOOL, false, false, true);
    }

    /** int64 indices in [0, bound). */
    static Arg indices(Random r, long bound, long... dims) {
        long[] v = new long[(int) Reference.numel(dims)];
        for (int i = 0; i < v.length; i++) {
            v[i] = (long) (r.nextDouble() * bound);
        }
        return Arg.index(v, dims);
    }

    static int prod(long[] d) {
        return (int) Reference.numel(d);
    }
}
