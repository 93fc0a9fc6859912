package dev.cortado.nn;

import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Elementwise;
import dev.cortado.sparse.SparseFormat;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * A trained {@link Conv2d} (NCHW, groups 1) whose kernel is stored sparse and run by the sparse
 * kernels, for inference. The kernel {@code [out, in, kh, kw]} is the matrix
 * {@code [out, in·kh·kw]} (N:M groups run along in·kh·kw, the reduction dimension, as
 * {@code NmSparseTraining} and {@code MagnitudePruning} choose them), and the convolution is
 * {@code W · cols} with {@code cols [in·kh·kw, N·Ho·Wo]} the unfolded input (im2col: the input is
 * padded once, then one strided view of the padded input is copied contiguous). Cost: the
 * product's {@code 2·nnz·N·Ho·Wo} FLOPs, plus the unfolded copy of {@code in·kh·kw·N·Ho·Wo}
 * elements. The outputs are those of the dense masked convolution up to the order of the
 * float32 additions.
 */
public final class SparseConv2d extends SparseLayer {
    private final long inChannels;
    private final long[] kernel;
    private final ConvOptions options;

    /** Converts {@code conv} (see {@link SparseLinear#SparseLinear}); {@code conv} may be closed afterwards. */
    public SparseConv2d(Conv2d conv, SparseFormat format) {
        super(checked(conv).weight(), conv.bias(), format);
        this.inChannels = conv.inChannels;
        this.kernel = conv.kernel.clone();
        this.options = conv.options();
    }

    private static Conv2d checked(Conv2d conv) {
        ConvOptions o = conv.options();
        if (o.groups() != 1 || o.layout() != DataLayout.NCHW || o.activation() != Convolution.Activation.NONE) {
            throw new IllegalArgumentException("SparseConv2d: only groups 1, NCHW and no fused activation are converted; got "
                    + o);
        }
        return conv;
    }

    private static long at(long[] perDim, int d) {
        return perDim.length == 1 ? perDim[0] : perDim[d];
    }

    @Override
    public Tensor forward(Tensor x) {
        if (x.rank() != 4 || x.size(1) != inChannels) {
            throw new IllegalArgumentException("SparseConv2d: x " + x.describe() + " must be [N, " + inChannels + ", H, W]");
        }
        long n = x.size(0);
        long c = inChannels;
        long[] size = {x.size(2), x.size(3)};
        long[] before = new long[2];
        long[] padded = new long[2];
        long[] out = new long[2];
        long[] stride = new long[2];
        long[] dil = new long[2];
        for (int d = 0; d < 2; d++) {
            stride[d] = at(options.stride(), d);
            dil[d] = at(options.dilation(), d);
            long span = dil[d] * (kernel[d] - 1) + 1;
            long after;
            if (options.samePadding()) {
                long total = Math.max(((size[d] + stride[d] - 1) / stride[d] - 1) * stride[d] + span - size[d], 0);
                before[d] = total / 2;
                after = total - before[d];
            } else {
                before[d] = at(options.padBefore(), d);
                after = at(options.padAfter(), d);
            }
            padded[d] = size[d] + before[d] + after;
            if (padded[d] < span) {
                throw new IllegalArgumentException("SparseConv2d: x " + x.describe() + " padded is smaller than the kernel "
                        + Arrays.toString(kernel) + " (" + options + ")");
            }
            out[d] = (padded[d] - span) / stride[d] + 1;
        }
        long hp = padded[0];
        long wp = padded[1];
        long k = c * kernel[0] * kernel[1];
        Tensor bias = bias();
        try (Tensor pad = Tensor.zeros(x.dtype(), x.device(), n, c, hp, wp);
             Tensor rows = pad.narrow(2, before[0], size[0]); Tensor inner = rows.narrow(3, before[1], size[1])) {
            inner.copyFrom(x);
            // cols[ci, i, j, b, oh, ow] = pad[b, ci, oh·s0 + i·d0, ow·s1 + j·d1]
            try (Tensor view = pad.asStrided(pad.dtype(), Shape.of(c, kernel[0], kernel[1], n, out[0], out[1]),
                         new long[] {hp * wp, dil[0] * wp, dil[1], c * hp * wp, stride[0] * wp, stride[1]}, pad.offset());
                 Tensor cols = view.contiguous(); Tensor matrix = cols.reshape(k, n * out[0] * out[1]);
                 Tensor y = weight().matmul(matrix); Tensor y4 = y.reshape(weight().rows(), n, out[0], out[1]);
                 Tensor nchw = y4.permute(1, 0, 2, 3)) {
                if (bias == null) {
                    return nchw.contiguous();
                }
                try (Tensor b = bias.reshape(1, weight().rows(), 1, 1)) {
                    return Elementwise.add(nchw, b);
                }
            }
        }
    }

    @Override
    protected String extraRepr() {
        return inChannels + ", " + weight().rows() + ", kernel=" + Arrays.toString(kernel) + ", " + options + ", "
                + describeWeight() + ", bias=" + (bias() != null);
    }
}
