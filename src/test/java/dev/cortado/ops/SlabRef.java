package dev.cortado.ops;

/**
 * Float64 reference of SLAB's linear attention over logical (row-major) {@code [B, H, N, D]}
 * arrays, written the quadratic way for independence from the kernels' KV factoring: the weight of
 * key m for query n is {@code w_nm = phi(q_n) . phi(k_m)}, the output
 * {@code o_n = (sum_m w_nm v_m / N) / (sum_m w_nm / N + eps)}; the gradients follow that formula
 * term by term (dw_nm = dO_n . (v_m - o_n) / (N z_n), then through phi).
 */
public final class SlabRef {
    private SlabRef() {
    }

    /** {o} or, with dO, {o, dq, dk, dv}. */
    public static double[][] compute(double[] q, double[] k, double[] v, double[] dO, int b, int h, int n, int d,
                                     double eps) {
        int size = b * h * n * d;
        double[] o = new double[size];
        double[] dq = new double[size];
        double[] dk = new double[size];
        double[] dv = new double[size];
        for (int bh = 0; bh < b * h; bh++) {
            int base = bh * n * d;
            for (int i = 0; i < n; i++) {
                double[] w = new double[n];
                double z = eps;
                for (int m = 0; m < n; m++) {
                    double s = 0;
                    for (int c = 0; c < d; c++) {
                        s += relu(q[base + i * d + c]) * relu(k[base + m * d + c]);
                    }
                    w[m] = s;
                    z += s / n;
                }
                for (int c = 0; c < d; c++) {
                    double acc = 0;
                    for (int m = 0; m < n; m++) {
                        acc += w[m] * v[base + m * d + c] / n;
                    }
                    o[base + i * d + c] = acc / z;
                }
                if (dO == null) {
                    continue;
                }
                for (int m = 0; m < n; m++) {
                    // d o_i / d w_m = (v_m - o_i) / (N z)
                    double dw = 0;
                    for (int c = 0; c < d; c++) {
                        double g = dO[base + i * d + c];
                        dw += g * (v[base + m * d + c] - o[base + i * d + c]) / (n * z);
                        dv[base + m * d + c] += g * w[m] / (n * z);
                    }
                    for (int c = 0; c < d; c++) {
                        double qc = q[base + i * d + c];
                        double kc = k[base + m * d + c];
                        if (qc > 0) {
                            dq[base + i * d + c] += dw * relu(kc);
                        }
                        if (kc > 0) {
                            dk[base + m * d + c] += dw * relu(qc);
                        }
                    }
                }
            }
        }
        return dO == null ? new double[][] {o} : new double[][] {o, dq, dk, dv};
    }

    private static double relu(double x) {
        return x > 0 ? x : 0;
    }
}
