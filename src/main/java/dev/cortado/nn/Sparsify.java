package dev.cortado.nn;

import dev.cortado.sparse.SparseFormat;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * Conversion of a trained (pruned or N:M-trained) {@link Sequential} into one that runs the
 * sparse kernels: each {@link Linear} and {@link Conv2d} for which {@code format} answers a
 * {@link SparseFormat} becomes a {@link SparseLinear} / {@link SparseConv2d}; the other layers are
 * moved over as they are.
 */
public final class Sparsify {
    private Sparsify() {
    }

    /**
     * The converted model. It takes over {@code model}'s layers: the converted dense layers are
     * closed, the others now belong to the result, and {@code model} must not be used afterwards
     * (closing it too is harmless: closing is idempotent). {@code format} answers null for a
     * layer that stays dense; it is asked only about {@code Linear} and {@code Conv2d} layers.
     */
    public static Sequential convert(Sequential model, Function<Module, SparseFormat> format) {
        List<Module> layers = new ArrayList<>();
        List<Module> converted = new ArrayList<>();
        try {
            for (int i = 0; i < model.size(); i++) {
                Module m = model.get(i);
                SparseFormat f = m instanceof Linear || m instanceof Conv2d ? format.apply(m) : null;
                if (f == null) {
                    layers.add(m);
                } else {
                    Module sparse = m instanceof Linear l ? new SparseLinear(l, f) : new SparseConv2d((Conv2d) m, f);
                    converted.add(sparse);
                    layers.add(sparse);
                }
            }
        } catch (RuntimeException e) {
            converted.forEach(Module::close);
            throw e;
        }
        for (int i = 0; i < model.size(); i++) {
            Module m = model.get(i);
            if (!layers.contains(m)) {
                m.close();
            }
        }
        return new Sequential(layers);
    }
}
