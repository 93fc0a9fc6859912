package dev.cortado.models;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Losses;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.tensor.Tensor;
import java.util.SplittableRandom;

/**
 * Mixup (Zhang et al., 2018) and CutMix (Yun et al., 2019) on a batch of images, with the label
 * mixing in the loss. Each call draws a permutation of the batch and a weight
 * {@code lambda ~ Beta(alpha, alpha)}; mixup blends every image with its partner,
 * {@code lambda * x + (1 - lambda) * x[perm]}; CutMix pastes a box of the partner image (area
 * {@code (1 - lambda) * H * W}, centre uniform, clipped at the borders) and sets lambda to the
 * share of the image that stayed. The loss is {@code lambda * CE(logits, y) + (1 - lambda) *
 * CE(logits, y[perm])} (with label smoothing if asked), equal to the cross entropy against the
 * mixed one-hot labels. With both enabled, each batch uses CutMix with probability
 * {@code cutmixShare}, as timm does. Randomness: a {@link SplittableRandom} from the seed.
 */
public final class Mixing {
    private final double mixupAlpha;
    private final double cutmixAlpha;
    private final double cutmixShare;
    private final double labelSmoothing;
    private final SplittableRandom random;

    /**
     * A batch after mixing; close it when the step is done.
     *
     * @param images         the mixed images [N, C, H, W]
     * @param targets        the images' own labels [N]
     * @param partnerTargets the labels of the images mixed in [N]
     * @param lambda         the weight of the own labels (CutMix: the share of the image kept)
     * @param labelSmoothing the label smoothing of {@link #loss}
     */
    public record Mixed(Tensor images, Tensor targets, Tensor partnerTargets, double lambda, double labelSmoothing)
            implements AutoCloseable {
        /** {@code lambda * CE(logits, targets) + (1 - lambda) * CE(logits, partnerTargets)}, batch-mean. */
        public Tensor loss(Tensor logits) {
            try (Tensor a = Losses.crossEntropy(logits, targets, Losses.Reduction.MEAN, Losses.IGNORE_INDEX, labelSmoothing);
                 Tensor b = Losses.crossEntropy(logits, partnerTargets, Losses.Reduction.MEAN, Losses.IGNORE_INDEX,
                         labelSmoothing);
                 Tensor wa = Elementwise.mul(a, lambda); Tensor wb = Elementwise.mul(b, 1 - lambda)) {
                return Elementwise.add(wa, wb);
            }
        }

        @Override
        public void close() {
            images.close();
            targets.close();
            partnerTargets.close();
        }
    }

    /** A builder; set at least one of the two alphas. */
    public static Builder builder() {
        return new Builder();
    }

    /** Options of {@link Mixing}. */
    public static final class Builder {
        private double mixupAlpha;
        private double cutmixAlpha;
        private double cutmixShare = 0.5;
        private double labelSmoothing;
        private long seed = 0x5DEECE66DL;

        private Builder() {
        }

        /** Mixup's Beta parameter (0.2 to 0.8 is usual; 0 = off). */
        public Builder mixup(double alpha) {
            mixupAlpha = nonNegative("mixup alpha", alpha);
            return this;
        }

        /** CutMix's Beta parameter (1.0 is usual; 0 = off). */
        public Builder cutmix(double alpha) {
            cutmixAlpha = nonNegative("cutmix alpha", alpha);
            return this;
        }

        /** With both on, the probability that a batch uses CutMix (0.5 by default). */
        public Builder cutmixShare(double p) {
            if (!(p >= 0 && p <= 1)) {
                throw new IllegalArgumentException("Mixing: cutmix share must be in [0, 1], got " + p);
            }
            cutmixShare = p;
            return this;
        }

        /** Label smoothing of the mixed loss (0.1 in DeiT's recipe). */
        public Builder labelSmoothing(double eps) {
            if (!(eps >= 0 && eps < 1)) {
                throw new IllegalArgumentException("Mixing: label smoothing must be in [0, 1), got " + eps);
            }
            labelSmoothing = eps;
            return this;
        }

        /** The seed of the permutations, weights and boxes. */
        public Builder seed(long s) {
            seed = s;
            return this;
        }

        /** The mixer. */
        public Mixing build() {
            if (mixupAlpha == 0 && cutmixAlpha == 0) {
                throw new IllegalArgumentException("Mixing: enable mixup or CutMix (a positive alpha)");
            }
            return new Mixing(this);
        }

        private static double nonNegative(String what, double v) {
            if (!(v >= 0) || Double.isInfinite(v)) {
                throw new IllegalArgumentException("Mixing: " + what + " must be finite and >= 0, got " + v);
            }
            return v;
        }
    }

