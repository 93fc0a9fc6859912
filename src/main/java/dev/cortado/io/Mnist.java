package dev.cortado.io;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * MNIST digits as a {@link TensorDataset}: inputs float32 [N, 1, 28, 28] (pixel / 255, so in
 * [0, 1]; or normalized as {@code (x - 0.1307) / 0.3081}), targets int64 [N] (digits 0..9), on
 * the host.
 *
 * <p>Shipped with Cortado (classpath {@code dev/cortado/data/}, see SOURCE.txt there):
 * {@link #train10k()}, the first 10,000 images of the MNIST training set <b>sorted by label</b>
 * (shuffle when training: {@link DataLoader.Builder#shuffle(long)}), and {@link #test()}, the
 * genuine 10,000-image test split. {@link #load(Path, Path, boolean)} reads other IDX files,
 * e.g. the full 60,000-image training set.
 */
public final class Mnist {
    /** Mean and standard deviation of the MNIST training pixels in [0, 1] (the usual constants). */
    public static final float MEAN = 0.1307f;
    public static final float STD = 0.3081f;

    private Mnist() {
    }

    /** The shipped 10,000-image training subset (sorted by label), pixels in [0, 1]. */
    public static TensorDataset train10k() {
        return train10k(false);
    }

    public static TensorDataset train10k(boolean normalize) {
        return resource("mnist-10k-images-idx3-ubyte.gz", "mnist-10k-labels-idx1-ubyte.gz", normalize);
    }

    /** The shipped MNIST test split (10,000 images), pixels in [0, 1]. */
    public static TensorDataset test() {
        return test(false);
    }

    public static TensorDataset test(boolean normalize) {
        return resource("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", normalize);
    }

    private static TensorDataset resource(String images, String labels, boolean normalize) {
        try (Tensor x = IdxReader.readResource(Resources.DATA + images);
             Tensor y = IdxReader.readResource(Resources.DATA + labels)) {
            return fromIdx(x, y, normalize, "classpath:" + Resources.DATA + images);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Reads MNIST-format IDX image ([N, rows, cols] uint8) and label ([N] uint8) files. */
    public static TensorDataset load(Path images, Path labels, boolean normalize) throws IOException {
        try (Tensor x = IdxReader.read(images); Tensor y = IdxReader.read(labels)) {
            return fromIdx(x, y, normalize, images.toString());
        }
    }

    /** Converts uint8 images [N, H, W] and uint8 labels [N] to the dataset. */
    static TensorDataset fromIdx(Tensor images, Tensor labels, boolean normalize, String name) {
        if (images.dtype() != DType.UINT8 || images.rank() != 3) {
            throw new IllegalArgumentException(name + ": expected uint8 images [N, rows, cols], got " + images.describe());
        }
        if (labels.dtype() != DType.UINT8 || labels.rank() != 1 || labels.size(0) != images.size(0)) {
            throw new IllegalArgumentException(name + ": expected " + images.size(0) + " uint8 labels, got "
                    + labels.describe());
        }
        long n = images.size(0);
        long h = images.size(1);
        long w = images.size(2);
        byte[] px = images.toByteArray();
        float[] lut = new float[256];
        for (int v = 0; v < 256; v++) {
            float x = v / 255f;
            lut[v] = normalize ? (x - MEAN) / STD : x;
        }
        ByteBuffer buf = ByteBuffer.allocate(px.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (byte b : px) {
            buf.putFloat(lut[b & 0xFF]);
        }
        buf.flip();
        byte[] lb = labels.toByteArray();
        ByteBuffer lbuf = ByteBuffer.allocate(lb.length * 8).order(ByteOrder.LITTLE_ENDIAN);
        for (byte b : lb) {
            lbuf.putLong(b & 0xFF);
        }
        lbuf.flip();
        try (Tensor x = Tensor.fromBuffer(buf, DType.FLOAT32, Device.CPU, n, 1, h, w);
             Tensor y = Tensor.fromBuffer(lbuf, DType.INT64, Device.CPU, n)) {
            return new TensorDataset(x, y);
        }
    }

    /** Per-class counts of the labels of {@code data} (10 entries). */
    public static long[] labelHistogram(TensorDataset data) {
        long[] counts = new long[10];
        for (long label : data.targets().toLongArray()) {
            counts[(int) label]++;
        }
        return counts;
    }
}
