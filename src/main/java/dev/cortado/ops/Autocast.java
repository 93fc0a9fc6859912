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
                out[i] = convert(inputs[i], target);
            }
        }
        return out;
    }

    /**
     * {@code x} converted to {@code target} in the order its storage lies: a transposed or permuted
     * view of a dense tensor (the {@code weight.transpose(0, 1)} of a linear layer) is converted in
     * one contiguous pass and handed back as the same permutation, which the GEMM takes as a
     * transposed operand. Converting the view itself would walk its storage by columns, and the
     * gradient of that conversion would come back in the transposed order (measured: those strided
     * copies took over half of a bfloat16 autocast MLP training step).
     */
    static Tensor convert(Tensor x, DType target) {
        if (x.isContiguous() || x.rank() < 2) {
            return x.to(target);
        }
        long[] strides = x.strides();
        Integer[] boxed = new Integer[strides.length];
        for (int d = 0; d < boxed.length; d++) {
            boxed[d] = d;
        }
        java.util.Arrays.sort(boxed, (p, q) -> Long.compare(strides[q], strides[p]));   // stable: ties keep their order
        int[] order = new int[boxed.length];
        int[] inverse = new int[boxed.length];
        for (int d = 0; d < order.length; d++) {
            order[d] = boxed[d];
            inverse[order[d]] = d;
        }
        try (Tensor dense = x.permute(order)) {
            if (!dense.isContiguous()) {
                return x.to(target);
            }
            try (Tensor converted = dense.to(target)) {
                return converted.permute(inverse);
            }
        }
    }

    @Override
    public void close() {
        TARGET.set(previous);
    }
}
