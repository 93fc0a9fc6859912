package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * ONNX {@code TensorProto} to and from Cortado tensors, and the ONNX backend-test comparison.
 *
 * <p>Decoding follows {@code onnx.proto} (see {@code ../shared/conformance/onnx-node/README.md}):
 * {@code raw_data} when present (fixed-width little-endian, row-major; BOOL one byte each,
 * FLOAT16/BFLOAT16 as 16-bit patterns), otherwise the typed field of the data type
 * ({@code float_data}, {@code int32_data} also for INT8/UINT8/BOOL/FLOAT16/BFLOAT16,
 * {@code int64_data}, {@code double_data}). No dims is a scalar; a 0 in dims is an empty tensor.
 *
 * <p>The expected values of a test are decoded here straight from the proto into Java arrays
 * ({@link #values}), without going through a Cortado tensor, so the comparison does not depend
 * on the engine's own conversions.
 */
public final class OnnxTensors {
    private OnnxTensors() {
    }

    // ONNX TensorProto.DataType codes
    public static final int FLOAT = 1, UINT8 = 2, INT8 = 3, UINT16 = 4, INT16 = 5, INT32 = 6, INT64 = 7, STRING = 8,
            BOOL = 9, FLOAT16 = 10, DOUBLE = 11, UINT32 = 12, UINT64 = 13, BFLOAT16 = 16, FLOAT8E4M3FN = 17,
            FLOAT8E5M2 = 19, INT4 = 22;

    private static final String[] NAMES = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
        "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16",
        "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1",
        "FLOAT8E8M0", "UINT2", "INT2"};

    /** An ONNX element type that Cortado has no dtype for (INT16, UINT16/32/64, FLOAT8, ...). */
    public static final class UnsupportedDTypeException extends UnsupportedOperationException {
        private static final long serialVersionUID = 1L;
        private final int onnxType;

        public UnsupportedDTypeException(int onnxType) {
            super("ONNX element type " + typeName(onnxType) + " (" + onnxType + ") has no Cortado dtype");
            this.onnxType = onnxType;
        }

        public int onnxType() {
            return onnxType;
        }
    }

    public static String typeName(int onnxType) {
        return onnxType >= 0 && onnxType < NAMES.length ? NAMES[onnxType] : "type" + onnxType;
    }

    /** The Cortado dtype of an ONNX element type; throws {@link UnsupportedDTypeException} if none. */
    public static DType dtypeOf(int onnxType) {
        return switch (onnxType) {
            case FLOAT -> DType.FLOAT32;
            case DOUBLE -> DType.FLOAT64;
            case FLOAT16 -> DType.FLOAT16;
            case BFLOAT16 -> DType.BFLOAT16;
            case INT8 -> DType.INT8;
            case UINT8 -> DType.UINT8;
            case INT32 -> DType.INT32;
            case INT64 -> DType.INT64;
            case BOOL -> DType.BOOL;
            case FLOAT8E4M3FN -> DType.FLOAT8_E4M3;
            case FLOAT8E5M2 -> DType.FLOAT8_E5M2;
            case INT4 -> DType.INT4;
            default -> throw new UnsupportedDTypeException(onnxType);
        };
    }

    public static boolean isSupported(int onnxType) {
        try {
            dtypeOf(onnxType);
            return true;
        } catch (UnsupportedDTypeException e) {
            return false;
        }
    }

    /** The ONNX element type of a Cortado dtype. */
    public static int onnxTypeOf(DType t) {
        return switch (t) {
            case FLOAT32 -> FLOAT;
            case FLOAT64 -> DOUBLE;
            case FLOAT16 -> FLOAT16;
            case BFLOAT16 -> BFLOAT16;
            case INT8 -> INT8;
            case UINT8 -> UINT8;
            case INT32 -> INT32;
            case INT64 -> INT64;
            case BOOL -> BOOL;
            case INT4 -> INT4;
            case FLOAT8_E4M3 -> FLOAT8E4M3FN;
            case FLOAT8_E5M2 -> FLOAT8E5M2;
        };
    }

    public static TensorProto read(Path pb) throws IOException {
        try (InputStream in = Files.newInputStream(pb)) {
            return TensorProto.parseFrom(in);
        }
    }

    public static long[] dims(TensorProto p) {
        long[] d = new long[p.getDimsCount()];
        for (int i = 0; i < d.length; i++) {
            d[i] = p.getDims(i);
        }
        return d;
    }

    static long numel(long[] dims) {
        long n = 1;
        for (long d : dims) {
            n *= d;
        }
        return n;
    }

    private static int byteSize(int onnxType) {
        return switch (onnxType) {
            case UINT8, INT8, BOOL, FLOAT8E4M3FN, FLOAT8E5M2, INT4 -> 1; // INT4: one unpacked value per byte
            case FLOAT16, BFLOAT16, INT16, UINT16 -> 2;
            case FLOAT, INT32, UINT32 -> 4;
            case INT64, DOUBLE, UINT64 -> 8;
            default -> throw new UnsupportedDTypeException(onnxType);
        };
    }

    /**
     * The elements of {@code p} as fixed-width little-endian bytes in row-major order: its
     * {@code raw_data}, or the typed field re-encoded that way.
     */
    static ByteBuffer littleEndianBytes(TensorProto p) {
        int type = p.getDataType();
        if (p.hasDataLocation() && p.getDataLocation() == TensorProto.DataLocation.EXTERNAL) {
            throw new UnsupportedOperationException("tensor '" + p.getName() + "' uses external data");
        }
        long n = numel(dims(p));
        int size = byteSize(type);
        if (n * size > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("tensor '" + p.getName() + "' is too large");
        }
        ByteBuffer out = ByteBuffer.allocate((int) (n * size)).order(ByteOrder.LITTLE_ENDIAN);
        if (type == INT4) {
            // packed two per byte, low nibble first (raw_data, or one packed byte per int32_data entry);
            // returned unpacked, one sign-extended value per byte
            int packed = (int) ((n + 1) / 2);
            int have = p.hasRawData() ? p.getRawData().size() : p.getInt32DataCount();
            if (have != packed) {
                throw new IllegalArgumentException("tensor '" + p.getName() + "' INT4" + Arrays.toString(dims(p)) + " needs "
                        + packed + " packed bytes, has " + have);
            }
            for (int i = 0; i < n; i++) {
                int b = p.hasRawData() ? p.getRawData().byteAt(i / 2) & 0xFF : p.getInt32Data(i / 2) & 0xFF;
                int nibble = (i % 2 == 0 ? b : b >> 4) & 0xF;
                out.put((byte) (nibble >= 8 ? nibble - 16 : nibble));
            }
            return out.flip();
        }
        if (p.hasRawData()) {
            ByteBuffer raw = p.getRawData().asReadOnlyByteBuffer();
            if (raw.remaining() != out.capacity()) {
                throw new IllegalArgumentException("tensor '" + p.getName() + "' " + typeName(type)
                        + Arrays.toString(dims(p)) + " needs " + out.capacity() + " bytes of raw_data, has "
                        + raw.remaining());
            }
            out.put(raw);
            return out.flip();
        }
        int count;
        switch (type) {
            case FLOAT -> {
                count = p.getFloatDataCount();
                for (int i = 0; i < count && i < n; i++) {
                    out.putFloat(p.getFloatData(i));
                }
            }
            case DOUBLE -> {
                count = p.getDoubleDataCount();
                for (int i = 0; i < count && i < n; i++) {
                    out.putDouble(p.getDoubleData(i));
                }
            }
            case INT64 -> {
                count = p.getInt64DataCount();
                for (int i = 0; i < count && i < n; i++) {
                    out.putLong(p.getInt64Data(i));
                }
            }
            case UINT32, UINT64 -> {
                count = p.getUint64DataCount();
                for (int i = 0; i < count && i < n; i++) {
                    long v = p.getUint64Data(i);
                    if (size == 4) {
                        out.putInt((int) v);
                    } else {
                        out.putLong(v);
                    }
                }
            }
            default -> {
                // int32_data: INT32, INT16, INT8, UINT16, UINT8, BOOL, FLOAT16/BFLOAT16 bit patterns.
                // protobuf-java already truncates sign-extended 10-byte varints to 32 bits.
                count = p.getInt32DataCount();
                for (int i = 0; i < count && i < n; i++) {
                    int v = p.getInt32Data(i);
                    switch (size) {
                        case 1 -> out.put((byte) v);
                        case 2 -> out.putShort((short) v);
                        default -> out.putInt(v);
                    }
                }
            }
        }
        if (count != n) {
            throw new IllegalArgumentException("tensor '" + p.getName() + "' " + typeName(type) + Arrays.toString(dims(p))
                    + " has " + count + " typed values, expected " + n);
        }
        return out.flip();
    }

    /** A new Cortado tensor with {@code p}'s dtype, shape and data on {@code device}. */
    public static Tensor toTensor(TensorProto p, Device device) {
        DType t = dtypeOf(p.getDataType());
        ByteBuffer bytes = littleEndianBytes(p);
        if (p.getDataType() == BOOL) {
            // BOOL is one byte per element; normalise any non-zero byte to 1.
            for (int i = 0; i < bytes.limit(); i++) {
                if (bytes.get(i) != 0) {
                    bytes.put(i, (byte) 1);
                }
            }
        }
        if (t == DType.INT4) {
            byte[] v = new byte[bytes.remaining()];
            bytes.get(v);
            return Tensor.of(v, DType.INT4, device, dims(p));
        }
        return Tensor.fromBuffer(bytes, t, device, dims(p));
    }

    public static Tensor toTensor(TensorProto p) {
        return toTensor(p, Device.defaultDevice());
    }

    /** A TensorProto (raw_data) with {@code t}'s dtype, shape and data. */
    public static TensorProto toProto(Tensor t, String name) {
        TensorProto.Builder b = TensorProto.newBuilder().setName(name).setDataType(onnxTypeOf(t.dtype()));
        for (long d : t.dims()) {
            b.addDims(d);
        }
        b.setRawData(com.google.protobuf.ByteString.copyFrom(t.toByteArray()));
        return b.build();
    }

    // ------------------------------------------------------------------ values and comparison

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
