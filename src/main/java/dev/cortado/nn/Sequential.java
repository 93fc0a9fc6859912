package dev.cortado.nn;

import dev.cortado.tensor.Tensor;
import java.util.List;

/** Modules applied one after the other; children are named "0", "1", ... Intermediates are closed. */
public class Sequential extends Module {
    private int count;

    public Sequential(Module... modules) {
        for (Module m : modules) {
            add(m);
        }
    }

    public Sequential(List<? extends Module> modules) {
        for (Module m : modules) {
            add(m);
        }
    }

    /** Appends a module. */
    public final Sequential add(Module m) {
        registerModule(Integer.toString(count++), m);
        return this;
    }

    public final int size() {
        return count;
    }

    public final Module get(int i) {
        return child(Integer.toString(i));
    }

    @Override
    public Tensor forward(Tensor x) {
        if (count == 0) {
            return dev.cortado.nn.functional.F.identity(x);
        }
        Tensor h = x;
        for (int i = 0; i < count; i++) {
            Tensor next = get(i).forward(h);
            if (h != x) {
                h.close();
            }
            h = next;
        }
        return h;
    }
}
