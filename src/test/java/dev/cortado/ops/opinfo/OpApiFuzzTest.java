package dev.cortado.ops.opinfo;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.cortado.backend.BackendUnavailableException;
import dev.cortado.ops.Op;
import dev.cortado.ops.TensorSpec;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Fuzzing;
import dev.cortado.testing.Reference;
import org.junit.jupiter.api.Test;

import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.RecordComponent;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fuzzes the public op API: every registered op (through its {@link OpInfo} entry) is called
 * through {@link Op#callMulti} with one of its samples after random changes: other shapes
 * (rank 0 to 4, sizes 0 to 6), other dtypes (all twelve), other values (out-of-range indices,
 * NaN, infinities, extremes), non-contiguous views (transposes, stepped slices, and arbitrary
 * {@code asStrided} strides and offsets, overlapping and stride-0 ones included), missing or extra
 * inputs, attributes with their numbers, arrays, enums, shapes, dtypes and devices replaced
 * (extremes such as {@code Integer.MIN_VALUE} and shapes of 2^62 elements included), and the CUDA
 * device.
 *
 * <p>Declared, each with a message: {@link IllegalArgumentException} (a bad argument: the op's
 * checks, shape and view checks), {@link UnsupportedOperationException} (a dtype or device the op
 * has no kernel for), {@link IndexOutOfBoundsException} (an index value out of range, as the
 * native checks report it; not the JVM's {@code ArrayIndexOutOfBoundsException}),
 * {@link IllegalStateException} (a state the op refuses, e.g. a full cache) and
 * {@link BackendUnavailableException}; on a machine without a GPU, moving an input to
 * {@code cuda:0} must throw exactly {@link BackendUnavailableException}, and calling an op on
 * {@code cuda:0} with host inputs an {@link IllegalArgumentException}. Calls whose outputs would
 * exceed {@value #MAX_OUTPUT_BYTES} bytes (per {@link Op#infer}) are checked up to the shape rule
 * only, so that the fuzzer does not exhaust the machine's memory.
 *
 * <p>{@link #call} is the Jazzer target; {@link #everyOpWithRandomArguments} runs the same
 * mutations from a seeded {@link Random} over every op in {@code mvn verify} (the FuzzedDataProvider
 * corpus reaches only the ops its inputs pick).
 */
class OpApiFuzzTest {
    static final List<Class<? extends Throwable>> DECLARED = List.of(IllegalArgumentException.class,
            UnsupportedOperationException.class, IndexOutOfBoundsException.class, IllegalStateException.class,
            BackendUnavailableException.class);
    static final long MAX_OUTPUT_BYTES = 64L << 20;
    private static final DType[] DTYPES = DType.values();
    private static final boolean GPU = Device.cuda(0).isAvailable();

    /** A source of choices: the fuzzer's bytes or a seeded random generator. */
    interface Choices {
        /** An int in [lo, hi]. */
        int pick(int lo, int hi);

        /** Any long. */
        long anyLong();

        /** Any double, NaN and infinities included. */
        double anyDouble();
    }

    private static Choices of(FuzzedDataProvider in) {
        return new Choices() {
            public int pick(int lo, int hi) {
                return in.consumeInt(lo, hi);
            }

            public long anyLong() {
                return in.consumeLong();
            }

            public double anyDouble() {
                return in.consumeDouble();
            }
        };
    }

    private static Choices of(Random r) {
        return new Choices() {
            public int pick(int lo, int hi) {
                return lo + r.nextInt(hi - lo + 1);
            }

            public long anyLong() {
                return r.nextLong();
            }

            public double anyDouble() {
                return switch (r.nextInt(6)) {
                    case 0 -> Double.NaN;
                    case 1 -> r.nextBoolean() ? Double.POSITIVE_INFINITY : Double.NEGATIVE_INFINITY;
                    case 2 -> r.nextBoolean() ? Double.MAX_VALUE : -Double.MAX_VALUE;
                    default -> r.nextGaussian() * 4;
                };
            }
        };
    }

    @FuzzTest(maxDuration = "20s")
    void call(FuzzedDataProvider in) {
        List<OpInfo> all = Catalogue.all();
        OpInfo info = all.get(in.consumeInt(0, all.size() - 1));
        Fuzzing.check("op-api", DECLARED, null, () -> callOnce(info, of(in)));
    }

    /** Every op, 12 mutated calls each, from fixed seeds: the regression run of the op API. */
    @Test
    void everyOpWithRandomArguments() {
        for (OpInfo info : Catalogue.all()) {
            for (int k = 0; k < 12; k++) {
                Random r = new Random(info.name().hashCode() * 31L + k);
                Fuzzing.check("op-api", DECLARED, null, () -> callOnce(info, of(r)));
            }
        }
    }

    /**
     * Findings of the op-api target (2026-12-06): {@code concat} with a null tensor after the first
     * (9 of 8,720 inputs), then {@code fused_elementwise} with a null input (1 of 6,025 inputs of
     * CI's 15-second run) threw NullPointerExceptions from their shape rules. The registry now
     * refuses a null anywhere in a variadic tail, for every op, before any rule runs.
     */
    @Test
    @SuppressWarnings("unchecked")
    void aNullInAVariadicTailIsRefusedByTheRegistry() {
        for (String name : new String[] {"concat", "fused_elementwise"}) {
            Op<Object> op = (Op<Object>) dev.cortado.ops.OpRegistry.get(name);
            Object attrs = Catalogue.get(name).samples(1, DType.FLOAT32).get(0).attrs();
            try (Scope scope = Scope.open()) {
                Tensor a = Tensor.zeros(DType.FLOAT32, Device.CPU, 2, 3);
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> op.infer(attrs, a, null, a));
                assertTrue(e.getMessage().startsWith(name + ": input ") && e.getMessage().contains("required"),
                        e.getMessage());
                IllegalArgumentException e2 = assertThrows(IllegalArgumentException.class,
                        () -> op.callMulti(attrs, a, null, a));
                assertTrue(e2.getMessage().contains(name), e2.getMessage());
            }
        }
    }

    @SuppressWarnings("unchecked")
    static void callOnce(OpInfo info, Choices c) throws Exception {
        Op<Object> op = (Op<Object>) info.op();
        List<DType> dtypes = info.dtypes();
        DType dtype = dtypes.get(c.pick(0, dtypes.size() - 1));
        List<Sample> samples = info.samples(c.anyLong(), dtype);
        Sample s = samples.get(c.pick(0, samples.size() - 1));
        Object attrs = c.pick(0, 2) == 0 ? mutate(s.attrs(), c, 0) : s.attrs();
        boolean cuda = c.pick(0, 15) == 0;
        try (Scope scope = Scope.open()) {
            int n = s.args().length + (c.pick(0, 15) == 0 ? c.pick(-1, 1) : 0);
            Tensor[] inputs = new Tensor[Math.max(0, n)];
            for (int i = 0; i < inputs.length; i++) {
                inputs[i] = input(i < s.args().length ? s.args()[i] : null, c);
            }
            if (cuda) {
                callOnCuda(op, attrs, inputs);
                return;
            }
            TensorSpec[] specs = op.infer(attrs, inputs);
            long bytes = 0;
            for (TensorSpec spec : specs) {
                bytes += spec.dtype().bytesFor(spec.shape().numel());
            }
            if (bytes > MAX_OUTPUT_BYTES) {
                return;
            }
            boolean anyInput = false;
            for (Tensor t : inputs) {
                anyInput |= t != null;
            }
            Tensor[] outputs = anyInput ? op.callMulti(attrs, inputs) : new Tensor[] {op.callOn(Device.CPU, attrs, inputs)};
            for (Tensor t : outputs) {
                assertTrue(t.numel() >= 0);
            }
        }
    }

    private static void callOnCuda(Op<Object> op, Object attrs, Tensor[] inputs) {
        if (GPU) {
            Tensor[] moved = new Tensor[inputs.length];
            for (int i = 0; i < inputs.length; i++) {
                moved[i] = inputs[i] == null ? null : inputs[i].to(Device.cuda(0));
            }
            op.callMulti(attrs, moved);
            return;
        }
        for (Tensor t : inputs) {
            if (t != null) {
                BackendUnavailableException e = assertThrows(BackendUnavailableException.class,
                        () -> t.to(Device.cuda(0)), "moving an input to cuda:0 without a GPU");
                assertTrue(e.getMessage() != null && !e.getMessage().isBlank(), "no message");
                break;
            }
        }
        boolean anyInput = false;
        for (Tensor t : inputs) {
            anyInput |= t != null;
        }
        if (anyInput) {
            // host inputs on cuda:0: refused before any kernel runs
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> op.callOn(Device.cuda(0), attrs, inputs), op.name() + " on cuda:0 with host inputs");
            assertTrue(e.getMessage().contains(op.name()), e.getMessage());
        } else {
            op.callOn(Device.cuda(0), attrs, inputs);
        }
    }

    /** Input {@code arg} of the sample (null: an extra input), changed or not. */
    private static Tensor input(Arg arg, Choices c) {
        int choice = c.pick(0, 15);
        if (arg == null || choice == 0) {
            return choice == 0 && arg != null ? null : random(DTYPES[c.pick(0, DTYPES.length - 1)], c);
        }
        Tensor t = arg.tensor(Device.CPU);
        return switch (choice) {
            case 1 -> t.to(DTYPES[c.pick(0, DTYPES.length - 1)]);
            case 2 -> random(c.pick(0, 1) == 0 ? arg.dtype() : DTYPES[c.pick(0, DTYPES.length - 1)], c);
            case 3 -> t.rank() < 2 ? t : t.transpose(c.pick(0, t.rank() - 1), c.pick(0, t.rank() - 1));
            case 4 -> t.rank() == 0 ? t : t.slice(c.pick(0, t.rank() - 1), c.pick(-2, 3), c.pick(-2, 8), c.pick(1, 3));
            case 5 -> strided(t, c);
            case 6, 7 -> sameShapeNewValues(arg, c);
            default -> t;
        };
    }

    /** A tensor of {@code dtype} of random rank and sizes, values from the fuzzer. */
    private static Tensor random(DType dtype, Choices c) {
        long[] dims = new long[c.pick(0, 4)];
        for (int d = 0; d < dims.length; d++) {
            dims[d] = c.pick(0, 6);
        }
        return filled(dtype, dims, c);
    }

    private static Tensor sameShapeNewValues(Arg arg, Choices c) {
        return filled(arg.dtype(), arg.dims(), c);
    }

    private static Tensor filled(DType dtype, long[] dims, Choices c) {
        double[] v = new double[(int) Shape.of(dims).numel()];
        for (int i = 0; i < v.length; i++) {
            v[i] = c.pick(0, 3) == 0 ? c.anyDouble() : c.pick(-3, 9);
        }
        DType made = dtype == DType.INT4 || dtype.name().startsWith("FLOAT8") ? DType.FLOAT32 : dtype;
        Tensor t = Reference.make(v, made, dims);
        return made == dtype ? t : t.to(dtype);
    }

    /** An arbitrary view of {@code t}'s storage: random shape, strides and offset. */
    private static Tensor strided(Tensor t, Choices c) {
        long[] dims = new long[c.pick(0, 4)];
        long[] strides = new long[dims.length];
        for (int d = 0; d < dims.length; d++) {
            dims[d] = c.pick(0, 6);
            strides[d] = c.pick(0, 20) == 0 ? c.anyLong() : c.pick(-1, 7);
        }
        long offset = c.pick(0, 20) == 0 ? c.anyLong() : c.pick(0, 6);
        return t.asStrided(t.dtype(), Shape.of(dims), strides, offset);
    }

    /** {@code value} with some of its fields replaced (records recursively, depth-limited). */
    static Object mutate(Object value, Choices c, int depth) throws Exception {
        if (value == null || depth > 3) {
            return value;
        }
        Class<?> type = value.getClass();
        if (type.isRecord()) {
            RecordComponent[] rc = type.getRecordComponents();
            Object[] args = new Object[rc.length];
            Class<?>[] types = new Class<?>[rc.length];
            for (int i = 0; i < rc.length; i++) {
                types[i] = rc[i].getType();
                rc[i].getAccessor().setAccessible(true);
                Object v = rc[i].getAccessor().invoke(value);
                args[i] = c.pick(0, 2) == 0 ? mutateValue(v, types[i], c, depth) : v;
            }
            Constructor<?> ctor = type.getDeclaredConstructor(types);
            ctor.setAccessible(true);
            try {
                return ctor.newInstance(args);
            } catch (InvocationTargetException e) {
                // the record's own validation refused the values: that exception is the op API's answer
                if (e.getCause() instanceof RuntimeException r) {
                    throw r;
                }
                throw e;
            }
        }
        return mutateValue(value, type, c, depth);
    }

    private static Object mutateValue(Object v, Class<?> type, Choices c, int depth) throws Exception {
        if (type == int.class || type == Integer.class) {
            return anyInt(c);
        }
        if (type == long.class || type == Long.class) {
            return anyLongValue(c);
        }
        if (type == double.class || type == Double.class) {
            return c.pick(0, 1) == 0 ? c.anyDouble() : (double) c.pick(-2, 4);
        }
        if (type == float.class || type == Float.class) {
            return (float) c.anyDouble();
        }
        if (type == boolean.class || type == Boolean.class) {
            return c.pick(0, 1) == 1;
        }
        if (type == int[].class) {
            int[] a = new int[c.pick(0, 4)];
            for (int i = 0; i < a.length; i++) {
                a[i] = anyInt(c);
            }
            return a;
        }
        if (type == long[].class) {
            long[] a = new long[c.pick(0, 4)];
            for (int i = 0; i < a.length; i++) {
                a[i] = anyLongValue(c);
            }
            return a;
        }
        if (type.isEnum()) {
            Object[] k = type.getEnumConstants();
            return k[c.pick(0, k.length - 1)];
        }
        if (type == DType.class) {
            return DTYPES[c.pick(0, DTYPES.length - 1)];
        }
        if (type == Device.class) {
            return c.pick(0, 1) == 0 ? Device.CPU : Device.cuda(c.pick(0, 1));
        }
        if (type == Shape.class) {
            return switch (c.pick(0, 5)) {
                case 0 -> Shape.of(1L << 62, 4);          // more bytes than a long counts
                case 1 -> Shape.of(1L << 31, 1L << 31, 2); // 2^63 elements: more than a long holds
                default -> {
                    long[] dims = new long[c.pick(0, 4)];
                    for (int d = 0; d < dims.length; d++) {
                        dims[d] = c.pick(0, 6);
                    }
                    yield Shape.of(dims);
                }
            };
        }
        if (v != null && v.getClass().isRecord()) {
            return mutate(v, c, depth + 1);
        }
        return v;
    }

    private static int anyInt(Choices c) {
        return switch (c.pick(0, 7)) {
            case 0 -> Integer.MIN_VALUE;
            case 1 -> Integer.MAX_VALUE;
            default -> c.pick(-3, 8);
        };
    }

    private static long anyLongValue(Choices c) {
        return switch (c.pick(0, 9)) {
            case 0 -> Long.MIN_VALUE;
            case 1 -> Long.MAX_VALUE;
            case 2 -> 1L << 62;
            case 3 -> Integer.MAX_VALUE + 1L;
            default -> c.pick(-3, 8);
        };
    }
}
