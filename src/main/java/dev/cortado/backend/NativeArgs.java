package dev.cortado.backend;

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

    /** Reserves {@code n} longs for native output; read them back with {@link #read}. */
    public long reserve(int n) {
        return put(new long[n], n);
    }

    /** Reads the long at {@code address} (which must come from this scratch). */
    public long read(long address) {
        return buffer.getLong((int) (address - base));
    }
}
