package dev.cortado.nn;

import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Parameter initialisation, in place, from a seeded {@link Generator} (Philox: the same seed
 * gives the same values on the CPU and on CUDA). Fans follow PyTorch: for a weight
 * {@code [out, in, k...]}, fan_in = in * prod(k) and fan_out = out * prod(k).
 *
 * <p>Each method fills {@code t} and returns it. The defaults of the layers (see each layer's
 * documentation) match PyTorch's.
 */
public final class Init {
    private Init() {
    }

    /** Which fan scales the variance: FAN_IN keeps the forward's variance, FAN_OUT the backward's. */
    public enum Fan {
        FAN_IN, FAN_OUT
    }

    /** PyTorch's {@code calculate_gain}: linear/conv/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu(a) sqrt(2/(1+a^2)), selu 3/4. */
    public static double gain(String nonlinearity, double param) {
        return switch (nonlinearity) {
            case "linear", "identity", "conv1d", "conv2d", "conv3d", "sigmoid" -> 1.0;
            case "tanh" -> 5.0 / 3.0;
            case "relu" -> Math.sqrt(2.0);
            case "leaky_relu" -> Math.sqrt(2.0 / (1 + param * param));
            case "selu" -> 3.0 / 4.0;
            default -> throw new IllegalArgumentException("Init.gain: unknown nonlinearity '" + nonlinearity + "'");
        };
    }

    public static double gain(String nonlinearity) {
        return gain(nonlinearity, 0.01);
    }

    /** fan_in of a weight shaped [out, in, k...]. */
    public static long fanIn(long... dims) {
        requireMatrix("fanIn", dims);
        return dims[1] * receptive(dims);
    }

    /** fan_out of a weight shaped [out, in, k...]. */
    public static long fanOut(long... dims) {
        requireMatrix("fanOut", dims);
        return dims[0] * receptive(dims);
    }

    private static long receptive(long[] dims) {
        long r = 1;
        for (int i = 2; i < dims.length; i++) {
            r *= dims[i];
        }
        return r;
    }

    private static void requireMatrix(String what, long[] dims) {
        if (dims.length < 2) {
            throw new IllegalArgumentException("Init." + what + ": fans need a tensor of rank >= 2, got "
                    + Arrays.toString(dims));
        }
    }

    private static long fan(Tensor t, Fan mode) {
        return mode == Fan.FAN_IN ? fanIn(t.dims()) : fanOut(t.dims());
    }

    // ------------------------------------------------------------------ fills
    /** U(low, high). */
    public static Tensor uniform(Tensor t, double low, double high, Generator g) {
        try (Tensor s = g.uniform(low, high, t.dtype(), t.device(), t.dims())) {
            t.copyFrom(s);
        }
        return t;
    }

    /** N(mean, std^2). */
    public static Tensor normal(Tensor t, double mean, double std, Generator g) {
        try (Tensor s = g.normal(mean, std, t.dtype(), t.device(), t.dims())) {
            t.copyFrom(s);
        }
        return t;
    }

    public static Tensor zeros(Tensor t) {
        t.fillWith(0);
        return t;
    }

    public static Tensor ones(Tensor t) {
        t.fillWith(1);
        return t;
    }

    public static Tensor constant(Tensor t, double value) {
        t.fillWith(value);
        return t;
    }

    /** He/Kaiming uniform: U(-b, b), b = gain * sqrt(3 / fan). */
    public static Tensor kaimingUniform(Tensor t, Fan mode, double gain, Generator g) {
        double bound = gain * Math.sqrt(3.0 / Math.max(1, fan(t, mode)));
        return uniform(t, -bound, bound, g);
    }

    /** He/Kaiming normal: N(0, std^2), std = gain / sqrt(fan). */
    public static Tensor kaimingNormal(Tensor t, Fan mode, double gain, Generator g) {
        double std = gain / Math.sqrt(Math.max(1, fan(t, mode)));
        return normal(t, 0, std, g);
    }

    /** Glorot/Xavier uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)). */
    public static Tensor xavierUniform(Tensor t, double gain, Generator g) {
        double bound = gain * Math.sqrt(6.0 / Math.max(1, fanIn(t.dims()) + fanOut(t.dims())));
        return uniform(t, -bound, bound, g);
    }

    /** Glorot/Xavier normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)). */
    public static Tensor xavierNormal(Tensor t, double gain, Generator g) {
        double std = gain * Math.sqrt(2.0 / Math.max(1, fanIn(t.dims()) + fanOut(t.dims())));
        return normal(t, 0, std, g);
    }

    /**
     * N(mean, std^2) restricted to [a, b] by rejection: values outside are redrawn from fresh
     * normal samples of the generator (needs the interval to hold a reasonable mass of the
     * distribution: at least 1e-3, else an error).
     */
    public static Tensor truncatedNormal(Tensor t, double mean, double std, double a, double b, Generator g) {
        if (!(a < b) || !(std > 0)) {
            throw new IllegalArgumentException("Init.truncatedNormal: need a < b and std > 0, got a=" + a + ", b=" + b
                    + ", std=" + std);
        }
        int n = Math.toIntExact(t.numel());
        double[] out = new double[n];
        int[] todo = new int[n];
        for (int i = 0; i < n; i++) {
            todo[i] = i;
        }
        int pending = n;
        int rounds = 0;
        while (pending > 0) {
            if (++rounds > 10_000) {
                throw new IllegalArgumentException("Init.truncatedNormal: [" + a + ", " + b + "] holds too little of N("
                        + mean + ", " + std + "^2)");
            }
            int draw = Math.max(pending, 64);
            double[] s;
            try (Tensor st = g.normal(mean, std, DType.FLOAT64, Device.CPU, draw)) {
                s = st.toDoubleArray();
            }
            int next = 0;
            int[] left = new int[pending];
            int si = 0;
            for (int k = 0; k < pending; k++) {
                while (si < s.length && !(s[si] >= a && s[si] <= b)) {
                    si++;
                }
                if (si < s.length) {
                    out[todo[k]] = s[si++];
                } else {
                    left[next++] = todo[k];
                }
            }
            todo = left;
            pending = next;
        }
        try (Tensor host = Tensor.of(out, t.dims())) {
            t.copyFrom(host);
        }
        return t;
    }

    // ------------------------------------------------------------------ PyTorch's layer defaults
    /**
     * PyTorch's default for Linear and Conv weights: kaiming_uniform(a = sqrt(5)), which is
     * U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
     */
    public static Tensor torchDefaultWeight(Tensor t, Generator g) {
        return kaimingUniform(t, Fan.FAN_IN, gain("leaky_relu", Math.sqrt(5)), g);
    }

    /** PyTorch's default bias of Linear and Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
    public static Tensor torchDefaultBias(Tensor bias, long fanIn, Generator g) {
        double bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
        return uniform(bias, -bound, bound, g);
    }
}
