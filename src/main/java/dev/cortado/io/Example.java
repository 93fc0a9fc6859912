package dev.cortado.io;

import dev.cortado.tensor.Tensor;
import java.util.Objects;

/**
 * One training example: an input tensor and its target (a label, the next tokens, ...).
 * Closing it closes both tensors (they are usually views of a dataset's storage, so closing only
 * drops this example's references).
 */
public record Example(Tensor input, Tensor target) implements AutoCloseable {
    public Example {
        Objects.requireNonNull(input, "input");
        Objects.requireNonNull(target, "target");
    }

    @Override
    public void close() {
        try {
            input.close();
        } finally {
            target.close();
        }
    }
}
