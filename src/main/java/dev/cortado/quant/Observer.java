package dev.cortado.quant;

import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;

/**
 * Calibration of quantization parameters from data: {@link #observe} folds batches in,
 * {@link #params} gives the scales and zero points for the scheme. Implementations:
 * {@link MinMaxObserver} (overall or moving-average range) and {@link HistogramObserver}
 * (percentile and MSE-optimal clipping). Mutable running state: one observer per tensor.
 */
public interface Observer {
    /** The scheme the parameters are for. */
    QuantScheme scheme();

    /** Folds a batch (floating, any shape the scheme fits) into the running statistics. */
    void observe(Tensor x);

    /** The parameters for what was observed, on {@code device}; throws if nothing was. */
    QuantParams params(Device device);
}
