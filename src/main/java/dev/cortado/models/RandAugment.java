package dev.cortado.models;

import dev.cortado.io.Dataset;
import dev.cortado.io.Example;
import dev.cortado.tensor.Tensor;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;

/**
 * RandAugment (Cubuk et al., 2020) as a dataset view: each {@link #get} reads the source example,
 * applies {@code n} operations drawn uniformly from {@link #ops} at one global magnitude
 * {@code m} (of 30, torchvision's scale) with a random sign where it has one, and returns the
 * augmented image. The work happens in {@code get}, so under a {@link dev.cortado.io.DataLoader}
 * it runs on the loader's prefetch thread, overlapping the training step. Images are float
 * [C, H, W] in [0, {@code maxValue}]; geometric operations use nearest-neighbour sampling about
 * the image centre and fill uncovered pixels with {@code fill}.
 *
 * <p>Magnitudes at m: rotate {@code 30 m/30} degrees, shear {@code 0.3 m/30}, translate
 * {@code (150/331) m/30} of the side, brightness and contrast factors {@code 1 +- 0.9 m/30},
 * solarize threshold {@code maxValue (1 - m/30)}, posterize to {@code 8 - 4 m/30} bits (rounded
 * down); auto-contrast and identity take none. Randomness: a {@link SplittableRandom} per call,
 * from the seed, the index and a call counter, so a single loader thread gives a reproducible
 * stream.
 */
public final class RandAugment implements Dataset<Example> {
    /** The operations. */
    public enum Op {
        IDENTITY, ROTATE, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y, BRIGHTNESS, CONTRAST, SOLARIZE, POSTERIZE,
        AUTO_CONTRAST
    }

    private final Dataset<Example> source;
    private final int n;
    private final double magnitude;
    private final List<Op> ops;
    private final float maxValue;
    private final float fill;
    private final long seed;
    private final AtomicLong calls = new AtomicLong();

    /** A builder over {@code source} (not owned). */
    public static Builder builder(Dataset<Example> source) {
        return new Builder(source);
    }

    /** Options of {@link RandAugment}. */
    public static final class Builder {
        private final Dataset<Example> source;
        private int n = 2;
        private double magnitude = 9;
        private List<Op> ops = List.of(Op.values());
        private float maxValue = 1f;
        private float fill;
        private long seed = 1;

        private Builder(Dataset<Example> source) {
            this.source = source;
        }

        /** Operations per image (2 in the paper's ImageNet setting). */
        public Builder n(int count) {
            if (count < 0) {
                throw new IllegalArgumentException("RandAugment: n must be >= 0, got " + count);
            }
            n = count;
            return this;
        }

        /** The global magnitude, 0 to 30 (9 is usual). */
        public Builder magnitude(double m) {
            if (!(m >= 0 && m <= 30)) {
                throw new IllegalArgumentException("RandAugment: magnitude must be in [0, 30], got " + m);
            }
            magnitude = m;
            return this;
        }

        /** The operations to draw from (all by default). */
        public Builder ops(List<Op> list) {
            if (list.isEmpty()) {
                throw new IllegalArgumentException("RandAugment: at least one operation is needed");
            }
            ops = List.copyOf(list);
            return this;
        }

        /** The largest pixel value (1 for [0, 1] images, 255 for bytes as floats). */
        public Builder maxValue(float v) {
            if (!(v > 0)) {
                throw new IllegalArgumentException("RandAugment: maxValue must be positive, got " + v);
            }
            maxValue = v;
            return this;
        }

        /** The value of pixels a geometric operation uncovers (0 by default). */
        public Builder fill(float v) {
            fill = v;
            return this;
        }

        /** The seed of the operation and sign draws. */
        public Builder seed(long s) {
            seed = s;
            return this;
        }

        /** The augmented view. */
        public RandAugment build() {
            return new RandAugment(this);
        }
    }

    private RandAugment(Builder b) {
        source = b.source;
        n = b.n;
        magnitude = b.magnitude;
        ops = b.ops;
        maxValue = b.maxValue;
        fill = b.fill;
        seed = b.seed;
    }

    @Override
    public int size() {
        return source.size();
    }

