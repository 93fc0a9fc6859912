package dev.cortado.ops;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;

/** The shape and dtype of an op's output, known before it runs. */
public record TensorSpec(Shape shape, DType dtype) {
}
