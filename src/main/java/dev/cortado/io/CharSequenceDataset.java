package dev.cortado.io;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Next-token windows over a token sequence: example {@code i} starts at {@code s = i * stride}
 * and is {@code x = tokens[s : s + T]}, {@code y = tokens[s + 1 : s + T + 1]} (int64 [T] views),
 * for block size {@code T}. With stride 1 (the default) every position starts a window.
 * Holds the tokens in host memory; close it to free them.
 */
public final class CharSequenceDataset implements Dataset<Example>, Stackable, AutoCloseable {
    private final Tensor tokens;
    private final int blockSize;
    private final int stride;
    private final int size;

    public CharSequenceDataset(long[] tokens, int blockSize) {
        this(tokens, blockSize, 1);
    }

    public CharSequenceDataset(long[] tokens, int blockSize, int stride) {
        if (blockSize < 1 || stride < 1) {
            throw new IllegalArgumentException("CharSequenceDataset: block size " + blockSize + " and stride " + stride
                    + " must be positive");
        }
        this.blockSize = blockSize;
        this.stride = stride;
        this.size = tokens.length <= blockSize ? 0 : (tokens.length - blockSize - 1) / stride + 1;
        ByteBuffer buf = ByteBuffer.allocate(tokens.length * 8).order(ByteOrder.LITTLE_ENDIAN);
        buf.asLongBuffer().put(tokens);
        this.tokens = Tensor.fromBuffer(buf, DType.INT64, Device.CPU, tokens.length);
    }

    @Override
    public int size() {
        return size;
    }

    public int blockSize() {
        return blockSize;
    }

    public int stride() {
        return stride;
    }

    @Override
    public Example get(int index) {
        Dataset.checkIndex(index, size, "CharSequenceDataset");
        long start = (long) index * stride;
        Tensor x = tokens.narrow(0, start, blockSize);
        try {
            return new Example(x, tokens.narrow(0, start + 1, blockSize));
        } catch (RuntimeException e) {
            x.close();
            throw e;
        }
    }

    @Override
    public DType inputType() {
        return DType.INT64;
    }

    @Override
    public long[] inputShape() {
        return new long[] {blockSize};
    }

    @Override
    public DType targetType() {
        return DType.INT64;
    }

    @Override
    public long[] targetShape() {
        return new long[] {blockSize};
    }

    @Override
    public void copyInput(int index, long dst) {
        Dataset.checkIndex(index, size, "CharSequenceDataset");
        TensorDataset.hostCopy(dst, tokens.dataAddress() + (long) index * stride * 8, blockSize * 8L);
    }

    @Override
    public void copyTarget(int index, long dst) {
        Dataset.checkIndex(index, size, "CharSequenceDataset");
        TensorDataset.hostCopy(dst, tokens.dataAddress() + ((long) index * stride + 1) * 8, blockSize * 8L);
    }

    @Override
    public void close() {
        tokens.close();
    }
}