    @Override
    public Example get(int index) {
        Example e = source.get(index);
        Tensor in = e.input();
        if (in.rank() != 3 || !in.dtype().isFloatingPoint()) {
            e.close();
            throw new IllegalArgumentException("RandAugment: expected a float image [C, H, W], got " + in.describe());
        }
        int c = (int) in.size(0);
        int h = (int) in.size(1);
        int w = (int) in.size(2);
        float[] img = in.toFloatArray();
        SplittableRandom r = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + index * 0xBF58476D1CE4E5B9L
                + calls.getAndIncrement());
        for (int k = 0; k < n; k++) {
            Op op = ops.get(r.nextInt(ops.size()));
            double sign = r.nextBoolean() ? 1 : -1;
            img = transform(op, img, c, h, w, sign * value(op, magnitude, w, h), maxValue, fill);
        }
        Tensor out = Tensor.of(img, in.device(), c, h, w);
        if (out.dtype() != in.dtype()) {
            try (Tensor f = out) {
                out = f.to(in.dtype());
            }
        }
        in.close();
        return new Example(out, e.target());
    }

    /** The operation's parameter at magnitude m (unsigned): degrees, shear, pixels, factor offset, threshold or bits. */
    static double value(Op op, double m, int w, int h) {
        double f = m / 30;
        return switch (op) {
            case ROTATE -> 30 * f;
            case SHEAR_X, SHEAR_Y -> 0.3 * f;
            case TRANSLATE_X -> 150.0 / 331 * w * f;
            case TRANSLATE_Y -> 150.0 / 331 * h * f;
            case BRIGHTNESS, CONTRAST -> 0.9 * f;
            case SOLARIZE -> 1 - f;
            case POSTERIZE -> 8 - Math.floor(4 * f);
            case IDENTITY, AUTO_CONTRAST -> 0;
        };
    }

    /**
     * One operation on image {@code img} [c, h, w] with parameter {@code v} (signed where it has a
     * sign): rotation by v degrees (counter-clockwise on screen) and shears/translations map each
     * output pixel centre back to the nearest source pixel; brightness scales by 1 + v; contrast
     * blends with the image's mean by 1 + v; solarize inverts values at or above {@code |v| * max};
     * posterize keeps the top |v| bits of the 8-bit value; auto-contrast stretches each channel to
     * [0, max]. Results are clamped to [0, max]. Returns a new array.
     */
    public static float[] transform(Op op, float[] img, int c, int h, int w, double v, float max, float fill) {
        float[] out = new float[img.length];
        double cx = w / 2.0;
        double cy = h / 2.0;
        switch (op) {
            case IDENTITY -> System.arraycopy(img, 0, out, 0, img.length);
            case ROTATE, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y -> {
                // inverse map: source = A^-1 (p - centre) + centre, p the output pixel centre
                double a;
                double b;
                double d;
                double e;
                double tx = 0;
                double ty = 0;
                switch (op) {
                    case ROTATE -> {
                        double t = Math.toRadians(v);
                        a = Math.cos(t);
                        b = -Math.sin(t);
                        d = Math.sin(t);
                        e = Math.cos(t);
                    }
                    case SHEAR_X -> {
                        a = 1;
                        b = -v;
                        d = 0;
                        e = 1;
                    }
                    case SHEAR_Y -> {
                        a = 1;
                        b = 0;
                        d = -v;
                        e = 1;
                    }
                    default -> {
                        a = 1;
                        b = 0;
                        d = 0;
                        e = 1;
                        tx = op == Op.TRANSLATE_X ? -v : 0;
                        ty = op == Op.TRANSLATE_Y ? -v : 0;
                    }
                }
                for (int y = 0; y < h; y++) {
                    for (int x = 0; x < w; x++) {
                        double px = x + 0.5 - cx;
                        double py = y + 0.5 - cy;
                        double sx = a * px + b * py + cx + tx;
                        double sy = d * px + e * py + cy + ty;
                        int ix = (int) Math.floor(sx);
                        int iy = (int) Math.floor(sy);
                        boolean inside = ix >= 0 && ix < w && iy >= 0 && iy < h;
                        for (int ch = 0; ch < c; ch++) {
                            out[(ch * h + y) * w + x] = inside ? img[(ch * h + iy) * w + ix] : fill;
                        }
                    }
                }
            }
            case BRIGHTNESS -> {
                for (int i = 0; i < img.length; i++) {
                    out[i] = clamp((float) (img[i] * (1 + v)), max);
                }
            }
            case CONTRAST -> {
                double mean = 0;
                for (float p : img) {
                    mean += p;
                }
                mean /= img.length;
                for (int i = 0; i < img.length; i++) {
                    out[i] = clamp((float) (mean + (1 + v) * (img[i] - mean)), max);
                }
            }
            case SOLARIZE -> {
                double threshold = Math.abs(v) * max;
                for (int i = 0; i < img.length; i++) {
                    out[i] = img[i] >= threshold ? max - img[i] : img[i];
                }
            }
            case POSTERIZE -> {
                int bits = (int) Math.abs(v);
                int mask = 0xFF & ~((1 << (8 - bits)) - 1);
                for (int i = 0; i < img.length; i++) {
                    int q = (int) Math.floor(clamp(img[i], max) / max * 255 + 0.5);
                    out[i] = (q & mask) * max / 255f;
                }
            }
            case AUTO_CONTRAST -> {
                int plane = h * w;
                for (int ch = 0; ch < c; ch++) {
                    float lo = Float.POSITIVE_INFINITY;
                    float hi = Float.NEGATIVE_INFINITY;
                    for (int i = ch * plane; i < (ch + 1) * plane; i++) {
                        lo = Math.min(lo, img[i]);
                        hi = Math.max(hi, img[i]);
                    }
                    for (int i = ch * plane; i < (ch + 1) * plane; i++) {
                        out[i] = hi > lo ? (img[i] - lo) / (hi - lo) * max : img[i];
                    }
                }
            }
            default -> throw new IllegalStateException("RandAugment: unhandled " + op);
        }
        return out;
    }

    private static float clamp(float v, float max) {
        return Math.max(0f, Math.min(max, v));
    }
}
