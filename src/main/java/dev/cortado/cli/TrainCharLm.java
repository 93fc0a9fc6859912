package dev.cortado.cli;

import dev.cortado.autograd.Autograd;
import dev.cortado.graph.CompileOptions;
import dev.cortado.graph.TrainingStep;
import dev.cortado.io.Batch;
import dev.cortado.io.CharSequenceDataset;
import dev.cortado.io.Checkpoint;
import dev.cortado.io.DataLoader;
import dev.cortado.io.TextCorpus;
import dev.cortado.nn.CausalLanguageModel;
import dev.cortado.nn.Losses;
import dev.cortado.nn.MoeFeedForward;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Sampling;
import dev.cortado.ops.Elementwise;
import dev.cortado.optim.Adam;
import dev.cortado.optim.CosineWithWarmup;
import dev.cortado.optim.GradClip;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.function.BiFunction;

/**
 * {@code train-charlm}: a small GPT-style character model (4 layers, causal attention with
 * grouped-query heads and RoPE, RMSNorm, SwiGLU) trained on Jane Austen's novels with AdamW,
 * a cosine schedule and gradient clipping; validation loss in nats per character on held-out
 * text; then a sample generated from the KV cache. With {@code --experts E --top-k K} every block's
 * feed-forward is a mixture of E SwiGLU experts (top-K routing) at the dense model's active
 * parameter count, and the router losses are added to the training loss.
 */
final class TrainCharLm {
    /** The run's settings; experts = 0 for the dense model, else a mixture of experts (top-k) in every block. */
    record Settings(int steps, int batchSize, double lr, long seed, Device device, Path out, boolean compile, int experts,
                    int topK) {
        Settings(int steps, int batchSize, double lr, long seed, Device device, Path out, boolean compile) {
            this(steps, batchSize, lr, seed, device, out, compile, 0, 0);
        }

        Settings(int steps, int batchSize, double lr, long seed, Device device, Path out) {
            this(steps, batchSize, lr, seed, device, out, false);
        }
    }

    static final int DIM = 128;
    static final int MLP_HIDDEN = 384;

    static final int CONTEXT = 128;
    static final String PROMPT = "It is a truth universally acknowledged, that ";

    private TrainCharLm() {
    }

    static CausalLanguageModel model(int vocab, long seed) {
        return model(vocab, seed, 0, 0);
    }

    /**
     * The dense model (experts = 0) or its mixture-of-experts twin at the same ACTIVE parameter
     * count: each of the {@code experts} SwiGLU experts has hidden width MLP_HIDDEN / topK, so the
     * topK experts a token runs through hold as many weights as the dense MLP (plus the router's
     * dim x experts).
     */
    static CausalLanguageModel model(int vocab, long seed, int experts, int topK) {
        MoeFeedForward.Options moe = experts == 0 ? null : MoeFeedForward.Options.of(experts, topK, MLP_HIDDEN / topK);
        return new CausalLanguageModel(new CausalLanguageModel.Config(vocab, DIM, 4, 4, 2, MLP_HIDDEN, CONTEXT, 0.0, 0, moe),
                ParamOptions.seeded(seed));
    }

    /**
     * The loss a training step minimizes, of the logits [B, T, vocab] and the next characters
     * [B, T]: the mean cross-entropy plus, for a mixture of experts, the router losses of the
     * forward that made the logits.
     */
    static BiFunction<Tensor, Tensor, Tensor> loss(CausalLanguageModel model, int vocab) {
        return (logits, target) -> {
            Tensor l = Losses.crossEntropy(logits.reshape(-1, vocab), target.reshape(-1));
            Tensor aux = model.auxiliaryLoss();
            return aux == null ? l : Elementwise.add(l, aux);
        };
    }

