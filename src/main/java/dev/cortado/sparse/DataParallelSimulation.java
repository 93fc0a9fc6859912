package dev.cortado.sparse;

import dev.cortado.autograd.Autograd;
import dev.cortado.optim.Optimizer;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.function.Supplier;

/**
 * Synchronous data-parallel training of W workers simulated in one process, for testing gradient
 * exchange: each step splits the batch into W equal shards along dimension 0; worker w runs the
 * forward and backward pass of its shard on the shared model (the replicas of real data
 * parallelism are identical at every step, because every worker applies the same summed update,
 * so one copy of the weights stands for all of them); its gradients go through its own
 * {@link DeepGradientCompression} (or are sent dense); the W messages are summed and divided by
 * W, exactly what an all-gather followed by {@link CompressedGradients#sum} gives every worker;
 * and the optimizer applies the result once. Each step reports the values and bytes sent.
 *
 * <pre>{@code
 * try (var sim = DataParallelSimulation.compressed(4, model.parameters(), sgd, () -> DeepGradientCompression.builder()
 *         .momentum(0.9).density(schedule))) {
 *     DataParallelSimulation.StepReport r = sim.step(x, y, (xs, ys) -> Losses.crossEntropy(model.forward(xs), ys));
 * }
 * }</pre>
 * With compression, give it an optimizer without momentum (the compressors hold it).
 */
public final class DataParallelSimulation implements AutoCloseable {
    /** The mean loss of one worker's shard, whose backward pass fills the parameters' gradients. */
    @FunctionalInterface
    public interface ShardLoss {
        Tensor loss(Tensor input, Tensor target);
    }

    /**
     * One step: mean loss over the workers, values and bytes all workers sent, and what a dense
     * exchange would have sent.
     */
    public record StepReport(double loss, double density, long valuesSent, long denseValues, long bytesSent,
                             long denseBytes) {
        /** How many times fewer values were sent than a dense exchange would send. */
        public double valueReduction() {
            return valuesSent == 0 ? Double.POSITIVE_INFINITY : (double) denseValues / valuesSent;
        }
    }

    private final int workers;
    private final List<Tensor> params;
    private final Optimizer optimizer;
    private final List<DeepGradientCompression> compressors;
    private boolean closed;

    private DataParallelSimulation(int workers, List<Tensor> params, Optimizer optimizer,
                                   Supplier<DeepGradientCompression.Builder> compression) {
        if (workers < 1) {
            throw new IllegalArgumentException("DataParallelSimulation: workers must be >= 1, got " + workers);
        }
        this.workers = workers;
        this.params = List.copyOf(params);
        this.optimizer = Objects.requireNonNull(optimizer, "optimizer");
        if (compression == null) {
            compressors = List.of();
        } else {
            List<DeepGradientCompression> list = new ArrayList<>(workers);
            for (int w = 0; w < workers; w++) {
                list.add(compression.get().build(this.params));
            }
            compressors = List.copyOf(list);
        }
    }

    /** W workers exchanging dense gradients (the baseline). */
    public static DataParallelSimulation dense(int workers, List<Tensor> params, Optimizer optimizer) {
        return new DataParallelSimulation(workers, params, optimizer, null);
    }

    /** W workers, each compressing with its own compressor built from {@code compression}. */
    public static DataParallelSimulation compressed(int workers, List<Tensor> params, Optimizer optimizer,
                                                    Supplier<DeepGradientCompression.Builder> compression) {
        return new DataParallelSimulation(workers, params, optimizer, Objects.requireNonNull(compression, "compression"));
    }

    public int workers() {
        return workers;
    }

    /** The compressor of worker {@code w} (empty list for the dense exchange). */
    public List<DeepGradientCompression> compressors() {
        return compressors;
    }

