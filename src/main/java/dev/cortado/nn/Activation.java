package dev.cortado.nn;

import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.Tensor;
import java.util.function.UnaryOperator;

/** An elementwise activation as a module, for {@link Sequential}: {@link #relu()}, {@link #gelu()}, ... */
public class Activation extends Module {
    private final String name;
    private final UnaryOperator<Tensor> fn;

    protected Activation(String name, UnaryOperator<Tensor> fn) {
        this.name = name;
        this.fn = fn;
    }

    @Override
    public Tensor forward(Tensor x) {
        return fn.apply(x);
    }

    public String name() {
        return name;
    }

    @Override
    protected String extraRepr() {
        return name.startsWith("GELU(") ? "approximate=tanh" : "";
    }

    public static ReLU relu() {
        return new ReLU();
    }

    /** GELU, erf form. */
    public static GELU gelu() {
        return new GELU(false);
    }

    public static SiLU silu() {
        return new SiLU();
    }

    public static Tanh tanh() {
        return new Tanh();
    }

    public static Sigmoid sigmoid() {
        return new Sigmoid();
    }

    /** max(x, 0). */
    public static final class ReLU extends Activation {
        public ReLU() {
            super("ReLU", Elementwise::relu);
        }
    }

    /** x * Phi(x) (erf form), or the tanh approximation. */
    public static final class GELU extends Activation {
        private final boolean tanhApproximation;

        public GELU(boolean tanhApproximation) {
            super(tanhApproximation ? "GELU(tanh)" : "GELU", tanhApproximation ? Elementwise::geluTanh : Elementwise::gelu);
            this.tanhApproximation = tanhApproximation;
        }

        /** Whether this is the tanh approximation (else the exact erf form). */
        public boolean tanhApproximation() {
            return tanhApproximation;
        }
    }

    /** x * sigmoid(x) (swish). */
    public static final class SiLU extends Activation {
        public SiLU() {
            super("SiLU", Elementwise::silu);
        }
    }

    /** The hyperbolic tangent, elementwise. */
    public static final class Tanh extends Activation {
        public Tanh() {
            super("Tanh", Elementwise::tanh);
        }
    }

    /** The logistic sigmoid {@code 1 / (1 + exp(-x))}, elementwise. */
    public static final class Sigmoid extends Activation {
        public Sigmoid() {
            super("Sigmoid", Elementwise::sigmoid);
        }
    }
}
