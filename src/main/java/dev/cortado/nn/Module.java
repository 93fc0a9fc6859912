package dev.cortado.nn;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;

/**
 * A layer or a model: a tree of named child modules, parameters (leaf tensors marked
 * {@code requiresGrad(true)}) and buffers (state that is saved but not trained, such as batch
 * norm's running statistics).
 *
 * <p>Names are dotted paths in a stable order — the module's own parameters, then its own
 * buffers, then each child in registration order — as PyTorch's {@code state_dict}:
 * {@code layers.0.attn.wq.weight}. The module owns its parameters and buffers: they belong to
 * no {@link Scope} (so a model built inside a scope outlives it) and are freed by
 * {@link #close()}. Forward passes return new tensors that the caller (or its scope) closes.
 *
 * <p>Subclasses register state in their constructor ({@link #registerParameter},
 * {@link #registerBuffer}, {@link #registerModule}) and read it back through
 * {@link #parameter(String)} / {@link #buffer(String)} / {@link #child(String)} at forward time,
 * so that {@link #to(Device)} and {@link #loadState} may replace tensors in place in the tree.
 */
public abstract class Module implements AutoCloseable {
    private final LinkedHashMap<String, Tensor> parameters = new LinkedHashMap<>();
    private final LinkedHashMap<String, Tensor> buffers = new LinkedHashMap<>();
    private final LinkedHashMap<String, Module> children = new LinkedHashMap<>();
    private boolean training = true;
    private boolean closed;

    /** The module's computation on one input. */
    public abstract Tensor forward(Tensor x);

    /** Shorthand for {@link #forward(Tensor)}. */
    public final Tensor apply(Tensor x) {
        return forward(x);
    }

    // ------------------------------------------------------------------ registration
    /**
     * Registers {@code tensor} (a fresh tensor this module now owns; null for an absent optional
     * parameter such as a disabled bias) as parameter {@code name} and marks it requiresGrad.
     */
    protected final Tensor registerParameter(String name, Tensor tensor) {
        checkName(name);
        if (tensor != null) {
            tensor.requiresGrad(true);
        }
        parameters.put(name, tensor);
        return tensor;
    }

    /** Registers a buffer (saved in {@link #state()}, moved by {@link #to(Device)}, never trained). */
    protected final Tensor registerBuffer(String name, Tensor tensor) {
        checkName(name);
        buffers.put(name, tensor);
        return tensor;
    }

    /** Registers a child module under {@code name}. */
    protected final <M extends Module> M registerModule(String name, M module) {
        checkName(name);
        if (module == null) {
            throw new IllegalArgumentException(getClass().getSimpleName() + ": child module '" + name + "' is null");
        }
        children.put(name, module);
        return module;
    }

    private void checkName(String name) {
        if (name == null || name.isEmpty() || name.contains(".")) {
            throw new IllegalArgumentException(getClass().getSimpleName() + ": invalid name '" + name
                    + "' (non-empty, no dots)");
        }
        if (parameters.containsKey(name) || buffers.containsKey(name) || children.containsKey(name)) {
            throw new IllegalArgumentException(getClass().getSimpleName() + ": name '" + name + "' is already registered");
        }
    }

    /**
     * Runs {@code body} so that the tensors it creates belong to no scope: use it to create
     * parameters and buffers, which the module owns and {@link #close()} frees.
     */
    protected static <T> T unscoped(Supplier<T> body) {
        try (Scope ignored = Scope.detached()) {
            return body.get();
        }
    }

    /** This module's own parameter {@code name} (null when registered absent). */
    public final Tensor parameter(String name) {
        if (!parameters.containsKey(name)) {
            throw new IllegalArgumentException(getClass().getSimpleName() + " has no parameter '" + name + "' (has "
                    + parameters.keySet() + ")");
        }
        return parameters.get(name);
    }

    /** This module's own buffer {@code name}. */
    public final Tensor buffer(String name) {
        if (!buffers.containsKey(name)) {
            throw new IllegalArgumentException(getClass().getSimpleName() + " has no buffer '" + name + "' (has "
                    + buffers.keySet() + ")");
        }
        return buffers.get(name);
    }

    /** The direct child {@code name}. */
    public final Module child(String name) {
        Module m = children.get(name);
        if (m == null) {
            throw new IllegalArgumentException(getClass().getSimpleName() + " has no child '" + name + "' (has "
                    + children.keySet() + ")");
        }
        return m;
    }

    /**
     * Puts {@code replacement} in the place of the direct child {@code name} (same position in the
     * order; model surgery such as quantization's prepare and convert) and returns the old child,
     * which the caller now owns (it is not closed).
     */
    public final Module replaceChild(String name, Module replacement) {
        Module old = child(name);
        if (replacement == null) {
            throw new IllegalArgumentException(getClass().getSimpleName() + ": replacement for child '" + name + "' is null");
        }
        children.put(name, replacement);
        return old;
    }

