package dev.cortado.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class IdxReaderTest {

    /** An IDX file: header for {@code type} and {@code dims}, then {@code payload}. */
    static byte[] idx(int type, int[] dims, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(4 + 4 * dims.length + payload.length);
        b.put((byte) 0).put((byte) 0).put((byte) type).put((byte) dims.length);
        for (int d : dims) {
            b.putInt(d);
        }
        b.put(payload);
        return b.array();
    }

    static byte[] gzip(byte[] data) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
            gz.write(data);
        }
        return out.toByteArray();
    }

    static int numel(int[] dims) {
        int n = 1;
        for (int d : dims) {
            n *= d;
        }
        return n;
    }

    static long[] longs(int[] dims) {
        long[] l = new long[dims.length];
        for (int i = 0; i < dims.length; i++) {
            l[i] = dims[i];
        }
        return l;
    }

    private static final int[][] SHAPES = {{5}, {2, 3}, {2, 3, 2}, {1, 2, 3, 2}};

    @Test
    void everyElementTypeEveryRankGzAndPlain() throws IOException {
        for (int[] dims : SHAPES) {
            int n = numel(dims);
            for (boolean gz : new boolean[] {false, true}) {
                // 0x08 ubyte
                byte[] ub = new byte[n];
                for (int i = 0; i < n; i++) {
                    ub[i] = (byte) (250 - i * 7);
                }
                try (Tensor t = read(idx(0x08, dims, ub), gz)) {
                    assertEquals(DType.UINT8, t.dtype());
                    assertArrayEquals(longs(dims), t.dims());
                    assertEquals(Device.CPU, t.device());
                    double[] v = t.toDoubleArray();
                    for (int i = 0; i < n; i++) {
                        assertEquals(ub[i] & 0xFF, v[i]);
                    }
                }
                // 0x09 byte
                byte[] sb = new byte[n];
                for (int i = 0; i < n; i++) {
                    sb[i] = (byte) (i * 37 - 100);
                }
                try (Tensor t = read(idx(0x09, dims, sb), gz)) {
                    assertEquals(DType.INT8, t.dtype());
                    assertArrayEquals(longs(dims), t.dims());
                    double[] v = t.toDoubleArray();
                    for (int i = 0; i < n; i++) {
                        assertEquals(sb[i], v[i]);
                    }
                }
                // 0x0B short -> int32
                ByteBuffer s = ByteBuffer.allocate(2 * n);
                for (int i = 0; i < n; i++) {
                    s.putShort((short) (i * 1000 - 12000));
                }
                try (Tensor t = read(idx(0x0B, dims, s.array()), gz)) {
                    assertEquals(DType.INT32, t.dtype());
                    assertArrayEquals(longs(dims), t.dims());
                    int[] v = t.toIntArray();
                    for (int i = 0; i < n; i++) {
                        assertEquals(i * 1000 - 12000, v[i]);
                    }
                }
                // 0x0C int
                ByteBuffer ib = ByteBuffer.allocate(4 * n);
                for (int i = 0; i < n; i++) {
                    ib.putInt(i * 123_456_789 - 7);
                }
                try (Tensor t = read(idx(0x0C, dims, ib.array()), gz)) {
                    assertEquals(DType.INT32, t.dtype());
                    int[] v = t.toIntArray();
                    for (int i = 0; i < n; i++) {
                        assertEquals(i * 123_456_789 - 7, v[i]);
                    }
                }
                // 0x0D float
                ByteBuffer fb = ByteBuffer.allocate(4 * n);
                for (int i = 0; i < n; i++) {
                    fb.putFloat(i * 0.25f - 1.5f);
                }
                try (Tensor t = read(idx(0x0D, dims, fb.array()), gz)) {
                    assertEquals(DType.FLOAT32, t.dtype());
                    assertArrayEquals(longs(dims), t.dims());
                    float[] v = t.toFloatArray();
                    for (int i = 0; i < n; i++) {
                        assertEquals(i * 0.25f - 1.5f, v[i]);
                    }
                }
                // 0x0E double
                ByteBuffer db = ByteBuffer.allocate(8 * n);
                for (int i = 0; i < n; i++) {
                    db.putDouble(Math.PI * i - 1e300 * (i % 2));
                }
                try (Tensor t = read(idx(0x0E, dims, db.array()), gz)) {
                    assertEquals(DType.FLOAT64, t.dtype());
                    double[] v = t.toDoubleArray();
                    for (int i = 0; i < n; i++) {
                        assertEquals(Math.PI * i - 1e300 * (i % 2), v[i]);
                    }
                }
            }
        }
    }

    private static Tensor read(byte[] file, boolean gz) throws IOException {
        return IdxReader.read(gz ? gzip(file) : file, gz ? "test.idx.gz" : "test.idx");
    }

    @Test
    void readsFromPathGzippedOrNot(@TempDir Path dir) throws IOException {
        byte[] file = idx(0x08, new int[] {2, 2}, new byte[] {1, 2, 3, (byte) 255});
        Path plain = dir.resolve("a-idx2-ubyte");
        Path gz = dir.resolve("a-idx2-ubyte.gz");
        Files.write(plain, file);
        Files.write(gz, gzip(file));
        for (Path p : new Path[] {plain, gz}) {
            try (Tensor t = IdxReader.read(p)) {
                assertArrayEquals(new double[] {1, 2, 3, 255}, t.toDoubleArray());
            }
        }
    }

    private static void assertFails(byte[] file, String name, String... fragments) {
        IdxFormatException e = assertThrows(IdxFormatException.class, () -> IdxReader.read(file, name).close());
        assertTrue(e.getMessage().startsWith(name + ": "), e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "'" + f + "' missing from: " + e.getMessage());
        }
    }

    @Test
    void badMagic() throws IOException {
        byte[] f = idx(0x08, new int[] {2}, new byte[2]);
        f[0] = 0x12;
        assertFails(f, "bad.idx", "bad IDX magic", "0x12000801");
        byte[] g = idx(0x0A, new int[] {2}, new byte[2]);
        assertFails(g, "type.idx", "bad IDX magic", "unknown type byte 0x0A");
        assertFails(gzip(f), "bad.idx.gz", "bad IDX magic");
        assertFails(new byte[] {0, 0}, "short.idx", "truncated IDX header");
    }

    @Test
    void truncatedData() throws IOException {
        byte[] f = idx(0x08, new int[] {3, 4}, new byte[11]);
        assertFails(f, "trunc.idx", "truncated IDX data", "[3, 4]", "need 12 bytes", "only 11");
        assertFails(gzip(f), "trunc.idx.gz", "truncated IDX data");
        byte[] header = idx(0x08, new int[] {3, 4}, new byte[0]);
        byte[] cut = java.util.Arrays.copyOf(header, 8);
        assertFails(cut, "hdr.idx", "truncated IDX header", "rank 2");
        byte[] gz = gzip(idx(0x08, new int[] {100}, new byte[100]));
        assertFails(java.util.Arrays.copyOf(gz, gz.length - 10), "cut.gz", "truncated");
    }

    @Test
    void trailingGarbage() throws IOException {
        byte[] f = idx(0x0D, new int[] {2}, new byte[8 + 3]);
        assertFails(f, "tail.idx", "trailing garbage", "3 bytes after the 8 bytes");
        assertFails(gzip(f), "tail.idx.gz", "trailing garbage");
    }

    @Test
    void absurdDims() {
        assertFails(idx(0x08, new int[] {-1, 5}, new byte[0]), "neg.idx", "absurd IDX size 4294967295");
        assertFails(idx(0x0E, new int[] {65536, 65536}, new byte[0]), "huge.idx", "absurd IDX sizes",
                "[65536, 65536]");
    }

    @Test
    void emptyAndRankZero() throws IOException {
        try (Tensor t = IdxReader.read(idx(0x0C, new int[] {0, 3}, new byte[0]), "empty.idx")) {
            assertArrayEquals(new long[] {0, 3}, t.dims());
        }
        try (Tensor t = IdxReader.read(idx(0x0C, new int[] {}, new byte[] {0, 0, 1, 2}), "scalar.idx")) {
            assertEquals(0, t.rank());
            assertEquals(258, t.item());
        }
    }
}
