package dev.cortado.nn;

import dev.cortado.ops.Indexing;
import dev.cortado.tensor.Tensor;

/** Rows of weight [num, dim] selected by integer indices of any shape: [..., dim]. Init N(0, 1) as PyTorch. */
public class Embedding extends Module {
    private final long num;
    private final long dim;

    public Embedding(long numEmbeddings, long dim) {
        this(numEmbeddings, dim, ParamOptions.defaults());
    }

    public Embedding(long numEmbeddings, long dim, ParamOptions o) {
        if (numEmbeddings <= 0 || dim <= 0) {
            throw new IllegalArgumentException("Embedding: sizes must be positive, got " + numEmbeddings + " x " + dim);
        }
        this.num = numEmbeddings;
        this.dim = dim;
        registerParameter("weight", unscoped(() ->
                Init.normal(Tensor.empty(o.dtype(), o.device(), numEmbeddings, dim), 0, 1, o.generator())));
    }

    public Tensor weight() {
        return parameter("weight");
    }

    @Override
    public Tensor forward(Tensor indices) {
        if (indices.dtype().isFloatingPoint()) {
            throw new IllegalArgumentException("Embedding: indices must be integers, got " + indices.describe());
        }
        return Indexing.embedding(weight(), indices);
    }

    @Override
    protected String extraRepr() {
        return num + ", " + dim;
    }
}