    /** Direct children in registration order. */
    public final Map<String, Module> children() {
        return java.util.Collections.unmodifiableMap(children);
    }

    // ------------------------------------------------------------------ traversal
    /** Every parameter of the tree with its dotted name, in a stable order. */
    public final LinkedHashMap<String, Tensor> namedParameters() {
        LinkedHashMap<String, Tensor> out = new LinkedHashMap<>();
        collect("", out, true, false);
        return out;
    }

    /** Every parameter of the tree, in the order of {@link #namedParameters()}. */
    public final List<Tensor> parameters() {
        return new ArrayList<>(namedParameters().values());
    }

    /** Every buffer of the tree with its dotted name. */
    public final LinkedHashMap<String, Tensor> namedBuffers() {
        LinkedHashMap<String, Tensor> out = new LinkedHashMap<>();
        collect("", out, false, true);
        return out;
    }

    /** Every module of the tree (this one first, name "") with its dotted name, depth first. */
    public final LinkedHashMap<String, Module> namedModules() {
        LinkedHashMap<String, Module> out = new LinkedHashMap<>();
        walk("", out);
        return out;
    }

    private void walk(String prefix, Map<String, Module> out) {
        out.put(prefix, this);
        for (Map.Entry<String, Module> c : children.entrySet()) {
            c.getValue().walk(prefix.isEmpty() ? c.getKey() : prefix + "." + c.getKey(), out);
        }
    }

    private void collect(String prefix, Map<String, Tensor> out, boolean params, boolean bufs) {
        if (params) {
            for (Map.Entry<String, Tensor> e : parameters.entrySet()) {
                if (e.getValue() != null) {
                    out.put(prefix + e.getKey(), e.getValue());
                }
            }
        }
        if (bufs) {
            for (Map.Entry<String, Tensor> e : buffers.entrySet()) {
                if (e.getValue() != null) {
                    out.put(prefix + e.getKey(), e.getValue());
                }
            }
        }
        for (Map.Entry<String, Module> c : children.entrySet()) {
            c.getValue().collect(prefix + c.getKey() + ".", out, params, bufs);
        }
    }

    /** Total number of parameter elements. */
    public final long numParameters() {
        long n = 0;
        for (Tensor t : namedParameters().values()) {
            n += t.numel();
        }
        return n;
    }

    // ------------------------------------------------------------------ mode
    /** Training mode (the default): dropout drops, batch norm uses and updates batch statistics. */
    public Module train() {
        return train(true);
    }

    /** Evaluation mode: dropout is the identity, batch norm uses its running statistics. */
    public Module eval() {
        return train(false);
    }

    /** Sets the mode of this module and every descendant. */
    public Module train(boolean on) {
        training = on;
        for (Module c : children.values()) {
            c.train(on);
        }
        return this;
    }

    public final boolean isTraining() {
        return training;
    }

    // ------------------------------------------------------------------ state
    /**
     * The parameters and buffers of the tree by dotted name. The tensors are the module's own
     * (writing into them changes the module; do not close them).
     */
    public final LinkedHashMap<String, Tensor> state() {
        LinkedHashMap<String, Tensor> out = new LinkedHashMap<>();
        collect("", out, true, true);
        return out;
    }

    /**
     * Copies {@code state} into this module's parameters and buffers. Every entry is checked
     * before anything is copied: with {@code strict}, a name missing from {@code state}, a name
     * this module does not have, a different shape or a different dtype is an error that lists
     * all of them; without it, missing and unexpected names are ignored and dtypes are converted,
     * but shapes must still match. Values may live on another device.
     */
    public final void loadState(Map<String, Tensor> state, boolean strict) {
        LinkedHashMap<String, Tensor> mine = state();
        List<String> missing = new ArrayList<>();
        List<String> unexpected = new ArrayList<>();
        List<String> mismatched = new ArrayList<>();
        for (Map.Entry<String, Tensor> e : mine.entrySet()) {
            Tensor src = state.get(e.getKey());
            if (src == null) {
                missing.add(e.getKey());
                continue;
            }
            Tensor dst = e.getValue();
            if (src.isClosed()) {
                mismatched.add(e.getKey() + ": the checkpoint's tensor is closed");
            } else if (!src.shape().equals(dst.shape())) {
                mismatched.add(e.getKey() + ": checkpoint " + src.dtype() + src.shape() + " vs module " + dst.dtype()
                        + dst.shape());
            } else if (strict && src.dtype() != dst.dtype()) {
                mismatched.add(e.getKey() + ": checkpoint dtype " + src.dtype() + " vs module " + dst.dtype()
                        + " (shape " + dst.shape() + ")");
            }
        }
        for (String k : state.keySet()) {
            if (!mine.containsKey(k)) {
                unexpected.add(k);
            }
        }
        boolean bad = !mismatched.isEmpty() || (strict && (!missing.isEmpty() || !unexpected.isEmpty()));
        if (bad) {
            StringBuilder sb = new StringBuilder("loadState into ").append(getClass().getSimpleName())
                    .append(strict ? " (strict)" : "").append(": ");
            if (!missing.isEmpty() || !unexpected.isEmpty()) {
                sb.append("checkpoint of another architecture? ");
            }
            if (strict && !missing.isEmpty()) {
                sb.append("\n  missing from the checkpoint (").append(missing.size()).append("): ").append(missing);
            }
            if (strict && !unexpected.isEmpty()) {
                sb.append("\n  unexpected in the checkpoint (").append(unexpected.size()).append("): ").append(unexpected);
            }
            if (!mismatched.isEmpty()) {
                sb.append("\n  mismatched (").append(mismatched.size()).append("):");
                for (String m : mismatched) {
                    sb.append("\n    ").append(m);
                }
            }
            sb.append("\nnothing was copied");
            throw new IllegalArgumentException(sb.toString());
        }
        for (Map.Entry<String, Tensor> e : mine.entrySet()) {
            Tensor src = state.get(e.getKey());
            if (src != null) {
                e.getValue().copyFrom(src);
            }
        }
    }

