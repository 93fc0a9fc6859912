package dev.cortado.ops;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;

/**
 * Float64 references of the sparse family (written from the definitions, row by row, with no
 * shared code with the kernels) and random CSR / N:M patterns for the samples and tests.
 */
public final class SparseRef {
    private SparseRef() {
    }

    /** A CSR pattern: row pointers and sorted, distinct column indices per row. */
    public record Pattern(int rows, int cols, long[] crow, long[] col) {
        public int nnz() {
            return col.length;
        }

        public int rowOf(int e) {
            int r = 0;
            while (crow[r + 1] <= e) {
                r++;
            }
            return r;
        }

        public double[] crowValues() {
            return Arrays.stream(crow).asDoubleStream().toArray();
        }

        public double[] colValues() {
            return Arrays.stream(col).asDoubleStream().toArray();
        }
    }

    /** Each entry kept with probability {@code density}; row {@code emptyRow} (if in range) left empty. */
    public static Pattern pattern(Random r, int rows, int cols, double density, int emptyRow) {
        long[] crow = new long[rows + 1];
        List<Long> col = new ArrayList<>();
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) {
                if (i != emptyRow && r.nextDouble() < density) {
                    col.add((long) j);
                }
            }
            crow[i + 1] = col.size();
        }
        return new Pattern(rows, cols, crow, col.stream().mapToLong(Long::longValue).toArray());
    }

    /** The pattern of a sample from its crow and col inputs (stored values). */
    public static Pattern pattern(double[] crow, double[] col, int cols) {
        return new Pattern(crow.length - 1, cols, Arrays.stream(crow).mapToLong(d -> (long) d).toArray(),
                Arrays.stream(col).mapToLong(d -> (long) d).toArray());
    }

    /** C = A b, b [cols, n] row-major. */
    public static double[] spmm(Pattern p, double[] v, double[] b, int n) {
        double[] c = new double[p.rows() * n];
        for (int i = 0; i < p.rows(); i++) {
            for (long e = p.crow()[i]; e < p.crow()[i + 1]; e++) {
                for (int j = 0; j < n; j++) {
                    c[i * n + j] += v[(int) e] * b[(int) p.col()[(int) e] * n + j];
                }
            }
        }
        return c;
    }

    /** C = A^T b, b [rows, n]. */
    public static double[] spmmT(Pattern p, double[] v, double[] b, int n) {
        double[] c = new double[p.cols() * n];
        for (int i = 0; i < p.rows(); i++) {
            for (long e = p.crow()[i]; e < p.crow()[i + 1]; e++) {
                for (int j = 0; j < n; j++) {
                    c[(int) p.col()[(int) e] * n + j] += v[(int) e] * b[i * n + j];
                }
            }
        }
        return c;
    }

    /** out[e] = x[row(e)] . y[col(e)], x [rows, d], y [cols, d]. */
    public static double[] sddmm(Pattern p, double[] x, double[] y, int d) {
        double[] out = new double[p.nnz()];
        for (int i = 0; i < p.rows(); i++) {
            for (long e = p.crow()[i]; e < p.crow()[i + 1]; e++) {
                double s = 0;
                for (int j = 0; j < d; j++) {
                    s += x[i * d + j] * y[(int) p.col()[(int) e] * d + j];
                }
                out[(int) e] = s;
            }
        }
        return out;
    }

    public static double[] softmax(long[] crow, double[] x) {
        double[] y = new double[x.length];
        for (int i = 0; i + 1 < crow.length; i++) {
            double m = Double.NEGATIVE_INFINITY;
            for (long e = crow[i]; e < crow[i + 1]; e++) {
                m = Math.max(m, x[(int) e]);
            }
            double s = 0;
            for (long e = crow[i]; e < crow[i + 1]; e++) {
                s += Math.exp(x[(int) e] - m);
            }
            for (long e = crow[i]; e < crow[i + 1]; e++) {
                y[(int) e] = Math.exp(x[(int) e] - m) / s;
            }
        }
        return y;
    }

    public static double[] softmaxBackward(long[] crow, double[] y, double[] dy) {
        double[] dx = new double[y.length];
        for (int i = 0; i + 1 < crow.length; i++) {
            double s = 0;
            for (long e = crow[i]; e < crow[i + 1]; e++) {
                s += y[(int) e] * dy[(int) e];
            }
            for (long e = crow[i]; e < crow[i + 1]; e++) {
                dx[(int) e] = y[(int) e] * (dy[(int) e] - s);
            }
        }
        return dx;
    }

    /** {values, indices} of top-k along the middle axis of x [outer, len, inner]; ties to the lower index, NaN largest. */
    public static double[][] topk(double[] x, int outer, int len, int inner, int k, boolean largest) {
        double[] vals = new double[outer * k * inner];
        double[] idx = new double[outer * k * inner];
        for (int o = 0; o < outer; o++) {
            for (int i = 0; i < inner; i++) {
                final int oo = o;
                final int ii = i;
                Integer[] pos = new Integer[len];
                for (int p = 0; p < len; p++) {
                    pos[p] = p;
                }
                Comparator<Integer> byValue = (a, b) -> {
                    double va = x[(oo * len + a) * inner + ii];
                    double vb = x[(oo * len + b) * inner + ii];
                    int c = Double.compare(va, vb); // NaN above +inf
                    return largest ? -c : c;
                };
                Arrays.sort(pos, byValue.thenComparing(Comparator.naturalOrder()));
                for (int j = 0; j < k; j++) {
                    vals[(o * k + j) * inner + i] = x[(o * len + pos[j]) * inner + i];
                    idx[(o * k + j) * inner + i] = pos[j];
                }
            }
        }
        return new double[][] {vals, idx};
    }

    /** {values, meta}: per group of m the n largest |x| (ties to the lower position), in position order. */
    public static double[][] nmCompress(double[] x, int rows, int k, int n, int m) {
        int groups = rows * (k / m);
        double[] v = new double[groups * n];
        double[] meta = new double[groups * n];
        for (int g = 0; g < groups; g++) {
            final int gg = g;
            Integer[] pos = new Integer[m];
            for (int p = 0; p < m; p++) {
                pos[p] = p;
            }
            Comparator<Integer> byMagnitude = (a, b) -> -Double.compare(Math.abs(x[gg * m + a]), Math.abs(x[gg * m + b]));
            Arrays.sort(pos, byMagnitude.thenComparing(Comparator.naturalOrder()));
            Integer[] kept = Arrays.copyOf(pos, n);
            Arrays.sort(kept);
            for (int t = 0; t < n; t++) {
                v[g * n + t] = x[g * m + kept[t]];
                meta[g * n + t] = kept[t];
            }
        }
        return new double[][] {v, meta};
    }

    public static double[] nmDense(double[] v, double[] meta, int rows, int k, int n, int m) {
        double[] x = new double[rows * k];
        for (int s = 0; s < v.length; s++) {
            int g = s / n;
            x[g * m + (int) meta[s]] = v[s];
        }
        return x;
    }

    /** C = a b for dense a [rows, k], b [k, n]. */
    public static double[] matmul(double[] a, double[] b, int rows, int k, int n) {
        double[] c = new double[rows * n];
        for (int i = 0; i < rows; i++) {
            for (int t = 0; t < k; t++) {
                for (int j = 0; j < n; j++) {
                    c[i * n + j] += a[i * k + t] * b[t * n + j];
                }
            }
        }
        return c;
    }

    /** Random N:M meta: n distinct increasing positions per group. */
    public static double[] nmMeta(Random r, int rows, int k, int n, int m) {
        int groups = rows * (k / m);
        double[] meta = new double[groups * n];
        for (int g = 0; g < groups; g++) {
            List<Integer> p = new ArrayList<>();
            for (int i = 0; i < m; i++) {
                p.add(i);
            }
            java.util.Collections.shuffle(p, r);
            List<Integer> kept = new ArrayList<>(p.subList(0, n));
            kept.sort(null);
            for (int t = 0; t < n; t++) {
                meta[g * n + t] = kept.get(t);
            }
        }
        return meta;
    }

    /** The dense [rows b, cols b] matrix of a BSR pattern (over blocks) with values [nnzb, b, b]. */
    public static double[] bsrDense(Pattern p, double[] v, int b) {
        int width = p.cols() * b;
        double[] a = new double[p.rows() * b * width];
        for (int i = 0; i < p.rows(); i++) {
            for (long e = p.crow()[i]; e < p.crow()[i + 1]; e++) {
                for (int r = 0; r < b; r++) {
                    for (int q = 0; q < b; q++) {
                        a[(i * b + r) * width + (int) p.col()[(int) e] * b + q] = v[((int) e * b + r) * b + q];
                    }
                }
            }
        }
        return a;
    }

    /** The transpose of a row-major [rows, cols] matrix. */
    public static double[] transpose(double[] a, int rows, int cols) {
        double[] t = new double[a.length];
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) {
                t[j * rows + i] = a[i * cols + j];
            }
        }
        return t;
    }
}
