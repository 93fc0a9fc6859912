package dev.cortado.quant;

import dev.cortado.tensor.DType;

/**
 * Independent references of the quantization ops, written from the definitions (ONNX
 * QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear, the OCP fp8 formats): float32
 * arithmetic as IEEE 754 defines it (Java float operations), {@link Math#rint} for round half to
 * even, and fp8 rounding by searching the 256 decoded codes for the nearest (ties to the even
 * code), not by the bit manipulation the kernels use.
 */
public final class QuantizationReference {
    private QuantizationReference() {
    }

    /** The value of fp8 code {@code c} of {@code type}, decoded from the format's fields. */
    public static double fp8Value(DType type, int c) {
        boolean e4m3 = type == DType.FLOAT8_E4M3;
        int expBits = e4m3 ? 4 : 5;
        int mantBits = e4m3 ? 3 : 2;
        int bias = e4m3 ? 7 : 15;
        int e = (c >> mantBits) & ((1 << expBits) - 1);
        int m = c & ((1 << mantBits) - 1);
        double sign = (c & 0x80) != 0 ? -1 : 1;
        if (e4m3 && e == 15 && m == 7) {
            return Double.NaN;
        }
        if (!e4m3 && e == 31) {
            return m == 0 ? sign * Double.POSITIVE_INFINITY : Double.NaN;
        }
        double frac = e == 0 ? m / (double) (1 << mantBits) : 1 + m / (double) (1 << mantBits);
        return sign * frac * Math.pow(2, (e == 0 ? 1 : e) - bias);
    }

    /** float32 -> fp8 value: nearest finite code (ties to the even code), saturating; NaN stays NaN. */
    public static double toFp8(DType type, float v) {
        if (Float.isNaN(v)) {
            return Double.NaN;
        }
        double best = Double.NaN;
        int bestCode = -1;
        double bestErr = Double.POSITIVE_INFINITY;
        double max = type == DType.FLOAT8_E4M3 ? 448 : 57344;
        double x = Math.max(-max, Math.min(max, v)); // saturation (also of infinities)
        for (int c = 0; c < 256; c++) {
            double f = fp8Value(type, c);
            if (!Double.isFinite(f)) {
                continue;
            }
            double err = Math.abs(f - x);
            if (err < bestErr || (err == bestErr && (c & 1) == 0 && (bestCode & 1) == 1)) {
                bestErr = err;
                best = f;
                bestCode = c;
            }
        }
        if (best == 0 && (Float.floatToRawIntBits(v) < 0)) {
            return -0.0;
        }
        return best;
    }

    /** Parameter index of element {@code flat} of data {@code dims} under {@code s}. */
    public static int paramIndex(QuantScheme s, long[] dims, int flat) {
        if (s.granularity() == QuantScheme.Granularity.PER_TENSOR) {
            return 0;
        }
        int axis = s.axisFor("reference", dims.length);
        long[] coord = new long[dims.length];
        long rem = flat;
        for (int d = dims.length - 1; d >= 0; d--) {
            coord[d] = rem % dims[d];
            rem /= dims[d];
        }
        if (s.granularity() == QuantScheme.Granularity.PER_CHANNEL) {
            return (int) coord[axis];
        }
        long idx = 0;
        for (int d = 0; d < dims.length; d++) {
            long size = d == axis ? dims[d] / s.groupSize() : dims[d];
            long c = d == axis ? coord[d] / s.groupSize() : coord[d];
            idx = idx * size + c;
        }
        return (int) idx;
    }

    /** Quantized values (fp8 as their decoded values) of x (row-major) under s. */
    public static double[] quantize(QuantScheme s, long[] dims, double[] x, double[] scale, double[] zp) {
        double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            int p = paramIndex(s, dims, i);
            float q = (float) x[i] / (float) scale[p];
            if (s.isFloat8()) {
                out[i] = toFp8(s.storage(), q);
                continue;
            }
            long z = zp == null ? 0 : (long) zp[p];
            double r = Float.isNaN(q) ? 0 : Math.rint(q);
            out[i] = Math.max(s.qmin(), Math.min(s.qmax(), r + z));
        }
        return out;
    }

    /** (q - z) * s in float32. */
    public static double[] dequantize(QuantScheme s, long[] dims, double[] q, double[] scale, double[] zp) {
        double[] out = new double[q.length];
        for (int i = 0; i < q.length; i++) {
            int p = paramIndex(s, dims, i);
            long z = zp == null ? 0 : (long) zp[p];
            out[i] = s.isFloat8() ? (float) q[i] * (float) scale[p] : (float) (q[i] - z) * (float) scale[p];
        }
        return out;
    }

    /** ONNX DynamicQuantizeLinear in float32: {q, {scale}, {zero point}}. */
    public static double[][] dynamic(double[] x) {
        float lo = 0;
        float hi = 0;
        for (double v : x) {
            lo = Math.min(lo, (float) v);
            hi = Math.max(hi, (float) v);
        }
        float scale = hi > lo ? (hi - lo) / 255f : 1f;
        float zf = (float) Math.rint(0f - lo / scale);
        int z = (int) Math.max(0, Math.min(255, zf));
        double[] q = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            q[i] = Math.max(0, Math.min(255, Math.rint((float) x[i] / scale) + z));
        }
        return new double[][] {q, {scale}, {z}};
    }

    // ------------------------------------------------------------------ int8 GEMM

    /** The packed layout of quant.h for int8 b [k, n] (row-major): {packed bytes, column sums}. */
    public static double[][] packB(double[] b, int k, int n) {
        int kp = (k + 3) / 4 * 4;
        int np = (n + 31) / 32 * 32;
        double[] packed = new double[kp * np];
        double[] colsum = new double[n];
        for (int kk = 0; kk < k; kk++) {
            for (int j = 0; j < n; j++) {
                double v = b[kk * n + j];
                packed[((j / 16) * (kp / 4) + kk / 4) * 64 + (j % 16) * 4 + kk % 4] = v;
                colsum[j] += v;
            }
        }
        return new double[][] {packed, colsum};
    }

    /**
     * The int8 GEMM from its definition: exact sums of (a - za)(b - zb) in long arithmetic, then
     * the epilogue in float32 (Math.fma on floats: one rounding, as fmaf).
     */
    public static double[] qgemm(double[] a, double[] b, int m, int k, int n, int za, double[] zb, double[] scale,
                                 double[] bias, DType out, boolean relu, int zo) {
        double[] c = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                long s = 0;
                long zbj = zb == null ? 0 : (long) zb[j];
                for (int kk = 0; kk < k; kk++) {
                    s += ((long) a[i * k + kk] - za) * ((long) b[kk * n + j] - zbj);
                }
                if (out == DType.INT32) {
                    c[i * n + j] = s;
                    continue;
                }
                float f = Math.fma((float) s, (float) scale[j], bias == null ? 0f : (float) bias[j]);
                if (relu) {
                    f = Math.max(f, 0f);
                }
                if (out == DType.FLOAT32) {
                    c[i * n + j] = f;
                } else {
                    int lo = out == DType.INT8 ? -128 : 0;
                    int hi = out == DType.INT8 ? 127 : 255;
                    c[i * n + j] = Math.max(lo, Math.min(hi, Math.rint(f) + zo));
                }
            }
        }
        return c;
    }
}
