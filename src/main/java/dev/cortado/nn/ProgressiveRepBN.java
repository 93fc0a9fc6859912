package dev.cortado.nn;

import dev.cortado.autograd.Autograd;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;

/**
 * SLAB's progressive re-parameterized BatchNorm (PRepBN, Guo et al., ICML 2024) over the last
 * dimension of tokens x [..., C]: the LayerNorm of a transformer is replaced by
 * {@code RepBN(x) = BN(x) + eta x} (BatchNorm over all tokens of the batch, a learned scalar
 * {@code eta} starting at 1), reached progressively during training:
 * {@code y = gamma LN(x) + (1 - gamma) RepBN(x)} with {@code gamma} decaying linearly from 1 to 0
 * over {@code decaySteps} calls of {@link #step()} (once per optimizer step; {@link #stepAll}
 * steps every PRepBN of a model). Once gamma is 0 the norm is RepBN alone, which in evaluation is
 * a per-channel affine map {@code x scale + shift} ({@link #inferenceAffine()}); {@link #foldInto}
 * folds it into the linear layers that read the norm's output, after which this module is the
 * identity: inference pays no normalization at all.
 *
 * <p>Children {@code ln} ({@link LayerNorm}) and {@code bn} ({@link BatchNorm1d}, eps 1e-5,
 * momentum 0.1); parameter {@code eta} [1]; buffer {@code gamma} [1], the current gamma, written by
 * {@link #step()} and {@link #setSteps}: a compiled training step reads it at every run, so one
 * compile follows the whole schedule. (Once gamma is 0 the LayerNorm branch is left out of what is
 * captured; a step compiled then does not bring it back if {@link #setSteps} raises gamma again.)
 * Cost in training: both norms (the LN part is skipped once gamma reaches 0).
 */
public class ProgressiveRepBN extends Module {
    private final long dim;
    private final long decaySteps;
    private long steps;
    private boolean folded;

    /**
     * A PRepBN over {@code dim} channels whose gamma reaches 0 after {@code decaySteps} steps (0:
     * RepBN from the start).
     */
    public ProgressiveRepBN(long dim, double lnEps, long decaySteps, ParamOptions p) {
        if (dim < 1 || decaySteps < 0) {
            throw new IllegalArgumentException("ProgressiveRepBN: dim " + dim + " must be positive and decaySteps "
                    + decaySteps + " >= 0");
        }
        this.dim = dim;
        this.decaySteps = decaySteps;
        registerModule("ln", new LayerNorm(new long[] {dim}, lnEps, true, true, p));
        registerModule("bn", new BatchNorm1d(dim, 1e-5, 0.1, true, true, p));
        registerParameter("eta", unscoped(() -> Tensor.full(1.0, p.dtype(), p.device(), 1)));
        registerBuffer("gamma", unscoped(() -> Tensor.full(gamma(), p.dtype(), p.device(), 1)));
    }

    /**
     * Writes {@link #gamma()} into the {@code gamma} buffer, the value the blend reads: a compiled
     * graph reads buffers by reference, so a step compiled once sees every later gamma (a host
     * number would be a constant of the graph).
     */
    private void refreshGamma() {
        try (Autograd.GradMode off = Autograd.noGrad()) {
            buffer("gamma").fillWith(gamma());
        }
    }

    /** The weight of the LayerNorm branch now: 1 - steps / decaySteps, at least 0. */
    public double gamma() {
        return decaySteps == 0 ? 0 : Math.max(0, 1 - (double) steps / decaySteps);
    }

    /** Advances the schedule by one optimizer step. */
    public void step() {
        steps++;
        refreshGamma();
    }

    /** Sets the number of steps taken (resuming a run). */
    public void setSteps(long n) {
        if (n < 0) {
            throw new IllegalArgumentException("ProgressiveRepBN: steps must be >= 0, got " + n);
        }
        steps = n;
        refreshGamma();
    }

    /** Calls {@link #step()} on every PRepBN in {@code model} (itself included). */
    public static void stepAll(Module model) {
        for (Module m : model.namedModules().values()) {
            if (m instanceof ProgressiveRepBN n) {
                n.step();
            }
        }
    }

    /** Whether this norm has been folded into the following linear layers (it is the identity). */
    public boolean isFolded() {
        return folded;
    }