    /** Trains, evaluates, samples, plots and saves; returns the final validation loss (nats/char). */
    static double run(Settings s) throws IOException {
        TextCorpus corpus = TextCorpus.austen();
        TextCorpus.Split split = corpus.split(0.05);
        System.out.printf(Locale.ROOT, "train-charlm: %s, %,d characters, vocabulary %d; %d steps of batch %d x %d, "
                + "AdamW lr %.3g, seed %d, on %s%s%n", corpus.name(), corpus.length(), corpus.vocabSize(), s.steps(),
                s.batchSize(), CONTEXT, s.lr(), s.seed(), s.device(),
                s.experts() == 0 ? "" : "; " + s.experts() + " experts, top-" + s.topK());
        int evalEvery = Math.max(1, s.steps() / 6);
        try (CharSequenceDataset train = new CharSequenceDataset(split.train(), CONTEXT);
             CharSequenceDataset validation = new CharSequenceDataset(split.validation(), CONTEXT, CONTEXT);
             CausalLanguageModel model = model(corpus.vocabSize(), s.seed(), s.experts(), s.topK());
             DataLoader loader = DataLoader.builder(train).batchSize(s.batchSize()).shuffle(s.seed()).dropLast(true)
                     .prefetch(2).device(s.device()).build();
             DataLoader valLoader = DataLoader.builder(validation).batchSize(64).device(s.device()).build();
             TrainingLog log = new TrainingLog(s.out(), "next-char accuracy");
             TrainMnist.CompiledForward compiled = new TrainMnist.CompiledForward(model)) {
            model.to(s.device());
            System.out.printf(Locale.ROOT, "model: %,d parameters%n%s%n", model.numParameters(), model);
            Optimizer opt = Adam.adamW().lr(s.lr()).betas(0.9, 0.95).weightDecay(0.1).build(model.parameters());
            CosineWithWarmup schedule = new CosineWithWarmup(Math.min(50, s.steps() / 10), s.steps(), 0.1);
            int vocab = corpus.vocabSize();
            // --compile: forward, loss (with the router losses of a mixture of experts), backward,
            // clipping to global norm 1 and the AdamW update as one graph
            TrainMnist.CompiledStep compiledStep = s.compile() ? new TrainMnist.CompiledStep(model, loss(model, vocab), opt,
                    CompileOptions.builder().maxGradNorm(1.0).build(), false) : null;
            long step = 0;
            double valLoss = Double.NaN;
            int epoch = 0;
            int chunks = (s.steps() + evalEvery - 1) / evalEvery;
            DataLoader.Epoch batches = loader.epoch(epoch);
            try (compiledStep) {
                for (int chunk = 1; chunk <= chunks; chunk++) {
                    int n = (int) Math.min(evalEvery, s.steps() - step);
                    log.startEpoch(chunk, chunks, n);
                    for (int i = 0; i < n; i++) {
                        if (!batches.hasNext()) {
                            batches.close();
                            batches = loader.epoch(++epoch);
                        }
                        long t0 = System.nanoTime();
                        schedule.apply(opt, step);
                        double loss;
                        double accuracy;
                        int tokens;
                        try (Batch b = batches.next(); Scope scope = Scope.open();
                             TrainingStep.Output stepped = compiledStep == null ? null
                                     : compiledStep.run(b.input(), b.target())) {
                            Tensor flat;
                            if (stepped != null) {
                                flat = stepped.modelOutput().reshape(-1, vocab);
                            } else {
                                flat = model.forward(b.input()).reshape(-1, vocab);
                            }
                            Tensor targets = b.target().reshape(-1);
                            if (stepped != null) { // logged as eagerly: the cross-entropy, without the router losses
                                try (Autograd.GradMode off = Autograd.noGrad()) {
                                    loss = Losses.crossEntropy(flat, targets).item();
                                }
                            } else {
                                Tensor l = Losses.crossEntropy(flat, targets);
                                Tensor aux = model.auxiliaryLoss();   // the router losses (null when dense)
                                opt.zeroGrad();
                                (aux == null ? l : Elementwise.add(l, aux)).backward();
                                GradClip.clipByGlobalNorm(opt.params(), 1.0);
                                opt.step();
                                loss = l.item();
                            }
                            tokens = (int) targets.numel();
                            accuracy = TrainMnist.countCorrect(flat, targets) / tokens;
                        }
                        double seconds = (System.nanoTime() - t0) / 1e9;
                        log.step(chunk, step, loss, accuracy, tokens / seconds, opt.groups().get(0).lr());
                        step++;
                    }
                    log.endEpoch();
                    // intermediate evaluations: a fixed subset of 8 batches; the final one: all windows
                    double[] eval = TrainMnist.evaluate(model, s.compile() ? compiled : model::forward, valLoader,
                            corpus.vocabSize(), chunk == chunks ? Integer.MAX_VALUE : 8);
                    valLoss = eval[0];
                    log.evaluation(chunk, step, eval[0], eval[1], "validation (nats/char)");
                }
            } finally {
                batches.close();
            }
            Random random = new Random(s.seed());
            long[] generated = model.generate(corpus.encode(PROMPT), 300, Sampling.temperature(0.8).withTopK(20), random);
            String sample = PROMPT + corpus.decode(generated);
            System.out.println("\nsample (temperature 0.8, top-k 20, from the KV cache):\n" + sample + "\n");
            Files.writeString(s.out().resolve("sample.txt"), sample);
            Map<String, String> info = new LinkedHashMap<>();
            info.put("step", Long.toString(step));
            info.put("seed", Long.toString(s.seed()));
            info.put("validation_loss", String.format(Locale.ROOT, "%.4f", valLoss));
            Path ckpt = s.out().resolve("checkpoint.safetensors");
            try (Scope views = Scope.open()) {   // state() gives views; the scope closes them
                Checkpoint.save(ckpt, model.state(), opt.state(), info);
            }
            opt.close();
            System.out.printf(Locale.ROOT, "validation loss %.4f nats/char after %d steps in %.1f s%nwrote %s, %s, %s, %s%n",
                    valLoss, step, log.elapsedSeconds(), s.out().resolve("metrics.csv"),
                    s.out().resolve("training-curves.png"), s.out().resolve("sample.txt"), ckpt);
            return valLoss;
        }
    }
}
