package dev.cortado.ops.opinfo;

import dev.cortado.ops.Generator.RandomAttrs;
import dev.cortado.ops.RandomOpsTest;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import java.util.List;

/**
 * Random ops: Philox4x32-10 streams, the same numbers on every backend; the reference is
 * RandomOpsTest's Java Philox. Odd sizes, a size-1 dim, an empty tensor, a nonzero offset.
 */
final class RandomSamples {
    private RandomSamples() {
    }

    private static final String F = "random";

    static final List<OpInfo> ENTRIES = List.of(
            random("random_uniform", "uniform in [a, b) from Philox4x32-10 (seed, offset)", 
                    (n, a) -> RandomOpsTest.uniformRef(a.seed(), a.offset(), a.a(), a.b(), n)),
            random("random_normal", "normal(mean, std) from Philox4x32-10 and Box-Muller",
                    (n, a) -> RandomOpsTest.normalRef(a.seed(), a.offset(), a.a(), a.b(), n)),
            random("random_bernoulli", "1 with probability p (uniform < p), in any dtype", (n, a) -> {
                double[] u = RandomOpsTest.uniformRef(a.seed(), a.offset(), 0, 1, n);
                double[] y = new double[n];
                for (int i = 0; i < n; i++) {
                    y[i] = u[i] < a.a() ? 1 : 0;
                }
                return y;
            }));

    interface Stream {
        double[] values(int n, RandomAttrs a);
    }

    static OpInfo random(String name, String doc, Stream ref) {
        return OpInfo.of(name, F, doc)
                .samples((r, t) -> List.of(
                        new Sample("odd", new RandomAttrs(Shape.of(7, 5), t, 11, 0, 0.3, 2.5)),
                        new Sample("size-1, offset", new RandomAttrs(Shape.of(1, 9), t, 12, 8, 0.5, 0.25)),
                        new Sample("empty", new RandomAttrs(Shape.of(0, 3), t, 13, 0, -1, 1))))
                .reference((s, in) -> {
                    RandomAttrs a = (RandomAttrs) s.attrs();
                    return new double[][] {ref.values((int) a.shape().numel(), a)};
                })
                .dtype(DType.FLOAT64, 1e-6, 1e-6).dtype(DType.FLOAT32, 1e-6, 1e-6).dtype(DType.BFLOAT16, 1e-2, 1e-2)
                .dtype(DType.FLOAT16, 2e-3, 2e-3)
                .notDifferentiable("random numbers do not depend on an input").build();
    }
}
