package dev.cortado.graph;

import dev.cortado.tensor.Tensor;

/**
 * A value of a graph: defined once, by the graph (an input, a parameter, a constant) or by one
 * node (one of its outputs). Values are compared by identity; {@link #id()} numbers them in the
 * text form ({@code %7}).
 */
public final class Value {

    /** Where a value comes from. */
    public enum Kind {
        /** An argument of the captured function (bound at each call). */
        INPUT,
        /** A tensor held by reference (a module's parameter or buffer): read at each call, never copied. */
        PARAMETER,
        /** A tensor the graph owns (captured by value, or computed by constant folding). */
        CONSTANT,
        /** An output of a node. */
        NODE
    }

    private final int id;
    private final Kind kind;
    private final TensorType type;
    private final String name;
    private final Tensor tensor;

    Value(int id, Kind kind, TensorType type, String name, Tensor tensor) {
        this.id = id;
        this.kind = kind;
        this.type = type;
        this.name = name;
        this.tensor = tensor;
    }

    public int id() {
        return id;
    }

    public Kind kind() {
        return kind;
    }

    public TensorType type() {
        return type;
    }

    /** The name in the text form: a parameter's path ({@code 0.weight}), else null. */
    public String name() {
        return name;
    }

    /** The tensor of a parameter or constant, else null. */
    public Tensor tensor() {
        return tensor;
    }

    /** Whether the value is known without running the graph (constant, or parameter when frozen). */
    public boolean isConstant() {
        return kind == Kind.CONSTANT;
    }

    /** {@code %7}, or {@code %fc1.weight} for a named parameter. */
    public String ref() {
        return "%" + (name != null ? name : Integer.toString(id));
    }

    @Override
    public String toString() {
        return ref() + ": " + type;
    }
}
