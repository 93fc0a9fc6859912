package dev.cortado.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The embedding server over real HTTP (java.net.http.HttpClient against an ephemeral port), with a
 * small real Cortado model ({@link NgramEmbedder}) whose vectors are checked against a float64
 * reference: the OpenAI response shape and values, float and base64, batching under concurrent
 * clients, every bad input (the server keeps serving), health, Prometheus metrics, and a graceful
 * shutdown with requests in flight.
 */
class EmbeddingServerTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();

    private static EmbeddingServer start(NgramEmbedder model, int maxInputs) throws IOException {
        return EmbeddingServer.builder(model).host("127.0.0.1").port(0).maxInputs(maxInputs).maxBodyBytes(4096)
                .maxTextChars(1000).maxWait(Duration.ofMillis(5)).httpThreads(32).build().start();
    }

    private static URI uri(EmbeddingServer s, String path) {
        return URI.create("http://127.0.0.1:" + s.port() + path);
    }

    private static HttpRequest post(EmbeddingServer s, String body) {
        return HttpRequest.newBuilder(uri(s, "/v1/embeddings")).header("Content-Type", "application/json")
                .timeout(Duration.ofSeconds(60)).POST(HttpRequest.BodyPublishers.ofString(body)).build();
    }

    private static HttpResponse<String> send(HttpRequest r) throws IOException, InterruptedException {
        return CLIENT.send(r, HttpResponse.BodyHandlers.ofString());
    }

    private static float[] floats(JsonNode array) {
        float[] v = new float[array.size()];
        for (int i = 0; i < v.length; i++) {
            v[i] = array.get(i).floatValue();
        }
        return v;
    }

    private static String quote(String s) throws IOException {
        return JSON.writeValueAsString(s);
    }

    @Test
    void answersInTheOpenAiShapeWithTheModelsValues() throws Exception {
        try (NgramEmbedder model = new NgramEmbedder(16); EmbeddingServer s = start(model, 16)) {
            HttpResponse<String> r = send(post(s, "{\"input\": \"The quick brown fox\", \"model\": \"anything\"}"));
            assertEquals(200, r.statusCode(), r.body());
            assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
            JsonNode j = JSON.readTree(r.body());
            assertEquals("list", j.get("object").asText());
            assertEquals("ngram-test-16", j.get("model").asText());
            assertEquals(1, j.get("data").size());
            JsonNode d = j.get("data").get(0);
            assertEquals("embedding", d.get("object").asText());
            assertEquals(0, d.get("index").asInt());
            model.assertEmbedding("The quick brown fox", floats(d.get("embedding")));
            assertEquals(4, j.get("usage").get("prompt_tokens").asInt());
            assertEquals(4, j.get("usage").get("total_tokens").asInt());

            List<String> texts = List.of("first text", "a second, longer text here", "ünïcödé ✓ 文字", "x");
            StringBuilder body = new StringBuilder("{\"input\": [");
            for (int i = 0; i < texts.size(); i++) {
                body.append(i > 0 ? ", " : "").append(quote(texts.get(i)));
            }
            body.append("], \"encoding_format\": \"float\", \"dimensions\": 16, \"user\": \"test\"}");
            j = JSON.readTree(send(post(s, body.toString())).body());
            assertEquals(texts.size(), j.get("data").size());
            for (int i = 0; i < texts.size(); i++) {
                assertEquals(i, j.get("data").get(i).get("index").asInt());
                model.assertEmbedding(texts.get(i), floats(j.get("data").get(i).get("embedding")));
            }
            assertEquals(2 + 5 + 3 + 1, j.get("usage").get("prompt_tokens").asInt());

            String b64 = body.toString().replace("\"float\"", "\"base64\"");
            JsonNode k = JSON.readTree(send(post(s, b64)).body());
            for (int i = 0; i < texts.size(); i++) {
                byte[] bytes = Base64.getDecoder().decode(k.get("data").get(i).get("embedding").asText());
                assertEquals(16 * 4, bytes.length);
                float[] v = new float[16];
                ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(v);
                float[] f = floats(j.get("data").get(i).get("embedding"));
                for (int c = 0; c < 16; c++) {
                    assertEquals(f[c], v[c], 0f, "base64 carries the same float32 values");
                }
            }
        }
    }

    /** One bad request: its status, and a piece of its message. */
    private record Bad(String body, int status, String param, String message) {
    }

    @Test
    void everyBadInputIsAClear4xxAndTheServerKeepsServing() throws Exception {
        String nine = "{\"input\": [" + "\"t\", ".repeat(8) + "\"t\"]}";
        List<Bad> cases = List.of(
                new Bad("{not json", 400, null, "not valid JSON"),
                new Bad("", 400, null, "body is empty"),
                new Bad("[\"a\"]", 400, null, "must be a JSON object"),
                new Bad("{}", 400, "input", "'input' is required"),
                new Bad("{\"model\": \"m\"}", 400, "input", "'input' is required"),
                new Bad("{\"input\": []}", 400, "input", "must not be an empty array"),
                new Bad("{\"input\": \"\"}", 400, "input", "'input' is an empty string"),
                new Bad("{\"input\": [\"a\", \"\"]}", 400, "input", "input[1] is an empty string"),
                new Bad("{\"input\": 5}", 400, "input", "got a number"),
                new Bad("{\"input\": null}", 400, "input", "got null"),
                new Bad("{\"input\": [\"a\", 3.5]}", 400, "input", "input[1] must be a string, got a number"),
                new Bad("{\"input\": [\"a\", {\"x\": 1}]}", 400, "input", "input[1] must be a string, got an object"),
                new Bad("{\"input\": [[1, 2, 3]]}", 400, "input", "token arrays are not supported"),
                new Bad("{\"input\": [101, 2023]}", 400, "input", "token arrays are not supported"),
                new Bad("{\"input\": \"a\", \"dimensions\": 4}", 400, "dimensions", "'dimensions' is not supported"),
                new Bad("{\"input\": \"a\", \"dimensions\": \"16\"}", 400, "dimensions", "'dimensions' is not supported"),
                new Bad("{\"input\": \"a\", \"encoding_format\": \"int8\"}", 400, "encoding_format", "\"int8\""),
                new Bad("{\"input\": \"a\", \"model\": 3}", 400, "model", "'model' must be a string"),
                new Bad("{\"input\": \"a\", \"temperature\": 1}", 400, "temperature", "unrecognized request argument"),
                new Bad("{\"input\": \"a\", \"input\": \"b\"}", 400, null, "Duplicate field 'input'"),
                new Bad("{\"input\": \"a\"} {}", 400, null, "one JSON object"),
                new Bad("{\"input\": \"a\"", 400, null, "not valid JSON"),
                new Bad(nine, 400, "input", "too many inputs: at most 8"),
                new Bad("{\"input\": \"" + "y".repeat(1001) + "\"}", 400, "input", "1001 characters"),
                new Bad("{\"input\": [\"fine\", \"bad\\u0000text\"]}", 400, "input", "NUL character"),
                new Bad("{\"input\": \"" + "z ".repeat(2100) + "\"}", 413, null, "larger than 4096 bytes"));
        try (NgramEmbedder model = new NgramEmbedder(8); EmbeddingServer s = start(model, 8)) {
            for (Bad bad : cases) {
                HttpResponse<String> r = send(post(s, bad.body()));
                String what = bad.body().length() > 60 ? bad.body().substring(0, 60) + "..." : bad.body();
                assertEquals(bad.status(), r.statusCode(), what + " -> " + r.body());
                JsonNode e = JSON.readTree(r.body()).get("error");
                assertTrue(e != null && e.get("message").asText().contains(bad.message()), what + " -> " + r.body());
                assertEquals("invalid_request_error", e.get("type").asText(), r.body());
                assertEquals(bad.param(), e.get("param").isNull() ? null : e.get("param").asText(), what + " -> " + r.body());
                // and the next good request is served
                HttpResponse<String> ok = send(post(s, "{\"input\": \"still here\"}"));
                assertEquals(200, ok.statusCode(), "after " + what + ": " + ok.body());
            }
            // a body without Content-Length (chunked), larger than the limit
            byte[] big = ("{\"input\": \"" + "w".repeat(5000) + "\"}").getBytes();
            HttpResponse<String> r = send(HttpRequest.newBuilder(uri(s, "/v1/embeddings"))
                    .POST(HttpRequest.BodyPublishers.ofInputStream(() -> new ByteArrayInputStream(big))).build());
            assertEquals(413, r.statusCode(), r.body());
            HttpResponse<String> get = send(HttpRequest.newBuilder(uri(s, "/v1/embeddings")).GET().build());
            assertEquals(405, get.statusCode());
            assertEquals("POST", get.headers().firstValue("Allow").orElse(null));
            HttpResponse<String> missing = send(HttpRequest.newBuilder(uri(s, "/v2/nothing")).GET().build());
            assertEquals(404, missing.statusCode());
            assertTrue(JSON.readTree(missing.body()).get("error").get("message").asText().contains("/v2/nothing"));
            // the JDK matches contexts by prefix; these are still unknown paths
            assertEquals(404, send(HttpRequest.newBuilder(uri(s, "/healthz")).GET().build()).statusCode());
            assertEquals(404, send(HttpRequest.newBuilder(uri(s, "/v1/embeddings/x"))
                    .POST(HttpRequest.BodyPublishers.ofString("{\"input\": \"a\"}")).build()).statusCode());
        }
    }

    @Test
    void concurrentClientsAreBatchedAndABadOneFailsAlone() throws Exception {
        try (NgramEmbedder model = new NgramEmbedder(12, 3); EmbeddingServer s = start(model, 64)) {
            int clients = 16;
            int each = 6;
            List<CompletableFuture<Void>> all = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                int id = c;
                all.add(CompletableFuture.runAsync(() -> {
                    try {
                        for (int i = 0; i < each; i++) {
                            String text = "client " + id + " request " + i;
                            HttpResponse<String> r = send(post(s, "{\"input\": " + quote(text) + "}"));
                            assertEquals(200, r.statusCode(), r.body());
                            model.assertEmbedding(text, floats(JSON.readTree(r.body()).get("data").get(0).get("embedding")));
                        }
                    } catch (IOException | InterruptedException e) {
                        throw new RuntimeException(e);
                    }
                }, java.util.concurrent.Executors.newSingleThreadExecutor()));
            }
            // while they run, requests that the model itself refuses: only they fail
            for (int i = 0; i < 5; i++) {
                HttpResponse<String> bad = send(post(s, "{\"input\": [\"ok " + i + "\", \"no\\u0000\"]}"));
                assertEquals(400, bad.statusCode(), bad.body());
            }
            for (CompletableFuture<Void> f : all) {
                f.get(120, TimeUnit.SECONDS);
            }
            var m = s.batcher().metrics();
            assertTrue(m.maxBatchSize() > 1, "concurrent requests were batched: " + m);
            assertTrue(model.calls() < clients * each, "fewer model calls than texts: " + model.calls());
        }
    }

    private static final Pattern SAMPLE = Pattern.compile("[a-z_]+(\\{[a-z_]+=\"[^\"]*\"(,[a-z_]+=\"[^\"]*\")*\\})? -?[0-9.eE+-]+");

    @Test
    void healthAndPrometheusMetrics() throws Exception {
        try (NgramEmbedder model = new NgramEmbedder(8); EmbeddingServer s = start(model, 8)) {
            HttpResponse<String> h = send(HttpRequest.newBuilder(uri(s, "/health")).GET().build());
            assertEquals(200, h.statusCode());
            JsonNode j = JSON.readTree(h.body());
            assertEquals("ok", j.get("status").asText());
            assertEquals(8, j.get("dimension").asInt());
            send(post(s, "{\"input\": [\"one two\", \"three\"]}"));
            send(post(s, "{\"input\": []}"));
            HttpResponse<String> m = send(HttpRequest.newBuilder(uri(s, "/metrics")).GET().build());
            assertEquals(200, m.statusCode());
            assertTrue(m.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"));
            String text = m.body();
            for (String line : text.split("\n")) {
                assertTrue(line.startsWith("# HELP ") || line.startsWith("# TYPE ") || SAMPLE.matcher(line).matches(),
                        "not a Prometheus sample line: " + line);
            }
            assertTrue(text.contains("cortado_http_requests_total{path=\"/v1/embeddings\",code=\"200\"} 1\n"), text);
            assertTrue(text.contains("cortado_http_requests_total{path=\"/v1/embeddings\",code=\"400\"} 1\n"), text);
            assertTrue(text.contains("cortado_embedding_inputs_total 2\n"), text);
            assertTrue(text.contains("cortado_embedding_tokens_total 3\n"), text);
            assertTrue(text.contains("# TYPE cortado_batch_size summary\n") && text.contains("cortado_batch_size_sum 2\n"), text);
            assertTrue(text.contains("cortado_batcher_text_duration_seconds_count 2\n"), text);
        }
    }

    @Test
    void closeFinishesRequestsInFlightThenStopsAndClosesTheModel() throws Exception {
        NgramEmbedder model = new NgramEmbedder(8, 400);
        EmbeddingServer s = EmbeddingServer.builder(model).host("127.0.0.1").port(0).maxBatchSize(2)
                .maxWait(Duration.ZERO).build().start();
        int port = s.port();
        List<CompletableFuture<HttpResponse<String>>> inFlight = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            inFlight.add(CLIENT.sendAsync(post(s, "{\"input\": \"in flight " + i + "\"}"), HttpResponse.BodyHandlers.ofString()));
        }
        long t0 = System.nanoTime();
        while ((model.calls() == 0 || s.inFlight() < 4) && System.nanoTime() - t0 < 30_000_000_000L) {
            Thread.sleep(5);
        }
        Thread closer = new Thread(s::close);
        closer.start();
        Thread.sleep(50);
        // while it drains: health says so, and new work is refused (or the listener is already gone)
        try {
            HttpResponse<String> h = send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/health")).GET().build());
            assertEquals(503, h.statusCode(), h.body());
            HttpResponse<String> late = send(post(s, "{\"input\": \"late\"}"));
            assertEquals(503, late.statusCode(), late.body());
            assertTrue(late.body().contains("shutting_down"), late.body());
        } catch (IOException closedAlready) {
            // the drain finished first: the port is closed, which is as good
        }
        for (int i = 0; i < inFlight.size(); i++) {
            HttpResponse<String> r = inFlight.get(i).get(60, TimeUnit.SECONDS);
            assertEquals(200, r.statusCode(), r.body());
            model.assertEmbedding("in flight " + i, floats(JSON.readTree(r.body()).get("data").get(0).get("embedding")));
        }
        closer.join(60_000);
        s.awaitShutdown();
        try {
            send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/health")).GET().build());
            fail("the listener is closed after close()");
        } catch (IOException expected) {
            // connection refused
        }
        try {
            model.embed(List.of("x"));
            fail("the server closed the model");
        } catch (IllegalStateException expected) {
            assertTrue(expected.getMessage().contains("closed"));
        }
    }
}
