package dev.cortado.djl;

import ai.djl.Device;
import ai.djl.ndarray.BaseNDManager;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.internal.NDArrayEx;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.ndarray.types.SparseFormat;
import dev.cortado.autograd.Autograd;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.util.Arrays;
import java.util.function.Supplier;
import java.util.stream.IntStream;

/**
 * A DJL {@link NDArray} over one Cortado {@link Tensor}, which it owns: closing the array (or its
 * {@link NDManager}) closes the tensor. Results of operations are new arrays attached to this
 * array's manager; views (reshape, transpose, slicing, broadcast) share memory as in Cortado.
 *
 * <p>Operations are recorded on Cortado's autograd tape only while a {@link CortadoGradientCollector}
 * is open on the thread. The methods Cortado does not implement throw
 * {@link UnsupportedOperationException} naming the DJL method (the list is in docs/djl.md).
 */
public final class CortadoNDArray implements NDArray {
    private CortadoNDManager manager;
    private Tensor tensor;
    private final String uid;
    private String name;
    private boolean requiresGradient;
    private CortadoNDArray gradientView;
    private Tensor gradientViewOf;
    private CortadoNDArrayEx ex;

    CortadoNDArray(CortadoNDManager manager, Tensor tensor) {
        this.manager = manager;
        this.tensor = tensor;
        this.uid = NDManager.nextUid();
        try {
            manager.attachInternal(uid, this);
        } catch (RuntimeException e) { // a closed or capped manager: the tensor is not kept
            tensor.close();
            throw e;
        }
    }

    /** The exception for a DJL method the Cortado engine does not implement. */
    static UnsupportedOperationException unsupported(String method) {
        return new UnsupportedOperationException(method + " is not supported by the Cortado engine (see docs/djl.md)");
    }

    /**
     * The Cortado tensor behind this array (owned by the array: do not close it). For mixing DJL code
     * with Cortado's own ops; a tensor computed from it belongs to the caller.
     *
     * @return the tensor
     * @throws IllegalStateException if this array has been closed
     */
    public Tensor tensor() {
        if (tensor == null) {
            throw new IllegalStateException("this Cortado NDArray (" + uid + ") has been closed");
        }
        return tensor;
    }

    // ================================================================ running ops

    /** Runs {@code f}, recorded on the tape only while a gradient collector is open on this thread. */
    @SuppressWarnings("try")
    static Tensor run(Supplier<Tensor> f) {
        if (CortadoGradientCollector.isCollecting() || !Autograd.isGradEnabled()) {
            return f.get();
        }
        try (Autograd.GradMode off = Autograd.noGrad()) {
            return f.get();
        }
    }

    /** A new array of this manager owning the tensor {@code f} computes. */
    CortadoNDArray result(Supplier<Tensor> f) {
        return manager.wrap(run(f));
    }

    /** Writes {@code f}'s result into this array's memory (converted to its dtype); returns this. */
    private CortadoNDArray inPlace(Supplier<Tensor> f) {
        Tensor r = run(f);
        try (r) {
            tensor().copyFrom(r);
        }
        return this;
    }

    /** The Cortado tensor of {@code other}; an array of another engine is copied into this manager. */
    Tensor tensorOf(NDArray other) {
        if (other instanceof CortadoNDArray) {
            return ((CortadoNDArray) other).tensor();
        }
        return manager.from(other).tensor();
    }

    private static double number(Number n) {
        return n.doubleValue();
    }

    // ================================================================ identity and lifetime

    /** {@inheritDoc} */
    @Override
    public CortadoNDManager getManager() {
        return manager;
    }

    /** {@inheritDoc} */
    @Override
    public String getName() {
        return name;
    }

    /** {@inheritDoc} */
    @Override
    public void setName(String name) {
        this.name = name;
    }

    /** {@inheritDoc} */
    @Override
    public String getUid() {
        return uid;
    }

    /** {@inheritDoc} */
    @Override
    public DataType getDataType() {
        return Types.dataType(tensor().dtype());
    }

    /** {@inheritDoc} */
    @Override
    public Device getDevice() {
        return Types.device(tensor().device());
    }

    /** {@inheritDoc} */
    @Override
    public Shape getShape() {
        return new Shape(tensor().dims());
    }

    /** {@inheritDoc} */
    @Override
    public SparseFormat getSparseFormat() {
        return SparseFormat.DENSE;
    }

    /** {@inheritDoc} */
    @Override
    public void attach(NDManager target) {
        manager.detachInternal(uid);
        this.manager = (CortadoNDManager) target;
        target.attachInternal(uid, this);
    }

