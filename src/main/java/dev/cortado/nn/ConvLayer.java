package dev.cortado.nn;

import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Shared parts of {@link Conv1d}, {@link Conv2d} and {@link ConvTranspose2d}: weight (PyTorch's
 * layout, whatever the activation layout), optional bias [out], and the op options (stride,
 * padding, dilation, groups, NCHW/NHWC layout, algorithm, fused activation) of
 * {@link ConvOptions}. Initialised as PyTorch: weight kaiming_uniform(a=sqrt(5)) =
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), with fan_in =
 * weight.size(1) * prod(kernel) (for a transposed convolution that is out/groups * prod(kernel),
 * as in PyTorch).
 */
public abstract class ConvLayer extends Module {
    protected final long inChannels;
    protected final long outChannels;
    protected final long[] kernel;
    protected final ConvOptions options;

    protected ConvLayer(long inChannels, long outChannels, long[] kernel, ConvOptions options, boolean bias,
                        ParamOptions o, boolean transposed) {
        long groups = options.groups();
        if (inChannels <= 0 || outChannels <= 0 || groups <= 0 || inChannels % groups != 0 || outChannels % groups != 0) {
            throw new IllegalArgumentException(getClass().getSimpleName() + ": channels in=" + inChannels + ", out="
                    + outChannels + " must be positive multiples of groups=" + groups);
        }
        for (long k : kernel) {
            if (k <= 0) {
                throw new IllegalArgumentException(getClass().getSimpleName() + ": kernel " + Arrays.toString(kernel)
                        + " must be positive");
            }
        }
        this.inChannels = inChannels;
        this.outChannels = outChannels;
        this.kernel = kernel.clone();
        this.options = options;
        long[] w = new long[kernel.length + 2];
        w[0] = transposed ? inChannels : outChannels;
        w[1] = transposed ? outChannels / groups : inChannels / groups;
        System.arraycopy(kernel, 0, w, 2, kernel.length);
        registerParameter("weight", unscoped(() -> Init.torchDefaultWeight(Tensor.empty(o.dtype(), o.device(), w),
                o.generator())));
        long fanIn = Init.fanIn(w);
        registerParameter("bias", bias ? unscoped(() -> Init.torchDefaultBias(
                Tensor.empty(o.dtype(), o.device(), outChannels), fanIn, o.generator())) : null);
    }

    public Tensor weight() {
        return parameter("weight");
    }

    public Tensor bias() {
        return parameter("bias");
    }

    public ConvOptions options() {
        return options;
    }

    @Override
    protected String extraRepr() {
        return inChannels + ", " + outChannels + ", kernel=" + Arrays.toString(kernel) + ", " + options + ", bias="
                + (bias() != null);
    }
}
