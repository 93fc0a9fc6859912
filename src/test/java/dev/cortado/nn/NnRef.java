package dev.cortado.nn;

/**
 * Independent float64 references for the nn tests: plain loops over row-major arrays, no
 * Cortado op involved.
 */
final class NnRef {
    private NnRef() {
    }

    /** y[r, o] = sum_i x[r, i] w[o, i] + b[o]; x has rows*in values. */
    static double[] linear(double[] x, int in, double[] w, double[] b, int out) {
        int rows = x.length / in;
        double[] y = new double[rows * out];
        for (int r = 0; r < rows; r++) {
            for (int o = 0; o < out; o++) {
                double s = b == null ? 0 : b[o];
                for (int i = 0; i < in; i++) {
                    s += x[r * in + i] * w[o * in + i];
                }
                y[r * out + o] = s;
            }
        }
        return y;
    }

    /** NCHW convolution with stride, symmetric padding, dilation and groups; returns [N, K, OH, OW]. */
    static double[] conv2d(double[] x, int n, int c, int h, int w, double[] wt, double[] b, int k, int kh, int kw,
                           int stride, int pad, int dil, int groups, int[] outHW) {
        int oh = (h + 2 * pad - dil * (kh - 1) - 1) / stride + 1;
        int ow = (w + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
        outHW[0] = oh;
        outHW[1] = ow;
        int cg = c / groups;
        int kg = k / groups;
        double[] y = new double[n * k * oh * ow];
        for (int ni = 0; ni < n; ni++) {
            for (int ko = 0; ko < k; ko++) {
                int g = ko / kg;
                for (int oy = 0; oy < oh; oy++) {
                    for (int ox = 0; ox < ow; ox++) {
                        double s = b == null ? 0 : b[ko];
                        for (int ci = 0; ci < cg; ci++) {
                            for (int ky = 0; ky < kh; ky++) {
                                for (int kx = 0; kx < kw; kx++) {
                                    int iy = oy * stride - pad + ky * dil;
                                    int ix = ox * stride - pad + kx * dil;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
                                        continue;
                                    }
                                    int cin = g * cg + ci;
                                    s += x[((ni * c + cin) * h + iy) * w + ix] * wt[((ko * cg + ci) * kh + ky) * kw + kx];
                                }
                            }
                        }
                        y[((ni * k + ko) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        return y;
    }

    /** Transposed convolution (groups 1, no dilation): weight [C, K, kh, kw]; output [N, K, OH, OW]. */
    static double[] convTranspose2d(double[] x, int n, int c, int h, int w, double[] wt, double[] b, int k, int kh,
                                    int kw, int stride, int pad, int[] outHW) {
        int oh = (h - 1) * stride - 2 * pad + kh;
        int ow = (w - 1) * stride - 2 * pad + kw;
        outHW[0] = oh;
        outHW[1] = ow;
        double[] y = new double[n * k * oh * ow];
        for (int ni = 0; ni < n; ni++) {
            for (int ko = 0; ko < k; ko++) {
                for (int i = 0; i < oh * ow; i++) {
                    y[(ni * k + ko) * oh * ow + i] = b == null ? 0 : b[ko];
                }
            }
            for (int ci = 0; ci < c; ci++) {
                for (int iy = 0; iy < h; iy++) {
                    for (int ix = 0; ix < w; ix++) {
                        double v = x[((ni * c + ci) * h + iy) * w + ix];
                        for (int ko = 0; ko < k; ko++) {
                            for (int ky = 0; ky < kh; ky++) {
                                for (int kx = 0; kx < kw; kx++) {
                                    int oy = iy * stride - pad + ky;
                                    int ox = ix * stride - pad + kx;
                                    if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) {
                                        continue;
                                    }
                                    y[((ni * k + ko) * oh + oy) * ow + ox] += v * wt[((ci * k + ko) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                }
            }
        }
        return y;
    }

    /** Normalizes each row of length len: (x - mean) / sqrt(var + eps) * w + b (w, b may be null). */
    static double[] layerNorm(double[] x, int len, double[] w, double[] b, double eps) {
        double[] y = new double[x.length];
        for (int r = 0; r < x.length / len; r++) {
            double m = 0;
            for (int i = 0; i < len; i++) {
                m += x[r * len + i];
            }
            m /= len;
            double v = 0;
            for (int i = 0; i < len; i++) {
                double d = x[r * len + i] - m;
                v += d * d;
            }
            v /= len;
            double rs = 1 / Math.sqrt(v + eps);
            for (int i = 0; i < len; i++) {
                y[r * len + i] = (x[r * len + i] - m) * rs * (w == null ? 1 : w[i]) + (b == null ? 0 : b[i]);
            }
        }
        return y;
    }

    static double[] rmsNorm(double[] x, int len, double[] w, double eps) {
        double[] y = new double[x.length];
        for (int r = 0; r < x.length / len; r++) {
            double ms = 0;
            for (int i = 0; i < len; i++) {
                ms += x[r * len + i] * x[r * len + i];
            }
            double rs = 1 / Math.sqrt(ms / len + eps);
            for (int i = 0; i < len; i++) {
                y[r * len + i] = x[r * len + i] * rs * (w == null ? 1 : w[i]);
            }
        }
        return y;
    }

    /** Group norm of [N, C, S] (S = spatial positions). */
    static double[] groupNorm(double[] x, int n, int c, int s, int groups, double[] w, double[] b, double eps) {
        int per = c / groups * s;
        double[] y = layerNorm(x, per, null, null, eps);
        for (int ni = 0; ni < n; ni++) {
            for (int ci = 0; ci < c; ci++) {
                for (int p = 0; p < s; p++) {
                    int i = (ni * c + ci) * s + p;
                    y[i] = y[i] * w[ci] + b[ci];
                }
            }
        }
        return y;
    }

    /** Per-channel batch statistics of [N, C, S]: {mean, biased var}. */
    static double[][] channelStats(double[] x, int n, int c, int s) {
        double[] mean = new double[c];
        double[] var = new double[c];
        for (int ci = 0; ci < c; ci++) {
            double m = 0;
            for (int ni = 0; ni < n; ni++) {
                for (int p = 0; p < s; p++) {
                    m += x[(ni * c + ci) * s + p];
                }
            }
            m /= n * s;
            double v = 0;
            for (int ni = 0; ni < n; ni++) {
                for (int p = 0; p < s; p++) {
                    double d = x[(ni * c + ci) * s + p] - m;
                    v += d * d;
                }
            }
            mean[ci] = m;
            var[ci] = v / (n * s);
        }
        return new double[][] {mean, var};
    }

    static double[] batchNorm(double[] x, int n, int c, int s, double[] mean, double[] var, double[] w, double[] b,
                              double eps) {
        double[] y = new double[x.length];
        for (int ni = 0; ni < n; ni++) {
            for (int ci = 0; ci < c; ci++) {
                double rs = 1 / Math.sqrt(var[ci] + eps);
                for (int p = 0; p < s; p++) {
                    int i = (ni * c + ci) * s + p;
                    y[i] = (x[i] - mean[ci]) * rs * w[ci] + b[ci];
                }
            }
        }
        return y;
    }

    static double gelu(double v) {
        return 0.5 * v * (1 + erf(v / Math.sqrt(2)));
    }

    /** erf with |error| < 1.2e-7 would be too coarse: series / continued fraction to ~1e-15. */
    static double erf(double x) {
        double ax = Math.abs(x);
        double r;
        if (ax < 3) {
            double term = ax;
            double sum = ax;
            for (int k = 1; k < 200; k++) {
                term *= -ax * ax / k;
                double add = term / (2 * k + 1);
                sum += add;
                if (Math.abs(add) < 1e-17 * Math.abs(sum)) {
                    break;
                }
            }
            r = 2 / Math.sqrt(Math.PI) * sum;
        } else {
            // erfc continued fraction (Lentz), accurate for large x
            double f = 0;
            for (int k = 60; k >= 1; k--) {
                f = k / 2.0 / (ax + f);
            }
            r = 1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
        }
        return x < 0 ? -r : r;
    }

    static double silu(double v) {
        return v / (1 + Math.exp(-v));
    }

    /**
     * Attention of q [B, T, H, D] over k, v [B, S, Hkv, D] (row-major BSHD arrays), causal aligned
     * bottom-right, optional boolean mask [T, S]; returns [B, T, H, D].
     */
    static double[] attention(double[] q, double[] k, double[] v, int b, int t, int s, int h, int hkv, int d,
                              boolean causal, boolean[] mask) {
        double[] o = new double[b * t * h * d];
        double scale = 1 / Math.sqrt(d);
        int group = h / hkv;
        for (int bi = 0; bi < b; bi++) {
            for (int hi = 0; hi < h; hi++) {
                int kh = hi / group;
                for (int i = 0; i < t; i++) {
                    double[] sc = new double[s];
                    double mx = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < s; j++) {
                        boolean ok = (!causal || j <= i + (s - t)) && (mask == null || mask[i * s + j]);
                        if (!ok) {
                            sc[j] = Double.NEGATIVE_INFINITY;
                            continue;
                        }
                        double acc = 0;
                        for (int e = 0; e < d; e++) {
                            acc += q[((bi * t + i) * h + hi) * d + e] * k[((bi * s + j) * hkv + kh) * d + e];
                        }
                        sc[j] = acc * scale;
                        mx = Math.max(mx, sc[j]);
                    }
                    double z = 0;
                    for (int j = 0; j < s; j++) {
                        sc[j] = sc[j] == Double.NEGATIVE_INFINITY ? 0 : Math.exp(sc[j] - mx);
                        z += sc[j];
                    }
                    for (int e = 0; e < d; e++) {
                        double acc = 0;
                        for (int j = 0; j < s; j++) {
                            acc += sc[j] / z * v[((bi * s + j) * hkv + kh) * d + e];
                        }
                        o[((bi * t + i) * h + hi) * d + e] = acc;
                    }
                }
            }
        }
        return o;
    }

    /** Half-split RoPE of x [B, T, H, D] over all D features at positions 0..T-1. */
    static double[] rope(double[] x, int b, int t, int h, int d, double base) {
        double[] y = x.clone();
        int half = d / 2;
        for (int bi = 0; bi < b; bi++) {
            for (int l = 0; l < t; l++) {
                for (int hi = 0; hi < h; hi++) {
                    int r = ((bi * t + l) * h + hi) * d;
                    for (int i = 0; i < half; i++) {
                        double ang = l * Math.pow(base, -2.0 * i / d);
                        double a = x[r + i];
                        double c = x[r + i + half];
                        y[r + i] = a * Math.cos(ang) - c * Math.sin(ang);
                        y[r + i + half] = a * Math.sin(ang) + c * Math.cos(ang);
                    }
                }
            }
        }
        return y;
    }

    static double[] add(double[] a, double[] b) {
        double[] y = new double[a.length];
        for (int i = 0; i < a.length; i++) {
            y[i] = a[i] + b[i];
        }
        return y;
    }
}
