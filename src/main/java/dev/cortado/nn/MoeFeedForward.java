package dev.cortado.nn;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.MixtureOfExperts;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Reductions;
import dev.cortado.ops.Sparse;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;

/**
 * A mixture-of-experts feed-forward layer (Switch Transformer / GShard style) over x [..., dim]:
 * a router (a linear map to one logit per expert, no bias) gives the softmax probabilities; each
 * token goes to its top-k experts; each expert is a feed-forward network of its own ({@link MLP.Kind}:
 * GELU {@code fc2(gelu(fc1 x))} or SwiGLU {@code down(silu(gate x) * up x)}, no biases), all experts
 * run as grouped GEMMs over an expert-major buffer; the outputs are summed back weighted by the
 * gates (the top-k probabilities, renormalised to sum to 1 when {@link Options#renormalize()}).
 *
 * <p>In training each expert keeps at most {@code ceil(capacityFactor * tokens * k / experts)}
 * choices, served first choices first and by token position; a dropped choice contributes nothing
 * (the block's residual carries the token). In evaluation nothing is dropped.
 *
 * <p>Every forward also computes the auxiliary loss, {@link #auxiliaryLoss()}:
 * {@code balanceWeight * E * sum_e f_e P_e} (f_e the fraction of choices that picked expert e before
 * dropping, P_e the mean router probability of e; 1 at a uniform routing) plus
 * {@code zLossWeight * mean_t logsumexp(logits_t)^2} (the router z-loss of ST-MoE). Parameters:
 * {@code router.weight} [E, dim] and, per kind, {@code w1} [E, dim, hidden] and {@code w2}
 * [E, hidden, dim] (GELU) or {@code gate}, {@code up} [E, dim, hidden] and {@code down}
 * [E, hidden, dim] (SwiGLU).
 */
public class MoeFeedForward extends Module {

    /**
     * The layer's configuration.
     *
     * @param experts the number of experts E (at least 1)
     * @param topK experts per token (1 to E)
     * @param hidden each expert's hidden width
     * @param capacityFactor capacity per expert in multiples of an even share (0: no dropping)
     * @param renormalize whether the kept top-k gates are divided by their sum
     * @param balanceWeight the weight of the load-balancing loss (0.01 in Switch)
     * @param zLossWeight the weight of the router z-loss (0 to leave it out)
     */
    public record Options(int experts, int topK, long hidden, double capacityFactor, boolean renormalize,
                          double balanceWeight, double zLossWeight) {
        /** Checks the configuration. */
        public Options {
            if (experts < 1 || topK < 1 || topK > experts) {
                throw new IllegalArgumentException("MoeFeedForward: need 1 <= topK <= experts, got experts = " + experts
                        + ", topK = " + topK);
            }
            if (hidden < 1) {
                throw new IllegalArgumentException("MoeFeedForward: hidden = " + hidden + " must be positive");
            }
            if (!(capacityFactor >= 0) || !(balanceWeight >= 0) || !(zLossWeight >= 0)) {
                throw new IllegalArgumentException("MoeFeedForward: capacityFactor, balanceWeight and zLossWeight must "
                        + "be >= 0, got " + capacityFactor + ", " + balanceWeight + ", " + zLossWeight);
            }
        }

        /** {@code experts} experts, top-{@code topK}, hidden width {@code hidden}; capacity factor 1.25, gates
         * renormalised, balance weight 0.01, z-loss weight 0.001. */
        public static Options of(int experts, int topK, long hidden) {
            return new Options(experts, topK, hidden, 1.25, true, 0.01, 0.001);
        }

        /** These options with another capacity factor. */
        public Options withCapacityFactor(double factor) {
            return new Options(experts, topK, hidden, factor, renormalize, balanceWeight, zLossWeight);
        }

        /** These options with other auxiliary-loss weights. */
        public Options withLossWeights(double balance, double zLoss) {
            return new Options(experts, topK, hidden, capacityFactor, renormalize, balance, zLoss);
        }
    }

    private final Options o;
    private final MLP.Kind kind;
    private final long dim;
    private Tensor aux;

    /** A layer on inputs of width {@code dim}, experts of the given kind, parameters per {@code p}. */
    public MoeFeedForward(long dim, Options o, MLP.Kind kind, ParamOptions p) {
        if (dim < 1) {
            throw new IllegalArgumentException("MoeFeedForward: dim = " + dim + " must be positive");
        }
        this.o = o;
        this.kind = kind;
        this.dim = dim;
        registerModule("router", new Linear(dim, o.experts(), false, p));
        if (kind == MLP.Kind.GELU) {
            expert("w1", dim, o.hidden(), p);
            expert("w2", o.hidden(), dim, p);
        } else {
            expert("gate", dim, o.hidden(), p);
            expert("up", dim, o.hidden(), p);
            expert("down", o.hidden(), dim, p);
        }
    }

