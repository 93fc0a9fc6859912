package dev.cortado.cli;

import dev.cortado.autograd.Autograd;
import dev.cortado.io.Batch;
import dev.cortado.io.DataLoader;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.Sequential;
import dev.cortado.nn.SparseConv2d;
import dev.cortado.nn.SparseLinear;
import dev.cortado.nn.Sparsify;
import dev.cortado.optim.Adam;
import dev.cortado.optim.CosineWithWarmup;
import dev.cortado.optim.Optimizer;
import dev.cortado.sparse.MagnitudePruning;
import dev.cortado.sparse.NmSparseTraining;
import dev.cortado.sparse.SparseFormat;
import dev.cortado.sparse.SparseTensor;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * {@code prune-mnist}: the train-mnist CNN trained four ways on the shipped 10,000 MNIST digits
 * and tested on the genuine t10k split: dense; 2:4 weights in every layer but the first trained
 * with SR-STE; the same with the progressive mask decay; and gradual magnitude pruning to 90% of
 * all conv and linear weights (one global threshold, the cubic schedule of Zhu and Gupta). Each
 * sparse model is then converted to modules that run the sparse kernels ({@code SparseConv2d},
 * {@code SparseLinear}: 2:4 through {@code nm_matmul}, the pruned one as CSR through
 * {@code csr_spmm}) and evaluated again; the table shows accuracy, non-zero weights, the bytes of
 * the weights and the inference time of the t10k set with the dense and the sparse modules.
 */
final class PruneMnist {
    /** Command-line settings; {@code sparsity} is the gradual pruning's final sparsity. */
    record Settings(int epochs, int batchSize, double lr, long seed, double sparsity) {
    }

    /** How a model is trained. */
    enum Method {
        DENSE("dense"),
        NM_SRSTE("2:4 SR-STE"),
        NM_PROGRESSIVE("2:4 SR-STE, mask decay"),
        GRADUAL("gradual magnitude");

        final String label;

        Method(String label) {
            this.label = label;
        }
    }

    /** One row of the table; accuracies on t10k, bytes of the conv and linear weights (and biases) as stored. */
    record Row(String label, double accuracy, double sparseAccuracy, long nonzeros, long weights, long denseBytes,
               long sparseBytes, double denseSeconds, double sparseSeconds) {
    }

    private PruneMnist() {
    }

    static void run(Settings s) {
        System.out.printf(Locale.ROOT, "prune-mnist: %d epochs per model, batch %d, AdamW lr %.3g, seed %d, on cpu%n",
                s.epochs(), s.batchSize(), s.lr(), s.seed());
        List<Row> rows = new ArrayList<>();
        try (TensorDataset train = Mnist.train10k(true); TensorDataset test = Mnist.test(true)) {
            for (Method m : Method.values()) {
                long t0 = System.nanoTime();
                try (Sequential model = train(m, s, train)) {
                    Row r = evaluateAndConvert(m, model, test);
                    rows.add(r);
                    System.out.printf(Locale.ROOT, "%-28s trained in %.0f s: t10k accuracy %.2f%%%n", r.label(),
                            (System.nanoTime() - t0) / 1e9, 100 * r.accuracy());
                }
            }
        }
        System.out.println();
        System.out.println(table(rows));
    }

    /** The conv and linear weights (rank >= 2 parameters) of the model, in order. */
    static List<Tensor> weights(Module model) {
        return model.parameters().stream().filter(p -> p.rank() >= 2).toList();
    }

