package dev.cortado.io;

import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import dev.cortado.backend.kernels.HostMemory;
import dev.cortado.tensor.AtomicFiles;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.function.Predicate;
import java.util.zip.CRC32C;

/**
 * Reads and writes the <a href="https://github.com/huggingface/safetensors">safetensors</a>
 * format, the tensor file format of Hugging Face tools:
 *
 * <pre>
 *   8 bytes   N, the header length: unsigned little-endian int64
 *   N bytes   UTF-8 JSON object, padded with spaces (0x20); {"__metadata__": {"k": "v", ...},
 *             "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 *   rest      the tensors' bytes, row-major, little-endian; offsets count from the first byte
 *             after the header and the tensors cover the rest exactly: no gaps, no overlaps
 * </pre>
 *
 * <p>Dtypes: F32, F64, F16, BF16, I8, U8, I32, I64, BOOL, F8_E4M3 and F8_E5M2 map to the Cortado dtypes of the same
 * meaning. Safetensors dtypes Cortado has no type for (I16, U16, U32, U64, F8_E8M0, the F6/F4 formats,
 * C64) are refused when reading, with the tensor's name. Safetensors has no 4-bit dtype: a
 * packed {@link DType#INT4} tensor is stored as its raw bytes, a U8 tensor of
 * {@code ceil(numel / 2)} elements (two values per byte, low nibble first), and the metadata entry
 * {@code "cortado.int4:<name>": "[d0, d1, ...]"} records its real shape; Cortado reads it back as
 * int4 (and hides that entry from {@link Contents#metadata()}), other tools see the U8 bytes.
 *
 * <p><b>Checksums.</b> On request ({@link #write(Path, Map, Map, boolean)}; {@link Checkpoint#save}
 * always asks) the writer records the CRC32C of each tensor's bytes in the metadata, as
 * {@code "cortado.crc32c:<name>": "<8 hex digits>"} (other tools see ordinary metadata strings);
 * the reader checks every tensor it reads against its entry, when there is one, and throws
 * {@link CheckpointFormatException} naming the file and the tensor on a mismatch (a file damaged
 * after it was written: a flipped bit on disk, a bad copy). Files without those entries (written
 * by other tools) are read without that check. The entries are hidden from
 * {@link Contents#metadata()}.
 *
 * <p><b>Writing</b> ({@link #write}) is atomic: the data goes to a temporary file beside the
 * target, is forced to disk (fsync), and is renamed over the target, and the directory is then
 * forced too, so the target is either the old file or the complete new one, never a mix, even
 * if the process is killed at any point (tested with SIGKILL, {@code CrashSafetyTest}); on
 * failure the temporary file is deleted and the error (a full disk, an I/O error) is thrown. A
 * process killed mid-save can leave its temporary file {@code .NAME.RANDOM.tmp} beside the
 * target, never a damaged target. Tensors
 * may be on any device and need not be contiguous; data is streamed in pieces of
 * {@value #CHUNK_BYTES} bytes (one host staging buffer for device tensors), never doubling the
 * memory of the checkpoint. Tensors are stored largest element size first (in the map's order
 * within one element size), as the reference implementation does, so that every tensor's data is
 * aligned to its element size for readers that map the file.
 *
 * <p><b>Reading</b> ({@link #read}) validates the whole header before allocating anything:
 * header length (at most {@link #MAX_HEADER_BYTES}, inside the file), strict UTF-8, JSON syntax
 * and grammar, duplicate names, dtypes, shapes against byte counts, and that the offsets tile the
 * data exactly (no gap, overlap, reach past the end or trailing bytes). Anything wrong throws
 * {@link CheckpointFormatException} naming the file and the problem; tensors are then read
 * straight from the file into their memory, and on any failure every tensor already created is
 * closed.
 */
public final class Safetensors {
    /** Largest JSON header accepted (the limit of the reference implementation). */
    public static final long MAX_HEADER_BYTES = 100_000_000L;
    /** The header key of the optional string-to-string metadata. */
    public static final String METADATA_KEY = "__metadata__";
    /** Metadata key prefix that marks a U8 tensor as packed int4 (the value is the int4 shape). */
    public static final String INT4_KEY_PREFIX = "cortado.int4:";
    /** Metadata key prefix of a tensor's CRC32C (the value: 8 lowercase hex digits). */
    public static final String CRC32C_KEY_PREFIX = "cortado.crc32c:";
    /** Piece size of the streamed copies between tensors and the file. */
    public static final int CHUNK_BYTES = 8 << 20;

