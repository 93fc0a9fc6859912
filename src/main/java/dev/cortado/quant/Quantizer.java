package dev.cortado.quant;

import dev.cortado.autograd.Autograd;
import dev.cortado.io.Batch;
import dev.cortado.io.DataLoader;
import dev.cortado.io.Safetensors;
import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Dropout;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Module;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The quantization workflow on a module tree, after a {@link QuantConfig}:
 * <ol>
 *   <li>{@link #prepare}: each {@link Linear} / {@link Conv2d} the config selects is wrapped in
 *       place, by an {@link Observed} layer (post-training: an observer of its input) or a
 *       {@link FakeQuantized} one (QAT: LSQ fake quantization of its weights and input, with the
 *       optional QuantNAS noise); the float layer's parameters stay the trained ones;</li>
 *   <li>{@link #calibrate}: runs batches through the prepared model (evaluation mode, no
 *       gradients) so that the observers see the activations; for QAT, train the prepared model
 *       instead;</li>
 *   <li>{@link #convert}: inside a {@link Sequential}, a conv followed by {@link BatchNorm2d} has the
 *       normalization folded into its weights and bias, and a following ReLU, erf GELU or SiLU is
 *       fused into the layer's epilogue (the folded and fused modules become {@link Fused} placeholders); each
 *       wrapper becomes a {@link QuantizedLinear} / {@link QuantizedConv2d} running the integer
 *       kernels: weights per output channel (min-max symmetric after PTQ, the learned LSQ step after
 *       QAT), inputs on the calibrated (or learned) uint8 grid.</li>
 * </ol>
 * The quantized model saves and loads through safetensors with its parameters ({@link #save},
 * {@link #load}). The tree is changed in place; the replaced float modules are closed.
 */
public final class Quantizer {
    private Quantizer() {
    }

    // ------------------------------------------------------------------ prepare
    /** Wraps the selected layers of {@code model} (in place) for calibration or QAT; returns {@code model}. */
    public static <M extends Module> M prepare(M model, QuantConfig config) {
        int wrapped = 0;
        for (Map.Entry<String, Module> e : new LinkedHashMap<>(model.namedModules()).entrySet()) {
            String path = e.getKey();
            Module m = e.getValue();
            QuantConfig.Bits bits = config.bitsFor(path, m);
            if (bits == null) {
                continue;
            }
            if (path.isEmpty()) {
                throw new IllegalArgumentException("Quantizer.prepare: the model itself is a " + m.getClass().getSimpleName()
                        + "; wrap it in a container (e.g. Sequential)");
            }
            Module parent = parentOf(model, path);
            if (parent instanceof Observed || parent instanceof FakeQuantized) {
                continue;  // already prepared
            }
            String name = path.substring(path.lastIndexOf('.') + 1);
            Module wrapper = config.mode() == QuantConfig.Mode.POST_TRAINING
                    ? new Observed(m, bits, config.activationObserver(bits.activations()))
                    : new FakeQuantized(m, bits, nonNegativeInput(parent, name), config.noise());
            parent.replaceChild(name, wrapper);
            wrapped++;
        }
        if (wrapped == 0) {
            throw new IllegalArgumentException("Quantizer.prepare: " + config + " selects no Linear or Conv2d layer "
                    + "(not already prepared) of " + model.getClass().getSimpleName());
        }
        return model;
    }

    private static Module parentOf(Module root, String path) {
        Module m = root;
        String[] parts = path.split("\\.");
        for (int i = 0; i < parts.length - 1; i++) {
            m = m.child(parts[i]);
        }
        return m;
    }

    /** Whether the child's input is known to be >= 0: a ReLU before it in a Sequential, only shape ops between. */
    private static boolean nonNegativeInput(Module parent, String name) {
        if (!(parent instanceof Sequential s)) {
            return false;
        }
        for (int i = Integer.parseInt(name) - 1; i >= 0; i--) {
            Module m = s.get(i);
            if (m instanceof Activation.ReLU) {
                return true;
            }
            if (!(m instanceof Pool.MaxPool2d || m instanceof Flatten || m instanceof Dropout)) {
                return false;
            }
        }
        return false;
    }

    // ------------------------------------------------------------------ calibrate
    /**
     * Runs the first {@code batches} batches of {@code loader} through the prepared {@code model}
     * in evaluation mode without gradients: the observers of its {@link Observed} layers see the
     * activations.
     */
    public static void calibrate(Module model, DataLoader loader, int batches) {
        if (batches < 1) {
            throw new IllegalArgumentException("Quantizer.calibrate: batches must be >= 1, got " + batches);
        }
        boolean observed = model.namedModules().values().stream().anyMatch(m -> m instanceof Observed);
        if (!observed) {
            throw new IllegalArgumentException("Quantizer.calibrate: the model has no observed layer; call prepare with a "
                    + "post-training config first");
        }
        model.eval();
        try (Autograd.GradMode off = Autograd.noGrad(); DataLoader.Epoch epoch = loader.epoch(0)) {
            int seen = 0;
            for (Batch b : epoch) {
                if (seen++ == batches) {
                    b.close();
                    break;
                }
                try (b; Scope s = Scope.open()) {
                    model.forward(b.input());
                }
            }
        }
    }

    // ------------------------------------------------------------------ convert
    /**
     * Replaces the prepared layers by quantized ones (batch norm folded, a following ReLU, erf GELU
     * or SiLU fused); returns {@code model}.
     */
    public static <M extends Module> M convert(M model) {
        return convert(model, false);
    }

    private static <M extends Module> M convert(M model, boolean placeholder) {
        model.eval();
        int converted = 0;
        for (Map.Entry<String, Module> e : new LinkedHashMap<>(model.namedModules()).entrySet()) {
            Module m = e.getValue();
            if (!(m instanceof Observed) && !(m instanceof FakeQuantized)) {
                continue;
            }
            String path = e.getKey();
            Module parent = parentOf(model, path);
            String name = path.substring(path.lastIndexOf('.') + 1);
            Module layer = m.child("module");
            // the modules after it in a Sequential: batch norm to fold, then an activation the
            // epilogue computes (ReLU, the erf GELU, SiLU) to fuse
            List<String> fusedNames = new ArrayList<>();
            BatchNorm2d bn = null;
            Convolution.Activation act = Convolution.Activation.NONE;
            if (parent instanceof Sequential s) {
                int i = Integer.parseInt(name) + 1;
                if (layer instanceof Conv2d && i < s.size() && s.get(i) instanceof BatchNorm2d b) {
                    bn = b;
                    fusedNames.add(Integer.toString(i++));
                }
                act = i < s.size() ? epilogueActivation(s.get(i)) : Convolution.Activation.NONE;
                if (act != Convolution.Activation.NONE) {
                    fusedNames.add(Integer.toString(i));
                }
            }
            QuantizedLayer q;
            try (Scope scope = Scope.open()) {
                q = quantized(m, layer, bn, act, placeholder);
            }
            parent.replaceChild(name, q).close();
            for (String f : fusedNames) {
                parent.replaceChild(f, new Fused(name)).close();
            }
            converted++;
        }
        if (converted == 0) {
            throw new IllegalArgumentException("Quantizer.convert: the model has no prepared layer; call prepare first");
        }
        chainCodes(model);
        return model;
    }

    /**
     * In every Sequential of the model, a quantized layer followed by another with only max pooling,
     * flattening, dropout (identity in evaluation) and fused placeholders between them writes its
     * output as uint8 codes on the next layer's input grid (when that grid is the full uint8 range):
     * those modules commute with a one-scale quantization, so the next layer reads the same codes
     * it would have computed from the float output (up to the rounding of the folded scale), and the
     * activations between the two move as bytes instead of float32 and are never quantized again.
     * Not after a fused GELU or SiLU: the folded scale does not commute with them.
     */
    private static void chainCodes(Module model) {
        for (Module m : model.namedModules().values()) {
            if (!(m instanceof Sequential s)) {
                continue;
            }
            for (int i = 0; i < s.size(); i++) {
                if (!(s.get(i) instanceof QuantizedLayer from)) {
                    continue;
                }
                int j = i + 1;
                while (j < s.size() && (s.get(j) instanceof Fused || s.get(j) instanceof Pool.MaxPool2d
                        || s.get(j) instanceof Flatten || s.get(j) instanceof Dropout)) {
                    j++;
                }
                // codes fold the next layer's input scale into the epilogue: ReLU commutes with it, GELU and SiLU not
                boolean homogeneous = from.activation() == Convolution.Activation.NONE
                        || from.activation() == Convolution.Activation.RELU;
                if (homogeneous && j < s.size() && s.get(j) instanceof QuantizedLayer to && to.fullUint8Input()) {
                    from.writeCodesFor(to);
                }
            }
        }
    }


    /** The epilogue activation that computes module {@code m}, or NONE (the tanh GELU, or not an activation the epilogue has). */
    private static Convolution.Activation epilogueActivation(Module m) {
        if (m instanceof Activation.ReLU) {
            return Convolution.Activation.RELU;
        }
        if (m instanceof Activation.GELU g && !g.tanhApproximation()) {
            return Convolution.Activation.GELU;
        }
        if (m instanceof Activation.SiLU) {
            return Convolution.Activation.SILU;
        }
        return Convolution.Activation.NONE;
    }

    private static QuantizedLayer quantized(Module wrapper, Module layer, BatchNorm2d bn, Convolution.Activation act,
                                            boolean placeholder) {
        Tensor weight;
        Tensor bias;
        Tensor w0 = layer instanceof Linear l ? l.weight() : ((Conv2d) layer).weight();
        Tensor b0 = layer instanceof Linear l ? l.bias() : ((Conv2d) layer).bias();
        float[] factor = null;
        if (bn != null) {
            // y = (conv(x) + b - mean) * gamma / sqrt(var + eps) + beta = conv'(x) + b'
            long oc = w0.dims()[0];
            float[] mean = bn.buffer("running_mean").toFloatArray();
            float[] var = bn.buffer("running_var").toFloatArray();
            Tensor g = bn.parameter("weight");
            Tensor be = bn.parameter("bias");
            float[] gamma = g == null ? null : g.toFloatArray();
            float[] beta = be == null ? null : be.toFloatArray();
            float[] b = b0 == null ? new float[(int) oc] : b0.toFloatArray();
            factor = new float[(int) oc];
            float[] nb = new float[(int) oc];
            for (int o = 0; o < oc; o++) {
                double f = (gamma == null ? 1 : gamma[o]) / Math.sqrt(var[o] + bn.eps());
                factor[o] = (float) f;
                nb[o] = (float) ((b[o] - mean[o]) * f + (beta == null ? 0 : beta[o]));
            }
            try (Tensor fv = Tensor.of(factor, w0.device(), oc, 1, 1, 1); Tensor wd = w0.detach()) {
                weight = wd.mul(fv);
            }
            bias = Tensor.of(nb, w0.device(), oc);
        } else {
            weight = w0.detach();
            bias = b0 == null ? null : b0.detach();
        }
        Bitwidth bw = wrapper instanceof Observed o ? new Bitwidth(o.bits(), null, null) : ((FakeQuantized) wrapper).learned(factor);
        try (QuantParams input = placeholder ? placeholderInput(bw) : inputParams(wrapper, bw, w0.device())) {
            if (layer instanceof Linear) {
                return bw.weightScale == null ? QuantizedLinear.fromFloat(weight, bias, input, bw.bits.weights(), act)
                        : QuantizedLinear.fromFloat(weight, bias, input, bw.weightScale, bw.bits.weights(), act);
            }
            Conv2d c = (Conv2d) layer;
            Int8Conv.Geometry g = geometry(c.options(), weight.dims(), c.getClass().getSimpleName());
            DataLayout layout = c.options().layout() == null ? DataLayout.NCHW : c.options().layout();
            return bw.weightScale == null ? QuantizedConv2d.fromFloat(weight, bias, g, layout, input, bw.bits.weights(), act)
                    : QuantizedConv2d.fromFloat(weight, bias, g, layout, input, bw.weightScale, bw.bits.weights(), act);
        }
    }

    /** Bits of a layer and, after QAT, its learned weight scales (float32 [out], batch norm applied) and input scale. */
    private record Bitwidth(QuantConfig.Bits bits, Tensor weightScale, float[] input) {
    }

    private static QuantParams placeholderInput(Bitwidth bw) {
        try (Tensor one = Tensor.of(new float[] {1f}); Tensor zero = Tensor.of(new int[] {0})) {
            return QuantParams.of(QuantScheme.perTensor(DType.UINT8).withRange(0, (1 << bw.bits.activations()) - 1), one, zero);
        }
    }

    private static QuantParams inputParams(Module wrapper, Bitwidth bw, Device device) {
        if (wrapper instanceof Observed o) {
            return o.observer().params(device);
        }
        // LSQ input grid: unsigned [0, 2^b - 1] (z = 0) or signed [-2^(b-1), 2^(b-1) - 1] shifted to uint8 (z = 2^(b-1))
        float s = bw.input[0];
        int z = (int) bw.input[1];
        try (Tensor st = Tensor.of(new float[] {s}, device); Tensor zt = Tensor.of(new int[] {z}, device)) {
            return QuantParams.of(QuantScheme.perTensor(DType.UINT8).withRange(0, (1 << bw.bits.activations()) - 1), st, zt);
        }
    }

    /** The geometry of a Conv2d's options for filters of {@code dims}. */
    static Int8Conv.Geometry geometry(ConvOptions o, long[] dims, String who) {
        if (o.samePadding()) {
            throw new IllegalArgumentException("Quantizer: " + who + " uses 'same' padding; the quantized convolution takes "
                    + "explicit padding");
        }
        long[] s = two(o.stride());
        long[] pb = two(o.padBefore());
        long[] pa = two(o.padAfter());
        long[] d = two(o.dilation());
        return new Int8Conv.Geometry(dims[2], dims[3], s[0], s[1], pb[0], pb[1], pa[0], pa[1], d[0], d[1], o.groups(), dims[0]);
    }

    private static long[] two(long[] v) {
        return v.length == 1 ? new long[] {v[0], v[0]} : new long[] {v[0], v[1]};
    }

    // ------------------------------------------------------------------ save / load
    /** Writes the quantized model's state (integer weights, scales, biases, input parameters) as safetensors. */
    public static void save(Path path, Module quantized) throws IOException {
        Safetensors.write(path, quantized.state(), Map.of("format", "cortado.quantized"));
    }

    /**
     * Loads a quantized model saved by {@link #save}: {@code prepared} is the float model after
     * {@link #prepare} with the config it was quantized with (uncalibrated); it is converted with
     * placeholder parameters, then the file's state replaces them (strictly: every name, shape and
     * dtype must match) and the weights are repacked. Returns {@code prepared}, converted.
     */
    public static <M extends Module> M load(Path path, M prepared) throws IOException {
        convert(prepared, true);
        try (Safetensors.Contents c = Safetensors.read(path, Device.CPU)) {
            prepared.loadState(c.tensors(), true);
        }
        for (Module m : prepared.namedModules().values()) {
            if (m instanceof QuantizedLayer q) {
                q.repack();
            }
        }
        return prepared;
    }

    // ------------------------------------------------------------------ the wrappers
    /** A float layer whose input an observer watches (post-training calibration). */
    public static final class Observed extends Module {
        private final QuantConfig.Bits bits;
        private final Observer observer;

        Observed(Module layer, QuantConfig.Bits bits, Observer observer) {
            registerModule("module", layer);
            this.bits = bits;
            this.observer = observer;
        }

        public QuantConfig.Bits bits() {
            return bits;
        }

        public Observer observer() {
            return observer;
        }

        @Override
        public Tensor forward(Tensor x) {
            try (Autograd.GradMode off = Autograd.noGrad(); Tensor d = x.detach()) {
                observer.observe(d);
            }
            return child("module").forward(x);
        }

        @Override
        protected String extraRepr() {
            return bits + ", " + observer;
        }
    }

    /**
     * A float layer trained with LSQ fake quantization of its weights (signed grid, a learned step
     * per output channel) and its input (a learned step; unsigned grid when the input is known to
     * be non-negative). With QuantNAS noise, while training a random fraction of the weights is
     * replaced by {@code w + s u}, {@code u ~ U(-1/2, 1/2)} (one step of noise), the rest quantized.
     */
    public static final class FakeQuantized extends Module {
        private final QuantConfig.Bits bits;
        private final double noise;
        private final boolean unsignedInput;

        FakeQuantized(Module layer, QuantConfig.Bits bits, boolean unsignedInput, double noise) {
            long out = layer instanceof Linear l ? l.outFeatures() : ((Conv2d) layer).weight().dims()[0];
            registerModule("module", layer);
            registerModule("weight_quantizer", new LsqQuantizer(bits.weights(), false, out));
            registerModule("input_quantizer", new LsqQuantizer(bits.activations(), unsignedInput, 0));
            this.bits = bits;
            this.noise = noise;
            this.unsignedInput = unsignedInput;
        }

        public QuantConfig.Bits bits() {
            return bits;
        }

        private LsqQuantizer weightQuantizer() {
            return (LsqQuantizer) child("weight_quantizer");
        }

        private LsqQuantizer inputQuantizer() {
            return (LsqQuantizer) child("input_quantizer");
        }

        /** The learned scales: weights' (times |batch norm factor| if folded) and the input's {scale, zero point}. */
        Bitwidth learned(float[] factor) {
            float[] ws;
            float in;
            try (Tensor s = weightQuantizer().scale(); Tensor si = inputQuantizer().scale()) {
                ws = s.toFloatArray();
                in = (float) si.item();
            }
            if (factor != null) {
                for (int o = 0; o < ws.length; o++) {
                    ws[o] *= Math.abs(factor[o]);
                }
            }
            float z = unsignedInput ? 0 : 1 << (bits.activations() - 1);
            return new Bitwidth(bits, Tensor.of(ws, ws.length), new float[] {in, z});
        }

        @Override
        public Tensor forward(Tensor x) {
            Module layer = child("module");
            Tensor w = layer instanceof Linear l ? l.weight() : ((Conv2d) layer).weight();
            Tensor b = layer instanceof Linear l ? l.bias() : ((Conv2d) layer).bias();
            try (Scope scope = Scope.open()) {
                Tensor wq = weightQuantizer().forward(w);
                if (noise > 0 && isTraining()) {
                    long[] bd = new long[w.shape().rank()];
                    java.util.Arrays.fill(bd, 1);
                    bd[0] = w.dims()[0];
                    Tensor step;
                    try (Autograd.GradMode off = Autograd.noGrad()) {
                        step = weightQuantizer().scale().reshape(bd);
                    }
                    Tensor u = Generator.global().uniform(-0.5, 0.5, w.dtype(), w.device(), w.dims());
                    Tensor mask = Generator.global().bernoulli(noise, w.dtype(), w.device(), w.dims());
                    Tensor noisy = w.add(u.mul(step));
                    wq = wq.add(mask.mul(noisy.sub(wq)));
                }
                Tensor xq = inputQuantizer().forward(x);
                Tensor y = layer instanceof Linear ? F.linear(xq, wq, b)
                        : Convolution.conv2d(xq, wq, b, ((Conv2d) layer).options());
                return scope.keep(y);
            }
        }

        @Override
        protected String extraRepr() {
            return bits + (unsignedInput ? ", unsigned input" : ", signed input") + (noise > 0 ? ", noise " + noise : "");
        }
    }

    /** The place of a module folded or fused into the quantized layer {@code into}: the identity. */
    public static final class Fused extends Module {
        private final String into;

        Fused(String into) {
            this.into = into;
        }

        @Override
        public Tensor forward(Tensor x) {
            return F.identity(x);
        }

        @Override
        protected String extraRepr() {
            return "into " + into;
        }
    }
}
