package dev.cortado.quant;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * A quantized tensor: the stored values (int8, uint8, packed int4, int32 or fp8) with the
 * {@link QuantParams} that give their real values, {@code real = (q - zero_point) * scale}.
 * Owns both; {@link #close()} frees them. Made by {@link Quantization#quantize},
 * {@link Quantization#quantizeDynamic} and {@link Quantization#requantize}, or {@link #of}.
 */
public final class QuantizedTensor implements AutoCloseable {
    private final Tensor values;
    private final QuantParams params;

    private QuantizedTensor(Tensor values, QuantParams params) {
        this.values = values;
        this.params = params;
    }

    /**
     * Wraps {@code values} (its storage dtype must be the scheme's) with {@code params}; takes
     * ownership of both.
     */
    public static QuantizedTensor of(Tensor values, QuantParams params) {
        if (values.dtype() != params.scheme().storage()) {
            throw new IllegalArgumentException("QuantizedTensor.of: values " + values.describe() + " are not stored as "
                    + params.scheme());
        }
        if (!values.device().equals(params.device())) {
            throw new IllegalArgumentException("QuantizedTensor.of: values " + values.describe() + " and parameters on "
                    + params.device() + " are on different devices");
        }
        params.checkFits("QuantizedTensor.of", values.shape());
        return new QuantizedTensor(values, params);
    }

    /** The stored values (owned by this tensor). */
    public Tensor values() {
        return values;
    }

    /** The parameters (owned by this tensor). */
    public QuantParams params() {
        return params;
    }

    public QuantScheme scheme() {
        return params.scheme();
    }

    public Shape shape() {
        return values.shape();
    }

    public DType dtype() {
        return values.dtype();
    }

    public Device device() {
        return values.device();
    }

    /** The real values in float32 (a new tensor). */
    public Tensor dequantize() {
        return Quantization.dequantize(this);
    }

    @Override
    public void close() {
        values.close();
        params.close();
    }

    /** The stored values as a tensor prints them, then the quantization parameters. */
    @Override
    public String toString() {
        String v = values.toString();
        return "quantized(" + v.substring(0, v.length() - 1) + ", " + params + ")";
    }
}
