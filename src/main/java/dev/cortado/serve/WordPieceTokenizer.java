package dev.cortado.serve;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The BERT WordPiece tokenizer, configured from a Hugging Face {@code tokenizer.json}: what
 * BERT-family sentence encoders (all-MiniLM, bge, e5...) read.
 *
 * <p>{@link #encode} does, in order, what the Hugging Face tokenizers library does for such a
 * file:
 * <ol>
 *   <li><b>added tokens</b>: occurrences of the special tokens ({@code [CLS]}, {@code [MASK]}...)
 *       in the raw text are kept whole (leftmost, longest first) and the text between them is
 *       tokenized;</li>
 *   <li><b>normalization</b> ({@code BertNormalizer}): control characters, U+0000 and U+FFFD are
 *       dropped and whitespace becomes a space; CJK ideographs get a space on each side; accents
 *       are stripped (NFD, then non-spacing marks removed) when {@code strip_accents} says so or,
 *       when it is null, when lowercasing; then lowercasing;</li>
 *   <li><b>pre-tokenization</b> ({@code BertPreTokenizer}): split on whitespace (dropped) and
 *       around every punctuation character (ASCII punctuation and the Unicode P* categories),
 *       each punctuation character its own word;</li>
 *   <li><b>WordPiece</b>: each word is cut greedily, longest match first, into vocabulary pieces,
 *       the ones after the first with the {@code ##} prefix; a word with no such cut, or longer
 *       than {@code max_input_chars_per_word} characters, becomes one {@code [UNK]};</li>
 *   <li><b>truncation</b> to {@code maxTokens} including the special tokens (the tail of the text
 *       is dropped, as sentence-transformers does), then the template ({@code [CLS] ... [SEP]}).</li>
 * </ol>
 * Instances are immutable and thread-safe. The tokens are checked against Hugging Face's own
 * implementation (through DJL) by {@code WordPieceTokenizerTest}.
 */
public final class WordPieceTokenizer {
    /** Where a text goes in the template: the special token ids before and after it. */
    private final long[] prefix;
    private final long[] suffix;
    private final Map<String, Integer> vocab;
    private final String[] idToToken;
    private final String unkToken;
    private final int unkId;
    private final String continuingPrefix;
    private final int maxInputCharsPerWord;
    private final boolean cleanText;
    private final boolean handleChineseChars;
    private final boolean stripAccents;
    private final boolean lowercase;
    private final List<AddedToken> rawAddedTokens;
    private final List<AddedToken> normalizedAddedTokens;
    private final int padId;
    private final int padTypeId;
    private final int maxLength;

    /** A special or added token of tokenizer.json's {@code added_tokens}. */
    private record AddedToken(String content, int id, boolean singleWord, boolean lstrip, boolean rstrip) {
    }

    private WordPieceTokenizer(Map<String, Object> json, String source) {
        Map<String, Object> model = object(json.get("model"), "model", source);
        if (!"WordPiece".equals(model.get("type"))) {
            throw new IllegalArgumentException(source + ": model type " + model.get("type")
                    + " is not supported (only WordPiece)");
        }
        Map<String, Object> v = object(model.get("vocab"), "model.vocab", source);
        Map<String, Integer> ids = new HashMap<>(v.size() * 2);
        int maxId = -1;
        for (Map.Entry<String, Object> e : v.entrySet()) {
            int id = integer(e.getValue(), "model.vocab." + e.getKey(), source);
            if (id < 0 || id >= v.size()) {
                // ids number the entries 0..n-1; a negative or larger one would index (or size)
                // the id-to-token table from the file (found by the tokenizer-json fuzz target)
                throw new IllegalArgumentException(source + ": model.vocab." + e.getKey() + " has id " + id
                        + ", not in [0, " + v.size() + ") (the vocabulary has " + v.size() + " entries)");
            }
            ids.put(e.getKey(), id);
            maxId = Math.max(maxId, id);
        }
        this.vocab = Collections.unmodifiableMap(ids);
        this.idToToken = new String[maxId + 1];
        ids.forEach((token, id) -> idToToken[id] = token);
        this.unkToken = string(model.getOrDefault("unk_token", "[UNK]"), "model.unk_token", source);
        Integer unk = ids.get(unkToken);
        if (unk == null) {
            throw new IllegalArgumentException(source + ": the unknown token " + unkToken + " is not in the vocabulary");
        }
        this.unkId = unk;
        this.continuingPrefix = string(model.getOrDefault("continuing_subword_prefix", "##"),
                "model.continuing_subword_prefix", source);
        this.maxInputCharsPerWord = integer(model.getOrDefault("max_input_chars_per_word", 100),
                "model.max_input_chars_per_word", source);

        Object norm = json.get("normalizer");
        if (norm == null) {
            cleanText = handleChineseChars = stripAccents = lowercase = false;
        } else {
            Map<String, Object> n = object(norm, "normalizer", source);
            if (!"BertNormalizer".equals(n.get("type"))) {
                throw new IllegalArgumentException(source + ": normalizer " + n.get("type")
                        + " is not supported (only BertNormalizer)");
            }
            cleanText = flag(n, "clean_text", true, source);
            handleChineseChars = flag(n, "handle_chinese_chars", true, source);
            lowercase = flag(n, "lowercase", true, source);
            Object strip = n.get("strip_accents");
            stripAccents = strip == null ? lowercase : flag(n, "strip_accents", lowercase, source);
        }
        Object pre = json.get("pre_tokenizer");
        if (pre != null && !"BertPreTokenizer".equals(object(pre, "pre_tokenizer", source).get("type"))) {
            throw new IllegalArgumentException(source + ": pre_tokenizer " + object(pre, "pre_tokenizer", source).get("type")
                    + " is not supported (only BertPreTokenizer)");
        }

        List<AddedToken> raw = new ArrayList<>();
        List<AddedToken> normalized = new ArrayList<>();
        Object added = json.get("added_tokens");
        if (added != null) {
            for (Object o : list(added, "added_tokens", source)) {
                Map<String, Object> a = object(o, "added_tokens[]", source);
                AddedToken t = new AddedToken(string(a.get("content"), "added_tokens[].content", source),
                        integer(a.get("id"), "added_tokens[].id", source), flag(a, "single_word", false, source),
                        flag(a, "lstrip", false, source), flag(a, "rstrip", false, source));
                if (t.content().isEmpty()) {
                    continue;
                }
                (flag(a, "normalized", false, source) ? normalized : raw).add(t);
            }
        }
        this.rawAddedTokens = List.copyOf(raw);
        this.normalizedAddedTokens = List.copyOf(normalized);

        long[][] template = template(json.get("post_processor"), source);
        this.prefix = template[0];
        this.suffix = template[1];

        Object padding = json.get("padding");
        if (padding != null) {
            Map<String, Object> p = object(padding, "padding", source);
            padId = integer(p.getOrDefault("pad_id", 0), "padding.pad_id", source);
            padTypeId = integer(p.getOrDefault("pad_type_id", 0), "padding.pad_type_id", source);
        } else {
            Integer pad = ids.get("[PAD]");
            padId = pad == null ? 0 : pad;
            padTypeId = 0;
        }
        Object truncation = json.get("truncation");
        maxLength = truncation == null ? Integer.MAX_VALUE
                : integer(object(truncation, "truncation", source).get("max_length"), "truncation.max_length", source);
    }

    /** Reads a {@code tokenizer.json} file. */
    public static WordPieceTokenizer fromJson(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            return fromJson(in, file.toString());
        }
    }

    /**
     * Reads a {@code tokenizer.json} document from {@code in} ({@code source} names it in
     * error messages).
     *
     * @throws IllegalArgumentException when it is not a WordPiece tokenizer with the BERT
     *     normalizer and pre-tokenizer, or a field has the wrong type
     */
    public static WordPieceTokenizer fromJson(InputStream in, String source) throws IOException {
        Object root;
        try (JsonParser p = new JsonFactory().createParser(in)) {
            p.nextToken();
            root = readValue(p);
        }
        return new WordPieceTokenizer(object(root, "(root)", source), source);
    }

    /**
     * One text's tokens, special tokens included.
     *
     * @param ids the token ids
     * @param tokens the tokens (vocabulary strings) of the ids, in order
     */
    public record Encoding(long[] ids, List<String> tokens) {
        /** A defensive copy of the ids and an immutable token list. */
        public Encoding {
            ids = ids.clone();
            tokens = List.copyOf(tokens);
        }

        /** The ids (a copy). */
        @Override
        public long[] ids() {
            return ids.clone();
        }

        /** How many tokens. */
        public int length() {
            return ids.length;
        }
    }

    /**
     * Texts encoded together and padded on the right to the longest: {@code [batch, length]}
     * row-major arrays, ready to become the model's int64 inputs.
     *
     * @param ids the token ids, {@code padId} after each text's end
     * @param attentionMask 1 on the text's tokens, 0 on padding
     * @param typeIds the segment ids (the template's type id, the pad type id on padding)
     * @param batch how many texts
     * @param length the longest text's token count (every row's length)
     */
    public record Batch(long[] ids, long[] attentionMask, long[] typeIds, int batch, int length) {
        /** The number of real (not padding) tokens of row {@code i}. */
        public int tokens(int i) {
            int n = 0;
            for (int j = 0; j < length; j++) {
                n += (int) attentionMask[i * length + j];
            }
            return n;
        }
    }

    /** The token ids of {@code text} with the template's special tokens, cut to {@link #maxLength()}. */
    public Encoding encode(String text) {
        return encode(text, maxLength);
    }

    /**
     * The tokens of {@code text}: {@code [CLS]}, its word pieces, {@code [SEP]} (per the
     * tokenizer's template), at most {@code maxTokens} in all: the pieces past
     * {@code maxTokens - specials} are dropped (the end of a long text is not read).
     *
     * @throws IllegalArgumentException when {@code maxTokens} cannot hold the special tokens
     */
    public Encoding encode(String text, int maxTokens) {
        Objects.requireNonNull(text, "text");
        int specials = prefix.length + suffix.length;
        if (maxTokens < specials + 1) {
            throw new IllegalArgumentException("maxTokens " + maxTokens + " leaves no room for a token besides the "
                    + specials + " special tokens");
        }
        List<Integer> pieces = pieceIds(text, maxTokens - specials);
        long[] ids = new long[specials + pieces.size()];
        System.arraycopy(prefix, 0, ids, 0, prefix.length);
        for (int i = 0; i < pieces.size(); i++) {
            ids[prefix.length + i] = pieces.get(i);
        }
        System.arraycopy(suffix, 0, ids, prefix.length + pieces.size(), suffix.length);
        List<String> tokens = new ArrayList<>(ids.length);
        for (long id : ids) {
            tokens.add(token((int) id));
        }
        return new Encoding(ids, tokens);
    }

    /** How many tokens {@link #encode(String, int)} gives, without building them. */
    public int count(String text, int maxTokens) {
        int specials = prefix.length + suffix.length;
        return specials + pieceIds(text, Math.max(0, maxTokens - specials)).size();
    }

    /**
     * Encodes {@code texts} (each cut to {@code maxTokens}) and pads them on the right to the
     * longest of them.
     */
    public Batch encodeBatch(List<String> texts, int maxTokens) {
        List<Encoding> encodings = new ArrayList<>(texts.size());
        int length = 0;
        for (String t : texts) {
            Encoding e = encode(t, maxTokens);
            encodings.add(e);
            length = Math.max(length, e.length());
        }
        int batch = texts.size();
        long[] ids = new long[batch * length];
        long[] mask = new long[batch * length];
        long[] types = new long[batch * length];
        Arrays.fill(ids, padId);
        Arrays.fill(types, padTypeId);
        for (int i = 0; i < batch; i++) {
            long[] e = encodings.get(i).ids;
            for (int j = 0; j < e.length; j++) {
                ids[i * length + j] = e[j];
                mask[i * length + j] = 1;
                types[i * length + j] = 0; // a single sequence: type 0 throughout
            }
        }
        return new Batch(ids, mask, types, batch, length);
    }

    /** The truncation length that tokenizer.json sets ({@code truncation.max_length}), or {@link Integer#MAX_VALUE}. */
    public int maxLength() {
        return maxLength;
    }

    /** The number of ids in the vocabulary (the model's embedding rows). */
    public int vocabularySize() {
        return idToToken.length;
    }

    /** The id of {@code token}, or -1 when it is not in the vocabulary. */
    public int id(String token) {
        Integer id = vocab.get(token);
        return id == null ? -1 : id;
    }

    /** The token of {@code id}. */
    public String token(int id) {
        if (id < 0 || id >= idToToken.length || idToToken[id] == null) {
            throw new IllegalArgumentException("token id " + id + " is not in the vocabulary (size " + idToToken.length + ")");
        }
        return idToToken[id];
    }

    // ------------------------------------------------------------------ the pipeline

    /** The word-piece ids of {@code text} (no special tokens), at most {@code limit} of them. */
    private List<Integer> pieceIds(String text, int limit) {
        List<Integer> out = new ArrayList<>();
        for (Object segment : splitAdded(text, rawAddedTokens)) {
            if (out.size() >= limit) {
                break;
            }
            if (segment instanceof AddedToken t) {
                out.add(t.id());
                continue;
            }
            String normalized = normalize((String) segment);
            for (Object part : splitAdded(normalized, normalizedAddedTokens)) {
                if (part instanceof AddedToken t) {
                    out.add(t.id());
                } else {
                    for (String word : preTokenize((String) part)) {
                        wordPiece(word, out);
                        if (out.size() >= limit) {
                            break;
                        }
                    }
                }
                if (out.size() >= limit) {
                    break;
                }
            }
        }
        return out.size() > limit ? out.subList(0, limit) : out;
    }

    /**
     * {@code text} cut at the occurrences of {@code tokens} (leftmost first, the longest when
     * several start at one place): a list of strings and {@link AddedToken}s.
     */
    private static List<Object> splitAdded(String text, List<AddedToken> tokens) {
        if (tokens.isEmpty()) {
            return List.of(text);
        }
        List<Object> out = new ArrayList<>();
        int start = 0;
        int i = 0;
        while (i < text.length()) {
            AddedToken match = null;
            for (AddedToken t : tokens) {
                if (text.startsWith(t.content(), i) && (match == null || t.content().length() > match.content().length())
                        && (!t.singleWord() || isWordBoundary(text, i, i + t.content().length()))) {
                    match = t;
                }
            }
            if (match == null) {
                i++;
                continue;
            }
            int from = i;
            int to = i + match.content().length();
            if (match.lstrip()) {
                while (from > start && Character.isWhitespace(text.charAt(from - 1))) {
                    from--;
                }
            }
            if (match.rstrip()) {
                while (to < text.length() && Character.isWhitespace(text.charAt(to))) {
                    to++;
                }
            }
            if (from > start) {
                out.add(text.substring(start, from));
            }
            out.add(match);
            start = to;
            i = to;
        }
        if (start < text.length()) {
            out.add(text.substring(start));
        }
        return out;
    }

    /** No letter, digit or underscore just before {@code from} nor at {@code to}. */
    private static boolean isWordBoundary(String text, int from, int to) {
        boolean before = from > 0 && isWordChar(text.codePointBefore(from));
        boolean after = to < text.length() && isWordChar(text.codePointAt(to));
        return !before && !after;
    }

    private static boolean isWordChar(int cp) {
        return Character.isLetterOrDigit(cp) || cp == '_';
    }

    /** BertNormalizer: clean, space out CJK ideographs, strip accents, lowercase. */
    String normalize(String text) {
        StringBuilder sb = new StringBuilder(text.length() + 8);
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            i += Character.charCount(cp);
            if (cleanText) {
                if (cp == 0 || cp == 0xFFFD || isControl(cp)) {
                    continue;
                }
                if (isWhitespace(cp)) {
                    sb.append(' ');
                    continue;
                }
            }
            if (handleChineseChars && isChineseChar(cp)) {
                sb.append(' ').appendCodePoint(cp).append(' ');
            } else {
                sb.appendCodePoint(cp);
            }
        }
        String s = sb.toString();
        if (stripAccents) {
            String nfd = Normalizer.normalize(s, Normalizer.Form.NFD);
            StringBuilder kept = new StringBuilder(nfd.length());
            for (int i = 0; i < nfd.length(); ) {
                int cp = nfd.codePointAt(i);
                i += Character.charCount(cp);
                if (Character.getType(cp) != Character.NON_SPACING_MARK) {
                    kept.appendCodePoint(cp);
                }
            }
            s = kept.toString();
        }
        if (lowercase) {
            StringBuilder lower = new StringBuilder(s.length());
            for (int i = 0; i < s.length(); ) {
                int cp = s.codePointAt(i);
                i += Character.charCount(cp);
                if (cp == 0x130) {
                    lower.append("i\u0307"); // the one full (two-character) lowercase mapping
                } else {
                    lower.appendCodePoint(Character.toLowerCase(cp));
                }
            }
            s = lower.toString();
        }
        return s;
    }

    /** BertPreTokenizer: split on whitespace (dropped) and around punctuation (kept, one word each). */
    static List<String> preTokenize(String text) {
        List<String> words = new ArrayList<>();
        int start = -1;
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            int next = i + Character.charCount(cp);
            if (isWhitespace(cp) || isPunctuation(cp)) {
                if (start >= 0) {
                    words.add(text.substring(start, i));
                    start = -1;
                }
                if (!isWhitespace(cp)) {
                    words.add(text.substring(i, next));
                }
            } else if (start < 0) {
                start = i;
            }
            i = next;
        }
        if (start >= 0) {
            words.add(text.substring(start));
        }
        return words;
    }

    /** Greedy longest-match-first WordPiece of one word, appended to {@code out}. */
    private void wordPiece(String word, List<Integer> out) {
        int chars = word.codePointCount(0, word.length());
        if (chars > maxInputCharsPerWord) {
            out.add(unkId);
            return;
        }
        int mark = out.size();
        int start = 0;
        while (start < word.length()) {
            int end = word.length();
            Integer found = null;
            while (end > start) {
                String piece = word.substring(start, end);
                Integer id = vocab.get(start > 0 ? continuingPrefix + piece : piece);
                if (id != null) {
                    found = id;
                    break;
                }
                end = word.offsetByCodePoints(end, -1);
            }
            if (found == null) {
                out.subList(mark, out.size()).clear();
                out.add(unkId);
                return;
            }
            out.add(found);
            start = end;
        }
    }

    /**
     * Control characters as the BERT normalizer of Hugging Face tokenizers removes them: Cc, Cf
     * and Co (and lone surrogates, which a Rust string cannot hold), except tab, newline and
     * return. Unassigned code points (Cn) are kept, as it keeps them (they become [UNK]).
     */
    private static boolean isControl(int cp) {
        if (cp == '\t' || cp == '\n' || cp == '\r') {
            return false;
        }
        int type = Character.getType(cp);
        return type == Character.CONTROL || type == Character.FORMAT || type == Character.PRIVATE_USE
                || type == Character.SURROGATE;
    }

    /** Unicode White_Space (what Rust's char::is_whitespace tests). */
    static boolean isWhitespace(int cp) {
        return switch (cp) {
            case '\t', '\n', 0x0B, 0x0C, '\r', ' ', 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000 -> true;
            default -> cp >= 0x2000 && cp <= 0x200A;
        };
    }

    /** ASCII punctuation (which includes symbols such as $ + < = > ^ ` | ~) or a Unicode P* character. */
    static boolean isPunctuation(int cp) {
        if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) {
            return true;
        }
        return switch (Character.getType(cp)) {
            case Character.CONNECTOR_PUNCTUATION, Character.DASH_PUNCTUATION, Character.START_PUNCTUATION,
                    Character.END_PUNCTUATION, Character.INITIAL_QUOTE_PUNCTUATION, Character.FINAL_QUOTE_PUNCTUATION,
                    Character.OTHER_PUNCTUATION -> true;
            default -> false;
        };
    }

    /** The CJK ideograph blocks BERT spaces out (the Unified Ideographs and their extensions, the compatibility blocks). */
    static boolean isChineseChar(int cp) {
        return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF)
                || (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF)
                || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
    }

    // ------------------------------------------------------------------ tokenizer.json

    /** The special ids before and after the sequence in the single-text template. */
    private long[][] template(Object post, String source) {
        if (post == null) {
            return new long[][] {new long[0], new long[0]};
        }
        Map<String, Object> p = object(post, "post_processor", source);
        Object type = p.get("type");
        if ("BertProcessing".equals(type)) {
            long cls = integer(list(p.get("cls"), "post_processor.cls", source).get(1), "post_processor.cls", source);
            long sep = integer(list(p.get("sep"), "post_processor.sep", source).get(1), "post_processor.sep", source);
            return new long[][] {{cls}, {sep}};
        }
        if (!"TemplateProcessing".equals(type)) {
            throw new IllegalArgumentException(source + ": post_processor " + type
                    + " is not supported (TemplateProcessing or BertProcessing)");
        }
        Map<String, Object> specials = object(p.getOrDefault("special_tokens", Map.of()), "post_processor.special_tokens", source);
        List<Long> before = new ArrayList<>();
        List<Long> after = new ArrayList<>();
        boolean seen = false;
        for (Object o : list(p.get("single"), "post_processor.single", source)) {
            Map<String, Object> piece = object(o, "post_processor.single[]", source);
            if (piece.containsKey("Sequence")) {
                if (seen) {
                    throw new IllegalArgumentException(source + ": post_processor.single names the sequence twice");
                }
                seen = true;
                continue;
            }
            Map<String, Object> special = object(piece.get("SpecialToken"), "post_processor.single[].SpecialToken", source);
            String name = string(special.get("id"), "SpecialToken.id", source);
            Map<String, Object> def = object(specials.get(name), "post_processor.special_tokens." + name, source);
            for (Object id : list(def.get("ids"), "post_processor.special_tokens." + name + ".ids", source)) {
                (seen ? after : before).add((long) integer(id, name, source));
            }
        }
        if (!seen) {
            throw new IllegalArgumentException(source + ": post_processor.single has no Sequence");
        }
        return new long[][] {before.stream().mapToLong(Long::longValue).toArray(),
                after.stream().mapToLong(Long::longValue).toArray()};
    }

    /** A JSON value as Map (objects, in order), List, String, Long, Double, Boolean or null. */
    private static Object readValue(JsonParser p) throws IOException {
        JsonToken t = p.currentToken();
        if (t == null) {
            throw new IOException("unexpected end of the JSON document");
        }
        switch (t) {
            case START_OBJECT: {
                Map<String, Object> m = new LinkedHashMap<>();
                while (p.nextToken() == JsonToken.FIELD_NAME) {
                    String name = p.currentName();
                    p.nextToken();
                    m.put(name, readValue(p));
                }
                return m;
            }
            case START_ARRAY: {
                List<Object> l = new ArrayList<>();
                while (p.nextToken() != JsonToken.END_ARRAY) {
                    l.add(readValue(p));
                }
                return l;
            }
            case VALUE_STRING:
                return p.getText();
            case VALUE_NUMBER_INT:
                return p.getLongValue();
            case VALUE_NUMBER_FLOAT:
                return p.getDoubleValue();
            case VALUE_TRUE:
                return Boolean.TRUE;
            case VALUE_FALSE:
                return Boolean.FALSE;
            case VALUE_NULL:
                return null;
            default:
                throw new IOException("unexpected JSON token " + t);
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> object(Object o, String field, String source) {
        if (o instanceof Map<?, ?> m) {
            return (Map<String, Object>) m;
        }
        throw new IllegalArgumentException(source + ": " + field + " must be a JSON object, got " + describe(o));
    }

    @SuppressWarnings("unchecked")
    private static List<Object> list(Object o, String field, String source) {
        if (o instanceof List<?> l) {
            return (List<Object>) l;
        }
        throw new IllegalArgumentException(source + ": " + field + " must be a JSON array, got " + describe(o));
    }

    private static String string(Object o, String field, String source) {
        if (o instanceof String s) {
            return s;
        }
        throw new IllegalArgumentException(source + ": " + field + " must be a string, got " + describe(o));
    }

    private static int integer(Object o, String field, String source) {
        if (o instanceof Long l && l >= Integer.MIN_VALUE && l <= Integer.MAX_VALUE) {
            return l.intValue();
        }
        throw new IllegalArgumentException(source + ": " + field + " must be an integer, got " + describe(o));
    }

    private static boolean flag(Map<String, Object> m, String field, boolean defaultValue, String source) {
        Object o = m.get(field);
        if (o == null) {
            return defaultValue;
        }
        if (o instanceof Boolean b) {
            return b;
        }
        throw new IllegalArgumentException(source + ": " + field + " must be true or false, got " + describe(o));
    }

    private static String describe(Object o) {
        return o == null ? "null" : o.getClass().getSimpleName() + " " + String.valueOf(o).substring(0,
                Math.min(40, String.valueOf(o).length()));
    }

    /** Unchecked reading of a tokenizer.json file, for builders. */
    static WordPieceTokenizer read(Path file) {
        try {
            return fromJson(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the tokenizer " + file, e);
        }
    }
}
