package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.ur;

import dev.cortado.ops.ReductionOpsTest;
import dev.cortado.ops.Reductions.Axes;
import java.util.List;
import java.util.function.ToDoubleFunction;

/**
 * Reductions over axis sets: odd sizes, keepdim over two axes, all axes of a size-1 dim, a
 * transposed view, an empty kept dim. Reference: {@link ReductionOpsTest#group} and its
 * per-group functions.
 */
final class ReductionSamples {
    private ReductionSamples() {
    }

    private static final String F = "reductions";

    static final List<OpInfo> ENTRIES = List.of(
            reduction("sum", "sum over axes (pairwise in float32; integers give int64)", 0, ReductionOpsTest::sum)
                    .gradCheck().build(),
            reduction("mean", "mean over axes", 0, v -> ReductionOpsTest.sum(v) / v.length).gradCheck().build(),
            reduction("max", "maximum over axes (NaN wins)", 0, ReductionOpsTest::max).gradCheck().build(),
            reduction("min", "minimum over axes (NaN wins)", 0, ReductionOpsTest::min).gradCheck().build(),
            reduction("argmax", "index of the first maximum (int64)", 0, ReductionOpsTest::argmax)
                    .notDifferentiable("int64 result").build(),
            reduction("argmin", "index of the first minimum (int64)", 0, ReductionOpsTest::argmin)
                    .notDifferentiable("int64 result").build(),
            reduction("var", "variance with a correction (1 = unbiased)", 1, v -> ReductionOpsTest.var(v, 1))
                    .gradCheck().build(),
            reduction("prod", "product over axes", 0, v -> {
                double p = 1;
                for (double x : v) {
                    p *= x;
                }
                return p;
            }).gradCheck().build());

    static OpInfo.Builder reduction(String name, String doc, double correction, ToDoubleFunction<double[]> f) {
        boolean arg = name.startsWith("arg");
        return OpInfo.of(name, F, doc)
                .samples((r, t) -> List.of(
                        new Sample("odd, axis 1", new Axes(new int[] {1}, false, correction), ur(r, t, 0.5, 1.5, 7, 5)),
                        new Sample("axes 0, 2 keepdim", new Axes(arg ? new int[] {2} : new int[] {0, 2}, true, correction),
                                ur(r, t, 0.5, 1.5, 4, 3, 5)),
                        new Sample("all axes, size-1", new Axes(arg ? new int[] {1} : new int[0], false, correction),
                                ur(r, t, 0.5, 1.5, 1, 6)),
                        new Sample("view, axis 0", new Axes(new int[] {0}, false, correction), ur(r, t, 0.5, 1.5, 5, 6).view()),
                        new Sample("empty kept dim", new Axes(new int[] {-1}, false, correction), ur(r, t, 0.5, 1.5, 0, 3))))
                .reference((s, in) -> {
                    int[] axes = ((Axes) s.attrs()).axes();
                    double[][] g = ReductionOpsTest.group(in[0], s.dims(0), axes).values();
                    double[] y = new double[g.length];
                    for (int i = 0; i < y.length; i++) {
                        y[i] = f.applyAsDouble(g[i]);
                    }
                    return new double[][] {y};
                })
                .floats(1e-5).halves(1e-2, 4e-3);
    }
}
