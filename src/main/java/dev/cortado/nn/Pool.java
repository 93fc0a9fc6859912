package dev.cortado.nn;

import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Pooling;
import dev.cortado.ops.Pooling.PoolOptions;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/** Pooling layers (no parameters): {@link MaxPool2d}, {@link AvgPool2d}, {@link AdaptiveAvgPool2d}, {@link GlobalAvgPool}. */
public final class Pool {
    private Pool() {
    }

    /** Max pooling of x [N, C, H, W] (or NHWC per the options). */
    public static class MaxPool2d extends Module {
        private final PoolOptions options;

        public MaxPool2d(int kernel) {
            this(PoolOptions.of(kernel));
        }

        public MaxPool2d(int kernel, int stride, int padding) {
            this(PoolOptions.builder(kernel).stride(stride).padding(padding).build());
        }

        public MaxPool2d(PoolOptions options) {
            this.options = options;
        }

        @Override
        public Tensor forward(Tensor x) {
            return Pooling.maxPool2d(x, options);
        }

        @Override
        protected String extraRepr() {
            return options.toString();
        }
    }

    /** Average pooling of x [N, C, H, W] (or NHWC); count_include_pad by default, as PyTorch. */
    public static class AvgPool2d extends Module {
        private final PoolOptions options;

        public AvgPool2d(int kernel) {
            this(PoolOptions.of(kernel));
        }

        public AvgPool2d(int kernel, int stride, int padding) {
            this(PoolOptions.builder(kernel).stride(stride).padding(padding).build());
        }

        public AvgPool2d(PoolOptions options) {
            this.options = options;
        }

        @Override
        public Tensor forward(Tensor x) {
            return Pooling.avgPool2d(x, options);
        }

        @Override
        protected String extraRepr() {
            return options.toString();
        }
    }

    /** Adaptive average pooling to [outH, outW] (PyTorch's bins: floor(i*in/out) .. ceil((i+1)*in/out)). */
    public static class AdaptiveAvgPool2d extends Module {
        private final int[] outputSize;
        private final DataLayout layout;

        public AdaptiveAvgPool2d(int outH, int outW) {
            this(new int[] {outH, outW}, DataLayout.NCHW);
        }

        public AdaptiveAvgPool2d(int[] outputSize, DataLayout layout) {
            this.outputSize = outputSize.clone();
            this.layout = layout;
        }

        @Override
        public Tensor forward(Tensor x) {
            if (x.rank() != 4) {
                throw new IllegalArgumentException("AdaptiveAvgPool2d: x must be rank 4, got " + x.describe());
            }
            return Pooling.adaptiveAvgPool(x, layout, outputSize);
        }

        @Override
        protected String extraRepr() {
            return Arrays.toString(outputSize) + ", " + layout;
        }
    }

    /**
     * Mean over all spatial positions. With {@code flatten} (the default) the result is [N, C];
     * otherwise the spatial dimensions stay with size 1.
     */
    public static class GlobalAvgPool extends Module {
        private final DataLayout layout;
        private final boolean flatten;

        public GlobalAvgPool() {
            this(DataLayout.NCHW, true);
        }

        public GlobalAvgPool(DataLayout layout, boolean flatten) {
            this.layout = layout;
            this.flatten = flatten;
        }

        @Override
        public Tensor forward(Tensor x) {
            Tensor y = Pooling.globalAvgPool(x, layout);
            if (!flatten) {
                return y;
            }
            try (y) {
                return y.reshape(x.size(0), layout == DataLayout.NCHW ? x.size(1) : x.size(-1));
            }
        }

        @Override
        protected String extraRepr() {
            return layout + (flatten ? ", flatten" : "");
        }
    }
}
