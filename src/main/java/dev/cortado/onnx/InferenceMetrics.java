package dev.cortado.onnx;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import org.HdrHistogram.ConcurrentHistogram;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramIterationValue;

/**
 * What a serving component has done: requests (succeeded and failed), the batches it ran with their
 * sizes, and the latency of each request, as HdrHistogram histograms (3 significant digits, so a
 * percentile is within 0.1% of the recorded value). Thread-safe: recording is wait-free (a
 * {@link ConcurrentHistogram} and {@link LongAdder}s), so it costs no lock on the request path.
 *
 * <p>An {@link InferenceSession} records one request and one batch per {@code run} (the batch
 * size is the first input's leading dimension); the dynamic batcher in {@code dev.cortado.serve}
 * records each caller's request and each batch it forms. {@link #snapshot()} gives an immutable
 * view for logs and the server's {@code /metrics} endpoint.
 */
public final class InferenceMetrics {
    /** The largest latency the histogram holds exactly: one hour (longer ones are clamped to it). */
    private static final long MAX_NANOS = TimeUnit.HOURS.toNanos(1);

    private final LongAdder succeeded = new LongAdder();
    private final LongAdder failed = new LongAdder();
    private final LongAdder rejected = new LongAdder();
    private final LongAdder items = new LongAdder();
    // Two significant digits (values within 1 %; batch sizes exact below 256) and latencies from
    // 1 us: about 4,000 buckets to copy and read per snapshot instead of 45,000 at three digits
    // from 1 ns (scrapes over those slowed the http-server fuzz target from 1,450 to 100 inputs/s).
    private final Histogram latency = new ConcurrentHistogram(1_000, MAX_NANOS, 2);
    private final Histogram batchSizes = new ConcurrentHistogram(1, 1 << 20, 2);

    /** New, empty metrics. */
    public InferenceMetrics() {
    }

    /** Records a request that finished after {@code nanos} (successfully when {@code ok}). */
    public void recordRequest(long nanos, boolean ok) {
        (ok ? succeeded : failed).increment();
        latency.recordValue(Math.max(1, Math.min(nanos, MAX_NANOS)));
    }

    /** Records a batch of {@code size} items run together (size 0 is not recorded). */
    public void recordBatch(int size) {
        if (size > 0) {
            items.add(size);
            batchSizes.recordValue(Math.min(size, 1 << 20));
        }
    }

    /** Records a request turned away before it ran (a full queue, a closed component). */
    public void recordRejected() {
        rejected.increment();
    }

    /**
     * An immutable copy of the numbers now. Each histogram is copied once and read in one pass
     * (the mean and every percentile together): a {@code GET /metrics} scrape costs two passes
     * over the histograms' buckets, not one per figure (seven before; a client sending many scrapes
     * could keep a server busy).
     */
    public Snapshot snapshot() {
        Histogram l = latency.copy();
        Histogram b = batchSizes.copy();
        double[] ls = meanAndPercentiles(l, 50, 90, 99, 99.9);
        double[] bs = meanAndPercentiles(b, 50);
        return new Snapshot(succeeded.sum(), failed.sum(), rejected.sum(), b.getTotalCount(), items.sum(),
                ls[0] / 1e9, ls[1] / 1e9, ls[2] / 1e9, ls[3] / 1e9, ls[4] / 1e9,
                l.getTotalCount() == 0 ? 0 : l.getMaxValue() / 1e9,
                bs[0], (int) bs[1], b.getTotalCount() == 0 ? 0 : (int) b.getMaxValue());
    }

    /**
     * {@code [mean, value at percentiles[0], ...]} of {@code h} in one pass over its recorded values,
     * equal to HdrHistogram's {@code getMean()} and {@code getValueAtPercentile(p)} (each of which
     * is a pass of its own); all 0 for an empty histogram. {@code percentiles} ascend, in (0, 100].
     */
    static double[] meanAndPercentiles(Histogram h, double... percentiles) {
        double[] out = new double[1 + percentiles.length];
        long total = h.getTotalCount();
        if (total == 0) {
            return out;
        }
        long[] countAt = new long[percentiles.length];
        for (int i = 0; i < percentiles.length; i++) {
            // HdrHistogram's rule: the first value whose cumulative count reaches ceil(p/100 * total)
            double p = Math.min(Math.max(Math.nextAfter(percentiles[i], Double.NEGATIVE_INFINITY), 0.0), 100.0);
            countAt[i] = Math.max(1, (long) Math.ceil(p / 100.0 * total));
        }
        double sum = 0;
        long cumulative = 0;
        int next = 0;
        for (HistogramIterationValue v : h.recordedValues()) {
            long count = v.getCountAtValueIteratedTo();
            sum += h.medianEquivalentValue(v.getValueIteratedTo()) * (double) count;
            cumulative += count;
            while (next < countAt.length && cumulative >= countAt[next]) {
                out[1 + next++] = h.highestEquivalentValue(v.getValueIteratedTo());
            }
        }
        out[0] = sum / total;
        return out;
    }

    /**
     * The metrics at one moment. Latencies are in seconds (0 when nothing was recorded).
     *
     * @param succeeded requests that returned a result
     * @param failed requests that ended in an exception
     * @param rejected requests turned away before they ran
     * @param batches batches run
     * @param batchedItems items in all the batches together
     * @param meanLatency mean request latency
     * @param p50 median request latency
     * @param p90 90th percentile
     * @param p99 99th percentile
     * @param p999 99.9th percentile
     * @param maxLatency the longest request
     * @param meanBatchSize mean items per batch
     * @param medianBatchSize median items per batch
     * @param maxBatchSize the largest batch
     */
    public record Snapshot(long succeeded, long failed, long rejected, long batches, long batchedItems,
            double meanLatency, double p50, double p90, double p99, double p999, double maxLatency,
            double meanBatchSize, int medianBatchSize, int maxBatchSize) {

        /** Requests that ran, succeeded or failed. */
        public long requests() {
            return succeeded + failed;
        }

        /** The sum of all request latencies in seconds (the mean times the count). */
        public double latencySum() {
            return meanLatency * requests();
        }

        /** A one-line summary for logs. */
        @Override
        public String toString() {
            return String.format("requests %d (failed %d, rejected %d), batches %d (mean size %.2f, max %d), "
                    + "latency p50 %.3f ms p90 %.3f ms p99 %.3f ms max %.3f ms",
                    requests(), failed, rejected, batches, meanBatchSize, maxBatchSize,
                    p50 * 1e3, p90 * 1e3, p99 * 1e3, maxLatency * 1e3);
        }
    }
}
