package dev.cortado.ops;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.DeviceType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import dev.cortado.tensor.TensorTracer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * The single declaration of an op: its name, its tensor inputs, the rule that gives its
 * outputs' shapes and dtypes from the inputs and attributes (broadcasting, type promotion,
 * validation with messages naming the op), one kernel per backend, and the backward rule
 * (declared here, filled by the training work). Eager calls, autograd and graph capture all go
 * through these declarations; adding an op means writing its declaration and its kernels.
 *
 * @param <A> the op's attributes (a record, or {@link Void} when it has none)
 */
public final class Op<A> {

    /** Output shapes and dtypes from inputs and attributes; throws for invalid arguments. */
    @FunctionalInterface
    public interface ShapeRule<A> {
        TensorSpec[] infer(Op<A> op, A attrs, Tensor[] inputs);
    }

    /** A backend's implementation: reads {@code inputs}, writes the preallocated {@code outputs}. */
    @FunctionalInterface
    public interface Kernel<A> {
        void run(A attrs, Tensor[] inputs, Tensor[] outputs);
    }

    /**
     * Gradients of the inputs (null where an input takes none, or where
     * {@link Saved#needsGradient} is false) from the outputs' gradients (null for an output no
     * gradient reached). Written with ops, so the rule runs on every backend that has them.
     * The returned tensors are new (the tape closes them).
     */
    @FunctionalInterface
    public interface BackwardRule<A> {
        Tensor[] backward(A attrs, Saved saved, Tensor[] outputGradients);
    }

    /** What the forward keeps for its backward rule. */
    public enum Saves {
        NOTHING, INPUTS, OUTPUTS, INPUTS_AND_OUTPUTS;

        public boolean inputs() {
            return this == INPUTS || this == INPUTS_AND_OUTPUTS;
        }

        public boolean outputs() {
            return this == OUTPUTS || this == INPUTS_AND_OUTPUTS;
        }
    }

    /** The forward's tensors as a backward rule sees them. */
    public interface Saved {
        /** Saved input {@code i} (null for an absent optional input); throws if inputs were not saved. */
        Tensor input(int i);

        /** Saved output {@code i}; throws if outputs were not saved. */
        Tensor output(int i);

        /** Always known, saved or not. */
        Shape inputShape(int i);

        DType inputDType(int i);

        /** Whether input {@code i} takes a gradient (the rule may skip the others). */
        boolean needsGradient(int i);

        int inputCount();
    }

    /** Records calls on the autograd tape; installed by {@code dev.cortado.autograd}. */
    public interface Recorder {
        <A> void record(Op<A> op, A attrs, Tensor[] inputs, Tensor[] outputs);

        /** Whether a call on this thread would be recorded now (gradients enabled). */
        boolean recording();
    }

    /**
     * Sees every op call on a thread while a graph is captured ({@code dev.cortado.graph}): the
     * capture's {@link TensorTracer} implements it too and is installed through
     * {@link TensorTracer#install}, so a call costs one volatile read when nothing is captured.
     */
    public interface Tracer {
        /** The kernel of a call starts: what it does inside (views, other ops) is not part of the graph. */
        void enterKernel();

        void exitKernel();

        /** A call completed: {@code inputs} as the kernel saw them (after autocast), its new {@code outputs}. */
        <A> void called(Op<A> op, A attrs, Tensor[] inputs, Tensor[] outputs);
    }

    private static volatile Recorder recorder;

    /**
     * Whether a call with {@code x} among its inputs can be asked for a gradient: the tape records
     * on this thread and x requires one. Ops whose outputs only a backward needs (max pooling's
     * indices) skip them otherwise.
     */
    public static boolean gradientPossible(Tensor x) {
        Recorder r = recorder;
        return r != null && x.requiresGrad() && r.recording();
    }

    /** Installs the tape (called once by the autograd package). */
    public static void installRecorder(Recorder r) {
        recorder = r;
    }

    private final String name;
    private final List<String> inputNames;
    private final int requiredInputs;
    private final boolean variadic;
    private final ShapeRule<A> shapeRule;
    private final Kernel<A>[] kernels;
    private final BackwardRule<A> backward;
    private final Saves saves;
    private final int[] autocastInputs;

    @SuppressWarnings("unchecked")
    private Op(Builder<A> b) {
        this.name = b.name;
        this.inputNames = List.copyOf(b.inputNames);
        this.requiredInputs = b.requiredInputs < 0 ? b.inputNames.size() : b.requiredInputs;
        this.variadic = b.variadic;
        this.shapeRule = b.shapeRule;
        this.kernels = new Kernel[DeviceType.values().length];
        for (Map.Entry<DeviceType, Kernel<A>> e : b.kernels.entrySet()) {
            kernels[e.getKey().ordinal()] = e.getValue();
        }
        this.backward = b.backward;
        this.saves = b.saves;
        this.autocastInputs = b.autocastInputs;
    }

