package dev.cortado.serve;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.cortado.testing.Fuzzing;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fuzzes the WordPiece tokenizer two ways.
 *
 * <p>{@link #fromJson}: arbitrary bytes as {@code tokenizer.json}, then encoding a few texts with
 * what was accepted. Declared, with a message: {@link IOException} (not JSON) and
 * {@link IllegalArgumentException} (not a BERT WordPiece tokenizer, a field of the wrong type,
 * naming it). Corpus: all-MiniLM-L6-v2's tokenizer.json with its vocabulary cut to 2,100 entries.
 *
 * <p>{@link #encode}: arbitrary text (any UTF-16, unpaired surrogates included) and limits
 * through that tokenizer. Declared: {@link IllegalArgumentException} for a {@code maxTokens} that
 * cannot hold the special tokens. Checked: at most {@code maxTokens} ids, each in the vocabulary,
 * and {@code count} agreeing with {@code encode}.
 */
class WordPieceTokenizerFuzzTest {
    static final List<Class<? extends Throwable>> DECLARED_JSON = List.of(IOException.class,
            IllegalArgumentException.class);
    static final List<Class<? extends Throwable>> DECLARED_ENCODE = List.of(IllegalArgumentException.class);
    private static final String MINILM = "WordPieceTokenizerFuzzTestInputs/fromJson/minilm-tokenizer-2100.json";
    private static WordPieceTokenizer tokenizer;

    @FuzzTest(maxDuration = "20s")
    void fromJson(byte[] data) {
        Fuzzing.check("tokenizer-json", DECLARED_JSON, data, () -> {
            WordPieceTokenizer t = WordPieceTokenizer.fromJson(new ByteArrayInputStream(data), "fuzz-tokenizer.json");
            for (String text : List.of("hello world", "The quick brown fox", "naïve 東京 😀", "")) {
                checkEncoding(t, text, 16);
            }
        });
    }

    @FuzzTest(maxDuration = "20s")
    void encode(FuzzedDataProvider in) {
        WordPieceTokenizer t = minilm();
        int maxTokens = in.consumeInt(-2, 600);
        String text = in.consumeRemainingAsString();
        Fuzzing.check("tokenizer-encode", DECLARED_ENCODE, null, () -> checkEncoding(t, text, maxTokens));
    }

    private static void checkEncoding(WordPieceTokenizer t, String text, int maxTokens) {
        WordPieceTokenizer.Encoding e = t.encode(text, maxTokens);
        assertTrue(e.length() <= maxTokens, "more than maxTokens");
        for (long id : e.ids()) {
            assertTrue(id >= 0 && id < t.vocabularySize(), "id outside the vocabulary: " + id);
        }
        assertEquals(e.length(), t.count(text, maxTokens), "count disagrees with encode");
    }

    private static synchronized WordPieceTokenizer minilm() {
        if (tokenizer == null) {
            try (InputStream in = WordPieceTokenizerFuzzTest.class.getResourceAsStream(MINILM)) {
                tokenizer = WordPieceTokenizer.fromJson(in, MINILM);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return tokenizer;
    }
}
