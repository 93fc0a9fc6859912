package dev.cortado.io;

import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * A UTF-8 text and its character-level tokenization: the vocabulary is the text's distinct
 * Unicode code points in ascending order, and token {@code i} is the code point
 * {@code vocabulary()[i]}. {@link #austen()} is the shipped corpus (Jane Austen's six novels,
 * 4,025,035 bytes, 81 distinct characters).
 *
 * <p>Immutable; token arrays returned are copies.
 */
public final class TextCorpus {
    private final String name;
    private final long byteLength;
    private final int[] vocabulary;
    private final int[] tokens;

    private TextCorpus(String name, String text, long byteLength) {
        this.name = name;
        this.byteLength = byteLength;
        int[] cps = text.codePoints().toArray();
        this.vocabulary = Arrays.stream(cps).distinct().sorted().toArray();
        this.tokens = new int[cps.length];
        for (int i = 0; i < cps.length; i++) {
            tokens[i] = Arrays.binarySearch(vocabulary, cps[i]);
        }
    }

    /** A corpus over {@code text}. */
    public static TextCorpus of(String text) {
        return new TextCorpus("text", text, text.getBytes(StandardCharsets.UTF_8).length);
    }

    /**
     * The most bytes of text {@link #read(Path)} takes by default, after decompression: 256 MiB.
     * A gzip file expands up to about 1000 times, so without a cap a small file (a "gzip bomb")
     * could ask for more memory than the JVM has; a corpus this size already takes 2 GiB of token
     * and code point arrays. {@link #read(Path, long)} sets another cap.
     */
    public static final long DEFAULT_MAX_BYTES = 256L << 20;

    /** Reads a UTF-8 file, gzipped or not, of at most {@link #DEFAULT_MAX_BYTES} bytes of text. */
    public static TextCorpus read(Path path) throws IOException {
        return read(path, DEFAULT_MAX_BYTES);
    }

    /**
     * Reads a UTF-8 file, gzipped or not. Malformed UTF-8, corrupt gzip data and a text of more
     * than {@code maxBytes} bytes (counted after decompression, and refused before they are all
     * read) throw an {@link IOException} naming the file.
     */
    public static TextCorpus read(Path path, long maxBytes) throws IOException {
        try (InputStream in = Files.newInputStream(path)) {
            return read(in, path.toString(), maxBytes);
        }
    }

    /** Reads UTF-8 (gzipped or not) from {@code in} to its end, at most {@link #DEFAULT_MAX_BYTES} bytes. */
    public static TextCorpus read(InputStream in, String name) throws IOException {
        return read(in, name, DEFAULT_MAX_BYTES);
    }

    /**
     * Reads UTF-8 (gzipped or not) from {@code in} to its end; {@code name} names it in messages, and a
     * text of more than {@code maxBytes} bytes after decompression is refused (an {@link IOException})
     * once {@code maxBytes + 1} bytes are read.
     */
    public static TextCorpus read(InputStream in, String name, long maxBytes) throws IOException {
        if (maxBytes < 0 || maxBytes > Integer.MAX_VALUE - 9) {
            throw new IllegalArgumentException("TextCorpus.read: maxBytes " + maxBytes + " is not in [0, "
                    + (Integer.MAX_VALUE - 9) + "] (a Java array's limit)");
        }
        byte[] bytes;
        try {
            bytes = Resources.maybeGunzip(in).readNBytes((int) maxBytes + 1);
        } catch (java.io.EOFException | java.util.zip.ZipException e) {
            throw new IOException(name + ": truncated or corrupt gzip data: " + e.getMessage(), e);
        }
        if (bytes.length > maxBytes) {
            throw new IOException(name + ": more than " + maxBytes + " bytes of text after decompression (the cap;"
                    + " TextCorpus.read(path, maxBytes) sets another)");
        }
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            IOException f = new IOException(name + ": not valid UTF-8: " + e);
            f.initCause(e);
            throw f;
        }
        return new TextCorpus(name, text, bytes.length);
    }

    /** Reads a classpath resource (absolute name). */
    public static TextCorpus readResource(String resource) throws IOException {
        try (InputStream in = Resources.open(resource)) {
            return read(in, "classpath:" + resource);
        }
    }

    /** The shipped corpus: Jane Austen's six novels (public domain; see dev/cortado/data/SOURCE.txt). */
    public static TextCorpus austen() {
        try {
            return readResource(Resources.DATA + "austen-6-novels.txt.gz");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public String name() {
        return name;
    }

    /** Size of the UTF-8 text in bytes. */
    public long byteLength() {
        return byteLength;
    }

    /** Number of tokens (code points). */
    public int length() {
        return tokens.length;
    }

    public int vocabSize() {
        return vocabulary.length;
    }

    /** The vocabulary: distinct code points, ascending (a copy). */
    public int[] vocabulary() {
        return vocabulary.clone();
    }

    /** The whole text as token ids. */
    public long[] tokens() {
        return range(0, tokens.length);
    }

    private long[] range(int from, int to) {
        long[] out = new long[to - from];
        for (int i = from; i < to; i++) {
            out[i - from] = tokens[i];
        }
        return out;
    }

    /** The token id of each code point of {@code s}; throws naming a character outside the vocabulary. */
    public long[] encode(String s) {
        int[] cps = s.codePoints().toArray();
        long[] out = new long[cps.length];
        for (int i = 0; i < cps.length; i++) {
            int id = Arrays.binarySearch(vocabulary, cps[i]);
            if (id < 0) {
                throw new IllegalArgumentException("encode: character '" + new String(Character.toChars(cps[i]))
                        + "' (U+" + String.format("%04X", cps[i]) + ") at index " + i + " is not in the vocabulary of "
                        + name);
            }
            out[i] = id;
        }
        return out;
    }

    /** The text of token ids; throws naming an id outside [0, vocabSize). */
    public String decode(long[] ids) {
        StringBuilder sb = new StringBuilder(ids.length);
        for (int i = 0; i < ids.length; i++) {
            long id = ids[i];
            if (id < 0 || id >= vocabulary.length) {
                throw new IllegalArgumentException("decode: token id " + id + " at index " + i + " is outside [0, "
                        + vocabulary.length + ")");
            }
            sb.appendCodePoint(vocabulary[(int) id]);
        }
        return sb.toString();
    }

    /** Decodes an integer tensor of any shape (its elements in row-major order). */
    public String decode(Tensor ids) {
        return decode(ids.toLongArray());
    }

    /** Train and validation token ids. */
    public record Split(long[] train, long[] validation) {
    }

    /**
     * Splits the tokens: the first {@code 1 - validationFraction} for training, the last
     * {@code validationFraction} (rounded down to whole tokens) for validation; e.g. 0.1.
     */
    public Split split(double validationFraction) {
        if (!(validationFraction >= 0 && validationFraction <= 1)) {
            throw new IllegalArgumentException("split: validation fraction " + validationFraction + " is outside [0, 1]");
        }
        int cut = tokens.length - (int) Math.floor(tokens.length * validationFraction);
        return new Split(range(0, cut), range(cut, tokens.length));
    }

    @Override
    public String toString() {
        return "TextCorpus(" + name + ", " + tokens.length + " characters, vocabulary " + vocabulary.length + ")";
    }
}
