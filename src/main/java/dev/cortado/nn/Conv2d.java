package dev.cortado.nn;

import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.tensor.Tensor;

/**
 * 2-d convolution: x [N, C, H, W] (NHWC layout: [N, H, W, C]), weight [out, in/groups, kH, kW],
 * bias [out]. Stride, padding, dilation, groups and layout come from {@link ConvOptions#builder()}.
 */
public class Conv2d extends ConvLayer {
    public Conv2d(long in, long out, long kernel) {
        this(in, out, kernel, 1, 0);
    }

    public Conv2d(long in, long out, long kernel, long stride, long padding) {
        this(in, out, new long[] {kernel, kernel}, ConvOptions.builder().stride(stride).padding(padding).build(), true,
                ParamOptions.defaults());
    }

    public Conv2d(long in, long out, long[] kernel, ConvOptions options, boolean bias, ParamOptions o) {
        super(in, out, checked(kernel), options, bias, o, false);
    }

    private static long[] checked(long[] kernel) {
        if (kernel.length == 1) {
            return new long[] {kernel[0], kernel[0]};
        }
        if (kernel.length != 2) {
            throw new IllegalArgumentException("Conv2d: kernel must have 1 or 2 sizes, got " + kernel.length);
        }
        return kernel;
    }

    @Override
    public Tensor forward(Tensor x) {
        return Convolution.conv2d(x, weight(), bias(), options);
    }
}