    /** One synchronous step on a batch whose size is a multiple of the number of workers. */
    public StepReport step(Tensor input, Tensor target, ShardLoss loss) {
        if (closed) {
            throw new IllegalStateException("DataParallelSimulation: already closed");
        }
        long batch = input.rank() == 0 ? 0 : input.size(0);
        if (batch == 0 || batch % workers != 0 || target.rank() == 0 || target.size(0) != batch) {
            throw new IllegalArgumentException("DataParallelSimulation.step: input " + input.describe() + " and target "
                    + target.describe() + " must have the same batch size, a positive multiple of " + workers
                    + " workers");
        }
        long shard = batch / workers;
        double lossSum = 0;
        long sent = 0;
        long dense = 0;
        long bytes = 0;
        long denseBytes = 0;
        double density = compressors.isEmpty() ? 1 : compressors.get(0).density();
        List<CompressedGradients> messages = new ArrayList<>(workers);
        List<List<Tensor>> denseGrads = new ArrayList<>(workers);
        List<Tensor> total = null;
        try {
            for (int w = 0; w < workers; w++) {
                clearGrads();
                try (Scope s = Scope.open()) {
                    Tensor l = loss.loss(input.narrow(0, w * shard, shard), target.narrow(0, w * shard, shard));
                    lossSum += l.item();
                    l.backward();
                }
                if (compressors.isEmpty()) {
                    denseGrads.add(copyGrads());
                } else {
                    messages.add(compressors.get(w).compress());
                }
            }
            clearGrads();
            if (compressors.isEmpty()) {
                total = sumDense(denseGrads);
                for (Tensor p : params) {
                    dense += p.numel();
                    denseBytes += p.numel() * p.dtype().byteSize();
                }
                sent = dense * workers;
                bytes = denseBytes * workers;
                dense *= workers;
                denseBytes *= workers;
            } else {
                total = CompressedGradients.sum(messages, 1.0 / workers);
                for (CompressedGradients m : messages) {
                    sent += m.valuesSent();
                    dense += m.denseValues();
                    bytes += m.bytesSent();
                    denseBytes += m.denseBytes();
                }
            }
            for (int i = 0; i < params.size(); i++) {
                params.get(i).setGrad(total.get(i));
                total.set(i, null);
            }
            optimizer.step();
            clearGrads();
        } finally {
            for (CompressedGradients m : messages) {
                m.close();
            }
            for (List<Tensor> gs : denseGrads) {
                gs.forEach(t -> {
                    if (t != null) {
                        t.close();
                    }
                });
            }
            if (total != null) {
                total.forEach(t -> {
                    if (t != null) {
                        t.close();
                    }
                });
            }
        }
        return new StepReport(lossSum / workers, density, sent, dense, bytes, denseBytes);
    }

    private void clearGrads() {
        for (Tensor p : params) {
            p.setGrad(null);
        }
    }

    private List<Tensor> copyGrads() {
        List<Tensor> out = new ArrayList<>(params.size());
        try (Scope d = Scope.detached(); var ng = Autograd.noGrad()) {
            for (Tensor p : params) {
                Tensor g = p.grad();
                out.add(g == null ? Tensor.zeros(p.dtype(), p.device(), p.dims()) : g.copy());
            }
        }
        return out;
    }

    private List<Tensor> sumDense(List<List<Tensor>> grads) {
        List<Tensor> out = new ArrayList<>(params.size());
        try (Scope d = Scope.detached(); var ng = Autograd.noGrad()) {
            for (int i = 0; i < params.size(); i++) {
                Tensor acc = grads.get(0).get(i).copy();
                for (int w = 1; w < grads.size(); w++) {
                    Tensor next = acc.add(grads.get(w).get(i));
                    acc.close();
                    acc = next;
                }
                Tensor mean = acc.mul(1.0 / workers);
                acc.close();
                out.add(mean);
            }
        }
        return out;
    }

    /** Frees the compressors' state (not the parameters or the optimizer). */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        compressors.forEach(DeepGradientCompression::close);
    }
}