    public static <A> Builder<A> declare(String name) {
        return new Builder<>(name);
    }

    public String name() {
        return name;
    }

    public List<String> inputNames() {
        return inputNames;
    }

    /** Backends with a kernel for this op. */
    public List<DeviceType> backends() {
        List<DeviceType> out = new ArrayList<>();
        for (DeviceType t : DeviceType.values()) {
            if (kernels[t.ordinal()] != null) {
                out.add(t);
            }
        }
        return Collections.unmodifiableList(out);
    }

    /** The backward rule, or null while none is declared. */
    public BackwardRule<A> backward() {
        return backward;
    }

    /** What the forward keeps for the backward rule. */
    public Saves saves() {
        return saves;
    }

    /** The kernel for {@code backend}, or null: the graph executor resolves it once per compiled node. */
    public Kernel<A> kernel(DeviceType backend) {
        return kernels[backend.ordinal()];
    }

    /** Whether input {@code i} may be absent (null). */
    public boolean isOptionalInput(int i) {
        return i >= requiredInputs;
    }

    /** Output shapes and dtypes for these inputs, without running anything (graph capture uses it). */
    public TensorSpec[] infer(A attrs, Tensor... inputs) {
        checkInputs(inputs);
        return shapeRule.infer(this, attrs, inputs);
    }

    /** Runs the op eagerly on the device of its inputs; returns its single output. */
    public Tensor call(A attrs, Tensor... inputs) {
        return invoke(deviceOf(inputs), attrs, inputs)[0];
    }

    /** Runs the op eagerly on the device of its inputs; returns all outputs. */
    public Tensor[] callMulti(A attrs, Tensor... inputs) {
        return invoke(deviceOf(inputs), attrs, inputs);
    }

    /** Runs the op on {@code device}: for ops without tensor inputs (random, creation). */
    public Tensor callOn(Device device, A attrs, Tensor... inputs) {
        return invoke(device, attrs, inputs)[0];
    }

    private Device deviceOf(Tensor[] inputs) {
        for (Tensor t : inputs) {
            if (t != null) {
                return t.device();
            }
        }
        throw new IllegalArgumentException(name + ": needs at least one tensor input");
    }

    private void checkInputs(Tensor[] inputs) {
        if (inputs.length < requiredInputs || (!variadic && inputs.length > inputNames.size())) {
            throw new IllegalArgumentException(name + ": expected " + (variadic ? "at least " : "")
                    + requiredInputs + " inputs " + inputNames + ", got " + inputs.length);
        }
        Device device = null;
        int first = -1;
        for (int i = 0; i < inputs.length; i++) {
            Tensor t = inputs[i];
            if (t == null) {
                if (!isOptionalInput(i) || i >= inputNames.size()) {   // a variadic tail has no optional slots
                    throw new IllegalArgumentException(name + ": input '" + inputName(i) + "' is required (got null)");
                }
                continue;
            }
            t.ensureOpen(name + "(" + inputName(i) + ")");
            t.requireStrided(name);
            if (device == null) {
                device = t.device();
                first = i;
            } else if (!device.equals(t.device())) {
                throw new IllegalArgumentException(name + ": input '" + inputName(i) + "' (" + t.describe()
                        + ") is on another device than input '" + inputName(first) + "' (" + inputs[first].describe()
                        + "); move it with to(" + device + ")");
            }
        }
    }

    /** The declared name of input {@code i} (variadic inputs are numbered). */
    public String inputName(int i) {
        if (i < inputNames.size()) {
            return inputNames.get(i);
        }
        return inputNames.get(inputNames.size() - 1) + i;
    }

    private Tensor[] invoke(Device device, A attrs, Tensor[] given) {
        checkInputs(given);
        Tensor[] inputs = Autocast.cast(autocastInputs, given);
        try {
            return invokeChecked(device, attrs, inputs);
        } finally {
            if (inputs != given) {
                for (int i = 0; i < inputs.length; i++) {
                    if (inputs[i] != given[i]) {
                        inputs[i].close();
                    }
                }
            }
        }
    }

