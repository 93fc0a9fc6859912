package dev.cortado.nn;

import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.tensor.Tensor;

/**
 * 2-d transposed convolution (PyTorch's ConvTranspose2d): x [N, in, H, W], weight
 * [in, out/groups, kH, kW], bias [out]; output padding through {@link ConvOptions.Builder#outputPadding}.
 */
public class ConvTranspose2d extends ConvLayer {
    public ConvTranspose2d(long in, long out, long kernel, long stride) {
        this(in, out, new long[] {kernel, kernel}, ConvOptions.builder().stride(stride).build(), true,
                ParamOptions.defaults());
    }

    public ConvTranspose2d(long in, long out, long[] kernel, ConvOptions options, boolean bias, ParamOptions o) {
        super(in, out, kernel.length == 1 ? new long[] {kernel[0], kernel[0]} : kernel, options, bias, o, true);
    }

    @Override
    public Tensor forward(Tensor x) {
        return Convolution.convTranspose2d(x, weight(), bias(), options);
    }
}
