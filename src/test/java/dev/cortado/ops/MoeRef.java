package dev.cortado.ops;

/**
 * Float64 references of the mixture-of-experts family (shared by the OpInfo entries and
 * {@link MixtureOfExpertsTest}): plain loops written from the contract in
 * {@code native/include/cortado/moe.h}, independent of the kernels.
 */
public final class MoeRef {
    private MoeRef() {
    }

    /** {slots [T k], counts [E], load [E]}: choice-major priority, the first capacity choices of each expert kept. */
    public static long[][] route(long[] ids, int tokens, int k, int experts, long capacity) {
        long[] slots = new long[tokens * k];
        long[] load = new long[experts];
        long[] rank = new long[tokens * k];
        for (int j = 0; j < k; j++) {
            for (int t = 0; t < tokens; t++) {
                rank[t * k + j] = load[(int) ids[t * k + j]]++;
            }
        }
        long[] counts = new long[experts];
        long[] off = new long[experts + 1];
        for (int e = 0; e < experts; e++) {
            counts[e] = Math.min(load[e], capacity);
            off[e + 1] = off[e] + counts[e];
        }
        for (int i = 0; i < tokens * k; i++) {
            slots[i] = rank[i] < capacity ? off[(int) ids[i]] + rank[i] : -1;
        }
        return new long[][] {slots, counts, load};
    }

    /** buf [rows, d]: row slots[i] = w x[token of i] (w = gates[i], or 1 when gates is null), zeros elsewhere. */
    public static double[] dispatch(double[] x, double[] slots, double[] gates, int k, int d, int rows) {
        double[] buf = new double[rows * d];
        for (int i = 0; i < slots.length; i++) {
            int s = (int) slots[i];
            if (s < 0) {
                continue;
            }
            double w = gates == null ? 1 : gates[i];
            for (int c = 0; c < d; c++) {
                buf[s * d + c] = w * x[(i / k) * d + c];
            }
        }
        return buf;
    }

    /** out [T, d] = sum over the kept choices of w y[slots]. */
    public static double[] combine(double[] y, double[] slots, double[] gates, int k, int d) {
        int tokens = slots.length / Math.max(k, 1);
        double[] out = new double[tokens * d];
        for (int i = 0; i < slots.length; i++) {
            int s = (int) slots[i];
            if (s < 0) {
                continue;
            }
            double w = gates == null ? 1 : gates[i];
            for (int c = 0; c < d; c++) {
                out[(i / k) * d + c] += w * y[s * d + c];
            }
        }
        return out;
    }

    /** dgates [T k] = dout[t] . y[slots], 0 when dropped. */
    public static double[] gateGrad(double[] dout, double[] y, double[] slots, int k, int d) {
        double[] dg = new double[slots.length];
        for (int i = 0; i < slots.length; i++) {
            int s = (int) slots[i];
            if (s < 0) {
                continue;
            }
            for (int c = 0; c < d; c++) {
                dg[i] += dout[(i / k) * d + c] * y[s * d + c];
            }
        }
        return dg;
    }

    /** c [rows, n]: each expert's rows of a [rows, kk] times w[e] ([E, kk, n]; trans: [E, n, kk]); padding rows 0. */
    public static double[] grouped(double[] a, double[] w, double[] counts, int rows, int kk, int n, boolean trans) {
        double[] c = new double[rows * n];
        int r = 0;
        for (int e = 0; e < counts.length; e++) {
            for (int i = 0; i < (int) counts[e]; i++, r++) {
                for (int j = 0; j < n; j++) {
                    double acc = 0;
                    for (int q = 0; q < kk; q++) {
                        double b = trans ? w[(e * n + j) * kk + q] : w[(e * kk + q) * n + j];
                        acc += a[r * kk + q] * b;
                    }
                    c[r * n + j] = acc;
                }
            }
        }
        return c;
    }

    /** dw [E, kk, n]: dw[e] = a_e^T dc_e over each expert's rows. */
    public static double[] groupedWeightGrad(double[] a, double[] dc, double[] counts, int kk, int n) {
        double[] dw = new double[counts.length * kk * n];
        int r = 0;
        for (int e = 0; e < counts.length; e++) {
            for (int i = 0; i < (int) counts[e]; i++, r++) {
                for (int q = 0; q < kk; q++) {
                    for (int j = 0; j < n; j++) {
                        dw[(e * kk + q) * n + j] += a[r * kk + q] * dc[r * n + j];
                    }
                }
            }
        }
        return dw;
    }
}
