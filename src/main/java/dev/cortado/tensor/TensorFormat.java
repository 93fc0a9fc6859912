package dev.cortado.tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * PyTorch-style printing:
 * <pre>
 * tensor([[ 0.1000, -1.2000],
 *         [ 3.0000,  4.5000]], shape=[2, 2], dtype=float32, device=cpu)
 * </pre>
 * Past {@value #THRESHOLD} elements, each dimension longer than {@value #EDGE}*2 shows its first
 * and last {@value #EDGE} entries around "...".
 */
final class TensorFormat {
    static final int THRESHOLD = 1000;
    static final int EDGE = 3;

    private TensorFormat() {
    }

    static String format(Tensor t) {
        String suffix = "shape=" + t.shape() + ", dtype=" + t.dtype() + ", device=" + t.device() + ")";
        if (t.numel() == 0) {
            return "tensor([], " + suffix;
        }
        boolean elide = t.numel() > THRESHOLD;
        long[] dims = t.dims();
        // Which indices each dimension shows (-1 marks the "..." gap).
        List<long[]> shown = new ArrayList<>();
        for (long d : dims) {
            if (elide && d > 2 * EDGE) {
                long[] idx = new long[2 * EDGE + 1];
                for (int i = 0; i < EDGE; i++) {
                    idx[i] = i;
                    idx[EDGE + 1 + i] = d - EDGE + i;
                }
                idx[EDGE] = -1;
                shown.add(idx);
            } else {
                long[] idx = new long[(int) d];
                for (int i = 0; i < d; i++) {
                    idx[i] = i;
                }
                shown.add(idx);
            }
        }
        // Flat indices of all shown elements, in printing order.
        List<Long> flat = new ArrayList<>();
        collect(shown, dims, 0, 0, flat);
        long[] flatArr = flat.stream().mapToLong(Long::longValue).toArray();
        double[] values = t.valuesAt(flatArr);
        String[] text = formatValues(values, t.dtype());
        int width = 0;
        for (String s : text) {
            width = Math.max(width, s.length());
        }
        StringBuilder sb = new StringBuilder("tensor(");
        int[] cursor = {0};
        render(sb, shown, 0, text, width, cursor, "tensor(".length());
        return sb.append(", ").append(suffix).toString();
    }

    private static void collect(List<long[]> shown, long[] dims, int dim, long base, List<Long> out) {
        if (dim == dims.length) {
            out.add(base);
            return;
        }
        long stride = 1;
        for (int i = dim + 1; i < dims.length; i++) {
            stride *= dims[i];
        }
        for (long i : shown.get(dim)) {
            if (i >= 0) {
                collect(shown, dims, dim + 1, base + i * stride, out);
            }
        }
    }

    private static void render(StringBuilder sb, List<long[]> shown, int dim, String[] text, int width,
                               int[] cursor, int indent) {
        if (dim == shown.size()) {
            String s = text[cursor[0]++];
            sb.append(" ".repeat(width - s.length())).append(s);
            return;
        }
        sb.append('[');
        long[] idx = shown.get(dim);
        boolean last = dim == shown.size() - 1;
        for (int k = 0; k < idx.length; k++) {
            if (k > 0) {
                sb.append(',');
                if (last) {
                    sb.append(' ');
                } else {
                    sb.append("\n".repeat(shown.size() - dim - 1)).append(" ".repeat(indent + dim + 1));
                }
            }
            if (idx[k] < 0) {
                sb.append("...");
            } else {
                render(sb, shown, dim + 1, text, width, cursor, indent);
            }
        }
        sb.append(']');
    }

    private static String[] formatValues(double[] v, DType dtype) {
        String[] out = new String[v.length];
        if (dtype.isBool()) {
            for (int i = 0; i < v.length; i++) {
                out[i] = v[i] != 0 ? "True" : "False";
            }
            return out;
        }
        if (!dtype.isFloatingPoint()) {
            for (int i = 0; i < v.length; i++) {
                out[i] = Long.toString((long) v[i]);
            }
            return out;
        }
        double maxAbs = 0;
        double minAbs = Double.POSITIVE_INFINITY;
        boolean allIntegral = true;
        for (double x : v) {
            if (Double.isFinite(x)) {
                maxAbs = Math.max(maxAbs, Math.abs(x));
                if (x != 0) {
                    minAbs = Math.min(minAbs, Math.abs(x));
                }
                allIntegral &= x == Math.rint(x);
            }
        }
        boolean scientific = maxAbs >= 1e8 || (minAbs < 1e-4 && minAbs != Double.POSITIVE_INFINITY)
                || (maxAbs / Math.max(minAbs, Double.MIN_NORMAL) > 1e3 && !allIntegral && maxAbs > 1e3);
        for (int i = 0; i < v.length; i++) {
            double x = v[i];
            if (Double.isNaN(x)) {
                out[i] = "nan";
            } else if (Double.isInfinite(x)) {
                out[i] = x > 0 ? "inf" : "-inf";
            } else if (scientific) {
                out[i] = String.format(Locale.ROOT, "%.4e", x);
            } else if (allIntegral) {
                out[i] = String.format(Locale.ROOT, "%.0f.", x);
            } else {
                out[i] = String.format(Locale.ROOT, "%.4f", x);
            }
        }
        return out;
    }
}
