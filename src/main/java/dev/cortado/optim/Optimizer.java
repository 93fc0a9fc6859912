package dev.cortado.optim;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Base of the fused optimizers. Holds parameter groups ({@link ParamGroup}: parameters plus a
 * learning rate and a weight decay), the per-parameter state (tensors such as
 * {@code exp_avg}, allocated lazily on the parameter's device and dtype, and a step count) and
 * the rules every optimizer shares:
 * <ul>
 *   <li>{@link #step()} reads {@code p.grad()} of every parameter; a parameter without a
 *       gradient is skipped (its state and step count do not change). All parameters and
 *       gradients are checked before anything is updated, so a bad one leaves every parameter as
 *       it was. Parameters are updated in place by one native call per (group, device, dtype,
 *       step count) batch, dispatched to the CPU or CUDA kernel by device.</li>
 *   <li>Parameters must be dense and contiguous (the kernels stream through their memory):
 *       float32 or float64; gradients of the parameter's dtype, or float16/bfloat16 with float32
 *       parameters. Non-contiguous gradients are copied; non-contiguous parameters are refused.</li>
 *   <li>{@link #state()} / {@link #loadState} exchange a flat {@code Map<String, Tensor>} fit for
 *       a safetensors checkpoint (names {@code state.<i>.<name>}, {@code state.<i>.step},
 *       {@code group.<g>.lr} ...; {@code i} counts parameters across groups in order).</li>
 * </ul>
 * Not thread-safe; {@link #close()} frees the state.
 */
public abstract class Optimizer implements AutoCloseable {
    private final String name;
    private final List<ParamGroup> groups;
    private final List<Tensor> params = new ArrayList<>();
    private final List<Integer> groupOf = new ArrayList<>();
    private final ParamState[] states;
    private long stepCount;
    private boolean closed;

    /** State of one parameter: its tensors (by {@link #stateNames()} index) and its step count. */
    protected static final class ParamState {
        final Tensor[] tensors;
        long step;

        ParamState(int n) {
            tensors = new Tensor[n];
        }

        boolean initialized() {
            return step > 0 || (tensors.length > 0 && tensors[0] != null);
        }

        void close() {
            for (int k = 0; k < tensors.length; k++) {
                if (tensors[k] != null) {
                    tensors[k].close();
                    tensors[k] = null;
                }
            }
            step = 0;
        }
    }

    /**
     * One kernel call's worth of parameters: same group, device, dtypes and step count (after
     * this step's increment, so the first step is 1).
     */
    protected record Batch(int groupIndex, Device device, DType paramType, DType gradType, long step,
                           List<Tensor> params, List<Tensor> grads, List<List<Tensor>> states) {
        /** The state tensors named {@code stateNames().get(k)}, aligned with {@link #params()}. */
        public List<Tensor> state(int k) {
            return states.get(k);
        }
    }

    protected Optimizer(String name, List<ParamGroup> groups, double defaultLr, double defaultWeightDecay) {
        this.name = name;
        requireNonNegative("lr", defaultLr);
        requireNonNegative("weightDecay", defaultWeightDecay);
        if (groups.isEmpty()) {
            throw new IllegalArgumentException(name + ": no parameter groups given");
        }
        this.groups = List.copyOf(groups);
        Map<Tensor, String> seen = new IdentityHashMap<>();
        for (int g = 0; g < this.groups.size(); g++) {
            ParamGroup group = this.groups.get(g);
            group.resolve(defaultLr, defaultWeightDecay);
            for (int j = 0; j < group.params().size(); j++) {
                Tensor p = group.params().get(j);
                String where = "group " + g + " index " + j;
                String before = seen.put(p, where);
                if (before != null) {
                    throw new IllegalArgumentException(name + ": parameter " + p.describe() + " appears twice ("
                            + before + " and " + where + ")");
                }
                params.add(p);
                groupOf.add(g);
            }
        }
        states = new ParamState[params.size()];
    }

    static void requireNonNegative(String what, double v) {
        if (!(v >= 0) || Double.isInfinite(v)) {
            throw new IllegalArgumentException(what + " must be finite and >= 0, got " + v);
        }
    }

    static void requireRange(String opt, String what, double v, double lo, double hi) {
        if (!(v >= lo && v < hi)) {
            throw new IllegalArgumentException(opt + ": " + what + " must be in [" + lo + ", " + hi + "), got " + v);
        }
    }

    /** Names of the per-parameter state tensors, in kernel order (e.g. exp_avg, exp_avg_sq). */
    protected abstract List<String> stateNames();

    /** Initial value of a state tensor (0 unless overridden; Adagrad's initial accumulator). */
    protected double initialStateValue(String stateName) {
        return 0;
    }

    /** Hyper-parameters saved by {@link #state()} as {@code options.<name>} (informational). */
    protected abstract Map<String, Double> options();

    /** Updates one batch in place. */
    protected abstract void update(ParamGroup group, Batch batch);

    public String name() {
        return name;
    }

    public List<ParamGroup> groups() {
        return groups;
    }

    /** Every parameter, in state-index order (group by group). */
    public List<Tensor> params() {
        return Collections.unmodifiableList(params);
    }

    /** Number of completed {@link #step()} calls. */
    public long stepCount() {
        return stepCount;
    }

    /** Sets the learning rate of every group. */
    public void setLr(double lr) {
        for (ParamGroup g : groups) {
            g.lr(lr);
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException(name + ": the optimizer was closed");
        }
    }

    private String where(int i) {
        return "parameter " + i + " (group " + groupOf.get(i) + ")";
    }

    /** Updates every parameter that has a gradient. */
    public void step() {
        ensureOpen();
        List<Tensor> grads = new ArrayList<>(params.size());
        for (Tensor p : params) {
            grads.add(p.isClosed() ? null : p.grad());
        }
        step(grads);
    }

    /**
     * Updates every parameter with the gradient at its index in {@code grads} (aligned with
     * {@link #params()}; a null entry skips its parameter) instead of {@code p.grad()}: the same
     * checks, state, batching and kernels as {@link #step()}. For callers that hold gradients
     * elsewhere, such as a compiled training step whose gradients live in its memory plan.
     */
    public void step(List<Tensor> gradients) {
        step(gradients, true);
    }

    /**
     * {@link #step(List)} for a caller that updates the parameters in several calls per step (a
     * compiled training step updates each parameter as soon as its gradient is ready): each
     * parameter's own step count advances as it is updated; {@link #stepCount()} counts completed
     * steps and advances only when {@code completesStep} is true, which one call per step passes.
     */
    @SuppressWarnings("try")
    public void step(List<Tensor> gradients, boolean completesStep) {
        ensureOpen();
        String op = name + ".step";
        int n = params.size();
        if (gradients.size() != n) {
            throw new IllegalArgumentException(op + ": " + gradients.size() + " gradients for " + n + " parameters");
        }
        // pass 1: check everything, so that a bad parameter leaves all of them untouched
        Tensor[] grads = new Tensor[n];
        for (int i = 0; i < n; i++) {
            Tensor p = params.get(i);
            if (p.isClosed()) {
                throw new IllegalStateException(op + ": " + where(i) + " was closed");
            }
            Tensor g = gradients.get(i);
            if (g == null) {
                continue;
            }
            checkParam(op, i, p, g);
            grads[i] = g;
        }
        // pass 2: state, batches, kernels
        List<Tensor> temporaries = new ArrayList<>();
        try (Scope detached = Scope.detached()) {
            for (int gi = 0; gi < groups.size(); gi++) {
                ParamGroup group = groups.get(gi);
                Map<List<Object>, List<Integer>> batches = new LinkedHashMap<>();
                for (int i = 0; i < n; i++) {
                    if (groupOf.get(i) != gi || grads[i] == null) {
                        continue;
                    }
                    Tensor p = params.get(i);
                    ParamState st = ensureState(i, p);
                    batches.computeIfAbsent(List.of(p.device(), p.dtype(), grads[i].dtype(), st.step + 1),
                            k -> new ArrayList<>()).add(i);
                }
                for (Map.Entry<List<Object>, List<Integer>> e : batches.entrySet()) {
                    List<Integer> idx = e.getValue();
                    List<Tensor> bp = new ArrayList<>(idx.size());
                    List<Tensor> bg = new ArrayList<>(idx.size());
                    List<List<Tensor>> bs = new ArrayList<>();
                    for (int k = 0; k < stateNames().size(); k++) {
                        bs.add(new ArrayList<>(idx.size()));
                    }
                    for (int i : idx) {
                        bp.add(params.get(i));
                        Tensor g = grads[i];
                        if (!g.isContiguous()) {
                            g = g.contiguous();
                            temporaries.add(g);
                        }
                        bg.add(g);
                        for (int k = 0; k < bs.size(); k++) {
                            bs.get(k).add(states[i].tensors[k]);
                        }
                    }
                    Tensor first = bp.get(0);
                    long step = (Long) e.getKey().get(3);
                    update(group, new Batch(gi, first.device(), first.dtype(), bg.get(0).dtype(), step, bp, bg, bs));
                    for (int i : idx) {
                        states[i].step = step;
                    }
                }
            }
        } finally {
            for (Tensor t : temporaries) {
                t.close();
            }
        }
        if (completesStep) {
            stepCount++;
        }
    }

    private void checkParam(String op, int i, Tensor p, Tensor g) {
        DType pd = p.dtype();
        if (pd != DType.FLOAT32 && pd != DType.FLOAT64) {
            throw new UnsupportedOperationException(op + ": " + where(i) + " is " + p.describe()
                    + "; the fused optimizers update float32 or float64 parameters (keep float32 master weights"
                    + " and float16/bfloat16 gradients for mixed precision)");
        }
        if (!p.isContiguous()) {
            throw new IllegalArgumentException(op + ": " + where(i) + " " + p.describe() + " with strides "
                    + java.util.Arrays.toString(p.strides()) + " is not contiguous; the fused kernels update a"
                    + " parameter in place over its dense memory, so parameters must be contiguous tensors (make"
                    + " the parameter with .contiguous() or .copy() before training, not a transposed or sliced view)");
        }
        if (g.isClosed()) {
            throw new IllegalStateException(op + ": the gradient of " + where(i) + " was closed");
        }
        if (!g.shape().equals(p.shape())) {
            throw new IllegalArgumentException(op + ": the gradient of " + where(i) + " is " + g.describe()
                    + " but the parameter is " + p.describe() + " (shapes differ)");
        }
        if (!g.device().equals(p.device())) {
            throw new IllegalArgumentException(op + ": the gradient of " + where(i) + " is " + g.describe()
                    + " but the parameter is " + p.describe() + " (devices differ)");
        }
        DType gd = g.dtype();
        boolean ok = gd == pd || (pd == DType.FLOAT32 && (gd == DType.FLOAT16 || gd == DType.BFLOAT16));
        if (!ok) {
            throw new IllegalArgumentException(op + ": the gradient of " + where(i) + " is " + g.describe()
                    + " but the parameter is " + p.describe() + "; gradients must have the parameter's dtype,"
                    + " or float16/bfloat16 with float32 parameters");
        }
    }

    /**
     * The state tensors of every parameter, parameter by parameter in {@link #stateNames()} order,
     * allocating those not made yet with their initial values (as a first step would; the step
     * counts stay as they are). The tensors are updated in place by every later step and kept by
     * {@link #loadState}, so a caller may hold them by reference (a compiled training step does).
     */
    public List<Tensor> stateTensors() {
        ensureOpen();
        List<Tensor> all = new ArrayList<>();
        try (Scope detached = Scope.detached()) {
            for (int i = 0; i < params.size(); i++) {
                all.addAll(java.util.Arrays.asList(ensureState(i, params.get(i)).tensors));
            }
        }
        return Collections.unmodifiableList(all);
    }

    private ParamState ensureState(int i, Tensor p) {
        ParamState st = states[i];
        if (st == null) {
            st = new ParamState(stateNames().size());
            states[i] = st;
        }
        List<String> names = stateNames();
        for (int k = 0; k < names.size(); k++) {
            if (st.tensors[k] == null) {
                st.tensors[k] = Tensor.full(initialStateValue(names.get(k)), p.dtype(), p.device(), p.dims());
            }
        }
        return st;
    }

    /** Clears every parameter's gradient (sets it to null: the next backward allocates a new one). */
    public void zeroGrad() {
        for (Tensor p : params) {
            if (!p.isClosed()) {
                p.zeroGrad();
            }
        }
    }

    /**
     * Fills every parameter's gradient with zeros in place, keeping its memory (for code that holds
     * on to {@code grad()} tensors); parameters without a gradient stay without one.
     */
    public void zeroGradInPlace() {
        for (Tensor p : params) {
            Tensor g = p.isClosed() ? null : p.grad();
            if (g != null) {
                g.fillWith(0);
            }
        }
    }

    // ================================================================ checkpoints

    /**
     * The optimizer's state as named tensors, for a safetensors checkpoint. The caller owns every
     * tensor of the map and closes them (state tensors are views sharing the live memory: save
     * them before the next step). Entries:
     * <ul>
     *   <li>{@code state.<i>.<name>}: a state tensor of parameter i ({@link #stateNames()});</li>
     *   <li>{@code state.<i>.step}: the parameter's step count (float64 scalar);</li>
     *   <li>{@code group.<g>.lr}, {@code group.<g>.initial_lr}, {@code group.<g>.weight_decay};</li>
     *   <li>{@code optimizer.step_count} and {@code options.<name>} (hyper-parameters, not loaded).</li>
     * </ul>
     * Parameters that never had a gradient have no entries.
     */
    public Map<String, Tensor> state() {
        ensureOpen();
        Map<String, Tensor> out = new TreeMap<>();
        List<String> names = stateNames();
        for (int i = 0; i < states.length; i++) {
            ParamState st = states[i];
            if (st == null || !st.initialized()) {
                continue;
            }
            for (int k = 0; k < names.size(); k++) {
                if (st.tensors[k] != null) {
                    out.put("state." + i + "." + names.get(k), st.tensors[k].detach());
                }
            }
            out.put("state." + i + ".step", Tensor.scalar(st.step, DType.FLOAT64, Device.CPU));
        }
        for (int g = 0; g < groups.size(); g++) {
            ParamGroup group = groups.get(g);
            out.put("group." + g + ".lr", Tensor.scalar(group.lr(), DType.FLOAT64, Device.CPU));
            out.put("group." + g + ".initial_lr", Tensor.scalar(group.initialLr(), DType.FLOAT64, Device.CPU));
            out.put("group." + g + ".weight_decay", Tensor.scalar(group.weightDecay(), DType.FLOAT64, Device.CPU));
        }
        out.put("optimizer.step_count", Tensor.scalar(stepCount, DType.FLOAT64, Device.CPU));
        for (Map.Entry<String, Double> e : options().entrySet()) {
            out.put("options." + e.getKey(), Tensor.scalar(e.getValue(), DType.FLOAT64, Device.CPU));
        }
        return out;
    }

    private static final Pattern STATE_KEY = Pattern.compile("state\\.(\\d+)\\.([A-Za-z0-9_]+)");
    private static final Pattern GROUP_KEY = Pattern.compile("group\\.(\\d+)\\.(lr|initial_lr|weight_decay)");

    /**
     * Restores what {@link #state()} saved (the map's tensors stay the caller's; they are copied,
     * converted to the parameter's dtype and moved to its device). Everything is checked before
     * anything changes: unknown names, parameter or group indices out of range, state tensors
     * whose shape differs from the parameter's, and parameters with some but not all of their
     * state entries give an {@link IllegalArgumentException} naming them. {@code options.*}
     * entries are ignored (the optimizer's own hyper-parameters apply).
     */
    @SuppressWarnings("try")
    public void loadState(Map<String, Tensor> saved) {
        ensureOpen();
        String op = name + ".loadState";
        List<String> names = stateNames();
        Map<Integer, Map<String, Tensor>> perParam = new TreeMap<>();
        Map<Integer, Map<String, Double>> perGroup = new TreeMap<>();
        Double savedSteps = null;
        for (Map.Entry<String, Tensor> e : saved.entrySet()) {
            String key = e.getKey();
            Tensor t = Objects.requireNonNull(e.getValue(), () -> op + ": entry '" + key + "' is null");
            Matcher m = STATE_KEY.matcher(key);
            Matcher gm = GROUP_KEY.matcher(key);
            if (m.matches()) {
                int i = parseIndex(op, key, m.group(1), params.size(), "parameter");
                String field = m.group(2);
                Tensor p = params.get(i);
                if (field.equals("step")) {
                    requireScalar(op, key, t);
                } else if (!names.contains(field)) {
                    throw new IllegalArgumentException(op + ": '" + key + "' names state '" + field + "', but "
                            + name + " keeps " + names + " per parameter (a checkpoint of another optimizer?)");
                } else if (!t.shape().equals(p.shape())) {
                    throw new IllegalArgumentException(op + ": '" + key + "' is " + t.describe() + " but "
                            + where(i) + " is " + p.describe() + " (shapes differ: was the model changed?)");
                } else if (!t.dtype().isFloatingPoint()) {
                    throw new IllegalArgumentException(op + ": '" + key + "' is " + t.describe()
                            + "; optimizer state is floating point");
                }
                perParam.computeIfAbsent(i, k -> new LinkedHashMap<>()).put(field, t);
            } else if (gm.matches()) {
                int g = parseIndex(op, key, gm.group(1), groups.size(), "group");
                requireScalar(op, key, t);
                double v = t.item();
                requireNonNegative(op + ": '" + key + "'", v);
                perGroup.computeIfAbsent(g, k -> new LinkedHashMap<>()).put(gm.group(2), v);
            } else if (key.equals("optimizer.step_count")) {
                requireScalar(op, key, t);
                savedSteps = t.item();
            } else if (!key.startsWith("options.")) {
                throw new IllegalArgumentException(op + ": unknown entry '" + key + "' (expected state.<i>.<name>,"
                        + " group.<g>.lr|initial_lr|weight_decay, optimizer.step_count or options.<name>)");
            }
        }
        for (Map.Entry<Integer, Map<String, Tensor>> e : perParam.entrySet()) {
            List<String> missing = new ArrayList<>();
            for (String s : names) {
                if (!e.getValue().containsKey(s)) {
                    missing.add("state." + e.getKey() + "." + s);
                }
            }
            if (!e.getValue().containsKey("step")) {
                missing.add("state." + e.getKey() + ".step");
            }
            if (!missing.isEmpty()) {
                throw new IllegalArgumentException(op + ": the state of " + where(e.getKey()) + " is incomplete: "
                        + "missing " + missing);
            }
        }
        // apply
        try (Scope detached = Scope.detached()) {
            for (Map.Entry<Integer, Map<String, Tensor>> e : perParam.entrySet()) {
                int i = e.getKey();
                Tensor p = params.get(i);
                if (states[i] == null) {
                    states[i] = new ParamState(names.size());
                }
                ParamState st = states[i];
                for (int k = 0; k < names.size(); k++) {
                    if (st.tensors[k] == null) {
                        st.tensors[k] = Tensor.empty(p.dtype(), p.device(), p.dims());
                    }
                    st.tensors[k].copyFrom(e.getValue().get(names.get(k)));
                }
                st.step = (long) e.getValue().get("step").item();
            }
        }
        for (Map.Entry<Integer, Map<String, Double>> e : perGroup.entrySet()) {
            ParamGroup g = groups.get(e.getKey());
            Map<String, Double> v = e.getValue();
            if (v.containsKey("lr")) {
                g.lr(v.get("lr"));
            }
            if (v.containsKey("initial_lr")) {
                g.initialLr(v.get("initial_lr"));
            }
            if (v.containsKey("weight_decay")) {
                g.weightDecay(v.get("weight_decay"));
            }
        }
        if (savedSteps != null) {
            stepCount = savedSteps.longValue();
        }
    }

    private static int parseIndex(String op, String key, String digits, int count, String what) {
        long v;
        try {
            v = Long.parseLong(digits);
        } catch (NumberFormatException ex) {
            v = Long.MAX_VALUE;
        }
        if (v >= count) {
            throw new IllegalArgumentException(op + ": '" + key + "' names " + what + " " + digits + " but the optimizer has "
                    + count + " " + what + (count == 1 ? "" : "s"));
        }
        return (int) v;
    }

    private static void requireScalar(String op, String key, Tensor t) {
        if (t.numel() != 1) {
            throw new IllegalArgumentException(op + ": '" + key + "' must hold one number, got " + t.describe());
        }
    }

    /** The state tensor {@code stateName} of parameter {@code index}, or null before its first step. */
    public Tensor stateTensor(int index, String stateName) {
        int k = stateNames().indexOf(stateName);
        if (k < 0) {
            throw new IllegalArgumentException(name + ": no state named '" + stateName + "' (has " + stateNames() + ")");
        }
        ParamState st = states[index];
        return st == null ? null : st.tensors[k];
    }

    /** Step count of parameter {@code index} (0 before its first update). */
    public long paramStep(int index) {
        ParamState st = states[index];
        return st == null ? 0 : st.step;
    }

    /** Frees the state tensors; the parameters are untouched. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (ParamState st : states) {
            if (st != null) {
                st.close();
            }
        }
    }

    @Override
    public String toString() {
        return name + "(" + groups + ", " + options() + ")";
    }
}
