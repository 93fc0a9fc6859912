package dev.cortado.nn.functional;

import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.Tensor;

/**
 * Stateless forms of the layers that are compositions of ops (the modules call these; gradient
 * checks call them with float64 inputs). Every intermediate is closed; the result is new.
 */
public final class F {
    private F() {
    }

    /**
     * {@code x @ weight^T + bias}: x [..., in], weight [out, in], bias [out] or null. The weight
     * is transposed as a view (BLAS reads it transposed, autograd flows through the view).
     */
    public static Tensor linear(Tensor x, Tensor weight, Tensor bias) {
        if (weight.rank() != 2) {
            throw new IllegalArgumentException("linear: weight must be [out, in], got " + weight.describe());
        }
        if (x.rank() < 1 || x.size(-1) != weight.size(1)) {
            throw new IllegalArgumentException("linear: x " + x.describe() + " must end in in_features = "
                    + weight.size(1) + " (weight " + weight.describe() + ")");
        }
        try (Tensor wt = weight.transpose(0, 1)) {
            if (bias == null) {
                return LinearAlgebra.matmul(x, wt);
            }
            try (Tensor y = LinearAlgebra.matmul(x, wt)) {
                return Elementwise.add(y, bias);
            }
        }
    }

    /**
     * Group normalization: x [N, C, spatial...] in G groups of C/G channels, each normalized
     * over its channels and positions ((x - mean) / sqrt(var + eps), biased variance), then
     * scaled per channel by weight [C] and shifted by bias [C] (either may be null). Composed of
     * reshape, mean, sub, mul and rsqrt.
     */
    public static Tensor groupNorm(Tensor x, int groups, Tensor weight, Tensor bias, double eps) {
        if (x.rank() < 2) {
            throw new IllegalArgumentException("group_norm: x must be [N, C, ...], got " + x.describe());
        }
        long n = x.size(0);
        long c = x.size(1);
        if (groups <= 0 || c % groups != 0) {
            throw new IllegalArgumentException("group_norm: " + c + " channels of x " + x.describe()
                    + " do not split into " + groups + " groups");
        }
        long[] dims = x.dims();
        long[] affineDims = new long[dims.length - 1];
        affineDims[0] = c;
        for (int i = 1; i < affineDims.length; i++) {
            affineDims[i] = 1;
        }
        Tensor normed;
        try (Tensor xg = x.reshape(n, groups, -1);
             Tensor mean = Reductions.mean(xg, true, 2);
             Tensor centered = Elementwise.sub(xg, mean);
             Tensor sq = Elementwise.mul(centered, centered);
             Tensor var = Reductions.mean(sq, true, 2);
             Tensor ve = Elementwise.add(var, eps);
             Tensor rstd = Elementwise.rsqrt(ve);
             Tensor yg = Elementwise.mul(centered, rstd)) {
            normed = yg.reshape(dims);
        }
        if (weight != null) {
            try (Tensor y = normed; Tensor w = weight.reshape(affineDims)) {
                normed = Elementwise.mul(y, w);
            }
        }
        if (bias != null) {
            try (Tensor y = normed; Tensor b = bias.reshape(affineDims)) {
                normed = Elementwise.add(y, b);
            }
        }
        return normed;
    }

    /**
     * Inverted dropout: each element is zeroed with probability p (a Philox Bernoulli mask from
     * {@code generator}) and the others scaled by 1/(1-p); the identity when not training or p = 0.
     */
    public static Tensor dropout(Tensor x, double p, boolean training, Generator generator) {
        if (!(p >= 0 && p <= 1)) {
            throw new IllegalArgumentException("dropout: p must be in [0, 1], got " + p);
        }
        if (!training || p == 0) {
            return identity(x);
        }
        if (p == 1) {
            return Elementwise.mul(x, 0.0);
        }
        try (Tensor keep = generator.bernoulli(1 - p, x.dtype(), x.device(), x.dims());
             Tensor scaled = Elementwise.mul(keep, 1.0 / (1 - p))) {
            return Elementwise.mul(x, scaled);
        }
    }

    /** A new view of x (recorded as a view when x takes gradients), so that the caller may close it. */
    public static Tensor identity(Tensor x) {
        return x.reshape(x.dims());
    }
}