    /** {@inheritDoc} */
    @Override
    public void returnResource(NDManager target) {
        manager.detachInternal(uid);
        this.manager = (CortadoNDManager) target;
        target.attachUncappedInternal(uid, this);
    }

    /** {@inheritDoc} */
    @Override
    public void tempAttach(NDManager target) {
        NDManager original = this.manager;
        manager.detachInternal(uid);
        this.manager = (CortadoNDManager) target;
        target.tempAttachInternal(original, uid, this);
    }

    /** {@inheritDoc} The array then belongs to the system manager (for the process's lifetime) until closed. */
    @Override
    public void detach() {
        manager.detachInternal(uid);
        manager = CortadoNDManager.system();
        manager.attachUncappedInternal(uid, this);
    }

    /** {@inheritDoc} */
    @Override
    public boolean isReleased() {
        return tensor == null;
    }

    /** {@inheritDoc} Closes the tensor (and this array's gradient view); idempotent. */
    @Override
    public void close() {
        if (tensor == null) {
            return;
        }
        dropGradientView();
        Tensor t = tensor;
        tensor = null;
        t.close();
        manager.detachInternal(uid);
    }

    /** {@inheritDoc} Takes over {@code replaced}'s tensor; {@code replaced} is closed. */
    @Override
    public void intern(NDArray replaced) {
        CortadoNDArray other = (CortadoNDArray) replaced;
        Tensor old = tensor();
        tensor = other.tensor();
        other.tensor = null;
        other.manager.detachInternal(other.uid);
        dropGradientView();
        old.close();
    }

    /** {@inheritDoc} */
    @Override
    public String toString() {
        if (isReleased()) {
            return "This array is already closed";
        }
        return toDebugString();
    }

    // ================================================================ conversions and data

