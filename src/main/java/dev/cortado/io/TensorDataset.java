package dev.cortado.io;

import dev.cortado.backend.Backend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Examples that are the rows of two tensors: example {@code i} is {@code (inputs[i], targets[i])}
 * (views, which the caller closes). The dataset keeps its own host-memory reference to the data
 * (a contiguous host copy when the given tensors are not contiguous on the host); the caller may
 * close the tensors it passed in. Close the dataset to release its memory.
 */
public final class TensorDataset implements Dataset<Example>, Stackable, AutoCloseable {
    private final Tensor inputs;
    private final Tensor targets;
    private final int size;
    private final long inputRowBytes;
    private final long targetRowBytes;

    public TensorDataset(Tensor inputs, Tensor targets) {
        if (inputs.rank() < 1 || targets.rank() < 1) {
            throw new IllegalArgumentException("TensorDataset: inputs " + inputs.describe() + " and targets "
                    + targets.describe() + " need a leading example dimension");
        }
        if (inputs.size(0) != targets.size(0)) {
            throw new IllegalArgumentException("TensorDataset: inputs " + inputs.describe() + " and targets "
                    + targets.describe() + " have different numbers of examples");
        }
        if (inputs.dtype().isPacked() || targets.dtype().isPacked()) {
            throw new IllegalArgumentException("TensorDataset: packed dtypes (int4) are not supported");
        }
        this.size = Math.toIntExact(inputs.size(0));
        this.inputs = hostContiguous(inputs);
        this.targets = hostContiguous(targets);
        this.inputRowBytes = size == 0 ? 0 : inputs.dtype().bytesFor(inputs.numel() / size);
        this.targetRowBytes = size == 0 ? 0 : targets.dtype().bytesFor(targets.numel() / size);
    }

    /** A new reference (view or copy) of {@code t}: contiguous, on the host. */
    static Tensor hostContiguous(Tensor t) {
        try (Tensor host = t.to(Device.CPU)) {
            return host.contiguous();
        }
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public Example get(int index) {
        Dataset.checkIndex(index, size, "TensorDataset");
        Tensor in = inputs.select(0, index);
        try {
            return new Example(in, targets.select(0, index));
        } catch (RuntimeException e) {
            in.close();
            throw e;
        }
    }

    /** All inputs, [N, ...] (borrowed: do not close). */
    public Tensor inputs() {
        return inputs;
    }

    /** All targets, [N, ...] (borrowed: do not close). */
    public Tensor targets() {
        return targets;
    }

    @Override
    public DType inputType() {
        return inputs.dtype();
    }

    @Override
    public long[] inputShape() {
        long[] d = inputs.dims();
        return Arrays.copyOfRange(d, 1, d.length);
    }

    @Override
    public DType targetType() {
        return targets.dtype();
    }

    @Override
    public long[] targetShape() {
        long[] d = targets.dims();
        return Arrays.copyOfRange(d, 1, d.length);
    }

    @Override
    public void copyInput(int index, long dst) {
        Dataset.checkIndex(index, size, "TensorDataset");
        hostCopy(dst, inputs.dataAddress() + index * inputRowBytes, inputRowBytes);
    }

    @Override
    public void copyTarget(int index, long dst) {
        Dataset.checkIndex(index, size, "TensorDataset");
        hostCopy(dst, targets.dataAddress() + index * targetRowBytes, targetRowBytes);
    }

    /** memcpy between two host addresses. */
    static void hostCopy(long dst, long src, long bytes) {
        if (bytes > 0) {
            Backend cpu = Device.CPU.backend();
            cpu.copyFromHost(Device.CPU, dst, src, bytes);
        }
    }

    @Override
    public void close() {
        try {
            inputs.close();
        } finally {
            targets.close();
        }
    }

    @Override
    public String toString() {
        return "TensorDataset(" + size + " examples, inputs " + inputs.describe() + ", targets " + targets.describe() + ")";
    }
}
