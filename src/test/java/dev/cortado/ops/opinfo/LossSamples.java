package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;
import static dev.cortado.ops.opinfo.Gen.ur;

import dev.cortado.ops.LossOpsTest;
import dev.cortado.ops.CrossEntropy.CrossEntropyAttrs;
import dev.cortado.ops.CrossEntropy.Reduction;
import dev.cortado.tensor.DType;
import java.util.List;
import java.util.Random;

/** Cross entropy and its backward (reference: LossOpsTest.reference), with ignored targets and label smoothing. */
final class LossSamples {
    private LossSamples() {
    }

    private static final String F = "losses";
    private static final long IGNORE = -100;

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("cross_entropy", F, "softmax cross entropy of logits [N, C] and int targets; also returns the log-sum-exp")
                    .samples((r, t) -> List.of(
                            new Sample("mean, ignored rows, smoothing", new CrossEntropyAttrs(Reduction.MEAN, IGNORE, 0.1),
                                    ur(r, t, -3, 3, 7, 5), targets(r, 7, 5, true)),
                            new Sample("none, a view", new CrossEntropyAttrs(Reduction.NONE, IGNORE, 0), ur(r, t, -3, 3, 6, 4).view(),
                                    targets(r, 6, 4, false)),
                            new Sample("sum, size-1 batch", new CrossEntropyAttrs(Reduction.SUM, IGNORE, 0), ur(r, t, -3, 3, 1, 4),
                                    targets(r, 1, 4, false))))
                    .reference((s, in) -> {
                        CrossEntropyAttrs a = (CrossEntropyAttrs) s.attrs();
                        int classes = (int) s.dims(0)[1];
                        LossOpsTest.Ref ref = LossOpsTest.reference(in[0], IndexingSamples.longs(in[1]), classes, a.ignoreIndex(),
                                a.labelSmoothing(), new double[in[1].length]);
                        double[] loss = ref.rowLoss();
                        if (a.reduction() != Reduction.NONE) {
                            double sum = 0;
                            for (double v : loss) {
                                sum += v;
                            }
                            loss = new double[] {a.reduction() == Reduction.MEAN ? sum / ref.count() : sum};
                        }
                        return new double[][] {loss, ref.lse()};
                    })
                    .floats(1e-5).halves(1e-2, 3e-3).gradCheck().build(),
            OpInfo.of("cross_entropy_backward", F, "dlogits of cross_entropy from the loss gradient, logits, target and lse")
                    .samples((r, t) -> List.of(backwardSample(r, t, 7, 5), backwardSample(r, t, 1, 3)))
                    .reference((s, in) -> {
                        int classes = (int) s.dims(1)[1];
                        return new double[][] {LossOpsTest.reference(in[1], IndexingSamples.longs(in[2]), classes, IGNORE, 0,
                                in[0]).dlogits()};
                    })
                    .floats(1e-5).halves(2e-2, 4e-3).coveredBy("cross_entropy").build());

    static Arg targets(Random r, int rows, int classes, boolean ignored) {
        long[] t = new long[rows];
        for (int i = 0; i < rows; i++) {
            t[i] = ignored && i % 3 == 1 ? IGNORE : (long) (r.nextDouble() * classes);
        }
        return Arg.index(t, rows);
    }

    /** Reduction NONE: grad per row, and the lse of the logits computed here in float64 (stored float32 for 16-bit logits). */
    static Sample backwardSample(Random r, DType t, int rows, int classes) {
        Arg x = ur(r, t, -3, 3, rows, classes);
        double[] xs = x.stored();
        double[] lse = new double[rows];
        for (int i = 0; i < rows; i++) {
            double m = Double.NEGATIVE_INFINITY;
            for (int c = 0; c < classes; c++) {
                m = Math.max(m, xs[i * classes + c]);
            }
            double s = 0;
            for (int c = 0; c < classes; c++) {
                s += Math.exp(xs[i * classes + c] - m);
            }
            lse[i] = m + Math.log(s);
        }
        return new Sample(rows + "x" + classes, new CrossEntropyAttrs(Reduction.NONE, IGNORE, 0), u(r, t, rows), x,
                targets(r, rows, classes, true), t == DType.FLOAT64 ? Arg.of(lse, t, rows) : Arg.of(lse, t, rows).float32());
    }
}
