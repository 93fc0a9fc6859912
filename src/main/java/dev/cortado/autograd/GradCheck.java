package dev.cortado.autograd;

import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import java.util.function.Function;

/**
 * Checks backward rules against central finite differences in float64.
 *
 * <p>For a function {@code f} of some float64 leaves, it draws a random seed gradient {@code r}
 * for the output, runs backward to get the analytic gradients of {@code L = sum(f(x) * r)}, and
 * compares each with {@code (L(x + h e_j) - L(x - h e_j)) / 2h} for every element j (or a fixed
 * random sample of at most {@link Options#maxElementsPerInput} elements of large inputs).
 * Tolerance: {@code |analytic - numeric| <= atol + rtol * |numeric|}. Cost: two forward calls per
 * checked element, so keep shapes tiny.
 */
public final class GradCheck {
    private GradCheck() {
    }

    /** Step, tolerances and sampling. */
    public record Options(double step, double atol, double rtol, int maxElementsPerInput, long seed) {
        public static final Options DEFAULT = new Options(1e-6, 1e-6, 1e-5, 256, 7);

        public Options withTolerance(double atol, double rtol) {
            return new Options(step, atol, rtol, maxElementsPerInput, seed);
        }
    }

    /** Checks with {@link Options#DEFAULT}; throws an AssertionError naming the first mismatch. */
    public static void check(String name, Function<Tensor[], Tensor> f, Tensor... inputs) {
        check(name, Options.DEFAULT, f, inputs);
    }

    /** Checks the gradients of every input that requires them. */
    public static void check(String name, Options options, Function<Tensor[], Tensor> f, Tensor... inputs) {
        for (Tensor x : inputs) {
            if (x != null && x.requiresGrad() && x.dtype() != DType.FLOAT64) {
                throw new IllegalArgumentException("gradcheck " + name + ": inputs must be float64, got " + x.describe());
            }
            if (x != null && x.requiresGrad()) {
                x.setGrad(null);
            }
        }
        Random random = new Random(options.seed());
        double[][] analytic = new double[inputs.length][];
        Tensor seed;
        try (Scope scope = Scope.open()) {
            Tensor y = f.apply(inputs);
            if (!y.requiresGrad()) {
                throw new AssertionError("gradcheck " + name + ": the output does not depend on any input that requires grad");
            }
            double[] r = new double[(int) y.numel()];
            for (int i = 0; i < r.length; i++) {
                r[i] = random.nextGaussian();
            }
            seed = scope.keep(Tensor.of(r, y.shape().toArray()).to(y.dtype(), y.device()));
            y.backward(seed, false);
        }
        try (seed) {
            for (int i = 0; i < inputs.length; i++) {
                Tensor x = inputs[i];
                if (x == null || !x.requiresGrad()) {
                    continue;
                }
                analytic[i] = x.grad() == null ? new double[(int) x.numel()] : x.grad().toDoubleArray();
                x.setGrad(null);
            }
            try (Autograd.GradMode off = Autograd.noGrad()) {
                for (int i = 0; i < inputs.length; i++) {
                    if (analytic[i] != null) {
                        checkInput(name, options, f, inputs, i, seed, analytic[i], random);
                    }
                }
            }
        }
    }

    private static void checkInput(String name, Options o, Function<Tensor[], Tensor> f, Tensor[] inputs, int which,
            Tensor seed, double[] analytic, Random random) {
        Tensor x = inputs[which];
        if (!x.isContiguous()) {
            throw new IllegalArgumentException("gradcheck " + name + ": input " + which + " must be contiguous");
        }
        double[] values = x.toDoubleArray();
        int n = values.length;
        int[] positions;
        if (n <= o.maxElementsPerInput()) {
            positions = new int[n];
            for (int j = 0; j < n; j++) {
                positions[j] = j;
            }
        } else {
            positions = random.ints(o.maxElementsPerInput(), 0, n).toArray();
        }
        try {
            for (int j : positions) {
                double original = values[j];
                values[j] = original + o.step();
                double plus = objective(f, inputs, x, values, seed);
                values[j] = original - o.step();
                double minus = objective(f, inputs, x, values, seed);
                values[j] = original;
                double numeric = (plus - minus) / (2 * o.step());
                double diff = Math.abs(analytic[j] - numeric);
                if (!(diff <= o.atol() + o.rtol() * Math.abs(numeric))) {
                    throw new AssertionError(String.format(
                            "gradcheck %s: gradient of input %d (%s) at flat index %d: backward gives %.10g, "
                                    + "finite differences give %.10g (difference %.3g, tolerance %.3g + %.3g*|numeric|)",
                            name, which, x.describe(), j, analytic[j], numeric, diff, o.atol(), o.rtol()));
                }
            }
        } finally {
            write(x, values);
        }
    }

    /** sum(f(x) * seed) with input x set to {@code values}. */
    private static double objective(Function<Tensor[], Tensor> f, Tensor[] inputs, Tensor x, double[] values,
            Tensor seed) {
        write(x, values);
        try (Scope scope = Scope.open()) {
            Tensor y = f.apply(inputs);
            return Reductions.sum(Elementwise.mul(y.to(DType.FLOAT64), seed.to(DType.FLOAT64))).item();
        }
    }

    private static void write(Tensor x, double[] values) {
        try (Tensor src = Tensor.of(values, x.shape().toArray())) {
            x.copyFrom(src);
        }
    }
}
