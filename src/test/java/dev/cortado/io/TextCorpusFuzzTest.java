package dev.cortado.io;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.cortado.testing.Fuzzing;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fuzzes {@link TextCorpus#read(java.io.InputStream, String, long)}: arbitrary bytes, gzipped or
 * not, as a UTF-8 corpus, with a cap of {@value #MAX_BYTES} bytes of text (so that inputs of a few
 * KiB that decompress past it reach the cap's check); an accepted text must survive
 * {@code decode(tokens())} and {@code encode(decode(...))} unchanged and be within the cap.
 * Declared: {@link IOException} with a message naming the input (malformed UTF-8, a corrupt or
 * truncated gzip stream, a text over the cap). Corpus:
 * {@code TextCorpusFuzzTestInputs/read} (the start of the shipped Jane Austen text).
 */
class TextCorpusFuzzTest {
    static final List<Class<? extends Throwable>> DECLARED = List.of(IOException.class);
    static final int MAX_BYTES = 1 << 16;

    @FuzzTest(maxDuration = "20s")
    void read(byte[] data) {
        Fuzzing.check("text-corpus", DECLARED, data, () -> {
            TextCorpus c = TextCorpus.read(new ByteArrayInputStream(data), "fuzz.txt", MAX_BYTES);
            assertTrue(c.byteLength() <= MAX_BYTES);
            long[] tokens = c.tokens();
            String text = c.decode(tokens);
            assertEquals(c.length(), text.codePointCount(0, text.length()));
            assertArrayEquals(tokens, c.encode(text));
            TextCorpus.Split split = c.split(0.1);
            assertEquals(tokens.length, split.train().length + split.validation().length);
        });
    }
}
