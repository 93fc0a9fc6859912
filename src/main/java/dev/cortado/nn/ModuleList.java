package dev.cortado.nn;

import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/** An indexed list of modules (children "0", "1", ...) that the owner applies itself; no forward of its own. */
public class ModuleList<M extends Module> extends Module implements Iterable<M> {
    private final List<M> items = new ArrayList<>();

    @SafeVarargs
    public ModuleList(M... modules) {
        for (M m : modules) {
            add(m);
        }
    }

    public final ModuleList<M> add(M m) {
        registerModule(Integer.toString(items.size()), m);
        items.add(m);
        return this;
    }

    public final M get(int i) {
        return items.get(i);
    }

    public final int size() {
        return items.size();
    }

    @Override
    public Iterator<M> iterator() {
        return items.iterator();
    }

    @Override
    public Tensor forward(Tensor x) {
        throw new UnsupportedOperationException("ModuleList has no forward: apply its modules yourself");
    }
}
