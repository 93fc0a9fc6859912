package dev.cortado.ops.opinfo;

import dev.cortado.tensor.DType;
import java.util.Arrays;
import java.util.List;

/**
 * One call of an op: its attributes and tensor inputs (null for an absent optional input).
 * {@code label} says what the sample exercises (odd sizes, size-1 or empty dims, a view,
 * broadcasting...). {@code gradOutput} is the output whose gradient the gradient check follows.
 */
public record Sample(String label, Object attrs, Arg[] args, int gradOutput) {

    public Sample(String label, Object attrs, Arg... args) {
        this(label, attrs, args, 0);
    }

    public Sample gradOutput(int output) {
        return new Sample(label, attrs, args, output);
    }

    /** The sample with its floating inputs in {@code t} (index, bool inputs unchanged). */
    public Sample as(DType t) {
        Arg[] a = new Arg[args.length];
        for (int i = 0; i < a.length; i++) {
            a[i] = args[i] == null ? null : args[i].as(t);
        }
        return new Sample(label, attrs, a, gradOutput);
    }

    /** Stored values of each input (null for absent ones): what the reference reads. */
    public double[][] stored() {
        double[][] v = new double[args.length][];
        for (int i = 0; i < v.length; i++) {
            v[i] = args[i] == null ? null : args[i].stored();
        }
        return v;
    }

    /** Whether some input has no elements (nothing to differentiate). */
    public boolean isEmpty() {
        for (Arg a : args) {
            if (a != null && a.numel() == 0) {
                return true;
            }
        }
        return false;
    }

    /** A sample the gradient check skips (e.g. one whose inputs are not float64-capable). */
    public Sample noGradCheck() {
        return new Sample(label, attrs, args, -1);
    }

    public long[] dims(int input) {
        return args[input].dims();
    }

    @Override
    public String toString() {
        List<String> in = Arrays.stream(args).map(a -> a == null ? "-" : a.toString()).toList();
        return label + " " + in;
    }
}
