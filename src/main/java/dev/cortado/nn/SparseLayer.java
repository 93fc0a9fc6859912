package dev.cortado.nn;

import dev.cortado.autograd.Autograd;
import dev.cortado.sparse.SparseFormat;
import dev.cortado.sparse.SparseTensor;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;

/**
 * What {@link SparseLinear} and {@link SparseConv2d} share: a trained weight, read as the matrix
 * {@code [out, numel / out]}, compressed into a {@link SparseFormat} and owned by the module, and
 * the bias copied into a buffer. For inference: nothing trains, and the module stays on the device
 * and dtype of the dense layer it was converted from (move or convert that one first).
 */
abstract sealed class SparseLayer extends Module permits SparseLinear, SparseConv2d {
    private final SparseTensor weight;

    SparseLayer(Tensor denseWeight, Tensor bias, SparseFormat format) {
        try (var g = Autograd.noGrad();
             Tensor matrix = denseWeight.reshape(denseWeight.size(0), denseWeight.numel() / denseWeight.size(0))) {
            this.weight = format.compress(matrix);
            registerBuffer("bias", bias == null ? null : unscoped(bias::copy));
        }
    }

    /** The sparse weight {@code [out, numel / out]} (owned by this module). */
    public final SparseTensor weight() {
        return weight;
    }

    /** The bias, or null. */
    public final Tensor bias() {
        return buffer("bias");
    }

    @Override
    public final Module to(Device device) {
        if (!device.equals(weight.device())) {
            throw new UnsupportedOperationException(getClass().getSimpleName() + ".to(" + device + "): the sparse weight "
                    + "stays on " + weight.device() + "; move the dense layer, then convert it");
        }
        return this;
    }

    @Override
    public final Module to(DType dtype) {
        if (dtype != weight.dtype()) {
            throw new UnsupportedOperationException(getClass().getSimpleName() + ".to(" + dtype + "): the sparse weight is "
                    + weight.dtype() + "; convert the dense layer, then convert it");
        }
        return this;
    }

    @Override
    public void close() {
        weight.close();
        super.close();
    }

    /** The weight's layout, pattern and stored entries, for {@link #extraRepr()}. */
    final String describeWeight() {
        return weight.layout().name().toLowerCase() + (weight.layout() == dev.cortado.tensor.Layout.NM
                ? " " + weight.pattern() : "") + ", nnz=" + weight.nnz();
    }
}