    private Mixing(Builder b) {
        mixupAlpha = b.mixupAlpha;
        cutmixAlpha = b.cutmixAlpha;
        cutmixShare = b.cutmixShare;
        labelSmoothing = b.labelSmoothing;
        random = new SplittableRandom(b.seed);
    }

    /** Mixes images [N, C, H, W] with class indices [N] (int64): a new batch the caller closes. */
    public synchronized Mixed apply(Tensor images, Tensor labels) {
        if (images.rank() != 4 || labels.rank() != 1 || labels.size(0) != images.size(0)
                || labels.dtype().isFloatingPoint()) {
            throw new IllegalArgumentException("Mixing: expected images [N, C, H, W] and integer labels [N], got "
                    + images.describe() + " and " + labels.describe());
        }
        int n = (int) images.size(0);
        long[] perm = new long[n];
        for (int i = 0; i < n; i++) {
            perm[i] = i;
        }
        for (int i = n - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            long t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        boolean cut = cutmixAlpha > 0 && (mixupAlpha == 0 || random.nextDouble() < cutmixShare);
        double lambda = beta(cut ? cutmixAlpha : mixupAlpha);
        try (var off = Autograd.noGrad(); Tensor index = Tensor.of(perm, images.device(), n);
             Tensor partner = Indexing.gather(images, index, 0)) {
            Tensor mixed;
            if (cut) {
                long h = images.size(2);
                long w = images.size(3);
                long[] box = box(h, w, lambda);
                float[] m = new float[(int) (h * w)];
                float[] k = new float[m.length];
                java.util.Arrays.fill(k, 1f);
                for (long y = box[0]; y < box[1]; y++) {
                    for (long x = box[2]; x < box[3]; x++) {
                        m[(int) (y * w + x)] = 1f;
                        k[(int) (y * w + x)] = 0f;
                    }
                }
                lambda = 1 - (double) (box[1] - box[0]) * (box[3] - box[2]) / (h * w);
                try (Tensor mask = Tensor.of(m, images.device(), 1, 1, h, w);
                     Tensor keep = Tensor.of(k, images.device(), 1, 1, h, w); Tensor a = Elementwise.mul(images, keep);
                     Tensor b = Elementwise.mul(partner, mask)) {
                    mixed = Elementwise.add(a, b);
                }
            } else {
                try (Tensor a = Elementwise.mul(images, lambda); Tensor b = Elementwise.mul(partner, 1 - lambda)) {
                    mixed = Elementwise.add(a, b);
                }
            }
            Tensor partnerLabels = Indexing.gather(labels, index, 0);
            return new Mixed(mixed, labels.detach(), partnerLabels, lambda, labelSmoothing);
        }
    }

    /** CutMix's box [y0, y1, x0, x1): sides sqrt(1 - lambda) of the image's, centre uniform, clipped. */
    private long[] box(long h, long w, double lambda) {
        double cut = Math.sqrt(1 - lambda);
        long ch = (long) (h * cut);
        long cw = (long) (w * cut);
        long cy = random.nextLong(h);
        long cx = random.nextLong(w);
        return new long[] {clip(cy - ch / 2, h), clip(cy + ch / 2, h), clip(cx - cw / 2, w), clip(cx + cw / 2, w)};
    }

    private static long clip(long v, long size) {
        return Math.max(0, Math.min(size, v));
    }

    /** A Beta(alpha, alpha) draw from two Gamma(alpha) draws. */
    private double beta(double alpha) {
        double a = gamma(alpha);
        double b = gamma(alpha);
        return a + b == 0 ? 0.5 : a / (a + b);
    }

    /**
     * Gamma(shape, 1) by Marsaglia and Tsang's method (2000); for shape below 1 a draw at shape + 1
     * times U^(1/shape).
     */
    private double gamma(double shape) {
        if (shape < 1) {
            double u = random.nextDouble();
            return gamma(shape + 1) * Math.pow(u, 1 / shape);
        }
        double d = shape - 1.0 / 3;
        double c = 1 / Math.sqrt(9 * d);
        while (true) {
            double x;
            double v;
            do {
                x = gaussian();
                v = 1 + c * x;
            } while (v <= 0);
            v = v * v * v;
            double u = random.nextDouble();
            if (u < 1 - 0.0331 * x * x * x * x || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) {
                return d * v;
            }
        }
    }

    private double gaussian() {
        double u1 = random.nextDouble();
        double u2 = random.nextDouble();
        return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
    }
}
