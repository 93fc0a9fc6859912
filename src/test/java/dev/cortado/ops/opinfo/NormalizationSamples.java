package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;
import static dev.cortado.ops.opinfo.Gen.ur;

import dev.cortado.ops.Normalization.NormAttrs;
import dev.cortado.ops.Normalization.SoftmaxAttrs;
import dev.cortado.ops.NormalizationBackwardTest;
import dev.cortado.ops.NormalizationOpsTest;
import dev.cortado.tensor.DType;
import java.util.List;
import java.util.Random;

/** Softmax, log-softmax, layer norm, RMS norm and their backward ops (references: NormalizationOpsTest, NormalizationBackwardTest). */
final class NormalizationSamples {
    private NormalizationSamples() {
    }

    private static final String F = "normalization";
    private static final double EPS = 1e-5;

    static final List<OpInfo> ENTRIES = List.of(
            softmax("softmax", false).gradCheck().build(),
            softmax("log_softmax", true).gradCheck().build(),
            softmaxBackward("softmax_backward", false),
            softmaxBackward("log_softmax_backward", true),
            norm("layer_norm", false),
            norm("rms_norm", true),
            normBackward("layer_norm_backward", false),
            normBackward("rms_norm_backward", true));

    static List<Sample> axisSamples(Random r, DType t, boolean log, int inputs) {
        return List.of(
                sample("odd, last axis", new SoftmaxAttrs(1, log), r, t, inputs, false, 7, 5),
                sample("middle axis", new SoftmaxAttrs(1, log), r, t, inputs, false, 4, 3, 5),
                sample("size-1 rows", new SoftmaxAttrs(-1, log), r, t, inputs, false, 1, 6),
                sample("view, axis 0", new SoftmaxAttrs(0, log), r, t, inputs, true, 5, 6),
                sample("empty", new SoftmaxAttrs(1, log), r, t, inputs, false, 0, 4));
    }

    private static Sample sample(String label, Object attrs, Random r, DType t, int inputs, boolean view, long... dims) {
        Arg[] a = new Arg[inputs];
        for (int i = 0; i < inputs; i++) {
            a[i] = ur(r, t, -2, 2, dims);
        }
        if (view) {
            a[0] = a[0].view();
        }
        return new Sample(label, attrs, a);
    }

    static OpInfo.Builder softmax(String name, boolean log) {
        return OpInfo.of(name, F, (log ? "log(softmax(x))" : "exp(x - max) / sum") + " along an axis")
                .samples((r, t) -> axisSamples(r, t, log, 1))
                .reference((s, in) -> new double[][] {NormalizationOpsTest.softmaxRef(in[0], s.dims(0),
                        ((SoftmaxAttrs) s.attrs()).axis(), log)})
                .floats(1e-5).halves(1e-2, 3e-3);
    }

    static OpInfo softmaxBackward(String name, boolean log) {
        return OpInfo.of(name, F, "dx of " + (log ? "log_softmax" : "softmax") + " from its output y and dy")
                .samples((r, t) -> axisSamples(r, t, log, 2))
                .reference((s, in) -> new double[][] {NormalizationBackwardTest.softmaxBackwardRef(in[0], in[1], s.dims(0),
                        ((SoftmaxAttrs) s.attrs()).axis(), log)})
                .floats(1e-5).halves(2e-2, 4e-3).coveredBy(log ? "log_softmax" : "softmax").build();
    }

    static OpInfo norm(String name, boolean rms) {
        return OpInfo.of(name, F, (rms ? "x / sqrt(mean(x²) + eps) · weight" : "(x - mean) / sqrt(var + eps) · weight + bias")
                        + " over the trailing dims")
                .samples((r, t) -> List.of(
                        normSample("odd rows of 7", 1, r, t, rms, false, 5, 7),
                        normSample("two normalized dims", 2, r, t, rms, false, 2, 3, 5),
                        normSample("size-1 batch, view", 1, r, t, rms, true, 1, 6, 4),
                        normSample("empty batch", 1, r, t, rms, false, 0, 5)))
                .reference((s, in) -> {
                    int cols = (int) Gen.prod(s.dims(1));
                    return new double[][] {NormalizationOpsTest.layerNormRef(in[0], cols, in[1], rms ? null : in[2], EPS, rms)};
                })
                .floats(1e-5).halves(1e-2, 4e-3).gradCheck().build();
    }

    private static Sample normSample(String label, int nd, Random r, DType t, boolean rms, boolean view, long... dims) {
        long[] tail = java.util.Arrays.copyOfRange(dims, dims.length - nd, dims.length);
        Arg x = ur(r, t, -2, 2, dims);
        Arg w = ur(r, t, 0.5, 1.5, tail);
        Arg b = ur(r, t, -1, 1, tail);
        if (view) {
            x = x.view();
        }
        return rms ? new Sample(label, new NormAttrs(nd, EPS), x, w) : new Sample(label, new NormAttrs(nd, EPS), x, w, b);
    }

    static OpInfo normBackward(String name, boolean rms) {
        return OpInfo.of(name, F, "{dx, dweight" + (rms ? "" : ", dbias") + "} of " + (rms ? "rms_norm" : "layer_norm"))
                .samples((r, t) -> List.of(
                        new Sample("odd rows of 7", new NormAttrs(1, EPS), u(r, t, 5, 7), ur(r, t, -2, 2, 5, 7), ur(r, t, 0.5, 1.5, 7)),
                        new Sample("view", new NormAttrs(1, EPS), u(r, t, 6, 4).view(), ur(r, t, -2, 2, 6, 4), ur(r, t, 0.5, 1.5, 4))))
                .reference((s, in) -> {
                    int cols = (int) s.dims(2)[0];
                    double[][] g = NormalizationBackwardTest.normBackwardRef(in[1], in[0], in[2], cols, EPS, rms);
                    return rms ? new double[][] {g[0], g[1]} : g;
                })
                .floats(1e-4).halves(3e-2, 8e-3).coveredBy(rms ? "rms_norm" : "layer_norm").build();
    }
}
