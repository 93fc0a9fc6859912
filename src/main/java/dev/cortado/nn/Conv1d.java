package dev.cortado.nn;

import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.tensor.Tensor;

/** 1-d convolution: x [N, C, W] (NHWC layout: [N, W, C]), weight [out, in/groups, k], bias [out]. */
public class Conv1d extends ConvLayer {
    public Conv1d(long in, long out, long kernel) {
        this(in, out, kernel, ConvOptions.defaults(), true, ParamOptions.defaults());
    }

    public Conv1d(long in, long out, long kernel, ConvOptions options, boolean bias, ParamOptions o) {
        super(in, out, new long[] {kernel}, options, bias, o, false);
    }

    @Override
    public Tensor forward(Tensor x) {
        return Convolution.conv1d(x, weight(), bias(), options);
    }
}
