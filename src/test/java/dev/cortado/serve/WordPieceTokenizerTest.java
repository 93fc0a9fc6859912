package dev.cortado.serve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.abort;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import dev.cortado.onnx.MiniLmModels;
import dev.cortado.onnx.OnnxTestCases;
import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link WordPieceTokenizer} against Hugging Face's own tokenizers (the Rust library, through
 * DJL's {@code ai.djl.huggingface:tokenizers}), both reading all-MiniLM-L6-v2's tokenizer.json:
 * the same ids and tokens, special tokens included, for the golden sentences, a few thousand
 * lines of Jane Austen (and long runs of them, truncated), and generated texts mixing accents,
 * combining marks, CJK, other scripts, emoji, unusual whitespace, control and format characters,
 * literal special tokens and over-long words. The tokenizer.json comes from the all-MiniLM-L6-v2
 * jar (skipped offline); the Austen text from {@code ../shared/conformance/text} (skipped when absent).
 */
class WordPieceTokenizerTest {
    @TempDir
    static Path tmp;
    static Path json;
    static WordPieceTokenizer ours;
    static HuggingFaceTokenizer hf128;
    static HuggingFaceTokenizer hf512;

    @BeforeAll
    static void load() throws IOException {
        json = MiniLmModels.tokenizerJson(tmp);
        ours = WordPieceTokenizer.fromJson(json);
        hf128 = hf(128);
        hf512 = hf(512);
    }

    /** Hugging Face's tokenizer with truncation at {@code maxLength} and no padding (as ours encodes one text). */
    static HuggingFaceTokenizer hf(int maxLength) throws IOException {
        return HuggingFaceTokenizer.newInstance(json, Map.of("padding", "false", "truncation", "true",
                "maxLength", Integer.toString(maxLength)));
    }

    @AfterAll
    static void close() {
        if (hf128 != null) {
            hf128.close();
        }
        if (hf512 != null) {
            hf512.close();
        }
    }

    @Test
    void goldenSentencesGiveTheReadmeIds() {
        assertArrayEquals(new long[] {101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102},
                ours.encode("The quick brown fox jumps over the lazy dog.").ids());
        assertArrayEquals(new long[] {101, 9262, 23435, 5209, 2442, 2674, 1996, 4431, 2306, 13986, 1012, 102},
                ours.encode("Java tensor engines must match the reference within tolerance.").ids());
        assertArrayEquals(new long[] {101, 7592, 2088, 999, 102}, ours.encode("Hello world!").ids());
        assertEquals(List.of("[CLS]", "hello", "world", "!", "[SEP]"), ours.encode("Hello world!").tokens());
        assertEquals(128, ours.maxLength());
        assertEquals(30522, ours.vocabularySize());
    }

