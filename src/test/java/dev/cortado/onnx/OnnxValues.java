package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.cortado.onnx.OnnxTensors.*;

/**
 * The ONNX backend-test comparison: expected values decoded straight from the proto into Java
 * arrays ({@link #values}), without going through a Cortado tensor, so the comparison does not
 * depend on the engine's own conversions; and ONNX's closeness rule ({@link #compare}).
 */
public final class OnnxValues {
    private OnnxValues() {
    }


    /**
     * Decoded elements: {@code real} for floating types (float16/bfloat16 widened exactly),
     * {@code integral} for integer and bool types (unsigned types as unsigned values).
     */
    public record Values(int onnxType, long[] dims, double[] real, long[] integral) {
        public boolean isFloating() {
            return real != null;
        }

        public int size() {
            return real != null ? real.length : integral.length;
        }
    }

    /** Independent decode of a TensorProto's elements (does not use Cortado). */
    public static Values values(TensorProto p) {
        int type = p.getDataType();
        ByteBuffer b = littleEndianBytes(p);
        int n = (int) numel(dims(p));
        double[] r = null;
        long[] l = null;
        switch (type) {
            case FLOAT -> {
                r = new double[n];
                for (int i = 0; i < n; i++) {
                    r[i] = b.getFloat(i * 4);
                }
            }
            case DOUBLE -> {
                r = new double[n];
                for (int i = 0; i < n; i++) {
                    r[i] = b.getDouble(i * 8);
                }
            }
            case FLOAT16 -> {
                r = new double[n];
                for (int i = 0; i < n; i++) {
                    r[i] = halfToFloat(b.getShort(i * 2));
                }
            }
            case BFLOAT16 -> {
                r = new double[n];
                for (int i = 0; i < n; i++) {
                    r[i] = Float.intBitsToFloat((b.getShort(i * 2) & 0xFFFF) << 16);
                }
            }
            case FLOAT8E4M3FN, FLOAT8E5M2 -> {
                r = new double[n];
                DType t = dtypeOf(type);
                for (int i = 0; i < n; i++) {
                    r[i] = dev.cortado.quant.QuantizationReference.fp8Value(t, b.get(i) & 0xFF);
                }
            }
            default -> {
                l = new long[n];
                int size = byteSize(type);
                boolean unsigned = type == UINT8 || type == UINT16 || type == UINT32 || type == BOOL;
                for (int i = 0; i < n; i++) {
                    long v = switch (size) {
                        case 1 -> unsigned ? b.get(i) & 0xFFL : b.get(i);
                        case 2 -> unsigned ? b.getShort(i * 2) & 0xFFFFL : b.getShort(i * 2);
                        case 4 -> unsigned ? b.getInt(i * 4) & 0xFFFFFFFFL : b.getInt(i * 4);
                        default -> b.getLong(i * 8);
                    };
                    l[i] = type == BOOL ? (v != 0 ? 1 : 0) : v;
                }
            }
        }
        return new Values(type, dims(p), r, l);
    }

    /** IEEE 754 binary16 bit pattern to float (exact; Java 17 has no Float.float16ToFloat). */
    static float halfToFloat(short bits) {
        int h = bits & 0xFFFF;
        int sign = (h >>> 15) != 0 ? -1 : 1;
        int exp = (h >>> 10) & 0x1F;
        int mant = h & 0x3FF;
        if (exp == 0x1F) {
            return mant == 0 ? sign * Float.POSITIVE_INFINITY : Float.NaN;
        }
        if (exp == 0) {
            return sign * mant * 0x1p-24f;
        }
        return sign * (1 + mant / 1024f) * (float) Math.scalb(1.0, exp - 15);
    }

    /** The elements of a Cortado tensor in the same form as {@link #values(TensorProto)}. */
    public static Values values(Tensor t) {
        int type = onnxTypeOf(t.dtype());
        if (t.dtype().isFloatingPoint()) {
            return new Values(type, t.dims(), t.toDoubleArray(), null);
        }
        if (t.dtype() == DType.BOOL) {
            boolean[] bs = t.toBooleanArray();
            long[] l = new long[bs.length];
            for (int i = 0; i < bs.length; i++) {
                l[i] = bs[i] ? 1 : 0;
            }
            return new Values(type, t.dims(), null, l);
        }
        // int8/uint8/int32/int64: toLongArray converts through the engine's int64 cast, which
        // is exact for these; uint8 comes out as its unsigned value.
        return new Values(type, t.dims(), null, t.toLongArray());
    }

    /**
     * ONNX's rule ({@code onnx/backend/test/runner}, {@code assert_similar_outputs}): dtype and
     * shape must match; floating values {@code |actual - expected| <= atol + rtol * |expected|}
     * per element, NaN equal to NaN, an infinity only equal to the same infinity; integer and
     * bool values exact. Returns null when they match, else a description of the mismatch.
     */
    public static String compare(String name, Values expected, Values actual, double rtol, double atol) {
        if (expected.onnxType() != actual.onnxType()) {
            return name + ": dtype " + typeName(actual.onnxType()) + ", expected " + typeName(expected.onnxType());
        }
        if (!Arrays.equals(expected.dims(), actual.dims())) {
            return name + ": shape " + Arrays.toString(actual.dims()) + ", expected " + Arrays.toString(expected.dims());
        }
        List<String> bad = new ArrayList<>();
        int mismatches = 0;
        double maxErr = 0;
        int n = expected.size();
        for (int i = 0; i < n; i++) {
            boolean ok;
            String pair;
            if (expected.isFloating()) {
                double e = expected.real()[i];
                double a = actual.real()[i];
                if (Double.isNaN(e) || Double.isNaN(a)) {
                    ok = Double.isNaN(e) && Double.isNaN(a);
                } else if (Double.isInfinite(e) || Double.isInfinite(a)) {
                    ok = e == a;
                } else {
                    double err = Math.abs(a - e);
                    ok = err <= atol + rtol * Math.abs(e);
                    if (!ok) {
                        maxErr = Math.max(maxErr, err);
                    }
                }
                pair = a + " vs expected " + e;
            } else {
                ok = expected.integral()[i] == actual.integral()[i];
                pair = actual.integral()[i] + " vs expected " + expected.integral()[i];
            }
            if (!ok) {
                mismatches++;
                if (bad.size() < 8) {
                    bad.add("[" + i + "] " + pair);
                }
            }
        }
        if (mismatches == 0) {
            return null;
        }
        return name + ": " + mismatches + " of " + n + " elements differ (rtol " + rtol + ", atol " + atol
                + (expected.isFloating() ? ", max abs err " + maxErr : "") + "): " + String.join(", ", bad)
                + (mismatches > bad.size() ? ", ..." : "");
    }

    /** Shorthand for {@link #compare(String, Values, Values, double, double)} on a tensor. */
    public static String compare(String name, TensorProto expected, Tensor actual, double rtol, double atol) {
        return compare(name, values(expected), values(actual), rtol, atol);
    }
}
