package dev.cortado.distributed;

import dev.cortado.sparse.DeepGradientCompression;
import dev.cortado.sparse.DensitySchedule;
import dev.cortado.tensor.Tensor;
import java.util.List;
import java.util.Objects;

/**
 * How {@link DistributedDataParallel} compresses its gradient buckets (immutable; build with
 * {@link #topK()}): top-k sparsification with error feedback, the Deep Gradient Compression of the
 * sparse family ({@link DeepGradientCompression}). Each bucket, as soon as its gradients are ready
 * in the backward, keeps a residual {@code v} of what it has not sent yet, adds its gradient to it,
 * and sends the {@code k = ceil(density * n)} entries of largest magnitude as (index, value) pairs
 * that every process all-gathers; the rest stays in {@code v} for later steps (error feedback: no
 * gradient is lost, only delayed). Every process sums the gathered pairs in the same order and
 * divides by the world size, so the replicas stay identical.
 *
 * <p>Per bucket of n float32 gradients a process sends k values and k int32 indices, {@code 8k}
 * bytes, instead of the {@code 4n} of its all-reduce input: at density 0.001 that is 500x fewer
 * bytes. Receiving costs more, {@code 8k (p - 1)} bytes from the others, so it pays while
 * {@code 2 density p} is well under 1.
 *
 * <p>With {@link Builder#momentum} above 0 the momentum is accumulated in the compressor (DGC's
 * momentum correction and factor masking) and the optimizer must be plain SGD without momentum.
 * <pre>{@code
 * var ddp = DistributedDataParallel.builder(model, group)
 *         .compression(GradientCompression.topK()
 *                 .density(DensitySchedule.warmup(stepsPerEpoch, 0.25, 0.0625, 0.015625, 0.004, 0.001))
 *                 .momentum(0.9).build())
 *         .build();
 * }</pre>
 */
public final class GradientCompression {
    private final DensitySchedule density;
    private final double momentum;

    private GradientCompression(Builder b) {
        this.density = b.density;
        this.momentum = b.momentum;
    }

    /** Top-k sparsification with error feedback; density 0.001 and momentum 0 unless set. */
    public static Builder topK() {
        return new Builder();
    }

    /** The fraction of every bucket sent at each step. */
    public DensitySchedule density() {
        return density;
    }

    /** The momentum kept in the compressor (0: none, the optimizer may keep its own). */
    public double momentum() {
        return momentum;
    }

    /** A compressor for one flat gradient bucket (the bucket stands for its own parameter: it gives shape, dtype and device). */
    DeepGradientCompression compressorFor(Tensor bucket) {
        return DeepGradientCompression.builder().density(density).momentum(momentum).build(List.of(bucket));
    }

    @Override
    public String toString() {
        return "topK(density " + density + ", momentum " + momentum + ")";
    }

    /** Options of {@link GradientCompression}. */
    public static final class Builder {
        private DensitySchedule density = DensitySchedule.constant(0.001);
        private double momentum;

        private Builder() {
        }

        /** The same fraction in (0, 1] of every bucket at every step. */
        public Builder density(double fraction) {
            this.density = DensitySchedule.constant(fraction);
            return this;
        }

        /** A fraction per step, e.g. DGC's exponential warm-up {@link DensitySchedule#warmup}. */
        public Builder density(DensitySchedule schedule) {
            this.density = Objects.requireNonNull(schedule, "density");
            return this;
        }

        /**
         * Momentum accumulated in the compressor with momentum correction and factor masking
         * (in [0, 1); default 0). Above 0, use SGD without momentum as the optimizer.
         */
        public Builder momentum(double factor) {
            if (!(factor >= 0 && factor < 1)) {
                throw new IllegalArgumentException("GradientCompression: momentum must be in [0, 1), got " + factor);
            }
            this.momentum = factor;
            return this;
        }

        /** The immutable options. */
        public GradientCompression build() {
            return new GradientCompression(this);
        }
    }
}
