package dev.cortado.onnx;

import dev.cortado.tensor.AtomicFiles;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.MappedFile;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import com.google.protobuf.InvalidProtocolBufferException;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32C;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A loaded model's plan on disk: what {@link OnnxModel} builds from a model file (the graph as it
 * runs, with the load-time fusions applied and the folded and {@code Constant} nodes gone, and
 * every constant it reads: initializers and folded values), written once into a cache folder so
 * that a later process loads it without parsing the model, converting its tensors or folding:
 * the constants are mapped from the file ({@link MappedFile}: no copy into the Java heap or into
 * allocated memory; on a GPU they are copied to the device once), and the fused nodes' handlers
 * are made from the nodes ({@link OnnxFusion#handler}; packed int8 weights are packed again).
 *
 * <p>The file ({@code <sha-256 of the key>.plan}, little-endian):
 *
 * <pre>
 *   0  8 bytes  magic "CTPLAN01"
 *   8  int64    metadata length M
 *  16  int64    CRC-32C of every byte from 32 to the end
 *  24  int64    file length
 *  32  M bytes  metadata: the key (UTF), the plan's ModelProto (int32 length + bytes), the
 *               constants (int32 count; each: name (UTF), dtype name (UTF), rank, dims, data offset, bytes)
 *  ... data, each constant at a 64-byte aligned offset
 * </pre>
 *
 * <p>The key names what the plan was made from: the model file's real path, size, modification
 * time and file key, the device, the optimization level and the engine's version and plan
 * format. A file is trusted only when its magic, length, checksum and key all match; anything
 * else (a truncated or corrupted file, a plan of another model or engine version that landed
 * under this name) is reported as stale, deleted and rebuilt. Files are written to a temporary
 * file in the same folder and renamed into place, so a reader never sees half a plan and two
 * processes writing the same plan leave one whole file.
 */
@SuppressWarnings("try") // a detached scope keeps the loaded constants out of the caller's scope
final class PlanFile {
    private static final Logger LOG = LoggerFactory.getLogger(PlanFile.class);
    private static final byte[] MAGIC = "CTPLAN01".getBytes(StandardCharsets.US_ASCII);
    private static final int HEADER = 32;
    private static final int ALIGN = 64;
    /** Bumped whenever what a plan holds or how the importer reads it changes. */
    static final int FORMAT = 1;

    private PlanFile() {
    }

    /** The engine's version as the key records it (the jar's, or "dev" in a build tree) and the plan format. */
    static String engineVersion() {
        String v = OnnxModel.class.getPackage().getImplementationVersion();
        return (v == null ? "dev" : v) + "/plan" + FORMAT;
    }

    /** The cache file of {@code key} in {@code folder}. */
    static Path fileOf(Path folder, String key) {
        try {
            byte[] h = MessageDigest.getInstance("SHA-256").digest(key.getBytes(StandardCharsets.UTF_8));
            return folder.resolve(HexFormat.of().formatHex(h, 0, 16) + ".plan");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JDK", e);
        }
    }

    /**
     * Writes {@code model}'s plan under {@code key} into {@code folder} (created if needed),
     * atomically. Returns false, writing nothing, for a model whose plan cannot be saved (one with
     * subgraphs).
     */
    static boolean write(OnnxModel model, String key, Path folder) throws IOException {
        OnnxModel.PlanContent plan = model.planContent();
        if (plan == null || plan.constants().values().stream().anyMatch(c -> c.dtype().isPacked())) {
            return false;
        }
        Files.createDirectories(folder);
        Path target = fileOf(folder, key);
        // the constants, once each (a graph may name one tensor twice), made contiguous on the host
        List<String> names = new ArrayList<>(plan.constants().keySet());
        names.sort(null);
        ByteArrayOutputStream meta = new ByteArrayOutputStream();
        DataOutputStream m = new DataOutputStream(meta);
        m.writeUTF(key);
        byte[] proto = plan.model().toByteArray();
        m.writeInt(proto.length);
        m.write(proto);
        m.writeInt(names.size());
        long[] offsets = new long[names.size()];
        // the metadata's size does not depend on the offsets' values: lay them out after it
        ByteArrayOutputStream table = new ByteArrayOutputStream();
        DataOutputStream t = new DataOutputStream(table);
        for (String name : names) {
            Tensor c = plan.constants().get(name);
            t.writeUTF(name);
            t.writeUTF(c.dtype().name());
            t.writeInt(c.rank());
            for (long d : c.dims()) {
                t.writeLong(d);
            }
            t.writeLong(0);
            t.writeLong(0);
        }
        long dataStart = align(HEADER + meta.size() + table.size());
        long at = dataStart;
        table.reset();
        for (int i = 0; i < names.size(); i++) {
            Tensor c = plan.constants().get(names.get(i));
            long bytes = c.dtype().bytesFor(c.numel());
            offsets[i] = at;
            t.writeUTF(names.get(i));
            t.writeUTF(c.dtype().name());
            t.writeInt(c.rank());
            for (long d : c.dims()) {
                t.writeLong(d);
            }
            t.writeLong(at);
            t.writeLong(bytes);
            at = align(at + bytes);
        }
        m.write(table.toByteArray());
        m.flush();
        byte[] metadata = meta.toByteArray();
        long length = Math.max(at, dataStart);

        AtomicFiles.write(target, out -> {
            CRC32C crc = new CRC32C();
            out.position(HEADER);
            writeFully(out, ByteBuffer.wrap(metadata), crc);
            ByteBuffer chunk = ByteBuffer.allocateDirect(1 << 22).order(ByteOrder.LITTLE_ENDIAN);
            long pos = HEADER + metadata.length;
            for (int i = 0; i < names.size(); i++) {
                pos = pad(out, pos, offsets[i], crc);
                Tensor c = plan.constants().get(names.get(i));
                pos += writeTensor(out, c, chunk, crc);
            }
            pad(out, pos, length, crc);
            ByteBuffer header = ByteBuffer.allocate(HEADER).order(ByteOrder.LITTLE_ENDIAN);
            header.put(MAGIC).putLong(metadata.length).putLong(crc.getValue()).putLong(length).flip();
            out.position(0);
            while (header.hasRemaining()) {
                out.write(header);
            }
        });
        return true;
    }

    private static long align(long v) {
        return (v + ALIGN - 1) / ALIGN * ALIGN;
    }

    private static void writeFully(FileChannel out, ByteBuffer b, CRC32C crc) throws IOException {
        crc.update(b.duplicate());
        while (b.hasRemaining()) {
            out.write(b);
        }
    }

    /** Zeros from {@code pos} to {@code to}; returns {@code to}. */
    private static long pad(FileChannel out, long pos, long to, CRC32C crc) throws IOException {
        if (to > pos) {
            writeFully(out, ByteBuffer.allocate((int) (to - pos)), crc);
        }
        return Math.max(pos, to);
    }

    /** The bytes of {@code c} in row-major order, through {@code chunk}; returns how many. */
    private static long writeTensor(FileChannel out, Tensor c, ByteBuffer chunk, CRC32C crc) throws IOException {
        long bytes = c.dtype().bytesFor(c.numel());
        if (bytes == 0) {
            return 0;
        }
        long element = c.dtype().bytesFor(1);
        long perChunk = chunk.capacity() / element;
        try (Tensor flat = c.reshape(c.numel())) {
            for (long e = 0; e < c.numel(); e += perChunk) {
                try (Tensor part = flat.narrow(0, e, Math.min(perChunk, c.numel() - e))) {
                    chunk.clear();
                    part.copyTo(chunk);
                    chunk.flip();
                    writeFully(out, chunk, crc);
                }
            }
        }
        return bytes;
    }

    /**
     * The plan of {@code key} in {@code folder} loaded onto {@code device}, or null when there is
     * none or the file cannot be trusted (it is then deleted, with the reason logged, so that the
     * caller rebuilds it).
     */
    static OnnxModel read(Path folder, String key, Device device) throws IOException {
        Path file = fileOf(folder, key);
        String problem;
        try {
            problem = verify(file, key);
        } catch (NoSuchFileException e) {
            return null;
        }
        if (problem == null) {
            try {
                return load(file, device);
            } catch (OnnxImportException | InvalidProtocolBufferException | IllegalArgumentException e) {
                problem = "cannot be loaded: " + e.getMessage();
            }
        }
        LOG.warn("plan cache: {} {}; rebuilding it", file, problem);
        Files.deleteIfExists(file);
        return null;
    }

    /** Why {@code file} cannot be trusted as the plan of {@code key}, or null when it can. */
    static String verify(Path file, String key) throws IOException {
        try (FileChannel in = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = in.size();
            if (size < HEADER) {
                return "is truncated (" + size + " bytes)";
            }
            ByteBuffer header = ByteBuffer.allocate(HEADER).order(ByteOrder.LITTLE_ENDIAN);
            readFully(in, header, 0);
            header.flip();
            byte[] magic = new byte[MAGIC.length];
            header.get(magic);
            long metaLength = header.getLong();
            long checksum = header.getLong();
            long length = header.getLong();
            if (!java.util.Arrays.equals(magic, MAGIC)) {
                return "is not a plan of this format (magic " + new String(magic, StandardCharsets.ISO_8859_1) + ")";
            }
            if (length != size) {
                return "is " + size + " bytes, its header says " + length + " (truncated or appended to)";
            }
            if (metaLength < 0 || metaLength > size - HEADER) {
                return "has a metadata length " + metaLength + " past its end";
            }
            // the checksum over everything after the header: the file's bytes are read once
            // through a native buffer (they then sit in the page cache the mapping uses)
            CRC32C crc = new CRC32C();
            ByteBuffer chunk = ByteBuffer.allocateDirect(1 << 22);
            for (long pos = HEADER; pos < size; ) {
                chunk.clear();
                chunk.limit((int) Math.min(chunk.capacity(), size - pos));
                readFully(in, chunk, pos);
                chunk.flip();
                pos += chunk.remaining();
                crc.update(chunk);
            }
            if (crc.getValue() != checksum) {
                return "fails its checksum (corrupted)";
            }
            ByteBuffer meta = ByteBuffer.allocate((int) Math.min(metaLength, Integer.MAX_VALUE));
            readFully(in, meta, HEADER);
            String stored = new DataInputStream(new java.io.ByteArrayInputStream(meta.array())).readUTF();
            if (!stored.equals(key)) {
                return "is the plan of another model or version (" + stored + ")";
            }
            return null;
        }
    }

    private static void readFully(FileChannel in, ByteBuffer b, long pos) throws IOException {
        while (b.hasRemaining()) {
            int n = in.read(b, pos);
            if (n < 0) {
                throw new java.io.EOFException("unexpected end of the plan file at " + pos);
            }
            pos += n;
        }
    }

    /** Loads a verified plan file: its graph, and its constants mapped from the file. */
    private static OnnxModel load(Path file, Device device) throws IOException {
        Map<String, Tensor> constants = new LinkedHashMap<>();
        ModelProto plan;
        // the model owns the constants, not a scope the caller may have open
        try (Scope detached = Scope.detached(); MappedFile mapped = MappedFile.map(file)) {
            ByteBuffer head = ByteBuffer.allocate(HEADER).order(ByteOrder.LITTLE_ENDIAN);
            long metaLength;
            try (FileChannel in = FileChannel.open(file, StandardOpenOption.READ)) {
                readFully(in, head, 0);
                metaLength = head.getLong(8);
                ByteBuffer meta = ByteBuffer.allocate((int) metaLength);
                readFully(in, meta, HEADER);
                DataInputStream m = new DataInputStream(new java.io.ByteArrayInputStream(meta.array()));
                m.readUTF();
                byte[] proto = new byte[m.readInt()];
                m.readFully(proto);
                plan = ModelProto.parseFrom(proto);
                int count = m.readInt();
                try {
                    for (int i = 0; i < count; i++) {
                        String name = m.readUTF();
                        DType dtype = DType.valueOf(m.readUTF());
                        long[] dims = new long[m.readInt()];
                        for (int d = 0; d < dims.length; d++) {
                            dims[d] = m.readLong();
                        }
                        long offset = m.readLong();
                        m.readLong();
                        Tensor t = mapped.tensor(offset, dtype, dims);
                        if (!device.isCpu()) {
                            try (Tensor host = t) {
                                t = host.to(device);
                            }
                        }
                        constants.put(name, t);
                    }
                } catch (RuntimeException | IOException e) {
                    constants.values().forEach(Tensor::close);
                    throw e;
                }
            }
        }
        return OnnxModel.ofPlan(plan, constants, device);
    }
}
