package dev.cortado.nn;

import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/** Merges dimensions startDim..endDim into one (default 1..-1: [N, ...] to [N, rest]); a view when possible. */
public class Flatten extends Module {
    private final int startDim;
    private final int endDim;

    public Flatten() {
        this(1, -1);
    }

    public Flatten(int startDim, int endDim) {
        this.startDim = startDim;
        this.endDim = endDim;
    }

    @Override
    public Tensor forward(Tensor x) {
        int r = x.rank();
        if (r == 0) {
            return x.reshape(1);
        }
        int s = Shape.normalize(startDim, r);
        int e = Shape.normalize(endDim, r);
        if (s > e) {
            throw new IllegalArgumentException("Flatten: start " + startDim + " is after end " + endDim + " for "
                    + x.describe());
        }
        long[] d = x.dims();
        long[] out = new long[r - (e - s)];
        long merged = 1;
        for (int i = s; i <= e; i++) {
            merged *= d[i];
        }
        System.arraycopy(d, 0, out, 0, s);
        out[s] = merged;
        System.arraycopy(d, e + 1, out, s + 1, r - e - 1);
        return x.reshape(out);
    }

    @Override
    protected String extraRepr() {
        return "start=" + startDim + ", end=" + endDim;
    }
}
