package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * ONNX {@code TensorProto} to and from Cortado tensors, and ONNX element types to Cortado dtypes.
 *
 * <p>Decoding follows {@code onnx.proto} (see {@code ../shared/conformance/onnx-node/README.md}):
 * {@code raw_data} when present (fixed-width little-endian, row-major; BOOL one byte each,
 * FLOAT16/BFLOAT16 as 16-bit patterns), otherwise the typed field of the data type
 * ({@code float_data}, {@code int32_data} also for INT8/UINT8/BOOL/FLOAT16/BFLOAT16,
 * {@code int64_data}, {@code double_data}). No dims is a scalar; a 0 in dims is an empty tensor.
 * External data ({@code data_location = EXTERNAL}) is read by {@link #withExternalData}.
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
            return TensorProto.parseFrom(OnnxModel.limited(in, Files.size(pb)));
        }
    }

    public static long[] dims(TensorProto p) {
        long[] d = new long[p.getDimsCount()];
        for (int i = 0; i < d.length; i++) {
            d[i] = p.getDims(i);
        }
        return d;
    }

    /** The element count of {@code dims}: an IllegalArgumentException for a negative size or an overflowing product. */
    static long numel(long[] dims) {
        return Shape.of(dims).numel();
    }

    /** The element count of {@code p}'s dims; a negative size or an overflowing product names the tensor. */
    static long numel(TensorProto p) {
        long[] dims = dims(p);
        try {
            return numel(dims);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("tensor '" + p.getName() + "' has dims " + Arrays.toString(dims)
                    + ": " + e.getMessage(), e);
        }
    }

    static int byteSize(int onnxType) {
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
            throw new OnnxImportException("tensor '" + p.getName() + "' uses external data: resolve it first (withExternalData)");
        }
        long n = numel(p);
        int size = byteSize(type);
        if (n > (Integer.MAX_VALUE - 8) / size) {
            throw new IllegalArgumentException("tensor '" + p.getName() + "' " + typeName(type) + Arrays.toString(dims(p))
                    + " is too large: " + n + " elements of " + size + " bytes; an ONNX tensor holds less than 2 GiB");
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

    /**
     * {@code p} with its external data read into {@code raw_data} (unchanged when its data is in
     * the proto). The {@code location} is a relative path inside {@code folder}, the model's
     * folder: an absolute path, a {@code ..} component or a symbolic link that leads out of the
     * folder is refused, as is external data with no folder (a model parsed from memory).
     * {@code offset} and {@code length} select a byte range of the file.
     */
    public static TensorProto withExternalData(TensorProto p, Path folder) {
        if (!p.hasDataLocation() || p.getDataLocation() != TensorProto.DataLocation.EXTERNAL) {
            return p;
        }
        String location = null;
        long offset = 0;
        long length = -1;
        for (var e : p.getExternalDataList()) {
            switch (e.getKey()) {
                case "location" -> location = e.getValue();
                case "offset" -> offset = parseLong(p, "offset", e.getValue());
                case "length" -> length = parseLong(p, "length", e.getValue());
                default -> { } // checksum and others: not needed to read the bytes
            }
        }
        String what = "initializer '" + p.getName() + "'";
        if (location == null || location.isEmpty()) {
            throw new OnnxImportException(what + " has external data without a location");
        }
        if (folder == null) {
            throw new OnnxImportException(what + " has external data ('" + location
                    + "') but the model was not loaded from a folder");
        }
        Path rel = Path.of(location);
        if (rel.isAbsolute() || location.startsWith("/") || location.startsWith("\\")) {
            throw new OnnxImportException(what + ": external data location '" + location
                    + "' is an absolute path; it must be relative to the model's folder " + folder);
        }
        for (Path part : rel) {
            if (part.toString().equals("..")) {
                throw new OnnxImportException(what + ": external data location '" + location
                        + "' leaves the model's folder " + folder + " ('..')");
            }
        }
        Path file;
        try {
            Path root = folder.toRealPath();
            file = folder.resolve(rel).toRealPath();
            if (!file.startsWith(root)) {
                throw new OnnxImportException(what + ": external data location '" + location + "' resolves to " + file
                        + ", outside the model's folder " + root + " (a symbolic link)");
            }
        } catch (IOException e) {
            throw new OnnxImportException(what + ": external data file '" + location + "' in " + folder
                    + " cannot be read: " + e, e);
        }
        try (var ch = java.nio.channels.FileChannel.open(file)) {
            long size = ch.size();
            long n = length >= 0 ? length : size - offset;
            if (offset < 0 || n < 0 || offset > size || n > size - offset || n > Integer.MAX_VALUE - 8) {
                throw new OnnxImportException(what + ": external data range offset " + offset + ", length " + n
                        + " does not fit in " + file + " (" + size + " bytes)");
            }
            ByteBuffer buf = ByteBuffer.allocate((int) n);
            while (buf.hasRemaining()) {
                if (ch.read(buf, offset + buf.position()) < 0) {
                    throw new OnnxImportException(what + ": " + file + " ended early");
                }
            }
            buf.flip();
            return p.toBuilder().clearExternalData().clearDataLocation()
                    .setRawData(com.google.protobuf.ByteString.copyFrom(buf)).build();
        } catch (IOException e) {
            throw new OnnxImportException(what + ": reading external data " + file + ": " + e, e);
        }
    }

    private static long parseLong(TensorProto p, String key, String value) {
        try {
            return Long.parseLong(value.trim());
        } catch (NumberFormatException e) {
            throw new OnnxImportException("initializer '" + p.getName() + "': external data " + key + " '" + value
                    + "' is not a number");
        }
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
}
