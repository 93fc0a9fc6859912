package dev.cortado.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import dev.cortado.onnx.MiniLmModels;
import dev.cortado.onnx.MiniLmModels.Variant;
import dev.cortado.onnx.OnnxImportException;
import dev.cortado.tensor.Device;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.zip.ZipFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link SentenceEmbedder} on all-MiniLM-L6-v2 against the sentence embeddings langchain4j's
 * {@code AllMiniLmL6V2EmbeddingModel} / {@code AllMiniLmL6V2QuantizedEmbeddingModel} produce
 * (ONNX Runtime, each sentence on its own; {@code langchain4j_sentence_embeddings.json}).
 *
 * <p>Tolerances, per component of the unit-length 384-d vectors (components up to about 0.15):
 * fp32 {@value #FP32_ATOL} (the hidden states agree within 1e-4, see MiniLmTest; the mean over
 * the tokens and the normalization shrink that), int8 {@value #INT8_ATOL} (a flipped uint8
 * rounding of an activation moves the hidden states by about a quantization step). Both also
 * need a cosine similarity with the golden vector above 0.9999. Measured: 1.9e-7 (fp32) and
 * 7.5e-8 (int8).
 */
class SentenceEmbedderTest {
    static final double FP32_ATOL = 1e-5;
    static final double INT8_ATOL = 2e-3;

    @TempDir
    Path tmp;

