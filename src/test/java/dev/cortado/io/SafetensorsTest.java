package dev.cortado.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsTest {
    @TempDir
    Path dir;

    private final Random rng = new Random(20261129);

    @AfterEach
    void clearHook() {
        Safetensors.writeHook = null;
    }

    // ================================================================ helpers

    /** A host tensor of {@code dtype} with fresh random values (never all zeros). */
    Tensor random(DType dtype, long... dims) {
        int n = Math.toIntExact(Shape.of(dims).numel());
        switch (dtype) {
            case FLOAT32: case FLOAT64: case FLOAT16: case BFLOAT16: {
                float[] v = new float[n];
                for (int i = 0; i < n; i++) {
                    v[i] = (float) rng.nextGaussian() * 3;
                }
                try (Tensor f = Tensor.of(v, dims)) {
                    return f.to(dtype);
                }
            }
            case INT32: {
                int[] v = rng.ints(n).toArray();
                return Tensor.of(v, dims);
            }
            case INT64: {
                long[] v = rng.longs(n).toArray();
                return Tensor.of(v, dims);
            }
            case INT8: case UINT8: case BOOL: {
                byte[] v = new byte[n];
                rng.nextBytes(v);
                if (dtype == DType.BOOL) {
                    for (int i = 0; i < n; i++) {
                        v[i] = (byte) (v[i] & 1);
                    }
                }
                return Tensor.of(v, dtype, dims);
            }
            default:
                throw new IllegalArgumentException(dtype.toString());
        }
    }

    static byte[] le64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array();
    }

    /** A safetensors file: the header text (padded to 8 with spaces) and the data. */
    static byte[] file(String header, byte[] data) {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        int pad = (8 - h.length % 8) % 8;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(le64(h.length + pad));
        out.writeBytes(h);
        for (int i = 0; i < pad; i++) {
            out.write(' ');
        }
        out.writeBytes(data);
        return out.toByteArray();
    }

    Path put(String name, byte[] bytes) throws IOException {
        Path p = dir.resolve(name);
        Files.write(p, bytes);
        return p;
    }

    /** Reading {@code bytes} fails with a CheckpointFormatException naming the file and {@code fragment}. */
    void assertBad(byte[] bytes, String fragment) throws IOException {
        Path p = put("bad.safetensors", bytes);
        long live = CpuBackend.liveAllocations();
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class,
                () -> Safetensors.read(p, Device.CPU).close());
        assertTrue(e.getMessage().contains(p.toString()), e.getMessage());
        assertTrue(e.getMessage().contains(fragment), () -> "expected \"" + fragment + "\" in: " + e.getMessage());
        assertEquals(live, CpuBackend.liveAllocations(), "tensors leaked by a failed read");
    }

    static String entry(String name, String dtype, String shape, long begin, long end) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + begin + ","
                + end + "]}";
    }

    private List<Path> tempFiles() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().endsWith(".tmp")).collect(Collectors.toList());
        }
    }

    // ================================================================ the bytes of the format

    /** The example file, byte by byte from the format description: a F32 [2, 3] and a U8 [3]. */
    static final byte[] HAND_BUILT;

    static {
        String header = "{\"__metadata__\":{\"format\":\"pt\"},"
                + "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                + "\"ids\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[24,27]}}";
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        // header length 149 + 3 spaces of padding = 152 = 0x98, little-endian uint64
        out.writeBytes(new byte[] {(byte) 0x98, 0, 0, 0, 0, 0, 0, 0});
        byte[] h = header.getBytes(StandardCharsets.US_ASCII);
        if (h.length != 149) {
            throw new AssertionError("header length " + h.length);
        }
        out.writeBytes(h);
        out.writeBytes(new byte[] {' ', ' ', ' '});
        // weight = [[1, 2, -0.5], [0.25, 3, -4]] as little-endian IEEE float32
        int[] weight = {
            0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0xbf,
            0x00, 0x00, 0x80, 0x3e, 0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0xc0};
        for (int b : weight) {
            out.write(b);
        }
        // ids = [7, 255, 0]
        out.writeBytes(new byte[] {7, (byte) 255, 0});
        HAND_BUILT = out.toByteArray();
    }

    @Test
    void readsAFileBuiltByHandFromTheSpec() throws IOException {
        assertEquals(8 + 152 + 27, HAND_BUILT.length);
        Path p = put("hand.safetensors", HAND_BUILT);
        try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
            assertEquals(List.of("weight", "ids"), new ArrayList<>(c.tensors().keySet()));
            assertEquals(Map.of("format", "pt"), c.metadata());
            Tensor w = c.get("weight");
            assertEquals(DType.FLOAT32, w.dtype());
            assertEquals(Shape.of(2, 3), w.shape());
            assertArrayEquals(new float[] {1, 2, -0.5f, 0.25f, 3, -4}, w.toFloatArray());
            Tensor ids = c.get("ids");
            assertEquals(DType.UINT8, ids.dtype());
            assertArrayEquals(new int[] {7, 255, 0}, ids.toIntArray());
        }
    }

    @Test
    void writerProducesExactlyTheSpecBytes() throws IOException {
        Path p = dir.resolve("ours.safetensors");
        try (Tensor w = Tensor.of(new float[] {1, 2, -0.5f, 0.25f, 3, -4}, 2, 3);
             Tensor ids = Tensor.of(new byte[] {7, (byte) 255, 0}, DType.UINT8, 3)) {
            Map<String, Tensor> m = new LinkedHashMap<>();
            m.put("ids", ids); // the smaller element size goes last whatever the map order
            m.put("weight", w);
            Safetensors.write(p, m, Map.of("format", "pt"));
        }
        assertArrayEquals(HAND_BUILT, Files.readAllBytes(p));
        assertTrue(tempFiles().isEmpty());
    }

    @Test
    void readsHeadersOtherWritersMayProduce() throws IOException {
        // header order differs from data order, whitespace in the JSON, no padding, no metadata,
        // a scalar and an empty tensor
        String header = " { \"b\" : {\"data_offsets\":[8,16],\"shape\":[],\"dtype\":\"F64\"},\n"
                + "\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"e\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[16,16]} }";
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer data = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putInt(-5).putInt(123456).putDouble(Math.PI);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(le64(h.length));
        out.writeBytes(h);
        out.writeBytes(data.array());
        Path p = put("other.safetensors", out.toByteArray());
        try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
            assertEquals(List.of("a", "b", "e"), new ArrayList<>(c.tensors().keySet()));
            assertArrayEquals(new int[] {-5, 123456}, c.get("a").toIntArray());
            assertEquals(0, c.get("b").rank());
            assertEquals(Math.PI, c.get("b").item());
            assertEquals(Shape.of(0, 3), c.get("e").shape());
            assertTrue(c.metadata().isEmpty());
        }
        Safetensors.Header hd = Safetensors.readHeader(p);
        assertEquals(8 + h.length, hd.dataStart());
        assertEquals(8, hd.tensors().get(1).begin());
    }

    // ================================================================ round trips

    @Test
    void roundTripsEveryDtypeAndOddShapes() throws IOException {
        DType[] types = {DType.FLOAT32, DType.FLOAT64, DType.FLOAT16, DType.BFLOAT16, DType.INT8, DType.UINT8,
            DType.INT32, DType.INT64, DType.BOOL};
        long[][] shapes = {{}, {1}, {7}, {3, 5}, {2, 0, 3}, {1, 3, 1, 5}};
        Map<String, Tensor> m = new LinkedHashMap<>();
        try {
            for (DType t : types) {
                for (long[] s : shapes) {
                    m.put(t + "/" + Shape.of(s) + "/\u00e9\"\\", random(t, s));
                }
            }
            Map<String, String> meta = new LinkedHashMap<>();
            meta.put("step", "17");
            meta.put("note", "quote \" backslash \\ newline \n unicode \u00fc\ud83d\ude00");
            Path p = dir.resolve("all.safetensors");
            Safetensors.write(p, m, meta);
            assertEquals(m.values().stream().mapToLong(x -> x.dtype().bytesFor(x.numel())).sum(),
                    Files.size(p) - Safetensors.readHeader(p).dataStart());
            try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
                assertEquals(meta, c.metadata());
                assertEquals(m.keySet(), c.tensors().keySet());
                for (Map.Entry<String, Tensor> e : m.entrySet()) {
                    Tensor got = c.get(e.getKey());
                    assertEquals(e.getValue().dtype(), got.dtype(), e.getKey());
                    assertEquals(e.getValue().shape(), got.shape(), e.getKey());
                    assertArrayEquals(e.getValue().toByteArray(), got.toByteArray(), e.getKey());
                }
                // every tensor's data is aligned to its element size (largest element first)
                for (Safetensors.TensorInfo i : Safetensors.readHeader(p).tensors()) {
                    assertEquals(0, (Safetensors.readHeader(p).dataStart() + i.begin()) % i.dtype().byteSize(), i.name());
                }
            }
        } finally {
            m.values().forEach(Tensor::close);
        }
    }

    @Test
    void writesNonContiguousViewsAndLargeTensorsInPieces() throws IOException {
        long n = Safetensors.CHUNK_BYTES / 4 * 2 + 3; // three pieces
        try (Tensor base = random(DType.FLOAT32, 5, 7);
             Tensor t = base.transpose(0, 1);
             Tensor sliced = base.slice(1, 1, 7, 2);
             Tensor big = random(DType.FLOAT32, n)) {
            Path p = dir.resolve("views.safetensors");
            Map<String, Tensor> m = new LinkedHashMap<>();
            m.put("t", t);
            m.put("s", sliced);
            m.put("big", big);
            List<Long> positions = new ArrayList<>();
            Safetensors.writeHook = (name, pos) -> positions.add(pos);
            Safetensors.write(p, m, null);
            assertEquals(5, positions.size(), "t, s and three pieces of big");
            try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
                assertEquals(Shape.of(7, 5), c.get("t").shape());
                assertArrayEquals(t.toFloatArray(), c.get("t").toFloatArray());
                assertArrayEquals(sliced.toFloatArray(), c.get("s").toFloatArray());
                assertArrayEquals(big.toFloatArray(), c.get("big").toFloatArray());
            }
        }
    }

    @Test
    void selectiveReadAndTake() throws IOException {
        Path p = put("hand.safetensors", HAND_BUILT);
        Tensor kept;
        try (Safetensors.Contents c = Safetensors.read(p, Device.CPU, "ids"::equals)) {
            assertEquals(List.of("ids"), new ArrayList<>(c.tensors().keySet()));
            kept = c.take("ids");
            assertTrue(c.tensors().isEmpty());
            var e = assertThrows(java.util.NoSuchElementException.class, () -> c.get("weight"));
            assertTrue(e.getMessage().contains("weight"), e.getMessage());
        }
        try (kept) {
            assertArrayEquals(new int[] {7, 255, 0}, kept.toIntArray());
        }
    }

    @Test
    void refusesWhatSafetensorsCannotHold() throws IOException {
        Path p = dir.resolve("x.safetensors");
        try (Tensor i4 = Tensor.of(new byte[] {1, -2, 3}, DType.INT4, 3);
             Tensor f = Tensor.ones(DType.FLOAT32, 2)) {
            var e = assertThrows(IllegalArgumentException.class, () -> Safetensors.write(p, Map.of("q", i4),
                    Map.of(Safetensors.INT4_KEY_PREFIX + "q", "[3]")));
            assertTrue(e.getMessage().contains("reserved"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> Safetensors.write(p, Map.of(Safetensors.METADATA_KEY, f), null));
            assertTrue(e.getMessage().contains("reserved"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> Safetensors.write(p, Map.of("bad\ud800", f), null));
            assertTrue(e.getMessage().contains("surrogate"), e.getMessage());
        }
        Tensor closed = Tensor.ones(DType.FLOAT32, 2);
        closed.close();
        assertThrows(IllegalStateException.class, () -> Safetensors.write(p, Map.of("c", closed), null));
        assertFalse(Files.exists(p));
        assertTrue(tempFiles().isEmpty());
    }

    @Test
    void int4IsStoredAsU8BytesWithItsShapeInTheMetadata() throws IOException {
        byte[] values = new byte[15];
        for (int i = 0; i < values.length; i++) {
            values[i] = (byte) (rng.nextInt(16) - 8);
        }
        Path p = dir.resolve("q.safetensors");
        try (Tensor q = Tensor.of(values, DType.INT4, 3, 5); Tensor scale = random(DType.FLOAT16, 3)) {
            Safetensors.write(p, Map.of("q", q, "scale", scale), Map.of("quant", "int4"));
            Safetensors.Header h = Safetensors.readHeader(p);
            assertEquals(Map.of("quant", "int4"), h.metadata());
            try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
                Tensor got = c.get("q");
                assertEquals(DType.INT4, got.dtype());
                assertEquals(Shape.of(3, 5), got.shape());
                assertArrayEquals(q.toByteArray(), got.toByteArray());
                try (Tensor wide = got.to(DType.INT8)) {
                    assertArrayEquals(values, wide.toByteArray());
                }
                assertEquals(Map.of("quant", "int4"), c.metadata());
            }
        }
        // what other tools see: 8 packed bytes as U8 [8] and the marker in the metadata
        byte[] raw = Files.readAllBytes(p);
        String header = new String(raw, 8, (int) ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).getLong(0),
                StandardCharsets.UTF_8);
        assertTrue(header.contains("\"cortado.int4:q\":\"[3, 5]\""), header);
        assertTrue(header.contains("\"q\":{\"dtype\":\"U8\",\"shape\":[8]"), header);
        // a marker that does not fit its tensor is a format error
        assertBad(file("{\"__metadata__\":{\"cortado.int4:x\":\"[3]\"}," + entry("x", "F32", "[2]", 0, 8) + "}",
                new byte[8]), "marks tensor \"x\" as int4 [3]");
        assertBad(file("{\"__metadata__\":{\"cortado.int4:y\":\"[3]\"}," + entry("x", "U8", "[2]", 0, 2) + "}",
                new byte[2]), "do not exist");
        assertBad(file("{\"__metadata__\":{\"cortado.int4:x\":\"3 x 5\"}," + entry("x", "U8", "[2]", 0, 2) + "}",
                new byte[2]), "not a shape");
    }

    // ================================================================ atomicity

    @Test
    void aFailureMidWriteLeavesTheOldFileIntact() throws IOException {
        Path p = dir.resolve("model.safetensors");
        try (Tensor a = random(DType.FLOAT32, 100); Tensor b = random(DType.INT64, 50)) {
            Safetensors.write(p, Map.of("a", a, "b", b), Map.of("v", "1"));
        }
        byte[] old = Files.readAllBytes(p);
        try (Tensor a = random(DType.FLOAT32, 300); Tensor b = random(DType.INT64, 70)) {
            Map<String, Tensor> m = new LinkedHashMap<>();
            m.put("a", a);
            m.put("b", b);
            // b (8-byte elements) is written first; fail on a, when b is already in the file
            Safetensors.writeHook = (name, pos) -> {
                if (name.equals("a")) {
                    throw new IOException("simulated disk failure at byte " + pos);
                }
            };
            IOException e = assertThrows(IOException.class, () -> Safetensors.write(p, m, Map.of("v", "2")));
            assertTrue(e.getMessage().contains("simulated"));
            Safetensors.writeHook = (name, pos) -> {
                throw new IllegalStateException("simulated bug");
            };
            assertThrows(IllegalStateException.class, () -> Safetensors.write(p, m, Map.of("v", "3")));
        }
        assertArrayEquals(old, Files.readAllBytes(p));
        assertTrue(tempFiles().isEmpty(), "temporary files left: " + tempFiles());
        try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
            assertEquals("1", c.metadata().get("v"));
            assertEquals(100, c.get("a").numel());
        }
        // a failed first write leaves no file at all
        Path fresh = dir.resolve("fresh.safetensors");
        try (Tensor a = random(DType.FLOAT32, 3)) {
            assertThrows(IllegalStateException.class, () -> Safetensors.write(fresh, Map.of("a", a), null));
        }
        assertFalse(Files.exists(fresh));
        assertTrue(tempFiles().isEmpty());
    }

    @Test
    void overwritesAtomicallyAndKeepsNoTemporaryFiles() throws IOException {
        Path p = dir.resolve("m.safetensors");
        for (int i = 0; i < 3; i++) {
            try (Tensor a = Tensor.full(i, DType.FLOAT32, Device.CPU, 4)) {
                Safetensors.write(p, Map.of("a", a), Map.of("i", "" + i));
            }
            try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
                assertArrayEquals(new float[] {i, i, i, i}, c.get("a").toFloatArray());
            }
        }
        assertTrue(tempFiles().isEmpty());
        try (Tensor a = Tensor.ones(DType.FLOAT32, 1)) {
            assertThrows(IOException.class,
                    () -> Safetensors.write(dir.resolve("no/such/dir/x.safetensors"), Map.of("a", a), null));
        }
    }

    // ================================================================ malformed files

    @Test
    void malformedFilesGiveClearErrors() throws IOException {
        String ok = entry("x", "F32", "[2]", 0, 8);
        byte[] eight = new byte[8];
        assertBad(new byte[] {1, 2, 3}, "too short");
        assertBad(le64(1L << 40), "limit");
        assertBad(le64(-1), "limit");
        byte[] beyond = file("{" + ok + "}", eight);
        ByteBuffer.wrap(beyond).order(ByteOrder.LITTLE_ENDIAN).putLong(0, beyond.length);
        assertBad(beyond, "truncated");
        assertBad(concat(le64(1), new byte[] {'{'}), "too short to hold");
        byte[] badUtf8 = file("{\"x\u00e9\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight);
        badUtf8[8 + 3] = (byte) 0xC3;
        badUtf8[8 + 4] = (byte) 0x28;
        assertBad(badUtf8, "not valid UTF-8");
        assertBad(file("{" + ok, eight), "not valid JSON");
        assertBad(file("[1, 2]", new byte[0]), "not a JSON object");
        assertBad(file("{" + ok + "} x", eight), "not valid JSON");
        assertBad(file("{" + ok + "} {}", eight), "after its JSON object");
        assertBad(file("{" + entry("x", "F33", "[2]", 0, 8) + "}", eight), "unknown dtype \"F33\"");
        assertBad(file("{" + entry("x", "U16", "[4]", 0, 8) + "}", eight), "U16 is not supported");
        assertBad(file("{" + entry("x", "F32", "[3]", 0, 8) + "}", eight), "needs 12 bytes");
        assertBad(file("{" + entry("x", "F32", "[-2]", 0, 8) + "}", eight), "outside [0, 2^63)");
        assertBad(file("{" + entry("x", "F32", "[2.5]", 0, 8) + "}", eight), "non-negative integers");
        assertBad(file("{" + entry("x", "F32", "[99999999999,99999999999]", 0, 8) + "}", eight), "64 bits");
        assertBad(file("{" + entry("x", "F32", "[2]", 8, 0) + "}", eight), "end before they begin");
        assertBad(file("{" + entry("x", "F32", "[2]", 0, 8) + "," + entry("y", "F32", "[1]", 4, 8) + "}",
                new byte[12]), "overlaps");
        assertBad(file("{" + entry("x", "F32", "[1]", 4, 8) + "}", eight), "gap");
        assertBad(file("{" + ok + "}", new byte[12]), "trailing");
        assertBad(file("{" + ok + "}", new byte[5]), "truncated");
        assertBad(file("{" + ok + "," + ok + "}", eight), "names \"x\" twice");
        assertBad(file("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}," + ok + "}", eight), "\"a\" appears twice");
        assertBad(file("{\"x\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight),
                "\"dtype\" appears twice");
        assertBad(file("{\"__metadata__\":{\"a\":1}," + ok + "}", eight), "must be a string");
        assertBad(file("{\"__metadata__\":[]," + ok + "}", eight), "object of strings");
        assertBad(file("{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", eight), "missing data_offsets");
        assertBad(file("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"z\":1}}", eight),
                "unknown field \"z\"");
        assertBad(file("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", eight), "[begin, end]");
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] out = new byte[a.length + b.length];
        System.arraycopy(a, 0, out, 0, a.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    @Test
    void everyTruncationAndEveryHeaderByteFlipIsCaught() throws IOException {
        // truncated anywhere: always a clear error
        for (int len = 0; len < HAND_BUILT.length; len++) {
            byte[] cut = java.util.Arrays.copyOf(HAND_BUILT, len);
            Path p = put("cut.safetensors", cut);
            assertThrows(CheckpointFormatException.class, () -> Safetensors.read(p, Device.CPU).close(), "length " + len);
        }
        assertBad(java.util.Arrays.copyOf(HAND_BUILT, HAND_BUILT.length - 1), "truncated");
        // flipped structural bytes: clear errors
        byte[] flipped = HAND_BUILT.clone();
        flipped[8] = '[';
        assertBad(flipped, "not a JSON object");
        flipped = HAND_BUILT.clone();
        flipped[0] ^= 0x08; // 144 bytes: the JSON is cut short
        assertBad(flipped, "not valid JSON");
        flipped = HAND_BUILT.clone();
        flipped[5] = 0x7f;
        assertBad(flipped, "limit");
        // any flip of any bit in the length and header: either a clear error or a consistent file
        // (a flip inside a name or metadata value is undetectable by design); never anything else
        long live = CpuBackend.liveAllocations();
        int clear = 0;
        for (int i = 0; i < 8 + 152; i++) {
            for (int bit = 0; bit < 8; bit++) {
                byte[] f = HAND_BUILT.clone();
                f[i] ^= (byte) (1 << bit);
                Path p = put("flip.safetensors", f);
                try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
                    long bytes = c.tensors().values().stream().mapToLong(t -> t.dtype().bytesFor(t.numel())).sum();
                    assertEquals(27, bytes, "byte " + i + " bit " + bit);
                } catch (CheckpointFormatException e) {
                    assertTrue(e.getMessage().startsWith(p.toString()), e.getMessage());
                    clear++;
                }
            }
        }
        assertTrue(clear > 8 * 100, "only " + clear + " flips detected");
        assertEquals(live, CpuBackend.liveAllocations());
    }

    @Test
    void aFailureWhileReadingFreesTheTensorsAlreadyCreated() throws IOException {
        Path p = put("hand.safetensors", HAND_BUILT);
        long live = CpuBackend.liveAllocations();
        RuntimeException e = assertThrows(RuntimeException.class, () -> Safetensors.read(p, Device.CPU, name -> {
            if (name.equals("ids")) {
                throw new IllegalStateException("simulated failure after weight was read");
            }
            return true;
        }));
        assertTrue(e.getMessage().contains("simulated"));
        assertEquals(live, CpuBackend.liveAllocations());
    }

    // ================================================================ other tools' files

    /**
     * Files written by the reference implementation (the {@code safetensors} Python package; see
     * src/test/resources/safetensors/make_fixtures.py, which also states the value formula
     * recomputed here): every dtype it writes from numpy, a scalar, an empty tensor, metadata,
     * and a file whose data ends at an odd offset.
     */
    @Test
    void readsFilesWrittenByTheReferenceLibrary() throws IOException, java.net.URISyntaxException {
        Path numpy = Path.of(SafetensorsTest.class.getResource("/safetensors/reference-numpy.safetensors").toURI());
        Object[][] expected = {
            {"f32.matrix", DType.FLOAT32, new long[] {3, 5}},
            {"f64.cube", DType.FLOAT64, new long[] {2, 3, 4}},
            {"f16.vector", DType.FLOAT16, new long[] {7}},
            {"i8.odd", DType.INT8, new long[] {5, 1, 3}},
            {"u8.bytes", DType.UINT8, new long[] {13}},
            {"i32.row", DType.INT32, new long[] {1, 9}},
            {"i64.long", DType.INT64, new long[] {4, 2}},
            {"bool.mask", DType.BOOL, new long[] {2, 5}},
            {"f32.scalar", DType.FLOAT32, new long[] {}},
            {"f32.empty", DType.FLOAT32, new long[] {0, 3}},
        };
        Safetensors.Header h = Safetensors.readHeader(numpy);
        assertEquals(expected.length, h.tensors().size());
        try (Safetensors.Contents c = Safetensors.read(numpy, Device.CPU)) {
            assertEquals(Map.of("producer", "safetensors.numpy", "step", "7"), c.metadata());
            for (Object[] e : expected) {
                Tensor t = c.get((String) e[0]);
                assertEquals(e[1], t.dtype(), (String) e[0]);
                assertArrayEquals((long[]) e[2], t.dims(), (String) e[0]);
                assertArrayEquals(referenceValues((DType) e[1], t.numel()), t.toDoubleArray(), (String) e[0]);
            }
        }
        Path odd = Path.of(SafetensorsTest.class.getResource("/safetensors/reference-odd-offset.safetensors").toURI());
        try (Safetensors.Contents c = Safetensors.read(odd, Device.CPU)) {
            assertArrayEquals(new long[] {200, 300}, c.get("big").dims());
            assertArrayEquals(referenceValues(DType.FLOAT32, 60_000), c.get("big").toDoubleArray());
            assertArrayEquals(new double[] {0}, c.get("a.tiny").toDoubleArray(), "the last byte of the file");
        }
    }

    /** make_fixtures.py's formula: v(i) = (7 i mod 23) - 11 (x 0.25 for floats; i mod 23 for u8; v mod 3 == 0 for bool). */
    static double[] referenceValues(DType dtype, long n) {
        double[] v = new double[Math.toIntExact(n)];
        for (int i = 0; i < v.length; i++) {
            long x = (7L * i) % 23 - 11;
            v[i] = switch (dtype) {
                case UINT8 -> i % 23;
                case BOOL -> x % 3 == 0 ? 1 : 0;
                case FLOAT32, FLOAT64, FLOAT16, BFLOAT16 -> x * 0.25;
                default -> x;
            };
        }
        return v;
    }

    // ================================================================ GPU

    @Test
    @Tag("gpu")
    void cudaTensorsAreWrittenAndReadThroughTheHost() throws IOException {
        Device gpu = Device.cuda(0);
        Assumptions.assumeTrue(gpu.isAvailable(), "no usable CUDA device");
        long n = Safetensors.CHUNK_BYTES / 8 + 5; // two pieces of float64
        try (Tensor h1 = random(DType.FLOAT64, n); Tensor h2 = random(DType.BFLOAT16, 3, 5);
             Tensor d1 = h1.to(gpu); Tensor d2full = h2.to(gpu); Tensor d2 = d2full.transpose(0, 1)) {
            Path p = dir.resolve("gpu.safetensors");
            Safetensors.write(p, Map.of("d1", d1, "d2", d2), null);
            try (Safetensors.Contents c = Safetensors.read(p, gpu)) {
                assertEquals(gpu, c.get("d1").device());
                assertArrayEquals(h1.toByteArray(), c.get("d1").toByteArray());
                try (Tensor t = h2.transpose(0, 1)) {
                    assertArrayEquals(t.toByteArray(), c.get("d2").toByteArray());
                }
            }
            try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
                assertArrayEquals(h1.toByteArray(), c.get("d1").toByteArray());
            }
        }
    }

    // ================================================================ throughput (run by hand)

    /**
     * Write and read throughput of a ~200 MB checkpoint (50 float32 tensors of 1 Mi elements).
     * Run with {@code -Dcortado.bench=true}; the read is from the page cache.
     */
    @Test
    @EnabledIfSystemProperty(named = "cortado.bench", matches = "true")
    void throughputOf200MB() throws IOException {
        Map<String, Tensor> m = new LinkedHashMap<>();
        try {
            for (int i = 0; i < 50; i++) {
                m.put("layer" + i + ".weight", Tensor.full(i, DType.FLOAT32, Device.CPU, 1024, 1024));
            }
            Path p = dir.resolve("bench.safetensors");
            double mb = 50 * 4.0 * 1024 * 1024 / 1e6;
            for (int rep = 0; rep < 3; rep++) {
                long t0 = System.nanoTime();
                Checkpoint.save(p, m, Map.of(), Map.of("step", "" + rep));
                long t1 = System.nanoTime();
                try (Checkpoint.Loaded ck = Checkpoint.load(p, Device.CPU)) {
                    long t2 = System.nanoTime();
                    assertEquals(50, ck.model().size());
                    System.out.printf("safetensors %.0f MB: write (with fsync) %.0f ms = %.0f MB/s, read %.0f ms = %.0f MB/s%n",
                            mb, (t1 - t0) / 1e6, mb / ((t1 - t0) / 1e9), (t2 - t1) / 1e6, mb / ((t2 - t1) / 1e9));
                }
            }
        } finally {
            m.values().forEach(Tensor::close);
        }
    }
}
