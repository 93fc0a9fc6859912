package dev.cortado.serve;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.cortado.testing.Fuzzing;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fuzzes the request parsing of the embedding server ({@code EmbeddingServer.parse}, the
 * function the {@code POST /v1/embeddings} handler calls on the body): arbitrary bytes as the
 * body. Declared: {@code EmbeddingServer.HttpError} with status 400 and a message (it becomes the
 * OpenAI error JSON); everything else would be a 500. An accepted body has 1 to
 * {@code maxInputs} non-empty texts within {@code maxTextChars}. Corpus:
 * {@code EmbeddingRequestFuzzTestInputs/parse}.
 */
class EmbeddingRequestFuzzTest {
    static final List<Class<? extends Throwable>> DECLARED = List.of(EmbeddingServer.HttpError.class);
    private static final int MAX_INPUTS = 8;
    private static final int MAX_CHARS = 64;

    @FuzzTest(maxDuration = "20s")
    void parse(byte[] body) {
        Fuzzing.check("http-request", DECLARED, body, () -> {
            try {
                EmbeddingServer.EmbeddingRequest r = EmbeddingServer.parse(body, MAX_INPUTS, MAX_CHARS, 384,
                        "all-minilm-l6-v2");
                assertFalse(r.input().isEmpty());
                assertTrue(r.input().size() <= MAX_INPUTS);
                for (String text : r.input()) {
                    assertTrue(!text.isEmpty() && text.length() <= MAX_CHARS, text);
                }
            } catch (EmbeddingServer.HttpError e) {
                assertEquals(400, e.status, e.getMessage());
                throw e;
            }
        });
    }
}