    /** Expert weights [E, in, out], each expert U(-1/sqrt(in), 1/sqrt(in)) as a Linear of its own. */
    private void expert(String name, long in, long out, ParamOptions p) {
        double bound = 1 / Math.sqrt(in);
        registerParameter(name, unscoped(() -> Init.uniform(Tensor.empty(p.dtype(), p.device(), o.experts(), in, out),
                -bound, bound, p.generator())));
    }

    /** The configuration. */
    public Options options() {
        return o;
    }

    /**
     * The weighted auxiliary loss (a scalar that takes gradients to the router) of the last
     * forward, owned by this layer until the next forward or close; null before the first.
     */
    public Tensor auxiliaryLoss() {
        return aux;
    }

    @Override
    public Tensor forward(Tensor x) {
        if (x.rank() < 1 || x.size(x.rank() - 1) != dim) {
            throw new IllegalArgumentException("MoeFeedForward: x must be [..., " + dim + "], got " + x.describe());
        }
        int e = o.experts();
        int k = o.topK();
        try (Scope s = Scope.open()) {
            Tensor flat = x.reshape(-1, dim);
            long tokens = flat.size(0);
            Tensor logits = child("router").forward(flat);
            Tensor probs = Normalization.softmax(logits, -1);
            Tensor[] top = Sparse.topk(probs, k, -1, true);
            Tensor gates = o.renormalize() ? Elementwise.div(top[0], Reductions.sum(top[0], true, 1)) : top[0];
            long capacity = MixtureOfExperts.capacity(isTraining() ? o.capacityFactor() : 0, tokens, k, e);
            Tensor[] route;
            try (Autograd.GradMode off = Autograd.noGrad()) {
                route = MixtureOfExperts.route(top[1], e, capacity);
            }
            Tensor slots = route[0];
            Tensor counts = route[1];
            Tensor buf = MixtureOfExperts.dispatch(flat, slots, tokens * k);
            Tensor y;
            if (kind == MLP.Kind.GELU) {
                Tensor h = Elementwise.gelu(MixtureOfExperts.groupedMatmul(buf, parameter("w1"), counts));
                y = MixtureOfExperts.groupedMatmul(h, parameter("w2"), counts);
            } else {
                Tensor g = Elementwise.silu(MixtureOfExperts.groupedMatmul(buf, parameter("gate"), counts));
                Tensor h = Elementwise.mul(g, MixtureOfExperts.groupedMatmul(buf, parameter("up"), counts));
                y = MixtureOfExperts.groupedMatmul(h, parameter("down"), counts);
            }
            Tensor out = MixtureOfExperts.combine(y, slots, gates).reshape(x.dims());
            setAux(auxiliary(logits, probs, route[2], tokens));
            return s.keep(out);
        }
    }

    /** The weighted load-balancing loss plus z-loss (the caller's scope owns the intermediates). */
    private Tensor auxiliary(Tensor logits, Tensor probs, Tensor load, long tokens) {
        int e = o.experts();
        Tensor meanProb = Reductions.mean(probs, false, 0);                      // P_e
        Tensor fraction;
        try (Autograd.GradMode off = Autograd.noGrad()) {
            fraction = Elementwise.mul(load.to(probs.dtype()), 1.0 / Math.max(1, tokens * o.topK())); // f_e
        }
        Tensor balance = Elementwise.mul(Reductions.sum(Elementwise.mul(fraction, meanProb)), (double) e);
        Tensor total = Elementwise.mul(balance, o.balanceWeight());
        if (o.zLossWeight() > 0) {
            Tensor m = Reductions.max(logits, true, 1).detach();
            Tensor lse = Elementwise.add(Elementwise.log(Reductions.sum(Elementwise.exp(Elementwise.sub(logits, m)), true, 1)), m);
            Tensor z = Reductions.mean(Elementwise.mul(lse, lse));
            total = Elementwise.add(total, Elementwise.mul(z, o.zLossWeight()));
        }
        return total;
    }

    /** Keeps {@code loss} past the forward's scope: an unowned copy (with its gradient path) held by this layer. */
    private void setAux(Tensor loss) {
        if (aux != null) {
            aux.close();
        }
        try (Scope unowned = Scope.detached()) {
            aux = Elementwise.mul(loss, 1.0);
        }
    }

    @Override
    public void close() {
        if (aux != null) {
            aux.close();
            aux = null;
        }
        super.close();
    }

    @Override
    protected String extraRepr() {
        return "dim=" + dim + ", experts=" + o.experts() + ", top-" + o.topK() + ", hidden=" + o.hidden() + ", " + kind
                + ", capacity factor " + o.capacityFactor() + (o.renormalize() ? ", renormalised" : "");
    }
}
