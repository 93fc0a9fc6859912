package dev.cortado.ops;

import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;

/**
 * A counter-based random generator (Philox4x32-10, {@code native/include/cortado/random.h}):
 * the numbers depend only on (seed, offset, element index), so the same seed gives the same
 * tensor on CPU and CUDA (uniform and Bernoulli bit for bit, normal to a few ulp), whatever the
 * thread count. Each call consumes one offset, so successive calls differ.
 */
public final class Generator {
    /** PyTorch's default seed, so a fresh process is reproducible without seeding. */
    public static final long DEFAULT_SEED = 67280421310721L;

    private static final Generator GLOBAL = new Generator(Long.getLong("cortado.seed", DEFAULT_SEED));

    /** What one random op needs. */
    public record RandomAttrs(Shape shape, DType dtype, long seed, long offset, double a, double b) {
    }

    private static final int UNIFORM = NativeCodes.Random.UNIFORM, NORMAL = NativeCodes.Random.NORMAL,
            BERNOULLI = NativeCodes.Random.BERNOULLI;

    public static final Op<RandomAttrs> UNIFORM_OP = randomOp("random_uniform", UNIFORM);
    public static final Op<RandomAttrs> NORMAL_OP = randomOp("random_normal", NORMAL);
    public static final Op<RandomAttrs> BERNOULLI_OP = randomOp("random_bernoulli", BERNOULLI);

    private final long seed;
    private long offset;

    private Generator(long seed) {
        this.seed = seed;
    }

    public static Generator seeded(long seed) {
        return new Generator(seed);
    }

    /** The process-wide generator (seed from {@code -Dcortado.seed}, else {@link #DEFAULT_SEED}). */
    public static Generator global() {
        return GLOBAL;
    }

    public long seed() {
        return seed;
    }

    /** Offsets consumed so far; a generator restored to (seed, offset) continues identically. */
    public synchronized long offset() {
        return offset;
    }

    public synchronized void setOffset(long offset) {
        this.offset = offset;
    }

    private synchronized long nextOffset() {
        return offset++;
    }

    /** Uniform in [low, high). */
    public Tensor uniform(double low, double high, DType dtype, Device device, long... dims) {
        if (!(low <= high)) {
            throw UNIFORM_OP.error("low " + low + " must not exceed high " + high);
        }
        return UNIFORM_OP.callOn(device, new RandomAttrs(Shape.of(dims), dtype, seed, nextOffset(), low, high));
    }

    /** Normal with the given mean and standard deviation. */
    public Tensor normal(double mean, double std, DType dtype, Device device, long... dims) {
        if (!(std >= 0)) {
            throw NORMAL_OP.error("std must be non-negative, got " + std);
        }
        return NORMAL_OP.callOn(device, new RandomAttrs(Shape.of(dims), dtype, seed, nextOffset(), mean, std));
    }

    /** 1 with probability p, else 0. */
    public Tensor bernoulli(double p, DType dtype, Device device, long... dims) {
        if (!(p >= 0 && p <= 1)) {
            throw BERNOULLI_OP.error("p must be in [0, 1], got " + p);
        }
        return BERNOULLI_OP.callOn(device, new RandomAttrs(Shape.of(dims), dtype, seed, nextOffset(), p, 0));
    }

    /** Uniform [0, 1) float32 from the global generator. */
    public static Tensor rand(Device device, long... dims) {
        return GLOBAL.uniform(0, 1, DType.FLOAT32, device, dims);
    }

    /** Standard normal float32 from the global generator. */
    public static Tensor randn(Device device, long... dims) {
        return GLOBAL.normal(0, 1, DType.FLOAT32, device, dims);
    }

    private static Op<RandomAttrs> randomOp(String name, int distribution) {
        return Op.<RandomAttrs>declare(name)
                .shape((op, a, in) -> {
                    DType t = a.dtype();
                    boolean ok = t.isFloatingPoint() || (distribution == BERNOULLI && !t.isPacked());
                    if (!ok) {
                        throw op.error("cannot produce " + t + (distribution == BERNOULLI ? "" : "; use a floating dtype"));
                    }
                    return Op.one(a.shape(), t);
                })
                .kernels((a, in, out) -> {
                    if (out[0].numel() > 0) {
                        Launch l = Launch.on(out[0]);
                        int status = l.kernels.random(distribution, a.dtype().code(), out[0].numel(),
                                out[0].dataAddress(), a.seed(), a.offset(), a.a(), a.b(), l.stream);
                        if (status != 0) {
                            throw l.failure(status, name + "(" + a.dtype() + a.shape() + ")");
                        }
                    }
                })
                .register();
    }
}
