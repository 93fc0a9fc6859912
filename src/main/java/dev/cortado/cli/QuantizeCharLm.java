package dev.cortado.cli;

import dev.cortado.io.CharSequenceDataset;
import dev.cortado.io.Checkpoint;
import dev.cortado.io.DataLoader;
import dev.cortado.io.TextCorpus;
import dev.cortado.nn.CausalLanguageModel;
import dev.cortado.nn.Linear;
import dev.cortado.nn.MLP;
import dev.cortado.nn.Module;
import dev.cortado.nn.MultiheadAttention;
import dev.cortado.quant.WeightOnly;
import dev.cortado.quant.WeightOnlyLinear;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * {@code quantize-charlm}: the character model of {@code train-charlm} (loaded from its checkpoint,
 * or trained first with train-charlm's settings) with the weights of its attention projections
 * (wq, wk, wv, wo) and feed-forward layers turned into signed int4 codes with a float32 scale per
 * group of {@code g} inputs, run by the weight-only kernels ({@link WeightOnlyLinear}); the
 * embedding, the norms and the output head stay float32. Prints the validation loss (nats/char,
 * every held-out window) and the state size of the float and the int4 model.
 */
final class QuantizeCharLm {
    /**
     * Settings: the checkpoint to load (or, when absent, train-charlm's steps, batch and rate, into
     * {@code out}), the seed, the int4 group and how many validation batches of 64 windows to
     * evaluate ({@link Integer#MAX_VALUE}: every held-out window).
     */
    record Settings(Path checkpoint, int steps, int batchSize, double lr, long seed, Path out, int group, int evalBatches) {
    }

    /** One row of the table. */
    record Row(String variant, double loss, long bytes) {
    }

    private QuantizeCharLm() {
    }

    /** Trains (unless a checkpoint is given), quantizes, evaluates; returns the float row and the int4 row. */
    static List<Row> run(Settings s) throws IOException {
        Path checkpoint = s.checkpoint();
        if (checkpoint == null) {
            Files.createDirectories(s.out());
            TrainCharLm.run(new TrainCharLm.Settings(s.steps(), s.batchSize(), s.lr(), s.seed(), Device.CPU, s.out()));
            checkpoint = s.out().resolve("checkpoint.safetensors");
        }
        TextCorpus corpus = TextCorpus.austen();
        List<Row> rows = new ArrayList<>();
        try (CausalLanguageModel model = load(checkpoint, corpus.vocabSize(), s.seed());
             CharSequenceDataset validation = new CharSequenceDataset(corpus.split(0.05).validation(), TrainCharLm.CONTEXT,
                     TrainCharLm.CONTEXT);
             DataLoader loader = DataLoader.builder(validation).batchSize(64).build()) {
            rows.add(measure("float32", model, loader, corpus.vocabSize(), s.evalBatches()));
            int replaced = int4Projections(model, s.group());
            rows.add(measure("int4 weight-only attn + FFN (g=" + s.group() + ", " + replaced + " layers)", model, loader,
                    corpus.vocabSize(), s.evalBatches()));
        }
        System.out.println();
        System.out.println(table(rows));
        return rows;
    }

    /** train-charlm's model with the checkpoint's weights, in evaluation mode. */
    static CausalLanguageModel load(Path checkpoint, int vocab, long seed) throws IOException {
        CausalLanguageModel model = TrainCharLm.model(vocab, seed);
        try (Checkpoint.Loaded c = Checkpoint.load(checkpoint, Device.CPU)) {
            model.loadState(c.model(), true);
        } catch (IOException | RuntimeException e) {
            model.close();
            throw e;
        }
        model.eval();
        return model;
    }

    /**
     * Replaces, in place, every {@link Linear} child of the model's attention layers (wq, wk, wv,
     * wo) and feed-forward layers by a {@link WeightOnlyLinear} with signed int4 codes and a scale
     * per group of {@code group} inputs; returns how many layers it replaced.
     */
    static int int4Projections(Module model, int group) {
        int replaced = 0;
        for (Module m : new ArrayList<>(model.namedModules().values())) {
            if (!(m instanceof MultiheadAttention) && !(m instanceof MLP)) {
                continue;
            }
            for (Map.Entry<String, Module> c : new ArrayList<>(m.children().entrySet())) {
                if (c.getValue() instanceof Linear linear) {
                    m.replaceChild(c.getKey(), new WeightOnlyLinear(linear, WeightOnly.Format.INT4, group)).close();
                    replaced++;
                }
            }
        }
        return replaced;
    }

    /** The validation loss over the first {@code batches} batches of held-out windows, and the state bytes. */
    static Row measure(String name, Module model, DataLoader validation, int vocab, int batches) {
        long bytes = 0;
        try (Scope views = Scope.open()) {   // state() gives views; the scope closes them
            for (Tensor t : model.state().values()) {
                bytes += t.numel() * t.dtype().byteSize();
            }
        }
        double loss = TrainMnist.evaluate(model, validation, vocab, batches)[0];
        model.eval();
        System.out.printf(Locale.ROOT, "%s: validation loss %.4f nats/char, %,d bytes%n", name, loss, bytes);
        return new Row(name, loss, bytes);
    }

    /** The table: variant, validation loss, state size. */
    static String table(List<Row> rows) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "| %-44s | %22s | %10s |%n", "variant", "validation (nats/char)", "size (KiB)"));
        b.append(String.format(Locale.ROOT, "|%s|%s|%s|%n", "-".repeat(46), "-".repeat(24), "-".repeat(12)));
        for (Row r : rows) {
            b.append(String.format(Locale.ROOT, "| %-44s | %22.4f | %10.1f |%n", r.variant(), r.loss(), r.bytes() / 1024.0));
        }
        return b.toString();
    }
}
