package dev.cortado.graph;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.StringJoiner;

/**
 * The type of a graph value: dtype, device and shape (static and symbolic dimensions).
 *
 * @param dtype  element type
 * @param device where the value lives
 * @param dims   the dimensions, outermost first
 */
public record TensorType(DType dtype, Device device, List<Dim> dims) {

    public TensorType {
        if (dtype == null || device == null) {
            throw new IllegalArgumentException("a tensor type needs a dtype and a device");
        }
        dims = List.copyOf(dims);
    }

    /** The type of {@code t}, every dimension static. */
    public static TensorType of(Tensor t) {
        return of(t.dtype(), t.device(), t.shape());
    }

    public static TensorType of(DType dtype, Device device, Shape shape) {
        List<Dim> d = new ArrayList<>(shape.rank());
        for (int i = 0; i < shape.rank(); i++) {
            d.add(Dim.of(shape.size(i)));
        }
        return new TensorType(dtype, device, d);
    }

    public int rank() {
        return dims.size();
    }

    /** The concrete shape of this specialization (symbols at their sizes). */
    public Shape shape() {
        long[] s = new long[dims.size()];
        for (int i = 0; i < s.length; i++) {
            s[i] = dims.get(i).size();
        }
        return Shape.of(s);
    }

    public long numel() {
        return shape().numel();
    }

    /** Bytes of a contiguous tensor of this type. */
    public long bytes() {
        return dtype.bytesFor(numel());
    }

    /** Whether dtype, device and concrete sizes agree (symbols ignored). */
    public boolean sameConcrete(TensorType o) {
        return dtype == o.dtype && device.equals(o.device) && shape().equals(o.shape());
    }

    /** This type with dimension {@code i} replaced. */
    public TensorType withDim(int i, Dim dim) {
        List<Dim> d = new ArrayList<>(dims);
        d.set(i, dim);
        return new TensorType(dtype, device, d);
    }

    /** This type where the symbols are {@code value}. */
    public TensorType at(long value) {
        List<Dim> d = new ArrayList<>(dims.size());
        for (Dim x : dims) {
            d.add(x.at(value));
        }
        return new TensorType(dtype, device, d);
    }

    /** {@code float32[B, 784] cpu}. */
    @Override
    public String toString() {
        StringJoiner j = new StringJoiner(", ", dtype + "[", "]");
        for (Dim d : dims) {
            j.add(d.toString());
        }
        return j + " " + device;
    }
}
