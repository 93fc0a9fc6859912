package dev.cortado.graph;

import dev.cortado.autograd.Autograd;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Copies of a graph's parameters (weights, buffers, optimizer state): a training step's graph writes
 * them in place (its update nodes, batch norm's statistics), so two graphs compared on the same
 * inputs must each start from the same values.
 */
final class ParameterSnapshot implements AutoCloseable {
    private final List<Tensor> targets = new ArrayList<>();
    private final List<Tensor> copies = new ArrayList<>();

    private ParameterSnapshot() {
    }

    /** The current values of {@code g}'s parameters. */
    @SuppressWarnings("try")
    static ParameterSnapshot of(Graph g) {
        ParameterSnapshot s = new ParameterSnapshot();
        try (Autograd.GradMode off = Autograd.noGrad()) {
            for (Value v : g.parameters()) {
                s.targets.add(v.tensor());
                s.copies.add(v.tensor().copy());
            }
        }
        return s;
    }

    /** Writes the saved values back. */
    @SuppressWarnings("try")
    void restore() {
        try (Autograd.GradMode off = Autograd.noGrad()) {
            for (int i = 0; i < targets.size(); i++) {
                targets.get(i).copyFrom(copies.get(i));
            }
        }
    }

    /** The saved values, aligned with the graph's parameters. */
    List<Tensor> values() {
        return copies;
    }

    @Override
    public void close() {
        for (Tensor t : copies) {
            t.close();
        }
    }
}