    /** Names of the tree's state entries, in order. */
    public final Set<String> stateNames() {
        return new LinkedHashSet<>(state().keySet());
    }

    // ------------------------------------------------------------------ devices and dtypes
    /**
     * Moves every parameter and buffer to {@code device}, replacing the tensors in the tree (the
     * old ones are closed; their gradients are dropped). A tensor already there is kept as is, so
     * {@code to(Device.CPU)} of a CPU module changes nothing.
     */
    public Module to(Device device) {
        replaceAll(t -> t.device().equals(device) ? null : t.to(device), true);
        return this;
    }

    /**
     * Converts the floating parameters and buffers to the floating {@code dtype} (integer buffers
     * stay; modules may keep some tensors in their dtype, see {@link #keepsDType}).
     */
    public Module to(DType dtype) {
        if (!dtype.isFloatingPoint()) {
            throw new IllegalArgumentException(getClass().getSimpleName() + ".to(" + dtype
                    + "): modules convert to floating dtypes only");
        }
        replaceAll(t -> t.dtype() == dtype || !t.dtype().isFloatingPoint() ? null : t.to(dtype), false);
        return this;
    }

    /** Whether own tensor {@code name} keeps its dtype in {@link #to(DType)} (batch norm's float32 state). */
    protected boolean keepsDType(String name) {
        return false;
    }

    private void replaceAll(java.util.function.Function<Tensor, Tensor> convert, boolean deviceMove) {
        for (Map<String, Tensor> map : List.of(parameters, buffers)) {
            boolean isParam = map == parameters;
            for (Map.Entry<String, Tensor> e : map.entrySet()) {
                Tensor old = e.getValue();
                if (old == null || (!deviceMove && keepsDType(e.getKey()))) {
                    continue;
                }
                Tensor fresh = unscoped(() -> {
                    try (Tensor plain = old.detach()) {
                        return convert.apply(plain);
                    }
                });
                if (fresh == null) {
                    continue;
                }
                if (isParam) {
                    fresh.requiresGrad(true);
                }
                e.setValue(fresh);
                old.close();
            }
        }
        for (Module c : children.values()) {
            c.replaceAll(convert, deviceMove);
        }
    }

    // ------------------------------------------------------------------ gradients and lifetime
    /** Drops the gradient of every parameter and frees its memory ({@link Tensor#zeroGrad()}). */
    public final void zeroGrad() {
        for (Tensor p : namedParameters().values()) {
            p.zeroGrad();
        }
    }

    /** Frees every parameter and buffer of the tree; idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (Tensor t : parameters.values()) {
            if (t != null) {
                t.close();
            }
        }
        for (Tensor t : buffers.values()) {
            if (t != null) {
                t.close();
            }
        }
        for (Module c : children.values()) {
            c.close();
        }
    }

    // ------------------------------------------------------------------ printing
    /** The part of {@link #toString()} inside the parentheses, e.g. {@code in=4, out=8, bias=true}. */
    protected String extraRepr() {
        return "";
    }

    /** The tree, one module per line (as PyTorch prints it). */
    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder();
        print(sb, "");
        return sb.toString();
    }

    private void print(StringBuilder sb, String indent) {
        sb.append(getClass().getSimpleName()).append('(').append(extraRepr());
        if (children.isEmpty()) {
            sb.append(')');
            return;
        }
        sb.append('\n');
        for (Map.Entry<String, Module> c : children.entrySet()) {
            sb.append(indent).append("  (").append(c.getKey()).append("): ");
            c.getValue().print(sb, indent + "  ");
            sb.append('\n');
        }
        sb.append(indent).append(')');
    }
}
