package dev.cortado.tensor;

import dev.cortado.backend.kernels.NativeCodes;

/**
 * Element types. The codes are the native dtype codes of {@code native/include/cortado/common.h}.
 * {@link #INT4} is a storage type: two signed 4-bit values per byte, low nibble first; it can be
 * created, reshaped, exported and converted, and compute ops take it after unpacking.
 * {@link #FLOAT8_E4M3} and {@link #FLOAT8_E5M2} are storage types too: views, copies and reading
 * values work; conversion from other dtypes goes through {@code dev.cortado.quant.Quantization}.
 */
public enum DType {
    FLOAT32(NativeCodes.F32, 32, Kind.FLOAT, "float32"),
    FLOAT64(NativeCodes.F64, 64, Kind.FLOAT, "float64"),
    FLOAT16(NativeCodes.F16, 16, Kind.FLOAT, "float16"),
    BFLOAT16(NativeCodes.BF16, 16, Kind.FLOAT, "bfloat16"),
    INT8(NativeCodes.I8, 8, Kind.INT, "int8"),
    UINT8(NativeCodes.U8, 8, Kind.INT, "uint8"),
    INT32(NativeCodes.I32, 32, Kind.INT, "int32"),
    INT64(NativeCodes.I64, 64, Kind.INT, "int64"),
    BOOL(NativeCodes.BOOL, 8, Kind.BOOL, "bool"),
    INT4(NativeCodes.I4, 4, Kind.INT, "int4"),
    /** OCP fp8 E4M3 (max 448, no infinities): a storage type written and read by dev.cortado.quant. */
    FLOAT8_E4M3(NativeCodes.F8E4M3, 8, Kind.FLOAT, "float8_e4m3"),
    /** OCP fp8 E5M2 (max 57344, with infinities): a storage type written and read by dev.cortado.quant. */
    FLOAT8_E5M2(NativeCodes.F8E5M2, 8, Kind.FLOAT, "float8_e5m2");

    private enum Kind { BOOL, INT, FLOAT }

    private static final DType[] BY_CODE = byCode();

    private final int code;
    private final int bits;
    private final Kind kind;
    private final String displayName;

    DType(int code, int bits, Kind kind, String displayName) {
        this.code = code;
        this.bits = bits;
        this.kind = kind;
        this.displayName = displayName;
    }

    /** The native dtype code. */
    public int code() {
        return code;
    }

    public int bits() {
        return bits;
    }

    /** Bytes per element; {@link #INT4} (half a byte) throws: use {@link #bytesFor(long)}. */
    public int byteSize() {
        if (this == INT4) {
            throw new UnsupportedOperationException("int4 is packed two per byte; use bytesFor(count)");
        }
        return bits / 8;
    }

    /**
     * Bytes needed to store {@code count} elements.
     *
     * @throws IllegalArgumentException when {@code count} is negative or the byte count does not
     *     fit in a long (checked before anything is allocated with it)
     */
    public long bytesFor(long count) {
        if (count < 0) {
            throw new IllegalArgumentException(displayName + ": negative element count " + count);
        }
        if (this == INT4) {
            return count / 2 + (count & 1);
        }
        int size = bits / 8;
        if (count > Long.MAX_VALUE / size) {
            throw new IllegalArgumentException(displayName + ": " + count + " elements need more than 2^63 - 1 bytes ("
                    + size + " bytes each)");
        }
        return count * size;
    }

    public boolean isFloatingPoint() {
        return kind == Kind.FLOAT;
    }

    public boolean isInteger() {
        return kind == Kind.INT;
    }

    public boolean isBool() {
        return kind == Kind.BOOL;
    }

    /** Sub-byte storage types that views and most kernels do not address element by element. */
    public boolean isPacked() {
        return this == INT4;
    }

    /** The two fp8 storage types. */
    public boolean isFloat8() {
        return this == FLOAT8_E4M3 || this == FLOAT8_E5M2;
    }

    private static DType[] byCode() {
        DType[] out = new DType[values().length];
        for (DType t : values()) {
            out[t.code] = t;
        }
        return out;
    }

    public static DType fromCode(int code) {
        if (code < 0 || code >= BY_CODE.length) {
            throw new IllegalArgumentException("unknown dtype code " + code);
        }
        return BY_CODE[code];
    }

    /**
     * Type promotion for two operands, as PyTorch does for tensors: bool &lt; integers &lt;
     * floating point; within a kind the wider wins; float16 with bfloat16 gives float32;
     * uint8 with int8 gives int32 (there is no int16); int4 promotes like int8.
     */
    public static DType promote(DType a, DType b) {
        if (a == b) {
            return a == INT4 ? INT8 : a;
        }
        if (a == INT4) {
            a = INT8;
        }
        if (b == INT4) {
            b = INT8;
        }
        if (a == b) {
            return a;
        }
        if (a.kind != b.kind) {
            DType hi = a.kind.ordinal() > b.kind.ordinal() ? a : b;
            return hi;
        }
        if (a.kind == Kind.FLOAT) {
            if ((a == FLOAT16 && b == BFLOAT16) || (a == BFLOAT16 && b == FLOAT16)) {
                return FLOAT32;
            }
            return a.bits >= b.bits ? a : b;
        }
        // integers
        if ((a == UINT8 && b == INT8) || (a == INT8 && b == UINT8)) {
            return INT32;
        }
        return a.bits >= b.bits ? a : b;
    }

    @Override
    public String toString() {
        return displayName;
    }
}
