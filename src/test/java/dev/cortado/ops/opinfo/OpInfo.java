package dev.cortado.ops.opinfo;

import dev.cortado.autograd.GradCheck;
import dev.cortado.ops.Op;
import dev.cortado.ops.OpRegistry;
import dev.cortado.ops.TensorSpec;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.DeviceType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * The test-side description of one registered op, in the style of PyTorch's OpInfo: sample
 * inputs, an independent float64 reference, the dtypes it is checked in with a tolerance for
 * each, how its gradient is checked, and a one-line description for the op table
 * ({@code docs/reference/ops.md}). {@link OpInfoTest} walks {@link OpRegistry#all()} and fails
 * for an op without an entry; {@link OpInfoCudaTest} runs the same samples on CUDA.
 *
 * <p>Tolerance: output element i passes when {@code |got - want| <= rel*|want_i| + abs*scale},
 * with scale the largest |want| of that output, so the bound follows the reference's magnitude
 * and an output of zeros (or garbage) fails; integer and bool outputs must match exactly.
 */
public final class OpInfo {

    /** Sample inputs for a dtype, drawn from {@code random} (fresh values, never zeros). */
    @FunctionalInterface
    public interface Samples {
        List<Sample> of(Random random, DType dtype);
    }

    /**
     * Expected outputs (row-major, one array per op output; null skips an output) from the stored
     * inputs, followed by the expected contents of the inputs the op writes in place ({@link Builder#inPlace}).
     */
    @FunctionalInterface
    public interface Ref {
        double[][] outputs(Sample sample, double[][] inputs);
    }

    /**
     * The gradients a surrogate backward rule must give: one array per input (null where the input
     * takes none), from the float64 inputs and the output gradient {@code g}.
     */
    @FunctionalInterface
    public interface GradRef {
        double[][] gradients(Sample sample, double[][] inputs, double[] g);
    }

    /** How the gradient is verified. */
    public enum Grad {
        /** GradCheck (float64 finite differences) on the samples: the op has a backward rule. */
        CHECK,
        /**
         * The op's gradient is a declared surrogate, not its derivative (a straight-through estimator
         * is 0 almost everywhere by finite differences): the backward rule is compared with a float64
         * reference of that surrogate for a random output gradient ({@link Builder#surrogateGradient}).
         */
        SURROGATE,
        /** The op is itself a backward rule: checked through the gradient check of another op. */
        COVERED_BY,
        /** No derivative (integer/bool results, random numbers, a gradient formula only used inside backward). */
        NONE
    }

    private final String name;
    private final String family;
    private final String description;
    private final Samples samples;
    private final Ref reference;
    private final Map<DType, Tol> tolerances;
    private final Map<DType, Tol> cudaTolerances;
    private final Grad grad;
    private final String gradNote;
    private final GradCheck.Options gradOptions;
    private final GradRef surrogate;
    private final boolean cudaTwin;
    private final int[] inPlace;

    private OpInfo(Builder b) {
        this.name = b.name;
        this.family = b.family;
        this.description = b.description;
        this.samples = b.samples;
        this.reference = b.reference;
        this.tolerances = b.tolerances;
        this.cudaTolerances = new EnumMap<>(b.tolerances);
        this.cudaTolerances.putAll(b.cudaTolerances);
        this.grad = b.grad;
        this.gradNote = b.gradNote;
        this.gradOptions = b.gradOptions;
        this.surrogate = b.surrogate;
        this.cudaTwin = b.cudaTwin;
        this.inPlace = b.inPlace;
    }

    public static Builder of(String name, String family, String description) {
        return new Builder(name, family, description);
    }

    public String name() {
        return name;
    }

    public String family() {
        return family;
    }

    public String description() {
        return description;
    }

    /** Dtypes the samples run in on the CPU. */
    public List<DType> dtypes() {
        return List.copyOf(tolerances.keySet());
    }

    /** Dtypes the samples run in on {@code device} (CUDA adds those declared with {@link Builder#cuda}). */
    public List<DType> dtypes(Device device) {
        return List.copyOf(tolerancesOn(device).keySet());
    }

    private Map<DType, Tol> tolerancesOn(Device device) {
        return device.type() == DeviceType.CUDA ? cudaTolerances : tolerances;
    }

    public Grad grad() {
        return grad;
    }

    /** For COVERED_BY: the op whose gradient check covers this one; for NONE: why it has no derivative. */
    public String gradNote() {
        return gradNote;
    }

    /** Whether {@link OpInfoCudaTest} runs these samples on CUDA. */
    public boolean cudaTwin() {
        return cudaTwin;
    }

    public List<Sample> samples(long seed, DType dtype) {
        return samples.of(new Random(seed), dtype);
    }

    public Op<?> op() {
        return OpRegistry.get(name);
    }

    // ------------------------------------------------------------------ running
    /** Runs the sample on {@code device} in {@code dtype} and compares every output with the float64 reference. */
    public void checkAgainstReference(Sample s, DType dtype, Device device) {
        String what = name + " " + dtype.name().toLowerCase() + " on " + device + ": " + s;
        double[][] want = reference.outputs(s, s.stored());
        try (Scope scope = Scope.open()) {
            Tensor[] in = inputs(s, device);
            Tensor[] out = callOp(s.attrs(), in, device);
            if (want.length != out.length + inPlace.length) {
                throw new AssertionError(what + ": the reference gives " + want.length + " arrays for " + out.length
                        + " outputs and " + inPlace.length + " inputs written in place");
            }
            for (int k = 0; k < want.length; k++) {
                if (want[k] == null) {
                    continue;
                }
                Tensor r = k < out.length ? out[k] : in[inPlace[k - out.length]];
                Tensor o = r.device().equals(Device.CPU) ? r : r.to(Device.CPU);
                double[] got = Reference.values(o);
                String w = what + " output " + k;
                if (!o.dtype().isFloatingPoint()) {
                    Reference.assertExact(want[k], got, w);
                } else {
                    assertNear(want[k], got, outputTolerance(tolerancesOn(device).get(dtype), dtype, o.dtype()), w);
                }
            }
        }
    }

    /**
     * The sample dtype's tolerance, loosened to float32 rounding (2^-24 relative, 1e-6 with margin)
     * for an output stored in float32 while the inputs are float64 (e.g. saved statistics).
     */
    private static Tol outputTolerance(Tol t, DType sample, DType output) {
        if (output == DType.FLOAT32 && sample == DType.FLOAT64) {
            return new Tol(Math.max(t.rel(), 1e-6), Math.max(t.abs(), 1e-6));
        }
        return t;
    }

    /** Whether the op gives a floating output on the first sample (shape rule only, nothing runs). */
    @SuppressWarnings("unchecked")
    public boolean floatingOutputs() {
        DType t = dtypes().get(0);
        Sample s = samples(0, t).get(0);
        try (Scope scope = Scope.open()) {
            for (TensorSpec spec : ((Op<Object>) op()).infer(s.attrs(), inputs(s, Device.CPU))) {
                if (spec.dtype().isFloatingPoint()) {
                    return true;
                }
            }
            return false;
        }
    }

    /** Gradient check of the sample in float64 (contiguous inputs). */
    public void checkGradient(Sample s) {
        Sample s64 = s.as(DType.FLOAT64);
        try (Scope scope = Scope.open()) {
            Tensor[] in = new Tensor[s64.args().length];
            for (int i = 0; i < in.length; i++) {
                Arg a = s64.args()[i];
                if (a != null) {
                    in[i] = a.contiguous().tensor(Device.CPU);
                    if (a.grad() && a.dtype().isFloatingPoint()) {
                        in[i].requiresGrad(true);
                    }
                }
            }
            GradCheck.check(name + " " + s.label(), gradOptions, x -> callOp(s.attrs(), x, Device.CPU)[s.gradOutput()], in);
        }
    }

    /**
     * The backward rule against the declared surrogate gradient, in float64 (contiguous inputs): a
     * random output gradient seeds the backward; every input that takes a gradient must get the
     * reference's within 1e-5 relative (the kernels compute in float32) plus 1e-6 of the largest.
     */
    public void checkSurrogateGradient(Sample s, long seed) {
        Sample s64 = s.as(DType.FLOAT64);
        double[][] values = new double[s64.args().length][];
        try (Scope scope = Scope.open()) {
            Tensor[] in = new Tensor[s64.args().length];
            for (int i = 0; i < in.length; i++) {
                Arg a = s64.args()[i];
                if (a != null) {
                    values[i] = a.values();
                    in[i] = a.contiguous().tensor(Device.CPU);
                    if (a.grad() && a.dtype().isFloatingPoint()) {
                        in[i].requiresGrad(true);
                    }
                }
            }
            Tensor y = callOp(s.attrs(), in, Device.CPU)[s.gradOutput()];
            java.util.Random r = new java.util.Random(seed);
            double[] g = new double[(int) y.numel()];
            for (int i = 0; i < g.length; i++) {
                g[i] = 2 * r.nextDouble() - 1;
            }
            Tensor seedTensor = Tensor.of(g, y.dims()).to(y.dtype());
            y.backward(seedTensor, false);
            double[][] want = surrogate.gradients(s64, values, g);
            for (int i = 0; i < in.length; i++) {
                if (want[i] == null) {
                    continue;
                }
                if (in[i] == null || in[i].grad() == null) {
                    throw new AssertionError(name + " " + s.label() + ": input " + i + " got no gradient");
                }
                assertNear(want[i], in[i].grad().toDoubleArray(), new Tol(1e-5, 1e-6),
                        name + " " + s.label() + ": gradient of input " + i + " against the surrogate");
            }
        }
    }

    private static Tensor[] inputs(Sample s, Device device) {
        Tensor[] in = new Tensor[s.args().length];
        for (int i = 0; i < in.length; i++) {
            in[i] = s.args()[i] == null ? null : s.args()[i].tensor(device);
        }
        return in;
    }

    @SuppressWarnings("unchecked")
    private Tensor[] callOp(Object attrs, Tensor[] in, Device device) {
        Op<Object> op = (Op<Object>) op();
        boolean any = false;
        for (Tensor t : in) {
            any |= t != null;
        }
        return any ? op.callMulti(attrs, in) : new Tensor[] {op.callOn(device, attrs, in)};
    }

    /** |got - want| <= rel*|want_i| + abs*max|want| elementwise; NaN matches NaN, infinities exactly. */
    static void assertNear(double[] want, double[] got, Tol tol, String what) {
        if (want.length != got.length) {
            throw new AssertionError(what + ": " + got.length + " elements, the reference has " + want.length);
        }
        double scale = 0;
        for (double w : want) {
            if (Double.isFinite(w)) {
                scale = Math.max(scale, Math.abs(w));
            }
        }
        if (scale == 0) { // an all-zero reference (e.g. an empty sum): only exact zeros pass
            tol = new Tol(0, 0);
        }
        for (int i = 0; i < want.length; i++) {
            double w = want[i];
            double g = got[i];
            boolean ok = Reference.within(w, g, tol.rel() * Math.abs(w) + tol.abs() * scale);
            if (!ok) {
                throw new AssertionError(what + ": element " + i + " is " + g + ", the float64 reference gives " + w
                        + " (tolerance " + tol.rel() + "*|want| + " + tol.abs() + "*" + scale + ")");
            }
        }
    }

    // ------------------------------------------------------------------ declaring
    /** Builds an entry; float64 is always checked (tolerance 1e-10 unless given). */
    public static final class Builder {
        private final String name;
        private final String family;
        private final String description;
        private Samples samples;
        private Ref reference;
        private final Map<DType, Tol> tolerances = new EnumMap<>(DType.class);
        private final Map<DType, Tol> cudaTolerances = new EnumMap<>(DType.class);
        private Grad grad;
        private String gradNote = "";
        private GradCheck.Options gradOptions = new GradCheck.Options(1e-6, 1e-6, 1e-5, 24, 7);
        private GradRef surrogate;
        private boolean cudaTwin = true;
        private int[] inPlace = new int[0];

        private Builder(String name, String family, String description) {
            this.name = name;
            this.family = family;
            this.description = description;
        }

        public Builder samples(Samples s) {
            samples = s;
            return this;
        }

        public Builder reference(Ref r) {
            reference = r;
            return this;
        }

        /** Checks the op in {@code t} with tolerance rel*|want| + abs*max|want|. */
        public Builder dtype(DType t, double rel, double abs) {
            tolerances.put(t, new Tol(rel, abs));
            return this;
        }

        /** The tolerance on CUDA where it differs (TF32 tensor cores), or a dtype only CUDA supports. */
        public Builder cuda(DType t, double rel, double abs) {
            cudaTolerances.put(t, new Tol(rel, abs));
            return this;
        }

        /** float64 1e-10, float32 {@code f32}*(1, 1) relative to the output's magnitude. */
        public Builder floats(double f32) {
            return dtype(DType.FLOAT64, 1e-10, 1e-10).dtype(DType.FLOAT32, f32, f32);
        }

        /** bfloat16 (8-bit significand: 2^-9 rounding) and float16 (2^-12), computed in float32. */
        public Builder halves(double bf16, double f16) {
            return dtype(DType.BFLOAT16, bf16, bf16).dtype(DType.FLOAT16, f16, f16);
        }

        public Builder gradCheck() {
            grad = Grad.CHECK;
            return this;
        }

        public Builder gradCheck(double atol, double rtol) {
            gradOptions = gradOptions.withTolerance(atol, rtol);
            return gradCheck();
        }

        /** The backward rule is the surrogate {@code rule} (named in the op table), checked against {@code ref}. */
        public Builder surrogateGradient(String rule, GradRef ref) {
            grad = Grad.SURROGATE;
            gradNote = rule;
            surrogate = ref;
            return this;
        }

        public Builder coveredBy(String forwardOp) {
            grad = Grad.COVERED_BY;
            gradNote = forwardOp;
            return this;
        }

        public Builder notDifferentiable(String why) {
            grad = Grad.NONE;
            gradNote = why;
            return this;
        }

        /** Inputs the op writes in place: the reference gives their contents after the call, after the outputs. */
        public Builder inPlace(int... inputs) {
            inPlace = inputs.clone();
            return this;
        }

        /** Leaves the op out of the CUDA twin (the walk then fails if the op has a CUDA kernel). */
        public Builder noCudaTwin() {
            cudaTwin = false;
            return this;
        }

        public OpInfo build() {
            if (samples == null || reference == null || grad == null) {
                throw new IllegalStateException("OpInfo " + name + " needs samples, a reference and a gradient declaration");
            }
            if (tolerances.isEmpty()) {
                throw new IllegalStateException("OpInfo " + name + " checks no dtype");
            }
            return new OpInfo(this);
        }
    }
}