    /** A model trained by {@code method} (sparse ones hold their masked weights: pruned entries are exactly zero). */
    static Sequential train(Method method, Settings s, TensorDataset train) {
        Sequential model = TrainMnist.model(s.seed());
        List<Tensor> all = weights(model);
        try (DataLoader loader = DataLoader.builder(train).batchSize(s.batchSize()).shuffle(s.seed()).dropLast(true)
                .build();
             Optimizer opt = Adam.adamW().lr(s.lr()).weightDecay(1e-4).build(model.parameters())) {
            long total = (long) loader.size() * s.epochs();
            CosineWithWarmup lr = CosineWithWarmup.of(Math.min(100, total / 10), total);
            NmSparseTraining srste = switch (method) {
                case NM_SRSTE -> NmSparseTraining.builder(all.subList(1, all.size())).pattern(2, 4).build();
                case NM_PROGRESSIVE -> NmSparseTraining.builder(all.subList(1, all.size())).pattern(2, 4)
                        .maskDecay(new NmSparseTraining.MaskDecay(0, total / 2, 4)).build();
                default -> null;
            };
            MagnitudePruning pruning = method == Method.GRADUAL ? MagnitudePruning.builder(all)
                    .scope(MagnitudePruning.Scope.GLOBAL)
                    .schedule(new MagnitudePruning.Schedule(0, s.sparsity(), 0, total * 2 / 3, Math.max(1, total / 40)))
                    .build() : null;
            try {
                long step = 0;
                for (int epoch = 0; epoch < s.epochs(); epoch++) {
                    try (DataLoader.Epoch batches = loader.epoch(epoch)) {
                        for (Batch b : batches) {
                            lr.apply(opt, step);
                            try (b; Scope scope = Scope.open();
                                 NmSparseTraining.Step masked = srste != null ? srste.step(step) : null) {
                                Tensor loss = Losses.crossEntropy(model.forward(b.input()), b.target());
                                opt.zeroGrad();
                                loss.backward();
                            }
                            opt.step();
                            if (pruning != null) {
                                pruning.step(step);
                            }
                            step++;
                        }
                    }
                }
                if (srste != null) {
                    srste.finish();
                }
            } finally {
                if (srste != null) {
                    srste.close();
                }
                if (pruning != null) {
                    pruning.close();
                }
            }
            return model;
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
    }

    /** The format each layer of a model trained by {@code method} is converted to (null: stays dense). */
    static SparseFormat formatOf(Method method, Sequential model, Module layer) {
        return switch (method) {
            case DENSE -> null;
            case NM_SRSTE, NM_PROGRESSIVE -> layer == model.get(0) ? null : SparseFormat.nm(2, 4);
            case GRADUAL -> SparseFormat.csr();
        };
    }

    /** Evaluates {@code model}, converts it (consuming it) and evaluates the sparse modules. */
    static Row evaluateAndConvert(Method method, Sequential model, TensorDataset test) {
        List<Tensor> all = weights(model);
        long nonzeros = 0;
        long weights = 0;
        for (Tensor w : all) {
            for (float v : w.toFloatArray()) {
                nonzeros += v != 0 ? 1 : 0;
            }
            weights += w.numel();
        }
        long denseBytes = weightBytes(model);
        long t0 = System.nanoTime();
        double accuracy = accuracy(model, test);
        double denseSeconds = (System.nanoTime() - t0) / 1e9;
        if (method == Method.DENSE) {
            return new Row(method.label, accuracy, accuracy, nonzeros, weights, denseBytes, denseBytes, denseSeconds,
                    denseSeconds);
        }
        try (Sequential sparse = Sparsify.convert(model, layer -> formatOf(method, model, layer))) {
            long sparseBytes = weightBytes(sparse);
            long t1 = System.nanoTime();
            double sparseAccuracy = accuracy(sparse, test);
            double sparseSeconds = (System.nanoTime() - t1) / 1e9;
            return new Row(method.label, accuracy, sparseAccuracy, nonzeros, weights, denseBytes, sparseBytes,
                    denseSeconds, sparseSeconds);
        }
    }

    /** t10k accuracy, in evaluation mode without recording (batches of 1000). */
    static double accuracy(Module model, TensorDataset test) {
        long right = 0;
        long n = 0;
        model.eval();
        try (Autograd.GradMode off = Autograd.noGrad();
             DataLoader loader = DataLoader.builder(test).batchSize(1000).build();
             DataLoader.Epoch batches = loader.epoch(0)) {
            for (Batch b : batches) {
                try (b; Scope scope = Scope.open()) {
                    Tensor predicted = model.forward(b.input()).argmax(1);
                    right += (long) predicted.eq(b.target()).sum().item();
                    n += b.size();
                }
            }
        }
        model.train();
        return (double) right / n;
    }

    /** Bytes of the conv and linear layers' weights and biases as stored (sparse: every component). */
    static long weightBytes(Sequential model) {
        long bytes = 0;
        for (int i = 0; i < model.size(); i++) {
            Module m = model.get(i);
            if (m instanceof Linear || m instanceof Conv2d) {
                for (Tensor p : m.parameters()) {
                    bytes += p.numel() * p.dtype().byteSize();
                }
            } else if (m instanceof SparseLinear l) {
                bytes += sparseBytes(l.weight()) + tensorBytes(l.bias());
            } else if (m instanceof SparseConv2d c) {
                bytes += sparseBytes(c.weight()) + tensorBytes(c.bias());
            }
        }
        return bytes;
    }

    private static long sparseBytes(SparseTensor w) {
        long bytes = tensorBytes(w.values());
        return bytes + switch (w.layout()) {
            case NM -> tensorBytes(w.meta());
            case CSR -> tensorBytes(w.crowIndices()) + tensorBytes(w.colIndices());
            default -> throw new IllegalStateException("prune-mnist: unexpected layout " + w.layout());
        };
    }

    private static long tensorBytes(Tensor t) {
        return t == null ? 0 : t.numel() * t.dtype().byteSize();
    }

    static String table(List<Row> rows) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "%-24s %9s %9s %17s %11s %11s %10s %10s%n", "model", "accuracy", "sparse acc",
                "nonzero weights", "dense KiB", "stored KiB", "dense ms", "sparse ms"));
        for (Row r : rows) {
            b.append(String.format(Locale.ROOT, "%-24s %8.2f%% %9.2f%% %8d (%5.1f%%) %11.1f %11.1f %10.0f %10.0f%n",
                    r.label(), 100 * r.accuracy(), 100 * r.sparseAccuracy(), r.nonzeros(),
                    100.0 * r.nonzeros() / r.weights(), r.denseBytes() / 1024.0, r.sparseBytes() / 1024.0,
                    1e3 * r.denseSeconds(), 1e3 * r.sparseSeconds()));
        }
        b.append("(accuracy: the trained model, its pruned weights as dense zeros; sparse acc: the same weights in "
                + "SparseConv2d/SparseLinear modules;\n ms: the 10,000 t10k images, batches of 1000, one run, wall "
                + "time on this machine now)");
        return b.toString();
    }
}
