package dev.cortado.graph;

import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.kernels.NativeArgs;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.backend.kernels.NativeCodes.Binary;
import dev.cortado.backend.kernels.NativeCodes.Unary;
import dev.cortado.ops.Launch;
import dev.cortado.ops.Op;
import dev.cortado.ops.StridedPlan;
import dev.cortado.ops.TensorSpec;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.DeviceType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The op {@code fused_elementwise}: a chain of elementwise ops run as one pass over memory by
 * the interpreter of {@code native/cpu/fused_elementwise.cpp}. Its attribute is a {@link Program}
 * (what {@link ElementwiseFusion} writes); its inputs are the chain's inputs, broadcast to one
 * iteration shape (the outputs' shape), all of the program's dtype (float32, float64, float16
 * or bfloat16); its outputs are the chain's values read outside it. A graph op only: it has no
 * backward rule (fusion runs on captured graphs, after the backward was captured).
 */
public final class FusedElementwise {
    private FusedElementwise() {
    }

    /** One instruction of a {@link Program} ({@code native/include/cortado/fused.h}). */
    public enum Kind {
        LOAD(NativeCodes.FUSED_LOAD), CONST(NativeCodes.FUSED_CONST), UNARY(NativeCodes.FUSED_UNARY),
        BINARY(NativeCodes.FUSED_BINARY), STORE(NativeCodes.FUSED_STORE);

        final int code;

        Kind(int code) {
            this.code = code;
        }
    }

    /** Registers of a program, inputs, outputs and instructions at most (the native limits). */
    public static final int MAX_REGISTERS = NativeCodes.FUSED_MAX_REGS;
    public static final int MAX_INPUTS = NativeCodes.FUSED_MAX_INPUTS;
    public static final int MAX_OUTPUTS = NativeCodes.FUSED_MAX_OUTPUTS;
    public static final int MAX_INSTRUCTIONS = NativeCodes.FUSED_MAX_INSTRUCTIONS;

    /**
     * A fused program: instructions {@code {kind, code, dst, a, b}} over registers, with two
     * parameters each (a constant's value; a unary op's p0 and p1). Immutable; equal programs have
     * equal text ({@link #toString()}, which is also how the CUDA source is cached).
     */
    public static final class Program {
        private final long[] code;
        private final double[] params;
        private final int inputs;
        private final int outputs;
        private final String text;

        private Program(long[] code, double[] params, int inputs, int outputs) {
            this.code = code;
            this.params = params;
            this.inputs = inputs;
            this.outputs = outputs;
            this.text = render();
        }

        /** Instructions. */
        public int size() {
            return code.length / NativeCodes.FUSED_FIELDS;
        }

        public int inputs() {
            return inputs;
        }

        public int outputs() {
            return outputs;
        }

        /** The encoded instructions, {@code FUSED_FIELDS} longs each (a copy). */
        public long[] code() {
            return code.clone();
        }

        /** Two parameters per instruction (a copy). */
        public double[] params() {
            return params.clone();
        }

        public Kind kind(int i) {
            return Kind.values()[(int) code[i * NativeCodes.FUSED_FIELDS]];
        }

        /** Field {@code f} (0 kind, 1 op code, 2 dst, 3 a, 4 b) of instruction {@code i}. */
        public int field(int i, int f) {
            return (int) code[i * NativeCodes.FUSED_FIELDS + f];
        }

        public double param(int i, int k) {
            return params[2 * i + k];
        }

        private String render() {
            StringBuilder s = new StringBuilder("{");
            for (int i = 0; i < size(); i++) {
                int dst = field(i, 2);
                int a = field(i, 3);
                s.append(i == 0 ? "" : "; ");
                switch (kind(i)) {
                    case LOAD -> s.append('r').append(dst).append("=in").append(a);
                    case CONST -> s.append('r').append(dst).append('=').append(param(i, 0));
                    case UNARY -> {
                        s.append('r').append(dst).append('=').append(Unary.name(field(i, 1))).append("(r").append(a);
                        if (param(i, 0) != 0 || param(i, 1) != 0) {
                            s.append(", ").append(param(i, 0)).append(", ").append(param(i, 1));
                        }
                        s.append(')');
                    }
                    case BINARY -> s.append('r').append(dst).append('=').append(Binary.name(field(i, 1))).append("(r")
                            .append(a).append(", r").append(field(i, 4)).append(')');
                    case STORE -> s.append("out").append(dst).append("=r").append(a);
                }
            }
            return s.append('}').toString();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Program p && p.text.equals(text) && p.inputs == inputs && p.outputs == outputs;
        }

        @Override
        public int hashCode() {
            return text.hashCode();
        }

        @Override
        public String toString() {
            return text;
        }
    }

    /** Writes a {@link Program}; {@link #build()} checks it like the native interpreter does. */
    public static final class ProgramBuilder {
        private final List<long[]> code = new ArrayList<>();
        private final List<double[]> params = new ArrayList<>();
        private int inputs;
        private int outputs;

        private ProgramBuilder add(Kind k, int op, int dst, int a, int b, double p0, double p1) {
            code.add(new long[] {k.code, op, dst, a, b});
            params.add(new double[] {p0, p1});
            return this;
        }

        public ProgramBuilder load(int dst, int input) {
            inputs = Math.max(inputs, input + 1);
            return add(Kind.LOAD, 0, dst, input, 0, 0, 0);
        }

        public ProgramBuilder constant(int dst, double value) {
            return add(Kind.CONST, 0, dst, 0, 0, value, 0);
        }

        /** {@code r[dst] = op(r[a])}, {@code op} a code of {@link Unary} (ops/unary.def). */
        public ProgramBuilder unary(int op, int dst, int a, double p0, double p1) {
            return add(Kind.UNARY, op, dst, a, 0, p0, p1);
        }

        /** {@code r[dst] = op(r[a], r[b])}, {@code op} a code of {@link Binary} (ops/binary.def). */
        public ProgramBuilder binary(int op, int dst, int a, int b) {
            return add(Kind.BINARY, op, dst, a, b, 0, 0);
        }

        public ProgramBuilder store(int output, int register) {
            outputs = Math.max(outputs, output + 1);
            return add(Kind.STORE, 0, output, register, 0, 0, 0);
        }

        public Program build() {
            long[] c = new long[code.size() * NativeCodes.FUSED_FIELDS];
            double[] p = new double[params.size() * 2];
            for (int i = 0; i < code.size(); i++) {
                System.arraycopy(code.get(i), 0, c, i * NativeCodes.FUSED_FIELDS, NativeCodes.FUSED_FIELDS);
                p[2 * i] = params.get(i)[0];
                p[2 * i + 1] = params.get(i)[1];
            }
            Program prog = new Program(c, p, inputs, outputs);
            String why = problem(prog);
            if (why != null) {
                throw new IllegalArgumentException("fused_elementwise: " + why + " in " + prog);
            }
            return prog;
        }
    }

    public static ProgramBuilder program() {
        return new ProgramBuilder();
    }

    /** The unary op codes a program may use, by op name (every unary.def op but the boolean one). */
    static final Map<String, Integer> UNARY_CODES = new HashMap<>();
    /** The binary op codes a program may use: arithmetic and activation gradients (no comparisons, no logic). */
    static final Map<String, Integer> BINARY_CODES = new HashMap<>();

    static {
        for (int c = 0; c < Unary.COUNT; c++) {
            if (c != Unary.NOT) {
                UNARY_CODES.put(Unary.name(c), c);
            }
        }
        for (int c = 0; c < Binary.COUNT; c++) {
            if (c < Binary.EQ || c > Binary.XOR) {
                BINARY_CODES.put(Binary.name(c), c);
            }
        }
    }

    /** What is wrong with {@code p}, or null: the checks of the native decoder, in Java. */
    static String problem(Program p) {
        int n = p.size();
        if (n < 1 || n > MAX_INSTRUCTIONS) {
            return n + " instructions (1.." + MAX_INSTRUCTIONS + ")";
        }
        if (p.inputs() > MAX_INPUTS || p.outputs() < 1 || p.outputs() > MAX_OUTPUTS) {
            return p.inputs() + " inputs and " + p.outputs() + " outputs (at most " + MAX_INPUTS + " and 1.." + MAX_OUTPUTS + ")";
        }
        boolean[] written = new boolean[MAX_REGISTERS];
        boolean[] stored = new boolean[p.outputs()];
        for (int i = 0; i < n; i++) {
            Kind k = p.kind(i);
            int dst = p.field(i, 2);
            int a = p.field(i, 3);
            int b = p.field(i, 4);
            if (k != Kind.STORE && (dst < 0 || dst >= MAX_REGISTERS)) {
                return "instruction " + i + " writes register " + dst;
            }
            switch (k) {
                case LOAD -> {
                    if (a < 0 || a >= p.inputs()) {
                        return "instruction " + i + " loads input " + a;
                    }
                }
                case UNARY -> {
                    if (!UNARY_CODES.containsValue(p.field(i, 1))) {
                        return "instruction " + i + ": unary op code " + p.field(i, 1) + " is not fusable";
                    }
                    if (a < 0 || a >= MAX_REGISTERS || !written[a]) {
                        return "instruction " + i + " reads register " + a + " before it is written";
                    }
                }
                case BINARY -> {
                    if (!BINARY_CODES.containsValue(p.field(i, 1))) {
                        return "instruction " + i + ": binary op code " + p.field(i, 1) + " is not fusable";
                    }
                    if (a < 0 || a >= MAX_REGISTERS || !written[a] || b < 0 || b >= MAX_REGISTERS || !written[b]) {
                        return "instruction " + i + " reads a register before it is written";
                    }
                }
                case STORE -> {
                    if (dst < 0 || dst >= p.outputs() || a < 0 || a >= MAX_REGISTERS || !written[a]) {
                        return "instruction " + i + " stores a register before it is written";
                    }
                    stored[dst] = true;
                }
                case CONST -> {
                }
            }
            if (k != Kind.STORE) {
                written[dst] = true;
            }
        }
        for (int o = 0; o < stored.length; o++) {
            if (!stored[o]) {
                return "output " + o + " is never stored";
            }
        }
        return null;
    }

    /**
     * The declaration. Shape rule: the inputs broadcast together give the outputs' shape; every
     * input has the program's dtype, a floating one.
     */
    public static final Op<Program> OP = Op.<Program>declare("fused_elementwise")
            .inputs("inputs").variadic().required(1)
            .shape((op, p, in) -> {
                if (p == null) {
                    throw new IllegalArgumentException("fused_elementwise: needs a program");
                }
                if (in.length != p.inputs()) {
                    throw new IllegalArgumentException("fused_elementwise: the program " + p + " reads " + p.inputs()
                            + " inputs, got " + in.length);
                }
                DType dt = in[0].dtype();
                if (!dt.isFloatingPoint() || dt == DType.FLOAT8_E4M3 || dt == DType.FLOAT8_E5M2) {
                    throw new IllegalArgumentException("fused_elementwise: programs run on float32, float64, float16 or "
                            + "bfloat16, input 0 is " + in[0].describe());
                }
                Shape s = in[0].shape();
                for (int i = 1; i < in.length; i++) {
                    if (in[i].dtype() != dt) {
                        throw new IllegalArgumentException("fused_elementwise: input " + i + " is " + in[i].describe()
                                + ", input 0 " + in[0].describe() + ": every input has the program's dtype");
                    }
                    s = op.broadcast(s, in[i].shape());
                }
                TensorSpec[] out = new TensorSpec[p.outputs()];
                for (int o = 0; o < out.length; o++) {
                    out[o] = new TensorSpec(s, dt);
                }
                return out;
            })
            .kernel(DeviceType.CPU, FusedElementwise::cpuKernel)
            .register();

    private static void cpuKernel(Program p, Tensor[] in, Tensor[] out) {
        if (out[0].numel() == 0) {
            return;
        }
        // operand order for the plan: the outputs (0 is the plan's "output"), then the inputs
        Tensor[] rest = new Tensor[out.length - 1 + in.length];
        System.arraycopy(out, 1, rest, 0, out.length - 1);
        System.arraycopy(in, 0, rest, out.length - 1, in.length);
        StridedPlan plan = StridedPlan.of(OP.name(), out[0], rest);
        NativeArgs args = NativeArgs.get();
        int nd = plan.ndim;
        long[] shape = Arrays.copyOf(plan.shape, nd);
        long shapeAddr = args.put(nd == 0 ? new long[] {1} : shape);
        long inputs = 0;
        for (int i = 0; i < in.length; i++) {
            long t = args.tensor(in[i].dataAddress(), in[i].dtype().code(), shape, Arrays.copyOf(plan.strides[out.length + i], nd));
            inputs = i == 0 ? t : inputs;
        }
        long outputs = 0;
        for (int o = 0; o < out.length; o++) {
            long t = args.tensor(out[o].dataAddress(), out[o].dtype().code(), shape, Arrays.copyOf(plan.strides[o], nd));
            outputs = o == 0 ? t : outputs;
        }
        long code = args.put(p.code);
        long params = args.struct(p.params.length * Double.BYTES);
        for (int i = 0; i < p.params.length; i++) {
            args.putDouble(params + (long) i * Double.BYTES, p.params[i]);
        }
        int status = NativeCpu.ct_cpu_fused_elementwise(out[0].dtype().code(), nd, shapeAddr, in.length, inputs, out.length,
                outputs, p.size(), code, params, 0);
        if (status != 0) {
            throw Launch.on(out[0]).failure(status, "fused_elementwise " + p + " on " + out[0].describe());
        }
    }
}
