package dev.cortado.io;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Reads IDX files (the format of MNIST) into host tensors. A file, gzipped or not (detected from
 * its first two bytes), is: a magic of two zero bytes, a type byte and a rank byte; {@code rank}
 * big-endian int32 sizes; then the elements, big-endian, row-major.
 *
 * <table>
 * <caption>IDX element types and the tensor dtype they load as</caption>
 * <tr><th>type byte</th><th>IDX type</th><th>dtype</th></tr>
 * <tr><td>0x08</td><td>unsigned byte</td><td>uint8</td></tr>
 * <tr><td>0x09</td><td>signed byte</td><td>int8</td></tr>
 * <tr><td>0x0B</td><td>int16</td><td>int32 (Cortado has no int16; values are exact)</td></tr>
 * <tr><td>0x0C</td><td>int32</td><td>int32</td></tr>
 * <tr><td>0x0D</td><td>float32</td><td>float32</td></tr>
 * <tr><td>0x0E</td><td>float64</td><td>float64</td></tr>
 * </table>
 *
 * <p>So MNIST images (magic 0x00000803) load as uint8 [N, 28, 28] and labels (0x00000801) as
 * uint8 [N]. Any rank from 0 to 255 is read. Malformed input throws {@link IdxFormatException}
 * naming the file: a bad magic, an unknown type, absurd sizes (negative, or more than
 * {@link #MAX_BYTES} bytes of data, or of tensor once int16 is widened to int32), fewer data
 * bytes than the sizes announce (truncated), or bytes after the data (trailing garbage).
 */
public final class IdxReader {
    /** Largest payload read: what one Java array holds. */
    public static final long MAX_BYTES = Integer.MAX_VALUE - 8;

    private IdxReader() {
    }

    /** Reads the IDX file at {@code path}. */
    public static Tensor read(Path path) throws IOException {
        try (InputStream in = Files.newInputStream(path)) {
            return read(in, path.toString());
        }
    }

    /** Reads an IDX file from the classpath resource {@code resource} (absolute, e.g. {@code /dev/...}). */
    public static Tensor readResource(String resource) throws IOException {
        try (InputStream in = Resources.open(resource)) {
            return read(in, "classpath:" + resource);
        }
    }

    /** Reads IDX bytes (gzipped or not) held in memory; {@code name} is used in messages. */
    public static Tensor read(byte[] data, String name) throws IOException {
        return read(new ByteArrayInputStream(data), name);
    }

    /**
     * Reads one IDX file from {@code in} (gzipped or not), to its end; {@code name} names it in
     * error messages. The stream is not closed.
     */
    public static Tensor read(InputStream in, String name) throws IOException {
        try {
            return readUnwrapped(in, name);
        } catch (java.io.EOFException | java.util.zip.ZipException e) {
            IdxFormatException f = new IdxFormatException(name + ": truncated or corrupt gzip data: " + e.getMessage());
            f.initCause(e);
            throw f;
        }
    }

    private static Tensor readUnwrapped(InputStream in, String name) throws IOException {
        InputStream body = Resources.maybeGunzip(in);
        byte[] magic = body.readNBytes(4);
        if (magic.length < 4) {
            throw new IdxFormatException(name + ": truncated IDX header: " + magic.length
                    + " bytes where a 4-byte magic number is expected");
        }
        int magicValue = ByteBuffer.wrap(magic).getInt();
        if (magic[0] != 0 || magic[1] != 0) {
            throw new IdxFormatException(name + ": bad IDX magic number 0x" + hex(magicValue)
                    + " (expected 0x0000TTRR: two zero bytes, a type and a rank; e.g. 0x00000803 for images)");
        }
        int type = magic[2] & 0xFF;
        int rank = magic[3] & 0xFF;
        DType dtype;
        int elementBytes;
        switch (type) {
            case 0x08: dtype = DType.UINT8; elementBytes = 1; break;
            case 0x09: dtype = DType.INT8; elementBytes = 1; break;
            case 0x0B: dtype = DType.INT32; elementBytes = 2; break;
            case 0x0C: dtype = DType.INT32; elementBytes = 4; break;
            case 0x0D: dtype = DType.FLOAT32; elementBytes = 4; break;
            case 0x0E: dtype = DType.FLOAT64; elementBytes = 8; break;
            default:
                throw new IdxFormatException(name + ": bad IDX magic number 0x" + hex(magicValue) + ": unknown type byte 0x"
                        + String.format("%02X", type) + " (known: 0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, "
                        + "0x0D float, 0x0E double)");
        }
        byte[] header = body.readNBytes(4 * rank);
        if (header.length < 4 * rank) {
            throw new IdxFormatException(name + ": truncated IDX header: rank " + rank + " needs " + 4 * rank
                    + " bytes of sizes, found " + header.length);
        }
        ByteBuffer h = ByteBuffer.wrap(header);
        long[] dims = new long[rank];
        long count = 1;
        for (int i = 0; i < rank; i++) {
            int d = h.getInt();
            if (d < 0) {
                throw new IdxFormatException(name + ": absurd IDX size " + Integer.toUnsignedLong(d) + " in dimension " + i
                        + " (more than 2^31 - 1)");
            }
            dims[i] = d;
            count = d == 0 ? 0 : (count > MAX_BYTES / d ? MAX_BYTES + 1 : count * d);
        }
        long bytes = count > MAX_BYTES / elementBytes ? MAX_BYTES + 1 : count * elementBytes;
        // int16 data widens to int32: the tensor needs twice the bytes the file holds
        long tensorBytes = count > MAX_BYTES / dtype.byteSize() ? MAX_BYTES + 1 : count * dtype.byteSize();
        if (bytes > MAX_BYTES || tensorBytes > MAX_BYTES) {
            throw new IdxFormatException(name + ": absurd IDX sizes " + Arrays.toString(dims) + ": more than "
                    + MAX_BYTES + " bytes of data");
        }
        byte[] payload = body.readNBytes((int) bytes);
        if (payload.length < bytes) {
            throw new IdxFormatException(name + ": truncated IDX data: sizes " + Arrays.toString(dims) + " need " + bytes
                    + " bytes of data, found only " + payload.length);
        }
        long trailing = 0;
        byte[] skip = new byte[8192];
        for (int r; (r = body.read(skip)) > 0; ) {
            trailing += r;
        }
        if (trailing > 0) {
            throw new IdxFormatException(name + ": trailing garbage: " + trailing + " bytes after the " + bytes
                    + " bytes of data that the IDX sizes " + Arrays.toString(dims) + " announce");
        }
        return toTensor(payload, type, dtype, dims);
    }

    /** Always on the host (Tensor.of would follow the default device). */
    private static Tensor toTensor(byte[] payload, int type, DType dtype, long[] dims) {
        if (type == 0x08 || type == 0x09) {
            return Tensor.fromBuffer(ByteBuffer.wrap(payload), dtype, Device.CPU, dims);
        }
        if (type == 0x0B) {
            ByteBuffer src = ByteBuffer.wrap(payload).order(ByteOrder.BIG_ENDIAN);
            ByteBuffer dst = ByteBuffer.allocate(payload.length * 2).order(ByteOrder.LITTLE_ENDIAN);
            while (src.hasRemaining()) {
                dst.putInt(src.getShort());
            }
            dst.flip();
            return Tensor.fromBuffer(dst, dtype, Device.CPU, dims);
        }
        int w = type == 0x0E ? 8 : 4;
        for (int i = 0; i < payload.length; i += w) {
            for (int a = i, b = i + w - 1; a < b; a++, b--) {
                byte t = payload[a];
                payload[a] = payload[b];
                payload[b] = t;
            }
        }
        return Tensor.fromBuffer(ByteBuffer.wrap(payload), dtype, Device.CPU, dims);
    }

    private static String hex(int v) {
        return String.format("%08X", v);
    }
}
