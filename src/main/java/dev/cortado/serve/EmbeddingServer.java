package dev.cortado.serve;

import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.cortado.onnx.InferenceMetrics;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An HTTP server for a {@link TextEmbedder}, speaking the OpenAI embeddings API, with a
 * {@link DynamicBatcher} between the requests and the model: the texts of all concurrent requests
 * are embedded together in batches.
 *
 * <pre>{@code
 * try (EmbeddingServer server = EmbeddingServer.builder(embedder).port(8080).build().start()) {
 *     server.awaitShutdown();     // or close() from another thread, a shutdown hook...
 * }
 * }</pre>
 *
 * <p>Endpoints ({@code docs/serving.md} shows requests and answers):
 * <ul>
 *   <li>{@code POST /v1/embeddings}: {@code {"input": "text" | ["text", ...], "model": ...,
 *       "encoding_format": "float" | "base64"}} → {@code {"object": "list", "data": [{"object":
 *       "embedding", "index": i, "embedding": [...]}], "model": ..., "usage": {"prompt_tokens": n,
 *       "total_tokens": n}}};</li>
 *   <li>{@code GET /health}: 200 {@code {"status": "ok", ...}} while serving, 503 while shutting down;</li>
 *   <li>{@code GET /metrics}: the Prometheus text format (requests by status, texts, tokens, batch
 *       sizes, latency quantiles, queue depth).</li>
 * </ul>
 *
 * <p>A bad request is answered with a 4xx status and the OpenAI error shape
 * {@code {"error": {"message": ..., "type": "invalid_request_error", "param": ..., "code": ...}}}:
 * malformed JSON, a missing or empty {@code input}, an empty text, more than {@code maxInputs}
 * texts, a text longer than {@code maxTextChars}, token arrays, wrong types, unknown fields,
 * {@code dimensions} other than the model's, an unknown {@code encoding_format}, a body over
 * {@code maxBodyBytes} (413), and texts the model rejects (its {@link IllegalArgumentException}).
 * Only that request fails: the batcher runs the others of its batch again without it. A full
 * queue is 503 with {@code Retry-After}.
 *
 * <p>{@link #close()} shuts down gracefully: health turns 503 and new requests are refused with 503,
 * the requests in progress finish (up to the grace period), then the listener closes, the batcher
 * stops and the embedder is closed.
 */
public final class EmbeddingServer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(EmbeddingServer.class);
    private static final JsonFactory JSON = JsonFactory.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();

    private final TextEmbedder embedder;
    private final Builder options;
    private final DynamicBatcher<String, float[]> batcher;
    private final InferenceMetrics httpMetrics = new InferenceMetrics();
    private final Map<String, LongAdder> responses = new ConcurrentHashMap<>();
    private final LongAdder texts = new LongAdder();
    private final LongAdder tokens = new LongAdder();
    private final AtomicInteger inFlight = new AtomicInteger();
    private final AtomicLong started = new AtomicLong();
    private final Object lifecycle = new Object();
    private HttpServer http;
    private ExecutorService handlers;
    private volatile boolean closing;
    private volatile boolean closed;

    private EmbeddingServer(Builder b) {
        this.embedder = b.embedder;
        this.options = b;
        this.batcher = DynamicBatcher.<String, float[]>builder(items -> List.of(embedder.embed(items)))
                .maxBatchSize(b.maxBatchSize).maxWait(b.maxWait).queueCapacity(b.queueCapacity)
                .maxConcurrentBatches(b.maxConcurrentBatches).name("embedding-batcher").build();
    }

    /** A builder for a server of {@code embedder} (the server closes it when it closes). */
    public static Builder builder(TextEmbedder embedder) {
        return new Builder(Objects.requireNonNull(embedder, "embedder"));
    }

    /**
     * Options of a server. Defaults: host 0.0.0.0, port 8080, batches of at most 32 texts, 2 ms of
     * waiting, one batch at a time, 4096 queued texts, 2048 texts per request, 8 MiB bodies,
     * 100,000 characters per text, 64 HTTP threads, 30 s grace at shutdown.
     */
    public static final class Builder {
        private final TextEmbedder embedder;
        private String host = "0.0.0.0";
        private int port = 8080;
        private int maxBatchSize = 32;
        private Duration maxWait = Duration.ofMillis(2);
        private int maxConcurrentBatches = 1;
        private int queueCapacity = 4096;
        private int maxInputs = 2048;
        private int maxBodyBytes = 8 << 20;
        private int maxTextChars = 100_000;
        private int httpThreads = 64;
        private Duration shutdownGrace = Duration.ofSeconds(30);

        private Builder(TextEmbedder embedder) {
            this.embedder = embedder;
        }

        private static int positive(String what, int n) {
            if (n < 1) {
                throw new IllegalArgumentException(what + " must be at least 1, got " + n);
            }
            return n;
        }

        /** The address to listen on (default 0.0.0.0, every interface; 127.0.0.1 for this machine only). */
        public Builder host(String h) {
            this.host = Objects.requireNonNull(h, "host");
            return this;
        }

        /** The TCP port (default 8080; 0 picks a free one, see {@link EmbeddingServer#port()}). */
        public Builder port(int p) {
            if (p < 0 || p > 65535) {
                throw new IllegalArgumentException("port must be in [0, 65535], got " + p);
            }
            this.port = p;
            return this;
        }

        /** The most texts one model call embeds (default 32). */
        public Builder maxBatchSize(int n) {
            this.maxBatchSize = positive("maxBatchSize", n);
            return this;
        }

        /** How long the oldest text of a batch waits for others (default 2 ms). */
        public Builder maxWait(Duration d) {
            this.maxWait = Objects.requireNonNull(d, "maxWait");
            return this;
        }

        /** How many model calls run at once (default 1: a call uses all the engine's threads). */
        public Builder maxConcurrentBatches(int n) {
            this.maxConcurrentBatches = positive("maxConcurrentBatches", n);
            return this;
        }

        /** How many texts may wait for a batch; beyond, requests get 503 (default 4096). */
        public Builder queueCapacity(int n) {
            this.queueCapacity = positive("queueCapacity", n);
            return this;
        }

        /** The most texts one request may carry (default 2048, as OpenAI's API). */
        public Builder maxInputs(int n) {
            this.maxInputs = positive("maxInputs", n);
            return this;
        }

        /** The largest request body in bytes; larger ones get 413 (default 8 MiB). */
        public Builder maxBodyBytes(int n) {
            this.maxBodyBytes = positive("maxBodyBytes", n);
            return this;
        }

        /** The longest text in characters (default 100,000). */
        public Builder maxTextChars(int n) {
            this.maxTextChars = positive("maxTextChars", n);
            return this;
        }

        /** Threads answering HTTP requests, each waiting for its texts' batches (default 64). */
        public Builder httpThreads(int n) {
            this.httpThreads = positive("httpThreads", n);
            return this;
        }

        /** How long {@link EmbeddingServer#close()} lets requests in progress finish (default 30 s). */
        public Builder shutdownGrace(Duration d) {
            this.shutdownGrace = Objects.requireNonNull(d, "shutdownGrace");
            return this;
        }

        /** The server, not yet listening ({@link EmbeddingServer#start()}). */
        public EmbeddingServer build() {
            return new EmbeddingServer(this);
        }
    }

    /** Binds the port and starts answering; returns this server. */
    public EmbeddingServer start() throws IOException {
        synchronized (lifecycle) {
            if (http != null || closed) {
                throw new IllegalStateException("the server was already started");
            }
            http = HttpServer.create(new InetSocketAddress(options.host, options.port), 256);
            AtomicInteger n = new AtomicInteger();
            handlers = Executors.newFixedThreadPool(options.httpThreads, r -> {
                Thread t = new Thread(r, "embedding-http-" + n.incrementAndGet());
                t.setDaemon(true);
                return t;
            });
            http.setExecutor(handlers);
            http.createContext("/v1/embeddings", e -> handle(e, "/v1/embeddings", "POST", this::embeddings));
            http.createContext("/health", e -> handle(e, "/health", "GET", this::health));
            http.createContext("/metrics", e -> handle(e, "/metrics", "GET", this::metrics));
            http.createContext("/", e -> handle(e, "other", null, x -> {
                throw new HttpError(404, "invalid_request_error", null, "not_found",
                        "no endpoint " + x.getRequestMethod() + " " + x.getRequestURI().getPath()
                                + " (POST /v1/embeddings, GET /health, GET /metrics)");
            }));
            http.start();
            started.set(System.nanoTime());
            LOG.info("serving {} ({} dimensions) on http://{}:{}/v1/embeddings", embedder.modelName(),
                    embedder.dimension(), options.host, port());
            return this;
        }
    }

    /** The port the server listens on (the one picked when built with port 0). */
    public int port() {
        if (http == null) {
            throw new IllegalStateException("the server is not started");
        }
        return http.getAddress().getPort();
    }

    /** The embedder served. */
    public TextEmbedder embedder() {
        return embedder;
    }

    /** The batcher between the requests and the model (its metrics, its queue). */
    public DynamicBatcher<String, float[]> batcher() {
        return batcher;
    }

    /** How many HTTP requests are being answered now. */
    public int inFlight() {
        return inFlight.get();
    }

    /** Blocks until {@link #close()} has finished (from another thread or a shutdown hook). */
    public void awaitShutdown() throws InterruptedException {
        synchronized (lifecycle) {
            while (!closed) {
                lifecycle.wait();
            }
        }
    }

    // ------------------------------------------------------------------ requests

    /** An answer other than 200: its status and the OpenAI error fields. */
    static final class HttpError extends RuntimeException {
        private static final long serialVersionUID = 1L;
        final int status;
        final String type;
        final String param;
        final String code;

        HttpError(int status, String type, String param, String code, String message) {
            super(message, null, false, false);
            this.status = status;
            this.type = type;
            this.param = param;
            this.code = code;
        }

        static HttpError invalid(String param, String message) {
            return new HttpError(400, "invalid_request_error", param, null, message);
        }
    }

    /** A body to send: bytes and their content type. */
    private record Answer(int status, String contentType, byte[] body) {
    }

    @FunctionalInterface
    private interface Endpoint {
        Answer answer(HttpExchange exchange) throws IOException;
    }

    private void handle(HttpExchange exchange, String path, String method, Endpoint endpoint) {
        long start = System.nanoTime();
        inFlight.incrementAndGet();
        Answer answer;
        try {
            if (method != null && !exchange.getRequestURI().getPath().equals(path)) {
                // the JDK matches contexts by prefix: /v1/embeddings/x and /healthz are not ours
                throw new HttpError(404, "invalid_request_error", null, "not_found",
                        "no endpoint " + exchange.getRequestURI().getPath()
                                + " (POST /v1/embeddings, GET /health, GET /metrics)");
            }
            if (method != null && !method.equalsIgnoreCase(exchange.getRequestMethod())) {
                exchange.getResponseHeaders().set("Allow", method);
                throw new HttpError(405, "invalid_request_error", null, "method_not_allowed",
                        path + " takes " + method + ", not " + exchange.getRequestMethod());
            }
            if (closing && !path.equals("/health") && !path.equals("/metrics")) {
                throw new HttpError(503, "server_error", null, "shutting_down", "the server is shutting down");
            }
            answer = endpoint.answer(exchange);
        } catch (HttpError e) {
            answer = error(e);
        } catch (IOException | RuntimeException | Error e) {
            LOG.error("{} {} failed", exchange.getRequestMethod(), path, e);
            answer = error(new HttpError(500, "server_error", null, null, "internal error: " + e));
        }
        try {
            exchange.getResponseHeaders().set("Content-Type", answer.contentType());
            if (answer.status() == 503) {
                exchange.getResponseHeaders().set("Retry-After", "1");
            }
            exchange.sendResponseHeaders(answer.status(), answer.body().length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(answer.body());
            }
        } catch (IOException e) {
            LOG.debug("could not send the answer to {} {}: {}", exchange.getRequestMethod(), path, e.toString());
        } finally {
            exchange.close();
            responses.computeIfAbsent(path + "\t" + answer.status(), k -> new LongAdder()).increment();
            if (path.equals("/v1/embeddings")) {
                httpMetrics.recordRequest(System.nanoTime() - start, answer.status() == 200);
            }
            if (inFlight.decrementAndGet() == 0) {
                synchronized (inFlight) {
                    inFlight.notifyAll();
                }
            }
        }
    }

    private static Answer error(HttpError e) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (JsonGenerator g = JSON.createGenerator(bytes, JsonEncoding.UTF8)) {
            g.writeStartObject();
            g.writeObjectFieldStart("error");
            g.writeStringField("message", e.getMessage());
            g.writeStringField("type", e.type);
            g.writeStringField("param", e.param);
            g.writeStringField("code", e.code);
            g.writeEndObject();
            g.writeEndObject();
        } catch (IOException io) {
            throw new IllegalStateException(io);
        }
        return new Answer(e.status, "application/json", bytes.toByteArray());
    }

    /** A parsed {@code POST /v1/embeddings} body. */
    record EmbeddingRequest(List<String> input, boolean base64) {
    }

    private Answer embeddings(HttpExchange exchange) throws IOException {
        EmbeddingRequest req = parse(readBody(exchange), options.maxInputs, options.maxTextChars,
                embedder.dimension(), embedder.modelName());
        int promptTokens = 0;
        for (int i = 0; i < req.input().size(); i++) {
            try {
                promptTokens += embedder.tokenCount(req.input().get(i));
            } catch (IllegalArgumentException e) {
                throw HttpError.invalid("input", "input[" + i + "]: " + e.getMessage());
            }
        }
        List<CompletableFuture<float[]>> futures;
        try {
            futures = batcher.submitAll(req.input());
        } catch (RejectedExecutionException e) {
            throw new HttpError(503, "server_error", null, "overloaded", "the server is overloaded: " + e.getMessage());
        } catch (IllegalStateException e) {
            throw new HttpError(503, "server_error", null, "shutting_down", "the server is shutting down");
        }
        List<float[]> vectors = new ArrayList<>(futures.size());
        for (int i = 0; i < futures.size(); i++) {
            try {
                vectors.add(futures.get(i).get());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new HttpError(503, "server_error", null, "shutting_down", "the server is shutting down");
            } catch (ExecutionException e) {
                Throwable cause = e.getCause();
                if (cause instanceof IllegalArgumentException) {
                    throw HttpError.invalid("input", (req.input().size() > 1 ? "input[" + i + "]: " : "")
                            + cause.getMessage());
                }
                if (cause instanceof IllegalStateException) {
                    throw new HttpError(503, "server_error", null, "shutting_down",
                            "the model is closed: " + cause.getMessage());
                }
                throw new IllegalStateException("the model failed on input[" + i + "]", cause);
            }
        }
        texts.add(vectors.size());
        tokens.add(promptTokens);
        return new Answer(200, "application/json", respond(vectors, req.base64(), promptTokens));
    }

    private byte[] readBody(HttpExchange exchange) throws IOException {
        String length = exchange.getRequestHeaders().getFirst("Content-Length");
        if (length != null) {
            try {
                if (Long.parseLong(length.trim()) > options.maxBodyBytes) {
                    throw tooLarge();
                }
            } catch (NumberFormatException e) {
                throw HttpError.invalid(null, "Content-Length is not a number: " + length);
            }
        }
        byte[] body;
        try (InputStream in = exchange.getRequestBody()) {
            body = in.readNBytes(options.maxBodyBytes + 1);
        } catch (IOException e) {
            // the JDK's body streams: a connection closed before Content-Length bytes came, a
            // malformed chunk (found by EmbeddingHttpFuzzTest; before, these were answered 500)
            throw HttpError.invalid(null, "the request body could not be read (" + e.getMessage()
                    + "): a Content-Length longer than the body, or a malformed chunked body");
        }
        if (body.length > options.maxBodyBytes) {
            throw tooLarge();
        }
        return body;
    }

    private HttpError tooLarge() {
        return new HttpError(413, "invalid_request_error", null, "request_too_large",
                "the request body is larger than " + options.maxBodyBytes + " bytes");
    }

    /**
     * Parses a {@code POST /v1/embeddings} body: a pure function of the bytes and the limits (the
     * fuzz target {@code EmbeddingRequestFuzzTest} calls it). Every refusal is an {@link HttpError}
     * with status 400 and a message.
     */
    static EmbeddingRequest parse(byte[] body, int maxInputs, int maxTextChars, int dimension, String modelName) {
        if (body.length == 0) {
            throw HttpError.invalid(null, "the request body is empty; send a JSON object with an 'input' field");
        }
        List<String> input = null;
        boolean base64 = false;
        try (JsonParser p = JSON.createParser(body)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw HttpError.invalid(null, "the request body must be a JSON object");
            }
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String field = p.currentName();
                JsonToken t = p.nextToken();
                switch (field) {
                    case "input" -> input = parseInput(p, t, maxInputs, maxTextChars);
                    case "model", "user" -> {
                        if (t != JsonToken.VALUE_STRING) {
                            throw HttpError.invalid(field, "'" + field + "' must be a string");
                        }
                    }
                    case "encoding_format" -> {
                        String f = t == JsonToken.VALUE_STRING ? p.getText() : null;
                        if (!"float".equals(f) && !"base64".equals(f)) {
                            throw HttpError.invalid(field, "'encoding_format' must be \"float\" or \"base64\", got "
                                    + (f == null ? describe(t) : "\"" + f + "\""));
                        }
                        base64 = f.equals("base64");
                    }
                    case "dimensions" -> {
                        if (t != JsonToken.VALUE_NUMBER_INT || p.getLongValue() != dimension) {
                            throw HttpError.invalid(field, "'dimensions' is not supported: " + modelName
                                    + " gives " + dimension + "-dimensional embeddings and does not shorten them");
                        }
                    }
                    default -> throw HttpError.invalid(field, "unrecognized request argument: '" + field + "'");
                }
            }
            if (p.currentToken() != JsonToken.END_OBJECT || p.nextToken() != null) {
                throw HttpError.invalid(null, "the request body must be one JSON object");
            }
        } catch (JsonProcessingException e) {
            throw HttpError.invalid(null, "the request body is not valid JSON: " + e.getOriginalMessage()
                    + " (line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ")");
        } catch (IOException e) {
            throw HttpError.invalid(null, "the request body could not be read: " + e.getMessage());
        }
        if (input == null) {
            throw HttpError.invalid("input", "'input' is required: a string or an array of strings");
        }
        return new EmbeddingRequest(input, base64);
    }

    private static List<String> parseInput(JsonParser p, JsonToken t, int maxInputs, int maxTextChars)
            throws IOException {
        List<String> input = new ArrayList<>();
        if (t == JsonToken.VALUE_STRING) {
            input.add(checkText(p.getText(), -1, maxTextChars));
        } else if (t == JsonToken.START_ARRAY) {
            for (JsonToken e = p.nextToken(); e != JsonToken.END_ARRAY; e = p.nextToken()) {
                if (e == JsonToken.VALUE_NUMBER_INT || e == JsonToken.START_ARRAY) {
                    throw HttpError.invalid("input", "token arrays are not supported: send the texts as strings");
                }
                if (e != JsonToken.VALUE_STRING) {
                    throw HttpError.invalid("input", "input[" + input.size() + "] must be a string, got "
                            + describe(e));
                }
                if (input.size() == maxInputs) {
                    throw HttpError.invalid("input", "too many inputs: at most " + maxInputs
                            + " texts per request");
                }
                input.add(checkText(p.getText(), input.size(), maxTextChars));
            }
            if (input.isEmpty()) {
                throw HttpError.invalid("input", "'input' must not be an empty array");
            }
        } else {
            throw HttpError.invalid("input", "'input' must be a string or an array of strings, got " + describe(t));
        }
        return input;
    }

    private static String describe(JsonToken t) {
        return switch (t) {
            case VALUE_NUMBER_INT, VALUE_NUMBER_FLOAT -> "a number";
            case VALUE_TRUE, VALUE_FALSE -> "a boolean";
            case VALUE_NULL -> "null";
            case START_OBJECT -> "an object";
            case START_ARRAY -> "an array";
            default -> t.toString();
        };
    }

    private static String checkText(String text, int index, int maxTextChars) {
        String where = index < 0 ? "'input'" : "input[" + index + "]";
        if (text.isEmpty()) {
            throw HttpError.invalid("input", where + " is an empty string");
        }
        if (text.length() > maxTextChars) {
            throw HttpError.invalid("input", where + " has " + text.length() + " characters, more than the "
                    + maxTextChars + " allowed");
        }
        return text;
    }

    private byte[] respond(List<float[]> vectors, boolean base64, int promptTokens) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream(64 + vectors.size() * (embedder.dimension() * 12 + 48));
        try (JsonGenerator g = JSON.createGenerator(bytes, JsonEncoding.UTF8)) {
            g.writeStartObject();
            g.writeStringField("object", "list");
            g.writeArrayFieldStart("data");
            for (int i = 0; i < vectors.size(); i++) {
                float[] v = vectors.get(i);
                g.writeStartObject();
                g.writeStringField("object", "embedding");
                g.writeNumberField("index", i);
                g.writeFieldName("embedding");
                if (base64) {
                    ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
                    b.asFloatBuffer().put(v);
                    g.writeString(Base64.getEncoder().encodeToString(b.array()));
                } else {
                    g.writeStartArray(v, v.length);
                    for (float x : v) {
                        g.writeNumber(x);
                    }
                    g.writeEndArray();
                }
                g.writeEndObject();
            }
            g.writeEndArray();
            g.writeStringField("model", embedder.modelName());
            g.writeObjectFieldStart("usage");
            g.writeNumberField("prompt_tokens", promptTokens);
            g.writeNumberField("total_tokens", promptTokens);
            g.writeEndObject();
            g.writeEndObject();
        }
        return bytes.toByteArray();
    }

    private Answer health(HttpExchange exchange) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (JsonGenerator g = JSON.createGenerator(bytes, JsonEncoding.UTF8)) {
            g.writeStartObject();
            g.writeStringField("status", closing ? "shutting_down" : "ok");
            g.writeStringField("model", embedder.modelName());
            g.writeNumberField("dimension", embedder.dimension());
            g.writeNumberField("max_tokens", embedder.maxTokens());
            g.writeEndObject();
        }
        return new Answer(closing ? 503 : 200, "application/json", bytes.toByteArray());
    }

    private Answer metrics(HttpExchange exchange) {
        return new Answer(200, "text/plain; version=0.0.4; charset=utf-8",
                prometheus().getBytes(StandardCharsets.UTF_8));
    }

    /** The metrics in the Prometheus text exposition format (what {@code GET /metrics} answers). */
    public String prometheus() {
        StringBuilder s = new StringBuilder(2048);
        header(s, "cortado_http_requests_total", "counter", "HTTP requests answered, by path and status code.");
        responses.entrySet().stream().sorted(Map.Entry.comparingByKey()).forEach(e -> {
            String[] pathCode = e.getKey().split("\t");
            s.append("cortado_http_requests_total{path=\"").append(pathCode[0]).append("\",code=\"")
                    .append(pathCode[1]).append("\"} ").append(e.getValue().sum()).append('\n');
        });
        gauge(s, "cortado_http_in_flight", "HTTP requests being answered now.", inFlight.get());
        summary(s, "cortado_http_request_duration_seconds",
                "Time to answer POST /v1/embeddings (reading, batching, embedding, writing).", httpMetrics.snapshot(), true);
        header(s, "cortado_embedding_inputs_total", "counter", "Texts embedded.");
        s.append("cortado_embedding_inputs_total ").append(texts.sum()).append('\n');
        header(s, "cortado_embedding_tokens_total", "counter", "Tokens of the texts embedded (the usage reports' sum).");
        s.append("cortado_embedding_tokens_total ").append(tokens.sum()).append('\n');
        InferenceMetrics.Snapshot b = batcher.metrics();
        summary(s, "cortado_batcher_text_duration_seconds",
                "Time from queueing a text to its vector (waiting for a batch included).", b, true);
        header(s, "cortado_batcher_rejected_total", "counter", "Texts turned away: the queue was full or closed.");
        s.append("cortado_batcher_rejected_total ").append(b.rejected()).append('\n');
        header(s, "cortado_batcher_failed_total", "counter", "Texts whose model call failed.");
        s.append("cortado_batcher_failed_total ").append(b.failed()).append('\n');
        gauge(s, "cortado_batcher_queue_depth", "Texts waiting for a batch now.", batcher.queued());
        header(s, "cortado_batch_size", "summary", "Texts per model call.");
        s.append("cortado_batch_size{quantile=\"0.5\"} ").append(b.medianBatchSize()).append('\n');
        s.append("cortado_batch_size{quantile=\"1\"} ").append(b.maxBatchSize()).append('\n');
        s.append("cortado_batch_size_sum ").append(b.batchedItems()).append('\n');
        s.append("cortado_batch_size_count ").append(b.batches()).append('\n');
        gauge(s, "cortado_uptime_seconds", "Seconds since the server started.",
                started.get() == 0 ? 0 : (System.nanoTime() - started.get()) / 1e9);
        return s.toString();
    }

    private static void header(StringBuilder s, String name, String type, String help) {
        s.append("# HELP ").append(name).append(' ').append(help).append('\n');
        s.append("# TYPE ").append(name).append(' ').append(type).append('\n');
    }

    private static void gauge(StringBuilder s, String name, String help, double value) {
        header(s, name, "gauge", help);
        s.append(name).append(' ').append(number(value)).append('\n');
    }

    private static void summary(StringBuilder s, String name, String help, InferenceMetrics.Snapshot m, boolean latency) {
        header(s, name, "summary", help);
        double[][] q = {{0.5, m.p50()}, {0.9, m.p90()}, {0.99, m.p99()}, {0.999, m.p999()}};
        for (double[] e : q) {
            s.append(name).append("{quantile=\"").append(number(e[0])).append("\"} ").append(number(e[1])).append('\n');
        }
        s.append(name).append("_sum ").append(number(m.latencySum())).append('\n');
        s.append(name).append("_count ").append(m.requests()).append('\n');
    }

    private static String number(double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? Long.toString((long) v) : String.format(Locale.ROOT, "%.9g", v);
    }

    // ------------------------------------------------------------------ shutdown

    /**
     * Graceful shutdown: refuses new requests (503, health 503), lets the requests in progress
     * finish for up to the grace period, closes the listener, the batcher (its queue runs out
     * first) and the embedder. Idempotent.
     */
    @Override
    public void close() {
        synchronized (lifecycle) {
            if (closed || closing) {
                return;
            }
            closing = true;
        }
        long deadline = System.nanoTime() + options.shutdownGrace.toNanos();
        try {
            synchronized (inFlight) {
                while (inFlight.get() > 0 && System.nanoTime() < deadline) {
                    inFlight.wait(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (http != null) {
            http.stop(0);
            handlers.shutdown();
        }
        batcher.close(Duration.ofNanos(Math.max(0, deadline - System.nanoTime())));
        embedder.close();
        if (handlers != null) {
            handlers.shutdownNow();
        }
        LOG.info("stopped serving {}: {}", embedder.modelName(), batcher.metrics());
        synchronized (lifecycle) {
            closed = true;
            lifecycle.notifyAll();
        }
    }
}
