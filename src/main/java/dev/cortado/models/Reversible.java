package dev.cortado.models;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.Module;
import dev.cortado.nn.ModuleList;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A stack of reversible residual couplings (Gomez et al., 2017, RevNet; Kitaev et al., 2020,
 * Reformer): the input is split in two halves x1, x2 along {@code splitDim}, and each coupling i
 * computes {@code y1 = x1 + F_i(x2)}, {@code y2 = x2 + G_i(y1)}; the output is [y1, y2] joined
 * again. Because {@code x2 = y2 - G_i(y1)} and {@code x1 = y1 - F_i(x2)}, every coupling's input
 * is recomputed from its output, so the forward keeps no activation for the backward but the
 * stack's output: memory independent of depth.
 *
 * <p>Forward: the couplings run under {@link Autograd#noGrad()} and the stack is recorded as one
 * node ({@link Autograd#recordFunction}) that saves its output. Backward, from the last coupling:
 * with recording on, {@code G_i(y1)} is recomputed on a leaf copy of y1 and its backward run seeded
 * with dy2 (G's parameters get their gradients, y1 its share), {@code x2 = y2 - G_i(y1)},
 * {@code dx1 = dy1 + (dG/dy1)^T dy2}; then {@code F_i(x2)} likewise seeded with dx1, giving
 * {@code x1 = y1 - F_i(x2)} and {@code dx2 = dy2 + (dF/dx2)^T dx1}. Cost: one more forward of F and
 * G per coupling (about 1.33x the compute of an ordinary step); reconstruction is exact up to
 * rounding (float32: about 1e-6 relative per coupling). F and G must be deterministic (no dropout);
 * batch-norm running statistics are restored after the recomputation.
 */
public final class Reversible extends Module {
    private final int splitDim;
    private final ModuleList<Module> fs;
    private final ModuleList<Module> gs;

    /**
     * One coupling's two residual functions; each maps a half to a tensor of the same shape.
     *
     * @param f the function added to the first half, of the second
     * @param g the function added to the second half, of the new first half
     */
    public record Coupling(Module f, Module g) {
    }

    /** A reversible stack of {@code couplings}, splitting its input in halves along {@code splitDim}. */
    public Reversible(int splitDim, List<Coupling> couplings) {
        if (couplings.isEmpty()) {
            throw new IllegalArgumentException("Reversible: at least one coupling is needed");
        }
        this.splitDim = splitDim;
        ModuleList<Module> f = new ModuleList<>();
        ModuleList<Module> g = new ModuleList<>();
        for (Coupling c : couplings) {
            f.add(c.f());
            g.add(c.g());
        }
        fs = registerModule("f", f);
        gs = registerModule("g", g);
    }

    /** Number of couplings. */
    public int depth() {
        return fs.size();
    }

    private long half(Tensor x) {
        int d = splitDim < 0 ? splitDim + x.rank() : splitDim;
        if (d < 0 || d >= x.rank() || x.size(d) % 2 != 0) {
            throw new IllegalArgumentException("Reversible: input " + x.describe() + " cannot be split in two equal halves"
                    + " along dimension " + splitDim);
        }
        return x.size(d) / 2;
    }

    @Override
    public Tensor forward(Tensor x) {
        long h = half(x);
        Tensor out;
        try (var off = Autograd.noGrad()) {
            Tensor x1 = x.narrow(splitDim, 0, h);
            Tensor x2 = x.narrow(splitDim, h, h);
            try {
                for (int i = 0; i < fs.size(); i++) {
                    Tensor y1;
                    try (Tensor f = fs.get(i).apply(x2)) {
                        y1 = Elementwise.add(x1, f);
                    }
                    Tensor y2;
                    try (Tensor g = gs.get(i).apply(y1)) {
                        y2 = Elementwise.add(x2, g);
                    }
                    x1.close();
                    x2.close();
                    x1 = y1;
                    x2 = y2;
                }
                out = Indexing.concat(splitDim, x1, x2);
            } finally {
                x1.close();
                x2.close();
            }
        }
        List<Tensor> inputs = new ArrayList<>();
        inputs.add(x);
        inputs.addAll(parameters());
        int count = inputs.size();
        boolean inputNeedsGradient = x.requiresGrad();
        Autograd.recordFunction("reversible", inputs.toArray(new Tensor[0]), new Tensor[] {out}, new Tensor[] {out},
                (saved, g) -> backward(saved[0], g[0], h, count, inputNeedsGradient));
        return out;
    }

    /**
     * The same stack with every activation stored by autograd (the ordinary residual form, no
     * recomputation): what the reversible form is checked against.
     */
    public Tensor forwardStoringActivations(Tensor x) {
        long h = half(x);
        Tensor x1 = x.narrow(splitDim, 0, h);
        Tensor x2 = x.narrow(splitDim, h, h);
        try {
            for (int i = 0; i < fs.size(); i++) {
                Tensor y1;
                try (Tensor f = fs.get(i).apply(x2)) {
                    y1 = Elementwise.add(x1, f);
                }
                Tensor y2;
                try (Tensor g = gs.get(i).apply(y1)) {
                    y2 = Elementwise.add(x2, g);
                }
                x1.close();
                x2.close();
                x1 = y1;
                x2 = y2;
            }
            return Indexing.concat(splitDim, x1, x2);
        } finally {
            x1.close();
            x2.close();
        }
    }

    /** See the class comment; answers {input gradient or null, null for every parameter}. */
    private Tensor[] backward(Tensor out, Tensor gradOut, long h, int inputCount, boolean inputNeedsGradient) {
        Tensor[] result = new Tensor[inputCount];
        if (gradOut == null) {
            return result;
        }
        Tensor y1 = out.narrow(splitDim, 0, h);
        Tensor y2 = out.narrow(splitDim, h, h);
        Tensor dy1 = gradOut.narrow(splitDim, 0, h);
        Tensor dy2 = gradOut.narrow(splitDim, h, h);
        try {
            for (int i = fs.size() - 1; i >= 0; i--) {
                Tensor x2;
                Tensor dx1;
                try (Tensor leaf = y1.detach().requiresGrad(true)) {
                    Tensor gOut = recompute(gs.get(i), leaf, dy2);
                    try (gOut) {
                        x2 = Elementwise.sub(y2, gOut);
                    }
                    dx1 = plus(dy1, leaf.grad());
                }
                Tensor x1;
                Tensor dx2;
                try (Tensor leaf = x2.detach().requiresGrad(true)) {
                    Tensor fOut = recompute(fs.get(i), leaf, dx1);
                    try (fOut) {
                        x1 = Elementwise.sub(y1, fOut);
                    }
                    dx2 = plus(dy2, leaf.grad());
                }
                for (Tensor t : new Tensor[] {y1, y2, dy1, dy2}) {
                    t.close();
                }
                y1 = x1;
                y2 = x2;
                dy1 = dx1;
                dy2 = dx2;
            }
            if (inputNeedsGradient) {
                result[0] = Indexing.concat(splitDim, dy1, dy2);
            }
            return result;
        } finally {
            for (Tensor t : new Tensor[] {y1, y2, dy1, dy2}) {
                t.close();
            }
        }
    }

    /** {@code a + b}, or a copy of {@code a} when no gradient reached {@code b}. */
    private static Tensor plus(Tensor a, Tensor b) {
        return b == null ? a.copy() : Elementwise.add(a, b);
    }

    /**
     * {@code m(leaf)} recomputed with recording on, its backward run seeded with {@code seed}
     * (the parameters of m and the leaf get their gradients); answers the output's values, off the
     * tape. Batch-norm running statistics are put back as they were.
     */
    private static Tensor recompute(Module m, Tensor leaf, Tensor seed) {
        Map<String, Tensor> stats = DenseNet.snapshot(m);
        try (var on = Autograd.enableGrad(); Tensor y = m.apply(leaf)) {
            if (y.requiresGrad()) {
                y.backward(seed, false);
            }
            return y.detach();
        } finally {
            DenseNet.restore(m, stats);
        }
    }

    @Override
    protected String extraRepr() {
        return "couplings=" + fs.size() + ", split dim=" + splitDim;
    }
}
