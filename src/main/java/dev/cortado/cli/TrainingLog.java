package dev.cortado.cli;

import java.awt.BasicStroke;
import java.awt.Color;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.CombinedDomainXYPlot;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/**
 * What a training demo shows and leaves behind: a live progress bar per epoch (loss, accuracy,
 * samples per second), a metrics CSV with one row per logged step and per evaluation, and a PNG
 * of the training curves (loss on top, accuracy below) redrawn after each evaluation.
 */
final class TrainingLog implements AutoCloseable {
    private final Path dir;
    private final PrintWriter csv;
    private final String accuracyName;
    private final XYSeries trainLoss = new XYSeries("train loss");
    private final XYSeries evalLoss = new XYSeries("validation loss");
    private final XYSeries trainAccuracy = new XYSeries("train accuracy");
    private final XYSeries evalAccuracy = new XYSeries("validation accuracy");
    private final long startNanos = System.nanoTime();
    private ProgressBar bar;
    private final boolean quiet;

    TrainingLog(Path dir, String accuracyName) {
        this(dir, accuracyName, false);
    }

    /**
     * {@code quiet}: records nothing, prints nothing, writes no file (the ranks other than 0 of a
     * data-parallel run, where rank 0 logs for the job).
     */
    TrainingLog(Path dir, String accuracyName, boolean quiet) {
        this.dir = dir;
        this.accuracyName = accuracyName;
        this.quiet = quiet;
        if (quiet) {
            csv = null;
            return;
        }
        try {
            Files.createDirectories(dir);
            csv = new PrintWriter(Files.newBufferedWriter(dir.resolve("metrics.csv")));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the metrics under " + dir, e);
        }
        csv.println("split,epoch,step,loss," + accuracyName + ",samples_per_s,lr,elapsed_s");
    }

    Path dir() {
        return dir;
    }

    /** Starts the progress bar of an epoch. */
    void startEpoch(int epoch, int epochs, int steps) {
        if (quiet) {
            return;
        }
        bar = new ProgressBarBuilder()
                .setTaskName(String.format(Locale.ROOT, "epoch %d/%d", epoch, epochs))
                .setInitialMax(steps)
                .setStyle(ProgressBarStyle.ASCII)
                .setUpdateIntervalMillis(System.console() != null ? 250 : 5000)
                .build();
    }

    /** One training step: advances the bar and records the step. */
    void step(int epoch, long step, double loss, double accuracy, double samplesPerSecond, double lr) {
        if (quiet) {
            return;
        }
        bar.step();
        bar.setExtraMessage(String.format(Locale.ROOT, " loss %.4f  %s %.1f%%  %,.0f samples/s", loss, accuracyName,
                100 * accuracy, samplesPerSecond));
        trainLoss.add(step, loss);
        if (!Double.isNaN(accuracy)) {
            trainAccuracy.add(step, accuracy);
        }
        row("train", epoch, step, loss, accuracy, samplesPerSecond, lr);
    }

    void endEpoch() {
        if (bar != null) {
            bar.close();
            bar = null;
        }
    }

    /** An evaluation on held-out data; prints it and redraws the plot. */
    void evaluation(int epoch, long step, double loss, double accuracy, String what) {
        if (quiet) {
            return;
        }
        evalLoss.add(step, loss);
        if (!Double.isNaN(accuracy)) {
            evalAccuracy.add(step, accuracy);
        }
        row("validation", epoch, step, loss, accuracy, Double.NaN, Double.NaN);
        System.out.printf(Locale.ROOT, "%s after epoch %d: loss %.4f%s%n", what, epoch, loss,
                Double.isNaN(accuracy) ? "" : String.format(Locale.ROOT, ", %s %.2f%%", accuracyName, 100 * accuracy));
        plot();
    }

    double elapsedSeconds() {
        return (System.nanoTime() - startNanos) / 1e9;
    }

    private void row(String split, int epoch, long step, double loss, double acc, double sps, double lr) {
        csv.printf(Locale.ROOT, "%s,%d,%d,%.6f,%s,%s,%s,%.3f%n", split, epoch, step, loss, num(acc), num(sps), num(lr),
                elapsedSeconds());
        csv.flush();
    }

    private static String num(double v) {
        return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%.6g", v);
    }

    /** Writes training-curves.png: loss (train and validation) above accuracy, against the step. */
    void plot() {
        System.setProperty("java.awt.headless", "true");
        NumberAxis steps = new NumberAxis("step");
        CombinedDomainXYPlot plot = new CombinedDomainXYPlot(steps);
        plot.add(subplot("loss", new XYSeries[] {trainLoss, evalLoss}), 3);
        List<XYSeries> acc = new ArrayList<>();
        if (!trainAccuracy.isEmpty()) {
            acc.add(trainAccuracy);
        }
        if (!evalAccuracy.isEmpty()) {
            acc.add(evalAccuracy);
        }
        if (!acc.isEmpty()) {
            plot.add(subplot(accuracyName, acc.toArray(new XYSeries[0])), 2);
        }
        JFreeChart chart = new JFreeChart(dir.getFileName() + " training curves", JFreeChart.DEFAULT_TITLE_FONT, plot,
                true);
        chart.setBackgroundPaint(Color.WHITE);
        try {
            ChartUtils.saveChartAsPNG(dir.resolve("training-curves.png").toFile(), chart, 900, 650);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the plot under " + dir, e);
        }
    }

    private static XYPlot subplot(String label, XYSeries[] series) {
        XYSeriesCollection data = new XYSeriesCollection();
        XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, false);
        for (int i = 0; i < series.length; i++) {
            data.addSeries(series[i]);
            renderer.setSeriesStroke(i, new BasicStroke(i == 0 ? 1.0f : 2.0f));
            renderer.setSeriesShapesVisible(i, series[i].getItemCount() < 50);
        }
        NumberAxis axis = new NumberAxis(label);
        axis.setAutoRangeIncludesZero(false);
        XYPlot p = new XYPlot(data, null, axis, renderer);
        p.setBackgroundPaint(Color.WHITE);
        p.setDomainGridlinePaint(Color.LIGHT_GRAY);
        p.setRangeGridlinePaint(Color.LIGHT_GRAY);
        return p;
    }

    @Override
    public void close() {
        endEpoch();
        if (csv != null) {
            csv.close();
        }
    }
}
