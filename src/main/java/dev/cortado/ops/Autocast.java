package dev.cortado.ops;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;

/**
 * Mixed precision: inside {@code try (var ac = Autocast.bfloat16()) {...}} the ops that declare
 * {@link Op.Builder#autocast(int...)} (matmul, gemm, scaled_dot_product_attention) run their
 * float32 inputs in bfloat16 (or float16), accumulating in float32 inside the kernels; every
 * other op keeps its dtypes, so norms, softmax, losses and optimizer updates stay in float32.
 * The casts are ordinary conversions on the tape, so gradients reach float32 master weights in
 * float32. Per thread; blocks nest and restore the previous setting when closed.
 */
public final class Autocast implements AutoCloseable {
    private static final ThreadLocal<DType> TARGET = new ThreadLocal<>();

    private final DType previous;

    private Autocast(DType target) {
        if (target != null && target != DType.BFLOAT16 && target != DType.FLOAT16) {
            throw new IllegalArgumentException("autocast runs in bfloat16 or float16, not " + target);
        }
        previous = TARGET.get();
        TARGET.set(target);
    }

    /** bfloat16 autocast (same exponent range as float32: no loss scaling needed). */
    public static Autocast bfloat16() {
        return new Autocast(DType.BFLOAT16);
    }

    /** float16 autocast; pair it with a loss scaler ({@code dev.cortado.optim.GradScaler}). */
    public static Autocast float16() {
        return new Autocast(DType.FLOAT16);
    }

    /** Turns autocast off inside an autocast block. */
    public static Autocast disabled() {
        return new Autocast(null);
    }

    /** The dtype eligible ops cast to on this thread, or null. */
    public static DType current() {
        return TARGET.get();
    }

    /** {@code inputs} with the eligible float32 ones converted (new tensors the caller closes), or the same array. */
    static Tensor[] cast(int[] eligible, Tensor[] inputs) {
        DType target = TARGET.get();
        if (target == null || eligible == null) {
            return inputs;
        }
        Tensor[] out = inputs;
        for (int i : eligible) {
            if (i < inputs.length && inputs[i] != null && inputs[i].dtype() == DType.FLOAT32) {
                if (out == inputs) {
                    out = inputs.clone();
                }
                out[i] = inputs[i].to(target);
            }
        }
        return out;
    }

    @Override
    public void close() {
        TARGET.set(previous);
    }
}
