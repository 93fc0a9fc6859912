package dev.cortado.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The load generator runs briefly against all three targets (the numbers are not judged here:
 * the sweep of docs/serving.md is run with {@code bench-serve} on a quiet machine).
 */
class LoadGeneratorTest {

    @Test
    void measuresEveryTargetAndReportsThroughputAndPercentiles() throws Exception {
        LoadGenerator.Options options = new LoadGenerator.Options(Duration.ofMillis(100), Duration.ofMillis(400), 16,
                Duration.ofMillis(2));
        List<String> rows = new ArrayList<>();
        try (NgramEmbedder model = new NgramEmbedder(16)) {
            model.embed(List.of("the first call loads what the engine loads lazily"));
            List<LoadGenerator.Result> results = LoadGenerator.sweep(model, List.of(LoadGenerator.Target.values()),
                    new int[] {1, 4}, options, r -> rows.add(r.row()));
            assertEquals(6, results.size());
            assertEquals(6, rows.size());
            for (LoadGenerator.Result r : results) {
                assertTrue(r.requests() > 0 && r.errors() == 0, r.row());
                assertTrue(r.throughput() > 0 && r.metrics().p50() > 0 && r.metrics().p99() >= r.metrics().p50(), r.row());
                assertTrue(r.meanBatchSize() >= 1, r.row());
            }
            model.embed(List.of("the shared embedder is still open"));
        }
        assertTrue(LoadGenerator.Result.header().contains("p99 ms"));
    }
}
