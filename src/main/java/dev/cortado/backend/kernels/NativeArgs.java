package dev.cortado.backend.kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.bytedeco.javacpp.Pointer;

/**
 * Per-thread off-heap scratch for the int64 shape and stride arrays that native calls take as
 * pointers. Writing a few longs into a direct buffer and passing its address costs a few
 * nanoseconds, where passing Java arrays through JNI would copy each one. Usage:
 * {@code var args = NativeArgs.get(); long shapePtr = args.put(shape); ...} then call; the
 * addresses stay valid until the next {@link #get()} on the same thread.
 */
public final class NativeArgs {
    private static final int CAPACITY_LONGS = 1024;
    private static final ThreadLocal<NativeArgs> LOCAL = ThreadLocal.withInitial(NativeArgs::new);

    private final ByteBuffer buffer;
    private final long base;
    private int used;

    private NativeArgs() {
        buffer = ByteBuffer.allocateDirect(CAPACITY_LONGS * Long.BYTES).order(ByteOrder.nativeOrder());
        base = new Pointer(buffer).address();
    }

    /** The calling thread's scratch, emptied. */
    public static NativeArgs get() {
        NativeArgs args = LOCAL.get();
        args.used = 0;
        return args;
    }

    /** Copies {@code values} into the scratch and returns their native address. */
    public long put(long[] values) {
        return put(values, values.length);
    }

    /** Copies the first {@code n} entries of {@code values}; returns their native address. */
    public long put(long[] values, int n) {
        if (used + n > CAPACITY_LONGS) {
            throw new IllegalStateException("native argument scratch exhausted (" + CAPACITY_LONGS + " longs)");
        }
        int at = used;
        for (int i = 0; i < n; i++) {
            buffer.putLong((at + i) * Long.BYTES, values[i]);
        }
        used += Math.max(n, 1);
        return base + (long) at * Long.BYTES;
    }

    /** Reserves {@code n} zeroed longs (native output or a struct); read them back with {@link #read}. */
    public long reserve(int n) {
        if (used + n > CAPACITY_LONGS) {
            throw new IllegalStateException("native argument scratch exhausted (" + CAPACITY_LONGS + " longs)");
        }
        int at = used;
        for (int i = 0; i < n; i++) {
            buffer.putLong((at + i) * Long.BYTES, 0);
        }
        used += Math.max(n, 1);
        return base + (long) at * Long.BYTES;
    }

    /** Reserves a zeroed struct of {@code bytes} (a generated {@code NativeStructs.*.SIZE}); returns its address. */
    public long struct(int bytes) {
        return reserve((bytes + Long.BYTES - 1) / Long.BYTES);
    }

    /**
     * Writes a {@code ct_tensor} descriptor (cortado/common.h: data, dtype, ndim, shape, strides)
     * into the scratch; returns its address.
     */
    public long tensor(long data, int dtype, long[] shape, long[] strides) {
        if (shape.length > NativeCodes.MAX_DIMS || strides.length != shape.length) {
            throw new IllegalArgumentException("a ct_tensor has at most " + NativeCodes.MAX_DIMS
                    + " dimensions and one stride per dimension, got shape " + java.util.Arrays.toString(shape)
                    + " and strides " + java.util.Arrays.toString(strides));
        }
        long t = struct(NativeStructs.CtTensor.SIZE);
        putLong(t + NativeStructs.CtTensor.DATA, data);
        putInt(t + NativeStructs.CtTensor.DTYPE, dtype);
        putInt(t + NativeStructs.CtTensor.NDIM, shape.length);
        for (int i = 0; i < shape.length; i++) {
            putLong(t + NativeStructs.CtTensor.SHAPE + (long) i * Long.BYTES, shape[i]);
            putLong(t + NativeStructs.CtTensor.STRIDES + (long) i * Long.BYTES, strides[i]);
        }
        return t;
    }

    /** Stores a field of a struct in this scratch ({@code address} from {@link #struct} plus an offset). */
    public void putLong(long address, long value) {
        buffer.putLong(offset(address, Long.BYTES), value);
    }

    public void putInt(long address, int value) {
        buffer.putInt(offset(address, Integer.BYTES), value);
    }

    public void putDouble(long address, double value) {
        buffer.putDouble(offset(address, Double.BYTES), value);
    }

    private int offset(long address, int bytes) {
        long off = address - base;
        if (off < 0 || off + bytes > (long) used * Long.BYTES) {
            throw new IllegalArgumentException("address " + address + " is not in the reserved part of this scratch");
        }
        return (int) off;
    }

    /** Reads the long at {@code address} (which must come from this scratch). */
    public long read(long address) {
        return buffer.getLong(offset(address, Long.BYTES));
    }

    public int readInt(long address) {
        return buffer.getInt(offset(address, Integer.BYTES));
    }

    public double readDouble(long address) {
        return buffer.getDouble(offset(address, Double.BYTES));
    }
}
