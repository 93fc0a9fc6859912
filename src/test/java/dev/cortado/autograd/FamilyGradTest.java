package dev.cortado.autograd;

import static dev.cortado.autograd.AutogradTest.leaf;

import dev.cortado.ops.Attention;
import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Pooling;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Backward rules of the convolution, pooling, batch-norm and attention families, through the
 * tape, against central finite differences in float64 on tiny shapes (tolerance 1e-6 + 1e-5 rel).
 */
class FamilyGradTest {
    @BeforeEach
    void seedFromTheTestName(TestInfo info) {
        AutogradTest.seed(info.getDisplayName());
    }


    @TestFactory
    Stream<DynamicTest> conv2d() {
        Object[][] cases = {
            {"3x3 pad 1", Convolution.ConvOptions.builder().padding(1).build(), 2L, 4L, 3L, DataLayout.NCHW},
            {"stride 2 dilation 2 NHWC", Convolution.ConvOptions.builder().stride(2).dilation(2).padding(2)
                    .layout(DataLayout.NHWC).build(), 2L, 4L, 3L, DataLayout.NHWC},
            {"groups 2", Convolution.ConvOptions.builder().groups(2).padding(1).build(), 4L, 4L, 3L, DataLayout.NCHW},
            {"depthwise same", Convolution.ConvOptions.builder().groups(3).paddingSame().build(), 3L, 3L, 3L,
                    DataLayout.NCHW},
            {"1x1 fused relu", Convolution.ConvOptions.builder().activation(Convolution.Activation.RELU).build(), 3L, 5L,
                    1L, DataLayout.NCHW}};
        return Stream.of(cases).map(c -> AutogradTest.seededTest((String) c[0], () -> {
            Convolution.ConvOptions o = (Convolution.ConvOptions) c[1];
            long cin = (Long) c[2];
            long cout = (Long) c[3];
            long k = (Long) c[4];
            long groups = o.groups();
            try (Tensor x = c[5] == DataLayout.NCHW ? leaf(2, cin, 5, 6) : leaf(2, 5, 6, cin);
                    Tensor w = leaf(cout, cin / groups, k, k); Tensor b = leaf(cout)) {
                GradCheck.check("conv2d " + c[0], in -> Convolution.conv2d(in[0], in[1], in[2], o), x, w, b);
            }
        }));
    }

    @Test
    void conv1dAndConvTranspose2d() {
        try (Tensor x = leaf(2, 3, 7); Tensor w = leaf(4, 3, 3)) {
            Convolution.ConvOptions o = Convolution.ConvOptions.builder().stride(2).padding(1).build();
            GradCheck.check("conv1d", in -> Convolution.conv1d(in[0], in[1], null, o), x, w);
        }
        try (Tensor x = leaf(2, 3, 4, 3); Tensor w = leaf(3, 2, 3, 3); Tensor b = leaf(2)) {
            Convolution.ConvOptions o = Convolution.ConvOptions.builder().stride(2).padding(1).outputPadding(1).build();
            GradCheck.check("conv_transpose2d", in -> Convolution.convTranspose2d(in[0], in[1], in[2], o), x, w, b);
        }
    }

    @Test
    void pooling() {
        try (Tensor x = leaf(2, 3, 5, 6)) {
            GradCheck.check("max_pool", in -> Pooling.maxPool2d(in[0], Pooling.PoolOptions.builder(2, 2).stride(2).build()), x);
            GradCheck.check("max_pool 3x3 s2 p1", in -> Pooling.maxPool2d(in[0],
                    Pooling.PoolOptions.builder(3, 3).stride(2).padding(1).build()), x);
            GradCheck.check("avg_pool ceil", in -> Pooling.avgPool2d(in[0],
                    Pooling.PoolOptions.builder(2, 2).stride(2).ceilMode(true).countIncludePad(false).build()), x);
            GradCheck.check("adaptive_avg_pool", in -> Pooling.adaptiveAvgPool(in[0], 2, 4), x);
            GradCheck.check("global_avg_pool", in -> Pooling.globalAvgPool(in[0]), x);
        }
    }

    @Test
    void batchNorm() {
        // weight, bias and statistics are float32 by contract: the float64 leaves reach them through
        // to(float32), so the step is larger and the tolerance looser (float32 statistics)
        GradCheck.Options o = new GradCheck.Options(1e-3, 1e-4, 1e-3, 256, 7);
        try (Tensor x = leaf(4, 3, 2, 3); Tensor w = leaf(3); Tensor b = leaf(3)) {
            BatchNorm.BatchNormAttrs a = new BatchNorm.BatchNormAttrs(1e-5, 0.1, DataLayout.NCHW);
            GradCheck.check("batch_norm_training", o, in -> BatchNorm.training(in[0], in[1].to(DType.FLOAT32),
                    in[2].to(DType.FLOAT32), null, null, a)[0], x, w, b);
            try (Tensor rm = Tensor.of(new float[] {0.1f, -0.2f, 0.3f}, 3);
                    Tensor rv = Tensor.of(new float[] {0.5f, 1.5f, 2f}, 3)) {
                GradCheck.check("batch_norm_inference", o, in -> BatchNorm.inference(in[0], in[1].to(DType.FLOAT32),
                        in[2].to(DType.FLOAT32), rm, rv, a), x, w, b);
            }
        }
    }

    @TestFactory
    Stream<DynamicTest> attention() {
        return Stream.of(false, true).map(causal -> AutogradTest.seededTest("sdpa gqa causal=" + causal, () -> {
            try (Tensor q = leaf(1, 4, 5, 8); Tensor k = leaf(1, 2, 6, 8); Tensor v = leaf(1, 2, 6, 8)) {
                Attention.Options o = Attention.Options.builder().causal(causal).build();
                GradCheck.check("sdpa", in -> Attention.scaledDotProductAttention(in[0], in[1], in[2], null, o), q, k, v);
            }
        }));
    }

    @Test
    void rope() {
        try (Tensor x = leaf(1, 2, 5, 8)) {
            GradCheck.check("rope half-split", in -> Attention.rope(in[0], null, 8, 10000, false,
                    Attention.Layout.BHSD), x);
            GradCheck.check("rope interleaved partial", in -> Attention.rope(in[0], null, 4, 100, true,
                    Attention.Layout.BHSD), x);
        }
    }
}
