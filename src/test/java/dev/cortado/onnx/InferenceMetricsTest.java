package dev.cortado.onnx;

import org.HdrHistogram.ConcurrentHistogram;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;

import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@link InferenceMetrics#meanAndPercentiles}, the one-pass reading of a histogram that
 * {@code snapshot()} (and so every {@code GET /metrics}) uses, gives exactly what HdrHistogram's own
 * {@code getMean} and {@code getValueAtPercentile} give, one pass each.
 */
class InferenceMetricsTest {
    private static final double[] PERCENTILES = {0.1, 50, 90, 99, 99.9, 100};

    private static void assertSameAsHdrHistogram(Histogram h) {
        double[] got = InferenceMetrics.meanAndPercentiles(h, PERCENTILES);
        double[] want = new double[1 + PERCENTILES.length];
        want[0] = h.getTotalCount() == 0 ? 0 : h.getMean();
        for (int i = 0; i < PERCENTILES.length; i++) {
            want[1 + i] = h.getTotalCount() == 0 ? 0 : h.getValueAtPercentile(PERCENTILES[i]);
        }
        assertEquals(want[0], got[0], Math.abs(want[0]) * 1e-12, "mean");
        want[0] = got[0];
        assertArrayEquals(want, got, "mean, then the values at " + java.util.Arrays.toString(PERCENTILES));
    }

    @Test
    void onePassEqualsHdrHistogramsOwnReadings() {
        Random r = new Random(20261206);
        for (int trial = 0; trial < 200; trial++) {
            Histogram h = new ConcurrentHistogram(1_000, TimeUnit.HOURS.toNanos(1), 2);
            int n = trial < 3 ? trial : 1 + r.nextInt(trial < 100 ? 50 : 20_000);
            for (int i = 0; i < n; i++) {
                // latencies from microseconds to seconds, log-uniform, with repeats
                long v = (long) Math.exp(Math.log(1_000) + r.nextDouble() * Math.log(1e6));
                h.recordValueWithCount(v, 1 + (r.nextInt(8) == 0 ? r.nextInt(100) : 0));
            }
            assertSameAsHdrHistogram(h);
        }
    }

    @Test
    void snapshotReadsTheRecordedRequests() {
        InferenceMetrics m = new InferenceMetrics();
        for (int i = 1; i <= 1000; i++) {
            m.recordRequest(TimeUnit.MICROSECONDS.toNanos(i), i % 10 != 0);
        }
        m.recordBatch(3);
        m.recordBatch(5);
        InferenceMetrics.Snapshot s = m.snapshot();
        assertEquals(900, s.succeeded());
        assertEquals(100, s.failed());
        assertEquals(2, s.batches());
        assertEquals(4.0, s.meanBatchSize(), 1e-3);
        assertEquals(5, s.maxBatchSize());
        assertEquals(500e-6, s.p50(), 500e-6 * 1e-2);   // 2 significant digits
        assertEquals(990e-6, s.p99(), 990e-6 * 1e-2);
        assertEquals(500.5e-6, s.meanLatency(), 500.5e-6 * 1e-2);
    }
}
