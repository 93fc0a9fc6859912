package dev.cortado.nn;

import dev.cortado.ops.Elementwise;
import dev.cortado.sparse.SparseFormat;
import dev.cortado.tensor.Tensor;

/**
 * A trained {@link Linear} whose weight is stored sparse and run by the sparse kernels, for
 * inference: {@code y = x W^T + b} computed as {@code (W · x^T)^T + b}, W an N:M matrix
 * ({@code nm_matmul}) or CSR ({@code csr_spmm}) chosen by {@link SparseFormat}. It gives the
 * outputs of the dense layer whose weight is the decompressed W (the masked model), up to the
 * order of the float32 additions.
 *
 * <p>It lives in {@code nn} rather than {@code dev.cortado.sparse} because it is a {@link Module},
 * and the sparse package sits below nn in the layer table (docs/architecture.md).
 */
public final class SparseLinear extends SparseLayer {
    /**
     * Converts {@code linear}: its weight compressed in {@code format} (N:M keeps the n largest of
     * every m, which is exact for an N:M-trained weight; CSR keeps the non-zero entries), its bias
     * copied. {@code linear} is not changed and may be closed afterwards.
     */
    public SparseLinear(Linear linear, SparseFormat format) {
        super(linear.weight(), linear.bias(), format);
    }

    public long inFeatures() {
        return weight().cols();
    }

    public long outFeatures() {
        return weight().rows();
    }

    @Override
    public Tensor forward(Tensor x) {
        long in = inFeatures();
        if (x.rank() < 1 || x.size(-1) != in) {
            throw new IllegalArgumentException("SparseLinear: x " + x.describe() + " must end in in_features = " + in);
        }
        Tensor bias = bias();
        long[] outDims = x.dims();
        outDims[outDims.length - 1] = outFeatures();
        try (Tensor rows = x.reshape(-1, in); Tensor xt = rows.transpose(0, 1);
             Tensor yt = weight().matmul(xt); Tensor y = yt.transpose(0, 1);
             Tensor out = bias == null ? y.contiguous() : Elementwise.add(y, bias)) {
            return out.reshape(outDims);
        }
    }

    @Override
    protected String extraRepr() {
        return "in=" + inFeatures() + ", out=" + outFeatures() + ", " + describeWeight() + ", bias=" + (bias() != null);
    }
}
