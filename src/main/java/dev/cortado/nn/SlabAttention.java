package dev.cortado.nn;

import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.LinearAttention;
import dev.cortado.tensor.Tensor;

/**
 * SLAB's simplified linear attention block over tokens x [B, T, C] (Guo et al., ICML 2024):
 * projections {@code wq, wk, wv} [C, C] ({@link Linear}), the ReLU-kernel linear attention of
 * {@link LinearAttention#slab} per head (cost 4 B T C D FLOPs with D = C / heads, linear in T),
 * plus a depthwise convolution {@code dwc} (k x k, groups = C, padding k / 2) on V laid out as the
 * {@code side x side} patch grid, which restores the local rank that the low-rank linear
 * attention lacks; the sum goes through {@code wo}. Prefix tokens (class and distillation tokens,
 * the first {@code prefixTokens} of the sequence) take no convolution term.
 * {@code y = wo(attn(q, k, v) + dwc(v))}.
 */
public class SlabAttention extends Module {
    /**
     * Configuration.
     *
     * @param dim the token width C
     * @param heads attention heads (divides C)
     * @param kernel the depthwise convolution's side (odd; SLAB uses 5)
     * @param gridSide the side of the patch grid: the sequence is {@code prefixTokens + gridSide^2} tokens
     * @param prefixTokens tokens before the grid (class token ...), without the convolution term
     * @param eps the normalizer's eps of the linear attention
     * @param params parameter dtype, device and generator
     */
    public record Options(long dim, long heads, int kernel, int gridSide, int prefixTokens, double eps,
                          ParamOptions params) {
        /** Checks the configuration. */
        public Options {
            if (dim < 1 || heads < 1 || dim % heads != 0) {
                throw new IllegalArgumentException("SlabAttention: dim " + dim + " must be a positive multiple of heads "
                        + heads);
            }
            if (kernel < 1 || kernel % 2 == 0) {
                throw new IllegalArgumentException("SlabAttention: the convolution kernel must be odd and positive, got "
                        + kernel);
            }
            if (gridSide < 1 || prefixTokens < 0) {
                throw new IllegalArgumentException("SlabAttention: grid side " + gridSide + " must be positive and prefix "
                        + prefixTokens + " >= 0");
            }
            if (params == null) {
                params = ParamOptions.defaults();
            }
        }

        /** SLAB's defaults: kernel 5, eps 1e-6. */
        public Options(long dim, long heads, int gridSide, int prefixTokens, ParamOptions params) {
            this(dim, heads, 5, gridSide, prefixTokens, LinearAttention.DEFAULT_EPS, params);
        }
    }

    private final Options o;

    /** The block's parameters, initialised as {@link MultiheadAttention}'s projections and a default convolution. */
    public SlabAttention(Options o) {
        this.o = o;
        ParamOptions p = o.params();
        for (String name : new String[] {"wq", "wk", "wv", "wo"}) {
            registerModule(name, new Linear(o.dim(), o.dim(), true, p));
        }
        ConvOptions conv = ConvOptions.builder().padding(o.kernel() / 2, o.kernel() / 2).groups(o.dim()).build();
        registerModule("dwc", new Conv2d(o.dim(), o.dim(), new long[] {o.kernel(), o.kernel()}, conv, true, p));
    }

    /** The configuration. */
    public Options options() {
        return o;
    }

    @Override
    public Tensor forward(Tensor x) {
        long grid = (long) o.gridSide() * o.gridSide();
        if (x.rank() != 3 || x.size(2) != o.dim() || x.size(1) != o.prefixTokens() + grid) {
            throw new IllegalArgumentException("SlabAttention: x must be [B, " + (o.prefixTokens() + grid) + ", " + o.dim()
                    + "] (" + o.prefixTokens() + " prefix tokens + a " + o.gridSide() + "x" + o.gridSide()
                    + " grid), got " + x.describe());
        }
        long b = x.size(0);
        long t = x.size(1);
        long h = o.heads();
        long d = o.dim() / h;
        try (Tensor qp = child("wq").forward(x); Tensor kp = child("wk").forward(x); Tensor vp = child("wv").forward(x);
             Tensor q4 = qp.view(b, t, h, d); Tensor k4 = kp.view(b, t, h, d); Tensor v4 = vp.view(b, t, h, d);
             Tensor q = q4.permute(0, 2, 1, 3); Tensor k = k4.permute(0, 2, 1, 3); Tensor v = v4.permute(0, 2, 1, 3);
             Tensor attn = LinearAttention.slab(q, k, v, o.eps()); Tensor bthd = attn.permute(0, 2, 1, 3);
             Tensor merged = bthd.reshape(b, t, o.dim()); Tensor local = localTerm(vp, b);
             Tensor sum = Elementwise.add(merged, local)) {
            return child("wo").forward(sum);
        }
    }

    /** dwc(v) on the grid tokens as [B, T, C], zeros for the prefix tokens. */
    private Tensor localTerm(Tensor v, long b) {
        int side = o.gridSide();
        long grid = (long) side * side;
        long c = o.dim();
        try (Tensor patches = v.narrow(1, o.prefixTokens(), grid); Tensor cp = patches.transpose(1, 2);
             Tensor dense = cp.contiguous(); Tensor img = dense.reshape(b, c, side, side);
             Tensor conv = child("dwc").forward(img); Tensor flat = conv.reshape(b, c, grid);
             Tensor tokens = flat.transpose(1, 2)) {
            if (o.prefixTokens() == 0) {
                return tokens.contiguous();
            }
            try (Tensor zeros = Tensor.zeros(v.dtype(), v.device(), b, o.prefixTokens(), c)) {
                return Indexing.concat(1, zeros, tokens);
            }
        }
    }

    @Override
    protected String extraRepr() {
        return "dim=" + o.dim() + ", heads=" + o.heads() + ", dwc " + o.kernel() + "x" + o.kernel() + ", grid "
                + o.gridSide() + "x" + o.gridSide() + (o.prefixTokens() > 0 ? " + " + o.prefixTokens() + " prefix" : "");
    }
}
