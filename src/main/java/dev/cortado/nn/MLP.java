package dev.cortado.nn;

import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.Tensor;

/**
 * The feed-forward part of a transformer block. GELU: {@code fc2(gelu(fc1(x)))}. SwiGLU:
 * {@code down(silu(gate(x)) * up(x))} (LLaMA's; gate/up/down without bias when bias is off).
 */
public class MLP extends Module {
    /** Which feed-forward. */
    public enum Kind {
        GELU, SWIGLU
    }

    private final Kind kind;

    public MLP(long dim, long hidden, Kind kind, boolean bias, ParamOptions p) {
        this.kind = kind;
        if (kind == Kind.GELU) {
            registerModule("fc1", new Linear(dim, hidden, bias, p));
            registerModule("fc2", new Linear(hidden, dim, bias, p));
        } else {
            registerModule("gate", new Linear(dim, hidden, bias, p));
            registerModule("up", new Linear(dim, hidden, bias, p));
            registerModule("down", new Linear(hidden, dim, bias, p));
        }
    }

    @Override
    public Tensor forward(Tensor x) {
        if (kind == Kind.GELU) {
            try (Tensor h = child("fc1").forward(x); Tensor a = Elementwise.gelu(h)) {
                return child("fc2").forward(a);
            }
        }
        try (Tensor g = child("gate").forward(x); Tensor s = Elementwise.silu(g); Tensor u = child("up").forward(x);
             Tensor h = Elementwise.mul(s, u)) {
            return child("down").forward(h);
        }
    }

    @Override
    protected String extraRepr() {
        return kind.toString();
    }
}