    /** {@inheritDoc} */
    @Override
    public NDArray toDevice(Device device, boolean copy) {
        if (device.equals(getDevice()) && !copy) {
            return this;
        }
        dev.cortado.tensor.Device target = Types.device(device);
        return result(() -> target.equals(tensor().device()) ? tensor().copy() : tensor().to(target));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray toType(DataType dataType, boolean copy) {
        DType target = Types.dtype(dataType, "NDArray.toType");
        if (target == tensor().dtype()) {
            return copy ? result(() -> tensor().copy()) : this;
        }
        return result(() -> tensor().to(target));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray duplicate() {
        NDArray a = result(() -> tensor().copy());
        a.setName(getName());
        return a;
    }

    /** {@inheritDoc} */
    @Override
    public void copyTo(NDArray array) {
        if (!(array instanceof CortadoNDArray)) {
            array.set(toByteBuffer());
            return;
        }
        Tensor dst = ((CortadoNDArray) array).tensor();
        if (!dst.shape().equals(tensor().shape())) {
            throw new IllegalArgumentException("NDArray.copyTo: shape " + getShape() + " differs from the target's "
                    + array.getShape());
        }
        dst.copyFrom(tensor());
    }

    /** {@inheritDoc} Row-major bytes in the platform's byte order. */
    @Override
    public ByteBuffer toByteBuffer(boolean tryDirect) {
        Tensor t = tensor();
        long bytes = t.dtype().bytesFor(t.numel());
        ByteBuffer bb = ByteBuffer.allocateDirect(Math.toIntExact(bytes)).order(ByteOrder.nativeOrder());
        t.copyTo(bb);
        bb.rewind();
        return bb;
    }

    /** {@inheritDoc} */
    @Override
    public void set(Buffer buffer) {
        Tensor t = tensor();
        int size = Math.toIntExact(t.numel());
        DataType type = getDataType();
        BaseNDManager.validateBuffer(buffer, type, size);
        ByteBuffer bytes;
        if (buffer instanceof ByteBuffer) {
            bytes = ((ByteBuffer) buffer).duplicate();
        } else {
            bytes = manager.allocateDirect(size * type.getNumOfBytes());
            BaseNDManager.copyBuffer(buffer, bytes);
        }
        bytes.limit(bytes.position() + size * type.getNumOfBytes());
        try (Tensor src = Tensor.fromBuffer(bytes, t.dtype(), t.device(), t.dims())) {
            t.copyFrom(src);
        }
    }

    /** {@inheritDoc} */
    @Override
    public String[] toStringArray(Charset charset) {
        throw unsupported("NDArray.toStringArray");
    }

    // ================================================================ gradients

    /** {@inheritDoc} Marks (or unmarks) this array as a leaf whose gradient backward accumulates. */
    @Override
    public void setRequiresGradient(boolean requiresGrad) {
        Tensor t = tensor();
        if (t.isLeaf()) {
            t.requiresGrad(requiresGrad);
        } else if (requiresGrad) {
            throw new IllegalStateException("NDArray.setRequiresGradient: " + t.describe() + " was computed by "
                    + "recorded operations; only arrays that were created (leaves) take gradients (use stopGradient())");
        }
        requiresGradient = requiresGrad;
        if (!requiresGrad) {
            clearGradient();
        }
    }

    /** {@inheritDoc} */
    @Override
    public boolean hasGradient() {
        return requiresGradient;
    }

    /**
     * {@inheritDoc} The gradient accumulated by backward (an array sharing its memory, attached to
     * this array's manager and valid until the next update or zeroing); zeros before any backward.
     */
    @Override
    public NDArray getGradient() {
        if (!hasGradient()) {
            throw new IllegalStateException("No gradient attached to this NDArray, please call "
                    + "array.setRequiresGradient() on your NDArray or block.setInitializer() on your Block");
        }
        Tensor g = tensor().grad();
        if (g == null) {
            return manager.zeros(getShape(), getDataType());
        }
        if (gradientView != null && !gradientView.isReleased() && gradientViewOf == g) {
            return gradientView;
        }
        dropGradientView();
        gradientView = manager.wrap(g.detach());
        gradientViewOf = g;
        return gradientView;
    }

    /** Frees the accumulated gradient (what DJL's optimizers do after an update: zeroing). */
    void clearGradient() {
        dropGradientView();
        if (tensor != null && tensor.grad() != null) {
            tensor.setGrad(null);
        }
    }

    private void dropGradientView() {
        if (gradientView != null) {
            gradientView.close();
            gradientView = null;
            gradientViewOf = null;
        }
    }

    /** Backward from this array with a gradient of ones (DJL's GradientCollector.backward). */
    void backwardWithOnes() {
        Tensor t = tensor();
        if (!t.requiresGrad()) {
            throw new IllegalStateException("GradientCollector.backward: the target " + t.describe()
                    + " does not depend on an array that requires a gradient (or was computed outside the collector)");
        }
        try (Tensor ones = Tensor.ones(t.dtype(), t.device(), t.dims())) {
            t.backward(ones, false);
        }
    }

    /** {@inheritDoc} */
    @Override
    public NDArray stopGradient() {
        return result(() -> tensor().detach());
    }

    // ================================================================ indexing

    /** {@inheritDoc} DJL's {@code gather}: {@code out[i][j] = this[i][index[i][j]]} along {@code axis}. */
    @Override
    public NDArray gather(NDArray index, int axis) {
        return result(() -> Gathers.takeAlongAxis(tensor(), tensorOf(index), axis));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray gatherNd(NDArray index) {
        throw unsupported("NDArray.gatherNd");
    }

    /** {@inheritDoc} Flat (row-major) indices; the result has the index's shape. */
    @Override
    public NDArray take(NDManager target, NDArray index) {
        Tensor idx = tensorOf(index);
        Tensor out = run(() -> {
            try (Tensor flat = tensor().reshape(-1)) {
                return Indexing.gather(flat, idx, 0);
            }
        });
        return ((CortadoNDManager) target).wrap(out);
    }

    /** {@inheritDoc} */
    @Override
    public NDArray put(NDArray index, NDArray value) {
        throw unsupported("NDArray.put");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray scatter(NDArray index, NDArray value, int axis) {
        throw unsupported("NDArray.scatter");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray booleanMask(NDArray index, int axis) {
        throw unsupported("NDArray.booleanMask");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sequenceMask(NDArray sequenceLength, float value) {
        throw unsupported("NDArray.sequenceMask");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sequenceMask(NDArray sequenceLength) {
        throw unsupported("NDArray.sequenceMask");
    }

    // ================================================================ comparisons

    /** {@inheritDoc} */
    @Override
    public boolean contentEquals(Number number) {
        double v = number(number);
        for (double x : tensor().toDoubleArray()) {
            if (x != v) {
                return false;
            }
        }
        return true;
    }

    /** {@inheritDoc} Same shape, same data type and equal elements (NaN equals nothing). */
    @Override
    public boolean contentEquals(NDArray other) {
        if (!getShape().equals(other.getShape()) || getDataType() != other.getDataType()) {
            return false;
        }
        try (Tensor eq = run(() -> Elementwise.eq(tensor(), tensorOf(other)))) {
            for (boolean b : eq.toBooleanArray()) {
                if (!b) {
                    return false;
                }
            }
            return true;
        }
    }

    /** {@inheritDoc} */
    @Override
    public NDArray eq(Number n) {
        return result(() -> tensor().eq(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray eq(NDArray other) {
        return result(() -> tensor().eq(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray neq(Number n) {
        return result(() -> tensor().ne(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray neq(NDArray other) {
        return result(() -> tensor().ne(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray gt(Number n) {
        return result(() -> tensor().gt(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray gt(NDArray other) {
        return result(() -> tensor().gt(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray gte(Number n) {
        return result(() -> tensor().ge(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray gte(NDArray other) {
        return result(() -> tensor().ge(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray lt(Number n) {
        return result(() -> tensor().lt(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray lt(NDArray other) {
        return result(() -> tensor().lt(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray lte(Number n) {
        return result(() -> tensor().le(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray lte(NDArray other) {
        return result(() -> tensor().le(tensorOf(other)));
    }

    // ================================================================ arithmetic

    /** {@inheritDoc} */
    @Override
    public NDArray add(Number n) {
        return result(() -> tensor().add(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray add(NDArray other) {
        return result(() -> tensor().add(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sub(Number n) {
        return result(() -> tensor().sub(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sub(NDArray other) {
        return result(() -> tensor().sub(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray mul(Number n) {
        return result(() -> tensor().mul(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray mul(NDArray other) {
        return result(() -> tensor().mul(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray div(Number n) {
        return result(() -> tensor().div(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray div(NDArray other) {
        return result(() -> tensor().div(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray mod(Number n) {
        throw unsupported("NDArray.mod");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray mod(NDArray other) {
        throw unsupported("NDArray.mod");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray pow(Number n) {
        return result(() -> tensor().pow(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray pow(NDArray other) {
        return result(() -> tensor().pow(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray xlogy(NDArray other) {
        throw unsupported("NDArray.xlogy");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray addi(Number n) {
        return inPlace(() -> tensor().add(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray addi(NDArray other) {
        return inPlace(() -> tensor().add(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray subi(Number n) {
        return inPlace(() -> tensor().sub(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray subi(NDArray other) {
        return inPlace(() -> tensor().sub(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray muli(Number n) {
        return inPlace(() -> tensor().mul(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray muli(NDArray other) {
        return inPlace(() -> tensor().mul(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray divi(Number n) {
        return inPlace(() -> tensor().div(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray divi(NDArray other) {
        return inPlace(() -> tensor().div(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray modi(Number n) {
        throw unsupported("NDArray.modi");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray modi(NDArray other) {
        throw unsupported("NDArray.modi");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray powi(Number n) {
        return inPlace(() -> tensor().pow(number(n)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray powi(NDArray other) {
        return inPlace(() -> tensor().pow(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sign() {
        throw unsupported("NDArray.sign");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray signi() {
        throw unsupported("NDArray.signi");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray maximum(Number n) {
        return result(() -> {
            try (Tensor s = Tensor.scalar(number(n), tensor().dtype(), tensor().device())) {
                return tensor().maximum(s);
            }
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDArray maximum(NDArray other) {
        return result(() -> tensor().maximum(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray minimum(Number n) {
        return result(() -> {
            try (Tensor s = Tensor.scalar(number(n), tensor().dtype(), tensor().device())) {
                return tensor().minimum(s);
            }
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDArray minimum(NDArray other) {
        return result(() -> tensor().minimum(tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray neg() {
        return result(() -> tensor().neg());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray negi() {
        return inPlace(() -> tensor().neg());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray abs() {
        return result(() -> tensor().abs());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray square() {
        return result(() -> tensor().mul(tensor()));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sqrt() {
        return result(() -> tensor().sqrt());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray cbrt() {
        throw unsupported("NDArray.cbrt");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray floor() {
        throw unsupported("NDArray.floor");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray ceil() {
        throw unsupported("NDArray.ceil");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray round() {
        throw unsupported("NDArray.round");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray trunc() {
        throw unsupported("NDArray.trunc");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray exp() {
        return result(() -> tensor().exp());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray gammaln() {
        throw unsupported("NDArray.gammaln");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray log() {
        return result(() -> tensor().log());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray log10() {
        return result(() -> {
            try (Tensor l = tensor().log()) {
                return l.mul(1 / Math.log(10));
            }
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDArray log2() {
        return result(() -> {
            try (Tensor l = tensor().log()) {
                return l.mul(1 / Math.log(2));
            }
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sin() {
        return result(() -> tensor().sin());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray cos() {
        return result(() -> tensor().cos());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray tan() {
        return result(() -> {
            try (Tensor s = tensor().sin(); Tensor c = tensor().cos()) {
                return s.div(c);
            }
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDArray asin() {
        throw unsupported("NDArray.asin");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray acos() {
        throw unsupported("NDArray.acos");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray atan() {
        throw unsupported("NDArray.atan");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray atan2(NDArray other) {
        throw unsupported("NDArray.atan2");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sinh() {
        throw unsupported("NDArray.sinh");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray cosh() {
        throw unsupported("NDArray.cosh");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray tanh() {
        return result(() -> tensor().tanh());
    }

    /** {@inheritDoc} */
    @Override
    public NDArray asinh() {
        throw unsupported("NDArray.asinh");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray acosh() {
        throw unsupported("NDArray.acosh");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray atanh() {
        throw unsupported("NDArray.atanh");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray toDegrees() {
        return result(() -> tensor().mul(180 / Math.PI));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray toRadians() {
        return result(() -> tensor().mul(Math.PI / 180));
    }

    // ================================================================ reductions

    private int[] axes(int[] axes) {
        int rank = tensor().rank();
        return Arrays.stream(axes).map(a -> Math.floorMod(a, Math.max(rank, 1))).toArray();
    }

    private int[] allAxes() {
        return IntStream.range(0, tensor().rank()).toArray();
    }

    /** {@inheritDoc} */
    @Override
    public NDArray max() {
        return result(() -> Reductions.max(tensor()));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray max(int[] axes, boolean keepDims) {
        return result(() -> Reductions.max(tensor(), keepDims, axes(axes)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray min() {
        return result(() -> Reductions.min(tensor()));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray min(int[] axes, boolean keepDims) {
        return result(() -> Reductions.min(tensor(), keepDims, axes(axes)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sum() {
        return result(() -> Reductions.sum(tensor()));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sum(int[] axes, boolean keepDims) {
        return result(() -> Reductions.sum(tensor(), keepDims, axes(axes)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray cumProd(int axis) {
        throw unsupported("NDArray.cumProd");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray cumProd(int axis, DataType dataType) {
        throw unsupported("NDArray.cumProd");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray prod() {
        return result(() -> Reductions.prod(tensor(), false, allAxes()));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray prod(int[] axes, boolean keepDims) {
        return result(() -> Reductions.prod(tensor(), keepDims, axes(axes)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray mean() {
        return result(() -> Reductions.mean(tensor()));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray mean(int[] axes, boolean keepDims) {
        return result(() -> Reductions.mean(tensor(), keepDims, axes(axes)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray normalize(double exponent, long dim, double eps) {
        throw unsupported("NDArray.normalize");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray rotate90(int times, int[] axes) {
        throw unsupported("NDArray.rotate90");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray trace(int offset, int axis1, int axis2) {
        throw unsupported("NDArray.trace");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray argMax() {
        return result(() -> Reductions.argmax(tensor()));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray argMax(int axis) {
        return result(() -> Reductions.argmax(tensor(), axis, false));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray argMin() {
        return result(() -> Reductions.argmin(tensor()));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray argMin(int axis) {
        return result(() -> Reductions.argmin(tensor(), axis, false));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray norm(boolean keepDims) {
        return norm(2, allAxes(), keepDims);
    }

    /** {@inheritDoc} Orders 1 and 2 (the vector norms over {@code axes}). */
    @Override
    public NDArray norm(int ord, int[] axes, boolean keepDims) {
        int[] a = axes(axes);
        if (ord == 2) {
            return result(() -> {
                try (Tensor sq = tensor().mul(tensor()); Tensor s = Reductions.sum(sq, keepDims, a)) {
                    return s.sqrt();
                }
            });
        }
        if (ord == 1) {
            return result(() -> {
                try (Tensor abs = tensor().abs()) {
                    return Reductions.sum(abs, keepDims, a);
                }
            });
        }
        throw unsupported("NDArray.norm with ord " + ord);
    }

    /** {@inheritDoc} */
    @Override
    public NDArray percentile(Number percentile) {
        throw unsupported("NDArray.percentile");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray percentile(Number percentile, int[] axes) {
        throw unsupported("NDArray.percentile");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray median() {
        throw unsupported("NDArray.median");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray median(int[] axes) {
        throw unsupported("NDArray.median");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray cumSum() {
        throw unsupported("NDArray.cumSum");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray cumSum(int axis) {
        throw unsupported("NDArray.cumSum");
    }

    // ================================================================ shapes

    /** {@inheritDoc} Split points: the pieces start at 0 and at each index. */
    @Override
    public NDList split(long[] indices, int axis) {
        if (indices.length == 0) {
            return new NDList(this);
        }
        int ax = Math.floorMod(axis, tensor().rank());
        long size = tensor().size(ax);
        NDList out = new NDList();
        long start = 0;
        for (int i = 0; i <= indices.length; i++) {
            long end = i < indices.length ? Math.min(Math.max(indices[i], start), size) : size;
            long s = start;
            out.add(result(() -> tensor().narrow(ax, s, end - s)));
            start = end;
        }
        return out;
    }

    /** {@inheritDoc} */
    @Override
    public NDList split(long sections, int axis) {
        int ax = Math.floorMod(axis, tensor().rank());
        long size = tensor().size(ax);
        if (sections <= 0 || size % sections != 0) {
            throw new IllegalArgumentException("NDArray.split: " + size + " along axis " + axis
                    + " does not divide into " + sections + " equal sections");
        }
        long len = size / sections;
        NDList out = new NDList();
        for (long i = 0; i < sections; i++) {
            long s = i * len;
            out.add(result(() -> tensor().narrow(ax, s, len)));
        }
        return out;
    }

    /** {@inheritDoc} */
    @Override
    public NDArray flatten() {
        return result(() -> tensor().reshape(-1));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray flatten(int startDim, int endDim) {
        long[] d = tensor().dims();
        int s = Math.floorMod(startDim, d.length);
        int e = Math.floorMod(endDim, d.length);
        long[] out = new long[d.length - (e - s)];
        int k = 0;
        for (int i = 0; i < s; i++) {
            out[k++] = d[i];
        }
        long m = 1;
        for (int i = s; i <= e; i++) {
            m *= d[i];
        }
        out[k++] = m;
        for (int i = e + 1; i < d.length; i++) {
            out[k++] = d[i];
        }
        return result(() -> tensor().reshape(out));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray fft(long length, long axis) {
        throw unsupported("NDArray.fft");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray ifft(long length, long axis) {
        throw unsupported("NDArray.ifft");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray rfft(long length, long axis) {
        throw unsupported("NDArray.rfft");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray irfft(long length, long axis) {
        throw unsupported("NDArray.irfft");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray stft(long nFft, long hopLength, boolean center, NDArray window, boolean normalize,
                        boolean returnComplex) {
        throw unsupported("NDArray.stft");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray fft2(long[] sizes, long[] axes) {
        throw unsupported("NDArray.fft2");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray ifft2(long[] sizes, long[] axes) {
        throw unsupported("NDArray.ifft2");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray pad(Shape padding, double value) {
        throw unsupported("NDArray.pad");
    }

    /** {@inheritDoc} One dimension may be -1 (inferred). */
    @Override
    public NDArray reshape(Shape shape) {
        long[] dims = shape.getShape();
        return result(() -> tensor().reshape(dims));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray expandDims(int axis) {
        int ax = axis < 0 ? axis + tensor().rank() + 1 : axis;
        return result(() -> tensor().unsqueeze(ax));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray squeeze(int[] axes) {
        long[] d = tensor().dims();
        int[] sorted = Arrays.stream(axes).map(a -> Math.floorMod(a, Math.max(d.length, 1))).distinct().sorted().toArray();
        for (int a : sorted) {
            if (d[a] != 1) {
                throw new IllegalArgumentException("NDArray.squeeze: axis " + a + " of " + getShape() + " has size "
                        + d[a] + ", not 1");
            }
        }
        return result(() -> {
            Tensor t = F.identity(tensor());
            for (int i = sorted.length - 1; i >= 0; i--) {
                try (Tensor prev = t) {
                    t = prev.squeeze(sorted[i]);
                }
            }
            return t;
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDList unique(Integer dim, boolean sorted, boolean returnInverse, boolean returnCounts) {
        throw unsupported("NDArray.unique");
    }

    private Tensor asBool(Tensor t) {
        return t.dtype() == DType.BOOL ? t.detach() : t.ne(0);
    }

    private NDArray logical(NDArray other, java.util.function.BinaryOperator<Tensor> f) {
        return result(() -> {
            try (Tensor a = asBool(tensor()); Tensor b = asBool(tensorOf(other))) {
                return f.apply(a, b);
            }
        });
    }

    /** {@inheritDoc} Non-boolean arrays count as true where non-zero. */
    @Override
    public NDArray logicalAnd(NDArray other) {
        return logical(other, Tensor::logicalAnd);
    }

    /** {@inheritDoc} Non-boolean arrays count as true where non-zero. */
    @Override
    public NDArray logicalOr(NDArray other) {
        return logical(other, Tensor::logicalOr);
    }

    /** {@inheritDoc} Non-boolean arrays count as true where non-zero. */
    @Override
    public NDArray logicalXor(NDArray other) {
        return logical(other, Elementwise::logicalXor);
    }

    /** {@inheritDoc} Non-boolean arrays count as true where non-zero. */
    @Override
    public NDArray logicalNot() {
        return result(() -> {
            try (Tensor a = asBool(tensor())) {
                return a.logicalNot();
            }
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDArray argSort(int axis, boolean ascending) {
        throw unsupported("NDArray.argSort");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sort() {
        throw unsupported("NDArray.sort");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray sort(int axis) {
        throw unsupported("NDArray.sort");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray softmax(int axis) {
        return result(() -> tensor().softmax(axis));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray logSoftmax(int axis) {
        return result(() -> tensor().logSoftmax(axis));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray diagonal() {
        throw unsupported("NDArray.diagonal");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray diagonal(int offset) {
        throw unsupported("NDArray.diagonal");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray diagonal(int offset, int axis1, int axis2) {
        throw unsupported("NDArray.diagonal");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray isInfinite() {
        return result(() -> {
            if (!tensor().dtype().isFloatingPoint()) {
                return Tensor.zeros(DType.BOOL, tensor().device(), tensor().dims());
            }
            try (Tensor a = tensor().abs()) {
                return a.eq(Double.POSITIVE_INFINITY);
            }
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDArray inverse() {
        throw unsupported("NDArray.inverse");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray isNaN() {
        return result(() -> tensor().ne(tensor()));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray tile(long repeats) {
        long[] r = new long[tensor().rank()];
        Arrays.fill(r, repeats);
        return tile(r);
    }

    /** {@inheritDoc} */
    @Override
    public NDArray tile(int axis, long repeats) {
        long[] r = new long[tensor().rank()];
        Arrays.fill(r, 1);
        r[Math.floorMod(axis, r.length)] = repeats;
        return tile(r);
    }

    /** {@inheritDoc} */
    @Override
    public NDArray tile(long[] repeats) {
        return result(() -> Gathers.tile(tensor(), repeats));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray tile(Shape desiredShape) {
        long[] d = tensor().dims();
        long[] want = desiredShape.getShape();
        if (want.length != d.length) {
            throw new IllegalArgumentException("NDArray.tile: " + desiredShape + " must have the rank of " + getShape());
        }
        long[] r = new long[d.length];
        for (int i = 0; i < d.length; i++) {
            if (d[i] == 0 || want[i] % d[i] != 0) {
                throw new IllegalArgumentException("NDArray.tile: " + desiredShape + " is not a multiple of " + getShape());
            }
            r[i] = want[i] / d[i];
        }
        return tile(r);
    }

    /** {@inheritDoc} */
    @Override
    public NDArray repeat(long repeats) {
        long[] r = new long[tensor().rank()];
        Arrays.fill(r, repeats);
        return repeat(r);
    }

    /** {@inheritDoc} */
    @Override
    public NDArray repeat(int axis, long repeats) {
        long[] r = new long[tensor().rank()];
        Arrays.fill(r, 1);
        r[Math.floorMod(axis, r.length)] = repeats;
        return repeat(r);
    }

    /** {@inheritDoc} */
    @Override
    public NDArray repeat(long[] repeats) {
        return result(() -> Gathers.repeat(tensor(), repeats));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray repeat(Shape desiredShape) {
        long[] d = tensor().dims();
        long[] want = desiredShape.getShape();
        if (want.length != d.length) {
            throw new IllegalArgumentException("NDArray.repeat: " + desiredShape + " must have the rank of " + getShape());
        }
        long[] r = new long[d.length];
        for (int i = 0; i < d.length; i++) {
            if (d[i] == 0 || want[i] % d[i] != 0) {
                throw new IllegalArgumentException("NDArray.repeat: " + desiredShape + " is not a multiple of " + getShape());
            }
            r[i] = want[i] / d[i];
        }
        return repeat(r);
    }

    // ================================================================ products

    /**
     * {@inheritDoc} Scalars multiply; 1-D with 1-D is the inner product; otherwise the matrix
     * product (as {@link #matMul}) for operands of rank up to 2.
     */
    @Override
    public NDArray dot(NDArray other) {
        Tensor b = tensorOf(other);
        if (tensor().rank() == 0 || b.rank() == 0) {
            return result(() -> tensor().mul(b));
        }
        if (tensor().rank() > 2 || b.rank() > 2) {
            throw unsupported("NDArray.dot of arrays of rank above 2 (" + getShape() + ", " + other.getShape() + ")");
        }
        return result(() -> LinearAlgebra.matmul(tensor(), b));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray matMul(NDArray other) {
        return result(() -> LinearAlgebra.matmul(tensor(), tensorOf(other)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray batchMatMul(NDArray other) {
        if (tensor().rank() != 3 || other.getShape().dimension() != 3) {
            throw new IllegalArgumentException("NDArray.batchMatMul: needs two 3-D arrays, got " + getShape()
                    + " and " + other.getShape());
        }
        return matMul(other);
    }

    /** {@inheritDoc} */
    @Override
    public NDArray batchDot(NDArray other) {
        return batchMatMul(other);
    }

    /** {@inheritDoc} */
    @Override
    public NDArray clip(Number min, Number max) {
        return result(() -> tensor().clamp(number(min), number(max)));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray flip(int... axes) {
        throw unsupported("NDArray.flip");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray transpose() {
        int r = tensor().rank();
        int[] order = IntStream.range(0, r).map(i -> r - 1 - i).toArray();
        return result(() -> tensor().permute(order));
    }

    /** {@inheritDoc} */
    @Override
    public NDArray transpose(int... axes) {
        if (axes.length != tensor().rank()) {
            throw new IllegalArgumentException("NDArray.transpose: " + Arrays.toString(axes) + " must name each of the "
                    + tensor().rank() + " axes of " + getShape() + " once");
        }
        int[] order = axes(axes);
        return result(() -> tensor().permute(order));
    }

    /** {@inheritDoc} A view with stride 0 along the broadcast dimensions. */
    @Override
    public NDArray broadcast(Shape shape) {
        long[] dims = shape.getShape();
        return result(() -> tensor().expand(dims));
    }

    /** {@inheritDoc} */
    @Override
    public NDList topK(int k, int axis, boolean largest, boolean sorted) {
        throw unsupported("NDArray.topK");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray toDense() {
        return this;
    }

    /** {@inheritDoc} */
    @Override
    public NDArray toSparse(SparseFormat fmt) {
        throw unsupported("NDArray.toSparse");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray nonzero() {
        throw unsupported("NDArray.nonzero");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray erfinv() {
        throw unsupported("NDArray.erfinv");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray erf() {
        throw unsupported("NDArray.erf");
    }

    /** {@inheritDoc} {@code on} where the index equals the class, else {@code off}, along a new last axis. */
    @Override
    public NDArray oneHot(int depth, float onValue, float offValue, DataType dataType) {
        DType out = Types.dtype(dataType, "NDArray.oneHot");
        return result(() -> {
            try (Tensor classes = Tensor.arange(0, depth, 1, DType.INT64, tensor().device());
                 Tensor idx = tensor().to(DType.INT64);
                 Tensor col = idx.unsqueeze(-1);
                 Tensor hit = col.eq(classes);
                 Tensor f = hit.to(out);
                 Tensor scaled = f.mul(onValue - offValue)) {
                return scaled.add(offValue);
            }
        });
    }

    /** {@inheritDoc} */
    @Override
    public NDArray complex() {
        throw unsupported("NDArray.complex");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray real() {
        throw unsupported("NDArray.real");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray conj() {
        throw unsupported("NDArray.conj");
    }

    /** {@inheritDoc} */
    @Override
    public NDArray diff(int n, int dim) {
        throw unsupported("NDArray.diff");
    }

    /** {@inheritDoc} */
    @Override
    public NDArrayEx getNDArrayInternal() {
        if (ex == null) {
            ex = new CortadoNDArrayEx(this);
        }
        return ex;
    }
}
