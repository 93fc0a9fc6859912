package dev.cortado.backend.kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.ShortPointer;

/**
 * Bulk transfers between Java arrays and host native memory at raw addresses (one JNI copy
 * each), and {@link ByteBuffer} views of host memory. Callers check that the range lies inside
 * an allocation they own.
 */
public final class HostMemory {
    private HostMemory() {
    }

    /** Pointers over memory at an address that they do not own (JavaCPP keeps the address protected). */
    private static FloatPointer floats(long at, long n) {
        return new FloatPointer((Pointer) null) { { this.address = at; this.limit = n; this.capacity = n; } };
    }

    private static DoublePointer doubles(long at, long n) {
        return new DoublePointer((Pointer) null) { { this.address = at; this.limit = n; this.capacity = n; } };
    }

    private static IntPointer ints(long at, long n) {
        return new IntPointer((Pointer) null) { { this.address = at; this.limit = n; this.capacity = n; } };
    }

    private static LongPointer longs(long at, long n) {
        return new LongPointer((Pointer) null) { { this.address = at; this.limit = n; this.capacity = n; } };
    }

    private static ShortPointer shorts(long at, long n) {
        return new ShortPointer((Pointer) null) { { this.address = at; this.limit = n; this.capacity = n; } };
    }

    private static BytePointer bytes(long at, long n) {
        return new BytePointer((Pointer) null) { { this.address = at; this.limit = n; this.capacity = n; } };
    }

    public static void write(long address, float[] src) {
        floats(address, src.length).put(src);
    }

    public static void write(long address, double[] src) {
        doubles(address, src.length).put(src);
    }

    public static void write(long address, int[] src) {
        ints(address, src.length).put(src);
    }

    public static void write(long address, long[] src) {
        longs(address, src.length).put(src);
    }

    public static void write(long address, short[] src) {
        shorts(address, src.length).put(src);
    }

    public static void write(long address, byte[] src) {
        bytes(address, src.length).put(src);
    }

    public static void read(long address, float[] dst) {
        floats(address, dst.length).get(dst);
    }

    public static void read(long address, double[] dst) {
        doubles(address, dst.length).get(dst);
    }

    public static void read(long address, int[] dst) {
        ints(address, dst.length).get(dst);
    }

    public static void read(long address, long[] dst) {
        longs(address, dst.length).get(dst);
    }

    public static void read(long address, short[] dst) {
        shorts(address, dst.length).get(dst);
    }

    public static void read(long address, byte[] dst) {
        bytes(address, dst.length).get(dst);
    }

    /** A little-endian (native order) direct buffer over {@code bytes} at {@code address}. */
    public static ByteBuffer view(long address, long bytes) {
        if (bytes > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("a ByteBuffer view is limited to 2 GiB, asked " + bytes + " bytes");
        }
        return bytes(address, bytes).asByteBuffer().order(ByteOrder.nativeOrder());
    }

    /** The native address of a direct buffer's first byte (its position is ignored). */
    public static long addressOf(ByteBuffer direct) {
        if (!direct.isDirect()) {
            throw new IllegalArgumentException("expected a direct ByteBuffer");
        }
        return new Pointer(direct).address();
    }
}