    @Override
    public Tensor forward(Tensor x) {
        if (folded) {
            return F.identity(x);
        }
        if (x.size(-1) != dim) {
            throw new IllegalArgumentException("ProgressiveRepBN: x " + x.describe() + " must end in " + dim + " channels");
        }
        double g = gamma();
        try (Tensor rep = repBn(x)) {
            if (g == 0) {
                return F.identity(rep);
            }
            // rep + gamma (ln - rep), gamma read from the buffer (see refreshGamma)
            try (Tensor ln = child("ln").forward(x); Tensor d = Elementwise.sub(ln, rep);
                 Tensor blend = Elementwise.mul(d, buffer("gamma"))) {
                return Elementwise.add(rep, blend);
            }
        }
    }

    /** BN over every token ([..., C] as rows [M, C]) plus eta x. */
    private Tensor repBn(Tensor x) {
        long rows = x.numel() / dim;
        try (Tensor flat = x.reshape(rows, dim); Tensor bn = child("bn").forward(flat); Tensor back = bn.reshape(x.dims());
             Tensor scaled = Elementwise.mul(x, parameter("eta"))) {
            return Elementwise.add(back, scaled);
        }
    }

    /**
     * The evaluation-mode RepBN as {scale [C], shift [C]} (float64 arrays):
     * {@code RepBN(x) = x scale + shift} with {@code scale = w / sqrt(var + eps) + eta} and
     * {@code shift = b - mean w / sqrt(var + eps)} from the running statistics.
     *
     * @throws IllegalStateException while gamma is above 0 (the LayerNorm branch is not affine) or when folded
     */
    public double[][] inferenceAffine() {
        if (folded || gamma() > 0) {
            throw new IllegalStateException("ProgressiveRepBN: " + (folded ? "already folded" : "gamma = " + gamma()
                    + " > 0: the LayerNorm branch is still on; fold after the schedule has ended"));
        }
        BatchNormLayer bn = (BatchNormLayer) child("bn");
        double[] w = bn.parameter("weight").toDoubleArray();
        double[] b = bn.parameter("bias").toDoubleArray();
        double[] mean = bn.buffer("running_mean").toDoubleArray();
        double[] var = bn.buffer("running_var").toDoubleArray();
        double eta = parameter("eta").toDoubleArray()[0];
        double[] scale = new double[(int) dim];
        double[] shift = new double[(int) dim];
        for (int c = 0; c < dim; c++) {
            double s = w[c] / Math.sqrt(var[c] + bn.eps());
            scale[c] = s + eta;
            shift[c] = b[c] - mean[c] * s;
        }
        return new double[][] {scale, shift};
    }

    /**
     * Folds the evaluation-mode RepBN into the {@link Linear} children {@code names} of
     * {@code reader} (the layers that read this norm's output): each becomes
     * {@code y = (W diag(scale)) x + (W shift + b)}, replaced in {@code reader} by a new Linear
     * (the old one is closed); this norm then forwards its input unchanged.
     */
    public void foldInto(Module reader, String... names) {
        double[][] affine = inferenceAffine();
        for (String name : names) {
            Linear old = (Linear) reader.child(name);
            reader.replaceChild(name, fold(old, affine[0], affine[1]));
            old.close();
        }
        folded = true;
    }

    /** A Linear computing {@code old(x scale + shift)}. */
    static Linear fold(Linear old, double[] scale, double[] shift) {
        int out = (int) old.outFeatures();
        int in = (int) old.inFeatures();
        double[] w = old.weight().toDoubleArray();
        double[] b = old.bias() == null ? new double[out] : old.bias().toDoubleArray();
        double[] w2 = new double[w.length];
        double[] b2 = new double[out];
        for (int o = 0; o < out; o++) {
            double acc = b[o];
            for (int i = 0; i < in; i++) {
                w2[o * in + i] = w[o * in + i] * scale[i];
                acc += w[o * in + i] * shift[i];
            }
            b2[o] = acc;
        }
        DType t = old.weight().dtype();
        ParamOptions p = ParamOptions.defaults().withDType(t).withDevice(old.weight().device());
        Linear folded = new Linear(in, out, true, p);
        try (Tensor wt = Tensor.of(w2, out, in); Tensor bt = Tensor.of(b2, out);
             Autograd.GradMode off = Autograd.noGrad()) {
            folded.weight().copyFrom(wt);
            folded.bias().copyFrom(bt);
        }
        return folded;
    }

    @Override
    protected String extraRepr() {
        return "dim=" + dim + ", gamma=" + gamma() + ", decay steps=" + decaySteps + (folded ? ", folded" : "");
    }
}