    @Test
    void agreesWithHuggingFaceOnAusten() throws IOException {
        Path gz = OnnxTestCases.conformanceDir().resolve("text").resolve("austen-6-novels.txt.gz");
        if (!Files.isRegularFile(gz)) {
            abort(gz + " not found; skipping");
        }
        List<String> lines = new ArrayList<>();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(new GZIPInputStream(Files.newInputStream(gz)),
                StandardCharsets.UTF_8))) {
            for (String line; (line = r.readLine()) != null; ) {
                lines.add(line);
            }
        }
        List<String> texts = new ArrayList<>();
        for (int i = 0; i < lines.size(); i += 20) {
            texts.add(lines.get(i));
        }
        // long inputs: runs of 40 lines (~500 word pieces) cut at 128 and at 512 tokens
        for (int i = 0; i + 40 < lines.size(); i += 1500) {
            texts.add(String.join("\n", lines.subList(i, i + 40)));
        }
        int compared = compareAll(texts);
        assertTrue(compared > 3000, "compared " + compared + " texts");
    }

    @Test
    void agreesWithHuggingFaceOnUnicodeAndOddInputs() {
        List<String> texts = new ArrayList<>(List.of(
                "", " ", "\t\n\r", "Café déjà vu, naïve façade; Ångström São Paulo", "ÉCOLE ÇA Œuvre",
                "e\u0301 combining acute, n\u0303", "中文分词测试：你好，世界！", "日本語のテキストとカタカナ",
                "한국어 텍스트", "Привет, мир! Ёжик", "ΣΊΣΥΦΟΣ σοφός Σ", "مرحبا بالعالم", "नमस्ते दुनिया",
                "สวัสดีชาวโลก", "emoji 😀👍🏽 family 👨\u200D👩\u200D👧", "zero\u200Bwidth soft\u00ADhyphen \uFEFFbom",
                "non\u00A0breaking em\u2003space ideographic\u3000space line\u2028sep", "bell\u0007 nel\u0085 nul\u0000 repl\uFFFD",
                "private \uE000 use, unassigned \u0378 and \uFDD0", "[CLS] [SEP] [MASK] [UNK] [PAD] inside", "[mask] is not special",
                "a[MASK]b[SEP]c", "İstanbul straße ﬁne Ｆｕｌｌｗｉｄｔｈ １２３", "x".repeat(101), "y".repeat(100),
                "supercalifragilisticexpialidocious antidisestablishmentarianism", "qwxzv zzzzqqq unknownwordzzz",
                "$100 + 5% = <tag> ^caret^ `tick` |pipe| ~tilde~ @at #hash &amp; _under_ {brace}",
                "«quotes» „low“ ‘single’ — dash – en … ellipsis · middot ¿qué? ¡sí!", "3.14159 1,000,000 2024-01-01T12:00",
                "e-mail@example.com https://example.org/path?q=1&r=2", "CamelCaseWords and snake_case_words",
                "\u0130\u0131 Iı dotted", "ﬀ ﬃ ligatures", "A\u030A vs \u00C5", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟏𝟐", "𠀀𠀁 ext-B ideographs"));
        // generated texts: random mixes of the pools below
        String[] pools = {
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            "éèêëàâäôöûüçñÉÈÀÇÑøåæœßÅ",
            "\u0301\u0300\u0308\u0327\u030A",
            "中文字符测试汉语词典漢字",
            "ひらがなカタカナ한글Кириллица",
            ".,;:!?'\"()[]{}<>-_/\\@#$%^&*+=|~`«»“”‘’…—–¿¡",
            "  \t\n\u00A0\u2003\u3000",
            "\u200B\u200D\u00AD\uFEFF\u0007\u0000\uFFFD\uE000",
        };
        Random rnd = new Random(20261206);
        for (int n = 0; n < 600; n++) {
            StringBuilder sb = new StringBuilder();
            int len = 1 + rnd.nextInt(n % 50 == 0 ? 800 : 60);
            for (int i = 0; i < len; i++) {
                String pool = pools[rnd.nextInt(10) < 5 ? 0 : rnd.nextInt(pools.length)];
                sb.append(pool.charAt(rnd.nextInt(pool.length())));
                if (rnd.nextInt(8) == 0) {
                    sb.append(' ');
                }
            }
            sb.append(n % 7 == 0 ? " 😀" : "");
            texts.add(sb.toString());
        }
        compareAll(texts);
    }

    /** Compares every text at 128 and at 512 tokens; returns how many texts. */
    static int compareAll(List<String> texts) {
        for (String t : texts) {
            for (int max : new int[] {128, 512}) {
                Encoding e = (max == 128 ? hf128 : hf512).encode(t);
                WordPieceTokenizer.Encoding o = ours.encode(t, max);
                String what = "text " + escape(t) + " at " + max + " tokens";
                assertEquals(Arrays.asList(e.getTokens()), o.tokens(), what);
                assertArrayEquals(e.getIds(), o.ids(), what);
                assertEquals(o.length(), ours.count(t, max), what);
            }
        }
        return texts.size();
    }

    @Test
    void longTextsKeepTheirBeginning() {
        String text = "one two three four five six seven eight nine ten eleven twelve";
        WordPieceTokenizer.Encoding e = ours.encode(text, 6);
        assertEquals(List.of("[CLS]", "one", "two", "three", "four", "[SEP]"), e.tokens());
        assertThrows(IllegalArgumentException.class, () -> ours.encode(text, 2));
    }

    @Test
    void batchesArePaddedToTheLongest() {
        WordPieceTokenizer.Batch b = ours.encodeBatch(List.of("Hello world!", "The quick brown fox jumps over the lazy dog."), 128);
        assertEquals(2, b.batch());
        assertEquals(12, b.length());
        assertEquals(5, b.tokens(0));
        assertEquals(12, b.tokens(1));
        assertArrayEquals(new long[] {101, 7592, 2088, 999, 102, 0, 0, 0, 0, 0, 0, 0}, Arrays.copyOfRange(b.ids(), 0, 12));
        assertArrayEquals(new long[] {1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}, Arrays.copyOfRange(b.attentionMask(), 0, 12));
        assertEquals(0, Arrays.stream(b.typeIds()).sum());
    }

    @Test
    void otherTokenizerKindsAreRefusedNamingTheField() {
        String bpe = "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}";
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> WordPieceTokenizer.fromJson(new ByteArrayInputStream(bpe.getBytes(StandardCharsets.UTF_8)), "t.json"));
        assertTrue(e.getMessage().contains("model type BPE"), e.getMessage());
        String noUnk = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}";
        e = assertThrows(IllegalArgumentException.class,
                () -> WordPieceTokenizer.fromJson(new ByteArrayInputStream(noUnk.getBytes(StandardCharsets.UTF_8)), "t.json"));
        assertTrue(e.getMessage().contains("[UNK]"), e.getMessage());
        String badVocab = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": \"zero\"}}}";
        e = assertThrows(IllegalArgumentException.class,
                () -> WordPieceTokenizer.fromJson(new ByteArrayInputStream(badVocab.getBytes(StandardCharsets.UTF_8)), "t.json"));
        assertTrue(e.getMessage().contains("model.vocab.a"), e.getMessage());
        // ids outside 0..n-1 (found by the tokenizer-json fuzz target: a negative id indexed the id
        // table, a huge one would have sized it)
        for (String id : new String[] {"-2", "2", "2147483647"}) {
            String outside = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"a\": " + id + "}}}";
            e = assertThrows(IllegalArgumentException.class,
                    () -> WordPieceTokenizer.fromJson(new ByteArrayInputStream(outside.getBytes(StandardCharsets.UTF_8)), "t.json"));
            assertTrue(e.getMessage().contains("model.vocab.a has id " + id) && e.getMessage().contains("[0, 2)"),
                    e.getMessage());
        }
    }

    static String escape(String s) {
        StringBuilder sb = new StringBuilder("\"");
        s.codePoints().limit(200).forEach(cp -> {
            if (cp < 0x20 || cp > 0x7E) {
                sb.append(String.format("\\u{%x}", cp));
            } else {
                sb.appendCodePoint(cp);
            }
        });
        return sb.append(s.length() > 200 ? "...\"" : "\"").toString();
    }
}
