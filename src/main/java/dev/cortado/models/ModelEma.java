package dev.cortado.models;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Module;
import dev.cortado.tensor.Tensor;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * An exponential moving average of a model's weights (Polyak averaging, as in DeiT's and timm's
 * "model EMA"): after each optimizer step, {@link #update()} sets every averaged parameter to
 * {@code decay * average + (1 - decay) * parameter} and copies the buffers (batch-norm
 * statistics) as they are. With warm-up the decay of update t (from 1) is
 * {@code min(decay, (1 + t) / (10 + t))}, so early averages are not dominated by the initial
 * weights. Evaluate the average by {@link #copyTo} a second instance of the architecture.
 * The averages are copies (same dtype and device as the weights), owned by this object.
 */
public final class ModelEma implements AutoCloseable {
    private final Module model;
    private final double decay;
    private final boolean warmup;
    private final Map<String, Tensor> average = new LinkedHashMap<>();
    private long updates;

    /** Starts the average at the model's current weights. */
    public ModelEma(Module model, double decay, boolean warmup) {
        if (!(decay >= 0 && decay < 1)) {
            throw new IllegalArgumentException("ModelEma: decay must be in [0, 1), got " + decay);
        }
        this.model = model;
        this.decay = decay;
        this.warmup = warmup;
        try (var off = Autograd.noGrad(); var s = dev.cortado.tensor.Scope.detached()) {
            for (Map.Entry<String, Tensor> e : model.state().entrySet()) {
                average.put(e.getKey(), e.getValue().copy());
            }
        }
    }

    /** The decay the next update uses. */
    public double currentDecay() {
        return warmup ? Math.min(decay, (1.0 + updates + 1) / (10.0 + updates + 1)) : decay;
    }

    /** Folds the model's current weights into the average. */
    public void update() {
        double d = currentDecay();
        Map<String, Tensor> params = model.namedParameters();
        try (var off = Autograd.noGrad()) {
            for (Map.Entry<String, Tensor> e : model.state().entrySet()) {
                Tensor avg = average.get(e.getKey());
                Tensor now = e.getValue();
                if (params.containsKey(e.getKey()) && now.dtype().isFloatingPoint()) {
                    try (Tensor a = avg.mul(d); Tensor b = now.mul(1 - d); Tensor sum = a.add(b)) {
                        avg.copyFrom(sum);
                    }
                } else {
                    avg.copyFrom(now);
                }
            }
        }
        updates++;
    }

    /** Updates folded in so far. */
    public long updates() {
        return updates;
    }

    /** The average of parameter or buffer {@code name} (owned by this object). */
    public Tensor average(String name) {
        Tensor t = average.get(name);
        if (t == null) {
            throw new IllegalArgumentException("ModelEma: no parameter or buffer '" + name + "'");
        }
        return t;
    }

    /** Writes the averages into {@code target}, a module of the same architecture. */
    public void copyTo(Module target) {
        target.loadState(average, true);
    }

    @Override
    public void close() {
        average.values().forEach(Tensor::close);
        average.clear();
    }
}
