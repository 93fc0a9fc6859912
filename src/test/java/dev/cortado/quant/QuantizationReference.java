package dev.cortado.quant;

import dev.cortado.ops.ElementwiseOpsTest;
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
     * {@link #epilogue} per element.
     */
    public static double[] qgemm(double[] a, double[] b, int m, int k, int n, double[] zb, double[] scale,
                                 double[] bias, Int8Gemm.Epilogue e) {
        double[] c = new double[m * n];
        int za = e.aZeroPoint();
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                long s = 0;
                long zbj = zb == null ? 0 : (long) zb[j];
                for (int kk = 0; kk < k; kk++) {
                    s += ((long) a[i * k + kk] - za) * ((long) b[kk * n + j] - zbj);
                }
                c[i * n + j] = epilogue(s, scale == null ? 0 : scale[j], bias == null ? 0 : bias[j], e);
            }
        }
        return c;
    }

    /**
     * The epilogue of the int8 GEMM and convolution on one compensated sum: {@code f = fma(s,
     * scale, bias)} in float32 (Math.fma on floats: one rounding, as fmaf), then the activation
     * (ReLU in float32, exact; GELU and SiLU in float64 from f, so the kernels' float32 forms differ
     * by a few ulp), then the output: float32 as is, bfloat16 rounded to nearest even (in float32
     * bits; after GELU/SiLU from the float64 value rounded to float32), int8/uint8 as
     * {@code clamp(rint(v) + zo)}.
     */
    public static double epilogue(long s, double scale, double bias, Int8Gemm.Epilogue e) {
        if (e.out() == DType.INT32) {
            return s;
        }
        float f = Math.fma((float) s, (float) scale, (float) bias);
        double v = switch (e.activation()) {
            case NONE -> f;
            case RELU -> f < 0 ? 0f : f;
            case GELU -> ElementwiseOpsTest.geluErf(f);
            case SILU -> f * ElementwiseOpsTest.sigmoid(f);
        };
        if (e.out() == DType.FLOAT32) {
            return v;
        }
        if (e.out() == DType.BFLOAT16) {
            return bf16((float) v);
        }
        int lo = e.out() == DType.INT8 ? -128 : 0;
        int hi = e.out() == DType.INT8 ? 127 : 255;
        return Math.max(lo, Math.min(hi, Math.rint(v) + e.outZeroPoint()));
    }

    /** float32 to bfloat16, round to nearest even on the bits (NaN stays NaN), as a double. */
    public static double bf16(float x) {
        if (Float.isNaN(x)) {
            return Double.NaN;
        }
        int u = Float.floatToRawIntBits(x);
        u += 0x7fff + ((u >>> 16) & 1);
        return Float.intBitsToFloat(u & 0xffff0000);
    }
}
