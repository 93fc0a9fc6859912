package dev.cortado.serve;

import com.fasterxml.jackson.core.io.JsonStringEncoder;
import dev.cortado.onnx.InferenceMetrics;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Function;

/**
 * A closed-loop load generator for text embedding: {@code clients} threads each send one
 * single-sentence request, wait for its vector, and send the next, for a warm-up period and then a
 * measured one. It reports throughput (requests per second) and latency percentiles, against three
 * targets that share one embedder:
 * <ul>
 *   <li>{@link Target#IN_PROCESS}: {@link TextEmbedder#embed} called directly, one text per call
 *       (every client runs its own model call, concurrently);</li>
 *   <li>{@link Target#BATCHED}: the same through a {@link DynamicBatcher};</li>
 *   <li>{@link Target#HTTP}: the same through an {@link EmbeddingServer} on 127.0.0.1, over
 *       {@code java.net.http} (JSON encoding and the loopback network included).</li>
 * </ul>
 * The command {@code java -jar target/cortado-cli.jar bench-serve --model DIR} runs the sweep of
 * {@code docs/serving.md} (1, 4, 16 and 64 clients).
 */
public final class LoadGenerator {
    /** The sentences the clients send, in turn: short and long, as a search application's queries and passages. */
    private static final List<String> SENTENCES = List.of(
            "How do I reset my password?",
            "The quick brown fox jumps over the lazy dog.",
            "Sentence embeddings map a text to a vector whose direction carries its meaning.",
            "What is the capital of Australia?",
            "A dynamic batcher groups concurrent requests so that one model call serves many clients.",
            "Shipping takes three to five business days within the European Union.",
            "Is it going to rain in Lisbon tomorrow afternoon?",
            "The committee postponed its decision on the new railway line until the spring session, citing"
                    + " unresolved questions about noise, cost and the route through the nature reserve.",
            "tensor cores",
            "Return the running median of a stream of integers in logarithmic time per element.",
            "She sold seashells by the seashore.",
            "Which JVM flags reduce garbage-collection pauses for a latency-sensitive service?",
            "Photosynthesis converts light energy into chemical energy stored in glucose.",
            "Cancel my subscription, please.",
            "An embedding server answers the same request shape as the OpenAI API, so existing clients work.",
            "The museum is closed on Mondays and on public holidays.");

    private LoadGenerator() {
    }

    /** Where the requests go. */
    public enum Target {
        /** {@link TextEmbedder#embed} with one text, called by every client directly. */
        IN_PROCESS,
        /** A {@link DynamicBatcher} in front of the embedder. */
        BATCHED,
        /** An {@link EmbeddingServer} (with its batcher) over HTTP on the loopback interface. */
        HTTP
    }

    /**
     * One measured point.
     *
     * @param target where the requests went
     * @param clients concurrent clients
     * @param requests requests started in the measured period that succeeded
     * @param errors requests started in the measured period that failed
     * @param seconds from the start of the measured period until its last request finished
     * @param meanBatchSize texts per model call over the whole run, warm-up included (1 for
     *     {@link Target#IN_PROCESS})
     * @param metrics the latency percentiles of the measured requests
     */
    public record Result(Target target, int clients, long requests, long errors, double seconds, double meanBatchSize,
            InferenceMetrics.Snapshot metrics) {

        /** Completed requests per second. */
        public double throughput() {
            return requests / seconds;
        }

        /** A table row: target, clients, requests/s, p50 and p99 in ms, mean batch, errors. */
        public String row() {
            return String.format(Locale.ROOT, "%-10s %7d %12.1f %10.2f %10.2f %10.2f %7d", target, clients,
                    throughput(), metrics.p50() * 1e3, metrics.p99() * 1e3, meanBatchSize, errors);
        }

        /** The header of {@link #row()}. */
        public static String header() {
            return String.format(Locale.ROOT, "%-10s %7s %12s %10s %10s %10s %7s", "target", "clients", "requests/s",
                    "p50 ms", "p99 ms", "mean batch", "errors");
        }
    }

    /**
     * Options of a sweep.
     *
     * @param warmUp how long the clients run before measuring, at each point
     * @param measure how long the measured period lasts, at each point
     * @param maxBatchSize the batcher's and the server's largest batch
     * @param maxWait the batcher's and the server's longest wait for a batch
     */
    public record Options(Duration warmUp, Duration measure, int maxBatchSize, Duration maxWait) {
        /** Checks the values. */
        public Options {
            Objects.requireNonNull(warmUp, "warmUp");
            Objects.requireNonNull(measure, "measure");
            Objects.requireNonNull(maxWait, "maxWait");
            if (measure.isZero() || measure.isNegative()) {
                throw new IllegalArgumentException("the measured period must be positive, got " + measure);
            }
            if (maxBatchSize < 1) {
                throw new IllegalArgumentException("maxBatchSize must be at least 1, got " + maxBatchSize);
            }
        }
    }

    /**
     * Measures every target of {@code targets} at every client count of {@code clientCounts}; the
     * embedder stays open (the caller closes it). Each result is also given to {@code progress} as
     * soon as it is measured.
     */
    public static List<Result> sweep(TextEmbedder embedder, List<Target> targets, int[] clientCounts, Options options,
            java.util.function.Consumer<Result> progress) throws IOException, InterruptedException {
        List<Result> results = new ArrayList<>();
        for (Target target : targets) {
            for (int clients : clientCounts) {
                Result r = measure(embedder, target, clients, options);
                progress.accept(r);
                results.add(r);
            }
        }
        return results;
    }

