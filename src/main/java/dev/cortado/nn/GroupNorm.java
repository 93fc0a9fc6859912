package dev.cortado.nn;

import dev.cortado.nn.functional.F;
import dev.cortado.tensor.Tensor;

/**
 * Group normalization of x [N, C, ...]: channels split in {@code groups} groups normalized over
 * their channels and positions, then per-channel weight (ones) and bias (zeros); eps 1e-5, as
 * PyTorch. Composed of reshape, mean and elementwise ops ({@link F#groupNorm}).
 */
public class GroupNorm extends Module {
    private final int groups;
    private final long channels;
    private final double eps;

    public GroupNorm(int groups, long channels) {
        this(groups, channels, 1e-5, true, ParamOptions.defaults());
    }

    public GroupNorm(int groups, long channels, double eps, boolean affine, ParamOptions o) {
        if (groups <= 0 || channels % groups != 0) {
            throw new IllegalArgumentException("GroupNorm: " + channels + " channels do not split into " + groups + " groups");
        }
        this.groups = groups;
        this.channels = channels;
        this.eps = eps;
        registerParameter("weight", affine ? unscoped(() -> Init.ones(Tensor.empty(o.dtype(), o.device(), channels))) : null);
        registerParameter("bias", affine ? unscoped(() -> Init.zeros(Tensor.empty(o.dtype(), o.device(), channels))) : null);
    }

    @Override
    public Tensor forward(Tensor x) {
        if (x.rank() < 2 || x.size(1) != channels) {
            throw new IllegalArgumentException("GroupNorm: x " + x.describe() + " must be [N, " + channels + ", ...]");
        }
        return F.groupNorm(x, groups, parameter("weight"), parameter("bias"), eps);
    }

    @Override
    protected String extraRepr() {
        return groups + ", " + channels + ", eps=" + eps;
    }
}
