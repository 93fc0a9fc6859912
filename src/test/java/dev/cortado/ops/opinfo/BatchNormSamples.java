package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;
import static dev.cortado.ops.opinfo.Gen.ur;

import dev.cortado.ops.BatchNorm.BatchNormAttrs;
import dev.cortado.ops.BatchNormOpsTest;
import dev.cortado.ops.DataLayout;
import dev.cortado.tensor.DType;
import java.util.List;
import java.util.Random;

/**
 * Batch norm, NCHW (NHWC, running statistics and folding: BatchNormOpsTest, whose references
 * these are). x is float32 or float64; the per-channel inputs and saved statistics are float32.
 * CUDA float32: 1e-4 (Welford statistics, two-stage reduction; as CudaPoolBnTest).
 */
final class BatchNormSamples {
    private BatchNormSamples() {
    }

    private static final String F = "batch norm";
    private static final BatchNormAttrs ATTRS = new BatchNormAttrs(1e-5, 0.1, DataLayout.NCHW);

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("batch_norm_training", F, "normalizes by batch statistics per channel; returns y, mean, 1/std and "
                            + "updates the running statistics in place")
                    .samples((r, t) -> List.of(
                            new Sample("odd [4, 3, 5]", ATTRS, ur(r, t, -2, 2, 4, 3, 5), w(r, 3), b(r, 3)),
                            new Sample("2-d view, running stats", ATTRS, ur(r, t, -2, 2, 2, 3, 4, 5).view(), w(r, 3), b(r, 3),
                                    b(r, 3), w(r, 3)),
                            new Sample("[N, C], size-1 channel, no affine", ATTRS, ur(r, t, -2, 2, 8, 1))))
                    .reference((s, in) -> {
                        int[] ncs = ncs(s.dims(0));
                        double[][] st = BatchNormOpsTest.stats(in[0], ncs[0], ncs[1], ncs[2]);
                        double[] rstd = new double[ncs[1]];
                        for (int c = 0; c < rstd.length; c++) {
                            rstd[c] = 1 / Math.sqrt(st[1][c] + ATTRS.eps());
                        }
                        double[] y = BatchNormOpsTest.normalize(in[0], ncs[0], ncs[1], ncs[2], st[0], st[1], ATTRS.eps(),
                                arg(in, 1, 1, ncs[1]), arg(in, 2, 0, ncs[1]));
                        return new double[][] {y, st[0], rstd};
                    })
                    .floats(1e-5).cuda(DType.FLOAT32, 1e-4, 1e-4).gradCheck().build(),
            OpInfo.of("batch_norm_inference", F, "normalizes by the running statistics per channel")
                    .samples((r, t) -> List.of(
                            new Sample("odd [4, 3, 5]", ATTRS, ur(r, t, -2, 2, 4, 3, 5), w(r, 3), b(r, 3), b(r, 3), w(r, 3)),
                            new Sample("2-d view", ATTRS, ur(r, t, -2, 2, 2, 3, 4, 5).view(), w(r, 3), b(r, 3), b(r, 3), w(r, 3)),
                            new Sample("empty batch", ATTRS, ur(r, t, -2, 2, 0, 2), w(r, 2), b(r, 2), b(r, 2), w(r, 2))))
                    .reference((s, in) -> {
                        int[] ncs = ncs(s.dims(0));
                        return new double[][] {BatchNormOpsTest.normalize(in[0], ncs[0], ncs[1], ncs[2], in[3], in[4],
                                ATTRS.eps(), in[1], in[2])};
                    })
                    .floats(1e-5).cuda(DType.FLOAT32, 1e-4, 1e-4).gradCheck().build(),
            OpInfo.of("batch_norm_backward", F, "{dx, dweight, dbias} of batch_norm_training from the saved mean and 1/std")
                    .samples((r, t) -> List.of(backward(r, t, "odd [4, 3, 5]", false, 4, 3, 5),
                            backward(r, t, "2-d view", true, 2, 3, 4, 5)))
                    .reference((s, in) -> {
                        int[] ncs = ncs(s.dims(1));
                        return BatchNormOpsTest.backwardRef(in[0], in[1], ncs[0], ncs[1], ncs[2], in[2], in[3], in[4]);
                    })
                    .floats(1e-5).cuda(DType.FLOAT32, 1e-4, 1e-4).coveredBy("batch_norm_training").build(),
            OpInfo.of("batch_norm_relu_training", F, "relu(batch_norm_training(x)) as one node (the training-graph fusion); "
                            + "returns relu(y), mean, 1/std and updates the running statistics in place")
                    .samples((r, t) -> List.of(
                            new Sample("odd [4, 3, 5]", ATTRS, ur(r, t, -2, 2, 4, 3, 5), w(r, 3), b(r, 3)),
                            new Sample("2-d view, running stats", ATTRS, ur(r, t, -2, 2, 2, 3, 4, 5).view(), w(r, 3), b(r, 3),
                                    b(r, 3), w(r, 3)),
                            new Sample("[N, C], size-1 channel, no affine", ATTRS, ur(r, t, -2, 2, 8, 1))))
                    .reference((s, in) -> {
                        int[] ncs = ncs(s.dims(0));
                        double[][] st = BatchNormOpsTest.stats(in[0], ncs[0], ncs[1], ncs[2]);
                        double[] rstd = new double[ncs[1]];
                        for (int c = 0; c < rstd.length; c++) {
                            rstd[c] = 1 / Math.sqrt(st[1][c] + ATTRS.eps());
                        }
                        double[] y = BatchNormOpsTest.normalize(in[0], ncs[0], ncs[1], ncs[2], st[0], st[1], ATTRS.eps(),
                                arg(in, 1, 1, ncs[1]), arg(in, 2, 0, ncs[1]));
                        for (int i = 0; i < y.length; i++) {
                            y[i] = Math.max(y[i], 0);
                        }
                        return new double[][] {y, st[0], rstd};
                    })
                    .floats(1e-5).cuda(DType.FLOAT32, 1e-4, 1e-4).gradCheck().build(),
            OpInfo.of("batch_norm_relu_backward", F, "{dx, dweight, dbias} of batch_norm_relu_training: the gradient "
                            + "masked where y > 0, then batch_norm_backward")
                    .samples((r, t) -> List.of(reluBackward(r, t, "odd [4, 3, 5]", false, 4, 3, 5),
                            reluBackward(r, t, "2-d view", true, 2, 3, 4, 5)))
                    .reference((s, in) -> {
                        int[] ncs = ncs(s.dims(2));
                        double[] dy = in[0].clone();
                        for (int i = 0; i < dy.length; i++) {
                            dy[i] = in[1][i] > 0 ? dy[i] : 0;
                        }
                        return BatchNormOpsTest.backwardRef(dy, in[2], ncs[0], ncs[1], ncs[2], in[3], in[4], in[5]);
                    })
                    .floats(1e-5).cuda(DType.FLOAT32, 1e-4, 1e-4).coveredBy("batch_norm_relu_training").build());

    /** dy, y (the ReLU output: half of it zero), x, weight and the float32 statistics of x. */
    static Sample reluBackward(Random r, DType t, String label, boolean view, long... dims) {
        Sample plain = backward(r, t, label, view, dims);
        Arg y = ur(r, t, -1, 1, dims);
        return new Sample(label, ATTRS, plain.args()[0], y, plain.args()[1], plain.args()[2],
                plain.args()[3], plain.args()[4]);
    }

    static Arg w(Random r, int c) {
        return ur(r, DType.FLOAT32, 0.5, 1.5, c).float32();
    }

    static Arg b(Random r, int c) {
        return ur(r, DType.FLOAT32, -0.5, 0.5, c).float32();
    }

    /** Input i, or {@code c} copies of {@code absent} (weight 1, bias 0) when the sample omits it. */
    static double[] arg(double[][] in, int i, double absent, int c) {
        if (in.length > i && in[i] != null) {
            return in[i];
        }
        double[] d = new double[c];
        java.util.Arrays.fill(d, absent);
        return d;
    }

    static int[] ncs(long[] d) {
        long s = 1;
        for (int i = 2; i < d.length; i++) {
            s *= d[i];
        }
        return new int[] {(int) d[0], (int) d[1], (int) s};
    }

    /** dy, x, weight and the float32 mean and 1/std of x (computed here from x as stored). */
    static Sample backward(Random r, DType t, String label, boolean view, long... dims) {
        Arg x = ur(r, t, -2, 2, dims);
        int[] ncs = ncs(dims);
        double[][] st = BatchNormOpsTest.stats(x.stored(), ncs[0], ncs[1], ncs[2]);
        double[] rstd = new double[ncs[1]];
        for (int c = 0; c < rstd.length; c++) {
            rstd[c] = 1 / Math.sqrt(st[1][c] + ATTRS.eps());
        }
        return new Sample(label, ATTRS, u(r, t, dims), view ? x.view() : x, w(r, ncs[1]),
                Arg.of(st[0], DType.FLOAT32, ncs[1]).float32(), Arg.of(rstd, DType.FLOAT32, ncs[1]).float32());
    }
}