    /** The golden embeddings: model key -> (text -> vector). */
    static Map<String, Map<String, float[]>> golden() throws IOException {
        Path file = MiniLmModels.goldenDir().resolve("langchain4j_sentence_embeddings.json");
        Map<String, Map<String, float[]>> out = new LinkedHashMap<>();
        try (InputStream in = Files.newInputStream(file); JsonParser p = new JsonFactory().createParser(in)) {
            p.nextToken(); // {
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String model = p.currentName();
                Map<String, float[]> vectors = new LinkedHashMap<>();
                p.nextToken(); // [
                while (p.nextToken() == JsonToken.START_OBJECT) {
                    String text = null;
                    float[] v = null;
                    while (p.nextToken() == JsonToken.FIELD_NAME) {
                        String field = p.currentName();
                        p.nextToken();
                        if (field.equals("text")) {
                            text = p.getText();
                        } else if (field.equals("embedding")) {
                            List<Float> values = new ArrayList<>();
                            while (p.nextToken() != JsonToken.END_ARRAY) {
                                values.add(p.getFloatValue());
                            }
                            v = new float[values.size()];
                            for (int i = 0; i < v.length; i++) {
                                v[i] = values.get(i);
                            }
                        } else {
                            p.skipChildren();
                        }
                    }
                    vectors.put(text, v);
                }
                out.put(model, vectors);
            }
        }
        return out;
    }

    @Test
    void fp32EmbeddingsMatchLangchain4jsOnABatch() throws IOException {
        Map<String, float[]> expected = golden().get(Variant.FP32.embeddingsKey);
        try (SentenceEmbedder e = SentenceEmbedder.builder(MiniLmModels.jar(Variant.FP32)).sha256(Variant.FP32.sha256)
                .device(Device.CPU).build()) {
            assertEquals("all-minilm-l6-v2", e.modelName());
            assertEquals(384, e.dimension());
            assertEquals(128, e.maxTokens());
            List<String> texts = new ArrayList<>(expected.keySet());
            // one padded batch: fp32 vectors do not depend on their batch-mates
            float[][] got = e.embed(texts);
            for (int i = 0; i < texts.size(); i++) {
                check("fp32 " + texts.get(i), expected.get(texts.get(i)), got[i], FP32_ATOL);
            }
            assertEquals(12, e.tokenCount(texts.get(0)));
        }
    }

    @Test
    void int8EmbeddingsMatchLangchain4jsOneByOne() throws IOException {
        Map<String, float[]> expected = golden().get(Variant.INT8.embeddingsKey);
        try (SentenceEmbedder e = SentenceEmbedder.builder(MiniLmModels.jar(Variant.INT8)).build()) {
            for (Map.Entry<String, float[]> g : expected.entrySet()) {
                // alone, as the golden ones were computed (the int8 activation scale spans the batch)
                float[] got = e.embed(List.of(g.getKey()))[0];
                check("int8 " + g.getKey(), g.getValue(), got, INT8_ATOL);
            }
        }
    }

    static void check(String what, float[] expected, float[] actual, double atol) {
        assertEquals(expected.length, actual.length, what);
        double maxErr = 0;
        double dot = 0;
        double norm = 0;
        for (int i = 0; i < expected.length; i++) {
            maxErr = Math.max(maxErr, Math.abs((double) expected[i] - actual[i]));
            dot += (double) expected[i] * actual[i];
            norm += (double) actual[i] * actual[i];
        }
        System.out.printf("%s: max |cortado - langchain4j| = %.3g, cosine %.8f%n", what, maxErr, dot);
        assertEquals(1.0, Math.sqrt(norm), 1e-5, what + ": unit length");
        assertTrue(maxErr <= atol, what + ": max error " + maxErr + " > " + atol);
        assertTrue(dot > 0.9999, what + ": cosine " + dot);
    }

    @Test
    void aFolderWithTheFilesWorksTooAndLongTextsAreTruncated() throws IOException {
        Path jar = MiniLmModels.jar(Variant.INT8);
        try (ZipFile zip = new ZipFile(jar.toFile())) {
            for (String name : List.of("all-minilm-l6-v2-q.onnx", "all-minilm-l6-v2-q-tokenizer.json")) {
                try (InputStream in = zip.getInputStream(zip.getEntry(name))) {
                    Files.copy(in, tmp.resolve(name));
                }
            }
        }
        try (SentenceEmbedder e = SentenceEmbedder.builder(tmp).maxTokens(16).batchSize(2).name("mini").build()) {
            assertEquals("mini", e.modelName());
            assertEquals(16, e.maxTokens());
            String head = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
            String longer = head + " fifteen sixteen seventeen and many more words after the cut";
            assertEquals(16, e.tokenCount(head));
            assertEquals(16, e.tokenCount(longer));
            float[][] v = e.embed(List.of(head, longer, "short"));
            assertEquals(3, v.length);
            for (int i = 0; i < 384; i++) {
                assertEquals(v[0][i], v[1][i], 1e-6, "the words past maxTokens are not read");
            }
            assertEquals(0, e.embed(List.of()).length);
            assertThrows(IllegalArgumentException.class, () -> e.embed(java.util.Arrays.asList("a", null)));
            e.close();
            assertThrows(IllegalStateException.class, () -> e.embed(List.of("after close")));
        }
        IllegalArgumentException tooLong = assertThrows(IllegalArgumentException.class,
                () -> SentenceEmbedder.builder(tmp).maxTokens(600).build().close());
        System.out.println("maxTokens 600: " + tooLong.getMessage());
    }

    @Test
    void aWrongChecksumIsRefused() {
        Path jar = MiniLmModels.jar(Variant.INT8);
        OnnxImportException e = assertThrows(OnnxImportException.class,
                () -> SentenceEmbedder.builder(jar).sha256(Variant.FP32.sha256).build().close());
        assertTrue(e.getMessage().contains(Variant.INT8.sha256), e.getMessage());
    }

    @Test
    void manyThreadsGetWhatOneThreadGets() throws Exception {
        List<String> texts = List.of("The quick brown fox jumps over the lazy dog.", "Hello world!",
                "Java tensor engines must match the reference within tolerance.", "A fourth, somewhat longer sentence here.");
        try (SentenceEmbedder e = SentenceEmbedder.builder(MiniLmModels.jar(Variant.INT8)).maxConcurrentRuns(4).build()) {
            float[][] alone = new float[texts.size()][];
            for (int i = 0; i < texts.size(); i++) {
                alone[i] = e.embed(List.of(texts.get(i)))[0];
            }
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<float[]>> futures = new ArrayList<>();
                for (int r = 0; r < 24; r++) {
                    String t = texts.get(r % texts.size());
                    futures.add(pool.submit(() -> e.embed(List.of(t))[0]));
                }
                for (int r = 0; r < futures.size(); r++) {
                    float[] got = futures.get(r).get();
                    float[] want = alone[r % texts.size()];
                    for (int i = 0; i < want.length; i++) {
                        assertEquals(want[i], got[i], 1e-6, "request " + r + " component " + i);
                    }
                }
            } finally {
                pool.shutdown();
            }
        }
    }
}