    /** Measures one target at one client count. */
    public static Result measure(TextEmbedder embedder, Target target, int clients, Options options)
            throws IOException, InterruptedException {
        if (clients < 1) {
            throw new IllegalArgumentException("clients must be at least 1, got " + clients);
        }
        switch (target) {
            case IN_PROCESS -> {
                return drive(target, clients, options, text -> embedder.embed(List.of(text))[0], () -> 1.0);
            }
            case BATCHED -> {
                try (DynamicBatcher<String, float[]> b = DynamicBatcher.<String, float[]>builder(
                        texts -> List.of(embedder.embed(texts))).maxBatchSize(options.maxBatchSize())
                        .maxWait(options.maxWait()).queueCapacity(Math.max(1024, 4 * clients)).name("bench-batcher").build()) {
                    return drive(target, clients, options, b::call, () -> b.metrics().meanBatchSize());
                }
            }
            case HTTP -> {
                try (EmbeddingServer server = EmbeddingServer.builder(new Unclosed(embedder)).host("127.0.0.1").port(0)
                        .maxBatchSize(options.maxBatchSize()).maxWait(options.maxWait())
                        .httpThreads(Math.max(16, clients + 4)).build().start()) {
                    return overHttp(server, clients, options);
                }
            }
            default -> throw new IllegalArgumentException("unknown target " + target);
        }
    }

    /** Drives {@code server} over {@code java.net.http}, one text per request. */
    private static Result overHttp(EmbeddingServer server, int clients, Options options) throws InterruptedException {
        ExecutorService io = Executors.newFixedThreadPool(Math.min(clients, 16), r -> {
            Thread t = new Thread(r, "bench-http-client");
            t.setDaemon(true);
            return t;
        });
        try {
            HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).executor(io).build();
            URI uri = URI.create("http://127.0.0.1:" + server.port() + "/v1/embeddings");
            JsonStringEncoder quote = JsonStringEncoder.getInstance();
            return drive(Target.HTTP, clients, options, text -> {
                String body = "{\"input\": \"" + new String(quote.quoteAsString(text)) + "\"}";
                HttpRequest req = HttpRequest.newBuilder(uri).header("Content-Type", "application/json")
                        .POST(HttpRequest.BodyPublishers.ofString(body)).build();
                try {
                    HttpResponse<String> r = http.send(req, HttpResponse.BodyHandlers.ofString());
                    if (r.statusCode() != 200) {
                        throw new IllegalStateException("HTTP " + r.statusCode() + ": " + r.body());
                    }
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(e);
                }
                return null;
            }, () -> server.batcher().metrics().meanBatchSize());
        } finally {
            io.shutdownNow();
        }
    }

    /** Runs {@code clients} closed-loop threads over {@code call}: warm-up, then the measured period. */
    private static Result drive(Target target, int clients, Options options, Function<String, float[]> call,
            java.util.function.DoubleSupplier meanBatch) throws InterruptedException {
        call.apply(SENTENCES.get(0)); // one request before the clock starts: connections, lazily loaded classes
        InferenceMetrics[] window = {new InferenceMetrics()};
        long start = System.nanoTime();
        long measureFrom = start + options.warmUp().toNanos();
        long end = measureFrom + options.measure().toNanos();
        CountDownLatch done = new CountDownLatch(clients);
        for (int c = 0; c < clients; c++) {
            int id = c;
            Thread t = new Thread(() -> {
                try {
                    for (int i = id; ; i++) {
                        long t0 = System.nanoTime();
                        if (t0 >= end) {
                            return;
                        }
                        boolean ok = true;
                        try {
                            call.apply(SENTENCES.get(i % SENTENCES.size()));
                        } catch (RuntimeException e) {
                            ok = false;
                        }
                        long t1 = System.nanoTime();
                        if (t0 >= measureFrom) {
                            window[0].recordRequest(t1 - t0, ok);
                        }
                    }
                } finally {
                    done.countDown();
                }
            }, "bench-client-" + c);
            t.setDaemon(true);
            t.start();
        }
        done.await();
        // the requests started in the measured period, over the time until the last one finished
        double seconds = Math.max(1, System.nanoTime() - measureFrom) / 1e9;
        InferenceMetrics.Snapshot m = window[0].snapshot();
        return new Result(target, clients, m.succeeded(), m.failed(), seconds, meanBatch.getAsDouble(), m);
    }

    /** An embedder the server may close without closing the one shared by the whole sweep. */
    private record Unclosed(TextEmbedder inner) implements TextEmbedder {
        @Override
        public String modelName() {
            return inner.modelName();
        }

        @Override
        public int dimension() {
            return inner.dimension();
        }

        @Override
        public int maxTokens() {
            return inner.maxTokens();
        }

        @Override
        public int tokenCount(String text) {
            return inner.tokenCount(text);
        }

        @Override
        public float[][] embed(List<String> texts) {
            return inner.embed(texts);
        }

        @Override
        public void close() {
            // the sweep's caller closes the shared embedder
        }
    }
}