    private static final JsonFactory JSON = JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(8).build())
            .build();

    /** Test hook: called before each piece of tensor data is written (fault injection). */
    interface WriteHook {
        void beforeWrite(String tensor, long position) throws IOException;
    }

    static volatile WriteHook writeHook;

    private Safetensors() {
    }

    // ================================================================ types

    /**
     * One header entry: the tensor's name, dtype and shape, and its data's byte range
     * {@code [begin, end)} counted from the first byte after the header.
     */
    public record TensorInfo(String name, DType dtype, Shape shape, long begin, long end) {
        public long byteSize() {
            return end - begin;
        }
    }

    /**
     * A parsed and validated header: tensors in file order, the metadata, and where the data
     * starts in the file.
     */
    public record Header(List<TensorInfo> tensors, Map<String, String> metadata, long dataStart,
                         Map<String, Integer> checksums) {
        /** Copies the lists and maps; {@code checksums} maps tensor names to their CRC32C. */
        public Header {
            tensors = List.copyOf(tensors);
            metadata = Collections.unmodifiableMap(new LinkedHashMap<>(metadata));
            checksums = Map.copyOf(checksums);
        }

        /** A header without checksums. */
        public Header(List<TensorInfo> tensors, Map<String, String> metadata, long dataStart) {
            this(tensors, metadata, dataStart, Map.of());
        }
    }

    /**
     * What {@link #read} returns: the tensors in file order and the metadata. It owns the tensors:
     * {@link #close()} closes all that were not {@link #take taken}.
     */
    public static final class Contents implements AutoCloseable {
        private final String source;
        private final LinkedHashMap<String, Tensor> tensors;
        private final Map<String, String> metadata;

        Contents(String source, LinkedHashMap<String, Tensor> tensors, Map<String, String> metadata) {
            this.source = source;
            this.tensors = tensors;
            this.metadata = Collections.unmodifiableMap(new LinkedHashMap<>(metadata));
        }

        /** The tensors, in file order (read-only view; still owned by this object). */
        public Map<String, Tensor> tensors() {
            return Collections.unmodifiableMap(tensors);
        }

        /** The {@code __metadata__} strings (empty when the file has none). */
        public Map<String, String> metadata() {
            return metadata;
        }

        /** The tensor named {@code name}; throws naming the file and its tensors if there is none. */
        public Tensor get(String name) {
            Tensor t = tensors.get(name);
            if (t == null) {
                throw new NoSuchElementException(source + " has no tensor \"" + name + "\"; it has "
                        + abbreviate(tensors.keySet(), 20));
            }
            return t;
        }

        /** Removes {@code name} from this object and hands it to the caller, who must close it. */
        public Tensor take(String name) {
            Tensor t = get(name);
            tensors.remove(name);
            return t;
        }

        /** Closes every tensor still held. */
        @Override
        public void close() {
            RuntimeException failure = closeAll(tensors.values(), null);
            tensors.clear();
            if (failure != null) {
                throw failure;
            }
        }
    }

    // ================================================================ dtypes

    /** The safetensors name of a Cortado dtype; throws for int4. */
    public static String dtypeName(DType dtype) {
        switch (dtype) {
            case FLOAT32: return "F32";
            case FLOAT64: return "F64";
            case FLOAT16: return "F16";
            case BFLOAT16: return "BF16";
            case INT8: return "I8";
            case UINT8: return "U8";
            case INT32: return "I32";
            case INT64: return "I64";
            case BOOL: return "BOOL";
            case FLOAT8_E4M3: return "F8_E4M3";
            case FLOAT8_E5M2: return "F8_E5M2";
            default:
                throw new IllegalArgumentException("safetensors has no dtype for " + dtype);
        }
    }

    private static final Map<String, DType> BY_NAME = new HashMap<>();
    /** Valid safetensors dtypes that Cortado has no type for. */
    private static final List<String> OTHER_SAFETENSORS_DTYPES = List.of("I16", "U16", "U32", "U64",
            "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "E8M0", "C64");

    static {
        for (DType d : DType.values()) {
            if (d != DType.INT4) {
                BY_NAME.put(dtypeName(d), d);
            }
        }
    }

    // ================================================================ reading

    /** Reads every tensor of {@code path} onto {@code device}. */
    public static Contents read(Path path, Device device) throws IOException {
        return read(path, device, name -> true);
    }

    /**
     * Reads the tensors of {@code path} whose names {@code which} accepts onto {@code device}. The
     * whole file is validated either way.
     */
    public static Contents read(Path path, Device device, Predicate<String> which) throws IOException {
        Objects.requireNonNull(path, "path");
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(which, "which");
        requireLittleEndian();
        String source = path.toString();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            Header header = readHeader(ch, source);
            LinkedHashMap<String, Tensor> out = new LinkedHashMap<>();
            Tensor staging = null;
            try {
                for (TensorInfo info : header.tensors()) {
                    if (!which.test(info.name())) {
                        continue;
                    }
                    Tensor t = Tensor.empty(info.dtype(), device, info.shape());
                    out.put(info.name(), t);
                    long bytes = info.byteSize();
                    if (bytes == 0) {
                        continue;
                    }
                    long filePos = header.dataStart() + info.begin();
                    Integer expected = header.checksums().get(info.name());
                    CRC32C crc = expected == null ? null : new CRC32C();
                    if (device.isCpu()) {
                        readFully(ch, filePos, t.dataAddress(), bytes, source, info.name());
                        if (crc != null) {
                            update(crc, t.dataAddress(), bytes);
                        }
                    } else {
                        if (staging == null) {
                            staging = Tensor.empty(DType.UINT8, Device.CPU, stagingBytes(header.tensors()));
                        }
                        long dst = t.dataAddress();
                        for (long off = 0; off < bytes; off += CHUNK_BYTES) {
                            long n = Math.min(CHUNK_BYTES, bytes - off);
                            readFully(ch, filePos + off, staging.dataAddress(), n, source, info.name());
                            if (crc != null) {
                                update(crc, staging.dataAddress(), n);
                            }
                            device.backend().copyFromHost(device, dst + off, staging.dataAddress(), n);
                        }
                    }
                    if (crc != null && (int) crc.getValue() != expected) {
                        throw problem(source, "tensor \"" + info.name() + "\" is damaged: its " + bytes
                                + " bytes (file offset " + filePos + ") have CRC32C " + hex((int) crc.getValue())
                                + " but the header records " + hex(expected) + " (the file changed after it was written)");
                    }
                }
            } catch (IOException | RuntimeException | Error e) {
                closeAll(out.values(), e);
                throw e;
            } finally {
                if (staging != null) {
                    staging.close();
                }
            }
            return new Contents(source, out, header.metadata());
        }
    }

    /** Reads and validates the header of {@code path} without reading any tensor data. */
    public static Header readHeader(Path path) throws IOException {
        requireLittleEndian();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            return readHeader(ch, path.toString());
        }
    }

    private static Header readHeader(FileChannel ch, String source) throws IOException {
        long size = ch.size();
        if (size < 8) {
            throw problem(source, "is " + size + " bytes long, too short for a safetensors file "
                    + "(it must start with an 8-byte header length)");
        }
        ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        readFully(ch, 0, len, source);
        long n = len.getLong(0);
        if (n < 0 || n > MAX_HEADER_BYTES) {
            throw problem(source, "declares a JSON header of " + Long.toUnsignedString(n) + " bytes, more than the "
                    + MAX_HEADER_BYTES + "-byte limit: not a safetensors file, or a corrupt one");
        }
        if (n > size - 8) {
            throw problem(source, "declares a JSON header of " + n + " bytes but only " + (size - 8)
                    + " bytes follow the header length: the file is truncated (or not a safetensors file)");
        }
        if (n < 2) {
            throw problem(source, "has a JSON header of " + n + " bytes, too short to hold a JSON object");
        }
        ByteBuffer hb = ByteBuffer.allocate((int) n);
        readFully(ch, 8, hb, source);
        return parseHeader(hb.array(), source, 8 + n, size - 8 - n);
    }

    /** Parses and validates header bytes; {@code dataLength} is the number of bytes after the header. */
    static Header parseHeader(byte[] headerBytes, String source, long dataStart, long dataLength)
            throws CheckpointFormatException {
        String text = strictUtf8(headerBytes, source);
        List<TensorInfo> entries = new ArrayList<>();
        Map<String, String> metadata = new LinkedHashMap<>();
        try (JsonParser p = JSON.createParser(text)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw problem(source, "the header is not a JSON object (it starts with "
                        + quoteStart(text) + ")");
            }
            Map<String, Boolean> seen = new HashMap<>();
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                if (seen.put(name, Boolean.TRUE) != null) {
                    throw problem(source, "the header names \"" + name + "\" twice");
                }
                JsonToken value = p.nextToken();
                if (METADATA_KEY.equals(name)) {
                    readMetadata(p, value, metadata, source);
                } else {
                    entries.add(readEntry(p, value, name, source));
                }
            }
            if (p.currentToken() != JsonToken.END_OBJECT) {
                throw problem(source, "malformed header: expected a name or '}' at column "
                        + p.currentLocation().getColumnNr());
            }
            if (p.nextToken() != null) {
                throw problem(source, "the header has content after its JSON object, at column "
                        + p.currentLocation().getColumnNr() + " (only space padding is allowed)");
            }
        } catch (CheckpointFormatException e) {
            throw e;
        } catch (JsonProcessingException e) {
            throw new CheckpointFormatException(source + ": the header is not valid JSON: " + e.getOriginalMessage()
                    + (e.getLocation() != null ? " (at column " + e.getLocation().getColumnNr() + ")" : ""), e);
        } catch (IOException e) {
            throw new CheckpointFormatException(source + ": the header could not be parsed: " + e.getMessage(), e);
        }
        checkLayout(entries, source, dataLength);
        entries = applyInt4Markers(entries, metadata, source);
        Map<String, Integer> checksums = takeChecksums(entries, metadata, source);
        List<TensorInfo> fileOrder = new ArrayList<>(entries);
        fileOrder.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        return new Header(fileOrder, metadata, dataStart, checksums);
    }

    /** Removes the {@code cortado.crc32c:} entries from {@code metadata}; checks each names a tensor. */
    private static Map<String, Integer> takeChecksums(List<TensorInfo> entries, Map<String, String> metadata,
                                                      String source) throws CheckpointFormatException {
        Map<String, Integer> out = new HashMap<>();
        for (var it = metadata.entrySet().iterator(); it.hasNext(); ) {
            Map.Entry<String, String> e = it.next();
            if (!e.getKey().startsWith(CRC32C_KEY_PREFIX)) {
                continue;
            }
            String v = e.getValue();
            if (v.length() != 8 || !v.chars().allMatch(c -> (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
                throw problem(source, "metadata \"" + e.getKey() + "\" = \"" + v
                        + "\" is not a CRC32C (8 lowercase hex digits)");
            }
            out.put(e.getKey().substring(CRC32C_KEY_PREFIX.length()), Integer.parseUnsignedInt(v, 16));
            it.remove();
        }
        if (!out.isEmpty()) {
            Map<String, Integer> unknown = new HashMap<>(out);
            for (TensorInfo i : entries) {
                unknown.remove(i.name());
            }
            if (!unknown.isEmpty()) {
                throw problem(source, "metadata has checksums of tensors that do not exist: "
                        + abbreviate(unknown.keySet(), 10));
            }
        }
        return out;
    }

    private static String hex(int crc) {
        return String.format("%08x", crc);
    }

    /** Adds {@code bytes} of host memory at {@code address} to {@code crc}. */
    private static void update(CRC32C crc, long address, long bytes) {
        for (long off = 0; off < bytes; off += CHUNK_BYTES) {
            crc.update(HostMemory.view(address + off, Math.min(CHUNK_BYTES, bytes - off)));
        }
    }

    /** Turns the U8 tensors named by {@code cortado.int4:} metadata into int4 entries; removes those keys. */
    private static List<TensorInfo> applyInt4Markers(List<TensorInfo> entries, Map<String, String> metadata,
                                                     String source) throws CheckpointFormatException {
        Map<String, Shape> int4 = new HashMap<>();
        for (var it = metadata.entrySet().iterator(); it.hasNext(); ) {
            Map.Entry<String, String> e = it.next();
            if (e.getKey().startsWith(INT4_KEY_PREFIX)) {
                int4.put(e.getKey().substring(INT4_KEY_PREFIX.length()), parseShape(e.getValue(), e.getKey(), source));
                it.remove();
            }
        }
        if (int4.isEmpty()) {
            return entries;
        }
        List<TensorInfo> out = new ArrayList<>(entries.size());
        for (TensorInfo i : entries) {
            Shape shape = int4.remove(i.name());
            if (shape == null) {
                out.add(i);
                continue;
            }
            if (i.dtype() != DType.UINT8 || i.shape().rank() != 1 || i.byteSize() != DType.INT4.bytesFor(shape.numel())) {
                throw problem(source, "metadata marks tensor \"" + i.name() + "\" as int4 " + shape + " ("
                        + DType.INT4.bytesFor(shape.numel()) + " packed bytes) but it is " + dtypeName(i.dtype()) + " "
                        + i.shape());
            }
            out.add(new TensorInfo(i.name(), DType.INT4, shape, i.begin(), i.end()));
        }
        if (!int4.isEmpty()) {
            throw problem(source, "metadata marks tensors that do not exist as int4: " + abbreviate(int4.keySet(), 10));
        }
        return out;
    }

    private static Shape parseShape(String text, String key, String source) throws CheckpointFormatException {
        String t = text.trim();
        if (!t.startsWith("[") || !t.endsWith("]")) {
            throw problem(source, "metadata \"" + key + "\" = \"" + text + "\" is not a shape like [2, 3]");
        }
        String body = t.substring(1, t.length() - 1).trim();
        String[] parts = body.isEmpty() ? new String[0] : body.split(",");
        long[] dims = new long[parts.length];
        try {
            for (int k = 0; k < parts.length; k++) {
                dims[k] = Long.parseLong(parts[k].trim());
            }
            return Shape.of(dims);
        } catch (IllegalArgumentException | ArithmeticException e) {
            throw problem(source, "metadata \"" + key + "\" = \"" + text + "\" is not a valid shape");
        }
    }

    private static void readMetadata(JsonParser p, JsonToken value, Map<String, String> out, String source)
            throws IOException {
        if (value != JsonToken.START_OBJECT) {
            throw problem(source, "\"" + METADATA_KEY + "\" must be a JSON object of strings, found " + describe(value));
        }
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String key = p.currentName();
            JsonToken v = p.nextToken();
            if (v != JsonToken.VALUE_STRING) {
                throw problem(source, "metadata \"" + key + "\" must be a string, found " + describe(v));
            }
            if (out.put(key, p.getText()) != null) {
                throw problem(source, "metadata \"" + key + "\" appears twice");
            }
        }
    }

    private static TensorInfo readEntry(JsonParser p, JsonToken value, String name, String source)
            throws IOException {
        String what = "tensor \"" + name + "\"";
        if (value != JsonToken.START_OBJECT) {
            throw problem(source, what + ": expected an object with dtype, shape and data_offsets, found "
                    + describe(value));
        }
        String dtypeName = null;
        long[] shape = null;
        long[] offsets = null;
        List<String> fields = new ArrayList<>(3);
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String field = p.currentName();
            if (fields.contains(field)) {
                throw problem(source, what + ": field \"" + field + "\" appears twice");
            }
            fields.add(field);
            JsonToken v = p.nextToken();
            switch (field) {
                case "dtype":
                    if (v != JsonToken.VALUE_STRING) {
                        throw problem(source, what + ": dtype must be a string, found " + describe(v));
                    }
                    dtypeName = p.getText();
                    break;
                case "shape":
                    shape = readLongs(p, v, what + ": shape", source);
                    break;
                case "data_offsets":
                    offsets = readLongs(p, v, what + ": data_offsets", source);
                    if (offsets.length != 2) {
                        throw problem(source, what + ": data_offsets must be [begin, end], found "
                                + Arrays.toString(offsets));
                    }
                    break;
                default:
                    throw problem(source, what + ": unknown field \"" + field
                            + "\" (a tensor entry has dtype, shape and data_offsets)");
            }
        }
        if (dtypeName == null || shape == null || offsets == null) {
            throw problem(source, what + ": missing " + (dtypeName == null ? "dtype" : shape == null ? "shape"
                    : "data_offsets"));
        }
        DType dtype = BY_NAME.get(dtypeName);
        if (dtype == null) {
            throw problem(source, what + ": " + (OTHER_SAFETENSORS_DTYPES.contains(dtypeName)
                    ? "dtype " + dtypeName + " is not supported by Cortado"
                    : "unknown dtype \"" + dtypeName + "\"") + " (Cortado reads F32, F64, F16, BF16, I8, U8, I32, I64, BOOL)");
        }
        long numel = 1;
        long bytes;
        try {
            for (long d : shape) {
                numel = Math.multiplyExact(numel, d);
            }
            bytes = Math.multiplyExact(numel, (long) dtype.byteSize());
        } catch (ArithmeticException e) {
            throw problem(source, what + ": shape " + Arrays.toString(shape) + " has more elements than fit in 64 bits");
        }
        long begin = offsets[0];
        long end = offsets[1];
        if (end < begin) {
            throw problem(source, what + ": data_offsets [" + begin + ", " + end + "] end before they begin");
        }
        if (end - begin != bytes) {
            throw problem(source, what + ": " + dtypeName + " " + Arrays.toString(shape) + " needs " + bytes
                    + " bytes but its data_offsets [" + begin + ", " + end + "] span " + (end - begin));
        }
        return new TensorInfo(name, dtype, Shape.of(shape), begin, end);
    }

    private static long[] readLongs(JsonParser p, JsonToken v, String what, String source) throws IOException {
        if (v != JsonToken.START_ARRAY) {
            throw problem(source, what + " must be an array of integers, found " + describe(v));
        }
        long[] out = new long[4];
        int n = 0;
        JsonToken t;
        while ((t = p.nextToken()) != JsonToken.END_ARRAY) {
            if (t != JsonToken.VALUE_NUMBER_INT) {
                throw problem(source, what + " must hold non-negative integers, found " + describe(t));
            }
            if (p.getNumberType() == JsonParser.NumberType.BIG_INTEGER || p.getText().startsWith("-")) {
                throw problem(source, what + " holds " + p.getText() + ", outside [0, 2^63)");
            }
            if (n == out.length) {
                out = Arrays.copyOf(out, n * 2);
            }
            out[n++] = p.getLongValue();
        }
        return Arrays.copyOf(out, n);
    }

    /** The offsets must tile [0, dataLength) exactly. */
    private static void checkLayout(List<TensorInfo> entries, String source, long dataLength)
            throws CheckpointFormatException {
        for (TensorInfo e : entries) {
            if (e.end() > dataLength) {
                throw problem(source, "tensor \"" + e.name() + "\" has data_offsets [" + e.begin() + ", " + e.end()
                        + "] but only " + dataLength + " bytes of data follow the header: the file is truncated");
            }
        }
        List<TensorInfo> sorted = new ArrayList<>(entries);
        sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        long expected = 0;
        TensorInfo previous = null;
        for (TensorInfo e : sorted) {
            if (e.begin() > expected) {
                throw problem(source, "bytes [" + expected + ", " + e.begin() + ") of the data belong to no tensor "
                        + "(a gap before tensor \"" + e.name() + "\")");
            }
            if (e.begin() < expected) {
                throw problem(source, "tensor \"" + e.name() + "\" [" + e.begin() + ", " + e.end()
                        + ") overlaps tensor \"" + previous.name() + "\" [" + previous.begin() + ", "
                        + previous.end() + ")");
            }
            if (e.end() > e.begin()) {
                expected = e.end();
                previous = e;
            }
        }
        if (expected != dataLength) {
            throw problem(source, "the last " + (dataLength - expected) + " bytes of the file belong to no tensor "
                    + "(trailing data after byte " + expected + " of the data)");
        }
    }

    private static String strictUtf8(byte[] bytes, String source) throws CheckpointFormatException {
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(bytes);
        try {
            return decoder.decode(in).toString();
        } catch (CharacterCodingException e) {
            throw new CheckpointFormatException(source + ": the header is not valid UTF-8 (at byte "
                    + in.position() + " of the header)", e);
        }
    }

    private static String describe(JsonToken t) {
        if (t == null) {
            return "the end of the header";
        }
        switch (t) {
            case START_OBJECT: return "an object";
            case START_ARRAY: return "an array";
            case VALUE_STRING: return "a string";
            case VALUE_NUMBER_INT: return "an integer";
            case VALUE_NUMBER_FLOAT: return "a fractional number";
            case VALUE_TRUE:
            case VALUE_FALSE: return "a boolean";
            case VALUE_NULL: return "null";
            default: return t.toString();
        }
    }

    private static String quoteStart(String text) {
        String s = text.length() > 16 ? text.substring(0, 16) + "..." : text;
        return "\"" + s.replaceAll("\\p{Cntrl}", "?") + "\"";
    }

    private static long stagingBytes(List<TensorInfo> tensors) {
        long max = 0;
        for (TensorInfo t : tensors) {
            max = Math.max(max, t.byteSize());
        }
        return Math.max(1, Math.min(CHUNK_BYTES, max));
    }

    // ================================================================ writing

    /**
     * Writes {@code tensors} and {@code metadata} to {@code path} atomically (see the class
     * comment). Names must not be {@value #METADATA_KEY}, metadata keys must not start with
     * {@value #INT4_KEY_PREFIX}; tensors must be open, and int4 tensors contiguous.
     * On failure the previous file at {@code path}, if any, is unchanged.
     */
    public static void write(Path path, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
        write(path, tensors, metadata, false);
    }

    /**
     * As {@link #write(Path, Map, Map)}; with {@code checksums}, also records each tensor's CRC32C
     * in the metadata ({@value #CRC32C_KEY_PREFIX}{@code <name>}), which {@link #read} verifies.
     * Without, the file is byte for byte what the reference implementation writes.
     */
    public static void write(Path path, Map<String, Tensor> tensors, Map<String, String> metadata, boolean checksums)
            throws IOException {
        Objects.requireNonNull(path, "path");
        Objects.requireNonNull(tensors, "tensors");
        requireLittleEndian();
        Map<String, String> meta = new LinkedHashMap<>();
        if (metadata != null) {
            for (Map.Entry<String, String> e : metadata.entrySet()) {
                requireText(e.getKey(), "metadata key");
                requireText(e.getValue(), "metadata value of \"" + e.getKey() + "\"");
                for (String reserved : List.of(INT4_KEY_PREFIX, CRC32C_KEY_PREFIX)) {
                    if (e.getKey().startsWith(reserved)) {
                        throw new IllegalArgumentException("Safetensors.write: metadata keys starting with \""
                                + reserved + "\" are reserved (\"" + e.getKey() + "\")");
                    }
                }
                meta.put(e.getKey(), e.getValue());
            }
        }
        List<Map.Entry<String, Tensor>> order = new ArrayList<>(tensors.entrySet());
        for (Map.Entry<String, Tensor> e : order) {
            String name = e.getKey();
            Tensor t = e.getValue();
            requireText(name, "tensor name");
            if (METADATA_KEY.equals(name)) {
                throw new IllegalArgumentException("Safetensors.write: \"" + METADATA_KEY
                        + "\" is reserved for the metadata and cannot name a tensor");
            }
            if (t == null) {
                throw new IllegalArgumentException("Safetensors.write: tensor \"" + name + "\" is null");
            }
            t.ensureOpen("Safetensors.write(\"" + name + "\")");
            t.requireStrided("Safetensors.write");
            if (t.dtype() == DType.INT4) {
                if (!t.isContiguous() || t.offset() % 2 != 0) {
                    throw new IllegalArgumentException("Safetensors.write: tensor \"" + name + "\" is a non-contiguous "
                            + "int4 view " + t.describe() + "; packed int4 is written only from contiguous tensors "
                            + "that start on a byte (write t.to(DType.INT8) instead)");
                }
                meta.put(INT4_KEY_PREFIX + name, t.shape().toString());
            }
        }
        // largest element first (stable), so every tensor's data is aligned to its element size
        order.sort(Comparator.comparingInt((Map.Entry<String, Tensor> e) -> -stored(e.getValue().dtype()).byteSize()));
        List<TensorInfo> infos = new ArrayList<>(order.size());
        long offset = 0;
        for (Map.Entry<String, Tensor> e : order) {
            Tensor t = e.getValue();
            long bytes = t.dtype().bytesFor(t.numel());
            Shape shape = t.dtype() == DType.INT4 ? Shape.of(bytes) : t.shape();
            infos.add(new TensorInfo(e.getKey(), stored(t.dtype()), shape, offset, offset + bytes));
            offset += bytes;
        }
        // each tensor's CRC32C goes into the header, which precedes the data: the header is written
        // with placeholders of the same length and rewritten in place once the data is out
        if (checksums) {
            for (TensorInfo i : infos) {
                meta.put(CRC32C_KEY_PREFIX + i.name(), hex(0));
            }
        }
        byte[] header = encodeHeader(infos, meta);
        long maxBytes = 0;
        for (TensorInfo i : infos) {
            maxBytes = Math.max(maxBytes, i.byteSize());
        }
        long staging = Math.max(1, Math.min(CHUNK_BYTES, maxBytes));
        AtomicFiles.write(path, ch -> {
            ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length);
            writeFully(ch, len);
            writeFully(ch, ByteBuffer.wrap(header));
            Tensor[] stage = new Tensor[1];
            try {
                for (Map.Entry<String, Tensor> e : order) {
                    int crc = writeTensor(ch, e.getKey(), e.getValue(), stage, staging);
                    if (checksums) {
                        meta.put(CRC32C_KEY_PREFIX + e.getKey(), hex(crc));
                    }
                }
            } finally {
                if (stage[0] != null) {
                    stage[0].close();
                }
            }
            if (!checksums) {
                return;
            }
            byte[] withSums = encodeHeader(infos, meta);
            if (withSums.length != header.length) {
                throw new IllegalStateException("Safetensors.write: the header changed length when its checksums were filled in");
            }
            ByteBuffer hb = ByteBuffer.wrap(withSums);
            for (long pos = 8; hb.hasRemaining(); ) {
                pos += ch.write(hb, pos);
            }
        });
    }

    /** The dtype a tensor is stored as: its own, or U8 bytes for packed int4. */
    private static DType stored(DType dtype) {
        return dtype == DType.INT4 ? DType.UINT8 : dtype;
    }

    /** The header bytes, padded with spaces to a multiple of 8 (so the data starts 8-aligned). */
    static byte[] encodeHeader(List<TensorInfo> infos, Map<String, String> metadata) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (JsonGenerator g = JSON.createGenerator(out, JsonEncoding.UTF8)) {
            g.writeStartObject();
            if (!metadata.isEmpty()) {
                g.writeObjectFieldStart(METADATA_KEY);
                for (Map.Entry<String, String> e : metadata.entrySet()) {
                    g.writeStringField(e.getKey(), e.getValue());
                }
                g.writeEndObject();
            }
            for (TensorInfo i : infos) {
                g.writeObjectFieldStart(i.name());
                g.writeStringField("dtype", dtypeName(i.dtype()));
                g.writeArrayFieldStart("shape");
                for (long d : i.shape().toArray()) {
                    g.writeNumber(d);
                }
                g.writeEndArray();
                g.writeArrayFieldStart("data_offsets");
                g.writeNumber(i.begin());
                g.writeNumber(i.end());
                g.writeEndArray();
                g.writeEndObject();
            }
            g.writeEndObject();
        }
        int pad = (8 - out.size() % 8) % 8;
        for (int i = 0; i < pad; i++) {
            out.write(' ');
        }
        if (out.size() > MAX_HEADER_BYTES) {
            throw new IllegalArgumentException("Safetensors.write: the header would be " + out.size()
                    + " bytes, more than readers accept (" + MAX_HEADER_BYTES + ")");
        }
        return out.toByteArray();
    }

    /** Appends the bytes of {@code t} to {@code ch}; returns their CRC32C. */
    private static int writeTensor(FileChannel ch, String name, Tensor t, Tensor[] stage, long stagingBytes)
            throws IOException {
        long bytes = t.dtype().bytesFor(t.numel());
        CRC32C crc = new CRC32C();
        if (bytes == 0) {
            return (int) crc.getValue();
        }
        Tensor copy = t.isContiguous() ? null : t.contiguous();
        try {
            Tensor c = copy != null ? copy : t;
            long src = c.dataAddress();
            Device device = c.device();
            for (long off = 0; off < bytes; off += CHUNK_BYTES) {
                long n = Math.min(CHUNK_BYTES, bytes - off);
                WriteHook hook = writeHook;
                if (hook != null) {
                    hook.beforeWrite(name, ch.position());
                }
                if (device.isCpu()) {
                    ByteBuffer piece = HostMemory.view(src + off, n);
                    crc.update(piece.duplicate());
                    writeFully(ch, piece);
                } else {
                    if (stage[0] == null) {
                        stage[0] = Tensor.empty(DType.UINT8, Device.CPU, stagingBytes);
                    }
                    long host = stage[0].dataAddress();
                    device.backend().copyToHost(device, host, src + off, n);
                    ByteBuffer piece = HostMemory.view(host, n);
                    crc.update(piece.duplicate());
                    writeFully(ch, piece);
                }
            }
        } finally {
            if (copy != null) {
                copy.close();
            }
        }
        return (int) crc.getValue();
    }

    // ================================================================ helpers

    private static void readFully(FileChannel ch, long position, ByteBuffer dst, String source) throws IOException {
        long pos = position;
        while (dst.hasRemaining()) {
            int r = ch.read(dst, pos);
            if (r < 0) {
                throw problem(source, "ended at byte " + pos + " while reading the header: the file is truncated");
            }
            pos += r;
        }
    }

    private static void readFully(FileChannel ch, long position, long address, long bytes, String source,
                                  String tensor) throws IOException {
        for (long off = 0; off < bytes; off += CHUNK_BYTES) {
            long n = Math.min(CHUNK_BYTES, bytes - off);
            ByteBuffer dst = HostMemory.view(address + off, n);
            long pos = position + off;
            while (dst.hasRemaining()) {
                int r = ch.read(dst, pos);
                if (r < 0) {
                    throw problem(source, "ended at byte " + pos + " while reading tensor \"" + tensor
                            + "\": the file was truncated while being read");
                }
                pos += r;
            }
        }
    }

    private static void writeFully(FileChannel ch, ByteBuffer src) throws IOException {
        while (src.hasRemaining()) {
            ch.write(src);
        }
    }

    private static CheckpointFormatException problem(String source, String what) {
        return new CheckpointFormatException(source + ": " + what);
    }

    private static void requireText(String s, String what) {
        if (s == null) {
            throw new IllegalArgumentException("Safetensors.write: " + what + " is null");
        }
        if (!StandardCharsets.UTF_8.newEncoder().canEncode(s)) {
            throw new IllegalArgumentException("Safetensors.write: " + what + " \"" + s
                    + "\" is not valid Unicode (it has a lone surrogate)");
        }
    }

    private static void requireLittleEndian() {
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
            throw new UnsupportedOperationException("safetensors I/O needs a little-endian machine");
        }
    }

    /** Closes every tensor, collecting failures; returns (or adds to {@code primary}) what went wrong. */
    static RuntimeException closeAll(Collection<Tensor> tensors, Throwable primary) {
        RuntimeException first = null;
        for (Tensor t : tensors) {
            try {
                t.close();
            } catch (RuntimeException e) {
                if (primary != null) {
                    primary.addSuppressed(e);
                } else if (first == null) {
                    first = e;
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        return first;
    }

    static String abbreviate(Collection<String> names, int max) {
        return abbreviate(names, max, ", ");
    }

    static String abbreviate(Collection<String> names, int max, String separator) {
        if (names.isEmpty()) {
            return "none";
        }
        StringBuilder b = new StringBuilder();
        int i = 0;
        for (String n : names) {
            if (i == max) {
                b.append(separator).append("... (").append(names.size() - max).append(" more)");
                break;
            }
            if (i > 0) {
                b.append(separator);
            }
            b.append(n);
            i++;
        }
        return b.toString();
    }
}