    private Tensor[] invokeChecked(Device device, A attrs, Tensor[] inputs) {
        for (Tensor t : inputs) {
            if (t != null && !t.device().equals(device)) {
                throw new IllegalArgumentException(name + ": input " + t.describe() + " is not on " + device);
            }
        }
        Kernel<A> kernel = kernels[device.type().ordinal()];
        if (kernel == null) {
            throw new UnsupportedOperationException(name + " has no kernel for " + device.type()
                    + " (available: " + backends() + ")");
        }
        TensorSpec[] specs = shapeRule.infer(this, attrs, inputs);
        Tensor[] outputs = new Tensor[specs.length];
        try {
            for (int i = 0; i < specs.length; i++) {
                outputs[i] = Tensor.empty(specs[i].dtype(), device, specs[i].shape());
            }
            Tracer tracer = TensorTracer.current() instanceof Tracer t ? t : null;
            if (tracer == null) {
                kernel.run(attrs, inputs, outputs);
            } else {
                tracer.enterKernel();
                try {
                    kernel.run(attrs, inputs, outputs);
                } finally {
                    tracer.exitKernel();
                }
                tracer.called(this, attrs, inputs, outputs);
            }
            Recorder r = recorder;
            if (r != null && anyRequiresGrad(inputs)) {
                r.record(this, attrs, inputs, outputs);
            }
        } catch (RuntimeException | Error e) {
            for (Tensor t : outputs) {
                if (t != null) {
                    t.close();
                }
            }
            throw e;
        }
        return outputs;
    }

    private static boolean anyRequiresGrad(Tensor[] inputs) {
        for (Tensor t : inputs) {
            if (t != null && t.requiresGrad()) {
                return true;
            }
        }
        return false;
    }

    /** An IllegalArgumentException that names this op: {@code add: ...}. */
    public IllegalArgumentException error(String message) {
        return new IllegalArgumentException(name + ": " + message);
    }

    /** Throws unless {@code t}'s dtype is one of {@code allowed}. */
    public void requireDType(String input, Tensor t, DType... allowed) {
        for (DType d : allowed) {
            if (t.dtype() == d) {
                return;
            }
        }
        throw new IllegalArgumentException(name + ": input '" + input + "' has dtype " + t.dtype() + " (" + t.describe()
                + "); expected one of " + Arrays.toString(allowed));
    }

    /** Throws unless {@code t} has {@code like}'s shape and dtype (a gradient {@code g} of an input {@code x}). */
    public void requireLike(String input, Tensor t, String likeName, Tensor like) {
        if (!t.shape().equals(like.shape()) || t.dtype() != like.dtype()) {
            throw error(input + " " + t.describe() + " must have " + likeName + "'s shape and dtype (" + likeName + " "
                    + like.describe() + ")");
        }
    }

    /** NumPy broadcasting of two shapes; the error names this op. */
    public Shape broadcast(Shape a, Shape b) {
        try {
            return Shape.broadcast(a, b);
        } catch (IllegalArgumentException e) {
            throw error(e.getMessage());
        }
    }

    /** Single-output spec helper. */
    public static TensorSpec[] one(Shape shape, DType dtype) {
        return new TensorSpec[] {new TensorSpec(shape, dtype)};
    }

    @Override
    public String toString() {
        return "Op(" + name + inputNames + ", backends " + backends() + (backward != null ? ", differentiable" : "") + ")";
    }

    /** Builds and registers a declaration. */
    public static final class Builder<A> {
        private final String name;
        private final List<String> inputNames = new ArrayList<>();
        private int requiredInputs = -1;
        private boolean variadic;
        private ShapeRule<A> shapeRule;
        private final EnumMap<DeviceType, Kernel<A>> kernels = new EnumMap<>(DeviceType.class);
        private BackwardRule<A> backward;
        private Saves saves = Saves.NOTHING;
        private int[] autocastInputs;

        private Builder(String name) {
            this.name = name;
        }

        /** Names of the tensor inputs, in order. */
        public Builder<A> inputs(String... names) {
            inputNames.addAll(Arrays.asList(names));
            return this;
        }

        /** The first {@code n} inputs are required; later ones may be null. */
        public Builder<A> required(int n) {
            requiredInputs = n;
            return this;
        }

        /** The last input may repeat (concat). */
        public Builder<A> variadic() {
            variadic = true;
            return this;
        }

        public Builder<A> shape(ShapeRule<A> rule) {
            shapeRule = rule;
            return this;
        }

        public Builder<A> kernel(DeviceType backend, Kernel<A> kernel) {
            kernels.put(backend, kernel);
            return this;
        }

        /**
         * One kernel body for every backend: it reaches the device's kernels through
         * {@link Launch#on} (the native interface gives both backends the same signatures).
         */
        public Builder<A> kernels(Kernel<A> kernel) {
            for (DeviceType t : DeviceType.values()) {
                kernels.put(t, kernel);
            }
            return this;
        }

        /** The backward rule, and which forward tensors it reads. */
        public Builder<A> backward(Saves saved, BackwardRule<A> rule) {
            saves = saved;
            backward = rule;
            return this;
        }

        /** Inputs that {@link Autocast} converts from float32 to its 16-bit dtype. */
        public Builder<A> autocast(int... inputs) {
            autocastInputs = inputs.clone();
            return this;
        }

        public Op<A> register() {
            if (shapeRule == null || kernels.isEmpty()) {
                throw new IllegalStateException("op " + name + " needs a shape rule and at least one kernel");
            }
            Op<A> op = new Op<>(this);
            OpRegistry.add(op);
            return op;
        }
    }
}
