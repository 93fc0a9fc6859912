package dev.cortado.nn;

import dev.cortado.nn.functional.F;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.Tensor;

/**
 * Inverted dropout: in training each element is zeroed with probability p (Philox Bernoulli mask
 * from the module's generator) and the rest scaled by 1/(1-p); in eval the identity (a view).
 */
public class Dropout extends Module {
    private final double p;
    private final Generator generator;

    public Dropout(double p) {
        this(p, Generator.global());
    }

    public Dropout(double p, Generator generator) {
        if (!(p >= 0 && p <= 1)) {
            throw new IllegalArgumentException("Dropout: p must be in [0, 1], got " + p);
        }
        this.p = p;
        this.generator = generator;
    }

    public double p() {
        return p;
    }

    @Override
    public Tensor forward(Tensor x) {
        return F.dropout(x, p, isTraining(), generator);
    }

    @Override
    protected String extraRepr() {
        return "p=" + p;
    }
}
